/* zmtpsock.c — native ZeroMQ ROUTER and PUB on the loop; see zmtpsock.h. */
#include "transport/zmtpsock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/hash.h"
#include "core/log.h"
#include "core/msg.h"
#include "transport/outq.h"
#include "transport/sock.h"

#define container_of(p, T, m) ((T *)(void *)((char *)(p) - offsetof(T, m)))

/* Reads per wake-up of one connection (64 KiB each) before the loop serves others; a busy
 * connection stays readable and is served again at the next wait (level-triggered). */
#define READS_PER_WAKE 4
#define RBUF_SIZE (64 * 1024)
/* Connections accepted per wake-up of the listener. */
#define ACCEPTS_PER_WAKE 64

const char *const rc_zms_gone_names[RC_ZMS_GONE__COUNT] = {
    [RC_ZMS_GONE_PEER] = "peer",
    [RC_ZMS_GONE_HANDSHAKE] = "handshake",
    [RC_ZMS_GONE_PROTOCOL] = "protocol",
    [RC_ZMS_GONE_TOO_BIG] = "too_big",
    [RC_ZMS_GONE_SUB_LIMIT] = "subscription_limit",
    [RC_ZMS_GONE_SLOW] = "slow_consumer",
    [RC_ZMS_GONE_CUT] = "cut",
    [RC_ZMS_GONE_LIMIT] = "connection_limit",
    [RC_ZMS_GONE_ERROR] = "error",
};

typedef struct zsub {
    uint16_t len;                /* topic bytes */
    uint8_t *topic;              /* owned */
} zsub;

typedef struct zconn {
    rc_io io;                    /* the TCP connection (owned: closed here) */
    rc_zms *zs;                  /* owner */
    uint64_t serial;             /* 1, 2, ... never reused */
    rc_hnode by_serial;          /* in zs->serials */
    rc_hnode by_id;              /* in zs->ids once READY (ROUTER) */
    rc_timer handshake;          /* greeting + READY deadline */
    rc_zmtp_reader rd;           /* the codec's state */
    uint8_t *in;                 /* an unfinished unit's bytes (the current unit on), NULL
                                    while there is none (see conn_read) */
    size_t in_len, in_cap;       /* bytes in it / allocated */
    rc_outq out;                 /* queued output */
    struct zconn *next, *prev;   /* every live connection (PUB fan-out) */
    struct zconn *next_flush;    /* on zs->flush_list while output waits for the turn's end */
    struct zconn *next_dead;     /* on zs->dead once closed, until on_gone and free */
    zsub *subs;                  /* PUB: live subscriptions */
    uint32_t nsubs, capsubs;
    uint8_t greet_sent;          /* bytes of our greeting queued: 0, 10, 11 or 64 */
    bool ready;                  /* READY received: traffic may flow */
    bool in_ids;                 /* by_id is in zs->ids */
    bool flushing;               /* on the flush list */
    bool writing;                /* write interest armed */
    bool dead;                   /* closed: waiting on zs->dead */
    bool reported;               /* with dead: on_gone was called */
    bool gated;                  /* admitted by the gate: release it when closed */
    uint32_t token;              /* with gated: the gate's token */
    rc_ipkey peer;               /* the peer's address as ipcount.h counts it */
    enum rc_zms_gone why;        /* with dead: the reason */
    uint8_t id_len;              /* routing id bytes */
    uint8_t id[RC_ZMTP_IDENTITY_MAX]; /* routing id (ROUTER) */
} zconn;

struct rc_zms {
    rc_loop *loop;               /* not owned */
    rc_io lio;                   /* the listening socket */
    enum rc_zmtp_type type;      /* ROUTER or PUB */
    rc_zmtp_limits lim;          /* for each connection's reader */
    size_t max_frames;           /* frames handed to on_msg, identity included */
    size_t max_bytes;            /* payload limit of one message */
    size_t out_cap, max_conns, max_subs;
    bool handover;
    uint64_t handshake_ns;
    rc_zms_gate gate;            /* the owner's gate (admit NULL: none) */
    rc_htab serials;             /* live connections by serial */
    rc_htab ids;                 /* ROUTER: live connections by routing id */
    zconn *conns;                /* live connections, newest first */
    zconn *flush_list;           /* connections with output to write at the turn's end */
    zconn *dead;                 /* closed connections to report and free */
    rc_timer flush;              /* zero-delay: writes output, reports ends */
    rc_zframe *frames;           /* max_frames views handed to on_msg */
    uint8_t *rbuf;               /* RBUF_SIZE: reads of connections with no unit pending */
    rc_msg *greet[3];            /* our greeting in libzmq's three steps */
    rc_msg *ready;               /* our READY */
    uint32_t next_id;            /* generated routing ids */
    uint64_t last_serial;
    rc_zms_msg_cb *on_msg;
    rc_zms_sub_cb *on_sub;
    rc_zms_conn_cb *on_accept;
    rc_zms_gone_cb *on_gone;
    rc_zms_drained_cb *on_drained;
    void *arg;
    const char *name;
    uint16_t port;
    char endpoint[300];
    rc_zms_stats st;
};

