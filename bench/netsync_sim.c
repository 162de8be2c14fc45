/* netsync_sim.c — a NetSync client simulator for both protocol generations (v0.6 and
 * protocol 8), for roomcast's NetSync transport, the reference Python servers and the ceiling
 * relay (bench/peers/ns_ceiling.c): it speaks only the wire protocol.
 *
 *   netsync_sim [-V 6|8] [-c CLIENTS] [-r ROOMS] [-z HZ] [-d SECONDS] [-w WARMUP]
 *               [-s SUBS_PER_ROOM] [-p PID] [-H HOST] [-R ROUTER_PORT] [-P PUB_PORT]
 *               [-Q POSE_PORT] [-o BASE] [--storm N]
 *
 * Load mode. CLIENTS clients spread over ROOMS rooms (client i in room i % ROOMS), each
 * sending one transform at HZ, evenly phased over the period:
 *   -V 6 (default): one DEALER per client on ROUTER_PORT sends [room][CLIENT_TRANSFORM]
 *        (type 1, 36-char deviceId, no virtuals: 135 bytes); the ROOM_TRANSFORMs (type 2)
 *        are read on SUBs of PUB_PORT.
 *   -V 8: per client a control DEALER on ROUTER_PORT (sends one HELLO `13 08 00 str8
 *        deviceId` first, then reads and discards the unicasts — mappings, NV syncs) and a
 *        transform DEALER on POSE_PORT (default 5557) that sends [room][CLIENT_POSE]
 *        (`0b 08 str8 deviceId BODY`, the full 46-byte body without virtuals: flags 0x1E =
 *        physical, head, right, left valid; encoding 0x1F; 85 bytes); ROOM_POSEs (type 12,
 *        version 8) are read on SUBs of PUB_PORT.
 * Each transform carries the client's index and a sequence number: v0.6 in its first two
 * floats, v8 in the head position's x and y (i24, relayed verbatim by every server) and the
 * low 16 bits in poseSeq. SUBS_PER_ROOM SUB connections per room (default: one per client,
 * i.e. the real fan-out) subscribe to the room id and parse every broadcast. Reported over the
 * DURATION window after WARMUP:
 *   - first-seen latency: send -> first broadcast received by a *different* client that
 *     carries this (or a newer) sequence of the sender, p50/p90/p99/max, over every update
 *     sent (an update a newer one superseded before the tick counts with the time the newer
 *     one was first seen: so the figure includes the wait for the server's tick; before
 *     2026-12-05 only updates that were broadcast themselves were counted, which hid most of
 *     that wait);
 *   - broadcast rate per subscriber (Hz; mean and the slowest subscriber), bytes per second
 *     per subscriber;
 *   - loss: updates whose sequence (or a newer one) no other client ever saw by the end (0.3 s
 *     after the window), and connections the server closed; broadcast entries carrying a
 *     client of another room (`foreign`: a server defect, never counted as seen);
 *   - the server's CPU (utime+stime of every thread, /proc/PID/stat over the window, % of one
 *     core), each thread's (/proc/PID/task; `thr_max` = the busiest thread, which must stay
 *     under 100 % for "on one core"), and RSS (VmRSS at the end), when -p PID is given;
 *   - the simulator's own CPU (getrusage), so a saturated simulator is visible.
 * The last line, `RESULT k=v ...`, repeats the figures for scripts (bench/netsync.sh).
 *
 * Transport. Load mode does not use libzmq: every DEALER and SUB is a plain non-blocking TCP
 * socket speaking ZMTP 3.0 (NULL) through bench/zmtp_min.h, all on one epoll loop in one
 * thread. A libzmq simulator pays, per socket, an I/O-thread wake-up, a mailbox signal and a
 * copy per message on both the send and the receive side; at 1,000 clients × 30 Hz with the
 * real fan-out (1,000 SUBs reading 20 broadcasts/s of ~10 kB each) that saturated the 2-core
 * machine the server runs on. Raw ZMTP costs one send() per transform and one recv() per
 * socket per wake-up (up to 1 MiB). ZMTP 3.0 is what NetMQ (the Unity client) speaks, and a
 * libzmq 4.3 server talks to a 3.0 peer by the 3.0 rules (subscriptions as `\x01topic`
 * messages), so the servers see ordinary clients. Sends are never dropped: what the kernel
 * does not take is queued and flushed on EPOLLOUT.
 * -o BASE numbers this process's clients from BASE (deviceIds and the index carried in the
 * transform), so several simulator processes can share rooms when one cannot generate the
 * load; each measures latency for its own clients only.
 * Storm mode (--storm N, v0.6, libzmq): N DEALERs join one room within one second; an observer
 * SUB reports when the mapping listing all N arrived after the last join, and how many mapping
 * messages and bytes the room produced.
 *
 * Build: make -f bench/netsync_sim.mk  (-> build/netsync_sim)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "zmtp_min.h"

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

/* Per-thread CPU of process pid: fills up to max tids/names/seconds, returns the count. */
#define MAX_THR 64
typedef struct thr_cpu {
    int n;
    int tid[MAX_THR];
    char name[MAX_THR][24];
    double sec[MAX_THR];
} thr_cpu;

