/* ns8room.c — NetSync protocol 8 rooms; see ns8room.h for the behaviour and its rules. */
#include "netsync/ns8room.h"

#include <stdlib.h>
#include <string.h>

#include "codec/nsproto.h"
#include "codec/utf8.h"

#define S 1000000000ull

const char *const nsr8_drop_names[NSR8_DROP__COUNT] = {
    [NSR8_DROP_ROOM_TOO_LONG] = "room_too_long",
    [NSR8_DROP_ROOM_UTF8] = "room_utf8",
    [NSR8_DROP_EMPTY] = "empty",
    [NSR8_DROP_UNKNOWN_TYPE] = "unknown_type",
    [NSR8_DROP_SERVER_TYPE] = "server_type",
    [NSR8_DROP_TRUNCATED] = "truncated",
    [NSR8_DROP_UTF8] = "utf8",
    [NSR8_DROP_VERSION] = "version",
    [NSR8_DROP_TRAILING] = "trailing",
    [NSR8_DROP_PHYSICAL] = "physical",
    [NSR8_DROP_WRONG_LANE] = "wrong_lane",
    [NSR8_DROP_EMPTY_DEVICE] = "empty_device",
    [NSR8_DROP_UNKNOWN_DEVICE] = "unknown_device",
    [NSR8_DROP_HIJACK] = "hijack",
    [NSR8_DROP_NOT_MEMBER] = "not_member",
    [NSR8_DROP_NOT_OWNER] = "not_owner",
    [NSR8_DROP_OBJECT_ZERO] = "object_zero",
    [NSR8_DROP_UNKNOWN_TARGET] = "unknown_target",
    [NSR8_DROP_NV_LIMIT] = "nv_limit",
    [NSR8_DROP_NV_EMPTY_NAME] = "nv_empty_name",
    [NSR8_DROP_ROOM_LIMIT] = "room_limit",
    [NSR8_DROP_DEVICE_LIMIT] = "device_limit",
    [NSR8_DROP_OBJECT_LIMIT] = "object_limit",
    [NSR8_DROP_NUMBERS] = "numbers_exhausted",
    [NSR8_DROP_NOMEM] = "nomem",
};

void nsr8_params_default(nsr8_params *p)
{
    *p = (nsr8_params){
        .bcast_ns = S / 10,
        .idle_ns = 2 * S,
        .client_timeout_ns = 5 * S,
        .cleanup_ns = S,
        .expiry_ns = 86400 * S,
        .expiry_sweep_ns = 60 * S,
        .empty_room_ns = 86400 * S,
        .mapping_debounce_ns = S / 2,
        .nv_flush_ns = S / 10,
        .max_global_vars = 100,
        .max_client_vars = 100,
        .name_cp = 64,
        .value_cp = 1024,
        .max_pending = 4096,
        .max_rooms = 10000,
        .max_devices = 4096,
        .max_objects = 4096,
        .version = {NS8_SERVER_VERSION_MAJOR, NS8_SERVER_VERSION_MINOR,
                    NS8_SERVER_VERSION_PATCH},
    };
}

static double secs(uint64_t ns) { return (double)ns / 1e9; }

static bool same(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* ---- output helpers ---------------------------------------------------------------------- */

static void send_to(nsr8_rooms *rs, const nsr8_room *r, const nsr8_dev *d, const rc_buf *b)
{
    if (!d->ctl_len) return;
    rs->st->unicasts++;
    rs->st->bytes_out += rc_buf_size(b);
    rs->io.unicast(rs->io.arg, d->ctl, d->ctl_len, r->id, r->id_len,
                   (const uint8_t *)rc_buf_head(b), rc_buf_size(b));
}

/* send_room unicasts b to every entry with a control identity; returns how many got it. */
static uint32_t send_room(nsr8_rooms *rs, const nsr8_room *r, const rc_buf *b,
                          const nsr8_dev *except)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < r->ndev; i++) {
        const nsr8_dev *d = &r->dev[i];
        if (!d->present || !d->ctl_len || d == except) continue;
        send_to(rs, r, d, b);
        k++;
    }
    return k;
}

static void publish(nsr8_rooms *rs, const uint8_t *topic, size_t tlen, const rc_buf *b)
{
    rs->st->publishes++;
    rs->st->bytes_out += rc_buf_size(b);
    rs->io.publish(rs->io.arg, topic, tlen, (const uint8_t *)rc_buf_head(b), rc_buf_size(b));
}

/* enc_start resets the scratch buffer and an encoder on it. */
static rc_buf *enc_start(nsr8_rooms *rs, ns8_enc *e)
{
    rc_buf_reset(&rs->out);
    ns8_enc_init(e, &rs->out);
    return &rs->out;
}

static bool enc_ok(nsr8_rooms *rs, const ns8_enc *e)
{
    if (e->err) rs->st->encode_errors++;
    return !e->err;
}

/* ---- rooms ------------------------------------------------------------------------------- */

#define room_of_node(n) ((nsr8_room *)(void *)((char *)(n) - offsetof(nsr8_room, node)))

nsr8_room *nsr8_room_find(const nsr8_rooms *rs, const uint8_t *id, size_t len)
{
    if (len > NSR8_ID_MAX) return NULL;
    uint64_t h = rc_hash(id, len);
    for (rc_hnode *n = rc_htab_chain(&rs->table, h); n; n = n->next) {
        nsr8_room *r = room_of_node(n);
        if (n->hash == h && same(r->id, r->id_len, id, len)) return r;
    }
    return NULL;
}

int nsr8_rooms_init(nsr8_rooms *rs, const nsr8_params *p, nsr8_stats *st, const nsr8_io *io)
{
    *rs = (nsr8_rooms){.p = *p, .st = st, .io = *io, .wake = UINT64_MAX};
    return 0;
}

/* room_check is the door: ids the wire cannot carry are refused and counted (§6.7). */
static bool room_check(nsr8_rooms *rs, const uint8_t *id, size_t len)
{
    if (len > NSR8_ID_MAX) {
        rs->st->dropped[NSR8_DROP_ROOM_TOO_LONG]++;
        return false;
    }
    if (!rc_utf8_valid(id, len)) {
        rs->st->dropped[NSR8_DROP_ROOM_UTF8]++;
        return false;
    }
    return true;
}

