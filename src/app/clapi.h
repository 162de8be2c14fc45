/* clapi.h — the HTTP API's cluster-wide reads in Redis mode (docs/api.md, docs/cluster.md).
 *
 * With --redis, GET /api/stats, /api/rooms and /api/rooms/{room} answer for the whole cluster:
 * rooms and their members on every node, and every node's figures, read from Redis (the
 * presence keys and the node registry, cluster/cluster.h). The request is deferred
 * (rc_http_defer) and answered when Redis replies — never from inside the engine's callback:
 * a zero-delay timer sends the answers, so a pipelined request that follows starts outside it.
 * When Redis is unavailable (or fails the read) the node answers with its own view and says
 * so: "cluster":"unavailable". The engine answers or fails every call (a frozen Redis is cut
 * off by its heartbeat within seconds), so a deferred request never hangs.
 */
#ifndef RC_CLAPI_H
#define RC_CLAPI_H

#include <stdbool.h>
#include <stddef.h>

#include "transport/conn.h"
#include "transport/http.h"

struct rc_server;

/* Each answers x (now or later) when the server runs with --redis and returns true; returns
 * false otherwise (the caller answers with the node's own view). */
bool rc_clapi_stats(struct rc_server *srv, rc_conn *c, const rc_http_ctx *x);
bool rc_clapi_rooms(struct rc_server *srv, rc_conn *c, const rc_http_ctx *x);
bool rc_clapi_room(struct rc_server *srv, rc_conn *c, const rc_http_ctx *x, const char *name,
                   size_t len);

/* rc_clapi_conn_gone: c is ending; its deferred request is dropped when Redis answers. */
void rc_clapi_conn_gone(rc_conn *c);

/* rc_clapi_release drops every request (the server is stopping). */
void rc_clapi_release(struct rc_server *srv);

/* rc_clapi_node_info writes this node's figures as a JSON object for the node registry
 * (rc_redisrooms_info_fn; arg is the server). */
size_t rc_clapi_node_info(void *arg, char *out, size_t cap);

#endif
