/* test_http1.c — tests for src/codec/http1.c: a real upgrade request field by field, line-end
 * and blank-line leniency, a table of malformed heads, the header limit, and resumption:
 * every head, valid or not, is also fed as a growing buffer split at every point and in random
 * steps, and must give exactly the whole-buffer answer once complete and INCOMPLETE before.
 */
#include "unit.h"

#include "codec/http1.h"

#include <stdint.h>

static const char upgrade_req[] =
    "GET /ws?room=lobby HTTP/1.1\r\n"
    "Host: example.com:8080\r\n"
    "Upgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "User-Agent:   Mozilla/5.0 (X11; Linux x86_64)  \t \r\n"
    "X-Empty:\r\n"
    "X-Spaces:    \r\n"
    "\r\n";

static int parse(const char *s, size_t n, rc_http_request *req)
{
    size_t scanned = 0;
    return rc_http_parse_request(s, n, &scanned, req);
}

static bool str_is(const char *p, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(p, want, n) == 0;
}

/* pointers_inside checks that every string the parser returned lies in buf[0..head). */
static bool pointers_inside(const char *buf, int head, const rc_http_request *r)
{
    const char *end = buf + head;
#define INSIDE(p, n) ((p) >= buf && (p) <= end && (size_t)(end - (p)) >= (n))
    if (!INSIDE(r->method, r->method_len) || !INSIDE(r->target, r->target_len)) return false;
    if (r->num_headers > RC_HTTP_MAX_HEADERS) return false;
    for (size_t i = 0; i < r->num_headers; i++) {
        const rc_http_header *h = &r->headers[i];
        if (!INSIDE(h->name, h->name_len) || !INSIDE(h->value, h->value_len)) return false;
    }
#undef INSIDE
    return true;
}

