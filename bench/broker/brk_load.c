/* brk_load.c — load generator for the worker broker (issue 14): roomcast vs the Python peer.
 *
 * Speaks the seed's LRU protocol on both sides, so it drives any broker that prints
 * `roomcast: broker workers tcp://A:P clients tcp://A:P` (roomcast, bench/broker/py_broker.py).
 *
 *   workers : W REQ sockets (spread over T threads, zmq_poll), send READY, then echo every
 *             request [client][""][body] back unchanged (zero service time).
 *   clients : C DEALER sockets in one thread, each request [""][body], body = 64 bytes
 *             {u64 send_ns, u64 seq, u32 magic, pad}; latency = receive time - send_ns.
 *
 * Modes (-m):
 *   sat     closed loop, K requests in flight per client socket (C*K in all): requests/s.
 *   lat     open loop at -r requests/s (a 100 us timerfd tick sends what is due, round robin
 *           over the C sockets): round-trip latency p50/p99/p99.9.
 *   direct  as lat, but no broker: the client thread binds one ROUTER, the W REQ workers
 *           connect to it (READY), and it sends each request straight to an idle worker
 *           (LRU, in-process) as [worker][""][addr][""][body], so the worker sees exactly
 *           what a broker hands it. Broker overhead = lat - direct at the same rate.
 *
 * Broker CPU (-p PID): sum of /proc/PID/task/<TID>/schedstat (ns on CPU, every live thread)
 * over the measured window, also split into the main thread (TID == PID) and the rest
 * (libzmq's I/O thread). One JSON line on stdout per run.
 *
 *   brk_load -m sat -W tcp://127.0.0.1:P -C tcp://127.0.0.1:Q -p PID [-w 8 -c 8 -k 16 -d 5 -u 1]
 *   brk_load -m lat -W ... -C ... -p PID -r 20000
 *   brk_load -m direct -r 20000
 */
#include <errno.h>
#include <inttypes.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define BODY 64
#define MAGIC 0x52434252u /* "RCBR" */
#define MAXSOCK 1024

static void *g_ctx;
static atomic_int g_stop;
static const char *g_worker_ep;
static int g_nworkers = 8, g_nwthreads = 1;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "brk_load: %s: %s\n", what, zmq_strerror(zmq_errno()));
    exit(2);
}

/* ns on CPU of every live thread of pid; *main_ns gets the main thread's share. */
static int64_t proc_cpu_ns(int pid, int64_t *main_ns)
{
    char path[320];
    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int64_t sum = 0;
    *main_ns = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%s/schedstat", pid, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        long long ns = 0;
        if (fscanf(f, "%lld", &ns) == 1) {
            sum += ns;
            if (atoi(e->d_name) == pid)
                *main_ns = ns;
        }
        fclose(f);
    }
    closedir(d);
    return sum;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ---- workers ---------------------------------------------------------------------------- */

