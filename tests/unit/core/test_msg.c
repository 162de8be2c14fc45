/* Tests src/core/msg.c and ring.c: reference counts of messages and of the encodings chained
 * to them (ASan reports any leak or double free), and ring growth with wrapped contents. */
#include "core/msg.h"
#include "core/ring.h"

#include "unit.h"

static rc_msg *msg(const char *s, uint8_t wire)
{
    rc_msg *m = rc_msg_copy(s, strlen(s));
    m->wire = wire;
    return m;
}

TEST(alternate_encodings_live_with_the_first)
{
    rc_msg *m = msg("canonical", 0), *a = msg("line\n", 1), *b = msg("[x] y\n", 3);
    rc_msg_add_alt(m, a); /* m now owns the references a and b were made with */
    rc_msg_add_alt(m, b);
    CHECK(rc_msg_alt(m, 0) == m);
    CHECK(rc_msg_alt(m, 1) == a);
    CHECK(rc_msg_alt(m, 3) == b);
    CHECK(rc_msg_alt(m, 2) == NULL);
    CHECK_EQ_INT(rc_msg_size(m), 9 + 5 + 6);
    /* a queue holding one encoding keeps it alive after the first is gone */
    rc_msg *held = rc_msg_ref(a);
    rc_msg_unref(m); /* frees m and b; a lives on */
    CHECK_EQ_INT(held->refs, 1);
    CHECK_MEM(held->data, held->len, "line\n", 5);
    rc_msg_unref(held);
}

/* Dropping an encoding from the middle of the chain keeps the one after it, and a holder of the
 * dropped one keeps it. */
TEST(drop_alt_unchains_one_encoding)
{
    rc_msg *m = rc_msg_copy("canonical", 9), *a = rc_msg_copy("zzzz", 4), *b = rc_msg_copy("line\n", 5);
    a->wire = 4;
    b->wire = 1;
    rc_msg_add_alt(m, a);
    rc_msg_add_alt(m, b);
    rc_msg *queued = rc_msg_ref(a); /* a member's output queue */
    rc_msg_drop_alt(m, 4);
    CHECK(rc_msg_alt(m, 4) == NULL);
    CHECK(rc_msg_alt(m, 1) == b);
    CHECK_EQ_INT(rc_msg_size(m), 9 + 5);
    CHECK_EQ_INT(queued->refs, 1);
    CHECK(queued->alt == NULL);
    rc_msg_drop_alt(m, 4); /* not there: nothing */
    rc_msg_drop_alt(m, 0); /* m itself is never dropped */
    CHECK(rc_msg_alt(m, 0) == m);
    rc_msg_unref(queued);
    rc_msg_unref(m); /* frees m and b */
}

TEST(ring_regrow_unrolls)
{
    /* a ring of 8 with 6 entries starting at 5: wraps after 3 */
    int *ring = rc_ring_regrow(NULL, 0, 0, 0, 8, sizeof(int));
    CHECK(ring != NULL);
    for (int i = 0; i < 6; i++) ring[(5 + i) & 7] = 100 + i;
    int *grown = rc_ring_regrow(ring, 8, 5, 6, 16, sizeof(int));
    CHECK(grown != NULL);
    for (int i = 0; i < 6; i++) CHECK_EQ_INT(grown[i], 100 + i);
    free(grown);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(alternate_encodings_live_with_the_first);
    RUN(drop_alt_unchains_one_encoding);
    RUN(ring_regrow_unrolls);
    UNIT_MAIN_END("test_msg");
}
