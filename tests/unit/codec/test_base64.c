/* test_base64.c — tests for src/codec/base64.c: the RFC 4648 §10 test vectors, lengths, every
 * byte value in every position of a group, no write past rc_base64_len, and random inputs
 * against a bit-at-a-time reference encoder and a reference decoder (round trip); base64url
 * decoding: vectors, every refusal, no write past cap, and round trips through the encoder.
 */
#include "unit.h"

#include "codec/base64.h"

#include <stdint.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* encode runs rc_base64_encode from an exact-size heap copy of p into a buffer with a canary
 * after rc_base64_len(n) bytes; returns the length or -1 when the canary was touched. */
static long encode(const void *p, size_t n, char *out)
{
    size_t want = rc_base64_len(n);
    uint8_t *in = malloc(n ? n : 1);
    char *o = malloc(want + 4);
    if (!in || !o) abort();
    if (n) memcpy(in, p, n);
    memset(o, '#', want + 4);
    size_t got = rc_base64_encode(in, n, o);
    long r = got == want && memcmp(o + want, "####", 4) == 0 ? (long)got : -1;
    memcpy(out, o, want);
    free(in);
    free(o);
    return r;
}

/* ref_encode takes the input six bits at a time, most significant first. */
static size_t ref_encode(const uint8_t *p, size_t n, char *out)
{
    size_t o = 0, bits = n * 8;
    for (size_t b = 0; b < bits; b += 6) {
        unsigned v = 0;
        for (size_t k = 0; k < 6; k++) {
            size_t bit = b + k;
            v = v << 1 | (bit < bits ? (p[bit / 8] >> (7 - bit % 8)) & 1u : 0u);
        }
        out[o++] = alphabet[v];
    }
    while (o % 4) out[o++] = '=';
    return o;
}

/* ref_decode inverts the encoding; -1 when s is not canonical base64. */
static long ref_decode(const char *s, size_t n, uint8_t *out)
{
    if (n % 4) return -1;
    size_t o = 0;
    unsigned acc = 0, nbits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') {
            if (i < n - 2 || (i == n - 2 && s[n - 1] != '=')) return -1;
            break;
        }
        const char *c = memchr(alphabet, s[i], 64);
        if (!c) return -1;
        acc = acc << 6 | (unsigned)(c - alphabet);
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            out[o++] = (uint8_t)(acc >> nbits);
            acc &= (1u << nbits) - 1;
        }
    }
    if (acc != 0) return -1; /* padding bits must be zero */
    return (long)o;
}

TEST(base64_rfc4648_vectors)
{
    static const struct { const char *in, *out; } v[] = {
        {"", ""},          {"f", "Zg=="},         {"fo", "Zm8="},         {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
    };
    char out[32];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t n = strlen(v[i].in);
        long r = encode(v[i].in, n, out);
        CHECK_EQ_INT(r, (long)strlen(v[i].out));
        CHECK_MEM(out, (size_t)r, v[i].out, strlen(v[i].out));
    }
    /* bytes that use the last characters of the alphabet and the top bits */
    CHECK_EQ_INT(encode("\xfb\xff\xbf", 3, out), 4);
    CHECK_MEM(out, 4, "+/+/", 4);
    CHECK_EQ_INT(encode("\xff\xff\xff\xff", 4, out), 8);
    CHECK_MEM(out, 8, "/////w==", 8);
    CHECK_EQ_INT(encode("\0\0\0\0\0", 5, out), 8);
    CHECK_MEM(out, 8, "AAAAAAA=", 8);
    /* NULL is fine for an empty input */
    CHECK_EQ_INT(rc_base64_encode(NULL, 0, out), 0);
}

TEST(base64_len)
{
    for (size_t n = 0; n < 1000; n++) CHECK_EQ_INT(rc_base64_len(n), (n + 2) / 3 * 4);
    size_t big = SIZE_MAX / 4 * 3;
    CHECK_EQ_INT(rc_base64_len(big), big / 3 * 4 + (big % 3 ? 4 : 0));
    CHECK(rc_base64_len(big) >= big);
}

/* Every byte value at each of the three positions of a group, with 0, 1 and 2 bytes after. */
TEST(base64_every_byte)
{
    uint8_t in[6];
    char got[8], want[8];
    for (unsigned b = 0; b < 256; b++) {
        for (size_t pos = 0; pos < 3; pos++) {
            for (size_t n = pos + 1; n <= pos + 3 && n <= 6; n++) {
                for (size_t i = 0; i < n; i++) in[i] = (uint8_t)(i * 77 + 1);
                in[pos] = (uint8_t)b;
                long r = encode(in, n, got);
                size_t w = ref_encode(in, n, want);
                CHECK_EQ_INT(r, (long)w);
                CHECK_MEM(got, w, want, w);
            }
        }
    }
}

