/* netsync.h — the STYLY NetSync-compatible ZeroMQ transport (docs/netsync.md).
 *
 * Unity and Python NetSync clients (v0.6.x wire format, up to 0.7.5) talk to roomcast as they
 * would to the reference Python server: a ROUTER socket receives [roomId][payload] from each
 * client's DEALER, a PUB socket sends [roomId][payload] to the SUBs, and UDP/TCP discovery
 * answers on a third port. Everything runs on roomcast's loop. With opts.engine native (the
 * default, --zmq-engine) the three sockets are roomcast's own ZMTP 3 (transport/zmtpsock.h):
 * no other thread, limits checked at frame headers, connections known exactly. With libzmq,
 * the rest of this paragraph: each ZeroMQ socket's ZMQ_FD is an rc_io, drained on wake-up until ZMQ_EVENTS shows no more input (ZMQ_FD only signals
 * edges), with a capped batch per wake-up and a zero-delay rc_timer to continue, so a flood
 * on the ROUTER cannot starve WebSocket clients. One rc_timer drives the tick (every tick_ns
 * while any room exists): timeouts, coalesced mappings, NV syncs, and one encoded
 * ROOM_TRANSFORM per room published once. libzmq's own I/O thread is the only other thread,
 * with nspeers' watchdog, which acts only while this thread is stuck inside libzmq. Input is
 * limited: frames and messages to opts.max_message_size on the ROUTER, to
 * RC_NETSYNC_PUB_MAX_INBOUND on the PUB, subscriptions per SUB, messages that never end; a
 * peer over a limit is disconnected and counted (nspeers.h, docs/netsync.md "Limits").
 *
 * The rooms (src/netsync/nsroom.h) are readable through rc_netsync_rooms() for the HTTP API
 * and WebSocket observers, which can also inject RPCs and variable sets with the functions
 * below. All functions must be called on the loop's thread.
 */
#ifndef RC_NETSYNC_H
#define RC_NETSYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"
#include "netsync/nsroom.h"
#include "netsync/nsstats.h"
#include "transport/zmtpsock.h"

typedef struct rc_netsync rc_netsync;

/* The largest message a v0.6 client sends (wire spec §2, §3.1), in the frame sizes ZeroMQ
 * limits (ZMQ_MAXMSGSIZE counts one frame; [roomId][payload] is two):
 *   CLIENT_VAR_SET   1 type + 2 sender + 2 target + (1 + 255) name + (2 + 65535) value
 *                    + 8 timestamp                                              = 65 806
 *   GLOBAL_VAR_SET   the same without the target                                = 65 804
 *   RPC              1 + 2 sender + (1 + 255) function + (2 + 65535) arguments  = 65 796
 *   CLIENT_TRANSFORM 1 + (1 + 255) deviceId + 96 + 1 nVirt + 255 * 24 virtuals  =  6 474
 *                    (nVirt is a u8; more than 50 is legal input, clamped when read)
 *   room id frame    at most 255 (longer ids are dropped: room_too_long)
 *   ZMTP READY       6 + (1 + 11 + 4 + 6) Socket-Type + (1 + 8 + 4 + 255) Identity = 296
 * so the payload frame of a CLIENT_VAR_SET is the largest legal frame. */
#define RC_NETSYNC_LARGEST_MESSAGE 65806

/* The default cap on a frame received by the ROUTER (--netsync-max-message-size): twice the
 * largest legal message. The margin admits what the reference accepts beyond the layouts —
 * trailing bytes after the last field are ignored (spec §2), so a client may append some, as
 * a later protocol revision could — without reaching sizes that matter: libzmq allocates a
 * frame's whole announced size when its header arrives, so each connection can make the
 * server hold up to this much per frame in progress. The flag's minimum, 8 KiB, keeps the
 * largest transform and the handshake; RPC and variables up to the limit are then refused. */
#define RC_NETSYNC_MAX_MESSAGE_DEFAULT (128 * 1024)
#define RC_NETSYNC_MAX_MESSAGE_MIN 8192
#define RC_NETSYNC_MAX_MESSAGE_MAX (16 * 1024 * 1024)

/* The cap on a frame received by the PUB socket, which only hears from SUBs: a subscription is
 * 1 + topic bytes (ZMTP 3.0) or a 10 + topic SUBSCRIBE command (3.1), and a topic longer than a
 * room id (255) matches nothing; a SUB's READY is at most 6 + 19 + 268 = 293 (as above, with
 * "SUB"), a PING at most 23. 512 leaves room for all of them and keeps each subscription under
 * 512 bytes (libzmq stores about 30 bytes of memory per subscribed byte). */
#define RC_NETSYNC_PUB_MAX_INBOUND 512

