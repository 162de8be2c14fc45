/* fuzz_zmtp.c — libFuzzer target for src/codec/zmtp.c.
 *
 * Input layout: byte 0 chooses the limits and our socket type (bit 0: ROUTER or PUB, bit 1:
 * truncate, bits 2-7: max_frames and a scale of max_frame/max_bytes); the rest is what a peer
 * sent, from its greeting on. Checked on every input:
 *   - the reader gives the same units and the same final answer (an error, or "need more")
 *     whether the input comes all at once or one byte at a time, and never claims more bytes
 *     than it was given;
 *   - every message respects the limits, and rc_zmtp_parts finds exactly its frames, whose
 *     bodies add up to the message's byte count;
 *   - a READY's peer type is compatible with ours; a PING's context is at most 16 bytes;
 *   - PONG and ERROR built from the input parse back to what went in.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/zmtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_UNITS 512

typedef struct unit {
    long len;                    /* > 0: a unit of this length; <= 0: the final answer */
    int kind;
} unit;

static size_t run(const uint8_t *p, size_t n, const rc_zmtp_limits *lim,
                  enum rc_zmtp_type self, bool bytewise, unit *out)
{
    rc_zmtp_reader r;
    rc_zmtp_reader_init(&r, self, lim);
    size_t off = 0, have = bytewise ? 0 : n, nu = 0;
    for (;;) {
        rc_zmtp_item it;
        long rc = rc_zmtp_read(&r, p + off, have - off, &it);
        if (rc > 0) {
            if ((size_t)rc > have - off) abort();
            if (it.kind == RC_ZMTP_I_MESSAGE) {
                if (lim->max_frames && !lim->truncate && it.nframes > lim->max_frames) abort();
                if (lim->max_bytes && (uint64_t)rc > lim->max_bytes) abort();
                rc_zmtp_part parts[64];
                size_t want = it.nframes < 64 ? it.nframes : 64;
                if (rc_zmtp_parts(p + off, (size_t)rc, parts, 64) != want) abort();
                if (it.nframes <= 64) {
                    uint64_t sum = 0;
                    for (size_t i = 0; i < want; i++) {
                        if (lim->max_frame && parts[i].len > lim->max_frame) abort();
                        sum += parts[i].len;
                    }
                    if (sum != it.bytes) abort();
                }
            }
            if (it.kind == RC_ZMTP_I_READY && !rc_zmtp_type_compatible(self, it.peer.type))
                abort();
            if (it.kind == RC_ZMTP_I_COMMAND && it.cmd.kind == RC_ZMTP_CMD_PING &&
                it.cmd.len > RC_ZMTP_PING_CONTEXT_MAX)
                abort();
            if (nu < MAX_UNITS) out[nu++] = (unit){rc, it.kind};
            off += (size_t)rc;
            continue;
        }
        if (rc < 0 || have == n) {
            if (nu < MAX_UNITS) out[nu++] = (unit){rc, -1};
            return nu;
        }
        have++; /* bytewise: one more byte */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t opts = data[0];
    size_t n = size - 1;
    uint8_t *p = malloc(n ? n : 1); /* exact-size copy: ASan sees any over-read */
    if (!p) return 0;
    memcpy(p, data + 1, n);
    enum rc_zmtp_type self = opts & 1 ? RC_ZMTP_T_PUB : RC_ZMTP_T_ROUTER;
    unsigned scale = (opts >> 5) & 7;
    rc_zmtp_limits lim = {.max_frame = scale ? 16u << scale : 0,
                          .max_frames = (opts >> 2) & 7,
                          .truncate = opts & 2,
                          .max_bytes = scale ? 48u << scale : 0};
    static unit a[MAX_UNITS], b[MAX_UNITS];
    size_t na = run(p, n, &lim, self, false, a);
    size_t nb = run(p, n, &lim, self, true, b);
    if (na != nb) abort();
    for (size_t i = 0; i < na; i++)
        if (a[i].len != b[i].len || a[i].kind != b[i].kind) abort();

    /* encoders with input-chosen contents */
    uint8_t out[300];
    size_t cl = n < 20 ? n : 20;
    size_t m = rc_zmtp_pong_encode(out, sizeof out, p, cl);
    rc_zmtp_frame f;
    rc_zmtp_cmd c;
    if (m == 0 || rc_zmtp_frame_parse(out, m, 0, &f) != 2 || f.len + 2 != m) abort();
    if (rc_zmtp_command_parse(out + 2, (size_t)f.len, &c) != 0 || c.kind != RC_ZMTP_CMD_PONG)
        abort();
    size_t want = cl < RC_ZMTP_PING_CONTEXT_MAX ? cl : RC_ZMTP_PING_CONTEXT_MAX;
    if (c.len != want || (want && memcmp(c.data, p, want) != 0)) abort();
    char reason[64];
    size_t rl = n < 63 ? n : 63;
    for (size_t i = 0; i < rl; i++) reason[i] = (char)(p[i] | 1); /* no NUL inside */
    reason[rl] = 0;
    m = rc_zmtp_error_encode(out, sizeof out, reason);
    if (m == 0 || rc_zmtp_frame_parse(out, m, 0, &f) != 2) abort();
    if (rc_zmtp_command_parse(out + 2, (size_t)f.len, &c) != 0 || c.kind != RC_ZMTP_CMD_ERROR ||
        c.len != rl || memcmp(c.data, reason, rl) != 0)
        abort();
    free(p);
    return 0;
}
