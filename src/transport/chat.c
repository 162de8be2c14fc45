/* chat.c — the chat port; see chat.h and docs/tcp.md. */
#include "transport/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/chatsplit.h"
#include "codec/json.h"
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

/* An error line, counted; returns -1 (a request answered with an error, tcp.h). */
static int error(rc_conn *c, enum rc_nerr kind, const char *why)
{
    c->net->stats.err[kind]++;
    say(c, "error", why, false);
    return -1;
}

/* One object from the client: {"user":U,"text":T} (other members are ignored) becomes the
 * publish {"type":"chat","user":U,"text":T}, the strings copied as the client wrote them
 * (valid JSON string literals already). */
static int on_object(rc_conn *c, const char *p, size_t n)
{
    rc_json_top q;
    rc_json_span user, text;
    if (!rc_utf8_valid((const uint8_t *)p, n))
        return error(c, RC_NERR_CHAT_BAD_OBJECT, "the message is not UTF-8");
    if (rc_json_scan(p, n, 0, &q) != RC_JSON_OK)
        return error(c, RC_NERR_CHAT_BAD_OBJECT, "not a JSON object");
    if (!rc_json_member(p, n, "user", &user) || user.type != RC_JSON_STRING ||
        !rc_json_member(p, n, "text", &text) || text.type != RC_JSON_STRING)
        return error(c, RC_NERR_CHAT_BAD_OBJECT,
                     "a message is {\"user\":\"...\",\"text\":\"...\"}");
    static const char a[] = "{\"type\":\"chat\",\"user\":", b[] = ",\"text\":";
    size_t len = sizeof(a) - 1 + user.len + sizeof(b) - 1 + text.len + 1;
    char *msg = malloc(len);
    if (!msg) {
        rc_conn_end(c, RC_WS_CLOSE_INTERNAL, "out of memory", true);
        return -1;
    }
    char *w = msg;
    memcpy(w, a, sizeof(a) - 1);
    w += sizeof(a) - 1;
    memcpy(w, user.p, user.len);
    w += user.len;
    memcpy(w, b, sizeof(b) - 1);
    w += sizeof(b) - 1;
    memcpy(w, text.p, text.len);
    w += text.len;
    *w = '}';
    c->net->stats.messages_in++;
    int r = c->on_message(c, RC_WS_TEXT, msg, len);
    free(msg);
    return r;
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
        if (kind == RC_CHATSPLIT_GARBAGE)
            rc_tcp_count_reply(c, error(c, RC_NERR_CHAT_GARBAGE, "expected a JSON object like "
                                                                 "{\"user\":\"ann\",\"text\":\"hi\"}"));
        else if (kind == RC_CHATSPLIT_OBJECT)
            rc_tcp_count_reply(c, on_object(c, obj, len));
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
    .half_close = true,
};
