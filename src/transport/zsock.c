/* zsock.c — a ZeroMQ ROUTER on roomcast's loop; see zsock.h. */
#include "transport/zsock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "core/log.h"

#define container_of(p, T, m) ((T *)(void *)((char *)(p) - offsetof(T, m)))

#define DEFAULT_BUDGET 1024

/* Monitor events handled per wake-up (each is one short inproc message). */
#define MONITOR_BUDGET 1024

const char *const rc_zsock_drop_names[RC_ZSOCK_DROP__COUNT] = {
    [RC_ZSOCK_DROP_FRAMES] = "too_many_frames",
    [RC_ZSOCK_DROP_BYTES] = "too_large",
};

/* What is known of the connection that has (or last had) a descriptor number. */
typedef struct zconn {
    uint64_t serial;             /* its serial; kept after it ends so that its last messages,
                                    read after the DISCONNECTED event, are still attributed */
    bool live;                   /* between ACCEPTED and DISCONNECTED */
} zconn;

struct rc_zsock {
    rc_loop *loop;               /* not owned */
    void *z;                     /* the ROUTER */
    void *mon;                   /* inproc PAIR receiving its monitor events, NULL: none */
    rc_io io;                    /* the ROUTER's ZMQ_FD (owned by libzmq, never closed here) */
    rc_io mon_io;                /* the monitor's ZMQ_FD */
    rc_timer more;               /* continues a drain (budget, coalescing, after a send) */
    uint64_t last_drain;         /* loop ns of the last drain */
    bool in_drain;               /* inside pump(): a send is looked after by pump itself */
    bool sent;                   /* a send happened inside pump() */
    bool truncate;               /* opts.truncate */
    zmq_msg_t *parts;            /* max_frames messages, reused by every receive */
    rc_zframe *frames;           /* max_frames views of parts, handed to on_msg */
    size_t max_frames;           /* entries of parts */
    size_t max_bytes;            /* message size limit (0: none) */
    unsigned budget;             /* messages per wake-up */
    uint64_t coalesce_ns;        /* coalescing window */
    zconn *conns;                /* by descriptor number */
    size_t nconns;               /* entries of conns */
    uint64_t serials;            /* the last serial given */
    uint64_t *gone;              /* serials of connections ended, to report after the drain */
    size_t ngone, capgone;       /* entries used / allocated */
    rc_zsock_msg_cb *on_msg;
    rc_zsock_gone_cb *on_gone;
    rc_zsock_drained_cb *on_drained;
    void *arg;
    const char *name;            /* for logs */
    uint16_t port;               /* bound port */
    char endpoint[300];          /* tcp://A:P bound */
    rc_zsock_stats st;           /* counters */
};

/* ---- connections ------------------------------------------------------------------------- */

static zconn *conn_at(rc_zsock *zs, int fd, bool grow)
{
    if (fd < 0) return NULL;
    if ((size_t)fd >= zs->nconns) {
        if (!grow) return NULL;
        size_t cap = zs->nconns ? zs->nconns : 64;
        while (cap <= (size_t)fd) cap *= 2;
        zconn *n = realloc(zs->conns, cap * sizeof(*n));
        if (!n) return NULL; /* untracked: its messages carry conn 0, its end is not reported */
        memset(n + zs->nconns, 0, (cap - zs->nconns) * sizeof(*n));
        zs->conns = n;
        zs->nconns = cap;
    }
    return &zs->conns[fd];
}

static void on_accepted(rc_zsock *zs, int fd)
{
    zconn *c = conn_at(zs, fd, true);
    if (!c) return;
    if (c->live) zs->st.live--; /* a lost DISCONNECTED (cannot happen: events are ordered) */
    c->serial = ++zs->serials;
    c->live = true;
    zs->st.accepted++;
    zs->st.live++;
}

static void on_disconnected(rc_zsock *zs, int fd)
{
    zconn *c = conn_at(zs, fd, false);
    if (!c || !c->live) return;
    c->live = false;
    zs->st.disconnected++;
    zs->st.live--;
    if (!zs->on_gone) return;
    if (zs->ngone == zs->capgone) {
        size_t cap = zs->capgone ? zs->capgone * 2 : 16;
        uint64_t *n = realloc(zs->gone, cap * sizeof(*n));
        if (!n) return; /* out of memory: this end goes unreported (the peers' heartbeats
                           and the request timeouts still cover it) */
        zs->gone = n;
        zs->capgone = cap;
    }
    zs->gone[zs->ngone++] = c->serial;
}

