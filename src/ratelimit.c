/*
 * ratelimit.c: the per-IP upgrade budget of SPEC 10.2, shared by every
 * worker.
 *
 * Token buckets in a fixed table in MAP_SHARED memory, under one robust
 * process-shared mutex.  Tokens are counted in thousandths so that refill
 * is integer arithmetic with no drift: a bucket's last_ms advances only by
 * the time its added thousandths stand for, and the rest carries over.  A
 * bucket lives within RELAY_RATELIMIT_PROBE entries of its hash, so one
 * take costs a bounded number of comparisons even if addresses collide;
 * when those entries are all taken, an empty one is used first, then a
 * forgotten (idle and full) one, then the least recently used is evicted.
 * The module must not log, allocate or do I/O under the mutex, and it
 * must never refuse an address because the table is full.
 *
 * The hash is not keyed: collisions can only cost evictions within one
 * window, and an evicted address gets at most a fresh burst, which a
 * client owning many addresses has anyway.
 */

#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "relay/common.h"
#include "relay/ratelimit.h"
#include "relay/shmlock.h"

#define RELAY_RATELIMIT_MAGIC   0x524c4d31u    /* "RLM1" */
#define RELAY_RATELIMIT_NONE    UINT32_MAX

_Static_assert(sizeof(struct relay_ratelimit_bucket_shm) == 32,
               "rate-limit bucket must stay 32 bytes");
_Static_assert(offsetof(struct relay_ratelimit_bucket_shm, last_ms) % 8 == 0,
               "bucket last_ms must be 8-byte aligned");
_Static_assert(offsetof(struct relay_ratelimit_shm, lock) % 8 == 0,
               "rate-limit mutex must be 8-byte aligned");
_Static_assert(offsetof(struct relay_ratelimit_shm, buckets) % 8 == 0,
               "rate-limit buckets must be 8-byte aligned");


/* A compiler barrier: a killed process publishes stores in program order. */
static void
relay_ratelimit_order(void)
{
    atomic_signal_fence(memory_order_seq_cst);
}


static uint32_t
relay_ratelimit_round(uint32_t nbuckets)
{
    uint32_t n;

    if (nbuckets == 0 || nbuckets > RELAY_RATELIMIT_BUCKETS_MAX) {
        return 0;
    }
    n = 1;
    while (n < nbuckets) {
        n <<= 1;
    }
    return n;
}


size_t
relay_ratelimit_size(uint32_t nbuckets)
{
    uint32_t n;

    n = relay_ratelimit_round(nbuckets);
    if (n == 0) {
        return 0;
    }
    return offsetof(struct relay_ratelimit_shm, buckets)
           + (size_t)n * sizeof(struct relay_ratelimit_bucket_shm);
}


int
relay_ratelimit_init(struct relay_ratelimit_shm *rl, uint32_t nbuckets,
                     uint32_t burst, uint32_t refill_ms, uint32_t idle_ms)
{
    uint32_t n;

    n = relay_ratelimit_round(nbuckets);
    if (rl == NULL || n == 0 || burst == 0 || burst > UINT32_MAX / 1000
        || refill_ms == 0)
    {
        errno = EINVAL;
        return RELAY_ERROR;
    }

    if (relay_shmlock_init(&rl->lock) == -1) {
        return RELAY_ERROR;
    }

    rl->nbuckets = n;
    rl->burst = burst;
    rl->refill_ms = refill_ms;
    rl->idle_ms = idle_ms;
    rl->repairs = 0;
    /* the buckets are already zero: touching them all would cost memory */
    rl->magic = RELAY_RATELIMIT_MAGIC;
    return RELAY_OK;
}


/*
 * A dead locker can only have been inside one bucket update.  A bucket is
 * emptied before its address is rewritten, so a torn one is either empty
 * or whole; all that is left to check is that every count is in range.
 */
static void
relay_ratelimit_repair_locked(struct relay_ratelimit_shm *rl)
{
    struct relay_ratelimit_bucket_shm *b;
    uint32_t i, full;

    full = rl->burst * 1000;
    for (i = 0; i < rl->nbuckets; i++) {
        b = &rl->buckets[i];
        if (b->used > 1) {
            b->used = 0;
        }
        if (b->tokens_milli > full) {
            b->tokens_milli = full;
        }
    }
}


static void
relay_ratelimit_repair_cb(void *arg)
{
    relay_ratelimit_repair_locked(arg);
}


/* The only way in: every path to the table takes the mutex here. */
static int
relay_ratelimit_lock(struct relay_ratelimit_shm *rl)
{
    int rc;

    rc = relay_shmlock_acquire(&rl->lock, relay_ratelimit_repair_cb, rl);
    if (rc == -1) {
        return RELAY_ERROR;
    }
    if (rc == 1) {
        rl->repairs++;
    }
    return RELAY_OK;
}


