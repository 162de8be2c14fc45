/* metrics.c — histograms and the Prometheus text for GET /metrics; see metrics.h. */
#include "app/metrics.h"

#include "app/brkhttp.h"
#include "app/nsws.h"
#include "app/reload.h"
#include "app/server.h"
#include "app/stats.h"
#include "codec/textbuf.h"
#include "netsync/netsync.h"
#include "netsync/ns8room.h"
#include "rooms/redispresence.h"
#include "rooms/redisrooms.h"
#include "rooms/wire.h"
#include "transport/tls.h"
#include "transport/zmtpsock.h"

static void on_iteration(rc_loop *loop, uint64_t busy_ns, void *arg)
{
    rc_server *srv = arg;
    rc_hist_add(&srv->metrics.iteration, busy_ns);
}

void rc_metrics_start(rc_server *srv)
{
    rc_loop_set_iteration_hook(srv->loop, on_iteration, srv);
}

void rc_metrics_on_sent(void *arg, uint64_t t_recv, uint32_t n)
{
    rc_server *srv = arg;
    /* Inside the before-sleep flush, flush_now is fresher than the loop's clock; a write on
     * EPOLLOUT happens in the event phase, where the loop's clock of this wake-up is. */
    uint64_t now = rc_loop_now(srv->loop);
    if (srv->net.flush_now > now) now = srv->net.flush_now;
    rc_hist_add_n(&srv->metrics.delivery, now > t_recv ? now - t_recv : 0, n);
}

