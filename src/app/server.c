/* server.c — the server: listeners, routing, the before-sleep step, shutdown; see server.h. */
#include "app/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <sys/resource.h>

#include "app/api.h"
#include "app/auth.h"
#include "app/brkhttp.h"
#include "app/clapi.h"
#include "app/client.h"
#include "app/nshttp.h"
#include "app/nsws.h"
#include "app/services.h"
#include "app/webassets.h"
#include "broker/broker.h"
#include "broker/zbroker.h"
#include "codec/wsframe.h"
#include "core/log.h"
#include "rooms/redisrooms.h"
#include "rooms/roomproto.h"
#include "rooms/wire.h"
#include "store/store.h"
#include "transport/chat.h"
#include "transport/http.h"
#include "transport/tcp.h"
#include "transport/tls.h"

/* Descriptors kept back from --max-connections for the listeners, epoll, signalfd, the
 * reserve descriptors, the NetSync sockets, the durable log's open segments (at most
 * RC_STORE_FD_MAX) and what later features open: however many clients there are, the server
 * can still accept (and shed) connections, answer /healthz and write its log. */
#define RC_FD_HEADROOM (32 + RC_STORE_FD_MAX)

/* Before-sleep: write what this iteration queued, then free what it closed, and hand this
 * iteration's log records to the writer (one wake-up per iteration, not per message). */
static void before_sleep(rc_loop *loop, void *arg)
{
    rc_server *srv = arg;
    rc_net_flush(&srv->net);
    rc_rooms_kick(&srv->rooms);
    if (srv->rooms.cluster) rc_redisrooms_flush(srv->rooms.cluster);
    if (srv->shutting_down && srv->net.nconns == 0) rc_loop_stop(loop);
}

/* ---- the net's hooks ---------------------------------------------------------------------- */

static void on_ended(void *arg, rc_conn *c)
{
    rc_client_ended(arg, c);
}

/* ---- CORS -------------------------------------------------------------------------------
 * A page on another origin may load roomcast.js and read the public endpoints (the web files,
 * /healthz, /status, /metrics, /api/stats, the room listings): reading is what they are for.
 * Calls that need the API key get no CORS headers: a browser must not hold that key.
 * NetSync's REST bridge (no key, like its reference) has its own list, --netsync-rest-cors:
 * browser tools on another origin read and write variables through it, on either port. */

static bool public_path(const rc_http_ctx *x)
{
    static const char msgs[] = "/messages";
    if (x->path_len >= 4 && memcmp(x->path, "/v1/", 4) == 0) return false; /* REST bridge */
    return !(x->path_len > sizeof(msgs) - 1 &&
             memcmp(x->path + x->path_len - (sizeof(msgs) - 1), msgs, sizeof(msgs) - 1) == 0);
}

/* The Access-Control-Allow-Origin lines for x's Origin under the origin list `list` ("*", a
 * comma-separated list, or empty) into buf; NULL when not allowed. */
static const char *cors_allow(const char *list, const rc_http_ctx *x, char *buf, size_t cap)
{
    if (!list || !*list) return NULL;
    if (strcmp(list, "*") == 0) return "Access-Control-Allow-Origin: *\r\n";
    const rc_http_header *o = rc_http_find_header(x->req, "Origin");
    if (!o || o->value_len == 0 || o->value_len > 200) return NULL;
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == o->value_len && memcmp(p, o->value, n) == 0) {
            snprintf(buf, cap, "Access-Control-Allow-Origin: %.*s\r\nVary: Origin\r\n",
                     (int)n, p);
            return buf;
        }
        p += n + (end ? 1 : 0);
    }
    return NULL;
}

/* The CORS lines for x: the bridge's list for REST bridge requests, the public list for the
 * public endpoints, none otherwise. */
static const char *cors_headers(const rc_server *srv, const rc_http_ctx *x, bool bridge,
                                char *buf, size_t cap)
{
    if (bridge) return cors_allow(srv->cfg.netsync_rest_cors, x, buf, cap);
    return public_path(x) ? cors_allow(srv->cfg.cors_origins, x, buf, cap) : NULL;
}

