/* Tests src/transport/zmtpsock.c: the native ROUTER and PUB on the loop against libzmq peers
 * (DEALER, REQ, SUB) in the same process over loopback TCP — whole messages with the peer's
 * identity and connection serial, replies, generated and duplicate identities, handover,
 * EHOSTUNREACH and EAGAIN at the output cap, frame and size limits, ends with their reasons,
 * and the PUB's prefix matching, subscription callbacks, limit and drop at a full queue. */
#include "transport/zmtpsock.h"

#include <errno.h>
#include <zmq.h>

#include "unit.h"

static struct {
    int msgs;                    /* messages delivered */
    size_t n;                    /* frames of the last one */
    char frame[8][64];           /* its frames (truncated) */
    size_t flen[8];              /* their lengths */
    uint64_t conn;               /* its connection serial */
    int gone;                    /* ends reported */
    enum rc_zms_gone why;        /* the last one's reason */
    uint64_t gone_conn;
    int subs, cancels;           /* PUB callbacks */
    char topic[64];              /* the last subscription's topic */
    bool echo;                   /* answer every message with its own frames */
} seen;

static void on_msg(rc_zms *zs, const rc_zmsg *m, void *arg)
{
    seen.msgs++;
    seen.n = m->n;
    seen.conn = m->conn;
    for (size_t i = 0; i < m->n && i < 8; i++) {
        size_t l = m->f[i].len < 63 ? m->f[i].len : 63;
        memcpy(seen.frame[i], m->f[i].data, l);
        seen.frame[i][l] = 0;
        seen.flen[i] = m->f[i].len;
    }
    if (seen.echo) rc_zms_send(zs, m->f, m->n);
}

static void on_gone(rc_zms *zs, uint64_t conn, enum rc_zms_gone why, void *arg)
{
    seen.gone++;
    seen.why = why;
    seen.gone_conn = conn;
}

static void on_sub(rc_zms *zs, uint64_t conn, bool on, const uint8_t *t, size_t len, void *arg)
{
    if (on) seen.subs++; else seen.cancels++;
    size_t l = len < 63 ? len : 63;
    memcpy(seen.topic, t, l);
    seen.topic[l] = 0;
}

/* run_for runs the loop for ms milliseconds. */
static void on_stop(rc_loop *loop, rc_timer *t) { rc_loop_stop(loop); }

static void run_for(rc_loop *loop, unsigned ms)
{
    rc_timer t;
    rc_timer_init(&t, on_stop);
    rc_timer_start(loop, &t, rc_clock_ns() + ms * RC_NS_PER_MS);
    rc_loop_run(loop);
    rc_timer_stop(loop, &t);
}

/* run_until runs the loop until *flag reaches want (at most 2 s). */
static void run_until(rc_loop *loop, const int *flag, int want)
{
    uint64_t end = rc_clock_ns() + 2 * RC_NS_PER_SEC;
    while (*flag < want && rc_clock_ns() < end) run_for(loop, 2);
}

/* recv_pumped receives one frame on a libzmq socket while running the loop (our output is
 * written by the loop); -1 after 2 s. */
static int recv_pumped(rc_loop *loop, void *s, char *buf, size_t cap)
{
    uint64_t end = rc_clock_ns() + 2 * RC_NS_PER_SEC;
    while (rc_clock_ns() < end) {
        int n = zmq_recv(s, buf, cap, ZMQ_DONTWAIT);
        if (n >= 0) return n;
        run_for(loop, 2);
    }
    return -1;
}

typedef struct fixture {
    rc_loop *loop;
    void *ctx;
    rc_zms *zs;
} fixture;

static bool setup(fixture *fx, rc_zms_opts o)
{
    memset(&seen, 0, sizeof(seen));
    fx->loop = rc_loop_new();
    fx->ctx = zmq_ctx_new();
    o.bind = "127.0.0.1";
    o.name = "test";
    o.on_gone = on_gone;
    if (o.type == RC_ZMTP_T_ROUTER) o.on_msg = on_msg;
    else o.on_sub = on_sub;
    fx->zs = rc_zms_new(fx->loop, &o);
    return fx->zs != NULL && rc_zms_port(fx->zs) != 0;
}

static void *peer(fixture *fx, int type, const char *id)
{
    void *s = zmq_socket(fx->ctx, type);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    if (id) zmq_setsockopt(s, ZMQ_ROUTING_ID, id, strlen(id));
    zmq_connect(s, rc_zms_endpoint(fx->zs));
    return s;
}

