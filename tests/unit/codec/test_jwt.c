/* test_jwt.c — tests for src/codec/jwt.c: tokens of every supported algorithm signed here, with
 * keys made here through libcrypto (EVP_PKEY_keygen: RSA 2048, EC P-256), since a unit test
 * cannot count on the openssl command; then each refusal: expiry and nbf with leeway, audience
 * and issuer, flipped bits, alg none, HS/RS confusion, kids, malformed input, key loading.
 *
 * The signer below is deliberately test-only: the module verifies, it never signs.
 */
#include "unit.h"

#include "codec/base64.h"
#include "codec/jwt.h"

#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define NOW ((int64_t)1700000000)

static const char secret_a[] = "0123456789abcdef0123456789abcdef-a"; /* >= 32 bytes */
static const char secret_b[] = "0123456789abcdef0123456789abcdef-b";

static EVP_PKEY *rsa_key, *ec_key, *rsa1024_key;
static char rsa_pub_pem[4096], ec_pub_pem[1024], ec_cert_pem[4096], rsa_priv_pem[4096];

/* ---- keys ------------------------------------------------------------------------------- */

static EVP_PKEY *keygen(const char *type, int rsa_bits)
{
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (!c || EVP_PKEY_keygen_init(c) != 1) abort();
    if (rsa_bits && EVP_PKEY_CTX_set_rsa_keygen_bits(c, rsa_bits) != 1) abort();
    if (!rsa_bits && EVP_PKEY_CTX_set_ec_paramgen_curve_nid(c, NID_X9_62_prime256v1) != 1)
        abort();
    if (EVP_PKEY_keygen(c, &pk) != 1) abort();
    EVP_PKEY_CTX_free(c);
    return pk;
}

/* bio_text moves what was written to a memory BIO into out as a C string. */
static void bio_text(BIO *b, char *out, size_t cap)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    if (n <= 0 || (size_t)n >= cap) abort();
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
}

static void pub_pem(EVP_PKEY *pk, char *out, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || PEM_write_bio_PUBKEY(b, pk) != 1) abort();
    bio_text(b, out, cap);
}

/* self_signed_pem wraps pk in a throwaway self-signed certificate, as an operator might hand
 * us the identity provider's certificate instead of its bare key. */
static void self_signed_pem(EVP_PKEY *pk, char *out, size_t cap)
{
    X509 *x = X509_new();
    if (!x || !X509_set_version(x, 2) || !ASN1_INTEGER_set(X509_get_serialNumber(x), 1) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), 0) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 3600) || !X509_set_pubkey(x, pk))
        abort();
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"idp", -1,
                                    -1, 0) ||
        !X509_set_issuer_name(x, name) || !X509_sign(x, pk, EVP_sha256()))
        abort();
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || PEM_write_bio_X509(b, x) != 1) abort();
    bio_text(b, out, cap);
    X509_free(x);
}

static void make_keys(void)
{
    if (rsa_key) return;
    rsa_key = keygen("RSA", 2048);
    ec_key = keygen("EC", 0);
    rsa1024_key = keygen("RSA", 1024);
    pub_pem(rsa_key, rsa_pub_pem, sizeof rsa_pub_pem);
    pub_pem(ec_key, ec_pub_pem, sizeof ec_pub_pem);
    self_signed_pem(ec_key, ec_cert_pem, sizeof ec_cert_pem);
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || PEM_write_bio_PrivateKey(b, rsa_key, NULL, NULL, 0, NULL, NULL) != 1) abort();
    bio_text(b, rsa_priv_pem, sizeof rsa_priv_pem);
}

/* ---- a test-only signer --------------------------------------------------------------- */

enum signer_kind { SIGN_NONE, SIGN_HMAC, SIGN_RSA, SIGN_EC };
typedef struct signer {
    enum signer_kind kind;   /* how to sign */
    const EVP_MD *md;        /* hash */
    const void *secret;      /* SIGN_HMAC: key bytes */
    size_t secret_len;       /* SIGN_HMAC: key length */
    EVP_PKEY *pk;            /* SIGN_RSA / SIGN_EC: private key */
} signer;

static size_t b64url(const void *p, size_t n, char *out)
{
    size_t l = rc_base64_encode(p, n, out);
    while (l && out[l - 1] == '=') l--;
    for (size_t i = 0; i < l; i++) out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return l;
}

