/* test_nsroom.c — tests for src/netsync/nsroom.c without sockets: messages go in through
 * nsy_rooms_input (the transport-independent input path: room check, parse, dispatch, drop
 * counters) and come out through a recording nsy_publish. Loop time is simulated in 1 ms steps
 * and nsy_rooms_tick runs whenever the returned wake time is reached, as netsync.c's timer does.
 *
 * Covered: per-room broadcast cadence (dirty >= tick apart, idle re-broadcast, rooms
 * independent), client numbers (from 1 per room, retained on re-join, expiry), ROOM_TRANSFORM
 * content (stealth excluded, every visible client, <= 50 virtuals, bit-exact bytes, never
 * count 0), client timeout and room deletion, DEVICE_ID_MAPPING coalescing and periodic
 * re-send, network variables (conflict rule, limits, truncation, delta vs full sync, the
 * within-tick rule), sender checks for RPC/NV, and the drop counters of every malformed
 * input kind of the spec's section 5. Every published message is also checked with
 * nsy_check_server_msg (what Unity can read).
 */
#include "unit.h"

#include "netsync/nsroom.h"

#include <math.h>
#include <stdint.h>

#define MS 1000000ull
#define T0 (1000 * MS) /* loop time of "ms 0" in every test */

/* ---- the recording publisher ------------------------------------------------------------- */

typedef struct rmsg {
    uint64_t at;             /* loop ns of the tick that published it */
    uint8_t topic[256];
    size_t tlen;
    uint8_t *p;
    size_t n;
} rmsg;

static rmsg *msgs;
static size_t nmsgs, capmsgs;
static uint64_t rec_now;
static int rec_invalid;      /* published messages that nsy_check_server_msg rejects */

static void rec_publish(void *arg, const uint8_t *topic, size_t tlen, const uint8_t *m,
                        size_t len)
{
    (void)arg;
    if (nmsgs == capmsgs) {
        capmsgs = capmsgs ? capmsgs * 2 : 256;
        msgs = realloc(msgs, capmsgs * sizeof(*msgs));
    }
    rmsg *r = &msgs[nmsgs++];
    r->at = rec_now;
    memcpy(r->topic, topic, tlen);
    r->tlen = tlen;
    r->p = malloc(len ? len : 1);
    memcpy(r->p, m, len);
    r->n = len;
    if (nsy_check_server_msg(m, len) != NSY_OK) rec_invalid++;
}

static void rec_clear(void)
{
    for (size_t i = 0; i < nmsgs; i++) free(msgs[i].p);
    nmsgs = 0;
}

/* ---- fixture ----------------------------------------------------------------------------- */

static struct {
    bool active;
    nsy_rooms rs;
    rc_netsync_stats st;
    uint64_t now;
} F;

static rc_buf mb = RC_BUF_INIT; /* message scratch */

static void fx_done(void)
{
    if (F.active) nsy_rooms_release(&F.rs);
    F.active = false;
    rec_clear();
}

/* fx_init starts a fresh room set at ms 0 (p NULL: the defaults). A test that failed early
 * left its rooms behind; they are released here. */
static void fx_init(const nsy_params *p)
{
    fx_done();
    nsy_params d;
    nsy_params_default(&d);
    memset(&F.st, 0, sizeof(F.st));
    rec_invalid = 0;
    if (nsy_rooms_init(&F.rs, p ? p : &d, &F.st, rec_publish, NULL) < 0) abort();
    F.active = true;
    F.now = T0;
    rec_now = T0;
}

static uint64_t ms_now(void) { return (F.now - T0) / MS; }

/* tick_now runs the tick when a room is due, like netsync.c's timer (armed at rs.wake). */
static void tick_now(void)
{
    rec_now = F.now;
    if (F.now >= F.rs.wake) nsy_rooms_tick(&F.rs, F.now);
}

/* go advances loop time to ms `to` in 1 ms steps, ticking when due. */
static void go(uint64_t to)
{
    while (ms_now() < to) {
        F.now += MS;
        tick_now();
    }
}

static void in_raw(const char *ident, const void *room, size_t room_len, const uint8_t *p,
                   size_t n)
{
    nsy_rooms_input(&F.rs, (const uint8_t *)ident, strlen(ident), room, room_len, p, n, F.now);
}

static void in_buf(const char *ident, const char *room)
{
    in_raw(ident, room, strlen(room), (const uint8_t *)rc_buf_head(&mb), rc_buf_size(&mb));
}

static void fill_body(uint8_t *body, unsigned seed)
{
    for (int i = 0; i < NSY_BODY_SIZE; i += 4) {
        float f = (float)(seed * 1000 + (unsigned)i) * 0.25f - 7.5f;
        memcpy(body + i, &f, 4);
    }
}

static void fill_virt(uint8_t *v, unsigned n)
{
    for (unsigned i = 0; i < n * NSY_TRANSFORM_SIZE; i++) v[i] = (uint8_t)(i * 7 + i / 24);
}

static void enc_begin(nsy_enc *e)
{
    rc_buf_reset(&mb);
    nsy_enc_init(e, &mb);
}

/* tf sends a CLIENT_TRANSFORM of device dev from the DEALER ident. */
static void tf_n(const char *room, const char *ident, const char *dev, unsigned seed,
                 unsigned nvirt)
{
    uint8_t body[NSY_BODY_SIZE], virt[NSY_MAX_VIRTUAL * NSY_TRANSFORM_SIZE];
    fill_body(body, seed);
    fill_virt(virt, NSY_MAX_VIRTUAL);
    nsy_enc e;
    enc_begin(&e);
    nsy_enc_client_transform(&e, dev, strlen(dev), body, (uint8_t)nvirt, virt);
    in_buf(ident, room);
}

static void tf(const char *room, const char *ident, const char *dev) { tf_n(room, ident, dev, 1, 0); }

static void tf_stealth(const char *room, const char *ident, const char *dev)
{
    uint8_t body[NSY_BODY_SIZE];
    float nan = NAN;
    for (int i = 0; i < NSY_BODY_SIZE; i += 4) memcpy(body + i, &nan, 4);
    nsy_enc e;
    enc_begin(&e);
    nsy_enc_client_transform(&e, dev, strlen(dev), body, 0, NULL);
    in_buf(ident, room);
}

static void rpc(const char *room, const char *ident, uint16_t claimed, const char *name,
                const char *args)
{
    nsy_enc e;
    enc_begin(&e);
    nsy_enc_rpc(&e, claimed, name, strlen(name), args, strlen(args));
    in_buf(ident, room);
}

static void gset(const char *room, const char *ident, uint16_t claimed, const char *name,
                 const char *value, double ts)
{
    nsy_enc e;
    enc_begin(&e);
    nsy_enc_global_var_set(&e, claimed, name, strlen(name), value, strlen(value), ts);
    in_buf(ident, room);
}

static void cset(const char *room, const char *ident, uint16_t claimed, uint16_t target,
                 const char *name, const char *value, double ts)
{
    nsy_enc e;
    enc_begin(&e);
    nsy_enc_client_var_set(&e, claimed, target, name, strlen(name), value, strlen(value), ts);
    in_buf(ident, room);
}

/* ---- looking at what was published ------------------------------------------------------- */

static bool topic_is(const rmsg *m, const char *room)
{
    return !room || (m->tlen == strlen(room) && memcmp(m->topic, room, m->tlen) == 0);
}

static size_t count_type(const char *room, int type)
{
    size_t n = 0;
    for (size_t i = 0; i < nmsgs; i++) n += topic_is(&msgs[i], room) && msgs[i].p[0] == type;
    return n;
}

/* nth returns the k-th message of a type on a topic (NULL: none). */
static const rmsg *nth(const char *room, int type, size_t k)
{
    for (size_t i = 0; i < nmsgs; i++)
        if (topic_is(&msgs[i], room) && msgs[i].p[0] == type && k-- == 0) return &msgs[i];
    return NULL;
}

static const rmsg *last(const char *room, int type)
{
    size_t n = count_type(room, type);
    return n ? nth(room, type, n - 1) : NULL;
}

/* rt_numbers lists the client numbers of a ROOM_TRANSFORM in message order. */
static unsigned rt_numbers(const rmsg *m, uint16_t *out, unsigned max)
{
    size_t off = 2 + m->p[1];
    unsigned count = nsy_get_u16(m->p + off), k = 0;
    off += 2;
    for (unsigned i = 0; i < count && k < max; i++) {
        out[k++] = nsy_get_u16(m->p + off);
        off += NSY_ENTRY_FIXED + (size_t)m->p[off + 2 + NSY_BODY_SIZE] * NSY_TRANSFORM_SIZE;
    }
    return count;
}

/* rt_entry returns the offset of entry i of a ROOM_TRANSFORM and its length. */
static size_t rt_entry(const rmsg *m, unsigned i, size_t *len)
{
    size_t off = 4 + m->p[1];
    for (;;) {
        size_t l = NSY_ENTRY_FIXED + (size_t)m->p[off + 2 + NSY_BODY_SIZE] * NSY_TRANSFORM_SIZE;
        if (i-- == 0) {
            *len = l;
            return off;
        }
        off += l;
    }
}

