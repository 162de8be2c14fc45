/* redisrooms.c — rooms sequenced in Redis; see redisrooms.h and docs/cluster.md. */
#include "rooms/redisrooms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/wsframe.h"
#include "core/log.h"
#include "rooms/redispresence.h"
#include "rooms/room.h"
#include "rooms/roomproto.h"
#include "rooms/state.h"
#include "rooms/wire.h"

/* A room's step with Redis. */
enum { CR_SYNCING, CR_LIVE, CR_RESYNC };

/* A channel message that arrived while its room was not live, kept for the merge. */
typedef struct bufmsg {
    uint64_t id;
    char epoch[RC_CLWIRE_EPOCH_MAX + 1];
    rc_msg *frame;           /* its canonical frame (a reference) */
    bool keyed;              /* its payload was marked as carrying a state key ('T') */
} bufmsg;

/* What a join kept until its room is live is. */
enum {
    CJ_REQUEST,              /* a join request of the room protocol, run again as sent */
    CJ_MEMBER,               /* a quiet membership (the chat port: no reply) */
    CJ_PUBLISH,              /* a chat-port message sent while its sender's CJ_MEMBER waits:
                                published behind it, so that the sender sees its own */
};

/* A join kept until its room is live. */
typedef struct cjoin {
    rc_cwait w;              /* first: the endpoint's list */
    struct cjoin *next;      /* the room's list, in arrival order */
    uint8_t kind;            /* CJ_* */
    size_t n;
    char text[];             /* the request, as the client sent it */
} cjoin;

typedef struct rc_croom {
    rc_redisrooms *rr;
    rc_room *room;           /* NULL once the room is gone (then freed when nothing refers) */
    uint8_t state;           /* CR_* */
    uint32_t gen;            /* reads started; the reply of an older one is ignored */
    uint32_t nreads;         /* reads in flight (each refers to this) */
    uint32_t pins;           /* callbacks running on it (each refers to this) */
    uint64_t last;           /* last msg_id delivered */
    uint64_t state_upto;     /* the room's state was read from Redis as of this msg_id: a
                                message up to it is in it already (its state key is not
                                applied again) */
    char epoch[RC_CLWIRE_EPOCH_MAX + 1]; /* Redis's epoch of the room, "" while it has none */
    bufmsg *buf;             /* channel messages waiting for the merge */
    uint32_t nbuf, capbuf;
    cjoin *joins, *joins_tail; /* joins waiting for the room to be live */
    struct crec *recs;       /* joins waiting for a read of the stream */
} rc_croom;

/* A join with since kept for a read of the stream (rc_redisrooms_recover_hold). */
typedef struct crec {
    rc_cwait w;              /* first: the endpoint's list */
    struct crec *next;       /* the room's list */
    rc_croom *cr;            /* its room's (kept until the read is answered) */
    rc_redisrooms *rr;
    uint64_t since;
    uint32_t gen;            /* cr->gen when the read was sent: a sync since then voids it */
    bufmsg *buf;             /* messages delivered in the room while the read is out */
    uint32_t nbuf, capbuf;
    size_t n;
    char text[];             /* the request */
} crec;

/* A publish waiting for the script's answer. */
typedef struct cpub {
    rc_cwait w;              /* first: the endpoint's list */
    rc_redisrooms *rr;
    uint16_t ref_len;        /* the ack token's JSON text (0: no ack wanted) */
    uint16_t room_len;       /* the room's name as a JSON string literal */
    char text[];             /* ref then room */
} cpub;

/* A read in flight. */
typedef struct cread {
    rc_croom *cr;
    uint32_t gen;
} cread;

struct rc_redisrooms {
    rc_rooms *t;
    rc_cluster *c;
    rc_redisrooms_stats st;
    /* The join running again with its read (rc_redisrooms_replay): */
    const rc_endpoint *rep_ep;
    const rc_room *rep_room;
    uint64_t rep_since;
    rc_msg **rep_frames;     /* the messages after since, in order */
    uint32_t rep_count;
    bool rep_used;
    rc_redispresence_stats pst; /* members across nodes (redispresence.c) */
    rc_redisrooms_info_fn *node_info; /* this node's figures for the registry, or NULL */
    void *node_info_arg;
};

static int unavailable(rc_redisrooms *rr, rc_endpoint *ep, const char *why)
{
    rr->st.unavailable++;
    return rc_roomproto_error(rr->t, ep, RC_RERR_UNAVAILABLE, "%s", why);
}

/* ---- waiting endpoints -------------------------------------------------------------------- */

static void wait_link(rc_cwait *w, rc_endpoint *ep)
{
    w->ep = ep;
    w->prev = NULL;
    w->next = ep->cwaits;
    if (ep->cwaits) ep->cwaits->prev = w;
    ep->cwaits = w;
}

static void wait_unlink(rc_cwait *w)
{
    if (!w->ep) return;
    if (w->prev) w->prev->next = w->next;
    else w->ep->cwaits = w->next;
    if (w->next) w->next->prev = w->prev;
    w->ep = NULL;
    w->prev = w->next = NULL;
}

void rc_redisrooms_endpoint_gone(rc_rooms *t, rc_endpoint *ep)
{
    (void)t;
    while (ep->cwaits) wait_unlink(ep->cwaits);
}

