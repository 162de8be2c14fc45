/* clpub.c — the publish path: a room's publishes of one loop iteration sequenced by one script
 * call; see cluster.h (rc_cluster_publish) and docs/cluster.md ("The sequencing script").
 *
 * Why batches: each redis.call inside a script costs Redis about 1 µs, and a script per message
 * made six of them (bench/RESULTS.md, "Cluster over Redis"): Redis spent 9× a pipelined PUBLISH
 * per message. The node already sends everything of one loop iteration in one write; here the
 * publishes of one room in that iteration also become one EVALSHA: one HMGET, one HINCRBY by k,
 * one XADD of one stream entry holding the k messages and one XTRIM, the TTL once, and one
 * PUBLISH of the batch form (clwire.h) with the same bytes, which every node decodes without
 * allocating and delivers message by message; reads split the entries again (cluster.c), so
 * recovery sees one message per msg_id as before. On the node it saves,
 * per message, hiredis's command formatting, a reply object and a channel message's reply
 * objects (the command is formatted here, once, as RESP).
 *
 * Order: a batch is sent at the end of the loop iteration (rc_cluster_flush, from the
 * before-sleep hook, or a zero-delay timer for callers without one), and before any other
 * command this node sends on the publisher (rc_cluster__batches_send), so that a room's
 * publishes keep their place relative to this node's presence changes and reads of the room.
 * Publishes of one room keep their call order inside the batch; rooms have no order between
 * them anyway.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_int.h"
#include "cluster/redis.h"
#include "core/hash.h"
#include "core/log.h"

/* Messages per script call at most: bounds the time Redis spends in one script (other clients
 * wait meanwhile). A room with more publishes in one iteration gets several calls. */
#define BATCH_MAX 256

/* KEYS: meta, stream, state, then the idempotency records of the batch's keyed messages
 * ARGV: history size, room ttl s, candidate epoch, channel, idempotency ttl s, n (messages),
 *       body (the n messages in the batch form's body, clwire.h: "<len>:<payload>..."), then
 *       6 per message that has an idempotency key or a state op, in message order: its index
 *       (1..n), the first and last byte of its "<len>:<payload>" in body (1-based), its
 *       idempotency record (index into KEYS, 0: none), state op ("", "s", "d"), state key.
 * The node builds the body, so a plain message costs the script no argument and no string of
 * its own: the body goes into the stream and the PUBLISH as it is.
 * Returns {epoch, base, then for each idempotent repeat: its index, "<msg_id>:<epoch>" of the
 * earlier publish}: the other messages got base + 1, base + 2, ... in order. A repeat publishes
 * and changes nothing (it is cut out of the body); a repeat of a key earlier in the same batch
 * is answered the same way.
 * Then, as the script per message did (docs/cluster.md): the room's meta hash holds the epoch
 * (created with the candidate when missing) and the last msg_id; the stream gets one entry per
 * call, its id the last msg_id of the call: field d = the payload for one message, fields
 * n = count and b = the body for more; it is trimmed (MINID) to the entries holding the last
 * history-size msg_ids each time the msg_ids pass a multiple of 64 (so the stream holds up to
 * about 64 + a batch more than the history; readers treat everything older than the last
 * history-size msg_ids as trimmed: cluster.c read_done, so what they see does not depend on
 * when the trim ran); an XADD refused because the stream is already past the new
 * msg_ids (the meta hash lost what the stream kept) starts a new epoch with these messages from
 * msg_id 1; the state hash changes with the msg_ids; the keys expire room-ttl after the last
 * publish only while the room has no members (the meta hash's p, kept by the presence
 * scripts); one PUBLISH: "r1:..." for one message, the batch form "r2:..." for more.
 * Lua numbers are doubles: msg_ids are exact up to 2^53 and formatted with %.0f. */
