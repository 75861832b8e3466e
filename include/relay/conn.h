/*
 * conn.h: one client socket, from accept to close: the request head, the
 * HTTP response, then the WebSocket run by wslay over a libev watcher.
 *
 * Callbacks mark, the loop acts: libev and wslay callbacks, timers and
 * the routing code only record what should happen (queue a message, ask
 * for a close) and put the connection on the worker's dirty list.  Once
 * per loop iteration, before the loop blocks, relay_conn_settle() runs for
 * every dirty connection: it writes what is queued, recomputes read and
 * write interest from wslay, and is the only place that closes a socket
 * and frees a connection.  So a struct relay_conn stays valid for the
 * whole of any callback that can see it.
 */

#ifndef RELAY_CONN_H
#define RELAY_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>
#include <wslay/wslay.h>

#include "relay/common.h"

struct relay_worker;
struct relay_server;

enum relay_conn_state {
    RELAY_CONN_HEAD = 0,        /* reading the request head */
    RELAY_CONN_RESPOND,         /* writing an HTTP response, then close */
    RELAY_CONN_WS,              /* WebSocket open (101 may still be queued) */
    RELAY_CONN_LINGER,          /* all sent; draining input before close */
    RELAY_CONN_DEAD             /* to be freed by the next settle */
};

enum relay_conn_role {
    RELAY_ROLE_NONE = 0,
    RELAY_ROLE_BINARY,          /* holds its server-id */
    RELAY_ROLE_CONTENDER,       /* binary waiting for the conflict probe */
    RELAY_ROLE_PHONE,           /* attached to a server-id */
    RELAY_ROLE_REFUSED          /* upgraded only to be closed */
};

/* What a frame-header watcher tracks of the incoming byte stream. */
struct relay_frame_watch {
    uint8_t hdr[14];
    uint8_t hlen;               /* header bytes collected */
    uint8_t need;               /* header bytes needed, 0 = unknown yet */
    uint8_t in_msg;             /* a data message is incomplete */
    uint8_t bad;                /* a protocol violation was seen */
    uint8_t too_big;            /* a message declared past the cap */
    uint8_t bad_utf8;           /* a text message was not UTF-8 */
    uint8_t text;               /* the current message is text */
    uint8_t undelivered;        /* complete, not yet delivered by wslay */
    uint64_t left;              /* payload bytes left in this frame */
    uint64_t msg_len;           /* declared bytes of the message so far */
};

struct relay_conn {
    struct relay_worker *w;
    struct relay_conn *next;            /* worker's list of all conns */
    struct relay_conn *prev;
    struct relay_conn *dirty_next;      /* worker's dirty list */
    int dirty;
    int fd;
    int state;                          /* enum relay_conn_state */
    int role;                           /* enum relay_conn_role */
    int metrics_listener;               /* accepted on /metrics listener */
    ev_io io;
    ev_timer hb;                        /* heartbeat and probe pings */

    /* input: the head, then bytes pipelined after it */
    char *in;
    size_t in_len;
    size_t in_pos;
    uint32_t hops;
    uint64_t deadline_ms;               /* head, message or close linger */

    /* raw output (HTTP response or 101) written before any WS frame */
    char *out;
    size_t out_len;
    size_t out_pos;

    /* WebSocket; ws is NULL while an idle connection is parked */
    wslay_event_context_ptr ws;
    struct relay_frame_watch watch;
    uint64_t msg_started_ms;            /* 0: no message in progress */
    uint64_t progress_ms;               /* last write that moved bytes */
    uint64_t active_ms;                 /* last byte in or out */
    uint64_t pongs;                     /* pongs received */
    int last_opcode;                    /* of the last data message */
    int hb_waiting;                     /* a heartbeat ping is out */
    int eof;                            /* peer closed TCP */
    int reserved;                       /* holds a connection-cap place */
    int close_queued;                   /* the relay asked for a close */
    int close_after_data;               /* close once the data is out */
    int close_abort;                    /* then drop TCP, no close frame */
    int close_code;
    char close_reason[64];
    uint64_t close_sent_ms;
    int queued_reported;                /* bytes counted in the gauge */

    /* routing */
    struct relay_server *server;
    struct relay_conn *pnext;           /* server's phones or contenders */
    struct relay_conn *pprev;
    uint64_t epoch;                     /* binary epoch at attach */
    int directive_closed;               /* closed by a close directive */
    int notice_code;                    /* forced close-notice code */
    int paused;                         /* reading stopped: backpressure */
    char conn_id[RELAY_CONN_ID_MAX];
    char server_id[RELAY_SERVER_ID_MAX + 1];
    size_t server_id_len;
    char version[64];                   /* a contender's binary_version */
    char remote[48];
    unsigned char remote_raw[16];
    int remote_raw_len;
};

/* Accept fd as a new connection of w and start reading its head. */
struct relay_conn *relay_conn_new(struct relay_worker *w, int fd,
                                  int metrics_listener);

/*
 * Adopt a socket handed over by another worker, with the bytes it had
 * already read; the head is parsed again as if it had just arrived.
 */
struct relay_conn *relay_conn_adopt(struct relay_worker *w, int fd,
                                    uint32_t hops, const char *data,
                                    size_t len);

/* Put c on the dirty list so that the next settle acts on it. */
void relay_conn_touch(struct relay_conn *c);

/*
 * Answer with a complete HTTP response (it is copied) and close after it.
 */
void relay_conn_respond(struct relay_conn *c, const char *resp, size_t len);

/*
 * Switch c to WebSocket: queue the 101 for accept[] and create the wslay
 * context.  Returns RELAY_OK, or RELAY_ERROR on allocation failure (c is
 * then dropped).
 */
int relay_conn_upgrade(struct relay_conn *c, const char accept[29]);

/*
 * Queue one text message.  Returns RELAY_OK, or RELAY_ERROR if c can no
 * longer send (closing or failed).
 */
int relay_conn_send_text(struct relay_conn *c, const uint8_t *data,
                         size_t len);

/* Queue a ping with a short payload. */
void relay_conn_ping(struct relay_conn *c);

/*
 * Ask for a close.  code 0 drops TCP at once without a close frame.
 * Otherwise, when after_data is set, everything already queued is sent
 * first.  A code that may not appear on the wire (below 1000, 1004, 1006,
 * 1015, 1016-2999, above 4999) drops TCP after the data; 1005 sends a
 * close frame with an empty payload.  Only the first request counts.
 */
void relay_conn_close(struct relay_conn *c, int code, const char *reason,
                      int after_data);

/* Bytes queued for c, charged as SPEC.md section 9 counts them. */
size_t relay_conn_outbox(struct relay_conn *c);

/* Raw bytes of messages queued in wslay for c. */
size_t relay_conn_queued(struct relay_conn *c);

/* Settle one connection (see the top of this file). */
void relay_conn_settle(struct relay_conn *c);

/*
 * Periodic checks: head, message, write-progress and close deadlines, and
 * parking an idle WebSocket.  Returns 1 if c was parked (its wslay context
 * freed), else 0.
 */
int relay_conn_sweep(struct relay_conn *c, uint64_t now);

/* Settle every connection on w's dirty list (once per loop iteration). */
void relay_conn_settle_all(struct relay_worker *w);

/* Sweep every connection of w, then trim the heap if any was parked. */
void relay_conn_sweep_all(struct relay_worker *w);

/* Start or stop reading from c (backpressure). */
void relay_conn_set_paused(struct relay_conn *c, int paused);

#endif
