/* check_log.c: placeholder until the log suite is written. */

#include "suites.h"


Suite *
relay_suite_log(void)
{
    return suite_create("log");
}
