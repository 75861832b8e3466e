/* check_registry.c: placeholder until the registry suite is written. */

#include "suites.h"


Suite *
relay_suite_registry(void)
{
    return suite_create("registry");
}
