/*
 * channel.h: handing an accepted socket to the worker that owns its
 * server-id.
 *
 * Each worker slot has one SOCK_SEQPACKET socketpair, made by the master
 * before forking: every worker may send on the slot's send end; only the
 * slot's worker receives.  The master keeps both ends open, so a socket
 * handed to a worker that is being respawned waits in the queue for the
 * new worker instead of being lost.  One message carries one descriptor
 * (SCM_RIGHTS) and the bytes already read from it.
 */

#ifndef RELAY_CHANNEL_H
#define RELAY_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "relay/common.h"

/* Enough for a whole head plus what a client pipelined after it. */
#define RELAY_CHANNEL_DATA_MAX (RELAY_HEAD_MAX + 4096)

struct relay_channel_hdr {
    uint32_t magic;
    uint32_t hops;              /* times this socket was handed on */
    uint32_t len;               /* bytes of data after the header */
    uint32_t from_slot;
};

/*
 * Create a socketpair for one slot: sv[0] receives, sv[1] sends.  Both are
 * close-on-exec; the receive end is non-blocking.  Returns 0 or -1.
 */
int relay_channel_pair(int sv[2]);

/*
 * Send fd with data[0..len) on sock.  Non-blocking: returns 0, or -1 with
 * errno (EAGAIN when the receiver's queue is full).  The caller still owns
 * fd and closes it after a successful send.
 */
int relay_channel_send(int sock, int fd, uint32_t hops, int from_slot,
                       const void *data, size_t len);

/*
 * Receive one message from sock.  On success returns 1 with *fd the
 * received descriptor (close-on-exec), *hops, data copied into buf and
 * *len its length.  Returns 0 when no message is waiting, -1 with errno on
 * error (a message without a descriptor or with a bad header is EPROTO).
 */
int relay_channel_recv(int sock, int *fd, uint32_t *hops, void *buf,
                       size_t cap, size_t *len);

#endif