/* What TCP discovery answers (one reply per connection, so one format; UDP sends all). */
enum rc_netsync_tcp_disc {
    RC_NETSYNC_TCP_DISC_V06,     /* STYLY-NETSYNC|router|pub|name (the default) */
    RC_NETSYNC_TCP_DISC_V8,      /* STYLY-NETSYNC3|control|transform|pub|rest|name */
};

/* Per-peer unicast queue bounds (nsident.h "Slow consumer"). */
#define RC_NETSYNC_UNICAST_MAX_BYTES_DEFAULT (4u << 20)
#define RC_NETSYNC_UNICAST_MAX_MSGS 16384

typedef struct rc_netsync_opts {
    const char *bind;            /* address for all the ports: IPv4, IPv6 or "*" */
    uint16_t router_port;        /* control ROUTER (clients' DEALER), 0 = pick a free port (5555) */
    uint16_t pose_port;          /* transform (pose) ROUTER, protocol 8, 0 = pick (5557) */
    uint16_t pub_port;           /* PUB (clients' SUB), 0 = pick (5556) */
    uint16_t discovery_port;     /* UDP + TCP discovery, 0 = pick (9999) */
    uint16_t rest_port;          /* REST bridge port announced by STYLY-NETSYNC3 discovery
                                    (the HTTP port; 0 until known) */
    enum rc_netsync_tcp_disc tcp_discovery; /* format of the TCP discovery reply (v06) */
    size_t unicast_max_bytes;    /* bytes queued for one peer before it is disconnected as a
                                    slow consumer (4 MiB) */
    uint64_t tick_ns;            /* broadcast cadence of dirty rooms (50 ms) */
    uint64_t idle_ns;            /* re-broadcast of unchanged rooms (0.5 s) */
    uint64_t client_timeout_ns;  /* silence before a client leaves (1 s) */
    /* protocol 8's cadences (spec v8 §4.11; 0 = the spec's default): */
    uint64_t v8_client_timeout_ns; /* silence before a v8 entry is removed (5 s) */
    uint64_t v8_bcast_ns;        /* min gap of a dirty room's ROOM_POSE/ROOM_OBJECTS (0.1 s) */
    uint64_t v8_idle_ns;         /* re-broadcast of an unchanged room (2 s) */
    uint64_t v8_mapping_ns;      /* min gap between two mappings of a room (0.5 s) */
    uint64_t v8_nv_flush_ns;     /* network-variable window (0.1 s) */
    uint64_t mapping_ns;         /* periodic DEVICE_ID_MAPPING for late subscribers (1 s) */
    const char *server_name;     /* discovery name ("STYLY-NetSync-Server") */
    size_t max_message_size;     /* largest message the ROUTER takes, room id aside (each
                                    frame, and the frames after the room id together), bytes;
                                    a peer sending more is disconnected (128 KiB) */
    int engine;                  /* enum rc_zms_engine: native ZMTP sockets on the loop
                                    (transport/zmtpsock.h) or libzmq (zsock.h, nspeers.h) */
    rc_zms_gate gate;            /* native engine: the server's connection limits, asked at
                                    every accept of the three ZeroMQ sockets (zmtpsock.h);
                                    none when zeroed. Refusals count as disconnects
                                    "connection_limit". libzmq accepts on its own thread:
                                    not applied there. */
} rc_netsync_opts;

/* rc_netsync_opts_default fills in the defaults above (bind "127.0.0.1"). */
void rc_netsync_opts_default(rc_netsync_opts *o);

/* rc_netsync_new binds the four ports and attaches them to loop. NULL after logging the
 * reason. rc_netsync_free closes everything (pending output is dropped: linger 0). */
rc_netsync *rc_netsync_new(rc_loop *loop, const rc_netsync_opts *o);
void rc_netsync_free(rc_netsync *ns);

/* The ports actually bound (useful with port 0). */
uint16_t rc_netsync_router_port(const rc_netsync *ns);
uint16_t rc_netsync_pose_port(const rc_netsync *ns);
uint16_t rc_netsync_pub_port(const rc_netsync *ns);
uint16_t rc_netsync_discovery_port(const rc_netsync *ns);

/* rc_netsync_zms_stats is the native socket's own counters (transport/zmtpsock.h: protocol
 * errors by kind, PINGs, PUB deliveries skipped at a full queue) for socket s (enum
 * nsy_sock), or NULL on the libzmq engine. */
struct rc_zms_stats;
const struct rc_zms_stats *rc_netsync_zms_stats(const rc_netsync *ns, int s);

/* rc_netsync_set_rest_port changes the REST port STYLY-NETSYNC3 discovery announces (the HTTP
 * port by default; a dedicated REST listener started later sets its own). */