/* ---- frames ------------------------------------------------------------------------------ */

static void put_le64(char *w, uint64_t v)
{
    for (int i = 0; i < 8; i++) w[i] = (char)(v >> (8 * i));
}

/* Makes the canonical frame of a channel payload given its msg_id: 't' + the JSON text up to
 * `"msg_id":` (the id and '}' follow), or 'b' + the binary envelope after its msg_id. NULL
 * when the payload is neither (or no memory). 'T' is 't' for a message with a state key (or
 * state delete): the publishing node knows, so that the other nodes parse only those frames for
 * their key (rc_state_of_frame scanned every delivered frame: 14% of a node's time at
 * saturation). */
static rc_msg *frame_of(const char *p, size_t n, uint64_t id)
{
    if (n < 1) return NULL;
    if (p[0] == 't' || p[0] == 'T') {
        /* the id and '}' by hand: this runs for every message every node delivers */
        char num[24], *d = num + sizeof(num);
        *--d = '}';
        uint64_t v = id;
        do *--d = (char)('0' + v % 10);
        while ((v /= 10) != 0);
        const char *digits = d;
        size_t dl = (size_t)(num + sizeof(num) - d);
        size_t plen = n - 1 + dl;
        rc_msg *m = rc_ws_msg_alloc(RC_WS_TEXT, plen);
        if (!m) return NULL;
        char *w = m->data + rc_ws_header_size(plen);
        memcpy(w, p + 1, n - 1);
        memcpy(w + n - 1, digits, dl);
        return m;
    }
    if (p[0] == 'b') {
        size_t plen = 8 + n - 1;
        rc_msg *m = rc_ws_msg_alloc(RC_WS_BINARY, plen);
        if (!m) return NULL;
        char *w = m->data + rc_ws_header_size(plen);
        put_le64(w, id);
        memcpy(w + 8, p + 1, n - 1);
        return m;
    }
    return NULL;
}

/* mark_keyed returns payload, or for a text message with a state key (or state delete) a copy
 * marked 'T' (frame_of) in *copy, which the caller frees; NULL when out of memory. */
static const void *mark_keyed(const void *payload, size_t len, const struct rc_statekey *sk,
                              char **copy)
{
    *copy = NULL;
    if (!sk || len < 1 || *(const char *)payload != 't') return payload;
    if (!(*copy = malloc(len))) return NULL;
    memcpy(*copy, payload, len);
    (*copy)[0] = 'T';
    return *copy;
}

/* ---- rooms ------------------------------------------------------------------------------- */

static void bufs_free(bufmsg *b, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) rc_msg_unref(b[i].frame);
    free(b);
}

static void croom_free(rc_croom *cr)
{
    bufs_free(cr->buf, cr->nbuf);
    for (cjoin *j = cr->joins, *next; j; j = next) {
        next = j->next;
        wait_unlink(&j->w);
        free(j);
    }
    free(cr);
}

static void croom_release(rc_croom *cr)
{
    if (!cr->room && !cr->nreads && !cr->pins && !cr->recs) croom_free(cr);
}

bool rc_redisrooms_joins_waiting(const rc_room *room)
{
    return room->cr->joins != NULL;
}

void rc_redisrooms_room_gone(rc_rooms *t, rc_room *room)
{
    rc_croom *cr = room->cr;
    rc_redispresence_room_gone(t, room);
    room->cr = NULL;
    cr->room = NULL;
    if (t->cluster) rc_cluster_unsub(t->cluster->c, room->name, room->name_len);
    croom_release(cr);
}

static void on_read(void *arg, int status, const rc_cluster_range *range);

/* Starts bringing cr in step with Redis: a read of its epoch, top and stream (from the last
 * msg_id delivered when it was live, from the start otherwise), merged with the channel
 * messages that arrive meanwhile. Without an active subscription it waits for on_subscribed;
 * when Redis refuses, for on_state(true). */
static void sync_start(rc_redisrooms *rr, rc_croom *cr)
{
    cr->gen++;
    if (cr->state == CR_LIVE) cr->state = CR_RESYNC;
    rc_room *room = cr->room;
    if (!rc_cluster_subscribed(rr->c, room->name, room->name_len)) return;
    rc_redispresence_load(rr->t, room); /* before the read: its reply comes first */
    cread *rd = malloc(sizeof(*rd));
    if (!rd) return;
    *rd = (cread){.cr = cr, .gen = cr->gen};
    uint64_t after = cr->state == CR_RESYNC ? cr->last : 0;
    if (rc_cluster_read(rr->c, room->name, room->name_len, after, rr->t->cfg.history_size,
                        on_read, rd) < 0) {
        free(rd);
        return;
    }
    cr->nreads++;
}

/* Appends message id (epoch e, frame m) to a buffer; out of memory it is not kept, and the
 * merge sees the hole. */
static void buffer_into(bufmsg **buf, uint32_t *n, uint32_t *capn, uint64_t id, const char *e,
                        rc_msg *m, bool keyed)
{
    if (*n == *capn) {
        uint32_t cap = *capn ? *capn * 2 : 16;
        bufmsg *b = realloc(*buf, cap * sizeof(*b));
        if (!b) return;
        *buf = b;
        *capn = cap;
    }
    bufmsg *b = &(*buf)[(*n)++];
    b->id = id;
    snprintf(b->epoch, sizeof(b->epoch), "%s", e);
    b->frame = rc_msg_ref(m);
    b->keyed = keyed;
}

