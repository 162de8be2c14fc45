/* sock.c — socket helpers; see sock.h. */
#include "transport/sock.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int rc_sock_listen(const char *addr, uint16_t port, int backlog, uint16_t *bound_port)
{
    return rc_sock_listen_flags(addr, port, backlog, 0, bound_port);
}

int rc_sock_listen_flags(const char *addr, uint16_t port, int backlog, int flags,
                         uint16_t *bound_port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
    if (getaddrinfo(addr, portstr, &hints, &res) != 0) return -EINVAL;
    int fd = -1, err = EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        /* Unlike SO_REUSEADDR, a failure here must not pass unnoticed: the process would
         * then hold the port alone and a second node's bind would fail for no visible reason. */
        if ((flags & RC_SOCK_REUSEPORT) &&
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
            err = errno;
            close(fd);
            fd = -1;
            continue;
        }
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, backlog) == 0) break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) return -err;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (bound_port && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) *bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else *bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return fd;
}

int rc_sock_accept(int lfd, struct sockaddr_storage *peer)
{
    for (;;) {
        socklen_t sl = sizeof(*peer);
        if (peer) peer->ss_family = AF_UNSPEC;
        int fd = accept4(lfd, (struct sockaddr *)peer, peer ? &sl : NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return -errno;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return fd;
    }
}
