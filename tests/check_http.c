/*
 * check_http.c: the request-head parser, the upgrade checks of SPEC.md
 * section 2, the accept key and the byte-exact responses.
 *
 * Heads are parsed from exact-size heap copies so that AddressSanitizer
 * catches any read past len, and every valid head is also fed at every
 * prefix length, which is how a socket may deliver it.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "relay/common.h"
#include "relay/http.h"
#include "suites.h"

#define RELAY_TEST_KEY "dGhlIHNhbXBsZSBub25jZQ=="

#define RELAY_TEST_SERVER_HEAD                                               \
    "GET /v1/server HTTP/1.1\r\n"                                            \
    "Host: relay.example\r\n"                                                \
    "Upgrade: websocket\r\n"                                                 \
    "Connection: Upgrade\r\n"                                                \
    "Sec-WebSocket-Version: 13\r\n"                                          \
    "Sec-WebSocket-Key: " RELAY_TEST_KEY "\r\n"                              \
    "x-pyrycode-server: 4b6f0c1e-8d1a-4c55-9f0e-2a7d3b9c1e44\r\n"            \
    "x-pyrycode-version: 0.9.1\r\n"                                          \
    "User-Agent: pyry/0.9.1\r\n"                                             \
    "\r\n"

/* The handshake and identity lines of a valid upgrade, one per entry, so
 * a test can drop or replace any one of them. */
static const char *const relay_test_lines[] = {
    "Host: relay.example",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "x-pyrycode-server: abc",
    "x-pyrycode-version: 1.0",
    "User-Agent: pyry/1.0",
    "x-pyrycode-device-name: Pixel",
    "x-pyrycode-token: secret"
};

#define RELAY_TEST_NLINES                                                    \
    (sizeof(relay_test_lines) / sizeof(relay_test_lines[0]))

enum {
    RELAY_TEST_L_HOST = 0,
    RELAY_TEST_L_UPGRADE,
    RELAY_TEST_L_CONNECTION,
    RELAY_TEST_L_WS_VERSION,
    RELAY_TEST_L_WS_KEY,
    RELAY_TEST_L_SERVER,
    RELAY_TEST_L_VERSION,
    RELAY_TEST_L_USER_AGENT
};

/* Storage for heads built by relay_test_build(); each test is one forked
 * process, so a static buffer is private to it. */
static char relay_test_head[RELAY_HEAD_MAX * 2];


/*
 * Parse s[0..len) from a heap copy of exactly len bytes.  The copy lives
 * until the next parse because req holds offsets into it; the caller reads
 * values through relay_test_buf.
 */
static char *relay_test_buf;

static int
relay_test_parse_n(const char *s, size_t len, struct relay_http_request *req)
{
    char *copy;

    copy = malloc(len == 0 ? 1 : len);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, s, len);
    free(relay_test_buf);
    relay_test_buf = copy;

    return relay_http_parse(copy, len, req);
}


static int
relay_test_parse(const char *s, struct relay_http_request *req)
{
    return relay_test_parse_n(s, strlen(s), req);
}


/* Assert that header h is present with exactly the value want. */
static void
relay_test_hdr_is(const struct relay_http_request *req, int h,
                  const char *want)
{
    ck_assert_int_eq(req->hdr[h].present, 1);
    ck_assert_uint_eq(req->hdr[h].value.len, strlen(want));
    ck_assert(memcmp(relay_test_buf + req->hdr[h].value.off, want,
                     strlen(want)) == 0);
}


/*
 * Build "<reqline>\r\n" followed by relay_test_lines, with the line at
 * index skip left out and replace (if not NULL) written in its place.
 * skip == -1 keeps every line.  Returns the head, NUL-terminated.
 */
static const char *
relay_test_build(const char *reqline, int skip, const char *replace)
{
    size_t i, n;
    int w;

    n = 0;
    w = snprintf(relay_test_head, sizeof(relay_test_head), "%s\r\n",
                 reqline);
    ck_assert(w > 0);
    n += (size_t) w;

    for (i = 0; i < RELAY_TEST_NLINES; i++) {
        const char *line = relay_test_lines[i];

        if ((int) i == skip) {
            if (replace == NULL) {
                continue;
            }
            line = replace;
        }
        w = snprintf(relay_test_head + n, sizeof(relay_test_head) - n,
                     "%s\r\n", line);
        ck_assert(w > 0 && (size_t) w < sizeof(relay_test_head) - n);
        n += (size_t) w;
    }
    w = snprintf(relay_test_head + n, sizeof(relay_test_head) - n, "\r\n");
    ck_assert(w == 2);

    return relay_test_head;
}


/* Parse head (which must be valid) and run the upgrade checks on it. */
static void
relay_test_verdict(const char *head, int endpoint,
                   struct relay_http_verdict *v)
{
    struct relay_http_request req;

    ck_assert_int_eq(relay_test_parse(head, &req), RELAY_HTTP_OK);
    relay_http_check_upgrade(relay_test_buf, &req, endpoint, v);
}


static void
relay_test_verdict_is(const struct relay_http_verdict *v, int status,
                      const char *extra)
{
    ck_assert_int_eq(v->status, status);
    if (extra == NULL) {
        ck_assert_ptr_null(v->extra_header);
    } else {
        ck_assert_ptr_nonnull(v->extra_header);
        ck_assert_str_eq(v->extra_header, extra);
    }
    if (status == 0) {
        ck_assert_ptr_null(v->reason);
    } else {
        ck_assert_ptr_nonnull(v->reason);
        ck_assert(strlen(v->reason) > 0);
    }
}


/* Feed head at every prefix length and check the result never depends on
 * where the bytes were split. */
static void
relay_test_split_everywhere(const char *head)
{
    struct relay_http_request full, part;
    size_t len, i;

    len = strlen(head);
    ck_assert_int_eq(relay_test_parse_n(head, len, &full), RELAY_HTTP_OK);
    ck_assert_uint_eq(full.head_len, len);

    for (i = 0; i < len; i++) {
        ck_assert_msg(relay_test_parse_n(head, i, &part) == RELAY_HTTP_AGAIN,
                      "prefix of %zu bytes is not AGAIN", i);
    }

    ck_assert_int_eq(relay_test_parse_n(head, len, &part), RELAY_HTTP_OK);
    ck_assert(memcmp(&full, &part, sizeof(full)) == 0);
}


START_TEST(test_http_head_split_at_every_offset_parses_same)
{
    relay_test_split_everywhere(RELAY_TEST_SERVER_HEAD);
}
END_TEST


