/* ident.c — users, grants and the auth steps of the room protocol; see ident.h. */
#include "rooms/ident.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/wsframe.h"
#include "core/hash.h"
#include "core/log.h"
#include "rooms/room.h"
#include "rooms/roomproto.h"

const char *rc_ident_result_name(int result)
{
    switch (result) {
    case RC_IDENT_NO_SUB: return "no_sub";
    case RC_IDENT_BAD_GRANTS: return "bad_grants";
    case RC_IDENT_MISSING: return "missing";
    case RC_IDENT_TIMEOUT: return "timeout";
    default: return rc_jwt_err_name((enum rc_jwt_err)result);
    }
}

#define ident_of_timer(tm) ((rc_ident *)(void *)((char *)(tm) - offsetof(rc_ident, timer)))

/* The wall clock in seconds, as the verifier reads exp and nbf. */
static int64_t wall_s(void)
{
    return (int64_t)(rc_wall_ms() / 1000);
}

/* Closes ep for an authentication reason; the connection's owner may end it synchronously, so
 * nothing of ep or its identity is touched afterwards. */
static void close_ep(rc_endpoint *ep, uint16_t code, const char *why)
{
    ep->ops->close(ep, code, why);
}

static void on_timer(rc_loop *loop, rc_timer *tm)
{
    (void)loop;
    rc_ident *id = ident_of_timer(tm);
    rc_rooms *t = id->rooms;
    rc_endpoint *ep = id->ep;
    if (ep->auth == RC_IDENT_PENDING) {
        t->auth.result[RC_IDENT_TIMEOUT]++;
        close_ep(ep, RC_CLOSE_UNAUTHENTICATED, "unauthenticated: no auth message in time");
    } else {
        t->auth.expired++;
        close_ep(ep, RC_CLOSE_TOKEN_EXPIRED, "token expired");
    }
}

/* Builds the identity of a verified token: one allocation holding the grants, their names,
 * the user and its JSON member. */
static int make_ident(const rc_jwt_claims *cl, rc_ident **out)
{
    rc_perm_grant g[RC_IDENT_MAX_GRANTS];
    char names[RC_IDENT_MAX_GRANT_BYTES];
    long ng = 0;
    size_t nbytes = 0;
    if (cl->rooms) {
        ng = rc_perm_grants_from_json(cl->rooms, cl->rooms_len, g, RC_IDENT_MAX_GRANTS, names,
                                      sizeof(names));
        if (ng < 0) return RC_IDENT_BAD_GRANTS;
        for (long i = 0; i < ng; i++) nbytes += g[i].len;
    }
    char esc[rc_json_escape_max(RC_JWT_MAX_SUB)];
    size_t el = rc_json_escape(cl->sub, cl->sub_len, esc);
    size_t ujl = 7 + el + 1; /* "user": + literal + ',' */
    size_t size = sizeof(rc_ident) + (size_t)ng * sizeof(rc_perm_grant) + nbytes +
                  cl->sub_len + 1 + ujl;
    rc_ident *id = calloc(1, size);
    if (!id) return -1;
    rc_perm_grant *gv = (rc_perm_grant *)(void *)id->tail;
    char *w = id->tail + (size_t)ng * sizeof(rc_perm_grant);
    for (long i = 0; i < ng; i++) {
        memcpy(w, g[i].pattern, g[i].len);
        gv[i] = (rc_perm_grant){w, g[i].len, g[i].rights};
        w += g[i].len;
    }
    id->grants = (rc_perm_grants){gv, (size_t)ng};
    memcpy(w, cl->sub, cl->sub_len);
    w[cl->sub_len] = '\0';
    id->user = w;
    id->user_len = (uint16_t)cl->sub_len;
    w += cl->sub_len + 1;
    memcpy(w, "\"user\":", 7);
    memcpy(w + 7, esc, el);
    w[7 + el] = ',';
    id->user_json = w;
    id->user_json_len = (uint16_t)ujl;
    id->exp = cl->has_exp ? cl->exp : 0;
    rc_timer_init(&id->timer, on_timer);
    *out = id;
    return RC_JWT_OK;
}

int rc_ident_verify(rc_rooms *t, const char *tok, size_t n, rc_ident **out)
{
    /* About 13 KiB of scratch: on the heap, not the loop's stack, since a token check is rare
     * next to everything else the stack is wanted for. */
    rc_jwt_claims *cl = malloc(sizeof(*cl));
    if (!cl) return -1;
    int r = rc_jwt_verify(t->jwt, tok, n, wall_s(), cl);
    if (r == RC_JWT_OK && (!cl->has_sub || cl->sub_len == 0)) r = RC_IDENT_NO_SUB;
    if (r == RC_JWT_OK) r = make_ident(cl, out);
    free(cl);
    if (r < 0) return -1;
    t->auth.result[r]++;
    return r;
}

static void stop(rc_rooms *t, rc_endpoint *ep)
{
    rc_ident *old = ep->ident;
    if (ep->auth == RC_IDENT_USER) t->auth.users--;
    else if (ep->auth == RC_IDENT_PENDING) t->auth.pending--;
    ep->auth = RC_IDENT_ANON;
    ep->ident = NULL;
    if (old) {
        rc_timer_stop(t->loop, &old->timer);
        free(old);
    }
}

