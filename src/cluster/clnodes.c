/* clnodes.c — presence across nodes and the node registry: the scripts that keep each room's
 * members on every node in Redis, the node heartbeat that reaps dead nodes, and the reads the
 * HTTP API makes of both; see cluster.h ("presence and nodes") and docs/cluster.md
 * ("Presence and nodes"). */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster_int.h"
#include "cluster/redis.h"
#include "core/log.h"

/* ---- presence and nodes ---------------------------------------------------------------------
 *
 * Keys (docs/cluster.md, "Presence"), for prefix P:
 *   P:{R}:p      hash: <client_id> = "<node>:<user member or ''>", v = the room's presence
 *                version (bumped by every change; never reset while the hash lives, so a node
 *                merging a read of the hash with the events it buffered meanwhile knows which
 *                ones the read already holds)
 *   P:rooms      set of the rooms with members on some node (for /api/rooms)
 *   P:nodes      hash: <node> = "<last heartbeat ms> <node_info JSON>"
 *   P:hb:N       node N's heartbeat: expires node_ttl after its last refresh
 *   P:node:N:m   set of node N's members: "<announce 0|1>:<client_id>:<room>", what the
 *                reaper removes when N's heartbeat expired
 * The scripts outside the room (registry, reaper, prune, the API's reads) build key names from
 * the prefix inside Lua: they are single-Redis scripts, not Redis Cluster slot-safe (the room
 * scripts keep their keys in KEYS). */

/* keep(presence hash, meta, stream, state, ttl), called after a change of the room's members:
 * a room with members on some node never expires (its members may sit idle past the TTL and
 * must still get the next message in the same epoch); the first member sets the meta hash's
 * field p and PERSISTs the room's keys, the last one's leave clears p and gives them the room
 * TTL (the publish and read scripts refresh a TTL only while p is not set). */
#define LUA_KEEP \
    "local function keep(h, m, s, k, ttl)\n" \
    "  if redis.call('hlen', h) > 1 then\n" \
    "    if redis.call('hsetnx', m, 'p', '1') == 1 then\n" \
    "      redis.call('persist', m)\n" \
    "      redis.call('persist', s)\n" \
    "      redis.call('persist', k)\n" \
    "    end\n" \
    "  elseif redis.call('hdel', m, 'p') == 1 and ttl > 0 then\n" \
    "    redis.call('expire', m, ttl)\n" \
    "    redis.call('expire', s, ttl)\n" \
    "    redis.call('expire', k, ttl)\n" \
    "  end\n" \
    "end\n"

/* drop(prefix, node, entry, reason, room ttl): removes one member entry of node's set from its room's
 * hash (if it is still that node's) and publishes its leave when it was announced. */
#define LUA_DROP \
    LUA_KEEP \
    "local function drop(p, node, e, reason, ttl)\n" \
    "  local i = string.find(e, ':', 3, true)\n" \
    "  if not i then return 0 end\n" \
    "  local cid, room = string.sub(e, 3, i - 1), string.sub(e, i + 1)\n" \
    "  local h = p .. ':{' .. room .. '}:p'\n" \
    "  local cur = redis.call('hget', h, cid)\n" \
    "  if not cur or string.sub(cur, 1, #node + 1) ~= node .. ':' then return 0 end\n" \
    "  redis.call('hdel', h, cid)\n" \
    "  local ver = redis.call('hincrby', h, 'v', 1)\n" \
    "  if redis.call('hlen', h) <= 1 then\n" \
    "    redis.call('srem', p .. ':rooms', room)\n" \
    "    redis.call('expire', h, 86400)\n" \
    "  end\n" \
    "  local r = p .. ':{' .. room .. '}:'\n" \
    "  keep(h, r .. 'm', r .. 's', r .. 'k', ttl)\n" \
    "  if string.sub(e, 1, 1) == '1' then\n" \
    "    redis.call('publish', p .. ':{' .. room .. '}:c',\n" \
    "               'p1:' .. ver .. ':l:' .. cid .. ':' .. node .. ':' .. reason)\n" \
    "  end\n" \
    "  return 1\n" \
    "end\n"

