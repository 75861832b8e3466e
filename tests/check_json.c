/*
 * check_json.c: the strict JSON scanner against RFC 8259, edge by edge.
 *
 * Every input is copied into a heap buffer of exactly its length before it
 * is scanned, so a sanitizer build catches any read past the end.  The
 * last test compares the scanner's verdict with jansson's on thousands of
 * generated and mutated inputs, excluding only the documented differences
 * between jansson and the RFC.
 */

#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#ifdef HAVE_JANSSON
#include <jansson.h>
#endif

#include "relay/json.h"

#include "suites.h"

/* A string literal's bytes without its NUL, so inputs may hold NULs. */
#define RELAY_TJ(s)     (s), (sizeof(s) - 1)

struct relay_test_json_case {
    const char *in;
    size_t len;
};

#define RELAY_TJ_CASE(s)    { (s), sizeof(s) - 1 }
#define RELAY_TJ_COUNT(a)   (sizeof(a) / sizeof((a)[0]))


static uint8_t *
relay_test_json_copy(const char *in, size_t len)
{
    uint8_t *buf;

    buf = malloc(len == 0 ? 1 : len);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, in, len);

    return buf;
}


static int
relay_test_json_validate(const char *in, size_t len)
{
    uint8_t *buf;
    int rc;

    buf = relay_test_json_copy(in, len);
    rc = relay_json_validate(buf, len);
    free(buf);

    return rc;
}


static int
relay_test_json_scan(const char *in, size_t len,
                     struct relay_json_member *members, size_t max,
                     size_t *count)
{
    uint8_t *buf;
    int rc;

    buf = relay_test_json_copy(in, len);
    rc = relay_json_scan_object(buf, len, members, max, count);
    free(buf);

    return rc;
}


static void
relay_test_json_expect(const struct relay_test_json_case *cases, size_t n,
                       int want)
{
    size_t i;
    int rc;

    for (i = 0; i < n; i++) {
        rc = relay_test_json_validate(cases[i].in, cases[i].len);
        ck_assert_msg(rc == want, "case %zu \"%.*s\": got %d, want %d", i,
                      (int) cases[i].len, cases[i].in, rc, want);
    }
}


/* Nest n arrays (or objects) around a scalar, into a malloc'd buffer. */
static char *
relay_test_json_nest(size_t n, int objects, size_t *len)
{
    char *buf, *p;
    size_t i;

    buf = malloc(n * 6 + 2);
    ck_assert_ptr_nonnull(buf);
    p = buf;
    for (i = 0; i < n; i++) {
        if (objects) {
            memcpy(p, "{\"a\":", 5);
            p += 5;
        } else {
            *p++ = '[';
        }
    }
    *p++ = '1';
    for (i = 0; i < n; i++) {
        *p++ = objects ? '}' : ']';
    }
    *len = (size_t) (p - buf);

    return buf;
}


START_TEST(test_json_literals_are_valid)
{
    static const struct relay_test_json_case ok[] = {
        RELAY_TJ_CASE("true"),
        RELAY_TJ_CASE("false"),
        RELAY_TJ_CASE("null"),
        RELAY_TJ_CASE(" \t\r\ntrue \t\r\n"),
        RELAY_TJ_CASE("[true,false,null]"),
    };

    relay_test_json_expect(ok, RELAY_TJ_COUNT(ok), RELAY_JSON_OK);
}
END_TEST


START_TEST(test_json_bad_literals_are_invalid)
{
    static const struct relay_test_json_case bad[] = {
        RELAY_TJ_CASE("True"),
        RELAY_TJ_CASE("FALSE"),
        RELAY_TJ_CASE("Null"),
        RELAY_TJ_CASE("tru"),
        RELAY_TJ_CASE("nul"),
        RELAY_TJ_CASE("f"),
        RELAY_TJ_CASE("truex"),
        RELAY_TJ_CASE("nulll"),
        RELAY_TJ_CASE("true false"),
        RELAY_TJ_CASE("NaN"),
        RELAY_TJ_CASE("Infinity"),
        RELAY_TJ_CASE("-Infinity"),
        RELAY_TJ_CASE("undefined"),
        RELAY_TJ_CASE("[tru]"),
    };

    relay_test_json_expect(bad, RELAY_TJ_COUNT(bad), RELAY_JSON_INVALID);
}
END_TEST


START_TEST(test_json_numbers_follow_the_grammar)
{
    static const struct relay_test_json_case ok[] = {
        RELAY_TJ_CASE("0"),
        RELAY_TJ_CASE("-0"),
        RELAY_TJ_CASE("1.5e-3"),
        RELAY_TJ_CASE("1E+2"),
        RELAY_TJ_CASE("7"),
        RELAY_TJ_CASE("10"),
        RELAY_TJ_CASE("-123"),
        RELAY_TJ_CASE("0.0"),
        RELAY_TJ_CASE("-0.25"),
        RELAY_TJ_CASE("0e0"),
        RELAY_TJ_CASE("0E-0"),
        RELAY_TJ_CASE("1e10"),
        RELAY_TJ_CASE("-1.0e+00"),
        RELAY_TJ_CASE("123456789012345678901234567890"),
        RELAY_TJ_CASE("1e999999"),
        RELAY_TJ_CASE(" 42 "),
        RELAY_TJ_CASE("[0,-0,1.5]"),
    };

    relay_test_json_expect(ok, RELAY_TJ_COUNT(ok), RELAY_JSON_OK);
}
END_TEST