/* sign returns the raw JWS signature of in[0..n) in sig, its length as the result. */
static size_t sign(const signer *s, const char *in, size_t n, unsigned char *sig)
{
    unsigned int ml = 0;
    size_t sl = 0;
    unsigned char der[600];
    EVP_MD_CTX *c;
    switch (s->kind) {
    case SIGN_NONE: return 0;
    case SIGN_HMAC:
        if (!HMAC(s->md, s->secret, (int)s->secret_len, (const unsigned char *)in, n, sig, &ml))
            abort();
        return ml;
    case SIGN_RSA:
    case SIGN_EC:
        c = EVP_MD_CTX_new();
        sl = sizeof der;
        if (!c || EVP_DigestSignInit(c, NULL, s->md, NULL, s->pk) != 1 ||
            EVP_DigestSign(c, der, &sl, (const unsigned char *)in, n) != 1)
            abort();
        EVP_MD_CTX_free(c);
        if (s->kind == SIGN_RSA) {
            memcpy(sig, der, sl);
            return sl;
        }
        /* ECDSA: OpenSSL's DER to JOSE's fixed-width r||s */
        const unsigned char *dp = der;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &dp, (long)sl);
        if (!es || BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32) != 32 ||
            BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32) != 32)
            abort();
        ECDSA_SIG_free(es);
        return 64;
    }
    return 0;
}

/* token builds header.payload.signature from JSON texts, signed by s. */
static size_t token(const char *header, const char *payload, const signer *s, char *out)
{
    size_t o = b64url(header, strlen(header), out);
    out[o++] = '.';
    o += b64url(payload, strlen(payload), out + o);
    unsigned char sig[600];
    size_t sl = sign(s, out, o, sig);
    out[o++] = '.';
    o += b64url(sig, sl, out + o);
    out[o] = '\0';
    return o;
}

static signer hs(const EVP_MD *md, const char *secret)
{
    return (signer){SIGN_HMAC, md, secret, strlen(secret), NULL};
}

static signer rs(void)
{
    return (signer){SIGN_RSA, EVP_sha256(), NULL, 0, rsa_key};
}

static signer es(void)
{
    return (signer){SIGN_EC, EVP_sha256(), NULL, 0, ec_key};
}

static rc_jwt_claims claims; /* big: static, not on the test's stack */

/* verify runs rc_jwt_verify on an exact-size heap copy so ASan sees any read past the end. */
static enum rc_jwt_err verify(const rc_jwt_keys *ks, const char *tok, size_t n)
{
    char *p = malloc(n ? n : 1);
    if (!p) abort();
    memcpy(p, tok, n);
    enum rc_jwt_err e = rc_jwt_verify(ks, p, n, NOW, &claims);
    free(p);
    return e;
}

static enum rc_jwt_err verify_str(const rc_jwt_keys *ks, const char *tok)
{
    return verify(ks, tok, strlen(tok));
}

/* check signs header/payload with s and verifies against ks. */
static enum rc_jwt_err check(const rc_jwt_keys *ks, const char *header, const char *payload,
                             const signer *s)
{
    static char tok[3 * RC_JWT_MAX_TOKEN];
    size_t n = token(header, payload, s, tok);
    return verify(ks, tok, n);
}

/* raw_hs256 signs the given "header.payload" text as it is (HS256, secret_a) and verifies. */
static enum rc_jwt_err raw_hs256(const rc_jwt_keys *ks, const char *hp)
{
    char in[256];
    unsigned char mac[64];
    unsigned ml = 0;
    size_t o = strlen(hp);
    memcpy(in, hp, o);
    if (!HMAC(EVP_sha256(), secret_a, (int)sizeof secret_a - 1, (const unsigned char *)in, o,
              mac, &ml))
        abort();
    in[o++] = '.';
    o += b64url(mac, ml, in + o);
    return verify(ks, in, o);
}

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static void keys_hs(rc_jwt_keys *ks)
{
    rc_jwt_keys_init(ks);
    if (rc_jwt_keys_add_secret(ks, NULL, secret_a, sizeof secret_a - 1, NULL, 0)) abort();
}

/* ---- tests ------------------------------------------------------------------------------ */

TEST(jwt_valid_hs)
{
    rc_jwt_keys ks;
    keys_hs(&ks);
    signer s256 = hs(EVP_sha256(), secret_a), s384 = hs(EVP_sha384(), secret_a),
           s512 = hs(EVP_sha512(), secret_a);
    const char *pl = "{\"sub\":\"al\\u0069ce\",\"exp\":1700000060,"
                     "\"rooms\":{\"game:*\":\"rw\",\"lobby\":\"r\"},\"extra\":[1,2]}";
    enum rc_jwt_err e = check(&ks, HS256, pl, &s256);
    if (e) fprintf(stderr, "HS256: %s\n", rc_jwt_err_name(e));
    CHECK_EQ_INT(e, RC_JWT_OK);
    CHECK(claims.has_sub && claims.has_exp && claims.exp == NOW + 60);
    CHECK_MEM(claims.sub, claims.sub_len, "alice", 5);
    CHECK(claims.sub[5] == '\0' && claims.key_index == 0);
    CHECK_MEM(claims.rooms, claims.rooms_len, "{\"game:*\":\"rw\",\"lobby\":\"r\"}", 27);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS384\"}", pl, &s384), RC_JWT_OK);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS512\"}", pl, &s512), RC_JWT_OK);
    /* the alg names the hash: a 256 MAC under an HS512 header does not verify */
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS512\"}", pl, &s256), RC_JWT_BAD_SIGNATURE);
    /* no claims at all is fine: no sub, no exp, no rooms */
    CHECK_EQ_INT(check(&ks, HS256, "{}", &s256), RC_JWT_OK);
    CHECK(!claims.has_sub && !claims.has_exp && claims.rooms == NULL && claims.sub_len == 0);
    /* fractional NumericDate, rounded down */
    CHECK_EQ_INT(check(&ks, HS256, "{\"exp\":1700000000.9e0}", &s256), RC_JWT_EXPIRED);
    CHECK_EQ_INT(check(&ks, HS256, "{\"exp\":17000000601e-1}", &s256), RC_JWT_OK);
    CHECK(claims.exp == NOW + 60);
    CHECK_EQ_INT(check(&ks, HS256, "{\"exp\":1e300}", &s256), RC_JWT_OK); /* clamped */
    CHECK(claims.exp == (int64_t)1 << 53);
    rc_jwt_keys_release(&ks);
    CHECK(ks.n == 0 && ks.key == NULL);
}

