/* pmdeflate.c — permessage-deflate negotiation and message (de)compression; see pmdeflate.h. */
#include "codec/pmdeflate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

static const uint8_t pmd_tail[4] = {0x00, 0x00, 0xFF, 0xFF};

/* -- negotiation ----------------------------------------------------------------------------- */

/* A cursor over a header value. */
typedef struct cur {
    const char *p, *end;
} cur;

static void skip_ows(cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) c->p++;
}

/* RFC 7230 tchar. */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* token reads a token: its length (0 when there is none). */
static size_t token(cur *c, const char **start)
{
    *start = c->p;
    while (c->p < c->end && is_tchar((unsigned char)*c->p)) c->p++;
    return (size_t)(c->p - *start);
}

/* value reads a token or a quoted string into out (at most cap - 1 bytes kept, NUL-ended);
 * false when malformed. A quoted string's escapes are undone (quoted-pair). */
static bool value(cur *c, char *out, size_t cap)
{
    size_t k = 0;
    bool over = false;
    if (c->p < c->end && *c->p == '"') {
        for (c->p++;; c->p++) {
            if (c->p >= c->end) return false;
            char ch = *c->p;
            if (ch == '"') break;
            if (ch == '\\') {
                if (++c->p >= c->end) return false;
                ch = *c->p;
            }
            if (k + 1 < cap) out[k++] = ch;
            else over = true;
        }
        c->p++;
    } else {
        const char *s;
        size_t n = token(c, &s);
        if (n == 0) return false;
        if (n + 1 > cap) over = true;
        k = over ? 0 : n;
        memcpy(out, s, k);
    }
    if (over) k = 0; /* too long for any value we accept: seen as invalid by the caller */
    out[k] = '\0';
    return true;
}

/* window_bits reads a window-bits value: 8..15 as plain decimal, else -1. */
static int window_bits(const char *s)
{
    if (s[0] == '8' || s[0] == '9') return s[1] ? -1 : s[0] - '0';
    if (s[0] == '1' && s[1] >= '0' && s[1] <= '5' && !s[2]) return 10 + s[1] - '0';
    return -1;
}

enum { P_SNCT = 1, P_CNCT = 2, P_SMWB = 4, P_CMWB = 8 };

/* offer parses the parameters of one permessage-deflate offer (after its name), up to the ','
 * that ends it or the end: 1 acceptable (*a filled), 0 not acceptable, -1 malformed. The cursor
 * is left on the ',' or at the end either way when the syntax was fine. */
static int offer(cur *c, rc_pmd_agreed *a)
{
    unsigned seen = 0;
    bool ok = true;
    rc_pmd_agreed r = {.server_bits = 15};
    for (;;) {
        skip_ows(c);
        if (c->p >= c->end || *c->p == ',') break;
        if (*c->p != ';') return -1;
        c->p++;
        skip_ows(c);
        const char *name;
        size_t nl = token(c, &name);
        if (nl == 0) return -1;
        skip_ows(c);
        char v[8];
        bool has_value = false;
        if (c->p < c->end && *c->p == '=') {
            c->p++;
            skip_ows(c);
            if (!value(c, v, sizeof v)) return -1;
            has_value = true;
        }
        unsigned bit = 0;
#define IS(s) (nl == sizeof(s) - 1 && strncasecmp(name, s, nl) == 0)
        if (IS("server_no_context_takeover")) bit = P_SNCT;
        else if (IS("client_no_context_takeover")) bit = P_CNCT;
        else if (IS("server_max_window_bits")) bit = P_SMWB;
        else if (IS("client_max_window_bits")) bit = P_CMWB;
#undef IS
        if (bit == 0 || (seen & bit)) { /* unknown or repeated: decline (§7, §7.1) */
            ok = false;
            continue;
        }
        seen |= bit;
        if (bit == P_SNCT || bit == P_CNCT) {
            if (has_value) ok = false;
            if (bit == P_CNCT) r.client_nct = true;
        } else if (bit == P_SMWB) {
            int b = has_value ? window_bits(v) : -1;
            if (b < RC_PMD_SMALL_WINDOW) ok = false; /* missing, invalid, or 8 */
            else {
                r.server_offered = (uint8_t)b;
                r.server_bits = b == 15 ? 15 : RC_PMD_SMALL_WINDOW;
            }
        } else { /* P_CMWB */
            if (has_value) {
                int b = window_bits(v);
                if (b < 0) ok = false;
                else r.client_offered = (uint8_t)b;
            }
        }
    }
    if (ok) *a = r;
    return ok ? 1 : 0;
}