const char rc_cluster__pub_script[] =
    "local meta, stream, state = KEYS[1], KEYS[2], KEYS[3]\n"
    "local hist, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local n, body = tonumber(ARGV[6]), ARGV[7]\n"
    "local x = (#ARGV - 7) / 6\n"
    "local dup, rep, seen, ndup = {}, {}, {}, 0\n"
    "for q = 0, x - 1 do\n"
    "  local a = 8 + 6 * q\n"
    "  local i, ki = tonumber(ARGV[a]), tonumber(ARGV[a + 3])\n"
    "  if ki > 0 then\n"
    "    local key = KEYS[ki]\n"
    "    if seen[key] then\n"
    "      rep[i] = seen[key]\n"
    "      ndup = ndup + 1\n"
    "    else\n"
    "      local prev = redis.call('get', key)\n"
    "      if prev then dup[i] = prev; ndup = ndup + 1 else seen[key] = i end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local mp = redis.call('hmget', meta, 'e', 'p')\n"
    "local e, kept = mp[1], mp[2]\n"
    "local k = n - ndup\n"
    "local ret = {e or '', 0}\n"
    "local idof = {}\n"
    "if k > 0 then\n"
    "  if not e then\n"
    "    e = ARGV[3]\n"
    "    redis.call('del', stream, state)\n"
    "    redis.call('hset', meta, 'e', e, 's', 0)\n"
    "  end\n"
    "  local base = redis.call('hincrby', meta, 's', k) - k\n"
    "  local kb = body\n"
    "  if ndup > 0 then\n"
    "    local parts, from = {}, 1\n"
    "    for q = 0, x - 1 do\n"
    "      local a = 8 + 6 * q\n"
    "      local i = tonumber(ARGV[a])\n"
    "      if dup[i] or rep[i] then\n"
    "        parts[#parts + 1] = string.sub(body, from, tonumber(ARGV[a + 1]) - 1)\n"
    "        from = tonumber(ARGV[a + 2]) + 1\n"
    "      end\n"
    "    end\n"
    "    parts[#parts + 1] = string.sub(body, from)\n"
    "    kb = table.concat(parts)\n"
    "  end\n"
    "  local one\n"
    "  if k == 1 then one = string.sub(kb, string.find(kb, ':', 1, true) + 1) end\n"
    "  if hist > 0 then\n"
    "    local function add(last)\n"
    "      if k == 1 then return redis.pcall('xadd', stream, last .. '-0', 'd', one) end\n"
    "      return redis.pcall('xadd', stream, last .. '-0', 'n', k, 'b', kb)\n"
    "    end\n"
    "    local r = add(string.format('%.0f', base + k))\n"
    "    if type(r) == 'table' and r.err then\n"
    "      e = ARGV[3]\n"
    "      base = 0\n"
    "      redis.call('del', stream, state)\n"
    "      redis.call('hset', meta, 'e', e, 's', k)\n"
    "      r = add(string.format('%.0f', k))\n"
    "      if type(r) == 'table' and r.err then return r end\n"
    "    end\n"
    "    local keep = base + k - hist + 1\n"
    "    if keep > 1 and math.floor((base + k) / 64) ~= math.floor(base / 64) then\n"
    "      redis.call('xtrim', stream, 'MINID', string.format('%.0f', keep) .. '-0')\n"
    "    end\n"
    "  end\n"
    "  local before = 0\n"
    "  for q = 0, x - 1 do\n"
    "    local a = 8 + 6 * q\n"
    "    local i = tonumber(ARGV[a])\n"
    "    if dup[i] or rep[i] then\n"
    "      before = before + 1\n"
    "    else\n"
    "      local id = string.format('%.0f', base + i - before)\n"
    "      idof[i] = id\n"
    "      local op = ARGV[a + 4]\n"
    "      if op == 's' then\n"
    "        local c = string.find(body, ':', tonumber(ARGV[a + 1]), true)\n"
    "        redis.call('hset', state, ARGV[a + 5],\n"
    "                   id .. ':' .. string.sub(body, c + 1, tonumber(ARGV[a + 2])))\n"
    "      elseif op == 'd' then\n"
    "        redis.call('hdel', state, ARGV[a + 5])\n"
    "      end\n"
    "      local ki = tonumber(ARGV[a + 3])\n"
    "      if ki > 0 then redis.call('set', KEYS[ki], id .. ':' .. e, 'EX', ARGV[5]) end\n"
    "    end\n"
    "  end\n"
    "  if ttl > 0 and not kept then\n"
    "    redis.call('expire', meta, ttl)\n"
    "    redis.call('expire', stream, ttl)\n"
    "    redis.call('expire', state, ttl)\n"
    "  end\n"
    "  local first = string.format('%.0f', base + 1)\n"
    "  if k == 1 then\n"
    "    redis.call('publish', ARGV[4], 'r1:' .. first .. ':' .. e .. ':' .. one)\n"
    "  else\n"
    "    redis.call('publish', ARGV[4], 'r2:' .. first .. ':' .. k .. ':' .. e .. ':' .. kb)\n"
    "  end\n"
    "  ret = {e, base}\n"
    "end\n"
    "for q = 0, x - 1 do\n"
    "  local i = tonumber(ARGV[8 + 6 * q])\n"
    "  if dup[i] or rep[i] then\n"
    "    ret[#ret + 1] = i\n"
    "    ret[#ret + 1] = dup[i] or (idof[rep[i]] .. ':' .. e)\n"
    "  end\n"
    "end\n"
    "return ret\n";

