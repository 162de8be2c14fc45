/* nsroom.c — NetSync rooms, devices, variables and the per-tick output; see nsroom.h. */
#include "netsync/nsroom.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "codec/utf8.h"

#define NO_INDEX UINT32_MAX

const char *const nsy_drop_names[NSY_DROP__COUNT] = {
    [NSY_DROP_TOO_FEW_FRAMES] = "too_few_frames",
    [NSY_DROP_ROOM_TOO_LONG] = "room_too_long",
    [NSY_DROP_ROOM_UTF8] = "room_utf8",
    [NSY_DROP_EMPTY] = "empty",
    [NSY_DROP_UNKNOWN_TYPE] = "unknown_type",
    [NSY_DROP_SERVER_TYPE] = "server_type",
    [NSY_DROP_TRUNCATED] = "truncated",
    [NSY_DROP_UTF8] = "utf8",
    [NSY_DROP_UNKNOWN_SENDER] = "unknown_sender",
    [NSY_DROP_ROOM_LIMIT] = "room_limit",
    [NSY_DROP_DEVICE_LIMIT] = "device_limit",
    [NSY_DROP_NUMBERS] = "numbers_exhausted",
    [NSY_DROP_NV_LIMIT] = "nv_limit",
    [NSY_DROP_NV_EMPTY_NAME] = "nv_empty_name",
    [NSY_DROP_NOMEM] = "nomem",
    [NSY_DROP_TOO_BIG] = "too_big",
    [NSY_DROP_SUB_TOO_BIG] = "subscription_too_big",
    [NSY_DROP_SUB_LIMIT] = "subscription_limit",
    [NSY_DROP_WRONG_LANE] = "wrong_lane",
    [NSY_DROP_UNSUPPORTED] = "unsupported_version",
    [NSY_DROP_GENERATION] = "generation_conflict",
    [NSY_DROP_INVALID] = "invalid",
};

void nsy_params_default(nsy_params *p)
{
    *p = (nsy_params){
        .tick_ns = 50000000ull,
        .client_timeout_ns = 1000000000ull,
        .idle_ns = 500000000ull,
        .mapping_ns = 1000000000ull,
        .expiry_ns = 300000000000ull,
        .expiry_sweep_ns = 60000000000ull,
        .max_rooms = 10000,
        .max_devices = 4096,
        .max_nv_targets = 256,
    };
}

/* Device ids hash into the room's own index table (rc_hash, the one hash). */
static uint32_t hash_bytes(const uint8_t *p, size_t n)
{
    return (uint32_t)rc_hash(p, n);
}

static void watch(nsy_rooms *rs, const nsy_room *r, const nsy_watch_ev *ev)
{
    if (rs->watch) rs->watch(rs->watch_arg, r, ev);
}

static void publish(nsy_rooms *rs, const nsy_room *r, const rc_buf *b)
{
    rs->st->msgs_out++;
    rs->st->bytes_out += r->id_len + rc_buf_size(b);
    rs->publish(rs->publish_arg, r->id, r->id_len, (const uint8_t *)rc_buf_head(b),
                rc_buf_size(b));
}

/* ---- the room table ---------------------------------------------------------------------- */

int nsy_rooms_init(nsy_rooms *rs, const nsy_params *p, rc_netsync_stats *st, nsy_publish *pub,
                  void *arg)
{
    *rs = (nsy_rooms){.p = *p, .st = st, .publish = pub, .publish_arg = arg,
                     .wake = UINT64_MAX};
    return 0;
}

#define room_of_node(n) ((nsy_room *)(void *)((char *)(n) - offsetof(nsy_room, node)))

nsy_room *nsy_room_find(const nsy_rooms *rs, const uint8_t *id, size_t len)
{
    uint64_t h = rc_hash(id, len);
    for (rc_hnode *n = rc_htab_chain(&rs->table, h); n; n = n->next) {
        nsy_room *r = room_of_node(n);
        if (n->hash == h && r->id_len == len && memcmp(r->id, id, len) == 0) return r;
    }
    return NULL;
}

