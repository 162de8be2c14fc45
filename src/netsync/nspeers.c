/* nspeers.c — connections of the NetSync ZeroMQ sockets; see nspeers.h. */
#include "netsync/nspeers.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "core/log.h"

#define container_of(p, T, m) ((T *)(void *)((char *)(p) - offsetof(T, m)))

const char *const nsy_sock_names[NSY_SOCK__COUNT] = {
    [NSY_SOCK_ROUTER] = "router",
    [NSY_SOCK_PUB] = "pub",
    [NSY_SOCK_POSE] = "pose",
};

const char *const nsy_gone_names[NSY_GONE__COUNT] = {
    [NSY_GONE_PEER] = "peer",
    [NSY_GONE_HANDSHAKE] = "handshake",
    [NSY_GONE_PROTOCOL] = "protocol",
    [NSY_GONE_TOO_BIG] = "too_big",
    [NSY_GONE_SUB_LIMIT] = "subscription_limit",
    [NSY_GONE_UNKNOWN] = "unknown",
    [NSY_GONE_SLOW] = "slow_consumer",
    [NSY_GONE_LIMIT] = "connection_limit",
};

/* What a cut or a drop of each socket counts as. */
static const enum nsy_drop too_big_drop[NSY_SOCK__COUNT] = {
    [NSY_SOCK_ROUTER] = NSY_DROP_TOO_BIG,
    [NSY_SOCK_PUB] = NSY_DROP_SUB_TOO_BIG,
    [NSY_SOCK_POSE] = NSY_DROP_TOO_BIG,
};

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_DOMAIN "roomcast-netsync"
static const char *const monitor_endpoint[NSY_SOCK__COUNT] = {
    [NSY_SOCK_ROUTER] = "inproc://roomcast-netsync-monitor-router",
    [NSY_SOCK_PUB] = "inproc://roomcast-netsync-monitor-pub",
    [NSY_SOCK_POSE] = "inproc://roomcast-netsync-monitor-pose",
};
#define EVENTS                                                                                \
    (ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |     \
     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
#define HANDSHAKE_FAILED                                                                      \
    (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |             \
     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

/* A ZMTP 3 peer has sent its whole 64-byte greeting before libzmq decodes any frame; libzmq
 * refuses other peers (ZMTP 1.0/2.0 under ZAP, non-ZMTP bytes) within the first 12. */
#define ZMTP3_GREETING 64

/* Monitor events read before they are acted on (see drain_monitor), and ZAP requests or
 * events handled per wake-up before the rest of the loop gets a turn. */
#define EVENT_BATCH 64
#define DRAIN_BUDGET 1024

struct nsy_peer {
    int dupfd;                   /* roomcast's duplicate of libzmq's descriptor, -1: none */
    uint8_t live;                /* between ZMQ_EVENT_ACCEPTED and ZMQ_EVENT_DISCONNECTED */
    uint8_t cut;                 /* 1 when roomcast cut it (already counted) */
    uint8_t dup_failed;          /* dup() failed for want of descriptors: reason unknown */
    uint8_t have_base;           /* multipart check: base/base_at are set */
    uint32_t subs;               /* live subscriptions (PUB) */
    uint64_t serial;             /* this connection's number (nsy_peers_serial), never 0 */
    uint64_t accepted_at;        /* loop ns of ZMQ_EVENT_ACCEPTED */
    uint64_t delivered;          /* wire bytes (payload and frame headers) roomcast has read */
    uint64_t msgs;               /* messages roomcast has read */
    uint64_t scan_msgs;          /* msgs at the previous scan */
    uint64_t base;               /* bytes consumed by libzmq and not delivered, at base_at */
    uint64_t base_at;            /* loop ns of base */
    uint64_t safe_received;      /* TCP bytes received at a look that found the connection
                                    within bounds with all of them consumed; UINT64_MAX: none */
};

/* ---- connections ------------------------------------------------------------------------- */

static nsy_peer *peer_of(nsy_watched *w, int fd)
{
    return fd >= 0 && (size_t)fd < w->cap && w->peer[fd].live ? &w->peer[fd] : NULL;
}

static void arm_scan(nsy_peers *p)
{
    if (p->nlive && !rc_timer_armed(&p->scan))
        rc_timer_start(p->loop, &p->scan, rc_loop_now(p->loop) + NSY_SCAN_NS);
}

/* received_bytes is what the kernel has received on TCP connection fd. */
static int received_bytes(int fd, uint64_t *out)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received))
        return -1;
    *out = ti.tcpi_bytes_received;
    return 0;
}

