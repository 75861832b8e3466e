/* check_config.c: placeholder until the config suite is written. */

#include "suites.h"


Suite *
relay_suite_config(void)
{
    return suite_create("config");
}