/* A CORS preflight for the REST bridge (OPTIONS with Access-Control-Request-Method): the
 * reference's methods, headers and max-age (FastAPI's CORSMiddleware as rest_bridge.py sets
 * it up), 204 without body. An origin outside the list is refused with 400, as Starlette
 * does, so a misconfigured tool learns why instead of seeing a bare 405. */
static void bridge_preflight(rc_conn *c, const rc_http_ctx *x)
{
    if (!x->headers) {
        rc_http_error(c, x, 400, NULL, false, "Disallowed CORS origin");
        return;
    }
    rc_http_respond(c, x, 204, "text/plain",
                    "Access-Control-Allow-Methods: GET, POST, PUT, DELETE, OPTIONS\r\n"
                    "Access-Control-Allow-Headers: Content-Type, Authorization\r\n"
                    "Access-Control-Max-Age: 3600\r\n", "", 0);
}

/* ws_deflate_here: whether a WebSocket upgrade on c's listener may agree permessage-deflate:
 * --tls-ws-deflate on the TLS listener (--tls-port, or --port when it speaks TLS) unless it is
 * `same`, --ws-deflate otherwise. Read at each upgrade, so both change on SIGHUP (for new
 * connections; an agreement lasts as long as its connection). */
static bool ws_deflate_here(const rc_server *srv, const rc_conn *c)
{
    if (c->tls && srv->cfg.tls_ws_deflate != RC_TLS_WS_DEFLATE_SAME)
        return srv->cfg.tls_ws_deflate != 0;
    return srv->cfg.ws_deflate != 0;
}

/* The room protocol's upgrade. With token keys the token comes with it (Authorization: Bearer,
 * or ?token= for browsers): a bad one is refused here with 401, a good one makes the
 * connection its user's; without one the connection is anonymous (--allow-anonymous) or must
 * authenticate with its first message (rooms/ident.h). */
static void upgrade_room(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    rc_rooms *t = &srv->rooms;
    rc_ident *id = NULL;
    if (srv->jwt) {
        char buf[RC_JWT_MAX_TOKEN + 1];
        const char *tok;
        size_t n;
        int has = rc_auth_upgrade_token(x, buf, sizeof(buf), &tok, &n);
        int r = has > 0 ? rc_ident_verify(t, tok, n, &id) : has < 0 ? RC_JWT_MALFORMED : 0;
        if (has < 0) t->auth.result[RC_JWT_MALFORMED]++;
        if (r < 0) {
            rc_http_error(c, x, 500, NULL, true, "out of memory checking the token");
            return;
        }
        if (has && r != RC_JWT_OK) {
            char extra[160];
            const char *why = rc_ident_result_name(r);
            snprintf(extra, sizeof(extra),
                     "WWW-Authenticate: Bearer error=\"invalid_token\", error_description=\"%s\"\r\n",
                     why);
            rc_http_error(c, x, 401, extra, true, "invalid token: %s", why);
            return;
        }
    }
    if (!rc_http_upgrade(c, x, rc_client_room_message, ws_deflate_here(srv, c))) {
        free(id);
        return;
    }
    rc_client_start(srv, c, rc_wire_ws(c->ws_deflate));
    rc_endpoint *ep = &rc_client_of(c)->ep;
    if (id) {
        rc_ident_attach(t, ep, id);
        rc_ident_announce(t, ep);
    } else if (srv->jwt && !srv->cfg.allow_anonymous) {
        rc_ident_expect(t, ep, srv->cfg.auth_timeout);
    }
}

/* Routes one HTTP request: the WebSocket endpoints, then NetSync's routes, the API and the
 * web files. */