/* consumed_bytes is what libzmq has read from TCP connection fd: what the kernel received
 * (received, from received_bytes), less what is still queued for reading. */
static int consumed_bytes(int fd, uint64_t received, uint64_t *out)
{
    int inq = 0;
    if (ioctl(fd, SIOCINQ, &inq) < 0) return -1;
    *out = received > (uint64_t)inq ? received - (uint64_t)inq : 0;
    return 0;
}

/* cut aborts the connection through roomcast's duplicate: connect() to AF_UNSPEC dissolves a
 * TCP socket's association (Linux tcp_disconnect: RST to the peer, both queues purged, the
 * socket's error set), so libzmq's next read fails, and it drops the connection, with what
 * it held for it, and reports DISCONNECTED, which finds the connection marked and does not
 * count it again. shutdown() would not do: libzmq would go on reading what is queued, and
 * Linux keeps accepting data after SHUT_RD. */
static void cut(nsy_watched *w, nsy_peer *c, enum nsy_gone why)
{
    struct sockaddr sa = {.sa_family = AF_UNSPEC};
    if (connect(c->dupfd, &sa, sizeof(sa)) < 0) shutdown(c->dupfd, SHUT_RDWR);
    c->cut = 1;
    w->owner->st->peers_gone[w->sock][why]++;
}

/* on_accepted starts tracking connection fd. dup_it is false when its DISCONNECTED was read in
 * the same batch: the connection is gone and the number may already belong to another. */
static void on_accepted(nsy_watched *w, int fd, bool dup_it)
{
    nsy_peers *p = w->owner;
    if (fd < 0) return;
    if ((size_t)fd >= w->cap) {
        size_t cap = w->cap ? w->cap : 64;
        while (cap <= (size_t)fd) cap *= 2;
        nsy_peer *np = realloc(w->peer, cap * sizeof(*np));
        if (!np) return; /* not tracked: its DISCONNECTED will find no entry */
        memset(np + w->cap, 0, (cap - w->cap) * sizeof(*np));
        w->peer = np;
        w->cap = cap;
    }
    nsy_peer *c = &w->peer[fd];
    if (c->live) { /* cannot happen (one socket's events are ordered): forget the old one */
        if (c->dupfd >= 0) close(c->dupfd);
        p->nlive--;
        p->st->peers[w->sock]--;
        p->st->peers_gone[w->sock][NSY_GONE_UNKNOWN]++;
    }
    *c = (nsy_peer){.dupfd = -1, .live = 1, .accepted_at = rc_loop_now(p->loop),
                    .safe_received = UINT64_MAX, .serial = ++p->serials};
    if (dup_it) {
        c->dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (c->dupfd < 0 && errno != EBADF) c->dup_failed = 1; /* EMFILE: cannot look */
    }
    p->nlive++;
    p->st->peers[w->sock]++;
    arm_scan(p);
}

