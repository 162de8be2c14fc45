/* test_chatsplit.c — tests for src/codec/chatsplit.c: objects back to back ("}{"), one and a
 * half objects in one read, braces, brackets, quotes and backslashes inside strings, unmatched
 * brackets (the JSON scanner's business), whitespace and garbage between objects (a garbage
 * run reported once however many reads it spans), the size limit at max and max + 1, and
 * resuming a partial object where its scan stopped. drive() feeds a stream the way the chat
 * transport does; every stream is also fed at once, byte by byte and in random reads, and the
 * runs are compared with a whole-stream reference.
 */
#include "unit.h"

#include "codec/chatsplit.h"

#include <stdint.h>

#define MAX_EV 512

/* An item by its place in the stream; SPACE items are merged into the item before them when
 * that is a SPACE or a GARBAGE run (the more of a reported run), as only their number depends on
 * how the input is split. */
struct ev {
    int kind;
    size_t off, len;
};

struct run {
    struct ev ev[MAX_EV];
    size_t nev;
    long end;                /* 0: the stream ended (maybe needing more); -1: too big */
    size_t pos;              /* bytes consumed in all */
    bool bad;                /* an invariant broke (described on stderr) */
};

static void add_ev(struct run *r, int kind, size_t off, size_t len)
{
    if (r->nev > 0 && kind == RC_CHATSPLIT_SPACE) {
        struct ev *last = &r->ev[r->nev - 1];
        if (last->kind != RC_CHATSPLIT_OBJECT && last->off + last->len == off) {
            last->len += len;
            return;
        }
    }
    if (r->nev == MAX_EV) abort();
    r->ev[r->nev++] = (struct ev){kind, off, len};
}

static size_t chunk_all(void) { return 0; }
static size_t chunk_one(void) { return 1; }
static size_t chunk_rand(void) { return 1 + (size_t)(unit_rand() % 9); }
static size_t chunk_rand_big(void) { return 1 + (size_t)(unit_rand() % 300); }

/* drive feeds s[0..n) in reads sized by next_chunk (0: all that is left), each call getting an
 * exact-size heap copy of the unconsumed bytes (ASan catches a read past them), and checks each
 * result: consumed <= n and equal to *len; objects of at most max bytes starting with '{' and
 * ending with '}' or ']'; garbage without '{' that stops only at one or at the end; a 0 result
 * only inside an object, -1 only with max bytes of it in. */
static void drive(struct run *r, const char *s, size_t n, size_t max, size_t (*next_chunk)(void))
{
    rc_chatsplit cs;
    rc_chatsplit_init(&cs, max);
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
            int kind = -1;
            size_t len = (size_t)-1;
            long c = rc_chatsplit_next(&cs, b, avail, &kind, &len);
            if (c > 0) {
                bool ok = (size_t)c <= avail && len == (size_t)c &&
                          (kind == RC_CHATSPLIT_SPACE || kind == RC_CHATSPLIT_GARBAGE ||
                           kind == RC_CHATSPLIT_OBJECT);
                if (ok && kind == RC_CHATSPLIT_OBJECT)
                    ok = len >= 2 && len <= max && b[0] == '{' &&
                         (b[len - 1] == '}' || b[len - 1] == ']') && cs.scanned == 0;
                if (ok && kind == RC_CHATSPLIT_GARBAGE) ok = b[0] != '{' && !memchr(b, '{', len);
                if (ok && kind == RC_CHATSPLIT_GARBAGE && avail > len) ok = b[len] == '{';
                if (!ok) {
                    fprintf(stderr, "  bad item: consumed %ld of %zu, kind %d, len %zu\n", c,
                            avail, kind, len);
                    r->bad = true;
                } else {
                    add_ev(r, kind, r->pos, len);
                }
                r->pos += (size_t)c;
            } else if (c == 0 && (avail == 0 || b[0] != '{' || cs.scanned > avail)) {
                fprintf(stderr, "  need more with %zu bytes, scanned %zu\n", avail, cs.scanned);
                r->bad = true;
            } else if (c < 0 && (c != -1 || avail < max)) {
                fprintf(stderr, "  error %ld with %zu bytes\n", c, avail);
                r->bad = true;
            }
            free(b);
            if (c < 0) {
                r->end = c;
                return;
            }
            if (c == 0 || r->pos == have) break;
        }
    }
}

