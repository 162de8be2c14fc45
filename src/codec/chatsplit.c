/* chatsplit.c — finding where each bare JSON object of the chat port ends (see chatsplit.h).
 *
 * The scan of an object is a byte loop with four pieces of state (offset, depth, inside a
 * string, after a backslash) that live in rc_chatsplit between calls, so an object arriving a
 * few bytes per read is scanned once in all, not once per read. The loop never looks past the
 * first max bytes of an object: by then it has either found the end or proved the object too
 * big, so a client streaming an endless "{[[[[..." costs at most max bytes of scanning.
 *
 * A garbage run is reported when its first byte is seen, with as much of it as the input
 * holds, rather than when the next '{' arrives: the caller can then drop those bytes at once
 * (waiting for the '{' would mean buffering garbage without limit). The flag `garbage` keeps
 * the rest of the same run, in later reads, from being reported again.
 *
 * Deliberately not done: validating the JSON (rc_json_scan does, on the object found here) and
 * recovering inside an object (after an unbalanced '{' the stream is one object until the size
 * limit closes the connection, which is what the seed server did too).
 */
#include "codec/chatsplit.h"

#include <string.h>

static bool chatsplit_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

void rc_chatsplit_init(rc_chatsplit *s, size_t max)
{
    s->max = max;
    s->scanned = 0;
    s->depth = 0;
    s->in_string = false;
    s->escape = false;
    s->garbage = false;
}

static long chatsplit_item(int kind, size_t k, int *kind_out, size_t *len)
{
    *kind_out = kind;
    *len = k;
    return (long)k;
}

/* chatsplit_outside handles p[0], which is not inside an object and not a '{'. */
static long chatsplit_outside(rc_chatsplit *s, const char *p, size_t n, int *kind, size_t *len)
{
    if (!s->garbage && chatsplit_space(p[0])) {
        size_t i = 1;
        while (i < n && chatsplit_space(p[i])) i++;
        return chatsplit_item(RC_CHATSPLIT_SPACE, i, kind, len);
    }
    const char *brace = memchr(p, '{', n);
    size_t k = brace ? (size_t)(brace - p) : n;
    int kd = s->garbage ? RC_CHATSPLIT_SPACE : RC_CHATSPLIT_GARBAGE;
    s->garbage = brace == NULL; /* the run goes on in the next read */
    return chatsplit_item(kd, k, kind, len);
}

long rc_chatsplit_next(rc_chatsplit *s, const char *p, size_t n, int *kind, size_t *len)
{
    if (n == 0) return 0;
    if (s->scanned == 0) {
        if (p[0] != '{') return chatsplit_outside(s, p, n, kind, len);
        s->garbage = false;
        s->depth = 0;
        s->in_string = false;
        s->escape = false;
    }

    size_t end = n < s->max ? n : s->max;
    size_t i = s->scanned < end ? s->scanned : end;
    size_t depth = s->depth;
    bool in_string = s->in_string, escape = s->escape;
    for (; i < end; i++) {
        char c = p[i];
        if (in_string) {
            if (escape)
                escape = false;
            else if (c == '\\')
                escape = true;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0) {
                s->scanned = 0;
                return chatsplit_item(RC_CHATSPLIT_OBJECT, i + 1, kind, len);
            }
        }
    }
    /* No end in p[0..end): the object is too big once max bytes have gone by. */
    if (end == s->max) return -1;
    s->scanned = end;
    s->depth = depth;
    s->in_string = in_string;
    s->escape = escape;
    return 0;
}