static nsr8_room *room_get(nsr8_rooms *rs, const uint8_t *id, size_t len, uint64_t now)
{
    nsr8_room *r = nsr8_room_find(rs, id, len);
    if (r) return r;
    if (rs->nrooms >= rs->p.max_rooms) {
        rs->st->dropped[NSR8_DROP_ROOM_LIMIT]++;
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (!r || rc_htab_insert(&rs->table, &r->node, rc_hash(id, len)) < 0) {
        free(r);
        rs->st->dropped[NSR8_DROP_NOMEM]++;
        return NULL;
    }
    memcpy(r->id, id, len);
    r->id_len = (uint8_t)len;
    r->next_no = 1;
    r->created = r->last_sweep = r->last_expiry = r->empty_since = now;
    r->prev = rs->tail;
    if (rs->tail) rs->tail->next = r; else rs->head = r;
    rs->tail = r;
    rs->nrooms++;
    rs->st->rooms++;
    return r;
}

static void vtab_release(nsr8_vtab *t)
{
    for (uint32_t i = 0; i < t->n; i++) free(t->v[i].value);
    free(t->v);
    *t = (nsr8_vtab){0};
}

static void room_free(nsr8_rooms *rs, nsr8_room *r)
{
    rc_htab_remove(&rs->table, &r->node);
    if (r->prev) r->prev->next = r->next; else rs->head = r->next;
    if (r->next) r->next->prev = r->prev; else rs->tail = r->prev;
    rs->nrooms--;
    rs->st->rooms--;
    rs->st->devices -= r->ndev;
    rs->st->clients -= r->npresent;
    vtab_release(&r->globals);
    for (uint32_t i = 0; i < r->ncvs; i++) vtab_release(&r->cvs[i].vars);
    for (uint32_t i = 0; i < r->npend; i++) free(r->pend[i].value);
    free(r->cvs);
    free(r->pend);
    free(r->dev);
    free(r->obj);
    free(r);
}

void nsr8_rooms_release(nsr8_rooms *rs)
{
    while (rs->head) room_free(rs, rs->head);
    rc_htab_release(&rs->table);
    rc_buf_release(&rs->out);
    rc_buf_release(&rs->out2);
}

/* ---- devices ----------------------------------------------------------------------------- */

nsr8_dev *nsr8_dev_find(const nsr8_room *r, const uint8_t *id, size_t len)
{
    for (uint32_t i = 0; i < r->ndev; i++)
        if (same(r->dev[i].id, r->dev[i].id_len, id, len)) return &r->dev[i];
    return NULL;
}

static nsr8_dev *dev_by_no(const nsr8_room *r, uint16_t no)
{
    for (uint32_t i = 0; i < r->ndev; i++)
        if (r->dev[i].no == no) return &r->dev[i];
    return NULL;
}

/* alloc_number hands out 1, 2, 3... and, once 65535 has been used, the lowest number no device
 * of the room holds (expired devices' numbers become reusable, as in the reference). */
static uint16_t alloc_number(nsr8_room *r)
{
    if (r->next_no) {
        uint16_t no = r->next_no;
        r->next_no = no == UINT16_MAX ? 0 : (uint16_t)(no + 1);
        return no;
    }
    uint8_t *used = calloc(65536 / 8, 1);
    if (!used) return 0;
    for (uint32_t i = 0; i < r->ndev; i++)
        used[r->dev[i].no >> 3] |= (uint8_t)(1u << (r->dev[i].no & 7));
    uint16_t no = 0;
    for (uint32_t n = 1; n <= UINT16_MAX && !no; n++)
        if (!(used[n >> 3] & (1u << (n & 7)))) no = (uint16_t)n;
    free(used);
    return no;
}

static nsr8_dev *dev_add(nsr8_rooms *rs, nsr8_room *r, const uint8_t *id, size_t len)
{
    if (r->ndev >= rs->p.max_devices) {
        rs->st->dropped[NSR8_DROP_DEVICE_LIMIT]++;
        return NULL;
    }
    if (r->ndev == r->devcap) {
        uint32_t cap = r->devcap ? r->devcap * 2 : 4;
        nsr8_dev *d = realloc(r->dev, (size_t)cap * sizeof(*d));
        if (!d) {
            rs->st->dropped[NSR8_DROP_NOMEM]++;
            return NULL;
        }
        r->dev = d;
        r->devcap = cap;
    }
    uint16_t no = alloc_number(r);
    if (!no) {
        rs->st->dropped[NSR8_DROP_NUMBERS]++;
        return NULL;
    }
    nsr8_dev *d = &r->dev[r->ndev++];
    memset(d, 0, offsetof(nsr8_dev, id));
    d->no = no;
    d->id_len = (uint8_t)len;
    memcpy(d->id, id, len);
    rs->st->devices++;
    return d;
}

static bool visible(const nsr8_dev *d) { return d->present && !d->stealth && d->has_pose; }

static void set_ident(uint8_t *dst, uint8_t *dst_len, const uint8_t *id, size_t len)
{
    memcpy(dst, id, len);
    *dst_len = (uint8_t)len;
}

static void dev_enter(nsr8_rooms *rs, nsr8_room *r, nsr8_dev *d, bool stealth, uint64_t now)
{
    d->present = true;
    d->stealth = stealth;
    d->has_pose = false;
    d->ctl_len = d->tf_len = 0;
    d->last_update = now;
    r->npresent++;
    r->mapping_dirty = true;
    rs->st->clients++;
    rs->st->joins++;
}

/* owner_present: the number belongs to an entry of the room. */
static bool owner_present(const nsr8_room *r, uint16_t no)
{
    const nsr8_dev *d = no ? dev_by_no(r, no) : NULL;
    return d && d->present;
}

static void send_changed(nsr8_rooms *rs, nsr8_room *r, uint32_t obj, uint16_t now_owner,
                         uint16_t prev)
{
    ns8_enc e;
    rc_buf *b = enc_start(rs, &e);
    ns8_enc_ownership_changed(&e, obj, now_owner, prev);
    if (enc_ok(rs, &e)) rs->st->ownership_out += send_room(rs, r, b, NULL);
}

/* release_orphans frees every object whose owner has no entry any more (§6.5: the owner left,
 * or a number that never had one). */
static void release_orphans(nsr8_rooms *rs, nsr8_room *r)
{
    for (uint32_t i = 0; i < r->nobj; i++) {
        nsr8_obj *o = &r->obj[i];
        if (!o->owner || owner_present(r, o->owner)) continue;
        uint16_t prev = o->owner;
        o->owner = 0;
        r->obj_dirty = true;
        rs->st->objects_released++;
        send_changed(rs, r, o->id, 0, prev);
    }
}

static void dev_leave(nsr8_rooms *rs, nsr8_room *r, nsr8_dev *d, uint64_t now)
{
    if (visible(d)) r->dirty = true;
    d->present = false;
    d->has_pose = false;
    d->ctl_len = d->tf_len = 0;
    d->departed = now;
    r->npresent--;
    r->mapping_dirty = true;
    rs->st->clients--;
    if (r->npresent == 0) r->empty_since = now;
    release_orphans(rs, r);
}

static bool is_connected(const nsr8_rooms *rs, enum ns8_lane lane, const uint8_t *id, size_t len)
{
    return !rs->io.connected || rs->io.connected(rs->io.arg, lane, id, len);
}

/* held_by_other: the identity slot of present device d is a different identity that is still
 * connected and whose device has not timed out — taking it over would be a hijack (§6.3). */
static bool held_by_other(const nsr8_rooms *rs, const nsr8_dev *d, enum ns8_lane lane,
                          const uint8_t *ident, size_t ident_len, uint64_t now)
{
    const uint8_t *cur = lane == NS8_LANE_CONTROL ? d->ctl : d->tf;
    size_t cur_len = lane == NS8_LANE_CONTROL ? d->ctl_len : d->tf_len;
    if (!d->present || !cur_len || same(cur, cur_len, ident, ident_len)) return false;
    if (now - d->last_update > rs->p.client_timeout_ns) return false;
    return is_connected(rs, lane, cur, cur_len);
}

/* ---- variables --------------------------------------------------------------------------- */

static nsr8_var *vtab_find(const nsr8_vtab *t, const uint8_t *name, size_t len)
{
    for (uint32_t i = 0; i < t->n; i++)
        if (same(t->v[i].name, t->v[i].name_len, name, len)) return &t->v[i];
    return NULL;
}

const nsr8_var *nsr8_var_find(const nsr8_vtab *t, const uint8_t *name, size_t name_len)
{
    return t ? vtab_find(t, name, name_len) : NULL;
}

/* vtab_set applies one (already cut) write; arrival order decides, equal value is a no-op. */
static enum nsr8_nv_result vtab_set(nsr8_vtab *t, uint32_t max, const uint8_t *name, size_t nl,
                                    const uint8_t *value, size_t vl, uint16_t writer)
{
    nsr8_var *v = vtab_find(t, name, nl);
    if (v && same(v->value ? v->value : (const uint8_t *)"", v->value_len, value, vl))
        return NSR8_NV_UNCHANGED;
    if (!v) {
        if (t->n >= max) return NSR8_NV_LIMIT;
        if (t->n == t->cap) {
            uint32_t cap = t->cap ? t->cap * 2 : 4;
            nsr8_var *nv = realloc(t->v, (size_t)cap * sizeof(*nv));
            if (!nv) return NSR8_NV_NOMEM;
            t->v = nv;
            t->cap = cap;
        }
        v = &t->v[t->n];
        memset(v, 0, offsetof(nsr8_var, name));
        v->name_len = (uint8_t)nl;
        memcpy(v->name, name, nl);
        uint8_t *p = malloc(vl ? vl : 1);
        if (!p) return NSR8_NV_NOMEM;
        v->value = p;
        t->n++;
    } else if (vl > v->value_len) {
        uint8_t *p = realloc(v->value, vl);
        if (!p) return NSR8_NV_NOMEM;
        v->value = p;
    }
    memcpy(v->value, value, vl);
    v->value_len = (uint32_t)vl;
    v->writer = writer;
    v->dirty = true;
    return NSR8_NV_APPLIED;
}

static int32_t cv_find(const nsr8_room *r, const uint8_t *id, size_t len)
{
    for (uint32_t i = 0; i < r->ncvs; i++)
        if (same(r->cvs[i].id, r->cvs[i].id_len, id, len)) return (int32_t)i;
    return -1;
}

static int32_t cv_get(nsr8_rooms *rs, nsr8_room *r, const uint8_t *id, size_t len)
{
    int32_t i = cv_find(r, id, len);
    if (i >= 0) return i;
    if (r->ncvs == r->cvcap) {
        uint32_t cap = r->cvcap ? r->cvcap * 2 : 4;
        nsr8_cvdev *c = realloc(r->cvs, (size_t)cap * sizeof(*c));
        if (!c) {
            rs->st->dropped[NSR8_DROP_NOMEM]++;
            return -1;
        }
        r->cvs = c;
        r->cvcap = cap;
    }
    nsr8_cvdev *c = &r->cvs[r->ncvs];
    memset(c, 0, offsetof(nsr8_cvdev, id));
    c->id_len = (uint8_t)len;
    memcpy(c->id, id, len);
    return (int32_t)r->ncvs++;
}

static void enc_vars(ns8_enc *e, nsr8_vtab *t, bool only_dirty)
{
    for (uint32_t i = 0; i < t->n; i++) {
        nsr8_var *v = &t->v[i];
        if (!only_dirty || v->dirty)
            ns8_enc_var(e, v->name, v->name_len, v->value, v->value_len, v->writer);
        v->dirty = false;
    }
}

/* cv_sync_dirty sends one CLIENT_VAR_SYNC with the complete list of every changed device that
 * has a number to the room (except `except`), and clears the change flags. A store whose
 * device has no number (expired, or REST-only) cannot be named on the wire: it is just marked
 * clean. */
static void cv_sync_dirty(nsr8_rooms *rs, nsr8_room *r, const nsr8_dev *except)
{
    uint16_t n = 0;
    for (uint32_t i = 0; i < r->ncvs; i++) {
        nsr8_cvdev *c = &r->cvs[i];
        if (!c->dirty) continue;
        if (nsr8_dev_find(r, c->id, c->id_len)) {
            n++;
            continue;
        }
        c->dirty = false;
        for (uint32_t j = 0; j < c->vars.n; j++) c->vars.v[j].dirty = false;
    }
    if (!n) return;
    ns8_enc e;
    rc_buf *b = enc_start(rs, &e);
    size_t at = ns8_enc_client_sync_begin(&e);
    for (uint32_t i = 0; i < r->ncvs; i++) {
        nsr8_cvdev *c = &r->cvs[i];
        if (!c->dirty) continue;
        c->dirty = false;
        const nsr8_dev *d = nsr8_dev_find(r, c->id, c->id_len);
        ns8_enc_client_sync_target(&e, d->no, (uint16_t)c->vars.n);
        enc_vars(&e, &c->vars, false);
    }
    ns8_patch_u16(&e, at, n);
    if (enc_ok(rs, &e)) rs->st->syncs_out += send_room(rs, r, b, except);
}

/* full_sync_to: what a new or reconnected client needs (unicast to it only): the global
 * variables (if any), every mapped number's client variables (empty lists included) and the
 * owner of every object. */
static void full_sync_to(nsr8_rooms *rs, nsr8_room *r, const nsr8_dev *to)
{
    ns8_enc e;
    rc_buf *b;
    if (r->globals.n) {
        b = enc_start(rs, &e);
        size_t at = ns8_enc_global_sync_begin(&e);
        for (uint32_t i = 0; i < r->globals.n; i++) {
            const nsr8_var *v = &r->globals.v[i];
            ns8_enc_var(&e, v->name, v->name_len, v->value, v->value_len, v->writer);
        }
        ns8_patch_u16(&e, at, (uint16_t)r->globals.n);
        if (enc_ok(rs, &e)) {
            send_to(rs, r, to, b);
            rs->st->syncs_out++;
        }
    }
    b = enc_start(rs, &e);
    size_t at = ns8_enc_client_sync_begin(&e);
    for (uint32_t i = 0; i < r->ndev; i++) {
        const nsr8_dev *d = &r->dev[i];
        int32_t c = cv_find(r, d->id, d->id_len);
        const nsr8_vtab *t = c >= 0 ? &r->cvs[c].vars : NULL;
        ns8_enc_client_sync_target(&e, d->no, (uint16_t)(t ? t->n : 0));
        for (uint32_t j = 0; t && j < t->n; j++)
            ns8_enc_var(&e, t->v[j].name, t->v[j].name_len, t->v[j].value, t->v[j].value_len,
                        t->v[j].writer);
    }
    ns8_patch_u16(&e, at, (uint16_t)r->ndev);
    if (enc_ok(rs, &e)) {
        send_to(rs, r, to, b);
        rs->st->syncs_out++;
    }
    for (uint32_t i = 0; i < r->nobj; i++) {
        b = enc_start(rs, &e);
        ns8_enc_ownership_changed(&e, r->obj[i].id, r->obj[i].owner, 0);
        if (enc_ok(rs, &e)) {
            send_to(rs, r, to, b);
            rs->st->ownership_out++;
        }
    }
}

/* join_sync: a new entry gets the full state; the others learn only its own stored variables. */
static void join_sync(nsr8_rooms *rs, nsr8_room *r, nsr8_dev *d)
{
    full_sync_to(rs, r, d);
    int32_t c = cv_find(r, d->id, d->id_len);
    if (c < 0 || !r->cvs[c].vars.n) return;
    ns8_enc e;
    rc_buf *b = enc_start(rs, &e);
    ns8_put_u8(&e, NS8_CLIENT_VAR_SYNC);
    ns8_put_u16(&e, 1);
    ns8_enc_client_sync_target(&e, d->no, (uint16_t)r->cvs[c].vars.n);
    enc_vars(&e, &r->cvs[c].vars, false);
    if (enc_ok(rs, &e)) rs->st->syncs_out += send_room(rs, r, b, d);
}

/* cut applies the name/value limits in code points (Python's str[:n] on the decoded string). */
static void cut(nsr8_rooms *rs, const uint8_t *name, size_t *nl, const uint8_t *value,
                size_t *vl)
{
    size_t n2 = nsy_utf8_prefix(name, *nl, rs->p.name_cp);
    size_t v2 = nsy_utf8_prefix(value, *vl, rs->p.value_cp);
    if (n2 != *nl || v2 != *vl) rs->st->nv_truncated++;
    *nl = n2;
    *vl = v2;
}

static void pend_put(nsr8_rooms *rs, nsr8_room *r, int32_t cv, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint16_t writer, uint64_t now)
{
    nsr8_pend *p = NULL;
    for (uint32_t i = 0; i < r->npend && !p; i++)
        if (r->pend[i].cv == cv && same(r->pend[i].name, r->pend[i].name_len, name, nl))
            p = &r->pend[i];
    if (!p) {
        if (r->npend >= rs->p.max_pending) {
            rs->st->dropped[NSR8_DROP_NV_LIMIT]++;
            return;
        }
        if (r->npend == r->pendcap) {
            uint32_t cap = r->pendcap ? r->pendcap * 2 : 8;
            nsr8_pend *np = realloc(r->pend, (size_t)cap * sizeof(*np));
            if (!np) {
                rs->st->dropped[NSR8_DROP_NOMEM]++;
                return;
            }
            r->pend = np;
            r->pendcap = cap;
        }
        p = &r->pend[r->npend];
        p->value = NULL;
        p->value_len = 0;
        p->cv = cv;
        p->name_len = (uint8_t)nl;
        memcpy(p->name, name, nl);
        if (!r->npend) r->pend_since = now;
        r->npend++;
    }
    uint8_t *v = realloc(p->value, vl ? vl : 1);
    if (!v) {
        rs->st->dropped[NSR8_DROP_NOMEM]++;
        return; /* keeps the previous pending value */
    }
    memcpy(v, value, vl);
    p->value = v;
    p->value_len = (uint32_t)vl;
    p->writer = writer;
}

static void count_result(nsr8_rooms *rs, enum nsr8_nv_result res)
{
    switch (res) {
    case NSR8_NV_APPLIED: rs->st->nv_applied++; break;
    case NSR8_NV_UNCHANGED: rs->st->nv_unchanged++; break;
    case NSR8_NV_LIMIT: rs->st->dropped[NSR8_DROP_NV_LIMIT]++; break;
    case NSR8_NV_EMPTY_NAME: rs->st->dropped[NSR8_DROP_NV_EMPTY_NAME]++; break;
    case NSR8_NV_BAD: break;
    case NSR8_NV_NOMEM: rs->st->dropped[NSR8_DROP_NOMEM]++; break;
    }
}

static void send_global_delta(nsr8_rooms *rs, nsr8_room *r)
{
    uint16_t n = 0;
    for (uint32_t i = 0; i < r->globals.n; i++) n += r->globals.v[i].dirty;
    if (!n) return;
    ns8_enc e;
    rc_buf *b = enc_start(rs, &e);
    size_t at = ns8_enc_global_sync_begin(&e);
    enc_vars(&e, &r->globals, true);
    ns8_patch_u16(&e, at, n);
    if (enc_ok(rs, &e)) rs->st->syncs_out += send_room(rs, r, b, NULL);
}

/* nv_flush applies the window's writes in arrival order, then sends the deltas. */
static void nv_flush(nsr8_rooms *rs, nsr8_room *r)
{
    for (uint32_t i = 0; i < r->npend; i++) {
        nsr8_pend *p = &r->pend[i];
        enum nsr8_nv_result res;
        if (p->cv < 0) {
            res = vtab_set(&r->globals, rs->p.max_global_vars, p->name, p->name_len, p->value,
                           p->value_len, p->writer);
        } else {
            nsr8_cvdev *c = &r->cvs[p->cv];
            res = vtab_set(&c->vars, rs->p.max_client_vars, p->name, p->name_len, p->value,
                           p->value_len, p->writer);
            if (res == NSR8_NV_APPLIED) c->dirty = true;
        }
        count_result(rs, res);
        free(p->value);
    }
    r->npend = 0;
    send_global_delta(rs, r);
    cv_sync_dirty(rs, r, NULL);
}

/* ---- input ------------------------------------------------------------------------------- */

static uint64_t room_due(const nsr8_rooms *rs, const nsr8_room *r);

static void lower_wake(nsr8_rooms *rs, const nsr8_room *r)
{
    uint64_t due = room_due(rs, r);
    if (due < rs->wake) rs->wake = due;
}

static void on_hello(nsr8_rooms *rs, nsr8_room *r, const uint8_t *ident, size_t ident_len,
                     const ns8_hello *h, uint64_t now)
{
    rs->st->hellos_in++;
    nsr8_dev *d = nsr8_dev_find(r, h->device_id.p, h->device_id.len);
    if (d && held_by_other(rs, d, NS8_LANE_CONTROL, ident, ident_len, now)) {
        rs->st->dropped[NSR8_DROP_HIJACK]++;
        return;
    }
    if (!d && !(d = dev_add(rs, r, h->device_id.p, h->device_id.len))) return;
    bool stealth = h->flags & NS8_HELLO_STEALTH;
    if (!d->present) {
        dev_enter(rs, r, d, stealth, now);
        set_ident(d->ctl, &d->ctl_len, ident, ident_len);
        join_sync(rs, r, d);
        return;
    }
    d->last_update = now;
    if (!same(d->ctl, d->ctl_len, ident, ident_len)) {
        if (d->ctl_len) rs->st->reconnects++;
        set_ident(d->ctl, &d->ctl_len, ident, ident_len);
        r->mapping_dirty = true;
        full_sync_to(rs, r, d);
    }
    if (d->stealth != stealth) {
        bool was = visible(d);
        d->stealth = stealth;
        r->mapping_dirty = true;
        if (was != visible(d)) r->dirty = true; /* only a visible change dirties (§6.11) */
    }
}

static void on_pose(nsr8_rooms *rs, nsr8_room *r, const uint8_t *ident, size_t ident_len,
                    const ns8_pose *m, uint64_t now)
{
    rs->st->poses_in++;
    if (m->trailing) {
        rs->st->pose_trailing++;
        rs->st->pose_trailing_bytes += m->trailing;
    }
    if (m->body.nvirt_clamped) rs->st->nvirt_clamped++;
    nsr8_dev *d = nsr8_dev_find(r, m->device_id.p, m->device_id.len);
    if (d && held_by_other(rs, d, NS8_LANE_TRANSFORM, ident, ident_len, now)) {
        rs->st->dropped[NSR8_DROP_HIJACK]++;
        return;
    }
    if (!d && !(d = dev_add(rs, r, m->device_id.p, m->device_id.len))) return;
    bool stealth = m->body.flags & NS8_F_STEALTH;
    if (!d->present) dev_enter(rs, r, d, stealth, now);
    bool was = visible(d);
    if (d->stealth != stealth) {
        d->stealth = stealth;
        r->mapping_dirty = true;
    }
    bool first_after_hello = d->ctl_len && !d->tf_len;
    if (!same(d->tf, d->tf_len, ident, ident_len)) {
        if (d->tf_len) rs->st->reconnects++;
        set_ident(d->tf, &d->tf_len, ident, ident_len);
    }
    ns8_body_copy_relay(&m->body, d->body);
    d->body_len = (uint16_t)m->body.len;
    d->has_pose = true;
    d->pose_at = now;
    d->last_update = now;
    d->poses++;
    r->poses_in++;
    if (was || visible(d)) r->dirty = true;
    if (first_after_hello) {
        r->mapping_dirty = true;
        full_sync_to(rs, r, d);
    }
}

/* control_sender resolves the deviceId of a control message to its room entry, applying the
 * phantom and hijack rules of ns8room.h; NULL (counted) when the message must be dropped. */
static nsr8_dev *control_sender(nsr8_rooms *rs, nsr8_room *r, const ns8_str *id,
                                const uint8_t *ident, size_t ident_len, uint64_t now)
{
    if (!id->len) {
        rs->st->dropped[NSR8_DROP_EMPTY_DEVICE]++;
        return NULL;
    }
    nsr8_dev *d = r ? nsr8_dev_find(r, id->p, id->len) : NULL;
    if (!d) {
        rs->st->dropped[NSR8_DROP_UNKNOWN_DEVICE]++;
        return NULL;
    }
    if (held_by_other(rs, d, NS8_LANE_CONTROL, ident, ident_len, now)) {
        rs->st->dropped[NSR8_DROP_HIJACK]++;
        return NULL;
    }
    if (!d->present) dev_enter(rs, r, d, false, now);
    if (!same(d->ctl, d->ctl_len, ident, ident_len)) {
        if (d->ctl_len) rs->st->reconnects++;
        set_ident(d->ctl, &d->ctl_len, ident, ident_len);
        r->mapping_dirty = true;
    }
    d->last_update = now;
    return d;
}

static void on_rpc(nsr8_rooms *rs, nsr8_room *r, const nsr8_dev *from, const ns8_rpc *m)
{
    rs->st->rpc_in++;
    if (m->sender != from->no) rs->st->rpc_rewritten++;
    ns8_enc e;
    rc_buf *b = enc_start(rs, &e);
    ns8_enc_rpc(&e, from->no, m->device_id.p, m->device_id.len, m->targets, m->ntargets,
                m->name.p, m->name.len, m->args.p, m->args.len);
    if (!enc_ok(rs, &e)) return;
    if (!m->ntargets) {
        rs->st->rpc_out += send_room(rs, r, b, NULL);
        return;
    }
    /* Each listed entry once, even if listed twice. */
    for (uint32_t i = 0; i < r->ndev; i++) {
        const nsr8_dev *d = &r->dev[i];
        if (!d->present || !d->ctl_len) continue;
        for (unsigned k = 0; k < m->ntargets; k++) {
            if (ns8_rpc_target(m, k) == d->no) {
                send_to(rs, r, d, b);
                rs->st->rpc_out++;
                break;
            }
        }
    }
}

static void on_var_set(nsr8_rooms *rs, nsr8_room *r, const nsr8_dev *from, const ns8_var_set *m,
                       bool global, uint64_t now)
{
    rs->st->nv_in++;
    if (m->sender != from->no) rs->st->rpc_rewritten++;
    if (!m->name.len) {
        rs->st->dropped[NSR8_DROP_NV_EMPTY_NAME]++;
        return;
    }
    int32_t cv = -1;
    if (!global) {
        const nsr8_dev *t = dev_by_no(r, m->target);
        if (!t) {
            rs->st->dropped[NSR8_DROP_UNKNOWN_TARGET]++;
            return;
        }
        if ((cv = cv_get(rs, r, t->id, t->id_len)) < 0) return;
    }
    size_t nl = m->name.len, vl = m->value.len;
    cut(rs, m->name.p, &nl, m->value.p, &vl);
    pend_put(rs, r, cv, m->name.p, nl, m->value.p, vl, from->no, now);
}

static void on_clear(nsr8_rooms *rs, nsr8_room *r, const nsr8_dev *from)
{
    rs->st->clears_in++;
    int32_t cv = cv_find(r, from->id, from->id_len);
    if (cv >= 0) {
        vtab_release(&r->cvs[cv].vars);
        r->cvs[cv].dirty = false;
        uint32_t w = 0;
        for (uint32_t i = 0; i < r->npend; i++) {
            if (r->pend[i].cv == cv) {
                free(r->pend[i].value);
                continue;
            }
            r->pend[w++] = r->pend[i];
        }
        r->npend = w;
    }
    ns8_enc e;
    rc_buf *b = enc_start(rs, &e);
    ns8_put_u8(&e, NS8_CLIENT_VAR_SYNC);
    ns8_put_u16(&e, 1);
    ns8_enc_client_sync_target(&e, from->no, 0);
    if (enc_ok(rs, &e)) rs->st->syncs_out += send_room(rs, r, b, NULL);
}

static nsr8_obj *obj_find(const nsr8_room *r, uint32_t id)
{
    for (uint32_t i = 0; i < r->nobj; i++)
        if (r->obj[i].id == id) return &r->obj[i];
    return NULL;
}

static nsr8_obj *obj_add(nsr8_rooms *rs, nsr8_room *r, uint32_t id, uint16_t owner)
{
    if (r->nobj >= rs->p.max_objects) {
        rs->st->dropped[NSR8_DROP_OBJECT_LIMIT]++;
        return NULL;
    }
    if (r->nobj == r->objcap) {
        uint32_t cap = r->objcap ? r->objcap * 2 : 4;
        nsr8_obj *o = realloc(r->obj, (size_t)cap * sizeof(*o));
        if (!o) {
            rs->st->dropped[NSR8_DROP_NOMEM]++;
            return NULL;
        }
        r->obj = o;
        r->objcap = cap;
    }
    nsr8_obj *o = &r->obj[r->nobj++];
    memset(o, 0, sizeof(*o));
    o->id = id;
    o->owner = owner;
    return o;
}

static void on_own_req(nsr8_rooms *rs, nsr8_room *r, const nsr8_dev *from, const ns8_own_req *m)
{
    rs->st->ownership_in++;
    if (!m->object_id) {
        rs->st->dropped[NSR8_DROP_OBJECT_ZERO]++;
        return;
    }
    nsr8_obj *o = obj_find(r, m->object_id);
    if (!o && !(o = obj_add(rs, r, m->object_id, 0))) return;
    uint16_t prev = o->owner;
    if (m->op == NS8_OWN_REQUEST) {
        o->owner = from->no;
        r->obj_dirty = true;
        send_changed(rs, r, o->id, from->no, prev);
    } else if (m->op == NS8_OWN_RELEASE) {
        if (prev == from->no) {
            o->owner = 0;
            r->obj_dirty = true;
            send_changed(rs, r, o->id, 0, prev);
        } else {
            ns8_enc e;
            rc_buf *b = enc_start(rs, &e);
            ns8_enc_ownership_rejected(&e, o->id, prev, NS8_REJECT_NOT_OWNER);
            if (enc_ok(rs, &e)) {
                send_to(rs, r, from, b);
                rs->st->ownership_out++;
            }
        }
    }
}

static void on_object_pose(nsr8_rooms *rs, nsr8_room *r, const uint8_t *ident, size_t ident_len,
                           const ns8_object_pose *m, uint64_t now)
{
    rs->st->object_poses_in++;
    if (m->trailing) {
        rs->st->pose_trailing++;
        rs->st->pose_trailing_bytes += m->trailing;
    }
    if (!m->object_id) {
        rs->st->dropped[NSR8_DROP_OBJECT_ZERO]++;
        return;
    }
    nsr8_dev *d = r ? nsr8_dev_find(r, m->device_id.p, m->device_id.len) : NULL;
    if (!d || !d->present) {
        rs->st->dropped[NSR8_DROP_NOT_MEMBER]++;
        return;
    }
    if (!same(d->ctl, d->ctl_len, ident, ident_len) &&
        held_by_other(rs, d, NS8_LANE_TRANSFORM, ident, ident_len, now)) {
        rs->st->dropped[NSR8_DROP_HIJACK]++;
        return;
    }
    nsr8_obj *o = obj_find(r, m->object_id);
    if (!o) {
        if (!(o = obj_add(rs, r, m->object_id, d->no))) return;
        send_changed(rs, r, o->id, d->no, 0);
    } else if (o->owner != d->no) {
        rs->st->dropped[NSR8_DROP_NOT_OWNER]++;
        return;
    }
    if (!o->has_pose) r->nobj_posed++;
    o->has_pose = true;
    o->seq = m->seq;
    o->pose_at = now;
    memcpy(o->body, m->body, NS8_OBJ_BODY_SIZE);
    r->obj_dirty = true;
}

void nsr8_on_msg(nsr8_rooms *rs, enum ns8_lane lane, const uint8_t *ident, size_t ident_len,
                 const uint8_t *room, size_t room_len, const ns8_msg *m, uint64_t now)
{
    rs->st->msgs_in++;
    if (!room_check(rs, room, room_len)) return;
    if (ident_len > NSR8_ID_MAX) ident_len = NSR8_ID_MAX; /* ZeroMQ ids are <= 255 bytes */
    bool tf = m->type == NS8_CLIENT_POSE || m->type == NS8_OBJECT_POSE;
    if (tf != (lane == NS8_LANE_TRANSFORM)) {
        rs->st->dropped[NSR8_DROP_WRONG_LANE]++;
        return;
    }
    nsr8_room *r = NULL;
    nsr8_dev *from = NULL;
    switch (m->type) {
    case NS8_HELLO:
        if ((r = room_get(rs, room, room_len, now)))
            on_hello(rs, r, ident, ident_len, &m->u.hello, now);
        break;
    case NS8_CLIENT_POSE:
        if ((r = room_get(rs, room, room_len, now)))
            on_pose(rs, r, ident, ident_len, &m->u.pose, now);
        break;
    case NS8_OBJECT_POSE:
        r = nsr8_room_find(rs, room, room_len);
        on_object_pose(rs, r, ident, ident_len, &m->u.obj, now);
        break;
    case NS8_RPC:
        r = nsr8_room_find(rs, room, room_len);
        if ((from = control_sender(rs, r, &m->u.rpc.device_id, ident, ident_len, now)))
            on_rpc(rs, r, from, &m->u.rpc);
        break;
    case NS8_GLOBAL_VAR_SET:
    case NS8_CLIENT_VAR_SET:
        r = nsr8_room_find(rs, room, room_len);
        if ((from = control_sender(rs, r, &m->u.var.device_id, ident, ident_len, now)))
            on_var_set(rs, r, from, &m->u.var, m->type == NS8_GLOBAL_VAR_SET, now);
        break;
    case NS8_CLIENT_VAR_CLEAR:
        r = nsr8_room_find(rs, room, room_len);
        if ((from = control_sender(rs, r, &m->u.clear.device_id, ident, ident_len, now)))
            on_clear(rs, r, from);
        break;
    case NS8_OWNERSHIP_REQUEST:
        r = nsr8_room_find(rs, room, room_len);
        if ((from = control_sender(rs, r, &m->u.own.device_id, ident, ident_len, now)))
            on_own_req(rs, r, from, &m->u.own);
        break;
    default: rs->st->dropped[NSR8_DROP_UNKNOWN_TYPE]++; return;
    }
    if (r) lower_wake(rs, r);
}

void nsr8_input(nsr8_rooms *rs, enum ns8_lane lane, const uint8_t *ident, size_t ident_len,
                const uint8_t *room, size_t room_len, const uint8_t *p, size_t n, uint64_t now)
{
    ns8_msg m;
    int rc = ns8_parse(p, n, &m);
    if (rc == NS8_OK) {
        nsr8_on_msg(rs, lane, ident, ident_len, room, room_len, &m, now);
        return;
    }
    rs->st->msgs_in++;
    if (!room_check(rs, room, room_len)) return;
    static const enum nsr8_drop why[] = {
        [-NS8_E_EMPTY] = NSR8_DROP_EMPTY,         [-NS8_E_TYPE] = NSR8_DROP_UNKNOWN_TYPE,
        [-NS8_E_DIRECTION] = NSR8_DROP_SERVER_TYPE, [-NS8_E_TRUNCATED] = NSR8_DROP_TRUNCATED,
        [-NS8_E_UTF8] = NSR8_DROP_UTF8,           [-NS8_E_TOO_LONG] = NSR8_DROP_TRUNCATED,
        [-NS8_E_NOMEM] = NSR8_DROP_NOMEM,         [-NS8_E_VERSION] = NSR8_DROP_VERSION,
        [-NS8_E_TRAILING] = NSR8_DROP_TRAILING,   [-NS8_E_PHYSICAL] = NSR8_DROP_PHYSICAL,
        [-NS8_E_LANE] = NSR8_DROP_WRONG_LANE,
    };
    rs->st->dropped[-rc < (int)(sizeof(why) / sizeof(why[0])) ? why[-rc]
                                                               : NSR8_DROP_UNKNOWN_TYPE]++;
}

/* ---- output ------------------------------------------------------------------------------ */

static void send_mapping(nsr8_rooms *rs, nsr8_room *r, uint64_t now)
{
    r->mapping_dirty = false;
    r->last_mapping = now;
    ns8_enc e;
    rc_buf *b = enc_start(rs, &e);
    size_t at = ns8_enc_mapping_begin(&e, rs->p.version[0], rs->p.version[1], rs->p.version[2]);
    uint16_t n = 0;
    for (uint32_t i = 0; i < r->ndev; i++) {
        const nsr8_dev *d = &r->dev[i];
        if (!d->present) continue;
        ns8_enc_mapping_entry(&e, d->no, d->stealth, d->id, d->id_len);
        n++;
    }
    ns8_patch_u16(&e, at, n);
    if (enc_ok(rs, &e)) rs->st->mappings_out += send_room(rs, r, b, NULL);
}

static void send_room_pose(nsr8_rooms *rs, nsr8_room *r, uint64_t now)
{
    ns8_enc e;
    rc_buf *b = enc_start(rs, &e);
    size_t at = ns8_enc_room_pose_begin(&e, r->id, r->id_len, secs(now));
    uint16_t n = 0;
    for (uint32_t i = 0; i < r->ndev; i++) {
        const nsr8_dev *d = &r->dev[i];
        if (!visible(d)) continue;
        ns8_enc_room_pose_entry(&e, d->no, secs(d->pose_at), d->body, d->body_len);
        n++;
    }
    ns8_patch_u16(&e, at, n);
    r->dirty = false;
    r->last_pose_bcast = now;
    if (!enc_ok(rs, &e)) return;
    publish(rs, r->id, r->id_len, b);
    rs->st->room_poses_out++;
    r->pose_bcasts++;
}

static void send_room_objects(nsr8_rooms *rs, nsr8_room *r, uint64_t now)
{
    ns8_enc e;
    rc_buf *b = enc_start(rs, &e);
    size_t at = ns8_enc_room_objects_begin(&e, secs(now));
    uint16_t n = 0;
    for (uint32_t i = 0; i < r->nobj; i++) {
        const nsr8_obj *o = &r->obj[i];
        if (!o->has_pose) continue;
        ns8_enc_room_objects_entry(&e, o->id, o->owner, o->seq, secs(o->pose_at), o->body);
        n++;
    }
    ns8_patch_u16(&e, at, n);
    r->obj_dirty = false;
    r->last_obj_bcast = now;
    if (!enc_ok(rs, &e)) return;
    rc_buf_reset(&rs->out2);
    if (rc_buf_append(&rs->out2, r->id, r->id_len) < 0 ||
        rc_buf_append(&rs->out2, "\0obj", 4) < 0) {
        rs->st->encode_errors++;
        return;
    }
    publish(rs, (const uint8_t *)rc_buf_head(&rs->out2), rc_buf_size(&rs->out2), b);
    rs->st->room_objects_out++;
}

static void sweep(nsr8_rooms *rs, nsr8_room *r, uint64_t now)
{
    r->last_sweep = now;
    for (uint32_t i = 0; i < r->ndev; i++) {
        nsr8_dev *d = &r->dev[i];
        if (d->present && now - d->last_update > rs->p.client_timeout_ns) {
            dev_leave(rs, r, d, now);
            rs->st->timeouts++;
        }
    }
}

/* expire forgets departed devices older than expiry_ns (their numbers become reusable);
 * ownership needs no fix-up: only present devices own objects. */
static void expire(nsr8_rooms *rs, nsr8_room *r, uint64_t now)
{
    r->last_expiry = now;
    uint32_t w = 0;
    for (uint32_t i = 0; i < r->ndev; i++) {
        nsr8_dev *d = &r->dev[i];
        if (!d->present && now - d->departed > rs->p.expiry_ns) {
            rs->st->devices--;
            continue;
        }
        if (w != i) r->dev[w] = *d;
        w++;
    }
    r->ndev = w;
}

static uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* after: when `gap` has passed since `last` (0 = never happened: at once). */
static uint64_t after(uint64_t last, uint64_t gap) { return last ? last + gap : 0; }
/* elapsed: has `gap` passed since `last` (never = yes)? */
static bool elapsed(uint64_t now, uint64_t last, uint64_t gap) { return !last || now - last >= gap; }

static uint64_t room_due(const nsr8_rooms *rs, const nsr8_room *r)
{
    const nsr8_params *p = &rs->p;
    uint64_t due = UINT64_MAX;
    if (r->npresent) due = min64(due, r->last_sweep + p->cleanup_ns);
    if (r->mapping_dirty) due = min64(due, after(r->last_mapping, p->mapping_debounce_ns));
    if (r->npend) due = min64(due, r->pend_since + p->nv_flush_ns);
    if (r->dirty) due = min64(due, after(r->last_pose_bcast, p->bcast_ns));
    else if (r->npresent) due = min64(due, after(r->last_pose_bcast, p->idle_ns));
    if (r->nobj_posed) {
        if (r->obj_dirty) due = min64(due, after(r->last_obj_bcast, p->bcast_ns));
        else if (r->npresent) due = min64(due, after(r->last_obj_bcast, p->idle_ns));
    }
    if (r->ndev > r->npresent) due = min64(due, r->last_expiry + p->expiry_sweep_ns);
    if (!r->npresent) due = min64(due, r->empty_since + p->empty_room_ns);
    return due;
}

uint64_t nsr8_tick(nsr8_rooms *rs, uint64_t now)
{
    const nsr8_params *p = &rs->p;
    uint64_t wake = UINT64_MAX;
    nsr8_room *next;
    for (nsr8_room *r = rs->head; r; r = next) {
        next = r->next;
        if (room_due(rs, r) > now) {
            wake = min64(wake, room_due(rs, r));
            continue;
        }
        if (r->npresent && now - r->last_sweep >= p->cleanup_ns) sweep(rs, r, now);
        if (r->mapping_dirty && elapsed(now, r->last_mapping, p->mapping_debounce_ns))
            send_mapping(rs, r, now);
        if (r->npend && now - r->pend_since >= p->nv_flush_ns) nv_flush(rs, r);
        if ((r->dirty && elapsed(now, r->last_pose_bcast, p->bcast_ns)) ||
            (r->npresent && elapsed(now, r->last_pose_bcast, p->idle_ns)))
            send_room_pose(rs, r, now);
        if (r->nobj_posed && ((r->obj_dirty && elapsed(now, r->last_obj_bcast, p->bcast_ns)) ||
                              (r->npresent && elapsed(now, r->last_obj_bcast, p->idle_ns))))
            send_room_objects(rs, r, now);
        if (r->ndev > r->npresent && now - r->last_expiry >= p->expiry_sweep_ns)
            expire(rs, r, now);
        if (!r->npresent && now - r->empty_since >= p->empty_room_ns && !r->npend) {
            room_free(rs, r);
            continue;
        }
        wake = min64(wake, room_due(rs, r));
    }
    rs->wake = wake;
    return wake;
}

/* ---- REST bridge ------------------------------------------------------------------------- */

static bool rest_args_ok(const uint8_t *room, size_t room_len, const uint8_t *a, size_t alen)
{
    return room_len <= NSR8_ID_MAX && alen <= NSR8_ID_MAX && rc_utf8_valid(room, room_len) &&
           rc_utf8_valid(a, alen);
}

/* An operator's write or delete wins over clients' writes of the same variable still waiting
 * in the NV window (as the reference's REST bridge does): drop them. name NULL: every pending
 * write of scope cv. */
static void pend_drop(nsr8_room *r, int32_t cv, const uint8_t *name, size_t nl)
{
    uint32_t w = 0;
    for (uint32_t i = 0; i < r->npend; i++) {
        nsr8_pend *p = &r->pend[i];
        if (p->cv == cv && (!name || same(p->name, p->name_len, name, nl))) {
            free(p->value);
            continue;
        }
        r->pend[w++] = *p;
    }
    r->npend = w;
}

enum nsr8_nv_result nsr8_cvar_set(nsr8_rooms *rs, const uint8_t *room, size_t room_len,
                                  const uint8_t *dev, size_t dev_len, const uint8_t *name,
                                  size_t name_len, const uint8_t *value, size_t value_len,
                                  uint64_t now)
{
    if (!rest_args_ok(room, room_len, dev, dev_len) || !rc_utf8_valid(name, name_len) ||
        !rc_utf8_valid(value, value_len) || name_len > NSR8_ID_MAX)
        return NSR8_NV_BAD;
    if (!name_len) return NSR8_NV_EMPTY_NAME;
    nsr8_room *r = room_get(rs, room, room_len, now);
    if (!r) return NSR8_NV_NOMEM;
    int32_t cv = cv_get(rs, r, dev, dev_len);
    enum nsr8_nv_result res = NSR8_NV_NOMEM;
    if (cv >= 0) {
        cut(rs, name, &name_len, value, &value_len);
        pend_drop(r, cv, name, name_len);
        res = vtab_set(&r->cvs[cv].vars, rs->p.max_client_vars, name, name_len, value,
                       value_len, 0);
        if (res == NSR8_NV_APPLIED) r->cvs[cv].dirty = true;
    }
    count_result(rs, res);
    lower_wake(rs, r);
    return res;
}

uint16_t nsr8_cvar_commit(nsr8_rooms *rs, const uint8_t *room, size_t room_len,
                          const uint8_t *dev, size_t dev_len)
{
    nsr8_room *r = nsr8_room_find(rs, room, room_len);
    const nsr8_dev *d = r ? nsr8_dev_find(r, dev, dev_len) : NULL;
    if (!d) return 0;
    int32_t cv = cv_find(r, dev, dev_len);
    if (cv < 0 || !r->cvs[cv].dirty) return d->no;
    /* Only this device's store: leave other dirty flags for the next flush. */
    ns8_enc e;
    rc_buf *b = enc_start(rs, &e);
    ns8_put_u8(&e, NS8_CLIENT_VAR_SYNC);
    ns8_put_u16(&e, 1);
    ns8_enc_client_sync_target(&e, d->no, (uint16_t)r->cvs[cv].vars.n);
    enc_vars(&e, &r->cvs[cv].vars, false);
    r->cvs[cv].dirty = false;
    if (enc_ok(rs, &e)) rs->st->syncs_out += send_room(rs, r, b, NULL);
    return d->no;
}

const nsr8_vtab *nsr8_cvars(const nsr8_rooms *rs, const uint8_t *room, size_t room_len,
                            const uint8_t *dev, size_t dev_len)
{
    const nsr8_room *r = nsr8_room_find(rs, room, room_len);
    int32_t cv = r ? cv_find(r, dev, dev_len) : -1;
    return cv >= 0 ? &r->cvs[cv].vars : NULL;
}

unsigned nsr8_cvar_delete(nsr8_rooms *rs, const uint8_t *room, size_t room_len,
                          const uint8_t *dev, size_t dev_len, const uint8_t *name,
                          size_t name_len)
{
    nsr8_room *r = nsr8_room_find(rs, room, room_len);
    int32_t cv = r ? cv_find(r, dev, dev_len) : -1;
    if (cv < 0) return 0;
    pend_drop(r, cv, name, name_len);
    nsr8_vtab *t = &r->cvs[cv].vars;
    unsigned k = 0;
    uint32_t w = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        if (!name || same(t->v[i].name, t->v[i].name_len, name, name_len)) {
            free(t->v[i].value);
            k++;
            continue;
        }
        t->v[w++] = t->v[i];
    }
    t->n = w;
    if (k) {
        r->cvs[cv].dirty = true;
        nsr8_cvar_commit(rs, room, room_len, dev, dev_len);
    }
    return k;
}