/* ---- rooms by due time --------------------------------------------------------------------
 * Each room has its own cadence, so the tick fires whenever some room is due; a min-heap on
 * `due` makes a firing cost O(due rooms · log rooms) instead of a walk over every room (which
 * was O(rooms²) per tick period with thousands of staggered rooms). */

#define room_of(x) ((nsy_room *)(void *)((char *)(x) - offsetof(nsy_room, due)))

/* set_wake keeps rs->wake the earliest due time (the caller's timer). */
static void set_wake(nsy_rooms *rs)
{
    const rc_heap_node *top = rc_heap_top(&rs->due);
    rs->wake = top ? top->key : UINT64_MAX;
}

static nsy_room *room_new(nsy_rooms *rs, const uint8_t *id, size_t len, uint64_t now)
{
    if (rs->nrooms >= rs->p.max_rooms) {
        rs->st->dropped[NSY_DROP_ROOM_LIMIT]++;
        return NULL;
    }
    nsy_room *r = calloc(1, sizeof(*r));
    if (!r || rc_heap_push(&rs->due, &r->due, now) < 0) {
        free(r);
        rs->st->dropped[NSY_DROP_NOMEM]++;
        return NULL;
    }
    memcpy(r->id, id, len);
    r->id_len = (uint8_t)len;
    r->next_no = 1;
    /* Due at once (its heap key is now): the first mapping and broadcast go out without
     * waiting, also when the first client is stealth and so never makes the room dirty. */
    r->created = r->last_expiry = r->last_house = now;
    if (rc_htab_insert(&rs->table, &r->node, rc_hash(id, len)) < 0) {
        rc_heap_remove(&rs->due, &r->due);
        free(r);
        rs->st->dropped[NSY_DROP_NOMEM]++;
        return NULL;
    }
    r->prev = rs->tail;
    if (rs->tail) rs->tail->next = r; else rs->head = r;
    rs->tail = r;
    rs->nrooms++;
    set_wake(rs);
    rs->st->rooms++;
    return r;
}

static void vtab_release(nsy_vtab *t)
{
    for (unsigned i = 0; i < t->n; i++) free(t->v[i].value);
    t->n = 0;
}

static void room_free(nsy_rooms *rs, nsy_room *r)
{
    rc_htab_remove(&rs->table, &r->node);
    if (r->prev) r->prev->next = r->next; else rs->head = r->next;
    if (r->next) r->next->prev = r->prev; else rs->tail = r->prev;
    rs->nrooms--;
    rc_heap_remove(&rs->due, &r->due);
    set_wake(rs);
    rs->st->rooms--;
    rs->st->devices -= r->ndev;
    rs->st->clients -= r->nlive;
    vtab_release(&r->globals);
    for (uint32_t i = 0; i < r->ncvars; i++) {
        vtab_release(r->cvars[i]);
        free(r->cvars[i]);
    }
    free(r->cvars);
    free(r->dev);
    free(r->order);
    free(r->hbucket);
    free(r);
}

void nsy_rooms_release(nsy_rooms *rs)
{
    while (rs->head) room_free(rs, rs->head);
    rc_htab_release(&rs->table);
    rc_heap_release(&rs->due);
    rc_buf_release(&rs->out);
}

/* ---- devices ----------------------------------------------------------------------------- */

static void dev_rehash(nsy_room *r)
{
    for (uint32_t i = 0; i < r->nbucket; i++) r->hbucket[i] = NO_INDEX;
    for (uint32_t i = 0; i < r->ndev; i++) {
        uint32_t h = hash_bytes(r->dev[i].id, r->dev[i].id_len) & (r->nbucket - 1);
        r->dev[i].hnext = r->hbucket[h];
        r->hbucket[h] = i;
    }
}