static void on_request(void *arg, rc_conn *c, const rc_http_ctx *req)
{
    rc_server *srv = arg;
    srv->metrics.http_requests++;
    char cors[320];
    rc_http_ctx y = *req, *x = &y;
    bool rest_port = rc_client_of(c)->rest_only;
    bool bridge = rest_port || rc_nshttp_is_bridge(x);
    y.headers = cors_headers(srv, req, bridge, cors, sizeof(cors));
    if (bridge && x->method == RC_HTTP_OPTIONS &&
        rc_http_find_header(x->req, "Access-Control-Request-Method")) {
        bridge_preflight(c, x);
        return;
    }
    if (rest_port) { /* the dedicated port: nothing but the bridge (and its GET /) */
        rc_nshttp_rest_request(srv, c, x);
        return;
    }
    if (x->method == RC_HTTP_OPTIONS && y.headers && !bridge) {
        /* A preflight for a public endpoint: reads only, and the one header a reader sends. */
        rc_http_respond(c, x, 204, "text/plain",
                        "Access-Control-Allow-Methods: GET, HEAD\r\n"
                        "Access-Control-Allow-Headers: If-None-Match\r\n"
                        "Access-Control-Max-Age: 600\r\n", "", 0);
        return;
    }
    bool root = rc_http_path_is(x, "/"), echo = rc_http_path_is(x, "/echo");
    if (x->upgrade) {
        if (!root && !echo)
            rc_http_error(c, x, 404, NULL, true, "no WebSocket endpoint at this path (use / or /echo)");
        else if (x->method != RC_HTTP_GET)
            rc_http_error(c, x, 405, "Allow: GET\r\n", true, "WebSocket upgrade needs GET");
        else if (!rc_limits_upgrade_ok(srv, c, x))
            return; /* 403: a page of an origin not in --allowed-origins */
        else if (root)
            upgrade_room(srv, c, x);
        else if (rc_http_upgrade(c, x, rc_client_echo_message, ws_deflate_here(srv, c)))
            rc_client_start(srv, c, rc_wire_ws(c->ws_deflate));
        return;
    }
    if (echo) {
        if (x->method != RC_HTTP_GET && x->method != RC_HTTP_HEAD)
            rc_http_error(c, x, 405, "Allow: GET, HEAD\r\n", false, "method not allowed");
        else
            rc_http_error(c, x, 426, "Upgrade: websocket\r\n", false,
                          "/echo is a WebSocket endpoint: upgrade required");
        return;
    }
    if (rc_nshttp_handle(srv, c, x)) return; /* NetSync routes first: /api/netsync/... */
    if (rc_brkhttp_handle(srv, c, x)) return; /* before the API's catch-all /api/ 404 */
    if (rc_api_handle(srv, c, x)) return;
    if (rc_web_handle(srv, c, x)) return;
    rc_http_error(c, x, 404, NULL, false, "not found");
}

/* A new connection on any listener: over the limit, or while shutting down, it is told so in
 * its protocol's words (503 for HTTP) and closed. */
static bool admit(rc_server *srv, rc_conn *c)
{
    if (srv->net.nconns + srv->zmq_conns <= srv->max_connections && !srv->shutting_down)
        return rc_limits_admit(srv, c); /* --connections-per-ip */
    srv->net.stats.disc_max_conn++;
    rc_conn_end(c, RC_WS_CLOSE_TRY_AGAIN,
                srv->shutting_down ? "shutting down" : "too many connections", true);
    return false;
}

static void on_accept_http(void *arg, rc_conn *c)
{
    admit(arg, c); /* a room client once it upgrades (on_request) */
}

static void on_accept_tcp(void *arg, rc_conn *c)
{
    if (!admit(arg, c)) return;
    rc_server *srv = arg;
    rc_client_start(arg, c, RC_WIRE_LINE); /* or framed: decided by its first bytes */
    c->on_message = rc_client_tcp_message;
    /* No headers here: with token keys a TCP client authenticates with its first message. */
    if (srv->jwt && !srv->cfg.allow_anonymous)
        rc_ident_expect(&srv->rooms, &rc_client_of(c)->ep, srv->cfg.auth_timeout);
}