TEST(base64_random_round_trip)
{
    static uint8_t in[1024], back[1024];
    static char got[(sizeof in + 2) / 3 * 4], want[(sizeof in + 2) / 3 * 4];
    for (int iter = 0; iter < 2000; iter++) {
        size_t n = (size_t)(unit_rand() % sizeof in);
        for (size_t i = 0; i < n; i++) in[i] = (uint8_t)unit_rand();
        long r = encode(in, n, got);
        size_t w = ref_encode(in, n, want);
        CHECK_EQ_INT(r, (long)w);
        CHECK_MEM(got, w, want, w);
        CHECK_EQ_INT(ref_decode(got, w, back), (long)n);
        CHECK_MEM(back, n, in, n);
    }
}

/* to_url turns standard base64 into unpadded base64url in place; returns the new length. */
static size_t to_url(char *s, size_t n)
{
    while (n && s[n - 1] == '=') n--;
    for (size_t i = 0; i < n; i++) s[i] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
    return n;
}

static long url_decode(const char *s, uint8_t *out, size_t cap)
{
    return rc_base64url_decode(s, strlen(s), out, cap);
}

TEST(base64url_vectors)
{
    static const struct { const char *in, *out; } v[] = {
        {"", ""},          {"Zg", "f"},         {"Zm8", "fo"},         {"Zm9v", "foo"},
        {"Zm9vYg", "foob"}, {"Zm9vYmE", "fooba"}, {"Zm9vYmFy", "foobar"},
        {"-_-_", "\xfb\xff\xbf"}, {"_____w", "\xff\xff\xff\xff"},
    };
    uint8_t out[32];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        long r = url_decode(v[i].in, out, sizeof out);
        CHECK_EQ_INT(r, (long)strlen(v[i].out));
        CHECK_MEM(out, (size_t)r, v[i].out, strlen(v[i].out));
        CHECK(rc_base64url_decoded_len(strlen(v[i].in)) == strlen(v[i].out));
    }
}

TEST(base64url_refusals)
{
    uint8_t out[32];
    CHECK_EQ_INT(url_decode("Zg==", out, sizeof out), -1);   /* padding */
    CHECK_EQ_INT(url_decode("Zm9v+/+/", out, sizeof out), -1); /* standard alphabet */
    CHECK_EQ_INT(url_decode("Zm9 v", out, sizeof out), -1);  /* whitespace */
    CHECK_EQ_INT(url_decode("Z", out, sizeof out), -1);      /* 4k+1 characters */
    CHECK_EQ_INT(url_decode("Zm9vY", out, sizeof out), -1);
    CHECK_EQ_INT(url_decode("Zh", out, sizeof out), -1);     /* non-zero unused bits */
    CHECK_EQ_INT(url_decode("Zm9", out, sizeof out), -1);
    CHECK_EQ_INT(rc_base64url_decode("Zm9\0", 4, out, sizeof out), -1); /* NUL */
    CHECK_EQ_INT(rc_base64url_decode("\xc3\xa9" "AA", 4, out, sizeof out), -1);
    /* too little room: refused before anything is written */
    memset(out, '#', sizeof out);
    CHECK_EQ_INT(url_decode("Zm9vYmFy", out, 5), -1);
    CHECK(out[0] == '#');
    CHECK_EQ_INT(url_decode("Zm9vYmFy", out, 6), 6);
}

TEST(base64url_random_round_trip)
{
    static uint8_t in[600], back[600];
    static char enc[(sizeof in + 2) / 3 * 4 + 1];
    for (int iter = 0; iter < 2000; iter++) {
        size_t n = (size_t)(unit_rand() % sizeof in);
        for (size_t i = 0; i < n; i++) in[i] = (uint8_t)unit_rand();
        size_t e = to_url(enc, rc_base64_encode(in, n, enc));
        /* exact-size heap copies so ASan catches a read or write past either end */
        char *s = malloc(e ? e : 1);
        uint8_t *o = malloc(n ? n : 1);
        if (!s || !o) abort();
        memcpy(s, enc, e);
        CHECK(rc_base64url_decoded_len(e) == n);
        long r = rc_base64url_decode(s, e, o, n);
        memcpy(back, o, n);
        free(s);
        free(o);
        CHECK_EQ_INT(r, (long)n);
        CHECK_MEM(back, n, in, n);
    }
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(base64_rfc4648_vectors);
    RUN(base64_len);
    RUN(base64_every_byte);
    RUN(base64_random_round_trip);
    RUN(base64url_vectors);
    RUN(base64url_refusals);
    RUN(base64url_random_round_trip);
    UNIT_MAIN_END("test_base64");
}
