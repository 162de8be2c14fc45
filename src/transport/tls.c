/* tls.c — OpenSSL sessions on non-blocking sockets; see tls.h.
 *
 * Every OpenSSL call that can fail is preceded by ERR_clear_error(): SSL_get_error() reads the
 * thread's error queue, and an entry left by another connection would make it misreport this
 * one's WANT_READ as a failure.
 */
#include "transport/tls.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/log.h"

struct rc_tls_ctx {
    SSL_CTX *ctx;            /* for new sessions; replaced by a reload */
    char *cert_file;         /* PEM certificate chain path (read again at reload) */
    char *key_file;          /* PEM private key path */
    rc_tls_stats stats;      /* counters */
};

/* One TLS record's worth of plaintext per SSL_write: with SSL_MODE_ENABLE_PARTIAL_WRITE each
 * call then produces exactly one record, so a write that must be repeated (WANT_WRITE) never
 * holds more than this in the retry copy. */
#define TLS_CHUNK 16384

/* Gathering buffer for small frames (outq.c's staging, for SSL_write); per thread as the output
 * queues belong to their loop's thread. */
static _Thread_local char tls_stage[TLS_CHUNK];

static const char *ssl_err(void)
{
    static _Thread_local char buf[256];
    unsigned long e = ERR_peek_last_error();
    if (!e) return errno ? strerror(errno) : "unknown error";
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

/* ALPN: each listener speaks one protocol (rc_tls_alpn, kept in the session's app data, as
 * every listener shares the SSL_CTX). The HTTP listeners answer nothing (NOACK) to a client
 * that offers only other protocols, so that it can still fall back (RFC 7301 §3.2 asks for an
 * alert, OpenSSL and most HTTP servers allow either). The raw TCP listener is strict: a client
 * that names protocols without ours is not one of our clients, and its bytes must not be read
 * as room-protocol lines. */
static const struct {
    const unsigned char *wire; /* the protocol list in wire format: length-prefixed names */
    unsigned len;              /* its length, bytes */
    int mismatch;              /* the callback's answer when the client offers none of it */
} alpn_table[] = {
    [RC_TLS_ALPN_HTTP] = {(const unsigned char *)"\x08http/1.1", 9, SSL_TLSEXT_ERR_NOACK},
    [RC_TLS_ALPN_ROOMCAST_TCP] = {(const unsigned char *)"\x0croomcast-tcp", 13,
                                  SSL_TLSEXT_ERR_ALERT_FATAL},
};

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)arg;
    uintptr_t which = (uintptr_t)SSL_get_app_data(ssl);
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, alpn_table[which].wire, alpn_table[which].len, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return alpn_table[which].mismatch;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* new_ssl_ctx builds an SSL_CTX from the two files, or NULL after logging why. */
static SSL_CTX *new_ssl_ctx(const char *cert_file, const char *key_file)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        rc_error("cannot create a TLS context: %s", ssl_err());
        return NULL;
    }
    /* TLS 1.0 and 1.1 are deprecated (RFC 8996). */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* No renegotiation: a client could otherwise make a write wait for a read at any time and
     * cost a handshake's CPU at will. A FIN without close_notify is an ordinary end: HTTP and
     * WebSocket frame their own messages, and browsers often close that way. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    /* PARTIAL_WRITE: SSL_write returns after each record instead of holding on to a large
     * buffer; MOVING_WRITE_BUFFER: a repeated write comes from the retry copy, not the
     * original address (same bytes and length, as OpenSSL requires); RELEASE_BUFFERS: an idle
     * connection does not keep OpenSSL's 2 x 17 KiB record buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        rc_error("cannot load TLS certificate '%s': %s", cert_file, ssl_err());
        goto err;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        rc_error("cannot load TLS key '%s': %s", key_file, ssl_err());
        goto err;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        rc_error("TLS key '%s' does not match certificate '%s': %s", key_file, cert_file,
                 ssl_err());
        goto err;
    }
    return ctx;
err:
    SSL_CTX_free(ctx);
    return NULL;
}

rc_tls_ctx *rc_tls_ctx_new(const char *cert_file, const char *key_file)
{
    rc_tls_ctx *t = calloc(1, sizeof(*t));
    if (!t || !(t->cert_file = strdup(cert_file)) || !(t->key_file = strdup(key_file))) {
        rc_error("out of memory");
        goto err;
    }
    if (!(t->ctx = new_ssl_ctx(cert_file, key_file))) goto err;
    return t;
err:
    rc_tls_ctx_free(t);
    return NULL;
}

int rc_tls_ctx_reload(rc_tls_ctx *t)
{
    SSL_CTX *ctx = new_ssl_ctx(t->cert_file, t->key_file);
    if (!ctx) {
        t->stats.reload_failures++;
        rc_warn("TLS certificate not reloaded: the current one stays in use");
        return -1;
    }
    /* Sessions hold their own reference: the old SSL_CTX goes with its last connection. */
    SSL_CTX_free(t->ctx);
    t->ctx = ctx;
    t->stats.reloads++;
    rc_info("TLS certificate reloaded from '%s' for new connections", t->cert_file);
    return 0;
}

void rc_tls_ctx_free(rc_tls_ctx *t)
{
    if (!t) return;
    SSL_CTX_free(t->ctx);
    free(t->cert_file);
    free(t->key_file);
    free(t);
}

