/* test_ns8proto.c — tests for src/codec/ns8proto.c: every captured byte string of the v8 spec's
 * appendix parses and re-encodes byte-exactly, every truncation of every message is an error,
 * trailing bytes are rejected on control messages and reported on poses, the pose body rules
 * (physical block, hands only with the head, nVirt clamp and relay form), generation
 * classification (v0.6 / v8 / unsupported / invalid, the §6.4 RPC ambiguity), and the display
 * decoders against hand-computed values.
 */
#include "unit.h"

#include "codec/ns8proto.h"
#include "codec/nsproto.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>

#define DEV "dev-A-0001"
#define FTIME 1234.5

/* unhex turns the appendix notation into bytes: hex pairs, spaces ignored, 'D' = the 10 bytes of
 * DEV, 'F' = the f64 FTIME. */
static size_t unhex(const char *s, uint8_t *out)
{
    size_t n = 0;
    while (*s) {
        if (*s == ' ') {
            s++;
        } else if (*s == 'D') {
            memcpy(out + n, DEV, 10);
            n += 10;
            s++;
        } else if (*s == 'F') {
            double d = FTIME;
            memcpy(out + n, &d, 8); /* little-endian host */
            n += 8;
            s++;
        } else {
            unsigned v;
            sscanf(s, "%2x", &v);
            out[n++] = (uint8_t)v;
            s += 2;
        }
    }
    return n;
}

static rc_buf eb = RC_BUF_INIT;
static ns8_enc E;

static void enc_reset(void)
{
    rc_buf_reset(&eb);
    ns8_enc_init(&E, &eb);
}

#define CHECK_ENC(hex)                                                            \
    do {                                                                          \
        uint8_t want_[512];                                                       \
        size_t wn_ = unhex((hex), want_);                                         \
        CHECK_EQ_INT(E.err, 0);                                                   \
        CHECK_EQ_INT(rc_buf_size(&eb), wn_);                                      \
        CHECK(memcmp(rc_buf_head(&eb), want_, wn_) == 0);                         \
    } while (0)

/* The appendix CLIENT_POSE (79 B), completed: head rotation, hands and two virtuals are ours. */
static const char pose_hex[] =
    "0b 08 0a D 0700 3e 1f 3200 0000 e7ff 2c01 640000 a00000 38ffff 000208e0"
    " 1400 0000 0a00 000208e0 ecff 0000 0a00 000208e0"
    " 02 0100 0200 0300 000208e0 0400 0500 0600 000208e0";

static const char *const control_hex[] = {
    "13 08 00 0a D",
    "07 4d00 0a D 01 67 0200 7631",
    "09 0100 0a D 0200 01 63 0100 78",
    "12 0000 0a D",
    "03 0100 0a D 00 04 50696e67 0900 5b2261222c2262225d",
    "0f 08 0a D 02 34120000",
};

TEST(appendix_hello)
{
    uint8_t m[64];
    size_t n = unhex(control_hex[0], m);
    ns8_hello h;
    CHECK_EQ_INT(ns8_parse_hello(m, n, &h), NS8_OK);
    CHECK_EQ_INT(h.flags, 0);
    CHECK_MEM(h.device_id.p, h.device_id.len, DEV, 10);
    enc_reset();
    ns8_enc_hello(&E, 0, DEV, 10);
    CHECK_ENC(control_hex[0]);
}

TEST(appendix_pose)
{
    uint8_t m[128];
    size_t n = unhex(pose_hex, m);
    CHECK_EQ_INT(n, 79);
    ns8_pose p;
    CHECK_EQ_INT(ns8_parse_pose(m, n, &p), NS8_OK);
    CHECK_MEM(p.device_id.p, p.device_id.len, DEV, 10);
    CHECK_EQ_INT(p.body.len, 66);
    CHECK_EQ_INT(p.body.seq, 7);
    CHECK_EQ_INT(p.body.flags, 0x3e);
    CHECK_EQ_INT(p.body.enc, 0x1f);
    CHECK_EQ_INT(p.body.nvirt, 2);
    CHECK_EQ_INT(p.trailing, 0);
    enc_reset();
    ns8_enc_pose(&E, DEV, 10, p.body.p, p.body.len);
    CHECK_ENC(pose_hex);
    /* every truncation is an error; trailing bytes are reported, not an error */
    for (size_t k = 0; k < n; k++) CHECK(ns8_parse_pose(m, k, &p) < 0);
    m[n] = 0xAA;
    m[n + 1] = 0xBB;
    CHECK_EQ_INT(ns8_parse_pose(m, n + 2, &p), NS8_OK);
    CHECK_EQ_INT(p.trailing, 2);
    CHECK_EQ_INT(p.body.len, 66);
}