typedef struct mentry {
    uint16_t no;
    uint8_t stealth;
    char id[256];
} mentry;

static unsigned map_entries(const rmsg *m, mentry *out, unsigned max)
{
    unsigned n = nsy_get_u16(m->p + 1);
    size_t off = 3;
    for (unsigned i = 0; i < n && i < max; i++) {
        out[i].no = nsy_get_u16(m->p + off);
        out[i].stealth = m->p[off + 2];
        uint8_t l = m->p[off + 3];
        memcpy(out[i].id, m->p + off + 4, l);
        out[i].id[l] = 0;
        off += 4 + l;
    }
    return n;
}

/* An expected message, written byte by byte (independent of the encoders). */
typedef struct ebuf {
    uint8_t b[8192];
    size_t n;
} ebuf;

static void e_u8(ebuf *e, unsigned v) { e->b[e->n++] = (uint8_t)v; }
static void e_u16(ebuf *e, unsigned v) { e_u8(e, v & 0xFF), e_u8(e, v >> 8); }
static void e_bytes(ebuf *e, const char *s, size_t n) { memcpy(e->b + e->n, s, n), e->n += n; }
static void e_str8(ebuf *e, const char *s) { e_u8(e, (unsigned)strlen(s)), e_bytes(e, s, strlen(s)); }
static void e_str16(ebuf *e, const char *s) { e_u16(e, (unsigned)strlen(s)), e_bytes(e, s, strlen(s)); }
static void e_f64(ebuf *e, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    for (int i = 0; i < 8; i++) e_u8(e, (unsigned)(u >> (8 * i)) & 0xFF);
}
static void e_var(ebuf *e, const char *name, const char *value, double ts, unsigned writer)
{
    e_str8(e, name), e_str16(e, value), e_f64(e, ts), e_u16(e, writer);
}

static uint64_t drops_total(void)
{
    uint64_t n = 0;
    for (int i = 0; i < NSY_DROP__COUNT; i++) n += F.st.dropped[i];
    return n;
}

/* ---- client numbers and ROOM_TRANSFORM content ------------------------------------------- */

TEST(numbers_from_one_per_room)
{
    fx_init(NULL);
    tf("r1", "ia", "A");
    tf("r1", "ib", "B");
    tf("r1", "ic", "C");
    tf("r2", "id", "D");
    tick_now();
    CHECK_EQ_INT(F.st.rooms, 2);
    CHECK_EQ_INT(F.st.clients, 4);
    CHECK_EQ_INT(F.st.joins, 4);
    /* mapping of r1: numbers 1, 2, 3 in join order, byte for byte */
    ebuf w = {.n = 0};
    e_u8(&w, NSY_DEVICE_ID_MAPPING), e_u16(&w, 3);
    e_u16(&w, 1), e_u8(&w, 0), e_str8(&w, "A");
    e_u16(&w, 2), e_u8(&w, 0), e_str8(&w, "B");
    e_u16(&w, 3), e_u8(&w, 0), e_str8(&w, "C");
    CHECK_EQ_INT(count_type("r1", NSY_DEVICE_ID_MAPPING), 1);
    const rmsg *m = nth("r1", NSY_DEVICE_ID_MAPPING, 0);
    CHECK_MEM(m->p, m->n, w.b, w.n);
    /* r2 starts again at 1; its ROOM_TRANSFORM is exactly header + one entry */
    uint8_t body[NSY_BODY_SIZE];
    fill_body(body, 1);
    w.n = 0;
    e_u8(&w, NSY_ROOM_TRANSFORM), e_str8(&w, "r2"), e_u16(&w, 1);
    e_u16(&w, 1), e_bytes(&w, (const char *)body, NSY_BODY_SIZE), e_u8(&w, 0);
    m = nth("r2", NSY_ROOM_TRANSFORM, 0);
    CHECK(m != NULL);
    CHECK_MEM(m->topic, m->tlen, "r2", 2); /* topic = room id exactly */
    CHECK_MEM(m->p, m->n, w.b, w.n);
    w.n = 0;
    e_u8(&w, NSY_DEVICE_ID_MAPPING), e_u16(&w, 1), e_u16(&w, 1), e_u8(&w, 0), e_str8(&w, "D");
    m = nth("r2", NSY_DEVICE_ID_MAPPING, 0);
    CHECK_MEM(m->p, m->n, w.b, w.n);
    /* r1's ROOM_TRANSFORM: all three, the recipients themselves included */
    uint16_t nos[8];
    CHECK_EQ_INT(rt_numbers(nth("r1", NSY_ROOM_TRANSFORM, 0), nos, 8), 3);
    CHECK(nos[0] == 1 && nos[1] == 2 && nos[2] == 3);
    CHECK_EQ_INT(nmsgs, 4); /* two mappings, two ROOM_TRANSFORMs, no NV sync (no variables) */
    CHECK_EQ_INT(rec_invalid, 0);
    /* the empty room id is a valid room of its own */
    tf("", "ie", "E");
    tick_now();
    CHECK(nsy_room_find(&F.rs, (const uint8_t *)"", 0) != NULL);
    CHECK_EQ_INT(rt_numbers(last("", NSY_ROOM_TRANSFORM), nos, 8), 1);
    CHECK_EQ_INT(nos[0], 1);
}

TEST(rejoin_keeps_number_and_appends)
{
    fx_init(NULL);
    tf("r", "ia", "A");
    tf("r", "ib", "B");
    tick_now();
    /* A goes silent and times out while B keeps sending */
    for (unsigned t = 10; t <= 1200; t += 10) {
        go(t);
        tf("r", "ib", "B");
        tick_now();
    }
    CHECK_EQ_INT(F.st.timeouts, 1);
    CHECK_EQ_INT(F.st.clients, 1);
    CHECK_EQ_INT(F.st.devices, 2); /* A keeps its number while departed */
    rec_clear();
    go(1205);
    tf("r", "ia2", "A"); /* re-join from a new DEALER */
    tick_now();
    CHECK_EQ_INT(F.st.joins, 3);
    CHECK_EQ_INT(nmsgs, 0); /* broadcast at 1200 ms: the next one is due at 1250 ms */
    go(1250);
    CHECK_EQ_INT(nmsgs, 2);
    uint16_t nos[4];
    const rmsg *m = last("r", NSY_ROOM_TRANSFORM);
    CHECK(m != NULL);
    CHECK_EQ_INT(rt_numbers(m, nos, 4), 2);
    CHECK_EQ_INT(nos[0], 2); /* join order: B, then the re-joined A */
    CHECK_EQ_INT(nos[1], 1); /* same number as before */
    mentry me[4];
    CHECK_EQ_INT(map_entries(last("r", NSY_DEVICE_ID_MAPPING), me, 4), 2);
    CHECK(me[0].no == 1 && strcmp(me[0].id, "A") == 0); /* mapping: first assignment order */
    CHECK(me[1].no == 2 && strcmp(me[1].id, "B") == 0);
    tf("r", "ic", "C");
    tick_now();
    CHECK_EQ_INT(nsy_room_find_device(nsy_room_find(&F.rs, (const uint8_t *)"r", 1),
                                     (const uint8_t *)"C", 1), 2);
    go(1300);
    m = last("r", NSY_ROOM_TRANSFORM);
    CHECK_EQ_INT(rt_numbers(m, nos, 4), 3);
    CHECK_EQ_INT(nos[2], 3);
    CHECK_EQ_INT(rec_invalid, 0);
}

TEST(device_expiry_frees_the_number)
{
    nsy_params p;
    nsy_params_default(&p);
    p.expiry_ns = 2000 * MS;
    p.expiry_sweep_ns = 1000 * MS;
    fx_init(&p);
    tf("r", "ia", "A");
    tf("r", "ib", "B");
    tick_now();
    size_t first_without_a = 0;
    for (unsigned t = 20; t <= 5000; t += 20) {
        go(t);
        tf("r", "ib", "B");
        tick_now();
        if (!first_without_a && F.st.devices == 1) first_without_a = t;
    }
    /* A departed at 1050 ms; sweeps run every second, expiry after 2 s: gone at the 4 s sweep */
    CHECK(first_without_a > 3050 && first_without_a <= 4100);
    mentry me[4];
    CHECK_EQ_INT(map_entries(last("r", NSY_DEVICE_ID_MAPPING), me, 4), 1);
    CHECK(me[0].no == 2 && strcmp(me[0].id, "B") == 0);
    tf("r", "ia", "A"); /* a new device now: the next fresh number, not 1 */
    CHECK_EQ_INT(nsy_room_find_device(nsy_room_find(&F.rs, (const uint8_t *)"r", 1),
                                     (const uint8_t *)"A", 1), 1);
    CHECK_EQ_INT(nsy_room_find(&F.rs, (const uint8_t *)"r", 1)->dev[1].no, 3);
    CHECK_EQ_INT(F.st.devices, 2);
}