long nsy_room_find_device(const nsy_room *r, const uint8_t *id, size_t len)
{
    if (!r->nbucket) return -1;
    uint32_t i = r->hbucket[hash_bytes(id, len) & (r->nbucket - 1)];
    for (; i != NO_INDEX; i = r->dev[i].hnext)
        if (r->dev[i].id_len == len && memcmp(r->dev[i].id, id, len) == 0) return (long)i;
    return -1;
}

static int dev_grow(nsy_room *r)
{
    uint32_t cap = r->devcap ? r->devcap * 2 : 8;
    nsy_dev *d = realloc(r->dev, (size_t)cap * sizeof(*d));
    if (!d) return -1;
    r->dev = d;
    uint32_t *o = realloc(r->order, (size_t)cap * sizeof(*o));
    if (!o) return -1;
    r->order = o;
    uint32_t *hb = malloc((size_t)cap * sizeof(*hb));
    if (!hb) return -1;
    free(r->hbucket);
    r->hbucket = hb;
    r->nbucket = cap;
    r->devcap = cap;
    dev_rehash(r);
    return 0;
}

/* alloc_number hands out 1, 2, 3... and, once 65535 has been used, the lowest number no
 * device of the room holds (the reference reuses expired devices' numbers). 0 = none left. */
static uint16_t alloc_number(nsy_room *r)
{
    if (r->next_no) {
        uint16_t no = r->next_no;
        r->next_no = no == UINT16_MAX ? 0 : (uint16_t)(no + 1);
        return no;
    }
    uint8_t *used = calloc(65536 / 8, 1);
    if (!used) return 0;
    for (uint32_t i = 0; i < r->ndev; i++) used[r->dev[i].no >> 3] |= (uint8_t)(1u << (r->dev[i].no & 7));
    uint16_t no = 0;
    for (uint32_t n = 1; n <= UINT16_MAX; n++) {
        if (!(used[n >> 3] & (1u << (n & 7)))) {
            no = (uint16_t)n;
            break;
        }
    }
    free(used);
    return no;
}

static long dev_add(nsy_rooms *rs, nsy_room *r, const uint8_t *id, size_t len)
{
    if (r->ndev >= rs->p.max_devices) {
        rs->st->dropped[NSY_DROP_DEVICE_LIMIT]++;
        return -1;
    }
    if (r->ndev == r->devcap && dev_grow(r) < 0) {
        rs->st->dropped[NSY_DROP_NOMEM]++;
        return -1;
    }
    uint16_t no = alloc_number(r);
    if (!no) {
        rs->st->dropped[NSY_DROP_NUMBERS]++;
        return -1;
    }
    uint32_t i = r->ndev++;
    nsy_dev *d = &r->dev[i];
    d->live = d->stealth = false;
    d->no = no;
    d->id_len = (uint8_t)len;
    memcpy(d->id, id, len);
    d->ident_len = 0;
    d->ent_len = 0;
    d->transforms = 0;
    d->ent[0] = (uint8_t)no;
    d->ent[1] = (uint8_t)(no >> 8);
    uint32_t h = hash_bytes(id, len) & (r->nbucket - 1);
    d->hnext = r->hbucket[h];
    r->hbucket[h] = i;
    rs->st->devices++;
    return (long)i;
}

/* expire_devices forgets departed devices older than expiry_ns: their numbers become free for
 * reuse (only after 65535 assignments). Devices keep their relative order. */
static void expire_devices(nsy_rooms *rs, nsy_room *r, uint64_t now)
{
    r->last_expiry = now;
    uint32_t *remap = malloc((size_t)r->ndev * sizeof(*remap) + 1);
    if (!remap) return;
    uint32_t w = 0;
    for (uint32_t i = 0; i < r->ndev; i++) {
        nsy_dev *d = &r->dev[i];
        if (!d->live && now - d->departed > rs->p.expiry_ns) {
            remap[i] = NO_INDEX;
            continue;
        }
        remap[i] = w;
        if (w != i) r->dev[w] = *d;
        w++;
    }
    if (w != r->ndev) {
        rs->st->devices -= r->ndev - w;
        r->ndev = w;
        for (uint32_t k = 0; k < r->nlive; k++) r->order[k] = remap[r->order[k]];
        dev_rehash(r);
        r->mapping_dirty = true;
    }
    free(remap);
}