static void teardown(fixture *fx)
{
    rc_zms_free(fx->zs);
    zmq_ctx_term(fx->ctx);
    rc_loop_free(fx->loop);
}

static void sendv(void *s, const char *const *f, int n)
{
    for (int i = 0; i < n; i++) zmq_send(s, f[i], strlen(f[i]), i + 1 < n ? ZMQ_SNDMORE : 0);
}

TEST(router_whole_messages_and_reply)
{
    fixture fx = {0};
    CHECK(setup(&fx, (rc_zms_opts){.type = RC_ZMTP_T_ROUTER, .max_frames = 8}));
    void *d = peer(&fx, ZMQ_DEALER, "peer1");
    const char *const msg[] = {"", "MDPW01", "\x01", "echo"};
    sendv(d, msg, 4);
    run_until(fx.loop, &seen.msgs, 1);
    CHECK_EQ_INT(seen.msgs, 1);
    CHECK_EQ_INT(seen.n, 5);
    CHECK_MEM(seen.frame[0], seen.flen[0], "peer1", 5);
    CHECK_EQ_INT(seen.flen[1], 0);
    CHECK_MEM(seen.frame[4], seen.flen[4], "echo", 4);
    CHECK(seen.conn != 0 && rc_zms_conn_live(fx.zs, seen.conn));
    rc_zframe out[] = {{"peer1", 5}, {"", 0}, {"reply", 5}};
    CHECK_EQ_INT(rc_zms_send(fx.zs, out, 3), 0);
    char buf[16];
    CHECK_EQ_INT(recv_pumped(fx.loop, d, buf, sizeof(buf)), 0);
    CHECK_EQ_INT(recv_pumped(fx.loop, d, buf, sizeof(buf)), 5);
    CHECK_MEM(buf, 5, "reply", 5);
    rc_zframe nobody[] = {{"ghost", 5}, {"x", 1}};
    CHECK_EQ_INT(rc_zms_send(fx.zs, nobody, 2), -EHOSTUNREACH);
    const rc_zms_stats *st = rc_zms_stats_of(fx.zs);
    CHECK_EQ_INT(st->msgs_in, 1);
    CHECK_EQ_INT(st->msgs_out, 1);
    CHECK_EQ_INT(st->send_unreachable, 1);
    CHECK_EQ_INT(st->live, 1);
    /* the peer leaves: reported with its serial */
    uint64_t conn = seen.conn;
    zmq_close(d);
    run_until(fx.loop, &seen.gone, 1);
    CHECK_EQ_INT(seen.gone, 1);
    CHECK_EQ_INT(seen.gone_conn, conn);
    CHECK_EQ_INT(seen.why, RC_ZMS_GONE_PEER);
    CHECK(!rc_zms_conn_live(fx.zs, conn));
    teardown(&fx);
}

TEST(req_peer_round_trip)
{
    fixture fx = {0};
    CHECK(setup(&fx, (rc_zms_opts){.type = RC_ZMTP_T_ROUTER}));
    void *r = peer(&fx, ZMQ_REQ, NULL);
    seen.echo = true;
    zmq_send(r, "READY", 5, 0);
    run_until(fx.loop, &seen.msgs, 1);
    CHECK_EQ_INT(seen.n, 3);
    CHECK_EQ_INT(seen.flen[0], 5); /* generated: 0x00 + 32-bit counter, as libzmq */
    CHECK_EQ_INT(seen.frame[0][0], 0);
    CHECK_EQ_INT(seen.flen[1], 0);
    char buf[16];
    CHECK_EQ_INT(recv_pumped(fx.loop, r, buf, sizeof(buf)), 5);
    CHECK_MEM(buf, 5, "READY", 5);
    zmq_close(r);
    teardown(&fx);
}