static void proc_threads(int pid, thr_cpu *t)
{
    char path[96], buf[1024];
    t->n = 0;
    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && t->n < MAX_THR) {
        int tid = atoi(e->d_name);
        if (tid <= 0) continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        char *l = strchr(buf, '('), *r = strrchr(buf, ')');
        unsigned long ut = 0, st = 0;
        if (!l || !r || sscanf(r + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                               &st) != 2)
            continue;
        int k = t->n++;
        t->tid[k] = tid;
        snprintf(t->name[k], sizeof(t->name[k]), "%.*s", (int)(r - l - 1), l + 1);
        t->sec[k] = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    }
    closedir(d);
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

/* The protocol-8 CLIENT_POSE body (spec §3.3): poseSeq, flags 0x1E (physical, head, right,
 * left valid), encoding 0x1F, physical XR-origin delta (4 × i16), head (3 × i24 + Q), right
 * and left hands (3 × i16 + Q each), no virtuals: 46 bytes. The head's x and y carry the
 * client index and the sequence (i24), which every server relays verbatim. */
#define V8_BODY 46

static void put_i24(uint8_t *p, int32_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16);
}

static int32_t get_i24(const uint8_t *p)
{
    int32_t v = p[0] | p[1] << 8 | p[2] << 16;
    return v & 0x800000 ? v - 0x1000000 : v;
}

static size_t enc_pose(uint8_t *m, int client, uint32_t seq)
{
    static const uint32_t q = 3u << 30 | 512u << 20 | 512u << 10 | 512u; /* ~identity */
    size_t n = 0;
    char dev[40];
    snprintf(dev, sizeof(dev), "%08x-0000-4000-8000-%012x", client, client);
    m[n++] = 11;
    m[n++] = 8;
    m[n++] = 36;
    memcpy(m + n, dev, 36), n += 36;
    uint8_t *b = m + n;
    memset(b, 0, V8_BODY);
    b[0] = (uint8_t)seq, b[1] = (uint8_t)(seq >> 8);
    b[2] = 0x1E, b[3] = 0x1F;
    /* 4..11 physical delta: zeros; 12..24 head: x y z (i24) + Q */
    put_i24(b + 12, client);
    put_i24(b + 15, (int32_t)(seq & 0x7fffff));
    memcpy(b + 21, &q, 4);
    memcpy(b + 31, &q, 4); /* right: 25..30 i16 ×3, 31..34 Q */
    memcpy(b + 41, &q, 4); /* left: 35..40, 41..44 */
    b[45] = 0;             /* no virtuals */
    return n + V8_BODY;
}

static size_t enc_hello(uint8_t *m, int client)
{
    char dev[40];
    snprintf(dev, sizeof(dev), "%08x-0000-4000-8000-%012x", client, client);
    m[0] = 19, m[1] = 8, m[2] = 0, m[3] = 36;
    memcpy(m + 4, dev, 36);
    return 40;
}

/* Length of a protocol-8 pose body at b[0..n) (spec §3.3), 0 if it does not fit. */
static size_t v8_body_len(const uint8_t *b, size_t n)
{
    if (n < 4) return 0;
    unsigned fl = b[2];
    size_t o = 4;
    if (fl & 0x02) o += 8;
    if (fl & 0x04) {
        o += 13;
        if (fl & 0x08) o += 10;
        if (fl & 0x10) o += 10;
    }
    if (o + 1 > n) return 0;
    o += 1 + (size_t)b[o] * 10;
    return o <= n ? o : 0;
}

#define RING 64
#define RBUF (1u << 20) /* one recv() at most; also the largest frame accepted */

