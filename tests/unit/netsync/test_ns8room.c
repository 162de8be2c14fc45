/* test_ns8room.c — tests for src/netsync/ns8room.c without sockets: raw payloads go in through
 * nsr8_input with a lane and a routing identity, unicasts and publishes are recorded, loop time
 * is simulated in 1 ms steps and nsr8_tick runs whenever the deadline is reached. Every recorded
 * message is checked with ns8_check_server_msg (Unity could read it).
 */
#include "unit.h"

#include "netsync/ns8room.h"

#include <stdint.h>

#define MS 1000000ull
#define T0 (1000 * MS)

typedef struct rec {
    bool pub;                     /* publish (else unicast) */
    uint64_t at;
    char who[64];                 /* unicast identity or publish topic (may contain \0: tlen) */
    size_t wlen;
    uint8_t *p;
    size_t n;
} rec;

static rec *R;
static size_t nR, capR;
static int invalid;
static uint64_t now_ns;
static const char *gone_ident;    /* identity `connected` reports as gone */

static void record(bool pub, const uint8_t *who, size_t wlen, const uint8_t *p, size_t n)
{
    if (nR == capR) {
        capR = capR ? capR * 2 : 256;
        R = realloc(R, capR * sizeof(*R));
    }
    rec *r = &R[nR++];
    r->pub = pub;
    r->at = now_ns;
    r->wlen = wlen < sizeof(r->who) ? wlen : sizeof(r->who);
    memcpy(r->who, who, r->wlen);
    r->p = malloc(n ? n : 1);
    memcpy(r->p, p, n);
    r->n = n;
    if (ns8_check_server_msg(p, n) != NS8_OK) invalid++;
}

static void on_unicast(void *arg, const uint8_t *ident, size_t ilen, const uint8_t *room,
                       size_t rlen, const uint8_t *p, size_t n)
{
    (void)arg; (void)room; (void)rlen;
    record(false, ident, ilen, p, n);
}

static void on_publish(void *arg, const uint8_t *topic, size_t tlen, const uint8_t *p, size_t n)
{
    (void)arg;
    record(true, topic, tlen, p, n);
}

static bool on_connected(void *arg, enum ns8_lane lane, const uint8_t *ident, size_t len)
{
    (void)arg; (void)lane;
    return !(gone_ident && strlen(gone_ident) == len && memcmp(gone_ident, ident, len) == 0);
}

static void rec_clear(void)
{
    for (size_t i = 0; i < nR; i++) free(R[i].p);
    nR = 0;
}

static struct {
    bool active;
    nsr8_rooms rs;
    nsr8_stats st;
} F;

static void fx_done(void)
{
    if (F.active) nsr8_rooms_release(&F.rs);
    F.active = false;
    rec_clear();
}

static void fx_init(void)
{
    fx_done();
    nsr8_params p;
    nsr8_params_default(&p);
    memset(&F.st, 0, sizeof(F.st));
    nsr8_io io = {on_unicast, on_publish, on_connected, NULL};
    nsr8_rooms_init(&F.rs, &p, &F.st, &io);
    F.active = true;
    now_ns = T0;
    invalid = 0;
    gone_ident = NULL;
}

static uint64_t ms(void) { return (now_ns - T0) / MS; }

static void go(uint64_t to_ms)
{
    while (ms() < to_ms) {
        now_ns += MS;
        if (now_ns >= nsr8_next_deadline(&F.rs)) nsr8_tick(&F.rs, now_ns);
    }
}

static rc_buf mb = RC_BUF_INIT;
static ns8_enc E;

static ns8_enc *enc(void)
{
    rc_buf_reset(&mb);
    ns8_enc_init(&E, &mb);
    return &E;
}

static void send_(enum ns8_lane lane, const char *ident, const char *room)
{
    nsr8_input(&F.rs, lane, (const uint8_t *)ident, strlen(ident), (const uint8_t *)room,
               strlen(room), (const uint8_t *)rc_buf_head(&mb), rc_buf_size(&mb), now_ns);
}

