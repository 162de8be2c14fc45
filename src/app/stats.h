/* stats.h — the server's counters, rendered as JSON for GET /api/stats.
 *
 * Counters are plain integers owned by one loop (no atomics on the hot path). Every kind of
 * client fault has its own counter so that "bad input is counted" is checkable from outside.
 */
#ifndef RC_STATS_H
#define RC_STATS_H

#include <stddef.h>
#include <stdint.h>

/* Client faults, one counter each; rc_err_names gives their JSON names. */
enum rc_err {
    RC_ERR_HTTP_400, RC_ERR_HTTP_404, RC_ERR_HTTP_405, RC_ERR_HTTP_408, RC_ERR_HTTP_426,
    RC_ERR_HTTP_431, RC_ERR_HTTP_503,
    RC_ERR_HTTP_401, RC_ERR_HTTP_403, RC_ERR_HTTP_411, RC_ERR_HTTP_413, RC_ERR_HTTP_501,
    RC_ERR_WS_1002, RC_ERR_WS_1007, RC_ERR_WS_1009,
    RC_ERR_BAD_JSON, RC_ERR_NOT_OBJECT, RC_ERR_MISSING_FIELD, RC_ERR_BAD_FIELD,
    RC_ERR_NOT_MEMBER, RC_ERR_NO_SUCH_ROOM, RC_ERR_RESERVED_TYPE, RC_ERR_TOO_MANY_ROOMS,
    RC_ERR_BAD_BINARY, RC_ERR_NETSYNC_OFF,
    RC_ERR__COUNT
};

extern const char *const rc_err_names[RC_ERR__COUNT];

typedef struct rc_stats {
    uint64_t connections_total;   /* connections accepted since start */
    uint64_t messages_in;         /* complete WebSocket data messages received */
    uint64_t messages_out;        /* data frames queued to clients (one per recipient) */
    uint64_t bytes_in;            /* bytes read from client sockets */
    uint64_t bytes_out;           /* bytes written to client sockets */
    uint64_t broadcasts;          /* messages sequenced into rooms */
    uint64_t disc_slow;           /* clients cut off for exceeding --max-pending */
    uint64_t disc_ping;           /* clients dropped for not answering a ping */
    uint64_t disc_max_conn;       /* connections refused at --max-connections */
    uint64_t disc_handshake;      /* connections dropped for a slow request head */
    uint64_t accept_errors;       /* accept() failures (descriptor exhaustion included) */
    uint64_t duplicates;          /* publishes dropped as repeats of an idempotency key */
    uint64_t recovered;           /* joins with "since" that were replayed */
    uint64_t not_recovered;       /* joins with "since" the history could not serve */
    uint64_t err[RC_ERR__COUNT];  /* client faults by kind */
} rc_stats;

#endif
