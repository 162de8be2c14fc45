/* stateblob.c — see stateblob.h. */
#include "codec/stateblob.h"

#include <string.h>

static void put(unsigned char *w, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) w[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get(const char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | (unsigned char)p[i];
    return v;
}

int rc_state_blob_begin(rc_buf *out, uint64_t upto, uint32_t count)
{
    unsigned char h[12];
    put(h, upto, 8);
    put(h + 8, count, 4);
    return rc_buf_append(out, h, sizeof(h));
}

int rc_state_blob_add(rc_buf *out, uint64_t msg_id, uint64_t time_ms, const char *key,
                      size_t klen, const char *payload, size_t plen)
{
    if (klen > UINT16_MAX || plen > UINT32_MAX) return -1;
    unsigned char h[22];
    put(h, msg_id, 8);
    put(h + 8, time_ms, 8);
    put(h + 16, klen, 2);
    put(h + 18, plen, 4);
    if (rc_buf_reserve(out, sizeof(h) + klen + plen) < 0) return -1;
    char *w = rc_buf_tail(out);
    memcpy(w, h, sizeof(h));
    if (klen) memcpy(w + sizeof(h), key, klen);
    if (plen) memcpy(w + sizeof(h) + klen, payload, plen);
    rc_buf_commit(out, sizeof(h) + klen + plen);
    return 0;
}

/* Walks the entries; with entry NULL only checks them. */
static int walk(const char *blob, size_t len, rc_state_blob_fn *entry, void *arg)
{
    uint32_t count = (uint32_t)get(blob + 8, 4);
    size_t off = 12;
    for (uint32_t i = 0; i < count; i++) {
        if (len - off < 22) return -1;
        const char *h = blob + off;
        size_t klen = (size_t)get(h + 16, 2), plen = (size_t)get(h + 18, 4);
        if (klen == 0 || len - off - 22 < klen || len - off - 22 - klen < plen) return -1;
        if (entry)
            entry(arg, get(h, 8), get(h + 8, 8), h + 22, klen, h + 22 + klen, plen);
        off += 22 + klen + plen;
    }
    return off == len ? 0 : -1;
}

int rc_state_blob_read(const char *blob, size_t len, uint64_t *upto, rc_state_blob_fn *entry,
                       void *arg)
{
    if (len < 12 || walk(blob, len, NULL, NULL) < 0) return -1;
    *upto = get(blob, 8);
    walk(blob, len, entry, arg);
    return 0;
}
