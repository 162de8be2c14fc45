/* chat.c — the chat port; see chat.h and docs/tcp.md. */
#include "transport/chat.h"

#include <stdio.h>
#include <string.h>

#include "codec/chatsplit.h"
#include "codec/utf8.h"
#include "codec/wsframe.h"
#include "transport/tcp.h"

/* Sends "[roomcast] <what>: <why>\n" (the only way this client can be told anything). */
static void say(rc_conn *c, const char *what, const char *why, bool last)
{
    char line[320];
    int n = snprintf(line, sizeof(line), "[roomcast] %s: %s\n", what, why ? why : "");
    if (n < 0) return;
    if ((size_t)n >= sizeof(line)) { /* a long reason: cut, still one line */
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    rc_conn_give(c, rc_msg_copy(line, (size_t)n), last);
}

int rc_chat_error(rc_conn *c, const char *why)
{
    say(c, "error", why, false);
    return -1;
}

static void end(rc_conn *c, uint16_t code, const char *reason, bool fail)
{
    rc_conn_closing(c, true);
    say(c, "closing", reason, true);
}

static size_t on_input(rc_conn *c, char *p, size_t n)
{
    size_t used = 0;
    while (used < n && c->state == RC_CONN_OPEN) {
        int kind;
        size_t len;
        long k = rc_chatsplit_next(&c->dec.chat, p + used, n - used, &kind, &len);
        if (k == 0) break;
        if (k < 0) {
            c->net->stats.err[RC_NERR_CHAT_TOO_BIG]++;
            rc_conn_end(c, RC_WS_CLOSE_TOO_BIG, "message too big", true);
            return n;
        }
        const char *obj = p + used;
        used += (size_t)k;
        if (kind == RC_CHATSPLIT_GARBAGE) {
            c->net->stats.err[RC_NERR_CHAT_GARBAGE]++;
            rc_tcp_count_reply(c, rc_chat_error(c, "expected a JSON object like "
                                                   "{\"user\":\"ann\",\"text\":\"hi\"}"));
        } else if (kind == RC_CHATSPLIT_OBJECT) {
            c->net->stats.messages_in++;
            int r = rc_utf8_valid((const uint8_t *)obj, len)
                        ? c->on_message(c, RC_WS_TEXT, obj, len)
                        : rc_chat_error(c, "the message is not UTF-8");
            rc_tcp_count_reply(c, r);
        }
    }
    return c->state == RC_CONN_OPEN ? used : n;
}

static void start(rc_conn *c)
{
    rc_chatsplit_init(&c->dec.chat, c->net->cfg.max_message_size);
    rc_conn_tcp_keepalive(c);
}

const rc_proto rc_chat_proto = {
    .name = "chat", .start = start, .input = on_input, .end = end, .timed = true,
};