TEST(duplicate_identity_and_handover)
{
    for (int handover = 0; handover <= 1; handover++) {
        fixture fx = {0};
        CHECK(setup(&fx, (rc_zms_opts){.type = RC_ZMTP_T_ROUTER, .handover = handover}));
        void *a = peer(&fx, ZMQ_DEALER, "same");
        zmq_send(a, "a", 1, 0);
        run_until(fx.loop, &seen.msgs, 1);
        CHECK_MEM(seen.frame[0], seen.flen[0], "same", 4);
        uint64_t first = seen.conn;
        void *b = peer(&fx, ZMQ_DEALER, "same");
        zmq_send(b, "b", 1, 0);
        run_until(fx.loop, &seen.msgs, 2);
        CHECK_MEM(seen.frame[1], seen.flen[1], "b", 1);
        if (handover) { /* the newcomer takes the id, the old connection is closed */
            CHECK_MEM(seen.frame[0], seen.flen[0], "same", 4);
            run_until(fx.loop, &seen.gone, 1);
            CHECK_EQ_INT(seen.gone_conn, first);
            CHECK_EQ_INT(seen.why, RC_ZMS_GONE_CUT);
        } else { /* the newcomer gets a generated id; both stay */
            CHECK_EQ_INT(seen.flen[0], 5);
            CHECK_EQ_INT(seen.frame[0][0], 0);
            CHECK(rc_zms_conn_live(fx.zs, first));
        }
        zmq_close(a);
        zmq_close(b);
        teardown(&fx);
    }
}

TEST(output_cap_gives_eagain)
{
    fixture fx = {0};
    CHECK(setup(&fx, (rc_zms_opts){.type = RC_ZMTP_T_ROUTER, .out_cap = 1000}));
    void *d = peer(&fx, ZMQ_DEALER, "slow");
    zmq_send(d, "hi", 2, 0);
    run_until(fx.loop, &seen.msgs, 1);
    static char big[1500];
    rc_zframe out[] = {{"slow", 4}, {big, sizeof(big)}};
    /* queued without the loop running: the first fits under the cap, the second meets it */
    CHECK_EQ_INT(rc_zms_send(fx.zs, out, 2), 0);
    CHECK_EQ_INT(rc_zms_send(fx.zs, out, 2), -EAGAIN);
    CHECK_EQ_INT(rc_zms_stats_of(fx.zs)->send_again, 1);
    char buf[2000];
    CHECK_EQ_INT(recv_pumped(fx.loop, d, buf, sizeof(buf)), 1500);
    CHECK_EQ_INT(rc_zms_send(fx.zs, out, 2), 0); /* written: room again */
    zmq_close(d);
    teardown(&fx);
}

TEST(limits)
{
    fixture fx = {0};
    CHECK(setup(&fx, (rc_zms_opts){.type = RC_ZMTP_T_ROUTER, .max_frame = 1024,
                                   .max_frames = 4, .max_bytes = 16}));
    void *d = peer(&fx, ZMQ_DEALER, "p");
    const char *const big[] = {"0123456789", "0123456789"}; /* 20 bytes > 16: dropped */
    const char *const ok[] = {"", "fine"};
    sendv(d, big, 2);
    sendv(d, ok, 2);
    run_until(fx.loop, &seen.msgs, 1);
    CHECK_EQ_INT(seen.msgs, 1);
    CHECK_MEM(seen.frame[2], seen.flen[2], "fine", 4);
    CHECK_EQ_INT(rc_zms_stats_of(fx.zs)->dropped_bytes, 1);
    CHECK_EQ_INT(seen.gone, 0);
    /* more frames than max_frames (identity included): a protocol error, the peer is cut */
    const char *const many[] = {"a", "b", "c", "d"};
    sendv(d, many, 4);
    run_until(fx.loop, &seen.gone, 1);
    CHECK_EQ_INT(seen.why, RC_ZMS_GONE_TOO_BIG);
    CHECK_EQ_INT(rc_zms_stats_of(fx.zs)->errors[RC_ZMTP_E_TOO_MANY_FRAMES], 1);
    zmq_close(d);
    /* a frame over max_frame: cut at its header */
    void *e = peer(&fx, ZMQ_DEALER, "q");
    static char huge[4096];
    zmq_send(e, huge, sizeof(huge), 0);
    run_until(fx.loop, &seen.gone, 2);
    CHECK_EQ_INT(seen.why, RC_ZMS_GONE_TOO_BIG);
    CHECK_EQ_INT(rc_zms_stats_of(fx.zs)->errors[RC_ZMTP_E_FRAME_TOO_BIG], 1);
    zmq_close(e);
    teardown(&fx);
}

TEST(router_refuses_sub)
{
    fixture fx = {0};
    CHECK(setup(&fx, (rc_zms_opts){.type = RC_ZMTP_T_ROUTER}));
    void *s = peer(&fx, ZMQ_SUB, NULL);
    /* whichever side refuses first (libzmq's SUB refuses a ROUTER too), the handshake failed
     * (the refusal by kind is tests/netsync/test_zmtp.py's, with a raw peer) */
    run_until(fx.loop, &seen.gone, 1);
    CHECK_EQ_INT(seen.why, RC_ZMS_GONE_HANDSHAKE);
    CHECK_EQ_INT(seen.msgs, 0);
    zmq_close(s);
    teardown(&fx);
}

