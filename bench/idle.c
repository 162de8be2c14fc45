/* idle.c — the idle scenario: many connections joined to rooms, doing nothing.
 *
 * It answers two questions: how much server memory one idle, joined connection costs (RSS
 * after the connections are up minus RSS before, divided by their number; kernel socket buffers
 * are not in RSS and are not counted), and whether idle connections stay usable — after the idle
 * period, which by default spans a server ping interval so keepalive is exercised, one member in
 * each of a sample of rooms publishes and every member of those rooms must receive it.
 *
 * The number of connections is bounded by RLIMIT_NOFILE: the generator raises its soft limit to
 * the hard one and, unless told otherwise, opens as many connections as leave headroom under it.
 * The server needs as many descriptors, so its limit must be as high (bench/run.sh sees to it).
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct iconn {
    struct rb_conn conn;    /* must stay first */
    uint32_t room;          /* room index */
    bool joined;            /* got its joined */
    bool dead;              /* connection ended */
    int64_t client_id;      /* from joined */
    int64_t last_id;        /* last msg_id seen (starts at joined.last_msg_id) */
    uint32_t got;           /* sample messages received */
};

static struct {
    const struct rb_opts *o;
    struct rb_result *r;
    struct iconn *c;
    uint32_t n, joined, failed, dropped;
    uint32_t rs;                 /* members per room */
    bool sampling, closing;
    uint64_t sample_sent_at;
    char names_prefix[48];
} I;

static void room_name(uint32_t room, char *out, size_t n)
{
    snprintf(out, n, "%s-%u", I.names_prefix, room);
}

static void i_open(struct rb_conn *c)
{
    struct iconn *x = (struct iconn *)c;
    char name[80], buf[160];
    room_name(x->room, name, sizeof(name));
    size_t n = rb_msg_join(buf, sizeof(buf), name);
    rb_conn_send_text(c, buf, n);
}

static void i_text(struct rb_conn *c, const char *p, size_t n)
{
    struct iconn *x = (struct iconn *)c;
    struct rb_msg g;
    if (rb_msg_scan(p, n, &g) != 0) {
        I.r->errors++;
        rb_result_fail(I.r, "malformed JSON from server: %.60s", p);
        return;
    }
    if (rb_msg_is(g.type, g.type_len, "joined")) {
        x->joined = true;
        x->client_id = g.client_id;
        x->last_id = g.last_msg_id;
        I.joined++;
        if (g.last_msg_id < 0 || g.client_id < 0) {
            I.r->errors++;
            rb_result_fail(I.r, "joined without client_id or last_msg_id");
        }
        return;
    }
    if (!rb_msg_is(g.type, g.type_len, "b")) {
        I.r->errors++;
        rb_result_fail(I.r, "unexpected message: %.60s", p);
        return;
    }
    if (!I.sampling) {
        I.r->order_violations++;
        return;
    }
    if (g.msg_id == x->last_id)
        I.r->duplicates++;
    else if (g.msg_id != x->last_id + 1)
        I.r->order_violations++;
    x->last_id = g.msg_id;
    /* The publisher of room k is connection k * room_size: check attribution. */
    uint32_t pub = x->room * I.rs;
    if (g.client_id != I.c[pub].client_id)
        I.r->order_violations++;
    x->got++;
    I.r->deliveries++;
    uint64_t now = rb_now_ns();
    if (g.t > 0)
        rb_hist_add(&I.r->lat, now - (uint64_t)g.t);
}

static void i_closed(struct rb_conn *c, enum rb_end why)
{
    struct iconn *x = (struct iconn *)c;
    x->dead = true;
    if (I.closing)
        return;
    if (!x->joined)
        I.failed++;
    else
        I.dropped++;
    I.r->errors++;
    rb_result_fail(I.r, "connection %u ended while idle: %s %s", (unsigned)(x - I.c),
                   why == RB_END_ERROR ? "error" : why == RB_END_EOF ? "EOF" : "close frame",
                   c->errmsg);
}

static const struct rb_handler ihandler = {i_open, i_text, i_closed};

