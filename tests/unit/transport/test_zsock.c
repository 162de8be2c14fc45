/* Tests src/transport/zsock.c: a ROUTER on the loop against DEALER and REQ peers in the same
 * process over loopback TCP — whole messages, the frame and size limits, replies, EHOSTUNREACH
 * and EAGAIN on send, and the end of a connection reported with its serial. */
#include "transport/zsock.h"

#include <errno.h>
#include <zmq.h>

#include "unit.h"

/* What the callbacks saw. */
static struct {
    int msgs;                    /* messages delivered */
    size_t n;                    /* frames of the last one */
    char frame[8][64];           /* its frames (truncated), NUL-terminated */
    size_t flen[8];              /* their lengths */
    uint64_t conn;               /* its connection serial */
    size_t nparts, bytes;        /* its frames received and payload bytes */
    uint64_t wire;               /* its wire size */
    int gone;                    /* connections reported gone */
    uint64_t gone_conn;          /* the last one */
    bool echo;                   /* answer every message with its own frames */
} seen;

static void on_msg(rc_zsock *zs, const rc_zmsg *m, void *arg)
{
    seen.msgs++;
    seen.n = m->n;
    seen.conn = m->conn;
    seen.nparts = m->nparts;
    seen.bytes = m->bytes;
    seen.wire = m->wire;
    for (size_t i = 0; i < m->n && i < 8; i++) {
        size_t l = m->f[i].len < 63 ? m->f[i].len : 63;
        memcpy(seen.frame[i], m->f[i].data, l);
        seen.frame[i][l] = 0;
        seen.flen[i] = m->f[i].len;
    }
    if (seen.echo) rc_zsock_send(zs, m->f, m->n);
}

static int drained, configured;

static void on_drained(rc_zsock *zs, void *arg) { drained++; }

static int configure(void *z, void *arg)
{
    configured++;
    int hwm = 7;
    return zmq_setsockopt(z, ZMQ_RCVHWM, &hwm, sizeof(hwm)) < 0 ? -zmq_errno() : 0;
}

static void on_gone(rc_zsock *zs, uint64_t conn, void *arg)
{
    seen.gone++;
    seen.gone_conn = conn;
}

/* run_until runs the loop until *flag reaches want or a second has passed. */
typedef struct waiter {
    rc_timer t;
    const int *flag;
    int want;
    uint64_t deadline;
} waiter;

static void check_wait(rc_loop *loop, rc_timer *t)
{
    waiter *w = (waiter *)t;
    if (*w->flag >= w->want || rc_loop_now(loop) > w->deadline) rc_loop_stop(loop);
    else rc_timer_start(loop, t, rc_loop_now(loop) + RC_NS_PER_MS);
}

static void run_until(rc_loop *loop, const int *flag, int want)
{
    waiter w = {.flag = flag, .want = want, .deadline = rc_clock_ns() + RC_NS_PER_SEC};
    rc_timer_init(&w.t, check_wait);
    rc_timer_start(loop, &w.t, rc_loop_now(loop));
    rc_loop_run(loop);
    rc_timer_stop(loop, &w.t);
}

typedef struct fixture {
    rc_loop *loop;
    void *ctx;
    rc_zsock *zs;
    void *peer;
} fixture;

