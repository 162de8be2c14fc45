/* main.c — roomcast-bench: command line and scenario dispatch.
 *
 *   roomcast-bench SCENARIO --port N [--host 127.0.0.1] [--server-pid PID] [--label NAME]
 *                  [scenario options]
 *
 * Each run prints one JSON line on stdout and a table on stderr, and exits 0 only if the run
 * completed with every correctness counter at zero (timings are never judged here).
 */
#include "bench.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/prctl.h>

static void usage(FILE *f)
{
    fputs("usage: roomcast-bench fanout|fanout-tcp|fanout-mixed|fanout-framed|pingpong|idle|churn|"
          "slow|join-cost|tls-handshakes\n"
          "                      --port N [--tcp-port N] [options]\n"
          "common:  --host ADDR (127.0.0.1)  --server-pid PID  --label NAME  --quiet\n"
          "         --port P1,P2 and --server-pid PID1,PID2: a server of several nodes; member\n"
          "         k of a room connects to the k-th port (mod their number), the nodes' CPU\n"
          "         is summed (rooms engine only)\n"
          "         --redis-pid PID (the redis-server behind the nodes: its CPU is reported\n"
          "         apart, per delivery and per published message)\n"
          "         --tls (every connection over TLS: --port and --tcp-port are TLS ports)\n"
          "         --deflate (WebSocket clients offer permessage-deflate and inflate)\n"
          "         --game-json (publishes carry pose-like JSON, not only padding)\n"
          "         --tls-ca FILE (verify the server; default: no verification)\n"
          "         --tls-version 1.2|1.3 (default: either, the server picks)\n"
          "         --spin (busy-poll instead of sleeping: servers never pay to wake us)\n"
          "fanout:  --rooms R (100) --clients C (10) --size BYTES (100) --window W (4)\n"
          "         --rate HZ (0 = flat out) --messages M (0 = until --duration)\n"
          "         --duration S (3) --drain S (10)\n"
          "         --transport LIST (ws): member k of a room uses the k-th (mod its length) of\n"
          "         ws, line, framed, sio (line and framed: the raw TCP port, docs/tcp.md, which\n"
          "         --tcp-port names; sio: Socket.IO v5 over Engine.IO v4 websocket, the room\n"
          "         protocol's objects as \"m\" events, for bench/peers/sio_server.mjs, whose\n"
          "         deliveries carry no msg_id: per-sender order, duplicates and losses are\n"
          "         checked, not one order per room); fanout-tcp = fanout --transport line, fanout-mixed =\n"
          "         --transport ws,line (half of each room on each), fanout-framed = framed;\n"
          "         pingpong and slow take --transport too\n"
          "         issue 12 (docs/protocol.md): --presence all|half|none (members join with\n"
          "         \"presence\":true: all, every second one, none), --conflate all|half|none\n"
          "         (\"conflate\":true likewise), --state-keys N (publishes carry\n"
          "         \"state_key\":\"k<slot mod N>\"; N >= clients: one key per sender),\n"
          "         --keys-per-sender P (\"k<slot mod N>.<q mod P>\": with P >= the window no\n"
          "         two messages of a key are in flight, so readers that keep up never conflate)\n"
          "pingpong: fanout with one room of one client and a window of 1 (--duration 3)\n"
          "slow:    one busy room (--clients 10 --size 1000 --window 4 --duration 2) measured\n"
          "         without, then with, one extra member that never reads (--stuck-rcvbuf 4096)\n"
          "idle:    --conns N (0 = as many as RLIMIT_NOFILE allows) --room-size 20 --sample 100\n"
          "         --idle-time S (6: longer than the default ping interval)\n"
          "churn:   --concurrency K (64) --duration S (3)\n"
          "join-cost: one room of --clients (1000) members, each publishing --messages (1) with\n"
          "         --state-keys (100), then --joiners (4) extra clients join and leave it again\n"
          "         for --mode-time S (2) per mode of --modes (plain,history:100,history:1000,\n"
          "         state,presence; '+' combines: history:100+state); --presence etc. as above\n"
          "         apply to the members\n"
          "tls-handshakes: --concurrency K (16) connections doing full TLS handshakes to --port\n"
          "         (no resumption), close_notify, wait for the server's end, again, for\n"
          "         --duration S (3); reports server CPU per handshake\n",
          f);
}

