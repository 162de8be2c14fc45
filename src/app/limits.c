/* limits.c — Origin allowlist, per-address connection limit and per-connection rate limits;
 * see limits.h and docs/limits.md. */
#include "app/limits.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "app/client.h"
#include "app/server.h"
#include "codec/json.h"
#include "codec/wsframe.h"
#include "core/log.h"
#include "core/rate.h"
#include "rooms/room.h"
#include "transport/http.h"

const char *const rc_limit_names[RC_LIMIT__COUNT] = {
    [RC_LIMIT_MESSAGES] = "messages", [RC_LIMIT_BYTES] = "bytes", [RC_LIMIT_JOINS] = "joins"};

/* Refusals closer together than this count as "in a row" (--rate-close-after). */
#define STRIKE_WINDOW_NS RC_NS_PER_SEC

bool rc_limits_admit(rc_server *srv, rc_conn *c)
{
    uint32_t max = srv->cfg.connections_per_ip;
    if (!max || rc_conn_peer_count(c) <= max) return true;
    srv->limits.refused_per_ip++;
    if (rc_log_enabled(RC_LOG_DEBUG)) {
        char a[64];
        rc_ipkey_format(&c->peer, a, sizeof(a));
        rc_debug("refusing a connection from %s: %u open (--connections-per-ip)", a,
                 rc_conn_peer_count(c) - 1);
    }
    char why[96];
    snprintf(why, sizeof(why), "too many connections from your address (at most %u)", max);
    rc_conn_end(c, RC_WS_CLOSE_TRY_AGAIN, why, true);
    return false;
}

/* The gate's token: the connection is counted in net.peers. */
#define ZMQ_COUNTED 1u

static bool zmq_admit(void *arg, const rc_ipkey *peer, rc_zms_admission *a)
{
    rc_server *srv = arg;
    if (srv->shutting_down || srv->net.nconns + srv->zmq_conns >= srv->max_connections) {
        srv->net.stats.disc_max_conn++; /* as admit() in server.c counts the other listeners' */
        return false;
    }
    uint32_t max = srv->cfg.connections_per_ip;
    bool known = rc_ipkey_known(peer);
    uint32_t open = known ? rc_ipcount_get(&srv->net.peers, peer) : 0;
    if (max && open >= max) {
        srv->limits.refused_per_ip++;
        if (rc_log_enabled(RC_LOG_DEBUG)) {
            char s[64];
            rc_ipkey_format(peer, s, sizeof(s));
            rc_debug("refusing a ZeroMQ connection from %s: %u open (--connections-per-ip)", s,
                     open);
        }
        return false;
    }
    /* out of memory for a new entry: admitted uncounted, as conn.c does */
    a->token = known && rc_ipcount_add(&srv->net.peers, peer) > 0 ? ZMQ_COUNTED : 0;
    a->handshake_ns = srv->cfg.handshake_timeout;
    srv->zmq_conns++;
    return true;
}

static void zmq_release(void *arg, const rc_ipkey *peer, uint32_t token)
{
    rc_server *srv = arg;
    if (token & ZMQ_COUNTED) rc_ipcount_del(&srv->net.peers, peer);
    srv->zmq_conns--;
}

rc_zms_gate rc_limits_zmq_gate(rc_server *srv)
{
    return (rc_zms_gate){.admit = zmq_admit, .release = zmq_release, .arg = srv};
}

bool rc_limits_origin_allowed(const char *list, const char *origin, size_t n)
{
    if (!list) return false;
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == '\t') p++;
        const char *end = p;
        while (*end && *end != ',') end++;
        const char *e = end;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t')) e--;
        size_t len = (size_t)(e - p);
        if ((len == 1 && *p == '*') || (len == n && n && strncasecmp(p, origin, n) == 0))
            return true;
        p = *end ? end + 1 : end;
    }
    return false;
}

bool rc_limits_upgrade_ok(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    const char *list = srv->cfg.allowed_origins;
    if (list && strcmp(list, "*") == 0) return true; /* the default: one compare */
    /* No Origin: not a browser (browsers always send it on a WebSocket upgrade), so the
     * allowlist, which protects users' browsers from other sites' pages, does not apply. */
    const rc_http_header *o = rc_http_find_header(x->req, "Origin");
    if (!o) return true;
    if (rc_limits_origin_allowed(list, o->value, o->value_len)) return true;
    srv->limits.refused_origin++;
    rc_http_error(c, x, 403, NULL, true,
                  "origin '%.*s' may not open a WebSocket here (not in --allowed-origins)",
                  (int)(o->value_len < 200 ? o->value_len : 200), o->value);
    return false;
}

