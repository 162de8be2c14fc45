/* nsws.c — WebSocket observers of NetSync rooms; see nsws.h and docs/netsync.md. */
#include "app/nsws.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/server.h"
#include "codec/wsframe.h"
#include "core/hash.h"
#include "codec/textbuf.h"
#include "netsync/netsync.h"
#include "rooms/roomproto.h"

/* One observed room id and the endpoints observing it. */
typedef struct obs_room {
    rc_hnode node;               /* in rc_nsws.rooms, by the id's hash */
    uint32_t n, cap;             /* observers used / allocated */
    rc_endpoint **eps;           /* observers, in order of arrival */
    uint8_t id_len;
    uint8_t id[NSY_STR8_MAX];
} obs_room;

/* An endpoint observing at least one room: how many (the per-client limit, and a quick "no"
 * when a closing client observed nothing). */
typedef struct obs_client {
    rc_hnode node;               /* in rc_nsws.clients, by the endpoint's address */
    rc_endpoint *ep;
    uint32_t nrooms;             /* rooms it observes */
} obs_client;

#define NSY_ARGS_MAX NSY_STR16_MAX /* argumentsJson bytes */

struct rc_nsws {
    rc_server *srv;              /* not owned */
    rc_netsync *ns;              /* not owned */
    rc_htab rooms;               /* obs_room by id */
    rc_htab clients;             /* obs_client by endpoint */
    uint64_t nobs;               /* (endpoint, room) pairs */
    uint64_t frames_out;         /* frames queued to observers */
    rc_textbuf tb;               /* JSON scratch, reused by every message */
    char args[NSY_ARGS_MAX + 1]; /* an RPC's decoded arguments */
    char value[NSY_STR16_MAX + 1]; /* a variable set's decoded value */
};

/* ---- the registry ------------------------------------------------------------------------ */

#define room_of(x) ((obs_room *)(void *)((char *)(x) - offsetof(obs_room, node)))
#define client_of(x) ((obs_client *)(void *)((char *)(x) - offsetof(obs_client, node)))

static uint64_t ep_hash(const rc_endpoint *ep)
{
    return rc_hash_mix((uint64_t)(uintptr_t)ep);
}

static obs_room *find_room(const rc_nsws *w, const uint8_t *id, size_t len)
{
    uint64_t h = rc_hash(id, len);
    for (rc_hnode *n = rc_htab_chain(&w->rooms, h); n; n = n->next) {
        obs_room *o = room_of(n);
        if (n->hash == h && o->id_len == len && memcmp(o->id, id, len) == 0) return o;
    }
    return NULL;
}

static obs_client *find_client(const rc_nsws *w, const rc_endpoint *ep)
{
    uint64_t h = ep_hash(ep);
    for (rc_hnode *n = rc_htab_chain(&w->clients, h); n; n = n->next)
        if (n->hash == h && client_of(n)->ep == ep) return client_of(n);
    return NULL;
}

static uint32_t observed_by(const rc_nsws *w, const rc_endpoint *ep)
{
    const obs_client *oc = find_client(w, ep);
    return oc ? oc->nrooms : 0;
}

/* count adds delta to ep's count of observed rooms (creating or dropping its entry). -1 when
 * out of memory. */
static int count(rc_nsws *w, rc_endpoint *ep, int delta)
{
    obs_client *oc = find_client(w, ep);
    if (!oc) {
        if (!(oc = calloc(1, sizeof(*oc)))) return -1;
        oc->ep = ep;
        if (rc_htab_insert(&w->clients, &oc->node, ep_hash(ep)) < 0) {
            free(oc);
            return -1;
        }
    }
    oc->nrooms += (uint32_t)delta;
    if (oc->nrooms == 0) {
        rc_htab_remove(&w->clients, &oc->node);
        free(oc);
    }
    return 0;
}

