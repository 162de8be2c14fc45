/* state.c — the latest message of each state key of a room; see state.h. */
#include "rooms/state.h"

#include <stdlib.h>
#include <string.h>

#include "codec/json.h"
#include "codec/wsframe.h"
#include "core/hash.h"
#include "core/log.h"
#include "codec/stateblob.h"

typedef struct rc_state_entry {
    rc_hnode node;           /* in rc_room_state.table, keyed by the key's hash */
    uint64_t msg_id;         /* the message that set it */
    uint64_t time_ms;        /* when it was sequenced */
    rc_msg *frame;           /* its canonical frame (a reference) */
    uint16_t klen;
    char key[];
} rc_state_entry;

typedef struct rc_room_state {
    rc_htab table;
    uint32_t count;          /* keys */
    size_t bytes;            /* their keys and frames */
    uint64_t last_change;    /* msg_id of the last change */
    uint64_t snap_upto;      /* the last snapshot covers the room up to this msg_id */
    uint64_t snap_at;        /* loop ns it was taken */
} rc_room_state;

#define entry_of(n) ((rc_state_entry *)(void *)((char *)(n) - offsetof(rc_state_entry, node)))

static size_t entry_bytes(size_t klen, const rc_msg *frame)
{
    return klen + frame->len;
}

static rc_state_entry *find(const rc_room_state *s, const char *key, size_t len)
{
    if (!s) return NULL;
    uint64_t h = rc_hash(key, len);
    for (rc_hnode *n = rc_htab_chain(&s->table, h); n; n = n->next) {
        rc_state_entry *e = entry_of(n);
        if (n->hash == h && e->klen == len && memcmp(e->key, key, len) == 0) return e;
    }
    return NULL;
}

int rc_state_parse(const rc_json_top *q, rc_statekey *k, const char **why)
{
    const rc_json_span *ks = &q->key[RC_JK_STATE_KEY], *ds = &q->key[RC_JK_STATE_DELETE];
    if (ks->type == RC_JSON_NONE) {
        if (ds->type != RC_JSON_NONE) {
            *why = "\"state_delete\" needs a \"state_key\"";
            return RC_STATE_BAD;
        }
        return RC_STATE_NONE;
    }
    long l = ks->type == RC_JSON_STRING ? rc_json_unescape(ks->p, ks->len, k->key, sizeof(k->key))
                                        : -1;
    if (l <= 0) {
        *why = "\"state_key\" must be a string of 1 to 128 bytes";
        return RC_STATE_BAD;
    }
    k->len = (size_t)l;
    if (ds->type != RC_JSON_NONE && ds->type != RC_JSON_TRUE && ds->type != RC_JSON_FALSE) {
        *why = "\"state_delete\" must be true or false";
        return RC_STATE_BAD;
    }
    k->del = ds->type == RC_JSON_TRUE;
    return RC_STATE_OK;
}

int rc_state_admit(const rc_rooms *t, const rc_room *room, const rc_statekey *k,
                   size_t msg_bytes)
{
    if (k->del) return RC_STATE_OK;
    const rc_room_state *s = room->state;
    const rc_state_entry *e = find(s, k->key, k->len);
    size_t now = s ? s->bytes : 0, old = e ? entry_bytes(e->klen, e->frame) : 0;
    size_t want = k->len + msg_bytes;
    if (!e && (s ? s->count : 0) >= t->cfg.max_state_keys) return RC_STATE_FULL;
    /* A value that grows past the bound is refused too, or replacing could take a room's
     * state to max_state_keys times the largest message. Rooms outlive their members, so
     * all of them together have a bound as well (--state-memory), as their histories do. */
    if (want > old && now - old + want > t->cfg.max_state_bytes) return RC_STATE_FULL;
    if (want > old && t->cfg.state_memory && t->state_bytes - old + want > t->cfg.state_memory)
        return RC_STATE_FULL;
    return RC_STATE_OK;
}

static void entry_free(rc_rooms *t, rc_room_state *s, rc_state_entry *e)
{
    s->bytes -= entry_bytes(e->klen, e->frame);
    t->state_bytes -= entry_bytes(e->klen, e->frame);
    s->count--;
    rc_htab_remove(&s->table, &e->node);
    rc_msg_unref(e->frame);
    free(e);
}

