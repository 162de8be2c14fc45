/* cluster.c — publish through the sequencing script, subscribe per room, read back; see
 * cluster.h and docs/cluster.md (which repeats the scripts with their reasoning). */
#include "cluster/cluster.h"

#include <errno.h>
#include <stddef.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cluster/cluster_int.h"
#include "cluster/redis.h"
#include "core/hash.h"
#include "core/log.h"

#define DEFAULT_IDEM_TTL 300
/* hiredis buffers without limit; past this many unanswered calls a node stops adding to a
 * Redis that does not keep up (memory stays bounded, callers answer "overloaded"). */
#define DEFAULT_MAX_INFLIGHT 65536

/* ---- the scripts ----------------------------------------------------------------------------
 *
 * Lua numbers are doubles: msg_ids are exact up to 2^53 and are formatted with %.0f, because
 * Lua 5.1's tostring switches to exponent notation past 14 digits. */

/* The publish script is in clpub.c (rc_cluster__pub_script). */

/* KEYS: meta, stream, state
 * ARGV: first stream id to return ("<after + 1>-0"), max entries, candidate epoch, room ttl s
 * Returns {epoch, top, first kept msg_id or 0, {{id, {field, value, ...}}, ...},
 *          {state key, "<msg_id>:<payload>", ...}}.
 * A stream entry holds one publish call's messages (clpub.c): its id is the last one's msg_id,
 * so the entries from "<after + 1>-0" on hold every message after `after` (the first may hold a
 * few before it too), and at most max entries hold at least max messages; read_done splits
 * them and keeps exactly the messages asked for.
 * A room that does not exist in Redis is created here, empty, in the candidate epoch (and
 * expires like a published one unless it has members, clpub.c): its members learn an epoch at
 * once, so a client that joined before the first message can still recover with since/epoch on any node. Without it such clients held the
 * epoch "" and every rejoin was answered recovered:false. Whichever of this script and the publish
 * script runs first creates the epoch; the other finds it. */
static const char READ_SCRIPT[] =
    "local mp = redis.call('hmget', KEYS[1], 'e', 'p')\n"
    "local e = mp[1]\n"
    "if not e then\n"
    "  e = ARGV[3]\n"
    "  redis.call('del', KEYS[2], KEYS[3])\n"
    "  redis.call('hset', KEYS[1], 'e', e, 's', 0)\n"
    "  if tonumber(ARGV[4]) > 0 and not mp[2] then redis.call('expire', KEYS[1], ARGV[4]) end\n"
    "  return {e, 0, 0, {}, {}}\n"
    "end\n"
    "local top = tonumber(redis.call('hget', KEYS[1], 's') or '0')\n"
    "local first = 0\n"
    "local head = redis.call('xrange', KEYS[2], '-', '+', 'COUNT', 1)\n"
    "if #head > 0 then\n"
    "  local id, f = head[1][1], head[1][2]\n"
    "  first = tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1))\n"
    "  if f[1] == 'n' then first = first - tonumber(f[2]) + 1 end\n"
    "end\n"
    "local r = {}\n"
    "if tonumber(ARGV[2]) > 0 then\n"
    "  r = redis.call('xrange', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])\n"
    "end\n"
    "return {e, top, first, r, redis.call('hgetall', KEYS[3])}\n";

/* KEYS: meta, stream, state
 * ARGV: the epoch Redis went back in, a new epoch
 * Starts a new epoch (dropping the stream and the state) only if the room is still in the old
 * one: every node that notices may call it, the first one does it. Returns 1 when it renewed,
 * 0 otherwise. */
static const char RENEW_SCRIPT[] =
    "if redis.call('hget', KEYS[1], 'e') ~= ARGV[1] then return 0 end\n"
    "redis.call('del', KEYS[2], KEYS[3])\n"
    "redis.call('hset', KEYS[1], 'e', ARGV[2], 's', 0)\n"
    "return 1\n";

const char *const rc_cluster__script_text[SCRIPT_COUNT] = {
    rc_cluster__pub_script, READ_SCRIPT, RENEW_SCRIPT,
    rc_cluster__pres_script, rc_cluster__sync_script, rc_cluster__prune_script,
    rc_cluster__node_script, rc_cluster__members_script, rc_cluster__rooms_script,
    rc_cluster__nodes_script,
};
#define SCRIPT_TEXT rc_cluster__script_text /* the presence scripts are in clnodes.c */

/* ---- types --------------------------------------------------------------------------------- */

/* Subscription states of a room on the current subscriber connection. At most one SUBSCRIBE or
 * UNSUBSCRIBE per room is in flight, so every confirmation maps to one intent and the node knows
 * exactly when a room's subscription is active (on_subscribed); it also keeps us clear of how
 * hiredis's table of one callback per channel name treats a SUBSCRIBE and an UNSUBSCRIBE of the
 * same channel in flight together. A change of mind meanwhile is applied when the reply
 * arrives (reconcile). */
enum sub_state { SUB_IDLE, SUB_PENDING, SUB_ACTIVE, SUB_UNSUB_PENDING };

