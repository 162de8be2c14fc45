/* history.c — per-room message history; see history.h. */
#include "rooms/history.h"

#include <stdlib.h>
#include <string.h>

#include "core/ring.h"

static void drop_oldest(rc_history *h)
{
    rc_hist_entry *e = &h->ring[h->head];
    h->bytes -= rc_msg_size(e->frame);
    rc_msg_unref(e->frame);
    h->head = (h->head + 1) & (h->cap - 1);
    h->count--;
}

static int grow(rc_history *h)
{
    uint32_t cap = h->cap ? h->cap * 2 : 16;
    rc_hist_entry *ring = rc_ring_regrow(h->ring, h->cap, h->head, h->count, cap, sizeof(*ring));
    if (!ring) return -1;
    h->ring = ring;
    h->head = 0;
    h->cap = cap;
    return 0;
}

int rc_history_push(rc_history *h, const rc_retention *r, uint64_t msg_id, uint64_t time_ms,
                    rc_msg *frame)
{
    if (r->max_count == 0) return 0;
    /* What is kept must stay a contiguous run ending at the newest message (recovery relies
     * on it), so a message that cannot be kept empties the history instead of leaving a hole. */
    size_t size = rc_msg_size(frame);
    if (size > r->max_bytes) {
        while (h->count) drop_oldest(h);
        return 0;
    }
    while (h->count > 0 && (h->count >= r->max_count || h->bytes + size > r->max_bytes))
        drop_oldest(h);
    if (h->count == h->cap && grow(h) < 0) {
        while (h->count) drop_oldest(h);
        return -1;
    }
    h->ring[(h->head + h->count) & (h->cap - 1)] =
        (rc_hist_entry){.msg_id = msg_id, .time_ms = time_ms, .frame = rc_msg_ref(frame)};
    h->count++;
    h->bytes += size;
    return 0;
}

void rc_history_drop_first(rc_history *h)
{
    drop_oldest(h);
}

void rc_history_expire(rc_history *h, const rc_retention *r, uint64_t now_ms)
{
    if (r->max_age_ms == 0) return;
    while (h->count > 0 && h->ring[h->head].time_ms + r->max_age_ms <= now_ms) drop_oldest(h);
    if (h->count == 0 && h->ring) {
        free(h->ring);
        h->ring = NULL;
        h->cap = h->head = 0;
    }
}

uint64_t rc_history_first_id(const rc_history *h)
{
    return h->count ? h->ring[h->head].msg_id : 0;
}

uint32_t rc_history_find(const rc_history *h, uint64_t since)
{
    /* Ids are contiguous, so the position is arithmetic, not a search. */
    uint64_t first = rc_history_first_id(h);
    if (h->count == 0 || since < first) return 0;
    uint64_t i = since - first + 1;
    return i > h->count ? h->count : (uint32_t)i;
}

void rc_history_release(rc_history *h)
{
    while (h->count) drop_oldest(h);
    free(h->ring);
    memset(h, 0, sizeof(*h));
}