/* One message of a batch: its callback, where it is in the body and its extras. */
typedef struct bmsg {
    rc_cluster_pub_cb *cb;   /* called exactly once */
    void *arg;
    size_t seg, seg_end;     /* its "<len>:<payload>" in the body: [seg, seg_end) */
    size_t key, key_len;     /* idempotency key in xbuf (key_len 0: none) */
    size_t skey, skey_len;   /* state key in xbuf */
    char op;                 /* state op: 0, 's' or 'd' */
    const redisReply *dup;   /* while the reply is handled: "<msg_id>:<epoch>" of a repeat */
} bmsg;

/* A room's publishes of this iteration (open), then the script call carrying them. */
struct rc_cluster__batch {
    rc_hnode node;           /* in c->open by room, while open */
    rc_cluster__batch *next; /* c->open_first list (send order), while open */
    rc_cluster *c;
    bool retried;            /* already resent once as EVAL after NOSCRIPT */
    uint32_t n, capn;        /* messages, room for */
    uint32_t nkeyed, nextra; /* of them with an idempotency key; with a key or a state op */
    bmsg *msgs;
    char *buf;               /* the body: "<len>:<payload>" per message (the script's ARGV[7]) */
    size_t used, cap;
    char *xbuf;              /* idempotency and state keys */
    size_t xused, xcap;
    size_t room_len;
    char room[];             /* the room's name */
};

/* ---- building the command --------------------------------------------------------------- */

/* A growable RESP buffer; `bad` once out of memory. */
typedef struct resp {
    char *p;
    size_t n, cap;
    bool bad;
} resp;

static void resp_raw(resp *r, const void *s, size_t n)
{
    if (r->bad) return;
    if (n > r->cap - r->n) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap - r->n < n) cap *= 2;
        char *p = realloc(r->p, cap);
        if (!p) {
            r->bad = true;
            return;
        }
        r->p = p;
        r->cap = cap;
    }
    memcpy(r->p + r->n, s, n);
    r->n += n;
}

/* utoa writes v in decimal at the end of out (at least 21 bytes) and returns where it starts. */
static char *utoa(char *end, unsigned long long v)
{
    char *s = end;
    do *--s = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    return s;
}

static void resp_head(resp *r, char kind, size_t v)
{
    char num[24];
    num[22] = '\r';
    num[23] = '\n';
    char *s = utoa(num + 22, v);
    *--s = kind;
    resp_raw(r, s, (size_t)(num + 24 - s));
}

static void resp_bulk(resp *r, const void *s, size_t n)
{
    resp_head(r, '$', n);
    resp_raw(r, s, n);
    resp_raw(r, "\r\n", 2);
}

static void resp_num(resp *r, unsigned long long v)
{
    char num[24];
    char *s = utoa(num + sizeof(num), v);
    resp_bulk(r, s, (size_t)(num + sizeof(num) - s));
}

static void resp_name(resp *r, const rc_cluster *c, enum rc_clwire_name kind, const char *room,
                      size_t room_len, const char *key, size_t key_len)
{
    char name[NAME_MAX_LEN];
    int n = rc_clwire_name(name, sizeof(name), c->prefix, kind, room, room_len, key, key_len);
    if (n < 0) r->bad = true; /* cannot be: lengths were checked at publish */
    else resp_bulk(r, name, (size_t)n);
}

/* ---- replies ------------------------------------------------------------------------------- */

static void batch_free(rc_cluster__batch *b)
{
    b->c->inflight -= b->n;
    free(b->msgs);
    free(b->buf);
    free(b->xbuf);
    free(b);
}

static void batch_fail(rc_cluster__batch *b, int status)
{
    for (uint32_t i = 0; i < b->n; i++) {
        b->c->st.publish_failed++;
        b->msgs[i].cb(b->msgs[i].arg, status, NULL);
    }
    batch_free(b);
}

