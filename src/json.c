/*
 * json.c: strict RFC 8259 validation in one pass, reporting the byte spans
 * of the top-level object's members.
 *
 * Every message a phone or a binary sends goes through here, so the scanner
 * reads each byte once, never allocates and never copies.  It is a loop
 * over an explicit stack of open containers instead of a recursive descent:
 * the depth an input can reach is bounded by RELAY_JSON_MAX_DEPTH, not by
 * the C stack.  It must never accept what RFC 8259 rejects: the relay
 * forwards frames verbatim, and a lenient scanner would hand one peer's
 * garbage to the other as if it were JSON.
 */

#include <stdint.h>
#include <string.h>

#include "relay/json.h"

#define RELAY_JSON_IN_ARRAY 0
#define RELAY_JSON_IN_OBJECT 1

/* Broadcast a byte to the eight lanes of a 64-bit word. */
#define RELAY_JSON_LANES(b) ((uint64_t)(b)*0x0101010101010101ULL)

struct relay_json_collect {
    struct relay_json_member *members;
    size_t max;
    size_t count;
};


static int
relay_json_is_ws(uint8_t c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}


static int
relay_json_is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}


static const uint8_t *
relay_json_skip_ws(const uint8_t *p, const uint8_t *end)
{
    while (p < end && relay_json_is_ws(*p)) {
        p++;
    }

    return p;
}


/*
 * Non-zero if any of the eight bytes of w needs a closer look inside a
 * string: a quote, a backslash, a control byte or a non-ASCII byte.  A
 * borrow can only set extra bits above a lane that really matched, so the
 * answer to "any?" is exact.
 */
static uint64_t
relay_json_word_special(uint64_t w)
{
    uint64_t high, quote, bslash, ctrl;

    high = RELAY_JSON_LANES(0x80);
    quote = w ^ RELAY_JSON_LANES('"');
    bslash = w ^ RELAY_JSON_LANES('\\');

    quote = (quote - RELAY_JSON_LANES(0x01)) & ~quote;
    bslash = (bslash - RELAY_JSON_LANES(0x01)) & ~bslash;
    ctrl = (w - RELAY_JSON_LANES(0x20)) & ~w;

    return (w | quote | bslash | ctrl) & high;
}


