/*
 * check_registry.c: the server-id registry on real shared memory.
 *
 * Every table lives in an anonymous MAP_SHARED mapping, as in the daemon,
 * so that forked children race on it and die holding its mutex for real.
 * Children report through exit statuses and a shared counter page, never
 * through Check's assertions, and leave with _exit().
 */

#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "relay/registry.h"
#include "suites.h"

#define RELAY_TEST_RACERS   8
#define RELAY_TEST_RACE_IDS 1000


static void *
relay_test_map(size_t size)
{
    void *p;

    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
             -1, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    return p;
}


static struct relay_registry_shm *
relay_test_registry(uint32_t max_ids)
{
    struct relay_registry_shm *reg;
    size_t size;

    size = relay_registry_size(max_ids);
    ck_assert_uint_gt(size, 0);
    reg = relay_test_map(size);
    ck_assert_int_eq(relay_registry_init(reg, max_ids), RELAY_OK);
    return reg;
}


static void
relay_test_unmap(struct relay_registry_shm *reg)
{
    ck_assert_int_eq(munmap(reg, relay_registry_size(reg->max_live)), 0);
}


static int
relay_test_claim(struct relay_registry_shm *reg, const char *id, int slot,
                 uint32_t gen, struct relay_registry_view *view)
{
    return relay_registry_claim(reg, id, strlen(id), slot, gen, view);
}


static int
relay_test_lookup(struct relay_registry_shm *reg, const char *id,
                  struct relay_registry_view *view)
{
    return relay_registry_lookup(reg, id, strlen(id), view);
}


static int
relay_test_release(struct relay_registry_shm *reg, const char *id, int slot,
                   uint32_t gen)
{
    return relay_registry_release(reg, id, strlen(id), slot, gen);
}


static uint32_t
relay_test_home(struct relay_registry_shm *reg, const char *id)
{
    return relay_registry_hash(reg, id, strlen(id)) & (reg->capacity - 1);
}


/*
 * Write into ids[0..n) distinct ids of the form "<prefix><k>" that all hash
 * to the same home entry.
 */
static void
relay_test_colliding_ids(struct relay_registry_shm *reg, const char *prefix,
                         char ids[][32], int n)
{
    uint32_t home;
    int k, found;

    snprintf(ids[0], 32, "%s0", prefix);
    home = relay_test_home(reg, ids[0]);
    found = 1;
    for (k = 1; found < n && k < 1000000; k++) {
        snprintf(ids[found], 32, "%s%d", prefix, k);
        if (relay_test_home(reg, ids[found]) == home) {
            found++;
        }
    }
    ck_assert_int_eq(found, n);
}


/* The counters agree with the entries, and no id appears twice. */
static void
relay_test_check_invariants(struct relay_registry_shm *reg)
{
    struct relay_registry_entry_shm *a, *b;
    uint32_t i, j, live, tombstones;

    live = 0;
    tombstones = 0;
    for (i = 0; i < reg->capacity; i++) {
        a = &reg->entries[i];
        if (a->state == RELAY_REG_CLAIMED || a->state == RELAY_REG_GRACE) {
            live++;
            for (j = i + 1; j < reg->capacity; j++) {
                b = &reg->entries[j];
                if (b->state != RELAY_REG_CLAIMED
                    && b->state != RELAY_REG_GRACE)
                {
                    continue;
                }
                ck_assert(a->id_len != b->id_len
                          || memcmp(a->id, b->id, a->id_len) != 0);
            }
        } else if (a->state == RELAY_REG_TOMBSTONE) {
            tombstones++;
        } else {
            ck_assert_uint_eq(a->state, RELAY_REG_FREE);
        }
    }
    ck_assert_uint_eq(reg->live, live);
    ck_assert_uint_eq(reg->tombstones, tombstones);
    ck_assert_uint_eq(reg->journal_active, 0);
}


static int
relay_test_wait_status(pid_t pid)
{
    int status;

    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return status;
}


START_TEST(test_registry_size_refuses_zero_ids)
{
    struct relay_registry_shm dummy;

    ck_assert_uint_eq(relay_registry_size(0), 0);
    ck_assert_uint_eq(relay_registry_size(RELAY_REGISTRY_IDS_MAX + 1), 0);
    errno = 0;
    ck_assert_int_eq(relay_registry_init(&dummy, 0), RELAY_ERROR);
    ck_assert_int_eq(errno, EINVAL);
}
END_TEST


