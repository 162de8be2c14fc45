/* zmtpsock.h — native ZeroMQ server sockets (ROUTER, PUB) on roomcast's own loop.
 *
 * The alternative to zsock.h's libzmq ROUTER and NetSync's libzmq XPUB: roomcast accepts the
 * TCP connections itself and speaks ZMTP 3.0/3.1 (NULL mechanism) through src/codec/zmtp.h.
 * No second thread, no mailbox, no per-message wake-up of another thread: a readable
 * connection is one read() into its buffer and the messages in it go straight to the owner;
 * output goes into the connection's queue of shared messages (transport/outq.h), written at
 * the end of the loop turn, one write per connection however many messages the turn produced.
 * A PUB message is encoded once and shared by every subscriber's queue.
 *
 * What the owner sees matches rc_zsock (zsock.h), so NetSync and the broker can run on either:
 *  - messages arrive whole, f[0] being the peer's routing identity (ROUTER), with the serial
 *    of the connection they came over (1, 2, ...; never reused) — exact here, since roomcast
 *    owns the connections: no monitor, no ZAP barrier, no descriptor race;
 *  - rc_zms_send sends a multipart message to an identity without blocking: -EHOSTUNREACH
 *    when no connection has it, -EAGAIN when its queue holds out_cap bytes or more (libzmq's
 *    high-water mark, in bytes), else the message is queued whole;
 *  - `gone` names each connection that ended and why (after the messages it delivered).
 *
 * Routing ids (ROUTER): a peer's READY may carry an Identity. It is honoured when no live
 * connection has it; when one does, the new connection takes it over with opts.handover
 * (libzmq's ZMQ_ROUTER_HANDOVER: the old connection is closed), and otherwise gets a generated
 * id — 5 bytes, 0x00 then a 32-bit counter from a random start, as libzmq generates them
 * (libzmq would instead ignore the duplicate's messages until the first one leaves; a
 * generated id lets both work). Peers without an Identity get a generated one.
 *
 * PUB: subscriptions come as ZMTP 3.1 SUBSCRIBE/CANCEL commands or as 3.0 messages whose
 * first byte is 1/0; each is kept per connection (duplicates count twice, as libzmq's trie
 * counts them), at most max_subs live ones (beyond: the connection is cut, SUB_LIMIT), and
 * reported to on_sub like XPUB_VERBOSER does. rc_zms_publish sends to the connections having a
 * subscription that is a prefix of the first frame; one whose queue holds out_cap bytes or more
 * misses the message (libzmq's PUB drops at the high-water mark: for poses the latest wins).
 *
 * Limits: frames over max_frame, messages over max_frames frames (unless truncate) or whose
 * wire size passes max_bytes + max_frame plus frame headers are protocol errors and end the
 * connection at the header that proves it (TOO_BIG: nothing over that is ever buffered); a
 * message within that whose payload passes max_bytes is dropped (counted) as rc_zsock does.
 * A connection has handshake_ns to finish its greeting and READY. Beyond max_conns live
 * connections, new ones are closed at once (LIMIT). Everything runs on the loop's thread.
 *
 * The owner's gate (opts.gate, optional): the limits the rest of the server applies to its
 * connections (--connections-per-ip, --max-connections, --handshake-timeout in app/server.c)
 * are the owner's, and may change while the socket runs, so the socket asks rather than
 * caches. gate.admit is asked about every accepted connection before anything is read or
 * sent, with its peer's address as ipcount.h counts it: false closes it at once (ZMTP has no
 * way to refuse before the greeting: a libzmq peer just sees the connection end and retries),
 * counted gone[LIMIT] and reported to on_gone with conn 0 (it never had a serial, nor an
 * on_accept; so is a refusal at max_conns); true keeps it, with the handshake
 * deadline and a token the gate chose. gate.release is called exactly once for every admitted
 * connection, with that key and token, at the moment its descriptor is closed, however it ends
 * (peer, timeout, protocol error, cut, rc_zms_free), so the owner's counts cannot leak.
 */
#ifndef RC_ZMTPSOCK_H
#define RC_ZMTPSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/zmtp.h"
#include "core/loop.h"
#include "transport/ipcount.h"
#include "transport/zsock.h"

