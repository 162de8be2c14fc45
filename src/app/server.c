/* server.c — listener, flush/free step, shutdown and counters; see server.h. */
#include "app/server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/log.h"
#include "transport/sock.h"
#include "codec/wsframe.h"
#include "transport/http.h"

/* Descriptors kept back from --max-connections for the listener, epoll, signalfd, the
 * reserve descriptor, logs and what later features open. */
#define RC_FD_HEADROOM 32

void rc_server_flush_later(rc_server *srv, rc_conn *c)
{
    if (c->in_flush) return;
    c->in_flush = true;
    c->next_flush = srv->flush_head;
    srv->flush_head = c;
}

/* Before-sleep: write what this iteration queued, then free what it closed. Flushing here,
 * once per iteration, is what turns many small frames for one client into one sendmsg(). */
static void before_sleep(rc_loop *loop, void *arg)
{
    rc_server *srv = arg;
    if (srv->flush_head && !srv->cfg.no_latency_metrics) rc_metrics_flush_begin(srv);
    while (srv->flush_head) {
        rc_conn *c = srv->flush_head;
        srv->flush_head = c->next_flush;
        c->in_flush = false;
        c->next_flush = NULL;
        rc_conn_flush(c);
    }
    while (srv->free_head) {
        rc_conn *c = srv->free_head;
        srv->free_head = c->next;
        rc_conn_free(c);
    }
    /* Hand this iteration's log records to the writer: one wake-up per iteration, not per
     * message. */
    if (srv->store) rc_store_kick(srv->store);
    if (srv->shutting_down && srv->nconns == 0) rc_loop_stop(loop);
}

static void on_shutdown_timer(rc_loop *loop, rc_timer *t);

static void on_sweep_timer(rc_loop *loop, rc_timer *t)
{
    rc_server *srv = (rc_server *)((char *)t - offsetof(rc_server, sweep_timer));
    rc_rooms_sweep(srv);
    rc_timer_start(loop, t, rc_loop_now(loop) + RC_NS_PER_SEC);
}

static void on_durable(void *arg)
{
    rc_server *srv = arg;
    rc_conn_acks_durable(srv, rc_store_durable(srv->store));
}

/* ---- restoring rooms from the durable log ------------------------------------------------ */

static void *restore_room(void *arg, const char *name, size_t len, const char *epoch)
{
    return rc_room_restore(arg, name, len, epoch);
}

static void restore_record(void *arg, void *vroom, uint64_t msg_id, uint64_t time_ms,
                           uint8_t opcode, const char *payload, size_t len)
{
    rc_server *srv = arg;
    rc_room *room = vroom;
    rc_msg *m = rc_frame_new(opcode, payload, len);
    if (!m) return;
    rc_retention r = rc_room_retention(srv);
    rc_history_push(&room->hist, &r, msg_id, time_ms, m);
    rc_msg_unref(m);
    room->last_msg_id = msg_id;
}

static const char *restore_done(void *arg, void *vroom, rc_store_room *sr, bool lost)
{
    rc_server *srv = arg;
    rc_room *room = vroom;
    room->store = sr;
    if (lost) {
        /* Messages may be missing at the end of the log (crash, repaired tail): ids go on
         * after the last one kept, under a new epoch, so no client mistakes the stream for
         * the one it saw. */
        srv->rooms_repaired++;
        rc_epoch_new(room->epoch);
    }
    if (srv->cfg.history_age) {
        rc_retention r = rc_room_retention(srv);
        rc_history_expire(&room->hist, &r, rc_wall_ms());
    }
    return room->epoch;
}

static void on_accept_timer(rc_loop *loop, rc_timer *t)
{
    rc_server *srv = (rc_server *)((char *)t - offsetof(rc_server, accept_timer));
    if (!srv->shutting_down) rc_io_set(loop, &srv->listen_io, RC_EV_READ);
}

/* Descriptor exhaustion: the pending connection would keep the level-triggered listener
 * ready forever. Give back the reserve descriptor, accept and close the connection (the
 * client sees a close instead of hanging), take the reserve again, and pause accepting
 * briefly so the loop cannot spin. */
