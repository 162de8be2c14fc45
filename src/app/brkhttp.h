/* brkhttp.h — the worker broker on roomcast's HTTP side: GET /api/services (services, their
 * workers, queues, counters; docs/broker.md) and the roomcast_broker_* series of /metrics.
 * Both read the broker through rc_server.broker (NULL when no --broker-worker-port: the
 * listing answers {"enabled":false}, /metrics has no broker series).
 */
#ifndef RC_BRKHTTP_H
#define RC_BRKHTTP_H

#include <stdbool.h>

#include "codec/textbuf.h"
#include "transport/conn.h"
#include "transport/http.h"

struct rc_server;
struct rc_zbroker;

/* rc_brkhttp_handle answers x when its path is a broker route (returns true), or returns false
 * without answering. Routes for requests through HTTP (POST /api/services/{service}) join
 * here. */
bool rc_brkhttp_handle(struct rc_server *srv, rc_conn *c, const rc_http_ctx *x);

/* rc_brkhttp_metrics appends the roomcast_broker_* series of zb to t (Prometheus text). */
void rc_brkhttp_metrics(rc_textbuf *t, const struct rc_zbroker *zb);

#endif
