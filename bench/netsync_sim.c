/* netsync_sim.c — a NetSync client simulator for roomcast's NetSync transport (and the
 * reference server: it speaks only the wire protocol).
 *
 *   netsync_sim [-c CLIENTS] [-r ROOMS] [-z HZ] [-d SECONDS] [-w WARMUP] [-s SUBS_PER_ROOM]
 *               [-p PID] [-H HOST] [-R ROUTER_PORT] [-P PUB_PORT] [-o BASE] [--storm N]
 *
 * Load mode: CLIENTS DEALERs spread over ROOMS rooms each send a 135-byte CLIENT_TRANSFORM
 * (36-char deviceId, no virtuals) at HZ, evenly phased. Each transform carries the client's
 * index and a sequence number in its first two floats. SUBS_PER_ROOM SUB sockets per room
 * (default: one per client, i.e. the real fan-out) read the ROOM_TRANSFORMs. Reported over the
 * DURATION window after WARMUP:
 *   - first-seen latency: send -> first ROOM_TRANSFORM received by a *different* client that
 *     carries this (or a newer) sequence of the sender, p50/p90/p99/max;
 *   - ROOM_TRANSFORM rate per subscriber (Hz);
 *   - loss: updates whose sequence (or a newer one) no other client ever saw;
 *   - the server's CPU (utime+stime from /proc/PID/stat over the window, % of one core) and
 *     RSS (VmRSS at the end), when -p PID is given;
 *   - the simulator's own CPU (getrusage), so a saturated simulator is visible.
 * -o BASE numbers this process's clients from BASE (deviceIds and the client index carried in
 * the transform), so several simulator processes can share rooms when one cannot generate
 * the load; each measures latency for its own clients only. Server CPU is reported by every
 * process for its own window.
 * Storm mode (--storm N): N DEALERs join one room within one second; an observer SUB reports
 * when the mapping listing all N arrived after the last join, and how many mapping messages
 * and bytes the room produced.
 *
 * Single-threaded: zmq_poll over the SUBs with a timeout up to the next scheduled send.
 * Build: make -f bench/netsync_sim.mk  (-> build/netsync_sim)
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double own_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static double proc_cpu(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long ut = 0, st = 0;
    /* fields after ')': state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long proc_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
    fclose(f);
    return kb;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static size_t enc_transform(uint8_t *m, int client, float seq)
{
    size_t n = 0;
    char dev[40];
    snprintf(dev, sizeof(dev), "%08x-0000-4000-8000-%012x", client, client);
    m[n++] = 1;
    m[n++] = 36;
    memcpy(m + n, dev, 36);
    n += 36;
    float f[24];
    for (int i = 0; i < 24; i++) f[i] = 0.5f * (float)i;
    f[0] = (float)client;
    f[1] = seq;
    memcpy(m + n, f, 96); /* little-endian host */
    n += 96;
    m[n++] = 0;
    return n;
}

#define RING 64

typedef struct cl {
    void *dealer;
    int room;
    uint32_t seq;                /* last sequence sent */
    uint32_t seen;               /* highest sequence another client saw */
    double sent_at[RING];        /* send time by seq % RING */
    double next;                 /* next send time */
} cl;

typedef struct sub {
    void *s;
    int room;
    int owner;                   /* client index whose SUB this is, -1 for a pure observer */
    uint64_t rts;                /* ROOM_TRANSFORMs received in the window */
} sub;