TEST(room_transform_stealth_and_recipient)
{
    fx_init(NULL);
    tf("r", "ia", "A");
    tf_stealth("r", "is", "S");
    tf_n("r", "ib", "B", 2, 0);
    tick_now();
    uint16_t nos[4];
    const rmsg *m = nth("r", NSY_ROOM_TRANSFORM, 0);
    CHECK_EQ_INT(rt_numbers(m, nos, 4), 2); /* S (number 2) is never in it */
    CHECK(nos[0] == 1 && nos[1] == 3);
    CHECK_EQ_INT(m->n, 4 + 1 + 2 * NSY_ENTRY_FIXED);
    mentry me[4];
    CHECK_EQ_INT(map_entries(nth("r", NSY_DEVICE_ID_MAPPING, 0), me, 4), 3);
    CHECK(me[0].stealth == 0 && me[1].stealth == 1 && me[2].stealth == 0);
    CHECK_EQ_INT(F.st.clients, 3); /* stealth clients are live clients */
    /* S turns visible: in the next broadcast (and a new mapping with its flag cleared) */
    go(50);
    tf("r", "is", "S");
    tf("r", "ia", "A");
    tf_n("r", "ib", "B", 2, 0);
    tick_now();
    m = last("r", NSY_ROOM_TRANSFORM);
    CHECK_EQ_INT(m->at, T0 + 50 * MS);
    CHECK_EQ_INT(rt_numbers(m, nos, 4), 3);
    CHECK(nos[0] == 1 && nos[1] == 2 && nos[2] == 3);
    CHECK_EQ_INT(count_type("r", NSY_DEVICE_ID_MAPPING), 2);
    CHECK_EQ_INT(map_entries(last("r", NSY_DEVICE_ID_MAPPING), me, 4), 3);
    CHECK_EQ_INT(me[1].stealth, 0);
    /* and back to stealth */
    go(100);
    tf_stealth("r", "is", "S");
    tf("r", "ia", "A");
    tf_n("r", "ib", "B", 2, 0);
    tick_now();
    CHECK_EQ_INT(rt_numbers(last("r", NSY_ROOM_TRANSFORM), nos, 4), 2);
    CHECK_EQ_INT(map_entries(last("r", NSY_DEVICE_ID_MAPPING), me, 4), 3);
    CHECK_EQ_INT(me[1].stealth, 1);
    CHECK_EQ_INT(rec_invalid, 0);
}

TEST(never_count_zero)
{
    fx_init(NULL);
    /* a room with only a stealth client: a mapping, never a ROOM_TRANSFORM */
    for (unsigned t = 0; t <= 2000; t += 100) {
        go(t);
        tf_stealth("s", "is", "S");
        tick_now();
    }
    CHECK_EQ_INT(count_type("s", NSY_ROOM_TRANSFORM), 0);
    CHECK_EQ_INT(count_type("s", NSY_DEVICE_ID_MAPPING), 3); /* at 0, 1000, 2000 ms */
    /* a visible client joins and leaves (timeout): no count-0 message after it left */
    tf("s", "ia", "A");
    tick_now();
    CHECK_EQ_INT(count_type("s", NSY_ROOM_TRANSFORM), 1);
    for (unsigned t = 2100; t <= 4000; t += 100) {
        go(t);
        tf_stealth("s", "is", "S");
        tick_now();
    }
    CHECK_EQ_INT(F.st.timeouts, 1);
    /* A was in the broadcasts at 2000, 2500, 3000 ms; after the 3050 ms timeout nothing */
    CHECK_EQ_INT(count_type("s", NSY_ROOM_TRANSFORM), 3);
    CHECK(last("s", NSY_ROOM_TRANSFORM)->at <= T0 + 3050 * MS);
    CHECK_EQ_INT(rec_invalid, 0); /* nsy_check_server_msg rejects count 0 */
}

TEST(virtuals_clamped_and_bytes_exact)
{
    fx_init(NULL);
    /* 255 virtuals announced and present: the entry carries exactly the first 50 */
    static uint8_t m[1 + 1 + 1 + NSY_BODY_SIZE + 1 + 255 * NSY_TRANSFORM_SIZE];
    size_t n = 0;
    m[n++] = NSY_CLIENT_TRANSFORM;
    m[n++] = 1;
    m[n++] = 'V';
    for (int i = 0; i < NSY_BODY_SIZE; i++) m[n++] = (uint8_t)unit_rand();
    m[n++] = 255;
    for (int i = 0; i < 255 * NSY_TRANSFORM_SIZE; i++) m[n++] = (uint8_t)unit_rand();
    /* odd float bit patterns: -0, a NaN payload, a denormal, +inf */
    static const uint32_t odd[] = {0x80000000u, 0x7FC01234u, 0x00000001u, 0x7F800000u};
    memcpy(m + 3, odd, sizeof(odd));
    in_raw("iv", "r", 1, m, n);
    tick_now();
    CHECK_EQ_INT(F.st.nvirt_clamped, 1);
    const rmsg *r = nth("r", NSY_ROOM_TRANSFORM, 0);
    CHECK(r != NULL);
    size_t len, off = rt_entry(r, 0, &len);
    CHECK_EQ_INT(len, NSY_ENTRY_MAX);
    CHECK_EQ_INT(r->p[off + 2 + NSY_BODY_SIZE], 50);
    CHECK(memcmp(r->p + off + 2, m + 3, NSY_BODY_SIZE) == 0);
    CHECK(memcmp(r->p + off + NSY_ENTRY_FIXED, m + 3 + NSY_BODY_SIZE + 1, 50 * NSY_TRANSFORM_SIZE) == 0);
    CHECK_EQ_INT(r->n, 4 + 1 + NSY_ENTRY_MAX);
    /* fewer virtuals later: the entry shrinks */
    go(50);
    tf_n("r", "iv", "V", 3, 3);
    tick_now();
    r = last("r", NSY_ROOM_TRANSFORM);
    CHECK_EQ_INT(r->at, T0 + 50 * MS);
    off = rt_entry(r, 0, &len);
    CHECK_EQ_INT(len, NSY_ENTRY_FIXED + 3 * NSY_TRANSFORM_SIZE);
    uint8_t body[NSY_BODY_SIZE], virt[3 * NSY_TRANSFORM_SIZE];
    fill_body(body, 3);
    fill_virt(virt, 3);
    CHECK(memcmp(r->p + off + 2, body, NSY_BODY_SIZE) == 0);
    CHECK(memcmp(r->p + off + NSY_ENTRY_FIXED, virt, sizeof(virt)) == 0);
    CHECK_EQ_INT(rec_invalid, 0);
}

TEST(room_transform_full_size)
{
    /* Three clients with 50 virtuals in a 196-byte room: the message is 4 + 196 + 3 * 1299 =
     * 4097 bytes, one more than publish_room_transform reserved (4096, a power of two, so the
     * scratch buffer had no slack): a heap overflow that ASan reports. */
    fx_init(NULL);
    char room[197];
    memset(room, 'q', 196);
    room[196] = 0;
    tf_n(room, "i1", "D1", 1, 50);
    tf_n(room, "i2", "D2", 2, 50);
    tf_n(room, "i3", "D3", 3, 50);
    tick_now();
    const rmsg *r = nth(room, NSY_ROOM_TRANSFORM, 0);
    CHECK(r != NULL);
    CHECK_EQ_INT(r->n, 4 + 196 + 3 * NSY_ENTRY_MAX);
    uint16_t nos[4];
    CHECK_EQ_INT(rt_numbers(r, nos, 4), 3);
    CHECK_EQ_INT(rec_invalid, 0);
}

/* ---- cadence ----------------------------------------------------------------------------- */

