/* jwt.c — JWS compact token verification with libcrypto; see jwt.h for the rules.
 *
 * The token is split on '.', each part decoded with the base64url decoder into the caller's
 * scratch (rc_jwt_claims), the JSON read with roomcast's scanner (codec/json.h), and the
 * signature checked with EVP. Keys carry their family from load time; the header's alg only
 * chooses the hash and must match the key's family, which is what rules out algorithm
 * confusion. Every comparison of untrusted bytes against a secret (the HMAC) is constant-time
 * (CRYPTO_memcmp); public-key checks are OpenSSL's.
 */
#include "codec/jwt.h"

#include "codec/base64.h"
#include "codec/json.h"
#include "codec/utf8.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

struct rc_jwt_key {
    char kid[RC_JWT_MAX_KID + 1]; /* the key's kid, NUL-terminated */
    size_t kid_len;          /* bytes in kid */
    bool has_kid;            /* whether the key has a kid at all ("" is a kid) */
    enum rc_jwt_family family; /* what this key may verify */
    unsigned char *secret;   /* HS: the secret's bytes (owned) */
    size_t secret_len;       /* HS: bytes in secret */
    EVP_PKEY *pkey;          /* RS/ES: the public key (owned) */
};

static const char *const jwt_err_names[RC_JWT__COUNT] = {
    [RC_JWT_OK] = "ok",
    [RC_JWT_MALFORMED] = "malformed",
    [RC_JWT_BAD_BASE64] = "bad_base64",
    [RC_JWT_BAD_JSON] = "bad_json",
    [RC_JWT_UNSUPPORTED_ALG] = "unsupported_alg",
    [RC_JWT_ALG_NONE] = "alg_none",
    [RC_JWT_UNKNOWN_KID] = "unknown_kid",
    [RC_JWT_BAD_SIGNATURE] = "bad_signature",
    [RC_JWT_EXPIRED] = "expired",
    [RC_JWT_NOT_YET_VALID] = "not_yet_valid",
    [RC_JWT_BAD_AUDIENCE] = "bad_audience",
    [RC_JWT_BAD_ISSUER] = "bad_issuer",
};

const char *rc_jwt_err_name(enum rc_jwt_err e)
{
    return (unsigned)e < RC_JWT__COUNT ? jwt_err_names[e] : "unknown";
}

/* The algorithms we verify; the table binds each to its family and hash. */
static const struct {
    const char *name;        /* the header's alg */
    enum rc_jwt_family family; /* keys that may check it */
    const EVP_MD *(*md)(void); /* its hash */
} jwt_algs[] = {
    {"HS256", RC_JWT_FAMILY_HS, EVP_sha256},
    {"HS384", RC_JWT_FAMILY_HS, EVP_sha384},
    {"HS512", RC_JWT_FAMILY_HS, EVP_sha512},
    {"RS256", RC_JWT_FAMILY_RS, EVP_sha256},
    {"ES256", RC_JWT_FAMILY_ES, EVP_sha256},
};
#define JWT_NALGS (sizeof(jwt_algs) / sizeof(jwt_algs[0]))

/* ---- keyset -------------------------------------------------------------------------------- */

static void jwt_errf(char *err, size_t cap, const char *fmt, const char *a, const char *b)
{
    if (err && cap) snprintf(err, cap, fmt, a ? a : "", b ? b : "");
}

void rc_jwt_keys_init(rc_jwt_keys *ks)
{
    memset(ks, 0, sizeof(*ks));
}

static void jwt_key_release(rc_jwt_key *k)
{
    if (k->secret) OPENSSL_clear_free(k->secret, k->secret_len); /* wipe: it is a secret */
    EVP_PKEY_free(k->pkey);
    memset(k, 0, sizeof(*k));
}

void rc_jwt_keys_release(rc_jwt_keys *ks)
{
    for (size_t i = 0; i < ks->n; i++) jwt_key_release(&ks->key[i]);
    free(ks->key);
    rc_jwt_keys_init(ks);
}

