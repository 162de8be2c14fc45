/* test_pmdeflate.c — tests for src/codec/pmdeflate.c: which offers are accepted and what is
 * answered, which are declined, a malformed value at every cut, and deflate/inflate round
 * trips (also piece by piece through a small chunk, with a sink that stops at a limit, and
 * against the 9-bit window).
 */
#include "unit.h"

#include "codec/pmdeflate.h"

#include <string.h>
#include <zlib.h>

static bool neg(const char *v, rc_pmd_agreed *a)
{
    return rc_pmd_negotiate(v, strlen(v), a);
}

/* accepted checks v is accepted with the given answer. */
static bool accepted(const char *v, const char *answer)
{
    rc_pmd_agreed a;
    memset(&a, 0x55, sizeof a);
    if (!neg(v, &a)) return false;
    char out[RC_PMD_RESPONSE_MAX];
    size_t n = rc_pmd_response(&a, out);
    return n == strlen(out) && strcmp(out, answer) == 0;
}

#define BASE "permessage-deflate; server_no_context_takeover"
#define CNCT "; client_no_context_takeover"

TEST(test_accepted_offers)
{
    CHECK(accepted("permessage-deflate", BASE));
    CHECK(accepted("  permessage-deflate  ", BASE));
    CHECK(accepted("permessage-deflate; client_max_window_bits", BASE));
    CHECK(accepted("permessage-deflate; client_max_window_bits=15", BASE "; client_max_window_bits=15"));
    CHECK(accepted("permessage-deflate; client_max_window_bits=\"9\"", BASE "; client_max_window_bits=9"));
    CHECK(accepted("permessage-deflate;client_max_window_bits = 8", BASE "; client_max_window_bits=8"));
    CHECK(accepted("permessage-deflate; server_max_window_bits=9", BASE "; server_max_window_bits=9"));
    CHECK(accepted("permessage-deflate; server_max_window_bits=\"14\"", BASE "; server_max_window_bits=14"));
    CHECK(accepted("permessage-deflate; server_no_context_takeover; client_no_context_takeover", BASE CNCT));
    CHECK(accepted("permessage-deflate; client_no_context_takeover; client_max_window_bits=10", BASE CNCT "; client_max_window_bits=10"));
    CHECK(accepted("a, b; c=\"x,y;z\", permessage-deflate", BASE));
    CHECK(accepted(",, permessage-deflate", BASE));
    CHECK(accepted("permessage-deflate; server_max_window_bits=8, permessage-deflate; "
                   "server_max_window_bits=10", BASE "; server_max_window_bits=10"));
    CHECK(accepted("permessage-deflate; x=1, permessage-deflate", BASE));
}

TEST(test_window_bits_choice)
{
    rc_pmd_agreed a;
    CHECK(neg("permessage-deflate", &a));
    CHECK_EQ_INT(a.server_bits, 15);
    CHECK(neg("permessage-deflate; server_max_window_bits=15", &a));
    CHECK_EQ_INT(a.server_bits, 15);
    for (int b = 9; b <= 14; b++) {
        char v[80];
        snprintf(v, sizeof v, "permessage-deflate; server_max_window_bits=%d", b);
        CHECK(neg(v, &a));
        CHECK_EQ_INT(a.server_bits, RC_PMD_SMALL_WINDOW);
        CHECK_EQ_INT(a.server_offered, b);
    }
}

TEST(test_declined_offers)
{
    static const char *const no[] = {
        "", "x-webkit-deflate-frame", "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits", "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=09", "permessage-deflate; server_max_window_bits=",
        "permessage-deflate; client_max_window_bits=7", "permessage-deflate; client_max_window_bits=1a",
        "permessage-deflate; client_max_window_bits=\"\"",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"\"",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; unknown", "permessage-deflate; client_max_window_bits=123456789012",
        /* malformed: nothing is accepted, not even a later good offer */
        "permessage-deflate; ; x, permessage-deflate", "permessage-deflate x",
        "permessage-deflate; client_max_window_bits=\"10, permessage-deflate",
        "=, permessage-deflate",
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        rc_pmd_agreed a;
        if (neg(no[i], &a)) {
            fprintf(stderr, "accepted: %s\n", no[i]);
            CHECK(false);
        }
    }
}

/* Every prefix of a value parses without reading past it (ASan), and every prefix of an
 * acceptable offer that ends between parameters is acceptable too. */
