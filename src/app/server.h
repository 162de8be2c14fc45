/* server.h — the server object: configuration, loop, listeners, connections, rooms, NetSync.
 *
 * The app layer is where the lower layers meet: the transport's connections (rc_net) become
 * room members (app/client.h), HTTP requests are routed to the API, the web files and the
 * upgrade, and every module's counters are gathered for /api/stats and /metrics. Everything
 * lives in one rc_server owned by one loop; there is no hidden global state on the hot path,
 * so a future multi-core design can run one server shard per loop.
 */
#ifndef RC_SERVER_H
#define RC_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "app/config.h"
#include "app/limits.h"
#include "app/metrics.h"
#include "core/loop.h"
#include "rooms/room.h"
#include "transport/conn.h"
#include "transport/listen.h"

struct rc_netsync;
struct rc_nsws;
struct rc_zbroker;
struct rc_services;
struct rc_tls_ctx;
struct rc_reload;

typedef struct rc_server {
    rc_config cfg;           /* settings (copied at creation) */
    rc_loop *loop;           /* the loop everything runs on (not owned) */
    rc_net net;              /* every client connection */
    rc_rooms rooms;          /* rooms, history, durable log */
    rc_listener http;        /* --port: HTTP, the API, WebSocket */
    rc_listener tcp;         /* --tcp-port: the room protocol over raw TCP (unless off) */
    rc_listener chat;        /* --chat-port: the seed chat protocol (unless off) */
    rc_listener https;       /* --tls-port: HTTP, the API, WebSocket over TLS (unless off) */
    rc_listener tcps;        /* --tcp-tls-port: the raw TCP protocol over TLS (unless off) */
    struct rc_tls_ctx *tls;  /* certificate of the TLS listeners, NULL without --tls-cert */
    struct rc_jwt_keys *jwt; /* token keys (owned; rooms.jwt borrows it), NULL = tokens off:
                                swapped by rc_server_set_keys */
    rc_listener rest;        /* --netsync-rest-port: HTTP for NetSync's REST bridge only
                                (unless off; never with --no-netsync) */
    uint32_t max_connections; /* effective limit after the descriptor limit */
    uint32_t zmq_conns;      /* native ZeroMQ connections open (NetSync, broker), counted
                                with net.nconns against max_connections (limits.c's gate) */
    struct rc_netsync *netsync; /* NetSync transport (set by main.c), NULL with --no-netsync */
    struct rc_nsws *nsws;    /* its WebSocket observers (set by main.c), NULL without it */
    struct rc_zbroker *broker; /* worker broker (set by main.c), NULL without
                                  --broker-worker-port */
    struct rc_services *services; /* requests of this server's clients to the broker and
                                     room services (app/services.h) */
    rc_metrics metrics;      /* latency histograms and API counters (GET /metrics) */
    struct rc_reload *reload; /* SIGHUP's state, for the stats (set by main.c), or NULL */
    rc_limits_stats limits;  /* refusals of the abuse limits (app/limits.h) */
    uint64_t next_client_id; /* last client id handed out */
    uint64_t id_mark;        /* with --data-dir: ids below it are reserved in the data
                                directory (rc_server_new_client_id) */
    uint64_t started;        /* loop time at start, ns */
    bool shutting_down;      /* SIGTERM/SIGINT received */
    rc_timer shutdown_timer; /* deadline for clients to finish closing at shutdown */
} rc_server;

/* rc_server_of_net is the server whose connections net holds. */
#define rc_server_of_net(n) ((rc_server *)(void *)((char *)(n) - offsetof(rc_server, net)))

/* rc_server_new binds the listeners and prepares the server on loop. NULL after logging the
 * reason when it cannot start. */
rc_server *rc_server_new(rc_loop *loop, const rc_config *cfg);

/* rc_server_new_client_id hands out the next client id: unique for the run, and with
 * --data-dir for every run on that directory. */
uint64_t rc_server_new_client_id(rc_server *srv);
void rc_server_free(rc_server *srv);

/* rc_server_reload_files re-reads the files the configuration names (SIGHUP): the TLS
 * certificate and key, for new connections (open ones keep theirs). A file that fails keeps
 * what was loaded before; the outcome is logged. */
void rc_server_reload_files(rc_server *srv);

/* rc_server_apply_live pushes the live settings of srv->cfg (rows marked RC_OPT_LIVE) into the
 * modules that keep a copy of them: after a reload has rewritten srv->cfg (app/reload.h). */
void rc_server_apply_live(rc_server *srv);

/* rc_server_set_keys makes keys (owned from now on; NULL or empty: tokens off) the keyset
 * later tokens are checked with, and frees the old one (a reload builds keys with
 * rc_auth_keys_load). Identities already given are kept (rooms/ident.h). */
void rc_server_set_keys(rc_server *srv, struct rc_jwt_keys *keys);


/* rc_server_shutdown closes every client (WebSocket 1001) and stops the loop once they are
 * gone (or after --close-timeout). */
void rc_server_shutdown(rc_server *srv);

#endif