/* KEYS: presence hash, node set, rooms set, the room's meta, stream, state
 * ARGV: j|l, client_id, node, info, channel, set entry, announce 0|1, room, room ttl s
 * A join that changes nothing (the same member again) and a leave of a member that is not this
 * node's (it moved, or was reaped and is someone else's now) publish nothing. Returns the
 * version, or 0 when nothing changed. */
const char rc_cluster__pres_script[] =
    LUA_KEEP
    "local h, s, rooms = KEYS[1], KEYS[2], KEYS[3]\n"
    "local cid, node = ARGV[2], ARGV[3]\n"
    "local cur = redis.call('hget', h, cid)\n"
    "if ARGV[1] == 'j' then\n"
    "  local v = node .. ':' .. ARGV[4]\n"
    "  if cur == v then return 0 end\n"
    "  redis.call('hset', h, cid, v)\n"
    "  redis.call('persist', h)\n"
    "  redis.call('sadd', s, ARGV[6])\n"
    "  redis.call('sadd', rooms, ARGV[8])\n"
    "else\n"
    "  redis.call('srem', s, ARGV[6])\n"
    "  if not cur or string.sub(cur, 1, #node + 1) ~= node .. ':' then return 0 end\n"
    "  redis.call('hdel', h, cid)\n"
    "end\n"
    "local ver = redis.call('hincrby', h, 'v', 1)\n"
    "if redis.call('hlen', h) <= 1 then\n"
    "  redis.call('srem', rooms, ARGV[8])\n"
    "  redis.call('expire', h, 86400)\n"
    "end\n"
    "keep(h, KEYS[4], KEYS[5], KEYS[6], tonumber(ARGV[9]))\n"
    "if ARGV[7] == '1' then\n"
    "  redis.call('publish', ARGV[5], 'p1:' .. ver .. ':' .. ARGV[1] .. ':' .. cid .. ':' ..\n"
    "             node .. ':' .. ARGV[4])\n"
    "end\n"
    "return ver\n";

/* KEYS: presence hash, node set, rooms set, the room's meta, stream, state
 * ARGV: node, channel, room, announce 0|1, room ttl s, then client_id, info pairs: this node's
 * members
 * Returns the number of changes made (each published when announced). */
const char rc_cluster__sync_script[] =
    LUA_KEEP
    "local h, s, rooms = KEYS[1], KEYS[2], KEYS[3]\n"
    "local node, ch, room, a = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
    "local pre = node .. ':'\n"
    "local want = {}\n"
    "for i = 6, #ARGV - 1, 2 do want[ARGV[i]] = pre .. ARGV[i + 1] end\n"
    "local changes = 0\n"
    "local function tell(op, cid, info)\n"
    "  local ver = redis.call('hincrby', h, 'v', 1)\n"
    "  if a == '1' then\n"
    "    redis.call('publish', ch, 'p1:' .. ver .. ':' .. op .. ':' .. cid .. ':' .. node .. ':' .. info)\n"
    "  end\n"
    "  changes = changes + 1\n"
    "end\n"
    "local all = redis.call('hgetall', h)\n"
    "for i = 1, #all - 1, 2 do\n"
    "  local cid, v = all[i], all[i + 1]\n"
    "  if cid ~= 'v' and string.sub(v, 1, #pre) == pre and want[cid] == nil then\n"
    "    redis.call('hdel', h, cid)\n"
    "    redis.call('srem', s, '0:' .. cid .. ':' .. room, '1:' .. cid .. ':' .. room)\n"
    "    tell('l', cid, 'dropped')\n"
    "  end\n"
    "end\n"
    "for i = 6, #ARGV - 1, 2 do\n"
    "  local cid = ARGV[i]\n"
    "  redis.call('sadd', s, a .. ':' .. cid .. ':' .. room)\n"
    "  if redis.call('hget', h, cid) ~= want[cid] then\n"
    "    redis.call('hset', h, cid, want[cid])\n"
    "    tell('j', cid, ARGV[i + 1])\n"
    "  end\n"
    "end\n"
    "if redis.call('hlen', h) <= 1 then\n"
    "  redis.call('srem', rooms, room)\n"
    "  if redis.call('exists', h) == 1 then redis.call('expire', h, 86400) end\n"
    "else\n"
    "  redis.call('sadd', rooms, room)\n"
    "  redis.call('persist', h)\n"
    "end\n"
    "if redis.call('exists', h) == 1 then keep(h, KEYS[4], KEYS[5], KEYS[6], tonumber(ARGV[5])) end\n"
    "return changes\n";

