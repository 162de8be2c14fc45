/* redispresence.h — members across nodes (--redis; docs/cluster.md, "Presence").
 *
 * Each room's members on every node are kept in Redis (src/cluster/cluster.h,
 * rc_cluster_presence): this node records its own members' joins and leaves there, and every
 * change is published on the room's channel, where the other nodes find it in its place among
 * the room's messages. A node keeps a mirror of a room's members on other nodes (rc_room.remote)
 * so that a `joined` lists them and presence events tell their comings and goings exactly as
 * for local members (rooms/presence.h):
 *   - the mirror is loaded with a read of the room's members when the room is brought in step
 *     (redisrooms.c, sync_start, once its subscription is active); changes that arrive while
 *     the read is out are buffered and applied after it when their version is newer than the
 *     read's (the read already holds the others): no change lost or applied twice;
 *   - after the subscription was lost (changes may have been missed) the mirror is loaded
 *     again and the difference is told as joins and leaves;
 *   - after Redis was unavailable, or when the node's heartbeat finds it unregistered (reaped
 *     by another node, or Redis lost it), the node puts its members back (rc_redispresence_reassert).
 * A dead node's members are removed by another node's heartbeat (cluster.c), whose leaves
 * reach every node like any other. Rooms of a namespace with presence off keep their members
 * in Redis (for the cluster-wide /api/rooms) but publish no change and keep no mirror.
 */
#ifndef RC_REDISPRESENCE_H
#define RC_REDISPRESENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/clwire.h"
#include "rooms/room.h"

struct rc_textbuf;

/* The remote members of a room (opaque but for the count). */
typedef struct rc_rmembers {
    uint32_t n;              /* members on other nodes */
} rc_rmembers;

typedef struct rc_redispresence_stats {
    uint64_t loads;          /* mirrors loaded from Redis */
    uint64_t reasserts;      /* times this node put its members back */
    uint64_t remote_joins;   /* joins of remote members applied */
    uint64_t remote_leaves;  /* leaves of remote members applied */
    uint32_t remote_members; /* members of other nodes mirrored now (gauge) */
} rc_redispresence_stats;

/* rc_redispresence_count is the number of room's members on other nodes. */
static inline uint32_t rc_redispresence_count(const rc_room *room)
{
    return room->remote ? room->remote->n : 0;
}

/* rc_redispresence_local records a local member's join (join true) or leave (for reason) of
 * room in Redis (room.c calls it when t->cluster). */
void rc_redispresence_local(rc_rooms *t, rc_room *room, const rc_endpoint *ep, bool join,
                            int reason);

/* rc_redispresence_event applies a change made on another node (cluster.h on_presence). */
void rc_redispresence_event(rc_rooms *t, rc_room *room, const rc_clwire_pres *e);

/* rc_redispresence_load loads room's mirror if it is not loaded or may be stale (call when
 * the room's subscription is active; the read goes before the room's stream read). */
void rc_redispresence_load(rc_rooms *t, rc_room *room);

/* rc_redispresence_stale: the subscription was lost; every mirror is loaded again when its
 * room's subscription is renewed. */
void rc_redispresence_stale(rc_rooms *t);

/* rc_redispresence_reassert puts this node's members of every room back into Redis and
 * removes those it no longer has. */
void rc_redispresence_reassert(rc_rooms *t);

/* rc_redispresence_room_gone frees room's mirror (the room is being freed). */
void rc_redispresence_room_gone(rc_rooms *t, rc_room *room);

/* rc_redispresence_ids appends ",<client_id>" for every remote member of room (for `joined`);
 * rc_redispresence_users appends `"<client_id>":<user>` entries of those that have a user,
 * each preceded by "," or, for the first when *any is false, by `,"users":{` (setting *any). */
void rc_redispresence_ids(const rc_room *room, struct rc_textbuf *out, bool *first);
void rc_redispresence_users(const rc_room *room, struct rc_textbuf *out, bool *any);

void rc_redispresence_stats_get(const rc_rooms *t, rc_redispresence_stats *out);

#endif
