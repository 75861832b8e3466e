/*
 * envelope.c: the routing envelope between the relay and a binary.
 *
 * Builds the two messages the relay sends a binary and classifies what a
 * binary sends back into one action of SPEC.md section 6.2.  Binaries were
 * written against the reference relay, whose envelope is decoded by Go's
 * encoding/json into a struct; the field rules here reproduce that
 * decoder's observable behaviour so that a binary cannot tell the two
 * relays apart:
 *
 *   - a key names a field if it matches ASCII case-insensitively after its
 *     escapes are decoded; other keys are ignored;
 *   - a repeated key overwrites the earlier value, except that null leaves
 *     a string or integer field as it was (Go ignores null there), while it
 *     does overwrite the raw frame and push_wake values;
 *   - a value of the wrong type anywhere makes the whole envelope
 *     malformed, even if a later duplicate is well typed.
 *
 * The frame is reported as a span of the input so the caller forwards it
 * without a copy.  No I/O, no allocation, no logging.
 */

#include <stdint.h>
#include <string.h>

#include "relay/envelope.h"
#include "relay/json.h"
#include "relay/util.h"

#define RELAY_ENVELOPE_PREFIX_HEAD "{\"conn_id\":\""
#define RELAY_ENVELOPE_PREFIX_TAIL "\",\"frame\":"
#define RELAY_ENVELOPE_NOTICE_TAIL "\",\"close_code\":"

/* Longest field name either decoder looks for, plus room to spare. */
#define RELAY_ENVELOPE_KEY_MAX 16

enum relay_envelope_field {
    RELAY_ENVELOPE_F_OTHER = -1,
    RELAY_ENVELOPE_F_CONN_ID = 0,
    RELAY_ENVELOPE_F_FRAME,
    RELAY_ENVELOPE_F_CLOSE_CODE,
    RELAY_ENVELOPE_F_PUSH_WAKE
};

enum relay_envelope_push_field {
    RELAY_ENVELOPE_P_PLATFORM = 0,
    RELAY_ENVELOPE_P_TOKEN
};

static const char *const relay_envelope_fields[] = {
    "conn_id", "frame", "close_code", "push_wake", NULL};

static const char *const relay_envelope_push_fields[] = {"platform", "token",
                                                         NULL};

/* What the member callback has seen so far; the last duplicate wins. */
struct relay_envelope_seen {
    const uint8_t *buf;
    int malformed;
    int has_conn_id;
    struct relay_json_member conn_id;
    int has_frame;
    struct relay_json_member frame;
    long close_code;
    int has_push;
    struct relay_json_member push;
};

struct relay_envelope_push_seen {
    const uint8_t *buf;
    int malformed;
    int has_platform;
    struct relay_json_member platform;
    int has_token;
    struct relay_json_member token;
};


/* Append s[0..n) at *len if it fits in cap; return 0 if it does not. */
static int
relay_envelope_put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    if (n > cap || *len > cap - n) {
        return 0;
    }
    memcpy(out + *len, s, n);
    *len += n;

    return 1;
}


/*
 * The caller reserves exactly the bytes it sends, so the NUL is written
 * only when there is room for it; the length returned never counts it.
 */
static void
relay_envelope_terminate(char *out, size_t cap, size_t len)
{
    if (len < cap) {
        out[len] = '\0';
    }
}


size_t
relay_envelope_wrap_prefix(char *out, size_t cap, const char *conn_id)
{
    size_t len;

    if (out == NULL || conn_id == NULL) {
        return 0;
    }

    len = 0;
    if (!relay_envelope_put(out, cap, &len, RELAY_ENVELOPE_PREFIX_HEAD,
                            sizeof(RELAY_ENVELOPE_PREFIX_HEAD) - 1) ||
        !relay_envelope_put(out, cap, &len, conn_id, strlen(conn_id)) ||
        !relay_envelope_put(out, cap, &len, RELAY_ENVELOPE_PREFIX_TAIL,
                            sizeof(RELAY_ENVELOPE_PREFIX_TAIL) - 1)) {
        return 0;
    }

    relay_envelope_terminate(out, cap, len);
    return len;
}


