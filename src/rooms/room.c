/* room.c — rooms, membership, sequencing and fan-out; see room.h. */
#include "rooms/room.h"
#include "rooms/redisrooms.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/json.h"
#include "codec/wsframe.h"
#include "core/log.h"
#include "core/ring.h"
#include "rooms/presence.h"
#include "rooms/redispresence.h"
#include "rooms/state.h"
#include "rooms/wire.h"

#define room_of(n) ((rc_room *)(void *)((char *)(n) - offsetof(rc_room, node)))

const char *const rc_rerr_names[RC_RERR__COUNT] = {
    [RC_RERR_BAD_JSON] = "bad_json",
    [RC_RERR_NOT_OBJECT] = "not_object",
    [RC_RERR_MISSING_FIELD] = "missing_field",
    [RC_RERR_BAD_FIELD] = "bad_field",
    [RC_RERR_NOT_MEMBER] = "not_member",
    [RC_RERR_NO_SUCH_ROOM] = "no_such_room",
    [RC_RERR_FORBIDDEN] = "forbidden",
    [RC_RERR_UNAVAILABLE] = "unavailable",
    [RC_RERR_UNAUTHENTICATED] = "unauthenticated",
    [RC_RERR_ROOM_FULL] = "room_full",
    [RC_RERR_RESERVED_TYPE] = "reserved_type",
    [RC_RERR_TOO_MANY_ROOMS] = "too_many_rooms",
    [RC_RERR_BAD_BINARY] = "bad_binary",
    [RC_RERR_NETSYNC_OFF] = "netsync_off",
    [RC_RERR_DUPLICATE_KEY] = "duplicate_key",
    [RC_RERR_ROOM_LIMIT] = "room_limit",
    [RC_RERR_RATE_LIMITED] = "rate_limited",
    [RC_RERR_STATE_FULL] = "state_full",
    [RC_RERR_BANNED] = "banned",
};

rc_room *rc_rooms_find(const rc_rooms *t, const char *name, size_t len)
{
    uint64_t h = rc_hash(name, len);
    for (rc_hnode *n = rc_htab_chain(&t->table, h); n; n = n->next) {
        rc_room *r = room_of(n);
        if (n->hash == h && r->name_len == len && memcmp(r->name, name, len) == 0) return r;
    }
    return NULL;
}

rc_room *rc_rooms_next(const rc_rooms *t, uint32_t *b, const rc_room *r)
{
    rc_hnode *n = rc_htab_next(&t->table, b, r ? &r->node : NULL);
    return n ? room_of(n) : NULL;
}

uint64_t rc_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static rc_retention retention(const rc_rooms *t)
{
    return (rc_retention){.max_count = t->cfg.history_size,
                          .max_bytes = t->cfg.history_bytes,
                          .max_age_ms = t->cfg.history_age / RC_NS_PER_MS};
}

/* The wall clock once per loop wake-up (the loop's own clock changes with each) rather than
 * once per publish: history and log times are in ms, and a busy wake-up is shorter than that
 * (a clock read per publish was ~1% of the server's CPU in the fanout profile). */
static uint64_t wall_ms_now(rc_rooms *t)
{
    uint64_t at = rc_loop_now(t->loop);
    if (t->wall_at != at || at == 0) {
        t->wall_ms = rc_wall_ms();
        t->wall_at = at;
    }
    return t->wall_ms;
}

static rc_room *room_create(rc_rooms *t, const char *name, size_t len)
{
    char json[rc_json_escape_max(RC_ROOM_NAME_MAX)];
    size_t jl = rc_json_escape(name, len, json);
    rc_room *r = calloc(1, sizeof(*r) + len + 1 + jl);
    if (!r) return NULL;
    r->name_len = (uint16_t)len;
    memcpy(r->name, name, len);
    r->name[len] = '\0';
    r->json_name = r->name + len + 1;
    memcpy(r->json_name, json, jl);
    r->json_len = (uint16_t)jl;
    rc_heap_node_init(&r->aged);
    rc_epoch_new(r->epoch);
    if (rc_htab_insert(&t->table, &r->node, rc_hash(name, len)) < 0) {
        free(r);
        return NULL;
    }
    return r;
}

static void empty_unlink(rc_rooms *t, rc_room *room)
{
    if (room->eprev) room->eprev->enext = room->enext;
    else t->empty = room->enext;
    if (room->enext) room->enext->eprev = room->eprev;
    else t->empty_tail = room->eprev;
    room->eprev = room->enext = NULL;
    room->empty_since = 0;
}

static void held_drop(rc_rooms *t, rc_room *room);

static void room_free(rc_rooms *t, rc_room *room)
{
    if (room->cr) rc_redisrooms_room_gone(t, room);
    held_drop(t, room);
    t->hist_bytes -= room->hist.bytes;
    if (rc_heap_contains(&room->aged)) rc_heap_remove(&t->aged, &room->aged);
    rc_presence_room_gone(t, room);
    rc_state_free(t, room);
    rc_history_release(&room->hist);
    free(room->idem.cur);
    free(room->idem.prev);
    free(room->members);
    free(room);
}

static void acks_of_room_dropped(rc_rooms *t, const rc_room *room);
static void dwaits_settle(rc_rooms *t, const rc_room *gone);