static int storm(void *ctx, const char *host, int rport, int pport, int n)
{
    char ep[128];
    const char *room = "storm";
    void *obs = zmq_socket(ctx, ZMQ_SUB);
    int hwm = 0;
    zmq_setsockopt(obs, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(obs, ZMQ_SUBSCRIBE, room, strlen(room));
    snprintf(ep, sizeof(ep), "tcp://%s:%d", host, pport);
    zmq_connect(obs, ep);
    void **d = calloc((size_t)n, sizeof(*d));
    snprintf(ep, sizeof(ep), "tcp://%s:%d", host, rport);
    for (int i = 0; i < n; i++) {
        d[i] = zmq_socket(ctx, ZMQ_DEALER);
        zmq_connect(d[i], ep);
    }
    usleep(500000);
    uint8_t m[256];
    double t0 = now_s(), t_last = 0;
    for (int i = 0; i < n; i++) {
        double due = t0 + (double)i / n; /* n joins spread over one second */
        while (now_s() < due) usleep(200);
        size_t len = enc_transform(m, i, 0);
        zmq_send(d[i], room, strlen(room), ZMQ_SNDMORE);
        zmq_send(d[i], m, len, 0);
        t_last = now_s();
    }
    uint64_t maps = 0, map_bytes = 0;
    double t_all = -1;
    while (now_s() < t_last + 3) {
        zmq_pollitem_t it = {obs, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0) continue;
        char topic[64];
        static uint8_t buf[1 << 20];
        int tl = zmq_recv(obs, topic, sizeof(topic), 0);
        int bl = zmq_recv(obs, buf, sizeof(buf), 0);
        if (tl != (int)strlen(room) || bl < 3 || buf[0] != 6) continue;
        maps++;
        map_bytes += (uint64_t)bl + (uint64_t)tl;
        int cnt = buf[1] | buf[2] << 8;
        if (cnt == n && t_all < 0) t_all = now_s();
    }
    printf("storm: %d joins in %.3f s; mapping with all %d seen %.1f ms after the last join; "
           "%llu mapping messages, %llu bytes (per subscriber)\n",
           n, t_last - t0, n, t_all < 0 ? -1.0 : (t_all - t_last) * 1e3,
           (unsigned long long)maps, (unsigned long long)map_bytes);
    for (int i = 0; i < n; i++) zmq_close(d[i]);
    zmq_close(obs);
    free(d);
    return t_all < 0;
}

int main(int argc, char **argv)
{
    int nclients = 300, nrooms = 10, subs_per_room = -1, pid = 0, rport = 5555, pport = 5556;
    int storm_n = 0, base = 0;
    double hz = 30, dur = 10, warm = 3;
    const char *host = "127.0.0.1";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
        if (!strcmp(a, "-c")) nclients = atoi(v), i++;
        else if (!strcmp(a, "-r")) nrooms = atoi(v), i++;
        else if (!strcmp(a, "-z")) hz = atof(v), i++;
        else if (!strcmp(a, "-d")) dur = atof(v), i++;
        else if (!strcmp(a, "-w")) warm = atof(v), i++;
        else if (!strcmp(a, "-s")) subs_per_room = atoi(v), i++;
        else if (!strcmp(a, "-p")) pid = atoi(v), i++;
        else if (!strcmp(a, "-H")) host = v, i++;
        else if (!strcmp(a, "-R")) rport = atoi(v), i++;
        else if (!strcmp(a, "-P")) pport = atoi(v), i++;
        else if (!strcmp(a, "--storm")) storm_n = atoi(v), i++;
        else if (!strcmp(a, "-o")) base = atoi(v), i++;
        else {
            fprintf(stderr, "usage: see the header of bench/netsync_sim.c\n");
            return 2;
        }
    }
    void *ctx = zmq_ctx_new();
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, 65536);
    if (storm_n) {
        double c0 = own_cpu(), p0 = pid ? proc_cpu(pid) : 0, t0 = now_s();
        int rc = storm(ctx, host, rport, pport, storm_n);
        double el = now_s() - t0;
        if (pid)
            printf("server cpu %.1f%% rss %ld kB; sim cpu %.1f%%\n",
                   (proc_cpu(pid) - p0) / el * 100, proc_rss_kb(pid), (own_cpu() - c0) / el * 100);
        zmq_ctx_term(ctx);
        return rc;
    }
    char ep[128];
    cl *c = calloc((size_t)nclients, sizeof(*c));
    int per_room = (nclients + nrooms - 1) / nrooms;
    int spr = subs_per_room < 0 || subs_per_room > per_room ? per_room : subs_per_room;
    sub *s = calloc((size_t)nrooms * (size_t)spr, sizeof(*s));
    int nsubs = 0;
    char rooms[1000][16];
    for (int r = 0; r < nrooms && r < 1000; r++) snprintf(rooms[r], sizeof(rooms[r]), "room-%03d", r);
    snprintf(ep, sizeof(ep), "tcp://%s:%d", host, rport);
    int per_room_count[1000] = {0};
    for (int i = 0; i < nclients; i++) {
        c[i].room = i % nrooms;
        c[i].dealer = zmq_socket(ctx, ZMQ_DEALER);
        int l = 0;
        zmq_setsockopt(c[i].dealer, ZMQ_LINGER, &l, sizeof(l));
        zmq_connect(c[i].dealer, ep);
    }
    snprintf(ep, sizeof(ep), "tcp://%s:%d", host, pport);
    for (int i = 0; i < nclients; i++) {
        int r = c[i].room;
        if (per_room_count[r]++ >= spr) continue;
        sub *x = &s[nsubs++];
        x->s = zmq_socket(ctx, ZMQ_SUB);
        x->room = r;
        x->owner = i;
        int l = 0, hwm = 1000;
        zmq_setsockopt(x->s, ZMQ_LINGER, &l, sizeof(l));
        zmq_setsockopt(x->s, ZMQ_RCVHWM, &hwm, sizeof(hwm));
        zmq_setsockopt(x->s, ZMQ_SUBSCRIBE, rooms[r], strlen(rooms[r]));
        zmq_connect(x->s, ep);
    }
    zmq_pollitem_t *items = calloc((size_t)nsubs, sizeof(*items));
    for (int k = 0; k < nsubs; k++) items[k] = (zmq_pollitem_t){s[k].s, 0, ZMQ_POLLIN, 0};
    usleep(500000);
    double period = 1.0 / hz, t0 = now_s();
    for (int i = 0; i < nclients; i++) c[i].next = t0 + period * i / nclients;
    double w0 = t0 + warm, w1 = w0 + dur;
    double cpu0 = 0, pcpu0 = 0;
    bool in_window = false;
    size_t lat_cap = (size_t)(nclients * hz * dur * 1.2) + 1024, nlat = 0;
    double *lat = malloc(lat_cap * sizeof(*lat));
    uint64_t sent = 0, sent_window = 0;
    uint8_t m[256];
    static uint8_t buf[1 << 22];
    int next_i = 0; /* clients are phased evenly, so send in index order */
    for (;;) {
        double t = now_s();
        if (!in_window && t >= w0) {
            in_window = true;
            cpu0 = own_cpu();
            pcpu0 = pid ? proc_cpu(pid) : 0;
            for (int k = 0; k < nsubs; k++) s[k].rts = 0;
        }
        if (t >= w1) break;
        while (c[next_i].next <= t) {
            cl *x = &c[next_i];
            x->seq++;
            x->sent_at[x->seq % RING] = now_s();
            size_t len = enc_transform(m, base + next_i, (float)x->seq);
            zmq_send(x->dealer, rooms[x->room], strlen(rooms[x->room]), ZMQ_SNDMORE | ZMQ_DONTWAIT);
            zmq_send(x->dealer, m, len, ZMQ_DONTWAIT);
            x->next += period;
            sent++;
            if (in_window) sent_window++;
            next_i = (next_i + 1) % nclients;
        }
        /* Sleep at least 1 ms when the next send is not due yet: sends are evenly phased
         * (9 k/s at 300 x 30 Hz), and truncating the wait to 0 ms made the simulator spin in
         * zmq_poll over every SUB, competing with the server for the CPU. Sends are then up to
         * 1 ms late; sent_at is the real send time, so latencies are not affected. */
        double wait_s = c[next_i].next - now_s();
        long wait_ms = wait_s <= 0 ? 0 : (long)(wait_s * 1000) + 1;
        if (zmq_poll(items, nsubs, wait_ms) <= 0) continue;
        for (int k = 0; k < nsubs; k++) {
            if (!(items[k].revents & ZMQ_POLLIN)) continue;
            for (;;) {
                char topic[64];
                int tl = zmq_recv(s[k].s, topic, sizeof(topic), ZMQ_DONTWAIT);
                if (tl < 0) break;
                int bl = zmq_recv(s[k].s, buf, sizeof(buf), 0);
                if (tl != (int)strlen(rooms[s[k].room]) || memcmp(topic, rooms[s[k].room], (size_t)tl))
                    continue;
                if (bl < 3 || buf[0] != 2) continue;
                double tr = now_s();
                if (in_window) s[k].rts++;
                size_t o = 1 + 1 + buf[1];
                int cnt = buf[o] | buf[o + 1] << 8;
                o += 2;
                for (int e = 0; e < cnt && o + 99 <= (size_t)bl; e++) {
                    float f[2];
                    memcpy(f, buf + o + 2, 8);
                    int who = (int)f[0] - base;
                    uint32_t seq = (uint32_t)f[1];
                    o += 99 + (size_t)buf[o + 98] * 24;
                    if (who < 0 || who >= nclients || who == s[k].owner) continue;
                    cl *x = &c[who];
                    if (seq > x->seen) {
                        if (in_window && tr - x->sent_at[seq % RING] < 10 && nlat < lat_cap &&
                            x->seq - seq < RING)
                            lat[nlat++] = (tr - x->sent_at[seq % RING]) * 1e3;
                        x->seen = seq;
                    }
                }
            }
        }
    }
    double el = now_s() - w0;
    double cpu = own_cpu() - cpu0, pcpu = pid ? proc_cpu(pid) - pcpu0 : 0;
    /* drain a little so late updates are not counted as lost */
    double end = now_s() + 0.3;
    while (now_s() < end) {
        if (zmq_poll(items, nsubs, 50) <= 0) continue;
        for (int k = 0; k < nsubs; k++) {
            if (!(items[k].revents & ZMQ_POLLIN)) continue;
            for (;;) {
                char topic[64];
                if (zmq_recv(s[k].s, topic, sizeof(topic), ZMQ_DONTWAIT) < 0) break;
                int bl = zmq_recv(s[k].s, buf, sizeof(buf), 0);
                if (bl < 3 || buf[0] != 2) continue;
                size_t o = 2 + buf[1];
                int cnt = buf[o] | buf[o + 1] << 8;
                o += 2;
                for (int e = 0; e < cnt && o + 99 <= (size_t)bl; e++) {
                    float f[2];
                    memcpy(f, buf + o + 2, 8);
                    int who = (int)f[0] - base;
                    uint32_t seq = (uint32_t)f[1];
                    o += 99 + (size_t)buf[o + 98] * 24;
                    if (who >= 0 && who < nclients && who != s[k].owner && seq > c[who].seen)
                        c[who].seen = seq;
                }
            }
        }
    }
    uint64_t lost = 0;
    for (int i = 0; i < nclients; i++) lost += c[i].seq - c[i].seen;
    qsort(lat, nlat, sizeof(*lat), cmp_d);
