/* zbroker.c — the worker broker's ROUTERs on the loop; see zbroker.h. */
#include "broker/zbroker.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "core/hash.h"
#include "core/log.h"
#include "transport/zmtpsock.h"

#define container_of(p, T, m) ((T *)(void *)((char *)(p) - offsetof(T, m)))

/* Frames of the largest message the core sends or accepts: the identity, the protocol's
 * fixed frames, the body. */
#define MAX_FRAMES (1 + MDP_ENC_FIXED + BRK_MAX_FRAMES)

/* A worker connection: the identity its messages carried. In two tables: by connection
 * serial (zsock's gone reports a serial) and by identity (a newer connection takes the
 * identity over). */
typedef struct zb_conn {
    rc_hnode by_conn;            /* in zb->conns, hash of conn */
    rc_hnode by_id;              /* in zb->ids, hash of the identity; only while bound */
    uint64_t conn;               /* zsock connection serial */
    bool bound;                  /* the identity's current connection */
    uint8_t id_len;              /* identity bytes */
    uint8_t id[MDP_ID_MAX];      /* routing identity */
} zb_conn;

/* An identity whose end the core must hear of once its current call has returned (its
 * callbacks may not call back into it). */
typedef struct zb_gone {
    uint8_t id_len;
    uint8_t id[MDP_ID_MAX];
} zb_gone;

struct rc_zbroker {
    rc_loop *loop;               /* not owned */
    void *zctx;                  /* the ZeroMQ context of both sockets */
    rc_zsock *workers;           /* the worker ROUTER (libzmq engine) */
    rc_zsock *clients;           /* the client ROUTER, NULL when off (libzmq engine) */
    bool native;                 /* --zmq-engine native: the ROUTERs are rc_zms */
    rc_zms *nworkers;            /* the worker ROUTER (native engine) */
    rc_zms *nclients;            /* the client ROUTER, NULL when off (native engine) */
    rc_zsock_stats nst[2];       /* native engine: its counters in rc_zsock's shape (workers,
                                    clients), for the metrics that read them */
    brk_broker core;             /* the state machine */
    bool core_ready;             /* brk_init succeeded */
    rc_timer tick;               /* armed at brk_next_deadline */
    rc_htab conns;               /* zb_conn by serial */
    rc_htab ids;                 /* zb_conn by identity (bound ones) */
    zb_gone *gone;               /* deferred worker ends */
    size_t ngone, capgone;       /* used / allocated */
    rc_zbroker_stats st;         /* counters */
    void (*moved_fn)(void *, mdp_frame, mdp_frame); /* the app's on_moved (room services) */
    void *moved_arg;             /* its argument */
    rc_zbroker_publish_fn *pub_fn; /* the app's RCPUB01 (workers publish into rooms) */
    void *pub_arg;               /* its argument */
    mdp_frame pub_id;            /* the identity of the RCPUB01 being handed to pub_fn */
};

/* ---- frames ------------------------------------------------------------------------------ */

static size_t to_mdp(const rc_zmsg *m, mdp_frame *out)
{
    for (size_t i = 0; i < m->n; i++) out[i] = mdp_frame_of(m->f[i].data, m->f[i].len);
    return m->n;
}

/* send_frames sends to the worker port (to_workers) or the client port. */
static int send_frames(rc_zbroker *zb, bool to_workers, const mdp_frame *f, size_t n)
{
    rc_zframe out[MAX_FRAMES];
    if (n > MAX_FRAMES) return -EMSGSIZE;
    for (size_t i = 0; i < n; i++) out[i] = (rc_zframe){f[i].p, f[i].len};
    int rc = zb->native ? rc_zms_send(to_workers ? zb->nworkers : zb->nclients, out, n)
                        : rc_zsock_send(to_workers ? zb->workers : zb->clients, out, n);
    if (rc < 0) zb->st.send_dropped++;
    return rc;
}

/* ---- worker connections ------------------------------------------------------------------ */

static uint64_t conn_hash(uint64_t conn) { return rc_hash_mix(conn); }

