/* fuzz_tcpwire.c — libFuzzer target for src/codec/tcpwire.c.
 *
 * Input layout: bytes 0-1 give max (little-endian, low 12 bits: 0..4095); byte 2 gives k
 * (low 4 bits), the number of chunk sizes that follow in bytes 3..3+k (each 1..255, 0 counts as
 * 1, used in turn; none means byte by byte); the rest is what a client sent. The stream is
 * decoded three ways that must agree item for item (NONE results merged, see tcpwire.h):
 *
 *  - all at once, the way a transport does after one big read;
 *  - in reads of the chunk sizes above, the caller keeping unconsumed bytes, with the bytes
 *    not yet "received" poisoned for AddressSanitizer so that a look past n is caught;
 *  - by ref_run, a whole-stream reference written here from docs/tcp.md that handles a line
 *    or a frame in one piece and carries no state between reads.
 *
 * Checked on every call: consumed <= n; spans inside the input; TEXT in line mode without '\n',
 * not blank, at most max bytes, right before its "\n" or "\r\n"; frame payloads right after
 * their header with the length it gives; TOO_LONG of max + 1 or max + 2 bytes; a 0 result with
 * scanned <= n; errors only -1002 and -1009; the mode decided once. The header encoder is
 * checked by a round trip with an opcode and length from the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sanitizer/asan_interface.h>

#include "codec/tcpwire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                           \
    do {                                                                                   \
        if (!(c)) {                                                                        \
            fprintf(stderr, "fuzz_tcpwire: %s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #c);                                                                   \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#define MAX_EV 8192

struct ev {
    uint8_t kind;
    size_t off, len;         /* span in the stream */
};

struct run {
    struct ev ev[MAX_EV];
    size_t nev;
    long end;                /* 0, or the error code that stopped the stream */
    size_t pos;              /* bytes consumed */
    uint8_t mode;            /* decoder mode at the end */
};

static void add_ev(struct run *r, uint8_t kind, size_t off, size_t len)
{
    if (r->nev > 0 && kind == RC_TCPW_NONE) {
        struct ev *last = &r->ev[r->nev - 1];
        if (last->kind == RC_TCPW_NONE && last->off + last->len == off) {
            last->len += len;
            return;
        }
    }
    CHECK(r->nev < MAX_EV);
    r->ev[r->nev++] = (struct ev){kind, off, len};
}

/* run_reset empties r without clearing its (large) item array. */
static void run_reset(struct run *r)
{
    r->nev = 0;
    r->end = 0;
    r->pos = 0;
    r->mode = RC_TCPW_UNDECIDED;
}

static bool blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t') return false;
    return true;
}

/* check_frame: a frame's payload follows its header, with the length and opcode it gives. */
static void check_frame(const rc_tcpw *d, const char *p, size_t k, const rc_tcpw_msg *m)
{
    static const uint8_t op_of[] = {[RC_TCPW_TEXT] = 1, [RC_TCPW_BINARY] = 2,
                                    [RC_TCPW_CLOSE] = 8, [RC_TCPW_PING] = 9, [RC_TCPW_PONG] = 10};
    const uint8_t *u = (const uint8_t *)p;
    uint32_t len = u[0] | u[1] << 8 | u[2] << 16 | (uint32_t)u[3] << 24;
    CHECK(d->mode == RC_TCPW_FRAMED);
    CHECK(m->p == p + RC_TCPW_HEADER_LEN && m->len == len && k == RC_TCPW_HEADER_LEN + len);
    CHECK(len <= d->max);
    CHECK(u[4] == op_of[m->kind]);
    if (u[4] >= 8) CHECK(len <= 125);
}

