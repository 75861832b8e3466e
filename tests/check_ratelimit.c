/*
 * check_ratelimit.c: the per-IP upgrade budget on real shared memory.
 *
 * Time is passed in explicitly, so refill and idleness are tested to the
 * millisecond without sleeping.  Tables live in anonymous MAP_SHARED
 * mappings so that forked children share one budget as workers do.
 */

#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "relay/common.h"
#include "relay/ratelimit.h"
#include "suites.h"

#define RELAY_TEST_BURST    20
#define RELAY_TEST_REFILL   6000
#define RELAY_TEST_IDLE     120000


static struct relay_ratelimit_shm *
relay_test_table(uint32_t nbuckets)
{
    struct relay_ratelimit_shm *rl;
    size_t size;

    size = relay_ratelimit_size(nbuckets);
    ck_assert_uint_gt(size, 0);
    rl = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
              -1, 0);
    ck_assert_ptr_ne(rl, MAP_FAILED);
    ck_assert_int_eq(relay_ratelimit_init(rl, nbuckets, RELAY_TEST_BURST,
                                          RELAY_TEST_REFILL, RELAY_TEST_IDLE),
                     RELAY_OK);
    return rl;
}


static void
relay_test_unmap(struct relay_ratelimit_shm *rl)
{
    ck_assert_int_eq(munmap(rl, relay_ratelimit_size(rl->nbuckets)), 0);
}


/* Take n tokens for a 4-byte address at now_ms; returns how many passed. */
static int
relay_test_take_n(struct relay_ratelimit_shm *rl, const uint8_t *addr,
                  size_t len, uint64_t now_ms, int n)
{
    int i, passed, rc;

    passed = 0;
    for (i = 0; i < n; i++) {
        rc = relay_ratelimit_take(rl, addr, len, now_ms);
        ck_assert_int_ge(rc, 0);
        passed += rc;
    }
    return passed;
}


static void
relay_test_v4(uint8_t addr[4], uint32_t n)
{
    addr[0] = 10;
    addr[1] = (uint8_t)(n >> 16);
    addr[2] = (uint8_t)(n >> 8);
    addr[3] = (uint8_t)n;
}


START_TEST(test_ratelimit_size_refuses_bad_arguments)
{
    struct relay_ratelimit_shm dummy;

    ck_assert_uint_eq(relay_ratelimit_size(0), 0);
    ck_assert_uint_eq(relay_ratelimit_size(RELAY_RATELIMIT_BUCKETS_MAX + 1),
                      0);
    ck_assert_uint_eq(relay_ratelimit_size(100), relay_ratelimit_size(128));
    errno = 0;
    ck_assert_int_eq(relay_ratelimit_init(&dummy, 16, 0, 6000, 1),
                     RELAY_ERROR);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(relay_ratelimit_init(&dummy, 16, 20, 0, 1), RELAY_ERROR);
    ck_assert_int_eq(relay_ratelimit_init(&dummy, 0, 20, 6000, 1),
                     RELAY_ERROR);
}
END_TEST


START_TEST(test_ratelimit_burst_of_20_then_refused)
{
    struct relay_ratelimit_shm *rl;
    const uint8_t ip[4] = { 192, 0, 2, 1 };
    int i;

    rl = relay_test_table(256);
    for (i = 0; i < RELAY_TEST_BURST; i++) {
        ck_assert_int_eq(relay_ratelimit_take(rl, ip, 4, 1000), 1);
    }
    ck_assert_int_eq(relay_ratelimit_take(rl, ip, 4, 1000), 0);
    ck_assert_int_eq(relay_ratelimit_take(rl, ip, 4, 1000), 0);
    relay_test_unmap(rl);
}
END_TEST


START_TEST(test_ratelimit_one_token_back_after_6000_ms)
{
    struct relay_ratelimit_shm *rl;
    const uint8_t ip[4] = { 192, 0, 2, 1 };

    rl = relay_test_table(256);
    ck_assert_int_eq(relay_test_take_n(rl, ip, 4, 0, 21), 20);
    ck_assert_int_eq(relay_ratelimit_take(rl, ip, 4, 5999), 0);
    ck_assert_int_eq(relay_ratelimit_take(rl, ip, 4, 6000), 1);
    ck_assert_int_eq(relay_ratelimit_take(rl, ip, 4, 6000), 0);
    ck_assert_int_eq(relay_ratelimit_take(rl, ip, 4, 11999), 0);
    ck_assert_int_eq(relay_ratelimit_take(rl, ip, 4, 12000), 1);
    relay_test_unmap(rl);
}
END_TEST


