/*
 * check_envelope.c: the routing envelope, row by row of SPEC.md 6.2.
 *
 * Binaries were written against the reference relay, whose envelope goes
 * through Go's encoding/json, so besides the decision table these tests pin
 * the decoder quirks a binary could notice: case-insensitive keys, the last
 * duplicate winning, null leaving a string or integer field alone, and
 * close_code accepting only plain integer literals that fit a uint16.
 * Inputs are copied to heap buffers of their exact length so a sanitizer
 * build catches any read past the end.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "relay/common.h"
#include "relay/envelope.h"
#include "relay/json.h"

#include "suites.h"

struct relay_test_env_case {
    const char *in;
    int action;
};

#define RELAY_TE_COUNT(a)   (sizeof(a) / sizeof((a)[0]))


static int
relay_test_env_decode_n(const char *in, size_t len, struct relay_envelope *env)
{
    uint8_t *buf;
    int action;

    buf = malloc(len == 0 ? 1 : len);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, in, len);
    action = relay_envelope_decode(buf, len, env);
    free(buf);

    ck_assert_int_eq(action, env->action);
    return action;
}


static int
relay_test_env_decode(const char *in, struct relay_envelope *env)
{
    return relay_test_env_decode_n(in, strlen(in), env);
}


static int
relay_test_env_push(const char *in)
{
    uint8_t *buf;
    size_t len;
    int rc;

    len = strlen(in);
    buf = malloc(len == 0 ? 1 : len);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, in, len);
    rc = relay_envelope_check_push(buf, len);
    free(buf);

    return rc;
}


static void
relay_test_env_expect(const struct relay_test_env_case *cases, size_t n)
{
    struct relay_envelope env;
    size_t i;
    int action;

    for (i = 0; i < n; i++) {
        action = relay_test_env_decode(cases[i].in, &env);
        ck_assert_msg(action == cases[i].action, "case %zu %s: got %d, want %d",
                      i, cases[i].in, action, cases[i].action);
    }
}


/* The frame span of in, as a string, for comparison. */
static void
relay_test_env_frame_is(const char *in, const char *want)
{
    struct relay_envelope env;

    relay_test_env_decode(in, &env);
    ck_assert_int_eq(env.has_frame, 1);
    ck_assert_uint_eq(env.frame_len, strlen(want));
    ck_assert_mem_eq(in + env.frame_off, want, env.frame_len);
}


START_TEST(test_envelope_not_an_object_is_malformed)
{
    static const struct relay_test_env_case cases[] = {
        { "", RELAY_ENV_MALFORMED },
        { "garbage", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":\"c\",\"frame\":1", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":\"c\",\"frame\":01}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":\"c\",\"frame\":\"\xff\"}", RELAY_ENV_MALFORMED },
        { "[{\"conn_id\":\"c\",\"frame\":1}]", RELAY_ENV_MALFORMED },
        { "\"conn_id\"", RELAY_ENV_MALFORMED },
        { "null", RELAY_ENV_MALFORMED },
        { "42", RELAY_ENV_MALFORMED },
    };

    relay_test_env_expect(cases, RELAY_TE_COUNT(cases));
}
END_TEST


START_TEST(test_envelope_too_deep_frame_is_malformed)
{
    struct relay_envelope env;
    char *in, *p;
    size_t depth, i;

    depth = RELAY_JSON_MAX_DEPTH;
    in = malloc(64 + 2 * depth);
    ck_assert_ptr_nonnull(in);
    p = in;
    memcpy(p, "{\"conn_id\":\"c\",\"frame\":", 23);
    p += 23;
    for (i = 0; i < depth; i++) {
        *p++ = '[';
    }
    for (i = 0; i < depth; i++) {
        *p++ = ']';
    }
    *p++ = '}';

    ck_assert_int_eq(relay_test_env_decode_n(in, (size_t) (p - in), &env),
                     RELAY_ENV_MALFORMED);
    free(in);
}
END_TEST


