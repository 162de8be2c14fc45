/* conn.h — stream connections: socket, input, output queue, and the protocol they speak.
 *
 * A connection belongs to an rc_net (below) and speaks one protocol at a time, given by a
 * handler table (rc_proto): HTTP, which may hand over to WebSocket after an upgrade
 * (transport/http.h, ws.h), or from its first byte raw TCP or the chat protocol (tcp.h,
 * chat.h). Complete messages of the message protocols go to the connection's on_message hook,
 * set by whoever owns the connection (the app layer), so nothing here knows about rooms.
 *
 * States: OPEN (speaking its protocol) → CLOSING (its last words — a close frame, a final HTTP
 * response, a close line — are queued; input is read only to find the peer's close or EOF) →
 * CLOSED. The net's `ended` hook runs once, when a connection leaves OPEN, so its owner takes
 * it out of every room before anything else could be queued to it.
 *
 * Lifetimes: rc_conn_close() closes the socket at once, but the struct is freed only in the
 * before-sleep step (rc_net_flush), after the current batch of events, so an event or a caller
 * further up the stack that still holds the pointer sees state CLOSED instead of freed memory.
 * Output is never written where it is produced: rc_conn_send() queues it and puts the
 * connection on the net's flush list, and rc_net_flush writes each connection's queue with one
 * send() — the batching that makes fan-out cheap.
 */
#ifndef RC_CONN_H
#define RC_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "codec/chatsplit.h"
#include "codec/tcpwire.h"
#include "codec/utf8.h"
#include "core/buf.h"
#include "core/loop.h"
#include "core/msg.h"
#include "transport/ipcount.h"
#include "transport/outq.h"

#define RC_RXBUF_SIZE (64 * 1024)

typedef struct rc_net rc_net;
typedef struct rc_conn rc_conn;
struct rc_http_ctx;
struct rc_tls_ctx;
struct rc_tls_conn;

enum rc_conn_state {
    RC_CONN_OPEN,            /* speaking its protocol */
    RC_CONN_CLOSING,         /* last words queued; waiting for the peer's close or EOF */
    RC_CONN_CLOSED,          /* socket closed; struct freed at the next rc_net_flush */
};

/* A protocol spoken on a connection. */
typedef struct rc_proto {
    const char *name;        /* for logs: "http", "ws", "tcp", "chat" */
    /* start: the connection begins speaking it (accept or upgrade): arm timers, options */
    void (*start)(rc_conn *c);
    /* input: parse and act on p[0..n) (OPEN, or CLOSING without discard_input); returns the
     * bytes used, the rest being an incomplete unit kept for the next read */
    size_t (*input)(rc_conn *c, char *p, size_t n);
    /* timer: the connection's timer fired while OPEN */
    void (*timer)(rc_conn *c);
    /* end: the server ends an OPEN connection: say why in the protocol's words (a close frame,
     * a close line, an HTTP error) and start closing; `fail` means the peer is at fault and
     * further input is discarded unread */
    void (*end)(rc_conn *c, uint16_t code, const char *reason, bool fail);
    bool timed;              /* frames sent on it count in the delivery-latency histogram */
    bool half_close;         /* a peer that shut its sending side may still be reading: what is
                                queued for it is written before the connection closes (HTTP,
                                TCP, chat; a WebSocket peer owes a close frame instead) */
} rc_proto;

/* A complete message of a message protocol: opcode RC_WS_TEXT (p[0..n) is UTF-8) or
 * RC_WS_BINARY. Returns 0 when it was accepted, -1 when it was answered with an error
 * (transports that cut off clients after many errors in a row count these). */
typedef int rc_message_fn(rc_conn *c, uint8_t opcode, const char *p, size_t n);

/* Faults of clients that the transport layer sees, one counter each (rc_nerr_names). */
enum rc_nerr {
    RC_NERR_HTTP_400, RC_NERR_HTTP_404, RC_NERR_HTTP_405, RC_NERR_HTTP_408, RC_NERR_HTTP_426,
    RC_NERR_HTTP_431, RC_NERR_HTTP_503, RC_NERR_HTTP_401, RC_NERR_HTTP_403, RC_NERR_HTTP_411,
    RC_NERR_HTTP_413, RC_NERR_HTTP_501, RC_NERR_HTTP_409, RC_NERR_HTTP_422,
    RC_NERR_WS_1002, RC_NERR_WS_1007, RC_NERR_WS_1009,
    RC_NERR_TCP_LINE_TOO_LONG, RC_NERR_TCP_BAD_UTF8, RC_NERR_TCP_1002, RC_NERR_TCP_1007,
    RC_NERR_TCP_1009, RC_NERR_CHAT_GARBAGE, RC_NERR_CHAT_BAD_OBJECT, RC_NERR_CHAT_TOO_BIG,
    RC_NERR_TOO_MANY_ERRORS,
    RC_NERR__COUNT
};
extern const char *const rc_nerr_names[RC_NERR__COUNT];