TEST(appendix_room_pose)
{
    enc_reset();
    size_t at = ns8_enc_room_pose_begin(&E, "r1", 2, FTIME);
    ns8_patch_u16(&E, at, 0);
    CHECK_ENC("0c 08 02 7231 F 0000");
    CHECK_EQ_INT(rc_buf_size(&eb), 15);
    CHECK_EQ_INT(ns8_check_server_msg((const uint8_t *)rc_buf_head(&eb), rc_buf_size(&eb)),
                 NS8_OK);
    /* one entry with the appendix body */
    uint8_t m[128];
    size_t n = unhex(pose_hex, m);
    ns8_pose p;
    CHECK_EQ_INT(ns8_parse_pose(m, n, &p), NS8_OK);
    enc_reset();
    at = ns8_enc_room_pose_begin(&E, "r1", 2, FTIME);
    ns8_enc_room_pose_entry(&E, 1, FTIME, p.body.p, p.body.len);
    ns8_patch_u16(&E, at, 1);
    CHECK_EQ_INT(E.err, 0);
    const uint8_t *o = (const uint8_t *)rc_buf_head(&eb);
    CHECK_EQ_INT(ns8_check_server_msg(o, rc_buf_size(&eb)), NS8_OK);
    for (size_t k = 0; k < rc_buf_size(&eb); k++) CHECK(ns8_check_server_msg(o, k) < 0);
}

TEST(appendix_mapping_and_syncs)
{
    enc_reset();
    size_t at = ns8_enc_mapping_begin(&E, 0, 16, 3);
    ns8_enc_mapping_entry(&E, 1, false, DEV, 10);
    ns8_patch_u16(&E, at, 1);
    CHECK_ENC("06 00 10 03 0100 0100 00 0a D");
    enc_reset();
    at = ns8_enc_client_sync_begin(&E);
    ns8_enc_client_sync_target(&E, 1, 0);
    ns8_patch_u16(&E, at, 1);
    CHECK_ENC("0a 0100 0100 0000");
    enc_reset();
    at = ns8_enc_global_sync_begin(&E);
    ns8_enc_var(&E, "g", 1, "v1", 2, 1);
    ns8_patch_u16(&E, at, 1);
    CHECK_ENC("08 0100 01 67 0200 7631 0100");
    const char *srv[] = {"06 00 10 03 0100 0100 00 0a D", "0a 0100 0100 0000",
                         "08 0100 01 67 0200 7631 0100", "10 34120000 0100 0000",
                         "11 34120000 0100 01",
                         "0e 08 F 0100 34120000 0100 0500 F 960000 320000 d4feff ff030860",
                         "03 0100 0a D 00 04 50696e67 0900 5b2261222c2262225d"};
    for (size_t i = 0; i < sizeof(srv) / sizeof(srv[0]); i++) {
        uint8_t m[128];
        size_t n = unhex(srv[i], m);
        CHECK_EQ_INT(ns8_check_server_msg(m, n), NS8_OK);
        for (size_t k = 0; k < n; k++) CHECK(ns8_check_server_msg(m, k) < 0);
        m[n] = 0;
        CHECK(ns8_check_server_msg(m, n + 1) < 0);
    }
}

