/*
 * channel.c: SCM_RIGHTS handoff over SOCK_SEQPACKET socketpairs.
 *
 * SEQPACKET keeps each handoff one atomic message, so several workers can
 * send to one slot at once without interleaving.  Nothing here logs.
 */

#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "relay/channel.h"
#include "relay/net.h"

#define RELAY_CHANNEL_MAGIC 0x68616e64u     /* "hand" */


int
relay_channel_pair(int sv[2])
{
    int size = 1 << 20;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
        return -1;
    }
    /* room for a burst of handoffs while the owner is busy or respawning */
    (void)setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    (void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    if (relay_net_nonblock(sv[0]) == -1 || relay_net_nonblock(sv[1]) == -1) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }

    return 0;
}


int
relay_channel_send(int sock, int fd, uint32_t hops, int from_slot,
                   const void *data, size_t len)
{
    struct relay_channel_hdr hdr;
    struct iovec iov[2];
    struct msghdr msg;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct cmsghdr *cm;

    if (len > RELAY_CHANNEL_DATA_MAX) {
        errno = EMSGSIZE;
        return -1;
    }

    hdr.magic = RELAY_CHANNEL_MAGIC;
    hdr.hops = hops;
    hdr.len = (uint32_t)len;
    hdr.from_slot = (uint32_t)from_slot;
    iov[0].iov_base = &hdr;
    iov[0].iov_len = sizeof(hdr);
    iov[1].iov_base = (void *)data;
    iov[1].iov_len = len;

    memset(&msg, 0, sizeof(msg));
    memset(&ctl, 0, sizeof(ctl));
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));

    if (sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) == -1) {
        return -1;
    }

    return 0;
}


int
relay_channel_recv(int sock, int *fd, uint32_t *hops, void *buf,
                   size_t cap, size_t *len)
{
    struct relay_channel_hdr hdr;
    struct iovec iov[2];
    struct msghdr msg;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct cmsghdr *cm;
    ssize_t n;
    int got = -1;

    iov[0].iov_base = &hdr;
    iov[0].iov_len = sizeof(hdr);
    iov[1].iov_base = buf;
    iov[1].iov_len = cap;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);

    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        }
        return -1;
    }

    for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            memcpy(&got, CMSG_DATA(cm), sizeof(int));
        }
    }

    if ((size_t)n < sizeof(hdr) || hdr.magic != RELAY_CHANNEL_MAGIC
        || (size_t)n - sizeof(hdr) != hdr.len || got == -1
        || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0)
    {
        if (got != -1) {
            close(got);
        }
        errno = EPROTO;
        return -1;
    }

    *fd = got;
    *hops = hdr.hops;
    *len = hdr.len;

    return 1;
}
