/* http.c — request framing, the WebSocket upgrade, routing and responses; see http.h. */
#include "transport/http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "codec/handshake.h"
#include "codec/json.h"
#include "app/api.h"
#include "app/nshttp.h"
#include "app/server.h"
#include "core/textbuf.h"
#include "app/webassets.h"
#include "transport/ws.h"

static const char *status_text(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
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
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

static void count_status(rc_server *srv, int status)
{
    switch (status) {
    case 400: srv->stats.err[RC_ERR_HTTP_400]++; break;
    case 401: srv->stats.err[RC_ERR_HTTP_401]++; break;
    case 403: srv->stats.err[RC_ERR_HTTP_403]++; break;
    case 404: srv->stats.err[RC_ERR_HTTP_404]++; break;
    case 405: srv->stats.err[RC_ERR_HTTP_405]++; break;
    case 408: srv->stats.err[RC_ERR_HTTP_408]++; break;
    case 411: srv->stats.err[RC_ERR_HTTP_411]++; break;
    case 413: srv->stats.err[RC_ERR_HTTP_413]++; break;
    case 426: srv->stats.err[RC_ERR_HTTP_426]++; break;
    case 431: srv->stats.err[RC_ERR_HTTP_431]++; break;
    case 501: srv->stats.err[RC_ERR_HTTP_501]++; break;
    case 503: srv->stats.err[RC_ERR_HTTP_503]++; break;
    default: break;
    }
}

/* Moves an HTTP connection to CLOSING once its last response is queued: the write side is
 * shut after the flush, and input is drained until EOF so that unread request bytes do not
 * turn our close into a reset that could destroy the response in flight. */
static void close_after_response(rc_conn *c)
{
    c->state = RC_CONN_CLOSING;
    c->discard_input = true;
    c->shut_after_flush = true;
    rc_timer_start(c->srv->loop, &c->timer, rc_loop_now(c->srv->loop) + c->srv->cfg.close_timeout);
    rc_server_flush_later(c->srv, c);
}

/* Queues one response as one message: head and body in one allocation, one write. */
static void respond(rc_conn *c, int status, const char *ctype, const char *extra,
                    const char *body, size_t blen, bool head_only, bool keep_alive)
{
    char head[768];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nServer: roomcast/" RC_VERSION "\r\n"
                      "Content-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                      status, status_text(status), ctype, blen, extra ? extra : "",
                      keep_alive ? "" : "Connection: close\r\n");
    if (hl < 0 || (size_t)hl >= sizeof(head)) abort(); /* a caller passed absurd headers */
    size_t total = (size_t)hl + (head_only ? 0 : blen);
    rc_msg *m = rc_msg_new(total);
    if (!m) {
        rc_conn_close(c);
        return;
    }
    memcpy(m->data, head, (size_t)hl);
    if (!head_only && blen) memcpy(m->data + hl, body, blen);
    rc_conn_send(c, m);
    rc_msg_unref(m);
    if (!keep_alive && c->state == RC_CONN_HTTP) close_after_response(c);
}

void rc_http_respond(rc_conn *c, const rc_http_ctx *x, int status, const char *ctype,
                     const char *extra, const char *body, size_t blen)
{
    respond(c, status, ctype, extra, body, blen, x->method == RC_HTTP_HEAD, x->keep_alive);
}

static void verror(rc_conn *c, int status, const char *extra, bool head_only, bool keep_alive,
                   const char *fmt, va_list ap)
{
    char why[512], esc[rc_json_escape_max(sizeof(why))], body[sizeof(esc) + 64];
    int wl = vsnprintf(why, sizeof(why), fmt, ap);
    if (wl < 0) wl = 0;
    if ((size_t)wl >= sizeof(why)) wl = sizeof(why) - 1;
    size_t el = rc_json_escape(why, (size_t)wl, esc);
    int bl = snprintf(body, sizeof(body), "{\"status\":%d,\"error\":%.*s}\n", status, (int)el, esc);
    count_status(c->srv, status);
    rc_debug("http %d: %s", status, why);
    respond(c, status, "application/json", extra, body, (size_t)bl, head_only, keep_alive);
}

