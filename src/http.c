/*
 * http.c: the HTTP/1.x side of an upgrade: a strict request-head parser,
 * the header and handshake checks of SPEC.md section 2 (steps 4 and 5),
 * the Sec-WebSocket-Accept digest, and the few fixed responses.
 *
 * It touches only the buffers it is given: no I/O, no logging and no
 * allocation of its own (libcrypto may allocate inside the digest).  The
 * parser is a byte-at-a-time state machine that starts again from offset 0
 * on every call.  That rescans at most RELAY_HEAD_MAX bytes per read, and
 * in exchange no state lives between reads, so a head split anywhere
 * gives the same answer and a malformed prefix is refused as soon as the
 * offending byte arrives.
 */

#include <string.h>

#include <openssl/evp.h>

#include "relay/common.h"
#include "relay/http.h"
#include "relay/util.h"

#define RELAY_HTTP_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define RELAY_HTTP_VERSION "HTTP/1."
#define RELAY_HTTP_KEY_LEN 24 /* base64 of 16 bytes, with "==" */

/* Where the parser is inside the head. */
enum relay_http_state {
    RELAY_HTTP_S_METHOD = 0,
    RELAY_HTTP_S_TARGET_START,
    RELAY_HTTP_S_TARGET,
    RELAY_HTTP_S_VERSION,
    RELAY_HTTP_S_MINOR,
    RELAY_HTTP_S_REQ_END,
    RELAY_HTTP_S_REQ_LF,
    RELAY_HTTP_S_FIELD_START,
    RELAY_HTTP_S_NAME,
    RELAY_HTTP_S_VALUE,
    RELAY_HTTP_S_VALUE_LF,
    RELAY_HTTP_S_END_LF
};

/* Lowercase names, indexed by enum relay_http_header. */
static const struct {
    const char *name;
    size_t len;
} relay_http_names[RELAY_HDR_COUNT] = {
#define RELAY_HTTP_NAME(id, s) [id] = {s, sizeof(s) - 1}
    RELAY_HTTP_NAME(RELAY_HDR_HOST, "host"),
    RELAY_HTTP_NAME(RELAY_HDR_UPGRADE, "upgrade"),
    RELAY_HTTP_NAME(RELAY_HDR_CONNECTION, "connection"),
    RELAY_HTTP_NAME(RELAY_HDR_WS_VERSION, "sec-websocket-version"),
    RELAY_HTTP_NAME(RELAY_HDR_WS_KEY, "sec-websocket-key"),
    RELAY_HTTP_NAME(RELAY_HDR_SERVER, "x-pyrycode-server"),
    RELAY_HTTP_NAME(RELAY_HDR_VERSION, "x-pyrycode-version"),
    RELAY_HTTP_NAME(RELAY_HDR_USER_AGENT, "user-agent"),
    RELAY_HTTP_NAME(RELAY_HDR_DEVICE_NAME, "x-pyrycode-device-name"),
    RELAY_HTTP_NAME(RELAY_HDR_TOKEN, "x-pyrycode-token"),
    RELAY_HTTP_NAME(RELAY_HDR_XFF, "x-forwarded-for")
#undef RELAY_HTTP_NAME
};

/* Bounded writer for the responses: remembers overflow instead of failing
 * at each step, so a builder can append everything and check once. */
struct relay_http_out {
    char *p;
    size_t cap;
    size_t len;
    int overflow;
};


/* RFC 7230 tchar: the bytes of a method or a header name. */
static int
relay_http_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9')) {
        return 1;
    }

    return memchr("!#$%&'*+-.^_`|~", c, 15) != NULL;
}


static int
relay_http_is_ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}


/* Bytes allowed inside a field value besides SP and HTAB: VCHAR and
 * obs-text.  Every other control byte, and DEL, make the head bad. */
static int
relay_http_is_value_char(unsigned char c)
{
    /*
     * Control bytes other than NUL, CR and LF are kept: a phone's device
     * name may carry them, and SPEC.md has them replaced when logged, not
     * refused.  The relay never forwards a header, so nothing downstream
     * can be confused by them.
     */
    return c != '\0' && c != '\r' && c != '\n' && c != ' ' && c != '\t';
}


