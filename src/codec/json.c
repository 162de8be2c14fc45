/* json.c — one validating pass over a client's JSON message (see json.h for the contract).
 *
 * Every message a client sends goes through rc_json_scan exactly once, so the scanner is
 * written for speed rather than generality:
 *
 *  - It is a single loop of labelled states (value, after a value, object key, top-level
 *    member) joined by gotos. There is no recursion and no parse tree: the only memory of the
 *    nesting is `kinds`, a 64-bit stack with one bit per open container (object or array),
 *    which is also why RC_JSON_MAX_DEPTH is 64.
 *  - String bodies, which are most of a message's bytes, are skipped 16 bytes at a time with
 *    SSE2 (8 at a time with a portable SWAR test elsewhere), looking for '"', '\\' and bytes
 *    below 0x20; only those three stop the fast loop.
 *  - Keys are looked at only at depth 1, and only by length first; a key is unescaped (into a
 *    16-byte stack buffer) only when it contains a backslash and is short enough to decode to
 *    a known name.
 *  - Runs of digits (timestamps, ids) are skipped eight at a time.
 *  - Members to cut are recorded as byte ranges while scanning, so rc_json_copy_open is a
 *    handful of memcpy calls.
 *
 * Deliberately not done here: UTF-8 validation (the WebSocket layer has already checked the
 * whole message) and converting numbers or decoding strings (callers ask for the few values
 * they need with rc_json_get_u64 and rc_json_unescape). bench/json_micro.c measures the result
 * against libjansson.
 *
 * Error precedence: syntax errors and excessive depth are reported at the first offending
 * byte, scanning left to right (so "[[[...65 levels... garbage" is RC_JSON_EDEPTH). The
 * verdicts that need the whole text — RC_JSON_ENOTOBJECT and RC_JSON_ECUTS — are given only
 * for otherwise valid JSON.
 *
 * Cut ranges. A cut member takes exactly one neighbouring comma with it so what is left stays
 * valid JSON. When some earlier member is kept, the range runs from the end of the previous
 * member's value to the end of this member's value (taking the comma before it). When no
 * earlier member is kept, the range runs from this member's key to the start of the next key
 * (taking the comma after it), or to the end of its value when it is the last member — in
 * that case every member is cut and no comma is left. The ranges never overlap and come out
 * in increasing order.
 *
 * Nothing here reads past p + n or assumes NUL termination.
 */
#include "codec/json.h"

#include <stdlib.h>
#include <string.h>

/* The fast paths are chosen from the target; defining RC__JSON_SSE2=0 and/or RC__JSON_LE=0 on
 * the command line forces the portable ones, so the tests can cover them on x86-64 too. */
#ifndef RC__JSON_SSE2
#if defined(__SSE2__)
#define RC__JSON_SSE2 1
#else
#define RC__JSON_SSE2 0
#endif
#endif
#ifndef RC__JSON_LE
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define RC__JSON_LE 1
#else
#define RC__JSON_LE 0
#endif
#endif
#if RC__JSON_SSE2
#include <emmintrin.h>
#endif

typedef unsigned char uc;

/* Bytes a string body can contain without ending or escaping anything (GNU range designators;
 * roomcast builds with -std=gnu11). */
static const uc rc__json_plain[256] = {
    /* 0x00..0x1f: control characters must be escaped */
    [0x20] = 1, [0x21] = 1, /* 0x22 '"' ends the string */
    [0x23 ... 0x5b] = 1, /* 0x5c '\\' starts an escape */
    [0x5d ... 0xff] = 1,
};

/* rc__json_hexval is the value of hex digit c, or -1. */
static inline int rc__json_hexval(uc c)
{
    if ((unsigned)(c - '0') < 10u) return c - '0';
    c |= 0x20;
    if ((unsigned)(c - 'a') < 6u) return c - 'a' + 10;
    return -1;
}

/* The common case between tokens is no whitespace at all, so test "<= ' '" first. */
#define RC__IS_WS(c) ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')
#define RC__SKIP_WS(s, e)                                                      \
    while ((s) < (e) && *(s) <= ' ' && RC__IS_WS(*(s))) (s)++

