/* broker.h — the worker broker's state machine (issue 14, docs/broker.md): services, workers
 * in least-recently-used order, requests with deadlines, heartbeats, retries, sticky keys.
 *
 * No sockets and no loop here. Worker traffic comes in as ROUTER frames (brk_worker_input) and
 * goes out through brk_callbacks.send_worker; requests come from *origins* (brk_origin: a
 * WebSocket/TCP client, an HTTP exchange, a room service, or the ZeroMQ client port through
 * brk_client_input) and their outcome goes back through the origin's ops table. Time is loop
 * nanoseconds passed in by the caller; timers run in brk_tick, and brk_next_deadline says when.
 *
 * Rules (the choices the RFCs leave open are configurable in brk_params):
 *  - Dispatch: each service keeps its idle workers in LRU order; a request goes to the worker
 *    idle the longest; one request in flight per worker. No idle worker: the request waits in
 *    the service's FIFO queue (at most queue_max, else `overloaded`) until a worker is free or
 *    its deadline (request_timeout_ns after brk_request) passes (`timeout`).
 *  - Unknown services: a service with no worker is "known" while a worker served it less than
 *    service_grace_ns ago (or during the first service_grace_ns after brk_init, when workers
 *    may not have connected yet): its requests queue, so restarting every worker, even all at
 *    once, loses nothing within the timeout. Otherwise `no_service` at once.
 *  - Heartbeats: PPP workers get HEARTBEAT every ppp_heartbeat_ns, MDP workers every
 *    mdp_heartbeat_ns (sent while idle and while busy; the guide's workers expect them both
 *    ways); any message from a worker counts as a heartbeat; a worker silent for liveness
 *    intervals is dead. The seed's REQ workers have no heartbeat: only brk_worker_gone (the
 *    socket layer saw the disconnect) ends them.
 *  - A worker dies with a request in flight: the request goes back to the front of its
 *    service's queue for one retry (a second loss fails it `worker_lost`), or fails at once
 *    with `worker_lost` when the service is at-most-once. The worker's token for the request
 *    is forgotten with the worker, so a late reply from it is dropped and counted, never
 *    delivered twice. A request that times out while in flight leaves its worker busy until
 *    the worker answers (that late reply is dropped and counted) or dies.
 *  - Workers see an opaque 8-byte request token as the "client address" (never a client's
 *    identity); a reply carrying any other address, or from a worker not holding that token,
 *    is dropped and counted.
 *  - MDP: DISCONNECT in answer to every valid but unexpected command (READY twice, REPLY with
 *    nothing in flight, HEARTBEAT/REPLY from an unregistered worker) and to a READY naming an
 *    `mmi.*` service; a malformed message from a registered MDP worker is also answered with
 *    DISCONNECT (the worker reconnects on a fresh socket, which resynchronises it). PPP and
 *    LRU have no such command: bad input is counted and dropped, the worker is unaffected.
 *    A second READY from a PPP or LRU worker means it restarted: a request it held is treated
 *    as lost (retried), then it is idle again.
 *  - MMI (RFC 8): service `mmi.service` with a service name as body answers "200" when that
 *    service has a worker, "404" otherwise; any other `mmi.*` answers "501". Answered by the
 *    broker for every origin (through ops->reply), never sent to a worker.
 *  - Sticky keys (room services): requests carrying the same sticky key go to the same worker
 *    while it lives, queued on that worker in arrival order while it is busy. When the worker
 *    dies its keys are released (the in-flight request follows the retry rule, its queued
 *    sticky requests go back to the front of the service queue in order) and on_moved tells
 *    the owner for each key, once; the next request of the key binds it to a worker afresh.
 *
 * Callbacks (send_worker, disconnect_worker, on_moved, and the origins' reply/fail) must not
 * call back into the broker; they may be called from any brk_* function that takes `now`,
 * including brk_request itself (an immediate failure or an MMI answer). Every accepted or
 * refused brk_request gets exactly one reply or fail, unless its origin is gone first.
 */
#ifndef RC_BROKER_H
#define RC_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/mdp.h"
#include "core/hash.h"
#include "core/heap.h"

