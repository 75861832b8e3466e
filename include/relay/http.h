/*
 * http.h: HTTP/1.x request heads, the WebSocket opening handshake, and the
 * few fixed responses the relay writes before a socket becomes a
 * WebSocket.
 *
 * A protocol module: it works on buffers and does no I/O, no allocation
 * of its own (libcrypto's digest may allocate) and no logging, so it can
 * be tested on a head split at every offset and fuzzed.  The parser is
 * strict about syntax and bounded by RELAY_HEAD_MAX; it keeps offsets into
 * the caller's buffer, never copies.
 */

#ifndef RELAY_HTTP_H
#define RELAY_HTTP_H

#include <stddef.h>
#include <stdint.h>

/* The headers the relay reads; all others are skipped. */
enum relay_http_header {
    RELAY_HDR_HOST = 0,
    RELAY_HDR_UPGRADE,
    RELAY_HDR_CONNECTION,
    RELAY_HDR_WS_VERSION,       /* Sec-WebSocket-Version */
    RELAY_HDR_WS_KEY,           /* Sec-WebSocket-Key */
    RELAY_HDR_SERVER,           /* x-pyrycode-server */
    RELAY_HDR_VERSION,          /* x-pyrycode-version */
    RELAY_HDR_USER_AGENT,
    RELAY_HDR_DEVICE_NAME,      /* x-pyrycode-device-name */
    RELAY_HDR_TOKEN,            /* x-pyrycode-token: presence only */
    RELAY_HDR_XFF,              /* X-Forwarded-For */
    RELAY_HDR_COUNT
};

enum relay_http_method {
    RELAY_HTTP_GET = 0,
    RELAY_HTTP_HEAD,
    RELAY_HTTP_OTHER            /* any other syntactically valid token */
};

/* A byte range of the parsed buffer. */
struct relay_http_span {
    uint16_t off;
    uint16_t len;
};

struct relay_http_request {
    int method;                         /* enum relay_http_method */
    int version_minor;                  /* HTTP/1.<n>: 0 or 1 */
    struct relay_http_span path;        /* target up to '?' */
    size_t head_len;                    /* bytes up to and incl. blank line */
    /*
     * First occurrence of each known header; the value is trimmed of
     * leading and trailing spaces and tabs.  present is 1 even when the
     * trimmed value is empty.
     */
    struct {
        uint8_t present;
        struct relay_http_span value;
    } hdr[RELAY_HDR_COUNT];
};

enum relay_http_parse_result {
    RELAY_HTTP_OK = 0,          /* complete head; req filled */
    RELAY_HTTP_AGAIN = 1,       /* need more bytes (len < RELAY_HEAD_MAX) */
    RELAY_HTTP_TOO_LARGE = 2,   /* no end of head in RELAY_HEAD_MAX: 431 */
    RELAY_HTTP_BAD = 3          /* malformed: 400 */
};

/*
 * Parse the request head at buf[0..len).  Lines end in CRLF (a bare LF is
 * accepted too); the head ends at the first empty line.  Bytes after the
 * head, and bytes past RELAY_HEAD_MAX, are not looked at.  Returns one of
 * enum relay_http_parse_result.  Calling again with a longer buffer
 * re-parses from the start, so the result never depends on how the bytes
 * were split: every proper prefix of a head gives AGAIN (or BAD as soon as
 * a byte makes it malformed), the whole head OK.
 *
 * The syntax accepted, anything else being BAD:
 *   request line  METHOD SP target SP "HTTP/1.0" | "HTTP/1.1"; METHOD a
 *                 token, matched case-sensitively (GET, HEAD, else OTHER);
 *                 target starts with '/' and is bytes 0x21..0x7e
 *   header line   name ":" value; name a token, no blank before the colon;
 *                 value without control bytes other than HTAB, nor DEL;
 *                 no obs-fold (a line starting with SP or HTAB)
 * A CR must be followed by LF.  No empty line may precede the request line.
 *
 * req is zeroed first and is meaningful only when OK is returned; then
 * head_len <= RELAY_HEAD_MAX and every span lies inside buf[0..head_len).
 */
