/* cluster.h — rooms sequenced in Redis: publish, subscribe, read back (docs/cluster.md).
 *
 * The engine below the rooms for `--redis`: it knows rooms only as byte strings and messages
 * only as opaque payloads, and talks to the layer above through callbacks (rc_cluster_hooks),
 * so src/rooms/ can adopt it through one narrow seam.
 *
 * Two connections to one Redis (src/cluster/redis.h), both on the caller's loop:
 *   - the publisher runs the sequencing script (one EVALSHA per room per loop iteration,
 *     carrying that room's publishes of the iteration, clpub.c: next msg_ids from the room's
 *     meta hash, XADD to its stream, EXPIRE, idempotency records, one PUBLISH on its channel)
 *     and the read script (epoch, last msg_id and a range of the stream, atomically);
 *     commands are pipelined: every call made during one loop iteration leaves in one write,
 *     replies come back in order;
 *   - the subscriber SUBSCRIBEs to the channel of every room that has members on this node
 *     (reference-counted by rc_cluster_sub/rc_cluster_unsub) and hands each message up, in the
 *     order Redis published it, which is msg_id order (the ordering argument is in the doc).
 * Both reconnect by themselves, and a heartbeat through this node's own control channel
 * catches connections that die silently. The cluster is "available" while both are up and the
 * scripts are loaded; rc_cluster_publish refuses at once (-EAGAIN) otherwise, so the layer above can
 * answer `unavailable` instead of queueing.
 *
 * The rooms use it through src/rooms/redisrooms.h (--redis), which also does the recovery seam
 * merge with rc_cluster_read.
 *
 * Presence across nodes (docs/cluster.md, "Presence"): each room's members on every node are in
 * a Redis hash, changed by one script per join or leave (rc_cluster_presence), which also
 * PUBLISHes the change on the room's channel, so every node hears of it in the room's order
 * (on_presence). Each node registers itself and refreshes a heartbeat key with a TTL
 * (node_interval_ns, node_ttl_ns); the same script removes the members of nodes whose
 * heartbeat expired, publishing their leaves. Reads of the cluster-wide state (rooms, members,
 * nodes) serve the HTTP API. (That part is src/cluster/clnodes.c.)
 */
#ifndef RC_CLUSTER_H
#define RC_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/clwire.h"
#include "core/loop.h"

typedef struct rc_cluster rc_cluster;

/* A message as delivered by the subscriber or read from a stream. Every pointer points into
 * memory that is only valid during the callback. */
typedef struct rc_cluster_msg {
    const char *room;        /* room name, room_len bytes (not NUL-terminated) */
    size_t room_len;
    uint64_t msg_id;         /* the room's sequence number, from 1 */
    const char *epoch;       /* the room's epoch, epoch_len bytes (letters and digits) */
    size_t epoch_len;
    const void *payload;     /* the bytes given to rc_cluster_publish */
    size_t payload_len;
    bool gap;                /* subscriber only: the previous message this node saw in this
                              * room (same subscription, same epoch) was not msg_id - 1, or the
                              * epoch changed: the layer above must re-read or resynchronise */
    bool regressed;          /* subscriber only (gap is set too): same epoch, but msg_id is not
                              * above the last one this node delivered — Redis lost messages it
                              * had acknowledged and reuses their ids. Never show it to
                              * members; the engine has asked Redis for a new epoch for the
                              * room, which the next messages carry: resynchronise members */
} rc_cluster_msg;

typedef struct rc_cluster_hooks {
    /* available changed (both connections up and scripts loaded, or not). */
    void (*on_state)(void *arg, bool available);
    /* A message arrived on the channel of a room this node is subscribed to. */
    void (*on_message)(void *arg, const rc_cluster_msg *m);
    /* The subscription of a room became active — first time or again after the subscriber
     * reconnected (resubscribed true). From now on every message of the room arrives through
     * on_message; what was published before (or while the subscription was down) must be read
     * with rc_cluster_read: the seam is the layer above's (docs/cluster.md, "Recovery"). */
    void (*on_subscribed)(void *arg, const char *room, size_t room_len, bool resubscribed);
    /* A presence change made by another node arrived on the channel of a subscribed room, in
     * its place among the room's messages (may be NULL). */
    void (*on_presence)(void *arg, const char *room, size_t room_len, const rc_clwire_pres *e);
    /* The node's heartbeat found it unregistered: its first heartbeat, or Redis lost its
     * entry (a restart without persistence) or another node reaped it (its heartbeat key
     * expired): the layer above puts its members back (rc_cluster_presence_sync). May be NULL. */
    void (*on_registered)(void *arg);
    /* Writes this node's figures as a JSON object (at most cap bytes) for the node registry;
     * returns its length (0: "{}"). May be NULL. */
    size_t (*node_info)(void *arg, char *out, size_t cap);
    void *arg;
} rc_cluster_hooks;