/* Why a request failed (brk_origin_ops.fail); the names are the "code" of the JSON/HTTP
 * errors (brk_code_name). */
enum brk_code {
    BRK_NO_SERVICE = 0,      /* no worker serves the service, and none did recently */
    BRK_TIMEOUT = 1,         /* no reply before the request's deadline */
    BRK_WORKER_LOST = 2,     /* the worker died holding it (at-most-once, or the retry too) */
    BRK_OVERLOADED = 3,      /* the service's queue is full (or out of memory) */
    BRK_TOO_LARGE = 4,       /* body larger than max_body / more than BRK_MAX_FRAMES frames */
};
#define BRK_CODE_COUNT 5
const char *brk_code_name(enum brk_code c);

#define BRK_MAX_FRAMES 64    /* body frames per request or reply */
#define BRK_TOKEN_LEN 8      /* bytes of the request token workers see as the client address */

typedef struct brk_broker brk_broker;
typedef struct brk_origin brk_origin;

/* How a request's outcome reaches its requester. body frames are valid only during the call. */
typedef struct brk_origin_ops {
    /* The worker's (or MMI's) reply; service is the request's service name. */
    void (*reply)(brk_origin *o, uint64_t req_id, mdp_frame service, const mdp_frame *body,
                  size_t nbody);
    /* The request failed. */
    void (*fail)(brk_origin *o, uint64_t req_id, enum brk_code code);
} brk_origin_ops;

/* An origin: embedded by the caller in its own per-requester struct (a client, an HTTP
 * exchange), initialised with brk_origin_init, and given to brk_origin_gone before that
 * struct goes away if it may still have requests pending. */
struct brk_origin {
    const brk_origin_ops *ops;   /* the caller's callbacks */
    void *arg;                   /* the caller's context, free for its use */
    struct brk_req *reqs;        /* broker-private: this origin's pending requests */
};

static inline void brk_origin_init(brk_origin *o, const brk_origin_ops *ops, void *arg)
{
    o->ops = ops;
    o->arg = arg;
    o->reqs = NULL;
}

/* What the broker sends. frames[0] is the worker's routing identity (ROUTER send); the frames
 * are valid only during the call. */
typedef struct brk_callbacks {
    void *arg;
    void (*send_worker)(void *arg, const mdp_frame *frames, size_t n);
    /* The broker forgot this worker: it sent it DISCONNECT (MDP), the worker sent DISCONNECT,
     * or it missed its heartbeats; the socket layer may drop its state for the identity. Not
     * called for brk_worker_gone (the socket layer already knows). May be NULL. */
    void (*disconnect_worker)(void *arg, mdp_frame identity);
    /* A reply for the ZeroMQ client port (requests made through brk_client_input); frames[0]
     * is the client's identity. NULL when there is no client port. */
    void (*send_client)(void *arg, const mdp_frame *frames, size_t n);
    /* The worker holding sticky key `key` of service `service` died; the key is free. */
    void (*on_moved)(void *arg, mdp_frame service, mdp_frame key);
} brk_callbacks;

typedef struct brk_params {
    const char *default_service; /* seed/PPP workers and requests naming no service ("default") */
    uint64_t request_timeout_ns; /* deadline of a request after brk_request (5 s) */
    uint32_t queue_max;          /* waiting requests per service before `overloaded` (1000) */
    uint64_t ppp_heartbeat_ns;   /* heartbeat interval for Paranoid Pirate workers (1 s) */
    uint64_t mdp_heartbeat_ns;   /* heartbeat interval for MDP workers (2.5 s) */
    uint32_t liveness;           /* missed intervals before a worker is dead (3) */
    uint64_t service_grace_ns;   /* how long a service without workers still queues (30 s) */
    size_t max_body;             /* body bytes of a request (1 MiB); beyond: `too_large` */
} brk_params;

void brk_params_default(brk_params *p);