static void set(rc_rooms *t, rc_room *room, const char *key, size_t klen, uint64_t msg_id,
                uint64_t time_ms, rc_msg *frame, bool del)
{
    rc_room_state *s = room->state;
    if (!s) {
        if (del || !(s = room->state = calloc(1, sizeof(*s)))) {
            if (!del) rc_warn("room '%s': out of memory for its state", room->name);
            return;
        }
    }
    s->last_change = msg_id;
    rc_state_entry *e = find(s, key, klen);
    if (del) {
        if (e) entry_free(t, s, e);
        return;
    }
    if (e) {
        s->bytes -= entry_bytes(e->klen, e->frame);
        t->state_bytes -= entry_bytes(e->klen, e->frame);
        rc_msg_unref(e->frame);
    } else {
        if (!(e = malloc(sizeof(*e) + klen))) {
            rc_warn("room '%s': out of memory for its state", room->name);
            return;
        }
        e->klen = (uint16_t)klen;
        memcpy(e->key, key, klen);
        if (rc_htab_insert(&s->table, &e->node, rc_hash(key, klen)) < 0) {
            free(e);
            rc_warn("room '%s': out of memory for its state", room->name);
            return;
        }
        s->count++;
    }
    e->msg_id = msg_id;
    e->time_ms = time_ms;
    e->frame = rc_msg_ref(frame);
    s->bytes += entry_bytes(klen, frame);
    t->state_bytes += entry_bytes(klen, frame);
}

void rc_state_apply(rc_rooms *t, rc_room *room, const rc_statekey *k, uint64_t msg_id,
                    uint64_t time_ms, rc_msg *frame)
{
    set(t, room, k->key, k->len, msg_id, time_ms, frame, k->del);
}

uint32_t rc_state_count(const rc_room *room)
{
    return room->state ? room->state->count : 0;
}

size_t rc_state_bytes(const rc_room *room)
{
    return room->state ? room->state->bytes : 0;
}

void rc_state_free(rc_rooms *t, rc_room *room)
{
    rc_room_state *s = room->state;
    if (!s) return;
    t->state_bytes -= s->bytes;
    uint32_t b = 0;
    rc_hnode *n = rc_htab_next(&s->table, &b, NULL);
    while (n) {
        rc_hnode *next = rc_htab_next(&s->table, &b, n);
        rc_state_entry *e = entry_of(n);
        rc_msg_unref(e->frame);
        free(e);
        n = next;
    }
    rc_htab_release(&s->table);
    free(s);
    room->state = NULL;
}

/* The entries by msg_id (a new array, NULL when empty or out of memory). */
static int by_id(const void *a, const void *b)
{
    const rc_state_entry *x = *(const rc_state_entry *const *)a;
    const rc_state_entry *y = *(const rc_state_entry *const *)b;
    return x->msg_id < y->msg_id ? -1 : x->msg_id > y->msg_id;
}

static rc_state_entry **sorted(const rc_room_state *s)
{
    if (!s || s->count == 0) return NULL;
    rc_state_entry **v = malloc(s->count * sizeof(*v));
    if (!v) return NULL;
    uint32_t b = 0, i = 0;
    for (rc_hnode *n = rc_htab_next(&s->table, &b, NULL); n; n = rc_htab_next(&s->table, &b, n))
        v[i++] = entry_of(n);
    qsort(v, s->count, sizeof(*v), by_id);
    return v;
}

static const char *payload(const rc_msg *frame, size_t *len)
{
    size_t hl = rc_ws_server_header_len(frame->data);
    *len = frame->len - hl;
    return frame->data + hl;
}

void rc_state_render(const rc_room *room, rc_textbuf *out)
{
    rc_textbuf_printf(out, "{\"type\":\"state\",\"room\":%.*s,\"last_msg_id\":%llu,\"messages\":[",
                      (int)room->json_len, room->json_name,
                      (unsigned long long)room->last_msg_id);
    rc_state_entry **v = sorted(room->state);
    if (!v && rc_state_count(room)) out->failed = true;
    for (uint32_t i = 0; v && i < room->state->count; i++) {
        size_t pl;
        const char *p = payload(v[i]->frame, &pl);
        if (i) rc_textbuf_append(out, ",", 1);
        rc_textbuf_append(out, p, pl);
    }
    free(v);
    rc_textbuf_append(out, "]}", 2);
}