TEST(appendix_var_messages)
{
    uint8_t m[64];
    size_t n = unhex(control_hex[1], m);
    ns8_var_set v;
    CHECK_EQ_INT(ns8_parse_global_var_set(m, n, &v), NS8_OK);
    CHECK_EQ_INT(v.sender, 77);
    CHECK_MEM(v.device_id.p, v.device_id.len, DEV, 10);
    CHECK_MEM(v.name.p, v.name.len, "g", 1);
    CHECK_MEM(v.value.p, v.value.len, "v1", 2);
    enc_reset();
    ns8_enc_global_var_set(&E, 77, DEV, 10, "g", 1, "v1", 2);
    CHECK_ENC(control_hex[1]);

    n = unhex(control_hex[2], m);
    CHECK_EQ_INT(ns8_parse_client_var_set(m, n, &v), NS8_OK);
    CHECK_EQ_INT(v.sender, 1);
    CHECK_EQ_INT(v.target, 2);
    CHECK_MEM(v.name.p, v.name.len, "c", 1);
    CHECK_MEM(v.value.p, v.value.len, "x", 1);
    enc_reset();
    ns8_enc_client_var_set(&E, 1, DEV, 10, 2, "c", 1, "x", 1);
    CHECK_ENC(control_hex[2]);

    n = unhex(control_hex[3], m);
    ns8_var_clear c;
    CHECK_EQ_INT(ns8_parse_var_clear(m, n, &c), NS8_OK);
    CHECK_MEM(c.device_id.p, c.device_id.len, DEV, 10);
    enc_reset();
    ns8_enc_var_clear(&E, 0, DEV, 10);
    CHECK_ENC(control_hex[3]);
}

TEST(appendix_rpc)
{
    uint8_t m[64];
    size_t n = unhex(control_hex[4], m);
    ns8_rpc r;
    CHECK_EQ_INT(ns8_parse_rpc(m, n, &r), NS8_OK);
    CHECK_EQ_INT(r.sender, 1);
    CHECK_EQ_INT(r.ntargets, 0);
    CHECK_MEM(r.name.p, r.name.len, "Ping", 4);
    CHECK_MEM(r.args.p, r.args.len, "[\"a\",\"b\"]", 9);
    enc_reset();
    ns8_enc_rpc(&E, 1, DEV, 10, r.targets, 0, "Ping", 4, r.args.p, r.args.len);
    CHECK_ENC(control_hex[4]);
    /* targets */
    enc_reset();
    const uint8_t t[4] = {2, 0, 0x34, 0x12};
    ns8_enc_rpc(&E, 9, DEV, 10, t, 2, "F", 1, "", 0);
    CHECK_EQ_INT(ns8_parse_rpc((const uint8_t *)rc_buf_head(&eb), rc_buf_size(&eb), &r), NS8_OK);
    CHECK_EQ_INT(r.ntargets, 2);
    CHECK_EQ_INT(ns8_rpc_target(&r, 0), 2);
    CHECK_EQ_INT(ns8_rpc_target(&r, 1), 0x1234);
}

TEST(appendix_objects)
{
    uint8_t m[64];
    size_t n = unhex(control_hex[5], m);
    ns8_own_req o;
    CHECK_EQ_INT(ns8_parse_own_req(m, n, &o), NS8_OK);
    CHECK_EQ_INT(o.op, 2);
    CHECK_EQ_INT(o.object_id, 0x1234);
    enc_reset();
    ns8_enc_own_req(&E, DEV, 10, 2, 0x1234);
    CHECK_ENC(control_hex[5]);
    enc_reset();
    ns8_enc_ownership_changed(&E, 0x1234, 1, 0);
    CHECK_ENC("10 34120000 0100 0000");
    enc_reset();
    ns8_enc_ownership_rejected(&E, 0x1234, 1, 1);
    CHECK_ENC("11 34120000 0100 01");

    const char op_hex[] = "0d 08 0a D 34120000 0500 960000 320000 d4feff ff030860";
    n = unhex(op_hex, m);
    ns8_object_pose p;
    CHECK_EQ_INT(ns8_parse_object_pose(m, n, &p), NS8_OK);
    CHECK_EQ_INT(p.object_id, 0x1234);
    CHECK_EQ_INT(p.seq, 5);
    CHECK_EQ_INT(p.trailing, 0);
    enc_reset();
    ns8_enc_object_pose(&E, DEV, 10, 0x1234, 5, p.body);
    CHECK_ENC(op_hex);
    for (size_t k = 0; k < n; k++) CHECK(ns8_parse_object_pose(m, k, &p) < 0);
    CHECK_EQ_INT(ns8_parse_object_pose(m, n + 1, &p), NS8_OK);
    CHECK_EQ_INT(p.trailing, 1);

    enc_reset();
    size_t at = ns8_enc_room_objects_begin(&E, FTIME);
    ns8_enc_room_objects_entry(&E, 0x1234, 1, 5, FTIME, p.body);
    ns8_patch_u16(&E, at, 1);
    CHECK_ENC("0e 08 F 0100 34120000 0100 0500 F 960000 320000 d4feff ff030860");
}