/* ---- input ------------------------------------------------------------------------------- */

void nsy_on_transform(nsy_rooms *rs, const uint8_t *room, size_t room_len, const uint8_t *ident,
                     size_t ident_len, const nsy_client_transform *t, uint64_t now)
{
    nsy_room *r = nsy_room_find(rs, room, room_len);
    if (!r && !(r = room_new(rs, room, room_len, now))) return;
    long idx = nsy_room_find_device(r, t->device_id.p, t->device_id.len);
    if (idx < 0 && (idx = dev_add(rs, r, t->device_id.p, t->device_id.len)) < 0) return;
    nsy_dev *d = &r->dev[idx];
    bool was_visible = d->live && !d->stealth;
    if (!d->live) {
        /* a join: first transform of a device not live in the room; a re-join appends */
        d->live = true;
        r->order[r->nlive++] = (uint32_t)idx;
        r->mapping_dirty = r->joined = true;
        rs->st->joins++;
        rs->st->clients++;
        d->stealth = t->stealth;
    } else if (d->stealth != t->stealth) {
        d->stealth = t->stealth; /* the reference never re-sends the mapping for this */
        r->mapping_dirty = true;
    }
    /* The identity follows the DEALER that sends the transforms, so a client that reconnected
     * (new routing id, same deviceId) can still send RPCs; the reference keeps the first one. */
    if (d->ident_len != ident_len || memcmp(d->ident, ident, ident_len) != 0) {
        d->ident_len = (uint8_t)ident_len;
        memcpy(d->ident, ident, ident_len);
    }
    d->last_seen = now;
    bool visible = !d->stealth;
    if (visible) {
        memcpy(d->ent + 2, t->body, NSY_BODY_SIZE);
        d->ent[2 + NSY_BODY_SIZE] = t->nvirt;
        memcpy(d->ent + NSY_ENTRY_FIXED, t->virt, (size_t)t->nvirt * NSY_TRANSFORM_SIZE);
        d->ent_len = (uint16_t)(NSY_ENTRY_FIXED + (size_t)t->nvirt * NSY_TRANSFORM_SIZE);
    }
    if (visible != was_visible) r->nvisible += visible ? 1 : (uint32_t)-1;
    if ((visible || was_visible) && !r->dirty) {
        r->dirty = true;
        /* A room that was quiet for a tick is published at once, otherwise one tick after its
         * last broadcast: never the extra wait of a global timer. */
        uint64_t due = r->last_bcast + rs->p.tick_ns;
        if (due < r->due.key) {
            rc_heap_update(&rs->due, &r->due, due);
            set_wake(rs);
        }
    }
    d->transforms++;
    r->transforms_in++;
    rs->st->transforms_in++;
    if (t->clamped) rs->st->nvirt_clamped++;
}

/* live_sender finds the live client of r behind a ZeroMQ routing id; NULL when there is none,
 * which is how forged senders are recognised (the reference trusts the claim then). A linear
 * scan: RPC/NV are rare next to transforms, and a room is hundreds of clients at most. */
static const nsy_dev *live_sender(const nsy_room *r, const uint8_t *ident, size_t len)
{
    for (uint32_t k = 0; k < r->nlive; k++) {
        const nsy_dev *d = &r->dev[r->order[k]];
        if (d->ident_len == len && memcmp(d->ident, ident, len) == 0) return d;
    }
    return NULL;
}

int nsy_room_publish_rpc(nsy_rooms *rs, nsy_room *r, uint16_t sender, const uint8_t *name,
                        size_t name_len, const uint8_t *args, size_t args_len)
{
    rc_buf_reset(&rs->out);
    nsy_enc e;
    nsy_enc_init(&e, &rs->out);
    nsy_enc_rpc(&e, sender, name, name_len, args, args_len);
    if (e.err) return e.err;
    publish(rs, r, &rs->out);
    rs->st->rpc_out++;
    watch(rs, r, &(nsy_watch_ev){.kind = NSY_W_RPC, .sender = sender, .name = name,
                                .name_len = name_len, .args = args, .args_len = args_len});
    return 0;
}