typedef struct rc_net_stats {
    uint64_t connections_total;   /* connections accepted since start */
    uint64_t messages_in;         /* complete data messages received (WebSocket, TCP, chat) */
    uint64_t bytes_in;            /* bytes read from client sockets */
    uint64_t bytes_out;           /* bytes written to client sockets */
    uint64_t disc_slow;           /* clients cut off for exceeding --max-pending */
    uint64_t disc_ping;           /* clients dropped for not answering a ping */
    uint64_t disc_max_conn;       /* connections refused at --max-connections */
    uint64_t disc_handshake;      /* connections dropped for a slow request head */
    uint64_t accept_errors;       /* accept() failures (descriptor exhaustion included) */
    uint64_t err[RC_NERR__COUNT]; /* client faults by kind */
} rc_net_stats;

typedef struct rc_net_config {
    size_t max_message_size;      /* largest message (WebSocket, TCP line or frame, chat object) */
    size_t max_pending;           /* output queued per client before it is cut off */
    size_t max_header_size;       /* largest HTTP request head */
    uint64_t ping_interval;       /* ns of silence before a keepalive ping */
    uint64_t ping_timeout;        /* ns to wait for any traffic after a ping */
    uint64_t handshake_timeout;   /* ns for a request head to arrive, and HTTP idle time */
    uint64_t close_timeout;       /* ns to wait for the peer during a close */
    bool no_latency_metrics;      /* do not report written frames to the `sent` hook */
    const char *server_name;      /* the HTTP Server header, "roomcast/VERSION" */
} rc_net_config;

/* What the owner of the connections (the app layer) is told. */
typedef struct rc_net_hooks {
    void *arg;               /* passed to every hook */
    /* request: a complete HTTP request to answer (transport/http.h) */
    void (*request)(void *arg, rc_conn *c, const struct rc_http_ctx *x);
    /* ended: c stopped being open (its last words may still be on their way out) */
    void (*ended)(void *arg, rc_conn *c);
    /* sent: delivery-latency samples (outq.h) */
    rc_outq_sent_fn *sent;
} rc_net_hooks;

/* The connections of one loop. */
struct rc_net {
    rc_loop *loop;           /* not owned */
    rc_net_config cfg;       /* limits and timeouts */
    rc_net_hooks hooks;      /* the owner's callbacks */
    rc_conn *conns;          /* every live connection, doubly linked */
    uint32_t nconns;         /* live connections (not CLOSED) */
    uint32_t ntls;           /* live connections of them that speak TLS */
    rc_conn *flush_head;     /* connections with output to write, singly linked */
    rc_conn *free_head;      /* CLOSED connections to free at rc_net_flush */
    uint64_t flush_now;      /* clock read when the current flush began, ns (latency) */
    bool shutting_down;      /* no new requests are kept alive */
    rc_ipcount peers;        /* open connections per client address (ipcount.h): counted
                                from accept to close, like nconns */
    rc_net_stats stats;      /* counters */
    char rxbuf[RC_RXBUF_SIZE]; /* shared read buffer: input is parsed in place from here */
};

