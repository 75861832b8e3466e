/* log.c: placeholder. */

#include "relay/common.h"