static double num_arg(const char *opt, const char *v)
{
    char *end;
    errno = 0;
    double d = v ? strtod(v, &end) : 0;
    if (!v || errno || *end || d < 0) {
        fprintf(stderr, "roomcast-bench: %s needs a non-negative number, got '%s'\n", opt,
                v ? v : "");
        exit(2);
    }
    return d;
}

/* all|half|none -> 1, 2, 0 (member k takes part when k % every == every - 1). */
static uint32_t every_arg(const char *opt, const char *v)
{
    if (!strcmp(v, "all"))
        return 1;
    if (!strcmp(v, "half"))
        return 2;
    if (!strcmp(v, "none"))
        return 0;
    fprintf(stderr, "roomcast-bench: %s wants all, half or none, got '%s'\n", opt, v);
    exit(2);
}

/* "A,B,C" -> up to max non-negative integers in v[]; their number, or -1 after saying why. */
static int num_list(const char *opt, const char *list, long *v, int max)
{
    int n = 0;
    const char *p = list;
    for (;;) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < 0 || (*end && *end != ',') || n == max) {
            fprintf(stderr, "roomcast-bench: %s wants up to %d numbers, comma-separated; got "
                            "'%s'\n", opt, max, list);
            return -1;
        }
        v[n++] = x;
        if (!*end)
            return n;
        p = end + 1;
    }
}