rc_tls_stats *rc_tls_ctx_stats(rc_tls_ctx *t)
{
    return &t->stats;
}

rc_tls_conn *rc_tls_conn_new(rc_tls_ctx *t, int fd, rc_tls_alpn alpn)
{
    rc_tls_conn *tc = calloc(1, sizeof(*tc));
    if (!tc) return NULL;
    ERR_clear_error();
    if (!(tc->ssl = SSL_new(t->ctx)) || SSL_set_fd(tc->ssl, fd) != 1) {
        rc_tls_conn_free(tc);
        return NULL;
    }
    SSL_set_app_data(tc->ssl, (void *)(uintptr_t)alpn);
    SSL_set_accept_state(tc->ssl);
    tc->stats = &t->stats;
    return tc;
}

void rc_tls_conn_free(rc_tls_conn *tc)
{
    if (!tc) return;
    SSL_free(tc->ssl);
    free(tc->retry);
    free(tc);
}

int rc_tls_handshake(rc_tls_conn *tc)
{
    ERR_clear_error();
    int r = SSL_do_handshake(tc->ssl);
    tc->hs_want_write = false;
    if (r == 1) {
        tc->done = true;
        tc->stats->handshakes_ok++;
        const unsigned char *alpn;
        unsigned alpn_len;
        SSL_get0_alpn_selected(tc->ssl, &alpn, &alpn_len);
        rc_debug("TLS handshake done: %s %s, ALPN '%.*s'", SSL_get_version(tc->ssl),
                 SSL_get_cipher_name(tc->ssl), (int)alpn_len, alpn ? (const char *)alpn : "");
        return 1;
    }
    switch (SSL_get_error(tc->ssl, r)) {
    case SSL_ERROR_WANT_READ: return RC_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE: tc->hs_want_write = true; return RC_TLS_WANT_WRITE;
    default:
        /* The client's fault (garbage, plain HTTP, an old protocol version) or a lost socket:
         * counted, not worth more than a debug line each. */
        tc->stats->handshakes_failed++;
        rc_debug("TLS handshake failed: %s", ssl_err());
        ERR_clear_error();
        return RC_TLS_FAIL;
    }
}

void rc_tls_handshake_failed(rc_tls_conn *tc)
{
    tc->stats->handshakes_failed++;
}

ssize_t rc_tls_read(rc_tls_conn *tc, void *buf, size_t cap)
{
    ERR_clear_error();
    int r = SSL_read(tc->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    tc->rd_want_write = false;
    if (r > 0) return r;
    switch (SSL_get_error(tc->ssl, r)) {
    case SSL_ERROR_WANT_READ: return RC_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE: tc->rd_want_write = true; return RC_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: return 0;
    default:
        rc_debug("TLS read failed: %s", ssl_err());
        ERR_clear_error();
        return RC_TLS_FAIL;
    }
}

size_t rc_tls_pending(const rc_tls_conn *tc)
{
    int n = SSL_pending(tc->ssl);
    return n > 0 ? (size_t)n : 0;
}

/* Bytes handed to an SSL_write that returned WANT_* are committed: OpenSSL has encrypted
 * (part of) them and the call must be repeated with the same bytes and length. They are
 * therefore copied out of the output queue and taken off it at once, so that nothing the
 * queue does meanwhile (conflation replacing a frame, a slow consumer's unstarted frames being
 * dropped) can change what the retry passes. The copy is at most one record, and only happens
 * when the socket is full. The delivery-latency sample of a frame is taken when it is
 * committed, at most one socket-full early. */
ssize_t rc_tls_flush(rc_tls_conn *tc, rc_outq *q, rc_outq_sent_fn *sent, void *arg)
{
    size_t total = 0;
    tc->wr_want_read = false;
    for (;;) {
        const char *p;
        size_t n;
        bool retry = tc->retry != NULL;
        if (retry) {
            p = tc->retry;
            n = tc->retry_len;
        } else {
            if (q->count == 0) break;
            n = rc_outq_gather(q, tls_stage, TLS_CHUNK, &p);
        }
        ERR_clear_error();
        int w = SSL_write(tc->ssl, p, (int)n);
        if (w > 0) {
            if (!retry) {
                rc_outq_advance(q, (size_t)w, sent, arg);
                total += (size_t)w;
            } else if ((size_t)w < n) { /* the rest is a new write: no constraint on it */
                memmove(tc->retry, tc->retry + w, n - (size_t)w);
                tc->retry_len -= (size_t)w;
            } else {
                free(tc->retry);
                tc->retry = NULL;
                tc->retry_len = 0;
            }
            continue;
        }
        int e = SSL_get_error(tc->ssl, w);
        if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) {
            rc_debug("TLS write failed: %s", ssl_err());
            ERR_clear_error();
            return RC_TLS_FAIL;
        }
        if (!retry) {
            if (!(tc->retry = malloc(n))) return RC_TLS_FAIL;
            memcpy(tc->retry, p, n);
            tc->retry_len = n;
            rc_outq_advance(q, n, sent, arg);
            total += n;
        }
        tc->wr_want_read = e == SSL_ERROR_WANT_READ;
        break;
    }
    return (ssize_t)total;
}

void rc_tls_shutdown(rc_tls_conn *tc)
{
    if (!tc->done || tc->retry) return; /* a close_notify cannot overtake a pending record */
    ERR_clear_error();
    SSL_shutdown(tc->ssl);
    ERR_clear_error();
}