START_TEST(test_json_bad_numbers_are_invalid)
{
    static const struct relay_test_json_case bad[] = {
        RELAY_TJ_CASE("01"),
        RELAY_TJ_CASE("-01"),
        RELAY_TJ_CASE("00"),
        RELAY_TJ_CASE("+1"),
        RELAY_TJ_CASE(".5"),
        RELAY_TJ_CASE("-.5"),
        RELAY_TJ_CASE("1."),
        RELAY_TJ_CASE("1.e3"),
        RELAY_TJ_CASE("1e"),
        RELAY_TJ_CASE("1e+"),
        RELAY_TJ_CASE("1E-"),
        RELAY_TJ_CASE("1ee2"),
        RELAY_TJ_CASE("1.5.5"),
        RELAY_TJ_CASE("-"),
        RELAY_TJ_CASE("--1"),
        RELAY_TJ_CASE("- 1"),
        RELAY_TJ_CASE("0x1"),
        RELAY_TJ_CASE("1 2"),
        RELAY_TJ_CASE("1e5.0"),
        RELAY_TJ_CASE("[01]"),
        RELAY_TJ_CASE("[1.]"),
        RELAY_TJ_CASE("{\"a\":-}"),
    };

    relay_test_json_expect(bad, RELAY_TJ_COUNT(bad), RELAY_JSON_INVALID);
}
END_TEST


