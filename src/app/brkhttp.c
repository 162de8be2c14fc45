/* brkhttp.c — GET /api/services and the broker's /metrics series; see brkhttp.h. */
#include "app/brkhttp.h"

#include <stdio.h>
#include <string.h>

#include "app/server.h"
#include "broker/broker.h"
#include "broker/zbroker.h"
#include "core/loop.h"

static const char *proto_name(enum mdp_proto p)
{
    switch (p) {
    case MDP_PROTO_LRU: return "lru";
    case MDP_PROTO_PPP: return "ppp";
    case MDP_PROTO_MDP: return "mdp";
    case MDP_PROTO_NONE: break;
    }
    return "unknown";
}

static bool printable(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] > 0x7e) return false;
    return n > 0;
}

/* printable_json writes bytes as a JSON string: as they are when they are printable ASCII,
 * else "0x" and their hex. Routing identities are often binary (a REQ socket's default is
 * 0x00 and four random bytes), service names rarely are; either way the output is text a
 * person can compare with what the worker logs. */
static void printable_json(rc_textbuf *t, const uint8_t *p, size_t n)
{
    if (printable(p, n)) {
        rc_textbuf_json_string(t, (const char *)p, n);
        return;
    }
    rc_textbuf_append(t, "\"0x", 3);
    for (size_t i = 0; i < n; i++) rc_textbuf_printf(t, "%02x", p[i]);
    rc_textbuf_append(t, "\"", 1);
}

/* ---- GET /api/services ------------------------------------------------------------------- */

static void conn_json(rc_textbuf *t, const rc_zsock_stats *s)
{
    if (!s) {
        rc_textbuf_printf(t, "null");
        return;
    }
    rc_textbuf_printf(t,
                      "{\"live\":%llu,\"accepted\":%llu,\"disconnected\":%llu,\"refused\":%llu,"
                      "\"messages_in\":%llu,\"messages_out\":%llu,\"dropped_too_many_frames\":%llu,"
                      "\"dropped_too_large\":%llu,\"send_again\":%llu,\"send_unreachable\":%llu,"
                      "\"send_errors\":%llu}",
                      (unsigned long long)s->live, (unsigned long long)s->accepted,
                      (unsigned long long)s->disconnected, (unsigned long long)s->refused,
                      (unsigned long long)s->msgs_in,
                      (unsigned long long)s->msgs_out,
                      (unsigned long long)s->dropped[RC_ZSOCK_DROP_FRAMES],
                      (unsigned long long)s->dropped[RC_ZSOCK_DROP_BYTES],
                      (unsigned long long)s->send_again, (unsigned long long)s->send_unreachable,
                      (unsigned long long)s->send_errors);
}

static void service_json(rc_textbuf *t, const brk_broker *b, const brk_service *s, uint64_t now)
{
    rc_textbuf_printf(t, "{\"name\":");
    printable_json(t, s->name, s->name_len);
    rc_textbuf_printf(t,
                      ",\"at_most_once\":%s,\"queue\":%u,\"idle\":%u,\"busy\":%u,"
                      "\"requests\":%llu,\"ok\":%llu,\"failed\":{",
                      s->at_most_once ? "true" : "false", s->qlen, s->nidle,
                      s->nworkers - s->nidle, (unsigned long long)s->st.requests,
                      (unsigned long long)s->st.ok);
    for (int c = 0; c < BRK_CODE_COUNT; c++)
        rc_textbuf_printf(t, "%s\"%s\":%llu", c ? "," : "", brk_code_name((enum brk_code)c),
                          (unsigned long long)s->st.failed[c]);
    rc_textbuf_printf(t, "},\"retries\":%llu,\"late_dropped\":%llu,\"cancelled\":%llu,\"workers\":[",
                      (unsigned long long)s->st.retries, (unsigned long long)s->st.late_dropped,
                      (unsigned long long)s->st.cancelled);
    bool first = true;
    for (const brk_worker *w = brk_worker_next(b, NULL); w; w = brk_worker_next(b, w)) {
        if (w->svc != s) continue;
        /* "name": the routing identity (docs/broker.md) */
        rc_textbuf_printf(t, "%s{\"name\":", first ? "" : ",");
        first = false;
        printable_json(t, w->id, w->id_len);
        rc_textbuf_printf(t,
                          ",\"protocol\":\"%s\",\"state\":\"%s\",\"last_heartbeat_ms\":%llu,"
                          "\"registered_ms\":%llu,\"served\":%llu,\"sticky_queue\":%u}",
                          proto_name(w->proto), w->busy ? "busy" : "idle",
                          (unsigned long long)((now > w->last_heard ? now - w->last_heard : 0) /
                                               1000000),
                          (unsigned long long)((now > w->registered ? now - w->registered : 0) /
                                               1000000),
                          (unsigned long long)w->served, w->sqlen);
    }
    rc_textbuf_printf(t, "]}");
}

