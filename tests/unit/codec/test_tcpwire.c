/* test_tcpwire.c — tests for src/codec/tcpwire.c: the preamble decision (split across reads,
 * refused at the first differing byte), line mode (\n, \r\n, a '\r' inside a line, blank lines,
 * max exactly and max + 1, skipping after a too-long line, resuming the '\n' search), framed
 * mode (every opcode, zero-length frames, control frame and size limits known from the header,
 * little-endian lengths) and header encoding. Most cases are checked through drive(), which
 * feeds a stream in reads of chosen sizes the way the transport does, and compared with a
 * whole-stream reference written separately; random streams are fed at once, byte by byte and
 * in random splits, which must all give the same items.
 */
#include "unit.h"

#include "codec/tcpwire.h"

#include <stdint.h>

/* ---- driving the decoder like the transport ---------------------------------------------- */

#define MAX_EV 512

/* An item, by its position in the stream. Consecutive NONE items are merged (see tcpwire.h:
 * only their number depends on how the input is split). */
struct ev {
    uint8_t kind;
    size_t off, len;         /* span of out->p in the stream */
};

struct run {
    struct ev ev[MAX_EV];
    size_t nev;
    long end;                /* 0 when the stream ended needing more, else the error code */
    size_t pos;              /* bytes consumed in all */
    uint8_t mode;            /* decoder mode at the end */
    bool bad;                /* an invariant broke (described on stderr) */
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
    if (r->nev == MAX_EV) abort();
    r->ev[r->nev++] = (struct ev){kind, off, len};
}

/* drive feeds s[0..n) to a fresh decoder in reads whose sizes come from next_chunk (0 means
 * "everything left"), passing each call an exact-size heap copy of the unconsumed bytes so that
 * ASan sees any read past them, and checks on every call: consumed <= n, the span inside the
 * input, TEXT without '\n', a 0 result leaving nothing consumed. */
static size_t chunk_all(void) { return 0; }
static size_t chunk_one(void) { return 1; }
static size_t chunk_rand(void) { return 1 + (size_t)(unit_rand() % 9); }
static size_t chunk_rand_big(void) { return 1 + (size_t)(unit_rand() % 300); }

static void drive(struct run *r, const char *s, size_t n, size_t max, size_t (*next_chunk)(void))
{
    rc_tcpw d;
    rc_tcpw_init(&d, max);
    memset(r, 0, sizeof *r);
    size_t have = 0;
    while (have < n) {
        size_t k = next_chunk();
        have = k == 0 || k > n - have ? n : have + k;
        for (;;) {
            size_t avail = have - r->pos;
            char *b = malloc(avail ? avail : 1);
            if (!b) abort();
            memcpy(b, s + r->pos, avail);
            rc_tcpw_msg m;
            memset(&m, 0xAA, sizeof m);
            size_t scanned_before = d.scanned;
            long c = rc_tcpw_next(&d, b, avail, &m);
            if (c > 0) {
                bool inside = m.p >= b && m.len <= avail && (size_t)(m.p - b) <= avail - m.len;
                if ((size_t)c > avail || !inside || m.kind > RC_TCPW_PONG ||
                    (m.kind == RC_TCPW_TEXT && d.mode == RC_TCPW_LINE &&
                     memchr(m.p, '\n', m.len)) ||
                    d.scanned != 0) {
                    fprintf(stderr, "  bad item: consumed %ld of %zu kind %u\n", c, avail, m.kind);
                    r->bad = true;
                }
                if (inside) add_ev(r, m.kind, r->pos + (size_t)(m.p - b), m.len);
                r->pos += (size_t)c;
            } else if (d.scanned > avail || d.scanned < scanned_before) {
                fprintf(stderr, "  scanned %zu of %zu (was %zu)\n", d.scanned, avail,
                        scanned_before);
                r->bad = true;
            }
            free(b);
            if (c < 0) {
                r->end = c;
                r->mode = d.mode;
                return;
            }
            if (c == 0 || r->pos == have) break;
        }
    }
    r->mode = d.mode;
}

/* ---- a whole-stream reference ------------------------------------------------------------- */

/* ref_run decodes the complete stream s[0..n) line by line or frame by frame, with no state
 * carried between reads, into the same shape as drive(). */
static void ref_run(struct run *r, const char *s, size_t n, size_t max)
{
    memset(r, 0, sizeof *r);
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
        size_t line = nl ? (size_t)(nl - s) - pos : n - pos; /* bytes before the '\n' */
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
        bool blank = true;
        for (size_t i = 0; i < content; i++)
            if (s[pos + i] != ' ' && s[pos + i] != '\t') blank = false;
        if (blank)
            add_ev(r, RC_TCPW_NONE, pos, line + 1);
        else
            add_ev(r, RC_TCPW_TEXT, pos, content);
        pos += line + 1;
    }
    r->pos = pos;
}

