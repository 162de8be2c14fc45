/* clapi.c — the HTTP API's cluster-wide reads in Redis mode; see clapi.h. */
#include "app/clapi.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/server.h"
#include "app/stats.h"
#include "cluster/cluster.h"
#include "codec/json.h"
#include "codec/textbuf.h"
#include "core/log.h"
#include "rooms/redispresence.h"
#include "rooms/redisrooms.h"
#include "rooms/room.h"

/* Rooms a cluster-wide /api/rooms lists at most (the count says how many there are). */
#define ROOMS_MAX 100000

enum { Q_STATS, Q_ROOMS, Q_ROOM };

/* A deferred request. It lives until the engine's callback has run (the callback always
 * runs); the connection may end before (c NULL). */
typedef struct clq {
    struct clq *prev, *next; /* the waiting list, then the answering list */
    rc_server *srv;
    rc_conn *c;              /* NULL once the connection ended */
    rc_http_later later;     /* what the answer needs of the request */
    int kind;                /* Q_* */
    int status;              /* the answer's HTTP status */
    rc_textbuf body;         /* the answer */
    size_t nlen;             /* Q_ROOM: the room's name */
    char name[RC_ROOM_NAME_MAX + 1];
} clq;

/* One server per process: the deferred requests and the timer that answers them are the
 * module's (rc_clapi_release ends them). */
static clq *waiting, *answering;
static rc_timer answer_timer;
static rc_loop *answer_loop;
static bool released;

static void unlink_q(clq **list, clq *q)
{
    if (q->prev) q->prev->next = q->next;
    else *list = q->next;
    if (q->next) q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

static void push_q(clq **list, clq *q)
{
    q->prev = NULL;
    q->next = *list;
    if (*list) (*list)->prev = q;
    *list = q;
}

static void on_answer(rc_loop *loop, rc_timer *t)
{
    (void)loop;
    (void)t;
    while (answering) {
        clq *q = answering;
        unlink_q(&answering, q);
        if (q->c) {
            if (q->body.failed) rc_http_error_later(q->c, &q->later, 500, "out of memory");
            else if (q->status >= 400) /* the body is the error's text (counted as usual) */
                rc_http_error_later(q->c, &q->later, q->status, "%.*s",
                                    (int)rc_buf_size(&q->body.buf), rc_buf_head(&q->body.buf));
            else
                rc_http_respond_later(q->c, &q->later, q->status, "application/json",
                                      rc_buf_head(&q->body.buf), rc_buf_size(&q->body.buf));
        }
        rc_textbuf_release(&q->body);
        free(q);
    }
}

/* q's answer is in q->body: it leaves from the timer (outside the engine's callback). */
static void finish(clq *q, int status)
{
    unlink_q(&waiting, q);
    if (released || !q->c) {
        rc_textbuf_release(&q->body);
        free(q);
        return;
    }
    q->status = status;
    push_q(&answering, q);
    rc_timer_start(answer_loop, &answer_timer, rc_loop_now(answer_loop));
}

static clq *defer(rc_server *srv, rc_conn *c, const rc_http_ctx *x, int kind)
{
    clq *q = calloc(1, sizeof(*q));
    if (!q) return NULL;
    if (!answer_loop) {
        answer_loop = srv->loop;
        rc_timer_init(&answer_timer, on_answer);
    }
    q->srv = srv;
    q->c = c;
    q->kind = kind;
    push_q(&waiting, q);
    rc_http_defer(c, x, &q->later);
    return q;
}

void rc_clapi_conn_gone(rc_conn *c)
{
    for (clq *q = waiting; q; q = q->next)
        if (q->c == c) q->c = NULL;
    for (clq *q = answering; q; q = q->next)
        if (q->c == c) q->c = NULL;
}

void rc_clapi_release(rc_server *srv)
{
    (void)srv;
    released = true;
    if (answer_loop) rc_timer_stop(answer_loop, &answer_timer);
    while (answering) {
        clq *q = answering;
        unlink_q(&answering, q);
        rc_textbuf_release(&q->body);
        free(q);
    }
    /* the waiting ones are freed by their callbacks, which the engine's end runs */
}

/* ---- /api/stats -------------------------------------------------------------------------- */

/* The number after "key": in a node's info object (our own format), 0 when absent. */
static unsigned long long info_num(const char *s, size_t n, const char *key)
{
    char pat[48];
    int pl = snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *end = s + n;
    for (const char *p = s; p + pl <= end; p++) {
        if (memcmp(p, pat, (size_t)pl) != 0) continue;
        unsigned long long v = 0;
        for (p += pl; p < end && *p >= '0' && *p <= '9'; p++) v = v * 10 + (unsigned)(*p - '0');
        return v;
    }
    return 0;
}

/* An info object fit to be spliced: {...} without control characters. */
static bool info_ok(const char *s, size_t n)
{
    if (n < 2 || s[0] != '{' || s[n - 1] != '}') return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20) return false;
    return true;
}