/* ref_run splits the complete stream s[0..n) in one pass with no state between reads. */
static void ref_run(struct run *r, const char *s, size_t n, size_t max)
{
    memset(r, 0, sizeof *r);
    size_t pos = 0;
    while (pos < n) {
        size_t i = pos;
        if (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\r' || s[pos] == '\n') {
            while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
            add_ev(r, RC_CHATSPLIT_SPACE, pos, i - pos);
            pos = i;
            continue;
        }
        if (s[pos] != '{') {
            while (i < n && s[i] != '{') i++;
            add_ev(r, RC_CHATSPLIT_GARBAGE, pos, i - pos);
            pos = i;
            continue;
        }
        long depth = 0;
        bool str = false;
        for (; i < n; i++) {
            if (str) {
                if (s[i] == '\\') i++; /* skips the escaped byte, whatever it is */
                else if (s[i] == '"') str = false;
                continue;
            }
            if (s[i] == '"') str = true;
            if (s[i] == '{' || s[i] == '[') depth++;
            if ((s[i] == '}' || s[i] == ']') && --depth == 0) break;
        }
        /* the object is s[pos..i] when i < n */
        if (i < n && i - pos + 1 <= max) {
            add_ev(r, RC_CHATSPLIT_OBJECT, pos, i - pos + 1);
            pos = i + 1;
            continue;
        }
        if (n - pos >= max) r->end = -1;
        break;
    }
    r->pos = pos;
}

static bool same_run(const struct run *a, const struct run *b, const char *what)
{
    bool same = a->nev == b->nev && a->end == b->end && a->pos == b->pos && !a->bad && !b->bad;
    for (size_t i = 0; same && i < a->nev; i++)
        same = a->ev[i].kind == b->ev[i].kind && a->ev[i].off == b->ev[i].off &&
               a->ev[i].len == b->ev[i].len;
    if (!same) {
        fprintf(stderr, "  %s differ: %zu/%zu items, end %ld/%ld, pos %zu/%zu\n", what, a->nev,
                b->nev, a->end, b->end, a->pos, b->pos);
        for (size_t i = 0; i < a->nev || i < b->nev; i++)
            fprintf(stderr, "    %zu: %d@%zu+%zu | %d@%zu+%zu\n", i,
                    i < a->nev ? a->ev[i].kind : 99, i < a->nev ? a->ev[i].off : 0,
                    i < a->nev ? a->ev[i].len : 0, i < b->nev ? b->ev[i].kind : 99,
                    i < b->nev ? b->ev[i].off : 0, i < b->nev ? b->ev[i].len : 0);
    }
    return same;
}

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

struct want {
    int kind;
    const char *text;
    size_t len;
};
#define W(kind, lit) {kind, lit, sizeof(lit) - 1}
#define S(lit) lit, sizeof(lit) - 1
#define NW(arr) arr, sizeof arr / sizeof arr[0]

static bool items_are(const struct run *r, const char *s, const struct want *w, size_t nw)
{
    bool ok = r->nev == nw;
    for (size_t i = 0; ok && i < nw; i++)
        ok = r->ev[i].kind == w[i].kind && r->ev[i].len == w[i].len &&
             memcmp(s + r->ev[i].off, w[i].text, w[i].len) == 0;
    if (!ok) {
        fprintf(stderr, "  got %zu items, want %zu:\n", r->nev, nw);
        for (size_t i = 0; i < r->nev; i++)
            fprintf(stderr, "    %d '%.*s'\n", r->ev[i].kind, (int)r->ev[i].len, s + r->ev[i].off);
    }
    return ok;
}

#define OBJ RC_CHATSPLIT_OBJECT
#define GARB RC_CHATSPLIT_GARBAGE
#define SPC RC_CHATSPLIT_SPACE

TEST(chatsplit_back_to_back)
{
    static const char s[] = "{\"user\":\"ann\",\"text\":\"hi\"}"
                            "{\"user\":\"bob\",\"text\":\"yo\"}{}";
    static const struct want w[] = {W(OBJ, "{\"user\":\"ann\",\"text\":\"hi\"}"),
                                    W(OBJ, "{\"user\":\"bob\",\"text\":\"yo\"}"), W(OBJ, "{}")};
    struct run r;
    CHECK(check_all(&r, S(s), 1000));
    CHECK(items_are(&r, s, NW(w)));
    CHECK_EQ_INT(r.pos, sizeof s - 1);
    CHECK_EQ_INT(r.end, 0);
}

/* One and a half objects in one read: the first comes out, the half waits, and the next read
 * completes it without the scan starting over. */
