/*
 * fuzz_http.c: libFuzzer target for the request-head parser and the
 * upgrade checks that run on what it returns.
 *
 * Besides memory errors, which the sanitizers report, it checks the
 * promises of http.h that later code relies on without checking again:
 * a parsed head lies inside the input and within RELAY_HEAD_MAX, every
 * span lies inside the head, every prefix of a parsed head asks for more,
 * and a refused upgrade always comes with a status the relay can send.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/common.h"
#include "relay/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
relay_fuzz_check_span(struct relay_http_span span, size_t head_len)
{
    if ((size_t)span.off + span.len > head_len) {
        abort();
    }
}


static void
relay_fuzz_check_verdict(const struct relay_http_verdict *v)
{
    char out[512];

    if (v->status == 0) {
        if (v->extra_header != NULL || v->reason != NULL) {
            abort();
        }
        return;
    }
    if (v->status != 400 && v->status != 405 && v->status != 426) {
        abort();
    }
    if (v->reason == NULL) {
        abort();
    }
    if (relay_http_error_response(out, sizeof(out), v->status, v->extra_header,
                                  v->reason) == 0) {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct relay_http_request req, again;
    struct relay_http_verdict v;
    char accept[29];
    int rc, ep, h;

    rc = relay_http_parse(buf, size, &req);
    if (rc != RELAY_HTTP_OK) {
        if (rc == RELAY_HTTP_AGAIN && size >= RELAY_HEAD_MAX) {
            abort();
        }
        if (rc == RELAY_HTTP_TOO_LARGE && size < RELAY_HEAD_MAX) {
            abort();
        }
        return 0;
    }

    if (req.head_len == 0 || req.head_len > size ||
        req.head_len > RELAY_HEAD_MAX) {
        abort();
    }
    relay_fuzz_check_span(req.path, req.head_len);
    if (req.path.len == 0 || buf[req.path.off] != '/') {
        abort();
    }
    for (h = 0; h < RELAY_HDR_COUNT; h++) {
        if (req.hdr[h].present) {
            relay_fuzz_check_span(req.hdr[h].value, req.head_len);
        } else if (req.hdr[h].value.len != 0) {
            abort();
        }
    }

    /* The same head must parse the same on its own, and one byte short
     * of it must only ask for more. */
    if (relay_http_parse(buf, req.head_len, &again) != RELAY_HTTP_OK ||
        memcmp(&req, &again, sizeof(req)) != 0) {
        abort();
    }
    if (relay_http_parse(buf, req.head_len - 1, &again) != RELAY_HTTP_AGAIN) {
        abort();
    }

    ep = relay_http_endpoint(buf, &req);
    relay_http_check_upgrade(buf, &req, ep, &v);
    relay_fuzz_check_verdict(&v);

    if (v.status == 0 && req.hdr[RELAY_HDR_WS_KEY].present) {
        if (relay_http_ws_accept(buf + req.hdr[RELAY_HDR_WS_KEY].value.off,
                                 req.hdr[RELAY_HDR_WS_KEY].value.len,
                                 accept) != 0 ||
            strlen(accept) != 28) {
            abort();
        }
    }

    return 0;
}
