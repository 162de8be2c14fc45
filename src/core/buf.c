/* buf.c — growable byte buffer; see buf.h. */
#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

int rc_buf_reserve(rc_buf *b, size_t n)
{
    if (b->cap - b->len >= n) return 0;
    size_t used = b->len - b->off;
    /* Sliding the live bytes down is cheaper than growing when enough space is consumed. */
    if (b->off > 0 && b->cap - used >= n && b->off >= used) {
        memmove(b->data, b->data + b->off, used);
        b->off = 0;
        b->len = used;
        return 0;
    }
    size_t need = used + n, cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > ((size_t)-1) / 2) return -1;
        cap *= 2;
    }
    char *d = malloc(cap);
    if (!d) return -1;
    if (used) memcpy(d, b->data + b->off, used);
    free(b->data);
    b->data = d;
    b->off = 0;
    b->len = used;
    b->cap = cap;
    return 0;
}

int rc_buf_append(rc_buf *b, const void *p, size_t n)
{
    if (rc_buf_reserve(b, n) < 0) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void rc_buf_consume(rc_buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len) b->off = b->len = 0;
}

void rc_buf_release(rc_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}
