/* zsock.h — a ZeroMQ ROUTER on roomcast's loop: bind with limits, deliver whole messages,
 * send multipart without blocking, and say when a connection ends.
 *
 * libzmq does its I/O on its own thread and tells the owner of a socket only that the socket's
 * state changed: ZMQ_FD becomes readable on an edge, and ZMQ_EVENTS says whether a message is
 * waiting. The rules that follow from this (learnt in src/netsync/netsync.c, whose two
 * ROUTERs now run on this module, as do the worker broker's, src/broker/zbroker.c) are kept
 * here once:
 *
 *  - ZMQ_FD is registered edge-triggered and drained until ZMQ_EVENTS shows no input; at most
 *    `budget` messages per wake-up, then a zero-delay timer continues, so one flooding peer
 *    cannot starve the loop's other clients.
 *  - An optional coalescing window: an edge sooner than `coalesce_ns` after the last drain
 *    arms the timer for the end of the window instead (fewer wake-ups of both threads under a
 *    stream of small messages, at most that much added latency). 0 = drain on every edge.
 *  - Any call on the socket — a send especially — lets libzmq process its pending commands,
 *    which can consume the read edge without the owner seeing it: after every send outside a
 *    drain a zero-delay timer looks again.
 *  - Frames are capped by ZMQ_MAXMSGSIZE (libzmq drops the connection of a peer announcing a
 *    larger frame). libzmq does not bound the number of frames or their sum: a message with
 *    more than `max_frames` frames or more than `max_bytes` in all is read to its end and
 *    dropped here (counted), without reaching the callback.
 *  - Connections: a monitor socket (inproc PAIR, its ZMQ_FD on the loop too) reports
 *    ZMQ_EVENT_ACCEPTED and ZMQ_EVENT_DISCONNECTED with the TCP descriptor. Each accepted
 *    connection gets a serial number (1, 2, ...; never reused, unlike descriptors); every
 *    delivered message carries the serial of the connection it came over (ZMQ_SRCFD), and the
 *    `gone` callback names the serial of each connection that ended. Monitor events are read
 *    before messages, so a message's connection is known; a connection's `gone` is reported
 *    after the messages that were already readable have been delivered.
 *    Residual race (documented, not closed): if a connection dies and another takes its
 *    descriptor number within the few microseconds between two reads of the monitor, the new
 *    connection's first messages can carry the old serial. nspeers.h closes it with a ZAP
 *    barrier (NetSync installs it through `configure` and leaves on_gone NULL); the broker's
 *    peers re-announce themselves, so it is left open here.
 *  - The XPUB of NetSync (subscriptions, nspeers' watchdog) is not a ROUTER and stays in
 *    netsync.c.
 *
 * Everything is called on the loop's thread. The context is the caller's (one I/O thread is
 * enough; the monitor endpoints are unique per rc_zsock within it).
 */
#ifndef RC_ZSOCK_H
#define RC_ZSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"

typedef struct rc_zsock rc_zsock;

/* One frame of a message: data is valid only during the callback that received it. */
typedef struct rc_zframe {
    const void *data;            /* frame bytes (not NUL-terminated) */
    size_t len;                  /* bytes */
} rc_zframe;

/* A received message. f[0] is the routing identity the ROUTER added. */
typedef struct rc_zmsg {
    const rc_zframe *f;          /* frames, f[0..n) */
    size_t n;                    /* frames delivered, >= 1 */
    size_t nparts;               /* frames received: > n only with opts.truncate */
    size_t bytes;                /* payload bytes of every frame received but the identity */
    uint64_t wire;               /* what those frames took on the wire (ZMTP 3 headers
                                    included), for accounting per connection */
    int fd;                      /* libzmq's descriptor of its connection (ZMQ_SRCFD), -1 */
    uint64_t conn;               /* serial of the connection it came over, 0 if unknown
                                    (always 0 without on_gone: no monitor) */
} rc_zmsg;

/* msg: one complete message. gone: connection `conn` ended (the peer closed it, or libzmq
 * dropped it, e.g. for a frame over the limit). Both may send on the socket. */
typedef void rc_zsock_msg_cb(rc_zsock *zs, const rc_zmsg *m, void *arg);
typedef void rc_zsock_gone_cb(rc_zsock *zs, uint64_t conn, void *arg);
/* drained: a drain has ended (after its messages and ends were delivered); the owner's
 * follow-up work goes here. configure: the ROUTER before its bind, for options of the
 * owner's own (a ZAP domain, a monitor of its own); returns 0 or -errno. */
typedef void rc_zsock_drained_cb(rc_zsock *zs, void *arg);
typedef int rc_zsock_configure_cb(void *zsocket, void *arg);

/* Why a received message was dropped before the callback. */
enum rc_zsock_drop {
    RC_ZSOCK_DROP_FRAMES,        /* more than max_frames frames */
    RC_ZSOCK_DROP_BYTES,         /* frames together larger than max_bytes */
    RC_ZSOCK_DROP__COUNT
};
extern const char *const rc_zsock_drop_names[RC_ZSOCK_DROP__COUNT];

