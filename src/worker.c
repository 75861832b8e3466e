/*
 * worker.c: a worker process: its libev loop, accepting, the decision on
 * each request head, and handing sockets to the worker that owns their
 * server-id.
 *
 * The loop is created after fork (libev's rule: a loop does not survive
 * fork).  Every connection of a server-id lives in the worker recorded as
 * its owner in the shared registry; a request for an id owned elsewhere
 * is passed on with SCM_RIGHTS together with the bytes already read, and
 * forgotten here.  Upgrades, refusals and routing for owned ids happen in
 * conn.c and route.c.
 */

#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay/channel.h"
#include "relay/conn.h"
#include "relay/http.h"
#include "relay/log.h"
#include "relay/metrics.h"
#include "relay/net.h"
#include "relay/route.h"
#include "relay/util.h"
#include "relay/worker.h"

#define RELAY_WORKER_ACCEPT_BATCH   64
#define RELAY_WORKER_MAX_HOPS       4
#define RELAY_WORKER_SCRATCH        (RELAY_MSG_MAX + 1024)
#define RELAY_WORKER_METRICS_MAX    65536

/* TERM/INT drain, QUIT stops, USR1 reopens logs, WINCH retires (after a
 * reload), USR2 is a test hook; HUP is the master's and is ignored here */
static const int relay_worker_signals[RELAY_WORKER_NSIGNALS] = {
    SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGHUP, SIGWINCH, SIGUSR2
};


static void
relay_worker_settle_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    struct relay_worker *w = p->data;

    relay_conn_settle_all(w);

    /* a retired worker also waits out its grace windows */
    if ((w->draining && w->nconns == 0)
        || (w->retiring && w->nconns == 0 && w->nservers == 0))
    {
        ev_break(loop, EVBREAK_ALL);
    }
}


static void
relay_worker_sweep_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    relay_conn_sweep_all(t->data);
}


static void
relay_worker_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct relay_worker *w = io->data;
    int metrics = (io == &w->metrics_w);
    int i, fd, one = 1;

    for (i = 0; i < RELAY_WORKER_ACCEPT_BATCH; i++) {
        fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS
                || errno == ENOMEM)
            {
                /* out of descriptors: wait instead of spinning on accept */
                relay_log(RELAY_LOG_WARN, "accept_paused", "err",
                          strerror(errno), NULL);
                ev_io_stop(loop, &w->listen_w);
                if (w->metrics_fd != -1) {
                    ev_io_stop(loop, &w->metrics_w);
                }
                /* a fired one-shot timer keeps a zero delay: set it anew */
                ev_timer_set(&w->accept_pause, 0.5, 0.);
                ev_timer_start(loop, &w->accept_pause);
            }
            return;
        }
        /* frames are written whole, one send per wakeup: no Nagle delay */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (relay_conn_new(w, fd, metrics) == NULL) {
            close(fd);
        }
    }
}


static void
relay_worker_resume_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct relay_worker *w = t->data;

    if (w->draining || w->retiring) {
        return;
    }
    ev_io_start(loop, &w->listen_w);
    if (w->metrics_fd != -1) {
        ev_io_start(loop, &w->metrics_w);
    }
}


static void
relay_worker_channel_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct relay_worker *w = io->data;
    char buf[RELAY_CHANNEL_DATA_MAX];
    uint32_t hops;
    size_t len;
    int fd, rc, i;

    for (i = 0; i < RELAY_WORKER_ACCEPT_BATCH; i++) {
        rc = relay_channel_recv(io->fd, &fd, &hops, buf, sizeof(buf), &len);
        if (rc == 0) {
            return;
        }
        if (rc == -1) {
            relay_log(RELAY_LOG_ERR, "handoff_recv_failed", "err",
                      strerror(errno), NULL);
            return;
        }
        RELAY_METRIC_ADD(w->m, handoffs_received, 1);
        if (relay_conn_adopt(w, fd, hops, buf, len) == NULL) {
            close(fd);
        }
    }
}


static void
relay_worker_drain(struct relay_worker *w)
{
    struct relay_conn *c;

    if (w->draining) {
        return;
    }
    w->draining = 1;
    relay_log(RELAY_LOG_NOTICE, "worker_draining", NULL);

    ev_io_stop(w->loop, &w->listen_w);
    ev_io_stop(w->loop, &w->metrics_w);
    ev_io_stop(w->loop, &w->master_w);
    ev_timer_stop(w->loop, &w->accept_pause);
    ev_timer_stop(w->loop, &w->drain);

    for (c = w->conns; c != NULL; c = c->next) {
        if (c->state == RELAY_CONN_WS) {
            relay_conn_close(c, RELAY_CLOSE_GOING_AWAY, "shutting down", 0);
        } else if (c->state == RELAY_CONN_HEAD) {
            relay_conn_close(c, 0, NULL, 0);
        }
    }

    ev_timer_set(&w->drain, w->cfg->drain_ms / 1000.0, 0.);
    ev_timer_start(w->loop, &w->drain);
}