typedef struct sub {
    rc_hnode node;           /* in rc_cluster.subs, hashed by room name */
    uint32_t refs;           /* local members (rc_cluster_sub minus rc_cluster_unsub) */
    uint8_t state;           /* enum sub_state on the current connection */
    bool ever_active;        /* was active on some connection (next activation = resubscribe) */
    uint64_t last_id;        /* msg_id of the last message delivered, 0 before the first */
    uint8_t epoch_len;       /* length of epoch */
    char epoch[RC_CLWIRE_EPOCH_MAX + 1]; /* epoch of the last message delivered */
    size_t room_len;         /* length of room */
    char room[];             /* the room's name */
} sub;

/* One script call in flight; holds its own arguments so that a NOSCRIPT reply can be answered
 * by sending the same call as EVAL (which also caches the script again). */
typedef struct call {
    rc_cluster *c;           /* owner */
    int script;              /* SCRIPT_READ or SCRIPT_RENEW (internal: no callback) */
    rc_cluster_read_cb *read_cb; /* for SCRIPT_READ */
    void *arg;               /* the caller's argument */
    bool retried;            /* already resent once after NOSCRIPT */
    uint64_t after;          /* a read: messages after this msg_id */
    uint32_t max;            /* a read: at most this many */
    const char *room;        /* room name inside blob (for read results) */
    size_t room_len;
    int argc;                /* arguments after EVALSHA <sha> / EVAL <script> */
    const char *argv[14];
    size_t lens[14];
    char *end;               /* end of blob */
    char blob[];             /* argument bytes */
} call;


/* One message of a read, split out of its stream entry. */
typedef struct rmsg {
    uint64_t id;             /* its msg_id */
    const char *p;           /* its payload inside the reply, NULL for an entry not of ours */
    size_t len;
} rmsg;

struct rc_cluster_range {
    const call *k;           /* the read call */
    const redisReply *rp;    /* the script's reply (validated shape) */
    char epoch[RC_CLWIRE_EPOCH_MAX + 1]; /* NUL-terminated copy of the epoch, "" when none */
    uint64_t top, first;     /* last msg_id, oldest kept msg_id */
    rmsg *v;                 /* the messages read, in order */
    size_t n, cap;
};

/* ---- helpers ------------------------------------------------------------------------------- */

static void hb_clear(rc_cluster *c);

static void update_available(rc_cluster *c)
{
    bool now = rc_redis_up(c->pub) && c->sub_ready;
    if (now == c->available) return;
    c->available = now;
    hb_clear(c);
    if (c->h.on_state) c->h.on_state(c->h.arg, now);
    if (now) rc_cluster__node_beat(c); /* register at once, not a heartbeat later */
}

/* rc_cluster__new_epoch writes 16 hex digits. A random value per publish, not per node: a room that expired
 * and is created again must get an epoch its old clients cannot hold. splitmix64 seeded from
 * getrandom keeps this off the system-call path. */
void rc_cluster__new_epoch(rc_cluster *c, char out[17])
{
    uint64_t z = (c->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) out[i] = hex[(z >> (60 - 4 * i)) & 15];
    out[16] = '\0';
}


/* ---- script calls ------------------------------------------------------------------------ */

static void on_call_reply(rc_redis *r, redisReply *rp, void *arg);

static void call_free(call *k)
{
    k->c->inflight--;
    free(k);
}

static int call_send(call *k, bool by_body)
{
    rc_cluster *c = k->c;
    rc_cluster__batches_send(c); /* the publishes made before this call go before it */
    const char *argv[16];
    size_t lens[16];
    argv[0] = by_body ? "EVAL" : "EVALSHA";
    lens[0] = strlen(argv[0]);
    argv[1] = by_body ? SCRIPT_TEXT[k->script] : c->sha[k->script];
    lens[1] = strlen(argv[1]);
    memcpy(argv + 2, k->argv, (size_t)k->argc * sizeof(argv[0]));
    memcpy(lens + 2, k->lens, (size_t)k->argc * sizeof(lens[0]));
    return rc_redis_command(c->pub, on_call_reply, k, 2 + k->argc, argv, lens);
}

static void call_fail(call *k, int status)
{
    if (k->script == SCRIPT_RENEW) {
        /* The next message that shows the regression asks again. */
    } else {
        k->read_cb(k->arg, status, NULL);
    }
    call_free(k);
}

static bool entry_ok(const redisReply *e)
{
    return reply_is(e, REDIS_REPLY_ARRAY) && e->elements == 2 &&
           reply_is(e->element[0], REDIS_REPLY_STRING) &&
           reply_is(e->element[1], REDIS_REPLY_ARRAY);
}

static int range_add(rc_cluster_range *r, uint64_t id, const char *p, size_t len)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        rmsg *v = realloc(r->v, cap * sizeof(*v));
        if (!v) return -1;
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = (rmsg){.id = id, .p = p, .len = len};
    return 0;
}

/* split_entries lists the messages of the stream entries es (entry_ok) with msg_id > after
 * and >= r->first, at most max: an entry is one message (field d) or a batch (n, b). */
