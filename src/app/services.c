/* services.c — requests from roomcast's clients to the worker broker, the built-in
 * roomcast.publish, and room services; see services.h and docs/broker.md. */
#include "app/services.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/api.h"
#include "app/client.h"
#include "app/server.h"
#include "broker/zbroker.h"
#include "codec/base64.h"
#include "codec/json.h"
#include "codec/utf8.h"
#include "core/log.h"
#include "rooms/redisrooms.h"
#include "rooms/room.h"
#include "rooms/roomproto.h"
#include "rooms/wire.h"

/* One --room-service PATTERN=SERVICE. */
typedef struct svc_route {
    char *pattern;           /* fnmatch(3) glob on the room name */
    char *service;           /* the service that rules matching rooms */
} svc_route;

/* A request of a client connection in flight: the slot's req_id and the client's "id". */
typedef struct svc_slot {
    uint64_t req;            /* brk req_id (0: free); low 6 bits are the slot index */
    uint8_t idlen;           /* bytes of id */
    char id[RC_SVC_ID_MAX];  /* the request's "id", raw JSON text, echoed as is */
} svc_slot;

/* What services keep per client connection, made at its first request. */
typedef struct rc_svc_client {
    brk_origin o;            /* its requests in the broker (o.arg: this struct) */
    rc_services *s;
    rc_client *cl;           /* the connection */
    uint32_t inflight;       /* slots in use */
    uint64_t gen;            /* next req_id generation */
    svc_slot slots[RC_SVC_INFLIGHT];
    /* HTTP: the one deferred exchange (requests on a connection are answered in order) */
    bool http_pending;       /* a POST /api/services is waiting for the broker */
    bool http_done;          /* its answer is ready (h_*), on s->done list */
    rc_http_later later;     /* what the response needs of the request */
    int h_status;            /* the answer: status, */
    const char *h_ctype;     /* content type (static), */
    char *h_body;            /* body (malloc'd, or NULL), */
    size_t h_len;            /* its bytes */
    struct rc_svc_client *done_next; /* s->done list */
} rc_svc_client;

/* A room-service request in flight: who sent it, to which room. Its address is its req_id. */
typedef struct room_req {
    struct room_req *prev, *next; /* rc_services.rreqs: freed at the end even if cancelled */
    uint64_t sender;         /* client_id of the member who published */
    uint16_t nlen;           /* bytes of room */
    char room[RC_ROOM_NAME_MAX + 1];
} room_req;

struct rc_services {
    rc_server *srv;
    svc_route *routes;       /* --room-service rows, in flag order (first match wins) */
    size_t nroutes;
    brk_origin rooms;        /* the origin of every room-service request */
    uint32_t room_inflight;  /* room_req outstanding */
    room_req *rreqs;         /* them, to free what brk_origin_gone cancels */
    rc_svc_client *done;     /* HTTP exchanges whose answer is ready, sent from `later` */
    rc_timer later;          /* fires at once: answers HTTP outside the broker's callbacks */
    struct spub *pubs;       /* --redis: publishes waiting for the script (spub) */
    rc_services_stats st;
};

static brk_broker *core(rc_services *s)
{
    return s->srv->broker ? rc_zbroker_core(s->srv->broker) : NULL;
}

static void touched(rc_services *s)
{
    if (s->srv->broker) rc_zbroker_touched(s->srv->broker);
}

static mdp_frame frame_of(const void *p, size_t n)
{
    return (mdp_frame){.p = p, .len = n};
}

/* Is p[0..n) one JSON value (any type)? rc_json_scan reports a non-object only for text that is
 * otherwise valid JSON. Bodies become JSON text of a WebSocket frame, so UTF-8 too. */
static bool is_json(const char *p, size_t n)
{
    rc_json_top q;
    int r = rc_json_scan(p, n, 0, &q);
    return (r == RC_JSON_OK || r == RC_JSON_ENOTOBJECT) && rc_utf8_valid((const uint8_t *)p, n);
}

/* Frames of a reply as one buffer: the body as the worker sent it (frames concatenated). */
static char *join_frames(const mdp_frame *body, size_t nbody, size_t *len)
{
    size_t n = 0;
    for (size_t i = 0; i < nbody; i++) n += body[i].len;
    char *p = malloc(n + 1);
    if (!p) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < nbody; i++) {
        if (body[i].len) memcpy(p + k, body[i].p, body[i].len);
        k += body[i].len;
    }
    *len = n;
    return p;
}

/* Standard base64 with padding; returns the decoded length or -1. */
static long b64_decode(const char *in, size_t n, uint8_t *out)
{
    if (n % 4) return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            char ch = in[i + j];
            int d = ch >= 'A' && ch <= 'Z' ? ch - 'A' : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
                  : ch >= '0' && ch <= '9' ? ch - '0' + 52 : ch == '+' ? 62 : ch == '/' ? 63
                  : ch == '=' && i + 4 == n && j >= 2 ? -2 : -1;
            if (d == -1 || (pad && d != -2)) return -1;
            if (d == -2) {
                pad++;
                d = 0;
            }
            v = v << 6 | (uint32_t)d;
        }
        out[k++] = (uint8_t)(v >> 16);
        if (pad < 2) out[k++] = (uint8_t)(v >> 8);
        if (pad < 1) out[k++] = (uint8_t)v;
    }
    return (long)k;
}

/* ---- publishing as the server (roomcast.publish, room-service replies) -------------------- */

/* Checks the JSON object p[0..n) as a message of the server for the room whose name as a JSON
 * literal is rj[0..rjl), scanning it into *q. Returns NULL, or why it cannot be published. */