/* Public keys loaded from files, as --jwt-public-key does: a PUBLIC KEY and a CERTIFICATE. */
TEST(jwt_valid_rs_es_from_files)
{
    make_keys();
    char rpath[] = "/tmp/test_jwt_rsaXXXXXX", cpath[] = "/tmp/test_jwt_certXXXXXX";
    int rfd = mkstemp(rpath), cfd = mkstemp(cpath);
    CHECK(rfd >= 0 && cfd >= 0);
    CHECK(write(rfd, rsa_pub_pem, strlen(rsa_pub_pem)) == (ssize_t)strlen(rsa_pub_pem));
    CHECK(write(cfd, ec_cert_pem, strlen(ec_cert_pem)) == (ssize_t)strlen(ec_cert_pem));
    close(rfd);
    close(cfd);
    rc_jwt_keys ks;
    rc_jwt_keys_init(&ks);
    char err[300];
    int r1 = rc_jwt_keys_add_pem_file(&ks, NULL, rpath, err, sizeof err);
    int r2 = rc_jwt_keys_add_pem_file(&ks, NULL, cpath, err, sizeof err);
    unlink(rpath);
    unlink(cpath);
    if (r1 || r2) fprintf(stderr, "load: %s\n", err);
    CHECK(r1 == 0 && r2 == 0 && ks.n == 2);
    signer r = rs(), s = es();
    const char *pl = "{\"sub\":\"bob\",\"exp\":1700000001}";
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"RS256\"}", pl, &r), RC_JWT_OK);
    CHECK(claims.key_index == 0);
    CHECK_MEM(claims.sub, claims.sub_len, "bob", 3);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"ES256\"}", pl, &s), RC_JWT_OK);
    CHECK(claims.key_index == 1);
    /* ES256 signatures are randomised: several in a row all verify (r, s with leading zeros
     * must be padded correctly on both sides) */
    for (int i = 0; i < 50; i++) CHECK_EQ_INT(check(&ks, "{\"alg\":\"ES256\"}", pl, &s), RC_JWT_OK);
    /* the same keys from memory, the EC one as a bare public key */
    rc_jwt_keys ks2;
    rc_jwt_keys_init(&ks2);
    CHECK(rc_jwt_keys_add_pem(&ks2, "e", ec_pub_pem, strlen(ec_pub_pem), err, sizeof err) == 0);
    CHECK_EQ_INT(check(&ks2, "{\"alg\":\"ES256\",\"kid\":\"e\"}", pl, &s), RC_JWT_OK);
    /* an RS256 token for a keyset with only an EC key has no key to check it */
    CHECK_EQ_INT(check(&ks2, "{\"alg\":\"RS256\"}", pl, &r), RC_JWT_UNSUPPORTED_ALG);
    rc_jwt_keys_release(&ks2);
    rc_jwt_keys_release(&ks);
}

