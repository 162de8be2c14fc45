/* nsws.h — WebSocket observers of NetSync rooms (docs/netsync.md, "Observers").
 *
 * A client of roomcast's room protocol can watch a NetSync room without speaking ZeroMQ: it
 * sends {"type":"netsync_observe","room":R} and then receives, as JSON, what the room
 * publishes — the decoded room state at the room's broadcast cadence (every ROOM_TRANSFORM or
 * mapping), variable syncs, and RPCs. It may also send RPCs (as client number 0) and set
 * global or client variables, through the same functions the REST bridge uses, so the
 * conflict rule and the limits are the ZeroMQ clients' own.
 *
 * Cost: each published event is encoded to JSON once per room and the same frame is queued
 * to every observer of that room; rooms nobody observes cost one hash lookup per event. An
 * observer that cannot keep up is cut off by the usual --max-pending rule.
 *
 * Observed rooms are kept by id, not by nsy_room, so a room can be observed before its first
 * headset connects and across its deletion and re-creation. A connection counts the rooms it
 * observes in c->nsobs (at most --max-rooms-per-client); rc_nsws_forget runs when it closes.
 */
#ifndef RC_NSWS_H
#define RC_NSWS_H

#include <stddef.h>

#include "codec/json.h"
#include "transport/conn.h"

struct rc_netsync;
typedef struct rc_nsws rc_nsws;

/* rc_nsws_new attaches the observers to ns (as its watcher). NULL when out of memory. */
rc_nsws *rc_nsws_new(struct rc_server *srv, struct rc_netsync *ns);

/* rc_nsws_free detaches from the transport and forgets every observer (connections stay). */
void rc_nsws_free(rc_nsws *w);

/* rc_nsws_is_type is true for the message types this module owns ("netsync_" prefix). */
bool rc_nsws_is_type(const char *type, size_t len);

/* rc_nsws_on_text handles one such message of connection c: p[0..n) scanned into *t. Answers
 * errors itself (RC_ERR_NETSYNC_OFF when srv has no NetSync transport). */
void rc_nsws_on_text(rc_conn *c, const char *type, size_t type_len, const char *p, size_t n,
                     const rc_json_top *t);

/* Gauges and counters for /metrics. */
typedef struct rc_nsws_counts {
    uint64_t observations;       /* (connection, room) pairs observed now */
    uint64_t rooms;              /* distinct room ids observed now */
    uint64_t frames_out;         /* frames queued to observers (events × observers), total */
} rc_nsws_counts;
rc_nsws_counts rc_nsws_counts_of(const rc_nsws *w);

/* rc_nsws_forget removes c from every room it observes (the connection is closing). */
void rc_nsws_forget(rc_nsws *w, rc_conn *c);

#endif
