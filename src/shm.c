/* shm.c: placeholder. */

#include "relay/common.h"
