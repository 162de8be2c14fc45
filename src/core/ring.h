/* ring.h — growing the power-of-two rings roomcast keeps (output queues, room histories).
 *
 * A ring is an array of `cap` elements (a power of two) whose `count` live elements start at
 * `head` and wrap around. Growing one means unrolling it into a larger array so that it starts
 * at index 0 again; that is the only ring operation worth sharing, the rest is index arithmetic
 * the owners inline.
 */
#ifndef RC_RING_H
#define RC_RING_H

#include <stddef.h>
#include <stdint.h>

/* rc_ring_regrow returns a new array of newcap elements of elem bytes holding ring's count
 * elements unrolled to start at index 0, and frees ring (which may be NULL when cap is 0).
 * NULL when out of memory: ring is then untouched. */
void *rc_ring_regrow(void *ring, uint32_t cap, uint32_t head, uint32_t count, uint32_t newcap,
                     size_t elem);

#endif
