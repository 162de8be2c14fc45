/* Tests src/transport/tls.c: ALPN per listener kind, handshake failures counted, reads that
 * leave bytes inside OpenSSL (rc_tls_pending), writes retried on a full socket with nothing
 * lost or reordered, certificate reload (a mismatched key keeps the old certificate).
 *
 * Certificates are made here with OpenSSL's API (self-signed P-256) in a temporary directory;
 * the client is a plain OpenSSL client over a non-blocking socketpair. */
#include "transport/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core/msg.h"
#include "unit.h"

static char dir[64];

/* Writes DIR/NAME.pem and DIR/NAME.key: a self-signed P-256 certificate with CN=name. */
static bool make_cert(const char *name)
{
    char path[160];
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!k || !x) return false;
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(x, n);
    bool ok = X509_sign(x, k, EVP_sha256()) > 0;
    snprintf(path, sizeof path, "%s/%s.pem", dir, name);
    FILE *f = fopen(path, "w");
    ok = ok && f && PEM_write_X509(f, x);
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    f = fopen(path, "w");
    ok = ok && f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    if (f) fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
    return ok;
}

static const char *file(const char *name, const char *ext)
{
    static char buf[4][160];
    static int i;
    char *p = buf[i++ & 3];
    snprintf(p, 160, "%s/%s.%s", dir, name, ext);
    return p;
}

/* A server session and an OpenSSL client over a non-blocking socketpair. */
typedef struct pair {
    int sv[2];            /* [0]: the server's socket, [1]: the client's */
    rc_tls_conn *srv;     /* the session under test */
    SSL_CTX *cctx;        /* the client's context */
    SSL *cli;             /* the client */
} pair;

static bool pair_open(pair *p, rc_tls_ctx *t, rc_tls_alpn alpn, const char *offer,
                      unsigned offer_len)
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, p->sv) != 0) return false;
    fcntl(p->sv[0], F_SETFL, O_NONBLOCK);
    fcntl(p->sv[1], F_SETFL, O_NONBLOCK);
    p->srv = rc_tls_conn_new(t, p->sv[0], alpn);
    p->cctx = SSL_CTX_new(TLS_client_method());
    p->cli = SSL_new(p->cctx);
    if (!p->srv || !p->cli) return false;
    SSL_set_fd(p->cli, p->sv[1]);
    SSL_set_connect_state(p->cli);
    if (offer) SSL_set_alpn_protos(p->cli, (const unsigned char *)offer, offer_len);
    return true;
}

static void pair_close(pair *p)
{
    rc_tls_conn_free(p->srv);
    SSL_free(p->cli);
    SSL_CTX_free(p->cctx);
    close(p->sv[0]);
    close(p->sv[1]);
}

/* Drives both sides: 1 when both finished, the server's RC_TLS_FAIL, or -4 if the client
 * failed alone. */
static int handshake(pair *p)
{
    bool cdone = false;
    for (int i = 0; i < 100; i++) {
        if (!cdone) {
            int r = SSL_do_handshake(p->cli);
            if (r == 1) cdone = true;
            else if (SSL_get_error(p->cli, r) != SSL_ERROR_WANT_READ) {
                /* the server's alert may still need reading by the server side: report it */
                int s = rc_tls_handshake(p->srv);
                return s == RC_TLS_FAIL ? RC_TLS_FAIL : -4;
            }
        }
        int s = p->srv->done ? 1 : rc_tls_handshake(p->srv);
        if (s == RC_TLS_FAIL) return s;
        if (s == 1 && cdone) return 1;
    }
    return -4;
}

static const char *alpn_of(SSL *s, unsigned *len)
{
    const unsigned char *a = NULL;
    SSL_get0_alpn_selected(s, &a, len);
    return (const char *)a;
}

TEST(alpn_http_listener)
{
    rc_tls_ctx *t = rc_tls_ctx_new(file("a", "pem"), file("a", "key"));
    CHECK(t);
    pair p = {0};
    CHECK(pair_open(&p, t, RC_TLS_ALPN_HTTP, "\x02h2\x08http/1.1", 12));
    CHECK_EQ_INT(handshake(&p), 1);
    unsigned len;
    const char *a = alpn_of(p.cli, &len);
    CHECK_MEM(a, len, "http/1.1", 8);
    pair_close(&p);
    /* only other protocols offered: no answer, no failure (the client may fall back) */
    CHECK(pair_open(&p, t, RC_TLS_ALPN_HTTP, "\x02h2", 3));
    CHECK_EQ_INT(handshake(&p), 1);
    CHECK(alpn_of(p.cli, &len) == NULL || len == 0);
    pair_close(&p);
    CHECK_EQ_INT(rc_tls_ctx_stats(t)->handshakes_ok, 2);
    CHECK_EQ_INT(rc_tls_ctx_stats(t)->handshakes_failed, 0);
    rc_tls_ctx_free(t);
}

