/*
 * ratelimit.h: per-client-IP token buckets for WebSocket upgrades, in
 * shared memory so that the limit holds across all workers.
 *
 * A fixed hash table of buckets under one robust process-shared mutex (no
 * I/O, no allocation, no logging under it).  Idle buckets (full again and
 * untouched for idle_ms) are forgotten so the table does not fill with
 * addresses that came once.  If the table is full of active buckets the
 * least recently used one is evicted: a new IP is never refused because
 * of the table's size.
 */

#ifndef RELAY_RATELIMIT_H
#define RELAY_RATELIMIT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* The most buckets one table can have. */
#define RELAY_RATELIMIT_BUCKETS_MAX (1u << 24)

/* A bucket for an address lives within this many entries of its hash. */
#define RELAY_RATELIMIT_PROBE       16u

struct relay_ratelimit_bucket_shm {
    uint8_t addr[16];           /* IPv4 as v4-mapped IPv6 */
    uint32_t used;              /* 0: empty */
    uint32_t tokens_milli;      /* tokens * 1000 */
    uint64_t last_ms;           /* last refill time */
};

struct relay_ratelimit_shm {
    uint32_t magic;
    uint32_t nbuckets;          /* a power of two */
    uint32_t burst;             /* 20 */
    uint32_t refill_ms;         /* one token per refill_ms, 6000 */
    uint32_t idle_ms;           /* forget after, 120000 */
    uint32_t repairs;           /* times a dead owner's lock was repaired */
    pthread_mutex_t lock;
    struct relay_ratelimit_bucket_shm buckets[];
};

/*
 * Bytes for a table of nbuckets (rounded up to a power of two).  Returns 0
 * if nbuckets is 0 or above RELAY_RATELIMIT_BUCKETS_MAX.
 */
size_t relay_ratelimit_size(uint32_t nbuckets);

/*
 * Lay out an empty table in zeroed MAP_SHARED memory.  burst must be 1 to
 * UINT32_MAX / 1000 and refill_ms at least 1.  Returns RELAY_OK or
 * RELAY_ERROR with errno set (EINVAL for a bad argument).
 */
int relay_ratelimit_init(struct relay_ratelimit_shm *rl, uint32_t nbuckets,
                         uint32_t burst, uint32_t refill_ms,
                         uint32_t idle_ms);

/*
 * Spend one token of the bucket for addr (4 bytes IPv4 or 16 bytes IPv6)
 * at time now_ms (monotonic).  Returns 1 if a token was spent (allowed),
 * 0 if the bucket is empty (refuse with 429), or -1 if the lock failed or
 * addrlen is neither 4 nor 16 (errno set; callers allow the request).
 */
int relay_ratelimit_take(struct relay_ratelimit_shm *rl, const uint8_t *addr,
                         size_t addrlen, uint64_t now_ms);

#endif