static void hello(const char *ident, const char *room, const char *dev, bool stealth)
{
    ns8_enc_hello(enc(), stealth ? 1 : 0, dev, strlen(dev));
    send_(NS8_LANE_CONTROL, ident, room);
}

/* a pose body: flags Head, head x = hx cm, seq; extra trailing bytes appended to the message */
static void pose(const char *ident, const char *room, const char *dev, int hx, size_t trailing)
{
    uint8_t b[32] = {1, 0, NS8_F_HEAD, 0x1f, (uint8_t)hx, (uint8_t)(hx >> 8), (uint8_t)(hx >> 16)};
    b[17] = 0; /* nVirt */
    ns8_enc_pose(enc(), dev, strlen(dev), b, 18);
    for (size_t i = 0; i < trailing; i++) ns8_put_u8(&E, 0xEE);
    send_(NS8_LANE_TRANSFORM, ident, room);
}

static size_t count(bool pub, const char *who, uint8_t type)
{
    size_t k = 0;
    for (size_t i = 0; i < nR; i++)
        if (R[i].pub == pub && (!who || (R[i].wlen == strlen(who) && !memcmp(R[i].who, who, R[i].wlen))) &&
            R[i].p[0] == type)
            k++;
    return k;
}

static const rec *last(bool pub, const char *who, uint8_t type)
{
    for (size_t i = nR; i-- > 0;)
        if (R[i].pub == pub && (!who || (R[i].wlen == strlen(who) && !memcmp(R[i].who, who, R[i].wlen))) &&
            R[i].p[0] == type)
            return &R[i];
    return NULL;
}

/* ROOM_POSE accessors */
static unsigned rp_count(const rec *r)
{
    size_t off = 3 + r->p[2] + 8;
    return ns8_get_u16(r->p + off);
}

static double get_f64(const uint8_t *p)
{
    double d;
    memcpy(&d, p, 8);
    return d;
}

TEST(join_sync_and_mapping)
{
    fx_init();
    hello("a", "r", "A", false);
    /* join sync at once: CLIENT_VAR_SYNC listing number 1 with no variables (the appendix) */
    const rec *s = last(false, "a", NS8_CLIENT_VAR_SYNC);
    CHECK(s);
    CHECK_MEM(s->p, s->n, "\x0a\x01\x00\x01\x00\x00\x00", 7);
    go(1);
    const rec *m = last(false, "a", NS8_DEVICE_ID_MAPPING);
    CHECK(m);
    CHECK_MEM(m->p, m->n, "\x06\x00\x10\x03\x01\x00\x01\x00\x00\x01" "A", 11);
    /* HELLO-only room: ROOM_POSE count 0, 15 + room bytes... header 13 + 1 */
    const rec *p = last(true, "r", NS8_ROOM_POSE);
    CHECK(p);
    CHECK_EQ_INT(p->n, 14);
    CHECK_EQ_INT(rp_count(p), 0);
    /* a second joiner: only it gets the full sync (both numbers); A gets the mapping only */
    rec_clear();
    hello("b", "r", "B", false);
    CHECK_EQ_INT(count(false, "a", NS8_CLIENT_VAR_SYNC), 0);
    s = last(false, "b", NS8_CLIENT_VAR_SYNC);
    CHECK(s);
    CHECK_EQ_INT(ns8_get_u16(s->p + 1), 2);
    go(600);
    CHECK_EQ_INT(count(false, "a", NS8_DEVICE_ID_MAPPING), 1);
    CHECK_EQ_INT(count(false, "b", NS8_DEVICE_ID_MAPPING), 1);
    /* debounce: the mapping waited for 0.5 s after the first one */
    CHECK(last(false, "b", NS8_DEVICE_ID_MAPPING)->at >= T0 + 500 * MS);
    CHECK_EQ_INT(invalid, 0);
}

