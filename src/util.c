/* util.c: placeholder. */

#include "relay/common.h"