/* observe adds ep to room id; 1 when added, 0 when already there, -1 when out of memory. */
static int observe(rc_nsws *w, rc_endpoint *ep, const uint8_t *id, size_t len)
{
    obs_room *o = find_room(w, id, len);
    if (!o) {
        if (!(o = calloc(1, sizeof(*o)))) return -1;
        o->id_len = (uint8_t)len;
        memcpy(o->id, id, len);
        if (rc_htab_insert(&w->rooms, &o->node, rc_hash(id, len)) < 0) {
            free(o);
            return -1;
        }
    }
    for (uint32_t i = 0; i < o->n; i++)
        if (o->eps[i] == ep) return 0;
    if (o->n == o->cap) {
        uint32_t cap = o->cap ? o->cap * 2 : 4;
        rc_endpoint **v = realloc(o->eps, cap * sizeof(*v));
        if (!v) return -1;
        o->eps = v;
        o->cap = cap;
    }
    if (count(w, ep, 1) < 0) return -1;
    o->eps[o->n++] = ep;
    w->nobs++;
    return 1;
}

static void room_drop(rc_nsws *w, obs_room *o)
{
    rc_htab_remove(&w->rooms, &o->node);
    free(o->eps);
    free(o);
}

/* unobserve removes ep from room o (order kept: observers see nothing of each other, but a
 * stable order keeps the fan-out deterministic); o is freed with its last observer. False when
 * ep was not observing it. */
static bool unobserve(rc_nsws *w, obs_room *o, rc_endpoint *ep)
{
    for (uint32_t i = 0; i < o->n; i++) {
        if (o->eps[i] != ep) continue;
        memmove(&o->eps[i], &o->eps[i + 1], (o->n - i - 1) * sizeof(*o->eps));
        o->n--;
        count(w, ep, -1);
        w->nobs--;
        if (o->n == 0) room_drop(w, o);
        return true;
    }
    return false;
}