/* ARGV: prefix, node, room ttl s, then the rooms this node has members in
 * Removes this node's members of every other room (their leaves went missing). Returns the
 * number removed. */
const char rc_cluster__prune_script[] =
    LUA_DROP
    "local p, node, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
    "local mine = {}\n"
    "for i = 4, #ARGV do mine[ARGV[i]] = true end\n"
    "local set = p .. ':node:' .. node .. ':m'\n"
    "local n = 0\n"
    "for _, e in ipairs(redis.call('smembers', set)) do\n"
    "  local i = string.find(e, ':', 3, true)\n"
    "  if not i or not mine[string.sub(e, i + 1)] then\n"
    "    redis.call('srem', set, e)\n"
    "    n = n + drop(p, node, e, 'dropped', ttl)\n"
    "  end\n"
    "end\n"
    "return n\n";

/* ARGV: prefix, node, heartbeat ttl ms, node_info JSON, reap budget (member entries), room
 * ttl s
 * Refreshes this node's heartbeat and registry entry, then reaps nodes whose heartbeat expired:
 * their members leave (published as "dropped"), at most budget entries per call, and a node
 * is unregistered once it has none left. Returns {was registered 0|1, live nodes, nodes
 * reaped, members reaped}. */
const char rc_cluster__node_script[] =
    LUA_DROP
    "local p, id = ARGV[1], ARGV[2]\n"
    "local t = redis.call('time')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local reg = p .. ':nodes'\n"
    "local known = redis.call('hexists', reg, id)\n"
    "redis.call('set', p .. ':hb:' .. id, '1', 'PX', ARGV[3])\n"
    "redis.call('hset', reg, id, string.format('%.0f', now) .. ' ' .. ARGV[4])\n"
    "local budget = tonumber(ARGV[5])\n"
    "local alive, nodes, members = 0, 0, 0\n"
    "for _, n in ipairs(redis.call('hkeys', reg)) do\n"
    "  if redis.call('exists', p .. ':hb:' .. n) == 1 then\n"
    "    alive = alive + 1\n"
    "  elseif budget > 0 then\n"
    "    local set = p .. ':node:' .. n .. ':m'\n"
    "    local batch = redis.call('spop', set, budget)\n"
    "    budget = budget - #batch\n"
    "    for _, e in ipairs(batch) do\n"
    "      members = members + drop(p, n, e, 'dropped', tonumber(ARGV[6]))\n"
    "    end\n"
    "    if redis.call('scard', set) == 0 then\n"
    "      redis.call('hdel', reg, n)\n"
    "      nodes = nodes + 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {known, alive, nodes, members}\n";

/* KEYS: presence hash, meta. Returns {last msg_id, {field, value, ...}}. */
const char rc_cluster__members_script[] =
    "return {tonumber(redis.call('hget', KEYS[2], 's') or '0'), redis.call('hgetall', KEYS[1])}\n";

/* ARGV: prefix, max. Returns {rooms with members, {{room, members, last msg_id}, ...}}. */
const char rc_cluster__rooms_script[] =
    "local p = ARGV[1]\n"
    "local rs = redis.call('smembers', p .. ':rooms')\n"
    "local out = {}\n"
    "for i, r in ipairs(rs) do\n"
    "  if i > tonumber(ARGV[2]) then break end\n"
    "  local n = redis.call('hlen', p .. ':{' .. r .. '}:p') - 1\n"
    "  if n < 0 then n = 0 end\n"
    "  out[#out + 1] = {r, n, tonumber(redis.call('hget', p .. ':{' .. r .. '}:m', 's') or '0')}\n"
    "end\n"
    "return {#rs, out}\n";

/* ARGV: prefix. Returns {now ms, {{node, "<last ms> <info>", alive 0|1}, ...}}. */
const char rc_cluster__nodes_script[] =
    "local p = ARGV[1]\n"
    "local t = redis.call('time')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local all = redis.call('hgetall', p .. ':nodes')\n"
    "local out = {}\n"
    "for i = 1, #all - 1, 2 do\n"
    "  out[#out + 1] = {all[i], all[i + 1], redis.call('exists', p .. ':hb:' .. all[i])}\n"
    "end\n"
    "return {now, out}\n";