#define RC__ONES 0x0101010101010101ull
#define RC__HIGH 0x8080808080808080ull

/* rc__json_special marks (in the top bit of each byte) the bytes of w that are '"', '\\' or
 * below 0x20. Each of the three "has zero byte"-style tests can also mark bytes above its first
 * real hit (borrows propagate upwards), but never below it, so the lowest marked byte is
 * always exactly the first special byte — which is all a little-endian caller uses. */
static inline uint64_t rc__json_special(uint64_t w)
{
    uint64_t q = w ^ (RC__ONES * '"');
    uint64_t b = w ^ (RC__ONES * '\\');
    return (((q - RC__ONES) & ~q) | ((b - RC__ONES) & ~b) | ((w - RC__ONES * 0x20) & ~w)) &
           RC__HIGH;
}

static inline int rc__json_hex4(const uc *s)
{
    int a = rc__json_hexval(s[0]), b = rc__json_hexval(s[1]), c = rc__json_hexval(s[2]),
        d = rc__json_hexval(s[3]);
    if ((a | b | c | d) < 0) return -1;
    return a << 12 | b << 8 | c << 4 | d;
}

/* rc__json_string skips a string body; s points just past the opening quote. Returns the
 * position after the closing quote, or NULL when the string is invalid or unterminated. Sets
 * *esc when the body contains an escape. Lone surrogate escapes are accepted: RFC 8259 §8.2
 * makes them valid JSON with unpredictable meaning, and only rc_json_unescape rejects them.
 *
 * Plain bytes are skipped 16 at a time with SSE2 where the target has it (every x86-64), then
 * 8 at a time with the portable SWAR test, then one at a time near the end of the input. It is
 * forced inline because it runs for every key and string value: as a call, saving and
 * restoring registers cost about as much as scanning a short key. */
static inline __attribute__((always_inline)) const uc *rc__json_string(const uc *s, const uc *e,
                                                                       unsigned *esc)
{
    for (;;) {
#if RC__JSON_SSE2
        while (e - s >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
            __m128i hit = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                             _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                /* unsigned v < 0x20  <=>  min(v, 0x1f) == v */
                _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v));
            unsigned bits = (unsigned)_mm_movemask_epi8(hit);
            if (bits) {
                s += __builtin_ctz(bits);
                goto special;
            }
            s += 16;
        }
#endif
        while (e - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            uint64_t m = rc__json_special(w);
            if (m) {
#if RC__JSON_LE
                s += (unsigned)__builtin_ctzll(m) >> 3;
                goto special;
#else
                break; /* the byte loop below finds it within 8 bytes */
#endif
            }
            s += 8;
        }
        while (s < e && rc__json_plain[*s]) s++;
        if (s == e) return NULL;
#if RC__JSON_LE || RC__JSON_SSE2
    special:
#endif
        if (*s == '"') return s + 1;
        if (*s != '\\') return NULL; /* raw control character */
        if (e - s < 2) return NULL;
        *esc = 1;
        switch (s[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            s += 2;
            break;
        case 'u':
            if (e - s < 6 || rc__json_hex4(s + 2) < 0) return NULL;
            s += 6;
            break;
        default:
            return NULL;
        }
    }
}

/* rc__json_digits skips ASCII digits. Timestamps and ids are long runs of digits, so on
 * little-endian targets eight bytes are classified at once: byte b is a digit when both b and
 * b + 6 have 0x3 as their high nibble. A carry out of a non-digit byte can only spoil the
 * bytes above it, so the lowest non-digit byte is still found exactly. */
static inline const uc *rc__json_digits(const uc *s, const uc *e)
{
#if RC__JSON_LE
    while (e - s >= 8) {
        uint64_t w, x;
        memcpy(&w, s, 8);
        x = ((w & (RC__ONES * 0xF0)) | ((w + RC__ONES * 0x06) & (RC__ONES * 0xF0)) >> 4) ^
            (RC__ONES * 0x33);
        /* top bit of each byte set where x is nonzero, i.e. where the byte is not a digit */
        x = (x | ((x & (RC__ONES * 0x7F)) + RC__ONES * 0x7F)) & RC__HIGH;
        if (x) return s + ((unsigned)__builtin_ctzll(x) >> 3);
        s += 8;
    }
#endif
    while (s < e && (unsigned)(*s - '0') < 10u) s++;
    return s;
}

