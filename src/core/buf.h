/* buf.h — a growable byte buffer with a consumed prefix.
 *
 * Invariants: data[off..len) holds the unconsumed bytes; off <= len <= cap; data is NULL only
 * when cap is 0. Writers reserve space, write into rc_buf_tail(), then commit; readers look at
 * rc_buf_head() and consume from the front. Consuming is O(1) (it moves off); the bytes are
 * moved down only when a reservation would otherwise grow the buffer, so a stream that is read
 * as fast as it is written never reallocates. rc_buf_release frees the storage, which is how a
 * connection gives its memory back while it is idle.
 */
#ifndef RC_BUF_H
#define RC_BUF_H

#include <stddef.h>

typedef struct rc_buf {
    char *data;              /* storage, NULL when cap == 0 */
    size_t off;              /* start of unconsumed bytes */
    size_t len;              /* end of valid bytes */
    size_t cap;              /* allocated bytes */
} rc_buf;

#define RC_BUF_INIT {NULL, 0, 0, 0}

static inline char *rc_buf_head(const rc_buf *b) { return b->data + b->off; }
static inline size_t rc_buf_size(const rc_buf *b) { return b->len - b->off; }
static inline char *rc_buf_tail(const rc_buf *b) { return b->data + b->len; }
static inline size_t rc_buf_room(const rc_buf *b) { return b->cap - b->len; }

/* rc_buf_reserve makes room for at least n more bytes after the tail. Returns 0, or -1 when
 * memory is exhausted (the buffer is unchanged). */
int rc_buf_reserve(rc_buf *b, size_t n);
/* rc_buf_commit marks n bytes written at the tail as valid. */
static inline void rc_buf_commit(rc_buf *b, size_t n) { b->len += n; }
/* rc_buf_append copies n bytes to the tail. Returns 0 or -1. */
int rc_buf_append(rc_buf *b, const void *p, size_t n);
/* rc_buf_consume drops n bytes from the front; an emptied buffer restarts at offset 0. */
void rc_buf_consume(rc_buf *b, size_t n);
/* rc_buf_reset empties the buffer and keeps its storage. */
static inline void rc_buf_reset(rc_buf *b) { b->off = b->len = 0; }
/* rc_buf_release frees the storage; the buffer is empty and usable afterwards. */
void rc_buf_release(rc_buf *b);

#endif
