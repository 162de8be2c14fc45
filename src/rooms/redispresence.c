/* redispresence.c — members across nodes; see redispresence.h and docs/cluster.md. */
#include "rooms/redispresence.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/textbuf.h"
#include "core/log.h"
#include "rooms/presence.h"
#include "rooms/redisrooms.h"

/* A member on another node. */
typedef struct rmember {
    rc_hnode node;           /* in rmirror.table, by client_id */
    uint64_t client_id;
    bool seen;               /* marked while a load is merged */
    char node_id[RC_CLWIRE_NODE_MAX + 1]; /* the node it is on */
    uint16_t ulen;           /* bytes of user */
    char user[];             /* its `"user":"...",` text, or empty */
} rmember;

/* A change that arrived while the mirror was being loaded. */
typedef struct pevent {
    uint64_t version;
    uint64_t client_id;
    bool join;
    char node_id[RC_CLWIRE_NODE_MAX + 1];
    uint16_t ilen;
    char *info;              /* malloc'd copy of the event's info */
} pevent;

/* A room's mirror. pub first: room->remote points at it. */
typedef struct rmirror {
    rc_rmembers pub;         /* n: members in table */
    rc_htab table;           /* rmember by client_id */
    bool loaded;             /* a load completed (the table is the room's remote members) */
    bool loading;            /* a read is out (changes are buffered) */
    bool stale;              /* changes may have been missed: load again when possible */
    uint32_t gen;            /* loads started or abandoned: an older read's reply is ignored */
    pevent *buf;             /* changes buffered while loading, in arrival order */
    uint32_t nbuf, capbuf;
} rmirror;

/* A load in flight: finds its room by name when the reply comes (it may be gone by then). */
typedef struct rload {
    rc_rooms *t;
    uint32_t gen;
    size_t len;
    char name[];
} rload;

static rmirror *mirror_of(const rc_room *room) { return (rmirror *)(void *)room->remote; }

static rc_redispresence_stats *stats_of(rc_rooms *t)
{
    return rc_redisrooms_pstats(t->cluster);
}

/* A namespace with presence off tells nobody and keeps no mirror (perm.h). */
static bool announced(const rc_rooms *t, const rc_room *room)
{
    return rc_perm_lookup(t->perm, room->name, room->name_len)->presence != 0;
}

/* What a remote member's info may be spliced into JSON as: `"user":"...",` or nothing. The
 * text comes from another node through Redis; anything of another shape is left out. */
static size_t user_ok(const char *s, size_t n)
{
    if (n < 10 || memcmp(s, "\"user\":\"", 8) != 0 || s[n - 2] != '"' || s[n - 1] != ',')
        return 0;
    for (size_t i = 8; i < n - 2; i++)
        if ((unsigned char)s[i] < 0x20) return 0;
    return n;
}

/* A leave's reason as told: its name when it is one of ours, else "dropped". */
static const char *reason_ok(const char *s, size_t n)
{
    static const char *const names[] = {"dropped", "closed", "left", "kicked", "replaced"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == n && memcmp(names[i], s, n) == 0) return names[i];
    return "dropped";
}

static rmember *find(const rmirror *m, uint64_t id)
{
    uint64_t h = rc_hash_mix(id);
    for (rc_hnode *x = rc_htab_chain(&m->table, h); x; x = x->next) {
        rmember *r = (rmember *)(void *)x;
        if (x->hash == h && r->client_id == id) return r;
    }
    return NULL;
}

static void remove_member(rc_rooms *t, rmirror *m, rmember *r)
{
    rc_htab_remove(&m->table, &r->node);
    m->pub.n--;
    stats_of(t)->remote_members--;
    free(r);
}