size_t
relay_envelope_close_notice(char *out, size_t cap, const char *conn_id,
                            int code)
{
    char digits[16];
    unsigned int v;
    size_t len, n;

    if (out == NULL || conn_id == NULL) {
        return 0;
    }

    /* Built backwards so no formatting library is needed on this path. */
    n = sizeof(digits);
    digits[--n] = '}';
    v = code < 0 ? 0u - (unsigned int)code : (unsigned int)code;
    do {
        digits[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    if (code < 0) {
        digits[--n] = '-';
    }

    len = 0;
    if (!relay_envelope_put(out, cap, &len, RELAY_ENVELOPE_PREFIX_HEAD,
                            sizeof(RELAY_ENVELOPE_PREFIX_HEAD) - 1) ||
        !relay_envelope_put(out, cap, &len, conn_id, strlen(conn_id)) ||
        !relay_envelope_put(out, cap, &len, RELAY_ENVELOPE_NOTICE_TAIL,
                            sizeof(RELAY_ENVELOPE_NOTICE_TAIL) - 1) ||
        !relay_envelope_put(out, cap, &len, digits + n, sizeof(digits) - n)) {
        return 0;
    }

    relay_envelope_terminate(out, cap, len);
    return len;
}


/*
 * Index in names[] of the field a key names, or RELAY_ENVELOPE_F_OTHER.
 * names[] are lowercase ASCII.  A key with escapes is decoded first, as Go
 * does; one that decodes to more than RELAY_ENVELOPE_KEY_MAX-1 bytes is
 * longer than every name and so names nothing.
 */
static int
relay_envelope_field(const uint8_t *buf, const struct relay_json_member *m,
                     const char *const *names)
{
    char decoded[RELAY_ENVELOPE_KEY_MAX];
    const char *key;
    size_t len, i;
    long n;
    int f;

    key = (const char *)buf + m->key_off;
    len = m->key_len;

    if (memchr(key, '\\', len) != NULL) {
        n = relay_json_string_decode(buf + m->key_off, len, decoded,
                                     sizeof(decoded));
        if (n == -1) {
            return RELAY_ENVELOPE_F_OTHER;
        }
        key = decoded;
        len = (size_t)n;
    }

    for (f = 0; names[f] != NULL; f++) {
        if (strlen(names[f]) != len) {
            continue;
        }
        for (i = 0; i < len; i++) {
            if (relay_util_ascii_lower((unsigned char)key[i]) != names[f][i]) {
                break;
            }
        }
        if (i == len) {
            return f;
        }
    }

    return RELAY_ENVELOPE_F_OTHER;
}


/*
 * Parse close_code the way Go fills a uint16: plain decimal digits only (a
 * fraction, an exponent or a minus sign is a type error even when the
 * value is whole, "-0" included), at most 65535.  Returns -1 otherwise.
 */
static long
relay_envelope_uint16(const uint8_t *p, size_t len)
{
    long v;
    size_t i;

    v = 0;
    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }
        v = v * 10 + (p[i] - '0');
        if (v > 65535) {
            return -1;
        }
    }

    return len == 0 ? -1 : v;
}


static void
relay_envelope_member(const struct relay_json_member *m, void *arg)
{
    struct relay_envelope_seen *seen = arg;
    long code;

    switch (relay_envelope_field(seen->buf, m, relay_envelope_fields)) {
    case RELAY_ENVELOPE_F_CONN_ID:
        if (m->type == RELAY_JSON_STRING) {
            seen->has_conn_id = 1;
            seen->conn_id = *m;
        } else if (m->type != RELAY_JSON_NULL) {
            seen->malformed = 1;
        }
        break;

    case RELAY_ENVELOPE_F_FRAME:
        seen->has_frame = m->type != RELAY_JSON_NULL;
        seen->frame = *m;
        break;

    case RELAY_ENVELOPE_F_CLOSE_CODE:
        if (m->type == RELAY_JSON_NUMBER) {
            code = relay_envelope_uint16(seen->buf + m->val_off, m->val_len);
            if (code == -1) {
                seen->malformed = 1;
            } else {
                seen->close_code = code;
            }
        } else if (m->type != RELAY_JSON_NULL) {
            seen->malformed = 1;
        }
        break;

    case RELAY_ENVELOPE_F_PUSH_WAKE:
        seen->has_push = m->type != RELAY_JSON_NULL;
        seen->push = *m;
        break;

    default:
        break;
    }
}


