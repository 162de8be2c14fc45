/* ns_ceiling.c — the NetSync benchmark's ceiling: the least work any NetSync server must do to
 * move the bytes roomcast moves, on this machine.
 *
 *   build/ns_ceiling [-V 6|8] [-t TICK] [--bind ADDR]
 *   -> stderr: "ns_ceiling: netsync router tcp://A:P pub tcp://A:P discovery - pose tcp://A:P"
 *      (roomcast's start-up line, so bench/netsync.sh parses both the same way)
 *
 * One thread, one epoll loop, three listeners on free ports (router, pub, pose), ZMTP 3.0
 * with the NULL mechanism through bench/zmtp_min.h: greeting and READY (Socket-Type ROUTER on
 * the router and pose ports, PUB on the pub port), frames, PING -> PONG.
 *
 * What it does (the same bytes roomcast sends for the simulator's load):
 *   - a DEALER's message [room][payload]: -V 6 (default), a CLIENT_TRANSFORM (type 1) on the
 *     router port; -V 8, a CLIENT_POSE (type 11, version 8) on the pose port. The transform
 *     data after the deviceId (v0.6) / the pose body (v8) is copied into the connection's slot
 *     in its room (latest wins) and the room is marked dirty. A connection's first such
 *     message gives it its slot and client number (1, 2, ... per room).
 *   - every TICK (default 0.05 s for v0.6, 0.1 s for v8: roomcast's defaults) each dirty room's
 *     broadcast is encoded once — v0.6 ROOM_TRANSFORM `02 str8 room u16 n {u16 no, data}`,
 *     v8 ROOM_POSE `0c 08 str8 room f64 time u16 n {u16 no, f64 poseTime, body}` — framed
 *     once as [topic = room][body], and the same buffer is written with one send() to each
 *     subscriber of the room (queued when the kernel does not take it all).
 *   - a SUB's subscription (the 3.0 message `\x01topic` or the 3.1 SUBSCRIBE command) puts it
 *     on the list of the room whose id equals the topic.
 * What it skips, and roomcast does not: deviceIds (a slot belongs to a connection, not to a
 * device; no lookup, no re-join), validation of the payload beyond its type byte and length,
 * timeouts and departures (a slot stays until the end), HELLO and every control message (no
 * DEVICE_ID_MAPPING, RPC, variables, unicast downlink), idle re-broadcasts, prefix matching
 * of subscriptions (exact room ids only), unsubscribe, limits, slow-consumer policy (the
 * output queue is unbounded), metrics, stealth, object sync, discovery. Those are costs a
 * real server pays and the ceiling does not, which is the point of a ceiling.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include "zmtp_min.h"

#define MAX_ROOMS 1024
#define SLOT_MAX 1400           /* largest transform data kept (v0.6 with 50 virtuals: 1299) */
#define RBUF (1u << 20)

enum kind { K_LISTEN, K_TIMER, K_DEALER, K_SUB };

typedef struct slot {
    uint16_t len;               /* bytes in data */
    double t;                   /* arrival (v8 poseTime), monotonic seconds */
    uint8_t data[SLOT_MAX];     /* v0.6: transforms after the deviceId; v8: the pose body */
} slot;

typedef struct conn conn;

typedef struct room {
    char id[256];               /* room id (topic) */
    uint8_t idlen;              /* its length */
    bool dirty;                 /* a slot changed since the last broadcast */
    slot *slots;                /* client number k is slots[k - 1] */
    int nslots, capslots;
    conn **subs;                /* subscribers */
    int nsubs, capsubs;
    uint8_t *wire;              /* the framed broadcast being built */
    size_t capwire;
} room;

struct conn {
    uint8_t kind;               /* enum kind; first field: epoll data.ptr points here */
    int fd;
    bool greeted;               /* the peer's greeting was consumed */
    int frame;                  /* index of the next frame within the current message */
    int room;                   /* DEALER: room of the current message; SUB: subscribed room */
    int slot;                   /* DEALER: its slot (client number - 1), -1 before the first */
    int subidx;                 /* SUB: index in its room's subs, -1 when not subscribed */
    const char *type;           /* listener: Socket-Type it announces */
    uint8_t *left;              /* partial frame kept for the next recv() */
    size_t nleft, capleft;
    uint8_t *out;               /* bytes the kernel did not take yet */
    size_t nout, capout;
};

