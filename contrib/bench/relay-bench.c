/*
 * relay-bench.c: the load generator for pyrycode-relay, and the plain
 * WebSocket echo peer that stands behind nginx for the byte-pipe baseline.
 *
 * One program plays both peers of the relay.  Binaries echo every envelope
 * back unchanged: an envelope the relay hands a binary is also a valid
 * binary-to-phone envelope, so each phone gets its own message back.
 * Phones send [send_time_ns,"padding"] and time the round trip, either
 * keeping a window of messages in flight (closed loop) or at an offered
 * rate (open loop, stamped with the intended send time so a stalled peer
 * cannot hide its own latency).  --procs forks several generators, each
 * with a share of the server-ids, so one run can hold more sockets than a
 * process's descriptor limit; the parent lines them up on one measurement
 * window, samples the target's CPU there, and prints one JSON line.
 * Connections are spread over many source addresses in 127.0.0.0/8 because
 * the relay limits upgrades per client IP.
 *
 * It measures; it is not a conformance test.  It talks to loopback only,
 * and every loop it runs is bounded in count and in time.
 */

#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/rand.h>
#include <wslay/wslay.h>

#include "relay/common.h"
#include "relay/http.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define BENCH_RBUF_SIZE         (256 * 1024)
#define BENCH_WBUF_MAX          (64 * 1024 * 1024)
#define BENCH_HBUF_SIZE         4096
#define BENCH_OPEN_MAX_INFLIGHT 4096
#define BENCH_TICK_BUDGET       20000
#define BENCH_MAX_PROCS         64
#define BENCH_MAX_PIDS          64
#define BENCH_MAX_ERRORS        100000
#define BENCH_SIZE_MIN          32
#define BENCH_SIZE_MAX          200000

/* RFC 6455's sample key: any valid key will do, and its answer is known. */
#define BENCH_WS_KEY            "dGhlIHNhbXBsZSBub25jZQ=="
#define BENCH_WS_ACCEPT         "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/*
 * Latency histogram, log-linear in nanoseconds: 128 linear sub-buckets per
 * power of two keep every bucket within 0.8% of its value up to ~70 min.
 */
#define BENCH_HIST_SUB_BITS     7
#define BENCH_HIST_SUB          (1u << BENCH_HIST_SUB_BITS)
#define BENCH_HIST_BUCKETS      (BENCH_HIST_SUB * 36)

enum bench_role {
    BENCH_ROLE_BINARY = 0,
    BENCH_ROLE_PHONE,
    BENCH_ROLE_ECHO
};

enum bench_state {
    BENCH_ST_IDLE = 0,
    BENCH_ST_CONNECTING,
    BENCH_ST_UPGRADING,
    BENCH_ST_ACCEPTING,
    BENCH_ST_OPEN,
    BENCH_ST_DONE
};

struct bench_opts {
    const char *host;
    int port;
    int target_echo;            /* phones only; the peer echoes */
    const char *path;
    long servers;
    long phones;
    long size;
    long window;
    double rate;
    double duration;
    double warmup;
    long procs;
    uint32_t src_base;          /* host order */
    long per_ip;
    long idle;
    int churn;
    long messages;
    const char *ready_file;
    pid_t pids[BENCH_MAX_PIDS];
    int npids;
    int perf;
    int strict;                 /* read through wslay, UTF-8 checked */
    int serve_echo;             /* port, 0 = generator */
    double setup_timeout;
    long concurrency;
    const char *label;
    char nonce[9];
};

/* What a generator process reports to the parent through its pipe. */
struct bench_result {
    uint64_t rtt;               /* phones: own message back, in window */
    uint64_t p2b;               /* binaries: envelopes received */
    uint64_t sent;
    uint64_t up_bytes;
    uint64_t down_bytes;
    uint64_t p2b_bytes;
    uint64_t notices;           /* close notices a binary received */
    uint64_t skipped;           /* open loop: phone had too much queued */
    uint64_t churn;
    uint64_t binaries_open;
    uint64_t phones_open;
    uint64_t err_connect;
    uint64_t err_handshake;
    uint64_t err_closed;
    uint64_t err_protocol;
    uint64_t err_bad_msg;
    uint64_t last_http;         /* last non-101 status, for diagnosis */
    uint64_t last_close;        /* last unexpected close code */
    uint64_t bin_start_ns;
    uint64_t bin_end_ns;
    uint64_t phone_start_ns;
    uint64_t phone_end_ns;
    uint64_t finish_ns;         /* --messages: when the last one came back */
    uint64_t max_ns;
    double cpu_s;
    uint64_t hist[BENCH_HIST_BUCKETS];
};

struct bench_go {
    uint64_t go_ns;
    uint64_t start_ns;
    uint64_t end_ns;
};

struct bench_proc;

struct bench_conn {
    struct bench_proc *p;
    ev_io io;
    int fd;
    int role;
    int state;
    int events;
    int in_setup;
    uint32_t sid;
    wslay_event_context_ptr ws;
    char *hbuf;
    size_t hlen;
    uint8_t *wbuf;
    size_t wlen;
    size_t wpos;
    size_t wcap;
    uint8_t *ibuf;              /* fast reader: a partial frame */
    size_t ilen;
    size_t icap;
    uint8_t *frag;              /* fast reader: a fragmented message */
    size_t flen;
    int fop;
    uint32_t inflight;
    uint64_t sent;
    uint64_t got;
    int churn_close;
    int closing;
    int close_after_flush;
};

struct bench_proc {
    const struct bench_opts *o;
    struct ev_loop *loop;
    int index;
    int ready_fd;
    int go_fd;
    struct bench_conn *conns;
    size_t nconns;
    size_t nbin;
    size_t next_start;
    size_t connecting;
    size_t bin_pending;
    size_t phones_done;
    uint64_t ip_slot;
    long ip_used;
    int ready_sent;
    int running;
    int ending;
    double rate;                /* this process's share of --rate */
    uint64_t go_ns;
    uint64_t issued;
    size_t rr;
    uint8_t *msg;
    size_t msg_prefix;
    const uint8_t *rd;
    size_t rd_len;
    size_t rd_pos;
    struct rusage ru_start;
    ev_io go_w;
    ev_io listen_w;
    ev_timer setup_t;
    ev_timer start_t;
    ev_timer end_t;
    ev_timer tick_t;
    ev_signal term_w;
    ev_signal int_w;
    struct wslay_event_callbacks cb;
    uint64_t rng;
    uint8_t rbuf[BENCH_RBUF_SIZE];
    struct bench_result r;
};

static volatile sig_atomic_t bench_stop;
static pid_t bench_children[BENCH_MAX_PROCS];
static int bench_nchildren;

static void bench_conn_close(struct bench_conn *c);
static void bench_conn_connect(struct bench_conn *c);
static void bench_proc_pump(struct bench_proc *p);


static uint64_t
bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}


static void
bench_sleep_until(uint64_t t_ns)
{
    struct timespec ts;

    ts.tv_sec = (time_t)(t_ns / 1000000000u);
    ts.tv_nsec = (long)(t_ns % 1000000000u);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL)
           == EINTR) {
        if (bench_stop) {
            return;
        }
    }
}


static unsigned
bench_hist_index(uint64_t v)
{
    unsigned msb, shift, idx;

    if (v < BENCH_HIST_SUB) {
        return (unsigned)v;
    }
    msb = 63u - (unsigned)__builtin_clzll(v);
    shift = msb - BENCH_HIST_SUB_BITS;
    idx = (shift + 1) * BENCH_HIST_SUB
          + (unsigned)((v >> shift) - BENCH_HIST_SUB);
    return idx < BENCH_HIST_BUCKETS ? idx : BENCH_HIST_BUCKETS - 1;
}


/* The middle of bucket idx, in nanoseconds. */
static double
bench_hist_value(unsigned idx)
{
    unsigned shift;
    uint64_t low;

    if (idx < BENCH_HIST_SUB) {
        return (double)idx;
    }
    shift = idx / BENCH_HIST_SUB - 1;
    low = (uint64_t)(idx % BENCH_HIST_SUB + BENCH_HIST_SUB) << shift;
    return (double)low + (double)((uint64_t)1 << shift) / 2.0;
}


static double
bench_hist_quantile(const uint64_t *h, uint64_t total, double q,
                    uint64_t max_ns)
{
    uint64_t rank, seen;
    unsigned i;
    double v;

    if (total == 0) {
        return 0.0;
    }
    rank = (uint64_t)(q * (double)total + 0.999999);
    if (rank < 1) {
        rank = 1;
    }
    seen = 0;
    for (i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h[i];
        if (seen >= rank) {
            v = bench_hist_value(i);
            return v > (double)max_ns ? (double)max_ns : v;
        }
    }
    return (double)max_ns;
}


/* ------------------------------------------------------------ socket I/O */

static void
bench_conn_set_events(struct bench_conn *c, int events)
{
    if (c->events == events) {
        return;
    }
    ev_io_stop(c->p->loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(c->p->loop, &c->io);
    c->events = events;
}


static int
bench_error_budget_spent(struct bench_proc *p)
{
    struct bench_result *r = &p->r;

    return r->err_connect + r->err_handshake + r->err_closed
           + r->err_protocol + r->err_bad_msg > BENCH_MAX_ERRORS;
}


/*
 * Write out what wslay left in the connection's buffer.  Returns 0, or -1
 * if the socket failed (the caller closes it).
 */
static int
bench_conn_flush(struct bench_conn *c)
{
    ssize_t n;

    while (c->wpos < c->wlen) {
        n = write(c->fd, c->wbuf + c->wpos, c->wlen - c->wpos);
        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                bench_conn_set_events(c, EV_READ | EV_WRITE);
                return 0;
            }
            return -1;
        }
        c->wpos += (size_t)n;
    }
    c->wpos = 0;
    c->wlen = 0;
    bench_conn_set_events(c, EV_READ);
    return 0;
}


