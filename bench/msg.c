/* msg.c — the slice of JSON the room protocol needs, written for speed in the receive path.
 *
 * Every delivery the generator receives is scanned once: a single pass over the top-level
 * object that records the few members it checks (type, client_id, msg_id, our s/q/t, ...) and
 * skips everything else, nested values included. It accepts any whitespace and member order,
 * because the peers re-serialise messages their own way (Python's json.dumps writes ", " and
 * ": "). It validates structure but does not unescape strings: the generator only compares
 * ASCII names it chose itself.
 */
#include "bench.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Bit 7 of each byte of w that equals the byte repeated in `rep`; only the lowest flagged byte
 * is exact (a borrow can flag bytes above it), which is the only one we use. */
static inline uint64_t bytes_equal(uint64_t w, uint64_t rep)
{
    uint64_t x = w ^ rep;
    return (x - 0x0101010101010101ull) & ~x & 0x8080808080808080ull;
}

/* p at the opening quote; returns the position after the closing quote, NULL if malformed.
 * Eight bytes at a time, looking for a quote or a backslash in one pass: every delivery holds
 * about ten strings (keys included) of a few to a hundred bytes, too short for two memchr()
 * calls each to pay off (they were a third of the generator's scanning instructions).
 * Control characters inside strings are not rejected: validating input is the server's job. */
static const char *skip_string(const char *p, const char *e)
{
    p++;
    for (;;) {
        while (e - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            uint64_t hit = bytes_equal(w, 0x2222222222222222ull) | /* '"' */
                           bytes_equal(w, 0x5c5c5c5c5c5c5c5cull);  /* '\\' */
            if (hit) {
                p += __builtin_ctzll(hit) / 8;
                goto found;
            }
            p += 8;
        }
        while (p < e && *p != '"' && *p != '\\')
            p++;
        if (p >= e)
            return NULL;
    found:
        if (*p == '"')
            return p + 1;
        p += 2; /* skip the escaped character, which may be a quote */
        if (p >= e)
            return NULL;
    }
}

/* Number, true, false, null: a run of the characters they are made of. Returns its end (NULL
 * if empty) and, in *iv, the non-negative integer its leading digits spell, or -1 when it does
 * not start with a digit — one pass instead of skipping the value and parsing it again. */
static const char *scan_scalar(const char *p, const char *e, int64_t *iv)
{
    const char *s = p;
    int64_t v = -1;
    if (p < e && *p >= '0' && *p <= '9') {
        bool too_long = false;
        v = 0;
        for (; p < e && *p >= '0' && *p <= '9'; p++) {
            if (v > (INT64_MAX - 9) / 10)
                too_long = true;
            else
                v = v * 10 + (*p - '0');
        }
        if (too_long)
            v = -1;
    }
    while (p < e && ((*p >= '0' && *p <= '9') || *p == '-' || *p == '+' || *p == '.' ||
                     *p == 'e' || *p == 'E' || (*p >= 'a' && *p <= 'z')))
        p++;
    *iv = v;
    return p > s ? p : NULL;
}

static const char *skip_value(const char *p, const char *e, int depth)
{
    if (p >= e || depth > 64)
        return NULL;
    switch (*p) {
    case '"':
        return skip_string(p, e);
    case '{':
    case '[': {
        char close = *p == '{' ? '}' : ']';
        bool obj = *p == '{';
        p = skip_ws(p + 1, e);
        if (p < e && *p == close)
            return p + 1;
        for (;;) {
            if (obj) {
                if (p >= e || *p != '"' || !(p = skip_string(p, e)))
                    return NULL;
                p = skip_ws(p, e);
                if (p >= e || *p != ':')
                    return NULL;
                p = skip_ws(p + 1, e);
            }
            if (!(p = skip_value(p, e, depth + 1)))
                return NULL;
            p = skip_ws(p, e);
            if (p >= e)
                return NULL;
            if (*p == close)
                return p + 1;
            if (*p != ',')
                return NULL;
            p = skip_ws(p + 1, e);
        }
    }
    default: {
        int64_t iv;
        return scan_scalar(p, e, &iv);
    }
    }
}

