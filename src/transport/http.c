/* http.c — request framing, the WebSocket upgrade, routing and responses; see http.h. */
#include "transport/http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/handshake.h"
#include "codec/pmdeflate.h"
#include "codec/json.h"
#include "codec/wsframe.h"
#include "core/log.h"
#include "codec/textbuf.h"
#include "transport/ws.h"

static const char *status_text(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
    }
}

static void count_status(rc_net *net, int status)
{
    static const struct { int status; enum rc_nerr kind; } map[] = {
        {400, RC_NERR_HTTP_400}, {401, RC_NERR_HTTP_401}, {403, RC_NERR_HTTP_403},
        {404, RC_NERR_HTTP_404}, {405, RC_NERR_HTTP_405}, {408, RC_NERR_HTTP_408},
        {411, RC_NERR_HTTP_411}, {413, RC_NERR_HTTP_413}, {426, RC_NERR_HTTP_426},
        {431, RC_NERR_HTTP_431}, {501, RC_NERR_HTTP_501}, {503, RC_NERR_HTTP_503},
        {409, RC_NERR_HTTP_409}, {422, RC_NERR_HTTP_422},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (map[i].status == status) net->stats.err[map[i].kind]++;
}

/* Queues one response as one message: head and body in one allocation, one write. */
static void respond(rc_conn *c, int status, const char *ctype, const char *extra,
                    const char *headers, const char *body, size_t blen, bool head_only,
                    bool keep_alive)
{
    char head[1024];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nServer: %s\r\n"
                      "Content-Type: %s\r\nContent-Length: %zu\r\n%s%s%s\r\n",
                      status, status_text(status), c->net->cfg.server_name, ctype, blen,
                      extra ? extra : "", headers ? headers : "",
                      keep_alive ? "" : "Connection: close\r\n");
    if (hl < 0 || (size_t)hl >= sizeof(head)) abort(); /* a caller passed absurd headers */
    size_t total = (size_t)hl + (head_only ? 0 : blen);
    rc_msg *m = rc_msg_new(total);
    if (m) {
        memcpy(m->data, head, (size_t)hl);
        if (!head_only && blen) memcpy(m->data + hl, body, blen);
    }
    if (!rc_conn_give(c, m, false) && c->state == RC_CONN_CLOSED) return;
    /* Closing after the response: the write side is shut after the flush, and input is drained
     * until EOF so that unread request bytes do not turn our close into a reset that could
     * destroy the response in flight. */
    if (!keep_alive) rc_conn_closing(c, true);
}

void rc_http_respond(rc_conn *c, const rc_http_ctx *x, int status, const char *ctype,
                     const char *extra, const char *body, size_t blen)
{
    respond(c, status, ctype, extra, x->headers, body, blen, x->method == RC_HTTP_HEAD,
            x->keep_alive);
}

static void verror(rc_conn *c, int status, const char *extra, const char *headers,
                   bool head_only, bool keep_alive, const char *fmt, va_list ap)
{
    char why[512], esc[rc_json_escape_max(sizeof(why))], body[sizeof(esc) + 64];
    int wl = vsnprintf(why, sizeof(why), fmt, ap);
    if (wl < 0) wl = 0;
    if ((size_t)wl >= sizeof(why)) wl = sizeof(why) - 1;
    size_t el = rc_json_escape(why, (size_t)wl, esc);
    int bl = snprintf(body, sizeof(body), "{\"status\":%d,\"error\":%.*s}\n", status, (int)el, esc);
    count_status(c->net, status);
    rc_debug("http %d: %s", status, why);
    respond(c, status, "application/json", extra, headers, body, (size_t)bl, head_only,
            keep_alive);
}

