/* ns8room.h — NetSync protocol 8 rooms: the v8 server state machine (spec
 * /work/shared/netsync-protocol-v8.md §4), pure like nsroom.h. No sockets: input is a parsed
 * (or raw) message with the lane and ZeroMQ routing identity it came from and a monotonic time;
 * output goes through callbacks (nsr8_io): `unicast` for the control ROUTER downlink
 * [identity][room][payload], `publish` for the PUB socket (ROOM_POSE on topic = room id,
 * ROOM_OBJECTS on topic = room id + "\0obj"), and `connected`, which the transport answers
 * ("does this routing identity still have a connection on that lane?").
 *
 * Time is loop time in ns (any monotonic origin); the f64 times on the wire (broadcastTime,
 * poseTime) are that time in seconds, one clock for both as clients require (§7).
 *
 * Behaviour (§4.1-4.8) with the reference's defects (§6) fixed:
 *  - numbers per room from 1 by deviceId, in order of first sight; a departed device keeps its
 *    number for expiry_ns (86 400 s, swept every expiry_sweep_ns); after 65 535 numbers the
 *    lowest free one is reused. A room is deleted empty_room_ns (86 400 s) after its
 *    last entry left; its variables, objects and numbers live until then.
 *  - entry = a device that is "present" (has a room entry). Liveness: HELLO, POSE and accepted
 *    control messages refresh last_update, OBJECT_POSE does not; an entry silent for more than
 *    client_timeout_ns (5 s) is removed at the next sweep (every cleanup_ns, 1 s): its pose is
 *    dropped, its identities forgotten, the objects it owns released (OWNERSHIP_CHANGED new 0).
 *  - HELLO (control lane) creates or refreshes the entry with this control identity and the
 *    stealth flag. A new entry gets, unicast to itself only: the full GLOBAL_VAR_SYNC (if any),
 *    a CLIENT_VAR_SYNC listing every mapped number (departed included, empty lists included) and
 *    OWNERSHIP_CHANGED(obj, owner, 0) for every object; the others get the newcomer's own client
 *    variables only if it has some (stored by deviceId from an earlier visit or the REST API).
 *    This keeps a join O(room size) messages of O(1) size plus the debounced mapping, instead of
 *    the reference's full sync to the whole room on every join (O(N^2) bytes per join, §6.6).
 *    An existing entry with a new control identity (reconnect) gets the same unicast sync.
 *  - POSE (transform lane) creates or updates the entry: transform identity, body (re-framed by
 *    its parsed length: trailing bytes are counted and never relayed; > 50 virtuals cut to 50),
 *    stealth = flags bit0, poseTime = arrival of this pose (not of any message, §6.8). An entry
 *    created by POSE has no control identity and gets no unicast until its HELLO. The first
 *    POSE after HELLO (entry had a control but no transform identity) counts as a reconnect:
 *    mapping dirty and the full sync unicast again (as measured on the reference).
 *  - DEVICE_ID_MAPPING (version bytes from the params, default 0.16.3): when membership, an
 *    identity or a stealth flag changed, at most once per mapping_debounce_ns (0.5 s); current
 *    entries only, in number-assignment order; unicast to every entry with a control identity.
 *  - ROOM_POSE (PUB, topic room): non-stealth entries with a pose, recipient included; a dirty
 *    room is published when bcast_ns (0.1 s) passed since its last one, any room with entries
 *    every idle_ns (2 s); count 0 is sent. Only a pose or a change of what is visible makes a
 *    room dirty: a stealth HELLO never does (§6.11).
 *  - RPC: sender number resolved from the deviceId; empty target list = every entry with a
 *    control identity, the sender and stealth entries included; else the listed numbers only;
 *    re-serialized with the resolved sender.
 *  - NV: GLOBAL/CLIENT_VAR_SET go to a per-room pending list in arrival order (a later write of
 *    the same key in the window overwrites the value in place), flushed nv_flush_ns (0.1 s)
 *    after the first pending write. Name cut to 64 and value to 1024 code points, empty name
 *    dropped, equal value a no-op, 100 names per scope (new names beyond are dropped). Flush
 *    sends a GLOBAL_VAR_SYNC of the changed names and one CLIENT_VAR_SYNC with the complete list
 *    of each changed target, to every entry with a control identity. Client variables are keyed
 *    by deviceId (they survive numbers and visits); the target of a CLIENT_VAR_SET must be a
 *    mapped number (present or departed). CLEAR deletes the sender's variables and its pending
 *    writes and sends CLIENT_VAR_SYNC {sender: []} at once.
 *  - objects (§4.7): request always granted (CHANGED new, previous to the room); release by the
 *    owner -> CHANGED(0, previous) to the room, by anyone else -> REJECTED(owner, 1) to the
 *    requester; other ops register the object with owner 0. OBJECT_POSE of an unknown object
 *    registers it to the sender (CHANGED(sender, 0) to the room); of a known one is kept only
 *    from its owner. ROOM_OBJECTS (topic room+"\0obj") lists every object that had a pose, at
 *    bcast_ns when dirty, every idle_ns while the room has entries. Object id 0 is dropped.
 *
 * Who may speak for a deviceId (the fixes of §6.3, §6.4, §6.5):
 *  - hijack: a HELLO or control message naming a present device whose control identity is a
 *    *different* routing identity that `connected` still reports and whose last_update is
 *    within client_timeout_ns is dropped (NSR8_DROP_HIJACK). Otherwise (old identity gone or the
 *    device timed out) it takes over: a reconnect. The same rule guards the transform identity
 *    for POSE. Without a `connected` callback every identity counts as connected (takeover then
 *    waits for the timeout).
 *  - phantoms: only HELLO and POSE create devices. A control message (RPC, NV, CLEAR,
 *    OWNERSHIP_REQUEST) is accepted only for a deviceId the room already knows (present, or
 *    departed with its number retained) and, subject to the hijack rule, attaches the sending
 *    identity: this keeps a v8 Unity client working when it reconnects at ZMQ level and sends an
 *    RPC before anything else (§9), while a v0.6 RPC misread as v8 (§6.4) or a forged deviceId
 *    names nobody (NSR8_DROP_UNKNOWN_DEVICE). A departed device re-enters as non-stealth, with
 *    no sync (as the reference's control registration). A present entry without control
 *    identity (pose-only) accepts the first control identity that speaks for it.
 *  - OBJECT_POSE is accepted only for a present device, from its transform identity, its
 *    control identity, or any identity while it has no live transform identity
 *    (NSR8_DROP_NOT_MEMBER / NSR8_DROP_HIJACK otherwise), so objects are only ever owned by
 *    entries, and an entry's objects are released when it leaves (§6.5).
 *  - room ids over 255 bytes or not UTF-8 are refused at the door and counted (§6.7).
 *
 * Complexity: devices and objects are arrays searched linearly (rooms are hundreds of entries at
 * most; the reference measured 100). A tick walks every room; nsr8_next_deadline() is the
 * earliest time any room needs a tick, so the transport arms one timer.
 */
