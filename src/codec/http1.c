/* http1.c — HTTP/1.1 request heads (RFC 9112 §2-§5, field syntax from RFC 9110 §5), parsed in
 * place for the WebSocket upgrade and the small HTTP API.
 *
 * Work is split in two passes. The first only looks for the end of the head, with memchr over
 * the bytes not yet searched, so a head that trickles in costs O(total bytes) however it is
 * split. The second pass runs once, on a complete head, and is a plain left-to-right scan; it
 * never needs to resume, which keeps it simple and lets it trust that every line it meets
 * has a line end before the head's end (it still bounds-checks, cheaply, against the end).
 *
 * Leniency is limited to what RFC 9112 allows a server to accept: bare LF as a line end (§2.2)
 * and empty lines before the request line (§2.2, "SHOULD ignore at least one"; we ignore any
 * number, the caller's head-size limit bounds them). Everything that is known to enable
 * request smuggling or header confusion is rejected: whitespace before a colon (§5.1),
 * obs-fold (§5.2), a bare CR (§2.2), NUL and other control characters in values (RFC 9110
 * §5.5).
 */
#include "codec/http1.h"

#include <limits.h>
#include <string.h>

/* Character classes, one bit each, for the three places the grammar cares about. */
enum {
    C_TCHAR = 1,   /* token character (RFC 9110 §5.6.2): method, field name */
    C_TARGET = 2,  /* request-target: anything visible, obs-text allowed; no CTL, no SP */
    C_VALUE = 4,   /* field value: VCHAR, SP, HTAB, obs-text (RFC 9110 §5.5) */
};

#define T (C_TCHAR | C_TARGET | C_VALUE) /* visible and a tchar */
#define V (C_TARGET | C_VALUE)           /* visible, a delimiter: not a tchar */

/* Ranges do not overlap: gcc's -Woverride-init (in -Wextra) and clang's
 * -Winitializer-overrides would flag an entry written twice. */
static const unsigned char http_class[256] = {
    ['\t'] = C_VALUE,
    [' '] = C_VALUE,
    ['!'] = T,
    ['"'] = V,
    ['#' ... '\''] = T,   /* # $ % & ' */
    ['(' ... ')'] = V,
    ['*' ... '+'] = T,
    [','] = V,
    ['-' ... '.'] = T,
    ['/'] = V,
    ['0' ... '9'] = T,
    [':' ... '@'] = V,    /* : ; < = > ? @ */
    ['A' ... 'Z'] = T,
    ['[' ... ']'] = V,    /* [ \ ] */
    ['^' ... '`'] = T,    /* ^ _ ` */
    ['a' ... 'z'] = T,
    ['{'] = V,
    ['|'] = T,
    ['}'] = V,
    ['~'] = T,
    [0x80 ... 0xFF] = C_TARGET | C_VALUE, /* obs-text; 0x7F (DEL) is a CTL and stays 0 */
};

#undef T
#undef V

/* head_end returns the length of the head in b[0..len) — up to and including the empty line
 * that ends it — or 0 when it is not all here yet. The head ends at the first empty line that
 * follows a non-empty one; empty lines before the request line are skipped by the same test,
 * which only ever looks two bytes back and two ahead of each LF. That locality is what lets the
 * search resume: when it fails, only the last 3 bytes can start an end that more data would
 * complete (LF, LF CR), so *scanned moves to len - 3. */
static size_t head_end(const unsigned char *b, size_t len, size_t *scanned)
{
    size_t i = *scanned < len ? *scanned : len;

    while (i < len) {
        const unsigned char *lf = memchr(b + i, '\n', len - i);
        if (!lf) break;
        i = (size_t)(lf - b);
        bool line_empty = i == 0 || b[i - 1] == '\n' ||
                          (b[i - 1] == '\r' && (i == 1 || b[i - 2] == '\n'));
        if (!line_empty) {
            if (i + 1 >= len) break;
            if (b[i + 1] == '\n') return i + 2;
            if (b[i + 1] == '\r') {
                if (i + 2 >= len) break;
                if (b[i + 2] == '\n') return i + 3;
            }
        }
        i++;
    }
    *scanned = len > 3 ? len - 3 : 0;
    return 0;
}

/* eol returns the index just past the line end (CRLF or LF) at b[i], or 0 if there is none. */
static size_t eol(const unsigned char *b, size_t i, size_t end)
{
    if (i < end && b[i] == '\n') return i + 1;
    if (i + 1 < end && b[i] == '\r' && b[i + 1] == '\n') return i + 2;
    return 0;
}