TEST(chatsplit_one_and_a_half)
{
    rc_chatsplit cs;
    rc_chatsplit_init(&cs, 1000);
    int kind;
    size_t len;
    static const char s[] = "{\"user\":\"a\",\"text\":\"x\"}{\"user\":\"b\",\"te";
    CHECK_EQ_INT(rc_chatsplit_next(&cs, s, sizeof s - 1, &kind, &len), 23);
    CHECK_EQ_INT(kind, OBJ);
    CHECK_EQ_INT(len, 23);
    const char *half = s + 23;
    size_t hn = sizeof s - 1 - 23;
    CHECK_EQ_INT(rc_chatsplit_next(&cs, half, hn, &kind, &len), 0);
    CHECK_EQ_INT(cs.scanned, hn);
    CHECK_EQ_INT(cs.depth, 1);
    CHECK(cs.in_string);
    static const char rest[] = "{\"user\":\"b\",\"text\":\"}\"}  {";
    CHECK_EQ_INT(rc_chatsplit_next(&cs, rest, sizeof rest - 1, &kind, &len), 23);
    CHECK_EQ_INT(kind, OBJ);
    CHECK_MEM(rest, len, "{\"user\":\"b\",\"text\":\"}\"}", 23);
    CHECK_EQ_INT(cs.scanned, 0);
    CHECK_EQ_INT(rc_chatsplit_next(&cs, rest + 23, 3, &kind, &len), 2);
    CHECK_EQ_INT(kind, SPC);
    CHECK_EQ_INT(rc_chatsplit_next(&cs, rest + 25, 1, &kind, &len), 0);
    CHECK_EQ_INT(cs.scanned, 1);
}

/* Braces, brackets, quotes and backslashes inside strings do not count. */
TEST(chatsplit_strings)
{
    static const char s[] =
        "{\"text\":\"}\"}"                 /* a closing brace in a string */
        "{\"text\":\"{{{[[[\"}"            /* openers in a string */
        "{\"text\":\"a\\\"}\"}"            /* an escaped quote, then a brace, in the string */
        "{\"text\":\"a\\\\\"}"             /* an escaped backslash: the quote after it closes */
        "{\"t\\\"}\":\"\\\\\\\"\"}"        /* escapes in the key too */
        "{\"a\":[1,{\"b\":[]}],\"c\":{}}"  /* nesting */
        "{\"u\":\"\\u007d\"}"              /* \u escapes are plain bytes */
        "{\"s\":\"\xc3\xa9\\/\"}";
    static const struct want w[] = {
        W(OBJ, "{\"text\":\"}\"}"),
        W(OBJ, "{\"text\":\"{{{[[[\"}"),
        W(OBJ, "{\"text\":\"a\\\"}\"}"),
        W(OBJ, "{\"text\":\"a\\\\\"}"),
        W(OBJ, "{\"t\\\"}\":\"\\\\\\\"\"}"),
        W(OBJ, "{\"a\":[1,{\"b\":[]}],\"c\":{}}"),
        W(OBJ, "{\"u\":\"\\u007d\"}"),
        W(OBJ, "{\"s\":\"\xc3\xa9\\/\"}"),
    };
    struct run r;
    CHECK(check_all(&r, S(s), 1000));
    CHECK(items_are(&r, s, NW(w)));
    /* a backslash split from the byte it escapes */
    rc_chatsplit cs;
    rc_chatsplit_init(&cs, 100);
    int kind;
    size_t len;
    CHECK_EQ_INT(rc_chatsplit_next(&cs, "{\"a\\", 4, &kind, &len), 0);
    CHECK(cs.in_string && cs.escape);
    CHECK_EQ_INT(rc_chatsplit_next(&cs, "{\"a\\\"", 5, &kind, &len), 0);
    CHECK(cs.in_string && !cs.escape);
    CHECK_EQ_INT(rc_chatsplit_next(&cs, "{\"a\\\"\"}", 7, &kind, &len), 7);
}

/* Brackets count like braces and matching is not checked: the object ends when the count is
 * back to zero, whatever closes it, and the JSON scanner rejects it afterwards. */
