/* Tests src/transport/outq.c: shared references, batched flushing with partial writes, dropping. */
#include "transport/outq.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#include "unit.h"

static rc_msg *msg_of(const char *s)
{
    rc_msg *m = rc_msg_new(strlen(s));
    memcpy(m->data, s, strlen(s));
    return m;
}

/* flush_all flushes q into sv[0] and reads sv[1] (made non-blocking) until the queue is
 * empty and `want` bytes arrived, or a bounded number of rounds passed; returns the bytes read
 * into got. A write error stops it early, so the caller's checks on the queue and the bytes
 * fail. */
static size_t flush_all(rc_outq *q, const int sv[2], char *got, size_t cap, size_t want)
{
    size_t glen = 0;
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    for (int rounds = 0; (q->count > 0 || glen < want) && rounds < 100000; rounds++) {
        if (rc_outq_flush(q, sv[0]) < 0) break; /* the caller's checks then fail */
        ssize_t r = read(sv[1], got + glen, cap - glen);
        if (r > 0) glen += (size_t)r;
    }
    return glen;
}

TEST(shared_refs)
{
    rc_outq a = {0}, b = {0};
    rc_msg *m = msg_of("frame");
    CHECK(rc_outq_push(&a, m) == 0);
    CHECK(rc_outq_push(&b, m) == 0);
    CHECK_EQ_INT(m->refs, 3);
    rc_msg_unref(m);
    rc_outq_release(&a);
    CHECK_EQ_INT(m->refs, 1); /* still alive for b (ASan would catch a use after free) */
    CHECK_EQ_INT(b.bytes, 5);
    rc_outq_release(&b);
}

TEST(flush_partial_and_resume)
{
    /* A small socket buffer forces partial writes; everything arrives once, in order. */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    rc_outq q = {0};
    char expect[300 * 200];
    size_t elen = 0;
    for (int i = 0; i < 300; i++) {
        char s[200];
        int n = snprintf(s, sizeof(s), "message %d %.*s|", i, (int)(unit_rand() % 150), 
                         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        rc_msg *m = msg_of(s);
        CHECK(rc_outq_push(&q, m) == 0);
        rc_msg_unref(m);
        memcpy(expect + elen, s, (size_t)n);
        elen += (size_t)n;
    }
    CHECK_EQ_INT(q.bytes, elen);
    static char got[sizeof(expect)];
    size_t glen = flush_all(&q, sv, got, sizeof(got), elen);
    CHECK_EQ_INT(q.bytes, 0);
    CHECK_MEM(got, glen, expect, elen);
    rc_outq_release(&q);
    close(sv[0]);
    close(sv[1]);
}

TEST(flush_mixed_sizes)
{
    /* Small frames are staged into one buffer and large ones sent as their own iovec: with
     * both interleaved and a small socket buffer cutting writes anywhere (inside the staged
     * run, inside a large frame), every byte still arrives once, in order. */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    rc_outq q = {0};
    static char expect[400 * 6000], got[sizeof(expect)];
    size_t elen = 0, glen;
    for (int i = 0; i < 400; i++) {
        /* Sizes around the staging threshold and well past it, plus bursts of tiny frames
         * that fill the staging buffer and the iovec array. */
        size_t n = i % 7 == 0 ? 2000 + unit_rand() % 4000 : 1 + unit_rand() % 200;
        rc_msg *m = rc_msg_new(n);
        for (size_t k = 0; k < n; k++) m->data[k] = (char)('a' + (i + k) % 26);
        CHECK(rc_outq_push(&q, m) == 0);
        memcpy(expect + elen, m->data, n);
        elen += n;
        rc_msg_unref(m);
    }
    glen = flush_all(&q, sv, got, sizeof(got), elen);
    CHECK_EQ_INT(q.bytes, 0);
    CHECK_MEM(got, glen, expect, elen);
    rc_outq_release(&q);
    close(sv[0]);
    close(sv[1]);
}

static uint64_t sample_t[16];
static uint32_t sample_n[16], nsamples;

static void on_sent(void *arg, uint64_t t_recv, uint32_t n)
{
    (void)arg;
    sample_t[nsamples] = t_recv;
    sample_n[nsamples++] = n;
}

TEST(quiet_frames_are_sent_not_sampled)
{
    /* live(t=5) live(t=5) replay(t=1) replay(t=2) live(t=5) reply(t=6): every byte goes out
     * in order, the replays are never reported, and the runs are (5 x3), (6 x1): the quiet
     * frames do not split a run of one receipt time. */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    rc_outq q = {0};
    static const struct { const char *s; uint64_t t; bool quiet; } in[] = {
        {"a", 5, false}, {"b", 5, false}, {"old1", 1, true}, {"old2", 2, true},
        {"c", 5, false}, {"d", 6, false},
    };
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        rc_msg *m = msg_of(in[i].s);
        m->t_recv = in[i].t;
        CHECK((in[i].quiet ? rc_outq_push_quiet(&q, m) : rc_outq_push(&q, m)) == 0);
        rc_msg_unref(m);
    }
    nsamples = 0;
    CHECK_EQ_INT(rc_outq_flush_cb(&q, sv[0], on_sent, NULL), 12);
    char got[32];
    CHECK_EQ_INT(read(sv[1], got, sizeof(got)), 12);
    CHECK_MEM(got, 12, "abold1old2cd", 12);
    CHECK_EQ_INT(nsamples, 2);
    CHECK_EQ_INT(sample_t[0], 5);
    CHECK_EQ_INT(sample_n[0], 3);
    CHECK_EQ_INT(sample_t[1], 6);
    CHECK_EQ_INT(sample_n[1], 1);
    /* a quiet entry is released like any other */
    rc_msg *m = msg_of("x");
    CHECK(rc_outq_push_quiet(&q, m) == 0);
    CHECK_EQ_INT(m->refs, 2);
    rc_outq_release(&q);
    CHECK_EQ_INT(m->refs, 1);
    rc_msg_unref(m);
    close(sv[0]);
    close(sv[1]);
}