/* read_monitor handles up to budget monitor events; false when some are left. An event is two
 * frames: [u16 event][u32 value] and the endpoint. */
static bool read_monitor(rc_zsock *zs, unsigned budget)
{
    if (!zs->mon) return true;
    zmq_msg_t m;
    zmq_msg_init(&m);
    bool done = false;
    while (budget-- > 0) {
        if (zmq_msg_recv(&m, zs->mon, ZMQ_DONTWAIT) < 0) {
            done = true;
            break;
        }
        uint16_t ev = 0;
        uint32_t val = 0;
        bool ok = zmq_msg_size(&m) >= 6;
        if (ok) {
            memcpy(&ev, zmq_msg_data(&m), 2);
            memcpy(&val, (const uint8_t *)zmq_msg_data(&m) + 2, 4);
        }
        int more = zmq_msg_more(&m);
        while (more) { /* the endpoint; the parts of a message arrive together */
            if (zmq_msg_recv(&m, zs->mon, ZMQ_DONTWAIT) < 0) break;
            more = zmq_msg_more(&m);
        }
        if (!ok || val > INT32_MAX) continue;
        if (ev == ZMQ_EVENT_ACCEPTED) on_accepted(zs, (int)val);
        else if (ev == ZMQ_EVENT_DISCONNECTED) on_disconnected(zs, (int)val);
    }
    zmq_msg_close(&m);
    return done;
}

/* ---- input ------------------------------------------------------------------------------- */

static bool readable(rc_zsock *zs)
{
    int ev = 0;
    size_t sz = sizeof(ev);
    return zmq_getsockopt(zs->z, ZMQ_EVENTS, &ev, &sz) == 0 && (ev & ZMQ_POLLIN);
}

/* drain_router delivers messages until ZMQ_EVENTS shows no input (ZMQ_FD signals edges only:
 * stopping while a message is queued would leave it until an unrelated wake-up), at most
 * budget of them; false when some are left. */
static bool drain_router(rc_zsock *zs, unsigned budget)
{
    zmq_msg_t extra;
    zmq_msg_init(&extra);
    bool done = true;
    zs->last_drain = rc_loop_now(zs->loop);
    while (readable(zs)) {
        if (budget-- == 0) {
            done = false;
            break;
        }
        size_t n = 0, bytes = 0;
        uint64_t wire = 0;
        int more = 1, srcfd = -1;
        while (more) {
            zmq_msg_t *m = n < zs->max_frames ? &zs->parts[n] : &extra;
            if (zmq_msg_recv(m, zs->z, ZMQ_DONTWAIT) < 0) break;
            if (n > 0) {
                size_t len = zmq_msg_size(m);
                bytes += len;
                wire += len + (len > 255 ? 9 : 2); /* ZMTP 3: flags and a 1- or 8-byte size */
                if (srcfd < 0) srcfd = zmq_msg_get(m, ZMQ_SRCFD);
            }
            n++;
            more = zmq_msg_more(m);
        }
        if (n == 0) continue;
        size_t nparts = n;
        if (n > zs->max_frames) {
            if (!zs->truncate) {
                zs->st.dropped[RC_ZSOCK_DROP_FRAMES]++;
                continue;
            }
            n = zs->max_frames;
        }
        if (zs->max_bytes && bytes > zs->max_bytes) {
            zs->st.dropped[RC_ZSOCK_DROP_BYTES]++;
            continue;
        }
        zconn *c = conn_at(zs, srcfd, false);
        rc_zframe *f = zs->frames;
        for (size_t i = 0; i < n; i++)
            f[i] = (rc_zframe){zmq_msg_data(&zs->parts[i]), zmq_msg_size(&zs->parts[i])};
        rc_zmsg msg = {.f = f, .n = n, .nparts = nparts, .bytes = bytes, .wire = wire,
                       .fd = srcfd, .conn = c ? c->serial : 0};
        zs->st.msgs_in++;
        zs->st.bytes_in += bytes;
        zs->on_msg(zs, &msg, zs->arg);
    }
    zmq_msg_close(&extra);
    return done;
}

/* pump reads the monitor (so that every message's connection is known), the ROUTER, then
 * reports the connections that ended, after their last readable messages. */
