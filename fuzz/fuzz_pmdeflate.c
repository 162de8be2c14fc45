/* fuzz_pmdeflate.c — libFuzzer target for src/codec/pmdeflate.c.
 *
 * Input: byte 0 chooses the mode, the rest is data.
 *   - even: a Sec-WebSocket-Extensions value. Negotiation never reads past it; an accepted
 *     offer gives server window bits 15 or 9, an answer that starts with the fixed parameters,
 *     fits RC_PMD_RESPONSE_MAX and parses back as an accepted offer with the same result.
 *   - odd: a compressed message from a client. Inflating it through a small chunk with a limit
 *     returns 0, -1 or the sink's code, never hands over more than the limit, and what it
 *     gives, deflated again and inflated, comes back the same; fed in pieces of 1..8 bytes
 *     (rc_pmd_inflate_feed) it succeeds or fails alike and gives the same bytes; the data
 *     itself, through the fixed-code encoder (both windows) and inflated, comes back the same.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/pmdeflate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static rc_pmd_stream inf = {.bits = 15, .inflate = true};
static rc_pmd_stream def = {.bits = 15};

typedef struct sink_state {
    uint8_t *out;
    size_t got, max;
} sink_state;

static int sink(void *arg, const uint8_t *p, size_t n)
{
    sink_state *s = arg;
    if (n == 0) abort(); /* empty pieces are never handed over */
    if (s->got + n > s->max) return 1009;
    memcpy(s->out + s->got, p, n);
    s->got += n;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t n = size - 1;
    char *p = malloc(n ? n : 1); /* exact size: ASan sees an over-read */
    if (!p) return 0;
    memcpy(p, data + 1, n);
    if ((data[0] & 1) == 0) {
        rc_pmd_agreed a;
        if (rc_pmd_negotiate(p, n, &a)) {
            if (a.server_bits != 15 && a.server_bits != RC_PMD_SMALL_WINDOW) abort();
            if (a.server_offered && (a.server_offered < 9 || a.server_offered > 15)) abort();
            if (a.client_offered && (a.client_offered < 8 || a.client_offered > 15)) abort();
            char out[RC_PMD_RESPONSE_MAX];
            size_t rl = rc_pmd_response(&a, out);
            if (rl >= RC_PMD_RESPONSE_MAX || strlen(out) != rl) abort();
            if (strncmp(out, "permessage-deflate; server_no_context_takeover", 46) != 0) abort();
            if (a.client_nct != (strstr(out, "client_no_context_takeover") != NULL)) abort();
            rc_pmd_agreed b;
            if (!rc_pmd_negotiate(out, rl, &b) || b.server_bits != a.server_bits ||
                b.server_offered != a.server_offered || b.client_offered != a.client_offered ||
                b.client_nct != a.client_nct)
                abort();
        }
    } else {
        static uint8_t out[1 << 16], again[1 << 16], z[(1 << 16) + 1024];
        uint8_t chunk[97];
        sink_state s = {out, 0, sizeof out};
        int r = rc_pmd_inflate(&inf, false, p, n, chunk, sizeof chunk, sink, &s);
        if (r != 0 && r != -1 && r != 1009) abort();
        if (s.got > sizeof out) abort();
        {
            static uint8_t pieces[1 << 16];
            sink_state u = {pieces, 0, sizeof pieces};
            int r2 = rc_pmd_inflate_begin(&inf, false);
            for (size_t at = 0, k = 0; r2 == 0 && at < n; at += k) {
                k = 1 + (unsigned char)p[at] % 8;
                if (k > n - at) k = n - at;
                r2 = rc_pmd_inflate_feed(&inf, p + at, k, false, chunk, sizeof chunk, sink, &u);
            }
            if (r2 == 0) r2 = rc_pmd_inflate_feed(&inf, NULL, 0, true, chunk, sizeof chunk, sink, &u);
            if (r2 != 0 && r2 != -1 && r2 != 1009) abort();
            if ((r == 0) != (r2 == 0)) abort();
            if (r == 0 && (u.got != s.got || memcmp(pieces, out, s.got) != 0)) abort();
        }
        if (r == 0) {
            long zl = rc_pmd_deflate(&def, 1, out, s.got, z);
            if (zl < 0 || (size_t)zl > rc_pmd_deflate_bound(s.got)) abort();
            sink_state t = {again, 0, sizeof again};
            if (rc_pmd_inflate(&inf, false, z, (size_t)zl, chunk, sizeof chunk, sink, &t) != 0) abort();
            if (t.got != s.got || memcmp(again, out, s.got) != 0) abort();
        }
        /* the fixed-code encoder on the raw input, both windows */
        for (unsigned w = 9; w <= 15; w += 6) {
            size_t m = n < sizeof again ? n : sizeof again;
            size_t zl = rc_pmd_deflate_fixed(p, m, w, z);
            if (zl > rc_pmd_deflate_bound(m)) abort();
            sink_state t = {again, 0, sizeof again};
            if (rc_pmd_inflate(&inf, false, z, zl, chunk, sizeof chunk, sink, &t) != 0) abort();
            if (t.got != m || memcmp(again, p, m) != 0) abort();
        }
    }
    free(p);
    return 0;
}