TEST(dirty_room_cadence)
{
    fx_init(NULL);
    /* a client sending every 10 ms: one broadcast every 50 ms exactly, never closer */
    for (unsigned t = 0; t <= 1000; t += 10) {
        go(t);
        tf_n("r", "ia", "A", t, 0);
        tick_now();
    }
    CHECK_EQ_INT(count_type("r", NSY_ROOM_TRANSFORM), 21);
    for (size_t k = 0; k < 21; k++) CHECK_EQ_INT(nth("r", NSY_ROOM_TRANSFORM, k)->at, T0 + k * 50 * MS);
    /* each broadcast carries the latest transform received before it: the tick at 1000 ms
     * ran before that millisecond's input, which goes out at 1050 ms */
    uint8_t body[NSY_BODY_SIZE];
    size_t len, off;
    fill_body(body, 990);
    off = rt_entry(last("r", NSY_ROOM_TRANSFORM), 0, &len);
    CHECK(memcmp(last("r", NSY_ROOM_TRANSFORM)->p + off + 2, body, NSY_BODY_SIZE) == 0);
    go(1300);
    CHECK_EQ_INT(count_type("r", NSY_ROOM_TRANSFORM), 22); /* idle re-broadcast is at 1550 */
    CHECK_EQ_INT(last("r", NSY_ROOM_TRANSFORM)->at, T0 + 1050 * MS);
    fill_body(body, 1000);
    off = rt_entry(last("r", NSY_ROOM_TRANSFORM), 0, &len);
    CHECK(memcmp(last("r", NSY_ROOM_TRANSFORM)->p + off + 2, body, NSY_BODY_SIZE) == 0);
    /* quiet for longer than a tick, then a transform: published at once, the next one a
     * full tick later */
    tf("r", "ia", "A");
    CHECK(F.rs.wake <= F.now); /* input lowered the wake time */
    tick_now();
    CHECK_EQ_INT(count_type("r", NSY_ROOM_TRANSFORM), 23);
    CHECK_EQ_INT(last("r", NSY_ROOM_TRANSFORM)->at, T0 + 1300 * MS);
    go(1310);
    tf("r", "ia", "A");
    tick_now();
    CHECK_EQ_INT(F.rs.wake, T0 + 1350 * MS);
    go(1349);
    CHECK_EQ_INT(count_type("r", NSY_ROOM_TRANSFORM), 23);
    go(1350);
    CHECK_EQ_INT(count_type("r", NSY_ROOM_TRANSFORM), 24);
    CHECK_EQ_INT(last("r", NSY_ROOM_TRANSFORM)->at, T0 + 1350 * MS);
    CHECK_EQ_INT(F.st.room_transforms_out, 24);
    CHECK_EQ_INT(rec_invalid, 0);
}

TEST(idle_room_rebroadcast)
{
    nsy_params p;
    nsy_params_default(&p);
    p.client_timeout_ns = 10000 * MS; /* one transform, then silence that is not a timeout */
    fx_init(&p);
    tf("r", "ia", "A");
    tick_now();
    go(3000);
    CHECK_EQ_INT(count_type("r", NSY_ROOM_TRANSFORM), 7);
    const rmsg *first = nth("r", NSY_ROOM_TRANSFORM, 0);
    for (size_t k = 0; k < 7; k++) {
        const rmsg *m = nth("r", NSY_ROOM_TRANSFORM, k);
        CHECK_EQ_INT(m->at, T0 + k * 500 * MS);
        CHECK_MEM(m->p, m->n, first->p, first->n); /* the unchanged state, identical */
    }
    /* housekeeping every tick, nothing else published in between */
    CHECK_EQ_INT(nmsgs, 7 + 4); /* + mappings at 0, 1000, 2000, 3000 ms */
}

TEST(rooms_keep_their_own_cadence)
{
    nsy_params p;
    nsy_params_default(&p);
    p.client_timeout_ns = 10000 * MS;
    fx_init(&p);
    for (unsigned t = 0; t <= 1200; t++) {
        go(t);
        if (t % 10 == 0) tf("ra", "ia", "A");
        if (t >= 17 && t % 10 == 7) tf("rb", "ib", "B");
        if (t == 5) tf("rc", "ic", "C"); /* then idle */
        tick_now();
    }
    CHECK_EQ_INT(count_type("ra", NSY_ROOM_TRANSFORM), 25);
    for (size_t k = 0; k < 25; k++) CHECK_EQ_INT(nth("ra", NSY_ROOM_TRANSFORM, k)->at, T0 + k * 50 * MS);
    /* rb keeps its own phase (17 ms), not ra's */
    CHECK_EQ_INT(count_type("rb", NSY_ROOM_TRANSFORM), 24);
    for (size_t k = 0; k < 24; k++)
        CHECK_EQ_INT(nth("rb", NSY_ROOM_TRANSFORM, k)->at, T0 + (17 + k * 50) * MS);
    /* rc idles at 0.5 s from its own start, whatever the busy rooms do */
    CHECK_EQ_INT(count_type("rc", NSY_ROOM_TRANSFORM), 3);
    for (size_t k = 0; k < 3; k++) CHECK_EQ_INT(nth("rc", NSY_ROOM_TRANSFORM, k)->at, T0 + (5 + k * 500) * MS);
    CHECK_EQ_INT(rec_invalid, 0);
}

/* heap_ok checks the due-time heap: every room once, each no earlier than its parent, and
 * wake = the earliest due time. */
static bool heap_ok(void)
{
    const nsy_rooms *rs = &F.rs;
    uint32_t n = 0;
    for (const nsy_room *r = rs->head; r; r = r->next, n++)
        if (r->due.slot >= rs->due.n || rs->due.v[r->due.slot] != &r->due) return false;
    if (n != rs->nrooms || n != rs->due.n) return false;
    for (uint32_t i = 1; i < rs->due.n; i++)
        if (rs->due.v[(i - 1) / 2]->key > rs->due.v[i]->key) return false;
    return rs->wake == (rs->due.n ? rs->due.v[0]->key : UINT64_MAX);
}

TEST(many_staggered_rooms)
{
    /* 300 rooms whose clients start 0..49 ms apart and send every 10 ms; a third of them stop
     * at 600 ms and are deleted after the timeout while the others go on. Every room keeps
     * its exact 50 ms phase, and the tick only ever looks at due rooms. */
    fx_init(NULL);
    enum { NR = 300 };
    char room[NR][8], ident[NR][8];
    for (unsigned k = 0; k < NR; k++) {
        snprintf(room[k], sizeof(room[k]), "m%u", k);
        snprintf(ident[k], sizeof(ident[k]), "i%u", k);
    }
    for (unsigned t = 0; t <= 2000; t++) {
        go(t);
        for (unsigned k = 0; k < NR; k++) {
            unsigned start = k % 50;
            if (t >= start && (t - start) % 10 == 0 && (k % 3 != 0 || t < 600))
                tf(room[k], ident[k], "D");
        }
        tick_now();
        if (t % 97 == 0) CHECK(heap_ok());
    }
    CHECK(heap_ok());
    CHECK_EQ_INT(F.rs.nrooms, NR - NR / 3);
    for (unsigned k = 1; k < NR; k += 3) {
        size_t n = count_type(room[k], NSY_ROOM_TRANSFORM);
        CHECK_EQ_INT(n, (2000 - k % 50) / 50 + 1);
        for (size_t i = 0; i < n; i++)
            CHECK_EQ_INT(nth(room[k], NSY_ROOM_TRANSFORM, i)->at, T0 + (k % 50 + i * 50) * MS);
    }
    CHECK_EQ_INT(rec_invalid, 0);
}

/* ---- timeouts ---------------------------------------------------------------------------- */

TEST(client_timeout_and_room_deletion)
{
    fx_init(NULL);
    tf("r", "ia", "A");
    tf_stealth("r", "is", "S");
    tf("r", "ib", "B");
    tick_now();
    uint64_t a_gone = 0;
    for (unsigned t = 10; t <= 1100; t += 10) {
        go(t);
        tf("r", "ib", "B");
        tick_now();
        if (!a_gone && F.st.timeouts) a_gone = t;
    }
    /* silent since 0 ms; housekeeping every 50 ms; out at the first check after 1 s */
    CHECK_EQ_INT(a_gone, 1050);
    CHECK_EQ_INT(F.st.timeouts, 2); /* A and S (stealth clients time out too) */
    CHECK_EQ_INT(F.st.clients, 1);
    CHECK_EQ_INT(F.st.devices, 3);
    /* the mapping of the timeout tick still lists the departed, with their own flags */
    const rmsg *m = nth("r", NSY_DEVICE_ID_MAPPING, 2); /* 0 ms, 1000 ms (periodic), 1050 ms */
    CHECK(m != NULL);
    CHECK_EQ_INT(m->at, T0 + 1050 * MS);
    mentry me[4];
    CHECK_EQ_INT(map_entries(m, me, 4), 3);
    CHECK(me[0].no == 1 && me[0].stealth == 0);
    CHECK(me[1].no == 2 && me[1].stealth == 1); /* a departed stealth client stays stealth */
    CHECK(me[2].no == 3 && me[2].stealth == 0);
    uint16_t nos[4];
    m = last("r", NSY_ROOM_TRANSFORM);
    CHECK_EQ_INT(m->at, T0 + 1100 * MS);
    CHECK_EQ_INT(rt_numbers(m, nos, 4), 1);
    CHECK_EQ_INT(nos[0], 3);
    CHECK_EQ_INT(rt_numbers(nth("r", NSY_ROOM_TRANSFORM, 20), nos, 4), 2); /* 1000 ms: A, B */
    CHECK_EQ_INT(rt_numbers(nth("r", NSY_ROOM_TRANSFORM, 21), nos, 4), 1); /* 1050 ms: B */
    /* B goes silent: idle re-broadcasts, then the room is deleted with its state */
    gset("r", "ib", 3, "g", "v", 1.0);
    go(2150);
    CHECK_EQ_INT(F.st.timeouts, 3);
    CHECK(nsy_room_find(&F.rs, (const uint8_t *)"r", 1) == NULL);
    CHECK_EQ_INT(F.st.rooms, 0);
    CHECK_EQ_INT(F.st.clients, 0);
    CHECK_EQ_INT(F.st.devices, 0);
    CHECK_EQ_INT(F.rs.wake, UINT64_MAX);
    /* B's last transform (1100 ms) went out at 1150 ms, idle again at 1650; none after */
    CHECK_EQ_INT(last("r", NSY_ROOM_TRANSFORM)->at, T0 + 1650 * MS);
    m = last("r", NSY_DEVICE_ID_MAPPING); /* the departures were announced before deletion */
    CHECK_EQ_INT(m->at, T0 + 2150 * MS);
    CHECK_EQ_INT(map_entries(m, me, 4), 3);
    /* a new room of the same name starts from scratch: numbers from 1, no variables */
    size_t before = nmsgs;
    tf("r", "ib", "B");
    tick_now();
    CHECK_EQ_INT(nsy_room_find(&F.rs, (const uint8_t *)"r", 1)->dev[0].no, 1);
    CHECK_EQ_INT(nmsgs - before, 2); /* mapping + ROOM_TRANSFORM, no GLOBAL_VAR_SYNC */
    CHECK_EQ_INT(rec_invalid, 0);
}

