/*
 * conn.c: one client socket over libev: head, HTTP response, WebSocket.
 *
 * wslay does the framing; this file feeds it bytes, writes what it
 * produces and enforces what wslay does not: the deadlines of SPEC.md
 * sections 2, 7 and 9, and the RFC 6455 header rules wslay would answer
 * with an empty close frame instead of 1002 (control frames that are
 * fragmented or longer than 125 bytes, non-minimal lengths).  A small
 * watcher follows the frame headers of the incoming stream for that.
 *
 * Nothing here decides routing: complete messages and pongs go to
 * route.c, complete heads to worker.c.
 */

#include "config.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay/channel.h"
#include "relay/conn.h"
#include "relay/http.h"
#include "relay/json.h"
#include "relay/log.h"
#include "relay/net.h"
#include "relay/route.h"
#include "relay/shm.h"
#include "relay/util.h"
#include "relay/worker.h"

#define RELAY_CONN_IN_CAP       RELAY_CHANNEL_DATA_MAX
#define RELAY_CONN_HEAD_MS      5000
#define RELAY_CONN_MSG_MS       30000
#define RELAY_CONN_STALL_MS     10000
#define RELAY_CONN_LINGER_MS    5000
#define RELAY_CONN_DRAIN_MS     2000
#define RELAY_CONN_CHARGE       64
#define RELAY_CONN_PARK_MS      2000
#define RELAY_CONN_STAGE        65536

static void relay_conn_io_cb(struct ev_loop *loop, ev_io *io, int revents);
static void relay_conn_hb_cb(struct ev_loop *loop, ev_timer *t, int revents);


static struct relay_conn *
relay_conn_alloc(struct relay_worker *w, int fd)
{
    struct relay_conn *c;

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->in = malloc(RELAY_CONN_IN_CAP);
    if (c->in == NULL) {
        free(c);
        return NULL;
    }

    c->w = w;
    c->fd = fd;
    c->state = RELAY_CONN_HEAD;
    c->deadline_ms = relay_util_now_ms() + RELAY_CONN_HEAD_MS;
    c->remote_raw_len = relay_net_peer(fd, c->remote,
                                              sizeof(c->remote),
                                              c->remote_raw);

    ev_io_init(&c->io, relay_conn_io_cb, fd, EV_READ);
    c->io.data = c;
    ev_init(&c->hb, relay_conn_hb_cb);
    c->hb.data = c;
    ev_io_start(w->loop, &c->io);

    c->next = w->conns;
    if (w->conns != NULL) {
        w->conns->prev = c;
    }
    w->conns = c;
    w->nconns++;

    return c;
}


struct relay_conn *
relay_conn_new(struct relay_worker *w, int fd, int metrics_listener)
{
    struct relay_conn *c;

    c = relay_conn_alloc(w, fd);
    if (c == NULL) {
        return NULL;
    }
    c->metrics_listener = metrics_listener;

    return c;
}


struct relay_conn *
relay_conn_adopt(struct relay_worker *w, int fd, uint32_t hops,
                 const char *data, size_t len)
{
    struct relay_conn *c;

    if (len > RELAY_CONN_IN_CAP) {
        return NULL;
    }
    c = relay_conn_alloc(w, fd);
    if (c == NULL) {
        return NULL;
    }
    c->hops = hops;
    memcpy(c->in, data, len);
    c->in_len = len;

    /* the head is already complete: dispatch it on this settle */
    relay_worker_dispatch(c);
    relay_conn_touch(c);

    return c;
}


void
relay_conn_touch(struct relay_conn *c)
{
    if (c->dirty) {
        return;
    }
    c->dirty = 1;
    c->dirty_next = c->w->dirty;
    c->w->dirty = c;
}


void
relay_conn_respond(struct relay_conn *c, const char *resp, size_t len)
{
    free(c->out);
    c->out = malloc(len);
    if (c->out == NULL) {
        c->state = RELAY_CONN_DEAD;
        relay_conn_touch(c);
        return;
    }
    memcpy(c->out, resp, len);
    c->out_len = len;
    c->out_pos = 0;
    c->state = RELAY_CONN_RESPOND;
    c->deadline_ms = relay_util_now_ms() + RELAY_CONN_STALL_MS;
    relay_conn_touch(c);
}


/* ------------------------------------------------------------------ */
/* frame watcher */

