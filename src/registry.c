/*
 * registry.c: who holds which server-id, agreed by every process.
 *
 * The table is open addressing with linear probing over entries that live
 * in one MAP_SHARED mapping, under one robust process-shared mutex.  Ids
 * are chosen by whoever connects, so the hash is keyed (SipHash-2-4 with a
 * key drawn at start) or a client could pile its ids into one probe chain
 * and make every claim walk it under the lock.  The module decides
 * ownership and nothing else: it never logs, never allocates and does no
 * I/O, so the only way to die holding the mutex is to be killed.
 *
 * Crash safety: every change to an entry copies the entry into the journal
 * and raises journal_active before touching it, and lowers the flag after.
 * A locker that gets EOWNERDEAD rolls the journaled entry back and
 * recounts live and tombstones from the entries, so the counters never
 * need a journal of their own.  Changes that are valid at any instant
 * (a tombstone with a free entry after it becoming free) are not
 * journaled.
 */

#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>

#include "relay/registry.h"
#include "relay/shmlock.h"

#define RELAY_REGISTRY_MAGIC        0x52454731u    /* "REG1" */
#define RELAY_REGISTRY_VERSION      1u
#define RELAY_REGISTRY_MIN_CAPACITY 8u
#define RELAY_REGISTRY_NONE         UINT32_MAX

/*
 * Every process maps these structs, possibly built by different compiler
 * runs of the same source: pin the layout so a change is deliberate.
 */
_Static_assert(sizeof(struct relay_registry_entry_shm) == 160,
               "registry entry must stay 160 bytes");
_Static_assert(offsetof(struct relay_registry_entry_shm, serial) % 8 == 0,
               "entry serial must be 8-byte aligned");
_Static_assert(offsetof(struct relay_registry_shm, entries) % 8 == 0,
               "registry entries must be 8-byte aligned");
_Static_assert(offsetof(struct relay_registry_shm, lock) % 8 == 0,
               "registry mutex must be 8-byte aligned");
_Static_assert(RELAY_SERVER_ID_MAX <= UINT16_MAX,
               "id_len is 16 bits");
_Static_assert((uint64_t)RELAY_REGISTRY_IDS_MAX * 2 <= UINT32_MAX,
               "capacity must fit 32 bits");


static uint64_t
relay_registry_rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}


