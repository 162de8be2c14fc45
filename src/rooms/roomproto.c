/* roomproto.c — join, leave, publish and errors of the room protocol; see roomproto.h and
 * docs/protocol.md. */
#include "rooms/roomproto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/json.h"
#include "codec/utf8.h"
#include "codec/wsframe.h"
#include "core/hash.h"
#include "core/log.h"
#include "codec/textbuf.h"
#include "rooms/ident.h"
#include "rooms/redisrooms.h"
#include "rooms/redispresence.h"
#include "rooms/room.h"
#include "rooms/state.h"
#include "rooms/wire.h"

/* The members each request reads: one of them repeated is refused (duplicate_key), others are
 * the client's business. */
#define JOIN_KEYS (RC_JK_BIT(RC_JK_TYPE) | RC_JK_BIT(RC_JK_ROOM) | RC_JK_BIT(RC_JK_SINCE) | \
                   RC_JK_BIT(RC_JK_EPOCH) | RC_JK_BIT(RC_JK_SESSION) | RC_JK_BIT(RC_JK_HISTORY) | \
                   RC_JK_BIT(RC_JK_STATE) | RC_JK_BIT(RC_JK_PRESENCE) | RC_JK_BIT(RC_JK_CONFLATE))
#define LEAVE_KEYS (RC_JK_BIT(RC_JK_TYPE) | RC_JK_BIT(RC_JK_ROOM))
#define EXT_KEYS (RC_JK_BIT(RC_JK_TYPE) | RC_JK_BIT(RC_JK_ROOM) | RC_JK_BIT(RC_JK_CLIENT_ID) | \
                  RC_JK_BIT(RC_JK_MSG_ID) | RC_JK_BIT(RC_JK_ACK))

int rc_roomproto_error(rc_rooms *t, rc_endpoint *ep, enum rc_rerr kind, const char *fmt, ...)
{
    char text[512], esc[rc_json_escape_max(sizeof(text))];
    char out[sizeof(esc) + 128 + rc_json_escape_max(RC_ROOM_NAME_MAX) + RC_ACK_TOKEN_MAX];
    va_list ap;
    va_start(ap, fmt);
    int tl = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (tl < 0) tl = 0;
    if ((size_t)tl >= sizeof(text)) tl = sizeof(text) - 1;
    size_t el = rc_json_escape(text, (size_t)tl, esc);
    int n = snprintf(out, sizeof(out), "{\"type\":\"error\",\"code\":\"%s\",\"message\":%.*s",
                     rc_rerr_names[kind], (int)el, esc);
    /* Tied to the request: its room and its ack token, as the client wrote them (a room name
     * too long to be one is left out). */
    const rc_json_span *room = t->req_room, *ref = t->req_ref;
    if (room && room->type == RC_JSON_STRING && room->len <= rc_json_escape_max(RC_ROOM_NAME_MAX))
        n += snprintf(out + n, sizeof(out) - (size_t)n, ",\"room\":%.*s", (int)room->len, room->p);
    if (ref && ref->type != RC_JSON_NONE && ref->len <= RC_ACK_TOKEN_MAX)
        n += snprintf(out + n, sizeof(out) - (size_t)n, ",\"ref\":%.*s", (int)ref->len, ref->p);
    out[n++] = '}';
    t->stats.err[kind]++;
    rc_endpoint_send_text(ep, out, (size_t)n);
    return -1;
}

/* Decodes the room member of a request into name (RC_ROOM_NAME_MAX + 1 bytes). Returns its
 * length, or -1 after answering the error. */
static long room_name(rc_rooms *t, rc_endpoint *ep, const rc_json_span *s, char *name)
{
    if (s->type == RC_JSON_NONE)
        return rc_roomproto_error(t, ep, RC_RERR_MISSING_FIELD, "\"room\" is required");
    if (s->type != RC_JSON_STRING)
        return rc_roomproto_error(t, ep, RC_RERR_BAD_FIELD, "\"room\" must be a string");
    long len = rc_json_unescape(s->p, s->len, name, RC_ROOM_NAME_MAX);
    if (len <= 0)
        return rc_roomproto_error(t, ep, RC_RERR_BAD_FIELD,
                                  "\"room\" must be 1 to %d bytes of UTF-8 without NUL",
                                  RC_ROOM_NAME_MAX);
    name[len] = '\0';
    return len;
}

/* Answers a permission refusal res (not RC_PERM_OK) of `what` (an action, for the message) in
 * room name. Returns -1. */
static int refuse(rc_rooms *t, rc_endpoint *ep, enum rc_perm_result res, const char *what,
                  const char *name)
{
    const rc_perm_ns *ns = rc_perm_lookup(t->perm, name, strlen(name));
    const char *nsn = ns->name[0] ? ns->name : "(default)";
    if (res == RC_PERM_ROOM_FULL)
        return rc_roomproto_error(t, ep, RC_RERR_ROOM_FULL,
                                  "room '%s' is full: namespace %s allows %u members", name, nsn,
                                  ns->max_members);
    if (res == RC_PERM_UNAUTHENTICATED)
        return rc_roomproto_error(t, ep, RC_RERR_UNAUTHENTICATED,
                                  "%s in room '%s' needs a token: authenticate first", what,
                                  name);
    return rc_roomproto_error(t, ep, RC_RERR_FORBIDDEN,
                              "%s in room '%s' is not allowed (namespace %s, or your token's "
                              "grants)", what, name, nsn);
}

/* In what follows `t` is the rooms and `q` the request's scan. */

/* Decodes a session token (RC_SESSION_LEN bytes as lower- or upper-case hex). */
static bool session_parse(const rc_json_span *s, uint8_t out[RC_SESSION_LEN])
{
    if (s->type != RC_JSON_STRING || s->len != 2 + 2 * RC_SESSION_LEN) return false;
    for (int i = 0; i < RC_SESSION_LEN; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s->p[1 + 2 * i + k];
            int d = c >= '0' && c <= '9' ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) return false;
            v = v * 16 + d;
        }
        out[i] = (uint8_t)v;
    }
    return true;
}

