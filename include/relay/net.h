/*
 * net.h: listening sockets and small socket helpers.
 *
 * Low-level: returns -1 with errno and never logs; the caller decides
 * whether a failure is fatal and says so once.
 */

#ifndef RELAY_NET_H
#define RELAY_NET_H

#include <stddef.h>
#include <sys/socket.h>

#include "relay/config.h"

/*
 * Create a non-blocking, close-on-exec TCP socket bound to addr and
 * listening with backlog.  reuseport sets SO_REUSEPORT so that several
 * sockets (one per worker) can share the address.  Returns the fd, or -1
 * with errno set.
 */
int relay_net_listen(const struct relay_addr *addr, int reuseport,
                     int backlog);

/* Set O_NONBLOCK on fd.  Returns 0 or -1 with errno set. */
int relay_net_nonblock(int fd);

/*
 * Write the peer's IP address of fd as text into out (at least 46 bytes)
 * and its raw bytes (4 or 16) into raw.  Returns the raw length, or -1.
 */
int relay_net_peer(int fd, char *out, size_t cap, unsigned char raw[16]);

/*
 * Parse an IP literal (v4 or v6) into raw bytes.  Returns 4 or 16, or -1
 * if text is not an IP literal.
 */
int relay_net_parse_ip(const char *text, size_t len, unsigned char raw[16]);

#endif
