/* Tests src/rooms/room.c with endpoints that record what they are handed: one msg_id order,
 * one encoding per wire format shared by every member that reads it (no allocation per
 * recipient), the history keeping those encodings for replay, membership bookkeeping, and
 * acknowledgements released by the durable log's progress. */
#include "rooms/room.h"

#include "codec/wsframe.h"
#include "rooms/roomproto.h"
#include "rooms/wire.h"
#include "unit.h"

#define MAX_GOT 64

/* A member that keeps a reference to every frame it is handed. */
typedef struct fake {
    rc_endpoint ep;
    rc_msg *got[MAX_GOT];    /* frames delivered, in order (references) */
    bool replayed[MAX_GOT];  /* delivered as a replay */
    int n;                   /* frames delivered */
    int lost;                /* NULL deliveries (cut off) */
    int closed;              /* close() calls */
} fake;

#define fake_of(e) ((fake *)(void *)((char *)(e) - offsetof(fake, ep)))

static void record(rc_endpoint *ep, rc_msg *m, bool replay)
{
    fake *f = fake_of(ep);
    if (f->n < MAX_GOT) {
        f->replayed[f->n] = replay;
        f->got[f->n++] = rc_msg_ref(m);
    }
}

static void fake_deliver(rc_endpoint *ep, rc_msg *m)
{
    record(ep, m, false);
}

static void fake_replay(rc_endpoint *ep, rc_msg *m)
{
    record(ep, m, true);
}

static void fake_lost(rc_endpoint *ep)
{
    fake_of(ep)->lost++;
}

static void fake_close(rc_endpoint *ep, uint16_t code, const char *reason)
{
    fake_of(ep)->closed++;
}

static const rc_endpoint_ops fake_ops = {.deliver = fake_deliver, .replay = fake_replay,
                                         .lost = fake_lost, .close = fake_close};

static void fake_init(fake *f, uint8_t wire, uint64_t id)
{
    memset(f, 0, sizeof(*f));
    rc_endpoint_init(&f->ep, &fake_ops, wire, id);
}

static void fake_clear(fake *f)
{
    for (int i = 0; i < f->n; i++) rc_msg_unref(f->got[i]);
    f->n = 0;
}

static void fake_release(rc_rooms *t, fake *f)
{
    rc_endpoint_gone(t, &f->ep);
    fake_clear(f);
}

static rc_loop *loop;

static void rooms_init(rc_rooms *t, uint32_t history)
{
    rc_rooms_config cfg = {.max_rooms_per_client = 8, .history_size = history,
                           .history_bytes = 1 << 20, .room_ttl = history ? RC_NS_PER_SEC : 0,
                           .idempotency_window = 16};
    rc_rooms_init(t, loop, &cfg);
}

static rc_room *join(rc_rooms *t, fake *f, const char *name)
{
    rc_room *room = NULL;
    int r = rc_room_join(t, &f->ep, name, strlen(name), 0, &room);
    return r == RC_JOIN_OK || r == RC_JOIN_ALREADY ? room : NULL;
}

/* Publishes the JSON object json as client `from` (as the HTTP API and the room protocol do). */
static uint64_t publish(rc_rooms *t, rc_room *room, const char *json, uint64_t from)
{
    rc_json_top q;
    if (rc_json_scan(json, strlen(json), RC_ROOMPROTO_CUT, &q) != RC_JSON_OK) return 0;
    bool dup;
    return rc_roomproto_publish_text(t, room, json, &q, from, 0, NULL, &dup, NULL);
}

/* The payload of a WebSocket frame, as a string view. */
static const char *ws_payload(const rc_msg *m, size_t *len)
{
    size_t h = rc_ws_server_header_len(m->data);
    *len = m->len - h;
    return m->data + h;
}

