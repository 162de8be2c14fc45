/* nsstats.h — counters of the NetSync transport, for /metrics and GET /api/netsync/rooms.
 *
 * Plain integers owned by the loop thread (no atomics: the HTTP handler that reads them runs
 * on the same loop). Every way a message can be dropped has its own counter, so "malformed
 * input is counted" is checkable from outside; nsy_drop_names gives their metric label.
 * bytes_out counts what is handed to the PUB socket once (topic + payload); ZeroMQ then fans
 * it out to every subscriber of the topic, which the server cannot see.
 */
#ifndef RC_NSSTATS_H
#define RC_NSSTATS_H

#include <stdint.h>

enum nsy_drop {
    NSY_DROP_TOO_FEW_FRAMES,  /* [identity][payload]: no room frame */
    NSY_DROP_ROOM_TOO_LONG,   /* room id > 255 bytes (cannot be written in ROOM_TRANSFORM) */
    NSY_DROP_ROOM_UTF8,       /* room id not valid UTF-8 */
    NSY_DROP_EMPTY,           /* empty payload */
    NSY_DROP_UNKNOWN_TYPE,    /* type 0, 4, 5, 11..255 */
    NSY_DROP_SERVER_TYPE,     /* 2, 6, 8, 10 sent by a client */
    NSY_DROP_TRUNCATED,       /* a field runs past the end of the payload */
    NSY_DROP_UTF8,            /* a string field is not valid UTF-8 */
    NSY_DROP_UNKNOWN_SENDER,  /* RPC / NV from a ZeroMQ identity with no live client in the room */
    NSY_DROP_ROOM_LIMIT,      /* new room beyond the room limit */
    NSY_DROP_DEVICE_LIMIT,    /* new device beyond the per-room device limit */
    NSY_DROP_NUMBERS,         /* no free client number (65535 assigned and none expired) */
    NSY_DROP_NV_LIMIT,        /* new variable name beyond 20 per scope, or too many targets */
    NSY_DROP_NV_EMPTY_NAME,   /* variable with an empty name */
    NSY_DROP_NOMEM,           /* out of memory while handling a message */
    NSY_DROP_TOO_BIG,         /* ROUTER message over --netsync-max-message-size (one frame, or
                                 its frames together): its peer is disconnected */
    NSY_DROP_SUB_TOO_BIG,     /* PUB: a subscription or command frame over RC_NETSYNC_PUB_MAX_INBOUND,
                                 or a multipart message piling up: its peer is disconnected */
    NSY_DROP_SUB_LIMIT,       /* PUB: a subscription beyond NSY_SUBS_PER_PEER on one connection:
                                 its peer is disconnected */
    NSY_DROP_WRONG_LANE,      /* a message on the lane its generation does not use (v0.6 on
                                 the pose ROUTER, v8 control messages there) */
    NSY_DROP_UNSUPPORTED,     /* from a client of an unsupported protocol version (counted per
                                 version in unsupported[]) */
    NSY_DROP_GENERATION,      /* the room is in use by clients of the other generation */
    NSY_DROP_INVALID,         /* malformed for every generation, with no v0.6 or v8 type */
    NSY_DROP__COUNT
};

extern const char *const nsy_drop_names[NSY_DROP__COUNT];

/* The ZeroMQ sockets whose connections are counted (src/netsync/nspeers.h). */
enum nsy_sock {
    NSY_SOCK_ROUTER,          /* control ROUTER (--netsync-router-port), "router" in metrics */
    NSY_SOCK_PUB,             /* PUB */
    NSY_SOCK_POSE,            /* transform (pose) ROUTER (--netsync-pose-port) */
    NSY_SOCK__COUNT
};

/* The lane a ROUTER message arrived on (protocol 8 splits the uplink in two, spec v8 §1). */
enum nsy_lane { NSY_LANE_CONTROL, NSY_LANE_POSE, NSY_LANE__COUNT };

/* Why queued unicast messages were dropped (nsident.h). */
enum nsy_ucdrop {
    NSY_UCDROP_UNREACHABLE,   /* EHOSTUNREACH: the peer disconnected; its queue is dropped */
    NSY_UCDROP_SLOW,          /* the peer's queue was full: disconnected, queue dropped */
    NSY_UCDROP_EVICTED,       /* its identity record was evicted at the record bound */
    NSY_UCDROP_ERROR,         /* another zmq_send failure */
    NSY_UCDROP__COUNT
};

extern const char *const nsy_ucdrop_names[NSY_UCDROP__COUNT];
extern const char *const nsy_lane_names[NSY_LANE__COUNT];

/* Why a connection of a ZeroMQ socket ended. */
enum nsy_gone {
    NSY_GONE_PEER,            /* the peer closed it */
    NSY_GONE_HANDSHAKE,       /* the ZMTP handshake failed and libzmq said so (bad greeting or
                                 READY, peer gone or silent during it) */
    NSY_GONE_PROTOCOL,        /* libzmq dropped it during the handshake without a reason, and
                                 before roomcast could look: a peer that is not ZMTP 3, or a
                                 frame over the limit sent without waiting for the handshake */
    NSY_GONE_TOO_BIG,         /* cut for a message over the size limit (libzmq: one frame;
                                 roomcast: the frames of one message) */
    NSY_GONE_SUB_LIMIT,       /* cut by roomcast: too many subscriptions (PUB) */
    NSY_GONE_UNKNOWN,         /* roomcast could not look (no descriptor for a duplicate) */
    NSY_GONE_SLOW,            /* cut by roomcast: its unicast queue was full (nsident.h) */
    NSY_GONE_LIMIT,           /* refused at accept: --connections-per-ip or --max-connections
                                 (native engine only: libzmq accepts on its own thread) */
    NSY_GONE__COUNT
};

