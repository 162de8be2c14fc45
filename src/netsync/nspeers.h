/* nspeers.h — the connections of the NetSync ZeroMQ sockets: who is connected, why each one
 * left, and a way to cut one off.
 *
 * libzmq hides its TCP connections from the socket's owner. It enforces ZMQ_MAXMSGSIZE by
 * dropping the connection of a peer that announces a larger frame, but tells nobody why: its
 * monitor reports the same ZMQ_EVENT_DISCONNECTED (value: the descriptor) whether the peer
 * closed or libzmq cut it (libzmq 4.3 stream_engine_base.cpp error(); HANDSHAKE_SUCCEEDED and
 * HANDSHAKE_FAILED_* carry no descriptor at all). It also keeps every frame of a multipart
 * message until the last one arrives, with no limit on their number, so a per-frame cap alone
 * does not bound what one peer can make the server hold. This module supplies what is missing:
 *
 *  - Every socket is watched by zmq_socket_monitor into an inproc PAIR whose ZMQ_FD is an
 *    rc_io, like the sockets themselves. On ZMQ_EVENT_ACCEPTED the module dup()s the new
 *    descriptor, so it can look at the TCP connection itself later: when libzmq drops it, the
 *    duplicate keeps the kernel socket open and shows whether the peer had closed its side
 *    (EOF) or was still sending (libzmq cut it).
 *  - The dup() races with libzmq closing the descriptor (and reusing its number) when the
 *    connection dies at once. A ZAP handler closes that race for every connection that gets
 *    as far as exchanging messages: ZAP is switched on with a domain, so libzmq holds each
 *    handshake until roomcast answers its ZAP request, and roomcast answers only after reading
 *    every monitor event so far — ZMQ_EVENT_ACCEPTED is emitted before the handshake starts,
 *    so the connection's dup() has been made while it was alive. Every request is allowed:
 *    ZAP is used as a barrier, not for authentication. The cost: libzmq refuses ZMTP 1.0/2.0
 *    peers when ZAP is on (libzmq 2.x/3.x; every NetSync client speaks ZMTP 3: NetMQ 4, pyzmq).
 *  - A connection that ends before its handshake is classified from the events alone: libzmq
 *    emits HANDSHAKE_FAILED_* immediately before DISCONNECTED (same call, one I/O thread) when
 *    it knows the reason; a DISCONNECTED without it there means a framing error it reports to
 *    nobody — a frame over the limit, or a peer that is not ZMTP 3 (told apart by the bytes
 *    it consumed when the duplicate exists: a refusal happens within the 12-byte greeting).
 *  - Messages read by roomcast are attributed to their connection (ZMQ_SRCFD), and a timer
 *    compares what the kernel received on each quiet connection with what reached roomcast:
 *    a connection that keeps sending without ever completing a message is building a
 *    multipart message inside libzmq, and is cut: connect(AF_UNSPEC) on the duplicate resets
 *    the connection, libzmq's next read fails, and it drops the connection and what it held.
 *  - libzmq applies a PUB's subscriptions on roomcast's thread, in one loop that lasts as long
 *    as the next one has already arrived: a SUB streaming subscriptions holds that thread
 *    inside libzmq (zmq_send or zmq_msg_recv on the PUB), where nothing above can run, while
 *    every subscription costs memory. A watchdog thread covers this: roomcast's thread owns
 *    the module's lock except during its calls on the PUB (nsy_peers_pub_begin/end), so when
 *    one has lasted NSY_STUCK_NS the watchdog takes the lock — everything of roomcast's is
 *    then its own — and cuts the connections holding more than their budget, which ends the
 *    loop inside libzmq at the next read of the cut connection.
 *
 * Costs: one more descriptor per connection; one ZAP round trip through the loop per
 * handshake; per message one metadata lookup (on the PUB also an uncontended unlock and lock);
 * 2 syscalls per scan per connection that delivered nothing since the previous scan
 * (connections that send cost none); a thread that wakes every NSY_WATCH_NS.
 * Residual: if a connection dies before roomcast has read its ACCEPTED event and another
 * connection gets the same descriptor number in the few microseconds between roomcast reading
 * the events and calling dup(), the wrong socket is examined; only connections that never
 * finished their handshake can be affected (the ZAP barrier), and only their reason.
 * The module needs libzmq's single I/O thread (the adjacency of events above).
 */
#ifndef RC_NSPEERS_H
#define RC_NSPEERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"
#include "netsync/nsstats.h"

/* Live subscriptions one SUB connection may hold. libzmq stores every subscription in a trie
 * of one node per byte (about 30 bytes of memory per byte of topic), and a SUB would
 * otherwise be free to send millions; a NetSync client subscribes to its room. */
#define NSY_SUBS_PER_PEER 64

/* Scan period of the multipart check, and what a quiet connection may have consumed beyond
 * its messages: one message in progress (the limit) and the handshake (its READY is a frame
 * too, so the limit again) plus 64 KiB of slack; and ZMTP heartbeats, at most
 * NSY_IDLE_BYTES_PER_SEC (a PING is about 10-30 bytes and is never delivered to roomcast). */
#define NSY_SCAN_NS (100 * RC_NS_PER_MS)
#define NSY_SLACK_BYTES (64 * 1024)
#define NSY_IDLE_BYTES_PER_SEC 512

/* The watchdog looks every NSY_WATCH_NS; a call on the PUB that has lasted NSY_STUCK_NS is
 * stuck (a send or receive that does not wait takes microseconds). */