/* ---- lookups ----------------------------------------------------------------------------- */

static uint64_t serial_hash(uint64_t s) { return rc_hash_mix(s); }

static zconn *by_serial(const rc_zms *zs, uint64_t serial)
{
    uint64_t h = serial_hash(serial);
    for (rc_hnode *n = rc_htab_chain(&zs->serials, h); n; n = n->next) {
        zconn *c = container_of(n, zconn, by_serial);
        if (n->hash == h && c->serial == serial) return c;
    }
    return NULL;
}

static zconn *by_id(const rc_zms *zs, const void *id, size_t len)
{
    uint64_t h = rc_hash(id, len);
    for (rc_hnode *n = rc_htab_chain(&zs->ids, h); n; n = n->next) {
        zconn *c = container_of(n, zconn, by_id);
        if (n->hash == h && c->id_len == len && memcmp(c->id, id, len) == 0) return c;
    }
    return NULL;
}

/* ---- output ------------------------------------------------------------------------------ */

static void on_flush(rc_loop *loop, rc_timer *t);

static void want_flush(rc_zms *zs, zconn *c)
{
    if (!c->flushing) {
        c->flushing = true;
        c->next_flush = zs->flush_list;
        zs->flush_list = c;
    }
    if (!rc_timer_armed(&zs->flush)) rc_timer_start(zs->loop, &zs->flush, rc_loop_now(zs->loop));
}

static int queue(zconn *c, rc_msg *m)
{
    if (rc_outq_push(&c->out, m) < 0) return -ENOMEM;
    want_flush(c->zs, c);
    return 0;
}

/* queue_copy queues a copy of p[0..n) (a PONG, an ERROR). */
static void queue_copy(zconn *c, const void *p, size_t n)
{
    rc_msg *m = rc_msg_copy(p, n);
    if (!m) return;
    queue(c, m);
    rc_msg_unref(m);
}

/* ---- connection ends --------------------------------------------------------------------- */

/* kill closes c now and leaves it on zs->dead: on_gone and the free come at the end of the
 * current callback (reap), so that a pointer further up the stack stays valid. */
static void conn_kill(zconn *c, enum rc_zms_gone why)
{
    if (c->dead) return;
    rc_zms *zs = c->zs;
    c->dead = true;
    c->why = why;
    rc_io_stop(zs->loop, &c->io);
    close(c->io.fd);
    c->io.fd = -1;
    rc_timer_stop(zs->loop, &c->handshake);
    if (c->gated) { /* here, where the descriptor closes, so no way of ending can skip it */
        c->gated = false;
        zs->gate.release(zs->gate.arg, &c->peer, c->token);
    }
    rc_htab_remove(&zs->serials, &c->by_serial);
    if (c->in_ids) rc_htab_remove(&zs->ids, &c->by_id);
    c->in_ids = false;
    if (c->prev) c->prev->next = c->next;
    else zs->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->next_dead = zs->dead;
    zs->dead = c;
    zs->st.live--;
    zs->st.gone[why]++;
    if (!rc_timer_armed(&zs->flush)) rc_timer_start(zs->loop, &zs->flush, rc_loop_now(zs->loop));
}

static void conn_free(zconn *c)
{
    rc_outq_release(&c->out);
    for (uint32_t i = 0; i < c->nsubs; i++) free(c->subs[i].topic);
    free(c->subs);
    free(c->in);
    free(c);
}

/* reap reports the connections that ended and frees them, except those still on the flush
 * list (on_flush walks it later, then reaps again). */
