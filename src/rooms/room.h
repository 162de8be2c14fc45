/* room.h — rooms: membership, sequencing and fan-out, for members of any transport.
 *
 * This is where the total order comes from. rc_room_publish is the one place a msg_id is
 * assigned: it takes the next id, has the caller encode the message with it (as its canonical
 * WebSocket frame, rooms/wire.h), and queues it to every member before returning — encoded at
 * most once per wire format among the members, lazily, so a room of WebSocket members pays for
 * one frame and nothing else. Because the loop is single-threaded and a join queues `joined` to
 * the joiner before it can be handed any later message, every member sees `joined` first and
 * then every message sequenced after its join, in msg_id order, with no gap.
 *
 * Members are endpoints (rooms/endpoint.h): the room never knows what carries their bytes. A
 * room is found by name in a hash table; its members are a dense array (O(1) swap-remove,
 * cache-friendly fan-out), and each endpoint remembers its slot in every room it is in, so
 * leaving is O(1) too.
 *
 * A room keeps its recent messages (history.h) for clients that rejoin with "since", under an
 * epoch that changes whenever that history is lost or reset; with history enabled a room
 * outlives its last member by --room-ttl, without it the room goes with its last member.
 * With --data-dir each message is also appended to the room's durable log (store.h). Under
 * --fsync always a message is held, sequenced but not yet delivered, until the log batch
 * holding it is durable: then (rc_rooms_durable) it is fanned out, kept in the history and the
 * state, and acknowledged — so nothing a member saw can be missing after a crash, and the room
 * keeps its epoch across one. Until then it is invisible: last_msg_id, joins, replays, state
 * and the API see only delivered messages, and a member that joins meanwhile gets it with the
 * others when it is released, with no gap and no duplicate.
 */
#ifndef RC_ROOM_H
#define RC_ROOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/json.h"
#include "core/hash.h"
#include "core/heap.h"
#include "core/loop.h"
#include "core/msg.h"
#include "rooms/endpoint.h"
#include "rooms/history.h"
#include "rooms/ident.h"
#include "rooms/perm.h"
#include "rooms/session.h"
#include "store/store.h"

#define RC_ROOM_NAME_MAX 255

/* Faults of the room protocol, one counter each; rc_rerr_names gives their JSON names (the
 * `code` of the error replies). */
enum rc_rerr {
    RC_RERR_BAD_JSON, RC_RERR_NOT_OBJECT, RC_RERR_MISSING_FIELD, RC_RERR_BAD_FIELD,
    RC_RERR_NOT_MEMBER, RC_RERR_NO_SUCH_ROOM, RC_RERR_RESERVED_TYPE, RC_RERR_TOO_MANY_ROOMS,
    RC_RERR_BAD_BINARY, RC_RERR_NETSYNC_OFF, RC_RERR_DUPLICATE_KEY, RC_RERR_ROOM_LIMIT,
    RC_RERR_RATE_LIMITED, RC_RERR_STATE_FULL, RC_RERR_BANNED,
    RC_RERR_FORBIDDEN, RC_RERR_UNAUTHENTICATED, RC_RERR_ROOM_FULL, /* permissions (ident.h) */
    RC_RERR_UNAVAILABLE,     /* --redis: Redis cannot sequence it now (redisrooms.h) */
    RC_RERR__COUNT
};
extern const char *const rc_rerr_names[RC_RERR__COUNT];

typedef struct rc_rooms_config {
    uint32_t max_rooms_per_client; /* rooms one endpoint may be in */
    uint32_t history_size;   /* messages kept per room, 0 = no history */
    size_t history_bytes;    /* bytes of encodings kept per room */
    uint64_t history_age;    /* ns after which a kept message expires, 0 = never */
    uint64_t room_ttl;       /* ns a room with history outlives its last member */
    uint32_t idempotency_window; /* idempotency keys remembered per room (at least) */
    size_t history_memory;   /* bytes all histories together may keep, 0 = no limit */
    uint32_t max_rooms;      /* rooms that may exist at once, 0 = no limit */
    uint32_t create_rate;    /* rooms one endpoint may create per second (after a burst of
                                max_rooms_per_client + create_rate), 0 = no limit */
    uint32_t presence_limit; /* above this many members, presence is batched once a second */
    uint32_t max_state_keys; /* state keys one room may hold */
    size_t max_state_bytes;  /* bytes of state (keys and messages) one room may hold */
    size_t state_memory;     /* bytes the states of all rooms may hold together, 0 = no limit */
    uint64_t session_ttl;    /* ns a session outlives its last connection */
    uint32_t max_idle_sessions; /* released sessions remembered at most */
    uint64_t node_interval;  /* --redis: ns between node heartbeats (0: cluster.h's default) */
    uint64_t node_ttl;       /* --redis: ns after which a silent node is dead (0: default) */
} rc_rooms_config;

