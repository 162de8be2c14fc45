/* roomproto.h — the room protocol (docs/protocol.md): join (with recovery), leave, publish of
 * JSON text and binary messages, acknowledgements, idempotency keys, and the error replies.
 *
 * Transport-independent: it reads complete messages of an endpoint (a WebSocket message, a TCP
 * line or frame) and answers through the endpoint, so every transport speaks the same protocol
 * with the same checks. One JSON scan per incoming message: rc_json_scan validates the text and
 * locates the members the server needs; a publish is then encoded once — the client's bytes
 * with "room", "client_id" and "msg_id" spliced in — and handed to rc_room_publish.
 *
 * Types starting with a registered prefix ("netsync_", the NetSync observers) go to the
 * extension handler of that prefix; the types the server sends (joined, left, error, ack,
 * close) may not be published; "keepalive" is consumed without a reply on every transport
 * (docs/tcp.md).
 */
#ifndef RC_ROOMPROTO_H
#define RC_ROOMPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "codec/json.h"
#include "rooms/endpoint.h"
#include "rooms/room.h"

struct rc_statekey;

/* The members a publish may not carry: the server assigns them. Scan a message to publish
 * with rc_json_scan(p, n, RC_ROOMPROTO_CUT, &t). */
#define RC_ROOMPROTO_CUT (RC_JK_BIT(RC_JK_CLIENT_ID) | RC_JK_BIT(RC_JK_MSG_ID) | \
                          RC_JK_BIT(RC_JK_ACK) | RC_JK_BIT(RC_JK_IDEMPOTENCY_KEY))

/* The members a publish reads: one of them repeated is refused (duplicate_key). */
#define RC_ROOMPROTO_PUBLISH_KEYS (RC_JK_BIT(RC_JK_TYPE) | RC_JK_BIT(RC_JK_ROOM) | RC_ROOMPROTO_CUT | \
                                   RC_JK_BIT(RC_JK_STATE_KEY) | RC_JK_BIT(RC_JK_STATE_DELETE))

/* Longest "ack" token or "idempotency_key" accepted, bytes of JSON text. */
#define RC_ACK_TOKEN_MAX 256

/* rc_roomproto_text handles one text message p[0..n) (UTF-8) of ep; rc_roomproto_binary one
 * binary message. Return 0 when the request was accepted, -1 when it was answered with an
 * error (transports that close after many errors in a row count these). */
int rc_roomproto_text(rc_rooms *t, rc_endpoint *ep, const char *p, size_t n);
/* rc_roomproto_join runs a join request p[0..n) again (Redis mode: once its room is in step,
 * redisrooms.h), as rc_roomproto_text would, without the join gate. */
int rc_roomproto_join(rc_rooms *t, rc_endpoint *ep, const char *p, size_t n);
int rc_roomproto_binary(rc_rooms *t, rc_endpoint *ep, const uint8_t *p, size_t n);

/* rc_roomproto_publish_text sequences the JSON object p (scanned into *scan with
 * RC_ROOMPROTO_CUT) into room as a message from client_id, through the very encoder a
 * client's publish uses (the HTTP API publishes with client_id 0, the chat port for its
 * clients), with its state key sk (NULL: none; see rc_roomproto_state_check) — unless its
 * idempotency key hash khash (0: none) was seen in the room: then nothing is sequenced, *duplicate is set and the earlier msg_id returned. Returns the msg_id,
 * or 0 when out of memory; *lsn (may be NULL) gets the log batch holding the message. */
uint64_t rc_roomproto_publish_text(rc_rooms *t, rc_room *room, const char *p,
                                   const rc_json_top *scan, uint64_t client_id, uint64_t khash,
                                   const struct rc_statekey *sk, bool *duplicate, uint64_t *lsn);

/* rc_roomproto_cluster_payload makes the Redis-mode payload of a text publish (docs/cluster.md,
 * "Publish": 't' + the canonical frame's text up to `"msg_id":`) of p scanned into *q, from
 * client_id (user: an authenticated sender's identity, or NULL), for the room whose name as a
 * JSON literal is room_json[0..room_json_len). Returns the message holding it (the caller
 * unrefs it) with *payload and *len pointing inside, or NULL when out of memory. */
struct rc_ident;
rc_msg *rc_roomproto_cluster_payload(const char *room_json, size_t room_json_len, const char *p,
                                      const rc_json_top *q, uint64_t client_id,
                                      const struct rc_ident *user, const char **payload,
                                      size_t *len);

/* rc_roomproto_state_check reads the state key of a publish p[0..n) scanned into *q for room
 * into *sk and checks that the room can take it: RC_STATE_OK (publish with sk), RC_STATE_NONE
 * (no key: publish with NULL), RC_STATE_BAD or RC_STATE_FULL with the reason in why. */
int rc_roomproto_state_check(const rc_rooms *t, const rc_room *room, const rc_json_top *q,
                             size_t n, struct rc_statekey *sk, char *why, size_t whylen);

/* rc_roomproto_state_parse is rc_roomproto_state_check without a room to check the bounds
 * against (Redis mode, a room this node does not have): RC_STATE_OK, _NONE or _BAD. */
int rc_roomproto_state_parse(const rc_json_top *q, struct rc_statekey *sk, char *why,
                             size_t whylen);

/* Idempotency keys are remembered per sender: an rc_endpoint's session (a client presenting
 * its session after a reconnect keeps its keys), the API key for the HTTP API. A key is a
 * string of 1 to RC_ACK_TOKEN_MAX - 2 bytes (rc_roomproto_key_valid); rc_roomproto_key_hash
 * is what a room remembers it by. */
bool rc_roomproto_key_valid(const rc_json_span *key);
uint64_t rc_roomproto_key_hash(const uint8_t scope[RC_SESSION_LEN], const rc_json_span *key);

/* rc_roomproto_dup_name is the name of a member rc_json_scan found repeated (the first of the
 * keys in dups, a mask of RC_JK_BIT): what an error about it quotes. */
const char *rc_roomproto_dup_name(unsigned dups);

/* rc_roomproto_type_reserved is true for the types a publish may not use. */
bool rc_roomproto_type_reserved(const rc_rooms *t, const char *type, size_t len);

/* rc_roomproto_set_extension hands the requests whose type starts with prefix (a static
 * string) to fn, and reserves those types. One extension. */
void rc_roomproto_set_extension(rc_rooms *t, const char *prefix, rc_roomproto_ext_fn *fn,
                                void *arg);

/* rc_roomproto_set_services hands "request" messages to request and offers every member's
 * publish to service (the worker broker's room services, app/services.h) before it is
 * sequenced; either may be NULL. "request", "reply" and "room_service" are reserved types. */
void rc_roomproto_set_services(rc_rooms *t, rc_roomproto_ext_fn *request,
                               rc_roomproto_svc_fn *service, void *arg);

/* rc_roomproto_set_join_gate asks gate before every join is read (the per-connection join
 * rate, app/limits.h); NULL removes it. A refused join has no effect. */
void rc_roomproto_set_join_gate(rc_rooms *t, rc_roomproto_gate_fn *gate, void *arg);

/* rc_roomproto_error sends {"type":"error","code":kind,"message":...} to ep and counts the
 * fault. Returns -1 (what a handler returns after an error). */
int rc_roomproto_error(rc_rooms *t, rc_endpoint *ep, enum rc_rerr kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
