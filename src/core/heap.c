/* heap.c — intrusive binary min-heap; see heap.h. */
#include "core/heap.h"

#include <stdlib.h>

static void place(rc_heap *h, uint32_t i, rc_heap_node *x)
{
    h->v[i] = x;
    x->slot = i;
}

static void up(rc_heap *h, uint32_t i)
{
    rc_heap_node *x = h->v[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (h->v[parent]->key <= x->key) break;
        place(h, i, h->v[parent]);
        i = parent;
    }
    place(h, i, x);
}

static void down(rc_heap *h, uint32_t i)
{
    rc_heap_node *x = h->v[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && h->v[c + 1]->key < h->v[c]->key) c++;
        if (x->key <= h->v[c]->key) break;
        place(h, i, h->v[c]);
        i = c;
    }
    place(h, i, x);
}

int rc_heap_push(rc_heap *h, rc_heap_node *x, uint64_t key)
{
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 64;
        rc_heap_node **v = realloc(h->v, cap * sizeof(*v));
        if (!v) return -1;
        h->v = v;
        h->cap = cap;
    }
    x->key = key;
    place(h, h->n++, x);
    up(h, x->slot);
    return 0;
}

void rc_heap_update(rc_heap *h, rc_heap_node *x, uint64_t key)
{
    uint64_t old = x->key;
    x->key = key;
    if (key < old) up(h, x->slot);
    else down(h, x->slot);
}

void rc_heap_remove(rc_heap *h, rc_heap_node *x)
{
    uint32_t i = x->slot;
    if (i >= h->n || h->v[i] != x) abort(); /* not in this heap: the caller's state is corrupt */
    rc_heap_node *last = h->v[--h->n];
    x->slot = RC_HEAP_NONE;
    if (last == x) return;
    place(h, i, last);
    if (i > 0 && h->v[(i - 1) / 2]->key > last->key) up(h, i);
    else down(h, i);
}

void rc_heap_release(rc_heap *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}