/* "ws,line" -> o->transports; 0, or -1 after saying what is wrong. */
static int parse_transports(const char *list, struct rb_opts *o)
{
    o->ntransports = 0;
    const char *p = list;
    for (;;) {
        size_t n = strcspn(p, ",");
        enum rb_transport tr = RB_TR__COUNT;
        for (int t = 0; t < RB_TR__COUNT; t++)
            if (n == strlen(rb_transport_name(t)) && !memcmp(p, rb_transport_name(t), n))
                tr = t;
        if (n == 3 && !memcmp(p, "tcp", 3))
            tr = RB_TR_LINE;   /* "tcp" alone means the TCP port's default, line mode */
        size_t cap = sizeof(o->transports) / sizeof(o->transports[0]);
        if (tr == RB_TR__COUNT || o->ntransports == cap) {
            fprintf(stderr, "roomcast-bench: --transport wants up to %zu of ws, line (tcp), "
                            "framed, sio, comma-separated; got '%s'\n", cap, list);
            return -1;
        }
        o->transports[o->ntransports++] = tr;
        if (!p[n])
            return 0;
        p += n + 1;
    }
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sc = argv[1];
    const char *transports = "ws";
    if (!strcmp(sc, "fanout-tcp"))
        transports = "line";
    else if (!strcmp(sc, "fanout-mixed"))
        transports = "ws,line";
    else if (!strcmp(sc, "fanout-framed"))
        transports = "framed";
    bool fanout_sc = !strncmp(sc, "fanout", 6) && (!sc[6] || strcmp(transports, "ws"));
    bool joincost_sc = !strcmp(sc, "join-cost");
    bool rooms_sc = fanout_sc || !strcmp(sc, "pingpong") || !strcmp(sc, "slow") || joincost_sc;
    bool hs_sc = !strcmp(sc, "tls-handshakes");
    if (!rooms_sc && !hs_sc && strcmp(sc, "idle") && strcmp(sc, "churn")) {
        fprintf(stderr, "roomcast-bench: unknown scenario '%s'\n", sc);
        usage(stderr);
        return 2;
    }

    struct rb_opts o = {0};
    const char *host = "127.0.0.1";
    const char *tls_ca = NULL, *tls_version = NULL;
    bool tls = false;
    long port = 0, tcp_port = 0, ports[RB_MAX_TARGETS] = {0}, pids[RB_MAX_TARGETS] = {0};
    int nports = 0, npids = 0, redis_pid = 0;
    o.server = "server";
    o.rooms = 100;
    o.clients = 10;
    o.size = 100;
    o.window = 4;
    o.duration = 3;
    o.drain = 10;
    o.room_size = 20;
    o.sample = 100;
    o.idle_time = 6;
    o.stuck_rcvbuf = 4096;
    if (!strcmp(sc, "pingpong")) {
        o.rooms = o.clients = o.window = 1;
    } else if (!strcmp(sc, "slow")) {
        o.rooms = 1;
        o.size = 1000;
        o.duration = 2;
        o.drain = 15;
    } else if (!strcmp(sc, "churn")) {
        o.concurrency = 64;
    } else if (joincost_sc) {
        o.rooms = 1;
        o.clients = 1000;
        o.messages = 1;
        o.window = 1;
        o.duration = 0;
        o.drain = 30;
        o.state_keys = 100;
    }
    o.modes = "plain,history:100,history:1000,state,presence";
    o.joiners = 4;
    o.mode_time = 2;

    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quiet")) {
            o.quiet = true;
            continue;
        }
        if (!strcmp(a, "--spin")) {
            rb_spin = true;
            continue;
        }
        if (!strcmp(a, "--tls")) {
            tls = true;
            continue;
        }
        if (!strcmp(a, "--deflate")) {
            rb_deflate = true;
            continue;
        }
        if (!strcmp(a, "--game-json")) {
            rb_game_json = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "roomcast-bench: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) {
            if ((nports = num_list(a, v, ports, RB_MAX_TARGETS)) < 0)
                return 2;
            port = ports[0];
        }
        else if (!strcmp(a, "--tcp-port")) tcp_port = (long)num_arg(a, v);
        else if (!strcmp(a, "--transport")) transports = v;
        else if (!strcmp(a, "--server-pid")) {
            if ((npids = num_list(a, v, pids, RB_MAX_TARGETS)) < 0)
                return 2;
            o.pid = (int)pids[0];
        }
        else if (!strcmp(a, "--redis-pid")) redis_pid = (int)num_arg(a, v);
        else if (!strcmp(a, "--label")) o.server = v;
        else if (!strcmp(a, "--rooms")) o.rooms = (uint32_t)num_arg(a, v);
        else if (!strcmp(a, "--clients")) o.clients = (uint32_t)num_arg(a, v);
        else if (!strcmp(a, "--messages")) o.messages = (uint64_t)num_arg(a, v);
        else if (!strcmp(a, "--size")) o.size = (uint32_t)num_arg(a, v);
        else if (!strcmp(a, "--window")) o.window = (uint32_t)num_arg(a, v);
        else if (!strcmp(a, "--rate")) o.rate = num_arg(a, v);
        else if (!strcmp(a, "--duration")) o.duration = num_arg(a, v);
        else if (!strcmp(a, "--drain")) o.drain = num_arg(a, v);
        else if (!strcmp(a, "--conns")) o.conns = (uint32_t)num_arg(a, v);
        else if (!strcmp(a, "--room-size")) o.room_size = (uint32_t)num_arg(a, v);
        else if (!strcmp(a, "--sample")) o.sample = (uint32_t)num_arg(a, v);
        else if (!strcmp(a, "--idle-time")) o.idle_time = num_arg(a, v);
        else if (!strcmp(a, "--concurrency")) o.concurrency = (uint32_t)num_arg(a, v);
        else if (!strcmp(a, "--stuck-rcvbuf")) o.stuck_rcvbuf = (int)num_arg(a, v);
        else if (!strcmp(a, "--presence")) o.presence_every = every_arg(a, v);
        else if (!strcmp(a, "--conflate")) o.conflate_every = every_arg(a, v);
        else if (!strcmp(a, "--state-keys")) o.state_keys = (uint32_t)num_arg(a, v);
        else if (!strcmp(a, "--keys-per-sender")) o.keys_per_sender = (uint32_t)num_arg(a, v);
        else if (!strcmp(a, "--modes")) o.modes = v;
        else if (!strcmp(a, "--joiners")) o.joiners = (uint32_t)num_arg(a, v);
        else if (!strcmp(a, "--mode-time")) o.mode_time = num_arg(a, v);
        else if (!strcmp(a, "--tls-ca")) tls_ca = v;
        else if (!strcmp(a, "--tls-version")) tls_version = v;
        else {
            fprintf(stderr, "roomcast-bench: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "roomcast-bench: --port is required\n");
        return 2;
    }
    for (int i = 1; i < nports; i++)
        if (ports[i] <= 0 || ports[i] > 65535) {
            fprintf(stderr, "roomcast-bench: --port: %ld is not a port\n", ports[i]);
            return 2;
        }
    if (nports > 1 && (!rooms_sc || joincost_sc || !strcmp(sc, "slow"))) {
        fprintf(stderr, "roomcast-bench: several ports are for fanout and pingpong only\n");
        return 2;
    }
    if (rooms_sc && (!o.rooms || !o.clients || (o.rate <= 0 && !o.window) ||
                     (!o.messages && o.duration <= 0))) {
        fprintf(stderr, "roomcast-bench: need rooms, clients, a window or a rate, and "
                        "--messages or --duration\n");
        return 2;
    }
    if (parse_transports(transports, &o) != 0)
        return 2;
    bool need_tcp = false;
    for (uint32_t i = 0; i < o.ntransports; i++) {
        need_tcp |= o.transports[i] != RB_TR_WS && o.transports[i] != RB_TR_SIO;
        o.unsequenced |= o.transports[i] == RB_TR_SIO;
    }
    if (o.unsequenced && (!fanout_sc || o.presence_every || o.conflate_every || o.state_keys)) {
        fprintf(stderr, "roomcast-bench: --transport sio is for fanout without issue 12's "
                        "options\n");
        return 2;
    }
    if (need_tcp && !rooms_sc) {
        fprintf(stderr, "roomcast-bench: %s speaks WebSocket only (--transport ws)\n", sc);
        return 2;
    }
    if (need_tcp && (tcp_port <= 0 || tcp_port > 65535)) {
        fprintf(stderr, "roomcast-bench: --transport %s needs --tcp-port\n", transports);
        return 2;
    }
    o.target.addr.sin_family = AF_INET;
    o.target.addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &o.target.addr.sin_addr) != 1) {
        fprintf(stderr, "roomcast-bench: --host must be an IPv4 address, got '%s'\n", host);
        return 2;
    }
    o.target.tcp = o.target.addr;
    o.target.tcp.sin_port = htons((uint16_t)tcp_port);
    snprintf(o.target.host, sizeof(o.target.host), "%s:%ld", host, port);
    o.targets[0] = o.target;
    o.ntargets = 1;
    for (int i = 1; i < nports; i++) {
        struct rb_target *t = &o.targets[o.ntargets++];
        *t = o.target;
        t->addr.sin_port = htons((uint16_t)ports[i]);
        snprintf(t->host, sizeof(t->host), "%s:%ld", host, ports[i]);
    }

    signal(SIGPIPE, SIG_IGN);
    /* Rate mode sleeps until the next send is due; the default 50 us timer slack would add
     * that much jitter to every send. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    rb_raise_nofile();
    if (rb_loop_init() != 0) {
        perror("roomcast-bench: epoll");
        return 2;
    }
    if ((tls || hs_sc || tls_ca || tls_version) && rb_tls_init(tls_ca, tls_version) != 0)
        return 2;

    struct rb_result *r = calloc(1, sizeof(*r));
    rb_result_init(r, sc, o.server, o.pid);
    for (int i = 0; i < npids; i++)
        r->server_pids[r->nserver_pids++] = (int)pids[i];
    r->redis_pid = redis_pid;
    if (fanout_sc || !strcmp(sc, "pingpong"))
        rb_run_rooms(&o, r, 0);
    else if (!strcmp(sc, "slow"))
        rb_run_slow(&o, r);
    else if (joincost_sc)
        rb_run_joincost(&o, r);
    else if (!strcmp(sc, "idle"))
        rb_run_idle(&o, r);
    else if (hs_sc)
        rb_run_tls_handshakes(&o, r);
    else
        rb_run_churn(&o, r);
    if (rb_frame_errors) {
        r->errors += rb_frame_errors;
        rb_result_fail(r, "%llu malformed frames from the server",
                       (unsigned long long)rb_frame_errors);
    }
    rb_result_print(r, o.quiet);
    int ok = rb_result_ok(r);
    free(r);
    return ok ? 0 : 1;
}
