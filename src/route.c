/*
 * route.c: the server-ids a worker owns and the traffic between each
 * binary and its phones.
 *
 * Per server-id: the binary, up to RELAY_PHONES_MAX phones, the grace
 * window after the binary leaves, and the conflict probe run when a second
 * binary claims a live id.  Phone messages are validated as JSON and
 * wrapped; binary envelopes are decoded and delivered, never closing the
 * binary whatever they contain.  Frames are forwarded byte for byte: the
 * only copy is the one wslay makes when a message is queued.
 *
 * Only this worker touches these structs, so there are no locks; the
 * shared registry is updated to publish claim, grace and release.
 */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/conn.h"
#include "relay/envelope.h"
#include "relay/json.h"
#include "relay/log.h"
#include "relay/metrics.h"
#include "relay/registry.h"
#include "relay/route.h"
#include "relay/util.h"
#include "relay/worker.h"

#define RELAY_ROUTE_BUCKETS         16384
#define RELAY_ROUTE_OUTBOX_MAX      (4u << 20)
#define RELAY_ROUTE_INBOX_HIGH      (8u << 20)
#define RELAY_ROUTE_INBOX_LOW       (2u << 20)

static void relay_route_grace_cb(struct ev_loop *loop, ev_timer *t,
                                 int revents);
static void relay_route_probe_cb(struct ev_loop *loop, ev_timer *t,
                                 int revents);
static void relay_route_probe_start(struct relay_server *s);


int
relay_route_init(struct relay_worker *w)
{
    w->nbuckets = RELAY_ROUTE_BUCKETS;
    w->servers = calloc(w->nbuckets, sizeof(*w->servers));
    if (w->servers == NULL) {
        return RELAY_ERROR;
    }

    return RELAY_OK;
}


static size_t
relay_route_hash(const char *id, size_t len)
{
    uint32_t h = 2166136261u;
    size_t i;

    for (i = 0; i < len; i++) {
        h = (h ^ (uint8_t)id[i]) * 16777619u;
    }

    return h;
}


struct relay_server *
relay_route_find(struct relay_worker *w, const char *id, size_t len)
{
    struct relay_server *s;

    s = w->servers[relay_route_hash(id, len) & (w->nbuckets - 1)];
    for (; s != NULL; s = s->hnext) {
        if (s->id_len == len && memcmp(s->id, id, len) == 0) {
            return s;
        }
    }

    return NULL;
}


static struct relay_server *
relay_route_get(struct relay_worker *w, const char *id, size_t len)
{
    struct relay_server *s;
    size_t b;

    s = relay_route_find(w, id, len);
    if (s != NULL) {
        return s;
    }

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->w = w;
    memcpy(s->id, id, len);
    s->id_len = len;
    ev_init(&s->grace, relay_route_grace_cb);
    s->grace.data = s;
    ev_init(&s->probe, relay_route_probe_cb);
    s->probe.data = s;

    b = relay_route_hash(id, len) & (w->nbuckets - 1);
    s->hnext = w->servers[b];
    w->servers[b] = s;
    w->nservers++;

    return s;
}


/* Free s once nothing refers to it any more. */
static void
relay_route_maybe_free(struct relay_server *s)
{
    struct relay_worker *w = s->w;
    struct relay_server **pp;

    if (s->binary != NULL || s->phones != NULL || s->contenders != NULL
        || s->in_grace)
    {
        return;
    }

    pp = &w->servers[relay_route_hash(s->id, s->id_len) & (w->nbuckets - 1)];
    for (; *pp != NULL; pp = &(*pp)->hnext) {
        if (*pp == s) {
            *pp = s->hnext;
            break;
        }
    }
    ev_timer_stop(w->loop, &s->grace);
    ev_timer_stop(w->loop, &s->probe);
    w->nservers--;
    free(s);
}