/* Move wslay's queue into the buffer and write it; close on failure. */
static void
bench_conn_pump(struct bench_conn *c)
{
    if ((c->ws != NULL && wslay_event_send(c->ws) != 0)
        || bench_conn_flush(c) != 0) {
        if (!c->p->ending && c->role != BENCH_ROLE_ECHO) {
            c->p->r.err_protocol++;
        }
        bench_conn_close(c);
        return;
    }
    if (c->ws != NULL && !wslay_event_want_read(c->ws)
        && !wslay_event_want_write(c->ws) && c->wlen == 0) {
        bench_conn_close(c);
        return;
    }
    if (c->close_after_flush && c->wlen == 0) {
        bench_conn_close(c);
    }
}


static ssize_t
bench_ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                 int flags, void *user_data)
{
    struct bench_conn *c = user_data;
    struct bench_proc *p = c->p;
    size_t n;

    if (p->rd_pos >= p->rd_len) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    n = p->rd_len - p->rd_pos;
    if (n > len) {
        n = len;
    }
    memcpy(buf, p->rd + p->rd_pos, n);
    p->rd_pos += n;
    return (ssize_t)n;
}


/*
 * Append to the connection's write buffer, growing it.  Returns 0, or -1
 * if it would pass BENCH_WBUF_MAX (the caller treats the peer as stuck).
 */
static int
bench_conn_reserve(struct bench_conn *c, size_t len)
{
    size_t cap;
    uint8_t *nb;

    if (c->wpos > 0 && c->wlen + len > c->wcap) {
        memmove(c->wbuf, c->wbuf + c->wpos, c->wlen - c->wpos);
        c->wlen -= c->wpos;
        c->wpos = 0;
    }
    if (c->wlen + len <= c->wcap) {
        return 0;
    }
    if (c->wlen + len > BENCH_WBUF_MAX) {
        return -1;
    }
    cap = c->wcap == 0 ? 4096 : c->wcap;
    while (cap < c->wlen + len) {
        cap *= 2;
    }
    nb = realloc(c->wbuf, cap);
    if (nb == NULL) {
        return -1;
    }
    c->wbuf = nb;
    c->wcap = cap;
    return 0;
}


/*
 * wslay writes its control frames into the same buffer, which is flushed
 * with one write() per wakeup.  It never answers WOULDBLOCK: a frame cut
 * in half here would interleave with the data frames written directly.
 */
static ssize_t
bench_ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data,
                 size_t len, int flags, void *user_data)
{
    struct bench_conn *c = user_data;

    if (bench_conn_reserve(c, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_NOMEM);
        return -1;
    }
    memcpy(c->wbuf + c->wlen, data, len);
    c->wlen += len;
    return (ssize_t)len;
}


/*
 * Data frames bypass wslay's queue: it copies each message and masks it a
 * byte at a time, which made the generator, not the target, the
 * bottleneck at 16 KiB.  A client frame carries an all-zero masking key,
 * valid on the wire and free to apply; the peer cannot tell.  Returns 0,
 * or -1 if the buffer is full.
 */
static int
bench_conn_write_frame(struct bench_conn *c, int opcode, const uint8_t *data,
                       size_t len)
{
    int masked = c->role != BENCH_ROLE_ECHO;
    uint8_t *h;
    size_t hl, i;

    if (bench_conn_reserve(c, len + 14) != 0) {
        return -1;
    }
    h = c->wbuf + c->wlen;
    h[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        h[1] = (uint8_t)len;
        hl = 2;
    } else if (len < 65536) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        hl = 4;
    } else {
        h[1] = 127;
        for (i = 0; i < 8; i++) {
            h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        }
        hl = 10;
    }
    if (masked) {
        h[1] |= 0x80;
        memset(h + hl, 0, 4);
        hl += 4;
    }
    memcpy(h + hl, data, len);
    c->wlen += hl + len;
    return 0;
}


/* Masks only have to be unpredictable to a browser's page, not here. */
static int
bench_ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                    void *user_data)
{
    struct bench_conn *c = user_data;
    uint64_t x = c->p->rng;
    size_t i;

    for (i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    c->p->rng = x;
    return 0;
}


/* ------------------------------------------------------------- messages */

static void
bench_phone_send(struct bench_conn *c, uint64_t stamp)
{
    struct bench_proc *p = c->p;
    char num[24];
    size_t n, pre;

    n = (size_t)snprintf(num, sizeof(num), "%" PRIu64, stamp);
    pre = n + 3;
    /* a shorter stamp must not leave a stray quote inside the string */
    if (pre < p->msg_prefix) {
        memset(p->msg + pre, 'p', p->msg_prefix - pre);
    }
    p->msg[0] = '[';
    memcpy(p->msg + 1, num, n);
    p->msg[n + 1] = ',';
    p->msg[n + 2] = '"';
    p->msg_prefix = pre;

    if (bench_conn_write_frame(c, WSLAY_TEXT_FRAME, p->msg,
                               (size_t)p->o->size) != 0) {
        p->r.skipped++;
        return;
    }
    c->inflight++;
    c->sent++;
    p->r.sent++;
    p->r.up_bytes += (uint64_t)p->o->size;
}


/* Send what the closed loop allows: up to the window, up to --messages. */
static void
bench_phone_refill(struct bench_conn *c)
{
    const struct bench_opts *o = c->p->o;

    while (c->inflight < (uint32_t)o->window
           && (o->messages == 0 || c->sent < (uint64_t)o->messages)) {
        bench_phone_send(c, bench_now_ns());
    }
}


static int
bench_is_frame_envelope(const uint8_t *m, size_t len)
{
    static const char head[] = "{\"conn_id\":\"";
    static const char tail[] = "\",\"frame\":";
    const size_t hl = sizeof(head) - 1, tl = sizeof(tail) - 1;
    const uint8_t *q;

    if (len < hl || memcmp(m, head, hl) != 0) {
        return 0;
    }
    q = memchr(m + hl, '"', len - hl);
    if (q == NULL || (size_t)(m + len - q) < tl) {
        return 0;
    }
    return memcmp(q, tail, tl) == 0;
}


static void
bench_phone_got(struct bench_conn *c, const uint8_t *m, size_t len)
{
    struct bench_proc *p = c->p;
    const struct bench_opts *o = p->o;
    uint64_t t, now, lat;
    size_t i;

    t = 0;
    for (i = 1; i < len && i < 21 && m[i] >= '0' && m[i] <= '9'; i++) {
        t = t * 10 + (uint64_t)(m[i] - '0');
    }
    if (len < 3 || m[0] != '[' || i == 1 || i >= len || m[i] != ',') {
        p->r.err_bad_msg++;
        return;
    }
    now = bench_now_ns();
    lat = now > t ? now - t : 0;

    p->r.rtt++;
    p->r.down_bytes += len;
    p->r.hist[bench_hist_index(lat)]++;
    if (lat > p->r.max_ns) {
        p->r.max_ns = lat;
    }
    if (c->inflight > 0) {
        c->inflight--;
    }
    c->got++;

    if (!p->running || p->ending) {
        return;
    }
    if (o->churn) {
        p->r.churn++;
        c->churn_close = 1;
        return;
    }
    if (o->messages > 0 && c->got == (uint64_t)o->messages) {
        p->phones_done++;
        if (p->phones_done >= p->r.phones_open) {
            p->r.finish_ns = now;
            ev_break(p->loop, EVBREAK_ALL);
        }
        return;
    }
    if (o->rate == 0.0) {
        bench_phone_refill(c);
    }
}


/* A whole data message arrived; control frames never come here. */
static void
bench_conn_on_msg(struct bench_conn *c, int opcode, const uint8_t *msg,
                  size_t len)
{
    struct bench_proc *p = c->p;

    switch (c->role) {
    case BENCH_ROLE_PHONE:
        bench_phone_got(c, msg, len);
        break;

    case BENCH_ROLE_BINARY:
        if (!bench_is_frame_envelope(msg, len)) {
            p->r.notices++;
            break;
        }
        p->r.p2b++;
        p->r.p2b_bytes += len;
        if (bench_conn_write_frame(c, WSLAY_TEXT_FRAME, msg, len) != 0) {
            p->r.err_protocol++;
        }
        break;

    default:
        (void)bench_conn_write_frame(c, opcode, msg, len);
        p->r.p2b++;
        break;
    }
}


static void
bench_conn_on_close(struct bench_conn *c, unsigned code)
{
    struct bench_proc *p = c->p;

    if (!p->ending && !c->closing && c->role != BENCH_ROLE_ECHO) {
        p->r.err_closed++;
        p->r.last_close = code;
    }
}


static void
bench_ws_msg_cb(wslay_event_context_ptr ctx,
                const struct wslay_event_on_msg_recv_arg *arg,
                void *user_data)
{
    struct bench_conn *c = user_data;

    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        bench_conn_on_close(c, arg->status_code);
        return;
    }
    if (wslay_is_ctrl_frame(arg->opcode)) {
        return;
    }
    bench_conn_on_msg(c, arg->opcode, arg->msg, arg->msg_length);
}