/* Reads an optional boolean member of a join into *on. False after answering bad_field. */
static bool flag(rc_rooms *t, rc_endpoint *ep, const rc_json_span *s, const char *name, bool *on)
{
    *on = s->type == RC_JSON_TRUE;
    if (s->type == RC_JSON_NONE || s->type == RC_JSON_TRUE || s->type == RC_JSON_FALSE)
        return true;
    rc_roomproto_error(t, ep, RC_RERR_BAD_FIELD, "\"%s\" must be true or false", name);
    return false;
}

/* A connection's first join presents the session token of an earlier connection: it takes the
 * session's client_id back, and a connection still holding it is replaced (out of its rooms at
 * once, then closed), so one player is never two members. A token the server does not know
 * (expired, or from before a restart) is adopted with this connection's own client_id, which
 * keeps the scope of its idempotency keys. Returns -1 after answering banned. */
static int claim_session(rc_rooms *t, rc_endpoint *ep, const uint8_t token[RC_SESSION_LEN])
{
    uint64_t now = rc_loop_now(t->loop);
    rc_session *se = rc_sessions_find(&t->sessions, token);
    if (se && rc_sessions_banned(se, now)) {
        t->sessions.refused++;
        return rc_roomproto_error(t, ep, RC_RERR_BANNED, "this session is banned for %llu more s",
                                  (unsigned long long)((se->banned_until - now) / RC_NS_PER_SEC + 1));
    }
    /* A session is its user's: a connection of another user (or an anonymous one) presenting
     * it, say with a token copied from another player's page, takes nothing. */
    if (se && se->user != rc_ident_user_key(ep))
        return rc_roomproto_error(t, ep, RC_RERR_FORBIDDEN,
                                  "this session belongs to another user");
    memcpy(ep->session, token, RC_SESSION_LEN);
    ep->has_session = true;
    if (!se) {
        rc_sessions_add(&t->sessions, ep);
        return 0;
    }
    rc_endpoint *old = se->holder;
    rc_sessions_hold(&t->sessions, se, ep);
    ep->client_id = se->client_id;
    if (old && old != ep) {
        t->sessions.replaced++;
        rc_endpoint_end(t, old, RC_LEAVE_REPLACED, RC_WS_CLOSE_POLICY,
                        "replaced by a new connection");
    }
    return 0;
}