TEST(pose_relay_trailing_and_pose_time)
{
    fx_init();
    hello("a", "r", "A", false);
    go(10);
    pose("ta", "r", "A", 150, 5);
    CHECK_EQ_INT(F.st.pose_trailing, 1);
    CHECK_EQ_INT(F.st.pose_trailing_bytes, 5);
    uint64_t pose_at = now_ns;
    go(50);
    hello("a", "r", "A", false); /* a later message of another kind */
    rec_clear();
    go(200);
    const rec *p = last(true, "r", NS8_ROOM_POSE);
    CHECK(p);
    CHECK_EQ_INT(rp_count(p), 1);
    size_t off = 3 + 1 + 8 + 2;
    CHECK_EQ_INT(ns8_get_u16(p->p + off), 1);
    /* poseTime is the pose's arrival, not the later HELLO (§6.8) */
    CHECK(get_f64(p->p + off + 2) == (double)pose_at / 1e9);
    /* the entry is exactly the 18-byte body: no trailing bytes relayed (§6.2) */
    CHECK_EQ_INT(p->n, off + 2 + 8 + 18);
    CHECK_EQ_INT(invalid, 0);
}

TEST(broadcast_cadence)
{
    fx_init();
    hello("a", "r", "A", false);
    pose("ta", "r", "A", 1, 0);
    go(1);
    rec_clear();
    for (int i = 0; i < 1000; i++) {
        pose("ta", "r", "A", i, 0);
        go(ms() + 1);
    }
    size_t n = count(true, "r", NS8_ROOM_POSE);
    CHECK(n >= 9 && n <= 11); /* 10 Hz */
    for (size_t i = 1; i < nR; i++)
        if (R[i].pub && R[i - 1].pub) CHECK(R[i].at - R[i - 1].at >= 100 * MS);
    rec_clear();
    hello("a", "r", "A", false); /* keep alive without dirtying */
    go(ms() + 4000);
    n = count(true, "r", NS8_ROOM_POSE);
    CHECK(n >= 1 && n <= 3); /* idle every 2 s */
}

TEST(pose_cache_per_room)
{
    fx_init();
    hello("a", "r1", "A", false);
    hello("b", "r2", "B", false);
    pose("ta", "r1", "A", 100, 0);
    pose("tb", "r2", "B", 5100, 0);
    go(1);
    const rec *p1 = NULL, *p2 = NULL;
    for (size_t i = 0; i < nR; i++) {
        if (!R[i].pub || R[i].p[0] != NS8_ROOM_POSE) continue;
        if (R[i].wlen == 2 && !memcmp(R[i].who, "r1", 2)) p1 = &R[i];
        if (R[i].wlen == 2 && !memcmp(R[i].who, "r2", 2)) p2 = &R[i];
    }
    CHECK(p1 && p2);
    size_t body = 3 + 2 + 8 + 2 + 2 + 8; /* both are client 1 of their room */
    CHECK_EQ_INT(p1->p[body + 4], 100);
    CHECK_EQ_INT(ns8_get_u16(p2->p + body + 4), 5100);
}

TEST(timeout_and_object_release)
{
    fx_init();
    hello("a", "r", "A", false);
    hello("b", "r", "B", false);
    ns8_enc_own_req(enc(), "A", 1, NS8_OWN_REQUEST, 0x55);
    send_(NS8_LANE_CONTROL, "a", "r");
    const rec *c = last(false, "b", NS8_OWNERSHIP_CHANGED);
    CHECK(c);
    CHECK_MEM(c->p, c->n, "\x10\x55\x00\x00\x00\x01\x00\x00\x00", 9);
    rec_clear();
    for (int t = 0; t < 7000; t += 500) {
        hello("b", "r", "B", false);
        go((uint64_t)t + 500);
    }
    CHECK_EQ_INT(F.st.timeouts, 1);
    c = last(false, "b", NS8_OWNERSHIP_CHANGED);
    CHECK(c);
    CHECK_MEM(c->p, c->n, "\x10\x55\x00\x00\x00\x00\x00\x01\x00", 9);
    CHECK(c->at > T0 + 5000 * MS && c->at <= T0 + 6100 * MS);
    const rec *m = last(false, "b", NS8_DEVICE_ID_MAPPING);
    CHECK_EQ_INT(ns8_get_u16(m->p + 4), 1); /* only B */
    /* re-join keeps the number */
    hello("a2", "r", "A", false);
    CHECK_EQ_INT(nsr8_dev_number(&F.rs, (const uint8_t *)"r", 1, (const uint8_t *)"A", 1), 1);
}