/* Unmask in place, a word at a time where the key is not all zero. */
static void
bench_unmask(uint8_t *d, size_t len, const uint8_t key[4])
{
    uint64_t k8;
    uint32_t k4;
    size_t i = 0;

    memcpy(&k4, key, 4);
    if (k4 == 0) {
        return;
    }
    k8 = ((uint64_t)k4 << 32) | k4;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;

        memcpy(&w, d + i, 8);
        w ^= k8;
        memcpy(d + i, &w, 8);
    }
    for (; i < len; i++) {
        d[i] ^= key[i % 4];
    }
}


/*
 * Handle one complete frame of the fast reader.  Returns 0, or -1 when
 * the connection is finished (a close, or a peer that breaks framing).
 */
static int
bench_conn_on_frame(struct bench_conn *c, int fin, int op, uint8_t *d,
                    size_t len)
{
    uint8_t *nb;
    unsigned code;

    if (op >= 8) {
        if (op == WSLAY_PING) {
            (void)bench_conn_write_frame(c, WSLAY_PONG, d, len);
        } else if (op == WSLAY_CONNECTION_CLOSE) {
            code = len >= 2 ? (unsigned)(d[0] << 8 | d[1]) : 1005;
            bench_conn_on_close(c, code);
            /* echo the code, as a peer must; then nothing more is read */
            (void)bench_conn_write_frame(c, WSLAY_CONNECTION_CLOSE, d,
                                         len >= 2 ? 2 : 0);
            c->close_after_flush = 1;
            return -1;
        }
        return 0;
    }
    if (fin && op != 0 && c->frag == NULL) {
        bench_conn_on_msg(c, op, d, len);
        return 0;
    }
    if ((op == 0) != (c->frag != NULL) || c->flen + len > RELAY_MSG_MAX) {
        return -1;
    }
    nb = realloc(c->frag, c->flen + len + 1);
    if (nb == NULL) {
        return -1;
    }
    if (c->frag == NULL) {
        c->fop = op;
    }
    c->frag = nb;
    memcpy(c->frag + c->flen, d, len);
    c->flen += len;
    if (fin) {
        bench_conn_on_msg(c, c->fop, c->frag, c->flen);
        free(c->frag);
        c->frag = NULL;
        c->flen = 0;
    }
    return 0;
}


/*
 * The fast reader: frames are parsed where they lie in the read buffer
 * and a message is handed over without a copy.  It checks the framing but
 * not UTF-8 (--strict reads through wslay instead, which does).  Returns
 * 0, or -1 when the connection is finished.
 */
static int
bench_conn_parse(struct bench_conn *c, uint8_t *b, size_t n, size_t *used)
{
    size_t off = 0, hl, plen, i;
    int masked;
    uint8_t *key;

    while (n - off >= 2) {
        masked = (b[off + 1] & 0x80) != 0;
        plen = b[off + 1] & 0x7f;
        hl = 2;
        if (plen == 126) {
            hl = 4;
        } else if (plen == 127) {
            hl = 10;
        }
        if (n - off < hl + (masked ? 4 : 0)) {
            break;
        }
        if (plen == 126) {
            plen = (size_t)b[off + 2] << 8 | b[off + 3];
        } else if (plen == 127) {
            plen = 0;
            for (i = 0; i < 8; i++) {
                plen = plen << 8 | b[off + 2 + i];
            }
        }
        if ((b[off] & 0x70) != 0 || plen > RELAY_MSG_MAX
            || masked != (c->role == BENCH_ROLE_ECHO)) {
            return -1;
        }
        key = b + off + hl;
        if (masked) {
            hl += 4;
        }
        if (n - off < hl + plen) {
            break;
        }
        if (masked) {
            bench_unmask(b + off + hl, plen, key);
        }
        if (bench_conn_on_frame(c, b[off] & 0x80, b[off] & 0x0f,
                                b + off + hl, plen) != 0) {
            return -1;
        }
        off += hl + plen;
    }
    *used = off;
    return 0;
}


/* Keep the unparsed tail of a read for the next one. */
static int
bench_conn_keep(struct bench_conn *c, const uint8_t *d, size_t len)
{
    uint8_t *nb;
    size_t cap;

    if (len > c->icap) {
        cap = c->icap == 0 ? 4096 : c->icap;
        while (cap < len) {
            cap *= 2;
        }
        nb = malloc(cap);
        if (nb == NULL) {
            return -1;
        }
        free(c->ibuf);
        c->ibuf = nb;
        c->icap = cap;
    }
    memmove(c->ibuf, d, len);
    c->ilen = len;
    return 0;
}


/*
 * Feed p->rd to the fast reader.  A partial frame from last time is
 * completed in the connection's own buffer first.  Returns 0 or -1.
 */
static int
bench_conn_read_fast(struct bench_conn *c)
{
    struct bench_proc *p = c->p;
    uint8_t *b = (uint8_t *)p->rd + p->rd_pos;
    size_t n = p->rd_len - p->rd_pos, used, need;
    uint8_t *nb;

    if (c->ilen > 0) {
        need = c->ilen + n;
        if (need > c->icap) {
            nb = realloc(c->ibuf, need);
            if (nb == NULL) {
                return -1;
            }
            c->ibuf = nb;
            c->icap = need;
        }
        memcpy(c->ibuf + c->ilen, b, n);
        c->ilen = need;
        if (bench_conn_parse(c, c->ibuf, c->ilen, &used) != 0) {
            return -1;
        }
        return bench_conn_keep(c, c->ibuf + used, c->ilen - used);
    }
    if (bench_conn_parse(c, b, n, &used) != 0) {
        return -1;
    }
    c->ilen = 0;
    return used < n ? bench_conn_keep(c, b + used, n - used) : 0;
}


/* ---------------------------------------------------------- connections */

static void
bench_conn_release(struct bench_conn *c)
{
    if (c->fd != -1) {
        ev_io_stop(c->p->loop, &c->io);
        close(c->fd);
        c->fd = -1;
    }
    if (c->ws != NULL) {
        wslay_event_context_free(c->ws);
        c->ws = NULL;
    }
    free(c->hbuf);
    c->hbuf = NULL;
    c->hlen = 0;
    free(c->wbuf);
    c->wbuf = NULL;
    c->wlen = c->wpos = c->wcap = 0;
    free(c->ibuf);
    c->ibuf = NULL;
    c->ilen = c->icap = 0;
    free(c->frag);
    c->frag = NULL;
    c->flen = 0;
    c->close_after_flush = 0;
    c->events = 0;
    c->inflight = 0;
    c->closing = 0;
    c->churn_close = 0;
}


/* Setup bookkeeping for a connection that will never open. */
static void
bench_conn_setup_failed(struct bench_conn *c)
{
    struct bench_proc *p = c->p;

    if (!c->in_setup) {
        return;
    }
    c->in_setup = 0;
    p->connecting--;
    if (c->role == BENCH_ROLE_BINARY) {
        p->bin_pending--;
    }
    bench_proc_pump(p);
}


static void
bench_conn_close(struct bench_conn *c)
{
    struct bench_proc *p = c->p;
    int was_open = c->state == BENCH_ST_OPEN;

    bench_conn_release(c);
    c->state = BENCH_ST_DONE;
    if (c->role == BENCH_ROLE_ECHO) {
        free(c);
        return;
    }
    bench_conn_setup_failed(c);

    /*
     * A churning phone reconnects at once from a fresh source address; a
     * refusal counts as an error and the error budget ends a runaway loop.
     */
    if (c->role == BENCH_ROLE_PHONE && p->o->churn && p->running
        && !p->ending && !bench_error_budget_spent(p)) {
        if (was_open && p->r.phones_open > 0) {
            p->r.phones_open--;
        }
        bench_conn_connect(c);
        return;
    }
    if (was_open && c->role == BENCH_ROLE_PHONE && p->r.phones_open > 0) {
        p->r.phones_open--;
    }
    if (was_open && c->role == BENCH_ROLE_BINARY
        && p->r.binaries_open > 0) {
        p->r.binaries_open--;
    }
}


static void
bench_conn_opened(struct bench_conn *c)
{
    struct bench_proc *p = c->p;
    uint64_t now = bench_now_ns();

    c->state = BENCH_ST_OPEN;
    if (c->role == BENCH_ROLE_BINARY) {
        p->r.binaries_open++;
        p->r.bin_end_ns = now;
    } else {
        p->r.phones_open++;
        p->r.phone_end_ns = now;
    }
    if (c->in_setup) {
        c->in_setup = 0;
        p->connecting--;
        if (c->role == BENCH_ROLE_BINARY) {
            p->bin_pending--;
        }
        bench_proc_pump(p);
    }
    if (c->role == BENCH_ROLE_PHONE && p->o->churn && p->running
        && !p->ending) {
        bench_phone_send(c, now);
    }
}


/* Queue a close frame and write what is pending, once, without waiting. */
static void
bench_conn_goodbye(struct bench_conn *c)
{
    static const uint8_t normal[2] = {0x03, 0xe8};

    c->closing = 1;
    if (c->ws != NULL) {
        (void)wslay_event_queue_close(c->ws, 1000, NULL, 0);
        (void)wslay_event_send(c->ws);
    } else {
        (void)bench_conn_write_frame(c, WSLAY_CONNECTION_CLOSE, normal, 2);
    }
    if (c->wlen > c->wpos) {
        (void)write(c->fd, c->wbuf + c->wpos, c->wlen - c->wpos);
    }
}