/* Deletes a room for good: its history, and its durable log's files. */
static void room_delete(rc_rooms *t, rc_room *room)
{
    /* Acknowledgements still waiting on its log are dropped with it: its records go too. */
    if (room->store) acks_of_room_dropped(t, room);
    rc_htab_remove(&t->table, &room->node);
    if (room->empty_since) empty_unlink(t, room);
    if (room->store) rc_store_room_delete(t->store, room->store);
    room_free(t, room);
}

/* A room whose last member left stays for its history if there is one to keep. */
static void room_vacated(rc_rooms *t, rc_room *room)
{
    /* --redis: joins waiting for the room to be in step settle it once they ran */
    if (room->cr && rc_redisrooms_joins_waiting(room)) return;
    if ((t->cfg.history_size == 0 && !room->store) || t->cfg.room_ttl == 0) {
        room_delete(t, room);
        return;
    }
    room->empty_since = rc_loop_now(t->loop);
    room->enext = t->empty;
    if (t->empty) t->empty->eprev = room;
    else t->empty_tail = room;
    t->empty = room;
}

void rc_room_new_epoch(rc_rooms *t, rc_room *room)
{
    rc_epoch_new(room->epoch);
    if (room->store) rc_store_room_epoch(t->store, room->store, room->epoch);
}

/* ---- the memory budget of the histories -------------------------------------------------
 *
 * Every change to a room's history goes through kept(): it keeps rc_rooms.hist_bytes the sum of
 * every history's bytes and puts a room that starts keeping messages into `aged`. Past
 * --history-memory, evict() drops kept messages until the histories are back under 90 % of it
 * (so that it runs seldom): first the whole history of the rooms without members, the one
 * empty the longest first — nobody is reading those — then the oldest messages of any room.
 * Dropping from the front keeps a history a contiguous run, so a client that then rejoins with
 * an old `since` is told recovered:false, as for any history it outlived. */

static uint64_t head_time(const rc_room *room)
{
    return rc_history_at(&room->hist, 0)->time_ms;
}

/* kept accounts for a change of room's history that made it `before` bytes before. */
static void kept(rc_rooms *t, rc_room *room, size_t before)
{
    t->hist_bytes = t->hist_bytes - before + room->hist.bytes;
    /* Out of memory for the heap: the room is just not evicted by age. */
    if (room->hist.count && !rc_heap_contains(&room->aged))
        rc_heap_push(&t->aged, &room->aged, head_time(room));
}

static void evict_first(rc_rooms *t, rc_room *room)
{
    size_t before = room->hist.bytes;
    rc_history_drop_first(&room->hist);
    t->stats.evicted++;
    t->stats.evicted_bytes += before - room->hist.bytes;
    t->hist_bytes -= before - room->hist.bytes;
}

static void evict(rc_rooms *t)
{
    size_t target = t->cfg.history_memory - t->cfg.history_memory / 10;
    for (rc_room *room = t->empty_tail; room && t->hist_bytes > target; room = room->eprev)
        while (room->hist.count && t->hist_bytes > target) evict_first(t, room);
    while (t->hist_bytes > target) {
        rc_heap_node *top = rc_heap_top(&t->aged);
        if (!top) break;
        rc_room *room = (rc_room *)(void *)((char *)top - offsetof(rc_room, aged));
        if (room->hist.count == 0) {
            rc_heap_remove(&t->aged, top);
        } else if (top->key < head_time(room)) {
            rc_heap_update(&t->aged, top, head_time(room)); /* the key was a lower bound */
        } else {
            evict_first(t, room);
            if (room->hist.count) rc_heap_update(&t->aged, top, head_time(room));
            else rc_heap_remove(&t->aged, top);
        }
    }
}

static void over_budget(rc_rooms *t)
{
    if (t->cfg.history_memory && t->hist_bytes > t->cfg.history_memory) evict(t);
}

static void sweep(rc_rooms *t)
{
    uint64_t now = rc_loop_now(t->loop);
    rc_retention r = retention(t);
    uint64_t wall = rc_wall_ms();
    rc_room *next;
    for (rc_room *room = t->empty; room; room = next) {
        next = room->enext;
        if (now - room->empty_since >= t->cfg.room_ttl) room_delete(t, room);
    }
    uint32_t b = 0;
    for (rc_room *room = rc_rooms_next(t, &b, NULL); room; room = rc_rooms_next(t, &b, room)) {
        if (r.max_age_ms) {
            size_t before = room->hist.bytes;
            rc_history_expire(&room->hist, &r, wall);
            kept(t, room, before);
        }
        if (room->state) rc_state_snapshot_maybe(t, room, false);
        if (room->store && rc_store_room_lost(room->store)) {
            rc_warn("room '%s': durable log lost messages; new epoch", room->name);
            rc_room_new_epoch(t, room);
        }
    }
}

static void on_sweep_timer(rc_loop *loop, rc_timer *tm)
{
    rc_rooms *t = (rc_rooms *)(void *)((char *)tm - offsetof(rc_rooms, sweep_timer));
    sweep(t);
    rc_presence_flush(t);
    rc_sessions_sweep(&t->sessions, rc_loop_now(loop));
    rc_timer_start(loop, tm, rc_loop_now(loop) + RC_NS_PER_SEC);
}