#define NSY_WATCH_NS (20 * RC_NS_PER_MS)
#define NSY_STUCK_NS (50 * RC_NS_PER_MS)

typedef struct nsy_peer nsy_peer;
typedef struct nsy_peers nsy_peers;

/* Called before each scan of the multipart check to read every message libzmq holds for
 * roomcast (a complete message not read yet would look like one in progress). Returns false
 * when some are left (a drain budget ran out): the scan is skipped then. */
typedef bool nsy_peers_flush_cb(void *arg);

/* One watched ZeroMQ socket (ROUTER or PUB). */
typedef struct nsy_watched {
    nsy_peers *owner;            /* the module */
    rc_io io;                    /* the monitor PAIR's ZMQ_FD (owned by libzmq) */
    void *mon;                   /* inproc PAIR receiving the socket's monitor events */
    enum nsy_sock sock;          /* which socket */
    nsy_peer *peer;              /* connections, indexed by libzmq's descriptor */
    size_t cap;                  /* entries of peer */
    uint64_t budget;             /* multipart check: bytes a quiet connection may hold */
    bool prev_failed;            /* the last event read was a HANDSHAKE_FAILED_* */
} nsy_watched;

struct nsy_peers {
    rc_loop *loop;               /* not owned */
    void *zctx;                  /* ZeroMQ context (not owned) */
    void *zap;                   /* ZAP handler: ROUTER bound to inproc://zeromq.zap.01 */
    rc_io zap_io;                /* its ZMQ_FD */
    rc_timer scan;               /* multipart check, every NSY_SCAN_NS while connections exist */
    rc_timer more;               /* continues a drain cut short by its budget */
    rc_netsync_stats *st;        /* counters (not owned) */
    nsy_peers_flush_cb *flush;   /* reads the sockets before a scan */
    void *flush_arg;             /* its argument */
    nsy_watched w[NSY_SOCK__COUNT]; /* the control ROUTER, the PUB, the pose ROUTER */
    uint64_t serials;            /* connections accepted so far (the last serial given) */
    size_t nlive;                /* connections of both sockets */
    pthread_mutex_t lock;        /* held by roomcast's thread but during calls on the PUB */
    pthread_t watchdog;          /* see above */
    bool watching;               /* the watchdog runs (lock initialised and held) */
    _Atomic bool stop;           /* tells the watchdog to end */
    _Atomic uint64_t pub_since;  /* CLOCK_MONOTONIC ns when the current call on the PUB
                                    began, 0 outside one */
};

/* nsy_peers_init binds the ZAP handler in zctx (which must have one I/O thread) and attaches
 * it to the loop; call it before any socket of zctx binds. flush is called before every scan.
 * Returns 0 or -errno (logged). nsy_peers_release closes the monitor and ZAP sockets and the
 * duplicates (call it after closing the watched sockets, before zmq_ctx_term); safe on a
 * zeroed struct. */
int nsy_peers_init(nsy_peers *p, rc_loop *loop, void *zctx, rc_netsync_stats *st,
                   nsy_peers_flush_cb *flush, void *flush_arg);
void nsy_peers_release(nsy_peers *p);

/* nsy_peers_watch caps zsock's inbound frames at limit bytes (ZMQ_MAXMSGSIZE), turns its ZAP
 * barrier on and starts monitoring it; before zmq_bind. Returns 0 or -errno (logged). */
int nsy_peers_watch(nsy_peers *p, enum nsy_sock s, void *zsock, uint64_t limit);

/* nsy_peers_srcfd is the descriptor of the connection frame m came from, -1 if unknown. */
int nsy_peers_srcfd(void *m);

/* nsy_frame_wire is what a frame of n payload bytes takes on the wire (ZMTP 3 header: flags
 * and a 1- or 8-byte size). */
static inline uint64_t nsy_frame_wire(size_t n) { return n + (n > 255 ? 9 : 2); }

/* nsy_peers_read tells the module that roomcast read a message that took `wire` bytes on the
 * wire (the sum of nsy_frame_wire over its frames) from connection fd of socket s (fd < 0:
 * unknown, ignored). */
void nsy_peers_read(nsy_peers *p, enum nsy_sock s, int fd, uint64_t wire);

/* nsy_peers_subscribed counts a subscription (on = true) or a cancel of PUB connection fd;
 * beyond NSY_SUBS_PER_PEER live ones the connection is cut (NSY_DROP_SUB_LIMIT). */
void nsy_peers_subscribed(nsy_peers *p, int fd, bool on);

/* nsy_peers_pub_begin and nsy_peers_pub_end surround every call on the PUB socket (the
 * watchdog may act in between; see above). */
void nsy_peers_pub_begin(nsy_peers *p);
void nsy_peers_pub_end(nsy_peers *p);

/* nsy_peers_serial is the number roomcast gave connection fd of socket s when libzmq
 * accepted it (1, 2, ... over all sockets), or 0 when fd is not a live connection or roomcast
 * has cut it. A descriptor number is reused by the next connection; a serial never is, so
 * (fd, serial) recorded from a message tells later whether that connection still exists. */
uint64_t nsy_peers_serial(const nsy_peers *p, enum nsy_sock s, int fd);

/* nsy_peers_cut disconnects connection fd of socket s for reason why (counted now, not again
 * when libzmq reports the disconnect). Returns false when fd is not a connection roomcast can
 * cut (unknown, already gone, or no duplicate). */
bool nsy_peers_cut(nsy_peers *p, enum nsy_sock s, int fd, enum nsy_gone why);

#endif
