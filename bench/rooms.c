/* rooms.c — the fanout, pingpong and slow scenarios: R rooms of C clients that all publish.
 *
 * Every client joins its room, then (once every client of every room has joined) publishes
 * messages carrying its slot in the room (s), its own sequence number (q) and the send time (t).
 * Publishing is either closed-loop — at most W own messages unacknowledged, where a client's
 * message counts as acknowledged when it comes back to it through the room — or open-loop at a
 * fixed rate per client, spread evenly over time (the NetSync case: 30 Hz per client).
 *
 * What every delivery is checked against (the counters must all be zero for a run to count):
 *   - per member, msg_ids are consecutive from the member's joined.last_msg_id + 1: a gap or a
 *     step back is an order violation, an id seen twice is a duplicate;
 *   - per room, every member sees the same message under the same msg_id (one total order):
 *     the first member to see an id records (s, q), the others must agree;
 *   - per sender, q increases by exactly one in every member's stream (per-sender order), and
 *     each (s, q) is delivered under one msg_id only (else the second is a duplicate);
 *   - client_id is the sender's (learnt from its joined), s/q name a message that was sent;
 *   - at the end, every member has every message published to its room after it joined:
 *     losses = expected - distinct delivered, summed over members.
 * pingpong is this engine with one room, one client and a window of one; slow runs it twice,
 * without and with one extra member per room that never reads (rooms.c:rb_run_slow).
 *
 * Issue 12's features (docs/protocol.md) are options of the same engine: members may join with
 * "presence":true (joined lists the members, then presence events arrive, each checked to sit
 * exactly between two msg_ids, and every such member's picture of the room must match the real
 * membership), publishes may carry a "state_key" (one per sender slot, or fewer), and members
 * may join with "conflate":true. A conflating member may get {"type":"conflated","msg_ids":[...]}
 * instead of some keyed messages: the ids it names must not have been delivered, are not
 * delivered afterwards (a duplicate otherwise), and count in the gap checks as if delivered; a
 * sender's q may then jump over them, but only by as many as were announced, and losses are
 * what was neither delivered nor announced.
 *
 * Members need not share a wire: member k of every room connects over
 * o->transports[k % o->ntransports] (fanout-tcp: all on the TCP port's line mode; fanout-mixed:
 * WebSocket and line mode alternately, so half of each room is on each), and the checks above
 * are the same whatever the mix: one total order per room across wires is the point.
 *
 * Nor need they share a node: with several ports (--port P1,P2: a cluster, bench/cluster.sh)
 * member k of every room connects to node k % ports, the checks span the nodes, and deliveries
 * whose sender sits on another node also feed the cross-node latency histogram. Against a server
 * that does not sequence (Socket.IO, --transport sio) the per-room order checks are replaced by
 * what such a server does promise (delivery_unsequenced).
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct room;

struct member {
    struct rb_conn conn;     /* must stay first: callbacks get the conn, we get the member */
    struct room *room;       /* the room this client joins */
    uint32_t slot;           /* index in room->m, the "s" of its messages */
    uint32_t node;           /* which of the server's nodes it connects to (o->targets) */
    bool stuck;              /* joins, then never reads */
    bool presence;           /* joined with "presence":true */
    bool conflate;           /* joined with "conflate":true */
    bool joined;             /* got its joined */
    bool dead;               /* connection ended */
    int64_t client_id;       /* from joined */
    int64_t join_last;       /* joined.last_msg_id */
    int64_t last_id;         /* last msg_id received */
    uint64_t sent;           /* own messages published */
    uint64_t acked;          /* own messages that came back */
    uint64_t received;       /* distinct room messages received */
    uint64_t conflated;      /* msg_ids announced as conflated (never to be delivered) */
    uint64_t q_skipped;      /* sender q numbers jumped over (must stay <= conflated) */
    int64_t view;            /* presence: members it was told the room has */
    uint64_t pres_events;    /* presence events and batches received */
    uint64_t *next_q;        /* per sender slot: the q expected next */
    uint64_t *seen;          /* bitmap of msg_id - join_last - 1 already received */
    size_t seen_words;       /* size of seen in 64-bit words */
    uint64_t *ids;           /* as a sender: msg_id its message q was first seen with, by q */
    size_t ids_cap;          /* entries in ids */
};

struct room {
    char name[64];           /* unique per run so rounds never share a room */
    size_t name_len;         /* strlen(name) */
    uint32_t n;              /* members (publishers + stuck) */
    struct member *m;        /* members, publishers first */
    uint64_t published;      /* messages published to this room so far */
    int64_t base;            /* the room's last msg_id before the run (all joins) */
    uint64_t *order;         /* per msg_id - base - 1: ((s << 40) | q) + 1 of the first sighting */
    size_t order_cap;        /* entries in order */
};

