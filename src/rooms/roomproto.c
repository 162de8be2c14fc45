/* roomproto.c — join, leave, publish and errors of the room protocol; see roomproto.h and
 * docs/protocol.md. */
#include "rooms/roomproto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "app/nsws.h"
#include "codec/json.h"
#include "codec/utf8.h"
#include "codec/wsframe.h"
#include "rooms/room.h"
#include "app/server.h"

void rc_roomproto_error(rc_conn *c, enum rc_err kind, const char *fmt, ...)
{
    char text[512], esc[rc_json_escape_max(sizeof(text))], out[sizeof(esc) + 96];
    va_list ap;
    va_start(ap, fmt);
    int tl = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (tl < 0) tl = 0;
    if ((size_t)tl >= sizeof(text)) tl = sizeof(text) - 1;
    size_t el = rc_json_escape(text, (size_t)tl, esc);
    int n = snprintf(out, sizeof(out), "{\"type\":\"error\",\"code\":\"%s\",\"message\":%.*s}",
                     rc_err_names[kind], (int)el, esc);
    c->srv->stats.err[kind]++;
    rc_conn_send_frame(c, RC_WS_TEXT, out, (size_t)n);
}

/* Decodes the room member of a request into name (RC_ROOM_NAME_MAX + 1 bytes). Returns its
 * length, or -1 after answering the error. */
static long room_name(rc_conn *c, const rc_json_span *s, char *name)
{
    if (s->type == RC_JSON_NONE) {
        rc_roomproto_error(c, RC_ERR_MISSING_FIELD, "\"room\" is required");
        return -1;
    }
    if (s->type != RC_JSON_STRING) {
        rc_roomproto_error(c, RC_ERR_BAD_FIELD, "\"room\" must be a string");
        return -1;
    }
    long len = rc_json_unescape(s->p, s->len, name, RC_ROOM_NAME_MAX);
    if (len <= 0) {
        rc_roomproto_error(c, RC_ERR_BAD_FIELD, "\"room\" must be 1 to %d bytes of UTF-8 without NUL",
                   RC_ROOM_NAME_MAX);
        return -1;
    }
    name[len] = '\0';
    return len;
}

static void do_join(rc_conn *c, const rc_json_top *t)
{
    rc_server *srv = c->srv;
    char name[RC_ROOM_NAME_MAX + 1];
    long len = room_name(c, &t->key[RC_JK_ROOM], name);
    if (len < 0) return;
    rc_room *room;
    int r = rc_room_join(srv, c, name, (size_t)len, &room);
    if (r == RC_JOIN_LIMIT) {
        rc_roomproto_error(c, RC_ERR_TOO_MANY_ROOMS, "already in %u rooms, the most a client may join",
                   srv->cfg.max_rooms_per_client);
        return;
    }
    if (r == RC_JOIN_NOMEM) {
        rc_warn("out of memory joining room");
        rc_conn_close_ws(c, RC_WS_CLOSE_INTERNAL, "out of memory", true);
        return;
    }
    /* Recovery: a client that saw the room up to msg_id `since` under epoch E gets exactly
     * the messages after it, when the history still reaches back that far in the same epoch. */
    const rc_json_span *since_s = &t->key[RC_JK_SINCE], *epoch_s = &t->key[RC_JK_EPOCH];
    bool want = since_s->type != RC_JSON_NONE;
    uint64_t since = 0;
    bool recovered = false;
    if (want) {
        char ep[RC_EPOCH_LEN + 2];
        long el = epoch_s->type == RC_JSON_STRING
                      ? rc_json_unescape(epoch_s->p, epoch_s->len, ep, sizeof(ep)) : -1;
        uint64_t first = rc_history_first_id(&room->hist);
        recovered = rc_json_get_u64(since_s, &since) && el == RC_EPOCH_LEN &&
                    memcmp(ep, room->epoch, RC_EPOCH_LEN) == 0 && since <= room->last_msg_id &&
                    (since == room->last_msg_id || (first && first <= since + 1));
        if (recovered) srv->stats.recovered++;
        else srv->stats.not_recovered++;
    }
    /* Queued now, before any later message of the room can be queued to this member. */
    char out[192 + rc_json_escape_max(RC_ROOM_NAME_MAX)];
    int n = snprintf(out, sizeof(out),
                     "{\"type\":\"joined\",\"room\":%.*s,\"client_id\":%llu,\"last_msg_id\":%llu,"
                     "\"epoch\":\"%s\"%s}",
                     (int)room->json_len, room->json_name, (unsigned long long)c->client_id,
                     (unsigned long long)room->last_msg_id, room->epoch,
                     !want ? "" : recovered ? ",\"recovered\":true" : ",\"recovered\":false");
    rc_conn_send_frame(c, RC_WS_TEXT, out, (size_t)n);
    if (recovered) {
        /* The kept frames themselves, by reference: nothing is re-encoded, and since this
         * runs before the loop can sequence anything else, the seam has no gap and no
         * duplicate. Replay bypasses the pending budget (the frames are already held by the
         * history); live messages after it count as usual. */
        for (uint32_t i = rc_history_find(&room->hist, since); i < room->hist.count; i++)
            rc_conn_send_replay(c, rc_history_at(&room->hist, i)->frame);
    }
}