static int do_join(rc_rooms *t, rc_endpoint *ep, const rc_json_top *q)
{
    char name[RC_ROOM_NAME_MAX + 1];
    long len = room_name(t, ep, &q->key[RC_JK_ROOM], name);
    if (len < 0) return -1;
    /* Everything is checked before anything changes: a refused join has no effect. */
    const rc_json_span *ss = &q->key[RC_JK_SESSION];
    uint8_t session[RC_SESSION_LEN];
    if (ss->type != RC_JSON_NONE && !session_parse(ss, session))
        return rc_roomproto_error(t, ep, RC_RERR_BAD_FIELD,
                                  "\"session\" must be the %d hex digits a \"joined\" gave",
                                  2 * RC_SESSION_LEN);
    if (ss->type != RC_JSON_NONE && ep->has_session &&
        memcmp(session, ep->session, RC_SESSION_LEN) != 0)
        return rc_roomproto_error(t, ep, RC_RERR_BAD_FIELD,
                                  "a session is presented in a connection's first join only");
    bool presence, conflate, want_state;
    if (!flag(t, ep, &q->key[RC_JK_PRESENCE], "presence", &presence) ||
        !flag(t, ep, &q->key[RC_JK_CONFLATE], "conflate", &conflate) ||
        !flag(t, ep, &q->key[RC_JK_STATE], "state", &want_state))
        return -1;
    const rc_json_span *hs = &q->key[RC_JK_HISTORY];
    uint64_t hist_n = 0;
    if (hs->type != RC_JSON_NONE && !rc_json_get_u64(hs, &hist_n))
        return rc_roomproto_error(t, ep, RC_RERR_BAD_FIELD,
                                  "\"history\" must be a non-negative integer");
    bool no_recovery = false;
    if (!t->perm_open) {
        /* The namespace rules and the token's grants: the join itself, then each thing it
         * asks for (a presence=off namespace refuses "presence":true rather than leave the
         * list out unannounced). A member joining again is not counted against max-members.
         * A recovery=off namespace does not refuse "since": clients send it by themselves on
         * every reconnect, so the join goes on as one whose history does not reach back
         * ("recovered":false, the client reports the gap). */
        rc_room *now = rc_rooms_find(t, name, (size_t)len);
        uint32_t members = now && rc_endpoint_room_slot(ep, now) < 0 ? now->nmembers : 0;
        enum rc_perm_result pr = rc_ident_may(t, ep, name, (size_t)len, RC_PERM_JOIN, members);
        if (pr != RC_PERM_OK) return refuse(t, ep, pr, "joining", name);
        if (hs->type != RC_JSON_NONE &&
            (pr = rc_ident_may(t, ep, name, (size_t)len, RC_PERM_HISTORY, 0)) != RC_PERM_OK)
            return refuse(t, ep, pr, "history", name);
        if (q->key[RC_JK_SINCE].type != RC_JSON_NONE &&
            rc_ident_may(t, ep, name, (size_t)len, RC_PERM_RECOVER, 0) != RC_PERM_OK)
            no_recovery = true;
        if (presence &&
            (pr = rc_ident_may(t, ep, name, (size_t)len, RC_PERM_PRESENCE, 0)) != RC_PERM_OK)
            return refuse(t, ep, pr, "presence", name);
    }
    if (ss->type != RC_JSON_NONE && !ep->has_session && claim_session(t, ep, session) < 0)
        return -1;
    if (!ep->sess) {
        rc_endpoint_session(ep);
        rc_sessions_add(&t->sessions, ep); /* out of memory: it just cannot be reclaimed */
    }

    rc_room *room;
    uint8_t flags = (presence ? RC_MEMBER_PRESENCE : 0) | (conflate ? RC_MEMBER_CONFLATE : 0);
    int r = rc_room_join(t, ep, name, (size_t)len, flags, &room);
    if (r == RC_JOIN_LIMIT)
        return rc_roomproto_error(t, ep, RC_RERR_TOO_MANY_ROOMS,
                                  "already in %u rooms, the most a client may join",
                                  t->cfg.max_rooms_per_client);
    if (r == RC_JOIN_ROOM_LIMIT)
        return rc_roomproto_error(t, ep, RC_RERR_ROOM_LIMIT,
                                  "the server holds %u rooms, the most it may; join an existing one",
                                  t->cfg.max_rooms);
    if (r == RC_JOIN_RATE)
        return rc_roomproto_error(t, ep, RC_RERR_RATE_LIMITED,
                                  "a client may create %u rooms a second (after its first %u)",
                                  t->cfg.create_rate,
                                  t->cfg.max_rooms_per_client + t->cfg.create_rate);
    if (r == RC_JOIN_NOMEM) {
        rc_warn("out of memory joining room");
        ep->ops->close(ep, RC_WS_CLOSE_INTERNAL, "out of memory");
        return -1;
    }
    /* Recovery: a client that saw the room up to msg_id `since` under epoch E gets exactly
     * the messages after it, when the history still reaches back that far in the same epoch. */
    const rc_json_span *since_s = &q->key[RC_JK_SINCE], *epoch_s = &q->key[RC_JK_EPOCH];
    bool want = since_s->type != RC_JSON_NONE;
    uint64_t since = 0, first = rc_history_first_id(&room->hist), last = room->last_msg_id;
    bool recovered = false, deep = false;
    if (want) {
        char ep_text[RC_EPOCH_LEN + 2];
        long el = epoch_s->type == RC_JSON_STRING
                      ? rc_json_unescape(epoch_s->p, epoch_s->len, ep_text, sizeof(ep_text)) : -1;
        recovered = !no_recovery && rc_json_get_u64(since_s, &since) && el == RC_EPOCH_LEN &&
                    memcmp(ep_text, room->epoch, RC_EPOCH_LEN) == 0 && since <= last &&
                    (since == last || (first && first <= since + 1));
        /* --redis: a join run again with a read of Redis's stream (redisrooms.h) */
        if (!recovered && t->cluster && !no_recovery && rc_redisrooms_replay(t, ep, room, since))
            recovered = deep = true;
        if (recovered) t->stats.recovered++;
        else t->stats.not_recovered++;
    }
    /* A late joiner's catch-up: the last hist_n messages kept, when recovery did not apply. */
    uint64_t replay_after = recovered ? since : last;
    if (!recovered && hs->type != RC_JSON_NONE) {
        t->stats.history_joins++;
        if (hist_n && first) {
            uint64_t start = hist_n >= last ? 1 : last - hist_n + 1;
            replay_after = (start < first ? first : start) - 1;
        }
    }

    char hex[2 * RC_SESSION_LEN + 1];
    for (int i = 0; i < RC_SESSION_LEN; i++) snprintf(hex + 2 * i, 3, "%02x", ep->session[i]);
    rc_textbuf out = {0};
    rc_textbuf_printf(&out,
                      "{\"type\":\"joined\",\"room\":%.*s,\"client_id\":%llu,\"last_msg_id\":%llu,"
                      "\"epoch\":\"%s\",\"session\":\"%s\"%s",
                      (int)room->json_len, room->json_name, (unsigned long long)ep->client_id,
                      (unsigned long long)last, room->epoch, hex,
                      !want ? "" : recovered ? ",\"recovered\":true" : ",\"recovered\":false");
    if (ep->auth == RC_IDENT_USER) /* its own user, as the others will see it */
        rc_textbuf_printf(&out, ",%.*s", (int)ep->ident->user_json_len - 1, ep->ident->user_json);
    if (hs->type != RC_JSON_NONE)
        rc_textbuf_printf(&out, ",\"replay_from\":%llu", (unsigned long long)replay_after + 1);
    /* --redis: the members on other nodes count and are listed too (redispresence.h) */
    uint32_t everyone = room->nmembers + rc_redispresence_count(room);
    if (presence && everyone > t->cfg.presence_limit) {
        rc_textbuf_printf(&out, ",\"member_count\":%u", everyone);
    } else if (presence) {
        rc_textbuf_printf(&out, ",\"members\":[");
        for (uint32_t i = 0; i < room->nmembers; i++)
            rc_textbuf_printf(&out, "%s%llu", i ? "," : "",
                              (unsigned long long)room->members[i].ep->client_id);
        bool none = room->nmembers == 0;
        rc_redispresence_ids(room, &out, &none);
        rc_textbuf_append(&out, "]", 1);
        /* The users of the members that have one, by client_id. */
        bool any = false;
        for (uint32_t i = 0; i < room->nmembers; i++) {
            const rc_endpoint *m = room->members[i].ep;
            if (m->auth != RC_IDENT_USER) continue;
            rc_textbuf_printf(&out, "%s\"%llu\":%.*s", any ? "," : ",\"users\":{",
                              (unsigned long long)m->client_id, (int)m->ident->user_json_len - 8,
                              m->ident->user_json + 7);
            any = true;
        }
        rc_redispresence_users(room, &out, &any);
        if (any) rc_textbuf_append(&out, "}", 1);
    }
    rc_textbuf_append(&out, "}", 1);
    if (want_state) {
        /* Its own message after `joined` (and the replay, so that a client applying both ends
         * with the state): every key's latest message, all at or before last_msg_id. */
        t->stats.state_joins++;
        rc_textbuf_append(&out, "\n", 1);
        rc_state_render(room, &out);
    }
    if (out.failed) {
        rc_textbuf_release(&out);
        rc_warn("out of memory answering a join");
        ep->ops->close(ep, RC_WS_CLOSE_INTERNAL, "out of memory");
        return -1;
    }
    /* Queued now, before any later message of the room can be queued to this member. */
    const char *text = rc_buf_head(&out.buf);
    size_t tl = rc_buf_size(&out.buf);
    const char *nl = want_state ? memchr(text, '\n', tl) : NULL;
    rc_endpoint_send_text(ep, text, nl ? (size_t)(nl - text) : tl);
    /* The kept frames themselves, by reference: nothing is re-encoded, and since this runs
     * before the loop can sequence anything else, the seam has no gap and no duplicate. Replay
     * bypasses the pending budget (the frames are already held by the history); live messages
     * after it count as usual. */
    if (deep) rc_redisrooms_replay_send(t, ep);
    else if (replay_after < last) rc_room_replay(t, room, ep, replay_after);
    if (nl) rc_endpoint_send_text(ep, nl + 1, tl - (size_t)(nl + 1 - text));
    rc_textbuf_release(&out);
    return 0;
}