static int split_entries(rc_cluster_range *r, const redisReply *es, uint64_t after, uint32_t max)
{
    for (size_t i = 0; i < es->elements && r->n < max; i++) {
        const redisReply *id = es->element[i]->element[0], *fields = es->element[i]->element[1];
        const char *dash = memchr(id->str, '-', id->len);
        uint64_t last;
        if (!dash || rc_clwire_u64(id->str, (size_t)(dash - id->str), &last) < 0) continue;
        const redisReply *d = NULL, *n = NULL, *b = NULL;
        for (size_t f = 0; f + 1 < fields->elements; f += 2) {
            const redisReply *name = fields->element[f], *val = fields->element[f + 1];
            if (!reply_is(name, REDIS_REPLY_STRING) || !reply_is(val, REDIS_REPLY_STRING) ||
                name->len != 1)
                continue;
            if (name->str[0] == 'd') d = val;
            else if (name->str[0] == 'n') n = val;
            else if (name->str[0] == 'b') b = val;
        }
        uint64_t count;
        rc_clwire_batch bt;
        rc_clwire_msg m;
        if (d) {
            if (last > after && last >= r->first && range_add(r, last, d->str, d->len) < 0)
                return -1;
        } else if (n && b && rc_clwire_u64(n->str, n->len, &count) == 0 && count <= last &&
                   rc_clwire_batch_body(&bt, last - count + 1, count, r->epoch,
                                        strlen(r->epoch), b->str, b->len) == 0) {
            while (r->n < max && rc_clwire_batch_next(&bt, &m))
                if (m.msg_id > after && m.msg_id >= r->first &&
                    range_add(r, m.msg_id, m.payload, m.payload_len) < 0)
                    return -1;
        } else if (last > after && range_add(r, last, NULL, 0) < 0) {
            return -1; /* not ours: the caller sees it (rc_cluster_range_get fails) */
        }
    }
    return 0;
}

static void read_done(call *k, const redisReply *rp)
{
    /* {epoch or nil, top, first, entries} */
    if (!reply_is(rp, REDIS_REPLY_ARRAY) || rp->elements != 5 ||
        !(reply_is(rp->element[0], REDIS_REPLY_STRING) || reply_is(rp->element[0], REDIS_REPLY_NIL)) ||
        !reply_is(rp->element[1], REDIS_REPLY_INTEGER) ||
        !reply_is(rp->element[2], REDIS_REPLY_INTEGER) ||
        !reply_is(rp->element[3], REDIS_REPLY_ARRAY) ||
        !reply_is(rp->element[4], REDIS_REPLY_ARRAY) || rp->element[4]->elements % 2) {
        rc_error("redis: the read script returned an unexpected reply");
        call_fail(k, -EPROTO);
        return;
    }
    for (size_t i = 0; i < rp->element[3]->elements; i++) {
        if (!entry_ok(rp->element[3]->element[i])) {
            rc_error("redis: the read script returned a malformed stream entry");
            call_fail(k, -EPROTO);
            return;
        }
    }
    rc_cluster_range range = {.k = k, .rp = rp};
    const redisReply *e = rp->element[0];
    if (e->type == REDIS_REPLY_STRING) {
        size_t el = e->len > RC_CLWIRE_EPOCH_MAX ? RC_CLWIRE_EPOCH_MAX : e->len;
        memcpy(range.epoch, e->str, el);
        range.epoch[el] = '\0';
    }
    range.top = rp->element[1]->integer > 0 ? (uint64_t)rp->element[1]->integer : 0;
    range.first = rp->element[2]->integer > 0 ? (uint64_t)rp->element[2]->integer : 0;
    /* The oldest entry may hold messages older than the last history_size ones (the trim goes
     * by entries): they count as trimmed, so that what a read says is kept is exactly what a
     * per-message MAXLEN kept, on every node. */
    uint32_t h = k->c->history_size;
    if (h && range.first && range.top >= h && range.first < range.top - h + 1)
        range.first = range.top - h + 1;
    if (split_entries(&range, rp->element[3], k->after, k->max) < 0) {
        free(range.v);
        call_fail(k, -ENOMEM);
        return;
    }
    k->read_cb(k->arg, 0, &range);
    free(range.v);
    call_free(k);
}

static void on_call_reply(rc_redis *r, redisReply *rp, void *arg)
{
    call *k = arg;
    if (!rp) {
        call_fail(k, -ECONNRESET);
        return;
    }
    if (rp->type == REDIS_REPLY_ERROR) {
        if (!k->retried && rp->len >= 8 && memcmp(rp->str, "NOSCRIPT", 8) == 0) {
            /* The script cache was flushed (SCRIPT FLUSH, or a Redis that restarted faster than
             * we noticed): EVAL sends the body, which also caches it again for the EVALSHAs
             * that follow. */
            k->c->st.noscript++;
            k->retried = true;
            rc_warn("redis: script cache lost (NOSCRIPT); sending the script again");
            int rc = call_send(k, true);
            if (rc < 0) call_fail(k, -ECONNRESET);
            return;
        }
        rc_error("redis: script failed: %.*s", (int)rp->len, rp->str);
        call_fail(k, -EPROTO);
        return;
    }
    if (k->script == SCRIPT_READ) read_done(k, rp);
    else {
        if (reply_is(rp, REDIS_REPLY_INTEGER) && rp->integer == 1)
            rc_warn("redis: room '%.*s' started a new epoch: Redis had gone back (lost "
                    "acknowledged messages)", (int)k->room_len, k->room);
        call_free(k);
    }
}

/* call_new allocates a call with room for `extra` argument bytes. */
static call *call_new(rc_cluster *c, int script, size_t extra)
{
    call *k = malloc(sizeof(*k) + extra);
    if (!k) return NULL;
    memset(k, 0, sizeof(*k));
    c->inflight++;
    k->c = c;
    k->script = script;
    k->end = k->blob + extra;
    return k;
}