TEST(jwt_expiry_and_nbf)
{
    rc_jwt_keys ks;
    keys_hs(&ks);
    signer s = hs(EVP_sha256(), secret_a);
    CHECK_EQ_INT(check(&ks, HS256, "{\"exp\":1699999999}", &s), RC_JWT_EXPIRED);
    CHECK_EQ_INT(check(&ks, HS256, "{\"exp\":1700000000}", &s), RC_JWT_EXPIRED); /* at exp */
    CHECK_EQ_INT(check(&ks, HS256, "{\"exp\":1700000001}", &s), RC_JWT_OK);
    CHECK_EQ_INT(check(&ks, HS256, "{\"exp\":-5}", &s), RC_JWT_EXPIRED);
    CHECK_EQ_INT(check(&ks, HS256, "{\"nbf\":1700000010}", &s), RC_JWT_NOT_YET_VALID);
    CHECK_EQ_INT(check(&ks, HS256, "{\"nbf\":1700000000}", &s), RC_JWT_OK); /* at nbf */
    /* a leeway of 10 s forgives 10 s of clock skew either way, not 11 */
    ks.leeway = 10;
    CHECK_EQ_INT(check(&ks, HS256, "{\"exp\":1699999991}", &s), RC_JWT_OK);
    CHECK_EQ_INT(check(&ks, HS256, "{\"exp\":1699999990}", &s), RC_JWT_EXPIRED);
    CHECK_EQ_INT(check(&ks, HS256, "{\"nbf\":1700000010}", &s), RC_JWT_OK);
    CHECK_EQ_INT(check(&ks, HS256, "{\"nbf\":1700000011}", &s), RC_JWT_NOT_YET_VALID);
    /* exp wins when both fail; each is typed */
    CHECK_EQ_INT(check(&ks, HS256, "{\"exp\":1,\"nbf\":1800000000}", &s), RC_JWT_EXPIRED);
    CHECK_EQ_INT(check(&ks, HS256, "{\"exp\":\"1800000000\"}", &s), RC_JWT_BAD_JSON);
    CHECK_EQ_INT(check(&ks, HS256, "{\"nbf\":null}", &s), RC_JWT_BAD_JSON);
    rc_jwt_keys_release(&ks);
}

TEST(jwt_audience_issuer)
{
    rc_jwt_keys ks;
    keys_hs(&ks);
    signer s = hs(EVP_sha256(), secret_a);
    /* nothing configured: aud and iss are not looked at */
    CHECK_EQ_INT(check(&ks, HS256, "{\"aud\":\"x\",\"iss\":\"y\"}", &s), RC_JWT_OK);
    CHECK(rc_jwt_keys_set_audience(&ks, "roomcast") == 0);
    CHECK_EQ_INT(check(&ks, HS256, "{\"aud\":\"roomcast\"}", &s), RC_JWT_OK);
    CHECK_EQ_INT(check(&ks, HS256, "{\"aud\":\"r\\u006fomcast\"}", &s), RC_JWT_OK);
    CHECK_EQ_INT(check(&ks, HS256, "{\"aud\":\"other\"}", &s), RC_JWT_BAD_AUDIENCE);
    CHECK_EQ_INT(check(&ks, HS256, "{\"aud\":\"roomcast2\"}", &s), RC_JWT_BAD_AUDIENCE);
    CHECK_EQ_INT(check(&ks, HS256, "{}", &s), RC_JWT_BAD_AUDIENCE);
    CHECK_EQ_INT(check(&ks, HS256, "{\"aud\":[\"a\",\"roomcast\"]}", &s), RC_JWT_OK);
    CHECK_EQ_INT(check(&ks, HS256, "{\"aud\":[\"a\",[\"roomcast\"],\"b\"]}", &s),
                 RC_JWT_BAD_AUDIENCE);
    CHECK_EQ_INT(check(&ks, HS256, "{\"aud\":[]}", &s), RC_JWT_BAD_AUDIENCE);
    CHECK_EQ_INT(check(&ks, HS256, "{\"aud\":7}", &s), RC_JWT_BAD_JSON);
    CHECK(rc_jwt_keys_set_issuer(&ks, "https://idp.example") == 0);
    CHECK_EQ_INT(
        check(&ks, HS256, "{\"aud\":\"roomcast\",\"iss\":\"https:\\/\\/idp.example\"}", &s),
        RC_JWT_OK);
    CHECK_EQ_INT(check(&ks, HS256, "{\"aud\":\"roomcast\",\"iss\":\"https://evil\"}", &s),
                 RC_JWT_BAD_ISSUER);
    CHECK_EQ_INT(check(&ks, HS256, "{\"aud\":\"roomcast\"}", &s), RC_JWT_BAD_ISSUER);
    CHECK_EQ_INT(check(&ks, HS256, "{\"aud\":\"roomcast\",\"iss\":[\"https://idp.example\"]}", &s),
                 RC_JWT_BAD_JSON);
    /* issuer is checked before audience */
    CHECK_EQ_INT(check(&ks, HS256, "{\"aud\":\"x\",\"iss\":\"y\"}", &s), RC_JWT_BAD_ISSUER);
    /* turning a check off again; over-long values are refused */
    CHECK(rc_jwt_keys_set_issuer(&ks, NULL) == 0 && rc_jwt_keys_set_audience(&ks, "") == 0);
    CHECK_EQ_INT(check(&ks, HS256, "{\"aud\":\"x\",\"iss\":\"y\"}", &s), RC_JWT_OK);
    char big[RC_JWT_MAX_CLAIM + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK(rc_jwt_keys_set_issuer(&ks, big) == -1 && ks.issuer[0] == '\0');
    rc_jwt_keys_release(&ks);
}

/* flip changes one bit of the byte that character i of a base64url text encodes, keeping the
 * text canonical: it swaps the character for the one with a neighbouring value. */
static void flip(char *tok, size_t i)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *c = strchr(al, tok[i]);
    tok[i] = al[(c - al) ^ 32]; /* top bit of the sextet: always a real data bit */
}