static void shed_connection(rc_server *srv)
{
    if (srv->reserve_fd >= 0) {
        close(srv->reserve_fd);
        srv->reserve_fd = -1;
        int fd = rc_sock_accept(srv->listen_io.fd);
        if (fd >= 0) close(fd);
        srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    rc_io_set(srv->loop, &srv->listen_io, 0);
    rc_timer_start(srv->loop, &srv->accept_timer, rc_loop_now(srv->loop) + 100 * RC_NS_PER_MS);
}

static void on_listen(rc_loop *loop, rc_io *io, uint32_t events)
{
    rc_server *srv = (rc_server *)((char *)io - offsetof(rc_server, listen_io));
    /* A bounded batch per wake-up keeps accepting from starving established clients. */
    for (int i = 0; i < 64; i++) {
        int fd = rc_sock_accept(io->fd);
        if (fd < 0) {
            if (fd == -EAGAIN || fd == -EWOULDBLOCK) return;
            srv->stats.accept_errors++;
            if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
                rc_warn("cannot accept: %s (%u connections open)", strerror(-fd), srv->nconns);
                shed_connection(srv);
            } else {
                rc_warn("cannot accept: %s", strerror(-fd));
            }
            return;
        }
        rc_conn *c = rc_conn_accept(srv, fd);
        if (!c) continue;
        if (srv->nconns > srv->max_connections || srv->shutting_down) {
            srv->stats.disc_max_conn++;
            rc_http_reject(c, 503, srv->shutting_down ? "shutting down" : "too many connections");
        }
    }
}

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
    rc_timer_init(&srv->accept_timer, on_accept_timer);
    rc_timer_init(&srv->shutdown_timer, on_shutdown_timer);
    rc_timer_init(&srv->sweep_timer, on_sweep_timer);
    srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int fd = rc_sock_listen(cfg->bind, cfg->port, 4096, &srv->port);
    if (fd < 0) {
        rc_error("cannot listen on '%s:%u': %s", cfg->bind, cfg->port, strerror(-fd));
        goto err;
    }
    rc_io_init(&srv->listen_io, fd, on_listen);
    if (rc_io_start(loop, &srv->listen_io, RC_EV_READ) < 0) {
        close(fd);
        rc_error("cannot watch the listening socket: %s", strerror(errno));
        goto err;
    }
    if (cfg->data_dir) {
        rc_store_loader loader = {.room = restore_room, .record = restore_record,
                                  .done = restore_done, .arg = srv};
        size_t seg = cfg->history_bytes / 4;
        if (seg > (64u << 20)) seg = 64u << 20;
        if (seg < (64u << 10)) seg = 64u << 10;
        srv->store = rc_store_open(loop, cfg->data_dir, (enum rc_fsync)cfg->fsync_mode, seg,
                                   &loader, on_durable, srv);
        if (!srv->store) goto err_listen;
    }
    rc_timer_start(loop, &srv->sweep_timer, rc_loop_now(loop) + RC_NS_PER_SEC);
    rc_loop_set_before_sleep(loop, before_sleep, srv);
    if (!cfg->no_latency_metrics) rc_metrics_start(srv);
    return srv;
err_listen:
    rc_io_stop(loop, &srv->listen_io);
    close(srv->listen_io.fd);
    rc_rooms_release(&srv->rooms);
err:
    if (srv->reserve_fd >= 0) close(srv->reserve_fd);
    free(srv);
    return NULL;
}

void rc_server_free(rc_server *srv)
{
    if (!srv) return;
    while (srv->conns) rc_conn_close(srv->conns);
    before_sleep(srv->loop, srv);
    rc_io_stop(srv->loop, &srv->listen_io);
    close(srv->listen_io.fd);
    rc_timer_stop(srv->loop, &srv->accept_timer);
    rc_timer_stop(srv->loop, &srv->shutdown_timer);
    rc_timer_stop(srv->loop, &srv->sweep_timer);
    if (srv->reserve_fd >= 0) close(srv->reserve_fd);
    rc_store_close(srv->store); /* flushes and syncs the log, marks it clean */
    rc_rooms_release(&srv->rooms);
    free(srv);
}

