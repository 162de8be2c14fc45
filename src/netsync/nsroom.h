/* nsroom.h — NetSync rooms: client numbers, live clients, network variables, and what each
 * tick publishes. No sockets here: messages go out through an nsy_publish callback (the ZeroMQ
 * PUB socket in netsync.c; a recorder in tests), which keeps the state machine testable and
 * lets other transports (WebSocket observers, the REST bridge) use the same rooms.
 *
 * A room holds devices in order of first number assignment (that is the mapping order). Each
 * device is one flat record whose hot part is the ROOM_TRANSFORM entry ready to copy: its
 * client number already in the first two bytes, then the raw transform bytes as received. A
 * room also keeps `order`, the indices of its live devices in join order (a re-join appends),
 * so a tick is a header plus one memcpy per visible live client.
 *
 * Behaviour, relative to the reference (see docs/netsync.md for the full list):
 *  - numbers from 1 per room, retained by a departed device for `expiry_ns` (300 s);
 *  - DEVICE_ID_MAPPING is coalesced: at most one per room per tick when membership or a
 *    stealth flag changed, plus one every `mapping_ns` so late subscribers learn numbers;
 *    departed devices keep their own stealth flag;
 *  - RPC and NV sets are accepted only from the ZeroMQ identity of a live client of the room
 *    and carry that client's number (claims are rewritten); others are dropped and counted;
 *  - NV sets are applied on arrival with the conflict rule (so within a tick the winner is
 *    decided by timestamps, not by arrival order) and synced as one delta per tick; a tick
 *    that saw a join sends the full state instead.
 */
#ifndef RC_NSROOM_H
#define RC_NSROOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/hash.h"
#include "core/heap.h"
#include "codec/nsproto.h"
#include "netsync/nsstats.h"

#define NSY_NV_MAX_VARS 20        /* names per scope (room globals, one target client) */
#define NSY_NV_NAME_CP 64         /* name length kept, in code points */
#define NSY_NV_VALUE_CP 1024      /* value length kept, in code points */
#define NSY_ID_MAX 255            /* deviceId / ZeroMQ routing id bytes */

/* nsy_publish sends one message on a room topic; it must not call back into the rooms. */
typedef void nsy_publish(void *arg, const uint8_t *topic, size_t topic_len, const uint8_t *msg,
                        size_t len);

/* What a room just published, for watchers (WebSocket observers) that want the decoded state
 * rather than the wire bytes. The room is valid only during the call; a watcher must not call
 * back into the rooms. */
enum nsy_watch_kind {
    NSY_W_STATE,                  /* ROOM_TRANSFORM and/or DEVICE_ID_MAPPING this tick */
    NSY_W_VARS,                   /* a variable sync: before it, so v->dirty marks the delta */
    NSY_W_RPC,                    /* an RPC was published */
    NSY_W_GONE,                   /* the room is about to be deleted (nobody live) */
};

typedef struct nsy_watch_ev {
    enum nsy_watch_kind kind;
    bool all;                    /* NSY_W_VARS: full state (a join), not a delta */
    uint16_t sender;             /* NSY_W_RPC: sender number (0: server/operator) */
    const uint8_t *name, *args;  /* NSY_W_RPC: function name and argumentsJson */
    size_t name_len, args_len;
} nsy_watch_ev;

struct nsy_room;
typedef void nsy_watch(void *arg, const struct nsy_room *r, const nsy_watch_ev *ev);

typedef struct nsy_params {
    uint64_t tick_ns;            /* min gap between broadcasts of a dirty room; housekeeping (50 ms) */
    uint64_t client_timeout_ns;  /* silence after which a client leaves (1 s) */
    uint64_t idle_ns;            /* re-broadcast period of an unchanged room (0.5 s) */
    uint64_t mapping_ns;         /* periodic DEVICE_ID_MAPPING (1 s) */
    uint64_t expiry_ns;          /* a departed device keeps its number this long (300 s) */
    uint64_t expiry_sweep_ns;    /* how often departed devices are expired (60 s) */
    uint32_t max_rooms;          /* rooms at most (new ones are dropped beyond) */
    uint32_t max_devices;        /* devices (live + departed) per room at most */
    uint32_t max_nv_targets;     /* client-variable targets per room at most */
} nsy_params;

void nsy_params_default(nsy_params *p);

