/* wsframe.c — RFC 6455 §5.2 frame headers: parse what clients send, encode what we send.
 *
 * The parser decides as early as it can. Every rule that the first one or two bytes settle
 * (RSV bits, opcode, fragmented control frame, missing mask, oversized control frame) is
 * checked before asking for the rest of the header, and a 64-bit length with its top bit set
 * is rejected as soon as its first byte is here; so garbage is refused after the bytes that
 * prove it is garbage, not after a full header's worth of them.
 *
 * The "minimal length encoding" rule of §5.2 is enforced (1002): a 16-bit length below 126, or
 * a 64-bit length below 65536, is refused as soon as the length bytes that prove it are in
 * (the whole 16-bit field; for the 64-bit field, a non-zero byte among its first six proves it
 * is long enough, so only a field that is all zeros up to its last two bytes is refused, at
 * its last byte). A strict wire is one less place for two parsers of the same bytes to
 * disagree.
 */
#include "codec/wsframe.h"

#include "codec/utf8.h"

#include <string.h>

/* Opcodes RFC 6455 defines: 0 (continuation), 1 (text), 2 (binary), 8 (close), 9 (ping),
 * 10 (pong), as one bit each. 3-7 and 11-15 are reserved and make the frame a protocol error. */
#define WS_KNOWN_OPCODES ((1u << 0x0) | (1u << 0x1) | (1u << 0x2) | (1u << 0x8) | (1u << 0x9) | \
                          (1u << 0xA))

#define WS_ERR (-RC_WS_CLOSE_PROTOCOL)

int rc_ws_parse_header(const uint8_t *p, size_t n, unsigned flags, rc_ws_frame *f)
{
    bool require_mask = flags & RC_WS_REQUIRE_MASK;
    if (n < 1) return 0;

    uint8_t b0 = p[0];
    bool fin = b0 & 0x80;
    bool rsv1 = b0 & 0x40;
    uint8_t opcode = b0 & 0x0F;
    if (b0 & 0x30) return WS_ERR;                          /* RSV2-3: no extension uses them */
    if (!((WS_KNOWN_OPCODES >> opcode) & 1)) return WS_ERR;
    /* RSV1 is permessage-deflate's "compressed" bit: only when negotiated, and only on the
     * first frame of a data message (RFC 7692 §6.1). */
    if (rsv1 && (!(flags & RC_WS_ALLOW_RSV1) || opcode == RC_WS_CONT || opcode >= 0x8))
        return WS_ERR;
    if (opcode >= 0x8 && !fin) return WS_ERR;              /* control frames are not fragmented */
    if (n < 2) return 0;

    uint8_t b1 = p[1];
    bool masked = b1 & 0x80;
    unsigned len7 = b1 & 0x7F;
    if (require_mask && !masked) return WS_ERR;
    if (opcode >= 0x8 && len7 > RC_WS_MAX_CONTROL_PAYLOAD) return WS_ERR;

    size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    size_t header_len = 2 + ext + (masked ? 4 : 0);
    if (len7 == 127 && n >= 3 && (p[2] & 0x80)) return WS_ERR;  /* §5.2: MSB must be 0 */
    uint64_t len = len7;
    if (ext) {
        if (n < 2 + ext) return 0;
        len = 0;
        for (size_t i = 0; i < ext; i++) len = len << 8 | p[2 + i];
        if (len < (ext == 2 ? 126u : 65536u)) return WS_ERR;  /* §5.2: not the minimal form */
    }
    if (n < header_len) return 0;

    f->fin = fin;
    f->rsv1 = rsv1;
    f->opcode = opcode;
    f->masked = masked;
    if (masked)
        memcpy(f->mask, p + 2 + ext, 4);
    else
        memset(f->mask, 0, 4);
    f->len = len;
    f->header_len = header_len;
    return (int)header_len;
}