static zb_conn *conn_find(rc_zbroker *zb, uint64_t conn)
{
    uint64_t h = conn_hash(conn);
    for (rc_hnode *n = rc_htab_chain(&zb->conns, h); n; n = n->next) {
        zb_conn *c = container_of(n, zb_conn, by_conn);
        if (n->hash == h && c->conn == conn) return c;
    }
    return NULL;
}

static zb_conn *id_find(rc_zbroker *zb, const uint8_t *id, size_t len)
{
    uint64_t h = rc_hash(id, len);
    for (rc_hnode *n = rc_htab_chain(&zb->ids, h); n; n = n->next) {
        zb_conn *c = container_of(n, zb_conn, by_id);
        if (n->hash == h && c->id_len == len && memcmp(c->id, id, len) == 0) return c;
    }
    return NULL;
}

static void conn_unbind(rc_zbroker *zb, zb_conn *c)
{
    if (!c->bound) return;
    rc_htab_remove(&zb->ids, &c->by_id);
    c->bound = false;
}

static void conn_free(rc_zbroker *zb, zb_conn *c)
{
    conn_unbind(zb, c);
    rc_htab_remove(&zb->conns, &c->by_conn);
    free(c);
}

/* remember records that identity id spoke over connection conn (conn 0: unknown, e.g. the
 * monitor has not seen it; then only EHOSTUNREACH or heartbeats can end the worker). */
static void remember(rc_zbroker *zb, uint64_t conn, mdp_frame id)
{
    if (!conn || id.len == 0 || id.len > MDP_ID_MAX) return;
    zb_conn *c = conn_find(zb, conn);
    if (c && c->bound && c->id_len == id.len && memcmp(c->id, id.p, id.len) == 0) return;
    if (!c) {
        if (!(c = calloc(1, sizeof(*c)))) return; /* out of memory: untracked (as conn 0) */
        c->conn = conn;
        if (rc_htab_insert(&zb->conns, &c->by_conn, conn_hash(conn)) < 0) {
            free(c);
            return;
        }
    }
    /* A ROUTER connection keeps its identity for life; a different one on the same serial
     * cannot happen, but would be the newest word, so take it. */
    conn_unbind(zb, c);
    zb_conn *old = id_find(zb, id.p, id.len);
    if (old) conn_unbind(zb, old); /* the identity moved to this newer connection */
    memcpy(c->id, id.p, id.len);
    c->id_len = (uint8_t)id.len;
    if (rc_htab_insert(&zb->ids, &c->by_id, rc_hash(c->id, c->id_len)) == 0) c->bound = true;
}

static void defer_gone(rc_zbroker *zb, const uint8_t *id, size_t len)
{
    if (len == 0 || len > MDP_ID_MAX) return;
    for (size_t i = 0; i < zb->ngone; i++)
        if (zb->gone[i].id_len == len && memcmp(zb->gone[i].id, id, len) == 0) return;
    if (zb->ngone == zb->capgone) {
        size_t cap = zb->capgone ? zb->capgone * 2 : 8;
        zb_gone *n = realloc(zb->gone, cap * sizeof(*n));
        if (!n) return; /* out of memory: heartbeats or the request deadline cover it */
        zb->gone = n;
        zb->capgone = cap;
    }
    zb->gone[zb->ngone].id_len = (uint8_t)len;
    memcpy(zb->gone[zb->ngone].id, id, len);
    zb->ngone++;
}

/* ---- the core's timer and deferred work -------------------------------------------------- */

/* settle hands the deferred worker ends to the core (each call may defer more: its retries
 * send to other workers, which may be unreachable too), then points the timer at the core's
 * next deadline. Called after every call into the core. */