/* jwt_key_slot checks kid and returns a zeroed slot at the end of the keyset (not yet counted
 * in ks->n, so a failure later leaves the keyset unchanged), or NULL with err set. */
static rc_jwt_key *jwt_key_slot(rc_jwt_keys *ks, const char *kid, char *err, size_t errcap)
{
    size_t kl = kid ? strlen(kid) : 0;
    if (kl > RC_JWT_MAX_KID) {
        jwt_errf(err, errcap, "kid '%.40s...' is longer than 128 bytes%s", kid, NULL);
        return NULL;
    }
    for (size_t i = 0; kid && i < ks->n; i++) {
        if (ks->key[i].has_kid && ks->key[i].kid_len == kl && !memcmp(ks->key[i].kid, kid, kl)) {
            jwt_errf(err, errcap, "kid '%s' is already in use%s", kid, NULL);
            return NULL;
        }
    }
    if (ks->n == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 4;
        rc_jwt_key *k = realloc(ks->key, cap * sizeof(*k));
        if (!k) {
            jwt_errf(err, errcap, "out of memory%s%s", NULL, NULL);
            return NULL;
        }
        ks->key = k;
        ks->cap = cap;
    }
    rc_jwt_key *k = &ks->key[ks->n];
    memset(k, 0, sizeof(*k));
    if (kid) {
        memcpy(k->kid, kid, kl);
        k->kid_len = kl;
        k->has_kid = true;
    }
    return k;
}

int rc_jwt_keys_add_secret(rc_jwt_keys *ks, const char *kid, const void *secret, size_t len,
                           char *err, size_t errcap)
{
    if (len < RC_JWT_MIN_SECRET) {
        /* A short HMAC secret can be brute-forced offline from one token. */
        jwt_errf(err, errcap, "JWT secret%s%s is shorter than 32 bytes", kid ? " " : "", kid);
        return -1;
    }
    rc_jwt_key *k = jwt_key_slot(ks, kid, err, errcap);
    if (!k) return -1;
    k->secret = OPENSSL_malloc(len);
    if (!k->secret) {
        jwt_errf(err, errcap, "out of memory%s%s", NULL, NULL);
        return -1;
    }
    memcpy(k->secret, secret, len);
    k->secret_len = len;
    k->family = RC_JWT_FAMILY_HS;
    ks->n++;
    return 0;
}

/* jwt_pem_pubkey reads a PUBLIC KEY or, failing that, a CERTIFICATE's key from pem. */
static EVP_PKEY *jwt_pem_pubkey(const char *pem, size_t len)
{
    if (len > INT_MAX) return NULL;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (!b) return NULL;
    EVP_PKEY *pk = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    if (!pk) {
        (void)BIO_reset(b);
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (x) {
            pk = X509_get_pubkey(x);
            X509_free(x);
        }
    }
    BIO_free(b);
    ERR_clear_error(); /* failed attempts leave errors queued; they belong to no one else */
    return pk;
}

int rc_jwt_keys_add_pem(rc_jwt_keys *ks, const char *kid, const char *pem, size_t len, char *err,
                        size_t errcap)
{
    EVP_PKEY *pk = jwt_pem_pubkey(pem, len);
    if (!pk) {
        jwt_errf(err, errcap, "JWT key%s%s: no PEM public key or certificate found", kid ? " " : "",
                 kid);
        return -1;
    }
    enum rc_jwt_family fam;
    if (EVP_PKEY_is_a(pk, "RSA")) {
        if (EVP_PKEY_get_bits(pk) < RC_JWT_MIN_RSA_BITS) {
            jwt_errf(err, errcap, "JWT key%s%s: RSA key shorter than 2048 bits", kid ? " " : "",
                     kid);
            goto err;
        }
        fam = RC_JWT_FAMILY_RS;
    } else if (EVP_PKEY_is_a(pk, "EC")) {
        char group[64];
        size_t gl = 0;
        if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                            &gl) ||
            strcmp(group, "prime256v1") != 0) {
            /* ES256 is defined on P-256 only; other curves would be ES384/ES512. */
            jwt_errf(err, errcap, "JWT key%s%s: EC key not on curve P-256", kid ? " " : "", kid);
            goto err;
        }
        fam = RC_JWT_FAMILY_ES;
    } else {
        jwt_errf(err, errcap, "JWT key%s%s: not an RSA or EC P-256 key", kid ? " " : "", kid);
        goto err;
    }
    rc_jwt_key *k = jwt_key_slot(ks, kid, err, errcap);
    if (!k) goto err;
    k->pkey = pk;
    k->family = fam;
    ks->n++;
    return 0;