enum kind { K_CTRL, K_POSE, K_SUB };

typedef struct conn {
    int fd;                      /* -1 once the server closed it */
    uint8_t kind;                /* enum kind */
    bool greeted;                /* the peer's 64-byte greeting was consumed */
    bool ready;                  /* the peer's READY was received: messages may flow */
    bool hold_on;                /* our greeting and READY are out: hold messages until ready */
    bool in_msg;                 /* the previous frame had MORE: this one continues a message */
    bool topic_ok;               /* the current message's topic is this SUB's room */
    int owner;                   /* client index of this connection (SUB: whose SUB it is) */
    int room;                    /* room index */
    uint8_t *left;               /* partial frame carried to the next recv() */
    size_t nleft, capleft;       /* its bytes, its allocation */
    uint8_t *out;                /* bytes the kernel did not take yet */
    size_t nout, capout;         /* their count, the allocation */
    uint8_t *hold;               /* messages sent before the peer's READY (libzmq fails the
                                    handshake on a message that arrives with our READY) */
    size_t nhold, caphold;       /* their count, the allocation */
    uint64_t rts;                /* broadcasts (type 2 / 12) received in the window */
    uint64_t rbytes;             /* bytes received in the window */
} conn;

typedef struct cl {
    conn *up;                    /* the connection transforms are sent on */
    conn *ctrl;                  /* v8: the control DEALER (NULL for v0.6: up is it) */
    int room;
    uint32_t seq;                /* last sequence sent */
    uint32_t seen;               /* highest sequence another client saw */
    double sent_at[RING];        /* send time by seq % RING */
    double next;                 /* next send time */
} cl;

typedef struct sim {
    int ver;                     /* 6 or 8 */
    int ep;                      /* epoll fd */
    int base;                    /* index of this process's first client */
    int nclients;
    cl *c;
    char (*rooms)[16];           /* room ids */
    bool in_window;
    double *lat;                 /* first-seen latencies in the window (ms) */
    size_t nlat, lat_cap;
    uint64_t closed;             /* connections the server closed */
    uint64_t send_errors;        /* send() failures other than EAGAIN */
    uint64_t queued_bytes;       /* bytes that waited for EPOLLOUT */
    uint64_t foreign;            /* broadcast entries of a client of another room */
} sim;

static uint8_t rbuf[RBUF + 4096];

static void conn_arm(sim *S, conn *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0u), .data.ptr = c};
    epoll_ctl(S->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_closed(sim *S, conn *c)
{
    epoll_ctl(S->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    S->closed++;
}

static void buf_append(uint8_t **b, size_t *n, size_t *cap, const uint8_t *p, size_t len)
{
    if (*n + len > *cap) {
        size_t nc = *cap ? *cap : 4096;
        while (nc < *n + len) nc *= 2;
        *b = realloc(*b, nc);
        if (!*b) abort();
        *cap = nc;
    }
    memcpy(*b + *n, p, len);
    *n += len;
}

/* Sends b[0..n) or queues what the kernel does not take (never drops: a partial frame would
 * break the stream). */
static void conn_send(sim *S, conn *c, const uint8_t *b, size_t n)
{
    if (c->fd < 0) return;
    if (!c->ready && c->hold_on) { /* greeting and READY went first; messages wait */
        buf_append(&c->hold, &c->nhold, &c->caphold, b, n);
        return;
    }
    if (c->nout == 0) {
        ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);
        if (w == (ssize_t)n) return;
        if (w < 0) {
            if (errno != EAGAIN) {
                S->send_errors++;
                return;
            }
            w = 0;
        }
        b += w, n -= (size_t)w;
        conn_arm(S, c, true);
    }
    S->queued_bytes += n;
    buf_append(&c->out, &c->nout, &c->capout, b, n);
}

static void conn_flush(sim *S, conn *c)
{
    ssize_t w = send(c->fd, c->out, c->nout, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN) S->send_errors++;
        return;
    }
    memmove(c->out, c->out + w, c->nout - (size_t)w);
    c->nout -= (size_t)w;
    if (!c->nout) conn_arm(S, c, false);
}

/* A broadcast received at tr shows sequence seq of client who to another client: every update
 * of who up to seq not seen before is first-seen now, including the ones a newer update
 * superseded before the server broadcast (latest-wins servers send only the newest pose per
 * tick), so the latency includes the wait for the tick. */
