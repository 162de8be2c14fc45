/* fuzz_utf8.c — libFuzzer target for src/codec/utf8.c.
 *
 * Three answers must agree on every input: the validator on the whole buffer, the validator
 * fed in pseudo-random pieces (derived from the input, so a crash reproduces), and a slow
 * reference written straight from RFC 3629 §3-§4 that decodes each code point and then checks
 * it. Fail-fast is checked too: fed byte by byte, the validator must turn INVALID exactly at
 * the first prefix the reference calls invalid, and at a sample of prefixes the
 * OK/INCOMPLETE answer must match the reference on that prefix.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ref_complete decodes one complete sequence p[0..len) and says whether it is a valid
 * encoding: right lead and continuation patterns, shortest form, not a surrogate, at most
 * U+10FFFF. */
static bool ref_complete(const uint8_t *p, size_t len)
{
    uint32_t cp;
    if (len == 1) return p[0] < 0x80;
    if (len == 2 && (p[0] & 0xE0) == 0xC0) cp = p[0] & 0x1Fu;
    else if (len == 3 && (p[0] & 0xF0) == 0xE0) cp = p[0] & 0x0Fu;
    else if (len == 4 && (p[0] & 0xF8) == 0xF0) cp = p[0] & 0x07u;
    else return false;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return false;
        cp = cp << 6 | (p[i] & 0x3Fu);
    }
    static const uint32_t shortest[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < shortest[len]) return false;
    if (cp >= 0xD800 && cp <= 0xDFFF) return false;
    return cp <= 0x10FFFF;
}

static size_t ref_seq_len(uint8_t c)
{
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 0;
}

/* ref_can_complete says whether the cut sequence p[0..have) (have < len) could still become
 * valid, by brute force: append every combination of continuation bytes at the edges of the
 * ranges that matter (80, 8F, 90, 9F, A0, BF) and see if any is valid. Every rule is about one
 * of those ranges, so one representative per range suffices. */
static bool ref_can_complete(const uint8_t *p, size_t have, size_t len)
{
    static const uint8_t reps[] = {0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF};
    const size_t nr = sizeof reps;
    size_t missing = len - have, combos = 1;
    for (size_t i = 0; i < missing; i++) combos *= nr;
    for (size_t c = 0; c < combos; c++) {
        uint8_t seq[4];
        memcpy(seq, p, have);
        size_t k = c;
        for (size_t i = have; i < len; i++, k /= nr) seq[i] = reps[k % nr];
        if (ref_complete(seq, len)) return true;
    }
    return false;
}

static int ref_utf8(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t len = ref_seq_len(p[i]);
        if (len == 0) return RC_UTF8_INVALID;
        if (n - i < len) {
            for (size_t k = 1; k < n - i; k++)
                if ((p[i + k] & 0xC0) != 0x80) return RC_UTF8_INVALID;
            return ref_can_complete(p + i, n - i, len) ? RC_UTF8_INCOMPLETE : RC_UTF8_INVALID;
        }
        if (!ref_complete(p + i, len)) return RC_UTF8_INVALID;
        i += len;
    }
    return RC_UTF8_OK;
}

/* Small deterministic PRNG seeded from the input, for split points. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Copy so that reads past size are caught even if libFuzzer's buffer were larger. */
    uint8_t *p = malloc(size ? size : 1);
    if (!p) return 0;
    memcpy(p, data, size);

    rc_utf8 v;
    rc_utf8_init(&v);
    int whole = rc_utf8_feed(&v, p, size);
    int ref = ref_utf8(p, size);
    if (whole != ref) abort();
    if (rc_utf8_valid(p, size) != (whole == RC_UTF8_OK)) abort();

    uint64_t seed = 0x9E3779B97F4A7C15ull ^ size;
    for (size_t i = 0; i < size && i < 16; i++) seed = seed * 131 + p[i];
    if (seed == 0) seed = 1;

    /* random pieces, empty ones included */
    for (int rep = 0; rep < 3; rep++) {
        rc_utf8_init(&v);
        int r = rc_utf8_feed(&v, p, 0);
        size_t i = 0;
        size_t maxstep = rep == 0 ? 4 : rep == 1 ? 17 : 300;
        while (i < size) {
            size_t k = (size_t)(rng_next(&seed) % (maxstep + 1));
            if (k > size - i) k = size - i;
            r = rc_utf8_feed(&v, p + i, k);
            i += k;
        }
        if (r != whole) abort();
    }

    /* byte by byte: INVALID from exactly the first bad prefix on, and sampled prefixes match */
    rc_utf8_init(&v);
    int prev = RC_UTF8_OK;
    for (size_t k = 1; k <= size; k++) {
        int r = rc_utf8_feed(&v, p + k - 1, 1);
        if (prev == RC_UTF8_INVALID && r != RC_UTF8_INVALID) abort(); /* sticky */
        if (r == RC_UTF8_INVALID && prev != RC_UTF8_INVALID) {
            if (ref_utf8(p, k) != RC_UTF8_INVALID) abort();
            if (ref_utf8(p, k - 1) == RC_UTF8_INVALID) abort();
        }
        if (k == size || rng_next(&seed) % 64 == 0)
            if (r != ref_utf8(p, k)) abort();
        prev = r;
    }
    if (prev != whole) abort();

    free(p);
    return 0;
}