static void do_leave(rc_conn *c, const rc_json_top *t)
{
    rc_server *srv = c->srv;
    char name[RC_ROOM_NAME_MAX + 1];
    long len = room_name(c, &t->key[RC_JK_ROOM], name);
    if (len < 0) return;
    rc_room *room = rc_rooms_find(&srv->rooms, name, (size_t)len);
    if (!room) {
        rc_roomproto_error(c, RC_ERR_NO_SUCH_ROOM, "no room '%s'", name);
        return;
    }
    int slot = rc_conn_room_slot(c, room);
    if (slot < 0) {
        rc_roomproto_error(c, RC_ERR_NOT_MEMBER, "not a member of room '%s'", name);
        return;
    }
    char out[64 + rc_json_escape_max(RC_ROOM_NAME_MAX)];
    int n = snprintf(out, sizeof(out), "{\"type\":\"left\",\"room\":%.*s}", (int)room->json_len,
                     room->json_name);
    rc_room_leave(srv, c, (uint32_t)slot); /* may free room */
    rc_conn_send_frame(c, RC_WS_TEXT, out, (size_t)n);
}

/* Finds the room a publish goes to: the named one, or the sender's only room. NULL after
 * answering the error. */
static rc_room *target_room(rc_conn *c, const char *name, long len)
{
    if (len < 0) {
        if (c->nrooms == 1) return c->rooms[0].room;
        if (c->nrooms == 0) rc_roomproto_error(c, RC_ERR_NOT_MEMBER, "join a room before publishing");
        else rc_roomproto_error(c, RC_ERR_MISSING_FIELD, "in %u rooms: name the room with \"room\"",
                        c->nrooms);
        return NULL;
    }
    rc_room *room = rc_rooms_find(&c->srv->rooms, name, (size_t)len);
    if (!room || rc_conn_room_slot(c, room) < 0) {
        rc_roomproto_error(c, RC_ERR_NOT_MEMBER, "not a member of room '%.*s'", (int)len, name);
        return NULL;
    }
    return room;
}

/* Idempotency keys are compared by a 64-bit hash of their JSON text (FNV-1a with a final
 * avalanche): a false match needs two keys colliding within one room's window. */
static uint64_t key_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h ? h : 1;
}

/* Sends {"type":"ack","ref":<token>,"room":R,"msg_id":N} — at once, or under --fsync always
 * once the log batch lsn holding the message is on disk. */
static void send_ack(rc_conn *c, const rc_json_span *token, const rc_room *room, uint64_t id,
                     bool duplicate, uint64_t lsn)
{
    char out[96 + RC_ACK_TOKEN_MAX + rc_json_escape_max(RC_ROOM_NAME_MAX)];
    int n = snprintf(out, sizeof(out), "{\"type\":\"ack\",\"ref\":%.*s,\"room\":%.*s,\"msg_id\":%llu%s}",
                     (int)token->len, token->p, (int)room->json_len, room->json_name,
                     (unsigned long long)id, duplicate ? ",\"duplicate\":true" : "");
    rc_server *srv = c->srv;
    if (lsn && srv->store && rc_store_mode(srv->store) == RC_FSYNC_ALWAYS &&
        rc_store_durable(srv->store) < lsn) {
        rc_msg *m = rc_frame_new(RC_WS_TEXT, out, (size_t)n);
        if (!m) return;
        rc_conn_defer_ack(c, lsn, m);
        rc_msg_unref(m);
        return;
    }
    rc_conn_send_frame(c, RC_WS_TEXT, out, (size_t)n);
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
    const rc_json_top *t;    /* its scan */
    bool has_room;           /* it carries "room" already */
    uint64_t client_id;      /* the sender */
};