int
relay_envelope_decode(const uint8_t *buf, size_t len,
                      struct relay_envelope *env)
{
    struct relay_envelope_seen seen;
    long n;
    int rc;

    memset(env, 0, sizeof(*env));
    memset(&seen, 0, sizeof(seen));
    seen.buf = buf;

    rc = relay_json_scan_members(buf, len, relay_envelope_member, &seen);
    if (rc != RELAY_JSON_OK || seen.malformed) {
        env->action = RELAY_ENV_MALFORMED;
        return env->action;
    }

    env->close_code = (int)seen.close_code;
    if (seen.has_frame) {
        env->has_frame = 1;
        env->frame_off = seen.frame.val_off;
        env->frame_len = seen.frame.val_len;
    }
    if (seen.has_push) {
        env->push_off = seen.push.val_off;
        env->push_len = seen.push.val_len;
    }

    /*
     * The value span includes the quotes; the body is what Go would have
     * decoded.  A body that does not fit (or hides a NUL) is a non-empty
     * id no phone can have, so it must still route to "unknown conn_id".
     */
    if (seen.has_conn_id && seen.conn_id.val_len > 2) {
        n = relay_json_string_decode(buf + seen.conn_id.val_off + 1,
                                     seen.conn_id.val_len - 2, env->conn_id,
                                     sizeof(env->conn_id));
        if (n == -1) {
            memcpy(env->conn_id, "?", 2);
        }
    }

    if (env->conn_id[0] == '\0') {
        env->action =
            seen.has_push ? RELAY_ENV_PUSH_WAKE : RELAY_ENV_NO_CONN_ID;
    } else if (env->close_code == 0 && !env->has_frame) {
        env->action = RELAY_ENV_NO_FRAME;
    } else if (env->close_code != 0) {
        env->action = RELAY_ENV_CLOSE;
    } else {
        env->action = RELAY_ENV_DELIVER;
    }

    return env->action;
}


static void
relay_envelope_push_member(const struct relay_json_member *m, void *arg)
{
    struct relay_envelope_push_seen *seen = arg;
    int f;

    f = relay_envelope_field(seen->buf, m, relay_envelope_push_fields);
    if (f == RELAY_ENVELOPE_F_OTHER || m->type == RELAY_JSON_NULL) {
        return;
    }

    if (m->type != RELAY_JSON_STRING) {
        seen->malformed = 1;
    } else if (f == RELAY_ENVELOPE_P_PLATFORM) {
        seen->has_platform = 1;
        seen->platform = *m;
    } else {
        seen->has_token = 1;
        seen->token = *m;
    }
}


int
relay_envelope_check_push(const uint8_t *buf, size_t len)
{
    struct relay_envelope_push_seen seen;
    char platform[8];
    long n;
    int rc;

    memset(&seen, 0, sizeof(seen));
    seen.buf = buf;

    rc = relay_json_scan_members(buf, len, relay_envelope_push_member, &seen);
    if (rc != RELAY_JSON_OK || seen.malformed) {
        return RELAY_PUSH_MALFORMED;
    }

    if (!seen.has_platform) {
        return RELAY_PUSH_BAD_PLATFORM;
    }
    n = relay_json_string_decode(buf + seen.platform.val_off + 1,
                                 seen.platform.val_len - 2, platform,
                                 sizeof(platform));
    if (n == -1 || strcmp(platform, "fcm") != 0) {
        return RELAY_PUSH_BAD_PLATFORM;
    }

    /* Any body, escapes included, decodes to at least one byte. */
    if (!seen.has_token || seen.token.val_len <= 2) {
        return RELAY_PUSH_EMPTY_TOKEN;
    }

    return RELAY_PUSH_OK;
}