bool rb_msg_is(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return s && n == l && memcmp(s, lit, l) == 0;
}

/* Matches the literal s (n bytes) at *pp and moves past it. */
/* Inlined so that memcmp of a constant length becomes a few compares. */
static inline __attribute__((always_inline)) bool take(const char **pp, const char *e,
                                                      const char *s, size_t n)
{
    if ((size_t)(e - *pp) < n || memcmp(*pp, s, n) != 0)
        return false;
    *pp += n;
    return true;
}

/* 1 to 18 decimal digits at *pp (no overflow possible); the caller then matches the character
 * that must follow, which is never one a number can continue with. */
static bool take_u(const char **pp, const char *e, int64_t *v)
{
    const char *p = *pp, *s = p;
    int64_t x = 0;
    for (; p < e && p - s < 19; p++) {
        unsigned d = (unsigned)(unsigned char)*p - '0';
        if (d > 9)
            break;
        x = x * 10 + d;
    }
    if (p == s || p - s > 18)
        return false;
    *v = x;
    *pp = p;
    return true;
}

#define TAKE(lit) take(&p, e, lit, sizeof(lit) - 1)

/* The delivery exactly as roomcast and the ceiling write it (and Node's JSON.stringify):
 * {"type":"b","s":S,"q":Q,"t":T,"p":"…","room":"…","client_id":C,"msg_id":M}, with
 * "state_key":"…" before "p" when the generator keyed it (--state-keys). Every byte is
 * checked; anything else, spacing included, returns false and goes through the general scan,
 * which accepts everything this accepts with the same result. This is most of the generator's
 * receive path, so it had to be cheaper than a general JSON scan (bench/RESULTS.md). */
static bool scan_delivery(const char *p, const char *e, struct rb_msg *m)
{
    const char *room, *room_end;
    if (!TAKE("{\"type\":\"b\",\"s\":") || !take_u(&p, e, &m->s) || !TAKE(",\"q\":") ||
        !take_u(&p, e, &m->q) || !TAKE(",\"t\":") || !take_u(&p, e, &m->t))
        return false;
    if (TAKE(",\"state_key\":") && (p >= e || *p != '"' || !(p = skip_string(p, e))))
        return false;
    if (!TAKE(",\"p\":") || p >= e || *p != '"' || !(p = skip_string(p, e)) ||
        !TAKE(",\"room\":") || p >= e || *p != '"' || !(room_end = skip_string(room = p, e)))
        return false;
    p = room_end;
    if (!TAKE(",\"client_id\":") || !take_u(&p, e, &m->client_id) || !TAKE(",\"msg_id\":") ||
        !take_u(&p, e, &m->msg_id) || !TAKE("}") || p != e)
        return false;
    m->type = "b";
    m->type_len = 1;
    m->room = room + 1;
    m->room_len = (size_t)(room_end - room - 2);
    return true;
}