/* ---- with a durable log ------------------------------------------------------------------ */

uint64_t rc_state_log_needs(const rc_room *room)
{
    const rc_room_state *s = room->state;
    return s && s->last_change > s->snap_upto ? s->snap_upto + 1 : UINT64_MAX;
}

void rc_state_snapshot_maybe(rc_rooms *t, rc_room *room, bool force)
{
    rc_room_state *s = room->state;
    if (!s || !room->store || !t->store || s->last_change <= s->snap_upto) return;
    uint64_t now = rc_loop_now(t->loop);
    if (!force && s->snap_at && now - s->snap_at < RC_STATE_SNAPSHOT_SEC * RC_NS_PER_SEC) return;
    rc_state_entry **v = sorted(s);
    if (!v && s->count) return; /* out of memory: the log keeps what it needs; next time */
    rc_buf blob = {0};
    bool ok = rc_state_blob_begin(&blob, room->last_msg_id, s->count) == 0;
    for (uint32_t i = 0; ok && i < s->count; i++) {
        size_t pl;
        const char *p = payload(v[i]->frame, &pl);
        ok = rc_state_blob_add(&blob, v[i]->msg_id, v[i]->time_ms, v[i]->key, v[i]->klen, p,
                               pl) == 0;
    }
    free(v);
    if (ok) {
        rc_store_room_state(t->store, room->store, rc_buf_head(&blob), rc_buf_size(&blob));
        s->snap_upto = room->last_msg_id;
        s->snap_at = now;
    }
    rc_buf_release(&blob);
}

struct load_ctx {
    rc_rooms *t;
    rc_room *room;
};

static void load_entry(void *arg, uint64_t msg_id, uint64_t time_ms, const char *key,
                       size_t klen, const char *p, size_t plen)
{
    struct load_ctx *x = arg;
    rc_msg *frame = rc_ws_msg_new(RC_WS_TEXT, p, plen);
    if (!frame) return;
    set(x->t, x->room, key, klen, msg_id, time_ms, frame, false);
    rc_msg_unref(frame);
}

void rc_state_load(rc_rooms *t, rc_room *room, const char *blob, size_t len)
{
    struct load_ctx x = {.t = t, .room = room};
    uint64_t upto;
    if (rc_state_blob_read(blob, len, &upto, load_entry, &x) < 0) {
        rc_warn("room '%s': state snapshot malformed; state restored from the log only",
                room->name);
        return;
    }
    if (!room->state && !(room->state = calloc(1, sizeof(*room->state)))) return;
    room->state->snap_upto = room->state->last_change = upto;
}

void rc_state_replay(rc_rooms *t, rc_room *room, uint64_t msg_id, uint64_t time_ms,
                     uint8_t opcode, const char *p, size_t len, rc_msg *frame)
{
    if (opcode != RC_WS_TEXT || (room->state && msg_id <= room->state->snap_upto)) return;
    /* Only keyed messages change the state; a cheap test first, the scan only for them. */
    if (len < 12 || (!memmem(p, len, "state_", 6) && !memmem(p, len, "\\u", 2))) return;
    rc_json_top q;
    if (rc_json_scan(p, len, 0, &q) != RC_JSON_OK) return;
    rc_statekey k;
    const char *why;
    if (rc_state_parse(&q, &k, &why) != RC_STATE_OK) return;
    set(t, room, k.key, k.len, msg_id, time_ms, frame, k.del);
}

/* ---- Redis mode (rooms/redisrooms.c) ------------------------------------------------------ */

bool rc_state_of_frame(const rc_msg *frame, rc_statekey *k)
{
    if (frame->len < 2 || (frame->data[0] & 0x0f) != RC_WS_TEXT) return false;
    size_t len;
    const char *p = payload(frame, &len);
    if (len < 12 || (!memmem(p, len, "state_", 6) && !memmem(p, len, "\\u", 2))) return false;
    rc_json_top q;
    const char *why;
    return rc_json_scan(p, len, 0, &q) == RC_JSON_OK && rc_state_parse(&q, k, &why) == RC_STATE_OK;
}

void rc_state_set_frame(rc_rooms *t, rc_room *room, const char *key, size_t klen,
                        uint64_t msg_id, rc_msg *frame)
{
    set(t, room, key, klen, msg_id, rc_wall_ms(), frame, false);
}