struct rc_conn {
    rc_io io;                /* socket; must stay first (the loop hands back &io) */
    rc_net *net;             /* the connections it belongs to */
    const rc_proto *proto;   /* what it speaks now */
    rc_message_fn *on_message; /* complete messages of a message protocol (the owner's) */
    uint8_t state;           /* enum rc_conn_state */
    bool in_flush;           /* on the net's flush list */
    bool slow;               /* over --max-pending: to be cut off at the next flush */
    bool lost;               /* missed a message (not encodable): to be cut off likewise */
    bool ping_out;           /* a keepalive ping is unanswered */
    bool shut_after_flush;   /* shutdown(SHUT_WR) once the output queue is empty */
    bool discard_input;      /* CLOSING: read and drop everything until EOF */
    bool close_received;     /* the peer's close (frame) arrived */
    bool rd_eof;             /* the peer shut its side: no more reading, close once flushed */
    bool http_waiting;       /* HTTP: a response was deferred (rc_http_defer): no further
                                request is read until it is sent */
    bool peer_counted;       /* peer is counted in the net's peers (rc_conn_set_peer) */
    uint8_t errors;          /* error replies in a row (TCP and chat close at a threshold) */
    uint8_t msg_opcode;      /* WebSocket: opcode of the fragmented message in progress, or 0 */
    rc_utf8 utf8;            /* WebSocket: validator state of the text message in progress
                                (fragmented or not: fed as payload bytes arrive) */
    uint8_t ws_deflate;      /* WebSocket: permessage-deflate was agreed: the window bits of
                                the server's compressor (15 or 9), 0 when not */
    bool ws_takeover;        /* WebSocket: the client keeps its compression context between
                                messages (it did not offer client_no_context_takeover), so
                                it has an inflater of its own, ws_zin */
    struct rc_pmd_stream *ws_zin; /* WebSocket: that inflater (codec/pmdeflate.h), made at its
                                first compressed message; NULL otherwise */
    bool msg_compressed;     /* WebSocket: the fragmented message in progress has RSV1 */
    bool ws_inflating;       /* WebSocket: a compressed message is being inflated as it arrives,
                                by ws_zin into frag (ws.c) */
    bool ws_inflating_text;  /* WebSocket: and it is a text message (checked for UTF-8) */
    uint64_t ws_seen;        /* WebSocket: payload bytes of the incomplete frame at the head of
                                `in` already unmasked (and, for text, validated) */
    uint64_t last_rx;        /* loop time of the last bytes received, ns */
    uint64_t ping_sent;      /* loop time the outstanding ping was sent, ns */
    rc_timer timer;          /* handshake timeout, keepalive, or close linger */
    rc_buf in;               /* bytes received and not yet processed (partial frame/head) */
    rc_buf frag;             /* WebSocket: payload of the fragmented message in progress */
    rc_outq out;             /* queued output */
    struct rc_tls_conn *tls; /* TLS session (transport/tls.h), NULL on a plain socket */
    rc_ipkey peer;           /* the client's address as --connections-per-ip counts it
                                (ipcount.h); all zero when unknown */
    union {
        size_t http_scanned; /* HTTP: resume point of the request-head parser */
        rc_tcpw tcp;         /* TCP: framing decoder */
        rc_chatsplit chat;   /* chat: object splitter */
    } dec;
    rc_conn *next_flush;     /* flush list link */
    rc_conn *prev, *next;    /* the net's list of live connections (or its free list) */
};

/* rc_net_init readies net (zeroed storage) on loop. */
void rc_net_init(rc_net *net, rc_loop *loop, const rc_net_config *cfg, const rc_net_hooks *hooks);

/* rc_net_flush writes what this loop iteration queued, then frees what it closed: the loop's
 * before-sleep step. Flushing once per iteration is what turns many small frames for one
 * client into one send(). */
void rc_net_flush(rc_net *net);

/* rc_net_close_all closes every connection at once (at exit) and frees them. */
void rc_net_close_all(rc_net *net);

/* rc_conn_new takes ownership of the accepted socket fd and starts a connection of size bytes
 * (>= sizeof(rc_conn); the owner's struct embeds rc_conn first) speaking proto. Returns NULL
 * (fd closed) when out of memory. */
rc_conn *rc_conn_new(rc_net *net, int fd, size_t size, const rc_proto *proto);

/* rc_conn_set_peer records the address c was accepted from and counts c in the net's peers
 * until it closes (listen.c, right after rc_conn_new). */
void rc_conn_set_peer(rc_conn *c, const struct sockaddr *sa);

/* rc_conn_peer_count is how many connections are open from c's address, c included (0 when its
 * address is not known or could not be counted). */
static inline uint32_t rc_conn_peer_count(const rc_conn *c)
{
    return c->peer_counted ? rc_ipcount_get(&c->net->peers, &c->peer) : 0;
}

/* rc_conn_start_tls makes c, just accepted, speak TLS with context t, answering ALPN with alpn
 * (an enum rc_tls_alpn): input is decrypted before its protocol sees it and output encrypted as
 * it is written. The handshake runs on the loop, bounded by --handshake-timeout: a handshake
 * still unfinished then is counted failed and the connection closed. A protocol whose timer
 * has another deadline (the keepalive of TCP) has it re-armed with the same delay once the
 * handshake is done. Returns 0, or -1 when out of memory (c is then closed). */
int rc_conn_start_tls(rc_conn *c, struct rc_tls_ctx *t, int alpn);

