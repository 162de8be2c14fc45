/* api.c — the HTTP API routes; see api.h and docs/api.md.
 *
 * Every route answers synchronously on the loop, like a WebSocket message: a publish through
 * the API is sequenced by rc_room_publish between two client messages, never concurrently with
 * them, so API and client publishes share one msg_id order with no locking.
 */
#include "app/api.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/clapi.h"
#include "app/client.h"
#include "app/metrics.h"
#include "app/server.h"
#include "app/services.h"
#include "app/stats.h"
#include "codec/base64.h"
#include "codec/json.h"
#include "codec/utf8.h"
#include "codec/wsframe.h"
#include "codec/textbuf.h"
#include "rooms/redisrooms.h"
#include "rooms/room.h"
#include "rooms/roomproto.h"
#include "rooms/state.h"
#include "store/store.h"

#define ALLOW_READ "Allow: GET, HEAD\r\n"

/* ---- helpers ------------------------------------------------------------------------------ */


static bool is_read(const rc_http_ctx *x)
{
    return x->method == RC_HTTP_GET || x->method == RC_HTTP_HEAD;
}

/* Path prefix test: on a match, *rest is what follows the prefix. */
static bool path_starts(const rc_http_ctx *x, const char *prefix, const char **rest, size_t *rlen)
{
    size_t n = strlen(prefix);
    if (x->path_len < n || memcmp(x->path, prefix, n) != 0) return false;
    *rest = x->path + n;
    *rlen = x->path_len - n;
    return true;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

long rc_api_decode_room(const char *s, size_t n, char *name)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (i + 2 >= n) return -1; /* a '%' needs two hex digits */
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (ch == '\0' || len == RC_ROOM_NAME_MAX) return -1;
        name[len++] = ch;
    }
    if (len == 0 || !rc_utf8_valid((const uint8_t *)name, len)) return -1;
    name[len] = '\0';
    return (long)len;
}

/* Decodes a {room} path segment, answering 400 when it is not a valid room name. */
static long room_arg(rc_conn *c, const rc_http_ctx *x, const char *s, size_t n, char *name)
{
    long len = rc_api_decode_room(s, n, name);
    if (len < 0)
        rc_http_error(c, x, 400, NULL, false,
                      "invalid room name in the path: it must be 1 to %d bytes of UTF-8 without "
                      "NUL, percent-encoded", RC_ROOM_NAME_MAX);
    return len;
}

/* Checks "Authorization: Bearer KEY" against --api-key, answering 401/403 when it fails.
 * Both sides are hashed first so the comparison takes the same time whatever the key's
 * length and whatever prefix matches; the key never appears in a log or a response. */
bool rc_api_authorized(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    const char *key = srv->cfg.api_key;
    if (!key) {
        rc_http_error(c, x, 403, NULL, false,
                      "the backend API is disabled: start roomcast with --api-key KEY or "
                      "ROOMCAST_API_KEY");
        return false;
    }
    const rc_http_header *h = rc_http_find_header(x->req, "Authorization");
    if (!h || h->value_len < 7 || strncasecmp(h->value, "Bearer ", 7) != 0) {
        rc_http_error(c, x, 401, "WWW-Authenticate: Bearer realm=\"roomcast\"\r\n", false,
                      "this call needs \"Authorization: Bearer <api key>\"");
        return false;
    }
    const char *tok = h->value + 7;
    size_t tlen = h->value_len - 7;
    while (tlen && *tok == ' ') tok++, tlen--;
    unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)key, strlen(key), want);
    SHA256((const unsigned char *)tok, tlen, got);
    if (CRYPTO_memcmp(want, got, sizeof(want)) != 0) {
        rc_http_error(c, x, 401,
                      "WWW-Authenticate: Bearer realm=\"roomcast\", error=\"invalid_token\"\r\n",
                      false, "invalid API key");
        return false;
    }
    return true;
}

