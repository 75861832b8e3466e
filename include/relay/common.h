/*
 * common.h: return codes and limits shared by every module of the relay.
 *
 * Holds only constants that more than one module must agree on: the limits
 * of SPEC.md that show on the wire, and the generic return codes.  Nothing
 * here allocates or does I/O.
 */

#ifndef RELAY_COMMON_H
#define RELAY_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define RELAY_OK            0
#define RELAY_ERROR         (-1)

/* A server-id is 1..128 bytes of printable ASCII without spaces. */
#define RELAY_SERVER_ID_MAX 128

/* "client-" + id + "-" + 8 hex, plus the terminating NUL. */
#define RELAY_CONN_ID_MAX   (7 + RELAY_SERVER_ID_MAX + 1 + 8 + 1)

#define RELAY_HEAD_MAX      8192          /* request head, 431 past it */
#define RELAY_MSG_MAX       262144        /* one message, 1009 past it */
#define RELAY_PHONES_MAX    16            /* per server-id, 4429 past it */

/* WebSocket close codes the relay sends. */
#define RELAY_CLOSE_NORMAL          1000
#define RELAY_CLOSE_GOING_AWAY      1001
#define RELAY_CLOSE_PROTOCOL        1002
#define RELAY_CLOSE_NO_STATUS       1005
#define RELAY_CLOSE_BAD_DATA        1007
#define RELAY_CLOSE_TOO_BIG         1009
#define RELAY_CLOSE_INTERNAL        1011
#define RELAY_CLOSE_NO_SERVER       4404
#define RELAY_CLOSE_CONFLICT        4409
#define RELAY_CLOSE_PHONE_CAP       4429

#endif