void rc_netsync_set_rest_port(rc_netsync *ns, uint16_t port);

/* rc_netsync_stats_of returns the live counters (valid until rc_netsync_free). */
const rc_netsync_stats *rc_netsync_stats_of(const rc_netsync *ns);

/* rc_netsync_rooms returns the first room (iterate with ->next); each room's devices are
 * dev[0..ndev) in mapping order, the live ones dev[order[0..nlive)] in join order, and a live
 * visible device's latest transform is its ROOM_TRANSFORM entry ent[0..ent_len) (u16 number,
 * 24 little-endian float32, u8 nVirt, virtuals). rc_netsync_room finds one by id. */
const nsy_room *rc_netsync_rooms(const rc_netsync *ns);
const nsy_room *rc_netsync_room(const rc_netsync *ns, const void *room, size_t room_len);

/* rc_netsync_watch makes cb see what every room publishes (one watcher: the WebSocket
 * observers, src/app/nsws.h); NULL stops it. rc_netsync_tick_ns is the cadence. */
void rc_netsync_watch(rc_netsync *ns, nsy_watch *cb, void *arg);
uint64_t rc_netsync_tick_ns(const rc_netsync *ns);

/* rc_netsync_send_rpc publishes an RPC to every client of an existing room, with `sender` as
 * the sender number (0 for the server/an operator). name <= 255 bytes, args <= 65535 bytes,
 * both valid UTF-8. Returns 0, -ENOENT (no such room) or -EINVAL. */
int rc_netsync_send_rpc(rc_netsync *ns, const void *room, size_t room_len, uint16_t sender,
                        const void *name, size_t name_len, const void *args, size_t args_len);

/* Result of a variable set from outside the ZeroMQ side (the REST bridge maps APPLIED and
 * UNCHANGED to "applied", everything else to "failed"; NO_DEVICE is where the reference
 * answers "queued", see docs/netsync.md). */
enum rc_netsync_nv {
    RC_NETSYNC_NV_APPLIED,       /* stored; synced to the room at the next tick */
    RC_NETSYNC_NV_UNCHANGED,     /* equal to the stored value */
    RC_NETSYNC_NV_STALE,         /* a newer value is stored (conflict rule) */
    RC_NETSYNC_NV_LIMIT,         /* 20 names already */
    RC_NETSYNC_NV_INVALID,       /* empty/too long name, too long value, not UTF-8 */
    RC_NETSYNC_NV_NO_ROOM,       /* no such room */
    RC_NETSYNC_NV_NO_DEVICE,     /* the device has no number in the room */
    RC_NETSYNC_NV_NOMEM,
};

/* rc_netsync_set_client_var sets a client variable of `device` (by deviceId) in `room`, and
 * rc_netsync_set_global_var a global one, as if written by client number 0 at the current
 * wall-clock time (so it wins against clients' older timestamps). name: 1..255 bytes, value
 * <= 65535 bytes, cut to 64 / 1024 code points like a client's set. */
enum rc_netsync_nv rc_netsync_set_client_var(rc_netsync *ns, const void *room, size_t room_len,
                                             const void *device, size_t device_len,
                                             const void *name, size_t name_len,
                                             const void *value, size_t value_len);
enum rc_netsync_nv rc_netsync_set_global_var(rc_netsync *ns, const void *room, size_t room_len,
                                             const void *name, size_t name_len,
                                             const void *value, size_t value_len);

/* rc_netsync_queue_client_var keeps a client-variable set for a device that has no number in
 * the room yet (the REST bridge's "queued"): it is applied, as by rc_netsync_set_client_var,
 * at the first tick after the device has joined, and forgotten after 60 s. At most
 * RC_NETSYNC_QUEUE_PER_DEVICE per (room, device) — -EBUSY beyond — and 4096 in all (-ENOSPC).
 * rc_netsync_queued counts a device's queued sets. */
#define RC_NETSYNC_QUEUE_PER_DEVICE 20
int rc_netsync_queue_client_var(rc_netsync *ns, const void *room, size_t room_len,
                                const void *device, size_t device_len, const void *name,
                                size_t name_len, const void *value, size_t value_len);
size_t rc_netsync_queued(const rc_netsync *ns, const void *room, size_t room_len,
                         const void *device, size_t device_len);

