/* clwire.c — the cluster's URL, names and channel message; see clwire.h. */
#include "cluster/clwire.h"

#include <stdio.h>
#include <string.h>

int rc_clwire_u64(const char *s, size_t n, uint64_t *v)
{
    if (n == 0 || n > 20 || (n > 1 && s[0] == '0')) return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10) return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* pct_copy percent-decodes s[0..n) into out (cap bytes with the NUL). 0 or -1. */
static int pct_copy(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n) return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0' || o + 1 >= cap) return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

static const char *find(const char *s, const char *end, char c)
{
    const char *p = memchr(s, c, (size_t)(end - s));
    return p ? p : end;
}

/* parse_auth takes "[user]:password@" off the front of [*s, end). For TCP the credentials are
 * whatever precedes the last '@' before the first '/'; for unix the path starts with '/', so
 * credentials are present only when it does not, and end at the first "@/". */
static int parse_auth(const char **s, const char *end, rc_clwire_url *u, const char **why)
{
    const char *at = NULL;
    if (u->is_unix) {
        if (*s < end && **s == '/') return 0;
        for (const char *p = *s; p + 1 < end && !at; p++)
            if (p[0] == '@' && p[1] == '/') at = p;
    } else {
        for (const char *p = *s; p < end && *p != '/'; p++)
            if (*p == '@') at = p;
    }
    if (!at) return 0;
    const char *colon = find(*s, at, ':');
    if (colon == at) {
        *why = "the credentials before '@' need a ':' before the password";
        return -1;
    }
    if (pct_copy(u->user, sizeof(u->user), *s, (size_t)(colon - *s)) < 0 ||
        pct_copy(u->pass, sizeof(u->pass), colon + 1, (size_t)(at - colon - 1)) < 0) {
        *why = "bad user or password (too long, a NUL, or a broken %XX escape)";
        return -1;
    }
    u->has_pass = true;
    *s = at + 1;
    return 0;
}

static int parse_db(const char *s, size_t n, rc_clwire_url *u, const char **why)
{
    uint64_t v;
    if (rc_clwire_u64(s, n, &v) < 0 || v > 1000000) {
        *why = "the database must be a number";
        return -1;
    }
    u->db = (uint32_t)v;
    return 0;
}

int rc_clwire_url_parse(const char *s, size_t n, rc_clwire_url *u, const char **why)
{
    static const char tcp[] = "redis://", unx[] = "unix://";
    const char *end = s + n;
    memset(u, 0, sizeof(*u));
    *why = NULL;
    if (n >= sizeof(tcp) - 1 && memcmp(s, tcp, sizeof(tcp) - 1) == 0) {
        s += sizeof(tcp) - 1;
    } else if (n >= sizeof(unx) - 1 && memcmp(s, unx, sizeof(unx) - 1) == 0) {
        s += sizeof(unx) - 1;
        u->is_unix = true;
    } else {
        *why = "the URL must start with redis:// or unix://";
        return -1;
    }
    if (parse_auth(&s, end, u, why) < 0) return -1;

    if (u->is_unix) {
        const char *q = find(s, end, '?');
        if (q == s || *s != '/') {
            *why = "unix:// needs an absolute socket path (unix:///path)";
            return -1;
        }
        if ((size_t)(q - s) > RC_CLWIRE_PATH_MAX || memchr(s, '\0', (size_t)(q - s))) {
            *why = "the socket path is too long";
            return -1;
        }
        memcpy(u->path, s, (size_t)(q - s));
        u->path[q - s] = '\0';
        if (q < end) {
            if ((size_t)(end - q) < 4 || memcmp(q, "?db=", 4) != 0) {
                *why = "the only unix:// option is ?db=N";
                return -1;
            }
            return parse_db(q + 4, (size_t)(end - q - 4), u, why);
        }
        return 0;
    }

    const char *slash = find(s, end, '/');
    const char *host = s, *host_end, *port_at = NULL;
    if (s < slash && *s == '[') {
        host = s + 1;
        host_end = find(host, slash, ']');
        if (host_end == slash) {
            *why = "an IPv6 address needs its closing ']'";
            return -1;
        }
        if (host_end + 1 < slash) {
            if (host_end[1] != ':') {
                *why = "only ':port' may follow ']'";
                return -1;
            }
            port_at = host_end + 2;
        }
    } else {
        host_end = find(s, slash, ':');
        if (host_end < slash) port_at = host_end + 1;
    }
    size_t hl = (size_t)(host_end - host);
    if (hl == 0 || hl > RC_CLWIRE_HOST_MAX) {
        *why = hl ? "the host name is too long" : "the URL has no host";
        return -1;
    }
    for (size_t i = 0; i < hl; i++) {
        char c = host[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':')) {
            *why = "the host has a character that no host name or address has";
            return -1;
        }
    }
    memcpy(u->host, host, hl);
    u->host[hl] = '\0';
    u->port = 6379;
    if (port_at) {
        uint64_t p;
        if (rc_clwire_u64(port_at, (size_t)(slash - port_at), &p) < 0 || p == 0 || p > 65535) {
            *why = "the port must be a number from 1 to 65535";
            return -1;
        }
        u->port = (uint16_t)p;
    }
    if (slash < end && slash + 1 < end) return parse_db(slash + 1, (size_t)(end - slash - 1), u, why);
    return 0;
}

