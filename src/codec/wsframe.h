/* wsframe.h — RFC 6455 frame header codec (server side).
 *
 * The parser looks only at the header; the payload stays where it is in the caller's buffer and
 * is unmasked in place by rc_ws_unmask, which can continue across partial reads. Nothing here
 * allocates. Rules enforced by the parser, because they are properties of a single header
 * (RFC 6455 §5.2, §5.5): no RSV2/RSV3 bit, and RSV1 only when permessage-deflate was
 * negotiated (RC_WS_ALLOW_RSV1) and only on the first frame of a data message (RFC 7692 §6),
 * no reserved opcode, control frames are final and carry at most 125 bytes, a length is in its
 * minimal form (§5.2: "the minimal number of bytes MUST be used") and a 64-bit length has its
 * top bit clear, and — when RC_WS_REQUIRE_MASK is set, as on a server — the client masked the
 * frame. Rules that need
 * the connection's state (continuation without a started message, message size limits) are the
 * session's job (src/transport/ws.c).
 */
#ifndef RC_WSFRAME_H
#define RC_WSFRAME_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "core/msg.h"

enum rc_ws_opcode {
    RC_WS_CONT = 0x0,
    RC_WS_TEXT = 0x1,
    RC_WS_BINARY = 0x2,
    RC_WS_CLOSE = 0x8,
    RC_WS_PING = 0x9,
    RC_WS_PONG = 0xA,
};

/* Close status codes used by roomcast (RFC 6455 §7.4.1). */
enum rc_ws_close_code {
    RC_WS_CLOSE_NORMAL = 1000,
    RC_WS_CLOSE_GOING_AWAY = 1001,
    RC_WS_CLOSE_PROTOCOL = 1002,
    RC_WS_CLOSE_UNSUPPORTED = 1003,
    RC_WS_CLOSE_NO_STATUS = 1005,   /* never sent; reported when a close frame had no code */
    RC_WS_CLOSE_BAD_DATA = 1007,
    RC_WS_CLOSE_POLICY = 1008,
    RC_WS_CLOSE_TOO_BIG = 1009,
    RC_WS_CLOSE_INTERNAL = 1011,
    RC_WS_CLOSE_TRY_AGAIN = 1013,
};

#define RC_WS_MAX_HEADER 14          /* 2 + 8 (length) + 4 (mask) */
#define RC_WS_MAX_SERVER_HEADER 10   /* server frames are never masked */
#define RC_WS_MAX_CONTROL_PAYLOAD 125

typedef struct rc_ws_frame {
    bool fin;                /* FIN bit: last fragment of a message */
    bool rsv1;               /* RSV1 bit: a compressed message (permessage-deflate) */
    uint8_t opcode;          /* enum rc_ws_opcode */
    bool masked;             /* MASK bit */
    uint8_t mask[4];         /* masking key, valid when masked */
    uint64_t len;            /* payload length in bytes */
    size_t header_len;       /* bytes of header before the payload (2..14) */
} rc_ws_frame;

/* Flags of rc_ws_parse_header (RC_WS_REQUIRE_MASK is 1 so that `true` still means it). */
enum {
    RC_WS_REQUIRE_MASK = 1,  /* the frame must be masked (a server reading a client) */
    RC_WS_ALLOW_RSV1 = 2,    /* permessage-deflate is on: RSV1 may mark a message compressed */
};

/* rc_ws_parse_header parses the frame header at p[0..n) under flags (RC_WS_*).
 * Returns the header length (> 0) and fills *f; 0 when more bytes are needed (nothing is
 * consumed, call again with more); or a negative close code (-RC_WS_CLOSE_PROTOCOL) when the
 * header breaks one of the rules above, as soon as the bytes that prove it are in. */
int rc_ws_parse_header(const uint8_t *p, size_t n, unsigned flags, rc_ws_frame *f);

/* rc_ws_unmask XORs p[0..n) in place with mask, where p starts at byte `offset` of the
 * payload (so a payload can be unmasked piece by piece as it arrives). */
void rc_ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset);

/* rc_ws_encode_header writes an unmasked server frame header for a payload of len bytes into
 * out (at least RC_WS_MAX_SERVER_HEADER bytes) and returns its length. */
size_t rc_ws_encode_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t len);

/* rc_ws_header_size is the length rc_ws_encode_header would produce for len. */
size_t rc_ws_header_size(uint64_t len);

/* rc_ws_msg_alloc makes a new message (one reference, the caller's) holding the header of one
 * final, unmasked server frame with a payload of len bytes, which the caller writes at
 * data + header length; NULL when out of memory. A newline is kept after the frame, outside
 * it, and a text frame's sub range (core/msg.h) is its payload and that newline: the frame as a
 * line of the TCP port, for free (rooms/wire.h). */
rc_msg *rc_ws_msg_alloc(uint8_t opcode, size_t len);

/* rc_ws_msg_new is rc_ws_msg_alloc with a copy of payload written in. */
rc_msg *rc_ws_msg_new(uint8_t opcode, const void *payload, size_t len);

/* rc_ws_server_header_len is the header length of a complete server frame (one encoded by
 * rc_ws_encode_header) at p: from its length byte alone. */
static inline size_t rc_ws_server_header_len(const void *p)
{
    uint8_t l = ((const uint8_t *)p)[1] & 0x7f;
    return l == 127 ? 10 : l == 126 ? 4 : 2;
}

/* rc_ws_close_payload writes the payload of a close frame — code, big-endian, then the reason
 * (NULL for none) cut to fit — into out (RC_WS_MAX_CONTROL_PAYLOAD bytes) and returns its
 * length. */
size_t rc_ws_close_payload(uint8_t *out, uint16_t code, const char *reason);

/* rc_ws_close_parse checks the payload of a peer's close frame: 0 with *code its status code
 * (RC_WS_CLOSE_NORMAL when it has none), or a negative close code: -1002 for a 1-byte payload
 * or an invalid code, -1007 for a reason that is not UTF-8. */
int rc_ws_close_parse(const uint8_t *p, size_t n, uint16_t *code);

/* rc_ws_close_code_valid is true for a status code a peer may send in a close frame
 * (1000-1003, 1007-1014, 3000-4999). */
bool rc_ws_close_code_valid(unsigned code);

#endif