static uint64_t
relay_registry_load64(const uint8_t *p)
{
    uint64_t v;
    int i;

    v = 0;
    for (i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}


static void
relay_registry_sipround(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = relay_registry_rotl(v[1], 13);
    v[1] ^= v[0];
    v[0] = relay_registry_rotl(v[0], 32);
    v[2] += v[3];
    v[3] = relay_registry_rotl(v[3], 16);
    v[3] ^= v[2];
    v[0] += v[3];
    v[3] = relay_registry_rotl(v[3], 21);
    v[3] ^= v[0];
    v[2] += v[1];
    v[1] = relay_registry_rotl(v[1], 17);
    v[1] ^= v[2];
    v[2] = relay_registry_rotl(v[2], 32);
}


static uint64_t
relay_registry_siphash(const uint8_t key[16], const uint8_t *in, size_t len)
{
    uint64_t k0, k1, m, v[4];
    size_t off, i;

    k0 = relay_registry_load64(key);
    k1 = relay_registry_load64(key + 8);
    v[0] = k0 ^ 0x736f6d6570736575ull;
    v[1] = k1 ^ 0x646f72616e646f6dull;
    v[2] = k0 ^ 0x6c7967656e657261ull;
    v[3] = k1 ^ 0x7465646279746573ull;

    for (off = 0; off + 8 <= len; off += 8) {
        m = relay_registry_load64(in + off);
        v[3] ^= m;
        relay_registry_sipround(v);
        relay_registry_sipround(v);
        v[0] ^= m;
    }

    m = (uint64_t)(len & 0xff) << 56;
    for (i = 0; off + i < len; i++) {
        m |= (uint64_t)in[off + i] << (8 * i);
    }
    v[3] ^= m;
    relay_registry_sipround(v);
    relay_registry_sipround(v);
    v[0] ^= m;

    v[2] ^= 0xff;
    for (i = 0; i < 4; i++) {
        relay_registry_sipround(v);
    }
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}


uint32_t
relay_registry_hash(const struct relay_registry_shm *reg, const char *id,
                    size_t len)
{
    return (uint32_t)relay_registry_siphash(reg->hash_key,
                                            (const uint8_t *)id, len);
}


/*
 * A compiler barrier.  A killed process stops between two instructions
 * and the kernel publishes every store it had made, so only the
 * compiler's freedom to reorder stores can break the journal's order.
 */
static void
relay_registry_order(void)
{
    atomic_signal_fence(memory_order_seq_cst);
}


static int
relay_registry_is_live(const struct relay_registry_entry_shm *e)
{
    return e->state == RELAY_REG_CLAIMED || e->state == RELAY_REG_GRACE;
}


static int
relay_registry_bad_id(const char *id, size_t len)
{
    return id == NULL || len == 0 || len > RELAY_SERVER_ID_MAX;
}


static uint32_t
relay_registry_capacity(uint32_t max_ids)
{
    uint64_t need, cap;

    if (max_ids == 0 || max_ids > RELAY_REGISTRY_IDS_MAX) {
        return 0;
    }

    /* ceil(max_ids * 4 / 3), so the table is never more than 3/4 live */
    need = (uint64_t)max_ids + (max_ids + 2) / 3;
    cap = RELAY_REGISTRY_MIN_CAPACITY;
    while (cap < need) {
        cap <<= 1;
    }
    return (uint32_t)cap;
}


size_t
relay_registry_size(uint32_t max_ids)
{
    uint32_t cap;

    cap = relay_registry_capacity(max_ids);
    if (cap == 0) {
        return 0;
    }
    return offsetof(struct relay_registry_shm, entries)
           + (size_t)cap * sizeof(struct relay_registry_entry_shm);
}


static int
relay_registry_fill_key(uint8_t *key, size_t len)
{
    ssize_t n;
    size_t got;

    got = 0;
    while (got < len) {
        n = getrandom(key + got, len - got, 0);
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            return RELAY_ERROR;
        }
        got += (size_t)n;
    }
    return RELAY_OK;
}


int
relay_registry_init(struct relay_registry_shm *reg, uint32_t max_ids)
{
    uint32_t cap;

    cap = relay_registry_capacity(max_ids);
    if (reg == NULL || cap == 0) {
        errno = EINVAL;
        return RELAY_ERROR;
    }

    if (relay_registry_fill_key(reg->hash_key, sizeof(reg->hash_key))
        != RELAY_OK)
    {
        return RELAY_ERROR;
    }

    if (relay_shmlock_init(&reg->lock) == -1) {
        return RELAY_ERROR;
    }

    reg->capacity = cap;
    reg->live = 0;
    reg->tombstones = 0;
    reg->max_live = max_ids;
    reg->next_serial = 1;
    reg->journal_active = 0;
    reg->repairs = 0;
    reg->rehashes = 0;
    /*
     * The entries are already zero (the contract asks for zeroed memory):
     * writing them would touch every page of a table sized for the most
     * ids the relay may ever hold, and charge them all to its memory.
     */
    reg->version = RELAY_REGISTRY_VERSION;
    reg->magic = RELAY_REGISTRY_MAGIC;
    return RELAY_OK;
}


/*
 * Undo whatever a dead locker left half done.  Rolling back is always
 * right: the dead process never returned CLAIMED_NEW or OK to anyone, so
 * no one acts on the update it did not finish.  The rollback only copies
 * from the journal, so if the repairer dies too, the next one repeats it.
 */
