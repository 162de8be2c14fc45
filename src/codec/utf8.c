/* utf8.c — incremental, fail-fast UTF-8 validation (RFC 3629) for WebSocket text messages.
 *
 * Every text frame a client sends passes through here, so the common case (ASCII chat text and
 * JSON) is checked 16 or 8 bytes at a time. Multi-byte sequences are checked with a small table
 * indexed by the lead byte; the table gives how many continuation bytes follow and the range
 * the *first* continuation byte must lie in. That one range is what makes the validator fail
 * fast: overlongs (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points above
 * U+10FFFF (F4 90..BF) are all rejected at their second byte, as RFC 3629 §4's grammar does.
 * Later continuation bytes are always 80..BF.
 *
 * rc_utf8.state packs the pending sequence when a feed ends in the middle of a code point:
 *   bits 0..1   continuation bytes still expected (0 = at a code point boundary)
 *   bits 8..15  lowest allowed value of the next byte
 *   bits 16..23 highest allowed value of the next byte
 * and UTF8_BAD (all ones) once the text is known to be invalid, so that it stays invalid.
 */
#include "codec/utf8.h"

#include <string.h>

#define UTF8_BAD 0xFFFFFFFFu
#define UTF8_ASCII_MASK 0x8080808080808080ull

/* SEQ packs "need more continuation bytes, the first in [lo, hi]" into a state word. */
#define SEQ(need, lo, hi) ((uint32_t)(need) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)
#define SEQ_NEED(s) ((s) & 3u)
#define SEQ_LO(s) (((s) >> 8) & 0xFFu)
#define SEQ_HI(s) (((s) >> 16) & 0xFFu)

/* Lead bytes 0x80..0xFF, indexed by byte & 0x7F. Zero marks a byte that can never start a
 * sequence: a stray continuation byte (80..BF), C0/C1 (which could only encode overlong
 * ASCII) and F5..FF (above U+10FFFF, or the old 5- and 6-byte forms). */
static const uint32_t utf8_lead[128] = {
    [0xC2 - 0x80 ... 0xDF - 0x80] = SEQ(1, 0x80, 0xBF),
    [0xE0 - 0x80] = SEQ(2, 0xA0, 0xBF),               /* E0 80..9F would be overlong */
    [0xE1 - 0x80 ... 0xEC - 0x80] = SEQ(2, 0x80, 0xBF),
    [0xED - 0x80] = SEQ(2, 0x80, 0x9F),               /* ED A0..BF would be a surrogate */
    [0xEE - 0x80 ... 0xEF - 0x80] = SEQ(2, 0x80, 0xBF),
    [0xF0 - 0x80] = SEQ(3, 0x90, 0xBF),               /* F0 80..8F would be overlong */
    [0xF1 - 0x80 ... 0xF3 - 0x80] = SEQ(3, 0x80, 0xBF),
    [0xF4 - 0x80] = SEQ(3, 0x80, 0x8F),               /* F4 90..BF would be > U+10FFFF */
};

/* first_marked_byte: index, in memory order, of the first byte of w (loaded with memcpy)
 * whose top bit is set; w must have one. */
static inline unsigned first_marked_byte(uint64_t w)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (unsigned)__builtin_clzll(w) / 8;
#else
    return (unsigned)__builtin_ctzll(w) / 8;
#endif
}

/* ascii_run returns the first byte at or after p that is not ASCII, or end. Unaligned 8-byte
 * loads go through memcpy, which compilers turn into a single load on every target we use.
 * When a word holds a non-ASCII byte, the position of its lowest set high bit says how many
 * ASCII bytes precede it, so mixed text (an accented letter every few bytes) does not fall
 * back to byte-at-a-time scanning. */
static const uint8_t *ascii_run(const uint8_t *p, const uint8_t *end)
{
    while (end - p >= 16) {
        uint64_t a, b;
        memcpy(&a, p, 8);
        memcpy(&b, p + 8, 8);
        if ((a | b) & UTF8_ASCII_MASK) break;
        p += 16;
    }
    while (end - p >= 8) {
        uint64_t a;
        memcpy(&a, p, 8);
        a &= UTF8_ASCII_MASK;
        if (a) return p + first_marked_byte(a);
        p += 8;
    }
    while (p < end && *p < 0x80) p++;
    return p;
}

void rc_utf8_init(rc_utf8 *v)
{
    v->state = 0;
}

int rc_utf8_feed(rc_utf8 *v, const uint8_t *p, size_t n)
{
    const uint8_t *end = p + n;
    uint32_t st = v->state;

    if (st == UTF8_BAD) return RC_UTF8_INVALID;

    /* Finish a code point left open by the previous feed, one byte at a time. */
    while (st != 0 && p < end) {
        if (*p < SEQ_LO(st) || *p > SEQ_HI(st)) goto bad;
        p++;
        st = SEQ_NEED(st) == 1 ? 0 : SEQ(SEQ_NEED(st) - 1, 0x80, 0xBF);
    }

    while (p < end) {
        if (*p < 0x80) {
            p = ascii_run(p, end);
            continue;
        }
        uint32_t seq = utf8_lead[*p & 0x7F];
        if (seq == 0) goto bad;
        unsigned need = SEQ_NEED(seq);
        if ((size_t)(end - p) > need) {
            /* The whole sequence is here: check it without going through the state word. */
            if (p[1] < SEQ_LO(seq) || p[1] > SEQ_HI(seq)) goto bad;
            if (need >= 2 && (p[2] & 0xC0) != 0x80) goto bad;
            if (need == 3 && (p[3] & 0xC0) != 0x80) goto bad;
            p += need + 1;
            continue;
        }
        /* The sequence runs past the end of this piece: check what is here and remember the
         * rest. Bytes present are still checked now, so an impossible one fails immediately. */
        st = seq;
        for (p++; p < end; p++) {
            if (*p < SEQ_LO(st) || *p > SEQ_HI(st)) goto bad;
            st = SEQ(SEQ_NEED(st) - 1, 0x80, 0xBF); /* need >= 2 here: the sequence is cut */
        }
    }
    v->state = st;
    return st == 0 ? RC_UTF8_OK : RC_UTF8_INCOMPLETE;

bad:
    v->state = UTF8_BAD;
    return RC_UTF8_INVALID;
}

bool rc_utf8_valid(const uint8_t *p, size_t n)
{
    rc_utf8 v;
    rc_utf8_init(&v);
    return rc_utf8_feed(&v, p, n) == RC_UTF8_OK;
}
