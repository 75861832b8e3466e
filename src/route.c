/* route.c: placeholder. */

#include "relay/common.h"