START_TEST(test_http_lf_head_split_at_every_offset_parses_same)
{
    relay_test_split_everywhere("GET /v1/client?x=1 HTTP/1.1\n"
                                "Upgrade: websocket\n"
                                "Connection: Upgrade\n"
                                "\n");
}
END_TEST


START_TEST(test_http_head_fills_request_fields)
{
    struct relay_http_request req;

    ck_assert_int_eq(relay_test_parse(RELAY_TEST_SERVER_HEAD, &req),
                     RELAY_HTTP_OK);
    ck_assert_int_eq(req.method, RELAY_HTTP_GET);
    ck_assert_int_eq(req.version_minor, 1);
    ck_assert_uint_eq(req.head_len, strlen(RELAY_TEST_SERVER_HEAD));
    ck_assert_uint_eq(req.path.off, 4);
    ck_assert_uint_eq(req.path.len, strlen("/v1/server"));
    relay_test_hdr_is(&req, RELAY_HDR_HOST, "relay.example");
    relay_test_hdr_is(&req, RELAY_HDR_UPGRADE, "websocket");
    relay_test_hdr_is(&req, RELAY_HDR_CONNECTION, "Upgrade");
    relay_test_hdr_is(&req, RELAY_HDR_WS_VERSION, "13");
    relay_test_hdr_is(&req, RELAY_HDR_WS_KEY, RELAY_TEST_KEY);
    relay_test_hdr_is(&req, RELAY_HDR_SERVER,
                      "4b6f0c1e-8d1a-4c55-9f0e-2a7d3b9c1e44");
    relay_test_hdr_is(&req, RELAY_HDR_VERSION, "0.9.1");
    relay_test_hdr_is(&req, RELAY_HDR_USER_AGENT, "pyry/0.9.1");
    ck_assert_int_eq(req.hdr[RELAY_HDR_DEVICE_NAME].present, 0);
    ck_assert_int_eq(req.hdr[RELAY_HDR_TOKEN].present, 0);
    ck_assert_int_eq(req.hdr[RELAY_HDR_XFF].present, 0);
}
END_TEST


START_TEST(test_http_bytes_after_head_are_not_read)
{
    struct relay_http_request req;
    const char *s = "GET / HTTP/1.1\r\n\r\n\x01\x02 not http at all";

    ck_assert_int_eq(relay_test_parse(s, &req), RELAY_HTTP_OK);
    ck_assert_uint_eq(req.head_len, strlen("GET / HTTP/1.1\r\n\r\n"));
}
END_TEST


START_TEST(test_http_path_stops_at_query)
{
    struct relay_http_request req;

    ck_assert_int_eq(relay_test_parse("GET /healthz?a=b?c HTTP/1.1\r\n\r\n",
                                      &req),
                     RELAY_HTTP_OK);
    ck_assert_uint_eq(req.path.off, 4);
    ck_assert_uint_eq(req.path.len, strlen("/healthz"));
}
END_TEST


START_TEST(test_http_methods_classified_case_sensitively)
{
    static const struct {
        const char *head;
        int method;
    } rows[] = {
        { "GET / HTTP/1.1\r\n\r\n", RELAY_HTTP_GET },
        { "HEAD / HTTP/1.1\r\n\r\n", RELAY_HTTP_HEAD },
        { "POST / HTTP/1.1\r\n\r\n", RELAY_HTTP_OTHER },
        { "get / HTTP/1.1\r\n\r\n", RELAY_HTTP_OTHER },
        { "GETS / HTTP/1.1\r\n\r\n", RELAY_HTTP_OTHER },
        { "M-SEARCH / HTTP/1.1\r\n\r\n", RELAY_HTTP_OTHER },
        { "!#$%&'*+-.^_`|~09az / HTTP/1.1\r\n\r\n", RELAY_HTTP_OTHER }
    };
    struct relay_http_request req;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        ck_assert_int_eq(relay_test_parse(rows[i].head, &req),
                         RELAY_HTTP_OK);
        ck_assert_int_eq(req.method, rows[i].method);
    }
}
END_TEST


START_TEST(test_http_malformed_request_lines_are_bad)
{
    static const char *const rows[] = {
        " / HTTP/1.1\r\n\r\n",                /* empty method */
        "G(ET / HTTP/1.1\r\n\r\n",            /* separator in method */
        "GE\x01T / HTTP/1.1\r\n\r\n",         /* control in method */
        "G\xc3\xa9T / HTTP/1.1\r\n\r\n",      /* non-ASCII in method */
        "GET  / HTTP/1.1\r\n\r\n",            /* two spaces */
        "GET\t/ HTTP/1.1\r\n\r\n",            /* tab separator */
        "GET / HTTP/1.1 \r\n\r\n",            /* trailing space */
        "GET /\r\n\r\n",                      /* HTTP/0.9 */
        "GET / \r\n\r\n",                     /* empty version */
        "\r\nGET / HTTP/1.1\r\n\r\n",         /* empty line first */
        "\r\n\r\n"
    };
    struct relay_http_request req;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        ck_assert_msg(relay_test_parse(rows[i], &req) == RELAY_HTTP_BAD,
                      "row %zu not BAD", i);
    }
}
END_TEST


START_TEST(test_http_bad_versions_are_bad)
{
    static const char *const rows[] = {
        "GET / HTTP/1.2\r\n\r\n",
        "GET / HTTP/1.10\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/0.9\r\n\r\n",
        "GET / HTTP/1\r\n\r\n",
        "GET / HTTP/1.\r\n\r\n",
        "GET / http/1.1\r\n\r\n",
        "GET / HTTPS/1.1\r\n\r\n",
        "GET / HTTP/1.1x\r\n\r\n"
    };
    struct relay_http_request req;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        ck_assert_msg(relay_test_parse(rows[i], &req) == RELAY_HTTP_BAD,
                      "row %zu not BAD", i);
    }
}
END_TEST


START_TEST(test_http_version_minor_0_and_1_accepted)
{
    struct relay_http_request req;

    ck_assert_int_eq(relay_test_parse("GET / HTTP/1.0\r\n\r\n", &req),
                     RELAY_HTTP_OK);
    ck_assert_int_eq(req.version_minor, 0);
    ck_assert_int_eq(relay_test_parse("GET / HTTP/1.1\r\n\r\n", &req),
                     RELAY_HTTP_OK);
    ck_assert_int_eq(req.version_minor, 1);
}
END_TEST