size_t rc_clwire_url_describe(const rc_clwire_url *u, char *out, size_t cap)
{
    int n;
    if (u->is_unix) n = snprintf(out, cap, "unix://%s?db=%u", u->path, (unsigned)u->db);
    else if (strchr(u->host, ':'))
        n = snprintf(out, cap, "redis://[%s]:%u/%u", u->host, (unsigned)u->port, (unsigned)u->db);
    else n = snprintf(out, cap, "redis://%s:%u/%u", u->host, (unsigned)u->port, (unsigned)u->db);
    if (n < 0) return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* ---- names ------------------------------------------------------------------------------- */

typedef struct { char *p; size_t n, cap; bool over; } wbuf;

static void put(wbuf *w, const void *s, size_t n)
{
    if (w->over || n > w->cap - w->n) {
        w->over = true;
        return;
    }
    memcpy(w->p + w->n, s, n);
    w->n += n;
}

int rc_clwire_name(char *out, size_t cap, const char *prefix, enum rc_clwire_name kind,
                   const char *room, size_t room_len, const char *key, size_t key_len)
{
    static const char *const suffix[] = {"}:m", "}:s", "}:i:", "}:c", "}:k", "}:p"};
    wbuf w = {out, 0, cap, false};
    put(&w, prefix, strlen(prefix));
    put(&w, ":{", 2);
    put(&w, room, room_len);
    put(&w, suffix[kind], strlen(suffix[kind]));
    if (kind == RC_CLWIRE_IDEM) put(&w, key, key_len);
    return w.over ? -1 : (int)w.n;
}

int rc_clwire_channel_room(const char *ch, size_t n, const char *prefix, const char **room,
                           size_t *room_len)
{
    size_t pl = strlen(prefix);
    if (n < pl + 2 + 3 || memcmp(ch, prefix, pl) != 0 || ch[pl] != ':' || ch[pl + 1] != '{' ||
        memcmp(ch + n - 3, "}:c", 3) != 0)
        return -1;
    *room = ch + pl + 2;
    *room_len = n - pl - 2 - 3;
    return 0;
}

/* ---- the channel message ----------------------------------------------------------------- */

bool rc_clwire_epoch_ok(const char *e, size_t n)
{
    if (n == 0 || n > RC_CLWIRE_EPOCH_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = e[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

int rc_clwire_msg_decode(const char *p, size_t n, rc_clwire_msg *m)
{
    if (n < 3 || memcmp(p, "r1:", 3) != 0) return -1;
    const char *end = p + n, *id = p + 3;
    const char *c1 = memchr(id, ':', (size_t)(end - id));
    if (!c1) return -1;
    if (rc_clwire_u64(id, (size_t)(c1 - id), &m->msg_id) < 0 || m->msg_id == 0 ||
        m->msg_id > RC_CLWIRE_MSG_ID_MAX)
        return -1;
    const char *ep = c1 + 1;
    const char *c2 = memchr(ep, ':', (size_t)(end - ep));
    if (!c2 || !rc_clwire_epoch_ok(ep, (size_t)(c2 - ep))) return -1;
    m->epoch = ep;
    m->epoch_len = (size_t)(c2 - ep);
    m->payload = c2 + 1;
    m->payload_len = (size_t)(end - c2 - 1);
    return 0;
}

int rc_clwire_msg_encode(char *out, size_t cap, uint64_t msg_id, const char *epoch,
                         size_t epoch_len, const void *payload, size_t payload_len)
{
    char num[24];
    int nl = snprintf(num, sizeof(num), "%llu", (unsigned long long)msg_id);
    wbuf w = {out, 0, cap, false};
    put(&w, "r1:", 3);
    put(&w, num, (size_t)nl);
    put(&w, ":", 1);
    put(&w, epoch, epoch_len);
    put(&w, ":", 1);
    put(&w, payload, payload_len);
    return w.over ? -1 : (int)w.n;
}

/* ---- the batch form ---------------------------------------------------------------------- */

/* take_len reads "<len>:" at *at (before end) and the len bytes after it: on success *at is
 * past them and *pl and *plen name them. */
static int take_len(const char **at, const char *end, const char **pl, size_t *plen)
{
    const char *c = memchr(*at, ':', (size_t)(end - *at) < 21 ? (size_t)(end - *at) : 21);
    uint64_t len;
    if (!c || rc_clwire_u64(*at, (size_t)(c - *at), &len) < 0 ||
        len > (uint64_t)(end - c - 1))
        return -1;
    *pl = c + 1;
    *plen = (size_t)len;
    *at = c + 1 + len;
    return 0;
}

int rc_clwire_batch_decode(const char *p, size_t n, rc_clwire_batch *b)
{
    if (n < 3 || memcmp(p, "r2:", 3) != 0) return -1;
    const char *end = p + n, *at = p + 3;
    const char *c = memchr(at, ':', (size_t)(end - at));
    if (!c || rc_clwire_u64(at, (size_t)(c - at), &b->first) < 0 || b->first == 0) return -1;
    at = c + 1;
    c = memchr(at, ':', (size_t)(end - at));
    if (!c || rc_clwire_u64(at, (size_t)(c - at), &b->count) < 0 || b->count < 2 ||
        b->count > RC_CLWIRE_BATCH_MAX || b->first > RC_CLWIRE_MSG_ID_MAX - (b->count - 1))
        return -1;
    at = c + 1;
    c = memchr(at, ':', (size_t)(end - at));
    if (!c) return -1;
    return rc_clwire_batch_body(b, b->first, b->count, at, (size_t)(c - at), c + 1,
                                (size_t)(end - c - 1));
}

int rc_clwire_batch_body(rc_clwire_batch *b, uint64_t first, uint64_t count, const char *epoch,
                         size_t epoch_len, const char *body, size_t n)
{
    if (first == 0 || count < 2 || count > RC_CLWIRE_BATCH_MAX ||
        first > RC_CLWIRE_MSG_ID_MAX - (count - 1) || !rc_clwire_epoch_ok(epoch, epoch_len))
        return -1;
    b->first = first;
    b->count = count;
    b->epoch = epoch;
    b->epoch_len = epoch_len;
    const char *at = body, *end = body + n;
    b->at = at;
    b->end = end;
    b->next = 0;
    /* the whole body first, so that a bad batch is dropped whole, before any of it is used */
    for (uint64_t i = 0; i < count; i++) {
        const char *pl;
        size_t plen;
        if (take_len(&at, end, &pl, &plen) < 0) return -1;
    }
    return at == end ? 0 : -1;
}

int rc_clwire_batch_next(rc_clwire_batch *b, rc_clwire_msg *m)
{
    if (b->next >= b->count) return 0;
    const char *pl;
    size_t plen;
    if (take_len(&b->at, b->end, &pl, &plen) < 0) return 0; /* cannot be: decode checked */
    m->msg_id = b->first + b->next++;
    m->epoch = b->epoch;
    m->epoch_len = b->epoch_len;
    m->payload = pl;
    m->payload_len = plen;
    return 1;
}

int rc_clwire_batch_encode(char *out, size_t cap, uint64_t first, const char *epoch,
                           size_t epoch_len, const void *const *payloads, const size_t *lens,
                           size_t count)
{
    if (count < 2 || count > RC_CLWIRE_BATCH_MAX) return -1;
    char num[48];
    int nl = snprintf(num, sizeof(num), "r2:%llu:%zu:", (unsigned long long)first, count);
    wbuf w = {out, 0, cap, false};
    put(&w, num, (size_t)nl);
    put(&w, epoch, epoch_len);
    put(&w, ":", 1);
    for (size_t i = 0; i < count; i++) {
        nl = snprintf(num, sizeof(num), "%zu:", lens[i]);
        put(&w, num, (size_t)nl);
        put(&w, payloads[i], lens[i]);
    }
    return w.over ? -1 : (int)w.n;
}

/* ---- the presence event ------------------------------------------------------------------- */

int rc_clwire_pres_decode(const char *p, size_t n, rc_clwire_pres *e)
{
    if (n < 3 || memcmp(p, "p1:", 3) != 0) return -1;
    const char *end = p + n, *at = p + 3;
    const char *c = memchr(at, ':', (size_t)(end - at));
    if (!c || rc_clwire_u64(at, (size_t)(c - at), &e->version) < 0 || e->version == 0) return -1;
    at = c + 1;
    if (end - at < 2 || (at[0] != 'j' && at[0] != 'l') || at[1] != ':') return -1;
    e->join = at[0] == 'j';
    at += 2;
    c = memchr(at, ':', (size_t)(end - at));
    if (!c || rc_clwire_u64(at, (size_t)(c - at), &e->client_id) < 0) return -1;
    at = c + 1;
    c = memchr(at, ':', (size_t)(end - at));
    if (!c || c - at > RC_CLWIRE_NODE_MAX || !rc_clwire_epoch_ok(at, (size_t)(c - at))) return -1;
    e->node = at;
    e->node_len = (size_t)(c - at);
    e->info = c + 1;
    e->info_len = (size_t)(end - c - 1);
    return 0;
}

int rc_clwire_pres_encode(char *out, size_t cap, const rc_clwire_pres *e)
{
    char num[48];
    int nl = snprintf(num, sizeof(num), "%llu:%c:%llu:", (unsigned long long)e->version,
                      e->join ? 'j' : 'l', (unsigned long long)e->client_id);
    wbuf w = {out, 0, cap, false};
    put(&w, "p1:", 3);
    put(&w, num, (size_t)nl);
    put(&w, e->node, e->node_len);
    put(&w, ":", 1);
    put(&w, e->info, e->info_len);
    return w.over ? -1 : (int)w.n;
}
