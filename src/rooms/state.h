/* state.h — a room's state: the latest message of each state key (docs/protocol.md, "room
 * state").
 *
 * A publish carrying "state_key":K makes its canonical frame the current value of K — a
 * reference to the very frame the members got and the history keeps, so state costs no copy —
 * and "state_delete":true removes K. The state is not the history: it is never evicted with
 * it, and has bounds of its own (max_state_keys, max_state_bytes) that are checked before a
 * message is sequenced, so a refused publish takes no msg_id. A join with "state":true gets
 * every key's message, in msg_id order, as one message.
 *
 * With a durable log the state survives restarts without pinning the log: every 10 seconds at
 * most, a room whose state changed hands a snapshot of it to the log (rc_store_room_state);
 * the log keeps the messages after the last snapshot (rc_state_log_needs), and at start the
 * snapshot is loaded and the keyed messages after it are applied again.
 */
#ifndef RC_STATE_H
#define RC_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/textbuf.h"
#include "core/msg.h"
#include "rooms/room.h"

/* Longest state key, bytes (decoded). */
#define RC_STATE_KEY_MAX 128

/* Seconds between two snapshots of a changing state. */
#define RC_STATE_SNAPSHOT_SEC 10

/* A publish's state key, decoded. */
typedef struct rc_statekey {
    char key[RC_STATE_KEY_MAX];
    size_t len;
    bool del;                /* "state_delete":true */
} rc_statekey;

enum {
    RC_STATE_OK = 0,
    RC_STATE_NONE = 1,       /* the message has no state key */
    RC_STATE_BAD = -1,       /* the members are malformed (bad_field) */
    RC_STATE_FULL = -2,      /* a new key, or a bigger value, beyond the room's bounds */
};

/* rc_state_parse reads "state_key"/"state_delete" of a scanned publish into *k. Returns
 * RC_STATE_OK, RC_STATE_NONE or RC_STATE_BAD (with *why set to the problem). */
int rc_state_parse(const rc_json_top *q, rc_statekey *k, const char **why);

/* rc_state_admit says whether room may take k with a message of msg_bytes (its encoded
 * frame): RC_STATE_OK or RC_STATE_FULL. Deleting is always admitted. */
int rc_state_admit(const rc_rooms *t, const rc_room *room, const rc_statekey *k,
                   size_t msg_bytes);

/* rc_state_apply records the sequenced message (its canonical frame, msg_id and time) as k's
 * value, or deletes k. Out of memory: the key keeps its previous value (logged). */
void rc_state_apply(rc_rooms *t, rc_room *room, const rc_statekey *k, uint64_t msg_id,
                    uint64_t time_ms, rc_msg *frame);

/* rc_state_render appends {"type":"state","room":R,"last_msg_id":L,"messages":[...]} to out:
 * each key's message as it was delivered, in msg_id order. */
void rc_state_render(const rc_room *room, rc_textbuf *out);

/* rc_state_count and rc_state_bytes are the room's keys and the bytes they hold. */
uint32_t rc_state_count(const rc_room *room);
size_t rc_state_bytes(const rc_room *room);

/* rc_state_free drops the room's state. */
void rc_state_free(rc_rooms *t, rc_room *room);

/* ---- with a durable log ---- */

/* rc_state_log_needs is the oldest msg_id the log must keep for the state to be restored:
 * the one after the last snapshot while the state changed since, else UINT64_MAX. */
uint64_t rc_state_log_needs(const rc_room *room);

/* rc_state_snapshot_maybe hands a snapshot of room's state to its log when it changed since
 * the last one and the last is RC_STATE_SNAPSHOT_SEC old (or force). */
void rc_state_snapshot_maybe(rc_rooms *t, rc_room *room, bool force);

/* rc_state_load restores the snapshot blob[0..len) of room (before its records); then
 * rc_state_replay applies a restored record again when it is after the snapshot and keyed. */
void rc_state_load(rc_rooms *t, rc_room *room, const char *blob, size_t len);
void rc_state_replay(rc_rooms *t, rc_room *room, uint64_t msg_id, uint64_t time_ms,
                     uint8_t opcode, const char *payload, size_t len, rc_msg *frame);

/* ---- Redis mode (rooms/redisrooms.c): the state comes from Redis ---- */

/* rc_state_of_frame reads the state key of a canonical frame (a message as delivered) into
 * *k: true when it has one. */
bool rc_state_of_frame(const rc_msg *frame, rc_statekey *k);

/* rc_state_set_frame makes frame (message msg_id) the value of key[0..klen) of room: loading
 * a snapshot of the state read from Redis (after rc_state_free). */
void rc_state_set_frame(rc_rooms *t, rc_room *room, const char *key, size_t klen,
                        uint64_t msg_id, rc_msg *frame);

#endif
