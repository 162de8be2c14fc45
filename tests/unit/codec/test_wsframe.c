/* test_wsframe.c — tests for src/codec/wsframe.c: header parsing at every length-encoding
 * boundary and on every prefix, every protocol error (including that it is reported as soon
 * as the offending byte is in), unmasking against a byte-by-byte reference at every key phase
 * and alignment and in pieces, header encoding round trips, and close-code validity.
 */
#include "unit.h"

#include "codec/wsframe.h"

#include <stdint.h>

static const uint8_t key[4] = {0x37, 0xFA, 0x21, 0x3D};

/* build writes a client-style header; len_bytes 0, 2 or 8 selects the length form (0 means
 * len < 126 in the 7-bit field), whatever len is, so non-minimal forms can be built too. */
static size_t build(uint8_t *out, uint8_t b0, bool masked, int len_bytes, uint64_t len)
{
    size_t n = 0;
    out[n++] = b0;
    uint8_t m = masked ? 0x80 : 0;
    if (len_bytes == 0) {
        out[n++] = (uint8_t)(m | len);
    } else if (len_bytes == 2) {
        out[n++] = m | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = m | 127;
        for (int i = 7; i >= 0; i--) out[n++] = (uint8_t)(len >> (8 * i));
    }
    if (masked) {
        memcpy(out + n, key, 4);
        n += 4;
    }
    return n;
}

/* parses_to checks that h[0..n) parses to the given frame and that every shorter prefix asks
 * for more bytes, also with trailing payload bytes after the header. */
static bool parses_to(const uint8_t *h, size_t n, bool require_mask, bool fin, uint8_t opcode,
                      bool masked, uint64_t len)
{
    uint8_t buf[64];
    rc_ws_frame f;
    for (size_t k = 0; k < n; k++)
        if (rc_ws_parse_header(h, k, require_mask, &f) != 0) return false;
    memcpy(buf, h, n);
    memset(buf + n, 0xAA, sizeof buf - n);
    for (size_t extra = 0; extra <= 20; extra += 10) {
        memset(&f, 0x55, sizeof f);
        if (rc_ws_parse_header(buf, n + extra, require_mask, &f) != (int)n) return false;
        if (f.fin != fin || f.opcode != opcode || f.masked != masked || f.len != len ||
            f.header_len != n)
            return false;
        if (masked && memcmp(f.mask, key, 4) != 0) return false;
    }
    return true;
}

TEST(test_parse_lengths)
{
    static const struct {
        uint64_t len;
        int form;
    } cases[] = {
        {0, 0}, {1, 0}, {125, 0}, {126, 2}, {127, 2}, {65535, 2}, {65536, 8},
        {0xFFFFFFFFull, 8}, {0x100000000ull, 8}, {0x7FFFFFFFFFFFFFFFull, 8},
        {0x10000ull, 8}, {0x1000000000000ull, 8}, /* one non-zero byte, at each end */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t h[RC_WS_MAX_HEADER];
        for (int masked = 0; masked <= 1; masked++) {
            size_t n = build(h, 0x82, masked, cases[i].form, cases[i].len);
            CHECK_EQ_INT(n, 2 + cases[i].form + (masked ? 4 : 0));
            CHECK(parses_to(h, n, masked, true, RC_WS_BINARY, masked, cases[i].len));
            if (masked) CHECK(parses_to(h, n, false, true, RC_WS_BINARY, true, cases[i].len));
        }
    }
}

TEST(test_parse_opcodes_and_fin)
{
    uint8_t h[RC_WS_MAX_HEADER];
    static const uint8_t ok[] = {RC_WS_CONT, RC_WS_TEXT, RC_WS_BINARY, RC_WS_CLOSE, RC_WS_PING,
                                 RC_WS_PONG};
    for (size_t i = 0; i < sizeof ok; i++) {
        size_t n = build(h, (uint8_t)(0x80 | ok[i]), true, 0, 125);
        CHECK(parses_to(h, n, true, true, ok[i], true, 125));
        if (ok[i] < 8) { /* data frames may be fragments */
            n = build(h, ok[i], true, 0, 3);
            CHECK(parses_to(h, n, true, false, ok[i], true, 3));
        }
    }
    /* a close frame with an empty payload, and a control frame of exactly 125 bytes */
    size_t n = build(h, 0x88, true, 0, 0);
    CHECK(parses_to(h, n, true, true, RC_WS_CLOSE, true, 0));
}