START_TEST(test_envelope_wrong_conn_id_type_is_malformed)
{
    static const struct relay_test_env_case cases[] = {
        { "{\"conn_id\":1,\"frame\":1}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":true,\"frame\":1}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":false,\"frame\":1}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":[\"c\"],\"frame\":1}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":{},\"frame\":1}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":1,\"push_wake\":{}}", RELAY_ENV_MALFORMED },
    };

    relay_test_env_expect(cases, RELAY_TE_COUNT(cases));
}
END_TEST


START_TEST(test_envelope_wrong_close_code_type_is_malformed)
{
    static const struct relay_test_env_case cases[] = {
        { "{\"conn_id\":\"c\",\"close_code\":\"1000\"}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":\"c\",\"close_code\":true}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":\"c\",\"close_code\":[1000]}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":\"c\",\"close_code\":{}}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":\"c\",\"close_code\":1.0}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":\"c\",\"close_code\":1e3}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":\"c\",\"close_code\":1E3}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":\"c\",\"close_code\":1.5}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":\"c\",\"close_code\":-1}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":\"c\",\"close_code\":-0}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":\"c\",\"close_code\":65536}", RELAY_ENV_MALFORMED },
        { "{\"conn_id\":\"c\",\"close_code\":99999999999999999999999}",
          RELAY_ENV_MALFORMED },
        /* Go reports a type error even where conn_id would drop it. */
        { "{\"close_code\":1.5}", RELAY_ENV_MALFORMED },
    };

    relay_test_env_expect(cases, RELAY_TE_COUNT(cases));
}
END_TEST


START_TEST(test_envelope_close_code_edge_values)
{
    struct relay_envelope env;

    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\":\"c\","
                                           "\"close_code\":0}",
                                           &env),
                     RELAY_ENV_NO_FRAME);
    ck_assert_int_eq(env.close_code, 0);

    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\":\"c\",\"frame\":1,"
                                           "\"close_code\":0}",
                                           &env),
                     RELAY_ENV_DELIVER);

    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\":\"c\","
                                           "\"close_code\":1}",
                                           &env),
                     RELAY_ENV_CLOSE);
    ck_assert_int_eq(env.close_code, 1);

    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\":\"c\","
                                           "\"close_code\":65535}",
                                           &env),
                     RELAY_ENV_CLOSE);
    ck_assert_int_eq(env.close_code, 65535);

    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\":\"c\",\"frame\":1,"
                                           "\"close_code\":null}",
                                           &env),
                     RELAY_ENV_DELIVER);
    ck_assert_int_eq(env.close_code, 0);
}
END_TEST


START_TEST(test_envelope_push_wake_without_conn_id)
{
    static const struct relay_test_env_case cases[] = {
        { "{\"push_wake\":{\"platform\":\"fcm\",\"token\":\"t\"}}",
          RELAY_ENV_PUSH_WAKE },
        { "{\"conn_id\":\"\",\"push_wake\":{}}", RELAY_ENV_PUSH_WAKE },
        { "{\"conn_id\":null,\"push_wake\":{}}", RELAY_ENV_PUSH_WAKE },
        /* Any non-null value asks; relay_envelope_check_push judges it. */
        { "{\"push_wake\":1}", RELAY_ENV_PUSH_WAKE },
        { "{\"push_wake\":false}", RELAY_ENV_PUSH_WAKE },
        { "{\"push_wake\":{},\"frame\":1,\"close_code\":4401}",
          RELAY_ENV_PUSH_WAKE },
        { "{\"push_wake\":null}", RELAY_ENV_NO_CONN_ID },
        { "{\"push_wake\":{},\"push_wake\":null}", RELAY_ENV_NO_CONN_ID },
        { "{\"push_wake\":null,\"push_wake\":{}}", RELAY_ENV_PUSH_WAKE },
        /* A conn_id wins over push_wake. */
        { "{\"conn_id\":\"c\",\"push_wake\":{},\"frame\":1}",
          RELAY_ENV_DELIVER },
        { "{\"conn_id\":\"c\",\"push_wake\":{}}", RELAY_ENV_NO_FRAME },
    };

    relay_test_env_expect(cases, RELAY_TE_COUNT(cases));
}
END_TEST