#ifndef RC_NS8ROOM_H
#define RC_NS8ROOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/ns8proto.h"
#include "core/buf.h"
#include "core/hash.h"

#define NSR8_ID_MAX 255           /* deviceId, room id, routing identity bytes */

/* ---- callbacks --------------------------------------------------------------------------- */

typedef struct nsr8_io {
    /* one control-ROUTER message [ident][room][payload]; must not call back into the rooms */
    void (*unicast)(void *arg, const uint8_t *ident, size_t ident_len, const uint8_t *room,
                    size_t room_len, const uint8_t *payload, size_t len);
    /* one PUB message [topic][payload]; must not call back into the rooms */
    void (*publish)(void *arg, const uint8_t *topic, size_t topic_len, const uint8_t *payload,
                    size_t len);
    /* is this routing identity still connected on that lane? NULL: always true */
    bool (*connected)(void *arg, enum ns8_lane lane, const uint8_t *ident, size_t ident_len);
    void *arg;                    /* passed to the three */
} nsr8_io;

/* ---- parameters -------------------------------------------------------------------------- */

typedef struct nsr8_params {
    uint64_t bcast_ns;            /* min gap of ROOM_POSE/ROOM_OBJECTS of a dirty room (0.1 s) */
    uint64_t idle_ns;             /* re-broadcast of an unchanged room (2 s) */
    uint64_t client_timeout_ns;   /* silence after which an entry is removed (5 s) */
    uint64_t cleanup_ns;          /* timeout sweep period (1 s) */
    uint64_t expiry_ns;           /* a departed device keeps its number this long (86 400 s) */
    uint64_t expiry_sweep_ns;     /* how often departed devices are expired (60 s) */
    uint64_t empty_room_ns;       /* a room without entries is deleted after this (86 400 s) */
    uint64_t mapping_debounce_ns; /* min gap between two mappings of a room (0.5 s) */
    uint64_t nv_flush_ns;         /* NV pending window, from its first write (0.1 s) */
    uint32_t max_global_vars;     /* names per room (100) */
    uint32_t max_client_vars;     /* names per device (100) */
    uint32_t name_cp;             /* variable name kept, in code points (64) */
    uint32_t value_cp;            /* variable value kept, in code points (1024) */
    uint32_t max_pending;         /* pending NV writes per room (4096; beyond: dropped) */
    uint32_t max_rooms;           /* rooms (10 000) */
    uint32_t max_devices;         /* devices with a number (present + departed) per room (4096) */
    uint32_t max_objects;         /* objects per room (4096) */
    uint8_t version[3];           /* DEVICE_ID_MAPPING server version (0, 16, 3) */
} nsr8_params;

