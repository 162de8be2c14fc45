/* roomproto.c — join, leave, publish and errors of the room protocol; see roomproto.h and
 * docs/protocol.md. */
#include "server/roomproto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proto/json.h"
#include "proto/wsframe.h"
#include "server/room.h"
#include "server/server.h"

/* Sends {"type":"error","code":code,"message":...} and counts the fault. */
static void send_error(rc_conn *c, enum rc_err kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void send_error(rc_conn *c, enum rc_err kind, const char *fmt, ...)
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
        send_error(c, RC_ERR_MISSING_FIELD, "\"room\" is required");
        return -1;
    }
    if (s->type != RC_JSON_STRING) {
        send_error(c, RC_ERR_BAD_FIELD, "\"room\" must be a string");
        return -1;
    }
    long len = rc_json_unescape(s->p, s->len, name, RC_ROOM_NAME_MAX);
    if (len <= 0) {
        send_error(c, RC_ERR_BAD_FIELD, "\"room\" must be 1 to %d bytes of UTF-8 without NUL",
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
        send_error(c, RC_ERR_TOO_MANY_ROOMS, "already in %u rooms, the most a client may join",
                   srv->cfg.max_rooms_per_client);
        return;
    }
    if (r == RC_JOIN_NOMEM) {
        rc_warn("out of memory joining room");
        rc_conn_close_ws(c, RC_WS_CLOSE_INTERNAL, "out of memory", true);
        return;
    }
    /* Queued now, before any later message of the room can be queued to this member. */
    char out[128 + rc_json_escape_max(RC_ROOM_NAME_MAX)];
    int n = snprintf(out, sizeof(out),
                     "{\"type\":\"joined\",\"room\":%.*s,\"client_id\":%llu,\"last_msg_id\":%llu}",
                     (int)room->json_len, room->json_name, (unsigned long long)c->client_id,
                     (unsigned long long)room->last_msg_id);
    rc_conn_send_frame(c, RC_WS_TEXT, out, (size_t)n);
}

static void do_leave(rc_conn *c, const rc_json_top *t)
{
    rc_server *srv = c->srv;
    char name[RC_ROOM_NAME_MAX + 1];
    long len = room_name(c, &t->key[RC_JK_ROOM], name);
    if (len < 0) return;
    rc_room *room = rc_rooms_find(&srv->rooms, name, (size_t)len);
    if (!room) {
        send_error(c, RC_ERR_NO_SUCH_ROOM, "no room '%s'", name);
        return;
    }
    int slot = rc_conn_room_slot(c, room);
    if (slot < 0) {
        send_error(c, RC_ERR_NOT_MEMBER, "not a member of room '%s'", name);
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
        if (c->nrooms == 0) send_error(c, RC_ERR_NOT_MEMBER, "join a room before publishing");
        else send_error(c, RC_ERR_MISSING_FIELD, "in %u rooms: name the room with \"room\"",
                        c->nrooms);
        return NULL;
    }
    rc_room *room = rc_rooms_find(&c->srv->rooms, name, (size_t)len);
    if (!room || rc_conn_room_slot(c, room) < 0) {
        send_error(c, RC_ERR_NOT_MEMBER, "not a member of room '%.*s'", (int)len, name);
        return NULL;
    }
    return room;
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
    int il = snprintf(ids, sizeof(ids), "\"client_id\":%llu,\"msg_id\":%llu}",
                      (unsigned long long)x->client_id, (unsigned long long)msg_id);
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

void rc_roomproto_on_text(rc_conn *c, char *p, size_t n)
{
    rc_json_top t;
    int r = rc_json_scan(p, n, RC_JK_BIT(RC_JK_CLIENT_ID) | RC_JK_BIT(RC_JK_MSG_ID), &t);
    switch (r) {
    case RC_JSON_OK: break;
    case RC_JSON_ENOTOBJECT: send_error(c, RC_ERR_NOT_OBJECT, "a message must be a JSON object"); return;
    case RC_JSON_EDEPTH: send_error(c, RC_ERR_BAD_JSON, "JSON nested deeper than %d", RC_JSON_MAX_DEPTH); return;
    case RC_JSON_ECUTS: send_error(c, RC_ERR_BAD_JSON, "too many duplicate client_id/msg_id members"); return;
    default: send_error(c, RC_ERR_BAD_JSON, "invalid JSON"); return;
    }

    char type[16];
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
        if (type_is(type, tl, "joined") || type_is(type, tl, "left") ||
            type_is(type, tl, "error") || type_is(type, tl, "ack")) {
            send_error(c, RC_ERR_RESERVED_TYPE, "type '%.*s' is reserved for the server",
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
    struct text_pub x = {.p = p, .t = &t, .has_room = has_room, .client_id = c->client_id};
    if (rc_room_publish(c->srv, room, encode_text, &x) == 0)
        rc_conn_close_ws(c, RC_WS_CLOSE_INTERNAL, "out of memory", true);
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
        send_error(c, RC_ERR_BAD_BINARY, "binary message: room_len byte missing or too large");
        return;
    }
    size_t rl = p[0];
    rc_room *room = target_room(c, (const char *)p + 1, rl ? (long)rl : -1);
    if (!room) return;
    struct bin_pub x = {.payload = p + 1 + rl, .len = n - 1 - rl, .client_id = c->client_id};
    if (rc_room_publish(c->srv, room, encode_binary, &x) == 0)
        rc_conn_close_ws(c, RC_WS_CLOSE_INTERNAL, "out of memory", true);
}