START_TEST(test_envelope_push_wake_span)
{
    static const char in[] =
        "{\"push_wake\": {\"platform\" : \"fcm\", \"token\":\"t\"} }";
    static const char want[] = "{\"platform\" : \"fcm\", \"token\":\"t\"}";
    struct relay_envelope env;

    ck_assert_int_eq(relay_test_env_decode(in, &env), RELAY_ENV_PUSH_WAKE);
    ck_assert_uint_eq(env.push_len, sizeof(want) - 1);
    ck_assert_mem_eq(in + env.push_off, want, env.push_len);
    ck_assert_int_eq(relay_envelope_check_push((const uint8_t *) in
                                                   + env.push_off,
                                               env.push_len),
                     RELAY_PUSH_OK);
}
END_TEST


START_TEST(test_envelope_without_conn_id_is_dropped)
{
    static const struct relay_test_env_case cases[] = {
        { "{}", RELAY_ENV_NO_CONN_ID },
        { "{\"frame\":1}", RELAY_ENV_NO_CONN_ID },
        { "{\"frame\":1,\"close_code\":4401}", RELAY_ENV_NO_CONN_ID },
        { "{\"conn_id\":\"\",\"frame\":1}", RELAY_ENV_NO_CONN_ID },
        { "{\"conn_id\":null,\"frame\":1}", RELAY_ENV_NO_CONN_ID },
        { "{\"other\":\"c\",\"frame\":1}", RELAY_ENV_NO_CONN_ID },
    };

    relay_test_env_expect(cases, RELAY_TE_COUNT(cases));
}
END_TEST


START_TEST(test_envelope_without_frame_is_dropped)
{
    static const struct relay_test_env_case cases[] = {
        { "{\"conn_id\":\"c\"}", RELAY_ENV_NO_FRAME },
        { "{\"conn_id\":\"c\",\"frame\":null}", RELAY_ENV_NO_FRAME },
        { "{\"conn_id\":\"c\",\"close_code\":0}", RELAY_ENV_NO_FRAME },
        { "{\"conn_id\":\"c\",\"frame\":null,\"close_code\":0}",
          RELAY_ENV_NO_FRAME },
        { "{\"conn_id\":\"c\",\"close_code\":null}", RELAY_ENV_NO_FRAME },
    };

    relay_test_env_expect(cases, RELAY_TE_COUNT(cases));
}
END_TEST


START_TEST(test_envelope_close_directive)
{
    struct relay_envelope env;

    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\":\"c\","
                                           "\"close_code\":4401}",
                                           &env),
                     RELAY_ENV_CLOSE);
    ck_assert_int_eq(env.close_code, 4401);
    ck_assert_int_eq(env.has_frame, 0);
    ck_assert_str_eq(env.conn_id, "c");

    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\":\"c\",\"frame\":null,"
                                           "\"close_code\":1005}",
                                           &env),
                     RELAY_ENV_CLOSE);
    ck_assert_int_eq(env.has_frame, 0);

    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\":\"c\",\"frame\":"
                                           "\"bye\",\"close_code\":4426}",
                                           &env),
                     RELAY_ENV_CLOSE);
    ck_assert_int_eq(env.has_frame, 1);
    ck_assert_int_eq(env.close_code, 4426);
}
END_TEST


START_TEST(test_envelope_deliver)
{
    static const struct relay_test_env_case cases[] = {
        { "{\"conn_id\":\"c\",\"frame\":{\"a\":1}}", RELAY_ENV_DELIVER },
        { "{\"frame\":[1],\"conn_id\":\"c\"}", RELAY_ENV_DELIVER },
        { "{\"conn_id\":\"c\",\"frame\":0}", RELAY_ENV_DELIVER },
        { "{\"conn_id\":\"c\",\"frame\":false}", RELAY_ENV_DELIVER },
        { "{\"conn_id\":\"c\",\"frame\":\"\"}", RELAY_ENV_DELIVER },
        { "{\"conn_id\":\"c\",\"frame\":[]}", RELAY_ENV_DELIVER },
        { "{\"conn_id\":\"c\",\"frame\":{}}", RELAY_ENV_DELIVER },
    };
    struct relay_envelope env;

    relay_test_env_expect(cases, RELAY_TE_COUNT(cases));

    relay_test_env_decode("{\"conn_id\":\"client-abc-0123abcd\","
                          "\"frame\":7}",
                          &env);
    ck_assert_str_eq(env.conn_id, "client-abc-0123abcd");
    ck_assert_int_eq(env.close_code, 0);
    ck_assert_uint_eq(env.push_len, 0);
}
END_TEST