static struct {
    const struct rb_opts *o;
    struct rb_result *r;
    struct room *rooms;
    uint32_t nrooms, per_room, npub;
    struct member **pub;     /* publishing (and reading) members, in pacing order */
    uint32_t started, joined, setup_failed;
    bool publishing;         /* the measured interval has started */
    uint64_t deadline;       /* stop publishing at this time (0 = no limit) */
    uint64_t total_unique;   /* distinct deliveries to readers */
    uint64_t total_conflated;/* msg_ids announced as conflated to readers */
    uint64_t notices;        /* conflated notices received */
    uint64_t pres_events;    /* presence events received by members */
    uint64_t last_delivery;  /* time of the latest delivery */
    uint64_t lag_max;        /* rate mode: worst lateness of a scheduled send, ns */
    struct rb_hist lag;      /* rate mode: lateness of every scheduled send, ns */
    uint32_t stuck_cut;      /* stuck members whose connection the server ended */
    int stuck_code;          /* close code a stuck member got (last seen) */
    uint64_t stuck_msgs;     /* messages the stuck members read when finally drained */
    char buf[1 << 17];       /* scratch for building messages */
} E;

static void on_open(struct rb_conn *c);
static void on_text(struct rb_conn *c, const char *p, size_t n);
static void on_closed(struct rb_conn *c, enum rb_end why);
static const struct rb_handler handler = {on_open, on_text, on_closed};

static void publish(struct member *m, uint64_t t)
{
    char key[48];
    if (E.o->state_keys && E.o->keys_per_sender > 1)
        snprintf(key, sizeof(key), "k%u.%llu", m->slot % E.o->state_keys,
                 (unsigned long long)(m->sent % E.o->keys_per_sender));
    else if (E.o->state_keys)
        snprintf(key, sizeof(key), "k%u", m->slot % E.o->state_keys);
    size_t n = rb_msg_publish_key(E.buf, sizeof(E.buf), E.o->size, m->slot, m->sent, t,
                                  E.o->state_keys ? key : NULL);
    rb_conn_send_text(&m->conn, E.buf, n);
    m->sent++;
    m->room->published++;
    E.r->published++;
}

static bool may_publish(const struct member *m, uint64_t now)
{
    if (m->dead || m->stuck)
        return false;
    if (E.o->messages && m->sent >= E.o->messages)
        return false;
    return !E.deadline || now < E.deadline;
}

static void on_open(struct rb_conn *c)
{
    struct member *m = (struct member *)c;
    char extra[64];
    snprintf(extra, sizeof(extra), "%s%s", m->presence ? ",\"presence\":true" : "",
             m->conflate ? ",\"conflate\":true" : "");
    size_t n = rb_msg_join_ext(E.buf, sizeof(E.buf), m->room->name, extra);
    rb_conn_send_text(c, E.buf, n);
}

static bool is_seen(const struct member *m, uint64_t rel)
{
    size_t w = (size_t)(rel / 64);
    return w < m->seen_words && (m->seen[w] >> (rel % 64) & 1);
}

static void set_seen(struct member *m, uint64_t rel, bool *was)
{
    size_t w = (size_t)(rel / 64);
    if (w >= m->seen_words) {
        size_t nw = m->seen_words ? m->seen_words : 64;
        while (nw <= w)
            nw *= 2;
        m->seen = realloc(m->seen, nw * 8);
        memset(m->seen + m->seen_words, 0, (nw - m->seen_words) * 8);
        m->seen_words = nw;
    }
    uint64_t bit = 1ull << (rel % 64);
    *was = m->seen[w] & bit;
    m->seen[w] |= bit;
}

/* Record (s, q) as message `idx` of the room, or check it against what another member saw. */
static bool room_agrees(struct room *rm, uint64_t idx, uint64_t key)
{
    if (idx >= rm->order_cap) {
        size_t cap = rm->order_cap ? rm->order_cap : 1024;
        while (cap <= idx)
            cap *= 2;
        rm->order = realloc(rm->order, cap * 8);
        memset(rm->order + rm->order_cap, 0, (cap - rm->order_cap) * 8);
        rm->order_cap = cap;
    }
    if (!rm->order[idx]) {
        rm->order[idx] = key;
        return true;
    }
    return rm->order[idx] == key;
}

/* The msg_id of the sender's message q: recorded at its first sighting, checked after. */
static bool sender_id_agrees(struct member *snd, uint64_t q, uint64_t id)
{
    if (q >= snd->ids_cap) {
        size_t cap = snd->ids_cap ? snd->ids_cap : 256;
        while (cap <= q)
            cap *= 2;
        snd->ids = realloc(snd->ids, cap * 8);
        memset(snd->ids + snd->ids_cap, 0, (cap - snd->ids_cap) * 8);
        snd->ids_cap = cap;
    }
    if (!snd->ids[q]) {
        snd->ids[q] = id;
        return true;
    }
    return snd->ids[q] == id;
}

/* A delivery of a server that does not sequence (Socket.IO: no msg_id, and across nodes no
 * one order per room either, since each node emits its own clients' messages before those that
 * come back through Redis). What still must hold, and is checked: every member gets each
 * sender's messages once and in the order sent (q consecutive per sender), from a sender of its
 * room, attributed to that sender; losses are counted at the end as for sequenced servers. */
