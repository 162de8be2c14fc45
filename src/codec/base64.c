/* base64.c — the RFC 4648 base64 encoder (see base64.h).
 *
 * Three input bytes become four output characters; the loop handles whole groups and the one
 * possibly partial group at the end is padded with '='. A table lookup per character is as fast
 * as anything cleverer for the payload sizes roomcast sends (a message at most), so no SIMD.
 */
#include "codec/base64.h"

#include <stdint.h>

static const char base64_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t rc_base64_len(size_t n)
{
    return (n / 3 + (n % 3 != 0)) * 4;
}

size_t rc_base64_encode(const void *p, size_t n, char *out)
{
    const uint8_t *s = p;
    char *o = out;
    size_t i = 0;
    for (; n - i >= 3; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        o[0] = base64_alphabet[v >> 18];
        o[1] = base64_alphabet[(v >> 12) & 63];
        o[2] = base64_alphabet[(v >> 6) & 63];
        o[3] = base64_alphabet[v & 63];
        o += 4;
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        o[0] = base64_alphabet[v >> 18];
        o[1] = base64_alphabet[(v >> 12) & 63];
        o[2] = i + 1 < n ? base64_alphabet[(v >> 6) & 63] : '=';
        o[3] = '=';
        o += 4;
    }
    return (size_t)(o - out);
}