bool rc_pmd_negotiate(const char *v, size_t n, rc_pmd_agreed *a)
{
    cur c = {v, v + n};
    for (;;) {
        skip_ows(&c);
        if (c.p >= c.end) return false;
        if (*c.p == ',') { /* empty list elements are allowed (RFC 7230 §7) */
            c.p++;
            continue;
        }
        const char *name;
        size_t nl = token(&c, &name);
        if (nl == 0) return false;
        if (nl == 18 && strncasecmp(name, "permessage-deflate", 18) == 0) {
            int r = offer(&c, a);
            if (r < 0) return false;
            if (r > 0) return true;
        } else {
            /* another extension: skip its parameters (quoted strings may hold commas) */
            while (c.p < c.end && *c.p != ',') {
                if (*c.p == '"') {
                    char tmp[2];
                    if (!value(&c, tmp, sizeof tmp)) return false;
                } else {
                    c.p++;
                }
            }
        }
        if (c.p < c.end) c.p++; /* the ',' */
    }
}

size_t rc_pmd_response(const rc_pmd_agreed *a, char *out)
{
    int n = snprintf(out, RC_PMD_RESPONSE_MAX, "permessage-deflate; server_no_context_takeover%s",
                     a->client_nct ? "; client_no_context_takeover" : "");
    if (a->server_offered)
        n += snprintf(out + n, RC_PMD_RESPONSE_MAX - (size_t)n, "; server_max_window_bits=%u",
                      a->server_offered);
    if (a->client_offered)
        n += snprintf(out + n, RC_PMD_RESPONSE_MAX - (size_t)n, "; client_max_window_bits=%u",
                      a->client_offered);
    return (size_t)n;
}

/* -- messages -------------------------------------------------------------------------------- */

static z_stream *stream(rc_pmd_stream *s, int level)
{
    if (s->z) return s->z;
    z_stream *z = calloc(1, sizeof *z);
    if (!z) return NULL;
    int r = s->inflate ? inflateInit2(z, -(int)s->bits)
                       : deflateInit2(z, level, Z_DEFLATED, -(int)s->bits, s->mem ? s->mem : 8,
                                      Z_DEFAULT_STRATEGY);
    if (r != Z_OK) {
        free(z);
        return NULL;
    }
    s->z = z;
    return z;
}

size_t rc_pmd_deflate_bound(size_t n)
{
    /* deflateBound's stored-block worst case, plus a sync flush's empty block (5 bytes) and
     * margin for the flush's block header; the fixed-code encoder writes at most 9 bits per
     * byte plus 3 + 7 + 3 + 7 bits */
    size_t z = n + (n >> 12) + (n >> 14) + (n >> 25) + 13 + 5 + 16, f = n + n / 8 + 8;
    return z > f ? z : f;
}

/* -- the fixed-code encoder ------------------------------------------------------------------
 *
 * It runs once per room message (wire.c), so its cost per byte is what deflate adds to a
 * room's fan-out; bench/RESULTS.md ("permessage-deflate", the encoder) has the figures behind
 * these choices:
 *   - every symbol is written with one table lookup: literals, and a whole match (length code,
 *     its extra bits, distance code, its extra bits: at most 31 bits) in one put_bits;
 *   - match lengths are found comparing 8 bytes at a time;
 *   - the hash table is not cleared per message: entries are positions offset by a base that
 *     moves past every message, so an entry from an earlier message reads as empty (the table
 *     is cleared only when the base wraps, once every 4 G input bytes). Clearing it cost about
 *     a tenth of a 250-byte message's encoding. */

