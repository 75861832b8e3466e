/* check_envelope.c: placeholder until the envelope suite is written. */

#include "suites.h"


Suite *
relay_suite_envelope(void)
{
    return suite_create("envelope");
}
