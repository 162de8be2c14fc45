/* outq.c — output queues; see outq.h. */
#include "transport/outq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "core/ring.h"

int rc__outq_grow(rc_outq *q)
{
    uint32_t cap = q->cap ? q->cap * 2 : 8;
    rc_msg **ring = rc_ring_regrow(q->ring, q->cap, q->head, q->count, cap, sizeof(*ring));
    if (!ring) return -1;
    q->ring = ring;
    q->head = 0;
    q->cap = cap;
    return 0;
}

void rc_outq_advance(rc_outq *q, size_t n, rc_outq_sent_fn *sent, void *arg)
{
    uint64_t run_t = 0; /* t_recv of the run of completed messages not yet reported */
    uint32_t run_n = 0;
    q->bytes -= n;
    while (n > 0) {
        rc_msg *e = q->ring[q->head], *m = rc__outq_msg(e), *b = rc_msg_base(m);
        size_t left = rc_msg_len(m) - q->head_off;
        if (n < left) {
            q->head_off += (uint32_t)n;
            break;
        }
        n -= left;
        if (sent && b->t_recv && !((uintptr_t)e & RC_OUTQ_QUIET)) {
            if (run_n && b->t_recv != run_t) {
                sent(arg, run_t, run_n);
                run_n = 0;
            }
            run_t = b->t_recv;
            run_n++;
        }
        rc_msg_unref(m);
        q->head = (q->head + 1) & (q->cap - 1);
        q->count--;
        q->head_off = 0;
    }
    if (run_n) sent(arg, run_t, run_n);
}

ssize_t rc_outq_flush(rc_outq *q, int fd)
{
    return rc_outq_flush_cb(q, fd, NULL, NULL);
}

/* Small frames are copied into one contiguous staging buffer before the write instead of being
 * handed to the kernel as one iovec each. The kernel copies every byte anyway, and on this
 * machine it pays much more per iovec segment than a user-space memcpy does: a loopback TCP
 * sendmsg() of 33 frames of 145 bytes (the fanout benchmark's typical batch) cost 10.9 us with
 * 33 iovecs and 8.5 us as one contiguous send() (memcpy included); in the server's fanout
 * profile, _copy_from_iter was 15% of all CPU. Large frames keep their own iovec: for them the
 * per-segment cost is small next to the bytes. The buffer is per thread, not per queue: a
 * flush never outlives the call, and an output queue belongs to its loop's thread (outq.h), so
 * one loop per thread (the sharded design server.h leaves room for) needs no locking. Bytes
 * copied but not accepted by a full socket are simply copied again next time; at most one
 * buffer's worth. */
#define STAGE_FRAME_MAX 2048u
#define STAGE_SIZE (32u * 1024u)

static _Thread_local char stage[STAGE_SIZE];

ssize_t rc_outq_flush_cb(rc_outq *q, int fd, rc_outq_sent_fn *sent, void *arg)
{
    size_t total = 0;
    while (q->count > 0) {
        struct iovec iov[RC_OUTQ_IOV];
        int n = 0;
        size_t want = 0, staged = 0;
        for (uint32_t i = 0; i < q->count; i++) {
            size_t off = i == 0 ? q->head_off : 0, len;
            const char *p = rc_msg_bytes(rc__outq_msg(q->ring[(q->head + i) & (q->cap - 1)]), &len);
            p += off;
            len -= off;
            if (len <= STAGE_FRAME_MAX) {
                if (staged + len > STAGE_SIZE) break;
                /* Extend the last iovec when it ends where the staged bytes do. */
                if (n == 0 || (char *)iov[n - 1].iov_base + iov[n - 1].iov_len != stage + staged) {
                    if (n == RC_OUTQ_IOV) break;
                    iov[n].iov_base = stage + staged;
                    iov[n].iov_len = 0;
                    n++;
                }
                memcpy(stage + staged, p, len);
                iov[n - 1].iov_len += len;
                staged += len;
            } else {
                if (n == RC_OUTQ_IOV) break;
                iov[n].iov_base = (void *)p;
                iov[n].iov_len = len;
                n++;
            }
            want += len;
        }
        /* send() for the usual single buffer: no msghdr or iovec array to copy in. */
        ssize_t w;
        if (n == 1) {
            w = send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
            /* sendmsg rather than writev for MSG_NOSIGNAL: a peer that reset must not raise
             * SIGPIPE. */
            w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return -errno;
        }
        rc_outq_advance(q, (size_t)w, sent, arg);
        total += (size_t)w;
        if ((size_t)w < want) break; /* the socket buffer is full: wait for EPOLLOUT */
    }
    return (ssize_t)total;
}