static bool same_run(const struct run *a, const struct run *b, const char *what)
{
    bool same = a->nev == b->nev && a->end == b->end && a->pos == b->pos && a->mode == b->mode &&
                !a->bad && !b->bad;
    for (size_t i = 0; same && i < a->nev; i++)
        same = a->ev[i].kind == b->ev[i].kind && a->ev[i].off == b->ev[i].off &&
               a->ev[i].len == b->ev[i].len;
    if (!same) {
        fprintf(stderr, "  %s differ: %zu/%zu items, end %ld/%ld, pos %zu/%zu, mode %u/%u\n",
                what, a->nev, b->nev, a->end, b->end, a->pos, b->pos, a->mode, b->mode);
        for (size_t i = 0; i < a->nev || i < b->nev; i++)
            fprintf(stderr, "    %zu: %u@%zu+%zu | %u@%zu+%zu\n", i,
                    i < a->nev ? a->ev[i].kind : 99, i < a->nev ? a->ev[i].off : 0,
                    i < a->nev ? a->ev[i].len : 0, i < b->nev ? b->ev[i].kind : 99,
                    i < b->nev ? b->ev[i].off : 0, i < b->nev ? b->ev[i].len : 0);
    }
    return same;
}

/* check_all feeds s at once, byte by byte and in random reads, and compares every run with the
 * reference; the one-shot run is left in *out. */
static bool check_all(struct run *out, const char *s, size_t n, size_t max)
{
    static struct run ref, r;
    ref_run(&ref, s, n, max);
    drive(out, s, n, max, chunk_all);
    if (!same_run(&ref, out, "reference/one-shot")) return false;
    drive(&r, s, n, max, chunk_one);
    if (!same_run(&ref, &r, "reference/byte-by-byte")) return false;
    for (int i = 0; i < 4; i++) {
        drive(&r, s, n, max, i & 1 ? chunk_rand : chunk_rand_big);
        if (!same_run(&ref, &r, "reference/random reads")) return false;
    }
    return true;
}

/* expect describes the items a stream must give: kind and text (NULL: don't look at it). */
struct want {
    uint8_t kind;
    const char *text;
    size_t len;
};
#define W(kind, lit) {kind, lit, sizeof(lit) - 1}

static bool items_are(const struct run *r, const char *s, const struct want *w, size_t nw)
{
    if (r->nev != nw) {
        fprintf(stderr, "  %zu items, want %zu\n", r->nev, nw);
        return false;
    }
    for (size_t i = 0; i < nw; i++) {
        bool text_ok = !w[i].text || (r->ev[i].len == w[i].len &&
                                      memcmp(s + r->ev[i].off, w[i].text, w[i].len) == 0);
        if (r->ev[i].kind != w[i].kind || !text_ok) {
            fprintf(stderr, "  item %zu: kind %u '%.*s', want kind %u '%s'\n", i, r->ev[i].kind,
                    (int)r->ev[i].len, s + r->ev[i].off, w[i].kind, w[i].text ? w[i].text : "");
            return false;
        }
    }
    return true;
}

#define S(lit) lit, sizeof(lit) - 1
#define NW(arr) arr, sizeof arr / sizeof arr[0]

/* ---- the preamble ------------------------------------------------------------------------- */

TEST(tcpw_preamble)
{
    CHECK_EQ_INT(RC_TCPW_PREAMBLE_LEN, 4);
    CHECK_MEM(rc_tcpw_preamble, 4, "\0RC\x01", 4);
    rc_tcpw d;
    rc_tcpw_msg m;
    rc_tcpw_init(&d, 100);
    CHECK_EQ_INT(d.mode, RC_TCPW_UNDECIDED);
    CHECK_EQ_INT(rc_tcpw_next(&d, "", 0, &m), 0);
    /* every prefix asks for more, without deciding */
    for (size_t k = 0; k < 4; k++) {
        CHECK_EQ_INT(rc_tcpw_next(&d, "\0RC\x01", k, &m), 0);
        CHECK_EQ_INT(d.mode, RC_TCPW_UNDECIDED);
    }
    CHECK_EQ_INT(rc_tcpw_next(&d, "\0RC\x01\x05", 5, &m), 4);
    CHECK_EQ_INT(m.kind, RC_TCPW_PREAMBLE);
    CHECK_EQ_INT(m.len, 4);
    CHECK_EQ_INT(d.mode, RC_TCPW_FRAMED);

    /* split across reads at every point, followed by a frame */
    static const char s[] = "\0RC\x01\x02\0\0\0\x01hi";
    struct run r;
    static const struct want w[] = {W(RC_TCPW_PREAMBLE, "\0RC\x01"), W(RC_TCPW_TEXT, "hi")};
    CHECK(check_all(&r, S(s), 100));
    CHECK(items_are(&r, s, NW(w)));
    CHECK_EQ_INT(r.mode, RC_TCPW_FRAMED);
    CHECK_EQ_INT(r.pos, sizeof s - 1);
}