/* Adds or updates member id (on node, with info); returns true when it is new. */
static bool put_member(rc_rooms *t, rmirror *m, uint64_t id, const char *node, size_t nlen,
                       const char *info, size_t ilen)
{
    size_t ul = user_ok(info, ilen);
    rmember *old = find(m, id);
    if (old && old->ulen == ul && memcmp(old->user, info, ul) == 0) {
        snprintf(old->node_id, sizeof(old->node_id), "%.*s", (int)nlen, node);
        old->seen = true;
        return false;
    }
    rmember *r = malloc(sizeof(*r) + ul);
    if (!r) return false;
    r->client_id = id;
    r->seen = true;
    snprintf(r->node_id, sizeof(r->node_id), "%.*s", (int)nlen, node);
    r->ulen = (uint16_t)ul;
    memcpy(r->user, info, ul);
    if (rc_htab_insert(&m->table, &r->node, rc_hash_mix(id)) < 0) {
        free(r);
        return false;
    }
    if (old) { /* the same member with another user: replaced silently */
        remove_member(t, m, old);
    }
    m->pub.n++;
    stats_of(t)->remote_members++;
    return !old;
}

/* Applies one change of another node to a loaded mirror and tells the room's members. */
static void apply(rc_rooms *t, rc_room *room, rmirror *m, bool join, uint64_t id,
                  const char *node, size_t nlen, const char *info, size_t ilen)
{
    rc_redispresence_stats *st = stats_of(t);
    if (join) {
        if (!put_member(t, m, id, node, nlen, info, ilen)) return;
        st->remote_joins++;
        size_t ul = user_ok(info, ilen);
        rc_presence_remote(t, room, id, info, ul, true, NULL);
        return;
    }
    rmember *r = find(m, id);
    /* a leave from a node the member is no longer on (it moved) changes nothing */
    if (!r || strlen(r->node_id) != nlen || memcmp(r->node_id, node, nlen) != 0) return;
    remove_member(t, m, r);
    st->remote_leaves++;
    rc_presence_remote(t, room, id, NULL, 0, false, reason_ok(info, ilen));
}

static void buf_clear(rmirror *m)
{
    for (uint32_t i = 0; i < m->nbuf; i++) free(m->buf[i].info);
    m->nbuf = 0;
}

static void mirror_free(rc_rooms *t, rc_room *room)
{
    rmirror *m = mirror_of(room);
    if (!m) return;
    uint32_t b = 0;
    rc_hnode *x = rc_htab_next(&m->table, &b, NULL);
    while (x) {
        rc_hnode *next = rc_htab_next(&m->table, &b, x);
        free(x);
        stats_of(t)->remote_members--;
        x = next;
    }
    rc_htab_release(&m->table);
    buf_clear(m);
    free(m->buf);
    free(m);
    room->remote = NULL;
}

void rc_redispresence_room_gone(rc_rooms *t, rc_room *room)
{
    mirror_free(t, room);
}

void rc_redispresence_event(rc_rooms *t, rc_room *room, const rc_clwire_pres *e)
{
    rmirror *m = mirror_of(room);
    if (!m) return;
    if (m->loading) { /* merged after the read, by version */
        if (m->nbuf == m->capbuf) {
            uint32_t cap = m->capbuf ? m->capbuf * 2 : 8;
            pevent *nb = realloc(m->buf, cap * sizeof(*nb));
            if (!nb) {
                m->stale = true;
                return;
            }
            m->buf = nb;
            m->capbuf = cap;
        }
        pevent *p = &m->buf[m->nbuf];
        if (!(p->info = malloc(e->info_len + 1))) {
            m->stale = true;
            return;
        }
        memcpy(p->info, e->info, e->info_len);
        p->ilen = (uint16_t)(e->info_len > UINT16_MAX ? UINT16_MAX : e->info_len);
        p->version = e->version;
        p->client_id = e->client_id;
        p->join = e->join;
        snprintf(p->node_id, sizeof(p->node_id), "%.*s", (int)e->node_len, e->node);
        m->nbuf++;
        return;
    }
    if (!m->loaded) return; /* the next load holds it */
    apply(t, room, m, e->join, e->client_id, e->node, e->node_len, e->info, e->info_len);
}