START_TEST(test_json_strings_with_escapes_are_valid)
{
    static const struct relay_test_json_case ok[] = {
        RELAY_TJ_CASE("\"\""),
        RELAY_TJ_CASE("\"abc\""),
        RELAY_TJ_CASE("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""),
        RELAY_TJ_CASE("\"\\u0041\\u00e9\\u20AC\\uFFFF\""),
        RELAY_TJ_CASE("\"\\u0000\""),
        RELAY_TJ_CASE("\"\\ud83d\\ude00\""),
        RELAY_TJ_CASE("\"\\uD834\\uDD1E\""),
        RELAY_TJ_CASE("\"\\uDBFF\\uDFFF\""),
        RELAY_TJ_CASE("\"\\uD800\\uDC00\""),
        RELAY_TJ_CASE("\"\\ud7ff\\ue000\""),
        RELAY_TJ_CASE("\"\x7f\""),
        RELAY_TJ_CASE("\"a b\\tc\""),
    };

    relay_test_json_expect(ok, RELAY_TJ_COUNT(ok), RELAY_JSON_OK);
}
END_TEST


START_TEST(test_json_bad_escapes_are_invalid)
{
    static const struct relay_test_json_case bad[] = {
        RELAY_TJ_CASE("\"abc"),
        RELAY_TJ_CASE("\""),
        RELAY_TJ_CASE("\"\\\""),
        RELAY_TJ_CASE("\"\\x41\""),
        RELAY_TJ_CASE("\"\\a\""),
        RELAY_TJ_CASE("\"\\'\""),
        RELAY_TJ_CASE("\"\\U0041\""),
        RELAY_TJ_CASE("\"\\0\""),
        RELAY_TJ_CASE("\"\\u12\""),
        RELAY_TJ_CASE("\"\\u12G4\""),
        RELAY_TJ_CASE("\"\\u"),
        RELAY_TJ_CASE("\"\\ud800\""),
        RELAY_TJ_CASE("\"\\uDBFF\""),
        RELAY_TJ_CASE("\"\\udc00\""),
        RELAY_TJ_CASE("\"\\uDFFF\\uD800\""),
        RELAY_TJ_CASE("\"\\ud800x\""),
        RELAY_TJ_CASE("\"\\ud800\\u0041\""),
        RELAY_TJ_CASE("\"\\ud800\\ud800\""),
        RELAY_TJ_CASE("\"\\ud800\\n\""),
        RELAY_TJ_CASE("\"\\ud800\\udc0\""),
        RELAY_TJ_CASE("'abc'"),
    };

    relay_test_json_expect(bad, RELAY_TJ_COUNT(bad), RELAY_JSON_INVALID);
}
END_TEST


START_TEST(test_json_raw_control_bytes_are_invalid)
{
    char in[3];
    int c;

    for (c = 0; c < 0x20; c++) {
        in[0] = '"';
        in[1] = (char) c;
        in[2] = '"';
        ck_assert_int_eq(relay_test_json_validate(in, 3),
                         RELAY_JSON_INVALID);
    }
}
END_TEST


START_TEST(test_json_valid_utf8_is_accepted)
{
    static const struct relay_test_json_case ok[] = {
        RELAY_TJ_CASE("\"\xc2\x80\""),                  /* U+0080 */
        RELAY_TJ_CASE("\"\xc3\xa9\""),                  /* U+00E9 */
        RELAY_TJ_CASE("\"\xdf\xbf\""),                  /* U+07FF */
        RELAY_TJ_CASE("\"\xe0\xa0\x80\""),              /* U+0800 */
        RELAY_TJ_CASE("\"\xe2\x82\xac\""),              /* U+20AC */
        RELAY_TJ_CASE("\"\xed\x9f\xbf\""),              /* U+D7FF */
        RELAY_TJ_CASE("\"\xee\x80\x80\""),              /* U+E000 */
        RELAY_TJ_CASE("\"\xef\xbf\xbf\""),              /* U+FFFF */
        RELAY_TJ_CASE("\"\xf0\x90\x80\x80\""),          /* U+10000 */
        RELAY_TJ_CASE("\"\xf0\x9f\x98\x80\""),          /* U+1F600 */
        RELAY_TJ_CASE("\"\xf3\xbf\xbf\xbf\""),          /* U+FFFFF */
        RELAY_TJ_CASE("\"\xf4\x8f\xbf\xbf\""),          /* U+10FFFF */
        RELAY_TJ_CASE("{\"\xc3\xa9\":\"\xe2\x82\xac\"}"),
    };

    relay_test_json_expect(ok, RELAY_TJ_COUNT(ok), RELAY_JSON_OK);
}
END_TEST


START_TEST(test_json_invalid_utf8_is_refused)
{
    static const struct relay_test_json_case bad[] = {
        RELAY_TJ_CASE("\"\xc0\x80\""),                  /* overlong NUL */
        RELAY_TJ_CASE("\"\xc1\xbf\""),                  /* overlong */
        RELAY_TJ_CASE("\"\xe0\x80\x80\""),              /* overlong */
        RELAY_TJ_CASE("\"\xe0\x9f\xbf\""),              /* overlong */
        RELAY_TJ_CASE("\"\xed\xa0\x80\""),              /* U+D800 */
        RELAY_TJ_CASE("\"\xed\xbf\xbf\""),              /* U+DFFF */
        RELAY_TJ_CASE("\"\xf0\x80\x80\x80\""),          /* overlong */
        RELAY_TJ_CASE("\"\xf0\x8f\xbf\xbf\""),          /* overlong */
        RELAY_TJ_CASE("\"\xf4\x90\x80\x80\""),          /* U+110000 */
        RELAY_TJ_CASE("\"\xf5\x80\x80\x80\""),
        RELAY_TJ_CASE("\"\xf8\x88\x80\x80\x80\""),
        RELAY_TJ_CASE("\"\xfe\""),
        RELAY_TJ_CASE("\"\xff\""),
        RELAY_TJ_CASE("\"\x80\""),                      /* lone tail */
        RELAY_TJ_CASE("\"\xbf\""),
        RELAY_TJ_CASE("\"\xc3\""),                      /* truncated */
        RELAY_TJ_CASE("\"\xe2\x82\""),
        RELAY_TJ_CASE("\"\xf0\x9f\x98\""),
        RELAY_TJ_CASE("\"\xc3"),                        /* at the end */
        RELAY_TJ_CASE("\"\xe2\x82"),
        RELAY_TJ_CASE("\"\xf0\x9f\x98"),
        RELAY_TJ_CASE("\"\xc3\x41\""),                  /* bad tail */
        RELAY_TJ_CASE("\"\xe2\x28\xa1\""),
        RELAY_TJ_CASE("\"\xe2\x82\x28\""),
        RELAY_TJ_CASE("\"\xf0\x9f\x28\x80\""),
        RELAY_TJ_CASE("\"\xf0\x9f\x98\xc0\""),
        RELAY_TJ_CASE("\xc3\xa9"),                      /* outside a string */
        RELAY_TJ_CASE("\xef\xbb\xbf" "1"),              /* byte order mark */
        RELAY_TJ_CASE("[1]\xc2\xa0"),                   /* no-break space */
    };

    relay_test_json_expect(bad, RELAY_TJ_COUNT(bad), RELAY_JSON_INVALID);
}
END_TEST


START_TEST(test_json_every_single_byte_string)
{
    char in[3];
    int c, want;

    for (c = 0; c < 256; c++) {
        in[0] = '"';
        in[1] = (char) c;
        in[2] = '"';
        want = c >= 0x20 && c < 0x80 && c != '"' && c != '\\'
                   ? RELAY_JSON_OK
                   : RELAY_JSON_INVALID;
        ck_assert_msg(relay_test_json_validate(in, 3) == want, "byte 0x%02x",
                      c);
    }
}
END_TEST


START_TEST(test_json_every_single_byte_text)
{
    char in[1];
    int c, want;

    for (c = 0; c < 256; c++) {
        in[0] = (char) c;
        want = c >= '0' && c <= '9' ? RELAY_JSON_OK : RELAY_JSON_INVALID;
        ck_assert_msg(relay_test_json_validate(in, 1) == want, "byte 0x%02x",
                      c);
    }
}
END_TEST


/*
 * Strings are skipped eight bytes at a time; put each kind of special byte
 * in every lane and at both ends of a long run, so no position is missed.
 */
START_TEST(test_json_special_bytes_are_seen_at_every_offset)
{
    static const struct {
        const char *bytes;
        size_t len;
        int want;
    } specials[] = {
        { "\x01", 1, RELAY_JSON_INVALID },
        { "\x1f", 1, RELAY_JSON_INVALID },
        { "\x00", 1, RELAY_JSON_INVALID },
        { "\xff", 1, RELAY_JSON_INVALID },
        { "\xc3\xa9", 2, RELAY_JSON_OK },
        { "\xed\xa0\x80", 3, RELAY_JSON_INVALID },
        { "\\n", 2, RELAY_JSON_OK },
        { "\\q", 2, RELAY_JSON_INVALID },
        { "\"", 1, RELAY_JSON_INVALID },
        { "\x7f", 1, RELAY_JSON_OK },
    };
    char in[64];
    size_t i, at, n;
    int rc;

    for (i = 0; i < RELAY_TJ_COUNT(specials); i++) {
        for (at = 0; at <= 40; at++) {
            n = 0;
            in[n++] = '"';
            memset(in + n, 'a', at);
            n += at;
            memcpy(in + n, specials[i].bytes, specials[i].len);
            n += specials[i].len;
            memset(in + n, 'b', 40 - at);
            n += 40 - at;
            in[n++] = '"';

            rc = relay_test_json_validate(in, n);
            ck_assert_msg(rc == specials[i].want, "special %zu at %zu: %d",
                          i, at, rc);
        }
    }
}
END_TEST


START_TEST(test_json_structures_are_valid)
{
    static const struct relay_test_json_case ok[] = {
        RELAY_TJ_CASE("[]"),
        RELAY_TJ_CASE("{}"),
        RELAY_TJ_CASE("[[]]"),
        RELAY_TJ_CASE("[{}]"),
        RELAY_TJ_CASE("[1,2,3]"),
        RELAY_TJ_CASE("{\"a\":1,\"b\":[true,{\"c\":null}]}"),
        RELAY_TJ_CASE(" { \"a\" : [ 1 , 2 ] , \"b\" : { } } "),
        RELAY_TJ_CASE("\t\r\n[\t\r\n1\t\r\n]\t\r\n"),
        RELAY_TJ_CASE("{\"a\":1,\"a\":2}"),
        RELAY_TJ_CASE("{\"\":\"\"}"),
        RELAY_TJ_CASE("[\"]\",\"}\",\"[\",\"{\",\",\",\":\"]"),
        RELAY_TJ_CASE("{\"x\\\"y\":\"\\\\\"}"),
    };

    relay_test_json_expect(ok, RELAY_TJ_COUNT(ok), RELAY_JSON_OK);
}
END_TEST


START_TEST(test_json_bad_structures_are_invalid)
{
    static const struct relay_test_json_case bad[] = {
        RELAY_TJ_CASE("["),
        RELAY_TJ_CASE("{"),
        RELAY_TJ_CASE("]"),
        RELAY_TJ_CASE("}"),
        RELAY_TJ_CASE("[1,]"),
        RELAY_TJ_CASE("[,1]"),
        RELAY_TJ_CASE("[,]"),
        RELAY_TJ_CASE("[1 2]"),
        RELAY_TJ_CASE("[1:2]"),
        RELAY_TJ_CASE("{\"a\":1,}"),
        RELAY_TJ_CASE("{,}"),
        RELAY_TJ_CASE("{\"a\"}"),
        RELAY_TJ_CASE("{\"a\":}"),
        RELAY_TJ_CASE("{\"a\" 1}"),
        RELAY_TJ_CASE("{\"a\"::1}"),
        RELAY_TJ_CASE("{a:1}"),
        RELAY_TJ_CASE("{1:1}"),
        RELAY_TJ_CASE("{null:1}"),
        RELAY_TJ_CASE("{\"a\":1 \"b\":2}"),
        RELAY_TJ_CASE("{\"a\",1}"),
        RELAY_TJ_CASE("[}"),
        RELAY_TJ_CASE("{]"),
        RELAY_TJ_CASE("[1}"),
        RELAY_TJ_CASE("{\"a\":1]"),
        RELAY_TJ_CASE("[1]]"),
        RELAY_TJ_CASE("{}}"),
        RELAY_TJ_CASE("[[]"),
        RELAY_TJ_CASE("{\"a\":{}"),
    };

    relay_test_json_expect(bad, RELAY_TJ_COUNT(bad), RELAY_JSON_INVALID);
}
END_TEST


START_TEST(test_json_only_one_value_with_whitespace_around)
{
    static const struct relay_test_json_case bad[] = {
        RELAY_TJ_CASE(""),
        RELAY_TJ_CASE(" "),
        RELAY_TJ_CASE(" \t\r\n"),
        RELAY_TJ_CASE("{} {}"),
        RELAY_TJ_CASE("[][]"),
        RELAY_TJ_CASE("1,2"),
        RELAY_TJ_CASE("[1];"),
        RELAY_TJ_CASE("1 x"),
        RELAY_TJ_CASE("1\0"),
        RELAY_TJ_CASE("[1]\0"),
        RELAY_TJ_CASE("true\0"),
        RELAY_TJ_CASE("\0[1]"),
        RELAY_TJ_CASE("\f1"),
        RELAY_TJ_CASE("1\v"),
        RELAY_TJ_CASE("\"a\"\"b\""),
        RELAY_TJ_CASE("/* */ 1"),
        RELAY_TJ_CASE("1 // c"),
    };
    static const struct relay_test_json_case ok[] = {
        RELAY_TJ_CASE(" 1"),
        RELAY_TJ_CASE("1 "),
        RELAY_TJ_CASE("\r\n{}\r\n"),
        RELAY_TJ_CASE("\t\"x\"\t"),
    };

    relay_test_json_expect(bad, RELAY_TJ_COUNT(bad), RELAY_JSON_INVALID);
    relay_test_json_expect(ok, RELAY_TJ_COUNT(ok), RELAY_JSON_OK);
}
END_TEST


START_TEST(test_json_nesting_at_the_limit_is_valid)
{
    char *in;
    size_t len;

    in = relay_test_json_nest(RELAY_JSON_MAX_DEPTH, 0, &len);
    ck_assert_int_eq(relay_test_json_validate(in, len), RELAY_JSON_OK);
    free(in);

    in = relay_test_json_nest(RELAY_JSON_MAX_DEPTH, 1, &len);
    ck_assert_int_eq(relay_test_json_validate(in, len), RELAY_JSON_OK);
    free(in);
}
END_TEST


START_TEST(test_json_nesting_past_the_limit_is_too_deep)
{
    char *in;
    size_t len;

    in = relay_test_json_nest(RELAY_JSON_MAX_DEPTH + 1, 0, &len);
    ck_assert_int_eq(relay_test_json_validate(in, len), RELAY_JSON_TOO_DEEP);
    free(in);

    in = relay_test_json_nest(RELAY_JSON_MAX_DEPTH + 1, 1, &len);
    ck_assert_int_eq(relay_test_json_validate(in, len), RELAY_JSON_TOO_DEEP);
    ck_assert_int_eq(relay_test_json_scan(in, len, NULL, 0, NULL),
                     RELAY_JSON_TOO_DEEP);
    free(in);

    /* Refused as soon as it gets too deep, whatever follows. */
    in = relay_test_json_nest(RELAY_JSON_MAX_DEPTH + 1, 0, &len);
    ck_assert_int_eq(relay_test_json_validate(in, RELAY_JSON_MAX_DEPTH + 1),
                     RELAY_JSON_TOO_DEEP);
    free(in);

    in = relay_test_json_nest(100000, 0, &len);
    ck_assert_int_eq(relay_test_json_validate(in, len), RELAY_JSON_TOO_DEEP);
    free(in);
}
END_TEST


START_TEST(test_json_depth_is_not_length)
{
    char *in, *p;
    size_t i, n;

    /* Many siblings at depth 2 never add up to a deep document. */
    n = 10000;
    in = malloc(n * 3 + 2);
    ck_assert_ptr_nonnull(in);
    p = in;
    *p++ = '[';
    for (i = 0; i < n; i++) {
        memcpy(p, i == 0 ? "[]" : ",[]", i == 0 ? 2 : 3);
        p += i == 0 ? 2 : 3;
    }
    *p++ = ']';

    ck_assert_int_eq(relay_test_json_validate(in, (size_t) (p - in)),
                     RELAY_JSON_OK);
    free(in);
}
END_TEST


START_TEST(test_json_every_prefix_of_an_object_is_invalid)
{
    static const char doc[] =
        "{\"a\":[1,-2.5e+3,true,false,null,\"\\u00e9\\ud83d\\ude00\"],"
        "\"b\":{\"c\":\"\xe2\x82\xac\",\"d\":{}},\"e\":\"\"}";
    size_t cut;

    ck_assert_int_eq(relay_test_json_validate(RELAY_TJ(doc)), RELAY_JSON_OK);
    for (cut = 0; cut < sizeof(doc) - 1; cut++) {
        ck_assert_msg(relay_test_json_validate(doc, cut)
                          == RELAY_JSON_INVALID,
                      "prefix of %zu bytes", cut);
    }
}
END_TEST


START_TEST(test_json_scan_reports_member_spans)
{
    static const char doc[] =
        " {\"a\":1, \"bc\" : \"x y\" ,\"d\":{\"e\":[1, 2]},\"f\":null,"
        "\"g\":true,\"h\":false,\"i\":[ ],\"j\\n\":-0.5e1 } ";
    static const struct {
        const char *key;
        const char *val;
        int type;
    } want[] = {
        { "a", "1", RELAY_JSON_NUMBER },
        { "bc", "\"x y\"", RELAY_JSON_STRING },
        { "d", "{\"e\":[1, 2]}", RELAY_JSON_OBJECT },
        { "f", "null", RELAY_JSON_NULL },
        { "g", "true", RELAY_JSON_TRUE },
        { "h", "false", RELAY_JSON_FALSE },
        { "i", "[ ]", RELAY_JSON_ARRAY },
        { "j\\n", "-0.5e1", RELAY_JSON_NUMBER },
    };
    struct relay_json_member m[16];
    size_t count, i;

    ck_assert_int_eq(relay_test_json_scan(RELAY_TJ(doc), m, 16, &count),
                     RELAY_JSON_OK);
    ck_assert_uint_eq(count, RELAY_TJ_COUNT(want));

    for (i = 0; i < count; i++) {
        ck_assert_uint_eq(m[i].key_len, strlen(want[i].key));
        ck_assert_mem_eq(doc + m[i].key_off, want[i].key, m[i].key_len);
        ck_assert_uint_eq(m[i].val_len, strlen(want[i].val));
        ck_assert_mem_eq(doc + m[i].val_off, want[i].val, m[i].val_len);
        ck_assert_int_eq(m[i].type, want[i].type);
    }
}
END_TEST


START_TEST(test_json_scan_reports_only_top_level_members)
{
    static const char doc[] = "{\"o\":{\"x\":1,\"y\":2},\"p\":[{\"z\":3}]}";
    struct relay_json_member m[8];
    size_t count;

    ck_assert_int_eq(relay_test_json_scan(RELAY_TJ(doc), m, 8, &count),
                     RELAY_JSON_OK);
    ck_assert_uint_eq(count, 2);
    ck_assert_mem_eq(doc + m[0].key_off, "o", 1);
    ck_assert_mem_eq(doc + m[1].key_off, "p", 1);
    ck_assert_uint_eq(m[1].val_off + m[1].val_len, sizeof(doc) - 2);
}
END_TEST


START_TEST(test_json_scan_empty_object_has_no_members)
{
    struct relay_json_member m[1];
    size_t count;

    count = 99;
    ck_assert_int_eq(relay_test_json_scan(RELAY_TJ(" { } "), m, 1, &count),
                     RELAY_JSON_OK);
    ck_assert_uint_eq(count, 0);
}
END_TEST


START_TEST(test_json_scan_counts_past_max)
{
    static const char doc[] = "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":[5]}";
    struct relay_json_member m[3];
    size_t count;

    memset(m, 0xa5, sizeof(m));
    ck_assert_int_eq(relay_test_json_scan(RELAY_TJ(doc), m, 2, &count),
                     RELAY_JSON_OK);
    ck_assert_uint_eq(count, 5);
    ck_assert_mem_eq(doc + m[0].key_off, "a", 1);
    ck_assert_mem_eq(doc + m[1].key_off, "b", 1);
    ck_assert_uint_eq(m[2].key_off, (size_t) 0xa5a5a5a5a5a5a5a5ULL);

    ck_assert_int_eq(relay_test_json_scan(RELAY_TJ(doc), NULL, 0, &count),
                     RELAY_JSON_OK);
    ck_assert_uint_eq(count, 5);
}
END_TEST


