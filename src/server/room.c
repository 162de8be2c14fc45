/* room.c — rooms, membership, sequencing and fan-out; see room.h. */
#include "server/room.h"

#include <stdlib.h>
#include <string.h>

#include "proto/json.h"
#include "server/conn.h"
#include "server/server.h"

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
    uint32_t b = (uint32_t)(r->hash & (t->nbuckets - 1));
    r->hnext = t->buckets[b];
    t->buckets[b] = r;
    t->count++;
    return r;
}

static void room_delete(rc_rooms *t, rc_room *room)
{
    rc_room **pp = &t->buckets[room->hash & (t->nbuckets - 1)];
    while (*pp != room) pp = &(*pp)->hnext;
    *pp = room->hnext;
    t->count--;
    free(room->members);
    free(room);
}

void rc_rooms_release(rc_rooms *t)
{
    for (uint32_t i = 0; i < t->nbuckets; i++) {
        rc_room *r = t->buckets[i];
        while (r) {
            rc_room *next = r->hnext;
            free(r->members);
            free(r);
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
    if (!room && !(room = room_create(&srv->rooms, name, len))) return RC_JOIN_NOMEM;
    if (room->nmembers == room->capmembers) {
        uint32_t cap = room->capmembers ? room->capmembers * 2 : 4;
        rc_member *m = realloc(room->members, cap * sizeof(*m));
        if (!m) {
            if (room->nmembers == 0) room_delete(&srv->rooms, room);
            return RC_JOIN_NOMEM;
        }
        room->members = m;
        room->capmembers = cap;
    }
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
    if (room->nmembers == 0) room_delete(&srv->rooms, room);
}

void rc_room_leave_all(rc_server *srv, rc_conn *c)
{
    while (c->nrooms > 0) rc_room_leave(srv, c, c->nrooms - 1);
    free(c->rooms);
    c->rooms = NULL;
    c->caprooms = 0;
}

uint64_t rc_room_publish(rc_server *srv, rc_room *room, rc_encode_fn *encode, void *ctx)
{
    uint64_t id = room->last_msg_id + 1;
    rc_msg *m = encode(ctx, room, id);
    if (!m) return 0;
    room->last_msg_id = id; /* the only place a msg_id is assigned */
    srv->stats.broadcasts++;
    /* Members never change during this loop: rc_conn_send only queues, and a member that is
     * over its budget is marked slow and cut off later, in the flush step. */
    for (uint32_t i = 0; i < room->nmembers; i++) rc_conn_send(room->members[i].conn, m);
    srv->stats.messages_out += room->nmembers;
    rc_msg_unref(m);
    return id;
}