static void error_reply(rc_conn *c, int status, const char *extra, bool keep_alive,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void error_reply(rc_conn *c, int status, const char *extra, bool keep_alive,
                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(c, status, extra, false, keep_alive, fmt, ap);
    va_end(ap);
}

void rc_http_error(rc_conn *c, const rc_http_ctx *x, int status, const char *extra, bool close,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(c, status, extra, x->method == RC_HTTP_HEAD, x->keep_alive && !close, fmt, ap);
    va_end(ap);
}

void rc_http_reject(rc_conn *c, int status, const char *why)
{
    error_reply(c, status, NULL, false, "%s", why);
}

void rc_http_on_timeout(rc_conn *c)
{
    rc_server *srv = c->srv;
    srv->stats.disc_handshake++;
    if (rc_buf_size(&c->in) > 0) error_reply(c, 408, NULL, false, "request not received in time");
    else rc_conn_close(c); /* an idle keep-alive connection, or one that never spoke */
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

/* Accepts the upgrade: sends 101 and switches the connection to WebSocket. */
static void upgrade(rc_conn *c, const rc_http_request *req, enum rc_conn_proto proto)
{
    rc_server *srv = c->srv;
    const rc_http_header *key = rc_http_find_header(req, "Sec-WebSocket-Key");
    if (req->minor_version < 1) {
        error_reply(c, 400, NULL, false, "WebSocket needs HTTP/1.1");
        return;
    }
    if (!rc_http_find_header(req, "Host")) {
        error_reply(c, 400, NULL, false, "missing Host header");
        return;
    }
    if (!header_is(req, "Sec-WebSocket-Version", "13")) {
        error_reply(c, 426, "Sec-WebSocket-Version: 13\r\n", false,
                    "unsupported WebSocket version (13 is supported)");
        return;
    }
    if (!key || !rc_ws_key_valid(key->value, key->value_len)) {
        error_reply(c, 400, NULL, false, "missing or invalid Sec-WebSocket-Key");
        return;
    }
    char accept[RC_WS_ACCEPT_LEN + 1];
    if (rc_ws_accept(key->value, key->value_len, accept) < 0) {
        error_reply(c, 500, NULL, false, "cannot compute Sec-WebSocket-Accept");
        return;
    }
    char resp[160];
    int rl = snprintf(resp, sizeof(resp),
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    rc_msg *m = rc_msg_new((size_t)rl);
    if (!m) {
        rc_conn_close(c);
        return;
    }
    memcpy(m->data, resp, (size_t)rl);
    rc_conn_send(c, m);
    rc_msg_unref(m);
    c->state = RC_CONN_WS;
    c->proto = (uint8_t)proto;
    c->client_id = ++srv->next_client_id;
    rc_ws_start_keepalive(c);
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

/* Answers one complete request. */
static void handle_request(rc_conn *c, const rc_http_ctx *x, bool wants_ws)
{
    rc_server *srv = c->srv;
    srv->metrics.http_requests++;
    bool root = rc_http_path_is(x, "/"), echo = rc_http_path_is(x, "/echo");
    if (wants_ws) {
        if (!root && !echo) {
            error_reply(c, 404, NULL, false, "no WebSocket endpoint at this path (use / or /echo)");
        } else if (x->method != RC_HTTP_GET) {
            error_reply(c, 405, "Allow: GET\r\n", false, "WebSocket upgrade needs GET");
        } else {
            upgrade(c, x->req, echo ? RC_PROTO_ECHO : RC_PROTO_ROOMS);
        }
        return;
    }
    if (echo) {
        if (x->method != RC_HTTP_GET && x->method != RC_HTTP_HEAD)
            rc_http_error(c, x, 405, "Allow: GET, HEAD\r\n", false, "method not allowed");
        else
            rc_http_error(c, x, 426, "Upgrade: websocket\r\n", false,
                          "/echo is a WebSocket endpoint: upgrade required");
        return;
    }
    if (rc_nshttp_handle(c, x)) return; /* NetSync routes first: /api/netsync/... */
    if (rc_api_handle(c, x)) return;
    if (rc_web_handle(c, x)) return;
    rc_http_error(c, x, 404, NULL, false, "not found");
}

/* Parses one request at p[0..n). Returns the bytes it used (> 0) after answering it, 0 when
 * the request is not complete yet, or n after an error that ends the connection. */
static size_t one_request(rc_conn *c, char *p, size_t n)
{
    rc_server *srv = c->srv;
    rc_http_request req;
    int r = rc_http_parse_request(p, n, &c->http_scanned, &req);
    if (r == RC_HTTP_INCOMPLETE) {
        if (n > srv->cfg.max_header_size) {
            error_reply(c, 431, NULL, false, "request head too large");
            return n;
        }
        return 0;
    }
    c->http_scanned = 0;
    if (r == RC_HTTP_EBAD) {
        error_reply(c, 400, NULL, false, "malformed HTTP request");
        return n;
    }
    if (r == RC_HTTP_ETOOMANY || (size_t)r > srv->cfg.max_header_size) {
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
    bool wants_ws = upg && rc_http_has_token(upg->value, upg->value_len, "websocket") &&
                    conn_h && rc_http_has_token(conn_h->value, conn_h->value_len, "upgrade");
    x.keep_alive = !srv->shutting_down &&
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
    int has_len = content_length(&req, srv->cfg.max_message_size, &clen, &too_big);
    if (has_len < 0) {
        error_reply(c, 400, NULL, false, "invalid Content-Length");
        return n;
    }
    if (too_big) {
        error_reply(c, 413, NULL, false, "request body larger than %zu bytes",
                    srv->cfg.max_message_size);
        return n;
    }
    if (!has_len && (x.method == RC_HTTP_POST || x.method == RC_HTTP_PUT)) {
        error_reply(c, 411, NULL, false, "a %s request needs Content-Length",
                    x.method == RC_HTTP_POST ? "POST" : "PUT");
        return n;
    }
    if (wants_ws && clen > 0) {
        error_reply(c, 400, NULL, false, "a WebSocket upgrade request cannot have a body");
        return n;
    }
    if (n - head < clen) return 0; /* the body is still on its way; the head is parsed again */
    x.body = p + head;
    x.body_len = clen;
    handle_request(c, &x, wants_ws);
    return head + clen;
}

size_t rc_http_on_input(rc_conn *c, char *p, size_t n)
{
    rc_server *srv = c->srv;
    size_t used = 0;
    while (c->state == RC_CONN_HTTP && used < n) {
        size_t k = one_request(c, p + used, n - used);
        if (k == 0) break;
        used += k;
        /* A kept-alive connection gets a fresh idle deadline after each request. */
        if (c->state == RC_CONN_HTTP)
            rc_timer_start(srv->loop, &c->timer,
                           rc_loop_now(srv->loop) + srv->cfg.handshake_timeout);
    }
    return c->state == RC_CONN_CLOSING && c->discard_input ? n : used;
}