TEST(websocket_room_shares_one_frame)
{
    rc_rooms t;
    rooms_init(&t, 0);
    fake f[5];
    rc_room *room = NULL;
    for (int i = 0; i < 5; i++) {
        fake_init(&f[i], RC_WIRE_WS, (uint64_t)i + 1);
        room = join(&t, &f[i], "lobby");
        CHECK(room != NULL);
    }
    CHECK_EQ_INT(room->nmembers, 5);
    CHECK_EQ_INT(publish(&t, room, "{\"type\":\"chat\",\"text\":\"a\"}", 3), 1);
    CHECK_EQ_INT(publish(&t, room, "{\"type\":\"chat\",\"text\":\"b\"}", 3), 2);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(f[i].n, 2);
        CHECK(f[i].got[0] == f[0].got[0]); /* the same frame, by reference */
        CHECK(f[i].got[1] == f[0].got[1]);
        CHECK(f[i].got[0]->alt == NULL);   /* and nothing else was encoded */
    }
    size_t n;
    const char *p = ws_payload(f[0].got[1], &n);
    static const char want[] = "{\"type\":\"chat\",\"text\":\"b\",\"room\":\"lobby\",\"client_id\":3,"
                               "\"msg_id\":2}";
    CHECK_MEM(p, n, want, sizeof(want) - 1);
    CHECK_EQ_INT(t.stats.broadcasts, 2);
    CHECK_EQ_INT(t.stats.deliveries, 10);
    for (int i = 0; i < 5; i++) fake_release(&t, &f[i]);
    CHECK_EQ_INT(rc_rooms_count(&t), 0); /* no history: the room went with its last member */
    rc_rooms_release(&t);
}

TEST(mixed_room_encodes_once_per_wire)
{
    rc_rooms t;
    rooms_init(&t, 0);
    uint8_t wires[] = {RC_WIRE_LINE, RC_WIRE_WS, RC_WIRE_FRAMED, RC_WIRE_CHAT, RC_WIRE_LINE,
                       RC_WIRE_CHAT, RC_WIRE_WS};
    enum { N = sizeof(wires) };
    fake f[N];
    rc_room *room = NULL;
    for (int i = 0; i < N; i++) {
        fake_init(&f[i], wires[i], (uint64_t)i + 1);
        room = join(&t, &f[i], "mixed");
    }
    CHECK_EQ_INT(publish(&t, room, "{\"type\":\"chat\",\"user\":\"ann\",\"text\":\"hi\"}", 2), 1);
    for (int i = 0; i < N; i++) CHECK_EQ_INT(f[i].n, 1);
    /* members of one wire share one frame; the wires differ */
    CHECK(f[0].got[0] == f[4].got[0]);
    CHECK(f[3].got[0] == f[5].got[0]);
    CHECK(f[1].got[0] == f[6].got[0]);
    CHECK(f[0].got[0] != f[1].got[0] && f[2].got[0] != f[1].got[0]);
    rc_msg *ws = f[1].got[0];
    CHECK_EQ_INT(ws->wire, RC_WIRE_WS);
    /* the line is the frame itself, seen through its sub range: no copy, nothing chained */
    CHECK(f[0].got[0] == rc_msg_sub(ws));
    CHECK(rc_msg_alt(ws, RC_WIRE_LINE) == NULL);
    CHECK(rc_msg_alt(ws, RC_WIRE_FRAMED) == f[2].got[0]); /* the others are chained to it */
    CHECK(rc_msg_alt(ws, RC_WIRE_CHAT) == f[3].got[0]);
    size_t n, ln;
    const char *p = ws_payload(ws, &n);
    /* line: the same JSON and '\n' */
    const char *lp = rc_msg_bytes(f[0].got[0], &ln);
    CHECK_EQ_INT(ln, n + 1);
    CHECK(memcmp(lp, p, n) == 0 && lp[n] == '\n');
    /* framed: u32 LE length, opcode 1, the same JSON */
    const uint8_t *fr = (const uint8_t *)f[2].got[0]->data;
    CHECK_EQ_INT(fr[0] | fr[1] << 8 | fr[2] << 16 | (uint32_t)fr[3] << 24, n);
    CHECK_EQ_INT(fr[4], RC_WS_TEXT);
    CHECK(memcmp(fr + 5, p, n) == 0);
    /* chat: [user] text */
    CHECK_MEM(f[3].got[0]->data, f[3].got[0]->len, "[ann] hi\n", 9);
    /* every member saw the same msg_id; deliveries count each recipient once */
    CHECK_EQ_INT(t.stats.deliveries, N);
    for (int i = 0; i < N; i++) fake_release(&t, &f[i]);
    rc_rooms_release(&t);
}