/* add appends an argument copied into the blob at *at (sized for it by the caller). */
static void add(call *k, char **at, const void *s, size_t n)
{
    if (n > (size_t)(k->end - *at)) abort(); /* the size computation below is wrong */
    memcpy(*at, s, n);
    k->argv[k->argc] = *at;
    k->lens[k->argc] = n;
    k->argc++;
    *at += n;
}

static int add_name(call *k, char **at, const char *prefix, enum rc_clwire_name kind,
                    const char *room, size_t room_len, const char *key, size_t key_len)
{
    size_t room_left = (size_t)(k->end - *at);
    int n = rc_clwire_name(*at, room_left < NAME_MAX_LEN ? room_left : NAME_MAX_LEN, prefix, kind,
                           room, room_len, key, key_len);
    if (n < 0) return -1;
    k->argv[k->argc] = *at;
    k->lens[k->argc] = (size_t)n;
    k->argc++;
    *at += n;
    return 0;
}

/* rc_cluster_publish and rc_cluster_publish_keyed are in clpub.c. */

int rc_cluster_read(rc_cluster *c, const char *room, size_t room_len, uint64_t after,
                    uint32_t max, rc_cluster_read_cb *cb, void *arg)
{
    if (!c->available) return -EAGAIN;
    if (room_len > NAME_MAX_LEN / 2) return -EINVAL;
    if (c->inflight >= c->max_inflight) return -ENOBUFS;
    if (after >= RC_CLWIRE_MSG_ID_MAX) after = RC_CLWIRE_MSG_ID_MAX;
    size_t name = strlen(c->prefix) + room_len + 8;
    call *k = call_new(c, SCRIPT_READ, 1 + 3 * name + 3 * 24 + 17 + room_len);
    if (!k) return -ENOMEM;
    k->read_cb = cb;
    k->arg = arg;
    k->after = after;
    k->max = max;
    char *at = k->blob, num[32];
    add(k, &at, "3", 1);
    if (add_name(k, &at, c->prefix, RC_CLWIRE_META, room, room_len, NULL, 0) < 0 ||
        add_name(k, &at, c->prefix, RC_CLWIRE_STREAM, room, room_len, NULL, 0) < 0 ||
        add_name(k, &at, c->prefix, RC_CLWIRE_STATE, room, room_len, NULL, 0) < 0) {
        call_free(k);
        return -EINVAL;
    }
    add(k, &at, num, (size_t)snprintf(num, sizeof(num), "%llu-0", (unsigned long long)after + 1));
    add(k, &at, num, (size_t)snprintf(num, sizeof(num), "%u", (unsigned)max));
    char epoch[17];
    rc_cluster__new_epoch(c, epoch);
    add(k, &at, epoch, 16);
    add(k, &at, num, (size_t)snprintf(num, sizeof(num), "%u", (unsigned)c->room_ttl_s));
    k->room = at;
    k->room_len = room_len;
    memcpy(at, room, room_len);
    int rc = call_send(k, false);
    if (rc < 0) {
        call_free(k);
        return rc == -ENOTCONN ? -EAGAIN : rc;
    }
    return 0;
}

const char *rc_cluster_range_epoch(const rc_cluster_range *r) { return r->epoch; }
uint64_t rc_cluster_range_top(const rc_cluster_range *r) { return r->top; }
uint64_t rc_cluster_range_first(const rc_cluster_range *r) { return r->first; }
size_t rc_cluster_range_count(const rc_cluster_range *r) { return r->n; }

int rc_cluster_range_get(const rc_cluster_range *r, size_t i, rc_cluster_msg *m)
{
    const rmsg *x = &r->v[i];
    memset(m, 0, sizeof(*m));
    m->msg_id = x->id;
    if (!x->p) return -1;
    m->room = r->k->room;
    m->room_len = r->k->room_len;
    m->epoch = r->epoch;
    m->epoch_len = strlen(r->epoch);
    m->payload = x->p;
    m->payload_len = x->len;
    return 0;
}

size_t rc_cluster_range_state_count(const rc_cluster_range *r)
{
    return r->rp->element[4]->elements / 2;
}

int rc_cluster_range_state_get(const rc_cluster_range *r, size_t i, rc_cluster_state *st)
{
    const redisReply *k = r->rp->element[4]->element[2 * i];
    const redisReply *v = r->rp->element[4]->element[2 * i + 1];
    memset(st, 0, sizeof(*st));
    if (!reply_is(k, REDIS_REPLY_STRING) || !reply_is(v, REDIS_REPLY_STRING)) return -1;
    const char *colon = memchr(v->str, ':', v->len);
    if (!colon || rc_clwire_u64(v->str, (size_t)(colon - v->str), &st->msg_id) < 0) return -1;
    st->key = k->str;
    st->key_len = k->len;
    st->payload = colon + 1;
    st->payload_len = v->len - (size_t)(colon + 1 - v->str);
    return 0;
}

/* ---- the publisher's handshake: load the scripts ------------------------------------------ */

