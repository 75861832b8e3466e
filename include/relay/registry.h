/*
 * registry.h: the server-id registry, a fixed-capacity open-addressing hash
 * table in shared memory, shared by the master and every worker.
 *
 * It records only what the workers must agree on: which server-ids are
 * held, by which worker (slot and generation), and whether the holder's
 * binary is live or in its grace window.  Everything else about a
 * server-id lives in the owning worker's own memory.
 *
 * One robust process-shared mutex guards the table.  Code under the lock
 * does no I/O, no allocation and no logging.  A process that dies holding
 * the lock leaves it EOWNERDEAD; the next locker repairs the half-done
 * update (every mutation first records what it is about to do in the
 * table's journal fields, so a torn update is detectable and is rolled
 * back), marks the mutex consistent and carries on.
 *
 * The struct lives in shared memory, so it holds no pointers.
 */

#ifndef RELAY_REGISTRY_H
#define RELAY_REGISTRY_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "relay/common.h"

/* The most server-ids one registry can be sized for. */
#define RELAY_REGISTRY_IDS_MAX  (1u << 24)

enum relay_reg_state {
    RELAY_REG_FREE = 0,         /* never used */
    RELAY_REG_CLAIMED,          /* held by a live binary */
    RELAY_REG_GRACE,            /* holder gone, grace window running */
    RELAY_REG_TOMBSTONE         /* deleted; keeps probe chains intact */
};

/* Return codes.  Non-negative values are outcomes, negative are errors. */
enum relay_reg_result {
    RELAY_REG_OK = 0,
    RELAY_REG_CLAIMED_NEW = 1,  /* the caller is now the owner */
    RELAY_REG_HELD = 2,         /* someone holds it; see the view */
    RELAY_REG_NOT_FOUND = 3,
    RELAY_REG_NOT_OWNER = 4,    /* the caller does not own the entry */
    RELAY_REG_FULL = -1,        /* no free slot for a new id */
    RELAY_REG_LOCK_FAILED = -2, /* pthread_mutex_lock failed (errno set) */
    RELAY_REG_INVALID = -3      /* bad id, slot or state (errno EINVAL) */
};

/* A snapshot of one entry, copied out under the lock. */
struct relay_registry_view {
    int state;                  /* enum relay_reg_state */
    int owner_slot;
    uint32_t owner_gen;
    uint64_t serial;            /* unique per successful claim */
};

struct relay_registry_entry_shm {
    uint32_t state;
    int32_t owner_slot;
    uint32_t owner_gen;
    uint32_t hash;
    uint64_t serial;
    uint16_t id_len;
    char id[RELAY_SERVER_ID_MAX];
    uint8_t pad[6];
};

struct relay_registry_shm {
    uint32_t magic;
    uint32_t version;
    pthread_mutex_t lock;
    uint32_t capacity;          /* number of entries, a power of two */
    uint32_t live;              /* CLAIMED + GRACE entries */
    uint32_t tombstones;
    uint32_t max_live;          /* refuse new ids past this */
    uint64_t next_serial;
    uint8_t hash_key[16];       /* SipHash key, random per registry */
    /* journal of the update in progress, for EOWNERDEAD repair */
    uint32_t journal_active;
    uint32_t journal_index;     /* entry to restore from journal_old */
    uint32_t journal_dest;      /* 1 + entry to turn back into a tombstone
                                   (a move during rehash), or 0 */
    uint32_t journal_pad;
    struct relay_registry_entry_shm journal_old;
    uint64_t repairs;           /* times a dead owner's lock was repaired */
    uint64_t rehashes;          /* in-place rehashes to shed tombstones */
    struct relay_registry_entry_shm entries[];
};

/*
 * Bytes needed for a registry holding max_ids server-ids (the table is
 * sized to a power of two at least max_ids * 4 / 3 entries, and at least
 * 8).  Returns 0 if max_ids is 0 or above RELAY_REGISTRY_IDS_MAX.
 */
size_t relay_registry_size(uint32_t max_ids);

/*
 * Lay out an empty registry in reg, which points at relay_registry_size()
 * zeroed bytes of MAP_SHARED memory, draw its hash key from getrandom(2)
 * and initialise its robust process-shared mutex.  Call it once, before
 * any other process uses the memory.  Returns RELAY_OK, or RELAY_ERROR
 * with errno set (EINVAL for a max_ids that relay_registry_size refuses).
 */
int relay_registry_init(struct relay_registry_shm *reg, uint32_t max_ids);

/*
 * Claim id[0..len) for (slot, gen); slot must be >= 0.  If no live entry
 * exists, one is created in state CLAIMED owned by the caller and
 * RELAY_REG_CLAIMED_NEW is returned.  If one exists (CLAIMED or GRACE,
 * owned by anyone, the caller included), nothing changes and RELAY_REG_HELD
 * is returned.  RELAY_REG_FULL when the table holds max_ids ids.  The view,
 * if not NULL, receives the entry as it is after the call (state
 * RELAY_REG_FREE, owner_slot -1 when there is none).
 *
 * Every function taking an id returns RELAY_REG_INVALID if len is 0 or
 * above RELAY_SERVER_ID_MAX, and may return RELAY_REG_LOCK_FAILED.
 */
int relay_registry_claim(struct relay_registry_shm *reg, const char *id,
                         size_t len, int slot, uint32_t gen,
                         struct relay_registry_view *view);

/*
 * Look id up.  RELAY_REG_OK with the view filled, or RELAY_REG_NOT_FOUND.
 */
int relay_registry_lookup(struct relay_registry_shm *reg, const char *id,
                          size_t len, struct relay_registry_view *view);

/*
 * Owner-only: move the caller's entry to state (CLAIMED or GRACE, else
 * RELAY_REG_INVALID).  A move to CLAIMED gives the entry a new serial.
 * RELAY_REG_OK, or RELAY_REG_NOT_FOUND / RELAY_REG_NOT_OWNER.
 */
int relay_registry_set_state(struct relay_registry_shm *reg, const char *id,
                             size_t len, int slot, uint32_t gen, int state);

/*
 * Owner-only: delete the caller's entry.  RELAY_REG_OK, or
 * RELAY_REG_NOT_FOUND / RELAY_REG_NOT_OWNER.
 */
int relay_registry_release(struct relay_registry_shm *reg, const char *id,
                           size_t len, int slot, uint32_t gen);

/*
 * Delete every entry owned by slot (any generation): the master calls it
 * after reaping a worker.  Returns how many entries were freed, or
 * RELAY_REG_LOCK_FAILED.
 */
int relay_registry_free_worker(struct relay_registry_shm *reg, int slot);

/* Number of live (CLAIMED + GRACE) ids; 0 if the lock failed. */
uint32_t relay_registry_live(struct relay_registry_shm *reg);

/*
 * The 32-bit hash of id[0..len) under reg's key (SipHash-2-4, low half).
 * Takes no lock: the key never changes after relay_registry_init.  Tests
 * use it to build colliding ids.
 */
uint32_t relay_registry_hash(const struct relay_registry_shm *reg,
                             const char *id, size_t len);

/*
 * Test hook: take the lock, start a journaled update of id's entry (or of
 * the entry a claim of id would create) and return without finishing it or
 * unlocking, as a process would that is killed mid-update.  Only for tests
 * that then kill the caller.  Returns RELAY_REG_OK (lock held) or a
 * negative code (lock not held).
 */
int relay_registry_test_hold_lock(struct relay_registry_shm *reg,
                                  const char *id, size_t len);

#endif