static void delivery_unsequenced(struct member *m, const struct rb_msg *g, struct member *snd,
                                 uint64_t now)
{
    struct rb_result *r = E.r;
    if (!m->joined || !E.publishing) {
        r->order_violations++;
        return;
    }
    if ((uint64_t)g->q < m->next_q[g->s]) {
        r->duplicates++;           /* again, or late: either way not once and in order */
        return;
    }
    if ((uint64_t)g->q > m->next_q[g->s])
        r->order_violations++;     /* a sender's message skipped (counted as lost too) */
    m->next_q[g->s] = (uint64_t)g->q + 1;
    m->received++;
    E.total_unique++;
    r->deliveries++;
    E.last_delivery = now;
    uint64_t lat = now > (uint64_t)g->t ? now - (uint64_t)g->t : 0;
    rb_hist_add(&r->lat, lat);
    if (snd->node != m->node)
        rb_hist_add(&r->lat_cross, lat);
    if (snd == m) {
        uint64_t freed = (uint64_t)g->q + 1 > m->acked ? (uint64_t)g->q + 1 - m->acked : 0;
        m->acked += freed;
        while (freed-- && E.o->rate <= 0 && may_publish(m, now))
            publish(m, now);
    }
}

static void delivery(struct member *m, const struct rb_msg *g)
{
    uint64_t now = rb_rx_ns;
    struct room *rm = m->room;
    struct rb_result *r = E.r;
    if (m->stuck) {
        E.stuck_msgs++;
        return;
    }
    if ((g->msg_id < 1 && !E.o->unsequenced) || g->s < 0 || g->q < 0 || g->t < 0 ||
        g->client_id < 0) {
        r->errors++;
        rb_result_fail(r, "delivery without msg_id/client_id/s/q/t");
        return;
    }
    if (!m->joined || !E.publishing) {
        r->order_violations++;     /* a room message before joined, or before anyone published */
        return;
    }
    if (g->room && !(g->room_len == rm->name_len && !memcmp(g->room, rm->name, g->room_len)))
        r->order_violations++;     /* delivered to the wrong room */
    if ((uint64_t)g->s >= rm->n || rm->m[g->s].stuck || (uint64_t)g->q >= rm->m[g->s].sent) {
        r->errors++;
        rb_result_fail(r, "delivery of a message nobody sent (s=%lld q=%lld)", (long long)g->s,
                       (long long)g->q);
        return;
    }
    struct member *snd = &rm->m[g->s];
    if (g->client_id != snd->client_id)
        r->order_violations++;     /* attributed to another client */
    if (E.o->unsequenced) {
        delivery_unsequenced(m, g, snd, now);
        return;
    }
    if (g->msg_id <= m->join_last) {
        r->order_violations++;     /* from before this member joined */
        return;
    }
    bool was;
    set_seen(m, (uint64_t)(g->msg_id - m->join_last - 1), &was);
    if (was) {
        r->duplicates++;           /* delivered twice, or delivered after being conflated */
        return;
    }
    if (g->msg_id <= m->last_id)
        r->order_violations++;
    /* A gap is allowed only over msg_ids announced as conflated before. */
    for (int64_t id = m->last_id + 1; id < g->msg_id; id++)
        if (!is_seen(m, (uint64_t)(id - m->join_last - 1))) {
            r->order_violations++;
            break;
        }
    m->last_id = g->msg_id;
    if (g->msg_id <= rm->base ||
        !room_agrees(rm, (uint64_t)(g->msg_id - rm->base - 1),
                     (((uint64_t)g->s << 40) | (uint64_t)g->q) + 1))
        r->order_violations++;     /* members disagree on which message has this id */
    if (!sender_id_agrees(snd, (uint64_t)g->q, (uint64_t)g->msg_id)) {
        r->duplicates++;           /* the same message again, under another msg_id */
        return;
    }
    if ((uint64_t)g->q == m->next_q[g->s])
        m->next_q[g->s]++;
    else if ((uint64_t)g->q < m->next_q[g->s])
        r->order_violations++;     /* an earlier message of this sender arrived late */
    else {
        /* Jumping over the sender's messages is conflation's doing, or disorder. */
        m->q_skipped += (uint64_t)g->q - m->next_q[g->s];
        if (m->q_skipped > m->conflated)
            r->order_violations++; /* the sender's messages arrived out of order */
        m->next_q[g->s] = (uint64_t)g->q + 1;
    }
    m->received++;
    E.total_unique++;
    r->deliveries++;
    E.last_delivery = now;
    rb_hist_add(&r->lat, now > (uint64_t)g->t ? now - (uint64_t)g->t : 0);
    if (snd->node != m->node)
        rb_hist_add(&r->lat_cross, now > (uint64_t)g->t ? now - (uint64_t)g->t : 0);
    if (snd == m) {
        /* Own messages conflated in its own queue come back as the later one that replaced
         * them: each frees its place in the window too. */
        uint64_t freed = (uint64_t)g->q + 1 > m->acked ? (uint64_t)g->q + 1 - m->acked : 0;
        m->acked += freed;
        while (freed-- && E.o->rate <= 0 && may_publish(m, now))
            publish(m, now);
    }
}