int relay_http_parse(const char *buf, size_t len,
                     struct relay_http_request *req);

/* Which upgrade endpoint a request asks for. */
enum relay_http_endpoint {
    RELAY_EP_NONE = 0,          /* not an upgrade path */
    RELAY_EP_SERVER,            /* /v1/server */
    RELAY_EP_CLIENT,            /* /v1/client */
    RELAY_EP_HEALTHZ,           /* /healthz */
    RELAY_EP_METRICS            /* /metrics */
};

/* Map the request path to an endpoint (exact match, no trailing slash). */
int relay_http_endpoint(const char *buf, const struct relay_http_request *req);

/*
 * The verdict on an upgrade request, steps 4 and 5 of SPEC.md section 2.
 * status is 0 when the upgrade may proceed; otherwise the HTTP status to
 * answer (400, 405, 426), with extra_header either NULL or one complete
 * header line without CRLF ("Upgrade: websocket",
 * "Sec-WebSocket-Version: 13") and reason a short static text for the body
 * and the log.
 */
struct relay_http_verdict {
    int status;
    const char *extra_header;
    const char *reason;
};

/*
 * Check required headers for endpoint (RELAY_EP_SERVER or RELAY_EP_CLIENT)
 * and then the WebSocket handshake, in the order of SPEC.md section 2.
 * req must come from a relay_http_parse() of buf that returned OK.
 *
 * Required headers, each missing or empty after trimming a 400: the
 * server needs x-pyrycode-server, x-pyrycode-version and user-agent, the
 * client x-pyrycode-server and user-agent; then a server-id that breaks
 * the syntax of SPEC.md section 3 is a 400.  Any other endpoint skips
 * this step.  The handshake is then checked in this order: HTTP/1.0, no
 * "upgrade" token in Connection, no "websocket" token in Upgrade (426 with
 * "Upgrade: websocket"); not GET (405); Sec-WebSocket-Version not exactly
 * "13" (400 with "Sec-WebSocket-Version: 13"); Sec-WebSocket-Key absent or
 * not 22 base64 characters and "==" (400).  reason never quotes a value
 * from the request.  On success status is 0 and the pointers are NULL.
 */
void relay_http_check_upgrade(const char *buf,
                              const struct relay_http_request *req,
                              int endpoint, struct relay_http_verdict *v);

/*
 * Return 1 if the comma-separated list value[0..len) contains token,
 * compared case-insensitively after trimming spaces and tabs; else 0.
 */
int relay_http_has_token(const char *value, size_t len, const char *token);

/*
 * Compute Sec-WebSocket-Accept for key[0..len): base64 of the SHA-1 of the
 * key followed by the RFC 6455 GUID.  Writes 28 characters and a NUL.
 * Returns 0, or -1 if the digest failed (out is then the empty string).
 */
int relay_http_ws_accept(const char *key, size_t len, char out[29]);

/*
 * Write a complete error response into out: status line, Content-Type
 * text/plain; charset=utf-8, Content-Length, Connection: close, the
 * optional extra header line, and body followed by "\n" (a NULL body is
 * taken as empty).  Content-Length counts that "\n".  No NUL is written.
 * Returns the length written, or 0 if cap is too small.
 */
size_t relay_http_error_response(char *out, size_t cap, int status,
                                 const char *extra_header, const char *body);

/*
 * Write "HTTP/1.1 101 Switching Protocols" with Upgrade, Connection and
 * Sec-WebSocket-Accept, and nothing else: no subprotocol, no extension.
 * No NUL is written.  Returns the length, or 0 if cap is too small.
 */
size_t relay_http_switching_response(char *out, size_t cap,
                                     const char accept[29]);

/*
 * Write a 200 response with the given content type, Cache-Control:
 * no-store, Content-Length and Connection: close, then body[0..len)
 * unless head_only (Content-Length is len either way).  No NUL is written.
 * Returns the length, or 0 if cap is too small.
 */
size_t relay_http_ok_response(char *out, size_t cap, const char *ctype,
                              const char *body, size_t len, int head_only);

/* The reason phrase for a status code ("Bad Request"), or "Unknown". */
const char *relay_http_status_text(int status);

#endif
