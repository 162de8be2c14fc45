/* tcpwire.c — decoding what a raw TCP client sends: the preamble decision, lines, frames.
 *
 * Every decision is taken at a fixed point of the stream, never "when the buffer happens to
 * hold enough": the preamble after its fourth byte (or the first byte that differs), a line's
 * end at its '\n', "too long" after max + 1 bytes (max + 2 when byte max is '\r'), a frame's
 * size error after its length bytes. That is what makes the result independent of how the
 * input is split into reads, which the unit tests and fuzz/fuzz_tcpwire.c check byte by byte.
 *
 * The '\n' search looks at no more than the max + 2 bytes that can belong to a valid line, so a
 * client streaming megabytes without a newline costs one bounded scan per read, and `scanned`
 * keeps a slowly arriving long line from being searched again from its start on every read.
 *
 * Deliberately not done: UTF-8 and JSON validation (the transport runs rc_utf8 and rc_json_scan
 * on the span, as for a WebSocket message), the close frame's code and reason (the transport
 * checks them like WebSocket's), and minimum-size checks of binary envelopes.
 */
#include "codec/tcpwire.h"

#include <string.h>

const uint8_t rc_tcpw_preamble[RC_TCPW_PREAMBLE_LEN] = {0x00, 'R', 'C', 0x01};

/* Kinds for opcodes 0x0..0xF; 0 (RC_TCPW_NONE) marks an opcode framed mode does not accept,
 * continuation (0x0) included: a frame is always a whole message. */
static const uint8_t tcpw_kind_of[16] = {
    [RC_WS_TEXT] = RC_TCPW_TEXT,   [RC_WS_BINARY] = RC_TCPW_BINARY,
    [RC_WS_CLOSE] = RC_TCPW_CLOSE, [RC_WS_PING] = RC_TCPW_PING,
    [RC_WS_PONG] = RC_TCPW_PONG,
};

void rc_tcpw_init(rc_tcpw *d, size_t max)
{
    d->mode = RC_TCPW_UNDECIDED;
    d->skipping = false;
    d->scanned = 0;
    d->max = max;
}

static long tcpw_emit(rc_tcpw *d, rc_tcpw_msg *out, uint8_t kind, const char *p, size_t len,
                      size_t consumed)
{
    d->scanned = 0;
    out->kind = kind;
    out->p = p;
    out->len = len;
    return (long)consumed;
}

static bool tcpw_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t') return false;
    return true;
}

/* tcpw_text hands up the line p[0..i] whose '\n' is at i. */
static long tcpw_text(rc_tcpw *d, const char *p, size_t i, rc_tcpw_msg *out)
{
    size_t len = i > 0 && p[i - 1] == '\r' ? i - 1 : i;
    if (tcpw_blank(p, len)) return tcpw_emit(d, out, RC_TCPW_NONE, p, i + 1, i + 1);
    return tcpw_emit(d, out, RC_TCPW_TEXT, p, len, i + 1);
}

static long tcpw_line(rc_tcpw *d, const char *p, size_t n, rc_tcpw_msg *out)
{
    size_t max = d->max;
    if (d->skipping) {
        if (n == 0) return 0;
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) + 1 : n;
        if (nl) d->skipping = false;
        return tcpw_emit(d, out, RC_TCPW_NONE, p, k, k);
    }

    /* A line of valid length has its '\n' within the first max + 1 bytes, or at max + 1 right
     * after a '\r': look no further than that. (n > max implies max + 1 does not overflow.) */
    size_t end = n <= max ? n : max + 1;
    size_t from = d->scanned < end ? d->scanned : end;
    const char *nl = memchr(p + from, '\n', end - from);
    if (nl) return tcpw_text(d, p, (size_t)(nl - p), out);
    d->scanned = end;
    if (n <= max) return 0;

    /* p[0..max] holds no '\n', so the content is longer than max, unless byte max is a '\r'
     * and the next one the '\n' after it. */
    size_t proof = max + 1;
    if (p[max] == '\r') {
        if (n == max + 1) return 0;
        if (p[max + 1] == '\n') return tcpw_text(d, p, max + 1, out);
        proof = max + 2;
    }
    d->skipping = true;
    return tcpw_emit(d, out, RC_TCPW_TOO_LONG, p, proof, proof);
}

static long tcpw_frame(rc_tcpw *d, const char *p, size_t n, rc_tcpw_msg *out)
{
    const uint8_t *u = (const uint8_t *)p;
    if (n < 4) return 0;
    uint32_t len = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
                   (uint32_t)u[3] << 24;
    if (len > d->max) return -RC_WS_CLOSE_TOO_BIG;
    if (n < RC_TCPW_HEADER_LEN) return 0;
    uint8_t opcode = u[4];
    uint8_t kind = opcode < 16 ? tcpw_kind_of[opcode] : RC_TCPW_NONE;
    if (kind == RC_TCPW_NONE) return -RC_WS_CLOSE_PROTOCOL;
    if (opcode >= RC_WS_CLOSE && len > RC_WS_MAX_CONTROL_PAYLOAD) return -RC_WS_CLOSE_PROTOCOL;
    if (n - RC_TCPW_HEADER_LEN < len) return 0;
    return tcpw_emit(d, out, kind, p + RC_TCPW_HEADER_LEN, len, RC_TCPW_HEADER_LEN + (size_t)len);
}

/* The preamble is compared byte by byte as it arrives, so a client that sent 0x00 and then
 * something else is refused at the byte that differs, not after four bytes. */
static long tcpw_undecided(rc_tcpw *d, const char *p, size_t n, rc_tcpw_msg *out)
{
    if (n == 0) return 0;
    if (p[0] != 0x00) {
        d->mode = RC_TCPW_LINE; /* the byte is the start of the first line: consume nothing */
        return tcpw_line(d, p, n, out);
    }
    size_t k = n < RC_TCPW_PREAMBLE_LEN ? n : RC_TCPW_PREAMBLE_LEN;
    if (memcmp(p, rc_tcpw_preamble, k) != 0) return -RC_WS_CLOSE_PROTOCOL;
    if (k < RC_TCPW_PREAMBLE_LEN) return 0;
    d->mode = RC_TCPW_FRAMED;
    return tcpw_emit(d, out, RC_TCPW_PREAMBLE, p, RC_TCPW_PREAMBLE_LEN, RC_TCPW_PREAMBLE_LEN);
}

long rc_tcpw_next(rc_tcpw *d, const char *p, size_t n, rc_tcpw_msg *out)
{
    switch (d->mode) {
    case RC_TCPW_LINE: return tcpw_line(d, p, n, out);
    case RC_TCPW_FRAMED: return tcpw_frame(d, p, n, out);
    default: return tcpw_undecided(d, p, n, out);
    }
}

void rc_tcpw_header(uint8_t out[RC_TCPW_HEADER_LEN], uint8_t opcode, uint32_t len)
{
    out[0] = (uint8_t)len;
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 24);
    out[4] = opcode;
}
