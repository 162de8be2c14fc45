/* fuzz_chatsplit.c — libFuzzer target for src/codec/chatsplit.c.
 *
 * Input layout: bytes 0-1 give max (little-endian, low 12 bits: 0..4095); byte 2 gives k
 * (low 4 bits), the number of chunk sizes that follow in bytes 3..3+k (each 1..255, 0 counts as
 * 1, used in turn; none means byte by byte); the rest is what a chat client sent. The stream is
 * split three ways that must agree item for item (SPACE results merged into the item before
 * them when that is SPACE or GARBAGE, see chatsplit.h):
 *
 *  - all at once;
 *  - in reads of the chunk sizes above, the caller keeping unconsumed bytes, with the bytes
 *    not yet "received" poisoned for AddressSanitizer so that a look past n is caught;
 *  - by ref_run, a whole-stream reference written here that finds each object's end by
 *    walking its tokens (strings skipped whole, then brackets counted) in one pass.
 *
 * Checked on every call: consumed <= n and equal to the item's length; an object starts with
 * '{', ends with '}' or ']', is at most max bytes, and its bracket count outside strings first
 * returns to zero at its last byte; a garbage run holds no '{' and starts with a byte that is
 * neither whitespace nor '{'; a 0 result only inside an object with scanned <= n; -1 only
 * once max bytes of an object are in. And when rc_json_scan accepts an object, the value it
 * found runs from the object's first byte to its last (the splitter and the JSON scanner agree
 * on where a valid object ends).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sanitizer/asan_interface.h>

#include "codec/chatsplit.h"
#include "codec/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                           \
    do {                                                                                   \
        if (!(c)) {                                                                        \
            fprintf(stderr, "fuzz_chatsplit: %s:%d: check failed: %s\n", __FILE__,        \
                    __LINE__, #c);                                                         \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#define MAX_EV 8192

struct ev {
    int kind;
    size_t off, len;         /* span in the stream */
};

struct run {
    struct ev ev[MAX_EV];
    size_t nev;
    long end;                /* 0, or -1 when an object was too big */
    size_t pos;              /* bytes consumed */
};

static void run_reset(struct run *r)
{
    r->nev = 0;
    r->end = 0;
    r->pos = 0;
}

static void add_ev(struct run *r, int kind, size_t off, size_t len)
{
    if (r->nev > 0 && kind == RC_CHATSPLIT_SPACE) {
        struct ev *last = &r->ev[r->nev - 1];
        if (last->kind != RC_CHATSPLIT_OBJECT && last->off + last->len == off) {
            last->len += len;
            return;
        }
    }
    CHECK(r->nev < MAX_EV);
    r->ev[r->nev++] = (struct ev){kind, off, len};
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* object_end returns the index of the byte that closes the object starting at s[0], or n when
 * it does not close within s[0..n). Strings are skipped token-wise: from a quote to the next
 * quote not escaped, counting the backslashes before it. */
static size_t object_end(const char *s, size_t n)
{
    long depth = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') {
            size_t j = i + 1;
            for (;;) {
                while (j < n && s[j] != '"') j++;
                if (j >= n) return n;
                size_t bs = 0;
                while (j - bs > i + 1 && s[j - 1 - bs] == '\\') bs++;
                if (bs % 2 == 0) break; /* an even run of backslashes escapes itself */
                j++;
            }
            i = j;
            continue;
        }
        if (s[i] == '{' || s[i] == '[') depth++;
        if ((s[i] == '}' || s[i] == ']') && --depth == 0) return i;
    }
    return n;
}

static void ref_run(struct run *r, const char *s, size_t n, size_t max)
{
    run_reset(r);
    size_t pos = 0;
    while (pos < n) {
        size_t i = pos;
        if (is_space(s[pos])) {
            while (i < n && is_space(s[i])) i++;
            add_ev(r, RC_CHATSPLIT_SPACE, pos, i - pos);
        } else if (s[pos] != '{') {
            while (i < n && s[i] != '{') i++;
            add_ev(r, RC_CHATSPLIT_GARBAGE, pos, i - pos);
        } else {
            size_t e = object_end(s + pos, n - pos);
            if (e < n - pos && e + 1 <= max) {
                add_ev(r, RC_CHATSPLIT_OBJECT, pos, e + 1);
                i = pos + e + 1;
            } else {
                if (n - pos >= max) r->end = -1;
                break;
            }
        }
        pos = i;
    }
    r->pos = pos;
}

/* check_object: the bracket count outside strings of an object first returns to zero at its
 * last byte, and a valid JSON object is one value from its first byte to its last. */
