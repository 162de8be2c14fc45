/* perm.h — room permissions: namespaces and their rules, and the check of one request.
 *
 * Rooms are grouped by namespace, the part of the room name before the first ':' (Centrifugo's
 * convention): "game:42" is in namespace "game", "lobby" (no ':') in the default namespace.
 * Each namespace says who may join and who may publish (anyone / authenticated / granted by
 * the token's "rooms" claim), whether history, recovery and presence are offered, and how
 * many members a room may have. A room whose namespace has no rules of its own follows the
 * default namespace's.
 *
 * This module is pure: no I/O, no connection or token types. The caller says whether the
 * connection is authenticated and passes the token's grants as a small view
 * (rc_perm_grants_from_json builds one from the claim's JSON text). The config file
 * (src/app/conffile.c) fills the rules; the room layer will call rc_perm_check.
 */
#ifndef RC_PERM_H
#define RC_PERM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_PERM_NS_MAX 64         /* longest namespace name, bytes */

/* Who may do something in a namespace. */
enum rc_perm_policy {
    RC_PERM_ANYONE,               /* every connection, with or without a token */
    RC_PERM_AUTHENTICATED,        /* connections with a valid token */
    RC_PERM_GRANTED,              /* connections whose token's "rooms" claim grants the room */
};

/* What a request wants to do in a room. */
enum rc_perm_action {
    RC_PERM_JOIN,                 /* become a member (needs join, and a free place) */
    RC_PERM_PUBLISH,              /* send a message to the room (needs publish) */
    RC_PERM_HISTORY,              /* read kept messages (needs history on, and join) */
    RC_PERM_RECOVER,              /* rejoin "since" a msg_id (needs recovery on, and join) */
    RC_PERM_PRESENCE,             /* see the member list (needs presence on, and join) */
};

/* The answer; the names are the error codes of the refusal replies. */
enum rc_perm_result {
    RC_PERM_OK,
    RC_PERM_FORBIDDEN,            /* "forbidden": the rules or the grants do not allow it */
    RC_PERM_UNAUTHENTICATED,      /* "unauthenticated": a token would be needed */
    RC_PERM_ROOM_FULL,            /* "room_full": max-members reached */
};

/* Rights of one grant (a token's "r", "w", "rw"). */
enum { RC_PERM_R = 1, RC_PERM_W = 2 };

/* The rules of one namespace. */
typedef struct rc_perm_ns {
    char name[RC_PERM_NS_MAX + 1]; /* namespace name, NUL-terminated; "" = the default one */
    uint8_t join;                 /* enum rc_perm_policy for RC_PERM_JOIN (anyone) */
    uint8_t publish;              /* enum rc_perm_policy for RC_PERM_PUBLISH (anyone) */
    uint8_t history;              /* 1 = history offered (on) */
    uint8_t recovery;             /* 1 = recovery offered (on) */
    uint8_t presence;             /* 1 = joiners get the member list (on) */
    uint32_t max_members;         /* members one room may have, 0 = no limit (0) */
    uint32_t line;                /* line of the file where the block began, 0 = built in */
} rc_perm_ns;

/* All namespaces. The defaults are today's behaviour: everything open to everyone. */
typedef struct rc_perm_rules {
    rc_perm_ns def;               /* the default namespace (rooms without ':' or without rules) */
    rc_perm_ns *ns;               /* named namespaces, in the order they were added */
    size_t nns, cap;              /* used and allocated entries of ns */
} rc_perm_rules;

/* One grant of a token's "rooms" claim: a room name, or a pattern in which '*' matches any run
 * of bytes (':' included). */
typedef struct rc_perm_grant {
    const char *pattern;          /* not NUL-terminated; points into the caller's storage */
    size_t len;                   /* bytes of pattern */
    uint8_t rights;               /* RC_PERM_R | RC_PERM_W */
} rc_perm_grant;

/* A read-only view of a token's grants. */
typedef struct rc_perm_grants {
    const rc_perm_grant *v;       /* the grants */
    size_t n;                     /* entries of v */
} rc_perm_grants;

/* rc_perm_ns_init sets ns to the default rules under name[0..len) (len <= RC_PERM_NS_MAX). */
void rc_perm_ns_init(rc_perm_ns *ns, const char *name, size_t len);

/* rc_perm_rules_init sets every rule to its default: no named namespace. */
void rc_perm_rules_init(rc_perm_rules *r);
void rc_perm_rules_release(rc_perm_rules *r);

/* rc_perm_add adds namespace name[0..len) with the default rules and returns it for the caller
 * to fill in; NULL when the name is taken, invalid (rc_perm_name_valid), or memory ran out.
 * The pointer is valid until the next rc_perm_add. */
rc_perm_ns *rc_perm_add(rc_perm_rules *r, const char *name, size_t len);

/* rc_perm_name_valid: 1..RC_PERM_NS_MAX bytes of [A-Za-z0-9_.-] (no ':', which ends one). */
bool rc_perm_name_valid(const char *name, size_t len);

/* rc_perm_find returns the namespace named name[0..len), or NULL (the default is not found
 * by name). */
const rc_perm_ns *rc_perm_find(const rc_perm_rules *r, const char *name, size_t len);

/* rc_perm_lookup returns the rules that apply to room[0..len): those of its namespace, or the
 * default namespace's when the name has no ':' or its namespace has no rules. */
const rc_perm_ns *rc_perm_lookup(const rc_perm_rules *r, const char *room, size_t len);

/* rc_perm_parse_policy returns the enum rc_perm_policy named s, or -1. */
int rc_perm_parse_policy(const char *s);
const char *rc_perm_policy_name(int policy);
const char *rc_perm_result_name(enum rc_perm_result res); /* "ok", "forbidden", ... */

/* rc_perm_rules_equal is true when a and b say the same (for a reload's report). */
bool rc_perm_rules_equal(const rc_perm_rules *a, const rc_perm_rules *b);

/* rc_perm_granted returns the rights grants give on room[0..len): those of an entry that
 * names the room exactly when there is one (so a token can narrow a pattern for one room),
 * else the union of the matching patterns'; 0 when none matches. grants may be NULL. */
unsigned rc_perm_granted(const rc_perm_grants *grants, const char *room, size_t len);

/* rc_perm_check decides whether a connection may do action in room[0..len). authenticated:
 * the connection has a valid token; grants: its "rooms" claim (NULL = none); members: the
 * room's members now, not counting the joiner (read only for RC_PERM_JOIN).
 * Order: the policy first (a connection without a token, where one is needed, is told
 * unauthenticated; with one that does not grant, forbidden), the namespace's switches, then
 * max-members, so that a full room is not revealed to someone who may not join anyway. */
enum rc_perm_result rc_perm_check(const rc_perm_rules *r, const char *room, size_t len,
                                  enum rc_perm_action action, bool authenticated,
                                  const rc_perm_grants *grants, uint32_t members);

/* rc_perm_grants_from_json reads a "rooms" claim, the JSON object text p[0..n) such as
 * {"game:42":"rw","lobby":"r","game:*":"r"}, into out[0..cap): keys are unescaped into
 * buf[0..bufcap), which the grants then point into. Values must be "r", "w" or "rw". Returns
 * the number of grants, or -1 when the text is not such an object or does not fit. */
long rc_perm_grants_from_json(const char *p, size_t n, rc_perm_grant *out, size_t cap,
                              char *buf, size_t bufcap);

#endif