TEST(hijack_refused_reconnect_allowed)
{
    fx_init();
    hello("a", "r", "A", false);
    hello("evil", "r", "A", false);
    CHECK_EQ_INT(F.st.dropped[NSR8_DROP_HIJACK], 1);
    ns8_enc_rpc(enc(), 0, "A", 1, NULL, 0, "F", 1, "[]", 2);
    send_(NS8_LANE_CONTROL, "evil", "r");
    CHECK_EQ_INT(F.st.dropped[NSR8_DROP_HIJACK], 2);
    nsr8_room *r = nsr8_room_find(&F.rs, (const uint8_t *)"r", 1);
    CHECK_MEM(r->dev[0].ctl, r->dev[0].ctl_len, "a", 1);
    /* the old identity is gone: the new one takes over (a reconnect) */
    gone_ident = "a";
    hello("a2", "r", "A", false);
    CHECK_MEM(r->dev[0].ctl, r->dev[0].ctl_len, "a2", 2);
    CHECK_EQ_INT(F.st.reconnects, 1);
    CHECK(last(false, "a2", NS8_CLIENT_VAR_SYNC)); /* full sync to the new identity */
    /* a device that timed out can be taken over even if its identity is still connected */
    gone_ident = NULL;
    go(5100);
    hello("a3", "r", "A", false);
    CHECK_MEM(r->dev[0].ctl, r->dev[0].ctl_len, "a3", 2);
}

TEST(phantoms_refused_zmq_reconnect_rpc_works)
{
    fx_init();
    hello("a", "r", "A", false);
    ns8_enc_rpc(enc(), 0, "Fire", 4, NULL, 0, "[", 1, "x", 1);
    send_(NS8_LANE_CONTROL, "x", "r");
    CHECK_EQ_INT(F.st.dropped[NSR8_DROP_UNKNOWN_DEVICE], 1);
    nsr8_room *r = nsr8_room_find(&F.rs, (const uint8_t *)"r", 1);
    CHECK_EQ_INT(r->ndev, 1);
    uint8_t body[13] = {0};
    ns8_enc_object_pose(enc(), "Ghost", 5, 7, 1, body);
    send_(NS8_LANE_TRANSFORM, "g", "r");
    CHECK_EQ_INT(F.st.dropped[NSR8_DROP_NOT_MEMBER], 1);
    CHECK_EQ_INT(r->nobj, 0);
    ns8_enc_global_var_set(enc(), 0, "", 0, "g", 1, "v", 1);
    send_(NS8_LANE_CONTROL, "a", "r");
    CHECK_EQ_INT(F.st.dropped[NSR8_DROP_EMPTY_DEVICE], 1);
    /* ZMQ-level reconnect: new identity, old one gone, RPC first */
    gone_ident = "a";
    rec_clear();
    ns8_enc_rpc(enc(), 0, "A", 1, NULL, 0, "Ping", 4, "[]", 2);
    send_(NS8_LANE_CONTROL, "a-new", "r");
    CHECK_EQ_INT(count(false, "a-new", NS8_RPC), 1);
}

TEST(stealth_hello_does_not_dirty)
{
    fx_init();
    hello("a", "r", "A", false);
    pose("ta", "r", "A", 1, 0);
    go(10);
    rec_clear();
    for (int t = 0; t < 4000; t += 100) {
        hello("s", "r", "S", true);
        hello("a", "r", "A", false);
        go((uint64_t)t + 100 + 10);
    }
    CHECK(count(true, "r", NS8_ROOM_POSE) <= 3);
    const rec *m = last(false, "s", NS8_DEVICE_ID_MAPPING);
    CHECK(m);
    CHECK_EQ_INT(m->p[m->n - 2], 1); /* S listed as stealth */
}