/* The node's own /api/stats without its closing "}\n", into q->body. */
static void local_stats(clq *q)
{
    char *body = malloc(16384);
    if (!body) {
        q->body.failed = true;
        return;
    }
    size_t n = rc_server_stats_json(q->srv, body, 16384);
    while (n && body[n - 1] == '\n') n--;
    if (n && body[n - 1] == '}') n--;
    rc_textbuf_append(&q->body, body, n);
    free(body);
}

static void on_nodes(void *arg, int status, uint64_t now_ms, const rc_cluster_node_info *v,
                     size_t n)
{
    clq *q = arg;
    if (released || !q->c) {
        finish(q, 200);
        return;
    }
    local_stats(q);
    if (status != 0) {
        rc_textbuf_printf(&q->body, ",\"cluster\":\"unavailable\"}\n");
        finish(q, 200);
        return;
    }
    const char *self = rc_cluster_node_id(rc_redisrooms_engine(q->srv->rooms.cluster));
    size_t sl = strlen(self);
    /* Other nodes' figures are as of their last heartbeat; this node's own are current. */
    char mine[1024];
    size_t ml = rc_clapi_node_info(q->srv, mine, sizeof(mine));
    rc_cluster_node_info *w = malloc((n ? n : 1) * sizeof(*w));
    if (!w) {
        q->body.failed = true;
        finish(q, 500);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        w[i] = v[i];
        if (ml && v[i].id_len == sl && memcmp(v[i].id, self, sl) == 0) {
            w[i].info = mine;
            w[i].info_len = ml;
        }
    }
    v = w;
    unsigned long long conns = 0, rooms = 0, members = 0, in = 0, out = 0;
    uint32_t alive = 0;
    for (size_t i = 0; i < n; i++) {
        if (!v[i].alive || !info_ok(v[i].info, v[i].info_len)) continue;
        alive++;
        conns += info_num(v[i].info, v[i].info_len, "connections");
        rooms += info_num(v[i].info, v[i].info_len, "rooms");
        members += info_num(v[i].info, v[i].info_len, "members");
        in += info_num(v[i].info, v[i].info_len, "messages_in");
        out += info_num(v[i].info, v[i].info_len, "messages_out");
    }
    rc_textbuf_printf(&q->body,
                      ",\"cluster\":{\"node\":\"%s\",\"nodes_alive\":%u,\"totals\":{"
                      "\"connections\":%llu,\"rooms\":%llu,\"members\":%llu,"
                      "\"messages_in\":%llu,\"messages_out\":%llu},\"nodes\":[",
                      self, alive, conns, rooms, members, in, out);
    for (size_t i = 0; i < n; i++) {
        char id[rc_json_escape_max(RC_CLWIRE_NODE_MAX)];
        size_t il = v[i].id_len > RC_CLWIRE_NODE_MAX ? RC_CLWIRE_NODE_MAX : v[i].id_len;
        id[rc_json_escape(v[i].id, il, id)] = '\0';
        bool ok = info_ok(v[i].info, v[i].info_len);
        rc_textbuf_printf(&q->body,
                          "%s{\"id\":%s,\"alive\":%s,\"self\":%s,\"last_heartbeat_at_ms\":%llu,"
                          "\"last_heartbeat_ms\":%llu%s",
                          i ? "," : "", id, v[i].alive ? "true" : "false",
                          strlen(self) == il && memcmp(self, v[i].id, il) == 0 ? "true" : "false",
                          (unsigned long long)v[i].last_ms,
                          (unsigned long long)(now_ms > v[i].last_ms ? now_ms - v[i].last_ms : 0),
                          ok && v[i].info_len > 2 ? "," : "");
        if (ok) rc_textbuf_append(&q->body, v[i].info + 1, v[i].info_len - 1);
        else rc_textbuf_append(&q->body, "}", 1);
    }
    rc_textbuf_printf(&q->body, "]}}\n");
    free(w);
    finish(q, 200);
}