TEST(control_truncation_and_trailing)
{
    for (size_t i = 0; i < sizeof(control_hex) / sizeof(control_hex[0]); i++) {
        uint8_t m[64];
        size_t n = unhex(control_hex[i], m);
        ns8_msg msg;
        CHECK_EQ_INT(ns8_parse(m, n, &msg), NS8_OK);
        CHECK_EQ_INT(msg.type, m[0]);
        for (size_t k = 0; k < n; k++) CHECK(ns8_parse(m, k, &msg) < 0);
        m[n] = 0;
        CHECK_EQ_INT(ns8_parse(m, n + 1, &msg), NS8_E_TRAILING);
    }
}

TEST(version_and_utf8)
{
    uint8_t m[64];
    size_t n = unhex("13 07 00 0a D", m);
    ns8_hello h;
    CHECK_EQ_INT(ns8_parse_hello(m, n, &h), NS8_E_VERSION);
    n = unhex("13 08 00 02 c328", m); /* invalid UTF-8 */
    CHECK_EQ_INT(ns8_parse_hello(m, n, &h), NS8_E_UTF8);
    n = unhex("13 08 01 00", m); /* stealth, empty deviceId: valid */
    CHECK_EQ_INT(ns8_parse_hello(m, n, &h), NS8_OK);
    CHECK_EQ_INT(h.flags & NS8_HELLO_STEALTH, 1);
    CHECK_EQ_INT(h.device_id.len, 0);
    ns8_msg msg;
    const uint8_t srv[] = {2, 6, 8, 10, 12, 14, 16, 17};
    for (size_t i = 0; i < sizeof(srv); i++) {
        m[0] = srv[i];
        CHECK_EQ_INT(ns8_parse(m, 4, &msg), NS8_E_DIRECTION);
    }
    const uint8_t bad[] = {0, 1, 4, 5, 20, 255};
    for (size_t i = 0; i < sizeof(bad); i++) {
        m[0] = bad[i];
        CHECK_EQ_INT(ns8_parse(m, 4, &msg), NS8_E_TYPE);
    }
    CHECK_EQ_INT(ns8_parse(m, 0, &msg), NS8_E_EMPTY);
}