static void
relay_route_list_add(struct relay_conn **head, struct relay_conn *c)
{
    c->pprev = NULL;
    c->pnext = *head;
    if (*head != NULL) {
        (*head)->pprev = c;
    }
    *head = c;
}


static void
relay_route_list_del(struct relay_conn **head, struct relay_conn *c)
{
    if (c->pprev != NULL) {
        c->pprev->pnext = c->pnext;
    } else if (*head == c) {
        *head = c->pnext;
    }
    if (c->pnext != NULL) {
        c->pnext->pprev = c->pprev;
    }
    c->pnext = c->pprev = NULL;
}


static void
relay_route_conn_id(struct relay_conn *c, const char *kind,
                    struct relay_server *s)
{
    char hex[9];

    if (relay_util_rand_hex8(hex) != RELAY_OK) {
        memcpy(hex, "00000000", 9);
    }
    snprintf(c->conn_id, sizeof(c->conn_id), "%s-%.*s-%s", kind,
             (int)s->id_len, s->id, hex);
}


/* Close every phone of s with code and reason; no notices follow. */
static void
relay_route_close_phones(struct relay_server *s, int code,
                         const char *reason)
{
    struct relay_conn *p;

    while ((p = s->phones) != NULL) {
        relay_route_list_del(&s->phones, p);
        s->nphones--;
        p->server = NULL;
        RELAY_METRIC_SUB(s->w->m, phones, 1);
        relay_log(RELAY_LOG_INFO, "phone_unregistered", "server_id", s->id,
                  "conn_id", p->conn_id, NULL);
        relay_conn_close(p, code, reason, 0);
    }
}


/* Make c the live binary of s. */
static void
relay_route_install_binary(struct relay_server *s, struct relay_conn *c,
                           const char *version)
{
    c->role = RELAY_ROLE_BINARY;
    c->server = s;
    s->binary = c;
    s->epoch++;
    s->paused = 0;
    if (s->in_grace) {
        s->in_grace = 0;
        ev_timer_stop(s->w->loop, &s->grace);
    }
    relay_route_conn_id(c, "server", s);
    RELAY_METRIC_ADD(s->w->m, binaries, 1);
    RELAY_METRIC_ADD(s->w->m, upgrades[RELAY_M_SERVER][RELAY_M_ACCEPT], 1);
    relay_log(RELAY_LOG_INFO, "server_claimed", "server_id", s->id,
              "binary_version", version, "remote", c->remote, NULL);
}


void
relay_route_binary_claimed(struct relay_conn *c, const char *version)
{
    struct relay_worker *w = c->w;
    struct relay_server *s;

    s = relay_route_get(w, c->server_id, c->server_id_len);
    if (s == NULL) {
        relay_registry_release(w->reg, c->server_id, c->server_id_len,
                               w->slot, w->gen);
        relay_conn_close(c, RELAY_CLOSE_INTERNAL, "internal error", 0);
        return;
    }
    if (s->phones != NULL) {
        /* phones left from a gracing id whose registry entry was lost */
        relay_route_close_phones(s, RELAY_CLOSE_NO_SERVER,
                                 "binary reclaimed server-id");
    }
    relay_route_install_binary(s, c, version);
}


void
relay_route_binary_contest(struct relay_conn *c, const char *version)
{
    struct relay_worker *w = c->w;
    struct relay_server *s;

    s = relay_route_get(w, c->server_id, c->server_id_len);
    if (s == NULL) {
        relay_conn_close(c, RELAY_CLOSE_INTERNAL, "internal error", 0);
        return;
    }

    if (s->binary == NULL && s->contenders == NULL) {
        /* grace, or an entry this worker lost track of: reclaim at once */
        relay_route_close_phones(s, RELAY_CLOSE_NO_SERVER,
                                 "binary reclaimed server-id");
        relay_registry_set_state(w->reg, s->id, s->id_len, w->slot, w->gen,
                                 RELAY_REG_CLAIMED);
        relay_route_install_binary(s, c, version);
        return;
    }

    c->role = RELAY_ROLE_CONTENDER;
    c->server = s;
    relay_util_strlcpy(c->version, version, strlen(version),
                       sizeof(c->version));
    relay_route_list_add(&s->contenders, c);
    if (!s->probing) {
        relay_route_probe_start(s);
    }
}


