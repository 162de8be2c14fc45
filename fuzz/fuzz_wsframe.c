/* fuzz_wsframe.c — libFuzzer target for src/codec/wsframe.c.
 *
 * Input layout: byte 0 holds options (bit 0: RC_WS_REQUIRE_MASK, bit 1: RC_WS_ALLOW_RSV1; the
 * rest choose where the payload is split), the remaining bytes are what a peer sent. Checked on
 * every input:
 *   - the header parse is consistent across prefixes: shorter inputs ask for more (0) or give
 *     the same error, never a different header, and a success never claims more bytes than
 *     it was given;
 *   - the fields agree with the bits on the wire, and every rule in wsframe.h holds (RSV1 only
 *     when allowed and on a first data frame, lengths in their minimal form);
 *   - the payload bytes present, unmasked in two pieces at their offsets, equal a one-piece
 *     unmask and a byte-by-byte reference; unmasking twice restores the input;
 *   - encoding the parsed header (and a length taken from the input) and parsing it back gives
 *     the same frame, in the minimal size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/wsframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(uint8_t opcode, bool fin, uint64_t len)
{
    uint8_t h[RC_WS_MAX_SERVER_HEADER + 1];
    h[RC_WS_MAX_SERVER_HEADER] = 0xEE;
    size_t n = rc_ws_encode_header(h, opcode, fin, len);
    if (n != rc_ws_header_size(len)) abort();
    if (n != (len < 126 ? 2u : len <= 0xFFFF ? 4u : 10u)) abort();
    if (h[RC_WS_MAX_SERVER_HEADER] != 0xEE) abort(); /* wrote past the maximum */
    rc_ws_frame f;
    int r = rc_ws_parse_header(h, n, false, &f);
    bool control = opcode >= 8;
    bool known = opcode <= 2 || (opcode >= 8 && opcode <= 10);
    if (!known || (control && (!fin || len > 125))) {
        if (r != -RC_WS_CLOSE_PROTOCOL) abort();
        return;
    }
    if (r != (int)n || f.len != len || f.opcode != opcode || f.fin != fin || f.masked) abort();
    if (rc_ws_parse_header(h, n, true, &f) != -RC_WS_CLOSE_PROTOCOL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t opts = data[0];
    unsigned flags = opts & 3;
    bool require_mask = opts & RC_WS_REQUIRE_MASK;
    size_t n = size - 1;
    uint8_t *p = malloc(n ? n : 1); /* exact-size copy: ASan sees any over-read */
    if (!p) return 0;
    memcpy(p, data + 1, n);

    rc_ws_frame f;
    int r = rc_ws_parse_header(p, n, flags, &f);
    if (r != 0 && r != -RC_WS_CLOSE_PROTOCOL && !(r >= 2 && r <= RC_WS_MAX_HEADER)) abort();
    if (r > 0 && (size_t)r > n) abort();

    /* prefixes: 0 until the answer, then that same answer */
    for (size_t k = 0; k < n && k <= RC_WS_MAX_HEADER; k++) {
        rc_ws_frame g;
        int rk = rc_ws_parse_header(p, k, flags, &g);
        if (rk != 0 && rk != r) abort();
        if (r > 0 && (size_t)r > k && rk != 0) abort();
        if (r > 0 && (size_t)r <= k && rk != r) abort();
        if (rk > 0 && (g.fin != f.fin || g.rsv1 != f.rsv1 || g.opcode != f.opcode || g.masked != f.masked ||
                       g.len != f.len || g.header_len != f.header_len ||
                       memcmp(g.mask, f.mask, 4) != 0))
            abort();
    }

    if (r > 0) {
        size_t hl = (size_t)r;
        if (f.header_len != hl) abort();
        if (f.fin != !!(p[0] & 0x80) || f.opcode != (p[0] & 0x0F) || f.masked != !!(p[1] & 0x80))
            abort();
        if (p[0] & 0x30) abort();
        if (f.rsv1 != !!(p[0] & 0x40)) abort();
        if (f.rsv1 && (!(flags & RC_WS_ALLOW_RSV1) || f.opcode == RC_WS_CONT || f.opcode >= 8))
            abort();
        if (((p[1] & 0x7F) == 126 && f.len < 126) || ((p[1] & 0x7F) == 127 && f.len < 65536))
            abort(); /* not the minimal length form */
        if (!(f.opcode <= 2 || (f.opcode >= 8 && f.opcode <= 10))) abort();
        if (f.opcode >= 8 && (!f.fin || f.len > 125)) abort();
        if (f.len >> 63) abort();
        if (require_mask && !f.masked) abort();
        if (hl != 2 + (f.masked ? 4u : 0u) + ((p[1] & 0x7F) == 126 ? 2u : (p[1] & 0x7F) == 127 ? 8u : 0u))
            abort();
        if (f.masked && memcmp(f.mask, p + hl - 4, 4) != 0) abort();

        /* payload: what is present, unmasked in one go, in two pieces, and by reference */
        size_t avail = n - hl;
        size_t plen = f.len < avail ? (size_t)f.len : avail;
        const uint8_t *payload = p + hl;
        uint8_t *one = malloc(plen ? plen : 1), *two = malloc(plen ? plen : 1);
        if (!one || !two) abort();
        memcpy(one, payload, plen);
        memcpy(two, payload, plen);
        uint64_t base = opts >> 1; /* also start somewhere inside the payload */
        rc_ws_unmask(one, plen, f.mask, base);
        size_t split = plen ? (size_t)(opts >> 1) * 7919 % (plen + 1) : 0;
        rc_ws_unmask(two, split, f.mask, base);
        rc_ws_unmask(two + split, plen - split, f.mask, base + split);
        if (memcmp(one, two, plen) != 0) abort();
        for (size_t i = 0; i < plen; i++)
            if (one[i] != (payload[i] ^ f.mask[(base + i) % 4])) abort();
        rc_ws_unmask(one, plen, f.mask, base);
        if (memcmp(one, payload, plen) != 0) abort();
        free(one);
        free(two);

        check_round_trip(f.opcode, f.fin, f.len);
    }

    /* encoding with a length and header bits taken from the input */
    if (n >= 9) {
        uint64_t len = 0;
        for (int i = 1; i < 9; i++) len = len << 8 | p[i];
        len >>= 1 + (p[0] & 62); /* shift 1..63: below 2^63, often small enough for short forms */
        check_round_trip(p[0] & 0x0F, p[0] & 0x80, len);
    }

    free(p);
    return 0;
}
