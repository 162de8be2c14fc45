/* ws.c — WebSocket frames, fragmentation, control frames, closing, keepalive; see ws.h. */
#include "transport/ws.h"

#include <stdlib.h>
#include <string.h>

#include "codec/pmdeflate.h"
#include "codec/utf8.h"
#include "codec/wsframe.h"
#include "core/log.h"

/* Compressed messages (permessage-deflate). A message that comes whole in one read, as one
 * frame (nearly all of them), is inflated at once into one shared buffer and delivered from
 * there before the next is inflated; when its client agreed to client_no_context_takeover, by
 * one inflater shared by all such clients, from a reset state: nothing of it outlives the
 * message. A client that keeps its context has an inflater of its own (c->ws_zin, made at its
 * first compressed message).
 *
 * Any other compressed message (fragmented, or a frame that spans reads) is inflated as its
 * bytes arrive (c->ws_inflating), by c->ws_zin (made for the message, and freed after it, when
 * the client keeps no context), into c->frag: each piece is counted against
 * --max-message-size and, for text, checked for UTF-8 as it comes out, so an invalid byte fails
 * the connection with 1007 as soon as it is inflated, as for uncompressed text (fail fast),
 * not once the message is complete. Single-threaded, like everything on the loop. */
static rc_pmd_stream ws_inflater = {.bits = 15, .inflate = true};
static rc_buf ws_inflated;
static uint8_t ws_inflate_chunk[16384];

bool rc_ws_send(rc_conn *c, uint8_t opcode, const void *p, size_t n)
{
    return rc_conn_give(c, rc_ws_msg_new(opcode, p, n), false);
}

/* Starts the closing handshake (the server's `end`): queues the close frame, stops room
 * messages (rc_conn_closing runs the `ended` hook: no room message may follow the close frame,
 * RFC 6455 §5.5.1), and waits at most --close-timeout for the peer's close or EOF. When `fail`
 * is set the connection is being failed (§7.1.7): further input is discarded unread. */
static void end(rc_conn *c, uint16_t code, const char *reason, bool fail)
{
    uint8_t payload[RC_WS_MAX_CONTROL_PAYLOAD];
    size_t n = rc_ws_close_payload(payload, code, reason);
    rc_conn_closing(c, fail);
    rc_conn_give(c, rc_ws_msg_new(RC_WS_CLOSE, payload, n), true);
}

/* Fails the connection (RFC 6455 §7.1.7) with code, counting the client's fault. */
static void fail(rc_conn *c, uint16_t code, const char *reason)
{
    rc_net_stats *st = &c->net->stats;
    switch (code) {
    case RC_WS_CLOSE_PROTOCOL: st->err[RC_NERR_WS_1002]++; break;
    case RC_WS_CLOSE_BAD_DATA: st->err[RC_NERR_WS_1007]++; break;
    case RC_WS_CLOSE_TOO_BIG: st->err[RC_NERR_WS_1009]++; break;
    default: break;
    }
    rc_debug("ws client: closing %u: %s", code, reason);
    rc_conn_end(c, code, reason, true);
}

static void deliver(rc_conn *c, uint8_t opcode, char *p, size_t n)
{
    c->net->stats.messages_in++;
    c->on_message(c, opcode, p, n);
}

/* What inflating one message checks as its bytes come out. */
typedef struct inflating {
    rc_conn *c;              /* whose message it is */
    uint8_t opcode;          /* RC_WS_TEXT: each piece is checked for UTF-8 */
    size_t max;              /* --max-message-size */
    rc_buf *out;             /* where the inflated bytes go: ws_inflated or c->frag */
} inflating;

/* Each piece of an inflated message: counted against the size limit before it is kept (so a
 * decompression bomb is stopped after at most one chunk over the limit), checked for UTF-8 as
 * it comes (fail fast, as for uncompressed text), then appended. Returns 0 or a close code. */
static int inflated_piece(void *arg, const uint8_t *p, size_t n)
{
    inflating *x = arg;
    if (rc_buf_size(x->out) + n > x->max) return RC_WS_CLOSE_TOO_BIG;
    if (x->opcode == RC_WS_TEXT && rc_utf8_feed(&x->c->utf8, p, n) == RC_UTF8_INVALID)
        return RC_WS_CLOSE_BAD_DATA;
    if (rc_buf_append(x->out, p, n) < 0) return RC_WS_CLOSE_INTERNAL;
    return 0;
}

