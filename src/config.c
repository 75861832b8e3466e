/* config.c: placeholder. */

#include "relay/common.h"
