/* Tests src/netsync/nsident.c: per-peer unicast queues against a fake ROUTER that refuses
 * (EAGAIN) at random, a join storm that must lose nothing, vanished peers, mapping
 * supersession, slow consumers, and the record bound. */
#include "netsync/nsident.h"

#include <errno.h>
#include <stdint.h>

#include "unit.h"

#define PEERS 100
#define PER_PEER 400

/* The fake ROUTER: records what each peer received, in order; refuses with EAGAIN while
 * full[peer] or at random with probability busy/256; EHOSTUNREACH for peers marked gone. */
typedef struct fake {
    uint32_t got[PEERS];         /* messages received per peer */
    uint32_t expect[PEERS];      /* the sequence number each peer should receive next */
    int order_errors;            /* messages out of order */
    int busy;                    /* EAGAIN probability in 1/256 */
    bool gone[PEERS];
    int slow_calls;
    uint8_t last_type[PEERS];
} fake;

static int peer_of_id(const uint8_t *id, size_t len)
{
    return len == 2 ? id[0] * 256 + id[1] : -1;
}

static int fake_send(void *arg, const uint8_t *id, size_t id_len, const uint8_t *room,
                     size_t room_len, const uint8_t *p, size_t n)
{
    fake *f = arg;
    int peer = peer_of_id(id, id_len);
    if (peer < 0 || peer >= PEERS || f->gone[peer]) return -EHOSTUNREACH;
    if ((int)(unit_rand() & 255) < f->busy) return -EAGAIN;
    if (n >= 5 && p[0] != 6) { /* a numbered message: [type][u32 seq] */
        uint32_t seq;
        memcpy(&seq, p + 1, 4);
        if (seq != f->expect[peer]) f->order_errors++;
        f->expect[peer] = seq + 1;
    }
    f->last_type[peer] = p[0];
    f->got[peer]++;
    return 0;
}

static void fake_slow(void *arg, const nsy_ident *who)
{
    ((fake *)arg)->slow_calls++;
}

static void id_of(int peer, uint8_t id[2])
{
    id[0] = (uint8_t)(peer >> 8);
    id[1] = (uint8_t)peer;
}

static int send_seq(nsy_idents *t, int peer, uint32_t seq)
{
    uint8_t id[2], msg[5] = {10};
    id_of(peer, id);
    memcpy(msg + 1, &seq, 4);
    return nsy_idents_unicast(t, id, 2, (const uint8_t *)"room", 4, msg, sizeof(msg), 0);
}

/* 100 clients join at once and each is sent PER_PEER messages (the reference's O(N^2) NV
 * syncs) while the ROUTER refuses half of the sends: every message arrives, in order. */
TEST(join_storm_loses_nothing)
{
    static fake f;
    memset(&f, 0, sizeof(f));
    f.busy = 128;
    rc_netsync_stats st = {0};
    nsy_idents t;
    nsy_idents_init(&t, &st, 1024, 1000, 1 << 20, 64 << 20, fake_send, fake_slow, &f);
    for (uint32_t seq = 0; seq < PER_PEER; seq++)
        for (int peer = 0; peer < PEERS; peer++) CHECK_EQ_INT(send_seq(&t, peer, seq), 0);
    for (int round = 0; round < 100000 && !nsy_idents_flush(&t, 64); round++) {
    }
    CHECK(t.blocked == NULL);
    for (int peer = 0; peer < PEERS; peer++) CHECK_EQ_INT(f.got[peer], PER_PEER);
    CHECK_EQ_INT(f.order_errors, 0);
    CHECK_EQ_INT(st.unicast_out, PEERS * PER_PEER);
    CHECK_EQ_INT(st.unicast_queued, 0);
    CHECK_EQ_INT(st.unicast_queued_bytes, 0);
    CHECK(st.unicast_deferred > 0);
    for (int i = 0; i < NSY_UCDROP__COUNT; i++) CHECK_EQ_INT(st.unicast_dropped[i], 0);
    nsy_idents_release(&t);
    CHECK_EQ_INT(st.idents, 0);
}

/* A blocked peer does not hold up another one. */
TEST(blocked_peer_does_not_block_others)
{
    static fake f;
    memset(&f, 0, sizeof(f));
    rc_netsync_stats st = {0};
    nsy_idents t;
    nsy_idents_init(&t, &st, 1024, 1000, 1 << 20, 64 << 20, fake_send, fake_slow, &f);
    f.busy = 256; /* everything refused */
    CHECK_EQ_INT(send_seq(&t, 1, 0), 0);
    CHECK_EQ_INT(send_seq(&t, 1, 1), 0);
    CHECK(t.blocked != NULL);
    f.busy = 0;
    CHECK_EQ_INT(send_seq(&t, 2, 0), 0); /* peer 2 goes straight through */
    CHECK_EQ_INT(f.got[2], 1);
    CHECK_EQ_INT(f.got[1], 0);
    CHECK(nsy_idents_flush(&t, 100));
    CHECK_EQ_INT(f.got[1], 2);
    CHECK_EQ_INT(f.order_errors, 0);
    nsy_idents_release(&t);
}