/* FNV-1a, then a finaliser so the v4-mapped prefix spreads to low bits. */
static uint32_t
relay_ratelimit_hash(const uint8_t key[16])
{
    uint32_t h;
    int i;

    h = 2166136261u;
    for (i = 0; i < 16; i++) {
        h ^= key[i];
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}


/*
 * The bucket's level at now_ms, in thousandths, and how many of the
 * elapsed milliseconds that level used up (the rest carries over).
 */
static uint32_t
relay_ratelimit_level(const struct relay_ratelimit_shm *rl,
                      const struct relay_ratelimit_bucket_shm *b,
                      uint64_t now_ms, uint64_t *spent_ms)
{
    uint64_t elapsed, whole, frac, add;
    uint32_t full;

    full = rl->burst * 1000;
    *spent_ms = 0;
    if (now_ms <= b->last_ms || b->tokens_milli >= full) {
        return b->tokens_milli >= full ? full : b->tokens_milli;
    }

    elapsed = now_ms - b->last_ms;
    if (elapsed >= (uint64_t)rl->refill_ms * rl->burst) {
        *spent_ms = elapsed;
        return full;
    }

    /* split so that no product can overflow for any refill_ms */
    whole = elapsed / rl->refill_ms;
    frac = (elapsed % rl->refill_ms) * 1000 / rl->refill_ms;
    add = whole * 1000 + frac;
    if (b->tokens_milli + add >= full) {
        *spent_ms = elapsed;
        return full;
    }
    *spent_ms = whole * rl->refill_ms + frac * rl->refill_ms / 1000;
    return b->tokens_milli + (uint32_t)add;
}


static int
relay_ratelimit_forgettable(const struct relay_ratelimit_shm *rl,
                            const struct relay_ratelimit_bucket_shm *b,
                            uint64_t now_ms)
{
    uint64_t spent;

    if (now_ms < b->last_ms || now_ms - b->last_ms < rl->idle_ms) {
        return 0;
    }
    return relay_ratelimit_level(rl, b, now_ms, &spent) == rl->burst * 1000;
}


/*
 * Find addr's bucket, or make one in the best entry of its window.  The
 * whole window is searched before choosing, so an address never has two
 * buckets.
 */
static struct relay_ratelimit_bucket_shm *
relay_ratelimit_bucket_locked(struct relay_ratelimit_shm *rl,
                              const uint8_t key[16], uint32_t hash,
                              uint64_t now_ms)
{
    struct relay_ratelimit_bucket_shm *b;
    uint32_t mask, window, n, idx, empty, idle, lru;

    mask = rl->nbuckets - 1;
    window = rl->nbuckets < RELAY_RATELIMIT_PROBE ? rl->nbuckets
                                                  : RELAY_RATELIMIT_PROBE;
    empty = RELAY_RATELIMIT_NONE;
    idle = RELAY_RATELIMIT_NONE;
    lru = RELAY_RATELIMIT_NONE;

    for (n = 0; n < window; n++) {
        idx = (hash + n) & mask;
        b = &rl->buckets[idx];
        if (b->used == 0) {
            if (empty == RELAY_RATELIMIT_NONE) {
                empty = idx;
            }
            continue;
        }
        if (memcmp(b->addr, key, 16) == 0) {
            return b;
        }
        if (idle == RELAY_RATELIMIT_NONE
            && relay_ratelimit_forgettable(rl, b, now_ms))
        {
            idle = idx;
        }
        if (lru == RELAY_RATELIMIT_NONE
            || b->last_ms < rl->buckets[lru].last_ms)
        {
            lru = idx;
        }
    }

    if (empty != RELAY_RATELIMIT_NONE) {
        idx = empty;
    } else if (idle != RELAY_RATELIMIT_NONE) {
        idx = idle;
    } else {
        idx = lru;
    }

    b = &rl->buckets[idx];
    b->used = 0;
    relay_ratelimit_order();
    memcpy(b->addr, key, 16);
    b->tokens_milli = rl->burst * 1000;
    b->last_ms = now_ms;
    relay_ratelimit_order();
    b->used = 1;
    return b;
}


int
relay_ratelimit_take(struct relay_ratelimit_shm *rl, const uint8_t *addr,
                     size_t addrlen, uint64_t now_ms)
{
    struct relay_ratelimit_bucket_shm *b;
    uint8_t key[16];
    uint64_t spent;
    uint32_t hash, level;
    int rc;

    /* TODO: limit IPv6 per /64; meanwhile each address has its own bucket */
    if (addr == NULL) {
        errno = EINVAL;
        return -1;
    }
    if (addrlen == 4) {
        memset(key, 0, 10);
        key[10] = 0xff;
        key[11] = 0xff;
        memcpy(key + 12, addr, 4);
    } else if (addrlen == 16) {
        memcpy(key, addr, 16);
    } else {
        errno = EINVAL;
        return -1;
    }
    hash = relay_ratelimit_hash(key);

    if (relay_ratelimit_lock(rl) != RELAY_OK) {
        return -1;
    }

    b = relay_ratelimit_bucket_locked(rl, key, hash, now_ms);
    level = relay_ratelimit_level(rl, b, now_ms, &spent);
    if (level == rl->burst * 1000 || now_ms < b->last_ms) {
        /* a full bucket starts over; so does one a racing clock passed */
        b->last_ms = now_ms;
    } else {
        b->last_ms += spent;
    }

    if (level >= 1000) {
        b->tokens_milli = level - 1000;
        rc = 1;
    } else {
        b->tokens_milli = level;
        rc = 0;
    }

    (void)pthread_mutex_unlock(&rl->lock);
    return rc;
}
