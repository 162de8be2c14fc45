/* roomproto.h — the room protocol spoken on "/" (docs/protocol.md): join, leave, publish of
 * JSON text and binary messages, and the error replies.
 *
 * One JSON scan per incoming message: rc_json_scan validates the text and locates the members
 * the server needs; a publish is then encoded once — the client's bytes with "room",
 * "client_id" and "msg_id" spliced in — and the same frame is queued to every member.
 */
#ifndef RC_ROOMPROTO_H
#define RC_ROOMPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "server/conn.h"

void rc_roomproto_on_text(rc_conn *c, char *p, size_t n);
void rc_roomproto_on_binary(rc_conn *c, const uint8_t *p, size_t n);

#endif
