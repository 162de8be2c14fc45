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

#include <string.h>

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at the opening quote; returns the position after the closing quote, NULL if malformed.
 * memchr does the scanning (vectorised in libc), because the padding of large messages is one
 * long string and a byte loop over it made the generator, not the server, the bottleneck.
 * Control characters inside strings are not rejected: validating input is the server's job. */
static const char *skip_string(const char *p, const char *e)
{
    for (p++; p < e;) {
        const char *q = memchr(p, '"', (size_t)(e - p));
        if (!q)
            return NULL;
        const char *b = memchr(p, '\\', (size_t)(q - p));
        if (!b)
            return q + 1;
        p = b + 2; /* skip the escaped character, which may be a quote */
    }
    return NULL;
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
        /* number, true, false, null: a run of the characters they are made of */
        const char *s = p;
        while (p < e && ((*p >= '0' && *p <= '9') || *p == '-' || *p == '+' || *p == '.' ||
                         *p == 'e' || *p == 'E' || (*p >= 'a' && *p <= 'z')))
            p++;
        return p > s ? p : NULL;
    }
    }
}

/* A non-negative integer, or -1 if the value is anything else. */
static int64_t int_value(const char *p, const char *end)
{
    if (p >= end || *p < '0' || *p > '9')
        return -1;
    int64_t v = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (*p - '0');
    return v;
}

bool rb_msg_is(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return s && n == l && memcmp(s, lit, l) == 0;
}

int rb_msg_scan(const char *p, size_t n, struct rb_msg *m)
{
    const char *e = p + n;
    memset(m, 0, sizeof(*m));
    m->client_id = m->msg_id = m->last_msg_id = m->s = m->q = m->t = -1;
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
        const char *ve = skip_value(v, e, 0);
        if (!ve)
            return -1;
        bool str = *v == '"';
        /* Dispatch on length first: most keys are rejected by one comparison. */
        switch (kl) {
        case 1:
            if (*k == 's')
                m->s = int_value(v, ve);
            else if (*k == 'q')
                m->q = int_value(v, ve);
            else if (*k == 't')
                m->t = int_value(v, ve);
            break;
        case 4:
            if (str && memcmp(k, "type", 4) == 0) {
                m->type = v + 1;
                m->type_len = (size_t)(ve - v - 2);
            } else if (str && memcmp(k, "room", 4) == 0) {
                m->room = v + 1;
                m->room_len = (size_t)(ve - v - 2);
            } else if (str && memcmp(k, "code", 4) == 0) {
                m->code = v + 1;
                m->code_len = (size_t)(ve - v - 2);
            }
            break;
        case 6:
            if (memcmp(k, "msg_id", 6) == 0)
                m->msg_id = int_value(v, ve);
            break;
        case 9:
            if (memcmp(k, "client_id", 9) == 0)
                m->client_id = int_value(v, ve);
            break;
        case 11:
            if (memcmp(k, "last_msg_id", 11) == 0)
                m->last_msg_id = int_value(v, ve);
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

size_t rb_msg_publish(char *dst, size_t cap, size_t size, uint32_t s, uint64_t q, uint64_t t)
{
    /* {"type":"b","s":S,"q":Q,"t":T,"p":"xxxx"}: the padding makes the text exactly `size`
     * bytes long when size allows it, so "100-byte messages" means 100 bytes of JSON. */
    char head[96], *d = head;
    d = put_str(d, "{\"type\":\"b\",\"s\":");
    d = put_u64(d, s);
    d = put_str(d, ",\"q\":");
    d = put_u64(d, q);
    d = put_str(d, ",\"t\":");
    d = put_u64(d, t);
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
    char *d = dst;
    if (strlen(room) + 32 > cap)
        return 0;
    d = put_str(d, "{\"type\":\"join\",\"room\":\"");
    d = put_str(d, room);
    d = put_str(d, "\"}");
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