typedef struct rc_cluster_cfg {
    const char *url;              /* redis://… or unix://… (clwire.h) */
    const char *prefix;           /* key prefix; NULL means "rc" */
    uint32_t history_size;        /* messages kept per room stream (XADD MAXLEN); 0: none */
    uint32_t room_ttl_s;          /* EXPIRE of a room's meta and stream after its last
                                   * publish; 0: never expire */
    uint32_t idem_ttl_s;          /* how long an idempotency key is remembered; 0 means 300 */
    uint64_t connect_timeout_ns;  /* per connection attempt; 0: redis.h's default */
    uint64_t backoff_min_ns;      /* reconnect backoff; 0: redis.h's defaults */
    uint64_t backoff_max_ns;
    uint64_t health_interval_ns;  /* heartbeat period (docs/cluster.md); 0 means 1 s */
    uint64_t health_timeout_ns;   /* a heartbeat not back by then resets a connection; 0: 3 s */
    uint32_t max_inflight;        /* script calls unanswered at most; 0 means 65536 */
    uint64_t node_interval_ns;    /* node heartbeat (registry and reaper) period; 0 means 1 s */
    uint64_t node_ttl_ns;         /* a node whose heartbeat is this old is dead; 0 means 5 s */
} rc_cluster_cfg;

/* rc_cluster_new parses the URL, resolves its host (blocking, once) and starts connecting.
 * Returns NULL with a message in err on a bad URL or prefix, or no memory. */
rc_cluster *rc_cluster_new(rc_loop *loop, const rc_cluster_cfg *cfg, const rc_cluster_hooks *h,
                           char *err, size_t cap);

/* rc_cluster_free closes both connections; callbacks of pending calls run first with
 * status -ECONNRESET. Not from inside a callback of this module. */
void rc_cluster_free(rc_cluster *c);

bool rc_cluster_available(const rc_cluster *c);

/* rc_cluster_node_id is this process's random node id (16 hex digits): it names the control
 * channel and the connections ("<prefix>:<id>:pub" and ":sub" in CLIENT LIST). */
const char *rc_cluster_node_id(const rc_cluster *c);

/* ---- publish ----------------------------------------------------------------------------- */

/* The outcome of a publish. */
typedef struct rc_cluster_seq {
    uint64_t msg_id;         /* the id the message was sequenced as */
    const char *epoch;       /* the room's epoch then (NUL-terminated, valid in the callback) */
    bool duplicate;          /* the idempotency key was seen before: msg_id/epoch are those of
                              * the earlier publish and nothing was published this time */
} rc_cluster_seq;

/* status: 0 (seq is set); -ECONNRESET: the connection was lost before the reply — the message
 * may or may not have been sequenced, so the client must not be acked and may retry with its
 * idempotency key; -EPROTO: Redis answered with an error (logged). */
typedef void rc_cluster_pub_cb(void *arg, int status, const rc_cluster_seq *seq);

/* rc_cluster_publish sequences payload in room through the script: with the room's other
 * publishes of this loop iteration, in call order, when rc_cluster_flush runs (or at the next
 * loop pass, or before the next other command on the publisher). key (idem_len bytes, may
 * be NULL/0) is the idempotency key. cb is called exactly once, later, unless this returns
 * an error: -EAGAIN when the cluster is not available, -ENOBUFS when max_inflight calls are
 * unanswered (Redis is not keeping up), -EINVAL for a room or key too long for a key name,
 * -ENOMEM. The payload is copied. */
int rc_cluster_publish(rc_cluster *c, const char *room, size_t room_len, const void *payload,
                       size_t len, const char *key, size_t key_len, rc_cluster_pub_cb *cb,
                       void *arg);

/* rc_cluster_publish_keyed is rc_cluster_publish that also changes the room's state in the
 * same script (docs/cluster.md, "State"): state_op 's' makes this message the value of state
 * key skey[0..skey_len) ("<msg_id>:<payload>" in the room's state hash), 'd' deletes the key,
 * 0 leaves the state alone. An idempotent repeat changes nothing. Same errors (-EINVAL for
 * another op). */
int rc_cluster_publish_keyed(rc_cluster *c, const char *room, size_t room_len,
                             const void *payload, size_t len, const char *key, size_t key_len,
                             char state_op, const char *skey, size_t skey_len,
                             rc_cluster_pub_cb *cb, void *arg);