static void
relay_registry_repair_locked(struct relay_registry_shm *reg)
{
    struct relay_registry_entry_shm *e;
    uint32_t i, live, tombstones;

    if (reg->journal_active != 0) {
        if (reg->journal_index < reg->capacity) {
            reg->entries[reg->journal_index] = reg->journal_old;
        }
        if (reg->journal_dest != 0 && reg->journal_dest <= reg->capacity) {
            reg->entries[reg->journal_dest - 1].state = RELAY_REG_TOMBSTONE;
        }
        relay_registry_order();
        reg->journal_active = 0;
    }

    live = 0;
    tombstones = 0;
    for (i = 0; i < reg->capacity; i++) {
        e = &reg->entries[i];
        if (relay_registry_is_live(e)) {
            live++;
        } else if (e->state == RELAY_REG_TOMBSTONE) {
            tombstones++;
        } else if (e->state != RELAY_REG_FREE) {
            /* unreachable through this module; keep chains whole */
            e->state = RELAY_REG_TOMBSTONE;
            tombstones++;
        }
    }
    reg->live = live;
    reg->tombstones = tombstones;
}


static void
relay_registry_repair_cb(void *arg)
{
    relay_registry_repair_locked(arg);
}


/* The only way in: every path to the table takes the mutex here. */
static int
relay_registry_lock(struct relay_registry_shm *reg)
{
    int rc;

    rc = relay_shmlock_acquire(&reg->lock, relay_registry_repair_cb, reg);
    if (rc == -1) {
        return RELAY_REG_LOCK_FAILED;
    }
    if (rc == 1) {
        reg->repairs++;
    }
    return RELAY_OK;
}


static void
relay_registry_unlock(struct relay_registry_shm *reg)
{
    (void)pthread_mutex_unlock(&reg->lock);
}


static void
relay_registry_journal_begin_locked(struct relay_registry_shm *reg,
                                    uint32_t index, uint32_t dest)
{
    reg->journal_index = index;
    reg->journal_dest = dest;
    reg->journal_old = reg->entries[index];
    relay_registry_order();
    reg->journal_active = 1;
    relay_registry_order();
}


static void
relay_registry_journal_end_locked(struct relay_registry_shm *reg)
{
    relay_registry_order();
    reg->journal_active = 0;
}


/*
 * Find id's live entry.  Returns its index, or RELAY_REGISTRY_NONE with
 * *insert set to where a claim of id should go (the first tombstone on the
 * chain, else the free entry ending it, else RELAY_REGISTRY_NONE).
 */
static uint32_t
relay_registry_find_locked(struct relay_registry_shm *reg, const char *id,
                           size_t len, uint32_t hash, uint32_t *insert)
{
    struct relay_registry_entry_shm *e;
    uint32_t mask, idx, n, tomb;

    mask = reg->capacity - 1;
    tomb = RELAY_REGISTRY_NONE;
    idx = hash & mask;

    for (n = 0; n < reg->capacity; n++) {
        e = &reg->entries[idx];
        if (e->state == RELAY_REG_FREE) {
            if (insert != NULL) {
                *insert = tomb != RELAY_REGISTRY_NONE ? tomb : idx;
            }
            return RELAY_REGISTRY_NONE;
        }
        if (e->state == RELAY_REG_TOMBSTONE) {
            if (tomb == RELAY_REGISTRY_NONE) {
                tomb = idx;
            }
        } else if (e->hash == hash && e->id_len == len
                   && memcmp(e->id, id, len) == 0)
        {
            return idx;
        }
        idx = (idx + 1) & mask;
    }

    /* no free entry anywhere: only tombstones and live ones */
    if (insert != NULL) {
        *insert = tomb;
    }
    return RELAY_REGISTRY_NONE;
}