/* Reads an unsigned decimal query parameter; false when present but malformed. */
static bool query_u64(const rc_http_ctx *x, const char *name, uint64_t *out, bool *present)
{
    size_t nl = strlen(name);
    const char *p = x->query, *end = x->query + x->query_len;
    *present = false;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
            const char *v = p + nl + 1;
            if (v == e || e - v > 19) return false;
            uint64_t r = 0;
            for (; v < e; v++) {
                if (*v < '0' || *v > '9') return false;
                r = r * 10 + (uint64_t)(*v - '0');
            }
            *out = r;
            *present = true;
        }
        p = e + 1;
    }
    return true;
}

/* ---- read-only routes --------------------------------------------------------------------- */

static void healthz(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    char body[160];
    /* --redis: "redis" says whether it is up; the node stays 200 while it is not (its
     * connections and live rooms go on), so a balancer does not drop every node at once. */
    const rc_redisrooms *rr = srv->rooms.cluster;
    int n = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"uptime_s\":%.3f%s}\n",
                     srv->shutting_down ? "shutting_down" : "ok",
                     (double)(rc_loop_now(srv->loop) - srv->started) / 1e9,
                     !rr ? "" : rc_redisrooms_available(rr) ? ",\"redis\":\"up\""
                                                            : ",\"redis\":\"down\"");
    rc_http_respond(c, x, srv->shutting_down ? 503 : 200, "application/json",
                    "Cache-Control: no-store\r\n", body, (size_t)n);
}

static void status_page(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    char body[2048];
    int n = snprintf(body, sizeof(body),
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>roomcast status</title></head>\n"
        "<body style=\"font-family:sans-serif;max-width:40em;margin:2em auto\">\n"
        "<h1>roomcast " RC_VERSION "</h1>\n"
        "<p>A real-time room messaging server. Connect a WebSocket to <code>/</code> and send "
        "<code>{\"type\":\"join\",\"room\":\"lobby\"}</code>; <code>/echo</code> echoes.</p>\n"
        "<table>\n<tr><td>connections</td><td>%u</td></tr>\n"
        "<tr><td>rooms</td><td>%u</td></tr>\n"
        "<tr><td>messages in</td><td>%llu</td></tr>\n"
        "<tr><td>messages out</td><td>%llu</td></tr>\n</table>\n"
        "<p><a href=\"/\">demo</a> · <a href=\"/api/stats\">/api/stats</a> · "
        "<a href=\"/api/rooms\">/api/rooms</a> · <a href=\"/metrics\">/metrics</a></p>\n"
        "</body></html>\n",
        srv->net.nconns, rc_rooms_count(&srv->rooms),
        (unsigned long long)srv->net.stats.messages_in,
        (unsigned long long)srv->rooms.stats.deliveries);
    rc_http_respond(c, x, 200, "text/html; charset=utf-8", "Cache-Control: no-store\r\n", body,
                    (size_t)n);
}

static void stats(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    if (rc_clapi_stats(srv, c, x)) return; /* --redis: the cluster's, answered later */
    char body[16384];
    size_t n = rc_server_stats_json(srv, body, sizeof(body));
    rc_http_respond(c, x, 200, "application/json", "Cache-Control: no-store\r\n", body, n);
}

static void metrics(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    rc_buf out = RC_BUF_INIT;
    if (rc_metrics_render(srv, &out) < 0) {
        rc_buf_release(&out);
        rc_http_error(c, x, 500, NULL, false, "out of memory");
        return;
    }
    rc_http_respond(c, x, 200, "text/plain; version=0.0.4; charset=utf-8",
                    "Cache-Control: no-store\r\n", rc_buf_head(&out), rc_buf_size(&out));
    rc_buf_release(&out);
}

static void room_summary(rc_textbuf *t, const rc_room *r)
{
    rc_textbuf_printf(t, "{\"room\":%.*s,\"members\":%u,\"last_msg_id\":%llu}", (int)r->json_len,
                      r->json_name, r->nmembers, (unsigned long long)r->last_msg_id);
}