/* ---- presence and nodes: calls ------------------------------------------------------------
 *
 * These scripts take a variable number of arguments (a room's members, a node's rooms), so
 * their calls hold their argument vectors in their own allocation; otherwise they go like the
 * publish's: EVALSHA on the publisher, pipelined, resent once as EVAL after NOSCRIPT. */

typedef struct xcall xcall;
typedef void xcall_fin(xcall *k, int status, const redisReply *rp);

struct xcall {
    rc_cluster *c;           /* owner */
    int script;              /* SCRIPT_* */
    xcall_fin *fin;          /* gets the reply (or the failure) */
    void (*cb)(void);        /* the caller's callback, cast back by fin */
    void *arg;               /* the caller's argument */
    bool retried;            /* already resent once after NOSCRIPT */
    int argc, cap;           /* arguments (the first two are EVALSHA and the sha), room for */
    const char **argv;       /* cap entries, in blob */
    size_t *lens;            /* cap entries, in blob */
    char *at, *end;          /* the argument bytes written so far, and their end */
    max_align_t blob[];      /* argv, lens, then the argument bytes */
};

static xcall *xcall_new(rc_cluster *c, int script, int nargs, size_t bytes, xcall_fin *fin)
{
    if (!c->available) return NULL;
    int cap = nargs + 2;
    size_t vec = (size_t)cap * (sizeof(char *) + sizeof(size_t));
    xcall *k = malloc(sizeof(*k) + vec + bytes);
    if (!k) return NULL;
    memset(k, 0, sizeof(*k));
    c->inflight++;
    k->c = c;
    k->script = script;
    k->fin = fin;
    k->cap = cap;
    k->argc = 2;
    k->argv = (const char **)(void *)k->blob;
    k->lens = (size_t *)(void *)(k->argv + cap);
    k->at = (char *)(k->lens + cap);
    k->end = k->at + bytes;
    return k;
}

static void xcall_free(xcall *k)
{
    k->c->inflight--;
    free(k);
}

static void xadd(xcall *k, const void *s, size_t n)
{
    if (k->argc >= k->cap || n > (size_t)(k->end - k->at)) abort(); /* sized wrong below */
    memcpy(k->at, s, n);
    k->argv[k->argc] = k->at;
    k->lens[k->argc++] = n;
    k->at += n;
}

static void xaddf(xcall *k, const char *fmt, unsigned long long v)
{
    char num[32];
    xadd(k, num, (size_t)snprintf(num, sizeof(num), fmt, v));
}

static int xadd_name(xcall *k, enum rc_clwire_name kind, const char *room, size_t room_len)
{
    size_t left = (size_t)(k->end - k->at);
    if (k->argc >= k->cap) abort();
    int n = rc_clwire_name(k->at, left < NAME_MAX_LEN ? left : NAME_MAX_LEN, k->c->prefix, kind,
                           room, room_len, NULL, 0);
    if (n < 0) return -1;
    k->argv[k->argc] = k->at;
    k->lens[k->argc++] = (size_t)n;
    k->at += n;
    return 0;
}

/* xadd_room_keys adds the room's meta, stream and state key names (keep() in the scripts). */
static int xadd_room_keys(xcall *k, const char *room, size_t room_len)
{
    if (xadd_name(k, RC_CLWIRE_META, room, room_len) < 0 ||
        xadd_name(k, RC_CLWIRE_STREAM, room, room_len) < 0 ||
        xadd_name(k, RC_CLWIRE_STATE, room, room_len) < 0)
        return -1;
    return 0;
}

static void on_xreply(rc_redis *r, redisReply *rp, void *arg);

static int xsend(xcall *k, bool by_body)
{
    rc_cluster *c = k->c;
    rc_cluster__batches_send(c); /* the publishes made before this call go before it */
    k->argv[0] = by_body ? "EVAL" : "EVALSHA";
    k->lens[0] = strlen(k->argv[0]);
    k->argv[1] = by_body ? rc_cluster__script_text[k->script] : c->sha[k->script];
    k->lens[1] = strlen(k->argv[1]);
    return rc_redis_command(c->pub, on_xreply, k, k->argc, k->argv, k->lens);
}