/* Feed the bytes at p->rd to the reader and write whatever it answers. */
static void
bench_conn_feed(struct bench_conn *c)
{
    struct bench_proc *p = c->p;
    int rv;

    if (c->ws != NULL) {
        rv = wslay_event_recv(c->ws);
    } else {
        rv = bench_conn_read_fast(c);
    }
    if (rv != 0 && !c->close_after_flush) {
        if (!p->ending && c->role != BENCH_ROLE_ECHO) {
            p->r.err_protocol++;
        }
        bench_conn_close(c);
        return;
    }
    if (c->churn_close) {
        bench_conn_goodbye(c);
        bench_conn_close(c);
        return;
    }
    bench_conn_pump(c);
}


static int
bench_conn_make_ws(struct bench_conn *c)
{
    struct bench_proc *p = c->p;
    int rv;

    if (!p->o->strict) {
        return 0;
    }
    if (c->role == BENCH_ROLE_ECHO) {
        rv = wslay_event_context_server_init(&c->ws, &p->cb, c);
    } else {
        rv = wslay_event_context_client_init(&c->ws, &p->cb, c);
    }
    if (rv != 0) {
        c->ws = NULL;
        return -1;
    }
    wslay_event_config_set_max_recv_msg_length(c->ws, RELAY_MSG_MAX);
    return 0;
}


/* The head is complete: hand the bytes after it to wslay. */
static void
bench_conn_start_ws(struct bench_conn *c, size_t head_len)
{
    struct bench_proc *p = c->p;
    char *h = c->hbuf;
    size_t left = c->hlen - head_len;

    c->hbuf = NULL;
    c->hlen = 0;
    bench_conn_opened(c);
    if (c->state != BENCH_ST_OPEN) {
        free(h);
        return;
    }
    if (left > 0) {
        p->rd = (const uint8_t *)h + head_len;
        p->rd_len = left;
        p->rd_pos = 0;
        bench_conn_feed(c);
    } else {
        bench_conn_pump(c);
    }
    free(h);
}


static void
bench_conn_read_upgrade(struct bench_conn *c)
{
    struct bench_proc *p = c->p;
    const char *end;
    size_t head;
    ssize_t n;
    int status;

    n = read(c->fd, c->hbuf + c->hlen, BENCH_HBUF_SIZE - 1 - c->hlen);
    if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        p->r.err_handshake++;
        bench_conn_close(c);
        return;
    }
    c->hlen += (size_t)n;
    c->hbuf[c->hlen] = '\0';
    end = memmem(c->hbuf, c->hlen, "\r\n\r\n", 4);
    if (end == NULL) {
        if (c->hlen >= BENCH_HBUF_SIZE - 1) {
            p->r.err_handshake++;
            bench_conn_close(c);
        }
        return;
    }
    head = (size_t)(end - c->hbuf) + 4;

    if (c->hlen < 13 || memcmp(c->hbuf, "HTTP/1.1 ", 9) != 0) {
        status = 0;
    } else {
        status = atoi(c->hbuf + 9);
    }
    if (status != 101
        || memmem(c->hbuf, head, BENCH_WS_ACCEPT, 28) == NULL
        || bench_conn_make_ws(c) != 0) {
        p->r.err_handshake++;
        p->r.last_http = (uint64_t)status;
        bench_conn_close(c);
        return;
    }
    bench_conn_start_ws(c, head);
}


static void
bench_conn_read_request(struct bench_conn *c)
{
    struct relay_http_request req;
    char accept[29], resp[256];
    size_t len;
    ssize_t n;
    int rc;

    n = read(c->fd, c->hbuf + c->hlen, BENCH_HBUF_SIZE - c->hlen);
    if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        bench_conn_close(c);
        return;
    }
    c->hlen += (size_t)n;
    rc = relay_http_parse(c->hbuf, c->hlen, &req);
    if (rc == RELAY_HTTP_AGAIN && c->hlen < BENCH_HBUF_SIZE) {
        return;
    }
    if (rc != RELAY_HTTP_OK || !req.hdr[RELAY_HDR_WS_KEY].present
        || relay_http_ws_accept(c->hbuf + req.hdr[RELAY_HDR_WS_KEY].value.off,
                                req.hdr[RELAY_HDR_WS_KEY].value.len, accept)
           != 0) {
        bench_conn_close(c);
        return;
    }
    len = relay_http_switching_response(resp, sizeof(resp), accept);
    if (len == 0 || write(c->fd, resp, len) != (ssize_t)len
        || bench_conn_make_ws(c) != 0) {
        bench_conn_close(c);
        return;
    }
    bench_conn_start_ws(c, req.head_len);
}


static void
bench_conn_send_upgrade(struct bench_conn *c)
{
    struct bench_proc *p = c->p;
    const struct bench_opts *o = p->o;
    char req[768];
    socklen_t sl = sizeof(int);
    int err = 0, len;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) == -1
        || err != 0) {
        p->r.err_connect++;
        bench_conn_close(c);
        return;
    }
    len = snprintf(req, sizeof(req),
                   "GET %s HTTP/1.1\r\n"
                   "Host: %s:%d\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " BENCH_WS_KEY "\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "x-pyrycode-server: bench-%s-%" PRIu32 "\r\n"
                   "%s"
                   "User-Agent: relay-bench\r\n\r\n",
                   c->role == BENCH_ROLE_BINARY ? "/v1/server" : o->path,
                   o->host, o->port, o->nonce, c->sid,
                   c->role == BENCH_ROLE_BINARY
                   ? "x-pyrycode-version: relay-bench\r\n" : "");
    /* a fresh socket's send buffer always takes a request this small */
    if (write(c->fd, req, (size_t)len) != len) {
        p->r.err_connect++;
        bench_conn_close(c);
        return;
    }
    c->hbuf = malloc(BENCH_HBUF_SIZE);
    if (c->hbuf == NULL) {
        p->r.err_connect++;
        bench_conn_close(c);
        return;
    }
    c->state = BENCH_ST_UPGRADING;
    bench_conn_set_events(c, EV_READ);
}


static void
bench_conn_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct bench_conn *c = io->data;
    struct bench_proc *p = c->p;
    ssize_t n;

    switch (c->state) {
    case BENCH_ST_CONNECTING:
        bench_conn_send_upgrade(c);
        return;

    case BENCH_ST_UPGRADING:
        bench_conn_read_upgrade(c);
        return;

    case BENCH_ST_ACCEPTING:
        bench_conn_read_request(c);
        return;

    case BENCH_ST_OPEN:
        break;

    default:
        return;
    }

    if (revents & EV_WRITE) {
        if (bench_conn_flush(c) != 0) {
            if (!p->ending && c->role != BENCH_ROLE_ECHO) {
                p->r.err_closed++;
            }
            bench_conn_close(c);
            return;
        }
    }
    if (!(revents & EV_READ)) {
        return;
    }

    /* one read per wakeup: level-triggered libev comes back for the rest */
    n = read(c->fd, p->rbuf, sizeof(p->rbuf));
    if (n == -1) {
        if (errno == EAGAIN || errno == EINTR) {
            return;
        }
    }
    if (n <= 0) {
        if (!p->ending && !c->closing && c->role != BENCH_ROLE_ECHO) {
            p->r.err_closed++;
        }
        bench_conn_close(c);
        return;
    }
    p->rd = p->rbuf;
    p->rd_len = (size_t)n;
    p->rd_pos = 0;
    bench_conn_feed(c);
}


/* The next source address: each one carries at most --per-ip upgrades. */
static int
bench_proc_next_src(struct bench_proc *p, struct sockaddr_in *sa)
{
    const struct bench_opts *o = p->o;
    uint64_t ip;

    if (p->ip_used >= o->per_ip) {
        p->ip_slot++;
        p->ip_used = 0;
    }
    p->ip_used++;
    ip = (uint64_t)o->src_base + (uint64_t)p->index
         + (uint64_t)o->procs * p->ip_slot;
    if (ip >= 0x7fffffffu) {
        return -1;
    }
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl((uint32_t)ip);
    return 0;
}


static void
bench_conn_connect(struct bench_conn *c)
{
    struct bench_proc *p = c->p;
    const struct bench_opts *o = p->o;
    struct sockaddr_in src, dst;
    int one = 1, fd;

    c->state = BENCH_ST_CONNECTING;
    c->fd = -1;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        goto failed;
    }
    c->fd = fd;
    /* defer the port to connect(): the 4-tuple, not the address, is unique */
    (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                     sizeof(one));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bench_proc_next_src(p, &src) != 0
        || bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1) {
        goto failed;
    }
    memset(&dst, 0, sizeof(dst));
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t)o->port);
    (void)inet_pton(AF_INET, o->host, &dst.sin_addr);
    if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) == -1
        && errno != EINPROGRESS) {
        goto failed;
    }
    ev_io_init(&c->io, bench_conn_io_cb, fd, EV_WRITE);
    c->io.data = c;
    c->events = EV_WRITE;
    ev_io_start(p->loop, &c->io);
    return;

failed:
    p->r.err_connect++;
    if (c->fd != -1) {
        close(c->fd);
        c->fd = -1;
    }
    c->state = BENCH_ST_DONE;
    bench_conn_setup_failed(c);
}


/* ------------------------------------------------------------ the phases */