typedef struct rc_zms rc_zms;

/* Which implementation a ZeroMQ user runs on (--zmq-engine): these native sockets, or libzmq
 * (zsock.h and NetSync's XPUB). The values are the flag's (config.c). */
enum rc_zms_engine { RC_ZMS_ENGINE_NATIVE, RC_ZMS_ENGINE_LIBZMQ };
#define RC_ZMQ_ENGINE_DEFAULT RC_ZMS_ENGINE_NATIVE

/* Why a connection ended. */
enum rc_zms_gone {
    RC_ZMS_GONE_PEER,            /* the peer closed it (or reset it) */
    RC_ZMS_GONE_HANDSHAKE,       /* greeting or READY refused (rc_zmtp_err says which), or not
                                    finished within handshake_ns */
    RC_ZMS_GONE_PROTOCOL,        /* a protocol error after the handshake, or the peer's ERROR */
    RC_ZMS_GONE_TOO_BIG,         /* a frame or message over the limits */
    RC_ZMS_GONE_SUB_LIMIT,       /* PUB: more than max_subs live subscriptions */
    RC_ZMS_GONE_SLOW,            /* cut by the owner: a slow consumer (rc_zms_cut) */
    RC_ZMS_GONE_CUT,             /* cut by the owner for another reason (rc_zms_cut) */
    RC_ZMS_GONE_LIMIT,           /* refused: at max_conns, or by the owner's gate */
    RC_ZMS_GONE_ERROR,           /* a socket error, or out of memory */
    RC_ZMS_GONE__COUNT
};
extern const char *const rc_zms_gone_names[RC_ZMS_GONE__COUNT];

typedef struct rc_zms_stats {
    uint64_t msgs_in;            /* messages delivered to on_msg (ROUTER) */
    uint64_t bytes_in;           /* their bytes, identity excluded */
    uint64_t msgs_out;           /* messages queued: one per rc_zms_send, one per recipient of
                                    rc_zms_publish */
    uint64_t bytes_out;          /* their payload bytes (identity excluded) */
    uint64_t dropped_bytes;      /* messages dropped: payload over max_bytes */
    uint64_t send_again;         /* sends refused with EAGAIN (queue at out_cap) */
    uint64_t send_unreachable;   /* sends refused with EHOSTUNREACH */
    uint64_t pub_dropped;        /* PUB: deliveries skipped at a full queue */
    uint64_t subscribes;         /* PUB: subscriptions received */
    uint64_t cancels;            /* PUB: cancels received */
    uint64_t ignored;            /* PUB: messages from a SUB that are not subscriptions;
                                    both: unknown commands */
    uint64_t pings;              /* PINGs answered */
    uint64_t accepted;           /* connections accepted */
    uint64_t live;               /* connections open now */
    uint64_t wire_in;            /* bytes read from connections */
    uint64_t wire_out;           /* bytes written to connections */
    uint64_t gone[RC_ZMS_GONE__COUNT];   /* connections ended, by reason */
    uint64_t errors[RC_ZMTP_E__COUNT];   /* protocol errors that ended one, by kind */
} rc_zms_stats;

/* Callbacks. on_msg (ROUTER): one whole message (rc_zmsg as zsock.h: fd is the connection's
 * descriptor, conn its serial). on_sub (PUB): a subscription (on) or cancel of topic from
 * connection conn. on_accept: connection conn was accepted. on_gone: conn ended for why
 * (conn 0, why LIMIT: a connection refused at accept, never reported to on_accept).
 * on_drained: after a batch of input was handled (the owner's follow-up work). All may send. */
typedef void rc_zms_msg_cb(rc_zms *zs, const rc_zmsg *m, void *arg);
typedef void rc_zms_sub_cb(rc_zms *zs, uint64_t conn, bool on, const uint8_t *topic,
                           size_t len, void *arg);
typedef void rc_zms_conn_cb(rc_zms *zs, uint64_t conn, void *arg);
typedef void rc_zms_gone_cb(rc_zms *zs, uint64_t conn, enum rc_zms_gone why, void *arg);
typedef void rc_zms_drained_cb(rc_zms *zs, void *arg);

