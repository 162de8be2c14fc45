/* endpoint.h — a room member, whatever carries its bytes.
 *
 * Rooms never see sockets. A member is an rc_endpoint embedded in whatever the transport keeps
 * per client (a WebSocket or TCP connection, and later a ZeroMQ worker or a cluster peer): its
 * client id, the rooms it is in, the acknowledgements it is owed, the wire format it reads
 * (rooms/wire.h) and the operations its owner implements:
 *
 *   deliver  queue one frame already encoded in the endpoint's wire format (a message pointer
 *            that may stand for a sub range of a message, core/msg.h: read it with
 *            rc_msg_bytes, hold it with rc_msg_ref/unref). It must only queue: it runs inside
 *            a room's fan-out, so it must not change any room's membership (a client over its
 *            output budget is cut off later, outside the fan-out).
 *   replay   the same for a frame from a room's history (outside the output budget, and not a
 *            fresh delivery for the latency metrics).
 *   lost     a message meant for this endpoint could not be encoded (out of memory): it has
 *            lost the total order and must be cut off, later, as deliver would.
 *   close    end the endpoint for a server-side reason, given as a WebSocket close code and a
 *            reason (every transport maps the codes to its own way of saying so). It may run
 *            synchronously and leave every room.
 *   find, at, set   (optional) edit the frames queued and not yet started, for conflation
 *            (room.c): find the last one whose message has a conflation key and mark
 *            (rc_msg.ckey, rc_msg.mark), read one, replace or remove one (transport/outq.h's
 *            rc_outq_find, rc_outq_at and rc_outq_set have the exact contract).
 *
 * The owner calls rc_endpoint_gone (room.h) when the endpoint stops being open, so it is out of
 * every room before anything else can be queued to it.
 */
#ifndef RC_ENDPOINT_H
#define RC_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"

typedef struct rc_endpoint rc_endpoint;

/* Bytes of a session token (sent as twice as many hex digits). */
#define RC_SESSION_LEN 16
struct rc_room;

/* A room this endpoint is in, and where the endpoint sits in that room's member array. */
typedef struct rc_membership {
    struct rc_room *room;
    uint32_t slot;           /* index in room->members */
} rc_membership;

/* An acknowledgement to send once the room's durable log has written batch lsn (--fsync
 * always). */
typedef struct rc_pending_ack {
    struct rc_room *room;    /* the room whose log holds the message */
    uint64_t lsn;            /* log batch that must be durable first */
    rc_msg *msg;             /* the encoded ack (a reference) */
} rc_pending_ack;

typedef void rc_deliver_fn(rc_endpoint *ep, rc_msg *frame);

/* Why a member leaves a room: what presence events say (docs/protocol.md). An endpoint's owner
 * sets end_reason before rc_endpoint_gone when it knows better than "dropped". */
enum rc_leave {
    RC_LEAVE_DROPPED = 0,    /* the server lost it: no answer to pings, a reset, too slow */
    RC_LEAVE_CLOSED,         /* it closed its connection */
    RC_LEAVE_LEFT,           /* it sent leave */
    RC_LEAVE_KICKED,         /* the HTTP API kicked it */
    RC_LEAVE_REPLACED,       /* a new connection took its session */
    RC_LEAVE_QUIET,          /* the room itself is going (no presence event) */
    RC_LEAVE__COUNT
};

typedef struct rc_endpoint_ops {
    rc_deliver_fn *deliver;  /* see above */
    rc_deliver_fn *replay;
    void (*lost)(rc_endpoint *ep);
    void (*close)(rc_endpoint *ep, uint16_t code, const char *reason);
    long (*find)(rc_endpoint *ep, uint64_t ckey, uint8_t mark);
    rc_msg *(*at)(rc_endpoint *ep, long pos);
    void (*set)(rc_endpoint *ep, long pos, rc_msg *m);
} rc_endpoint_ops;

struct rc_endpoint {
    rc_deliver_fn *deliver;  /* ops->deliver, copied: it is called once per recipient */
    uint8_t wire;            /* enum rc_wire: the encoding it reads */
    bool open;               /* between rc_endpoint_init and rc_endpoint_gone */
    uint8_t end_reason;      /* enum rc_leave: why it is going, once it is */
    const rc_endpoint_ops *ops; /* the owner's operations */
    uint64_t client_id;      /* unique per server run; 0 is the server itself (HTTP API) */
    rc_membership *rooms;    /* rooms joined, nrooms entries (owned by the room module) */
    uint32_t nrooms;         /* rooms joined */
    uint32_t caprooms;       /* entries allocated in rooms */
    rc_pending_ack *acks;    /* acknowledgements waiting for the durable log, FIFO */
    uint32_t nacks, capacks; /* entries used / allocated in acks */
    rc_endpoint *ack_prev, *ack_next; /* the rooms' list of endpoints with nacks > 0 */
    uint64_t create_tat;     /* room creations' rate limit: loop ns its allowance is spent to
                                (GCRA's theoretical arrival time, room.c) */
    bool has_session;        /* session holds a token (made at its first join, or presented) */
    uint8_t session[RC_SESSION_LEN]; /* its identity across reconnects and the scope of its
                                        idempotency keys (roomproto.h) */
    struct rc_session *sess; /* its entry in the rooms' session table (session.h), or NULL */
    uint8_t auth;            /* enum rc_ident_state: anonymous, pending or a user (ident.h) */
    struct rc_ident *ident;  /* its user and grants (owned, ident.h), NULL when anonymous */
    struct rc_cwait *cwaits; /* --redis: its publishes and joins waiting for Redis
                                (redisrooms.h), NULL when none */
};

/* rc_endpoint_give delivers m, a frame made for ep, or reports it lost when making it failed
 * (m NULL). */
static inline void rc_endpoint_give(rc_endpoint *ep, rc_msg *m)
{
    if (m) ep->deliver(ep, m);
    else ep->ops->lost(ep);
}

/* rc_endpoint_init readies ep (zeroed or released) as a member reading wire with client id id. */
void rc_endpoint_init(rc_endpoint *ep, const rc_endpoint_ops *ops, uint8_t wire, uint64_t id);

/* rc_endpoint_session is ep's session token, made (random, from the kernel) the first time it
 * is asked for. */
const uint8_t *rc_endpoint_session(rc_endpoint *ep);

/* rc_endpoint_send_text sends the room-protocol reply json[0..n) (a JSON object) to ep alone,
 * encoded for its wire (out of memory: ep is cut off, as deliver does with NULL). */
void rc_endpoint_send_text(rc_endpoint *ep, const char *json, size_t n);

/* rc_endpoints_send_text sends the same JSON text to n endpoints, encoded once per wire format
 * among them (the NetSync observers' fan-out). Returns how many it went to. */
uint32_t rc_endpoints_send_text(rc_endpoint *const *eps, uint32_t n, const char *json, size_t len);

#endif
