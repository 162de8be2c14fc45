/* pmdeflate.h — permessage-deflate (RFC 7692): the negotiation, and the deflate/inflate steps
 * of a message.
 *
 * Negotiation. A client lists offers in Sec-WebSocket-Extensions (possibly several headers,
 * several offers each, in order of preference); the server accepts the first it can honour and
 * answers with one response, or declines them all by not answering. roomcast's policy:
 *   - Its own messages are compressed without context takeover, always: a room broadcast is
 *     compressed once and the same frame goes to every member (rooms/wire.h), which is only
 *     valid if no member's decompressor expects a window from earlier messages. So the response
 *     always carries server_no_context_takeover (RFC 7692 §7.1.1.1 lets a server add it).
 *   - A client that offers client_no_context_takeover gets it: each compressed message it
 *     sends is inflated on its own, by one inflater shared by every such connection, so it holds
 *     no zlib state between messages. A client that does not offer it (browsers) keeps its
 *     context: its connection gets an inflater of its own at its first compressed message
 *     (about 44 KiB with a 32 KiB window; less when it offered a smaller client_max_window_bits,
 *     which is answered with the same value). client_no_context_takeover is not added unasked:
 *     the ws npm client with clientNoContextTakeover: false fails a handshake that does.
 *   - server_max_window_bits=N (8..15) is honoured for N >= 9 by compressing with a 512-byte
 *     window (RC_PMD_SMALL_WINDOW) when N < 15; N = 8 is declined (zlib's raw deflate cannot
 *     produce an 8-bit window). client_max_window_bits, with a value 8..15 or without one, is
 *     accepted; a value is echoed back, and the client's inflater uses it (zlib takes 9 for 8).
 *   - An offer is declined when it repeats a parameter, has one RFC 7692 does not define, or
 *     gives one a value it may not have (a value on a *_no_context_takeover, none or out of
 *     range on server_max_window_bits, out of range on client_max_window_bits).
 * The parser allocates nothing and reads values as tokens or quoted strings (§7.1: "10" is 10).
 *
 * Messages (these use zlib and allocate its state): a message is deflated as one raw deflate
 * stream ended by a sync flush whose last 4 bytes (00 00 FF FF) are taken off (§7.2.1), and
 * inflated with those 4 bytes put back (§7.2.2).
 */
#ifndef RC_PMDEFLATE_H
#define RC_PMDEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_PMD_SMALL_WINDOW 9      /* window bits used for a client limiting it below 15 */
#define RC_PMD_RESPONSE_MAX 160    /* room for the longest response rc_pmd_response writes */

/* What was agreed with one client. */
typedef struct rc_pmd_agreed {
    uint8_t server_bits;     /* window bits the server compresses with: 15 or 9 */
    uint8_t server_offered;  /* server_max_window_bits the client asked for (9..15), 0 = none */
    uint8_t client_offered;  /* client_max_window_bits value it offered (8..15), 0 = none or
                                without a value */
    bool client_nct;         /* it offered client_no_context_takeover */
} rc_pmd_agreed;

/* rc_pmd_negotiate reads one Sec-WebSocket-Extensions value v[0..n) and, when it holds an
 * acceptable permessage-deflate offer, fills *a from the first such offer and returns true.
 * Other extensions and unacceptable offers are skipped; a malformed value accepts nothing. */
bool rc_pmd_negotiate(const char *v, size_t n, rc_pmd_agreed *a);

/* rc_pmd_response writes the Sec-WebSocket-Extensions value accepting *a into out
 * (RC_PMD_RESPONSE_MAX bytes), NUL-terminated, and returns its length. */
size_t rc_pmd_response(const rc_pmd_agreed *a, char *out);

/* A raw deflate stream, reused message after message (reset before each). */
typedef struct rc_pmd_stream {
    void *z;                 /* z_stream, allocated by the first use */
    uint8_t bits;            /* its window bits */
    uint8_t mem;             /* a deflater's zlib memLevel (1..9; 0 means 8). Resetting a
                                deflater clears its hash table, 2 << (mem + 7) bytes: 64 KiB at
                                8, which would cost more than compressing a 200-byte message;
                                512 bytes at 1 */
    bool inflate;            /* an inflater (else a deflater) */
    bool ended;              /* an inflater: the message in progress had a final block; what
                                follows it until the next rc_pmd_inflate_begin is ignored */
} rc_pmd_stream;