/* What the gate decides for a connection it admits. */
typedef struct rc_zms_admission {
    uint64_t handshake_ns;       /* time to finish greeting + READY (0: opts.handshake_ns) */
    uint32_t token;              /* the gate's own: handed back to release (e.g. "counted") */
} rc_zms_admission;

/* The owner's gate (see above). Either both functions or neither. */
typedef struct rc_zms_gate {
    /* admit: keep (true, *a filled in; it comes zeroed) or refuse (false) a connection from
     * peer (all zero: an address ipcount.h does not count) */
    bool (*admit)(void *arg, const rc_ipkey *peer, rc_zms_admission *a);
    /* release: an admitted connection ended (its descriptor is closed) */
    void (*release)(void *arg, const rc_ipkey *peer, uint32_t token);
    void *arg;                   /* passed to both */
} rc_zms_gate;

typedef struct rc_zms_opts {
    enum rc_zmtp_type type;      /* RC_ZMTP_T_ROUTER or RC_ZMTP_T_PUB */
    const char *bind;            /* IPv4, IPv6, or "*"/"0.0.0.0" */
    uint16_t port;               /* 0 = pick a free one */
    size_t max_frame;            /* largest frame, bytes (0 = none) */
    size_t max_frames;           /* most frames of one message, identity included (0 = 64) */
    bool truncate;               /* deliver the first max_frames of a longer message */
    size_t max_bytes;            /* most payload bytes of one message (0 = 1 MiB) */
    size_t out_cap;              /* bytes queued per peer (0 = 4 MiB) */
    size_t max_conns;            /* live connections (0 = no limit) */
    size_t max_subs;             /* PUB: live subscriptions per connection (0 = 64) */
    bool handover;               /* ROUTER: a duplicate Identity takes over (see above) */
    uint64_t handshake_ns;       /* time to finish greeting + READY (0 = 30 s, libzmq's);
                                    the gate's admission overrides it per connection */
    rc_zms_gate gate;            /* optional: the owner's limits (see above); copied */
    const char *name;            /* for log lines */
    rc_zms_msg_cb *on_msg;       /* ROUTER: required */
    rc_zms_sub_cb *on_sub;       /* optional */
    rc_zms_conn_cb *on_accept;   /* optional */
    rc_zms_gone_cb *on_gone;     /* optional */
    rc_zms_drained_cb *on_drained; /* optional */
    void *arg;                   /* passed to all of them */
} rc_zms_opts;

/* rc_zms_new binds and starts accepting; NULL after logging the reason ("cannot bind netsync
 * 'tcp://...': ..."). rc_zms_free closes every connection (queued output dropped; on_gone is
 * not called) and the listener; not from inside the socket's own callbacks. */
rc_zms *rc_zms_new(rc_loop *loop, const rc_zms_opts *o);
void rc_zms_free(rc_zms *zs);

/* rc_zms_send (ROUTER) queues the n frames f[0..n) (f[0]: the peer's routing identity) for
 * that peer: 0, -EHOSTUNREACH, -EAGAIN (nothing queued), -ENOMEM or -EINVAL. Copied. */
int rc_zms_send(rc_zms *zs, const rc_zframe *f, size_t n);

/* rc_zms_publish (PUB) queues the n frames f[0..n) (f[0]: the topic) for every subscriber
 * whose subscription is a prefix of f[0]. Returns the recipients (>= 0) or -ENOMEM. */
long rc_zms_publish(rc_zms *zs, const rc_zframe *f, size_t n);

/* rc_zms_cut ends connection conn now (why: SLOW, CUT, TOO_BIG, ...): false when it is not
 * live. Its on_gone comes after the current callback. */
bool rc_zms_cut(rc_zms *zs, uint64_t conn, enum rc_zms_gone why);

/* rc_zms_conn_live says whether connection serial conn is open (false for 0). */
bool rc_zms_conn_live(const rc_zms *zs, uint64_t conn);

uint16_t rc_zms_port(const rc_zms *zs);
const char *rc_zms_endpoint(const rc_zms *zs);
const rc_zms_stats *rc_zms_stats_of(const rc_zms *zs);

#endif