static void error_reply(rc_conn *c, int status, const char *extra, bool keep_alive,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void error_reply(rc_conn *c, int status, const char *extra, bool keep_alive,
                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(c, status, extra, NULL, false, keep_alive, fmt, ap);
    va_end(ap);
}

void rc_http_error(rc_conn *c, const rc_http_ctx *x, int status, const char *extra, bool close,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(c, status, extra, x->headers, x->method == RC_HTTP_HEAD, x->keep_alive && !close, fmt,
           ap);
    va_end(ap);
}

static void on_timeout(rc_conn *c)
{
    if (c->http_waiting) { /* the deferred answer has its own deadline */
        rc_timer_start(c->net->loop, &c->timer,
                       rc_loop_now(c->net->loop) + c->net->cfg.handshake_timeout);
        return;
    }
    c->net->stats.disc_handshake++;
    if (rc_buf_size(&c->in) > 0) error_reply(c, 408, NULL, false, "request not received in time");
    else rc_conn_close(c); /* an idle keep-alive connection, or one that never spoke */
}

/* The server ends an HTTP connection: a refused one (1013: over --max-connections, or
 * shutting down) learns why with a 503; at shutdown an idle one just closes, and one whose
 * answer is on its way closes after it (nothing is kept alive any more). */
static void end(rc_conn *c, uint16_t code, const char *reason, bool fail)
{
    if (code == RC_WS_CLOSE_TRY_AGAIN) error_reply(c, 503, NULL, false, "%s", reason);
    else if (code != RC_WS_CLOSE_GOING_AWAY || c->out.count == 0) rc_conn_close(c);
}

void rc_http_error_body(rc_conn *c, const rc_http_ctx *x, int status, const char *extra,
                        const char *body, size_t blen)
{
    count_status(c->net, status);
    rc_debug("http %d: %.*s", status, (int)(blen < 200 ? blen : 200), body);
    rc_http_respond(c, x, status, "application/json", extra, body, blen);
}

void rc_http_respond_json(rc_conn *c, const rc_http_ctx *x, int status, rc_textbuf *t)
{
    if (t->failed) {
        rc_textbuf_release(t);
        rc_http_error(c, x, 500, NULL, false, "out of memory");
        return;
    }
    rc_http_respond(c, x, status, "application/json", "Cache-Control: no-store\r\n",
                    rc_buf_head(&t->buf), rc_buf_size(&t->buf));
    rc_textbuf_release(t);
}

bool rc_http_path_is(const rc_http_ctx *x, const char *s)
{
    return x->path_len == strlen(s) && memcmp(x->path, s, x->path_len) == 0;
}

static bool header_is(const rc_http_request *req, const char *name, const char *value)
{
    const rc_http_header *h = rc_http_find_header(req, name);
    return h && h->value_len == strlen(value) && strncasecmp(h->value, value, h->value_len) == 0;
}

bool rc_http_upgrade(rc_conn *c, const rc_http_ctx *x, rc_message_fn *on_message,
                     bool allow_deflate)
{
    const rc_http_request *req = x->req;
    const rc_http_header *key = rc_http_find_header(req, "Sec-WebSocket-Key");
    if (req->minor_version < 1) {
        error_reply(c, 400, NULL, false, "WebSocket needs HTTP/1.1");
        return false;
    }
    if (!rc_http_find_header(req, "Host")) {
        error_reply(c, 400, NULL, false, "missing Host header");
        return false;
    }
    if (!header_is(req, "Sec-WebSocket-Version", "13")) {
        error_reply(c, 426, "Sec-WebSocket-Version: 13\r\n", false,
                    "unsupported WebSocket version (13 is supported)");
        return false;
    }
    if (!key || !rc_ws_key_valid(key->value, key->value_len)) {
        error_reply(c, 400, NULL, false, "missing or invalid Sec-WebSocket-Key");
        return false;
    }
    char accept[RC_WS_ACCEPT_LEN + 1];
    if (rc_ws_accept(key->value, key->value_len, accept) < 0) {
        error_reply(c, 500, NULL, false, "cannot compute Sec-WebSocket-Accept");
        return false;
    }
    /* permessage-deflate: the first acceptable offer of the first header that has one. */
    char ext[RC_PMD_RESPONSE_MAX] = "";
    rc_pmd_agreed pmd;
    bool deflate = false;
    for (size_t i = 0; allow_deflate && !deflate && i < req->num_headers; i++) {
        const rc_http_header *h = &req->headers[i];
        if (h->name_len == 24 && strncasecmp(h->name, "Sec-WebSocket-Extensions", 24) == 0)
            deflate = rc_pmd_negotiate(h->value, h->value_len, &pmd);
    }
    if (deflate) rc_pmd_response(&pmd, ext);
    char resp[160 + RC_PMD_RESPONSE_MAX];
    int rl = snprintf(resp, sizeof(resp),
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n", accept,
                      deflate ? "Sec-WebSocket-Extensions: " : "", ext, deflate ? "\r\n" : "");
    if (!rc_conn_send_copy(c, resp, (size_t)rl)) return false;
    c->ws_deflate = deflate ? pmd.server_bits : 0;
    c->ws_takeover = deflate && !pmd.client_nct;
    c->on_message = on_message;
    rc_conn_set_proto(c, &rc_ws_proto);
    return true;
}

static int parse_method(const rc_http_request *req)
{
    static const struct { const char *name; int m; } methods[] = {
        {"GET", RC_HTTP_GET}, {"HEAD", RC_HTTP_HEAD}, {"POST", RC_HTTP_POST},
        {"PUT", RC_HTTP_PUT}, {"DELETE", RC_HTTP_DELETE}, {"OPTIONS", RC_HTTP_OPTIONS},
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (req->method_len == strlen(methods[i].name) &&
            memcmp(req->method, methods[i].name, req->method_len) == 0)
            return methods[i].m;
    return RC_HTTP_OTHER;
}

/* Reads Content-Length into *len: 0 when absent, 1 when present, -1 when malformed or when
 * several copies disagree (RFC 9112 §6.3: a request we cannot frame is an error, never a
 * guess — guessing is how request smuggling starts). */
static int content_length(const rc_http_request *req, size_t max, size_t *len, bool *too_big)
{
    int found = 0;
    *too_big = false;
    for (size_t i = 0; i < req->num_headers; i++) {
        const rc_http_header *h = &req->headers[i];
        if (h->name_len != 14 || strncasecmp(h->name, "Content-Length", 14) != 0) continue;
        if (h->value_len == 0 || h->value_len > 19) return -1;
        size_t v = 0;
        for (size_t k = 0; k < h->value_len; k++) {
            if (h->value[k] < '0' || h->value[k] > '9') return -1;
            v = v * 10 + (size_t)(h->value[k] - '0');
        }
        if (found && v != *len) return -1;
        *len = v;
        found = 1;
    }
    if (!found) *len = 0;
    else if (*len > max) *too_big = true;
    return found;
}

/* Parses one request at p[0..n). Returns the bytes it used (> 0) after answering it, 0 when
 * the request is not complete yet, or n after an error that ends the connection. */
static size_t one_request(rc_conn *c, char *p, size_t n)
{
    rc_net *net = c->net;
    rc_http_request req;
    int r = rc_http_parse_request(p, n, &c->dec.http_scanned, &req);
    if (r == RC_HTTP_INCOMPLETE) {
        if (n > net->cfg.max_header_size) {
            error_reply(c, 431, NULL, false, "request head too large");
            return n;
        }
        return 0;
    }
    c->dec.http_scanned = 0;
    if (r == RC_HTTP_EBAD) {
        error_reply(c, 400, NULL, false, "malformed HTTP request");
        return n;
    }
    if (r == RC_HTTP_ETOOMANY || (size_t)r > net->cfg.max_header_size) {
        error_reply(c, 431, NULL, false, "request head too large");
        return n;
    }
    size_t head = (size_t)r;

    rc_http_ctx x = {.req = &req, .method = parse_method(&req), .path = req.target,
                     .path_len = req.target_len, .query = "", .body = ""};
    const char *q = memchr(req.target, '?', req.target_len);
    if (q) {
        x.path_len = (size_t)(q - req.target);
        x.query = q + 1;
        x.query_len = req.target_len - x.path_len - 1;
    }
    const rc_http_header *conn_h = rc_http_find_header(&req, "Connection");
    const rc_http_header *upg = rc_http_find_header(&req, "Upgrade");
    x.upgrade = upg && rc_http_has_token(upg->value, upg->value_len, "websocket") &&
                conn_h && rc_http_has_token(conn_h->value, conn_h->value_len, "upgrade");
    x.keep_alive = !net->shutting_down &&
                   (req.minor_version >= 1
                        ? !(conn_h && rc_http_has_token(conn_h->value, conn_h->value_len, "close"))
                        : (conn_h && rc_http_has_token(conn_h->value, conn_h->value_len, "keep-alive")));

    /* Framing. Errors here end the connection: the next request's start is unknown. */
    if (rc_http_find_header(&req, "Transfer-Encoding")) {
        error_reply(c, 501, NULL, false,
                    "Transfer-Encoding is not supported in requests: send Content-Length");
        return n;
    }
    size_t clen = 0;
    bool too_big;
    int has_len = content_length(&req, net->cfg.max_message_size, &clen, &too_big);
    if (has_len < 0) {
        error_reply(c, 400, NULL, false, "invalid Content-Length");
        return n;
    }
    if (too_big) {
        error_reply(c, 413, NULL, false, "request body larger than %zu bytes",
                    net->cfg.max_message_size);
        return n;
    }
    if (!has_len && (x.method == RC_HTTP_POST || x.method == RC_HTTP_PUT)) {
        error_reply(c, 411, NULL, false, "a %s request needs Content-Length",
                    x.method == RC_HTTP_POST ? "POST" : "PUT");
        return n;
    }
    if (x.upgrade && clen > 0) {
        error_reply(c, 400, NULL, false, "a WebSocket upgrade request cannot have a body");
        return n;
    }
    if (n - head < clen) return 0; /* the body is still on its way; the head is parsed again */
    x.body = p + head;
    x.body_len = clen;
    net->hooks.request(net->hooks.arg, c, &x);
    return head + clen;
}

static size_t on_input(rc_conn *c, char *p, size_t n)
{
    rc_net *net = c->net;
    size_t used = 0;
    /* Pipelined input waiting for a deferred answer is bounded like one request. */
    if (c->http_waiting && n > net->cfg.max_header_size + net->cfg.max_message_size) {
        c->http_waiting = false;
        error_reply(c, 413, NULL, false, "too much pipelined input behind a pending request");
        return n;
    }
    while (c->state == RC_CONN_OPEN && c->proto == &rc_http_proto && used < n &&
           !c->http_waiting) {
        size_t k = one_request(c, p + used, n - used);
        if (k == 0) break;
        used += k;
        /* A kept-alive connection gets a fresh idle deadline after each request. */
        if (c->state == RC_CONN_OPEN && c->proto == &rc_http_proto)
            rc_timer_start(net->loop, &c->timer,
                           rc_loop_now(net->loop) + net->cfg.handshake_timeout);
    }
    return c->state == RC_CONN_CLOSING && c->discard_input ? n : used;
}

void rc_http_defer(rc_conn *c, const rc_http_ctx *x, rc_http_later *l)
{
    l->method = x->method;
    l->keep_alive = x->keep_alive;
    snprintf(l->headers, sizeof(l->headers), "%s", x->headers ? x->headers : "");
    c->http_waiting = true;
}

/* Runs the requests that arrived while a response was deferred (they are in c->in: on_input
 * returned without using them). A request that upgrades leaves the rest to the next read. */
static void resume(rc_conn *c)
{
    size_t n = rc_buf_size(&c->in);
    if (c->state != RC_CONN_OPEN || n == 0) return;
    size_t used = on_input(c, rc_buf_head(&c->in), n);
    if (c->state != RC_CONN_CLOSED) rc_buf_consume(&c->in, used);
}

void rc_http_respond_later(rc_conn *c, const rc_http_later *l, int status, const char *ctype,
                           const char *body, size_t blen)
{
    c->http_waiting = false;
    if (c->state != RC_CONN_OPEN) return;
    respond(c, status, ctype, "Cache-Control: no-store\r\n", l->headers[0] ? l->headers : NULL,
            body, blen, l->method == RC_HTTP_HEAD, l->keep_alive);
    resume(c);
}

void rc_http_error_later(rc_conn *c, const rc_http_later *l, int status, const char *fmt, ...)
{
    c->http_waiting = false;
    if (c->state != RC_CONN_OPEN) return;
    va_list ap;
    va_start(ap, fmt);
    verror(c, status, NULL, l->headers[0] ? l->headers : NULL, l->method == RC_HTTP_HEAD,
           l->keep_alive, fmt, ap);
    va_end(ap);
    resume(c);
}

static void start(rc_conn *c)
{
    rc_net *net = c->net;
    rc_timer_start(net->loop, &c->timer, rc_loop_now(net->loop) + net->cfg.handshake_timeout);
}

const rc_proto rc_http_proto = {
    .name = "http", .start = start, .input = on_input, .timer = on_timeout, .end = end,
    .half_close = true,
};