/* ---- DEVICE_ID_MAPPING ------------------------------------------------------------------- */

TEST(mapping_coalesced_in_join_storm)
{
    fx_init(NULL);
    char dev[16];
    tf("r", "i0", "dev0");
    tick_now();
    CHECK_EQ_INT(count_type("r", NSY_DEVICE_ID_MAPPING), 1);
    /* 199 joins within the first 40 ms: one mapping at the next tick with all 200 */
    for (unsigned i = 1; i < 200; i++) {
        go(i / 5);
        snprintf(dev, sizeof(dev), "dev%u", i);
        tf("r", dev, dev);
        tick_now();
    }
    go(100);
    CHECK_EQ_INT(count_type("r", NSY_DEVICE_ID_MAPPING), 2);
    mentry *me = calloc(300, sizeof(*me));
    CHECK_EQ_INT(map_entries(last("r", NSY_DEVICE_ID_MAPPING), me, 300), 200);
    CHECK_EQ_INT(last("r", NSY_DEVICE_ID_MAPPING)->at, T0 + 50 * MS);
    free(me);
    /* 100 more, one per ms: mappings at most once per 50 ms (101, 151, 201 ms) */
    for (unsigned i = 200; i < 300; i++) {
        go(101 + (i - 200));
        snprintf(dev, sizeof(dev), "dev%u", i);
        tf("r", dev, dev);
        tick_now();
    }
    go(250);
    CHECK_EQ_INT(count_type("r", NSY_DEVICE_ID_MAPPING), 5);
    for (size_t k = 2; k < 5; k++)
        CHECK(nth("r", NSY_DEVICE_ID_MAPPING, k)->at - nth("r", NSY_DEVICE_ID_MAPPING, k - 1)->at >=
              50 * MS);
    me = calloc(300, sizeof(*me));
    unsigned n = map_entries(last("r", NSY_DEVICE_ID_MAPPING), me, 300);
    bool ok = n == 300;
    for (unsigned i = 0; ok && i < 300; i++) {
        snprintf(dev, sizeof(dev), "dev%u", i);
        ok = me[i].no == i + 1 && me[i].stealth == 0 && strcmp(me[i].id, dev) == 0;
    }
    free(me);
    CHECK(ok);
    CHECK_EQ_INT(F.st.mappings_out, 5);
    CHECK_EQ_INT(F.st.joins, 300);
    CHECK_EQ_INT(rec_invalid, 0);
}

TEST(mapping_once_per_tick_when_passes_interleave)
{
    /* A room's housekeeping runs every tick, but a quiet room that gets a visible transform
     * runs at once as well; the mapping still waits for a full tick after the last one. */
    fx_init(NULL);
    tf("r", "ia", "A");
    tick_now();
    go(120);
    tf_stealth("r", "is", "S"); /* a join that does not dirty the broadcast */
    tick_now();
    go(150);
    CHECK_EQ_INT(count_type("r", NSY_DEVICE_ID_MAPPING), 2);
    CHECK_EQ_INT(last("r", NSY_DEVICE_ID_MAPPING)->at, T0 + 150 * MS);
    go(151);
    tf("r", "ib", "B"); /* a visible join one millisecond later: broadcast at once */
    tick_now();
    CHECK_EQ_INT(last("r", NSY_ROOM_TRANSFORM)->at, T0 + 151 * MS);
    CHECK_EQ_INT(count_type("r", NSY_DEVICE_ID_MAPPING), 2); /* not again within the tick */
    go(250);
    CHECK_EQ_INT(count_type("r", NSY_DEVICE_ID_MAPPING), 3);
    const rmsg *m = last("r", NSY_DEVICE_ID_MAPPING);
    CHECK_EQ_INT(m->at, T0 + 201 * MS);
    mentry me[4];
    CHECK_EQ_INT(map_entries(m, me, 4), 3);
    CHECK(me[2].no == 3 && strcmp(me[2].id, "B") == 0);
}

TEST(mapping_periodic_for_late_subscribers)
{
    fx_init(NULL);
    tf("r", "ia", "A");
    tf("r", "ib", "B");
    tick_now();
    for (unsigned t = 20; t <= 3500; t += 20) {
        go(t);
        tf("r", "ia", "A");
        tf("r", "ib", "B");
        tick_now();
    }
    /* no membership change after 0 ms, yet a mapping every second */
    CHECK_EQ_INT(count_type("r", NSY_DEVICE_ID_MAPPING), 4);
    const rmsg *first = nth("r", NSY_DEVICE_ID_MAPPING, 0);
    for (size_t k = 0; k < 4; k++) {
        const rmsg *m = nth("r", NSY_DEVICE_ID_MAPPING, k);
        CHECK_EQ_INT(m->at, T0 + k * 1000 * MS);
        CHECK_MEM(m->p, m->n, first->p, first->n);
    }
    CHECK_EQ_INT(rec_invalid, 0);
}

/* ---- network variables ------------------------------------------------------------------- */

/* three clients A=1 (ident ia), B=2 (ib), C=3 (ic) in room "r", first tick done, record clear */
static void three_clients(const nsy_params *p)
{
    fx_init(p);
    tf("r", "ia", "A");
    tf("r", "ib", "B");
    tf("r", "ic", "C");
    tick_now();
    rec_clear();
}

/* keep_alive advances to ms t with every client of three_clients sending every 20 ms. */
static void keep_alive(unsigned t)
{
    while (ms_now() < t) {
        unsigned next = (unsigned)ms_now() / 20 * 20 + 20;
        go(next < t ? next : t);
        if (ms_now() % 20 == 0) {
            tf("r", "ia", "A");
            tf("r", "ib", "B");
            tf("r", "ic", "C");
        }
        tick_now();
    }
}

TEST(nv_conflict_rule)
{
    three_clients(NULL);
    gset("r", "ib", 2, "g", "x", 10.0);
    CHECK_EQ_INT(F.st.nv_applied, 1);
    keep_alive(50);
    ebuf w = {.n = 0};
    e_u8(&w, NSY_GLOBAL_VAR_SYNC), e_u16(&w, 1), e_var(&w, "g", "x", 10.0, 2);
    CHECK_EQ_INT(count_type("r", NSY_GLOBAL_VAR_SYNC), 1);
    const rmsg *m = last("r", NSY_GLOBAL_VAR_SYNC);
    CHECK_MEM(m->p, m->n, w.b, w.n);
    gset("r", "ia", 1, "g", "y", 9.0);  /* older: rejected */
    gset("r", "ia", 1, "g", "y", 10.0); /* same time, lower sender: rejected */
    CHECK_EQ_INT(F.st.nv_stale, 2);
    gset("r", "ib", 2, "g", "x", 11.0); /* equal value: a no-op, timestamp stays 10 */
    CHECK_EQ_INT(F.st.nv_unchanged, 1);
    keep_alive(100);
    CHECK_EQ_INT(count_type("r", NSY_GLOBAL_VAR_SYNC), 1); /* nothing applied, nothing synced */
    gset("r", "ic", 3, "g", "z", 10.0); /* same time, higher sender: wins (ts is still 10) */
    CHECK_EQ_INT(F.st.nv_applied, 2);
    gset("r", "ic", 3, "g", "q", 10.0); /* same time, same sender: wins */
    CHECK_EQ_INT(F.st.nv_applied, 3);
    gset("r", "ia", 1, "g", "n", 10.5); /* newer: wins whoever sends */
    CHECK_EQ_INT(F.st.nv_applied, 4);
    keep_alive(150);
    w.n = 0;
    e_u8(&w, NSY_GLOBAL_VAR_SYNC), e_u16(&w, 1), e_var(&w, "g", "n", 10.5, 1);
    CHECK_EQ_INT(count_type("r", NSY_GLOBAL_VAR_SYNC), 2);
    m = last("r", NSY_GLOBAL_VAR_SYNC);
    CHECK_MEM(m->p, m->n, w.b, w.n);
    /* the same rule for client variables, per (target, name) */
    cset("r", "ic", 3, 1, "hp", "10", 5.0);
    cset("r", "ib", 2, 1, "hp", "20", 5.0); /* tie, lower sender */
    cset("r", "ib", 2, 2, "hp", "20", 5.0); /* another target: its own variable */
    CHECK_EQ_INT(F.st.nv_stale, 3);
    CHECK_EQ_INT(F.st.nv_applied, 6);
    CHECK_EQ_INT(F.st.nv_in, 10);
    keep_alive(200);
    w.n = 0;
    e_u8(&w, NSY_CLIENT_VAR_SYNC), e_u16(&w, 2);
    e_u16(&w, 1), e_u16(&w, 1), e_var(&w, "hp", "10", 5.0, 3);
    e_u16(&w, 2), e_u16(&w, 1), e_var(&w, "hp", "20", 5.0, 2);
    CHECK_EQ_INT(count_type("r", NSY_CLIENT_VAR_SYNC), 1);
    m = last("r", NSY_CLIENT_VAR_SYNC);
    CHECK_MEM(m->p, m->n, w.b, w.n);
    CHECK_EQ_INT(rec_invalid, 0);
}

