/*
 * shm.h: the one shared mapping the master lays out before forking.
 *
 * Anonymous MAP_SHARED memory, so it is inherited by every worker and
 * vanishes with the last process.  It holds flat structs with fixed-width
 * fields; the registry and rate-limit tables are found by offset, never by
 * pointer, so every process sees the same layout whatever its address.
 */

#ifndef RELAY_SHM_H
#define RELAY_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "relay/metrics.h"
#include "relay/ratelimit.h"
#include "relay/registry.h"

#define RELAY_SHM_MAGIC     0x72656c79u     /* "rely" */
#define RELAY_SHM_VERSION   1
#define RELAY_WORKERS_MAX   64

struct relay_worker_shm {
    int32_t pid;                /* 0 when not running */
    uint32_t gen;               /* bumped at every (re)spawn */
    uint64_t started_ms;        /* monotonic */
    uint64_t restarts;
};

struct relay_shm {
    uint32_t magic;
    uint32_t version;
    uint32_t nworkers;
    uint32_t pad;
    int64_t max_connections;
    uint64_t conns_total;               /* atomic: live WS connections */
    uint64_t started_realtime;          /* seconds since the epoch */
    uint64_t registry_off;
    uint64_t ratelimit_off;
    uint64_t size;
    struct relay_worker_shm workers[RELAY_WORKERS_MAX];
    /* one block per slot, then the retired block */
    struct relay_counters_shm counters[RELAY_WORKERS_MAX + 1];
};

#define RELAY_SHM_RETIRED RELAY_WORKERS_MAX

/*
 * Map and lay out the shared memory for nworkers, a registry of max_ids
 * and the rate-limit table.  Returns the mapping, or NULL with errno set.
 */
struct relay_shm *relay_shm_create(uint32_t nworkers, uint32_t max_ids,
                                   int64_t max_connections);

static inline struct relay_registry_shm *
relay_shm_registry(struct relay_shm *shm)
{
    return (struct relay_registry_shm *)((char *)shm + shm->registry_off);
}

static inline struct relay_ratelimit_shm *
relay_shm_ratelimit(struct relay_shm *shm)
{
    return (struct relay_ratelimit_shm *)((char *)shm + shm->ratelimit_off);
}

/*
 * Reserve one live-connection place against the global cap.  Returns 1 if
 * reserved, 0 if the cap is reached.  relay_shm_conn_release gives it back.
 */
int relay_shm_conn_reserve(struct relay_shm *shm);
void relay_shm_conn_release(struct relay_shm *shm);

#endif