static void list_rooms(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    if (rc_clapi_rooms(srv, c, x)) return; /* --redis: the cluster's, answered later */
    rc_textbuf t = {0};
    rc_textbuf_printf(&t, "{\"count\":%u,\"rooms\":[", rc_rooms_count(&srv->rooms));
    uint32_t b = 0;
    bool first = true;
    for (rc_room *r = rc_rooms_next(&srv->rooms, &b, NULL); r;
         r = rc_rooms_next(&srv->rooms, &b, r)) {
        if (!first) rc_textbuf_append(&t, ",", 1);
        first = false;
        room_summary(&t, r);
    }
    rc_textbuf_printf(&t, "]}\n");
    rc_http_respond_json(c, x, 200, &t);
}

static void show_room(rc_conn *c, const rc_http_ctx *x, const rc_room *r)
{
    rc_textbuf t = {0};
    rc_textbuf_printf(&t, "{\"room\":%.*s,\"members\":%u,\"last_msg_id\":%llu,\"clients\":[",
                      (int)r->json_len, r->json_name, r->nmembers,
                      (unsigned long long)r->last_msg_id);
    for (uint32_t i = 0; i < r->nmembers; i++)
        rc_textbuf_printf(&t, "%s%llu", i ? "," : "",
                          (unsigned long long)r->members[i].ep->client_id);
    rc_textbuf_printf(&t, "]");
    /* The users of the authenticated members, by client_id (docs/auth.md). */
    bool any = false;
    for (uint32_t i = 0; i < r->nmembers; i++) {
        const rc_endpoint *m = r->members[i].ep;
        if (m->auth != RC_IDENT_USER) continue;
        rc_textbuf_printf(&t, "%s\"%llu\":%.*s", any ? "," : ",\"users\":{",
                          (unsigned long long)m->client_id, (int)m->ident->user_json_len - 8,
                          m->ident->user_json + 7);
        any = true;
    }
    rc_textbuf_printf(&t, "%s}\n", any ? "}" : "");
    rc_http_respond_json(c, x, 200, &t);
}

/* ---- backend calls ------------------------------------------------------------------------ */

#define RC_API_LIMIT_DEFAULT 100
#define RC_API_LIMIT_MAX 1000

static void base64(rc_textbuf *t, const uint8_t *p, size_t n)
{
    if (t->failed || rc_buf_reserve(&t->buf, rc_base64_len(n)) < 0) {
        t->failed = true;
        return;
    }
    rc_buf_commit(&t->buf, rc_base64_encode(p, n, rc_buf_tail(&t->buf)));
}

/* The room's kept messages after `since`, oldest first: the very frames the members got, with
 * the WebSocket header taken off. A text message is its JSON object as delivered; a binary
 * one is {"msg_id":N,"client_id":C,"binary":"<base64 payload>"}. */