/* rc_pmd_deflate compresses p[0..n) as one message without context takeover into out (at least
 * rc_pmd_deflate_bound(n) bytes) with stream s (a deflater of window bits s->bits, made at first
 * use, level `level`): the compressed length, or -1 when zlib fails (out of memory). */
long rc_pmd_deflate(rc_pmd_stream *s, int level, const void *p, size_t n, uint8_t *out);

/* rc_pmd_deflate_bound is the most rc_pmd_deflate or rc_pmd_deflate_fixed can write for n
 * bytes. */
size_t rc_pmd_deflate_bound(size_t n);

#define RC_PMD_FIXED_MAX 65535     /* the longest input rc_pmd_deflate_fixed takes */

/* rc_pmd_deflate_fixed compresses p[0..n) (n <= RC_PMD_FIXED_MAX) as one message without
 * context takeover into out (rc_pmd_deflate_bound(n) bytes), with matches at most
 * 1 << window_bits back: one block with the fixed Huffman codes of RFC 1951 §3.2.6 and greedy
 * matching through a small hash table, ended like a sync flush with its 4-byte tail taken off.
 * Returns the compressed length. Why it exists: a zlib deflater sets up and clears its state
 * and builds Huffman trees for every message, which for a 200-byte game message costs 10-20 µs
 * once its state has left the cache, ten times the rest of the message's fan-out to a room of
 * ten (bench/RESULTS.md, issue 17); this does one pass over the bytes with an 8 KiB hash
 * table it never clears and compresses small JSON nearly as well. Allocates nothing; that
 * table is static, so calls must not run concurrently (everything runs on the one loop). */
size_t rc_pmd_deflate_fixed(const void *p, size_t n, unsigned window_bits, uint8_t *out);

/* The sink rc_pmd_inflate hands inflated bytes to, piece by piece as they come: returns 0 to
 * go on, or anything else to stop (rc_pmd_inflate then returns it). */
typedef int rc_pmd_sink(void *arg, const uint8_t *p, size_t n);

/* Inflating a message as its compressed bytes arrive, so that each inflated piece can be
 * checked (size limit, UTF-8) before the rest of the message has come:
 *   rc_pmd_inflate_begin(s, takeover)    before its first byte: makes s at first use, and
 *                                        resets it unless `takeover` (the sender keeps its
 *                                        context: this message may refer to earlier ones);
 *   rc_pmd_inflate_feed(s, p, n, false)  for each run of its compressed bytes (its frames'
 *                                        payloads), in order, as they arrive;
 *   rc_pmd_inflate_feed(s, p, n, true)   with the last run (possibly empty), which puts back
 *                                        the 4-byte tail the sender took off (§7.2.2).
 * Every byte that can be inflated from what was fed goes to sink before feed returns, through
 * the caller's buffer buf of `chunk` bytes, piece by piece: the caller can count it against a
 * limit and stop before any more is produced. begin returns 0 or -1 (out of memory); feed
 * returns 0, the sink's non-zero answer, or -1 for data that is not a valid deflate stream or
 * when zlib runs out of memory. s may not be used for another message until the last feed. */
int rc_pmd_inflate_begin(rc_pmd_stream *s, bool takeover);
int rc_pmd_inflate_feed(rc_pmd_stream *s, const void *p, size_t n, bool last, uint8_t *buf,
                        size_t chunk, rc_pmd_sink *sink, void *arg);

/* rc_pmd_inflate inflates the whole compressed message p[0..n) at once: begin, then one last
 * feed. */
int rc_pmd_inflate(rc_pmd_stream *s, bool takeover, const void *p, size_t n, uint8_t *buf,
                   size_t chunk, rc_pmd_sink *sink, void *arg);

/* rc_pmd_stream_release frees s's zlib state. */
void rc_pmd_stream_release(rc_pmd_stream *s);

#endif