static int
relay_json_hex4(const uint8_t *p)
{
    int i, v;
    uint8_t c;

    v = 0;
    for (i = 0; i < 4; i++) {
        c = p[i];
        if (c >= '0' && c <= '9') {
            v = (v << 4) | (c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v = (v << 4) | (c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v = (v << 4) | (c - 'A' + 10);
        } else {
            return -1;
        }
    }

    return v;
}


/*
 * Decode the escape whose backslash precedes p into *cp.  A high surrogate
 * must be followed at once by an escaped low surrogate and the pair yields
 * one code point; a surrogate on its own is no character, so it is refused.
 * Returns the byte after the escape, or NULL.
 */
static const uint8_t *
relay_json_escape(const uint8_t *p, const uint8_t *end, uint32_t *cp)
{
    int hi, lo;

    if (p == end) {
        return NULL;
    }

    switch (*p) {
    case '"':
    case '\\':
    case '/':
        *cp = *p;
        return p + 1;
    case 'b':
        *cp = '\b';
        return p + 1;
    case 'f':
        *cp = '\f';
        return p + 1;
    case 'n':
        *cp = '\n';
        return p + 1;
    case 'r':
        *cp = '\r';
        return p + 1;
    case 't':
        *cp = '\t';
        return p + 1;
    case 'u':
        break;
    default:
        return NULL;
    }

    if (end - p < 5) {
        return NULL;
    }
    hi = relay_json_hex4(p + 1);
    if (hi == -1) {
        return NULL;
    }
    p += 5;

    if (hi >= 0xdc00 && hi <= 0xdfff) {
        return NULL;
    }
    if (hi < 0xd800 || hi > 0xdbff) {
        *cp = (uint32_t)hi;
        return p;
    }

    if (end - p < 6 || p[0] != '\\' || p[1] != 'u') {
        return NULL;
    }
    lo = relay_json_hex4(p + 2);
    if (lo < 0xdc00 || lo > 0xdfff) {
        return NULL;
    }

    *cp = 0x10000 + (((uint32_t)hi - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
    return p + 6;
}


/*
 * Check one UTF-8 sequence starting at the non-ASCII byte at p, with the
 * ranges of Unicode's well-formed byte sequences table: no overlong forms,
 * no encoded surrogates (ED A0..BF), nothing past U+10FFFF (F4 90.., F5..).
 * Returns the byte after it, or NULL.
 */
static const uint8_t *
relay_json_utf8(const uint8_t *p, const uint8_t *end)
{
    uint8_t c, lo, hi;
    size_t need, i;

    c = p[0];
    lo = 0x80;
    hi = 0xbf;

    if (c < 0xc2) {
        return NULL;
    } else if (c < 0xe0) {
        need = 1;
    } else if (c < 0xf0) {
        need = 2;
        if (c == 0xe0) {
            lo = 0xa0;
        } else if (c == 0xed) {
            hi = 0x9f;
        }
    } else if (c < 0xf5) {
        need = 3;
        if (c == 0xf0) {
            lo = 0x90;
        } else if (c == 0xf4) {
            hi = 0x8f;
        }
    } else {
        return NULL;
    }

    if ((size_t)(end - p) <= need) {
        return NULL;
    }
    if (p[1] < lo || p[1] > hi) {
        return NULL;
    }
    for (i = 2; i <= need; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return NULL;
        }
    }

    return p + need + 1;
}


int
relay_json_utf8_valid(const uint8_t *buf, size_t len)
{
    const uint8_t *p = buf, *end = buf + len;
    uint64_t w;

    while (p < end) {
        while (end - p >= 8) {
            memcpy(&w, p, 8);
            if ((w & 0x8080808080808080ull) != 0) {
                break;
            }
            p += 8;
        }
        while (p < end && *p < 0x80) {
            p++;
        }
        if (p == end) {
            break;
        }
        p = relay_json_utf8(p, end);
        if (p == NULL) {
            return 0;
        }
    }

    return 1;
}


/*
 * Scan a string body starting just after its opening quote.  Returns the
 * byte after the closing quote, or NULL.  Plain ASCII is by far the common
 * case, so runs of it are skipped a word at a time before any byte is
 * looked at on its own.
 */
static const uint8_t *
relay_json_string(const uint8_t *p, const uint8_t *end)
{
    uint64_t w;
    uint32_t cp;
    uint8_t c;

    for (;;) {
        while (end - p >= 8) {
            memcpy(&w, p, sizeof(w));
            if (relay_json_word_special(w) != 0) {
                break;
            }
            p += 8;
        }

        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
            p++;
        }
        if (p == end) {
            return NULL;
        }

        c = *p;
        if (c == '"') {
            return p + 1;
        } else if (c == '\\') {
            p = relay_json_escape(p + 1, end, &cp);
        } else if (c < 0x20) {
            return NULL;
        } else {
            p = relay_json_utf8(p, end);
        }
        if (p == NULL) {
            return NULL;
        }
    }
}


/*
 * Scan a number: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
 * What may follow it is the caller's business, which is how "01" and
 * "0x1" are refused.  Returns the byte after it, or NULL.
 */
static const uint8_t *
relay_json_number(const uint8_t *p, const uint8_t *end)
{
    if (*p == '-') {
        p++;
        if (p == end) {
            return NULL;
        }
    }

    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        p++;
        while (p < end && relay_json_is_digit(*p)) {
            p++;
        }
    } else {
        return NULL;
    }

    if (p < end && *p == '.') {
        p++;
        if (p == end || !relay_json_is_digit(*p)) {
            return NULL;
        }
        while (p < end && relay_json_is_digit(*p)) {
            p++;
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }
        if (p == end || !relay_json_is_digit(*p)) {
            return NULL;
        }
        while (p < end && relay_json_is_digit(*p)) {
            p++;
        }
    }

    return p;
}


static const uint8_t *
relay_json_literal(const uint8_t *p, const uint8_t *end, const char *word,
                   size_t n)
{
    if ((size_t)(end - p) < n || memcmp(p, word, n) != 0) {
        return NULL;
    }

    return p + n;
}


/* The type of the value that starts with byte c, assuming it is valid. */
static int
relay_json_type_of(uint8_t c)
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


/*
 * The scanner proper.  The labels are the states of a pushdown automaton:
 * "value" expects any value, "key" expects a member name, "after" has just
 * finished a value and looks at what closes or continues its container.
 * stack[] records whether each open container is an array or an object.
 * A member of the top-level object is reported to cb when its value ends,
 * which is when "after" is reached at depth 1 inside an object.
 */
static int
relay_json_scan(const uint8_t *buf, size_t len,
                void (*cb)(const struct relay_json_member *, void *), void *arg)
{
    uint8_t stack[RELAY_JSON_MAX_DEPTH];
    struct relay_json_member m;
    const uint8_t *p, *end, *key;
    size_t depth;

    p = buf;
    end = buf + len;
    depth = 0;
    memset(&m, 0, sizeof(m));

    p = relay_json_skip_ws(p, end);

value:
    if (p == end) {
        return RELAY_JSON_INVALID;
    }

    switch (*p) {
    case '{':
        if (depth == RELAY_JSON_MAX_DEPTH) {
            return RELAY_JSON_TOO_DEEP;
        }
        stack[depth++] = RELAY_JSON_IN_OBJECT;
        p = relay_json_skip_ws(p + 1, end);
        if (p < end && *p == '}') {
            p++;
            depth--;
            goto after;
        }
        goto key;

    case '[':
        if (depth == RELAY_JSON_MAX_DEPTH) {
            return RELAY_JSON_TOO_DEEP;
        }
        stack[depth++] = RELAY_JSON_IN_ARRAY;
        p = relay_json_skip_ws(p + 1, end);
        if (p < end && *p == ']') {
            p++;
            depth--;
            goto after;
        }
        goto value;

    case '"':
        p = relay_json_string(p + 1, end);
        break;
    case 't':
        p = relay_json_literal(p, end, "true", 4);
        break;
    case 'f':
        p = relay_json_literal(p, end, "false", 5);
        break;
    case 'n':
        p = relay_json_literal(p, end, "null", 4);
        break;
    default:
        if (*p == '-' || relay_json_is_digit(*p)) {
            p = relay_json_number(p, end);
        } else {
            p = NULL;
        }
        break;
    }
    if (p == NULL) {
        return RELAY_JSON_INVALID;
    }

after:
    if (depth == 1 && cb != NULL && stack[0] == RELAY_JSON_IN_OBJECT) {
        m.val_len = (size_t)(p - buf) - m.val_off;
        cb(&m, arg);
    }

    p = relay_json_skip_ws(p, end);
    if (depth == 0) {
        return p == end ? RELAY_JSON_OK : RELAY_JSON_INVALID;
    }
    if (p == end) {
        return RELAY_JSON_INVALID;
    }

    if (*p == ',') {
        p = relay_json_skip_ws(p + 1, end);
        if (stack[depth - 1] == RELAY_JSON_IN_OBJECT) {
            goto key;
        }
        goto value;
    }
    if ((*p == '}' && stack[depth - 1] == RELAY_JSON_IN_OBJECT) ||
        (*p == ']' && stack[depth - 1] == RELAY_JSON_IN_ARRAY)) {
        p++;
        depth--;
        goto after;
    }
    return RELAY_JSON_INVALID;

key:
    if (p == end || *p != '"') {
        return RELAY_JSON_INVALID;
    }
    key = p + 1;
    p = relay_json_string(key, end);
    if (p == NULL) {
        return RELAY_JSON_INVALID;
    }
    if (depth == 1) {
        m.key_off = (size_t)(key - buf);
        m.key_len = (size_t)(p - 1 - key);
    }

    p = relay_json_skip_ws(p, end);
    if (p == end || *p != ':') {
        return RELAY_JSON_INVALID;
    }
    p = relay_json_skip_ws(p + 1, end);

    if (depth == 1 && p < end) {
        m.val_off = (size_t)(p - buf);
        m.type = relay_json_type_of(*p);
    }
    goto value;
}


int
relay_json_validate(const uint8_t *buf, size_t len)
{
    return relay_json_scan(buf, len, NULL, NULL);
}


int
relay_json_scan_members(const uint8_t *buf, size_t len,
                        void (*cb)(const struct relay_json_member *member,
                                   void *arg),
                        void *arg)
{
    const uint8_t *p;
    int rc;

    p = relay_json_skip_ws(buf, buf + len);
    if (p == buf + len || *p != '{') {
        rc = relay_json_scan(buf, len, NULL, NULL);
        return rc == RELAY_JSON_OK ? RELAY_JSON_NOT_OBJECT : rc;
    }

    return relay_json_scan(buf, len, cb, arg);
}


static void
relay_json_collect_member(const struct relay_json_member *member, void *arg)
{
    struct relay_json_collect *c = arg;

    if (c->count < c->max) {
        c->members[c->count] = *member;
    }
    c->count++;
}


int
relay_json_scan_object(const uint8_t *buf, size_t len,
                       struct relay_json_member *members, size_t max,
                       size_t *count)
{
    struct relay_json_collect c;
    int rc;

    c.members = members;
    c.max = members == NULL ? 0 : max;
    c.count = 0;

    rc = relay_json_scan_members(buf, len, relay_json_collect_member, &c);

    if (count != NULL) {
        *count = rc == RELAY_JSON_OK ? c.count : 0;
    }
    return rc;
}


/* Append code point cp as UTF-8, or return 0 if it does not fit. */
static size_t
relay_json_put_utf8(char *out, size_t room, uint32_t cp)
{
    if (cp < 0x80) {
        if (room < 1) {
            return 0;
        }
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        if (room < 2) {
            return 0;
        }
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        if (room < 3) {
            return 0;
        }
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    if (room < 4) {
        return 0;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}


long
relay_json_string_decode(const uint8_t *raw, size_t len, char *out, size_t cap)
{
    const uint8_t *p, *end, *run;
    size_t n, w, room;
    uint32_t cp;

    if (out == NULL || cap == 0) {
        return -1;
    }
    room = cap - 1;
    p = raw;
    end = raw + len;
    n = 0;

    while (p < end) {
        run = p;
        while (p < end && *p != '\\' && *p != '\0') {
            p++;
        }
        if (p > run) {
            if ((size_t)(p - run) > room - n) {
                return -1;
            }
            memcpy(out + n, run, (size_t)(p - run));
            n += (size_t)(p - run);
        }
        if (p == end) {
            break;
        }
        if (*p == '\0') {
            return -1;
        }

        /* Checked again, not trusted: a bad escape must not run past raw. */
        p = relay_json_escape(p + 1, end, &cp);
        if (p == NULL || cp == 0) {
            return -1;
        }
        w = relay_json_put_utf8(out + n, room - n, cp);
        if (w == 0) {
            return -1;
        }
        n += w;
    }

    out[n] = '\0';
    return (long)n;
}
