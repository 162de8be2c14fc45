/* base64.c — the RFC 4648 base64 encoder and base64url decoder (see base64.h).
 *
 * Three input bytes become four output characters; the loop handles whole groups and the one
 * possibly partial group at the end is padded with '='. A table lookup per character is as fast
 * as anything cleverer for the payload sizes roomcast sends (a message at most), so no SIMD.
 */
#include "codec/base64.h"

#include <limits.h>
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

/* base64url_value maps a base64url character to its six bits, or 255. A 256-entry table would
 * be faster; tokens are decoded once per connection, so the branches are clearer. */
static unsigned base64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return 255;
}

size_t rc_base64url_decoded_len(size_t n)
{
    return n / 4 * 3 + (n % 4 * 3) / 4;
}

long rc_base64url_decode(const char *s, size_t n, void *out, size_t cap)
{
    uint8_t *o = out;
    if (n % 4 == 1) return -1;
    if (rc_base64url_decoded_len(n) > cap || n / 4 > (size_t)LONG_MAX / 3) return -1;
    size_t w = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned v = base64url_value((unsigned char)s[i]);
        if (v == 255) return -1;
        acc = acc << 6 | v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[w++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) return -1; /* the unused low bits of the last character must be zero */
    return (long)w;
}