/*
 * Follow frame headers in the bytes handed to wslay.  Returns how many of
 * buf[0..len) may be handed over: all of them, or the bytes before a
 * header that breaks a rule wslay would not answer with 1002, or before
 * the next message while wslay has not delivered the previous one.
 *
 * It also takes over wslay's UTF-8 check of text messages, which walks
 * every byte through a state machine and was a third of the relay's
 * instructions per message: a text message's first frame is handed to
 * wslay marked binary, and relay_conn_ws_msg() checks the whole message
 * word by word.  Holding the next message back until the previous one is
 * delivered keeps "was it text" one flag instead of a queue.
 */
static size_t
relay_conn_watch(struct relay_conn *c, uint8_t *buf, size_t len)
{
    struct relay_frame_watch *fw = &c->watch;
    size_t i = 0, frame_start = 0;
    uint8_t op0;

    while (i < len) {
        if (fw->left > 0) {
            size_t take = len - i;

            if ((uint64_t)take > fw->left) {
                take = (size_t)fw->left;
            }
            fw->left -= take;
            i += take;
            continue;
        }

        if (fw->hlen == 0) {
            frame_start = i;
            op0 = buf[i] & 0x0f;
            if (op0 != 0 && (op0 & 0x08) == 0 && !fw->in_msg) {
                if (fw->undelivered) {
                    return frame_start;
                }
                fw->text = (op0 == WSLAY_TEXT_FRAME);
                if (fw->text) {
                    buf[i] = (uint8_t)((buf[i] & 0xf0) | WSLAY_BINARY_FRAME);
                }
            }
        }
        fw->hdr[fw->hlen++] = buf[i++];
        if (fw->hlen == 2) {
            uint8_t plen = fw->hdr[1] & 0x7f;

            fw->need = 2 + (plen == 126 ? 2 : plen == 127 ? 8 : 0)
                       + ((fw->hdr[1] & 0x80) ? 4 : 0);
        }
        if (fw->hlen < 2 || fw->hlen < fw->need) {
            continue;
        }

        {
            uint8_t fin = fw->hdr[0] & 0x80;
            uint8_t op = fw->hdr[0] & 0x0f;
            uint8_t plen = fw->hdr[1] & 0x7f;
            uint64_t n = plen;
            int j;

            if (plen == 126) {
                n = ((uint64_t)fw->hdr[2] << 8) | fw->hdr[3];
                if (n < 126) {
                    fw->bad = 1;
                }
            } else if (plen == 127) {
                n = 0;
                for (j = 0; j < 8; j++) {
                    n = (n << 8) | fw->hdr[2 + j];
                }
                if (n < 65536 || (n >> 63) != 0) {
                    fw->bad = 1;
                }
            }
            /* a close payload is empty or holds at least a status code */
            if ((op & 0x08) != 0 && (!fin || plen > 125)) {
                fw->bad = 1;
            }
            if (op == 0x08 && plen == 1) {
                fw->bad = 1;
            }
            if (fw->bad) {
                return frame_start;
            }

            if ((op & 0x08) == 0) {
                if (!fw->in_msg) {
                    fw->msg_len = 0;
                    if (c->msg_started_ms == 0) {
                        c->msg_started_ms = relay_util_now_ms();
                    }
                }
                /*
                 * wslay checks the size only once payload bytes arrive;
                 * a peer that declares a huge length and stops would hold
                 * the connection, so the declared length decides here.
                 */
                fw->msg_len += n;
                if (n > RELAY_MSG_MAX || fw->msg_len > RELAY_MSG_MAX) {
                    fw->too_big = 1;
                    return frame_start;
                }
                fw->in_msg = !fin;
                fw->undelivered = (fin != 0);
            }
            fw->left = n;
            fw->hlen = 0;
            fw->need = 0;
            if (n == 0 && !fw->in_msg && (op & 0x08) == 0) {
                c->msg_started_ms = 0;
            }
        }
    }

    return len;
}


/* The head buffer is large; an open connection must not keep it. */
static void
relay_conn_drop_input(struct relay_conn *c)
{
    if (c->in != NULL && c->in_pos >= c->in_len) {
        free(c->in);
        c->in = NULL;
        c->in_len = c->in_pos = 0;
    }
}


/* ------------------------------------------------------------------ */
/* wslay callbacks: they only move bytes and record what happened */

/*
 * wslay asks for at most 4 KiB at a time and calls again until a read
 * would block, so reading straight into its buffer costs a recv() per
 * 4 KiB plus one that finds the socket empty.  Reads go through this
 * buffer instead: up to 64 KiB per recv(), and a short read ends the
 * burst.  It belongs to one connection for one wslay_event_recv() call;
 * relay_conn_read_done() keeps what wslay did not take.
 */