static int
relay_http_span_equals(const char *buf, struct relay_http_span span,
                       const char *lit)
{
    size_t n;

    n = strlen(lit);
    if (span.len != n) {
        return 0;
    }
    return memcmp(buf + span.off, lit, n) == 0;
}


static int
relay_http_ieq(const char *a, const char *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (relay_util_ascii_lower((unsigned char)a[i]) !=
            relay_util_ascii_lower((unsigned char)b[i])) {
            return 0;
        }
    }
    return 1;
}


static int
relay_http_method_of(const char *buf, size_t len)
{
    /* Methods are case-sensitive (RFC 7231 4.1): "get" is some other
     * method, which the handshake then refuses with 405. */
    if (len == 3 && memcmp(buf, "GET", 3) == 0) {
        return RELAY_HTTP_GET;
    }
    if (len == 4 && memcmp(buf, "HEAD", 4) == 0) {
        return RELAY_HTTP_HEAD;
    }
    return RELAY_HTTP_OTHER;
}


/*
 * Record a complete header line if its name is one we read and it is the
 * first of that name.  vstart == vend when the trimmed value is empty.
 */
static void
relay_http_store_field(const char *buf, struct relay_http_request *req,
                       size_t name_off, size_t name_end, size_t vstart,
                       size_t vend)
{
    size_t n;
    int i;

    n = name_end - name_off;
    for (i = 0; i < RELAY_HDR_COUNT; i++) {
        if (relay_http_names[i].len == n &&
            relay_http_ieq(buf + name_off, relay_http_names[i].name, n)) {
            break;
        }
    }
    if (i == RELAY_HDR_COUNT || req->hdr[i].present) {
        return;
    }

    req->hdr[i].present = 1;
    req->hdr[i].value.off = (uint16_t)vstart;
    req->hdr[i].value.len = (uint16_t)(vend - vstart);
}


