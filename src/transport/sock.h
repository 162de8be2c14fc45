/* sock.h — socket helpers: listening sockets and their options.
 *
 * Errors are returned as -errno (or -EAI_* mapped to -EINVAL for a bad address) and the
 * caller formats the message, so this layer never logs.
 */
#ifndef RC_SOCK_H
#define RC_SOCK_H

#include <stdint.h>
#include <sys/socket.h>

/* rc_sock_listen creates a non-blocking TCP socket bound to addr:port (IPv4 or IPv6 literal,
 * or a host name) and listening with the given backlog. port 0 picks a free port; the bound
 * port is stored in *bound_port. Returns the descriptor or -errno. */
int rc_sock_listen(const char *addr, uint16_t port, int backlog, uint16_t *bound_port);

/* Flags of rc_sock_listen_flags. */
#define RC_SOCK_REUSEPORT 1 /* SO_REUSEPORT: processes of the same user that all set it share
                               the port, and the kernel spreads new connections over them */

/* rc_sock_listen_flags is rc_sock_listen with RC_SOCK_* flags. A port held by a socket
 * without SO_REUSEPORT, or held with it by another user, still fails with -EADDRINUSE. */
int rc_sock_listen_flags(const char *addr, uint16_t port, int backlog, int flags,
                         uint16_t *bound_port);

/* rc_sock_accept accepts one connection, non-blocking and close-on-exec, with TCP_NODELAY
 * set (room messages are small and latency matters more than segment count), and stores the
 * peer's address in *peer (may be NULL; accept4 reports it at no extra cost). Returns the
 * descriptor or -errno (-EAGAIN when none is pending). */
int rc_sock_accept(int lfd, struct sockaddr_storage *peer);

#endif