static uint8_t relay_conn_rd[RELAY_CONN_STAGE];
static size_t relay_conn_rd_pos;
static size_t relay_conn_rd_len;
static int relay_conn_rd_short;
static struct relay_conn *relay_conn_rd_owner;


/* End of a read burst on c: bytes wslay left go to c->in for next time. */
static void
relay_conn_read_done(struct relay_conn *c)
{
    size_t rest;

    if (relay_conn_rd_owner != c) {
        return;
    }
    relay_conn_rd_owner = NULL;
    rest = relay_conn_rd_len - relay_conn_rd_pos;
    if (rest == 0 || c->watch.bad || c->watch.too_big || c->eof) {
        return;
    }

    /* only a pause stops wslay early; c->in is empty then (served first) */
    c->in = malloc(rest);
    if (c->in == NULL) {
        c->eof = 1;
        return;
    }
    memcpy(c->in, relay_conn_rd + relay_conn_rd_pos, rest);
    c->in_len = rest;
    c->in_pos = 0;
}


static ssize_t
relay_conn_ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                   int flags, void *user)
{
    struct relay_conn *c = user;
    const uint8_t *src;
    size_t avail, n, ok;
    ssize_t got;
    int from_in = 0;

    /* paused by backpressure: stop mid-burst, not when the socket is dry */
    if (c->watch.bad || c->watch.too_big || c->watch.bad_utf8 || c->paused) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }

    if (c->in_pos < c->in_len) {
        src = (const uint8_t *)c->in + c->in_pos;
        avail = c->in_len - c->in_pos;
        from_in = 1;
    } else if (relay_conn_rd_owner == c
               && relay_conn_rd_pos < relay_conn_rd_len)
    {
        src = relay_conn_rd + relay_conn_rd_pos;
        avail = relay_conn_rd_len - relay_conn_rd_pos;
    } else if (relay_conn_rd_owner == c && relay_conn_rd_short) {
        /* the last read came up short: the socket is dry, spare a recv */
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    } else {
        got = recv(c->fd, relay_conn_rd, sizeof(relay_conn_rd), 0);
        if (got == 0) {
            c->eof = 1;
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            return -1;
        }
        if (got == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
            } else {
                c->eof = 1;
                wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            }
            return -1;
        }
        relay_conn_rd_owner = c;
        relay_conn_rd_len = (size_t)got;
        relay_conn_rd_pos = 0;
        relay_conn_rd_short = ((size_t)got < sizeof(relay_conn_rd));
        src = relay_conn_rd;
        avail = (size_t)got;
    }

    /* only what the watcher lets through is consumed; the rest waits */
    n = len < avail ? len : avail;
    memcpy(buf, src, n);
    ok = relay_conn_watch(c, buf, n);
    if (from_in) {
        c->in_pos += ok;
        relay_conn_drop_input(c);
    } else {
        relay_conn_rd_pos += ok;
    }
    if (ok == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }

    RELAY_METRIC_ADD(c->w->m, bytes_in, ok);
    c->active_ms = (uint64_t)(ev_now(c->w->loop) * 1000);

    return (ssize_t)ok;
}


/*
 * wslay hands over each frame in two or more pieces (header, payload), so
 * writing them as they come costs several syscalls per message.  They are
 * staged here instead and written with one send() per connection per
 * settle; see relay_conn_ws_write().
 */
static uint8_t relay_conn_stage[RELAY_CONN_STAGE];
static size_t relay_conn_staged;


static ssize_t
relay_conn_ws_send(wslay_event_context_ptr ctx, const uint8_t *data,
                   size_t len, int flags, void *user)
{
    size_t room = sizeof(relay_conn_stage) - relay_conn_staged;

    if (room == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > room) {
        len = room;
    }
    memcpy(relay_conn_stage + relay_conn_staged, data, len);
    relay_conn_staged += len;

    return (ssize_t)len;
}