/* 0x00 followed by anything but "RC\x01" is refused at the first byte that differs. */
TEST(tcpw_bad_preamble)
{
    static const struct { const char *s; size_t n, first_at; } cases[] = {
        {"\0X", 2, 2}, {"\0RX", 3, 3}, {"\0RCX", 4, 4}, {"\0RC\x02", 4, 4},
        {"\0\0\0\0", 4, 2}, {"\0rc\x01", 4, 2}, {"\0RC\x01", 4, 99}, {"\0R\0\x01", 4, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t k = 0; k <= cases[i].n; k++) {
            rc_tcpw d;
            rc_tcpw_msg m;
            rc_tcpw_init(&d, 100);
            long c = rc_tcpw_next(&d, cases[i].s, k, &m);
            long want = k >= cases[i].first_at ? -RC_WS_CLOSE_PROTOCOL : k == 4 ? 4 : 0;
            CHECK_EQ_INT(c, want);
        }
        struct run r;
        CHECK(check_all(&r, cases[i].s, cases[i].n, 100));
    }
    CHECK_EQ_INT(RC_WS_CLOSE_PROTOCOL, 1002);
}

/* Any other first byte is line mode, and that byte is the start of the first line: the decision
 * consumes nothing. Later, 0x00 or the whole preamble is just content. */
TEST(tcpw_line_mode_choice)
{
    for (unsigned b = 1; b < 256; b++) {
        rc_tcpw d;
        rc_tcpw_msg m;
        rc_tcpw_init(&d, 100);
        char s[3] = {(char)b, 'x', '\n'};
        long c = rc_tcpw_next(&d, s, 1, &m);
        CHECK_EQ_INT(d.mode, RC_TCPW_LINE);
        if (b == '\n') {
            CHECK_EQ_INT(c, 1);
            CHECK_EQ_INT(m.kind, RC_TCPW_NONE);
            continue;
        }
        CHECK_EQ_INT(c, 0);
        CHECK_EQ_INT(rc_tcpw_next(&d, s, 3, &m), 3);
        CHECK_EQ_INT(m.kind, RC_TCPW_TEXT);
        CHECK(m.p == s);
        CHECK_EQ_INT(m.len, 2); /* also "\rx": that '\r' is not right before the '\n' */
    }
    static const char s[] = "{\"a\":1}\n\0RC\x01\n\0\n";
    static const struct want w[] = {W(RC_TCPW_TEXT, "{\"a\":1}"), W(RC_TCPW_TEXT, "\0RC\x01"),
                                    W(RC_TCPW_TEXT, "\0")};
    struct run r;
    CHECK(check_all(&r, S(s), 100));
    CHECK(items_are(&r, s, NW(w)));
    CHECK_EQ_INT(r.mode, RC_TCPW_LINE);
}

/* ---- line mode --------------------------------------------------------------------------- */

TEST(tcpw_lines)
{
    static const char s[] = "{\"type\":\"join\"}\n"
                            "a\r\n"          /* \r\n: the '\r' is dropped */
                            "b\rc\n"         /* a '\r' inside a line stays */
                            "d\r\r\n"        /* only the last '\r' goes */
                            "\n"             /* blank lines of every kind */
                            "\r\n"
                            "  \t \n"
                            " \t\r\n"
                            " x \n"          /* spaces around content stay */
                            "\r\rx\n"
                            " \r \n"         /* not only spaces or tabs: a line */
                            "\xff\x00\x80\n" /* no UTF-8 check here */
                            "last";          /* unterminated: waits for more */
    static const struct want w[] = {
        W(RC_TCPW_TEXT, "{\"type\":\"join\"}"), W(RC_TCPW_TEXT, "a"), W(RC_TCPW_TEXT, "b\rc"),
        W(RC_TCPW_TEXT, "d\r"), W(RC_TCPW_NONE, "\n\r\n  \t \n \t\r\n"), W(RC_TCPW_TEXT, " x "),
        W(RC_TCPW_TEXT, "\r\rx"), W(RC_TCPW_TEXT, " \r "), W(RC_TCPW_TEXT, "\xff\x00\x80"),
    };
    struct run r;
    CHECK(check_all(&r, S(s), 100));
    CHECK(items_are(&r, s, NW(w)));
    CHECK_EQ_INT(r.pos, sizeof s - 1 - 4);
    CHECK_EQ_INT(r.end, 0);
}

