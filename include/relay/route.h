/*
 * route.h: the server-ids this worker owns, and the routing between each
 * binary and its phones.
 *
 * A worker-local table maps server-id to struct relay_server: the binary,
 * the attached phones, the grace timer, the conflict probe.  Everything
 * here runs in one thread; the shared registry is consulted only to
 * publish what this worker decided (claim, grace, release).
 */

#ifndef RELAY_ROUTE_H
#define RELAY_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "relay/common.h"

struct relay_worker;
struct relay_conn;

struct relay_server {
    struct relay_worker *w;
    struct relay_server *hnext;
    char id[RELAY_SERVER_ID_MAX + 1];
    size_t id_len;
    struct relay_conn *binary;          /* NULL during grace */
    struct relay_conn *phones;
    int nphones;
    struct relay_conn *contenders;      /* binaries awaiting the probe */
    uint64_t epoch;                     /* bumped for every new binary */
    int in_grace;
    ev_timer grace;
    int probing;
    uint64_t probe_pongs;               /* incumbent's pongs at probe start */
    ev_timer probe;
    int paused;                         /* phones paused: binary is full */
};

/* Create the worker's server table.  Returns RELAY_OK or RELAY_ERROR. */
int relay_route_init(struct relay_worker *w);

/* Find the server this worker runs for id, or NULL. */
struct relay_server *relay_route_find(struct relay_worker *w, const char *id,
                                      size_t len);

/*
 * c (upgraded, role NONE) is a binary whose claim this worker just won in
 * the registry: it becomes the holder.
 */
void relay_route_binary_claimed(struct relay_conn *c, const char *version);

/*
 * c (upgraded) is a binary for an id this worker already owns: reclaim it
 * from grace, or contest a live holder with the probe.
 */
void relay_route_binary_contest(struct relay_conn *c, const char *version);

/* c (upgraded) is a phone for an id this worker owns: attach or refuse. */
void relay_route_phone_attach(struct relay_conn *c, const char *device);

/* A complete data message arrived on c. */
void relay_route_message(struct relay_conn *c, const uint8_t *msg,
                         size_t len);

/* A pong arrived on c. */
void relay_route_pong(struct relay_conn *c);

/* c's write queue shrank: lift backpressure if it fell low enough. */
void relay_route_drained(struct relay_conn *c);

/* c is being freed: detach it from its server and send notices. */
void relay_route_detach(struct relay_conn *c);

#endif
