/* fuzz_clwire.c — libFuzzer target for src/cluster/clwire.c (the --redis URL and the message
 * on a room's Redis channel, a message or a presence event).
 *
 * The first byte picks the parser, the rest is its input (a message, a batch of messages and a
 * presence event share one). Checked on every input: a message
 * that decodes points inside the input, re-encodes to exactly the same bytes, and every prefix
 * that cuts it before its payload is rejected; a URL that parses describes itself in a form
 * that parses again to the same endpoint (host, port, path, db) and carries no credentials; a
 * channel name that yields a room yields the same room once rebuilt with rc_clwire_name.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/clwire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_msg(const char *p, size_t n)
{
    rc_clwire_msg m;
    if (rc_clwire_msg_decode(p, n, &m) < 0) return;
    if (m.epoch < p || m.payload < p || m.payload + m.payload_len != p + n) abort();
    if (m.msg_id == 0 || m.msg_id > RC_CLWIRE_MSG_ID_MAX) abort();
    if (!rc_clwire_epoch_ok(m.epoch, m.epoch_len)) abort();
    char *out = malloc(n + 1);
    int k = rc_clwire_msg_encode(out, n + 1, m.msg_id, m.epoch, m.epoch_len, m.payload,
                                 m.payload_len);
    if (k < 0 || (size_t)k != n || memcmp(out, p, n) != 0) abort();
    free(out);
    size_t head = (size_t)(m.payload - p);
    for (size_t i = 0; i < head; i++)
        if (rc_clwire_msg_decode(p, i, &m) == 0) abort();
}

/* A batch (the form of several messages of one script call) holds the same way: every message
 * points inside the input, the count and ids agree, it re-encodes to the same bytes, and every
 * cut short is rejected. */
static void check_batch(const char *p, size_t n)
{
    rc_clwire_batch b;
    if (rc_clwire_batch_decode(p, n, &b) < 0) return;
    if (b.count < 2 || b.count > RC_CLWIRE_BATCH_MAX || b.first == 0 ||
        b.first + b.count - 1 > RC_CLWIRE_MSG_ID_MAX || !rc_clwire_epoch_ok(b.epoch, b.epoch_len))
        abort();
    const void **pl = malloc(b.count * sizeof(*pl));
    size_t *lens = malloc(b.count * sizeof(*lens));
    rc_clwire_msg m;
    size_t k = 0;
    while (rc_clwire_batch_next(&b, &m)) {
        if (k >= b.count || m.msg_id != b.first + k || m.payload < p ||
            m.payload + m.payload_len > p + n)
            abort();
        pl[k] = m.payload;
        lens[k++] = m.payload_len;
    }
    if (k != b.count) abort();
    char *out = malloc(n + 1);
    int e = rc_clwire_batch_encode(out, n + 1, b.first, b.epoch, b.epoch_len, pl, lens, k);
    if (e < 0 || (size_t)e != n || memcmp(out, p, n) != 0) abort();
    for (size_t i = 0; i < n; i++)
        if (rc_clwire_batch_decode(p, i, &b) == 0) abort();
    free(out);
    free(pl);
    free(lens);
}

/* A presence event (the other kind of message on a room's channel) holds the same way. */
static void check_pres(const char *p, size_t n)
{
    rc_clwire_pres e;
    if (rc_clwire_pres_decode(p, n, &e) < 0) return;
    if (e.node < p || e.info < p || e.info + e.info_len != p + n || e.version == 0) abort();
    if (!rc_clwire_epoch_ok(e.node, e.node_len) || e.node_len > RC_CLWIRE_NODE_MAX) abort();
    char *out = malloc(n + 1);
    int k = rc_clwire_pres_encode(out, n + 1, &e);
    if (k < 0 || (size_t)k != n || memcmp(out, p, n) != 0) abort();
    free(out);
    size_t head = (size_t)(e.info - p);
    for (size_t i = 0; i < head; i++)
        if (rc_clwire_pres_decode(p, i, &e) == 0) abort();
}

static void check_url(const char *p, size_t n)
{
    rc_clwire_url u, v;
    const char *why;
    if (rc_clwire_url_parse(p, n, &u, &why) < 0) {
        if (!why) abort();
        return;
    }
    char d[512];
    size_t dl = rc_clwire_url_describe(&u, d, sizeof(d));
    if (rc_clwire_url_parse(d, dl, &v, &why) < 0) abort();
    if (u.is_unix != v.is_unix || strcmp(u.host, v.host) != 0 || u.port != v.port ||
        strcmp(u.path, v.path) != 0 || u.db != v.db || v.has_pass)
        abort();
}

static void check_channel(const char *p, size_t n)
{
    const char *room;
    size_t rl;
    if (rc_clwire_channel_room(p, n, "rc", &room, &rl) < 0) return;
    char *out = malloc(n + 1);
    int k = rc_clwire_name(out, n + 1, "rc", RC_CLWIRE_CHANNEL, room, rl, NULL, 0);
    if (k < 0 || (size_t)k != n || memcmp(out, p, n) != 0) abort();
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0: check_msg(p, n); check_pres(p, n); check_batch(p, n); break;
    case 1: check_url(p, n); break;
    default: check_channel(p, n); break;
    }
    return 0;
}