TEST(test_prefixes)
{
    const char *v = "foo; a=\"q,\\\"\", permessage-deflate; server_max_window_bits=12; "
                    "client_max_window_bits; client_no_context_takeover";
    size_t n = strlen(v);
    for (size_t k = 0; k <= n; k++) {
        char *cut = malloc(k ? k : 1);
        memcpy(cut, v, k);
        rc_pmd_agreed a;
        bool ok = rc_pmd_negotiate(cut, k, &a);
        if (k == n) CHECK(ok);
        if (k < strlen("foo; a=\"q,\\\"\", permessage-deflate")) CHECK(!ok);
        free(cut);
    }
}

static int collect(void *arg, const uint8_t *p, size_t n)
{
    uint8_t **w = arg;
    memcpy(*w, p, n);
    *w += n;
    return 0;
}

typedef struct limit {
    size_t got, max;
} limit;

static int limited(void *arg, const uint8_t *p, size_t n)
{
    (void)p;
    limit *l = arg;
    if (l->got + n > l->max) return 1009;
    l->got += n;
    return 0;
}

TEST(test_round_trip)
{
    static uint8_t in[200000], z[240000], out[200000];
    for (size_t i = 0; i < sizeof in; i++) in[i] = (uint8_t)("{\"x\":1.5,\"y\":-2}"[i % 16] ^ (unit_rand() % 7 == 0));
    rc_pmd_stream d15 = {.bits = 15}, d9 = {.bits = 9}, inf = {.bits = 15, .inflate = true};
    static const size_t sizes[] = {0, 1, 17, 200, 4096, 65536, 200000};
    uint8_t chunk[100];
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int w = 0; w < 2; w++) {
            CHECK(rc_pmd_deflate_bound(sizes[s]) <= sizeof z);
            long zl = rc_pmd_deflate(w ? &d9 : &d15, 6, in, sizes[s], z);
            CHECK(zl >= 0);
            if (sizes[s] >= 200) CHECK((size_t)zl < sizes[s]);
            uint8_t *wp = out;
            CHECK_EQ_INT(rc_pmd_inflate(&inf, false, z, (size_t)zl, chunk, sizeof chunk, collect, &wp), 0);
            CHECK_EQ_INT(wp - out, sizes[s]);
            CHECK(memcmp(out, in, sizes[s]) == 0);
            /* each message stands alone: inflating it again gives the same */
            wp = out;
            CHECK_EQ_INT(rc_pmd_inflate(&inf, false, z, (size_t)zl, chunk, sizeof chunk, collect, &wp), 0);
            CHECK_EQ_INT(wp - out, sizes[s]);
            /* a 9-bit message inflates with a 9-bit window */
            if (w) {
                z_stream zs = {0};
                CHECK_EQ_INT(inflateInit2(&zs, -9), Z_OK);
                static uint8_t buf[210000];
                memcpy(buf, z, (size_t)zl);
                memcpy(buf + zl, "\0\0\xff\xff", 4);
                zs.next_in = buf;
                zs.avail_in = (uInt)zl + 4;
                zs.next_out = out;
                zs.avail_out = sizeof out;
                int r = inflate(&zs, Z_SYNC_FLUSH);
                CHECK(r == Z_OK || (r == Z_BUF_ERROR && sizes[s] == 0));
                CHECK_EQ_INT(sizeof out - zs.avail_out, sizes[s]);
                inflateEnd(&zs);
            }
        }
    }
    /* a limit stops inflating within a chunk of it */
    long zl = rc_pmd_deflate(&d15, 6, in, 200000, z);
    limit l = {0, 1000};
    CHECK_EQ_INT(rc_pmd_inflate(&inf, false, z, (size_t)zl, chunk, sizeof chunk, limited, &l), 1009);
    CHECK(l.got <= 1000 && l.got > 1000 - sizeof chunk);
    /* garbage is -1 */
    uint8_t bad[] = {0xff, 0xff, 0xff};
    limit l2 = {0, 1 << 20};
    CHECK_EQ_INT(rc_pmd_inflate(&inf, false, bad, sizeof bad, chunk, sizeof chunk, limited, &l2), -1);
    rc_pmd_stream_release(&d15);
    rc_pmd_stream_release(&d9);
    rc_pmd_stream_release(&inf);
}