static int do_leave(rc_rooms *t, rc_endpoint *ep, const rc_json_top *q)
{
    char name[RC_ROOM_NAME_MAX + 1];
    long len = room_name(t, ep, &q->key[RC_JK_ROOM], name);
    if (len < 0) return -1;
    rc_room *room = rc_rooms_find(t, name, (size_t)len);
    if (!room) return rc_roomproto_error(t, ep, RC_RERR_NO_SUCH_ROOM, "no room '%s'", name);
    int slot = rc_endpoint_room_slot(ep, room);
    if (slot < 0)
        return rc_roomproto_error(t, ep, RC_RERR_NOT_MEMBER, "not a member of room '%s'", name);
    char out[64 + rc_json_escape_max(RC_ROOM_NAME_MAX)];
    int n = snprintf(out, sizeof(out), "{\"type\":\"left\",\"room\":%.*s}", (int)room->json_len,
                     room->json_name);
    rc_room_leave(t, ep, (uint32_t)slot, RC_LEAVE_LEFT); /* may free room */
    rc_endpoint_send_text(ep, out, (size_t)n);
    return 0;
}

/* Finds the room a publish goes to: the named one, or the sender's only room. NULL after
 * answering the error. */
static rc_room *target_room(rc_rooms *t, rc_endpoint *ep, const char *name, long len)
{
    if (len < 0) {
        if (ep->nrooms == 1) return ep->rooms[0].room;
        if (ep->nrooms == 0)
            rc_roomproto_error(t, ep, RC_RERR_NOT_MEMBER, "join a room before publishing");
        else
            rc_roomproto_error(t, ep, RC_RERR_MISSING_FIELD,
                               "in %u rooms: name the room with \"room\"", ep->nrooms);
        return NULL;
    }
    rc_room *room = rc_rooms_find(t, name, (size_t)len);
    if (!room || rc_endpoint_room_slot(ep, room) < 0) {
        rc_roomproto_error(t, ep, RC_RERR_NOT_MEMBER, "not a member of room '%.*s'", (int)len,
                           name);
        return NULL;
    }
    return room;
}

/* Sends {"type":"ack","ref":<token>,"room":R,"msg_id":N} — at once, or under --fsync always
 * once the log batch lsn holding the message is on disk. */
static void send_ack(rc_rooms *t, rc_endpoint *ep, const rc_json_span *token, rc_room *room,
                     uint64_t id, bool duplicate, uint64_t lsn)
{
    char out[96 + RC_ACK_TOKEN_MAX + rc_json_escape_max(RC_ROOM_NAME_MAX)];
    int n = snprintf(out, sizeof(out), "{\"type\":\"ack\",\"ref\":%.*s,\"room\":%.*s,\"msg_id\":%llu%s}",
                     (int)token->len, token->p, (int)room->json_len, room->json_name,
                     (unsigned long long)id, duplicate ? ",\"duplicate\":true" : "");
    if (lsn && t->store && rc_store_mode(t->store) == RC_FSYNC_ALWAYS &&
        !rc_room_durable(t, room, lsn)) {
        rc_msg *m = rc_wire_text(ep->wire, out, (size_t)n);
        if (!m) return;
        rc_endpoint_defer(t, ep, room, lsn, m);
        rc_msg_unref(m);
        return;
    }
    rc_endpoint_send_text(ep, out, (size_t)n);
}

/* Writes the decimal digits of v at w, returning their count. */
static size_t put_u64(char *w, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) w[i] = tmp[n - 1 - i];
    return n;
}

/* Writes `"client_id":C,"msg_id":M}` — by hand, because this runs once per published message
 * and snprintf was the largest single cost of a publish in the benchmark's profile. */
static size_t format_ids(char out[64], uint64_t client_id, uint64_t msg_id)
{
    static const char a[] = "\"client_id\":", b[] = ",\"msg_id\":";
    size_t n = 0;
    memcpy(out, a, sizeof(a) - 1);
    n += sizeof(a) - 1;
    n += put_u64(out + n, client_id);
    memcpy(out + n, b, sizeof(b) - 1);
    n += sizeof(b) - 1;
    n += put_u64(out + n, msg_id);
    out[n++] = '}';
    return n;
}