/* A blank line comes back as one NONE covering the line and its end, one call per line. */
TEST(tcpw_blank_line_calls)
{
    rc_tcpw d;
    rc_tcpw_msg m;
    rc_tcpw_init(&d, 100);
    static const char s[] = " \t\r\n\nx\n";
    CHECK_EQ_INT(rc_tcpw_next(&d, s, sizeof s - 1, &m), 4);
    CHECK_EQ_INT(m.kind, RC_TCPW_NONE);
    CHECK(m.p == s && m.len == 4);
    CHECK_EQ_INT(rc_tcpw_next(&d, s + 4, sizeof s - 5, &m), 1);
    CHECK_EQ_INT(m.kind, RC_TCPW_NONE);
    CHECK_EQ_INT(rc_tcpw_next(&d, s + 5, sizeof s - 6, &m), 2);
    CHECK_EQ_INT(m.kind, RC_TCPW_TEXT);
    CHECK(m.p == s + 5 && m.len == 1);
}

/* build_line writes `len` content bytes (letters) then the given ending. */
static size_t build_line(char *out, size_t len, const char *ending)
{
    for (size_t i = 0; i < len; i++) out[i] = (char)('a' + i % 26);
    size_t e = strlen(ending);
    memcpy(out + len, ending, e);
    return len + e;
}

/* Content of exactly max bytes is a line, with "\n" or "\r\n"; max + 1 is too long. */
TEST(tcpw_line_max)
{
    static const size_t maxes[] = {0, 1, 2, 3, 7, 64, 1000};
    char s[2100];
    for (size_t mi = 0; mi < sizeof maxes / sizeof maxes[0]; mi++) {
        size_t max = maxes[mi];
        struct run r;
        for (int crlf = 0; crlf <= 1; crlf++) {
            const char *end = crlf ? "\r\n" : "\n";
            size_t n = build_line(s, max, end);
            n += build_line(s + n, 1, "\n");
            CHECK(check_all(&r, s, n, max));
            if (max == 0) continue; /* everything but an empty line is too long: see below */
            CHECK_EQ_INT(r.nev, 2);
            CHECK_EQ_INT(r.ev[0].kind, RC_TCPW_TEXT);
            CHECK_EQ_INT(r.ev[0].len, max);
            CHECK_EQ_INT(r.ev[1].kind, RC_TCPW_TEXT);
            CHECK_EQ_INT(r.ev[1].off, max + 1 + crlf);
            /* one byte more: too long after max + 1 bytes, the rest skipped, the next line
             * decoded */
            n = build_line(s, max + 1, end);
            n += build_line(s + n, 1, "\n");
            CHECK(check_all(&r, s, n, max));
            CHECK_EQ_INT(r.nev, 3);
            CHECK_EQ_INT(r.ev[0].kind, RC_TCPW_TOO_LONG);
            CHECK_EQ_INT(r.ev[0].off, 0);
            CHECK_EQ_INT(r.ev[0].len, max + 1);
            CHECK_EQ_INT(r.ev[1].kind, RC_TCPW_NONE);
            CHECK_EQ_INT(r.ev[1].off, max + 1);
            CHECK_EQ_INT(r.ev[1].len, 1 + crlf);
            CHECK_EQ_INT(r.ev[2].kind, RC_TCPW_TEXT);
            CHECK_EQ_INT(r.ev[2].len, 1);
        }
    }
}