static int batch_send(rc_cluster__batch *b, bool by_body);

static void on_batch_reply(rc_redis *r, redisReply *rp, void *arg)
{
    rc_cluster__batch *b = arg;
    rc_cluster *c = b->c;
    if (!rp) {
        batch_fail(b, -ECONNRESET);
        return;
    }
    if (rp->type == REDIS_REPLY_ERROR) {
        if (!b->retried && rp->len >= 8 && memcmp(rp->str, "NOSCRIPT", 8) == 0) {
            /* see cluster.c on_call_reply */
            c->st.noscript++;
            b->retried = true;
            rc_warn("redis: script cache lost (NOSCRIPT); sending the script again");
            if (batch_send(b, true) < 0) batch_fail(b, -ECONNRESET);
            return;
        }
        rc_error("redis: script failed: %.*s", (int)rp->len, rp->str);
        batch_fail(b, -EPROTO);
        return;
    }
    /* {epoch, base, then index, "<msg_id>:<epoch>" per idempotent repeat} */
    if (!reply_is(rp, REDIS_REPLY_ARRAY) || rp->elements < 2 || rp->elements % 2 ||
        !reply_is(rp->element[0], REDIS_REPLY_STRING) ||
        !reply_is(rp->element[1], REDIS_REPLY_INTEGER) || rp->element[1]->integer < 0) {
        rc_error("redis: the publish script returned an unexpected reply");
        batch_fail(b, -EPROTO);
        return;
    }
    for (size_t j = 2; j + 1 < rp->elements; j += 2) {
        const redisReply *i = rp->element[j], *v = rp->element[j + 1];
        if (!reply_is(i, REDIS_REPLY_INTEGER) || i->integer < 1 || i->integer > b->n ||
            !reply_is(v, REDIS_REPLY_STRING)) {
            rc_error("redis: the publish script returned an unexpected reply");
            batch_fail(b, -EPROTO);
            return;
        }
        b->msgs[i->integer - 1].dup = v;
    }
    char epoch[RC_CLWIRE_EPOCH_MAX + 1], dup_epoch[RC_CLWIRE_EPOCH_MAX + 1];
    size_t el = rp->element[0]->len > RC_CLWIRE_EPOCH_MAX ? RC_CLWIRE_EPOCH_MAX
                                                          : rp->element[0]->len;
    memcpy(epoch, rp->element[0]->str, el);
    epoch[el] = '\0';
    uint64_t next = (uint64_t)rp->element[1]->integer + 1; /* the next new message's msg_id */
    for (uint32_t i = 0; i < b->n; i++) {
        const redisReply *x = b->msgs[i].dup;
        rc_cluster_seq seq = {.epoch = epoch};
        int status = 0;
        if (!x) {
            seq.msg_id = next++;
            c->st.published++;
        } else {
            /* "<msg_id>:<epoch>" of the earlier publish with this key */
            const char *colon = memchr(x->str, ':', x->len);
            size_t dl = colon ? x->len - (size_t)(colon + 1 - x->str) : 0;
            if (!colon || rc_clwire_u64(x->str, (size_t)(colon - x->str), &seq.msg_id) < 0 ||
                seq.msg_id == 0 || dl > RC_CLWIRE_EPOCH_MAX) {
                status = -EPROTO;
            } else {
                memcpy(dup_epoch, colon + 1, dl);
                dup_epoch[dl] = '\0';
                seq.epoch = dup_epoch;
                seq.duplicate = true;
                c->st.duplicates++;
            }
        }
        if (status) {
            rc_error("redis: the publish script returned an unexpected result");
            c->st.publish_failed++;
            b->msgs[i].cb(b->msgs[i].arg, status, NULL);
        } else {
            b->msgs[i].cb(b->msgs[i].arg, 0, &seq);
        }
    }
    batch_free(b);
}

/* batch_send formats b's call as RESP once (no per-argument formatting by hiredis) and queues
 * it on the publisher. */