static void on_accept_chat(void *arg, rc_conn *c)
{
    if (!admit(arg, c)) return;
    rc_server *srv = arg;
    /* The seed chat protocol has no way to present a token: with token keys its clients are
     * anonymous, so they are admitted only with --allow-anonymous. */
    if (srv->jwt && !srv->cfg.allow_anonymous) {
        srv->rooms.auth.result[RC_IDENT_MISSING]++;
        rc_conn_end(c, RC_CLOSE_UNAUTHENTICATED, "unauthenticated: the chat port is anonymous",
                    false);
        return;
    }
    rc_client_start(arg, c, RC_WIRE_CHAT);
    c->on_message = rc_client_chat_message;
    rc_client_join_chat(arg, c);
}

static void on_accept_rest(void *arg, rc_conn *c)
{
    if (!admit(arg, c)) return;
    rc_client_of(c)->rest_only = true; /* routed to the REST bridge only (on_request) */
}

/* ---- life cycle --------------------------------------------------------------------------- */

/* Raises the descriptor limit as far as allowed and derives the connection limit from it. */
static uint32_t connection_limit(const rc_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    uint64_t fds = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : rl.rlim_cur;
    uint64_t max = fds > RC_FD_HEADROOM * 2 ? fds - RC_FD_HEADROOM : fds / 2;
    if (cfg->max_connections && cfg->max_connections < max) max = cfg->max_connections;
    else if (cfg->max_connections > max)
        rc_warn("--max-connections %u exceeds what the descriptor limit (%llu) allows; using %llu",
                cfg->max_connections, (unsigned long long)fds, (unsigned long long)max);
    rc_info("descriptor limit %llu: up to %llu connections", (unsigned long long)fds,
            (unsigned long long)max);
    return (uint32_t)max;
}

static void on_shutdown_timer(rc_loop *loop, rc_timer *t)
{
    rc_loop_stop(loop); /* clients that did not finish closing are cut by rc_server_free */
}

/* open_listener starts l for proto; false after logging why. */
static bool open_listener(rc_server *srv, rc_listener *l, const rc_proto *proto, uint16_t port,
                          void (*accepted)(void *, rc_conn *), const char *what)
{
    l->proto = proto;
    l->conn_size = sizeof(rc_client);
    l->accepted = accepted;
    l->arg = srv;
    l->reuseport = srv->cfg.reuseport;
    if (l->reuseport && port == 0) /* a port of its own: no other node can know it */
        rc_warn("--reuseport: the %s port is 0, so this process picks one of its own that no "
                "other node shares", what);
    int r = rc_listener_open(l, &srv->net, srv->cfg.bind, port);
    if (r < 0) {
        /* EADDRINUSE with SO_REUSEPORT set means the holder did not set it (or is another
         * user): say so, since the bare message reads as if sharing were not asked for. */
        rc_error("cannot listen on '%s:%u' (%s): %s%s", srv->cfg.bind, port, what, strerror(-r),
                 r != -EADDRINUSE ? ""
                 : l->reuseport ? " (its holder did not give --reuseport, or runs as another "
                                  "user)"
                                : " (another process holds it; processes sharing a port all "
                                  "need --reuseport)");
        return false;
    }
    return true;
}