/* Delivers message id (epoch e) to the room's members and history; keyed: its payload was
 * marked as carrying a state key. */
static void deliver(rc_redisrooms *rr, rc_croom *cr, uint64_t id, const char *e, rc_msg *m,
                    bool keyed_payload)
{
    if (strcmp(cr->epoch, e) != 0) snprintf(cr->epoch, sizeof(cr->epoch), "%s", e);
    if (strcmp(cr->room->epoch, e) != 0) /* what joins report and recovery compares */
        snprintf(cr->room->epoch, sizeof(cr->room->epoch), "%s", e);
    cr->last = id;
    rc_statekey k;
    bool keyed = keyed_payload && id > cr->state_upto && rc_state_of_frame(m, &k);
    rc_room_deliver_keyed(rr->t, cr->room, m, id, keyed ? &k : NULL);
    for (crec *x = cr->recs; x; x = x->next)
        buffer_into(&x->buf, &x->nbuf, &x->capbuf, id, e, m, keyed_payload);
}

/* Whether message id of epoch e follows the last one delivered. */
static bool follows(const rc_croom *cr, uint64_t id, const char *e)
{
    if (cr->epoch[0] == '\0' && cr->last == 0) return id == 1; /* the room's first message */
    return strcmp(e, cr->epoch) == 0 && id == cr->last + 1;
}

static void buffer(rc_croom *cr, uint64_t id, const char *e, size_t el, rc_msg *m, bool keyed)
{
    char ep[RC_CLWIRE_EPOCH_MAX + 1];
    snprintf(ep, sizeof(ep), "%.*s", (int)el, e);
    buffer_into(&cr->buf, &cr->nbuf, &cr->capbuf, id, ep, m, keyed);
}

/* Closes every member of cr's room with 1013: they missed what Redis no longer holds (or the
 * room's epoch changed under them), and learn it when they rejoin (recovered:false). */
static void members_resync(rc_redisrooms *rr, rc_croom *cr)
{
    rr->st.resyncs_lost++;
    for (uint32_t n = cr->room ? cr->room->nmembers : 0; n > 0 && cr->room; n--)
        rc_endpoint_end(rr->t, cr->room->members[0].ep, RC_LEAVE_KICKED, RC_WS_CLOSE_TRY_AGAIN,
                        "the room's stream was reset: rejoin with since/epoch");
}

/* Runs the joins that waited for cr's room, now live. */
static void chat_publish(rc_redisrooms *rr, rc_endpoint *ep, rc_room *room, const char *p,
                         size_t n);

static void run_joins(rc_redisrooms *rr, rc_croom *cr)
{
    cjoin *j = cr->joins;
    cr->joins = cr->joins_tail = NULL;
    while (j) {
        cjoin *next = j->next;
        rc_endpoint *ep = j->w.ep;
        wait_unlink(&j->w);
        if (ep && j->kind == CJ_REQUEST) {
            rc_roomproto_join(rr->t, ep, j->text, j->n);
        } else if (ep && j->kind == CJ_MEMBER && cr->room) {
            rc_room *r;
            int rc = rc_room_join(rr->t, ep, cr->room->name, cr->room->name_len, 0, &r);
            if (rc != RC_JOIN_OK && rc != RC_JOIN_ALREADY)
                rc_warn("chat client: cannot join room '%s'", cr->room->name);
        } else if (ep && j->kind == CJ_PUBLISH && cr->room) {
            chat_publish(rr, ep, cr->room, j->text, j->n);
        }
        free(j);
        j = next;
    }
}

/* Answers the joins that waited for cr's room `unavailable` (Redis failed the read). */
static void fail_joins(rc_redisrooms *rr, rc_croom *cr)
{
    cjoin *j = cr->joins;
    cr->joins = cr->joins_tail = NULL;
    while (j) {
        cjoin *next = j->next;
        rc_endpoint *ep = j->w.ep;
        wait_unlink(&j->w);
        if (ep && cr->room) {
            rc_json_span rs = {.p = cr->room->json_name, .len = cr->room->json_len,
                               .type = RC_JSON_STRING};
            rr->t->req_room = &rs;
            unavailable(rr, ep, "redis failed while the room was being read; retry later");
            rr->t->req_room = NULL;
        }
        free(j);
        j = next;
    }
}

/* Merges the buffered channel messages after what is delivered; true when all followed. */
static bool drain(rc_redisrooms *rr, rc_croom *cr)
{
    uint32_t i = 0;
    bool ok = true;
    for (; i < cr->nbuf && cr->room; i++) {
        bufmsg *b = &cr->buf[i];
        if (strcmp(b->epoch, cr->epoch) == 0 && b->id <= cr->last) continue; /* in the read */
        if (!follows(cr, b->id, b->epoch)) {
            ok = false;
            break;
        }
        deliver(rr, cr, b->id, b->epoch, b->frame, b->keyed);
    }
    for (uint32_t k = 0; k < i; k++) rc_msg_unref(cr->buf[k].frame);
    if (i && i < cr->nbuf) memmove(cr->buf, cr->buf + i, (cr->nbuf - i) * sizeof(*cr->buf));
    cr->nbuf -= i;
    return ok;
}