START_TEST(test_json_scan_still_validates_past_max)
{
    static const char doc[] = "{\"a\":1,\"b\":2,\"c\":01}";
    struct relay_json_member m[1];
    size_t count;

    count = 99;
    ck_assert_int_eq(relay_test_json_scan(RELAY_TJ(doc), m, 1, &count),
                     RELAY_JSON_INVALID);
    ck_assert_uint_eq(count, 0);
}
END_TEST


START_TEST(test_json_scan_refuses_other_top_levels)
{
    static const struct relay_test_json_case not_object[] = {
        RELAY_TJ_CASE("[1]"),
        RELAY_TJ_CASE("\"x\""),
        RELAY_TJ_CASE("1"),
        RELAY_TJ_CASE(" null "),
        RELAY_TJ_CASE("[{\"a\":1}]"),
    };
    static const struct relay_test_json_case invalid[] = {
        RELAY_TJ_CASE(""),
        RELAY_TJ_CASE("[1"),
        RELAY_TJ_CASE("x"),
        RELAY_TJ_CASE("{\"a\":1"),
        RELAY_TJ_CASE("{\"a\":1}x"),
    };
    size_t count, i;

    for (i = 0; i < RELAY_TJ_COUNT(not_object); i++) {
        ck_assert_int_eq(relay_test_json_scan(not_object[i].in,
                                              not_object[i].len, NULL, 0,
                                              &count),
                         RELAY_JSON_NOT_OBJECT);
    }
    for (i = 0; i < RELAY_TJ_COUNT(invalid); i++) {
        ck_assert_int_eq(relay_test_json_scan(invalid[i].in, invalid[i].len,
                                              NULL, 0, &count),
                         RELAY_JSON_INVALID);
    }
}
END_TEST


