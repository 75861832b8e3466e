/*
 * worker.h: one worker process: a libev loop that accepts, parses heads,
 * decides who owns each server-id, hands sockets to their owner, and runs
 * every connection of the server-ids it owns.
 */

#ifndef RELAY_WORKER_H
#define RELAY_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "relay/config.h"
#include "relay/shm.h"

struct relay_conn;
struct relay_server;

#define RELAY_WORKER_NSIGNALS 7

/* What the master hands a worker at fork. */
struct relay_worker_init {
    int slot;
    uint32_t gen;
    const struct relay_config *cfg;
    struct relay_shm *shm;
    int listen_fd;              /* this slot's public listener */
    int metrics_fd;             /* shared metrics listener, or -1 */
    int channel_fd;             /* this slot's handoff receive end */
    const int *channel_send;    /* every slot's handoff send end */
    int master_fd;              /* read end of the master's lifeline */
};

struct relay_worker {
    struct ev_loop *loop;
    int slot;
    uint32_t gen;
    const struct relay_config *cfg;
    struct relay_shm *shm;
    struct relay_registry_shm *reg;
    struct relay_counters_shm *m;
    int listen_fd;
    int metrics_fd;
    int channel_fd;
    const int *channel_send;
    int master_fd;
    ev_io listen_w;
    ev_io metrics_w;
    ev_io channel_w;
    ev_io master_w;
    ev_timer accept_pause;
    ev_timer sweep;
    ev_timer drain;
    ev_prepare settle;
    ev_signal sigs[RELAY_WORKER_NSIGNALS];
    struct relay_conn *conns;           /* every connection */
    size_t nconns;
    struct relay_conn *dirty;
    struct relay_server **servers;      /* hash table of owned ids */
    size_t nbuckets;
    size_t nservers;                    /* entries in servers */
    int draining;                       /* stopping: 1001 to everyone */
    int retiring;                       /* replaced by a reload */
    uint8_t *scratch;                   /* envelope building */
    size_t scratch_cap;
};

/* Run the worker until it stops.  Returns the process exit status. */
int relay_worker_run(const struct relay_worker_init *init);

/*
 * A complete head arrived on c: route it (respond, upgrade locally, or
 * hand it to the owner).
 */
void relay_worker_dispatch(struct relay_conn *c);

#endif