static void
relay_route_probe_start(struct relay_server *s)
{
    struct relay_worker *w = s->w;

    s->probing = 1;
    s->probe_pongs = s->binary->pongs;
    relay_conn_ping(s->binary);
    ev_timer_set(&s->probe, w->cfg->probe_ms / 1000.0, 0.);
    ev_timer_start(w->loop, &s->probe);
}


/* The incumbent answered: every contender is refused. */
static void
relay_route_probe_alive(struct relay_server *s)
{
    struct relay_conn *c;

    s->probing = 0;
    ev_timer_stop(s->w->loop, &s->probe);

    while ((c = s->contenders) != NULL) {
        relay_route_list_del(&s->contenders, c);
        c->server = NULL;
        c->role = RELAY_ROLE_REFUSED;
        RELAY_METRIC_ADD(s->w->m, upgrades[RELAY_M_SERVER][RELAY_M_REJECT_409],
                         1);
        RELAY_METRIC_ADD(s->w->m, register_failures[RELAY_M_SERVER_IN_USE],
                         1);
        relay_log(RELAY_LOG_INFO, "server_id_conflict", "server_id", s->id,
                  "remote", c->remote, NULL);
        relay_conn_close(c, RELAY_CLOSE_CONFLICT, "server-id already claimed",
                         0);
    }
}


/* Give s to its first contender: the incumbent is gone or silent. */
static void
relay_route_promote(struct relay_server *s, int takeover)
{
    struct relay_worker *w = s->w;
    struct relay_conn *c, *old;

    c = s->contenders;
    if (c == NULL) {
        return;
    }
    relay_route_list_del(&s->contenders, c);

    old = s->binary;
    if (old != NULL) {
        s->binary = NULL;
        old->server = NULL;
        old->role = RELAY_ROLE_REFUSED;
        RELAY_METRIC_SUB(w->m, binaries, 1);
        relay_conn_close(old, RELAY_CLOSE_INTERNAL, "heartbeat timeout", 0);
    }
    relay_route_close_phones(s, RELAY_CLOSE_NO_SERVER,
                             "binary reclaimed server-id");
    relay_registry_set_state(w->reg, s->id, s->id_len, w->slot, w->gen,
                             RELAY_REG_CLAIMED);
    if (takeover) {
        relay_log(RELAY_LOG_INFO, "server_id_takeover", "server_id", s->id,
                  "remote", c->remote, NULL);
    }
    relay_route_install_binary(s, c, c->version);

    if (s->contenders != NULL) {
        relay_route_probe_start(s);
    }
}


static void
relay_route_probe_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct relay_server *s = t->data;

    s->probing = 0;
    if (s->binary != NULL && s->binary->pongs != s->probe_pongs) {
        relay_route_probe_alive(s);
    } else {
        relay_route_promote(s, 1);
    }
    if (s->binary != NULL) {
        relay_conn_touch(s->binary);
    }
}


void
relay_route_pong(struct relay_conn *c)
{
    struct relay_server *s = c->server;

    if (c->role == RELAY_ROLE_BINARY && s != NULL && s->probing
        && c->pongs != s->probe_pongs)
    {
        relay_route_probe_alive(s);
    }
}