/* classify says why a connection that roomcast did not cut has ended. */
static enum nsy_gone classify(const nsy_peer *c, bool handshake_failed)
{
    if (handshake_failed) return NSY_GONE_HANDSHAKE;
    /* No duplicate: the connection was gone before roomcast read its ACCEPTED, so it never
     * reached the ZAP barrier, and libzmq gave no reason: a refused greeting, or a frame over
     * the limit right behind it. */
    if (c->dupfd < 0) return c->dup_failed ? NSY_GONE_UNKNOWN : NSY_GONE_PROTOCOL;
    uint64_t received, consumed;
    if (received_bytes(c->dupfd, &received) < 0 ||
        consumed_bytes(c->dupfd, received, &consumed) < 0)
        return NSY_GONE_UNKNOWN;
    char b;
    ssize_t n = recv(c->dupfd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        return NSY_GONE_PEER; /* EOF or reset, and libzmq had read everything before it */
    /* The peer is still there, or still sending: libzmq cut it. After the greeting the only
     * reason libzmq keeps to itself is a frame it would not take (EMSGSIZE; ENOMEM, also a
     * frame too big for this process) — or a heartbeat TTL the peer asked for and then let
     * expire, which no NetSync client does. Within the greeting: a peer that is not ZMTP 3. */
    return consumed < ZMTP3_GREETING ? NSY_GONE_PROTOCOL : NSY_GONE_TOO_BIG;
}

static void on_disconnected(nsy_watched *w, int fd, bool handshake_failed)
{
    nsy_peers *p = w->owner;
    nsy_peer *c = peer_of(w, fd);
    if (!c) return;
    if (!c->cut) {
        enum nsy_gone g = classify(c, handshake_failed);
        p->st->peers_gone[w->sock][g]++;
        if (g == NSY_GONE_TOO_BIG) p->st->dropped[too_big_drop[w->sock]]++;
    }
    if (c->dupfd >= 0) close(c->dupfd); /* now the kernel socket closes (RST if unread data) */
    c->dupfd = -1;
    c->live = 0;
    p->nlive--;
    p->st->peers[w->sock]--;
}

/* ---- monitor events ---------------------------------------------------------------------- */

typedef struct mon_event {
    uint16_t ev;                 /* ZMQ_EVENT_* */
    uint32_t val;                /* its value: the descriptor for ACCEPTED and DISCONNECTED */
} mon_event;

/* read_event reads one event (2 frames: event and value, then the endpoint). Returns 1, 0 when
 * there is none, -1 for a malformed one (skipped). */
static int read_event(void *mon, mon_event *e)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return 0;
    }
    int rc = -1;
    if (zmq_msg_size(&m) >= 6) {
        const uint8_t *d = zmq_msg_data(&m);
        memcpy(&e->ev, d, 2);
        memcpy(&e->val, d + 2, 4);
        rc = 1;
    }
    int more = zmq_msg_more(&m);
    while (more) { /* the endpoint: the parts of a message arrive together */
        if (zmq_msg_recv(&m, mon, ZMQ_DONTWAIT) < 0) break;
        more = zmq_msg_more(&m);
    }
    zmq_msg_close(&m);
    return rc;
}

/* drain_monitor handles the events of w, up to budget of them; true when none is left. Events
 * are read in batches before they are acted on, so that a connection whose DISCONNECTED is
 * already there is not dup()ed: its number may have been given to the next connection. */
static bool drain_monitor(nsy_watched *w, size_t budget)
{
    while (budget > 0) {
        mon_event ev[EVENT_BATCH];
        int n = 0, r = 1;
        while (n < EVENT_BATCH && (r = read_event(w->mon, &ev[n])) != 0)
            if (r > 0) n++;
        for (int i = 0; i < n; i++) {
            int fd = ev[i].val > INT32_MAX ? -1 : (int)ev[i].val;
            if (ev[i].ev == ZMQ_EVENT_ACCEPTED) {
                bool gone = false;
                for (int j = i + 1; j < n && !gone; j++)
                    gone = ev[j].ev == ZMQ_EVENT_DISCONNECTED && ev[j].val == ev[i].val;
                on_accepted(w, fd, !gone);
            } else if (ev[i].ev == ZMQ_EVENT_DISCONNECTED) {
                on_disconnected(w, fd, w->prev_failed);
            }
            /* libzmq emits HANDSHAKE_FAILED_* and then DISCONNECTED in one call on its single
             * I/O thread, so nothing of another connection comes between them. */
            w->prev_failed = (ev[i].ev & HANDSHAKE_FAILED) != 0;
        }
        if (r == 0) return true;
        budget = budget > (size_t)n ? budget - (size_t)n : 0;
    }
    return false;
}

