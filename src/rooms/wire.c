/* wire.c — a room message in every wire format; see wire.h and docs/tcp.md. */
#include "rooms/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/base64.h"
#include "codec/json.h"
#include "codec/pmdeflate.h"
#include "codec/tcpwire.h"
#include "codec/wsframe.h"

const char rc__wire_skip = 0;

/* The compressors of the WSZ wires: one each, reset before every message (no context takeover),
 * shared by every room on the loop. Level 6 (zlib's default): measured in bench/RESULTS.md;
 * the cost is paid once per room message, not per member. */
#define WIRE_DEFLATE_LEVEL 6
/* Messages up to WIRE_SMALL bytes (game poses, chat lines: most of the traffic) go through the
 * fixed-code encoder (rc_pmd_deflate_fixed): zlib's per-message setup and tree building cost
 * 10-20 µs a message on the loop, ten times the rest of a fan-out to ten members, against about
 * 1 µs for the one-pass encoder, for output within a few percent for such messages
 * (bench/RESULTS.md, issue 17). Larger messages go through zlib, whose dynamic codes win there.
 * Indexed [small window]. */
#define WIRE_SMALL 4096
static rc_pmd_stream wire_deflater[2] = {{.bits = 15}, {.bits = RC_PMD_SMALL_WINDOW}};
static size_t wire_deflate_min = 128;
static uint8_t *wire_scratch;      /* compression output, grown to the largest message */
static size_t wire_scratch_cap;
static rc_wire_deflate_stats wire_deflate_stats;

const rc_wire_deflate_stats *rc_wire_deflate_stats_get(void)
{
    return &wire_deflate_stats;
}

void rc_wire_deflate_threshold(size_t bytes)
{
    wire_deflate_min = bytes;
}

/* The payload of the canonical frame, and its opcode. */
static const char *ws_payload(const rc_msg *ws, size_t *len, uint8_t *opcode)
{
    size_t h = rc_ws_server_header_len(ws->data);
    *opcode = (uint8_t)ws->data[0] & 0x0f;
    *len = ws->len - h;
    return ws->data + h;
}

static rc_msg *tagged(rc_msg *m, uint8_t wire, const rc_msg *from)
{
    if (m) {
        m->wire = wire;
        m->t_recv = from ? from->t_recv : 0;
        /* a room message's other encodings keep its conflation key and msg_id */
        m->ckey = from ? from->ckey : 0;
        m->id = from ? from->id : 0;
    }
    return m;
}

static uint64_t get_le64(const char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | (uint8_t)p[i];
    return v;
}

/* {"binary":"<base64>","room":R,"client_id":C,"msg_id":N}\n from the binary envelope
 * [msg_id u64][client_id u64][room_len][room][payload]. */
static rc_msg *line_binary(const char *p, size_t n)
{
    if (n < 17 || 17 + (size_t)(uint8_t)p[16] > n) return RC_WIRE_SKIP; /* never: we encoded it */
    size_t rl = (uint8_t)p[16], pl = n - 17 - rl;
    char room[rc_json_escape_max(255)];
    size_t jl = rc_json_escape(p + 17, rl, room);
    char tail[64];
    int tl = snprintf(tail, sizeof(tail), ",\"client_id\":%llu,\"msg_id\":%llu}\n",
                      (unsigned long long)get_le64(p + 8), (unsigned long long)get_le64(p));
    size_t b64 = rc_base64_len(pl);
    rc_msg *m = rc_msg_new(11 + b64 + 9 + jl + (size_t)tl);
    if (!m) return NULL;
    char *w = m->data;
    memcpy(w, "{\"binary\":\"", 11);
    w += 11;
    w += rc_base64_encode(p + 17 + rl, pl, w);
    memcpy(w, "\",\"room\":", 9);
    w += 9;
    memcpy(w, room, jl);
    w += jl;
    memcpy(w, tail, (size_t)tl);
    return m;
}

/* Writes s[0..n) with control characters (C0 and DEL) turned into spaces: one message, one
 * line, and no terminal escape sequences from a stranger. */
static size_t put_clean(char *w, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        w[i] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    return n;
}

