/* redisrooms.h — rooms sequenced in Redis (--redis): the seam between src/rooms/ and the
 * cluster engine (src/cluster/cluster.h; the design is docs/cluster.md).
 *
 * In Redis mode a room's msg_ids come from the sequencing script, not from rc_room_publish:
 *   - a publish goes to Redis (rc_redisrooms_publish); its ack, or its `unavailable` error, is
 *     sent when the script has answered — never an ack for a message Redis has not sequenced;
 *   - the node is subscribed to the channel of every room that exists on it, and fans each
 *     channel message out to the room's local members in msg_id order (rc_room_deliver_at);
 *   - a room becomes *live* only once it is in step with Redis: when it is created (its first
 *     join) or after its subscription was renewed (Redis or the connection went away) or a
 *     message did not follow the last one delivered, the node reads the room's stream (epoch,
 *     last msg_id, kept entries) and merges it with the channel messages that arrived
 *     meanwhile, by msg_id: no gap, no duplicate. Joins wait (their request is kept and run
 *     again) until the room is live, so a live room answers a join — and a recovery with
 *     since/epoch from its history — exactly as the embedded engine does; a since older than
 *     the node's copy but still in Redis's stream is recovered from a read of the stream (the
 *     join waits for it, rc_redisrooms_recover_hold). When the stream no
 *     longer holds what members missed, or the epoch changed under them, the members are
 *     closed with 1013 (try again) so that they rejoin and learn `recovered:false`: never a
 *     silent gap.
 * A room's state (state_key) is kept in Redis by the same script: every read of the room
 * brings the node's copy of it back to Redis's as of the read, and deliveries after that apply
 * their keys. Publishes whose answer carries the msg_id and whose origin is not a member
 * waiting for an ack (the HTTP API, roomcast.publish, workers, room services) go through
 * rc_redisrooms_publish_as; the chat port's members and messages through
 * rc_redisrooms_member_hold and rc_redisrooms_chat_publish.
 * The embedded engine pays one pointer test per publish and join (rc_rooms.cluster NULL).
 */
#ifndef RC_REDISROOMS_H
#define RC_REDISROOMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/cluster.h"
#include "codec/json.h"
#include "core/loop.h"

struct rc_rooms;
struct rc_room;
struct rc_endpoint;

typedef struct rc_redisrooms rc_redisrooms;

/* What an endpoint waits for from Redis (a publish's answer, a join until its room is live):
 * listed on the endpoint so that its end detaches them (rc_redisrooms_endpoint_gone). */
typedef struct rc_cwait {
    struct rc_cwait *prev, *next;
    struct rc_endpoint *ep;  /* NULL once the endpoint is gone */
} rc_cwait;

typedef struct rc_redisrooms_stats {
    uint64_t syncs;          /* room reads merged (a room created, or brought back in step) */
    uint64_t resyncs_lost;   /* of them, where members had missed what Redis no longer holds
                                (members closed with 1013 to rejoin) */
    uint64_t joins_waited;   /* joins that waited for their room to be live */
    uint64_t deep_recoveries; /* joins recovered from a read of Redis's stream because the
                                 room's copy no longer reached back */
    uint64_t unavailable;    /* publishes answered `unavailable` */
} rc_redisrooms_stats;

/* rc_redisrooms_new starts the cluster engine on loop for t (t->cluster is set): cfg's url and
 * prefix are the flags; history size and room TTL come from t's config. NULL with a message in
 * err when it cannot (a bad URL, an unknown host). */
rc_redisrooms *rc_redisrooms_new(struct rc_rooms *t, rc_loop *loop, const char *url,
                                 const char *prefix, char *err, size_t cap);

/* rc_redisrooms_free stops the engine (after every endpoint and room is gone). */
void rc_redisrooms_free(rc_redisrooms *r);

/* rc_redisrooms_flush writes the commands of this loop iteration (before-sleep). */
void rc_redisrooms_flush(rc_redisrooms *r);

bool rc_redisrooms_available(const rc_redisrooms *r);
void rc_redisrooms_stats_get(const rc_redisrooms *r, rc_redisrooms_stats *out,
                             rc_cluster_stats *cl);

/* rc_redisrooms_join_hold is asked before a join of room name[0..len) by ep is read: returns 0
 * when the room is live (the join goes on as usual), 1 when the request p[0..n) was kept to be
 * run again (rc_roomproto_join) once it is, -1 after answering an error. */
int rc_redisrooms_join_hold(struct rc_rooms *t, struct rc_endpoint *ep, const char *name,
                            size_t len, const char *p, size_t n);

/* The chat port (app/client.c): rc_redisrooms_member_hold makes ep a member of the room
 * called name[0..len) without a reply: returns 0 when the room is live (the caller joins it
 * now, rc_room_join), 1 when the membership waits for the room to be live (or already
 * waited), -1 after answering an error. rc_redisrooms_chat_publish publishes the chat
 * message p[0..n) (a JSON object, client_id of ep) into that room through the script —
 * behind ep's membership when that still waits, so that the sender sees its own message.
 * Returns 0, or -1 after answering an error. */