static void room_messages(rc_server *srv, rc_conn *c, const rc_http_ctx *x, const rc_room *room, const char *name)
{
    uint64_t since = 0, limit = RC_API_LIMIT_DEFAULT;
    bool has_since, has_limit;
    if (!query_u64(x, "since", &since, &has_since) || !query_u64(x, "limit", &limit, &has_limit) ||
        limit == 0) {
        rc_http_error(c, x, 400, NULL, false,
                      "since must be an unsigned integer and limit one from 1 to %d",
                      RC_API_LIMIT_MAX);
        return;
    }
    if (limit > RC_API_LIMIT_MAX) limit = RC_API_LIMIT_MAX;
    if (srv->cfg.history_size == 0) {
        rc_http_error(c, x, 501, NULL, false,
                      "message history is not enabled: start roomcast with --history-size N");
        return;
    }
    if (!room) {
        rc_http_error(c, x, 404, NULL, false, "no room '%s'", name);
        return;
    }
    const rc_history *h = &room->hist;
    rc_textbuf t = {0};
    rc_textbuf_printf(&t, "{\"room\":%.*s,\"epoch\":\"%s\",\"last_msg_id\":%llu,"
                      "\"first_msg_id\":%llu,\"messages\":[", (int)room->json_len,
                      room->json_name, room->epoch, (unsigned long long)room->last_msg_id,
                      (unsigned long long)rc_history_first_id(h));
    uint32_t i = rc_history_find(h, since), sent = 0;
    for (; i < h->count && sent < limit; i++, sent++) {
        const rc_hist_entry *e = rc_history_at(h, i);
        rc_ws_frame f;
        const uint8_t *fp = (const uint8_t *)e->frame->data;
        if (rc_ws_parse_header(fp, e->frame->len, false, &f) <= 0) abort(); /* we encoded it */
        const uint8_t *pl = fp + f.header_len;
        if (sent) rc_textbuf_append(&t, ",", 1);
        if (f.opcode == RC_WS_TEXT) {
            rc_textbuf_append(&t, pl, (size_t)f.len);
        } else if (f.len >= 17) {
            uint64_t id = 0, cid = 0;
            for (int b = 7; b >= 0; b--) id = id << 8 | pl[b], cid = cid << 8 | pl[8 + b];
            rc_textbuf_printf(&t, "{\"msg_id\":%llu,\"client_id\":%llu,\"binary\":\"",
                              (unsigned long long)id, (unsigned long long)cid);
            size_t skip = 17 + (size_t)pl[16];
            base64(&t, pl + skip, (size_t)f.len - skip);
            rc_textbuf_append(&t, "\"}", 2);
        }
    }
    rc_textbuf_printf(&t, "],\"more\":%s}\n", i < h->count ? "true" : "false");
    rc_http_respond_json(c, x, 200, &t);
}

/* ---- publishes answered later ---------------------------------------------------------------
 *
 * Two publishes cannot answer at once: in Redis mode the msg_id comes from the sequencing
 * script, and under --fsync always a message counts only once it is durable (its WebSocket
 * ack waits too). The response is deferred (rc_http_defer: the connection reads no further
 * request meanwhile) and this record waits with it, listed on its connection: if the
 * connection ends first, rc_api_client_gone detaches it and the answer is dropped. */
struct rc_api_pub {
    rc_server *srv;
    rc_conn *c;              /* the connection (its rc_client's apipub is this) */
    rc_redisrooms_pub *h;    /* Redis mode: the script call, until it answers */
    rc_durable_wait dw;      /* --fsync always: the wait for the log (first in no list) */
    rc_http_later later;     /* what the response needs of the request */
    uint64_t msg_id;         /* --fsync always: the id it was sequenced as */
    bool dup;                /* --fsync always: an idempotent repeat */
    uint32_t members;        /* the room's local members when it was published */
    size_t name_len;         /* bytes of name */
    char name[];             /* the room's name (decoded) */
};

static void api_pub_free(rc_api_pub *ap)
{
    if (ap->c) rc_client_of(ap->c)->apipub = NULL;
    free(ap);
}

/* The body every successful publish answers (200, both modes). */
static void publish_answer(rc_server *srv, rc_textbuf *out, const char *name, size_t nlen,
                           uint64_t id, uint32_t members, bool dup)
{
    if (!dup) srv->metrics.api_publishes++;
    rc_textbuf_printf(out, "{\"room\":");
    rc_textbuf_json_string(out, name, nlen);
    rc_textbuf_printf(out, ",\"msg_id\":%llu,\"client_id\":0,\"members\":%u%s}\n",
                      (unsigned long long)id, members, dup ? ",\"duplicate\":true" : "");
}

static void publish_answer_later(rc_api_pub *ap, uint64_t id, bool dup)
{
    rc_textbuf out = {0};
    publish_answer(ap->srv, &out, ap->name, ap->name_len, id, ap->members, dup);
    rc_conn *c = ap->c;
    rc_http_later later = ap->later;
    api_pub_free(ap); /* before answering: the answer may run the next request */
    if (out.failed)
        rc_http_error_later(c, &later, 500, "out of memory");
    else
        rc_http_respond_later(c, &later, 200, "application/json", rc_buf_head(&out.buf),
                              rc_buf_size(&out.buf));
    rc_textbuf_release(&out);
}