void
relay_route_phone_attach(struct relay_conn *c, const char *device)
{
    struct relay_worker *w = c->w;
    struct relay_server *s;

    s = relay_route_find(w, c->server_id, c->server_id_len);
    if (s == NULL || (s->binary == NULL && !s->in_grace)) {
        c->role = RELAY_ROLE_REFUSED;
        RELAY_METRIC_ADD(w->m, upgrades[RELAY_M_CLIENT][RELAY_M_REJECT_404],
                         1);
        RELAY_METRIC_ADD(w->m, register_failures[RELAY_M_NO_SERVER], 1);
        relay_log(RELAY_LOG_INFO, "phone_register_no_server", "server_id",
                  c->server_id, "remote", c->remote, NULL);
        relay_conn_close(c, RELAY_CLOSE_NO_SERVER, "no server with that id",
                         0);
        return;
    }
    if (s->nphones >= RELAY_PHONES_MAX) {
        c->role = RELAY_ROLE_REFUSED;
        RELAY_METRIC_ADD(w->m, upgrades[RELAY_M_CLIENT][RELAY_M_REJECT_429],
                         1);
        RELAY_METRIC_ADD(w->m, register_failures[RELAY_M_PHONES_AT_CAP], 1);
        relay_log(RELAY_LOG_INFO, "phone_register_at_cap", "server_id",
                  s->id, "remote", c->remote, NULL);
        relay_conn_close(c, RELAY_CLOSE_PHONE_CAP,
                         "too many phones for server-id", 0);
        return;
    }

    c->role = RELAY_ROLE_PHONE;
    c->server = s;
    c->epoch = s->epoch;
    relay_route_conn_id(c, "client", s);
    relay_route_list_add(&s->phones, c);
    s->nphones++;
    if (s->paused) {
        relay_conn_set_paused(c, 1);
    }
    RELAY_METRIC_ADD(w->m, phones, 1);
    RELAY_METRIC_ADD(w->m, upgrades[RELAY_M_CLIENT][RELAY_M_ACCEPT], 1);
    relay_log(RELAY_LOG_INFO, "phone_registered", "server_id", s->id,
              "conn_id", c->conn_id, "device_name", device, "remote",
              c->remote, NULL);
}


static void
relay_route_set_paused(struct relay_server *s, int paused)
{
    struct relay_conn *p;

    if (s->paused == paused) {
        return;
    }
    s->paused = paused;
    for (p = s->phones; p != NULL; p = p->pnext) {
        relay_conn_set_paused(p, paused);
    }
}


static void
relay_route_from_phone(struct relay_conn *c, const uint8_t *msg, size_t len)
{
    struct relay_worker *w = c->w;
    struct relay_server *s = c->server;
    size_t plen;

    if (relay_json_validate(msg, len) != RELAY_JSON_OK) {
        relay_log(RELAY_LOG_WARN, "phone_forwarder_marshal_err", "server_id",
                  s->id, "conn_id", c->conn_id, "err",
                  "frame is not valid JSON", NULL);
        c->notice_code = RELAY_CLOSE_GOING_AWAY;
        relay_conn_close(c, RELAY_CLOSE_NORMAL, NULL, 0);
        return;
    }
    if (s->binary == NULL) {
        relay_log(RELAY_LOG_INFO, "phone_forwarder_no_binary", "server_id",
                  s->id, "conn_id", c->conn_id, NULL);
        relay_conn_close(c, RELAY_CLOSE_NORMAL, NULL, 0);
        return;
    }

    plen = relay_envelope_wrap_prefix((char *)w->scratch, w->scratch_cap,
                                      c->conn_id);
    if (plen == 0 || plen + len + 1 > w->scratch_cap) {
        c->notice_code = RELAY_CLOSE_GOING_AWAY;
        relay_conn_close(c, RELAY_CLOSE_TOO_BIG, NULL, 0);
        return;
    }
    memcpy(w->scratch + plen, msg, len);
    w->scratch[plen + len] = '}';

    if (relay_conn_send_text(s->binary, w->scratch, plen + len + 1)
        != RELAY_OK)
    {
        return;
    }
    RELAY_METRIC_ADD(w->m, frames_p2b, 1);

    if (relay_conn_queued(s->binary) > RELAY_ROUTE_INBOX_HIGH) {
        relay_route_set_paused(s, 1);
    }
}


