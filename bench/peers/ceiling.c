/* ceiling.c — the benchmark's ceiling: the least work a room relay can do on this machine.
 *
 * It speaks just enough of the room protocol for roomcast-bench's fanout and pingpong to run
 * against it unchanged, and nothing more: there is no JSON parser and no routing on the
 * message path. The first frame of a connection is taken to be its join; the room name is cut
 * out of it with a substring search (once per connection, not per message) and names the
 * connection's group. Every later text frame is unmasked and relayed to every member of the
 * group as a pre-encoded frame: the sender's bytes minus the closing brace, followed by
 * `,"room":"NAME","client_id":N,"msg_id":M}` — what a perfect server would send, made with
 * memcpy. Frames for one recipient are coalesced and written with one write() per loop turn, as
 * fast as the kernel accepts them. No limits, no keepalive, no slow-consumer handling: those are
 * costs roomcast pays and the ceiling does not, which is the point of a ceiling.
 *
 *   build/bench-ceiling --bind 127.0.0.1 --port 0
 *   -> stderr: "bench-ceiling: listening on http://127.0.0.1:PORT/"
 *
 * `--fault drop|dup|swap|gap|resend --fault-every N` makes every Nth relay wrong on purpose (one
 * member misses it, gets it twice, gets it after the next one; the room skips a msg_id; or the
 * room sequences it twice, under two msg_ids), to prove that roomcast-bench's correctness
 * counters catch each kind of mistake (bench/README.md).
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

struct group;

struct conn {
    int fd;                  /* socket */
    bool upgraded;           /* handshake answered */
    bool dirty;              /* on the flush list */
    bool want_out;           /* EPOLLOUT armed */
    uint64_t client_id;      /* assigned at accept, never reused */
    struct group *g;         /* group (room) once joined */
    size_t gi;               /* index in g->m */
    char *in;                /* unparsed input */
    size_t in_len, in_cap;   /* bytes in `in`, its size */
    char *out;               /* output not yet accepted by the kernel */
    size_t out_off, out_len, out_cap; /* consumed prefix, end of data, size */
    struct conn *next_dirty; /* flush list link */
};

struct group {
    char name[256];          /* room name as sent (not unescaped) */
    size_t name_len;         /* bytes in name */
    uint64_t msg_id;         /* last msg_id relayed */
    struct conn **m;         /* members */
    size_t n, cap;           /* members, capacity */
};

static int ep;
static struct group **groups;
static size_t ngroups, groups_cap;
static struct conn *dirty;
static uint64_t next_client_id;
static char frame[1 << 21];

enum fault { F_NONE, F_DROP, F_DUP, F_SWAP, F_GAP, F_RESEND };
static enum fault fault;            /* deliberate mistake to make, for testing the generator */
static uint64_t fault_every = 1000; /* make it on every Nth relay */
static uint64_t relays;             /* messages relayed so far */
static char *held;                  /* F_SWAP: the frame held back for one member */
static size_t held_len;             /* its length */
static struct conn *held_for;       /* and who it is for */

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        perror("bench-ceiling: realloc");
        exit(2);
    }
    return p;
}

static void out_append(struct conn *c, const void *p, size_t n)
{
    if (c->out_cap - c->out_len < n) {
        if (c->out_off) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_cap - c->out_len < n) {
            size_t cap = c->out_cap ? c->out_cap : 4096;
            while (cap - c->out_len < n)
                cap *= 2;
            c->out = xrealloc(c->out, cap);
            c->out_cap = cap;
        }
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    if (!c->dirty) {
        c->dirty = true;
        c->next_dirty = dirty;
        dirty = c;
    }
}

