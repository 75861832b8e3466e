/* worker.c: placeholder. */

#include "relay/common.h"