static int ver = 6, ep;
static room rooms[MAX_ROOMS];
static int nrooms;
static uint8_t rbuf[RBUF];
static unsigned long long bcasts, sends, queued;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void grow(uint8_t **b, size_t *cap, size_t need)
{
    if (need <= *cap) return;
    size_t nc = *cap ? *cap : 4096;
    while (nc < need) nc *= 2;
    *b = realloc(*b, nc);
    if (!*b) abort();
    *cap = nc;
}

static int room_find(const uint8_t *id, size_t len)
{
    if (len > 255) return -1;
    for (int i = 0; i < nrooms; i++)
        if (rooms[i].idlen == len && !memcmp(rooms[i].id, id, len)) return i;
    if (nrooms == MAX_ROOMS) return -1;
    room *r = &rooms[nrooms];
    memcpy(r->id, id, len);
    r->idlen = (uint8_t)len;
    return nrooms++;
}

static void conn_arm(conn *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0u), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_send(conn *c, const uint8_t *b, size_t n)
{
    if (c->nout == 0) {
        ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);
        if (w == (ssize_t)n) return;
        if (w < 0) {
            if (errno != EAGAIN) return; /* the read side sees the close */
            w = 0;
        }
        b += w, n -= (size_t)w;
        conn_arm(c, true);
    }
    queued += n;
    grow(&c->out, &c->capout, c->nout + n);
    memcpy(c->out + c->nout, b, n);
    c->nout += n;
}

static void conn_flush(conn *c)
{
    ssize_t w = send(c->fd, c->out, c->nout, MSG_NOSIGNAL);
    if (w < 0) return;
    memmove(c->out, c->out + w, c->nout - (size_t)w);
    c->nout -= (size_t)w;
    if (!c->nout) conn_arm(c, false);
}

static void conn_close(conn *c)
{
    if (c->kind == K_SUB && c->subidx >= 0) {
        room *r = &rooms[c->room];
        r->subs[c->subidx] = r->subs[--r->nsubs];
        r->subs[c->subidx]->subidx = c->subidx;
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->left), free(c->out), free(c);
}

static void subscribe(conn *c, const uint8_t *topic, size_t len)
{
    int ri = room_find(topic, len);
    if (ri < 0 || c->subidx >= 0) return; /* one subscription per SUB is all the load uses */
    room *r = &rooms[ri];
    if (r->nsubs == r->capsubs) {
        r->capsubs = r->capsubs ? 2 * r->capsubs : 64;
        r->subs = realloc(r->subs, (size_t)r->capsubs * sizeof(*r->subs));
    }
    c->room = ri;
    c->subidx = r->nsubs;
    r->subs[r->nsubs++] = c;
}

/* A DEALER's payload frame, for the room of its first frame. */
static void on_payload(conn *c, const uint8_t *b, size_t n)
{
    size_t skip;
    if (ver == 6) { /* 01 str8 deviceId data */
        if (n < 2 || b[0] != 1) return;
        skip = 2 + (size_t)b[1];
    } else { /* 0b 08 str8 deviceId body */
        if (n < 3 || b[0] != 11 || b[1] != 8) return;
        skip = 3 + (size_t)b[2];
    }
    if (skip >= n || n - skip > SLOT_MAX || c->room < 0) return;
    room *r = &rooms[c->room];
    if (c->slot < 0) {
        if (r->nslots == r->capslots) {
            r->capslots = r->capslots ? 2 * r->capslots : 64;
            r->slots = realloc(r->slots, (size_t)r->capslots * sizeof(*r->slots));
        }
        c->slot = r->nslots++;
    }
    slot *s = &r->slots[c->slot];
    s->len = (uint16_t)(n - skip);
    s->t = now_s();
    memcpy(s->data, b + skip, s->len);
    r->dirty = true;
}

