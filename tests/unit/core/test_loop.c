/* Tests src/core/loop.c: timer ordering, re-arming, stopping, I/O readiness, signals. */
#include "core/loop.h"

#include <signal.h>
#include <unistd.h>

#include "unit.h"

static uint64_t fired[2048];
static int nfired;

static void record(rc_loop *loop, rc_timer *t)
{
    fired[nfired++] = rc_timer_due(t);
}

static void stop_loop(rc_loop *loop, rc_timer *t) { rc_loop_stop(loop); }

TEST(timer_heap_stress)
{
    /* 1000 timers due in the (recent) past with random times, a quarter stopped and some
     * moved: one loop run fires the rest exactly once each, in due order. */
    rc_loop *loop = rc_loop_new();
    CHECK(loop);
    static rc_timer t[1000];
    rc_timer stop;
    uint64_t now = rc_loop_now(loop);
    nfired = 0;
    for (int i = 0; i < 1000; i++) {
        rc_timer_init(&t[i], record);
        rc_timer_start(loop, &t[i], now - 1 - unit_rand() % 1000000);
    }
    int expect = 1000;
    for (int i = 0; i < 1000; i += 4) { rc_timer_stop(loop, &t[i]); expect--; }
    for (int i = 1; i < 1000; i += 8) rc_timer_start(loop, &t[i], now - 1 - unit_rand() % 1000000);
    rc_timer_init(&stop, stop_loop);
    rc_timer_start(loop, &stop, now);
    CHECK(rc_loop_run(loop) == 0);
    CHECK_EQ_INT(nfired, expect);
    for (int i = 1; i < nfired; i++) CHECK(fired[i - 1] <= fired[i]);
    for (int i = 0; i < 1000; i++) CHECK(!rc_timer_armed(&t[i]));
    rc_loop_free(loop);
}

TEST(timers_real_clock)
{
    rc_loop *loop = rc_loop_new();
    CHECK(loop);
    rc_timer t[8], stop;
    uint64_t now = rc_loop_now(loop);
    nfired = 0;
    int order[8] = {5, 1, 7, 3, 2, 8, 4, 6};
    for (int i = 0; i < 8; i++) {
        rc_timer_init(&t[i], record);
        rc_timer_start(loop, &t[i], now + (uint64_t)order[i] * RC_NS_PER_MS);
    }
    rc_timer_stop(loop, &t[2]); /* the 7 ms one */
    rc_timer_init(&stop, stop_loop);
    rc_timer_start(loop, &stop, now + 20 * RC_NS_PER_MS);
    CHECK(rc_loop_run(loop) == 0);
    CHECK_EQ_INT(nfired, 7);
    for (int i = 1; i < nfired; i++) CHECK(fired[i - 1] < fired[i]);
    CHECK(rc_loop_now(loop) >= now + 20 * RC_NS_PER_MS); /* it really waited */
    rc_loop_free(loop);
}

static int readable;
static void on_readable(rc_loop *loop, rc_io *io, uint32_t ev)
{
    char c;
    if (read(io->fd, &c, 1) == 1 && c == 'x') readable++;
    rc_loop_stop(loop);
}

TEST(io_readiness)
{
    rc_loop *loop = rc_loop_new();
    int p[2];
    CHECK(pipe(p) == 0);
    rc_io io;
    rc_io_init(&io, p[0], on_readable);
    CHECK(rc_io_start(loop, &io, RC_EV_READ) == 0);
    CHECK(write(p[1], "x", 1) == 1);
    readable = 0;
    CHECK(rc_loop_run(loop) == 0);
    CHECK_EQ_INT(readable, 1);
    rc_io_stop(loop, &io);
    close(p[0]);
    close(p[1]);
    rc_loop_free(loop);
}

static int got_signal;
static void on_sig(rc_loop *loop, int signo, void *arg)
{
    got_signal = signo;
    rc_loop_stop(loop);
}

TEST(signals_are_loop_callbacks)
{
    rc_loop *loop = rc_loop_new();
    CHECK(rc_loop_signal(loop, SIGUSR1, on_sig, NULL) == 0);
    raise(SIGUSR1); /* blocked, so it waits in the signalfd */
    got_signal = 0;
    CHECK(rc_loop_run(loop) == 0);
    CHECK_EQ_INT(got_signal, SIGUSR1);
    rc_loop_free(loop);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(timer_heap_stress);
    RUN(timers_real_clock);
    RUN(io_readiness);
    RUN(signals_are_loop_callbacks);
    UNIT_MAIN_END("test_loop");
}