/* xgo sends k; on failure it is freed and the error returned. */
static int xgo(xcall *k)
{
    int rc = xsend(k, false);
    if (rc < 0) {
        xcall_free(k);
        return rc == -ENOTCONN ? -EAGAIN : rc;
    }
    return 0;
}

static void on_xreply(rc_redis *r, redisReply *rp, void *arg)
{
    xcall *k = arg;
    int status = 0;
    if (!rp) {
        status = -ECONNRESET;
    } else if (rp->type == REDIS_REPLY_ERROR) {
        if (!k->retried && rp->len >= 8 && memcmp(rp->str, "NOSCRIPT", 8) == 0) {
            k->c->st.noscript++;
            k->retried = true;
            if (xsend(k, true) == 0) return;
            status = -ECONNRESET;
        } else {
            rc_error("redis: script failed: %.*s", (int)rp->len, rp->str);
            status = -EPROTO;
        }
    }
    k->fin(k, status, status ? NULL : rp);
    xcall_free(k);
}

static uint64_t reply_u64(const redisReply *rp)
{
    return reply_is(rp, REDIS_REPLY_INTEGER) && rp->integer > 0 ? (uint64_t)rp->integer : 0;
}

/* The end of a fire-and-forget presence call: failures are counted (a later sync repairs). */
static void pres_done(xcall *k, int status, const redisReply *rp)
{
    (void)rp;
    if (status) k->c->st.presence_failed++;
}

int rc_cluster_presence(rc_cluster *c, const char *room, size_t room_len, bool join,
                        uint64_t client_id, const char *info, size_t info_len, bool announce)
{
    if (!c->available) return -EAGAIN;
    if (room_len > NAME_MAX_LEN / 2 || info_len > NAME_MAX_LEN) return -EINVAL;
    if (c->inflight >= c->max_inflight) return -ENOBUFS;
    size_t name = strlen(c->prefix) + room_len + 8;
    xcall *k = xcall_new(c, SCRIPT_PRES, 16, 8 * name + info_len + 4 * 24 + 64 + room_len,
                         pres_done);
    if (!k) return -ENOMEM;
    char entry[NAME_MAX_LEN];
    int el = snprintf(entry, sizeof(entry), "%c:%llu:", announce ? '1' : '0',
                      (unsigned long long)client_id);
    if (el < 0 || (size_t)el + room_len > sizeof(entry)) goto inval;
    memcpy(entry + el, room, room_len);
    xadd(k, "6", 1);
    if (xadd_name(k, RC_CLWIRE_PRESENCE, room, room_len) < 0) goto inval;
    char key[PREFIX_MAX + 48];
    xadd(k, key, (size_t)snprintf(key, sizeof(key), "%s:node:%s:m", c->prefix, c->node_id));
    xadd(k, key, (size_t)snprintf(key, sizeof(key), "%s:rooms", c->prefix));
    if (xadd_room_keys(k, room, room_len) < 0) goto inval;
    xadd(k, join ? "j" : "l", 1);
    xaddf(k, "%llu", (unsigned long long)client_id);
    xadd(k, c->node_id, strlen(c->node_id));
    xadd(k, info, info_len);
    if (xadd_name(k, RC_CLWIRE_CHANNEL, room, room_len) < 0) goto inval;
    xadd(k, entry, (size_t)el + room_len);
    xadd(k, announce ? "1" : "0", 1);
    xadd(k, room, room_len);
    xaddf(k, "%llu", (unsigned long long)c->room_ttl_s);
    c->st.presence_sent++;
    return xgo(k);
inval:
    xcall_free(k);
    return -EINVAL;
}

