/* msg.c — shared messages; see msg.h. */
#include "core/msg.h"

#include <stdlib.h>
#include <string.h>

rc_msg *rc_msg_new(size_t len)
{
    if (len > UINT32_MAX) return NULL;
    rc_msg *m = malloc(sizeof(*m) + len);
    if (!m) return NULL;
    m->refs = 1;
    m->len = (uint32_t)len;
    m->t_recv = 0;
    m->alt = NULL;
    m->sub_off = m->sub_len = 0;
    m->wire = m->mark = 0;
    m->ckey = m->id = 0;
    return m;
}

rc_msg *rc_msg_copy(const void *p, size_t len)
{
    rc_msg *m = rc_msg_new(len);
    if (m && len) memcpy(m->data, p, len);
    return m;
}

void rc__msg_free(rc_msg *m)
{
    /* A loop, not recursion: each encoding holds the next one's reference. */
    while (m) {
        rc_msg *next = m->alt;
        free(m);
        m = next && --next->refs == 0 ? next : NULL;
    }
}

void rc_msg_add_alt(rc_msg *m, rc_msg *a)
{
    while (m->alt) m = m->alt;
    m->alt = a;
}

void rc_msg_drop_alt(rc_msg *m, uint8_t wire)
{
    for (rc_msg *p = m; p->alt; p = p->alt) {
        rc_msg *a = p->alt;
        if (a->wire != wire) continue;
        p->alt = a->alt; /* p takes over a's reference to the next */
        a->alt = NULL;
        rc_msg_unref(a);
        return;
    }
}

size_t rc_msg_size(const rc_msg *m)
{
    size_t n = 0;
    for (; m; m = m->alt) n += m->len;
    return n;
}
