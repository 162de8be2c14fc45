/* Tests src/rooms/session.c: sessions held, released, taken back, forgotten after their TTL
 * or beyond the bound of idle ones, and bans that outlast the TTL. */
#include "rooms/session.h"

#include "core/loop.h"
#include "unit.h"

static void nop_deliver(rc_endpoint *ep, rc_msg *m) { (void)ep, (void)m; }
static void nop_lost(rc_endpoint *ep) { (void)ep; }
static void nop_close(rc_endpoint *ep, uint16_t code, const char *r) { (void)ep, (void)code, (void)r; }
static const rc_endpoint_ops ops = {.deliver = nop_deliver, .replay = nop_deliver,
                                    .lost = nop_lost, .close = nop_close};

#define S (RC_NS_PER_SEC)

TEST(hold_release_reclaim)
{
    rc_sessions s;
    rc_sessions_init(&s, 10 * S, 100);
    rc_endpoint a, b;
    rc_endpoint_init(&a, &ops, 0, 7);
    rc_endpoint_init(&b, &ops, 0, 8);
    rc_session *se = rc_sessions_add(&s, &a);
    CHECK(se && a.sess == se && se->holder == &a && se->client_id == 7);
    CHECK(rc_sessions_find(&s, a.session) == se);
    CHECK(rc_sessions_find(&s, b.session /* zeroes: never made */) == NULL);
    /* b takes it while a still holds it: a is left without one (the caller closes a) */
    rc_sessions_hold(&s, se, &b);
    CHECK(b.sess == se && a.sess == NULL && se->holder == &b && se->client_id == 7);
    CHECK_EQ_INT(s.reclaimed, 1);
    rc_sessions_drop(&s, &b, 100 * S);
    CHECK(b.sess == NULL && se->holder == NULL);
    CHECK_EQ_INT(s.nidle, 1);
    CHECK(rc_sessions_of_client(&s, 7) == se);
    rc_sessions_sweep(&s, 109 * S);           /* within the TTL */
    CHECK(rc_sessions_find(&s, se->token) == se);
    rc_endpoint c;
    rc_endpoint_init(&c, &ops, 0, 9);
    rc_sessions_hold(&s, se, &c);              /* back from idle */
    CHECK_EQ_INT(s.nidle, 0);
    uint8_t token[RC_SESSION_LEN];
    memcpy(token, se->token, sizeof(token));
    rc_sessions_drop(&s, &c, 200 * S);
    rc_sessions_sweep(&s, 210 * S);            /* the TTL is up */
    CHECK(rc_sessions_find(&s, token) == NULL);
    CHECK_EQ_INT(s.table.count, 0);
    rc_sessions_release(&s);
}

TEST(bans_outlast_the_ttl)
{
    rc_sessions s;
    rc_sessions_init(&s, 1 * S, 100);
    rc_endpoint a;
    rc_endpoint_init(&a, &ops, 0, 1);
    rc_session *se = rc_sessions_add(&s, &a);
    rc_sessions_ban(&s, se, 60 * S);
    CHECK(rc_sessions_banned(se, 59 * S) && !rc_sessions_banned(se, 60 * S));
    rc_sessions_drop(&s, &a, 2 * S);
    rc_sessions_sweep(&s, 30 * S);             /* TTL up, ban not: kept */
    CHECK(rc_sessions_find(&s, se->token) == se);
    rc_sessions_sweep(&s, 61 * S);
    CHECK_EQ_INT(s.table.count, 0);
    rc_sessions_release(&s);
}

TEST(idle_sessions_are_bounded)
{
    rc_sessions s;
    rc_sessions_init(&s, 1000 * S, 3);
    rc_endpoint e[5];
    uint8_t first[RC_SESSION_LEN];
    for (int i = 0; i < 5; i++) {
        rc_endpoint_init(&e[i], &ops, 0, (uint64_t)i + 1);
        CHECK(rc_sessions_add(&s, &e[i]) != NULL);
        if (i == 0) memcpy(first, e[i].session, sizeof(first));
    }
    for (int i = 0; i < 5; i++) rc_sessions_drop(&s, &e[i], (uint64_t)i * S);
    CHECK_EQ_INT(s.nidle, 3);                  /* the two released first went */
    CHECK_EQ_INT(s.table.count, 3);
    CHECK(rc_sessions_find(&s, first) == NULL);
    CHECK(rc_sessions_find(&s, e[4].session) != NULL);
    rc_sessions_release(&s);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(hold_release_reclaim);
    RUN(bans_outlast_the_ttl);
    RUN(idle_sessions_are_bounded);
    UNIT_MAIN_END("test_session");
}