static void
bench_proc_send_ready(struct bench_proc *p)
{
    char b = 'R';

    if (p->ready_sent) {
        return;
    }
    p->ready_sent = 1;
    ev_timer_stop(p->loop, &p->setup_t);
    if (write(p->ready_fd, &b, 1) != 1) {
        ev_break(p->loop, EVBREAK_ALL);
    }
}


/*
 * Start connections up to the concurrency limit.  Phones wait until every
 * binary has opened or failed: a phone for an id nobody holds gets 4404.
 */
static void
bench_proc_pump(struct bench_proc *p)
{
    struct bench_conn *c;
    uint64_t now;

    while (p->connecting < (size_t)p->o->concurrency
           && p->next_start < p->nconns) {
        if (p->next_start >= p->nbin && p->bin_pending > 0) {
            break;
        }
        c = &p->conns[p->next_start++];
        now = bench_now_ns();
        if (c->role == BENCH_ROLE_BINARY && p->r.bin_start_ns == 0) {
            p->r.bin_start_ns = now;
        }
        if (c->role == BENCH_ROLE_PHONE && p->r.phone_start_ns == 0) {
            p->r.phone_start_ns = now;
        }
        c->in_setup = 1;
        p->connecting++;
        if (c->role == BENCH_ROLE_BINARY) {
            p->bin_pending++;
        }
        bench_conn_connect(c);
    }
    if (p->next_start >= p->nconns && p->connecting == 0) {
        bench_proc_send_ready(p);
    }
}


static void
bench_proc_setup_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct bench_proc *p = t->data;

    /* go on with what is connected; the JSON shows how much that was */
    bench_proc_send_ready(p);
}


static void
bench_proc_start_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct bench_proc *p = t->data;
    struct bench_result *r = &p->r;

    r->rtt = r->p2b = r->sent = r->up_bytes = r->down_bytes = 0;
    r->p2b_bytes = r->notices = r->skipped = r->churn = 0;
    r->max_ns = 0;
    memset(r->hist, 0, sizeof(r->hist));
    (void)getrusage(RUSAGE_SELF, &p->ru_start);
}


static void
bench_proc_end_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}


/* Open loop: issue what the offered rate owes by now, round robin. */
static void
bench_proc_tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct bench_proc *p = t->data;
    struct bench_conn *c;
    uint64_t now, due, stamp;
    size_t budget, tries;

    if (p->nconns == p->nbin) {
        return;
    }
    now = bench_now_ns();
    due = (uint64_t)((double)(now - p->go_ns) * p->rate / 1e9);
    for (budget = 0; p->issued < due && budget < BENCH_TICK_BUDGET;
         budget++) {
        stamp = p->go_ns + (uint64_t)((double)p->issued * 1e9 / p->rate);
        p->issued++;
        c = NULL;
        for (tries = 0; tries < p->nconns - p->nbin; tries++) {
            c = &p->conns[p->nbin + p->rr];
            p->rr = (p->rr + 1) % (p->nconns - p->nbin);
            if (c->state == BENCH_ST_OPEN) {
                break;
            }
            c = NULL;
        }
        if (c == NULL) {
            return;
        }
        if (c->inflight >= BENCH_OPEN_MAX_INFLIGHT) {
            p->r.skipped++;
            continue;
        }
        bench_phone_send(c, stamp);
        bench_conn_pump(c);
    }
}


static void
bench_proc_go_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct bench_proc *p = io->data;
    const struct bench_opts *o = p->o;
    struct bench_go go;
    uint64_t now;
    size_t i;

    ev_io_stop(loop, io);
    if (read(io->fd, &go, sizeof(go)) != (ssize_t)sizeof(go)) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    now = bench_now_ns();
    p->running = 1;
    p->go_ns = go.go_ns;
    if (o->messages > 0) {
        /* a counted run measures from go; nothing to reset */
        (void)getrusage(RUSAGE_SELF, &p->ru_start);
    } else {
        ev_timer_set(&p->start_t,
                     go.start_ns > now
                     ? (double)(go.start_ns - now) / 1e9 : 0., 0.);
        ev_timer_start(loop, &p->start_t);
    }
    ev_timer_set(&p->end_t,
                 go.end_ns > now ? (double)(go.end_ns - now) / 1e9 : 0., 0.);
    ev_timer_start(loop, &p->end_t);

    if (o->idle > 0) {
        return;
    }
    if (o->rate > 0.0 && !o->churn) {
        ev_timer_set(&p->tick_t, 0.001, 0.001);
        ev_timer_start(loop, &p->tick_t);
        return;
    }
    for (i = p->nbin; i < p->nconns; i++) {
        struct bench_conn *c = &p->conns[i];

        if (c->state != BENCH_ST_OPEN) {
            continue;
        }
        if (o->churn) {
            bench_phone_send(c, now);
        } else {
            bench_phone_refill(c);
        }
        bench_conn_pump(c);
    }
}


static void
bench_proc_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}


static void
bench_proc_init(struct bench_proc *p, const struct bench_opts *o, int index)
{
    memset(p, 0, sizeof(*p));
    p->o = o;
    p->index = index;
    p->ready_fd = -1;
    p->go_fd = -1;
    p->cb.recv_callback = bench_ws_recv_cb;
    p->cb.send_callback = bench_ws_send_cb;
    p->cb.genmask_callback = bench_ws_genmask_cb;
    p->cb.on_msg_recv_callback = bench_ws_msg_cb;
    p->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)getpid() << 17)
             ^ bench_now_ns();
    p->loop = ev_loop_new(EVFLAG_AUTO);
}


/* Say goodbye properly so the relay logs closes, not a flood of drops. */
static void
bench_proc_close_all(struct bench_proc *p)
{
    size_t i;

    p->ending = 1;
    for (i = 0; i < p->nconns; i++) {
        struct bench_conn *c = &p->conns[i];

        if (c->state == BENCH_ST_OPEN) {
            bench_conn_goodbye(c);
        }
        bench_conn_release(c);
    }
}


/* One generator process: connect its share, wait for go, run, report. */
static int
bench_child_main(const struct bench_opts *o, int index, int ready_fd,
                 int go_fd, int result_fd)
{
    struct bench_proc *p;
    struct rusage ru;
    size_t nphones, i, k;
    long sid, per;
    ssize_t n;
    size_t off;

    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return 1;
    }
    bench_proc_init(p, o, index);
    if (p->loop == NULL) {
        return 1;
    }
    p->ready_fd = ready_fd;
    p->go_fd = go_fd;

    /* binaries first, then phones: conns[0..nbin) are the binaries */
    nphones = 0;
    for (sid = index; sid < o->servers; sid += o->procs) {
        per = o->phones;
        if (o->idle > 0 && o->idle - sid * o->phones < per) {
            per = o->idle - sid * o->phones;
        }
        nphones += (size_t)per;
        if (!o->target_echo) {
            p->nbin++;
        }
    }
    p->nconns = p->nbin + nphones;
    p->conns = calloc(p->nconns + 1, sizeof(*p->conns));
    p->msg = malloc((size_t)o->size);
    if (p->conns == NULL || p->msg == NULL) {
        return 1;
    }
    memset(p->msg, 'p', (size_t)o->size);
    p->msg[o->size - 2] = '"';
    p->msg[o->size - 1] = ']';
    p->rate = o->rate / (double)o->procs;

    k = 0;
    i = p->nbin;
    for (sid = index; sid < o->servers; sid += o->procs) {
        long j;

        per = o->phones;
        if (o->idle > 0 && o->idle - sid * o->phones < per) {
            per = o->idle - sid * o->phones;
        }
        if (!o->target_echo) {
            p->conns[k].role = BENCH_ROLE_BINARY;
            p->conns[k].sid = (uint32_t)sid;
            k++;
        }
        for (j = 0; j < per; j++) {
            p->conns[i].role = BENCH_ROLE_PHONE;
            p->conns[i].sid = (uint32_t)sid;
            i++;
        }
    }
    for (i = 0; i < p->nconns; i++) {
        p->conns[i].p = p;
        p->conns[i].fd = -1;
    }

    ev_timer_init(&p->setup_t, bench_proc_setup_timeout_cb,
                  o->setup_timeout, 0.);
    p->setup_t.data = p;
    ev_timer_start(p->loop, &p->setup_t);
    ev_timer_init(&p->start_t, bench_proc_start_cb, 0., 0.);
    p->start_t.data = p;
    ev_timer_init(&p->end_t, bench_proc_end_cb, 0., 0.);
    p->end_t.data = p;
    ev_timer_init(&p->tick_t, bench_proc_tick_cb, 0.001, 0.001);
    p->tick_t.data = p;
    ev_io_init(&p->go_w, bench_proc_go_cb, go_fd, EV_READ);
    p->go_w.data = p;
    ev_io_start(p->loop, &p->go_w);
    ev_signal_init(&p->term_w, bench_proc_signal_cb, SIGTERM);
    ev_signal_start(p->loop, &p->term_w);

    bench_proc_pump(p);
    ev_run(p->loop, 0);

    (void)getrusage(RUSAGE_SELF, &ru);
    p->r.cpu_s = (double)(ru.ru_utime.tv_sec - p->ru_start.ru_utime.tv_sec)
                 + (double)(ru.ru_stime.tv_sec - p->ru_start.ru_stime.tv_sec)
                 + (double)(ru.ru_utime.tv_usec
                            - p->ru_start.ru_utime.tv_usec) / 1e6
                 + (double)(ru.ru_stime.tv_usec
                            - p->ru_start.ru_stime.tv_usec) / 1e6;
    if (o->messages > 0 && p->r.finish_ns == 0) {
        p->r.finish_ns = bench_now_ns();
    }
    /* the counts stop at the end of the window, before the goodbyes */
    {
        struct bench_result snap = p->r;

        bench_proc_close_all(p);
        off = 0;
        while (off < sizeof(snap)) {
            n = write(result_fd, (char *)&snap + off, sizeof(snap) - off);
            if (n == -1 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return 1;
            }
            off += (size_t)n;
        }
    }
    return 0;
}