static bool pump(rc_zsock *zs)
{
    zs->in_drain = true;
    zs->sent = false;
    bool done = read_monitor(zs, MONITOR_BUDGET);
    done = drain_router(zs, zs->budget) && done;
    zs->sent = false; /* the drain looked at ZMQ_EVENTS after the callbacks' sends */
    for (size_t i = 0; i < zs->ngone; i++) zs->on_gone(zs, zs->gone[i], zs->arg);
    zs->ngone = 0;
    if (zs->on_drained) zs->on_drained(zs, zs->arg);
    zs->in_drain = false;
    /* A send from on_gone may have consumed the read edge after the drain's last look. */
    if ((!done || zs->sent) && !rc_timer_armed(&zs->more))
        rc_timer_start(zs->loop, &zs->more, rc_loop_now(zs->loop));
    return done;
}

static void on_router(rc_loop *loop, rc_io *io, uint32_t events)
{
    rc_zsock *zs = container_of(io, rc_zsock, io);
    uint64_t now = rc_loop_now(loop);
    if (zs->coalesce_ns && now - zs->last_drain < zs->coalesce_ns) {
        if (!rc_timer_armed(&zs->more))
            rc_timer_start(loop, &zs->more, zs->last_drain + zs->coalesce_ns);
        return;
    }
    rc_timer_stop(loop, &zs->more);
    pump(zs);
}

static void on_monitor(rc_loop *loop, rc_io *io, uint32_t events)
{
    rc_zsock *zs = container_of(io, rc_zsock, mon_io);
    pump(zs);
}

static void on_more(rc_loop *loop, rc_timer *t)
{
    pump(container_of(t, rc_zsock, more));
}

bool rc_zsock_drain(rc_zsock *zs)
{
    return zs->in_drain ? true : pump(zs);
}

void rc_zsock_look(rc_zsock *zs)
{
    if (zs->in_drain)
        zs->sent = true;
    else if (!rc_timer_armed(&zs->more))
        rc_timer_start(zs->loop, &zs->more, rc_loop_now(zs->loop));
}

/* ---- output ------------------------------------------------------------------------------ */

int rc_zsock_send(rc_zsock *zs, const rc_zframe *f, size_t n)
{
    if (n == 0) return -EINVAL;
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        int flags = ZMQ_DONTWAIT | (i + 1 < n ? ZMQ_SNDMORE : 0);
        if (zmq_send(zs->z, f[i].len ? f[i].data : "", f[i].len, flags) < 0) {
            int err = zmq_errno();
            if (err == EAGAIN) zs->st.send_again++;
            else if (err == EHOSTUNREACH) zs->st.send_unreachable++;
            else zs->st.send_errors++;
            return -err;
        }
        if (i > 0) bytes += f[i].len;
    }
    zs->st.msgs_out++;
    zs->st.bytes_out += bytes;
    /* The send let libzmq process the socket's commands, which may have consumed its read
     * edge: look again at this loop turn's end (not now: the caller may be mid-message). */
    if (zs->in_drain)
        zs->sent = true;
    else if (!rc_timer_armed(&zs->more))
        rc_timer_start(zs->loop, &zs->more, rc_loop_now(zs->loop));
    return 0;
}

/* ---- set-up ------------------------------------------------------------------------------ */

static int watch(rc_loop *loop, void *s, rc_io *io, rc_io_cb *cb)
{
    int fd;
    size_t sz = sizeof(fd);
    if (zmq_getsockopt(s, ZMQ_FD, &fd, &sz) < 0) return -zmq_errno();
    rc_io_init(io, fd, cb);
    /* Edge-triggered: ZMQ_FD stays readable while a coalescing window defers the drain, and
     * level-triggered it would spin the loop until then. */
    return rc_io_start(loop, io, RC_EV_READ | RC_EV_EDGE);
}

