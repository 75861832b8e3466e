/*
 * util.c: monotonic time, CSPRNG hex, server-id syntax, bounded copies.
 *
 * Small helpers shared by several modules.  Nothing here logs.
 */

#include "config.h"

#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "relay/common.h"
#include "relay/util.h"


int
relay_util_ascii_lower(int c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A' + 'a';
    }

    return c;
}


uint64_t
relay_util_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}


int
relay_util_rand_hex8(char out[9])
{
    static const char relay_util_hex[] = "0123456789abcdef";
    unsigned char raw[4];
    int i;

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return RELAY_ERROR;
    }

    for (i = 0; i < 4; i++) {
        out[2 * i] = relay_util_hex[raw[i] >> 4];
        out[2 * i + 1] = relay_util_hex[raw[i] & 0x0f];
    }
    out[8] = '\0';

    return RELAY_OK;
}


int
relay_util_server_id_valid(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > RELAY_SERVER_ID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch < 0x21 || ch > 0x7e) {
            return 0;
        }
    }

    return 1;
}


size_t
relay_util_strlcpy(char *dst, const char *src, size_t len, size_t cap)
{
    if (cap == 0) {
        return 0;
    }
    if (len > cap - 1) {
        len = cap - 1;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';

    return len;
}
