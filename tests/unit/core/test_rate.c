/* Tests src/core/rate.h: the GCRA token bucket — burst, steady rate, refusals that cost
 * nothing, oversized takes, a rate changed under a bucket, and the retry time. */
#include "core/rate.h"

#include "unit.h"

#define S RC_RATE_NS
#define MS (RC_RATE_NS / 1000)

/* How many of k takes of cost at time now pass. */
static int takes(uint64_t *tat, uint64_t now, uint64_t rate, uint64_t burst, uint64_t cost, int k)
{
    int ok = 0;
    for (int i = 0; i < k; i++) ok += rc_rate_take(tat, now, rate, burst, cost);
    return ok;
}

TEST(burst_then_refused)
{
    uint64_t tat = 0, now = 1000 * S;
    CHECK_EQ_INT(takes(&tat, now, 10, 5, 1, 100), 5); /* a full bucket: the burst */
    uint64_t before = tat;
    CHECK(!rc_rate_take(&tat, now, 10, 5, 1));
    CHECK(tat == before); /* a refusal moves nothing */
}

TEST(steady_rate_passes_forever)
{
    /* Exactly the rate, for a long time: never refused, whatever the burst. */
    uint64_t tat = 0, now = 5 * S;
    for (int i = 0; i < 10000; i++, now += 100 * MS) CHECK(rc_rate_take(&tat, now, 10, 1, 1));
}

TEST(flooder_gets_exactly_the_rate)
{
    /* 1000 attempts a second for 10 s against 20/s burst 20: 20 + 10 * 20 pass (the refused
     * ones cost nothing, so the refill is not eaten by them). */
    uint64_t tat = 0, now = 7 * S;
    int ok = 0;
    for (int i = 0; i <= 10000; i++, now += MS) ok += rc_rate_take(&tat, now, 20, 20, 1);
    CHECK(ok >= 219 && ok <= 221);
}

TEST(refill_after_quiet)
{
    uint64_t tat = 0, now = 3 * S;
    CHECK_EQ_INT(takes(&tat, now, 4, 4, 1, 10), 4);
    CHECK_EQ_INT(takes(&tat, now + 250 * MS, 4, 4, 1, 10), 1);  /* a quarter second: one */
    CHECK_EQ_INT(takes(&tat, now + 10 * S, 4, 4, 1, 10), 4);    /* long quiet: full, no more */
}

TEST(byte_costs)
{
    /* 1000 bytes a second, burst 1000: two 400-byte messages pass, the third does not; after
     * 200 ms (200 bytes refilled) it does. */
    uint64_t tat = 0, now = 9 * S;
    CHECK(rc_rate_take(&tat, now, 1000, 1000, 400));
    CHECK(rc_rate_take(&tat, now, 1000, 1000, 400));
    CHECK(!rc_rate_take(&tat, now, 1000, 1000, 400));
    CHECK(!rc_rate_take(&tat, now + 199 * MS, 1000, 1000, 400));
    CHECK(rc_rate_take(&tat, now + 200 * MS, 1000, 1000, 400));
}

TEST(oversized_take_passes_only_when_full)
{
    uint64_t tat = 0, now = 2 * S;
    CHECK(rc_rate_take(&tat, now, 100, 100, 500));   /* full: passes, 4 s in debt */
    CHECK(!rc_rate_take(&tat, now + 3 * S, 100, 100, 1));
    CHECK(!rc_rate_take(&tat, now + 4 * S, 100, 100, 500)); /* full again, but not before */
    CHECK(rc_rate_take(&tat, now + 5 * S, 100, 100, 1));
    CHECK(!rc_rate_take(&tat, now + 5 * S, 100, 100, 500)); /* not full: refused */
}

TEST(zero_burst_is_one)
{
    uint64_t tat = 0, now = S;
    CHECK_EQ_INT(takes(&tat, now, 10, 0, 1, 5), 1);
}

TEST(rate_changed_under_a_bucket)
{
    /* A bucket spent at 1/s; the rate raised to 1000/s: it passes again within 1 s at most, and
     * then the new burst applies. */
    uint64_t tat = 0, now = 4 * S;
    CHECK_EQ_INT(takes(&tat, now, 1, 1, 1, 3), 1);
    CHECK_EQ_INT(takes(&tat, now + S, 1000, 1000, 1, 2000), 1000);
    /* lowered to 1/s: the allowance built up at the old rate drains first, no more */
    tat = 0;
    CHECK_EQ_INT(takes(&tat, now, 1000, 1000, 1, 10), 10);
    CHECK_EQ_INT(takes(&tat, now, 1, 1, 1, 10), 0);
    CHECK_EQ_INT(takes(&tat, now + S, 1, 1, 1, 10), 1);
}

TEST(wait_is_when_it_would_pass)
{
    uint64_t tat = 0, now = 6 * S;
    CHECK_EQ_INT(takes(&tat, now, 10, 2, 1, 10), 2);
    uint64_t w = rc_rate_wait_ns(tat, now, 10, 2, 1);
    CHECK(w == 100 * MS);
    CHECK(!rc_rate_take(&tat, now + w - 1, 10, 2, 1));
    CHECK(rc_rate_take(&tat, now + w, 10, 2, 1));
    CHECK(rc_rate_wait_ns(0, now, 10, 2, 1) == 0);
    /* an oversized take waits until the bucket is full, no longer */
    tat = 0;
    CHECK(rc_rate_take(&tat, now, 100, 100, 50));
    CHECK(rc_rate_wait_ns(tat, now, 100, 100, 500) == tat - now);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(burst_then_refused);
    RUN(steady_rate_passes_forever);
    RUN(flooder_gets_exactly_the_rate);
    RUN(refill_after_quiet);
    RUN(byte_costs);
    RUN(oversized_take_passes_only_when_full);
    RUN(zero_burst_is_one);
    RUN(rate_changed_under_a_bucket);
    RUN(wait_is_when_it_would_pass);
    UNIT_MAIN_END("test_rate");
}