struct text_pub {
    const char *p;           /* the client's JSON text */
    const rc_json_top *q;    /* its scan */
    bool has_room;           /* it carries "room" already */
    uint64_t client_id;      /* the sender */
    const char *user;        /* `"user":"...",` of an authenticated sender, or NULL */
    size_t user_len;         /* bytes of user */
    const char *room_json;   /* the room's name as a JSON literal when no rc_room is at hand
                                (Redis mode, a room this node does not have), else NULL */
    size_t room_json_len;    /* bytes of room_json */
};

/* Encodes a text publish: the client's object, minus client_id/msg_id members (and "user" when
 * tokens are on), with "room" (when absent), "user" (an authenticated sender's), "client_id"
 * and "msg_id" appended. Exact length first, so the frame header
 * and payload are written once into one allocation. */
static rc_msg *encode_text(void *vctx, const rc_room *room, uint64_t msg_id)
{
    const struct text_pub *x = vctx;
    const rc_json_top *q = x->q;
    size_t body = q->close - q->open;
    for (size_t i = 0; i < q->ncut; i++) body -= q->cut[i].len;
    bool nonempty = q->members > q->members_cut;
    char ids[64];
    int il = (int)format_ids(ids, x->client_id, msg_id);
    const char *rj = x->room_json ? x->room_json : room->json_name;
    size_t rjl = x->room_json ? x->room_json_len : room->json_len;
    size_t room_part = x->has_room ? 0 : 7 + rjl + 1;
    size_t plen = body + (nonempty ? 1 : 0) + room_part + x->user_len + (size_t)il;
    rc_msg *m = rc_ws_msg_alloc(RC_WS_TEXT, plen);
    if (!m) return NULL;
    char *w = m->data + rc_ws_header_size(plen);
    bool ne;
    size_t k = rc_json_copy_open(x->p, q, w, &ne);
    if (k != body || ne != nonempty) abort(); /* the scanner and this arithmetic disagree */
    w += k;
    if (nonempty) *w++ = ',';
    if (!x->has_room) {
        memcpy(w, "\"room\":", 7);
        memcpy(w + 7, rj, rjl);
        w[7 + rjl] = ',';
        w += room_part;
    }
    if (x->user_len) {
        memcpy(w, x->user, x->user_len);
        w += x->user_len;
    }
    memcpy(w, ids, (size_t)il);
    return m;
}

static bool type_is(const char *type, size_t tl, const char *s)
{
    return tl == strlen(s) && memcmp(type, s, tl) == 0;
}

static uint64_t publish_text(rc_rooms *t, rc_room *room, const char *p, const rc_json_top *scan,
                             uint64_t client_id, const rc_ident *user, uint64_t khash,
                             const rc_statekey *sk, bool *duplicate, uint64_t *lsn);

uint64_t rc_roomproto_publish_text(rc_rooms *t, rc_room *room, const char *p,
                                   const rc_json_top *scan, uint64_t client_id, uint64_t khash,
                                   const rc_statekey *sk, bool *duplicate, uint64_t *lsn)
{
    return publish_text(t, room, p, scan, client_id, NULL, khash, sk, duplicate, lsn);
}

static uint64_t publish_text(rc_rooms *t, rc_room *room, const char *p, const rc_json_top *scan,
                             uint64_t client_id, const rc_ident *user, uint64_t khash,
                             const rc_statekey *sk, bool *duplicate, uint64_t *lsn)
{
    *duplicate = false;
    if (lsn) *lsn = 0;
    if (khash) {
        uint64_t seen = rc_room_idem_find(t, room, khash);
        if (seen) {
            /* Already sequenced: the room does not see it twice; the sender learns its id. */
            t->stats.duplicates++;
            *duplicate = true;
            if (lsn) *lsn = rc_room_held_lsn(room, seen); /* its ack waits as the original's */
            return seen;
        }
    }
    struct text_pub x = {.p = p, .q = scan,
                         .has_room = scan->key[RC_JK_ROOM].type != RC_JSON_NONE,
                         .client_id = client_id,
                         .user = user ? user->user_json : NULL,
                         .user_len = user ? user->user_json_len : 0};
    uint64_t id = rc_room_publish(t, room, encode_text, &x, khash, sk, lsn);
    if (id && khash) rc_room_idem_add(t, room, khash, id);
    return id;
}

bool rc_roomproto_key_valid(const rc_json_span *key)
{
    return key->type == RC_JSON_STRING && key->len >= 3 && key->len <= RC_ACK_TOKEN_MAX;
}

uint64_t rc_roomproto_key_hash(const uint8_t scope[RC_SESSION_LEN], const rc_json_span *key)
{
    /* The key's JSON text within its sender's scope: another sender's identical key is another
     * key. A false match needs two keys of one scope colliding within one room's window. */
    uint64_t h = rc_hash_mix(rc_hash_more(rc_hash(scope, RC_SESSION_LEN), key->p, key->len));
    return h ? h : 1; /* 0 means "no key" */
}

static bool is_ext(const rc_rooms *t, const char *type, size_t len)
{
    size_t pl = t->ext_prefix ? strlen(t->ext_prefix) : 0;
    return pl && len > pl && memcmp(type, t->ext_prefix, pl) == 0;
}

bool rc_roomproto_type_reserved(const rc_rooms *t, const char *type, size_t len)
{
    static const char *const server_types[] = {"joined", "left", "error", "ack", "close",
                                               "keepalive", "state", "presence", "conflated",
                                               "request", "reply", "room_service", "auth",
                                               "authenticated"};
    for (size_t i = 0; i < sizeof(server_types) / sizeof(server_types[0]); i++)
        if (type_is(type, len, server_types[i])) return true;
    return is_ext(t, type, len);
}

void rc_roomproto_set_extension(rc_rooms *t, const char *prefix, rc_roomproto_ext_fn *fn,
                                void *arg)
{
    t->ext_prefix = prefix;
    t->ext = fn;
    t->ext_arg = arg;
}