/* rc_ws_unmask works 8 bytes at a time: the 4-byte key, rotated so that its first byte lines up
 * with payload byte `offset`, is repeated into a 64-bit word in memory order, so XOR-ing it
 * with 8 payload bytes loaded through memcpy is correct on either endianness and at any
 * alignment (memcpy compiles to a plain unaligned load). The main loop does 32 bytes per
 * iteration so the four independent XORs can overlap; what is left is done byte by byte with
 * the same rotated key, which stays in phase because every step before was a multiple of 4. */
void rc_ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset)
{
    uint8_t key[8];
    unsigned r = (unsigned)(offset & 3);
    for (unsigned i = 0; i < 8; i++) key[i] = mask[(r + i) & 3];
    uint64_t m;
    memcpy(&m, key, 8);

    size_t i = 0;
    for (; n - i >= 32; i += 32) {
        uint64_t w0, w1, w2, w3;
        memcpy(&w0, p + i, 8);
        memcpy(&w1, p + i + 8, 8);
        memcpy(&w2, p + i + 16, 8);
        memcpy(&w3, p + i + 24, 8);
        w0 ^= m;
        w1 ^= m;
        w2 ^= m;
        w3 ^= m;
        memcpy(p + i, &w0, 8);
        memcpy(p + i + 8, &w1, 8);
        memcpy(p + i + 16, &w2, 8);
        memcpy(p + i + 24, &w3, 8);
    }
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= m;
        memcpy(p + i, &w, 8);
    }
    for (; i < n; i++) p[i] ^= key[i & 3];
}

size_t rc_ws_header_size(uint64_t len)
{
    return len < 126 ? 2 : len <= 0xFFFF ? 4 : 10;
}

/* Server frames are never masked (RFC 6455 §5.1), so the header is 2, 4 or 10 bytes, with the
 * length in the shortest form that holds it. len must be below 2^63, which any payload that
 * fits in memory is. */
size_t rc_ws_encode_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t len)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0x00) | (opcode & 0x0F));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

bool rc_ws_close_code_valid(unsigned code)
{
    /* 1004 is reserved, 1005/1006/1015 are for reporting only and must never be on the wire,
     * 1016-2999 are unassigned or reserved for future IETF use (RFC 6455 §7.4, IANA registry);
     * 3000-3999 are registered by libraries and 4000-4999 are private, both allowed. */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

rc_msg *rc_ws_msg_alloc(uint8_t opcode, size_t len)
{
    size_t h = rc_ws_header_size(len);
    if (len > UINT32_MAX - h - 1) return NULL;
    rc_msg *m = rc_msg_new(h + len + 1);
    if (!m) return NULL;
    m->len = (uint32_t)(h + len); /* the newline after it is not part of the frame */
    rc_ws_encode_header((uint8_t *)m->data, opcode, true, len);
    m->data[h + len] = '\n';
    if (opcode == RC_WS_TEXT) {
        m->sub_off = (uint32_t)h;
        m->sub_len = (uint32_t)len + 1;
    }
    return m;
}

rc_msg *rc_ws_msg_new(uint8_t opcode, const void *payload, size_t len)
{
    rc_msg *m = rc_ws_msg_alloc(opcode, len);
    if (m && len) memcpy(m->data + rc_ws_server_header_len(m->data), payload, len);
    return m;
}

size_t rc_ws_close_payload(uint8_t *out, uint16_t code, const char *reason)
{
    size_t rl = reason ? strnlen(reason, RC_WS_MAX_CONTROL_PAYLOAD - 2) : 0;
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (rl) memcpy(out + 2, reason, rl);
    return rl + 2;
}

int rc_ws_close_parse(const uint8_t *p, size_t n, uint16_t *code)
{
    *code = RC_WS_CLOSE_NORMAL;
    if (n == 0) return 0;
    if (n == 1) return -RC_WS_CLOSE_PROTOCOL;
    *code = (uint16_t)(p[0] << 8 | p[1]);
    if (!rc_ws_close_code_valid(*code)) return -RC_WS_CLOSE_PROTOCOL;
    if (!rc_utf8_valid(p + 2, n - 2)) return -RC_WS_CLOSE_BAD_DATA;
    return 0;
}