/* late_replies is every reply dropped as late: from a live worker whose request timed out or
 * was cancelled (per service), and from a worker already forgotten (broker-wide). */
static unsigned long long late_replies(const brk_broker *b)
{
    unsigned long long n = b->st.late_unknown;
    for (const brk_service *s = brk_service_next(b, NULL); s; s = brk_service_next(b, s))
        n += s->st.late_dropped;
    return n;
}

/* malformed_port writes one port's malformed-input counters by kind: the core's parse errors
 * (mdp_err_name) and the socket layer's drops before the core (rc_zsock_drop_names). */
static void malformed_port(rc_textbuf *t, const uint64_t *bad, const rc_zsock_stats *zs)
{
    rc_textbuf_append(t, "{", 1);
    for (int i = 1; i < MDP_ERR_COUNT; i++)
        rc_textbuf_printf(t, "%s\"%s\":%llu", i > 1 ? "," : "", mdp_err_name(-i),
                          (unsigned long long)bad[i]);
    for (int d = 0; d < RC_ZSOCK_DROP__COUNT; d++)
        rc_textbuf_printf(t, ",\"%s\":%llu", rc_zsock_drop_names[d],
                          (unsigned long long)(zs ? zs->dropped[d] : 0));
    rc_textbuf_append(t, "}", 1);
}

/* counters_json writes the broker-wide counters (docs/broker.md, "Counters"). */
static void counters_json(rc_textbuf *t, const rc_zbroker *zb)
{
    const brk_broker *b = rc_zbroker_core_c(zb);
    const brk_stats *st = &b->st;
    const rc_zbroker_stats *zs = rc_zbroker_stats_of(zb);
    rc_textbuf_printf(t, "{\"malformed\":{\"worker\":");
    malformed_port(t, st->bad_worker, rc_zbroker_worker_stats(zb));
    rc_textbuf_printf(t, ",\"client\":");
    malformed_port(t, st->bad_client, rc_zbroker_client_stats(zb));
    rc_textbuf_printf(t,
                      "},\"late_replies\":%llu,\"late_unknown\":%llu,"
                      "\"unexpected_commands\":%llu,\"bad_address\":%llu,"
                      "\"mmi_service_rejected\":%llu,\"unknown_service\":%llu,\"mmi\":%llu,"
                      "\"workers_expired\":%llu,\"workers_gone\":%llu,\"moved\":%llu,"
                      "\"worker_connections_closed\":%llu,\"worker_unreachable\":%llu,"
                      "\"send_dropped\":%llu}",
                      late_replies(b), (unsigned long long)st->late_unknown,
                      (unsigned long long)st->unexpected, (unsigned long long)st->bad_address,
                      (unsigned long long)st->mmi_service_rejected,
                      (unsigned long long)st->unknown_service, (unsigned long long)st->mmi,
                      (unsigned long long)st->workers_expired,
                      (unsigned long long)st->workers_gone, (unsigned long long)st->moved,
                      (unsigned long long)zs->worker_conn_gone,
                      (unsigned long long)zs->worker_unreachable,
                      (unsigned long long)zs->send_dropped);
}