rc_zsock *rc_zsock_new(rc_loop *loop, const rc_zsock_opts *o)
{
    const char *name = o->name ? o->name : "zeromq";
    size_t max_frames = o->max_frames ? o->max_frames : 1;
    rc_zsock *zs = calloc(1, sizeof(*zs));
    if (!zs) return NULL;
    *zs = (rc_zsock){.loop = loop, .max_frames = max_frames, .max_bytes = o->max_bytes,
                     .budget = o->budget ? o->budget : DEFAULT_BUDGET,
                     .coalesce_ns = o->coalesce_ns, .on_msg = o->on_msg, .on_gone = o->on_gone,
                     .on_drained = o->on_drained, .truncate = o->truncate, .arg = o->arg,
                     .name = name};
    rc_io_init(&zs->io, -1, on_router);
    rc_io_init(&zs->mon_io, -1, on_monitor);
    rc_timer_init(&zs->more, on_more);
    /* Allocated once and reused by every message: a receive costs no allocation here. */
    zs->parts = malloc(max_frames * sizeof(zmq_msg_t));
    zs->frames = malloc(max_frames * sizeof(rc_zframe));
    if (!zs->parts || !zs->frames) goto err;
    for (size_t i = 0; i < max_frames; i++) zmq_msg_init(&zs->parts[i]);

    const char *addr = !o->bind || strcmp(o->bind, "0.0.0.0") == 0 ? "*" : o->bind;
    bool v6 = strchr(addr, ':') != NULL;
    char port_s[8], ep[300];
    snprintf(port_s, sizeof(port_s), o->port ? "%u" : "*", o->port);
    snprintf(ep, sizeof(ep), v6 ? "tcp://[%s]:%s" : "tcp://%s:%s", addr, port_s);

    int zero = 0, one = 1;
    int64_t max = o->max_frame ? (int64_t)o->max_frame : -1;
    if (!(zs->z = zmq_socket(o->zctx, ZMQ_ROUTER)) ||
        zmq_setsockopt(zs->z, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
        zmq_setsockopt(zs->z, ZMQ_ROUTER_MANDATORY, &one, sizeof(one)) < 0 ||
        zmq_setsockopt(zs->z, ZMQ_MAXMSGSIZE, &max, sizeof(max)) < 0 ||
        (v6 && zmq_setsockopt(zs->z, ZMQ_IPV6, &one, sizeof(one)) < 0) ||
        (o->sndhwm > 0 &&
         zmq_setsockopt(zs->z, ZMQ_SNDHWM, &o->sndhwm, sizeof(o->sndhwm)) < 0)) {
        rc_error("cannot open the %s socket: %s", name, zmq_strerror(zmq_errno()));
        goto err;
    }
    if (o->on_gone) {
        char mep[64];
        snprintf(mep, sizeof(mep), "inproc://rc-zsock-monitor-%p", (void *)zs);
        if (zmq_socket_monitor(zs->z, mep, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) < 0 ||
            !(zs->mon = zmq_socket(o->zctx, ZMQ_PAIR)) ||
            zmq_setsockopt(zs->mon, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
            zmq_connect(zs->mon, mep) < 0) {
            rc_error("cannot monitor the %s socket: %s", name, zmq_strerror(zmq_errno()));
            goto err;
        }
    }
    if (o->configure && o->configure(zs->z, o->arg) < 0) goto err; /* logged by it */
    if (zmq_bind(zs->z, ep) < 0) {
        rc_error("cannot bind %s '%s': %s", name, ep, zmq_strerror(zmq_errno()));
        goto err;
    }
    size_t sz = sizeof(zs->endpoint);
    if (zmq_getsockopt(zs->z, ZMQ_LAST_ENDPOINT, zs->endpoint, &sz) == 0) {
        const char *c = strrchr(zs->endpoint, ':');
        if (c) zs->port = (uint16_t)atoi(c + 1);
    }
    int rc = watch(loop, zs->z, &zs->io, on_router);
    if (rc == 0 && zs->mon) rc = watch(loop, zs->mon, &zs->mon_io, on_monitor);
    if (rc < 0) {
        rc_error("cannot watch the %s socket: %s", name, strerror(-rc));
        goto err;
    }
    /* Connections and messages may have come between bind and watch: their edges are gone. */
    rc_timer_start(loop, &zs->more, rc_loop_now(loop));
    return zs;
err:
    rc_zsock_free(zs);
    return NULL;
}

void rc_zsock_free(rc_zsock *zs)
{
    if (!zs) return;
    rc_timer_stop(zs->loop, &zs->more);
    if (zs->io.fd >= 0) rc_io_stop(zs->loop, &zs->io);
    if (zs->mon_io.fd >= 0) rc_io_stop(zs->loop, &zs->mon_io);
    if (zs->z) zmq_close(zs->z);
    if (zs->mon) zmq_close(zs->mon);
    if (zs->parts)
        for (size_t i = 0; i < zs->max_frames; i++) zmq_msg_close(&zs->parts[i]);
    free(zs->parts);
    free(zs->frames);
    free(zs->conns);
    free(zs->gone);
    free(zs);
}

uint16_t rc_zsock_port(const rc_zsock *zs) { return zs->port; }
const char *rc_zsock_endpoint(const rc_zsock *zs) { return zs->endpoint; }
const rc_zsock_stats *rc_zsock_stats_of(const rc_zsock *zs) { return &zs->st; }

bool rc_zsock_conn_live(const rc_zsock *zs, uint64_t conn)
{
    if (!conn) return false;
    for (size_t i = 0; i < zs->nconns; i++)
        if (zs->conns[i].serial == conn) return zs->conns[i].live;
    return false;
}
