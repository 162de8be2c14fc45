/* fuzz_jwt.c — libFuzzer target for src/codec/jwt.c and the base64url decoder.
 *
 * Input, by its first byte:
 *   'S' header-JSON '\n' payload-JSON: the target encodes both parts and signs them with the
 *       keyset's HMAC secret itself, so the fuzzer reaches the claim checks (which only ever
 *       see authenticated bytes) without having to forge a MAC;
 *   anything else: the rest is a token, verified as it comes off the wire.
 * Every input is also run through rc_base64url_decode, whose output must re-encode to exactly
 * the input (the decoder accepts canonical text only).
 *
 * The keyset holds the HMAC secret (kid "h"), an RSA 2048 and an EC P-256 key made at start-up,
 * so RS256 and ES256 headers reach OpenSSL with arbitrary signatures; a second keyset adds an
 * issuer, an audience and a leeway. Verification runs on an exact-size heap copy, so ASan sees
 * any read past the end.
 */
#include "codec/base64.h"
#include "codec/jwt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#define CHECK(c)                                                                \
    do {                                                                        \
        if (!(c)) {                                                             \
            fprintf(stderr, "fuzz_jwt: %s:%d: CHECK(%s)\n", __FILE__, __LINE__, #c); \
            abort();                                                            \
        }                                                                       \
    } while (0)

#define NOW ((int64_t)1700000000)
static const char secret[] = "fuzz-secret-fuzz-secret-fuzz-secret!";

static rc_jwt_keys plain, strict;
static rc_jwt_claims claims;

static void add_generated(rc_jwt_keys *ks, const char *type, const char *kid)
{
    EVP_PKEY *pk = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    CHECK(c && EVP_PKEY_keygen_init(c) == 1);
    if (!strcmp(type, "RSA")) CHECK(EVP_PKEY_CTX_set_rsa_keygen_bits(c, 2048) == 1);
    else CHECK(EVP_PKEY_CTX_set_group_name(c, "P-256") == 1);
    CHECK(EVP_PKEY_keygen(c, &pk) == 1);
    BIO *b = BIO_new(BIO_s_mem());
    CHECK(b && PEM_write_bio_PUBKEY(b, pk) == 1);
    char *pem;
    long n = BIO_get_mem_data(b, &pem);
    CHECK(rc_jwt_keys_add_pem(ks, kid, pem, (size_t)n, NULL, 0) == 0);
    BIO_free(b);
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(c);
}

static void setup(rc_jwt_keys *ks)
{
    rc_jwt_keys_init(ks);
    CHECK(rc_jwt_keys_add_secret(ks, "h", secret, sizeof(secret) - 1, NULL, 0) == 0);
    add_generated(ks, "RSA", "r");
    add_generated(ks, "EC", "e");
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setup(&plain);
    setup(&strict);
    CHECK(rc_jwt_keys_set_issuer(&strict, "idp") == 0);
    CHECK(rc_jwt_keys_set_audience(&strict, "roomcast") == 0);
    strict.leeway = 30;
    return 0;
}

static size_t b64url(const void *p, size_t n, char *out)
{
    size_t l = rc_base64_encode(p, n, out);
    while (l && out[l - 1] == '=') l--;
    for (size_t i = 0; i < l; i++) out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return l;
}

static void verify(const char *tok, size_t n)
{
    char *p = malloc(n ? n : 1);
    CHECK(p);
    memcpy(p, tok, n);
    const rc_jwt_keys *sets[2] = {&plain, &strict};
    for (int i = 0; i < 2; i++) {
        enum rc_jwt_err e = rc_jwt_verify(sets[i], p, n, NOW, &claims);
        CHECK((unsigned)e < RC_JWT__COUNT);
        CHECK(strcmp(rc_jwt_err_name(e), "unknown") != 0);
        if (n > RC_JWT_MAX_TOKEN) CHECK(e == RC_JWT_MALFORMED);
        if (e != RC_JWT_OK) continue;
        /* only the HMAC key can have signed anything the fuzzer made */
        CHECK(claims.key_index == 0);
        CHECK(claims.sub_len <= RC_JWT_MAX_SUB && claims.sub[claims.sub_len] == '\0');
        CHECK(claims.has_sub || claims.sub_len == 0);
        if (claims.has_exp) CHECK(NOW < claims.exp + (int64_t)sets[i]->leeway);
        if (claims.rooms) {
            CHECK(claims.rooms >= claims.payload &&
                  claims.rooms + claims.rooms_len <= claims.payload + sizeof(claims.payload));
            CHECK(claims.rooms[0] == '{' && claims.rooms[claims.rooms_len - 1] == '}');
        }
    }
    free(p);
}

static void check_base64url(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    size_t cap = rc_base64url_decoded_len(size);
    uint8_t *out = malloc(cap ? cap : 1);
    char *back = malloc(rc_base64_len(cap) + 1);
    CHECK(in && out && back);
    memcpy(in, data, size);
    long r = rc_base64url_decode(in, size, out, cap);
    if (r >= 0) {
        CHECK((size_t)r == cap);
        size_t l = b64url(out, (size_t)r, back);
        CHECK(l == size && memcmp(back, in, size) == 0);
    }
    if (cap) CHECK(rc_base64url_decode(in, size, out, cap - 1) == -1);
    free(in);
    free(out);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size <= 2 * RC_JWT_MAX_TOKEN) check_base64url(data, size);
    if (size == 0) return 0;
    if (data[0] != 'S') {
        verify((const char *)data + 1, size - 1);
        return 0;
    }
    const uint8_t *nl = memchr(data + 1, '\n', size - 1);
    if (!nl || size > RC_JWT_MAX_TOKEN) return 0;
    size_t hl = (size_t)(nl - data - 1), pl = size - 1 - hl - 1;
    static char tok[RC_JWT_MAX_TOKEN * 2];
    size_t o = b64url(data + 1, hl, tok);
    tok[o++] = '.';
    o += b64url(nl + 1, pl, tok + o);
    /* the hash the header asks for, if it names one, so HS384/HS512 tokens verify too */
    const EVP_MD *md = memmem(data + 1, hl, "HS384", 5)   ? EVP_sha384()
                       : memmem(data + 1, hl, "HS512", 5) ? EVP_sha512()
                                                          : EVP_sha256();
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned ml = 0;
    CHECK(HMAC(md, secret, (int)sizeof(secret) - 1, (const unsigned char *)tok, o, mac,
               &ml));
    tok[o++] = '.';
    o += b64url(mac, ml, tok + o);
    verify(tok, o);
    return 0;
}