TEST(rpc_targets_and_sender)
{
    fx_init();
    hello("a", "r", "A", false);
    hello("b", "r", "B", false);
    hello("s", "r", "S", true);
    rec_clear();
    ns8_enc_rpc(enc(), 999, "A", 1, NULL, 0, "Ping", 4, "[]", 2);
    send_(NS8_LANE_CONTROL, "a", "r");
    CHECK_EQ_INT(count(false, "a", NS8_RPC) + count(false, "b", NS8_RPC) + count(false, "s", NS8_RPC), 3);
    CHECK_EQ_INT(ns8_get_u16(last(false, "b", NS8_RPC)->p + 1), 1); /* sender rewritten */
    CHECK_EQ_INT(F.st.rpc_rewritten, 1);
    rec_clear();
    const uint8_t t[4] = {2, 0, 2, 0};
    ns8_enc_rpc(enc(), 1, "A", 1, t, 2, "Ping", 4, "[]", 2);
    send_(NS8_LANE_CONTROL, "a", "r");
    CHECK_EQ_INT(count(false, "b", NS8_RPC), 1);
    CHECK_EQ_INT(nR, 1);
}

TEST(network_variables)
{
    fx_init();
    hello("a", "r", "A", false);
    hello("b", "r", "B", false);
    rec_clear();
    ns8_enc_global_var_set(enc(), 0, "A", 1, "g", 1, "v0", 2);
    send_(NS8_LANE_CONTROL, "a", "r");
    go(20);
    ns8_enc_global_var_set(enc(), 0, "B", 1, "g", 1, "v1", 2);
    send_(NS8_LANE_CONTROL, "b", "r");
    go(99);
    CHECK_EQ_INT(count(false, NULL, NS8_GLOBAL_VAR_SYNC), 0);
    go(101);
    const rec *g = last(false, "a", NS8_GLOBAL_VAR_SYNC);
    CHECK(g);
    CHECK_MEM(g->p, g->n, "\x08\x01\x00\x01g\x02\x00v1\x02\x00", 11); /* later write, writer 2 */
    /* equal value: no sync */
    rec_clear();
    ns8_enc_global_var_set(enc(), 0, "A", 1, "g", 1, "v1", 2);
    send_(NS8_LANE_CONTROL, "a", "r");
    go(400);
    CHECK_EQ_INT(count(false, NULL, NS8_GLOBAL_VAR_SYNC), 0);
    CHECK_EQ_INT(F.st.nv_unchanged, 1);
    /* client var: unknown target dropped; known target -> full list */
    ns8_enc_client_var_set(enc(), 0, "A", 1, 777, "c", 1, "x", 1);
    send_(NS8_LANE_CONTROL, "a", "r");
    CHECK_EQ_INT(F.st.dropped[NSR8_DROP_UNKNOWN_TARGET], 1);
    ns8_enc_client_var_set(enc(), 0, "A", 1, 2, "c", 1, "x", 1);
    send_(NS8_LANE_CONTROL, "a", "r");
    go(600);
    const rec *c = last(false, "a", NS8_CLIENT_VAR_SYNC);
    CHECK(c);
    CHECK_MEM(c->p, c->n, "\x0a\x01\x00\x02\x00\x01\x00\x01" "c\x01\x00x\x01\x00", 14);
    /* CLEAR by B: {2: []} at once */
    rec_clear();
    ns8_enc_var_clear(enc(), 0, "B", 1);
    send_(NS8_LANE_CONTROL, "b", "r");
    c = last(false, "a", NS8_CLIENT_VAR_SYNC);
    CHECK(c);
    CHECK_MEM(c->p, c->n, "\x0a\x01\x00\x02\x00\x00\x00", 7);
    /* truncation to 64 code points */
    char longname[100];
    memset(longname, 'n', sizeof(longname));
    ns8_enc_global_var_set(enc(), 0, "A", 1, longname, 100, "v", 1);
    send_(NS8_LANE_CONTROL, "a", "r");
    go(800);
    const nsr8_vtab *t = nsr8_gvars(&F.rs, (const uint8_t *)"r", 1);
    CHECK(t && t->n == 2 && t->v[1].name_len == 64);
    CHECK_EQ_INT(invalid, 0);
}