/* fail_inflate fails c for rc_pmd_inflate*'s non-zero answer r. */
static void fail_inflate(rc_conn *c, int r)
{
    switch (r) {
    case RC_WS_CLOSE_TOO_BIG: fail(c, RC_WS_CLOSE_TOO_BIG, "message too big (inflated)"); break;
    case RC_WS_CLOSE_BAD_DATA: fail(c, RC_WS_CLOSE_BAD_DATA, "text message is not UTF-8"); break;
    case RC_WS_CLOSE_INTERNAL: fail(c, RC_WS_CLOSE_TOO_BIG, "out of memory for message"); break;
    default: fail(c, RC_WS_CLOSE_BAD_DATA, "invalid compressed data"); break;
    }
}

/* own_inflater is c's inflater (c->ws_zin), made when missing; NULL when out of memory. */
static rc_pmd_stream *own_inflater(rc_conn *c)
{
    if (!c->ws_zin && (c->ws_zin = calloc(1, sizeof *c->ws_zin))) {
        c->ws_zin->bits = 15;
        c->ws_zin->inflate = true;
    }
    return c->ws_zin;
}

/* Inflates the compressed message p[0..n), which came whole, and delivers it, or fails c: 1009
 * when it inflates past --max-message-size, 1007 when it is not a deflate stream or not UTF-8
 * text. */
static void deliver_compressed(rc_conn *c, uint8_t opcode, const char *p, size_t n)
{
    inflating x = {.c = c, .opcode = opcode, .max = c->net->cfg.max_message_size,
                   .out = &ws_inflated};
    rc_pmd_stream *zin = c->ws_takeover ? own_inflater(c) : &ws_inflater;
    if (!zin) {
        fail(c, RC_WS_CLOSE_TOO_BIG, "out of memory for message");
        return;
    }
    rc_buf_reset(&ws_inflated);
    rc_utf8_init(&c->utf8);
    int r = rc_pmd_inflate(zin, c->ws_takeover, p, n, ws_inflate_chunk, sizeof ws_inflate_chunk,
                           inflated_piece, &x);
    if (r == 0 && opcode == RC_WS_TEXT && rc_utf8_feed(&c->utf8, NULL, 0) != RC_UTF8_OK)
        r = RC_WS_CLOSE_BAD_DATA;
    if (r == 0) deliver(c, opcode, rc_buf_head(&ws_inflated), rc_buf_size(&ws_inflated));
    else fail_inflate(c, r);
    rc_buf_reset(&ws_inflated);
    if (ws_inflated.cap > 65536) rc_buf_release(&ws_inflated);
}

/* inflate_begin starts inflating a compressed message of opcode `opcode` as it arrives (see
 * the top of the file): false when c has been failed. */
static bool inflate_begin(rc_conn *c, uint8_t opcode)
{
    rc_pmd_stream *zin = own_inflater(c);
    if (!zin || rc_pmd_inflate_begin(zin, c->ws_takeover) < 0) {
        fail(c, RC_WS_CLOSE_TOO_BIG, "out of memory for message");
        return false;
    }
    c->ws_inflating = true;
    c->ws_inflating_text = opcode == RC_WS_TEXT;
    rc_buf_reset(&c->frag);
    rc_utf8_init(&c->utf8);
    return true;
}

/* inflate_more inflates the next compressed bytes p[0..n) of the message in progress into
 * c->frag (`last`: the end of the message): false when c has been failed. */
static bool inflate_more(rc_conn *c, const char *p, size_t n, bool last)
{
    inflating x = {.c = c, .opcode = c->ws_inflating_text ? RC_WS_TEXT : RC_WS_BINARY,
                   .max = c->net->cfg.max_message_size, .out = &c->frag};
    int r = rc_pmd_inflate_feed(c->ws_zin, p, n, last, ws_inflate_chunk, sizeof ws_inflate_chunk,
                                inflated_piece, &x);
    if (r == 0 && last && c->ws_inflating_text && rc_utf8_feed(&c->utf8, NULL, 0) != RC_UTF8_OK)
        r = RC_WS_CLOSE_BAD_DATA;
    if (r == 0) return true;
    fail_inflate(c, r);
    return false;
}

/* inflate_end finishes the message in progress (all its bytes were given to inflate_more) and
 * delivers it, or fails c. */