/* Queue frame for phone p, closing p if its outbox would overflow. */
static int
relay_route_to_phone(struct relay_conn *p, const uint8_t *frame, size_t len,
                     int overflow_code)
{
    if (p->close_queued) {
        return RELAY_ERROR;
    }
    if (relay_conn_outbox(p) + len + 64 > RELAY_ROUTE_OUTBOX_MAX) {
        relay_log(RELAY_LOG_WARN, "phone_backlog_full", "server_id",
                  p->server != NULL ? p->server->id : "", "conn_id",
                  p->conn_id, NULL);
        p->notice_code = RELAY_CLOSE_GOING_AWAY;
        relay_conn_close(p, overflow_code, overflow_code
                         == RELAY_CLOSE_INTERNAL ? "phone backlog full" : NULL,
                         0);
        return RELAY_ERROR;
    }
    if (relay_conn_send_text(p, frame, len) != RELAY_OK) {
        return RELAY_ERROR;
    }
    RELAY_METRIC_ADD(p->w->m, frames_b2p, 1);

    return RELAY_OK;
}


static void
relay_route_from_binary(struct relay_conn *c, const uint8_t *msg, size_t len)
{
    struct relay_server *s = c->server;
    struct relay_envelope env;
    struct relay_conn *p;
    char code[16];

    switch (relay_envelope_decode(msg, len, &env)) {
    case RELAY_ENV_MALFORMED:
        relay_log(RELAY_LOG_WARN, "binary_forwarder_unmarshal_err",
                  "server_id", s->id, "binary_conn_id", c->conn_id, "err",
                  "malformed routing envelope", NULL);
        return;
    case RELAY_ENV_PUSH_WAKE:
        /* TODO: push wake needs FCM credentials support; dropped meanwhile */
        RELAY_METRIC_ADD(c->w->m, push_wakes_dropped, 1);
        relay_log(RELAY_LOG_WARN, "binary_forwarder_push_wake_dropped",
                  "server_id", s->id, "binary_conn_id", c->conn_id, "err",
                  "push off", NULL);
        return;
    case RELAY_ENV_NO_CONN_ID:
    case RELAY_ENV_NO_FRAME:
        relay_log(RELAY_LOG_DEBUG, "binary_forwarder_dropped", "server_id",
                  s->id, "binary_conn_id", c->conn_id, NULL);
        return;
    default:
        break;
    }

    for (p = s->phones; p != NULL; p = p->pnext) {
        if (strcmp(p->conn_id, env.conn_id) == 0) {
            break;
        }
    }
    if (p == NULL) {
        relay_log(RELAY_LOG_WARN, "binary_forwarder_unknown_conn_id",
                  "server_id", s->id, "conn_id", env.conn_id, NULL);
        return;
    }

    if (env.action == RELAY_ENV_DELIVER) {
        (void)relay_route_to_phone(p, msg + env.frame_off, env.frame_len,
                                   RELAY_CLOSE_INTERNAL);
        return;
    }

    /* close directive: the frame first, then the close, and no notice */
    p->directive_closed = 1;
    if (env.has_frame
        && relay_route_to_phone(p, msg + env.frame_off, env.frame_len,
                                env.close_code) != RELAY_OK)
    {
        return;
    }
    snprintf(code, sizeof(code), "%d", env.close_code);
    relay_log(RELAY_LOG_INFO, "binary_forwarder_phone_closed", "server_id",
              s->id, "conn_id", p->conn_id, "close_code", code, NULL);
    relay_conn_close(p, env.close_code, NULL, 1);
}


void
relay_route_message(struct relay_conn *c, const uint8_t *msg, size_t len)
{
    if (c->close_queued || c->server == NULL) {
        return;
    }
    if (c->role == RELAY_ROLE_PHONE) {
        relay_route_from_phone(c, msg, len);
    } else if (c->role == RELAY_ROLE_BINARY) {
        relay_route_from_binary(c, msg, len);
    }
}