static void reap(rc_zms *zs)
{
    zconn **pp = &zs->dead;
    while (*pp) {
        zconn *c = *pp;
        if (!c->reported) {
            c->reported = true;
            if (zs->on_gone) zs->on_gone(zs, c->serial, c->why, zs->arg);
        }
        if (c->flushing) {
            pp = &c->next_dead;
            continue;
        }
        *pp = c->next_dead;
        conn_free(c);
    }
}

/* fail ends c for protocol error err: told with an ERROR command when the peer is past the
 * greeting (it reads commands then), counted by kind. */
static void fail(zconn *c, int err)
{
    rc_zms *zs = c->zs;
    if (err <= 0 || err >= RC_ZMTP_E__COUNT) err = RC_ZMTP_E_COMMAND;
    zs->st.errors[err]++;
    /* as nspeers classifies libzmq's ends: a peer that is not ZMTP 3 is a protocol error, a
     * refused READY or mechanism a failed handshake */
    enum rc_zms_gone why = err == RC_ZMTP_E_NOT_ZMTP || err == RC_ZMTP_E_VERSION
                               ? RC_ZMS_GONE_PROTOCOL
                           : !c->ready ? RC_ZMS_GONE_HANDSHAKE
                           : err == RC_ZMTP_E_FRAME_TOO_BIG || err == RC_ZMTP_E_MSG_TOO_BIG ||
                                   err == RC_ZMTP_E_TOO_MANY_FRAMES
                               ? RC_ZMS_GONE_TOO_BIG
                               : RC_ZMS_GONE_PROTOCOL;
    /* Best effort, and only at a frame boundary of our output (nothing queued): the peer is
     * at fault and gets no more of our time than one write. */
    if (c->greet_sent == RC_ZMTP_GREETING_LEN && c->rd.stage != RC_ZMTP_S_GREETING &&
        err != RC_ZMTP_E_PEER_ERROR && c->out.count)
        (void)rc_outq_flush(&c->out, c->io.fd); /* our READY, typically */
    if (c->greet_sent == RC_ZMTP_GREETING_LEN && c->rd.stage != RC_ZMTP_S_GREETING &&
        err != RC_ZMTP_E_PEER_ERROR && c->out.count == 0) {
        uint8_t e[300];
        size_t n = rc_zmtp_error_encode(e, sizeof e, rc_zmtp_err_text[err]);
        if (n) (void)!send(c->io.fd, e, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    conn_kill(c, why);
}

/* ---- input ------------------------------------------------------------------------------- */

static void set_id(rc_zms *zs, zconn *c, const uint8_t *id, size_t len)
{
    if (len && id[0] != 0) { /* ids starting with 0 are libzmq's generated ones: never taken */
        zconn *old = by_id(zs, id, len);
        if (old && zs->handover) {
            conn_kill(old, RC_ZMS_GONE_CUT);
            old = NULL;
        }
        if (!old) {
            memcpy(c->id, id, len);
            c->id_len = (uint8_t)len;
            goto insert;
        }
    }
    do { /* generated: 0x00 + a 32-bit counter, unique among live connections */
        uint32_t v = zs->next_id++;
        c->id[0] = 0;
        c->id[1] = (uint8_t)(v >> 24), c->id[2] = (uint8_t)(v >> 16);
        c->id[3] = (uint8_t)(v >> 8), c->id[4] = (uint8_t)v;
        c->id_len = 5;
    } while (by_id(zs, c->id, 5));
insert:
    if (rc_htab_insert(&zs->ids, &c->by_id, rc_hash(c->id, c->id_len)) == 0) c->in_ids = true;
}

static bool sub_add(rc_zms *zs, zconn *c, const uint8_t *t, size_t len)
{
    if (len > UINT16_MAX) { /* only without a frame limit; nothing would match it anyway */
        conn_kill(c, RC_ZMS_GONE_TOO_BIG);
        return false;
    }
    if (c->nsubs >= zs->max_subs) {
        conn_kill(c, RC_ZMS_GONE_SUB_LIMIT);
        return false;
    }
    if (c->nsubs == c->capsubs) {
        uint32_t cap = c->capsubs ? c->capsubs * 2 : 2;
        zsub *n = realloc(c->subs, cap * sizeof(*n));
        if (!n) return false;
        c->subs = n;
        c->capsubs = cap;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return false;
    if (len) memcpy(copy, t, len);
    c->subs[c->nsubs++] = (zsub){(uint16_t)len, copy};
    return true;
}

static void sub_remove(zconn *c, const uint8_t *t, size_t len)
{
    for (uint32_t i = 0; i < c->nsubs; i++)
        if (c->subs[i].len == len && memcmp(c->subs[i].topic, t, len) == 0) {
            free(c->subs[i].topic);
            c->subs[i] = c->subs[--c->nsubs];
            return;
        }
}

/* subscription applies one (un)subscription of a PUB's peer; false when c ended. */
static bool subscription(rc_zms *zs, zconn *c, bool on, const uint8_t *t, size_t len)
{
    if (on) {
        zs->st.subscribes++;
        if (!sub_add(zs, c, t, len)) return !c->dead;
    } else {
        zs->st.cancels++;
        sub_remove(c, t, len);
    }
    if (zs->on_sub) zs->on_sub(zs, c->serial, on, t, len, zs->arg);
    return !c->dead;
}

static void on_handshake_timeout(rc_loop *loop, rc_timer *t)
{
    zconn *c = container_of(t, zconn, handshake);
    rc_zms *zs = c->zs;
    conn_kill(c, RC_ZMS_GONE_HANDSHAKE);
    reap(zs);
}

/* greet sends the next steps of our greeting that the peer's bytes so far allow (libzmq's
 * order: signature at once, the major version after the peer's signature, the rest after its
 * major version). */
static void greet(rc_zms *zs, zconn *c, size_t have)
{
    if (c->greet_sent == 10 && have >= 10) {
        queue(c, zs->greet[1]);
        c->greet_sent = 11;
    }
    if (c->greet_sent == 11 && have >= 11) {
        queue(c, zs->greet[2]);
        c->greet_sent = RC_ZMTP_GREETING_LEN;
    }
}

static void deliver(rc_zms *zs, zconn *c, const uint8_t *p, size_t len, const rc_zmtp_item *it)
{
    if (zs->type != RC_ZMTP_T_ROUTER) {
        /* a SUB's message: 3.0 subscriptions, first byte 1/0 (libzmq reads every part so) */
        rc_zmtp_part parts[8];
        size_t n = rc_zmtp_parts(p, len, parts, 8);
        bool any = false;
        for (size_t i = 0; i < n && !c->dead; i++)
            if (parts[i].len >= 1 && parts[i].data[0] <= 1) {
                any = true;
                subscription(zs, c, parts[i].data[0] == 1, parts[i].data + 1, parts[i].len - 1);
            }
        if (!any) zs->st.ignored++;
        return;
    }
    if (it->bytes > zs->max_bytes) {
        zs->st.dropped_bytes++;
        return;
    }
    size_t want = zs->max_frames - 1;
    size_t n = 0, i = 0;
    while (i < len && n < want) {
        rc_zmtp_frame f;
        if (rc_zmtp_frame_parse(p + i, len - i, 0, &f) <= 0) break;
        zs->frames[1 + n] = (rc_zframe){p + i + f.header_len, (size_t)f.len};
        i += f.header_len + (size_t)f.len;
        n++;
    }
    zs->frames[0] = (rc_zframe){c->id, c->id_len};
    rc_zmsg m = {.f = zs->frames, .n = 1 + n, .nparts = 1 + it->nframes, .bytes = it->bytes,
                 .wire = len, .fd = c->io.fd, .conn = c->serial};
    zs->st.msgs_in++;
    zs->st.bytes_in += it->bytes;
    zs->on_msg(zs, &m, zs->arg);
}

/* handle acts on one unit p[0..len) of c; false when c ended. */
static bool handle(rc_zms *zs, zconn *c, const uint8_t *p, size_t len, const rc_zmtp_item *it)
{
    switch (it->kind) {
    case RC_ZMTP_I_GREETING:
        queue(c, zs->ready);
        return true;
    case RC_ZMTP_I_READY:
        c->ready = true;
        rc_timer_stop(zs->loop, &c->handshake);
        if (zs->type == RC_ZMTP_T_ROUTER) set_id(zs, c, it->peer.identity, it->peer.identity_len);
        return !c->dead;
    case RC_ZMTP_I_COMMAND:
        switch (it->cmd.kind) {
        case RC_ZMTP_CMD_PING: {
            uint8_t pong[RC_ZMTP_PONG_MAX];
            size_t n = rc_zmtp_pong_encode(pong, sizeof pong, it->cmd.data, it->cmd.len);
            queue_copy(c, pong, n);
            zs->st.pings++;
            return true;
        }
        case RC_ZMTP_CMD_ERROR:
            fail(c, RC_ZMTP_E_PEER_ERROR);
            return false;
        case RC_ZMTP_CMD_SUBSCRIBE:
        case RC_ZMTP_CMD_CANCEL:
            if (zs->type == RC_ZMTP_T_ROUTER) {
                zs->st.ignored++;
                return true;
            }
            return subscription(zs, c, it->cmd.kind == RC_ZMTP_CMD_SUBSCRIBE, it->cmd.data,
                                it->cmd.len);
        default: /* PONG (we never PING), unknown commands */
            zs->st.ignored++;
            return true;
        }
    case RC_ZMTP_I_MESSAGE:
        deliver(zs, c, p, len, it);
        return !c->dead;
    }
    return true;
}

/* parse handles every complete unit of p[0..n), c's unconsumed input; returns the bytes
 * consumed, or SIZE_MAX when c ended. */
static size_t parse(rc_zms *zs, zconn *c, const uint8_t *p, size_t n)
{
    if (c->rd.stage == RC_ZMTP_S_GREETING) {
        /* our greeting goes out step by step as the peer's valid bytes come in */
        rc_zmtp_greeting g;
        int rc = rc_zmtp_greeting_parse(p, n, &g);
        if (rc < 0) {
            fail(c, -rc);
            return SIZE_MAX;
        }
        greet(zs, c, n);
    }
    size_t off = 0;
    for (;;) {
        rc_zmtp_item it;
        long rc = rc_zmtp_read(&c->rd, p + off, n - off, &it);
        if (rc == 0) return off;
        if (rc < 0) {
            fail(c, (int)-rc);
            return SIZE_MAX;
        }
        if (!handle(zs, c, p + off, (size_t)rc, &it)) return SIZE_MAX;
        off += (size_t)rc;
    }
}

static bool reserve(zconn *c, size_t need)
{
    if (c->in_cap - c->in_len >= need) return true;
    size_t cap = c->in_cap ? c->in_cap : 4096;
    while (cap - c->in_len < need) cap *= 2;
    uint8_t *n = realloc(c->in, cap);
    if (!n) return false;
    c->in = n;
    c->in_cap = cap;
    return true;
}

/* conn_read reads what c has sent. A connection with no partial unit pending reads into the
 * socket's shared buffer and keeps only what is left of an unfinished unit: an idle
 * connection holds no input buffer at all (at C10K a private 64 KiB each would be 640 MB). */
static void conn_read(rc_zms *zs, zconn *c)
{
    for (int i = 0; i < READS_PER_WAKE && !c->dead; i++) {
        uint8_t *buf;
        size_t room;
        bool shared = c->in_len == 0;
        if (shared) {
            buf = zs->rbuf;
            room = RBUF_SIZE;
        } else {
            if (!reserve(c, RBUF_SIZE / 4)) {
                conn_kill(c, RC_ZMS_GONE_ERROR);
                return;
            }
            buf = c->in;
            room = c->in_cap - c->in_len;
        }
        ssize_t r = read(c->io.fd, buf + (shared ? 0 : c->in_len), room);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (r <= 0) {
            /* a peer leaving before its READY failed its handshake (libzmq says so too) */
            conn_kill(c, !c->ready                          ? RC_ZMS_GONE_HANDSHAKE
                         : r == 0 || errno == ECONNRESET ? RC_ZMS_GONE_PEER
                                                         : RC_ZMS_GONE_ERROR);
            return;
        }
        zs->st.wire_in += (size_t)r;
        size_t have = (shared ? 0 : c->in_len) + (size_t)r;
        size_t used = parse(zs, c, buf, have);
        if (used == SIZE_MAX) return;
        size_t left = have - used;
        if (shared) {
            if (left && !reserve(c, left)) {
                conn_kill(c, RC_ZMS_GONE_ERROR);
                return;
            }
            if (left) memcpy(c->in, buf + used, left);
        } else if (used) {
            memmove(c->in, c->in + used, left);
        }
        c->in_len = left;
        if (!left && c->in) { /* nothing pending: give the buffer back */
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
        if ((size_t)r < room) return; /* the kernel had no more */
    }
}

static void conn_write(rc_zms *zs, zconn *c)
{
    ssize_t w = rc_outq_flush(&c->out, c->io.fd);
    if (w < 0) {
        conn_kill(c, w == -EPIPE || w == -ECONNRESET ? RC_ZMS_GONE_PEER : RC_ZMS_GONE_ERROR);
        return;
    }
    zs->st.wire_out += (uint64_t)w;
    bool pending = c->out.count > 0;
    if (pending != c->writing) {
        c->writing = pending;
        rc_io_set(zs->loop, &c->io, RC_EV_READ | (pending ? RC_EV_WRITE : 0));
    }
    if (!pending) rc_outq_shrink(&c->out);
}

static void on_conn_io(rc_loop *loop, rc_io *io, uint32_t events)
{
    zconn *c = container_of(io, zconn, io);
    rc_zms *zs = c->zs;
    if (events & RC_EV_WRITE) conn_write(zs, c);
    if (!c->dead && (events & (RC_EV_READ | RC_EV_ERROR | RC_EV_HANGUP))) conn_read(zs, c);
    if (zs->on_drained) zs->on_drained(zs, zs->arg);
    reap(zs);
}

static void on_flush(rc_loop *loop, rc_timer *t)
{
    rc_zms *zs = container_of(t, rc_zms, flush);
    zconn *c = zs->flush_list;
    zs->flush_list = NULL;
    while (c) {
        zconn *next = c->next_flush;
        c->flushing = false;
        if (!c->dead && !c->writing) conn_write(zs, c);
        c = next;
    }
    reap(zs);
}

/* ---- accepting --------------------------------------------------------------------------- */

/* refuse closes a connection just accepted, before a byte either way: ZMTP has no message
 * for "not now" before the greeting (a libzmq peer sees the connection end and reconnects
 * after its reconnect interval). */
static void refuse(rc_zms *zs, int fd)
{
    zs->st.gone[RC_ZMS_GONE_LIMIT]++;
    close(fd);
    if (zs->on_gone) zs->on_gone(zs, 0, RC_ZMS_GONE_LIMIT, zs->arg);
}

static void on_accept(rc_loop *loop, rc_io *io, uint32_t events)
{
    rc_zms *zs = container_of(io, rc_zms, lio);
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        struct sockaddr_storage sa;
        int fd = rc_sock_accept(io->fd, &sa);
        if (fd < 0) {
            if (fd != -EAGAIN && fd != -EINTR) rc_warn("%s: accept: %s", zs->name, strerror(-fd));
            break;
        }
        zs->st.accepted++;
        if (zs->max_conns && zs->st.live >= zs->max_conns) {
            refuse(zs, fd);
            continue;
        }
        zconn *c = calloc(1, sizeof(*c));
        if (!c) {
            zs->st.gone[RC_ZMS_GONE_ERROR]++;
            close(fd);
            continue;
        }
        c->peer = rc_ipkey_of((const struct sockaddr *)&sa);
        rc_zms_admission adm = {0};
        if (zs->gate.admit && !zs->gate.admit(zs->gate.arg, &c->peer, &adm)) {
            free(c);
            refuse(zs, fd);
            continue;
        }
        c->gated = zs->gate.admit != NULL;
        c->token = adm.token;
        c->zs = zs;
        c->serial = ++zs->last_serial;
        rc_zmtp_reader_init(&c->rd, zs->type, &zs->lim);
        rc_io_init(&c->io, fd, on_conn_io);
        rc_timer_init(&c->handshake, on_handshake_timeout);
        if (rc_io_start(loop, &c->io, RC_EV_READ) < 0) {
            zs->st.gone[RC_ZMS_GONE_ERROR]++;
            close(fd);
            if (c->gated) zs->gate.release(zs->gate.arg, &c->peer, c->token);
            free(c);
            continue;
        }
        rc_htab_insert(&zs->serials, &c->by_serial, serial_hash(c->serial));
        c->next = zs->conns;
        if (zs->conns) zs->conns->prev = c;
        zs->conns = c;
        zs->st.live++;
        uint64_t hs = adm.handshake_ns ? adm.handshake_ns : zs->handshake_ns;
        rc_timer_start(loop, &c->handshake, rc_loop_now(loop) + hs);
        queue(c, zs->greet[0]);
        c->greet_sent = RC_ZMTP_SIGNATURE_LEN;
        if (zs->on_accept) zs->on_accept(zs, c->serial, zs->arg);
    }
    reap(zs);
}

/* ---- API --------------------------------------------------------------------------------- */

rc_zms *rc_zms_new(rc_loop *loop, const rc_zms_opts *o)
{
    rc_zms *zs = calloc(1, sizeof(*zs));
    if (!zs) return NULL;
    zs->loop = loop;
    zs->type = o->type == RC_ZMTP_T_ROUTER ? RC_ZMTP_T_ROUTER : RC_ZMTP_T_PUB;
    zs->name = o->name ? o->name : "zeromq";
    zs->max_frames = o->max_frames ? o->max_frames : 64;
    zs->max_bytes = o->max_bytes ? o->max_bytes : 1024 * 1024;
    zs->out_cap = o->out_cap ? o->out_cap : 4 * 1024 * 1024;
    zs->max_conns = o->max_conns;
    zs->max_subs = o->max_subs ? o->max_subs : 64;
    zs->handover = o->handover;
    zs->handshake_ns = o->handshake_ns ? o->handshake_ns : 30 * RC_NS_PER_SEC;
    if (o->gate.admit && o->gate.release) zs->gate = o->gate;
    zs->on_msg = o->on_msg;
    zs->on_sub = o->on_sub;
    zs->on_accept = o->on_accept;
    zs->on_gone = o->on_gone;
    zs->on_drained = o->on_drained;
    zs->arg = o->arg;
    /* The reader bounds what a connection's buffer holds: the payload limit, one frame more
     * (a message somewhat over the limit is read whole, then dropped and counted, as rc_zsock
     * does; one grossly over it ends the connection at the header that passes this), and the
     * frame headers (9 bytes at most each; with truncate, up to 64 more than kept). */
    size_t hdr_frames = zs->max_frames + (o->truncate ? 64 : 0);
    zs->lim = (rc_zmtp_limits){.max_frame = o->max_frame,
                               .max_frames = zs->max_frames > 2 ? zs->max_frames - 1 : 1,
                               .max_bytes = zs->max_bytes + o->max_frame + 9 * hdr_frames + 64};
    /* with truncate, and on a PUB (a SUB's frames are only looked at), no frame count limit:
     * max_bytes still bounds them */
    if (o->truncate || zs->type != RC_ZMTP_T_ROUTER) zs->lim.max_frames = 0;
    rc_io_init(&zs->lio, -1, on_accept);
    rc_timer_init(&zs->flush, on_flush);
    uint32_t seed = 0;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed)) seed = (uint32_t)rc_clock_ns();
    zs->next_id = seed;

    uint8_t g[RC_ZMTP_GREETING_LEN], r[RC_ZMTP_READY_MAX];
    rc_zmtp_greeting_encode(g);
    size_t rl = rc_zmtp_ready_encode(r, sizeof r, zs->type);
    zs->frames = malloc(zs->max_frames * sizeof(*zs->frames));
    zs->rbuf = malloc(RBUF_SIZE);
    zs->greet[0] = rc_msg_copy(g, 10);
    zs->greet[1] = rc_msg_copy(g + 10, 1);
    zs->greet[2] = rc_msg_copy(g + 11, RC_ZMTP_GREETING_LEN - 11);
    zs->ready = rc_msg_copy(r, rl);
    if (!zs->frames || !zs->rbuf || !zs->greet[0] || !zs->greet[1] || !zs->greet[2] || !zs->ready) goto err;

    const char *addr = !o->bind || strcmp(o->bind, "*") == 0 ? "0.0.0.0" : o->bind;
    int fd = rc_sock_listen(addr, o->port, 1024, &zs->port);
    bool v6 = strchr(addr, ':') != NULL;
    snprintf(zs->endpoint, sizeof(zs->endpoint), v6 ? "tcp://[%s]:%u" : "tcp://%s:%u", addr,
             zs->port);
    if (fd < 0) {
        char ep[300];
        snprintf(ep, sizeof(ep), v6 ? "tcp://[%s]:%u" : "tcp://%s:%u", addr, o->port);
        rc_error("cannot bind %s '%s': %s", zs->name, ep, strerror(-fd));
        goto err;
    }
    rc_io_init(&zs->lio, fd, on_accept);
    if (rc_io_start(loop, &zs->lio, RC_EV_READ) < 0) {
        close(fd);
        zs->lio.fd = -1;
        rc_error("cannot watch the %s socket", zs->name);
        goto err;
    }
    return zs;
err:
    rc_zms_free(zs);
    return NULL;
}

void rc_zms_free(rc_zms *zs)
{
    if (!zs) return;
    zs->on_gone = NULL;
    while (zs->conns) conn_kill(zs->conns, RC_ZMS_GONE_CUT);
    for (zconn *c = zs->flush_list; c; c = c->next_flush) c->flushing = false;
    zs->flush_list = NULL;
    reap(zs);
    rc_timer_stop(zs->loop, &zs->flush);
    if (zs->lio.fd >= 0) {
        rc_io_stop(zs->loop, &zs->lio);
        close(zs->lio.fd);
    }
    rc_htab_release(&zs->serials);
    rc_htab_release(&zs->ids);
    for (int i = 0; i < 3; i++)
        if (zs->greet[i]) rc_msg_unref(zs->greet[i]);
    if (zs->ready) rc_msg_unref(zs->ready);
    free(zs->frames);
    free(zs->rbuf);
    free(zs);
}

/* encode builds one message holding the frames f[from..n) in ZMTP framing. */
static rc_msg *encode(const rc_zframe *f, size_t from, size_t n, size_t *payload)
{
    size_t total = 0, bytes = 0;
    for (size_t i = from; i < n; i++) {
        total += rc_zmtp_header_size(f[i].len) + f[i].len;
        bytes += f[i].len;
    }
    rc_msg *m = rc_msg_new(total);
    if (!m) return NULL;
    uint8_t *p = (uint8_t *)m->data;
    for (size_t i = from; i < n; i++) {
        p += rc_zmtp_frame_header(p, f[i].len, i + 1 < n ? RC_ZMTP_MORE : 0);
        if (f[i].len) memcpy(p, f[i].data, f[i].len);
        p += f[i].len;
    }
    *payload = bytes;
    return m;
}

int rc_zms_send(rc_zms *zs, const rc_zframe *f, size_t n)
{
    if (n < 2 || zs->type != RC_ZMTP_T_ROUTER) return -EINVAL;
    zconn *c = f[0].len <= RC_ZMTP_IDENTITY_MAX ? by_id(zs, f[0].data, f[0].len) : NULL;
    if (!c || c->dead) {
        zs->st.send_unreachable++;
        return -EHOSTUNREACH;
    }
    if (c->out.bytes >= zs->out_cap) {
        zs->st.send_again++;
        return -EAGAIN;
    }
    size_t bytes;
    rc_msg *m = encode(f, 1, n, &bytes);
    if (!m) return -ENOMEM;
    int rc = queue(c, m);
    rc_msg_unref(m);
    if (rc < 0) return rc;
    zs->st.msgs_out++;
    zs->st.bytes_out += bytes;
    return 0;
}

static bool subscribed(const zconn *c, const uint8_t *t, size_t len)
{
    for (uint32_t i = 0; i < c->nsubs; i++)
        if (c->subs[i].len <= len && memcmp(c->subs[i].topic, t, c->subs[i].len) == 0)
            return true;
    return false;
}

long rc_zms_publish(rc_zms *zs, const rc_zframe *f, size_t n)
{
    if (n < 1 || zs->type == RC_ZMTP_T_ROUTER) return -EINVAL;
    rc_msg *m = NULL;
    size_t bytes = 0;
    long sent = 0;
    for (zconn *c = zs->conns; c; c = c->next) {
        if (!c->ready || !c->nsubs || !subscribed(c, f[0].data, f[0].len)) continue;
        if (c->out.bytes >= zs->out_cap) {
            zs->st.pub_dropped++;
            continue;
        }
        if (!m && !(m = encode(f, 0, n, &bytes))) return -ENOMEM;
        if (queue(c, m) < 0) continue;
        zs->st.msgs_out++;
        zs->st.bytes_out += bytes;
        sent++;
    }
    if (m) rc_msg_unref(m);
    return sent;
}

bool rc_zms_cut(rc_zms *zs, uint64_t conn, enum rc_zms_gone why)
{
    zconn *c = by_serial(zs, conn);
    if (!c || c->dead) return false;
    conn_kill(c, why);
    return true;
}

bool rc_zms_conn_live(const rc_zms *zs, uint64_t conn)
{
    const zconn *c = conn ? by_serial(zs, conn) : NULL;
    return c && !c->dead;
}

uint16_t rc_zms_port(const rc_zms *zs) { return zs->port; }
const char *rc_zms_endpoint(const rc_zms *zs) { return zs->endpoint; }
const rc_zms_stats *rc_zms_stats_of(const rc_zms *zs) { return &zs->st; }
