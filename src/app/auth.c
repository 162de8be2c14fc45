/* auth.c — token keys from the configuration, tokens at the upgrade; see auth.h. */
#include "app/auth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SECRET_FILE_MAX 65536 /* bytes: a secret file is a few dozen bytes; more is a mistake */

static bool kid_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

const char *rc_auth_split_kid(const char *value, char *kidbuf, const char **kid)
{
    *kid = NULL;
    const char *eq = strchr(value, '=');
    if (!eq || eq == value || (size_t)(eq - value) > RC_JWT_MAX_KID) return value;
    for (const char *p = value; p < eq; p++)
        if (!kid_char(*p)) return value;
    memcpy(kidbuf, value, (size_t)(eq - value));
    kidbuf[eq - value] = '\0';
    *kid = kidbuf;
    return eq + 1;
}

/* Reads a secret file into buf (SECRET_FILE_MAX bytes), one trailing "\n" or "\r\n" dropped.
 * Returns its length, or -1 with errno (EFBIG when too long). */
static long read_secret(const char *path, char *buf)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t n = fread(buf, 1, SECRET_FILE_MAX, f);
    int e = ferror(f) ? EIO : 0;
    if (!e && n == SECRET_FILE_MAX && fgetc(f) != EOF) e = EFBIG;
    fclose(f);
    if (e) {
        errno = e;
        return -1;
    }
    if (n && buf[n - 1] == '\n') n--;
    if (n && buf[n - 1] == '\r') n--;
    return (long)n;
}

/* Calls add(ks, row) for each '\n'-separated row of rows (NULL: none). */
static int each_row(const char *rows, int (*add)(rc_jwt_keys *, const char *, size_t, FILE *),
                    rc_jwt_keys *ks, FILE *err)
{
    for (const char *p = rows; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (add(ks, p, n, err) < 0) return -1;
        p += n + (nl ? 1 : 0);
    }
    return 0;
}

static int add_secret(rc_jwt_keys *ks, const char *s, size_t n, FILE *err)
{
    char why[256];
    if (rc_jwt_keys_add_secret(ks, NULL, s, n, why, sizeof(why)) == 0) return 0;
    /* never quote the secret itself */
    fprintf(err, "roomcast: --jwt-secret: %s\n", why);
    return -1;
}

/* Copies the row p[0..n) NUL-terminated into row (PATH_MAX-ish); false when too long. */
static bool row_copy(char *row, size_t cap, const char *p, size_t n)
{
    if (n >= cap) return false;
    memcpy(row, p, n);
    row[n] = '\0';
    return true;
}

static int add_secret_file(rc_jwt_keys *ks, const char *p, size_t n, FILE *err)
{
    char row[4096], kidbuf[RC_JWT_MAX_KID + 1], why[256];
    const char *kid;
    if (!row_copy(row, sizeof(row), p, n)) {
        fprintf(err, "roomcast: --jwt-secret-file: value too long\n");
        return -1;
    }
    const char *path = rc_auth_split_kid(row, kidbuf, &kid);
    char *buf = malloc(SECRET_FILE_MAX);
    if (!buf) {
        fprintf(err, "roomcast: out of memory\n");
        return -1;
    }
    long len = read_secret(path, buf);
    int r = -1;
    if (len < 0)
        fprintf(err, "roomcast: --jwt-secret-file: cannot read '%s': %s\n", path,
                errno == EFBIG ? "larger than 64 KiB" : strerror(errno));
    else if (rc_jwt_keys_add_secret(ks, kid, buf, (size_t)len, why, sizeof(why)) < 0)
        fprintf(err, "roomcast: --jwt-secret-file '%s': %s\n", path, why);
    else
        r = 0;
    memset(buf, 0, SECRET_FILE_MAX); /* the keyset has its own copy */
    free(buf);
    return r;
}

static int add_public_key(rc_jwt_keys *ks, const char *p, size_t n, FILE *err)
{
    char row[4096], kidbuf[RC_JWT_MAX_KID + 1], why[512];
    const char *kid;
    if (!row_copy(row, sizeof(row), p, n)) {
        fprintf(err, "roomcast: --jwt-public-key: value too long\n");
        return -1;
    }
    const char *path = rc_auth_split_kid(row, kidbuf, &kid);
    if (rc_jwt_keys_add_pem_file(ks, kid, path, why, sizeof(why)) == 0) return 0;
    fprintf(err, "roomcast: --jwt-public-key: %s\n", why);
    return -1;
}

int rc_auth_keys_load(const rc_config *cfg, rc_jwt_keys *out, FILE *err)
{
    rc_jwt_keys_init(out);
    if (each_row(cfg->jwt_secret, add_secret, out, err) < 0 ||
        each_row(cfg->jwt_secret_file, add_secret_file, out, err) < 0 ||
        each_row(cfg->jwt_public_key, add_public_key, out, err) < 0)
        goto fail;
    if (rc_jwt_keys_set_issuer(out, cfg->jwt_issuer) < 0) {
        fprintf(err, "roomcast: --jwt-issuer longer than %d bytes\n", RC_JWT_MAX_CLAIM);
        goto fail;
    }
    if (rc_jwt_keys_set_audience(out, cfg->jwt_audience) < 0) {
        fprintf(err, "roomcast: --jwt-audience longer than %d bytes\n", RC_JWT_MAX_CLAIM);
        goto fail;
    }
    out->leeway = cfg->jwt_leeway;
    if (!out->n && (cfg->jwt_issuer || cfg->jwt_audience || cfg->allow_anonymous))
        fprintf(err, "roomcast: note: --jwt-issuer, --jwt-audience and --allow-anonymous do "
                     "nothing without a --jwt-secret, --jwt-secret-file or --jwt-public-key\n");
    return (int)out->n;
fail:
    rc_jwt_keys_release(out);
    return -1;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int rc_auth_upgrade_token(const rc_http_ctx *x, char *buf, size_t cap, const char **tok,
                          size_t *n)
{
    const rc_http_header *h = rc_http_find_header(x->req, "Authorization");
    if (h) {
        if (h->value_len < 8 || strncasecmp(h->value, "Bearer ", 7) != 0) return -1;
        const char *v = h->value + 7;
        size_t vl = h->value_len - 7;
        while (vl && *v == ' ') v++, vl--;
        while (vl && v[vl - 1] == ' ') vl--;
        if (!vl) return -1;
        *tok = v;
        *n = vl;
        return 1;
    }
    for (const char *p = x->query, *e = x->query + x->query_len; p < e;) {
        const char *amp = memchr(p, '&', (size_t)(e - p));
        const char *end = amp ? amp : e;
        if (end - p >= 6 && memcmp(p, "token=", 6) == 0) {
            size_t k = 0;
            for (const char *s = p + 6; s < end; s++) {
                char c = *s;
                if (c == '%') {
                    int hi = end - s > 2 ? hexval(s[1]) : -1, lo = hi >= 0 ? hexval(s[2]) : -1;
                    if (lo < 0) return -1;
                    c = (char)(hi * 16 + lo);
                    s += 2;
                } else if (c == '+') {
                    c = ' ';
                }
                if (k == cap) return -1;
                buf[k++] = c;
            }
            *tok = buf;
            *n = k;
            return 1;
        }
        p = end + 1;
    }
    return 0;
}