static void
relay_worker_drain_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct relay_worker *w = t->data;

    if (!w->draining) {
        /* a retired worker's connections outlived the reload deadline */
        relay_worker_drain(w);
        return;
    }
    ev_break(loop, EVBREAK_ALL);
}


/*
 * After a reload: stop accepting (the new generation shares the same
 * listening sockets) but keep serving every connection and every handoff
 * for the server-ids this worker owns, until they end or the deadline.
 */
static void
relay_worker_retire(struct relay_worker *w)
{
    if (w->retiring || w->draining) {
        return;
    }
    w->retiring = 1;
    relay_log(RELAY_LOG_NOTICE, "worker_retiring", NULL);

    ev_io_stop(w->loop, &w->listen_w);
    ev_io_stop(w->loop, &w->metrics_w);
    ev_timer_stop(w->loop, &w->accept_pause);

    ev_timer_set(&w->drain, w->cfg->reload_drain_ms / 1000.0, 0.);
    ev_timer_start(w->loop, &w->drain);
}


/*
 * Test hook, only with PYRYCODE_RELAY_TEST_HOOKS=1 in the environment:
 * SIGUSR2 makes the worker take the registry lock, start an update and
 * hang, so that a test can kill it there and watch the others repair the
 * lock.  Without the variable SIGUSR2 is ignored.
 */
static void
relay_worker_test_hold_lock(struct relay_worker *w)
{
    const char *v = getenv("PYRYCODE_RELAY_TEST_HOOKS");

    if (v == NULL || strcmp(v, "1") != 0) {
        return;
    }
    relay_log(RELAY_LOG_ALERT, "test_hold_lock", NULL);
    if (relay_registry_test_hold_lock(w->reg, "test-hold-lock", 14)
        != RELAY_REG_OK)
    {
        return;
    }
    for (;;) {
        pause();
    }
}


static void
relay_worker_signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    struct relay_worker *w = s->data;

    switch (s->signum) {
    case SIGTERM:
    case SIGINT:
        relay_worker_drain(w);
        break;
    case SIGQUIT:
        _exit(0);
    case SIGWINCH:
        relay_worker_retire(w);
        break;
    case SIGUSR2:
        relay_worker_test_hold_lock(w);
        break;
    case SIGUSR1:
        if (relay_log_reopen() == -1) {
            relay_log(RELAY_LOG_ERR, "log_reopen_failed", "err",
                      strerror(errno), NULL);
        }
        break;
    default:
        break;
    }
}


static void
relay_worker_master_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct relay_worker *w = io->data;
    char b[16];
    ssize_t n;

    n = read(io->fd, b, sizeof(b));
    if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
        /* the master is gone: nobody would respawn or reap us */
        relay_log(RELAY_LOG_ALERT, "master_lost", NULL);
        relay_worker_drain(w);
    }
}


/* ------------------------------------------------------------------ */
/* request dispatch */

static void
relay_worker_error(struct relay_conn *c, int status, const char *extra,
                   const char *body)
{
    char resp[512];
    size_t len;

    len = relay_http_error_response(resp, sizeof(resp), status, extra, body);
    if (len == 0) {
        relay_conn_close(c, 0, NULL, 0);
        return;
    }
    relay_conn_respond(c, resp, len);
}


static void
relay_worker_ok(struct relay_conn *c, const char *ctype, const char *body,
                size_t blen, int head_only)
{
    struct relay_worker *w = c->w;
    size_t len;

    len = relay_http_ok_response((char *)w->scratch, w->scratch_cap, ctype,
                                 body, blen, head_only);
    if (len == 0) {
        relay_worker_error(c, 500, NULL, "internal error");
        return;
    }
    relay_conn_respond(c, (const char *)w->scratch, len);
}


static void
relay_worker_healthz(struct relay_conn *c, int head_only)
{
    char body[512];
    size_t len;

    len = relay_metrics_healthz(c->w->shm, body, sizeof(body));
    relay_worker_ok(c, "application/json; charset=utf-8", body, len,
                    head_only);
}


