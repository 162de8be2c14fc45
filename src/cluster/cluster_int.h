/* cluster_int.h — what src/cluster/cluster.c and src/cluster/clnodes.c share (internal: not
 * for the layers above, which use cluster.h).
 *
 * cluster.c is the engine (connections, sequencing, subscriptions, reads); clnodes.c adds
 * presence across nodes and the node registry (heartbeats, reaper, the API's reads) on the
 * same publisher connection, with the same script loading and NOSCRIPT handling. */
#ifndef RC_CLUSTER_INT_H
#define RC_CLUSTER_INT_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/cluster.h"
#include "cluster/redis.h"
#include "core/hash.h"
#include "core/loop.h"

/* Longest key or channel name built (prefix + room + idempotency key + punctuation). */
#define NAME_MAX_LEN 1024
#define PREFIX_MAX 64

/* The scripts, loaded in this order by every publisher handshake. */
enum {
    SCRIPT_PUB, SCRIPT_READ, SCRIPT_RENEW,                       /* cluster.c */
    SCRIPT_PRES, SCRIPT_SYNC, SCRIPT_PRUNE, SCRIPT_NODE,          /* clnodes.c */
    SCRIPT_MEMBERS, SCRIPT_ROOMS, SCRIPT_NODES,
    SCRIPT_COUNT
};
extern const char *const rc_cluster__script_text[SCRIPT_COUNT];
extern const char rc_cluster__pub_script[], rc_cluster__pres_script[], rc_cluster__sync_script[],
    rc_cluster__prune_script[], rc_cluster__node_script[], rc_cluster__members_script[],
    rc_cluster__rooms_script[], rc_cluster__nodes_script[];

typedef struct rc_cluster__batch rc_cluster__batch; /* clpub.c */

struct rc_cluster {
    rc_loop *loop;           /* the caller's loop */
    rc_cluster_hooks h;      /* upward callbacks */
    char prefix[PREFIX_MAX + 1]; /* key prefix */
    uint32_t history_size;   /* XADD MAXLEN */
    uint32_t room_ttl_s;     /* EXPIRE of meta and stream, 0 none */
    uint32_t idem_ttl_s;     /* EX of idempotency records */
    rc_redis *pub;           /* publisher connection: scripts */
    rc_redis *sub;           /* subscriber connection: SUBSCRIBE only */
    char sha[SCRIPT_COUNT][41]; /* SHA1 of each script as SCRIPT LOAD returned it */
    bool sub_ready;          /* sub is up and the control channel is confirmed */
    char node_id[17];        /* random per process: names this node's control channel */
    char ctl[PREFIX_MAX + 24]; /* the control channel "<prefix>:ctl:<node_id>" */
    size_t ctl_len;
    rc_timer health_timer;   /* heartbeat: every health_interval_ns while available */
    uint64_t health_interval_ns, health_timeout_ns;
    uint64_t hb_seq;         /* number of the heartbeat in flight */
    uint64_t hb_sent;        /* when it was published (loop ns), 0 when none is in flight */
    bool hb_replied;         /* the publisher's PUBLISH got its reply */
    bool available;          /* last state reported through on_state */
    rc_htab subs;            /* struct sub by room */
    uint64_t rng;            /* splitmix64 state for candidate epochs */
    uint32_t inflight;       /* script calls sent and not answered */
    uint32_t max_inflight;   /* refuse new calls beyond this (Redis is not keeping up) */
    rc_cluster_stats st;     /* counters (rooms, *_up filled in by stats_get) */
    rc_timer node_timer;     /* node heartbeat: every node_interval_ns while available */
    uint64_t node_interval_ns, node_ttl_ns;
    bool node_inflight;      /* a node heartbeat is waiting for its reply */
    rc_htab open;            /* clpub.c: open batches (publishes of this iteration) by room */
    rc_cluster__batch *open_first, *open_last; /* the same, in the order they opened */
    rc_timer batch_timer;    /* sends open batches at the next loop pass (no before-sleep) */
};

static inline bool reply_is(const redisReply *rp, int type) { return rp && rp->type == type; }

/* clpub.c: send every open batch now (before any other command on the publisher, and at the
 * end of the iteration); fail them all with -ECONNRESET (rc_cluster_free); the timer that
 * sends them when nobody calls rc_cluster_flush. */
void rc_cluster__batches_send(rc_cluster *c);
void rc_cluster__batches_fail(rc_cluster *c);
void rc_cluster__batch_timer(rc_loop *loop, rc_timer *t);
/* cluster.c: a fresh candidate epoch (16 hex digits and a NUL). */
void rc_cluster__new_epoch(rc_cluster *c, char out[17]);

/* clnodes.c: one node heartbeat now (when available and none is in flight); the timer that
 * calls it every node_interval_ns; a presence event found on room's channel. */
void rc_cluster__node_beat(rc_cluster *c);
void rc_cluster__node_timer(rc_loop *loop, rc_timer *t);
void rc_cluster__presence_deliver(rc_cluster *c, const char *room, size_t room_len,
                                  const redisReply *payload);

#endif