/* Replaces the room's state with the one read from Redis as of top (the same script read
 * the stream: messages up to top are in it, later ones change it as they are delivered). */
static void state_load(rc_redisrooms *rr, rc_croom *cr, const rc_cluster_range *range,
                       uint64_t top)
{
    rc_room *room = cr->room;
    rc_state_free(rr->t, room);
    cr->state_upto = top;
    size_t n = rc_cluster_range_state_count(range);
    for (size_t i = 0; i < n; i++) {
        rc_cluster_state st;
        rc_msg *f;
        if (rc_cluster_range_state_get(range, i, &st) < 0 || st.key_len == 0 ||
            st.key_len > RC_STATE_KEY_MAX || st.msg_id > top || st.payload_len < 1 ||
            (*(const char *)st.payload != 't' && *(const char *)st.payload != 'T') ||
            /* only text messages have state keys */
            !(f = frame_of(st.payload, st.payload_len, st.msg_id))) {
            rc_warn("redis: a state entry of room '%s' is not roomcast's; skipped", room->name);
            continue;
        }
        rc_state_set_frame(rr->t, room, st.key, st.key_len, st.msg_id, f);
        rc_msg_unref(f);
    }
}

static void on_read(void *arg, int status, const rc_cluster_range *range)
{
    cread *rd = arg;
    rc_croom *cr = rd->cr;
    bool current = rd->gen == cr->gen;
    free(rd);
    cr->nreads--;
    if (!cr->room || !current) {
        croom_release(cr);
        return;
    }
    rc_redisrooms *rr = cr->rr;
    cr->pins++;
    if (status != 0) { /* read again on the next on_state(true) or on_subscribed */
        fail_joins(rr, cr);
        if (cr->room) rc_room_settle(rr->t, cr->room);
        goto out;
    }
    const char *e = rc_cluster_range_epoch(range);
    uint64_t top = rc_cluster_range_top(range), first = rc_cluster_range_first(range);
    size_t count = rc_cluster_range_count(range);
    rr->st.syncs++;
    if (cr->state == CR_RESYNC) {
        /* Members that have seen nothing yet (the room had no epoch) missed nothing when the
         * stream starts at 1; others when it is their epoch and reaches back to them. */
        bool fresh = cr->epoch[0] == '\0' && cr->last == 0;
        bool ok = fresh ? top == 0 || first == 1
                        : strcmp(e, cr->epoch) == 0 && top >= cr->last &&
                              (top == cr->last || (first && first <= cr->last + 1));
        if (!ok) {
            members_resync(rr, cr);
            cr->state = CR_SYNCING;
        }
    }
    if (cr->room && cr->state == CR_SYNCING) {
        rc_room_reset(rr->t, cr->room, e);
        snprintf(cr->epoch, sizeof(cr->epoch), "%s", e);
        cr->last = 0;
    }
    if (cr->room) state_load(rr, cr, range, top);
    for (size_t i = 0; i < count && cr->room; i++) {
        rc_cluster_msg m;
        if (rc_cluster_range_get(range, i, &m) < 0 || m.msg_id <= cr->last) continue;
        if (cr->state == CR_SYNCING && cr->last == 0) cr->last = m.msg_id - 1; /* its start */
        if (m.msg_id != cr->last + 1) break; /* cannot be: the stream has no holes */
        rc_msg *f = frame_of(m.payload, m.payload_len, m.msg_id);
        if (!f) continue;
        deliver(rr, cr, m.msg_id, e, f, *(const char *)m.payload == 'T');
        rc_msg_unref(f);
    }
    if (cr->room && top > cr->last) {
        /* The stream does not hold the rest (no history, or an entry that is not roomcast's):
         * the room starts from its top with an empty history, so that recovery never
         * replays a run with a hole; members that had seen part of it are resynchronised. */
        if (cr->state != CR_SYNCING || cr->room->nmembers) members_resync(rr, cr);
        if (cr->room) {
            rc_room_reset(rr->t, cr->room, e);
            snprintf(cr->epoch, sizeof(cr->epoch), "%s", e);
            cr->last = cr->room->last_msg_id = cr->room->seq_msg_id = top;
        }
    }
    if (!cr->room) goto out;
    if (!drain(rr, cr)) {
        if (cr->room) sync_start(rr, cr);
        goto out;
    }
    cr->state = CR_LIVE;
    run_joins(rr, cr);
    if (cr->room) rc_room_settle(rr->t, cr->room);
out:
    cr->pins--;
    croom_release(cr);
}

/* ---- the engine's hooks ------------------------------------------------------------------ */

static void on_state(void *arg, bool available)
{
    rc_redisrooms *rr = arg;
    if (!available) {
        rc_warn("redis: unavailable; publishes are refused (unavailable) until it is back");
        rc_redispresence_stale(rr->t);
        return;
    }
    rc_info("redis: available");
    rc_redispresence_reassert(rr->t); /* what changed meanwhile did not reach Redis */
    /* Rooms whose read failed meanwhile start again. */
    uint32_t b = 0;
    for (rc_room *room = rc_rooms_next(rr->t, &b, NULL); room;
         room = rc_rooms_next(rr->t, &b, room))
        if (room->cr && room->cr->state != CR_LIVE && !room->cr->nreads) sync_start(rr, room->cr);
}