void rc_roomproto_set_join_gate(rc_rooms *t, rc_roomproto_gate_fn *gate, void *arg)
{
    t->join_gate = gate;
    t->gate_arg = arg;
}

void rc_roomproto_set_services(rc_rooms *t, rc_roomproto_ext_fn *request,
                               rc_roomproto_svc_fn *service, void *arg)
{
    t->request = request;
    t->service = service;
    t->svc_arg = arg;
}

int rc_roomproto_state_parse(const rc_json_top *q, rc_statekey *sk, char *why, size_t whylen)
{
    const char *w;
    int r = rc_state_parse(q, sk, &w);
    if (r == RC_STATE_BAD) snprintf(why, whylen, "%s", w);
    return r;
}

int rc_roomproto_state_check(const rc_rooms *t, const rc_room *room, const rc_json_top *q,
                             size_t n, rc_statekey *sk, char *why, size_t whylen)
{
    const char *w;
    int r = rc_state_parse(q, sk, &w);
    if (r == RC_STATE_BAD) snprintf(why, whylen, "%s", w);
    /* the frame will be the text, "room", "client_id" and "msg_id" at most this much more */
    if (r == RC_STATE_OK && rc_state_admit(t, room, sk, n + 64 + room->json_len) != RC_STATE_OK) {
        if (t->cfg.state_memory && t->state_bytes + n > t->cfg.state_memory)
            snprintf(why, whylen, "the server holds %zu bytes of room state, about the most it "
                     "may (--state-memory)", t->state_bytes);
        else
            snprintf(why, whylen,
                     "room '%s' holds %u state keys (%zu bytes), the most it may (%u keys, %zu "
                     "bytes): delete a key first",
                     room->name, rc_state_count(room), rc_state_bytes(room),
                     t->cfg.max_state_keys, t->cfg.max_state_bytes);
        return RC_STATE_FULL;
    }
    return r;
}

rc_msg *rc_roomproto_cluster_payload(const char *room_json, size_t room_json_len, const char *p,
                                      const rc_json_top *q, uint64_t client_id,
                                      const rc_ident *user, const char **payload, size_t *len)
{
    struct text_pub x = {.p = p, .q = q, .has_room = q->key[RC_JK_ROOM].type != RC_JSON_NONE,
                         .client_id = client_id,
                         .user = user ? user->user_json : NULL,
                         .user_len = user ? user->user_json_len : 0,
                         .room_json = room_json, .room_json_len = room_json_len};
    rc_msg *m = encode_text(&x, NULL, 0);
    if (!m) return NULL;
    size_t hs = 2;
    while (hs < 14 && rc_ws_header_size(m->len - hs) != hs) hs += 2;
    char *w = m->data + hs - 1; /* one byte before the text: the header's last, reused */
    w[0] = 't';
    *payload = w;
    *len = m->len - hs - 1;     /* without the "0}" of the placeholder id */
    return m;
}

/* Redis mode: the frame without its msg_id goes through the sequencing script ('t', then the
 * text up to `"msg_id":`; every node appends the id it learns, redisrooms.c). */
static int cluster_publish(rc_rooms *t, rc_endpoint *ep, rc_room *room, const char *p,
                           const rc_json_top *q, uint64_t khash, const rc_json_span *ack,
                           const rc_statekey *sk)
{
    const char *payload;
    size_t len;
    rc_msg *m = rc_roomproto_cluster_payload(room->json_name, room->json_len, p, q,
                                             ep->client_id,
                                             ep->auth == RC_IDENT_USER ? ep->ident : NULL,
                                             &payload, &len);
    if (!m) return rc_roomproto_error(t, ep, RC_RERR_UNAVAILABLE, "out of memory");
    int r = rc_redisrooms_publish(t, ep, room, payload, len, khash, sk, ack);
    rc_msg_unref(m);
    return r;
}

static int publish(rc_rooms *t, rc_endpoint *ep, const char *p, size_t pn, const rc_json_top *q)
{
    char name[RC_ROOM_NAME_MAX + 1];
    long len = -1;
    bool has_room = q->key[RC_JK_ROOM].type != RC_JSON_NONE;
    if (has_room && (len = room_name(t, ep, &q->key[RC_JK_ROOM], name)) < 0) return -1;
    rc_room *room = target_room(t, ep, name, len);
    if (!room) return -1;
    /* errors about it name the room it went to, also when the client left that implicit */
    rc_json_span rs = {.p = room->json_name, .len = room->json_len, .type = RC_JSON_STRING};
    if (!has_room && t->req_room) t->req_room = &rs;
    enum rc_perm_result pr;
    if (!t->perm_open && (pr = rc_ident_may(t, ep, room->name, room->name_len, RC_PERM_PUBLISH,
                                            0)) != RC_PERM_OK)
        return refuse(t, ep, pr, "publishing", room->name);
    /* An authoritative room: its service decides what is sequenced (no ack: nothing of the
     * sender's is given a msg_id). One pointer test for every other room. */
    if (t->service) {
        int r = t->service(t->svc_arg, ep, room, p, pn, q);
        if (r != RC_ROOMPROTO_NOT_SERVED) return r;
    }
    const rc_json_span *ack = &q->key[RC_JK_ACK], *key = &q->key[RC_JK_IDEMPOTENCY_KEY];
    if (ack->type != RC_JSON_NONE && ack->len > RC_ACK_TOKEN_MAX)
        return rc_roomproto_error(t, ep, RC_RERR_BAD_FIELD, "\"ack\" token longer than %d bytes",
                                  RC_ACK_TOKEN_MAX);
    uint64_t khash = 0;
    if (key->type != RC_JSON_NONE) {
        if (!rc_roomproto_key_valid(key))
            return rc_roomproto_error(
                t, ep, RC_RERR_BAD_FIELD,
                "\"idempotency_key\" must be a non-empty string of at most %d bytes",
                RC_ACK_TOKEN_MAX);
        khash = rc_roomproto_key_hash(rc_endpoint_session(ep), key);
    }
    rc_statekey sk;
    char why[256 + RC_ROOM_NAME_MAX];
    int sr = rc_roomproto_state_check(t, room, q, pn, &sk, why, sizeof(why));
    if (sr == RC_STATE_BAD) return rc_roomproto_error(t, ep, RC_RERR_BAD_FIELD, "%s", why);
    if (sr == RC_STATE_FULL) return rc_roomproto_error(t, ep, RC_RERR_STATE_FULL, "%s", why);
    if (t->cluster)
        return cluster_publish(t, ep, room, p, q, khash, ack, sr == RC_STATE_OK ? &sk : NULL);
    bool dup;
    uint64_t lsn;
    uint64_t id = publish_text(t, room, p, q, ep->client_id,
                               ep->auth == RC_IDENT_USER ? ep->ident : NULL, khash,
                               sr == RC_STATE_OK ? &sk : NULL, &dup, &lsn);
    if (id == 0) {
        ep->ops->close(ep, RC_WS_CLOSE_INTERNAL, "out of memory");
        return -1;
    }
    if (ack->type != RC_JSON_NONE) send_ack(t, ep, ack, room, id, dup, lsn);
    return 0;
}

