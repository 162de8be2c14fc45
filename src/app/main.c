/* main.c — roomcast's entry point: read the flags and the config file, create the loop and
 * server, run until SIGTERM/SIGINT (SIGHUP reloads the configuration), then close every
 * client with 1001 and exit 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "app/auth.h"
#include "app/conffile.h"
#include "app/config.h"
#include "app/nsws.h"
#include "app/reload.h"
#include "app/server.h"
#include "app/services.h"
#include "broker/zbroker.h"
#include "core/log.h"
#include "core/loop.h"
#include "netsync/netsync.h"
#include "store/store.h"

static void on_stop_signal(rc_loop *loop, int signo, void *arg)
{
    rc_server *srv = arg;
    if (srv->shutting_down) {
        rc_loop_stop(loop); /* a second signal: stop waiting for clients */
        return;
    }
    rc_info("%s received", strsignal(signo));
    rc_server_shutdown(srv);
}

/* SIGHUP: reload the configuration and the files it names (app/reload.h); never exit (the
 * default action of SIGHUP would). */
static void on_reload_signal(rc_loop *loop, int signo, void *arg)
{
    rc_server *srv = arg;
    rc_info("%s received: reloading", strsignal(signo));
    rc_reload_run(srv->reload, srv);
}

/* start_broker maps the flags onto the broker's options and starts it (NULL: logged). */
static rc_zbroker *start_broker(rc_loop *loop, const rc_config *cfg, rc_zms_gate gate)
{
    rc_zbroker_opts o = {
        .bind = cfg->broker_bind ? cfg->broker_bind : cfg->bind,
        .worker_port = cfg->broker_worker_port,
        .client_port = cfg->broker_client_port,
        .max_message = cfg->broker_max_message,
        .at_most_once = cfg->broker_at_most_once,
        .engine = cfg->zmq_engine,
        .gate = gate, /* --connections-per-ip, --max-connections (native engine) */
    };
    brk_params_default(&o.params);
    o.params.default_service = cfg->broker_default_service;
    o.params.request_timeout_ns = cfg->request_timeout;
    o.params.service_grace_ns = cfg->service_grace;
    o.params.queue_max = cfg->service_queue;
    o.params.liveness = cfg->broker_liveness;
    o.params.max_body = cfg->broker_max_message;
    if (cfg->broker_heartbeat) /* else each protocol keeps the guide's interval */
        o.params.ppp_heartbeat_ns = o.params.mdp_heartbeat_ns = cfg->broker_heartbeat;
    return rc_zbroker_new(loop, &o);
}