static void
relay_worker_metrics(struct relay_conn *c, int head_only)
{
    char *body;
    size_t len;

    body = malloc(RELAY_WORKER_METRICS_MAX);
    if (body == NULL) {
        relay_worker_error(c, 500, NULL, "internal error");
        return;
    }
    len = relay_metrics_render(c->w->shm, body, RELAY_WORKER_METRICS_MAX);
    relay_worker_ok(c, "text/plain; version=0.0.4; charset=utf-8", body, len,
                    head_only);
    free(body);
}


/*
 * The client IP the rate limit charges: the TCP peer, or with
 * --trust-x-forwarded-for the left-most entry of X-Forwarded-For.
 */
static int
relay_worker_client_ip(struct relay_conn *c,
                       const struct relay_http_request *req,
                       unsigned char raw[16])
{
    const char *v;
    size_t len, end;
    int n;

    if (c->w->cfg->trust_xff && req->hdr[RELAY_HDR_XFF].present) {
        v = c->in + req->hdr[RELAY_HDR_XFF].value.off;
        len = req->hdr[RELAY_HDR_XFF].value.len;
        for (end = 0; end < len && v[end] != ','; end++) {
        }
        while (end > 0 && (v[end - 1] == ' ' || v[end - 1] == '\t')) {
            end--;
        }
        n = relay_net_parse_ip(v, end, raw);
        if (n > 0) {
            relay_util_strlcpy(c->remote, v, end, sizeof(c->remote));
            return n;
        }
    }
    if (c->remote_raw_len <= 0) {
        return -1;
    }
    memcpy(raw, c->remote_raw, (size_t)c->remote_raw_len);

    return c->remote_raw_len;
}


/* Reserve a connection place and send the 101.  Returns RELAY_OK. */
static int
relay_worker_upgrade(struct relay_conn *c, const struct relay_http_request *req,
                     int epi)
{
    char accept[29];

    if (!relay_shm_conn_reserve(c->w->shm)) {
        relay_log(RELAY_LOG_WARN, "conn_cap_reached", "remote", c->remote,
                  NULL);
        RELAY_METRIC_ADD(c->w->m, conn_cap_rejects, 1);
        relay_worker_error(c, 503, NULL, "connection limit reached");
        return RELAY_ERROR;
    }
    c->reserved = 1;
    RELAY_METRIC_ADD(c->w->m, conns, 1);

    if (relay_http_ws_accept(c->in + req->hdr[RELAY_HDR_WS_KEY].value.off,
                             req->hdr[RELAY_HDR_WS_KEY].value.len, accept)
        != 0)
    {
        relay_worker_error(c, 500, NULL, "internal error");
        return RELAY_ERROR;
    }
    c->in_pos = req->head_len;

    return relay_conn_upgrade(c, accept);
}


/* Pass c to the worker in slot owner.  c is gone afterwards. */
static void
relay_worker_handoff(struct relay_conn *c, int owner)
{
    struct relay_worker *w = c->w;
    char slot[16];

    if (c->hops >= RELAY_WORKER_MAX_HOPS
        || relay_channel_send(w->channel_send[owner], c->fd, c->hops + 1,
                              w->slot, c->in, c->in_len) == -1)
    {
        snprintf(slot, sizeof(slot), "%d", owner);
        relay_log(RELAY_LOG_ERR, "handoff_failed", "worker", slot, "err",
                  c->hops >= RELAY_WORKER_MAX_HOPS ? "too many hops"
                  : strerror(errno), "remote", c->remote, NULL);
        RELAY_METRIC_ADD(w->m, handoff_failures, 1);
        relay_worker_error(c, 503, NULL, "service unavailable");
        return;
    }

    RELAY_METRIC_ADD(w->m, handoffs_sent, 1);
    relay_conn_close(c, 0, NULL, 0);
}


/* The device name as logged: at most 64 bytes, control bytes as '?'. */
static void
relay_worker_device_name(char out[65], const char *v, size_t len)
{
    size_t i;

    if (len > 64) {
        len = 64;
    }
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];

        out[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    out[len] = '\0';
}