/* rc__json_number skips -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? starting at s, or
 * returns NULL. What may follow the number is the caller's business ("01" fails there). */
static inline const uc *rc__json_number(const uc *s, const uc *e)
{
    if (*s == '-' && ++s == e) return NULL;
    if (*s == '0') s++;
    else if ((unsigned)(*s - '1') < 9u) s = rc__json_digits(s + 1, e);
    else return NULL;
    if (s < e && *s == '.') {
        if (++s == e || (unsigned)(*s - '0') >= 10u) return NULL;
        s = rc__json_digits(s + 1, e);
    }
    if (s < e && (*s | 0x20) == 'e') {
        if (++s < e && (*s == '+' || *s == '-')) s++;
        if (s == e || (unsigned)(*s - '0') >= 10u) return NULL;
        s = rc__json_digits(s + 1, e);
    }
    return s;
}

const char *const rc_json_key_names[RC_JK__COUNT] = {
    [RC_JK_TYPE] = "type", [RC_JK_ROOM] = "room", [RC_JK_CLIENT_ID] = "client_id",
    [RC_JK_MSG_ID] = "msg_id", [RC_JK_ACK] = "ack", [RC_JK_SINCE] = "since",
    [RC_JK_EPOCH] = "epoch", [RC_JK_IDEMPOTENCY_KEY] = "idempotency_key",
    [RC_JK_SESSION] = "session", [RC_JK_HISTORY] = "history", [RC_JK_STATE] = "state",
    [RC_JK_PRESENCE] = "presence", [RC_JK_CONFLATE] = "conflate",
    [RC_JK_STATE_KEY] = "state_key", [RC_JK_STATE_DELETE] = "state_delete",
    [RC_JK_USER] = "user", [RC_JK_TOKEN] = "token",
};

/* rc__json_key maps a raw key (with quotes) to an rc_json_key, or -1. esc says whether the
 * key contains a backslash; only then is it decoded, and only when it is short enough that it
 * could decode to one of the names (at most 15 bytes, six raw bytes per decoded byte). */
static int rc__json_key(const uc *raw, size_t rawlen, unsigned esc)
{
    const char *k = (const char *)raw + 1;
    size_t len = rawlen - 2;
    char buf[16];

    if (esc) {
        if (rawlen > 2 + 6 * 15) return -1;
        long r = rc_json_unescape((const char *)raw, rawlen, buf, sizeof buf);
        if (r < 0) return -1;
        k = buf;
        len = (size_t)r;
    }
    switch (len) {
    case 3:
        if (!memcmp(k, "ack", 3)) return RC_JK_ACK;
        break;
    case 4:
        if (!memcmp(k, "type", 4)) return RC_JK_TYPE;
        if (!memcmp(k, "room", 4)) return RC_JK_ROOM;
        if (!memcmp(k, "user", 4)) return RC_JK_USER;
        break;
    case 5:
        if (!memcmp(k, "since", 5)) return RC_JK_SINCE;
        if (!memcmp(k, "epoch", 5)) return RC_JK_EPOCH;
        if (!memcmp(k, "state", 5)) return RC_JK_STATE;
        if (!memcmp(k, "token", 5)) return RC_JK_TOKEN;
        break;
    case 6:
        if (!memcmp(k, "msg_id", 6)) return RC_JK_MSG_ID;
        break;
    case 7:
        if (!memcmp(k, "session", 7)) return RC_JK_SESSION;
        if (!memcmp(k, "history", 7)) return RC_JK_HISTORY;
        break;
    case 8:
        if (!memcmp(k, "presence", 8)) return RC_JK_PRESENCE;
        if (!memcmp(k, "conflate", 8)) return RC_JK_CONFLATE;
        break;
    case 9:
        if (!memcmp(k, "client_id", 9)) return RC_JK_CLIENT_ID;
        if (!memcmp(k, "state_key", 9)) return RC_JK_STATE_KEY;
        break;
    case 12:
        if (!memcmp(k, "state_delete", 12)) return RC_JK_STATE_DELETE;
        break;
    case 15:
        if (!memcmp(k, "idempotency_key", 15)) return RC_JK_IDEMPOTENCY_KEY;
        break;
    }
    return -1;
}

