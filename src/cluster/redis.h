/* redis.h — one hiredis async connection driven by roomcast's loop, that keeps itself up.
 *
 * hiredis (Debian's libhiredis 0.14.1) does the RESP encoding, parsing and reply matching; this
 * module gives it roomcast's event loop (the addRead/delRead/addWrite/delWrite/cleanup hooks
 * map onto one rc_io), and adds what hiredis leaves to the application:
 *   - a connect timeout (an rc_timer; a SYN into the void would otherwise wait for the
 *     kernel's minutes-long retry limit),
 *   - a handshake: AUTH when the URL has a password, SELECT when it names a database, CLIENT
 *     SETNAME when given a name, the owner's own commands (on_handshake), then PING; the connection counts as up only once
 *     the PING's reply arrives, so nothing the owner sends can overtake the handshake,
 *   - reconnection with exponential backoff (min doubling to max, reset once up),
 *   - up/down notifications, so the layer above can answer "unavailable" at once.
 * No threads and no blocking call: the only blocking step hiredis has, resolving a host name,
 * is done once in rc_redis_new (startup); reconnects use the resolved address.
 *
 * Reply callbacks run from the loop, in the order the commands were sent (hiredis matches
 * replies in order). When the connection is lost every pending callback runs once with reply
 * NULL: the command's outcome is unknown (it may or may not have been executed). Commands are
 * buffered by hiredis and written when the socket is writable (the next loop wake-up), so all
 * commands issued during one loop iteration leave in one write; rc_redis_flush writes them at
 * once instead (from the before-sleep hook), saving that extra wake-up.
 *
 * Not allowed from inside a callback of this module: rc_redis_free.
 */
#ifndef RC_REDIS_H
#define RC_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/clwire.h"
#include "core/loop.h"

struct redisReply;
struct redisAsyncContext;

typedef struct rc_redis rc_redis;

/* Called when the connection becomes usable (up true) and when a usable connection is lost
 * (up false). Repeated failures to reconnect are not reported again. */
typedef void rc_redis_state_cb(rc_redis *r, bool up, void *arg);

/* Called with a command's reply, or with NULL when the connection was lost before it arrived.
 * The reply belongs to hiredis and is freed when the callback returns. */
typedef void rc_redis_reply_cb(rc_redis *r, struct redisReply *reply, void *arg);

/* Called during each handshake, after AUTH/SELECT and before the PING that completes it: the
 * owner queues commands that must precede all others (SCRIPT LOAD) with
 * rc_redis_command_early. */
typedef void rc_redis_handshake_cb(rc_redis *r, void *arg);

typedef struct rc_redis_opts {
    const char *name;               /* for logs: "publisher", "subscriber" */
    const char *client_name;        /* CLIENT SETNAME in the handshake (no spaces; shows in
                                     * CLIENT LIST), NULL for none; copied */
    uint64_t connect_timeout_ns;    /* TCP connect + handshake; 0 means 2 s */
    uint64_t backoff_min_ns;        /* first reconnect delay; 0 means 100 ms */
    uint64_t backoff_max_ns;        /* the delay doubles up to this; 0 means 5 s */
    rc_redis_state_cb *on_state;    /* may be NULL */
    rc_redis_handshake_cb *on_handshake; /* may be NULL */
    void *arg;                      /* passed to on_state and on_handshake */
} rc_redis_opts;

/* Connection counters (metrics). */
typedef struct rc_redis_stats {
    uint64_t connects;       /* handshakes completed */
    uint64_t failures;       /* connect attempts that failed or timed out */
    uint64_t disconnects;    /* up connections lost */
    uint64_t commands;       /* commands queued */
    uint64_t writes;         /* calls into hiredis's writer: each is one write() of everything
                              * buffered, so commands / writes is the pipelining factor */
} rc_redis_stats;

/* rc_redis_new resolves the URL's host (blocking, once) and prepares a connection; it does not
 * connect yet. Returns NULL with a message in err (cap bytes) when the host does not resolve
 * or memory runs out. The URL is copied. */
rc_redis *rc_redis_new(rc_loop *loop, const rc_clwire_url *url, const rc_redis_opts *o,
                       char *err, size_t cap);

/* rc_redis_start begins connecting (and keeps reconnecting until rc_redis_free). */
void rc_redis_start(rc_redis *r);

/* rc_redis_free closes the connection (pending callbacks run with NULL first) and frees r. */
void rc_redis_free(rc_redis *r);

/* rc_redis_up says whether the handshake completed and the connection has not been lost. */
bool rc_redis_up(const rc_redis *r);

/* rc_redis_command queues a command given as argc strings with lengths. cb (may be NULL) is
 * called exactly once, later, with the reply or NULL. Returns 0, -ENOTCONN when the connection
 * is not up (cb is then not called), or -ENOMEM. */
int rc_redis_command(rc_redis *r, rc_redis_reply_cb *cb, void *arg, int argc,
                     const char *const *argv, const size_t *lens);

/* rc_redis_formatted is rc_redis_command for a command the caller formatted as RESP itself
 * (cmd, len bytes; copied): a long command built once costs no per-argument formatting. */
int rc_redis_formatted(rc_redis *r, rc_redis_reply_cb *cb, void *arg, const char *cmd,
                       size_t len);

/* rc_redis_command_early is rc_redis_command for on_handshake: allowed before the connection is
 * up. Replies come before the connection is declared up. */
int rc_redis_command_early(rc_redis *r, rc_redis_reply_cb *cb, void *arg, int argc,
                           const char *const *argv, const size_t *lens);

/* rc_redis_reset drops the current connection as if it had failed (callbacks run with NULL,
 * reconnect after the backoff). For owners that find a reply they cannot work with. Safe from
 * inside a reply callback. */
void rc_redis_reset(rc_redis *r);

/* rc_redis_flush writes what hiredis has buffered now rather than at the next wake-up. */
void rc_redis_flush(rc_redis *r);

/* rc_redis_context is the live hiredis context, or NULL when not connected: for the
 * subscriber, whose SUBSCRIBE callbacks hiredis keeps per channel. */
struct redisAsyncContext *rc_redis_context(rc_redis *r);

/* rc_redis_stats_get copies the counters. */
void rc_redis_stats_get(const rc_redis *r, rc_redis_stats *out);

/* rc_redis_describe is the URL without password, for logs. */
const char *rc_redis_describe(const rc_redis *r);

#endif
