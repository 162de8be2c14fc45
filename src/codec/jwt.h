/* jwt.h — verifying connection tokens: JWTs in JWS compact form (RFC 7519, RFC 7515).
 *
 * A client proves who it is with a token its backend signed (issue 15, "Who may do what"). This
 * module only answers "is this token good, and what does it say?"; where the token comes from
 * (Authorization header, ?token=, an auth message) and what the rooms grants allow belong to
 * the layers above. The cryptography is OpenSSL's libcrypto; nothing here is hand-written crypto.
 *
 * Algorithms: HS256, HS384, HS512 (HMAC with a shared secret), RS256 (RSA PKCS#1 v1.5 with
 * SHA-256) and ES256 (ECDSA on P-256 with SHA-256; JOSE's raw 64-byte r||s signature is
 * converted to DER for OpenSSL). Anything else is RC_JWT_UNSUPPORTED_ALG; "none" (in any case)
 * is RC_JWT_ALG_NONE.
 *
 * Keys (rc_jwt_keys): any number at once, each with an optional kid and bound to one
 * algorithm family — a secret verifies HS* only, an RSA public key RS256 only, a P-256 public
 * key ES256 only. The family comes from how the key was loaded, never from the token, so an
 * HS256 token is never checked with an RSA or EC public key's bytes as the HMAC secret (the
 * classic algorithm-confusion attack). A header kid selects the one key with that kid
 * (RC_JWT_UNKNOWN_KID when none has it; a key without a kid is never chosen by a kid, so a
 * token naming a kid cannot fall back to "any key"); without a kid every key of the header's
 * family is tried, in the order they were added. No usable key for the header's alg (no key of that
 * family, or the kid names a key of another family) is RC_JWT_UNSUPPORTED_ALG.
 *
 * Order of checks, so each refusal has one reason: size and shape (three non-empty-header
 * parts, <= RC_JWT_MAX_TOKEN bytes) -> header base64url and JSON -> alg -> key -> signature ->
 * payload base64url and JSON -> exp -> nbf -> iss -> aud. The payload is decoded only after the
 * signature holds, so claims are read from authenticated bytes only.
 *
 * Claims: exp and nbf are NumericDates (a JSON number of seconds, fractions allowed and rounded
 * down); a token is expired when now >= exp + leeway and not yet valid when now + leeway < nbf.
 * Both are optional (a token without exp never expires; the caller may insist on one by
 * checking has_exp). When the keyset has an issuer, iss must be that exact string; when it has
 * an audience, aud (a string, or an array of strings) must contain it; a missing claim then
 * fails. Without a configured value the claim is not checked. sub, when present, must be a
 * string and is returned decoded; rooms, when present, must be an object and is returned as
 * its raw JSON text for the permission layer. A claim of the wrong type, or any of the claims
 * read here (and alg, kid, crit in the header) appearing twice, is RC_JWT_BAD_JSON: parsers
 * that keep the first and the last occurrence would disagree on what the token says. A header
 * with "crit" is RC_JWT_UNSUPPORTED_ALG (RFC 7515 §4.1.11: we understand no extensions).
 *
 * Memory: verification reads tok[0..n) only, decodes into the caller's rc_jwt_claims (a
 * bounded scratch of about 13 KiB, small enough for a stack) and allocates nothing itself;
 * libcrypto allocates inside a signature check. Loading keys allocates (configuration time).
 *
 * Reload (SIGHUP): build a new keyset, swap it in, release the old one; a keyset is never
 * modified while tokens are being verified with it, so it can be shared read-only.
 */
#ifndef RC_JWT_H
#define RC_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_JWT_MAX_TOKEN 8192   /* bytes; longer tokens are RC_JWT_MALFORMED */
#define RC_JWT_MAX_KID 128      /* bytes of a decoded kid, ours or a token's */
#define RC_JWT_MAX_SUB 255      /* bytes of a decoded sub; longer is RC_JWT_BAD_JSON */
#define RC_JWT_MAX_CLAIM 255    /* bytes of a configured issuer or audience */
#define RC_JWT_MIN_SECRET 32    /* bytes: RFC 7518 §3.2 wants at least the hash size (HS256) */
#define RC_JWT_MIN_RSA_BITS 2048

/* Verification results. Names (rc_jwt_err_name) are stable: they go into error replies and
 * metric labels. */
enum rc_jwt_err {
    RC_JWT_OK = 0,
    RC_JWT_MALFORMED,        /* not three '.'-separated parts, empty header, too long */
    RC_JWT_BAD_BASE64,       /* a part is not canonical unpadded base64url */
    RC_JWT_BAD_JSON,         /* header/payload not a JSON object, claim of the wrong type,
                                duplicate claim */
    RC_JWT_UNSUPPORTED_ALG,  /* alg unknown, missing, "crit" present, or no key for it */
    RC_JWT_ALG_NONE,         /* alg "none": unsigned tokens are never accepted */
    RC_JWT_UNKNOWN_KID,      /* the header's kid names no configured key */
    RC_JWT_BAD_SIGNATURE,    /* no candidate key verifies the signature */
    RC_JWT_EXPIRED,          /* now >= exp + leeway */
    RC_JWT_NOT_YET_VALID,    /* now + leeway < nbf */
    RC_JWT_BAD_AUDIENCE,     /* audience configured, aud missing or without it */
    RC_JWT_BAD_ISSUER,       /* issuer configured, iss missing or different */
    RC_JWT__COUNT
};