TEST(pretty_printed_json_is_one_line)
{
    rc_rooms t;
    rooms_init(&t, 0);
    fake line;
    fake_init(&line, RC_WIRE_LINE, 1);
    rc_room *room = join(&t, &line, "p");
    CHECK_EQ_INT(publish(&t, room, "{\n  \"type\": \"x\",\r\n  \"s\": \"a b\"\n}", 1), 1);
    CHECK_EQ_INT(line.n, 1);
    size_t n;
    const char *p = rc_msg_bytes(line.got[0], &n);
    CHECK(rc_msg_base(line.got[0]) == line.got[0]); /* a copy, not the frame's range */
    CHECK(memchr(p, '\n', n) == p + n - 1 && !memchr(p, '\r', n));
    static const char want[] = "{   \"type\": \"x\",    \"s\": \"a b\" ,\"room\":\"p\",\"client_id\":1,"
                               "\"msg_id\":1}\n";
    CHECK_MEM(p, n, want, sizeof(want) - 1);
    fake_release(&t, &line);
    rc_rooms_release(&t);
}

TEST(chat_members_skip_messages_without_text)
{
    rc_rooms t;
    rooms_init(&t, 0);
    fake chat, line;
    fake_init(&chat, RC_WIRE_CHAT, 1);
    fake_init(&line, RC_WIRE_LINE, 2);
    rc_room *room = join(&t, &chat, "r");
    join(&t, &line, "r");
    CHECK_EQ_INT(publish(&t, room, "{\"type\":\"move\",\"x\":1}", 2), 1);
    CHECK_EQ_INT(publish(&t, room, "{\"type\":\"chat\",\"nick\":\"bo\",\"text\":\"a\\nb\"}", 2), 2);
    CHECK_EQ_INT(publish(&t, room, "{\"text\":\"anon\"}", 7), 3);
    CHECK_EQ_INT(line.n, 3);
    CHECK_EQ_INT(chat.n, 2); /* the move is not shown; no gap to see on a terminal */
    CHECK_MEM(chat.got[0]->data, chat.got[0]->len, "[bo] a b\n", 9);
    CHECK_MEM(chat.got[1]->data, chat.got[1]->len, "[client 7] anon\n", 16);
    CHECK_EQ_INT(t.stats.deliveries, 5);
    fake_release(&t, &chat);
    fake_release(&t, &line);
    rc_rooms_release(&t);
}

TEST(binary_to_line_members_is_base64_json)
{
    rc_rooms t;
    rooms_init(&t, 0);
    fake ws, line;
    fake_init(&ws, RC_WIRE_WS, 4);
    fake_init(&line, RC_WIRE_LINE, 5);
    join(&t, &ws, "b\"x");
    join(&t, &line, "b\"x");
    static const uint8_t env[] = {3, 'b', '"', 'x', 0, 1, 0xff};
    CHECK_EQ_INT(rc_roomproto_binary(&t, &ws.ep, env, sizeof(env)), 0);
    CHECK_EQ_INT(line.n, 1);
    static const char want[] = "{\"binary\":\"AAH/\",\"room\":\"b\\\"x\",\"client_id\":4,"
                               "\"msg_id\":1}\n";
    CHECK_MEM(line.got[0]->data, line.got[0]->len, want, sizeof(want) - 1);
    fake_release(&t, &ws);
    fake_release(&t, &line);
    rc_rooms_release(&t);
}