/* check_item holds every per-call invariant of a consumed item. */
static void check_item(const rc_tcpw *d, uint8_t mode_before, const char *p, size_t n, long c,
                       const rc_tcpw_msg *m)
{
    size_t k = (size_t)c, max = d->max;
    CHECK(k <= n);
    CHECK(m->p >= p && m->len <= n && (size_t)(m->p - p) <= n - m->len);
    CHECK(d->scanned == 0);
    switch (m->kind) {
    case RC_TCPW_PREAMBLE:
        CHECK(mode_before == RC_TCPW_UNDECIDED && d->mode == RC_TCPW_FRAMED);
        CHECK(k == 4 && m->p == p && m->len == 4 && !memcmp(p, rc_tcpw_preamble, 4));
        break;
    case RC_TCPW_NONE:
        CHECK(d->mode == RC_TCPW_LINE);
        CHECK(m->p == p && m->len == k);
        if (!d->skipping) CHECK(p[k - 1] == '\n');
        if (d->skipping) CHECK(!memchr(p, '\n', k));
        break;
    case RC_TCPW_TOO_LONG:
        CHECK(d->mode == RC_TCPW_LINE && d->skipping);
        CHECK(m->p == p && m->len == k && (k == max + 1 || k == max + 2));
        CHECK(!memchr(p, '\n', k));
        if (k == max + 2) CHECK(p[max] == '\r');
        break;
    case RC_TCPW_TEXT:
        if (d->mode == RC_TCPW_FRAMED) {
            check_frame(d, p, k, m);
            break;
        }
        CHECK(d->mode == RC_TCPW_LINE);
        CHECK(m->p == p && m->len <= max && !memchr(p, '\n', m->len));
        CHECK(!blank(p, m->len) && !d->skipping);
        CHECK(k == m->len + 1 || (k == m->len + 2 && p[m->len] == '\r'));
        CHECK(p[k - 1] == '\n');
        break;
    case RC_TCPW_BINARY:
    case RC_TCPW_CLOSE:
    case RC_TCPW_PING:
    case RC_TCPW_PONG:
        check_frame(d, p, k, m);
        break;
    default:
        CHECK(!"unknown kind");
    }
}

/* drive decodes s[0..n) in reads whose sizes cycle through sizes[0..nsizes) (n at once when
 * sizes is NULL, byte by byte when nsizes is 0). s must be a heap block of exactly n bytes. */
static void drive(struct run *r, char *s, size_t n, size_t max, const uint8_t *sizes,
                  size_t nsizes)
{
    rc_tcpw d;
    rc_tcpw_init(&d, max);
    run_reset(r);
    size_t have = 0, turn = 0;
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
            rc_tcpw_msg m;
            uint8_t mode_before = d.mode;
            size_t scanned_before = d.scanned;
            long c = rc_tcpw_next(&d, p, avail, &m);
            CHECK(mode_before == RC_TCPW_UNDECIDED || d.mode == mode_before);
            if (c < 0) {
                CHECK(c == -RC_WS_CLOSE_PROTOCOL || c == -RC_WS_CLOSE_TOO_BIG);
                if (c == -RC_WS_CLOSE_TOO_BIG) CHECK(d.mode == RC_TCPW_FRAMED && avail >= 4);
                r->end = c;
                r->mode = d.mode;
                ASAN_UNPOISON_MEMORY_REGION(s, n);
                return;
            }
            if (c == 0) {
                CHECK(d.scanned <= avail && d.scanned >= scanned_before);
                break;
            }
            check_item(&d, mode_before, p, avail, c, &m);
            add_ev(r, m.kind, (size_t)(m.p - s), m.len);
            r->pos += (size_t)c;
            if (r->pos == have) break;
        }
    }
    r->mode = d.mode;
    ASAN_UNPOISON_MEMORY_REGION(s, n);
}

/* ref_run: the complete stream, one line or frame at a time (see test_tcpwire.c, which holds
 * the same model; this copy keeps the fuzz target standalone). */
