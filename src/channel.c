/* channel.c: placeholder. */

#include "relay/common.h"
