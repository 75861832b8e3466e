/*
 * envelope.h: the routing envelope between the relay and a binary.
 *
 * Phone to binary: wrap a phone's message as
 *   {"conn_id":"<conn id>","frame":<the phone's bytes>}
 * Binary to phone: decode the binary's envelope into one of the actions of
 * SPEC.md section 6.2, with the frame as a span of the input so it can be
 * forwarded without a copy.  A protocol module: no I/O, no allocation, no
 * logging.
 *
 * Field matching follows the reference relay's JSON decoder: keys match
 * ASCII case-insensitively, and when a key repeats the last one wins.
 */

#ifndef RELAY_ENVELOPE_H
#define RELAY_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "relay/common.h"

/* Bytes the wrapper adds around a phone message of any length. */
#define RELAY_ENVELOPE_WRAP_OVERHEAD(conn_id_len) \
    (sizeof("{\"conn_id\":\"\",\"frame\":}") - 1 + (conn_id_len))

/*
 * Write the phone-to-binary prefix {"conn_id":"<conn_id>","frame": into
 * out and return its length, or 0 if cap is too small.  The caller sends
 * prefix + frame + "}" so the frame is never copied into a new buffer.
 * conn_id is relay-made ASCII and needs no escaping.  A NUL is written
 * after the prefix only if cap leaves room for it (it is not needed, and
 * not counted in the length).
 */
size_t relay_envelope_wrap_prefix(char *out, size_t cap,
                                  const char *conn_id);

/*
 * Write {"conn_id":"<conn_id>","close_code":<code>} into out, code in
 * decimal.  Returns the length, or 0 if cap is too small.  NUL-terminated
 * as relay_envelope_wrap_prefix.
 */
size_t relay_envelope_close_notice(char *out, size_t cap,
                                   const char *conn_id, int code);

enum relay_envelope_action {
    RELAY_ENV_MALFORMED = 0,    /* not JSON, not an object, wrong types */
    RELAY_ENV_PUSH_WAKE,        /* no conn_id, non-null push_wake */
    RELAY_ENV_NO_CONN_ID,       /* no/empty/null conn_id: drop */
    RELAY_ENV_NO_FRAME,         /* close_code 0/absent, frame absent/null */
    RELAY_ENV_CLOSE,            /* close directive (frame optional) */
    RELAY_ENV_DELIVER           /* deliver frame */
};

struct relay_envelope {
    int action;                         /* enum relay_envelope_action */
    char conn_id[RELAY_CONN_ID_MAX];    /* decoded; "" if none */
    int has_frame;                      /* frame present and not null */
    size_t frame_off;                   /* span of the frame value */
    size_t frame_len;
    int close_code;                     /* 0 if absent or null */
    size_t push_off;                    /* span of push_wake */
    size_t push_len;
};

/*
 * Decode a binary's message buf[0..len) per the decision table of SPEC.md
 * section 6.2, first match wins.  Wrong types: conn_id not a string or
 * null; close_code not null and not a plain integer literal 0..65535 (no
 * fraction, exponent or minus sign, so 1.0, 1e3 and -0 are wrong).  frame
 * and push_wake may be any JSON value.  As in Go's decoder, a null
 * conn_id or close_code leaves an earlier duplicate's value in place,
 * while a null frame or push_wake replaces it.  A conn_id that decodes to
 * more than RELAY_CONN_ID_MAX-1 bytes, or to one holding a NUL, cannot
 * name a phone: it goes on through the table with conn_id set to a string
 * no phone has ("?").  Invalid JSON (including invalid UTF-8 and nesting
 * past RELAY_JSON_MAX_DEPTH) is RELAY_ENV_MALFORMED.  On
 * RELAY_ENV_MALFORMED every other field is zero; has_frame is 0 and the
 * frame span 0/0 when frame is absent or null; push_off/push_len are the
 * span of a non-null push_wake, else 0/0.  Always fills env->action and
 * returns it.
 */
int relay_envelope_decode(const uint8_t *buf, size_t len,
                          struct relay_envelope *env);

enum relay_push_result {
    RELAY_PUSH_OK = 0,
    RELAY_PUSH_MALFORMED,       /* not an object / wrong field types */
    RELAY_PUSH_BAD_PLATFORM,    /* platform is not "fcm" */
    RELAY_PUSH_EMPTY_TOKEN
};

/*
 * Check a push_wake value buf[0..len) (the span from the envelope) with
 * the same key rules: it must be an object whose "platform" and "token"
 * are strings or null (else RELAY_PUSH_MALFORMED); then platform must
 * decode to exactly "fcm" (else RELAY_PUSH_BAD_PLATFORM, also when
 * missing), then token must be non-empty (else RELAY_PUSH_EMPTY_TOKEN,
 * also when missing).  Never copies the token anywhere.  Returns enum
 * relay_push_result.
 */
int relay_envelope_check_push(const uint8_t *buf, size_t len);

#endif