START_TEST(test_http_bad_targets_are_bad)
{
    static const char *const rows[] = {
        "GET * HTTP/1.1\r\n\r\n",
        "GET http://relay.example/v1/server HTTP/1.1\r\n\r\n",
        "GET relay.example:443 HTTP/1.1\r\n\r\n",
        "GET v1/server HTTP/1.1\r\n\r\n",
        "GET /a\x7f HTTP/1.1\r\n\r\n",
        "GET /a\x01 HTTP/1.1\r\n\r\n",
        "GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
        "GET /a\tb HTTP/1.1\r\n\r\n"
    };
    struct relay_http_request req;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        ck_assert_msg(relay_test_parse(rows[i], &req) == RELAY_HTTP_BAD,
                      "row %zu not BAD", i);
    }
}
END_TEST


START_TEST(test_http_bad_method_refused_before_head_completes)
{
    struct relay_http_request req;

    /* A TLS ClientHello sent to the plain listener starts 0x16 0x03. */
    ck_assert_int_eq(relay_test_parse_n("\x16\x03\x01", 3, &req),
                     RELAY_HTTP_BAD);
    ck_assert_int_eq(relay_test_parse("G@", &req), RELAY_HTTP_BAD);
    ck_assert_int_eq(relay_test_parse("GET /x HTTP/2", &req),
                     RELAY_HTTP_BAD);
    ck_assert_int_eq(relay_test_parse("GET /x HTTP/1.1\r\nHo st", &req),
                     RELAY_HTTP_BAD);
}
END_TEST


START_TEST(test_http_header_names_match_case_insensitively)
{
    struct relay_http_request req;

    ck_assert_int_eq(relay_test_parse("GET / HTTP/1.1\r\n"
                                      "X-PYRYCODE-SERVER: a\r\n"
                                      "uSeR-aGeNt: b\r\n"
                                      "SEC-WEBSOCKET-KEY: c\r\n"
                                      "x-forwarded-FOR: d\r\n"
                                      "X-Pyrycode-Device-Name: e\r\n"
                                      "\r\n",
                                      &req),
                     RELAY_HTTP_OK);
    relay_test_hdr_is(&req, RELAY_HDR_SERVER, "a");
    relay_test_hdr_is(&req, RELAY_HDR_USER_AGENT, "b");
    relay_test_hdr_is(&req, RELAY_HDR_WS_KEY, "c");
    relay_test_hdr_is(&req, RELAY_HDR_XFF, "d");
    relay_test_hdr_is(&req, RELAY_HDR_DEVICE_NAME, "e");
}
END_TEST


START_TEST(test_http_duplicate_header_keeps_first_value)
{
    struct relay_http_request req;

    ck_assert_int_eq(relay_test_parse("GET / HTTP/1.1\r\n"
                                      "x-pyrycode-server: first\r\n"
                                      "X-Pyrycode-Server: second\r\n"
                                      "Connection:\r\n"
                                      "Connection: Upgrade\r\n"
                                      "\r\n",
                                      &req),
                     RELAY_HTTP_OK);
    relay_test_hdr_is(&req, RELAY_HDR_SERVER, "first");
    /* An empty first value still counts as the first. */
    relay_test_hdr_is(&req, RELAY_HDR_CONNECTION, "");
}
END_TEST


START_TEST(test_http_absent_and_unknown_headers_not_present)
{
    struct relay_http_request req;
    int h;

    ck_assert_int_eq(relay_test_parse("GET / HTTP/1.1\r\n"
                                      "X-Hostname: a\r\n"
                                      "Hos: b\r\n"
                                      "Upgrade-Insecure-Requests: 1\r\n"
                                      "\r\n",
                                      &req),
                     RELAY_HTTP_OK);
    for (h = 0; h < RELAY_HDR_COUNT; h++) {
        ck_assert_int_eq(req.hdr[h].present, 0);
    }
}
END_TEST


START_TEST(test_http_header_values_trimmed_of_spaces_and_tabs)
{
    struct relay_http_request req;

    ck_assert_int_eq(relay_test_parse("GET / HTTP/1.1\r\n"
                                      "Host:relay\r\n"
                                      "User-Agent: \t pyry  1.0 \t \r\n"
                                      "x-pyrycode-version: \t \r\n"
                                      "x-pyrycode-server:\r\n"
                                      "x-pyrycode-token: \t\n"
                                      "\r\n",
                                      &req),
                     RELAY_HTTP_OK);
    relay_test_hdr_is(&req, RELAY_HDR_HOST, "relay");
    relay_test_hdr_is(&req, RELAY_HDR_USER_AGENT, "pyry  1.0");
    relay_test_hdr_is(&req, RELAY_HDR_VERSION, "");
    relay_test_hdr_is(&req, RELAY_HDR_SERVER, "");
    relay_test_hdr_is(&req, RELAY_HDR_TOKEN, "");
}
END_TEST


START_TEST(test_http_malformed_header_lines_are_bad)
{
    static const char *const rows[] = {
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",         /* space before : */
        "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost a\r\n\r\n",           /* no colon */
        "GET / HTTP/1.1\r\nHost\r\n\r\n",
        "GET / HTTP/1.1\r\n: a\r\n\r\n",              /* empty name */
        "GET / HTTP/1.1\r\nHo(st: a\r\n\r\n",         /* separator */
        "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",    /* obs-fold */
        "GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n",
        "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",       /* bare CR */
        "GET / HTTP/1.1\rHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"
    };
    struct relay_http_request req;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        ck_assert_msg(relay_test_parse(rows[i], &req) == RELAY_HTTP_BAD,
                      "row %zu not BAD", i);
    }
}
END_TEST


START_TEST(test_http_control_bytes_in_values_are_kept_but_nul_is_bad)
{
    struct relay_http_request req;
    char head[64];
    size_t n;
    int c, rc;

    for (c = 0; c < 256; c++) {
        if (c == '\r' || c == '\n') {
            continue;   /* line endings, tested on their own */
        }
        n = (size_t) snprintf(head, sizeof(head),
                              "GET / HTTP/1.1\r\nUser-Agent: a%cb\r\n\r\n",
                              'X');
        head[n - 6] = (char) c;        /* replaces the 'X' */
        rc = relay_test_parse_n(head, n, &req);

        if (c != 0) {
            ck_assert_msg(rc == RELAY_HTTP_OK, "byte 0x%02x refused", c);
            ck_assert_uint_eq(req.hdr[RELAY_HDR_USER_AGENT].value.len, 3);
        } else {
            ck_assert_msg(rc == RELAY_HTTP_BAD, "byte 0x%02x accepted", c);
        }
    }
}
END_TEST


