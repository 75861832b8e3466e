/* master.c: placeholder. */

#include "relay/common.h"