/* Encodes a text publish: the client's object, minus client_id/msg_id members, with "room"
 * (when absent), "client_id" and "msg_id" appended. Exact length first, so the frame header
 * and payload are written once into one allocation. */
static rc_msg *encode_text(void *vctx, const rc_room *room, uint64_t msg_id)
{
    const struct text_pub *x = vctx;
    const rc_json_top *t = x->t;
    size_t body = t->close - t->open;
    for (size_t i = 0; i < t->ncut; i++) body -= t->cut[i].len;
    bool nonempty = t->members > t->members_cut;
    char ids[64];
    int il = (int)format_ids(ids, x->client_id, msg_id);
    size_t room_part = x->has_room ? 0 : 7 + (size_t)room->json_len + 1;
    size_t plen = body + (nonempty ? 1 : 0) + room_part + (size_t)il;
    size_t hl = rc_ws_header_size(plen);
    rc_msg *m = rc_msg_new(hl + plen);
    if (!m) return NULL;
    rc_ws_encode_header((uint8_t *)m->data, RC_WS_TEXT, true, plen);
    char *w = m->data + hl;
    bool ne;
    size_t k = rc_json_copy_open(x->p, t, w, &ne);
    if (k != body || ne != nonempty) abort(); /* the scanner and this arithmetic disagree */
    w += k;
    if (nonempty) *w++ = ',';
    if (!x->has_room) {
        memcpy(w, "\"room\":", 7);
        memcpy(w + 7, room->json_name, room->json_len);
        w[7 + room->json_len] = ',';
        w += room_part;
    }
    memcpy(w, ids, (size_t)il);
    return m;
}

static bool type_is(const char *type, long tl, const char *s)
{
    return tl == (long)strlen(s) && memcmp(type, s, (size_t)tl) == 0;
}

uint64_t rc_roomproto_publish_text(rc_server *srv, rc_room *room, const char *p,
                                   const rc_json_top *t, uint64_t client_id)
{
    struct text_pub x = {.p = p, .t = t, .has_room = t->key[RC_JK_ROOM].type != RC_JSON_NONE,
                         .client_id = client_id};
    return rc_room_publish(srv, room, encode_text, &x);
}

bool rc_roomproto_type_reserved(const char *type, size_t len)
{
    long tl = (long)len;
    return type_is(type, tl, "joined") || type_is(type, tl, "left") ||
           type_is(type, tl, "error") || type_is(type, tl, "ack") ||
           rc_nsws_is_type(type, len);
}

