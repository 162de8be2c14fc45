/* test_nsproto.c — tests for src/codec/nsproto.c: every message type, every truncation of
 * every message, length overruns (lenient only for the final string), nVirt clamping, stealth
 * detection, float bit-exactness through parse+re-encode, UTF-8 checks, str8/str16 limits, and
 * strict validation of what the encoders emit; NV UTF-8/overrun cases and seeded mutations
 * that must re-encode to exactly the bytes they were parsed from.
 */
#include "unit.h"

#include "codec/nsproto.h"

#include <math.h>
#include <stdint.h>

static const char uuid[] = "0f8fad5b-d9cb-469f-a165-70867728950e"; /* 36 chars */

static void fill_body(uint8_t *body, unsigned seed)
{
    for (int i = 0; i < NSY_BODY_SIZE; i += 4) {
        float f = (float)(seed * 1000 + (unsigned)i) * 0.125f - 3.5f;
        memcpy(body + i, &f, 4); /* little-endian host */
    }
}

/* build_transform writes a CLIENT_TRANSFORM with `announced` virtuals and `present` of them
 * actually in the message. */
static size_t build_transform(uint8_t *out, const char *dev, size_t dlen, unsigned announced,
                              unsigned present)
{
    size_t n = 0;
    out[n++] = NSY_CLIENT_TRANSFORM;
    out[n++] = (uint8_t)dlen;
    memcpy(out + n, dev, dlen);
    n += dlen;
    fill_body(out + n, 7);
    n += NSY_BODY_SIZE;
    out[n++] = (uint8_t)announced;
    for (unsigned v = 0; v < present; v++) {
        for (int k = 0; k < NSY_TRANSFORM_SIZE; k++) out[n++] = (uint8_t)(v * 31 + (unsigned)k);
    }
    return n;
}

TEST(classify_types)
{
    uint8_t b[1] = {0};
    CHECK_EQ_INT(nsy_classify(b, 0), NSY_E_EMPTY);
    int expect[256];
    for (int i = 0; i < 256; i++) expect[i] = NSY_E_TYPE;
    expect[1] = 1; expect[3] = 3; expect[7] = 7; expect[9] = 9;
    expect[2] = expect[6] = expect[8] = expect[10] = NSY_E_DIRECTION;
    for (int i = 0; i < 256; i++) {
        b[0] = (uint8_t)i;
        CHECK_EQ_INT(nsy_classify(b, 1), expect[i]);
    }
}

TEST(transform_valid_uuid)
{
    uint8_t m[2048];
    size_t n = build_transform(m, uuid, 36, 0, 0);
    CHECK_EQ_INT(n, 135); /* the spec's size for a 36-char UUID */
    nsy_client_transform t;
    CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_OK);
    CHECK_MEM(t.device_id.p, t.device_id.len, uuid, 36);
    CHECK(t.body == m + 2 + 36);
    CHECK_EQ_INT(t.nvirt, 0);
    CHECK(!t.clamped);
    CHECK(!t.stealth);
}

TEST(transform_every_truncation)
{
    uint8_t m[2048];
    for (unsigned nv = 0; nv <= 3; nv++) {
        size_t n = build_transform(m, uuid, 36, nv, nv);
        nsy_client_transform t;
        CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_OK);
        CHECK_EQ_INT(t.nvirt, nv);
        for (size_t k = 1; k < n; k++) CHECK_EQ_INT(nsy_parse_client_transform(m, k, &t), NSY_E_TRUNCATED);
    }
}

TEST(transform_trailing_bytes_ignored)
{
    uint8_t m[2048];
    size_t n = build_transform(m, "dev", 3, 1, 1);
    memset(m + n, 0xAB, 100);
    nsy_client_transform t;
    CHECK_EQ_INT(nsy_parse_client_transform(m, n + 100, &t), NSY_OK);
    CHECK_EQ_INT(t.nvirt, 1);
    CHECK(t.virt == m + n - 24);
}

