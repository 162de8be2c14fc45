/* Tests src/core/buf.c: reserve/commit/consume invariants. */
#include "core/buf.h"

#include "unit.h"

TEST(append_consume)
{
    rc_buf b = RC_BUF_INIT;
    CHECK(rc_buf_append(&b, "hello", 5) == 0);
    CHECK_MEM(rc_buf_head(&b), rc_buf_size(&b), "hello", 5);
    rc_buf_consume(&b, 2);
    CHECK_MEM(rc_buf_head(&b), rc_buf_size(&b), "llo", 3);
    rc_buf_consume(&b, 3);
    CHECK_EQ_INT(rc_buf_size(&b), 0);
    CHECK_EQ_INT(b.off, 0); /* an emptied buffer restarts at 0 */
    rc_buf_release(&b);
    CHECK(b.data == NULL);
}

TEST(reserve_slides_before_growing)
{
    rc_buf b = RC_BUF_INIT;
    char chunk[100];
    memset(chunk, 'x', sizeof(chunk));
    CHECK(rc_buf_append(&b, chunk, 100) == 0);
    size_t cap = b.cap;
    rc_buf_consume(&b, 90);
    CHECK(rc_buf_reserve(&b, cap - 20) == 0);
    CHECK_EQ_INT(b.cap, cap); /* slid down instead of reallocating */
    CHECK_EQ_INT(rc_buf_size(&b), 10);
    rc_buf_release(&b);
}

TEST(random_stream)
{
    /* Bytes written in random chunks and consumed in random chunks come out in order. */
    rc_buf b = RC_BUF_INIT;
    unsigned char next_in = 0, next_out = 0;
    for (int round = 0; round < 2000; round++) {
        size_t w = unit_rand() % 300;
        CHECK(rc_buf_reserve(&b, w) == 0);
        for (size_t i = 0; i < w; i++) rc_buf_tail(&b)[i] = (char)next_in++;
        rc_buf_commit(&b, w);
        size_t r = unit_rand() % (rc_buf_size(&b) + 1);
        for (size_t i = 0; i < r; i++) CHECK((unsigned char)rc_buf_head(&b)[i] == next_out++);
        rc_buf_consume(&b, r);
    }
    rc_buf_release(&b);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(append_consume);
    RUN(reserve_slides_before_growing);
    RUN(random_stream);
    UNIT_MAIN_END("test_buf");
}