static void on_script_loaded(rc_redis *r, redisReply *rp, void *arg)
{
    char *dst = arg; /* c->sha[i] */
    if (!rp) return;
    if (!reply_is(rp, REDIS_REPLY_STRING) || rp->len != 40) {
        rc_error("redis: SCRIPT LOAD failed: %.*s", rp->type == REDIS_REPLY_ERROR ? (int)rp->len : 0,
                 rp->type == REDIS_REPLY_ERROR ? rp->str : "");
        rc_redis_reset(r);
        return;
    }
    memcpy(dst, rp->str, 40);
    dst[40] = '\0';
}

static void pub_handshake(rc_redis *r, void *arg)
{
    rc_cluster *c = arg;
    for (int i = 0; i < SCRIPT_COUNT; i++) {
        const char *argv[3] = {"SCRIPT", "LOAD", SCRIPT_TEXT[i]};
        size_t lens[3] = {6, 4, strlen(SCRIPT_TEXT[i])};
        if (rc_redis_command_early(r, on_script_loaded, c->sha[i], 3, argv, lens) < 0) {
            rc_redis_reset(r);
            return;
        }
    }
}

static void pub_state(rc_redis *r, bool up, void *arg)
{
    update_available(arg);
}

/* ---- the subscriber ---------------------------------------------------------------------- */

static sub *sub_find(const rc_cluster *c, const char *room, size_t n)
{
    uint64_t h = rc_hash(room, n);
    for (rc_hnode *x = rc_htab_chain(&c->subs, h); x; x = x->next) {
        sub *s = (sub *)(void *)x;
        if (x->hash == h && s->room_len == n && memcmp(s->room, room, n) == 0) return s;
    }
    return NULL;
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *priv);

/* sub_command sends (UN)SUBSCRIBE for one channel. hiredis keeps the callback per channel. */
static int sub_command(rc_cluster *c, const char *verb, const char *ch, size_t n)
{
    redisAsyncContext *ac = rc_redis_context(c->sub);
    if (!ac) return -ENOTCONN;
    const char *argv[2] = {verb, ch};
    size_t lens[2] = {strlen(verb), n};
    return redisAsyncCommandArgv(ac, on_sub_reply, c, 2, argv, lens) == REDIS_OK ? 0 : -ENOTCONN;
}

static void sub_free(rc_cluster *c, sub *s)
{
    rc_htab_remove(&c->subs, &s->node);
    c->st.rooms--;
    free(s);
}

/* reconcile moves s one step towards what is wanted (subscribed iff refs > 0); frees it when it
 * is neither wanted nor subscribed. s may be gone on return. */
static void reconcile(rc_cluster *c, sub *s)
{
    bool want = s->refs > 0;
    if (!want && s->state == SUB_IDLE) {
        sub_free(c, s);
        return;
    }
    if (!c->sub_ready) return;
    enum sub_state next = s->state;
    const char *verb = NULL;
    if (want && s->state == SUB_IDLE) verb = "SUBSCRIBE", next = SUB_PENDING;
    else if (!want && s->state == SUB_ACTIVE) verb = "UNSUBSCRIBE", next = SUB_UNSUB_PENDING;
    if (!verb) return;
    char ch[NAME_MAX_LEN];
    int n = rc_clwire_name(ch, sizeof(ch), c->prefix, RC_CLWIRE_CHANNEL, s->room, s->room_len,
                           NULL, 0);
    if (n < 0 || sub_command(c, verb, ch, (size_t)n) < 0) {
        /* Only a connection being torn down refuses; the reconnect renews every room. */
        rc_redis_reset(c->sub);
        return;
    }
    s->state = (uint8_t)next;
}

/* renew_epoch asks Redis for a new epoch for s's room if it is still in the epoch e. */
static void renew_epoch(rc_cluster *c, const sub *s, const char *e, size_t el)
{
    size_t name = strlen(c->prefix) + s->room_len + 8;
    call *k = call_new(c, SCRIPT_RENEW, 1 + 3 * name + el + 16 + s->room_len);
    if (!k) return;
    char *at = k->blob;
    add(k, &at, "3", 1);
    if (add_name(k, &at, c->prefix, RC_CLWIRE_META, s->room, s->room_len, NULL, 0) < 0 ||
        add_name(k, &at, c->prefix, RC_CLWIRE_STREAM, s->room, s->room_len, NULL, 0) < 0 ||
        add_name(k, &at, c->prefix, RC_CLWIRE_STATE, s->room, s->room_len, NULL, 0) < 0) {
        call_free(k);
        return;
    }
    add(k, &at, e, el);
    char epoch[17];
    rc_cluster__new_epoch(c, epoch);
    add(k, &at, epoch, 16);
    k->room = at;
    k->room_len = s->room_len;
    memcpy(at, s->room, s->room_len);
    if (call_send(k, false) < 0) call_free(k);
}

static void deliver_one(rc_cluster *c, sub *s, const rc_clwire_msg *wp);

/* deliver hands up the message, or each message of the batch, in a channel message. */
static void deliver(rc_cluster *c, sub *s, const redisReply *payload)
{
    rc_clwire_msg w;
    rc_clwire_batch b;
    if (rc_clwire_msg_decode(payload->str, payload->len, &w) == 0) {
        deliver_one(c, s, &w);
    } else if (rc_clwire_batch_decode(payload->str, payload->len, &b) == 0) {
        /* s stays: on_message cannot end a subscription (unsub only changes refs; the
         * entry goes when Redis confirms, in a later reply) */
        while (rc_clwire_batch_next(&b, &w)) deliver_one(c, s, &w);
    } else {
        c->st.bad_messages++;
        rc_warn("redis: dropped a message of unknown format on the channel of room '%.*s'",
                (int)s->room_len, s->room);
    }
}

