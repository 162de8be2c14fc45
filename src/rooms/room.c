/* room.c — rooms, membership, sequencing and fan-out; see room.h. */
#include "rooms/room.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "codec/json.h"
#include "transport/conn.h"
#include "app/server.h"

/* FNV-1a, 64-bit: room names are short and this is not exposed to hash flooding in a way
 * that matters more than the per-client room limit already bounds. */
static uint64_t name_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

rc_room *rc_rooms_find(rc_rooms *t, const char *name, size_t len)
{
    if (t->nbuckets == 0) return NULL;
    uint64_t h = name_hash(name, len);
    for (rc_room *r = t->buckets[h & (t->nbuckets - 1)]; r; r = r->hnext)
        if (r->hash == h && r->name_len == len && memcmp(r->name, name, len) == 0) return r;
    return NULL;
}

static int rooms_grow(rc_rooms *t)
{
    uint32_t n = t->nbuckets ? t->nbuckets * 2 : 64;
    rc_room **b = calloc(n, sizeof(*b));
    if (!b) return -1;
    for (uint32_t i = 0; i < t->nbuckets; i++) {
        rc_room *r = t->buckets[i];
        while (r) {
            rc_room *next = r->hnext;
            r->hnext = b[r->hash & (n - 1)];
            b[r->hash & (n - 1)] = r;
            r = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
    return 0;
}

uint64_t rc_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

rc_retention rc_room_retention(const rc_server *srv)
{
    return (rc_retention){.max_count = srv->cfg.history_size,
                          .max_bytes = srv->cfg.history_bytes,
                          .max_age_ms = srv->cfg.history_age / RC_NS_PER_MS};
}

static rc_room *room_create(rc_rooms *t, const char *name, size_t len)
{
    if (t->count >= t->nbuckets && rooms_grow(t) < 0) return NULL;
    char json[rc_json_escape_max(RC_ROOM_NAME_MAX)];
    size_t jl = rc_json_escape(name, len, json);
    rc_room *r = calloc(1, sizeof(*r) + len + 1 + jl);
    if (!r) return NULL;
    r->hash = name_hash(name, len);
    r->name_len = (uint16_t)len;
    memcpy(r->name, name, len);
    r->name[len] = '\0';
    r->json_name = r->name + len + 1;
    memcpy(r->json_name, json, jl);
    r->json_len = (uint16_t)jl;
    rc_epoch_new(r->epoch);
    uint32_t b = (uint32_t)(r->hash & (t->nbuckets - 1));
    r->hnext = t->buckets[b];
    t->buckets[b] = r;
    t->count++;
    return r;
}

static void empty_unlink(rc_rooms *t, rc_room *room)
{
    if (room->eprev) room->eprev->enext = room->enext;
    else t->empty = room->enext;
    if (room->enext) room->enext->eprev = room->eprev;
    room->eprev = room->enext = NULL;
    room->empty_since = 0;
}

static void room_free(rc_room *room)
{
    rc_history_release(&room->hist);
    free(room->idem.cur);
    free(room->idem.prev);
    free(room->members);
    free(room);
}

/* Deletes a room for good: its history, and its durable log's files. */
static void room_delete(rc_server *srv, rc_room *room)
{
    rc_rooms *t = &srv->rooms;
    rc_room **pp = &t->buckets[room->hash & (t->nbuckets - 1)];
    while (*pp != room) pp = &(*pp)->hnext;
    *pp = room->hnext;
    t->count--;
    if (room->empty_since) empty_unlink(t, room);
    if (room->store) rc_store_room_delete(srv->store, room->store);
    room_free(room);
}

/* A room whose last member left stays for its history if there is one to keep. */
static void room_vacated(rc_server *srv, rc_room *room)
{
    if ((srv->cfg.history_size == 0 && !room->store) || srv->cfg.room_ttl == 0) {
        room_delete(srv, room);
        return;
    }
    rc_rooms *t = &srv->rooms;
    room->empty_since = rc_loop_now(srv->loop);
    room->enext = t->empty;
    if (t->empty) t->empty->eprev = room;
    t->empty = room;
}

rc_room *rc_room_restore(rc_server *srv, const char *name, size_t len, const char *epoch)
{
    rc_room *room = rc_rooms_find(&srv->rooms, name, len);
    if (!room && !(room = room_create(&srv->rooms, name, len))) return NULL;
    memcpy(room->epoch, epoch, RC_EPOCH_LEN);
    room->epoch[RC_EPOCH_LEN] = '\0';
    if (room->nmembers == 0 && !room->empty_since) room_vacated(srv, room);
    return room;
}

void rc_room_new_epoch(rc_server *srv, rc_room *room)
{
    rc_epoch_new(room->epoch);
    if (room->store) rc_store_room_epoch(srv->store, room->store, room->epoch);
}

void rc_rooms_sweep(rc_server *srv)
{
    rc_rooms *t = &srv->rooms;
    uint64_t now = rc_loop_now(srv->loop);
    rc_retention r = rc_room_retention(srv);
    uint64_t wall = rc_wall_ms();
    rc_room *next;
    for (rc_room *room = t->empty; room; room = next) {
        next = room->enext;
        if (now - room->empty_since >= srv->cfg.room_ttl) room_delete(srv, room);
    }
    for (uint32_t i = 0; i < t->nbuckets; i++) {
        for (rc_room *room = t->buckets[i]; room; room = room->hnext) {
            if (r.max_age_ms) rc_history_expire(&room->hist, &r, wall);
            if (room->store && rc_store_room_lost(room->store)) {
                rc_warn("room '%s': durable log lost messages; new epoch", room->name);
                rc_room_new_epoch(srv, room);
            }
        }
    }
}

/* ---- idempotency keys --------------------------------------------------------------------- */

static const rc_idem_slot *idem_lookup(const rc_idem_slot *set, uint32_t nslots, uint64_t h)
{
    if (!set) return NULL;
    for (uint32_t i = (uint32_t)h & (nslots - 1);; i = (i + 1) & (nslots - 1)) {
        if (set[i].hash == h) return &set[i];
        if (set[i].hash == 0) return NULL;
    }
}

static uint32_t idem_slots(const rc_server *srv)
{
    uint32_t n = 16;
    while (n < 2 * srv->cfg.idempotency_window) n *= 2;
    return n;
}

uint64_t rc_room_idem_find(const rc_server *srv, const rc_room *room, uint64_t h)
{
    uint32_t n = idem_slots(srv);
    const rc_idem_slot *s = idem_lookup(room->idem.cur, n, h);
    if (!s) s = idem_lookup(room->idem.prev, n, h);
    return s ? s->msg_id : 0;
}

void rc_room_idem_add(rc_server *srv, rc_room *room, uint64_t h, uint64_t msg_id)
{
    if (srv->cfg.idempotency_window == 0) return;
    uint32_t n = idem_slots(srv);
    rc_idem *d = &room->idem;
    if (!d->cur || d->ncur >= srv->cfg.idempotency_window) {
        rc_idem_slot *fresh = calloc(n, sizeof(*fresh));
        if (!fresh) return;
        free(d->prev);
        d->prev = d->cur;
        d->cur = fresh;
        d->ncur = 0;
    }
    uint32_t i = (uint32_t)h & (n - 1);
    while (d->cur[i].hash != 0 && d->cur[i].hash != h) i = (i + 1) & (n - 1);
    if (d->cur[i].hash == 0) d->ncur++;
    d->cur[i] = (rc_idem_slot){.hash = h, .msg_id = msg_id};
}

void rc_rooms_release(rc_rooms *t)
{
    for (uint32_t i = 0; i < t->nbuckets; i++) {
        rc_room *r = t->buckets[i];
        while (r) {
            rc_room *next = r->hnext;
            room_free(r); /* at exit: the durable log keeps the room */
            r = next;
        }
    }
    free(t->buckets);
    memset(t, 0, sizeof(*t));
}

int rc_conn_room_slot(const rc_conn *c, const rc_room *room)
{
    for (uint32_t i = 0; i < c->nrooms; i++)
        if (c->rooms[i].room == room) return (int)i;
    return -1;
}

int rc_room_join(rc_server *srv, rc_conn *c, const char *name, size_t len, rc_room **out)
{
    rc_room *room = rc_rooms_find(&srv->rooms, name, len);
    if (room && rc_conn_room_slot(c, room) >= 0) {
        *out = room;
        return RC_JOIN_ALREADY;
    }
    if (c->nrooms >= srv->cfg.max_rooms_per_client) return RC_JOIN_LIMIT;
    if (c->nrooms == c->caprooms) {
        uint32_t cap = c->caprooms ? c->caprooms * 2 : 2;
        rc_membership *m = realloc(c->rooms, cap * sizeof(*m));
        if (!m) return RC_JOIN_NOMEM;
        c->rooms = m;
        c->caprooms = cap;
    }
    if (!room) {
        if (!(room = room_create(&srv->rooms, name, len))) return RC_JOIN_NOMEM;
        if (srv->store) room->store = rc_store_room_new(srv->store, name, len, room->epoch);
    }
    if (room->nmembers == room->capmembers) {
        uint32_t cap = room->capmembers ? room->capmembers * 2 : 4;
        rc_member *m = realloc(room->members, cap * sizeof(*m));
        if (!m) {
            if (room->nmembers == 0 && !room->empty_since) room_vacated(srv, room);
            return RC_JOIN_NOMEM;
        }
        room->members = m;
        room->capmembers = cap;
    }
    if (room->empty_since) empty_unlink(&srv->rooms, room);
    room->members[room->nmembers] = (rc_member){.conn = c, .mslot = c->nrooms};
    c->rooms[c->nrooms] = (rc_membership){.room = room, .slot = room->nmembers};
    room->nmembers++;
    c->nrooms++;
    *out = room;
    return RC_JOIN_OK;
}

void rc_room_leave(rc_server *srv, rc_conn *c, uint32_t mslot)
{
    rc_membership ms = c->rooms[mslot];
    rc_room *room = ms.room;

    /* Swap-remove from the room's member array and fix the moved member's back-pointer. */
    uint32_t last = --room->nmembers;
    if (ms.slot != last) {
        rc_member moved = room->members[last];
        room->members[ms.slot] = moved;
        moved.conn->rooms[moved.mslot].slot = ms.slot;
    }
    /* Swap-remove from the connection's room array and fix that room's back-pointer. */
    uint32_t clast = --c->nrooms;
    if (mslot != clast) {
        rc_membership moved = c->rooms[clast];
        c->rooms[mslot] = moved;
        moved.room->members[moved.slot].mslot = mslot;
    }
    if (room->nmembers == 0) room_vacated(srv, room);
}

void rc_room_leave_all(rc_server *srv, rc_conn *c)
{
    while (c->nrooms > 0) rc_room_leave(srv, c, c->nrooms - 1);
    free(c->rooms);
    c->rooms = NULL;
    c->caprooms = 0;
}

/* The payload of an encoded server frame (header length from its second byte). */
static size_t frame_header_len(const rc_msg *m)
{
    uint8_t l = (uint8_t)m->data[1] & 0x7f;
    return l == 127 ? 10 : l == 126 ? 4 : 2;
}

uint64_t rc_room_publish(rc_server *srv, rc_room *room, rc_encode_fn *encode, void *ctx)
{
    return rc_room_publish_lsn(srv, room, encode, ctx, NULL);
}

/* The wall clock once per loop wake-up (the loop's own clock changes with each) rather than
 * once per publish: history and log times are in ms, and a busy wake-up is shorter than that
 * (a clock read per publish was ~1% of the server's CPU in the fanout profile). */
static uint64_t wall_ms_now(rc_server *srv)
{
    uint64_t at = rc_loop_now(srv->loop);
    if (srv->wall_at != at || at == 0) {
        srv->wall_ms = rc_wall_ms();
        srv->wall_at = at;
    }
    return srv->wall_ms;
}

uint64_t rc_room_publish_lsn(rc_server *srv, rc_room *room, rc_encode_fn *encode, void *ctx,
                             uint64_t *lsn)
{
    uint64_t id = room->last_msg_id + 1;
    rc_msg *m = encode(ctx, room, id);
    if (!m) return 0;
    room->last_msg_id = id; /* the only place a msg_id is assigned */
    srv->stats.broadcasts++;
    if (srv->cfg.history_size || room->store) {
        rc_retention r = rc_room_retention(srv);
        uint64_t now = wall_ms_now(srv);
        if (rc_history_push(&room->hist, &r, id, now, m) < 0) rc_room_new_epoch(srv, room);
        if (r.max_age_ms) rc_history_expire(&room->hist, &r, now);
        if (room->store) {
            size_t hl = frame_header_len(m);
            uint64_t first = rc_history_first_id(&room->hist);
            uint64_t l = rc_store_append(srv->store, room->store, id, now,
                                         (uint8_t)(m->data[0] & 0x0f), m->data + hl, m->len - hl,
                                         first ? first : id);
            if (lsn) *lsn = l;
        }
    }
    /* Members never change during this loop: rc_conn_send only queues, and a member that is
     * over its budget is marked slow and cut off later, in the flush step. */
    for (uint32_t i = 0; i < room->nmembers; i++) rc_conn_send(room->members[i].conn, m);
    srv->stats.messages_out += room->nmembers;
    rc_msg_unref(m);
    return id;
}
