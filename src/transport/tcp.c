/* tcp.c — the raw TCP port; see tcp.h and docs/tcp.md. */
#include "transport/tcp.h"

#include <stdio.h>
#include <string.h>

#include "codec/json.h"
#include "codec/tcpwire.h"
#include "codec/utf8.h"
#include "codec/wsframe.h"
#include "core/log.h"

/* A frame (framed mode) of opcode with payload p[0..n), or NULL when out of memory. */
static rc_msg *frame(uint8_t opcode, const void *p, size_t n)
{
    rc_msg *m = rc_msg_new(RC_TCPW_HEADER_LEN + n);
    if (!m) return NULL;
    rc_tcpw_header((uint8_t *)m->data, opcode, (uint32_t)n);
    if (n) memcpy(m->data + RC_TCPW_HEADER_LEN, p, n);
    return m;
}

/* Sends {"type":"error","code":code,"message":why} (line mode) or as a text frame. */
static void send_error(rc_conn *c, enum rc_nerr kind, const char *code, const char *why)
{
    char esc[rc_json_escape_max(160)], out[sizeof(esc) + 96];
    size_t el = rc_json_escape(why, strnlen(why, 160), esc);
    int n = snprintf(out, sizeof(out), "{\"type\":\"error\",\"code\":\"%s\",\"message\":%.*s}%s",
                     code, (int)el, esc, rc_tcp_framed(c) ? "" : "\n");
    c->net->stats.err[kind]++;
    rc_conn_give(c, rc_tcp_framed(c) ? frame(RC_WS_TEXT, out, (size_t)n)
                                      : rc_msg_copy(out, (size_t)n), false);
    rc_tcp_count_reply(c, -1);
}

void rc_tcp_count_reply(rc_conn *c, int result)
{
    if (result == 0) {
        c->errors = 0;
        return;
    }
    if (++c->errors < RC_TCP_MAX_ERRORS) return;
    c->net->stats.err[RC_NERR_TOO_MANY_ERRORS]++;
    rc_debug("%s client: %d errors in a row, disconnecting", c->proto->name, RC_TCP_MAX_ERRORS);
    rc_conn_end(c, RC_WS_CLOSE_POLICY, "too many errors", true);
}

/* The server's goodbye: a close line, or a close frame in framed mode; then the write side is
 * shut after the flush and the client's EOF is awaited (input is no longer read). */
static void end(rc_conn *c, uint16_t code, const char *reason, bool fail)
{
    rc_msg *m;
    if (rc_tcp_framed(c)) {
        uint8_t payload[RC_WS_MAX_CONTROL_PAYLOAD];
        m = frame(RC_WS_CLOSE, payload, rc_ws_close_payload(payload, code, reason));
    } else {
        if (!reason) reason = "";
        char esc[rc_json_escape_max(RC_WS_MAX_CONTROL_PAYLOAD)], out[sizeof(esc) + 64];
        size_t el = rc_json_escape(reason, strnlen(reason, RC_WS_MAX_CONTROL_PAYLOAD), esc);
        int n = snprintf(out, sizeof(out), "{\"type\":\"close\",\"code\":%u,\"reason\":%.*s}\n",
                         (unsigned)code, (int)el, esc);
        m = rc_msg_copy(out, (size_t)n);
    }
    rc_conn_closing(c, true);
    rc_conn_give(c, m, true);
}

/* A framed fault: counted, and the connection is closed with code, as WebSocket does. */
static void fail(rc_conn *c, uint16_t code, const char *reason)
{
    enum rc_nerr kind = code == RC_WS_CLOSE_TOO_BIG ? RC_NERR_TCP_1009
                        : code == RC_WS_CLOSE_BAD_DATA ? RC_NERR_TCP_1007 : RC_NERR_TCP_1002;
    c->net->stats.err[kind]++;
    rc_debug("tcp client: closing %u: %s", code, reason);
    rc_conn_end(c, code, reason, true);
}