/* Too long is reported after exactly the bytes that prove it, and not one call earlier. */
TEST(tcpw_line_too_long_when_known)
{
    size_t max = 10;
    char s[64];
    rc_tcpw d;
    rc_tcpw_msg m;
    /* no '\r' at byte max: max + 1 bytes prove it */
    build_line(s, 40, "\n");
    rc_tcpw_init(&d, max);
    for (size_t k = 1; k <= max; k++) {
        CHECK_EQ_INT(rc_tcpw_next(&d, s, k, &m), 0);
        CHECK_EQ_INT(d.scanned, k);
        CHECK(!d.skipping);
    }
    CHECK_EQ_INT(rc_tcpw_next(&d, s, max + 1, &m), (long)max + 1);
    CHECK_EQ_INT(m.kind, RC_TCPW_TOO_LONG);
    CHECK(d.skipping);
    CHECK_EQ_INT(d.scanned, 0);
    /* while skipping, everything without '\n' goes at once; the '\n' ends the skip */
    CHECK_EQ_INT(rc_tcpw_next(&d, s + 11, 5, &m), 5);
    CHECK_EQ_INT(m.kind, RC_TCPW_NONE);
    CHECK(d.skipping);
    CHECK_EQ_INT(rc_tcpw_next(&d, s + 16, 0, &m), 0);
    CHECK_EQ_INT(rc_tcpw_next(&d, s + 16, 25, &m), 25);
    CHECK_EQ_INT(m.kind, RC_TCPW_NONE);
    CHECK(!d.skipping);

    /* '\r' at byte max: it may be the end of a max-byte line, so one byte more is needed */
    build_line(s, max, "\rZ rest\n");
    rc_tcpw_init(&d, max);
    CHECK_EQ_INT(rc_tcpw_next(&d, s, max + 1, &m), 0);
    CHECK_EQ_INT(rc_tcpw_next(&d, s, max + 2, &m), (long)max + 2);
    CHECK_EQ_INT(m.kind, RC_TCPW_TOO_LONG);
    CHECK(d.skipping);
    build_line(s, max, "\r\n");
    rc_tcpw_init(&d, max);
    CHECK_EQ_INT(rc_tcpw_next(&d, s, max + 1, &m), 0);
    CHECK_EQ_INT(rc_tcpw_next(&d, s, max + 2, &m), (long)max + 2);
    CHECK_EQ_INT(m.kind, RC_TCPW_TEXT);
    CHECK_EQ_INT(m.len, max);
    /* "\r\r\n" at byte max: content max + 1 */
    build_line(s, max, "\r\r\n");
    struct run r;
    CHECK(check_all(&r, s, max + 3, max));
    CHECK_EQ_INT(r.nev, 2);
    CHECK_EQ_INT(r.ev[0].kind, RC_TCPW_TOO_LONG);
    CHECK_EQ_INT(r.ev[0].len, max + 2);
    CHECK_EQ_INT(r.ev[1].kind, RC_TCPW_NONE);
    /* a long run of blanks is too long too: the limit is on content */
    memset(s, ' ', 20);
    s[20] = '\n';
    CHECK(check_all(&r, s, 21, max));
    CHECK_EQ_INT(r.ev[0].kind, RC_TCPW_TOO_LONG);
    /* max 0: only empty lines pass (and are blank) */
    static const char z[] = "\n\r\na\n\rx\n\r\n";
    static const struct want wz[] = {W(RC_TCPW_NONE, "\n\r\n"), W(RC_TCPW_TOO_LONG, "a"),
                                     W(RC_TCPW_NONE, "\n"), W(RC_TCPW_TOO_LONG, "\rx"),
                                     W(RC_TCPW_NONE, "\n\r\n")};
    CHECK(check_all(&r, S(z), 0));
    CHECK(items_are(&r, z, NW(wz)));
}

/* A line that grows a few bytes per read is searched for '\n' once: `scanned` remembers how
 * far, and the decoder starts there (checked by planting a '\n' behind `scanned`, which a
 * correct caller never does, and seeing it ignored). */
TEST(tcpw_line_resume)
{
    rc_tcpw d;
    rc_tcpw_msg m;
    rc_tcpw_init(&d, 1000);
    char s[64];
    build_line(s, 30, "\n");
    CHECK_EQ_INT(rc_tcpw_next(&d, s, 10, &m), 0);
    CHECK_EQ_INT(d.scanned, 10);
    CHECK_EQ_INT(rc_tcpw_next(&d, s, 20, &m), 0);
    CHECK_EQ_INT(d.scanned, 20);
    s[5] = '\n';
    CHECK_EQ_INT(rc_tcpw_next(&d, s, 25, &m), 0);
    CHECK_EQ_INT(d.scanned, 25);
    CHECK_EQ_INT(rc_tcpw_next(&d, s, 31, &m), 31);
    CHECK_EQ_INT(m.kind, RC_TCPW_TEXT);
    CHECK_EQ_INT(m.len, 30);
    CHECK_EQ_INT(d.scanned, 0);
    /* the '\r' of a "\r\n" split across reads */
    rc_tcpw_init(&d, 1000);
    CHECK_EQ_INT(rc_tcpw_next(&d, "ab\r", 3, &m), 0);
    CHECK_EQ_INT(rc_tcpw_next(&d, "ab\r\n", 4, &m), 4);
    CHECK_MEM(m.p, m.len, "ab", 2);
}

/* Several lines and one and a half in one read, then the rest. */
TEST(tcpw_lines_in_one_read)
{
    rc_tcpw d;
    rc_tcpw_msg m;
    rc_tcpw_init(&d, 100);
    static const char s[] = "{\"a\":1}\n{\"b\":2}\r\n{\"c\"";
    CHECK_EQ_INT(rc_tcpw_next(&d, s, sizeof s - 1, &m), 8);
    CHECK_MEM(m.p, m.len, "{\"a\":1}", 7);
    CHECK_EQ_INT(rc_tcpw_next(&d, s + 8, sizeof s - 9, &m), 9);
    CHECK_MEM(m.p, m.len, "{\"b\":2}", 7);
    CHECK_EQ_INT(rc_tcpw_next(&d, s + 17, sizeof s - 18, &m), 0);
    CHECK_EQ_INT(d.scanned, 4);
    CHECK_EQ_INT(rc_tcpw_next(&d, "{\"c\":3}\n", 8, &m), 8);
    CHECK_MEM(m.p, m.len, "{\"c\":3}", 7);
}