static void on_subscribed(void *arg, const char *name, size_t len, bool resubscribed)
{
    (void)resubscribed; /* the room's own state says what the read must cover */
    rc_redisrooms *rr = arg;
    rc_room *room = rc_rooms_find(rr->t, name, len);
    if (room && room->cr) sync_start(rr, room->cr);
}

static void on_message(void *arg, const rc_cluster_msg *m)
{
    rc_redisrooms *rr = arg;
    rc_room *room = rc_rooms_find(rr->t, m->room, m->room_len);
    if (!room || !room->cr) return;
    rc_croom *cr = room->cr;
    char e[RC_CLWIRE_EPOCH_MAX + 1];
    size_t el = m->epoch_len < RC_CLWIRE_EPOCH_MAX ? m->epoch_len : RC_CLWIRE_EPOCH_MAX;
    memcpy(e, m->epoch, el);
    e[el] = '\0';
    if (m->regressed) { /* never shown; the engine has asked for a new epoch */
        if (cr->state == CR_LIVE) sync_start(rr, cr);
        return;
    }
    rc_msg *f = frame_of(m->payload, m->payload_len, m->msg_id);
    if (!f) {
        rc_warn("redis: a message of room '%s' is not a roomcast frame; dropped", room->name);
        return;
    }
    if (cr->state == CR_LIVE && follows(cr, m->msg_id, e)) {
        deliver(rr, cr, m->msg_id, e, f, *(const char *)m->payload == 'T');
    } else {
        buffer(cr, m->msg_id, e, m->epoch_len, f, *(const char *)m->payload == 'T');
        if (cr->state == CR_LIVE) sync_start(rr, cr); /* a hole: read it */
    }
    rc_msg_unref(f);
}

/* Members across nodes (redispresence.h): a change made on another node. */
static void on_presence(void *arg, const char *name, size_t len, const rc_clwire_pres *e)
{
    rc_redisrooms *rr = arg;
    rc_room *room = rc_rooms_find(rr->t, name, len);
    if (room) rc_redispresence_event(rr->t, room, e);
}

/* The node's heartbeat found it unregistered: put its members back. */
static void on_registered(void *arg)
{
    rc_redisrooms *rr = arg;
    rc_redispresence_reassert(rr->t);
}

static size_t node_info(void *arg, char *out, size_t cap)
{
    rc_redisrooms *rr = arg;
    return rr->node_info ? rr->node_info(rr->node_info_arg, out, cap) : 0;
}

/* ---- API --------------------------------------------------------------------------------- */

rc_redisrooms *rc_redisrooms_new(rc_rooms *t, rc_loop *loop, const char *url, const char *prefix,
                                 char *err, size_t cap)
{
    rc_redisrooms *rr = calloc(1, sizeof(*rr));
    if (!rr) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    rr->t = t;
    uint64_t ttl = t->cfg.room_ttl / RC_NS_PER_SEC;
    rc_cluster_cfg cc = {.url = url, .prefix = prefix, .history_size = t->cfg.history_size,
                         .room_ttl_s = ttl > UINT32_MAX ? UINT32_MAX : (uint32_t)ttl};
    rc_cluster_hooks h = {.on_state = on_state, .on_message = on_message,
                          .on_subscribed = on_subscribed, .on_presence = on_presence,
                          .on_registered = on_registered, .node_info = node_info, .arg = rr};
    cc.node_interval_ns = t->cfg.node_interval;
    cc.node_ttl_ns = t->cfg.node_ttl;
    if (!(rr->c = rc_cluster_new(loop, &cc, &h, err, cap))) {
        free(rr);
        return NULL;
    }
    t->cluster = rr;
    return rr;
}

void rc_redisrooms_free(rc_redisrooms *rr)
{
    if (!rr) return;
    rr->t->cluster = NULL;
    rc_cluster_free(rr->c); /* pending calls end now (their endpoints are gone) */
    free(rr);
}

void rc_redisrooms_flush(rc_redisrooms *rr)
{
    rc_cluster_flush(rr->c);
}

bool rc_redisrooms_available(const rc_redisrooms *rr)
{
    return rc_cluster_available(rr->c);
}

void rc_redisrooms_stats_get(const rc_redisrooms *rr, rc_redisrooms_stats *out,
                             rc_cluster_stats *cl)
{
    *out = rr->st;
    rc_cluster_stats_get(rr->c, cl);
}

static int hold(rc_rooms *t, rc_endpoint *ep, const char *name, size_t len, uint8_t kind,
                const char *p, size_t n);

int rc_redisrooms_join_hold(rc_rooms *t, rc_endpoint *ep, const char *name, size_t len,
                            const char *p, size_t n)
{
    return hold(t, ep, name, len, CJ_REQUEST, p, n);
}

/* Whether ep waits for a CJ_MEMBER join of room. */
static bool member_waits(const rc_room *room, const rc_endpoint *ep)
{
    for (const cjoin *j = room->cr ? room->cr->joins : NULL; j; j = j->next)
        if (j->kind == CJ_MEMBER && j->w.ep == ep) return true;
    return false;
}

int rc_redisrooms_member_hold(rc_rooms *t, rc_endpoint *ep, const char *name, size_t len)
{
    rc_room *room = rc_rooms_find(t, name, len);
    if (room && member_waits(room, ep)) return 1;
    return hold(t, ep, name, len, CJ_MEMBER, NULL, 0);
}