TEST(transform_nvirt_clamp)
{
    static uint8_t m[16384];
    nsy_client_transform t;
    /* 51 announced, 50 present: accepted with 50 */
    size_t n = build_transform(m, "d", 1, 51, 50);
    CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_OK);
    CHECK_EQ_INT(t.nvirt, 50);
    CHECK(t.clamped);
    /* 255 announced, 255 present: 50 read, rest ignored */
    n = build_transform(m, "d", 1, 255, 255);
    CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_OK);
    CHECK_EQ_INT(t.nvirt, 50);
    CHECK(t.virt == m + 3 + 96 + 1);
    /* 255 announced, nothing present: truncated */
    n = build_transform(m, "d", 1, 255, 0);
    CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_E_TRUNCATED);
    /* 51 announced, 49 present */
    n = build_transform(m, "d", 1, 51, 49);
    CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_E_TRUNCATED);
}

TEST(transform_device_overrun_and_utf8)
{
    uint8_t m[2048];
    size_t n = build_transform(m, uuid, 36, 0, 0);
    nsy_client_transform t;
    m[1] = 200; /* deviceId claims more than there is after it: later reads fail */
    CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_E_TRUNCATED);
    m[1] = 255;
    CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_E_TRUNCATED);
    n = build_transform(m, "ab\xff", 3, 0, 0);
    CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_E_UTF8);
    n = build_transform(m, "\xc3\xa9t\xc3\xa9", 5, 0, 0);
    CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_OK);
    /* 255-byte deviceId works; empty deviceId is a valid string */
    char big[255];
    memset(big, 'x', sizeof(big));
    n = build_transform(m, big, 255, 0, 0);
    CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_OK);
    CHECK_EQ_INT(t.device_id.len, 255);
    n = build_transform(m, "", 0, 0, 0);
    CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_OK);
    CHECK_EQ_INT(t.device_id.len, 0);
}

TEST(transform_stealth)
{
    uint8_t m[2048];
    size_t n = build_transform(m, "s", 1, 0, 0);
    uint8_t *body = m + 3;
    float nan = NAN;
    for (int i = 0; i < 96; i += 4) memcpy(body + i, &nan, 4);
    nsy_client_transform t;
    CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_OK);
    CHECK(t.stealth);
    /* any NaN counts (negative, signalling, other payloads) */
    uint32_t odd = 0xFFC00001u, snan = 0x7F800001u;
    memcpy(body, &odd, 4);
    memcpy(body + 92, &snan, 4);
    CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_OK);
    CHECK(t.stealth);
    /* infinity is not NaN */
    uint32_t inf = 0x7F800000u;
    memcpy(body + 40, &inf, 4);
    CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_OK);
    CHECK(!t.stealth);
    memcpy(body + 40, &nan, 4);
    /* one virtual makes it visible */
    m[n - 1] = 1;
    memset(m + n, 0, 24);
    CHECK_EQ_INT(nsy_parse_client_transform(m, n + 24, &t), NSY_OK);
    CHECK(!t.stealth);
}

TEST(transform_float_bit_exact)
{
    /* Random bit patterns (NaN payloads, -0, denormals, infinities included) survive parse and
     * re-encode into a ROOM_TRANSFORM entry unchanged. */
    static uint8_t m[4096];
    rc_buf b = RC_BUF_INIT;
    for (int round = 0; round < 200; round++) {
        size_t n = 0;
        m[n++] = 1;
        m[n++] = 1;
        m[n++] = 'x';
        unsigned nv = (unsigned)(unit_rand() % 51);
        for (size_t i = 0; i < NSY_BODY_SIZE; i++) m[n + i] = (uint8_t)unit_rand();
        if (round == 0) memset(m + n, 0, NSY_BODY_SIZE), m[n + 3] = 0x80; /* -0.0f */
        n += NSY_BODY_SIZE;
        m[n++] = (uint8_t)nv;
        for (size_t i = 0; i < nv * 24u; i++) m[n++] = (uint8_t)unit_rand();
        nsy_client_transform t;
        CHECK_EQ_INT(nsy_parse_client_transform(m, n, &t), NSY_OK);
        rc_buf_reset(&b);
        nsy_enc e;
        nsy_enc_init(&e, &b);
        nsy_enc_entry(&e, 0x1234, t.body, t.nvirt, t.virt);
        CHECK_EQ_INT(e.err, 0);
        CHECK_EQ_INT(rc_buf_size(&b), NSY_ENTRY_FIXED + nv * 24u);
        const uint8_t *o = (const uint8_t *)rc_buf_head(&b);
        CHECK(o[0] == 0x34 && o[1] == 0x12);
        CHECK(memcmp(o + 2, m + 3, NSY_BODY_SIZE) == 0);
        CHECK_EQ_INT(o[98], nv);
        CHECK(memcmp(o + 99, m + 3 + 97, nv * 24u) == 0);
    }
    rc_buf_release(&b);
}