/* Counters, owned by the loop thread. */
typedef struct rc_zsock_stats {
    uint64_t msgs_in;            /* messages delivered to the callback */
    uint64_t bytes_in;           /* their bytes, identity frame excluded */
    uint64_t msgs_out;           /* messages sent */
    uint64_t bytes_out;          /* their bytes, identity frame excluded */
    uint64_t dropped[RC_ZSOCK_DROP__COUNT]; /* messages dropped, by reason */
    uint64_t send_again;         /* sends refused with EAGAIN (the peer's pipe is full) */
    uint64_t send_unreachable;   /* sends refused with EHOSTUNREACH (no such peer) */
    uint64_t send_errors;        /* other send failures */
    uint64_t accepted;           /* connections accepted */
    uint64_t disconnected;       /* connections ended */
    uint64_t live;               /* connections open now */
    uint64_t refused;            /* of disconnected: refused at accept by the owner's limits
                                    (native engine only, zmtpsock.h's gate; 0 on libzmq) */
} rc_zsock_stats;

typedef struct rc_zsock_opts {
    void *zctx;                  /* ZeroMQ context (not owned) */
    const char *bind;            /* IPv4, IPv6 or "*"/"0.0.0.0" */
    uint16_t port;               /* 0 = pick a free one */
    size_t max_frame;            /* ZMQ_MAXMSGSIZE: largest frame, bytes (0 = no limit) */
    size_t max_frames;           /* most frames of one message, identity included (>= 1) */
    bool truncate;               /* a message with more frames is delivered with its first
                                    max_frames (m->nparts says how many it had), not dropped */
    size_t max_bytes;            /* most bytes of one message, identity excluded (0 = none) */
    int sndhwm;                  /* messages queued per peer before sends meet EAGAIN
                                    (0 = libzmq's default, 1000) */
    unsigned budget;             /* messages per wake-up (0 = 1024) */
    uint64_t coalesce_ns;        /* coalescing window, ns (0 = none) */
    const char *name;            /* for log lines ("broker workers") */
    rc_zsock_msg_cb *on_msg;     /* required */
    rc_zsock_gone_cb *on_gone;   /* optional: NULL = no monitor socket */
    rc_zsock_drained_cb *on_drained; /* optional */
    rc_zsock_configure_cb *configure; /* optional */
    void *arg;                   /* passed to all of them */
} rc_zsock_opts;

/* rc_zsock_new opens a ROUTER (linger 0, ROUTER_MANDATORY so sends to unknown peers fail
 * instead of vanishing), applies the limits, starts its monitor, binds it and watches it on
 * loop. NULL after logging the reason ("cannot bind broker workers 'tcp://...': ..."). Messages
 * already waiting are read at the first loop turn. rc_zsock_free stops watching and closes
 * both sockets (pending output dropped); call it before zmq_ctx_term of the context. Not from
 * inside the socket's own callbacks. */
rc_zsock *rc_zsock_new(rc_loop *loop, const rc_zsock_opts *o);
void rc_zsock_free(rc_zsock *zs);

/* rc_zsock_send sends the n frames f[0..n) (f[0]: the peer's routing identity) without
 * waiting. Returns 0, -EHOSTUNREACH (no connected peer has that identity), -EAGAIN (its pipe
 * is full: nothing was sent), or another -errno. Only the identity frame can fail for those
 * two reasons: once libzmq has taken it, the rest of the message is taken too. The frames are
 * copied. */
int rc_zsock_send(rc_zsock *zs, const rc_zframe *f, size_t n);

/* rc_zsock_port is the port actually bound; rc_zsock_endpoint the full "tcp://A:P". */
uint16_t rc_zsock_port(const rc_zsock *zs);
const char *rc_zsock_endpoint(const rc_zsock *zs);

/* rc_zsock_conn_live says whether connection serial conn is still open as far as the monitor
 * has told (false for 0). */
bool rc_zsock_conn_live(const rc_zsock *zs, uint64_t conn);

const rc_zsock_stats *rc_zsock_stats_of(const rc_zsock *zs);

/* rc_zsock_drain reads what is waiting now (the callbacks run), even inside a coalescing
 * window; for callers that touched the socket from outside a callback and want to be sure
 * no edge is lost (sends through rc_zsock_send arm a look of their own). Returns false when
 * the budget ran out with messages left (a zero-delay timer continues), true otherwise. A
 * no-op returning true when called from inside the socket's own callbacks. */
bool rc_zsock_drain(rc_zsock *zs);

/* rc_zsock_look arms a zero-delay look at the socket (end of this loop turn): for an owner
 * that touched the socket's libzmq state without rc_zsock_send. */
void rc_zsock_look(rc_zsock *zs);

/* rc_zframe_str is a frame of a NUL-terminated string (for building messages). */
static inline rc_zframe rc_zframe_str(const char *s)
{
    size_t n = 0;
    while (s[n]) n++;
    return (rc_zframe){s, n};
}

#endif
