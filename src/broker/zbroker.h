/* zbroker.h — the worker broker's ZeroMQ side: two ROUTERs on roomcast's loop (workers on
 * --broker-worker-port, ZeroMQ clients on --broker-client-port) feeding the broker's core
 * (broker.h), and the one timer that drives the core's heartbeats and deadlines.
 *
 * The sockets are rc_zsock (src/transport/zsock.h): every complete message goes to
 * brk_worker_input / brk_client_input as it is read; what the core sends goes out with
 * DONTWAIT. A worker's end reaches the core as brk_worker_gone when
 *  - zsock's monitor reports that the TCP connection its messages came over has closed
 *    (the seed's REQ workers have no heartbeat: this is how their death is noticed), or
 *  - a send to it fails with EHOSTUNREACH (libzmq has already dropped the peer).
 * Each worker connection is remembered with the identity it spoke with; an identity seen on a
 * newer connection is bound to that one, so the late end of an older connection never ends a
 * worker that has reconnected under the same identity.
 * A send that meets EAGAIN (the peer's pipe full: a worker not reading) is dropped and counted
 * by zsock; the core's deadline then fails the request (`timeout`).
 *
 * Requests from roomcast's other clients (WebSocket, TCP, HTTP, room services) use the core
 * directly through rc_zbroker_core() and brk_request; call rc_zbroker_touched afterwards so
 * the timer follows the core's next deadline and deferred worker ends are handled.
 */
#ifndef RC_ZBROKER_H
#define RC_ZBROKER_H

#include <stdint.h>

#include "broker/broker.h"
#include "core/loop.h"
#include "transport/zmtpsock.h"
#include "transport/zsock.h"

typedef struct rc_zbroker rc_zbroker;

typedef struct rc_zbroker_opts {
    const char *bind;            /* address of both ports: IPv4, IPv6 or "*" */
    int32_t worker_port;         /* -1: no worker port (then no broker), 0: pick a free one */
    int32_t client_port;         /* -1: no ZeroMQ client port, 0: pick a free one */
    size_t max_message;          /* largest body (the core's max_body); the sockets take
                                    frames and messages up to 2 * max_message + 4 KiB so
                                    that larger bodies are refused by the core (too_large,
                                    counted); a frame past that cuts its connection */
    brk_params params;           /* the core's settings (brk_params_default, then changes) */
    const char *at_most_once;    /* at-most-once services, separated by ',' or '\n', NULL: none */
    int engine;                  /* enum rc_zms_engine: native ZMTP sockets (zmtpsock.h) or
                                    libzmq (zsock.h) */
    rc_zms_gate gate;            /* native engine: the server's connection limits, asked at
                                    every accept of both ports (zmtpsock.h); none when
                                    zeroed; not applied on libzmq (it accepts on its own
                                    thread) */
} rc_zbroker_opts;

/* rc_zbroker_new creates the core and binds the ports (a context of its own, one I/O
 * thread; start it after the process's signal mask is set, as NetSync). NULL after logging
 * the reason. rc_zbroker_free closes the sockets and releases the core (pending requests are
 * dropped without callbacks: release every origin first). */
rc_zbroker *rc_zbroker_new(rc_loop *loop, const rc_zbroker_opts *o);
void rc_zbroker_free(rc_zbroker *zb);

/* rc_zbroker_core is the core, for brk_request and the read-only iteration of services,
 * workers and stats (GET /api/services, /metrics). */
brk_broker *rc_zbroker_core(rc_zbroker *zb);
const brk_broker *rc_zbroker_core_c(const rc_zbroker *zb);

/* rc_zbroker_touched: the caller has called the core (brk_request, brk_origin_gone, ...):
 * re-arm the timer and handle what the core's callbacks deferred. */
void rc_zbroker_touched(rc_zbroker *zb);

/* rc_zbroker_set_moved routes the core's on_moved (a sticky key's worker died) to fn(arg,
 * service, key): the room services of app/services.c. Same rules as brk_callbacks.on_moved. */
void rc_zbroker_set_moved(rc_zbroker *zb, void (*fn)(void *, mdp_frame, mdp_frame), void *arg);

/* rc_zbroker_set_publish: messages [""][RCPUB01][room][message]([name]) on the worker port
 * (workers publish into rooms, docs/broker.md) go to fn instead of the core; fn writes the
 * answer's last frame (msg_id or reason, at most cap bytes) and returns the status (200, 400,
 * 404, 503), sent back as [""][RCPUB01][status][text], or 0 after rc_zbroker_publish_defer
 * (below). Without fn they are the core's
 * (malformed). fn is app/services.c's rc_services_worker_publish. */
typedef int rc_zbroker_publish_fn(void *arg, mdp_frame room, mdp_frame msg, mdp_frame name,
                                  char *out, size_t cap, size_t *outlen);
void rc_zbroker_set_publish(rc_zbroker *zb, rc_zbroker_publish_fn *fn, void *arg);

/* An answer to RCPUB01 sent later (--redis: the msg_id comes from Redis). fn calls
 * rc_zbroker_publish_defer(zb, l) during its call and returns 0: nothing is sent now, and
 * rc_zbroker_publish_later(zb, l, status, text, len) sends the answer to the publisher's
 * identity when it is known (a publisher gone meanwhile is dropped by the ROUTER, counted in
 * send_dropped). */
typedef struct rc_zbroker_later {
    uint8_t id_len;              /* identity bytes */
    uint8_t id[MDP_ID_MAX];      /* the publisher's routing identity */
} rc_zbroker_later;
void rc_zbroker_publish_defer(rc_zbroker *zb, rc_zbroker_later *l);
void rc_zbroker_publish_later(rc_zbroker *zb, const rc_zbroker_later *l, int status,
                              const char *text, size_t len);

/* The bound ports (0: that port is off) and endpoints ("" when off). */
uint16_t rc_zbroker_worker_port(const rc_zbroker *zb);
uint16_t rc_zbroker_client_port(const rc_zbroker *zb);
const char *rc_zbroker_worker_endpoint(const rc_zbroker *zb);
const char *rc_zbroker_client_endpoint(const rc_zbroker *zb);

/* Socket counters of the worker and client ports (NULL when a port is off). */
const rc_zsock_stats *rc_zbroker_worker_stats(const rc_zbroker *zb);
const rc_zsock_stats *rc_zbroker_client_stats(const rc_zbroker *zb);

/* Counters of this layer. */
typedef struct rc_zbroker_stats {
    uint64_t worker_conn_gone;   /* worker ends reported from a closed connection */
    uint64_t worker_unreachable; /* worker ends reported from EHOSTUNREACH on a send */
    uint64_t send_dropped;       /* messages to workers or clients not sent (EAGAIN, ...) */
} rc_zbroker_stats;
const rc_zbroker_stats *rc_zbroker_stats_of(const rc_zbroker *zb);

#endif