static size_t build_rpc(uint8_t *m, uint16_t sender, const char *name, size_t nl,
                        const char *args, size_t al, size_t announced_al)
{
    size_t n = 0;
    m[n++] = NSY_RPC;
    m[n++] = (uint8_t)sender;
    m[n++] = (uint8_t)(sender >> 8);
    m[n++] = (uint8_t)nl;
    memcpy(m + n, name, nl);
    n += nl;
    m[n++] = (uint8_t)announced_al;
    m[n++] = (uint8_t)(announced_al >> 8);
    memcpy(m + n, args, al);
    return n + al;
}

TEST(rpc_valid_and_truncations)
{
    uint8_t m[512];
    size_t n = build_rpc(m, 999, "Fire", 4, "[1,2]", 5, 5);
    nsy_rpc r;
    CHECK_EQ_INT(nsy_parse_rpc(m, n, &r), NSY_OK);
    CHECK_EQ_INT(r.sender, 999);
    CHECK_MEM(r.name.p, r.name.len, "Fire", 4);
    CHECK_MEM(r.args.p, r.args.len, "[1,2]", 5);
    CHECK(!r.args_cut);
    /* Prefixes that end inside the sender, the name or the args length fail; prefixes that end
     * inside the args are the lenient final-string case and give the bytes present. */
    for (size_t k = 1; k < n; k++) {
        int rc = nsy_parse_rpc(m, k, &r);
        if (k < 3 + 1 + 4 + 2) {
            CHECK_EQ_INT(rc, NSY_E_TRUNCATED);
        } else {
            CHECK_EQ_INT(rc, NSY_OK);
            CHECK_EQ_INT(r.args.len, k - 10);
            CHECK(r.args_cut);
        }
    }
}

TEST(rpc_args_overrun_lenient)
{
    uint8_t m[64];
    size_t n = build_rpc(m, 1, "f", 1, "abc", 3, 60000); /* measured on the reference */
    nsy_rpc r;
    CHECK_EQ_INT(nsy_parse_rpc(m, n, &r), NSY_OK);
    CHECK_MEM(r.args.p, r.args.len, "abc", 3);
    CHECK(r.args_cut);
    /* a name overrun is not lenient: the args length read then fails */
    n = build_rpc(m, 1, "f", 1, "", 0, 0);
    m[3] = 50;
    CHECK_EQ_INT(nsy_parse_rpc(m, n, &r), NSY_E_TRUNCATED);
    /* a cut that splits a UTF-8 sequence makes the args invalid */
    n = build_rpc(m, 1, "f", 1, "a\xc3", 2, 3);
    CHECK_EQ_INT(nsy_parse_rpc(m, n, &r), NSY_E_UTF8);
    n = build_rpc(m, 1, "\xff", 1, "", 0, 0);
    CHECK_EQ_INT(nsy_parse_rpc(m, n, &r), NSY_E_UTF8);
}