static void
relay_test_json_count_member(const struct relay_json_member *m, void *arg)
{
    size_t *n = arg;

    (void) m;
    (*n)++;
}


START_TEST(test_json_scan_members_calls_back_each_member)
{
    static const char doc[] = "{\"a\":1,\"a\":2,\"b\":{\"c\":3}}";
    size_t n;

    n = 0;
    ck_assert_int_eq(relay_json_scan_members((const uint8_t *) doc,
                                             sizeof(doc) - 1,
                                             relay_test_json_count_member,
                                             &n),
                     RELAY_JSON_OK);
    ck_assert_uint_eq(n, 3);

    ck_assert_int_eq(relay_json_scan_members((const uint8_t *) doc,
                                             sizeof(doc) - 1, NULL, NULL),
                     RELAY_JSON_OK);
}
END_TEST


START_TEST(test_json_decode_handles_every_escape)
{
    static const char raw[] =
        "a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20ac\\ud83d\\ude00"
        "\xc3\xa9z";
    static const char want[] =
        "a\"\\/\b\f\n\r\tA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9z";
    char out[64];
    long n;

    n = relay_json_string_decode((const uint8_t *) raw, sizeof(raw) - 1, out,
                                 sizeof(out));
    ck_assert_int_eq(n, (long) sizeof(want) - 1);
    ck_assert_str_eq(out, want);
}
END_TEST