size_t rc_outq_gather(const rc_outq *q, char *buf, size_t max, const char **p)
{
    size_t got = 0;
    for (uint32_t i = 0; i < q->count && got < max; i++) {
        size_t off = i == 0 ? q->head_off : 0, len;
        const char *b = rc_msg_bytes(rc__outq_msg(q->ring[(q->head + i) & (q->cap - 1)]), &len);
        b += off;
        len -= off;
        if (i == 0 && len >= max) { /* a big frame: encrypt straight from it, no copy */
            *p = b;
            return max;
        }
        if (len > max - got) len = max - got;
        memcpy(buf + got, b, len);
        got += len;
    }
    *p = buf;
    return got;
}

void rc_outq_drop_unstarted(rc_outq *q)
{
    uint32_t keep = (q->count > 0 && q->head_off > 0) ? 1 : 0;
    for (uint32_t i = keep; i < q->count; i++) {
        rc_msg *m = rc__outq_msg(q->ring[(q->head + i) & (q->cap - 1)]);
        q->bytes -= rc_msg_len(m);
        rc_msg_unref(m);
    }
    q->count = keep;
}

long rc_outq_find(const rc_outq *q, uint64_t ckey, uint8_t mark)
{
    uint32_t first = (q->count > 0 && q->head_off > 0) ? 1 : 0;
    uint32_t low = q->count > RC_OUTQ_FIND_MAX ? q->count - RC_OUTQ_FIND_MAX : 0;
    if (low < first) low = first;
    for (uint32_t i = q->count; i-- > low;) {
        const rc_msg *b = rc_msg_base(rc__outq_msg(q->ring[(q->head + i) & (q->cap - 1)]));
        if (b->ckey == ckey && b->mark == mark) return (long)i;
    }
    return -1;
}

rc_msg *rc_outq_at(const rc_outq *q, long pos)
{
    return rc__outq_msg(q->ring[(q->head + (uint32_t)pos) & (q->cap - 1)]);
}

void rc_outq_set(rc_outq *q, long pos, rc_msg *m)
{
    uint32_t mask = q->cap - 1, at = (q->head + (uint32_t)pos) & mask;
    rc_msg *old = rc__outq_msg(q->ring[at]);
    q->bytes -= rc_msg_len(old);
    rc_msg_unref(old);
    if (m) {
        q->ring[at] = (rc_msg *)((uintptr_t)rc_msg_ref(m) | RC_OUTQ_QUIET);
        q->bytes += rc_msg_len(m);
        return;
    }
    for (uint32_t i = (uint32_t)pos; i + 1 < q->count; i++)
        q->ring[(q->head + i) & mask] = q->ring[(q->head + i + 1) & mask];
    q->count--;
}

void rc_outq_release(rc_outq *q)
{
    for (uint32_t i = 0; i < q->count; i++)
        rc_msg_unref(rc__outq_msg(q->ring[(q->head + i) & (q->cap - 1)]));
    free(q->ring);
    memset(q, 0, sizeof(*q));
}

void rc_outq_shrink(rc_outq *q)
{
    if (q->count == 0 && q->cap > 64) {
        free(q->ring);
        q->ring = NULL;
        q->cap = q->head = q->head_off = 0;
    }
}