static void
relay_registry_view_of(const struct relay_registry_entry_shm *e,
                       struct relay_registry_view *view)
{
    if (view == NULL) {
        return;
    }
    if (e == NULL) {
        view->state = RELAY_REG_FREE;
        view->owner_slot = -1;
        view->owner_gen = 0;
        view->serial = 0;
        return;
    }
    view->state = (int)e->state;
    view->owner_slot = e->owner_slot;
    view->owner_gen = e->owner_gen;
    view->serial = e->serial;
}


/*
 * A tombstone followed by a free entry ends no chain but its own, so it
 * can become free, and so can the tombstones before it.  Each store leaves
 * a valid table, hence no journal.
 */
static void
relay_registry_trim_locked(struct relay_registry_shm *reg, uint32_t idx)
{
    uint32_t mask, n;

    mask = reg->capacity - 1;
    if (reg->entries[(idx + 1) & mask].state != RELAY_REG_FREE) {
        return;
    }

    for (n = 0; n < reg->capacity; n++) {
        if (reg->entries[idx].state != RELAY_REG_TOMBSTONE) {
            break;
        }
        reg->entries[idx].state = RELAY_REG_FREE;
        reg->tombstones--;
        idx = (idx - 1) & mask;
    }
}


/*
 * In-place rehash, run when tombstones pass capacity / 8 so that lookups
 * of absent ids keep finding a free entry soon.  First every live entry
 * moves to the first tombstone on its own chain (a journaled move: the
 * copy is undone by turning the destination back into a tombstone), which
 * keeps every chain valid after each move.  Then a sweep frees each
 * tombstone that lies on no live entry's chain.  Amortised over the
 * capacity / 8 deletions that trigger it, this costs O(1) per deletion.
 */
static void
relay_registry_rehash_locked(struct relay_registry_shm *reg)
{
    struct relay_registry_entry_shm *e;
    uint32_t mask, j, p, pos, k, lap, need, dist;

    mask = reg->capacity - 1;

    for (j = 0; j < reg->capacity; j++) {
        e = &reg->entries[j];
        if (!relay_registry_is_live(e)) {
            continue;
        }
        for (p = e->hash & mask; p != j; p = (p + 1) & mask) {
            if (reg->entries[p].state == RELAY_REG_TOMBSTONE) {
                break;
            }
        }
        if (p == j) {
            continue;
        }
        relay_registry_journal_begin_locked(reg, j, p + 1);
        reg->entries[p] = *e;
        relay_registry_order();
        e->state = RELAY_REG_TOMBSTONE;
        relay_registry_journal_end_locked(reg);
    }

    /*
     * Walk backwards keeping in need how many entries below the current
     * one some live entry above still probes through.  The first lap only
     * learns need where the walk wraps; the second frees.
     */
    need = 0;
    for (lap = 0; lap < 2; lap++) {
        for (k = 0; k < reg->capacity; k++) {
            pos = mask - k;
            e = &reg->entries[pos];
            if (lap == 1 && need == 0 && e->state == RELAY_REG_TOMBSTONE) {
                e->state = RELAY_REG_FREE;
                reg->tombstones--;
            }
            dist = relay_registry_is_live(e) ? (pos - e->hash) & mask : 0;
            need = need > 0 ? need - 1 : 0;
            if (dist > need) {
                need = dist;
            }
        }
    }

    reg->rehashes++;
}


/* Turn entry idx into a tombstone: the caller checked it is live. */
static void
relay_registry_delete_locked(struct relay_registry_shm *reg, uint32_t idx)
{
    relay_registry_journal_begin_locked(reg, idx, 0);
    reg->entries[idx].state = RELAY_REG_TOMBSTONE;
    reg->live--;
    reg->tombstones++;
    relay_registry_journal_end_locked(reg);

    relay_registry_trim_locked(reg, idx);
}


static void
relay_registry_shed_tombstones_locked(struct relay_registry_shm *reg)
{
    if (reg->tombstones > reg->capacity / 8) {
        relay_registry_rehash_locked(reg);
    }
}


