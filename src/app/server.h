/* server.h — the server object: configuration, loop, listener, connections, rooms, counters.
 *
 * Everything roomcast knows lives in one rc_server owned by one loop; there is no hidden global
 * state on the hot path, so a future multi-core design can run one server shard per loop.
 */
#ifndef RC_SERVER_H
#define RC_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/loop.h"
#include "app/config.h"
#include "transport/conn.h"
#include "app/metrics.h"
#include "rooms/room.h"
#include "app/stats.h"
#include "store/store.h"

#define RC_RXBUF_SIZE (64 * 1024)

struct rc_netsync;
struct rc_nsws;

typedef struct rc_server {
    rc_config cfg;           /* settings (copied at creation) */
    rc_loop *loop;           /* the loop everything runs on (not owned) */
    rc_io listen_io;         /* listening socket */
    uint16_t port;           /* port actually bound */
    int reserve_fd;          /* spare descriptor released to shed connections at EMFILE */
    uint32_t max_connections; /* effective limit after the descriptor limit */
    uint32_t nconns;         /* open connections (not CLOSED) */
    rc_conn *conns;          /* all live connections, doubly linked */
    rc_conn *flush_head;     /* connections with output to write, singly linked */
    rc_conn *free_head;      /* CLOSED connections to free at before-sleep */
    rc_rooms rooms;          /* room table */
    rc_store *store;         /* durable log, NULL without --data-dir */
    struct rc_netsync *netsync; /* NetSync transport (set by main.c), NULL with --no-netsync */
    struct rc_nsws *nsws;    /* its WebSocket observers (set by main.c), NULL without it */
    rc_conn *ack_conns;      /* connections with acks waiting for the durable log */
    rc_timer sweep_timer;    /* once a second: room TTLs, history age, log health */
    uint64_t rooms_repaired; /* rooms restored under a new epoch (possible loss) */
    rc_stats stats;          /* counters */
    rc_metrics metrics;      /* latency histograms and API counters (GET /metrics) */
    uint64_t next_client_id; /* last client id handed out */
    uint64_t started;        /* loop time at start, ns */
    uint64_t wall_ms;        /* rc_wall_ms() as read when the loop clock was wall_at */
    uint64_t wall_at;        /* rc_loop_now() of that read, ns (0: never read) */
    bool shutting_down;      /* SIGTERM/SIGINT received */
    rc_timer accept_timer;   /* re-enables accepting after descriptor exhaustion */
    rc_timer shutdown_timer; /* deadline for clients to finish closing at shutdown */
    char rxbuf[RC_RXBUF_SIZE]; /* shared read buffer: input is parsed in place from here */
} rc_server;

/* rc_server_new binds the listener and prepares the server on loop. NULL after logging the
 * reason when it cannot start. */
rc_server *rc_server_new(rc_loop *loop, const rc_config *cfg);
void rc_server_free(rc_server *srv);

/* rc_server_shutdown closes every client with 1001 and stops the loop once they are gone
 * (or after --close-timeout). */
void rc_server_shutdown(rc_server *srv);

/* rc_server_flush_later puts c on the flush list (idempotent). */
void rc_server_flush_later(rc_server *srv, rc_conn *c);

/* rc_server_stats_json renders the counters as a JSON object into a new rc_msg-ready buffer;
 * returns the length written into out (cap bytes), truncated never: cap must be >= 4096. */
size_t rc_server_stats_json(const rc_server *srv, char *out, size_t cap);

#endif