void
relay_route_drained(struct relay_conn *c)
{
    struct relay_server *s = c->server;

    if (c->role == RELAY_ROLE_BINARY && s != NULL && s->paused
        && relay_conn_queued(c) < RELAY_ROUTE_INBOX_LOW)
    {
        relay_route_set_paused(s, 0);
    }
}


static void
relay_route_grace_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct relay_server *s = t->data;
    struct relay_worker *w = s->w;

    s->in_grace = 0;
    relay_registry_release(w->reg, s->id, s->id_len, w->slot, w->gen);
    RELAY_METRIC_ADD(w->m, grace_expiries, 1);
    relay_route_close_phones(s, RELAY_CLOSE_NORMAL, NULL);
    relay_route_maybe_free(s);
}


/* The binary of s is gone: promote a waiting contender, or start grace. */
static void
relay_route_binary_gone(struct relay_server *s, struct relay_conn *c)
{
    struct relay_worker *w = s->w;

    s->binary = NULL;
    RELAY_METRIC_SUB(w->m, binaries, 1);
    relay_route_set_paused(s, 0);
    relay_log(RELAY_LOG_INFO, "server_released", "server_id", s->id, NULL);

    if (s->contenders != NULL) {
        s->probing = 0;
        ev_timer_stop(w->loop, &s->probe);
        relay_route_promote(s, 0);
        return;
    }
    if (w->draining) {
        relay_route_close_phones(s, RELAY_CLOSE_GOING_AWAY, "shutting down");
        relay_registry_release(w->reg, s->id, s->id_len, w->slot, w->gen);
        return;
    }

    relay_registry_set_state(w->reg, s->id, s->id_len, w->slot, w->gen,
                             RELAY_REG_GRACE);
    s->in_grace = 1;
    ev_timer_set(&s->grace, w->cfg->grace_ms / 1000.0, 0.);
    ev_timer_start(w->loop, &s->grace);
}


void
relay_route_detach(struct relay_conn *c)
{
    struct relay_server *s = c->server;
    struct relay_worker *w = c->w;
    char notice[RELAY_CONN_ID_MAX + 48];
    size_t len;
    int code;

    if (s == NULL) {
        return;
    }
    c->server = NULL;

    switch (c->role) {
    case RELAY_ROLE_BINARY:
        if (s->binary == c) {
            relay_route_binary_gone(s, c);
        }
        break;
    case RELAY_ROLE_CONTENDER:
        relay_route_list_del(&s->contenders, c);
        if (s->contenders == NULL && s->probing) {
            s->probing = 0;
            ev_timer_stop(w->loop, &s->probe);
        }
        break;
    case RELAY_ROLE_PHONE:
        relay_route_list_del(&s->phones, c);
        s->nphones--;
        RELAY_METRIC_SUB(w->m, phones, 1);
        relay_log(RELAY_LOG_INFO, "phone_unregistered", "server_id", s->id,
                  "conn_id", c->conn_id, NULL);
        if (c->directive_closed || s->binary == NULL
            || s->binary->close_queued || s->epoch != c->epoch)
        {
            break;
        }
        if (c->notice_code != 0) {
            code = c->notice_code;
        } else if (c->ws != NULL && wslay_event_get_close_received(c->ws)) {
            code = wslay_event_get_status_code_received(c->ws);
        } else {
            code = RELAY_CLOSE_GOING_AWAY;
        }
        len = relay_envelope_close_notice(notice, sizeof(notice), c->conn_id,
                                          code);
        if (len > 0) {
            (void)relay_conn_send_text(s->binary, (const uint8_t *)notice,
                                       len);
        }
        break;
    default:
        break;
    }

    relay_route_maybe_free(s);
}