static void deliver_one(rc_cluster *c, sub *s, const rc_clwire_msg *wp)
{
    rc_clwire_msg w = *wp;
    bool same_epoch = w.epoch_len == s->epoch_len && memcmp(w.epoch, s->epoch, w.epoch_len) == 0;
    rc_cluster_msg m = {
        .room = s->room,
        .room_len = s->room_len,
        .msg_id = w.msg_id,
        .epoch = w.epoch,
        .epoch_len = w.epoch_len,
        .payload = w.payload,
        .payload_len = w.payload_len,
        .gap = s->last_id != 0 && (!same_epoch || w.msg_id != s->last_id + 1),
        /* The same epoch but not past what this node already delivered: Redis lost messages
         * it had acknowledged (a crash with appendfsync everysec, a failover to a replica
         * that was behind) and is handing out their msg_ids again. */
        .regressed = s->last_id != 0 && same_epoch && w.msg_id <= s->last_id,
    };
    if (m.regressed) {
        c->st.regressions++;
        renew_epoch(c, s, w.epoch, w.epoch_len);
        c->st.delivered++;
        c->st.gaps++;
        /* last_id stays: every reused id is flagged until the new epoch arrives */
        if (c->h.on_message) c->h.on_message(c->h.arg, &m);
        return;
    }
    s->last_id = w.msg_id;
    if (!same_epoch) {
        memcpy(s->epoch, w.epoch, w.epoch_len);
        s->epoch_len = (uint8_t)w.epoch_len;
    }
    c->st.delivered++;
    if (m.gap) c->st.gaps++;
    if (c->h.on_message) c->h.on_message(c->h.arg, &m);
}

static bool is_ctl(const rc_cluster *c, const redisReply *ch)
{
    return ch->len == c->ctl_len && memcmp(ch->str, c->ctl, c->ctl_len) == 0;
}

/* ---- heartbeat ------------------------------------------------------------------------------
 *
 * A connection can die without an EOF (Redis frozen or paused, a network partition, a NAT that
 * forgot the flow). Every health_interval the publisher PUBLISHes "hb:<n>" on this node's own
 * control channel; the subscriber must hand it back. No reply to the PUBLISH within
 * health_timeout: the publisher is reset. A reply saying nobody received it, or the message not
 * arriving in time: the subscriber is reset. Either way the node turns unavailable and its
 * connections are rebuilt, so a silent failure behaves like a loud one. One heartbeat per node
 * per interval, on a channel only this node listens to. */

static void hb_clear(rc_cluster *c)
{
    c->hb_sent = 0;
    c->hb_replied = false;
}

static void on_hb_reply(rc_redis *r, redisReply *rp, void *arg)
{
    rc_cluster *c = arg;
    if (!rp || !c->hb_sent) return;
    c->hb_replied = true;
    if (rp->type == REDIS_REPLY_INTEGER && rp->integer == 0 && c->sub_ready) {
        /* Redis says our subscriber is not on its channel any more. */
        rc_warn("redis: this node's subscription is gone (heartbeat had no receiver); reconnecting");
        hb_clear(c);
        rc_redis_reset(c->sub);
    }
}

static void on_health_timer(rc_loop *loop, rc_timer *t)
{
    rc_cluster *c = (rc_cluster *)(void *)((char *)t - offsetof(rc_cluster, health_timer));
    uint64_t now = rc_loop_now(loop);
    rc_timer_start(loop, t, now + c->health_interval_ns);
    if (!c->available) {
        hb_clear(c);
        return;
    }
    if (c->hb_sent) {
        if (now - c->hb_sent < c->health_timeout_ns) return;
        bool pub_stuck = !c->hb_replied;
        rc_warn("redis: no heartbeat through %s for %llu ms; reconnecting it",
                pub_stuck ? "the publisher" : "the subscriber",
                (unsigned long long)((now - c->hb_sent) / RC_NS_PER_MS));
        c->st.heartbeat_failures++;
        hb_clear(c);
        rc_redis_reset(pub_stuck ? c->pub : c->sub);
        return;
    }
    char msg[32];
    int n = snprintf(msg, sizeof(msg), "hb:%llu", (unsigned long long)++c->hb_seq);
    const char *argv[3] = {"PUBLISH", c->ctl, msg};
    size_t lens[3] = {7, c->ctl_len, (size_t)n};
    rc_cluster__batches_send(c);
    if (rc_redis_command(c->pub, on_hb_reply, c, 3, argv, lens) == 0) {
        c->hb_sent = now;
        c->hb_replied = false;
    }
}

static void on_ctl_message(rc_cluster *c, const redisReply *payload)
{
    char want[32];
    int n = snprintf(want, sizeof(want), "hb:%llu", (unsigned long long)c->hb_seq);
    if (c->hb_sent && reply_is(payload, REDIS_REPLY_STRING) && payload->len == (size_t)n &&
        memcmp(payload->str, want, (size_t)n) == 0)
        hb_clear(c);
}

/* on_sub_reply gets every reply of the subscriber: ["subscribe"|"unsubscribe", ch, count] and
 * ["message", ch, payload]; NULL when the connection is going away (on_sub_state cleans up). */