/* ---- protocol 8 (wire spec netsync-protocol-v8.md) ---------------------------------------
 *
 * Lanes. A v8 client has two DEALERs: control (the ROUTER on router_port: HELLO, RPC, NV,
 * ownership, and the unicast downlink) and transform (the pose ROUTER on pose_port: CLIENT_POSE,
 * OBJECT_POSE). Both are drained alike (same limits, same nspeers accounting) and every message
 * is handed on with its lane.
 *
 * Dispatch. Each message is classified by ns8_classify (src/codec/ns8proto.h: strict,
 * whole-message parses, so the types both generations use — 3, 7, 9 — are told apart by
 * their layouts); each routing identity (per lane) keeps the generation it last announced in
 * a bounded, expiring record (nsident.h), which is the classifier's hint for the rare message
 * that parses both ways, and which sends an identity already known to speak v0.6 straight to
 * the v0.6 path (whose leniencies, spec v0.6 §2, v0.6 clients may rely on):
 *   V06          control lane: the v0.6 rooms (nsroom.h); pose lane: dropped (wrong_lane)
 *   V8           the protocol-8 rooms (ns8room.h), which count their own drops (ns8_*)
 *   UNSUPPORTED  counted by version (unsupported[]) and dropped; on the control lane the
 *                sender is answered (at most once per RC_NETSYNC_VERSION_REPLY_NS) with a
 *                DEVICE_ID_MAPPING of version 0.16.3 and no devices, on the ROUTER, so that
 *                its version check fails with a clear message instead of waiting forever
 *   INVALID      the v0.6 path for what has a v0.6 type (it counts it as it always did),
 *                the v8 rooms' counters for the v8 types, else dropped (invalid)
 */
enum rc_netsync_gen {
    RC_NETSYNC_GEN_UNKNOWN = 0,  /* nothing announced yet */
    RC_NETSYNC_GEN_V06,          /* v0.6.x / v0.7.x wire format (no version byte) */
    RC_NETSYNC_GEN_V8,           /* protocol 8 */
    RC_NETSYNC_GEN_UNSUPPORTED,  /* another protocol version */
};

/* rc_netsync_rooms8 gives the protocol-8 rooms (read them, and the REST bridge writes
 * variables through ns8room.h's functions; call rc_netsync_rooms8_changed afterwards so the
 * rooms' timer follows). rc_netsync_stats8 is their counters. */
struct nsr8_rooms;
struct nsr8_stats;
struct nsr8_rooms *rc_netsync_rooms8(rc_netsync *ns);
const struct nsr8_stats *rc_netsync_stats8(const rc_netsync *ns);
void rc_netsync_rooms8_changed(rc_netsync *ns);

/* rc_netsync_unicast sends [room][payload] to the control DEALER whose routing identity is
 * ident, through the ROUTER (ROUTER_MANDATORY). Room and payload are copied. Each identity
 * has its own bounded queue, sent in order; a full pipe (EAGAIN) makes the message wait and
 * be retried when libzmq has room again; nothing else waits for it. A queued DEVICE_ID_MAPPING
 * is replaced by a newer one for the same room. Returns
 *   0              sent, or queued behind earlier messages
 *   -EHOSTUNREACH  the ROUTER has no such peer (disconnected): dropped, with its queue
 *   -ENOBUFS       slow consumer: the queue was full (opts.unicast_max_bytes or
 *                  RC_NETSYNC_UNICAST_MAX_MSGS); the peer is disconnected and its queue and
 *                  this message dropped (see src/netsync/nsident.h for why)
 *   -EINVAL        ident empty or > 255 bytes, room > 255 bytes;  -ENOMEM
 * Everything is counted (unicast_* in nsstats.h). */
int rc_netsync_unicast(rc_netsync *ns, const void *ident, size_t ident_len, const void *room,
                       size_t room_len, const void *payload, size_t len);

/* rc_netsync_connected says whether the control-lane peer ident is connected, as far as the
 * transport knows: true when its last message came over a TCP connection that libzmq has not
 * reported closed since (nspeers' monitor; a connection number, not a descriptor number, so a
 * reused descriptor does not count) and no send to it has met EHOSTUNREACH since. False for an
 * identity never heard from, or forgotten (records are kept RC_NETSYNC_IDENT_TTL_NS after the
 * last message, at most RC_NETSYNC_IDENT_MAX of them). A true answer can be out of date by the
 * time libzmq's I/O thread reports a close (microseconds to one loop turn). */
bool rc_netsync_connected(const rc_netsync *ns, const void *ident, size_t ident_len);

#define RC_NETSYNC_VERSION_REPLY_NS (1000 * RC_NS_PER_MS)
#define RC_NETSYNC_IDENT_TTL_NS (60 * RC_NS_PER_SEC)
#define RC_NETSYNC_IDENT_MAX 65536

/* roomcast's NetSync server version, sent in DEVICE_ID_MAPPING (spec v8 §4.3, §7). */
#define RC_NETSYNC_SERVER_MAJOR 0
#define RC_NETSYNC_SERVER_MINOR 16
#define RC_NETSYNC_SERVER_PATCH 3

#endif