/* same_request compares two parses of (possibly different copies of) the same head. */
static bool same_request(const char *a_buf, const rc_http_request *a, const char *b_buf,
                         const rc_http_request *b)
{
#define SAME(pa, na, pb, nb) ((na) == (nb) && (pa) - a_buf == (pb) - b_buf)
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

/* check_resumption feeds s[0..n) as a buffer growing one byte at a time, then in random
 * steps, with one *scanned per request, and checks every answer against the whole-buffer one:
 * INCOMPLETE while the head is not all there, then the same result (and fields) as a one-shot
 * parse. The growing buffer is a separate heap copy so ASan catches reads past its end. */
static bool check_resumption(const char *s, size_t n)
{
    rc_http_request whole, part;
    int want = parse(s, n, &whole);
    if (want > 0 && !pointers_inside(s, want, &whole)) return false;
    char *buf = malloc(n ? n : 1);
    memcpy(buf, s, n);
    bool ok = true;
    for (int mode = 0; mode < 4 && ok; mode++) {
        size_t scanned = 0, len = 0;
        int r = RC_HTTP_INCOMPLETE;
        for (;;) {
            r = rc_http_parse_request(buf, len, &scanned, &part);
            if (r != RC_HTTP_INCOMPLETE) break;
            if (scanned > len) ok = false;
            if (len >= 3 && scanned < len - 3) ok = false; /* rescans at most 3 bytes */
            if (len == n) break;
            size_t step = mode == 0 ? 1 : 1 + (size_t)(unit_rand() % (mode == 1 ? 4 : 40));
            len = len + step > n ? n : len + step;
        }
        if (r != want) ok = false;
        if (want > 0 && (size_t)want != len && mode == 0) ok = false; /* answered at the end */
        if (want > 0 && ok && !same_request(s, &whole, buf, &part)) ok = false;
    }
    /* every split into two pieces, i.e. a first call on a prefix and a second on all of it */
    for (size_t k = 0; k <= n && ok; k++) {
        size_t scanned = 0;
        int r = rc_http_parse_request(buf, k, &scanned, &part);
        if (r == RC_HTTP_INCOMPLETE) r = rc_http_parse_request(buf, n, &scanned, &part);
        else if (want == RC_HTTP_INCOMPLETE) ok = false;
        if (r != want) ok = false;
    }
    free(buf);
    return ok;
}

TEST(test_upgrade_request)
{
    rc_http_request r;
    size_t n = sizeof upgrade_req - 1;
    CHECK_EQ_INT(parse(upgrade_req, n, &r), n);
    CHECK(str_is(r.method, r.method_len, "GET"));
    CHECK(str_is(r.target, r.target_len, "/ws?room=lobby"));
    CHECK_EQ_INT(r.minor_version, 1);
    CHECK_EQ_INT(r.num_headers, 9);
    CHECK(str_is(r.headers[0].name, r.headers[0].name_len, "Host"));
    CHECK(str_is(r.headers[0].value, r.headers[0].value_len, "example.com:8080"));
    const rc_http_header *h = rc_http_find_header(&r, "upgrade");
    CHECK(h != NULL);
    CHECK(str_is(h->value, h->value_len, "websocket"));
    CHECK(rc_http_has_token(h->value, h->value_len, "WebSocket"));
    h = rc_http_find_header(&r, "CONNECTION");
    CHECK(h != NULL);
    CHECK(rc_http_has_token(h->value, h->value_len, "upgrade"));
    CHECK(rc_http_has_token(h->value, h->value_len, "keep-alive"));
    CHECK(!rc_http_has_token(h->value, h->value_len, "close"));
    h = rc_http_find_header(&r, "sec-websocket-key");
    CHECK(h != NULL);
    CHECK(str_is(h->value, h->value_len, "dGhlIHNhbXBsZSBub25jZQ=="));
    h = rc_http_find_header(&r, "User-Agent");
    CHECK(h != NULL);
    CHECK(str_is(h->value, h->value_len, "Mozilla/5.0 (X11; Linux x86_64)"));
    h = rc_http_find_header(&r, "x-empty");
    CHECK(h != NULL);
    CHECK_EQ_INT(h->value_len, 0);
    h = rc_http_find_header(&r, "X-Spaces");
    CHECK(h != NULL);
    CHECK_EQ_INT(h->value_len, 0);
    CHECK(rc_http_find_header(&r, "Sec-WebSocket-Protocol") == NULL);
    CHECK(rc_http_find_header(&r, "Hos") == NULL);
    CHECK(rc_http_find_header(&r, "Hostx") == NULL);
    CHECK(pointers_inside(upgrade_req, (int)n, &r));
    CHECK(check_resumption(upgrade_req, n));
}

TEST(test_body_after_head)
{
    static const char s[] = "POST /api/rooms HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    rc_http_request r;
    CHECK_EQ_INT(parse(s, sizeof s - 1, &r), sizeof s - 1 - 5);
    CHECK(str_is(r.method, r.method_len, "POST"));
    CHECK_EQ_INT(r.num_headers, 1);
    /* a body that itself looks like a head does not move the end */
    static const char s2[] = "GET / HTTP/1.1\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    CHECK_EQ_INT(parse(s2, sizeof s2 - 1, &r), 18);
    CHECK_EQ_INT(r.num_headers, 0);
    CHECK(check_resumption(s, sizeof s - 1));
    CHECK(check_resumption(s2, sizeof s2 - 1));
}

struct http_case {
    const char *name;
    const char *text;
    size_t len;     /* from sizeof, so texts may contain NULs */
    int result;     /* valid heads: the minor version; others: the RC_HTTP_* code */
};

#define HC(name, s, result) {name, s, sizeof(s) - 1, result}

static const struct http_case ok_cases[] = {
    HC("minimal", "GET / HTTP/1.1\r\n\r\n", 1),
    HC("http/1.0", "GET / HTTP/1.0\r\n\r\n", 0),
    HC("http/1.2", "GET / HTTP/1.2\r\n\r\n", 2),
    HC("http/1.9", "GET / HTTP/1.9\r\n\r\n", 9),
    HC("bare LF", "GET / HTTP/1.1\nHost: a\nX: y\n\n", 1),
    HC("mixed 1", "GET / HTTP/1.1\r\nHost: a\n\r\n", 1),
    HC("mixed 2", "GET / HTTP/1.1\nHost: a\r\n\n", 1),
    HC("mixed 3", "GET / HTTP/1.1\n\r\n", 1),
    HC("leading CRLF", "\r\nGET / HTTP/1.1\r\n\r\n", 1),
    HC("leading LF", "\nGET / HTTP/1.1\r\n\r\n", 1),
    HC("many leading", "\r\n\n\r\n\r\n\nGET / HTTP/1.1\r\nA: b\r\n\r\n", 1),
    HC("tchar method", "M-S.E_A~R!C#H$%&'*+^`| * HTTP/1.1\r\n\r\n", 1),
    HC("absolute target", "GET http://h:1/p?q=%20#f HTTP/1.1\r\n\r\n", 1),
    HC("asterisk target", "OPTIONS * HTTP/1.1\r\n\r\n", 1),
    HC("obs-text target", "GET /caf\xC3\xA9 HTTP/1.1\r\n\r\n", 1),
    HC("tab in value", "GET / HTTP/1.1\r\nA: x\ty\r\n\r\n", 1),
    HC("obs-text value", "GET / HTTP/1.1\r\nA: \x80\xFF caf\xC3\xA9\r\n\r\n", 1),
    HC("no space after colon", "GET / HTTP/1.1\r\nA:b\r\n\r\n", 1),
    HC("tab after colon", "GET / HTTP/1.1\r\nA:\tb\t\r\n\r\n", 1),
    HC("delimiters in value", "GET / HTTP/1.1\r\nA: \"(),/:;<=>?@[\\]{}\r\n\r\n", 1),
    HC("duplicate headers", "GET / HTTP/1.1\r\nA: 1\r\na: 2\r\n\r\n", 1),
};

TEST(test_valid_heads)
{
    for (size_t i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++) {
        const struct http_case *c = &ok_cases[i];
        size_t n = c->len;
        rc_http_request r;
        int got = parse(c->text, n, &r);
        if (got != (int)n) fprintf(stderr, "case: %s\n", c->name);
        CHECK_EQ_INT(got, n);
        CHECK_EQ_INT(r.minor_version, c->result);
        CHECK(pointers_inside(c->text, got, &r));
        if (!check_resumption(c->text, n)) fprintf(stderr, "case: %s\n", c->name);
        CHECK(check_resumption(c->text, n));
    }
}

TEST(test_field_details)
{
    rc_http_request r;
    static const char s[] = "\r\n\nPUT  HTTP/1.1\r\n\r\n";
    CHECK_EQ_INT(parse(s, sizeof s - 1, &r), RC_HTTP_EBAD); /* empty target */
    static const char s2[] = "\r\n\nM-S * HTTP/1.1\nA: \x80\xFF\n\n";
    CHECK_EQ_INT(parse(s2, sizeof s2 - 1, &r), sizeof s2 - 1);
    CHECK(str_is(r.method, r.method_len, "M-S"));
    CHECK(str_is(r.target, r.target_len, "*"));
    CHECK(str_is(r.headers[0].name, r.headers[0].name_len, "A"));
    CHECK(str_is(r.headers[0].value, r.headers[0].value_len, "\x80\xFF"));
    static const char s3[] = "GET / HTTP/1.1\r\nA:\tx\ty \t\r\nB:b\r\n\r\n";
    CHECK_EQ_INT(parse(s3, sizeof s3 - 1, &r), sizeof s3 - 1);
    CHECK_EQ_INT(r.num_headers, 2);
    CHECK(str_is(r.headers[0].value, r.headers[0].value_len, "x\ty"));
    CHECK(str_is(r.headers[1].value, r.headers[1].value_len, "b"));
    const rc_http_header *h = rc_http_find_header(&r, "b");
    CHECK(h == &r.headers[1]);
    static const char s4[] = "GET / HTTP/1.1\r\nA: 1\r\na: 2\r\n\r\n";
    CHECK_EQ_INT(parse(s4, sizeof s4 - 1, &r), sizeof s4 - 1);
    CHECK(rc_http_find_header(&r, "a") == &r.headers[0]); /* the first one */
}

static const struct http_case bad_cases[] = {
    HC("empty request line", "\r\n\r\n\r\nX", RC_HTTP_INCOMPLETE),
    HC("lone CR", "\r", RC_HTTP_INCOMPLETE),
    HC("no version", "GET /\r\n\r\n", RC_HTTP_EBAD),
    HC("no target", "GET HTTP/1.1\r\n\r\n", RC_HTTP_EBAD),
    HC("empty method", " / HTTP/1.1\r\n\r\n", RC_HTTP_EBAD),
    HC("two spaces after method", "GET  / HTTP/1.1\r\n\r\n", RC_HTTP_EBAD),
    HC("two spaces after target", "GET /  HTTP/1.1\r\n\r\n", RC_HTTP_EBAD),
    HC("tab separator", "GET\t/ HTTP/1.1\r\n\r\n", RC_HTTP_EBAD),
    HC("trailing space", "GET / HTTP/1.1 \r\n\r\n", RC_HTTP_EBAD),
    HC("bad method char", "G(T / HTTP/1.1\r\n\r\n", RC_HTTP_EBAD),
    HC("method with slash", "GE/T / HTTP/1.1\r\n\r\n", RC_HTTP_EBAD),
    HC("leading space", " GET / HTTP/1.1\r\n\r\n", RC_HTTP_EBAD),
    HC("nul in method", "GE\0T / HTTP/1.1\r\n\r\n", RC_HTTP_EBAD),
    HC("ctl in target", "GET /a\x01 HTTP/1.1\r\n\r\n", RC_HTTP_EBAD),
    HC("del in target", "GET /a\x7F HTTP/1.1\r\n\r\n", RC_HTTP_EBAD),
    HC("nul in target", "GET /\0 HTTP/1.1\r\n\r\n", RC_HTTP_EBAD),
    HC("http/2.0", "GET / HTTP/2.0\r\n\r\n", RC_HTTP_EBAD),
    HC("http/1.", "GET / HTTP/1.\r\n\r\n", RC_HTTP_EBAD),
    HC("http/1.x", "GET / HTTP/1.x\r\n\r\n", RC_HTTP_EBAD),
    HC("http/1.10", "GET / HTTP/1.10\r\n\r\n", RC_HTTP_EBAD),
    HC("http/1", "GET / HTTP/1\r\n\r\n", RC_HTTP_EBAD),
    HC("http/1.:", "GET / HTTP/1.:\r\n\r\n", RC_HTTP_EBAD),
    HC("http/1./", "GET / HTTP/1./\r\n\r\n", RC_HTTP_EBAD),
    HC("http/11", "GET / HTTP/11\r\n\r\n", RC_HTTP_EBAD),
    HC("lowercase http", "GET / http/1.1\r\n\r\n", RC_HTTP_EBAD),
    HC("garbage version", "GET / XYZZY\r\n\r\n", RC_HTTP_EBAD),
    HC("http/0.9 style", "GET /\n\n", RC_HTTP_EBAD),
    HC("CR in request line", "GET /\r HTTP/1.1\r\n\r\n", RC_HTTP_EBAD),
    HC("CR CR LF", "GET / HTTP/1.1\r\r\n\r\n", RC_HTTP_EBAD),
    HC("tls client hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n", RC_HTTP_EBAD),
    HC("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", RC_HTTP_EBAD),
    HC("tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", RC_HTTP_EBAD),
    HC("no colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n", RC_HTTP_EBAD),
    HC("empty name", "GET / HTTP/1.1\r\n: a\r\n\r\n", RC_HTTP_EBAD),
    HC("bad name char", "GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", RC_HTTP_EBAD),
    HC("obs-text name", "GET / HTTP/1.1\r\nH\xC3\xA9: a\r\n\r\n", RC_HTTP_EBAD),
    HC("obs-fold SP", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", RC_HTTP_EBAD),
    HC("obs-fold HTAB", "GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n", RC_HTTP_EBAD),
    HC("space first header", "GET / HTTP/1.1\r\n A: b\r\n\r\n", RC_HTTP_EBAD),
    HC("nul in value", "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n", RC_HTTP_EBAD),
    HC("ctl in value", "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", RC_HTTP_EBAD),
    HC("del in value", "GET / HTTP/1.1\r\nA: b\x7F\r\n\r\n", RC_HTTP_EBAD),
    HC("esc in value", "GET / HTTP/1.1\r\nA: \x1B[0m\r\n\r\n", RC_HTTP_EBAD),
    HC("bare CR in value", "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", RC_HTTP_EBAD),
    HC("CR end of value", "GET / HTTP/1.1\r\nA: b\r\r\n\r\n", RC_HTTP_EBAD),
    HC("bare CR line", "GET / HTTP/1.1\r\n\rA: b\r\n\r\n", RC_HTTP_EBAD),
    HC("no blank line yet", "GET / HTTP/1.1\r\nHost: a\r\n", RC_HTTP_INCOMPLETE),
    HC("CR only blank", "GET / HTTP/1.1\r\n\r", RC_HTTP_INCOMPLETE),
    HC("nul in name", "GET / HTTP/1.1\r\nA\0: b\r\n\r\n", RC_HTTP_EBAD),
    HC("nul line", "GET / HTTP/1.1\r\nA: b\r\n\0\r\n\r\n", RC_HTTP_EBAD),
    HC("nul first", "\0\r\n\r\n", RC_HTTP_EBAD),
    HC("del in name", "GET / HTTP/1.1\r\nA\x7F: b\r\n\r\n", RC_HTTP_EBAD),
    HC("nothing", "", RC_HTTP_INCOMPLETE),
};

TEST(test_malformed_heads)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct http_case *c = &bad_cases[i];
        rc_http_request r;
        int got = parse(c->text, c->len, &r);
        if (got != c->result || !check_resumption(c->text, c->len))
            fprintf(stderr, "case: %s\n", c->name);
        CHECK_EQ_INT(got, c->result);
        CHECK(check_resumption(c->text, c->len));
    }
}