int rb_msg_scan(const char *p, size_t n, struct rb_msg *m)
{
    const char *e = p + n;
    m->type = m->room = m->code = NULL;
    m->type_len = m->room_len = m->code_len = 0;
    m->client_id = m->msg_id = m->last_msg_id = m->s = m->q = m->t = m->close_code = -1;
    if (scan_delivery(p, e, m))
        return 0;
    m->event = NULL;
    m->event_len = 0;
    m->after_msg_id = m->replay_from = m->member_count = -1;
    m->members = m->msg_ids = m->messages = m->joined_ids = m->left_ids = (struct rb_span){0};
    /* scan_delivery may have filled some members before it gave up. */
    m->s = m->q = m->t = m->client_id = m->msg_id = -1;
    p = skip_ws(p, e);
    if (p >= e || *p != '{')
        return -1;
    p = skip_ws(p + 1, e);
    if (p < e && *p == '}')
        return 0;
    for (;;) {
        if (p >= e || *p != '"')
            return -1;
        const char *k = p + 1, *ke = skip_string(p, e);
        if (!ke)
            return -1;
        size_t kl = (size_t)(ke - 1 - k);
        p = skip_ws(ke, e);
        if (p >= e || *p != ':')
            return -1;
        const char *v = skip_ws(p + 1, e);
        if (v >= e)
            return -1;
        /* Scalars are scanned and parsed in one pass; strings and nested values skipped. */
        int64_t iv = -1;
        const char *ve;
        if (*v == '"')
            ve = skip_string(v, e);
        else if (*v == '{' || *v == '[')
            ve = skip_value(v, e, 0);
        else
            ve = scan_scalar(v, e, &iv);
        if (!ve)
            return -1;
        bool str = *v == '"', arr = *v == '[';
        struct rb_span span = {v, (size_t)(ve - v)};
        /* Dispatch on length first: most keys are rejected by one comparison. */
        switch (kl) {
        case 1:
            if (*k == 's')
                m->s = iv;
            else if (*k == 'q')
                m->q = iv;
            else if (*k == 't')
                m->t = iv;
            break;
        case 4:
            if (str && memcmp(k, "type", 4) == 0) {
                m->type = v + 1;
                m->type_len = (size_t)(ve - v - 2);
            } else if (str && memcmp(k, "room", 4) == 0) {
                m->room = v + 1;
                m->room_len = (size_t)(ve - v - 2);
            } else if (memcmp(k, "code", 4) == 0) {
                if (str) {
                    m->code = v + 1;
                    m->code_len = (size_t)(ve - v - 2);
                } else {
                    m->close_code = iv;   /* a close line of the TCP port */
                }
            } else if (arr && memcmp(k, "left", 4) == 0) {
                m->left_ids = span;
            }
            break;
        case 5:
            if (str && memcmp(k, "event", 5) == 0) {
                m->event = v + 1;
                m->event_len = (size_t)(ve - v - 2);
            }
            break;
        case 6:
            if (memcmp(k, "msg_id", 6) == 0)
                m->msg_id = iv;
            else if (arr && memcmp(k, "joined", 6) == 0)
                m->joined_ids = span;
            break;
        case 7:
            if (arr && memcmp(k, "members", 7) == 0)
                m->members = span;
            else if (arr && memcmp(k, "msg_ids", 7) == 0)
                m->msg_ids = span;
            break;
        case 8:
            if (arr && memcmp(k, "messages", 8) == 0)
                m->messages = span;
            break;
        case 9:
            if (memcmp(k, "client_id", 9) == 0)
                m->client_id = iv;
            break;
        case 11:
            if (memcmp(k, "last_msg_id", 11) == 0)
                m->last_msg_id = iv;
            else if (memcmp(k, "replay_from", 11) == 0)
                m->replay_from = iv;
            break;
        case 12:
            if (memcmp(k, "after_msg_id", 12) == 0)
                m->after_msg_id = iv;
            else if (memcmp(k, "member_count", 12) == 0)
                m->member_count = iv;
            break;
        default:
            break;
        }
        p = skip_ws(ve, e);
        if (p >= e)
            return -1;
        if (*p == '}')
            return skip_ws(p + 1, e) == e ? 0 : -1;
        if (*p != ',')
            return -1;
        p = skip_ws(p + 1, e);
    }
}

bool rb_msg_array_next(struct rb_span arr, const char **it, struct rb_span *el, bool *bad)
{
    const char *e = arr.p + arr.n, *p = *it;
    if (!arr.p || arr.n < 2 || arr.p[0] != '[') {
        *bad = arr.p != NULL;
        return false;
    }
    if (!p) {
        p = skip_ws(arr.p + 1, e);
        if (p < e && *p == ']')
            return false;
    } else {
        p = skip_ws(p, e);
        if (p < e && *p == ']')
            return false;
        if (p >= e || *p != ',') {
            *bad = true;
            return false;
        }
        p = skip_ws(p + 1, e);
    }
    const char *ve = skip_value(p, e, 1);
    if (!ve) {
        *bad = true;
        return false;
    }
    el->p = p;
    el->n = (size_t)(ve - p);
    *it = ve;
    return true;
}

