/* ws.h — the WebSocket side of a connection (RFC 6455): frames, fragmentation, control
 * frames, the closing handshake and keepalive. Complete messages go to the connection's
 * on_message hook (the room protocol, or echo: the app layer decides at the upgrade).
 *
 * A frame is processed only once it is complete in the input buffer; its size is checked
 * against --max-message-size from the header alone, so a header announcing 100 MB is refused
 * (1009) before a byte of its payload is buffered. The payload of a text message is unmasked
 * and checked for UTF-8 as it arrives, read by read and frame by frame, so the first invalid
 * byte fails the connection (1007) without waiting for the rest of the message. A fragmented message is assembled in the
 * connection's frag buffer; an unfragmented one is handed on straight from the read buffer,
 * unmasked in place, without a copy.
 */
#ifndef RC_WS_H
#define RC_WS_H

#include "transport/conn.h"

/* rc_ws_proto is what a connection speaks after the upgrade (transport/http.h). Its `end`
 * starts the closing handshake with the given code and reason: the close frame goes out, room
 * messages stop, and the peer has --close-timeout to answer. */
extern const rc_proto rc_ws_proto;

/* rc_ws_send queues one frame of opcode with a copy of p[0..n) (echo, pongs, pings). */
bool rc_ws_send(rc_conn *c, uint8_t opcode, const void *p, size_t n);

#endif