/* mirror copies the native sockets' counters into rc_zsock's shape. */
static void mirror_one(rc_zsock_stats *o, const rc_zms *zs)
{
    if (!zs) return;
    const rc_zms_stats *s = rc_zms_stats_of(zs);
    uint64_t ended = 0;
    for (int i = 0; i < RC_ZMS_GONE__COUNT; i++) ended += s->gone[i];
    *o = (rc_zsock_stats){.msgs_in = s->msgs_in, .bytes_in = s->bytes_in,
                          .msgs_out = s->msgs_out, .bytes_out = s->bytes_out,
                          .send_again = s->send_again, .send_unreachable = s->send_unreachable,
                          .accepted = s->accepted, .disconnected = ended, .live = s->live,
                          .refused = s->gone[RC_ZMS_GONE_LIMIT]};
    o->dropped[RC_ZSOCK_DROP_BYTES] = s->dropped_bytes;
    o->dropped[RC_ZSOCK_DROP_FRAMES] = s->errors[RC_ZMTP_E_TOO_MANY_FRAMES];
}

static void mirror(rc_zbroker *zb)
{
    if (!zb->native) return;
    mirror_one(&zb->nst[0], zb->nworkers);
    mirror_one(&zb->nst[1], zb->nclients);
}

static void settle(rc_zbroker *zb)
{
    uint64_t now = rc_loop_now(zb->loop);
    mirror(zb);
    for (size_t i = 0; i < zb->ngone; i++) {
        zb_gone g = zb->gone[i];
        zb_conn *c = id_find(zb, g.id, g.id_len);
        if (c) conn_unbind(zb, c);
        brk_worker_gone(&zb->core, mdp_frame_of(g.id, g.id_len), now);
    }
    zb->ngone = 0;
    uint64_t due = brk_next_deadline(&zb->core);
    if (due == UINT64_MAX) {
        rc_timer_stop(zb->loop, &zb->tick);
        return;
    }
    if (due < now) due = now;
    if (!rc_timer_armed(&zb->tick) || rc_timer_due(&zb->tick) != due)
        rc_timer_start(zb->loop, &zb->tick, due);
}

static void on_tick(rc_loop *loop, rc_timer *t)
{
    rc_zbroker *zb = container_of(t, rc_zbroker, tick);
    brk_tick(&zb->core, rc_loop_now(loop));
    settle(zb);
}

void rc_zbroker_touched(rc_zbroker *zb) { settle(zb); }

/* ---- the core's output ------------------------------------------------------------------- */

static void send_worker(void *arg, const mdp_frame *frames, size_t n)
{
    rc_zbroker *zb = arg;
    if (send_frames(zb, true, frames, n) == -EHOSTUNREACH) {
        /* libzmq has dropped the peer (its monitor event may still be on the way) */
        zb->st.worker_unreachable++;
        defer_gone(zb, frames[0].p, frames[0].len);
    }
}

static void disconnect_worker(void *arg, mdp_frame identity)
{
    /* The core has forgotten the worker after DISCONNECT; the connection stays until the
     * worker closes it (an MDP worker reconnects on a new socket). Its end then finds no
     * worker in the core, which ignores unknown identities. */
    rc_zbroker *zb = arg;
    zb_conn *c = id_find(zb, identity.p, identity.len);
    if (c) conn_unbind(zb, c);
}

static void send_client(void *arg, const mdp_frame *frames, size_t n)
{
    rc_zbroker *zb = arg;
    /* EHOSTUNREACH: the client left before its reply (counted by zsock); nothing to do */
    if (zb->clients || zb->nclients) send_frames(zb, false, frames, n);
}

static void on_moved(void *arg, mdp_frame service, mdp_frame key)
{
    /* Room services (sticky keys) are the app's (rc_zbroker_set_moved); requests from ZeroMQ
     * clients carry no sticky key. */
    rc_zbroker *zb = arg;
    if (zb->moved_fn) zb->moved_fn(zb->moved_arg, service, key);
}

void rc_zbroker_set_moved(rc_zbroker *zb, void (*fn)(void *, mdp_frame, mdp_frame), void *arg)
{
    zb->moved_fn = fn;
    zb->moved_arg = arg;
}

void rc_zbroker_set_publish(rc_zbroker *zb, rc_zbroker_publish_fn *fn, void *arg)
{
    zb->pub_fn = fn;
    zb->pub_arg = arg;
}

