/* nsdisc.c — UDP + TCP discovery on the loop; see nsdisc.h. */
#include "netsync/nsdisc.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"

#define container_of(p, T, m) ((T *)(void *)((char *)(p) - offsetof(T, m)))

struct nsy_disc_conn {
    rc_io io;                    /* first: the loop hands us this pointer */
    rc_timer timer;              /* NSY_DISC_TIMEOUT_NS to send the request */
    nsy_disc *d;                  /* owner */
    nsy_disc_conn *next, *prev;   /* open connections */
};

static void conn_close(nsy_disc_conn *c)
{
    nsy_disc *d = c->d;
    rc_io_stop(d->loop, &c->io);
    rc_timer_stop(d->loop, &c->timer);
    close(c->io.fd);
    if (c->prev) c->prev->next = c->next; else d->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    d->nconns--;
    free(c);
}

static void on_conn_timeout(rc_loop *loop, rc_timer *t)
{
    nsy_disc_conn *c = container_of(t, nsy_disc_conn, timer);
    c->d->st->discovery_bad++;
    conn_close(c);
}

static bool is_py_space(uint8_t ch)
{
    return ch == ' ' || (ch >= '\t' && ch <= '\r') || (ch >= 0x1c && ch <= 0x1f);
}

/* One read, like the reference's single recv(1024): a request split across segments is not
 * reassembled (no real client does that, and waiting for more would hold wrong requests). */
static void on_conn_read(rc_loop *loop, rc_io *io, uint32_t events)
{
    nsy_disc_conn *c = container_of(io, nsy_disc_conn, io);
    nsy_disc *d = c->d;
    char buf[1024];
    ssize_t n = recv(io->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    size_t a = 0, b = n > 0 ? (size_t)n : 0;
    while (a < b && is_py_space((uint8_t)buf[a])) a++;
    while (b > a && is_py_space((uint8_t)buf[b - 1])) b--;
    if (b - a == sizeof(NSY_DISC_REQUEST) - 1 && memcmp(buf + a, NSY_DISC_REQUEST, b - a) == 0) {
        /* ~50 bytes into a fresh socket's empty send buffer: it fits, or the peer is gone */
        (void)send(io->fd, d->reply[d->tcp_format], d->reply_len[d->tcp_format] + 1,
                   MSG_DONTWAIT | MSG_NOSIGNAL);
        d->st->discovery_tcp++;
    } else {
        d->st->discovery_bad++;
    }
    conn_close(c);
}

static void on_accept_timer(rc_loop *loop, rc_timer *t)
{
    nsy_disc *d = container_of(t, nsy_disc, accept_timer);
    rc_io_start(loop, &d->tcp_io, RC_EV_READ);
}

static void on_accept(rc_loop *loop, rc_io *io, uint32_t events)
{
    nsy_disc *d = container_of(io, nsy_disc, tcp_io);
    for (int i = 0; i < 64; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* level-triggered: pause accepting instead of spinning on the backlog */
                rc_io_stop(loop, io);
                rc_timer_start(loop, &d->accept_timer, rc_loop_now(loop) + 100 * RC_NS_PER_MS);
            }
            return;
        }
        nsy_disc_conn *c = d->nconns < NSY_DISC_MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
        if (!c) {
            d->st->discovery_refused++;
            close(fd);
            continue;
        }
        c->d = d;
        rc_io_init(&c->io, fd, on_conn_read);
        rc_timer_init(&c->timer, on_conn_timeout);
        if (rc_io_start(loop, &c->io, RC_EV_READ) < 0) {
            close(fd);
            free(c);
            continue;
        }
        rc_timer_start(loop, &c->timer, rc_loop_now(loop) + NSY_DISC_TIMEOUT_NS);
        c->next = d->conns;
        if (d->conns) d->conns->prev = c;
        d->conns = c;
        d->nconns++;
    }
}

static void on_udp(rc_loop *loop, rc_io *io, uint32_t events)
{
    nsy_disc *d = container_of(io, nsy_disc, udp_io);
    for (int i = 0; i < 64; i++) {
        char buf[64];
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(io->fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC,
                             (struct sockaddr *)&from, &fl);
        if (n < 0) return;
        if ((size_t)n == sizeof(NSY_DISC_REQUEST) - 1 &&
            memcmp(buf, NSY_DISC_REQUEST, (size_t)n) == 0) {
            for (int f = 0; f < NSY_DISC_FORMATS; f++) /* v0.6 first, as before v8 */
                (void)sendto(io->fd, d->reply[f], d->reply_len[f], MSG_DONTWAIT,
                             (struct sockaddr *)&from, fl);
            d->st->discovery_udp++;
        } else {
            d->st->discovery_bad++;
        }
    }
}