/* Bits go out least significant first (RFC 1951 §3.1.1); Huffman codes are defined most
 * significant bit first, so they are reversed before they go in. */
typedef struct bits_out {
    uint8_t *w;              /* next byte to write */
    uint64_t acc;            /* pending bits, the oldest in bit 0 */
    unsigned n;              /* how many (< 32 between calls) */
} bits_out;

/* put_bits appends the len (<= 32) low bits of v. */
static inline void put_bits(bits_out *b, uint32_t v, unsigned len)
{
    b->acc |= (uint64_t)v << b->n;
    b->n += len;
    if (b->n >= 32) { /* four bytes at a time: n < 32 before, so acc never overflows */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        uint32_t lo = (uint32_t)b->acc;
        memcpy(b->w, &lo, 4);
        b->w += 4;
#else
        for (int k = 0; k < 4; k++) *b->w++ = (uint8_t)(b->acc >> (8 * k));
#endif
        b->acc >>= 32;
        b->n -= 32;
    }
}

/* put_flush writes the whole bytes left in b (after the last put_bits). */
static inline void put_flush(bits_out *b)
{
    while (b->n >= 8) {
        *b->w++ = (uint8_t)b->acc;
        b->acc >>= 8;
        b->n -= 8;
    }
}

static uint32_t reverse(uint32_t v, unsigned len)
{
    uint32_t r = 0;
    for (unsigned i = 0; i < len; i++, v >>= 1) r = r << 1 | (v & 1);
    return r;
}

