/*
 * metrics.c: sums the per-worker counter blocks and renders /metrics and
 * /healthz.
 *
 * Reads are relaxed atomic loads: a scrape may see one worker's update a
 * moment before another's, never a torn value.  The series names and
 * labels are those of SPEC.md section 12.1; the relay's own series share
 * the pyrycode_relay_ prefix.  No label ever carries a server-id or an IP.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "relay/metrics.h"
#include "relay/shm.h"

#define RELAY_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)

static const char *const relay_metrics_endpoints[RELAY_M_EP] = {
    "server", "client"
};

static const char *const relay_metrics_outcomes[RELAY_M_OUTCOMES] = {
    "accept", "reject_headers", "reject_409", "reject_404", "reject_429",
    "reject_rate_limit"
};

static const char *const relay_metrics_failures[RELAY_M_FAILURES] = {
    "no_server", "server_in_use", "phones_at_cap", "ratelimit"
};


static void
relay_metrics_add_block(struct relay_counters_shm *out,
                        struct relay_counters_shm *b)
{
    int e, o;

    out->binaries += RELAY_LOAD(&b->binaries);
    out->phones += RELAY_LOAD(&b->phones);
    out->conns += RELAY_LOAD(&b->conns);
    out->queued_bytes += RELAY_LOAD(&b->queued_bytes);
    out->frames_p2b += RELAY_LOAD(&b->frames_p2b);
    out->frames_b2p += RELAY_LOAD(&b->frames_b2p);
    out->grace_expiries += RELAY_LOAD(&b->grace_expiries);
    for (e = 0; e < RELAY_M_EP; e++) {
        for (o = 0; o < RELAY_M_OUTCOMES; o++) {
            out->upgrades[e][o] += RELAY_LOAD(&b->upgrades[e][o]);
        }
    }
    for (o = 0; o < RELAY_M_FAILURES; o++) {
        out->register_failures[o] += RELAY_LOAD(&b->register_failures[o]);
    }
    out->push_wakes_dropped += RELAY_LOAD(&b->push_wakes_dropped);
    out->handoffs_sent += RELAY_LOAD(&b->handoffs_sent);
    out->handoffs_received += RELAY_LOAD(&b->handoffs_received);
    out->handoff_failures += RELAY_LOAD(&b->handoff_failures);
    out->bytes_in += RELAY_LOAD(&b->bytes_in);
    out->bytes_out += RELAY_LOAD(&b->bytes_out);
    out->conn_cap_rejects += RELAY_LOAD(&b->conn_cap_rejects);
    out->registry_full += RELAY_LOAD(&b->registry_full);
}


void
relay_metrics_sum(struct relay_shm *shm, struct relay_counters_shm *out)
{
    uint32_t i;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < RELAY_WORKERS_MAX; i++) {
        relay_metrics_add_block(out, &shm->counters[i]);
    }
    relay_metrics_add_block(out, &shm->counters[RELAY_SHM_RETIRED]);
}


void
relay_metrics_retire(struct relay_shm *shm, int slot)
{
    struct relay_counters_shm *b, *r;
    uint64_t conns;

    b = &shm->counters[slot];
    r = &shm->counters[RELAY_SHM_RETIRED];
    conns = RELAY_LOAD(&b->conns);

    /* gauges die with the worker; counters live on in the retired block */
    b->binaries = 0;
    b->phones = 0;
    b->conns = 0;
    b->queued_bytes = 0;
    relay_metrics_add_block(r, b);
    memset(b, 0, sizeof(*b));

    __atomic_sub_fetch(&shm->conns_total, conns, __ATOMIC_RELAXED);
}


struct relay_metrics_buf {
    char *p;
    size_t cap;
    size_t len;
    int overflow;
};


static void
relay_metrics_printf(struct relay_metrics_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->overflow) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len) {
        b->overflow = 1;
        return;
    }
    b->len += (size_t)n;
}


static void
relay_metrics_head(struct relay_metrics_buf *b, const char *name,
                   const char *type, const char *help)
{
    relay_metrics_printf(b, "# HELP pyrycode_relay_%s %s\n", name, help);
    relay_metrics_printf(b, "# TYPE pyrycode_relay_%s %s\n", name, type);
}


static void
relay_metrics_one(struct relay_metrics_buf *b, const char *name,
                  const char *type, const char *help, uint64_t v)
{
    relay_metrics_head(b, name, type, help);
    relay_metrics_printf(b, "pyrycode_relay_%s %llu\n", name,
                         (unsigned long long)v);
}