int
relay_registry_claim(struct relay_registry_shm *reg, const char *id,
                     size_t len, int slot, uint32_t gen,
                     struct relay_registry_view *view)
{
    struct relay_registry_entry_shm *e;
    uint32_t hash, idx, insert;
    int rc, was_tombstone;

    if (relay_registry_bad_id(id, len) || slot < 0) {
        errno = EINVAL;
        return RELAY_REG_INVALID;
    }
    hash = relay_registry_hash(reg, id, len);

    rc = relay_registry_lock(reg);
    if (rc != RELAY_OK) {
        return rc;
    }

    insert = RELAY_REGISTRY_NONE;
    idx = relay_registry_find_locked(reg, id, len, hash, &insert);
    if (idx != RELAY_REGISTRY_NONE) {
        relay_registry_view_of(&reg->entries[idx], view);
        rc = RELAY_REG_HELD;
        goto done;
    }
    if (reg->live >= reg->max_live || insert == RELAY_REGISTRY_NONE) {
        relay_registry_view_of(NULL, view);
        rc = RELAY_REG_FULL;
        goto done;
    }

    e = &reg->entries[insert];
    was_tombstone = e->state == RELAY_REG_TOMBSTONE;
    relay_registry_journal_begin_locked(reg, insert, 0);
    e->owner_slot = slot;
    e->owner_gen = gen;
    e->hash = hash;
    e->serial = reg->next_serial++;
    e->id_len = (uint16_t)len;
    memcpy(e->id, id, len);
    memset(e->id + len, 0, sizeof(e->id) - len);
    e->state = RELAY_REG_CLAIMED;
    reg->live++;
    if (was_tombstone) {
        reg->tombstones--;
    }
    relay_registry_journal_end_locked(reg);

    relay_registry_view_of(e, view);
    rc = RELAY_REG_CLAIMED_NEW;

done:
    relay_registry_unlock(reg);
    return rc;
}


int
relay_registry_lookup(struct relay_registry_shm *reg, const char *id,
                      size_t len, struct relay_registry_view *view)
{
    uint32_t hash, idx;
    int rc;

    if (relay_registry_bad_id(id, len)) {
        errno = EINVAL;
        return RELAY_REG_INVALID;
    }
    hash = relay_registry_hash(reg, id, len);

    rc = relay_registry_lock(reg);
    if (rc != RELAY_OK) {
        return rc;
    }

    idx = relay_registry_find_locked(reg, id, len, hash, NULL);
    if (idx == RELAY_REGISTRY_NONE) {
        rc = RELAY_REG_NOT_FOUND;
    } else {
        relay_registry_view_of(&reg->entries[idx], view);
        rc = RELAY_REG_OK;
    }

    relay_registry_unlock(reg);
    return rc;
}


/*
 * Find id's entry and check that (slot, gen) owns it.  Returns RELAY_REG_OK
 * with *idx set, RELAY_REG_NOT_FOUND or RELAY_REG_NOT_OWNER.
 */
static int
relay_registry_owned_locked(struct relay_registry_shm *reg, const char *id,
                            size_t len, uint32_t hash, int slot,
                            uint32_t gen, uint32_t *idx)
{
    struct relay_registry_entry_shm *e;

    *idx = relay_registry_find_locked(reg, id, len, hash, NULL);
    if (*idx == RELAY_REGISTRY_NONE) {
        return RELAY_REG_NOT_FOUND;
    }
    e = &reg->entries[*idx];
    if (e->owner_slot != slot || e->owner_gen != gen) {
        return RELAY_REG_NOT_OWNER;
    }
    return RELAY_REG_OK;
}


