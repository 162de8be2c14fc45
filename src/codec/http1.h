/* http1.h — HTTP/1.1 request-head parser (RFC 9112), zero-copy and allocation-free.
 *
 * The parser fills an rc_http_request whose strings point into the caller's buffer, so the
 * buffer must stay unchanged while the request is used. It is called again as bytes arrive:
 * *scanned remembers how far the search for the end of the head got, so repeated calls on a
 * growing buffer cost O(total bytes), not O(n^2). Accepted line ends are CRLF and, leniently,
 * bare LF. Rejected (RC_HTTP_EBAD): a malformed request line, a method or header name that is
 * not a token, whitespace between a header name and its colon, obsolete line folding, control
 * characters in a target or value, a version other than HTTP/1.x. A head with more than
 * RC_HTTP_MAX_HEADERS headers is RC_HTTP_ETOOMANY (answer 431). Bodies are not this parser's
 * business: it returns the length of the head and the caller frames the body.
 */
#ifndef RC_HTTP1_H
#define RC_HTTP1_H

#include <stddef.h>
#include <stdbool.h>

#define RC_HTTP_MAX_HEADERS 64

enum {
    RC_HTTP_INCOMPLETE = -2, /* no complete head yet */
    RC_HTTP_EBAD = -1,       /* malformed: answer 400 */
    RC_HTTP_ETOOMANY = -3,   /* more than RC_HTTP_MAX_HEADERS headers: answer 431 */
};

typedef struct rc_http_header {
    const char *name;        /* header field name, as sent (compare case-insensitively) */
    size_t name_len;
    const char *value;       /* value with leading and trailing whitespace trimmed */
    size_t value_len;
} rc_http_header;

typedef struct rc_http_request {
    const char *method;      /* e.g. "GET" */
    size_t method_len;
    const char *target;      /* request-target as sent, e.g. "/api/rooms?x=1" */
    size_t target_len;
    int minor_version;       /* 0 or 1 for HTTP/1.0 or HTTP/1.1 */
    size_t num_headers;      /* entries used in headers[] */
    rc_http_header headers[RC_HTTP_MAX_HEADERS];
} rc_http_request;

/* rc_http_parse_request parses the request head at buf[0..len).
 * *scanned must be 0 on the first call for a request and is updated between calls.
 * Returns the length of the head including its final empty line (> 0), or one of
 * RC_HTTP_INCOMPLETE, RC_HTTP_EBAD, RC_HTTP_ETOOMANY. */
int rc_http_parse_request(const char *buf, size_t len, size_t *scanned, rc_http_request *req);

/* rc_http_find_header returns the first header called name (case-insensitive), or NULL. */
const rc_http_header *rc_http_find_header(const rc_http_request *req, const char *name);

/* rc_http_has_token is true when the comma-separated list value[0..len) contains token
 * (case-insensitive, ignoring whitespace around elements), e.g. "keep-alive, Upgrade". */
bool rc_http_has_token(const char *value, size_t len, const char *token);

#endif