TEST(replay_reuses_kept_encodings)
{
    rc_rooms t;
    rooms_init(&t, 100);
    fake a, b, late_line, late_chat;
    fake_init(&a, RC_WIRE_WS, 1);
    fake_init(&b, RC_WIRE_LINE, 2);
    rc_room *room = join(&t, &a, "h");
    join(&t, &b, "h");
    for (int i = 0; i < 4; i++) CHECK(publish(&t, room, "{\"text\":\"t\"}", 1) != 0);
    size_t sum = 0;
    for (uint32_t i = 0; i < room->hist.count; i++)
        sum += rc_msg_size(rc_history_at(&room->hist, i)->frame);
    CHECK_EQ_INT(room->hist.bytes, sum); /* the line encodings count as kept bytes */
    /* a late line member replays from msg_id 1: the very frames b got, nothing re-encoded */
    fake_init(&late_line, RC_WIRE_LINE, 3);
    join(&t, &late_line, "h");
    rc_room_replay(&t, room, &late_line.ep, 1);
    CHECK_EQ_INT(late_line.n, 3);
    for (int i = 0; i < 3; i++) {
        CHECK(late_line.got[i] == b.got[i + 1]);
        CHECK(late_line.replayed[i]);
    }
    /* a chat member replays: its encoding is made now, kept, and counted */
    fake_init(&late_chat, RC_WIRE_CHAT, 4);
    join(&t, &late_chat, "h");
    rc_room_replay(&t, room, &late_chat.ep, 0);
    CHECK_EQ_INT(late_chat.n, 4);
    sum = 0;
    for (uint32_t i = 0; i < room->hist.count; i++)
        sum += rc_msg_size(rc_history_at(&room->hist, i)->frame);
    CHECK_EQ_INT(room->hist.bytes, sum);
    CHECK(rc_msg_alt(rc_history_at(&room->hist, 0)->frame, RC_WIRE_CHAT) == late_chat.got[0]);
    fake_release(&t, &a);
    fake_release(&t, &b);
    fake_release(&t, &late_line);
    fake_release(&t, &late_chat);
    CHECK_EQ_INT(rc_rooms_count(&t), 1); /* kept for its history (room TTL) */
    rc_rooms_release(&t);
}

static size_t sum_histories(const rc_rooms *t)
{
    size_t sum = 0;
    uint32_t b = 0;
    for (rc_room *r = rc_rooms_next(t, &b, NULL); r; r = rc_rooms_next(t, &b, r)) {
        size_t room_sum = 0;
        for (uint32_t i = 0; i < r->hist.count; i++)
            room_sum += rc_msg_size(rc_history_at(&r->hist, i)->frame);
        if (room_sum != r->hist.bytes) return (size_t)-1;
        sum += room_sum;
    }
    return sum;
}

TEST(history_memory_budget)
{
    rc_rooms t;
    rc_rooms_config cfg = {.max_rooms_per_client = 64, .history_size = 1000,
                           .history_bytes = 1 << 20, .room_ttl = 60 * RC_NS_PER_SEC,
                           .history_memory = 20000};
    rc_rooms_init(&t, loop, &cfg);
    fake gone, stay;
    fake_init(&gone, RC_WIRE_WS, 1);
    fake_init(&stay, RC_WIRE_WS, 2);
    rc_room *old = join(&t, &gone, "old"), *live = join(&t, &stay, "live");
    char msg[128];
    snprintf(msg, sizeof(msg), "{\"pad\":\"%080d\"}", 0);
    for (int i = 0; i < 40; i++) CHECK(publish(&t, old, msg, 1));
    fake_release(&t, &gone); /* "old" is empty now, kept for its history */
    CHECK(rc_rooms_find(&t, "old", 3) == old && old->hist.count == 40);
    size_t per = old->hist.bytes / 40;
    /* the live room's messages push the total over the budget: the empty room goes first */
    int n = 0;
    while (t.stats.evicted == 0 && n < 1000) {
        CHECK(publish(&t, live, msg, 2));
        n++;
    }
    CHECK(t.stats.evicted > 0);
    CHECK(old->hist.count < 40 && live->hist.count == (uint32_t)n);
    CHECK(t.hist_bytes <= cfg.history_memory && t.hist_bytes == sum_histories(&t));
    /* once the empty room has nothing left, the oldest messages of the live one go */
    for (int i = 0; i < 400; i++) CHECK(publish(&t, live, msg, 2));
    CHECK_EQ_INT(old->hist.count, 0);
    CHECK(t.hist_bytes <= cfg.history_memory && t.hist_bytes == sum_histories(&t));
    CHECK(live->hist.count > 0 && live->hist.count * per <= cfg.history_memory);
    /* still one contiguous run ending at the newest message */
    CHECK_EQ_INT(rc_history_at(&live->hist, live->hist.count - 1)->msg_id, live->last_msg_id);
    CHECK_EQ_INT(rc_history_first_id(&live->hist), live->last_msg_id - live->hist.count + 1);
    /* messages differ by the digits of their msg_id */
    CHECK(t.stats.evicted_bytes >= t.stats.evicted * (per - 4));
    CHECK(t.stats.evicted_bytes <= t.stats.evicted * (per + 4));
    fake_release(&t, &stay);
    rc_rooms_release(&t);
}