/* Per-service counters (read-only for callers). */
typedef struct brk_svc_stats {
    uint64_t requests;           /* brk_request calls (MMI included) */
    uint64_t ok;                 /* replies delivered */
    uint64_t failed[BRK_CODE_COUNT]; /* failures by brk_code */
    uint64_t retries;            /* requests re-queued after their worker died */
    uint64_t late_dropped;       /* replies dropped: timed out, cancelled, or from a dead worker */
    uint64_t cancelled;          /* requests dropped by brk_origin_gone */
} brk_svc_stats;

/* Broker-wide counters. */
typedef struct brk_stats {
    uint64_t bad_worker[MDP_ERR_COUNT]; /* malformed worker-port messages by -mdp_err */
    uint64_t bad_client[MDP_ERR_COUNT]; /* malformed client-port messages by -mdp_err */
    uint64_t unexpected;         /* valid but unexpected worker commands (MDP: DISCONNECT sent) */
    uint64_t bad_address;        /* replies whose address is no request this worker holds */
    uint64_t late_unknown;       /* replies from unknown workers whose request is gone too */
    uint64_t mmi_service_rejected; /* MDP workers that tried to register an mmi.* service */
    uint64_t workers_expired;    /* declared dead for missing heartbeats */
    uint64_t workers_gone;       /* ended by brk_worker_gone / DISCONNECT from the worker */
    uint64_t moved;              /* sticky keys released because their worker died */
    uint64_t unknown_service;    /* requests failed no_service for a service never seen */
    uint64_t mmi;                /* MMI requests answered */
} brk_stats;

typedef struct brk_req brk_req;
typedef struct brk_worker brk_worker;
typedef struct brk_service brk_service;

/* A service (read-only for callers; iterate with brk_service_next). */
struct brk_service {
    rc_hnode node;               /* in the broker's table, by name hash */
    brk_service *next, *prev;    /* all services, creation order */
    uint8_t name[MDP_SERVICE_MAX]; /* service name */
    uint8_t name_len;            /* its bytes */
    bool at_most_once;           /* a lost in-flight request fails instead of a retry */
    bool mmi;                    /* an mmi.* pseudo-service (never has workers) */
    uint32_t nworkers;           /* workers serving it */
    uint32_t nidle;              /* of them idle */
    brk_worker *idle_head, *idle_tail; /* idle workers, least recently used first */
    brk_req *q_head, *q_tail;    /* waiting requests, FIFO */
    uint32_t qlen;               /* requests in the queue */
    uint64_t last_worker;        /* loop ns when a worker last served it (or brk_init) */
    brk_svc_stats st;
};

/* A worker (read-only for callers; iterate with brk_worker_next). */
struct brk_worker {
    rc_hnode node;               /* in the broker's table, by identity hash */
    brk_worker *next, *prev;     /* all workers of the broker, registration order */
    brk_worker *inext, *iprev;   /* the service's idle list */
    brk_service *svc;            /* the service it serves */
    enum mdp_proto proto;        /* what it speaks */
    bool busy;                   /* a request (maybe timed out) is in flight */
    bool idle_listed;            /* in svc's idle list */
    uint8_t id_len;              /* routing identity bytes */
    uint8_t id[MDP_ID_MAX];      /* routing identity */
    uint64_t token;              /* token of the request in flight (valid while busy) */
    brk_req *cur;                /* that request, NULL when it timed out or was cancelled */
    brk_req *sq_head, *sq_tail;  /* sticky requests waiting for this worker, FIFO */
    uint32_t sqlen;              /* their number */
    uint32_t nsticky;            /* sticky keys bound to it */
    struct brk_sticky *sticky_head; /* those keys (broker-private list) */
    uint64_t served;             /* replies delivered */
    uint64_t registered;         /* loop ns of READY */
    uint64_t last_heard;         /* loop ns of its last message */
    uint64_t hb_next;            /* loop ns of the next HEARTBEAT to send (PPP/MDP) */
    uint64_t expiry;             /* loop ns after which it is dead (PPP/MDP) */
    rc_heap_node timer;          /* key: min(hb_next, expiry); not in the heap for LRU */
};