TEST(body_rules)
{
    uint8_t b[1200];
    ns8_body body;
    /* PhysicalValid without floor-local and without encoding bit4 */
    size_t n = unhex("0100 02 0f 0100 0200 0300 0400 00", b);
    CHECK_EQ_INT(ns8_parse_body(b, n, &body), NS8_E_PHYSICAL);
    b[2] = 0x42; /* + MovingFloorLocal */
    CHECK_EQ_INT(ns8_parse_body(b, n, &body), NS8_OK);
    CHECK_EQ_INT(body.len, n);
    b[2] = 0x02;
    b[3] = 0x1f; /* XR-origin delta */
    CHECK_EQ_INT(ns8_parse_body(b, n, &body), NS8_OK);
    /* hands without HeadValid are absent: flags Right|Left only -> 4 + 1 bytes */
    n = unhex("0100 18 1f 00", b);
    CHECK_EQ_INT(ns8_parse_body(b, n, &body), NS8_OK);
    CHECK_EQ_INT(body.len, 5);
    /* virtuals consumed without HeadValid */
    n = unhex("0100 00 1f 01 0100 0200 0300 000208e0", b);
    CHECK_EQ_INT(ns8_parse_body(b, n, &body), NS8_OK);
    CHECK_EQ_INT(body.len, 15);
    CHECK_EQ_INT(ns8_parse_body(b, n - 1, &body), NS8_E_TRUNCATED);
    /* stealth frame */
    n = unhex("0900 01 00 00", b);
    CHECK_EQ_INT(ns8_parse_body(b, n, &body), NS8_OK);
    /* nVirt 60, 60 entries: 50 read and relayed, 100 bytes trailing, relay count byte 50 */
    b[0] = 1; b[1] = 0; b[2] = 0x24; b[3] = 0x1f;
    memset(b + 4, 0, 13);
    b[17] = 60;
    for (size_t i = 0; i < 600; i++) b[18 + i] = (uint8_t)i;
    CHECK_EQ_INT(ns8_parse_body(b, 618, &body), NS8_OK);
    CHECK(body.nvirt_clamped);
    CHECK_EQ_INT(body.nvirt, 50);
    CHECK_EQ_INT(body.nvirt_wire, 60);
    CHECK_EQ_INT(body.len, 18 + 500);
    uint8_t relay[NS8_BODY_MAX];
    CHECK(body.len <= NS8_BODY_MAX);
    ns8_body_copy_relay(&body, relay);
    CHECK_EQ_INT(relay[17], 50);
    ns8_body again;
    CHECK_EQ_INT(ns8_parse_body(relay, body.len, &again), NS8_OK);
    CHECK_EQ_INT(again.len, body.len);
    CHECK(!again.nvirt_clamped);
    /* a ROOM_POSE with the unclamped body is refused by the strict checker */
    enc_reset();
    size_t at = ns8_enc_room_pose_begin(&E, "r", 1, 1.0);
    ns8_enc_room_pose_entry(&E, 1, 1.0, b, 618);
    ns8_patch_u16(&E, at, 1);
    CHECK(ns8_check_server_msg((const uint8_t *)rc_buf_head(&eb), rc_buf_size(&eb)) < 0);
}

TEST(encoder_limits)
{
    char big[300];
    memset(big, 'a', sizeof(big));
    enc_reset();
    ns8_enc_hello(&E, 0, big, 256);
    CHECK_EQ_INT(E.err, NS8_E_TOO_LONG);
    ns8_put_u8(&E, 1); /* sticky */
    CHECK_EQ_INT(E.err, NS8_E_TOO_LONG);
    enc_reset();
    ns8_enc_hello(&E, 0, big, 255);
    CHECK_EQ_INT(E.err, 0);
    CHECK_EQ_INT(rc_buf_size(&eb), 4 + 255);
}

/* ---- classification ---------------------------------------------------------------------- */

TEST(classify_v06)
{
    rc_buf b = RC_BUF_INIT;
    nsy_enc e;
    ns8_class c;
    uint8_t body[NSY_BODY_SIZE] = {0};
    nsy_enc_init(&e, &b);
    nsy_enc_client_transform(&e, DEV, 10, body, 0, NULL);
    const uint8_t *p = (const uint8_t *)rc_buf_head(&b);
    ns8_classify(NS8_LANE_CONTROL, p, rc_buf_size(&b), NS8_GEN_INVALID, &c, NULL);
    CHECK_EQ_INT(c.gen, NS8_GEN_V06);
    CHECK_EQ_INT(c.err, 0);
    ns8_classify(NS8_LANE_TRANSFORM, p, rc_buf_size(&b), NS8_GEN_INVALID, &c, NULL);
    CHECK_EQ_INT(c.err, NS8_E_LANE);
    ns8_classify(NS8_LANE_CONTROL, p, rc_buf_size(&b) - 1, NS8_GEN_INVALID, &c, NULL);
    CHECK_EQ_INT(c.gen, NS8_GEN_INVALID);

    /* v0.6 NV sets end with an f64: never a full v8 parse */
    rc_buf_reset(&b);
    nsy_enc_global_var_set(&e, 1, "score", 5, "10", 2, 1700000000.0);
    ns8_classify(NS8_LANE_CONTROL, (const uint8_t *)rc_buf_head(&b), rc_buf_size(&b),
                 NS8_GEN_INVALID, &c, NULL);
    CHECK_EQ_INT(c.gen, NS8_GEN_V06);
    CHECK(!c.ambiguous);
    rc_buf_reset(&b);
    nsy_enc_client_var_set(&e, 1, 2, "hp", 2, "3", 1, 1700000000.0);
    ns8_classify(NS8_LANE_CONTROL, (const uint8_t *)rc_buf_head(&b), rc_buf_size(&b),
                 NS8_GEN_INVALID, &c, NULL);
    CHECK_EQ_INT(c.gen, NS8_GEN_V06);

    /* §6.4: a v0.6 RPC whose args length is a multiple of 256 (the reference reads it as a v8 RPC
     * from device "Fire" with function "["), for several lengths */
    for (size_t len = 256; len <= 1024; len += 256) {
        char args[1024];
        args[0] = '[';
        for (size_t i = 1; i < len - 1; i++) args[i] = i % 7 == 0 ? ',' : '"';
        args[len - 1] = ']';
        rc_buf_reset(&b);
        nsy_enc_rpc(&e, 1, "Fire", 4, args, len);
        const uint8_t *q = (const uint8_t *)rc_buf_head(&b);
        CHECK_EQ_INT(q[3 + 1 + 4 + 0], 0); /* the byte a v8 reader takes for nTargets */
        ns8_classify(NS8_LANE_CONTROL, q, rc_buf_size(&b), NS8_GEN_INVALID, &c, NULL);
        CHECK_EQ_INT(c.gen, NS8_GEN_V06);
        CHECK_EQ_INT(c.err, 0);
        ns8_classify(NS8_LANE_CONTROL, q, rc_buf_size(&b), NS8_GEN_V8, &c, NULL);
        CHECK_EQ_INT(c.gen, NS8_GEN_V06); /* not ambiguous: the hint does not matter */
    }
    /* a plain v0.6 RPC */
    rc_buf_reset(&b);
    nsy_enc_rpc(&e, 1, "Ping", 4, "[]", 2);
    ns8_classify(NS8_LANE_CONTROL, (const uint8_t *)rc_buf_head(&b), rc_buf_size(&b),
                 NS8_GEN_INVALID, &c, NULL);
    CHECK_EQ_INT(c.gen, NS8_GEN_V06);
    rc_buf_release(&b);
}