TEST(objects_ownership)
{
    fx_init();
    hello("a", "r", "A", false);
    hello("b", "r", "B", false);
    uint8_t body[13] = {1, 2, 3};
    ns8_enc_object_pose(enc(), "A", 1, 9, 1, body);
    send_(NS8_LANE_TRANSFORM, "ta", "r");
    CHECK(last(false, "b", NS8_OWNERSHIP_CHANGED));
    ns8_enc_object_pose(enc(), "B", 1, 9, 2, body);
    send_(NS8_LANE_TRANSFORM, "tb", "r");
    CHECK_EQ_INT(F.st.dropped[NSR8_DROP_NOT_OWNER], 1);
    rec_clear();
    ns8_enc_own_req(enc(), "B", 1, NS8_OWN_RELEASE, 9);
    send_(NS8_LANE_CONTROL, "b", "r");
    const rec *j = last(false, "b", NS8_OWNERSHIP_REJECTED);
    CHECK(j);
    CHECK_MEM(j->p, j->n, "\x11\x09\x00\x00\x00\x01\x00\x01", 8);
    CHECK_EQ_INT(nR, 1);
    go(1);
    const rec *o = last(true, NULL, NS8_ROOM_OBJECTS);
    CHECK(o);
    CHECK_MEM(o->who, o->wlen, "r\0obj", 5);
    CHECK_EQ_INT(invalid, 0);
}

TEST(door_and_lanes)
{
    fx_init();
    char room[300];
    memset(room, 'r', sizeof(room));
    room[299] = 0;
    hello("a", room, "A", false);
    CHECK_EQ_INT(F.st.dropped[NSR8_DROP_ROOM_TOO_LONG], 1);
    CHECK_EQ_INT(F.rs.nrooms, 0);
    ns8_enc_hello(enc(), 0, "A", 1);
    send_(NS8_LANE_TRANSFORM, "a", "r");
    CHECK_EQ_INT(F.st.dropped[NSR8_DROP_WRONG_LANE], 1);
    ns8_enc_hello(enc(), 0, "A", 1);
    ns8_put_u8(&E, 0);
    send_(NS8_LANE_CONTROL, "a", "r");
    CHECK_EQ_INT(F.st.dropped[NSR8_DROP_TRAILING], 1);
    CHECK_EQ_INT(F.rs.nrooms, 0);
}

