/* utf8.h — incremental UTF-8 validation (RFC 3629).
 *
 * WebSocket text messages must be valid UTF-8 (RFC 6455 §8.1), and a fragmented message may
 * split a code point across frames, so the validator keeps its state between calls. It fails
 * as early as possible: the first byte that cannot continue a valid sequence makes the result
 * RC_UTF8_INVALID, even when the message is not finished (conformance suites check that a
 * server fails fast). Overlong forms, UTF-16 surrogates (U+D800..U+DFFF) and code points above
 * U+10FFFF are invalid. Allocates nothing.
 */
#ifndef RC_UTF8_H
#define RC_UTF8_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

enum {
    RC_UTF8_OK = 0,          /* everything fed so far is valid and ends on a code point boundary */
    RC_UTF8_INCOMPLETE = 1,  /* valid so far, but the last code point is not finished */
    RC_UTF8_INVALID = -1,    /* invalid; stays invalid for every later call */
};

typedef struct rc_utf8 {
    uint32_t state;          /* internal: 0 = at a boundary; encodes pending bytes and range */
} rc_utf8;

/* rc_utf8_init resets v to the start of a new text. */
void rc_utf8_init(rc_utf8 *v);

/* rc_utf8_feed validates the next n bytes of the text; returns one of the RC_UTF8_* values. */
int rc_utf8_feed(rc_utf8 *v, const uint8_t *p, size_t n);

/* rc_utf8_valid is true when p[0..n) is a complete, valid UTF-8 text. */
bool rc_utf8_valid(const uint8_t *p, size_t n);

#endif