int main(int argc, char **argv)
{
    /* Static: cfg's strings point into conf's pool for the life of the process, and a global
     * keeps that memory reachable for leak checkers on every way out of main. */
    static rc_conffile conf;
    rc_config cfg;
    rc_conffile_init(&conf);
    int r = rc_conffile_setup(&conf, &cfg, argc, argv, stderr);
    /* A bad command line exits 2, as before; a bad file 1, as --check-config does. */
    if (r != 0) return r > 0 ? 0 : r == -1 ? 2 : 1;
    if (cfg.print_config) {
        rc_conffile_print_example(stdout);
        return 0;
    }
    if (cfg.check_config) {
        rc_jwt_keys keys; /* the key files are part of what is checked */
        if (rc_auth_keys_load(&cfg, &keys, stderr) < 0) return 1;
        rc_jwt_keys_release(&keys);
        printf("%s: configuration is valid\n", cfg.config_file ? cfg.config_file : "flags");
        return 0;
    }
    rc_log_level = (enum rc_log_level)cfg.log_level;
    if (cfg.tool_list) return rc_store_tool_list(cfg.data_dir) == 0 ? 0 : 1;
    if (cfg.tool_dump) return rc_store_tool_dump(cfg.data_dir, cfg.tool_dump) == 0 ? 0 : 1;
    signal(SIGPIPE, SIG_IGN);

    rc_loop *loop = rc_loop_new();
    if (!loop) {
        rc_error("cannot create the event loop: %s", strerror(errno));
        return 1;
    }
    rc_server *srv = rc_server_new(loop, &cfg);
    if (!srv) {
        rc_loop_free(loop);
        return 1;
    }
    static rc_reload reload; /* static for the same reason as conf */
    rc_reload_init(&reload, argc, argv);
    srv->reload = &reload;
    /* The namespace rules of the config file (open rules without one). The rooms read them
     * through this pointer at each join and publish, so a reload can swap it. */
    rc_rooms_set_perm(&srv->rooms, &conf.rules);
    if (rc_loop_signal(loop, SIGTERM, on_stop_signal, srv) < 0 ||
        rc_loop_signal(loop, SIGINT, on_stop_signal, srv) < 0 ||
        rc_loop_signal(loop, SIGHUP, on_reload_signal, srv) < 0) {
        rc_error("cannot route signals: %s", strerror(errno));
        rc_server_free(srv);
        rc_loop_free(loop);
        return 1;
    }
    /* NetSync after the signals: libzmq starts its I/O thread here, and that thread must
     * inherit the blocked SIGTERM/SIGINT mask or it could take the signal's default action. */
    rc_netsync *ns = NULL;
    rc_netsync_opts nso;
    rc_netsync_opts_default(&nso);
    if (cfg.netsync) {
        nso.bind = cfg.netsync_bind ? cfg.netsync_bind : cfg.bind;
        nso.router_port = cfg.netsync_router_port;
        nso.pose_port = cfg.netsync_pose_port;
        nso.tcp_discovery = (enum rc_netsync_tcp_disc)cfg.netsync_tcp_discovery;
        nso.engine = cfg.zmq_engine;
        nso.gate = rc_limits_zmq_gate(srv); /* --connections-per-ip, --max-connections */
        nso.unicast_max_bytes = cfg.netsync_max_pending;
        /* STYLY-NETSYNC3 announces the dedicated REST port when there is one, else the HTTP
         * port (which serves the same bridge routes under /v1/rooms/...). */
        nso.rest_port = cfg.netsync_rest_port >= 0 ? srv->rest.port : srv->http.port;
        nso.pub_port = cfg.netsync_pub_port;
        nso.discovery_port = cfg.netsync_discovery_port;
        nso.client_timeout_ns = cfg.netsync_client_timeout;
        nso.v8_client_timeout_ns = cfg.netsync_v8_client_timeout;
        nso.v8_bcast_ns = cfg.netsync_v8_pose_tick;
        nso.v8_idle_ns = cfg.netsync_v8_idle;
        nso.v8_mapping_ns = cfg.netsync_v8_mapping;
        nso.v8_nv_flush_ns = cfg.netsync_v8_nv_flush;
        nso.tick_ns = cfg.netsync_tick;
        nso.max_message_size = cfg.netsync_max_message_size;
        if (!(ns = rc_netsync_new(loop, &nso))) {
            rc_server_free(srv);
            rc_loop_free(loop);
            return 1;
        }
        srv->netsync = ns; /* for the HTTP routes (src/app/nshttp.c) and /metrics */
        if (!(srv->nsws = rc_nsws_new(srv, ns))) {
            rc_error("out of memory");
            rc_netsync_free(ns);
            rc_server_free(srv);
            rc_loop_free(loop);
            return 1;
        }
    }
    /* The broker after the signals too (its own ZeroMQ context and I/O thread). */
    rc_zbroker *zb = NULL;
    if (cfg.broker_worker_port >= 0) {
        if (!(zb = start_broker(loop, &cfg, rc_limits_zmq_gate(srv)))) {
            rc_nsws *w = srv->nsws;
            srv->nsws = NULL;
            rc_nsws_free(w);
            srv->netsync = NULL;
            rc_netsync_free(ns);
            rc_server_free(srv);
            rc_loop_free(loop);
            return 1;
        }
        srv->broker = zb; /* for GET /api/services and /metrics */
        rc_services_attach(srv->services); /* at-most-once marks, room services' on_moved */
    } else if (cfg.broker_client_port >= 0) {
        rc_warn("--broker-client-port without --broker-worker-port: the broker stays off");
    }
    /* Tests and scripts wait for the "listening on http" line (and read the ports from these
     * lines with port 0), so it comes last. */
    if (cfg.tcp_port >= 0)
        fprintf(stderr, "roomcast: tcp listening on %s:%u\n", cfg.bind, srv->tcp.port);
    if (cfg.tcp_tls_port >= 0)
        fprintf(stderr, "roomcast: tcp tls listening on %s:%u\n", cfg.bind, srv->tcps.port);
    if (cfg.chat_port >= 0)
        fprintf(stderr, "roomcast: chat listening on %s:%u (room '%s')\n", cfg.bind,
                srv->chat.port, cfg.chat_room);
    if (ns && cfg.netsync_rest_port >= 0)
        fprintf(stderr, "roomcast: netsync rest http://%s:%u/\n", cfg.bind, srv->rest.port);
    if (cfg.tls_port >= 0)
        fprintf(stderr, "roomcast: tls listening on https://%s:%u/\n", cfg.bind, srv->https.port);
    fprintf(stderr, "roomcast: listening on %s://%s:%u/\n", srv->http.tls ? "https" : "http",
            cfg.bind, srv->http.port);
    fflush(stderr);
    if (ns) {
        /* pose last: scripts match the line's start, as before protocol 8 */
        fprintf(stderr,
                "roomcast: netsync router tcp://%s:%u pub tcp://%s:%u discovery %s:%u "
                "pose tcp://%s:%u\n",
                nso.bind, rc_netsync_router_port(ns), nso.bind, rc_netsync_pub_port(ns),
                nso.bind, rc_netsync_discovery_port(ns), nso.bind, rc_netsync_pose_port(ns));
        fflush(stderr);
    }

    if (zb) {
        fprintf(stderr, "roomcast: broker workers %s clients %s\n",
                rc_zbroker_worker_endpoint(zb),
                rc_zbroker_client_port(zb) ? rc_zbroker_client_endpoint(zb) : "off");
        fflush(stderr);
    }

    r = rc_loop_run(loop);
    if (r < 0) rc_error("event loop failed: %s", strerror(-r));
    rc_nsws *nsws = srv->nsws;
    srv->nsws = NULL; /* connections closed from here on have nobody to tell */
    rc_nsws_free(nsws);
    srv->netsync = NULL;
    rc_netsync_free(ns);
    srv->broker = NULL;
    rc_zbroker_free(zb);
    rc_server_free(srv);
    rc_reload_release(&reload);
    rc_loop_free(loop);
    rc_info("bye");
    return r < 0 ? 1 : 0;
}