static void header(rc_textbuf *t, const char *name, const char *type, const char *help)
{
    rc_textbuf_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric(rc_textbuf *t, const char *name, const char *type, const char *help,
                   unsigned long long v)
{
    header(t, name, type, help);
    rc_textbuf_printf(t, "%s %llu\n", name, v);
}

static void histogram(rc_textbuf *t, const char *name, const char *help, const rc_hist *h)
{
    header(t, name, "histogram", help);
    uint64_t cum = 0;
    for (int k = 0; k < RC_HIST_FINITE; k++) {
        cum += h->bucket[k];
        /* 2^k µs written in seconds, exactly: at most 7 significant digits are needed. */
        rc_textbuf_printf(t, "%s_bucket{le=\"%.9g\"} %llu\n", name, (double)(1u << k) * 1e-6,
                          (unsigned long long)cum);
    }
    rc_textbuf_printf(t, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    rc_textbuf_printf(t, "%s_sum %.9f\n%s_count %llu\n", name, (double)h->sum_ns / 1e9, name,
                      (unsigned long long)h->count);
}

/* The NetSync transport's counters (src/netsync/nsstats.h), when it is on. */
static void netsync_metrics(rc_textbuf *t, const struct rc_netsync *ns, const rc_nsws *w)
{
    const rc_netsync_stats *st = rc_netsync_stats_of(ns);
    if (w) {
        rc_nsws_counts oc = rc_nsws_counts_of(w);
        metric(t, "roomcast_netsync_observations", "gauge",
               "WebSocket observations of NetSync rooms (connection, room pairs).",
               oc.observations);
        metric(t, "roomcast_netsync_observed_rooms", "gauge",
               "NetSync room ids with at least one WebSocket observer.", oc.rooms);
        metric(t, "roomcast_netsync_observer_frames_total", "counter",
               "Frames queued to WebSocket observers (events x observers).", oc.frames_out);
    }
    metric(t, "roomcast_netsync_clients", "gauge", "Live NetSync clients (stealth included).",
           st->clients);
    metric(t, "roomcast_netsync_rooms", "gauge", "NetSync rooms.", st->rooms);
    metric(t, "roomcast_netsync_devices", "gauge",
           "NetSync devices holding a client number (live and departed).", st->devices);
    metric(t, "roomcast_netsync_messages_received_total", "counter",
           "ZeroMQ messages received on the NetSync ROUTER.", st->msgs_in);
    metric(t, "roomcast_netsync_received_bytes_total", "counter",
           "Payload bytes received on the NetSync ROUTER.", st->bytes_in);
    metric(t, "roomcast_netsync_pose_messages_received_total", "counter",
           "ZeroMQ messages received on the NetSync pose (transform) ROUTER.", st->pose_msgs_in);
    metric(t, "roomcast_netsync_pose_received_bytes_total", "counter",
           "Payload bytes received on the NetSync pose ROUTER.", st->pose_bytes_in);
    metric(t, "roomcast_netsync_v8_messages_total", "counter",
           "Messages handed to the protocol-8 engine.", st->v8_in);
    header(t, "roomcast_netsync_unsupported_messages_total", "counter",
           "Messages of NetSync clients of an unsupported protocol version, by version.");
    for (int v = 0; v < 256; v++)
        if (st->unsupported[v])
            rc_textbuf_printf(t, "roomcast_netsync_unsupported_messages_total{version=\"%d\"} "
                              "%llu\n", v, (unsigned long long)st->unsupported[v]);
    metric(t, "roomcast_netsync_version_replies_total", "counter",
           "DEVICE_ID_MAPPINGs with roomcast's version sent to unsupported clients.",
           st->version_replies);
    metric(t, "roomcast_netsync_identities", "gauge",
           "Routing identities remembered (generation, connection, unicast queue).",
           st->idents);
    metric(t, "roomcast_netsync_identities_evicted_total", "counter",
           "Routing-identity records evicted at the bound.", st->idents_evicted);
    metric(t, "roomcast_netsync_unicast_sent_total", "counter",
           "Unicast messages handed to the control ROUTER.", st->unicast_out);
    metric(t, "roomcast_netsync_unicast_sent_bytes_total", "counter",
           "Bytes of unicast messages (room + payload).", st->unicast_bytes_out);
    metric(t, "roomcast_netsync_unicast_queued", "gauge",
           "Unicast messages waiting in per-peer queues.", st->unicast_queued);
    metric(t, "roomcast_netsync_unicast_queued_bytes", "gauge",
           "Bytes waiting in per-peer unicast queues.", st->unicast_queued_bytes);
    metric(t, "roomcast_netsync_unicast_deferred_total", "counter",
           "Unicast messages that met a full pipe (EAGAIN) and waited.", st->unicast_deferred);
    metric(t, "roomcast_netsync_unicast_superseded_total", "counter",
           "Queued mappings replaced by a newer one of the same room.", st->unicast_superseded);
    metric(t, "roomcast_netsync_unicast_slow_consumers_total", "counter",
           "NetSync peers disconnected with a full unicast queue.", st->unicast_slow);
    header(t, "roomcast_netsync_unicast_dropped_total", "counter",
           "Unicast messages dropped, by reason.");
    for (int i = 0; i < NSY_UCDROP__COUNT; i++)
        rc_textbuf_printf(t, "roomcast_netsync_unicast_dropped_total{reason=\"%s\"} %llu\n",
                          nsy_ucdrop_names[i], (unsigned long long)st->unicast_dropped[i]);
    metric(t, "roomcast_netsync_transforms_received_total", "counter",
           "CLIENT_TRANSFORM messages accepted (rate() gives transforms/s in).",
           st->transforms_in);
    metric(t, "roomcast_netsync_rpc_received_total", "counter", "RPCs accepted.", st->rpc_in);
    metric(t, "roomcast_netsync_variable_sets_received_total", "counter",
           "GLOBAL/CLIENT_VAR_SET accepted.", st->nv_in);
    metric(t, "roomcast_netsync_joins_total", "counter", "Clients that joined a room.",
           st->joins);
    metric(t, "roomcast_netsync_timeouts_total", "counter", "Clients removed for silence.",
           st->timeouts);
    metric(t, "roomcast_netsync_messages_sent_total", "counter",
           "Messages published on the NetSync PUB (once each; ZeroMQ fans out).", st->msgs_out);
    metric(t, "roomcast_netsync_sent_bytes_total", "counter",
           "Bytes published on the NetSync PUB (topic + payload, once per message).",
           st->bytes_out);
    metric(t, "roomcast_netsync_room_transforms_sent_total", "counter",
           "ROOM_TRANSFORM messages published.", st->room_transforms_out);
    metric(t, "roomcast_netsync_mappings_sent_total", "counter",
           "DEVICE_ID_MAPPING messages published.", st->mappings_out);
    metric(t, "roomcast_netsync_publish_errors_total", "counter", "zmq_send failures.",
           st->publish_errors);
    header(t, "roomcast_netsync_dropped_total", "counter",
           "NetSync messages dropped, by reason (malformed input included).");
    for (int i = 0; i < NSY_DROP__COUNT; i++)
        rc_textbuf_printf(t, "roomcast_netsync_dropped_total{reason=\"%s\"} %llu\n",
                          nsy_drop_names[i], (unsigned long long)st->dropped[i]);
    /* protocol 8's rooms (src/netsync/ns8room.h) */
    const nsr8_stats *s8 = rc_netsync_stats8(ns);
    metric(t, "roomcast_netsync_v8_rooms", "gauge", "Protocol-8 rooms.", s8->rooms);
    metric(t, "roomcast_netsync_v8_clients", "gauge",
           "Protocol-8 room entries (stealth included).", s8->clients);
    metric(t, "roomcast_netsync_v8_devices", "gauge",
           "Protocol-8 devices holding a client number (present and departed).", s8->devices);
    metric(t, "roomcast_netsync_v8_joins_total", "counter", "Protocol-8 entries created.",
           s8->joins);
    metric(t, "roomcast_netsync_v8_timeouts_total", "counter",
           "Protocol-8 entries removed for silence.", s8->timeouts);
    metric(t, "roomcast_netsync_v8_reconnects_total", "counter",
           "Protocol-8 devices whose routing identity was replaced by a reconnect.",
           s8->reconnects);
    metric(t, "roomcast_netsync_v8_poses_received_total", "counter",
           "CLIENT_POSE messages accepted.", s8->poses_in);
    metric(t, "roomcast_netsync_v8_pose_trailing_total", "counter",
           "Poses with bytes after their body (never relayed).", s8->pose_trailing);
    metric(t, "roomcast_netsync_v8_unicasts_total", "counter",
           "Protocol-8 control messages sent to one client.", s8->unicasts);
    metric(t, "roomcast_netsync_v8_publishes_total", "counter",
           "ROOM_POSE and ROOM_OBJECTS messages published.", s8->publishes);
    header(t, "roomcast_netsync_v8_dropped_total", "counter",
           "Protocol-8 messages dropped, by reason (malformed input, wrong lane, a deviceId "
           "held by another connection, limits).");
    for (int i = 0; i < NSR8_DROP__COUNT; i++)
        rc_textbuf_printf(t, "roomcast_netsync_v8_dropped_total{reason=\"%s\"} %llu\n",
                          nsr8_drop_names[i], (unsigned long long)s8->dropped[i]);
    header(t, "roomcast_netsync_connections", "gauge",
           "Open connections of the NetSync ZeroMQ sockets (router: control DEALERs, pub: "
           "SUBs, pose: transform DEALERs).");
    for (int k = 0; k < NSY_SOCK__COUNT; k++)
        rc_textbuf_printf(t, "roomcast_netsync_connections{socket=\"%s\"} %llu\n",
                          nsy_sock_names[k], (unsigned long long)st->peers[k]);
    header(t, "roomcast_netsync_disconnects_total", "counter",
           "Connections of the NetSync ZeroMQ sockets that ended, by socket and reason (peer "
           "closed, handshake failed, protocol: dropped during the handshake without a reason, "
           "too_big, subscription_limit, unknown, slow_consumer, connection_limit: refused at "
           "accept by --connections-per-ip or --max-connections, native engine).");
    for (int k = 0; k < NSY_SOCK__COUNT; k++)
        for (int g = 0; g < NSY_GONE__COUNT; g++)
            rc_textbuf_printf(t,
                              "roomcast_netsync_disconnects_total{socket=\"%s\",reason=\"%s\"} "
                              "%llu\n",
                              nsy_sock_names[k], nsy_gone_names[g],
                              (unsigned long long)st->peers_gone[k][g]);
    if (rc_netsync_zms_stats(ns, NSY_SOCK_ROUTER)) { /* the native ZeroMQ engine */
        header(t, "roomcast_netsync_zmtp_errors_total", "counter",
               "ZMTP protocol errors that ended a connection of the native engine, by socket "
               "and kind (src/codec/zmtp.h).");
        for (int k = 0; k < NSY_SOCK__COUNT; k++)
            for (int e = 1; e < RC_ZMTP_E__COUNT; e++)
                rc_textbuf_printf(t,
                                  "roomcast_netsync_zmtp_errors_total{socket=\"%s\",kind=\"%s\"}"
                                  " %llu\n",
                                  nsy_sock_names[k], rc_zmtp_err_names[e],
                                  (unsigned long long)rc_netsync_zms_stats(ns, k)->errors[e]);
        const rc_zms_stats *pub = rc_netsync_zms_stats(ns, NSY_SOCK_PUB);
        metric(t, "roomcast_netsync_pub_skipped_total", "counter",
               "Native engine: deliveries of a published message skipped because the "
               "subscriber's queue was full (libzmq's PUB drops at its high-water mark).",
               pub->pub_dropped);
        uint64_t pings = 0;
        for (int k = 0; k < NSY_SOCK__COUNT; k++) pings += rc_netsync_zms_stats(ns, k)->pings;
        metric(t, "roomcast_netsync_zmtp_pings_total", "counter",
               "Native engine: ZMTP PINGs answered with a PONG.", pings);
    }
    header(t, "roomcast_netsync_tick_seconds", "histogram",
           "Duration of one NetSync tick (timeouts, mappings, NV syncs, ROOM_TRANSFORMs).");
    uint64_t cum = 0, lim = 16000; /* ns; the buckets of nsstats.h: 16 us, x4 each */
    for (int b = 0; b < NSY_TICK_BUCKETS - 1; b++, lim *= 4) {
        cum += st->tick_hist[b];
        rc_textbuf_printf(t, "roomcast_netsync_tick_seconds_bucket{le=\"%.9g\"} %llu\n",
                          (double)lim / 1e9, (unsigned long long)cum);
    }
    rc_textbuf_printf(t, "roomcast_netsync_tick_seconds_bucket{le=\"+Inf\"} %llu\n",
                      (unsigned long long)st->ticks);
    rc_textbuf_printf(t, "roomcast_netsync_tick_seconds_sum %.9f\nroomcast_netsync_tick_seconds_count %llu\n",
                      (double)st->tick_ns_total / 1e9, (unsigned long long)st->ticks);
}

/* --redis: members across nodes and the node registry (docs/cluster.md, "Presence"). */
static void presence_metrics(rc_textbuf *t, const rc_rooms *rooms)
{
    rc_redispresence_stats p;
    rc_redisrooms_stats r;
    rc_cluster_stats cs, *c = &cs;
    rc_redispresence_stats_get(rooms, &p);
    rc_redisrooms_stats_get(rooms->cluster, &r, &cs);
    metric(t, "roomcast_cluster_nodes", "gauge",
           "Live nodes in the registry as of this node's last heartbeat (itself included).",
           c->nodes_alive);
    metric(t, "roomcast_redis_node_heartbeats_total", "counter",
           "Node heartbeats (registry refresh and reaping) answered.", c->node_beats);
    metric(t, "roomcast_redis_presence_sent_total", "counter",
           "Joins and leaves of this node's members recorded in Redis.", c->presence_sent);
    metric(t, "roomcast_redis_presence_events_total", "counter",
           "Joins and leaves of other nodes' members received.", c->presence_events);
    metric(t, "roomcast_redis_presence_remote_members", "gauge",
           "Members of other nodes mirrored for presence (summed over rooms).",
           p.remote_members);
    metric(t, "roomcast_redis_presence_loads_total", "counter",
           "Rooms' remote members loaded from Redis.", p.loads);
    metric(t, "roomcast_redis_presence_reasserts_total", "counter",
           "Times this node put its members back (Redis was back, or it was unregistered).",
           p.reasserts);
    metric(t, "roomcast_redis_presence_syncs_total", "counter",
           "Rooms whose members this node put back.", c->presence_syncs);
    metric(t, "roomcast_redis_presence_failed_total", "counter",
           "Presence and heartbeat calls that failed (repaired when Redis is back).",
           c->presence_failed);
    metric(t, "roomcast_redis_presence_reaped_nodes_total", "counter",
           "Dead nodes (heartbeat expired) this node removed.", c->reaped_nodes);
    metric(t, "roomcast_redis_presence_reaped_members_total", "counter",
           "Members of dead nodes this node removed (their leaves published).",
           c->reaped_members);
}

/* --redis: the cluster engine's state and counters (docs/cluster.md, "Counters"). */
static void redis_metrics(rc_textbuf *t, const rc_redisrooms *rr)
{
    rc_redisrooms_stats r;
    rc_cluster_stats c;
    rc_redisrooms_stats_get(rr, &r, &c);
    metric(t, "roomcast_redis_up", "gauge",
           "1 while Redis is usable (both connections up, scripts loaded), else 0.",
           c.publisher_up && c.subscriber_up);
    metric(t, "roomcast_redis_publisher_up", "gauge", "The publisher connection is up.",
           c.publisher_up);
    metric(t, "roomcast_redis_subscriber_up", "gauge", "The subscriber connection is up.",
           c.subscriber_up);
    metric(t, "roomcast_redis_published_total", "counter",
           "Publishes sequenced by the script.", c.published);
    metric(t, "roomcast_redis_duplicates_total", "counter",
           "Publishes answered from an idempotency record.", c.duplicates);
    metric(t, "roomcast_redis_publish_failed_total", "counter",
           "Publishes whose outcome is unknown (connection lost) or refused by Redis.",
           c.publish_failed);
    metric(t, "roomcast_redis_unavailable_total", "counter",
           "Publishes and joins answered `unavailable`.", r.unavailable);
    metric(t, "roomcast_redis_delivered_total", "counter",
           "Channel messages received for rooms on this node.", c.delivered);
    metric(t, "roomcast_redis_gaps_total", "counter",
           "Channel messages that did not follow the previous one.", c.gaps);
    metric(t, "roomcast_redis_regressions_total", "counter",
           "Channel messages reusing delivered ids (Redis went back).", c.regressions);
    metric(t, "roomcast_redis_bad_messages_total", "counter",
           "Channel messages not of roomcast's format (dropped).", c.bad_messages);
    metric(t, "roomcast_redis_noscript_total", "counter", "NOSCRIPT replies (scripts reloaded).",
           c.noscript);
    metric(t, "roomcast_redis_heartbeat_failures_total", "counter",
           "Heartbeats that did not come back (a connection reset).", c.heartbeat_failures);
    metric(t, "roomcast_redis_rooms", "gauge", "Rooms this node is subscribed to.", c.rooms);
    metric(t, "roomcast_redis_inflight", "gauge", "Script calls sent and not answered yet.",
           c.inflight);
    metric(t, "roomcast_redis_commands_total", "counter",
           "Commands the publisher connection sent.", c.pub_commands);
    metric(t, "roomcast_redis_writes_total", "counter",
           "write() calls they took (commands / writes is the pipelining factor).", c.pub_writes);
    metric(t, "roomcast_redis_syncs_total", "counter",
           "Room reads merged with the channel (room created, or brought back in step).",
           r.syncs);
    metric(t, "roomcast_redis_resyncs_lost_total", "counter",
           "Of them, where members missed what Redis no longer holds (closed 1013 to rejoin).",
           r.resyncs_lost);
    metric(t, "roomcast_redis_joins_waited_total", "counter",
           "Joins that waited for their room to be in step with Redis.", r.joins_waited);
    metric(t, "roomcast_redis_deep_recoveries_total", "counter",
           "Joins recovered from a read of Redis's stream (the node's copy did not reach back).",
           r.deep_recoveries);
}

int rc_metrics_render(const rc_server *srv, rc_buf *out)
{
    rc_textbuf t = {.buf = *out};
    const rc_net_stats *s = &srv->net.stats;
    const rc_rooms_stats *rs = &srv->rooms.stats;
    const rc_metrics *m = &srv->metrics;

    header(&t, "roomcast_info", "gauge", "Build information.");
    rc_textbuf_printf(&t, "roomcast_info{version=\"%s\"} 1\n", RC_VERSION);
    header(&t, "roomcast_uptime_seconds", "gauge", "Seconds since the server started.");
    rc_textbuf_printf(&t, "roomcast_uptime_seconds %.3f\n",
                      (double)(rc_loop_now(srv->loop) - srv->started) / 1e9);
    metric(&t, "roomcast_connections", "gauge", "Open client connections (HTTP and WebSocket).",
           srv->net.nconns);
    uint32_t by[RC_TRANSPORTS];
    rc_server_count_transports(srv, by);
    header(&t, "roomcast_connections_by_transport", "gauge",
           "Open client connections by what they speak (http, ws, tcp, chat).");
    for (int i = 0; i < RC_TRANSPORTS; i++)
        rc_textbuf_printf(&t, "roomcast_connections_by_transport{transport=\"%s\"} %u\n",
                          rc_transport_names[i], by[i]);
    metric(&t, "roomcast_max_connections", "gauge", "Connection limit in effect.",
           srv->max_connections);
    metric(&t, "roomcast_connections_total", "counter", "Connections accepted.",
           s->connections_total);
    metric(&t, "roomcast_rooms", "gauge", "Rooms that exist now.", rc_rooms_count(&srv->rooms));
    metric(&t, "roomcast_messages_received_total", "counter",
           "Data messages received from clients (WebSocket, TCP, chat).", s->messages_in);
    metric(&t, "roomcast_messages_sent_total", "counter",
           "Room message frames queued to members (one per recipient).", rs->deliveries);
    metric(&t, "roomcast_broadcasts_total", "counter", "Messages sequenced into rooms.",
           rs->broadcasts);
    metric(&t, "roomcast_history_bytes", "gauge",
           "Bytes the rooms' histories keep (limit: --history-memory).", srv->rooms.hist_bytes);
    metric(&t, "roomcast_history_evicted_total", "counter",
           "Kept messages dropped to stay within --history-memory.", rs->evicted);
    const rc_wire_deflate_stats *dz = rc_wire_deflate_stats_get();
    metric(&t, "roomcast_ws_deflate_messages_total", "counter",
           "Room messages compressed for permessage-deflate members (once per room).",
           dz->messages);
    metric(&t, "roomcast_ws_deflate_bytes_in_total", "counter",
           "Payload bytes of the room messages compressed.", dz->bytes_in);
    metric(&t, "roomcast_ws_deflate_bytes_out_total", "counter",
           "Their compressed payload bytes.", dz->bytes_out);
    metric(&t, "roomcast_conflated_total", "counter",
           "Queued messages dropped for a newer one with the same state key (conflate).",
           rs->conflated);
    metric(&t, "roomcast_presence_events_total", "counter",
           "Presence events and batches queued to members.", rs->presence_events);
    metric(&t, "roomcast_history_joins_total", "counter", "Joins that asked for history.",
           rs->history_joins);
    metric(&t, "roomcast_state_joins_total", "counter", "Joins that asked for the room state.",
           rs->state_joins);
    metric(&t, "roomcast_state_bytes", "gauge",
           "Bytes the states of all rooms hold (keys and messages; --state-memory).",
           srv->rooms.state_bytes);
    metric(&t, "roomcast_sessions", "gauge", "Sessions remembered (held or idle).",
           srv->rooms.sessions.table.count);
    metric(&t, "roomcast_sessions_reclaimed_total", "counter",
           "Sessions taken back by a new connection.", srv->rooms.sessions.reclaimed);
    metric(&t, "roomcast_sessions_replaced_total", "counter",
           "Connections closed because a new one took their session.",
           srv->rooms.sessions.replaced);
    if (srv->reload) {
        metric(&t, "roomcast_config_reloads_total", "counter",
               "SIGHUP reloads applied (a file with errors is not applied).", srv->reload->ok);
        metric(&t, "roomcast_config_reload_failures_total", "counter",
               "SIGHUP reloads refused: the config file had errors.", srv->reload->failed);
        metric(&t, "roomcast_config_restart_needed", "gauge",
               "Keys changed by the last reload that need a restart to take effect.",
               srv->reload->restart_keys);
    }
    metric(&t, "roomcast_received_bytes_total", "counter", "Bytes read from client sockets.",
           s->bytes_in);
    metric(&t, "roomcast_sent_bytes_total", "counter", "Bytes written to client sockets.",
           s->bytes_out);
    metric(&t, "roomcast_accept_errors_total", "counter", "accept() failures.",
           s->accept_errors);
    /* TLS (docs/tls.md): zeros without a certificate, so dashboards need no special case. */
    static const rc_tls_stats no_tls;
    const rc_tls_stats *ts = srv->tls ? rc_tls_ctx_stats(srv->tls) : &no_tls;
    metric(&t, "roomcast_tls_connections", "gauge", "Open connections that speak TLS.",
           srv->net.ntls);
    header(&t, "roomcast_tls_handshakes_total", "counter",
           "TLS handshakes, by result (failed: garbage, old protocol, no shared cipher, timeout).");
    rc_textbuf_printf(&t,
        "roomcast_tls_handshakes_total{result=\"ok\"} %llu\n"
        "roomcast_tls_handshakes_total{result=\"failed\"} %llu\n",
        (unsigned long long)ts->handshakes_ok, (unsigned long long)ts->handshakes_failed);
    header(&t, "roomcast_tls_reloads_total", "counter",
           "Certificate reloads on SIGHUP, by result (failed: the old certificate stays).");
    rc_textbuf_printf(&t,
        "roomcast_tls_reloads_total{result=\"ok\"} %llu\n"
        "roomcast_tls_reloads_total{result=\"failed\"} %llu\n",
        (unsigned long long)ts->reloads, (unsigned long long)ts->reload_failures);
    /* Tokens and permissions (docs/auth.md): zeros when tokens are off. */
    const rc_ident_stats *as = &srv->rooms.auth;
    metric(&t, "roomcast_authenticated_connections", "gauge",
           "Connections with a user (a valid token).", as->users);
    metric(&t, "roomcast_auth_pending_connections", "gauge",
           "Connections that must still send their auth message.", as->pending);
    header(&t, "roomcast_auth_total", "counter",
           "Token checks and missing tokens, by result (ok, or the reason for refusal).");
    for (int i = 0; i < RC_IDENT__RESULTS; i++)
        rc_textbuf_printf(&t, "roomcast_auth_total{result=\"%s\"} %llu\n",
                          rc_ident_result_name(i), (unsigned long long)as->result[i]);
    header(&t, "roomcast_auth_refreshes_total", "counter",
           "Auth messages of authenticated connections, by result.");
    rc_textbuf_printf(&t,
        "roomcast_auth_refreshes_total{result=\"ok\"} %llu\n"
        "roomcast_auth_refreshes_total{result=\"sub_changed\"} %llu\n",
        (unsigned long long)as->refreshed, (unsigned long long)as->sub_changed);
    metric(&t, "roomcast_auth_expired_total", "counter",
           "Connections closed when their token expired (4002).", as->expired);
    header(&t, "roomcast_permission_refusals_total", "counter",
           "Requests refused by the namespace rules or the token's grants, by action and code.");
    {
        static const char *const actions[] = {"join", "publish", "history", "recovery",
                                              "presence"};
        for (int a = 0; a <= RC_PERM_PRESENCE; a++)
            for (int r = RC_PERM_FORBIDDEN; r <= RC_PERM_ROOM_FULL; r++)
                rc_textbuf_printf(&t,
                                  "roomcast_permission_refusals_total{action=\"%s\",code=\"%s\"} "
                                  "%llu\n", actions[a], rc_perm_result_name((enum rc_perm_result)r),
                                  (unsigned long long)as->refused[a][r]);
    }
    metric(&t, "roomcast_http_requests_total", "counter", "HTTP requests answered.",
           m->http_requests);
    metric(&t, "roomcast_api_publishes_total", "counter",
           "Messages published through the HTTP API.", m->api_publishes);
    metric(&t, "roomcast_api_kicks_total", "counter", "Clients disconnected through the API.",
           m->api_kicks);
    metric(&t, "roomcast_api_room_closes_total", "counter", "Rooms closed through the API.",
           m->api_room_closes);
    metric(&t, "roomcast_loop_iterations_total", "counter", "Event-loop iterations.",
           rc_loop_iterations(srv->loop));

    header(&t, "roomcast_disconnects_total", "counter", "Clients disconnected by the server, by reason.");
    rc_textbuf_printf(&t,
        "roomcast_disconnects_total{reason=\"slow_consumer\"} %llu\n"
        "roomcast_disconnects_total{reason=\"ping_timeout\"} %llu\n"
        "roomcast_disconnects_total{reason=\"max_connections\"} %llu\n"
        "roomcast_disconnects_total{reason=\"handshake_timeout\"} %llu\n",
        (unsigned long long)s->disc_slow, (unsigned long long)s->disc_ping,
        (unsigned long long)s->disc_max_conn, (unsigned long long)s->disc_handshake);
    metric(&t, "roomcast_slow_consumer_disconnects_total", "counter",
           "Clients cut off for exceeding --max-pending.", s->disc_slow);
    /* The abuse limits (app/limits.h, docs/limits.md). */
    const rc_limits_stats *ls = &srv->limits;
    header(&t, "roomcast_connections_refused_total", "counter",
           "Connections refused by the abuse limits, by reason (origin: a WebSocket upgrade "
           "from a page not in --allowed-origins, 403; per_ip: over --connections-per-ip).");
    rc_textbuf_printf(&t,
        "roomcast_connections_refused_total{reason=\"origin\"} %llu\n"
        "roomcast_connections_refused_total{reason=\"per_ip\"} %llu\n",
        (unsigned long long)ls->refused_origin, (unsigned long long)ls->refused_per_ip);
    header(&t, "roomcast_rate_limited_total", "counter",
           "Client messages refused with rate_limited, by limit (messages: --rate-messages, "
           "bytes: --rate-bytes, joins: --join-rate).");
    for (int i = 0; i < RC_LIMIT__COUNT; i++)
        rc_textbuf_printf(&t, "roomcast_rate_limited_total{limit=\"%s\"} %llu\n",
                          rc_limit_names[i], (unsigned long long)ls->limited[i]);
    metric(&t, "roomcast_rate_limit_disconnects_total", "counter",
           "Clients closed 1008 for going on over a rate limit (--rate-close-after).",
           ls->closed);
    metric(&t, "roomcast_client_addresses", "gauge",
           "Client addresses (IPv4, IPv6 /64) with connections open.",
           rc_ipcount_addresses(&srv->net.peers));

    header(&t, "roomcast_errors_total", "counter", "Client faults, by kind (as in /api/stats).");
    for (int i = 0; i < RC_NERR__COUNT; i++)
        rc_textbuf_printf(&t, "roomcast_errors_total{kind=\"%s\"} %llu\n", rc_nerr_names[i],
                          (unsigned long long)s->err[i]);
    for (int i = 0; i < RC_RERR__COUNT; i++)
        rc_textbuf_printf(&t, "roomcast_errors_total{kind=\"%s\"} %llu\n", rc_rerr_names[i],
                          (unsigned long long)rs->err[i]);

    histogram(&t, "roomcast_broadcast_latency_seconds",
              "Receipt to write: from the loop wake-up that received a message (or produced a "
              "frame) to the last byte of its frame written to one recipient.", &m->delivery);
    histogram(&t, "roomcast_loop_iteration_seconds",
              "Busy time of one event-loop iteration (events, timers and the output flush).",
              &m->iteration);
    if (srv->rooms.cluster) redis_metrics(&t, srv->rooms.cluster);
    if (srv->rooms.cluster) presence_metrics(&t, &srv->rooms);
    if (srv->netsync) netsync_metrics(&t, srv->netsync, srv->nsws);
    if (srv->broker) rc_brkhttp_metrics(&t, srv->broker);
    *out = t.buf;
    return t.failed ? -1 : 0;
}