void nsr8_params_default(nsr8_params *p);

/* ---- counters ---------------------------------------------------------------------------- */

enum nsr8_drop {
    NSR8_DROP_ROOM_TOO_LONG,      /* room id > 255 bytes */
    NSR8_DROP_ROOM_UTF8,          /* room id not UTF-8 */
    NSR8_DROP_EMPTY,              /* empty payload */
    NSR8_DROP_UNKNOWN_TYPE,       /* not a v8 client->server type */
    NSR8_DROP_SERVER_TYPE,        /* server->client type sent by a client */
    NSR8_DROP_TRUNCATED,          /* a field runs past the end */
    NSR8_DROP_UTF8,               /* a string is not UTF-8 */
    NSR8_DROP_VERSION,            /* version byte != 8 */
    NSR8_DROP_TRAILING,           /* control message with bytes after its last field */
    NSR8_DROP_PHYSICAL,           /* pose with an undecodable physical block */
    NSR8_DROP_WRONG_LANE,         /* valid message on the other uplink */
    NSR8_DROP_EMPTY_DEVICE,       /* control message / OBJECT_POSE with deviceId "" */
    NSR8_DROP_UNKNOWN_DEVICE,     /* control message for a deviceId the room does not know */
    NSR8_DROP_HIJACK,             /* deviceId held by another live, connected identity */
    NSR8_DROP_NOT_MEMBER,         /* OBJECT_POSE for a device without room entry */
    NSR8_DROP_NOT_OWNER,          /* OBJECT_POSE of an object owned by someone else */
    NSR8_DROP_OBJECT_ZERO,        /* object id 0 */
    NSR8_DROP_UNKNOWN_TARGET,     /* CLIENT_VAR_SET to an unmapped number */
    NSR8_DROP_NV_LIMIT,           /* new name beyond 100, or pending list full */
    NSR8_DROP_NV_EMPTY_NAME,      /* variable with an empty name */
    NSR8_DROP_ROOM_LIMIT,         /* new room beyond max_rooms */
    NSR8_DROP_DEVICE_LIMIT,       /* new device beyond max_devices */
    NSR8_DROP_OBJECT_LIMIT,       /* new object beyond max_objects */
    NSR8_DROP_NUMBERS,            /* no free client number */
    NSR8_DROP_NOMEM,              /* out of memory */
    NSR8_DROP__COUNT
};

extern const char *const nsr8_drop_names[NSR8_DROP__COUNT];

