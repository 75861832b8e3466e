/*
 * json.h: a strict RFC 8259 scanner that validates one JSON text and
 * reports the byte spans of the top-level object's members.
 *
 * The relay forwards inner frames byte for byte, so it never builds a tree:
 * it only needs to know that a buffer is one valid JSON value, and where
 * the values of a few top-level members start and end.  No allocation, no
 * I/O; recursion is replaced by an explicit bounded stack, so a hostile
 * input cannot exhaust the C stack.
 *
 * Strictness: exactly one value, optionally surrounded by the four JSON
 * whitespace bytes; strings must be valid UTF-8 (no overlongs, no
 * surrogates encoded directly, nothing above U+10FFFF), control bytes below
 * 0x20 must be escaped, \u escapes must pair surrogates correctly; numbers
 * follow the RFC grammar exactly (no leading zeros, no '+', no bare '.');
 * literals are lowercase true, false, null.  Nesting deeper than
 * RELAY_JSON_MAX_DEPTH arrays/objects is refused.
 */

#ifndef RELAY_JSON_H
#define RELAY_JSON_H

#include <stddef.h>
#include <stdint.h>

#define RELAY_JSON_MAX_DEPTH 128

enum relay_json_result {
    RELAY_JSON_OK = 0,
    RELAY_JSON_INVALID = -1,    /* not one valid JSON text */
    RELAY_JSON_TOO_DEEP = -2,   /* nesting past RELAY_JSON_MAX_DEPTH */
    RELAY_JSON_NOT_OBJECT = -3  /* valid, but the top level is no object */
};

enum relay_json_type {
    RELAY_JSON_NULL = 0,
    RELAY_JSON_FALSE,
    RELAY_JSON_TRUE,
    RELAY_JSON_NUMBER,
    RELAY_JSON_STRING,
    RELAY_JSON_ARRAY,
    RELAY_JSON_OBJECT
};

/*
 * One top-level member.  key_* spans the key's raw bytes between its
 * quotes (escapes not decoded); val_* spans the whole value exactly as it
 * appears (a string includes its quotes).
 */
struct relay_json_member {
    size_t key_off;
    size_t key_len;
    size_t val_off;
    size_t val_len;
    int type;                   /* enum relay_json_type */
};

/*
 * Return 1 if buf[0..len) is well-formed UTF-8 by the same rules as
 * strings (no overlongs, no encoded surrogates, nothing past U+10FFFF),
 * 0 otherwise.  ASCII is checked a word at a time.
 */
int relay_json_utf8_valid(const uint8_t *buf, size_t len);

/*
 * Validate buf[0..len) as one JSON text of any type.  Returns RELAY_JSON_OK,
 * RELAY_JSON_INVALID or RELAY_JSON_TOO_DEEP (never NOT_OBJECT).  TOO_DEEP
 * is returned as soon as the nesting passes the limit, whatever follows.
 */
int relay_json_validate(const uint8_t *buf, size_t len);

/*
 * Validate buf[0..len) and, if its top-level value is an object, record
 * its members in order into members[0..max).  *count receives the total
 * number of members, which may exceed max (the extra ones are validated
 * but not recorded); it is 0 unless the result is RELAY_JSON_OK.  members
 * may be NULL when max is 0, count may be NULL.  Returns RELAY_JSON_OK,
 * RELAY_JSON_INVALID, RELAY_JSON_TOO_DEEP or RELAY_JSON_NOT_OBJECT (only
 * for a valid text whose top level is not an object).
 */
int relay_json_scan_object(const uint8_t *buf, size_t len,
                           struct relay_json_member *members, size_t max,
                           size_t *count);

/*
 * Like relay_json_scan_object, without a limit on the members: cb(member,
 * arg) is called for each top-level member, in order, when its value has
 * been scanned.  The scan goes on after a callback, so an error found
 * later still fails the call: act on what cb saw only if the result is
 * RELAY_JSON_OK.  cb may be NULL.  Same return codes.
 */
int relay_json_scan_members(const uint8_t *buf, size_t len,
                            void (*cb)(const struct relay_json_member *member,
                                       void *arg),
                            void *arg);

/*
 * Decode the raw body of a validated JSON string (the bytes between the
 * quotes) into out as UTF-8 and NUL-terminate it.  Returns the decoded
 * length, or -1 if it does not fit in cap-1 bytes, decodes to a NUL, or
 * holds a bad escape (checked, so an unvalidated body cannot overrun).
 */
long relay_json_string_decode(const uint8_t *raw, size_t len, char *out,
                              size_t cap);

#endif
