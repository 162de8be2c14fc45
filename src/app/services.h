/* services.h — the worker broker seen from roomcast's own clients (issue 14, docs/broker.md,
 * docs/protocol.md, docs/api.md):
 *
 *  - {"type":"request",...} from WebSocket and raw-TCP clients (one brk_origin per client, at
 *    most RC_SVC_INFLIGHT requests in flight each: beyond, `overloaded` without touching the
 *    broker, so one client cannot fill a service's queue);
 *  - POST /api/services/{service} (behind the API key like the other /api writes; the HTTP
 *    exchange waits as an origin, the loop never blocks: transport/http.h rc_http_defer);
 *  - the built-in service `roomcast.publish` ({"room":R,"message":{...}} → {"msg_id":N}),
 *    answered here for these clients and offered to the ZeroMQ side (rc_services_publish_call);
 *  - room services (--room-service PATTERN=SERVICE): a member's publish into a matching room
 *    becomes a request to SERVICE with the room name as sticky key; the messages of the reply
 *    are sequenced in the room as the server's (client_id 0); when the room's worker dies the
 *    members get the non-sequenced notice {"type":"room_service","room":R,"state":"moved"}.
 *
 * The broker is the server's (srv->broker, app layer of brkzmq's zbroker); without it every
 * request fails `no_service` and room services refuse publishes.
 */
#ifndef RC_SERVICES_H
#define RC_SERVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/broker.h"
#include "rooms/endpoint.h"
#include "transport/http.h"

struct rc_server;
struct rc_client;
typedef struct rc_services rc_services;

#define RC_SVC_INFLIGHT 64       /* requests in flight per client connection */
#define RC_SVC_ID_MAX 128        /* bytes of a request's "id" (raw JSON scalar) */
#define RC_SVC_ROOM_INFLIGHT 65536 /* room-service requests in flight, all rooms together */
#define RC_SVC_PUBLISH "roomcast.publish" /* the built-in publishing service */

/* Counters (GET /api/stats could show them; /metrics is brkzmq's). */
typedef struct rc_services_stats {
    uint64_t requests;           /* JSON and HTTP requests received */
    uint64_t replies;            /* of them answered by a worker (or the built-in) */
    uint64_t failed;             /* of them failed (any code, refusals included) */
    uint64_t refused_inflight;   /* overloaded: the client had RC_SVC_INFLIGHT in flight */
    uint64_t room_requests;      /* publishes handed to room services */
    uint64_t room_published;     /* messages sequenced from room-service replies */
    uint64_t room_bad_reply;     /* room-service replies that were not {"messages":[...]} */
    uint64_t room_failed;        /* room-service requests failed (sender told) */
    uint64_t moved;              /* room_service "moved" notices (one per room) */
    uint64_t publish_calls;      /* roomcast.publish calls */
} rc_services_stats;

/* rc_services_new reads --room-service and --broker-at-most-once from srv->cfg. NULL after
 * logging why (a malformed PATTERN=SERVICE). It installs the room protocol hooks. */
rc_services *rc_services_new(struct rc_server *srv);

/* rc_services_attach is called once srv->broker exists: marks the at-most-once services and
 * takes the broker's on_moved (for room services). */
void rc_services_attach(rc_services *s);

/* rc_services_free cancels every request (call before the broker is freed). */
void rc_services_free(rc_services *s);

/* rc_services_client_gone: cl is ending; its requests are cancelled. */
void rc_services_client_gone(rc_services *s, struct rc_client *cl);

/* rc_services_http answers POST /api/services/{service} (true when x is that route). */
bool rc_services_http(struct rc_server *srv, rc_conn *c, const rc_http_ctx *x);

/* rc_services_publish_call runs roomcast.publish on body[0..n) for who (a client, held to
 * the room's publish rule, docs/auth.md; NULL: the HTTP API or a worker, which are not): writes
 * the reply JSON ({"msg_id":N} or {"error":"..."}) into out (cap >= 512) and returns the
 * HTTP-like status: 200, 400 (not {"room":R,"message":{...}}), 403 (not allowed) or 404 (no
 * such room). The embedded engine only: with --redis the callers of services.c publish through
 * the script and answer when it has (docs/cluster.md, "Publishes by the server"). */
int rc_services_publish_call(rc_services *s, const rc_endpoint *who, const char *body, size_t n,
                             char *out, size_t cap, size_t *outlen);

/* rc_services_worker_publish is RCPUB01 on the worker port ([""][RCPUB01][room][message]
 * ([name]) from any socket there, docs/broker.md "Workers publish into rooms"): publishes the
 * JSON object `msg` in room `room` as roomcast.publish does (client_id 0; `name` is accepted and
 * ignored) and writes the answer's last frame into out (cap >= 256): the msg_id in decimal, or
 * the reason. Returns the status: 200, 400 (not a JSON object, bad room name, reserved type),
 * 404 (no such room) or 503 (out of memory). With --redis it returns 0 once the message is on
 * its way to the sequencing script (the answer, 200 with the msg_id or 503, follows through
 * rc_zbroker_publish_later; there is no 404: the room may be on other nodes only). arg is the
 * rc_services (the zbroker's hook: rc_zbroker_set_publish). */
int rc_services_worker_publish(void *arg, mdp_frame room, mdp_frame msg, mdp_frame name,
                               char *out, size_t cap, size_t *outlen);

/* rc_services_on_moved is the broker's on_moved (brk_callbacks): the room `key` of room
 * service `service` lost its worker. */
void rc_services_on_moved(void *arg, mdp_frame service, mdp_frame key);

const rc_services_stats *rc_services_stats_of(const rc_services *s);

#endif