TEST(drop_unstarted_keeps_partial_head)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    rc_outq q = {0};
    static char big[100000];
    memset(big, 'b', sizeof(big));
    rc_msg *m = rc_msg_new(sizeof(big));
    memcpy(m->data, big, sizeof(big));
    CHECK(rc_outq_push(&q, m) == 0);
    CHECK(rc_outq_push(&q, m) == 0);
    rc_msg_unref(m);
    ssize_t w = rc_outq_flush(&q, sv[0]);
    CHECK(w > 0 && (size_t)w < sizeof(big)); /* the first message is partly sent */
    rc_outq_drop_unstarted(&q);
    CHECK_EQ_INT(q.count, 1);
    CHECK_EQ_INT(q.bytes, sizeof(big) - (size_t)w);
    rc_outq_release(&q);
    close(sv[0]);
    close(sv[1]);
}

TEST(write_error_reported)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    close(sv[1]);
    rc_outq q = {0};
    rc_msg *m = msg_of("x");
    rc_outq_push(&q, m);
    rc_msg_unref(m);
    CHECK_EQ_INT(rc_outq_flush(&q, sv[0]), -EPIPE); /* and no SIGPIPE (MSG_NOSIGNAL) */
    rc_outq_release(&q);
    close(sv[0]);
}

/* Conflation's edits: find the last unstarted frame with a key and mark, replace one in
 * place, remove one keeping the order; a partly sent head is never found. */
TEST(find_set_remove)
{
    rc_outq q = {0};
    const char *texts[] = {"aa", "bbb", "cccc", "dd"};
    rc_msg *m[4];
    for (int i = 0; i < 4; i++) {
        m[i] = msg_of(texts[i]);
        m[i]->ckey = i == 3 ? 7 : (uint64_t)(i + 5); /* keys 5, 6, 7, 7 */
        rc_outq_push(&q, m[i]);
    }
    CHECK_EQ_INT(q.bytes, 11);
    CHECK_EQ_INT(rc_outq_find(&q, 7, 0), 3);  /* the last one */
    CHECK_EQ_INT(rc_outq_find(&q, 5, 0), 0);
    CHECK_EQ_INT(rc_outq_find(&q, 5, 1), -1); /* another mark */
    CHECK_EQ_INT(rc_outq_find(&q, 9, 0), -1);
    rc_msg *n = msg_of("N");
    n->mark = 1;
    rc_outq_set(&q, 1, n);                    /* "bbb" -> "N" */
    CHECK_EQ_INT(q.bytes, 9);
    CHECK(rc_msg_base(rc_outq_at(&q, 1)) == n);
    CHECK_EQ_INT(rc_outq_find(&q, 0, 1), 1);
    CHECK_EQ_INT(m[1]->refs, 1);              /* the queue's reference went */
    CHECK_EQ_INT(n->refs, 2);
    rc_outq_set(&q, 2, NULL);                 /* "cccc" removed */
    CHECK_EQ_INT(q.count, 3);
    CHECK_EQ_INT(q.bytes, 5);
    CHECK(rc_msg_base(rc_outq_at(&q, 2)) == m[3]);
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    char got[64];
    CHECK_EQ_INT(flush_all(&q, sv, got, sizeof(got), 5), 5);
    CHECK_MEM(got, 5, "aaNdd", 5);
    /* a partly sent head is out of reach */
    rc_outq_push(&q, m[0]);
    rc_outq_push(&q, m[0]);
    q.head_off = 1;
    CHECK_EQ_INT(rc_outq_find(&q, 5, 0), 1);
    q.head_off = 0;
    rc_outq_release(&q);
    for (int i = 0; i < 4; i++) rc_msg_unref(m[i]);
    rc_msg_unref(n);
    close(sv[0]);
    close(sv[1]);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(shared_refs);
    RUN(flush_partial_and_resume);
    RUN(flush_mixed_sizes);
    RUN(quiet_frames_are_sent_not_sampled);
    RUN(drop_unstarted_keeps_partial_head);
    RUN(write_error_reported);
    RUN(find_set_remove);
    UNIT_MAIN_END("test_outq");
}