/* ---- framed mode -------------------------------------------------------------------------- */

/* frame appends a frame with the given opcode and payload to out. */
static size_t frame(char *out, uint8_t opcode, const char *payload, uint32_t len)
{
    rc_tcpw_header((uint8_t *)out, opcode, len);
    if (len) memcpy(out + RC_TCPW_HEADER_LEN, payload, len);
    return RC_TCPW_HEADER_LEN + len;
}

TEST(tcpw_frames)
{
    static char s[1024];
    size_t n = 0;
    memcpy(s, rc_tcpw_preamble, 4);
    n = 4;
    n += frame(s + n, RC_WS_TEXT, S("{\"type\":\"join\",\"room\":\"a\"}"));
    n += frame(s + n, RC_WS_BINARY, S("\x01" "a\0\n\xff"));
    n += frame(s + n, RC_WS_TEXT, "", 0);   /* zero-length frames */
    n += frame(s + n, RC_WS_BINARY, "", 0);
    n += frame(s + n, RC_WS_PING, S("p\n"));
    n += frame(s + n, RC_WS_PONG, "", 0);
    n += frame(s + n, RC_WS_CLOSE, S("\x03\xe8" "bye"));
    n += frame(s + n, RC_WS_TEXT, S("a\nb")); /* a '\n' in a text frame is the client's business */
    n += frame(s + n, RC_WS_TEXT, S("tail"));
    n -= 1; /* the last frame is incomplete */
    static const struct want w[] = {
        W(RC_TCPW_PREAMBLE, "\0RC\x01"), W(RC_TCPW_TEXT, "{\"type\":\"join\",\"room\":\"a\"}"),
        W(RC_TCPW_BINARY, "\x01" "a\0\n\xff"), W(RC_TCPW_TEXT, ""), W(RC_TCPW_BINARY, ""),
        W(RC_TCPW_PING, "p\n"), W(RC_TCPW_PONG, ""), W(RC_TCPW_CLOSE, "\x03\xe8" "bye"),
        W(RC_TCPW_TEXT, "a\nb"),
    };
    struct run r;
    CHECK(check_all(&r, s, n, 100));
    CHECK(items_are(&r, s, NW(w)));
    CHECK_EQ_INT(r.end, 0);
    CHECK_EQ_INT(r.pos, n - (RC_TCPW_HEADER_LEN + 3));
}

/* A zero-length frame is complete with its header alone; its span is empty, at the header's end. */
TEST(tcpw_frame_zero_length)
{
    rc_tcpw d;
    rc_tcpw_msg m;
    rc_tcpw_init(&d, 0);
    CHECK_EQ_INT(rc_tcpw_next(&d, "\0RC\x01", 4, &m), 4);
    char *h = malloc(RC_TCPW_HEADER_LEN);
    if (!h) abort();
    rc_tcpw_header((uint8_t *)h, RC_WS_BINARY, 0);
    for (size_t k = 0; k < RC_TCPW_HEADER_LEN; k++) CHECK_EQ_INT(rc_tcpw_next(&d, h, k, &m), 0);
    long c = rc_tcpw_next(&d, h, RC_TCPW_HEADER_LEN, &m);
    bool ok = c == RC_TCPW_HEADER_LEN && m.kind == RC_TCPW_BINARY && m.len == 0 &&
              m.p == h + RC_TCPW_HEADER_LEN;
    free(h);
    CHECK(ok);
}

TEST(tcpw_frame_opcodes)
{
    for (unsigned op = 0; op < 256; op++) {
        char s[32];
        size_t n = 4;
        memcpy(s, rc_tcpw_preamble, 4);
        n += frame(s + n, (uint8_t)op, "xy", 2);
        bool known = op == 1 || op == 2 || (op >= 8 && op <= 10);
        struct run r;
        CHECK(check_all(&r, s, n, 100));
        if (!known) {
            CHECK_EQ_INT(r.end, -RC_WS_CLOSE_PROTOCOL);
            CHECK_EQ_INT(r.nev, 1);
            CHECK_EQ_INT(r.pos, 4);
        } else {
            CHECK_EQ_INT(r.end, 0);
            CHECK_EQ_INT(r.nev, 2);
            static const uint8_t kinds[11] = {[1] = RC_TCPW_TEXT, [2] = RC_TCPW_BINARY,
                                              [8] = RC_TCPW_CLOSE, [9] = RC_TCPW_PING,
                                              [10] = RC_TCPW_PONG};
            CHECK_EQ_INT(r.ev[1].kind, kinds[op]);
            CHECK_EQ_INT(r.ev[1].len, 2);
        }
    }
}