void rc_roomproto_on_text(rc_conn *c, char *p, size_t n)
{
    rc_json_top t;
    int r = rc_json_scan(p, n, RC_ROOMPROTO_CUT, &t);
    switch (r) {
    case RC_JSON_OK: break;
    case RC_JSON_ENOTOBJECT: rc_roomproto_error(c, RC_ERR_NOT_OBJECT, "a message must be a JSON object"); return;
    case RC_JSON_EDEPTH: rc_roomproto_error(c, RC_ERR_BAD_JSON, "JSON nested deeper than %d", RC_JSON_MAX_DEPTH); return;
    case RC_JSON_ECUTS: rc_roomproto_error(c, RC_ERR_BAD_JSON, "too many duplicate client_id/msg_id members"); return;
    default: rc_roomproto_error(c, RC_ERR_BAD_JSON, "invalid JSON"); return;
    }

    char type[24];
    long tl = -1;
    if (t.key[RC_JK_TYPE].type == RC_JSON_STRING)
        tl = rc_json_unescape(t.key[RC_JK_TYPE].p, t.key[RC_JK_TYPE].len, type, sizeof(type));
    if (tl > 0) {
        if (type_is(type, tl, "join")) {
            do_join(c, &t);
            return;
        }
        if (type_is(type, tl, "leave")) {
            do_leave(c, &t);
            return;
        }
        if (rc_nsws_is_type(type, (size_t)tl)) {
            rc_nsws_on_text(c, type, (size_t)tl, p, n, &t);
            return;
        }
        if (rc_roomproto_type_reserved(type, (size_t)tl)) {
            rc_roomproto_error(c, RC_ERR_RESERVED_TYPE, "type '%.*s' is reserved for the server",
                       (int)tl, type);
            return;
        }
    }

    char name[RC_ROOM_NAME_MAX + 1];
    long len = -1;
    bool has_room = t.key[RC_JK_ROOM].type != RC_JSON_NONE;
    if (has_room && (len = room_name(c, &t.key[RC_JK_ROOM], name)) < 0) return;
    rc_room *room = target_room(c, name, len);
    if (!room) return;
    const rc_json_span *ack = &t.key[RC_JK_ACK], *key = &t.key[RC_JK_IDEMPOTENCY_KEY];
    if (ack->type != RC_JSON_NONE && ack->len > RC_ACK_TOKEN_MAX) {
        rc_roomproto_error(c, RC_ERR_BAD_FIELD, "\"ack\" token longer than %d bytes", RC_ACK_TOKEN_MAX);
        return;
    }
    uint64_t khash = 0;
    if (key->type != RC_JSON_NONE) {
        if (key->type != RC_JSON_STRING || key->len < 3 || key->len > RC_ACK_TOKEN_MAX) {
            rc_roomproto_error(c, RC_ERR_BAD_FIELD, "\"idempotency_key\" must be a non-empty string of at most %d bytes",
                       RC_ACK_TOKEN_MAX);
            return;
        }
        khash = key_hash(key->p, key->len);
        uint64_t seen = rc_room_idem_find(c->srv, room, khash);
        if (seen) {
            /* Already sequenced: the room does not see it twice; the sender learns its id. */
            c->srv->stats.duplicates++;
            if (ack->type != RC_JSON_NONE) send_ack(c, ack, room, seen, true, 0);
            return;
        }
    }
    struct text_pub x = {.p = p, .t = &t, .has_room = has_room, .client_id = c->client_id};
    uint64_t lsn = 0;
    uint64_t id = rc_room_publish_lsn(c->srv, room, encode_text, &x, &lsn);
    if (id == 0) {
        rc_conn_close_ws(c, RC_WS_CLOSE_INTERNAL, "out of memory", true);
        return;
    }
    if (khash) rc_room_idem_add(c->srv, room, khash, id);
    if (ack->type != RC_JSON_NONE) send_ack(c, ack, room, id, false, lsn);
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
    size_t hl = rc_ws_header_size(plen);
    rc_msg *m = rc_msg_new(hl + plen);
    if (!m) return NULL;
    rc_ws_encode_header((uint8_t *)m->data, RC_WS_BINARY, true, plen);
    char *w = m->data + hl;
    put_le64(w, msg_id);
    put_le64(w + 8, x->client_id);
    w[16] = (char)room->name_len;
    memcpy(w + 17, room->name, room->name_len);
    if (x->len) memcpy(w + 17 + room->name_len, x->payload, x->len);
    return m;
}

void rc_roomproto_on_binary(rc_conn *c, const uint8_t *p, size_t n)
{
    if (n < 1 || (size_t)p[0] + 1 > n) {
        rc_roomproto_error(c, RC_ERR_BAD_BINARY, "binary message: room_len byte missing or too large");
        return;
    }
    size_t rl = p[0];
    /* Error replies quote the room, so it must be text a client can decode (and a room name
     * never has invalid UTF-8 or NUL anyway: they come from JSON strings). */
    if (rl && (!rc_utf8_valid(p + 1, rl) || memchr(p + 1, 0, rl))) {
        rc_roomproto_error(c, RC_ERR_BAD_BINARY, "binary message: room name is not UTF-8 without NUL");
        return;
    }
    rc_room *room = target_room(c, (const char *)p + 1, rl ? (long)rl : -1);
    if (!room) return;
    struct bin_pub x = {.payload = p + 1 + rl, .len = n - 1 - rl, .client_id = c->client_id};
    if (rc_room_publish(c->srv, room, encode_binary, &x) == 0)
        rc_conn_close_ws(c, RC_WS_CLOSE_INTERNAL, "out of memory", true);
}