START_TEST(test_json_decode_respects_capacity)
{
    char out[8];

    ck_assert_int_eq(relay_json_string_decode((const uint8_t *) "abc", 3, out,
                                              4),
                     3);
    ck_assert_str_eq(out, "abc");
    ck_assert_int_eq(relay_json_string_decode((const uint8_t *) "abc", 3, out,
                                              3),
                     -1);
    ck_assert_int_eq(relay_json_string_decode((const uint8_t *) "abc", 3, out,
                                              0),
                     -1);
    /* A multi-byte character does not get cut in half. */
    ck_assert_int_eq(relay_json_string_decode((const uint8_t *) "a\\u20ac",
                                              7, out, 4),
                     -1);
    ck_assert_int_eq(relay_json_string_decode((const uint8_t *) "a\\u20ac",
                                              7, out, 5),
                     4);
    ck_assert_int_eq(relay_json_string_decode((const uint8_t *) "", 0, out,
                                              1),
                     0);
    ck_assert_str_eq(out, "");
}
END_TEST


START_TEST(test_json_decode_refuses_nul_and_bad_escapes)
{
    char out[16];

    ck_assert_int_eq(relay_json_string_decode((const uint8_t *) "a\\u0000b",
                                              8, out, sizeof(out)),
                     -1);
    ck_assert_int_eq(relay_json_string_decode((const uint8_t *) "a\\u00", 5,
                                              out, sizeof(out)),
                     -1);
    ck_assert_int_eq(relay_json_string_decode((const uint8_t *) "a\\", 2, out,
                                              sizeof(out)),
                     -1);
    ck_assert_int_eq(relay_json_string_decode((const uint8_t *) "\\udc00", 6,
                                              out, sizeof(out)),
                     -1);
    ck_assert_int_eq(relay_json_string_decode((const uint8_t *) "a\0b", 3,
                                              out, sizeof(out)),
                     -1);
}
END_TEST


#ifdef HAVE_JANSSON

/*
 * Differential test against jansson.  Inputs come from a generator of
 * valid texts, half of them then mutated, all from a fixed seed so a
 * failure reproduces.  jansson is run with JSON_DECODE_ANY (RFC 8259 allows
 * any value at the top) and JSON_ALLOW_NUL (the RFC allows \u0000 in
 * strings).  The differences that remain are jansson's, not the RFC's,
 * and are left out of the comparison:
 *   - nesting: we refuse past RELAY_JSON_MAX_DEPTH, jansson at 2048;
 *   - numbers out of the range of its int64 and double, which the RFC
 *     allows ("too big integer", "real number overflow"; a subnormal
 *     result also reports overflow);
 *   - \u0000 inside an object key ("NUL byte in object key");
 *   - a raw NUL byte right after a number or literal, which jansson takes
 *     as the end of the token and then ignores ("[1\0]" loads), although
 *     a NUL can never be part of a JSON text.  We check that every input
 *     holding a raw NUL is refused instead.
 */

struct relay_test_json_gen {
    uint64_t state;
    char *buf;
    size_t len;
    size_t cap;
};

#define RELAY_TJ_GEN_CAP    4096


static uint32_t
relay_test_json_rand(struct relay_test_json_gen *g, uint32_t n)
{
    /* xorshift64*: small, and the same sequence on every platform. */
    g->state ^= g->state >> 12;
    g->state ^= g->state << 25;
    g->state ^= g->state >> 27;

    return (uint32_t) ((g->state * 0x2545f4914f6cdd1dULL) >> 32) % n;
}


static void
relay_test_json_put(struct relay_test_json_gen *g, const char *s, size_t n)
{
    if (g->len + n > g->cap) {
        return;
    }
    memcpy(g->buf + g->len, s, n);
    g->len += n;
}


static void
relay_test_json_gen_ws(struct relay_test_json_gen *g)
{
    static const char ws[] = " \t\r\n";

    while (relay_test_json_rand(g, 4) == 0) {
        relay_test_json_put(g, &ws[relay_test_json_rand(g, 4)], 1);
    }
}