static size_t conn_parse(conn *c, const uint8_t *buf, size_t n)
{
    size_t o = 0;
    if (!c->greeted) {
        if (n < ZM_GREETING_LEN) return 0;
        c->greeted = true;
        o = ZM_GREETING_LEN;
    }
    zm_frame f;
    while (o < n) {
        int r = zm_parse(buf + o, n - o, RBUF / 2, &f);
        if (r <= 0) {
            if (r < 0) o = n; /* garbage: drop the buffer (the load never sends it) */
            break;
        }
        const uint8_t *b = buf + o + f.hlen;
        if (f.flags & ZM_CMD) {
            uint8_t pong[300];
            size_t pl = f.size < 256 ? zm_pong(b, f.size, pong) : 0;
            if (pl) conn_send(c, pong, pl);
            else if (c->kind == K_SUB && f.size >= 10 && !memcmp(b, "\x09SUBSCRIBE", 10))
                subscribe(c, b + 10, f.size - 10);
        } else if (c->kind == K_SUB) {
            if (f.size >= 1 && b[0] == 1) subscribe(c, b + 1, f.size - 1);
        } else {
            if (c->frame == 0) {
                int ri = room_find(b, f.size);
                /* a connection keeps the room of its first transform (the load never moves) */
                if (c->slot < 0 || ri == c->room) c->room = ri;
                else c->room = -1;
            } else if (c->frame == 1) {
                on_payload(c, b, f.size);
            }
            c->frame = (f.flags & ZM_MORE) ? c->frame + 1 : 0;
        }
        o += f.hlen + f.size;
    }
    return o;
}

static void conn_read(conn *c)
{
    size_t have = c->nleft;
    memcpy(rbuf, c->left, have);
    for (;;) {
        ssize_t r = recv(c->fd, rbuf + have, RBUF - have, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_close(c);
            return;
        }
        if (r < 0) break;
        size_t space = RBUF - have;
        have += (size_t)r;
        size_t used = conn_parse(c, rbuf, have);
        memmove(rbuf, rbuf + used, have - used);
        have -= used;
        if ((size_t)r < space) break;
    }
    grow(&c->left, &c->capleft, have);
    memcpy(c->left, rbuf, have);
    c->nleft = have;
}

static void on_accept(conn *l)
{
    for (;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn *c = calloc(1, sizeof(*c));
        c->kind = strcmp(l->type, "PUB") ? K_DEALER : K_SUB;
        c->fd = fd, c->room = -1, c->slot = -1, c->subidx = -1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        uint8_t hs[ZM_GREETING_LEN + 64];
        zm_greeting(hs, 1);
        size_t n = ZM_GREETING_LEN + zm_ready(hs + ZM_GREETING_LEN, l->type);
        conn_send(c, hs, n);
    }
}

static void put_u16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
}

/* Encodes each dirty room's broadcast once and writes it to every subscriber. */
static void tick(void)
{
    double t = now_s();
    for (int ri = 0; ri < nrooms; ri++) {
        room *r = &rooms[ri];
        if (!r->dirty) continue;
        r->dirty = false;
        if (!r->nsubs) continue;
        size_t body = (ver == 6 ? 1 : 10) + 1 + r->idlen + 2; /* type (ver) str8 (f64) u16 */
        for (int k = 0; k < r->nslots; k++)
            body += 2 + (ver == 8 ? 8 : 0) + r->slots[k].len;
        grow(&r->wire, &r->capwire, 2 + r->idlen + 9 + body);
        uint8_t *w = r->wire;
        size_t n = zm_put_hdr(w, ZM_MORE, r->idlen);
        memcpy(w + n, r->id, r->idlen), n += r->idlen;
        n += zm_put_hdr(w + n, 0, body);
        w[n++] = ver == 6 ? 2 : 12;
        if (ver == 8) w[n++] = 8;
        w[n++] = r->idlen;
        memcpy(w + n, r->id, r->idlen), n += r->idlen;
        if (ver == 8) memcpy(w + n, &t, 8), n += 8; /* f64 LE on this host */
        put_u16(w + n, (unsigned)r->nslots), n += 2;
        for (int k = 0; k < r->nslots; k++) {
            slot *s = &r->slots[k];
            put_u16(w + n, (unsigned)k + 1), n += 2;
            if (ver == 8) memcpy(w + n, &s->t, 8), n += 8;
            memcpy(w + n, s->data, s->len), n += s->len;
        }
        if (n != (size_t)(r->idlen + (body > 255 ? 9 : 2) + 2 + body)) abort(); /* framing */
        bcasts++;
        for (int k = 0; k < r->nsubs; k++) {
            conn_send(r->subs[k], w, n);
            sends++;
        }
    }
}