static enum rc_json_type rc__json_type(uc c)
{
    switch (c) {
    case '"': return RC_JSON_STRING;
    case '{': return RC_JSON_OBJECT;
    case '[': return RC_JSON_ARRAY;
    case 't': return RC_JSON_TRUE;
    case 'f': return RC_JSON_FALSE;
    case 'n': return RC_JSON_NULL;
    default: return RC_JSON_NUMBER;
    }
}

int rc_json_scan(const char *p, size_t n, unsigned cut_mask, rc_json_top *t)
{
    const uc *const base = (const uc *)p;
    /* n == 0 first: an empty message may come with a NULL p, and NULL + 0 is undefined. */
    const uc *s = base, *const e = n ? base + n : base;
    uint64_t kinds = 0;       /* bit d-1 set: the container at depth d is an object */
    unsigned depth = 0;       /* containers open */
    unsigned esc;             /* the last string scanned had an escape */
    bool top_obj;             /* the top-level value is an object */
    /* The top-level member being scanned: */
    int key = -1;             /* its rc_json_key, or -1 */
    const uc *mstart = NULL;  /* its key's opening quote */
    const uc *vstart = NULL;  /* its value's first byte */
    const uc *prev_end = NULL; /* end of the previous member's value */
    bool kept = false;        /* some earlier member is not cut */
    size_t pending = RC_JSON_MAX_CUTS; /* cut[] entry waiting for the next key to end it */
    bool overflow = false;    /* more than RC_JSON_MAX_CUTS members to cut */

    memset(t->key, 0, sizeof t->key);
    t->ncut = t->members = t->members_cut = 0;
    t->dups = 0;
    t->open = t->close = 0;

    RC__SKIP_WS(s, e);
    if (s == e) return RC_JSON_ESYNTAX;
    top_obj = *s == '{';
    if (top_obj) {
        t->open = (size_t)(s - base);
        kinds = 1;
        depth = 1;
        s++;
        RC__SKIP_WS(s, e);
        if (s == e) return RC_JSON_ESYNTAX;
        if (*s == '}') {
            t->close = (size_t)(s - base);
            s++;
            goto end;
        }
        goto member;
    }

value: /* a value is expected at s (after optional whitespace) */
    RC__SKIP_WS(s, e);
    if (s == e) return RC_JSON_ESYNTAX;
    switch (*s) {
    case '"':
        s = rc__json_string(s + 1, e, &esc);
        if (!s) return RC_JSON_ESYNTAX;
        break;
    case '{':
        if (depth == RC_JSON_MAX_DEPTH) return RC_JSON_EDEPTH;
        kinds |= 1ull << depth;
        depth++;
        s++;
        RC__SKIP_WS(s, e);
        if (s == e) return RC_JSON_ESYNTAX;
        if (*s != '}') goto key;
        s++;
        depth--;
        break;
    case '[':
        if (depth == RC_JSON_MAX_DEPTH) return RC_JSON_EDEPTH;
        kinds &= ~(1ull << depth);
        depth++;
        s++;
        RC__SKIP_WS(s, e);
        if (s == e) return RC_JSON_ESYNTAX;
        if (*s != ']') goto value;
        s++;
        depth--;
        break;
    case 't':
        if (e - s < 4 || memcmp(s, "true", 4)) return RC_JSON_ESYNTAX;
        s += 4;
        break;
    case 'f':
        if (e - s < 5 || memcmp(s, "false", 5)) return RC_JSON_ESYNTAX;
        s += 5;
        break;
    case 'n':
        if (e - s < 4 || memcmp(s, "null", 4)) return RC_JSON_ESYNTAX;
        s += 4;
        break;
    default:
        s = rc__json_number(s, e);
        if (!s) return RC_JSON_ESYNTAX;
        break;
    }

after: /* a value ended just before s, inside `depth` containers */
    if (depth <= 1) {
        if (depth == 0) goto end;
        if (top_obj) goto member_end;
    }
    RC__SKIP_WS(s, e);
    if (s == e) return RC_JSON_ESYNTAX;
    {
        unsigned obj = (unsigned)(kinds >> (depth - 1)) & 1;
        uc c = *s++;
        if (c == ',') {
            if (obj) goto key;
            goto value;
        }
        if (c != (obj ? '}' : ']')) return RC_JSON_ESYNTAX;
        depth--;
        goto after;
    }

key: /* a key is expected inside a nested object (or the top-level array's objects) */
    RC__SKIP_WS(s, e);
    if (s == e || *s != '"') return RC_JSON_ESYNTAX;
    s = rc__json_string(s + 1, e, &esc);
    if (!s) return RC_JSON_ESYNTAX;
    RC__SKIP_WS(s, e);
    if (s == e || *s != ':') return RC_JSON_ESYNTAX;
    s++;
    goto value;

member: /* a top-level key is expected at s; whitespace already skipped, s < e */
    if (*s != '"') return RC_JSON_ESYNTAX;
    if (pending < RC_JSON_MAX_CUTS) {
        t->cut[pending].len = (size_t)(s - base) - t->cut[pending].off;
        pending = RC_JSON_MAX_CUTS;
    }
    mstart = s;
    esc = 0;
    s = rc__json_string(s + 1, e, &esc);
    if (!s) return RC_JSON_ESYNTAX;
    key = rc__json_key(mstart, (size_t)(s - mstart), esc);
    t->members++;
    RC__SKIP_WS(s, e);
    if (s == e || *s != ':') return RC_JSON_ESYNTAX;
    s++;
    RC__SKIP_WS(s, e);
    vstart = s;
    goto value;

member_end: /* the value of the top-level member ended just before s */
    if (key >= 0) {
        rc_json_span *sp = &t->key[key];
        if (sp->type != RC_JSON_NONE) t->dups |= RC_JK_BIT(key);
        sp->p = (const char *)vstart;
        sp->len = (size_t)(s - vstart);
        sp->type = rc__json_type(*vstart);
        if (cut_mask >> key & 1) {
            t->members_cut++;
            if (t->ncut == RC_JSON_MAX_CUTS) {
                overflow = true;
            } else {
                rc_json_cut *c = &t->cut[t->ncut];
                if (kept) {
                    c->off = (size_t)(prev_end - base);
                    c->len = (size_t)(s - prev_end);
                } else {
                    /* The end is the next key, if there is one; see the header comment. */
                    c->off = (size_t)(mstart - base);
                    c->len = (size_t)(s - mstart);
                    pending = t->ncut;
                }
                t->ncut++;
            }
        } else {
            kept = true;
        }
    } else {
        kept = true;
    }
    prev_end = s;
    RC__SKIP_WS(s, e);
    if (s == e) return RC_JSON_ESYNTAX;
    if (*s == ',') {
        s++;
        RC__SKIP_WS(s, e);
        if (s == e) return RC_JSON_ESYNTAX;
        goto member;
    }
    if (*s != '}') return RC_JSON_ESYNTAX;
    /* A pending cut is the last member and everything was cut: its range ends with its value,
     * which it already does. */
    t->close = (size_t)(s - base);
    s++;

end: /* the top-level value ended just before s; only whitespace may follow */
    RC__SKIP_WS(s, e);
    if (s != e) return RC_JSON_ESYNTAX;
    if (!top_obj) return RC_JSON_ENOTOBJECT;
    if (overflow) return RC_JSON_ECUTS;
    return RC_JSON_OK;
}

