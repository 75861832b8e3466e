/* net.c: placeholder. */

#include "relay/common.h"
