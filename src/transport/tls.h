/* tls.h — TLS for stream connections, with OpenSSL, on the edge-triggered loop.
 *
 * Two objects. An rc_tls_ctx is what a TLS listener hands to the connections it accepts: the
 * certificate and key (an SSL_CTX), TLS 1.2 and later only, ALPN "http/1.1". SIGHUP reloads it
 * (rc_tls_ctx_reload) into a new SSL_CTX that only new connections use: every SSL holds a
 * reference to the SSL_CTX it was made from, so the old one lives on exactly as long as the
 * connections that still use it, and none of them is dropped.
 *
 * An rc_tls_conn is one connection's TLS session over its non-blocking socket. The connection
 * layer (conn.c) drives it: rc_tls_handshake until it is done, then rc_tls_read for input and
 * rc_tls_flush for its output queue. Each returns RC_TLS_WANT_READ or RC_TLS_WANT_WRITE when
 * OpenSSL needs the socket to be readable or writable first — not necessarily the direction of
 * the call: a read can need to write (a key update, an alert) and a write can need to read —
 * and the caller turns that into loop interest and calls again when it comes.
 *
 * Encode once, send many still holds: the output queue keeps the shared plaintext frames of a
 * broadcast; rc_tls_flush encrypts them per connection at write time.
 */
#ifndef RC_TLS_H
#define RC_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "transport/outq.h"

/* Results besides a byte count (negative so that they never look like one). */
enum {
    RC_TLS_WANT_READ = -1,   /* call again once the socket is readable */
    RC_TLS_WANT_WRITE = -2,  /* call again once the socket is writable */
    RC_TLS_FAIL = -3,        /* protocol error or socket failure: close the connection */
};

typedef struct rc_tls_ctx rc_tls_ctx;

/* The protocol a TLS listener speaks, as ALPN (RFC 7301) names it. */
typedef enum rc_tls_alpn {
    /* "http/1.1": HTTP and the WebSocket upgrade. A client offering only other protocols gets
     * no ALPN answer rather than an alert, so that it can still fall back. */
    RC_TLS_ALPN_HTTP,
    /* "roomcast-tcp": the raw TCP room protocol (docs/tcp.md). A client that offers no ALPN
     * is served; one that offers protocols but not this one (a browser, an HTTP library sent
     * to the wrong port) is refused with the no_application_protocol alert, so that its bytes
     * are never read as room-protocol lines (cross-protocol confusion). */
    RC_TLS_ALPN_ROOMCAST_TCP,
} rc_tls_alpn;

/* Counters of one context (and of the SSL_CTXs it replaced), for /metrics. */
typedef struct rc_tls_stats {
    uint64_t handshakes_ok;     /* handshakes completed */
    uint64_t handshakes_failed; /* handshakes that failed: garbage, protocol version, timeout */
    uint64_t reloads;           /* certificate reloads that took effect */
    uint64_t reload_failures;   /* reloads refused (the old certificate stays) */
} rc_tls_stats;

/* A connection's TLS state. Owned by its rc_conn (rc_tls_conn_free at close). */
typedef struct rc_tls_conn {
    struct ssl_st *ssl;      /* the session; holds a reference to its SSL_CTX */
    rc_tls_stats *stats;     /* its context's counters (the context outlives its sessions) */
    char *retry;             /* plaintext of an SSL_write that must be repeated (WANT_*), or
                                NULL; OpenSSL requires the same bytes and length again */
    size_t retry_len;        /* its length, bytes */
    bool done;               /* the handshake finished */
    bool hs_want_write;      /* the handshake waits for writability */
    bool rd_want_write;      /* SSL_read waits for writability */
    bool wr_want_read;       /* SSL_write waits for readability */
    uint64_t proto_timer;    /* ns the protocol's own timer had left when the handshake
                                deadline replaced it (conn.c re-arms it once the handshake is
                                done), 0 if it did not */
} rc_tls_conn;

/* rc_tls_ctx_new loads cert_file (PEM, chain allowed) and key_file. NULL after logging why.
 * The file names are copied (reload reads them again). */
rc_tls_ctx *rc_tls_ctx_new(const char *cert_file, const char *key_file);

/* rc_tls_ctx_reload reads the files again into a new SSL_CTX for new connections. Returns 0,
 * or -1 after logging why (the current certificate stays in use). */
int rc_tls_ctx_reload(rc_tls_ctx *t);

/* rc_tls_ctx_free releases t; sessions made from it keep their SSL_CTX alive until freed. */
void rc_tls_ctx_free(rc_tls_ctx *t);

/* rc_tls_ctx_stats gives t's counters (bumped by the rc_tls_conn calls below). */
rc_tls_stats *rc_tls_ctx_stats(rc_tls_ctx *t);

/* rc_tls_conn_new starts a server-side session on the connected socket fd (not owned),
 * answering ALPN as alpn says. NULL when out of memory. */
rc_tls_conn *rc_tls_conn_new(rc_tls_ctx *t, int fd, rc_tls_alpn alpn);
void rc_tls_conn_free(rc_tls_conn *tc);

/* rc_tls_handshake advances the handshake: 1 when done (counted ok), RC_TLS_WANT_*, or
 * RC_TLS_FAIL (counted failed, reason logged at debug level). */
int rc_tls_handshake(rc_tls_conn *tc);

/* rc_tls_handshake_failed counts a handshake that did not finish in time. */
void rc_tls_handshake_failed(rc_tls_conn *tc);

/* rc_tls_read decrypts up to cap bytes into buf: the count (> 0), 0 at the peer's end of the
 * stream (close_notify, or a plain FIN: HTTP and WebSocket frame their own messages), or
 * RC_TLS_WANT_* / RC_TLS_FAIL. */
ssize_t rc_tls_read(rc_tls_conn *tc, void *buf, size_t cap);

/* rc_tls_pending is the number of decrypted bytes OpenSSL holds that no socket event will
 * announce: a reader must take them before the loop sleeps. */
size_t rc_tls_pending(const rc_tls_conn *tc);

/* rc_tls_flush encrypts and writes q (and first a pending retry) until both are empty or the
 * socket is full. Returns the plaintext bytes handed to OpenSSL (>= 0), or RC_TLS_FAIL.
 * Afterwards rc_tls_out_pending says whether anything is left for OpenSSL to take; a write
 * that waits for readability sets wr_want_read. sent/arg: as rc_outq_flush_cb. */
ssize_t rc_tls_flush(rc_tls_conn *tc, rc_outq *q, rc_outq_sent_fn *sent, void *arg);

static inline bool rc_tls_out_pending(const rc_tls_conn *tc, const rc_outq *q)
{
    return q->count > 0 || tc->retry != NULL;
}

/* rc_tls_shutdown sends close_notify if the socket takes it now (best effort: the TCP close
 * that follows ends the stream anyway). */
void rc_tls_shutdown(rc_tls_conn *tc);

#endif
