/* nsident.c — routing-identity records and per-peer unicast queues; see nsident.h. */
#include "netsync/nsident.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define container_of(p, T, m) ((T *)(void *)((char *)(p) - offsetof(T, m)))

const char *const nsy_ucdrop_names[NSY_UCDROP__COUNT] = {
    [NSY_UCDROP_UNREACHABLE] = "unreachable",
    [NSY_UCDROP_SLOW] = "slow_consumer",
    [NSY_UCDROP_EVICTED] = "evicted",
    [NSY_UCDROP_ERROR] = "error",
};

const char *const nsy_lane_names[NSY_LANE__COUNT] = {
    [NSY_LANE_CONTROL] = "control",
    [NSY_LANE_POSE] = "pose",
};

/* DEVICE_ID_MAPPING: a complete snapshot of its room (see "Supersede" in nsident.h). */
#define TYPE_MAPPING 6

struct nsy_ucmsg {
    nsy_ucmsg *next;             /* next of the same peer, in send order */
    uint32_t len;                /* payload bytes */
    uint8_t room_len;            /* room id bytes (<= 255) */
    bool deferred;               /* already counted in unicast_deferred */
    uint8_t data[];              /* room id, then payload */
};

static uint64_t key_hash(int lane, const uint8_t *id, size_t len)
{
    uint8_t l = (uint8_t)lane;
    return rc_hash_more(rc_hash(&l, 1), id, len);
}

/* ---- queues ------------------------------------------------------------------------------ */

static size_t msg_bytes(const nsy_ucmsg *m) { return (size_t)m->room_len + m->len; }

static void unqueue(nsy_idents *t, nsy_ident *r, nsy_ucmsg *m)
{
    r->nq--;
    r->qbytes -= msg_bytes(m);
    t->st->unicast_queued--;
    t->st->unicast_queued_bytes -= msg_bytes(m);
}

static void unblock(nsy_idents *t, nsy_ident *r)
{
    if (!r->blocked) return;
    if (r->bprev) r->bprev->bnext = r->bnext; else t->blocked = r->bnext;
    if (r->bnext) r->bnext->bprev = r->bprev;
    r->bprev = r->bnext = NULL;
    r->blocked = false;
}

static void block(nsy_idents *t, nsy_ident *r)
{
    if (r->blocked) return;
    r->bprev = NULL;
    r->bnext = t->blocked;
    if (t->blocked) t->blocked->bprev = r;
    t->blocked = r;
    r->blocked = true;
}

/* drop_queue drops every queued message of r, counted under why (none when why < 0). */
static void drop_queue(nsy_idents *t, nsy_ident *r, int why)
{
    while (r->head) {
        nsy_ucmsg *m = r->head;
        r->head = m->next;
        unqueue(t, r, m);
        if (why >= 0) t->st->unicast_dropped[why]++;
        free(m);
    }
    r->tail = NULL;
    unblock(t, r);
}

/* flush_one sends r's queue until it is empty, a send fails or budget runs out; returns the
 * messages sent. */
static size_t flush_one(nsy_idents *t, nsy_ident *r, size_t budget)
{
    size_t sent = 0;
    while (r->head && sent < budget) {
        nsy_ucmsg *m = r->head;
        int rc = t->send(t->arg, r->id, r->len, m->data, m->room_len, m->data + m->room_len,
                         m->len);
        if (rc == -EAGAIN) {
            if (!m->deferred) t->st->unicast_deferred++;
            m->deferred = true;
            block(t, r);
            return sent;
        }
        if (rc == -EHOSTUNREACH) {
            /* the peer is gone, and so is any chance for the rest of its queue */
            r->conn = 0;
            drop_queue(t, r, NSY_UCDROP_UNREACHABLE);
            return sent;
        }
        r->head = m->next;
        if (!r->head) r->tail = NULL;
        unqueue(t, r, m);
        if (rc == 0) {
            t->st->unicast_out++;
            t->st->unicast_bytes_out += msg_bytes(m);
            sent++;
        } else {
            t->st->unicast_dropped[NSY_UCDROP_ERROR]++;
        }
        free(m);
    }
    if (!r->head) unblock(t, r);
    return sent;
}

/* ---- records ----------------------------------------------------------------------------- */

static void unlink_recency(nsy_idents *t, nsy_ident *r)
{
    if (r->older) r->older->newer = r->newer; else t->oldest = r->newer;
    if (r->newer) r->newer->older = r->older; else t->newest = r->older;
    r->older = r->newer = NULL;
}

static void append_recency(nsy_idents *t, nsy_ident *r)
{
    r->older = t->newest;
    r->newer = NULL;
    if (t->newest) t->newest->newer = r; else t->oldest = r;
    t->newest = r;
}

static void free_record(nsy_idents *t, nsy_ident *r, int why)
{
    drop_queue(t, r, why);
    unlink_recency(t, r);
    rc_htab_remove(&t->tab, &r->node);
    t->count--;
    t->st->idents--;
    free(r);
}

void nsy_idents_init(nsy_idents *t, rc_netsync_stats *st, size_t max, uint64_t ttl,
                     uint32_t max_msgs, size_t max_bytes, nsy_ident_send_fn *send,
                     nsy_ident_slow_fn *slow, void *arg)
{
    *t = (nsy_idents){.st = st, .max = max ? max : 1, .ttl = ttl, .max_msgs = max_msgs,
                      .max_bytes = max_bytes, .send = send, .slow = slow, .arg = arg};
}