static void on_redis_published(void *arg, int status, uint64_t id, bool dup)
{
    rc_api_pub *ap = arg;
    ap->h = NULL;
    if (status == 0) {
        publish_answer_later(ap, id, dup);
        return;
    }
    rc_conn *c = ap->c;
    rc_http_later later = ap->later;
    api_pub_free(ap);
    rc_http_error_later(c, &later, 503, "unavailable: %s", rc_redisrooms_strerror(status));
}

static void on_publish_durable(rc_durable_wait *w, bool ok)
{
    rc_api_pub *ap = (rc_api_pub *)(void *)((char *)w - offsetof(rc_api_pub, dw));
    if (ok) {
        publish_answer_later(ap, ap->msg_id, ap->dup);
        return;
    }
    rc_conn *c = ap->c;
    rc_http_later later = ap->later;
    api_pub_free(ap);
    rc_http_error_later(c, &later, 503,
                        "the room was deleted before its log made the message durable");
}

void rc_api_client_gone(rc_server *srv, rc_client *cl)
{
    rc_api_pub *ap = cl->apipub;
    if (!ap) return;
    if (ap->h) {
        rc_redisrooms_pub_cancel(ap->h); /* the script's answer is dropped */
        ap->h = NULL;
    }
    rc_room_durable_cancel(&ap->dw);
    ap->c = NULL;
    api_pub_free(ap);
}

/* Makes the record of a deferred publish of c (NULL: out of memory, answered). */
static rc_api_pub *api_pub_new(rc_server *srv, rc_conn *c, const rc_http_ctx *x,
                               const char *name, size_t nlen, uint32_t members)
{
    rc_api_pub *ap = calloc(1, sizeof(*ap) + nlen + 1);
    if (!ap) {
        rc_http_error(c, x, 500, NULL, false, "out of memory");
        return NULL;
    }
    ap->srv = srv;
    ap->c = c;
    ap->members = members;
    ap->name_len = nlen;
    memcpy(ap->name, name, nlen);
    ap->dw.fn = on_publish_durable;
    return ap;
}

/* Redis mode: the frame goes through the sequencing script; the response waits for it. The
 * room need not exist on this node (its members may all be on others). */
static void publish_redis(rc_server *srv, rc_conn *c, const rc_http_ctx *x, rc_room *room,
                          const char *name, size_t nlen, const rc_json_top *t, uint64_t khash,
                          const rc_statekey *sk)
{
    char lit[rc_json_escape_max(RC_ROOM_NAME_MAX)];
    size_t ll = rc_json_escape(name, nlen, lit);
    const char *payload;
    size_t plen;
    rc_msg *m = rc_roomproto_cluster_payload(lit, ll, x->body, t, 0, NULL, &payload, &plen);
    if (!m) {
        rc_http_error(c, x, 500, NULL, false, "out of memory");
        return;
    }
    rc_api_pub *ap = api_pub_new(srv, c, x, name, nlen, room ? room->nmembers : 0);
    if (!ap) {
        rc_msg_unref(m);
        return;
    }
    int err = 0;
    ap->h = rc_redisrooms_publish_as(&srv->rooms, name, nlen, payload, plen, khash, sk,
                                     on_redis_published, ap, &err);
    rc_msg_unref(m);
    if (!ap->h) {
        ap->c = NULL;
        api_pub_free(ap);
        rc_http_error(c, x, 503, NULL, false, "unavailable: %s", rc_redisrooms_strerror(err));
        return;
    }
    rc_client_of(c)->apipub = ap;
    rc_http_defer(c, x, &ap->later);
}

/* Publishes the request body into the room exactly as a member's publish: same checks, same
 * encoder, same sequencing; the sender's client_id is 0 (the server). */