static int bind_one(const struct addrinfo *ai, int type, uint16_t port)
{
    int fd = socket(ai->ai_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_storage sa;
    memcpy(&sa, ai->ai_addr, ai->ai_addrlen);
    if (sa.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&sa)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)&sa)->sin_port = htons(port);
    if (bind(fd, (struct sockaddr *)&sa, ai->ai_addrlen) < 0 ||
        (type == SOCK_STREAM && listen(fd, 128) < 0)) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static uint16_t bound_port(int fd)
{
    struct sockaddr_storage sa;
    socklen_t l = sizeof(sa);
    if (getsockname(fd, (struct sockaddr *)&sa, &l) < 0) return 0;
    return ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                          : ((struct sockaddr_in *)&sa)->sin_port);
}

/* format_replies writes the three replies from d->ports and d->name (each fits: five ports
 * and a name of at most NSY_DISC_NAME_MAX bytes are under 160). */
static void format_replies(nsy_disc *d)
{
    const nsy_disc_ports *p = &d->ports;
    int n[NSY_DISC_FORMATS];
    n[0] = snprintf(d->reply[0], sizeof(d->reply[0]) - 1, "STYLY-NETSYNC|%u|%u|%s", p->control,
                    p->pub, d->name);
    n[1] = snprintf(d->reply[1], sizeof(d->reply[1]) - 1, "STYLY-NETSYNC2|%u|%u|%u|%s",
                    p->control, p->pose, p->pub, d->name);
    n[2] = snprintf(d->reply[2], sizeof(d->reply[2]) - 1, "STYLY-NETSYNC3|%u|%u|%u|%u|%s",
                    p->control, p->pose, p->pub, p->rest, d->name);
    for (int f = 0; f < NSY_DISC_FORMATS; f++) {
        d->reply_len[f] = (size_t)n[f];
        d->reply[f][n[f]] = '\n';
    }
}

void nsy_disc_set_rest_port(nsy_disc *d, uint16_t rest)
{
    d->ports.rest = rest;
    format_replies(d);
}

int nsy_disc_start(nsy_disc *d, rc_loop *loop, const char *addr, uint16_t port,
                   const nsy_disc_ports *ports, const char *name, bool tcp_v8,
                   rc_netsync_stats *st)
{
    *d = (nsy_disc){.loop = loop, .st = st, .ports = *ports, .tcp_format = tcp_v8 ? 2 : 0};
    rc_io_init(&d->udp_io, -1, on_udp);
    rc_io_init(&d->tcp_io, -1, on_accept);
    rc_timer_init(&d->accept_timer, on_accept_timer);
    if (strlen(name) > NSY_DISC_NAME_MAX || strchr(name, '|')) {
        rc_error("netsync server name '%s' is longer than %d bytes or holds a '|'", name,
                 NSY_DISC_NAME_MAX);
        return -EINVAL;
    }
    strcpy(d->name, name);
    format_replies(d);

    struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICHOST, .ai_socktype = SOCK_DGRAM};
    struct addrinfo *ai = NULL;
    const char *host = strcmp(addr, "*") == 0 ? NULL : addr;
    int g = getaddrinfo(host, "0", &hints, &ai);
    if (g != 0) {
        rc_error("cannot bind discovery to '%s': %s", addr, gai_strerror(g));
        return -EINVAL;
    }
    /* Port 0: the TCP listener picks a free port and UDP takes the same number; a clash with
     * another process's UDP socket is retried with a new port. */
    int rc = 0, tfd = -1, ufd = -1;
    for (int attempt = 0; attempt < 32; attempt++) {
        tfd = bind_one(ai, SOCK_STREAM, port);
        if (tfd < 0) {
            rc = tfd;
            break;
        }
        uint16_t p = bound_port(tfd);
        ufd = bind_one(ai, SOCK_DGRAM, p);
        if (ufd >= 0) {
            d->port = p;
            rc = 0;
            break;
        }
        rc = ufd;
        close(tfd);
        tfd = -1;
        if (port != 0 || rc != -EADDRINUSE) break;
    }
    freeaddrinfo(ai);
    if (rc < 0) {
        rc_error("cannot bind discovery '%s:%u': %s", addr, port, strerror(-rc));
        return rc;
    }
    rc_io_init(&d->udp_io, ufd, on_udp);
    rc_io_init(&d->tcp_io, tfd, on_accept);
    if ((rc = rc_io_start(loop, &d->udp_io, RC_EV_READ)) < 0 ||
        (rc = rc_io_start(loop, &d->tcp_io, RC_EV_READ)) < 0) {
        nsy_disc_stop(d);
        return rc;
    }
    return 0;
}

void nsy_disc_stop(nsy_disc *d)
{
    if (!d->loop) return;
    while (d->conns) conn_close(d->conns);
    rc_timer_stop(d->loop, &d->accept_timer);
    if (d->udp_io.fd >= 0) {
        rc_io_stop(d->loop, &d->udp_io);
        close(d->udp_io.fd);
        d->udp_io.fd = -1;
    }
    if (d->tcp_io.fd >= 0) {
        rc_io_stop(d->loop, &d->tcp_io);
        close(d->tcp_io.fd);
        d->tcp_io.fd = -1;
    }
}