/* {"type":"conflated","room":R,"msg_ids":[...]}: ids this member will not get. */
static void conflated_notice(struct member *m, const struct rb_msg *g)
{
    struct rb_result *r = E.r;
    struct room *rm = m->room;
    E.notices++;
    if (!m->conflate || !m->joined || !E.publishing || m->stuck) {
        r->order_violations++;     /* only a conflating member, and only while messages flow */
        return;
    }
    if (!g->room || g->room_len != rm->name_len || memcmp(g->room, rm->name, g->room_len))
        r->order_violations++;
    const char *it = NULL;
    struct rb_span el;
    bool bad = false;
    uint64_t n = 0;
    while (rb_msg_array_next(g->msg_ids, &it, &el, &bad)) {
        int64_t id = rb_msg_int(el);
        n++;
        /* Not yet delivered, and sequenced already (announced ids precede the message that
         * replaced them, so they are at most the room's last id). */
        if (id <= m->last_id || id <= m->join_last ||
            id > rm->base + (int64_t)rm->published) {
            r->order_violations++;
            continue;
        }
        bool was;
        set_seen(m, (uint64_t)(id - m->join_last - 1), &was);
        if (was) {
            r->duplicates++;
            continue;
        }
        m->conflated++;
        E.total_conflated++;
    }
    if (bad || !n) {
        r->errors++;
        rb_result_fail(r, "malformed conflated notice");
    }
}

/* Presence events: placed exactly in the stream (every msg_id up to after_msg_id accounted
 * for, none after it delivered yet), about the member's own room, and applied to its picture
 * of the membership. */
static void presence_event(struct member *m, const struct rb_msg *g)
{
    struct rb_result *r = E.r;
    struct room *rm = m->room;
    if (m->stuck)
        return;                    /* closing: leaves are expected, not checked */
    m->pres_events++;
    E.pres_events++;
    if (!m->presence || !m->joined) {
        r->order_violations++;     /* asked for nothing, or before joined */
        return;
    }
    if (!g->room || g->room_len != rm->name_len || memcmp(g->room, rm->name, g->room_len))
        r->order_violations++;
    int64_t a = g->after_msg_id;
    if (a < 0 || a < m->last_id || a > rm->base + (int64_t)rm->published)
        r->order_violations++;
    else
        for (int64_t id = m->last_id + 1; id <= a; id++)
            if (id > m->join_last && !is_seen(m, (uint64_t)(id - m->join_last - 1))) {
                r->order_violations++;   /* told before a message it follows */
                break;
            }
    if (rb_msg_is(g->event, g->event_len, "join")) {
        m->view++;
        if (g->client_id < 0 || g->client_id == m->client_id)
            r->order_violations++;       /* nobody hears of its own join */
    } else if (rb_msg_is(g->event, g->event_len, "leave")) {
        m->view--;
        if (g->client_id < 0)
            r->order_violations++;
    } else if (rb_msg_is(g->event, g->event_len, "batch")) {
        if (g->member_count < 0)
            r->order_violations++;
        m->view = g->member_count;
    } else {
        r->errors++;
        rb_result_fail(r, "unknown presence event: %.*s", (int)g->event_len,
                       g->event ? g->event : "");
    }
}

/* joined of a member that asked for presence: "members" (its own id among them) or, above the
 * server's --presence-limit, "member_count". */
static void presence_joined(struct member *m, const struct rb_msg *g)
{
    if (g->member_count >= 0) {
        m->view = g->member_count;
        return;
    }
    const char *it = NULL;
    struct rb_span el;
    bool bad = false, self = false;
    m->view = 0;
    while (rb_msg_array_next(g->members, &it, &el, &bad)) {
        m->view++;
        self |= rb_msg_int(el) == g->client_id;
    }
    if (bad || !g->members.p || !self) {
        E.r->errors++;
        rb_result_fail(E.r, "joined with presence: no members list with its own id");
    }
}

static void on_text(struct rb_conn *c, const char *p, size_t n)
{
    struct member *m = (struct member *)c;
    struct rb_msg g;
    if (rb_msg_scan(p, n, &g) != 0) {
        E.r->errors++;
        rb_result_fail(E.r, "malformed JSON from server: %.60s", p);
        return;
    }
    if (g.type_len == 1 && g.type[0] == 'b') {
        delivery(m, &g);
    } else if (rb_msg_is(g.type, g.type_len, "conflated")) {
        conflated_notice(m, &g);
    } else if (rb_msg_is(g.type, g.type_len, "presence")) {
        presence_event(m, &g);
    } else if (rb_msg_is(g.type, g.type_len, "joined")) {
        if (m->joined) /* a second joined for one join */
            E.r->errors++;
        m->joined = true;
        m->client_id = g.client_id;
        m->join_last = g.last_msg_id;
        m->last_id = g.last_msg_id;
        if (g.client_id < 0 || g.last_msg_id < 0) {
            E.r->errors++;
            rb_result_fail(E.r, "joined without client_id or last_msg_id");
        }
        E.joined++;
        if (m->presence)
            presence_joined(m, &g);
        if (m->stuck)
            rb_conn_pause(c, true);
    } else if (rb_msg_is(g.type, g.type_len, "error")) {
        E.r->errors++;
        rb_result_fail(E.r, "server error: %.*s", (int)g.code_len, g.code ? g.code : "");
    } else {
        E.r->errors++;
        rb_result_fail(E.r, "unexpected message: %.60s", p);
    }
}