/* Publishes the chat-port message p[0..n) of ep into room now (its errors are answered to ep
 * as lines). */
static void chat_publish(rc_redisrooms *rr, rc_endpoint *ep, rc_room *room, const char *p,
                         size_t n)
{
    rc_rooms *t = rr->t;
    rc_json_top q;
    const char *payload;
    size_t len;
    rc_msg *m = NULL;
    if (rc_json_scan(p, n, RC_ROOMPROTO_CUT, &q) != RC_JSON_OK ||
        !(m = rc_roomproto_cluster_payload(room->json_name, room->json_len, p, &q,
                                           ep->client_id, NULL, &payload, &len))) {
        unavailable(rr, ep, "out of memory");
        return;
    }
    rc_redisrooms_publish(t, ep, room, payload, len, 0, NULL, NULL);
    rc_msg_unref(m);
}

int rc_redisrooms_chat_publish(rc_rooms *t, rc_endpoint *ep, const char *name, size_t len,
                               const char *p, size_t n)
{
    rc_redisrooms *rr = t->cluster;
    rc_room *room = rc_rooms_find(t, name, len);
    if (!room)
        return unavailable(rr, ep, "redis is unavailable: not in the chat room yet; retry later");
    if (member_waits(room, ep)) { /* behind the sender's own join */
        cjoin *j = malloc(sizeof(*j) + n);
        if (!j) return unavailable(rr, ep, "out of memory");
        memcpy(j->text, p, n);
        j->n = n;
        j->kind = CJ_PUBLISH;
        j->next = NULL;
        wait_link(&j->w, ep);
        rc_croom *cr = room->cr;
        cr->joins_tail->next = j; /* not empty: the member's join is there */
        cr->joins_tail = j;
        return 0;
    }
    chat_publish(rr, ep, room, p, n);
    return 0;
}

static int hold(rc_rooms *t, rc_endpoint *ep, const char *name, size_t len, uint8_t kind,
                const char *p, size_t n)
{
    rc_redisrooms *rr = t->cluster;
    rc_room *room = rc_rooms_find(t, name, len);
    if (room && (!room->cr || room->cr->state == CR_LIVE)) return 0;
    if (!rc_cluster_available(rr->c))
        return unavailable(rr, ep, "redis is unavailable: the room cannot be brought in step "
                                   "with it; retry later");
    if (!room) {
        if (!(room = rc_rooms_open(t, name, len)))
            return rc_roomproto_error(t, ep, RC_RERR_ROOM_LIMIT,
                                      "the server holds %u rooms, the most it may",
                                      t->cfg.max_rooms);
        rc_croom *cr = calloc(1, sizeof(*cr));
        if (!cr || rc_cluster_sub(rr->c, name, len) < 0) {
            free(cr);
            rc_room_settle(t, room);
            return rc_roomproto_error(t, ep, RC_RERR_UNAVAILABLE, "out of memory");
        }
        cr->rr = rr;
        cr->room = room;
        cr->state = CR_SYNCING;
        room->cr = cr;
        sync_start(rr, cr); /* now if the channel is already subscribed */
    }
    rc_room_hold(t, room); /* no TTL sweep while joins wait for it */
    cjoin *j = malloc(sizeof(*j) + n);
    if (!j) return rc_roomproto_error(t, ep, RC_RERR_UNAVAILABLE, "out of memory");
    if (n) memcpy(j->text, p, n);
    j->n = n;
    j->kind = kind;
    j->next = NULL;
    wait_link(&j->w, ep);
    rc_croom *cr = room->cr;
    if (cr->joins_tail) cr->joins_tail->next = j;
    else cr->joins = j;
    cr->joins_tail = j;
    rr->st.joins_waited++;
    return 1;
}

static void on_published(void *arg, int status, const rc_cluster_seq *seq)
{
    cpub *pb = arg;
    rc_redisrooms *rr = pb->rr;
    rc_endpoint *ep = pb->w.ep;
    wait_unlink(&pb->w);
    if (ep) {
        rc_rooms *t = rr->t;
        const char *ref = pb->text, *room = pb->text + pb->ref_len;
        if (status == 0 && pb->ref_len) {
            char out[96 + RC_ACK_TOKEN_MAX + rc_json_escape_max(RC_ROOM_NAME_MAX)];
            int n = snprintf(out, sizeof(out),
                             "{\"type\":\"ack\",\"ref\":%.*s,\"room\":%.*s,\"msg_id\":%llu%s}",
                             (int)pb->ref_len, ref, (int)pb->room_len, room,
                             (unsigned long long)seq->msg_id,
                             seq->duplicate ? ",\"duplicate\":true" : "");
            rc_endpoint_send_text(ep, out, (size_t)n);
        } else if (status != 0) {
            rc_json_span rs = {.p = room, .len = pb->room_len, .type = RC_JSON_STRING};
            rc_json_span fs = {.p = ref, .len = pb->ref_len,
                               .type = pb->ref_len ? RC_JSON_STRING : RC_JSON_NONE};
            t->req_room = &rs;
            t->req_ref = &fs;
            unavailable(rr, ep, status == -ECONNRESET
                                    ? "the connection to redis was lost before it answered: the "
                                      "message may or may not have been sequenced; retry with "
                                      "the same idempotency_key"
                                    : "redis refused the publish (logged)");
            t->req_room = t->req_ref = NULL;
        }
    }
    free(pb);
}