TEST(classify_v8_and_unsupported)
{
    ns8_class c;
    ns8_msg m;
    for (size_t i = 0; i < sizeof(control_hex) / sizeof(control_hex[0]); i++) {
        uint8_t p[64];
        size_t n = unhex(control_hex[i], p);
        ns8_classify(NS8_LANE_CONTROL, p, n, NS8_GEN_INVALID, &c, &m);
        CHECK_EQ_INT(c.gen, NS8_GEN_V8);
        CHECK_EQ_INT(c.err, 0);
        CHECK_EQ_INT(m.type, p[0]);
        ns8_classify(NS8_LANE_TRANSFORM, p, n, NS8_GEN_INVALID, &c, &m);
        CHECK_EQ_INT(c.err, NS8_E_LANE);
    }
    uint8_t p[128];
    size_t n = unhex(pose_hex, p);
    ns8_classify(NS8_LANE_TRANSFORM, p, n, NS8_GEN_INVALID, &c, &m);
    CHECK_EQ_INT(c.gen, NS8_GEN_V8);
    CHECK_EQ_INT(c.err, 0);
    ns8_classify(NS8_LANE_CONTROL, p, n, NS8_GEN_INVALID, &c, &m);
    CHECK_EQ_INT(c.err, NS8_E_LANE);
    for (uint8_t v = 2; v <= 7; v++) {
        p[1] = v;
        ns8_classify(NS8_LANE_CONTROL, p, n, NS8_GEN_INVALID, &c, &m);
        CHECK_EQ_INT(c.gen, NS8_GEN_UNSUPPORTED);
        CHECK_EQ_INT(c.version, v);
    }
    n = unhex("13 07 00 0a D", p);
    ns8_classify(NS8_LANE_CONTROL, p, n, NS8_GEN_INVALID, &c, &m);
    CHECK_EQ_INT(c.gen, NS8_GEN_UNSUPPORTED);
    CHECK_EQ_INT(c.version, 7);
    p[1] = 9;
    ns8_classify(NS8_LANE_CONTROL, p, n, NS8_GEN_INVALID, &c, &m);
    CHECK_EQ_INT(c.gen, NS8_GEN_INVALID);
    CHECK_EQ_INT(c.err, NS8_E_VERSION);
    ns8_classify(NS8_LANE_CONTROL, p, 0, NS8_GEN_INVALID, &c, &m);
    CHECK_EQ_INT(c.err, NS8_E_EMPTY);
    p[0] = 12;
    ns8_classify(NS8_LANE_CONTROL, p, n, NS8_GEN_INVALID, &c, &m);
    CHECK_EQ_INT(c.gen, NS8_GEN_INVALID);
    CHECK_EQ_INT(c.err, NS8_E_DIRECTION);
}