/* ---- subscribe --------------------------------------------------------------------------- */

/* rc_cluster_sub counts one more local member of room; the first one subscribes the node to
 * the room's channel (now, or as soon as the subscriber is up). rc_cluster_unsub counts one
 * less; the last one unsubscribes. Return 0, or -ENOMEM (sub) / -ENOENT (unsub of a room
 * without members). Subscriptions survive reconnects: they are renewed on every new
 * subscriber connection, and on_subscribed says when. */
int rc_cluster_sub(rc_cluster *c, const char *room, size_t room_len);
int rc_cluster_unsub(rc_cluster *c, const char *room, size_t room_len);

/* rc_cluster_subscribed says whether room's subscription is active (confirmed by Redis). */
bool rc_cluster_subscribed(const rc_cluster *c, const char *room, size_t room_len);

/* ---- read (recovery) --------------------------------------------------------------------- */

/* The result of a read: taken atomically (one script), so epoch, top and the entries agree. */
typedef struct rc_cluster_range rc_cluster_range;

/* status 0 (range is set), -ECONNRESET, or -EPROTO as for publish. */
typedef void rc_cluster_read_cb(void *arg, int status, const rc_cluster_range *range);

/* rc_cluster_read reads room's epoch, last msg_id, oldest kept msg_id, and up to max entries
 * with msg_id > after (max 0: just the first three). Same errors as publish. */
int rc_cluster_read(rc_cluster *c, const char *room, size_t room_len, uint64_t after,
                    uint32_t max, rc_cluster_read_cb *cb, void *arg);

/* Accessors of a range (valid during the callback only). */
/* rc_cluster_range_epoch is the room's epoch (a read creates a room missing in Redis, empty, in a
 * new epoch: never ""). */
const char *rc_cluster_range_epoch(const rc_cluster_range *r);
/* rc_cluster_range_top is the room's last msg_id (0 when none). */
uint64_t rc_cluster_range_top(const rc_cluster_range *r);
/* rc_cluster_range_first is the oldest msg_id still in the stream (0 when it is empty). */
uint64_t rc_cluster_range_first(const rc_cluster_range *r);
/* rc_cluster_range_count is how many entries were read. */
size_t rc_cluster_range_count(const rc_cluster_range *r);
/* rc_cluster_range_get fills m (room, epoch, msg_id, payload; gap false) with entry i. Returns
 * 0, or -1 if Redis returned an entry in an unexpected shape. */
int rc_cluster_range_get(const rc_cluster_range *r, size_t i, rc_cluster_msg *m);

/* The room's state as of the read's top (taken in the same script): each state key's latest
 * message. rc_cluster_range_state_get fills st with entry i (pointers valid during the
 * callback only); -1 when Redis holds a value not of our format. */
typedef struct rc_cluster_state {
    const char *key;         /* the state key, key_len bytes */
    size_t key_len;
    uint64_t msg_id;         /* the message that set it */
    const void *payload;     /* its payload, as given to rc_cluster_publish_keyed */
    size_t payload_len;
} rc_cluster_state;
size_t rc_cluster_range_state_count(const rc_cluster_range *r);
int rc_cluster_range_state_get(const rc_cluster_range *r, size_t i, rc_cluster_state *st);

/* ---- presence and nodes (docs/cluster.md, "Presence") ----------------------------------- */

/* rc_cluster_presence records that client_id joined (info: its `"user":...,` text, or empty)
 * or left (info: the reason's name) room on this node; announce publishes the change on the
 * room's channel (a namespace with presence off keeps its members in Redis for the API but
 * tells nobody). Fire and forget: a failure is counted, and the node's next
 * rc_cluster_presence_sync of the room repairs it. Returns 0, -EAGAIN (not available),
 * -ENOBUFS, -EINVAL, -ENOMEM. */
int rc_cluster_presence(rc_cluster *c, const char *room, size_t room_len, bool join,
                        uint64_t client_id, const char *info, size_t info_len, bool announce);

/* A member as kept in Redis. */
typedef struct rc_cluster_member {
    uint64_t client_id;
    const char *node;        /* the node it is on (node_len bytes) */
    size_t node_len;
    const char *info;        /* its `"user":...,` text, or empty (info_len bytes) */
    size_t info_len;
} rc_cluster_member;