TEST(alpn_tcp_listener_is_strict)
{
    rc_tls_ctx *t = rc_tls_ctx_new(file("a", "pem"), file("a", "key"));
    CHECK(t);
    pair p = {0};
    unsigned len;
    CHECK(pair_open(&p, t, RC_TLS_ALPN_ROOMCAST_TCP, "\x08http/1.1\x0croomcast-tcp", 22));
    CHECK_EQ_INT(handshake(&p), 1);
    const char *a = alpn_of(p.cli, &len);
    CHECK_MEM(a, len, "roomcast-tcp", 12);
    pair_close(&p);
    /* no ALPN at all: served */
    CHECK(pair_open(&p, t, RC_TLS_ALPN_ROOMCAST_TCP, NULL, 0));
    CHECK_EQ_INT(handshake(&p), 1);
    CHECK(alpn_of(p.cli, &len) == NULL || len == 0);
    pair_close(&p);
    /* protocols, none of them ours: refused, counted */
    CHECK(pair_open(&p, t, RC_TLS_ALPN_ROOMCAST_TCP, "\x08http/1.1\x02h2", 12));
    CHECK_EQ_INT(handshake(&p), RC_TLS_FAIL);
    pair_close(&p);
    CHECK_EQ_INT(rc_tls_ctx_stats(t)->handshakes_ok, 2);
    CHECK_EQ_INT(rc_tls_ctx_stats(t)->handshakes_failed, 1);
    rc_tls_ctx_free(t);
}

/* A read smaller than a record leaves the rest decrypted inside OpenSSL, where no socket event
 * announces it: rc_tls_pending must say so, and reading on must return it. */
TEST(pending_bytes_are_reported)
{
    rc_tls_ctx *t = rc_tls_ctx_new(file("a", "pem"), file("a", "key"));
    CHECK(t);
    pair p = {0};
    CHECK(pair_open(&p, t, RC_TLS_ALPN_HTTP, NULL, 0));
    CHECK_EQ_INT(handshake(&p), 1);
    char msg[1000], got[1000];
    for (size_t i = 0; i < sizeof msg; i++) msg[i] = (char)('a' + i % 26);
    CHECK_EQ_INT(SSL_write(p.cli, msg, sizeof msg), (int)sizeof msg);
    ssize_t n = rc_tls_read(p.srv, got, 100); /* one record of 1000: 900 stay inside */
    CHECK_EQ_INT(n, 100);
    CHECK_EQ_INT(rc_tls_pending(p.srv), sizeof msg - 100);
    n = rc_tls_read(p.srv, got + 100, sizeof got - 100);
    CHECK_EQ_INT(n, (ssize_t)sizeof msg - 100);
    CHECK_MEM(got, sizeof msg, msg, sizeof msg);
    CHECK_EQ_INT(rc_tls_pending(p.srv), 0);
    CHECK_EQ_INT(rc_tls_read(p.srv, got, sizeof got), RC_TLS_WANT_READ);
    pair_close(&p);
    rc_tls_ctx_free(t);
}

/* Output larger than the socket takes: rc_tls_flush stops with a retry pending (WANT_WRITE);
 * the client drains, flushing resumes from the retry copy; the client gets every byte once,
 * in order. */
