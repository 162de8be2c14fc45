/* test_utf8.c — tests for src/codec/utf8.c.
 *
 * Besides a table of the classic boundary cases, the validator is compared with a slow
 * reference written from RFC 3629's definitions (decode the code point, then check range,
 * overlong and surrogates) on every 2-byte string, on every 4-byte string over an alphabet of
 * boundary bytes, and on random texts. Every comparison is done on every prefix too, which is
 * what pins down "fail fast": after k bytes the validator must say exactly what the reference
 * says about those k bytes, and the result must not depend on how the text was split.
 */
#include "unit.h"

#include "codec/utf8.h"

#include <stdint.h>

/* ---- reference ---------------------------------------------------------------------------- */

/* ref_utf8 classifies p[0..n) the slow, obvious way. A truncated final sequence is
 * RC_UTF8_INCOMPLETE only if some continuation could still make it valid: the bytes present fix
 * the high bits of the code point, so the possible values form an interval, which must meet
 * the valid range for that length minus the surrogates. */
static int ref_utf8(const uint8_t *p, size_t n)
{
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    static const uint32_t max_cp[5] = {0, 0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07;
        } else {
            return RC_UTF8_INVALID; /* continuation byte, or a 5/6-byte or FE/FF lead */
        }
        size_t have = 1;
        while (have < len && i + have < n) {
            if ((p[i + have] & 0xC0) != 0x80) return RC_UTF8_INVALID;
            cp = cp << 6 | (p[i + have] & 0x3F);
            have++;
        }
        uint32_t lo = cp << 6 * (len - have);
        uint32_t hi = lo | ((1u << 6 * (len - have)) - 1);
        if (lo < min_cp[len]) lo = min_cp[len];
        if (hi > max_cp[len]) hi = max_cp[len];
        if (lo > hi) return RC_UTF8_INVALID;
        if (lo >= 0xD800 && hi <= 0xDFFF) return RC_UTF8_INVALID;
        if (have < len) return RC_UTF8_INCOMPLETE; /* only possible at the very end */
        i += len;
    }
    return RC_UTF8_OK;
}

