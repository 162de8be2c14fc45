/* limits.h — abuse limits of client connections: which browser pages may open a WebSocket
 * (--allowed-origins), how many connections one address may hold (--connections-per-ip),
 * and how fast one connection may send messages, bytes and joins (--rate-*, --join-*).
 * docs/limits.md is the user's description.
 *
 * Every setting is read from srv->cfg where it is used, so a reload (SIGHUP) applies to open
 * connections at their next message: a connection's buckets (core/rate.h) hold only a time, and
 * follow a changed rate with the allowance they had built up. The per-address counts are kept
 * by the transport from accept to close (transport/ipcount.h), so they are right whether the
 * limit was on when a connection arrived or not.
 *
 * What a connection over a rate gets: its message is not processed, and it is answered
 * {"type":"error","code":"rate_limited","limit":"messages"|"bytes"|"joins",
 *  "retry_after_ms":N,"message":...}. A connection refused more than --rate-close-after times
 * with less than a second between refusals (it ignores the errors) is closed 1008 "rate limit
 * exceeded" (TCP and chat: their close line), its further input discarded unread.
 */
#ifndef RC_LIMITS_H
#define RC_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport/conn.h"
#include "transport/zmtpsock.h"

struct rc_server;
struct rc_http_ctx;
struct rc_endpoint;

/* The rate limits, as counted and as "limit" names them. */
enum rc_limit { RC_LIMIT_MESSAGES, RC_LIMIT_BYTES, RC_LIMIT_JOINS, RC_LIMIT__COUNT };
extern const char *const rc_limit_names[RC_LIMIT__COUNT];

typedef struct rc_limits_stats {
    uint64_t refused_origin; /* WebSocket upgrades refused for their Origin (403) */
    uint64_t refused_per_ip; /* connections refused at --connections-per-ip */
    uint64_t limited[RC_LIMIT__COUNT]; /* messages refused (rate_limited), by limit */
    uint64_t closed;         /* connections closed 1008 for persisting over a rate limit */
} rc_limits_stats;

/* One connection's rate state (in rc_client): zero is "every bucket full". */
typedef struct rc_climits {
    uint64_t msg_tat;        /* --rate-messages bucket: GCRA theoretical arrival time, loop ns */
    uint64_t byte_tat;       /* --rate-bytes bucket, likewise */
    uint64_t join_tat;       /* --join-rate bucket, likewise */
    uint64_t last_refusal;   /* loop ns of its last refusal */
    uint32_t strikes;        /* refusals with less than a second between each and the next */
} rc_climits;

/* rc_limits_admit checks a just-accepted connection against --connections-per-ip. False
 * after refusing it in its protocol's words (HTTP 503, TCP and chat a close line, code 1013)
 * and counting it. */
bool rc_limits_admit(struct rc_server *srv, rc_conn *c);

/* rc_limits_upgrade_ok checks the Origin of a WebSocket upgrade x against --allowed-origins.
 * False after answering 403 (and closing) and counting it. */
bool rc_limits_upgrade_ok(struct rc_server *srv, rc_conn *c, const struct rc_http_ctx *x);

/* rc_limits_origin_allowed is the rule itself: list is "*", "" or comma-separated origins
 * (spaces around entries ignored, compared without regard to case); origin[0..n) the header's
 * value. */
bool rc_limits_origin_allowed(const char *list, const char *origin, size_t n);

/* rc_limits_message takes one message of n bytes from room client c's buckets: 0 to process
 * it, -1 when it was refused (answered rate_limited, or c closed). One integer check per
 * enabled limit on the loop's clock; nothing at all when the limits are off. */
int rc_limits_message(rc_conn *c, size_t n);

/* rc_limits_join_gate is the rooms' join gate (rc_roomproto_gate_fn, arg the server): the
 * --join-rate bucket of ep, which must be an rc_client's (every endpoint that reads the room
 * protocol is). */
int rc_limits_join_gate(void *arg, struct rc_endpoint *ep);

/* rc_limits_zmq_gate is the gate of the native ZeroMQ sockets (transport/zmtpsock.h: NetSync's
 * three, the broker's two), arg the server. At each accept it applies, read from srv->cfg
 * then: --max-connections (ZeroMQ connections count with the other client connections,
 * srv->zmq_conns beside net.nconns; refusals are disconnects "max_connections", as on the
 * other listeners; also while shutting down), --connections-per-ip (the same per-address
 * table as every listener, net.peers, from accept until the descriptor closes; refusals
 * "per_ip"), and --handshake-timeout as the deadline for the greeting and READY. */
rc_zms_gate rc_limits_zmq_gate(struct rc_server *srv);

#endif
