/* Tests src/codec/stateblob.c: a snapshot round-trips, and every cut or inconsistent length is
 * refused without a callback. */
#include "codec/stateblob.h"

#include <stdlib.h>

#include "unit.h"

struct seen {
    int n;
    uint64_t ids[4];
    char keys[4][16];
};

static void on_entry(void *arg, uint64_t msg_id, uint64_t time_ms, const char *key, size_t klen,
                     const char *payload, size_t plen)
{
    struct seen *s = arg;
    if (s->n < 4) {
        s->ids[s->n] = msg_id + time_ms * 0 + plen * 0;
        memcpy(s->keys[s->n], key, klen < 15 ? klen : 15);
        s->keys[s->n][klen < 15 ? klen : 15] = '\0';
    }
    s->n++;
}

TEST(round_trip)
{
    rc_buf b = {0};
    CHECK_EQ_INT(rc_state_blob_begin(&b, 42, 2), 0);
    CHECK_EQ_INT(rc_state_blob_add(&b, 17, 1000, "pos/ann", 7, "{\"x\":1}", 7), 0);
    CHECK_EQ_INT(rc_state_blob_add(&b, 40, 2000, "map", 3, "{}", 2), 0);
    struct seen s = {0};
    uint64_t upto = 0;
    CHECK_EQ_INT(rc_state_blob_read(rc_buf_head(&b), rc_buf_size(&b), &upto, on_entry, &s), 0);
    CHECK_EQ_INT(upto, 42);
    CHECK_EQ_INT(s.n, 2);
    CHECK_EQ_INT(s.ids[0], 17);
    CHECK_EQ_INT(s.ids[1], 40);
    CHECK(strcmp(s.keys[0], "pos/ann") == 0 && strcmp(s.keys[1], "map") == 0);
    /* every strict prefix, and one byte more, is refused whole */
    for (size_t cut = 0; cut < rc_buf_size(&b); cut++) {
        struct seen z = {0};
        CHECK_EQ_INT(rc_state_blob_read(rc_buf_head(&b), cut, &upto, on_entry, &z), -1);
        CHECK_EQ_INT(z.n, 0);
    }
    CHECK_EQ_INT(rc_buf_append(&b, "x", 1), 0);
    struct seen z = {0};
    CHECK_EQ_INT(rc_state_blob_read(rc_buf_head(&b), rc_buf_size(&b), &upto, on_entry, &z), -1);
    CHECK_EQ_INT(z.n, 0);
    rc_buf_release(&b);
}

TEST(bad_counts_and_lengths)
{
    rc_buf b = {0};
    CHECK_EQ_INT(rc_state_blob_begin(&b, 1, 3), 0); /* says 3, holds 1 */
    CHECK_EQ_INT(rc_state_blob_add(&b, 1, 1, "k", 1, "{}", 2), 0);
    struct seen s = {0};
    uint64_t upto;
    CHECK_EQ_INT(rc_state_blob_read(rc_buf_head(&b), rc_buf_size(&b), &upto, on_entry, &s), -1);
    CHECK_EQ_INT(s.n, 0);
    rc_buf_release(&b);
    rc_buf e = {0};
    CHECK_EQ_INT(rc_state_blob_begin(&e, 1, 1), 0); /* an empty key is no key */
    CHECK_EQ_INT(rc_state_blob_add(&e, 1, 1, "", 0, "{}", 2), 0);
    CHECK_EQ_INT(rc_state_blob_read(rc_buf_head(&e), rc_buf_size(&e), &upto, on_entry, &s), -1);
    rc_buf_release(&e);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(round_trip);
    RUN(bad_counts_and_lengths);
    UNIT_MAIN_END("test_stateblob");
}