int rc_redisrooms_publish(rc_rooms *t, rc_endpoint *ep, rc_room *room, const void *payload,
                          size_t len, uint64_t khash, const struct rc_statekey *sk,
                          const rc_json_span *ack)
{
    rc_redisrooms *rr = t->cluster;
    if (!rc_cluster_available(rr->c))
        return unavailable(rr, ep, "redis is unavailable: the message was not sequenced; "
                                   "retry later");
    size_t rl = ack && ack->type != RC_JSON_NONE ? ack->len : 0;
    cpub *pb = malloc(sizeof(*pb) + rl + room->json_len);
    if (!pb) return unavailable(rr, ep, "out of memory");
    pb->rr = rr;
    pb->ref_len = (uint16_t)rl;
    pb->room_len = room->json_len;
    if (rl) memcpy(pb->text, ack->p, rl);
    memcpy(pb->text + rl, room->json_name, room->json_len);
    char key[17], *copy;
    if (khash) snprintf(key, sizeof(key), "%016llx", (unsigned long long)khash);
    const void *pl = mark_keyed(payload, len, sk, &copy);
    int r = !pl ? -ENOMEM
                : rc_cluster_publish_keyed(rr->c, room->name, room->name_len, pl, len,
                                           khash ? key : NULL, khash ? 16 : 0,
                                           sk ? (sk->del ? 'd' : 's') : 0, sk ? sk->key : NULL,
                                           sk ? sk->len : 0, on_published, pb);
    free(copy); /* the engine copied it */
    if (r < 0) {
        free(pb);
        return unavailable(rr, ep, r == -ENOBUFS ? "redis is not keeping up: the message was "
                                                   "not sequenced; retry later"
                                                 : "redis is unavailable: the message was not "
                                                   "sequenced; retry later");
    }
    wait_link(&pb->w, ep);
    return 0;
}

/* ---- recovery beyond the room's copy ------------------------------------------------------ */

static void rec_unlink(rc_croom *cr, crec *x)
{
    for (crec **pp = &cr->recs; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            return;
        }
}

static void on_rec_read(void *arg, int status, const rc_cluster_range *range)
{
    crec *x = arg;
    rc_croom *cr = x->cr;
    rc_endpoint *ep = x->w.ep;
    wait_unlink(&x->w);
    rc_msg **frames = NULL;
    uint32_t count = 0;
    bool ok = false;
    if (cr) rec_unlink(cr, x);
    if (cr && cr->room && ep && status == 0 && x->gen == cr->gen && cr->state == CR_LIVE) {
        rc_redisrooms *rr = cr->rr;
        const char *e = rc_cluster_range_epoch(range);
        uint64_t last = cr->room->last_msg_id;
        uint64_t first = rc_cluster_range_first(range);
        size_t n = rc_cluster_range_count(range);
        ok = strcmp(e, cr->room->epoch) == 0 && first && first <= x->since + 1 &&
             (frames = calloc(last - x->since, sizeof(*frames))) != NULL;
        uint64_t at = x->since; /* the last id in frames */
        for (size_t i = 0; ok && i < n && at < last; i++) {
            rc_cluster_msg m;
            if (rc_cluster_range_get(range, i, &m) < 0 || m.msg_id != at + 1 ||
                !(frames[count] = frame_of(m.payload, m.payload_len, m.msg_id)))
                ok = false;
            else
                count++, at++;
        }
        /* what was delivered while the read was out and is not in it */
        for (uint32_t i = 0; ok && i < x->nbuf && at < last; i++) {
            if (x->buf[i].id <= at) continue;
            if (x->buf[i].id != at + 1) ok = false;
            else frames[count++] = rc_msg_ref(x->buf[i].frame), at++;
        }
        ok = ok && at == last;
        if (ok) rr->st.deep_recoveries++;
        rr->rep_ep = ep;
        rr->rep_room = cr->room;
        rr->rep_since = x->since;
        rr->rep_frames = ok ? frames : NULL;
        rr->rep_count = ok ? count : 0;
        rr->rep_used = false;
        cr->pins++;
        rc_roomproto_join(rr->t, ep, x->text, x->n); /* recovered:false when !ok */
        cr->pins--;
        rr->rep_ep = NULL;
        rr->rep_room = NULL;
        rr->rep_frames = NULL;
    } else if (ep) {
        /* the room went out of step or away meanwhile (or Redis failed): run it again as is
         * (it waits for the room if needed; no second read of this kind) */
        rc_redisrooms *rr = x->rr;
        rr->rep_ep = ep;
        rr->rep_room = NULL;
        rr->rep_frames = NULL;
        if (cr) cr->pins++;
        rc_roomproto_join(rr->t, ep, x->text, x->n);
        if (cr) cr->pins--;
        rr->rep_ep = NULL;
    }
    for (uint32_t i = 0; i < count; i++) rc_msg_unref(frames[i]);
    free(frames);
    bufs_free(x->buf, x->nbuf);
    free(x);
    if (cr) croom_release(cr);
}

