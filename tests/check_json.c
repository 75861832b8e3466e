/* check_json.c: placeholder until the json suite is written. */

#include "suites.h"


Suite *
relay_suite_json(void)
{
    return suite_create("json");
}
