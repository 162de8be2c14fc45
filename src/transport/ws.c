/* ws.c — WebSocket frames, fragmentation, control frames, closing, keepalive; see ws.h. */
#include "transport/ws.h"

#include <string.h>

#include "core/log.h"
#include "codec/utf8.h"
#include "codec/wsframe.h"
#include "rooms/roomproto.h"
#include "app/server.h"

/* Fails the connection (RFC 6455 §7.1.7) with code, counting the client's fault. */
static void fail(rc_conn *c, uint16_t code, const char *reason)
{
    rc_server *srv = c->srv;
    switch (code) {
    case RC_WS_CLOSE_PROTOCOL: srv->stats.err[RC_ERR_WS_1002]++; break;
    case RC_WS_CLOSE_BAD_DATA: srv->stats.err[RC_ERR_WS_1007]++; break;
    case RC_WS_CLOSE_TOO_BIG: srv->stats.err[RC_ERR_WS_1009]++; break;
    default: break;
    }
    rc_debug("client %llu: closing %u: %s", (unsigned long long)c->client_id, code, reason);
    rc_conn_close_ws(c, code, reason, true);
}

static void deliver(rc_conn *c, uint8_t opcode, char *p, size_t n)
{
    c->srv->stats.messages_in++;
    if (c->proto == RC_PROTO_ECHO) {
        rc_conn_send_frame(c, opcode, p, n);
        return;
    }
    if (opcode == RC_WS_TEXT) rc_roomproto_on_text(c, p, n);
    else rc_roomproto_on_binary(c, (const uint8_t *)p, n);
}

static void on_close_frame(rc_conn *c, const uint8_t *p, size_t n)
{
    uint16_t code = RC_WS_CLOSE_NORMAL;
    if (n == 1) {
        fail(c, RC_WS_CLOSE_PROTOCOL, "close frame with a 1-byte payload");
        return;
    }
    if (n >= 2) {
        code = (uint16_t)(p[0] << 8 | p[1]);
        if (!rc_ws_close_code_valid(code)) {
            fail(c, RC_WS_CLOSE_PROTOCOL, "invalid close code");
            return;
        }
        if (!rc_utf8_valid(p + 2, n - 2)) {
            fail(c, RC_WS_CLOSE_BAD_DATA, "close reason is not UTF-8");
            return;
        }
    }
    c->close_received = true;
    if (c->state == RC_CONN_WS) {
        /* Echo the peer's code; flushing then closes TCP (the server closes first). */
        rc_conn_close_ws(c, code, NULL, false);
    } else if (c->out.count == 0) {
        rc_conn_close(c); /* the reply to our own close */
    }
}

static void on_frame(rc_conn *c, const rc_ws_frame *f, char *p, size_t n)
{
    bool open = c->state == RC_CONN_WS; /* in CLOSING only the peer's close matters */
    switch (f->opcode) {
    case RC_WS_TEXT:
    case RC_WS_BINARY:
        if (!open) return;
        if (f->fin) {
            if (f->opcode == RC_WS_TEXT && !rc_utf8_valid((const uint8_t *)p, n)) {
                fail(c, RC_WS_CLOSE_BAD_DATA, "text message is not UTF-8");
                return;
            }
            deliver(c, f->opcode, p, n);
            return;
        }
        c->msg_opcode = f->opcode;
        rc_buf_reset(&c->frag);
        rc_utf8_init(&c->utf8);
        /* the first fragment is appended like a continuation */
        __attribute__((fallthrough));
    case RC_WS_CONT:
        if (!open) return;
        if (f->opcode == RC_WS_CONT && c->msg_opcode == 0) return; /* checked by caller */
        if (c->msg_opcode == RC_WS_TEXT &&
            rc_utf8_feed(&c->utf8, (const uint8_t *)p, n) == RC_UTF8_INVALID) {
            fail(c, RC_WS_CLOSE_BAD_DATA, "text message is not UTF-8");
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
        if (open) rc_conn_send_frame(c, RC_WS_PONG, p, n);
        return;
    case RC_WS_PONG:
        /* The keepalive timer is waiting for the ping timeout; a pong is rare enough to move
         * it back to the ping interval right away, so pings keep their cadence. */
        if (open && c->ping_out) {
            c->ping_out = false;
            rc_timer_start(c->srv->loop, &c->timer,
                           rc_loop_now(c->srv->loop) + c->srv->cfg.ping_interval);
        }
        return;
    case RC_WS_CLOSE:
        on_close_frame(c, (const uint8_t *)p, n);
        return;
    default:
        return;
    }
}

size_t rc_ws_on_input(rc_conn *c, char *p, size_t n)
{
    rc_server *srv = c->srv;
    size_t used = 0;
    while (used < n && (c->state == RC_CONN_WS ||
                        (c->state == RC_CONN_CLOSING && !c->discard_input))) {
        rc_ws_frame f;
        int h = rc_ws_parse_header((const uint8_t *)p + used, n - used, true, &f);
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
            uint64_t total = f.len + (f.opcode == RC_WS_CONT ? rc_buf_size(&c->frag) : 0);
            if (total > srv->cfg.max_message_size) {
                fail(c, RC_WS_CLOSE_TOO_BIG, "message too big");
                return n;
            }
        }
        if (n - used - (size_t)h < f.len) break; /* wait for the whole payload */
        char *payload = p + used + h;
        size_t len = (size_t)f.len;
        rc_ws_unmask((uint8_t *)payload, len, f.mask, 0);
        used += (size_t)h + len;
        on_frame(c, &f, payload, len);
    }
    if (c->state == RC_CONN_CLOSED || (c->state == RC_CONN_CLOSING && c->discard_input))
        return n;
    return used;
}

void rc_ws_start_keepalive(rc_conn *c)
{
    rc_server *srv = c->srv;
    c->ping_out = false;
    rc_timer_start(srv->loop, &c->timer, rc_loop_now(srv->loop) + srv->cfg.ping_interval);
}

/* The timer is not moved on every read (that would be a heap operation per message): it
 * fires at the earliest moment a ping could be due and re-arms from last_rx if there was
 * traffic meanwhile. */
void rc_ws_on_keepalive(rc_conn *c)
{
    rc_server *srv = c->srv;
    uint64_t now = rc_loop_now(srv->loop);
    if (c->ping_out) {
        if (c->last_rx > c->ping_sent) {
            c->ping_out = false; /* any traffic since the ping proves the peer is there */
        } else if (now - c->ping_sent >= srv->cfg.ping_timeout) {
            srv->stats.disc_ping++;
            rc_info("client %llu: no answer to ping, disconnecting",
                    (unsigned long long)c->client_id);
            rc_conn_close_ws(c, RC_WS_CLOSE_INTERNAL, "ping timeout", true);
            return;
        } else {
            rc_timer_start(srv->loop, &c->timer, c->ping_sent + srv->cfg.ping_timeout);
            return;
        }
    }
    if (now - c->last_rx >= srv->cfg.ping_interval) {
        c->ping_out = true;
        c->ping_sent = now;
        rc_conn_send_frame(c, RC_WS_PING, NULL, 0);
        rc_timer_start(srv->loop, &c->timer, now + srv->cfg.ping_timeout);
    } else {
        rc_timer_start(srv->loop, &c->timer, c->last_rx + srv->cfg.ping_interval);
    }
}