static const char *server_msg_check(const rc_rooms *t, const char *rj, size_t rjl,
                                    const char *p, size_t n, rc_json_top *q)
{
    if (rc_json_scan(p, n, RC_ROOMPROTO_CUT, q) != RC_JSON_OK)
        return "a message must be a JSON object";
    if (q->dups & RC_ROOMPROTO_PUBLISH_KEYS) return "a message repeats a member the server reads";
    const rc_json_span *ty = &q->key[RC_JK_TYPE];
    char type[32];
    long tl = ty->type == RC_JSON_STRING ? rc_json_unescape(ty->p, ty->len, type, sizeof(type))
                                         : -1;
    if (tl > 0 && rc_roomproto_type_reserved(t, type, (size_t)tl))
        return "a message may not have a type reserved for the server";
    /* A "room" member is kept as written by the encoder: it must name this room. */
    const rc_json_span *rs = &q->key[RC_JK_ROOM];
    if (rs->type != RC_JSON_NONE && (rs->len != rjl || memcmp(rs->p, rj, rs->len) != 0))
        return "a message's \"room\" must be the room it is published in (or absent)";
    return NULL;
}

/* Sequences the JSON object p[0..n) in room as the server's message (client_id 0), through
 * the room's one publish path. Returns the msg_id, or 0 with the reason in *why. */
static uint64_t publish_as_server(rc_services *s, rc_room *room, const char *p, size_t n,
                                  const char **why)
{
    rc_rooms *t = &s->srv->rooms;
    rc_json_top q;
    if ((*why = server_msg_check(t, room->json_name, room->json_len, p, n, &q))) return 0;
    bool dup;
    uint64_t id = rc_roomproto_publish_text(t, room, p, &q, 0, 0, NULL, &dup, NULL);
    if (!id) *why = "out of memory";
    return id;
}

/* ---- --redis: the msg_id comes from the sequencing script -----------------------------------
 *
 * roomcast.publish (WebSocket/TCP requests and POST /api/services/roomcast.publish), RCPUB01
 * from workers and the messages of room services go through rc_redisrooms_publish_as; each
 * waits here as an spub until the script answers, then is answered as its origin expects.
 * Origins that go first cancel theirs (rc_services_client_gone; rc_services_free for all). */
enum { SP_WS, SP_HTTP, SP_WORKER, SP_ROOM };

static void send_error(rc_endpoint *ep, const char *id, size_t idlen, const char *code,
                       const char *msg);
static void http_finish(rc_svc_client *sc, int status, const char *ctype, char *body, size_t len);

typedef struct spub {
    struct spub *prev, *next; /* rc_services.pubs */
    rc_services *s;
    rc_redisrooms_pub *h;    /* the call */
    uint8_t kind;            /* SP_* */
    rc_client *cl;           /* SP_WS, SP_HTTP: the client asking */
    rc_zbroker_later wl;     /* SP_WORKER: the publisher's identity */
    uint8_t idlen;           /* SP_WS: the request's "id", raw JSON text */
    char id[RC_SVC_ID_MAX];
    uint16_t nlen;           /* SP_ROOM: the room, for the log */
    char room[RC_ROOM_NAME_MAX + 1];
} spub;

static void spub_unlink(rc_services *s, spub *sp)
{
    if (sp->prev) sp->prev->next = sp->next;
    else s->pubs = sp->next;
    if (sp->next) sp->next->prev = sp->prev;
}

static void on_server_published(void *arg, int status, uint64_t id, bool dup)
{
    spub *sp = arg;
    rc_services *s = sp->s;
    spub_unlink(s, sp);
    const char *why = status ? rc_redisrooms_strerror(status) : NULL;
    char out[640];
    int ol = why ? 0 : snprintf(out, sizeof(out), "{\"msg_id\":%llu}", (unsigned long long)id);
    switch (sp->kind) {
    case SP_WS:
        if (why) {
            s->st.failed++;
            send_error(&sp->cl->ep, sp->id, sp->idlen, "unavailable", why);
        } else {
            s->st.replies++;
            char msg[800 + RC_SVC_ID_MAX];
            int k = snprintf(msg, sizeof(msg), "{\"type\":\"reply\",\"id\":%.*s,\"body\":%.*s}",
                             (int)sp->idlen, sp->id, ol, out);
            rc_endpoint_send_text(&sp->cl->ep, msg, (size_t)k);
        }
        break;
    case SP_HTTP: {
        rc_svc_client *sc = sp->cl->svc;
        if (why) {
            char esc[rc_json_escape_max(256)];
            char msg[300];
            int ml = snprintf(msg, sizeof(msg), "unavailable: %s", why);
            size_t el = rc_json_escape(msg, (size_t)ml < 256 ? (size_t)ml : 256, esc);
            ol = snprintf(out, sizeof(out), "{\"error\":%.*s}", (int)el, esc);
        }
        char *body = malloc((size_t)ol);
        if (why) s->st.failed++;
        else s->st.replies++;
        if (!body) {
            http_finish(sc, 503, "out of memory", NULL, 0);
        } else {
            memcpy(body, out, (size_t)ol);
            http_finish(sc, why ? 503 : 200, "application/json", body, (size_t)ol);
        }
        break;
    }
    case SP_WORKER:
        if (why) rc_zbroker_publish_later(s->srv->broker, &sp->wl, 503, why, strlen(why));
        else
            rc_zbroker_publish_later(s->srv->broker, &sp->wl, 200, out + 10,
                                     (size_t)ol - 11); /* the digits of {"msg_id":N} */
        break;
    case SP_ROOM:
        if (why) {
            s->st.room_bad_reply++;
            rc_warn("room service: message for room '%s' not sequenced: %s", sp->room, why);
        } else {
            s->st.room_published++;
        }
        break;
    }
    (void)dup;
    free(sp);
}

/* Starts the Redis publish of p[0..n) into the room called name[0..nlen) for an origin of
 * kind (the caller fills the origin's fields of the returned spub). NULL with *why and
 * *status (400 a bad message, 503 Redis refused at once) when it cannot. */
