/* ident.h — who a room member is: the user a connection token names, the rooms it grants, and
 * the authentication steps of the room protocol (docs/auth.md).
 *
 * Without token keys (rc_rooms.jwt NULL) nothing here runs: every endpoint is anonymous
 * (ep->auth RC_IDENT_ANON, ep->ident NULL) and the namespace rules alone decide. With keys, an
 * endpoint is one of
 *
 *   anonymous  admitted without a token (--allow-anonymous); it may send `auth` at any time;
 *   pending    it must send {"type":"auth","token":...} first, within the auth timeout:
 *              anything else, a bad token or the timeout closes it (4001);
 *   user       a valid token gave it a user (the token's sub) and grants (its "rooms" claim);
 *              a later `auth` with a token of the same sub refreshes exp and grants; at exp
 *              (plus the leeway) without one it is closed (4002).
 *
 * The identity is one allocation per authenticated (or pending) endpoint, sized to what the
 * token holds: the user (decoded and as the JSON member the publish encoder splices), the
 * grants (at most RC_IDENT_MAX_GRANTS entries and RC_IDENT_MAX_GRANT_BYTES bytes of names) and
 * a loop timer (auth timeout, then expiry). Nothing in it points into the keyset, so the
 * server may swap keysets (SIGHUP) while connections hold identities.
 */
#ifndef RC_IDENT_H
#define RC_IDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/json.h"
#include "codec/jwt.h"
#include "core/loop.h"
#include "rooms/endpoint.h"
#include "rooms/perm.h"

struct rc_rooms;

#define RC_IDENT_MAX_GRANTS 64          /* entries of a token's "rooms" claim kept at most */
#define RC_IDENT_MAX_GRANT_BYTES 4096   /* bytes of the decoded room names/patterns of one */

/* Close codes (WebSocket private range; TCP sends them in its close line). */
#define RC_CLOSE_UNAUTHENTICATED 4001   /* no token when one is needed, a bad token, timeout */
#define RC_CLOSE_TOKEN_EXPIRED 4002     /* the token reached exp and was not refreshed */

/* rc_endpoint.auth */
enum rc_ident_state {
    RC_IDENT_ANON = 0,       /* no token: anonymous (the only state without keys) */
    RC_IDENT_PENDING,        /* must authenticate with its first message */
    RC_IDENT_USER,           /* authenticated: ep->ident holds its user and grants */
};

/* Outcomes of a token check, by name in metrics (roomcast_auth_total{result=...}): the
 * verifier's reasons (RC_JWT_OK is "ok") followed by the connection layer's own. */
enum {
    RC_IDENT_NO_SUB = RC_JWT__COUNT, /* "no_sub": the token has no (or an empty) sub */
    RC_IDENT_BAD_GRANTS,     /* "bad_grants": "rooms" over the bounds or not r/w/rw values */
    RC_IDENT_MISSING,        /* "missing": a pending connection sent something else first */
    RC_IDENT_TIMEOUT,        /* "timeout": no auth message within the auth timeout */
    RC_IDENT__RESULTS
};
const char *rc_ident_result_name(int result);

typedef struct rc_ident_stats {
    uint64_t result[RC_IDENT__RESULTS]; /* token checks and missing tokens, by outcome */
    uint64_t refreshed;      /* auth messages that renewed a user's token */
    uint64_t sub_changed;    /* refreshes refused because the sub differed */
    uint64_t expired;        /* connections closed at exp (4002) */
    uint64_t refused[RC_PERM_PRESENCE + 1][RC_PERM_ROOM_FULL + 1]; /* permission refusals,
                                by enum rc_perm_action and enum rc_perm_result */
    uint32_t users;          /* endpoints authenticated now (gauge) */
    uint32_t pending;        /* endpoints waiting for their auth message now (gauge) */
} rc_ident_stats;

typedef struct rc_ident {
    rc_timer timer;          /* the auth timeout while pending, exp once a user */
    struct rc_rooms *rooms;  /* for the timer (not owned) */
    rc_endpoint *ep;         /* whose identity this is (it points back through ep->ident) */
    int64_t exp;             /* the token's exp, seconds since the epoch; 0 = none */
    rc_perm_grants grants;   /* the token's "rooms" claim (views into tail) */
    uint16_t user_len;       /* bytes of user (0 while pending) */
    uint16_t user_json_len;  /* bytes of user_json */
    const char *user;        /* the token's sub, NUL-terminated, in tail */
    const char *user_json;   /* `"user":"<sub, JSON-escaped>",` in tail: what a publish of this
                                endpoint has spliced in, before "client_id" */
    char tail[];             /* grants, then their names, user and user_json */
} rc_ident;

/* rc_ident_verify checks the token tok[0..n) with the rooms' keyset at the current wall time
 * and, when it is good, makes the identity it gives into *out (owned by the caller until
 * attached). Returns RC_JWT_OK or the reason for refusal (an RC_JWT_* or RC_IDENT_* value),
 * counted in t->auth. Keys must be configured (t->jwt not NULL). */
int rc_ident_verify(struct rc_rooms *t, const char *tok, size_t n, rc_ident **out);

/* rc_ident_attach makes id (from rc_ident_verify, ownership passes) ep's identity, replacing
 * (and freeing) any earlier one, and arms the close at exp. */
void rc_ident_attach(struct rc_rooms *t, rc_endpoint *ep, rc_ident *id);

/* rc_ident_announce sends ep (a user) {"type":"authenticated","user":U,"client_id":C[,"exp":E]}:
 * the answer to every successful authentication, at the upgrade or by an auth message. */
void rc_ident_announce(struct rc_rooms *t, rc_endpoint *ep);

/* rc_ident_expect marks ep pending: its first message must be `auth`, within timeout ns
 * (0: no timeout). Without keys it does nothing. */
void rc_ident_expect(struct rc_rooms *t, rc_endpoint *ep, uint64_t timeout);

/* rc_ident_forget releases ep's identity and timer (the endpoint is going). */
void rc_ident_forget(struct rc_rooms *t, rc_endpoint *ep);

/* rc_ident_pending_message handles a message of a pending ep: an auth message (scanned into
 * *q, NULL when it is not JSON or binary) is checked, anything else closes ep with 4001.
 * Returns 0 when ep authenticated, -1 otherwise. */
int rc_ident_pending_message(struct rc_rooms *t, rc_endpoint *ep, const rc_json_top *q);

/* rc_ident_auth_message answers {"type":"auth","token":T} (scanned into *q) from ep in any
 * state: {"type":"authenticated","user":U,"client_id":C,"exp":E} after a good token; a bad
 * token closes ep (4001); a refresh with another sub is refused (forbidden) and changes
 * nothing. Returns 0 or -1 as the room protocol's handlers do. */
int rc_ident_auth_message(struct rc_rooms *t, rc_endpoint *ep, const rc_json_top *q);

/* rc_ident_user_key is a non-zero hash of ep's user, 0 when anonymous: what a session
 * remembers of its holder, so that a token of another user cannot claim it. */
uint64_t rc_ident_user_key(const rc_endpoint *ep);

/* rc_ident_may checks whether ep may do action in room[0..len) (members: the room's members,
 * not counting ep, for RC_PERM_JOIN) under the rooms' namespace rules and ep's grants;
 * refusals are counted. */
enum rc_perm_result rc_ident_may(struct rc_rooms *t, const rc_endpoint *ep, const char *room,
                                 size_t len, enum rc_perm_action action, uint32_t members);

#endif