void nsy_on_rpc(nsy_rooms *rs, const uint8_t *room, size_t room_len, const uint8_t *ident,
               size_t ident_len, const nsy_rpc *m)
{
    nsy_room *r = nsy_room_find(rs, room, room_len);
    const nsy_dev *d = r ? live_sender(r, ident, ident_len) : NULL;
    if (!d) {
        rs->st->dropped[NSY_DROP_UNKNOWN_SENDER]++;
        return;
    }
    if (m->sender != d->no) rs->st->rpc_rewritten++;
    if (m->args_cut) rs->st->args_cut++;
    rs->st->rpc_in++;
    if (nsy_room_publish_rpc(rs, r, d->no, m->name.p, m->name.len, m->args.p, m->args.len) < 0)
        rs->st->dropped[NSY_DROP_NOMEM]++;
}

static nsy_vtab *target_table(nsy_rooms *rs, nsy_room *r, uint16_t target, bool create)
{
    for (uint32_t i = 0; i < r->ncvars; i++)
        if (r->cvars[i]->target == target) return r->cvars[i];
    if (!create || r->ncvars >= rs->p.max_nv_targets) return NULL;
    if (r->ncvars == r->cvarcap) {
        uint32_t cap = r->cvarcap ? r->cvarcap * 2 : 4;
        nsy_vtab **v = realloc(r->cvars, cap * sizeof(*v));
        if (!v) return NULL;
        r->cvars = v;
        r->cvarcap = cap;
    }
    nsy_vtab *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    t->target = target;
    r->cvars[r->ncvars++] = t;
    return t;
}

enum nsy_nv_result nsy_room_set_var(nsy_rooms *rs, nsy_room *r, int target, const uint8_t *name,
                                  size_t name_len, const uint8_t *value, size_t value_len,
                                  double ts, uint16_t sender)
{
    if (name_len == 0) return NSY_NV_EMPTY_NAME;
    /* Cut like Python's str[:64] / str[:1024]: code points, not bytes. */
    size_t nl = nsy_utf8_prefix(name, name_len, NSY_NV_NAME_CP);
    size_t vl = nsy_utf8_prefix(value, value_len, NSY_NV_VALUE_CP);
    if (nl != name_len || vl != value_len) rs->st->nv_truncated++;
    nsy_vtab *t = target < 0 ? &r->globals : target_table(rs, r, (uint16_t)target, false);
    nsy_var *v = NULL;
    if (t) {
        for (unsigned i = 0; i < t->n; i++) {
            if (t->v[i].name_len == nl && memcmp(t->v[i].name, name, nl) == 0) {
                v = &t->v[i];
                break;
            }
        }
    }
    if (v) {
        /* The reference's rule, against the stored state only (S:919-929). NaN timestamps
         * compare false both ways and are accepted, as in Python. */
        if (v->value_len == vl && (vl == 0 || memcmp(v->value, value, vl) == 0))
            return NSY_NV_UNCHANGED;
        if (ts < v->ts) return NSY_NV_STALE;
        if (ts == v->ts && sender < v->writer) return NSY_NV_STALE;
    } else {
        if (!t && !(t = target_table(rs, r, (uint16_t)target, true))) return NSY_NV_LIMIT;
        if (t->n >= NSY_NV_MAX_VARS) return NSY_NV_LIMIT;
        v = &t->v[t->n++];
        memset(v, 0, sizeof(*v));
        v->name_len = (uint8_t)nl;
        memcpy(v->name, name, nl);
    }
    if (vl > v->value_len || !v->value) {
        uint8_t *p = realloc(v->value, vl ? vl : 1);
        if (!p) {
            if (!v->value) t->n--; /* a new variable that could not be stored */
            return NSY_NV_NOMEM;
        }
        v->value = p;
    }
    memcpy(v->value, value, vl);
    v->value_len = (uint32_t)vl;
    v->ts = ts;
    v->writer = sender;
    if (!v->dirty) {
        v->dirty = true;
        t->ndirty++;
    }
    r->nv_dirty = true;
    return NSY_NV_APPLIED;
}