struct brk_broker {
    brk_params p;                /* copied at init (default_service is copied too) */
    brk_callbacks cb;            /* output */
    rc_htab services;            /* brk_service by name */
    rc_htab workers;             /* brk_worker by identity */
    rc_htab reqs;                /* brk_req by token */
    rc_htab stickies;            /* sticky key bindings */
    brk_service *svc_head, *svc_tail; /* services, creation order */
    brk_worker *w_head, *w_tail; /* workers, registration order */
    rc_heap wtimers;             /* workers by next heartbeat/expiry */
    rc_heap deadlines;           /* requests by deadline */
    brk_origin zclients;         /* the origin of brk_client_input requests */
    uint64_t next_token;         /* next request token (never 0) */
    uint64_t started;            /* loop ns of brk_init */
    uint8_t default_name[MDP_SERVICE_MAX]; /* copy of p.default_service */
    uint8_t default_len;
    brk_stats st;
};

/* brk_init sets up b (caller-owned storage) with params (NULL: defaults) and callbacks.
 * Returns 0, or -1 when default_service is empty or longer than MDP_SERVICE_MAX. */
int brk_init(brk_broker *b, const brk_params *params, const brk_callbacks *cb, uint64_t now);

/* brk_release frees everything; pending requests are dropped without callbacks. */
void brk_release(brk_broker *b);

/* brk_worker_input handles one message from the worker port (frames[0] = identity). */
void brk_worker_input(brk_broker *b, const mdp_frame *frames, size_t n, uint64_t now);

/* brk_worker_gone: the socket layer saw worker `identity` disconnect. Its in-flight request
 * follows the retry rule; nothing is sent to it. Unknown identities are ignored. */
void brk_worker_gone(brk_broker *b, mdp_frame identity, uint64_t now);

/* brk_client_input handles one message from the ZeroMQ client port (frames[0] = identity):
 * LRU and MDP requests, MMI; replies go out through cb.send_client. Failed requests get no
 * answer on this port (neither protocol has an error reply; REQ clients time out and retry). */
void brk_client_input(brk_broker *b, const mdp_frame *frames, size_t n, uint64_t now);

/* brk_request submits a request from origin o. req_id is the origin's own id, echoed in the
 * callback. service (len 0: the default service) and body frames are copied once into one
 * allocation; sticky (len 0: none) is the sticky key. Exactly one of o->ops->reply/fail follows,
 * possibly before brk_request returns (MMI, no_service, overloaded, too_large). Returns true
 * when the request is still pending after the call. */
bool brk_request(brk_broker *b, brk_origin *o, uint64_t req_id, mdp_frame service,
                 const mdp_frame *body, size_t nbody, mdp_frame sticky, uint64_t now);

/* brk_origin_gone cancels every pending request of o without callbacks (a request in flight
 * keeps its worker busy until the worker answers; that reply is dropped and counted). */
void brk_origin_gone(brk_broker *b, brk_origin *o);

/* brk_service_set_at_most_once marks a service (created if needed) at-most-once: a request
 * whose worker dies fails `worker_lost` instead of being retried. Returns 0 or -1 (bad name,
 * no memory). */
int brk_service_set_at_most_once(brk_broker *b, mdp_frame service, bool on);

/* brk_sticky_forget drops the binding of a sticky key (e.g. its room was deleted). */
void brk_sticky_forget(brk_broker *b, mdp_frame service, mdp_frame key);

/* brk_tick runs the timers due at now: heartbeats, worker expiry, request deadlines. */
void brk_tick(brk_broker *b, uint64_t now);

/* brk_next_deadline is the loop ns of the next timer (UINT64_MAX: none). */
uint64_t brk_next_deadline(const brk_broker *b);

/* Read-only iteration: brk_service_next(b, NULL) is the first service; brk_worker_next
 * likewise over all workers (w->svc says whose). Do not call other brk_* in between. */
const brk_service *brk_service_next(const brk_broker *b, const brk_service *s);
const brk_worker *brk_worker_next(const brk_broker *b, const brk_worker *w);
const brk_service *brk_service_find(const brk_broker *b, mdp_frame name);

#endif