TEST(jwt_bad_signature)
{
    make_keys();
    rc_jwt_keys ks;
    keys_hs(&ks);
    char err[200];
    CHECK(rc_jwt_keys_add_pem(&ks, NULL, rsa_pub_pem, strlen(rsa_pub_pem), err, sizeof err) == 0);
    CHECK(rc_jwt_keys_add_pem(&ks, NULL, ec_pub_pem, strlen(ec_pub_pem), err, sizeof err) == 0);
    signer ss[3] = {hs(EVP_sha256(), secret_a), rs(), es()};
    const char *hdr[3] = {HS256, "{\"alg\":\"RS256\"}", "{\"alg\":\"ES256\"}"};
    static char tok[4096];
    for (int k = 0; k < 3; k++) {
        size_t n = token(hdr[k], "{\"sub\":\"mallory\"}", &ss[k], tok);
        CHECK_EQ_INT(verify(&ks, tok, n), RC_JWT_OK);
        const char *sig = strrchr(tok, '.') + 1, *pl = strchr(tok, '.') + 1;
        size_t at[3] = {(size_t)(sig - tok), n - 3, (size_t)(pl - tok) + 2};
        for (int j = 0; j < 3; j++) { /* first and last signature char, a payload char */
            flip(tok, at[j]);
            CHECK_EQ_INT(verify(&ks, tok, n), RC_JWT_BAD_SIGNATURE);
            flip(tok, at[j]);
        }
        CHECK_EQ_INT(verify(&ks, tok, n), RC_JWT_OK);
        /* a truncated signature: its whole groups of four characters only */
        size_t sigl = n - (size_t)(sig - tok);
        CHECK_EQ_INT(verify(&ks, tok, (size_t)(sig - tok) + (sigl - 1) / 4 * 4),
                     RC_JWT_BAD_SIGNATURE);
    }
    /* empty signature, and one longer than any key's */
    size_t n = token(HS256, "{}", &ss[0], tok);
    char *dot = strrchr(tok, '.');
    CHECK_EQ_INT(verify(&ks, tok, (size_t)(dot - tok) + 1), RC_JWT_BAD_SIGNATURE);
    memset(dot + 1, 'A', 1500);
    CHECK_EQ_INT(verify(&ks, tok, (size_t)(dot - tok) + 1501), RC_JWT_BAD_SIGNATURE);
    (void)n;
    /* signed with another secret */
    signer other = hs(EVP_sha256(), secret_b);
    CHECK_EQ_INT(check(&ks, HS256, "{}", &other), RC_JWT_BAD_SIGNATURE);
    rc_jwt_keys_release(&ks);
}

TEST(jwt_alg_none)
{
    rc_jwt_keys ks;
    keys_hs(&ks);
    signer none = {SIGN_NONE, NULL, NULL, 0, NULL}, s = hs(EVP_sha256(), secret_a);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"none\"}", "{\"sub\":\"root\"}", &none), RC_JWT_ALG_NONE);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"NONE\"}", "{}", &none), RC_JWT_ALG_NONE);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"n\\u006fne\"}", "{}", &none), RC_JWT_ALG_NONE);
    /* with a signature attached it is still refused, whatever the signature */
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"none\"}", "{}", &s), RC_JWT_ALG_NONE);
    /* unknown, missing, mistyped and crit */
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS999\"}", "{}", &s), RC_JWT_UNSUPPORTED_ALG);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"hs256\"}", "{}", &s), RC_JWT_UNSUPPORTED_ALG);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"PS256\"}", "{}", &s), RC_JWT_UNSUPPORTED_ALG);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS256HS256HS256HS256\"}", "{}", &s),
                 RC_JWT_UNSUPPORTED_ALG);
    CHECK_EQ_INT(check(&ks, "{\"typ\":\"JWT\"}", "{}", &s), RC_JWT_UNSUPPORTED_ALG);
    CHECK_EQ_INT(check(&ks, "{\"alg\":256}", "{}", &s), RC_JWT_BAD_JSON);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", "{}", &s),
                 RC_JWT_UNSUPPORTED_ALG);
    rc_jwt_keys_release(&ks);
}

/* The classic confusion: the attacker signs an HS256 token using the server's RSA public key
 * (PEM text, which is public) as the HMAC secret. */
