/* session.h — sessions: a client's identity across its connections.
 *
 * Every room client gets a session at its first join: a secret random token (sent in `joined`)
 * tied to its client_id. A new connection that presents the token in its first join takes the
 * client_id back (the player keeps its dot on the board) and the scope of its idempotency
 * keys; a connection still holding the session is replaced. The table remembers a session
 * while a connection holds it and for a TTL after the last one closed, at most `max_idle`
 * released sessions (the oldest released are forgotten first), so what one client can make the
 * server remember is bounded by the connections it can open. A ban keeps a session refused
 * until it expires, whatever the TTL.
 *
 * Times are loop nanoseconds. The table only records; the room protocol (roomproto.c) decides
 * what a presented token does.
 */
#ifndef RC_SESSION_H
#define RC_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "core/hash.h"
#include "rooms/endpoint.h"

typedef struct rc_session {
    rc_hnode node;           /* in rc_sessions.table, keyed by the token's hash */
    uint8_t token[RC_SESSION_LEN];
    uint64_t client_id;      /* the identity it carries */
    rc_endpoint *holder;     /* the connection that holds it, NULL once released */
    uint64_t released_at;    /* when holder went (while holder is NULL) */
    uint64_t banned_until;   /* refused until then, 0 = not banned */
    uint64_t user;           /* rc_ident_user_key of its holder's user (0: anonymous): only a
                                connection of the same user may claim it (docs/auth.md) */
    struct rc_session *prev, *next; /* the released list, oldest first, while holder is NULL */
} rc_session;

typedef struct rc_sessions {
    rc_htab table;           /* every remembered session */
    rc_session *idle_head, *idle_tail; /* released sessions, by release time */
    uint32_t nidle;          /* released sessions remembered */
    uint32_t max_idle;       /* at most this many (0: none kept once released) */
    uint64_t ttl;            /* ns a released session is kept */
    uint64_t reclaimed;      /* sessions taken back by a new connection (stats) */
    uint64_t replaced;       /* connections closed because a new one took their session */
    uint64_t refused;        /* joins refused for a banned session */
} rc_sessions;

/* rc_sessions_init readies an empty table keeping released sessions for ttl ns, at most
 * max_idle of them. */
void rc_sessions_init(rc_sessions *s, uint64_t ttl, uint32_t max_idle);

/* rc_sessions_release frees every entry (at exit). */
void rc_sessions_release(rc_sessions *s);

/* rc_sessions_find returns the session with token, or NULL. */
rc_session *rc_sessions_find(const rc_sessions *s, const uint8_t token[RC_SESSION_LEN]);

/* rc_sessions_add records a new session held by holder with holder's token and client_id
 * (holder->sess is set). NULL when out of memory (the client then simply cannot reclaim it). */
rc_session *rc_sessions_add(rc_sessions *s, rc_endpoint *holder);

/* rc_sessions_hold gives the released or held session to ep (ep->sess is set; a previous
 * holder's sess is cleared: the caller closes it). */
void rc_sessions_hold(rc_sessions *s, rc_session *se, rc_endpoint *ep);

/* rc_sessions_drop is called when ep, holding ep->sess, goes: the session is released at now
 * and kept for the TTL. */
void rc_sessions_drop(rc_sessions *s, rc_endpoint *ep, uint64_t now);

/* rc_sessions_ban refuses the session until `until` (ns). */
void rc_sessions_ban(rc_sessions *s, rc_session *se, uint64_t until);

/* rc_sessions_banned is true while se is banned at now. */
static inline bool rc_sessions_banned(const rc_session *se, uint64_t now)
{
    return se->banned_until > now;
}

/* rc_sessions_of_client finds a session carrying client_id (a walk over the table: for the
 * rare API call that bans an absent client), or NULL. */
rc_session *rc_sessions_of_client(const rc_sessions *s, uint64_t client_id);

/* rc_sessions_sweep forgets released sessions past their TTL (and ban). */
void rc_sessions_sweep(rc_sessions *s, uint64_t now);

#endif
