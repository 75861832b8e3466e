/* ratelimit.c: placeholder. */

#include "relay/common.h"
