/*
 * net.c: listening sockets and peer addresses.
 *
 * The master creates every listening socket before forking, so a worker
 * never binds (it may have dropped the privileges a low port needs).
 */

#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#include "relay/net.h"


int
relay_net_nonblock(int fd)
{
    int flags;

    flags = fcntl(fd, F_GETFL, 0);
    if (flags == -1) {
        return -1;
    }
    if (fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
        return -1;
    }

    return 0;
}


int
relay_net_listen(const struct relay_addr *addr, int reuseport, int backlog)
{
    int fd, one = 1, saved;

    fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK
                | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return -1;
    }

    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1) {
        goto failed;
    }
    if (reuseport
        && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
    {
        goto failed;
    }
    if (addr->ss.ss_family == AF_INET6
        && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
    {
        goto failed;
    }
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) == -1) {
        goto failed;
    }
    if (listen(fd, backlog) == -1) {
        goto failed;
    }

    return fd;

failed:
    saved = errno;
    close(fd);
    errno = saved;
    return -1;
}


int
relay_net_peer(int fd, char *out, size_t cap, unsigned char raw[16])
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getpeername(fd, (struct sockaddr *)&ss, &len) == -1) {
        return -1;
    }

    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

        memcpy(raw, &sin->sin_addr, 4);
        if (inet_ntop(AF_INET, &sin->sin_addr, out, cap) == NULL) {
            return -1;
        }
        return 4;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

        memcpy(raw, &sin6->sin6_addr, 16);
        if (inet_ntop(AF_INET6, &sin6->sin6_addr, out, cap) == NULL) {
            return -1;
        }
        return 16;
    }

    errno = EAFNOSUPPORT;
    return -1;
}


int
relay_net_parse_ip(const char *text, size_t len, unsigned char raw[16])
{
    char tmp[64];

    if (len == 0 || len >= sizeof(tmp)) {
        return -1;
    }
    memcpy(tmp, text, len);
    tmp[len] = '\0';

    if (inet_pton(AF_INET, tmp, raw) == 1) {
        return 4;
    }
    if (inet_pton(AF_INET6, tmp, raw) == 1) {
        return 16;
    }

    return -1;
}
