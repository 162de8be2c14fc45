/* base64.h — base64 encoding (RFC 4648 §4: the standard alphabet, '=' padding).
 *
 * For binary payloads that must travel inside JSON: a binary room message as seen by a line
 * member of the TCP port (docs/tcp.md), a kept binary message in the HTTP API's history. Only
 * the encoder exists; nothing in roomcast decodes base64. Nothing here allocates.
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

#endif
