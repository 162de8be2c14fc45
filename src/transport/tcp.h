/* tcp.h — the raw TCP port: the room protocol as newline-delimited JSON or length-prefixed
 * frames (docs/tcp.md), for clients without a WebSocket library (nc, socat, Python socket,
 * Node net, Unity's TcpClient, game servers).
 *
 * The first bytes choose the framing (codec/tcpwire.h). Complete messages go to the
 * connection's on_message hook like WebSocket messages do; this module answers the framing
 * itself: the preamble, keepalive ({"type":"keepalive"} lines or ping frames), the reasons it
 * closes (a {"type":"close",...} line or a close frame, with WebSocket's codes), and the
 * faults of the stream (an over-long line or invalid UTF-8 is an error line, counted; a framed
 * fault closes as on WebSocket). A client answered with RC_TCP_MAX_ERRORS errors in a row is
 * closed with 1008: a client that does not speak the protocol stops costing anything.
 */
#ifndef RC_TCP_H
#define RC_TCP_H

#include <stdbool.h>

#include "transport/conn.h"

/* Error replies in a row after which a TCP or chat client is closed. */
#define RC_TCP_MAX_ERRORS 16

/* rc_tcp_proto is what connections on the TCP listener speak. */
extern const rc_proto rc_tcp_proto;

/* rc_tcp_framed is true once c chose framed mode (before its first message, it is decided). */
static inline bool rc_tcp_framed(const rc_conn *c)
{
    return c->dec.tcp.mode == RC_TCPW_FRAMED;
}

/* rc_tcp_count_reply records the outcome of one request of a TCP or chat client (0 accepted,
 * -1 answered with an error) and closes it after RC_TCP_MAX_ERRORS errors in a row. */
void rc_tcp_count_reply(rc_conn *c, int result);

#endif