static void
relay_conn_ws_msg(wslay_event_context_ptr ctx,
                  const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    struct relay_conn *c = user;

    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME:
        /* wslay saw every message as binary: see relay_conn_watch() */
        c->msg_started_ms = 0;
        c->watch.undelivered = 0;
        c->last_opcode = c->watch.text ? WSLAY_TEXT_FRAME
                                       : WSLAY_BINARY_FRAME;
        if (c->watch.text && !relay_json_utf8_valid(arg->msg,
                                                     arg->msg_length))
        {
            c->watch.bad_utf8 = 1;
            break;
        }
        relay_route_message(c, arg->msg, arg->msg_length);
        break;
    case WSLAY_PONG:
        c->pongs++;
        if (c->hb_waiting) {
            c->hb_waiting = 0;
            ev_timer_stop(c->w->loop, &c->hb);
            ev_timer_set(&c->hb, c->w->cfg->ping_interval_ms / 1000.0, 0.);
            ev_timer_start(c->w->loop, &c->hb);
        }
        relay_route_pong(c);
        break;
    default:
        break;
    }
    relay_conn_touch(c);
}


static const struct wslay_event_callbacks relay_conn_ws_callbacks = {
    relay_conn_ws_recv,
    relay_conn_ws_send,
    NULL,
    NULL,
    NULL,
    NULL,
    relay_conn_ws_msg
};


/*
 * An idle WebSocket has no wslay context: it is parked between frames
 * with nothing queued, where wslay holds no state worth keeping, and made
 * again on the next byte in or out.  This keeps an idle connection to
 * about the size of struct relay_conn instead of wslay's ~9 KiB.
 */
static int
relay_conn_ws_ready(struct relay_conn *c)
{
    if (c->ws != NULL) {
        return RELAY_OK;
    }
    if (c->state != RELAY_CONN_WS) {
        return RELAY_ERROR;
    }
    if (wslay_event_context_server_init(&c->ws, &relay_conn_ws_callbacks, c)
        != 0)
    {
        c->ws = NULL;
        return RELAY_ERROR;
    }
    wslay_event_config_set_max_recv_msg_length(c->ws, RELAY_MSG_MAX);

    return RELAY_OK;
}


static int
relay_conn_park(struct relay_conn *c, uint64_t now)
{
    const struct relay_frame_watch *fw = &c->watch;

    if (c->ws == NULL || c->close_queued || c->in != NULL
        || c->out_pos < c->out_len || now - c->active_ms < RELAY_CONN_PARK_MS
        || fw->hlen != 0 || fw->left != 0 || fw->in_msg
        || wslay_event_get_queued_msg_count(c->ws) != 0
        || wslay_event_want_write(c->ws)
        || wslay_event_get_close_sent(c->ws)
        || wslay_event_get_close_received(c->ws)
        || !wslay_event_get_read_enabled(c->ws))
    {
        return 0;
    }
    wslay_event_context_free(c->ws);
    c->ws = NULL;

    return 1;
}


int
relay_conn_upgrade(struct relay_conn *c, const char accept[29])
{
    char resp[256];
    size_t len;

    len = relay_http_switching_response(resp, sizeof(resp), accept);
    if (len == 0) {
        goto failed;
    }
    c->out = malloc(len);
    if (c->out == NULL) {
        goto failed;
    }
    memcpy(c->out, resp, len);
    c->out_len = len;
    c->out_pos = 0;

    c->state = RELAY_CONN_WS;
    if (relay_conn_ws_ready(c) != RELAY_OK) {
        goto failed;
    }

    /* bytes after the head were pipelined frames: wslay reads them first */
    c->in_pos = c->in_pos > c->in_len ? c->in_len : c->in_pos;
    relay_conn_drop_input(c);
    c->state = RELAY_CONN_WS;
    c->progress_ms = relay_util_now_ms();
    c->active_ms = c->progress_ms;
    c->deadline_ms = 0;

    ev_timer_set(&c->hb, c->w->cfg->ping_interval_ms / 1000.0, 0.);
    ev_timer_start(c->w->loop, &c->hb);
    relay_conn_touch(c);

    return RELAY_OK;

failed:
    c->state = RELAY_CONN_DEAD;
    relay_conn_touch(c);
    return RELAY_ERROR;
}


int
relay_conn_send_text(struct relay_conn *c, const uint8_t *data, size_t len)
{
    struct wslay_event_msg msg;

    if (c->state != RELAY_CONN_WS || c->close_queued
        || relay_conn_ws_ready(c) != RELAY_OK)
    {
        return RELAY_ERROR;
    }

    msg.opcode = WSLAY_TEXT_FRAME;
    msg.msg = data;
    msg.msg_length = len;
    if (wslay_event_queue_msg(c->ws, &msg) != 0) {
        return RELAY_ERROR;
    }
    relay_conn_touch(c);

    return RELAY_OK;
}