static void on_sub_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    rc_cluster *c = priv;
    const redisReply *rp = reply;
    if (!rp || rp->type != REDIS_REPLY_ARRAY || rp->elements != 3 ||
        !reply_is(rp->element[0], REDIS_REPLY_STRING) || !reply_is(rp->element[1], REDIS_REPLY_STRING))
        return;
    const char *kind = rp->element[0]->str;
    const redisReply *ch = rp->element[1];
    if (is_ctl(c, ch)) {
        if (strcmp(kind, "subscribe") == 0 && !c->sub_ready) {
            c->sub_ready = true;
            /* Renew every room; reconcile may free entries, so save the successor first. */
            uint32_t b = 0;
            rc_hnode *x = rc_htab_next(&c->subs, &b, NULL);
            while (x) {
                rc_hnode *next = rc_htab_next(&c->subs, &b, x);
                reconcile(c, (sub *)(void *)x);
                x = next;
            }
            update_available(c);
        }
        if (strcmp(kind, "message") == 0) on_ctl_message(c, rp->element[2]);
        return;
    }
    const char *room;
    size_t room_len;
    if (rc_clwire_channel_room(ch->str, ch->len, c->prefix, &room, &room_len) < 0) return;
    sub *s = sub_find(c, room, room_len);
    if (!s) return;
    if (strcmp(kind, "message") == 0) {
        /* Until an UNSUBSCRIBE is confirmed the subscription is live and contiguous: a member
         * who joined meanwhile gets those messages too. */
        if ((s->state == SUB_ACTIVE || s->state == SUB_UNSUB_PENDING) && s->refs > 0 &&
            reply_is(rp->element[2], REDIS_REPLY_STRING)) {
            const redisReply *pl = rp->element[2];
            if (pl->len >= 3 && memcmp(pl->str, "p1:", 3) == 0) rc_cluster__presence_deliver(c, s->room, s->room_len, pl);
            else deliver(c, s, pl);
        }
    } else if (strcmp(kind, "subscribe") == 0 && s->state == SUB_PENDING) {
        bool resub = s->ever_active;
        s->state = SUB_ACTIVE;
        s->ever_active = true;
        if (s->refs == 0) {
            reconcile(c, s);
            return;
        }
        if (c->h.on_subscribed) c->h.on_subscribed(c->h.arg, s->room, s->room_len, resub);
    } else if (strcmp(kind, "unsubscribe") == 0 && s->state == SUB_UNSUB_PENDING) {
        s->state = SUB_IDLE;
        /* A room left by everyone forgets what it saw: a later member starts a new seam. */
        if (s->refs == 0) {
            s->last_id = 0;
            s->epoch_len = 0;
            s->ever_active = false;
        }
        reconcile(c, s);
    }
}

static void sub_state(rc_redis *r, bool up, void *arg)
{
    rc_cluster *c = arg;
    if (up) {
        /* The control channel first (the heartbeat comes back through it); rooms are renewed
         * once it is confirmed. Being on it for the connection's whole life also keeps the
         * subscription count above zero, so hiredis never sees the connection leave subscribed
         * mode while rooms come and go. */
        if (sub_command(c, "SUBSCRIBE", c->ctl, c->ctl_len) < 0) rc_redis_reset(r);
        return;
    }
    c->sub_ready = false;
    uint32_t b = 0;
    rc_hnode *x = rc_htab_next(&c->subs, &b, NULL);
    while (x) {
        rc_hnode *next = rc_htab_next(&c->subs, &b, x);
        sub *s = (sub *)(void *)x;
        s->state = SUB_IDLE;
        reconcile(c, s); /* frees rooms nobody wants any more */
        x = next;
    }
    update_available(c);
}

int rc_cluster_sub(rc_cluster *c, const char *room, size_t room_len)
{
    if (room_len > NAME_MAX_LEN / 2) return -EINVAL;
    sub *s = sub_find(c, room, room_len);
    if (!s) {
        s = calloc(1, sizeof(*s) + room_len);
        if (!s) return -ENOMEM;
        memcpy(s->room, room, room_len);
        s->room_len = room_len;
        if (rc_htab_insert(&c->subs, &s->node, rc_hash(room, room_len)) < 0) {
            free(s);
            return -ENOMEM;
        }
        c->st.rooms++;
    }
    if (s->refs++ == 0) reconcile(c, s);
    return 0;
}

int rc_cluster_unsub(rc_cluster *c, const char *room, size_t room_len)
{
    sub *s = sub_find(c, room, room_len);
    if (!s || s->refs == 0) return -ENOENT;
    if (--s->refs == 0) reconcile(c, s);
    return 0;
}

bool rc_cluster_subscribed(const rc_cluster *c, const char *room, size_t room_len)
{
    const sub *s = sub_find(c, room, room_len);
    return s && s->state == SUB_ACTIVE && s->refs > 0 && c->sub_ready;
}

/* ---- lifetime ------------------------------------------------------------------------------ */

static bool prefix_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > PREFIX_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