typedef struct nsr8_stats {
    /* gauges */
    uint64_t rooms;               /* rooms */
    uint64_t clients;             /* present entries, all rooms (stealth included) */
    uint64_t devices;             /* devices holding a number (present + departed) */
    /* input */
    uint64_t msgs_in;             /* messages handed to the rooms */
    uint64_t hellos_in, poses_in, object_poses_in, rpc_in, nv_in, clears_in, ownership_in;
    uint64_t joins;               /* entries created (HELLO, POSE, re-entry by control message) */
    uint64_t timeouts;            /* entries removed for silence */
    uint64_t reconnects;          /* control/transform identity replaced by a reconnect */
    uint64_t dropped[NSR8_DROP__COUNT]; /* dropped messages by reason */
    uint64_t pose_trailing;       /* poses/object poses with trailing bytes (not relayed) */
    uint64_t pose_trailing_bytes; /* those bytes */
    uint64_t nvirt_clamped;       /* poses announcing > 50 virtuals (relayed as 50) */
    uint64_t rpc_rewritten;       /* RPC/NV whose claimed sender differed from the resolved one */
    uint64_t nv_applied, nv_unchanged, nv_truncated; /* NV outcomes at flush / REST */
    uint64_t objects_released;    /* objects released because their owner left */
    /* output */
    uint64_t unicasts;            /* control-ROUTER messages handed to the transport */
    uint64_t publishes;           /* PUB messages handed to the transport */
    uint64_t bytes_out;           /* payload bytes of both */
    uint64_t mappings_out, syncs_out, rpc_out, ownership_out; /* unicasts by kind */
    uint64_t room_poses_out, room_objects_out;                /* publishes by kind */
    uint64_t encode_errors;       /* messages not sent: too long for the wire or no memory */
} nsr8_stats;

/* ---- state (read-only outside ns8room.c: HTTP API and observers iterate it) -------------- */

typedef struct nsr8_var {
    uint8_t name_len;             /* bytes of name (already cut to name_cp code points) */
    uint16_t writer;              /* last writer's client number, 0 = server/REST */
    uint32_t value_len;           /* bytes of value */
    bool dirty;                   /* changed since the last sync (internal) */
    uint8_t *value;               /* heap, value_len bytes (NULL when empty) */
    uint8_t name[NSR8_ID_MAX];
} nsr8_var;

typedef struct nsr8_vtab {
    uint32_t n, cap;              /* variables used / allocated */
    nsr8_var *v;                  /* in order of first write */
} nsr8_vtab;

/* The client variables of one deviceId (kept for the room's lifetime). */
typedef struct nsr8_cvdev {
    uint8_t id_len;
    bool dirty;                   /* some variable changed since the last sync (internal) */
    nsr8_vtab vars;
    uint8_t id[NSR8_ID_MAX];      /* deviceId */
} nsr8_cvdev;

typedef struct nsr8_dev {
    uint16_t no;                  /* client number in the room */
    bool present;                 /* has a room entry (listed in the mapping) */
    bool stealth;                 /* entry is stealth */
    bool has_pose;                /* a POSE arrived since the entry was created */
    uint8_t id_len, ctl_len, tf_len; /* bytes of id / control identity / transform identity */
    uint16_t body_len;            /* bytes of body */
    uint64_t last_update;         /* ns of the last HELLO/POSE/control message */
    uint64_t pose_at;             /* ns of the last POSE (its poseTime) */
    uint64_t departed;            /* ns the entry was removed (valid when !present) */
    uint64_t poses;               /* POSEs received (observers derive rates) */
    uint8_t id[NSR8_ID_MAX];      /* deviceId */
    uint8_t ctl[NSR8_ID_MAX];     /* control routing identity (ctl_len 0: none) */
    uint8_t tf[NSR8_ID_MAX];      /* transform routing identity (tf_len 0: none) */
    uint8_t body[NS8_BODY_MAX];   /* last pose body, relay form */
} nsr8_dev;

typedef struct nsr8_obj {
    uint32_t id;                  /* objectId, never 0 */
    uint16_t owner;               /* owner's client number, 0 = none */
    uint16_t seq;                 /* poseSeq of the last accepted pose */
    bool has_pose;                /* listed in ROOM_OBJECTS */
    uint64_t pose_at;             /* ns of the last accepted pose */
    uint8_t body[NS8_OBJ_BODY_SIZE];
} nsr8_obj;