int
relay_http_parse(const char *buf, size_t len, struct relay_http_request *req)
{
    const unsigned char *p = (const unsigned char *)buf;
    enum relay_http_state st;
    size_t scan, i, path_end, name_off, name_end, vstart, vend, vi;
    int have_query;
    unsigned char c;

    memset(req, 0, sizeof(*req));
    st = RELAY_HTTP_S_METHOD;
    path_end = name_off = name_end = vstart = vend = vi = 0;
    have_query = 0;

    /* Only the first RELAY_HEAD_MAX bytes count, so every offset fits a
     * uint16_t and a head that ends past the limit is too large however
     * the bytes arrived. */
    scan = len < RELAY_HEAD_MAX ? len : RELAY_HEAD_MAX;

    for (i = 0; i < scan; i++) {
        c = p[i];

        switch (st) {
        case RELAY_HTTP_S_METHOD:
            if (c == ' ' && i > 0) {
                req->method = relay_http_method_of(buf, i);
                st = RELAY_HTTP_S_TARGET_START;
            } else if (!relay_http_is_tchar(c)) {
                return RELAY_HTTP_BAD;
            }
            break;

        case RELAY_HTTP_S_TARGET_START:
            /* Origin-form only: the relay is never a forward proxy. */
            if (c != '/') {
                return RELAY_HTTP_BAD;
            }
            req->path.off = (uint16_t)i;
            st = RELAY_HTTP_S_TARGET;
            break;

        case RELAY_HTTP_S_TARGET:
            if (c == ' ') {
                if (!have_query) {
                    path_end = i;
                }
                req->path.len = (uint16_t)(path_end - req->path.off);
                vi = 0;
                st = RELAY_HTTP_S_VERSION;
            } else if (c < 0x21 || c > 0x7e) {
                return RELAY_HTTP_BAD;
            } else if (c == '?' && !have_query) {
                have_query = 1;
                path_end = i;
            }
            break;

        case RELAY_HTTP_S_VERSION:
            if (c != (unsigned char)RELAY_HTTP_VERSION[vi]) {
                return RELAY_HTTP_BAD;
            }
            vi++;
            if (vi == sizeof(RELAY_HTTP_VERSION) - 1) {
                st = RELAY_HTTP_S_MINOR;
            }
            break;

        case RELAY_HTTP_S_MINOR:
            if (c != '0' && c != '1') {
                return RELAY_HTTP_BAD;
            }
            req->version_minor = c - '0';
            st = RELAY_HTTP_S_REQ_END;
            break;

        case RELAY_HTTP_S_REQ_END:
            if (c == '\r') {
                st = RELAY_HTTP_S_REQ_LF;
            } else if (c == '\n') {
                st = RELAY_HTTP_S_FIELD_START;
            } else {
                return RELAY_HTTP_BAD;
            }
            break;

        case RELAY_HTTP_S_REQ_LF:
        case RELAY_HTTP_S_VALUE_LF:
        case RELAY_HTTP_S_END_LF:
            /* A CR anywhere but before LF is a smuggling vector. */
            if (c != '\n') {
                return RELAY_HTTP_BAD;
            }
            if (st == RELAY_HTTP_S_END_LF) {
                req->head_len = i + 1;
                return RELAY_HTTP_OK;
            }
            if (st == RELAY_HTTP_S_VALUE_LF) {
                relay_http_store_field(buf, req, name_off, name_end, vstart,
                                       vend);
            }
            st = RELAY_HTTP_S_FIELD_START;
            break;

        case RELAY_HTTP_S_FIELD_START:
            if (c == '\r') {
                st = RELAY_HTTP_S_END_LF;
            } else if (c == '\n') {
                req->head_len = i + 1;
                return RELAY_HTTP_OK;
            } else if (relay_http_is_tchar(c)) {
                /* SP or HTAB here would be obs-fold (RFC 7230 3.2.4),
                 * which a server may refuse; this one does. */
                name_off = i;
                st = RELAY_HTTP_S_NAME;
            } else {
                return RELAY_HTTP_BAD;
            }
            break;

        case RELAY_HTTP_S_NAME:
            if (c == ':') {
                name_end = i;
                vstart = vend = i + 1;
                st = RELAY_HTTP_S_VALUE;
            } else if (!relay_http_is_tchar(c)) {
                return RELAY_HTTP_BAD;
            }
            break;

        case RELAY_HTTP_S_VALUE:
            if (c == '\r') {
                st = RELAY_HTTP_S_VALUE_LF;
            } else if (c == '\n') {
                relay_http_store_field(buf, req, name_off, name_end, vstart,
                                       vend);
                st = RELAY_HTTP_S_FIELD_START;
            } else if (relay_http_is_value_char(c)) {
                /* Leading blanks are skipped by moving vstart along while
                 * nothing has been kept; trailing ones by vend lagging. */
                if (vstart == vend) {
                    vstart = i;
                }
                vend = i + 1;
            } else if (relay_http_is_ws(c)) {
                if (vstart == vend) {
                    vstart = vend = i + 1;
                }
            } else {
                return RELAY_HTTP_BAD;
            }
            break;
        }
    }

    if (len >= RELAY_HEAD_MAX) {
        return RELAY_HTTP_TOO_LARGE;
    }
    return RELAY_HTTP_AGAIN;
}


int
relay_http_endpoint(const char *buf, const struct relay_http_request *req)
{
    if (relay_http_span_equals(buf, req->path, "/v1/server")) {
        return RELAY_EP_SERVER;
    }
    if (relay_http_span_equals(buf, req->path, "/v1/client")) {
        return RELAY_EP_CLIENT;
    }
    if (relay_http_span_equals(buf, req->path, "/healthz")) {
        return RELAY_EP_HEALTHZ;
    }
    if (relay_http_span_equals(buf, req->path, "/metrics")) {
        return RELAY_EP_METRICS;
    }
    return RELAY_EP_NONE;
}


int
relay_http_has_token(const char *value, size_t len, const char *token)
{
    size_t tlen, start, end, i;

    tlen = strlen(token);
    i = 0;

    while (i <= len) {
        start = i;
        while (i < len && value[i] != ',') {
            i++;
        }
        end = i;
        i++;

        while (start < end && relay_http_is_ws((unsigned char)value[start])) {
            start++;
        }
        while (end > start && relay_http_is_ws((unsigned char)value[end - 1])) {
            end--;
        }
        if (end - start == tlen && relay_http_ieq(value + start, token, tlen)) {
            return 1;
        }
    }

    return 0;
}