static int batch_send(rc_cluster__batch *b, bool by_body)
{
    rc_cluster *c = b->c;
    const char *script = by_body ? rc_cluster__script_text[SCRIPT_PUB] : c->sha[SCRIPT_PUB];
    resp r = {0};
    resp_head(&r, '*', 3 + 3 + b->nkeyed + 7 + 6 * (size_t)b->nextra);
    resp_bulk(&r, by_body ? "EVAL" : "EVALSHA", by_body ? 4 : 7);
    resp_bulk(&r, script, strlen(script));
    resp_num(&r, 3 + b->nkeyed);
    resp_name(&r, c, RC_CLWIRE_META, b->room, b->room_len, NULL, 0);
    resp_name(&r, c, RC_CLWIRE_STREAM, b->room, b->room_len, NULL, 0);
    resp_name(&r, c, RC_CLWIRE_STATE, b->room, b->room_len, NULL, 0);
    for (uint32_t i = 0; i < b->n; i++) {
        const bmsg *m = &b->msgs[i];
        if (m->key_len)
            resp_name(&r, c, RC_CLWIRE_IDEM, b->room, b->room_len, b->xbuf + m->key, m->key_len);
    }
    resp_num(&r, c->history_size);
    resp_num(&r, c->room_ttl_s);
    char epoch[17];
    rc_cluster__new_epoch(c, epoch);
    resp_bulk(&r, epoch, 16);
    resp_name(&r, c, RC_CLWIRE_CHANNEL, b->room, b->room_len, NULL, 0);
    resp_num(&r, c->idem_ttl_s);
    resp_num(&r, b->n);
    resp_bulk(&r, b->buf, b->used);
    uint32_t ki = 3;
    for (uint32_t i = 0; i < b->n; i++) {
        const bmsg *m = &b->msgs[i];
        if (!m->key_len && !m->op) continue;
        resp_num(&r, i + 1);
        resp_num(&r, m->seg + 1);
        resp_num(&r, m->seg_end);
        resp_num(&r, m->key_len ? ++ki : 0);
        resp_bulk(&r, &m->op, m->op ? 1 : 0);
        resp_bulk(&r, b->xbuf + m->skey, m->skey_len);
    }
    int rc = r.bad ? -ENOMEM : rc_redis_formatted(c->pub, on_batch_reply, b, r.p, r.n);
    free(r.p);
    return rc;
}

/* ---- open batches ------------------------------------------------------------------------ */

static void batch_close(rc_cluster *c, rc_cluster__batch *b)
{
    rc_htab_remove(&c->open, &b->node);
    rc_cluster__batch **pp = &c->open_first;
    while (*pp != b) pp = &(*pp)->next;
    *pp = b->next;
    if (!c->open_first) c->open_last = NULL;
    else if (c->open_last == b) {
        rc_cluster__batch *x = c->open_first;
        while (x->next) x = x->next;
        c->open_last = x;
    }
    b->next = NULL;
}

/* Sends a closed batch, or fails its messages (the connection went away since they were
 * accepted: their outcome is "not sequenced", which -ECONNRESET covers). */
static void batch_go(rc_cluster__batch *b)
{
    if (batch_send(b, false) < 0) batch_fail(b, -ECONNRESET);
}

void rc_cluster__batches_send(rc_cluster *c)
{
    if (!c->open_first) return;
    /* Detached first: a failing batch runs callbacks, which may publish again (new batches,
     * sent by the next call) or send other commands (which call this again). */
    rc_cluster__batch *b = c->open_first;
    c->open_first = c->open_last = NULL;
    for (rc_cluster__batch *x = b; x; x = x->next) rc_htab_remove(&c->open, &x->node);
    rc_timer_stop(c->loop, &c->batch_timer);
    while (b) {
        rc_cluster__batch *next = b->next;
        b->next = NULL;
        batch_go(b);
        b = next;
    }
}

void rc_cluster__batch_timer(rc_loop *loop, rc_timer *t)
{
    rc_cluster *c = (rc_cluster *)(void *)((char *)t - offsetof(rc_cluster, batch_timer));
    rc_cluster__batches_send(c);
}

void rc_cluster__batches_fail(rc_cluster *c)
{
    rc_cluster__batch *b = c->open_first;
    c->open_first = c->open_last = NULL;
    for (rc_cluster__batch *x = b; x; x = x->next) rc_htab_remove(&c->open, &x->node);
    while (b) {
        rc_cluster__batch *next = b->next;
        batch_fail(b, -ECONNRESET);
        b = next;
    }
}