rc_cluster *rc_cluster_new(rc_loop *loop, const rc_cluster_cfg *cfg, const rc_cluster_hooks *h,
                           char *err, size_t cap)
{
    rc_clwire_url url;
    const char *why;
    if (rc_clwire_url_parse(cfg->url, strlen(cfg->url), &url, &why) < 0) {
        snprintf(err, cap, "bad redis URL '%s': %s", cfg->url, why);
        return NULL;
    }
    const char *prefix = cfg->prefix ? cfg->prefix : "rc";
    if (!prefix_ok(prefix)) {
        snprintf(err, cap, "bad redis key prefix '%s': 1 to %d letters, digits, '.', '_' or '-'",
                 prefix, PREFIX_MAX);
        return NULL;
    }
    rc_cluster *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    c->loop = loop;
    c->h = *h;
    strcpy(c->prefix, prefix);
    c->history_size = cfg->history_size;
    c->room_ttl_s = cfg->room_ttl_s;
    c->idem_ttl_s = cfg->idem_ttl_s ? cfg->idem_ttl_s : DEFAULT_IDEM_TTL;
    c->max_inflight = cfg->max_inflight ? cfg->max_inflight : DEFAULT_MAX_INFLIGHT;
    if (getrandom(&c->rng, sizeof(c->rng), 0) != (ssize_t)sizeof(c->rng))
        c->rng = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)c ^ rc_clock_ns();
    rc_cluster__new_epoch(c, c->node_id);
    c->ctl_len = (size_t)snprintf(c->ctl, sizeof(c->ctl), "%s:ctl:%s", c->prefix, c->node_id);
    c->health_interval_ns = cfg->health_interval_ns ? cfg->health_interval_ns : RC_NS_PER_SEC;
    c->health_timeout_ns = cfg->health_timeout_ns ? cfg->health_timeout_ns : 3 * RC_NS_PER_SEC;
    rc_timer_init(&c->health_timer, on_health_timer);
    rc_timer_start(loop, &c->health_timer, rc_loop_now(loop) + c->health_interval_ns);
    c->node_interval_ns = cfg->node_interval_ns ? cfg->node_interval_ns : RC_NS_PER_SEC;
    c->node_ttl_ns = cfg->node_ttl_ns ? cfg->node_ttl_ns : 5 * RC_NS_PER_SEC;
    rc_timer_init(&c->node_timer, rc_cluster__node_timer);
    rc_timer_init(&c->batch_timer, rc_cluster__batch_timer);
    rc_timer_start(loop, &c->node_timer, rc_loop_now(loop) + c->node_interval_ns);
    rc_redis_opts o = {
        .connect_timeout_ns = cfg->connect_timeout_ns,
        .backoff_min_ns = cfg->backoff_min_ns,
        .backoff_max_ns = cfg->backoff_max_ns,
        .arg = c,
    };
    /* Connections are named "<prefix>:<node id>:pub|sub" in CLIENT LIST. */
    char cname[PREFIX_MAX + 24];
    snprintf(cname, sizeof(cname), "%s:%s:pub", c->prefix, c->node_id);
    o.client_name = cname;
    o.name = "publisher";
    o.on_state = pub_state;
    o.on_handshake = pub_handshake;
    if (!(c->pub = rc_redis_new(loop, &url, &o, err, cap))) goto err;
    snprintf(cname, sizeof(cname), "%s:%s:sub", c->prefix, c->node_id);
    o.name = "subscriber";
    o.on_state = sub_state;
    o.on_handshake = NULL;
    if (!(c->sub = rc_redis_new(loop, &url, &o, err, cap))) goto err;
    rc_redis_start(c->pub);
    rc_redis_start(c->sub);
    return c;
err:
    rc_timer_stop(loop, &c->health_timer);
    rc_timer_stop(loop, &c->node_timer);
    rc_htab_release(&c->open);
    rc_redis_free(c->pub);
    free(c);
    return NULL;
}

void rc_cluster_free(rc_cluster *c)
{
    if (!c) return;
    /* Callbacks run with NULL (-ECONNRESET) while the connections close; no state reports. */
    c->h.on_state = NULL;
    rc_timer_stop(c->loop, &c->health_timer);
    rc_timer_stop(c->loop, &c->node_timer);
    rc_timer_stop(c->loop, &c->batch_timer);
    rc_cluster__batches_fail(c); /* publishes not sent yet end like those in flight */
    rc_redis_free(c->pub);
    rc_redis_free(c->sub);
    rc_htab_release(&c->open);
    uint32_t b = 0;
    rc_hnode *x = rc_htab_next(&c->subs, &b, NULL);
    while (x) {
        rc_hnode *next = rc_htab_next(&c->subs, &b, x);
        free(x);
        x = next;
    }
    rc_htab_release(&c->subs);
    free(c);
}

bool rc_cluster_available(const rc_cluster *c) { return c->available; }

const char *rc_cluster_node_id(const rc_cluster *c) { return c->node_id; }

void rc_cluster_flush(rc_cluster *c)
{
    rc_cluster__batches_send(c);
    rc_redis_flush(c->pub);
    rc_redis_flush(c->sub);
}

void rc_cluster_stats_get(const rc_cluster *c, rc_cluster_stats *out)
{
    *out = c->st;
    out->publisher_up = rc_redis_up(c->pub);
    out->subscriber_up = c->sub_ready;
    out->inflight = c->inflight;
    rc_redis_stats rs;
    rc_redis_stats_get(c->pub, &rs);
    out->pub_commands = rs.commands;
    out->pub_writes = rs.writes;
}