TEST(nv_latest_timestamp_wins_within_a_tick)
{
    /* The reference keeps the last arrival of a 50 ms window whatever its timestamp (its
     * defect 7); here sets apply on arrival with the conflict rule, and a tick syncs each
     * changed variable once with its final value. */
    three_clients(NULL);
    gset("r", "ia", 1, "g", "new", 20.0);
    gset("r", "ib", 2, "g", "old", 15.0); /* arrives later, older: loses */
    gset("r", "ia", 1, "h", "1", 1.0);
    gset("r", "ia", 1, "h", "2", 2.0);
    gset("r", "ia", 1, "h", "3", 3.0);
    CHECK_EQ_INT(F.st.nv_applied, 4);
    CHECK_EQ_INT(F.st.nv_stale, 1);
    keep_alive(50);
    ebuf w = {.n = 0};
    e_u8(&w, NSY_GLOBAL_VAR_SYNC), e_u16(&w, 2);
    e_var(&w, "g", "new", 20.0, 1), e_var(&w, "h", "3", 3.0, 1);
    CHECK_EQ_INT(count_type("r", NSY_GLOBAL_VAR_SYNC), 1);
    const rmsg *m = last("r", NSY_GLOBAL_VAR_SYNC);
    CHECK_MEM(m->p, m->n, w.b, w.n);
    /* the sync is published in the tick after the set, not later */
    CHECK_EQ_INT(m->at, T0 + 50 * MS);
}

TEST(nv_claimed_sender_rewritten)
{
    three_clients(NULL);
    gset("r", "ia", 999, "g", "v", 1.0);    /* A claims 999: recorded as writer 1 */
    cset("r", "ib", 1, 777, "t", "w", 1.0); /* B claims to be A; any target number is fine */
    CHECK_EQ_INT(F.st.nv_rewritten, 2);
    keep_alive(50);
    ebuf w = {.n = 0};
    e_u8(&w, NSY_GLOBAL_VAR_SYNC), e_u16(&w, 1), e_var(&w, "g", "v", 1.0, 1);
    const rmsg *m = last("r", NSY_GLOBAL_VAR_SYNC);
    CHECK(m != NULL);
    CHECK_MEM(m->p, m->n, w.b, w.n);
    w.n = 0;
    e_u8(&w, NSY_CLIENT_VAR_SYNC), e_u16(&w, 1), e_u16(&w, 777), e_u16(&w, 1);
    e_var(&w, "t", "w", 1.0, 2);
    m = last("r", NSY_CLIENT_VAR_SYNC);
    CHECK(m != NULL);
    CHECK_MEM(m->p, m->n, w.b, w.n);
}

TEST(nv_limits_and_empty_name)
{
    three_clients(NULL);
    char name[16];
    for (int i = 0; i < 25; i++) {
        snprintf(name, sizeof(name), "g%02d", i);
        gset("r", "ia", 1, name, "v", 1.0);
    }
    CHECK_EQ_INT(F.st.nv_applied, 20);
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_NV_LIMIT], 5);
    gset("r", "ia", 1, "g05", "changed", 2.0); /* an existing name still updates */
    CHECK_EQ_INT(F.st.nv_applied, 21);
    /* per target: 20 for target 1 and 20 more for target 2 */
    for (int i = 0; i < 21; i++) {
        snprintf(name, sizeof(name), "c%02d", i);
        cset("r", "ib", 2, 1, name, "v", 1.0);
        cset("r", "ib", 2, 2, name, "v", 1.0);
    }
    CHECK_EQ_INT(F.st.nv_applied, 61);
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_NV_LIMIT], 7);
    gset("r", "ia", 1, "", "v", 1.0);
    cset("r", "ia", 1, 1, "", "v", 1.0);
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_NV_EMPTY_NAME], 2);
    CHECK_EQ_INT(F.st.nv_in, 25 + 1 + 42 + 2);
    keep_alive(50);
    const rmsg *m = last("r", NSY_GLOBAL_VAR_SYNC);
    CHECK(m != NULL);
    CHECK_EQ_INT(nsy_get_u16(m->p + 1), 20);
    /* g00..g19 kept, in order; g05 with its new value */
    ebuf w = {.n = 0};
    e_u8(&w, NSY_GLOBAL_VAR_SYNC), e_u16(&w, 20);
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "g%02d", i);
        e_var(&w, name, i == 5 ? "changed" : "v", i == 5 ? 2.0 : 1.0, 1);
    }
    CHECK_MEM(m->p, m->n, w.b, w.n);
    m = last("r", NSY_CLIENT_VAR_SYNC);
    CHECK(m != NULL);
    CHECK_EQ_INT(nsy_get_u16(m->p + 1), 2);
    CHECK_EQ_INT(nsy_get_u16(m->p + 5), 20);
    CHECK_EQ_INT(rec_invalid, 0);
}

TEST(nv_target_limit)
{
    nsy_params p;
    nsy_params_default(&p);
    p.max_nv_targets = 3;
    three_clients(&p);
    cset("r", "ia", 1, 10, "x", "v", 1.0);
    cset("r", "ia", 1, 11, "x", "v", 1.0);
    cset("r", "ia", 1, 12, "x", "v", 1.0);
    cset("r", "ia", 1, 13, "x", "v", 1.0); /* a fourth target */
    cset("r", "ia", 1, 10, "y", "v", 1.0); /* existing target: fine */
    CHECK_EQ_INT(F.st.nv_applied, 4);
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_NV_LIMIT], 1);
}

TEST(nv_truncation_in_code_points)
{
    three_clients(NULL);
    char name[81], value[1101];
    memset(name, 'n', 80), name[80] = 0;
    memset(value, 'v', 1100), value[1100] = 0;
    gset("r", "ia", 1, name, value, 1.0);
    /* 70 two-byte characters (140 bytes) -> 64 code points (128 bytes) */
    char uname[141];
    for (int i = 0; i < 70; i++) memcpy(uname + 2 * i, "\xc3\xa9", 2);
    uname[140] = 0;
    static char uval[3 * 1100 + 1];
    for (int i = 0; i < 1100; i++) memcpy(uval + 3 * i, "\xe2\x9c\x93", 3);
    uval[3300] = 0;
    gset("r", "ia", 1, uname, uval, 1.0);
    CHECK_EQ_INT(F.st.nv_truncated, 2);
    CHECK_EQ_INT(F.st.nv_applied, 2);
    /* a name that differs only after 64 code points is the same variable */
    memset(name + 64, 'X', 16);
    gset("r", "ia", 1, name, "other", 2.0);
    CHECK_EQ_INT(F.st.nv_applied, 3);
    keep_alive(50);
    const rmsg *m = last("r", NSY_GLOBAL_VAR_SYNC);
    CHECK(m != NULL);
    char n64[65], u64[129];
    memset(n64, 'n', 64), n64[64] = 0;
    memcpy(u64, uname, 128), u64[128] = 0;
    static char v1024[3073];
    memcpy(v1024, uval, 3072), v1024[3072] = 0;
    static ebuf w;
    w.n = 0;
    e_u8(&w, NSY_GLOBAL_VAR_SYNC), e_u16(&w, 2);
    e_var(&w, n64, "other", 2.0, 1);
    e_var(&w, u64, v1024, 1.0, 1);
    CHECK_MEM(m->p, m->n, w.b, w.n);
    CHECK_EQ_INT(rec_invalid, 0);
}

