/* rate.h — a token bucket as the generic cell rate algorithm (GCRA): one integer per bucket.
 *
 * A bucket of `burst` tokens refilled at `rate` tokens a second is kept as one number, the
 * theoretical arrival time (tat): the loop time, in ns, at which the bucket would be full
 * again. Taking `cost` tokens at time `now` moves tat to max(tat, now) + cost * 1e9 / rate, and
 * is allowed while that stays within burst's worth of time ahead of now. So a check is a
 * multiply, a divide, a compare and a store — on the loop's cached clock (rc_loop_now), never a
 * syscall — and the rate and burst are read at every check, not kept in the bucket: a bucket
 * follows a changed setting (SIGHUP) at its next check, with the allowance it had built up.
 *
 * Refused takes do not move tat: a client that keeps sending faster than the rate still gets
 * exactly `rate` a second through, and its allowance refills while it waits. A single take
 * larger than the whole burst (a message bigger than a bytes burst) passes when the bucket is
 * full and leaves it in debt, so a setting below the largest message slows such messages down
 * instead of refusing them forever (the way --max-pending lets one oversized message through to
 * a client that is keeping up).
 *
 * Same arithmetic as room.c's room-creation limit (rc_endpoint.create_tat), written once here
 * for the per-connection limits (app/limits.h).
 */
#ifndef RC_RATE_H
#define RC_RATE_H

#include <stdbool.h>
#include <stdint.h>

#define RC_RATE_NS 1000000000ull

/* rc_rate_take takes cost tokens from the bucket *tat (0 = full) at now (ns) for a bucket of
 * burst tokens refilled at rate a second (rate > 0; burst 0 counts as 1). True when allowed
 * (*tat advanced); false when refused (*tat unchanged). cost * 1e9 must fit in 64 bits (cost
 * below 2^34: messages are at most 2 GiB). */
static inline bool rc_rate_take(uint64_t *tat, uint64_t now, uint64_t rate, uint64_t burst,
                                uint64_t cost)
{
    uint64_t t = *tat > now ? *tat : now;
    uint64_t next = t + cost * RC_RATE_NS / rate;
    uint64_t window = (burst ? burst : 1) * RC_RATE_NS / rate; /* burst's worth of time */
    if (next - now > window && t > now) return false; /* over, and not full (see above) */
    *tat = next;
    return true;
}

/* rc_rate_wait_ns is how long after now a take of cost tokens would be allowed (0: now), for a
 * client told to retry later. */
static inline uint64_t rc_rate_wait_ns(uint64_t tat, uint64_t now, uint64_t rate,
                                       uint64_t burst, uint64_t cost)
{
    if (tat <= now) return 0;
    uint64_t next = tat + cost * RC_RATE_NS / rate;
    uint64_t window = (burst ? burst : 1) * RC_RATE_NS / rate;
    if (next - now <= window) return 0;
    uint64_t wait = next - now - window;
    /* never beyond the moment the bucket is full, when any take passes */
    return wait < tat - now ? wait : tat - now;
}

#endif
