/* tcp.c — the generator's client side of roomcast's raw TCP port (docs/tcp.md).
 *
 * The loop, the buffers and the flush list are conn.c's; this file is only the wire:
 *
 *   line mode    every message is one JSON object ended by '\n' (a '\r' before it is dropped,
 *                blank lines are skipped). The server's {"type":"keepalive"} is answered with
 *                the same line (any input counts as an answer; this one is consumed without a
 *                reply); its {"type":"close","code":C,...} ends the connection like a close
 *                frame. We close by shutting our write side (EOF) once our output is written.
 *   framed mode  we send the preamble 00 52 43 01 and the server answers with it; then every
 *                message is u32 little-endian length, u8 opcode (WebSocket's: text, binary,
 *                close, ping, pong), payload. Nothing is masked.
 *
 * Like conn.c this is written independently of src/ (no shared decoder), so a bug in
 * roomcast's TCP codec cannot hide by being on both ends of the wire.
 *
 * Deliveries are most of the traffic: a line that starts the way every delivery starts
 * ({"type":"b",) goes to the scenario as it is; any other line (joined, left, error, keepalive,
 * close) is scanned once here to see whether it is the transport's own business.
 */
#include "bench.h"

#include <stdio.h>
#include <string.h>

#define MAX_MESSAGE (64u << 20)  /* larger than anything a server may send us */
#define FRAME_HEADER 5           /* u32 length + u8 opcode */

static const char preamble[4] = {0x00, 0x52, 0x43, 0x01};

void rb__tcp_start(struct rb_conn *c)
{
    /* Queued now, written when connect() completes (the loop's EPOLLOUT). Line mode says
     * nothing until the scenario's open callback sends its join. */
    if (c->tr == RB_TR_FRAMED)
        rb_buf_append(&c->out, preamble, sizeof(preamble));
}

static void put_frame(struct rb_conn *c, unsigned opcode, const char *p, size_t n)
{
    rb_buf_reserve(&c->out, n + FRAME_HEADER);
    unsigned char *h = (unsigned char *)c->out.data + c->out.len;
    h[0] = (unsigned char)n;
    h[1] = (unsigned char)(n >> 8);
    h[2] = (unsigned char)(n >> 16);
    h[3] = (unsigned char)(n >> 24);
    h[4] = (unsigned char)opcode;
    memcpy(h + FRAME_HEADER, p, n);
    c->out.len += FRAME_HEADER + n;
    rb__conn_dirty(c);
}

static void put_line(struct rb_conn *c, const char *p, size_t n)
{
    rb_buf_reserve(&c->out, n + 1);
    memcpy(c->out.data + c->out.len, p, n);
    c->out.data[c->out.len + n] = '\n';
    c->out.len += n + 1;
    rb__conn_dirty(c);
}

void rb__tcp_put_text(struct rb_conn *c, const char *p, size_t n)
{
    if (c->tr == RB_TR_LINE)
        put_line(c, p, n);
    else
        put_frame(c, 0x1, p, n);
}

void rb__tcp_put_close(struct rb_conn *c, int code)
{
    c->close_sent = true;
    c->state = RB_CLOSING;
    if (c->tr == RB_TR_FRAMED) {
        char b[2] = {(char)(code >> 8), (char)code};
        put_frame(c, 0x8, b, 2);
        return;
    }
    /* Line mode has no close message: our EOF is the close (rb__conn_flush shuts the write
     * side once everything queued before it is written). */
    c->shut_pending = true;
    rb__conn_dirty(c);
}

static void deliver(struct rb_conn *c, const char *p, size_t n)
{
    if (c->h && c->h->text)
        c->h->text(c, p, n);
}

/* One line without its '\n' (and '\r'). Returns false if the connection ended. */
static bool line(struct rb_conn *c, const char *p, size_t n)
{
    static const char delivery[] = "{\"type\":\"b\",";
    if (n >= sizeof(delivery) - 1 && memcmp(p, delivery, sizeof(delivery) - 1) == 0) {
        deliver(c, p, n);
        return c->fd >= 0;
    }
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    if (i == n)
        return true;   /* blank lines are allowed and mean nothing */
    struct rb_msg g;
    if (rb_msg_scan(p, n, &g) == 0 && g.type) {
        if (rb_msg_is(g.type, g.type_len, "keepalive")) {
            if (c->state == RB_OPEN)
                put_line(c, "{\"type\":\"keepalive\"}", 20);
            return true;
        }
        if (rb_msg_is(g.type, g.type_len, "close")) {
            c->close_code = g.close_code >= 0 ? (int)g.close_code : 1005;
            rb__conn_end(c, RB_END_CLOSE_FRAME, NULL);
            return false;
        }
    }
    /* Anything else, malformed JSON included, is the scenario's to judge. */
    deliver(c, p, n);
    return c->fd >= 0;
}

