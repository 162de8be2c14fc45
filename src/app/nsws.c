/* nsws.c — WebSocket observers of NetSync rooms; see nsws.h and docs/netsync.md. */
#include "app/nsws.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/server.h"
#include "codec/ns8proto.h"
#include "codec/textbuf.h"
#include "codec/wsframe.h"
#include "core/hash.h"
#include "netsync/netsync.h"
#include "netsync/ns8room.h"
#include "rooms/roomproto.h"

/* One observed room id and the endpoints observing it. */
typedef struct obs_room {
    rc_hnode node;               /* in rc_nsws.rooms, by the id's hash */
    uint32_t n, cap;             /* observers used / allocated */
    rc_endpoint **eps;           /* observers, in order of arrival */
    /* Protocol 8 has no watch hook: its rooms are sampled (sample8) and a sample is sent
     * only when it differs from the last one sent (or idle_ns passed), so these remember
     * what the observers of this id last got. */
    bool had8;                   /* the last v8 sample found the room */
    uint64_t sig8;               /* hash of the last v8 state sent (time_ms excluded) */
    uint64_t vsig8;              /* hash of the last v8 variables sent */
    uint64_t sent8_at;           /* loop ns of the last v8 state sent */
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
    rc_timer sample8;            /* samples the observed v8 rooms; armed while rooms.count */
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

static void arm_sample8(rc_nsws *w);

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
    arm_sample8(w);
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

/* put_f32 writes a float32 as the shortest of %.7g / %.9g that reads back to the same
 * value (so 1.1f is 1.1, not 1.10000002), and null for NaN and infinities, which JSON lacks. */
static void put_f32(rc_textbuf *t, float f)
{
    if (!isfinite(f)) {
        rc_textbuf_append(t, "null", 4);
        return;
    }
    char s[32];
    int n = snprintf(s, sizeof(s), "%.7g", (double)f);
    if (strtof(s, NULL) != f) n = snprintf(s, sizeof(s), "%.9g", (double)f);
    rc_textbuf_append(t, s, (size_t)n);
}

/* put_float writes the little-endian float32 at le (v0.6 transforms are raw wire floats). */
static void put_float(rc_textbuf *t, const uint8_t *le)
{
    uint32_t bits = (uint32_t)le[0] | (uint32_t)le[1] << 8 | (uint32_t)le[2] << 16 |
                    (uint32_t)le[3] << 24;
    float f;
    memcpy(&f, &bits, sizeof(f));
    put_f32(t, f);
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

/* ---- protocol 8 rooms: sampled, decoded for display ------------------------------------- */

/* Protocol 8 rooms have no watch callback (ns8room.h stays pure and knows no observers), so
 * the observed ids are sampled on one timer at the v8 rooms' own broadcast cadence
 * (nsr8_params.bcast_ns, 0.1 s): each tick costs one hash lookup per observed id and, for an
 * id that is a v8 room, one JSON encoding, sent only when it differs from the last one sent to
 * that id's observers or when idle_ns (2 s) passed — the ROOM_POSE rule, so an observer sees
 * what a v8 client would, no more often. The timer runs only while some id is observed.
 *
 * Poses are decoded for display only (ns8_decode_body): relaying never decodes. Hands and
 * objects are sent in world coordinates (the wire's hands are head-relative), with the
 * quaternion and the yaw a top-down view needs. See docs/netsync.md, "Protocol 8 rooms". */

/* quat_mul is the Hamilton product a x b (x, y, z, w), Unity's Quaternion operator *. */
static void quat_mul(const float a[4], const float b[4], float out[4])
{
    out[0] = a[3] * b[0] + a[0] * b[3] + a[1] * b[2] - a[2] * b[1];
    out[1] = a[3] * b[1] - a[0] * b[2] + a[1] * b[3] + a[2] * b[0];
    out[2] = a[3] * b[2] + a[0] * b[1] - a[1] * b[0] + a[2] * b[3];
    out[3] = a[3] * b[3] - a[0] * b[0] - a[1] * b[1] - a[2] * b[2];
}

/* quat_yaw is the heading of q in degrees: the angle from +z toward +x of q's forward (+z)
 * vector projected on the floor, Unity's Euler y for an upright rotation (-180..180). */
static float quat_yaw(const float q[4])
{
    float fx = 2 * (q[0] * q[2] + q[3] * q[1]);
    float fz = 1 - 2 * (q[0] * q[0] + q[1] * q[1]);
    return (float)(atan2((double)fx, (double)fz) * (180.0 / M_PI));
}

/* put_lit appends a string literal (its length counted by the compiler, not by hand). */
#define put_lit(t, s) rc_textbuf_append((t), "" s, sizeof(s) - 1) /* "" s: literals only */

static void put_vec(rc_textbuf *t, const float *v, int n)
{
    put_lit(t, "[");
    for (int i = 0; i < n; i++) {
        if (i) put_lit(t, ",");
        put_f32(t, v[i]);
    }
    put_lit(t, "]");
}

/* put_part writes {"pos":[x,y,z],"rot":[x,y,z,w],"yaw":deg}. */
static void put_part(rc_textbuf *t, const float pos[3], const float rot[4])
{
    put_lit(t, "{\"pos\":");
    put_vec(t, pos, 3);
    put_lit(t, ",\"rot\":");
    put_vec(t, rot, 4);
    put_lit(t, ",\"yaw\":");
    put_f32(t, quat_yaw(rot));
    put_lit(t, "}");
}

/* put_hand writes a hand in world coordinates: the wire has (hand - head) in world axes and
 * inverse(head) x hand (§3.3), so position = head + rel and rotation = head x rel. */
static void put_hand(rc_textbuf *t, const ns8_pose_view *v, const float rel_pos[3],
                     const float rel_rot[4])
{
    float pos[3], rot[4];
    for (int i = 0; i < 3; i++) pos[i] = v->head_pos[i] + rel_pos[i];
    quat_mul(v->head_rot, rel_rot, rot);
    put_part(t, pos, rot);
}

/* encode_pose8 writes one visible entry of a v8 room. */
static void encode_pose8(rc_textbuf *t, const nsr8_dev *d)
{
    ns8_pose_view v;
    rc_textbuf_printf(t, "{\"no\":%u,\"device\":", d->no);
    rc_textbuf_json_string(t, (const char *)d->id, d->id_len);
    rc_textbuf_printf(t, ",\"poses\":%llu", (unsigned long long)d->poses);
    if (ns8_decode_body(d->body, d->body_len, &v) != NS8_OK) {
        /* cannot happen (the room keeps parsed bodies only); said rather than hidden */
        put_lit(t, ",\"undecodable\":true}");
        return;
    }
    rc_textbuf_printf(t, ",\"seq\":%u,\"flags\":%u,\"head\":", v.seq, v.flags);
    if (v.has_head) put_part(t, v.head_pos, v.head_rot);
    else put_lit(t, "null");
    put_lit(t, ",\"right\":");
    if (v.has_right) put_hand(t, &v, v.right_pos, v.right_rot);
    else put_lit(t, "null");
    put_lit(t, ",\"left\":");
    if (v.has_left) put_hand(t, &v, v.left_pos, v.left_rot);
    else put_lit(t, "null");
    put_lit(t, ",\"physical\":");
    if (v.has_physical) {
        put_lit(t, "{\"pos\":");
        put_vec(t, v.physical, 3);
        put_lit(t, ",\"yaw\":");
        put_f32(t, v.physical[3]);
        /* MovingFloorLocal: local to the moving floor; else the XR-origin delta (§3.3) */
        rc_textbuf_printf(t, ",\"local\":%s}", v.flags & NS8_F_FLOOR_LOCAL ? "true" : "false");
    } else {
        put_lit(t, "null");
    }
    rc_textbuf_printf(t, ",\"virtual\":%u}", v.nvirt);
}

/* encode_state8 renders a v8 room (NULL: none of that id) as netsync_state with
 * "protocol":8, time_ms last so that the text before it identifies the content (sample8). */
static void encode_state8(rc_nsws *w, const uint8_t *id, size_t len, const nsr8_room *r)
{
    rc_textbuf *t = &w->tb;
    begin(t, "netsync_state", id, len);
    rc_textbuf_printf(t, ",\"protocol\":8,\"exists\":%s", r ? "true" : "false");
    if (!r) {
        put_lit(t, ",\"members\":[],\"clients\":[],\"stealth\":[],\"objects\":[]");
        return;
    }
    rc_textbuf_printf(t, ",\"poses_in\":%llu,\"broadcasts\":%llu,\"devices\":%u,\"members\":[",
                      (unsigned long long)r->poses_in, (unsigned long long)r->pose_bcasts,
                      r->ndev);
    for (uint32_t i = 0; i < r->ndev; i++) {
        const nsr8_dev *d = &r->dev[i];
        rc_textbuf_printf(t, "%s{\"no\":%u,\"device\":", i ? "," : "", d->no);
        rc_textbuf_json_string(t, (const char *)d->id, d->id_len);
        rc_textbuf_printf(t, ",\"present\":%s,\"stealth\":%s}", d->present ? "true" : "false",
                          d->stealth ? "true" : "false");
    }
    /* visible = what ROOM_POSE lists: present, not stealth, with a pose */
    put_lit(t, "],\"clients\":[");
    bool first = true;
    for (uint32_t i = 0; i < r->ndev; i++) {
        const nsr8_dev *d = &r->dev[i];
        if (!d->present || d->stealth || !d->has_pose) continue;
        if (!first) put_lit(t, ",");
        first = false;
        encode_pose8(t, d);
    }
    /* stealth entries: who they are, never where */
    put_lit(t, "],\"stealth\":[");
    first = true;
    for (uint32_t i = 0; i < r->ndev; i++) {
        const nsr8_dev *d = &r->dev[i];
        if (!d->present || !d->stealth) continue;
        rc_textbuf_printf(t, "%s{\"no\":%u,\"device\":", first ? "" : ",", d->no);
        first = false;
        rc_textbuf_json_string(t, (const char *)d->id, d->id_len);
        rc_textbuf_printf(t, ",\"poses\":%llu}", (unsigned long long)d->poses);
    }
    put_lit(t, "],\"objects\":[");
    for (uint32_t i = 0; i < r->nobj; i++) {
        const nsr8_obj *o = &r->obj[i];
        rc_textbuf_printf(t, "%s{\"id\":%u,\"owner\":%u", i ? "," : "", o->id, o->owner);
        if (o->has_pose) {
            ns8_object_view v;
            ns8_decode_object(o->body, &v);
            rc_textbuf_printf(t, ",\"seq\":%u,\"pos\":", o->seq);
            put_vec(t, v.pos, 3);
            put_lit(t, ",\"rot\":");
            put_vec(t, v.rot, 4);
            put_lit(t, ",\"yaw\":");
            put_f32(t, quat_yaw(v.rot));
        } else {
            /* registered by an ownership request, never posed: not in ROOM_OBJECTS either */
            put_lit(t, ",\"seq\":null,\"pos\":null,\"rot\":null,\"yaw\":null");
        }
        put_lit(t, "}");
    }
    put_lit(t, "]");
}

/* end_state8 closes a state begun by encode_state8 with the sampling time. */
static void end_state8(rc_nsws *w)
{
    rc_textbuf_printf(&w->tb, ",\"time_ms\":%.3f}", rc_loop_now(w->srv->loop) / 1e6);
}

static void encode_vtab8(rc_textbuf *t, const nsr8_vtab *v)
{
    for (uint32_t i = 0; i < v->n; i++) {
        const nsr8_var *x = &v->v[i];
        rc_textbuf_append(t, i ? ",{\"name\":" : "{\"name\":", i ? 9 : 8);
        rc_textbuf_json_string(t, (const char *)x->name, x->name_len);
        put_lit(t, ",\"value\":");
        rc_textbuf_json_string(t, (const char *)x->value, x->value_len);
        rc_textbuf_printf(t, ",\"writer\":%u}", x->writer);
    }
}

/* encode_vars8 renders every variable of a v8 room as netsync_vars, always "full" (a sample
 * cannot tell which changed); client variables are keyed by deviceId on protocol 8, so each
 * list carries the device and its number (target 0: no number in the room). v8 variables have
 * no timestamp. False when the room has none. */
static bool encode_vars8(rc_nsws *w, const nsr8_room *r)
{
    bool any = r->globals.n > 0;
    for (uint32_t i = 0; i < r->ncvs && !any; i++) any = r->cvs[i].vars.n > 0;
    if (!any) return false;
    rc_textbuf *t = &w->tb;
    begin(t, "netsync_vars", r->id, r->id_len);
    put_lit(t, ",\"protocol\":8,\"full\":true,\"globals\":[");
    encode_vtab8(t, &r->globals);
    put_lit(t, "],\"clients\":[");
    bool first = true;
    for (uint32_t i = 0; i < r->ncvs; i++) {
        const nsr8_cvdev *c = &r->cvs[i];
        if (!c->vars.n) continue;
        const nsr8_dev *d = nsr8_dev_find(r, c->id, c->id_len);
        rc_textbuf_printf(t, "%s{\"target\":%u,\"device\":", first ? "" : ",", d ? d->no : 0);
        first = false;
        rc_textbuf_json_string(t, (const char *)c->id, c->id_len);
        put_lit(t, ",\"vars\":[");
        encode_vtab8(t, &c->vars);
        put_lit(t, "]}");
    }
    put_lit(t, "]}");
    return true;
}

static const nsr8_room *room8(const rc_nsws *w, const uint8_t *id, size_t len)
{
    return nsr8_room_find(rc_netsync_rooms8(w->ns), id, len);
}

static uint64_t scratch_hash(const rc_nsws *w)
{
    return rc_hash(rc_buf_head(&w->tb.buf), rc_buf_size(&w->tb.buf));
}

static void arm_sample8(rc_nsws *w)
{
    if (w->rooms.count && !rc_timer_armed(&w->sample8))
        rc_timer_start(w->srv->loop, &w->sample8,
                       rc_loop_now(w->srv->loop) + rc_netsync_rooms8(w->ns)->p.bcast_ns);
}

/* sample8_room sends one observed id's v8 state and variables when they changed. */
static void sample8_room(rc_nsws *w, obs_room *o, uint64_t now)
{
    const nsr8_room *r = room8(w, o->id, o->id_len);
    if (!r && !o->had8) return; /* not a v8 room, and it was not one at the last sample */
    if (r && encode_vars8(w, r)) {
        uint64_t h = scratch_hash(w);
        if (h != o->vsig8) send_scratch(w, o->eps, o->n);
        o->vsig8 = h;
    }
    encode_state8(w, o->id, o->id_len, r);
    uint64_t h = scratch_hash(w);
    if (h != o->sig8 || now - o->sent8_at >= rc_netsync_rooms8(w->ns)->p.idle_ns) {
        end_state8(w);
        send_scratch(w, o->eps, o->n);
        o->sig8 = h;
        o->sent8_at = now;
    }
    o->had8 = r != NULL;
    if (!r) o->vsig8 = 0; /* a re-created room's variables are news */
}

static void on_sample8(rc_loop *loop, rc_timer *tm)
{
    rc_nsws *w = (rc_nsws *)(void *)((char *)tm - offsetof(rc_nsws, sample8));
    uint64_t now = rc_loop_now(loop);
    uint32_t b = 0;
    for (rc_hnode *n = rc_htab_next(&w->rooms, &b, NULL); n; n = rc_htab_next(&w->rooms, &b, n))
        sample8_room(w, room_of(n), now);
    arm_sample8(w);
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
    const nsr8_room *r8 = room8(w, (const uint8_t *)room, len);
    char extra[120];
    int k = snprintf(extra, sizeof(extra), ",\"tick_ms\":%.1f,\"exists\":%s",
                     rc_netsync_tick_ns(w->ns) / 1e6, r || r8 ? "true" : "false");
    /* Only a v8 room adds to the reply, so v0.6 observers see what they always saw. */
    if (r8)
        snprintf(extra + k, sizeof(extra) - (size_t)k, ",\"protocol\":8,\"sample_ms\":%.1f",
                 rc_netsync_rooms8(w->ns)->p.bcast_ns / 1e6);
    reply_room(w, ep, "netsync_observing", room, len, extra);
    /* A snapshot now, so an observer need not wait for the room's next change; afterwards
     * only what the room publishes (v0.6) or what changed at a sample (v8). When a v0.6 and
     * a v8 room share the id, the observer gets both streams, told apart by "protocol". */
    if (r && encode_vars(w, r, true)) send_scratch(w, &ep, 1);
    if (r || !r8) {
        encode_state(w, (const uint8_t *)room, len, r);
        send_scratch(w, &ep, 1);
    }
    if (r8) {
        if (encode_vars8(w, r8)) send_scratch(w, &ep, 1);
        encode_state8(w, (const uint8_t *)room, len, r8);
        end_state8(w);
        send_scratch(w, &ep, 1);
    }
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

static const char *nv8_result_name(enum nsr8_nv_result r)
{
    switch (r) {
    case NSR8_NV_APPLIED: return "applied";
    case NSR8_NV_UNCHANGED: return "unchanged";
    case NSR8_NV_LIMIT: return "limit";
    case NSR8_NV_EMPTY_NAME:
    case NSR8_NV_BAD: return "invalid";
    case NSR8_NV_NOMEM: break;
    }
    return "nomem";
}

/* set8 sets a variable of a v8 room (only when no v0.6 room has that id) as the operator,
 * like the REST bridge does: written at once, synced to the room's clients (a device without
 * a number yet gets its variables when it joins, from the device-keyed store, so there is no
 * "queued" on protocol 8). w->value[0..vl) holds the value. */
static const char *set8(rc_nsws *w, const char *room, size_t rlen, const char *dev,
                        size_t dl, const char *name, size_t nl, size_t vl)
{
    nsr8_rooms *rs = rc_netsync_rooms8(w->ns);
    uint64_t now = rc_loop_now(w->srv->loop);
    enum nsr8_nv_result r;
    if (!dev) {
        r = nsr8_gvar_set(rs, (const uint8_t *)room, rlen, (const uint8_t *)name, nl,
                          (const uint8_t *)w->value, vl, now);
        nsr8_gvar_commit(rs, (const uint8_t *)room, rlen);
    } else {
        r = nsr8_cvar_set(rs, (const uint8_t *)room, rlen, (const uint8_t *)dev, dl,
                          (const uint8_t *)name, nl, (const uint8_t *)w->value,
                          vl, now);
        if (r == NSR8_NV_APPLIED)
            nsr8_cvar_commit(rs, (const uint8_t *)room, rlen, (const uint8_t *)dev, dl);
    }
    rc_netsync_rooms8_changed(w->ns); /* the rooms' timer and the unicast queues follow */
    return nv8_result_name(r);
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
    if (!rc_netsync_room(w->ns, room, rlen) && room8(w, (const uint8_t *)room, rlen)) {
        result = set8(w, room, rlen, dl < 0 ? NULL : dev, (size_t)(dl < 0 ? 0 : dl), name,
                      (size_t)nl, (size_t)vl);
    } else if (dl < 0) {
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

/* do_rooms lists the rooms of both generations, for views that pick a room (the page polls
 * it): v0.6 rooms first, then v8 rooms, each in creation order and marked with "protocol".
 * "clients" counts entries (stealth included), "visible" those a client would see. */
static int do_rooms(rc_nsws *w, rc_endpoint *ep)
{
    rc_textbuf *t = &w->tb;
    rc_buf_reset(&t->buf);
    t->failed = false;
    put_lit(t, "{\"type\":\"netsync_rooms\",\"rooms\":[");
    bool first = true;
    for (const nsy_room *r = rc_netsync_rooms(w->ns); r; r = r->next) {
        if (!first) put_lit(t, ",");
        put_lit(t, "{\"room\":");
        first = false;
        rc_textbuf_json_string(t, (const char *)r->id, r->id_len);
        rc_textbuf_printf(t, ",\"protocol\":6,\"clients\":%u,\"visible\":%u,\"devices\":%u}",
                          r->nlive, r->nvisible, r->ndev);
    }
    for (const nsr8_room *r = rc_netsync_rooms8(w->ns)->head; r; r = r->next) {
        uint32_t visible = 0;
        for (uint32_t i = 0; i < r->ndev; i++)
            visible += r->dev[i].present && !r->dev[i].stealth && r->dev[i].has_pose;
        if (!first) put_lit(t, ",");
        put_lit(t, "{\"room\":");
        first = false;
        rc_textbuf_json_string(t, (const char *)r->id, r->id_len);
        rc_textbuf_printf(t,
                          ",\"protocol\":8,\"clients\":%u,\"visible\":%u,\"devices\":%u,"
                          "\"objects\":%u}",
                          r->npresent, visible, r->ndev, r->nobj);
    }
    put_lit(t, "]}");
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
    else if (is(type, tl, "netsync_rooms")) return do_rooms(w, ep); /* no "room" */
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
    rc_timer_init(&w->sample8, on_sample8);
    rc_netsync_watch(ns, on_event, w);
    return w;
}

void rc_nsws_free(rc_nsws *w)
{
    if (!w) return;
    rc_netsync_watch(w->ns, NULL, NULL);
    rc_timer_stop(w->srv->loop, &w->sample8);
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
