/* wire.h — a room message in every wire format roomcast speaks.
 *
 * A room message is sequenced once and encoded first as a WebSocket frame: that frame is the
 * canonical record, the one the history keeps, the durable log stores (its payload) and the
 * HTTP API reads back, so a room of WebSocket members pays for nothing else. The other formats
 * are made from it on demand, at most once per message (chained to it with rc_msg_add_alt, so
 * the history keeps them too and a replay re-encodes nothing):
 *
 *   RC_WIRE_WS      the WebSocket frame itself
 *   RC_WIRE_LINE    TCP line mode: the JSON text and '\n' — usually no encoding at all but
 *                   the frame's own sub range (codec/wsframe.h, rc_ws_msg_alloc); a binary
 *                   message as {"binary":"<base64>","room":R,"client_id":C,"msg_id":N} and '\n'
 *   RC_WIRE_FRAMED  TCP framed mode: u32 little-endian length, u8 opcode, payload
 *   RC_WIRE_CHAT    the chat port: "[user] text\n" for a message with a string "text",
 *                   nothing (RC_WIRE_SKIP) for anything else
 *   RC_WIRE_WSZ     WebSocket with permessage-deflate (codec/pmdeflate.h): the frame
 *                   compressed (RSV1) with a 32 KiB window and no context takeover, so the one
 *                   compressed frame is valid for every member that negotiated deflate — a room
 *                   broadcast is compressed once, not once per member. A payload shorter than
 *                   the threshold (rc_wire_deflate_threshold), or one that would not shrink,
 *                   goes as the plain frame (RC_WIRE_WS's own message).
 *   RC_WIRE_WSZ9    the same with a 512-byte window, for clients that limit the server's window
 *                   (server_max_window_bits 9..14)
 *
 * docs/tcp.md is the contract for the TCP and chat formats.
 */
#ifndef RC_WIRE_H
#define RC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"

enum rc_wire {
    RC_WIRE_WS,
    RC_WIRE_LINE,
    RC_WIRE_FRAMED,
    RC_WIRE_CHAT,
    RC_WIRE_WSZ,
    RC_WIRE_WSZ9,
    RC_WIRE__COUNT
};

/* rc_wire_ws is the wire of a WebSocket client whose connection agreed permessage-deflate with
 * the server compressing in `bits`-bit windows (transport/conn.h ws_deflate; 0 = no deflate). */
static inline uint8_t rc_wire_ws(uint8_t bits)
{
    return bits == 0 ? RC_WIRE_WS : bits == 15 ? RC_WIRE_WSZ : RC_WIRE_WSZ9;
}

/* What compressing room messages for the RC_WIRE_WSZ* wires did: each message is compressed
 * once per room and window size however many members get it, so `messages` grows with the
 * broadcasts, not the deliveries (also what tests check). */
typedef struct rc_wire_deflate_stats {
    uint64_t messages;       /* messages compressed (a frame that did not shrink counts too) */
    uint64_t bytes_in;       /* their payload bytes */
    uint64_t bytes_out;      /* the compressed payload bytes (the plain size when it did not
                                shrink and went plain) */
} rc_wire_deflate_stats;

/* rc_wire_deflate_stats_get returns the process-wide counters (the loop's thread only). */
const rc_wire_deflate_stats *rc_wire_deflate_stats_get(void);

/* rc_wire_deflate_threshold sets the payload size below which RC_WIRE_WSZ* messages go
 * uncompressed (--ws-deflate-threshold), once at start. */
void rc_wire_deflate_threshold(size_t bytes);

/* RC_WIRE_SKIP stands for "this wire gets nothing of this message" (never dereferenced). */
extern const char rc__wire_skip;
#define RC_WIRE_SKIP ((rc_msg *)(uintptr_t)&rc__wire_skip)

/* rc_wire_encode makes the room message whose canonical frame is ws (a complete server
 * WebSocket text or binary frame) in format wire (not RC_WIRE_WS): a new message with one
 * reference, tagged wire; RC_WIRE_SKIP; or NULL when out of memory. */
rc_msg *rc_wire_encode(uint8_t wire, const rc_msg *ws);

/* rc_wire_text encodes the JSON object json[0..n) (a reply of the room protocol: joined, ack,
 * error...) for wire: a new message with one reference, or NULL when out of memory. A reply
 * goes to one client, so the WSZ wires send it uncompressed (a plain frame is valid for them):
 * compressing it would cost a deflate per recipient for a few bytes. */
rc_msg *rc_wire_text(uint8_t wire, const char *json, size_t n);

/* rc_wire_of returns m's encoding for wire, making it and chaining it to m when missing:
 * RC_WIRE_SKIP, or NULL when out of memory. The result is borrowed from m's chain. */
rc_msg *rc_wire_of(rc_msg *m, uint8_t wire);

/* rc_wire_fanned_out drops from m's chain the encodings that are not worth keeping once the
 * fan-out that made them is over: the compressed frames (RC_WIRE_WSZ, WSZ9). The members'
 * output queues keep their references; the history, which keeps m, does not keep them. They
 * would double the memory a room's history takes (and count against its byte limits) for
 * the rare replay, which compresses again (and keeps what it made, like any encoding). */
void rc_wire_fanned_out(rc_msg *m);

#endif
