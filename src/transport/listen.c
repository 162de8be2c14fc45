/* listen.c — listening sockets; see listen.h. */
#include "transport/listen.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "transport/sock.h"

#define listener_of_timer(t) \
    ((rc_listener *)(void *)((char *)(t) - offsetof(rc_listener, pause_timer)))

/* Connections accepted per wake-up at most. */
#define RC_ACCEPT_BATCH 64

static void on_pause_timer(rc_loop *loop, rc_timer *t)
{
    rc_listener *l = listener_of_timer(t);
    if (l->io.fd >= 0 && !l->net->shutting_down) rc_io_set(loop, &l->io, RC_EV_READ);
}

static void shed_connection(rc_listener *l)
{
    if (l->reserve_fd >= 0) {
        close(l->reserve_fd);
        l->reserve_fd = -1;
        int fd = rc_sock_accept(l->io.fd, NULL);
        if (fd >= 0) close(fd);
        l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    rc_loop *loop = l->net->loop;
    rc_io_set(loop, &l->io, 0);
    rc_timer_start(loop, &l->pause_timer, rc_loop_now(loop) + 100 * RC_NS_PER_MS);
}

static void on_listen(rc_loop *loop, rc_io *io, uint32_t events)
{
    rc_listener *l = (rc_listener *)io;
    rc_net *net = l->net;
    for (int i = 0; i < RC_ACCEPT_BATCH; i++) {
        struct sockaddr_storage peer;
        int fd = rc_sock_accept(io->fd, &peer);
        if (fd < 0) {
            if (fd == -EAGAIN || fd == -EWOULDBLOCK) return;
            net->stats.accept_errors++;
            if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
                rc_warn("cannot accept: %s (%u connections open)", strerror(-fd), net->nconns);
                shed_connection(l);
            } else {
                rc_warn("cannot accept: %s", strerror(-fd));
            }
            return;
        }
        rc_conn *c = rc_conn_new(net, fd, l->conn_size, l->proto);
        if (c) rc_conn_set_peer(c, (const struct sockaddr *)&peer);
        if (c && l->tls && rc_conn_start_tls(c, l->tls, l->tls_alpn) < 0) continue; /* closed */
        if (c && l->accepted) l->accepted(l->arg, c);
    }
}

int rc_listener_open(rc_listener *l, rc_net *net, const char *addr, uint16_t port)
{
    l->net = net;
    l->io.fd = l->reserve_fd = -1;
    rc_timer_init(&l->pause_timer, on_pause_timer);
    int fd = rc_sock_listen_flags(addr, port, 4096, l->reuseport ? RC_SOCK_REUSEPORT : 0,
                                  &l->port);
    if (fd < 0) return fd;
    rc_io_init(&l->io, fd, on_listen);
    if (rc_io_start(net->loop, &l->io, RC_EV_READ) < 0) {
        int err = errno;
        close(fd);
        l->io.fd = -1;
        return -err;
    }
    l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return 0;
}

void rc_listener_pause(rc_listener *l)
{
    if (l->net && l->io.fd >= 0) rc_io_set(l->net->loop, &l->io, 0);
}

void rc_listener_close(rc_listener *l)
{
    if (!l->net || l->io.fd < 0) return;
    rc_io_stop(l->net->loop, &l->io);
    close(l->io.fd);
    l->io.fd = -1;
    rc_timer_stop(l->net->loop, &l->pause_timer);
    if (l->reserve_fd >= 0) close(l->reserve_fd);
    l->reserve_fd = -1;
}