TEST(jwt_alg_confusion)
{
    make_keys();
    rc_jwt_keys ks;
    rc_jwt_keys_init(&ks);
    char err[200];
    CHECK(rc_jwt_keys_add_pem(&ks, "rsa1", rsa_pub_pem, strlen(rsa_pub_pem), err, sizeof err) ==
          0);
    signer evil = hs(EVP_sha256(), rsa_pub_pem);
    const char *pl = "{\"sub\":\"admin\"}";
    CHECK_EQ_INT(check(&ks, HS256, pl, &evil), RC_JWT_UNSUPPORTED_ALG);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", pl, &evil),
                 RC_JWT_UNSUPPORTED_ALG);
    /* with a real HS secret beside it, the PEM bytes are still not a secret we accept */
    CHECK(rc_jwt_keys_add_secret(&ks, "hs", secret_a, sizeof secret_a - 1, err, sizeof err) == 0);
    CHECK_EQ_INT(check(&ks, HS256, pl, &evil), RC_JWT_BAD_SIGNATURE);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", pl, &evil),
                 RC_JWT_UNSUPPORTED_ALG);
    /* and the other way: an RS256 header with the HS key's kid */
    signer r = rs();
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"RS256\",\"kid\":\"hs\"}", pl, &r), RC_JWT_UNSUPPORTED_ALG);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", pl, &r), RC_JWT_OK);
    /* an ES256 header over an RSA signature */
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"ES256\"}", pl, &r), RC_JWT_UNSUPPORTED_ALG);
    rc_jwt_keys_release(&ks);
}

TEST(jwt_kid)
{
    rc_jwt_keys ks;
    rc_jwt_keys_init(&ks);
    char err[200];
    CHECK(rc_jwt_keys_add_secret(&ks, "a", secret_a, sizeof secret_a - 1, err, sizeof err) == 0);
    CHECK(rc_jwt_keys_add_secret(&ks, "b", secret_b, sizeof secret_b - 1, err, sizeof err) == 0);
    signer sa = hs(EVP_sha256(), secret_a), sb = hs(EVP_sha256(), secret_b);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS256\",\"kid\":\"b\"}", "{}", &sb), RC_JWT_OK);
    CHECK(claims.key_index == 1);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS256\",\"kid\":\"a\"}", "{}", &sa), RC_JWT_OK);
    CHECK(claims.key_index == 0);
    /* kid selects exactly one key: b's token under kid a fails even though b is configured */
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS256\",\"kid\":\"a\"}", "{}", &sb), RC_JWT_BAD_SIGNATURE);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS256\",\"kid\":\"c\"}", "{}", &sa), RC_JWT_UNKNOWN_KID);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS256\",\"kid\":\"\"}", "{}", &sa), RC_JWT_UNKNOWN_KID);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS256\",\"kid\":7}", "{}", &sa), RC_JWT_BAD_JSON);
    /* without kid every key of the family is tried */
    CHECK_EQ_INT(check(&ks, HS256, "{}", &sb), RC_JWT_OK);
    CHECK(claims.key_index == 1);
    /* a kid never falls back to the keys without one */
    rc_jwt_keys nokid;
    keys_hs(&nokid);
    CHECK_EQ_INT(check(&nokid, "{\"alg\":\"HS256\",\"kid\":\"a\"}", "{}", &sa), RC_JWT_UNKNOWN_KID);
    CHECK_EQ_INT(check(&nokid, HS256, "{}", &sa), RC_JWT_OK);
    rc_jwt_keys_release(&nokid);
    /* an over-long kid matches nothing */
    char hdr[400];
    snprintf(hdr, sizeof hdr, "{\"alg\":\"HS256\",\"kid\":\"%0200d\"}", 0);
    CHECK_EQ_INT(check(&ks, hdr, "{}", &sa), RC_JWT_UNKNOWN_KID);
    rc_jwt_keys_release(&ks);
}