/* ----------------------------------------------------- sampling the target */

struct bench_sample {
    double cpu_s;
    uint64_t syscr;
    uint64_t syscw;
};


static void
bench_sample_pids(const struct bench_opts *o, struct bench_sample *s)
{
    char path[64], buf[2048];
    unsigned long long ut, st;
    const char *q;
    FILE *f;
    size_t n;
    int i;

    memset(s, 0, sizeof(*s));
    for (i = 0; i < o->npids; i++) {
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)o->pids[i]);
        f = fopen(path, "r");
        if (f != NULL) {
            n = fread(buf, 1, sizeof(buf) - 1, f);
            buf[n] = '\0';
            fclose(f);
            /* the name may hold spaces and parentheses: count from its end */
            q = strrchr(buf, ')');
            if (q != NULL
                && sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u "
                          "%*u %*u %llu %llu", &ut, &st) == 2) {
                s->cpu_s += (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
            }
        }
        snprintf(path, sizeof(path), "/proc/%d/io", (int)o->pids[i]);
        f = fopen(path, "r");
        if (f != NULL) {
            while (fgets(buf, sizeof(buf), f) != NULL) {
                unsigned long long v;

                if (sscanf(buf, "syscr: %llu", &v) == 1) {
                    s->syscr += v;
                } else if (sscanf(buf, "syscw: %llu", &v) == 1) {
                    s->syscw += v;
                }
            }
            fclose(f);
        }
    }
}


/*
 * Count every syscall of the target over the window with perf: syscr and
 * syscw miss recv/send/epoll, which is most of what a proxy does.
 */
static pid_t
bench_perf_start(const struct bench_opts *o, double secs, char *out,
                 size_t outlen)
{
    char pids[BENCH_MAX_PIDS * 12], dur[32];
    size_t off = 0;
    pid_t pid;
    int i, fd;

    snprintf(out, outlen, "/tmp/relay-bench-perf.XXXXXX");
    fd = mkstemp(out);
    if (fd == -1) {
        return -1;
    }
    close(fd);
    pids[0] = '\0';
    for (i = 0; i < o->npids && off < sizeof(pids) - 12; i++) {
        off += (size_t)snprintf(pids + off, sizeof(pids) - off, "%s%d",
                                i ? "," : "", (int)o->pids[i]);
    }
    snprintf(dur, sizeof(dur), "%.3f", secs);
    pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);

        if (devnull != -1) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("perf", "perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter",
               "-p", pids, "-o", out, "--", "sleep", dur, (char *)NULL);
        _exit(127);
    }
    return pid;
}


static double
bench_perf_finish(pid_t pid, const char *path)
{
    char line[512];
    double v = -1.0;
    FILE *f;
    int st, i;

    /* perf stops with its sleep; give it a bounded grace period */
    for (i = 0; i < 100; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            break;
        }
        usleep(50000);
    }
    if (i == 100) {
        kill(pid, SIGINT);
        (void)waitpid(pid, &st, 0);
    }
    f = fopen(path, "r");
    if (f != NULL) {
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strstr(line, "raw_syscalls") != NULL) {
                v = strtod(line, NULL);
            }
        }
        fclose(f);
    }
    unlink(path);
    return v;
}


/* ---------------------------------------------------------- the parent */

static int
bench_read_full(int fd, void *buf, size_t len, int timeout_ms)
{
    struct pollfd pfd;
    size_t off = 0;
    ssize_t n;

    while (off < len) {
        pfd.fd = fd;
        pfd.events = POLLIN;
        if (poll(&pfd, 1, timeout_ms) <= 0) {
            return -1;
        }
        n = read(fd, (char *)buf + off, len - off);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        off += (size_t)n;
    }
    return 0;
}


static void
bench_parent_signal(int sig)
{
    int i;

    bench_stop = 1;
    for (i = 0; i < bench_nchildren; i++) {
        if (bench_children[i] > 0) {
            kill(bench_children[i], SIGTERM);
        }
    }
}


static void
bench_print_json(const struct bench_opts *o, const struct bench_result *a,
                 double window, double gen_cpu_total, int have_target,
                 const struct bench_sample *s0, const struct bench_sample *s1,
                 double perf_syscalls)
{
    double fwd, conn_rate = 0.0, cpu, sysc, q[4];
    uint64_t errors;

    fwd = o->target_echo ? 2.0 * (double)a->rtt
                         : (double)a->rtt + (double)a->p2b;
    if (a->phone_end_ns > a->phone_start_ns && a->phones_open > 0) {
        conn_rate = (double)a->phones_open
                    / ((double)(a->phone_end_ns - a->phone_start_ns) / 1e9);
    }
    q[0] = bench_hist_quantile(a->hist, a->rtt, 0.50, a->max_ns);
    q[1] = bench_hist_quantile(a->hist, a->rtt, 0.90, a->max_ns);
    q[2] = bench_hist_quantile(a->hist, a->rtt, 0.99, a->max_ns);
    q[3] = bench_hist_quantile(a->hist, a->rtt, 0.999, a->max_ns);
    errors = a->err_connect + a->err_handshake + a->err_closed
             + a->err_protocol + a->err_bad_msg;
    if (window <= 0.0) {
        window = 1e-9;
    }

    printf("{\"label\":\"%s\",\"target\":\"%s\",\"procs\":%ld,"
           "\"servers\":%ld,\"phones_per_id\":%ld,\"size\":%ld,"
           "\"window\":%ld,\"rate\":%.0f,\"mode\":\"%s\","
           "\"duration_s\":%.3f,",
           o->label, o->target_echo ? "echo" : "relay", o->procs,
           o->servers, o->phones, o->size, o->window, o->rate,
           o->idle > 0 ? "idle" : o->churn ? "churn"
           : o->messages > 0 ? "count" : o->rate > 0 ? "open" : "closed",
           window);
    printf("\"binaries_open\":%" PRIu64 ",\"phones_open\":%" PRIu64 ","
           "\"connect_per_s\":%.1f,\"churn_per_s\":%.1f,",
           a->binaries_open, a->phones_open, conn_rate,
           (double)a->churn / window);
    printf("\"round_trips\":%" PRIu64 ",\"forwarded\":%.0f,"
           "\"rtt_per_s\":%.1f,\"fwd_msgs_per_s\":%.1f,"
           "\"p2b_msgs_per_s\":%.1f,\"b2p_msgs_per_s\":%.1f,"
           "\"up_MBps\":%.3f,\"down_MBps\":%.3f,",
           a->rtt, fwd, (double)a->rtt / window, fwd / window,
           (o->target_echo ? (double)a->rtt : (double)a->p2b) / window,
           (double)a->rtt / window, (double)a->up_bytes / window / 1e6,
           (double)a->down_bytes / window / 1e6);
    printf("\"lat_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
           "\"p99.9\":%.1f,\"max\":%.1f},",
           q[0] / 1e3, q[1] / 1e3, q[2] / 1e3, q[3] / 1e3,
           (double)a->max_ns / 1e3);
    printf("\"gen_cpu_s\":%.3f,\"gen_cpu_total_s\":%.3f,",
           a->cpu_s, gen_cpu_total);
    if (have_target) {
        cpu = s1->cpu_s - s0->cpu_s;
        sysc = (double)(s1->syscr + s1->syscw - s0->syscr - s0->syscw);
        printf("\"target_cpu_s\":%.3f,\"target_cpu_us_per_msg\":%.3f,"
               "\"target_syscrw\":%.0f,\"target_syscrw_per_msg\":%.3f,",
               cpu, fwd > 0 ? cpu * 1e6 / fwd : 0.0, sysc,
               fwd > 0 ? sysc / fwd : 0.0);
        if (perf_syscalls >= 0.0) {
            printf("\"target_syscalls\":%.0f,"
                   "\"target_syscalls_per_msg\":%.3f,",
                   perf_syscalls, fwd > 0 ? perf_syscalls / fwd : 0.0);
        }
    }
    printf("\"skipped\":%" PRIu64 ",\"notices\":%" PRIu64 ","
           "\"errors\":{\"total\":%" PRIu64 ",\"connect\":%" PRIu64 ","
           "\"handshake\":%" PRIu64 ",\"closed\":%" PRIu64 ","
           "\"protocol\":%" PRIu64 ",\"bad_msg\":%" PRIu64 ","
           "\"last_http\":%" PRIu64 ",\"last_close\":%" PRIu64 "}}\n",
           a->skipped, a->notices, errors, a->err_connect, a->err_handshake,
           a->err_closed, a->err_protocol, a->err_bad_msg, a->last_http,
           a->last_close);
    fflush(stdout);
}