TEST(rpc_big_args_round_trip)
{
    static char args[65535];
    for (size_t i = 0; i < sizeof(args); i++) args[i] = (char)('a' + i % 26);
    rc_buf b = RC_BUF_INIT;
    nsy_enc e;
    nsy_enc_init(&e, &b);
    nsy_enc_rpc(&e, 7, "\xe2\x9c\x93name", 7, args, sizeof(args));
    CHECK_EQ_INT(e.err, 0);
    CHECK_EQ_INT(nsy_check_server_msg((uint8_t *)rc_buf_head(&b), rc_buf_size(&b)), NSY_OK);
    nsy_rpc r;
    CHECK_EQ_INT(nsy_parse_rpc((uint8_t *)rc_buf_head(&b), rc_buf_size(&b), &r), NSY_OK);
    CHECK_EQ_INT(r.sender, 7);
    CHECK_MEM(r.args.p, r.args.len, args, sizeof(args));
    CHECK(!r.args_cut);
    /* one byte more does not fit a str16 */
    rc_buf_reset(&b);
    nsy_enc_init(&e, &b);
    nsy_put_str16(&e, args, 65536);
    CHECK_EQ_INT(e.err, NSY_E_TOO_LONG);
    rc_buf_release(&b);
}

TEST(global_var_set)
{
    rc_buf b = RC_BUF_INIT;
    nsy_enc e;
    nsy_enc_init(&e, &b);
    double ts = 1732390000.123456789;
    nsy_enc_global_var_set(&e, 3, "score", 5, "42", 2, ts);
    CHECK_EQ_INT(e.err, 0);
    const uint8_t *m = (const uint8_t *)rc_buf_head(&b);
    size_t n = rc_buf_size(&b);
    CHECK_EQ_INT(n, 1 + 2 + 6 + 4 + 8);
    nsy_var_set v;
    CHECK_EQ_INT(nsy_parse_global_var_set(m, n, &v), NSY_OK);
    CHECK_EQ_INT(v.sender, 3);
    CHECK_MEM(v.name.p, v.name.len, "score", 5);
    CHECK_MEM(v.value.p, v.value.len, "42", 2);
    CHECK(memcmp(&v.timestamp, &ts, 8) == 0);
    for (size_t k = 1; k < n; k++) CHECK_EQ_INT(nsy_parse_global_var_set(m, k, &v), NSY_E_TRUNCATED);
    rc_buf_release(&b);
}

TEST(client_var_set)
{
    rc_buf b = RC_BUF_INIT;
    nsy_enc e;
    nsy_enc_init(&e, &b);
    nsy_enc_client_var_set(&e, 2, 777, "hp", 2, "\xc3\xa9", 2, -0.0);
    CHECK_EQ_INT(e.err, 0);
    const uint8_t *m = (const uint8_t *)rc_buf_head(&b);
    size_t n = rc_buf_size(&b);
    nsy_var_set v;
    CHECK_EQ_INT(nsy_parse_client_var_set(m, n, &v), NSY_OK);
    CHECK_EQ_INT(v.sender, 2);
    CHECK_EQ_INT(v.target, 777);
    CHECK_MEM(v.value.p, v.value.len, "\xc3\xa9", 2);
    CHECK(signbit(v.timestamp));
    for (size_t k = 1; k < n; k++) CHECK_EQ_INT(nsy_parse_client_var_set(m, k, &v), NSY_E_TRUNCATED);
    /* trailing bytes are fine */
    uint8_t big[64];
    memcpy(big, m, n);
    big[n] = 0xEE;
    CHECK_EQ_INT(nsy_parse_client_var_set(big, n + 1, &v), NSY_OK);
    /* value overrun is not final: truncated */
    big[8] = 0xFF;
    CHECK_EQ_INT(nsy_parse_client_var_set(big, n, &v), NSY_E_TRUNCATED);
    rc_buf_release(&b);
}

TEST(str8_over_255_rejected)
{
    char room[256];
    memset(room, 'r', sizeof(room));
    rc_buf b = RC_BUF_INIT;
    nsy_enc e;
    nsy_enc_init(&e, &b);
    nsy_enc_room_transform_begin(&e, room, 256);
    CHECK_EQ_INT(e.err, NSY_E_TOO_LONG);
    rc_buf_reset(&b);
    nsy_enc_init(&e, &b);
    nsy_enc_room_transform_begin(&e, room, 255);
    CHECK_EQ_INT(e.err, 0);
    rc_buf_reset(&b);
    nsy_enc_init(&e, &b);
    nsy_enc_mapping_entry(&e, 1, false, room, 256);
    CHECK_EQ_INT(e.err, NSY_E_TOO_LONG);
    rc_buf_release(&b);
}