static void on_monitor(rc_loop *loop, rc_io *io, uint32_t events)
{
    nsy_watched *w = container_of(io, nsy_watched, io);
    if (!drain_monitor(w, DRAIN_BUDGET) && !rc_timer_armed(&w->owner->more))
        rc_timer_start(loop, &w->owner->more, rc_loop_now(loop));
}

/* ---- the ZAP barrier --------------------------------------------------------------------- */

#define ZAP_BATCH 32

typedef struct zap_request {
    zmq_msg_t id;                /* the requesting session's routing id (ROUTER) */
    zmq_msg_t request_id;        /* ZAP request id, echoed */
    bool ok;                     /* well formed: [id][""]["1.0"][request id][...] */
} zap_request;

static bool read_zap(void *zap, zap_request *q)
{
    zmq_msg_init(&q->id);
    zmq_msg_init(&q->request_id);
    if (zmq_msg_recv(&q->id, zap, ZMQ_DONTWAIT) < 0) return false;
    int more = zmq_msg_more(&q->id), i = 1;
    zmq_msg_t m;
    zmq_msg_init(&m);
    bool version_ok = false;
    while (more) {
        zmq_msg_t *into = i == 3 ? &q->request_id : &m;
        if (zmq_msg_recv(into, zap, ZMQ_DONTWAIT) < 0) break;
        if (i == 2) version_ok = zmq_msg_size(&m) == 3 && memcmp(zmq_msg_data(&m), "1.0", 3) == 0;
        more = zmq_msg_more(into);
        i++;
    }
    zmq_msg_close(&m);
    q->ok = version_ok && i >= 4;
    return true;
}

static void reply_zap(void *zap, zap_request *q)
{
    if (q->ok) {
        static const char *const tail[] = {"200", "OK", "", ""}; /* status, text, user, metadata */
        int f = ZMQ_SNDMORE | ZMQ_DONTWAIT;
        zmq_send(zap, zmq_msg_data(&q->id), zmq_msg_size(&q->id), f);
        zmq_send(zap, "", 0, f);
        zmq_send(zap, "1.0", 3, f);
        zmq_send(zap, zmq_msg_data(&q->request_id), zmq_msg_size(&q->request_id), f);
        for (int i = 0; i < 4; i++)
            zmq_send(zap, tail[i], strlen(tail[i]), i < 3 ? f : ZMQ_DONTWAIT);
    }
    zmq_msg_close(&q->id);
    zmq_msg_close(&q->request_id);
}

/* answer_zap allows every pending handshake, after taking in every monitor event: each
 * requesting connection's ACCEPTED was emitted before its request, so its dup() is done, while
 * it was alive, before it may exchange a message. Returns false when the budget ran out. */
static bool answer_zap(nsy_peers *p)
{
    for (int round = 0; round < DRAIN_BUDGET / ZAP_BATCH; round++) {
        zap_request q[ZAP_BATCH];
        int n = 0;
        while (n < ZAP_BATCH && read_zap(p->zap, &q[n])) n++;
        if (n == 0) {
            zmq_msg_close(&q[0].id);
            zmq_msg_close(&q[0].request_id);
            return true;
        }
        if (n < ZAP_BATCH) { /* the failed read initialised q[n] */
            zmq_msg_close(&q[n].id);
            zmq_msg_close(&q[n].request_id);
        }
        for (int s = 0; s < NSY_SOCK__COUNT; s++)
            if (p->w[s].mon) drain_monitor(&p->w[s], SIZE_MAX);
        for (int i = 0; i < n; i++) reply_zap(p->zap, &q[i]);
    }
    return false;
}