/* build_headers writes a request with count headers into buf and returns its length. */
static size_t build_headers(char *buf, size_t cap, int count)
{
    size_t n = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < count; i++) n += (size_t)snprintf(buf + n, cap - n, "H%d: v%d\r\n", i, i);
    n += (size_t)snprintf(buf + n, cap - n, "\r\n");
    return n;
}

TEST(test_too_many_headers)
{
    static char buf[8192];
    rc_http_request r;
    size_t n = build_headers(buf, sizeof buf, RC_HTTP_MAX_HEADERS);
    CHECK_EQ_INT(parse(buf, n, &r), n);
    CHECK_EQ_INT(r.num_headers, RC_HTTP_MAX_HEADERS);
    CHECK(str_is(r.headers[63].name, r.headers[63].name_len, "H63"));
    CHECK(str_is(r.headers[63].value, r.headers[63].value_len, "v63"));
    CHECK(check_resumption(buf, n));
    n = build_headers(buf, sizeof buf, RC_HTTP_MAX_HEADERS + 1);
    CHECK_EQ_INT(parse(buf, n, &r), RC_HTTP_ETOOMANY);
    CHECK(check_resumption(buf, n));
    n = build_headers(buf, sizeof buf, 200);
    CHECK_EQ_INT(parse(buf, n, &r), RC_HTTP_ETOOMANY);
}

