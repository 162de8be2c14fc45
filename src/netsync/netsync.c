/* netsync.c — ZeroMQ ROUTER/PUB on roomcast's loop, the tick, and the public API; see
 * netsync.h. */
#include "netsync/netsync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "core/log.h"
#include "netsync/nsdisc.h"
#include "netsync/nsident.h"
#include "netsync/ns8room.h"
#include "codec/ns8proto.h"
#include "netsync/nspeers.h"
#include "transport/zmtpsock.h"
#include "transport/zsock.h"
#include "codec/utf8.h"

#define container_of(p, T, m) ((T *)(void *)((char *)(p) - offsetof(T, m)))

/* Messages handled per wake-up before yielding to the rest of the loop (libuv does the same
 * with 32 reads per stream); a zero-delay timer continues the drain. */
#define NSY_DRAIN_BUDGET 2048

/* Input is drained at most once per NSY_COALESCE_NS: an edge on the ROUTER's ZMQ_FD that comes
 * sooner arms the ROUTER's `more` timer for the end of the window instead. Each client's transforms arrive
 * one by one, so draining on every edge meant a wake-up of this thread (epoll_wait, the
 * mailbox eventfd, ZMQ_EVENTS) and an eventfd write by libzmq's I/O thread per message;
 * while the window is open libzmq queues its commands without signalling, so both threads
 * wake at most once per window. It adds at most this much to a message's latency; it is not
 * a polling timer (armed only by an edge, idle when no input arrives). */
#ifndef NSY_COALESCE_NS
#define NSY_COALESCE_NS (1 * RC_NS_PER_MS)
#endif

/* A client-variable set waiting for its device to join (REST bridge). */
typedef struct nsy_pending {
    struct nsy_pending *next;
    uint64_t at;                 /* loop ns when queued */
    uint8_t room_len, dev_len, name_len;
    uint32_t value_len;
    uint8_t *room, *dev, *name, *value; /* point into the same allocation, after the struct */
} nsy_pending;

#define NSY_PENDING_MAX 4096
#define NSY_PENDING_TTL (60 * RC_NS_PER_SEC)

/* One uplink ROUTER: the control one ([identity][roomId][payload] up, unicast down) or the
 * pose one (protocol 8's transform lane, uplink only). The socket, its drain, coalescing and
 * edge rules are rc_zsock's (src/transport/zsock.h); nspeers adds its own monitor and ZAP
 * barrier through zsock's configure hook. */
typedef struct nsy_router {
    rc_netsync *ns;              /* owner */
    rc_zsock *zs;                /* the ROUTER on the loop (libzmq engine), or NULL */
    rc_zms *zn;                  /* the ROUTER on the loop (native engine), or NULL */
    enum nsy_sock sock;          /* which socket, for nspeers */
    enum nsy_lane lane;          /* which lane its messages are */
} nsy_router;

struct rc_netsync {
    rc_loop *loop;               /* not owned */
    void *zctx;                  /* ZeroMQ context (one I/O thread; libzmq engine only) */
    bool native;                 /* --zmq-engine native: the sockets are rc_zms
                                    (transport/zmtpsock.h), no libzmq, no nspeers */
    rc_zms *npub;                /* native engine: the PUB */
    rc_zms_gate gate;            /* native engine: the server's connection limits (opts) */
    nsy_router ctl;              /* control ROUTER */
    nsy_router pose;             /* pose ROUTER */
    void *pub;                   /* downlink: [roomId][payload]; an XPUB (see pub_drain) */
    rc_io pub_io;                /* the PUB's ZMQ_FD: subscriptions and pipe commands */
    rc_timer tick;               /* the broadcast tick, armed while any room exists */
    rc_timer pub_more;           /* continues a drain of the PUB (budget used up) */
    rc_timer uc_retry;           /* back-off retry of blocked unicast peers */
    rc_timer ident_sweep;        /* expires routing-identity records, while any exist */
    uint64_t uc_backoff;         /* current back-off of uc_retry, ns */
    uint64_t tick_ns;            /* tick period */
    size_t max_message;          /* largest ROUTER message, bytes (frames after the room id) */
    nsy_peers peers;             /* the sockets' connections: size limits, why they end */
    uint16_t pub_port;
    nsy_idents idents;           /* routing-identity records and unicast queues */
    nsr8_rooms rooms8;           /* protocol 8's rooms */
    nsr8_stats st8;              /* their counters */
    rc_timer tick8;              /* their timer: armed at nsr8_next_deadline */
    nsy_disc disc;                /* discovery sockets */
    nsy_rooms rooms;              /* the rooms */
    rc_netsync_stats st;         /* counters */
    nsy_pending *pending;         /* queued client-variable sets, oldest first */
    size_t npending;
};

static void apply_pending(rc_netsync *ns, uint64_t now);

void rc_netsync_opts_default(rc_netsync_opts *o)
{
    *o = (rc_netsync_opts){
        .bind = "127.0.0.1",
        .router_port = 5555,
        .pose_port = 5557,
        .unicast_max_bytes = RC_NETSYNC_UNICAST_MAX_BYTES_DEFAULT,
        .pub_port = 5556,
        .discovery_port = 9999,
        .tick_ns = 50 * RC_NS_PER_MS,
        .idle_ns = 500 * RC_NS_PER_MS,
        .client_timeout_ns = RC_NS_PER_SEC,
        .mapping_ns = RC_NS_PER_SEC,
        .server_name = "STYLY-NetSync-Server",
        .max_message_size = RC_NETSYNC_MAX_MESSAGE_DEFAULT,
        .engine = RC_ZMQ_ENGINE_DEFAULT,
    };
}

/* ---- output ------------------------------------------------------------------------------ */

/* The PUB socket never blocks: at its high-water mark it drops for that subscriber, which is
 * the reference's behaviour too. DONTWAIT only makes that explicit. */
