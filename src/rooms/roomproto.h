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

#include "codec/json.h"
#include "transport/conn.h"
#include "rooms/room.h"
#include "app/stats.h"

void rc_roomproto_on_text(rc_conn *c, char *p, size_t n);
void rc_roomproto_on_binary(rc_conn *c, const uint8_t *p, size_t n);

/* The members a publish may not carry: the server assigns them. Scan a message to publish
 * with rc_json_scan(p, n, RC_ROOMPROTO_CUT, &t). */
#define RC_ROOMPROTO_CUT (RC_JK_BIT(RC_JK_CLIENT_ID) | RC_JK_BIT(RC_JK_MSG_ID) | \
                          RC_JK_BIT(RC_JK_ACK) | RC_JK_BIT(RC_JK_IDEMPOTENCY_KEY))

/* Longest "ack" token or "idempotency_key" accepted, bytes of JSON text. */
#define RC_ACK_TOKEN_MAX 256

/* rc_roomproto_publish_text sequences the JSON object p (scanned into *t with
 * RC_ROOMPROTO_CUT) into room as a message from client_id, through the very encoder a
 * client's publish uses (the HTTP API publishes with client_id 0). Returns the msg_id, or 0
 * when out of memory. */
uint64_t rc_roomproto_publish_text(struct rc_server *srv, rc_room *room, const char *p,
                                   const rc_json_top *t, uint64_t client_id);

/* rc_roomproto_type_reserved is true for the types a publish may not use: those only the
 * server sends (joined, left, error, ack) and the NetSync observers' netsync_* requests. */
bool rc_roomproto_type_reserved(const char *type, size_t len);

/* rc_roomproto_error sends {"type":"error","code":kind,"message":...} and counts the fault. */
void rc_roomproto_error(rc_conn *c, enum rc_err kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