START_TEST(test_envelope_unknown_keys_are_ignored)
{
    static const struct relay_test_env_case cases[] = {
        { "{\"x\":[1,{\"conn_id\":5}],\"conn_id\":\"c\",\"frame\":1,"
          "\"y\":null}",
          RELAY_ENV_DELIVER },
        { "{\"connid\":\"c\",\"frame\":1}", RELAY_ENV_NO_CONN_ID },
        { "{\"conn_id \":\"c\",\"frame\":1}", RELAY_ENV_NO_CONN_ID },
        { "{\"conn_id\":\"c\",\"frames\":1}", RELAY_ENV_NO_FRAME },
        { "{\"conn_id\":\"c\",\"close\":1000}", RELAY_ENV_NO_FRAME },
        { "{\"conn_id\":\"c\",\"frame\":1,\"close_code_\":\"x\"}",
          RELAY_ENV_DELIVER },
    };

    relay_test_env_expect(cases, RELAY_TE_COUNT(cases));
}
END_TEST


START_TEST(test_envelope_keys_match_ascii_case_insensitively)
{
    struct relay_envelope env;

    ck_assert_int_eq(relay_test_env_decode("{\"CONN_ID\":\"c\",\"Frame\":1,"
                                           "\"Close_Code\":4401}",
                                           &env),
                     RELAY_ENV_CLOSE);
    ck_assert_str_eq(env.conn_id, "c");
    ck_assert_int_eq(env.close_code, 4401);
    ck_assert_int_eq(env.has_frame, 1);

    ck_assert_int_eq(relay_test_env_decode("{\"PUSH_wake\":{}}", &env),
                     RELAY_ENV_PUSH_WAKE);
    ck_assert_int_eq(relay_test_env_decode("{\"cOnN_iD\":1}", &env),
                     RELAY_ENV_MALFORMED);
}
END_TEST


START_TEST(test_envelope_escaped_keys_are_decoded)
{
    struct relay_envelope env;

    ck_assert_int_eq(relay_test_env_decode("{\"conn\\u005fid\":\"c\","
                                           "\"\\u0066rame\":1}",
                                           &env),
                     RELAY_ENV_DELIVER);
    ck_assert_str_eq(env.conn_id, "c");

    ck_assert_int_eq(relay_test_env_decode("{\"\\u0043ONN_ID\":\"c\","
                                           "\"frame\":1}",
                                           &env),
                     RELAY_ENV_DELIVER);

    /* An escaped key too long to be any field is just unknown. */
    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\\u0041\\u0041\\u0041"
                                           "\\u0041\\u0041\\u0041\\u0041"
                                           "\\u0041\\u0041\":1,"
                                           "\"conn_id\":\"c\",\"frame\":1}",
                                           &env),
                     RELAY_ENV_DELIVER);
}
END_TEST


START_TEST(test_envelope_last_duplicate_wins)
{
    struct relay_envelope env;

    relay_test_env_decode("{\"conn_id\":\"a\",\"frame\":1,\"conn_id\":\"b\"}",
                          &env);
    ck_assert_str_eq(env.conn_id, "b");

    relay_test_env_decode("{\"conn_id\":\"a\",\"CONN_ID\":\"b\",\"frame\":1}",
                          &env);
    ck_assert_str_eq(env.conn_id, "b");

    relay_test_env_frame_is("{\"conn_id\":\"c\",\"frame\":1,\"frame\":[2]}",
                            "[2]");

    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\":\"c\",\"frame\":1,"
                                           "\"frame\":null}",
                                           &env),
                     RELAY_ENV_NO_FRAME);
    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\":\"c\","
                                           "\"close_code\":1000,"
                                           "\"close_code\":0}",
                                           &env),
                     RELAY_ENV_NO_FRAME);
    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\":\"a\","
                                           "\"conn_id\":\"\",\"frame\":1}",
                                           &env),
                     RELAY_ENV_NO_CONN_ID);
}
END_TEST


/* Go ignores null for a string or integer field: the earlier value stays. */
START_TEST(test_envelope_null_keeps_earlier_scalar)
{
    struct relay_envelope env;

    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\":\"a\","
                                           "\"conn_id\":null,\"frame\":1}",
                                           &env),
                     RELAY_ENV_DELIVER);
    ck_assert_str_eq(env.conn_id, "a");

    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\":\"c\","
                                           "\"close_code\":1000,"
                                           "\"close_code\":null}",
                                           &env),
                     RELAY_ENV_CLOSE);
    ck_assert_int_eq(env.close_code, 1000);
}
END_TEST