static void echo_one(void *s)
{
    /* REQ worker: one whole request in (a REQ socket may not send before the last part is
     * read), then the same parts back. Caller knows one is readable. */
    zmq_msg_t m[8];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_init(&m[n]);
        if (zmq_msg_recv(&m[n], s, 0) < 0) {
            zmq_msg_close(&m[n]);
            break;
        }
        more = zmq_msg_more(&m[n]);
        if (n < 7)
            n++;
        else
            zmq_msg_close(&m[n]);
    }
    for (int i = 0; i < n; i++)
        if (zmq_msg_send(&m[i], s, i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
            zmq_msg_close(&m[i]);
}

static void *worker_thread(void *arg)
{
    int idx = (int)(intptr_t)arg;
    zmq_pollitem_t items[MAXSOCK];
    int n = 0;
    for (int i = idx; i < g_nworkers; i += g_nwthreads) {
        void *s = zmq_socket(g_ctx, ZMQ_REQ);
        int zero = 0;
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
        char id[32];
        int idl = snprintf(id, sizeof(id), "worker-%d", i);
        zmq_setsockopt(s, ZMQ_ROUTING_ID, id, (size_t)idl);
        if (zmq_connect(s, g_worker_ep) != 0)
            die("worker connect");
        if (zmq_send(s, "READY", 5, 0) != 5)
            die("worker READY");
        items[n].socket = s;
        items[n].events = ZMQ_POLLIN;
        n++;
    }
    while (!atomic_load(&g_stop)) {
        int r = zmq_poll(items, n, 100);
        if (r <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            if (!(items[i].revents & ZMQ_POLLIN))
                continue;
            /* drain this socket: recv+reply while another request is already there */
            for (;;) {
                echo_one(items[i].socket);
                int ev = 0;
                size_t sz = sizeof(ev);
                zmq_getsockopt(items[i].socket, ZMQ_EVENTS, &ev, &sz);
                if (!(ev & ZMQ_POLLIN))
                    break;
            }
        }
    }
    return NULL;
}

/* ---- clients ---------------------------------------------------------------------------- */

static uint32_t *g_lat;           /* ns, samples inside the window */
static size_t g_nlat, g_caplat;
static uint64_t g_sent, g_recv_win, g_bad;
static uint64_t g_seq;
static int g_direct;
static const char ADDR[5] = {0, 'b', 'r', 'k', '1'};

/* direct mode: the client thread's ROUTER keeps the idle REQ workers (no broker hop) */
static char g_idle[MAXSOCK][32];
static int g_idle_len[MAXSOCK], g_nidle;
static uint64_t g_pend[1 << 16]; /* due times of requests waiting for an idle worker */
static unsigned g_pend_h, g_pend_t;

static void send_body(void *s, uint64_t t)
{
    unsigned char b[BODY];
    memset(b, 0xab, sizeof(b));
    uint64_t seq = g_seq++;
    uint32_t mg = MAGIC;
    memcpy(b, &t, 8);
    memcpy(b + 8, &seq, 8);
    memcpy(b + 16, &mg, 4);
    if (g_direct) { /* [worker][""][addr][""][body]: the worker sees what a broker gives it */
        g_nidle--;
        zmq_send(s, g_idle[0], (size_t)g_idle_len[0], ZMQ_SNDMORE);
        memmove(g_idle[0], g_idle[1], sizeof(g_idle[0]) * (size_t)g_nidle);
        memmove(g_idle_len, g_idle_len + 1, sizeof(int) * (size_t)g_nidle);
        zmq_send(s, "", 0, ZMQ_SNDMORE);
        zmq_send(s, ADDR, sizeof(ADDR), ZMQ_SNDMORE);
    }
    zmq_send(s, "", 0, ZMQ_SNDMORE);
    if (zmq_send(s, b, BODY, 0) != BODY)
        die("client send");
    g_sent++;
}

static void send_req(void *s)
{
    uint64_t t = now_ns();
    if (g_direct && (g_nidle == 0 || g_pend_h != g_pend_t)) {
        g_pend[g_pend_t++ & 0xffff] = t; /* latency counts from the due time */
        return;
    }
    send_body(s, t);
}

static void worker_idle(void *s, const unsigned char *id, int len)
{
    if (len > 32 || g_nidle >= MAXSOCK)
        return;
    memcpy(g_idle[g_nidle], id, (size_t)len);
    g_idle_len[g_nidle++] = len;
    if (g_pend_h != g_pend_t)
        send_body(s, g_pend[g_pend_h++ & 0xffff]);
}

/* Receive one whole reply (DONTWAIT). Returns 1 if a reply was taken, 0 if none, -1 if the
 * message was not a reply (READY in direct mode, or malformed). */
static int recv_reply(void *s, uint64_t t0, uint64_t t1)
{
    unsigned char parts[8][BODY + 8];
    int lens[8], np = 0, more = 1;
    while (more) {
        int flags = np == 0 ? ZMQ_DONTWAIT : 0;
        int l = zmq_recv(s, np < 8 ? parts[np] : parts[7], BODY + 8, flags);
        if (l < 0) {
            if (np == 0 && zmq_errno() == EAGAIN)
                return 0;
            die("client recv");
        }
        if (np < 8)
            lens[np] = l;
        np++;
        int m = 0;
        size_t sz = sizeof(m);
        zmq_getsockopt(s, ZMQ_RCVMORE, &m, &sz);
        more = m;
    }
    uint64_t now = now_ns();
    int bi = np - 1;
    if (g_direct && np >= 3 && np <= 8) /* [worker][""][READY] or [worker][""][addr][""][body] */
        worker_idle(s, parts[0], lens[0]);
    if (np > 8 || lens[bi] != BODY) {
        if (!(g_direct && np == 3 && lens[2] == 5)) /* READY from a worker */
            g_bad++;
        return -1;
    }
    uint64_t ts;
    uint32_t mg;
    memcpy(&ts, parts[bi], 8);
    memcpy(&mg, parts[bi] + 16, 4);
    if (mg != MAGIC) {
        g_bad++;
        return -1;
    }
    if (now >= t0 && now < t1) {
        g_recv_win++;
        if (g_nlat < g_caplat) {
            uint64_t d = now - ts;
            g_lat[g_nlat++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
        }
    }
    return 1;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    if (!g_nlat)
        return 0;
    size_t i = (size_t)(p * (double)(g_nlat - 1) + 0.5);
    return g_lat[i] / 1000.0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: brk_load -m sat|lat|direct [-W worker_ep] [-C client_ep] [-p broker_pid]\n"
            "       [-w workers 8] [-T worker_threads 1] [-c client_sockets 8] [-k inflight/socket 16]\n"
            "       [-r rate/s (lat, direct)] [-d seconds 5] [-u warmup 1] [-l label]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *mode = "sat", *client_ep = NULL, *label = "";
    int pid = 0, nclients = 8, inflight = 16;
    double rate = 0, dur = 5, warm = 1;
    int opt;
    while ((opt = getopt(argc, argv, "m:W:C:p:w:T:c:k:r:d:u:l:")) != -1) {
        switch (opt) {
        case 'm': mode = optarg; break;
        case 'W': g_worker_ep = optarg; break;
        case 'C': client_ep = optarg; break;
        case 'p': pid = atoi(optarg); break;
        case 'w': g_nworkers = atoi(optarg); break;
        case 'T': g_nwthreads = atoi(optarg); break;
        case 'c': nclients = atoi(optarg); break;
        case 'k': inflight = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'd': dur = atof(optarg); break;
        case 'u': warm = atof(optarg); break;
        case 'l': label = optarg; break;
        default: usage();
        }
    }
    int sat = !strcmp(mode, "sat");
    g_direct = !strcmp(mode, "direct");
    if (!sat && !g_direct && strcmp(mode, "lat"))
        usage();
    if ((!sat && rate <= 0) || (!g_direct && (!g_worker_ep || !client_ep)) || g_nworkers < 1 ||
        g_nworkers > MAXSOCK || nclients < 1 || nclients > MAXSOCK || g_nwthreads < 1)
        usage();

    g_ctx = zmq_ctx_new();
    void *cs[MAXSOCK];
    int zero = 0;
    char direct_ep[128];
    if (g_direct) {
        nclients = 1;
        cs[0] = zmq_socket(g_ctx, ZMQ_ROUTER); /* REQ workers pair with ROUTER, not DEALER */
        zmq_setsockopt(cs[0], ZMQ_LINGER, &zero, sizeof(zero));
        if (zmq_bind(cs[0], "tcp://127.0.0.1:*") != 0)
            die("direct bind");
        size_t sz = sizeof(direct_ep);
        zmq_getsockopt(cs[0], ZMQ_LAST_ENDPOINT, direct_ep, &sz);
        g_worker_ep = direct_ep;
    } else {
        for (int i = 0; i < nclients; i++) {
            cs[i] = zmq_socket(g_ctx, ZMQ_DEALER);
            zmq_setsockopt(cs[i], ZMQ_LINGER, &zero, sizeof(zero));
            if (zmq_connect(cs[i], client_ep) != 0)
                die("client connect");
        }
    }
    pthread_t wt[64];
    if (g_nwthreads > 64)
        g_nwthreads = 64;
    for (int i = 0; i < g_nwthreads; i++)
        pthread_create(&wt[i], NULL, worker_thread, (void *)(intptr_t)i);
    usleep(300 * 1000); /* connections up, READYs in */
    if (g_direct) {     /* swallow the READYs */
        uint64_t e = now_ns() + 200000000ull;
        while (now_ns() < e)
            if (recv_reply(cs[0], 0, 0) == 0)
                usleep(1000);
    }

    double exp_rate = sat ? 2e6 : rate;
    g_caplat = (size_t)(exp_rate * dur * 1.5) + 1024;
    if (g_caplat > 50000000)
        g_caplat = 50000000;
    g_lat = malloc(g_caplat * sizeof(*g_lat));
    if (!g_lat)
        return 2;

    uint64_t start = now_ns();
    uint64_t t0 = start + (uint64_t)(warm * 1e9), t1 = t0 + (uint64_t)(dur * 1e9);
    int64_t cpu0 = -1, cpu1 = -1, m0 = 0, m1 = 0;
    double self0 = 0, self1 = 0;
    int in_win = 0;
    uint64_t sent_win0 = 0, sent_win1 = 0;

    zmq_pollitem_t items[MAXSOCK];
    for (int i = 0; i < nclients; i++) {
        items[i].socket = cs[i];
        items[i].events = ZMQ_POLLIN;
    }
    if (sat) {
        for (int i = 0; i < nclients; i++)
            for (int k = 0; k < inflight; k++)
                send_req(cs[i]);
        for (;;) {
            uint64_t now = now_ns();
            if (!in_win && now >= t0) {
                in_win = 1;
                if (pid)
                    cpu0 = proc_cpu_ns(pid, &m0);
                self0 = self_cpu_s();
                sent_win0 = g_sent;
            }
            if (now >= t1)
                break;
            if (zmq_poll(items, nclients, 100) <= 0)
                continue;
            for (int i = 0; i < nclients; i++) {
                if (!(items[i].revents & ZMQ_POLLIN))
                    continue;
                int r;
                while ((r = recv_reply(cs[i], t0, t1)) != 0)
                    if (r > 0)
                        send_req(cs[i]);
            }
        }
    } else {
        int ep = epoll_create1(0);
        int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
        struct itimerspec its = {{0, 100000}, {0, 100000}};
        timerfd_settime(tfd, 0, &its, NULL);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
        epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
        for (int i = 0; i < nclients; i++) {
            int fd;
            size_t sz = sizeof(fd);
            zmq_getsockopt(cs[i], ZMQ_FD, &fd, &sz);
            ev.events = EPOLLIN;
            ev.data.u32 = (uint32_t)i;
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        uint64_t due0 = 0, rr = 0;
        for (;;) {
            struct epoll_event evs[64];
            int n = epoll_wait(ep, evs, 64, 100);
            uint64_t now = now_ns();
            for (int j = 0; j < n; j++)
                if (evs[j].data.u32 == UINT32_MAX) {
                    uint64_t x;
                    if (read(tfd, &x, 8) < 0)
                        break;
                }
            if (!in_win && now >= t0) {
                in_win = 1;
                if (pid)
                    cpu0 = proc_cpu_ns(pid, &m0);
                self0 = self_cpu_s();
                sent_win0 = g_sent;
            }
            if (now >= t1)
                break;
            /* send what is due (open loop, from the start, so backlog is sent too) */
            uint64_t due = (uint64_t)((double)(now - start) * rate / 1e9);
            while (due0 < due) {
                send_req(cs[rr++ % (uint64_t)nclients]);
                due0++;
            }
            /* drain every socket until none has input (also re-arms ZMQ_FD) */
            for (int again = 1; again;) {
                again = 0;
                for (int i = 0; i < nclients; i++) {
                    while (recv_reply(cs[i], t0, t1) != 0)
                        ;
                    int e = 0;
                    size_t sz = sizeof(e);
                    zmq_getsockopt(cs[i], ZMQ_EVENTS, &e, &sz);
                    if (e & ZMQ_POLLIN)
                        again = 1;
                }
            }
        }
    }
    if (pid)
        cpu1 = proc_cpu_ns(pid, &m1);
    self1 = self_cpu_s();
    sent_win1 = g_sent;
    atomic_store(&g_stop, 1);

    qsort(g_lat, g_nlat, sizeof(*g_lat), cmp_u32);
    double rps = (double)g_recv_win / dur;
    double bcpu_s = cpu0 >= 0 && cpu1 >= 0 ? (double)(cpu1 - cpu0) / 1e9 : -1;
    double bmain_s = cpu0 >= 0 && cpu1 >= 0 ? (double)(m1 - m0) / 1e9 : -1;
    printf("{\"label\":\"%s\",\"mode\":\"%s\",\"workers\":%d,\"worker_threads\":%d,\"clients\":%d,"
           "\"inflight_per_client\":%d,\"rate_target\":%.0f,\"seconds\":%.2f,"
           "\"sent\":%" PRIu64 ",\"replies\":%" PRIu64 ",\"bad\":%" PRIu64 ",\"req_per_s\":%.0f,"
           "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f",
           label, mode, g_nworkers, g_nwthreads, nclients, sat ? inflight : 0, sat ? 0 : rate, dur,
           sent_win1 - sent_win0, g_recv_win, g_bad, rps, pct(0.5), pct(0.99), pct(0.999),
           g_nlat ? g_lat[g_nlat - 1] / 1000.0 : 0);
    if (bcpu_s >= 0 && g_recv_win)
        printf(",\"broker_cpu_s\":%.4f,\"broker_main_cpu_s\":%.4f,\"broker_cpu_pct\":%.1f,"
               "\"broker_us_per_req\":%.3f,\"broker_main_us_per_req\":%.3f,\"req_per_broker_cpu_s\":%.0f",
               bcpu_s, bmain_s, 100.0 * bcpu_s / dur, bcpu_s * 1e6 / (double)g_recv_win,
               bmain_s * 1e6 / (double)g_recv_win, (double)g_recv_win / bcpu_s);
    printf(",\"gen_cpu_pct\":%.1f}\n", 100.0 * (self1 - self0) / dur);
    fflush(stdout);
    _exit(g_bad ? 1 : 0); /* sockets are not closed: the brokers see the peers disconnect */
}
