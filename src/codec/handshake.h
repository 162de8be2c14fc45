/* handshake.h — the cryptographic part of the WebSocket opening handshake (RFC 6455 §4.2).
 *
 * SHA-1 and base64 come from OpenSSL's libcrypto: solved problems are not rewritten here.
 */
#ifndef RC_HANDSHAKE_H
#define RC_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#define RC_WS_ACCEPT_LEN 28  /* base64 of a 20-byte SHA-1 */

/* rc_ws_key_valid is true when key[0..len) is base64 of exactly 16 bytes (24 characters
 * ending in "=="), as §4.1 requires of Sec-WebSocket-Key. */
bool rc_ws_key_valid(const char *key, size_t len);

/* rc_ws_accept computes Sec-WebSocket-Accept for key into out (RC_WS_ACCEPT_LEN + 1 bytes,
 * NUL-terminated). Returns 0, or -1 if libcrypto fails. */
int rc_ws_accept(const char *key, size_t len, char out[RC_WS_ACCEPT_LEN + 1]);

#endif