/*
 * RFC 6455 4.1: the key is base64 of 16 bytes, which is always 22 alphabet
 * characters and "==".  EVP_DecodeBlock() alone is too lenient for that (it
 * takes '=' in the middle and drops trailing ones), so the shape is
 * checked by hand first and the decoder only confirms the byte count.
 */
static int
relay_http_ws_key_valid(const char *key, size_t len)
{
    unsigned char raw[RELAY_HTTP_KEY_LEN];
    unsigned char c;
    size_t i;

    if (len != RELAY_HTTP_KEY_LEN) {
        return 0;
    }
    for (i = 0; i < RELAY_HTTP_KEY_LEN - 2; i++) {
        c = (unsigned char)key[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '+' || c == '/')) {
            return 0;
        }
    }
    if (key[RELAY_HTTP_KEY_LEN - 2] != '=' ||
        key[RELAY_HTTP_KEY_LEN - 1] != '=') {
        return 0;
    }

    /* 24 characters decode to 18 bytes, the last two the padding's. */
    return EVP_DecodeBlock(raw, (const unsigned char *)key,
                           RELAY_HTTP_KEY_LEN) == 18;
}


/* A header that is present with a non-empty trimmed value. */
static int
relay_http_has_value(const struct relay_http_request *req, int h)
{
    return req->hdr[h].present && req->hdr[h].value.len > 0;
}


static void
relay_http_refuse(struct relay_http_verdict *v, int status,
                  const char *extra_header, const char *reason)
{
    v->status = status;
    v->extra_header = extra_header;
    v->reason = reason;
}


void
relay_http_check_upgrade(const char *buf, const struct relay_http_request *req,
                         int endpoint, struct relay_http_verdict *v)
{
    const struct relay_http_span *val;

    relay_http_refuse(v, 0, NULL, NULL);

    if (endpoint == RELAY_EP_SERVER || endpoint == RELAY_EP_CLIENT) {
        if (!relay_http_has_value(req, RELAY_HDR_SERVER)) {
            relay_http_refuse(v, 400, NULL, "missing x-pyrycode-server header");
            return;
        }
        if (endpoint == RELAY_EP_SERVER &&
            !relay_http_has_value(req, RELAY_HDR_VERSION)) {
            relay_http_refuse(v, 400, NULL,
                              "missing x-pyrycode-version header");
            return;
        }
        if (!relay_http_has_value(req, RELAY_HDR_USER_AGENT)) {
            relay_http_refuse(v, 400, NULL, "missing user-agent header");
            return;
        }
        val = &req->hdr[RELAY_HDR_SERVER].value;
        if (!relay_util_server_id_valid(buf + val->off, val->len)) {
            relay_http_refuse(v, 400, NULL, "invalid server-id");
            return;
        }
    }

    /*
     * The order below is the one the reference relay's WebSocket library
     * checks in, so both relays give the same status for a request that
     * is wrong in more than one way.
     */
    if (req->version_minor < 1) {
        relay_http_refuse(v, 426, "Upgrade: websocket", "http/1.1 required");
        return;
    }

    val = &req->hdr[RELAY_HDR_CONNECTION].value;
    if (!req->hdr[RELAY_HDR_CONNECTION].present ||
        !relay_http_has_token(buf + val->off, val->len, "upgrade")) {
        relay_http_refuse(v, 426, "Upgrade: websocket",
                          "missing connection: upgrade");
        return;
    }

    val = &req->hdr[RELAY_HDR_UPGRADE].value;
    if (!req->hdr[RELAY_HDR_UPGRADE].present ||
        !relay_http_has_token(buf + val->off, val->len, "websocket")) {
        relay_http_refuse(v, 426, "Upgrade: websocket",
                          "missing upgrade: websocket");
        return;
    }

    if (req->method != RELAY_HTTP_GET) {
        relay_http_refuse(v, 405, NULL, "method not allowed");
        return;
    }

    if (!req->hdr[RELAY_HDR_WS_VERSION].present ||
        !relay_http_span_equals(buf, req->hdr[RELAY_HDR_WS_VERSION].value,
                                "13")) {
        relay_http_refuse(v, 400, "Sec-WebSocket-Version: 13",
                          "unsupported websocket version");
        return;
    }

    val = &req->hdr[RELAY_HDR_WS_KEY].value;
    if (!req->hdr[RELAY_HDR_WS_KEY].present ||
        !relay_http_ws_key_valid(buf + val->off, val->len)) {
        relay_http_refuse(v, 400, NULL, "bad sec-websocket-key");
        return;
    }
}