err:
    EVP_PKEY_free(pk);
    ERR_clear_error();
    return -1;
}

int rc_jwt_keys_add_pem_file(rc_jwt_keys *ks, const char *kid, const char *path, char *err,
                             size_t errcap)
{
    enum { MAX = 1 << 20 };
    FILE *f = fopen(path, "rb");
    if (!f) {
        jwt_errf(err, errcap, "cannot open JWT key file '%s': %s", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(MAX + 1);
    size_t n = buf ? fread(buf, 1, MAX + 1, f) : 0;
    bool bad = !buf || ferror(f);
    fclose(f);
    int r = -1;
    if (bad) jwt_errf(err, errcap, "cannot read JWT key file '%s'%s", path, NULL);
    else if (n > MAX) jwt_errf(err, errcap, "JWT key file '%s' is larger than 1 MiB%s", path, NULL);
    else if (rc_jwt_keys_add_pem(ks, kid, buf, n, err, errcap) == 0) r = 0;
    else if (err && errcap) {
        /* name the file in the message: the operator needs to know which one */
        char inner[256];
        snprintf(inner, sizeof(inner), "%s", err);
        jwt_errf(err, errcap, "'%s': %s", path, inner);
    }
    free(buf);
    return r;
}

static int jwt_set_claim(char *dst, const char *v)
{
    size_t l = v ? strlen(v) : 0;
    if (l > RC_JWT_MAX_CLAIM) return -1;
    if (l) memcpy(dst, v, l);
    dst[l] = '\0';
    return 0;
}

int rc_jwt_keys_set_issuer(rc_jwt_keys *ks, const char *iss)
{
    return jwt_set_claim(ks->issuer, iss);
}

int rc_jwt_keys_set_audience(rc_jwt_keys *ks, const char *aud)
{
    return jwt_set_claim(ks->audience, aud);
}

/* ---- signatures ---------------------------------------------------------------------------- */

static bool jwt_check_hs(const rc_jwt_key *k, const EVP_MD *md, const char *in, size_t n,
                         const unsigned char *sig, size_t siglen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (k->secret_len > INT_MAX) return false;
    if (!HMAC(md, k->secret, (int)k->secret_len, (const unsigned char *)in, n, mac, &maclen))
        return false;
    return siglen == maclen && CRYPTO_memcmp(mac, sig, maclen) == 0;
}

/* jwt_check_pk runs EVP_DigestVerify; for RSA it pins PKCS#1 v1.5 padding rather than trusting
 * the default, since RS256 means exactly that padding. */
static bool jwt_check_pk(EVP_PKEY *pk, const EVP_MD *md, bool rsa, const char *in, size_t n,
                         const unsigned char *sig, size_t siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    bool ok = ctx && EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pk) == 1 &&
              (!rsa || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1) &&
              EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)in, n) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

/* jwt_check_es converts JOSE's fixed-size r||s (RFC 7518 §3.4: 32 bytes each for P-256) to the
 * DER SEQUENCE OpenSSL verifies. */