TEST(jwt_malformed)
{
    rc_jwt_keys ks;
    keys_hs(&ks);
    signer s = hs(EVP_sha256(), secret_a);
    static char tok[RC_JWT_MAX_TOKEN + 16];
    size_t good = token(HS256, "{}", &s, tok);
    CHECK_EQ_INT(verify(&ks, tok, good), RC_JWT_OK);
    /* parts */
    CHECK_EQ_INT(verify_str(&ks, ""), RC_JWT_MALFORMED);
    CHECK_EQ_INT(verify_str(&ks, "abc"), RC_JWT_MALFORMED);
    CHECK_EQ_INT(verify_str(&ks, "eyJhbGciOiJIUzI1NiJ9.e30"), RC_JWT_MALFORMED);
    CHECK_EQ_INT(verify_str(&ks, "eyJhbGciOiJIUzI1NiJ9.e30.AAAA.AAAA"), RC_JWT_MALFORMED);
    CHECK_EQ_INT(verify_str(&ks, ".e30.AAAA"), RC_JWT_MALFORMED);
    CHECK_EQ_INT(verify_str(&ks, ".."), RC_JWT_MALFORMED);
    /* base64url: padding, the standard alphabet, whitespace, in the header and in the
     * signature; in the payload only after the signature holds */
    CHECK_EQ_INT(verify_str(&ks, "eyJhbGciOiJIUzI1NiJ9=.e30.AAAA"), RC_JWT_BAD_BASE64);
    CHECK_EQ_INT(verify_str(&ks, "eyJhbGciOiJIUzI1NiJ9 .e30.AAAA"), RC_JWT_BAD_BASE64);
    CHECK_EQ_INT(verify_str(&ks, "eyJhbGciOiJIUzI1NiJ9.e30.AA+/"), RC_JWT_BAD_BASE64);
    CHECK_EQ_INT(verify_str(&ks, "eyJhbGciOiJIUzI1NiJ9.e30.A"), RC_JWT_BAD_BASE64);
    /* signed tokens whose payload part is not base64url, or empty */
    CHECK_EQ_INT(raw_hs256(&ks, "eyJhbGciOiJIUzI1NiJ9.e30="), RC_JWT_BAD_BASE64);
    CHECK_EQ_INT(raw_hs256(&ks, "eyJhbGciOiJIUzI1NiJ9.e3"), RC_JWT_BAD_BASE64);
    CHECK_EQ_INT(raw_hs256(&ks, "eyJhbGciOiJIUzI1NiJ9."), RC_JWT_BAD_JSON);
    CHECK_EQ_INT(raw_hs256(&ks, "eyJhbGciOiJIUzI1NiJ9.e30"), RC_JWT_OK);
    /* JSON: not JSON, not an object, not UTF-8, duplicates, claims of the wrong type */
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS256\"", "{}", &s), RC_JWT_BAD_JSON);
    CHECK_EQ_INT(check(&ks, "[\"HS256\"]", "{}", &s), RC_JWT_BAD_JSON);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS256\",\"alg\":\"none\"}", "{}", &s), RC_JWT_BAD_JSON);
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS256\",\"x\":\"\xff\"}", "{}", &s), RC_JWT_BAD_JSON);
    CHECK_EQ_INT(check(&ks, HS256, "{\"sub\":\"a\"", &s), RC_JWT_BAD_JSON);
    CHECK_EQ_INT(check(&ks, HS256, "\"sub\"", &s), RC_JWT_BAD_JSON);
    CHECK_EQ_INT(check(&ks, HS256, "", &s), RC_JWT_BAD_JSON);
    CHECK_EQ_INT(check(&ks, HS256, "{\"sub\":\"a\",\"s\\u0075b\":\"b\"}", &s), RC_JWT_BAD_JSON);
    CHECK_EQ_INT(check(&ks, HS256, "{\"exp\":1800000000,\"exp\":1}", &s), RC_JWT_BAD_JSON);
    CHECK_EQ_INT(check(&ks, HS256, "{\"sub\":42}", &s), RC_JWT_BAD_JSON);
    CHECK_EQ_INT(check(&ks, HS256, "{\"sub\":\"\\u0000\"}", &s), RC_JWT_BAD_JSON);
    CHECK_EQ_INT(check(&ks, HS256, "{\"rooms\":[\"lobby\"]}", &s), RC_JWT_BAD_JSON);
    CHECK_EQ_INT(check(&ks, HS256, "{\"rooms\":\"lobby\"}", &s), RC_JWT_BAD_JSON);
    /* sub: 255 bytes fit, 256 do not */
    char pl[400];
    snprintf(pl, sizeof pl, "{\"sub\":\"%0255d\"}", 0);
    CHECK_EQ_INT(check(&ks, HS256, pl, &s), RC_JWT_OK);
    CHECK(claims.sub_len == 255 && claims.sub[255] == '\0');
    snprintf(pl, sizeof pl, "{\"sub\":\"%0256d\"}", 0);
    CHECK_EQ_INT(check(&ks, HS256, pl, &s), RC_JWT_BAD_JSON);
    /* length: valid tokens up to RC_JWT_MAX_TOKEN bytes pass, longer ones do not */
    static char big[RC_JWT_MAX_TOKEN];
    static char bigtok[RC_JWT_MAX_TOKEN + 64];
    int near_ok = 0, over = 0;
    for (int pad = 6000; pad < RC_JWT_MAX_TOKEN; pad++) {
        snprintf(big, sizeof big, "{\"x\":\"%0*d\"}", pad, 0);
        size_t n = token(HS256, big, &s, bigtok);
        if (n < RC_JWT_MAX_TOKEN - 4) continue;
        CHECK_EQ_INT(verify(&ks, bigtok, n), n <= RC_JWT_MAX_TOKEN ? RC_JWT_OK : RC_JWT_MALFORMED);
        near_ok += n <= RC_JWT_MAX_TOKEN;
        over += n > RC_JWT_MAX_TOKEN;
        if (n > RC_JWT_MAX_TOKEN + 4) break;
    }
    CHECK(near_ok > 0 && over > 0);
    memset(bigtok, 'A', RC_JWT_MAX_TOKEN + 1);
    CHECK_EQ_INT(verify(&ks, bigtok, RC_JWT_MAX_TOKEN + 1), RC_JWT_MALFORMED);
    /* no keys at all: nothing can be checked */
    rc_jwt_keys empty;
    rc_jwt_keys_init(&empty);
    CHECK_EQ_INT(verify(&empty, tok, good), RC_JWT_UNSUPPORTED_ALG);
    rc_jwt_keys_release(&ks);
}