typedef struct rc_rooms_stats {
    uint64_t broadcasts;     /* messages sequenced */
    uint64_t deliveries;     /* room frames queued to members (one per recipient) */
    uint64_t duplicates;     /* publishes dropped as repeats of an idempotency key */
    uint64_t recovered;      /* joins with "since" that were replayed */
    uint64_t not_recovered;  /* joins with "since" the history could not serve */
    uint64_t repaired;       /* rooms restored under a new epoch (possible loss) */
    uint64_t held;           /* messages sequenced, waiting for the durable log now (gauge) */
    uint64_t evicted;        /* kept messages dropped to stay within history_memory */
    uint64_t evicted_bytes;  /* their bytes */
    uint64_t conflated;      /* queued messages dropped for a newer one with their state key */
    uint64_t presence_events; /* presence events queued to members (batches count once each) */
    uint64_t history_joins;  /* joins that asked for "history" */
    uint64_t state_joins;    /* joins that asked for "state" */
    uint64_t err[RC_RERR__COUNT]; /* protocol faults by kind */
} rc_rooms_stats;

/* A handler for the room protocol's extension requests (roomproto.h): a request of type
 * type[0..type_len) from ep, p[0..n) scanned into *scan. Returns 0 when it was accepted, -1
 * when it was answered with an error. */
typedef int rc_roomproto_ext_fn(void *arg, rc_endpoint *ep, const char *type, size_t type_len,
                                const char *p, size_t n, const rc_json_top *scan);

/* The room-service hook (roomproto.h, rc_roomproto_set_services): a publish of ep into room,
 * p[0..n) scanned into *scan. Returns RC_ROOMPROTO_NOT_SERVED when no service rules the room
 * (the publish goes on as usual), else 0 (taken) or -1 (answered with an error). */
typedef int rc_roomproto_svc_fn(void *arg, rc_endpoint *ep, struct rc_room *room,
                                const char *p, size_t n, const rc_json_top *scan);
#define RC_ROOMPROTO_NOT_SERVED 1

/* The join gate (roomproto.h, rc_roomproto_set_join_gate): asked before each join of ep is
 * read. Returns 0 to go on, -1 when it answered the join with an error itself. */
typedef int rc_roomproto_gate_fn(void *arg, rc_endpoint *ep);

/* What a member asked for when it joined (docs/protocol.md). */
enum {
    RC_MEMBER_PRESENCE = 1,  /* presence events */
    RC_MEMBER_CONFLATE = 2,  /* latest-wins for keyed messages it has not read yet */
};

typedef struct rc_member {
    rc_endpoint *ep;         /* the member */
    uint32_t mslot;          /* index of this room in ep->rooms */
    uint8_t wire;            /* ep->wire, here so the fan-out reads one cache line less */
    uint8_t flags;           /* RC_MEMBER_* (in what was padding: the entry stays 16 bytes) */
} rc_member;

struct rc_presence_batch;
struct rc_room_state;

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

/* A message sequenced under --fsync always, held until its log batch is durable. */
typedef struct rc_held_msg {
    rc_msg *frame;           /* its canonical frame (a reference) */
    uint64_t msg_id;         /* its id */
    uint64_t lsn;            /* the log batch holding it */
    uint64_t time_ms;        /* when it was sequenced (wall clock, ms) */
    struct rc_statekey *sk;  /* its state key (an owned copy), or NULL */
} rc_held_msg;