void
relay_conn_ping(struct relay_conn *c)
{
    static const uint8_t payload[] = "pyrycode-relay";
    struct wslay_event_msg msg;

    if (c->state != RELAY_CONN_WS || c->close_queued
        || relay_conn_ws_ready(c) != RELAY_OK)
    {
        return;
    }
    msg.opcode = WSLAY_PING;
    msg.msg = payload;
    msg.msg_length = sizeof(payload) - 1;
    (void)wslay_event_queue_msg(c->ws, &msg);
    relay_conn_touch(c);
}


static int
relay_conn_code_on_wire(int code)
{
    if (code < 1000 || code > 4999) {
        return 0;
    }
    if (code == 1004 || code == 1006 || code == 1015) {
        return 0;
    }
    if (code >= 1016 && code <= 2999) {
        return 0;
    }

    return 1;
}


void
relay_conn_close(struct relay_conn *c, int code, const char *reason,
                 int after_data)
{
    if (c->close_queued || c->state == RELAY_CONN_DEAD) {
        return;
    }
    c->close_queued = 1;
    relay_conn_touch(c);

    if (code == 0 || c->state != RELAY_CONN_WS) {
        c->state = RELAY_CONN_DEAD;
        return;
    }

    c->close_code = code;
    if (reason != NULL) {
        relay_util_strlcpy(c->close_reason, reason, strlen(reason),
                           sizeof(c->close_reason));
    }
    if (code != RELAY_CLOSE_NO_STATUS && !relay_conn_code_on_wire(code)) {
        c->close_abort = 1;
    }
    c->close_after_data = after_data;
}


size_t
relay_conn_queued(struct relay_conn *c)
{
    if (c->ws == NULL) {
        return 0;
    }

    return wslay_event_get_queued_msg_length(c->ws);
}


size_t
relay_conn_outbox(struct relay_conn *c)
{
    if (c->ws == NULL) {
        return 0;
    }

    return wslay_event_get_queued_msg_length(c->ws)
           + RELAY_CONN_CHARGE * wslay_event_get_queued_msg_count(c->ws);
}


void
relay_conn_set_paused(struct relay_conn *c, int paused)
{
    if (c->paused == paused) {
        return;
    }
    c->paused = paused;
    relay_conn_touch(c);
}


/* ------------------------------------------------------------------ */
/* the loop side: I/O, settle, free */

static void
relay_conn_read_head(struct relay_conn *c)
{
    ssize_t n;

    if (c->in_len >= RELAY_CONN_IN_CAP) {
        return;
    }
    n = recv(c->fd, c->in + c->in_len, RELAY_CONN_IN_CAP - c->in_len, 0);
    if (n == 0) {
        c->state = RELAY_CONN_DEAD;
        return;
    }
    if (n == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            c->state = RELAY_CONN_DEAD;
        }
        return;
    }
    c->in_len += (size_t)n;

    relay_worker_dispatch(c);
}


static void
relay_conn_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct relay_conn *c = io->data;

    if (c->state == RELAY_CONN_HEAD && (revents & EV_READ)) {
        relay_conn_read_head(c);
    } else if (c->state == RELAY_CONN_WS && (revents & EV_READ)
               && c->out_pos == c->out_len)
    {
        /* an error here has already queued wslay's close: settle sends it */
        if (relay_conn_ws_ready(c) == RELAY_OK) {
            (void)wslay_event_recv(c->ws);
            relay_conn_read_done(c);
        } else {
            c->state = RELAY_CONN_DEAD;
        }
    } else if ((c->state == RELAY_CONN_RESPOND
                || c->state == RELAY_CONN_LINGER) && (revents & EV_READ)) {
        char sink[4096];
        ssize_t n;

        /* the answer is decided; what the client still sends is moot */
        n = recv(c->fd, sink, sizeof(sink), 0);
        if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
            c->eof = 1;
        }
    }
    relay_conn_touch(c);
}


static void
relay_conn_hb_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct relay_conn *c = t->data;

    if (c->state != RELAY_CONN_WS || c->close_queued) {
        return;
    }
    if (c->hb_waiting) {
        relay_log(RELAY_LOG_INFO, "heartbeat_timeout", "conn_id",
                  c->conn_id, "remote", c->remote, NULL);
        relay_conn_close(c, RELAY_CLOSE_INTERNAL, "heartbeat timeout", 0);
        return;
    }
    c->hb_waiting = 1;
    relay_conn_ping(c);
    ev_timer_set(&c->hb, c->w->cfg->ping_timeout_ms / 1000.0, 0.);
    ev_timer_start(loop, &c->hb);
}