rc_server *rc_server_new(rc_loop *loop, const rc_config *cfg)
{
    rc_server *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        rc_error("out of memory");
        return NULL;
    }
    srv->cfg = *cfg;
    srv->loop = loop;
    srv->started = rc_loop_now(loop);
    srv->max_connections = connection_limit(cfg);
    rc_timer_init(&srv->shutdown_timer, on_shutdown_timer);
    rc_net_config nc = {
        .max_message_size = cfg->max_message_size, .max_pending = cfg->max_pending,
        .max_header_size = cfg->max_header_size, .ping_interval = cfg->ping_interval,
        .ping_timeout = cfg->ping_timeout, .handshake_timeout = cfg->handshake_timeout,
        .close_timeout = cfg->close_timeout, .no_latency_metrics = cfg->no_latency_metrics,
        .server_name = "roomcast/" RC_VERSION,
    };
    rc_net_hooks hooks = {.arg = srv, .request = on_request, .ended = on_ended,
                          .sent = rc_metrics_on_sent};
    rc_net_init(&srv->net, loop, &nc, &hooks);
    rc_wire_deflate_threshold(cfg->ws_deflate_threshold);
    rc_rooms_config rcfg = {
        .max_rooms_per_client = cfg->max_rooms_per_client, .history_size = cfg->history_size,
        .history_bytes = cfg->history_bytes, .history_age = cfg->history_age,
        .room_ttl = cfg->room_ttl, .idempotency_window = cfg->idempotency_window,
        .history_memory = cfg->history_memory, .max_rooms = cfg->max_rooms,
        .create_rate = cfg->room_create_rate, .presence_limit = cfg->presence_limit,
        .max_state_keys = cfg->max_state_keys, .max_state_bytes = cfg->max_state_bytes,
        .state_memory = cfg->state_memory,
        .session_ttl = cfg->session_ttl, .max_idle_sessions = cfg->max_sessions,
        .node_interval = cfg->redis_heartbeat, .node_ttl = cfg->redis_node_ttl,
    };
    rc_rooms_init(&srv->rooms, loop, &rcfg);
    {
        rc_jwt_keys *keys = malloc(sizeof(*keys));
        int nk = keys ? rc_auth_keys_load(cfg, keys, stderr) : -1;
        if (nk < 0) {
            free(keys);
            goto err;
        }
        rc_server_set_keys(srv, keys);
        if (nk) rc_info("tokens: %d key(s); connections %s", nk,
                        cfg->allow_anonymous ? "without a token are anonymous"
                                             : "need a token");
    }
    /* netsync_* requests go to the NetSync observers (answered "netsync_off" without NetSync). */
    rc_roomproto_set_extension(&srv->rooms, RC_NSWS_PREFIX, rc_nsws_request, srv);
    /* --join-rate, checked before a join is read (app/limits.h). */
    rc_roomproto_set_join_gate(&srv->rooms, rc_limits_join_gate, srv);
    /* "request" messages and room services (the broker itself is set by main.c). */
    if (!(srv->services = rc_services_new(srv))) goto err;
    /* TLS: --port itself, or a listener of its own beside it (--tls-port). Both are the same
     * HTTP transport and routes; only the bytes on the wire differ. */
    if (cfg->reuseport && !cfg->redis_url) /* legitimate for a handover, odd otherwise */
        rc_warn("--reuseport without --redis: processes sharing the port share no rooms; a "
                "client's rooms are those of the process that accepted it");
    if (cfg->tls_cert && !(srv->tls = rc_tls_ctx_new(cfg->tls_cert, cfg->tls_key))) goto err;
    if (srv->tls && cfg->tls_port < 0) srv->http.tls = srv->tls;
    if (srv->tls && cfg->tls_port >= 0) {
        srv->https.tls = srv->tls;
        if (!open_listener(srv, &srv->https, &rc_http_proto, (uint16_t)cfg->tls_port,
                           on_accept_http, "HTTPS"))
            goto err;
    }
    if (srv->tls && cfg->tcp_tls_port >= 0) { /* the raw TCP protocol, with its own ALPN */
        srv->tcps.tls = srv->tls;
        srv->tcps.tls_alpn = RC_TLS_ALPN_ROOMCAST_TCP;
        if (!open_listener(srv, &srv->tcps, &rc_tcp_proto, (uint16_t)cfg->tcp_tls_port,
                           on_accept_tcp, "TCP over TLS"))
            goto err;
    }
    if (!open_listener(srv, &srv->http, &rc_http_proto, cfg->port, on_accept_http,
                       srv->http.tls ? "HTTPS" : "HTTP") ||
        (cfg->tcp_port >= 0 && !open_listener(srv, &srv->tcp, &rc_tcp_proto,
                                               (uint16_t)cfg->tcp_port, on_accept_tcp, "TCP")) ||
        (cfg->chat_port >= 0 && !open_listener(srv, &srv->chat, &rc_chat_proto,
                                                (uint16_t)cfg->chat_port, on_accept_chat, "chat")))
        goto err;
    /* The REST bridge's own port: the same HTTP transport and connections (same limits,
     * timeouts and flush), only routed differently. Without NetSync there is no bridge. */
    if (cfg->netsync_rest_port >= 0 && cfg->netsync &&
        !open_listener(srv, &srv->rest, &rc_http_proto, (uint16_t)cfg->netsync_rest_port,
                       on_accept_rest, "NetSync REST"))
        goto err;
    if (cfg->data_dir && rc_rooms_open_store(&srv->rooms, cfg->data_dir, cfg->fsync_mode) < 0)
        goto err;
    if (cfg->redis_url) { /* rooms sequenced in Redis (rooms/redisrooms.h) */
        char why[512];
        if (!rc_redisrooms_new(&srv->rooms, loop, cfg->redis_url, cfg->redis_prefix, why,
                               sizeof(why))) {
            rc_error("--redis: %s", why);
            goto err;
        }
        rc_redisrooms_set_node_info(srv->rooms.cluster, rc_clapi_node_info, srv);
    }
    /* Client ids go on from the last run's: a restored room never sees an id twice. */
    if (cfg->data_dir && rc_store_ids_load(cfg->data_dir, &srv->id_mark) < 0) goto err;
    srv->next_client_id = srv->id_mark;
    if (cfg->redis_url) {
        /* Several nodes share rooms: each numbers its clients from a random 20-bit base
         * (times 2^32, below 2^53 so that JavaScript reads them exactly), so the client_id on
         * a message names one client across nodes with high probability (docs/cluster.md). */
        uint32_t r = 0;
        while (r == 0) {
            if (getrandom(&r, sizeof(r), 0) != sizeof(r)) r = (uint32_t)getpid();
            r &= (1u << 20) - 1;
        }
        srv->next_client_id = (uint64_t)r << 32;
    }
    rc_loop_set_before_sleep(loop, before_sleep, srv);
    if (!cfg->no_latency_metrics) rc_metrics_start(srv);
    return srv;