typedef struct rc_room {
    rc_hnode node;           /* in the rooms' table, keyed by the name's hash */
    uint64_t last_msg_id;    /* id of the last message delivered (what members, joins and the
                                history have seen), 0 before the first */
    uint64_t seq_msg_id;     /* id of the last message sequenced: beyond last_msg_id only while
                                messages are held (--fsync always) */
    rc_held_msg *held;       /* ring of held messages, oldest first, NULL when none ever */
    uint32_t held_head, held_count, held_cap; /* its first entry, entries, capacity (power of 2) */
    struct rc_room *hprev, *hnext; /* list of rooms holding messages (rc_rooms.holding) */
    rc_member *members;      /* nmembers entries */
    uint32_t nmembers;       /* members now */
    uint32_t capmembers;     /* entries allocated */
    uint32_t npresence;      /* members with RC_MEMBER_PRESENCE */
    uint32_t nconflate;      /* members with RC_MEMBER_CONFLATE */
    struct rc_presence_batch *pbatch; /* presence changes not yet told (big rooms), or NULL */
    struct rc_room_state *state; /* the latest message of each state key (state.h), or NULL */
    rc_history hist;         /* recent messages */
    rc_heap_node aged;       /* in rc_rooms.aged while it keeps messages: a lower bound of
                                the time of its oldest one (heads only get newer) */
    rc_idem idem;            /* recent idempotency keys */
    rc_store_room *store;    /* durable log of the room, NULL without --data-dir */
    struct rc_croom *cr;     /* --redis: its step with Redis (redisrooms.c), else NULL */
    struct rc_rmembers *remote; /* --redis: its members on other nodes (redispresence.h), or
                                   NULL (none known, or presence off in its namespace) */
    uint64_t empty_since;    /* loop ns the last member left, 0 while it has members */
    struct rc_room *eprev, *enext; /* list of empty rooms waiting for their TTL */
    char epoch[RC_EPOCH_LEN + 1]; /* changes whenever the history is lost or reset */
    uint16_t name_len;       /* bytes of name */
    uint16_t json_len;       /* bytes of json_name */
    char *json_name;         /* the name as a JSON string literal (quotes included) */
    char name[];             /* the name, NUL-terminated, then json_name's storage */
} rc_room;

typedef struct rc_rooms {
    rc_htab table;           /* every room, by name */
    rc_room *empty;          /* rooms without members, kept for their history, newest first */
    rc_room *empty_tail;     /* the one empty the longest */
    size_t hist_bytes;       /* bytes every room's history keeps (rc_history.bytes summed) */
    size_t state_bytes;      /* bytes every room's state holds (state.c) */
    rc_heap aged;            /* rooms with kept messages, by the age of their oldest */
    rc_rooms_config cfg;     /* limits (copied at init) */
    rc_loop *loop;           /* not owned */
    rc_store *store;         /* durable log (owned), NULL without --data-dir */
    struct rc_redisrooms *cluster; /* --redis: rooms sequenced in Redis (redisrooms.h), NULL:
                                      the embedded engine */
    rc_endpoint *ack_eps;    /* endpoints with acks waiting for the durable log */
    struct rc_durable_wait *dwaits; /* other answers waiting for it (rc_room_when_durable) */
    bool hold;               /* --fsync always: deliver messages once durable (held) */
    rc_room *holding;        /* rooms with held messages */
    rc_timer sweep_timer;    /* once a second: room TTLs, history age, log health */
    uint64_t wall_ms;        /* rc_wall_ms() as read when the loop clock was wall_at */
    uint64_t wall_at;        /* rc_loop_now() of that read, ns (0: never read) */
    rc_rooms_stats stats;    /* counters */
    rc_sessions sessions;    /* clients' identities across connections */
    struct rc_presence_batch *pbatches; /* rooms with presence changes to batch */
    /* The request being answered, while rc_roomproto_text runs: error replies name its room
     * and ack token (raw JSON text), when it had them. */
    const rc_json_span *req_room, *req_ref;
    /* The room protocol's extension (roomproto.h): requests whose type starts with ext_prefix
     * are handed to ext. */
    const char *ext_prefix;
    rc_roomproto_ext_fn *ext;
    void *ext_arg;
    /* The worker broker (roomproto.h, rc_roomproto_set_services): "request" messages go to
     * request; publishes (text and binary) are offered to service first. NULL: none. */
    rc_roomproto_ext_fn *request;
    rc_roomproto_svc_fn *service;
    void *svc_arg;
    /* The join gate (roomproto.h, rc_roomproto_set_join_gate: the join rate limit), or NULL. */
    rc_roomproto_gate_fn *join_gate;
    void *gate_arg;
    /* Who may do what (ident.h, perm.h). Neither is owned: the server keeps them and swaps
     * them on reload (rc_rooms_set_perm; the keyset pointer directly), so nothing here keeps
     * a pointer into either across calls. */
    const rc_jwt_keys *jwt;  /* token keys, NULL = none: every endpoint is anonymous */
    const rc_perm_rules *perm; /* the namespace rules (never NULL: def_rules by default) */
    bool perm_open;          /* perm allows everything to everyone: checks are skipped */
    rc_perm_rules def_rules; /* the built-in rules (all open), until rc_rooms_set_perm */
    rc_ident_stats auth;     /* token checks, refusals, users */
} rc_rooms;

/* rc_rooms_set_perm makes rules (not owned; NULL: the built-in open rules) the namespace rules
 * every later join and publish is checked against. */