static void
relay_conn_free(struct relay_conn *c)
{
    struct relay_worker *w = c->w;

    relay_route_detach(c);

    ev_io_stop(w->loop, &c->io);
    ev_timer_stop(w->loop, &c->hb);
    if (c->fd != -1) {
        close(c->fd);
    }
    if (c->ws != NULL) {
        wslay_event_context_free(c->ws);
    }
    if (c->queued_reported != 0) {
        RELAY_METRIC_SUB(w->m, queued_bytes, c->queued_reported);
    }
    if (c->reserved) {
        relay_shm_conn_release(w->shm);
        RELAY_METRIC_SUB(w->m, conns, 1);
    }
    if (c->dirty) {
        struct relay_conn **pp;

        /* freed while queued for another settle: unlink it first */
        for (pp = &w->dirty; *pp != NULL; pp = &(*pp)->dirty_next) {
            if (*pp == c) {
                *pp = c->dirty_next;
                break;
            }
        }
    }

    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        w->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    w->nconns--;

    free(c->in);
    free(c->out);
    free(c);
}


/* Watch c's socket for events ev (0: not at all). */
static void
relay_conn_set_io(struct relay_conn *c, int ev)
{
    if (ev == 0) {
        ev_io_stop(c->w->loop, &c->io);
        return;
    }
    if ((c->io.events & (EV_READ | EV_WRITE)) != ev
        || !ev_is_active(&c->io))
    {
        ev_io_stop(c->w->loop, &c->io);
        ev_io_set(&c->io, c->fd, ev);
        ev_io_start(c->w->loop, &c->io);
    }
}


/*
 * Our last bytes are out: stop writing, but keep reading and discarding
 * for a moment.  Closing with unread input would send a reset that can
 * destroy the close frame or error response before the peer reads it.
 */
static void
relay_conn_linger(struct relay_conn *c)
{
    relay_route_detach(c);
    if (c->ws != NULL) {
        wslay_event_context_free(c->ws);
        c->ws = NULL;
    }
    shutdown(c->fd, SHUT_WR);
    c->state = RELAY_CONN_LINGER;
    c->deadline_ms = relay_util_now_ms() + RELAY_CONN_DRAIN_MS;
    relay_conn_set_io(c, EV_READ);
}


/* Write pending raw bytes.  Returns 1 when they are all out. */
static int
relay_conn_flush_raw(struct relay_conn *c)
{
    ssize_t n;

    while (c->out_pos < c->out_len) {
        n = send(c->fd, c->out + c->out_pos, c->out_len - c->out_pos,
                 MSG_NOSIGNAL);
        if (n == -1) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                c->eof = 1;
            }
            return 0;
        }
        c->out_pos += (size_t)n;
        c->progress_ms = relay_util_now_ms();
    }
    if (c->out != NULL) {
        free(c->out);
        c->out = NULL;
        c->out_len = c->out_pos = 0;
    }

    return 1;
}


/*
 * Write the staged bytes of c.  What the socket does not take is kept in
 * c->out, written before anything else next time.  Returns 1 if all went
 * out, 0 otherwise (c->eof is set if the socket failed).
 */
static int
relay_conn_flush_staged(struct relay_conn *c)
{
    size_t len = relay_conn_staged;
    ssize_t n;

    relay_conn_staged = 0;
    if (len == 0) {
        return 1;
    }

    n = send(c->fd, relay_conn_stage, len, MSG_NOSIGNAL);
    if (n == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            c->eof = 1;
            return 0;
        }
        n = 0;
    }
    if (n > 0) {
        c->progress_ms = relay_util_now_ms();
        c->active_ms = c->progress_ms;
        RELAY_METRIC_ADD(c->w->m, bytes_out, n);
    }
    if ((size_t)n == len) {
        return 1;
    }

    c->out = malloc(len - (size_t)n);
    if (c->out == NULL) {
        c->eof = 1;
        return 0;
    }
    memcpy(c->out, relay_conn_stage + n, len - (size_t)n);
    c->out_len = len - (size_t)n;
    c->out_pos = 0;

    return 0;
}


/*
 * Let wslay produce frames into the stage and write them, a stage-full at
 * a time, until wslay has nothing more or the socket is full.  Returns 0,
 * or -1 if wslay or the socket failed.
 */