static void zpublish(void *arg, const uint8_t *topic, size_t tlen, const uint8_t *msg,
                     size_t len)
{
    rc_netsync *ns = arg;
    if (ns->native) {
        rc_zframe f[2] = {{topic, tlen}, {msg, len}};
        if (rc_zms_publish(ns->npub, f, 2) < 0) ns->st.publish_errors++;
        return;
    }
    nsy_peers_pub_begin(&ns->peers);
    bool failed = zmq_send(ns->pub, topic, tlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
                  zmq_send(ns->pub, msg, len, ZMQ_DONTWAIT) < 0;
    nsy_peers_pub_end(&ns->peers);
    if (failed) ns->st.publish_errors++;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

/* version_reply answers a client of an unsupported protocol version with what makes its
 * version check fail clearly: a DEVICE_ID_MAPPING carrying roomcast's server version and no
 * devices (v0.8+ clients compare major.minor on their first mapping and disconnect with a
 * version error, spec v8 §4.3; they take control downlink from the ROUTER, §9). At most one
 * per identity per RC_NETSYNC_VERSION_REPLY_NS: such a client keeps sending. */
static void version_reply(rc_netsync *ns, nsy_ident *r, const uint8_t *ident, size_t ident_len,
                          const uint8_t *room, size_t room_len, uint64_t now)
{
    if (!r || (r->last_reply && now - r->last_reply < RC_NETSYNC_VERSION_REPLY_NS)) return;
    if (room_len > NSY_STR8_MAX) return;
    r->last_reply = now;
    static const uint8_t mapping[] = {6, RC_NETSYNC_SERVER_MAJOR, RC_NETSYNC_SERVER_MINOR,
                                      RC_NETSYNC_SERVER_PATCH, 0, 0}; /* u16 count 0 */
    if (rc_netsync_unicast(ns, ident, ident_len, room, room_len, mapping, sizeof(mapping)) == 0)
        ns->st.version_replies++;
}

static void arm_tick8(rc_netsync *ns);

/* The v0.6 message types (spec v0.6 §3): an identity known to speak v0.6 sends these straight
 * to the v0.6 path, which keeps the reference's leniencies (a final string may overrun,
 * trailing bytes are ignored) that the strict classifier would refuse. */
static bool v06_type(uint8_t t) { return t >= 1 && t <= 10; }

/* A room id is used by one generation at a time (docs/netsync.md, "One room, one
 * generation"): v0.6 clients take their mappings, RPCs and variables from the PUB topic that
 * is the room id, and a v8 client on that topic would take them for its own (Unity feeds the
 * last payload of the room's topic to its v8 deserializer: a v0.6 DEVICE_ID_MAPPING read as
 * a v8 one fails its version check). So while a room has members of one generation, messages
 * of the other for that room id are dropped and counted (generation_conflict). */
static bool v06_in_use(const rc_netsync *ns, const uint8_t *room, size_t len)
{
    const nsy_room *r = nsy_room_find(&ns->rooms, room, len);
    return r && r->nlive > 0;
}

static bool v8_in_use(rc_netsync *ns, const uint8_t *room, size_t len)
{
    const nsr8_room *r = nsr8_room_find(&ns->rooms8, room, len);
    return r && r->npresent > 0;
}

/* ---- connections, whichever engine ------------------------------------------------------ */

static rc_zms *native_sock(const rc_netsync *ns, enum nsy_sock s)
{
    return s == NSY_SOCK_ROUTER ? ns->ctl.zn : s == NSY_SOCK_POSE ? ns->pose.zn : ns->npub;
}

/* conn_live says whether connection serial conn (last seen on descriptor fd) of socket s is
 * still open: the native sockets know exactly, libzmq's are followed by nspeers. */
static bool conn_live(const rc_netsync *ns, enum nsy_sock s, int fd, uint64_t conn)
{
    if (!conn) return false;
    if (ns->native) return rc_zms_conn_live(native_sock(ns, s), conn);
    return nsy_peers_serial(&ns->peers, s, fd) == conn;
}

/* cut_conn disconnects that connection for why (TOO_BIG or SLOW). */
static void cut_conn(rc_netsync *ns, enum nsy_sock s, int fd, uint64_t conn, enum nsy_gone why)
{
    if (ns->native)
        rc_zms_cut(native_sock(ns, s), conn, why == NSY_GONE_SLOW ? RC_ZMS_GONE_SLOW
                                                                  : RC_ZMS_GONE_CUT);
    else
        nsy_peers_cut(&ns->peers, s, fd, why);
}

/* The native sockets' connection counters, in nspeers' terms (nsstats.h). A connection cut by
 * NetSync itself (CUT) was cut for its size, and the drop is counted where it was cut. */
static void native_accepted(rc_netsync *ns, enum nsy_sock s) { ns->st.peers[s]++; }

/* conn 0: a connection refused at accept (the server's gate: --connections-per-ip,
 * --max-connections), never counted as open. */
static void native_gone(rc_netsync *ns, enum nsy_sock s, uint64_t conn, enum rc_zms_gone why)
{
    if (!conn) {
        ns->st.peers_gone[s][NSY_GONE_LIMIT]++;
        return;
    }
    static const enum nsy_gone map[RC_ZMS_GONE__COUNT] = {
        [RC_ZMS_GONE_PEER] = NSY_GONE_PEER,         [RC_ZMS_GONE_HANDSHAKE] = NSY_GONE_HANDSHAKE,
        [RC_ZMS_GONE_PROTOCOL] = NSY_GONE_PROTOCOL, [RC_ZMS_GONE_TOO_BIG] = NSY_GONE_TOO_BIG,
        [RC_ZMS_GONE_SUB_LIMIT] = NSY_GONE_SUB_LIMIT, [RC_ZMS_GONE_SLOW] = NSY_GONE_SLOW,
        [RC_ZMS_GONE_CUT] = NSY_GONE_TOO_BIG,       [RC_ZMS_GONE_LIMIT] = NSY_GONE_LIMIT,
        [RC_ZMS_GONE_ERROR] = NSY_GONE_UNKNOWN,
    };
    if (ns->st.peers[s]) ns->st.peers[s]--;
    ns->st.peers_gone[s][map[why]]++;
    if (why == RC_ZMS_GONE_TOO_BIG)
        ns->st.dropped[s == NSY_SOCK_PUB ? NSY_DROP_SUB_TOO_BIG : NSY_DROP_TOO_BIG]++;
    else if (why == RC_ZMS_GONE_SUB_LIMIT)
        ns->st.dropped[NSY_DROP_SUB_LIMIT]++;
}

static void handle(rc_netsync *ns, nsy_router *rt, int srcfd, uint64_t conn,
                   const rc_zframe *parts, size_t nparts)
{
    enum nsy_lane lane = rt->lane;
    if (nparts < 3) {
        ns->st.dropped[NSY_DROP_TOO_FEW_FRAMES]++;
        return;
    }
    if (nparts > 3) ns->st.extra_frames++;
    const uint8_t *ident = parts[0].data, *room = parts[1].data;
    const uint8_t *p = parts[2].data;
    size_t ident_len = parts[0].len, room_len = parts[1].len;
    size_t n = parts[2].len;
    uint64_t now = rc_loop_now(ns->loop);
    if (lane == NSY_LANE_POSE) ns->st.pose_bytes_in += n; else ns->st.bytes_in += n;
    if (ident_len > NSY_ID_MAX) ident_len = NSY_ID_MAX; /* libzmq caps routing ids at 255 */
    /* NULL only when out of memory: the message is then classified on its own */
    nsy_ident *r = ident_len ? nsy_idents_touch(&ns->idents, lane, ident, ident_len, now) : NULL;
    if (r && !rc_timer_armed(&ns->ident_sweep))
        rc_timer_start(ns->loop, &ns->ident_sweep, now + RC_NETSYNC_IDENT_TTL_NS);
    if (r && ns->native) { /* exact: roomcast owns the connection */
        r->fd = srcfd;
        r->conn = conn;
    } else if (r && srcfd >= 0 && (r->fd != srcfd || !r->conn)) {
        r->fd = srcfd;
        r->conn = nsy_peers_serial(&ns->peers, rt->sock, srcfd);
    }
    enum ns8_lane l8 = lane == NSY_LANE_POSE ? NS8_LANE_TRANSFORM : NS8_LANE_CONTROL;
    if (n && lane == NSY_LANE_CONTROL && v06_type(p[0]) && r && r->gen == RC_NETSYNC_GEN_V06 &&
        p[0] != 1) {
        nsy_rooms_input(&ns->rooms, ident, ident_len, room, room_len, p, n, now);
        return;
    }
    ns8_class c;
    ns8_msg m;
    enum ns8_gen hint = !r ? NS8_GEN_INVALID
                        : r->gen == RC_NETSYNC_GEN_V06 ? NS8_GEN_V06
                        : r->gen == RC_NETSYNC_GEN_V8  ? NS8_GEN_V8
                                                       : NS8_GEN_INVALID;
    ns8_classify(l8, p, n, hint, &c, &m);
    switch (c.gen) {
    case NS8_GEN_V06:
        if (lane == NSY_LANE_POSE) {
            ns->st.dropped[NSY_DROP_WRONG_LANE]++; /* v0.6 has one lane, the control one */
            return;
        }
        if (r) r->gen = RC_NETSYNC_GEN_V06;
        if (v8_in_use(ns, room, room_len) && !v06_in_use(ns, room, room_len)) {
            ns->st.dropped[NSY_DROP_GENERATION]++;
            return;
        }
        nsy_rooms_input(&ns->rooms, ident, ident_len, room, room_len, p, n, now);
        return;
    case NS8_GEN_V8:
        ns->st.v8_in++;
        if (c.err == NS8_OK && v06_in_use(ns, room, room_len) && !v8_in_use(ns, room, room_len)) {
            if (r) r->gen = RC_NETSYNC_GEN_V8;
            ns->st.dropped[NSY_DROP_GENERATION]++;
            return;
        }
        if (c.err == NS8_OK) {
            if (r) r->gen = RC_NETSYNC_GEN_V8;
            nsr8_on_msg(&ns->rooms8, l8, ident, ident_len, room, room_len, &m, now);
        } else {
            nsr8_input(&ns->rooms8, l8, ident, ident_len, room, room_len, p, n, now); /* counts */
        }
        arm_tick8(ns);
        return;
    case NS8_GEN_UNSUPPORTED:
        if (r) {
            r->gen = RC_NETSYNC_GEN_UNSUPPORTED;
            r->version = c.version;
        }
        ns->st.unsupported[c.version]++;
        ns->st.dropped[NSY_DROP_UNSUPPORTED]++;
        /* only the control DEALER reads downlink: nothing to answer on the pose lane */
        if (lane == NSY_LANE_CONTROL)
            version_reply(ns, r, ident, ident_len, room, room_len, now);
        return;
    case NS8_GEN_INVALID:
        break;
    }
    if (n && lane == NSY_LANE_POSE && (c.err == NS8_E_LANE || v06_type(p[0]))) {
        ns->st.dropped[NSY_DROP_WRONG_LANE]++; /* the pose lane carries poses only */
        return;
    }
    if (n && lane == NSY_LANE_CONTROL && (v06_type(p[0]) || p[0] == 0 || p[0] > 19)) {
        /* what the v0.6 path always counted (unknown type, truncated, bad UTF-8, ...) it
         * still counts, by the same names */
        nsy_rooms_input(&ns->rooms, ident, ident_len, room, room_len, p, n, now);
        return;
    }
    if (n && p[0] >= 11 && p[0] <= 19) {
        ns->st.v8_in++;
        nsr8_input(&ns->rooms8, l8, ident, ident_len, room, room_len, p, n, now); /* counts */
        return;
    }
    ns->st.dropped[NSY_DROP_INVALID]++;
}

static void on_ident_sweep(rc_loop *loop, rc_timer *t)
{
    rc_netsync *ns = container_of(t, rc_netsync, ident_sweep);
    uint64_t now = rc_loop_now(loop);
    nsy_idents_expire(&ns->idents, now);
    if (ns->idents.oldest) /* the next record to reach its TTL */
        rc_timer_start(loop, t, ns->idents.oldest->last_seen + RC_NETSYNC_IDENT_TTL_NS);
}

/* ---- input ------------------------------------------------------------------------------- */

/* arm_tick points the tick timer at the earliest room that is due (input may have made a
 * quiet room due at once); never later than it already is. */
static void arm_tick(rc_netsync *ns)
{
    uint64_t wake = ns->rooms.wake, now = rc_loop_now(ns->loop);
    if (wake == UINT64_MAX) return;
    if (wake < now) wake = now;
    if (!rc_timer_armed(&ns->tick) || wake < rc_timer_due(&ns->tick))
        rc_timer_start(ns->loop, &ns->tick, wake);
}

static void pub_drain(rc_netsync *ns);

/* on_router_msg takes one message of a ROUTER (zsock drains until ZMQ_EVENTS shows no input,
 * NSY_DRAIN_BUDGET per wake-up, and delivers up to 3 frames: frames after the third are read
 * and dropped). libzmq limits each frame (ZMQ_MAXMSGSIZE) but not their number: a message
 * whose frames after the room id together exceed the limit is dropped here and its sender cut
 * off, as libzmq does for one frame (nspeers.h checks the messages that never end). */
static void router_msg(nsy_router *rt, const rc_zmsg *m)
{
    rc_netsync *ns = rt->ns;
    if (rt->lane == NSY_LANE_POSE) ns->st.pose_msgs_in++; else ns->st.msgs_in++;
    if (!ns->native) nsy_peers_read(&ns->peers, rt->sock, m->fd, m->wire);
    size_t bytes = m->nparts > 1 ? m->bytes - m->f[1].len : 0; /* after the room id */
    if (bytes > ns->max_message) {
        ns->st.dropped[NSY_DROP_TOO_BIG]++;
        cut_conn(ns, rt->sock, m->fd, m->conn, NSY_GONE_TOO_BIG);
        return;
    }
    handle(ns, rt, m->fd, m->conn, m->f, m->nparts);
}

static void on_router_msg(rc_zsock *zs, const rc_zmsg *m, void *arg) { router_msg(arg, m); }
static void on_native_msg(rc_zms *zs, const rc_zmsg *m, void *arg) { router_msg(arg, m); }

/* flush_unicast retries the peers whose queue met EAGAIN. libzmq's activate_write for a pipe
 * arrives through the control ROUTER's ZMQ_FD (so on_router gets here), but any call on the
 * socket may consume that edge first, so while peers stay blocked a back-off timer retries
 * too (1 ms doubling to 64 ms; a retry is one zmq_send per blocked peer). */
#define NSY_UC_BACKOFF_MIN (1 * RC_NS_PER_MS)
#define NSY_UC_BACKOFF_MAX (64 * RC_NS_PER_MS)

static void flush_unicast(rc_netsync *ns)
{
    if (!ns->idents.blocked) return;
    if (nsy_idents_flush(&ns->idents, NSY_DRAIN_BUDGET)) {
        ns->uc_backoff = 0;
        rc_timer_stop(ns->loop, &ns->uc_retry);
        return;
    }
    if (!rc_timer_armed(&ns->uc_retry)) {
        ns->uc_backoff = ns->uc_backoff ? ns->uc_backoff * 2 : NSY_UC_BACKOFF_MIN;
        if (ns->uc_backoff > NSY_UC_BACKOFF_MAX) ns->uc_backoff = NSY_UC_BACKOFF_MAX;
        rc_timer_start(ns->loop, &ns->uc_retry, rc_loop_now(ns->loop) + ns->uc_backoff);
    }
}

/* after_io follows every drain: what it did may have made rooms due, and every send it made
 * may have consumed a socket's edge (retry unicast, look at the PUB). */
static void after_io(rc_netsync *ns)
{
    arm_tick(ns);
    flush_unicast(ns);
    /* Publishing (an RPC, above, or the tick) lets libzmq process the PUB's commands, which
     * consumes its ZMQ_FD signal: look for subscriptions that came in meanwhile. */
    pub_drain(ns);
}

/* drain reads both ROUTERs now (after sends, which may have consumed their edges); every
 * drain ends in after_io (on_router_drained). False when a budget ran out. */
static bool drain(rc_netsync *ns)
{
    if (ns->native) return true; /* nothing hides behind a consumed edge */
    bool done = rc_zsock_drain(ns->ctl.zs);
    return rc_zsock_drain(ns->pose.zs) && done;
}

static void on_router_drained(rc_zsock *zs, void *arg)
{
    nsy_router *rt = arg;
    after_io(rt->ns);
}

static void on_uc_retry(rc_loop *loop, rc_timer *t)
{
    rc_netsync *ns = container_of(t, rc_netsync, uc_retry);
    flush_unicast(ns);
    /* the sends may have consumed the ROUTER's read edge */
    if (!ns->native) rc_zsock_look(ns->ctl.zs);
}

/* The PUB socket is an XPUB with ZMQ_XPUB_VERBOSER, which hands every subscription and cancel
 * ("\x01topic", "\x00topic") to roomcast and otherwise publishes exactly like a PUB (a SUB
 * accepts either). libzmq keeps every subscription in its trie whatever the owner does, so the
 * bound is per connection: nsy_peers_subscribed cuts a SUB beyond NSY_SUBS_PER_PEER live
 * subscriptions, which frees them (and nspeers' watchdog one that streams them). Its ZMQ_FD
 * also signals pending commands (new subscribers, closed pipes); receiving until there is
 * nothing processes them and clears the signal, which the level-triggered registration needs
 * to not spin. Every call on the PUB is within nsy_peers_pub_begin/end. pub_drain_budget reads
 * what is pending, budgeted like drain; false when some is left. */
static bool pub_drain_budget(rc_netsync *ns)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    bool done = false;
    for (int budget = NSY_DRAIN_BUDGET; budget > 0; budget--) {
        nsy_peers_pub_begin(&ns->peers);
        int rc = zmq_msg_recv(&m, ns->pub, ZMQ_DONTWAIT);
        nsy_peers_pub_end(&ns->peers);
        if (rc < 0) {
            done = true;
            break;
        }
        int fd = nsy_peers_srcfd(&m), more = zmq_msg_more(&m);
        const uint8_t *d = zmq_msg_data(&m);
        size_t n = zmq_msg_size(&m);
        uint64_t wire = nsy_frame_wire(n);
        bool sub = !more && n >= 1 && d[0] <= 1, on = sub && d[0] == 1;
        while (more) { /* an XSUB's message */
            nsy_peers_pub_begin(&ns->peers);
            rc = zmq_msg_recv(&m, ns->pub, ZMQ_DONTWAIT);
            nsy_peers_pub_end(&ns->peers);
            if (rc < 0) break;
            wire += nsy_frame_wire(zmq_msg_size(&m));
            more = zmq_msg_more(&m);
        }
        nsy_peers_read(&ns->peers, NSY_SOCK_PUB, fd, wire);
        if (sub) nsy_peers_subscribed(&ns->peers, fd, on);
    }
    zmq_msg_close(&m);
    if (!done && !rc_timer_armed(&ns->pub_more))
        rc_timer_start(ns->loop, &ns->pub_more, rc_loop_now(ns->loop));
    return done;
}

static void pub_drain(rc_netsync *ns)
{
    if (!ns->native && !rc_timer_armed(&ns->pub_more)) pub_drain_budget(ns);
}

static void on_pub(rc_loop *loop, rc_io *io, uint32_t events)
{
    pub_drain_budget(container_of(io, rc_netsync, pub_io));
}

static void on_pub_more(rc_loop *loop, rc_timer *t)
{
    pub_drain_budget(container_of(t, rc_netsync, pub_more));
}

/* Before a scan of nspeers' multipart check: every complete message must have been read, or
 * it would count as part of one in progress. A drain now replaces a coalescing wait. */
static bool flush_inputs(void *arg)
{
    rc_netsync *ns = arg;
    bool done = drain(ns);
    return done && !rc_timer_armed(&ns->pub_more);
}

static void on_tick(rc_loop *loop, rc_timer *t)
{
    rc_netsync *ns = container_of(t, rc_netsync, tick);
    uint64_t t0 = rc_clock_ns();
    if (ns->pending) apply_pending(ns, rc_loop_now(loop));
    nsy_rooms_tick(&ns->rooms, rc_loop_now(loop));
    uint64_t dt = rc_clock_ns() - t0;
    ns->st.ticks++;
    ns->st.tick_ns_last = dt;
    ns->st.tick_ns_total += dt;
    if (dt > ns->st.tick_ns_max) ns->st.tick_ns_max = dt;
    int b = 0;
    for (uint64_t lim = 16000; b < NSY_TICK_BUCKETS - 1 && dt > lim; lim *= 4) b++;
    ns->st.tick_hist[b]++;
    /* Each room keeps its own cadence (nsy_rooms_tick): consecutive broadcasts of a dirty room
     * are never closer than tick_ns (the reference's DIRTY_THRESHOLD) and never later. */
    arm_tick(ns);
    /* Publishing touched libzmq; check the ROUTER in case its read edge was consumed. */
    drain(ns);
}

/* ---- protocol 8's rooms ------------------------------------------------------------------ */

static void on_tick8(rc_loop *loop, rc_timer *t)
{
    rc_netsync *ns = container_of(t, rc_netsync, tick8);
    nsr8_tick(&ns->rooms8, rc_loop_now(loop));
    arm_tick8(ns);
    /* Sending touched libzmq; check the ROUTERs in case their read edges were consumed. */
    drain(ns);
}

/* arm_tick8 points the v8 timer at the rooms' next deadline (input may have brought it
 * forward: a new room's first broadcast goes out at once). */
static void arm_tick8(rc_netsync *ns)
{
    uint64_t wake = nsr8_next_deadline(&ns->rooms8), now = rc_loop_now(ns->loop);
    if (wake == UINT64_MAX) {
        rc_timer_stop(ns->loop, &ns->tick8);
        return;
    }
    if (wake < now) wake = now;
    if (!rc_timer_armed(&ns->tick8) || wake != rc_timer_due(&ns->tick8))
        rc_timer_start(ns->loop, &ns->tick8, wake);
}

static void v8_unicast(void *arg, const uint8_t *ident, size_t ident_len, const uint8_t *room,
                       size_t room_len, const uint8_t *payload, size_t len)
{
    rc_netsync_unicast(arg, ident, ident_len, room, room_len, payload, len);
}

static void v8_publish(void *arg, const uint8_t *topic, size_t topic_len, const uint8_t *payload,
                       size_t len)
{
    rc_netsync *ns = arg;
    zpublish(ns, topic, topic_len, payload, len);
    ns->st.msgs_out++;
    ns->st.bytes_out += topic_len + len;
}

/* The engine's "is this identity still there?" (the hijack rule, ns8room.h): per lane, from
 * the connection the identity's last message came over (nspeers' connection numbers). */
static bool v8_connected(void *arg, enum ns8_lane lane, const uint8_t *ident, size_t ident_len)
{
    rc_netsync *ns = arg;
    if (ident_len == 0 || ident_len > NSY_IDENT_MAX_LEN) return false;
    bool pose = lane == NS8_LANE_TRANSFORM;
    const nsy_ident *r = nsy_idents_find(&ns->idents, pose ? NSY_LANE_POSE : NSY_LANE_CONTROL,
                                         ident, ident_len);
    return r && conn_live(ns, pose ? NSY_SOCK_POSE : NSY_SOCK_ROUTER, r->fd, r->conn);
}

nsr8_rooms *rc_netsync_rooms8(rc_netsync *ns) { return &ns->rooms8; }
const nsr8_stats *rc_netsync_stats8(const rc_netsync *ns) { return &ns->st8; }

void rc_netsync_rooms8_changed(rc_netsync *ns)
{
    arm_tick8(ns);
    flush_unicast(ns);
}

/* ---- set-up ------------------------------------------------------------------------------ */

/* bind_socket opens the XPUB (the ROUTERs are rc_zsock, router_open; zsock sets
 * ROUTER_MANDATORY, which the unicast downlink needs: a send to an identity the ROUTER does
 * not know fails with EHOSTUNREACH, one to a full pipe with EAGAIN, and nsident.h keeps the
 * message and retries), caps and watches its input (nsy_peers_watch: before the
 * bind, which copies the options into the listener) and binds it. */
static void *bind_socket(rc_netsync *ns, int type, enum nsy_sock which, uint64_t limit,
                         const char *addr, uint16_t port, uint16_t *bound)
{
    void *s = zmq_socket(ns->zctx, type);
    if (!s) return NULL;
    int zero = 0, one = 1;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    bool v6 = strchr(addr, ':') != NULL;
    if (v6) zmq_setsockopt(s, ZMQ_IPV6, &one, sizeof(one));
    if (type == ZMQ_XPUB) {
        /* What libzmq queues for roomcast from one SUB while roomcast is not reading (a SUB
         * sends a subscription or two). It does not bound one read: libzmq applies
         * subscriptions in a loop that lasts while the peer keeps them coming (nspeers.h). */
        int hwm = NSY_SUBS_PER_PEER;
        zmq_setsockopt(s, ZMQ_XPUB_VERBOSER, &one, sizeof(one));
        zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    }
    if (nsy_peers_watch(&ns->peers, which, s, limit) < 0) {
        zmq_close(s);
        return NULL;
    }
    char ep[300], port_s[8];
    if (port)
        snprintf(port_s, sizeof(port_s), "%u", port);
    else
        snprintf(port_s, sizeof(port_s), "*");
    snprintf(ep, sizeof(ep), v6 ? "tcp://[%s]:%s" : "tcp://%s:%s", addr, port_s);
    if (zmq_bind(s, ep) < 0) {
        rc_error("cannot bind netsync '%s': %s", ep, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    char last[300];
    size_t sz = sizeof(last);
    if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, last, &sz) == 0) {
        const char *c = strrchr(last, ':');
        if (c) *bound = (uint16_t)atoi(c + 1);
    }
    return s;
}

static int watch(rc_netsync *ns, void *s, rc_io *io, rc_io_cb *cb, uint32_t events)
{
    int fd;
    size_t sz = sizeof(fd);
    if (zmq_getsockopt(s, ZMQ_FD, &fd, &sz) < 0) return -zmq_errno();
    rc_io_init(io, fd, cb);
    return rc_io_start(ns->loop, io, events);
}

/* zunicast is nsident's way to the control ROUTER: the identity frame is the one that
 * fails (EHOSTUNREACH, EAGAIN) under ROUTER_MANDATORY; once it is taken, the message is
 * libzmq's and the next frames cannot fail for want of room. */
static int zunicast(void *arg, const uint8_t *id, size_t id_len, const uint8_t *room,
                    size_t room_len, const uint8_t *p, size_t n)
{
    rc_netsync *ns = arg;
    rc_zframe f[3] = {{id, id_len}, {room, room_len}, {p, n}};
    return ns->native ? rc_zms_send(ns->ctl.zn, f, 3) : rc_zsock_send(ns->ctl.zs, f, 3);
}

/* slow_consumer cuts the connection a slow consumer last spoke on, if it is still that one. */
static void slow_consumer(void *arg, const nsy_ident *who)
{
    rc_netsync *ns = arg;
    if (conn_live(ns, NSY_SOCK_ROUTER, who->fd, who->conn))
        cut_conn(ns, NSY_SOCK_ROUTER, who->fd, who->conn, NSY_GONE_SLOW);
}

static void router_init(rc_netsync *ns, nsy_router *rt, enum nsy_sock sock, enum nsy_lane lane)
{
    *rt = (nsy_router){.ns = ns, .sock = sock, .lane = lane};
}

/* configure_router is zsock's hook before the bind: nspeers caps the frames and starts its
 * monitor and ZAP barrier (it must see the socket before it binds). */
static int configure_router(void *z, void *arg)
{
    nsy_router *rt = arg;
    return nsy_peers_watch(&rt->ns->peers, rt->sock, z, rt->ns->max_message);
}

static void on_native_drained(rc_zms *zs, void *arg)
{
    nsy_router *rt = arg;
    after_io(rt->ns);
}

static void on_native_accept(rc_zms *zs, uint64_t conn, void *arg)
{
    nsy_router *rt = arg;
    native_accepted(rt->ns, rt->sock);
}

static void on_native_gone(rc_zms *zs, uint64_t conn, enum rc_zms_gone why, void *arg)
{
    nsy_router *rt = arg;
    native_gone(rt->ns, rt->sock, conn, why);
}

static void on_pub_accept(rc_zms *zs, uint64_t conn, void *arg)
{
    native_accepted(arg, NSY_SOCK_PUB);
}

static void on_pub_gone(rc_zms *zs, uint64_t conn, enum rc_zms_gone why, void *arg)
{
    native_gone(arg, NSY_SOCK_PUB, conn, why);
}

/* Native engine: roomcast owns the connections, so what nspeers reconstructs around libzmq
 * is direct here — a frame over the limit is refused at its header, a message whose frames
 * pass the limit together is refused at the header that passes it (never buffered: the
 * buffer is bounded by the limit), subscriptions are counted per connection. */
static int native_open(rc_netsync *ns, nsy_router *rt, const char *addr, uint16_t port)
{
    rc_zms_opts zo = {
        .type = RC_ZMTP_T_ROUTER,
        .bind = addr,
        .port = port,
        .max_frame = ns->max_message,
        .max_frames = 3,       /* [identity][room][payload]; more are counted, not kept */
        .truncate = true,
        /* the room id (at most NSY_STR8_MAX bytes is useful) and the frames after it */
        .max_bytes = ns->max_message + NSY_STR8_MAX + 1,
        .name = "netsync",
        .on_msg = on_native_msg,
        .on_accept = on_native_accept,
        .on_gone = on_native_gone,
        .on_drained = on_native_drained,
        .gate = ns->gate,
        .arg = rt,
    };
    return (rt->zn = rc_zms_new(ns->loop, &zo)) ? 0 : -1;
}

static int native_open_pub(rc_netsync *ns, const char *addr, uint16_t port)
{
    rc_zms_opts zo = {
        .type = RC_ZMTP_T_PUB,
        .bind = addr,
        .port = port,
        .max_frame = RC_NETSYNC_PUB_MAX_INBOUND,
        .max_bytes = RC_NETSYNC_PUB_MAX_INBOUND,
        .max_subs = NSY_SUBS_PER_PEER,
        .name = "netsync",
        .on_accept = on_pub_accept,
        .on_gone = on_pub_gone,
        .gate = ns->gate,
        .arg = ns,
    };
    if (!(ns->npub = rc_zms_new(ns->loop, &zo))) return -1;
    ns->pub_port = rc_zms_port(ns->npub);
    return 0;
}

static int router_open(rc_netsync *ns, nsy_router *rt, const char *addr, uint16_t port)
{
    if (ns->native) return native_open(ns, rt, addr, port);
    rc_zsock_opts zo = {
        .zctx = ns->zctx,
        .bind = addr,
        .port = port,
        .max_frame = ns->max_message,
        .max_frames = 3,       /* [identity][room][payload]; more are counted, not kept */
        .truncate = true,
        .budget = NSY_DRAIN_BUDGET,
        .coalesce_ns = NSY_COALESCE_NS,
        .name = "netsync",     /* "cannot bind netsync 'tcp://...': ..." as before */
        .on_msg = on_router_msg,
        .on_drained = on_router_drained,
        .configure = configure_router,
        .arg = rt,
    };
    return (rt->zs = rc_zsock_new(ns->loop, &zo)) ? 0 : -1;
}

static void router_close(rc_netsync *ns, nsy_router *rt)
{
    rc_zsock_free(rt->zs);
    rt->zs = NULL;
    rc_zms_free(rt->zn);
    rt->zn = NULL;
}

rc_netsync *rc_netsync_new(rc_loop *loop, const rc_netsync_opts *o)
{
    rc_netsync *ns = calloc(1, sizeof(*ns));
    if (!ns) return NULL;
    ns->loop = loop;
    ns->tick_ns = o->tick_ns;
    ns->max_message = o->max_message_size;
    ns->gate = o->gate;
    router_init(ns, &ns->ctl, NSY_SOCK_ROUTER, NSY_LANE_CONTROL);
    router_init(ns, &ns->pose, NSY_SOCK_POSE, NSY_LANE_POSE);
    rc_io_init(&ns->pub_io, -1, on_pub);
    rc_timer_init(&ns->tick, on_tick);
    rc_timer_init(&ns->pub_more, on_pub_more);
    rc_timer_init(&ns->uc_retry, on_uc_retry);
    rc_timer_init(&ns->ident_sweep, on_ident_sweep);
    rc_timer_init(&ns->tick8, on_tick8);
    nsy_idents_init(&ns->idents, &ns->st, RC_NETSYNC_IDENT_MAX, RC_NETSYNC_IDENT_TTL_NS,
                    RC_NETSYNC_UNICAST_MAX_MSGS,
                    o->unicast_max_bytes ? o->unicast_max_bytes
                                         : RC_NETSYNC_UNICAST_MAX_BYTES_DEFAULT,
                    zunicast, slow_consumer, ns);
    nsy_params p;
    nsy_params_default(&p);
    p.tick_ns = o->tick_ns;
    p.client_timeout_ns = o->client_timeout_ns;
    p.idle_ns = o->idle_ns;
    p.mapping_ns = o->mapping_ns;
    if (nsy_rooms_init(&ns->rooms, &p, &ns->st, zpublish, ns) < 0) goto err;
    nsr8_params p8;
    nsr8_params_default(&p8);
    if (o->v8_client_timeout_ns) p8.client_timeout_ns = o->v8_client_timeout_ns;
    if (o->v8_bcast_ns) p8.bcast_ns = o->v8_bcast_ns;
    if (o->v8_idle_ns) p8.idle_ns = o->v8_idle_ns;
    if (o->v8_mapping_ns) p8.mapping_debounce_ns = o->v8_mapping_ns;
    if (o->v8_nv_flush_ns) p8.nv_flush_ns = o->v8_nv_flush_ns;
    p8.version[0] = RC_NETSYNC_SERVER_MAJOR;
    p8.version[1] = RC_NETSYNC_SERVER_MINOR;
    p8.version[2] = RC_NETSYNC_SERVER_PATCH;
    nsr8_io io8 = {.unicast = v8_unicast, .publish = v8_publish, .connected = v8_connected,
                   .arg = ns};
    if (nsr8_rooms_init(&ns->rooms8, &p8, &ns->st8, &io8) < 0) goto err;
    const char *addr = strcmp(o->bind, "0.0.0.0") == 0 ? "*" : o->bind;
    ns->native = o->engine == RC_ZMS_ENGINE_NATIVE;
    if (ns->native) {
        if (router_open(ns, &ns->ctl, addr, o->router_port) < 0 ||
            router_open(ns, &ns->pose, addr, o->pose_port) < 0 ||
            native_open_pub(ns, addr, o->pub_port) < 0)
            goto err;
        goto discovery;
    }
    if (!(ns->zctx = zmq_ctx_new())) goto err;
    if (nsy_peers_init(&ns->peers, loop, ns->zctx, &ns->st, flush_inputs, ns) < 0) goto err;
    if (router_open(ns, &ns->ctl, addr, o->router_port) < 0 ||
        router_open(ns, &ns->pose, addr, o->pose_port) < 0 ||
        !(ns->pub = bind_socket(ns, ZMQ_XPUB, NSY_SOCK_PUB, RC_NETSYNC_PUB_MAX_INBOUND, addr,
                                o->pub_port, &ns->pub_port)))
        goto err;
    if (watch(ns, ns->pub, &ns->pub_io, on_pub, RC_EV_READ) < 0) {
        rc_error("cannot watch the netsync sockets");
        goto err;
    }
discovery:;
    nsy_disc_ports ports = {.control = rc_netsync_router_port(ns),
                            .pose = rc_netsync_pose_port(ns),
                            .pub = ns->pub_port, .rest = o->rest_port};
    if (nsy_disc_start(&ns->disc, loop, o->bind, o->discovery_port, &ports, o->server_name,
                       o->tcp_discovery == RC_NETSYNC_TCP_DISC_V8, &ns->st) < 0)
        goto err;
    /* Messages may have arrived between bind and watch: the edge is gone, look now. */
    drain(ns);
    return ns;
err:
    rc_netsync_free(ns);
    return NULL;
}

void rc_netsync_free(rc_netsync *ns)
{
    if (!ns) return;
    nsy_disc_stop(&ns->disc);
    rc_timer_stop(ns->loop, &ns->tick);
    rc_timer_stop(ns->loop, &ns->pub_more);
    rc_timer_stop(ns->loop, &ns->uc_retry);
    rc_timer_stop(ns->loop, &ns->ident_sweep);
    rc_timer_stop(ns->loop, &ns->tick8);
    router_close(ns, &ns->ctl);
    router_close(ns, &ns->pose);
    if (ns->pub_io.fd >= 0) rc_io_stop(ns->loop, &ns->pub_io);
    if (ns->pub) zmq_close(ns->pub);
    rc_zms_free(ns->npub);
    nsy_peers_release(&ns->peers); /* its sockets too: zmq_ctx_term waits for every socket */
    if (ns->zctx) zmq_ctx_term(ns->zctx);
    nsy_rooms_release(&ns->rooms); /* a no-op on the zeroed rooms of a failed start */
    nsr8_rooms_release(&ns->rooms8);
    nsy_idents_release(&ns->idents);
    while (ns->pending) {
        nsy_pending *q = ns->pending;
        ns->pending = q->next;
        free(q);
    }
    free(ns);
}

uint16_t rc_netsync_router_port(const rc_netsync *ns)
{
    return ns->native ? rc_zms_port(ns->ctl.zn) : rc_zsock_port(ns->ctl.zs);
}

uint16_t rc_netsync_pose_port(const rc_netsync *ns)
{
    return ns->native ? rc_zms_port(ns->pose.zn) : rc_zsock_port(ns->pose.zs);
}
uint16_t rc_netsync_pub_port(const rc_netsync *ns) { return ns->pub_port; }

const rc_zms_stats *rc_netsync_zms_stats(const rc_netsync *ns, int s)
{
    if (!ns->native || s < 0 || s >= NSY_SOCK__COUNT) return NULL;
    return rc_zms_stats_of(native_sock(ns, (enum nsy_sock)s));
}
uint16_t rc_netsync_discovery_port(const rc_netsync *ns) { return ns->disc.port; }
void rc_netsync_set_rest_port(rc_netsync *ns, uint16_t port) { nsy_disc_set_rest_port(&ns->disc, port); }

/* ---- protocol 8 API ---------------------------------------------------------------------- */

int rc_netsync_unicast(rc_netsync *ns, const void *ident, size_t ident_len, const void *room,
                       size_t room_len, const void *payload, size_t len)
{
    uint64_t now = rc_loop_now(ns->loop);
    int rc = nsy_idents_unicast(&ns->idents, ident, ident_len, room, room_len, payload, len,
                                now);
    if (!rc_timer_armed(&ns->ident_sweep))
        rc_timer_start(ns->loop, &ns->ident_sweep, now + RC_NETSYNC_IDENT_TTL_NS);
    if (ns->idents.blocked && !rc_timer_armed(&ns->uc_retry))
        flush_unicast(ns); /* arms the back-off retry */
    /* A send lets libzmq process the ROUTER's commands, which may consume its read edge:
     * look again at the end of this loop turn (not now: we may be inside a drain). */
    if (!ns->native) rc_zsock_look(ns->ctl.zs);
    return rc;
}

bool rc_netsync_connected(const rc_netsync *ns, const void *ident, size_t ident_len)
{
    if (ident_len == 0 || ident_len > NSY_IDENT_MAX_LEN) return false;
    const nsy_ident *r = nsy_idents_find(&ns->idents, NSY_LANE_CONTROL, ident, ident_len);
    return r && conn_live(ns, NSY_SOCK_ROUTER, r->fd, r->conn);
}

const rc_netsync_stats *rc_netsync_stats_of(const rc_netsync *ns) { return &ns->st; }
const nsy_room *rc_netsync_rooms(const rc_netsync *ns) { return ns->rooms.head; }
uint64_t rc_netsync_tick_ns(const rc_netsync *ns) { return ns->tick_ns; }

void rc_netsync_watch(rc_netsync *ns, nsy_watch *cb, void *arg)
{
    ns->rooms.watch = cb;
    ns->rooms.watch_arg = arg;
}

const nsy_room *rc_netsync_room(const rc_netsync *ns, const void *room, size_t room_len)
{
    return room_len > NSY_STR8_MAX ? NULL : nsy_room_find(&ns->rooms, room, room_len);
}

/* ---- injection (REST bridge, WebSocket observers) ---------------------------------------- */

int rc_netsync_send_rpc(rc_netsync *ns, const void *room, size_t room_len, uint16_t sender,
                        const void *name, size_t name_len, const void *args, size_t args_len)
{
    if (room_len > NSY_STR8_MAX || name_len > NSY_STR8_MAX || args_len > NSY_STR16_MAX ||
        !rc_utf8_valid(name, name_len) || !rc_utf8_valid(args, args_len))
        return -EINVAL;
    nsy_room *r = nsy_room_find(&ns->rooms, room, room_len);
    if (!r) return -ENOENT;
    int rc = nsy_room_publish_rpc(&ns->rooms, r, sender, name, name_len, args, args_len);
    drain(ns); /* a send may consume the ROUTER's read edge */
    return rc < 0 ? -EINVAL : 0;
}

static double wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static enum rc_netsync_nv set_var(rc_netsync *ns, nsy_room *r, int target, const void *name,
                                  size_t name_len, const void *value, size_t value_len)
{
    if (name_len == 0 || name_len > NSY_STR8_MAX || value_len > NSY_STR16_MAX ||
        !rc_utf8_valid(name, name_len) || !rc_utf8_valid(value, value_len))
        return RC_NETSYNC_NV_INVALID;
    switch (nsy_room_set_var(&ns->rooms, r, target, name, name_len, value, value_len,
                            wall_clock(), 0)) {
    case NSY_NV_APPLIED: ns->st.nv_applied++; return RC_NETSYNC_NV_APPLIED;
    case NSY_NV_UNCHANGED: return RC_NETSYNC_NV_UNCHANGED;
    case NSY_NV_STALE: return RC_NETSYNC_NV_STALE;
    case NSY_NV_LIMIT: return RC_NETSYNC_NV_LIMIT;
    case NSY_NV_EMPTY_NAME: return RC_NETSYNC_NV_INVALID;
    case NSY_NV_NOMEM: break;
    }
    return RC_NETSYNC_NV_NOMEM;
}

enum rc_netsync_nv rc_netsync_set_client_var(rc_netsync *ns, const void *room, size_t room_len,
                                             const void *device, size_t device_len,
                                             const void *name, size_t name_len,
                                             const void *value, size_t value_len)
{
    nsy_room *r = room_len > NSY_STR8_MAX ? NULL : nsy_room_find(&ns->rooms, room, room_len);
    if (!r) return RC_NETSYNC_NV_NO_ROOM;
    long i = device_len > NSY_ID_MAX ? -1 : nsy_room_find_device(r, device, device_len);
    if (i < 0) return RC_NETSYNC_NV_NO_DEVICE;
    return set_var(ns, r, r->dev[i].no, name, name_len, value, value_len);
}

enum rc_netsync_nv rc_netsync_set_global_var(rc_netsync *ns, const void *room, size_t room_len,
                                             const void *name, size_t name_len,
                                             const void *value, size_t value_len)
{
    nsy_room *r = room_len > NSY_STR8_MAX ? NULL : nsy_room_find(&ns->rooms, room, room_len);
    if (!r) return RC_NETSYNC_NV_NO_ROOM;
    return set_var(ns, r, -1, name, name_len, value, value_len);
}

/* ---- queued client variables (REST bridge) ----------------------------------------------- */

static bool pending_is(const nsy_pending *q, const void *room, size_t room_len,
                       const void *device, size_t device_len)
{
    return q->room_len == room_len && q->dev_len == device_len &&
           memcmp(q->room, room, room_len) == 0 && memcmp(q->dev, device, device_len) == 0;
}

size_t rc_netsync_queued(const rc_netsync *ns, const void *room, size_t room_len,
                         const void *device, size_t device_len)
{
    size_t n = 0;
    for (const nsy_pending *q = ns->pending; q; q = q->next)
        n += pending_is(q, room, room_len, device, device_len);
    return n;
}

int rc_netsync_queue_client_var(rc_netsync *ns, const void *room, size_t room_len,
                                const void *device, size_t device_len, const void *name,
                                size_t name_len, const void *value, size_t value_len)
{
    if (room_len > NSY_STR8_MAX || device_len > NSY_ID_MAX || name_len == 0 ||
        name_len > NSY_STR8_MAX || value_len > NSY_STR16_MAX)
        return -EINVAL;
    if (rc_netsync_queued(ns, room, room_len, device, device_len) >= RC_NETSYNC_QUEUE_PER_DEVICE)
        return -EBUSY;
    if (ns->npending >= NSY_PENDING_MAX) return -ENOSPC;
    nsy_pending *q = malloc(sizeof(*q) + room_len + device_len + name_len + value_len + 1);
    if (!q) return -ENOMEM;
    uint8_t *p = (uint8_t *)(q + 1);
    q->room = p, p += room_len;
    q->dev = p, p += device_len;
    q->name = p, p += name_len;
    q->value = p;
    memcpy(q->room, room, room_len);
    memcpy(q->dev, device, device_len);
    memcpy(q->name, name, name_len);
    if (value_len) memcpy(q->value, value, value_len);
    q->room_len = (uint8_t)room_len, q->dev_len = (uint8_t)device_len;
    q->name_len = (uint8_t)name_len, q->value_len = (uint32_t)value_len;
    q->at = rc_loop_now(ns->loop);
    q->next = NULL;
    nsy_pending **tail = &ns->pending;
    while (*tail) tail = &(*tail)->next;
    *tail = q;
    ns->npending++;
    if (!rc_timer_armed(&ns->tick)) /* no room yet: look again at the tick cadence */
        rc_timer_start(ns->loop, &ns->tick, rc_loop_now(ns->loop) + ns->tick_ns);
    return 0;
}

/* apply_pending applies the queued sets whose device has joined, in queue order, and drops
 * those older than NSY_PENDING_TTL. */
static void apply_pending(rc_netsync *ns, uint64_t now)
{
    nsy_pending **pp = &ns->pending;
    while (*pp) {
        nsy_pending *q = *pp;
        enum rc_netsync_nv r = rc_netsync_set_client_var(ns, q->room, q->room_len, q->dev,
                                                         q->dev_len, q->name, q->name_len,
                                                         q->value, q->value_len);
        if ((r == RC_NETSYNC_NV_NO_ROOM || r == RC_NETSYNC_NV_NO_DEVICE) &&
            now - q->at < NSY_PENDING_TTL) {
            pp = &q->next;
            continue;
        }
        *pp = q->next;
        ns->npending--;
        free(q);
    }
    /* keep ticking while sets wait for a room that does not exist yet */
    if (ns->pending && ns->rooms.wake == UINT64_MAX && !rc_timer_armed(&ns->tick))
        rc_timer_start(ns->loop, &ns->tick, now + ns->tick_ns);
}
