/*
 * ws_echo.c: a test-only echo server built on the relay's connection
 * layer (conn.c with its wslay callbacks, deadlines and frame watcher), so
 * that an RFC 6455 conformance probe can exercise exactly the code the
 * relay runs, without the routing on top.
 *
 * It links the relay's library but defines the few routing and dispatch
 * functions conn.c calls, so route.c and worker.c are not linked in: every
 * upgrade on any path is accepted and every message is echoed with its
 * opcode.  Usage: ws_echo PORT (listens on 127.0.0.1).  Not installed.
 */

#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay/config.h"
#include "relay/conn.h"
#include "relay/http.h"
#include "relay/net.h"
#include "relay/route.h"
#include "relay/util.h"
#include "relay/worker.h"

static struct relay_counters_shm relay_echo_counters;


void
relay_worker_dispatch(struct relay_conn *c)
{
    struct relay_http_request req;
    char accept[29], resp[256];
    size_t len;
    int rc;

    rc = relay_http_parse(c->in, c->in_len, &req);
    if (rc == RELAY_HTTP_AGAIN) {
        return;
    }
    if (rc != RELAY_HTTP_OK || !req.hdr[RELAY_HDR_WS_KEY].present
        || relay_http_ws_accept(c->in + req.hdr[RELAY_HDR_WS_KEY].value.off,
                                req.hdr[RELAY_HDR_WS_KEY].value.len, accept)
           != 0)
    {
        len = relay_http_error_response(resp, sizeof(resp), 400, NULL,
                                        "bad request");
        relay_conn_respond(c, resp, len);
        return;
    }
    c->in_pos = req.head_len;
    if (relay_conn_upgrade(c, accept) == RELAY_OK) {
        c->role = RELAY_ROLE_REFUSED;
    }
}


void
relay_route_message(struct relay_conn *c, const uint8_t *msg, size_t len)
{
    struct wslay_event_msg m;

    m.opcode = (uint8_t)c->last_opcode;
    m.msg = msg;
    m.msg_length = len;
    (void)wslay_event_queue_msg(c->ws, &m);
}


void
relay_route_pong(struct relay_conn *c)
{
}


void
relay_route_drained(struct relay_conn *c)
{
}


void
relay_route_detach(struct relay_conn *c)
{
}


static void
relay_echo_settle_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    relay_conn_settle_all(p->data);
}


static void
relay_echo_sweep_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    relay_conn_sweep_all(t->data);
}


static void
relay_echo_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct relay_worker *w = io->data;
    int fd;

    while ((fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC))
           != -1)
    {
        if (relay_conn_new(w, fd, 0) == NULL) {
            close(fd);
        }
    }
}


int
main(int argc, char **argv)
{
    static struct relay_config cfg;
    static struct relay_worker w;
    struct relay_addr addr;
    char spec[64], err[256];
    ev_io lw;
    ev_prepare settle;
    ev_timer sweep;
    int fd;

    if (argc != 2) {
        fprintf(stderr, "usage: ws_echo PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    relay_config_defaults(&cfg);
    snprintf(spec, sizeof(spec), "127.0.0.1:%s", argv[1]);
    if (relay_config_parse_addr(spec, &addr, err, sizeof(err)) != 0) {
        fprintf(stderr, "ws_echo: %s\n", err);
        return 2;
    }
    fd = relay_net_listen(&addr, 0, 128);
    if (fd == -1) {
        perror("ws_echo: listen");
        return 1;
    }

    w.loop = ev_default_loop(0);
    w.cfg = &cfg;
    w.m = &relay_echo_counters;
    ev_io_init(&lw, relay_echo_accept_cb, fd, EV_READ);
    lw.data = &w;
    ev_io_start(w.loop, &lw);
    ev_prepare_init(&settle, relay_echo_settle_cb);
    settle.data = &w;
    ev_prepare_start(w.loop, &settle);
    ev_timer_init(&sweep, relay_echo_sweep_cb, 0.5, 0.5);
    sweep.data = &w;
    ev_timer_start(w.loop, &sweep);

    printf("ready\n");
    fflush(stdout);
    ev_run(w.loop, 0);

    return 0;
}