/* Go reports the first type error even if a later duplicate is fine. */
START_TEST(test_envelope_any_wrong_duplicate_is_malformed)
{
    static const struct relay_test_env_case cases[] = {
        { "{\"conn_id\":1,\"conn_id\":\"c\",\"frame\":1}",
          RELAY_ENV_MALFORMED },
        { "{\"conn_id\":\"c\",\"frame\":1,\"close_code\":\"x\","
          "\"close_code\":0}",
          RELAY_ENV_MALFORMED },
    };

    relay_test_env_expect(cases, RELAY_TE_COUNT(cases));
}
END_TEST


START_TEST(test_envelope_frame_span_is_byte_exact)
{
    relay_test_env_frame_is("{\"conn_id\":\"c\",\"frame\": { \"a\" : [ 1, 2 ]"
                            " ,\"b\":\"\\u00e9\\n\" } }",
                            "{ \"a\" : [ 1, 2 ] ,\"b\":\"\\u00e9\\n\" }");
    relay_test_env_frame_is("{\"frame\":\"x\\\"y\",\"conn_id\":\"c\"}",
                            "\"x\\\"y\"");
    relay_test_env_frame_is(" {\"conn_id\":\"c\",\"frame\":\t-1.5e+3\r\n} ",
                            "-1.5e+3");
    relay_test_env_frame_is("{\"conn_id\":\"c\",\"frame\":true}", "true");
    relay_test_env_frame_is("{\"conn_id\":\"c\",\"frame\":\"\xe2\x82\xac\"}",
                            "\"\xe2\x82\xac\"");
    relay_test_env_frame_is("{\"conn_id\":\"c\",\"frame\":[[],{},\"}\"]}",
                            "[[],{},\"}\"]");
}
END_TEST


START_TEST(test_envelope_conn_id_escapes_are_decoded)
{
    struct relay_envelope env;

    relay_test_env_decode("{\"conn_id\":\"client-\\u0061b\\/c\",\"frame\":1}",
                          &env);
    ck_assert_str_eq(env.conn_id, "client-ab/c");

    relay_test_env_decode("{\"conn_id\":\"\\u00e9\",\"frame\":1}", &env);
    ck_assert_str_eq(env.conn_id, "\xc3\xa9");
}
END_TEST


START_TEST(test_envelope_longest_conn_id_fits)
{
    struct relay_envelope env;
    char in[512], id[RELAY_CONN_ID_MAX];
    int n;

    memset(id, 'x', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    n = snprintf(in, sizeof(in), "{\"conn_id\":\"%s\",\"frame\":1}", id);
    ck_assert_int_lt(n, (int) sizeof(in));

    ck_assert_int_eq(relay_test_env_decode(in, &env), RELAY_ENV_DELIVER);
    ck_assert_str_eq(env.conn_id, id);
}
END_TEST


START_TEST(test_envelope_overlong_conn_id_names_no_phone)
{
    struct relay_envelope env;
    char in[512], id[RELAY_CONN_ID_MAX + 1];
    int n;

    memset(id, 'x', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    n = snprintf(in, sizeof(in), "{\"conn_id\":\"%s\",\"frame\":1}", id);
    ck_assert_int_lt(n, (int) sizeof(in));

    ck_assert_int_eq(relay_test_env_decode(in, &env), RELAY_ENV_DELIVER);
    ck_assert_str_eq(env.conn_id, "?");

    n = snprintf(in, sizeof(in), "{\"conn_id\":\"%s\",\"close_code\":4401}",
                 id);
    ck_assert_int_eq(relay_test_env_decode(in, &env), RELAY_ENV_CLOSE);
    ck_assert_str_eq(env.conn_id, "?");

    n = snprintf(in, sizeof(in), "{\"conn_id\":\"%s\"}", id);
    ck_assert_int_eq(relay_test_env_decode(in, &env), RELAY_ENV_NO_FRAME);
}
END_TEST


START_TEST(test_envelope_nul_in_conn_id_names_no_phone)
{
    struct relay_envelope env;

    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\":\"a\\u0000b\","
                                           "\"frame\":1}",
                                           &env),
                     RELAY_ENV_DELIVER);
    ck_assert_str_eq(env.conn_id, "?");
}
END_TEST