int rc_cluster_presence_sync(rc_cluster *c, const char *room, size_t room_len, bool announce,
                             const rc_cluster_member *v, size_t n)
{
    if (!c->available) return -EAGAIN;
    if (room_len > NAME_MAX_LEN / 2 || n > (1u << 20)) return -EINVAL;
    size_t name = strlen(c->prefix) + room_len + 8, bytes = 8 * name + 96 + room_len;
    for (size_t i = 0; i < n; i++) bytes += 24 + v[i].info_len;
    xcall *k = xcall_new(c, SCRIPT_SYNC, 12 + 2 * (int)n, bytes, pres_done);
    if (!k) return -ENOMEM;
    xadd(k, "6", 1);
    char key[PREFIX_MAX + 48];
    if (xadd_name(k, RC_CLWIRE_PRESENCE, room, room_len) < 0) goto inval;
    xadd(k, key, (size_t)snprintf(key, sizeof(key), "%s:node:%s:m", c->prefix, c->node_id));
    xadd(k, key, (size_t)snprintf(key, sizeof(key), "%s:rooms", c->prefix));
    if (xadd_room_keys(k, room, room_len) < 0) goto inval;
    xadd(k, c->node_id, strlen(c->node_id));
    if (xadd_name(k, RC_CLWIRE_CHANNEL, room, room_len) < 0) goto inval;
    xadd(k, room, room_len);
    xadd(k, announce ? "1" : "0", 1);
    xaddf(k, "%llu", (unsigned long long)c->room_ttl_s);
    for (size_t i = 0; i < n; i++) {
        xaddf(k, "%llu", (unsigned long long)v[i].client_id);
        xadd(k, v[i].info, v[i].info_len);
    }
    c->st.presence_syncs++;
    return xgo(k);
inval:
    xcall_free(k);
    return -EINVAL;
}

int rc_cluster_presence_prune(rc_cluster *c, const char *const *rooms, const size_t *lens,
                              size_t n)
{
    if (!c->available) return -EAGAIN;
    if (n > (1u << 22)) return -EINVAL;
    size_t bytes = PREFIX_MAX + 64;
    for (size_t i = 0; i < n; i++) bytes += lens[i];
    xcall *k = xcall_new(c, SCRIPT_PRUNE, 4 + (int)n, bytes, pres_done);
    if (!k) return -ENOMEM;
    xadd(k, "0", 1);
    xadd(k, c->prefix, strlen(c->prefix));
    xadd(k, c->node_id, strlen(c->node_id));
    xaddf(k, "%llu", (unsigned long long)c->room_ttl_s);
    for (size_t i = 0; i < n; i++) xadd(k, rooms[i], lens[i]);
    return xgo(k);
}

/* {last msg_id, {field, value, ...}} */
static void members_done(xcall *k, int status, const redisReply *rp)
{
    rc_cluster_members_cb *cb = (rc_cluster_members_cb *)k->cb;
    if (status == 0 && (!reply_is(rp, REDIS_REPLY_ARRAY) || rp->elements != 2 ||
                        !reply_is(rp->element[1], REDIS_REPLY_ARRAY)))
        status = -EPROTO;
    if (status) {
        cb(k->arg, status, 0, 0, NULL, 0);
        return;
    }
    const redisReply *h = rp->element[1];
    size_t cap = h->elements / 2, n = 0;
    rc_cluster_member *v = malloc((cap ? cap : 1) * sizeof(*v));
    if (!v) {
        cb(k->arg, -ENOMEM, 0, 0, NULL, 0);
        return;
    }
    uint64_t version = 0;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *f = h->element[i], *val = h->element[i + 1];
        if (!reply_is(f, REDIS_REPLY_STRING) || !reply_is(val, REDIS_REPLY_STRING)) continue;
        if (f->len == 1 && f->str[0] == 'v') {
            rc_clwire_u64(val->str, val->len, &version);
            continue;
        }
        const char *colon = memchr(val->str, ':', val->len);
        if (!colon || rc_clwire_u64(f->str, f->len, &v[n].client_id) < 0) continue;
        v[n].node = val->str;
        v[n].node_len = (size_t)(colon - val->str);
        v[n].info = colon + 1;
        v[n].info_len = val->len - v[n].node_len - 1;
        n++;
    }
    cb(k->arg, 0, version, reply_u64(rp->element[0]), v, n);
    free(v);
}