const char *rc_roomproto_dup_name(unsigned dups)
{
    for (int k = 0; k < RC_JK__COUNT; k++)
        if (dups & RC_JK_BIT(k)) return rc_json_key_names[k];
    return "?";
}

/* An object that repeats a member the server reads or adds is refused: the server reads the
 * last occurrence, and a receiver whose parser keeps the first would read something else (a
 * forged "type", another "room"). */
static int duplicate_key(rc_rooms *t, rc_endpoint *ep, unsigned dups)
{
    return rc_roomproto_error(t, ep, RC_RERR_DUPLICATE_KEY, "\"%s\" appears more than once",
                              rc_roomproto_dup_name(dups));
}

static int dispatch(rc_rooms *t, rc_endpoint *ep, const char *p, size_t n, const rc_json_top *q);

int rc_roomproto_text(rc_rooms *t, rc_endpoint *ep, const char *p, size_t n)
{
    rc_json_top q;
    /* With tokens on, "user" on a message is always the server's word: a client's own is
     * cut, and an authenticated sender's user spliced in (encode_text). */
    int sr = rc_json_scan(p, n, t->jwt ? RC_ROOMPROTO_CUT | RC_JK_BIT(RC_JK_USER)
                                       : RC_ROOMPROTO_CUT, &q);
    if (ep->auth == RC_IDENT_PENDING) return rc_ident_pending_message(t, ep, sr ? NULL : &q);
    switch (sr) {
    case RC_JSON_OK: break;
    case RC_JSON_ENOTOBJECT:
        return rc_roomproto_error(t, ep, RC_RERR_NOT_OBJECT, "a message must be a JSON object");
    case RC_JSON_EDEPTH:
        return rc_roomproto_error(t, ep, RC_RERR_BAD_JSON, "JSON nested deeper than %d",
                                  RC_JSON_MAX_DEPTH);
    case RC_JSON_ECUTS:
        return rc_roomproto_error(t, ep, RC_RERR_BAD_JSON,
                                  "too many duplicate client_id/msg_id members");
    default: return rc_roomproto_error(t, ep, RC_RERR_BAD_JSON, "invalid JSON");
    }
    t->req_room = &q.key[RC_JK_ROOM];
    t->req_ref = &q.key[RC_JK_ACK];
    int r = dispatch(t, ep, p, n, &q);
    t->req_room = t->req_ref = NULL;
    return r;
}

/* A join; in Redis mode it waits (kept, and run again by rc_roomproto_join) until its room is
 * in step with Redis. */
static int join(rc_rooms *t, rc_endpoint *ep, const char *p, size_t n, const rc_json_top *q)
{
    if (t->cluster) {
        char name[RC_ROOM_NAME_MAX + 1];
        long len = room_name(t, ep, &q->key[RC_JK_ROOM], name);
        if (len < 0) return -1;
        int r = rc_redisrooms_join_hold(t, ep, name, (size_t)len, p, n);
        if (r != 0) return r < 0 ? -1 : 0;
        /* recovery from before what the node's copy of the stream keeps: read Redis's */
        const rc_json_span *ss = &q->key[RC_JK_SINCE], *es = &q->key[RC_JK_EPOCH];
        rc_room *room = rc_rooms_find(t, name, (size_t)len);
        uint64_t since;
        char epoch[RC_EPOCH_LEN + 2];
        long el = es->type == RC_JSON_STRING ? rc_json_unescape(es->p, es->len, epoch,
                                                                sizeof(epoch)) : -1;
        if (room && el > 0 && rc_json_get_u64(ss, &since) &&
            rc_redisrooms_recover_hold(t, ep, room, since, epoch, (size_t)el, p, n))
            return 0;
    }
    return do_join(t, ep, q);
}

int rc_roomproto_join(rc_rooms *t, rc_endpoint *ep, const char *p, size_t n)
{
    rc_json_top q;
    if (rc_json_scan(p, n, t->jwt ? RC_ROOMPROTO_CUT | RC_JK_BIT(RC_JK_USER) : RC_ROOMPROTO_CUT,
                     &q) != RC_JSON_OK)
        return -1; /* it was scanned before it was kept */
    t->req_room = &q.key[RC_JK_ROOM];
    t->req_ref = &q.key[RC_JK_ACK];
    int r = join(t, ep, p, n, &q);
    t->req_room = t->req_ref = NULL;
    return r;
}