void rb_run_idle(const struct rb_opts *o, struct rb_result *r)
{
    memset(&I, 0, sizeof(I));
    I.o = o;
    I.r = r;
    long lim = rb_raise_nofile();
    uint32_t n = o->conns;
    if (!n) /* headroom for the generator's own descriptors */
        n = lim > 2000 ? (uint32_t)(lim / 1000 * 1000 - 1000) : (uint32_t)(lim / 2);
    if ((long)n + 50 > lim) {
        rb_result_fail(r, "%u connections need more than RLIMIT_NOFILE %ld", n, lim);
        rb_result_print(r, o->quiet);
        return;
    }
    uint32_t rs = o->room_size ? o->room_size : 20;
    uint32_t rooms = (n + rs - 1) / rs;
    I.n = n;
    I.rs = rs;
    I.c = calloc(n, sizeof(*I.c));
    snprintf(I.names_prefix, sizeof(I.names_prefix), "idle-%d", (int)getpid());
    rb_result_num(r, "conns", n);
    rb_result_num(r, "room_size", rs);
    rb_result_num(r, "fd_limit", (double)lim);

    struct rb_proc_sample before, after;
    rb_proc_sample(r->server_pid, &before);
    rb_result_begin(r);
    uint64_t t0 = rb_now_ns(), until = t0 + 120000000000ull;
    uint32_t started = 0, conc = o->concurrency ? o->concurrency : 256;
    while (I.joined + I.failed < n) {
        while (started < n && started - I.joined - I.failed < conc) {
            struct iconn *x = &I.c[started];
            x->conn.fd = -1;
            x->room = started / rs;
            int rc = rb_conn_start(&x->conn, &ihandler, &o->target, RB_TR_WS,
                                   rb_src_addr(started), 0);
            started++;
            if (rc < 0) {
                I.failed++;
                x->dead = true;
                r->errors++;
                rb_result_fail(r, "connect %u: %s", started - 1, strerror(-rc));
            }
        }
        if (rb_now_ns() > until) {
            rb_result_fail(r, "setup timed out: %u of %u joined", I.joined, n);
            break;
        }
        rb_loop_once(100000000);
        if (I.failed > 0 && I.failed >= 10)
            break; /* the server refuses: no point in trying 19,000 times */
    }
    double setup_s = (double)(rb_now_ns() - t0) / 1e9;
    rb_result_num(r, "joined", I.joined);
    rb_result_num(r, "setup_s", setup_s);
    rb_result_num(r, "connects_per_s", setup_s > 0 ? I.joined / setup_s : 0);

    /* Let the server settle (lazily freed handshake buffers), then weigh it. */
    uint64_t settle = rb_now_ns() + 1000000000ull;
    while (rb_now_ns() < settle)
        rb_loop_once(100000000);
    rb_proc_sample(r->server_pid, &after);
    if (before.ok && after.ok && I.joined) {
        double per = (double)(after.rss_kb - before.rss_kb) * 1024.0 / I.joined;
        rb_result_num(r, "rss_before_kb", (double)before.rss_kb);
        rb_result_num(r, "rss_loaded_kb", (double)after.rss_kb);
        rb_result_num(r, "rss_per_conn_bytes", per);
    }

    /* Idle: the loop keeps answering the server's pings. */
    uint64_t wake = rb_now_ns() + (uint64_t)(o->idle_time * 1e9);
    while (rb_now_ns() < wake)
        rb_loop_once(100000000);

    /* Liveness sample: the first member of `sample` rooms spread over all rooms publishes. */
    uint32_t sample = o->sample ? o->sample : 100;
    if (sample > rooms)
        sample = rooms;
    uint64_t want = 0;
    I.sampling = true;
    char buf[256];
    uint64_t now = rb_now_ns();
    for (uint32_t k = 0; k < sample && !r->failed; k++) {
        uint32_t room = (uint32_t)((uint64_t)k * rooms / sample);
        struct iconn *p = &I.c[room * rs];
        if (p->dead || !p->joined)
            continue;
        size_t len = rb_msg_publish(buf, sizeof(buf), o->size, 0, 0, now);
        rb_conn_send_text(&p->conn, buf, len);
        r->published++;
        for (uint32_t i = room * rs; i < n && i < (room + 1) * rs; i++)
            want += !I.c[i].dead && I.c[i].joined;
    }
    uint64_t deadline = rb_now_ns() + 10000000000ull;
    while (r->deliveries < want && rb_now_ns() < deadline && !r->failed)
        rb_loop_once(50000000);
    if (r->deliveries < want)
        r->losses += want - r->deliveries;
    rb_result_num(r, "sample_rooms", sample);
    rb_result_num(r, "sample_expected", (double)want);
    rb_result_end(r);
    if (I.joined < n)
        rb_result_fail(r, "only %u of %u connections joined", I.joined, n);

    I.closing = true;
    for (uint32_t i = 0; i < n; i++)
        if (I.c[i].conn.fd >= 0)
            rb_conn_send_close(&I.c[i].conn, 1000);
    uint64_t stop = rb_now_ns() + 5000000000ull;
    for (;;) {
        uint32_t live = 0;
        for (uint32_t i = 0; i < n; i++)
            live += I.c[i].conn.fd >= 0;
        if (!live || rb_now_ns() > stop)
            break;
        rb_loop_once(50000000);
    }
    for (uint32_t i = 0; i < n; i++)
        rb_conn_abort(&I.c[i].conn);
    free(I.c);
}
