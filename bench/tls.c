/* tls.c — the generator's TLS (--tls): OpenSSL under the WebSocket and raw TCP clients of
 * conn.c and tcp.c, and the tls-handshakes scenario.
 *
 * Under a connection: the session is made when connect() is issued, the handshake runs from
 * rb__conn_flush once the socket is connected (nothing is written before it is done), then
 * every recv()/send() of conn.c goes through SSL_read/SSL_write. A write that returns WANT_*
 * is repeated with the same length: the bytes stay at the head of the output buffer, which may
 * move (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER). Reads fill the buffer record after record until
 * OpenSSL wants the socket, so nothing decrypted stays inside OpenSSL where the
 * level-triggered loop could not see it.
 *
 * tls-handshakes measures what a full handshake costs the server: --concurrency connections,
 * each connect -> full handshake (no session cache, no tickets, a fresh SSL each time) ->
 * close_notify -> wait for the server's end -> close, and again, for --duration seconds. The
 * client sends close_notify and waits instead of closing at once so that the server always
 * finishes its side (reads the client's Finished, sends its session tickets as it would for a
 * real client, sees the close) and the work counted is the work a real client causes.
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define TLS_RECORD 16384

static SSL_CTX *tls_ctx;

int rb_tls_init(const char *ca_file, const char *max_version)
{
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (!tls_ctx)
        return -1;
    SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION);
    if (max_version) {
        int v = !strcmp(max_version, "1.2") ? TLS1_2_VERSION
                : !strcmp(max_version, "1.3") ? TLS1_3_VERSION : 0;
        if (!v) {
            fprintf(stderr, "roomcast-bench: --tls-version wants 1.2 or 1.3, got '%s'\n",
                    max_version);
            return -1;
        }
        SSL_CTX_set_min_proto_version(tls_ctx, v);
        SSL_CTX_set_max_proto_version(tls_ctx, v);
    }
    SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(tls_ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (ca_file) {
        if (SSL_CTX_load_verify_locations(tls_ctx, ca_file, NULL) != 1) {
            fprintf(stderr, "roomcast-bench: cannot load CA '%s'\n", ca_file);
            return -1;
        }
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
    }
    return 0;
}

bool rb_tls_on(void)
{
    return tls_ctx != NULL;
}

int rb__tls_start(struct rb_conn *c)
{
    if (!(c->ssl = SSL_new(tls_ctx)) || SSL_set_fd(c->ssl, c->fd) != 1)
        return -1;
    SSL_set_connect_state(c->ssl);
    c->tls_hs = true;
    return 0;
}

void rb__tls_free(struct rb_conn *c)
{
    SSL_free(c->ssl);
    c->ssl = NULL;
    c->tls_hs = false;
    c->tls_retry = 0;
}

/* The reason of the last OpenSSL failure into c->errmsg. */
static void tls_error(struct rb_conn *c, const char *what, int e)
{
    unsigned long code = ERR_peek_last_error();
    char buf[160];
    if (code)
        ERR_error_string_n(code, buf, sizeof(buf));
    else
        snprintf(buf, sizeof(buf), "ssl error %d, %s", e, strerror(errno));
    snprintf(c->errmsg, sizeof(c->errmsg), "%s: %.48s", what, buf);
    ERR_clear_error();
}

int rb__tls_handshake(struct rb_conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    c->tls_want_write = false;
    if (r == 1) {
        c->tls_hs = false;
        return 1;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    if (e == SSL_ERROR_WANT_WRITE) {
        c->tls_want_write = true;
        return 0;
    }
    tls_error(c, "TLS handshake", e);
    return -1;
}

ssize_t rb__tls_read(struct rb_conn *c, void *buf, size_t cap)
{
    size_t got = 0;
    while (got < cap) {
        ERR_clear_error();
        int want = cap - got > (size_t)INT32_MAX ? INT32_MAX : (int)(cap - got);
        int r = SSL_read(c->ssl, (char *)buf + got, want);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (got)
            return (ssize_t)got; /* the end or the error comes with the next call */
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            errno = EAGAIN;
            return -1;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0) ||
            (e == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_last_error()) ==
                                       SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
            ERR_clear_error();
            return 0;
        }
        tls_error(c, "TLS read", e);
        errno = EPROTO;
        return -1;
    }
    return (ssize_t)got;
}