void rc_rooms_set_perm(rc_rooms *t, const rc_perm_rules *rules);

/* rc_rooms_init readies an empty room set on loop and starts its sweep timer. */
void rc_rooms_init(rc_rooms *t, rc_loop *loop, const rc_rooms_config *cfg);

/* rc_rooms_open_store opens the durable log in dir (store.h), restoring every room it holds;
 * acknowledgements are then sent as the log becomes durable. Returns 0, or -1 after logging
 * why it cannot work at all. */
int rc_rooms_open_store(rc_rooms *t, const char *dir, int fsync_mode);

/* rc_rooms_release frees every room (members must already be gone: used at exit) and closes
 * the durable log cleanly. */
void rc_rooms_release(rc_rooms *t);

/* rc_rooms_find returns the room called name[0..len), or NULL. */
rc_room *rc_rooms_find(const rc_rooms *t, const char *name, size_t len);

/* rc_rooms_count is the number of rooms that exist; rc_rooms_next iterates over them (start
 * with *b = 0 and r = NULL). */
static inline uint32_t rc_rooms_count(const rc_rooms *t) { return t->table.count; }
rc_room *rc_rooms_next(const rc_rooms *t, uint32_t *b, const rc_room *r);

/* rc_rooms_kick hands the log records of this loop iteration to the writer (before-sleep). */
void rc_rooms_kick(rc_rooms *t);

/* rc_room_new_epoch gives room a fresh epoch (its history can no longer be trusted whole). */
void rc_room_new_epoch(rc_rooms *t, rc_room *room);

/* rc_room_idem_find returns the msg_id a key hash was published as in this room, or 0. */
uint64_t rc_room_idem_find(const rc_rooms *t, const rc_room *room, uint64_t hash);
void rc_room_idem_add(rc_rooms *t, rc_room *room, uint64_t hash, uint64_t msg_id);

/* rc_wall_ms is the wall-clock time in ms since the Unix epoch. */
uint64_t rc_wall_ms(void);

enum {
    RC_JOIN_OK = 0,          /* joined now */
    RC_JOIN_ALREADY = 1,     /* was already a member */
    RC_JOIN_LIMIT = -1,      /* max_rooms_per_client reached */
    RC_JOIN_NOMEM = -2,
    RC_JOIN_ROOM_LIMIT = -3, /* the room would be one more than max_rooms */
    RC_JOIN_RATE = -4,       /* the endpoint creates rooms faster than create_rate */
};

/* rc_room_join adds ep to the room called name (creating it) with flags (RC_MEMBER_*; a member
 * joining again gets the new flags), storing the room in *out; the members that asked for
 * presence hear of it. Returns one of RC_JOIN_*. */
int rc_room_join(rc_rooms *t, rc_endpoint *ep, const char *name, size_t len, uint8_t flags,
                 rc_room **out);

/* rc_room_leave removes ep from the room at ep->rooms[mslot] for reason (enum rc_leave),
 * telling the members that asked for presence, and deletes the room if it has nothing to
 * keep. */
void rc_room_leave(rc_rooms *t, rc_endpoint *ep, uint32_t mslot, int reason);

/* rc_room_member is ep's entry in room (ep must be a member). */
static inline rc_member *rc_room_member(rc_room *room, const rc_endpoint *ep, int mslot)
{
    return &room->members[ep->rooms[mslot].slot];
}

/* rc_endpoint_room_slot returns the index of room in ep->rooms, or -1 when not a member. */
int rc_endpoint_room_slot(const rc_endpoint *ep, const rc_room *room);

/* rc_endpoint_gone takes ep out of every room (for ep->end_reason), releases its session and
 * drops the acknowledgements it was owed (the owner calls it once, when ep stops being open). */
void rc_endpoint_gone(rc_rooms *t, rc_endpoint *ep);

/* rc_endpoint_end ends ep for a server-side reason (RC_LEAVE_KICKED, RC_LEAVE_REPLACED): out
 * of every room at once, telling presence why, then closed by its owner with code and text. */
void rc_endpoint_end(rc_rooms *t, rc_endpoint *ep, int reason, uint16_t code, const char *text);

/* Encodes the canonical frame of a message (a complete WebSocket text or binary frame) given
 * the msg_id it was assigned. Returns a new message (one reference, handed to
 * rc_room_publish), or NULL when out of memory. */
typedef rc_msg *rc_encode_fn(void *ctx, const rc_room *room, uint64_t msg_id);

struct rc_statekey;