static void inflate_end(rc_conn *c, uint8_t opcode)
{
    c->ws_inflating = false;
    if (inflate_more(c, NULL, 0, true))
        deliver(c, opcode, rc_buf_head(&c->frag), rc_buf_size(&c->frag));
    rc_buf_reset(&c->frag);
    if (c->frag.cap > 65536) rc_buf_release(&c->frag);
    if (!c->ws_takeover && c->ws_zin) { /* no context to keep: no memory held between messages */
        rc_pmd_stream_release(c->ws_zin);
        free(c->ws_zin);
        c->ws_zin = NULL;
    }
}

static void on_close_frame(rc_conn *c, const uint8_t *p, size_t n)
{
    uint16_t code;
    int r = rc_ws_close_parse(p, n, &code);
    if (r < 0) {
        fail(c, (uint16_t)-r, r == -RC_WS_CLOSE_BAD_DATA ? "close reason is not UTF-8"
                                                         : "invalid close frame");
        return;
    }
    c->close_received = true;
    if (c->state == RC_CONN_OPEN) {
        /* Echo the peer's code; flushing then closes TCP (the server closes first). */
        rc_conn_end(c, code, NULL, false);
    } else if (c->out.count == 0) {
        rc_conn_close(c); /* the reply to our own close */
    }
}

static void on_frame(rc_conn *c, const rc_ws_frame *f, char *p, size_t n)
{
    bool open = c->state == RC_CONN_OPEN; /* in CLOSING only the peer's close matters */
    switch (f->opcode) {
    case RC_WS_TEXT:
    case RC_WS_BINARY:
        if (!open) return;
        /* The payload's UTF-8 was checked as it arrived (on_input); what is left to check is
         * that a final frame does not end inside a code point. */
        if (f->fin && f->rsv1) {
            if (c->ws_inflating) inflate_end(c, f->opcode); /* its bytes were inflated */
            else deliver_compressed(c, f->opcode, p, n);
            return;
        }
        if (f->fin) {
            if (f->opcode == RC_WS_TEXT && rc_utf8_feed(&c->utf8, NULL, 0) != RC_UTF8_OK) {
                fail(c, RC_WS_CLOSE_BAD_DATA, "text message ends inside a UTF-8 sequence");
                return;
            }
            deliver(c, f->opcode, p, n);
            return;
        }
        c->msg_opcode = f->opcode;
        c->msg_compressed = f->rsv1;
        if (f->rsv1) return; /* being inflated into frag as it arrives (on_input) */
        rc_buf_reset(&c->frag);
        /* the first fragment is appended like a continuation */
        __attribute__((fallthrough));
    case RC_WS_CONT:
        if (!open) return;
        if (f->opcode == RC_WS_CONT && c->msg_opcode == 0) return; /* checked by caller */
        if (c->msg_compressed) { /* inflated into frag as it arrived (on_input) */
            if (!f->fin) return;
            uint8_t op = c->msg_opcode;
            c->msg_opcode = 0;
            c->msg_compressed = false;
            inflate_end(c, op);
            return;
        }
        if (rc_buf_append(&c->frag, p, n) < 0) {
            fail(c, RC_WS_CLOSE_TOO_BIG, "out of memory for message");
            return;
        }
        if (!f->fin) return;
        if (c->msg_opcode == RC_WS_TEXT && rc_utf8_feed(&c->utf8, NULL, 0) != RC_UTF8_OK) {
            fail(c, RC_WS_CLOSE_BAD_DATA, "text message ends inside a UTF-8 sequence");
            return;
        }
        {
            uint8_t op = c->msg_opcode;
            c->msg_opcode = 0;
            deliver(c, op, rc_buf_head(&c->frag), rc_buf_size(&c->frag));
            rc_buf_reset(&c->frag);
            if (c->frag.cap > 65536) rc_buf_release(&c->frag);
        }
        return;
    case RC_WS_PING:
        if (open) rc_ws_send(c, RC_WS_PONG, p, n);
        return;
    case RC_WS_PONG:
        /* The keepalive timer is waiting for the ping timeout; a pong is rare enough to move
         * it back to the ping interval right away, so pings keep their cadence. */
        if (open && c->ping_out) {
            c->ping_out = false;
            rc_timer_start(c->net->loop, &c->timer,
                           rc_loop_now(c->net->loop) + c->net->cfg.ping_interval);
        }
        return;
    case RC_WS_CLOSE:
        on_close_frame(c, (const uint8_t *)p, n);
        return;
    default:
        return;
    }
}