static void on_closed(struct rb_conn *c, enum rb_end why)
{
    struct member *m = (struct member *)c;
    m->dead = true;
    if (m->stuck) {
        /* Cut off by the server: what should happen to a reader that never reads. */
        E.stuck_cut++;
        E.stuck_code = c->close_code;
        return;
    }
    if (!E.publishing && !m->joined)
        E.setup_failed++;
    if (E.publishing || !m->joined) {
        E.r->errors++;
        rb_result_fail(E.r, "connection of %s/%u ended: %s%s", m->room->name, m->slot,
                       why == RB_END_CLOSE_FRAME ? "close frame" :
                       why == RB_END_EOF ? "EOF" : "error ",
                       why == RB_END_ERROR ? c->errmsg : "");
    }
}

static bool publishing_done(uint64_t now)
{
    if (E.deadline && now >= E.deadline)
        return true;
    for (uint32_t i = 0; i < E.npub; i++)
        if (may_publish(E.pub[i], now))
            return false;
    return true;
}

static uint64_t expected_unique(void)
{
    uint64_t x = 0;
    for (uint32_t r = 0; r < E.nrooms; r++) {
        uint32_t readers = 0;
        for (uint32_t i = 0; i < E.rooms[r].n; i++)
            readers += !E.rooms[r].m[i].stuck && !E.rooms[r].m[i].dead;
        x += E.rooms[r].published * readers;
    }
    return x;
}

/* Every presence-asking reader's picture of its room against the members still connected.
 * Above the server's --presence-limit changes come as a batch once a second, so a picture may
 * lag by up to a second: wait (bounded) for them to agree before counting those that do not. */
static void check_views(struct rb_result *r)
{
    uint64_t until = rb_now_ns() + 2500000000ull;
    for (;;) {
        uint32_t off = 0;
        for (uint32_t i = 0; i < E.nrooms; i++) {
            struct room *rm = &E.rooms[i];
            int64_t live = 0;
            for (uint32_t k = 0; k < rm->n; k++)
                live += !rm->m[k].dead && rm->m[k].joined;
            for (uint32_t k = 0; k < rm->n; k++) {
                struct member *m = &rm->m[k];
                if (m->presence && !m->stuck && !m->dead && m->view != live) {
                    off++;
                    if (rb_now_ns() > until)
                        rb_result_fail(r, "presence: %s/%u counts %lld members, the room has "
                                          "%lld", rm->name, k, (long long)m->view,
                                       (long long)live);
                }
            }
        }
        if (!off)
            return;
        if (rb_now_ns() > until) {
            r->order_violations += off;
            return;
        }
        rb_loop_once(20000000);
    }
}

static void free_all(void)
{
    for (uint32_t r = 0; r < E.nrooms; r++) {
        struct room *rm = &E.rooms[r];
        for (uint32_t i = 0; i < rm->n; i++) {
            rb_conn_abort(&rm->m[i].conn);
            free(rm->m[i].next_q);
            free(rm->m[i].seen);
            free(rm->m[i].ids);
        }
        free(rm->m);
        free(rm->order);
    }
    free(E.rooms);
    free(E.pub);
    E.rooms = NULL;
    E.pub = NULL;
}

/* Close every live connection politely and wait (briefly) for the servers to answer, so the
 * next run does not start while this one's sockets are still being torn down. */
static void close_all(void)
{
    for (uint32_t r = 0; r < E.nrooms; r++)
        for (uint32_t i = 0; i < E.rooms[r].n; i++) {
            struct member *m = &E.rooms[r].m[i];
            m->stuck = true; /* from now on closing is expected, not an error */
            if (m->conn.fd >= 0)
                rb_conn_send_close(&m->conn, 1000);
        }
    E.publishing = false;
    uint64_t until = rb_now_ns() + 2000000000ull;
    for (;;) {
        bool live = false;
        for (uint32_t r = 0; r < E.nrooms && !live; r++)
            for (uint32_t i = 0; i < E.rooms[r].n && !live; i++)
                live = E.rooms[r].m[i].conn.fd >= 0;
        if (!live || rb_now_ns() > until)
            break;
        rb_loop_once(50000000);
    }
}