int64_t rb_msg_int(struct rb_span el)
{
    int64_t v;
    const char *e = scan_scalar(el.p, el.p + el.n, &v);
    return e == el.p + el.n ? v : -1;
}

static char *put_u64(char *d, uint64_t v)
{
    char t[24];
    int n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *d++ = t[--n];
    return d;
}

static char *put_str(char *d, const char *s)
{
    size_t l = strlen(s);
    memcpy(d, s, l);
    return d + l;
}

bool rb_game_json;

size_t rb_msg_publish(char *dst, size_t cap, size_t size, uint32_t s, uint64_t q, uint64_t t)
{
    return rb_msg_publish_key(dst, cap, size, s, q, t, NULL);
}

size_t rb_msg_publish_key(char *dst, size_t cap, size_t size, uint32_t s, uint64_t q, uint64_t t,
                          const char *skey)
{
    /* {"type":"b","s":S,"q":Q,"t":T,"p":"xxxx"}: the padding makes the text exactly `size`
     * bytes long when size allows it, so "100-byte messages" means 100 bytes of JSON. A state
     * key (plain ASCII the caller chose, at most 64 bytes) goes before "p". */
    char head[448], *d = head;
    d = put_str(d, "{\"type\":\"b\",\"s\":");
    d = put_u64(d, s);
    d = put_str(d, ",\"q\":");
    d = put_u64(d, q);
    d = put_str(d, ",\"t\":");
    d = put_u64(d, t);
    if (skey) {
        d = put_str(d, ",\"state_key\":\"");
        size_t kl = strnlen(skey, 64);
        memcpy(d, skey, kl);
        d += kl;
        *d++ = '"';
    }
    if (rb_game_json) {
        /* A pose as a game sends it 20-60 times a second: numbers that change every time. */
        static const char *const anims[] = {"idle", "walk", "run", "jump", "crouch"};
        static uint64_t x = 0x9E3779B97F4A7C15ull;
        double v[10];
        for (int i = 0; i < 10; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            v[i] = (double)(x % 2000001) / 1000.0 - 1000.0;
        }
        d += snprintf(d, 300, ",\"pos\":[%.3f,%.3f,%.3f],\"rot\":[%.4f,%.4f,%.4f,%.4f],"
                      "\"vel\":[%.2f,%.2f,%.2f],\"anim\":\"%s\",\"hp\":%u",
                      v[0], v[1] / 10, v[2], v[3] / 1000, v[4] / 1000, v[5] / 1000, v[6] / 1000,
                      v[7] / 100, v[8] / 100, v[9] / 100, anims[x % 5], (unsigned)(x >> 40) % 101);
    }
    d = put_str(d, ",\"p\":\"");
    size_t hl = (size_t)(d - head), tail = 2; /* "} */
    size_t pad = size > hl + tail ? size - hl - tail : 0;
    if (hl + pad + tail > cap)
        pad = cap > hl + tail ? cap - hl - tail : 0;
    memcpy(dst, head, hl);
    memset(dst + hl, 'x', pad);
    memcpy(dst + hl + pad, "\"}", 2);
    return hl + pad + tail;
}

size_t rb_msg_join(char *dst, size_t cap, const char *room)
{
    return rb_msg_join_ext(dst, cap, room, NULL);
}

size_t rb_msg_join_ext(char *dst, size_t cap, const char *room, const char *extra)
{
    char *d = dst;
    if (strlen(room) + (extra ? strlen(extra) : 0) + 32 > cap)
        return 0;
    d = put_str(d, "{\"type\":\"join\",\"room\":\"");
    d = put_str(d, room);
    d = put_str(d, "\"");
    if (extra)
        d = put_str(d, extra);
    d = put_str(d, "}");
    return (size_t)(d - dst);
}

size_t rb_msg_leave(char *dst, size_t cap, const char *room)
{
    char *d = dst;
    if (strlen(room) + 32 > cap)
        return 0;
    d = put_str(d, "{\"type\":\"leave\",\"room\":\"");
    d = put_str(d, room);
    d = put_str(d, "\"}");
    return (size_t)(d - dst);
}
