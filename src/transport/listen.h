/* listen.h — a listening socket on the loop that turns accepted sockets into connections.
 *
 * Each listener makes connections of one protocol (HTTP, raw TCP, chat) and of one size (its
 * owner's per-connection struct, which embeds rc_conn first), then tells its owner. Accepting
 * is bounded per wake-up so a connection storm cannot starve established clients, and
 * descriptor exhaustion is handled the way Redis and libuv do it: a reserve descriptor is given
 * back to accept and close the pending connection (the client sees a close instead of hanging),
 * then accepting pauses briefly so the loop cannot spin on a listener it cannot serve.
 */
#ifndef RC_LISTEN_H
#define RC_LISTEN_H

#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"
#include "transport/conn.h"

typedef struct rc_listener {
    rc_io io;                /* the listening socket; must stay first */
    rc_net *net;             /* where its connections go (not owned) */
    const rc_proto *proto;   /* what they speak */
    size_t conn_size;        /* bytes per connection (>= sizeof(rc_conn)) */
    /* accepted: a new connection; the owner sets up its part, and may refuse it with
     * rc_conn_end (the listener has no opinion on limits) */
    void (*accepted)(void *arg, rc_conn *c);
    void *arg;               /* for accepted */
    struct rc_tls_ctx *tls;  /* its connections speak TLS with this context (not owned), or
                                NULL for plain ones */
    int tls_alpn;            /* with tls: its ALPN answer (enum rc_tls_alpn, transport/tls.h) */
    int reuseport;           /* 1 = bind with SO_REUSEPORT (--reuseport): other processes that
                                also set it share the port, the kernel spreading connections */
    uint16_t port;           /* port actually bound */
    int reserve_fd;          /* spare descriptor released to shed connections at EMFILE */
    rc_timer pause_timer;    /* re-enables accepting after descriptor exhaustion */
} rc_listener;

/* rc_listener_open binds addr:port (0 picks a free port) and starts accepting. Returns 0, or
 * -errno (nothing to release then; -EADDRINUSE when another socket holds the port without
 * sharing it). The caller fills proto, conn_size, accepted and arg first (and tls, tls_alpn,
 * reuseport when wanted). */
int rc_listener_open(rc_listener *l, rc_net *net, const char *addr, uint16_t port);

/* rc_listener_pause stops accepting for good (shutdown); rc_listener_close releases it. */
void rc_listener_pause(rc_listener *l);
void rc_listener_close(rc_listener *l);

#endif
