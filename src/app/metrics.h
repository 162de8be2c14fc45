/* metrics.h — latency histograms fed from the hot path, and GET /metrics in the Prometheus
 * text exposition format (version 0.0.4).
 *
 * Cheap enough to leave on under full load: a sample is a division, a count-leading-zeros and
 * three increments on plain integers owned by the loop (no atomics, no locks, no allocation),
 * and time comes from clocks the loop reads anyway or once per iteration — never per event.
 * Rendering walks the counters and the rooms' count only; it runs when /metrics is scraped.
 *
 * Histograms have fixed power-of-two buckets: upper bounds of 1, 2, 4 ... 2^22 microseconds
 * (1 µs to about 4.2 s) and +Inf. Fixed buckets keep every scrape comparable and the sample
 * path branch-free of configuration.
 */
#ifndef RC_METRICS_H
#define RC_METRICS_H

#include <stdint.h>

#include "core/buf.h"
#include "core/loop.h"

struct rc_server;

#define RC_HIST_FINITE 23    /* finite buckets: le = 2^k µs for k = 0..22 */

typedef struct rc_hist {
    uint64_t bucket[RC_HIST_FINITE + 1]; /* samples per bucket, not cumulative; last is +Inf */
    uint64_t sum_ns;         /* sum of all samples, ns */
    uint64_t count;          /* samples */
} rc_hist;

/* rc_hist_add_n records n samples of ns nanoseconds each. */
static inline void rc_hist_add_n(rc_hist *h, uint64_t ns, uint64_t n)
{
    uint64_t us = (ns + 999) / 1000; /* rounded up: a sample is never below its bucket's bound */
    unsigned k = us <= 1 ? 0 : 64 - (unsigned)__builtin_clzll(us - 1); /* ceil(log2(us)) */
    if (k > RC_HIST_FINITE) k = RC_HIST_FINITE;
    h->bucket[k] += n;
    h->sum_ns += ns * n;
    h->count += n;
}

/* rc_hist_add records one sample of ns nanoseconds. */
static inline void rc_hist_add(rc_hist *h, uint64_t ns) { rc_hist_add_n(h, ns, 1); }

typedef struct rc_metrics {
    rc_hist delivery;        /* receipt to write: from the loop wake-up that produced a
                                WebSocket frame to its last byte written, per recipient */
    rc_hist iteration;       /* busy time of one loop iteration (events, timers, flush) */
    uint64_t http_requests;  /* HTTP requests answered (upgrades included) */
    uint64_t api_publishes;  /* messages published through POST /api/rooms/{room}/messages */
    uint64_t api_kicks;      /* clients disconnected through DELETE /api/clients/{id} */
    uint64_t api_room_closes; /* rooms closed through DELETE /api/rooms/{room} */
} rc_metrics;

/* rc_metrics_start installs the loop's iteration hook for srv (at server creation). */
void rc_metrics_start(struct rc_server *srv);

/* rc_metrics_on_sent is the connections' `sent` hook (rc_outq_sent_fn, arg is the server): it
 * records the delivery latency of n frames received at t_recv that were just written
 * completely. */
void rc_metrics_on_sent(void *arg, uint64_t t_recv, uint32_t n);

/* rc_metrics_render appends the Prometheus text of every metric to out. Returns 0, or -1 when
 * out of memory. */
int rc_metrics_render(const struct rc_server *srv, rc_buf *out);

#endif