static void check_object(const char *p, size_t len, size_t max)
{
    CHECK(len >= 2 && len <= max && p[0] == '{' && (p[len - 1] == '}' || p[len - 1] == ']'));
    CHECK(object_end(p, len) == len - 1);
    rc_json_top t;
    if (rc_json_scan(p, len, 0, &t) == RC_JSON_OK) CHECK(t.open == 0 && t.close == len - 1);
}

static void drive(struct run *r, char *s, size_t n, size_t max, const uint8_t *sizes,
                  size_t nsizes)
{
    rc_chatsplit cs;
    rc_chatsplit_init(&cs, max);
    run_reset(r);
    size_t have = 0, turn = 0;
    bool in_garbage = false;
    ASAN_POISON_MEMORY_REGION(s, n);
    while (have < n) {
        size_t k = !sizes ? n : nsizes == 0 ? 1 : sizes[turn++ % nsizes];
        if (k == 0) k = 1;
        size_t was = have;
        have = k > n - have ? n : have + k;
        ASAN_UNPOISON_MEMORY_REGION(s + was, have - was);
        for (;;) {
            const char *p = s + r->pos;
            size_t avail = have - r->pos;
            int kind = -1;
            size_t len = (size_t)-1, scanned_before = cs.scanned;
            long c = rc_chatsplit_next(&cs, p, avail, &kind, &len);
            if (c < 0) {
                CHECK(c == -1 && avail >= max && p[0] == '{');
                r->end = c;
                ASAN_UNPOISON_MEMORY_REGION(s, n);
                return;
            }
            if (c == 0) {
                CHECK(avail > 0 && p[0] == '{' && cs.scanned <= avail &&
                      cs.scanned >= scanned_before && cs.scanned < max);
                break;
            }
            CHECK((size_t)c <= avail && len == (size_t)c);
            switch (kind) {
            case RC_CHATSPLIT_OBJECT:
                check_object(p, len, max);
                CHECK(cs.scanned == 0);
                in_garbage = false;
                break;
            case RC_CHATSPLIT_GARBAGE:
                CHECK(!in_garbage && !is_space(p[0]) && !memchr(p, '{', len));
                in_garbage = true;
                break;
            case RC_CHATSPLIT_SPACE:
                if (in_garbage) {
                    CHECK(!memchr(p, '{', len));
                } else {
                    for (size_t i = 0; i < len; i++) CHECK(is_space(p[i]));
                }
                break;
            default:
                CHECK(!"unknown kind");
            }
            if (kind != RC_CHATSPLIT_OBJECT && len < avail) {
                /* stopped at the byte that ends the item */
                if (kind == RC_CHATSPLIT_SPACE && !in_garbage) CHECK(!is_space(p[len]));
                else CHECK(p[len] == '{');
            }
            if (len < avail && p[len] == '{') in_garbage = false;
            add_ev(r, kind, (size_t)(p - s), len);
            r->pos += (size_t)c;
            if (r->pos == have) break;
        }
    }
    ASAN_UNPOISON_MEMORY_REGION(s, n);
}

static void same_run(const struct run *a, const struct run *b, const char *what)
{
    bool same = a->nev == b->nev && a->end == b->end && a->pos == b->pos;
    size_t i = 0;
    for (; same && i < a->nev; i++)
        same = a->ev[i].kind == b->ev[i].kind && a->ev[i].off == b->ev[i].off &&
               a->ev[i].len == b->ev[i].len;
    if (!same) {
        fprintf(stderr, "fuzz_chatsplit: %s differ: %zu/%zu items, end %ld/%ld, pos %zu/%zu, "
                "first difference at item %zu\n", what, a->nev, b->nev, a->end, b->end, a->pos,
                b->pos, i ? i - 1 : 0);
        abort();
    }
}

static struct run one, chunked, ref;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    size_t max = (size_t)(data[0] | (data[1] & 0x0F) << 8);
    size_t nsizes = data[2] & 0x0F;
    if (size < 3 + nsizes) return 0;
    const uint8_t *sizes = data + 3;
    size_t n = size - 3 - nsizes;
    char *s = malloc(n ? n : 1); /* exact size: ASan sees any read past the stream */
    CHECK(s);
    memcpy(s, data + 3 + nsizes, n);

    ref_run(&ref, s, n, max);
    drive(&one, s, n, max, NULL, 0);
    same_run(&ref, &one, "reference/one-shot");
    drive(&chunked, s, n, max, sizes, nsizes);
    same_run(&ref, &chunked, "reference/chunked");
    free(s);
    return 0;
}