static spub *publish_as_server_redis(rc_services *s, const char *name, size_t nlen,
                                     const char *p, size_t n, int kind, const char **why,
                                     int *status)
{
    rc_rooms *t = &s->srv->rooms;
    char lit[rc_json_escape_max(RC_ROOM_NAME_MAX)];
    size_t ll = rc_json_escape(name, nlen, lit);
    rc_json_top q;
    *status = 400;
    if ((*why = server_msg_check(t, lit, ll, p, n, &q))) return NULL;
    *status = 503;
    const char *payload;
    size_t plen;
    spub *sp = calloc(1, sizeof(*sp));
    rc_msg *m = sp ? rc_roomproto_cluster_payload(lit, ll, p, &q, 0, NULL, &payload, &plen)
                   : NULL;
    if (!m) {
        free(sp);
        *why = "out of memory";
        return NULL;
    }
    sp->s = s;
    sp->kind = (uint8_t)kind;
    int err = 0;
    sp->h = rc_redisrooms_publish_as(t, name, nlen, payload, plen, 0, NULL, on_server_published,
                                     sp, &err);
    rc_msg_unref(m);
    if (!sp->h) {
        free(sp);
        *why = rc_redisrooms_strerror(err);
        return NULL;
    }
    sp->next = s->pubs;
    if (s->pubs) s->pubs->prev = sp;
    s->pubs = sp;
    return sp;
}

static void spub_cancel(rc_services *s, spub *sp)
{
    rc_redisrooms_pub_cancel(sp->h);
    spub_unlink(s, sp);
    free(sp);
}

/* roomcast.publish's checks in Redis mode; the room need not exist on this node. Returns 0
 * with the started spub in *out, or the status with the reply JSON written as
 * rc_services_publish_call does. */
static int publish_call_redis(rc_services *s, const rc_endpoint *who, const char *body, size_t n,
                              int kind, spub **started, char *out, size_t cap, size_t *outlen,
                              const char **whyp)
{
    s->st.publish_calls++;
    rc_json_span room, msg;
    char name[RC_ROOM_NAME_MAX + 1];
    const char *why = "the body must be {\"room\":ROOM,\"message\":{...}}";
    int status = 400;
    rc_json_top q;
    long len = -1;
    if (rc_json_scan(body, n, 0, &q) != RC_JSON_OK || !rc_json_member(body, n, "room", &room) ||
        !rc_json_member(body, n, "message", &msg) || room.type != RC_JSON_STRING ||
        msg.type != RC_JSON_OBJECT ||
        (len = rc_json_unescape(room.p, room.len, name, RC_ROOM_NAME_MAX)) <= 0) {
        /* why as set */
    } else if (who && !s->srv->rooms.perm_open &&
               rc_ident_may(&s->srv->rooms, who, name, (size_t)len, RC_PERM_PUBLISH, 0) !=
                   RC_PERM_OK) {
        status = 403;
        why = "publishing in this room is not allowed";
    } else if ((*started = publish_as_server_redis(s, name, (size_t)len, msg.p, msg.len, kind,
                                                   &why, &status))) {
        return 0;
    }
    *whyp = why;
    char esc[rc_json_escape_max(256)];
    char m[300];
    int ml = snprintf(m, sizeof(m), "%s%s", status == 503 ? "unavailable: " : "", why);
    size_t el = rc_json_escape(m, (size_t)ml < 256 ? (size_t)ml : 256, esc);
    *outlen = (size_t)snprintf(out, cap, "{\"error\":%.*s}", (int)el, esc);
    return status;
}

int rc_services_publish_call(rc_services *s, const rc_endpoint *who, const char *body, size_t n,
                             char *out, size_t cap, size_t *outlen)
{
    s->st.publish_calls++;
    rc_json_span room, msg;
    char name[RC_ROOM_NAME_MAX + 1];
    const char *why = NULL;
    int status = 400;
    rc_json_top q;
    long len = -1;
    if (rc_json_scan(body, n, 0, &q) != RC_JSON_OK || !rc_json_member(body, n, "room", &room) ||
        !rc_json_member(body, n, "message", &msg) || room.type != RC_JSON_STRING ||
        msg.type != RC_JSON_OBJECT ||
        (len = rc_json_unescape(room.p, room.len, name, RC_ROOM_NAME_MAX)) <= 0) {
        why = "the body must be {\"room\":ROOM,\"message\":{...}}";
    } else {
        rc_room *r = rc_rooms_find(&s->srv->rooms, name, (size_t)len);
        if (!r) {
            status = 404;
            why = "no such room";
        } else if (who && !s->srv->rooms.perm_open &&
                   rc_ident_may(&s->srv->rooms, who, r->name, r->name_len, RC_PERM_PUBLISH, 0) !=
                       RC_PERM_OK) {
            /* A client publishing through the service is held to the room's publish rule;
             * the HTTP API (the server's admin) and workers are not. */
            status = 403;
            why = "publishing in this room is not allowed";
        } else {
            uint64_t id = publish_as_server(s, r, msg.p, msg.len, &why);
            if (id) {
                *outlen = (size_t)snprintf(out, cap, "{\"msg_id\":%llu}", (unsigned long long)id);
                return 200;
            }
        }
    }
    char esc[rc_json_escape_max(256)];
    size_t el = rc_json_escape(why, strlen(why), esc);
    *outlen = (size_t)snprintf(out, cap, "{\"error\":%.*s}", (int)el, esc);
    return status;
}

/* RCPUB01 on the worker port: [room][message JSON]([sender name]) from any worker-port socket.
 * The same checks and sequencing as roomcast.publish; the room name is taken as bytes (no JSON
 * escaping). The optional name is accepted but not shown: the message is the server's
 * (client_id 0), as every message a worker or service publishes. */