extern const char *const nsy_sock_names[NSY_SOCK__COUNT];
extern const char *const nsy_gone_names[NSY_GONE__COUNT];

#define NSY_TICK_BUCKETS 8    /* tick duration histogram: <=16us, 64us, 256us, 1ms, 4ms, 16ms, 64ms, more */

typedef struct rc_netsync_stats {
    /* gauges */
    uint64_t clients;            /* live clients, all rooms (stealth included) */
    uint64_t rooms;              /* rooms */
    uint64_t devices;            /* devices holding a number (live + departed, not expired) */
    /* input */
    uint64_t msgs_in;            /* ZeroMQ messages received on the control ROUTER */
    uint64_t bytes_in;           /* their payload bytes */
    uint64_t pose_msgs_in;       /* ZeroMQ messages received on the pose ROUTER */
    uint64_t pose_bytes_in;      /* their payload bytes */
    uint64_t v8_in;              /* messages handed to the protocol-8 engine */
    uint64_t unsupported[256];   /* messages of unsupported clients, by announced version */
    uint64_t version_replies;    /* DEVICE_ID_MAPPINGs sent to them (rate-limited) */
    uint64_t idents;             /* gauge: routing-identity records (nsident.h) */
    uint64_t idents_evicted;     /* records evicted at the bound before their time */
    uint64_t transforms_in;      /* CLIENT_TRANSFORM accepted */
    uint64_t rpc_in;             /* RPC accepted */
    uint64_t nv_in;              /* GLOBAL/CLIENT_VAR_SET accepted (applied or not) */
    uint64_t joins;              /* clients that became live in a room */
    uint64_t timeouts;           /* clients removed for silence */
    uint64_t dropped[NSY_DROP__COUNT]; /* dropped messages by reason */
    /* leniencies of the reference kept for compatibility (not errors) */
    uint64_t nvirt_clamped;      /* transforms announcing > 50 virtuals */
    uint64_t args_cut;           /* RPC whose args length overran the message */
    uint64_t extra_frames;       /* messages with frames after the payload (ignored) */
    uint64_t rpc_rewritten;      /* RPC whose claimed sender differed from the real one */
    uint64_t nv_rewritten;       /* NV set whose claimed sender differed from the real one */
    uint64_t nv_applied;         /* variable values changed */
    uint64_t nv_unchanged;       /* sets equal to the stored value (no-op) */
    uint64_t nv_stale;           /* sets rejected by the timestamp/sender conflict rule */
    uint64_t nv_truncated;       /* names (64) or values (1024 code points) cut */
    /* output */
    uint64_t msgs_out;           /* messages published */
    uint64_t bytes_out;          /* bytes published (topic + payload, once per message) */
    uint64_t room_transforms_out; /* ROOM_TRANSFORM published */
    uint64_t mappings_out;       /* DEVICE_ID_MAPPING published */
    uint64_t syncs_out;          /* GLOBAL/CLIENT_VAR_SYNC published */
    uint64_t rpc_out;            /* RPC published */
    uint64_t publish_errors;     /* zmq_send failures (never blocks: PUB drops at HWM itself) */
    /* unicast on the control ROUTER (nsident.h) */
    uint64_t unicast_out;        /* messages handed to the ROUTER */
    uint64_t unicast_bytes_out;  /* their room + payload bytes */
    uint64_t unicast_queued;     /* gauge: messages waiting in per-peer queues */
    uint64_t unicast_queued_bytes; /* gauge: their bytes */
    uint64_t unicast_deferred;   /* messages that met EAGAIN and waited */
    uint64_t unicast_superseded; /* queued mappings replaced by a newer one of the same room */
    uint64_t unicast_slow;       /* peers disconnected as slow consumers */
    uint64_t unicast_dropped[NSY_UCDROP__COUNT]; /* messages dropped, by reason */
    /* ticks */
    uint64_t ticks;              /* tick timer runs */
    uint64_t tick_ns_last;       /* duration of the last tick, ns */
    uint64_t tick_ns_max;        /* longest tick, ns */
    uint64_t tick_ns_total;      /* sum of tick durations, ns */
    uint64_t tick_hist[NSY_TICK_BUCKETS]; /* tick durations, see NSY_TICK_BUCKETS */
    /* discovery */
    uint64_t discovery_udp;      /* UDP requests answered */
    uint64_t discovery_tcp;      /* TCP requests answered */
    uint64_t discovery_bad;      /* requests ignored (wrong text) or connections timed out */
    uint64_t discovery_refused;  /* TCP connections closed at once (too many open) */
    /* connections of the ZeroMQ sockets (nspeers.h) */
    uint64_t peers[NSY_SOCK__COUNT]; /* open now */
    uint64_t peers_gone[NSY_SOCK__COUNT][NSY_GONE__COUNT]; /* ended, by reason */
} rc_netsync_stats;

#endif