int rc_cluster_members_read(rc_cluster *c, const char *room, size_t room_len,
                            rc_cluster_members_cb *cb, void *arg)
{
    if (!c->available) return -EAGAIN;
    if (room_len > NAME_MAX_LEN / 2) return -EINVAL;
    if (c->inflight >= c->max_inflight) return -ENOBUFS;
    size_t name = strlen(c->prefix) + room_len + 8;
    xcall *k = xcall_new(c, SCRIPT_MEMBERS, 3, 2 * name + 1, members_done);
    if (!k) return -ENOMEM;
    k->cb = (void (*)(void))cb;
    k->arg = arg;
    xadd(k, "2", 1);
    if (xadd_name(k, RC_CLWIRE_PRESENCE, room, room_len) < 0 ||
        xadd_name(k, RC_CLWIRE_META, room, room_len) < 0) {
        xcall_free(k);
        return -EINVAL;
    }
    return xgo(k);
}

/* {total, {{room, members, last msg_id}, ...}} */
static void rooms_done(xcall *k, int status, const redisReply *rp)
{
    rc_cluster_rooms_cb *cb = (rc_cluster_rooms_cb *)k->cb;
    if (status == 0 && (!reply_is(rp, REDIS_REPLY_ARRAY) || rp->elements != 2 ||
                        !reply_is(rp->element[1], REDIS_REPLY_ARRAY)))
        status = -EPROTO;
    if (status) {
        cb(k->arg, status, 0, NULL, 0);
        return;
    }
    const redisReply *a = rp->element[1];
    rc_cluster_room_info *v = malloc((a->elements ? a->elements : 1) * sizeof(*v));
    if (!v) {
        cb(k->arg, -ENOMEM, 0, NULL, 0);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < a->elements; i++) {
        const redisReply *e = a->element[i];
        if (!reply_is(e, REDIS_REPLY_ARRAY) || e->elements != 3 ||
            !reply_is(e->element[0], REDIS_REPLY_STRING))
            continue;
        v[n++] = (rc_cluster_room_info){.room = e->element[0]->str,
                                        .room_len = e->element[0]->len,
                                        .members = reply_u64(e->element[1]),
                                        .last_msg_id = reply_u64(e->element[2])};
    }
    cb(k->arg, 0, reply_u64(rp->element[0]), v, n);
    free(v);
}

int rc_cluster_rooms_read(rc_cluster *c, uint32_t max, rc_cluster_rooms_cb *cb, void *arg)
{
    if (!c->available) return -EAGAIN;
    if (c->inflight >= c->max_inflight) return -ENOBUFS;
    xcall *k = xcall_new(c, SCRIPT_ROOMS, 3, PREFIX_MAX + 32, rooms_done);
    if (!k) return -ENOMEM;
    k->cb = (void (*)(void))cb;
    k->arg = arg;
    xadd(k, "0", 1);
    xadd(k, c->prefix, strlen(c->prefix));
    xaddf(k, "%llu", (unsigned long long)max);
    return xgo(k);
}

/* {now, {{node, "<last ms> <info>", alive}, ...}} */
static void nodes_done(xcall *k, int status, const redisReply *rp)
{
    rc_cluster_nodes_cb *cb = (rc_cluster_nodes_cb *)k->cb;
    if (status == 0 && (!reply_is(rp, REDIS_REPLY_ARRAY) || rp->elements != 2 ||
                        !reply_is(rp->element[1], REDIS_REPLY_ARRAY)))
        status = -EPROTO;
    if (status) {
        cb(k->arg, status, 0, NULL, 0);
        return;
    }
    const redisReply *a = rp->element[1];
    rc_cluster_node_info *v = malloc((a->elements ? a->elements : 1) * sizeof(*v));
    if (!v) {
        cb(k->arg, -ENOMEM, 0, NULL, 0);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < a->elements; i++) {
        const redisReply *e = a->element[i];
        if (!reply_is(e, REDIS_REPLY_ARRAY) || e->elements != 3 ||
            !reply_is(e->element[0], REDIS_REPLY_STRING) ||
            !reply_is(e->element[1], REDIS_REPLY_STRING))
            continue;
        const redisReply *val = e->element[1];
        const char *sp = memchr(val->str, ' ', val->len);
        rc_cluster_node_info *x = &v[n];
        x->id = e->element[0]->str;
        x->id_len = e->element[0]->len;
        x->alive = reply_u64(e->element[2]) != 0;
        x->last_ms = 0;
        if (sp) rc_clwire_u64(val->str, (size_t)(sp - val->str), &x->last_ms);
        x->info = sp ? sp + 1 : "{}";
        x->info_len = sp ? val->len - (size_t)(sp + 1 - val->str) : 2;
        n++;
    }
    cb(k->arg, 0, reply_u64(rp->element[0]), v, n);
    free(v);
}

