/* conn.c: placeholder. */

#include "relay/common.h"
