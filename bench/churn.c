/* churn.c — the churn scenario: whole client lifetimes, as many per second as possible.
 *
 * K sessions run at once; each goes connect -> upgrade -> join -> publish -> (its own message
 * comes back) -> leave -> (left) -> close, then its slot starts a new session on a fresh socket
 * from the next source address. Sessions share a few rooms, so every session also receives the
 * messages of the others in its room while it is a member, and those must be consecutive from
 * its joined.last_msg_id + 1 with nothing after left. What is measured is completed sessions per
 * second and server CPU per session, which is where handshake parsing, room creation and
 * destruction and connection teardown cost shows.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum sstate { S_NEW, S_JOINING, S_WAIT_OWN, S_LEAVING, S_CLOSING, S_DONE };

struct session {
    struct rb_conn conn;    /* must stay first */
    uint32_t slot;          /* index among the K concurrent sessions: its "s" */
    uint64_t gen;           /* sessions this slot has run: its "q" */
    enum sstate st;         /* where in its lifetime it is */
    int64_t client_id;      /* from joined */
    int64_t last_id;        /* last msg_id seen in the room */
    uint64_t t_start;       /* when connect() was called */
    bool restart;           /* ended; start the next session from the main loop */
};

static struct {
    const struct rb_opts *o;
    struct rb_result *r;
    struct session *s;
    uint32_t k, rooms;
    uint64_t completed, src;
    bool stopping;
    struct rb_hist life;    /* whole session time, ns */
    char prefix[48];
} C;

static void room_of(const struct session *x, char *out, size_t n)
{
    snprintf(out, n, "%s-%u", C.prefix, x->slot % C.rooms);
}

static void bad(struct session *x, const char *why)
{
    C.r->errors++;
    rb_result_fail(C.r, "session %u/%llu: %s", x->slot, (unsigned long long)x->gen, why);
    rb_conn_abort(&x->conn);
    x->restart = true;
}

static void c_open(struct rb_conn *c)
{
    struct session *x = (struct session *)c;
    char room[80], buf[160];
    room_of(x, room, sizeof(room));
    rb_conn_send_text(c, buf, rb_msg_join(buf, sizeof(buf), room));
    x->st = S_JOINING;
}

static void c_text(struct rb_conn *c, const char *p, size_t n)
{
    struct session *x = (struct session *)c;
    struct rb_msg g;
    char buf[512];
    if (rb_msg_scan(p, n, &g) != 0) {
        bad(x, "malformed JSON from server");
        return;
    }
    if (rb_msg_is(g.type, g.type_len, "joined")) {
        if (x->st != S_JOINING || g.last_msg_id < 0) {
            bad(x, "unexpected joined");
            return;
        }
        x->client_id = g.client_id;
        x->last_id = g.last_msg_id;
        x->st = S_WAIT_OWN;
        uint64_t now = rb_now_ns();
        rb_conn_send_text(c, buf, rb_msg_publish(buf, sizeof(buf), C.o->size, x->slot, x->gen, now));
        C.r->published++;
        return;
    }
    if (rb_msg_is(g.type, g.type_len, "left")) {
        if (x->st != S_LEAVING) {
            bad(x, "unexpected left");
            return;
        }
        x->st = S_CLOSING;
        rb_conn_send_close(c, 1000);
        return;
    }
    if (!rb_msg_is(g.type, g.type_len, "b")) {
        bad(x, "unexpected message");
        return;
    }
    if (x->st != S_WAIT_OWN && x->st != S_LEAVING) {
        C.r->order_violations++;   /* before joined or after left */
        return;
    }
    if (g.msg_id == x->last_id)
        C.r->duplicates++;
    else if (g.msg_id != x->last_id + 1)
        C.r->order_violations++;
    if (g.msg_id > x->last_id)
        x->last_id = g.msg_id;
    C.r->deliveries++;
    uint64_t now = rb_now_ns();
    if (g.t > 0)
        rb_hist_add(&C.r->lat, now > (uint64_t)g.t ? now - (uint64_t)g.t : 0);
    if (g.s == (int64_t)x->slot && g.q == (int64_t)x->gen && g.client_id == x->client_id) {
        if (x->st != S_WAIT_OWN) {
            C.r->duplicates++;
            return;
        }
        room_of(x, buf + 256, 256);
        rb_conn_send_text(c, buf, rb_msg_leave(buf, 256, buf + 256));
        x->st = S_LEAVING;
    }
}