static void
relay_worker_ws_request(struct relay_conn *c,
                        const struct relay_http_request *req, int ep)
{
    struct relay_worker *w = c->w;
    struct relay_http_verdict v;
    struct relay_registry_view view;
    unsigned char raw[16];
    char version[128], device[65];
    const char *id;
    size_t id_len;
    int epi, n, rc;

    epi = (ep == RELAY_EP_SERVER) ? RELAY_M_SERVER : RELAY_M_CLIENT;

    if (w->draining) {
        relay_worker_error(c, 503, NULL, "shutting down");
        return;
    }

    /* only the accepting worker charges and caps: a handoff already was */
    n = relay_worker_client_ip(c, req, raw);
    if (c->hops == 0) {
        if (n > 0
            && relay_ratelimit_take(relay_shm_ratelimit(w->shm), raw,
                                    (size_t)n, relay_util_now_ms()) == 0)
        {
            relay_log(RELAY_LOG_INFO, "rate_limited", "remote", c->remote,
                      NULL);
            RELAY_METRIC_ADD(w->m, upgrades[epi][RELAY_M_REJECT_RATE_LIMIT],
                             1);
            RELAY_METRIC_ADD(w->m, register_failures[RELAY_M_RATELIMIT], 1);
            relay_worker_error(c, 429, NULL, "too many requests");
            return;
        }
        if ((int64_t)__atomic_load_n(&w->shm->conns_total, __ATOMIC_RELAXED)
            >= w->shm->max_connections)
        {
            relay_log(RELAY_LOG_WARN, "conn_cap_reached", "remote",
                      c->remote, NULL);
            RELAY_METRIC_ADD(w->m, conn_cap_rejects, 1);
            relay_worker_error(c, 503, NULL, "connection limit reached");
            return;
        }
    }

    relay_http_check_upgrade(c->in, req, ep, &v);
    if (v.status != 0) {
        relay_log(RELAY_LOG_INFO, "upgrade_rejected", "path",
                  ep == RELAY_EP_SERVER ? "/v1/server" : "/v1/client",
                  "err", v.reason, "remote", c->remote, NULL);
        RELAY_METRIC_ADD(w->m, upgrades[epi][RELAY_M_REJECT_HEADERS], 1);
        relay_worker_error(c, v.status, v.extra_header, v.reason);
        return;
    }

    id = c->in + req->hdr[RELAY_HDR_SERVER].value.off;
    id_len = req->hdr[RELAY_HDR_SERVER].value.len;
    c->server_id_len = relay_util_strlcpy(c->server_id, id, id_len,
                                          sizeof(c->server_id));

    if (ep == RELAY_EP_SERVER) {
        relay_util_strlcpy(version, c->in
                           + req->hdr[RELAY_HDR_VERSION].value.off,
                           req->hdr[RELAY_HDR_VERSION].value.len,
                           sizeof(version));
        rc = relay_registry_claim(w->reg, id, id_len, w->slot, w->gen,
                                  &view);
        if (rc == RELAY_REG_CLAIMED_NEW) {
            if (relay_worker_upgrade(c, req, epi) != RELAY_OK) {
                relay_registry_release(w->reg, c->server_id,
                                       c->server_id_len, w->slot, w->gen);
                return;
            }
            relay_route_binary_claimed(c, version);
            return;
        }
        if (rc == RELAY_REG_HELD) {
            if (view.owner_slot != w->slot) {
                relay_worker_handoff(c, view.owner_slot);
                return;
            }
            if (relay_worker_upgrade(c, req, epi) == RELAY_OK) {
                relay_route_binary_contest(c, version);
            }
            return;
        }
        relay_log(RELAY_LOG_ERR, "registry_full", "remote", c->remote,
                  "err", rc == RELAY_REG_FULL ? "registry full"
                  : "registry lock failed", NULL);
        RELAY_METRIC_ADD(w->m, registry_full, 1);
        relay_worker_error(c, 503, NULL, "service unavailable");
        return;
    }

    device[0] = '\0';
    if (req->hdr[RELAY_HDR_DEVICE_NAME].present) {
        relay_worker_device_name(device, c->in
                                 + req->hdr[RELAY_HDR_DEVICE_NAME].value.off,
                                 req->hdr[RELAY_HDR_DEVICE_NAME].value.len);
    }
    rc = relay_registry_lookup(w->reg, id, id_len, &view);
    if (rc == RELAY_REG_OK && view.owner_slot != w->slot) {
        relay_worker_handoff(c, view.owner_slot);
        return;
    }
    if (relay_worker_upgrade(c, req, epi) != RELAY_OK) {
        return;
    }
    relay_route_phone_attach(c, device);
}