void nsy_on_var_set(nsy_rooms *rs, const uint8_t *room, size_t room_len, const uint8_t *ident,
                   size_t ident_len, const nsy_var_set *m, bool global)
{
    nsy_room *r = nsy_room_find(rs, room, room_len);
    const nsy_dev *d = r ? live_sender(r, ident, ident_len) : NULL;
    if (!d) {
        rs->st->dropped[NSY_DROP_UNKNOWN_SENDER]++;
        return;
    }
    if (m->sender != d->no) rs->st->nv_rewritten++;
    rs->st->nv_in++;
    switch (nsy_room_set_var(rs, r, global ? -1 : m->target, m->name.p, m->name.len, m->value.p,
                            m->value.len, m->timestamp, d->no)) {
    case NSY_NV_APPLIED: rs->st->nv_applied++; break;
    case NSY_NV_UNCHANGED: rs->st->nv_unchanged++; break;
    case NSY_NV_STALE: rs->st->nv_stale++; break;
    case NSY_NV_LIMIT: rs->st->dropped[NSY_DROP_NV_LIMIT]++; break;
    case NSY_NV_EMPTY_NAME: rs->st->dropped[NSY_DROP_NV_EMPTY_NAME]++; break;
    case NSY_NV_NOMEM: rs->st->dropped[NSY_DROP_NOMEM]++; break;
    }
}

/* nsy_rooms_input is the transport-independent half of netsync.c's message handler (moved
 * here unchanged so the drop counters are unit-testable without sockets). */
void nsy_rooms_input(nsy_rooms *rs, const uint8_t *ident, size_t ident_len, const uint8_t *room,
                    size_t room_len, const uint8_t *p, size_t n, uint64_t now)
{
    rc_netsync_stats *st = rs->st;
    /* Defect 1 of the reference: a room id that ROOM_TRANSFORM cannot carry wedges it. */
    if (room_len > NSY_STR8_MAX) {
        st->dropped[NSY_DROP_ROOM_TOO_LONG]++;
        return;
    }
    if (!rc_utf8_valid(room, room_len)) {
        st->dropped[NSY_DROP_ROOM_UTF8]++;
        return;
    }
    int type = nsy_classify(p, n), rc;
    /* Payloads are never interpreted as JSON (defect 2): a failed binary parse is a drop. */
    switch (type) {
    case NSY_CLIENT_TRANSFORM: {
        nsy_client_transform t;
        if ((rc = nsy_parse_client_transform(p, n, &t)) == NSY_OK)
            nsy_on_transform(rs, room, room_len, ident, ident_len, &t, now);
        break;
    }
    case NSY_RPC: {
        nsy_rpc r;
        if ((rc = nsy_parse_rpc(p, n, &r)) == NSY_OK)
            nsy_on_rpc(rs, room, room_len, ident, ident_len, &r);
        break;
    }
    case NSY_GLOBAL_VAR_SET:
    case NSY_CLIENT_VAR_SET: {
        nsy_var_set v;
        rc = type == NSY_GLOBAL_VAR_SET ? nsy_parse_global_var_set(p, n, &v)
                                       : nsy_parse_client_var_set(p, n, &v);
        if (rc == NSY_OK)
            nsy_on_var_set(rs, room, room_len, ident, ident_len, &v, type == NSY_GLOBAL_VAR_SET);
        break;
    }
    default: rc = type; break;
    }
    switch (rc) {
    case NSY_OK: break;
    case NSY_E_EMPTY: st->dropped[NSY_DROP_EMPTY]++; break;
    case NSY_E_DIRECTION: st->dropped[NSY_DROP_SERVER_TYPE]++; break;
    case NSY_E_TRUNCATED: st->dropped[NSY_DROP_TRUNCATED]++; break;
    case NSY_E_UTF8: st->dropped[NSY_DROP_UTF8]++; break;
    default: st->dropped[NSY_DROP_UNKNOWN_TYPE]++; break;
    }
}

