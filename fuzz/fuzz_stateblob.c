/* fuzz_stateblob.c — libFuzzer target for src/codec/stateblob.c, the room state snapshot the
 * durable log stores (a file a crash may have damaged, or anyone with the directory edited).
 *
 * Checked on every input, read from an exact-size copy:
 *   - the reader never reads outside it (ASan), and either refuses it without calling back,
 *     or accepts it exactly when an independent walk of the format here says the entries
 *     tile the blob to its last byte;
 *   - each entry it gives lies inside the blob, in order, with the lengths and fields the
 *     bytes say, and a key of at least one byte;
 *   - re-encoding the entries (rc_state_blob_begin/add) reproduces the blob byte for byte.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/stateblob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* The format, walked independently: true when the entries tile the blob. */
static bool ref_valid(const uint8_t *p, size_t n)
{
    if (n < 12) return false;
    uint64_t count = get(p + 8, 4);
    size_t off = 12;
    for (uint64_t i = 0; i < count; i++) {
        if (n - off < 22) return false;
        uint64_t kl = get(p + off + 16, 2), pl = get(p + off + 18, 4);
        if (kl == 0 || kl + pl > n - off - 22) return false;
        off += 22 + (size_t)kl + (size_t)pl;
    }
    return off == n;
}

struct ctx {
    const char *base;
    size_t n, off, calls;
    rc_buf again;
};

static void entry(void *arg, uint64_t msg_id, uint64_t time_ms, const char *key, size_t klen,
                  const char *payload, size_t plen)
{
    struct ctx *x = arg;
    const uint8_t *h = (const uint8_t *)x->base + x->off;
    if (key != x->base + x->off + 22 || payload != key + klen || klen == 0) abort();
    if (get(h, 8) != msg_id || get(h + 8, 8) != time_ms || get(h + 16, 2) != klen ||
        get(h + 18, 4) != plen)
        abort();
    x->off += 22 + klen + plen;
    if (x->off > x->n) abort();
    x->calls++;
    if (rc_state_blob_add(&x->again, msg_id, time_ms, key, klen, payload, plen) < 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    if (!copy) abort();
    if (size) memcpy(copy, data, size);
    struct ctx x = {.base = copy, .n = size, .off = 12};
    uint64_t upto = 0;
    int r = rc_state_blob_read(copy, size, &upto, entry, &x);
    if ((r == 0) != ref_valid(data, size)) abort();
    if (r < 0 && x.calls) abort();
    if (r == 0) {
        if (upto != get(data, 8) || x.off != size || x.calls != get(data + 8, 4)) abort();
        rc_buf head = {0};
        if (rc_state_blob_begin(&head, upto, (uint32_t)x.calls) < 0) abort();
        if (rc_buf_size(&x.again) &&
            rc_buf_append(&head, rc_buf_head(&x.again), rc_buf_size(&x.again)) < 0)
            abort();
        if (rc_buf_size(&head) != size || memcmp(rc_buf_head(&head), data, size)) abort();
        rc_buf_release(&head);
    }
    rc_buf_release(&x.again);
    free(copy);
    return 0;
}