static void on_zap(rc_loop *loop, rc_io *io, uint32_t events)
{
    nsy_peers *p = container_of(io, nsy_peers, zap_io);
    if (!answer_zap(p) && !rc_timer_armed(&p->more))
        rc_timer_start(loop, &p->more, rc_loop_now(loop));
}

static void on_more(rc_loop *loop, rc_timer *t)
{
    nsy_peers *p = container_of(t, nsy_peers, more);
    bool done = answer_zap(p);
    for (int s = 0; s < NSY_SOCK__COUNT; s++)
        if (p->w[s].mon && !drain_monitor(&p->w[s], DRAIN_BUDGET)) done = false;
    if (!done) rc_timer_start(loop, t, rc_loop_now(loop));
}

/* ---- the multipart check ----------------------------------------------------------------- */

/* A connection that delivered nothing since the previous scan is looked at: the bytes libzmq
 * consumed from it and did not deliver are what it holds for an unfinished message (plus the
 * handshake and heartbeats). Beyond the budget, growing no faster than heartbeats may, it is
 * cut. Connections that did deliver are not looked at (no syscall): a message in progress
 * blocks every later message of its connection, so they are not piling one up. */
/* over_budget looks at connection c (which delivered nothing since the previous look):
 * true when it holds more than its budget, else it updates the baseline. */
static bool over_budget(nsy_watched *w, nsy_peer *c, uint64_t now)
{
    uint64_t received, consumed;
    if (received_bytes(c->dupfd, &received) < 0) return false;
    /* Nothing arrived since a look that found it within bounds even if libzmq consumed all it
     * had received: one syscall (most connections of the PUB: a SUB is quiet). */
    if (c->have_base && received == c->safe_received) return false;
    if (consumed_bytes(c->dupfd, received, &consumed) < 0) return false;
    uint64_t held = consumed > c->delivered ? consumed - c->delivered : 0;
    uint64_t since = c->have_base ? c->base_at : c->accepted_at;
    uint64_t allow = w->budget + NSY_IDLE_BYTES_PER_SEC * (now - since) / RC_NS_PER_SEC;
    if (held > (c->have_base ? c->base : 0) + allow) return true;
    if (!c->have_base) {
        c->have_base = 1;
        c->base = held;
        c->base_at = now;
    }
    uint64_t most = received > c->delivered ? received - c->delivered : 0;
    c->safe_received = most <= c->base + allow ? received : UINT64_MAX;
    return false;
}

static void scan_socket(nsy_watched *w, uint64_t now)
{
    for (size_t fd = 0; fd < w->cap; fd++) {
        nsy_peer *c = &w->peer[fd];
        if (!c->live || c->cut || c->dupfd < 0) continue;
        if (c->msgs != c->scan_msgs) {
            c->scan_msgs = c->msgs;
            c->have_base = 0;
            c->safe_received = UINT64_MAX;
            continue;
        }
        if (over_budget(w, c, now)) {
            w->owner->st->dropped[too_big_drop[w->sock]]++;
            cut(w, c, NSY_GONE_TOO_BIG);
        }
    }
}

static void on_scan(rc_loop *loop, rc_timer *t)
{
    nsy_peers *p = container_of(t, nsy_peers, scan);
    if (!p->flush || p->flush(p->flush_arg)) {
        uint64_t now = rc_loop_now(loop);
        for (int s = 0; s < NSY_SOCK__COUNT; s++) scan_socket(&p->w[s], now);
    }
    arm_scan(p);
}

/* ---- the watchdog ------------------------------------------------------------------------ */

/* It holds the lock only while roomcast's thread is stuck in a call on the PUB, which cannot
 * return into roomcast's code without the lock: everything of roomcast's is the watchdog's
 * then. The connections streaming into the PUB have consumed bytes that reached nobody (the
 * thread that would read them is the stuck one): every connection over its budget is cut, as
 * having sent more subscriptions than it may. */