START_TEST(test_envelope_malformed_leaves_nothing_behind)
{
    struct relay_envelope env;

    memset(&env, 0x5a, sizeof(env));
    ck_assert_int_eq(relay_test_env_decode("{\"conn_id\":\"c\",\"frame\":1,"
                                           "\"close_code\":-1}",
                                           &env),
                     RELAY_ENV_MALFORMED);
    ck_assert_str_eq(env.conn_id, "");
    ck_assert_int_eq(env.has_frame, 0);
    ck_assert_int_eq(env.close_code, 0);
}
END_TEST


START_TEST(test_envelope_every_prefix_is_malformed)
{
    static const char in[] =
        "{\"conn_id\":\"client-abc-0123abcd\",\"frame\":{\"k\":[1,\"v\"]},"
        "\"close_code\":4401}";
    struct relay_envelope env;
    size_t cut;

    ck_assert_int_eq(relay_test_env_decode_n(in, sizeof(in) - 1, &env),
                     RELAY_ENV_CLOSE);
    for (cut = 0; cut < sizeof(in) - 1; cut++) {
        ck_assert_msg(relay_test_env_decode_n(in, cut, &env)
                          == RELAY_ENV_MALFORMED,
                      "prefix of %zu bytes", cut);
    }
}
END_TEST


START_TEST(test_envelope_push_check_accepts_fcm)
{
    ck_assert_int_eq(relay_test_env_push("{\"platform\":\"fcm\","
                                         "\"token\":\"abc:def\"}"),
                     RELAY_PUSH_OK);
    ck_assert_int_eq(relay_test_env_push(" { \"token\" : \"t\" , "
                                         "\"platform\" : \"fcm\" } "),
                     RELAY_PUSH_OK);
    ck_assert_int_eq(relay_test_env_push("{\"PLATFORM\":\"fcm\","
                                         "\"Token\":\"t\",\"x\":[1]}"),
                     RELAY_PUSH_OK);
    ck_assert_int_eq(relay_test_env_push("{\"platform\":\"f\\u0063m\","
                                         "\"token\":\"\\u0000\"}"),
                     RELAY_PUSH_OK);
    ck_assert_int_eq(relay_test_env_push("{\"platform\":\"apns\","
                                         "\"platform\":\"fcm\","
                                         "\"token\":\"t\"}"),
                     RELAY_PUSH_OK);
    ck_assert_int_eq(relay_test_env_push("{\"platform\":\"fcm\","
                                         "\"token\":\"t\",\"token\":null}"),
                     RELAY_PUSH_OK);
}
END_TEST


START_TEST(test_envelope_push_check_refuses_other_platforms)
{
    static const char *const cases[] = {
        "{\"platform\":\"apns\",\"token\":\"t\"}",
        "{\"platform\":\"FCM\",\"token\":\"t\"}",
        "{\"platform\":\"fcm \",\"token\":\"t\"}",
        "{\"platform\":\"\",\"token\":\"t\"}",
        "{\"platform\":\"fcmfcmfcm\",\"token\":\"t\"}",
        "{\"platform\":\"fcm\\u0000\",\"token\":\"t\"}",
        "{\"platform\":null,\"token\":\"t\"}",
        "{\"token\":\"t\"}",
        "{}",
        "{\"platform\":\"apns\",\"token\":\"\"}",
    };
    size_t i;

    for (i = 0; i < RELAY_TE_COUNT(cases); i++) {
        ck_assert_msg(relay_test_env_push(cases[i]) == RELAY_PUSH_BAD_PLATFORM,
                      "case %zu %s", i, cases[i]);
    }
}
END_TEST


START_TEST(test_envelope_push_check_refuses_empty_token)
{
    static const char *const cases[] = {
        "{\"platform\":\"fcm\",\"token\":\"\"}",
        "{\"platform\":\"fcm\"}",
        "{\"platform\":\"fcm\",\"token\":null}",
        "{\"platform\":\"fcm\",\"token\":\"t\",\"TOKEN\":\"\"}",
    };
    size_t i;

    for (i = 0; i < RELAY_TE_COUNT(cases); i++) {
        ck_assert_msg(relay_test_env_push(cases[i]) == RELAY_PUSH_EMPTY_TOKEN,
                      "case %zu %s", i, cases[i]);
    }
}
END_TEST