static void publish(rc_server *srv, rc_conn *c, const rc_http_ctx *x, rc_room *room, const char *name, long nlen)
{
    if (!rc_utf8_valid((const uint8_t *)x->body, x->body_len)) {
        rc_http_error(c, x, 400, NULL, false, "the body must be UTF-8 JSON");
        return;
    }
    rc_json_top t;
    int r = rc_json_scan(x->body, x->body_len, RC_ROOMPROTO_CUT, &t);
    if (r == RC_JSON_ENOTOBJECT) {
        rc_http_error(c, x, 400, NULL, false, "the body must be a JSON object");
        return;
    }
    if (r != RC_JSON_OK) {
        rc_http_error(c, x, 400, NULL, false, "the body is not valid JSON%s",
                      r == RC_JSON_EDEPTH ? " (nested too deeply)" : "");
        return;
    }
    if (t.dups & RC_ROOMPROTO_PUBLISH_KEYS) {
        rc_http_error(c, x, 400, NULL, false, "\"%s\" appears more than once in the body",
                      rc_roomproto_dup_name(t.dups & RC_ROOMPROTO_PUBLISH_KEYS));
        return;
    }
    const rc_json_span *key = &t.key[RC_JK_IDEMPOTENCY_KEY];
    if (key->type != RC_JSON_NONE && !rc_roomproto_key_valid(key)) {
        rc_http_error(c, x, 400, NULL, false,
                      "\"idempotency_key\" must be a non-empty string of at most %d bytes",
                      RC_ACK_TOKEN_MAX);
        return;
    }
    if (t.key[RC_JK_TYPE].type == RC_JSON_STRING) {
        char type[16];
        long tl = rc_json_unescape(t.key[RC_JK_TYPE].p, t.key[RC_JK_TYPE].len, type, sizeof(type));
        if (tl > 0 && rc_roomproto_type_reserved(&srv->rooms, type, (size_t)tl)) {
            rc_http_error(c, x, 400, NULL, false, "type '%.*s' is reserved for the server",
                          (int)tl, type);
            return;
        }
    }
    if (t.key[RC_JK_ROOM].type != RC_JSON_NONE) {
        char other[RC_ROOM_NAME_MAX + 1];
        long ol = t.key[RC_JK_ROOM].type == RC_JSON_STRING
                      ? rc_json_unescape(t.key[RC_JK_ROOM].p, t.key[RC_JK_ROOM].len, other,
                                         sizeof(other))
                      : -1;
        if (ol != nlen || memcmp(other, name, (size_t)nlen) != 0) {
            rc_http_error(c, x, 400, NULL, false,
                          "the body's \"room\" differs from the room in the path");
            return;
        }
    }
    if (!room && !srv->rooms.cluster) {
        rc_http_error(c, x, 404, NULL, false,
                      "no room '%s' (a room exists while it has members)", name);
        return;
    }
    rc_statekey sk;
    char why[512];
    int sr = room ? rc_roomproto_state_check(&srv->rooms, room, &t, x->body_len, &sk, why,
                                             sizeof(why))
                  : rc_roomproto_state_parse(&t, &sk, why, sizeof(why));
    if (sr == RC_STATE_BAD || sr == RC_STATE_FULL) {
        rc_http_error(c, x, sr == RC_STATE_FULL ? 409 : 400, NULL, false, "%s", why);
        return;
    }
    uint32_t members = room ? room->nmembers : 0;
    /* The API's idempotency keys are scoped to the API key that was presented. */
    uint64_t khash = 0;
    if (key->type != RC_JSON_NONE) {
        unsigned char digest[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)srv->cfg.api_key, strlen(srv->cfg.api_key), digest);
        khash = rc_roomproto_key_hash(digest, key);
    }
    if (srv->rooms.cluster) {
        publish_redis(srv, c, x, room, name, (size_t)nlen, &t, khash,
                      sr == RC_STATE_OK ? &sk : NULL);
        return;
    }
    bool dup;
    uint64_t lsn;
    uint64_t id = rc_roomproto_publish_text(&srv->rooms, room, x->body, &t, 0, khash,
                                            sr == RC_STATE_OK ? &sk : NULL, &dup, &lsn);
    if (id == 0) {
        rc_http_error(c, x, 500, NULL, false, "out of memory");
        return;
    }
    rc_rooms *rt = &srv->rooms;
    if (lsn && rt->store && rc_store_mode(rt->store) == RC_FSYNC_ALWAYS &&
        !rc_room_durable(rt, room, lsn)) {
        /* --fsync always: answered once the message is durable, as a WebSocket ack is */
        rc_api_pub *ap = api_pub_new(srv, c, x, name, (size_t)nlen, members);
        if (!ap) return;
        ap->msg_id = id;
        ap->dup = dup;
        rc_room_when_durable(rt, &ap->dw, room, lsn);
        rc_client_of(c)->apipub = ap;
        rc_http_defer(c, x, &ap->later);
        return;
    }
    rc_textbuf out = {0};
    publish_answer(srv, &out, name, (size_t)nlen, id, members, dup);
    rc_http_respond_json(c, x, 200, &out);
}