static void *watchdog(void *arg)
{
    nsy_peers *p = arg;
    const struct timespec period = {0, (long)NSY_WATCH_NS};
    while (!atomic_load(&p->stop)) {
        nanosleep(&period, NULL);
        uint64_t since = atomic_load(&p->pub_since);
        if (!since || rc_clock_ns() - since < NSY_STUCK_NS) continue;
        if (pthread_mutex_trylock(&p->lock) != 0) continue;
        if (atomic_load(&p->pub_since) == since) { /* still the same call */
            nsy_watched *w = &p->w[NSY_SOCK_PUB];
            uint64_t now = rc_clock_ns();
            for (size_t fd = 0; fd < w->cap; fd++) {
                nsy_peer *c = &w->peer[fd];
                if (c->live && !c->cut && c->dupfd >= 0 && over_budget(w, c, now)) {
                    p->st->dropped[NSY_DROP_SUB_LIMIT]++;
                    cut(w, c, NSY_GONE_SUB_LIMIT);
                }
            }
        }
        pthread_mutex_unlock(&p->lock);
    }
    return NULL;
}

void nsy_peers_pub_begin(nsy_peers *p)
{
    if (!p->watching) return;
    atomic_store(&p->pub_since, rc_clock_ns());
    pthread_mutex_unlock(&p->lock);
}

void nsy_peers_pub_end(nsy_peers *p)
{
    if (!p->watching) return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->pub_since, 0);
}

/* ---- API --------------------------------------------------------------------------------- */

static int watch_fd(nsy_peers *p, void *s, rc_io *io)
{
    int fd;
    size_t sz = sizeof(fd);
    if (zmq_getsockopt(s, ZMQ_FD, &fd, &sz) < 0) return -zmq_errno();
    rc_io_init(io, fd, io->cb);
    return rc_io_start(p->loop, io, RC_EV_READ);
}

