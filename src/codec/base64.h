/* base64.h — base64 encoding (RFC 4648 §4: the standard alphabet, '=' padding) and base64url
 * decoding (RFC 4648 §5: '-' and '_' for '+' and '/', no padding).
 *
 * The encoder is for binary payloads that must travel inside JSON: a binary room message as
 * seen by a line member of the TCP port (docs/tcp.md), a kept binary message in the HTTP API's
 * history. The base64url decoder reads the three parts of a JWT (codec/jwt.h), which RFC 7515
 * §2 writes without padding. Nothing here allocates.
 */
#ifndef RC_BASE64_H
#define RC_BASE64_H

#include <stddef.h>

/* rc_base64_len is the length of the encoding of n bytes: 4 * ceil(n / 3). n must be at most
 * SIZE_MAX / 4 * 3 so that the result fits in a size_t. */
size_t rc_base64_len(size_t n);

/* rc_base64_encode writes the encoding of p[0..n) to out, which must have room for
 * rc_base64_len(n) bytes, and returns that length. No terminating NUL is written. p may be
 * NULL when n is 0; out and p must not overlap. */
size_t rc_base64_encode(const void *p, size_t n, char *out);

/* rc_base64url_decoded_len is the most bytes rc_base64url_decode can write for n input
 * characters: floor(n * 3 / 4). */
size_t rc_base64url_decoded_len(size_t n);

/* rc_base64url_decode decodes the unpadded base64url text s[0..n) into out (cap bytes) and
 * returns the decoded length, or -1 when s is not canonical unpadded base64url or does not
 * fit. Refused: any character outside A-Z a-z 0-9 '-' '_' (so '=', '+', '/' and whitespace
 * too), a length of 4k+1 (it cannot end a group), and non-zero unused bits in the last
 * character — a token has exactly one spelling, so two strings never verify as one. Reads
 * s[0..n) only; on error out may hold partial output. */
long rc_base64url_decode(const char *s, size_t n, void *out, size_t cap);

#endif