TEST(flush_retries_on_a_full_socket)
{
    rc_tls_ctx *t = rc_tls_ctx_new(file("a", "pem"), file("a", "key"));
    CHECK(t);
    pair p = {0};
    CHECK(pair_open(&p, t, RC_TLS_ALPN_HTTP, NULL, 0));
    int small = 4096;
    setsockopt(p.sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(p.sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    CHECK_EQ_INT(handshake(&p), 1);
    enum { N = 300, LEN = 1000 };
    rc_outq q = {0};
    for (int i = 0; i < N; i++) {
        rc_msg *m = rc_msg_new(LEN);
        CHECK(m);
        memset(m->data, 'A' + i % 26, LEN);
        memcpy(m->data, &i, sizeof i);
        CHECK(rc_outq_push(&q, m) == 0);
        rc_msg_unref(m);
    }
    static char got[N * LEN];
    size_t glen = 0;
    bool retried = false;
    for (int rounds = 0; rounds < 100000 && (rc_tls_out_pending(p.srv, &q) || glen < sizeof got);
         rounds++) {
        CHECK(rc_tls_flush(p.srv, &q, NULL, NULL) >= 0);
        retried |= p.srv->retry != NULL;
        int r = SSL_read(p.cli, got + glen, (int)(sizeof got - glen));
        if (r > 0) glen += (size_t)r;
    }
    CHECK(retried); /* the socket did fill: the retry path ran */
    CHECK_EQ_INT(glen, sizeof got);
    for (int i = 0; i < N; i++) {
        int id;
        memcpy(&id, got + (size_t)i * LEN, sizeof id);
        CHECK_EQ_INT(id, i);
        CHECK(got[(size_t)i * LEN + LEN - 1] == 'A' + i % 26);
    }
    rc_outq_release(&q);
    pair_close(&p);
    rc_tls_ctx_free(t);
}

static bool peer_cn_is(SSL *s, const char *cn)
{
    X509 *x = SSL_get0_peer_certificate(s);
    char buf[64] = "";
    if (x) X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof buf);
    return strcmp(buf, cn) == 0;
}

static void copy_file(const char *from, const char *to)
{
    char buf[8192];
    FILE *in = fopen(from, "r"), *out = fopen(to, "w");
    size_t n;
    while (in && out && (n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    if (in) fclose(in);
    if (out) fclose(out);
}

TEST(reload_keeps_the_old_certificate_on_a_bad_key)
{
    copy_file(file("a", "pem"), file("live", "pem"));
    copy_file(file("a", "key"), file("live", "key"));
    rc_tls_ctx *t = rc_tls_ctx_new(file("live", "pem"), file("live", "key"));
    CHECK(t);
    pair old = {0}, p = {0};
    CHECK(pair_open(&old, t, RC_TLS_ALPN_HTTP, NULL, 0));
    CHECK_EQ_INT(handshake(&old), 1);
    /* b's certificate with a's key: refused, a stays */
    copy_file(file("b", "pem"), file("live", "pem"));
    CHECK_EQ_INT(rc_tls_ctx_reload(t), -1);
    CHECK_EQ_INT(rc_tls_ctx_stats(t)->reload_failures, 1);
    CHECK(pair_open(&p, t, RC_TLS_ALPN_HTTP, NULL, 0));
    CHECK_EQ_INT(handshake(&p), 1);
    CHECK(peer_cn_is(p.cli, "a"));
    pair_close(&p);
    /* b's key too: b for new sessions; the old session still works */
    copy_file(file("b", "key"), file("live", "key"));
    CHECK_EQ_INT(rc_tls_ctx_reload(t), 0);
    CHECK_EQ_INT(rc_tls_ctx_stats(t)->reloads, 1);
    CHECK(pair_open(&p, t, RC_TLS_ALPN_HTTP, NULL, 0));
    CHECK_EQ_INT(handshake(&p), 1);
    CHECK(peer_cn_is(p.cli, "b"));
    pair_close(&p);
    CHECK_EQ_INT(SSL_write(old.cli, "still", 5), 5);
    char got[8];
    CHECK_EQ_INT(rc_tls_read(old.srv, got, sizeof got), 5);
    CHECK_MEM(got, 5, "still", 5);
    pair_close(&old);
    rc_tls_ctx_free(t);
}

int main(int argc, char **argv)
{
    unit_filter = argc > 1 ? argv[1] : NULL;
    snprintf(dir, sizeof dir, "/tmp/rc-test-tls-XXXXXX");
    if (!mkdtemp(dir) || !make_cert("a") || !make_cert("b")) {
        fprintf(stderr, "test_tls: cannot make test certificates in %s\n", dir);
        return 1;
    }
    RUN(alpn_http_listener);
    RUN(alpn_tcp_listener_is_strict);
    RUN(pending_bytes_are_reported);
    RUN(flush_retries_on_a_full_socket);
    RUN(reload_keeps_the_old_certificate_on_a_bad_key);
    const char *names[] = {"a.pem", "a.key", "b.pem", "b.key", "live.pem", "live.key"};
    char path[160];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    printf("test_tls: %d passed, %d failed\n", unit_passed, unit_failed);
    return unit_failed ? 1 : 0;
}