TEST(test_has_token)
{
    static const struct {
        const char *value;
        const char *token;
        bool want;
    } cases[] = {
        {"Upgrade", "upgrade", true},
        {"keep-alive, Upgrade", "upgrade", true},
        {"keep-alive,Upgrade", "UPGRADE", true},
        {"Upgrade, keep-alive", "keep-alive", true},
        {" \tUpgrade\t , x", "upgrade", true},
        {",,upgrade,,", "upgrade", true},
        {"upgraded", "upgrade", false},
        {"xupgrade", "upgrade", false},
        {"upgrade-x, y", "upgrade", false},
        {"up grade", "upgrade", false},
        {"", "upgrade", false},
        {",", "upgrade", false},
        {"keep-alive", "upgrade", false},
        {"a, b, c", "c", true},
        {"a, b, c ", "c", true},
        {"a, b, cc", "c", false},
        {"a,,", "", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool got = rc_http_has_token(cases[i].value, strlen(cases[i].value), cases[i].token);
        if (got != cases[i].want) fprintf(stderr, "value '%s'\n", cases[i].value);
        CHECK_EQ_INT(got, cases[i].want);
    }
    /* only the first len bytes count */
    CHECK(!rc_http_has_token("keep-alive, upgrade", 10, "upgrade"));
    CHECK(rc_http_has_token("keep-alive, upgrade", 10, "keep-alive"));
    CHECK(!rc_http_has_token(NULL, 0, "x"));
}

/* Random damage to a real request, with bytes the grammar cares about, must never break the
 * resumption contract or put a pointer outside the head. */
TEST(test_random_mutations)
{
    static const char alphabet[] = "\r\n\r\n \t:\0\x7F\x80\xFF" "aZ/,";
    char buf[sizeof upgrade_req + 8];
    size_t base = sizeof upgrade_req - 1;
    int counts[4] = {0};
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = base;
        memcpy(buf, upgrade_req, n);
        int edits = 1 + (int)(unit_rand() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)(unit_rand() % n);
            char c = alphabet[unit_rand() % (sizeof alphabet - 1)];
            switch (unit_rand() % 3) {
            case 0: buf[at] = c; break;
            case 1: /* delete */
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default: /* insert */
                if (n < sizeof buf) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = c;
                    n++;
                }
            }
        }
        rc_http_request r;
        int got = parse(buf, n, &r);
        counts[got > 0 ? 0 : -got]++;
        if (got > 0) CHECK(pointers_inside(buf, got, &r));
        CHECK(check_resumption(buf, n));
    }
    /* the mutations reach every outcome (ETOOMANY is not reachable from 9 headers) */
    CHECK(counts[0] > 0 && counts[-RC_HTTP_EBAD] > 0 && counts[-RC_HTTP_INCOMPLETE] > 0);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(test_upgrade_request);
    RUN(test_body_after_head);
    RUN(test_valid_heads);
    RUN(test_field_details);
    RUN(test_malformed_heads);
    RUN(test_too_many_headers);
    RUN(test_has_token);
    RUN(test_random_mutations);
    UNIT_MAIN_END("test_http1");
}