static bool jwt_check_es(const rc_jwt_key *k, const EVP_MD *md, const char *in, size_t n,
                         const unsigned char *sig, size_t siglen)
{
    if (siglen != 64) return false;
    unsigned char der[80]; /* at most 72 for two 33-byte INTEGERs in a SEQUENCE */
    bool ok = false;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        goto out;
    }
    int dl = i2d_ECDSA_SIG(es, NULL);
    if (dl <= 0 || (size_t)dl > sizeof(der)) goto out;
    unsigned char *dp = der;
    dl = i2d_ECDSA_SIG(es, &dp);
    if (dl <= 0) goto out;
    ok = jwt_check_pk(k->pkey, md, false, in, n, der, (size_t)dl);
out:
    ECDSA_SIG_free(es);
    ERR_clear_error();
    return ok;
}

static bool jwt_check(const rc_jwt_key *k, size_t alg, const char *in, size_t n,
                      const unsigned char *sig, size_t siglen)
{
    const EVP_MD *md = jwt_algs[alg].md();
    switch (k->family) {
    case RC_JWT_FAMILY_HS: return jwt_check_hs(k, md, in, n, sig, siglen);
    case RC_JWT_FAMILY_RS: return jwt_check_pk(k->pkey, md, true, in, n, sig, siglen);
    case RC_JWT_FAMILY_ES: return jwt_check_es(k, md, in, n, sig, siglen);
    }
    return false;
}

/* ---- JSON helpers -------------------------------------------------------------------------- */

/* jwt_members records the value of each of names[0..count) in the object p[0..n), which
 * rc_json_scan accepted. Returns false when one of them occurs twice (RFC 7515 §5.2 lets us
 * refuse duplicates, and we must: other parsers keep the first, ours the last). */
static bool jwt_members(const char *p, size_t n, const char *const *names, size_t count,
                        rc_json_span *vals)
{
    for (size_t i = 0; i < count; i++) vals[i] = (rc_json_span){0};
    rc_json_iter it;
    if (!rc_json_iter_init(&it, p, n)) return false;
    rc_json_span k, v;
    char buf[16]; /* longer than any name we look for */
    while (rc_json_iter_next(&it, &k, &v)) {
        long dl = rc_json_unescape(k.p, k.len, buf, sizeof(buf));
        if (dl < 0) continue; /* too long to be one of ours (or not decodable) */
        for (size_t i = 0; i < count; i++) {
            if ((size_t)dl != strlen(names[i]) || memcmp(buf, names[i], (size_t)dl)) continue;
            if (vals[i].type != RC_JSON_NONE) return false;
            vals[i] = v;
        }
    }
    return true;
}

/* jwt_object decodes a base64url part into buf and checks it is a UTF-8 JSON object. */
static enum rc_jwt_err jwt_object(const char *s, size_t n, char *buf, size_t cap, size_t *len)
{
    long dl = rc_base64url_decode(s, n, buf, cap);
    if (dl < 0) return RC_JWT_BAD_BASE64;
    rc_json_top top;
    if (!rc_utf8_valid((const uint8_t *)buf, (size_t)dl) ||
        rc_json_scan(buf, (size_t)dl, 0, &top) != RC_JSON_OK)
        return RC_JWT_BAD_JSON;
    *len = (size_t)dl;
    return RC_JWT_OK;
}

/* jwt_str_eq: is the JSON string literal v (decoded) exactly want? */
static bool jwt_str_eq(const rc_json_span *v, const char *want)
{
    char buf[RC_JWT_MAX_CLAIM + 1];
    if (v->type != RC_JSON_STRING) return false;
    long dl = rc_json_unescape(v->p, v->len, buf, sizeof(buf));
    return dl >= 0 && (size_t)dl == strlen(want) && memcmp(buf, want, (size_t)dl) == 0;
}

/* jwt_date reads a NumericDate, clamped to +-2^53 s so that adding the leeway cannot overflow
 * (2^53 s is far beyond any real expiry). */
