/* test_auth.c — tests for src/app/auth.c: the [KID=]FILE split (secrets and paths with '='),
 * the upgrade's token (Bearer header first, ?token= percent-decoded, unreadable ones), and
 * building a keyset from a configuration (secrets, a secret file with its newline dropped,
 * issuer/audience/leeway, errors that never quote a secret). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "app/auth.h"
#include "app/config.h"
#include "unit.h"

TEST(split_kid)
{
    char kb[RC_JWT_MAX_KID + 1];
    const char *kid;
    CHECK(strcmp(rc_auth_split_kid("k1=/etc/a.pem", kb, &kid), "/etc/a.pem") == 0);
    CHECK(kid && strcmp(kid, "k1") == 0);
    CHECK(strcmp(rc_auth_split_kid("/etc/a.pem", kb, &kid), "/etc/a.pem") == 0 && !kid);
    /* a path with '=' and no kid: the part before '=' is not a kid */
    CHECK(strcmp(rc_auth_split_kid("./a=b.pem", kb, &kid), "./a=b.pem") == 0 && !kid);
    CHECK(strcmp(rc_auth_split_kid("=x", kb, &kid), "=x") == 0 && !kid);
    CHECK(strcmp(rc_auth_split_kid("key.v2-x_y=f=g", kb, &kid), "f=g") == 0);
    CHECK(strcmp(kid, "key.v2-x_y") == 0);
    CHECK(strcmp(rc_auth_split_kid("a b=f", kb, &kid), "a b=f") == 0 && !kid);
}

/* Parses the request head text and asks for its token. */
static int upgrade_token(const char *head, char *buf, size_t cap, const char **tok, size_t *n)
{
    static rc_http_request req;
    size_t scanned;
    if (rc_http_parse_request(head, strlen(head), &scanned, &req) <= 0) abort();
    rc_http_ctx x = {.req = &req};
    const char *q = memchr(req.target, '?', req.target_len);
    x.query = q ? q + 1 : "";
    x.query_len = q ? req.target_len - (size_t)(q + 1 - req.target) : 0;
    return rc_auth_upgrade_token(&x, buf, cap, tok, n);
}

#define IS(tok, n, s) ((n) == strlen(s) && memcmp((tok), (s), (n)) == 0)

TEST(token_at_the_upgrade)
{
    char buf[64];
    const char *tok;
    size_t n;
    CHECK_EQ_INT(upgrade_token("GET /?a=1&token=x.y.z&b=2 HTTP/1.1\r\nHost: h\r\n\r\n", buf,
                               sizeof(buf), &tok, &n), 1);
    CHECK(IS(tok, n, "x.y.z"));
    CHECK_EQ_INT(upgrade_token("GET /?token=a%2Eb%2ec HTTP/1.1\r\nHost: h\r\n\r\n", buf,
                               sizeof(buf), &tok, &n), 1);
    CHECK(IS(tok, n, "a.b.c"));
    /* the header wins over the query */
    CHECK_EQ_INT(upgrade_token("GET /?token=q HTTP/1.1\r\nAuthorization: bearer  h.e.d \r\n\r\n",
                               buf, sizeof(buf), &tok, &n), 1);
    CHECK(IS(tok, n, "h.e.d"));
    CHECK_EQ_INT(upgrade_token("GET / HTTP/1.1\r\nHost: h\r\n\r\n", buf, sizeof(buf), &tok, &n), 0);
    CHECK_EQ_INT(upgrade_token("GET /?tokens=x HTTP/1.1\r\n\r\n", buf, sizeof(buf), &tok, &n), 0);
    CHECK_EQ_INT(upgrade_token("GET / HTTP/1.1\r\nAuthorization: Basic eA==\r\n\r\n", buf,
                               sizeof(buf), &tok, &n), -1);
    CHECK_EQ_INT(upgrade_token("GET /?token=a%2 HTTP/1.1\r\n\r\n", buf, sizeof(buf), &tok, &n), -1);
    CHECK_EQ_INT(upgrade_token("GET /?token=a%zz HTTP/1.1\r\n\r\n", buf, sizeof(buf), &tok, &n),
                 -1);
    CHECK_EQ_INT(upgrade_token("GET /?token=abcdef HTTP/1.1\r\n\r\n", buf, 4, &tok, &n), -1);
}

TEST(keys_load)
{
    char path[] = "/tmp/roomcast-test-auth-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char secret[] = "a secret: with = and : in it, 32+\n";
    CHECK(write(fd, secret, strlen(secret)) == (ssize_t)strlen(secret));
    close(fd);
    char row[128];
    snprintf(row, sizeof(row), "k2=%s", path);
    rc_config cfg;
    rc_config_init(&cfg);
    cfg.jwt_secret = "0123456789abcdef0123456789abcdef\nfedcba9876543210fedcba9876543210";
    cfg.jwt_secret_file = row;
    cfg.jwt_issuer = "iss";
    cfg.jwt_audience = "aud";
    cfg.jwt_leeway = 7;
    rc_jwt_keys ks;
    FILE *err = tmpfile();
    CHECK_EQ_INT(rc_auth_keys_load(&cfg, &ks, err), 3);
    CHECK(strcmp(ks.issuer, "iss") == 0 && strcmp(ks.audience, "aud") == 0);
    CHECK_EQ_INT(ks.leeway, 7);
    rc_jwt_keys_release(&ks);
    /* nothing configured: no keys */
    rc_config none;
    rc_config_init(&none);
    CHECK_EQ_INT(rc_auth_keys_load(&none, &ks, err), 0);
    rc_jwt_keys_release(&ks);
    /* a short secret: refused without quoting it; a missing file: named */
    cfg.jwt_secret = "tiny-s3cret";
    CHECK_EQ_INT(rc_auth_keys_load(&cfg, &ks, err), -1);
    CHECK_EQ_INT((int)ks.n, 0);
    cfg.jwt_secret = NULL;
    cfg.jwt_secret_file = "k9=/nonexistent/secret";
    CHECK_EQ_INT(rc_auth_keys_load(&cfg, &ks, err), -1);
    cfg.jwt_secret_file = NULL;
    cfg.jwt_public_key = "/nonexistent/key.pem";
    CHECK_EQ_INT(rc_auth_keys_load(&cfg, &ks, err), -1);
    char text[2048];
    rewind(err);
    size_t tl = fread(text, 1, sizeof(text) - 1, err);
    text[tl] = '\0';
    fclose(err);
    CHECK(strstr(text, "tiny-s3cret") == NULL);
    CHECK(strstr(text, "'/nonexistent/secret'") != NULL);
    CHECK(strstr(text, "/nonexistent/key.pem") != NULL);
    unlink(path);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(split_kid);
    RUN(token_at_the_upgrade);
    RUN(keys_load);
    UNIT_MAIN_END("test_auth");
}