/* [id][""][RCPUB01][room][message]([name]) -> [id][""][RCPUB01][status][msg_id or reason];
 * never reaches the core (a publisher need not be a worker). */
static bool rcpub(rc_zbroker *zb, const mdp_frame *f, size_t n)
{
    if (!zb->pub_fn || n < 3 || f[1].len != 0 || f[2].len != 7 || memcmp(f[2].p, "RCPUB01", 7))
        return false;
    char buf[512];
    size_t len = 0;
    int st = 400;
    if (n == 5 || n == 6) {
        zb->pub_id = f[0];
        st = zb->pub_fn(zb->pub_arg, f[3], f[4], n == 6 ? f[5] : mdp_frame_of(NULL, 0), buf,
                        sizeof(buf), &len);
        zb->pub_id = mdp_frame_of(NULL, 0);
        if (st == 0) return true; /* answered later (rc_zbroker_publish_later) */
    } else {
        len = (size_t)snprintf(buf, sizeof(buf), "expected [\"\"][RCPUB01][room][message]([name])");
    }
    char code[4];
    snprintf(code, sizeof(code), "%03u", (unsigned)st % 1000u);
    mdp_frame out[5] = {f[0], mdp_frame_of(NULL, 0), f[2], mdp_frame_of(code, 3),
                        mdp_frame_of(buf, len)};
    send_frames(zb, true, out, 5);
    return true;
}

void rc_zbroker_publish_defer(rc_zbroker *zb, rc_zbroker_later *l)
{
    size_t n = zb->pub_id.len <= MDP_ID_MAX ? zb->pub_id.len : 0;
    l->id_len = (uint8_t)n;
    if (n) memcpy(l->id, zb->pub_id.p, n);
}

void rc_zbroker_publish_later(rc_zbroker *zb, const rc_zbroker_later *l, int status,
                              const char *text, size_t len)
{
    if (!l->id_len) return;
    char code[4];
    snprintf(code, sizeof(code), "%03u", (unsigned)status % 1000u);
    mdp_frame out[5] = {mdp_frame_of(l->id, l->id_len), mdp_frame_of(NULL, 0),
                        mdp_frame_of("RCPUB01", 7), mdp_frame_of(code, 3),
                        mdp_frame_of(text, len)};
    send_frames(zb, true, out, 5); /* the worker ROUTER */
}

/* ---- input ------------------------------------------------------------------------------- */

static void worker_msg(rc_zbroker *zb, const rc_zmsg *m)
{
    mdp_frame f[MAX_FRAMES];
    size_t n = to_mdp(m, f); /* zsock delivers at most MAX_FRAMES frames */
    if (rcpub(zb, f, n)) return;
    remember(zb, m->conn, f[0]);
    brk_worker_input(&zb->core, f, n, rc_loop_now(zb->loop));
    settle(zb);
}

static void worker_gone(rc_zbroker *zb, uint64_t conn)
{
    zb_conn *c = conn_find(zb, conn);
    if (!c) return; /* a connection that never sent a message */
    if (c->bound) {
        zb->st.worker_conn_gone++;
        defer_gone(zb, c->id, c->id_len);
    }
    conn_free(zb, c);
    settle(zb);
}

static void client_msg(rc_zbroker *zb, const rc_zmsg *m)
{
    mdp_frame f[MAX_FRAMES];
    size_t n = to_mdp(m, f);
    brk_client_input(&zb->core, f, n, rc_loop_now(zb->loop));
    settle(zb);
}