/* rc_jwt_err_name: "ok", "malformed", "bad_base64", ... (the enum's name in lower case
 * without the prefix); "unknown" for values outside the enum. */
const char *rc_jwt_err_name(enum rc_jwt_err e);

/* Algorithm families: what a key can verify. */
enum rc_jwt_family {
    RC_JWT_FAMILY_HS,        /* HMAC secret: HS256, HS384, HS512 */
    RC_JWT_FAMILY_RS,        /* RSA public key: RS256 */
    RC_JWT_FAMILY_ES,        /* EC P-256 public key: ES256 */
};

typedef struct rc_jwt_key rc_jwt_key; /* one key; internal to jwt.c */

typedef struct rc_jwt_keys {
    rc_jwt_key *key;          /* keys in the order added */
    size_t n;                 /* keys in use */
    size_t cap;               /* keys allocated */
    char issuer[RC_JWT_MAX_CLAIM + 1];   /* required iss, "" = not checked */
    char audience[RC_JWT_MAX_CLAIM + 1]; /* required aud member, "" = not checked */
    unsigned leeway;          /* seconds of clock skew allowed on exp and nbf */
} rc_jwt_keys;

/* rc_jwt_keys_init sets up an empty keyset: no keys, no iss/aud checks, leeway 0. */
void rc_jwt_keys_init(rc_jwt_keys *ks);

/* rc_jwt_keys_release frees the keys; ks is empty afterwards (as after init). */
void rc_jwt_keys_release(rc_jwt_keys *ks);

/* Adding keys. kid may be NULL (no kid); a kid already in the keyset is refused. On failure
 * these return -1 and write a message to err (errcap bytes, NUL-terminated, may be 0 with err
 * NULL) that states the problem and quotes the offender; the keyset is unchanged. */

/* rc_jwt_keys_add_secret adds an HMAC secret (its raw bytes, copied; wiped when released) of
 * at least RC_JWT_MIN_SECRET bytes. One secret verifies HS256, HS384 and HS512; RFC 7518 §3.2
 * asks for 48 and 64 bytes for the latter two, which we recommend (docs/auth.md) but do not
 * enforce, so that one configured secret serves all three. */
int rc_jwt_keys_add_secret(rc_jwt_keys *ks, const char *kid, const void *secret, size_t len,
                           char *err, size_t errcap);

/* rc_jwt_keys_add_pem adds the public key in pem[0..len): a "PUBLIC KEY" (SubjectPublicKeyInfo)
 * or a "CERTIFICATE" (its subject key; the certificate's dates and chain are not checked: it is
 * only a key container here). RSA keys (>= RC_JWT_MIN_RSA_BITS) join the RS family, P-256 keys
 * the ES family; other key types, and private keys, are refused. */
int rc_jwt_keys_add_pem(rc_jwt_keys *ks, const char *kid, const char *pem, size_t len, char *err,
                        size_t errcap);

/* rc_jwt_keys_add_pem_file is rc_jwt_keys_add_pem on the contents of the file at path
 * (at most 1 MiB). */
int rc_jwt_keys_add_pem_file(rc_jwt_keys *ks, const char *kid, const char *path, char *err,
                             size_t errcap);

/* rc_jwt_keys_set_issuer / _set_audience set the required iss / aud value (NULL or "" turns
 * the check off). Return -1, changing nothing, for values over RC_JWT_MAX_CLAIM bytes. */
int rc_jwt_keys_set_issuer(rc_jwt_keys *ks, const char *iss);
int rc_jwt_keys_set_audience(rc_jwt_keys *ks, const char *aud);

/* What a good token says. Filled by rc_jwt_verify; views point into the struct itself, so it
 * must not be copied by value while they are in use. */
typedef struct rc_jwt_claims {
    char sub[RC_JWT_MAX_SUB + 1]; /* decoded sub, NUL-terminated ("" when absent) */
    size_t sub_len;          /* bytes in sub */
    bool has_sub;            /* whether the token had a sub */
    int64_t exp;             /* exp in seconds since the epoch (0 when absent) */
    bool has_exp;            /* whether the token had an exp */
    const char *rooms;       /* raw JSON text of the rooms object, in payload[]; NULL if absent */
    size_t rooms_len;        /* bytes of rooms */
    size_t key_index;        /* which key of the keyset verified the token */
    /* scratch, for the module: the decoded header, payload and signature */
    char header[RC_JWT_MAX_TOKEN / 4 * 3];  /* decoded header JSON */
    char payload[RC_JWT_MAX_TOKEN / 4 * 3]; /* decoded payload JSON; rooms points in here */
    unsigned char sig[1024]; /* decoded signature (RSA up to 8192 bits) */
} rc_jwt_claims;

/* rc_jwt_verify checks the token tok[0..n) (the compact form, no surrounding whitespace) at
 * time now (seconds since the epoch) against ks and fills *out. Returns RC_JWT_OK or the first
 * reason for refusal (see the order above); on refusal *out is unspecified. */
enum rc_jwt_err rc_jwt_verify(const rc_jwt_keys *ks, const char *tok, size_t n, int64_t now,
                              rc_jwt_claims *out);

#endif
