/* Tests src/transport/zmtpsock.c: the native ROUTER and PUB on the loop against libzmq peers
 * (DEALER, REQ, SUB) in the same process over loopback TCP — whole messages with the peer's
 * identity and connection serial, replies, generated and duplicate identities, handover,
 * EHOSTUNREACH and EAGAIN at the output cap, frame and size limits, ends with their reasons,
 * and the PUB's prefix matching, subscription callbacks, limit and drop at a full queue; the
 * owner's gate (admit with the peer's key, refusal closed at once and reported as conn 0,
 * the admission's handshake deadline, one release per admitted connection however it ends). */
#include "transport/zmtpsock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
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

/* ---- the owner's gate -------------------------------------------------------------------- */

static struct {
    int asked;                   /* admit calls */
    uint32_t live, max;          /* admitted and not released / the gate's limit */
    uint64_t hs;                 /* handshake_ns it hands out */
    rc_ipkey key;                /* the last key admit saw */
    int releases;                /* release calls */
    uint32_t tokens;             /* sum of released tokens */
    bool key_mismatch;           /* a release with a key other than 127.0.0.1's */
} gs;

static bool gate_admit(void *arg, const rc_ipkey *peer, rc_zms_admission *a)
{
    if (arg != &gs) return false;
    gs.asked++;
    gs.key = *peer;
    if (gs.live >= gs.max) return false;
    gs.live++;
    a->token = 100 + (uint32_t)gs.asked; /* each connection's own, to see it handed back */
    a->handshake_ns = gs.hs;
    return true;
}

static void gate_release(void *arg, const rc_ipkey *peer, uint32_t token)
{
    gs.releases++;
    gs.live--;
    gs.tokens += token;
    if (memcmp(peer, &gs.key, sizeof(*peer)) != 0) gs.key_mismatch = true;
}

static int raw_connect(const rc_zms *zs)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(rc_zms_port(zs))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* raw_session sends a whole ZMTP 3.1 handshake as a ROUTER peer, then a one-frame message
 * "hi", and runs the loop until it is delivered (so the connection is past its READY). */
static void raw_session(fixture *fx, int fd)
{
    uint8_t g[RC_ZMTP_GREETING_LEN], r[RC_ZMTP_READY_MAX];
    rc_zmtp_greeting_encode(g);
    size_t rl = rc_zmtp_ready_encode(r, sizeof r, RC_ZMTP_T_DEALER);
    int before = seen.msgs;
    CHECK_EQ_INT(write(fd, g, sizeof g), (ssize_t)sizeof g);
    CHECK_EQ_INT(write(fd, r, rl), (ssize_t)rl);
    CHECK_EQ_INT(write(fd, "\x00\x02hi", 4), 4);
    run_until(fx->loop, &seen.msgs, before + 1);
    CHECK_EQ_INT(seen.msgs, before + 1);
}

/* closed_without_a_byte: the server closed fd having sent nothing. */
static bool closed_without_a_byte(fixture *fx, int fd)
{
    run_for(fx->loop, 5);
    char b[16];
    return read(fd, b, sizeof b) == 0;
}