void rb_run_rooms(const struct rb_opts *o, struct rb_result *r, uint32_t stuck)
{
    static unsigned run_seq;
    memset(&E, 0, sizeof(E));
    rb_hist_init(&E.lag);
    E.o = o;
    E.r = r;
    E.nrooms = o->rooms;
    E.per_room = o->clients + stuck;
    E.rooms = calloc(E.nrooms, sizeof(*E.rooms));
    E.pub = calloc((size_t)E.nrooms * o->clients, sizeof(*E.pub));
    run_seq++;
    for (uint32_t i = 0; i < E.nrooms; i++) {
        struct room *rm = &E.rooms[i];
        snprintf(rm->name, sizeof(rm->name), "%s-%d-%u-%u", r->scenario, (int)getpid(), run_seq, i);
        rm->name_len = strlen(rm->name);
        rm->n = E.per_room;
        rm->m = calloc(rm->n, sizeof(*rm->m));
        for (uint32_t k = 0; k < rm->n; k++) {
            struct member *m = &rm->m[k];
            m->conn.fd = -1;
            m->room = rm;
            m->slot = k;
            m->node = o->ntargets > 1 ? k % o->ntargets : 0;
            m->stuck = k >= o->clients;
            m->presence = !m->stuck && o->presence_every &&
                          k % o->presence_every == o->presence_every - 1;
            m->conflate = !m->stuck && o->conflate_every &&
                          k % o->conflate_every == o->conflate_every - 1;
            m->next_q = calloc(rm->n, sizeof(uint64_t));
        }
    }
    /* Pacing order interleaves rooms (room 0 client 0, room 1 client 0, ...), so in rate mode
     * consecutive sends go to different rooms, as independent games would. */
    for (uint32_t k = 0; k < o->clients; k++)
        for (uint32_t i = 0; i < E.nrooms; i++)
            E.pub[E.npub++] = &E.rooms[i].m[k];

    char trs[64] = "";
    for (uint32_t t = 0; t < o->ntransports; t++)
        snprintf(trs + strlen(trs), sizeof(trs) - strlen(trs), "%s%s", t ? "," : "",
                 rb_transport_name(o->transports[t]));
    rb_result_str(r, "transport", trs);
    rb_result_num(r, "rooms", o->rooms);
    if (o->ntargets > 1)
        rb_result_num(r, "ports", o->ntargets);
    rb_result_num(r, "clients", o->clients);
    rb_result_num(r, "size", o->size);
    if (o->rate > 0)
        rb_result_num(r, "rate_hz", o->rate);
    else
        rb_result_num(r, "window", o->window);
    if (o->messages)
        rb_result_num(r, "messages", (double)o->messages);
    if (o->duration > 0)
        rb_result_num(r, "duration", o->duration);
    if (stuck)
        rb_result_num(r, "stuck", stuck);
    if (o->presence_every)
        rb_result_num(r, "presence_every", o->presence_every);
    if (o->conflate_every)
        rb_result_num(r, "conflate_every", o->conflate_every);
    if (o->state_keys)
        rb_result_num(r, "state_keys", o->state_keys);
    if (o->state_keys && o->keys_per_sender > 1)
        rb_result_num(r, "keys_per_sender", o->keys_per_sender);

    /* Setup: connect and join, a bounded number at a time (listen backlogs are small). */
    uint32_t total = E.nrooms * E.per_room, conc = o->concurrency ? o->concurrency : 256;
    uint64_t setup_until = rb_now_ns() + 30000000000ull;
    while (E.joined + E.setup_failed < total) {
        while (E.started < total && E.started - E.joined - E.setup_failed < conc) {
            uint32_t i = E.started++;
            struct member *m = &E.rooms[i / E.per_room].m[i % E.per_room];
            int rc = rb_conn_start(&m->conn, &handler, o->ntargets > 1 ? &o->targets[m->node]
                                                                      : &o->target,
                                   o->transports[m->slot % o->ntransports], rb_src_addr(i),
                                   m->stuck ? o->stuck_rcvbuf : 0);
            if (rc < 0) {
                rb_result_fail(r, "connect: %s", strerror(-rc));
                r->errors++;
                E.setup_failed++;
                m->dead = true;
            }
        }
        if (rb_now_ns() > setup_until) {
            rb_result_fail(r, "setup timed out: %u of %u joined", E.joined, total);
            break;
        }
        rb_loop_once(100000000);
    }
    for (uint32_t i = 0; i < E.nrooms; i++) {
        struct room *rm = &E.rooms[i];
        rm->base = rm->m[0].join_last;
        for (uint32_t k = 1; k < rm->n; k++)
            if (rm->m[k].join_last != rm->base) {
                r->errors++;
                rb_result_fail(r, "members of %s joined with different last_msg_id", rm->name);
            }
    }
    if (r->failed) {
        close_all();
        free_all();
        return;
    }

    /* The measured interval: from the first publish to the last delivery. */
    rb_result_begin(r);
    uint64_t t0 = rb_now_ns();
    E.publishing = true;
    E.last_delivery = t0;
    if (o->duration > 0)
        E.deadline = t0 + (uint64_t)(o->duration * 1e9);
    uint64_t slot_ns = 0, slot = 0, slots_max = 0;
    if (o->rate > 0) {
        slot_ns = (uint64_t)(1e9 / (o->rate * E.npub));
        if (!slot_ns)
            slot_ns = 1;
        slots_max = o->messages ? o->messages * E.npub : UINT64_MAX;
    } else {
        for (uint32_t w = 0; w < o->window; w++)
            for (uint32_t i = 0; i < E.npub; i++)
                if (may_publish(E.pub[i], t0))
                    publish(E.pub[i], t0);
    }
    uint64_t drain_ns = (uint64_t)((o->drain > 0 ? o->drain : 10) * 1e9), stop_at = 0;
    for (;;) {
        uint64_t now = rb_now_ns();
        int64_t timeout = 100000000;
        if (o->rate > 0 && slot < slots_max && (!E.deadline || now < E.deadline)) {
            /* Open loop: every slot due by now is sent now, stamped with the real send time;
             * how late the worst one was is reported, so a generator that cannot keep up shows
             * itself instead of silently lowering the offered rate. */
            while (slot < slots_max && t0 + slot * slot_ns <= now) {
                struct member *m = E.pub[slot % E.npub];
                uint64_t due = t0 + slot * slot_ns;
                if (now - due > E.lag_max)
                    E.lag_max = now - due;
                rb_hist_add(&E.lag, now - due);
                if (may_publish(m, now))
                    publish(m, now);
                slot++;
            }
            if (slot < slots_max) {
                uint64_t next = t0 + slot * slot_ns;
                timeout = next > now ? (int64_t)(next - now) : 0;
            }
        }
        if (publishing_done(now) && (o->rate <= 0 || slot >= slots_max || E.deadline)) {
            if (!stop_at)
                stop_at = now;
            if (E.total_unique + E.total_conflated >= expected_unique())
                break;
            if (now - stop_at > drain_ns) {
                rb_result_fail(r, "deliveries still missing %.1f s after publishing stopped",
                               (double)drain_ns / 1e9);
                break;
            }
        }
        if (E.deadline && now < E.deadline && (int64_t)(E.deadline - now) < timeout)
            timeout = (int64_t)(E.deadline - now);
        rb_loop_once(timeout);
    }
    rb_result_end(r);
    /* The interval ends at the last delivery, not at the moment the loop noticed. */
    double tail = (double)(rb_now_ns() - E.last_delivery) / 1e9;
    if (r->wall_s - tail > 0 && !r->failed)
        r->wall_s -= tail;

    /* Losses: per member, messages published to its room after its join, not received. */
    for (uint32_t i = 0; i < E.nrooms; i++) {
        struct room *rm = &E.rooms[i];
        for (uint32_t k = 0; k < rm->n; k++) {
            struct member *m = &rm->m[k];
            if (m->stuck || !m->joined)
                continue;
            uint64_t want = (uint64_t)(rm->base - m->join_last) + rm->published;
            if (m->received + m->conflated < want)
                r->losses += want - m->received - m->conflated;
        }
    }
    if (o->rate > 0) {
        rb_result_num(r, "send_lag_p99_us", (double)rb_hist_quantile(&E.lag, 0.99) / 1e3);
        rb_result_num(r, "send_lag_max_us", (double)E.lag_max / 1e3);
    }
    rb_result_num(r, "server_msgs_in_per_s",
                  r->wall_s > 0 ? (double)r->published / r->wall_s : 0);
    if (o->conflate_every) {
        rb_result_num(r, "conflated", (double)E.total_conflated);
        rb_result_num(r, "conflated_notices", (double)E.notices);
    }
    if (o->presence_every) {
        rb_result_num(r, "presence_events", (double)E.pres_events);
        check_views(r);
    }
    if (o->after && !r->failed)
        o->after(o, r);

    if (stuck) {
        /* Did the server cut the stuck readers off? Read them now: a connection the server
         * ended shows its close frame or EOF after the queued bytes; one still open goes quiet. */
        uint64_t quiet_since = rb_now_ns(), seen = E.stuck_msgs;
        for (uint32_t i = 0; i < E.nrooms; i++)
            for (uint32_t k = o->clients; k < E.rooms[i].n; k++)
                rb_conn_pause(&E.rooms[i].m[k].conn, false);
        for (;;) {
            bool live = false;
            for (uint32_t i = 0; i < E.nrooms && !live; i++)
                for (uint32_t k = o->clients; k < E.rooms[i].n && !live; k++)
                    live = E.rooms[i].m[k].conn.fd >= 0;
            uint64_t now = rb_now_ns();
            if (E.stuck_msgs != seen) {
                seen = E.stuck_msgs;
                quiet_since = now;
            }
            if (!live || now - quiet_since > 1000000000ull)
                break;
            rb_loop_once(100000000);
        }
        rb_result_num(r, "stuck_cut_off", E.stuck_cut);
        rb_result_num(r, "stuck_close_code", E.stuck_code);
        rb_result_num(r, "stuck_msgs_read", (double)E.stuck_msgs);
    }
    /* What a delivery cost on the wire (joins and keepalives included, a rounding error next
     * to the messages): the number permessage-deflate moves. */
    uint64_t rx = 0;
    for (uint32_t k = 0; k < E.nrooms; k++) rx += rb_rooms_rx_bytes(k);
    if (r->deliveries) rb_result_num(r, "rx_bytes_per_delivery", (double)rx / (double)r->deliveries);
    close_all();
    free_all();
}

