/* envelope.c: placeholder. */

#include "relay/common.h"