static size_t skip_class(const unsigned char *b, size_t i, size_t end, unsigned char cls)
{
    while (i < end && (http_class[b[i]] & cls)) i++;
    return i;
}

static size_t skip_ows(const unsigned char *b, size_t i, size_t end)
{
    while (i < end && (b[i] == ' ' || b[i] == '\t')) i++;
    return i;
}

/* parse_head parses a complete head b[0..end) into req; returns 0 or an RC_HTTP_E* code. */
static int parse_head(const unsigned char *b, size_t end, rc_http_request *req)
{
    const char *s = (const char *)b;
    size_t i = 0, j;

    while ((j = eol(b, i, end)) != 0) i = j; /* empty lines before the request line */

    /* request-line = method SP request-target SP HTTP-version (RFC 9112 §3) */
    j = skip_class(b, i, end, C_TCHAR);
    if (j == i || j >= end || b[j] != ' ') return RC_HTTP_EBAD;
    req->method = s + i;
    req->method_len = j - i;
    i = j + 1;

    j = skip_class(b, i, end, C_TARGET);
    if (j == i || j >= end || b[j] != ' ') return RC_HTTP_EBAD;
    req->target = s + i;
    req->target_len = j - i;
    i = j + 1;

    if (end - i < 8 || memcmp(b + i, "HTTP/1.", 7) != 0 || b[i + 7] < '0' || b[i + 7] > '9')
        return RC_HTTP_EBAD;
    req->minor_version = b[i + 7] - '0';
    if ((i = eol(b, i + 8, end)) == 0) return RC_HTTP_EBAD;

    /* field-line = field-name ":" OWS field-value OWS (RFC 9112 §5) */
    req->num_headers = 0;
    for (;;) {
        if ((j = eol(b, i, end)) != 0) {
            i = j;
            break;
        }
        if (i >= end) return RC_HTTP_EBAD; /* cannot happen: head_end saw the empty line */
        if (req->num_headers == RC_HTTP_MAX_HEADERS) return RC_HTTP_ETOOMANY;

        j = skip_class(b, i, end, C_TCHAR);
        /* Also catches obs-fold (line starts with SP/HTAB: empty name), a bare CR, and
         * whitespace between name and colon. */
        if (j == i || j >= end || b[j] != ':') return RC_HTTP_EBAD;
        rc_http_header *h = &req->headers[req->num_headers];
        h->name = s + i;
        h->name_len = j - i;

        i = skip_ows(b, j + 1, end);
        j = skip_class(b, i, end, C_VALUE);
        size_t k = eol(b, j, end);
        if (k == 0) return RC_HTTP_EBAD; /* a CTL (NUL, bare CR, DEL...) inside the value */
        while (j > i && (b[j - 1] == ' ' || b[j - 1] == '\t')) j--;
        h->value = s + i;
        h->value_len = j - i;
        req->num_headers++;
        i = k;
    }
    return i == end ? 0 : RC_HTTP_EBAD;
}

int rc_http_parse_request(const char *buf, size_t len, size_t *scanned, rc_http_request *req)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t n = head_end(b, len, scanned);
    if (n == 0) return RC_HTTP_INCOMPLETE;
    if (n > INT_MAX) return RC_HTTP_EBAD; /* unreachable with any sane head-size limit */
    int rc = parse_head(b, n, req);
    return rc < 0 ? rc : (int)n;
}

static unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* ascii_caseeq compares without the locale: header names and tokens are ASCII by grammar, and
 * strncasecmp under a Turkish locale would fold 'I' differently. */
static bool ascii_caseeq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i])) return false;
    return true;
}

const rc_http_header *rc_http_find_header(const rc_http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->num_headers; i++) {
        const rc_http_header *h = &req->headers[i];
        if (h->name_len == n && ascii_caseeq(h->name, name, n)) return h;
    }
    return NULL;
}

bool rc_http_has_token(const char *value, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    if (tlen == 0 || len == 0) return false;

    size_t i = 0;
    for (;;) {
        const char *comma = memchr(value + i, ',', len - i);
        size_t e = comma ? (size_t)(comma - value) : len;
        size_t a = i, z = e;
        while (a < z && (value[a] == ' ' || value[a] == '\t')) a++;
        while (z > a && (value[z - 1] == ' ' || value[z - 1] == '\t')) z--;
        if (z - a == tlen && ascii_caseeq(value + a, token, tlen)) return true;
        if (!comma) return false;
        i = e + 1;
    }
}