/* expect_error checks h[0..n) is a protocol error, and that it is reported from the prefix of
 * length first_at on (the earliest byte that proves it), while shorter prefixes ask for more. */
static bool expect_error(const uint8_t *h, size_t n, unsigned require_mask, size_t first_at)
{
    rc_ws_frame f;
    for (size_t k = 0; k <= n; k++) {
        int r = rc_ws_parse_header(h, k, require_mask, &f);
        if (k < first_at && r != 0) return false;
        if (k >= first_at && r != -RC_WS_CLOSE_PROTOCOL) return false;
    }
    return true;
}

TEST(test_parse_errors)
{
    uint8_t h[RC_WS_MAX_HEADER];
    size_t n;
    /* RSV1, RSV2, RSV3, each alone and on any opcode */
    for (int bit = 4; bit <= 6; bit++) {
        n = build(h, (uint8_t)(0x81 | 1 << bit), true, 0, 1);
        CHECK(expect_error(h, n, true, 1));
        n = build(h, (uint8_t)(0x88 | 1 << bit), true, 0, 1);
        CHECK(expect_error(h, n, false, 1));
    }
    /* reserved opcodes 3-7 and 0xB-0xF, with and without FIN */
    for (unsigned op = 0; op < 16; op++) {
        bool reserved = (op >= 3 && op <= 7) || op >= 0xB;
        if (!reserved) continue;
        n = build(h, (uint8_t)(0x80 | op), true, 0, 0);
        CHECK(expect_error(h, n, true, 1));
        n = build(h, (uint8_t)op, true, 0, 0);
        CHECK(expect_error(h, n, true, 1));
    }
    /* fragmented control frames */
    for (unsigned op = 8; op <= 0xA; op++) {
        n = build(h, (uint8_t)op, true, 0, 0);
        CHECK(expect_error(h, n, true, 1));
    }
    /* control frames longer than 125, in each length form */
    for (unsigned op = 8; op <= 0xA; op++) {
        n = build(h, (uint8_t)(0x80 | op), true, 0, 125);
        CHECK(parses_to(h, n, true, true, (uint8_t)op, true, 125));
        n = build(h, (uint8_t)(0x80 | op), true, 2, 126);
        CHECK(expect_error(h, n, true, 2));
        n = build(h, (uint8_t)(0x80 | op), true, 2, 5); /* even if the value is small */
        CHECK(expect_error(h, n, true, 2));
        n = build(h, (uint8_t)(0x80 | op), true, 8, 70000);
        CHECK(expect_error(h, n, true, 2));
    }
    /* 64-bit length with the top bit set: known from the first length byte */
    n = build(h, 0x82, true, 8, 0x8000000000000000ull);
    CHECK(expect_error(h, n, true, 3));
    n = build(h, 0x82, false, 8, 0xFFFFFFFFFFFFFFFFull);
    CHECK(expect_error(h, n, false, 3));
    /* unmasked client frame on a server */
    n = build(h, 0x81, false, 0, 5);
    CHECK(expect_error(h, n, true, 2));
    CHECK(parses_to(h, n, false, true, RC_WS_TEXT, false, 5)); /* fine for a client */
    n = build(h, 0x81, false, 8, 70000);
    CHECK(expect_error(h, n, true, 2));
}

/* Non-minimal length forms (§5.2) are 1002, refused at the last length byte that proves it:
 * the second byte of a 16-bit length, the eighth of a 64-bit one (a non-zero byte earlier
 * proves nothing wrong), before the masking key. */