TEST(chatsplit_unmatched)
{
    static const char s[] = "{]{[}]{\"a\":[}}{[]]";
    static const struct want w[] = {W(OBJ, "{]"), W(OBJ, "{[}]"), W(OBJ, "{\"a\":[}}"),
                                    W(OBJ, "{[]]")};
    struct run r;
    CHECK(check_all(&r, S(s), 1000));
    CHECK(items_are(&r, s, NW(w)));
    /* an unclosed object waits (until the size limit) */
    CHECK(check_all(&r, S("{\"a\":{\"b\":1}"), 1000));
    CHECK_EQ_INT(r.nev, 0);
    CHECK_EQ_INT(r.pos, 0);
    CHECK(check_all(&r, S("{\"a\":\"}"), 1000));
    CHECK_EQ_INT(r.nev, 0);
}

TEST(chatsplit_whitespace)
{
    static const char s[] = " \t\r\n{}\n\n{ \"a\" : 1 }\r\n  ";
    static const struct want w[] = {W(SPC, " \t\r\n"), W(OBJ, "{}"), W(SPC, "\n\n"),
                                    W(OBJ, "{ \"a\" : 1 }"), W(SPC, "\r\n  ")};
    struct run r;
    CHECK(check_all(&r, S(s), 1000));
    CHECK(items_are(&r, s, NW(w)));
    CHECK_EQ_INT(r.pos, sizeof s - 1);
    /* one call takes the whole run */
    rc_chatsplit cs;
    rc_chatsplit_init(&cs, 100);
    int kind;
    size_t len;
    CHECK_EQ_INT(rc_chatsplit_next(&cs, "  \n\t{}", 6, &kind, &len), 4);
    CHECK_EQ_INT(kind, SPC);
    CHECK_EQ_INT(len, 4);
    CHECK_EQ_INT(rc_chatsplit_next(&cs, "", 0, &kind, &len), 0);
    /* \f and \v are not whitespace here (nor in JSON): garbage */
    CHECK(check_all(&r, S("\f{}"), 1000));
    CHECK_EQ_INT(r.ev[0].kind, GARB);
}

/* Bytes outside objects are one garbage run up to the next '{', reported once. */
TEST(chatsplit_garbage)
{
    static const char s[] = "hello {\"a\":1} ]}\"x y\"\n\x00\xff{}  junk";
    static const struct want w[] = {W(GARB, "hello "), W(OBJ, "{\"a\":1}"), W(SPC, " "),
                                    W(GARB, "]}\"x y\"\n\x00\xff"), W(OBJ, "{}"), W(SPC, "  "),
                                    W(GARB, "junk")};
    struct run r;
    CHECK(check_all(&r, S(s), 1000));
    CHECK(items_are(&r, s, NW(w)));
    CHECK_EQ_INT(r.pos, sizeof s - 1);

    /* a run spanning reads is reported in the first, the rest comes back as SPACE */
    rc_chatsplit cs;
    rc_chatsplit_init(&cs, 100);
    int kind;
    size_t len;
    CHECK_EQ_INT(rc_chatsplit_next(&cs, "ab", 2, &kind, &len), 2);
    CHECK_EQ_INT(kind, GARB);
    CHECK(cs.garbage);
    CHECK_EQ_INT(rc_chatsplit_next(&cs, " c ", 3, &kind, &len), 3);
    CHECK_EQ_INT(kind, SPC);
    CHECK_EQ_INT(rc_chatsplit_next(&cs, "d{}", 3, &kind, &len), 1);
    CHECK_EQ_INT(kind, SPC);
    CHECK(!cs.garbage);
    CHECK_EQ_INT(rc_chatsplit_next(&cs, "{}", 2, &kind, &len), 2);
    CHECK_EQ_INT(kind, OBJ);
    CHECK_EQ_INT(rc_chatsplit_next(&cs, "x", 1, &kind, &len), 1);
    CHECK_EQ_INT(kind, GARB); /* a new run after an object */

    /* a byte by byte trickle of garbage is still one report */
    static char t[300];
    for (size_t i = 0; i < sizeof t; i++) t[i] = (char)("xyz}] \n"[i % 7]);
    t[sizeof t - 2] = '{';
    t[sizeof t - 1] = '}';
    CHECK(check_all(&r, t, sizeof t, 1000));
    CHECK_EQ_INT(r.nev, 2);
    CHECK_EQ_INT(r.ev[0].kind, GARB);
    CHECK_EQ_INT(r.ev[0].len, sizeof t - 2);
    CHECK_EQ_INT(r.ev[1].kind, OBJ);
}

/* An object of exactly max bytes is accepted; one of max + 1 is refused once max bytes of it
 * have gone by, before its end arrives. */