/* rc_conn_set_proto switches c to proto (an upgrade) and starts it. */
void rc_conn_set_proto(rc_conn *c, const rc_proto *proto);

/* rc_conn__send_slow is rc_conn_send's rare path (internal). */
bool rc_conn__send_slow(rc_conn *c, rc_msg *m);

/* rc_conn_send queues m (taking a reference) and schedules a flush. A connection that is not
 * open ignores it. Returns false when the message was not queued because the connection is
 * over its --max-pending budget (it is then marked slow and will be cut off) or is not open.
 * Inline: it runs once per recipient of every broadcast. */
static inline bool rc_conn_send(rc_conn *c, rc_msg *m)
{
    if (c->state != RC_CONN_OPEN || c->slow) return false;
    /* Receipt time for the delivery-latency histogram of a reply (a broadcast has it from its
     * room): the loop clock of the wake-up that produced it. */
    rc_msg *b = rc_msg_base(m);
    size_t len = (uintptr_t)m & RC_MSG_SUB ? b->sub_len : b->len;
    if (!b->t_recv && c->proto->timed) b->t_recv = rc_loop_now(c->net->loop);
    /* A single message larger than the budget still goes to a client that is keeping up. */
    if (c->out.count > 0 && c->out.bytes + len > c->net->cfg.max_pending)
        return rc_conn__send_slow(c, m);
    if (rc__outq_push_len(&c->out, m, len, 0) < 0) return rc_conn__send_slow(c, NULL);
    if (!c->in_flush) {
        c->in_flush = true;
        c->next_flush = c->net->flush_head;
        c->net->flush_head = c;
    }
    return true;
}

/* rc_conn_send_replay queues a frame from a room's history, outside the --max-pending budget
 * (the history holds it anyway; replay costs the queue a pointer) and outside the latency
 * histogram (its t_recv is its original receipt). */
bool rc_conn_send_replay(rc_conn *c, rc_msg *m);

/* rc_conn_send_last queues the connection's last words (a close frame, a final response):
 * outside the budget, also while CLOSING. */
void rc_conn_send_last(rc_conn *c, rc_msg *m);

/* rc_conn_give queues m, a message made for c alone, and drops the caller's reference: the end
 * of "make a reply, send it". A NULL m (making it ran out of memory) closes c, which can no
 * longer be served correctly. `last` queues it as rc_conn_send_last does. Returns whether it
 * was queued. */
bool rc_conn_give(rc_conn *c, rc_msg *m, bool last);

/* rc_conn_send_copy queues a copy of p[0..n) (rc_conn_give of rc_msg_copy). */
bool rc_conn_send_copy(rc_conn *c, const void *p, size_t n);

/* rc_conn_cut marks c to be cut off at the next flush because a message meant for it was lost
 * (out of memory): it would otherwise see a gap in a room's order. */
void rc_conn_cut(rc_conn *c);

/* rc_conn_end ends an OPEN connection for a server-side reason, in its protocol's words
 * (rc_proto.end); a connection not OPEN is left as it is. */
void rc_conn_end(rc_conn *c, uint16_t code, const char *reason, bool fail);

/* rc_conn_closing moves an OPEN connection to CLOSING: the `ended` hook runs, the write side is
 * shut once the output is flushed, and the connection is closed at most --close-timeout later.
 * With discard set, input is drained unread until EOF (so unread request bytes cannot turn our
 * close into a reset that destroys the answer in flight). */
void rc_conn_closing(rc_conn *c, bool discard);

/* rc_conn_close closes the socket now (running the `ended` hook if it was OPEN). */
void rc_conn_close(rc_conn *c);

/* rc_conn_flush writes queued output (called by rc_net_flush and on writability). */
void rc_conn_flush(rc_conn *c);

/* rc_conn_ping_due runs the keepalive logic shared by WebSocket and TCP when the timer fires:
 * returns true when a ping is due now (the caller sends it in its protocol's words; the timer
 * is then armed for the timeout), false otherwise (re-armed, or the connection was closed for
 * not answering: code 1011 "ping timeout" through rc_conn_end). */
bool rc_conn_ping_due(rc_conn *c);

/* rc_conn_keepalive_start arms the keepalive timer (after the protocol starts). */
void rc_conn_keepalive_start(rc_conn *c);

/* rc_conn_tcp_keepalive turns on TCP keepalive for the socket, probing after --ping-interval of
 * silence, so a vanished peer is noticed by the kernel (for protocols that cannot ping). */
void rc_conn_tcp_keepalive(rc_conn *c);

#endif
