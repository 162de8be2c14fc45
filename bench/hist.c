/* hist.c — log-linear latency histogram.
 *
 * Why not a fixed-width histogram: latencies here span from a few microseconds (an idle
 * loopback) to seconds (a server that stalls a room), and p99.9 must stay meaningful at both
 * ends. A value v lands in bucket (e, k): e is the position of its highest set bit and k the next
 * RB_HIST_SUB_BITS bits, so every bucket is at most 1/32 of its value wide. Values below
 * RB_HIST_SUB get exact buckets. Recording is a handful of integer operations, cheap enough to do
 * for every delivery in the hot loop.
 */
#include "bench.h"

#include <string.h>

void rb_hist_init(struct rb_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

static unsigned hist_index(uint64_t v)
{
    if (v < RB_HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);      /* v in [2^e, 2^(e+1)) */
    unsigned k = (unsigned)(v >> (e - RB_HIST_SUB_BITS)) & (RB_HIST_SUB - 1);
    return (e - RB_HIST_SUB_BITS + 1) * RB_HIST_SUB + k;
}

/* Largest value that maps to bucket i. */
static uint64_t hist_upper(unsigned i)
{
    if (i < RB_HIST_SUB)
        return i;
    unsigned e = i / RB_HIST_SUB + RB_HIST_SUB_BITS - 1, k = i % RB_HIST_SUB;
    uint64_t lo = (1ull << e) + ((uint64_t)k << (e - RB_HIST_SUB_BITS));
    return lo + (1ull << (e - RB_HIST_SUB_BITS)) - 1;
}

void rb_hist_add(struct rb_hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->n++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
    if (v < h->min)
        h->min = v;
}

void rb_hist_merge(struct rb_hist *dst, const struct rb_hist *src)
{
    for (unsigned i = 0; i < RB_HIST_BUCKETS; i++)
        dst->count[i] += src->count[i];
    dst->n += src->n;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
    if (src->min < dst->min)
        dst->min = src->min;
}

uint64_t rb_hist_quantile(const struct rb_hist *h, double q)
{
    if (h->n == 0)
        return 0;
    /* The rank of the wanted value, 1-based: the smallest value with at least q*n at or below. */
    uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > h->n)
        rank = h->n;
    uint64_t seen = 0;
    for (unsigned i = 0; i < RB_HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            uint64_t v = hist_upper(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}
