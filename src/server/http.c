/* http.c — request heads, the WebSocket upgrade, status page and errors; see http.h. */
#include "server/http.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "proto/handshake.h"
#include "proto/http1.h"
#include "server/server.h"
#include "server/ws.h"

static const char *status_text(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

static void count_status(rc_server *srv, int status)
{
    switch (status) {
    case 400: srv->stats.err[RC_ERR_HTTP_400]++; break;
    case 404: srv->stats.err[RC_ERR_HTTP_404]++; break;
    case 405: srv->stats.err[RC_ERR_HTTP_405]++; break;
    case 408: srv->stats.err[RC_ERR_HTTP_408]++; break;
    case 426: srv->stats.err[RC_ERR_HTTP_426]++; break;
    case 431: srv->stats.err[RC_ERR_HTTP_431]++; break;
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

/* Queues one response. extra is zero or more complete header lines ("Name: v\r\n"). */
static void respond(rc_conn *c, int status, const char *ctype, const char *extra,
                    const char *body, size_t blen, bool head_only, bool keep_alive)
{
    char head[512];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nServer: roomcast/" RC_VERSION "\r\n"
                      "Content-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                      status, status_text(status), ctype, blen, extra ? extra : "",
                      keep_alive ? "" : "Connection: close\r\n");
    if (hl < 0 || (size_t)hl >= sizeof(head)) hl = 0;
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

static void respond_error(rc_conn *c, int status, const char *why, const char *extra,
                          bool keep_alive)
{
    char body[256];
    int bl = snprintf(body, sizeof(body), "{\"status\":%d,\"error\":\"%s\"}\n", status, why);
    count_status(c->srv, status);
    rc_debug("http %d: %s", status, why);
    respond(c, status, "application/json", extra, body, (size_t)bl, false, keep_alive);
}

void rc_http_reject(rc_conn *c, int status, const char *why)
{
    respond_error(c, status, why, NULL, false);
}

void rc_http_on_timeout(rc_conn *c)
{
    rc_server *srv = c->srv;
    srv->stats.disc_handshake++;
    if (rc_buf_size(&c->in) > 0) respond_error(c, 408, "request head not received in time", NULL, false);
    else rc_conn_close(c); /* an idle keep-alive connection, or one that never spoke */
}

static bool target_is(const rc_http_request *req, const char *path)
{
    size_t n = req->target_len;
    const char *q = memchr(req->target, '?', n);
    if (q) n = (size_t)(q - req->target);
    return n == strlen(path) && memcmp(req->target, path, n) == 0;
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
        respond_error(c, 400, "WebSocket needs HTTP/1.1", NULL, false);
        return;
    }
    if (!rc_http_find_header(req, "Host")) {
        respond_error(c, 400, "missing Host header", NULL, false);
        return;
    }
    if (!header_is(req, "Sec-WebSocket-Version", "13")) {
        respond_error(c, 426, "unsupported WebSocket version (13 is supported)",
                      "Sec-WebSocket-Version: 13\r\n", false);
        return;
    }
    if (!key || !rc_ws_key_valid(key->value, key->value_len)) {
        respond_error(c, 400, "missing or invalid Sec-WebSocket-Key", NULL, false);
        return;
    }
    char accept[RC_WS_ACCEPT_LEN + 1];
    if (rc_ws_accept(key->value, key->value_len, accept) < 0) {
        respond_error(c, 500, "cannot compute Sec-WebSocket-Accept", NULL, false);
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

static void status_page(rc_conn *c, bool head_only, bool keep_alive)
{
    rc_server *srv = c->srv;
    char body[2048];
    int n = snprintf(body, sizeof(body),
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>roomcast</title></head>\n"
        "<body style=\"font-family:sans-serif;max-width:40em;margin:2em auto\">\n"
        "<h1>roomcast " RC_VERSION "</h1>\n"
        "<p>A real-time room messaging server. Connect a WebSocket to <code>/</code> and send "
        "<code>{\"type\":\"join\",\"room\":\"lobby\"}</code>; <code>/echo</code> echoes.</p>\n"
        "<table>\n<tr><td>connections</td><td>%u</td></tr>\n"
        "<tr><td>rooms</td><td>%u</td></tr>\n"
        "<tr><td>messages in</td><td>%llu</td></tr>\n"
        "<tr><td>messages out</td><td>%llu</td></tr>\n</table>\n"
        "<p><a href=\"/api/stats\">/api/stats</a></p>\n</body></html>\n",
        srv->nconns, srv->rooms.count, (unsigned long long)srv->stats.messages_in,
        (unsigned long long)srv->stats.messages_out);
    respond(c, 200, "text/html; charset=utf-8", NULL, body, (size_t)n, head_only, keep_alive);
}

static void stats_page(rc_conn *c, bool head_only, bool keep_alive)
{
    char body[8192];
    size_t n = rc_server_stats_json(c->srv, body, sizeof(body));
    respond(c, 200, "application/json", "Cache-Control: no-store\r\n", body, n, head_only,
            keep_alive);
}

/* Answers one complete request head. */
static void handle_request(rc_conn *c, const rc_http_request *req)
{
    bool is_get = req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
    bool is_head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    const rc_http_header *conn_h = rc_http_find_header(req, "Connection");
    const rc_http_header *upg = rc_http_find_header(req, "Upgrade");
    bool wants_ws = upg && rc_http_has_token(upg->value, upg->value_len, "websocket") &&
                    conn_h && rc_http_has_token(conn_h->value, conn_h->value_len, "upgrade");
    bool keep_alive = req->minor_version >= 1
                          ? !(conn_h && rc_http_has_token(conn_h->value, conn_h->value_len, "close"))
                          : (conn_h && rc_http_has_token(conn_h->value, conn_h->value_len, "keep-alive"));
    /* No route here takes a body; rather than frame and skip one, end the connection after
     * the answer so a body can never be mistaken for the next request. */
    const rc_http_header *cl = rc_http_find_header(req, "Content-Length");
    if (rc_http_find_header(req, "Transfer-Encoding") ||
        (cl && !(cl->value_len == 1 && cl->value[0] == '0')))
        keep_alive = false;

    bool root = target_is(req, "/"), echo = target_is(req, "/echo");
    bool stats = target_is(req, "/api/stats");
    if (wants_ws) {
        if (!root && !echo) {
            respond_error(c, 404, "no WebSocket endpoint at this path (use / or /echo)", NULL, false);
        } else if (!is_get) {
            respond_error(c, 405, "WebSocket upgrade needs GET", "Allow: GET\r\n", false);
        } else {
            upgrade(c, req, echo ? RC_PROTO_ECHO : RC_PROTO_ROOMS);
        }
        return;
    }
    if (!root && !echo && !stats) {
        respond_error(c, 404, "not found", NULL, keep_alive);
        return;
    }
    if (!is_get && !is_head) {
        respond_error(c, 405, "method not allowed", "Allow: GET, HEAD\r\n", keep_alive);
        return;
    }
    if (echo) {
        respond_error(c, 426, "/echo is a WebSocket endpoint: upgrade required",
                      "Upgrade: websocket\r\n", keep_alive);
        return;
    }
    if (stats) stats_page(c, is_head, keep_alive);
    else status_page(c, is_head, keep_alive);
}

size_t rc_http_on_input(rc_conn *c, char *p, size_t n)
{
    rc_server *srv = c->srv;
    size_t used = 0;
    while (c->state == RC_CONN_HTTP && used < n) {
        rc_http_request req;
        int r = rc_http_parse_request(p + used, n - used, &c->http_scanned, &req);
        if (r == RC_HTTP_INCOMPLETE) {
            if (n - used > srv->cfg.max_header_size) {
                respond_error(c, 431, "request head too large", NULL, false);
                return n;
            }
            return used;
        }
        c->http_scanned = 0;
        if (r == RC_HTTP_EBAD) {
            respond_error(c, 400, "malformed HTTP request", NULL, false);
            return n;
        }
        if (r == RC_HTTP_ETOOMANY || (size_t)r > srv->cfg.max_header_size) {
            respond_error(c, 431, "request head too large", NULL, false);
            return n;
        }
        used += (size_t)r;
        handle_request(c, &req);
        /* A kept-alive connection gets a fresh idle deadline after each request. */
        if (c->state == RC_CONN_HTTP)
            rc_timer_start(srv->loop, &c->timer,
                           rc_loop_now(srv->loop) + srv->cfg.handshake_timeout);
    }
    return c->state == RC_CONN_CLOSING && c->discard_input ? n : used;
}