static int
relay_conn_ws_write(struct relay_conn *c)
{
    int rc, full;

    for (;;) {
        relay_conn_staged = 0;
        rc = wslay_event_send(c->ws);
        full = (relay_conn_staged == sizeof(relay_conn_stage));
        if (!relay_conn_flush_staged(c)) {
            return c->eof ? -1 : 0;
        }
        if (rc != 0) {
            return -1;
        }
        if (!full || !wslay_event_want_write(c->ws)) {
            return 0;
        }
    }
}


static void
relay_conn_settle_ws(struct relay_conn *c)
{
    int ev = 0, before, now_q, pass, pending;
    size_t q_before;

    if (c->eof) {
        c->state = RELAY_CONN_DEAD;
        return;
    }
    if (!relay_conn_flush_raw(c)) {
        if (c->eof) {
            c->state = RELAY_CONN_DEAD;
            return;
        }
        relay_conn_set_io(c, EV_WRITE);
        return;
    }

    if (c->ws == NULL && !c->close_queued) {
        /* parked: nothing to write, wait for the peer */
        relay_conn_set_io(c, c->paused ? 0 : EV_READ);
        return;
    }
    if (relay_conn_ws_ready(c) != RELAY_OK) {
        c->state = RELAY_CONN_DEAD;
        return;
    }

    if ((c->watch.bad || c->watch.too_big || c->watch.bad_utf8)
        && !c->close_queued)
    {
        relay_log(RELAY_LOG_INFO, c->watch.bad ? "ws_protocol_error"
                  : c->watch.too_big ? "ws_message_too_big"
                  : "ws_invalid_utf8", "conn_id", c->conn_id, "remote",
                  c->remote, NULL);
        c->notice_code = RELAY_CLOSE_GOING_AWAY;
        relay_conn_close(c, c->watch.bad ? RELAY_CLOSE_PROTOCOL
                         : c->watch.too_big ? RELAY_CLOSE_TOO_BIG
                         : RELAY_CLOSE_BAD_DATA, NULL, 0);
        wslay_event_shutdown_read(c->ws);
    }

    /*
     * A close the relay asked for goes out once the data before it has:
     * wslay sends control frames ahead of queued data, so the close is
     * queued only when the data queue is empty, which may happen in the
     * second pass, right after the first one wrote the last of it.
     */
    for (pass = 0; pass < 2; pass++) {
        if (c->close_queued && !wslay_event_get_close_sent(c->ws)
            && !(c->close_after_data
                 && wslay_event_get_queued_msg_count(c->ws) > 0))
        {
            if (c->close_abort) {
                c->state = RELAY_CONN_DEAD;
                return;
            }
            if (c->close_code == RELAY_CLOSE_NO_STATUS) {
                (void)wslay_event_queue_close(c->ws, 0, NULL, 0);
            } else {
                (void)wslay_event_queue_close(c->ws,
                                              (uint16_t)c->close_code,
                                              (const uint8_t *)c->close_reason,
                                              strlen(c->close_reason));
            }
        }

        q_before = wslay_event_get_queued_msg_length(c->ws);
        if (relay_conn_ws_write(c) != 0) {
            c->state = RELAY_CONN_DEAD;
            return;
        }
        if (wslay_event_get_queued_msg_length(c->ws) < q_before) {
            relay_route_drained(c);
        }
        if (!c->close_queued || wslay_event_get_close_sent(c->ws)
            || wslay_event_want_write(c->ws) || c->out_pos < c->out_len)
        {
            break;
        }
    }
    pending = wslay_event_want_write(c->ws) || c->out_pos < c->out_len;

    /* wslay queued its own close (1002, 1007, 1009): the peer broke it */
    if (!c->close_queued && wslay_event_get_close_sent(c->ws)
        && !wslay_event_get_close_received(c->ws))
    {
        c->close_queued = 1;
        c->notice_code = RELAY_CLOSE_GOING_AWAY;
    }
    if (wslay_event_get_close_sent(c->ws) && c->close_sent_ms == 0) {
        c->close_sent_ms = relay_util_now_ms();
    }

    if (wslay_event_get_close_sent(c->ws)
        && (wslay_event_get_close_received(c->ws)
            || !wslay_event_get_read_enabled(c->ws))
        && !pending)
    {
        /* our close is out and theirs came in (or never will): done */
        if (wslay_event_get_close_received(c->ws)
            || !wslay_event_get_read_enabled(c->ws)
            || c->close_sent_ms + RELAY_CONN_LINGER_MS
               <= relay_util_now_ms())
        {
            relay_conn_linger(c);
            return;
        }
    }
    if (!wslay_event_want_read(c->ws) && !pending) {
        if (wslay_event_get_close_sent(c->ws)) {
            relay_conn_linger(c);
        } else {
            c->state = RELAY_CONN_DEAD;
        }
        return;
    }

    if (wslay_event_want_read(c->ws) && !c->paused) {
        ev |= EV_READ;
    }
    if (pending) {
        ev |= EV_WRITE;
    }
    if (ev == 0 && !c->paused) {
        c->state = RELAY_CONN_DEAD;
        return;
    }

    before = c->queued_reported;
    now_q = (int)wslay_event_get_queued_msg_length(c->ws);
    if (now_q != before) {
        if (now_q > before) {
            RELAY_METRIC_ADD(c->w->m, queued_bytes, now_q - before);
        } else {
            RELAY_METRIC_SUB(c->w->m, queued_bytes, before - now_q);
        }
        c->queued_reported = now_q;
    }

    relay_conn_set_io(c, ev);
}


