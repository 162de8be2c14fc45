/* nshttp.h — NetSync routes on roomcast's HTTP listener (docs/netsync.md):
 * POST /v1/rooms/{room}/devices/{device}/client-variables (the reference's REST bridge, spec
 * §4.7) and GET /api/netsync/rooms. They reach the transport through rc_server.netsync (NULL
 * with --no-netsync: the bridge answers 503, the listing {"enabled":false}).
 */
#ifndef RC_NSHTTP_H
#define RC_NSHTTP_H

#include <stdbool.h>

#include "transport/conn.h"
#include "transport/http.h"

struct rc_server;

/* rc_nshttp_handle answers x when its path is a NetSync route (returns true), or returns
 * false without answering. */
bool rc_nshttp_handle(struct rc_server *srv, rc_conn *c, const rc_http_ctx *x);

#endif