bool rc_clapi_stats(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    if (!srv->rooms.cluster) return false;
    clq *q = defer(srv, c, x, Q_STATS);
    if (!q) {
        rc_http_error(c, x, 500, NULL, false, "out of memory");
        return true;
    }
    if (rc_cluster_nodes_read(rc_redisrooms_engine(srv->rooms.cluster), on_nodes, q) < 0)
        on_nodes(q, -EAGAIN, 0, NULL, 0);
    return true;
}

/* ---- /api/rooms -------------------------------------------------------------------------- */

static int by_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

static void local_room(rc_textbuf *t, const rc_room *r, bool *first)
{
    rc_textbuf_printf(t, "%s{\"room\":%.*s,\"members\":%u,\"last_msg_id\":%llu}",
                      *first ? "" : ",", (int)r->json_len, r->json_name, r->nmembers,
                      (unsigned long long)r->last_msg_id);
    *first = false;
}

static void on_rooms(void *arg, int status, uint64_t total, const rc_cluster_room_info *v,
                     size_t n)
{
    clq *q = arg;
    if (released || !q->c) {
        finish(q, 200);
        return;
    }
    rc_rooms *t = &q->srv->rooms;
    rc_textbuf *b = &q->body;
    bool first = true;
    if (status != 0) { /* the node's own view */
        rc_textbuf_printf(b, "{\"count\":%u,\"cluster\":\"unavailable\",\"rooms\":[",
                          rc_rooms_count(t));
        uint32_t k = 0;
        for (rc_room *r = rc_rooms_next(t, &k, NULL); r; r = rc_rooms_next(t, &k, r))
            local_room(b, r, &first);
        rc_textbuf_printf(b, "]}\n");
        finish(q, 200);
        return;
    }
    /* Rooms with members on some node, then this node's rooms without members anywhere
     * (kept for their history, --room-ttl). */
    const rc_room **seen = malloc((n ? n : 1) * sizeof(*seen));
    size_t nseen = 0;
    rc_textbuf rooms = {0};
    for (size_t i = 0; i < n; i++) {
        if (v[i].room_len > RC_ROOM_NAME_MAX) continue;
        const rc_room *r = rc_rooms_find(t, v[i].room, v[i].room_len);
        if (r && seen) seen[nseen++] = r;
        uint64_t last = v[i].last_msg_id;
        if (r && r->last_msg_id > last) last = r->last_msg_id;
        rc_textbuf_printf(&rooms, "%s{\"room\":", first ? "" : ",");
        rc_textbuf_json_string(&rooms, v[i].room, v[i].room_len);
        rc_textbuf_printf(&rooms, ",\"members\":%llu,\"last_msg_id\":%llu}",
                          (unsigned long long)v[i].members, (unsigned long long)last);
        first = false;
    }
    if (seen) qsort(seen, nseen, sizeof(*seen), by_ptr);
    uint64_t extra = 0;
    uint32_t k = 0;
    for (rc_room *r = rc_rooms_next(t, &k, NULL); r; r = rc_rooms_next(t, &k, r)) {
        const rc_room *key = r;
        if (seen && bsearch(&key, seen, nseen, sizeof(*seen), by_ptr)) continue;
        if (!seen && r->nmembers) continue;
        local_room(&rooms, r, &first);
        extra++;
    }
    free(seen);
    rc_textbuf_printf(b, "{\"count\":%llu,\"cluster\":\"ok\",\"rooms\":[",
                      (unsigned long long)(total + extra));
    if (rooms.failed) b->failed = true;
    else rc_textbuf_append(b, rc_buf_head(&rooms.buf), rc_buf_size(&rooms.buf));
    rc_textbuf_release(&rooms);
    rc_textbuf_printf(b, "]}\n");
    finish(q, 200);
}