/* The same handlers behind either engine's callbacks. */
static void on_worker_msg(rc_zsock *zs, const rc_zmsg *m, void *arg) { worker_msg(arg, m); }
static void on_worker_gone(rc_zsock *zs, uint64_t conn, void *arg) { worker_gone(arg, conn); }
static void on_client_msg(rc_zsock *zs, const rc_zmsg *m, void *arg) { client_msg(arg, m); }
static void on_nworker_msg(rc_zms *zs, const rc_zmsg *m, void *arg) { worker_msg(arg, m); }
static void on_nclient_msg(rc_zms *zs, const rc_zmsg *m, void *arg) { client_msg(arg, m); }
static void on_nworker_gone(rc_zms *zs, uint64_t conn, enum rc_zms_gone why, void *arg)
{
    if (conn) worker_gone(arg, conn); /* 0: refused at accept (the server's gate) */
    mirror(arg);
}
static void on_naccept(rc_zms *zs, uint64_t conn, void *arg) { mirror(arg); }
static void on_nclient_gone(rc_zms *zs, uint64_t conn, enum rc_zms_gone why, void *arg)
{
    mirror(arg);
}

/* open_native is open_port on the native engine, with the same limits. */
static rc_zms *open_native(rc_zbroker *zb, const rc_zbroker_opts *o, uint16_t port,
                           const char *name, bool workers)
{
    rc_zms_opts zo = {
        .type = RC_ZMTP_T_ROUTER,
        .bind = o->bind,
        .port = port,
        .max_frame = o->max_message && o->max_message <= SIZE_MAX / 2 ? 2 * o->max_message
                                                                      : o->max_message,
        .max_frames = MAX_FRAMES,
        .max_bytes = o->max_message,
        .name = name,
        .on_msg = workers ? on_nworker_msg : on_nclient_msg,
        .on_accept = on_naccept,
        .on_gone = workers ? on_nworker_gone : on_nclient_gone,
        .gate = o->gate,
        .arg = zb,
    };
    return rc_zms_new(zb->loop, &zo);
}

/* ---- set-up ------------------------------------------------------------------------------ */

static rc_zsock *open_port(rc_zbroker *zb, const rc_zbroker_opts *o, uint16_t port,
                           const char *name, rc_zsock_msg_cb *on_msg, rc_zsock_gone_cb *on_gone)
{
    rc_zsock_opts zo = {
        .zctx = zb->zctx,
        .bind = o->bind,
        .port = port,
        /* libzmq drops the connection of a peer announcing a frame over ZMQ_MAXMSGSIZE,
         * silently; a message over max_message in all is read and dropped here instead, and
         * counted (malformed too_large). So the per-frame cap is twice the message limit: a
         * request somewhat too large is counted, a grossly oversized frame still never gets
         * buffered. */
        .max_frame = o->max_message && o->max_message <= SIZE_MAX / 2 ? 2 * o->max_message
                                                                      : o->max_message,
        .max_frames = MAX_FRAMES,
        .max_bytes = o->max_message,
        /* The broker answers within microseconds; a coalescing window would only add
         * latency (NetSync uses one for its stream of small transforms). */
        .coalesce_ns = 0,
        .name = name,
        .on_msg = on_msg,
        .on_gone = on_gone,
        .arg = zb,
    };
    return rc_zsock_new(zb->loop, &zo);
}