/* ---- output ------------------------------------------------------------------------------ */

static void publish_mapping(nsy_rooms *rs, nsy_room *r, uint64_t now)
{
    rc_buf_reset(&rs->out);
    nsy_enc e;
    nsy_enc_init(&e, &rs->out);
    nsy_put_u8(&e, NSY_DEVICE_ID_MAPPING);
    nsy_put_u16(&e, (uint16_t)r->ndev); /* ndev <= max_devices <= 65535 numbers */
    for (uint32_t i = 0; i < r->ndev; i++) {
        const nsy_dev *d = &r->dev[i];
        nsy_enc_mapping_entry(&e, d->no, d->stealth, d->id, d->id_len);
    }
    r->mapping_dirty = false;
    r->last_mapping = now;
    if (e.err) return;
    publish(rs, r, &rs->out);
    rs->st->mappings_out++;
}

static void enc_vars(nsy_enc *e, nsy_vtab *t, bool all)
{
    for (unsigned i = 0; i < t->n; i++) {
        nsy_var *v = &t->v[i];
        if (all || v->dirty)
            nsy_enc_var(e, v->name, v->name_len, v->value, v->value_len, v->ts, v->writer);
        v->dirty = false;
    }
    t->ndirty = 0;
}

/* publish_vars sends the full state (all) or the delta since the last sync; each kind only
 * when it has something in it, like the reference. */
static void publish_vars(nsy_rooms *rs, nsy_room *r, bool all)
{
    nsy_enc e;
    watch(rs, r, &(nsy_watch_ev){.kind = NSY_W_VARS, .all = all});
    if (all ? r->globals.n > 0 : r->globals.ndirty > 0) {
        rc_buf_reset(&rs->out);
        nsy_enc_init(&e, &rs->out);
        nsy_put_u8(&e, NSY_GLOBAL_VAR_SYNC);
        nsy_put_u16(&e, all ? r->globals.n : r->globals.ndirty);
        enc_vars(&e, &r->globals, all);
        if (!e.err) {
            publish(rs, r, &rs->out);
            rs->st->syncs_out++;
        }
    }
    uint32_t nt = 0;
    for (uint32_t i = 0; i < r->ncvars; i++)
        if (all ? r->cvars[i]->n > 0 : r->cvars[i]->ndirty > 0) nt++;
    if (nt) {
        rc_buf_reset(&rs->out);
        nsy_enc_init(&e, &rs->out);
        nsy_put_u8(&e, NSY_CLIENT_VAR_SYNC);
        nsy_put_u16(&e, (uint16_t)nt);
        for (uint32_t i = 0; i < r->ncvars; i++) {
            nsy_vtab *t = r->cvars[i];
            if (!(all ? t->n > 0 : t->ndirty > 0)) continue;
            nsy_put_u16(&e, t->target);
            nsy_put_u16(&e, all ? t->n : t->ndirty);
            enc_vars(&e, t, all);
        }
        if (!e.err) {
            publish(rs, r, &rs->out);
            rs->st->syncs_out++;
        }
    }
    r->nv_dirty = false;
}