TEST(chatsplit_max)
{
    char s[600];
    for (size_t max = 2; max < 300; max += 37) {
        /* {"t":"xxx...x"} of max bytes, then of max + 1 */
        for (size_t extra = 0; extra <= 1; extra++) {
            size_t len = max + extra;
            if (len < 9) continue;
            memcpy(s, "{\"t\":\"", 6);
            memset(s + 6, 'x', len - 8);
            memcpy(s + len - 2, "\"}", 2);
            memcpy(s + len, "{}", 2);
            struct run r;
            CHECK(check_all(&r, s, len + 2, max));
            rc_chatsplit cs;
            rc_chatsplit_init(&cs, max);
            int kind;
            size_t got;
            if (extra == 0) {
                CHECK_EQ_INT(r.nev, 2);
                CHECK_EQ_INT(r.ev[0].len, max);
                CHECK_EQ_INT(rc_chatsplit_next(&cs, s, max - 1, &kind, &got), 0);
                CHECK_EQ_INT(rc_chatsplit_next(&cs, s, max, &kind, &got), (long)max);
            } else {
                CHECK_EQ_INT(r.end, -1);
                CHECK_EQ_INT(r.nev, 0);
                CHECK_EQ_INT(rc_chatsplit_next(&cs, s, max - 1, &kind, &got), 0);
                CHECK_EQ_INT(rc_chatsplit_next(&cs, s, max, &kind, &got), -1);
            }
        }
    }
    /* the limit is per object; garbage and whitespace are not limited (they are consumed) */
    struct run r;
    static char big[2000];
    memset(big, ' ', sizeof big);
    memcpy(big + 500, "garbage", 7);
    memcpy(big + sizeof big - 2, "{}", 2);
    CHECK(check_all(&r, big, sizeof big, 10));
    CHECK_EQ_INT(r.end, 0);
    CHECK_EQ_INT(r.ev[r.nev - 1].kind, OBJ);
    /* max 0 and 1 refuse every object, after max bytes of it: at once, or after the '{' */
    CHECK(check_all(&r, S("{}"), 0));
    CHECK_EQ_INT(r.end, -1);
    CHECK(check_all(&r, S(" {}"), 1));
    CHECK_EQ_INT(r.end, -1);
    CHECK_EQ_INT(r.pos, 1);
    CHECK(check_all(&r, S("{}"), 2));
    CHECK_EQ_INT(r.end, 0);
    CHECK_EQ_INT(r.nev, 1);
}

/* A deep opener run costs at most max bytes of scanning and then fails. */
TEST(chatsplit_deep)
{
    static char s[5000];
    memset(s, '[', sizeof s);
    s[0] = '{';
    struct run r;
    CHECK(check_all(&r, s, sizeof s, 1000));
    CHECK_EQ_INT(r.end, -1);
    /* and a balanced deep one is one object */
    for (size_t i = 0; i < 100; i++) s[i] = '{', s[199 - i] = '}';
    CHECK(check_all(&r, s, 200, 1000));
    CHECK_EQ_INT(r.nev, 1);
    CHECK_EQ_INT(r.ev[0].len, 200);
}

/* Random streams of objects, whitespace and garbage built from the bytes that matter. */
TEST(chatsplit_random_streams)
{
    static const char bytes[] = "{}[]\"\\\\  \t\n\rax:,\0\xff";
    static char s[2048];
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = (size_t)(unit_rand() % sizeof s);
        size_t max = (size_t)(unit_rand() % 4 == 0 ? unit_rand() % 8 : 8 + unit_rand() % 300);
        for (size_t i = 0; i < n; i++) {
            unsigned x = (unsigned)(unit_rand() % 64);
            /* mostly letters so that strings and objects get some length */
            s[i] = x < sizeof bytes - 1 ? bytes[x] : (char)('a' + x % 26);
        }
        struct run r;
        if (!check_all(&r, s, n, max)) {
            fprintf(stderr, "  iteration %d, max %zu: '%.*s'\n", iter, max, (int)n, s);
            CHECK(false);
        }
    }
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(chatsplit_back_to_back);
    RUN(chatsplit_one_and_a_half);
    RUN(chatsplit_strings);
    RUN(chatsplit_unmatched);
    RUN(chatsplit_whitespace);
    RUN(chatsplit_garbage);
    RUN(chatsplit_max);
    RUN(chatsplit_deep);
    RUN(chatsplit_random_streams);
    UNIT_MAIN_END("test_chatsplit");
}