/* One device of a room. The entry is the ROOM_TRANSFORM entry of its latest transform. */
typedef struct nsy_dev {
    uint16_t ent_len;            /* bytes used in ent */
    bool live;                   /* has a client that has not timed out */
    bool stealth;                /* last transform was a stealth heartbeat (kept after leave) */
    uint16_t no;                 /* client number in the room */
    uint8_t id_len;              /* deviceId bytes */
    uint8_t ident_len;           /* ZeroMQ routing id bytes */
    uint32_t hnext;              /* next device in the same hash bucket, UINT32_MAX = none */
    uint32_t transforms;         /* CLIENT_TRANSFORM received (observers derive rates) */
    uint64_t last_seen;          /* loop ns of the last CLIENT_TRANSFORM */
    uint64_t departed;           /* loop ns of the timeout (valid when !live) */
    uint8_t ent[NSY_ENTRY_MAX];   /* u16 no, 96 body bytes, u8 nVirt, virtuals */
    uint8_t id[NSY_ID_MAX];       /* deviceId */
    uint8_t ident[NSY_ID_MAX];    /* routing id of the DEALER that last sent a transform */
} nsy_dev;

typedef struct nsy_var {
    uint8_t name_len;            /* bytes of name */
    bool dirty;                  /* changed since the last sync */
    uint16_t writer;             /* last writer's client number */
    uint32_t value_len;          /* bytes of value */
    double ts;                   /* timestamp of the stored value */
    uint8_t *value;              /* heap, value_len bytes (NULL when empty) */
    uint8_t name[NSY_ID_MAX];     /* name, already cut to 64 code points */
} nsy_var;

/* The variables of one scope: the room's globals, or one target client's. */
typedef struct nsy_vtab {
    uint16_t target;             /* client number (client scope only) */
    uint8_t n;                   /* variables used */
    uint8_t ndirty;              /* variables changed since the last sync */
    nsy_var v[NSY_NV_MAX_VARS];
} nsy_vtab;

typedef struct nsy_room nsy_room;
struct nsy_room {
    rc_hnode node;               /* in the rooms' table, by the id's hash */
    nsy_room *next, *prev;        /* all rooms, creation order */
    uint8_t id[NSY_STR8_MAX];     /* room id = topic */
    uint8_t id_len;
    bool dirty;                  /* a transform/join/leave since the last ROOM_TRANSFORM */
    bool mapping_dirty;          /* membership or a stealth flag changed since the last mapping */
    bool joined;                 /* a join since the last tick: send the full NV state */
    uint16_t next_no;            /* next fresh client number; 0 after 65535 was handed out */
    uint32_t ndev, devcap;       /* devices used / allocated */
    nsy_dev *dev;                 /* devices, in order of first number assignment */
    uint32_t *hbucket;           /* deviceId hash -> first device index */
    uint32_t nbucket;            /* power of two */
    uint32_t nlive;              /* live devices = entries used in order */
    uint32_t nvisible;           /* live and not stealth */
    uint32_t *order;             /* live device indices in join order (devcap entries) */
    uint64_t created;            /* loop ns */
    rc_heap_node due;            /* key: loop ns when the tick must look at it next */
    uint64_t last_bcast;         /* loop ns of the last ROOM_TRANSFORM */
    uint64_t last_house;         /* loop ns of the last timeout/mapping/NV pass */
    uint64_t last_mapping;       /* loop ns of the last DEVICE_ID_MAPPING */
    uint64_t last_expiry;        /* loop ns of the last expiry sweep */
    uint64_t transforms_in;      /* CLIENT_TRANSFORM received (for per-room rates) */
    uint64_t bcasts;             /* ROOM_TRANSFORM published */
    nsy_vtab globals;             /* global variables */
    nsy_vtab **cvars;             /* client variables, one table per target */
    uint32_t ncvars, cvarcap;
    bool nv_dirty;               /* some variable is dirty */
};

typedef struct nsy_rooms {
    nsy_params p;                 /* limits and periods */
    rc_netsync_stats *st;        /* counters (not owned) */
    nsy_publish *publish;         /* output */
    void *publish_arg;
    nsy_watch *watch;             /* observer of what is published, NULL when none */
    void *watch_arg;
    nsy_room *head, *tail;        /* all rooms */
    rc_htab table;               /* rooms by id */
    uint32_t nrooms;
    rc_heap due;                 /* rooms by due time (per-room cadence) */
    uint64_t wake;               /* earliest loop ns a room is due (UINT64_MAX: none) */
    rc_buf out;                  /* encode scratch, reused by every message */
} nsy_rooms;