TEST(nv_delta_after_flush_full_state_on_join)
{
    three_clients(NULL);
    gset("r", "ia", 1, "g1", "a", 1.0);
    gset("r", "ia", 1, "g2", "b", 1.0);
    cset("r", "ia", 1, 2, "hp", "9", 1.0);
    keep_alive(50);
    CHECK_EQ_INT(nsy_get_u16(last("r", NSY_GLOBAL_VAR_SYNC)->p + 1), 2);
    CHECK_EQ_INT(count_type("r", NSY_CLIENT_VAR_SYNC), 1);
    /* one change: a delta with just that variable, and no CLIENT_VAR_SYNC */
    gset("r", "ib", 2, "g2", "c", 2.0);
    keep_alive(100);
    ebuf w = {.n = 0};
    e_u8(&w, NSY_GLOBAL_VAR_SYNC), e_u16(&w, 1), e_var(&w, "g2", "c", 2.0, 2);
    CHECK_EQ_INT(count_type("r", NSY_GLOBAL_VAR_SYNC), 2);
    const rmsg *m = last("r", NSY_GLOBAL_VAR_SYNC);
    CHECK_MEM(m->p, m->n, w.b, w.n);
    CHECK_EQ_INT(count_type("r", NSY_CLIENT_VAR_SYNC), 1);
    /* no change: no sync at all */
    keep_alive(200);
    CHECK_EQ_INT(count_type("r", NSY_GLOBAL_VAR_SYNC), 2);
    /* a join (plus a set in the same tick): the full state once, to the whole room */
    rec_clear();
    tf("r", "id", "D");
    gset("r", "ia", 1, "g3", "d", 3.0);
    keep_alive(250);
    CHECK_EQ_INT(nmsgs, 4);
    CHECK_EQ_INT(msgs[0].p[0], NSY_DEVICE_ID_MAPPING);
    CHECK_EQ_INT(msgs[1].p[0], NSY_GLOBAL_VAR_SYNC);
    CHECK_EQ_INT(msgs[2].p[0], NSY_CLIENT_VAR_SYNC);
    CHECK_EQ_INT(msgs[3].p[0], NSY_ROOM_TRANSFORM);
    w.n = 0;
    e_u8(&w, NSY_GLOBAL_VAR_SYNC), e_u16(&w, 3);
    e_var(&w, "g1", "a", 1.0, 1), e_var(&w, "g2", "c", 2.0, 2), e_var(&w, "g3", "d", 3.0, 1);
    CHECK_MEM(msgs[1].p, msgs[1].n, w.b, w.n);
    w.n = 0;
    e_u8(&w, NSY_CLIENT_VAR_SYNC), e_u16(&w, 1), e_u16(&w, 2), e_u16(&w, 1);
    e_var(&w, "hp", "9", 1.0, 1);
    CHECK_MEM(msgs[2].p, msgs[2].n, w.b, w.n);
    /* and the set of the join tick is not sent again as a delta */
    keep_alive(300);
    CHECK_EQ_INT(count_type("r", NSY_GLOBAL_VAR_SYNC), 1);
    CHECK_EQ_INT(rec_invalid, 0);
}

TEST(nv_client_vars_survive_owner_timeout)
{
    three_clients(NULL);
    cset("r", "ia", 1, 2, "hp", "5", 1.0); /* a variable of B */
    /* B goes silent and times out; A and C stay */
    while (ms_now() < 1200) {
        go(ms_now() + 20);
        tf("r", "ia", "A");
        tf("r", "ic", "C");
        tick_now();
    }
    CHECK_EQ_INT(F.st.timeouts, 1);
    rec_clear();
    tf("r", "ib2", "B"); /* B is back with its number, and gets the full state */
    go(ms_now() + 50);
    CHECK_EQ_INT(count_type("r", NSY_CLIENT_VAR_SYNC), 1);
    ebuf w = {.n = 0};
    e_u8(&w, NSY_CLIENT_VAR_SYNC), e_u16(&w, 1), e_u16(&w, 2), e_u16(&w, 1);
    e_var(&w, "hp", "5", 1.0, 1);
    const rmsg *m = last("r", NSY_CLIENT_VAR_SYNC);
    CHECK(m != NULL);
    CHECK_MEM(m->p, m->n, w.b, w.n);
}

/* ---- senders ----------------------------------------------------------------------------- */

TEST(rpc_from_live_client_only)
{
    three_clients(NULL);
    tf("other", "ix", "X");
    tick_now();
    rec_clear();
    rpc("r", "ia", 999, "Fire", "[1,2]");
    CHECK_EQ_INT(F.st.rpc_in, 1);
    CHECK_EQ_INT(F.st.rpc_rewritten, 1);
    CHECK_EQ_INT(nmsgs, 1); /* published at once, on the room topic, sender = A's number */
    ebuf w = {.n = 0};
    e_u8(&w, NSY_RPC), e_u16(&w, 1), e_str8(&w, "Fire"), e_str16(&w, "[1,2]");
    CHECK_MEM(msgs[0].topic, msgs[0].tlen, "r", 1);
    CHECK_MEM(msgs[0].p, msgs[0].n, w.b, w.n);
    rpc("r", "ic", 3, "F", ""); /* a true claim is not a rewrite */
    CHECK_EQ_INT(F.st.rpc_rewritten, 1);
    CHECK_EQ_INT(nsy_get_u16(msgs[1].p + 1), 3);
    /* forged: never joined, client of another room, room that does not exist */
    rpc("r", "ghost", 1, "Fire", "");
    rpc("r", "ix", 1, "Fire", "");
    rpc("nowhere", "ia", 1, "Fire", "");
    gset("r", "ghost", 1, "g", "v", 1.0);
    cset("r", "ix", 1, 1, "g", "v", 1.0);
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_UNKNOWN_SENDER], 5);
    CHECK_EQ_INT(nmsgs, 2);
    CHECK_EQ_INT(F.st.nv_in, 0);
    keep_alive(50);
    CHECK_EQ_INT(count_type(NULL, NSY_GLOBAL_VAR_SYNC) + count_type(NULL, NSY_CLIENT_VAR_SYNC), 0);
    CHECK(nsy_room_find(&F.rs, (const uint8_t *)"nowhere", 7) == NULL); /* not created */
    /* a client that reconnected: its new DEALER is the sender, the old one is not */
    tf("r", "ia-new", "A");
    rpc("r", "ia-new", 0, "F", "");
    CHECK_EQ_INT(nsy_get_u16(last("r", NSY_RPC)->p + 1), 1);
    rpc("r", "ia", 1, "F", "");
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_UNKNOWN_SENDER], 6);
    /* a client that timed out is no sender any more */
    while (ms_now() < 1200) {
        go(ms_now() + 20);
        tf("r", "ia-new", "A");
        tick_now();
    }
    CHECK_EQ_INT(F.st.timeouts, 3); /* B, C, and X in the other room */
    size_t before = nmsgs;
    rpc("r", "ib", 2, "F", "");
    gset("r", "ic", 3, "g", "v", 1.0);
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_UNKNOWN_SENDER], 8);
    CHECK_EQ_INT(nmsgs, before);
    CHECK_EQ_INT(F.st.rpc_in, 3);
}

TEST(rpc_lenient_args_and_exact_bytes)
{
    three_clients(NULL);
    /* args length 60000 with 3 bytes present: delivered with the 3 bytes (the reference's
     * slicing), counted as cut */
    uint8_t m[] = {NSY_RPC, 0x39, 0x05, 1, 'f', 0x60, 0xEA, 'a', 'b', 'c'};
    in_raw("ib", "r", 1, m, sizeof(m));
    CHECK_EQ_INT(F.st.args_cut, 1);
    static const uint8_t want[] = {NSY_RPC, 2, 0, 1, 'f', 3, 0, 'a', 'b', 'c'};
    CHECK_EQ_INT(nmsgs, 1);
    CHECK_MEM(msgs[0].p, msgs[0].n, want, sizeof(want));
    /* 65535 bytes of args and a UTF-8 name, bit-exact */
    static char args[65536];
    for (int i = 0; i < 65535; i++) args[i] = (char)('!' + i % 90);
    args[65535] = 0;
    rpc("r", "ic", 3, "\xe2\x9c\x93go", args);
    CHECK_EQ_INT(nmsgs, 2);
    CHECK_EQ_INT(msgs[1].n, 1 + 2 + 1 + 5 + 2 + 65535);
    CHECK(memcmp(msgs[1].p + 11, args, 65535) == 0);
    CHECK_EQ_INT(rec_invalid, 0);
}

/* ---- malformed input (spec section 5) ----------------------------------------------------- */