TEST(room_transform_encode)
{
    rc_buf b = RC_BUF_INIT;
    nsy_enc e;
    nsy_enc_init(&e, &b);
    uint8_t body[NSY_BODY_SIZE], virt[51 * 24];
    fill_body(body, 1);
    memset(virt, 0x5A, sizeof(virt));
    size_t at = nsy_enc_room_transform_begin(&e, "lobby", 5);
    CHECK_EQ_INT(at, 7);
    nsy_enc_entry(&e, 1, body, 0, virt);
    nsy_enc_entry(&e, 2, body, 51, virt); /* clamped to 50 on output */
    nsy_patch_u16(&e, at, 2);
    CHECK_EQ_INT(e.err, 0);
    const uint8_t *m = (const uint8_t *)rc_buf_head(&b);
    CHECK_EQ_INT(rc_buf_size(&b), 9 + 99 + 99 + 50 * 24);
    CHECK_EQ_INT(m[0], NSY_ROOM_TRANSFORM);
    CHECK_EQ_INT(m[1], 5);
    CHECK_EQ_INT(nsy_get_u16(m + 7), 2);
    CHECK_EQ_INT(nsy_check_server_msg(m, rc_buf_size(&b)), NSY_OK);
    /* strict checker: count 0, nVirt 51, truncation, trailing byte */
    uint8_t bad[4096];
    size_t n = rc_buf_size(&b);
    memcpy(bad, m, n);
    bad[7] = bad[8] = 0;
    CHECK(nsy_check_server_msg(bad, 9) != NSY_OK);
    memcpy(bad, m, n);
    bad[9 + 99 + 98] = 51;
    CHECK(nsy_check_server_msg(bad, n) != NSY_OK);
    memcpy(bad, m, n);
    for (size_t k = 1; k < n; k++) CHECK(nsy_check_server_msg(bad, k) != NSY_OK);
    bad[n] = 0;
    CHECK(nsy_check_server_msg(bad, n + 1) != NSY_OK);
    rc_buf_release(&b);
}

TEST(mapping_and_syncs_encode)
{
    rc_buf b = RC_BUF_INIT;
    nsy_enc e;
    nsy_enc_init(&e, &b);
    nsy_put_u8(&e, NSY_DEVICE_ID_MAPPING);
    nsy_put_u16(&e, 2);
    nsy_enc_mapping_entry(&e, 1, false, "a", 1);
    nsy_enc_mapping_entry(&e, 2, true, "bb", 2);
    CHECK_EQ_INT(e.err, 0);
    static const uint8_t want[] = {6, 2, 0, 1, 0, 0, 1, 'a', 2, 0, 1, 2, 'b', 'b'};
    CHECK_MEM(rc_buf_head(&b), rc_buf_size(&b), want, sizeof(want));
    CHECK_EQ_INT(nsy_check_server_msg((uint8_t *)rc_buf_head(&b), rc_buf_size(&b)), NSY_OK);

    rc_buf_reset(&b);
    nsy_enc_init(&e, &b);
    nsy_put_u8(&e, NSY_GLOBAL_VAR_SYNC);
    nsy_put_u16(&e, 1);
    nsy_enc_var(&e, "g", 1, "v", 1, 1.5, 4);
    static const uint8_t want_g[] = {8, 1, 0, 1, 'g', 1, 0, 'v', 0, 0, 0, 0, 0, 0, 0xF8, 0x3F, 4, 0};
    CHECK_MEM(rc_buf_head(&b), rc_buf_size(&b), want_g, sizeof(want_g));
    CHECK_EQ_INT(nsy_check_server_msg((uint8_t *)rc_buf_head(&b), rc_buf_size(&b)), NSY_OK);

    rc_buf_reset(&b);
    nsy_enc_init(&e, &b);
    nsy_put_u8(&e, NSY_CLIENT_VAR_SYNC);
    nsy_put_u16(&e, 2);
    nsy_put_u16(&e, 777);
    nsy_put_u16(&e, 1);
    nsy_enc_var(&e, "hp", 2, "10", 2, 2.0, 1);
    nsy_put_u16(&e, 1);
    nsy_put_u16(&e, 0);
    CHECK_EQ_INT(e.err, 0);
    const uint8_t *m = (const uint8_t *)rc_buf_head(&b);
    size_t n = rc_buf_size(&b);
    CHECK_EQ_INT(nsy_check_server_msg(m, n), NSY_OK);
    CHECK_EQ_INT(nsy_get_u16(m + 3), 777);
    for (size_t k = 1; k < n; k++) CHECK(nsy_check_server_msg(m, k) != NSY_OK);
    rc_buf_release(&b);
}

