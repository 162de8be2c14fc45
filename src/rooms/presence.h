/* presence.h — telling members who comes and goes (docs/protocol.md, "presence").
 *
 * Only members that joined with "presence":true hear anything, and room->npresence counts
 * them, so a room where nobody asked pays one compare per join and leave and nothing on the
 * fan-out. In a room of at most presence_limit members, each change is one event queued at
 * once to those members: it sits exactly between the messages sequenced before and after it
 * (its after_msg_id), without taking a msg_id. Above the limit, changes are gathered and told
 * once a second as one batch with their net effect — who is in now that was not, and the
 * reverse — so a room of thousands does not send thousands of events per change, and a batch
 * is flushed before any single event, keeping the order of what members are told.
 * With --redis the room's size counts its members on every node, and changes on other nodes
 * arrive through rc_presence_remote.
 */
#ifndef RC_PRESENCE_H
#define RC_PRESENCE_H

#include "rooms/room.h"

/* rc_presence_join tells that ep has just become a member of room (ep itself hears nothing:
 * its `joined` says who is there). */
void rc_presence_join(rc_rooms *t, rc_room *room, const rc_endpoint *ep);

/* rc_presence_leave tells that ep has just stopped being a member of room, for reason (enum
 * rc_leave). */
void rc_presence_leave(rc_rooms *t, rc_room *room, const rc_endpoint *ep, int reason);

/* rc_presence_remote tells a change of a member on another node (--redis,
 * rooms/redispresence.h): client_id joined (with its `"user":...,` text user[0..ulen), or
 * empty) or left for reason (its JSON name). The remote members' mirror already has it. */
void rc_presence_remote(rc_rooms *t, rc_room *room, uint64_t client_id, const char *user,
                        size_t ulen, bool join, const char *reason);

/* rc_presence_flush sends every gathered batch (once a second). */
void rc_presence_flush(rc_rooms *t);

/* rc_presence_room_gone forgets what room had gathered (the room is being freed). */
void rc_presence_room_gone(rc_rooms *t, rc_room *room);

/* rc_presence_reason_name is the JSON name of an enum rc_leave. */
const char *rc_presence_reason_name(int reason);

#endif
