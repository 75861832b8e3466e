/*
 * check_runner.c: runs every unit suite of the relay in one program.
 *
 * Each test runs in a forked child (Check's default), so a crash in one
 * test is reported as a failure and the rest still run.  Exit status is
 * non-zero if any test failed.
 */

#include <stdlib.h>

#include <check.h>

#include "suites.h"


int
main(void)
{
    SRunner *sr;
    int failed;

    sr = srunner_create(relay_suite_config());
    srunner_add_suite(sr, relay_suite_envelope());
    srunner_add_suite(sr, relay_suite_http());
    srunner_add_suite(sr, relay_suite_json());
    srunner_add_suite(sr, relay_suite_log());
    srunner_add_suite(sr, relay_suite_ratelimit());
    srunner_add_suite(sr, relay_suite_registry());

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);

    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