/* EHOSTUNREACH drops the peer's queue and is counted; the caller is told. */
TEST(vanished_peer_dropped)
{
    static fake f;
    memset(&f, 0, sizeof(f));
    rc_netsync_stats st = {0};
    nsy_idents t;
    nsy_idents_init(&t, &st, 1024, 1000, 1 << 20, 64 << 20, fake_send, fake_slow, &f);
    f.busy = 256;
    for (uint32_t i = 0; i < 5; i++) CHECK_EQ_INT(send_seq(&t, 3, i), 0);
    f.busy = 0;
    f.gone[3] = true;
    nsy_idents_flush(&t, 100);
    CHECK(t.blocked == NULL);
    CHECK_EQ_INT(st.unicast_dropped[NSY_UCDROP_UNREACHABLE], 5);
    CHECK_EQ_INT(st.unicast_queued, 0);
    CHECK_EQ_INT(send_seq(&t, 3, 5), -EHOSTUNREACH);
    CHECK_EQ_INT(st.unicast_dropped[NSY_UCDROP_UNREACHABLE], 6);
    nsy_idents_release(&t);
}

/* A queued mapping is replaced by a newer one of the same room, which goes to the tail. */
TEST(mapping_superseded)
{
    static fake f;
    memset(&f, 0, sizeof(f));
    rc_netsync_stats st = {0};
    nsy_idents t;
    nsy_idents_init(&t, &st, 1024, 1000, 1 << 20, 64 << 20, fake_send, fake_slow, &f);
    uint8_t id[2];
    id_of(4, id);
    const uint8_t map1[] = {6, 0, 16, 3, 0, 0}, map2[] = {6, 0, 16, 3, 1, 0};
    f.busy = 256;
    CHECK_EQ_INT(send_seq(&t, 4, 0), 0);
    CHECK_EQ_INT(nsy_idents_unicast(&t, id, 2, (const uint8_t *)"room", 4, map1, 6, 0), 0);
    CHECK_EQ_INT(nsy_idents_unicast(&t, id, 2, (const uint8_t *)"other", 5, map1, 6, 0), 0);
    CHECK_EQ_INT(send_seq(&t, 4, 1), 0);
    CHECK_EQ_INT(nsy_idents_unicast(&t, id, 2, (const uint8_t *)"room", 4, map2, 6, 0), 0);
    CHECK_EQ_INT(st.unicast_superseded, 1);
    CHECK_EQ_INT(st.unicast_queued, 4); /* seq 0, other's mapping, seq 1, room's new mapping */
    f.busy = 0;
    CHECK(nsy_idents_flush(&t, 100));
    CHECK_EQ_INT(f.got[4], 4);
    CHECK_EQ_INT(f.last_type[4], 6);
    CHECK_EQ_INT(f.order_errors, 0);
    nsy_idents_release(&t);
}

/* A full queue makes the peer a slow consumer: cut, queue dropped, counted. */
TEST(slow_consumer_cut)
{
    static fake f;
    memset(&f, 0, sizeof(f));
    rc_netsync_stats st = {0};
    nsy_idents t;
    nsy_idents_init(&t, &st, 1024, 1000, 10, 64 << 20, fake_send, fake_slow, &f);
    f.busy = 256;
    for (uint32_t i = 0; i < 10; i++) CHECK_EQ_INT(send_seq(&t, 5, i), 0);
    CHECK_EQ_INT(send_seq(&t, 5, 10), -ENOBUFS);
    CHECK_EQ_INT(f.slow_calls, 1);
    CHECK_EQ_INT(st.unicast_slow, 1);
    CHECK_EQ_INT(st.unicast_dropped[NSY_UCDROP_SLOW], 11);
    CHECK_EQ_INT(st.unicast_queued, 0);
    CHECK(t.blocked == NULL);
    nsy_idents_release(&t);
}

/* The record bound evicts the least recently seen; idle records expire. */
TEST(bound_and_expiry)
{
    rc_netsync_stats st = {0};
    nsy_idents t;
    nsy_idents_init(&t, &st, 3, 1000, 10, 1 << 20, fake_send, fake_slow, NULL);
    uint8_t id[2];
    for (int i = 0; i < 4; i++) {
        id_of(i, id);
        CHECK(nsy_idents_touch(&t, NSY_LANE_CONTROL, id, 2, (uint64_t)i * 100) != NULL);
    }
    CHECK_EQ_INT(st.idents, 3);
    CHECK_EQ_INT(st.idents_evicted, 1);
    id_of(0, id);
    CHECK(nsy_idents_find(&t, NSY_LANE_CONTROL, id, 2) == NULL);
    CHECK(nsy_idents_find(&t, NSY_LANE_POSE, id, 2) == NULL); /* lanes are separate */
    nsy_idents_expire(&t, 1250); /* records seen at 100 and 200 are 1000+ old */
    CHECK_EQ_INT(st.idents, 1);
    id_of(3, id);
    CHECK(nsy_idents_find(&t, NSY_LANE_CONTROL, id, 2) != NULL);
    nsy_idents_release(&t);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(join_storm_loses_nothing);
    RUN(blocked_peer_does_not_block_others);
    RUN(vanished_peer_dropped);
    RUN(mapping_superseded);
    RUN(slow_consumer_cut);
    RUN(bound_and_expiry);
    UNIT_MAIN_END("test_nsident");
}