bool rc_clapi_rooms(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    if (!srv->rooms.cluster) return false;
    clq *q = defer(srv, c, x, Q_ROOMS);
    if (!q) {
        rc_http_error(c, x, 500, NULL, false, "out of memory");
        return true;
    }
    if (rc_cluster_rooms_read(rc_redisrooms_engine(srv->rooms.cluster), ROOMS_MAX, on_rooms,
                              q) < 0)
        on_rooms(q, -EAGAIN, 0, NULL, 0);
    return true;
}

/* ---- /api/rooms/{room} ------------------------------------------------------------------- */

/* The users of the members that have one, by client_id (docs/auth.md). */
static void local_users(rc_textbuf *t, const rc_room *r, bool *any)
{
    for (uint32_t i = 0; i < r->nmembers; i++) {
        const rc_endpoint *m = r->members[i].ep;
        if (m->auth != RC_IDENT_USER) continue;
        rc_textbuf_printf(t, "%s\"%llu\":%.*s", *any ? "," : ",\"users\":{",
                          (unsigned long long)m->client_id, (int)m->ident->user_json_len - 8,
                          m->ident->user_json + 7);
        *any = true;
    }
}

static void on_members(void *arg, int status, uint64_t version, uint64_t top,
                       const rc_cluster_member *v, size_t n)
{
    clq *q = arg;
    (void)version;
    if (released || !q->c) {
        finish(q, 200);
        return;
    }
    rc_rooms *t = &q->srv->rooms;
    rc_textbuf *b = &q->body;
    const rc_room *r = rc_rooms_find(t, q->name, q->nlen);
    char json[rc_json_escape_max(RC_ROOM_NAME_MAX)];
    size_t jl = rc_json_escape(q->name, q->nlen, json);
    if (status != 0 || (!r && n == 0)) {
        if (!r) {
            rc_textbuf_printf(b, "no room '%.*s' (a room exists while it has members%s)",
                              (int)q->nlen, q->name,
                              status ? "; the cluster is unavailable: this node's view" : "");
            finish(q, 404);
            return;
        }
        rc_textbuf_printf(b, "{\"room\":%.*s,\"members\":%u,\"last_msg_id\":%llu,"
                             "\"cluster\":\"unavailable\",\"clients\":[",
                          (int)jl, json, r->nmembers, (unsigned long long)r->last_msg_id);
        for (uint32_t i = 0; i < r->nmembers; i++)
            rc_textbuf_printf(b, "%s%llu", i ? "," : "",
                              (unsigned long long)r->members[i].ep->client_id);
        rc_textbuf_printf(b, "]");
        bool any = false;
        local_users(b, r, &any);
        rc_textbuf_printf(b, "%s}\n", any ? "}" : "");
        finish(q, 200);
        return;
    }
    uint64_t last = top;
    if (r && r->last_msg_id > last) last = r->last_msg_id;
    rc_textbuf_printf(b, "{\"room\":%.*s,\"members\":%zu,\"last_msg_id\":%llu,"
                         "\"cluster\":\"ok\",\"clients\":[",
                      (int)jl, json, n, (unsigned long long)last);
    for (size_t i = 0; i < n; i++)
        rc_textbuf_printf(b, "%s%llu", i ? "," : "", (unsigned long long)v[i].client_id);
    rc_textbuf_printf(b, "]");
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        const char *u = v[i].info;
        size_t ul = v[i].info_len;
        /* `"user":"alice",` -> `"7":"alice"` (only that shape is spliced) */
        if (ul < 10 || memcmp(u, "\"user\":\"", 8) != 0 || u[ul - 1] != ',' || u[ul - 2] != '"')
            continue;
        rc_textbuf_printf(b, "%s\"%llu\":%.*s", any ? "," : ",\"users\":{",
                          (unsigned long long)v[i].client_id, (int)ul - 8, u + 7);
        any = true;
    }
    if (any) rc_textbuf_append(b, "}", 1);
    /* which node each member is on */
    rc_textbuf_printf(b, ",\"nodes\":{");
    for (size_t i = 0; i < n; i++) {
        rc_textbuf_printf(b, "%s\"%llu\":", i ? "," : "", (unsigned long long)v[i].client_id);
        rc_textbuf_json_string(b, v[i].node, v[i].node_len);
    }
    rc_textbuf_printf(b, "}}\n");
    finish(q, 200);
}

