/* Tests src/core/hash.c: insert, find, remove and iterate through growth, with colliding and
 * removed nodes, against a plain array as the reference. */
#include "core/hash.h"

#include <stdbool.h>

#include "unit.h"

typedef struct item {
    rc_hnode node;
    int key;                 /* the identity compared after a hash match */
    bool in;                 /* in the table (the reference) */
} item;

#define item_of(n) ((item *)(void *)((char *)(n) - offsetof(item, node)))

/* A deliberately weak hash (many collisions): chains must be walked right. */
static uint64_t weak(int key)
{
    return (uint64_t)(key % 37);
}

static item *find(const rc_htab *t, int key)
{
    uint64_t h = weak(key);
    for (rc_hnode *n = rc_htab_chain(t, h); n; n = n->next)
        if (n->hash == h && item_of(n)->key == key) return item_of(n);
    return NULL;
}

TEST(hash_is_fnv1a)
{
    CHECK(rc_hash("", 0) == 14695981039346656037ull); /* the offset basis */
    CHECK(rc_hash("a", 1) == 0xaf63dc4c8601ec8cull); /* FNV-1a 64 of "a" */
    CHECK(rc_hash_mix(1) != 1 && rc_hash_mix(1) != rc_hash_mix(2));
}

TEST(table_against_reference)
{
    enum { N = 3000 };
    static item items[N];
    rc_htab t = {0};
    for (int i = 0; i < N; i++) items[i] = (item){.key = i};
    for (int round = 0; round < 20000; round++) {
        int k = (int)(unit_rand() % N);
        item *it = &items[k];
        if (it->in) {
            CHECK(find(&t, k) == it);
            rc_htab_remove(&t, &it->node);
            it->in = false;
        } else {
            CHECK(find(&t, k) == NULL);
            CHECK_EQ_INT(rc_htab_insert(&t, &it->node, weak(k)), 0);
            it->in = true;
        }
    }
    uint32_t in = 0;
    for (int i = 0; i < N; i++) {
        in += items[i].in;
        CHECK((find(&t, i) != NULL) == items[i].in);
    }
    CHECK_EQ_INT(t.count, in);
    CHECK(t.nbucket >= 16 && (t.nbucket & (t.nbucket - 1)) == 0);
    /* iteration visits every node once, also while removing the node just visited */
    uint32_t seen = 0, b = 0;
    rc_hnode *n = rc_htab_next(&t, &b, NULL);
    while (n) {
        rc_hnode *next = rc_htab_next(&t, &b, n);
        CHECK(item_of(n)->in);
        item_of(n)->in = false;
        rc_htab_remove(&t, n);
        seen++;
        n = next;
    }
    CHECK_EQ_INT(seen, in);
    CHECK_EQ_INT(t.count, 0);
    rc_htab_release(&t);
    CHECK(rc_htab_chain(&t, 5) == NULL);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(hash_is_fnv1a);
    RUN(table_against_reference);
    UNIT_MAIN_END("test_hash");
}