size_t rc_json_copy_open(const char *p, const rc_json_top *t, char *out, bool *nonempty)
{
    size_t pos = t->open, o = 0;

    for (size_t i = 0; i < t->ncut; i++) {
        size_t k = t->cut[i].off - pos;
        memcpy(out + o, p + pos, k);
        o += k;
        pos = t->cut[i].off + t->cut[i].len;
    }
    memcpy(out + o, p + pos, t->close - pos);
    o += t->close - pos;
    *nonempty = t->members > t->members_cut;
    return o;
}

/* rc__utf8_put encodes code point cp (not a surrogate, at most U+10FFFF) at out. */
static size_t rc__utf8_put(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* rc_json_unescape checks the literal as strictly as the scanner does, so it can also be used
 * on text that did not come from rc_json_scan. Decoded NUL is refused because the callers
 * keep room names and the like in C strings. */
/* unescape decodes a string literal; lossy lets NUL through and turns lone surrogates into
 * U+FFFD instead of refusing them (see json.h). */
static long unescape(const char *raw, size_t len, char *out, size_t cap, bool lossy)
{
    if (len < 2 || raw[0] != '"' || raw[len - 1] != '"') return -1;
    const uc *s = (const uc *)raw + 1, *const e = (const uc *)raw + len - 1;
    size_t o = 0;

    while (s < e) {
        const uc *run = s;
        while (s < e && rc__json_plain[*s]) s++;
        if (s > run) {
            size_t k = (size_t)(s - run);
            if (k > cap - o) return -1;
            memcpy(out + o, run, k);
            o += k;
            continue;
        }
        /* The closing quote is e itself, so a quote or a control byte here is invalid, and
         * so is a backslash that would escape the closing quote. */
        if (*s != '\\' || e - s < 2) return -1;
        char c;
        switch (s[1]) {
        case '"': c = '"'; break;
        case '\\': c = '\\'; break;
        case '/': c = '/'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
            int cp;
            if (e - s < 6 || (cp = rc__json_hex4(s + 2)) < 0) return -1;
            s += 6;
            if (cp >= 0xDC00 && cp <= 0xDFFF) { /* low surrogate first */
                if (!lossy) return -1;
                cp = 0xFFFD;
            } else if (cp >= 0xD800 && cp <= 0xDBFF) {
                int lo;
                if (e - s < 6 || s[0] != '\\' || s[1] != 'u' ||
                    (lo = rc__json_hex4(s + 2)) < 0xDC00 || lo > 0xDFFF) {
                    if (!lossy) return -1;
                    cp = 0xFFFD; /* whatever follows is decoded on its own */
                } else {
                    s += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
            }
            if (cp == 0 && !lossy) return -1;
            char u[4];
            size_t k = rc__utf8_put(u, (unsigned)cp);
            if (k > cap - o) return -1;
            memcpy(out + o, u, k);
            o += k;
            continue;
        }
        default:
            return -1;
        }
        if (o == cap) return -1;
        out[o++] = c;
        s += 2;
    }
    return (long)o;
}

long rc_json_unescape(const char *raw, size_t len, char *out, size_t cap)
{
    return unescape(raw, len, out, cap, false);
}

long rc_json_unescape_lossy(const char *raw, size_t len, char *out, size_t cap)
{
    return unescape(raw, len, out, cap, true);
}

size_t rc_json_escape(const char *s, size_t n, char *out)
{
    static const char hexd[] = "0123456789abcdef";
    const uc *q = (const uc *)s, *const e = n ? q + n : q; /* s may be NULL when n == 0 */
    size_t o = 0;

    out[o++] = '"';
    while (q < e) {
        const uc *run = q;
        while (q < e && rc__json_plain[*q]) q++;
        memcpy(out + o, run, (size_t)(q - run));
        o += (size_t)(q - run);
        if (q == e) break;
        uc c = *q++;
        out[o++] = '\\';
        switch (c) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '\b': out[o++] = 'b'; break;
        case '\f': out[o++] = 'f'; break;
        case '\n': out[o++] = 'n'; break;
        case '\r': out[o++] = 'r'; break;
        case '\t': out[o++] = 't'; break;
        default:
            out[o++] = 'u';
            out[o++] = '0';
            out[o++] = '0';
            out[o++] = hexd[c >> 4];
            out[o++] = hexd[c & 15];
            break;
        }
    }
    out[o++] = '"';
    return o;
}