TEST(test_parse_non_minimal_lengths)
{
    uint8_t h[RC_WS_MAX_HEADER];
    static const uint64_t short16[] = {0, 1, 5, 125};
    static const uint64_t short64[] = {0, 1, 125, 126, 300, 65535};
    for (int masked = 0; masked <= 1; masked++) {
        for (size_t i = 0; i < sizeof short16 / sizeof short16[0]; i++) {
            size_t n = build(h, 0x81, masked, 2, short16[i]);
            CHECK(expect_error(h, n, false, 4));
            n = build(h, 0x02, masked, 2, short16[i]); /* a fragment too */
            CHECK(expect_error(h, n, false, 4));
        }
        for (size_t i = 0; i < sizeof short64 / sizeof short64[0]; i++) {
            size_t n = build(h, 0x82, masked, 8, short64[i]);
            CHECK(expect_error(h, n, false, 10));
        }
    }
    /* the smallest lengths of each form are fine */
    size_t n = build(h, 0x82, true, 2, 126);
    CHECK(parses_to(h, n, true, true, RC_WS_BINARY, true, 126));
    n = build(h, 0x82, true, 8, 65536);
    CHECK(parses_to(h, n, true, true, RC_WS_BINARY, true, 65536));
}

/* RSV1 marks a compressed message when permessage-deflate is on: allowed on the first frame of
 * a data message only, never on a continuation or a control frame, and never when off. */
TEST(test_parse_rsv1)
{
    uint8_t h[RC_WS_MAX_HEADER];
    rc_ws_frame f;
    unsigned on = RC_WS_REQUIRE_MASK | RC_WS_ALLOW_RSV1;
    for (unsigned op = 1; op <= 2; op++) {
        for (int fin = 0; fin <= 1; fin++) {
            uint8_t b0 = (uint8_t)((fin ? 0x80 : 0) | 0x40 | op);
            size_t n = build(h, b0, true, 0, 7);
            CHECK_EQ_INT(rc_ws_parse_header(h, n, on, &f), n);
            CHECK(f.rsv1 && f.fin == fin && f.opcode == op);
            CHECK(expect_error(h, n, RC_WS_REQUIRE_MASK, 1));
        }
    }
    size_t n = build(h, 0x81, true, 0, 7);
    CHECK_EQ_INT(rc_ws_parse_header(h, n, on, &f), n);
    CHECK(!f.rsv1);
    n = build(h, 0xC0, true, 0, 7); /* continuation */
    CHECK(expect_error(h, n, on, 1));
    n = build(h, 0x40, true, 0, 7);
    CHECK(expect_error(h, n, on, 1));
    for (unsigned op = 8; op <= 0xA; op++) {
        n = build(h, (uint8_t)(0xC0 | op), true, 0, 0);
        CHECK(expect_error(h, n, on, 1));
    }
    /* RSV2 and RSV3 stay errors with deflate on */
    n = build(h, 0xA1, true, 0, 1);
    CHECK(expect_error(h, n, on, 1));
    n = build(h, 0x91, true, 0, 1);
    CHECK(expect_error(h, n, on, 1));
}

TEST(test_parse_empty_and_every_first_byte)
{
    rc_ws_frame f;
    CHECK_EQ_INT(rc_ws_parse_header(NULL, 0, true, &f), 0);
    /* all 65536 first-two-byte combinations: result is an error, "more", or a header whose
     * fields match the bits, and never a header longer than the bytes given */
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            uint8_t h[RC_WS_MAX_HEADER] = {(uint8_t)a, (uint8_t)b};
            for (size_t k = 2; k <= RC_WS_MAX_HEADER; k++) {
                int r = rc_ws_parse_header(h, k, true, &f);
                CHECK(r == 0 || r == -RC_WS_CLOSE_PROTOCOL || (r >= 2 && (size_t)r <= k));
                if (r > 0) {
                    CHECK(f.fin == !!(a & 0x80));
                    CHECK_EQ_INT(f.opcode, a & 0x0F);
                    CHECK(f.masked);
                    CHECK_EQ_INT(f.header_len, r);
                    break;
                }
                if (r < 0) break;
            }
        }
    }
}