/* slow: the same busy room twice, first without, then with a member that never reads. The
 * others' delivery rate with it, as a fraction of without it, is the number that matters; the
 * stuck member must also have been cut off by the server. */
void rb_run_slow(const struct rb_opts *o, struct rb_result *r)
{
    struct rb_result base;
    rb_result_init(&base, "slow-base", r->server, r->server_pid);
    rb_run_rooms(o, &base, 0);
    rb_run_rooms(o, r, 1);
    double b = base.wall_s > 0 ? (double)base.deliveries / base.wall_s : 0;
    double s = r->wall_s > 0 ? (double)r->deliveries / r->wall_s : 0;
    rb_result_num(r, "base_deliveries_per_s", b);
    rb_result_num(r, "throughput_ratio", b > 0 ? s / b : 0);
    if (!rb_result_ok(&base)) {
        r->order_violations += base.order_violations;
        r->losses += base.losses;
        r->duplicates += base.duplicates;
        r->errors += base.errors;
        if (base.failed)
            rb_result_fail(r, "baseline: %s", base.failure);
    }
    bool cut = false;
    for (int i = 0; i < r->nextra; i++)
        if (!strcmp(r->extra[i].key, "stuck_cut_off"))
            cut = r->extra[i].num >= o->rooms;
    if (!cut)
        rb_result_fail(r, "the stuck reader was not cut off");
}

