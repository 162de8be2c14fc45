/* tcpwire.h — the raw TCP port's wire (docs/tcp.md): preamble, lines, length-prefixed frames.
 *
 * A connection's first bytes choose its framing once: "\0RC\x01" selects framed mode (the
 * caller answers with the same four bytes), anything else selects line mode and is the start of
 * the first line. rc_tcpw_next is a streaming decoder over the caller's input buffer:
 *
 *   - it never allocates and never copies: a message is a span of the caller's buffer;
 *   - it resumes on partial input: when it returns 0 the caller keeps p[0..n), appends what the
 *     socket gives next, and calls again with the longer buffer (line mode remembers in
 *     `scanned` how far it has already looked for '\n', so a long line is scanned once);
 *   - the items it reports, and where they start and end in the stream, are the same however
 *     the input is split into reads; only RC_TCPW_NONE results may come in a different number,
 *     since skipping hands back whatever part of an over-long line the buffer holds.
 *
 * Line mode: a line ends at '\n', and a '\r' right before the '\n' is not part of its content
 * (a '\r' anywhere else is). A line whose content is empty or only spaces and tabs is consumed
 * as RC_TCPW_NONE. Content longer than `max` bytes is RC_TCPW_TOO_LONG, reported as soon as
 * the bytes prove it (see rc_tcpw_next), after which the rest of that line up to and including
 * its '\n' is skipped. UTF-8 and JSON are not checked here; the transport does that.
 *
 * Framed mode: every message is a 5-byte header, the payload length as an unsigned 32-bit
 * little-endian number then an opcode byte with WebSocket's values (enum rc_ws_opcode: text,
 * binary, close, ping, pong; no continuation), then the payload. An unknown opcode or a control
 * frame (close, ping, pong) with more than 125 bytes is a protocol error (1002); a payload
 * longer than `max` is 1009, known from the length alone before any payload arrives.
 */
#ifndef RC_TCPWIRE_H
#define RC_TCPWIRE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "codec/wsframe.h"

enum rc_tcpw_mode {
    RC_TCPW_UNDECIDED,       /* no byte seen yet, or only part of the preamble */
    RC_TCPW_LINE,            /* newline-delimited JSON */
    RC_TCPW_FRAMED,          /* length-prefixed frames after the preamble */
};

enum rc_tcpw_kind {
    RC_TCPW_NONE,            /* bytes consumed, nothing to hand up (blank line, skipped bytes) */
    RC_TCPW_PREAMBLE,        /* framed mode chosen: the caller answers with rc_tcpw_preamble */
    RC_TCPW_TOO_LONG,        /* line mode: a line longer than max; its bytes so far are consumed
                                and the rest of it, up to its '\n', will come back as NONE */
    RC_TCPW_TEXT,            /* a line's content, or a text frame's payload */
    RC_TCPW_BINARY,          /* framed: a binary frame's payload */
    RC_TCPW_CLOSE,           /* framed: a close frame's payload (code and reason, unchecked) */
    RC_TCPW_PING,            /* framed: a ping's payload, to be echoed in a pong */
    RC_TCPW_PONG,            /* framed: a pong's payload */
};

#define RC_TCPW_PREAMBLE_LEN 4  /* "\0RC\x01" */
#define RC_TCPW_HEADER_LEN 5    /* u32 little-endian payload length, u8 opcode */

/* The preamble a framed client sends first and the server sends back. */
extern const uint8_t rc_tcpw_preamble[RC_TCPW_PREAMBLE_LEN];

typedef struct rc_tcpw {
    uint8_t mode;            /* enum rc_tcpw_mode; decided by the first byte (or preamble) */
    bool skipping;           /* line mode: dropping the rest of a too-long line up to its '\n' */
    size_t scanned;          /* line mode: bytes at the start of the caller's buffer already
                                searched for '\n' (0 after every consumed item) */
    size_t max;              /* largest line content / frame payload accepted, in bytes */
} rc_tcpw;

typedef struct rc_tcpw_msg {
    uint8_t kind;            /* enum rc_tcpw_kind */
    const char *p;           /* the line's content or the frame's payload, inside the input;
                                for PREAMBLE the preamble, for NONE/TOO_LONG the bytes dropped */
    size_t len;              /* bytes at p */
} rc_tcpw_msg;

/* rc_tcpw_init prepares d for a new connection whose messages are at most max bytes. */
void rc_tcpw_init(rc_tcpw *d, size_t max);

/* rc_tcpw_next decodes the next item from p[0..n), the connection's unconsumed input.
 *
 * Returns the bytes consumed (> 0) with *out set; the caller drops them and calls again while
 * input remains. Returns 0 when more input is needed: nothing is consumed, *out is not set, and
 * the next call must pass the same bytes followed by more (d may have moved on: the mode chosen,
 * `scanned` advanced). Returns a negative WebSocket close code on a fatal error, after which the
 * connection is closed and d is not used again:
 *   -RC_WS_CLOSE_PROTOCOL (-1002)  0x00 not followed by the rest of the preamble; unknown
 *                                  opcode; control frame payload longer than 125 bytes
 *   -RC_WS_CLOSE_TOO_BIG  (-1009)  frame payload longer than max (checked as soon as the four
 *                                  length bytes are in, so before the opcode)
 * Line mode has no fatal error.
 *
 * When line mode reports RC_TCPW_TOO_LONG it has consumed exactly the bytes that prove the
 * line too long, and no more: max + 1 bytes without '\n', or max + 2 when byte max is the '\r'
 * of a possible "\r\n" that turned out not to be one.
 *
 * The caller's input buffer must be able to hold RC_TCPW_HEADER_LEN + max bytes (more than
 * the preamble or line mode's max + 2 need): with less, a 0 result could wait for bytes that
 * never fit. */
long rc_tcpw_next(rc_tcpw *d, const char *p, size_t n, rc_tcpw_msg *out);

/* rc_tcpw_header writes the header of a frame of len payload bytes with the given opcode
 * (enum rc_ws_opcode) into out. */
void rc_tcpw_header(uint8_t out[RC_TCPW_HEADER_LEN], uint8_t opcode, uint32_t len);

#endif