/* rc_cluster_presence_sync makes this node's members of room in Redis exactly v[0..n) (node
 * ignored): the others of this node are removed and the missing ones added, each change
 * published (announce) as a join or leave. Used when Redis may have missed changes (it was
 * unavailable, or lost or reaped this node). rc_cluster_presence_prune removes this node's
 * members of every room not among rooms[0..n) (NUL-terminated names are not required: lens). */
int rc_cluster_presence_sync(rc_cluster *c, const char *room, size_t room_len, bool announce,
                             const rc_cluster_member *v, size_t n);
int rc_cluster_presence_prune(rc_cluster *c, const char *const *rooms, const size_t *lens,
                              size_t n);

/* Reads. status 0, -ECONNRESET or -EPROTO as for publish; the arrays are valid during the
 * callback only. Each returns 0 or -EAGAIN/-ENOBUFS/-EINVAL/-ENOMEM (then cb is not called). */

/* Members of room on every node, the room's presence version and last msg_id. */
typedef void rc_cluster_members_cb(void *arg, int status, uint64_t version, uint64_t top,
                                   const rc_cluster_member *v, size_t n);
int rc_cluster_members_read(rc_cluster *c, const char *room, size_t room_len,
                            rc_cluster_members_cb *cb, void *arg);

/* Rooms with members on some node: total of them, and up to max with their figures. */
typedef struct rc_cluster_room_info {
    const char *room;
    size_t room_len;
    uint64_t members;        /* members on every node */
    uint64_t last_msg_id;    /* the room's last msg_id in Redis (0: none) */
} rc_cluster_room_info;
typedef void rc_cluster_rooms_cb(void *arg, int status, uint64_t total,
                                 const rc_cluster_room_info *v, size_t n);
int rc_cluster_rooms_read(rc_cluster *c, uint32_t max, rc_cluster_rooms_cb *cb, void *arg);

/* Registered nodes (the dead ones too until they are reaped). */
typedef struct rc_cluster_node_info {
    const char *id;
    size_t id_len;
    uint64_t last_ms;        /* its last heartbeat (Redis's clock, ms since the Unix epoch) */
    bool alive;              /* its heartbeat key has not expired */
    const char *info;        /* its node_info JSON object */
    size_t info_len;
} rc_cluster_node_info;
typedef void rc_cluster_nodes_cb(void *arg, int status, uint64_t now_ms,
                                 const rc_cluster_node_info *v, size_t n);
int rc_cluster_nodes_read(rc_cluster *c, rc_cluster_nodes_cb *cb, void *arg);

/* ---- housekeeping ------------------------------------------------------------------------ */

/* rc_cluster_flush writes the commands queued during this loop iteration now; call it from
 * the before-sleep hook (otherwise they leave at the next wake-up). */
void rc_cluster_flush(rc_cluster *c);

typedef struct rc_cluster_stats {
    uint64_t published;      /* publishes sequenced (script said new) */
    uint64_t duplicates;     /* publishes answered from an idempotency record */
    uint64_t publish_failed; /* publishes that ended in -ECONNRESET or -EPROTO */
    uint64_t delivered;      /* channel messages handed to on_message */
    uint64_t gaps;           /* of them, with gap set */
    uint64_t regressions;    /* of them, with regressed set (Redis went back) */
    uint64_t bad_messages;   /* channel messages that were not of our format (dropped) */
    uint64_t noscript;       /* NOSCRIPT replies (scripts reloaded) */
    uint64_t heartbeat_failures; /* heartbeats that did not come back (a connection reset) */
    uint32_t rooms;          /* rooms with local members (subscriptions wanted) */
    uint32_t inflight;       /* script calls sent and not answered yet */
    uint64_t pub_commands;   /* commands the publisher connection sent (scripts, heartbeats) */
    uint64_t pub_writes;     /* write() calls they took: pub_commands / pub_writes is the
                              * pipelining factor */
    uint64_t presence_sent;  /* presence changes sent (joins and leaves of local members) */
    uint64_t presence_syncs; /* rooms whose members were put back (presence_sync) */
    uint64_t presence_failed; /* presence and node calls that failed (repaired by a sync) */
    uint64_t presence_events; /* presence changes of other nodes received */
    uint64_t node_beats;     /* node heartbeats answered */
    uint64_t reaped_nodes;   /* dead nodes this node removed */
    uint64_t reaped_members; /* their members it removed (leaves published) */
    uint32_t nodes_alive;    /* live nodes as of the last heartbeat (this one included) */
    bool publisher_up;       /* the publisher connection is up with its scripts */
    bool subscriber_up;      /* the subscriber connection is up and on the control channel */
} rc_cluster_stats;

void rc_cluster_stats_get(const rc_cluster *c, rc_cluster_stats *out);

#endif