bool rc_clapi_room(rc_server *srv, rc_conn *c, const rc_http_ctx *x, const char *name,
                   size_t len)
{
    if (!srv->rooms.cluster) return false;
    clq *q = defer(srv, c, x, Q_ROOM);
    if (!q) {
        rc_http_error(c, x, 500, NULL, false, "out of memory");
        return true;
    }
    q->nlen = len > RC_ROOM_NAME_MAX ? RC_ROOM_NAME_MAX : len;
    memcpy(q->name, name, q->nlen);
    if (rc_cluster_members_read(rc_redisrooms_engine(srv->rooms.cluster), q->name, q->nlen,
                                on_members, q) < 0)
        on_members(q, -EAGAIN, 0, 0, NULL, 0);
    return true;
}

/* ---- the node registry ------------------------------------------------------------------- */

size_t rc_clapi_node_info(void *arg, char *out, size_t cap)
{
    rc_server *srv = arg;
    char host[64] = "";
    if (gethostname(host, sizeof(host) - 1) < 0) host[0] = '\0';
    host[sizeof(host) - 1] = '\0';
    char hj[rc_json_escape_max(sizeof(host))], bj[rc_json_escape_max(64)];
    hj[rc_json_escape(host, strlen(host), hj)] = '\0';
    const char *bind = srv->cfg.bind ? srv->cfg.bind : "";
    size_t bl = strlen(bind) > 64 ? 64 : strlen(bind);
    bj[rc_json_escape(bind, bl, bj)] = '\0';
    uint64_t members = 0;
    uint32_t b = 0;
    for (rc_room *r = rc_rooms_next(&srv->rooms, &b, NULL); r;
         r = rc_rooms_next(&srv->rooms, &b, r))
        members += r->nmembers;
    int n = snprintf(out, cap,
                     "{\"host\":%s,\"bind\":%s,\"port\":%u,\"addr\":\"%.*s:%u\",\"pid\":%ld,"
                     "\"uptime_s\":%llu,"
                     "\"connections\":%u,\"rooms\":%u,\"members\":%llu,\"messages_in\":%llu,"
                     "\"messages_out\":%llu}",
                     hj, bj, (unsigned)srv->http.port, (int)strlen(bj) - 2, bj + 1,
                     (unsigned)srv->http.port, (long)getpid(),
                     (unsigned long long)((rc_loop_now(srv->loop) - srv->started) / RC_NS_PER_SEC),
                     srv->net.nconns, rc_rooms_count(&srv->rooms), (unsigned long long)members,
                     (unsigned long long)srv->net.stats.messages_in,
                     (unsigned long long)srv->rooms.stats.deliveries);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
