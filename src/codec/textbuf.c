/* textbuf.c — formatted appends to a byte buffer; see textbuf.h. */
#include "codec/textbuf.h"

#include <stdarg.h>
#include <stdio.h>

#include "codec/json.h"

void rc_textbuf_printf(rc_textbuf *t, const char *fmt, ...)
{
    if (t->failed) return;
    /* Try in the room already there; most appends fit, so most cost one vsnprintf. */
    for (int pass = 0; pass < 2; pass++) {
        if (rc_buf_room(&t->buf) < 64 && rc_buf_reserve(&t->buf, 256) < 0) break;
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(rc_buf_tail(&t->buf), rc_buf_room(&t->buf), fmt, ap);
        va_end(ap);
        if (k < 0) break;
        if ((size_t)k < rc_buf_room(&t->buf)) {
            rc_buf_commit(&t->buf, (size_t)k);
            return;
        }
        if (rc_buf_reserve(&t->buf, (size_t)k + 1) < 0) break;
    }
    t->failed = true;
}

void rc_textbuf_append(rc_textbuf *t, const void *p, size_t n)
{
    if (t->failed) return;
    if (rc_buf_append(&t->buf, p, n) < 0) t->failed = true;
}

void rc_textbuf_json_string(rc_textbuf *t, const char *s, size_t n)
{
    if (t->failed) return;
    if (rc_buf_reserve(&t->buf, rc_json_escape_max(n)) < 0) {
        t->failed = true;
        return;
    }
    rc_buf_commit(&t->buf, rc_json_escape(s, n, rc_buf_tail(&t->buf)));
}

void rc_textbuf_release(rc_textbuf *t)
{
    rc_buf_release(&t->buf);
    t->failed = false;
}