TEST(malformed_input_dropped_and_counted)
{
    fx_init(NULL);
    uint64_t inputs = 0;
#define IN(room, rl, p, n) (in_raw("ix", room, rl, p, n), inputs++)
    uint8_t one[1];
    IN("r", 1, one, 0);
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_EMPTY], 1);
    static const uint8_t unknown[] = {0, 4, 5, 11, 99, 255};
    for (size_t i = 0; i < sizeof(unknown); i++) IN("r", 1, &unknown[i], 1);
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_UNKNOWN_TYPE], 6);
    static const uint8_t server[] = {2, 6, 8, 10};
    for (size_t i = 0; i < sizeof(server); i++) IN("r", 1, &server[i], 1);
    uint8_t upstream_map[] = {6, 1, 0, 1, 0, 0, 1, 'a'}; /* well-formed, wrong direction */
    IN("r", 1, upstream_map, sizeof(upstream_map));
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_SERVER_TYPE], 5);
    /* every truncation of a valid 135-byte transform */
    uint8_t body[NSY_BODY_SIZE];
    fill_body(body, 1);
    nsy_enc e;
    enc_begin(&e);
    nsy_enc_client_transform(&e, "0f8fad5b-d9cb-469f-a165-70867728950e", 36, body, 0, NULL);
    uint8_t t[135];
    CHECK_EQ_INT(rc_buf_size(&mb), 135);
    memcpy(t, rc_buf_head(&mb), 135);
    for (size_t k = 1; k < 135; k++) IN("r", 1, t, k);
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_TRUNCATED], 134);
    t[134] = 255; /* nVirt 255 with no data */
    IN("r", 1, t, 135);
    t[134] = 0;
    t[1] = 200; /* deviceId overruns the message */
    IN("r", 1, t, 135);
    t[1] = 36;
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_TRUNCATED], 136);
    /* truncated RPC (ends before the args length), GLOBAL_VAR_SET and CLIENT_VAR_SET */
    static const uint8_t r[] = {NSY_RPC, 1, 0, 4, 'F', 'i', 'r', 'e', 2, 0, '[', ']'};
    for (size_t k = 1; k < 10; k++) IN("r", 1, r, k);
    enc_begin(&e);
    nsy_enc_global_var_set(&e, 1, "name", 4, "value", 5, 1.0);
    uint8_t g[64];
    size_t gn = rc_buf_size(&mb);
    memcpy(g, rc_buf_head(&mb), gn);
    for (size_t k = 1; k < gn; k++) IN("r", 1, g, k);
    enc_begin(&e);
    nsy_enc_client_var_set(&e, 1, 2, "name", 4, "value", 5, 1.0);
    uint8_t c[64];
    size_t cn = rc_buf_size(&mb);
    memcpy(c, rc_buf_head(&mb), cn);
    for (size_t k = 1; k < cn; k++) IN("r", 1, c, k);
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_TRUNCATED], 136 + 9 + (gn - 1) + (cn - 1));
    /* the reference's TAB-prefixed JSON is a truncated CLIENT_VAR_SET here, never JSON */
    static const char tab[] = "\t{\"type\":\"rpc\",\"data\":\"{}\"}";
    IN("r", 1, (const uint8_t *)tab, strlen(tab));
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_TRUNCATED], 136 + 9 + (gn - 1) + (cn - 1) + 1);
    /* invalid UTF-8: deviceId, function name, NV name, NV value */
    t[2] = 0xFF;
    IN("r", 1, t, 135);
    t[2] = '0';
    uint8_t r2[sizeof(r)];
    memcpy(r2, r, sizeof(r));
    r2[5] = 0xC3; /* a lead byte followed by ASCII */
    IN("r", 1, r2, sizeof(r2));
    g[4] = 0xFF;  /* inside the name */
    IN("r", 1, g, gn);
    g[4] = 'a';
    c[6 + 4 + 2 + 1] = 0x80; /* inside the value */
    IN("r", 1, c, cn);
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_UTF8], 4);
    /* room frame: not UTF-8, longer than 255 bytes */
    IN("\xff", 1, t, 135);
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_ROOM_UTF8], 1);
    static char room256[256];
    memset(room256, 'r', sizeof(room256));
    IN(room256, 256, t, 135);
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_ROOM_TOO_LONG], 1);
    /* 1 MiB of junk behind an RPC type byte: the name is not UTF-8 */
    uint8_t *junk = malloc(1 << 20);
    memset(junk, 0xFF, 1 << 20);
    junk[0] = NSY_RPC;
    IN("r", 1, junk, 1 << 20);
    free(junk);
    CHECK_EQ_INT(F.st.dropped[NSY_DROP_UTF8], 5);
    /* nothing was created or published; every input has exactly one drop counter */
    CHECK_EQ_INT(drops_total(), inputs);
    CHECK_EQ_INT(F.st.rooms, 0);
    CHECK_EQ_INT(F.st.transforms_in, 0);
    tick_now();
    CHECK_EQ_INT(nmsgs, 0);
    /* a 255-byte room id is fine, and so are trailing bytes */
    uint8_t t2[200];
    memcpy(t2, t, 135);
    memset(t2 + 135, 0xEE, 65);
    in_raw("ix", room256, 255, t2, sizeof(t2));
    CHECK_EQ_INT(F.st.rooms, 1);
    CHECK_EQ_INT(F.st.transforms_in, 1);
    CHECK_EQ_INT(drops_total(), inputs);
#undef IN
}

TEST(mutated_input_never_breaks_output)
{
    /* 2000 seeded mutations of valid messages from a live client: every input is either
     * accepted or counted once as dropped, and everything published stays well-formed. */
    fx_init(NULL);
    tf("m", "ia", "A");
    tick_now();
    uint64_t inputs = 1;
    static uint8_t base[4][512], m[600];
    size_t blen[4];
    uint8_t body[NSY_BODY_SIZE], virt[2 * NSY_TRANSFORM_SIZE];
    fill_body(body, 4);
    fill_virt(virt, 2);
    nsy_enc e;
    enc_begin(&e);
    nsy_enc_client_transform(&e, "A", 1, body, 2, virt);
    blen[0] = rc_buf_size(&mb), memcpy(base[0], rc_buf_head(&mb), blen[0]);
    enc_begin(&e);
    nsy_enc_rpc(&e, 1, "Fire", 4, "{\"x\":1}", 7);
    blen[1] = rc_buf_size(&mb), memcpy(base[1], rc_buf_head(&mb), blen[1]);
    enc_begin(&e);
    nsy_enc_global_var_set(&e, 1, "g", 1, "v", 1, 1.0);
    blen[2] = rc_buf_size(&mb), memcpy(base[2], rc_buf_head(&mb), blen[2]);
    enc_begin(&e);
    nsy_enc_client_var_set(&e, 1, 1, "c", 1, "v", 1, 1.0);
    blen[3] = rc_buf_size(&mb), memcpy(base[3], rc_buf_head(&mb), blen[3]);
    for (int i = 0; i < 2000; i++) {
        int k = (int)(unit_rand() % 4);
        size_t n = blen[k];
        memcpy(m, base[k], n);
        switch (unit_rand() % 3) {
        case 0: n = (size_t)(unit_rand() % n); break;                    /* truncate */
        case 1:                                                           /* flip bytes */
            for (int j = 0, f = 1 + (int)(unit_rand() % 4); j < f; j++)
                m[unit_rand() % n] = (uint8_t)unit_rand();
            break;
        default:                                                          /* append junk */
            for (int j = 0, a = 1 + (int)(unit_rand() % 64); j < a; j++) m[n++] = (uint8_t)unit_rand();
        }
        in_raw("ia", "m", 1, m, n);
        inputs++;
        if (i % 20 == 0) {
            go(ms_now() + 10);
            tf("m", "ia", "A"); /* keep the sender live */
            inputs++;
            tick_now();
        }
    }
    uint64_t accepted = F.st.transforms_in + F.st.rpc_in + F.st.nv_in;
    uint64_t dropped = drops_total() - F.st.dropped[NSY_DROP_NV_LIMIT] -
                       F.st.dropped[NSY_DROP_NV_EMPTY_NAME]; /* these also count in nv_in */
    CHECK_EQ_INT(accepted + dropped, inputs);
    CHECK(F.st.transforms_in > 100 && F.st.rpc_in > 0 && F.st.nv_in > 0);
    CHECK(drops_total() > 500);
    CHECK_EQ_INT(rec_invalid, 0);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(numbers_from_one_per_room);
    RUN(rejoin_keeps_number_and_appends);
    RUN(device_expiry_frees_the_number);
    RUN(room_transform_stealth_and_recipient);
    RUN(never_count_zero);
    RUN(virtuals_clamped_and_bytes_exact);
    RUN(room_transform_full_size);
    RUN(dirty_room_cadence);
    RUN(idle_room_rebroadcast);
    RUN(rooms_keep_their_own_cadence);
    RUN(many_staggered_rooms);
    RUN(client_timeout_and_room_deletion);
    RUN(mapping_coalesced_in_join_storm);
    RUN(mapping_once_per_tick_when_passes_interleave);
    RUN(mapping_periodic_for_late_subscribers);
    RUN(nv_conflict_rule);
    RUN(nv_latest_timestamp_wins_within_a_tick);
    RUN(nv_claimed_sender_rewritten);
    RUN(nv_limits_and_empty_name);
    RUN(nv_target_limit);
    RUN(nv_truncation_in_code_points);
    RUN(nv_delta_after_flush_full_state_on_join);
    RUN(nv_client_vars_survive_owner_timeout);
    RUN(rpc_from_live_client_only);
    RUN(rpc_lenient_args_and_exact_bytes);
    RUN(malformed_input_dropped_and_counted);
    RUN(mutated_input_never_breaks_output);
    fx_done();
    free(msgs);
    rc_buf_release(&mb);
    UNIT_MAIN_END("test_nsroom");
}
