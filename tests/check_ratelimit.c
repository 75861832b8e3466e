/* check_ratelimit.c: placeholder until the ratelimit suite is written. */

#include "suites.h"


Suite *
relay_suite_ratelimit(void)
{
    return suite_create("ratelimit");
}