TEST(gate_admits_refuses_and_releases)
{
    fixture fx = {0};
    memset(&gs, 0, sizeof(gs));
    gs.max = 2;
    gs.hs = 20 * RC_NS_PER_MS; /* the socket's own deadline stays 30 s */
    rc_zms_opts o = {.type = RC_ZMTP_T_ROUTER,
                     .gate = {.admit = gate_admit, .release = gate_release, .arg = &gs}};
    CHECK(setup(&fx, o));
    const rc_zms_stats *st = rc_zms_stats_of(fx.zs);

    /* two silent connections are admitted; a third is refused: closed before any byte,
     * reported as conn 0 LIMIT, and never released */
    int a = raw_connect(fx.zs), b = raw_connect(fx.zs);
    while (gs.asked < 2) run_for(fx.loop, 2);
    CHECK_EQ_INT(gs.live, 2);
    int c = raw_connect(fx.zs);
    run_until(fx.loop, &seen.gone, 1);
    CHECK_EQ_INT(gs.asked, 3);
    CHECK_EQ_INT(seen.gone, 1);
    CHECK_EQ_INT(seen.gone_conn, 0);
    CHECK_EQ_INT(seen.why, RC_ZMS_GONE_LIMIT);
    CHECK_EQ_INT(st->gone[RC_ZMS_GONE_LIMIT], 1);
    CHECK(closed_without_a_byte(&fx, c));
    CHECK_EQ_INT(gs.releases, 0);
    close(c);
    /* the key is the peer's address as ipcount.h counts it */
    struct sockaddr_in lo = {.sin_family = AF_INET};
    lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc_ipkey want = rc_ipkey_of((const struct sockaddr *)&lo);
    CHECK(memcmp(&gs.key, &want, sizeof(want)) == 0);

    /* the admission's handshake deadline ends both silent ones (the socket's default would
     * wait 30 s: run_until gives up after 2), each released once with its own token */
    run_until(fx.loop, &gs.releases, 2);
    CHECK_EQ_INT(gs.releases, 2);
    CHECK_EQ_INT(st->gone[RC_ZMS_GONE_HANDSHAKE], 2);
    CHECK_EQ_INT(gs.tokens, 101 + 102);
    CHECK_EQ_INT(gs.live, 0);
    close(a);
    close(b);

    /* every other way of ending releases exactly once: the peer closes after its READY ... */
    int d = raw_connect(fx.zs);
    raw_session(&fx, d);
    close(d);
    run_until(fx.loop, &gs.releases, 3);
    CHECK_EQ_INT(gs.releases, 3);
    CHECK_EQ_INT(st->gone[RC_ZMS_GONE_PEER], 1);
    /* ... a malformed greeting ... */
    int e = raw_connect(fx.zs);
    CHECK_EQ_INT(write(e, "GET / HTTP/1.1\r\n\r\n", 18), 18);
    run_until(fx.loop, &gs.releases, 4);
    CHECK_EQ_INT(gs.releases, 4);
    CHECK_EQ_INT(st->gone[RC_ZMS_GONE_PROTOCOL], 1);
    close(e);
    /* ... the owner cuts it ... */
    int f = raw_connect(fx.zs);
    raw_session(&fx, f);
    CHECK(rc_zms_cut(fx.zs, seen.conn, RC_ZMS_GONE_CUT));
    CHECK_EQ_INT(gs.releases, 5); /* at the cut, when the descriptor closes */
    run_for(fx.loop, 5);
    CHECK_EQ_INT(gs.releases, 5);
    close(f);
    /* ... the socket is freed with connections open (no on_gone then, but releases) */
    int h = raw_connect(fx.zs), i = raw_connect(fx.zs);
    while (gs.live < 2) run_for(fx.loop, 2);
    raw_session(&fx, h);
    CHECK_EQ_INT(gs.asked, 8);
    rc_zms_free(fx.zs);
    fx.zs = NULL;
    CHECK_EQ_INT(gs.releases, 7);
    CHECK_EQ_INT(gs.live, 0);
    CHECK_EQ_INT(gs.tokens, 101 + 102 + 104 + 105 + 106 + 107 + 108);
    CHECK(!gs.key_mismatch);
    close(h);
    close(i);
    zmq_ctx_term(fx.ctx);
    rc_loop_free(fx.loop);
}

TEST(gate_changes_apply_to_the_next_accept)
{
    /* the socket caches nothing of the gate's answers: a limit raised or lowered between two
     * accepts applies to the second */
    fixture fx = {0};
    memset(&gs, 0, sizeof(gs));
    gs.max = 0; /* refuse everything */
    rc_zms_opts o = {.type = RC_ZMTP_T_PUB,
                     .gate = {.admit = gate_admit, .release = gate_release, .arg = &gs}};
    CHECK(setup(&fx, o));
    int a = raw_connect(fx.zs);
    run_until(fx.loop, &seen.gone, 1);
    CHECK_EQ_INT(seen.why, RC_ZMS_GONE_LIMIT);
    CHECK(closed_without_a_byte(&fx, a));
    close(a);
    gs.max = 1;
    void *s = peer(&fx, ZMQ_SUB, NULL); /* a libzmq SUB: admitted, subscribes */
    zmq_setsockopt(s, ZMQ_SUBSCRIBE, "t", 1);
    run_until(fx.loop, &seen.subs, 1);
    CHECK_EQ_INT(seen.subs, 1);
    CHECK_EQ_INT(gs.live, 1);
    CHECK_EQ_INT(rc_zms_stats_of(fx.zs)->live, 1);
    zmq_close(s);
    run_until(fx.loop, &gs.releases, 1);
    CHECK_EQ_INT(gs.releases, 1);
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
    RUN(gate_admits_refuses_and_releases);
    RUN(gate_changes_apply_to_the_next_accept);
    UNIT_MAIN_END("test_zmtpsock");
}