static void ref_run(struct run *r, const char *s, size_t n, size_t max)
{
    run_reset(r);
    const uint8_t *u = (const uint8_t *)s;
    if (n == 0) return;
    if (u[0] == 0) {
        for (size_t i = 0; i < n && i < 4; i++)
            if (u[i] != rc_tcpw_preamble[i]) {
                r->end = -1002;
                return;
            }
        if (n < 4) return;
        add_ev(r, RC_TCPW_PREAMBLE, 0, 4);
        r->mode = RC_TCPW_FRAMED;
        size_t pos = 4;
        for (;;) {
            r->pos = pos;
            if (n - pos < 4) return;
            uint32_t len = u[pos] | u[pos + 1] << 8 | u[pos + 2] << 16 | (uint32_t)u[pos + 3] << 24;
            if (len > max) {
                r->end = -1009;
                return;
            }
            if (n - pos < 5) return;
            uint8_t op = u[pos + 4];
            static const uint8_t kinds[11] = {[1] = RC_TCPW_TEXT, [2] = RC_TCPW_BINARY,
                                              [8] = RC_TCPW_CLOSE, [9] = RC_TCPW_PING,
                                              [10] = RC_TCPW_PONG};
            if (op > 10 || !kinds[op] || (op >= 8 && len > 125)) {
                r->end = -1002;
                return;
            }
            if (n - pos - 5 < len) return;
            add_ev(r, kinds[op], pos + 5, len);
            pos += 5 + (size_t)len;
        }
    }
    r->mode = RC_TCPW_LINE;
    size_t pos = 0;
    while (pos < n) {
        const char *nl = memchr(s + pos, '\n', n - pos);
        size_t line = nl ? (size_t)(nl - s) - pos : n - pos;
        size_t content = line > 0 && nl && s[pos + line - 1] == '\r' ? line - 1 : line;
        bool too_long = nl ? content > max
                           : line > max && (s[pos + max] != '\r' || line > max + 1);
        if (too_long) {
            size_t proof = s[pos + max] == '\r' ? max + 2 : max + 1;
            add_ev(r, RC_TCPW_TOO_LONG, pos, proof);
            size_t stop = nl ? pos + line + 1 : n;
            if (stop > pos + proof) add_ev(r, RC_TCPW_NONE, pos + proof, stop - pos - proof);
            pos = stop;
            continue;
        }
        if (!nl) break;
        if (blank(s + pos, content))
            add_ev(r, RC_TCPW_NONE, pos, line + 1);
        else
            add_ev(r, RC_TCPW_TEXT, pos, content);
        pos += line + 1;
    }
    r->pos = pos;
}

static void same_run(const struct run *a, const struct run *b, const char *what)
{
    bool same = a->nev == b->nev && a->end == b->end && a->pos == b->pos && a->mode == b->mode;
    size_t i = 0;
    for (; same && i < a->nev; i++)
        same = a->ev[i].kind == b->ev[i].kind && a->ev[i].off == b->ev[i].off &&
               a->ev[i].len == b->ev[i].len;
    if (!same) {
        fprintf(stderr, "fuzz_tcpwire: %s differ: %zu/%zu items, end %ld/%ld, pos %zu/%zu, "
                "mode %u/%u, first difference at item %zu\n", what, a->nev, b->nev, a->end,
                b->end, a->pos, b->pos, a->mode, b->mode, i ? i - 1 : 0);
        abort();
    }
}

static void check_header(uint8_t opcode, uint32_t len)
{
    uint8_t h[RC_TCPW_HEADER_LEN + 1];
    h[RC_TCPW_HEADER_LEN] = 0xEE;
    rc_tcpw_header(h, opcode, len);
    CHECK(h[RC_TCPW_HEADER_LEN] == 0xEE);
    CHECK((h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24) == len && h[4] == opcode);
    rc_tcpw d;
    rc_tcpw_msg m;
    rc_tcpw_init(&d, len);
    CHECK(rc_tcpw_next(&d, (const char *)rc_tcpw_preamble, 4, &m) == 4);
    long c = rc_tcpw_next(&d, (const char *)h, RC_TCPW_HEADER_LEN, &m);
    bool known = opcode == 1 || opcode == 2 || (opcode >= 8 && opcode <= 10);
    if (!known || (opcode >= 8 && len > 125))
        CHECK(c == -RC_WS_CLOSE_PROTOCOL);
    else
        CHECK(c == (len == 0 ? RC_TCPW_HEADER_LEN : 0));
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

    /* the encoder, with an opcode and a length from the stream (shifted so that small ones,
     * and so the zero-length and control frame cases, come up too) */
    if (n >= 6) {
        const uint8_t *u = (const uint8_t *)s;
        uint32_t len = u[0] | u[1] << 8 | u[2] << 16 | (uint32_t)u[3] << 24;
        check_header(u[4], len >> (u[5] & 31));
    }
    free(s);
    return 0;
}