enum nsr8_nv_result nsr8_gvar_set(nsr8_rooms *rs, const uint8_t *room, size_t room_len,
                                  const uint8_t *name, size_t name_len, const uint8_t *value,
                                  size_t value_len, uint64_t now)
{
    if (!rest_args_ok(room, room_len, name, name_len) || !rc_utf8_valid(value, value_len))
        return NSR8_NV_BAD;
    if (!name_len) return NSR8_NV_EMPTY_NAME;
    nsr8_room *r = room_get(rs, room, room_len, now);
    if (!r) return NSR8_NV_NOMEM;
    cut(rs, name, &name_len, value, &value_len);
    pend_drop(r, -1, name, name_len);
    enum nsr8_nv_result res =
        vtab_set(&r->globals, rs->p.max_global_vars, name, name_len, value, value_len, 0);
    count_result(rs, res);
    lower_wake(rs, r);
    return res;
}

void nsr8_gvar_commit(nsr8_rooms *rs, const uint8_t *room, size_t room_len)
{
    nsr8_room *r = nsr8_room_find(rs, room, room_len);
    if (r) send_global_delta(rs, r);
}

const nsr8_vtab *nsr8_gvars(const nsr8_rooms *rs, const uint8_t *room, size_t room_len)
{
    const nsr8_room *r = nsr8_room_find(rs, room, room_len);
    return r ? &r->globals : NULL;
}

uint16_t nsr8_dev_number(const nsr8_rooms *rs, const uint8_t *room, size_t room_len,
                         const uint8_t *dev, size_t dev_len)
{
    const nsr8_room *r = nsr8_room_find(rs, room, room_len);
    const nsr8_dev *d = r ? nsr8_dev_find(r, dev, dev_len) : NULL;
    return d ? d->no : 0;
}
