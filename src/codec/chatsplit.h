/* chatsplit.h — splitting the chat port's stream of bare JSON objects (docs/tcp.md).
 *
 * The seed chat client sends JSON objects back to back with nothing between them, and one read
 * may hold one and a half of them. rc_chatsplit_next finds where each object ends by its
 * structure alone: braces and brackets outside strings, strings with their backslash escapes.
 * It does not check that the object is JSON, nor that '}' closes a '{' rather than a '[' (the
 * caller runs rc_json_scan on the object, which does); it only has to find the end so that one
 * bad object does not swallow the next. Between objects:
 *
 *   - whitespace (space, \t, \r, \n) is consumed silently;
 *   - '{' starts an object, which ends at the byte where the count of open '{' and '[' minus
 *     '}' and ']' outside strings is back to 0;
 *   - any other byte starts a garbage run, which extends up to, not including, the next '{'
 *     (whitespace and stray '}' included) and is reported once, however many reads it spans.
 *
 * Like the other codecs it never allocates and resumes on partial input: when it returns 0 the
 * caller keeps p[0..n) and calls again with those bytes followed by more; the scan of a partial
 * object carries on from where it stopped instead of starting over. The objects and garbage runs
 * it reports, and where they start, do not depend on how the input is split into reads (the
 * number of RC_CHATSPLIT_SPACE results does).
 */
#ifndef RC_CHATSPLIT_H
#define RC_CHATSPLIT_H

#include <stddef.h>
#include <stdbool.h>

enum rc_chatsplit_kind {
    RC_CHATSPLIT_SPACE,      /* consumed silently: whitespace between objects, or more of a
                                garbage run that was already reported */
    RC_CHATSPLIT_OBJECT,     /* p[0..len) is one object, from its '{' to its last '}' or ']' */
    RC_CHATSPLIT_GARBAGE,    /* p[0..len) starts a run of bytes outside any object */
};

typedef struct rc_chatsplit {
    size_t max;              /* largest object accepted, in bytes */
    size_t scanned;          /* bytes of the current partial object already scanned; 0 when
                                not inside an object */
    size_t depth;            /* '{' and '[' minus '}' and ']' seen outside strings so far */
    bool in_string;          /* the scan stopped inside a string */
    bool escape;             /* ... right after a backslash in that string */
    bool garbage;            /* a garbage run was reported and has not met a '{' yet */
} rc_chatsplit;

/* rc_chatsplit_init prepares s for a new connection whose objects are at most max bytes. */
void rc_chatsplit_init(rc_chatsplit *s, size_t max);

/* rc_chatsplit_next finds the next item at the start of p[0..n), the connection's unconsumed
 * input. Returns the bytes consumed (> 0), which is also the item's length: *kind is an
 * enum rc_chatsplit_kind and *len the same count, the item being p[0..*len). Returns 0 when more
 * input is needed (nothing consumed; call again with the same bytes followed by more), or -1
 * when the object that starts at p[0] is longer than max bytes: that is decided as soon as max
 * bytes of it have gone by without its end, and the connection is then closed. The caller's
 * input buffer must be able to hold max bytes, or a 0 result could wait for bytes that never
 * fit. */
long rc_chatsplit_next(rc_chatsplit *s, const char *p, size_t n, int *kind, size_t *len);

#endif