START_TEST(test_http_crlf_and_bare_lf_mix_parses_same)
{
    struct relay_http_request a, b;

    ck_assert_int_eq(relay_test_parse("GET /v1/client HTTP/1.1\r\n"
                                      "Upgrade: websocket\n"
                                      "User-Agent: x\r\n"
                                      "\n",
                                      &a),
                     RELAY_HTTP_OK);
    relay_test_hdr_is(&a, RELAY_HDR_UPGRADE, "websocket");
    relay_test_hdr_is(&a, RELAY_HDR_USER_AGENT, "x");

    ck_assert_int_eq(relay_test_parse("GET /v1/client HTTP/1.1\n"
                                      "Upgrade: websocket\r\n"
                                      "User-Agent: x\n"
                                      "\r\n",
                                      &b),
                     RELAY_HTTP_OK);
    ck_assert_uint_eq(a.head_len, b.head_len);
    ck_assert_uint_eq(a.hdr[RELAY_HDR_UPGRADE].value.len,
                      b.hdr[RELAY_HDR_UPGRADE].value.len);
}
END_TEST


/* Build a head of exactly total bytes, padded with one long header. */
static size_t
relay_test_sized_head(char *out, size_t total)
{
    static const char start[] = "GET / HTTP/1.1\r\nX-Pad: ";
    static const char end[] = "\r\n\r\n";
    size_t pad;

    ck_assert(total >= sizeof(start) - 1 + sizeof(end) - 1);
    pad = total - (sizeof(start) - 1) - (sizeof(end) - 1);
    memcpy(out, start, sizeof(start) - 1);
    memset(out + sizeof(start) - 1, 'a', pad);
    memcpy(out + sizeof(start) - 1 + pad, end, sizeof(end) - 1);
    return total;
}


START_TEST(test_http_head_of_exactly_max_is_accepted)
{
    struct relay_http_request req;
    size_t n;

    n = relay_test_sized_head(relay_test_head, RELAY_HEAD_MAX);
    ck_assert_int_eq(relay_test_parse_n(relay_test_head, n, &req),
                     RELAY_HTTP_OK);
    ck_assert_uint_eq(req.head_len, RELAY_HEAD_MAX);
}
END_TEST


START_TEST(test_http_head_one_past_max_is_too_large)
{
    struct relay_http_request req;
    size_t n;

    n = relay_test_sized_head(relay_test_head, RELAY_HEAD_MAX + 1);
    ck_assert_int_eq(relay_test_parse_n(relay_test_head, n, &req),
                     RELAY_HTTP_TOO_LARGE);
    ck_assert_int_eq(relay_test_parse_n(relay_test_head, RELAY_HEAD_MAX,
                                        &req),
                     RELAY_HTTP_TOO_LARGE);
    ck_assert_int_eq(relay_test_parse_n(relay_test_head,
                                        RELAY_HEAD_MAX - 1, &req),
                     RELAY_HTTP_AGAIN);
}
END_TEST


START_TEST(test_http_endless_head_is_too_large)
{
    struct relay_http_request req;
    size_t n;

    n = relay_test_sized_head(relay_test_head, sizeof(relay_test_head));
    ck_assert_int_eq(relay_test_parse_n(relay_test_head, n - 4, &req),
                     RELAY_HTTP_TOO_LARGE);
    ck_assert_int_eq(relay_test_parse_n(relay_test_head, n, &req),
                     RELAY_HTTP_TOO_LARGE);
}
END_TEST


START_TEST(test_http_many_short_headers_past_max_are_too_large)
{
    struct relay_http_request req;
    size_t n;
    int w;

    n = (size_t) snprintf(relay_test_head, sizeof(relay_test_head),
                          "GET / HTTP/1.1\r\n");
    while (n < RELAY_HEAD_MAX + 100) {
        w = snprintf(relay_test_head + n, sizeof(relay_test_head) - n,
                     "X-A: b\r\n");
        n += (size_t) w;
    }
    memcpy(relay_test_head + n, "\r\n", 2);
    n += 2;

    ck_assert_int_eq(relay_test_parse_n(relay_test_head, n, &req),
                     RELAY_HTTP_TOO_LARGE);
}
END_TEST


START_TEST(test_http_bad_byte_within_max_is_bad_even_when_oversize)
{
    struct relay_http_request req;
    size_t n;

    n = relay_test_sized_head(relay_test_head, RELAY_HEAD_MAX + 100);
    relay_test_head[100] = '\0';
    ck_assert_int_eq(relay_test_parse_n(relay_test_head, n, &req),
                     RELAY_HTTP_BAD);
}
END_TEST


START_TEST(test_http_empty_input_needs_more)
{
    struct relay_http_request req;

    ck_assert_int_eq(relay_test_parse_n("", 0, &req), RELAY_HTTP_AGAIN);
}
END_TEST


START_TEST(test_http_endpoint_matches_exact_paths)
{
    static const struct {
        const char *head;
        int endpoint;
    } rows[] = {
        { "GET /v1/server HTTP/1.1\r\n\r\n", RELAY_EP_SERVER },
        { "GET /v1/client HTTP/1.1\r\n\r\n", RELAY_EP_CLIENT },
        { "GET /healthz HTTP/1.1\r\n\r\n", RELAY_EP_HEALTHZ },
        { "HEAD /healthz HTTP/1.1\r\n\r\n", RELAY_EP_HEALTHZ },
        { "GET /metrics HTTP/1.1\r\n\r\n", RELAY_EP_METRICS },
        { "GET /v1/server?v=2 HTTP/1.1\r\n\r\n", RELAY_EP_SERVER },
        { "GET /v1/server/ HTTP/1.1\r\n\r\n", RELAY_EP_NONE },
        { "GET /v1/serve HTTP/1.1\r\n\r\n", RELAY_EP_NONE },
        { "GET /v1/servers HTTP/1.1\r\n\r\n", RELAY_EP_NONE },
        { "GET /V1/server HTTP/1.1\r\n\r\n", RELAY_EP_NONE },
        { "GET //v1/server HTTP/1.1\r\n\r\n", RELAY_EP_NONE },
        { "GET /healthz/ HTTP/1.1\r\n\r\n", RELAY_EP_NONE },
        { "GET / HTTP/1.1\r\n\r\n", RELAY_EP_NONE },
        { "GET /? HTTP/1.1\r\n\r\n", RELAY_EP_NONE }
    };
    struct relay_http_request req;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        ck_assert_int_eq(relay_test_parse(rows[i].head, &req),
                         RELAY_HTTP_OK);
        ck_assert_msg(relay_http_endpoint(relay_test_buf, &req)
                          == rows[i].endpoint,
                      "row %zu", i);
    }
}
END_TEST