/* Closes a room: every member gets {"type":"left","room":R,"reason":"room_closed"} and is
 * removed; the connections stay open. */
static void close_room(rc_server *srv, rc_conn *c, const rc_http_ctx *x, rc_room *room)
{
    char note[96 + rc_json_escape_max(RC_ROOM_NAME_MAX)];
    int nl = snprintf(note, sizeof(note), "{\"type\":\"left\",\"room\":%.*s,\"reason\":\"room_closed\"}",
                      (int)room->json_len, room->json_name);
    rc_textbuf out = {0};
    rc_textbuf_printf(&out, "{\"room\":%.*s,\"closed\":true,\"members_removed\":%u}\n",
                      (int)room->json_len, room->json_name, room->nmembers);
    /* Leave first, then notify: the notice is the last thing of the room a member sees, and a
     * member whose send fails (and is closed) is no longer in the room being walked. The room
     * may be freed by the last leave, so it is not touched after the loop. */
    for (uint32_t n = room->nmembers; n > 0; n--) {
        rc_member m = room->members[n - 1];
        rc_room_leave(&srv->rooms, m.ep, m.mslot, RC_LEAVE_QUIET);
        rc_endpoint_send_text(m.ep, note, (size_t)nl);
    }
    srv->metrics.api_room_closes++;
    rc_http_respond_json(c, x, 200, &out);
}

static void kick(rc_server *srv, rc_conn *c, const rc_http_ctx *x, const char *s, size_t n)
{
    uint64_t id = 0;
    bool ok = n > 0 && n <= 19;
    for (size_t i = 0; ok && i < n; i++) {
        if (s[i] < '0' || s[i] > '9') ok = false;
        else id = id * 10 + (uint64_t)(s[i] - '0');
    }
    if (!ok || id == 0) {
        rc_http_error(c, x, 400, NULL, false, "a client id is a positive integer");
        return;
    }
    uint64_t ban = 0;
    bool banning = false;
    if (!query_u64(x, "ban", &ban, &banning) || (banning && (ban == 0 || ban > 366 * 86400))) {
        rc_http_error(c, x, 400, NULL, false, "ban is a number of seconds, 1 to 31622400");
        return;
    }
    rc_client *victim = rc_client_find(srv, id);
    /* A ban holds the client's session: joins presenting it are refused until it expires. The
     * session of a client that is gone but still remembered (--session-ttl) can be banned too. */
    rc_session *se = victim ? victim->ep.sess : NULL;
    if (!victim && banning) se = rc_sessions_of_client(&srv->rooms.sessions, id);
    if (!victim && !se) {
        rc_http_error(c, x, 404, NULL, false, "no connected client %llu%s", (unsigned long long)id,
                      banning ? " and no session of it remembered" : "");
        return;
    }
    if (banning && se)
        rc_sessions_ban(&srv->rooms.sessions, se,
                        rc_loop_now(srv->loop) + ban * RC_NS_PER_SEC);
    if (victim) {
        rc_endpoint_end(&srv->rooms, &victim->ep, RC_LEAVE_KICKED, RC_WS_CLOSE_POLICY, "kicked");
        srv->metrics.api_kicks++;
    }
    char body[160];
    int bl = snprintf(body, sizeof(body), "{\"client_id\":%llu,\"kicked\":%s",
                      (unsigned long long)id, victim ? "true" : "false");
    if (banning)
        bl += snprintf(body + bl, sizeof(body) - (size_t)bl, ",\"banned\":%s,\"ban_seconds\":%llu",
                       se ? "true" : "false", (unsigned long long)ban);
    bl += snprintf(body + bl, sizeof(body) - (size_t)bl, "}\n");
    rc_http_respond(c, x, 200, "application/json", "Cache-Control: no-store\r\n", body, (size_t)bl);
}