static ssize_t parse_lines(struct rb_conn *c, const char *p, size_t n)
{
    size_t pos = 0;
    while (pos < n && c->fd >= 0 && !c->paused) {
        const char *s = p + pos, *nl = memchr(s, '\n', n - pos);
        if (!nl) {
            if (n - pos > MAX_MESSAGE) {
                rb_frame_errors++;
                rb__conn_end(c, RB_END_ERROR, "line longer than 64 MiB");
                return -1;
            }
            break;
        }
        size_t len = (size_t)(nl - s);
        pos += len + 1;
        if (len && s[len - 1] == '\r')
            len--;
        if (!line(c, s, len))
            return -1;
    }
    return c->fd >= 0 ? (ssize_t)pos : -1;
}

static ssize_t parse_frames(struct rb_conn *c, const char *p, size_t n)
{
    size_t pos = 0;
    while (n - pos >= FRAME_HEADER && c->fd >= 0 && !c->paused) {
        const unsigned char *h = (const unsigned char *)p + pos;
        size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
        unsigned op = h[4];
        if (len > MAX_MESSAGE) {
            rb_frame_errors++;
            rb__conn_end(c, RB_END_ERROR, "frame larger than 64 MiB");
            return -1;
        }
        if (n - pos < FRAME_HEADER + len)
            break;
        const char *pl = p + pos + FRAME_HEADER;
        pos += FRAME_HEADER + len;
        switch (op) {
        case 0x1:
            deliver(c, pl, len);
            break;
        case 0x2:
            break;   /* binary room messages are not used by the generator */
        case 0x8:
            c->close_code = len >= 2 ? (((unsigned char)pl[0] << 8) | (unsigned char)pl[1]) : 1005;
            if (!c->close_sent && c->state == RB_OPEN) {
                /* Answer with the same code, as docs/tcp.md asks; then we are done. */
                put_frame(c, 0x8, pl, len >= 2 ? 2 : 0);
                c->close_sent = true;
                rb__conn_flush(c);
            }
            rb__conn_end(c, RB_END_CLOSE_FRAME, NULL);
            return -1;
        case 0x9:
            if (len > 125) {
                rb_frame_errors++;
                rb__conn_end(c, RB_END_ERROR, "ping longer than 125 bytes");
                return -1;
            }
            if (c->state == RB_OPEN)
                put_frame(c, 0xA, pl, len);
            break;
        case 0xA:
            break;
        default:
            rb_frame_errors++;
            rb__conn_end(c, RB_END_ERROR, "unknown opcode from server");
            return -1;
        }
    }
    return c->fd >= 0 ? (ssize_t)pos : -1;
}

ssize_t rb__tcp_input(struct rb_conn *c, const char *p, size_t n)
{
    size_t used = 0;
    if (c->state == RB_HANDSHAKE) {
        /* Framed mode: the server's preamble comes first. A server that did not take ours
         * for one answers with an error line instead; show its start. */
        size_t k = n < sizeof(preamble) ? n : sizeof(preamble);
        if (memcmp(p, preamble, k) != 0) {
            char e[64] = "no preamble from server: ";
            size_t el = strlen(e);
            for (size_t i = 0; i < n && i < 32 && p[i] != '\n'; i++)
                e[el++] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '.';
            e[el] = 0;
            rb_frame_errors++;
            rb__conn_end(c, RB_END_ERROR, e);
            return -1;
        }
        if (n < sizeof(preamble))
            return 0;
        used = sizeof(preamble);
        rb__conn_open(c);
        if (c->fd < 0)
            return -1;
    }
    if (c->state != RB_OPEN && c->state != RB_CLOSING)
        return (ssize_t)used;
    ssize_t k = c->tr == RB_TR_LINE ? parse_lines(c, p + used, n - used)
                                    : parse_frames(c, p + used, n - used);
    return k < 0 ? -1 : (ssize_t)used + k;
}