int rc_redisrooms_recover_hold(rc_rooms *t, rc_endpoint *ep, rc_room *room, uint64_t since,
                               const char *epoch, size_t epoch_len, const char *p, size_t n)
{
    rc_redisrooms *rr = t->cluster;
    rc_croom *cr = room->cr;
    if (!cr || cr->state != CR_LIVE || rr->rep_ep == ep) return 0; /* running it again */
    uint64_t last = room->last_msg_id, first = rc_history_first_id(&room->hist);
    if (epoch_len != strlen(room->epoch) || memcmp(epoch, room->epoch, epoch_len) != 0 ||
        since >= last || (first && first <= since + 1) ||
        last - since > t->cfg.history_size || !rc_cluster_available(rr->c))
        return 0; /* answered as usual: recovered, or not, from what the node knows */
    crec *x = calloc(1, sizeof(*x) + n);
    if (!x) return 0;
    memcpy(x->text, p, n);
    x->n = n;
    x->since = since;
    x->cr = cr;
    x->rr = rr;
    x->gen = cr->gen;
    if (rc_cluster_read(rr->c, room->name, room->name_len, since,
                        (uint32_t)(last - since), on_rec_read, x) < 0) {
        free(x);
        return 0;
    }
    wait_link(&x->w, ep);
    x->next = cr->recs;
    cr->recs = x;
    return 1;
}

bool rc_redisrooms_replay(const rc_rooms *t, const rc_endpoint *ep, const rc_room *room,
                          uint64_t since)
{
    const rc_redisrooms *rr = t->cluster;
    return rr->rep_ep == ep && rr->rep_room == room && rr->rep_since == since &&
           rr->rep_frames && rr->rep_count == room->last_msg_id - since;
}

void rc_redisrooms_replay_send(rc_rooms *t, rc_endpoint *ep)
{
    rc_redisrooms *rr = t->cluster;
    for (uint32_t i = 0; i < rr->rep_count; i++) {
        rc_msg *f = rc_wire_of(rr->rep_frames[i], ep->wire);
        if (f == RC_WIRE_SKIP) continue;
        if (!f) {
            ep->ops->lost(ep);
            return;
        }
        ep->ops->replay(ep, f);
    }
    rr->rep_used = true;
}

/* ---- publishes by the server (HTTP API, roomcast.publish, workers) --------------------------- */

struct rc_redisrooms_pub {
    rc_redisrooms *rr;
    rc_redisrooms_pub_fn *cb; /* NULL once cancelled */
    void *arg;
};

static void on_published_as(void *arg, int status, const rc_cluster_seq *seq)
{
    rc_redisrooms_pub *h = arg;
    if (status != 0) h->rr->st.unavailable++;
    if (h->cb) h->cb(h->arg, status, status == 0 ? seq->msg_id : 0,
                     status == 0 && seq->duplicate);
    free(h);
}

rc_redisrooms_pub *rc_redisrooms_publish_as(rc_rooms *t, const char *name, size_t name_len,
                                            const void *payload, size_t len, uint64_t khash,
                                            const struct rc_statekey *sk,
                                            rc_redisrooms_pub_fn *cb, void *arg, int *err)
{
    rc_redisrooms *rr = t->cluster;
    rc_redisrooms_pub *h = malloc(sizeof(*h));
    if (!h) {
        *err = -ENOMEM;
        rr->st.unavailable++;
        return NULL;
    }
    *h = (rc_redisrooms_pub){.rr = rr, .cb = cb, .arg = arg};
    char key[17], *copy;
    if (khash) snprintf(key, sizeof(key), "%016llx", (unsigned long long)khash);
    const void *pl = mark_keyed(payload, len, sk, &copy);
    int r = !pl ? -ENOMEM
                : rc_cluster_publish_keyed(rr->c, name, name_len, pl, len, khash ? key : NULL,
                                           khash ? 16 : 0, sk ? (sk->del ? 'd' : 's') : 0,
                                           sk ? sk->key : NULL, sk ? sk->len : 0,
                                           on_published_as, h);
    free(copy); /* the engine copied it */
    if (r < 0) {
        free(h);
        *err = r;
        rr->st.unavailable++;
        return NULL;
    }
    return h;
}

void rc_redisrooms_pub_cancel(rc_redisrooms_pub *h)
{
    h->cb = NULL;
}

const char *rc_redisrooms_strerror(int status)
{
    switch (status) {
    case -ENOBUFS: return "redis is not keeping up: the message was not sequenced; retry later";
    case -ECONNRESET:
        return "the connection to redis was lost before it answered: the message may or may "
               "not have been sequenced; retry with the same idempotency_key";
    case -EPROTO: return "redis refused the publish (logged)";
    case -ENOMEM: return "out of memory";
    case -EINVAL: return "the room name is too long for a Redis key";
    default: return "redis is unavailable: the message was not sequenced; retry later";
    }
}

/* ---- members across nodes (redispresence.h) ------------------------------------------------ */

rc_cluster *rc_redisrooms_engine(rc_redisrooms *rr) { return rr->c; }

rc_redispresence_stats *rc_redisrooms_pstats(rc_redisrooms *rr) { return &rr->pst; }

void rc_redisrooms_set_node_info(rc_redisrooms *rr, rc_redisrooms_info_fn *fn, void *arg)
{
    rr->node_info = fn;
    rr->node_info_arg = arg;
}