void rc_nsws_forget(rc_nsws *w, rc_endpoint *ep)
{
    if (!find_client(w, ep)) return;
    uint32_t b = 0;
    rc_hnode *n = rc_htab_next(&w->rooms, &b, NULL);
    while (n && find_client(w, ep)) {
        rc_hnode *next = rc_htab_next(&w->rooms, &b, n); /* before n may be freed */
        unobserve(w, room_of(n), ep);
        n = next;
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

/* send_scratch sends the text in w->tb to n endpoints, encoded once per wire format. */
static void send_scratch(rc_nsws *w, rc_endpoint *const *eps, uint32_t n)
{
    rc_textbuf *t = &w->tb;
    if (t->failed) return;
    w->frames_out += rc_endpoints_send_text(eps, n, rc_buf_head(&t->buf), rc_buf_size(&t->buf));
}

/* The transport's watcher: one encoding per event, queued to every observer of the room. */
static void on_event(void *arg, const nsy_room *r, const nsy_watch_ev *ev)
{
    rc_nsws *w = arg;
    if (!w->rooms.count) return;
    obs_room *o = find_room(w, r->id, r->id_len);
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
    send_scratch(w, o->eps, o->n);
}

/* ---- requests ---------------------------------------------------------------------------- */

/* get_string decodes member key of the request as a string of at most cap bytes (no NUL).
 * Returns its length; -1 when absent, -2 when not a string or too long (after answering). */
static long get_string(rc_nsws *w, rc_endpoint *ep, const char *p, size_t n, const char *key,
                       char *out, size_t cap, bool required)
{
    rc_json_span s;
    if (!rc_json_member(p, n, key, &s)) {
        if (required)
            rc_roomproto_error(&w->srv->rooms, ep, RC_RERR_MISSING_FIELD, "\"%s\" is required",
                               key);
        return required ? -2 : -1;
    }
    long len = s.type == RC_JSON_STRING ? rc_json_unescape(s.p, s.len, out, cap) : -1;
    if (len < 0) {
        rc_roomproto_error(&w->srv->rooms, ep, RC_RERR_BAD_FIELD,
                           "\"%s\" must be a string of at most %zu bytes", key, cap);
        return -2;
    }
    return len;
}

static void reply_room(rc_nsws *w, rc_endpoint *ep, const char *type, const char *room,
                       size_t len, const char *extra)
{
    begin(&w->tb, type, (const uint8_t *)room, len);
    if (extra) rc_textbuf_printf(&w->tb, "%s", extra);
    rc_textbuf_append(&w->tb, "}", 1);
    send_scratch(w, &ep, 1);
}

static int do_observe(rc_nsws *w, rc_endpoint *ep, const char *room, size_t len)
{
    uint32_t nobs = observed_by(w, ep);
    if (nobs >= w->srv->cfg.max_rooms_per_client)
        return rc_roomproto_error(&w->srv->rooms, ep, RC_RERR_TOO_MANY_ROOMS,
                                  "already observing %u NetSync rooms, the most a client may",
                                  nobs);
    if (observe(w, ep, (const uint8_t *)room, len) < 0) {
        ep->ops->close(ep, RC_WS_CLOSE_INTERNAL, "out of memory");
        return -1;
    }
    const nsy_room *r = rc_netsync_room(w->ns, room, len);
    char extra[80];
    snprintf(extra, sizeof(extra), ",\"tick_ms\":%.1f,\"exists\":%s",
             rc_netsync_tick_ns(w->ns) / 1e6, r ? "true" : "false");
    reply_room(w, ep, "netsync_observing", room, len, extra);
    /* A snapshot now, so an observer need not wait for the room's next change; afterwards
     * only what the room publishes. */
    if (r && encode_vars(w, r, true)) send_scratch(w, &ep, 1);
    encode_state(w, (const uint8_t *)room, len, r);
    send_scratch(w, &ep, 1);
    return 0;
}

static int do_unobserve(rc_nsws *w, rc_endpoint *ep, const char *room, size_t len)
{
    obs_room *o = find_room(w, (const uint8_t *)room, len);
    if (!o || !unobserve(w, o, ep))
        return rc_roomproto_error(&w->srv->rooms, ep, RC_RERR_NOT_MEMBER,
                                  "not observing NetSync room '%.*s'", (int)len, room);
    reply_room(w, ep, "netsync_unobserved", room, len, NULL);
    return 0;
}

static int do_rpc(rc_nsws *w, rc_endpoint *ep, const char *room, size_t rlen, const char *p,
                  size_t n)
{
    rc_rooms *rooms = &w->srv->rooms;
    char name[NSY_STR8_MAX + 1];
    long nl = get_string(w, ep, p, n, "name", name, NSY_STR8_MAX, true);
    if (nl < 0) return -1;
    if (nl == 0) return rc_roomproto_error(rooms, ep, RC_RERR_BAD_FIELD, "\"name\" must not be empty");
    /* argumentsJson is a string on the wire and is never parsed: a JSON string is sent as
     * its contents, an array or object as its JSON text (what Unity's RPC arguments are). */
    rc_json_span a;
    long al = 0;
    if (rc_json_member(p, n, "args", &a)) {
        if (a.type == RC_JSON_STRING) {
            al = rc_json_unescape(a.p, a.len, w->args, NSY_ARGS_MAX);
        } else if ((a.type == RC_JSON_ARRAY || a.type == RC_JSON_OBJECT) && a.len <= NSY_ARGS_MAX) {
            memcpy(w->args, a.p, a.len);
            al = (long)a.len;
        } else {
            al = -1;
        }
        if (al < 0)
            return rc_roomproto_error(
                rooms, ep, RC_RERR_BAD_FIELD,
                "\"args\" must be a string, array or object of at most %d bytes", NSY_ARGS_MAX);
    }
    int r = rc_netsync_send_rpc(w->ns, room, rlen, 0, name, (size_t)nl, w->args, (size_t)al);
    if (r == -ENOENT)
        return rc_roomproto_error(rooms, ep, RC_RERR_NO_SUCH_ROOM, "no NetSync room '%.*s'",
                                  (int)rlen, room);
    if (r < 0) return rc_roomproto_error(rooms, ep, RC_RERR_BAD_FIELD, "the RPC cannot be encoded");
    reply_room(w, ep, "netsync_rpc_sent", room, rlen, NULL);
    return 0;
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

static int do_set(rc_nsws *w, rc_endpoint *ep, const char *room, size_t rlen, const char *p,
                  size_t n)
{
    char name[NSY_STR8_MAX + 1], dev[NSY_ID_MAX + 1];
    long nl = get_string(w, ep, p, n, "name", name, NSY_STR8_MAX, true);
    if (nl < 0) return -1;
    long vl = get_string(w, ep, p, n, "value", w->value, NSY_STR16_MAX, true);
    if (vl < 0) return -1;
    long dl = get_string(w, ep, p, n, "device", dev, NSY_ID_MAX, false);
    if (dl == -2) return -1;
    const char *result;
    if (dl < 0) {
        result = nv_result_name(rc_netsync_set_global_var(w->ns, room, rlen, name, (size_t)nl,
                                                          w->value, (size_t)vl));
    } else {
        enum rc_netsync_nv r = rc_netsync_set_client_var(w->ns, room, rlen, dev, (size_t)dl,
                                                         name, (size_t)nl, w->value, (size_t)vl);
        result = nv_result_name(r);
        /* Like the REST bridge: a device that has not joined yet gets the value when it does. */
        if (r == RC_NETSYNC_NV_NO_ROOM || r == RC_NETSYNC_NV_NO_DEVICE) {
            int q = nl == 0 ? -EINVAL
                            : rc_netsync_queue_client_var(w->ns, room, rlen, dev, (size_t)dl,
                                                          name, (size_t)nl, w->value, (size_t)vl);
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
    send_scratch(w, &ep, 1);
    return 0;
}

static bool is(const char *type, size_t len, const char *s)
{
    return len == strlen(s) && memcmp(type, s, len) == 0;
}

int rc_nsws_request(void *arg, rc_endpoint *ep, const char *type, size_t tl, const char *p,
                    size_t n, const rc_json_top *t)
{
    rc_server *srv = arg;
    rc_nsws *w = srv->nsws;
    if (!w)
        return rc_roomproto_error(&srv->rooms, ep, RC_RERR_NETSYNC_OFF,
                                  "the NetSync transport is off (--no-netsync)");
    enum { OBSERVE, UNOBSERVE, RPC, SET } op;
    if (is(type, tl, "netsync_observe")) op = OBSERVE;
    else if (is(type, tl, "netsync_unobserve")) op = UNOBSERVE;
    else if (is(type, tl, "netsync_rpc")) op = RPC;
    else if (is(type, tl, "netsync_set")) op = SET;
    else
        return rc_roomproto_error(&srv->rooms, ep, RC_RERR_RESERVED_TYPE,
                                  "unknown NetSync request '%.*s' (types netsync_* are reserved)",
                                  (int)tl, type);
    /* NetSync room ids: 0..255 bytes of UTF-8 (the empty id is a valid NetSync room). */
    const rc_json_span *rs = &t->key[RC_JK_ROOM];
    char room[NSY_STR8_MAX + 1];
    long rl = rs->type == RC_JSON_STRING ? rc_json_unescape(rs->p, rs->len, room, NSY_STR8_MAX)
                                         : -1;
    if (rs->type == RC_JSON_NONE)
        return rc_roomproto_error(&srv->rooms, ep, RC_RERR_MISSING_FIELD, "\"room\" is required");
    if (rl < 0)
        return rc_roomproto_error(&srv->rooms, ep, RC_RERR_BAD_FIELD,
                                  "\"room\" must be a NetSync room id: at most %d bytes of UTF-8",
                                  NSY_STR8_MAX);
    switch (op) {
    case OBSERVE: return do_observe(w, ep, room, (size_t)rl);
    case UNOBSERVE: return do_unobserve(w, ep, room, (size_t)rl);
    case RPC: return do_rpc(w, ep, room, (size_t)rl, p, n);
    case SET: return do_set(w, ep, room, (size_t)rl, p, n);
    }
    return -1;
}

rc_nsws_counts rc_nsws_counts_of(const rc_nsws *w)
{
    return (rc_nsws_counts){.observations = w->nobs, .rooms = w->rooms.count,
                            .frames_out = w->frames_out};
}

/* ---- life cycle -------------------------------------------------------------------------- */

rc_nsws *rc_nsws_new(rc_server *srv, rc_netsync *ns)
{
    rc_nsws *w = calloc(1, sizeof(*w));
    if (!w) return NULL;
    w->srv = srv;
    w->ns = ns;
    rc_netsync_watch(ns, on_event, w);
    return w;
}

void rc_nsws_free(rc_nsws *w)
{
    if (!w) return;
    rc_netsync_watch(w->ns, NULL, NULL);
    uint32_t b = 0;
    rc_hnode *n = rc_htab_next(&w->rooms, &b, NULL);
    while (n) {
        rc_hnode *next = rc_htab_next(&w->rooms, &b, n);
        room_drop(w, room_of(n));
        n = next;
    }
    b = 0;
    n = rc_htab_next(&w->clients, &b, NULL);
    while (n) {
        rc_hnode *next = rc_htab_next(&w->clients, &b, n);
        free(client_of(n));
        n = next;
    }
    rc_htab_release(&w->rooms);
    rc_htab_release(&w->clients);
    rc_textbuf_release(&w->tb);
    free(w);
}