rc_zbroker *rc_zbroker_new(rc_loop *loop, const rc_zbroker_opts *o)
{
    if (o->worker_port < 0) return NULL;
    rc_zbroker *zb = calloc(1, sizeof(*zb));
    if (!zb) {
        rc_error("out of memory");
        return NULL;
    }
    zb->loop = loop;
    rc_timer_init(&zb->tick, on_tick);
    brk_callbacks cb = {.arg = zb, .send_worker = send_worker,
                        .disconnect_worker = disconnect_worker,
                        .send_client = o->client_port >= 0 ? send_client : NULL,
                        .on_moved = on_moved};
    if (brk_init(&zb->core, &o->params, &cb, rc_loop_now(loop)) < 0) {
        rc_error("cannot start the broker: invalid default service '%s'",
                 o->params.default_service ? o->params.default_service : "");
        goto err;
    }
    zb->core_ready = true;
    for (const char *p = o->at_most_once; p && *p;) {
        size_t len = strcspn(p, ",\n"); /* --broker-at-most-once repeats join with '\n' */
        if (len && brk_service_set_at_most_once(&zb->core, mdp_frame_of(p, len), true) < 0) {
            rc_error("cannot mark service '%.*s' at-most-once (1 to %d bytes)", (int)len, p,
                     MDP_SERVICE_MAX);
            goto err;
        }
        p += len + (p[len] != '\0');
    }
    zb->native = o->engine == RC_ZMS_ENGINE_NATIVE;
    if (zb->native) {
        if (!(zb->nworkers = open_native(zb, o, (uint16_t)o->worker_port, "broker workers",
                                         true)))
            goto err;
        if (o->client_port >= 0 &&
            !(zb->nclients = open_native(zb, o, (uint16_t)o->client_port, "broker clients",
                                         false)))
            goto err;
        settle(zb);
        return zb;
    }
    if (!(zb->zctx = zmq_ctx_new())) {
        rc_error("cannot create a ZeroMQ context: %s", zmq_strerror(zmq_errno()));
        goto err;
    }
    if (!(zb->workers = open_port(zb, o, (uint16_t)o->worker_port, "broker workers",
                                  on_worker_msg, on_worker_gone)))
        goto err;
    if (o->client_port >= 0 &&
        !(zb->clients = open_port(zb, o, (uint16_t)o->client_port, "broker clients",
                                  on_client_msg, NULL)))
        goto err;
    settle(zb);
    return zb;
err:
    rc_zbroker_free(zb);
    return NULL;
}

void rc_zbroker_free(rc_zbroker *zb)
{
    if (!zb) return;
    rc_timer_stop(zb->loop, &zb->tick);
    rc_zsock_free(zb->workers);
    rc_zsock_free(zb->clients);
    rc_zms_free(zb->nworkers);
    rc_zms_free(zb->nclients);
    if (zb->zctx) zmq_ctx_term(zb->zctx);
    if (zb->core_ready) brk_release(&zb->core);
    uint32_t b = 0;
    rc_hnode *n = rc_htab_next(&zb->conns, &b, NULL);
    while (n) {
        rc_hnode *next = rc_htab_next(&zb->conns, &b, n);
        free(container_of(n, zb_conn, by_conn));
        n = next;
    }
    rc_htab_release(&zb->conns);
    rc_htab_release(&zb->ids);
    free(zb->gone);
    free(zb);
}

brk_broker *rc_zbroker_core(rc_zbroker *zb) { return &zb->core; }
const brk_broker *rc_zbroker_core_c(const rc_zbroker *zb) { return &zb->core; }
uint16_t rc_zbroker_worker_port(const rc_zbroker *zb)
{
    return zb->native ? rc_zms_port(zb->nworkers) : rc_zsock_port(zb->workers);
}

uint16_t rc_zbroker_client_port(const rc_zbroker *zb)
{
    if (zb->native) return zb->nclients ? rc_zms_port(zb->nclients) : 0;
    return zb->clients ? rc_zsock_port(zb->clients) : 0;
}

const char *rc_zbroker_worker_endpoint(const rc_zbroker *zb)
{
    return zb->native ? rc_zms_endpoint(zb->nworkers) : rc_zsock_endpoint(zb->workers);
}

const char *rc_zbroker_client_endpoint(const rc_zbroker *zb)
{
    if (zb->native) return zb->nclients ? rc_zms_endpoint(zb->nclients) : "";
    return zb->clients ? rc_zsock_endpoint(zb->clients) : "";
}

const rc_zsock_stats *rc_zbroker_worker_stats(const rc_zbroker *zb)
{
    return zb->native ? &zb->nst[0] : rc_zsock_stats_of(zb->workers);
}

const rc_zsock_stats *rc_zbroker_client_stats(const rc_zbroker *zb)
{
    if (zb->native) return zb->nclients ? &zb->nst[1] : NULL;
    return zb->clients ? rc_zsock_stats_of(zb->clients) : NULL;
}

const rc_zbroker_stats *rc_zbroker_stats_of(const rc_zbroker *zb) { return &zb->st; }