bool rc_json_get_u64(const rc_json_span *s, uint64_t *out)
{
    if (!s || s->type != RC_JSON_NUMBER || !s->p || s->len == 0) return false;
    const uc *q = (const uc *)s->p, *const e = q + s->len;
    if (s->len > 1 && q[0] == '0') return false; /* not a JSON number */
    uint64_t v = 0;
    for (; q < e; q++) {
        unsigned d = (unsigned)(*q - '0');
        if (d >= 10u) return false;
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* ---- walking accepted JSON --------------------------------------------------------------- */

static const char *rc__walk_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* p at '"' of accepted JSON: returns the byte after the closing quote. */
static const char *rc__walk_string(const char *p, const char *e)
{
    for (p++; p < e; p++) {
        if (*p == '\\') p++;
        else if (*p == '"') return p + 1;
    }
    return e;
}

/* p at the first byte of an accepted value: returns the byte after it. */
static const char *rc__walk_value(const char *p, const char *e)
{
    if (p >= e) return e;
    if (*p == '"') return rc__walk_string(p, e);
    if (*p != '{' && *p != '[') {
        while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
               *p != '\n' && *p != '\r')
            p++;
        return p;
    }
    unsigned depth = 0;
    for (; p < e; p++) {
        if (*p == '"') p = rc__walk_string(p, e) - 1;
        else if (*p == '{' || *p == '[') depth++;
        else if ((*p == '}' || *p == ']') && --depth == 0) return p + 1;
    }
    return e;
}

bool rc_json_iter_init(rc_json_iter *it, const char *p, size_t n)
{
    const char *e = n ? p + n : p;
    p = rc__walk_ws(p, e);
    if (p >= e || *p != '{') return false;
    it->p = p + 1;
    it->e = e;
    return true;
}

bool rc_json_iter_next(rc_json_iter *it, rc_json_span *key, rc_json_span *value)
{
    const char *p = rc__walk_ws(it->p, it->e), *e = it->e;
    if (p < e && *p == ',') p = rc__walk_ws(p + 1, e);
    if (p >= e || *p != '"') {
        it->p = e; /* '}' or the end: no more members */
        return false;
    }
    const char *k = p;
    p = rc__walk_string(p, e);
    *key = (rc_json_span){.p = k, .len = (size_t)(p - k), .type = RC_JSON_STRING};
    p = rc__walk_ws(p, e);
    if (p < e && *p == ':') p++;
    p = rc__walk_ws(p, e);
    const char *v = p;
    p = rc__walk_value(p, e);
    *value = (rc_json_span){.p = v, .len = (size_t)(p - v),
                            .type = v < e ? rc__json_type((uc)*v) : RC_JSON_NONE};
    it->p = p;
    return true;
}

bool rc_json_array_init(rc_json_iter *it, const char *p, size_t n)
{
    const char *e = n ? p + n : p;
    p = rc__walk_ws(p, e);
    if (p >= e || *p != '[') return false;
    it->p = p + 1;
    it->e = e;
    return true;
}

bool rc_json_array_next(rc_json_iter *it, rc_json_span *value)
{
    const char *p = rc__walk_ws(it->p, it->e), *e = it->e;
    if (p < e && *p == ',') p = rc__walk_ws(p + 1, e);
    if (p >= e || *p == ']') {
        it->p = e; /* ']' or the end: no more elements */
        return false;
    }
    const char *v = p;
    p = rc__walk_value(p, e);
    *value = (rc_json_span){.p = v, .len = (size_t)(p - v), .type = rc__json_type((uc)*v)};
    it->p = p;
    return true;
}

bool rc_json_member(const char *p, size_t n, const char *key, rc_json_span *value)
{
    *value = (rc_json_span){0};
    rc_json_iter it;
    if (!rc_json_iter_init(&it, p, n)) return false;
    size_t kl = strlen(key);
    char buf[64];
    rc_json_span k, v;
    while (rc_json_iter_next(&it, &k, &v)) {
        if (k.len < kl + 2) continue; /* an escape only makes the literal longer */
        long dl = rc_json_unescape(k.p, k.len, buf, sizeof(buf));
        if (dl == (long)kl && memcmp(buf, key, kl) == 0) *value = v; /* the last one wins */
    }
    return value->type != RC_JSON_NONE;
}

bool rc_json_get_f64(const rc_json_span *s, double *out)
{
    char tmp[64];
    if (!s || s->type != RC_JSON_NUMBER || s->len == 0 || s->len >= sizeof(tmp)) return false;
    memcpy(tmp, s->p, s->len);
    tmp[s->len] = '\0';
    char *end;
    double v = strtod(tmp, &end);
    if (end != tmp + s->len) return false;
    *out = v;
    return true;
}
