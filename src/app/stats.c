/* stats.c — GET /api/stats; see stats.h. */
#include "app/stats.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "app/reload.h"
#include "app/server.h"
#include "codec/json.h"
#include "rooms/wire.h"

static void appendf(char *out, size_t cap, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Appends to out[*n..cap), truncating (never overflowing) when full. */
static void appendf(char *out, size_t cap, size_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(out + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (k > 0) *n += (size_t)k < cap - *n ? (size_t)k : cap - *n - 1;
}

const char *const rc_transport_names[RC_TRANSPORTS] = {"http", "ws", "tcp", "chat"};

/* A walk over the connections: counting them by protocol as they come and go would cost every
 * connection, and this runs only when someone asks. */
void rc_server_count_transports(const rc_server *srv, uint32_t out[RC_TRANSPORTS])
{
    memset(out, 0, RC_TRANSPORTS * sizeof(*out));
    for (const rc_conn *c = srv->net.conns; c; c = c->next)
        for (int i = 0; i < RC_TRANSPORTS; i++)
            if (strcmp(c->proto->name, rc_transport_names[i]) == 0) out[i]++;
}

size_t rc_server_stats_json(const rc_server *srv, char *out, size_t cap)
{
    const rc_net_stats *ns = &srv->net.stats;
    const rc_rooms_stats *rs = &srv->rooms.stats;
    size_t n = 0;
#define OUT(...) appendf(out, cap, &n, __VA_ARGS__)
    OUT("{\"version\":\"%s\",\"uptime_s\":%.3f,\"connections\":%u,\"max_connections\":%u,"
        "\"connections_total\":%llu,\"rooms\":%u,\"messages_in\":%llu,\"messages_out\":%llu,"
        "\"bytes_in\":%llu,\"bytes_out\":%llu,\"broadcasts\":%llu,\"accept_errors\":%llu,"
        "\"loop_iterations\":%llu,",
        RC_VERSION, (double)(rc_loop_now(srv->loop) - srv->started) / 1e9, srv->net.nconns,
        srv->max_connections, (unsigned long long)ns->connections_total,
        rc_rooms_count(&srv->rooms), (unsigned long long)ns->messages_in,
        (unsigned long long)rs->deliveries, (unsigned long long)ns->bytes_in,
        (unsigned long long)ns->bytes_out, (unsigned long long)rs->broadcasts,
        (unsigned long long)ns->accept_errors, (unsigned long long)rc_loop_iterations(srv->loop));
    uint32_t by[RC_TRANSPORTS];
    rc_server_count_transports(srv, by);
    OUT("\"connections_by_transport\":{");
    for (int i = 0; i < RC_TRANSPORTS; i++)
        OUT("%s\"%s\":%u", i ? "," : "", rc_transport_names[i], by[i]);
    OUT("},");
    OUT("\"disconnects\":{\"slow_consumer\":%llu,\"ping_timeout\":%llu,\"max_connections\":%llu,"
        "\"handshake_timeout\":%llu},\"errors\":{",
        (unsigned long long)ns->disc_slow, (unsigned long long)ns->disc_ping,
        (unsigned long long)ns->disc_max_conn, (unsigned long long)ns->disc_handshake);
    for (int i = 0; i < RC_NERR__COUNT; i++)
        OUT("%s\"%s\":%llu", i ? "," : "", rc_nerr_names[i], (unsigned long long)ns->err[i]);
    for (int i = 0; i < RC_RERR__COUNT; i++)
        OUT(",\"%s\":%llu", rc_rerr_names[i], (unsigned long long)rs->err[i]);
    OUT("},\"history\":{\"size\":%u,\"bytes\":%zu,\"duplicates\":%llu,\"recovered\":%llu,"
        "\"not_recovered\":%llu,\"memory\":%zu,\"memory_limit\":%zu,\"evicted\":%llu,"
        "\"evicted_bytes\":%llu}",
        srv->cfg.history_size, srv->cfg.history_bytes, (unsigned long long)rs->duplicates,
        (unsigned long long)rs->recovered, (unsigned long long)rs->not_recovered,
        srv->rooms.hist_bytes, srv->cfg.history_memory, (unsigned long long)rs->evicted,
        (unsigned long long)rs->evicted_bytes);
    const rc_wire_deflate_stats *dz = rc_wire_deflate_stats_get();
    OUT(",\"deflate\":{\"messages\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu}",
        (unsigned long long)dz->messages, (unsigned long long)dz->bytes_in,
        (unsigned long long)dz->bytes_out);
    const rc_sessions *ss = &srv->rooms.sessions;
    OUT(",\"sessions\":{\"remembered\":%u,\"idle\":%u,\"reclaimed\":%llu,\"replaced\":%llu,"
        "\"refused_banned\":%llu},\"state\":{\"memory\":%zu,\"memory_limit\":%zu},"
        "\"rooms_features\":{\"history_joins\":%llu,"
        "\"state_joins\":%llu,\"presence_events\":%llu,\"conflated\":%llu}",
        ss->table.count, ss->nidle, (unsigned long long)ss->reclaimed,
        (unsigned long long)ss->replaced, (unsigned long long)ss->refused,
        srv->rooms.state_bytes, srv->cfg.state_memory,
        (unsigned long long)rs->history_joins, (unsigned long long)rs->state_joins,
        (unsigned long long)rs->presence_events, (unsigned long long)rs->conflated);
    const rc_limits_stats *ls = &srv->limits;
    OUT(",\"limits\":{\"refused_origin\":%llu,\"refused_per_ip\":%llu,\"rate_limited\":{",
        (unsigned long long)ls->refused_origin, (unsigned long long)ls->refused_per_ip);
    for (int i = 0; i < RC_LIMIT__COUNT; i++)
        OUT("%s\"%s\":%llu", i ? "," : "", rc_limit_names[i], (unsigned long long)ls->limited[i]);
    OUT("},\"rate_limit_closes\":%llu,\"addresses\":%u}", (unsigned long long)ls->closed,
        rc_ipcount_addresses(&srv->net.peers));
    /* Tokens and permissions (docs/auth.md): zeros and "keys":0 when tokens are off. */
    const rc_ident_stats *as = &srv->rooms.auth;
    OUT(",\"auth\":{\"keys\":%zu,\"users\":%u,\"pending\":%u,\"refreshed\":%llu,"
        "\"sub_changed\":%llu,\"expired\":%llu,\"results\":{",
        srv->jwt ? srv->jwt->n : 0, as->users, as->pending, (unsigned long long)as->refreshed,
        (unsigned long long)as->sub_changed, (unsigned long long)as->expired);
    for (int i = 0; i < RC_IDENT__RESULTS; i++)
        OUT("%s\"%s\":%llu", i ? "," : "", rc_ident_result_name(i),
            (unsigned long long)as->result[i]);
    OUT("},\"refused\":{");
    static const char *const actions[] = {"join", "publish", "history", "recovery", "presence"};
    for (int a = 0; a <= RC_PERM_PRESENCE; a++) {
        OUT("%s\"%s\":{", a ? "," : "", actions[a]);
        for (int r = RC_PERM_FORBIDDEN; r <= RC_PERM_ROOM_FULL; r++)
            OUT("%s\"%s\":%llu", r > RC_PERM_FORBIDDEN ? "," : "",
                rc_perm_result_name((enum rc_perm_result)r), (unsigned long long)as->refused[a][r]);
        OUT("}");
    }
    OUT("}}");
    rc_store *store = srv->rooms.store;
    if (store) {
        rc_store_status st;
        rc_store_status_get(store, &st);
        OUT(",\"storage\":{\"enabled\":true,\"ok\":%s,\"error\":\"%s\",\"fsync\":\"%s\","
            "\"records\":%llu,\"bytes_written\":%llu,\"bytes_dropped\":%llu,\"fsyncs\":%llu,"
            "\"backlog\":%zu,\"repaired_logs\":%llu,\"rooms_new_epoch\":%llu,"
            "\"journal_syncs\":%llu,\"held\":%llu}",
            st.ok ? "true" : "false", st.error ? strerror(st.error) : "",
            rc_fsync_name(rc_store_mode(store)), (unsigned long long)st.records,
            (unsigned long long)st.bytes_written, (unsigned long long)st.bytes_dropped,
            (unsigned long long)st.fsyncs, st.backlog, (unsigned long long)st.repaired,
            (unsigned long long)rs->repaired, (unsigned long long)st.journal_syncs,
            (unsigned long long)rs->held);
    } else {
        OUT(",\"storage\":{\"enabled\":false}");
    }
    const rc_reload *rl = srv->reload;
    const char *cf = srv->cfg.config_file;
    char esc[rc_json_escape_max(1024)];
    size_t cfn = cf ? strlen(cf) : 0;
    if (cf && cfn <= 1024) esc[rc_json_escape(cf, cfn, esc)] = '\0';
    else snprintf(esc, sizeof esc, "%s", cf ? "\"(path too long)\"" : "null");
    OUT(",\"config\":{\"file\":%s", esc);
    OUT(",\"reloads\":%llu,\"reload_failures\":%llu,\"restart_needed\":\"%s\"}",
        (unsigned long long)(rl ? rl->ok : 0), (unsigned long long)(rl ? rl->failed : 0),
        rl ? rl->restart_list : "");
    OUT("}\n");
#undef OUT
    return n;
}