static void ref_unmask(uint8_t *p, size_t n, const uint8_t m[4], uint64_t offset)
{
    for (size_t i = 0; i < n; i++) p[i] ^= m[(offset + i) % 4];
}

TEST(test_unmask_offsets_and_lengths)
{
    uint8_t base[64], got[64 + 8], want[64];
    for (size_t i = 0; i < sizeof base; i++) base[i] = (uint8_t)unit_rand();
    for (uint64_t off = 0; off <= 7; off++) {
        for (size_t len = 0; len <= 40; len++) {
            for (size_t align = 0; align < 8; align++) {
                memcpy(want, base, len);
                ref_unmask(want, len, key, off);
                memset(got, 0xEE, sizeof got);
                memcpy(got + align, base, len);
                rc_ws_unmask(got + align, len, key, off);
                CHECK_MEM(got + align, len, want, len);
                for (size_t i = 0; i < align; i++) CHECK_EQ_INT(got[i], 0xEE); /* no overrun */
                for (size_t i = align + len; i < sizeof got; i++) CHECK_EQ_INT(got[i], 0xEE);
            }
        }
    }
    /* huge offsets only matter modulo 4 */
    memcpy(want, base, 40);
    ref_unmask(want, 40, key, 3);
    memcpy(got, base, 40);
    rc_ws_unmask(got, 40, key, 0xFFFFFFFFFFFFFFFFull);
    CHECK_MEM(got, 40, want, 40);
}

TEST(test_unmask_round_trip)
{
    uint8_t buf[300], orig[300];
    for (size_t i = 0; i < sizeof buf; i++) orig[i] = buf[i] = (uint8_t)(i * 31 + 7);
    rc_ws_unmask(buf, sizeof buf, key, 0);
    CHECK(memcmp(buf, orig, sizeof buf) != 0);
    rc_ws_unmask(buf, sizeof buf, key, 0);
    CHECK_MEM(buf, sizeof buf, orig, sizeof orig);
}

/* Unmasking a payload in random pieces, each at its offset, equals doing it in one go. */
TEST(test_unmask_pieces)
{
    uint8_t whole[1000], pieces[1000], mask[4];
    for (int iter = 0; iter < 500; iter++) {
        size_t n = (size_t)(unit_rand() % sizeof whole);
        for (int i = 0; i < 4; i++) mask[i] = (uint8_t)unit_rand();
        for (size_t i = 0; i < n; i++) whole[i] = pieces[i] = (uint8_t)unit_rand();
        rc_ws_unmask(whole, n, mask, 0);
        size_t i = 0;
        while (i < n) {
            size_t k = (size_t)(unit_rand() % 70);
            if (k > n - i) k = n - i;
            rc_ws_unmask(pieces + i, k, mask, i);
            i += k;
        }
        CHECK_MEM(pieces, n, whole, n);
        ref_unmask(pieces, n, mask, 0);
        for (size_t j = 0; j < n; j++) whole[j] ^= mask[j % 4];
        CHECK_MEM(pieces, n, whole, n); /* both back to the original */
    }
}