int rc_services_worker_publish(void *arg, mdp_frame room, mdp_frame msg, mdp_frame name,
                               char *out, size_t cap, size_t *outlen)
{
    rc_services *s = arg;
    (void)name;
    s->st.publish_calls++;
    const char *why;
    int status = 400;
    rc_room *r = NULL;
    if (room.len == 0 || room.len > RC_ROOM_NAME_MAX || memchr(room.p, 0, room.len) ||
        !rc_utf8_valid(room.p, room.len)) {
        why = "the room must be a UTF-8 name of 1..255 bytes";
    } else if (s->srv->rooms.cluster) { /* answered when the script has (the room may be
                                           on other nodes only) */
        spub *sp = !rc_utf8_valid(msg.p, msg.len) ? (why = "a message must be a JSON object",
                                                     NULL)
                   : publish_as_server_redis(s, (const char *)room.p, room.len,
                                             (const char *)msg.p, msg.len, SP_WORKER, &why,
                                             &status);
        if (sp) {
            rc_zbroker_publish_defer(s->srv->broker, &sp->wl);
            return 0;
        }
    } else if (!(r = rc_rooms_find(&s->srv->rooms, (const char *)room.p, room.len))) {
        status = 404;
        why = "no such room";
    } else if (!rc_utf8_valid(msg.p, msg.len)) {
        why = "a message must be a JSON object";
    } else {
        uint64_t id = publish_as_server(s, r, (const char *)msg.p, msg.len, &why);
        if (id) {
            *outlen = (size_t)snprintf(out, cap, "%llu", (unsigned long long)id);
            return 200;
        }
        if (strcmp(why, "out of memory") == 0) status = 503;
    }
    size_t n = strlen(why);
    if (n > cap) n = cap;
    memcpy(out, why, n);
    *outlen = n;
    return status;
}

/* ---- JSON requests from WebSocket and TCP clients ------------------------------------------ */

static rc_svc_client *client_state(rc_services *s, rc_client *cl);

static void send_error(rc_endpoint *ep, const char *id, size_t idlen, const char *code,
                       const char *msg)
{
    char esc[rc_json_escape_max(200)];
    size_t ml = strlen(msg);
    size_t el = rc_json_escape(msg, ml < 200 ? ml : 200, esc);
    char out[sizeof(esc) + 96 + RC_SVC_ID_MAX];
    int n = snprintf(out, sizeof(out), "{\"type\":\"error\",\"id\":%.*s,\"code\":\"%s\","
                     "\"message\":%.*s}", (int)idlen, id, code, (int)el, esc);
    rc_endpoint_send_text(ep, out, (size_t)n);
}

static const char *code_message(enum brk_code c)
{
    switch (c) {
    case BRK_NO_SERVICE: return "no worker serves this service";
    case BRK_TIMEOUT: return "no reply within --request-timeout";
    case BRK_WORKER_LOST: return "the worker died holding the request";
    case BRK_OVERLOADED: return "the service's queue is full";
    case BRK_TOO_LARGE: return "the body is larger than --broker-max-message";
    }
    return "failed";
}

static svc_slot *slot_of(rc_svc_client *sc, uint64_t req_id)
{
    svc_slot *sl = &sc->slots[req_id % RC_SVC_INFLIGHT];
    return sl->req == req_id ? sl : NULL;
}

static void slot_free(rc_svc_client *sc, svc_slot *sl)
{
    sl->req = 0;
    sc->inflight--;
}

/* An HTTP answer is sent from the `later` timer: sending it resumes pipelined requests, which
 * may call the broker — never from inside the broker's callback. */
static void http_finish(rc_svc_client *sc, int status, const char *ctype, char *body, size_t len)
{
    sc->h_status = status;
    sc->h_ctype = ctype;
    sc->h_body = body;
    sc->h_len = len;
    sc->http_done = true;
    sc->done_next = sc->s->done;
    sc->s->done = sc;
    rc_timer_start(sc->s->srv->loop, &sc->s->later, rc_loop_now(sc->s->srv->loop));
}

static void on_later(rc_loop *loop, rc_timer *tm)
{
    rc_services *s = (rc_services *)(void *)((char *)tm - offsetof(rc_services, later));
    while (s->done) {
        rc_svc_client *sc = s->done;
        s->done = sc->done_next;
        sc->http_done = sc->http_pending = false;
        char *body = sc->h_body;
        sc->h_body = NULL;
        rc_conn *c = &sc->cl->conn;
        if (sc->h_status == 200)
            rc_http_respond_later(c, &sc->later, 200, sc->h_ctype, body, sc->h_len);
        else if (body) /* roomcast.publish's own JSON error */
            rc_http_respond_later(c, &sc->later, sc->h_status, "application/json", body,
                                  sc->h_len);
        else
            rc_http_error_later(c, &sc->later, sc->h_status, "%s", sc->h_ctype);
        free(body);
    }
}

static void client_reply(brk_origin *o, uint64_t req_id, mdp_frame service, const mdp_frame *body,
                         size_t nbody)
{
    rc_svc_client *sc = o->arg;
    sc->s->st.replies++;
    size_t len;
    char *p = join_frames(body, nbody, &len);
    if (req_id == 0) { /* the HTTP exchange */
        if (!p) http_finish(sc, 503, "out of memory", NULL, 0);
        else http_finish(sc, 200, is_json(p, len) ? "application/json"
                                                  : "application/octet-stream", p, len);
        return;
    }
    svc_slot *sl = slot_of(sc, req_id);
    if (!sl) { free(p); return; }
    rc_endpoint *ep = &sc->cl->ep;
    bool json = p && is_json(p, len);
    size_t cap = 64 + sl->idlen + (json ? len : rc_base64_len(len));
    char *out = p ? malloc(cap) : NULL;
    if (!out) {
        send_error(ep, sl->id, sl->idlen, "overloaded", "out of memory");
    } else {
        size_t n = (size_t)snprintf(out, cap, "{\"type\":\"reply\",\"id\":%.*s,\"%s\":%s",
                                    (int)sl->idlen, sl->id, json ? "body" : "body_b64",
                                    json ? "" : "\"");
        if (json) {
            memcpy(out + n, p, len);
            n += len;
        } else {
            n += rc_base64_encode(p, len, out + n);
            out[n++] = '"';
        }
        out[n++] = '}';
        rc_endpoint_send_text(ep, out, n);
    }
    free(out);
    free(p);
    slot_free(sc, sl);
}