int nsy_peers_init(nsy_peers *p, rc_loop *loop, void *zctx, rc_netsync_stats *st,
                   nsy_peers_flush_cb *flush, void *flush_arg)
{
    *p = (nsy_peers){.loop = loop, .zctx = zctx, .st = st, .flush = flush,
                     .flush_arg = flush_arg};
    rc_io_init(&p->zap_io, -1, on_zap);
    rc_timer_init(&p->scan, on_scan);
    rc_timer_init(&p->more, on_more);
    for (int s = 0; s < NSY_SOCK__COUNT; s++) {
        p->w[s] = (nsy_watched){.owner = p, .sock = (enum nsy_sock)s};
        rc_io_init(&p->w[s].io, -1, on_monitor);
    }
    if (zmq_ctx_get(zctx, ZMQ_IO_THREADS) != 1) {
        rc_error("netsync: the ZeroMQ context must have one I/O thread");
        return -EINVAL;
    }
    int zero = 0, rc = 0;
    if (!(p->zap = zmq_socket(zctx, ZMQ_ROUTER)) ||
        zmq_setsockopt(p->zap, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
        zmq_bind(p->zap, ZAP_ENDPOINT) < 0)
        rc = -zmq_errno();
    else
        rc = watch_fd(p, p->zap, &p->zap_io);
    if (rc < 0) {
        rc_error("cannot start the netsync ZAP handler: %s", zmq_strerror(-rc));
        return rc;
    }
    /* The thread inherits the caller's signal mask: roomcast's (signals blocked, read through
     * the loop's signalfd). */
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_lock(&p->lock);
    if ((rc = pthread_create(&p->watchdog, NULL, watchdog, p)) != 0) {
        pthread_mutex_unlock(&p->lock);
        pthread_mutex_destroy(&p->lock);
        rc_error("cannot start the netsync watchdog: %s", strerror(rc));
        return -rc;
    }
    p->watching = true;
    return 0;
}

int nsy_peers_watch(nsy_peers *p, enum nsy_sock s, void *zsock, uint64_t limit)
{
    nsy_watched *w = &p->w[s];
    int64_t max = (int64_t)limit;
    int zero = 0;
    if (zmq_setsockopt(zsock, ZMQ_MAXMSGSIZE, &max, sizeof(max)) < 0 ||
        zmq_setsockopt(zsock, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN)) < 0 ||
        zmq_socket_monitor(zsock, monitor_endpoint[s], EVENTS) < 0 ||
        !(w->mon = zmq_socket(p->zctx, ZMQ_PAIR)) ||
        zmq_setsockopt(w->mon, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
        zmq_connect(w->mon, monitor_endpoint[s]) < 0) {
        int rc = -zmq_errno();
        rc_error("cannot watch the netsync %s socket: %s", nsy_sock_names[s], zmq_strerror(-rc));
        return rc;
    }
    int rc = watch_fd(p, w->mon, &w->io);
    if (rc < 0) {
        rc_error("cannot watch the netsync %s socket: %s", nsy_sock_names[s], zmq_strerror(-rc));
        return rc;
    }
    w->budget = 2 * limit + NSY_SLACK_BYTES;
    return 0;
}

int nsy_peers_srcfd(void *m)
{
    return zmq_msg_get(m, ZMQ_SRCFD);
}

void nsy_peers_read(nsy_peers *p, enum nsy_sock s, int fd, uint64_t wire)
{
    nsy_peer *c = peer_of(&p->w[s], fd);
    if (!c) return;
    c->delivered += wire;
    c->msgs++;
}

void nsy_peers_subscribed(nsy_peers *p, int fd, bool on)
{
    nsy_watched *w = &p->w[NSY_SOCK_PUB];
    nsy_peer *c = peer_of(w, fd);
    if (!c || c->cut) return;
    if (!on) {
        if (c->subs) c->subs--;
        return;
    }
    if (++c->subs > NSY_SUBS_PER_PEER && c->dupfd >= 0) {
        p->st->dropped[NSY_DROP_SUB_LIMIT]++;
        cut(w, c, NSY_GONE_SUB_LIMIT);
    }
}

uint64_t nsy_peers_serial(const nsy_peers *p, enum nsy_sock s, int fd)
{
    const nsy_watched *w = &p->w[s];
    if (fd < 0 || (size_t)fd >= w->cap) return 0;
    const nsy_peer *c = &w->peer[fd];
    return c->live && !c->cut ? c->serial : 0;
}

bool nsy_peers_cut(nsy_peers *p, enum nsy_sock s, int fd, enum nsy_gone why)
{
    nsy_watched *w = &p->w[s];
    nsy_peer *c = peer_of(w, fd);
    if (!c || c->cut || c->dupfd < 0) return false;
    cut(w, c, why);
    return true;
}

void nsy_peers_release(nsy_peers *p)
{
    if (!p->loop) return;
    if (p->watching) {
        atomic_store(&p->stop, true);
        pthread_join(p->watchdog, NULL);
        pthread_mutex_unlock(&p->lock);
        pthread_mutex_destroy(&p->lock);
        p->watching = false;
    }
    rc_timer_stop(p->loop, &p->scan);
    rc_timer_stop(p->loop, &p->more);
    if (p->zap_io.fd >= 0) rc_io_stop(p->loop, &p->zap_io);
    if (p->zap) zmq_close(p->zap);
    for (int s = 0; s < NSY_SOCK__COUNT; s++) {
        nsy_watched *w = &p->w[s];
        if (w->io.fd >= 0) rc_io_stop(p->loop, &w->io);
        if (w->mon) zmq_close(w->mon);
        for (size_t fd = 0; fd < w->cap; fd++)
            if (w->peer[fd].live && w->peer[fd].dupfd >= 0) close(w->peer[fd].dupfd);
        free(w->peer);
    }
    *p = (nsy_peers){0};
}
