/* check_http.c: placeholder until the http suite is written. */

#include "suites.h"


Suite *
relay_suite_http(void)
{
    return suite_create("http");
}
