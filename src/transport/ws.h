/* ws.h — the WebSocket side of a connection (RFC 6455): frames, fragmentation, control
 * frames, the closing handshake and keepalive. Complete messages go to the connection's
 * protocol: the room protocol (src/server/roomproto.c) or echo.
 *
 * A frame is processed only once it is complete in the input buffer; its size is checked
 * against --max-message-size from the header alone, so a header announcing 100 MB is refused
 * (1009) before a byte of its payload is buffered. A fragmented message is assembled in the
 * connection's frag buffer; an unfragmented one is handed to the protocol straight from the
 * read buffer, unmasked in place, without a copy.
 */
#ifndef RC_WS_H
#define RC_WS_H

#include <stddef.h>

#include "transport/conn.h"

/* rc_ws_on_input processes frames from p[0..n); returns the bytes used. */
size_t rc_ws_on_input(rc_conn *c, char *p, size_t n);

/* rc_ws_on_keepalive runs the ping / ping-timeout logic when the connection's timer fires. */
void rc_ws_on_keepalive(rc_conn *c);

/* rc_ws_start_keepalive arms the keepalive timer (after the upgrade). */
void rc_ws_start_keepalive(rc_conn *c);

#endif