void rc_rooms_init(rc_rooms *t, rc_loop *loop, const rc_rooms_config *cfg)
{
    *t = (rc_rooms){.cfg = *cfg, .loop = loop};
    rc_perm_rules_init(&t->def_rules);
    rc_rooms_set_perm(t, NULL);
    rc_sessions_init(&t->sessions, cfg->session_ttl, cfg->max_idle_sessions);
    rc_timer_init(&t->sweep_timer, on_sweep_timer);
    rc_timer_start(loop, &t->sweep_timer, rc_loop_now(loop) + RC_NS_PER_SEC);
}

void rc_rooms_set_perm(rc_rooms *t, const rc_perm_rules *rules)
{
    t->perm = rules ? rules : &t->def_rules;
    /* Nothing to check when every room follows rules that let everyone do everything: the
     * joins and publishes of a server without rules pay one test. */
    const rc_perm_ns *d = &t->perm->def;
    t->perm_open = t->perm->nns == 0 && d->join == RC_PERM_ANYONE &&
                   d->publish == RC_PERM_ANYONE && d->history && d->recovery && d->presence &&
                   d->max_members == 0;
}

void rc_rooms_release(rc_rooms *t)
{
    rc_timer_stop(t->loop, &t->sweep_timer);
    uint32_t sb = 0;
    for (rc_room *r = rc_rooms_next(t, &sb, NULL); r; r = rc_rooms_next(t, &sb, r))
        if (r->state) rc_state_snapshot_maybe(t, r, true);
    rc_store_close(t->store); /* flushes and syncs the log, marks it clean */
    t->store = NULL;
    uint32_t b = 0;
    rc_room *r = rc_rooms_next(t, &b, NULL);
    while (r) {
        rc_room *next = rc_rooms_next(t, &b, r); /* before r is freed */
        room_free(t, r); /* at exit: the durable log keeps the room */
        r = next;
    }
    rc_htab_release(&t->table);
    rc_heap_release(&t->aged);
    rc_sessions_release(&t->sessions);
    t->empty = t->empty_tail = NULL;
}

void rc_rooms_kick(rc_rooms *t)
{
    if (t->store) rc_store_kick(t->store);
}

/* ---- restoring rooms from the durable log ------------------------------------------------ */

static void *restore_room(void *arg, const char *name, size_t len, const char *epoch)
{
    rc_rooms *t = arg;
    rc_room *room = rc_rooms_find(t, name, len);
    if (!room && !(room = room_create(t, name, len))) return NULL;
    memcpy(room->epoch, epoch, RC_EPOCH_LEN);
    room->epoch[RC_EPOCH_LEN] = '\0';
    if (room->nmembers == 0 && !room->empty_since) room_vacated(t, room);
    return room;
}

static void restore_state(void *arg, void *vroom, const char *blob, size_t len)
{
    rc_state_load(arg, vroom, blob, len);
}

static void restore_record(void *arg, void *vroom, uint64_t msg_id, uint64_t time_ms,
                           uint8_t opcode, uint64_t key, const char *payload, size_t len)
{
    rc_rooms *t = arg;
    rc_room *room = vroom;
    /* The window of idempotency keys outlives a restart: a resend is still recognised. */
    if (key) rc_room_idem_add(t, room, key, msg_id);
    rc_msg *m = rc_ws_msg_new(opcode, payload, len);
    if (!m) return;
    rc_state_replay(t, room, msg_id, time_ms, opcode, payload, len, m);
    rc_retention r = retention(t);
    size_t before = room->hist.bytes;
    rc_history_push(&room->hist, &r, msg_id, time_ms, m);
    kept(t, room, before);
    rc_msg_unref(m);
    room->last_msg_id = room->seq_msg_id = msg_id;
}

static const char *restore_done(void *arg, void *vroom, rc_store_room *sr, bool lost)
{
    rc_rooms *t = arg;
    rc_room *room = vroom;
    room->store = sr;
    if (lost) {
        /* Messages may be missing at the end of the log (crash, repaired tail): ids go on
         * after the last one kept, under a new epoch, so no client mistakes the stream for
         * the one it saw. */
        t->stats.repaired++;
        rc_epoch_new(room->epoch);
    }
    if (t->cfg.history_age) {
        rc_retention r = retention(t);
        size_t before = room->hist.bytes;
        rc_history_expire(&room->hist, &r, rc_wall_ms());
        kept(t, room, before);
    }
    over_budget(t);
    return room->epoch;
}

static void on_durable(void *arg)
{
    rc_rooms_durable(arg);
}