static rc_cluster__batch *batch_find(rc_cluster *c, const char *room, size_t n, uint64_t h)
{
    for (rc_hnode *x = rc_htab_chain(&c->open, h); x; x = x->next) {
        rc_cluster__batch *b = (rc_cluster__batch *)(void *)x;
        if (x->hash == h && b->room_len == n && memcmp(b->room, room, n) == 0) return b;
    }
    return NULL;
}

static rc_cluster__batch *batch_open(rc_cluster *c, const char *room, size_t room_len)
{
    uint64_t h = rc_hash(room, room_len);
    rc_cluster__batch *b = batch_find(c, room, room_len, h);
    if (b && b->n < BATCH_MAX) return b;
    if (b) { /* full: it goes now, a new one takes the rest */
        batch_close(c, b);
        batch_go(b);
    }
    b = calloc(1, sizeof(*b) + room_len);
    if (!b) return NULL;
    b->c = c;
    memcpy(b->room, room, room_len);
    b->room_len = room_len;
    if (rc_htab_insert(&c->open, &b->node, h) < 0) {
        free(b);
        return NULL;
    }
    if (c->open_last) c->open_last->next = b;
    else c->open_first = b;
    c->open_last = b;
    /* Callers with a before-sleep hook send it from rc_cluster_flush; the others at the next
     * loop pass. */
    if (!rc_timer_armed(&c->batch_timer)) rc_timer_start(c->loop, &c->batch_timer, 0);
    return b;
}

/* grow makes room for n more bytes in *p (used, cap); -1 when out of memory. */
static int grow(char **p, size_t used, size_t *cap, size_t n)
{
    if (n <= *cap - used) return 0;
    size_t c = *cap ? *cap : 512;
    while (c - used < n) c *= 2;
    char *q = realloc(*p, c);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

int rc_cluster_publish(rc_cluster *c, const char *room, size_t room_len, const void *payload,
                       size_t len, const char *key, size_t key_len, rc_cluster_pub_cb *cb,
                       void *arg)
{
    return rc_cluster_publish_keyed(c, room, room_len, payload, len, key, key_len, 0, NULL, 0,
                                    cb, arg);
}

int rc_cluster_publish_keyed(rc_cluster *c, const char *room, size_t room_len,
                             const void *payload, size_t len, const char *key, size_t key_len,
                             char state_op, const char *skey, size_t skey_len,
                             rc_cluster_pub_cb *cb, void *arg)
{
    if (!c->available) return -EAGAIN;
    if (room_len > NAME_MAX_LEN / 2 || key_len > NAME_MAX_LEN / 2 ||
        strlen(c->prefix) + room_len + key_len + 8 > NAME_MAX_LEN)
        return -EINVAL;
    if (state_op && state_op != 's' && state_op != 'd') return -EINVAL;
    if (c->inflight >= c->max_inflight) return -ENOBUFS;
    rc_cluster__batch *b = batch_open(c, room, room_len);
    if (!b) return -ENOMEM;
    if (b->n == b->capn) {
        uint32_t cap = b->capn ? b->capn * 2 : 8;
        bmsg *m = realloc(b->msgs, cap * sizeof(*m));
        if (!m) return -ENOMEM;
        b->msgs = m;
        b->capn = cap;
    }
    bool keyed = key && key_len;
    size_t kl = keyed ? key_len : 0, sl = state_op ? skey_len : 0;
    char num[24], *d = num + sizeof(num);
    *--d = ':';
    size_t v = len;
    do *--d = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    size_t hl = (size_t)(num + sizeof(num) - d);
    if (grow(&b->buf, b->used, &b->cap, hl + len) < 0 ||
        grow(&b->xbuf, b->xused, &b->xcap, kl + sl) < 0)
        return -ENOMEM;
    bmsg m = {.cb = cb, .arg = arg, .op = state_op, .seg = b->used, .key = b->xused,
              .key_len = kl, .skey = b->xused + kl, .skey_len = sl};
    memcpy(b->buf + b->used, d, hl);
    if (len) memcpy(b->buf + b->used + hl, payload, len);
    b->used += hl + len;
    m.seg_end = b->used;
    if (kl) memcpy(b->xbuf + b->xused, key, kl);
    if (sl) memcpy(b->xbuf + b->xused + kl, skey, sl);
    b->xused += kl + sl;
    b->msgs[b->n++] = m;
    if (keyed) b->nkeyed++;
    if (keyed || state_op) b->nextra++;
    c->inflight++;
    return 0;
}
