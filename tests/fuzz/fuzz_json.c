/*
 * fuzz_json.c: libFuzzer target for the strict JSON scanner.
 *
 * Besides memory errors, which the sanitizers report, it checks the
 * promises of json.h that the envelope relies on without checking again:
 * validate and scan_object give the same verdict, every member span lies
 * inside the input in order, a key span sits between two quotes, every
 * member value is itself one valid JSON text of the reported type, and a
 * valid text stays valid with whitespace around it.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay/json.h"

#define RELAY_FUZZ_MEMBERS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
relay_fuzz_count_member(const struct relay_json_member *m, void *arg)
{
    size_t *n = arg;

    (void)m;
    (*n)++;
}


static int
relay_fuzz_type_of(uint8_t c)
{
    switch (c) {
    case '{':
        return RELAY_JSON_OBJECT;
    case '[':
        return RELAY_JSON_ARRAY;
    case '"':
        return RELAY_JSON_STRING;
    case 't':
        return RELAY_JSON_TRUE;
    case 'f':
        return RELAY_JSON_FALSE;
    case 'n':
        return RELAY_JSON_NULL;
    default:
        return RELAY_JSON_NUMBER;
    }
}


static void
relay_fuzz_check_member(const uint8_t *data, size_t size,
                        const struct relay_json_member *m, size_t after)
{
    char out[64];
    long n;

    if (m->key_off == 0 || m->key_off < after ||
        m->key_off + m->key_len >= size || data[m->key_off - 1] != '"' ||
        data[m->key_off + m->key_len] != '"' ||
        m->val_off <= m->key_off + m->key_len || m->val_len == 0 ||
        m->val_off + m->val_len > size) {
        abort();
    }

    if (relay_json_validate(data + m->val_off, m->val_len) != RELAY_JSON_OK ||
        m->type != relay_fuzz_type_of(data[m->val_off])) {
        abort();
    }

    n = relay_json_string_decode(data + m->key_off, m->key_len, out,
                                 sizeof(out));
    if (n < -1 || n >= (long)sizeof(out)) {
        abort();
    }
    if (n >= 0 && strlen(out) != (size_t)n) {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct relay_json_member m[RELAY_FUZZ_MEMBERS];
    size_t count, called, i, after;
    uint8_t *padded;
    int rc, rc2;

    rc = relay_json_validate(data, size);
    if (rc != RELAY_JSON_OK && rc != RELAY_JSON_INVALID &&
        rc != RELAY_JSON_TOO_DEEP) {
        abort();
    }

    rc2 = relay_json_scan_object(data, size, m, RELAY_FUZZ_MEMBERS, &count);
    if (rc == RELAY_JSON_OK) {
        if (rc2 != RELAY_JSON_OK && rc2 != RELAY_JSON_NOT_OBJECT) {
            abort();
        }
    } else if (rc2 != rc || count != 0) {
        abort();
    }

    called = 0;
    if (relay_json_scan_members(data, size, relay_fuzz_count_member, &called) !=
        rc2) {
        abort();
    }

    if (rc2 == RELAY_JSON_OK) {
        if (called != count) {
            abort();
        }
        after = 1;
        for (i = 0; i < count && i < RELAY_FUZZ_MEMBERS; i++) {
            relay_fuzz_check_member(data, size, &m[i], after);
            after = m[i].val_off + m[i].val_len;
        }
    }

    /* Whitespace around a text never changes the verdict. */
    padded = malloc(size + 2);
    if (padded == NULL) {
        return 0;
    }
    padded[0] = '\n';
    if (size > 0) {
        memcpy(padded + 1, data, size);
    }
    padded[size + 1] = '\t';
    if (relay_json_validate(padded, size + 2) != rc) {
        abort();
    }
    free(padded);

    return 0;
}