/* encode writes code point cp (any value < 2^21, surrogates included) as UTF-8. */
static size_t encode(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- helpers ------------------------------------------------------------------------------ */

static int whole(const uint8_t *p, size_t n)
{
    rc_utf8 v;
    rc_utf8_init(&v);
    return rc_utf8_feed(&v, p, n);
}

/* bytewise_mismatch feeds p one byte at a time and checks the state after each byte
 * against the reference on that prefix. Returns the failing prefix length + 1, or 0. */
static size_t bytewise_mismatch(const uint8_t *p, size_t n)
{
    rc_utf8 v;
    rc_utf8_init(&v);
    for (size_t k = 1; k <= n; k++) {
        int r = rc_utf8_feed(&v, p + k - 1, 1);
        if (r != ref_utf8(p, k)) return k;
    }
    return 0;
}

/* random_split feeds p in random pieces (empty pieces included) and returns the last result. */
static int random_split(const uint8_t *p, size_t n)
{
    rc_utf8 v;
    rc_utf8_init(&v);
    int r = rc_utf8_feed(&v, p, 0);
    size_t i = 0;
    while (i < n) {
        size_t k = (size_t)(unit_rand() % 9);
        if (k > n - i) k = n - i;
        r = rc_utf8_feed(&v, p + i, k);
        i += k;
    }
    return r;
}

/* ---- tests -------------------------------------------------------------------------------- */

struct utf8_case {
    const char *name;
    const char *bytes;
    size_t len;
    int result;       /* whole-buffer result */
    int bad_at;       /* prefix length at which INVALID is first reported, or -1 */
};

#define CASE(name, s, result, bad_at) {name, s, sizeof(s) - 1, result, bad_at}

static const struct utf8_case utf8_cases[] = {
    CASE("empty", "", RC_UTF8_OK, -1),
    CASE("ascii", "Hello, world", RC_UTF8_OK, -1),
    CASE("nul", "a\0b", RC_UTF8_OK, -1),
    CASE("U+007F", "\x7F", RC_UTF8_OK, -1),
    CASE("U+0080", "\xC2\x80", RC_UTF8_OK, -1),
    CASE("U+07FF", "\xDF\xBF", RC_UTF8_OK, -1),
    CASE("U+0800", "\xE0\xA0\x80", RC_UTF8_OK, -1),
    CASE("U+D7FF", "\xED\x9F\xBF", RC_UTF8_OK, -1),
    CASE("U+E000", "\xEE\x80\x80", RC_UTF8_OK, -1),
    CASE("U+FFFD", "\xEF\xBF\xBD", RC_UTF8_OK, -1),
    CASE("U+FFFF", "\xEF\xBF\xBF", RC_UTF8_OK, -1),
    CASE("U+10000", "\xF0\x90\x80\x80", RC_UTF8_OK, -1),
    CASE("U+10FFFF", "\xF4\x8F\xBF\xBF", RC_UTF8_OK, -1),
    CASE("kosme", "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", RC_UTF8_OK, -1),
    CASE("U+110000", "\xF4\x90\x80\x80", RC_UTF8_INVALID, 2),
    CASE("U+13FFFF", "\xF4\xBF\xBF\xBF", RC_UTF8_INVALID, 2),
    CASE("F5 lead", "\xF5\x80\x80\x80", RC_UTF8_INVALID, 1),
    CASE("F7 lead", "\xF7\xBF\xBF\xBF", RC_UTF8_INVALID, 1),
    CASE("FF", "\xFF", RC_UTF8_INVALID, 1),
    CASE("FE", "a\xFE", RC_UTF8_INVALID, 2),
    CASE("U+D800", "\xED\xA0\x80", RC_UTF8_INVALID, 2),
    CASE("U+DBFF", "\xED\xAF\xBF", RC_UTF8_INVALID, 2),
    CASE("U+DC00", "\xED\xB0\x80", RC_UTF8_INVALID, 2),
    CASE("U+DFFF", "\xED\xBF\xBF", RC_UTF8_INVALID, 2),
    CASE("surrogate pair", "\xED\xA0\x80\xED\xB0\x80", RC_UTF8_INVALID, 2),
    CASE("overlong / C0", "\xC0\xAF", RC_UTF8_INVALID, 1),
    CASE("overlong NUL C0", "\xC0\x80", RC_UTF8_INVALID, 1),
    CASE("overlong C1", "\xC1\xBF", RC_UTF8_INVALID, 1),
    CASE("overlong E0 80", "\xE0\x80\xAF", RC_UTF8_INVALID, 2),
    CASE("overlong E0 9F", "\xE0\x9F\xBF", RC_UTF8_INVALID, 2),
    CASE("overlong F0 80", "\xF0\x80\x80\xAF", RC_UTF8_INVALID, 2),
    CASE("overlong F0 8F", "\xF0\x8F\xBF\xBF", RC_UTF8_INVALID, 2),
    CASE("5-byte form", "\xF8\x88\x80\x80\x80", RC_UTF8_INVALID, 1),
    CASE("5-byte max", "\xFB\xBF\xBF\xBF\xBF", RC_UTF8_INVALID, 1),
    CASE("6-byte form", "\xFC\x84\x80\x80\x80\x80", RC_UTF8_INVALID, 1),
    CASE("6-byte max", "\xFD\xBF\xBF\xBF\xBF\xBF", RC_UTF8_INVALID, 1),
    CASE("lone continuation", "\x80", RC_UTF8_INVALID, 1),
    CASE("continuation after ascii", "ab\xBF", RC_UTF8_INVALID, 3),
    CASE("extra continuation", "\xC2\x80\x80", RC_UTF8_INVALID, 3),
    CASE("2-byte then ascii", "\xC2" "A", RC_UTF8_INVALID, 2),
    CASE("3-byte cut by ascii", "\xE1\x80" "A", RC_UTF8_INVALID, 3),
    CASE("4-byte cut by ascii", "\xF1\x80\x80" "A", RC_UTF8_INVALID, 4),
    CASE("lead after lead", "\xE1\xE1\x80\x80", RC_UTF8_INVALID, 2),
    CASE("truncated 2", "\xC2", RC_UTF8_INCOMPLETE, -1),
    CASE("truncated 3/1", "\xE0", RC_UTF8_INCOMPLETE, -1),
    CASE("truncated 3/2", "\xE0\xA0", RC_UTF8_INCOMPLETE, -1),
    CASE("truncated ED 9F", "\xED\x9F", RC_UTF8_INCOMPLETE, -1),
    CASE("truncated 4/1", "\xF4", RC_UTF8_INCOMPLETE, -1),
    CASE("truncated 4/2", "\xF4\x8F", RC_UTF8_INCOMPLETE, -1),
    CASE("truncated 4/3", "\xF0\x90\x80", RC_UTF8_INCOMPLETE, -1),
    CASE("text then truncated", "hello \xCE\xBA\xE1\xBD", RC_UTF8_INCOMPLETE, -1),
    CASE("invalid after valid text", "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80"
                                     "edited", RC_UTF8_INVALID, 13),
};

TEST(test_table_whole)
{
    for (size_t c = 0; c < sizeof utf8_cases / sizeof utf8_cases[0]; c++) {
        const struct utf8_case *t = &utf8_cases[c];
        const uint8_t *p = (const uint8_t *)t->bytes;
        if (whole(p, t->len) != t->result) fprintf(stderr, "case: %s\n", t->name);
        CHECK_EQ_INT(whole(p, t->len), t->result);
        CHECK_EQ_INT(rc_utf8_valid(p, t->len), t->result == RC_UTF8_OK);
        CHECK_EQ_INT(ref_utf8(p, t->len), t->result); /* the reference agrees with the table */
    }
}

TEST(test_table_fail_fast)
{
    for (size_t c = 0; c < sizeof utf8_cases / sizeof utf8_cases[0]; c++) {
        const struct utf8_case *t = &utf8_cases[c];
        rc_utf8 v;
        rc_utf8_init(&v);
        int bad_at = -1;
        for (size_t k = 0; k < t->len; k++) {
            int r = rc_utf8_feed(&v, (const uint8_t *)t->bytes + k, 1);
            if (r == RC_UTF8_INVALID && bad_at < 0) bad_at = (int)k + 1;
            if (bad_at >= 0) CHECK_EQ_INT(r, RC_UTF8_INVALID); /* sticky */
        }
        if (bad_at != t->bad_at) fprintf(stderr, "case: %s\n", t->name);
        CHECK_EQ_INT(bad_at, t->bad_at);
    }
}

TEST(test_table_every_split)
{
    for (size_t c = 0; c < sizeof utf8_cases / sizeof utf8_cases[0]; c++) {
        const struct utf8_case *t = &utf8_cases[c];
        const uint8_t *p = (const uint8_t *)t->bytes;
        for (size_t a = 0; a <= t->len; a++) {
            for (size_t b = a; b <= t->len; b++) {
                rc_utf8 v;
                rc_utf8_init(&v);
                rc_utf8_feed(&v, p, a);
                rc_utf8_feed(&v, p + a, b - a);
                CHECK_EQ_INT(rc_utf8_feed(&v, p + b, t->len - b), t->result);
            }
        }
        for (int rep = 0; rep < 20; rep++) CHECK_EQ_INT(random_split(p, t->len), t->result);
    }
}

TEST(test_sticky_and_init)
{
    rc_utf8 v;
    rc_utf8_init(&v);
    CHECK_EQ_INT(rc_utf8_feed(&v, (const uint8_t *)"\xFF", 1), RC_UTF8_INVALID);
    CHECK_EQ_INT(rc_utf8_feed(&v, (const uint8_t *)"abc", 3), RC_UTF8_INVALID);
    CHECK_EQ_INT(rc_utf8_feed(&v, (const uint8_t *)"", 0), RC_UTF8_INVALID);
    rc_utf8_init(&v);
    CHECK_EQ_INT(rc_utf8_feed(&v, (const uint8_t *)"abc", 3), RC_UTF8_OK);
    CHECK_EQ_INT(rc_utf8_feed(&v, (const uint8_t *)"\xE2\x82", 2), RC_UTF8_INCOMPLETE);
    CHECK_EQ_INT(rc_utf8_feed(&v, (const uint8_t *)"", 0), RC_UTF8_INCOMPLETE);
    CHECK_EQ_INT(rc_utf8_feed(&v, (const uint8_t *)"\xAC", 1), RC_UTF8_OK); /* U+20AC */
    rc_utf8_init(&v);
    CHECK_EQ_INT(rc_utf8_feed(&v, (const uint8_t *)"\xF0", 1), RC_UTF8_INCOMPLETE);
    rc_utf8_init(&v); /* a reset drops the pending sequence */
    CHECK_EQ_INT(rc_utf8_feed(&v, (const uint8_t *)"A", 1), RC_UTF8_OK);
}

/* Non-ASCII bytes at every position of ASCII runs of every length up to 80, so the 16- and
 * 8-byte fast paths and their byte tails all see a stray byte in every slot. */
TEST(test_ascii_fast_path)
{
    uint8_t buf[96];
    for (size_t n = 0; n <= 80; n++) {
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(0x20 + (i * 7) % 0x5F);
        CHECK_EQ_INT(whole(buf, n), RC_UTF8_OK);
        CHECK_EQ_INT(whole(buf + 1, n ? n - 1 : 0), RC_UTF8_OK); /* odd alignment */
        for (size_t i = 0; i < n; i++) {
            uint8_t keep = buf[i];
            buf[i] = 0x80;
            CHECK_EQ_INT(whole(buf, n), RC_UTF8_INVALID);
            buf[i] = 0xC3; /* a lead byte: INCOMPLETE at the end, INVALID before ASCII */
            CHECK_EQ_INT(whole(buf, n), i == n - 1 ? RC_UTF8_INCOMPLETE : RC_UTF8_INVALID);
            buf[i] = keep;
        }
        /* a valid 2-byte character at every position */
        for (size_t i = 0; i + 1 < n; i++) {
            uint8_t k0 = buf[i], k1 = buf[i + 1];
            buf[i] = 0xC3;
            buf[i + 1] = 0xA9;
            CHECK_EQ_INT(whole(buf, n), RC_UTF8_OK);
            buf[i] = k0;
            buf[i + 1] = k1;
        }
    }
}

/* Every Unicode scalar value, encoded, is valid alone; every surrogate is invalid; and all of
 * them in one text stay valid under random splits. */
TEST(test_all_code_points)
{
    static uint8_t text[0x110000 * 4];
    size_t n = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        uint8_t b[4];
        size_t k = encode(cp, b);
        bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        if (rc_utf8_valid(b, k) == surrogate) fprintf(stderr, "cp U+%04X\n", (unsigned)cp);
        CHECK(rc_utf8_valid(b, k) == !surrogate);
        if (!surrogate) {
            memcpy(text + n, b, k);
            n += k;
        }
    }
    CHECK_EQ_INT(whole(text, n), RC_UTF8_OK);
    CHECK_EQ_INT(random_split(text, n), RC_UTF8_OK);
    /* and above U+10FFFF, in the 4-byte form, nothing is valid */
    for (uint32_t cp = 0x110000; cp < 0x200000; cp += 0x1001) {
        uint8_t b[4];
        size_t k = encode(cp, b);
        CHECK(!rc_utf8_valid(b, k));
    }
}