ssize_t rb__tls_write(struct rb_conn *c, const void *p, size_t n)
{
    /* One record at a time; a repeated write passes the same length (and bytes). */
    int len = c->tls_retry ? c->tls_retry : (int)(n > TLS_RECORD ? TLS_RECORD : n);
    ERR_clear_error();
    int w = SSL_write(c->ssl, p, len);
    if (w > 0) {
        c->tls_retry = 0;
        return w;
    }
    int e = SSL_get_error(c->ssl, w);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        c->tls_retry = len;
        errno = EAGAIN;
        return -1;
    }
    tls_error(c, "TLS write", e);
    errno = EPROTO;
    return -1;
}

void rb__tls_shutdown(struct rb_conn *c)
{
    if (c->ssl && !c->tls_hs && !c->tls_retry) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
}

/* "RSA-2048", "EC-P-256"... of the server's certificate. */
static void key_name(SSL *ssl, char *out, size_t cap)
{
    X509 *cert = SSL_get0_peer_certificate(ssl);
    EVP_PKEY *k = cert ? X509_get0_pubkey(cert) : NULL;
    if (!k) {
        snprintf(out, cap, "?");
        return;
    }
    int id = EVP_PKEY_get_base_id(k);
    if (id == EVP_PKEY_EC) {
        char group[64] = "?";
        size_t gl = 0;
        EVP_PKEY_get_utf8_string_param(k, "group", group, sizeof(group), &gl);
        snprintf(out, cap, "EC-%s", group);
    } else {
        snprintf(out, cap, "%s-%d", id == EVP_PKEY_RSA ? "RSA" : OBJ_nid2sn(id),
                 EVP_PKEY_get_bits(k));
    }
}

void rb__tls_describe(struct rb_conn *c, struct rb_result *r)
{
    if (!c->ssl)
        return;
    char key[80];
    key_name(c->ssl, key, sizeof(key));
    rb_result_str(r, "tls_version", SSL_get_version(c->ssl));
    rb_result_str(r, "tls_cipher", SSL_get_cipher_name(c->ssl));
    int nid = SSL_get_negotiated_group(c->ssl);
    rb_result_str(r, "tls_group", nid ? OBJ_nid2sn(nid) : "?");
    rb_result_str(r, "tls_cert_key", key);
}

/* ---- tls-handshakes ------------------------------------------------------------------------ */

enum hs_phase { HS_CONNECTING, HS_HANDSHAKE, HS_DRAIN };

struct hs_conn {
    struct rb_conn c;        /* fd, ssl, errmsg (only these parts of rb_conn are used) */
    enum hs_phase phase;     /* where it is */
    uint32_t n;              /* its index, for its source address */
    uint64_t t0;             /* when connect() was issued, ns */
};

static int hs_ep = -1;

static int hs_begin(struct hs_conn *h, const struct rb_opts *o)
{
    struct rb_conn *c = &h->c;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(rb_src_addr(h->n))};
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0 ||
        (connect(fd, (const struct sockaddr *)&o->target.addr, sizeof(o->target.addr)) != 0 &&
         errno != EINPROGRESS)) {
        int e = errno;
        close(fd);
        return -e;
    }
    c->fd = fd;
    c->errmsg[0] = 0;
    if (rb__tls_start(c) != 0) {
        close(fd);
        c->fd = -1;
        return -ENOMEM;
    }
    h->phase = HS_CONNECTING;
    h->t0 = rb_now_ns();
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = h};
    epoll_ctl(hs_ep, EPOLL_CTL_ADD, fd, &e);
    return 0;
}

static void hs_end(struct hs_conn *h)
{
    epoll_ctl(hs_ep, EPOLL_CTL_DEL, h->c.fd, NULL);
    rb__tls_free(&h->c);
    close(h->c.fd);
    h->c.fd = -1;
}

static void hs_events(struct hs_conn *h, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = h};
    epoll_ctl(hs_ep, EPOLL_CTL_MOD, h->c.fd, &e);
}

