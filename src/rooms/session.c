/* session.c — the session table; see session.h. */
#include "rooms/session.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "rooms/ident.h"

#define session_of(n) ((rc_session *)(void *)((char *)(n) - offsetof(rc_session, node)))

/* A client may present any token (an unknown one is adopted), so the table is keyed with a
 * secret of this process: a client cannot pick tokens that share a chain. */
static uint64_t key_a, key_b;

static uint64_t token_hash(const uint8_t t[RC_SESSION_LEN])
{
    uint64_t a, b;
    memcpy(&a, t, 8);
    memcpy(&b, t + 8, 8);
    return rc_hash_mix(a ^ key_a) ^ rc_hash_mix(rc_hash_mix(b ^ key_b));
}

void rc_sessions_init(rc_sessions *s, uint64_t ttl, uint32_t max_idle)
{
    *s = (rc_sessions){.ttl = ttl, .max_idle = max_idle};
    if (!key_a && getrandom(&key_a, sizeof(key_a), 0) != sizeof(key_a)) key_a = (uintptr_t)s;
    if (!key_b && getrandom(&key_b, sizeof(key_b), 0) != sizeof(key_b)) key_b = ~key_a;
}

static void idle_unlink(rc_sessions *s, rc_session *se)
{
    if (se->prev) se->prev->next = se->next;
    else s->idle_head = se->next;
    if (se->next) se->next->prev = se->prev;
    else s->idle_tail = se->prev;
    se->prev = se->next = NULL;
    s->nidle--;
}

static void forget(rc_sessions *s, rc_session *se)
{
    if (!se->holder) idle_unlink(s, se);
    else se->holder->sess = NULL;
    rc_htab_remove(&s->table, &se->node);
    free(se);
}

void rc_sessions_release(rc_sessions *s)
{
    uint32_t b = 0;
    rc_hnode *n = rc_htab_next(&s->table, &b, NULL);
    while (n) {
        rc_hnode *next = rc_htab_next(&s->table, &b, n);
        rc_session *se = session_of(n);
        if (se->holder) se->holder->sess = NULL;
        free(se);
        n = next;
    }
    rc_htab_release(&s->table);
    s->idle_head = s->idle_tail = NULL;
    s->nidle = 0;
}

rc_session *rc_sessions_find(const rc_sessions *s, const uint8_t token[RC_SESSION_LEN])
{
    uint64_t h = token_hash(token);
    for (rc_hnode *n = rc_htab_chain(&s->table, h); n; n = n->next)
        if (n->hash == h && memcmp(session_of(n)->token, token, RC_SESSION_LEN) == 0)
            return session_of(n);
    return NULL;
}

rc_session *rc_sessions_add(rc_sessions *s, rc_endpoint *holder)
{
    rc_session *se = calloc(1, sizeof(*se));
    if (!se) return NULL;
    memcpy(se->token, rc_endpoint_session(holder), RC_SESSION_LEN);
    se->client_id = holder->client_id;
    se->user = rc_ident_user_key(holder);
    se->holder = holder;
    if (rc_htab_insert(&s->table, &se->node, token_hash(se->token)) < 0) {
        free(se);
        return NULL;
    }
    holder->sess = se;
    return se;
}

void rc_sessions_hold(rc_sessions *s, rc_session *se, rc_endpoint *ep)
{
    if (se->holder) se->holder->sess = NULL;
    else idle_unlink(s, se);
    se->holder = ep;
    ep->sess = se;
    s->reclaimed++;
}

void rc_sessions_drop(rc_sessions *s, rc_endpoint *ep, uint64_t now)
{
    rc_session *se = ep->sess;
    if (!se) return;
    ep->sess = NULL;
    se->holder = NULL;
    se->released_at = now;
    se->prev = s->idle_tail;
    se->next = NULL;
    if (s->idle_tail) s->idle_tail->next = se;
    else s->idle_head = se;
    s->idle_tail = se;
    s->nidle++;
    /* Over the bound, the session released the longest ago goes first: a banned one too (a
     * ban that must outlast a flood of connections belongs to the user, with tokens). */
    while (s->nidle > s->max_idle) forget(s, s->idle_head);
}

void rc_sessions_ban(rc_sessions *s, rc_session *se, uint64_t until)
{
    (void)s;
    se->banned_until = until;
}

rc_session *rc_sessions_of_client(const rc_sessions *s, uint64_t client_id)
{
    uint32_t b = 0;
    for (rc_hnode *n = rc_htab_next(&s->table, &b, NULL); n; n = rc_htab_next(&s->table, &b, n))
        if (session_of(n)->client_id == client_id) return session_of(n);
    return NULL;
}

void rc_sessions_sweep(rc_sessions *s, uint64_t now)
{
    rc_session *next;
    for (rc_session *se = s->idle_head; se; se = next) {
        next = se->next;
        if (now - se->released_at < s->ttl) break; /* the list is in release order */
        if (se->banned_until > now) continue;
        forget(s, se);
    }
}