static void
relay_test_json_gen_digits(struct relay_test_json_gen *g, int lead)
{
    char d;
    uint32_t n;

    n = 1 + relay_test_json_rand(g, relay_test_json_rand(g, 8) == 0 ? 30 : 3);
    while (n-- > 0) {
        d = (char) ('0' + relay_test_json_rand(g, 10));
        if (lead && d == '0') {
            d = '1';
        }
        lead = 0;
        relay_test_json_put(g, &d, 1);
    }
}


static void
relay_test_json_gen_number(struct relay_test_json_gen *g)
{
    if (relay_test_json_rand(g, 3) == 0) {
        relay_test_json_put(g, "-", 1);
    }
    if (relay_test_json_rand(g, 4) == 0) {
        relay_test_json_put(g, "0", 1);
    } else {
        relay_test_json_gen_digits(g, 1);
    }
    if (relay_test_json_rand(g, 3) == 0) {
        relay_test_json_put(g, ".", 1);
        relay_test_json_gen_digits(g, 0);
    }
    if (relay_test_json_rand(g, 4) == 0) {
        relay_test_json_put(g, relay_test_json_rand(g, 2) ? "e" : "E", 1);
        switch (relay_test_json_rand(g, 3)) {
        case 0:
            relay_test_json_put(g, "+", 1);
            break;
        case 1:
            relay_test_json_put(g, "-", 1);
            break;
        default:
            break;
        }
        relay_test_json_gen_digits(g, 0);
    }
}


static void
relay_test_json_gen_string(struct relay_test_json_gen *g)
{
    static const char *const pieces[] = {
        "a", "Z", " ", "~", "\x7f", "\\\"", "\\\\", "\\/", "\\b", "\\f",
        "\\n", "\\r", "\\t", "\\u0041", "\\u00e9", "\\u0000", "\\uFFFF",
        "\\ud83d\\ude00", "\\uDBFF\\uDFFF", "\\ud800", "\\udc00",
        "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
        "\xed\x9f\xbf", "\xee\x80\x80", "abcdefghijklmnop",
    };
    uint32_t n;
    const char *p;

    relay_test_json_put(g, "\"", 1);
    n = relay_test_json_rand(g, 12);
    while (n-- > 0) {
        p = pieces[relay_test_json_rand(g, RELAY_TJ_COUNT(pieces))];
        /* The lone surrogates stay rare so most strings are valid. */
        if ((strcmp(p, "\\ud800") == 0 || strcmp(p, "\\udc00") == 0)
            && relay_test_json_rand(g, 8) != 0) {
            p = "x";
        }
        relay_test_json_put(g, p, strlen(p));
    }
    relay_test_json_put(g, "\"", 1);
}


static void
relay_test_json_gen_value(struct relay_test_json_gen *g, int depth)
{
    uint32_t n, i, kind;

    relay_test_json_gen_ws(g);
    kind = relay_test_json_rand(g, depth > 6 ? 6 : 9);
    switch (kind) {
    case 0:
        relay_test_json_put(g, "true", 4);
        break;
    case 1:
        relay_test_json_put(g, "false", 5);
        break;
    case 2:
        relay_test_json_put(g, "null", 4);
        break;
    case 3:
    case 4:
        relay_test_json_gen_number(g);
        break;
    case 5:
        relay_test_json_gen_string(g);
        break;
    case 6:
    case 7:
        relay_test_json_put(g, "[", 1);
        n = relay_test_json_rand(g, 5);
        for (i = 0; i < n; i++) {
            if (i > 0) {
                relay_test_json_put(g, ",", 1);
            }
            relay_test_json_gen_value(g, depth + 1);
        }
        relay_test_json_gen_ws(g);
        relay_test_json_put(g, "]", 1);
        break;
    default:
        relay_test_json_put(g, "{", 1);
        n = relay_test_json_rand(g, 5);
        for (i = 0; i < n; i++) {
            if (i > 0) {
                relay_test_json_put(g, ",", 1);
            }
            relay_test_json_gen_ws(g);
            relay_test_json_gen_string(g);
            relay_test_json_gen_ws(g);
            relay_test_json_put(g, ":", 1);
            relay_test_json_gen_value(g, depth + 1);
        }
        relay_test_json_gen_ws(g);
        relay_test_json_put(g, "}", 1);
        break;
    }
    relay_test_json_gen_ws(g);
}


static void
relay_test_json_mutate(struct relay_test_json_gen *g)
{
    static const char bytes[] = "{}[],:\"\\0123456789.eE+-tfnulr \t\n\x01"
                                "\x80\xbf\xc0\xc3\xe0\xed\xf0\xf4\xf5\xff";
    uint32_t rounds, at;
    char c;

    rounds = 1 + relay_test_json_rand(g, 3);
    while (rounds-- > 0 && g->len > 0) {
        at = relay_test_json_rand(g, (uint32_t) g->len);
        c = bytes[relay_test_json_rand(g, sizeof(bytes))];
        switch (relay_test_json_rand(g, 5)) {
        case 0:
            g->buf[at] = c;
            break;
        case 1:
            if (g->len < g->cap) {
                memmove(g->buf + at + 1, g->buf + at, g->len - at);
                g->buf[at] = c;
                g->len++;
            }
            break;
        case 2:
            memmove(g->buf + at, g->buf + at + 1, g->len - at - 1);
            g->len--;
            break;
        case 3:
            g->len = at;
            break;
        default:
            g->buf[at] ^= (char) (1u << relay_test_json_rand(g, 8));
            break;
        }
    }
}


static int
relay_test_json_jansson_excused(const json_error_t *err)
{
    return strstr(err->text, "too big") != NULL
           || strstr(err->text, "overflow") != NULL
           || strstr(err->text, "NUL byte in object key") != NULL
           || strstr(err->text, "maximum parsing depth") != NULL;
}