void nsy_idents_release(nsy_idents *t)
{
    while (t->oldest) free_record(t, t->oldest, -1);
    rc_htab_release(&t->tab);
}

nsy_ident *nsy_idents_find(const nsy_idents *t, int lane, const uint8_t *id, size_t len)
{
    uint64_t h = key_hash(lane, id, len);
    for (rc_hnode *n = rc_htab_chain(&t->tab, h); n; n = n->next) {
        nsy_ident *r = container_of(n, nsy_ident, node);
        if (n->hash == h && r->lane == lane && r->len == len && memcmp(r->id, id, len) == 0)
            return r;
    }
    return NULL;
}

nsy_ident *nsy_idents_touch(nsy_idents *t, int lane, const uint8_t *id, size_t len,
                            uint64_t now)
{
    if (len > NSY_IDENT_MAX_LEN) len = NSY_IDENT_MAX_LEN;
    nsy_ident *r = nsy_idents_find(t, lane, id, len);
    if (r) {
        r->last_seen = now;
        unlink_recency(t, r);
        append_recency(t, r);
        return r;
    }
    if (t->count >= t->max && t->oldest) { /* the bound: the least recently seen goes */
        t->st->idents_evicted++;
        free_record(t, t->oldest, NSY_UCDROP_EVICTED);
    }
    if (!(r = calloc(1, sizeof(*r) + len))) return NULL;
    r->lane = (uint8_t)lane;
    r->len = (uint8_t)len;
    r->fd = -1;
    r->last_seen = now;
    memcpy(r->id, id, len);
    if (rc_htab_insert(&t->tab, &r->node, key_hash(lane, id, len)) < 0) {
        free(r);
        return NULL;
    }
    append_recency(t, r);
    t->count++;
    t->st->idents++;
    return r;
}

/* supersede removes a queued, unsent mapping of room from r's queue. The head may go too: a
 * send that met EAGAIN was refused at its first frame, so nothing of it reached libzmq. */
static void supersede(nsy_idents *t, nsy_ident *r, const uint8_t *room, size_t room_len)
{
    nsy_ucmsg **pp = &r->head, *prev = NULL;
    while (*pp) {
        nsy_ucmsg *m = *pp;
        if (m->len > 0 && m->data[m->room_len] == TYPE_MAPPING &&
            m->room_len == room_len && memcmp(m->data, room, room_len) == 0) {
            *pp = m->next;
            if (r->tail == m) r->tail = prev;
            unqueue(t, r, m);
            t->st->unicast_superseded++;
            free(m);
            return; /* at most one can be queued: each new one replaces the previous */
        }
        prev = m;
        pp = &m->next;
    }
}

int nsy_idents_unicast(nsy_idents *t, const uint8_t *id, size_t id_len, const uint8_t *room,
                       size_t room_len, const uint8_t *p, size_t n, uint64_t now)
{
    if (id_len == 0 || id_len > NSY_IDENT_MAX_LEN || room_len > 255 || n > UINT32_MAX)
        return -EINVAL;
    nsy_ident *r = nsy_idents_touch(t, NSY_LANE_CONTROL, id, id_len, now);
    if (!r) return -ENOMEM;
    if (n > 0 && p[0] == TYPE_MAPPING && r->head) supersede(t, r, room, room_len);
    if (r->nq + 1 > t->max_msgs || r->qbytes + room_len + n > t->max_bytes) {
        /* slow consumer: see nsident.h for why the peer goes rather than a message */
        t->st->unicast_slow++;
        t->st->unicast_dropped[NSY_UCDROP_SLOW]++; /* this message */
        drop_queue(t, r, NSY_UCDROP_SLOW);
        if (t->slow) t->slow(t->arg, r);
        r->conn = 0;
        return -ENOBUFS;
    }
    nsy_ucmsg *m = malloc(sizeof(*m) + room_len + n);
    if (!m) return -ENOMEM;
    *m = (nsy_ucmsg){.len = (uint32_t)n, .room_len = (uint8_t)room_len};
    memcpy(m->data, room, room_len);
    if (n) memcpy(m->data + room_len, p, n);
    if (r->tail) r->tail->next = m; else r->head = m;
    r->tail = m;
    r->nq++;
    r->qbytes += msg_bytes(m);
    t->st->unicast_queued++;
    t->st->unicast_queued_bytes += msg_bytes(m);
    /* Behind a blocked head, wait for the retry: a send now would meet the same full pipe. */
    if (r->blocked) return 0;
    uint64_t gone = t->st->unicast_dropped[NSY_UCDROP_UNREACHABLE];
    flush_one(t, r, SIZE_MAX);
    if (t->st->unicast_dropped[NSY_UCDROP_UNREACHABLE] != gone) return -EHOSTUNREACH;
    return 0;
}

bool nsy_idents_flush(nsy_idents *t, size_t budget)
{
    nsy_ident *r = t->blocked;
    while (r && budget > 0) {
        nsy_ident *next = r->bnext; /* flush_one may take r off the list */
        budget -= flush_one(t, r, budget);
        r = next;
    }
    return t->blocked == NULL;
}

void nsy_idents_expire(nsy_idents *t, uint64_t now)
{
    nsy_ident *r = t->oldest;
    while (r && now - r->last_seen >= t->ttl) {
        nsy_ident *next = r->newer;
        if (!r->head) free_record(t, r, -1);
        r = next;
    }
}