START_TEST(test_registry_capacity_is_power_of_two_above_four_thirds)
{
    struct relay_registry_shm *reg;

    reg = relay_test_registry(65536);
    ck_assert_uint_eq(reg->capacity, 131072);
    ck_assert_uint_ge((uint64_t)reg->capacity * 3, 65536ull * 4);
    relay_test_unmap(reg);

    reg = relay_test_registry(6);
    ck_assert_uint_eq(reg->capacity, 8);
    relay_test_unmap(reg);

    reg = relay_test_registry(96);
    ck_assert_uint_eq(reg->capacity, 128);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_hash_is_siphash24)
{
    struct relay_registry_shm *reg;
    char msg[15];
    int i;

    /* the reference vectors: key 00..0f, messages "" and 00..0e */
    reg = relay_test_registry(4);
    for (i = 0; i < 16; i++) {
        reg->hash_key[i] = (uint8_t)i;
    }
    for (i = 0; i < 15; i++) {
        msg[i] = (char)i;
    }
    ck_assert_uint_eq(relay_registry_hash(reg, msg, 0), 0xdd0e0e31u);
    ck_assert_uint_eq(relay_registry_hash(reg, msg, 15), 0x49be45e5u);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_first_claim_wins)
{
    struct relay_registry_shm *reg;
    struct relay_registry_view view;

    reg = relay_test_registry(16);
    ck_assert_int_eq(relay_test_claim(reg, "srv-a", 3, 7, &view),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(view.state, RELAY_REG_CLAIMED);
    ck_assert_int_eq(view.owner_slot, 3);
    ck_assert_uint_eq(view.owner_gen, 7);
    ck_assert_uint_gt(view.serial, 0);
    ck_assert_uint_eq(relay_registry_live(reg), 1);
    relay_test_check_invariants(reg);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_second_claim_gets_held_with_first_owner)
{
    struct relay_registry_shm *reg;
    struct relay_registry_view first, view;

    reg = relay_test_registry(16);
    ck_assert_int_eq(relay_test_claim(reg, "srv-a", 1, 1, &first),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_claim(reg, "srv-a", 2, 5, &view),
                     RELAY_REG_HELD);
    ck_assert_int_eq(view.state, RELAY_REG_CLAIMED);
    ck_assert_int_eq(view.owner_slot, 1);
    ck_assert_uint_eq(view.owner_gen, 1);
    ck_assert_uint_eq(view.serial, first.serial);

    /* the owner claiming again changes nothing either */
    ck_assert_int_eq(relay_test_claim(reg, "srv-a", 1, 1, &view),
                     RELAY_REG_HELD);
    ck_assert_uint_eq(view.serial, first.serial);
    ck_assert_uint_eq(relay_registry_live(reg), 1);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_release_then_claim_again_succeeds)
{
    struct relay_registry_shm *reg;
    struct relay_registry_view first, view;

    reg = relay_test_registry(16);
    ck_assert_int_eq(relay_test_claim(reg, "srv-a", 1, 1, &first),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_release(reg, "srv-a", 1, 1), RELAY_REG_OK);
    ck_assert_int_eq(relay_test_lookup(reg, "srv-a", &view),
                     RELAY_REG_NOT_FOUND);
    ck_assert_uint_eq(relay_registry_live(reg), 0);

    ck_assert_int_eq(relay_test_claim(reg, "srv-a", 2, 9, &view),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(view.owner_slot, 2);
    ck_assert_uint_gt(view.serial, first.serial);
    relay_test_check_invariants(reg);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_only_owner_may_release_or_set_state)
{
    struct relay_registry_shm *reg;
    struct relay_registry_view view;

    reg = relay_test_registry(16);
    ck_assert_int_eq(relay_test_claim(reg, "srv-a", 1, 4, NULL),
                     RELAY_REG_CLAIMED_NEW);

    ck_assert_int_eq(relay_test_release(reg, "srv-a", 2, 4),
                     RELAY_REG_NOT_OWNER);
    ck_assert_int_eq(relay_test_release(reg, "srv-a", 1, 5),
                     RELAY_REG_NOT_OWNER);
    ck_assert_int_eq(relay_registry_set_state(reg, "srv-a", 5, 2, 4,
                                              RELAY_REG_GRACE),
                     RELAY_REG_NOT_OWNER);
    ck_assert_int_eq(relay_registry_set_state(reg, "srv-a", 5, 1, 3,
                                              RELAY_REG_GRACE),
                     RELAY_REG_NOT_OWNER);

    ck_assert_int_eq(relay_test_lookup(reg, "srv-a", &view), RELAY_REG_OK);
    ck_assert_int_eq(view.state, RELAY_REG_CLAIMED);
    ck_assert_int_eq(view.owner_slot, 1);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_unknown_id_is_not_found)
{
    struct relay_registry_shm *reg;
    struct relay_registry_view view;

    reg = relay_test_registry(16);
    ck_assert_int_eq(relay_test_lookup(reg, "nobody", &view),
                     RELAY_REG_NOT_FOUND);
    ck_assert_int_eq(relay_test_release(reg, "nobody", 0, 0),
                     RELAY_REG_NOT_FOUND);
    ck_assert_int_eq(relay_registry_set_state(reg, "nobody", 6, 0, 0,
                                              RELAY_REG_GRACE),
                     RELAY_REG_NOT_FOUND);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_bad_arguments_are_invalid)
{
    struct relay_registry_shm *reg;
    char big[RELAY_SERVER_ID_MAX + 1];

    reg = relay_test_registry(16);
    memset(big, 'x', sizeof(big));
    ck_assert_int_eq(relay_registry_claim(reg, "a", 0, 0, 0, NULL),
                     RELAY_REG_INVALID);
    ck_assert_int_eq(relay_registry_claim(reg, big, sizeof(big), 0, 0,
                                          NULL),
                     RELAY_REG_INVALID);
    ck_assert_int_eq(relay_registry_claim(reg, big, RELAY_SERVER_ID_MAX, 0,
                                          0, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_claim(reg, "a", -1, 0, NULL),
                     RELAY_REG_INVALID);
    ck_assert_int_eq(relay_registry_set_state(reg, big, RELAY_SERVER_ID_MAX,
                                              0, 0, RELAY_REG_TOMBSTONE),
                     RELAY_REG_INVALID);
    ck_assert_uint_eq(relay_registry_live(reg), 1);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_grace_state_visible_in_lookup)
{
    struct relay_registry_shm *reg;
    struct relay_registry_view first, view;

    reg = relay_test_registry(16);
    ck_assert_int_eq(relay_test_claim(reg, "srv-a", 2, 3, &first),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_registry_set_state(reg, "srv-a", 5, 2, 3,
                                              RELAY_REG_GRACE),
                     RELAY_REG_OK);

    ck_assert_int_eq(relay_test_lookup(reg, "srv-a", &view), RELAY_REG_OK);
    ck_assert_int_eq(view.state, RELAY_REG_GRACE);
    ck_assert_int_eq(view.owner_slot, 2);
    ck_assert_uint_eq(view.owner_gen, 3);
    ck_assert_uint_eq(view.serial, first.serial);

    /* a gracing id is still held, and still counts as live */
    ck_assert_int_eq(relay_test_claim(reg, "srv-a", 4, 1, &view),
                     RELAY_REG_HELD);
    ck_assert_int_eq(view.state, RELAY_REG_GRACE);
    ck_assert_int_eq(view.owner_slot, 2);
    ck_assert_uint_eq(relay_registry_live(reg), 1);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_reclaim_from_grace_gets_new_serial)
{
    struct relay_registry_shm *reg;
    struct relay_registry_view first, view;

    reg = relay_test_registry(16);
    ck_assert_int_eq(relay_test_claim(reg, "srv-a", 2, 3, &first),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_registry_set_state(reg, "srv-a", 5, 2, 3,
                                              RELAY_REG_GRACE),
                     RELAY_REG_OK);
    ck_assert_int_eq(relay_registry_set_state(reg, "srv-a", 5, 2, 3,
                                              RELAY_REG_CLAIMED),
                     RELAY_REG_OK);
    ck_assert_int_eq(relay_test_lookup(reg, "srv-a", &view), RELAY_REG_OK);
    ck_assert_int_eq(view.state, RELAY_REG_CLAIMED);
    ck_assert_uint_gt(view.serial, first.serial);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_full_refuses_new_id_until_release)
{
    struct relay_registry_shm *reg;
    struct relay_registry_view view;
    char id[16];
    int i;

    reg = relay_test_registry(4);
    for (i = 0; i < 4; i++) {
        snprintf(id, sizeof(id), "srv-%d", i);
        ck_assert_int_eq(relay_test_claim(reg, id, 0, 0, NULL),
                         RELAY_REG_CLAIMED_NEW);
    }

    ck_assert_int_eq(relay_test_claim(reg, "srv-new", 1, 0, &view),
                     RELAY_REG_FULL);
    ck_assert_int_eq(view.state, RELAY_REG_FREE);
    ck_assert_int_eq(view.owner_slot, -1);

    /* a held id is still reported as held, not as full */
    ck_assert_int_eq(relay_test_claim(reg, "srv-2", 1, 0, &view),
                     RELAY_REG_HELD);

    ck_assert_int_eq(relay_test_release(reg, "srv-2", 0, 0), RELAY_REG_OK);
    ck_assert_int_eq(relay_test_claim(reg, "srv-new", 1, 0, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_claim(reg, "srv-2", 1, 0, NULL),
                     RELAY_REG_FULL);
    relay_test_check_invariants(reg);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_release_mid_chain_keeps_later_ids_found)
{
    struct relay_registry_shm *reg;
    struct relay_registry_view view;
    char ids[3][32];
    uint32_t home, mask;

    reg = relay_test_registry(16);
    mask = reg->capacity - 1;
    relay_test_colliding_ids(reg, "chain-", ids, 3);
    home = relay_test_home(reg, ids[0]);

    ck_assert_int_eq(relay_test_claim(reg, ids[0], 1, 0, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_claim(reg, ids[1], 2, 0, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_claim(reg, ids[2], 3, 0, NULL),
                     RELAY_REG_CLAIMED_NEW);

    ck_assert_int_eq(relay_test_release(reg, ids[1], 2, 0), RELAY_REG_OK);
    ck_assert_uint_eq(reg->entries[(home + 1) & mask].state,
                      RELAY_REG_TOMBSTONE);
    ck_assert_uint_eq(reg->tombstones, 1);

    ck_assert_int_eq(relay_test_lookup(reg, ids[2], &view), RELAY_REG_OK);
    ck_assert_int_eq(view.owner_slot, 3);
    ck_assert_int_eq(relay_test_lookup(reg, ids[0], &view), RELAY_REG_OK);
    ck_assert_int_eq(view.owner_slot, 1);
    ck_assert_int_eq(relay_test_lookup(reg, ids[1], &view),
                     RELAY_REG_NOT_FOUND);

    /* C must not be claimable twice through the hole B left */
    ck_assert_int_eq(relay_test_claim(reg, ids[2], 4, 0, &view),
                     RELAY_REG_HELD);
    ck_assert_int_eq(view.owner_slot, 3);
    relay_test_check_invariants(reg);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_claim_reuses_tombstone_on_its_chain)
{
    struct relay_registry_shm *reg;
    char ids[4][32];
    uint32_t home, mask;

    reg = relay_test_registry(16);
    mask = reg->capacity - 1;
    relay_test_colliding_ids(reg, "reuse-", ids, 4);
    home = relay_test_home(reg, ids[0]);

    ck_assert_int_eq(relay_test_claim(reg, ids[0], 1, 0, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_claim(reg, ids[1], 1, 0, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_claim(reg, ids[2], 1, 0, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_release(reg, ids[1], 1, 0), RELAY_REG_OK);

    ck_assert_int_eq(relay_test_claim(reg, ids[3], 5, 0, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_uint_eq(reg->entries[(home + 1) & mask].state,
                      RELAY_REG_CLAIMED);
    ck_assert_int_eq(reg->entries[(home + 1) & mask].owner_slot, 5);
    ck_assert_uint_eq(reg->tombstones, 0);
    relay_test_check_invariants(reg);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_release_at_chain_end_leaves_no_tombstones)
{
    struct relay_registry_shm *reg;
    char ids[3][32];

    reg = relay_test_registry(16);
    relay_test_colliding_ids(reg, "tail-", ids, 3);
    ck_assert_int_eq(relay_test_claim(reg, ids[0], 1, 0, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_claim(reg, ids[1], 1, 0, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_claim(reg, ids[2], 1, 0, NULL),
                     RELAY_REG_CLAIMED_NEW);

    ck_assert_int_eq(relay_test_release(reg, ids[1], 1, 0), RELAY_REG_OK);
    ck_assert_uint_eq(reg->tombstones, 1);
    ck_assert_int_eq(relay_test_release(reg, ids[2], 1, 0), RELAY_REG_OK);
    ck_assert_uint_eq(reg->tombstones, 0);
    ck_assert_int_eq(relay_test_release(reg, ids[0], 1, 0), RELAY_REG_OK);
    ck_assert_uint_eq(reg->tombstones, 0);
    ck_assert_uint_eq(reg->live, 0);
    relay_test_check_invariants(reg);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_churn_keeps_ids_found_and_tombstones_bounded)
{
    struct relay_registry_shm *reg;
    struct relay_registry_view view;
    char id[32];
    uint32_t rnd;
    int i, k;

    /* 40 ids stay while thousands come and go around them */
    reg = relay_test_registry(48);
    for (k = 0; k < 40; k++) {
        snprintf(id, sizeof(id), "keep-%d", k);
        ck_assert_int_eq(relay_test_claim(reg, id, 1, 0, NULL),
                         RELAY_REG_CLAIMED_NEW);
    }

    rnd = 12345;
    for (i = 0; i < 20000; i++) {
        rnd = rnd * 1103515245u + 12345u;
        snprintf(id, sizeof(id), "churn-%u", rnd >> 8);
        if (relay_test_claim(reg, id, 2, 0, NULL) == RELAY_REG_CLAIMED_NEW) {
            ck_assert_int_eq(relay_test_release(reg, id, 2, 0),
                             RELAY_REG_OK);
        }
        ck_assert_uint_le(reg->tombstones, reg->capacity / 8);
        if (i % 1000 == 0) {
            relay_test_check_invariants(reg);
        }
    }

    for (k = 0; k < 40; k++) {
        snprintf(id, sizeof(id), "keep-%d", k);
        ck_assert_int_eq(relay_test_lookup(reg, id, &view), RELAY_REG_OK);
        ck_assert_int_eq(view.owner_slot, 1);
    }
    ck_assert_uint_eq(relay_registry_live(reg), 40);
    ck_assert_uint_gt(reg->rehashes, 0);
    relay_test_check_invariants(reg);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_free_worker_frees_exactly_that_slot)
{
    struct relay_registry_shm *reg;
    struct relay_registry_view view;

    reg = relay_test_registry(16);
    ck_assert_int_eq(relay_test_claim(reg, "a1", 1, 1, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_claim(reg, "a2", 1, 1, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_claim(reg, "a3", 1, 2, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_registry_set_state(reg, "a2", 2, 1, 1,
                                              RELAY_REG_GRACE),
                     RELAY_REG_OK);
    ck_assert_int_eq(relay_test_claim(reg, "b1", 2, 1, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_claim(reg, "b2", 12, 1, NULL),
                     RELAY_REG_CLAIMED_NEW);

    /* every generation of slot 1, GRACE included, and nothing else */
    ck_assert_int_eq(relay_registry_free_worker(reg, 1), 3);
    ck_assert_int_eq(relay_test_lookup(reg, "a1", &view),
                     RELAY_REG_NOT_FOUND);
    ck_assert_int_eq(relay_test_lookup(reg, "a2", &view),
                     RELAY_REG_NOT_FOUND);
    ck_assert_int_eq(relay_test_lookup(reg, "a3", &view),
                     RELAY_REG_NOT_FOUND);
    ck_assert_int_eq(relay_test_lookup(reg, "b1", &view), RELAY_REG_OK);
    ck_assert_int_eq(view.owner_slot, 2);
    ck_assert_int_eq(relay_test_lookup(reg, "b2", &view), RELAY_REG_OK);
    ck_assert_int_eq(view.owner_slot, 12);
    ck_assert_uint_eq(relay_registry_live(reg), 2);

    ck_assert_int_eq(relay_registry_free_worker(reg, 1), 0);
    relay_test_check_invariants(reg);
    relay_test_unmap(reg);
}
END_TEST


/* A racer: claim every id once, starting at its own offset. */
static int
relay_test_racer(struct relay_registry_shm *reg, int slot, uint32_t *won,
                 int start_fd)
{
    struct relay_registry_view view;
    char id[32], go;
    int i, k, rc;

    if (read(start_fd, &go, 1) != 0) {
        return 2;
    }
    for (i = 0; i < RELAY_TEST_RACE_IDS; i++) {
        k = (i + slot * (RELAY_TEST_RACE_IDS / RELAY_TEST_RACERS))
            % RELAY_TEST_RACE_IDS;
        snprintf(id, sizeof(id), "race-%d", k);
        rc = relay_registry_claim(reg, id, strlen(id), slot, 1, &view);
        if (rc == RELAY_REG_CLAIMED_NEW) {
            if (view.owner_slot != slot) {
                return 3;
            }
            won[slot]++;
        } else if (rc == RELAY_REG_HELD) {
            if (view.owner_slot == slot || view.owner_slot < 0
                || view.owner_slot >= RELAY_TEST_RACERS
                || view.state != RELAY_REG_CLAIMED)
            {
                return 4;
            }
        } else {
            return 5;
        }
    }
    return 0;
}


START_TEST(test_registry_racing_processes_each_id_has_one_owner)
{
    struct relay_registry_shm *reg;
    struct relay_registry_view view;
    uint32_t *won, owned[RELAY_TEST_RACERS], total;
    uint8_t *seen;
    pid_t pids[RELAY_TEST_RACERS];
    char id[32];
    int gate[2], i, status;

    reg = relay_test_registry(RELAY_TEST_RACE_IDS);
    won = relay_test_map(4096);
    ck_assert_int_eq(pipe(gate), 0);

    for (i = 0; i < RELAY_TEST_RACERS; i++) {
        pids[i] = fork();
        ck_assert_int_ne(pids[i], -1);
        if (pids[i] == 0) {
            close(gate[1]);
            _exit(relay_test_racer(reg, i, won, gate[0]));
        }
    }
    /* closing the write end releases every racer at once */
    close(gate[0]);
    close(gate[1]);

    for (i = 0; i < RELAY_TEST_RACERS; i++) {
        status = relay_test_wait_status(pids[i]);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 0);
    }

    memset(owned, 0, sizeof(owned));
    seen = (uint8_t *)won + 64;
    for (i = 0; i < RELAY_TEST_RACE_IDS; i++) {
        snprintf(id, sizeof(id), "race-%d", i);
        ck_assert_int_eq(relay_test_lookup(reg, id, &view), RELAY_REG_OK);
        ck_assert_int_ge(view.owner_slot, 0);
        ck_assert_int_lt(view.owner_slot, RELAY_TEST_RACERS);
        owned[view.owner_slot]++;
        /* one successful claim per id, so the serials are 1..1000 */
        ck_assert_uint_ge(view.serial, 1);
        ck_assert_uint_le(view.serial, RELAY_TEST_RACE_IDS);
        ck_assert_uint_eq(seen[view.serial], 0);
        seen[view.serial] = 1;
    }

    total = 0;
    for (i = 0; i < RELAY_TEST_RACERS; i++) {
        ck_assert_uint_eq(won[i], owned[i]);
        total += won[i];
    }
    ck_assert_uint_eq(total, RELAY_TEST_RACE_IDS);
    ck_assert_uint_eq(relay_registry_live(reg), RELAY_TEST_RACE_IDS);
    ck_assert_uint_eq(reg->repairs, 0);
    relay_test_check_invariants(reg);
    ck_assert_int_eq(munmap(won, 4096), 0);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_child_exiting_with_lock_is_repaired)
{
    struct relay_registry_shm *reg;
    struct relay_registry_view first, view;
    pid_t pid;
    int status;

    reg = relay_test_registry(16);
    ck_assert_int_eq(relay_test_claim(reg, "srv-a", 1, 1, &first),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_claim(reg, "srv-b", 1, 1, NULL),
                     RELAY_REG_CLAIMED_NEW);

    pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        if (relay_registry_test_hold_lock(reg, "srv-a", 5) != RELAY_REG_OK) {
            _exit(1);
        }
        _exit(0);
    }
    status = relay_test_wait_status(pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    ck_assert_uint_eq(reg->journal_active, 1);

    /* the half-done takeover is rolled back: slot 1 still holds srv-a */
    ck_assert_int_eq(relay_test_claim(reg, "srv-a", 2, 1, &view),
                     RELAY_REG_HELD);
    ck_assert_uint_eq(reg->repairs, 1);
    ck_assert_int_eq(view.state, RELAY_REG_CLAIMED);
    ck_assert_int_eq(view.owner_slot, 1);
    ck_assert_uint_eq(view.owner_gen, 1);
    ck_assert_uint_eq(view.serial, first.serial);
    ck_assert_uint_eq(relay_registry_live(reg), 2);
    relay_test_check_invariants(reg);

    /* and the mutex works normally afterwards */
    ck_assert_int_eq(relay_test_release(reg, "srv-a", 1, 1), RELAY_REG_OK);
    ck_assert_int_eq(relay_test_lookup(reg, "srv-b", &view), RELAY_REG_OK);
    ck_assert_uint_eq(reg->repairs, 1);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_child_killed_mid_claim_is_rolled_back)
{
    struct relay_registry_shm *reg;
    struct relay_registry_view view;
    pid_t pid;
    char c;
    int ready[2], status;

    reg = relay_test_registry(16);
    ck_assert_int_eq(relay_test_claim(reg, "srv-b", 1, 1, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(pipe(ready), 0);

    pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        close(ready[0]);
        if (relay_registry_test_hold_lock(reg, "srv-new", 7)
            != RELAY_REG_OK)
        {
            _exit(1);
        }
        if (write(ready[1], "x", 1) != 1) {
            _exit(2);
        }
        for (;;) {
            pause();
        }
    }
    close(ready[1]);
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    close(ready[0]);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    status = relay_test_wait_status(pid);
    ck_assert(WIFSIGNALED(status));
    ck_assert_int_eq(WTERMSIG(status), SIGKILL);

    /* the torn entry is gone and the id is free to claim */
    ck_assert_int_eq(relay_test_claim(reg, "srv-new", 3, 2, &view),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_uint_eq(reg->repairs, 1);
    ck_assert_int_eq(view.owner_slot, 3);
    ck_assert_uint_eq(view.owner_gen, 2);
    ck_assert_uint_eq(relay_registry_live(reg), 2);
    ck_assert_int_eq(relay_test_lookup(reg, "srv-b", &view), RELAY_REG_OK);
    ck_assert_int_eq(view.owner_slot, 1);
    relay_test_check_invariants(reg);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_child_dying_mid_rehash_move_is_rolled_back)
{
    struct relay_registry_shm *reg;
    struct relay_registry_view view;
    char ids[3][32];
    uint32_t home, mask, from, to;
    pid_t pid;
    int status;

    reg = relay_test_registry(16);
    mask = reg->capacity - 1;
    relay_test_colliding_ids(reg, "move-", ids, 3);
    home = relay_test_home(reg, ids[0]);
    ck_assert_int_eq(relay_test_claim(reg, ids[0], 1, 0, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_claim(reg, ids[1], 1, 0, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_claim(reg, ids[2], 6, 0, NULL),
                     RELAY_REG_CLAIMED_NEW);
    ck_assert_int_eq(relay_test_release(reg, ids[1], 1, 0), RELAY_REG_OK);
    to = (home + 1) & mask;
    from = (home + 2) & mask;

    /*
     * The child does by hand what a rehash does when it moves C into the
     * tombstone B left, and dies after the copy and the delete but before
     * closing the journal: C is then in the table once, at the new place.
     */
    pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        if (pthread_mutex_lock(&reg->lock) != 0) {
            _exit(1);
        }
        reg->journal_index = from;
        reg->journal_dest = to + 1;
        reg->journal_old = reg->entries[from];
        reg->journal_active = 1;
        reg->entries[to] = reg->entries[from];
        reg->entries[from].state = RELAY_REG_TOMBSTONE;
        _exit(0);
    }
    status = relay_test_wait_status(pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);

    ck_assert_int_eq(relay_test_lookup(reg, ids[2], &view), RELAY_REG_OK);
    ck_assert_uint_eq(reg->repairs, 1);
    ck_assert_int_eq(view.owner_slot, 6);
    ck_assert_uint_eq(reg->entries[to].state, RELAY_REG_TOMBSTONE);
    ck_assert_uint_eq(reg->entries[from].state, RELAY_REG_CLAIMED);
    ck_assert_uint_eq(relay_registry_live(reg), 2);
    relay_test_check_invariants(reg);
    relay_test_unmap(reg);
}
END_TEST


START_TEST(test_registry_unrecoverable_lock_fails_cleanly)
{
    struct relay_registry_shm *reg;
    pid_t pid;
    int status;

    reg = relay_test_registry(16);
    pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        _exit(relay_registry_test_hold_lock(reg, "x", 1) == RELAY_REG_OK
                  ? 0 : 1);
    }
    status = relay_test_wait_status(pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);

    /* someone outside the module leaves the dead owner's lock unrepaired */
    ck_assert_int_eq(pthread_mutex_lock(&reg->lock), EOWNERDEAD);
    ck_assert_int_eq(pthread_mutex_unlock(&reg->lock), 0);

    errno = 0;
    ck_assert_int_eq(relay_test_claim(reg, "x", 1, 1, NULL),
                     RELAY_REG_LOCK_FAILED);
    ck_assert_int_eq(errno, ENOTRECOVERABLE);
    ck_assert_int_eq(relay_registry_free_worker(reg, 1),
                     RELAY_REG_LOCK_FAILED);
    ck_assert_uint_eq(relay_registry_live(reg), 0);
    relay_test_unmap(reg);
}
END_TEST


Suite *
relay_suite_registry(void)
{
    Suite *s;
    TCase *tc;

    s = suite_create("registry");

    tc = tcase_create("table");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_registry_size_refuses_zero_ids);
    tcase_add_test(tc,
                   test_registry_capacity_is_power_of_two_above_four_thirds);
    tcase_add_test(tc, test_registry_hash_is_siphash24);
    tcase_add_test(tc, test_registry_first_claim_wins);
    tcase_add_test(tc, test_registry_second_claim_gets_held_with_first_owner);
    tcase_add_test(tc, test_registry_release_then_claim_again_succeeds);
    tcase_add_test(tc, test_registry_only_owner_may_release_or_set_state);
    tcase_add_test(tc, test_registry_unknown_id_is_not_found);
    tcase_add_test(tc, test_registry_bad_arguments_are_invalid);
    tcase_add_test(tc, test_registry_grace_state_visible_in_lookup);
    tcase_add_test(tc, test_registry_reclaim_from_grace_gets_new_serial);
    tcase_add_test(tc, test_registry_full_refuses_new_id_until_release);
    tcase_add_test(tc,
                   test_registry_release_mid_chain_keeps_later_ids_found);
    tcase_add_test(tc, test_registry_claim_reuses_tombstone_on_its_chain);
    tcase_add_test(tc,
                   test_registry_release_at_chain_end_leaves_no_tombstones);
    tcase_add_test(tc,
                   test_registry_churn_keeps_ids_found_and_tombstones_bounded);
    tcase_add_test(tc, test_registry_free_worker_frees_exactly_that_slot);
    suite_add_tcase(s, tc);

    tc = tcase_create("processes");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_registry_racing_processes_each_id_has_one_owner);
    tcase_add_test(tc, test_registry_child_exiting_with_lock_is_repaired);
    tcase_add_test(tc, test_registry_child_killed_mid_claim_is_rolled_back);
    tcase_add_test(tc,
                   test_registry_child_dying_mid_rehash_move_is_rolled_back);
    tcase_add_test(tc, test_registry_unrecoverable_lock_fails_cleanly);
    suite_add_tcase(s, tc);

    return s;
}