/* A close frame from the client: answered with its code, then the server closes. */
static void on_close_frame(rc_conn *c, const uint8_t *p, size_t n)
{
    uint16_t code;
    int r = rc_ws_close_parse(p, n, &code);
    if (r < 0) {
        fail(c, (uint16_t)-r, "invalid close frame");
        return;
    }
    c->close_received = true;
    rc_conn_end(c, code, NULL, false);
}

static void on_text(rc_conn *c, const char *p, size_t n)
{
    if (!rc_utf8_valid((const uint8_t *)p, n)) {
        if (rc_tcp_framed(c)) fail(c, RC_WS_CLOSE_BAD_DATA, "text message is not UTF-8");
        else send_error(c, RC_NERR_TCP_BAD_UTF8, "bad_utf8", "the line is not UTF-8");
        return;
    }
    c->net->stats.messages_in++;
    rc_tcp_count_reply(c, c->on_message(c, RC_WS_TEXT, p, n));
}

static size_t on_input(rc_conn *c, char *p, size_t n)
{
    size_t used = 0;
    while (used < n && c->state == RC_CONN_OPEN) {
        rc_tcpw_msg m;
        long k = rc_tcpw_next(&c->dec.tcp, p + used, n - used, &m);
        if (k == 0) break;
        if (k < 0) {
            if (c->dec.tcp.mode == RC_TCPW_UNDECIDED) {
                /* Not the preamble: the client speaks neither framing. */
                send_error(c, RC_NERR_TCP_1002, "bad_preamble",
                           "a connection starting with a 0 byte must send \\0RC\\x01 (docs/tcp.md)");
                rc_conn_end(c, RC_WS_CLOSE_PROTOCOL, "bad preamble", true);
            } else {
                fail(c, (uint16_t)-k, k == -RC_WS_CLOSE_TOO_BIG ? "message too big"
                                                                 : "invalid frame");
            }
            return n;
        }
        used += (size_t)k;
        switch (m.kind) {
        case RC_TCPW_PREAMBLE:
            rc_conn_send_copy(c, rc_tcpw_preamble, RC_TCPW_PREAMBLE_LEN);
            break;
        case RC_TCPW_TOO_LONG: {
            char why[96];
            snprintf(why, sizeof(why), "a line is at most %zu bytes; this one was skipped",
                     c->net->cfg.max_message_size);
            send_error(c, RC_NERR_TCP_LINE_TOO_LONG, "line_too_long", why);
            break;
        }
        case RC_TCPW_TEXT: on_text(c, m.p, m.len); break;
        case RC_TCPW_BINARY:
            c->net->stats.messages_in++;
            rc_tcp_count_reply(c, c->on_message(c, RC_WS_BINARY, m.p, m.len));
            break;
        case RC_TCPW_CLOSE: on_close_frame(c, (const uint8_t *)m.p, m.len); break;
        case RC_TCPW_PING: rc_conn_give(c, frame(RC_WS_PONG, m.p, m.len), false); break;
        case RC_TCPW_PONG: break; /* any input is proof of life (last_rx) */
        default: break;
        }
    }
    return c->state == RC_CONN_OPEN ? used : n;
}

static void on_timer(rc_conn *c)
{
    if (!rc_conn_ping_due(c)) return;
    static const char line[] = "{\"type\":\"keepalive\"}\n";
    rc_conn_give(c, rc_tcp_framed(c) ? frame(RC_WS_PING, NULL, 0)
                                      : rc_msg_copy(line, sizeof(line) - 1), false);
}

static void start(rc_conn *c)
{
    rc_tcpw_init(&c->dec.tcp, c->net->cfg.max_message_size);
    rc_conn_tcp_keepalive(c);
    rc_conn_keepalive_start(c);
}

const rc_proto rc_tcp_proto = {
    .name = "tcp", .start = start, .input = on_input, .timer = on_timer, .end = end,
    .timed = true, .half_close = true,
};
