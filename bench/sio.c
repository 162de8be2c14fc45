/* sio.c — the client side of Socket.IO v5 over Engine.IO v4, websocket transport only.
 *
 * Enough of the protocol for the Socket.IO peer (bench/peers/sio_server.mjs), written from the
 * specifications (socket.io-protocol v5, engine.io-protocol v4):
 *
 *   GET /socket.io/?EIO=4&transport=websocket   (conn.c: the WebSocket upgrade, no polling)
 *   <- 0{"sid":...,"pingInterval":...}           Engine.IO open
 *   -> 40                                        Socket.IO CONNECT to the main namespace "/"
 *   <- 40{"sid":...}                             connected: the scenario's open callback runs
 *   <- 2   -> 3                                  Engine.IO ping / pong (the server pings)
 *   -> 42["m",{...}]   <- 42["m",{...}]          an "m" event whose one argument is a room
 *                                                protocol object (join, publish, joined, ...)
 *   <- 44{...}                                   CONNECT_ERROR; <- 41 DISCONNECT; <- 1 close
 *
 * Each Engine.IO packet is one WebSocket text frame. The scenarios see only the objects: an
 * event's argument goes to the text callback exactly as a plain WebSocket message would, and
 * rb_conn_send_text wraps what they send. Other events, binary packets and acks are not used
 * by the peer and count as malformed.
 */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

static const char EVENT_HEAD[] = "42[\"m\",";   /* what every event of ours starts with */
#define EVENT_HEAD_LEN (sizeof(EVENT_HEAD) - 1)

static char *wrap_buf;     /* scratch for 42["m",<object>] */
static size_t wrap_cap;

void rb__sio_put_text(struct rb_conn *c, const char *p, size_t n)
{
    size_t need = EVENT_HEAD_LEN + n + 1;
    if (need > wrap_cap) {
        size_t cap = wrap_cap ? wrap_cap : 4096;
        while (cap < need)
            cap *= 2;
        char *b = realloc(wrap_buf, cap);
        if (!b)
            abort();
        wrap_buf = b;
        wrap_cap = cap;
    }
    memcpy(wrap_buf, EVENT_HEAD, EVENT_HEAD_LEN);
    memcpy(wrap_buf + EVENT_HEAD_LEN, p, n);
    wrap_buf[EVENT_HEAD_LEN + n] = ']';
    rb__conn_put_frame(c, 0x1, wrap_buf, need);
}

static void malformed(struct rb_conn *c)
{
    rb_frame_errors++;
    rb__conn_end(c, RB_END_ERROR, "malformed Socket.IO packet");
}

void rb__sio_input(struct rb_conn *c, const char *p, size_t n)
{
    if (n == 0) {
        malformed(c);
        return;
    }
    switch (p[0]) {
    case '0': /* Engine.IO open: connect to the main namespace */
        if (c->sio_state != 0)
            break;
        c->sio_state = 1;
        rb__conn_put_frame(c, 0x1, "40", 2);
        return;
    case '1': /* Engine.IO close */
        rb__conn_end(c, RB_END_EOF, "");
        return;
    case '2': /* ping: pong with the same payload (none for the heartbeat) */
        if (n == 1) {
            rb__conn_put_frame(c, 0x1, "3", 1);
            return;
        }
        break;
    case '4': /* an Engine.IO message: a Socket.IO packet */
        if (n >= 2 && p[1] == '0' && c->sio_state == 1) {
            c->sio_state = 2;
            rb__conn_open(c);
            return;
        }
        if (n >= EVENT_HEAD_LEN + 2 && c->sio_state == 2 &&
            !memcmp(p, EVENT_HEAD, EVENT_HEAD_LEN) && p[n - 1] == ']') {
            if (c->h && c->h->text)
                c->h->text(c, p + EVENT_HEAD_LEN, n - EVENT_HEAD_LEN - 1);
            return;
        }
        if (n >= 2 && (p[1] == '1' || p[1] == '4')) { /* DISCONNECT, CONNECT_ERROR */
            rb__conn_end(c, RB_END_ERROR, p[1] == '1' ? "Socket.IO disconnect"
                                                      : "Socket.IO connect error");
            return;
        }
        break;
    default:
        break;
    }
    malformed(c);
}
