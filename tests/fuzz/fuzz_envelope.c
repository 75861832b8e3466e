/*
 * fuzz_envelope.c: libFuzzer target for the routing envelope.
 *
 * Besides memory errors, which the sanitizers report, it checks what the
 * routing code trusts without checking again: the action agrees with the
 * fields it comes with, every span lies inside the input and is one valid
 * JSON value, conn_id is always a terminated string, and a phone message
 * the relay wraps for a binary decodes back to the same conn_id and the
 * same frame bytes.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/common.h"
#include "relay/envelope.h"
#include "relay/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
relay_fuzz_check_decode(const uint8_t *data, size_t size,
                        const struct relay_envelope *env)
{
    if (memchr(env->conn_id, '\0', sizeof(env->conn_id)) == NULL) {
        abort();
    }

    if (env->action == RELAY_ENV_MALFORMED) {
        if (env->conn_id[0] != '\0' || env->has_frame || env->close_code != 0 ||
            env->push_len != 0) {
            abort();
        }
        return;
    }
    if (relay_json_validate(data, size) != RELAY_JSON_OK) {
        abort();
    }

    if (env->has_frame &&
        (env->frame_len == 0 || env->frame_off + env->frame_len > size ||
         relay_json_validate(data + env->frame_off, env->frame_len) !=
             RELAY_JSON_OK ||
         (env->frame_len == 4 &&
          memcmp(data + env->frame_off, "null", 4) == 0))) {
        abort();
    }
    if (env->push_len != 0 &&
        (env->push_off + env->push_len > size ||
         relay_json_validate(data + env->push_off, env->push_len) !=
             RELAY_JSON_OK)) {
        abort();
    }
    if (env->close_code < 0 || env->close_code > 65535) {
        abort();
    }

    switch (env->action) {
    case RELAY_ENV_PUSH_WAKE:
        if (env->conn_id[0] != '\0' || env->push_len == 0) {
            abort();
        }
        break;
    case RELAY_ENV_NO_CONN_ID:
        if (env->conn_id[0] != '\0' || env->push_len != 0) {
            abort();
        }
        break;
    case RELAY_ENV_NO_FRAME:
        if (env->conn_id[0] == '\0' || env->close_code != 0 || env->has_frame) {
            abort();
        }
        break;
    case RELAY_ENV_CLOSE:
        if (env->conn_id[0] == '\0' || env->close_code == 0) {
            abort();
        }
        break;
    case RELAY_ENV_DELIVER:
        if (env->conn_id[0] == '\0' || env->close_code != 0 ||
            !env->has_frame) {
            abort();
        }
        break;
    default:
        abort();
    }
}


static int
relay_fuzz_is_ws(uint8_t c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}


/* Wrap the input as a phone message and decode it as a binary would. */
static void
relay_fuzz_check_wrap(const uint8_t *data, size_t size)
{
    static const char id[] = "client-fuzz-0123abcd";
    struct relay_envelope env;
    const uint8_t *frame;
    size_t n, cap, flen;
    uint8_t *msg;
    int action;

    if (relay_json_validate(data, size) != RELAY_JSON_OK) {
        return;
    }

    cap = RELAY_ENVELOPE_WRAP_OVERHEAD(sizeof(id) - 1) + size;
    msg = malloc(cap);
    if (msg == NULL) {
        return;
    }
    n = relay_envelope_wrap_prefix((char *)msg, cap, id);
    if (n == 0 || n + size + 1 != cap) {
        abort();
    }
    memcpy(msg + n, data, size);
    msg[cap - 1] = '}';

    frame = data;
    flen = size;
    while (flen > 0 && relay_fuzz_is_ws(frame[0])) {
        frame++;
        flen--;
    }
    while (flen > 0 && relay_fuzz_is_ws(frame[flen - 1])) {
        flen--;
    }

    action = relay_envelope_decode(msg, cap, &env);
    if (action == RELAY_ENV_MALFORMED) {
        /* Only the one extra level of nesting may push it over. */
        if (relay_json_validate(msg, cap) != RELAY_JSON_TOO_DEEP) {
            abort();
        }
    } else if (flen == 4 && memcmp(frame, "null", 4) == 0) {
        if (action != RELAY_ENV_NO_FRAME) {
            abort();
        }
    } else if (action != RELAY_ENV_DELIVER || strcmp(env.conn_id, id) != 0 ||
               env.frame_len != flen ||
               memcmp(msg + env.frame_off, frame, flen) != 0) {
        abort();
    }

    free(msg);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct relay_envelope env;
    int action, push;

    action = relay_envelope_decode(data, size, &env);
    if (action != env.action) {
        abort();
    }
    relay_fuzz_check_decode(data, size, &env);

    if (action == RELAY_ENV_PUSH_WAKE) {
        push = relay_envelope_check_push(data + env.push_off, env.push_len);
        if (push < RELAY_PUSH_OK || push > RELAY_PUSH_EMPTY_TOKEN) {
            abort();
        }
    }
    push = relay_envelope_check_push(data, size);
    if (push < RELAY_PUSH_OK || push > RELAY_PUSH_EMPTY_TOKEN) {
        abort();
    }

    relay_fuzz_check_wrap(data, size);

    return 0;
}