TEST(utf8_prefix_code_points)
{
    const uint8_t *s = (const uint8_t *)"a\xc3\xa9\xe2\x9c\x93\xf0\x9f\x98\x80z";
    size_t n = strlen((const char *)s);
    CHECK_EQ_INT(nsy_utf8_prefix(s, n, 0), 0);
    CHECK_EQ_INT(nsy_utf8_prefix(s, n, 1), 1);
    CHECK_EQ_INT(nsy_utf8_prefix(s, n, 2), 3);
    CHECK_EQ_INT(nsy_utf8_prefix(s, n, 3), 6);
    CHECK_EQ_INT(nsy_utf8_prefix(s, n, 4), 10);
    CHECK_EQ_INT(nsy_utf8_prefix(s, n, 5), n);
    CHECK_EQ_INT(nsy_utf8_prefix(s, n, 64), n);
    char name[80];
    memset(name, 'n', sizeof(name));
    CHECK_EQ_INT(nsy_utf8_prefix((uint8_t *)name, 80, 64), 64);
}

TEST(check_server_rejects_client_types)
{
    uint8_t m[1] = {NSY_CLIENT_TRANSFORM};
    CHECK(nsy_check_server_msg(m, 1) != NSY_OK);
    CHECK(nsy_check_server_msg(m, 0) != NSY_OK);
    uint8_t map_bad_flag[] = {6, 1, 0, 1, 0, 2, 0};
    CHECK(nsy_check_server_msg(map_bad_flag, sizeof(map_bad_flag)) != NSY_OK);
    uint8_t map_empty[] = {6, 0, 0};
    CHECK_EQ_INT(nsy_check_server_msg(map_empty, sizeof(map_empty)), NSY_OK);
}

TEST(var_set_utf8_and_overruns)
{
    rc_buf b = RC_BUF_INIT;
    nsy_enc e;
    nsy_enc_init(&e, &b);
    nsy_enc_global_var_set(&e, 1, "nm", 2, "val", 3, 1.0);
    uint8_t g[32];
    size_t n = rc_buf_size(&b);
    memcpy(g, rc_buf_head(&b), n);
    nsy_var_set v;
    g[4] = 0xFF; /* name byte */
    CHECK_EQ_INT(nsy_parse_global_var_set(g, n, &v), NSY_E_UTF8);
    g[4] = 'n';
    g[8] = 0xC0; /* value byte (overlong lead) */
    CHECK_EQ_INT(nsy_parse_global_var_set(g, n, &v), NSY_E_UTF8);
    g[8] = 'v';
    g[3] = 30; /* name overruns: the value length and the timestamp cannot be read */
    CHECK_EQ_INT(nsy_parse_global_var_set(g, n, &v), NSY_E_TRUNCATED);
    g[3] = 2;
    g[6] = 0xFF; /* value overruns: not the last field, so not lenient */
    CHECK_EQ_INT(nsy_parse_global_var_set(g, n, &v), NSY_E_TRUNCATED);
    g[6] = 3;
    CHECK_EQ_INT(nsy_parse_global_var_set(g, n, &v), NSY_OK);
    CHECK_EQ_INT(v.target, 0);
    rc_buf_release(&b);
}

