/* msg.h — shared immutable messages: encode once, send to many.
 *
 * A message is a byte string with a reference count: a broadcast is encoded into one rc_msg and
 * every recipient's output queue holds a reference to it, so fan-out to N members costs N
 * pointer pushes, not N copies. The same message may be wanted in several encodings (a room
 * message goes to WebSocket and raw TCP members): `alt` chains the other encodings of the same
 * message to the first one, each tagged with its `wire`; the first holds a reference to the
 * next, so keeping the first (a room's history does) keeps them all, and dropping it drops them.
 * What a wire tag means is the user's business (rooms/wire.h).
 *
 * Some encodings need no bytes of their own: they are a range of the first one's bytes (a raw
 * TCP line is a WebSocket text frame's payload plus the newline kept after it). A message may
 * carry one such range, `sub`, and a pointer to the message with RC_MSG_SUB set (bit 1: messages
 * are malloc-aligned) stands for that range: queues and histories hold it like any message,
 * with no allocation and no copy. Bit 0 is left to the holder (an output queue marks entries
 * with it). Code that receives a message pointer reads it through rc_msg_base and
 * rc_msg_bytes; rc_msg_ref and rc_msg_unref accept marked pointers.
 *
 * Ownership: rc_msg_new returns a message with one reference owned by the caller; whoever
 * stores a pointer takes a reference (rc_msg_ref) and drops it with rc_msg_unref. Messages are
 * single-threaded (plain counters): they never leave their loop.
 */
#ifndef RC_MSG_H
#define RC_MSG_H

#include <stddef.h>
#include <stdint.h>

typedef struct rc_msg {
    uint32_t refs;           /* references held by queues, histories and the creator */
    uint32_t len;            /* bytes in data */
    uint64_t t_recv;         /* monotonic ns the message that produced it was received (metrics) */
    struct rc_msg *alt;      /* the same message in another encoding (a reference), or NULL */
    uint32_t sub_off;        /* the range a RC_MSG_SUB pointer stands for: data[sub_off..] */
    uint32_t sub_len;        /* its bytes, 0 when the message has none */
    uint8_t wire;            /* which encoding data is in (rooms/wire.h), 0 unless set */
    uint8_t mark;            /* the user's tag (rooms: a conflation notice), 0 unless set */
    uint64_t ckey;           /* the user's key (rooms: the conflation key), 0 unless set */
    uint64_t id;             /* the user's number (rooms: the msg_id), 0 unless set */
    char data[];             /* the encoded bytes */
} rc_msg;

#define RC_MSG_SUB ((uintptr_t)2)   /* the pointer stands for the message's sub range */
#define RC_MSG_MARKS ((uintptr_t)3) /* the low bits a message pointer may carry */

/* rc_msg_base is the message a (possibly marked) pointer refers to. */
static inline rc_msg *rc_msg_base(const rc_msg *m)
{
    return (rc_msg *)((uintptr_t)m & ~RC_MSG_MARKS);
}

/* rc_msg_sub is a pointer standing for m's sub range (m must have one). */
static inline rc_msg *rc_msg_sub(const rc_msg *m)
{
    return (rc_msg *)((uintptr_t)m | RC_MSG_SUB);
}

/* rc_msg_bytes gives the bytes a (possibly marked) pointer stands for: *len of them. */
static inline const char *rc_msg_bytes(const rc_msg *m, size_t *len)
{
    const rc_msg *b = rc_msg_base(m);
    if ((uintptr_t)m & RC_MSG_SUB) {
        *len = b->sub_len;
        return b->data + b->sub_off;
    }
    *len = b->len;
    return b->data;
}

/* rc_msg_len is the length of what a (possibly marked) pointer stands for. */
static inline size_t rc_msg_len(const rc_msg *m)
{
    const rc_msg *b = rc_msg_base(m);
    return (uintptr_t)m & RC_MSG_SUB ? b->sub_len : b->len;
}

/* rc_msg_new allocates a message of len bytes (contents uninitialised); NULL when out of memory. */
rc_msg *rc_msg_new(size_t len);

/* rc_msg_copy is rc_msg_new with the bytes p[0..len) copied in. */
rc_msg *rc_msg_copy(const void *p, size_t len);

/* rc_msg_ref takes a reference and returns m as it was given (marks included). */
static inline rc_msg *rc_msg_ref(rc_msg *m)
{
    rc_msg_base(m)->refs++;
    return m;
}

/* rc__msg_free frees m and drops its reference to the next encoding (internal). */
void rc__msg_free(rc_msg *m);

/* Inline: it runs once per recipient of every broadcast, when the frame has been written. */
static inline void rc_msg_unref(rc_msg *m)
{
    m = rc_msg_base(m);
    if (--m->refs == 0) rc__msg_free(m);
}

/* rc_msg_alt finds the encoding tagged wire among m and the encodings chained to it. */
static inline rc_msg *rc_msg_alt(rc_msg *m, uint8_t wire)
{
    for (; m; m = m->alt)
        if (m->wire == wire) return m;
    return NULL;
}

/* rc_msg_add_alt chains a (taking over the caller's reference) to m's encodings. */
void rc_msg_add_alt(rc_msg *m, rc_msg *a);

/* rc_msg_drop_alt unchains m's encoding tagged wire, when there is one (not m itself), and
 * drops the chain's reference to it: whoever else holds it (an output queue) keeps it. */
void rc_msg_drop_alt(rc_msg *m, uint8_t wire);

/* rc_msg_size is the bytes of m and every encoding chained to it (memory accounting). */
size_t rc_msg_size(const rc_msg *m);

#endif