/* The limits come from the header alone: a frame over max is refused once its four length
 * bytes are in (before the opcode), an oversized control frame once the opcode is. */
TEST(tcpw_frame_limits)
{
    static const struct {
        uint8_t op;
        uint32_t len;
        size_t max;
        long want;           /* 0: accepted */
        size_t known_at;     /* header bytes that decide an error */
    } cases[] = {
        {RC_WS_TEXT, 100, 100, 0, 0},
        {RC_WS_TEXT, 101, 100, -1009, 4},
        {RC_WS_BINARY, 0xFFFFFFFFu, 100, -1009, 4},
        {RC_WS_BINARY, 0xFFFFFFFFu, 0xFFFFFFFFu, 0, 0},
        {RC_WS_TEXT, 1, 0, -1009, 4},
        {RC_WS_TEXT, 0, 0, 0, 0},
        {RC_WS_PING, 125, 1000, 0, 0},
        {RC_WS_PING, 126, 1000, -1002, 5},
        {RC_WS_PONG, 126, 1000, -1002, 5},
        {RC_WS_CLOSE, 126, 1000, -1002, 5},
        {RC_WS_CLOSE, 125, 1000, 0, 0},
        {RC_WS_CLOSE, 2000, 1000, -1009, 4},   /* size before opcode */
        {0x3, 2000, 1000, -1009, 4},
        {0x3, 20, 1000, -1002, 5},
        {RC_WS_TEXT, 1000, 1000, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rc_tcpw d;
        rc_tcpw_msg m;
        rc_tcpw_init(&d, cases[i].max);
        CHECK_EQ_INT(rc_tcpw_next(&d, "\0RC\x01", 4, &m), 4);
        uint8_t h[RC_TCPW_HEADER_LEN];
        rc_tcpw_header(h, cases[i].op, cases[i].len);
        for (size_t k = 0; k <= RC_TCPW_HEADER_LEN; k++) {
            long c = rc_tcpw_next(&d, (const char *)h, k, &m);
            if (cases[i].want && k >= cases[i].known_at)
                CHECK_EQ_INT(c, cases[i].want);
            else if (k == RC_TCPW_HEADER_LEN && cases[i].len == 0)
                CHECK_EQ_INT(c, RC_TCPW_HEADER_LEN); /* complete without payload */
            else
                CHECK_EQ_INT(c, 0);
        }
    }
    /* the accepted large frame completes when its last byte is in, and not before */
    size_t len = 1000;
    char *s = malloc(RC_TCPW_HEADER_LEN + len);
    if (!s) abort();
    rc_tcpw_header((uint8_t *)s, RC_WS_TEXT, (uint32_t)len);
    memset(s + RC_TCPW_HEADER_LEN, 'x', len);
    rc_tcpw d;
    rc_tcpw_msg m;
    rc_tcpw_init(&d, len);
    d.mode = RC_TCPW_FRAMED;
    long before = rc_tcpw_next(&d, s, RC_TCPW_HEADER_LEN + len - 1, &m);
    long all = rc_tcpw_next(&d, s, RC_TCPW_HEADER_LEN + len, &m);
    bool span_ok = m.p == s + RC_TCPW_HEADER_LEN && m.len == len;
    free(s);
    CHECK_EQ_INT(before, 0);
    CHECK_EQ_INT(all, (long)(RC_TCPW_HEADER_LEN + len));
    CHECK(span_ok);
}

TEST(tcpw_header)
{
    uint8_t h[RC_TCPW_HEADER_LEN + 1];
    h[RC_TCPW_HEADER_LEN] = 0xEE;
    rc_tcpw_header(h, RC_WS_BINARY, 0x01020304u);
    CHECK_MEM(h, 5, "\x04\x03\x02\x01\x02", 5);
    CHECK_EQ_INT(h[RC_TCPW_HEADER_LEN], 0xEE);
    rc_tcpw_header(h, RC_WS_PONG, 0);
    CHECK_MEM(h, 5, "\0\0\0\0\x0a", 5);
    rc_tcpw_header(h, RC_WS_TEXT, 0xFFFFFFFFu);
    CHECK_MEM(h, 5, "\xff\xff\xff\xff\x01", 5);
    /* round trip through the decoder for lengths around every byte boundary */
    static const uint32_t lens[] = {0, 1, 125, 126, 255, 256, 65535, 65536, 0xFFFFFF, 0x1000000};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        rc_tcpw d;
        rc_tcpw_msg m;
        rc_tcpw_init(&d, lens[i]);
        d.mode = RC_TCPW_FRAMED;
        rc_tcpw_header(h, RC_WS_BINARY, lens[i]);
        CHECK_EQ_INT(rc_tcpw_next(&d, (const char *)h, RC_TCPW_HEADER_LEN, &m), lens[i] ? 0 : 5);
        rc_tcpw_init(&d, lens[i] ? lens[i] - 1 : 0);
        d.mode = RC_TCPW_FRAMED;
        CHECK_EQ_INT(rc_tcpw_next(&d, (const char *)h, 4, &m), lens[i] ? -1009 : 0);
    }
}

