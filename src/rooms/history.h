/* history.h — a room's recent messages, kept after the fact so clients can catch up.
 *
 * The history holds references to the very frames that were broadcast (rc_msg, with the other
 * wire formats it was encoded in chained to it), so keeping a message costs one pointer and two
 * integers, and replaying it to a reconnecting client is a reference pushed onto its output
 * queue — nothing is re-encoded. Entries are evicted from the
 * front by count, bytes and age (the retention limits), never from the middle, so what is kept
 * is always a contiguous run of msg_ids ending at the room's last message.
 */
#ifndef RC_HISTORY_H
#define RC_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"

typedef struct rc_hist_entry {
    uint64_t msg_id;         /* id of the message */
    uint64_t time_ms;        /* wall-clock time it was sequenced, ms since the Unix epoch */
    rc_msg *frame;           /* the encoded frame (a reference) */
} rc_hist_entry;

typedef struct rc_history {
    rc_hist_entry *ring;     /* cap entries, NULL until the first push */
    uint32_t head;           /* index of the oldest entry */
    uint32_t count;          /* entries kept */
    uint32_t cap;            /* allocated entries (power of two) */
    size_t bytes;            /* bytes kept: every encoding of every message (rc_msg_size) */
} rc_history;

/* Retention limits; a zero max_count disables history. */
typedef struct rc_retention {
    uint32_t max_count;      /* messages kept per room */
    size_t max_bytes;        /* frame bytes kept per room */
    uint64_t max_age_ms;     /* age after which a message is dropped, 0 = no age limit */
} rc_retention;

/* rc_history_push appends (taking a reference to frame) and evicts what the limits exclude.
 * Returns 0, or -1 when out of memory (the message is then not kept, older ones are). */
int rc_history_push(rc_history *h, const rc_retention *r, uint64_t msg_id, uint64_t time_ms,
                    rc_msg *frame);

/* rc_history_drop_first drops the oldest entry (h must not be empty). */
void rc_history_drop_first(rc_history *h);

/* rc_history_expire drops entries older than the age limit at now_ms. */
void rc_history_expire(rc_history *h, const rc_retention *r, uint64_t now_ms);

/* rc_history_first_id is the oldest msg_id kept, or 0 when empty. */
uint64_t rc_history_first_id(const rc_history *h);

/* rc_history_at returns the i-th oldest entry (i < count). */
static inline const rc_hist_entry *rc_history_at(const rc_history *h, uint32_t i)
{
    return &h->ring[(h->head + i) & (h->cap - 1)];
}

/* rc_history_find returns the index of the first entry with msg_id > since (count if none). */
uint32_t rc_history_find(const rc_history *h, uint64_t since);

/* rc_history_release drops every reference and frees the ring. */
void rc_history_release(rc_history *h);

#endif