START_TEST(test_ratelimit_partial_refill_carries_over)
{
    struct relay_ratelimit_shm *rl;
    const uint8_t ip[4] = { 192, 0, 2, 1 };
    uint64_t t;

    /* refused takes every 1001 ms must not lose the time between them */
    rl = relay_test_table(256);
    ck_assert_int_eq(relay_test_take_n(rl, ip, 4, 0, 20), 20);
    for (t = 1001; t < 6000; t += 1001) {
        ck_assert_int_eq(relay_ratelimit_take(rl, ip, 4, t), 0);
    }
    ck_assert_int_eq(relay_ratelimit_take(rl, ip, 4, 6000), 1);
    relay_test_unmap(rl);
}
END_TEST


START_TEST(test_ratelimit_refill_stops_at_burst)
{
    struct relay_ratelimit_shm *rl;
    const uint8_t ip[4] = { 192, 0, 2, 1 };

    rl = relay_test_table(256);
    ck_assert_int_eq(relay_test_take_n(rl, ip, 4, 0, 5), 5);
    ck_assert_int_eq(relay_test_take_n(rl, ip, 4, 3600000, 25), 20);
    relay_test_unmap(rl);
}
END_TEST


START_TEST(test_ratelimit_different_ips_are_independent)
{
    struct relay_ratelimit_shm *rl;
    const uint8_t a[4] = { 192, 0, 2, 1 };
    const uint8_t b[4] = { 192, 0, 2, 2 };

    rl = relay_test_table(256);
    ck_assert_int_eq(relay_test_take_n(rl, a, 4, 0, 25), 20);
    ck_assert_int_eq(relay_test_take_n(rl, b, 4, 0, 25), 20);
    ck_assert_int_eq(relay_ratelimit_take(rl, a, 4, 0), 0);
    relay_test_unmap(rl);
}
END_TEST


START_TEST(test_ratelimit_ipv4_shares_bucket_with_v4_mapped_ipv6)
{
    struct relay_ratelimit_shm *rl;
    const uint8_t v4[4] = { 192, 0, 2, 1 };
    const uint8_t mapped[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
                                 192, 0, 2, 1 };
    const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0,
                             0, 192, 0, 2, 1 };

    rl = relay_test_table(256);
    ck_assert_int_eq(relay_test_take_n(rl, v4, 4, 0, 10), 10);
    ck_assert_int_eq(relay_test_take_n(rl, mapped, 16, 0, 15), 10);
    ck_assert_int_eq(relay_ratelimit_take(rl, v4, 4, 0), 0);

    /* same low 32 bits, but a real IPv6 address: its own bucket */
    ck_assert_int_eq(relay_test_take_n(rl, v6, 16, 0, 25), 20);
    relay_test_unmap(rl);
}
END_TEST