static void
bench_merge(struct bench_result *a, const struct bench_result *r)
{
    unsigned i;

    a->rtt += r->rtt;
    a->p2b += r->p2b;
    a->sent += r->sent;
    a->up_bytes += r->up_bytes;
    a->down_bytes += r->down_bytes;
    a->p2b_bytes += r->p2b_bytes;
    a->notices += r->notices;
    a->skipped += r->skipped;
    a->churn += r->churn;
    a->binaries_open += r->binaries_open;
    a->phones_open += r->phones_open;
    a->err_connect += r->err_connect;
    a->err_handshake += r->err_handshake;
    a->err_closed += r->err_closed;
    a->err_protocol += r->err_protocol;
    a->err_bad_msg += r->err_bad_msg;
    if (r->last_http != 0) {
        a->last_http = r->last_http;
    }
    if (r->last_close != 0) {
        a->last_close = r->last_close;
    }
    if (r->bin_start_ns != 0
        && (a->bin_start_ns == 0 || r->bin_start_ns < a->bin_start_ns)) {
        a->bin_start_ns = r->bin_start_ns;
    }
    if (r->phone_start_ns != 0 && (a->phone_start_ns == 0
                                   || r->phone_start_ns < a->phone_start_ns)) {
        a->phone_start_ns = r->phone_start_ns;
    }
    if (r->bin_end_ns > a->bin_end_ns) {
        a->bin_end_ns = r->bin_end_ns;
    }
    if (r->phone_end_ns > a->phone_end_ns) {
        a->phone_end_ns = r->phone_end_ns;
    }
    if (r->finish_ns > a->finish_ns) {
        a->finish_ns = r->finish_ns;
    }
    if (r->max_ns > a->max_ns) {
        a->max_ns = r->max_ns;
    }
    a->cpu_s += r->cpu_s;
    for (i = 0; i < BENCH_HIST_BUCKETS; i++) {
        a->hist[i] += r->hist[i];
    }
}


static int
bench_run_load(const struct bench_opts *o)
{
    int ready[2], go[2], res[BENCH_MAX_PROCS][2];
    struct bench_result *r, *a;
    struct bench_sample s0, s1;
    struct bench_go g;
    struct rusage ru_self, ru_kids;
    double window, gen_cpu, perf_syscalls = -1.0;
    char perf_out[64];
    pid_t perf_pid = -1;
    long k, got;
    char b;
    int fd, st;

    if (pipe2(ready, O_CLOEXEC) == -1 || pipe2(go, O_CLOEXEC) == -1) {
        perror("relay-bench: pipe");
        return 1;
    }
    signal(SIGTERM, bench_parent_signal);
    signal(SIGINT, bench_parent_signal);
    for (k = 0; k < o->procs; k++) {
        if (pipe2(res[k], O_CLOEXEC) == -1) {
            perror("relay-bench: pipe");
            return 1;
        }
        bench_children[k] = fork();
        if (bench_children[k] == -1) {
            perror("relay-bench: fork");
            return 1;
        }
        if (bench_children[k] == 0) {
            (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
            signal(SIGTERM, SIG_DFL);
            signal(SIGINT, SIG_DFL);
            close(ready[0]);
            close(go[1]);
            close(res[k][0]);
            _exit(bench_child_main(o, (int)k, ready[1], go[0], res[k][1]));
        }
        bench_nchildren++;
        close(res[k][1]);
    }
    close(ready[1]);
    close(go[0]);

    /* every child connects its share, then says ready */
    for (got = 0; got < o->procs && !bench_stop; got++) {
        if (bench_read_full(ready[0], &b, 1,
                            (int)(o->setup_timeout * 1000.0) + 30000) != 0) {
            fprintf(stderr, "relay-bench: a generator never got ready\n");
            bench_parent_signal(SIGTERM);
            break;
        }
    }

    g.go_ns = bench_now_ns();
    g.start_ns = o->messages > 0 ? g.go_ns
                 : g.go_ns + (uint64_t)(o->warmup * 1e9);
    g.end_ns = g.start_ns + (uint64_t)(o->duration * 1e9);
    for (k = 0; k < o->procs; k++) {
        if (write(go[1], &g, sizeof(g)) != (ssize_t)sizeof(g)) {
            break;
        }
    }
    if (o->ready_file != NULL) {
        fd = open(o->ready_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                  0644);
        if (fd != -1) {
            close(fd);
        }
    }

    bench_sleep_until(g.start_ns);
    bench_sample_pids(o, &s0);
    if (o->perf && o->npids > 0) {
        perf_pid = bench_perf_start(o, o->duration, perf_out,
                                    sizeof(perf_out));
    }
    if (o->messages == 0) {
        bench_sleep_until(g.end_ns);
        bench_sample_pids(o, &s1);
    }

    a = calloc(1, sizeof(*a));
    r = malloc(sizeof(*r));
    if (a == NULL || r == NULL) {
        return 1;
    }
    for (k = 0; k < o->procs; k++) {
        if (bench_read_full(res[k][0], r, sizeof(*r),
                            (int)(o->duration * 1000.0) + 60000) != 0) {
            fprintf(stderr, "relay-bench: generator %ld sent no result\n", k);
            a->err_protocol++;
            continue;
        }
        bench_merge(a, r);
    }
    if (o->messages > 0) {
        bench_sample_pids(o, &s1);
    }
    if (perf_pid > 0) {
        perf_syscalls = bench_perf_finish(perf_pid, perf_out);
    }
    for (k = 0; k < o->procs; k++) {
        (void)waitpid(bench_children[k], &st, 0);
    }

    window = o->messages > 0
             ? (double)(a->finish_ns - g.start_ns) / 1e9
             : (double)(g.end_ns - g.start_ns) / 1e9;
    (void)getrusage(RUSAGE_SELF, &ru_self);
    (void)getrusage(RUSAGE_CHILDREN, &ru_kids);
    gen_cpu = (double)(ru_self.ru_utime.tv_sec + ru_self.ru_stime.tv_sec
                       + ru_kids.ru_utime.tv_sec + ru_kids.ru_stime.tv_sec)
              + (double)(ru_self.ru_utime.tv_usec + ru_self.ru_stime.tv_usec
                         + ru_kids.ru_utime.tv_usec
                         + ru_kids.ru_stime.tv_usec) / 1e6;
    bench_print_json(o, a, window, gen_cpu, o->npids > 0, &s0, &s1,
                     perf_syscalls);
    free(a);
    free(r);
    return 0;
}


/* ------------------------------------------------------ the echo peer */

static void
bench_echo_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct bench_proc *p = io->data;
    struct bench_conn *c;
    int fd, one = 1, i;

    for (i = 0; i < 64; i++) {
        fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            return;
        }
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->hbuf = malloc(BENCH_HBUF_SIZE);
        if (c->hbuf == NULL) {
            free(c);
            close(fd);
            continue;
        }
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->p = p;
        c->fd = fd;
        c->role = BENCH_ROLE_ECHO;
        c->state = BENCH_ST_ACCEPTING;
        ev_io_init(&c->io, bench_conn_io_cb, fd, EV_READ);
        c->io.data = c;
        c->events = EV_READ;
        ev_io_start(loop, &c->io);
    }
}


static int
bench_echo_child(const struct bench_opts *o, int index)
{
    struct bench_proc *p;
    struct sockaddr_in sa;
    int fd, one = 1;

    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return 1;
    }
    bench_proc_init(p, o, index);
    p->running = 1;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1 || p->loop == NULL) {
        return 1;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)o->serve_echo);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1
        || listen(fd, 4096) == -1) {
        perror("relay-bench: echo listen");
        return 1;
    }
    ev_io_init(&p->listen_w, bench_echo_accept_cb, fd, EV_READ);
    p->listen_w.data = p;
    ev_io_start(p->loop, &p->listen_w);
    ev_timer_init(&p->end_t, bench_proc_end_cb, o->duration, 0.);
    ev_timer_start(p->loop, &p->end_t);
    ev_signal_init(&p->term_w, bench_proc_signal_cb, SIGTERM);
    ev_signal_start(p->loop, &p->term_w);
    ev_signal_init(&p->int_w, bench_proc_signal_cb, SIGINT);
    ev_signal_start(p->loop, &p->int_w);
    ev_run(p->loop, 0);
    return 0;
}