TEST(rest_bridge)
{
    fx_init();
    const uint8_t *r = (const uint8_t *)"r", *d = (const uint8_t *)"D";
    CHECK_EQ_INT(nsr8_cvar_set(&F.rs, r, 1, d, 1, (const uint8_t *)"k", 1,
                               (const uint8_t *)"v", 1, now_ns), NSR8_NV_APPLIED);
    CHECK_EQ_INT(nsr8_cvar_commit(&F.rs, r, 1, d, 1), 0); /* not mapped */
    const nsr8_var *v = nsr8_var_find(nsr8_cvars(&F.rs, r, 1, d, 1), (const uint8_t *)"k", 1);
    CHECK(v && v->value_len == 1 && v->writer == 0);
    hello("a", "r", "A", false);
    hello("dd", "r", "D", false); /* D joins: A learns D's stored variables */
    const rec *c = last(false, "a", NS8_CLIENT_VAR_SYNC);
    CHECK(c);
    CHECK_MEM(c->p, c->n, "\x0a\x01\x00\x02\x00\x01\x00\x01k\x01\x00v\x00\x00", 14);
    rec_clear();
    CHECK_EQ_INT(nsr8_cvar_set(&F.rs, r, 1, d, 1, (const uint8_t *)"k", 1,
                               (const uint8_t *)"w", 1, now_ns), NSR8_NV_APPLIED);
    CHECK_EQ_INT(nsr8_cvar_commit(&F.rs, r, 1, d, 1), 2);
    CHECK_EQ_INT(count(false, NULL, NS8_CLIENT_VAR_SYNC), 2);
    CHECK_EQ_INT(nsr8_cvar_delete(&F.rs, r, 1, d, 1, NULL, 0), 1);
    CHECK_EQ_INT(count(false, NULL, NS8_CLIENT_VAR_SYNC), 4);
    /* a batch of operator writes is one GLOBAL_VAR_SYNC per member, sent at the commit */
    CHECK_EQ_INT(nsr8_gvar_set(&F.rs, r, 1, (const uint8_t *)"g", 1, (const uint8_t *)"1", 1,
                               now_ns), NSR8_NV_APPLIED);
    CHECK_EQ_INT(nsr8_gvar_set(&F.rs, r, 1, (const uint8_t *)"h", 1, (const uint8_t *)"2", 1,
                               now_ns), NSR8_NV_APPLIED);
    CHECK_EQ_INT(count(false, NULL, NS8_GLOBAL_VAR_SYNC), 0);
    nsr8_gvar_commit(&F.rs, r, 1);
    CHECK_EQ_INT(count(false, NULL, NS8_GLOBAL_VAR_SYNC), 2);
    const rec *gs = last(false, "a", NS8_GLOBAL_VAR_SYNC);
    CHECK(gs && gs->n > 3 && gs->p[1] == 2 && gs->p[2] == 0); /* both names in one sync */
    /* an operator's write wins over a client's write of the same variable still waiting in
     * the NV window (it would otherwise overwrite it at the flush) */
    ns8_enc_global_var_set(enc(), 0, "A", 1, "g", 1, "client", 6);
    send_(NS8_LANE_CONTROL, "a", "r");
    ns8_enc_client_var_set(enc(), 0, "A", 1, 2, "k", 1, "client", 6);
    send_(NS8_LANE_CONTROL, "a", "r");
    CHECK_EQ_INT(nsr8_gvar_set(&F.rs, r, 1, (const uint8_t *)"g", 1, (const uint8_t *)"op", 2,
                               now_ns), NSR8_NV_APPLIED);
    nsr8_gvar_commit(&F.rs, r, 1);
    CHECK_EQ_INT(nsr8_cvar_set(&F.rs, r, 1, d, 1, (const uint8_t *)"k", 1,
                               (const uint8_t *)"op", 2, now_ns), NSR8_NV_APPLIED);
    nsr8_cvar_commit(&F.rs, r, 1, d, 1);
    go(ms() + 500);
    v = nsr8_var_find(nsr8_gvars(&F.rs, r, 1), (const uint8_t *)"g", 1);
    CHECK(v && v->value_len == 2 && memcmp(v->value, "op", 2) == 0 && v->writer == 0);
    v = nsr8_var_find(nsr8_cvars(&F.rs, r, 1, d, 1), (const uint8_t *)"k", 1);
    CHECK(v && v->value_len == 2 && memcmp(v->value, "op", 2) == 0 && v->writer == 0);
    CHECK_EQ_INT(invalid, 0);
}

TEST(room_deleted_after_expiry)
{
    fx_init();
    hello("a", "r", "A", false);
    go(7000);
    CHECK_EQ_INT(F.rs.nrooms, 1);
    CHECK_EQ_INT(F.st.clients, 0);
    /* jump close to the end of the 24 h */
    now_ns += 86400ull * 1000 * MS - 10 * 1000 * MS;
    nsr8_tick(&F.rs, now_ns);
    CHECK_EQ_INT(F.rs.nrooms, 1);
    now_ns += 20 * 1000 * MS;
    nsr8_tick(&F.rs, now_ns);
    CHECK_EQ_INT(F.rs.nrooms, 0);
    CHECK_EQ_INT(F.st.rooms, 0);
    CHECK_EQ_INT(F.st.devices, 0);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(join_sync_and_mapping);
    RUN(pose_relay_trailing_and_pose_time);
    RUN(broadcast_cadence);
    RUN(pose_cache_per_room);
    RUN(timeout_and_object_release);
    RUN(hijack_refused_reconnect_allowed);
    RUN(phantoms_refused_zmq_reconnect_rpc_works);
    RUN(stealth_hello_does_not_dirty);
    RUN(rpc_targets_and_sender);
    RUN(network_variables);
    RUN(objects_ownership);
    RUN(door_and_lanes);
    RUN(rest_bridge);
    RUN(room_deleted_after_expiry);
    fx_done();
    free(R);
    rc_buf_release(&mb);
    UNIT_MAIN_END("test_ns8room");
}