typedef struct nsr8_pend {        /* one pending NV write (internal) */
    int32_t cv;                   /* index in cvs, -1 = global */
    uint16_t writer;
    uint8_t name_len;
    uint32_t value_len;
    uint8_t *value;
    uint8_t name[NSR8_ID_MAX];
} nsr8_pend;

typedef struct nsr8_room nsr8_room;
struct nsr8_room {
    rc_hnode node;                /* in the rooms' table */
    nsr8_room *next, *prev;       /* all rooms, creation order */
    uint8_t id_len;
    uint8_t id[NSR8_ID_MAX];      /* room id = ROOM_POSE topic */
    nsr8_dev *dev;                /* devices with a number, in order of first number assignment */
    uint32_t ndev, devcap;
    uint32_t npresent;            /* devices with an entry */
    uint16_t next_no;             /* next fresh number; 0 once 65535 was handed out */
    nsr8_obj *obj;                /* objects, in order of registration */
    uint32_t nobj, objcap;
    uint32_t nobj_posed;          /* objects with has_pose */
    nsr8_vtab globals;            /* global variables */
    nsr8_cvdev *cvs;              /* client variables by deviceId */
    uint32_t ncvs, cvcap;
    nsr8_pend *pend;              /* pending NV writes, arrival order */
    uint32_t npend, pendcap;
    bool dirty;                   /* ROOM_POSE content changed since the last one */
    bool obj_dirty;               /* ROOM_OBJECTS content changed since the last one */
    bool mapping_dirty;           /* mapping content changed since the last one */
    uint64_t created;             /* ns */
    uint64_t last_pose_bcast;     /* ns of the last ROOM_POSE (0: never) */
    uint64_t last_obj_bcast;      /* ns of the last ROOM_OBJECTS (0: never) */
    uint64_t last_mapping;        /* ns of the last mapping (0: never) */
    uint64_t pend_since;          /* ns of the first pending write of the window */
    uint64_t last_sweep;          /* ns of the last timeout sweep */
    uint64_t last_expiry;         /* ns of the last expiry sweep */
    uint64_t empty_since;         /* ns the last entry left (valid when npresent == 0) */
    uint64_t poses_in;            /* POSEs received */
    uint64_t pose_bcasts;         /* ROOM_POSE published */
};

typedef struct nsr8_rooms {
    nsr8_params p;                /* limits and periods */
    nsr8_stats *st;               /* counters (not owned) */
    nsr8_io io;                   /* output */
    nsr8_room *head, *tail;       /* all rooms, creation order: iterate with r->next */
    rc_htab table;                /* rooms by id */
    uint32_t nrooms;
    uint64_t wake;                /* earliest ns a room needs a tick (UINT64_MAX: none) */
    rc_buf out;                   /* encode scratch */
    rc_buf out2;                  /* second scratch (topic of ROOM_OBJECTS) */
} nsr8_rooms;

/* nsr8_rooms_init prepares an empty set (st and io are used, not owned, st is not zeroed);
 * nsr8_rooms_release frees every room. */
int nsr8_rooms_init(nsr8_rooms *rs, const nsr8_params *p, nsr8_stats *st, const nsr8_io *io);
void nsr8_rooms_release(nsr8_rooms *rs);

nsr8_room *nsr8_room_find(const nsr8_rooms *rs, const uint8_t *id, size_t len);
/* nsr8_dev_find returns the device of deviceId in r (present or departed), or NULL. */
nsr8_dev *nsr8_dev_find(const nsr8_room *r, const uint8_t *id, size_t len);

/* ---- input ------------------------------------------------------------------------------- */

/* nsr8_input handles one client message once the transport has split its frames ([identity]
 * [room][payload] on `lane`): checks the room id, parses the payload as v8 (ns8_parse), checks
 * the lane and dispatches; every drop is counted by reason. A transport serving both
 * generations calls ns8_classify first and hands V8 messages to nsr8_on_msg instead. */
void nsr8_input(nsr8_rooms *rs, enum ns8_lane lane, const uint8_t *ident, size_t ident_len,
                const uint8_t *room, size_t room_len, const uint8_t *p, size_t n, uint64_t now);