/* "[user] text\n" for the chat port. The decoded strings are never longer than their JSON
 * literals, so the message is sized from those and trimmed. */
static rc_msg *chat_line(const char *p, size_t n)
{
    rc_json_span text, user;
    if (!rc_json_member(p, n, "text", &text) || text.type != RC_JSON_STRING) return RC_WIRE_SKIP;
    if (!rc_json_member(p, n, "user", &user) || user.type != RC_JSON_STRING)
        rc_json_member(p, n, "nick", &user);
    rc_json_span cid;
    uint64_t id = 0;
    if (rc_json_member(p, n, "client_id", &cid)) rc_json_get_u64(&cid, &id);
    size_t ucap = user.type == RC_JSON_STRING ? user.len : 0;
    rc_msg *m = rc_msg_new(1 + (ucap > 32 ? ucap : 32) + 2 + text.len + 1);
    if (!m) return NULL;
    char *w = m->data;
    *w++ = '[';
    long ul = ucap ? rc_json_unescape_lossy(user.p, user.len, w, ucap) : -1;
    if (ul >= 0) w += put_clean(w, w, (size_t)ul);
    else w += snprintf(w, 32, "client %llu", (unsigned long long)id);
    *w++ = ']';
    *w++ = ' ';
    long tl = rc_json_unescape_lossy(text.p, text.len, w, text.len);
    if (tl < 0) { /* never: the text is a string literal of a scanned message */
        rc_msg_unref(m);
        return RC_WIRE_SKIP;
    }
    w += put_clean(w, w, (size_t)tl);
    *w++ = '\n';
    m->len = (uint32_t)(w - m->data);
    return m;
}

/* The frame ws compressed for wire (RC_WIRE_WSZ or WSZ9): a new message; ws itself (not a new
 * reference) when compressing would not make it shorter; NULL when out of memory. */
static rc_msg *deflated(uint8_t wire, const rc_msg *ws)
{
    size_t n;
    uint8_t op;
    const char *p = ws_payload(ws, &n, &op);
    size_t bound = rc_pmd_deflate_bound(n);
    if (bound > wire_scratch_cap) {
        uint8_t *s = realloc(wire_scratch, bound);
        if (!s) return NULL;
        wire_scratch = s;
        wire_scratch_cap = bound;
    }
    bool small = wire == RC_WIRE_WSZ9;
    long z = n <= WIRE_SMALL
                 ? (long)rc_pmd_deflate_fixed(p, n, small ? RC_PMD_SMALL_WINDOW : 15, wire_scratch)
                 : rc_pmd_deflate(&wire_deflater[small], WIRE_DEFLATE_LEVEL, p, n, wire_scratch);
    if (z < 0) return NULL;
    wire_deflate_stats.messages++;
    wire_deflate_stats.bytes_in += n;
    wire_deflate_stats.bytes_out += (size_t)z < n ? (size_t)z : n;
    if ((size_t)z >= n) return (rc_msg *)ws;
    size_t zl = (size_t)z, h = rc_ws_header_size(zl);
    rc_msg *m = rc_msg_new(h + zl);
    if (!m) return NULL;
    rc_ws_encode_header((uint8_t *)m->data, op, true, zl);
    m->data[0] |= 0x40; /* RSV1: compressed (RFC 7692 §6) */
    memcpy(m->data + h, wire_scratch, zl);
    /* Keep the scratch buffer from holding on to one huge message's worth. */
    if (wire_scratch_cap > (1u << 20)) {
        free(wire_scratch);
        wire_scratch = NULL;
        wire_scratch_cap = 0;
    }
    return tagged(m, wire, ws);
}

static rc_msg *framed(uint8_t opcode, const char *p, size_t n)
{
    rc_msg *m = rc_msg_new(RC_TCPW_HEADER_LEN + n);
    if (!m) return NULL;
    rc_tcpw_header((uint8_t *)m->data, opcode, (uint32_t)n);
    memcpy(m->data + RC_TCPW_HEADER_LEN, p, n);
    return m;
}