TEST(mutations_reparse_exactly)
{
    /* 4000 seeded mutations of valid client messages: whatever parses re-encodes to exactly
     * the bytes it was parsed from (every field comes from where the layout says), and every
     * failure is one of the parse errors. */
    static uint8_t m[1200];
    rc_buf b = RC_BUF_INIT;
    uint8_t body[NSY_BODY_SIZE], virt[3 * NSY_TRANSFORM_SIZE];
    fill_body(body, 9);
    memset(virt, 0x41, sizeof(virt));
    int ok = 0;
    for (int i = 0; i < 4000; i++) {
        rc_buf_reset(&b);
        nsy_enc e;
        nsy_enc_init(&e, &b);
        switch (i % 4) {
        case 0: nsy_enc_client_transform(&e, "dev-1", 5, body, 3, virt); break;
        case 1: nsy_enc_rpc(&e, 5, "Fire", 4, "{\"a\":[1,2]}", 11); break;
        case 2: nsy_enc_global_var_set(&e, 2, "g", 1, "value", 5, 3.25); break;
        default: nsy_enc_client_var_set(&e, 2, 9, "c", 1, "v", 1, -1.5); break;
        }
        size_t n = rc_buf_size(&b);
        memcpy(m, rc_buf_head(&b), n);
        for (int j = 0, f = 1 + (int)(unit_rand() % 3); j < f; j++) {
            size_t at = 1 + unit_rand() % (n - 1); /* keep the type byte */
            m[at] = (uint8_t)unit_rand();
        }
        if (unit_rand() % 4 == 0) n = 1 + unit_rand() % n;
        rc_buf_reset(&b);
        nsy_enc_init(&e, &b);
        int rc;
        if (i % 4 == 0) {
            nsy_client_transform t;
            if ((rc = nsy_parse_client_transform(m, n, &t)) == NSY_OK)
                nsy_enc_client_transform(&e, t.device_id.p, t.device_id.len, t.body,
                                        t.clamped ? m[2 + t.device_id.len + NSY_BODY_SIZE] : t.nvirt,
                                        t.virt);
        } else if (i % 4 == 1) {
            nsy_rpc r;
            if ((rc = nsy_parse_rpc(m, n, &r)) == NSY_OK && !r.args_cut)
                nsy_enc_rpc(&e, r.sender, r.name.p, r.name.len, r.args.p, r.args.len);
            else if (rc == NSY_OK)
                continue;
        } else {
            nsy_var_set v;
            rc = i % 4 == 2 ? nsy_parse_global_var_set(m, n, &v) : nsy_parse_client_var_set(m, n, &v);
            if (rc == NSY_OK && i % 4 == 2)
                nsy_enc_global_var_set(&e, v.sender, v.name.p, v.name.len, v.value.p, v.value.len,
                                      v.timestamp);
            else if (rc == NSY_OK)
                nsy_enc_client_var_set(&e, v.sender, v.target, v.name.p, v.name.len, v.value.p,
                                      v.value.len, v.timestamp);
        }
        if (rc != NSY_OK) {
            CHECK(rc == NSY_E_TRUNCATED || rc == NSY_E_UTF8);
            continue;
        }
        ok++;
        CHECK_EQ_INT(e.err, 0);
        CHECK(rc_buf_size(&b) <= n); /* trailing bytes are not part of the message */
        CHECK(memcmp(rc_buf_head(&b), m, rc_buf_size(&b)) == 0);
    }
    CHECK(ok > 500);
    rc_buf_release(&b);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(classify_types);
    RUN(transform_valid_uuid);
    RUN(transform_every_truncation);
    RUN(transform_trailing_bytes_ignored);
    RUN(transform_nvirt_clamp);
    RUN(transform_device_overrun_and_utf8);
    RUN(transform_stealth);
    RUN(transform_float_bit_exact);
    RUN(rpc_valid_and_truncations);
    RUN(rpc_args_overrun_lenient);
    RUN(rpc_big_args_round_trip);
    RUN(global_var_set);
    RUN(client_var_set);
    RUN(str8_over_255_rejected);
    RUN(room_transform_encode);
    RUN(mapping_and_syncs_encode);
    RUN(utf8_prefix_code_points);
    RUN(check_server_rejects_client_types);
    RUN(var_set_utf8_and_overruns);
    RUN(mutations_reparse_exactly);
    UNIT_MAIN_END("test_nsproto");
}
