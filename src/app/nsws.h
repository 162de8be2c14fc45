/* nsws.h — observers of NetSync rooms over the room protocol (docs/netsync.md, "Observers").
 *
 * A client of roomcast's room protocol (WebSocket or TCP) can watch a NetSync room without
 * speaking ZeroMQ: it
 * sends {"type":"netsync_observe","room":R} and then receives, as JSON, what the room
 * publishes — the decoded room state at the room's broadcast cadence (every ROOM_TRANSFORM or
 * mapping), variable syncs, and RPCs. It may also send RPCs (as client number 0) and set
 * global or client variables, through the same functions the REST bridge uses, so the
 * conflict rule and the limits are the ZeroMQ clients' own.
 *
 * Cost: each published event is encoded to JSON once per room and queued, encoded once per wire
 * format, to every observer of that room (rc_endpoints_send_text); rooms nobody observes cost
 * one hash lookup per event. An observer that cannot keep up is cut off by the usual
 * --max-pending rule.
 *
 * Protocol-8 rooms (ns8room.h) have no watch callback: the observed ids are sampled on one
 * timer at the v8 broadcast cadence while anything is observed, and a v8 room's state
 * ("protocol":8: members, decoded head/hands/physical, objects) and variables are sent when
 * they changed since the last sample sent, or after the v8 idle interval. {"type":
 * "netsync_rooms"} lists the rooms of both generations. v0.6 messages are unchanged.
 *
 * Observed rooms are kept by id, not by nsy_room, so a room can be observed before its first
 * headset connects and across its deletion and re-creation. This module counts the rooms each
 * endpoint observes (at most --max-rooms-per-client) in a table of its own; rc_nsws_forget
 * runs when an endpoint goes.
 */
#ifndef RC_NSWS_H
#define RC_NSWS_H

#include <stddef.h>

#include "codec/json.h"
#include "rooms/endpoint.h"

struct rc_netsync;
struct rc_server;
typedef struct rc_nsws rc_nsws;

/* rc_nsws_new attaches the observers to ns (as its watcher). NULL when out of memory. */
rc_nsws *rc_nsws_new(struct rc_server *srv, struct rc_netsync *ns);

/* rc_nsws_free detaches from the transport and forgets every observer (connections stay). */
void rc_nsws_free(rc_nsws *w);

/* RC_NSWS_PREFIX starts the room-protocol types this module answers. */
#define RC_NSWS_PREFIX "netsync_"

/* rc_nsws_request is the room protocol's extension handler for those types (roomproto.h); arg
 * is the server. It answers errors itself (netsync_off when the server has no NetSync
 * transport, so it is registered whether or not NetSync is on). */
int rc_nsws_request(void *arg, rc_endpoint *ep, const char *type, size_t type_len,
                    const char *p, size_t n, const rc_json_top *t);

/* Gauges and counters for /metrics. */
typedef struct rc_nsws_counts {
    uint64_t observations;       /* (endpoint, room) pairs observed now */
    uint64_t rooms;              /* distinct room ids observed now */
    uint64_t frames_out;         /* frames queued to observers (events × observers), total */
} rc_nsws_counts;
rc_nsws_counts rc_nsws_counts_of(const rc_nsws *w);

/* rc_nsws_forget removes ep from every room it observes (the endpoint is going). */
void rc_nsws_forget(rc_nsws *w, rc_endpoint *ep);

#endif