TEST(test_exhaustive_two_bytes)
{
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            uint8_t p[2] = {(uint8_t)a, (uint8_t)b};
            CHECK_EQ_INT(whole(p, 2), ref_utf8(p, 2));
            CHECK_EQ_INT(bytewise_mismatch(p, 2), 0);
        }
    }
}

/* All 4-byte strings over bytes at or next to every boundary the grammar has. */
TEST(test_boundary_alphabet_four_bytes)
{
    static const uint8_t alpha[] = {
        0x00, 0x41, 0x7F, 0x80, 0x81, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF,
        0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xF7, 0xF8, 0xFC,
        0xFE, 0xFF,
    };
    const size_t na = sizeof alpha;
    for (size_t a = 0; a < na; a++)
        for (size_t b = 0; b < na; b++)
            for (size_t c = 0; c < na; c++)
                for (size_t d = 0; d < na; d++) {
                    uint8_t p[4] = {alpha[a], alpha[b], alpha[c], alpha[d]};
                    CHECK_EQ_INT(whole(p, 4), ref_utf8(p, 4));
                    CHECK_EQ_INT(bytewise_mismatch(p, 4), 0);
                }
}

/* Random texts: mostly valid characters of every length, with an occasional random byte. */
TEST(test_random_vs_reference)
{
    uint8_t buf[256];
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = 0, want = (size_t)(unit_rand() % 200);
        bool corrupt = unit_rand() % 2;
        while (n + 4 <= want) {
            unsigned long long r = unit_rand();
            uint32_t cp;
            switch (r % 5) {
            case 0: cp = (uint32_t)(r >> 8) % 0x80; break;
            case 1: cp = 0x80 + (uint32_t)(r >> 8) % 0x780; break;
            case 2: cp = 0x800 + (uint32_t)(r >> 8) % 0xF800; break;
            case 3: cp = 0x10000 + (uint32_t)(r >> 8) % 0x100000; break;
            default: cp = 'a'; break;
            }
            n += encode(cp, buf + n);
            if (corrupt && unit_rand() % 40 == 0) buf[n - 1] = (uint8_t)unit_rand();
        }
        if (corrupt && n > 0 && unit_rand() % 2) n -= (size_t)(unit_rand() % 3) % (n + 1);
        int expect = ref_utf8(buf, n);
        CHECK_EQ_INT(whole(buf, n), expect);
        CHECK_EQ_INT(random_split(buf, n), expect);
        if (iter % 10 == 0) CHECK_EQ_INT(bytewise_mismatch(buf, n), 0); /* O(n^2) */
    }
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(test_table_whole);
    RUN(test_table_fail_fast);
    RUN(test_table_every_split);
    RUN(test_sticky_and_init);
    RUN(test_ascii_fast_path);
    RUN(test_all_code_points);
    RUN(test_exhaustive_two_bytes);
    RUN(test_boundary_alphabet_four_bytes);
    RUN(test_random_vs_reference);
    UNIT_MAIN_END("test_utf8");
}