START_TEST(test_http_valid_server_upgrade_passes)
{
    struct relay_http_verdict v;

    relay_test_verdict(RELAY_TEST_SERVER_HEAD, RELAY_EP_SERVER, &v);
    relay_test_verdict_is(&v, 0, NULL);
    relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1", -1, NULL),
                       RELAY_EP_SERVER, &v);
    relay_test_verdict_is(&v, 0, NULL);
}
END_TEST


START_TEST(test_http_client_upgrade_needs_no_version_or_token)
{
    struct relay_http_verdict v;

    relay_test_verdict(relay_test_build("GET /v1/client HTTP/1.1",
                                        RELAY_TEST_L_VERSION, NULL),
                       RELAY_EP_CLIENT, &v);
    relay_test_verdict_is(&v, 0, NULL);
    relay_test_verdict(relay_test_build("GET /v1/client HTTP/1.1", 9, NULL),
                       RELAY_EP_CLIENT, &v);
    relay_test_verdict_is(&v, 0, NULL);
}
END_TEST


/* Loop test: _i indexes the required headers of the server endpoint. */
static const int relay_test_server_required[] = {
    RELAY_TEST_L_SERVER, RELAY_TEST_L_VERSION, RELAY_TEST_L_USER_AGENT
};

static const char *const relay_test_server_empty[] = {
    "x-pyrycode-server:  \t ", "x-pyrycode-version:", "User-Agent:   "
};


START_TEST(test_http_server_missing_required_header_is_400)
{
    struct relay_http_verdict v;
    int line = relay_test_server_required[_i];

    /* Also make the request a POST: the header check comes first. */
    relay_test_verdict(relay_test_build("POST /v1/server HTTP/1.0", line,
                                        NULL),
                       RELAY_EP_SERVER, &v);
    relay_test_verdict_is(&v, 400, NULL);
}
END_TEST


START_TEST(test_http_server_empty_required_header_is_400)
{
    struct relay_http_verdict v;
    int line = relay_test_server_required[_i];

    relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1", line,
                                        relay_test_server_empty[_i]),
                       RELAY_EP_SERVER, &v);
    relay_test_verdict_is(&v, 400, NULL);
}
END_TEST


START_TEST(test_http_client_missing_required_header_is_400)
{
    struct relay_http_verdict v;
    static const int lines[] = { RELAY_TEST_L_SERVER,
                                 RELAY_TEST_L_USER_AGENT };
    static const char *const empty[] = { "x-pyrycode-server:",
                                         "user-agent: " };
    size_t i;

    for (i = 0; i < 2; i++) {
        relay_test_verdict(relay_test_build("GET /v1/client HTTP/1.1",
                                            lines[i], NULL),
                           RELAY_EP_CLIENT, &v);
        relay_test_verdict_is(&v, 400, NULL);
        relay_test_verdict(relay_test_build("GET /v1/client HTTP/1.1",
                                            lines[i], empty[i]),
                           RELAY_EP_CLIENT, &v);
        relay_test_verdict_is(&v, 400, NULL);
    }
}
END_TEST


START_TEST(test_http_missing_header_reasons_name_the_header)
{
    struct relay_http_verdict v;

    relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1",
                                        RELAY_TEST_L_SERVER, NULL),
                       RELAY_EP_SERVER, &v);
    ck_assert_str_eq(v.reason, "missing x-pyrycode-server header");
    relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1",
                                        RELAY_TEST_L_VERSION, NULL),
                       RELAY_EP_SERVER, &v);
    ck_assert_str_eq(v.reason, "missing x-pyrycode-version header");
    relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1",
                                        RELAY_TEST_L_USER_AGENT, NULL),
                       RELAY_EP_SERVER, &v);
    ck_assert_str_eq(v.reason, "missing user-agent header");
}
END_TEST


START_TEST(test_http_invalid_server_id_is_400)
{
    static const char *const rows[] = {
        "x-pyrycode-server: a b",
        "x-pyrycode-server: caf\xc3\xa9",
        "x-pyrycode-server: a\tb"
    };
    struct relay_http_verdict v;
    char line[256];
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1",
                                            RELAY_TEST_L_SERVER, rows[i]),
                           RELAY_EP_SERVER, &v);
        relay_test_verdict_is(&v, 400, NULL);
        ck_assert_str_eq(v.reason, "invalid server-id");
    }

    /* 129 bytes is one too many. */
    memcpy(line, "x-pyrycode-server: ", 19);
    memset(line + 19, 'a', 129);
    line[19 + 129] = '\0';
    relay_test_verdict(relay_test_build("GET /v1/client HTTP/1.1",
                                        RELAY_TEST_L_SERVER, line),
                       RELAY_EP_CLIENT, &v);
    relay_test_verdict_is(&v, 400, NULL);
    ck_assert_str_eq(v.reason, "invalid server-id");
}
END_TEST


START_TEST(test_http_server_id_of_128_printable_bytes_passes)
{
    struct relay_http_verdict v;
    char line[256];

    memcpy(line, "x-pyrycode-server: ", 19);
    memset(line + 19, '~', 127);
    line[19 + 127] = '!';
    line[19 + 128] = '\0';
    relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1",
                                        RELAY_TEST_L_SERVER, line),
                       RELAY_EP_SERVER, &v);
    relay_test_verdict_is(&v, 0, NULL);
}
END_TEST


START_TEST(test_http_http10_is_426_with_upgrade)
{
    struct relay_http_verdict v;

    relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.0", -1, NULL),
                       RELAY_EP_SERVER, &v);
    relay_test_verdict_is(&v, 426, "Upgrade: websocket");
}
END_TEST


START_TEST(test_http_connection_without_upgrade_token_is_426)
{
    static const char *const rows[] = {
        NULL,
        "Connection: keep-alive",
        "Connection:",
        "Connection: upgrades",
        "Connection: up grade",
        "Connection: keep-alive; Upgrade"
    };
    struct relay_http_verdict v;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        relay_test_verdict(relay_test_build("GET /v1/client HTTP/1.1",
                                            RELAY_TEST_L_CONNECTION,
                                            rows[i]),
                           RELAY_EP_CLIENT, &v);
        relay_test_verdict_is(&v, 426, "Upgrade: websocket");
    }
}
END_TEST