/* JSON text and '\n'. JSON may be pretty-printed over several lines, but a line member reads
 * one object per line: a CR or LF in valid JSON text is whitespace between tokens (strings
 * cannot hold them raw), so it becomes a space. */
static rc_msg *line(const char *p, size_t n)
{
    rc_msg *m = rc_msg_new(n + 1);
    if (!m) return NULL;
    memcpy(m->data, p, n);
    m->data[n] = '\n';
    for (char *q = m->data; (q = memchr(q, '\n', n - (size_t)(q - m->data))); q++) *q = ' ';
    for (char *q = m->data; (q = memchr(q, '\r', n - (size_t)(q - m->data))); q++) *q = ' ';
    return m;
}

rc_msg *rc_wire_encode(uint8_t wire, const rc_msg *ws)
{
    size_t n;
    uint8_t op;
    const char *p = ws_payload(ws, &n, &op);
    rc_msg *m;
    switch (wire) {
    case RC_WIRE_LINE: m = op == RC_WS_TEXT ? line(p, n) : line_binary(p, n); break;
    case RC_WIRE_FRAMED: m = framed(op, p, n); break;
    case RC_WIRE_CHAT: m = op == RC_WS_TEXT ? chat_line(p, n) : RC_WIRE_SKIP; break;
    case RC_WIRE_WSZ:
    case RC_WIRE_WSZ9:
        /* compressed, or a copy of the plain frame when that is not shorter */
        m = deflated(wire, ws);
        if (m == ws) m = rc_msg_copy(ws->data, ws->len);
        else return m;
        break;
    default: return RC_WIRE_SKIP;
    }
    return m == RC_WIRE_SKIP ? m : tagged(m, wire, ws);
}

rc_msg *rc_wire_text(uint8_t wire, const char *json, size_t n)
{
    rc_msg *m;
    switch (wire) {
    case RC_WIRE_WS:
    case RC_WIRE_WSZ:
    case RC_WIRE_WSZ9: m = rc_ws_msg_new(RC_WS_TEXT, json, n); break;
    case RC_WIRE_LINE: m = line(json, n); break;
    case RC_WIRE_FRAMED: m = framed(RC_WS_TEXT, json, n); break;
    case RC_WIRE_CHAT:
        /* The chat client shows lines; a reply (a room closed by the API, say) reads as a
         * notice from the server. */
        if ((m = rc_msg_new(11 + n + 1))) {
            memcpy(m->data, "[roomcast] ", 11);
            put_clean(m->data + 11, json, n);
            m->data[11 + n] = '\n';
        }
        break;
    default: return NULL;
    }
    return tagged(m, wire, NULL);
}

void rc_wire_fanned_out(rc_msg *m)
{
    rc_msg_drop_alt(m, RC_WIRE_WSZ);
    rc_msg_drop_alt(m, RC_WIRE_WSZ9);
}

rc_msg *rc_wire_of(rc_msg *m, uint8_t wire)
{
    /* A text frame made by rc_ws_msg_alloc is a line already: its payload and the newline kept
     * after it, unless the JSON was pretty-printed over several lines. */
    if (wire == RC_WIRE_LINE && m->sub_len) {
        const char *p = m->data + m->sub_off;
        size_t n = m->sub_len - 1;
        if (!memchr(p, '\n', n) && !memchr(p, '\r', n)) return rc_msg_sub(m);
    }
    if (wire == RC_WIRE_WS) return m;
    rc_msg *a = rc_msg_alt(m, wire);
    if (a) return a;
    if (wire == RC_WIRE_WSZ || wire == RC_WIRE_WSZ9) {
        /* Short payloads go plain: the canonical frame itself, no copy. So does one that would
         * not shrink (compressed again if it is replayed: rare, and not worth a marker). */
        if (m->len - rc_ws_server_header_len(m->data) < wire_deflate_min) return m;
        a = deflated(wire, m);
        if (a && a != m) rc_msg_add_alt(m, a);
        return a;
    }
    a = rc_wire_encode(wire, m);
    if (a && a != RC_WIRE_SKIP) rc_msg_add_alt(m, a);
    return a;
}