/* nsy_rooms_init prepares an empty set; nsy_rooms_release frees every room. */
int nsy_rooms_init(nsy_rooms *rs, const nsy_params *p, rc_netsync_stats *st, nsy_publish *pub,
                  void *arg);
void nsy_rooms_release(nsy_rooms *rs);

nsy_room *nsy_room_find(const nsy_rooms *rs, const uint8_t *id, size_t len);

/* Client input. `room` is a valid room id (<= 255 bytes of UTF-8), `ident` the ZeroMQ routing
 * id of the sender, `p` the payload whose type has been classified. Each function counts what
 * it drops. now is loop time in ns. */
void nsy_on_transform(nsy_rooms *rs, const uint8_t *room, size_t room_len, const uint8_t *ident,
                     size_t ident_len, const nsy_client_transform *t, uint64_t now);
void nsy_on_rpc(nsy_rooms *rs, const uint8_t *room, size_t room_len, const uint8_t *ident,
               size_t ident_len, const nsy_rpc *r);
void nsy_on_var_set(nsy_rooms *rs, const uint8_t *room, size_t room_len, const uint8_t *ident,
                   size_t ident_len, const nsy_var_set *v, bool global);

/* nsy_rooms_input handles one client message once the transport has split its frames
 * ([identity][room][payload], frames after the payload already ignored and counted by the
 * caller): it rejects a room id > 255 bytes or not UTF-8, classifies and parses the payload,
 * dispatches it to the functions above and counts every drop by reason (rs->st->dropped).
 * netsync.c calls it for each ROUTER message; it is a separate function (a test seam) so
 * that the drop counters can be unit-tested without sockets. */
void nsy_rooms_input(nsy_rooms *rs, const uint8_t *ident, size_t ident_len, const uint8_t *room,
                    size_t room_len, const uint8_t *p, size_t n, uint64_t now);

/* nsy_rooms_tick processes the rooms that are due: timeouts, mappings, NV syncs and the
 * ROOM_TRANSFORM, device expiry, deletion of rooms without live clients. Each room keeps its
 * own cadence: a dirty room is published as soon as tick_ns has passed since its last
 * broadcast (at once if it was quiet for longer), and its housekeeping runs every tick_ns.
 * Returns rs->wake, the earliest loop ns at which a room is due next (UINT64_MAX: no room);
 * input that dirties a quiet room lowers rs->wake, so the caller re-arms its timer after
 * feeding input. */
uint64_t nsy_rooms_tick(nsy_rooms *rs, uint64_t now);

/* Results of a variable set (enum order matters to nobody; names for HTTP mapping). */
enum nsy_nv_result {
    NSY_NV_APPLIED,           /* stored; synced at the next tick */
    NSY_NV_UNCHANGED,         /* equal to the stored value: nothing to do */
    NSY_NV_STALE,             /* older timestamp, or same timestamp and lower sender */
    NSY_NV_LIMIT,             /* a new name beyond NSY_NV_MAX_VARS (or too many targets) */
    NSY_NV_EMPTY_NAME,        /* empty names are ignored */
    NSY_NV_NOMEM,
};

/* nsy_room_set_var applies one variable set with the conflict rule (name and value cut to
 * 64/1024 code points; both must be valid UTF-8). target < 0 means a global variable. */
enum nsy_nv_result nsy_room_set_var(nsy_rooms *rs, nsy_room *r, int target, const uint8_t *name,
                                  size_t name_len, const uint8_t *value, size_t value_len,
                                  double ts, uint16_t sender);

/* nsy_room_publish_rpc publishes an RPC on the room topic with the given sender number. */
int nsy_room_publish_rpc(nsy_rooms *rs, nsy_room *r, uint16_t sender, const uint8_t *name,
                        size_t name_len, const uint8_t *args, size_t args_len);

/* nsy_room_find_device returns the device index of deviceId in r, or -1. */
long nsy_room_find_device(const nsy_room *r, const uint8_t *id, size_t len);

#endif
