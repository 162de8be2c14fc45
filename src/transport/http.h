/* http.h — the HTTP side of a connection: request framing, responses, errors, and the
 * WebSocket upgrade. Complete requests go to the net's `request` hook (the app layer routes
 * them: the API, the web files, the upgrade to the room protocol).
 *
 * Requests on one connection are answered in order: keep-alive and pipelining work because
 * every response is produced synchronously once its request (head and body) is complete.
 * Bodies are framed by Content-Length only, capped at --max-message-size (413); a request with
 * Transfer-Encoding is answered 501 (chunked uploads are not implemented) and a POST or PUT
 * without Content-Length 411. Other statuses: 400 malformed, 404 unknown path, 405 wrong method
 * (with Allow), 408 request too slow, 426 upgrade required / unsupported WebSocket version,
 * 431 head too large, 503 full. Error bodies are JSON: {"status":N,"error":"..."}. After an
 * error that leaves the request stream in doubt (400, 411, 413, 431, 501) the connection is
 * closed once the answer is out.
 */
#ifndef RC_HTTP_H
#define RC_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "codec/http1.h"
#include "transport/conn.h"

/* rc_http_proto is what connections on the HTTP listener speak until an upgrade. */
extern const rc_proto rc_http_proto;

enum rc_http_method {
    RC_HTTP_GET, RC_HTTP_HEAD, RC_HTTP_POST, RC_HTTP_PUT, RC_HTTP_DELETE, RC_HTTP_OPTIONS,
    RC_HTTP_OTHER,
};

/* One complete request, as handed to a route. Every pointer points into the input buffer and
 * is valid only until the route returns. */
typedef struct rc_http_ctx {
    const rc_http_request *req; /* the parsed head */
    int method;              /* enum rc_http_method */
    const char *path;        /* target up to '?' (not decoded) */
    size_t path_len;
    const char *query;       /* after '?' (not decoded), "" when absent */
    size_t query_len;
    const char *body;        /* Content-Length bytes of body */
    size_t body_len;
    bool keep_alive;         /* the connection stays open after the response */
    bool upgrade;            /* it asks for a WebSocket upgrade (Upgrade: websocket and
                                Connection: upgrade) */
    const char *headers;     /* header lines every response to it carries, or NULL: the
                                request hook may set them on its copy before routing (CORS) */
} rc_http_ctx;

/* rc_http_upgrade answers a WebSocket upgrade request (GET, checked by the caller): checks the
 * handshake headers, sends 101 and switches c to WebSocket (transport/ws.h), whose complete
 * messages then go to on_message. With `deflate` it accepts a permessage-deflate offer
 * (codec/pmdeflate.h) and records the agreement in c (ws_deflate, ws_takeover); the caller
 * decides per listener (--ws-deflate, --tls-ws-deflate). Returns false after answering the
 * error (400, 426, ...). */
bool rc_http_upgrade(rc_conn *c, const rc_http_ctx *x, rc_message_fn *on_message, bool deflate);

/* rc_http_respond queues a response with body[0..blen) (only the head for HEAD requests).
 * extra is NULL or complete header lines ("Name: value\r\n"). */
void rc_http_respond(rc_conn *c, const rc_http_ctx *x, int status, const char *ctype,
                     const char *extra, const char *body, size_t blen);

/* rc_http_error queues a JSON error response {"status":N,"error":"<why, JSON-escaped>"} and
 * counts it in the stats; `close` ends the connection after it. */
void rc_http_error(rc_conn *c, const rc_http_ctx *x, int status, const char *extra, bool close,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* rc_http_error_body queues an error response whose JSON body the caller built (another
 * server's error shape: the NetSync REST bridge answers {"detail":...} as its reference does)
 * and counts it like rc_http_error. The connection stays open (keep-alive permitting). */
void rc_http_error_body(rc_conn *c, const rc_http_ctx *x, int status, const char *extra,
                        const char *body, size_t blen);

/* rc_http_respond_json answers with the JSON body built in t (a 500 if building it ran out of
 * memory) and releases t. */
struct rc_textbuf;
void rc_http_respond_json(rc_conn *c, const rc_http_ctx *x, int status, struct rc_textbuf *t);

/* A response sent later (rc_http_defer): what of the request the response needs, copied. */
typedef struct rc_http_later {
    int method;              /* enum rc_http_method of the request */
    bool keep_alive;         /* its keep_alive */
    char headers[384];       /* its headers lines (CORS), "" when none */
} rc_http_later;

/* rc_http_defer: the route answers x later, from the loop (the worker broker's
 * POST /api/services/{service}), through rc_http_respond_later with *l. Until then nothing
 * more is read from c's buffered input (pipelined requests wait, in order), and the idle
 * timeout does not apply: the caller guarantees an answer (its own deadline). If c ends
 * first, the net's `ended` hook runs as usual and the caller must forget c. */
void rc_http_defer(rc_conn *c, const rc_http_ctx *x, rc_http_later *l);

/* rc_http_respond_later sends the deferred response and resumes the requests that arrived
 * meanwhile. */
void rc_http_respond_later(rc_conn *c, const rc_http_later *l, int status, const char *ctype,
                           const char *body, size_t blen);

/* rc_http_error_later is rc_http_error for a deferred response. */
void rc_http_error_later(rc_conn *c, const rc_http_later *l, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* rc_http_path_is: the request path equals s exactly. */
bool rc_http_path_is(const rc_http_ctx *x, const char *s);

#endif
