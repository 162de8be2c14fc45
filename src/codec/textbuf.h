/* textbuf.h — appending formatted text to an rc_buf, for HTTP response bodies (JSON, the
 * Prometheus text) whose size is not known in advance.
 *
 * Errors are sticky: after a failed allocation every later append is a no-op and
 * rc_textbuf_failed() says so, so a renderer appends freely and checks once at the end.
 */
#ifndef RC_TEXTBUF_H
#define RC_TEXTBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

typedef struct rc_textbuf {
    rc_buf buf;              /* the text so far (not NUL-terminated) */
    bool failed;             /* an allocation failed: the text is incomplete */
} rc_textbuf;

/* rc_textbuf_printf appends printf-formatted text. */
void rc_textbuf_printf(rc_textbuf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* rc_textbuf_append appends n bytes. */
void rc_textbuf_append(rc_textbuf *t, const void *p, size_t n);

/* rc_textbuf_json_string appends s[0..n) as a JSON string literal (quotes included). */
void rc_textbuf_json_string(rc_textbuf *t, const char *s, size_t n);

/* rc_textbuf_release frees the text. */
void rc_textbuf_release(rc_textbuf *t);

#endif