static bool jwt_date(const rc_json_span *v, int64_t *out)
{
    const int64_t lim = (int64_t)1 << 53;
    uint64_t u;
    double d;
    if (rc_json_get_u64(v, &u)) {
        *out = u > (uint64_t)lim ? lim : (int64_t)u;
        return true;
    }
    if (!rc_json_get_f64(v, &d) || isnan(d)) return false;
    d = floor(d);
    *out = d > (double)lim ? lim : d < -(double)lim ? -lim : (int64_t)d;
    return true;
}

/* ---- verification -------------------------------------------------------------------------- */

enum { H_ALG, H_KID, H_CRIT, H__N };
static const char *const jwt_header_names[H__N] = {"alg", "kid", "crit"};
enum { C_EXP, C_NBF, C_ISS, C_AUD, C_SUB, C_ROOMS, C__N };
static const char *const jwt_claim_names[C__N] = {"exp", "nbf", "iss", "aud", "sub", "rooms"};

enum rc_jwt_err rc_jwt_verify(const rc_jwt_keys *ks, const char *tok, size_t n, int64_t now,
                              rc_jwt_claims *out)
{
    if (n > RC_JWT_MAX_TOKEN) return RC_JWT_MALFORMED;
    const char *d1 = memchr(tok, '.', n);
    if (!d1 || d1 == tok) return RC_JWT_MALFORMED;
    const char *d2 = memchr(d1 + 1, '.', (size_t)(tok + n - d1 - 1));
    if (!d2 || memchr(d2 + 1, '.', (size_t)(tok + n - d2 - 1))) return RC_JWT_MALFORMED;
    const char *pl = d1 + 1, *sg = d2 + 1;
    size_t hl = (size_t)(d1 - tok), pll = (size_t)(d2 - pl), sgl = (size_t)(tok + n - sg);

    /* header */
    size_t hlen;
    enum rc_jwt_err e = jwt_object(tok, hl, out->header, sizeof(out->header), &hlen);
    if (e) return e;
    rc_json_span h[H__N];
    if (!jwt_members(out->header, hlen, jwt_header_names, H__N, h)) return RC_JWT_BAD_JSON;
    if (h[H_ALG].type == RC_JSON_NONE) return RC_JWT_UNSUPPORTED_ALG;
    if (h[H_ALG].type != RC_JSON_STRING) return RC_JWT_BAD_JSON;
    char alg[16];
    long al = rc_json_unescape(h[H_ALG].p, h[H_ALG].len, alg, sizeof(alg) - 1);
    if (al < 0) return RC_JWT_UNSUPPORTED_ALG;
    alg[al] = '\0';
    if (strcasecmp(alg, "none") == 0) return RC_JWT_ALG_NONE;
    size_t ai = 0;
    while (ai < JWT_NALGS && strcmp(alg, jwt_algs[ai].name) != 0) ai++;
    if (ai == JWT_NALGS || h[H_CRIT].type != RC_JSON_NONE) return RC_JWT_UNSUPPORTED_ALG;
    enum rc_jwt_family fam = jwt_algs[ai].family;

    /* key selection: a kid names one key; no kid means every key of the family */
    size_t first = 0, last = ks->n; /* candidates [first, last) */
    if (h[H_KID].type != RC_JSON_NONE) {
        if (h[H_KID].type != RC_JSON_STRING) return RC_JWT_BAD_JSON;
        char kid[RC_JWT_MAX_KID + 1];
        long kl = rc_json_unescape(h[H_KID].p, h[H_KID].len, kid, sizeof(kid));
        size_t i = 0;
        while (kl >= 0 && i < ks->n &&
               !(ks->key[i].has_kid && ks->key[i].kid_len == (size_t)kl &&
                 memcmp(ks->key[i].kid, kid, (size_t)kl) == 0))
            i++;
        if (kl < 0 || i == ks->n) return RC_JWT_UNKNOWN_KID;
        if (ks->key[i].family != fam) return RC_JWT_UNSUPPORTED_ALG;
        first = i;
        last = i + 1;
    } else {
        size_t i = 0;
        while (i < ks->n && ks->key[i].family != fam) i++;
        if (i == ks->n) return RC_JWT_UNSUPPORTED_ALG;
    }

    /* signature over the ASCII header.payload */
    long sl = rc_base64url_decode(sg, sgl, out->sig, sizeof(out->sig));
    if (sl < 0) {
        /* longer than any signature we can check is a bad signature, not bad base64 */
        return rc_base64url_decoded_len(sgl) > sizeof(out->sig) ? RC_JWT_BAD_SIGNATURE
                                                                 : RC_JWT_BAD_BASE64;
    }
    size_t ki = first;
    for (; ki < last; ki++) {
        if (ks->key[ki].family != fam) continue;
        if (jwt_check(&ks->key[ki], ai, tok, (size_t)(d2 - tok), out->sig, (size_t)sl)) break;
    }
    if (ki == last) return RC_JWT_BAD_SIGNATURE;
    out->key_index = ki;

    /* claims, from authenticated bytes only */
    size_t plen;
    e = jwt_object(pl, pll, out->payload, sizeof(out->payload), &plen);
    if (e) return e;
    rc_json_span c[C__N];
    if (!jwt_members(out->payload, plen, jwt_claim_names, C__N, c)) return RC_JWT_BAD_JSON;
    int64_t exp = 0, nbf = 0;
    if (c[C_EXP].type != RC_JSON_NONE && !jwt_date(&c[C_EXP], &exp)) return RC_JWT_BAD_JSON;
    if (c[C_NBF].type != RC_JSON_NONE && !jwt_date(&c[C_NBF], &nbf)) return RC_JWT_BAD_JSON;
    if ((c[C_ISS].type != RC_JSON_NONE && c[C_ISS].type != RC_JSON_STRING) ||
        (c[C_SUB].type != RC_JSON_NONE && c[C_SUB].type != RC_JSON_STRING) ||
        (c[C_AUD].type != RC_JSON_NONE && c[C_AUD].type != RC_JSON_STRING &&
         c[C_AUD].type != RC_JSON_ARRAY) ||
        (c[C_ROOMS].type != RC_JSON_NONE && c[C_ROOMS].type != RC_JSON_OBJECT))
        return RC_JWT_BAD_JSON;
    out->has_sub = c[C_SUB].type == RC_JSON_STRING;
    out->sub_len = 0;
    if (out->has_sub) {
        long ul = rc_json_unescape(c[C_SUB].p, c[C_SUB].len, out->sub, RC_JWT_MAX_SUB);
        if (ul < 0) return RC_JWT_BAD_JSON;
        out->sub_len = (size_t)ul;
    }
    out->sub[out->sub_len] = '\0';
    out->has_exp = c[C_EXP].type != RC_JSON_NONE;
    out->exp = exp;
    out->rooms = c[C_ROOMS].type == RC_JSON_OBJECT ? c[C_ROOMS].p : NULL;
    out->rooms_len = out->rooms ? c[C_ROOMS].len : 0;

    if (out->has_exp && now >= exp + (int64_t)ks->leeway) return RC_JWT_EXPIRED;
    if (c[C_NBF].type != RC_JSON_NONE && now < nbf - (int64_t)ks->leeway)
        return RC_JWT_NOT_YET_VALID;
    if (ks->issuer[0] && !jwt_str_eq(&c[C_ISS], ks->issuer)) return RC_JWT_BAD_ISSUER;
    if (ks->audience[0]) {
        bool found = false;
        if (c[C_AUD].type == RC_JSON_STRING) {
            found = jwt_str_eq(&c[C_AUD], ks->audience);
        } else if (c[C_AUD].type == RC_JSON_ARRAY) {
            rc_json_iter it;
            rc_json_span v;
            if (rc_json_array_init(&it, c[C_AUD].p, c[C_AUD].len))
                while (!found && rc_json_array_next(&it, &v)) found = jwt_str_eq(&v, ks->audience);
        }
        if (!found) return RC_JWT_BAD_AUDIENCE;
    }
    return RC_JWT_OK;
}