START_TEST(test_http_connection_token_list_with_upgrade_passes)
{
    static const char *const rows[] = {
        "Connection: keep-alive, Upgrade",
        "Connection: UPGRADE",
        "Connection: upgrade,keep-alive",
        "Connection: ,, \t upgrade \t ,"
    };
    struct relay_http_verdict v;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        relay_test_verdict(relay_test_build("GET /v1/client HTTP/1.1",
                                            RELAY_TEST_L_CONNECTION,
                                            rows[i]),
                           RELAY_EP_CLIENT, &v);
        relay_test_verdict_is(&v, 0, NULL);
    }
}
END_TEST


START_TEST(test_http_upgrade_without_websocket_token_is_426)
{
    static const char *const rows[] = {
        NULL, "Upgrade: h2c", "Upgrade:", "Upgrade: websocket2"
    };
    struct relay_http_verdict v;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1",
                                            RELAY_TEST_L_UPGRADE, rows[i]),
                           RELAY_EP_SERVER, &v);
        relay_test_verdict_is(&v, 426, "Upgrade: websocket");
    }

    relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1",
                                        RELAY_TEST_L_UPGRADE,
                                        "Upgrade: h2c, WebSocket"),
                       RELAY_EP_SERVER, &v);
    relay_test_verdict_is(&v, 0, NULL);
}
END_TEST


START_TEST(test_http_not_get_is_405)
{
    static const char *const rows[] = {
        "POST /v1/server HTTP/1.1",
        "HEAD /v1/server HTTP/1.1",
        "get /v1/server HTTP/1.1"
    };
    struct relay_http_verdict v;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        relay_test_verdict(relay_test_build(rows[i], -1, NULL),
                           RELAY_EP_SERVER, &v);
        relay_test_verdict_is(&v, 405, NULL);
        ck_assert_str_eq(v.reason, "method not allowed");
    }
}
END_TEST


START_TEST(test_http_websocket_version_not_13_is_400_with_version)
{
    static const char *const rows[] = {
        NULL,
        "Sec-WebSocket-Version: 8",
        "Sec-WebSocket-Version:",
        "Sec-WebSocket-Version: 13, 8",
        "Sec-WebSocket-Version: 013",
        "Sec-WebSocket-Version: 1 3"
    };
    struct relay_http_verdict v;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1",
                                            RELAY_TEST_L_WS_VERSION,
                                            rows[i]),
                           RELAY_EP_SERVER, &v);
        relay_test_verdict_is(&v, 400, "Sec-WebSocket-Version: 13");
    }

    relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1",
                                        RELAY_TEST_L_WS_VERSION,
                                        "sec-websocket-version: \t13 "),
                       RELAY_EP_SERVER, &v);
    relay_test_verdict_is(&v, 0, NULL);
}
END_TEST


START_TEST(test_http_bad_websocket_key_is_400)
{
    static const char *const rows[] = {
        NULL,
        "Sec-WebSocket-Key:",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ",      /* no padding */
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQAA",    /* 18 bytes */
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j=Q==",    /* = inside */
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ===",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ-==",    /* url alphabet */
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j ZQ==",
        "Sec-WebSocket-Key: ZGhlIHNhbXBsZSBub25jZQ==ZA==",
        "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" /* 24 bytes */
    };
    struct relay_http_verdict v;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1",
                                            RELAY_TEST_L_WS_KEY, rows[i]),
                           RELAY_EP_SERVER, &v);
        ck_assert_msg(v.status == 400, "row %zu not 400", i);
        relay_test_verdict_is(&v, 400, NULL);
        ck_assert_str_eq(v.reason, "bad sec-websocket-key");
    }
}
END_TEST


START_TEST(test_http_websocket_key_with_padding_bits_and_blanks_passes)
{
    static const char *const rows[] = {
        "Sec-WebSocket-Key:  AAAAAAAAAAAAAAAAAAAAAA==\t",
        "Sec-WebSocket-Key: ////////////////////++==",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR=="
    };
    struct relay_http_verdict v;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1",
                                            RELAY_TEST_L_WS_KEY, rows[i]),
                           RELAY_EP_SERVER, &v);
        relay_test_verdict_is(&v, 0, NULL);
    }
}
END_TEST


START_TEST(test_http_handshake_failures_come_in_spec_order)
{
    struct relay_http_verdict v;

    /* HTTP/1.0 comes before a missing Connection and a POST. */
    relay_test_verdict(relay_test_build("POST /v1/server HTTP/1.0",
                                        RELAY_TEST_L_CONNECTION, NULL),
                       RELAY_EP_SERVER, &v);
    relay_test_verdict_is(&v, 426, "Upgrade: websocket");

    /* A missing Upgrade comes before the method. */
    relay_test_verdict(relay_test_build("POST /v1/server HTTP/1.1",
                                        RELAY_TEST_L_UPGRADE, NULL),
                       RELAY_EP_SERVER, &v);
    relay_test_verdict_is(&v, 426, "Upgrade: websocket");

    /* The method comes before the version and the key. */
    relay_test_verdict(relay_test_build("PUT /v1/server HTTP/1.1",
                                        RELAY_TEST_L_WS_VERSION,
                                        "Sec-WebSocket-Version: 7"),
                       RELAY_EP_SERVER, &v);
    relay_test_verdict_is(&v, 405, NULL);

    /* The version comes before the key. */
    relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1",
                                        RELAY_TEST_L_WS_VERSION,
                                        "Sec-WebSocket-Key: nope"),
                       RELAY_EP_SERVER, &v);
    relay_test_verdict_is(&v, 400, "Sec-WebSocket-Version: 13");
}
END_TEST


START_TEST(test_http_reasons_never_echo_values)
{
    struct relay_http_verdict v;

    relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1",
                                        RELAY_TEST_L_SERVER,
                                        "x-pyrycode-server: leak me"),
                       RELAY_EP_SERVER, &v);
    ck_assert_ptr_null(strstr(v.reason, "leak"));
    relay_test_verdict(relay_test_build("GET /v1/server HTTP/1.1",
                                        RELAY_TEST_L_WS_KEY,
                                        "Sec-WebSocket-Key: leakme"),
                       RELAY_EP_SERVER, &v);
    ck_assert_ptr_null(strstr(v.reason, "leak"));
}
END_TEST


