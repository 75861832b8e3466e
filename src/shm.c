/*
 * shm.c: creates the shared mapping and the global connection count.
 *
 * The master calls relay_shm_create() once, before the first fork; every
 * worker inherits the mapping.  The connection count is a lock-free
 * counter: workers reserve a place before sending a 101 and give it back
 * when the WebSocket ends; the master gives back a dead worker's places.
 */

#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "relay/common.h"
#include "relay/shm.h"

#define RELAY_SHM_RATE_BUCKETS 65536


static size_t
relay_shm_align(size_t n)
{
    return (n + 63) & ~(size_t)63;
}


struct relay_shm *
relay_shm_create(uint32_t nworkers, uint32_t max_ids, int64_t max_connections)
{
    struct relay_shm *shm;
    size_t reg_off, rl_off, total;
    void *p;

    if (nworkers == 0 || nworkers > RELAY_WORKERS_MAX) {
        errno = EINVAL;
        return NULL;
    }

    reg_off = relay_shm_align(sizeof(struct relay_shm));
    rl_off = relay_shm_align(reg_off + relay_registry_size(max_ids));
    total = rl_off + relay_ratelimit_size(RELAY_SHM_RATE_BUCKETS);

    p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
             -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    shm = p;

    shm->magic = RELAY_SHM_MAGIC;
    shm->version = RELAY_SHM_VERSION;
    shm->nworkers = nworkers;
    shm->max_connections = max_connections;
    shm->started_realtime = (uint64_t)time(NULL);
    shm->registry_off = reg_off;
    shm->ratelimit_off = rl_off;
    shm->size = total;

    if (relay_registry_init(relay_shm_registry(shm), max_ids) != RELAY_OK) {
        goto failed;
    }
    if (relay_ratelimit_init(relay_shm_ratelimit(shm), RELAY_SHM_RATE_BUCKETS,
                             20, 6000, 120000) != RELAY_OK) {
        goto failed;
    }

    return shm;

failed:
    munmap(p, total);
    return NULL;
}


int
relay_shm_conn_reserve(struct relay_shm *shm)
{
    uint64_t now;

    now = __atomic_add_fetch(&shm->conns_total, 1, __ATOMIC_RELAXED);
    if ((int64_t)now > shm->max_connections) {
        __atomic_sub_fetch(&shm->conns_total, 1, __ATOMIC_RELAXED);
        return 0;
    }

    return 1;
}


void
relay_shm_conn_release(struct relay_shm *shm)
{
    __atomic_sub_fetch(&shm->conns_total, 1, __ATOMIC_RELAXED);
}