TEST(test_encode_header)
{
    static const struct {
        uint64_t len;
        size_t size;
        const char *bytes;
    } cases[] = {
        {0, 2, "\x81\x00"},
        {125, 2, "\x81\x7D"},
        {126, 4, "\x81\x7E\x00\x7E"},
        {65535, 4, "\x81\x7E\xFF\xFF"},
        {65536, 10, "\x81\x7F\x00\x00\x00\x00\x00\x01\x00\x00"},
        {0x0102030405060708ull, 10, "\x81\x7F\x01\x02\x03\x04\x05\x06\x07\x08"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t out[RC_WS_MAX_SERVER_HEADER + 4];
        memset(out, 0xEE, sizeof out);
        size_t n = rc_ws_encode_header(out, RC_WS_TEXT, true, cases[i].len);
        CHECK_EQ_INT(n, cases[i].size);
        CHECK_EQ_INT(rc_ws_header_size(cases[i].len), cases[i].size);
        CHECK_MEM(out, n, cases[i].bytes, cases[i].size);
        for (size_t j = n; j < sizeof out; j++) CHECK_EQ_INT(out[j], 0xEE);
    }
    /* fin and opcode bits */
    uint8_t out[RC_WS_MAX_SERVER_HEADER];
    rc_ws_encode_header(out, RC_WS_CONT, false, 1);
    CHECK_EQ_INT(out[0], 0x00);
    rc_ws_encode_header(out, RC_WS_PONG, true, 1);
    CHECK_EQ_INT(out[0], 0x8A);
    rc_ws_encode_header(out, RC_WS_BINARY, false, 1);
    CHECK_EQ_INT(out[0], 0x02);
}

/* Encoding then parsing (as a client would, unmasked) gives back the same frame, and the
 * size is the minimum for every length around every boundary. */
TEST(test_encode_parse_round_trip)
{
    static const uint64_t lens[] = {0, 1, 124, 125, 126, 127, 255, 256, 65534, 65535, 65536,
                                    65537, 0xFFFFFFFFull, 0x100000000ull,
                                    0x7FFFFFFFFFFFFFFFull};
    static const uint8_t ops[] = {RC_WS_CONT, RC_WS_TEXT, RC_WS_BINARY, RC_WS_CLOSE,
                                  RC_WS_PING, RC_WS_PONG};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (size_t o = 0; o < sizeof ops; o++) {
            for (int fin = 0; fin <= 1; fin++) {
                bool control = ops[o] >= 8;
                if (control && (!fin || lens[i] > 125)) continue; /* would not parse */
                uint8_t h[RC_WS_MAX_SERVER_HEADER];
                size_t n = rc_ws_encode_header(h, ops[o], fin, lens[i]);
                CHECK_EQ_INT(n, lens[i] < 126 ? 2 : lens[i] < 65536 ? 4 : 10);
                CHECK_EQ_INT(n, rc_ws_header_size(lens[i]));
                rc_ws_frame f;
                CHECK_EQ_INT(rc_ws_parse_header(h, n, false, &f), n);
                CHECK_EQ_INT(f.len, lens[i]);
                CHECK_EQ_INT(f.opcode, ops[o]);
                CHECK_EQ_INT(f.fin, fin);
                CHECK(!f.masked);
                CHECK_EQ_INT(rc_ws_parse_header(h, n, true, &f), -RC_WS_CLOSE_PROTOCOL);
            }
        }
    }
}

TEST(test_close_codes)
{
    for (unsigned c = 0; c < 70000; c++) {
        bool want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
                    (c >= 3000 && c <= 4999);
        CHECK_EQ_INT(rc_ws_close_code_valid(c), want);
    }
    CHECK(rc_ws_close_code_valid(RC_WS_CLOSE_NORMAL));
    CHECK(rc_ws_close_code_valid(RC_WS_CLOSE_TRY_AGAIN));
    CHECK(!rc_ws_close_code_valid(1004));
    CHECK(!rc_ws_close_code_valid(RC_WS_CLOSE_NO_STATUS));
    CHECK(!rc_ws_close_code_valid(1006));
    CHECK(!rc_ws_close_code_valid(1015));
    CHECK(!rc_ws_close_code_valid(1016));
    CHECK(!rc_ws_close_code_valid(2999));
    CHECK(rc_ws_close_code_valid(3000));
    CHECK(rc_ws_close_code_valid(4999));
    CHECK(!rc_ws_close_code_valid(5000));
    CHECK(!rc_ws_close_code_valid(0xFFFFFFFFu));
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(test_parse_lengths);
    RUN(test_parse_opcodes_and_fin);
    RUN(test_parse_errors);
    RUN(test_parse_non_minimal_lengths);
    RUN(test_parse_rsv1);
    RUN(test_parse_empty_and_every_first_byte);
    RUN(test_unmask_offsets_and_lengths);
    RUN(test_unmask_round_trip);
    RUN(test_unmask_pieces);
    RUN(test_encode_header);
    RUN(test_encode_parse_round_trip);
    RUN(test_close_codes);
    UNIT_MAIN_END("test_wsframe");
}