START_TEST(test_http_other_endpoints_skip_header_checks)
{
    struct relay_http_verdict v;

    relay_test_verdict("GET /healthz HTTP/1.1\r\n"
                       "Upgrade: websocket\r\n"
                       "Connection: upgrade\r\n"
                       "Sec-WebSocket-Version: 13\r\n"
                       "Sec-WebSocket-Key: " RELAY_TEST_KEY "\r\n"
                       "\r\n",
                       RELAY_EP_HEALTHZ, &v);
    relay_test_verdict_is(&v, 0, NULL);
}
END_TEST


START_TEST(test_http_has_token_matches_comma_lists)
{
    static const struct {
        const char *value;
        const char *token;
        int want;
    } rows[] = {
        { "Upgrade", "upgrade", 1 },
        { "keep-alive, Upgrade", "upgrade", 1 },
        { "Upgrade, keep-alive", "upgrade", 1 },
        { " \tupgrade\t ", "upgrade", 1 },
        { "a,,upgrade,", "upgrade", 1 },
        { "", "upgrade", 0 },
        { ",", "upgrade", 0 },
        { "upgrad", "upgrade", 0 },
        { "upgrade2", "upgrade", 0 },
        { "x-upgrade", "upgrade", 0 },
        { "keep-alive upgrade", "upgrade", 0 },
        { "websocket", "WebSocket", 1 }
    };
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        ck_assert_msg(relay_http_has_token(rows[i].value,
                                           strlen(rows[i].value),
                                           rows[i].token)
                          == rows[i].want,
                      "row %zu", i);
    }

    /* Only value[0..len) is read. */
    ck_assert_int_eq(relay_http_has_token("keep-alive, upgrade", 10,
                                          "upgrade"),
                     0);
    ck_assert_int_eq(relay_http_has_token("upgradeX", 7, "upgrade"), 1);
}
END_TEST