static void client_fail(brk_origin *o, uint64_t req_id, enum brk_code code)
{
    rc_svc_client *sc = o->arg;
    sc->s->st.failed++;
    if (req_id == 0) {
        int status = code == BRK_TIMEOUT ? 504 : code == BRK_TOO_LARGE ? 413 : 503;
        /* the error text rides in h_ctype (a static string) */
        http_finish(sc, status, code_message(code), NULL, 0);
        return;
    }
    svc_slot *sl = slot_of(sc, req_id);
    if (!sl) return;
    send_error(&sc->cl->ep, sl->id, sl->idlen, brk_code_name(code), code_message(code));
    slot_free(sc, sl);
}

static const brk_origin_ops client_ops = {.reply = client_reply, .fail = client_fail};

static rc_svc_client *client_state(rc_services *s, rc_client *cl)
{
    if (cl->svc) return cl->svc;
    rc_svc_client *sc = calloc(1, sizeof(*sc));
    if (!sc) return NULL;
    brk_origin_init(&sc->o, &client_ops, sc);
    sc->s = s;
    sc->cl = cl;
    cl->svc = sc;
    return sc;
}

/* Reads "service" (absent: the default service): false when it is not a string of 1 to
 * MDP_SERVICE_MAX bytes. */
static bool service_name(const char *p, size_t n, char *name, size_t *len)
{
    rc_json_span v;
    if (!rc_json_member(p, n, "service", &v)) {
        *len = 0;
        return true;
    }
    if (v.type != RC_JSON_STRING) return false;
    long l = rc_json_unescape(v.p, v.len, name, MDP_SERVICE_MAX);
    if (l <= 0) return false;
    *len = (size_t)l;
    return true;
}

static int on_request(void *arg, rc_endpoint *ep, const char *type, size_t tl, const char *p,
                      size_t n, const rc_json_top *q)
{
    rc_services *s = arg;
    rc_client *cl = rc_client_of_ep(ep);
    s->st.requests++;
    rc_json_span id, body, b64;
    /* "id": any JSON scalar, echoed as written; absent: null */
    const char *idp = "null";
    size_t idlen = 4;
    if (rc_json_member(p, n, "id", &id)) {
        if (id.type == RC_JSON_OBJECT || id.type == RC_JSON_ARRAY || id.len > RC_SVC_ID_MAX) {
            s->st.failed++;
            send_error(ep, "null", 4, "bad_field",
                       "\"id\" must be a string, number, true, false or null of at most 128 bytes");
            return -1;
        }
        idp = id.p;
        idlen = id.len;
    }
    char name[MDP_SERVICE_MAX + 1];
    size_t nlen;
    if (!service_name(p, n, name, &nlen)) {
        s->st.failed++;
        send_error(ep, idp, idlen, "bad_field", "\"service\" must be a string of 1 to 255 bytes");
        return -1;
    }
    bool has_body = rc_json_member(p, n, "body", &body);
    bool has_b64 = rc_json_member(p, n, "body_b64", &b64);
    if (has_body && has_b64) {
        s->st.failed++;
        send_error(ep, idp, idlen, "bad_field", "\"body\" and \"body_b64\" exclude each other");
        return -1;
    }
    /* The built-in roomcast.publish, answered here. */
    if (nlen == sizeof(RC_SVC_PUBLISH) - 1 && memcmp(name, RC_SVC_PUBLISH, nlen) == 0) {
        char out[640];
        size_t ol;
        if (s->srv->rooms.cluster) { /* --redis: replied when the script has answered */
            spub *sp = NULL;
            const char *why = NULL;
            int st = publish_call_redis(s, ep, has_body ? body.p : "", has_body ? body.len : 0,
                                        SP_WS, &sp, out, sizeof(out), &ol, &why);
            if (st == 0) {
                sp->cl = cl;
                sp->idlen = (uint8_t)idlen;
                memcpy(sp->id, idp, idlen);
                return 0;
            }
            s->st.failed++;
            send_error(ep, idp, idlen,
                       st == 403 ? "forbidden" : st == 503 ? "unavailable" : "bad_field",
                       st == 403 ? "publishing in this room is not allowed"
                       : st == 503 ? why
                                   : "the body must be {\"room\":R,\"message\":{...}}");
            return -1;
        }
        int st = has_body ? rc_services_publish_call(s, ep, body.p, body.len, out, sizeof(out), &ol)
                          : rc_services_publish_call(s, ep, "", 0, out, sizeof(out), &ol);
        if (st != 200) {
            s->st.failed++;
            send_error(ep, idp, idlen,
                       st == 404 ? "no_such_room" : st == 403 ? "forbidden" : "bad_field",
                       st == 404 ? "no such room"
                       : st == 403 ? "publishing in this room is not allowed"
                                   : "the body must be {\"room\":R,\"message\":{...}}");
            return -1;
        }
        s->st.replies++;
        char msg[800 + RC_SVC_ID_MAX];
        int k = snprintf(msg, sizeof(msg), "{\"type\":\"reply\",\"id\":%.*s,\"body\":%.*s}",
                         (int)idlen, idp, (int)ol, out);
        rc_endpoint_send_text(ep, msg, (size_t)k);
        return 0;
    }
    brk_broker *b = core(s);
    rc_svc_client *sc = b ? client_state(s, cl) : NULL;
    if (!b || !sc) {
        s->st.failed++;
        send_error(ep, idp, idlen, "no_service",
                   b ? "out of memory" : "the worker broker is off (--broker-worker-port)");
        return -1;
    }
    if (sc->inflight >= RC_SVC_INFLIGHT) {
        s->st.failed++;
        s->st.refused_inflight++;
        send_error(ep, idp, idlen, "overloaded", "64 requests of this connection are in flight");
        return -1;
    }
    uint8_t *bin = NULL;
    mdp_frame f;
    if (has_b64) {
        if (b64.type != RC_JSON_STRING || !(bin = malloc(b64.len))) {
            s->st.failed++;
            send_error(ep, idp, idlen, "bad_field", "\"body_b64\" must be a base64 string");
            return -1;
        }
        long bl = b64_decode(b64.p + 1, b64.len - 2, bin);
        if (bl < 0) {
            free(bin);
            s->st.failed++;
            send_error(ep, idp, idlen, "bad_field", "\"body_b64\" is not valid base64");
            return -1;
        }
        f = frame_of(bin, (size_t)bl);
    } else {
        f = has_body ? frame_of(body.p, body.len) : frame_of("", 0); /* as the client wrote it */
    }
    uint32_t i = 0;
    while (sc->slots[i].req) i++; /* inflight < RC_SVC_INFLIGHT: one is free */
    svc_slot *sl = &sc->slots[i];
    uint64_t req = (++sc->gen) * RC_SVC_INFLIGHT + i;
    sl->req = req;
    sl->idlen = (uint8_t)idlen;
    memcpy(sl->id, idp, idlen);
    sc->inflight++;
    brk_request(b, &sc->o, req, frame_of(name, nlen), &f, 1, frame_of(NULL, 0),
                rc_loop_now(s->srv->loop));
    free(bin);
    touched(s);
    return 0;
}