err:
    rc_listener_close(&srv->http);
    rc_listener_close(&srv->https);
    rc_listener_close(&srv->tcps);
    rc_tls_ctx_free(srv->tls);
    rc_listener_close(&srv->tcp);
    rc_listener_close(&srv->chat);
    rc_listener_close(&srv->rest);
    rc_services_free(srv->services);
    rc_rooms_release(&srv->rooms);
    rc_redisrooms_free(srv->rooms.cluster);
    rc_server_set_keys(srv, NULL);
    free(srv);
    return NULL;
}

/* Ids are reserved in blocks: the mark on disk is moved a block ahead (one fsync per
 * RC_ID_BLOCK connections), so a crash loses at most the rest of a block, never an id. */
#define RC_ID_BLOCK 65536

uint64_t rc_server_new_client_id(rc_server *srv)
{
    uint64_t id = ++srv->next_client_id;
    if (srv->cfg.data_dir && id >= srv->id_mark) {
        /* Should the write fail, ids still go up within this run; the next run would reuse
         * some (logged). */
        srv->id_mark = id + RC_ID_BLOCK;
        rc_store_ids_save(srv->cfg.data_dir, srv->id_mark);
    }
    return id;
}

void rc_server_free(rc_server *srv)
{
    if (!srv) return;
    rc_net_close_all(&srv->net);
    rc_services_free(srv->services); /* after the clients, before main.c frees the broker */
    srv->services = NULL;
    rc_listener_close(&srv->http);
    rc_listener_close(&srv->https);
    rc_listener_close(&srv->tcps);
    rc_listener_close(&srv->tcp);
    rc_listener_close(&srv->chat);
    rc_listener_close(&srv->rest);
    rc_tls_ctx_free(srv->tls); /* after the connections: their sessions count it */
    srv->tls = NULL;
    rc_timer_stop(srv->loop, &srv->shutdown_timer);
    rc_rooms_release(&srv->rooms); /* flushes and syncs the log, marks it clean */
    rc_clapi_release(srv); /* deferred cluster-wide API reads: no answer any more */
    rc_redisrooms_free(srv->rooms.cluster); /* after the rooms: they unsubscribe */
    rc_server_set_keys(srv, NULL);
    free(srv);
}