size_t
relay_metrics_render(struct relay_shm *shm, char *out, size_t cap)
{
    struct relay_metrics_buf b = { out, cap, 0, 0 };
    struct relay_counters_shm s;
    uint64_t restarts = 0;
    uint32_t i;
    int e, o;

    relay_metrics_sum(shm, &s);
    for (i = 0; i < RELAY_WORKERS_MAX; i++) {
        restarts += RELAY_LOAD(&shm->workers[i].restarts);
    }

    relay_metrics_one(&b, "connected_binaries", "gauge",
                      "Held server-ids whose binary is connected.",
                      s.binaries);
    relay_metrics_one(&b, "connected_phones", "gauge",
                      "Attached phones.", s.phones);

    relay_metrics_head(&b, "frames_forwarded_total", "counter",
                       "Frames forwarded, by direction.");
    relay_metrics_printf(&b, "pyrycode_relay_frames_forwarded_total"
                         "{direction=\"phone_to_binary\"} %llu\n",
                         (unsigned long long)s.frames_p2b);
    relay_metrics_printf(&b, "pyrycode_relay_frames_forwarded_total"
                         "{direction=\"binary_to_phone\"} %llu\n",
                         (unsigned long long)s.frames_b2p);

    relay_metrics_one(&b, "grace_expiries_total", "counter",
                      "Grace windows that expired unclaimed.",
                      s.grace_expiries);

    relay_metrics_head(&b, "ws_upgrade_attempts_total", "counter",
                       "WebSocket upgrade attempts, by endpoint and "
                       "outcome.");
    for (e = 0; e < RELAY_M_EP; e++) {
        for (o = 0; o < RELAY_M_OUTCOMES; o++) {
            relay_metrics_printf(&b, "pyrycode_relay_ws_upgrade_attempts_"
                                 "total{endpoint=\"%s\",outcome=\"%s\"} "
                                 "%llu\n", relay_metrics_endpoints[e],
                                 relay_metrics_outcomes[o],
                                 (unsigned long long)s.upgrades[e][o]);
        }
    }

    relay_metrics_head(&b, "register_failures_total", "counter",
                       "Registrations refused, by kind.");
    for (o = 0; o < RELAY_M_FAILURES; o++) {
        relay_metrics_printf(&b, "pyrycode_relay_register_failures_total"
                             "{kind=\"%s\"} %llu\n",
                             relay_metrics_failures[o],
                             (unsigned long long)s.register_failures[o]);
    }

    relay_metrics_one(&b, "connections", "gauge",
                      "Live WebSocket connections.", s.conns);
    relay_metrics_one(&b, "queued_bytes", "gauge",
                      "Bytes queued for writing to peers.", s.queued_bytes);
    relay_metrics_one(&b, "worker_restarts_total", "counter",
                      "Workers respawned after dying.", restarts);
    relay_metrics_one(&b, "handoffs_total", "counter",
                      "Sockets handed to the worker owning their "
                      "server-id.", s.handoffs_sent);
    relay_metrics_one(&b, "handoff_failures_total", "counter",
                      "Handoffs that failed.", s.handoff_failures);
    relay_metrics_one(&b, "push_wakes_dropped_total", "counter",
                      "Push wake requests dropped (push is off in this "
                      "build).", s.push_wakes_dropped);
    relay_metrics_head(&b, "bytes_total", "counter",
                       "WebSocket payload bytes, by direction.");
    relay_metrics_printf(&b, "pyrycode_relay_bytes_total{direction=\"in\"} "
                         "%llu\n", (unsigned long long)s.bytes_in);
    relay_metrics_printf(&b, "pyrycode_relay_bytes_total{direction=\"out\"} "
                         "%llu\n", (unsigned long long)s.bytes_out);
    relay_metrics_one(&b, "conn_cap_rejects_total", "counter",
                      "Upgrades refused with 503 at the connection cap.",
                      s.conn_cap_rejects);
    relay_metrics_one(&b, "registry_full_total", "counter",
                      "Claims refused because the registry was full.",
                      s.registry_full);
    relay_metrics_one(&b, "lock_repairs_total", "counter",
                      "Shared locks repaired after their holder died.",
                      __atomic_load_n(&relay_shm_registry(shm)->repairs,
                                      __ATOMIC_RELAXED)
                      + __atomic_load_n(&relay_shm_ratelimit(shm)->repairs,
                                        __ATOMIC_RELAXED));

    return b.overflow ? 0 : b.len;
}


size_t
relay_metrics_healthz(struct relay_shm *shm, char *out, size_t cap)
{
    struct relay_counters_shm s;
    uint64_t now;
    int n;

    relay_metrics_sum(shm, &s);
    now = (uint64_t)time(NULL);

    n = snprintf(out, cap, "{\"status\":\"ok\",\"version\":\"%s\","
                 "\"connected_binaries\":%llu,\"connected_phones\":%llu,"
                 "\"uptime_seconds\":%llu}", PACKAGE_VERSION,
                 (unsigned long long)s.binaries,
                 (unsigned long long)s.phones,
                 (unsigned long long)(now >= shm->started_realtime
                                      ? now - shm->started_realtime : 0));
    if (n < 0 || (size_t)n >= cap) {
        return 0;
    }

    return (size_t)n;
}
