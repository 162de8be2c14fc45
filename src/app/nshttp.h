/* nshttp.h — NetSync routes on roomcast's HTTP listeners (docs/netsync.md, "HTTP"): the REST
 * bridge of NetSync's server (v8 spec §4.10: client and global variables under /v1/rooms/...,
 * /logs/export; the v0.6 POST with its {"vars"} body still reaches the v0.6 rooms) and GET
 * /api/netsync/rooms. They reach the transport through rc_server.netsync (NULL with
 * --no-netsync: the bridge answers 503, the listing {"enabled":false}). The same routes serve
 * the main port and the optional dedicated one (--netsync-rest-port, the reference's 8800).
 */
#ifndef RC_NSHTTP_H
#define RC_NSHTTP_H

#include <stdbool.h>

#include "transport/conn.h"
#include "transport/http.h"

struct rc_server;

/* rc_nshttp_is_bridge: x's path belongs to the REST bridge (/v1/..., /logs/export), so it gets
 * the bridge's CORS (--netsync-rest-cors) and error shapes. */
bool rc_nshttp_is_bridge(const rc_http_ctx *x);

/* rc_nshttp_handle answers x when its path is a NetSync route (returns true), or returns
 * false without answering. */
bool rc_nshttp_handle(struct rc_server *srv, rc_conn *c, const rc_http_ctx *x);

/* rc_nshttp_rest_request answers every request of the dedicated REST port: GET / (the
 * reference's health check), the bridge's routes, and {"detail":"Not Found"} for the rest. */
void rc_nshttp_rest_request(struct rc_server *srv, rc_conn *c, const rc_http_ctx *x);

#endif