static size_t frame_header(unsigned char *h, unsigned op, size_t n)
{
    h[0] = (unsigned char)(0x80 | op);
    if (n < 126) {
        h[1] = (unsigned char)n;
        return 2;
    }
    if (n < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    return 10;
}

static void conn_close(struct conn *c)
{
    if (held_for == c)
        held_for = NULL;
    if (c->g) {
        struct group *g = c->g;
        g->m[c->gi] = g->m[--g->n];
        g->m[c->gi]->gi = c->gi;
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1; /* freed after the loop turn: it may still be on the flush list */
}

static struct group *group_get(const char *name, size_t n)
{
    /* Linear search: once per connection, never per message. */
    for (size_t i = 0; i < ngroups; i++)
        if (groups[i]->name_len == n && memcmp(groups[i]->name, name, n) == 0)
            return groups[i];
    if (ngroups == groups_cap) {
        groups_cap = groups_cap ? groups_cap * 2 : 64;
        groups = xrealloc(groups, groups_cap * sizeof(*groups));
    }
    struct group *g = calloc(1, sizeof(*g));
    memcpy(g->name, name, n);
    g->name_len = n;
    groups[ngroups++] = g;
    return g;
}

static void join(struct conn *c, const char *p, size_t n)
{
    const char *k = memmem(p, n, "\"room\":\"", 8);
    if (!k) {
        conn_close(c);
        return;
    }
    k += 8;
    const char *e = memchr(k, '"', (size_t)(p + n - k));
    if (!e || e - k > 255) {
        conn_close(c);
        return;
    }
    struct group *g = group_get(k, (size_t)(e - k));
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 16;
        g->m = xrealloc(g->m, g->cap * sizeof(*g->m));
    }
    c->g = g;
    c->gi = g->n;
    g->m[g->n++] = c;
    char body[400];
    int bl = snprintf(body, sizeof(body),
                      "{\"type\":\"joined\",\"room\":\"%.*s\",\"client_id\":%llu,"
                      "\"last_msg_id\":%llu}",
                      (int)g->name_len, g->name, (unsigned long long)c->client_id,
                      (unsigned long long)g->msg_id);
    unsigned char h[10];
    size_t hl = frame_header(h, 1, (size_t)bl);
    out_append(c, h, hl);
    out_append(c, body, (size_t)bl);
}

static void relay(struct conn *c, const char *p, size_t n)
{
    struct group *g = c->g;
    char suffix[400];
    if (n == 0 || n > sizeof(frame) - 512)
        return;
    int sl = snprintf(suffix, sizeof(suffix), ",\"room\":\"%.*s\",\"client_id\":%llu,\"msg_id\":%llu}",
                      (int)g->name_len, g->name, (unsigned long long)c->client_id,
                      (unsigned long long)++g->msg_id);
    size_t body = n - 1 + (size_t)sl;
    size_t hl = frame_header((unsigned char *)frame, 1, body);
    memcpy(frame + hl, p, n - 1);
    memcpy(frame + hl + n - 1, suffix, (size_t)sl);
    bool bad = fault != F_NONE && ++relays % fault_every == 0;
    if (bad && fault == F_GAP)
        g->msg_id++;
    for (size_t i = 0; i < g->n; i++) {
        struct conn *m = g->m[i];
        if (bad && i == 0 && fault == F_DROP)
            continue;
        if (bad && i == 0 && fault == F_SWAP && !held_for) {
            held = xrealloc(held, hl + body);
            memcpy(held, frame, hl + body);
            held_len = hl + body;
            held_for = m;
            continue;
        }
        out_append(m, frame, hl + body);
        if (bad && i == 0 && fault == F_DUP)
            out_append(m, frame, hl + body);
        if (held_for == m && !bad) {
            out_append(m, held, held_len);
            held_for = NULL;
        }
    }
    if (bad && fault == F_RESEND) {
        fault = F_NONE;
        relay(c, p, n);
        fault = F_RESEND;
    }
}

static void handshake(struct conn *c)
{
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) {
        if (c->in_len > 16384)
            conn_close(c);
        return;
    }
    static const char name[] = "sec-websocket-key:";
    const char *key = NULL;
    size_t klen = 0;
    for (char *l = c->in; l && l < end; l = memchr(l, '\n', (size_t)(end - l) + 1)) {
        if (*l == '\n')
            l++;
        if (strncasecmp(l, name, sizeof(name) - 1) == 0) {
            key = l + sizeof(name) - 1;
            while (*key == ' ')
                key++;
            const char *ke = key;
            while (ke < end && *ke != '\r' && *ke != ' ')
                ke++;
            klen = (size_t)(ke - key);
        }
    }
    if (!key || klen > 64) {
        conn_close(c);
        return;
    }
    char in[128];
    unsigned char md[EVP_MAX_MD_SIZE], acc[64];
    unsigned mdlen = 0;
    memcpy(in, key, klen);
    memcpy(in + klen, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    EVP_Digest(in, klen + 36, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock(acc, md, (int)mdlen);
    char resp[256];
    int rl = snprintf(resp, sizeof(resp),
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acc);
    out_append(c, resp, (size_t)rl);
    size_t used = (size_t)(end + 4 - c->in);
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    c->upgraded = true;
}

static void frames(struct conn *c)
{
    size_t pos = 0;
    while (c->fd >= 0 && c->in_len - pos >= 2) {
        unsigned char *h = (unsigned char *)c->in + pos;
        unsigned op = h[0] & 0x0f;
        size_t hl = 2;
        uint64_t len = h[1] & 0x7f;
        if (!(h[1] & 0x80)) { /* clients must mask */
            conn_close(c);
            return;
        }
        if (len == 126) {
            if (c->in_len - pos < 4)
                break;
            len = ((uint64_t)h[2] << 8) | h[3];
            hl = 4;
        } else if (len == 127) {
            if (c->in_len - pos < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | h[2 + i];
            hl = 10;
        }
        if (len > (1u << 20)) {
            conn_close(c);
            return;
        }
        if (c->in_len - pos < hl + 4 + len)
            break;
        unsigned char *mk = h + hl, *pl = h + hl + 4;
        for (size_t i = 0; i < len; i++)
            pl[i] ^= mk[i & 3];
        pos += hl + 4 + (size_t)len;
        if (op == 0x1 || op == 0x2) {
            if (!c->g)
                join(c, (char *)pl, (size_t)len);
            else
                relay(c, (char *)pl, (size_t)len);
        } else if (op == 0x8) {
            unsigned char b[10];
            size_t bl = frame_header(b, 0x8, len >= 2 ? 2 : 0);
            out_append(c, b, bl);
            if (len >= 2)
                out_append(c, pl, 2);
            /* Best effort: the close answer goes out now, then the connection ends. */
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
            c->out_off = c->out_len = 0;
            conn_close(c);
            return;
        } else if (op == 0x9) {
            unsigned char b[10];
            out_append(c, b, frame_header(b, 0xA, (size_t)len));
            out_append(c, pl, (size_t)len);
        }
    }
    if (c->fd >= 0) {
        memmove(c->in, c->in + pos, c->in_len - pos);
        c->in_len -= pos;
    }
}

static void readable(struct conn *c)
{
    for (;;) {
        if (c->in_cap - c->in_len < 65536) {
            c->in_cap = c->in_cap ? c->in_cap * 2 : 131072;
            c->in = xrealloc(c->in, c->in_cap);
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            conn_close(c);
            return;
        }
        c->in_len += (size_t)n;
        if (!c->upgraded)
            handshake(c);
        if (c->fd >= 0 && c->upgraded)
            frames(c);
        if (c->fd < 0 || (size_t)n < 65536)
            return;
    }
}

static void flush(struct conn *c)
{
    while (c->out_len > c->out_off) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        conn_close(c);
        return;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    bool want = c->out_len > c->out_off;
    if (want != c->want_out) {
        struct epoll_event e = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
        c->want_out = want;
    }
}

int main(int argc, char **argv)
{
    const char *bind_addr = "127.0.0.1";
    int port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--bind"))
            bind_addr = argv[i + 1];
        else if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--fault-every"))
            fault_every = strtoull(argv[i + 1], NULL, 10) ? strtoull(argv[i + 1], NULL, 10) : 1;
        else if (!strcmp(argv[i], "--fault") && !strcmp(argv[i + 1], "drop"))
            fault = F_DROP;
        else if (!strcmp(argv[i], "--fault") && !strcmp(argv[i + 1], "dup"))
            fault = F_DUP;
        else if (!strcmp(argv[i], "--fault") && !strcmp(argv[i + 1], "swap"))
            fault = F_SWAP;
        else if (!strcmp(argv[i], "--fault") && !strcmp(argv[i + 1], "gap"))
            fault = F_GAP;
        else if (!strcmp(argv[i], "--fault") && !strcmp(argv[i + 1], "resend"))
            fault = F_RESEND;
        else {
            fprintf(stderr, "usage: bench-ceiling [--bind ADDR] [--port N] "
                            "[--fault drop|dup|swap|gap|resend [--fault-every N]]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, bind_addr, &a.sin_addr) != 1 ||
        bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 4096) != 0) {
        fprintf(stderr, "bench-ceiling: cannot listen on '%s:%d': %s\n", bind_addr, port,
                strerror(errno));
        return 1;
    }
    socklen_t al = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &al);
    fprintf(stderr, "bench-ceiling: listening on http://%s:%d/\n", bind_addr, ntohs(a.sin_port));
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le);

    static struct epoll_event ev[1024];
    struct conn **dead = NULL;
    size_t ndead = 0, dead_cap = 0;
    for (;;) {
        int n = epoll_wait(ep, ev, 1024, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = ev[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    struct conn *nc = calloc(1, sizeof(*nc));
                    nc->fd = fd;
                    nc->client_id = ++next_client_id;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                }
                continue;
            }
            if (c->fd < 0)
                continue;
            if (ev[i].events & EPOLLOUT)
                flush(c);
            if (c->fd >= 0 && (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                readable(c);
            if (c->fd < 0) {
                if (ndead == dead_cap) {
                    dead_cap = dead_cap ? dead_cap * 2 : 64;
                    dead = xrealloc(dead, dead_cap * sizeof(*dead));
                }
                dead[ndead++] = c;
            }
        }
        while (dirty) {
            struct conn *c = dirty;
            dirty = c->next_dirty;
            c->dirty = false;
            if (c->fd >= 0) {
                flush(c);
                if (c->fd < 0) {
                    if (ndead == dead_cap) {
                        dead_cap = dead_cap ? dead_cap * 2 : 64;
                        dead = xrealloc(dead, dead_cap * sizeof(*dead));
                    }
                    dead[ndead++] = c;
                }
            }
        }
        /* A connection closed during this turn may have been closed twice over (read error,
         * then flush); free each once. */
        for (size_t i = 0; i < ndead; i++) {
            if (!dead[i])
                continue;
            for (size_t j = i + 1; j < ndead; j++)
                if (dead[j] == dead[i])
                    dead[j] = NULL;
            free(dead[i]->in);
            free(dead[i]->out);
            free(dead[i]);
        }
        ndead = 0;
    }
}
