/* registry.c: placeholder. */

#include "relay/common.h"