void rb_run_tls_handshakes(const struct rb_opts *o, struct rb_result *r)
{
    uint32_t k = o->concurrency ? o->concurrency : 16;
    if (!rb_tls_on() && rb_tls_init(NULL, NULL) != 0) {
        rb_result_fail(r, "cannot set up TLS");
        return;
    }
    hs_ep = epoll_create1(EPOLL_CLOEXEC);
    struct hs_conn *hs = calloc(k, sizeof(*hs));
    if (hs_ep < 0 || !hs) {
        rb_result_fail(r, "out of memory");
        return;
    }
    rb_result_num(r, "concurrency", k);
    rb_result_num(r, "duration_s", o->duration);
    for (uint32_t i = 0; i < k; i++)
        hs[i].c.fd = -1;
    uint64_t done = 0, failures = 0, seq = 0;
    char why[96] = "";
    struct rb_hist lat;
    rb_hist_init(&lat);
    bool described = false;
    for (uint32_t i = 0; i < k; i++) {
        hs[i].n = (uint32_t)seq++;
        if (hs_begin(&hs[i], o) != 0) {
            rb_result_fail(r, "cannot connect");
            goto out;
        }
    }
    rb_result_begin(r);
    uint64_t t_end = rb_now_ns() + (uint64_t)(o->duration * 1e9);
    bool stopping = false;
    uint32_t live = k;
    while (live > 0) {
        struct epoll_event ev[256];
        int n = epoll_wait(hs_ep, ev, 256, 100);
        if (!stopping && rb_now_ns() >= t_end) {
            stopping = true;
            rb_result_end(r); /* the measured interval: in-flight handshakes are not counted */
        }
        for (int i = 0; i < n; i++) {
            struct hs_conn *h = ev[i].data.ptr;
            struct rb_conn *c = &h->c;
            bool restart = false;
            if (h->phase == HS_CONNECTING) {
                int err = 0;
                socklen_t l = sizeof(err);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err) {
                    failures++;
                    snprintf(why, sizeof(why), "connect: %s", strerror(err));
                    restart = true;
                } else {
                    h->phase = HS_HANDSHAKE;
                }
            }
            if (!restart && h->phase == HS_HANDSHAKE) {
                int s = rb__tls_handshake(c);
                if (s < 0) {
                    failures++;
                    snprintf(why, sizeof(why), "%s", c->errmsg);
                    restart = true;
                } else if (s == 0) {
                    hs_events(h, c->tls_want_write ? EPOLLOUT : EPOLLIN);
                } else {
                    if (!stopping) {
                        done++;
                        rb_hist_add(&lat, rb_now_ns() - h->t0);
                    }
                    if (!described) {
                        rb__tls_describe(c, r);
                        described = true;
                    }
                    rb__tls_shutdown(c); /* close_notify; the server closes when it reads it */
                    h->phase = HS_DRAIN;
                    hs_events(h, EPOLLIN | EPOLLRDHUP);
                }
            } else if (!restart && h->phase == HS_DRAIN) {
                char buf[4096];
                ssize_t got;
                while ((got = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {}
                if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR))
                    restart = true;
            }
            if (restart) {
                hs_end(h);
                if (stopping || failures > 1000) {
                    live--;
                } else {
                    h->n = (uint32_t)seq++;
                    if (hs_begin(h, o) != 0) {
                        failures++;
                        live--;
                    }
                }
            }
        }
        if (stopping && rb_now_ns() > t_end + 10 * 1000000000ull) {
            rb_result_fail(r, "%u connections did not finish within 10 s", live);
            break;
        }
    }
    rb_result_num(r, "handshakes", (double)done);
    rb_result_num(r, "failed_handshakes", (double)failures);
    double wall = r->wall_s > 0 ? r->wall_s : o->duration;
    rb_result_num(r, "hs_per_s", done / wall);
    bool sched = r->srv0.run_s >= 0 && r->srv1.run_s >= 0 && r->srv1.ok;
    if (done && sched)
        rb_result_num(r, "server_us_per_hs", (r->srv1.run_s - r->srv0.run_s) * 1e6 / done);
    if (done && r->srv1.ok)
        rb_result_num(r, "server_tick_us_per_hs", (r->srv1.cpu_s - r->srv0.cpu_s) * 1e6 / done);
    if (done)
        rb_result_num(r, "gen_us_per_hs", r->bench_cpu_s * 1e6 / done);
    rb_result_num(r, "hs_p50_us", rb_hist_quantile(&lat, 0.5) / 1e3);
    rb_result_num(r, "hs_p99_us", rb_hist_quantile(&lat, 0.99) / 1e3);
    r->errors += failures;
    if (failures)
        rb_result_fail(r, "%llu handshakes failed (%s)", (unsigned long long)failures, why);
out:
    for (uint32_t i = 0; i < k; i++)
        if (hs[i].c.fd >= 0)
            hs_end(&hs[i]);
    free(hs);
    close(hs_ep);
}