void
relay_conn_settle(struct relay_conn *c)
{
    c->dirty = 0;

    switch (c->state) {
    case RELAY_CONN_HEAD:
        break;
    case RELAY_CONN_RESPOND:
        if (!c->eof && relay_conn_flush_raw(c)) {
            relay_conn_linger(c);
            break;
        }
        if (c->eof) {
            c->state = RELAY_CONN_DEAD;
            break;
        }
        relay_conn_set_io(c, EV_WRITE);
        break;
    case RELAY_CONN_WS:
        relay_conn_settle_ws(c);
        break;
    case RELAY_CONN_LINGER:
        if (c->eof) {
            c->state = RELAY_CONN_DEAD;
        }
        break;
    default:
        break;
    }

    if (c->state == RELAY_CONN_DEAD) {
        relay_conn_free(c);
    }
}


int
relay_conn_sweep(struct relay_conn *c, uint64_t now)
{
    switch (c->state) {
    case RELAY_CONN_HEAD:
    case RELAY_CONN_RESPOND:
    case RELAY_CONN_LINGER:
        if (c->deadline_ms != 0 && now >= c->deadline_ms) {
            if (c->state == RELAY_CONN_HEAD) {
                relay_log(RELAY_LOG_INFO, "head_timeout", "remote",
                          c->remote, NULL);
            }
            c->state = RELAY_CONN_DEAD;
            relay_conn_touch(c);
        }
        break;
    case RELAY_CONN_WS:
        if (c->msg_started_ms != 0
            && now - c->msg_started_ms >= RELAY_CONN_MSG_MS)
        {
            relay_log(RELAY_LOG_INFO, "message_timeout", "conn_id",
                      c->conn_id, "remote", c->remote, NULL);
            c->notice_code = RELAY_CLOSE_GOING_AWAY;
            c->state = RELAY_CONN_DEAD;
            relay_conn_touch(c);
            break;
        }
        if ((c->out_pos < c->out_len
             || (c->ws != NULL && wslay_event_want_write(c->ws)))
            && now - c->progress_ms >= RELAY_CONN_STALL_MS)
        {
            relay_log(RELAY_LOG_INFO, "write_stalled", "conn_id",
                      c->conn_id, "remote", c->remote, NULL);
            c->notice_code = RELAY_CLOSE_GOING_AWAY;
            c->state = RELAY_CONN_DEAD;
            relay_conn_touch(c);
            break;
        }
        if (c->close_sent_ms != 0
            && now - c->close_sent_ms >= RELAY_CONN_LINGER_MS)
        {
            c->state = RELAY_CONN_DEAD;
            relay_conn_touch(c);
            break;
        }
        return relay_conn_park(c, now);
    default:
        break;
    }

    return 0;
}


void
relay_conn_settle_all(struct relay_worker *w)
{
    struct relay_conn *c;

    while (w->dirty != NULL) {
        c = w->dirty;
        w->dirty = c->dirty_next;
        c->dirty_next = NULL;
        relay_conn_settle(c);
    }
}


void
relay_conn_sweep_all(struct relay_worker *w)
{
    struct relay_conn *c, *next;
    uint64_t now = relay_util_now_ms();
    int parked = 0;

    for (c = w->conns; c != NULL; c = next) {
        next = c->next;
        parked += relay_conn_sweep(c, now);
    }

    /*
     * Parked contexts leave holes between live connections that malloc
     * keeps; give their pages back so that idle connections really are
     * cheap (glibc releases whole free pages inside the heap too).
     */
    if (parked > 0) {
        malloc_trim(0);
    }
}
