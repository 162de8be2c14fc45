/* zmtp_min.h — the least of ZMTP 3 (RFC 23, NULL mechanism) that the NetSync benchmark's own
 * programs need: the simulator's raw DEALER and SUB peers (bench/netsync_sim.c) and the
 * ceiling relay (bench/peers/ns_ceiling.c). Header-only, static functions, bench code only —
 * roomcast's own ZMTP codec lives in src/ and is not used here, so the benchmark measures it
 * from the outside with an independent implementation.
 *
 * What it covers: the 64-byte greeting (version 3.0 — a 3.1 peer then uses the 3.0 rules,
 * i.e. subscriptions are messages `\x01topic`), the READY command with a Socket-Type
 * property, frame headers (short and long, MORE and COMMAND flags), and PING -> PONG.
 * What it skips: any security mechanism, property checks on the peer's READY (the peer's
 * socket type is trusted), ERROR commands, ZMTP 1.0/2.0 fallback.
 */
#ifndef ZMTP_MIN_H
#define ZMTP_MIN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ZM_MORE 0x01u
#define ZM_LONG 0x02u
#define ZM_CMD 0x04u
#define ZM_GREETING_LEN 64

/* Writes our greeting (version 3.0, NULL, as-server as given) into g[64]. */
static inline void zm_greeting(uint8_t g[ZM_GREETING_LEN], int as_server)
{
    memset(g, 0, ZM_GREETING_LEN);
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = 3;
    g[11] = 0;
    memcpy(g + 12, "NULL", 4);
    g[32] = (uint8_t)(as_server ? 1 : 0);
}

/* Frame header for a frame of `size` bytes; returns its length (2 or 9). */
static inline size_t zm_put_hdr(uint8_t *o, unsigned flags, uint64_t size)
{
    if (size <= 255) {
        o[0] = (uint8_t)flags;
        o[1] = (uint8_t)size;
        return 2;
    }
    o[0] = (uint8_t)(flags | ZM_LONG);
    for (int i = 0; i < 8; i++) o[1 + i] = (uint8_t)(size >> (56 - 8 * i));
    return 9;
}

/* READY command with Socket-Type `type`; returns bytes written (o needs 64). */
static inline size_t zm_ready(uint8_t *o, const char *type)
{
    uint8_t body[48];
    size_t n = 0, tl = strlen(type);
    body[n++] = 5;
    memcpy(body + n, "READY", 5), n += 5;
    body[n++] = 11;
    memcpy(body + n, "Socket-Type", 11), n += 11;
    body[n++] = 0, body[n++] = 0, body[n++] = 0, body[n++] = (uint8_t)tl;
    memcpy(body + n, type, tl), n += tl;
    size_t h = zm_put_hdr(o, ZM_CMD, n);
    memcpy(o + h, body, n);
    return h + n;
}

typedef struct zm_frame {
    unsigned flags;  /* ZM_MORE / ZM_CMD bits of the header */
    size_t hlen;     /* header bytes (2 or 9) */
    uint64_t size;   /* body bytes */
} zm_frame;

/* Parses the frame header at p[0..n): 1 when the whole frame (header and body) is in the
 * buffer, 0 when more bytes are needed, -1 for a body over `max` bytes. Never allocates. */
static inline int zm_parse(const uint8_t *p, size_t n, uint64_t max, zm_frame *f)
{
    if (n < 2) return 0;
    f->flags = p[0];
    if (p[0] & ZM_LONG) {
        if (n < 9) return 0;
        uint64_t s = 0;
        for (int i = 0; i < 8; i++) s = s << 8 | p[1 + i];
        f->hlen = 9, f->size = s;
    } else {
        f->hlen = 2, f->size = p[1];
    }
    if (f->size > max) return -1;
    return n - f->hlen >= f->size ? 1 : 0;
}

/* If the command body b[0..n) is a PING, writes the PONG frame into o (needs n + 9 bytes) and
 * returns its length, else 0. PING = 0x04 "PING" u16 ttl context; PONG = 0x04 "PONG" context. */
static inline size_t zm_pong(const uint8_t *b, size_t n, uint8_t *o)
{
    if (n < 7 || b[0] != 4 || memcmp(b + 1, "PING", 4)) return 0;
    size_t ctx = n - 7;
    size_t h = zm_put_hdr(o, ZM_CMD, 5 + ctx);
    o[h] = 4;
    memcpy(o + h + 1, "PONG", 4);
    memcpy(o + h + 5, b + 7, ctx);
    return h + 5 + ctx;
}

#endif
