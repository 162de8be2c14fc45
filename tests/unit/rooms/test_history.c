/* Tests src/rooms/history.c: retention by count, bytes and age, contiguity, lookup. */
#include "rooms/history.h"

#include "unit.h"

static rc_msg *frame(size_t len)
{
    rc_msg *m = rc_msg_new(len);
    memset(m->data, 'f', len);
    return m;
}

static void push(rc_history *h, const rc_retention *r, uint64_t id, uint64_t t, size_t len)
{
    rc_msg *m = frame(len);
    rc_history_push(h, r, id, t, m);
    rc_msg_unref(m);
}

TEST(count_limit_keeps_newest)
{
    rc_history h = {0};
    rc_retention r = {.max_count = 5, .max_bytes = 1 << 20};
    for (uint64_t id = 1; id <= 12; id++) push(&h, &r, id, 0, 10);
    CHECK_EQ_INT(h.count, 5);
    CHECK_EQ_INT(rc_history_first_id(&h), 8);
    CHECK_EQ_INT(rc_history_at(&h, 4)->msg_id, 12);
    CHECK_EQ_INT(h.bytes, 50);
    rc_history_release(&h);
}

TEST(byte_limit)
{
    rc_history h = {0};
    rc_retention r = {.max_count = 100, .max_bytes = 100};
    for (uint64_t id = 1; id <= 10; id++) push(&h, &r, id, 0, 30);
    CHECK_EQ_INT(h.count, 3);      /* 3 x 30 <= 100 < 4 x 30 */
    CHECK_EQ_INT(rc_history_first_id(&h), 8);
    push(&h, &r, 11, 0, 500);      /* cannot be kept: the run must stay contiguous */
    CHECK_EQ_INT(h.count, 0);
    push(&h, &r, 12, 0, 10);
    CHECK_EQ_INT(rc_history_first_id(&h), 12);
    rc_history_release(&h);
}

TEST(age_limit)
{
    rc_history h = {0};
    rc_retention r = {.max_count = 100, .max_bytes = 1 << 20, .max_age_ms = 1000};
    for (uint64_t id = 1; id <= 10; id++) push(&h, &r, id, id * 200, 10);
    rc_history_expire(&h, &r, 2100); /* drops times <= 1100: ids 1..5 */
    CHECK_EQ_INT(rc_history_first_id(&h), 6);
    rc_history_expire(&h, &r, 100000);
    CHECK_EQ_INT(h.count, 0);
    CHECK(h.ring == NULL);          /* an idle room gives its memory back */
    rc_history_release(&h);
}

TEST(find_positions)
{
    rc_history h = {0};
    rc_retention r = {.max_count = 4, .max_bytes = 1 << 20};
    for (uint64_t id = 1; id <= 10; id++) push(&h, &r, id, 0, 1); /* keeps 7..10 */
    CHECK_EQ_INT(rc_history_find(&h, 6), 0);  /* everything after 6: from the first kept */
    CHECK_EQ_INT(rc_history_find(&h, 7), 1);
    CHECK_EQ_INT(rc_history_find(&h, 9), 3);
    CHECK_EQ_INT(rc_history_find(&h, 10), 4); /* nothing after the newest */
    CHECK_EQ_INT(rc_history_find(&h, 99), 4);
    rc_history_release(&h);
}

TEST(frames_shared_not_copied)
{
    rc_history h = {0};
    rc_retention r = {.max_count = 2, .max_bytes = 1 << 20};
    rc_msg *m = frame(8);
    rc_history_push(&h, &r, 1, 0, m);
    CHECK_EQ_INT(m->refs, 2);
    CHECK(rc_history_at(&h, 0)->frame == m);
    push(&h, &r, 2, 0, 8);
    push(&h, &r, 3, 0, 8);          /* evicts id 1 */
    CHECK_EQ_INT(m->refs, 1);
    rc_msg_unref(m);
    rc_history_release(&h);
}

TEST(disabled)
{
    rc_history h = {0};
    rc_retention r = {.max_count = 0, .max_bytes = 1 << 20};
    push(&h, &r, 1, 0, 8);
    CHECK_EQ_INT(h.count, 0);
    rc_history_release(&h);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(count_limit_keeps_newest);
    RUN(byte_limit);
    RUN(age_limit);
    RUN(find_positions);
    RUN(frames_shared_not_copied);
    RUN(disabled);
    UNIT_MAIN_END("test_history");
}