static void seen(sim *S, conn *c, int who, uint32_t seq, double tr)
{
    if (who < 0 || who >= S->nclients || who == c->owner) return;
    cl *x = &S->c[who];
    if (x->room != c->room) { /* a server that relays another room's client: a bug */
        S->foreign++;
        return;
    }
    if (seq <= x->seen || seq > x->seq) return;
    if (S->in_window) {
        uint32_t from = x->seen + 1;
        if (x->seq - from >= RING) from = x->seq - RING + 1;
        for (uint32_t q = from; q <= seq && S->nlat < S->lat_cap; q++)
            if (tr - x->sent_at[q % RING] < 10) S->lat[S->nlat++] = (tr - x->sent_at[q % RING]) * 1e3;
    }
    x->seen = seq;
}

/* One broadcast body on a SUB whose topic matched. */
static void on_broadcast(sim *S, conn *c, const uint8_t *b, size_t n, double tr)
{
    if (S->ver == 6) {
        /* ROOM_TRANSFORM: 02 str8 room u16 n, n × {u16 no, 4 × 24 B, u8 nv, nv × 24 B} */
        if (n < 4 || b[0] != 2) return;
        size_t o = 2 + (size_t)b[1];
        if (o + 2 > n) return;
        int cnt = b[o] | b[o + 1] << 8;
        o += 2;
        if (S->in_window) c->rts++;
        for (int e = 0; e < cnt && o + 99 <= n; e++) {
            float f[2];
            memcpy(f, b + o + 2, 8);
            seen(S, c, (int)f[0] - S->base, (uint32_t)f[1], tr);
            o += 99 + (size_t)b[o + 98] * 24;
        }
        return;
    }
    /* ROOM_POSE: 0c 08 str8 room f64 time u16 n, n × {u16 no, f64 poseTime, BODY} */
    if (n < 3 || b[0] != 12 || b[1] != 8) return;
    size_t o = 3 + (size_t)b[2] + 8;
    if (o + 2 > n) return;
    int cnt = b[o] | b[o + 1] << 8;
    o += 2;
    if (S->in_window) c->rts++;
    for (int e = 0; e < cnt && o + 10 < n; e++) {
        size_t bl = v8_body_len(b + o + 10, n - o - 10);
        if (!bl) break;
        const uint8_t *body = b + o + 10;
        if ((body[2] & 0x04) && !(body[2] & 0x01)) {
            size_t h = 4 + ((body[2] & 0x02) ? 8 : 0);
            seen(S, c, get_i24(body + h) - S->base, (uint32_t)get_i24(body + h + 3), tr);
        }
        o += 10 + bl;
    }
}

/* Parses whole frames of buf[0..n); returns the bytes consumed. */
static size_t conn_parse(sim *S, conn *c, const uint8_t *buf, size_t n, double tr)
{
    size_t o = 0;
    if (!c->greeted) {
        if (n < ZM_GREETING_LEN) return 0;
        if (buf[0] != 0xFF || buf[10] < 3) {
            fprintf(stderr, "netsync_sim: the server is not a ZMTP 3 peer\n");
            exit(1);
        }
        c->greeted = true;
        o = ZM_GREETING_LEN;
    }
    zm_frame f;
    while (o < n) {
        int r = zm_parse(buf + o, n - o, RBUF, &f);
        if (r == 0) break;
        if (r < 0) {
            fprintf(stderr, "netsync_sim: frame over %u bytes from the server\n", RBUF);
            exit(1);
        }
        const uint8_t *b = buf + o + f.hlen;
        if ((f.flags & ZM_CMD) && !c->ready && f.size >= 6 && !memcmp(b, "\x05READY", 6)) {
            c->ready = true;
            if (c->nhold) conn_send(S, c, c->hold, c->nhold);
            c->nhold = 0;
        } else if (f.flags & ZM_CMD) {
            uint8_t pong[300];
            size_t pl = f.size < 256 ? zm_pong(b, f.size, pong) : 0;
            if (pl) conn_send(S, c, pong, pl);
        } else if (c->kind == K_SUB) {
            const char *room = S->rooms[c->room];
            size_t rl = strlen(room);
            if (!c->in_msg)
                c->topic_ok = f.size == rl && !memcmp(b, room, rl);
            else if (c->topic_ok)
                on_broadcast(S, c, b, f.size, tr);
            c->in_msg = f.flags & ZM_MORE;
        }
        o += f.hlen + f.size;
    }
    return o;
}