static void publish_room_transform(nsy_rooms *rs, nsy_room *r, uint64_t now)
{
    rc_buf *b = &rs->out;
    rc_buf_reset(b);
    /* type, room id length, room id, u16 count: 4 + id_len bytes of header (this reserved
     * 3 + id_len, one byte short when every entry had 50 virtuals and the buffer had no
     * slack, e.g. a 196-byte room id with 3 such clients: 4097 bytes written into 4096). */
    size_t need = 4 + r->id_len + (size_t)r->nvisible * NSY_ENTRY_MAX;
    if (rc_buf_reserve(b, need) < 0) {
        rs->st->dropped[NSY_DROP_NOMEM]++;
        return;
    }
    /* One header, then one memcpy per visible live client in join order. */
    uint8_t *p = (uint8_t *)rc_buf_tail(b), *w = p;
    *w++ = NSY_ROOM_TRANSFORM;
    *w++ = r->id_len;
    memcpy(w, r->id, r->id_len);
    w += r->id_len;
    *w++ = (uint8_t)r->nvisible;
    *w++ = (uint8_t)(r->nvisible >> 8);
    for (uint32_t k = 0; k < r->nlive; k++) {
        const nsy_dev *d = &r->dev[r->order[k]];
        if (d->stealth) continue;
        memcpy(w, d->ent, d->ent_len);
        w += d->ent_len;
    }
    rc_buf_commit(b, (size_t)(w - p));
    publish(rs, r, b);
    rs->st->room_transforms_out++;
    r->bcasts++;
    r->last_bcast = now;
    r->dirty = false;
}

static void timeouts(nsy_rooms *rs, nsy_room *r, uint64_t now)
{
    uint32_t w = 0;
    for (uint32_t k = 0; k < r->nlive; k++) {
        nsy_dev *d = &r->dev[r->order[k]];
        if (now - d->last_seen > rs->p.client_timeout_ns) {
            d->live = false;
            d->departed = now;
            if (!d->stealth) {
                r->nvisible--;
                r->dirty = true;
            }
            r->mapping_dirty = true;
            rs->st->clients--;
            rs->st->timeouts++;
            continue;
        }
        r->order[w++] = r->order[k];
    }
    r->nlive = w;
}

static uint64_t room_due(const nsy_rooms *rs, const nsy_room *r)
{
    uint64_t due = r->last_house + rs->p.tick_ns;
    if (r->dirty && r->last_bcast + rs->p.tick_ns < due) due = r->last_bcast + rs->p.tick_ns;
    return due;
}

uint64_t nsy_rooms_tick(nsy_rooms *rs, uint64_t now)
{
    /* Due rooms come off the heap's top in due order; each is put back with a due time after
     * now (last_house = now), so every room is processed at most once per call. */
    rc_heap_node *top;
    while ((top = rc_heap_top(&rs->due)) && top->key <= now) {
        nsy_room *r = room_of(top);
        r->last_house = now;
        timeouts(rs, r, now);
        bool changed = false;    /* published a mapping or transforms: watchers get the state */
        /* coalesced: at most one mapping per room per tick, plus a periodic one */
        if ((r->mapping_dirty && now - r->last_mapping >= rs->p.tick_ns) ||
            now - r->last_mapping >= rs->p.mapping_ns) {
            publish_mapping(rs, r, now);
            changed = true;
        }
        if (r->nlive == 0) {
            /* Like the reference's cleanup: the room goes with all its state once nobody is
             * left; the mapping above told the subscribers about the departures. */
            watch(rs, r, &(nsy_watch_ev){.kind = NSY_W_GONE});
            room_free(rs, r);
            continue;
        }
        if (r->joined) {
            publish_vars(rs, r, true); /* a join: everyone gets the full state (coalesced) */
            r->joined = false;
        } else if (r->nv_dirty) {
            publish_vars(rs, r, false);
        }
        if (r->nvisible > 0 && ((r->dirty && now - r->last_bcast >= rs->p.tick_ns) ||
                                now - r->last_bcast >= rs->p.idle_ns)) {
            publish_room_transform(rs, r, now);
            changed = true;
        }
        if (r->nvisible == 0) r->dirty = false; /* nothing to publish (never count 0) */
        if (changed) watch(rs, r, &(nsy_watch_ev){.kind = NSY_W_STATE});
        if (now - r->last_expiry >= rs->p.expiry_sweep_ns) expire_devices(rs, r, now);
        rc_heap_update(&rs->due, &r->due, room_due(rs, r));
    }
    set_wake(rs);
    return rs->wake;
}