/* nsr8_on_msg handles an already parsed message (the room id is still checked here). */
void nsr8_on_msg(nsr8_rooms *rs, enum ns8_lane lane, const uint8_t *ident, size_t ident_len,
                 const uint8_t *room, size_t room_len, const ns8_msg *m, uint64_t now);

/* nsr8_tick does what is due at `now` in every room (sweeps, mapping, NV flush, ROOM_POSE,
 * ROOM_OBJECTS, expiry, deletion) and returns nsr8_next_deadline(). */
uint64_t nsr8_tick(nsr8_rooms *rs, uint64_t now);
/* nsr8_next_deadline is the earliest ns at which nsr8_tick has work (UINT64_MAX: none). Input
 * can only lower it, so the transport re-arms its timer after feeding input. */
static inline uint64_t nsr8_next_deadline(const nsr8_rooms *rs) { return rs->wake; }

/* ---- REST bridge (§4.10) ----------------------------------------------------------------- */

enum nsr8_nv_result {
    NSR8_NV_APPLIED,              /* stored (changed) */
    NSR8_NV_UNCHANGED,            /* equal to the stored value */
    NSR8_NV_LIMIT,                /* a new name beyond the limit (HTTP 409) */
    NSR8_NV_EMPTY_NAME,           /* empty name (HTTP 422) */
    NSR8_NV_BAD,                  /* room/device/name/value not UTF-8 or room too long (422) */
    NSR8_NV_NOMEM,
};

/* nsr8_cvar_set writes a client variable of (room, deviceId) into the device-keyed store,
 * creating the room if needed (devices that never joined are fine); lastWriter 0; name/value
 * cut to name_cp/value_cp code points. Nothing is sent: call nsr8_cvar_commit after the batch. */
enum nsr8_nv_result nsr8_cvar_set(nsr8_rooms *rs, const uint8_t *room, size_t room_len,
                                  const uint8_t *dev, size_t dev_len, const uint8_t *name,
                                  size_t name_len, const uint8_t *value, size_t value_len,
                                  uint64_t now);
/* nsr8_cvar_commit sends CLIENT_VAR_SYNC {no: all variables} to the room when the device has a
 * number and its variables changed since the last sync. Returns the number (0: not mapped). */
uint16_t nsr8_cvar_commit(nsr8_rooms *rs, const uint8_t *room, size_t room_len,
                          const uint8_t *dev, size_t dev_len);
/* nsr8_cvars returns the variables of (room, deviceId), NULL when none were ever stored. */
const nsr8_vtab *nsr8_cvars(const nsr8_rooms *rs, const uint8_t *room, size_t room_len,
                            const uint8_t *dev, size_t dev_len);
/* nsr8_cvar_delete deletes one variable (name != NULL) or all; syncs the device's list to the
 * room when it is mapped and something was deleted. Returns the count deleted. */
unsigned nsr8_cvar_delete(nsr8_rooms *rs, const uint8_t *room, size_t room_len,
                          const uint8_t *dev, size_t dev_len, const uint8_t *name,
                          size_t name_len);
/* nsr8_gvar_set writes a global variable as the operator (lastWriter 0). Creates the room if
 * needed. Nothing is sent: call nsr8_gvar_commit after the batch. */
enum nsr8_nv_result nsr8_gvar_set(nsr8_rooms *rs, const uint8_t *room, size_t room_len,
                                  const uint8_t *name, size_t name_len, const uint8_t *value,
                                  size_t value_len, uint64_t now);
/* nsr8_gvar_commit sends one GLOBAL_VAR_SYNC of the globals that changed since the last sync
 * to the room (nothing when none did). */
void nsr8_gvar_commit(nsr8_rooms *rs, const uint8_t *room, size_t room_len);
const nsr8_vtab *nsr8_gvars(const nsr8_rooms *rs, const uint8_t *room, size_t room_len);
/* nsr8_var_find looks a name up in a table (NULL table or no such name: NULL). */
const nsr8_var *nsr8_var_find(const nsr8_vtab *t, const uint8_t *name, size_t name_len);
/* nsr8_dev_number is the client number of (room, deviceId), 0 when it has none. */
uint16_t nsr8_dev_number(const nsr8_rooms *rs, const uint8_t *room, size_t room_len,
                         const uint8_t *dev, size_t dev_len);

#endif