int
relay_http_ws_accept(const char *key, size_t len, char out[29])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen;
    EVP_MD_CTX *ctx;
    int rc;

    out[0] = '\0';
    mdlen = 0;

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return -1;
    }

    rc = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, key, len) == 1 &&
         EVP_DigestUpdate(ctx, RELAY_HTTP_WS_GUID,
                          sizeof(RELAY_HTTP_WS_GUID) - 1) == 1 &&
         EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
    EVP_MD_CTX_free(ctx);

    if (!rc || mdlen != 20) {
        return -1;
    }

    /* 20 bytes encode to exactly 28 characters; the encoder adds the NUL. */
    if (EVP_EncodeBlock((unsigned char *)out, md, 20) != 28) {
        out[0] = '\0';
        return -1;
    }

    return 0;
}


static void
relay_http_put(struct relay_http_out *o, const char *s, size_t n)
{
    if (n == 0) {
        return;
    }
    if (o->overflow || n > o->cap - o->len) {
        o->overflow = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}


static void
relay_http_puts(struct relay_http_out *o, const char *s)
{
    relay_http_put(o, s, strlen(s));
}


static void
relay_http_put_size(struct relay_http_out *o, size_t n)
{
    char digits[24];
    size_t i;

    i = sizeof(digits);
    do {
        digits[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);

    relay_http_put(o, digits + i, sizeof(digits) - i);
}


static void
relay_http_put_status(struct relay_http_out *o, int status)
{
    relay_http_puts(o, "HTTP/1.1 ");
    relay_http_put_size(o, status < 0 ? 0 : (size_t)status);
    relay_http_puts(o, " ");
    relay_http_puts(o, relay_http_status_text(status));
    relay_http_puts(o, "\r\n");
}


static size_t
relay_http_finish(const struct relay_http_out *o)
{
    return o->overflow ? 0 : o->len;
}


size_t
relay_http_error_response(char *out, size_t cap, int status,
                          const char *extra_header, const char *body)
{
    struct relay_http_out o = {out, cap, 0, 0};

    if (body == NULL) {
        body = "";
    }

    relay_http_put_status(&o, status);
    relay_http_puts(&o, "Content-Type: text/plain; charset=utf-8\r\n");
    relay_http_puts(&o, "Content-Length: ");
    relay_http_put_size(&o, strlen(body) + 1);
    relay_http_puts(&o, "\r\nConnection: close\r\n");
    if (extra_header != NULL) {
        relay_http_puts(&o, extra_header);
        relay_http_puts(&o, "\r\n");
    }
    relay_http_puts(&o, "\r\n");
    relay_http_puts(&o, body);
    relay_http_puts(&o, "\n");

    return relay_http_finish(&o);
}


size_t
relay_http_switching_response(char *out, size_t cap, const char accept[29])
{
    struct relay_http_out o = {out, cap, 0, 0};

    relay_http_put_status(&o, 101);
    relay_http_puts(&o, "Upgrade: websocket\r\n");
    relay_http_puts(&o, "Connection: Upgrade\r\n");
    relay_http_puts(&o, "Sec-WebSocket-Accept: ");
    relay_http_put(&o, accept, strnlen(accept, 28));
    relay_http_puts(&o, "\r\n\r\n");

    return relay_http_finish(&o);
}


size_t
relay_http_ok_response(char *out, size_t cap, const char *ctype,
                       const char *body, size_t len, int head_only)
{
    struct relay_http_out o = {out, cap, 0, 0};

    relay_http_put_status(&o, 200);
    relay_http_puts(&o, "Content-Type: ");
    relay_http_puts(&o, ctype);
    relay_http_puts(&o, "\r\nCache-Control: no-store\r\n");
    relay_http_puts(&o, "Content-Length: ");
    relay_http_put_size(&o, len);
    relay_http_puts(&o, "\r\nConnection: close\r\n\r\n");
    if (!head_only) {
        relay_http_put(&o, body, len);
    }

    return relay_http_finish(&o);
}


const char *
relay_http_status_text(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 421:
        return "Misdirected Request";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}