/* A client that keeps its context: the second message refers to the first. */
TEST(test_takeover)
{
    z_stream zs = {0};
    CHECK_EQ_INT(deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    const char *msg = "{\"type\":\"pose\",\"player\":\"ann\",\"x\":1.5,\"y\":2.5}";
    uint8_t z[2][256], out[256], chunk[16];
    size_t zl[2];
    for (int i = 0; i < 2; i++) {
        zs.next_in = (Bytef *)(uintptr_t)msg;
        zs.avail_in = (uInt)strlen(msg);
        zs.next_out = z[i];
        zs.avail_out = sizeof z[i];
        CHECK_EQ_INT(deflate(&zs, Z_SYNC_FLUSH), Z_OK);
        zl[i] = sizeof z[i] - zs.avail_out - 4;
    }
    deflateEnd(&zs);
    CHECK(zl[1] < zl[0]); /* the second is mostly a back reference */
    rc_pmd_stream inf = {.bits = 15, .inflate = true};
    for (int i = 0; i < 2; i++) {
        uint8_t *wp = out;
        CHECK_EQ_INT(rc_pmd_inflate(&inf, true, z[i], zl[i], chunk, sizeof chunk, collect, &wp), 0);
        CHECK_EQ_INT(wp - out, strlen(msg));
        CHECK(memcmp(out, msg, strlen(msg)) == 0);
    }
    /* without the context, the second message cannot be inflated */
    uint8_t *wp = out;
    int r = rc_pmd_inflate(&inf, false, z[1], zl[1], chunk, sizeof chunk, collect, &wp);
    CHECK(r == -1 || (size_t)(wp - out) != strlen(msg) || memcmp(out, msg, strlen(msg)) != 0);
    rc_pmd_stream_release(&inf);
}

/* zinflate inflates z[0..zl) + the tail with a raw window of wbits into out: its length, or
 * -1. */
static long zinflate(const uint8_t *z, size_t zl, int wbits, uint8_t *out, size_t cap)
{
    static uint8_t buf[300000];
    memcpy(buf, z, zl);
    memcpy(buf + zl, "\0\0\xff\xff", 4);
    z_stream zs = {0};
    if (inflateInit2(&zs, -wbits) != Z_OK) return -1;
    zs.next_in = buf;
    zs.avail_in = (uInt)zl + 4;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int r = inflate(&zs, Z_SYNC_FLUSH);
    long got = (long)(cap - zs.avail_out);
    inflateEnd(&zs);
    return r == Z_OK || (r == Z_BUF_ERROR && got == 0) ? got : -1;
}

/* The fixed-code encoder against zlib's inflater: every length 0..600 and some large ones, on
 * text, runs, random bytes and repetitive JSON, with both windows (a 9-bit window is checked
 * with a 9-bit inflater: no match reaches further back), and within its bound. */
TEST(test_fixed_encoder)
{
    static uint8_t in[RC_PMD_FIXED_MAX], z[RC_PMD_FIXED_MAX + RC_PMD_FIXED_MAX / 8 + 16],
        out[RC_PMD_FIXED_MAX];
    for (int kind = 0; kind < 4; kind++) {
        for (size_t i = 0; i < sizeof in; i++) {
            switch (kind) {
            case 0: in[i] = (uint8_t)"{\"type\":\"pose\",\"x\":12.5,\"y\":-3,\"anim\":\"run\"},"[i % 41]; break;
            case 1: in[i] = (uint8_t)(i / 300 % 3 ? 'a' : 'b'); break;
            case 2: in[i] = (uint8_t)unit_rand(); break;
            default: in[i] = (uint8_t)("abcdefgh"[unit_rand() % 8] + (i % 1000 < 10)); break;
            }
        }
        for (size_t n = 0; n <= RC_PMD_FIXED_MAX; n = n < 600 ? n + 1 : n * 3 + 1) {
            for (unsigned w = 9; w <= 15; w += 6) {
                size_t zl = rc_pmd_deflate_fixed(in, n, w, z);
                CHECK(zl <= rc_pmd_deflate_bound(n));
                long got = zinflate(z, zl, (int)w, out, sizeof out);
                CHECK_EQ_INT(got, (long)n);
                if (got == (long)n) CHECK(memcmp(out, in, n) == 0);
                if (kind != 2 && n >= 200) CHECK(zl < n);
            }
            if (n >= RC_PMD_FIXED_MAX / 3) break;
        }
        size_t zl = rc_pmd_deflate_fixed(in, RC_PMD_FIXED_MAX, 15, z);
        CHECK_EQ_INT(zinflate(z, zl, 15, out, sizeof out), RC_PMD_FIXED_MAX);
        CHECK(memcmp(out, in, RC_PMD_FIXED_MAX) == 0);
    }
    /* the maximal match (258) and every match length on a run */
    memset(in, 'q', 2000);
    for (size_t n = 1; n <= 2000; n += 1) {
        size_t zl = rc_pmd_deflate_fixed(in, n, 15, z);
        CHECK_EQ_INT(zinflate(z, zl, 15, out, sizeof out), (long)n);
    }
}

/* stop_at_ff stops (1007) at the first 0xFF byte handed over, after collecting what is before
 * it. */
typedef struct upto_ff {
    uint8_t *w;              /* next byte of the output */
    bool stopped;            /* it saw the 0xFF */
} upto_ff;

static int stop_at_ff(void *arg, const uint8_t *p, size_t n)
{
    upto_ff *u = arg;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == 0xFF) {
            u->stopped = true;
            return 1007;
        }
        *u->w++ = p[i];
    }
    return 0;
}

