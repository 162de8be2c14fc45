/* netsync.h — the STYLY NetSync-compatible ZeroMQ transport (docs/netsync.md).
 *
 * Unity and Python NetSync clients (v0.6.x wire format, up to 0.7.5) talk to roomcast as they
 * would to the reference Python server: a ROUTER socket receives [roomId][payload] from each
 * client's DEALER, a PUB socket sends [roomId][payload] to the SUBs, and UDP/TCP discovery
 * answers on a third port. Everything runs on roomcast's loop: each ZeroMQ socket's ZMQ_FD is
 * an rc_io, drained on wake-up until ZMQ_EVENTS shows no more input (ZMQ_FD only signals
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

#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"
#include "netsync/nsroom.h"
#include "netsync/nsstats.h"

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

typedef struct rc_netsync_opts {
    const char *bind;            /* address for all three ports: IPv4, IPv6 or "*" */
    uint16_t router_port;        /* ROUTER (clients' DEALER), 0 = pick a free port (5555) */
    uint16_t pub_port;           /* PUB (clients' SUB), 0 = pick (5556) */
    uint16_t discovery_port;     /* UDP + TCP discovery, 0 = pick (9999) */
    uint64_t tick_ns;            /* broadcast cadence of dirty rooms (50 ms) */
    uint64_t idle_ns;            /* re-broadcast of unchanged rooms (0.5 s) */
    uint64_t client_timeout_ns;  /* silence before a client leaves (1 s) */
    uint64_t mapping_ns;         /* periodic DEVICE_ID_MAPPING for late subscribers (1 s) */
    const char *server_name;     /* discovery name ("STYLY-NetSync-Server") */
    size_t max_message_size;     /* largest message the ROUTER takes, room id aside (each
                                    frame, and the frames after the room id together), bytes;
                                    a peer sending more is disconnected (128 KiB) */
} rc_netsync_opts;

/* rc_netsync_opts_default fills in the defaults above (bind "127.0.0.1"). */
void rc_netsync_opts_default(rc_netsync_opts *o);

/* rc_netsync_new binds the three ports and attaches them to loop. NULL after logging the
 * reason. rc_netsync_free closes everything (pending output is dropped: linger 0). */
rc_netsync *rc_netsync_new(rc_loop *loop, const rc_netsync_opts *o);
void rc_netsync_free(rc_netsync *ns);

/* The ports actually bound (useful with port 0). */
uint16_t rc_netsync_router_port(const rc_netsync *ns);
uint16_t rc_netsync_pub_port(const rc_netsync *ns);
uint16_t rc_netsync_discovery_port(const rc_netsync *ns);

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

#endif
