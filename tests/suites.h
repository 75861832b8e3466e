/*
 * suites.h: the Check suites linked into tests/check_relay.
 *
 * Each tests/check_<module>.c defines one relay_suite_<module>() and the
 * runner adds them all.  Suites test one module each, on buffers or real
 * kernel objects, never on a running daemon (tests/integration does that).
 */

#ifndef RELAY_TEST_SUITES_H
#define RELAY_TEST_SUITES_H

#include <check.h>

Suite *relay_suite_config(void);
Suite *relay_suite_envelope(void);
Suite *relay_suite_http(void);
Suite *relay_suite_json(void);
Suite *relay_suite_log(void);
Suite *relay_suite_ratelimit(void);
Suite *relay_suite_registry(void);

#endif