TEST(pub_prefix_matching)
{
    fixture fx = {0};
    CHECK(setup(&fx, (rc_zms_opts){.type = RC_ZMTP_T_PUB}));
    void *a = peer(&fx, ZMQ_SUB, NULL), *b = peer(&fx, ZMQ_SUB, NULL);
    zmq_setsockopt(a, ZMQ_SUBSCRIBE, "ab", 2);
    zmq_setsockopt(b, ZMQ_SUBSCRIBE, "x", 1);
    run_until(fx.loop, &seen.subs, 2);
    CHECK_EQ_INT(seen.subs, 2);
    rc_zframe m1[] = {{"abc", 3}, {"one", 3}};
    rc_zframe m2[] = {{"x1", 2}, {"two", 3}};
    rc_zframe m3[] = {{"a", 1}, {"none", 4}}; /* "ab" is not a prefix of "a" */
    CHECK_EQ_INT(rc_zms_publish(fx.zs, m3, 2), 0);
    CHECK_EQ_INT(rc_zms_publish(fx.zs, m1, 2), 1);
    CHECK_EQ_INT(rc_zms_publish(fx.zs, m2, 2), 1);
    char buf[16];
    CHECK_EQ_INT(recv_pumped(fx.loop, a, buf, sizeof(buf)), 3);
    CHECK_MEM(buf, 3, "abc", 3);
    CHECK_EQ_INT(recv_pumped(fx.loop, a, buf, sizeof(buf)), 3);
    CHECK_MEM(buf, 3, "one", 3);
    CHECK_EQ_INT(recv_pumped(fx.loop, b, buf, sizeof(buf)), 2);
    CHECK_MEM(buf, 2, "x1", 2);
    CHECK_EQ_INT(zmq_recv(a, buf, sizeof(buf), ZMQ_DONTWAIT), -1); /* nothing else */
    /* a cancel is reported, and stops the delivery */
    zmq_setsockopt(a, ZMQ_UNSUBSCRIBE, "ab", 2);
    run_until(fx.loop, &seen.cancels, 1);
    CHECK_EQ_INT(seen.cancels, 1);
    CHECK_EQ_INT(rc_zms_publish(fx.zs, m1, 2), 0);
    zmq_close(a);
    zmq_close(b);
    teardown(&fx);
}

TEST(pub_subscription_limit_and_full_queue)
{
    fixture fx = {0};
    CHECK(setup(&fx, (rc_zms_opts){.type = RC_ZMTP_T_PUB, .max_subs = 2, .out_cap = 100}));
    void *greedy = peer(&fx, ZMQ_SUB, NULL);
    zmq_setsockopt(greedy, ZMQ_SUBSCRIBE, "1", 1);
    zmq_setsockopt(greedy, ZMQ_SUBSCRIBE, "2", 1);
    zmq_setsockopt(greedy, ZMQ_SUBSCRIBE, "3", 1);
    run_until(fx.loop, &seen.gone, 1);
    CHECK_EQ_INT(seen.why, RC_ZMS_GONE_SUB_LIMIT);
    zmq_close(greedy);
    void *s = peer(&fx, ZMQ_SUB, NULL);
    zmq_setsockopt(s, ZMQ_SUBSCRIBE, "t", 1);
    run_until(fx.loop, &seen.subs, 3);
    static char body[80];
    rc_zframe m[] = {{"t", 1}, {body, sizeof(body)}};
    /* without the loop writing, the second message finds the queue at its cap: skipped */
    CHECK_EQ_INT(rc_zms_publish(fx.zs, m, 2), 1);
    CHECK_EQ_INT(rc_zms_publish(fx.zs, m, 2), 1);
    CHECK_EQ_INT(rc_zms_publish(fx.zs, m, 2), 0);
    CHECK_EQ_INT(rc_zms_stats_of(fx.zs)->pub_dropped, 1);
    zmq_close(s);
    teardown(&fx);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(router_whole_messages_and_reply);
    RUN(req_peer_round_trip);
    RUN(duplicate_identity_and_handover);
    RUN(output_cap_gives_eagain);
    RUN(limits);
    RUN(router_refuses_sub);
    RUN(pub_prefix_matching);
    RUN(pub_subscription_limit_and_full_queue);
    UNIT_MAIN_END("test_zmtpsock");
}