static void list_services(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    rc_textbuf t = {0};
    const rc_zbroker *zb = srv->broker;
    if (!zb) {
        rc_textbuf_printf(&t, "{\"enabled\":false,\"services\":[]}\n");
        rc_http_respond_json(c, x, 200, &t);
        return;
    }
    const brk_broker *b = rc_zbroker_core_c(zb);
    uint64_t now = rc_loop_now(srv->loop);
    rc_textbuf_printf(&t, "{\"enabled\":true,\"workers_endpoint\":");
    rc_textbuf_json_string(&t, rc_zbroker_worker_endpoint(zb),
                           strlen(rc_zbroker_worker_endpoint(zb)));
    rc_textbuf_printf(&t, ",\"clients_endpoint\":");
    if (rc_zbroker_client_port(zb))
        rc_textbuf_json_string(&t, rc_zbroker_client_endpoint(zb),
                               strlen(rc_zbroker_client_endpoint(zb)));
    else
        rc_textbuf_printf(&t, "null");
    rc_textbuf_printf(&t, ",\"default_service\":");
    rc_textbuf_json_string(&t, (const char *)b->default_name, b->default_len);
    rc_textbuf_printf(&t, ",\"services\":[");
    bool first = true;
    for (const brk_service *s = brk_service_next(b, NULL); s; s = brk_service_next(b, s)) {
        if (!first) rc_textbuf_append(&t, ",", 1);
        first = false;
        service_json(&t, b, s, now);
    }
    rc_textbuf_printf(&t, "],\"counters\":");
    counters_json(&t, zb);
    rc_textbuf_printf(&t, ",\"connections\":{\"workers\":");
    conn_json(&t, rc_zbroker_worker_stats(zb));
    rc_textbuf_printf(&t, ",\"clients\":");
    conn_json(&t, rc_zbroker_client_stats(zb));
    rc_textbuf_printf(&t, "}}\n");
    rc_http_respond_json(c, x, 200, &t);
}

bool rc_brkhttp_handle(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    if (!rc_http_path_is(x, "/api/services")) return false;
    if (x->method == RC_HTTP_GET || x->method == RC_HTTP_HEAD) list_services(srv, c, x);
    else rc_http_error(c, x, 405, "Allow: GET, HEAD\r\n", false, "method not allowed");
    return true;
}

/* ---- /metrics ---------------------------------------------------------------------------- */