/* ---- display decoding -------------------------------------------------------------------- */

static bool near(float a, double b) { return fabs((double)a - b) < 1e-4; }

TEST(quat_decode)
{
    float q[4];
    /* appendix object rotation ff030860 = 0x600803ff: largest y; x = z = code 512, w = 1023:
     * x = z = -0.70710677 + 1.41421354 * 512 / 1023 = 0.00069121, w = 0.70710677,
     * y = sqrt(1 - x^2 - z^2 - w^2) = 0.70710612; already unit length. */
    ns8_quat_decode(0x600803ffu, q);
    CHECK(near(q[0], 0.00069121));
    CHECK(near(q[1], 0.70710612));
    CHECK(near(q[2], 0.00069121));
    CHECK(near(q[3], 0.70710677));
    /* near-identity: largest w, the others code 512 */
    ns8_quat_decode(0xe0080200u, q);
    CHECK(near(q[0], 0.00069121) && near(q[1], 0.00069121) && near(q[2], 0.00069121));
    CHECK(near(q[3], 0.99999928));
    /* code 0 and 1023 for x with largest z: x = -0.70710677, y = +0.70710677, w = 0 -> z = 0,
     * then normalized: x = -0.7071068, y = 0.7071068 */
    ns8_quat_decode((2u << 30) | (0u << 20) | (1023u << 10) | 511u, q);
    CHECK(near(q[0], -0.7071068) && near(q[1], 0.7071068));
    CHECK(fabs(q[3]) < 0.001 && fabs(q[2]) < 0.001);
}

TEST(decode_pose_and_object)
{
    uint8_t m[128];
    size_t n = unhex(pose_hex, m);
    ns8_pose_view v;
    CHECK_EQ_INT(ns8_decode_body(m + 13, n - 13, &v), NS8_OK);
    CHECK(v.has_physical && v.has_head && v.has_right && v.has_left);
    CHECK(near(v.physical[0], 0.5) && near(v.physical[1], 0.0) && near(v.physical[2], -0.25));
    CHECK(near(v.physical[3], 30.0));
    CHECK(near(v.head_pos[0], 1.0) && near(v.head_pos[1], 1.6) && near(v.head_pos[2], -2.0));
    CHECK(near(v.head_rot[3], 0.99999928));
    CHECK(near(v.right_pos[0], 0.1) && near(v.right_pos[2], 0.05));
    CHECK(near(v.left_pos[0], -0.1));
    CHECK_EQ_INT(v.nvirt, 2);
    uint8_t ob[13];
    unhex("960000 320000 d4feff ff030860", ob);
    ns8_object_view o;
    ns8_decode_object(ob, &o);
    CHECK(near(o.pos[0], 1.5) && near(o.pos[1], 0.5) && near(o.pos[2], -3.0));
    CHECK(near(o.rot[1], 0.70710612));
    /* i24 sign extension at the extremes */
    unhex("ffff7f 010080 000000 000000c0", ob);
    ns8_decode_object(ob, &o);
    CHECK(fabs(o.pos[0] - 83886.07) < 0.01 && fabs(o.pos[1] + 83886.07) < 0.01);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(appendix_hello);
    RUN(appendix_pose);
    RUN(appendix_room_pose);
    RUN(appendix_mapping_and_syncs);
    RUN(appendix_var_messages);
    RUN(appendix_rpc);
    RUN(appendix_objects);
    RUN(control_truncation_and_trailing);
    RUN(version_and_utf8);
    RUN(body_rules);
    RUN(encoder_limits);
    RUN(classify_v06);
    RUN(classify_v8_and_unsupported);
    RUN(quat_decode);
    RUN(decode_pose_and_object);
    rc_buf_release(&eb);
    UNIT_MAIN_END("test_ns8proto");
}