START_TEST(test_json_agrees_with_jansson)
{
    struct relay_test_json_gen g;
    json_error_t err;
    json_t *j;
    uint8_t *copy;
    size_t both_ok, both_bad, excused, i;
    int ours, theirs;

    memset(&g, 0, sizeof(g));
    g.state = 0x9e3779b97f4a7c15ULL;
    g.cap = RELAY_TJ_GEN_CAP;
    g.buf = malloc(g.cap);
    ck_assert_ptr_nonnull(g.buf);
    both_ok = both_bad = excused = 0;

    for (i = 0; i < 6000; i++) {
        g.len = 0;
        relay_test_json_gen_value(&g, 0);
        if (g.len == g.cap) {
            continue;
        }
        if (i % 2 == 1) {
            relay_test_json_mutate(&g);
        }

        copy = relay_test_json_copy(g.buf, g.len);
        ours = relay_json_validate(copy, g.len);
        free(copy);

        if (memchr(g.buf, '\0', g.len) != NULL) {
            ck_assert_msg(ours == RELAY_JSON_INVALID,
                          "input %zu holds a NUL byte but was accepted", i);
            excused++;
            continue;
        }
        if (ours == RELAY_JSON_TOO_DEEP) {
            excused++;
            continue;
        }

        j = json_loadb(g.buf, g.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        theirs = j != NULL ? RELAY_JSON_OK : RELAY_JSON_INVALID;
        json_decref(j);

        if (ours == RELAY_JSON_OK && theirs == RELAY_JSON_INVALID
            && relay_test_json_jansson_excused(&err)) {
            excused++;
            continue;
        }

        ck_assert_msg(ours == theirs,
                      "input %zu \"%.*s\": ours %d, jansson %d (%s)", i,
                      (int) g.len, g.buf, ours, theirs,
                      j == NULL ? err.text : "ok");
        if (ours == RELAY_JSON_OK) {
            both_ok++;
        } else {
            both_bad++;
        }
    }
    free(g.buf);

    /* Both verdicts must be well represented or the test proves little. */
    ck_assert_uint_gt(both_ok, 1500);
    ck_assert_uint_gt(both_bad, 1500);
    ck_assert_uint_lt(excused, 600);
}
END_TEST

#endif


START_TEST(test_json_utf8_valid_agrees_with_string_rules)
{
    static const struct {
        const char *bytes;
        size_t len;
        int valid;
    } rows[] = {
        { "", 0, 1 },
        { "plain ascii, longer than one word", 33, 1 },
        { "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11, 1 },
        { "abcdefgh\xf0\x9d\x84\x9e", 12, 1 },     /* U+1D11E */
        { "\xc0\x80", 2, 0 },                        /* overlong NUL */
        { "\xe0\x80\x80", 3, 0 },                    /* overlong */
        { "\xed\xa0\x80", 3, 0 },                    /* surrogate */
        { "\xf4\x90\x80\x80", 4, 0 },                /* past U+10FFFF */
        { "ok\xe2\x82", 4, 0 },                      /* truncated */
        { "abcdefghijklmno\xff", 16, 0 },             /* after a word */
    };
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        ck_assert_msg(relay_json_utf8_valid((const uint8_t *)rows[i].bytes,
                                            rows[i].len) == rows[i].valid,
                      "row %zu", i);
    }
}
END_TEST


Suite *
relay_suite_json(void)
{
    Suite *s;
    TCase *tc;

    s = suite_create("json");

    tc = tcase_create("grammar");
    tcase_add_test(tc, test_json_literals_are_valid);
    tcase_add_test(tc, test_json_utf8_valid_agrees_with_string_rules);
    tcase_add_test(tc, test_json_bad_literals_are_invalid);
    tcase_add_test(tc, test_json_numbers_follow_the_grammar);
    tcase_add_test(tc, test_json_bad_numbers_are_invalid);
    tcase_add_test(tc, test_json_strings_with_escapes_are_valid);
    tcase_add_test(tc, test_json_bad_escapes_are_invalid);
    tcase_add_test(tc, test_json_raw_control_bytes_are_invalid);
    tcase_add_test(tc, test_json_valid_utf8_is_accepted);
    tcase_add_test(tc, test_json_invalid_utf8_is_refused);
    tcase_add_test(tc, test_json_every_single_byte_string);
    tcase_add_test(tc, test_json_every_single_byte_text);
    tcase_add_test(tc, test_json_special_bytes_are_seen_at_every_offset);
    tcase_add_test(tc, test_json_structures_are_valid);
    tcase_add_test(tc, test_json_bad_structures_are_invalid);
    tcase_add_test(tc, test_json_only_one_value_with_whitespace_around);
    tcase_add_test(tc, test_json_nesting_at_the_limit_is_valid);
    tcase_add_test(tc, test_json_nesting_past_the_limit_is_too_deep);
    tcase_add_test(tc, test_json_depth_is_not_length);
    tcase_add_test(tc, test_json_every_prefix_of_an_object_is_invalid);
    suite_add_tcase(s, tc);

    tc = tcase_create("members");
    tcase_add_test(tc, test_json_scan_reports_member_spans);
    tcase_add_test(tc, test_json_scan_reports_only_top_level_members);
    tcase_add_test(tc, test_json_scan_empty_object_has_no_members);
    tcase_add_test(tc, test_json_scan_counts_past_max);
    tcase_add_test(tc, test_json_scan_still_validates_past_max);
    tcase_add_test(tc, test_json_scan_refuses_other_top_levels);
    tcase_add_test(tc, test_json_scan_members_calls_back_each_member);
    suite_add_tcase(s, tc);

    tc = tcase_create("decode");
    tcase_add_test(tc, test_json_decode_handles_every_escape);
    tcase_add_test(tc, test_json_decode_respects_capacity);
    tcase_add_test(tc, test_json_decode_refuses_nul_and_bad_escapes);
    suite_add_tcase(s, tc);

#ifdef HAVE_JANSSON
    tc = tcase_create("jansson");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_json_agrees_with_jansson);
    suite_add_tcase(s, tc);
#endif

    return s;
}
