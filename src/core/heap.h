/* heap.h — an intrusive binary min-heap on a 64-bit key.
 *
 * The caller embeds an rc_heap_node in its own struct (a timer, a NetSync room) and gets the
 * struct back with container_of; the heap only stores pointers, so an entry can change its key
 * or leave in O(log n) through the index the node keeps of itself. Used by the loop's timers
 * and by the NetSync rooms' per-room cadence. Equal keys come out in no particular order.
 */
#ifndef RC_HEAP_H
#define RC_HEAP_H

#include <stdbool.h>
#include <stdint.h>

typedef struct rc_heap_node {
    uint64_t key;            /* the order: smallest on top */
    uint32_t slot;           /* index in the heap, RC_HEAP_NONE when not in one */
} rc_heap_node;
#define RC_HEAP_NONE UINT32_MAX

typedef struct rc_heap {
    rc_heap_node **v;        /* v[0] is the smallest */
    uint32_t n, cap;         /* used / allocated */
} rc_heap;

static inline void rc_heap_node_init(rc_heap_node *x) { x->key = 0; x->slot = RC_HEAP_NONE; }
static inline bool rc_heap_contains(const rc_heap_node *x) { return x->slot != RC_HEAP_NONE; }
static inline rc_heap_node *rc_heap_top(const rc_heap *h) { return h->n ? h->v[0] : 0; }

/* rc_heap_push inserts x (not in a heap) with key. Returns 0, or -1 when out of memory. */
int rc_heap_push(rc_heap *h, rc_heap_node *x, uint64_t key);

/* rc_heap_update gives x (in h) a new key and moves it to its place. */
void rc_heap_update(rc_heap *h, rc_heap_node *x, uint64_t key);

/* rc_heap_remove takes x (in h) out. */
void rc_heap_remove(rc_heap *h, rc_heap_node *x);

/* rc_heap_release frees the array (the nodes belong to their owners). */
void rc_heap_release(rc_heap *h);

#endif