int rc_cluster_nodes_read(rc_cluster *c, rc_cluster_nodes_cb *cb, void *arg)
{
    if (!c->available) return -EAGAIN;
    if (c->inflight >= c->max_inflight) return -ENOBUFS;
    xcall *k = xcall_new(c, SCRIPT_NODES, 2, PREFIX_MAX + 8, nodes_done);
    if (!k) return -ENOMEM;
    k->cb = (void (*)(void))cb;
    k->arg = arg;
    xadd(k, "0", 1);
    xadd(k, c->prefix, strlen(c->prefix));
    return xgo(k);
}

/* ---- the node heartbeat -------------------------------------------------------------------
 *
 * Every node_interval, while available: refresh this node's heartbeat key (TTL node_ttl) and
 * registry entry, and reap the nodes whose key expired. One call in flight at most. Any number
 * of nodes may reap the same dead node: the script is atomic and SPOP hands each entry to one
 * of them. */

#define REAP_BUDGET 2000 /* member entries one heartbeat removes at most (keeps scripts short) */

static void node_done(xcall *k, int status, const redisReply *rp)
{
    rc_cluster *c = k->c;
    c->node_inflight = false;
    if (status || !reply_is(rp, REDIS_REPLY_ARRAY) || rp->elements != 4) {
        c->st.presence_failed++;
        return;
    }
    c->st.node_beats++;
    c->st.nodes_alive = (uint32_t)reply_u64(rp->element[1]);
    uint64_t nodes = reply_u64(rp->element[2]), members = reply_u64(rp->element[3]);
    c->st.reaped_nodes += nodes;
    c->st.reaped_members += members;
    if (nodes || members)
        rc_warn("redis: removed %llu members of %llu dead nodes (heartbeat older than %llu ms)",
                (unsigned long long)members, (unsigned long long)nodes,
                (unsigned long long)(c->node_ttl_ns / RC_NS_PER_MS));
    if (reply_u64(rp->element[0]) == 0 && c->h.on_registered) c->h.on_registered(c->h.arg);
}

void rc_cluster__node_beat(rc_cluster *c)
{
    if (!c->available || c->node_inflight) return;
    char info[1024];
    size_t il = c->h.node_info ? c->h.node_info(c->h.arg, info, sizeof(info)) : 0;
    if (il == 0 || il >= sizeof(info)) il = (size_t)snprintf(info, sizeof(info), "{}");
    xcall *k = xcall_new(c, SCRIPT_NODE, 7, PREFIX_MAX + 96 + il, node_done);
    if (!k) return;
    xadd(k, "0", 1);
    xadd(k, c->prefix, strlen(c->prefix));
    xadd(k, c->node_id, strlen(c->node_id));
    xaddf(k, "%llu", (unsigned long long)(c->node_ttl_ns / RC_NS_PER_MS));
    xadd(k, info, il);
    xaddf(k, "%llu", REAP_BUDGET);
    xaddf(k, "%llu", (unsigned long long)c->room_ttl_s);
    if (xgo(k) == 0) c->node_inflight = true;
}

void rc_cluster__node_timer(rc_loop *loop, rc_timer *t)
{
    rc_cluster *c = (rc_cluster *)(void *)((char *)t - offsetof(rc_cluster, node_timer));
    rc_timer_start(loop, t, rc_loop_now(loop) + c->node_interval_ns);
    rc_cluster__node_beat(c);
}

/* A presence change on a room's channel: another node's goes up, this node's own is dropped
 * (it told its members when the change happened). */
void rc_cluster__presence_deliver(rc_cluster *c, const char *room, size_t room_len,
                                  const redisReply *payload)
{
    rc_clwire_pres e;
    if (rc_clwire_pres_decode(payload->str, payload->len, &e) < 0) {
        c->st.bad_messages++;
        return;
    }
    if (e.node_len == strlen(c->node_id) && memcmp(e.node, c->node_id, e.node_len) == 0) return;
    c->st.presence_events++;
    if (c->h.on_presence) c->h.on_presence(c->h.arg, room, room_len, &e);
}