static void on_loaded(void *arg, int status, uint64_t version, uint64_t top,
                      const rc_cluster_member *v, size_t n)
{
    rload *ld = arg;
    rc_rooms *t = ld->t;
    rc_room *room = t->cluster ? rc_rooms_find(t, ld->name, ld->len) : NULL;
    rmirror *m = room ? mirror_of(room) : NULL;
    if (!m || m->gen != ld->gen || !m->loading) {
        free(ld);
        return;
    }
    free(ld);
    m->loading = false;
    if (status != 0) { /* loaded again at the room's next sync, or when Redis is back */
        m->stale = true;
        if (m->loaded)
            for (uint32_t i = 0; i < m->nbuf && room->remote; i++)
                apply(t, room, m, m->buf[i].join, m->buf[i].client_id, m->buf[i].node_id,
                      strlen(m->buf[i].node_id), m->buf[i].info, m->buf[i].ilen);
        buf_clear(m);
        return;
    }
    stats_of(t)->loads++;
    const char *self = rc_cluster_node_id(rc_redisrooms_engine(t->cluster));
    size_t sl = strlen(self);
    /* Merge: members of the read that are new are told as joins, members no longer in it as
     * leaves (nothing is told on the first load: the room's members are still to join). */
    bool tell = m->loaded;
    uint32_t b = 0;
    for (rc_hnode *x = rc_htab_next(&m->table, &b, NULL); x; x = rc_htab_next(&m->table, &b, x))
        ((rmember *)(void *)x)->seen = false;
    for (size_t i = 0; i < n; i++) {
        if (v[i].node_len == sl && memcmp(v[i].node, self, sl) == 0) continue;
        if (v[i].node_len > RC_CLWIRE_NODE_MAX) continue;
        bool fresh = put_member(t, m, v[i].client_id, v[i].node, v[i].node_len, v[i].info,
                                v[i].info_len);
        if (fresh && tell) {
            stats_of(t)->remote_joins++;
            rc_presence_remote(t, room, v[i].client_id, v[i].info,
                               user_ok(v[i].info, v[i].info_len), true, NULL);
        }
    }
    b = 0;
    rc_hnode *x = rc_htab_next(&m->table, &b, NULL);
    while (x) {
        rc_hnode *next = rc_htab_next(&m->table, &b, x);
        rmember *r = (rmember *)(void *)x;
        if (!r->seen) {
            uint64_t id = r->client_id;
            remove_member(t, m, r);
            if (tell) {
                stats_of(t)->remote_leaves++;
                rc_presence_remote(t, room, id, NULL, 0, false, "dropped");
            }
        }
        x = next;
    }
    m->loaded = true;
    m->stale = false;
    /* The changes buffered meanwhile that the read does not hold. */
    for (uint32_t i = 0; i < m->nbuf && room->remote; i++) {
        pevent *p = &m->buf[i];
        if (p->version <= version) continue;
        apply(t, room, m, p->join, p->client_id, p->node_id, strlen(p->node_id), p->info,
              p->ilen);
    }
    buf_clear(m);
    (void)top;
}

void rc_redispresence_load(rc_rooms *t, rc_room *room)
{
    if (!t->cluster) return;
    if (!announced(t, room)) {
        mirror_free(t, room);
        return;
    }
    rmirror *m = mirror_of(room);
    if (!m) {
        if (!(m = calloc(1, sizeof(*m)))) return;
        room->remote = &m->pub;
    }
    if ((m->loaded && !m->stale) || m->loading) return;
    rload *ld = malloc(sizeof(*ld) + room->name_len);
    if (!ld) return;
    ld->t = t;
    ld->gen = ++m->gen;
    ld->len = room->name_len;
    memcpy(ld->name, room->name, room->name_len);
    if (rc_cluster_members_read(rc_redisrooms_engine(t->cluster), room->name, room->name_len,
                                on_loaded, ld) < 0) {
        free(ld);
        m->stale = true;
        return;
    }
    m->loading = true;
}