static int
bench_run_echo(const struct bench_opts *o)
{
    long k;
    int st;

    if (o->procs == 1) {
        return bench_echo_child(o, 0);
    }
    signal(SIGTERM, bench_parent_signal);
    signal(SIGINT, bench_parent_signal);
    for (k = 0; k < o->procs; k++) {
        bench_children[k] = fork();
        if (bench_children[k] == 0) {
            (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
            signal(SIGTERM, SIG_DFL);
            signal(SIGINT, SIG_DFL);
            _exit(bench_echo_child(o, (int)k));
        }
        if (bench_children[k] > 0) {
            bench_nchildren++;
        }
    }
    for (k = 0; k < bench_nchildren; k++) {
        while (waitpid(bench_children[k], &st, 0) == -1 && errno == EINTR) {
        }
    }
    return 0;
}


/* ------------------------------------------------------------- options */

static void
bench_usage(FILE *f)
{
    fprintf(f,
"usage: relay-bench --port PORT [options]     load the relay (or a proxy)\n"
"       relay-bench --serve-echo PORT [--procs K] [--duration S]\n"
"\n"
"  --host ADDR            target address, loopback only (127.0.0.1)\n"
"  --port PORT            target port\n"
"  --target relay|echo    relay: binaries + phones; echo: phones only, the\n"
"                         peer behind a proxy echoes (default relay)\n"
"  --path PATH            phone request path (default /v1/client)\n"
"  --servers N            server-ids (default 1)\n"
"  --phones P             phones per id, 1..16 (default 1, 16 with --idle)\n"
"  --size BYTES           phone message size, %d..%d (default 64)\n"
"  --window W             closed loop: messages in flight per phone (1)\n"
"  --rate R               open loop: messages/s offered in total\n"
"  --messages M           closed loop, M messages per phone, then stop\n"
"  --duration S           measured seconds (default 10)\n"
"  --warmup S             seconds before measuring (default 2)\n"
"  --procs K              generator processes (default 1)\n"
"  --src-base ADDR        first source address (default 127.1.0.1)\n"
"  --per-ip N             upgrades per source address (default 15)\n"
"  --idle K               K idle phones (+ their binaries); hold --duration\n"
"  --churn                phones connect, send one, close, reconnect\n"
"  --concurrency C        connects in flight per process (default 128)\n"
"  --setup-timeout S      give up connecting after S seconds (default 120)\n"
"  --ready-file F         create F once everything is connected\n"
"  --pids P1,P2,...       target processes: CPU, syscr/syscw in the window\n"
"  --perf-syscalls        also count all their syscalls with perf stat\n"
"  --strict               read through wslay (checks UTF-8; costs CPU)\n"
"  --label TEXT           copied into the JSON line\n"
"  --serve-echo PORT      be a WebSocket echo server on 127.0.0.1:PORT\n",
            BENCH_SIZE_MIN, BENCH_SIZE_MAX);
}


static int
bench_parse_pids(struct bench_opts *o, const char *s)
{
    char *end;
    long v;

    o->npids = 0;
    while (*s != '\0') {
        v = strtol(s, &end, 10);
        if (end == s || v <= 0 || o->npids >= BENCH_MAX_PIDS) {
            return -1;
        }
        o->pids[o->npids++] = (pid_t)v;
        s = end;
        if (*s == ',') {
            s++;
        }
    }
    return 0;
}


static int
bench_parse(struct bench_opts *o, int argc, char **argv)
{
    static const struct option lo[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"target", required_argument, NULL, 'T'},
        {"path", required_argument, NULL, 'P'},
        {"servers", required_argument, NULL, 'n'},
        {"phones", required_argument, NULL, 'f'},
        {"size", required_argument, NULL, 's'},
        {"window", required_argument, NULL, 'w'},
        {"rate", required_argument, NULL, 'r'},
        {"messages", required_argument, NULL, 'm'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'W'},
        {"procs", required_argument, NULL, 'k'},
        {"src-base", required_argument, NULL, 'b'},
        {"per-ip", required_argument, NULL, 'i'},
        {"idle", required_argument, NULL, 'I'},
        {"churn", no_argument, NULL, 'c'},
        {"concurrency", required_argument, NULL, 'C'},
        {"setup-timeout", required_argument, NULL, 't'},
        {"ready-file", required_argument, NULL, 'R'},
        {"pids", required_argument, NULL, 'x'},
        {"perf-syscalls", no_argument, NULL, 'y'},
        {"strict", no_argument, NULL, 'S'},
        {"label", required_argument, NULL, 'L'},
        {"serve-echo", required_argument, NULL, 'E'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}
    };
    struct in_addr ia;
    int ch, phones_set = 0, duration_set = 0;

    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->path = "/v1/client";
    o->servers = 1;
    o->phones = 1;
    o->size = 64;
    o->window = 1;
    o->duration = 10.0;
    o->warmup = 2.0;
    o->procs = 1;
    o->src_base = 0x7f010001u;
    o->per_ip = 15;
    o->setup_timeout = 120.0;
    o->concurrency = 128;
    o->label = "";

    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (ch) {
        case 'H': o->host = optarg; break;
        case 'p': o->port = atoi(optarg); break;
        case 'T':
            if (strcmp(optarg, "echo") == 0) {
                o->target_echo = 1;
            } else if (strcmp(optarg, "relay") != 0) {
                return -1;
            }
            break;
        case 'P': o->path = optarg; break;
        case 'n': o->servers = atol(optarg); break;
        case 'f': o->phones = atol(optarg); phones_set = 1; break;
        case 's': o->size = atol(optarg); break;
        case 'w': o->window = atol(optarg); break;
        case 'r': o->rate = atof(optarg); break;
        case 'm': o->messages = atol(optarg); break;
        case 'd': o->duration = atof(optarg); duration_set = 1; break;
        case 'W': o->warmup = atof(optarg); break;
        case 'k': o->procs = atol(optarg); break;
        case 'b':
            if (inet_pton(AF_INET, optarg, &ia) != 1) {
                return -1;
            }
            o->src_base = ntohl(ia.s_addr);
            break;
        case 'i': o->per_ip = atol(optarg); break;
        case 'I': o->idle = atol(optarg); break;
        case 'c': o->churn = 1; break;
        case 'C': o->concurrency = atol(optarg); break;
        case 't': o->setup_timeout = atof(optarg); break;
        case 'R': o->ready_file = optarg; break;
        case 'x':
            if (bench_parse_pids(o, optarg) != 0) {
                return -1;
            }
            break;
        case 'y': o->perf = 1; break;
        case 'S': o->strict = 1; break;
        case 'L': o->label = optarg; break;
        case 'E': o->serve_echo = atoi(optarg); break;
        case 'h': bench_usage(stdout); exit(0);
        default: return -1;
        }
    }
    if (optind != argc) {
        return -1;
    }
    if (o->serve_echo != 0 && !duration_set) {
        o->duration = 3600.0;
    }
    if (o->idle > 0) {
        if (!phones_set) {
            o->phones = RELAY_PHONES_MAX;
        }
        o->servers = (o->idle + o->phones - 1) / o->phones;
        o->warmup = 0.0;
    }
    return 0;
}


static int
bench_check(const struct bench_opts *o)
{
    struct in_addr ia;
    struct rlimit rl;
    long per_proc;

    if (o->procs < 1 || o->procs > BENCH_MAX_PROCS) {
        fprintf(stderr, "relay-bench: --procs must be 1..%d\n",
                BENCH_MAX_PROCS);
        return -1;
    }
    if (o->duration <= 0.0 || o->duration > 86400.0 || o->warmup < 0.0
        || o->warmup > 600.0 || o->setup_timeout <= 0.0
        || o->setup_timeout > 3600.0) {
        fprintf(stderr, "relay-bench: durations out of range\n");
        return -1;
    }
    if (o->serve_echo != 0) {
        if (o->serve_echo < 1 || o->serve_echo > 65535) {
            fprintf(stderr, "relay-bench: bad --serve-echo port\n");
            return -1;
        }
        return 0;
    }
    /* a load generator pointed at someone else's host is an attack */
    if (inet_pton(AF_INET, o->host, &ia) != 1
        || (ntohl(ia.s_addr) >> 24) != 127) {
        fprintf(stderr, "relay-bench: --host must be an IPv4 loopback "
                "address\n");
        return -1;
    }
    if ((o->src_base >> 24) != 127) {
        fprintf(stderr, "relay-bench: --src-base must be in 127.0.0.0/8\n");
        return -1;
    }
    if (o->port < 1 || o->port > 65535) {
        fprintf(stderr, "relay-bench: --port is required (1..65535)\n");
        return -1;
    }
    if (o->servers < 1 || o->servers > 1000000 || o->phones < 1
        || o->phones > RELAY_PHONES_MAX || o->window < 1
        || o->window > 4096 || o->rate < 0.0 || o->rate > 1e7
        || o->messages < 0 || o->per_ip < 1 || o->per_ip > 1000
        || o->concurrency < 1 || o->concurrency > 10000 || o->idle < 0) {
        fprintf(stderr, "relay-bench: an option is out of range (phones "
                "1..%d, window 1..4096)\n", RELAY_PHONES_MAX);
        return -1;
    }
    if (o->size < BENCH_SIZE_MIN || o->size > BENCH_SIZE_MAX) {
        fprintf(stderr, "relay-bench: --size must be %d..%d\n",
                BENCH_SIZE_MIN, BENCH_SIZE_MAX);
        return -1;
    }
    if (o->servers < o->procs) {
        fprintf(stderr, "relay-bench: fewer server-ids than --procs\n");
        return -1;
    }
    per_proc = (o->servers + o->procs - 1) / o->procs * (o->phones + 1);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0
        && (rlim_t)per_proc + 64 > rl.rlim_cur) {
        fprintf(stderr, "relay-bench: %ld sockets per process exceed "
                "RLIMIT_NOFILE %lu; use more --procs\n", per_proc,
                (unsigned long)rl.rlim_cur);
        return -1;
    }
    return 0;
}


int
main(int argc, char **argv)
{
    static struct bench_opts o;
    struct rlimit rl;
    unsigned char nb[4];

    if (bench_parse(&o, argc, argv) != 0) {
        bench_usage(stderr);
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (bench_check(&o) != 0) {
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    /* ids unique to this run: a previous run's slots may still be in grace */
    if (RAND_bytes(nb, sizeof(nb)) != 1) {
        return 1;
    }
    snprintf(o.nonce, sizeof(o.nonce), "%02x%02x%02x%02x", nb[0], nb[1],
             nb[2], nb[3]);

    if (o.serve_echo != 0) {
        return bench_run_echo(&o);
    }
    return bench_run_load(&o);
}