START_TEST(test_http_ws_accept_matches_rfc6455_example)
{
    char out[29];

    memset(out, 'x', sizeof(out));
    ck_assert_int_eq(relay_http_ws_accept(RELAY_TEST_KEY,
                                          strlen(RELAY_TEST_KEY), out),
                     0);
    ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
END_TEST


START_TEST(test_http_error_response_is_byte_exact)
{
    static const char want[] =
        "HTTP/1.1 400 Bad Request\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 18\r\n"
        "Connection: close\r\n"
        "\r\n"
        "invalid server-id\n";
    char out[512];
    size_t n;

    n = relay_http_error_response(out, sizeof(out), 400, NULL,
                                  "invalid server-id");
    ck_assert_uint_eq(n, sizeof(want) - 1);
    ck_assert(memcmp(out, want, n) == 0);
}
END_TEST


START_TEST(test_http_error_response_carries_extra_header)
{
    static const char want[] =
        "HTTP/1.1 426 Upgrade Required\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 17\r\n"
        "Connection: close\r\n"
        "Upgrade: websocket\r\n"
        "\r\n"
        "upgrade required\n";
    char out[512];
    size_t n;

    n = relay_http_error_response(out, sizeof(out), 426,
                                  "Upgrade: websocket", "upgrade required");
    ck_assert_uint_eq(n, sizeof(want) - 1);
    ck_assert(memcmp(out, want, n) == 0);
}
END_TEST


START_TEST(test_http_error_response_with_empty_body_has_newline)
{
    static const char want[] =
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 1\r\n"
        "Connection: close\r\n"
        "\r\n"
        "\n";
    char out[512];
    size_t n;

    n = relay_http_error_response(out, sizeof(out), 431, NULL, NULL);
    ck_assert_uint_eq(n, sizeof(want) - 1);
    ck_assert(memcmp(out, want, n) == 0);
    n = relay_http_error_response(out, sizeof(out), 431, NULL, "");
    ck_assert_uint_eq(n, sizeof(want) - 1);
    ck_assert(memcmp(out, want, n) == 0);
}
END_TEST


START_TEST(test_http_error_response_too_small_buffer_gives_0)
{
    char out[512], small[512];
    size_t n, cap;

    n = relay_http_error_response(out, sizeof(out), 405, NULL,
                                  "method not allowed");
    ck_assert_uint_gt(n, 0);

    for (cap = 0; cap < n; cap++) {
        ck_assert_uint_eq(relay_http_error_response(small, cap, 405, NULL,
                                                    "method not allowed"),
                          0);
    }
    ck_assert_uint_eq(relay_http_error_response(small, n, 405, NULL,
                                                "method not allowed"),
                      n);
    ck_assert(memcmp(small, out, n) == 0);
}
END_TEST


START_TEST(test_http_switching_response_is_byte_exact)
{
    static const char want[] =
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        "\r\n";
    char out[256];
    size_t n, cap;

    n = relay_http_switching_response(out, sizeof(out),
                                      "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ck_assert_uint_eq(n, sizeof(want) - 1);
    ck_assert(memcmp(out, want, n) == 0);

    for (cap = 0; cap < n; cap++) {
        ck_assert_uint_eq(relay_http_switching_response(
                              out, cap, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                          0);
    }
}
END_TEST


START_TEST(test_http_ok_response_is_byte_exact)
{
    static const char body[] = "{\"status\":\"ok\"}";
    static const char want[] =
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        "Cache-Control: no-store\r\n"
        "Content-Length: 15\r\n"
        "Connection: close\r\n"
        "\r\n"
        "{\"status\":\"ok\"}";
    char out[256];
    size_t n;

    n = relay_http_ok_response(out, sizeof(out),
                               "application/json; charset=utf-8", body,
                               sizeof(body) - 1, 0);
    ck_assert_uint_eq(n, sizeof(want) - 1);
    ck_assert(memcmp(out, want, n) == 0);
}
END_TEST


START_TEST(test_http_ok_response_head_only_omits_body)
{
    static const char want[] =
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/plain; version=0.0.4\r\n"
        "Cache-Control: no-store\r\n"
        "Content-Length: 5\r\n"
        "Connection: close\r\n"
        "\r\n";
    char out[256];
    size_t n;

    n = relay_http_ok_response(out, sizeof(out),
                               "text/plain; version=0.0.4", "a\0b\0c", 5,
                               1);
    ck_assert_uint_eq(n, sizeof(want) - 1);
    ck_assert(memcmp(out, want, n) == 0);

    /* Binary bodies are copied whole, NULs included. */
    n = relay_http_ok_response(out, sizeof(out), "x", "a\0b\0c", 5, 0);
    ck_assert(n > 5);
    ck_assert(memcmp(out + n - 5, "a\0b\0c", 5) == 0);

    ck_assert_uint_eq(relay_http_ok_response(out, n - 1, "x", "a\0b\0c", 5,
                                             0),
                      0);
}
END_TEST


START_TEST(test_http_status_texts_cover_every_status_sent)
{
    ck_assert_str_eq(relay_http_status_text(101), "Switching Protocols");
    ck_assert_str_eq(relay_http_status_text(200), "OK");
    ck_assert_str_eq(relay_http_status_text(400), "Bad Request");
    ck_assert_str_eq(relay_http_status_text(404), "Not Found");
    ck_assert_str_eq(relay_http_status_text(405), "Method Not Allowed");
    ck_assert_str_eq(relay_http_status_text(421), "Misdirected Request");
    ck_assert_str_eq(relay_http_status_text(426), "Upgrade Required");
    ck_assert_str_eq(relay_http_status_text(429), "Too Many Requests");
    ck_assert_str_eq(relay_http_status_text(431),
                     "Request Header Fields Too Large");
    ck_assert_str_eq(relay_http_status_text(500), "Internal Server Error");
    ck_assert_str_eq(relay_http_status_text(503), "Service Unavailable");
    ck_assert_str_eq(relay_http_status_text(418), "Unknown");
}
END_TEST


Suite *
relay_suite_http(void)
{
    Suite *s;
    TCase *parse, *upgrade, *resp;
    int nreq;

    s = suite_create("http");
    nreq = (int) (sizeof(relay_test_server_required)
                  / sizeof(relay_test_server_required[0]));

    parse = tcase_create("parse");
    tcase_add_test(parse, test_http_head_split_at_every_offset_parses_same);
    tcase_add_test(parse,
                   test_http_lf_head_split_at_every_offset_parses_same);
    tcase_add_test(parse, test_http_head_fills_request_fields);
    tcase_add_test(parse, test_http_bytes_after_head_are_not_read);
    tcase_add_test(parse, test_http_path_stops_at_query);
    tcase_add_test(parse, test_http_methods_classified_case_sensitively);
    tcase_add_test(parse, test_http_malformed_request_lines_are_bad);
    tcase_add_test(parse, test_http_bad_versions_are_bad);
    tcase_add_test(parse, test_http_version_minor_0_and_1_accepted);
    tcase_add_test(parse, test_http_bad_targets_are_bad);
    tcase_add_test(parse, test_http_bad_method_refused_before_head_completes);
    tcase_add_test(parse, test_http_header_names_match_case_insensitively);
    tcase_add_test(parse, test_http_duplicate_header_keeps_first_value);
    tcase_add_test(parse, test_http_absent_and_unknown_headers_not_present);
    tcase_add_test(parse, test_http_header_values_trimmed_of_spaces_and_tabs);
    tcase_add_test(parse, test_http_malformed_header_lines_are_bad);
    tcase_add_test(parse,
                   test_http_control_bytes_in_values_are_kept_but_nul_is_bad);
    tcase_add_test(parse, test_http_crlf_and_bare_lf_mix_parses_same);
    tcase_add_test(parse, test_http_head_of_exactly_max_is_accepted);
    tcase_add_test(parse, test_http_head_one_past_max_is_too_large);
    tcase_add_test(parse, test_http_endless_head_is_too_large);
    tcase_add_test(parse,
                   test_http_many_short_headers_past_max_are_too_large);
    tcase_add_test(parse,
                   test_http_bad_byte_within_max_is_bad_even_when_oversize);
    tcase_add_test(parse, test_http_empty_input_needs_more);
    tcase_add_test(parse, test_http_endpoint_matches_exact_paths);
    suite_add_tcase(s, parse);

    upgrade = tcase_create("upgrade");
    tcase_add_test(upgrade, test_http_valid_server_upgrade_passes);
    tcase_add_test(upgrade,
                   test_http_client_upgrade_needs_no_version_or_token);
    tcase_add_loop_test(upgrade,
                        test_http_server_missing_required_header_is_400, 0,
                        nreq);
    tcase_add_loop_test(upgrade,
                        test_http_server_empty_required_header_is_400, 0,
                        nreq);
    tcase_add_test(upgrade, test_http_client_missing_required_header_is_400);
    tcase_add_test(upgrade, test_http_missing_header_reasons_name_the_header);
    tcase_add_test(upgrade, test_http_invalid_server_id_is_400);
    tcase_add_test(upgrade, test_http_server_id_of_128_printable_bytes_passes);
    tcase_add_test(upgrade, test_http_http10_is_426_with_upgrade);
    tcase_add_test(upgrade,
                   test_http_connection_without_upgrade_token_is_426);
    tcase_add_test(upgrade,
                   test_http_connection_token_list_with_upgrade_passes);
    tcase_add_test(upgrade, test_http_upgrade_without_websocket_token_is_426);
    tcase_add_test(upgrade, test_http_not_get_is_405);
    tcase_add_test(upgrade,
                   test_http_websocket_version_not_13_is_400_with_version);
    tcase_add_test(upgrade, test_http_bad_websocket_key_is_400);
    tcase_add_test(upgrade,
                   test_http_websocket_key_with_padding_bits_and_blanks_passes);
    tcase_add_test(upgrade, test_http_handshake_failures_come_in_spec_order);
    tcase_add_test(upgrade, test_http_reasons_never_echo_values);
    tcase_add_test(upgrade, test_http_other_endpoints_skip_header_checks);
    tcase_add_test(upgrade, test_http_has_token_matches_comma_lists);
    suite_add_tcase(s, upgrade);

    resp = tcase_create("responses");
    tcase_add_test(resp, test_http_ws_accept_matches_rfc6455_example);
    tcase_add_test(resp, test_http_error_response_is_byte_exact);
    tcase_add_test(resp, test_http_error_response_carries_extra_header);
    tcase_add_test(resp, test_http_error_response_with_empty_body_has_newline);
    tcase_add_test(resp, test_http_error_response_too_small_buffer_gives_0);
    tcase_add_test(resp, test_http_switching_response_is_byte_exact);
    tcase_add_test(resp, test_http_ok_response_is_byte_exact);
    tcase_add_test(resp, test_http_ok_response_head_only_omits_body);
    tcase_add_test(resp, test_http_status_texts_cover_every_status_sent);
    suite_add_tcase(s, resp);

    return s;
}