TEST(room_creation_limits)
{
    rc_rooms t;
    rc_rooms_config cfg = {.max_rooms_per_client = 3, .max_rooms = 4, .create_rate = 1};
    rc_rooms_init(&t, loop, &cfg);
    fake a, b, c;
    fake_init(&a, RC_WIRE_WS, 1);
    fake_init(&b, RC_WIRE_WS, 2);
    fake_init(&c, RC_WIRE_WS, 3);
    rc_room *r;
    /* a burst of max_rooms_per_client + create_rate (4), then create_rate a second:
     * join/leave churn is held */
    CHECK_EQ_INT(rc_room_join(&t, &a.ep, "a1", 2, 0, &r), RC_JOIN_OK);
    CHECK_EQ_INT(rc_room_join(&t, &a.ep, "a2", 2, 0, &r), RC_JOIN_OK);
    CHECK_EQ_INT(rc_room_join(&t, &a.ep, "a3", 2, 0, &r), RC_JOIN_OK);
    while (a.ep.nrooms) rc_room_leave(&t, &a.ep, 0, RC_LEAVE_LEFT); /* no history: the rooms go */
    CHECK_EQ_INT(rc_room_join(&t, &a.ep, "a4", 2, 0, &r), RC_JOIN_OK);
    rc_room_leave(&t, &a.ep, 0, RC_LEAVE_LEFT);
    CHECK_EQ_INT(rc_rooms_count(&t), 0);
    CHECK_EQ_INT(rc_room_join(&t, &a.ep, "a5", 2, 0, &r), RC_JOIN_RATE);
    /* every endpoint has its own allowance; joining a room that exists is never limited */
    CHECK_EQ_INT(rc_room_join(&t, &b.ep, "x1", 2, 0, &r), RC_JOIN_OK);
    CHECK_EQ_INT(rc_room_join(&t, &b.ep, "x2", 2, 0, &r), RC_JOIN_OK);
    CHECK_EQ_INT(rc_room_join(&t, &b.ep, "x3", 2, 0, &r), RC_JOIN_OK);
    CHECK_EQ_INT(rc_room_join(&t, &a.ep, "x1", 2, 0, &r), RC_JOIN_OK);
    CHECK_EQ_INT(rc_room_join(&t, &c.ep, "x4", 2, 0, &r), RC_JOIN_OK);
    CHECK_EQ_INT(rc_rooms_count(&t), 4);
    CHECK_EQ_INT(rc_room_join(&t, &c.ep, "x5", 2, 0, &r), RC_JOIN_ROOM_LIMIT); /* 4 at most */
    a.ep.create_tat -= 3 * RC_NS_PER_SEC; /* as if three seconds had passed */
    CHECK_EQ_INT(rc_room_join(&t, &a.ep, "a5", 2, 0, &r), RC_JOIN_ROOM_LIMIT);
    fake_release(&t, &a);
    fake_release(&t, &b);
    fake_release(&t, &c);
    rc_rooms_release(&t);
}

TEST(membership_bookkeeping)
{
    rc_rooms t;
    rooms_init(&t, 0);
    fake f[4];
    const char *names[] = {"r1", "r2", "r3"};
    for (int i = 0; i < 4; i++) {
        fake_init(&f[i], RC_WIRE_WS, (uint64_t)i + 1);
        for (int r = 0; r < 3; r++) CHECK(join(&t, &f[i], names[r]) != NULL);
    }
    CHECK_EQ_INT(rc_room_join(&t, &f[0].ep, "r1", 2, 0, &(rc_room *){NULL}), RC_JOIN_ALREADY);
    /* leave from the middle, in a different order per endpoint: back-pointers stay exact */
    rc_room_leave(&t, &f[1].ep, 1, RC_LEAVE_LEFT);
    rc_room_leave(&t, &f[2].ep, 0, RC_LEAVE_LEFT);
    rc_endpoint_gone(&t, &f[3].ep);
    for (int i = 0; i < 4; i++) {
        const rc_endpoint *ep = &f[i].ep;
        for (uint32_t k = 0; k < ep->nrooms; k++) {
            const rc_room *room = ep->rooms[k].room;
            CHECK(room->members[ep->rooms[k].slot].ep == ep);
            CHECK_EQ_INT(room->members[ep->rooms[k].slot].mslot, k);
        }
    }
    CHECK_EQ_INT(rc_rooms_find(&t, "r1", 2)->nmembers, 2);
    CHECK_EQ_INT(rc_rooms_find(&t, "r2", 2)->nmembers, 2);
    CHECK_EQ_INT(rc_rooms_find(&t, "r3", 2)->nmembers, 3);
    /* the member limit */
    fake g;
    fake_init(&g, RC_WIRE_WS, 9);
    char name[16];
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof(name), "x%d", i);
        CHECK(join(&t, &g, name) != NULL);
    }
    CHECK_EQ_INT(rc_room_join(&t, &g.ep, "x9", 2, 0, &(rc_room *){NULL}), RC_JOIN_LIMIT);
    fake_release(&t, &g);
    for (int i = 0; i < 4; i++) fake_release(&t, &f[i]);
    CHECK_EQ_INT(rc_rooms_count(&t), 0);
    rc_rooms_release(&t);
}