/* rc_room_publish assigns the room's next msg_id, encodes the message once with it, queues it
 * to every member (once per wire format), keeps it in the history and appends it to the
 * durable log, with its idempotency key hash (0: none) so the key survives a restart. Under
 * --fsync always the message is appended at once but held, and queued, kept and given to the
 * state by rc_rooms_durable once its log batch is durable (see the top of this file). A
 * message with a state key sk (NULL: none; state.h, already admitted) becomes that key's
 * value, and replaces an unsent earlier message of the key queued to a member that joined
 * with "conflate". Returns the msg_id, or 0 if encoding (or, to hold it, making room for it)
 * failed: no id is consumed then. When
 * lsn is not NULL it receives the log batch holding the message (0 without a log), for
 * acknowledgements. */
uint64_t rc_room_publish(rc_rooms *t, rc_room *room, rc_encode_fn *encode, void *ctx,
                         uint64_t key, const struct rc_statekey *sk, uint64_t *lsn);

/* rc_room_held_lsn is the log batch message msg_id of room waits for while it is held, 0 when
 * it is delivered (an acknowledgement of a resend waits for the same). */
uint64_t rc_room_held_lsn(const rc_room *room, uint64_t msg_id);

/* rc_room_replay queues to ep (a member of room) every kept message after msg_id since, in
 * ep's wire format, outside its output budget. */
void rc_room_replay(rc_rooms *t, rc_room *room, rc_endpoint *ep, uint64_t since);

/* rc_room_durable is true when the log of room holds batch lsn durably (and always without a
 * log, or when lsn is 0). */
bool rc_room_durable(const rc_rooms *t, const rc_room *room, uint64_t lsn);

/* rc_endpoint_defer queues the reply m (taking a reference) to be sent when batch lsn of room's
 * log is durable. */
void rc_endpoint_defer(rc_rooms *t, rc_endpoint *ep, rc_room *room, uint64_t lsn, rc_msg *m);

/* An answer of a caller that is not an endpoint (the HTTP API's publish) waiting for the log
 * batch holding its message to be durable: embedded in the caller's state, which must outlive
 * it or cancel it. fn runs once, from rc_rooms_durable, with ok true; or with ok false when
 * the room is deleted first (the message was not delivered). */
typedef struct rc_durable_wait {
    struct rc_durable_wait *next;  /* the list it is on */
    struct rc_durable_wait **pprev; /* the pointer to it there; NULL when not waiting */
    rc_room *room;           /* the room whose log holds the message */
    uint64_t lsn;            /* the log batch */
    void (*fn)(struct rc_durable_wait *w, bool ok);
} rc_durable_wait;

/* rc_room_when_durable arms w (fn set by the caller) for batch lsn of room's log; the caller
 * asks rc_room_durable first. rc_room_durable_cancel disarms it (no effect when not armed). */
void rc_room_when_durable(rc_rooms *t, rc_durable_wait *w, rc_room *room, uint64_t lsn);
void rc_room_durable_cancel(rc_durable_wait *w);

/* rc_rooms_durable delivers every held message whose room's log has made it durable, then
 * sends every deferred reply that is now due: room by room, so a room whose log fails holds
 * back only its own messages and acknowledgements. */
void rc_rooms_durable(rc_rooms *t);

/* ---- Redis mode (redisrooms.h) ----------------------------------------------------------
 * rc_rooms_open returns the room called name, creating it without members (NULL: no memory,
 * or max_rooms reached); rc_room_settle lets a room without members go (or wait for its TTL)
 * as a last leave would (rc_room_hold suspends its TTL meanwhile). rc_room_deliver_at is rc_room_publish with the msg_id Redis gave:
 * the canonical frame m (a reference is taken) is fanned out, kept and made last_msg_id.
 * rc_room_reset forgets room's history and adopts epoch (Redis's; "" while it has none). */
rc_room *rc_rooms_open(rc_rooms *t, const char *name, size_t len);
void rc_room_settle(rc_rooms *t, rc_room *room);
/* rc_room_hold keeps a room without members from its TTL (joins wait for it) until
 * rc_room_settle. */
void rc_room_hold(rc_rooms *t, rc_room *room);
void rc_room_deliver_at(rc_rooms *t, rc_room *room, rc_msg *m, uint64_t id);
/* rc_room_deliver_keyed is rc_room_deliver_at for a message with state key sk (NULL: none,
 * or one the state already holds): it also becomes sk's value, and conflates. */
void rc_room_deliver_keyed(rc_rooms *t, rc_room *room, rc_msg *m, uint64_t id,
                           const struct rc_statekey *sk);
void rc_room_reset(rc_rooms *t, rc_room *room, const char *epoch);

#endif