START_TEST(test_envelope_push_check_refuses_wrong_types)
{
    static const char *const cases[] = {
        "",
        "null",
        "1",
        "\"fcm\"",
        "[\"fcm\",\"t\"]",
        "{\"platform\":\"fcm\",\"token\":\"t\"",
        "{\"platform\":1,\"token\":\"t\"}",
        "{\"platform\":\"fcm\",\"token\":1}",
        "{\"platform\":\"fcm\",\"token\":{}}",
        "{\"platform\":[\"fcm\"],\"token\":\"t\"}",
        "{\"platform\":\"fcm\",\"token\":true,\"token\":\"t\"}",
    };
    size_t i;

    for (i = 0; i < RELAY_TE_COUNT(cases); i++) {
        ck_assert_msg(relay_test_env_push(cases[i]) == RELAY_PUSH_MALFORMED,
                      "case %zu %s", i, cases[i]);
    }
}
END_TEST


START_TEST(test_envelope_wrap_prefix_bytes)
{
    static const char want[] = "{\"conn_id\":\"client-abc-0123abcd\","
                               "\"frame\":";
    char out[128];
    size_t n;

    memset(out, 'Z', sizeof(out));
    n = relay_envelope_wrap_prefix(out, sizeof(out), "client-abc-0123abcd");
    ck_assert_uint_eq(n, sizeof(want) - 1);
    ck_assert_str_eq(out, want);
    ck_assert_uint_eq(n + 1, RELAY_ENVELOPE_WRAP_OVERHEAD(19));
}
END_TEST


START_TEST(test_envelope_wrap_prefix_capacity)
{
    char out[64];
    size_t need;

    need = sizeof("{\"conn_id\":\"c\",\"frame\":") - 1;

    memset(out, 'Z', sizeof(out));
    ck_assert_uint_eq(relay_envelope_wrap_prefix(out, need, "c"), need);
    ck_assert_mem_eq(out, "{\"conn_id\":\"c\",\"frame\":", need);
    ck_assert_int_eq(out[need], 'Z');

    ck_assert_uint_eq(relay_envelope_wrap_prefix(out, need - 1, "c"), 0);
    ck_assert_uint_eq(relay_envelope_wrap_prefix(out, 0, "c"), 0);
}
END_TEST


START_TEST(test_envelope_wrapped_message_decodes_back)
{
    static const char frame[] = " {\"type\":\"hello\",\"n\":[1, 2]} ";
    struct relay_envelope env;
    char out[256];
    size_t n;

    n = relay_envelope_wrap_prefix(out, sizeof(out), "client-s-00ff00ff");
    ck_assert_uint_gt(n, 0);
    memcpy(out + n, frame, sizeof(frame) - 1);
    n += sizeof(frame) - 1;
    out[n++] = '}';

    ck_assert_uint_eq(n, RELAY_ENVELOPE_WRAP_OVERHEAD(17) + sizeof(frame) - 1);
    ck_assert_int_eq(relay_test_env_decode_n(out, n, &env),
                     RELAY_ENV_DELIVER);
    ck_assert_str_eq(env.conn_id, "client-s-00ff00ff");
    ck_assert_uint_eq(env.frame_len, sizeof(frame) - 3);
    ck_assert_mem_eq(out + env.frame_off, frame + 1, env.frame_len);
}
END_TEST


