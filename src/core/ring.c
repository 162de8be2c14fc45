/* ring.c — see ring.h. */
#include "core/ring.h"

#include <stdlib.h>
#include <string.h>

void *rc_ring_regrow(void *ring, uint32_t cap, uint32_t head, uint32_t count, uint32_t newcap,
                     size_t elem)
{
    char *fresh = malloc((size_t)newcap * elem);
    if (!fresh) return NULL;
    if (count) {
        /* At most two runs: head..end of the old array, then its start. */
        uint32_t first = cap - head < count ? cap - head : count;
        memcpy(fresh, (char *)ring + (size_t)head * elem, (size_t)first * elem);
        memcpy(fresh + (size_t)first * elem, ring, (size_t)(count - first) * elem);
    }
    free(ring);
    return fresh;
}