TEST(deferred_acks_follow_the_log)
{
    /* Without a log every batch is durable: what waits goes at the next call, in order; an
     * endpoint that goes drops what it was owed. (Per-room durability with a log is tested
     * in tests/unit/store and tests/integration/test_history.py.) */
    rc_rooms t;
    rooms_init(&t, 0);
    fake a, b;
    fake_init(&a, RC_WIRE_LINE, 1);
    fake_init(&b, RC_WIRE_WS, 2);
    rc_room *room = join(&t, &a, "acks");
    rc_msg *m1 = rc_wire_text(a.ep.wire, "{\"n\":1}", 7);
    rc_msg *m2 = rc_wire_text(a.ep.wire, "{\"n\":2}", 7);
    rc_msg *m3 = rc_wire_text(b.ep.wire, "{\"n\":3}", 7);
    rc_endpoint_defer(&t, &a.ep, room, 5, m1);
    rc_endpoint_defer(&t, &a.ep, room, 9, m2);
    rc_endpoint_defer(&t, &b.ep, room, 7, m3);
    CHECK(rc_room_durable(&t, room, 9));
    rc_rooms_durable(&t);
    CHECK_EQ_INT(a.n, 2);
    CHECK(a.got[0] == m1 && a.got[1] == m2);
    CHECK_EQ_INT(b.n, 1);
    CHECK(t.ack_eps == NULL); /* nobody is owed anything any more */
    rc_endpoint_defer(&t, &b.ep, room, 20, m3);
    rc_endpoint_gone(&t, &b.ep);
    CHECK(t.ack_eps == NULL && b.ep.nacks == 0);
    rc_rooms_durable(&t);
    CHECK_EQ_INT(b.n, 1);
    rc_msg_unref(m1);
    rc_msg_unref(m2);
    rc_msg_unref(m3);
    fake_release(&t, &a);
    fake_release(&t, &b);
    rc_rooms_release(&t);
}

/* Answers other than acks waiting for the log (rc_room_when_durable, the HTTP API's publish
 * under --fsync always): each runs once, from rc_rooms_durable; one may cancel another that is
 * due in the same call, or arm a new one; a cancelled one never runs. */
typedef struct dw_probe {
    rc_durable_wait w;
    int runs;
    bool ok;
    struct dw_probe *cancel; /* cancelled by this one's answer */
    rc_rooms *t;
    rc_room *room;
    struct dw_probe *arm;    /* armed by this one's answer */
} dw_probe;

static void dw_fn(rc_durable_wait *w, bool ok)
{
    dw_probe *p = (dw_probe *)(void *)w;
    p->runs++;
    p->ok = ok;
    if (p->cancel) rc_room_durable_cancel(&p->cancel->w);
    if (p->arm) rc_room_when_durable(p->t, &p->arm->w, p->room, 3);
}