START_TEST(test_envelope_close_notice_bytes)
{
    static const char want[] = "{\"conn_id\":\"client-abc-0123abcd\","
                               "\"close_code\":1001}";
    struct relay_envelope env;
    char out[128];
    size_t n;

    n = relay_envelope_close_notice(out, sizeof(out), "client-abc-0123abcd",
                                    1001);
    ck_assert_uint_eq(n, sizeof(want) - 1);
    ck_assert_str_eq(out, want);

    ck_assert_int_eq(relay_test_env_decode_n(out, n, &env), RELAY_ENV_CLOSE);
    ck_assert_int_eq(env.close_code, 1001);
    ck_assert_str_eq(env.conn_id, "client-abc-0123abcd");

    relay_envelope_close_notice(out, sizeof(out), "c", 0);
    ck_assert_str_eq(out, "{\"conn_id\":\"c\",\"close_code\":0}");
    relay_envelope_close_notice(out, sizeof(out), "c", 65535);
    ck_assert_str_eq(out, "{\"conn_id\":\"c\",\"close_code\":65535}");
    relay_envelope_close_notice(out, sizeof(out), "c", 4404);
    ck_assert_str_eq(out, "{\"conn_id\":\"c\",\"close_code\":4404}");
}
END_TEST


START_TEST(test_envelope_close_notice_capacity)
{
    char out[64];
    size_t need;

    need = sizeof("{\"conn_id\":\"c\",\"close_code\":1000}") - 1;

    memset(out, 'Z', sizeof(out));
    ck_assert_uint_eq(relay_envelope_close_notice(out, need, "c", 1000),
                      need);
    ck_assert_int_eq(out[need], 'Z');
    ck_assert_uint_eq(relay_envelope_close_notice(out, need - 1, "c", 1000),
                      0);
}
END_TEST


Suite *
relay_suite_envelope(void)
{
    Suite *s;
    TCase *tc;

    s = suite_create("envelope");

    tc = tcase_create("decision");
    tcase_add_test(tc, test_envelope_not_an_object_is_malformed);
    tcase_add_test(tc, test_envelope_too_deep_frame_is_malformed);
    tcase_add_test(tc, test_envelope_wrong_conn_id_type_is_malformed);
    tcase_add_test(tc, test_envelope_wrong_close_code_type_is_malformed);
    tcase_add_test(tc, test_envelope_close_code_edge_values);
    tcase_add_test(tc, test_envelope_push_wake_without_conn_id);
    tcase_add_test(tc, test_envelope_push_wake_span);
    tcase_add_test(tc, test_envelope_without_conn_id_is_dropped);
    tcase_add_test(tc, test_envelope_without_frame_is_dropped);
    tcase_add_test(tc, test_envelope_close_directive);
    tcase_add_test(tc, test_envelope_deliver);
    tcase_add_test(tc, test_envelope_malformed_leaves_nothing_behind);
    tcase_add_test(tc, test_envelope_every_prefix_is_malformed);
    suite_add_tcase(s, tc);

    tc = tcase_create("fields");
    tcase_add_test(tc, test_envelope_unknown_keys_are_ignored);
    tcase_add_test(tc, test_envelope_keys_match_ascii_case_insensitively);
    tcase_add_test(tc, test_envelope_escaped_keys_are_decoded);
    tcase_add_test(tc, test_envelope_last_duplicate_wins);
    tcase_add_test(tc, test_envelope_null_keeps_earlier_scalar);
    tcase_add_test(tc, test_envelope_any_wrong_duplicate_is_malformed);
    tcase_add_test(tc, test_envelope_frame_span_is_byte_exact);
    tcase_add_test(tc, test_envelope_conn_id_escapes_are_decoded);
    tcase_add_test(tc, test_envelope_longest_conn_id_fits);
    tcase_add_test(tc, test_envelope_overlong_conn_id_names_no_phone);
    tcase_add_test(tc, test_envelope_nul_in_conn_id_names_no_phone);
    suite_add_tcase(s, tc);

    tc = tcase_create("push");
    tcase_add_test(tc, test_envelope_push_check_accepts_fcm);
    tcase_add_test(tc, test_envelope_push_check_refuses_other_platforms);
    tcase_add_test(tc, test_envelope_push_check_refuses_empty_token);
    tcase_add_test(tc, test_envelope_push_check_refuses_wrong_types);
    suite_add_tcase(s, tc);

    tc = tcase_create("build");
    tcase_add_test(tc, test_envelope_wrap_prefix_bytes);
    tcase_add_test(tc, test_envelope_wrap_prefix_capacity);
    tcase_add_test(tc, test_envelope_wrapped_message_decodes_back);
    tcase_add_test(tc, test_envelope_close_notice_bytes);
    tcase_add_test(tc, test_envelope_close_notice_capacity);
    suite_add_tcase(s, tc);

    return s;
}