START_TEST(test_ratelimit_bad_address_length_is_an_error)
{
    struct relay_ratelimit_shm *rl;
    const uint8_t ip[16] = { 0 };

    rl = relay_test_table(16);
    errno = 0;
    ck_assert_int_eq(relay_ratelimit_take(rl, ip, 6, 0), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(relay_ratelimit_take(rl, NULL, 4, 0), -1);
    relay_test_unmap(rl);
}
END_TEST


START_TEST(test_ratelimit_idle_bucket_forgotten_after_120_s)
{
    struct relay_ratelimit_shm *rl;
    uint8_t ip[4], other[4];
    uint32_t n;

    /* one window: every address competes for the same 16 buckets */
    rl = relay_test_table(16);
    relay_test_v4(ip, 0);
    ck_assert_int_eq(relay_test_take_n(rl, ip, 4, 0, 21), 20);

    /* 15 others fill the rest; then, 120 s on, a 17th needs a bucket */
    for (n = 1; n < 16; n++) {
        relay_test_v4(other, n);
        ck_assert_int_eq(relay_ratelimit_take(rl, other, 4, 60000), 1);
    }
    for (n = 1; n < 16; n++) {
        relay_test_v4(other, n);
        ck_assert_int_eq(relay_ratelimit_take(rl, other, 4, 119000), 1);
    }
    relay_test_v4(other, 16);
    ck_assert_int_eq(relay_ratelimit_take(rl, other, 4, RELAY_TEST_IDLE), 1);

    /* the idle bucket made room, so none of the 15 lost its count */
    for (n = 1; n < 16; n++) {
        relay_test_v4(other, n);
        ck_assert_int_eq(relay_test_take_n(rl, other, 4, 119000, 20), 19);
    }

    /* and the forgotten address starts over with a whole burst */
    ck_assert_int_eq(relay_test_take_n(rl, ip, 4, 130000, 21), 20);
    relay_test_unmap(rl);
}
END_TEST


START_TEST(test_ratelimit_full_table_evicts_least_recent_not_refuses)
{
    struct relay_ratelimit_shm *rl;
    uint8_t ip[4];
    uint32_t n;

    rl = relay_test_table(16);
    for (n = 0; n < 16; n++) {
        relay_test_v4(ip, n);
        ck_assert_int_eq(relay_test_take_n(rl, ip, 4, 1000 + n, 20), 20);
    }

    /* every bucket is empty and active, yet a new address gets in */
    relay_test_v4(ip, 100);
    ck_assert_int_eq(relay_ratelimit_take(rl, ip, 4, 2000), 1);

    /* address 0 was the least recently used: it was evicted */
    relay_test_v4(ip, 0);
    ck_assert_int_eq(relay_ratelimit_take(rl, ip, 4, 2001), 1);

    /* address 5 kept its empty bucket */
    relay_test_v4(ip, 5);
    ck_assert_int_eq(relay_ratelimit_take(rl, ip, 4, 2002), 0);
    relay_test_unmap(rl);
}
END_TEST


START_TEST(test_ratelimit_forked_processes_share_one_budget)
{
    struct relay_ratelimit_shm *rl;
    const uint8_t ip[4] = { 198, 51, 100, 7 };
    pid_t pids[2];
    int i, k, status, passed, total;

    rl = relay_test_table(256);
    for (i = 0; i < 2; i++) {
        pids[i] = fork();
        ck_assert_int_ne(pids[i], -1);
        if (pids[i] == 0) {
            passed = 0;
            for (k = 0; k < 20; k++) {
                if (relay_ratelimit_take(rl, ip, 4, 5000) == 1) {
                    passed++;
                }
            }
            _exit(passed);
        }
    }

    total = 0;
    for (i = 0; i < 2; i++) {
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert(WIFEXITED(status));
        total += WEXITSTATUS(status);
    }
    ck_assert_int_eq(total, 20);
    ck_assert_int_eq(relay_ratelimit_take(rl, ip, 4, 5000), 0);
    relay_test_unmap(rl);
}
END_TEST


START_TEST(test_ratelimit_child_dying_with_lock_is_repaired)
{
    struct relay_ratelimit_shm *rl;
    const uint8_t ip[4] = { 198, 51, 100, 7 };
    pid_t pid;
    int status;

    rl = relay_test_table(256);
    ck_assert_int_eq(relay_test_take_n(rl, ip, 4, 0, 5), 5);

    pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        _exit(pthread_mutex_lock(&rl->lock) == 0 ? 0 : 1);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);

    ck_assert_int_eq(relay_test_take_n(rl, ip, 4, 0, 20), 15);
    ck_assert_uint_eq(rl->repairs, 1);
    relay_test_unmap(rl);
}
END_TEST


Suite *
relay_suite_ratelimit(void)
{
    Suite *s;
    TCase *tc;

    s = suite_create("ratelimit");

    tc = tcase_create("buckets");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_ratelimit_size_refuses_bad_arguments);
    tcase_add_test(tc, test_ratelimit_burst_of_20_then_refused);
    tcase_add_test(tc, test_ratelimit_one_token_back_after_6000_ms);
    tcase_add_test(tc, test_ratelimit_partial_refill_carries_over);
    tcase_add_test(tc, test_ratelimit_refill_stops_at_burst);
    tcase_add_test(tc, test_ratelimit_different_ips_are_independent);
    tcase_add_test(tc, test_ratelimit_ipv4_shares_bucket_with_v4_mapped_ipv6);
    tcase_add_test(tc, test_ratelimit_bad_address_length_is_an_error);
    tcase_add_test(tc, test_ratelimit_idle_bucket_forgotten_after_120_s);
    tcase_add_test(tc,
                   test_ratelimit_full_table_evicts_least_recent_not_refuses);
    suite_add_tcase(s, tc);

    tc = tcase_create("processes");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ratelimit_forked_processes_share_one_budget);
    tcase_add_test(tc, test_ratelimit_child_dying_with_lock_is_repaired);
    suite_add_tcase(s, tc);

    return s;
}