int rc_rooms_open_store(rc_rooms *t, const char *dir, int fsync_mode)
{
    rc_store_loader loader = {.room = restore_room, .state = restore_state,
                              .record = restore_record, .done = restore_done, .arg = t};
    size_t seg = t->cfg.history_bytes / 4;
    if (seg > (64u << 20)) seg = 64u << 20;
    if (seg < (64u << 10)) seg = 64u << 10;
    t->store = rc_store_open(t->loop, dir, (enum rc_fsync)fsync_mode, seg, &loader, on_durable, t);
    t->hold = t->store && fsync_mode == RC_FSYNC_ALWAYS;
    return t->store ? 0 : -1;
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

static uint32_t idem_slots(const rc_rooms *t)
{
    uint32_t n = 16;
    while (n < 2 * t->cfg.idempotency_window) n *= 2;
    return n;
}

uint64_t rc_room_idem_find(const rc_rooms *t, const rc_room *room, uint64_t h)
{
    uint32_t n = idem_slots(t);
    const rc_idem_slot *s = idem_lookup(room->idem.cur, n, h);
    if (!s) s = idem_lookup(room->idem.prev, n, h);
    return s ? s->msg_id : 0;
}

void rc_room_idem_add(rc_rooms *t, rc_room *room, uint64_t h, uint64_t msg_id)
{
    if (t->cfg.idempotency_window == 0) return;
    uint32_t n = idem_slots(t);
    rc_idem *d = &room->idem;
    if (!d->cur || d->ncur >= t->cfg.idempotency_window) {
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

/* ---- membership --------------------------------------------------------------------------- */

int rc_endpoint_room_slot(const rc_endpoint *ep, const rc_room *room)
{
    for (uint32_t i = 0; i < ep->nrooms; i++)
        if (ep->rooms[i].room == room) return (int)i;
    return -1;
}

/* set_flags gives member mb of room the flags f, keeping the room's counts. */
static void set_flags(rc_room *room, rc_member *mb, uint8_t f)
{
    room->npresence += !!(f & RC_MEMBER_PRESENCE) - !!(mb->flags & RC_MEMBER_PRESENCE);
    room->nconflate += !!(f & RC_MEMBER_CONFLATE) - !!(mb->flags & RC_MEMBER_CONFLATE);
    mb->flags = f;
}

int rc_room_join(rc_rooms *t, rc_endpoint *ep, const char *name, size_t len, uint8_t flags,
                 rc_room **out)
{
    rc_room *room = rc_rooms_find(t, name, len);
    int slot = room ? rc_endpoint_room_slot(ep, room) : -1;
    if (slot >= 0) {
        set_flags(room, rc_room_member(room, ep, slot), flags);
        *out = room;
        return RC_JOIN_ALREADY;
    }
    if (ep->nrooms >= t->cfg.max_rooms_per_client) return RC_JOIN_LIMIT;
    if (ep->nrooms == ep->caprooms) {
        uint32_t cap = ep->caprooms ? ep->caprooms * 2 : 2;
        rc_membership *m = realloc(ep->rooms, cap * sizeof(*m));
        if (!m) return RC_JOIN_NOMEM;
        ep->rooms = m;
        ep->caprooms = cap;
    }
    if (!room) {
        /* Rooms outlive their members (--room-ttl): what one client may create is bounded. */
        if (t->cfg.max_rooms && rc_rooms_count(t) >= t->cfg.max_rooms) return RC_JOIN_ROOM_LIMIT;
        /* A rate with a burst (the generic cell rate algorithm): create_rate rooms a second,
         * after a burst of max_rooms_per_client plus one second's worth, so a client joining
         * all its rooms at start-up, or moving between rooms, is never held back. */
        uint64_t now = rc_loop_now(t->loop), tat = 0;
        if (t->cfg.create_rate) {
            uint64_t step = RC_NS_PER_SEC / t->cfg.create_rate;
            uint64_t burst = (uint64_t)t->cfg.max_rooms_per_client + t->cfg.create_rate;
            tat = (ep->create_tat > now ? ep->create_tat : now) + step;
            if (tat - now > step * burst) return RC_JOIN_RATE;
        }
        if (!(room = room_create(t, name, len))) return RC_JOIN_NOMEM;
        ep->create_tat = tat;
        if (t->store) room->store = rc_store_room_new(t->store, name, len, room->epoch);
    }
    if (room->nmembers == room->capmembers) {
        uint32_t cap = room->capmembers ? room->capmembers * 2 : 4;
        rc_member *m = realloc(room->members, cap * sizeof(*m));
        if (!m) {
            if (room->nmembers == 0 && !room->empty_since) room_vacated(t, room);
            return RC_JOIN_NOMEM;
        }
        room->members = m;
        room->capmembers = cap;
    }
    if (room->empty_since) empty_unlink(t, room);
    room->members[room->nmembers] = (rc_member){.ep = ep, .mslot = ep->nrooms, .wire = ep->wire};
    set_flags(room, &room->members[room->nmembers], flags);
    ep->rooms[ep->nrooms] = (rc_membership){.room = room, .slot = room->nmembers};
    room->nmembers++;
    ep->nrooms++;
    rc_presence_join(t, room, ep);
    if (t->cluster) rc_redispresence_local(t, room, ep, true, 0); /* other nodes hear of it */
    *out = room;
    return RC_JOIN_OK;
}

void rc_room_leave(rc_rooms *t, rc_endpoint *ep, uint32_t mslot, int reason)
{
    rc_membership ms = ep->rooms[mslot];
    rc_room *room = ms.room;
    set_flags(room, &room->members[ms.slot], 0);

    /* Swap-remove from the room's member array and fix the moved member's back-pointer. */
    uint32_t last = --room->nmembers;
    if (ms.slot != last) {
        rc_member moved = room->members[last];
        room->members[ms.slot] = moved;
        moved.ep->rooms[moved.mslot].slot = ms.slot;
    }
    /* Swap-remove from the endpoint's room array and fix that room's back-pointer. */
    uint32_t elast = --ep->nrooms;
    if (mslot != elast) {
        rc_membership moved = ep->rooms[elast];
        ep->rooms[mslot] = moved;
        moved.room->members[moved.slot].mslot = mslot;
    }
    rc_presence_leave(t, room, ep, reason);
    if (t->cluster) rc_redispresence_local(t, room, ep, false, reason);
    if (room->nmembers == 0) room_vacated(t, room);
}

static void acks_release(rc_rooms *t, rc_endpoint *ep)
{
    for (uint32_t i = 0; i < ep->nacks; i++) rc_msg_unref(ep->acks[i].msg);
    free(ep->acks);
    ep->acks = NULL;
    ep->nacks = ep->capacks = 0;
    if (ep->ack_prev) ep->ack_prev->ack_next = ep->ack_next;
    else if (t->ack_eps == ep) t->ack_eps = ep->ack_next;
    if (ep->ack_next) ep->ack_next->ack_prev = ep->ack_prev;
    ep->ack_prev = ep->ack_next = NULL;
}

void rc_endpoint_gone(rc_rooms *t, rc_endpoint *ep)
{
    if (ep->cwaits) rc_redisrooms_endpoint_gone(t, ep);
    if (!ep->open) return;
    ep->open = false;
    while (ep->nrooms > 0) rc_room_leave(t, ep, ep->nrooms - 1, ep->end_reason);
    rc_sessions_drop(&t->sessions, ep, rc_loop_now(t->loop));
    if (ep->ident) rc_ident_forget(t, ep);
    free(ep->rooms);
    ep->rooms = NULL;
    ep->caprooms = 0;
    if (ep->acks || ep->ack_prev || t->ack_eps == ep) acks_release(t, ep);
}

void rc_endpoint_end(rc_rooms *t, rc_endpoint *ep, int reason, uint16_t code, const char *text)
{
    /* Out of the rooms now, whenever its owner gets to close it: a kicked or replaced client
     * must not see one more message, and presence says why it went. */
    ep->end_reason = (uint8_t)reason;
    while (ep->nrooms > 0) rc_room_leave(t, ep, ep->nrooms - 1, reason);
    ep->ops->close(ep, code, text);
}

/* ---- acknowledgements after the durable log ----------------------------------------------- */

bool rc_room_durable(const rc_rooms *t, const rc_room *room, uint64_t lsn)
{
    return !lsn || !room->store || rc_store_room_durable(room->store) >= lsn;
}

void rc_endpoint_defer(rc_rooms *t, rc_endpoint *ep, rc_room *room, uint64_t lsn, rc_msg *m)
{
    if (ep->nacks == ep->capacks) {
        uint32_t cap = ep->capacks ? ep->capacks * 2 : 4;
        rc_pending_ack *a = realloc(ep->acks, cap * sizeof(*a));
        if (!a) return; /* the ack is lost; the client will time out and resend (idempotent) */
        ep->acks = a;
        ep->capacks = cap;
    }
    if (ep->nacks == 0) {
        ep->ack_prev = NULL;
        ep->ack_next = t->ack_eps;
        if (t->ack_eps) t->ack_eps->ack_prev = ep;
        t->ack_eps = ep;
    }
    ep->acks[ep->nacks++] = (rc_pending_ack){.room = room, .lsn = lsn, .msg = rc_msg_ref(m)};
}

typedef bool ack_test(const rc_rooms *t, const rc_pending_ack *a, const void *arg);

/* settle sends (send) or drops the pending acks of ep that pass done(), keeping the others in
 * order; an endpoint left owing nothing leaves the list. */
static void settle(rc_rooms *t, rc_endpoint *ep, ack_test *done, const void *arg, bool send)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < ep->nacks; i++) {
        rc_pending_ack *a = &ep->acks[i];
        if (!done(t, a, arg)) {
            ep->acks[k++] = *a;
            continue;
        }
        if (send) ep->deliver(ep, a->msg);
        rc_msg_unref(a->msg);
    }
    ep->nacks = k;
    if (k == 0) acks_release(t, ep);
}

static bool is_durable(const rc_rooms *t, const rc_pending_ack *a, const void *arg)
{
    return rc_room_durable(t, a->room, a->lsn);
}

static bool of_room(const rc_rooms *t, const rc_pending_ack *a, const void *room)
{
    return a->room == room;
}

static void held_release(rc_rooms *t, rc_room *room);

void rc_rooms_durable(rc_rooms *t)
{
    /* Messages first: an acknowledgement follows the message it acknowledges. */
    rc_room *rnext;
    for (rc_room *room = t->holding; room; room = rnext) {
        rnext = room->hnext;
        held_release(t, room);
    }
    rc_endpoint *next;
    for (rc_endpoint *ep = t->ack_eps; ep; ep = next) {
        next = ep->ack_next;
        settle(t, ep, is_durable, NULL, true);
    }
    if (t->dwaits) dwaits_settle(t, NULL);
}

static void acks_of_room_dropped(rc_rooms *t, const rc_room *room)
{
    rc_endpoint *next;
    for (rc_endpoint *ep = t->ack_eps; ep; ep = next) {
        next = ep->ack_next;
        settle(t, ep, of_room, room, false);
    }
    if (t->dwaits) dwaits_settle(t, room);
}

/* ---- other answers waiting for the durable log (rc_room_when_durable) ---------------------- */

static void dwait_unlink(rc_durable_wait *w)
{
    if (!w->pprev) return;
    *w->pprev = w->next;
    if (w->next) w->next->pprev = w->pprev;
    w->next = NULL;
    w->pprev = NULL;
}

static void dwait_push(rc_durable_wait **head, rc_durable_wait *w)
{
    w->next = *head;
    if (w->next) w->next->pprev = &w->next;
    w->pprev = head;
    *head = w;
}

void rc_room_when_durable(rc_rooms *t, rc_durable_wait *w, rc_room *room, uint64_t lsn)
{
    w->room = room;
    w->lsn = lsn;
    dwait_push(&t->dwaits, w);
}

void rc_room_durable_cancel(rc_durable_wait *w)
{
    dwait_unlink(w);
}

/* Answers the waits that are due: durable ones (gone NULL), or those of room gone (deleted).
 * They move to a list of their own first, so that an answer may arm or cancel any wait. */
static void dwaits_settle(rc_rooms *t, const rc_room *gone)
{
    rc_durable_wait *due = NULL, *next;
    for (rc_durable_wait *w = t->dwaits; w; w = next) {
        next = w->next;
        if (gone ? w->room == gone : rc_room_durable(t, w->room, w->lsn)) {
            dwait_unlink(w);
            dwait_push(&due, w);
        }
    }
    rc_durable_wait *w;
    while ((w = due)) {
        dwait_unlink(w);
        w->fn(w, !gone);
    }
}

/* ---- publishing --------------------------------------------------------------------------- */

/* ---- conflation ----------------------------------------------------------------------------
 *
 * A keyed message carries its conflation key (a hash of the room and the state key) and msg_id
 * in its rc_msg, and so do its other encodings. Queuing one to a member that joined with
 * "conflate", the member's unsent earlier message with that key (there is at most one) is
 * dropped and a notice takes its place: {"type":"conflated","room":R,"msg_ids":[...]} naming
 * what the member will not see, exactly where it would have seen it, so its gap check runs in
 * order. A later drop adds its id to the last notice still queued before it (up to
 * NOTICE_IDS), so a stalled member's queue shrinks instead of filling with notices. */

#define NOTICE_MARK 1
#define NOTICE_IDS 64

static uint64_t room_tag(const rc_room *room)
{
    uint64_t h = rc_hash_mix((uint64_t)(uintptr_t)room);
    return h ? h : 1;
}

static uint64_t conflation_key(const rc_room *room, const struct rc_statekey *sk)
{
    uint64_t h = rc_hash_mix(rc_hash_more(room_tag(room), sk->key, sk->len));
    return h ? h : 1;
}

/* A notice for wire naming the ids of old (a notice, or NULL) and then id. */
static rc_msg *notice(const rc_room *room, uint8_t wire, const rc_msg *old, uint64_t id)
{
    char out[128 + rc_json_escape_max(RC_ROOM_NAME_MAX) + NOTICE_IDS * 21];
    int n = snprintf(out, sizeof(out), "{\"type\":\"conflated\",\"room\":%.*s,\"msg_ids\":[",
                     (int)room->json_len, room->json_name);
    uint32_t count = 1;
    if (old) {
        size_t ol;
        const char *ob = rc_msg_bytes(old, &ol);
        const char *ids = memmem(ob, ol, "\"msg_ids\":[", 11);
        const char *end = ids ? memchr(ids + 11, ']', ol - (size_t)(ids + 11 - ob)) : NULL;
        if (!end) return NULL;
        memcpy(out + n, ids + 11, (size_t)(end - ids - 11));
        n += (int)(end - ids - 11);
        out[n++] = ',';
        count += (uint32_t)rc_msg_base(old)->id;
    }
    n += snprintf(out + n, sizeof(out) - (size_t)n, "%llu]}", (unsigned long long)id);
    rc_msg *m = rc_wire_text(wire, out, (size_t)n);
    if (m) {
        m->mark = NOTICE_MARK;
        m->ckey = room_tag(room);
        m->id = count;
    }
    return m;
}

static void conflate(rc_rooms *t, const rc_room *room, rc_endpoint *ep, uint64_t ckey)
{
    if (!ep->ops->find) return;
    long i = ep->ops->find(ep, ckey, 0);
    if (i < 0) return;
    uint64_t old_id = rc_msg_base(ep->ops->at(ep, i))->id;
    long j = ep->ops->find(ep, room_tag(room), NOTICE_MARK);
    if (j >= 0 && j < i && rc_msg_base(ep->ops->at(ep, j))->id < NOTICE_IDS) {
        rc_msg *n = notice(room, ep->wire, ep->ops->at(ep, j), old_id);
        if (n) {
            ep->ops->set(ep, j, n);
            ep->ops->set(ep, i, NULL);
            rc_msg_unref(n);
            t->stats.conflated++;
            return;
        }
    }
    rc_msg *n = notice(room, ep->wire, NULL, old_id);
    if (!n) return; /* out of memory: nothing is dropped */
    ep->ops->set(ep, i, n);
    rc_msg_unref(n);
    t->stats.conflated++;
}

/* The fan-out of a keyed message to a room with conflating members. */
static uint32_t fan_out_conflating(rc_rooms *t, const rc_room *room, rc_msg **enc, rc_msg *m)
{
    const rc_member *mb = room->members;
    uint32_t n = room->nmembers, skipped = 0;
    for (uint32_t i = 0; i < n; i++) {
        rc_msg *f = enc[mb[i].wire];
        if (!f) f = enc[mb[i].wire] = rc_wire_of(m, mb[i].wire);
        if (f == RC_WIRE_SKIP) {
            skipped++;
            continue;
        }
        if (!f) {
            mb[i].ep->ops->lost(mb[i].ep);
            continue;
        }
        if (mb[i].flags & RC_MEMBER_CONFLATE) conflate(t, room, mb[i].ep, m->ckey);
        mb[i].ep->deliver(mb[i].ep, f);
    }
    return skipped;
}

/* ---- publishing --------------------------------------------------------------------------- */

/* Delivers message id of room, sequenced at now (wall ms): fan-out to the members, the state
 * (sk, NULL: none) and the history. From here on the message is visible. */
static void deliver(rc_rooms *t, rc_room *room, rc_msg *m, uint64_t id, uint64_t now,
                    const struct rc_statekey *sk)
{
    room->last_msg_id = id;
    /* Fan-out. Each wire format present is encoded once, on its first member; a room of
     * WebSocket members never leaves the first slot. Members never change during this loop:
     * deliver only queues (endpoint.h). */
    rc_msg *enc[RC_WIRE__COUNT] = {[RC_WIRE_WS] = m};
    const rc_member *mb = room->members;
    uint32_t n = room->nmembers, skipped = 0;
    if (sk && room->nconflate) n = 0, skipped = fan_out_conflating(t, room, enc, m);
    for (uint32_t i = 0; i < n; i++) {
        rc_msg *f = enc[mb[i].wire];
        if (!f) f = enc[mb[i].wire] = rc_wire_of(m, mb[i].wire);
        if (f == RC_WIRE_SKIP) {
            skipped++;
            continue;
        }
        if (!f) mb[i].ep->ops->lost(mb[i].ep);
        else mb[i].ep->deliver(mb[i].ep, f);
    }
    t->stats.deliveries += room->nmembers - skipped;
    if (m->alt) rc_wire_fanned_out(m);

    if (sk) rc_state_apply(t, room, sk, id, now, m);
    if (t->cfg.history_size || room->store) {
        rc_retention r = retention(t);
        size_t before = room->hist.bytes;
        if (rc_history_push(&room->hist, &r, id, now, m) < 0) rc_room_new_epoch(t, room);
        if (r.max_age_ms) rc_history_expire(&room->hist, &r, now);
        kept(t, room, before);
        over_budget(t);
    }
}

/* Appends message id of room to its durable log; returns the log batch holding it. */
static uint64_t log_append(rc_rooms *t, rc_room *room, const rc_msg *m, uint64_t id,
                           uint64_t now, uint64_t key)
{
    size_t hl = rc_ws_server_header_len(m->data);
    uint64_t first = rc_history_first_id(&room->hist);
    if (!first) first = id;
    /* the log also keeps what the state needs since its last snapshot (state.h) */
    if (room->state) {
        uint64_t need = rc_state_log_needs(room);
        if (need < first) first = need;
    }
    return rc_store_append(t->store, room->store, id, now, (uint8_t)(m->data[0] & 0x0f),
                           m->data + hl, m->len - hl, first, key);
}

/* ---- held messages (--fsync always) -----------------------------------------------------------
 *
 * A message is sequenced (its msg_id taken, its record appended to the log's batch) at once,
 * and delivered only once that batch is durable: the writer makes each batch durable with one
 * fdatasync of its journal for all rooms (store.h), and rc_rooms_durable releases every room's
 * held messages it covers, oldest first. A room's held messages are released in msg_id order,
 * and later messages wait behind earlier ones, so the total order is kept; a member that joins
 * meanwhile was told last_msg_id (the last delivered) and gets the held ones at their release,
 * like every member. Room space is reserved before the msg_id is taken: a publish that cannot
 * be held takes no id (out of memory, as when encoding fails). The state takes a held keyed
 * message at its release too (a state join must not show it earlier), so the state's bounds,
 * checked before sequencing, do not count the keyed messages held at that moment: a room's
 * state may pass them by at most what one batch holds. */

static bool held_reserve(rc_room *room)
{
    if (room->held_count < room->held_cap) return true;
    uint32_t cap = room->held_cap ? room->held_cap * 2 : 16;
    rc_held_msg *v = rc_ring_regrow(room->held, room->held_cap, room->held_head,
                                    room->held_count, cap, sizeof(*v));
    if (!v) return false;
    room->held = v;
    room->held_head = 0;
    room->held_cap = cap;
    return true;
}

static void holding_unlink(rc_rooms *t, rc_room *room)
{
    if (room->hprev) room->hprev->hnext = room->hnext;
    else t->holding = room->hnext;
    if (room->hnext) room->hnext->hprev = room->hprev;
    room->hprev = room->hnext = NULL;
}

static void held_push(rc_rooms *t, rc_room *room, rc_msg *m, uint64_t id, uint64_t lsn,
                      uint64_t now, struct rc_statekey *sk)
{
    if (room->held_count == 0) {
        room->hprev = NULL;
        room->hnext = t->holding;
        if (t->holding) t->holding->hprev = room;
        t->holding = room;
    }
    t->stats.held++;
    room->held[(room->held_head + room->held_count++) & (room->held_cap - 1)] =
        (rc_held_msg){.frame = rc_msg_ref(m), .msg_id = id, .lsn = lsn, .time_ms = now, .sk = sk};
}

static void held_release(rc_rooms *t, rc_room *room)
{
    uint64_t durable = rc_store_room_durable(room->store);
    while (room->held_count) {
        rc_held_msg *h = &room->held[room->held_head];
        if (h->lsn > durable) break;
        rc_held_msg e = *h;
        room->held_head = (room->held_head + 1) & (room->held_cap - 1);
        room->held_count--;
        t->stats.held--;
        deliver(t, room, e.frame, e.msg_id, e.time_ms, e.sk);
        rc_msg_unref(e.frame);
        free(e.sk);
    }
    if (room->held_count == 0) holding_unlink(t, room);
}

/* The room goes (deleted, or at exit): its held messages with it, undelivered. */
static void held_drop(rc_rooms *t, rc_room *room)
{
    for (uint32_t i = 0; i < room->held_count; i++) {
        rc_held_msg *h = &room->held[(room->held_head + i) & (room->held_cap - 1)];
        rc_msg_unref(h->frame);
        free(h->sk);
    }
    if (room->held_count) holding_unlink(t, room);
    t->stats.held -= room->held_count;
    room->held_count = 0;
    free(room->held);
    room->held = NULL;
    room->held_cap = 0;
}

uint64_t rc_room_held_lsn(const rc_room *room, uint64_t msg_id)
{
    if (msg_id <= room->last_msg_id || room->held_count == 0) return 0;
    uint64_t first = room->held[room->held_head].msg_id;
    if (msg_id < first || msg_id - first >= room->held_count) return 0;
    return room->held[(room->held_head + (uint32_t)(msg_id - first)) & (room->held_cap - 1)].lsn;
}

uint64_t rc_room_publish(rc_rooms *t, rc_room *room, rc_encode_fn *encode, void *ctx,
                         uint64_t key, const struct rc_statekey *sk, uint64_t *lsn)
{
    bool hold = t->hold && room->store;
    struct rc_statekey *skc = NULL;
    if (hold) {
        if (!held_reserve(room)) return 0;
        if (sk) {
            if (!(skc = malloc(sizeof(*skc)))) return 0;
            *skc = *sk;
        }
    }
    uint64_t id = room->seq_msg_id + 1;
    rc_msg *m = encode(ctx, room, id);
    if (!m) {
        free(skc);
        return 0;
    }
    if (sk) {
        m->ckey = conflation_key(room, sk);
        m->id = id;
    }
    room->seq_msg_id = id; /* the only place a msg_id is assigned */
    t->stats.broadcasts++;
    /* Receipt time for the delivery-latency histogram: the loop clock of the wake-up that
     * sequenced it (other encodings copy it), so a held message's wait for the disk counts. */
    m->t_recv = rc_loop_now(t->loop);
    uint64_t now = sk || t->cfg.history_size || room->store ? wall_ms_now(t) : 0;
    if (lsn) *lsn = 0;
    if (hold) {
        uint64_t l = log_append(t, room, m, id, now, key);
        if (lsn) *lsn = l;
        held_push(t, room, m, id, l, now, skc);
    } else {
        deliver(t, room, m, id, now, sk);
        if (room->store) {
            uint64_t l = log_append(t, room, m, id, now, key);
            if (lsn) *lsn = l;
        }
    }
    rc_msg_unref(m);
    return id;
}

void rc_room_replay(rc_rooms *t, rc_room *room, rc_endpoint *ep, uint64_t since)
{
    rc_history *h = &room->hist;
    for (uint32_t i = rc_history_find(h, since); i < h->count; i++) {
        rc_msg *m = rc_history_at(h, i)->frame;
        size_t before = rc_msg_size(m);
        rc_msg *f = rc_wire_of(m, ep->wire);
        if (f == RC_WIRE_SKIP) continue;
        if (!f) {
            ep->ops->lost(ep);
            return;
        }
        /* a new encoding is kept with the message */
        size_t hb = h->bytes;
        h->bytes += rc_msg_size(m) - before;
        kept(t, room, hb);
        ep->ops->replay(ep, f);
    }
}

/* ---- Redis mode (redisrooms.h) ------------------------------------------------------------ */

rc_room *rc_rooms_open(rc_rooms *t, const char *name, size_t len)
{
    rc_room *room = rc_rooms_find(t, name, len);
    if (room) return room;
    if (t->cfg.max_rooms && rc_rooms_count(t) >= t->cfg.max_rooms) return NULL;
    return room_create(t, name, len);
}

void rc_room_hold(rc_rooms *t, rc_room *room)
{
    if (room->empty_since) empty_unlink(t, room);
}

void rc_room_settle(rc_rooms *t, rc_room *room)
{
    if (room->nmembers == 0 && !room->empty_since) room_vacated(t, room);
}

void rc_room_deliver_at(rc_rooms *t, rc_room *room, rc_msg *m, uint64_t id)
{
    rc_room_deliver_keyed(t, room, m, id, NULL);
}

void rc_room_deliver_keyed(rc_rooms *t, rc_room *room, rc_msg *m, uint64_t id,
                           const struct rc_statekey *sk)
{
    room->seq_msg_id = id;
    t->stats.broadcasts++;
    m->t_recv = rc_loop_now(t->loop);
    if (sk) { /* as rc_room_publish marks a keyed message, for conflation */
        m->ckey = conflation_key(room, sk);
        m->id = id;
    }
    deliver(t, room, m, id, sk || t->cfg.history_size ? wall_ms_now(t) : 0, sk);
}

void rc_room_reset(rc_rooms *t, rc_room *room, const char *epoch)
{
    size_t before = room->hist.bytes;
    while (room->hist.count) rc_history_drop_first(&room->hist);
    kept(t, room, before);
    room->last_msg_id = room->seq_msg_id = 0;
    snprintf(room->epoch, sizeof(room->epoch), "%s", epoch);
}