void rc_services_client_gone(rc_services *s, rc_client *cl)
{
    for (spub *sp = s->pubs, *next; sp; sp = next) { /* --redis: its publishes' answers */
        next = sp->next;
        if (sp->cl == cl) spub_cancel(s, sp);
    }
    rc_svc_client *sc = cl->svc;
    if (!sc) return;
    cl->svc = NULL;
    brk_broker *b = core(s);
    if (b) {
        brk_origin_gone(b, &sc->o);
        touched(s);
    }
    if (sc->http_done) { /* its answer was waiting for the timer */
        for (rc_svc_client **pp = &s->done; *pp; pp = &(*pp)->done_next)
            if (*pp == sc) {
                *pp = sc->done_next;
                break;
            }
    }
    free(sc->h_body);
    free(sc);
}

/* ---- HTTP ----------------------------------------------------------------------------------- */

bool rc_services_http(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    static const char prefix[] = "/api/services/";
    size_t pl = sizeof(prefix) - 1;
    if (x->path_len <= pl || memcmp(x->path, prefix, pl) != 0) return false;
    rc_services *s = srv->services;
    if (x->method != RC_HTTP_POST) {
        rc_http_error(c, x, 405, "Allow: POST\r\n", false, "method not allowed");
        return true;
    }
    if (!rc_api_authorized(srv, c, x)) return true;
    char name[RC_ROOM_NAME_MAX + 1]; /* the room-name decoder serves service names too */
    long nlen = rc_api_decode_room(x->path + pl, x->path_len - pl, name);
    if (nlen < 0 || nlen > MDP_SERVICE_MAX) {
        rc_http_error(c, x, 400, NULL, false, "invalid service name in the path");
        return true;
    }
    s->st.requests++;
    if ((size_t)nlen == sizeof(RC_SVC_PUBLISH) - 1 && memcmp(name, RC_SVC_PUBLISH, (size_t)nlen) == 0) {
        char out[640];
        size_t ol;
        if (srv->rooms.cluster) { /* --redis: answered when the script has */
            rc_svc_client *sc = client_state(s, rc_client_of(c));
            spub *sp = NULL;
            const char *why;
            int st = sc ? publish_call_redis(s, NULL, x->body, x->body_len, SP_HTTP, &sp, out,
                                             sizeof(out), &ol, &why)
                        : 503;
            if (st == 0) {
                sp->cl = rc_client_of(c);
                rc_http_defer(c, x, &sc->later);
                sc->http_pending = true;
                return true;
            }
            s->st.failed++;
            if (!sc) rc_http_error(c, x, 503, NULL, false, "out of memory");
            else rc_http_respond(c, x, st, "application/json", "Cache-Control: no-store\r\n",
                                 out, ol);
            return true;
        }
        int st = rc_services_publish_call(s, NULL, x->body, x->body_len, out, sizeof(out), &ol);
        if (st == 200) s->st.replies++;
        else s->st.failed++;
        rc_http_respond(c, x, st, "application/json", "Cache-Control: no-store\r\n", out, ol);
        return true;
    }
    brk_broker *b = core(s);
    rc_svc_client *sc = b ? client_state(s, rc_client_of(c)) : NULL;
    if (!sc) {
        s->st.failed++;
        rc_http_error(c, x, 503, NULL, false, b ? "out of memory"
                                                : "the worker broker is off (--broker-worker-port)");
        return true;
    }
    /* Requests of one connection are answered in order: while this one waits, the HTTP
     * transport reads no further request, so there is never a second one here. */
    rc_http_defer(c, x, &sc->later);
    sc->http_pending = true;
    mdp_frame f = frame_of(x->body, x->body_len);
    brk_request(b, &sc->o, 0, frame_of(name, (size_t)nlen), &f, 1, frame_of(NULL, 0),
                rc_loop_now(srv->loop));
    touched(s);
    return true;
}

/* ---- room services -------------------------------------------------------------------------- */

