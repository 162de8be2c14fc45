/* outq.c — shared messages and output queues; see outq.h. */
#include "net/outq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

rc_msg *rc_msg_new(size_t len)
{
    if (len > UINT32_MAX) return NULL;
    rc_msg *m = malloc(sizeof(*m) + len);
    if (!m) return NULL;
    m->refs = 1;
    m->len = (uint32_t)len;
    m->t_recv = 0;
    return m;
}

void rc_msg_unref(rc_msg *m)
{
    if (--m->refs == 0) free(m);
}

static int grow(rc_outq *q)
{
    uint32_t cap = q->cap ? q->cap * 2 : 8;
    rc_msg **ring = malloc(cap * sizeof(*ring));
    if (!ring) return -1;
    /* Unroll the ring so the queue starts at slot 0 of the new storage. */
    for (uint32_t i = 0; i < q->count; i++) ring[i] = q->ring[(q->head + i) & (q->cap - 1)];
    free(q->ring);
    q->ring = ring;
    q->head = 0;
    q->cap = cap;
    return 0;
}

int rc_outq_push(rc_outq *q, rc_msg *m)
{
    if (q->count == q->cap && grow(q) < 0) return -1;
    q->ring[(q->head + q->count) & (q->cap - 1)] = rc_msg_ref(m);
    q->count++;
    q->bytes += m->len;
    return 0;
}

/* Drops `n` bytes from the front of the queue after they were written. */
static void advance(rc_outq *q, size_t n, rc_outq_sent_fn *sent, void *arg)
{
    q->bytes -= n;
    while (n > 0) {
        rc_msg *m = q->ring[q->head];
        size_t left = m->len - q->head_off;
        if (n < left) {
            q->head_off += (uint32_t)n;
            return;
        }
        n -= left;
        if (sent && m->t_recv) sent(arg, m);
        rc_msg_unref(m);
        q->head = (q->head + 1) & (q->cap - 1);
        q->count--;
        q->head_off = 0;
    }
}

ssize_t rc_outq_flush(rc_outq *q, int fd)
{
    return rc_outq_flush_cb(q, fd, NULL, NULL);
}

ssize_t rc_outq_flush_cb(rc_outq *q, int fd, rc_outq_sent_fn *sent, void *arg)
{
    size_t total = 0;
    while (q->count > 0) {
        struct iovec iov[RC_OUTQ_IOV];
        int n = 0;
        size_t want = 0;
        for (uint32_t i = 0; i < q->count && n < RC_OUTQ_IOV; i++, n++) {
            rc_msg *m = q->ring[(q->head + i) & (q->cap - 1)];
            size_t off = i == 0 ? q->head_off : 0;
            iov[n].iov_base = m->data + off;
            iov[n].iov_len = m->len - off;
            want += iov[n].iov_len;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        /* sendmsg rather than writev for MSG_NOSIGNAL: a peer that reset must not raise SIGPIPE. */
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return -errno;
        }
        advance(q, (size_t)w, sent, arg);
        total += (size_t)w;
        if ((size_t)w < want) break; /* the socket buffer is full: wait for EPOLLOUT */
    }
    return (ssize_t)total;
}

void rc_outq_drop_unstarted(rc_outq *q)
{
    uint32_t keep = (q->count > 0 && q->head_off > 0) ? 1 : 0;
    for (uint32_t i = keep; i < q->count; i++) {
        rc_msg *m = q->ring[(q->head + i) & (q->cap - 1)];
        q->bytes -= m->len;
        rc_msg_unref(m);
    }
    q->count = keep;
}

void rc_outq_release(rc_outq *q)
{
    for (uint32_t i = 0; i < q->count; i++) rc_msg_unref(q->ring[(q->head + i) & (q->cap - 1)]);
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