void rc_ident_attach(rc_rooms *t, rc_endpoint *ep, rc_ident *id)
{
    stop(t, ep);
    id->rooms = t;
    id->ep = ep;
    ep->ident = id;
    ep->auth = RC_IDENT_USER;
    t->auth.users++;
    /* a session it already holds is now this user's (an anonymous connection that signs in) */
    if (ep->sess) ep->sess->user = rc_ident_user_key(ep);
    if (id->exp) {
        /* The verifier refuses the token from exp + leeway on; the connection goes then. */
        int64_t at_ms = (id->exp + (int64_t)t->jwt->leeway) * 1000, now_ms = (int64_t)rc_wall_ms();
        uint64_t in = at_ms > now_ms ? (uint64_t)(at_ms - now_ms) * 1000000u : 0;
        rc_timer_start(t->loop, &id->timer, rc_loop_now(t->loop) + in);
    }
}

void rc_ident_expect(rc_rooms *t, rc_endpoint *ep, uint64_t timeout)
{
    if (!t->jwt) return;
    rc_ident *id = calloc(1, sizeof(*id));
    if (!id) {
        close_ep(ep, RC_WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    stop(t, ep);
    rc_timer_init(&id->timer, on_timer);
    id->rooms = t;
    id->ep = ep;
    ep->ident = id;
    ep->auth = RC_IDENT_PENDING;
    t->auth.pending++;
    if (timeout) rc_timer_start(t->loop, &id->timer, rc_loop_now(t->loop) + timeout);
}

void rc_ident_forget(rc_rooms *t, rc_endpoint *ep)
{
    stop(t, ep);
}

int rc_ident_pending_message(rc_rooms *t, rc_endpoint *ep, const rc_json_top *q)
{
    const rc_json_span *ty = q ? &q->key[RC_JK_TYPE] : NULL;
    if (ty && ty->type == RC_JSON_STRING && ty->len == 6 && memcmp(ty->p, "\"auth\"", 6) == 0)
        return rc_ident_auth_message(t, ep, q) < 0 || ep->auth != RC_IDENT_USER ? -1 : 0;
    t->auth.result[RC_IDENT_MISSING]++;
    close_ep(ep, RC_CLOSE_UNAUTHENTICATED,
             "unauthenticated: send {\"type\":\"auth\",\"token\":...} first");
    return -1;
}

int rc_ident_auth_message(rc_rooms *t, rc_endpoint *ep, const rc_json_top *q)
{
    if (!t->jwt)
        return rc_roomproto_error(t, ep, RC_RERR_BAD_FIELD,
                                  "this server takes no tokens (no --jwt-secret or "
                                  "--jwt-public-key): connections are anonymous");
    const rc_json_span *ts = &q->key[RC_JK_TOKEN];
    /* A token is base64url and dots: its JSON text needs no unescaping (one that has a
     * backslash is malformed anyway). */
    bool ok = ts->type == RC_JSON_STRING && ts->len > 2 && !memchr(ts->p, '\\', ts->len);
    if (q->dups & RC_JK_BIT(RC_JK_TOKEN)) ok = false;
    rc_ident *id = NULL;
    int r = ok ? rc_ident_verify(t, ts->p + 1, ts->len - 2, &id) : RC_JWT_MALFORMED;
    if (!ok) t->auth.result[RC_JWT_MALFORMED]++;
    if (r < 0) {
        rc_warn("out of memory checking a token");
        close_ep(ep, RC_WS_CLOSE_INTERNAL, "out of memory");
        return -1;
    }
    if (r != RC_JWT_OK) {
        char why[96];
        snprintf(why, sizeof(why), "invalid token: %s", rc_ident_result_name(r));
        close_ep(ep, RC_CLOSE_UNAUTHENTICATED, why);
        return -1;
    }
    if (ep->auth == RC_IDENT_USER) {
        const rc_ident *old = ep->ident;
        if (old->user_len != id->user_len || memcmp(old->user, id->user, id->user_len) != 0) {
            t->auth.sub_changed++;
            free(id);
            return rc_roomproto_error(t, ep, RC_RERR_FORBIDDEN,
                                      "a refreshed token must have the same sub as the "
                                      "connection's user; reconnect to change users");
        }
        t->auth.refreshed++;
    }
    rc_ident_attach(t, ep, id);
    rc_ident_announce(t, ep);
    return 0;
}

void rc_ident_announce(rc_rooms *t, rc_endpoint *ep)
{
    const rc_ident *id = ep->ident;
    char out[160 + rc_json_escape_max(RC_JWT_MAX_SUB)];
    int n = snprintf(out, sizeof(out), "{\"type\":\"authenticated\",%.*s\"client_id\":%llu",
                     (int)id->user_json_len, id->user_json, (unsigned long long)ep->client_id);
    if (id->exp) n += snprintf(out + n, sizeof(out) - (size_t)n, ",\"exp\":%lld", (long long)id->exp);
    out[n++] = '}';
    rc_endpoint_send_text(ep, out, (size_t)n);
}

uint64_t rc_ident_user_key(const rc_endpoint *ep)
{
    if (ep->auth != RC_IDENT_USER) return 0;
    return rc_hash(ep->ident->user, ep->ident->user_len) | 1;
}

enum rc_perm_result rc_ident_may(rc_rooms *t, const rc_endpoint *ep, const char *room,
                                 size_t len, enum rc_perm_action action, uint32_t members)
{
    bool user = ep->auth == RC_IDENT_USER;
    enum rc_perm_result r = rc_perm_check(t->perm, room, len, action, user,
                                          user ? &ep->ident->grants : NULL, members);
    if (r != RC_PERM_OK) t->auth.refused[action][r]++;
    return r;
}