static int dispatch(rc_rooms *t, rc_endpoint *ep, const char *p, size_t n, const rc_json_top *q)
{
    if (q->dups & RC_JK_BIT(RC_JK_TYPE)) return duplicate_key(t, ep, q->dups);
    char type[24];
    long tl = -1;
    if (q->key[RC_JK_TYPE].type == RC_JSON_STRING)
        tl = rc_json_unescape(q->key[RC_JK_TYPE].p, q->key[RC_JK_TYPE].len, type, sizeof(type));
    if (tl > 0) {
        size_t l = (size_t)tl;
        if (type_is(type, l, "join") && t->join_gate && t->join_gate(t->gate_arg, ep) < 0)
            return -1;
        if (type_is(type, l, "join"))
            return q->dups & JOIN_KEYS ? duplicate_key(t, ep, q->dups & JOIN_KEYS)
                                       : join(t, ep, p, n, q);
        if (type_is(type, l, "leave"))
            return q->dups & LEAVE_KEYS ? duplicate_key(t, ep, q->dups & LEAVE_KEYS)
                                        : do_leave(t, ep, q);
        if (type_is(type, l, "keepalive")) return 0; /* proof of life; the transport saw it */
        if (type_is(type, l, "auth")) return rc_ident_auth_message(t, ep, q);
        if (type_is(type, l, "request") && t->request)
            return t->request(t->svc_arg, ep, type, l, p, n, q);
        if (is_ext(t, type, l) && t->ext)
            return q->dups & EXT_KEYS ? duplicate_key(t, ep, q->dups & EXT_KEYS)
                                      : t->ext(t->ext_arg, ep, type, l, p, n, q);
        if (rc_roomproto_type_reserved(t, type, l))
            return rc_roomproto_error(t, ep, RC_RERR_RESERVED_TYPE,
                                      "type '%.*s' is reserved for the server", (int)tl, type);
    }
    if (q->dups & RC_ROOMPROTO_PUBLISH_KEYS)
        return duplicate_key(t, ep, q->dups & RC_ROOMPROTO_PUBLISH_KEYS);
    return publish(t, ep, p, n, q);
}

struct bin_pub {
    const uint8_t *payload;  /* opaque payload */
    size_t len;              /* its bytes */
    uint64_t client_id;      /* the sender */
};

static void put_le64(char *w, uint64_t v)
{
    for (int i = 0; i < 8; i++) w[i] = (char)(v >> (8 * i));
}

/* Encodes the binary envelope of docs/protocol.md: msg_id, client_id, room, payload. */
static rc_msg *encode_binary(void *vctx, const rc_room *room, uint64_t msg_id)
{
    const struct bin_pub *x = vctx;
    size_t plen = 17 + room->name_len + x->len;
    rc_msg *m = rc_ws_msg_alloc(RC_WS_BINARY, plen);
    if (!m) return NULL;
    char *w = m->data + rc_ws_header_size(plen);
    put_le64(w, msg_id);
    put_le64(w + 8, x->client_id);
    w[16] = (char)room->name_len;
    memcpy(w + 17, room->name, room->name_len);
    if (x->len) memcpy(w + 17 + room->name_len, x->payload, x->len);
    return m;
}

int rc_roomproto_binary(rc_rooms *t, rc_endpoint *ep, const uint8_t *p, size_t n)
{
    if (ep->auth == RC_IDENT_PENDING) return rc_ident_pending_message(t, ep, NULL);
    if (n < 1 || (size_t)p[0] + 1 > n)
        return rc_roomproto_error(t, ep, RC_RERR_BAD_BINARY,
                                  "binary message: room_len byte missing or too large");
    size_t rl = p[0];
    /* Error replies quote the room, so it must be text a client can decode (and a room name
     * never has invalid UTF-8 or NUL anyway: they come from JSON strings). */
    if (rl && (!rc_utf8_valid(p + 1, rl) || memchr(p + 1, 0, rl)))
        return rc_roomproto_error(t, ep, RC_RERR_BAD_BINARY,
                                  "binary message: room name is not UTF-8 without NUL");
    char lit[rc_json_escape_max(255)];
    rc_json_span rs = {.p = lit, .len = rc_json_escape((const char *)p + 1, rl, lit),
                       .type = RC_JSON_STRING};
    if (rl) t->req_room = &rs;
    rc_room *room = target_room(t, ep, (const char *)p + 1, rl ? (long)rl : -1);
    enum rc_perm_result pr = RC_PERM_OK;
    if (room && !t->perm_open &&
        (pr = rc_ident_may(t, ep, room->name, room->name_len, RC_PERM_PUBLISH, 0)) != RC_PERM_OK)
        refuse(t, ep, pr, "publishing", room->name);
    t->req_room = NULL;
    if (!room || pr != RC_PERM_OK) return -1;
    /* A room service reads JSON messages; a binary one could not be handed to it. */
    if (t->service && t->service(t->svc_arg, ep, room, NULL, 0, NULL) != RC_ROOMPROTO_NOT_SERVED)
        return -1;
    struct bin_pub x = {.payload = p + 1 + rl, .len = n - 1 - rl, .client_id = ep->client_id};
    if (t->cluster) {
        rc_msg *m = encode_binary(&x, room, 0);
        if (!m) return rc_roomproto_error(t, ep, RC_RERR_UNAVAILABLE, "out of memory");
        size_t plen = 17 + room->name_len + x.len, hs = m->len - plen;
        char *payload = m->data + hs + 7; /* 'b', then the envelope after its msg_id */
        payload[0] = 'b';
        t->req_room = &rs;
        int r = rc_redisrooms_publish(t, ep, room, payload, plen - 7, 0, NULL, NULL);
        t->req_room = NULL;
        rc_msg_unref(m);
        return r;
    }
    if (rc_room_publish(t, room, encode_binary, &x, 0, NULL, NULL) == 0) {
        ep->ops->close(ep, RC_WS_CLOSE_INTERNAL, "out of memory");
        return -1;
    }
    return 0;
}
