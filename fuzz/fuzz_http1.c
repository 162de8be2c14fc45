/* fuzz_http1.c — libFuzzer target for src/codec/http1.c.
 *
 * The input is a request head as a client might send it. Checked on every input:
 *   - the whole-buffer answer is one of the documented values, and on success every returned
 *     string lies inside the head and has the shape the grammar promises (token method and
 *     names, trimmed values without CTLs other than HTAB, version digit);
 *   - feeding the same bytes as a growing buffer, in pseudo-random steps derived from the
 *     input, with *scanned carried between calls, gives INCOMPLETE until the head is complete
 *     and then exactly the whole-buffer answer and fields, never rescanning more than 3 bytes;
 *   - rc_http_find_header and rc_http_has_token agree with straightforward reimplementations.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool inside(const char *buf, size_t head, const char *p, size_t n)
{
    return p >= buf && p <= buf + head && (size_t)(buf + head - p) >= n;
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static bool caseeq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn) return false;
    for (size_t i = 0; i < an; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return false;
    return true;
}

/* ref_has_token: split on commas, trim SP/HTAB, compare. */
static bool ref_has_token(const char *v, size_t n, const char *tok)
{
    size_t tn = strlen(tok), start = 0;
    if (tn == 0) return false;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && v[i] != ',') continue;
        size_t a = start, z = i;
        while (a < z && (v[a] == ' ' || v[a] == '\t')) a++;
        while (z > a && (v[z - 1] == ' ' || v[z - 1] == '\t')) z--;
        if (caseeq(v + a, z - a, tok, tn)) return true;
        start = i + 1;
    }
    return false;
}

static void check_request(const char *buf, int head, const rc_http_request *r)
{
    size_t h = (size_t)head;
    if (!inside(buf, h, r->method, r->method_len) || !inside(buf, h, r->target, r->target_len))
        abort();
    if (r->method_len == 0 || r->target_len == 0) abort();
    for (size_t i = 0; i < r->method_len; i++)
        if (!is_tchar((unsigned char)r->method[i])) abort();
    for (size_t i = 0; i < r->target_len; i++) {
        unsigned char c = (unsigned char)r->target[i];
        if (c <= 0x20 || c == 0x7F) abort();
    }
    if (r->minor_version < 0 || r->minor_version > 9) abort();
    if (r->num_headers > RC_HTTP_MAX_HEADERS) abort();
    for (size_t i = 0; i < r->num_headers; i++) {
        const rc_http_header *x = &r->headers[i];
        if (!inside(buf, h, x->name, x->name_len) || !inside(buf, h, x->value, x->value_len))
            abort();
        if (x->name_len == 0) abort();
        for (size_t k = 0; k < x->name_len; k++)
            if (!is_tchar((unsigned char)x->name[k])) abort();
        if (x->name + x->name_len >= buf + h || x->name[x->name_len] != ':') abort();
        for (size_t k = 0; k < x->value_len; k++) {
            unsigned char c = (unsigned char)x->value[k];
            if ((c < 0x20 && c != '\t') || c == 0x7F) abort();
        }
        if (x->value_len) {
            char a = x->value[0], z = x->value[x->value_len - 1];
            if (a == ' ' || a == '\t' || z == ' ' || z == '\t') abort();
        }
        /* find_header returns the first header with this name */
        char name[64];
        if (x->name_len < sizeof name) {
            memcpy(name, x->name, x->name_len);
            name[x->name_len] = '\0';
            const rc_http_header *f = rc_http_find_header(r, name);
            if (!f || f > x || !caseeq(f->name, f->name_len, name, x->name_len)) abort();
        }
        static const char *const toks[] = {"upgrade", "keep-alive", "websocket", "a", "13"};
        for (size_t t = 0; t < sizeof toks / sizeof toks[0]; t++)
            if (rc_http_has_token(x->value, x->value_len, toks[t]) !=
                ref_has_token(x->value, x->value_len, toks[t]))
                abort();
    }
}

static bool same(const char *abuf, const rc_http_request *a, const char *bbuf,
                 const rc_http_request *b)
{
#define SAME(pa, na, pb, nb) ((na) == (nb) && (pa) - abuf == (pb) - bbuf)
    if (!SAME(a->method, a->method_len, b->method, b->method_len)) return false;
    if (!SAME(a->target, a->target_len, b->target, b->target_len)) return false;
    if (a->minor_version != b->minor_version || a->num_headers != b->num_headers) return false;
    for (size_t i = 0; i < a->num_headers; i++) {
        const rc_http_header *x = &a->headers[i], *y = &b->headers[i];
        if (!SAME(x->name, x->name_len, y->name, y->name_len)) return false;
        if (!SAME(x->value, x->value_len, y->value, y->value_len)) return false;
    }
#undef SAME
    return true;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Both requests are big (64 headers); static keeps them off the fuzzer's stack. */
static rc_http_request whole_req, part_req;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1); /* exact size: ASan sees any over-read */
    if (!buf) return 0;
    memcpy(buf, data, size);

    size_t scanned = 0;
    int whole = rc_http_parse_request(buf, size, &scanned, &whole_req);
    if (whole != RC_HTTP_INCOMPLETE && whole != RC_HTTP_EBAD && whole != RC_HTTP_ETOOMANY &&
        !(whole > 0 && (size_t)whole <= size))
        abort();
    if (whole == RC_HTTP_INCOMPLETE && (scanned > size || (size >= 3 && scanned < size - 3)))
        abort();
    if (whole > 0) check_request(buf, whole, &whole_req);

    uint64_t seed = 0x9E3779B97F4A7C15ull ^ size;
    for (size_t i = 0; i < size && i < 32; i++) seed = seed * 131 + (unsigned char)buf[i];
    if (seed == 0) seed = 1;

    for (int rep = 0; rep < 2; rep++) {
        size_t len = 0, maxstep = rep == 0 ? 3 : 64;
        int r;
        scanned = 0;
        for (;;) {
            r = rc_http_parse_request(buf, len, &scanned, &part_req);
            if (r != RC_HTTP_INCOMPLETE) break;
            if (scanned > len || (len >= 3 && scanned < len - 3)) abort();
            if (len == size) break;
            len += 1 + (size_t)(rng_next(&seed) % maxstep);
            if (len > size) len = size;
        }
        if (r != whole) abort();
        if (whole > 0 && !same(buf, &whole_req, buf, &part_req)) abort();
    }

    free(buf);
    return 0;
}