static const svc_route *route_of(const rc_services *s, const char *room)
{
    for (size_t i = 0; i < s->nroutes; i++)
        if (fnmatch(s->routes[i].pattern, room, 0) == 0) return &s->routes[i];
    return NULL;
}

/* Tells the sender of a room-service request (if still connected) that it failed. */
static void room_error(rc_services *s, const room_req *r, const char *code, const char *msg)
{
    s->st.room_failed++;
    rc_client *cl = r->sender ? rc_client_find(s->srv, r->sender) : NULL;
    if (!cl) return;
    char esc[rc_json_escape_max(RC_ROOM_NAME_MAX)];
    size_t el = rc_json_escape(r->room, r->nlen, esc);
    char out[sizeof(esc) + 256];
    int n = snprintf(out, sizeof(out), "{\"type\":\"error\",\"room\":%.*s,\"code\":\"%s\","
                     "\"message\":\"%s\"}", (int)el, esc, code, msg);
    rc_endpoint_send_text(&cl->ep, out, (size_t)n);
}

/* Walks the elements of the JSON array a[0..n) (already validated). Returns false at the end. */
static bool array_next(const char **pp, const char *end, const char **ep, size_t *elen)
{
    const char *p = *pp;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',' ||
                       *p == '['))
        p++;
    if (p >= end || *p == ']') return false;
    const char *start = p;
    int depth = 0;
    bool str = false;
    for (; p < end; p++) {
        char ch = *p;
        if (str) {
            if (ch == '\\') p++;
            else if (ch == '"') str = false;
        } else if (ch == '"') {
            str = true;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (depth == 0) break;
            depth--;
        } else if (ch == ',' && depth == 0) {
            break;
        }
    }
    const char *e = p;
    while (e > start && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) e--;
    *ep = start;
    *elen = (size_t)(e - start);
    *pp = p;
    return true;
}

static void rreq_unlink(rc_services *s, room_req *r)
{
    if (r->prev) r->prev->next = r->next;
    else s->rreqs = r->next;
    if (r->next) r->next->prev = r->prev;
    s->room_inflight--;
    free(r);
}

static void room_reply(brk_origin *o, uint64_t req_id, mdp_frame service, const mdp_frame *body,
                       size_t nbody)
{
    rc_services *s = o->arg;
    room_req *r = (room_req *)(uintptr_t)req_id;
    size_t len;
    char *p = join_frames(body, nbody, &len);
    rc_room *room = rc_rooms_find(&s->srv->rooms, r->room, r->nlen);
    /* The reply: {"messages":[M...]} or a bare [M...]; an empty body publishes nothing. */
    rc_json_span arr = {.type = RC_JSON_NONE};
    rc_json_top q;
    int sr = p && len ? rc_json_scan(p, len, 0, &q) : RC_JSON_OK;
    if (p && len && sr == RC_JSON_OK) rc_json_member(p, len, "messages", &arr);
    else if (p && len && sr == RC_JSON_ENOTOBJECT && rc_utf8_valid((const uint8_t *)p, len)) {
        size_t k = 0;
        while (k < len && p[k] != '[') k++;
        arr = (rc_json_span){.p = p + k, .len = len - k, .type = RC_JSON_ARRAY};
    }
    if (!p || (len && arr.type != RC_JSON_ARRAY)) {
        s->st.room_bad_reply++;
        room_error(s, r, "worker_lost", "the room's service sent an invalid reply");
    } else if (len && s->srv->rooms.cluster) {
        /* --redis: each message through the script, in order (one connection, pipelined);
         * the room need not be on this node any more */
        const char *cur = arr.p, *end = arr.p + arr.len, *m;
        size_t ml;
        while (array_next(&cur, end, &m, &ml)) {
            const char *why;
            int st;
            spub *sp = publish_as_server_redis(s, r->room, r->nlen, m, ml, SP_ROOM, &why, &st);
            if (sp) {
                sp->nlen = r->nlen;
                memcpy(sp->room, r->room, r->nlen);
                sp->room[r->nlen] = '\0';
            } else {
                s->st.room_bad_reply++;
                rc_warn("room service '%.*s': message for room '%.*s' dropped: %s",
                        (int)service.len, (const char *)service.p, (int)r->nlen, r->room, why);
            }
        }
    } else if (len && room) {
        const char *cur = arr.p, *end = arr.p + arr.len, *m;
        size_t ml;
        while (array_next(&cur, end, &m, &ml)) {
            const char *why;
            if (publish_as_server(s, room, m, ml, &why)) {
                s->st.room_published++;
            } else {
                s->st.room_bad_reply++;
                rc_warn("room service '%.*s': message for room '%s' dropped: %s",
                        (int)service.len, (const char *)service.p, room->name, why);
            }
        }
    }
    free(p);
    rreq_unlink(s, r);
}

static void room_fail(brk_origin *o, uint64_t req_id, enum brk_code code)
{
    rc_services *s = o->arg;
    room_req *r = (room_req *)(uintptr_t)req_id;
    room_error(s, r, brk_code_name(code), code_message(code));
    rreq_unlink(s, r);
}

static const brk_origin_ops room_ops = {.reply = room_reply, .fail = room_fail};