static void c_closed(struct rb_conn *c, enum rb_end why)
{
    struct session *x = (struct session *)c;
    x->restart = true;
    if (x->st == S_CLOSING && why != RB_END_ERROR) {
        C.completed++;
        rb_hist_add(&C.life, rb_now_ns() - x->t_start);
        x->st = S_DONE;
        return;
    }
    C.r->errors++;
    rb_result_fail(C.r, "session %u ended in state %d: %s", x->slot, (int)x->st,
                   why == RB_END_ERROR ? c->errmsg : why == RB_END_EOF ? "EOF" : "close frame");
}

static const struct rb_handler chandler = {c_open, c_text, c_closed};

static void start(struct session *x)
{
    x->restart = false;
    x->gen++;
    x->st = S_NEW;
    x->t_start = rb_now_ns();
    int rc = rb_conn_start(&x->conn, &chandler, &C.o->target, RB_TR_WS,
                           rb_src_addr((uint32_t)C.src++), 0);
    if (rc < 0) {
        C.r->errors++;
        rb_result_fail(C.r, "connect: %s", strerror(-rc));
        x->restart = true;
    }
}

void rb_run_churn(const struct rb_opts *o, struct rb_result *r)
{
    memset(&C, 0, sizeof(C));
    C.o = o;
    C.r = r;
    C.k = o->concurrency ? o->concurrency : 64;
    C.rooms = C.k / 4 ? C.k / 4 : 1;
    C.s = calloc(C.k, sizeof(*C.s));
    rb_hist_init(&C.life);
    snprintf(C.prefix, sizeof(C.prefix), "churn-%d", (int)getpid());
    rb_result_num(r, "concurrency", C.k);
    rb_result_num(r, "rooms", C.rooms);
    rb_result_num(r, "duration", o->duration);

    rb_result_begin(r);
    uint64_t t0 = rb_now_ns(), end = t0 + (uint64_t)(o->duration * 1e9);
    for (uint32_t i = 0; i < C.k; i++) {
        C.s[i].slot = i;
        C.s[i].conn.fd = -1;
        start(&C.s[i]);
    }
    uint64_t stop_by = 0;
    for (;;) {
        uint64_t now = rb_now_ns();
        bool live = false;
        for (uint32_t i = 0; i < C.k; i++) {
            struct session *x = &C.s[i];
            /* A session stuck for 10 s is a failure, not something to wait for. */
            if (x->conn.fd >= 0 && now - x->t_start > 10000000000ull)
                bad(x, "no progress for 10 s");
            if (x->restart && now < end && !r->failed)
                start(x);
            live |= x->conn.fd >= 0;
        }
        if (now >= end || r->failed) {
            if (!stop_by)
                stop_by = now + 10000000000ull;
            if (!live || now > stop_by)
                break;
        }
        rb_loop_once(now < end ? (int64_t)(end - now) : 50000000);
    }
    rb_result_end(r);
    for (uint32_t i = 0; i < C.k; i++)
        rb_conn_abort(&C.s[i].conn);
    rb_result_num(r, "sessions", (double)C.completed);
    rb_result_num(r, "sessions_per_s", r->wall_s > 0 ? (double)C.completed / r->wall_s : 0);
    double cpu = r->srv1.cpu_s - r->srv0.cpu_s;
    if (r->srv0.ok && r->srv1.ok && C.completed)
        rb_result_num(r, "server_cpu_us_per_session", cpu * 1e6 / (double)C.completed);
    rb_result_num(r, "session_p50_us", (double)rb_hist_quantile(&C.life, 0.5) / 1e3);
    rb_result_num(r, "session_p99_us", (double)rb_hist_quantile(&C.life, 0.99) / 1e3);
    free(C.s);
}