static const uint16_t len_base[29] = {3,  4,  5,  6,  7,  8,  9,  10,  11,  13,
                                      15, 17, 19, 23, 27, 31, 35, 43,  51,  59,
                                      67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {1,    2,    3,    4,    5,    7,    9,    13,
                                       17,   25,   33,   49,   65,   97,   129,  193,
                                       257,  385,  513,  769,  1025, 1537, 2049, 3073,
                                       4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

/* Tables built once (the loop is single-threaded; building twice is harmless: the same
 * values):
 *   fix_lit[s]      the fixed code of literal/length symbol s (§3.2.6), reversed, in bits
 *                   0..15, its length in bits 16..23
 *   fix_len[l]      the same for a match of length l (3..258): the length symbol's code and
 *                   its extra bits, as one bit string
 *   fix_dcode[d]    the distance code of a distance d + 1 (0..255), and of (d >> 7) + 256
 *                   for longer ones (zlib's _dist_code layout) */
static uint32_t fix_lit[288];
static uint8_t reverse5[30];
static uint32_t fix_len[259];
static uint8_t fix_dcode[512];
static bool fix_ready;

#define FIX_BITS(code, len) ((uint32_t)(code) | (uint32_t)(len) << 16)
#define FIX_CODE(e) ((e) & 0xFFFFu)
#define FIX_NBITS(e) ((e) >> 16)

static void fix_init(void)
{
    for (unsigned s = 0; s < 288; s++) {
        if (s < 144) fix_lit[s] = FIX_BITS(reverse(0x30 + s, 8), 8);
        else if (s < 256) fix_lit[s] = FIX_BITS(reverse(0x190 + s - 144, 9), 9);
        else if (s < 280) fix_lit[s] = FIX_BITS(reverse(s - 256, 7), 7);
        else fix_lit[s] = FIX_BITS(reverse(0xC0 + s - 280, 8), 8);
    }
    for (unsigned l = 3; l <= 258; l++) {
        unsigned lc = 28;
        while (len_base[lc] > l) lc--;
        if (l != 258 && lc == 28) lc = 27; /* 227..257 use code 284 with 5 extra bits */
        uint32_t e = fix_lit[257 + lc];
        unsigned nb = FIX_NBITS(e);
        fix_len[l] = FIX_BITS(FIX_CODE(e) | (l - len_base[lc]) << nb, nb + len_extra[lc]);
    }
    for (unsigned d = 1; d <= 32768; d++) {
        unsigned dc = 29;
        while (dist_base[dc] > d) dc--;
        if (d <= 256) fix_dcode[d - 1] = (uint8_t)dc;
        else fix_dcode[256 + ((d - 1) >> 7)] = (uint8_t)dc;
    }
    for (unsigned d = 0; d < 30; d++) reverse5[d] = (uint8_t)reverse(d, 5);
    fix_ready = true;
}

/* A literal/length symbol (0..285) with its fixed code. */
static inline void put_sym(bits_out *b, unsigned sym)
{
    put_bits(b, FIX_CODE(fix_lit[sym]), FIX_NBITS(fix_lit[sym]));
}

/* A match of length len (3..258) at distance dist (1..32768), as one bit string of at most
 * 13 + 18 bits. */
static inline void put_match(bits_out *b, unsigned len, unsigned dist)
{
    uint32_t l = fix_len[len];
    unsigned dc = dist <= 256 ? fix_dcode[dist - 1] : fix_dcode[256 + ((dist - 1) >> 7)];
    /* the 5-bit distance codes are reversed like the others */
    uint32_t d = reverse5[dc] | (uint32_t)(dist - dist_base[dc]) << 5;
    put_bits(b, FIX_CODE(l) | d << FIX_NBITS(l), FIX_NBITS(l) + 5 + dist_extra[dc]);
}

#define FIX_HASH_BITS 11

/* The hash table of the strings seen in the message being encoded: fix_base + position + 1
 * of the last 3-byte string with each hash; anything <= fix_base is from an earlier message
 * (or none). */
static uint32_t fix_head[1 << FIX_HASH_BITS];
static uint32_t fix_base;

/* hash3 hashes p[0..3); p[3] may be read when `four` (it is masked off). */
static inline unsigned hash3(const uint8_t *p, bool four)
{
    uint32_t v;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (four) {
        memcpy(&v, p, 4);
        v &= 0xFFFFFFu;
    } else
#endif
        v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
    (void)four;
    return (v * 2654435761u) >> (32 - FIX_HASH_BITS);
}

/* match_len is how many bytes a and c (a before c) have in common, at most lim. */
static inline unsigned match_len(const uint8_t *a, const uint8_t *c, unsigned lim)
{
    unsigned l = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (l + 8 <= lim) {
        uint64_t x, y;
        memcpy(&x, a + l, 8);
        memcpy(&y, c + l, 8);
        if (x != y) return l + (unsigned)__builtin_ctzll(x ^ y) / 8;
        l += 8;
    }
#endif
    while (l < lim && a[l] == c[l]) l++;
    return l;
}

size_t rc_pmd_deflate_fixed(const void *src, size_t n, unsigned window_bits, uint8_t *out)
{
    const uint8_t *p = src;
    size_t maxd = (size_t)1 << window_bits;
    if (!fix_ready) fix_init();
    if (fix_base > UINT32_MAX - n - 2) { /* the base would wrap: start over */
        memset(fix_head, 0, sizeof fix_head);
        fix_base = 0;
    }
    const uint32_t base = fix_base + 1; /* head value of position 0 */
    fix_base += (uint32_t)n + 1;        /* what this message stores is stale for the next */
    bits_out b = {out, 0, 0};
    put_bits(&b, 1 << 1, 3); /* BFINAL 0 (bit 0), BTYPE 01 (bits 1-2): fixed codes */
    size_t i = 0;
    while (i < n) {
        if (n - i >= 3) {
            unsigned h = hash3(p + i, n - i >= 4);
            uint32_t e = fix_head[h];
            fix_head[h] = base + (uint32_t)i;
            if (e >= base && i - (e - base) <= maxd) {
                size_t cand = e - base;
                unsigned l = match_len(p + cand, p + i, n - i < 258 ? (unsigned)(n - i) : 258);
                if (l >= 3) {
                    put_match(&b, l, (unsigned)(i - cand));
                    /* index the strings inside the match too (cheap, and helps repeated
                     * keys) */
                    size_t end = i + l;
                    for (i++; i < end && n - i >= 3; i++)
                        fix_head[hash3(p + i, n - i >= 4)] = base + (uint32_t)i;
                    i = end;
                    continue;
                }
            }
        }
        put_sym(&b, p[i]);
        i++;
    }
    put_sym(&b, 256);            /* end of block */
    put_bits(&b, 0, 3);          /* the sync flush's empty stored block: BFINAL 0, BTYPE 00 */
    put_flush(&b);
    if (b.n) {                   /* to a byte boundary; its 00 00 FF FF is left off */
        put_bits(&b, 0, 8 - b.n);
        put_flush(&b);
    }
    return (size_t)(b.w - out);
}

long rc_pmd_deflate(rc_pmd_stream *s, int level, const void *p, size_t n, uint8_t *out)
{
    z_stream *z = stream(s, level);
    if (!z) return -1;
    if (deflateReset(z) != Z_OK) return -1;
    z->next_in = (Bytef *)(uintptr_t)p;
    z->avail_in = (uInt)n;
    z->next_out = out;
    z->avail_out = (uInt)rc_pmd_deflate_bound(n);
    int r = deflate(z, Z_SYNC_FLUSH);
    if (r != Z_OK || z->avail_in != 0 || z->avail_out == 0) return -1;
    size_t len = rc_pmd_deflate_bound(n) - z->avail_out;
    /* A sync flush ends with an empty stored block, 00 00 FF FF: taken off (§7.2.1). */
    if (len < 4 || memcmp(out + len - 4, pmd_tail, 4) != 0) return -1;
    return (long)(len - 4);
}

int rc_pmd_inflate_begin(rc_pmd_stream *s, bool takeover)
{
    z_stream *z = stream(s, 0);
    if (!z) return -1;
    if (!takeover && inflateReset(z) != Z_OK) return -1;
    s->ended = false;
    return 0;
}

/* feed_run inflates p[0..n) to the end: inflate() stops when its input is used up or its output
 * buffer is full, so it is called again while the buffer comes back full (a long match can
 * still be pending in the window after the last input byte). */
static int feed_run(rc_pmd_stream *s, z_stream *z, const uint8_t *p, size_t n, uint8_t *buf,
                    size_t chunk, rc_pmd_sink *sink, void *arg)
{
    z->next_in = (Bytef *)(uintptr_t)p;
    z->avail_in = (uInt)n;
    while (!s->ended) {
        z->next_out = buf;
        z->avail_out = (uInt)chunk;
        int r = inflate(z, Z_SYNC_FLUSH);
        size_t got = chunk - z->avail_out;
        if (got) {
            int sr = sink(arg, buf, got);
            if (sr) return sr;
        }
        if (r == Z_STREAM_END) { /* a final block: what follows is not data, and the next
                                  * message starts a new stream */
            inflateReset(z);
            s->ended = true;
            break;
        }
        if (r != Z_OK && r != Z_BUF_ERROR) return -1; /* Z_BUF_ERROR: nothing left to do */
        if (z->avail_out != 0) break;                  /* so the input is used up */
    }
    return 0;
}

int rc_pmd_inflate_feed(rc_pmd_stream *s, const void *p, size_t n, bool last, uint8_t *buf,
                        size_t chunk, rc_pmd_sink *sink, void *arg)
{
    z_stream *z = s->z;
    if (!z) return -1; /* no rc_pmd_inflate_begin */
    int r = feed_run(s, z, p, n, buf, chunk, sink, arg);
    if (r == 0 && last) r = feed_run(s, z, pmd_tail, 4, buf, chunk, sink, arg);
    return r;
}

int rc_pmd_inflate(rc_pmd_stream *s, bool takeover, const void *p, size_t n, uint8_t *buf,
                   size_t chunk, rc_pmd_sink *sink, void *arg)
{
    if (rc_pmd_inflate_begin(s, takeover) < 0) return -1;
    return rc_pmd_inflate_feed(s, p, n, true, buf, chunk, sink, arg);
}

void rc_pmd_stream_release(rc_pmd_stream *s)
{
    z_stream *z = s->z;
    if (!z) return;
    if (s->inflate) inflateEnd(z);
    else deflateEnd(z);
    free(z);
    s->z = NULL;
}
