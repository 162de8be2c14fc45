/* room.h — rooms: membership, sequencing and fan-out.
 *
 * This is where the total order comes from. rc_room_publish is the one place a msg_id is
 * assigned: it takes the next id, has the caller encode the frame with it, and queues that one
 * frame to every member before returning. Because the loop is single-threaded and a join
 * queues `joined` to the joiner before it can be handed any later message, every member sees
 * `joined` first and then every message sequenced after its join, in msg_id order, with no gap.
 *
 * A room is found by name in a hash table; its members are a dense array (O(1) swap-remove,
 * cache-friendly fan-out), and each connection remembers its slot in every room it is in, so
 * leaving is O(1) too.
 *
 * A room keeps its recent messages (history.h) for clients that rejoin with "since", under an
 * epoch that changes whenever that history is lost or reset; with history enabled a room
 * outlives its last member by --room-ttl, without it the room goes with its last member.
 * With --data-dir each message is also appended to the room's durable log (store.h).
 */
#ifndef RC_ROOM_H
#define RC_ROOM_H

#include <stddef.h>
#include <stdint.h>

#include "transport/outq.h"
#include "rooms/history.h"
#include "store/store.h"

struct rc_conn;
struct rc_server;

#define RC_ROOM_NAME_MAX 255

typedef struct rc_member {
    struct rc_conn *conn;    /* the member */
    uint32_t mslot;          /* index of this room in conn->rooms */
} rc_member;

/* Recently seen idempotency keys of a room: two generations of an open-addressing set of
 * key hashes; when the current one fills, it becomes the previous one and the oldest is
 * forgotten, so between window and 2 x window most recent keys are remembered. */
typedef struct rc_idem_slot {
    uint64_t hash;           /* key hash, 0 = empty */
    uint64_t msg_id;         /* msg_id the key was published as */
} rc_idem_slot;

typedef struct rc_idem {
    rc_idem_slot *cur, *prev; /* generations, 2 x window slots each, NULL until first use */
    uint32_t ncur;           /* keys in cur */
} rc_idem;

typedef struct rc_room {
    struct rc_room *hnext;   /* hash chain */
    uint64_t hash;           /* hash of name */
    uint64_t last_msg_id;    /* id of the last message sequenced, 0 before the first */
    rc_member *members;      /* nmembers entries */
    uint32_t nmembers;       /* members now */
    uint32_t capmembers;     /* entries allocated */
    rc_history hist;         /* recent messages */
    rc_idem idem;            /* recent idempotency keys */
    rc_store_room *store;    /* durable log of the room, NULL without --data-dir */
    uint64_t empty_since;    /* loop ns the last member left, 0 while it has members */
    struct rc_room *eprev, *enext; /* list of empty rooms waiting for their TTL */
    char epoch[RC_EPOCH_LEN + 1]; /* changes whenever the history is lost or reset */
    uint16_t name_len;       /* bytes of name */
    uint16_t json_len;       /* bytes of json_name */
    char *json_name;         /* the name as a JSON string literal (quotes included) */
    char name[];             /* the name, NUL-terminated, then json_name's storage */
} rc_room;

typedef struct rc_rooms {
    rc_room **buckets;       /* nbuckets chains */
    uint32_t nbuckets;       /* power of two, 0 before the first room */
    uint32_t count;          /* rooms in the table */
    rc_room *empty;          /* rooms without members, kept for their history */
} rc_rooms;

/* rc_rooms_find returns the room called name[0..len), or NULL. */
rc_room *rc_rooms_find(rc_rooms *t, const char *name, size_t len);

/* rc_rooms_release frees every room (members must already be gone: used at exit). */
void rc_rooms_release(rc_rooms *t);

/* rc_rooms_sweep deletes empty rooms whose TTL passed, expires old history and changes the
 * epoch of rooms whose durable log lost records. Called once a second. */
void rc_rooms_sweep(struct rc_server *srv);

/* rc_room_restore creates a room from the durable log at start (no members yet). */
rc_room *rc_room_restore(struct rc_server *srv, const char *name, size_t len, const char *epoch);

/* rc_room_new_epoch gives room a fresh epoch (its history can no longer be trusted whole). */
void rc_room_new_epoch(struct rc_server *srv, rc_room *room);

/* rc_room_idem_find returns the msg_id a key hash was published as in this room, or 0. */
uint64_t rc_room_idem_find(const struct rc_server *srv, const rc_room *room, uint64_t hash);
void rc_room_idem_add(struct rc_server *srv, rc_room *room, uint64_t hash, uint64_t msg_id);

/* rc_room_retention is the history limits the flags set (--history-size/-bytes/-age). */
rc_retention rc_room_retention(const struct rc_server *srv);

/* rc_wall_ms is the wall-clock time in ms since the Unix epoch. */
uint64_t rc_wall_ms(void);

enum {
    RC_JOIN_OK = 0,          /* joined now */
    RC_JOIN_ALREADY = 1,     /* was already a member */
    RC_JOIN_LIMIT = -1,      /* --max-rooms-per-client reached */
    RC_JOIN_NOMEM = -2,
};

/* rc_room_join adds c to the room called name (creating it), storing the room in *out.
 * Returns one of RC_JOIN_*. */
int rc_room_join(struct rc_server *srv, struct rc_conn *c, const char *name, size_t len,
                 rc_room **out);

/* rc_room_leave removes c from the room at c->rooms[mslot], deleting the room if empty. */
void rc_room_leave(struct rc_server *srv, struct rc_conn *c, uint32_t mslot);

/* rc_room_leave_all removes c from every room (on close). */
void rc_room_leave_all(struct rc_server *srv, struct rc_conn *c);

/* rc_conn_room_slot returns the index of room in c->rooms, or -1 when c is not a member. */
int rc_conn_room_slot(const struct rc_conn *c, const rc_room *room);

/* Encodes the frame of a message given the msg_id it was assigned. Returns a new message
 * (one reference, handed to rc_room_publish), or NULL when out of memory. */
typedef rc_msg *rc_encode_fn(void *ctx, const rc_room *room, uint64_t msg_id);

/* rc_room_publish assigns the room's next msg_id, encodes the message once with it, queues
 * that frame to every member, keeps it in the history and appends it to the durable log.
 * Returns the msg_id, or 0 if encoding failed (no id is consumed then). When lsn is not NULL
 * it receives the log batch holding the message (0 without a log), for acknowledgements. */
uint64_t rc_room_publish(struct rc_server *srv, rc_room *room, rc_encode_fn *encode, void *ctx);
uint64_t rc_room_publish_lsn(struct rc_server *srv, rc_room *room, rc_encode_fn *encode, void *ctx,
                             uint64_t *lsn);

#endif