int
relay_registry_set_state(struct relay_registry_shm *reg, const char *id,
                         size_t len, int slot, uint32_t gen, int state)
{
    struct relay_registry_entry_shm *e;
    uint32_t hash, idx;
    int rc;

    if (relay_registry_bad_id(id, len)
        || (state != RELAY_REG_CLAIMED && state != RELAY_REG_GRACE))
    {
        errno = EINVAL;
        return RELAY_REG_INVALID;
    }
    hash = relay_registry_hash(reg, id, len);

    rc = relay_registry_lock(reg);
    if (rc != RELAY_OK) {
        return rc;
    }

    rc = relay_registry_owned_locked(reg, id, len, hash, slot, gen, &idx);
    if (rc != RELAY_REG_OK) {
        goto done;
    }

    e = &reg->entries[idx];
    relay_registry_journal_begin_locked(reg, idx, 0);
    if (state == RELAY_REG_CLAIMED) {
        e->serial = reg->next_serial++;
    }
    e->state = (uint32_t)state;
    relay_registry_journal_end_locked(reg);

done:
    relay_registry_unlock(reg);
    return rc;
}


int
relay_registry_release(struct relay_registry_shm *reg, const char *id,
                       size_t len, int slot, uint32_t gen)
{
    uint32_t hash, idx;
    int rc;

    if (relay_registry_bad_id(id, len)) {
        errno = EINVAL;
        return RELAY_REG_INVALID;
    }
    hash = relay_registry_hash(reg, id, len);

    rc = relay_registry_lock(reg);
    if (rc != RELAY_OK) {
        return rc;
    }

    rc = relay_registry_owned_locked(reg, id, len, hash, slot, gen, &idx);
    if (rc != RELAY_REG_OK) {
        goto done;
    }
    relay_registry_delete_locked(reg, idx);
    relay_registry_shed_tombstones_locked(reg);

done:
    relay_registry_unlock(reg);
    return rc;
}


int
relay_registry_free_worker(struct relay_registry_shm *reg, int slot)
{
    struct relay_registry_entry_shm *e;
    uint32_t i;
    int rc, freed;

    rc = relay_registry_lock(reg);
    if (rc != RELAY_OK) {
        return rc;
    }

    freed = 0;
    for (i = 0; i < reg->capacity; i++) {
        e = &reg->entries[i];
        if (relay_registry_is_live(e) && e->owner_slot == slot) {
            relay_registry_delete_locked(reg, i);
            freed++;
        }
    }
    relay_registry_shed_tombstones_locked(reg);

    relay_registry_unlock(reg);
    return freed;
}


uint32_t
relay_registry_live(struct relay_registry_shm *reg)
{
    uint32_t live;

    if (relay_registry_lock(reg) != RELAY_OK) {
        return 0;
    }
    live = reg->live;
    relay_registry_unlock(reg);
    return live;
}


int
relay_registry_test_hold_lock(struct relay_registry_shm *reg,
                              const char *id, size_t len)
{
    struct relay_registry_entry_shm *e;
    uint32_t hash, idx, insert;
    int rc;

    if (relay_registry_bad_id(id, len)) {
        errno = EINVAL;
        return RELAY_REG_INVALID;
    }
    hash = relay_registry_hash(reg, id, len);

    rc = relay_registry_lock(reg);
    if (rc != RELAY_OK) {
        return rc;
    }

    insert = RELAY_REGISTRY_NONE;
    idx = relay_registry_find_locked(reg, id, len, hash, &insert);
    if (idx == RELAY_REGISTRY_NONE) {
        idx = insert;
    }
    if (idx == RELAY_REGISTRY_NONE) {
        relay_registry_unlock(reg);
        return RELAY_REG_FULL;
    }

    /* what a claim or takeover killed halfway would leave behind */
    e = &reg->entries[idx];
    relay_registry_journal_begin_locked(reg, idx, 0);
    e->state = RELAY_REG_CLAIMED;
    e->owner_slot = -1;
    e->owner_gen = UINT32_MAX;
    e->hash = hash;
    e->id_len = (uint16_t)len;
    memset(e->id, '?', len / 2 + 1);
    reg->live++;
    return RELAY_REG_OK;
}
