/* http.c: placeholder. */

#include "relay/common.h"
