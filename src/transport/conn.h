/* conn.h — one client connection: socket, input, output queue, and protocol state.
 *
 * A connection starts as HTTP (request heads, keep-alive), may upgrade to WebSocket (room
 * protocol on "/", echo on "/echo"), and ends through CLOSING (a close frame or final HTTP
 * response is on its way; input is read only to find the peer's close or EOF) to CLOSED.
 *
 * Lifetimes: rc_conn_close() closes the socket and leaves every room at once, but the struct is
 * freed only in the loop's before-sleep step, after the current batch of events, so an event
 * or a caller further up the stack that still holds the pointer sees state CLOSED instead of
 * freed memory. Output is never written where it is produced: rc_conn_send() queues it and
 * puts the connection on the server's flush list, and the before-sleep step writes each
 * connection's queue with one sendmsg() — the batching that makes fan-out cheap.
 */
#ifndef RC_CONN_H
#define RC_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/loop.h"
#include "transport/outq.h"
#include "codec/utf8.h"

struct rc_server;
struct rc_room;

enum rc_conn_state {
    RC_CONN_HTTP,            /* reading HTTP request heads */
    RC_CONN_WS,              /* WebSocket open */
    RC_CONN_CLOSING,         /* close frame / last response queued; waiting for the peer */
    RC_CONN_CLOSED,          /* socket closed; struct freed at the next before-sleep */
};

enum rc_conn_proto {
    RC_PROTO_ROOMS,          /* the room protocol (docs/protocol.md) */
    RC_PROTO_ECHO,           /* echo every message back */
};

/* A room this connection is in, and where the connection sits in that room's member array. */
typedef struct rc_membership {
    struct rc_room *room;
    uint32_t slot;           /* index in room->members */
} rc_membership;

typedef struct rc_conn {
    rc_io io;                /* socket; must stay first (the loop hands back &io) */
    struct rc_server *srv;   /* owning server */
    uint8_t state;           /* enum rc_conn_state */
    uint8_t proto;           /* enum rc_conn_proto, once upgraded */
    bool in_flush;           /* on srv's flush list */
    bool slow;               /* over --max-pending: to be cut off at the next flush */
    bool ping_out;           /* a keepalive ping is unanswered */
    bool shut_after_flush;   /* shutdown(SHUT_WR) once the output queue is empty */
    bool discard_input;      /* CLOSING: read and drop everything until EOF */
    bool close_received;     /* the peer's close frame arrived */
    bool rd_eof;             /* the peer shut its side: no more reading, close once flushed */
    uint8_t msg_opcode;      /* opcode of the fragmented message in progress, 0 if none */
    rc_utf8 utf8;            /* validator state of the fragmented text message in progress */
    uint64_t client_id;      /* unique per server run */
    uint64_t last_rx;        /* loop time of the last bytes received, ns */
    uint64_t ping_sent;      /* loop time the outstanding ping was sent, ns */
    size_t http_scanned;     /* resume point of the request-head parser */
    rc_timer timer;          /* handshake timeout, keepalive, or close linger */
    rc_buf in;               /* bytes received and not yet processed (partial frame/head) */
    rc_buf frag;             /* payload of the fragmented message in progress */
    rc_outq out;             /* queued output */
    rc_membership *rooms;    /* rooms joined, nrooms entries */
    uint32_t nrooms;         /* rooms joined */
    uint32_t caprooms;       /* entries allocated in rooms */
    uint32_t nsobs;          /* NetSync rooms observed (src/netsync/nsws.h) */
    struct rc_pending_ack *acks; /* acknowledgements waiting for the durable log, FIFO */
    uint32_t nacks, capacks; /* entries used / allocated in acks */
    struct rc_conn *ack_prev, *ack_next; /* server's list of connections with nacks > 0 */
    struct rc_conn *next_flush; /* flush list link */
    struct rc_conn *prev, *next; /* server's list of all connections (or its free list) */
} rc_conn;

/* rc_conn_accept takes ownership of the accepted socket fd. Returns NULL (fd closed) when out
 * of memory. */
rc_conn *rc_conn_accept(struct rc_server *srv, int fd);

/* rc_conn_send queues m (taking a reference) and schedules a flush. A connection that is not
 * open for output (closing for good, closed) ignores it. Returns false when the message was
 * not queued because the connection is over its --max-pending budget (it is then marked slow
 * and will be cut off) or is not open. */
bool rc_conn_send(rc_conn *c, rc_msg *m);

/* rc_conn_send_replay queues a frame from a room's history, outside the --max-pending budget
 * (the history holds it anyway; replay costs the queue a pointer). */
bool rc_conn_send_replay(rc_conn *c, rc_msg *m);

/* rc_frame_new encodes one final, unmasked server frame with a copy of payload into a new
 * message (one reference, the caller's); NULL when out of memory. */
rc_msg *rc_frame_new(uint8_t opcode, const void *payload, size_t len);

/* rc_conn_send_frame encodes and queues one frame with a copy of payload. */
bool rc_conn_send_frame(rc_conn *c, uint8_t opcode, const void *payload, size_t len);

/* rc_conn_close_ws starts the WebSocket closing handshake with code and reason: queues the
 * close frame, stops delivering room messages, and waits (at most --close-timeout) for the
 * peer's close or EOF. When `fail` is set the connection is being failed (RFC 6455 §7.1.7):
 * further input is discarded unread. */
void rc_conn_close_ws(rc_conn *c, uint16_t code, const char *reason, bool fail);

/* rc_conn_close closes the socket now and leaves every room. */
void rc_conn_close(rc_conn *c);

/* rc_conn_flush writes queued output (called from the server's before-sleep step and on
 * EPOLLOUT). */
void rc_conn_flush(rc_conn *c);

/* An acknowledgement to send once the durable log has written batch lsn (--fsync always). */
typedef struct rc_pending_ack {
    uint64_t lsn;            /* log batch that must be durable first */
    rc_msg *msg;             /* the encoded ack frame (a reference) */
} rc_pending_ack;

/* rc_conn_defer_ack queues m (taking a reference) to be sent when batch lsn is durable. */
void rc_conn_defer_ack(rc_conn *c, uint64_t lsn, rc_msg *m);

/* rc_conn_acks_durable sends the deferred acks of every connection up to batch durable. */
void rc_conn_acks_durable(struct rc_server *srv, uint64_t durable);

/* rc_conn_free releases a CLOSED connection's memory (the server's before-sleep step). */
void rc_conn_free(rc_conn *c);

#endif