static bool setup(fixture *fx, int peer_type, size_t max_frames, size_t max_bytes, int sndhwm)
{
    memset(&seen, 0, sizeof(seen));
    fx->loop = rc_loop_new();
    fx->ctx = zmq_ctx_new();
    rc_zsock_opts o = {.zctx = fx->ctx, .bind = "127.0.0.1", .port = 0, .max_frame = 1024,
                       .max_frames = max_frames, .max_bytes = max_bytes, .sndhwm = sndhwm,
                       .name = "test", .on_msg = on_msg, .on_gone = on_gone};
    fx->zs = rc_zsock_new(fx->loop, &o);
    if (!fx->zs) return false;
    fx->peer = zmq_socket(fx->ctx, peer_type);
    int zero = 0, tmo = 1000;
    zmq_setsockopt(fx->peer, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(fx->peer, ZMQ_RCVTIMEO, &tmo, sizeof(tmo));
    if (peer_type == ZMQ_DEALER) zmq_setsockopt(fx->peer, ZMQ_ROUTING_ID, "peer1", 5);
    return zmq_connect(fx->peer, rc_zsock_endpoint(fx->zs)) == 0;
}

static void teardown(fixture *fx)
{
    if (fx->peer) zmq_close(fx->peer);
    rc_zsock_free(fx->zs);
    zmq_ctx_term(fx->ctx);
    rc_loop_free(fx->loop);
}

static void sendv(void *s, const char *const *f, int n)
{
    for (int i = 0; i < n; i++) zmq_send(s, f[i], strlen(f[i]), i + 1 < n ? ZMQ_SNDMORE : 0);
}

TEST(frames_whole_and_reply)
{
    fixture fx = {0};
    CHECK(setup(&fx, ZMQ_DEALER, 8, 0, 0));
    CHECK(rc_zsock_port(fx.zs) != 0);
    const char *const msg[] = {"", "MDPW01", "\x01", "echo"};
    sendv(fx.peer, msg, 4);
    run_until(fx.loop, &seen.msgs, 1);
    CHECK_EQ_INT(seen.msgs, 1);
    CHECK_EQ_INT(seen.n, 5); /* identity + 4 */
    CHECK_MEM(seen.frame[0], seen.flen[0], "peer1", 5);
    CHECK_EQ_INT(seen.flen[1], 0);
    CHECK_MEM(seen.frame[2], seen.flen[2], "MDPW01", 6);
    CHECK_MEM(seen.frame[4], seen.flen[4], "echo", 4);
    CHECK(seen.conn != 0);
    CHECK(rc_zsock_conn_live(fx.zs, seen.conn));
    /* a reply reaches the DEALER whole */
    rc_zframe out[] = {{"peer1", 5}, {"", 0}, {"reply", 5}};
    CHECK_EQ_INT(rc_zsock_send(fx.zs, out, 3), 0);
    char buf[16];
    CHECK_EQ_INT(zmq_recv(fx.peer, buf, sizeof(buf), 0), 0);
    CHECK_EQ_INT(zmq_recv(fx.peer, buf, sizeof(buf), 0), 5);
    CHECK_MEM(buf, 5, "reply", 5);
    const rc_zsock_stats *st = rc_zsock_stats_of(fx.zs);
    CHECK_EQ_INT(st->msgs_in, 1);
    CHECK_EQ_INT(st->msgs_out, 1);
    CHECK_EQ_INT(st->live, 1);
    teardown(&fx);
}

TEST(req_peer_round_trip)
{
    /* the seed's worker is a REQ: the ROUTER sees [id][""][READY], answers [id][""][...] */
    fixture fx = {0};
    CHECK(setup(&fx, ZMQ_REQ, 8, 0, 0));
    seen.echo = true;
    zmq_send(fx.peer, "READY", 5, 0);
    run_until(fx.loop, &seen.msgs, 1);
    CHECK_EQ_INT(seen.n, 3);
    CHECK_EQ_INT(seen.flen[1], 0);
    CHECK_MEM(seen.frame[2], seen.flen[2], "READY", 5);
    char buf[16];
    CHECK_EQ_INT(zmq_recv(fx.peer, buf, sizeof(buf), 0), 5);
    CHECK_MEM(buf, 5, "READY", 5);
    teardown(&fx);
}

TEST(limits_drop_message_not_peer)
{
    fixture fx = {0};
    CHECK(setup(&fx, ZMQ_DEALER, 4, 16, 0));
    const char *const many[] = {"a", "b", "c", "d", "e"};   /* 6 frames with the identity */
    const char *const big[] = {"0123456789", "0123456789"}; /* 20 bytes > 16 */
    const char *const ok[] = {"", "fine"};
    sendv(fx.peer, many, 5);
    sendv(fx.peer, big, 2);
    sendv(fx.peer, ok, 2);
    run_until(fx.loop, &seen.msgs, 1);
    CHECK_EQ_INT(seen.msgs, 1);
    CHECK_MEM(seen.frame[2], seen.flen[2], "fine", 4);
    const rc_zsock_stats *st = rc_zsock_stats_of(fx.zs);
    CHECK_EQ_INT(st->dropped[RC_ZSOCK_DROP_FRAMES], 1);
    CHECK_EQ_INT(st->dropped[RC_ZSOCK_DROP_BYTES], 1);
    CHECK_EQ_INT(seen.gone, 0);
    teardown(&fx);
}

TEST(oversized_frame_cuts_connection)
{
    /* a frame over ZMQ_MAXMSGSIZE (1024 here): libzmq drops the connection; it is reported */
    fixture fx = {0};
    CHECK(setup(&fx, ZMQ_DEALER, 8, 0, 0));
    const char *const hello[] = {"", "hi"};
    sendv(fx.peer, hello, 2);
    run_until(fx.loop, &seen.msgs, 1);
    uint64_t conn = seen.conn;
    static char huge[4096];
    zmq_send(fx.peer, huge, sizeof(huge), 0);
    run_until(fx.loop, &seen.gone, 1);
    CHECK_EQ_INT(seen.msgs, 1);
    CHECK_EQ_INT(seen.gone, 1);
    CHECK_EQ_INT(seen.gone_conn, conn);
    CHECK(!rc_zsock_conn_live(fx.zs, conn));
    teardown(&fx);
}

TEST(unreachable_and_gone)
{
    fixture fx = {0};
    CHECK(setup(&fx, ZMQ_DEALER, 8, 0, 0));
    rc_zframe out[] = {{"nobody", 6}, {"x", 1}};
    CHECK_EQ_INT(rc_zsock_send(fx.zs, out, 2), -EHOSTUNREACH);
    CHECK_EQ_INT(rc_zsock_stats_of(fx.zs)->send_unreachable, 1);
    const char *const hello[] = {"", "hi"};
    sendv(fx.peer, hello, 2);
    run_until(fx.loop, &seen.msgs, 1);
    uint64_t conn = seen.conn;
    CHECK(conn != 0);
    zmq_close(fx.peer);
    fx.peer = NULL;
    run_until(fx.loop, &seen.gone, 1);
    CHECK_EQ_INT(seen.gone, 1);
    CHECK_EQ_INT(seen.gone_conn, conn);
    CHECK_EQ_INT(rc_zsock_stats_of(fx.zs)->live, 0);
    /* once libzmq has removed the peer, sends to it fail as unreachable */
    rc_zframe again[] = {{"peer1", 5}, {"x", 1}};
    CHECK_EQ_INT(rc_zsock_send(fx.zs, again, 2), -EHOSTUNREACH);
    teardown(&fx);
}

TEST(full_pipe_is_eagain)
{
    /* a peer that does not read: the ROUTER's pipe (SNDHWM 2) and the TCP buffers fill, then a
     * send fails with EAGAIN and nothing of that message is sent */
    fixture fx = {0};
    CHECK(setup(&fx, ZMQ_DEALER, 8, 0, 2));
    int one = 1;
    zmq_setsockopt(fx.peer, ZMQ_RCVHWM, &one, sizeof(one));
    const char *const hello[] = {"", "hi"};
    sendv(fx.peer, hello, 2);
    run_until(fx.loop, &seen.msgs, 1);
    static char chunk[256 * 1024];
    rc_zframe out[] = {{"peer1", 5}, {chunk, sizeof(chunk)}};
    int rc = 0, i;
    for (i = 0; i < 2000 && rc == 0; i++) rc = rc_zsock_send(fx.zs, out, 2);
    CHECK_EQ_INT(rc, -EAGAIN);
    CHECK(i > 1);
    CHECK_EQ_INT(rc_zsock_stats_of(fx.zs)->send_again, 1);
    teardown(&fx);
}

TEST(truncate_configure_drained)
{
    /* NetSync's use: 3 frames kept, the rest counted; a configure hook before the bind; the
     * drained hook after every drain; sizes and wire bytes of the whole message */
    memset(&seen, 0, sizeof(seen));
    drained = configured = 0;
    rc_loop *loop = rc_loop_new();
    void *ctx = zmq_ctx_new();
    rc_zsock_opts o = {.zctx = ctx, .bind = "127.0.0.1", .max_frames = 3, .truncate = true,
                       .coalesce_ns = RC_NS_PER_MS, .name = "test", .on_msg = on_msg,
                       .on_drained = on_drained, .configure = configure};
    rc_zsock *zs = rc_zsock_new(loop, &o);
    CHECK(zs);
    CHECK_EQ_INT(configured, 1);
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_connect(d, rc_zsock_endpoint(zs));
    const char *const five[] = {"room", "payload", "x", "y"};
    sendv(d, five, 4);
    run_until(loop, &seen.msgs, 1);
    CHECK_EQ_INT(seen.msgs, 1);
    CHECK_EQ_INT(seen.n, 3);
    CHECK_MEM(seen.frame[2], seen.flen[2], "payload", 7);
    CHECK_EQ_INT(seen.nparts, 5);
    CHECK_EQ_INT(seen.bytes, 4 + 7 + 1 + 1);
    CHECK_EQ_INT(seen.wire, 13 + 4 * 2);
    CHECK(drained >= 1);
    CHECK_EQ_INT(rc_zsock_stats_of(zs)->dropped[RC_ZSOCK_DROP_FRAMES], 0);
    CHECK(rc_zsock_drain(zs));
    zmq_close(d);
    rc_zsock_free(zs);
    zmq_ctx_term(ctx);
    rc_loop_free(loop);
}

TEST(bind_failure_is_reported)
{
    rc_loop *loop = rc_loop_new();
    void *ctx = zmq_ctx_new();
    rc_zsock_opts o = {.zctx = ctx, .bind = "127.0.0.1", .port = 0, .max_frames = 4,
                       .name = "test", .on_msg = on_msg};
    rc_zsock *a = rc_zsock_new(loop, &o);
    CHECK(a);
    o.port = rc_zsock_port(a);
    rc_zsock *b = rc_zsock_new(loop, &o); /* the same port: EADDRINUSE, logged */
    CHECK(b == NULL);
    rc_zsock_free(a);
    zmq_ctx_term(ctx);
    rc_loop_free(loop);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(frames_whole_and_reply);
    RUN(req_peer_round_trip);
    RUN(limits_drop_message_not_peer);
    RUN(oversized_frame_cuts_connection);
    RUN(unreachable_and_gone);
    RUN(full_pipe_is_eagain);
    RUN(truncate_configure_drained);
    RUN(bind_failure_is_reported);
    UNIT_MAIN_END("test_zsock");
}