/* ---- what join-cost reads while its hook runs (bench.h) ---------------------------------- */

const char *rb_rooms_name(uint32_t room)
{
    return E.rooms[room].name;
}

int64_t rb_rooms_last_id(uint32_t room)
{
    return E.rooms[room].base + (int64_t)E.rooms[room].published;
}

uint32_t rb_rooms_live(uint32_t room)
{
    uint32_t n = 0;
    for (uint32_t k = 0; k < E.rooms[room].n; k++)
        n += !E.rooms[room].m[k].dead && E.rooms[room].m[k].joined;
    return n;
}

bool rb_rooms_agrees(uint32_t room, int64_t msg_id, int64_t s, int64_t q)
{
    struct room *rm = &E.rooms[room];
    if (msg_id <= rm->base || s < 0 || q < 0)
        return false;
    uint64_t idx = (uint64_t)(msg_id - rm->base - 1);
    return idx < rm->order_cap && rm->order[idx] == (((uint64_t)s << 40) | (uint64_t)q) + 1;
}

uint32_t rb_rooms_state_ids(uint32_t room, int64_t **ids)
{
    struct room *rm = &E.rooms[room];
    uint32_t per = E.o->keys_per_sender > 1 ? E.o->keys_per_sender : 1;
    uint32_t nk = E.o->state_keys * per, n = 0;
    *ids = NULL;
    if (!nk)
        return 0;
    /* key of msg_id base+1+i is "k<s mod N>[.<q mod P>]": the latest id of each key, then
     * sorted (they are found newest first, so reversing sorts them). */
    bool *have = calloc(nk, sizeof(bool));
    int64_t *v = calloc(nk, sizeof(int64_t));
    for (uint64_t i = rm->published; i-- > 0 && n < nk;) {
        uint64_t e = i < rm->order_cap ? rm->order[i] : 0;
        if (!e)
            continue;                /* never seen: the caller finds the difference */
        uint64_t sq = e - 1;
        uint32_t key = (uint32_t)((sq >> 40) % E.o->state_keys) * per +
                       (uint32_t)((sq & ((1ull << 40) - 1)) % per);
        if (!have[key]) {
            have[key] = true;
            v[n++] = rm->base + 1 + (int64_t)i;
        }
    }
    for (uint32_t a = 0, b = n ? n - 1 : 0; a < b; a++, b--) {
        int64_t t = v[a];
        v[a] = v[b];
        v[b] = t;
    }
    free(have);
    *ids = v;
    return n;
}

uint64_t rb_rooms_presence_events(uint32_t room)
{
    uint64_t n = 0;
    for (uint32_t k = 0; k < E.rooms[room].n; k++)
        n += E.rooms[room].m[k].pres_events;
    return n;
}

uint64_t rb_rooms_rx_bytes(uint32_t room)
{
    uint64_t n = 0;
    for (uint32_t k = 0; k < E.rooms[room].n; k++)
        n += E.rooms[room].m[k].conn.rx_bytes;
    return n;
}

uint32_t rb_rooms_presence_check(uint32_t room, int64_t expect, double wait_s)
{
    struct room *rm = &E.rooms[room];
    uint64_t until = rb_now_ns() + (uint64_t)(wait_s * 1e9);
    for (;;) {
        uint32_t off = 0;
        for (uint32_t k = 0; k < rm->n; k++) {
            struct member *m = &rm->m[k];
            off += m->presence && !m->dead && m->view != expect;
        }
        if (!off || rb_now_ns() > until)
            return off;
        rb_loop_once(20000000);
    }
}