static void conn_read(sim *S, conn *c)
{
    size_t have = c->nleft;
    memcpy(rbuf, c->left, have);
    for (;;) {
        ssize_t r = recv(c->fd, rbuf + have, RBUF - have, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_closed(S, c);
            c->nleft = 0;
            return;
        }
        if (r < 0) break;
        if (S->in_window) c->rbytes += (uint64_t)r;
        size_t space = RBUF - have;
        have += (size_t)r;
        size_t used = conn_parse(S, c, rbuf, have, now_s());
        memmove(rbuf, rbuf + used, have - used);
        have -= used;
        if ((size_t)r < space) break;
    }
    c->nleft = 0;
    buf_append(&c->left, &c->nleft, &c->capleft, rbuf, have);
}

static conn *conn_open(sim *S, const char *host, int port, enum kind k, int owner, int room)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (fd < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        fprintf(stderr, "netsync_sim: cannot connect to %s:%d: %s\n", host, port, strerror(errno));
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* as libzmq does */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    conn *c = calloc(1, sizeof(*c));
    c->fd = fd, c->kind = (uint8_t)k, c->owner = owner, c->room = room;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(S->ep, EPOLL_CTL_ADD, fd, &ev);
    uint8_t hs[ZM_GREETING_LEN + 64 + 64];
    zm_greeting(hs, 0);
    size_t n = ZM_GREETING_LEN;
    n += zm_ready(hs + n, k == K_SUB ? "SUB" : "DEALER");
    conn_send(S, c, hs, n);
    c->hold_on = true;
    if (k == K_SUB) { /* ZMTP 3.0 subscription: a message `\x01topic` */
        const char *t = S->rooms[room];
        size_t tl = strlen(t);
        n = zm_put_hdr(hs, 0, tl + 1);
        hs[n++] = 1;
        memcpy(hs + n, t, tl), n += tl;
        conn_send(S, c, hs, n);
    }
    return c;
}

/* Sends [room][payload] on c. */
static void send_msg(sim *S, conn *c, int room, const uint8_t *p, size_t len)
{
    uint8_t m[512];
    const char *r = S->rooms[room];
    size_t rl = strlen(r), n = 0;
    n += zm_put_hdr(m + n, ZM_MORE, rl);
    memcpy(m + n, r, rl), n += rl;
    n += zm_put_hdr(m + n, 0, len);
    memcpy(m + n, p, len), n += len;
    conn_send(S, c, m, n);
}

/* Runs the loop for up to wait_ms (one epoll_wait). */
static void pump(sim *S, int wait_ms)
{
    struct epoll_event ev[256];
    int n = epoll_wait(S->ep, ev, 256, wait_ms);
    for (int i = 0; i < n; i++) {
        conn *c = ev[i].data.ptr;
        if (c->fd < 0) continue;
        if (ev[i].events & EPOLLOUT) conn_flush(S, c);
        if (c->fd >= 0 && ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) conn_read(S, c);
    }
}

static void pump_until(sim *S, double until)
{
    for (double t = now_s(); t < until; t = now_s()) pump(S, (int)((until - t) * 1000) + 1);
}