void
relay_worker_dispatch(struct relay_conn *c)
{
    struct relay_http_request req;
    int rc, ep;

    rc = relay_http_parse(c->in, c->in_len, &req);
    if (rc == RELAY_HTTP_AGAIN) {
        return;
    }
    if (rc == RELAY_HTTP_TOO_LARGE) {
        relay_log(RELAY_LOG_INFO, "head_too_large", "remote", c->remote,
                  NULL);
        relay_worker_error(c, 431, NULL, "request header fields too large");
        return;
    }
    if (rc != RELAY_HTTP_OK) {
        relay_log(RELAY_LOG_INFO, "bad_request", "remote", c->remote, NULL);
        relay_worker_error(c, 400, NULL, "bad request");
        return;
    }

    ep = relay_http_endpoint(c->in, &req);
    if (c->metrics_listener) {
        if (ep == RELAY_EP_METRICS) {
            relay_worker_metrics(c, req.method == RELAY_HTTP_HEAD);
        } else {
            relay_worker_error(c, 404, NULL, "not found");
        }
        return;
    }

    switch (ep) {
    case RELAY_EP_HEALTHZ:
        relay_worker_healthz(c, req.method == RELAY_HTTP_HEAD);
        break;
    case RELAY_EP_SERVER:
    case RELAY_EP_CLIENT:
        relay_worker_ws_request(c, &req, ep);
        break;
    default:
        relay_worker_error(c, 404, NULL, "not found");
        break;
    }
}


/* ------------------------------------------------------------------ */

int
relay_worker_run(const struct relay_worker_init *init)
{
    struct relay_worker w;
    sigset_t none;
    int i;

    memset(&w, 0, sizeof(w));
    w.slot = init->slot;
    w.gen = init->gen;
    w.cfg = init->cfg;
    w.shm = init->shm;
    w.reg = relay_shm_registry(init->shm);
    w.m = &init->shm->counters[init->slot];
    w.listen_fd = init->listen_fd;
    w.metrics_fd = init->metrics_fd;
    w.channel_fd = init->channel_fd;
    w.channel_send = init->channel_send;
    w.master_fd = init->master_fd;

    relay_log_set_worker(init->slot);

    w.loop = ev_default_loop(EVFLAG_AUTO);
    if (w.loop == NULL) {
        relay_log(RELAY_LOG_ALERT, "worker_init_failed", "err",
                  "ev_default_loop", NULL);
        return 2;
    }
    w.scratch_cap = RELAY_WORKER_SCRATCH;
    w.scratch = malloc(w.scratch_cap);
    if (w.scratch == NULL || relay_route_init(&w) != RELAY_OK) {
        relay_log(RELAY_LOG_ALERT, "worker_init_failed", "err",
                  "out of memory", NULL);
        return 2;
    }

    ev_io_init(&w.listen_w, relay_worker_accept_cb, w.listen_fd, EV_READ);
    w.listen_w.data = &w;
    ev_io_start(w.loop, &w.listen_w);
    if (w.metrics_fd != -1) {
        ev_io_init(&w.metrics_w, relay_worker_accept_cb, w.metrics_fd,
                   EV_READ);
        w.metrics_w.data = &w;
        ev_io_start(w.loop, &w.metrics_w);
    }
    ev_io_init(&w.channel_w, relay_worker_channel_cb, w.channel_fd, EV_READ);
    w.channel_w.data = &w;
    ev_io_start(w.loop, &w.channel_w);
    ev_io_init(&w.master_w, relay_worker_master_cb, w.master_fd, EV_READ);
    w.master_w.data = &w;
    ev_io_start(w.loop, &w.master_w);

    ev_timer_init(&w.accept_pause, relay_worker_resume_cb, 0.5, 0.);
    w.accept_pause.data = &w;
    ev_timer_init(&w.sweep, relay_worker_sweep_cb, 0.5, 0.5);
    w.sweep.data = &w;
    ev_timer_start(w.loop, &w.sweep);
    ev_timer_init(&w.drain, relay_worker_drain_cb, 10., 0.);
    w.drain.data = &w;
    ev_prepare_init(&w.settle, relay_worker_settle_cb);
    w.settle.data = &w;
    ev_prepare_start(w.loop, &w.settle);

    for (i = 0; i < RELAY_WORKER_NSIGNALS; i++) {
        ev_signal_init(&w.sigs[i], relay_worker_signal_cb,
                       relay_worker_signals[i]);
        w.sigs[i].data = &w;
        ev_signal_start(w.loop, &w.sigs[i]);
    }

    /* the master forked us with signals blocked; the handlers are ready */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    relay_log(RELAY_LOG_NOTICE, "worker_started", NULL);

    ev_run(w.loop, 0);

    relay_log(RELAY_LOG_NOTICE, "worker_exiting", NULL);
    return 0;
}