/* Feeding a message in pieces gives what inflating it whole gives, at every split, byte by
 * byte too; and an inflated byte reaches the sink as soon as the compressed bytes that make it
 * have been fed, long before the message ends (what lets ws.c fail invalid UTF-8 fast). */
TEST(test_feed_in_pieces)
{
    static uint8_t in[3000], z[4000], out[3100];
    for (size_t i = 0; i < sizeof in; i++) in[i] = (uint8_t)"{\"x\":1.5,\"name\":\"zoe\"}"[i % 23];
    rc_pmd_stream d = {.bits = 15}, inf = {.bits = 15, .inflate = true};
    uint8_t chunk[64];
    for (int fixed = 0; fixed < 2; fixed++) {
        size_t zl = fixed ? rc_pmd_deflate_fixed(in, sizeof in, 15, z)
                          : (size_t)rc_pmd_deflate(&d, 6, in, sizeof in, z);
        for (size_t at = 0; at <= zl; at++) {
            uint8_t *wp = out;
            CHECK_EQ_INT(rc_pmd_inflate_begin(&inf, false), 0);
            CHECK_EQ_INT(rc_pmd_inflate_feed(&inf, z, at, false, chunk, sizeof chunk, collect, &wp), 0);
            CHECK_EQ_INT(rc_pmd_inflate_feed(&inf, z + at, zl - at, true, chunk, sizeof chunk, collect, &wp), 0);
            CHECK_EQ_INT(wp - out, sizeof in);
            CHECK(memcmp(out, in, sizeof in) == 0);
        }
        uint8_t *wp = out;
        CHECK_EQ_INT(rc_pmd_inflate_begin(&inf, false), 0);
        for (size_t i = 0; i < zl; i++)
            CHECK_EQ_INT(rc_pmd_inflate_feed(&inf, z + i, 1, false, chunk, sizeof chunk, collect, &wp), 0);
        CHECK_EQ_INT(rc_pmd_inflate_feed(&inf, NULL, 0, true, chunk, sizeof chunk, collect, &wp), 0);
        CHECK_EQ_INT(wp - out, sizeof in);
        CHECK(memcmp(out, in, sizeof in) == 0);
    }
    /* a 0xFF at byte 100 of 3000 (the rest letters that hardly compress): the sink sees it
     * while most of the message is unfed */
    for (size_t i = 100; i < sizeof in; i++) in[i] = (uint8_t)('a' + unit_rand() % 26);
    in[100] = 0xFF;
    for (int fixed = 0; fixed < 2; fixed++) {
        size_t zl = fixed ? rc_pmd_deflate_fixed(in, sizeof in, 15, z)
                          : (size_t)rc_pmd_deflate(&d, 6, in, sizeof in, z);
        upto_ff u = {out, false};
        size_t fed = 0;
        int r = 0;
        CHECK_EQ_INT(rc_pmd_inflate_begin(&inf, false), 0);
        while (fed < zl && r == 0)
            r = rc_pmd_inflate_feed(&inf, z + fed++, 1, false, chunk, sizeof chunk, stop_at_ff, &u);
        CHECK_EQ_INT(r, 1007);
        CHECK(u.stopped);
        CHECK_EQ_INT(u.w - out, 100);
        CHECK(fed < zl / 2);
    }
    rc_pmd_stream_release(&d);
    rc_pmd_stream_release(&inf);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(test_accepted_offers);
    RUN(test_window_bits_choice);
    RUN(test_declined_offers);
    RUN(test_prefixes);
    RUN(test_round_trip);
    RUN(test_takeover);
    RUN(test_fixed_encoder);
    RUN(test_feed_in_pieces);
    UNIT_MAIN_END("test_pmdeflate");
}
