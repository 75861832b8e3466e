/*
 * util.h: small helpers with no better home: monotonic time, CSPRNG hex,
 * server-id syntax, bounded string copies.
 *
 * None of these log; the ones that can fail return a code.
 */

#ifndef RELAY_UTIL_H
#define RELAY_UTIL_H

#include <stddef.h>
#include <stdint.h>

/*
 * ASCII lowercase of c; other bytes unchanged.  Header names and envelope
 * keys are matched with it, never with the locale-dependent tolower().
 */
int relay_util_ascii_lower(int c);

/* Milliseconds from CLOCK_MONOTONIC. */
uint64_t relay_util_now_ms(void);

/*
 * Fill out[0..8] with 8 lowercase hex digits from OpenSSL's CSPRNG and
 * NUL-terminate it.  Returns RELAY_OK, or RELAY_ERROR if the CSPRNG failed.
 */
int relay_util_rand_hex8(char out[9]);

/*
 * Return 1 if s[0..len) is a valid server-id: 1..RELAY_SERVER_ID_MAX bytes,
 * each printable ASCII (0x21..0x7e, so no space); 0 otherwise.
 */
int relay_util_server_id_valid(const char *s, size_t len);

/*
 * Copy at most cap-1 bytes of src[0..len) into dst and NUL-terminate.
 * Returns the number of bytes copied.
 */
size_t relay_util_strlcpy(char *dst, const char *src, size_t len, size_t cap);

#endif
