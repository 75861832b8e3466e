/*
 * metrics.h: the relay's counters and gauges, and the two documents built
 * from them: /metrics (Prometheus text format 0.0.4) and /healthz (JSON).
 *
 * Each worker slot has one cache-line-aligned block of counters in shared
 * memory, written only by that worker with relaxed atomic adds.  Whoever
 * serves /metrics or /healthz sums every block.  When a worker dies the
 * master folds its counters into the "retired" block and zeroes its
 * gauges, so totals never go backwards and gauges never count the dead.
 */

#ifndef RELAY_METRICS_H
#define RELAY_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum relay_endpoint_label { RELAY_M_SERVER = 0, RELAY_M_CLIENT, RELAY_M_EP };

enum relay_upgrade_outcome {
    RELAY_M_ACCEPT = 0,
    RELAY_M_REJECT_HEADERS,
    RELAY_M_REJECT_409,
    RELAY_M_REJECT_404,
    RELAY_M_REJECT_429,
    RELAY_M_REJECT_RATE_LIMIT,
    RELAY_M_OUTCOMES
};

enum relay_register_failure {
    RELAY_M_NO_SERVER = 0,
    RELAY_M_SERVER_IN_USE,
    RELAY_M_PHONES_AT_CAP,
    RELAY_M_RATELIMIT,
    RELAY_M_FAILURES
};

struct relay_counters_shm {
    /* gauges: current values, owned by the worker */
    uint64_t binaries;          /* held slots with a live binary */
    uint64_t phones;            /* attached phones */
    uint64_t conns;             /* live WebSocket connections */
    uint64_t queued_bytes;      /* bytes queued for writing */
    /* counters */
    uint64_t frames_p2b;
    uint64_t frames_b2p;
    uint64_t grace_expiries;
    uint64_t upgrades[RELAY_M_EP][RELAY_M_OUTCOMES];
    uint64_t register_failures[RELAY_M_FAILURES];
    uint64_t push_wakes_dropped;
    uint64_t handoffs_sent;
    uint64_t handoffs_received;
    uint64_t handoff_failures;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t conn_cap_rejects;
    uint64_t registry_full;
} __attribute__((aligned(64)));

#define RELAY_METRIC_ADD(blk, field, n) \
    ((void)__atomic_fetch_add(&(blk)->field, (uint64_t)(n), \
                              __ATOMIC_RELAXED))
#define RELAY_METRIC_SUB(blk, field, n) \
    ((void)__atomic_fetch_sub(&(blk)->field, (uint64_t)(n), \
                              __ATOMIC_RELAXED))

struct relay_shm;

/* Sum every block of shm into *out. */
void relay_metrics_sum(struct relay_shm *shm, struct relay_counters_shm *out);

/*
 * Write the /metrics document into out.  Returns its length, or 0 if cap
 * is too small.
 */
size_t relay_metrics_render(struct relay_shm *shm, char *out, size_t cap);

/*
 * Write the /healthz body into out (no newline).  Returns its length, or
 * 0 if cap is too small.
 */
size_t relay_metrics_healthz(struct relay_shm *shm, char *out, size_t cap);

/*
 * Master only, after reaping the worker in slot: add its counters to the
 * retired block, subtract its live connections from the global count and
 * zero the block for the next worker in that slot.
 */
void relay_metrics_retire(struct relay_shm *shm, int slot);

#endif