TEST(durable_waits_run_once)
{
    rc_rooms t;
    rooms_init(&t, 0);
    fake a;
    fake_init(&a, RC_WIRE_WS, 1);
    rc_room *room = join(&t, &a, "dw");
    dw_probe p1 = {.w.fn = dw_fn}, p2 = {.w.fn = dw_fn}, p3 = {.w.fn = dw_fn},
             p4 = {.w.fn = dw_fn};
    p1.cancel = &p2; /* p1 and p2 are due together: whichever runs first, p2 never runs after */
    p2.cancel = &p1;
    p3.t = &t, p3.room = room, p3.arm = &p4;
    rc_room_when_durable(&t, &p1.w, room, 4);
    rc_room_when_durable(&t, &p2.w, room, 5);
    rc_room_when_durable(&t, &p3.w, room, 6);
    rc_room_durable_cancel(&p3.w); /* cancelled before the log answers: never runs */
    rc_room_durable_cancel(&p3.w); /* twice is harmless */
    rc_rooms_durable(&t);
    CHECK_EQ_INT(p1.runs + p2.runs, 1);
    CHECK((p1.runs ? p1.ok : p2.ok) == true);
    CHECK_EQ_INT(p3.runs, 0);
    CHECK(t.dwaits == NULL);
    rc_room_when_durable(&t, &p3.w, room, 7); /* armed again; its answer arms p4 */
    rc_rooms_durable(&t);
    CHECK_EQ_INT(p3.runs, 1);
    CHECK_EQ_INT(p4.runs, 0); /* armed during the call: waits for the next one */
    rc_rooms_durable(&t);
    CHECK_EQ_INT(p4.runs, 1);
    rc_rooms_durable(&t);
    CHECK_EQ_INT(p1.runs + p2.runs + p3.runs + p4.runs, 3);
    fake_release(&t, &a);
    rc_rooms_release(&t);
}

/* A big room's presence batch that fills up (65,536 changes) is sent at once — but not to the
 * member whose join filled it: that member has not been sent its `joined` yet (join-cost in
 * bench/ caught it receiving the batch first). */
TEST(full_presence_batch_skips_the_joiner)
{
    rc_rooms t;
    rooms_init(&t, 0);
    t.cfg.presence_limit = 1;
    fake a, b, c;
    fake_init(&a, RC_WIRE_WS, 1);
    fake_init(&b, RC_WIRE_WS, 2);
    fake_init(&c, RC_WIRE_WS, 3);
    rc_room *room = NULL;
    CHECK_EQ_INT(rc_room_join(&t, &a.ep, "big", 3, RC_MEMBER_PRESENCE, &room), RC_JOIN_OK);
    CHECK_EQ_INT(rc_room_join(&t, &c.ep, "big", 3, 0, &room), RC_JOIN_OK); /* change 1 */
    int sent_at = -1;
    /* b's joins are the even changes, so the 65,536th is one of them */
    for (int i = 0; i < 40000 && sent_at < 0; i++) {
        CHECK_EQ_INT(rc_room_join(&t, &b.ep, "big", 3, RC_MEMBER_PRESENCE, &room), RC_JOIN_OK);
        if (a.n > 0) {
            sent_at = i;
            break;
        }
        rc_room_leave(&t, &b.ep, 0, RC_LEAVE_LEFT);
    }
    CHECK_EQ_INT(sent_at, 32767);
    CHECK_EQ_INT(a.n, 1);
    CHECK_EQ_INT(b.n, 0);
    size_t len;
    const char *p = ws_payload(a.got[0], &len);
    const char *want = "\"event\":\"batch\",\"joined\":[2,3],\"left\":[]";
    CHECK(memmem(p, len, want, strlen(want)) != NULL);
    fake_release(&t, &a);
    fake_release(&t, &b);
    fake_release(&t, &c);
    rc_rooms_release(&t);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    loop = rc_loop_new();
    if (!loop) return 2;
    RUN(websocket_room_shares_one_frame);
    RUN(mixed_room_encodes_once_per_wire);
    RUN(pretty_printed_json_is_one_line);
    RUN(chat_members_skip_messages_without_text);
    RUN(binary_to_line_members_is_base64_json);
    RUN(replay_reuses_kept_encodings);
    RUN(history_memory_budget);
    RUN(room_creation_limits);
    RUN(membership_bookkeeping);
    RUN(deferred_acks_follow_the_log);
    RUN(durable_waits_run_once);
    RUN(full_presence_batch_skips_the_joiner);
    rc_loop_free(loop);
    UNIT_MAIN_END("test_room");
}