/* check_text feeds p[0..n), the next payload bytes of frame f, to the UTF-8 validator when f
 * belongs to a text message that is open (a data frame of a closing connection is dropped
 * anyway), or to the inflater when f belongs to a compressed message inflated as it arrives
 * (which checks what comes out): false when they are invalid (c has been failed with 1007, or
 * 1009). The validator is reset at the start of every text message (on_input), so it follows
 * one message across frames and reads. */
static bool check_text(rc_conn *c, const rc_ws_frame *f, const char *p, size_t n)
{
    if (c->state != RC_CONN_OPEN || f->opcode >= RC_WS_CLOSE) return true;
    if (c->ws_inflating) return inflate_more(c, p, n, false);
    if (f->rsv1) return true; /* compressed and whole: checked as it is inflated (on_frame) */
    if (f->opcode != RC_WS_TEXT && (f->opcode != RC_WS_CONT || c->msg_opcode != RC_WS_TEXT))
        return true;
    if (rc_utf8_feed(&c->utf8, (const uint8_t *)p, n) != RC_UTF8_INVALID) return true;
    fail(c, RC_WS_CLOSE_BAD_DATA, "text message is not UTF-8");
    return false;
}

static size_t on_input(rc_conn *c, char *p, size_t n)
{
    rc_net *net = c->net;
    size_t used = 0;
    while (used < n && (c->state == RC_CONN_OPEN ||
                        (c->state == RC_CONN_CLOSING && !c->discard_input))) {
        rc_ws_frame f;
        unsigned flags = RC_WS_REQUIRE_MASK | (c->ws_deflate ? RC_WS_ALLOW_RSV1 : 0);
        int h = rc_ws_parse_header((const uint8_t *)p + used, n - used, flags, &f);
        if (h == 0) break;
        if (h < 0) {
            fail(c, (uint16_t)-h, "invalid frame header");
            return n;
        }
        if (f.opcode < RC_WS_CLOSE) {
            if (f.opcode == RC_WS_CONT && c->msg_opcode == 0) {
                fail(c, RC_WS_CLOSE_PROTOCOL, "continuation frame without a message");
                return n;
            }
            if (f.opcode != RC_WS_CONT && c->msg_opcode != 0) {
                fail(c, RC_WS_CLOSE_PROTOCOL, "new message inside a fragmented message");
                return n;
            }
            /* a compressed message's frag holds inflated bytes, counted as they are inflated;
             * its compressed frames count one by one */
            uint64_t total = f.len + (f.opcode == RC_WS_CONT && !c->msg_compressed
                                      ? rc_buf_size(&c->frag) : 0);
            if (total > net->cfg.max_message_size) {
                fail(c, RC_WS_CLOSE_TOO_BIG, "message too big");
                return n;
            }
        }
        /* Unmask (and check, for text) the payload bytes that are here and were not seen by
         * an earlier call, then wait for the rest of the frame: an invalid byte fails the
         * connection when it arrives, not when its message is complete. */
        char *payload = p + used + h;
        size_t avail = n - used - (size_t)h;
        bool whole = avail >= f.len;
        if (whole) avail = (size_t)f.len;
        if (f.opcode == RC_WS_TEXT && !f.rsv1 && c->ws_seen == 0)
            rc_utf8_init(&c->utf8); /* a new text message */
        /* A compressed message that does not come whole in this read as one frame is inflated
         * as it arrives (see the top of the file). */
        if (f.rsv1 && !c->ws_inflating && !(whole && f.fin) && c->state == RC_CONN_OPEN &&
            !inflate_begin(c, f.opcode))
            return n;
        if (avail > c->ws_seen) {
            size_t from = (size_t)c->ws_seen;
            rc_ws_unmask((uint8_t *)payload + from, avail - from, f.mask, from);
            if (!check_text(c, &f, payload + from, avail - from)) return n;
            c->ws_seen = avail;
        }
        if (!whole) break;
        c->ws_seen = 0;
        used += (size_t)h + avail;
        on_frame(c, &f, payload, avail);
    }
    if (c->state == RC_CONN_CLOSED || (c->state == RC_CONN_CLOSING && c->discard_input))
        return n;
    return used;
}

static void on_timer(rc_conn *c)
{
    if (rc_conn_ping_due(c)) rc_ws_send(c, RC_WS_PING, NULL, 0);
}

const rc_proto rc_ws_proto = {
    .name = "ws", .start = rc_conn_keepalive_start, .input = on_input, .timer = on_timer,
    .end = end, .timed = true,
};