static void on_shutdown_timer(rc_loop *loop, rc_timer *t)
{
    rc_loop_stop(loop); /* clients that did not finish closing are cut by rc_server_free */
}

void rc_server_shutdown(rc_server *srv)
{
    if (srv->shutting_down) return;
    srv->shutting_down = true;
    rc_info("shutting down: closing %u connections", srv->nconns);
    rc_io_set(srv->loop, &srv->listen_io, 0);
    rc_conn *next;
    for (rc_conn *c = srv->conns; c; c = next) {
        next = c->next;
        if (c->state == RC_CONN_WS) rc_conn_close_ws(c, RC_WS_CLOSE_GOING_AWAY, "server shutdown", false);
        else if (c->state == RC_CONN_HTTP && c->out.count == 0) rc_conn_close(c);
    }
    rc_timer_start(srv->loop, &srv->shutdown_timer,
                   rc_loop_now(srv->loop) + srv->cfg.close_timeout);
}

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

size_t rc_server_stats_json(const rc_server *srv, char *out, size_t cap)
{
    const rc_stats *s = &srv->stats;
    size_t n = 0;
#define OUT(...) appendf(out, cap, &n, __VA_ARGS__)
    OUT("{\"version\":\"%s\",\"uptime_s\":%.3f,\"connections\":%u,\"max_connections\":%u,"
        "\"connections_total\":%llu,\"rooms\":%u,\"messages_in\":%llu,\"messages_out\":%llu,"
        "\"bytes_in\":%llu,\"bytes_out\":%llu,\"broadcasts\":%llu,\"accept_errors\":%llu,"
        "\"loop_iterations\":%llu,",
        RC_VERSION, (double)(rc_loop_now(srv->loop) - srv->started) / 1e9, srv->nconns,
        srv->max_connections, (unsigned long long)s->connections_total, srv->rooms.count,
        (unsigned long long)s->messages_in, (unsigned long long)s->messages_out,
        (unsigned long long)s->bytes_in, (unsigned long long)s->bytes_out,
        (unsigned long long)s->broadcasts, (unsigned long long)s->accept_errors,
        (unsigned long long)rc_loop_iterations(srv->loop));
    OUT("\"disconnects\":{\"slow_consumer\":%llu,\"ping_timeout\":%llu,\"max_connections\":%llu,"
        "\"handshake_timeout\":%llu},\"errors\":{",
        (unsigned long long)s->disc_slow, (unsigned long long)s->disc_ping,
        (unsigned long long)s->disc_max_conn, (unsigned long long)s->disc_handshake);
    for (int i = 0; i < RC_ERR__COUNT; i++)
        OUT("%s\"%s\":%llu", i ? "," : "", rc_err_names[i], (unsigned long long)s->err[i]);
    OUT("},\"history\":{\"size\":%u,\"bytes\":%zu,\"duplicates\":%llu,\"recovered\":%llu,"
        "\"not_recovered\":%llu}",
        srv->cfg.history_size, srv->cfg.history_bytes, (unsigned long long)s->duplicates,
        (unsigned long long)s->recovered, (unsigned long long)s->not_recovered);
    if (srv->store) {
        rc_store_status st;
        rc_store_status_get(srv->store, &st);
        OUT(",\"storage\":{\"enabled\":true,\"ok\":%s,\"error\":\"%s\",\"fsync\":\"%s\","
            "\"records\":%llu,\"bytes_written\":%llu,\"bytes_dropped\":%llu,\"fsyncs\":%llu,"
            "\"backlog\":%zu,\"repaired_logs\":%llu,\"rooms_new_epoch\":%llu}",
            st.ok ? "true" : "false", st.error ? strerror(st.error) : "",
            rc_fsync_name(rc_store_mode(srv->store)), (unsigned long long)st.records,
            (unsigned long long)st.bytes_written, (unsigned long long)st.bytes_dropped,
            (unsigned long long)st.fsyncs, st.backlog, (unsigned long long)st.repaired,
            (unsigned long long)srv->rooms_repaired);
    } else {
        OUT(",\"storage\":{\"enabled\":false}");
    }
    OUT("}\n");
#undef OUT
    return n;
}