#define PCT(p) (nlat ? lat[(size_t)((double)(nlat - 1) * (p))] : -1.0)
    double rts = 0;
    for (int k = 0; k < nsubs; k++) rts += (double)s[k].rts;
    printf("clients %d rooms %d hz %.0f subs %d window %.1fs: sent %llu (%.0f/s)\n", nclients,
           nrooms, hz, nsubs, el, (unsigned long long)sent, (double)sent_window / el);
    printf("first-seen ms p50 %.1f p90 %.1f p99 %.1f max %.1f (n=%zu)\n", PCT(0.5), PCT(0.9),
           PCT(0.99), nlat ? lat[nlat - 1] : -1.0, nlat);
    printf("ROOM_TRANSFORM %.1f Hz per subscriber; unseen at end %llu of %llu updates\n",
           rts / nsubs / el, (unsigned long long)lost, (unsigned long long)sent);
    if (pid) printf("server cpu %.1f%% of a core, rss %ld kB\n", pcpu / el * 100, proc_rss_kb(pid));
    printf("simulator cpu %.1f%% of a core\n", cpu / el * 100);
    for (int i = 0; i < nclients; i++) zmq_close(c[i].dealer);
    for (int k = 0; k < nsubs; k++) zmq_close(s[k].s);
    zmq_ctx_term(ctx);
    free(c), free(s), free(items), free(lat);
    return 0;
}