void rc_server_set_keys(rc_server *srv, rc_jwt_keys *keys)
{
    if (keys && keys->n == 0) {
        rc_jwt_keys_release(keys);
        free(keys);
        keys = NULL;
    }
    rc_jwt_keys *old = srv->jwt;
    srv->jwt = keys;
    srv->rooms.jwt = keys;
    if (old) {
        rc_jwt_keys_release(old);
        free(old);
    }
}

void rc_server_reload_files(rc_server *srv)
{
    if (srv->tls) rc_tls_ctx_reload(srv->tls); /* logs the outcome; a failure keeps the old */
    /* Token keys: a new keyset from the (possibly new) settings and files, swapped in whole;
     * any error keeps the old one. Open connections keep their identities. */
    char *msgs = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&msgs, &len);
    rc_jwt_keys *keys = err ? malloc(sizeof(*keys)) : NULL;
    int nk = keys ? rc_auth_keys_load(&srv->cfg, keys, err) : -1;
    if (err) fclose(err);
    if (nk < 0) {
        rc_log_lines(RC_LOG_WARN, "SIGHUP", msgs, len);
        rc_error("SIGHUP: token keys not reloaded: the previous keys stay");
        free(keys);
    } else {
        size_t before = srv->jwt ? srv->jwt->n : 0;
        rc_server_set_keys(srv, keys);
        if (nk || before) rc_info("SIGHUP: token keys reloaded: %d key(s)", nk);
    }
    free(msgs);
}

void rc_server_apply_live(rc_server *srv)
{
    const rc_config *cfg = &srv->cfg;
    rc_log_level = (enum rc_log_level)cfg->log_level;
    srv->max_connections = connection_limit(cfg);
    /* Connections read these at their next timer or handshake. */
    srv->net.cfg.ping_interval = cfg->ping_interval;
    srv->net.cfg.ping_timeout = cfg->ping_timeout;
    srv->net.cfg.handshake_timeout = cfg->handshake_timeout;
    srv->net.cfg.close_timeout = cfg->close_timeout;
    srv->rooms.cfg.max_rooms_per_client = cfg->max_rooms_per_client;
    srv->rooms.cfg.create_rate = cfg->room_create_rate;
    if (srv->broker) rc_zbroker_core(srv->broker)->p.request_timeout_ns = cfg->request_timeout;
    /* api_key, cors_origins and netsync_rest_cors are read from srv->cfg per request. */
}


void rc_server_shutdown(rc_server *srv)
{
    if (srv->shutting_down) return;
    srv->shutting_down = true;
    srv->net.shutting_down = true;
    rc_info("shutting down: closing %u connections", srv->net.nconns);
    rc_listener_pause(&srv->http);
    rc_listener_pause(&srv->https);
    rc_listener_pause(&srv->tcps);
    rc_listener_pause(&srv->tcp);
    rc_listener_pause(&srv->chat);
    rc_listener_pause(&srv->rest);
    rc_conn *next;
    for (rc_conn *c = srv->net.conns; c; c = next) {
        next = c->next;
        rc_conn_end(c, RC_WS_CLOSE_GOING_AWAY, "server shutdown", false);
    }
    rc_timer_start(srv->loop, &srv->shutdown_timer,
                   rc_loop_now(srv->loop) + srv->cfg.close_timeout);
}