void rc_redispresence_stale(rc_rooms *t)
{
    uint32_t b = 0;
    for (rc_room *room = rc_rooms_next(t, &b, NULL); room; room = rc_rooms_next(t, &b, room)) {
        rmirror *m = mirror_of(room);
        if (!m) continue;
        m->stale = true;
        if (m->loading) { /* its reply may miss what the lost subscription missed */
            m->loading = false;
            m->gen++;
            buf_clear(m);
        }
    }
}

void rc_redispresence_local(rc_rooms *t, rc_room *room, const rc_endpoint *ep, bool join,
                            int reason)
{
    const char *info = "";
    size_t ilen = 0;
    if (join && ep->auth == RC_IDENT_USER) {
        info = ep->ident->user_json;
        ilen = ep->ident->user_json_len;
    } else if (!join) {
        info = rc_presence_reason_name(reason);
        ilen = strlen(info);
    }
    /* Refused (Redis unavailable or saturated): repaired by the reassert when it is back. */
    rc_cluster_presence(rc_redisrooms_engine(t->cluster), room->name, room->name_len, join,
                        ep->client_id, info, ilen, announced(t, room));
}

void rc_redispresence_reassert(rc_rooms *t)
{
    rc_cluster *c = rc_redisrooms_engine(t->cluster);
    uint32_t nrooms = rc_rooms_count(t), k = 0;
    const char **names = malloc((nrooms ? nrooms : 1) * sizeof(*names));
    size_t *lens = malloc((nrooms ? nrooms : 1) * sizeof(*lens));
    if (!names || !lens) goto out;
    stats_of(t)->reasserts++;
    uint32_t b = 0;
    for (rc_room *room = rc_rooms_next(t, &b, NULL); room; room = rc_rooms_next(t, &b, room)) {
        if (!room->nmembers || k >= nrooms) continue;
        rc_cluster_member *v = malloc(room->nmembers * sizeof(*v));
        if (!v) continue;
        for (uint32_t i = 0; i < room->nmembers; i++) {
            const rc_endpoint *ep = room->members[i].ep;
            bool user = ep->auth == RC_IDENT_USER;
            v[i] = (rc_cluster_member){.client_id = ep->client_id,
                                       .info = user ? ep->ident->user_json : "",
                                       .info_len = user ? ep->ident->user_json_len : 0};
        }
        if (rc_cluster_presence_sync(c, room->name, room->name_len, announced(t, room), v,
                                     room->nmembers) == 0) {
            names[k] = room->name;
            lens[k++] = room->name_len;
        }
        free(v);
    }
    rc_cluster_presence_prune(c, names, lens, k);
out:
    free(names);
    free(lens);
}

void rc_redispresence_ids(const rc_room *room, rc_textbuf *out, bool *first)
{
    const rmirror *m = mirror_of(room);
    if (!m) return;
    uint32_t b = 0;
    for (rc_hnode *x = rc_htab_next(&m->table, &b, NULL); x; x = rc_htab_next(&m->table, &b, x)) {
        rc_textbuf_printf(out, "%s%llu", *first ? "" : ",",
                          (unsigned long long)((rmember *)(void *)x)->client_id);
        *first = false;
    }
}

void rc_redispresence_users(const rc_room *room, rc_textbuf *out, bool *any)
{
    const rmirror *m = mirror_of(room);
    if (!m) return;
    uint32_t b = 0;
    for (rc_hnode *x = rc_htab_next(&m->table, &b, NULL); x; x = rc_htab_next(&m->table, &b, x)) {
        const rmember *r = (const rmember *)(const void *)x;
        if (!r->ulen) continue;
        /* `"user":"alice",` -> `"7":"alice"` */
        rc_textbuf_printf(out, "%s\"%llu\":%.*s", *any ? "," : ",\"users\":{",
                          (unsigned long long)r->client_id, (int)r->ulen - 8, r->user + 7);
        *any = true;
    }
}

void rc_redispresence_stats_get(const rc_rooms *t, rc_redispresence_stats *out)
{
    *out = *rc_redisrooms_pstats(t->cluster);
}