/* /api/rooms/{room}[/messages] */
static void room_routes(rc_server *srv, rc_conn *c, const rc_http_ctx *x, const char *rest, size_t rlen)
{
    const char *slash = memchr(rest, '/', rlen);
    size_t seg = slash ? (size_t)(slash - rest) : rlen;
    const char *sub = slash ? slash + 1 : NULL;
    size_t sublen = slash ? rlen - seg - 1 : 0;
    bool messages = sub && sublen == 8 && memcmp(sub, "messages", 8) == 0;
    if (sub && !messages) {
        rc_http_error(c, x, 404, NULL, false, "not found");
        return;
    }
    if (messages ? !(is_read(x) || x->method == RC_HTTP_POST)
                 : !(is_read(x) || x->method == RC_HTTP_DELETE)) {
        rc_http_error(c, x, 405, messages ? "Allow: GET, HEAD, POST\r\n" : "Allow: GET, HEAD, DELETE\r\n",
                      false, "method not allowed");
        return;
    }
    char name[RC_ROOM_NAME_MAX + 1];
    long nlen = room_arg(c, x, rest, seg, name);
    if (nlen < 0) return;
    /* --redis: members on every node, answered later (clapi.h) */
    if (!messages && is_read(x) && rc_clapi_room(srv, c, x, name, (size_t)nlen)) return;
    rc_room *room = rc_rooms_find(&srv->rooms, name, (size_t)nlen);
    if (messages) {
        if (!rc_api_authorized(srv, c, x)) return;
        if (x->method == RC_HTTP_POST) publish(srv, c, x, room, name, nlen);
        else room_messages(srv, c, x, room, name);
        return;
    }
    if (x->method == RC_HTTP_DELETE && !rc_api_authorized(srv, c, x)) return;
    if (!room) {
        rc_http_error(c, x, 404, NULL, false, "no room '%s' (a room exists while it has members)",
                      name);
        return;
    }
    if (x->method == RC_HTTP_DELETE) close_room(srv, c, x, room);
    else show_room(c, x, room);
}

/* ---- routing ------------------------------------------------------------------------------ */

bool rc_api_handle(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    static const struct {
        const char *path;
        void (*fn)(rc_server *, rc_conn *, const rc_http_ctx *);
    } reads[] = {
        {"/healthz", healthz}, {"/status", status_page}, {"/metrics", metrics},
        {"/api/stats", stats}, {"/api/rooms", list_rooms},
    };
    for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
        if (!rc_http_path_is(x, reads[i].path)) continue;
        if (is_read(x)) reads[i].fn(srv, c, x);
        else rc_http_error(c, x, 405, ALLOW_READ, false, "method not allowed");
        return true;
    }
    const char *rest;
    size_t rlen;
    if (path_starts(x, "/api/rooms/", &rest, &rlen)) {
        room_routes(srv, c, x, rest, rlen);
        return true;
    }
    if (path_starts(x, "/api/clients/", &rest, &rlen) && !memchr(rest, '/', rlen)) {
        if (x->method != RC_HTTP_DELETE)
            rc_http_error(c, x, 405, "Allow: DELETE\r\n", false, "method not allowed");
        else if (rc_api_authorized(srv, c, x))
            kick(srv, c, x, rest, rlen);
        return true;
    }
    if (rc_services_http(srv, c, x)) return true; /* POST /api/services/{service} */
    if (path_starts(x, "/api/", &rest, &rlen) || rc_http_path_is(x, "/api")) {
        rc_http_error(c, x, 404, NULL, false, "no such API endpoint (see docs/api.md)");
        return true;
    }
    return false;
}