static volatile sig_atomic_t stop;
static void on_sig(int s)
{
    (void)s;
    stop = 1;
}

static conn *listen_on(const char *addr, const char *type, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t al = sizeof(a);
    if (inet_pton(AF_INET, addr, &a.sin_addr) != 1 || bind(fd, (struct sockaddr *)&a, al) < 0 ||
        listen(fd, 4096) < 0 || getsockname(fd, (struct sockaddr *)&a, &al) < 0) {
        fprintf(stderr, "ns_ceiling: cannot listen on '%s': %s\n", addr, strerror(errno));
        exit(1);
    }
    *port = ntohs(a.sin_port);
    conn *l = calloc(1, sizeof(*l));
    l->kind = K_LISTEN, l->fd = fd, l->type = type;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = l};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    return l;
}

int main(int argc, char **argv)
{
    const char *bind_addr = "127.0.0.1";
    double tickv = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
        if (!strcmp(a, "-V")) ver = strcmp(v, "8") ? 6 : 8, i++;
        else if (!strcmp(a, "-t")) tickv = atof(v), i++;
        else if (!strcmp(a, "--bind")) bind_addr = v, i++;
        else {
            fprintf(stderr, "usage: ns_ceiling [-V 6|8] [-t TICK] [--bind ADDR]\n");
            return 2;
        }
    }
    if (tickv <= 0) tickv = ver == 8 ? 0.1 : 0.05;
    signal(SIGINT, on_sig);
    signal(SIGTERM, on_sig);
    signal(SIGPIPE, SIG_IGN);
    ep = epoll_create1(0);
    int rp, pp, qp;
    listen_on(bind_addr, "ROUTER", &rp);
    listen_on(bind_addr, "PUB", &pp);
    listen_on(bind_addr, "ROUTER", &qp);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec its = {0};
    its.it_interval.tv_sec = (time_t)tickv;
    its.it_interval.tv_nsec = (long)((tickv - (double)(time_t)tickv) * 1e9);
    its.it_value = its.it_interval;
    timerfd_settime(tfd, 0, &its, NULL);
    conn timer = {.kind = K_TIMER, .fd = tfd};
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = &timer};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);
    fprintf(stderr,
            "ns_ceiling: netsync router tcp://%s:%d pub tcp://%s:%d discovery - pose tcp://%s:%d"
            " (protocol %s, tick %.3f s)\n",
            bind_addr, rp, bind_addr, pp, bind_addr, qp, ver == 8 ? "8" : "v0.6", tickv);
    struct epoll_event ev[256];
    while (!stop) {
        int n = epoll_wait(ep, ev, 256, -1);
        for (int i = 0; i < n; i++) {
            conn *c = ev[i].data.ptr;
            if (c->kind == K_LISTEN) {
                on_accept(c);
            } else if (c->kind == K_TIMER) {
                uint64_t x;
                if (read(tfd, &x, sizeof(x)) == sizeof(x)) tick();
            } else {
                /* each fd is in the batch once, and only its own event closes it */
                if (ev[i].events & EPOLLOUT) conn_flush(c);
                if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) conn_read(c);
            }
        }
    }
    fprintf(stderr, "ns_ceiling: %llu broadcasts, %llu sends, %llu bytes queued\n", bcasts, sends,
            queued);
    return 0;
}