static int on_room_publish(void *arg, rc_endpoint *ep, rc_room *room, const char *p, size_t n,
                           const rc_json_top *q)
{
    rc_services *s = arg;
    const svc_route *rt = route_of(s, room->name);
    if (!rt) return RC_ROOMPROTO_NOT_SERVED;
    rc_rooms *t = &s->srv->rooms;
    if (!p)
        return rc_roomproto_error(t, ep, RC_RERR_BAD_BINARY,
                                  "room '%s' is served by '%s', which takes JSON messages only",
                                  room->name, rt->service);
    room_req tmp = {.sender = ep->client_id, .nlen = room->name_len};
    memcpy(tmp.room, room->name, room->name_len);
    brk_broker *b = core(s);
    if (!b) {
        room_error(s, &tmp, "no_service", "the worker broker is off (--broker-worker-port)");
        return -1;
    }
    if (s->room_inflight >= RC_SVC_ROOM_INFLIGHT) {
        room_error(s, &tmp, "overloaded", "too many room-service requests in flight");
        return -1;
    }
    /* {"room":R,"sender":{"client_id":C[,"user":U]},"message":M} — M as the member wrote it;
     * U is the sender's verified user (docs/auth.md), the one thing a worker can trust */
    const rc_ident *id = ep->auth == RC_IDENT_USER ? ep->ident : NULL;
    int ul = id ? (int)id->user_json_len - 1 : 0;
    size_t cap = 66 + room->json_len + (size_t)ul + n;
    char *body = malloc(cap);
    room_req *r = malloc(sizeof(*r));
    if (!body || !r) {
        free(body);
        free(r);
        room_error(s, &tmp, "overloaded", "out of memory");
        return -1;
    }
    *r = tmp;
    r->next = s->rreqs;
    if (s->rreqs) s->rreqs->prev = r;
    s->rreqs = r;
    int k = snprintf(body, cap, "{\"room\":%.*s,\"sender\":{\"client_id\":%llu%s%.*s},\"message\":",
                     (int)room->json_len, room->json_name, (unsigned long long)ep->client_id,
                     id ? "," : "", ul, id ? id->user_json : "");
    memcpy(body + k, p, n);
    body[k + n] = '}';
    mdp_frame f = frame_of(body, (size_t)k + n + 1);
    s->room_inflight++;
    s->st.room_requests++;
    /* Sticky on the room: one worker holds the room while it lives, its requests in order. */
    brk_request(b, &s->rooms, (uint64_t)(uintptr_t)r, frame_of(rt->service, strlen(rt->service)),
                &f, 1, frame_of(room->name, room->name_len), rc_loop_now(s->srv->loop));
    free(body);
    touched(s);
    return 0;
}

void rc_services_on_moved(void *arg, mdp_frame service, mdp_frame key)
{
    rc_services *s = arg;
    rc_room *room = rc_rooms_find(&s->srv->rooms, (const char *)key.p, key.len);
    if (!room) return;
    /* Not sequenced (like presence): a notice outside the room's msg_id order, so gap
     * detection is untouched. Encoded once per wire format among the members. */
    char out[64 + rc_json_escape_max(RC_ROOM_NAME_MAX)];
    int n = snprintf(out, sizeof(out), "{\"type\":\"room_service\",\"room\":%.*s,"
                     "\"state\":\"moved\"}", (int)room->json_len, room->json_name);
    rc_msg *enc[RC_WIRE__COUNT] = {0};
    bool made[RC_WIRE__COUNT] = {0};
    for (uint32_t i = 0; i < room->nmembers; i++) {
        rc_member *mb = &room->members[i];
        if (!made[mb->wire]) {
            enc[mb->wire] = rc_wire_text(mb->wire, out, (size_t)n);
            made[mb->wire] = true;
        }
        rc_endpoint_give(mb->ep, enc[mb->wire]);
    }
    for (int w = 0; w < RC_WIRE__COUNT; w++)
        if (enc[w]) rc_msg_unref(enc[w]);
    s->st.moved++;
}

/* ---- life cycle ----------------------------------------------------------------------------- */

/* Each --room-service value (repeated flags are joined with '\n' by the config parser). */
static int parse_routes(rc_services *s, const char *spec)
{
    if (!spec || !*spec) return 0;
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (!eq || eq == p || (size_t)(eq - p) + 1 >= n || n - (size_t)(eq - p) - 1 > MDP_SERVICE_MAX) {
            rc_error("invalid --room-service '%.*s': expected PATTERN=SERVICE", (int)n, p);
            return -1;
        }
        svc_route *nr = realloc(s->routes, (s->nroutes + 1) * sizeof(*nr));
        if (!nr) return -1;
        s->routes = nr;
        nr[s->nroutes].pattern = strndup(p, (size_t)(eq - p));
        nr[s->nroutes].service = strndup(eq + 1, n - (size_t)(eq - p) - 1);
        if (!nr[s->nroutes].pattern || !nr[s->nroutes].service) return -1;
        s->nroutes++;
        p += n + (end ? 1 : 0);
    }
    return 0;
}

rc_services *rc_services_new(rc_server *srv)
{
    rc_services *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->srv = srv;
    brk_origin_init(&s->rooms, &room_ops, s);
    rc_timer_init(&s->later, on_later);
    if (parse_routes(s, srv->cfg.room_service) < 0) {
        rc_services_free(s);
        return NULL;
    }
    /* The publish hook only when some room has a service: other deployments pay nothing. */
    rc_roomproto_set_services(&srv->rooms, on_request, s->nroutes ? on_room_publish : NULL, s);
    return s;
}

void rc_services_attach(rc_services *s)
{
    brk_broker *b = core(s);
    if (!b) return;
    rc_zbroker_set_moved(s->srv->broker, rc_services_on_moved, s);
    rc_zbroker_set_publish(s->srv->broker, rc_services_worker_publish, s);
    /* --broker-at-most-once is applied by zbroker when it starts the core */
}

void rc_services_free(rc_services *s)
{
    if (!s) return;
    brk_broker *b = core(s);
    if (b) brk_origin_gone(b, &s->rooms);
    while (s->rreqs) rreq_unlink(s, s->rreqs);
    while (s->pubs) spub_cancel(s, s->pubs);
    rc_timer_stop(s->srv->loop, &s->later);
    for (size_t i = 0; i < s->nroutes; i++) {
        free(s->routes[i].pattern);
        free(s->routes[i].service);
    }
    free(s->routes);
    free(s);
}

const rc_services_stats *rc_services_stats_of(const rc_services *s)
{
    return &s->st;
}
