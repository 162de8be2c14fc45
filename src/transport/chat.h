/* chat.h — the chat port: the protocol of the reactor chat server roomcast grew from
 * (docs/tcp.md, "The chat port"), so that seed's chat client works unchanged.
 *
 * Its clients send bare JSON objects back to back, {"user":U,"text":T}; codec/chatsplit.h finds
 * where each ends, this module checks it, and hands the connection's on_message hook the
 * publish it stands for, {"type":"chat","user":U,"text":T} (the app layer publishes it into the
 * chat room). What they receive are lines (rooms/wire.h,
 * RC_WIRE_CHAT); this module adds the server's own lines: errors ("[roomcast] error: ...") and
 * the reason it closes ("[roomcast] closing: ..."). The seed client cannot answer a ping, so
 * only TCP keepalive looks after idle connections.
 */
#ifndef RC_CHAT_H
#define RC_CHAT_H

#include "transport/conn.h"

/* rc_chat_proto is what connections on the chat listener speak. */
extern const rc_proto rc_chat_proto;

#endif