/* Refuses the message being read from c for limit `which`, allowed again wait_ns from now: an
 * error reply, or the close once the client has ignored --rate-close-after of them. */
static int refuse(rc_server *srv, rc_conn *c, enum rc_limit which, uint64_t wait_ns,
                  const char *what)
{
    rc_climits *l = &rc_client_of(c)->lim;
    uint64_t now = rc_loop_now(srv->loop);
    l->strikes = l->strikes && now - l->last_refusal < STRIKE_WINDOW_NS ? l->strikes + 1 : 1;
    l->last_refusal = now;
    srv->limits.limited[which]++;
    uint32_t max = srv->cfg.rate_close_after;
    if (max && l->strikes > max) {
        srv->limits.closed++;
        rc_debug("closing client %llu: over its %s rate limit %u times in a row",
                 (unsigned long long)rc_client_of(c)->ep.client_id, rc_limit_names[which],
                 l->strikes);
        rc_conn_end(c, RC_WS_CLOSE_POLICY, "rate limit exceeded", true);
        return -1;
    }
    uint64_t ms = (wait_ns + RC_NS_PER_MS - 1) / RC_NS_PER_MS;
    char out[400];
    int n = snprintf(out, sizeof(out),
                     "{\"type\":\"error\",\"code\":\"rate_limited\",\"limit\":\"%s\","
                     "\"retry_after_ms\":%llu,\"message\":\"over the %s limit (%s): not "
                     "processed; retry in %llu ms%s\"}",
                     rc_limit_names[which], (unsigned long long)ms, rc_limit_names[which], what,
                     (unsigned long long)ms,
                     max ? "; a client that goes on sending is disconnected" : "");
    srv->rooms.stats.err[RC_RERR_RATE_LIMITED]++;
    rc_endpoint_send_text(&rc_client_of(c)->ep, out, (size_t)n);
    return -1;
}

int rc_limits_message(rc_conn *c, size_t n)
{
    rc_server *srv = rc_server_of_net(c->net);
    const rc_config *cfg = &srv->cfg;
    if (!cfg->rate_messages && !cfg->rate_bytes) return 0;
    rc_climits *l = &rc_client_of(c)->lim;
    uint64_t now = rc_loop_now(srv->loop), mt = l->msg_tat, bt = l->byte_tat;
    char what[96];
    /* Both are checked before either is charged: a message refused by one limit costs the
     * other nothing. */
    if (cfg->rate_messages) {
        uint64_t burst = cfg->rate_messages_burst ? cfg->rate_messages_burst : cfg->rate_messages;
        if (!rc_rate_take(&mt, now, cfg->rate_messages, burst, 1)) {
            snprintf(what, sizeof(what), "%u messages a second, burst %llu", cfg->rate_messages,
                     (unsigned long long)burst);
            return refuse(srv, c, RC_LIMIT_MESSAGES,
                          rc_rate_wait_ns(l->msg_tat, now, cfg->rate_messages, burst, 1), what);
        }
    }
    if (cfg->rate_bytes) {
        uint64_t burst = cfg->rate_bytes_burst ? cfg->rate_bytes_burst : cfg->rate_bytes;
        if (!rc_rate_take(&bt, now, cfg->rate_bytes, burst, n)) {
            snprintf(what, sizeof(what), "%zu bytes a second, burst %llu", cfg->rate_bytes,
                     (unsigned long long)burst);
            return refuse(srv, c, RC_LIMIT_BYTES,
                          rc_rate_wait_ns(l->byte_tat, now, cfg->rate_bytes, burst, n), what);
        }
    }
    l->msg_tat = mt;
    l->byte_tat = bt;
    return 0;
}

int rc_limits_join_gate(void *arg, rc_endpoint *ep)
{
    rc_server *srv = arg;
    uint32_t rate = srv->cfg.join_rate;
    if (!rate) return 0;
    rc_client *cl = rc_client_of_ep(ep);
    uint64_t now = rc_loop_now(srv->loop);
    uint64_t burst = srv->cfg.join_burst ? srv->cfg.join_burst : rate;
    if (rc_rate_take(&cl->lim.join_tat, now, rate, burst, 1)) return 0;
    char what[96];
    snprintf(what, sizeof(what), "%u joins a second, burst %llu", rate, (unsigned long long)burst);
    return refuse(srv, &cl->conn, RC_LIMIT_JOINS,
                  rc_rate_wait_ns(cl->lim.join_tat, now, rate, burst, 1), what);
}