static void header(rc_textbuf *t, const char *name, const char *type, const char *help)
{
    rc_textbuf_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* label writes a service name as a Prometheus label value: printable ASCII as it is (with
 * '"' and '\' escaped), any other byte as the four characters \xHH. */
static void label(rc_textbuf *t, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"' || p[i] == '\\') rc_textbuf_printf(t, "\\%c", p[i]);
        else if (p[i] >= 0x20 && p[i] <= 0x7e) rc_textbuf_append(t, &p[i], 1);
        else rc_textbuf_printf(t, "\\\\x%02x", p[i]);
    }
}

static void svc_sample(rc_textbuf *t, const char *name, const brk_service *s, const char *extra,
                       unsigned long long v)
{
    rc_textbuf_printf(t, "%s{service=\"", name);
    label(t, s->name, s->name_len);
    rc_textbuf_printf(t, "\"%s} %llu\n", extra, v);
}

static void scalar(rc_textbuf *t, const char *name, const char *type, const char *help,
                   unsigned long long v)
{
    header(t, name, type, help);
    rc_textbuf_printf(t, "%s %llu\n", name, v);
}

void rc_brkhttp_metrics(rc_textbuf *t, const rc_zbroker *zb)
{
    const brk_broker *b = rc_zbroker_core_c(zb);
    char extra[64];
    header(t, "roomcast_broker_workers", "gauge", "Registered workers per service and state.");
    for (const brk_service *s = brk_service_next(b, NULL); s; s = brk_service_next(b, s)) {
        svc_sample(t, "roomcast_broker_workers", s, ",state=\"idle\"", s->nidle);
        svc_sample(t, "roomcast_broker_workers", s, ",state=\"busy\"", s->nworkers - s->nidle);
    }
    header(t, "roomcast_broker_queue_depth", "gauge",
           "Requests waiting for an idle worker, per service.");
    for (const brk_service *s = brk_service_next(b, NULL); s; s = brk_service_next(b, s))
        svc_sample(t, "roomcast_broker_queue_depth", s, "", s->qlen);
    header(t, "roomcast_broker_requests_total", "counter",
           "Requests by service and outcome (ok, a failure code, or cancelled: the requester "
           "left).");
    for (const brk_service *s = brk_service_next(b, NULL); s; s = brk_service_next(b, s)) {
        svc_sample(t, "roomcast_broker_requests_total", s, ",outcome=\"ok\"", s->st.ok);
        for (int c = 0; c < BRK_CODE_COUNT; c++) {
            snprintf(extra, sizeof(extra), ",outcome=\"%s\"", brk_code_name((enum brk_code)c));
            svc_sample(t, "roomcast_broker_requests_total", s, extra, s->st.failed[c]);
        }
        svc_sample(t, "roomcast_broker_requests_total", s, ",outcome=\"cancelled\"",
                   s->st.cancelled);
    }
    header(t, "roomcast_broker_retries_total", "counter",
           "Requests sent to another worker after theirs died.");
    for (const brk_service *s = brk_service_next(b, NULL); s; s = brk_service_next(b, s))
        svc_sample(t, "roomcast_broker_retries_total", s, "", s->st.retries);
    header(t, "roomcast_broker_late_replies_total", "counter",
           "Replies dropped because their request had timed out, was cancelled or went to "
           "another worker.");
    for (const brk_service *s = brk_service_next(b, NULL); s; s = brk_service_next(b, s))
        svc_sample(t, "roomcast_broker_late_replies_total", s, "", s->st.late_dropped);
    const brk_stats *st = &b->st;
    header(t, "roomcast_broker_malformed_total", "counter",
           "Malformed messages the broker core dropped, by port and kind (messages the socket "
           "layer dropped first are in roomcast_broker_dropped_total).");
    for (int i = 1; i < MDP_ERR_COUNT; i++)
        rc_textbuf_printf(t, "roomcast_broker_malformed_total{port=\"worker\",kind=\"%s\"} %llu\n",
                          mdp_err_name(-i), (unsigned long long)st->bad_worker[i]);
    for (int i = 1; i < MDP_ERR_COUNT; i++)
        rc_textbuf_printf(t, "roomcast_broker_malformed_total{port=\"client\",kind=\"%s\"} %llu\n",
                          mdp_err_name(-i), (unsigned long long)st->bad_client[i]);
    scalar(t, "roomcast_broker_late_replies_unknown_total", "counter",
           "Late replies from workers already forgotten (included in no service's "
           "roomcast_broker_late_replies_total).", st->late_unknown);
    scalar(t, "roomcast_broker_unknown_service_total", "counter",
           "Requests failed no_service for a service never seen.", st->unknown_service);
    scalar(t, "roomcast_broker_mmi_total", "counter", "MMI (RFC 8) requests answered.", st->mmi);
    scalar(t, "roomcast_broker_mmi_service_rejected_total", "counter",
           "MDP workers that tried to register an mmi.* service.", st->mmi_service_rejected);
    scalar(t, "roomcast_broker_unexpected_commands_total", "counter",
           "Valid but unexpected worker commands (MDP workers get DISCONNECT).", st->unexpected);
    scalar(t, "roomcast_broker_bad_address_total", "counter",
           "Replies naming a request their worker does not hold.", st->bad_address);
    scalar(t, "roomcast_broker_late_unknown_total", "counter",
           "Replies from unknown workers whose request is gone too.", st->late_unknown);
    scalar(t, "roomcast_broker_unknown_service_total", "counter",
           "Requests failed no_service for a service never seen.", st->unknown_service);
    scalar(t, "roomcast_broker_mmi_total", "counter", "MMI requests answered.", st->mmi);
    scalar(t, "roomcast_broker_workers_expired_total", "counter",
           "Workers declared dead for missing heartbeats.", st->workers_expired);
    scalar(t, "roomcast_broker_workers_gone_total", "counter",
           "Workers ended by a disconnect (connection closed, unreachable, DISCONNECT).",
           st->workers_gone);
    scalar(t, "roomcast_broker_sticky_moved_total", "counter",
           "Sticky keys (room services) released because their worker died.", st->moved);
    const rc_zsock_stats *ports[2] = {rc_zbroker_worker_stats(zb), rc_zbroker_client_stats(zb)};
    static const char *const port_names[2] = {"worker", "client"};
    header(t, "roomcast_broker_connections", "gauge", "Open connections per broker port.");
    for (int i = 0; i < 2; i++)
        if (ports[i])
            rc_textbuf_printf(t, "roomcast_broker_connections{port=\"%s\"} %llu\n", port_names[i],
                              (unsigned long long)ports[i]->live);
    header(t, "roomcast_broker_connections_total", "counter",
           "Connections accepted per broker port.");
    for (int i = 0; i < 2; i++)
        if (ports[i])
            rc_textbuf_printf(t, "roomcast_broker_connections_total{port=\"%s\"} %llu\n",
                              port_names[i], (unsigned long long)ports[i]->accepted);
    header(t, "roomcast_broker_connections_refused_total", "counter",
           "Connections closed at accept per broker port (native engine: --connections-per-ip, "
           "--max-connections; also in roomcast_connections_refused_total or "
           "roomcast_disconnects_total).");
    for (int i = 0; i < 2; i++)
        if (ports[i])
            rc_textbuf_printf(t, "roomcast_broker_connections_refused_total{port=\"%s\"} %llu\n",
                              port_names[i], (unsigned long long)ports[i]->refused);
    header(t, "roomcast_broker_messages_total", "counter",
           "Messages per broker port and direction.");
    for (int i = 0; i < 2; i++)
        if (ports[i])
            rc_textbuf_printf(t,
                              "roomcast_broker_messages_total{port=\"%s\",direction=\"in\"} %llu\n"
                              "roomcast_broker_messages_total{port=\"%s\",direction=\"out\"} %llu\n",
                              port_names[i], (unsigned long long)ports[i]->msgs_in,
                              port_names[i], (unsigned long long)ports[i]->msgs_out);
    header(t, "roomcast_broker_dropped_total", "counter",
           "Messages dropped by the socket layer before the broker: over the frame count or "
           "size limit (received), or refused by a send (again: the peer's pipe is full; "
           "unreachable: the peer is gone).");
    for (int i = 0; i < 2; i++) {
        if (!ports[i]) continue;
        const rc_zsock_stats *p = ports[i];
        for (int d = 0; d < RC_ZSOCK_DROP__COUNT; d++)
            rc_textbuf_printf(t, "roomcast_broker_dropped_total{port=\"%s\",reason=\"%s\"} %llu\n",
                              port_names[i], rc_zsock_drop_names[d],
                              (unsigned long long)p->dropped[d]);
        rc_textbuf_printf(t,
                          "roomcast_broker_dropped_total{port=\"%s\",reason=\"send_again\"} %llu\n"
                          "roomcast_broker_dropped_total{port=\"%s\",reason=\"send_unreachable\"} "
                          "%llu\n"
                          "roomcast_broker_dropped_total{port=\"%s\",reason=\"send_error\"} %llu\n",
                          port_names[i], (unsigned long long)p->send_again, port_names[i],
                          (unsigned long long)p->send_unreachable, port_names[i],
                          (unsigned long long)p->send_errors);
    }
}