static int load(int ver, int nclients, int nrooms, double hz, double dur, double warm, int spr_arg,
                int pid, const char *host, int rport, int pport, int qport, int base)
{
    sim S = {.ver = ver, .base = base, .nclients = nclients};
    S.ep = epoll_create1(0);
    S.c = calloc((size_t)nclients, sizeof(*S.c));
    S.rooms = calloc((size_t)nrooms, sizeof(*S.rooms));
    for (int r = 0; r < nrooms; r++) snprintf(S.rooms[r], sizeof(S.rooms[r]), "room-%03d", r);
    int per_room = (nclients + nrooms - 1) / nrooms;
    int spr = spr_arg < 0 || spr_arg > per_room ? per_room : spr_arg;
    conn **subs = calloc((size_t)nclients, sizeof(*subs));
    int *per_room_count = calloc((size_t)nrooms, sizeof(int));
    int nsubs = 0;
    for (int i = 0; i < nclients; i++) {
        cl *x = &S.c[i];
        x->room = i % nrooms;
        if (ver == 8) {
            x->ctrl = conn_open(&S, host, rport, K_CTRL, i, x->room);
            x->up = conn_open(&S, host, qport, K_POSE, i, x->room);
        } else {
            x->up = conn_open(&S, host, rport, K_CTRL, i, x->room);
        }
        if (per_room_count[x->room]++ < spr)
            subs[nsubs++] = conn_open(&S, host, pport, K_SUB, i, x->room);
        if (i % 64 == 63) pump(&S, 0); /* let handshakes progress while connecting */
    }
    pump_until(&S, now_s() + 0.5);
    uint8_t m[256];
    if (ver == 8) { /* join: HELLO on the control lane, then poses */
        for (int i = 0; i < nclients; i++)
            send_msg(&S, S.c[i].ctrl, S.c[i].room, m, enc_hello(m, base + i));
        pump_until(&S, now_s() + 0.5);
    }
    double period = 1.0 / hz, t0 = now_s();
    for (int i = 0; i < nclients; i++) S.c[i].next = t0 + period * i / nclients;
    double w0 = t0 + warm, w1 = w0 + dur;
    double cpu0 = 0, pcpu0 = 0;
    thr_cpu th0 = {0}, th1 = {0};
    S.lat_cap = (size_t)(nclients * hz * dur * 1.2) + 1024;
    S.lat = malloc(S.lat_cap * sizeof(*S.lat));
    uint64_t sent = 0, sent_window = 0, closed0 = S.closed;
    int next_i = 0; /* clients are phased evenly, so send in index order */
    for (;;) {
        double t = now_s();
        if (!S.in_window && t >= w0) {
            S.in_window = true;
            cpu0 = own_cpu();
            pcpu0 = pid ? proc_cpu(pid) : 0;
            if (pid) proc_threads(pid, &th0);
        }
        if (t >= w1) break;
        while (S.c[next_i].next <= t) {
            cl *x = &S.c[next_i];
            x->seq++;
            x->sent_at[x->seq % RING] = now_s();
            size_t len = ver == 8 ? enc_pose(m, base + next_i, x->seq)
                                  : enc_transform(m, base + next_i, (float)x->seq);
            send_msg(&S, x->up, x->room, m, len);
            x->next += period;
            sent++;
            if (S.in_window) sent_window++;
            next_i = (next_i + 1) % nclients;
        }
        /* Sleep at least 1 ms when the next send is not due yet (epoll_wait has 1 ms
         * resolution; spinning would take a core from the server). Sends are then up to 1 ms
         * late; sent_at is the real send time, so latencies are not affected. */
        double wait_s = S.c[next_i].next - now_s();
        pump(&S, wait_s <= 0 ? 0 : (int)(wait_s * 1000) + 1);
    }
    double el = now_s() - w0;
    double cpu = own_cpu() - cpu0, pcpu = pid ? proc_cpu(pid) - pcpu0 : 0;
    long rss = pid ? proc_rss_kb(pid) : -1;
    if (pid) proc_threads(pid, &th1);
    S.in_window = false;
    pump_until(&S, now_s() + 0.3); /* late updates are not lost */
    uint64_t lost = 0;
    for (int i = 0; i < nclients; i++) lost += S.c[i].seq - S.c[i].seen;
    qsort(S.lat, S.nlat, sizeof(*S.lat), cmp_d);
#define PCT(p) (S.nlat ? S.lat[(size_t)((double)(S.nlat - 1) * (p))] : -1.0)
    double rts = 0, minrt = 1e9, rbytes = 0;
    for (int k = 0; k < nsubs; k++) {
        rts += (double)subs[k]->rts;
        rbytes += (double)subs[k]->rbytes;
        if ((double)subs[k]->rts < minrt) minrt = (double)subs[k]->rts;
    }
    const char *bname = ver == 8 ? "ROOM_POSE" : "ROOM_TRANSFORM";
    printf("protocol %s clients %d rooms %d hz %.0f subs %d window %.1fs: sent %llu (%.0f/s)\n",
           ver == 8 ? "8" : "v0.6", nclients, nrooms, hz, nsubs, el, (unsigned long long)sent,
           (double)sent_window / el);
    printf("first-seen ms p50 %.1f p90 %.1f p99 %.1f max %.1f (n=%zu)\n", PCT(0.5), PCT(0.9),
           PCT(0.99), S.nlat ? S.lat[S.nlat - 1] : -1.0, S.nlat);
    printf("%s %.1f Hz per subscriber (slowest %.1f), %.0f kB/s per subscriber; unseen at end "
           "%llu of %llu updates; connections closed by the server %llu; entries of other rooms' "
           "clients %llu\n",
           bname, rts / nsubs / el, minrt / el, rbytes / nsubs / el / 1e3,
           (unsigned long long)lost, (unsigned long long)sent,
           (unsigned long long)(S.closed - closed0), (unsigned long long)S.foreign);
    double thr_max = 0;
    char thr_s[512] = "";
    size_t tl = 0;
    for (int k = 0; k < th1.n; k++) { /* threads that lived through the window, by CPU */
        double b = -1;
        for (int j = 0; j < th0.n; j++)
            if (th0.tid[j] == th1.tid[k]) b = th0.sec[j];
        if (b < 0) continue;
        double pc = (th1.sec[k] - b) / el * 100;
        if (pc > thr_max) thr_max = pc;
        if (pc >= 0.5 && tl + 40 < sizeof(thr_s))
            tl += (size_t)snprintf(thr_s + tl, sizeof(thr_s) - tl, "%s%s:%.1f", tl ? "," : "",
                                   th1.name[k], pc);
    }
    for (char *q = thr_s; *q; q++)
        if (*q == ' ') *q = '_';
    if (pid)
        printf("server cpu %.1f%% of a core (threads over 0.5%%: %s), rss %ld kB\n",
               pcpu / el * 100, thr_s, rss);
    printf("simulator cpu %.1f%% of a core (queued %llu bytes for EPOLLOUT, %llu send errors)\n",
           cpu / el * 100, (unsigned long long)S.queued_bytes, (unsigned long long)S.send_errors);
    printf("RESULT ver=%d clients=%d rooms=%d hz=%.0f subs=%d sent_per_s=%.0f p50=%.2f p90=%.2f "
           "p99=%.2f max=%.2f n=%zu rate=%.2f rate_min=%.2f kBps=%.1f unseen=%llu sent=%llu "
           "closed=%llu foreign=%llu server_cpu=%.2f thr_max=%.2f threads=%s rss_kb=%ld sim_cpu=%.2f\n",
           ver, nclients, nrooms, hz, nsubs, (double)sent_window / el, PCT(0.5), PCT(0.9),
           PCT(0.99), S.nlat ? S.lat[S.nlat - 1] : -1.0, S.nlat, rts / nsubs / el, minrt / el,
           rbytes / nsubs / el / 1e3, (unsigned long long)lost, (unsigned long long)sent,
           (unsigned long long)S.closed, (unsigned long long)S.foreign, pid ? pcpu / el * 100 : -1.0, thr_max, thr_s[0] ? thr_s : "-", rss, cpu / el * 100);
    return 0;
}

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
    int qport = 5557, storm_n = 0, base = 0, ver = 6;
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
        else if (!strcmp(a, "-Q")) qport = atoi(v), i++;
        else if (!strcmp(a, "-V")) ver = strcmp(v, "8") ? 6 : 8, i++;
        else if (!strcmp(a, "--storm")) storm_n = atoi(v), i++;
        else if (!strcmp(a, "-o")) base = atoi(v), i++;
        else {
            fprintf(stderr, "usage: see the header of bench/netsync_sim.c\n");
            return 2;
        }
    }
    if (strcmp(host, "127.0.0.1") && !storm_n) {
        /* conn_open takes a dotted IPv4 address */
        struct in_addr tmp;
        if (inet_pton(AF_INET, host, &tmp) != 1) {
            fprintf(stderr, "netsync_sim: -H takes an IPv4 address, not '%s'\n", host);
            return 2;
        }
    }
    if (nclients < 1 || nrooms < 1 || nrooms > 1000 || hz <= 0) {
        fprintf(stderr, "netsync_sim: need -c >= 1, 1 <= -r <= 1000, -z > 0\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (!storm_n)
        return load(ver, nclients, nrooms, hz, dur, warm, subs_per_room, pid, host, rport, pport,
                    qport, base);
    void *ctx = zmq_ctx_new();
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, 65536);
    double c0 = own_cpu(), p0 = pid ? proc_cpu(pid) : 0, t0 = now_s();
    int rc = storm(ctx, host, rport, pport, storm_n);
    double el = now_s() - t0;
    if (pid)
        printf("server cpu %.1f%% rss %ld kB; sim cpu %.1f%%\n", (proc_cpu(pid) - p0) / el * 100,
               proc_rss_kb(pid), (own_cpu() - c0) / el * 100);
    zmq_ctx_term(ctx);
    return rc;
}