/* ---- random streams ------------------------------------------------------------------------ */

/* rand_line_stream builds lines of random lengths around max from bytes that matter ('\r',
 * blanks, 0x00, 0xff) with random endings, some of them too long, the last maybe cut. */
static size_t rand_line_stream(char *s, size_t cap, size_t max)
{
    static const char bytes[] = "ab{}\" \t\r\r\0\xff";
    size_t n = 0;
    if (unit_rand() % 2) s[n++] = (char)(1 + unit_rand() % 255); /* any non-zero first byte */
    else s[n++] = 'x';
    if (s[0] == '\n' && unit_rand() % 2) s[0] = ' ';
    while (n + max + 8 < cap) {
        size_t len = (size_t)(unit_rand() % (max + 4));
        int blank = unit_rand() % 5 == 0;
        for (size_t i = 0; i < len; i++)
            s[n++] = blank ? " \t"[unit_rand() % 2] : bytes[unit_rand() % (sizeof bytes - 1)];
        switch (unit_rand() % 4) {
        case 0: s[n++] = '\n'; break;
        case 1: s[n++] = '\r'; s[n++] = '\n'; break;
        case 2: s[n++] = '\r'; s[n++] = '\r'; s[n++] = '\n'; break;
        default: s[n++] = '\n'; s[n++] = '\n'; break;
        }
        if (unit_rand() % 6 == 0) break;
    }
    if (unit_rand() % 2) n -= (size_t)(unit_rand() % (n - 1)) / 4;
    return n;
}

static size_t rand_frame_stream(char *s, size_t cap, size_t max)
{
    static const uint8_t ops[] = {1, 2, 8, 9, 10, 1, 2, 1, 2, 0, 3, 11};
    size_t n = 4;
    memcpy(s, rc_tcpw_preamble, 4);
    if (unit_rand() % 10 == 0) s[1 + unit_rand() % 3] ^= (char)(1 + unit_rand() % 255);
    while (n + RC_TCPW_HEADER_LEN + max + 130 < cap) {
        uint8_t op = unit_rand() % 8 ? ops[unit_rand() % 9] : ops[unit_rand() % sizeof ops];
        uint32_t len = (uint32_t)(unit_rand() % (op >= 8 ? 127 : max + 1));
        if (unit_rand() % 20 == 0) len = (uint32_t)(max + 1 + unit_rand() % 3);
        rc_tcpw_header((uint8_t *)s + n, op, len);
        n += RC_TCPW_HEADER_LEN;
        size_t body = len < cap - n ? len : cap - n;
        for (size_t i = 0; i < body; i++) s[n++] = (char)unit_rand();
        if (unit_rand() % 5 == 0) break;
    }
    if (unit_rand() % 2) n -= (size_t)(unit_rand() % n) / 4;
    return n > cap ? cap : n;
}

TEST(tcpw_random_streams)
{
    static char s[4096];
    for (int iter = 0; iter < 3000; iter++) {
        size_t max = (size_t)(unit_rand() % 4 == 0 ? unit_rand() % 4 : unit_rand() % 200);
        size_t n = iter % 2 ? rand_line_stream(s, sizeof s, max)
                            : rand_frame_stream(s, sizeof s, max);
        struct run r;
        if (!check_all(&r, s, n, max)) fprintf(stderr, "  iteration %d, max %zu\n", iter, max);
        CHECK(check_all(&r, s, n, max));
    }
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(tcpw_preamble);
    RUN(tcpw_bad_preamble);
    RUN(tcpw_line_mode_choice);
    RUN(tcpw_lines);
    RUN(tcpw_blank_line_calls);
    RUN(tcpw_line_max);
    RUN(tcpw_line_too_long_when_known);
    RUN(tcpw_line_resume);
    RUN(tcpw_lines_in_one_read);
    RUN(tcpw_frames);
    RUN(tcpw_frame_zero_length);
    RUN(tcpw_frame_opcodes);
    RUN(tcpw_frame_limits);
    RUN(tcpw_header);
    RUN(tcpw_random_streams);
    UNIT_MAIN_END("test_tcpwire");
}
