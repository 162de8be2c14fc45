/* outq.h — a connection's output queue of shared messages (core/msg.h).
 *
 * Encode once, send many: every recipient's queue holds a reference to the one encoded
 * broadcast. A queue is a ring of message references plus the offset already sent of the first
 * one; rc_outq_flush sends as much as the socket takes, a burst of frames to one client
 * in one syscall: small frames are gathered into one contiguous buffer first (cheaper than one
 * iovec each, see outq.c), large ones go as their own iovec, up to RC_OUTQ_IOV per call.
 *
 * Ownership: rc_outq_push takes a reference of its own; the queue drops it once the message is
 * written (or dropped).
 */
#ifndef RC_OUTQ_H
#define RC_OUTQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/msg.h"

#define RC_OUTQ_IOV 64

typedef struct rc_outq {
    rc_msg **ring;           /* capacity `cap` slots, NULL when cap == 0; an entry's bit 0 is
                              * RC_OUTQ_QUIET (see rc_outq_push_quiet) */
    uint32_t head;           /* slot of the first queued message */
    uint32_t count;          /* messages queued */
    uint32_t cap;            /* slots allocated (power of two) */
    uint32_t head_off;       /* bytes of the first message already sent */
    size_t bytes;            /* bytes queued and not yet sent (for the slow-consumer cap) */
} rc_outq;

/* rc__outq_grow doubles the ring (internal to rc_outq_push). 0, or -1 when out of memory. */
int rc__outq_grow(rc_outq *q);

/* A ring entry is a message pointer (which may stand for a sub range, core/msg.h) that may
 * also carry RC_OUTQ_QUIET in bit 0: the frame is not reported to the sent callback. */
#define RC_OUTQ_QUIET ((uintptr_t)1)
static inline rc_msg *rc__outq_msg(const rc_msg *e)
{
    return (rc_msg *)((uintptr_t)e & ~RC_OUTQ_QUIET);
}

/* rc__outq_push_len queues m, whose length (rc_msg_len) the caller already knows. */
static inline int rc__outq_push_len(rc_outq *q, rc_msg *m, size_t len, uintptr_t tag)
{
    if (q->count == q->cap && rc__outq_grow(q) < 0) return -1;
    rc_msg_base(m)->refs++;
    q->ring[(q->head + q->count) & (q->cap - 1)] = (rc_msg *)((uintptr_t)m | tag);
    q->count++;
    q->bytes += len;
    return 0;
}

static inline int rc__outq_push(rc_outq *q, rc_msg *m, uintptr_t tag)
{
    return rc__outq_push_len(q, m, rc_msg_len(m), tag);
}

/* rc_outq_push queues a reference to m. Returns 0, or -1 when out of memory (not queued).
 * Inline: it runs once per recipient of every broadcast. */
static inline int rc_outq_push(rc_outq *q, rc_msg *m) { return rc__outq_push(q, m, 0); }

/* rc_outq_push_quiet is rc_outq_push for a frame that is not a fresh delivery (a history
 * replay, whose t_recv is the original receipt): sent() never sees it. */
static inline int rc_outq_push_quiet(rc_outq *q, rc_msg *m)
{
    return rc__outq_push(q, m, RC_OUTQ_QUIET);
}

/* rc_outq_flush writes queued bytes to fd until the queue is empty or the socket is full.
 * Returns the bytes written (>= 0; fewer than queued means the socket is full), or -errno on a
 * write error other than EAGAIN. */
ssize_t rc_outq_flush(rc_outq *q, int fd);

/* Called by rc_outq_flush_cb for messages whose last byte was just written and whose t_recv is
 * set (delivery-latency metrics): once per run of n consecutive such messages with the same
 * t_recv, which is every frame a client gets from one loop wake-up, so the sample is computed
 * once per run rather than once per delivery. */
typedef void rc_outq_sent_fn(void *arg, uint64_t t_recv, uint32_t n);

/* rc_outq_flush_cb is rc_outq_flush that also calls sent (when not NULL) with arg. */
ssize_t rc_outq_flush_cb(rc_outq *q, int fd, rc_outq_sent_fn *sent, void *arg);

/* rc_outq_advance drops n bytes from the front of the queue once they are written (calling
 * sent as rc_outq_flush_cb does). */
void rc_outq_advance(rc_outq *q, size_t n, rc_outq_sent_fn *sent, void *arg);

/* rc_outq_gather gives up to max bytes from the front of the queue as one contiguous run, for
 * writers that take one buffer per call (TLS: one record each): *p points into the first
 * frame when it alone fills max, else the bytes of consecutive frames are copied into buf
 * (max bytes). Returns the length; nothing is consumed (rc_outq_advance does that). */
size_t rc_outq_gather(const rc_outq *q, char *buf, size_t max, const char **p);

/* rc_outq_drop_unstarted drops every message not yet partly sent (a partly sent frame must be
 * completed to keep the stream valid). Used when a slow consumer is cut off. */
void rc_outq_drop_unstarted(rc_outq *q);

/* Editing frames not yet started, for conflation (rooms/room.c): positions count from the
 * head; the first frame, when partly sent, is never found or changed. rc_outq_find returns the
 * position of the last such frame whose message (rc_msg_base) has ckey and mark, looking at no
 * more than RC_OUTQ_FIND_MAX frames from the tail, or -1. rc_outq_at is the frame at pos.
 * rc_outq_set replaces it with m (taking a reference; not a fresh delivery for the sent
 * callback), or removes it when m is NULL, keeping the order of the others. */
#define RC_OUTQ_FIND_MAX 4096
long rc_outq_find(const rc_outq *q, uint64_t ckey, uint8_t mark);
rc_msg *rc_outq_at(const rc_outq *q, long pos);
void rc_outq_set(rc_outq *q, long pos, rc_msg *m);

/* rc_outq_release drops every reference and frees the ring. */
void rc_outq_release(rc_outq *q);

/* rc_outq_shrink frees the ring of an empty queue that grew large (memory of idle clients). */
void rc_outq_shrink(rc_outq *q);

#endif