int rc_redisrooms_member_hold(struct rc_rooms *t, struct rc_endpoint *ep, const char *name,
                              size_t len);
int rc_redisrooms_chat_publish(struct rc_rooms *t, struct rc_endpoint *ep, const char *name,
                               size_t len, const char *p, size_t n);

/* rc_redisrooms_recover_hold is asked before a join with since/epoch of a live room is read:
 * when the room's copy of the stream no longer reaches back to since but Redis's stream may,
 * the request p[0..n) is kept, the stream is read from since, and the join is run again with
 * that read as its replay (rc_redisrooms_replay). Returns 1 when kept, else 0. */
int rc_redisrooms_recover_hold(struct rc_rooms *t, struct rc_endpoint *ep, struct rc_room *room,
                               uint64_t since, const char *epoch, size_t epoch_len,
                               const char *p, size_t n);

/* rc_redisrooms_replay: while a join kept by rc_redisrooms_recover_hold runs again, the
 * messages after since it read (and those delivered meanwhile) replace the room's own
 * history: returns true for that join (ep, room, since) when they reach back to since, and
 * then rc_redisrooms_replay_send queues them to ep. */
bool rc_redisrooms_replay(const struct rc_rooms *t, const struct rc_endpoint *ep,
                          const struct rc_room *room, uint64_t since);
void rc_redisrooms_replay_send(struct rc_rooms *t, struct rc_endpoint *ep);

/* rc_redisrooms_publish sends payload[0..len) (the frame of the message minus its msg_id,
 * docs/cluster.md "Publish") of ep into room through the sequencing script, with the
 * idempotency key hash khash (0: none). ack (NULL or RC_JSON_NONE: none) is the client's ack
 * token, acknowledged once sequenced. Returns 0, or -1 after answering an error. */
struct rc_statekey;
int rc_redisrooms_publish(struct rc_rooms *t, struct rc_endpoint *ep, struct rc_room *room,
                          const void *payload, size_t len, uint64_t khash,
                          const struct rc_statekey *sk, const rc_json_span *ack);

/* Publishes by the server, whose answer carries the msg_id (the HTTP API, roomcast.publish,
 * the worker broker, the chat port): the caller is not an endpoint waiting for an ack, so it
 * is called back. rc_redisrooms_publish_as sends payload[0..len) (as for
 * rc_redisrooms_publish) into the room called name[0..name_len) — which need not exist on
 * this node — with the idempotency key hash khash (0: none) and state key sk (NULL: none).
 * cb(arg, status, msg_id, duplicate) runs exactly once, later, unless cancelled: status 0, or
 * -ECONNRESET (outcome unknown: may have been sequenced), -EPROTO (an error reply). Returns
 * a handle valid until cb runs, or NULL with *err set (-EAGAIN unavailable, -ENOBUFS not
 * keeping up, -ENOMEM, -EINVAL) and no callback. rc_redisrooms_pub_cancel: the caller is
 * going, cb will not run (the call itself cannot be taken back). Failures count in
 * `unavailable`; rc_redisrooms_strerror says what each status means for the client. */
typedef struct rc_redisrooms_pub rc_redisrooms_pub;
typedef void rc_redisrooms_pub_fn(void *arg, int status, uint64_t msg_id, bool duplicate);
rc_redisrooms_pub *rc_redisrooms_publish_as(struct rc_rooms *t, const char *name,
                                            size_t name_len, const void *payload, size_t len,
                                            uint64_t khash, const struct rc_statekey *sk,
                                            rc_redisrooms_pub_fn *cb, void *arg, int *err);
void rc_redisrooms_pub_cancel(rc_redisrooms_pub *h);
const char *rc_redisrooms_strerror(int status);

/* rc_redisrooms_joins_waiting says whether joins wait for room to be in step (room.c does not
 * let it go meanwhile). */
bool rc_redisrooms_joins_waiting(const struct rc_room *room);

/* ---- members across nodes (redispresence.h) ---- */
struct rc_redispresence_stats;

/* rc_redisrooms_engine is the cluster engine; rc_redisrooms_pstats the presence counters. */
rc_cluster *rc_redisrooms_engine(rc_redisrooms *r);
struct rc_redispresence_stats *rc_redisrooms_pstats(rc_redisrooms *r);

/* Writes this node's figures as a JSON object (at most cap bytes) for the node registry
 * (docs/cluster.md, "Nodes"); returns its length. */
typedef size_t rc_redisrooms_info_fn(void *arg, char *out, size_t cap);
void rc_redisrooms_set_node_info(rc_redisrooms *r, rc_redisrooms_info_fn *fn, void *arg);

/* Called by room.c: a room is being freed; an endpoint is gone. */
void rc_redisrooms_room_gone(struct rc_rooms *t, struct rc_room *room);
void rc_redisrooms_endpoint_gone(struct rc_rooms *t, struct rc_endpoint *ep);

#endif
