/* metrics.c: placeholder. */

#include "relay/common.h"