TEST(jwt_key_loading)
{
    make_keys();
    rc_jwt_keys ks;
    rc_jwt_keys_init(&ks);
    char err[300] = "";
    CHECK(rc_jwt_keys_add_secret(&ks, "k", "short", 5, err, sizeof err) == -1);
    CHECK(strstr(err, "shorter than 32 bytes") && strstr(err, " k "));
    CHECK(rc_jwt_keys_add_secret(&ks, "k", secret_a, 32, err, sizeof err) == 0);
    CHECK(rc_jwt_keys_add_secret(&ks, "k", secret_b, 32, err, sizeof err) == -1);
    CHECK(strstr(err, "kid 'k' is already in use"));
    CHECK(rc_jwt_keys_add_pem(&ks, "k", rsa_pub_pem, strlen(rsa_pub_pem), err, sizeof err) == -1);
    CHECK(ks.n == 1);
    char longkid[RC_JWT_MAX_KID + 2];
    memset(longkid, 'k', sizeof longkid - 1);
    longkid[sizeof longkid - 1] = '\0';
    CHECK(rc_jwt_keys_add_secret(&ks, longkid, secret_a, 32, err, sizeof err) == -1);
    longkid[RC_JWT_MAX_KID] = '\0';
    CHECK(rc_jwt_keys_add_secret(&ks, longkid, secret_a, 32, err, sizeof err) == 0);
    /* not keys; a private key; a short RSA key */
    CHECK(rc_jwt_keys_add_pem(&ks, NULL, "hello", 5, err, sizeof err) == -1);
    CHECK(strstr(err, "no PEM public key or certificate"));
    CHECK(rc_jwt_keys_add_pem(&ks, NULL, rsa_priv_pem, strlen(rsa_priv_pem), err, sizeof err) ==
          -1);
    char small[2048];
    pub_pem(rsa1024_key, small, sizeof small);
    CHECK(rc_jwt_keys_add_pem(&ks, NULL, small, strlen(small), err, sizeof err) == -1);
    CHECK(strstr(err, "shorter than 2048 bits"));
    /* files */
    CHECK(rc_jwt_keys_add_pem_file(&ks, NULL, "/nonexistent/key.pem", err, sizeof err) == -1);
    CHECK(strstr(err, "cannot open JWT key file '/nonexistent/key.pem'"));
    CHECK(rc_jwt_keys_add_pem_file(&ks, NULL, "/dev/null", err, sizeof err) == -1);
    CHECK(strstr(err, "'/dev/null'") && strstr(err, "no PEM public key"));
    /* NULL err is allowed */
    CHECK(rc_jwt_keys_add_pem(&ks, NULL, "x", 1, NULL, 0) == -1);
    CHECK(ks.n == 2);
    /* many keys (the array grows) */
    for (int i = 0; i < 20; i++) {
        char kid[16];
        snprintf(kid, sizeof kid, "g%d", i);
        CHECK(rc_jwt_keys_add_secret(&ks, kid, secret_b, 33, err, sizeof err) == 0);
    }
    signer s = {SIGN_HMAC, NULL, secret_b, 33, NULL};
    s.md = EVP_sha256();
    CHECK_EQ_INT(check(&ks, "{\"alg\":\"HS256\",\"kid\":\"g19\"}", "{}", &s), RC_JWT_OK);
    CHECK(claims.key_index == 21);
    rc_jwt_keys_release(&ks);
}

TEST(jwt_err_names)
{
    for (int i = 0; i < RC_JWT__COUNT; i++) {
        const char *n = rc_jwt_err_name((enum rc_jwt_err)i);
        CHECK(n && strcmp(n, "unknown") != 0);
        for (int j = 0; j < i; j++) CHECK(strcmp(n, rc_jwt_err_name((enum rc_jwt_err)j)) != 0);
    }
    CHECK(strcmp(rc_jwt_err_name(RC_JWT_ALG_NONE), "alg_none") == 0);
    CHECK(strcmp(rc_jwt_err_name(RC_JWT_NOT_YET_VALID), "not_yet_valid") == 0);
    CHECK(strcmp(rc_jwt_err_name(RC_JWT__COUNT), "unknown") == 0);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(jwt_valid_hs);
    RUN(jwt_valid_rs_es_from_files);
    RUN(jwt_expiry_and_nbf);
    RUN(jwt_audience_issuer);
    RUN(jwt_bad_signature);
    RUN(jwt_alg_none);
    RUN(jwt_alg_confusion);
    RUN(jwt_kid);
    RUN(jwt_malformed);
    RUN(jwt_key_loading);
    RUN(jwt_err_names);
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(ec_key);
    EVP_PKEY_free(rsa1024_key);
    UNIT_MAIN_END("test_jwt");
}
