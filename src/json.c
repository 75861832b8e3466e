/* json.c: placeholder. */

#include "relay/common.h"
