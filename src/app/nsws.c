/* nsws.c — WebSocket observers of NetSync rooms; see nsws.h and docs/netsync.md. */
#include "app/nsws.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netsync/netsync.h"
#include "codec/wsframe.h"
#include "rooms/roomproto.h"
#include "app/server.h"
#include "core/textbuf.h"

/* One observed room id and the connections observing it. */
typedef struct obs_room {
    struct obs_room *hnext;      /* hash chain */
    uint32_t n, cap;             /* observers used / allocated */
    rc_conn **conns;             /* observers, in order of arrival */
    uint8_t id_len;
    uint8_t id[NSY_STR8_MAX];
} obs_room;

struct rc_nsws {
    rc_server *srv;              /* not owned */
    rc_netsync *ns;              /* not owned */
    obs_room **bucket;           /* room id hash table, power-of-two size */
    uint32_t nbucket, nrooms;
    uint64_t nobs;               /* (connection, room) pairs */
    uint64_t frames_out;         /* frames queued to observers */
    rc_textbuf tb;               /* JSON scratch, reused by every message */
};

#define NSY_ARGS_MAX NSY_STR16_MAX /* argumentsJson bytes */

/* ---- the registry ------------------------------------------------------------------------ */

static uint32_t hash_id(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a, as the rooms themselves */
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static obs_room **find_slot(rc_nsws *w, const uint8_t *id, size_t len)
{
    obs_room **pp = &w->bucket[hash_id(id, len) & (w->nbucket - 1)];
    while (*pp && !((*pp)->id_len == len && memcmp((*pp)->id, id, len) == 0))
        pp = &(*pp)->hnext;
    return pp;
}

static void grow_table(rc_nsws *w)
{
    uint32_t nb = w->nbucket * 2;
    obs_room **b = calloc(nb, sizeof(*b));
    if (!b) return; /* chains just get longer */
    for (uint32_t i = 0; i < w->nbucket; i++) {
        for (obs_room *o = w->bucket[i], *next; o; o = next) {
            next = o->hnext;
            uint32_t h = hash_id(o->id, o->id_len) & (nb - 1);
            o->hnext = b[h];
            b[h] = o;
        }
    }
    free(w->bucket);
    w->bucket = b;
    w->nbucket = nb;
}

/* observe adds c to room id; 1 when added, 0 when already there, -1 when out of memory. */
static int observe(rc_nsws *w, rc_conn *c, const uint8_t *id, size_t len)
{
    obs_room **pp = find_slot(w, id, len), *o = *pp;
    if (!o) {
        if (!(o = calloc(1, sizeof(*o)))) return -1;
        o->id_len = (uint8_t)len;
        memcpy(o->id, id, len);
        *pp = o;
        if (++w->nrooms > w->nbucket) grow_table(w);
    }
    for (uint32_t i = 0; i < o->n; i++)
        if (o->conns[i] == c) return 0;
    if (o->n == o->cap) {
        uint32_t cap = o->cap ? o->cap * 2 : 4;
        rc_conn **v = realloc(o->conns, cap * sizeof(*v));
        if (!v) return -1;
        o->conns = v;
        o->cap = cap;
    }
    o->conns[o->n++] = c;
    c->nsobs++;
    w->nobs++;
    return 1;
}

static void room_drop(rc_nsws *w, obs_room **pp)
{
    obs_room *o = *pp;
    *pp = o->hnext;
    free(o->conns);
    free(o);
    w->nrooms--;
}

/* unobserve removes c from *pp's room (order kept: observers see nothing of each other, but
 * a stable order keeps the fan-out deterministic). False when c was not observing it. */
static bool unobserve(rc_nsws *w, obs_room **pp, rc_conn *c)
{
    obs_room *o = *pp;
    for (uint32_t i = 0; i < o->n; i++) {
        if (o->conns[i] != c) continue;
        memmove(&o->conns[i], &o->conns[i + 1], (o->n - i - 1) * sizeof(*o->conns));
        o->n--;
        c->nsobs--;
        w->nobs--;
        if (o->n == 0) room_drop(w, pp);
        return true;
    }
    return false;
}

void rc_nsws_forget(rc_nsws *w, rc_conn *c)
{
    for (uint32_t b = 0; b < w->nbucket && c->nsobs; b++) {
        obs_room **pp = &w->bucket[b];
        while (*pp) {
            obs_room *o = *pp;
            if (unobserve(w, pp, c) && *pp != o) continue; /* o was freed; *pp is its next */
            pp = &o->hnext;
        }
    }
}

/* ---- encoding ---------------------------------------------------------------------------- */

/* put_float writes a float32 as the shortest of %.7g / %.9g that reads back to the same
 * value (so 1.1f is 1.1, not 1.10000002), and null for NaN and infinities, which JSON lacks. */
static void put_float(rc_textbuf *t, const uint8_t *le)
{
    uint32_t bits = (uint32_t)le[0] | (uint32_t)le[1] << 8 | (uint32_t)le[2] << 16 |
                    (uint32_t)le[3] << 24;
    float f;
    memcpy(&f, &bits, sizeof(f));
    if (!isfinite(f)) {
        rc_textbuf_append(t, "null", 4);
        return;
    }
    char s[32];
    int n = snprintf(s, sizeof(s), "%.7g", (double)f);
    if (strtof(s, NULL) != f) n = snprintf(s, sizeof(s), "%.9g", (double)f);
    rc_textbuf_append(t, s, (size_t)n);
}

static void put_transform(rc_textbuf *t, const uint8_t *p)
{
    rc_textbuf_append(t, "[", 1);
    for (int i = 0; i < 6; i++) {
        if (i) rc_textbuf_append(t, ",", 1);
        put_float(t, p + 4 * i);
    }
    rc_textbuf_append(t, "]", 1);
}

static void begin(rc_textbuf *t, const char *type, const uint8_t *id, size_t len)
{
    rc_buf_reset(&t->buf);
    t->failed = false;
    rc_textbuf_printf(t, "{\"type\":\"%s\",\"room\":", type);
    rc_textbuf_json_string(t, (const char *)id, len);
}

/* encode_state renders a room (NULL: it does not exist) as netsync_state: its live visible
 * clients with their latest transforms in join order, its live stealth clients, and the
 * counters an operator page derives rates from. */
static void encode_state(rc_nsws *w, const uint8_t *id, size_t len, const nsy_room *r)
{
    rc_textbuf *t = &w->tb;
    begin(t, "netsync_state", id, len);
    rc_textbuf_printf(t, ",\"time_ms\":%.3f,\"exists\":%s", rc_loop_now(w->srv->loop) / 1e6,
                      r ? "true" : "false");
    if (!r) {
        rc_textbuf_printf(t, ",\"clients\":[],\"stealth\":[]}");
        return;
    }
    rc_textbuf_printf(t, ",\"transforms_in\":%llu,\"broadcasts\":%llu,\"devices\":%u,\"clients\":[",
                      (unsigned long long)r->transforms_in, (unsigned long long)r->bcasts,
                      r->ndev);
    static const char *const part[4] = {"physical", "head", "right", "left"};
    bool first = true;
    for (uint32_t k = 0; k < r->nlive; k++) {
        const nsy_dev *d = &r->dev[r->order[k]];
        if (d->stealth || d->ent_len < NSY_ENTRY_FIXED) continue;
        rc_textbuf_printf(t, "%s{\"no\":%u,\"device\":", first ? "" : ",", d->no);
        first = false;
        rc_textbuf_json_string(t, (const char *)d->id, d->id_len);
        rc_textbuf_printf(t, ",\"transforms\":%u", d->transforms);
        for (int i = 0; i < 4; i++) {
            rc_textbuf_printf(t, ",\"%s\":", part[i]);
            put_transform(t, d->ent + 2 + i * NSY_TRANSFORM_SIZE);
        }
        rc_textbuf_append(t, ",\"virtual\":[", 12);
        unsigned nv = d->ent[2 + NSY_BODY_SIZE];
        for (unsigned v = 0; v < nv; v++) {
            if (v) rc_textbuf_append(t, ",", 1);
            put_transform(t, d->ent + NSY_ENTRY_FIXED + v * NSY_TRANSFORM_SIZE);
        }
        rc_textbuf_append(t, "]}", 2);
    }
    rc_textbuf_append(t, "],\"stealth\":[", 13);
    first = true;
    for (uint32_t k = 0; k < r->nlive; k++) {
        const nsy_dev *d = &r->dev[r->order[k]];
        if (!d->stealth) continue;
        rc_textbuf_printf(t, "%s{\"no\":%u,\"device\":", first ? "" : ",", d->no);
        first = false;
        rc_textbuf_json_string(t, (const char *)d->id, d->id_len);
        rc_textbuf_printf(t, ",\"transforms\":%u}", d->transforms);
    }
    rc_textbuf_append(t, "]}", 2);
}

static void encode_vars_of(rc_textbuf *t, const nsy_vtab *v, bool all)
{
    bool first = true;
    for (unsigned i = 0; i < v->n; i++) {
        const nsy_var *x = &v->v[i];
        if (!all && !x->dirty) continue;
        rc_textbuf_append(t, first ? "{\"name\":" : ",{\"name\":", first ? 8 : 9);
        first = false;
        rc_textbuf_json_string(t, (const char *)x->name, x->name_len);
        rc_textbuf_append(t, ",\"value\":", 9);
        rc_textbuf_json_string(t, (const char *)x->value, x->value_len);
        rc_textbuf_printf(t, ",\"timestamp\":%.17g,\"writer\":%u}", isfinite(x->ts) ? x->ts : 0.0,
                          x->writer);
    }
}

/* encode_vars renders the room's variables (all, or those changed since the last sync) as
 * netsync_vars. Returns false when there is none to tell. */
static bool encode_vars(rc_nsws *w, const nsy_room *r, bool all)
{
    bool any = all ? r->globals.n > 0 : r->globals.ndirty > 0;
    for (uint32_t i = 0; i < r->ncvars && !any; i++)
        any = all ? r->cvars[i]->n > 0 : r->cvars[i]->ndirty > 0;
    if (!any) return false;
    rc_textbuf *t = &w->tb;
    begin(t, "netsync_vars", r->id, r->id_len);
    rc_textbuf_printf(t, ",\"full\":%s,\"globals\":[", all ? "true" : "false");
    encode_vars_of(t, &r->globals, all);
    rc_textbuf_append(t, "],\"clients\":[", 13);
    bool first = true;
    for (uint32_t i = 0; i < r->ncvars; i++) {
        const nsy_vtab *v = r->cvars[i];
        if (!(all ? v->n > 0 : v->ndirty > 0)) continue;
        rc_textbuf_printf(t, "%s{\"target\":%u,\"vars\":[", first ? "" : ",", v->target);
        first = false;
        encode_vars_of(t, v, all);
        rc_textbuf_append(t, "]}", 2);
    }
    rc_textbuf_append(t, "]}", 2);
    return true;
}

/* send_scratch queues the text in w->tb as one frame to n connections. */
static void send_scratch(rc_nsws *w, rc_conn **conns, uint32_t n)
{
    rc_textbuf *t = &w->tb;
    if (t->failed) return;
    rc_msg *m = rc_frame_new(RC_WS_TEXT, rc_buf_head(&t->buf), rc_buf_size(&t->buf));
    if (!m) return;
    for (uint32_t i = 0; i < n; i++) rc_conn_send(conns[i], m);
    w->frames_out += n;
    rc_msg_unref(m);
}

/* The transport's watcher: one encoding per event, queued to every observer of the room. */
static void on_event(void *arg, const nsy_room *r, const nsy_watch_ev *ev)
{
    rc_nsws *w = arg;
    if (!w->nrooms) return;
    obs_room *o = *find_slot(w, r->id, r->id_len);
    if (!o) return;
    switch (ev->kind) {
    case NSY_W_STATE: encode_state(w, r->id, r->id_len, r); break;
    case NSY_W_GONE: encode_state(w, r->id, r->id_len, NULL); break;
    case NSY_W_VARS:
        if (!encode_vars(w, r, ev->all)) return;
        break;
    case NSY_W_RPC:
        begin(&w->tb, "netsync_rpc", r->id, r->id_len);
        rc_textbuf_printf(&w->tb, ",\"sender\":%u,\"name\":", ev->sender);
        rc_textbuf_json_string(&w->tb, (const char *)ev->name, ev->name_len);
        rc_textbuf_append(&w->tb, ",\"args\":", 8);
        rc_textbuf_json_string(&w->tb, (const char *)ev->args, ev->args_len);
        rc_textbuf_append(&w->tb, "}", 1);
        break;
    }
    send_scratch(w, o->conns, o->n);
}

/* ---- requests ---------------------------------------------------------------------------- */

/* get_string decodes member key of the request as a string of at most cap bytes (no NUL).
 * Returns its length; -1 when absent, -2 when not a string or too long (after answering). */
static long get_string(rc_conn *c, const char *p, size_t n, const char *key, char *out,
                       size_t cap, bool required)
{
    rc_json_span s;
    if (!rc_json_member(p, n, key, &s)) {
        if (required)
            rc_roomproto_error(c, RC_ERR_MISSING_FIELD, "\"%s\" is required", key);
        return required ? -2 : -1;
    }
    long len = s.type == RC_JSON_STRING ? rc_json_unescape(s.p, s.len, out, cap) : -1;
    if (len < 0) {
        rc_roomproto_error(c, RC_ERR_BAD_FIELD, "\"%s\" must be a string of at most %zu bytes",
                           key, cap);
        return -2;
    }
    return len;
}

static void reply_room(rc_conn *c, rc_nsws *w, const char *type, const char *room, size_t len,
                       const char *extra)
{
    begin(&w->tb, type, (const uint8_t *)room, len);
    if (extra) rc_textbuf_printf(&w->tb, "%s", extra);
    rc_textbuf_append(&w->tb, "}", 1);
    send_scratch(w, &c, 1);
}

static void do_observe(rc_conn *c, rc_nsws *w, const char *room, size_t len)
{
    if (c->nsobs >= c->srv->cfg.max_rooms_per_client) {
        rc_roomproto_error(c, RC_ERR_TOO_MANY_ROOMS,
                           "already observing %u NetSync rooms, the most a client may",
                           c->nsobs);
        return;
    }
    if (observe(w, c, (const uint8_t *)room, len) < 0) {
        rc_conn_close_ws(c, RC_WS_CLOSE_INTERNAL, "out of memory", true);
        return;
    }
    const nsy_room *r = rc_netsync_room(w->ns, room, len);
    char extra[80];
    snprintf(extra, sizeof(extra), ",\"tick_ms\":%.1f,\"exists\":%s",
             rc_netsync_tick_ns(w->ns) / 1e6, r ? "true" : "false");
    reply_room(c, w, "netsync_observing", room, len, extra);
    /* A snapshot now, so an observer need not wait for the room's next change; afterwards
     * only what the room publishes. */
    if (r && encode_vars(w, r, true)) send_scratch(w, &c, 1);
    encode_state(w, (const uint8_t *)room, len, r);
    send_scratch(w, &c, 1);
}

static void do_unobserve(rc_conn *c, rc_nsws *w, const char *room, size_t len)
{
    obs_room **pp = find_slot(w, (const uint8_t *)room, len);
    if (!*pp || !unobserve(w, pp, c)) {
        rc_roomproto_error(c, RC_ERR_NOT_MEMBER, "not observing NetSync room '%.*s'",
                           (int)len, room);
        return;
    }
    reply_room(c, w, "netsync_unobserved", room, len, NULL);
}

static void do_rpc(rc_conn *c, rc_nsws *w, const char *room, size_t rlen, const char *p,
                   size_t n)
{
    char name[NSY_STR8_MAX + 1];
    static char args[NSY_ARGS_MAX + 1];
    long nl = get_string(c, p, n, "name", name, NSY_STR8_MAX, true);
    if (nl < 0) return;
    if (nl == 0) {
        rc_roomproto_error(c, RC_ERR_BAD_FIELD, "\"name\" must not be empty");
        return;
    }
    /* argumentsJson is a string on the wire and is never parsed: a JSON string is sent as
     * its contents, an array or object as its JSON text (what Unity's RPC arguments are). */
    rc_json_span a;
    long al = 0;
    if (rc_json_member(p, n, "args", &a)) {
        if (a.type == RC_JSON_STRING) {
            al = rc_json_unescape(a.p, a.len, args, NSY_ARGS_MAX);
        } else if ((a.type == RC_JSON_ARRAY || a.type == RC_JSON_OBJECT) && a.len <= NSY_ARGS_MAX) {
            memcpy(args, a.p, a.len);
            al = (long)a.len;
        } else {
            al = -1;
        }
        if (al < 0) {
            rc_roomproto_error(c, RC_ERR_BAD_FIELD,
                               "\"args\" must be a string, array or object of at most %d bytes",
                               NSY_ARGS_MAX);
            return;
        }
    }
    int r = rc_netsync_send_rpc(w->ns, room, rlen, 0, name, (size_t)nl, args, (size_t)al);
    if (r == -ENOENT) {
        rc_roomproto_error(c, RC_ERR_NO_SUCH_ROOM, "no NetSync room '%.*s'", (int)rlen, room);
        return;
    }
    if (r < 0) {
        rc_roomproto_error(c, RC_ERR_BAD_FIELD, "the RPC cannot be encoded");
        return;
    }
    reply_room(c, w, "netsync_rpc_sent", room, rlen, NULL);
}

static const char *nv_result_name(enum rc_netsync_nv r)
{
    switch (r) {
    case RC_NETSYNC_NV_APPLIED: return "applied";
    case RC_NETSYNC_NV_UNCHANGED: return "unchanged";
    case RC_NETSYNC_NV_STALE: return "stale";
    case RC_NETSYNC_NV_LIMIT: return "limit";
    case RC_NETSYNC_NV_INVALID: return "invalid";
    case RC_NETSYNC_NV_NO_ROOM: return "no_room";
    case RC_NETSYNC_NV_NO_DEVICE: return "no_device";
    case RC_NETSYNC_NV_NOMEM: break;
    }
    return "nomem";
}

static void do_set(rc_conn *c, rc_nsws *w, const char *room, size_t rlen, const char *p,
                   size_t n)
{
    char name[NSY_STR8_MAX + 1], dev[NSY_ID_MAX + 1];
    static char value[NSY_STR16_MAX + 1];
    long nl = get_string(c, p, n, "name", name, NSY_STR8_MAX, true);
    if (nl < 0) return;
    long vl = get_string(c, p, n, "value", value, NSY_STR16_MAX, true);
    if (vl < 0) return;
    long dl = get_string(c, p, n, "device", dev, NSY_ID_MAX, false);
    if (dl == -2) return;
    const char *result;
    if (dl < 0) {
        result = nv_result_name(rc_netsync_set_global_var(w->ns, room, rlen, name, (size_t)nl,
                                                          value, (size_t)vl));
    } else {
        enum rc_netsync_nv r = rc_netsync_set_client_var(w->ns, room, rlen, dev, (size_t)dl,
                                                         name, (size_t)nl, value, (size_t)vl);
        result = nv_result_name(r);
        /* Like the REST bridge: a device that has not joined yet gets the value when it does. */
        if (r == RC_NETSYNC_NV_NO_ROOM || r == RC_NETSYNC_NV_NO_DEVICE) {
            int q = nl == 0 ? -EINVAL
                            : rc_netsync_queue_client_var(w->ns, room, rlen, dev, (size_t)dl,
                                                          name, (size_t)nl, value, (size_t)vl);
            result = q == 0 ? "queued" : q == -EINVAL ? "invalid" : "queue_full";
        }
    }
    rc_textbuf *t = &w->tb;
    begin(t, "netsync_set_result", (const uint8_t *)room, rlen);
    rc_textbuf_append(t, ",\"name\":", 8);
    rc_textbuf_json_string(t, name, (size_t)nl);
    if (dl >= 0) {
        rc_textbuf_append(t, ",\"device\":", 10);
        rc_textbuf_json_string(t, dev, (size_t)dl);
    }
    rc_textbuf_printf(t, ",\"result\":\"%s\"}", result);
    send_scratch(w, &c, 1);
}

bool rc_nsws_is_type(const char *type, size_t len)
{
    return len > 8 && memcmp(type, "netsync_", 8) == 0;
}

static bool is(const char *type, size_t len, const char *s)
{
    return len == strlen(s) && memcmp(type, s, len) == 0;
}

void rc_nsws_on_text(rc_conn *c, const char *type, size_t tl, const char *p, size_t n,
                     const rc_json_top *t)
{
    rc_nsws *w = c->srv->nsws;
    if (!w) {
        rc_roomproto_error(c, RC_ERR_NETSYNC_OFF, "the NetSync transport is off (--no-netsync)");
        return;
    }
    enum { OBSERVE, UNOBSERVE, RPC, SET } op;
    if (is(type, tl, "netsync_observe")) op = OBSERVE;
    else if (is(type, tl, "netsync_unobserve")) op = UNOBSERVE;
    else if (is(type, tl, "netsync_rpc")) op = RPC;
    else if (is(type, tl, "netsync_set")) op = SET;
    else {
        rc_roomproto_error(c, RC_ERR_RESERVED_TYPE,
                           "unknown NetSync request '%.*s' (types netsync_* are reserved)",
                           (int)tl, type);
        return;
    }
    /* NetSync room ids: 0..255 bytes of UTF-8 (the empty id is a valid NetSync room). */
    const rc_json_span *rs = &t->key[RC_JK_ROOM];
    char room[NSY_STR8_MAX + 1];
    long rl = rs->type == RC_JSON_STRING ? rc_json_unescape(rs->p, rs->len, room, NSY_STR8_MAX)
                                         : -1;
    if (rs->type == RC_JSON_NONE) {
        rc_roomproto_error(c, RC_ERR_MISSING_FIELD, "\"room\" is required");
        return;
    }
    if (rl < 0) {
        rc_roomproto_error(c, RC_ERR_BAD_FIELD,
                           "\"room\" must be a NetSync room id: at most %d bytes of UTF-8",
                           NSY_STR8_MAX);
        return;
    }
    switch (op) {
    case OBSERVE: do_observe(c, w, room, (size_t)rl); break;
    case UNOBSERVE: do_unobserve(c, w, room, (size_t)rl); break;
    case RPC: do_rpc(c, w, room, (size_t)rl, p, n); break;
    case SET: do_set(c, w, room, (size_t)rl, p, n); break;
    }
}

rc_nsws_counts rc_nsws_counts_of(const rc_nsws *w)
{
    return (rc_nsws_counts){.observations = w->nobs, .rooms = w->nrooms,
                            .frames_out = w->frames_out};
}

/* ---- life cycle -------------------------------------------------------------------------- */

rc_nsws *rc_nsws_new(rc_server *srv, rc_netsync *ns)
{
    rc_nsws *w = calloc(1, sizeof(*w));
    if (!w) return NULL;
    w->srv = srv;
    w->ns = ns;
    w->nbucket = 16;
    if (!(w->bucket = calloc(w->nbucket, sizeof(*w->bucket)))) {
        free(w);
        return NULL;
    }
    rc_netsync_watch(ns, on_event, w);
    return w;
}

void rc_nsws_free(rc_nsws *w)
{
    if (!w) return;
    rc_netsync_watch(w->ns, NULL, NULL);
    for (uint32_t b = 0; b < w->nbucket; b++) {
        while (w->bucket[b]) {
            obs_room *o = w->bucket[b];
            for (uint32_t i = 0; i < o->n; i++) o->conns[i]->nsobs = 0;
            room_drop(w, &w->bucket[b]);
        }
    }
    free(w->bucket);
    rc_textbuf_release(&w->tb);
    free(w);
}
