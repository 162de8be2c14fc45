/* fuzz_json.c — libFuzzer target for src/codec/json.c.
 *
 * The input is scanned as a client message. Two independent implementations must agree:
 *
 *  - rc_json_scan, the fast single-pass scanner, and
 *  - ref_*, a deliberately slow and obvious recursive-descent validator written here from
 *    RFC 8259, with the same depth limit and the same error precedence (syntax and depth errors
 *    at the first offending byte; "not an object" and "too many cuts" only for valid JSON).
 *    It also decodes top-level keys on its own, so it checks the key table, the member counts
 *    and the spans too.
 *
 * When the scan succeeds the message is spliced the way the server does it (copy_open without
 * client_id/msg_id, then `,"client_id":1,"msg_id":2}`) and the result must scan again, be valid
 * for the reference too, and hold exactly one client_id and one msg_id: the server's.
 *
 * The same input is also fed to rc_json_unescape (against the reference decoder), to
 * rc_json_escape (round trip) and to rc_json_get_u64 (against a simple reference).
 *
 * Build: see fuzz/fuzz.mk (clang -fsanitize=fuzzer,address,undefined), seeds in
 * fuzz/corpus/json/.
 */
#include "codec/json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned char uc;

#define CUT_IDS (RC_JK_BIT(RC_JK_CLIENT_ID) | RC_JK_BIT(RC_JK_MSG_ID))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "fuzz_json: %s:%d: check failed: %s\n", __FILE__,     \
                    __LINE__, #c);                                                 \
            abort();                                                               \
        }                                                                          \
    } while (0)

/* ---- the reference validator ---------------------------------------------------------- */

static const char *const ref_names[RC_JK__COUNT] = {
    [RC_JK_TYPE] = "type", [RC_JK_ROOM] = "room", [RC_JK_CLIENT_ID] = "client_id",
    [RC_JK_MSG_ID] = "msg_id", [RC_JK_ACK] = "ack", [RC_JK_SINCE] = "since",
    [RC_JK_EPOCH] = "epoch", [RC_JK_IDEMPOTENCY_KEY] = "idempotency_key",
    [RC_JK_SESSION] = "session",
    [RC_JK_HISTORY] = "history", [RC_JK_STATE] = "state", [RC_JK_PRESENCE] = "presence",
    [RC_JK_CONFLATE] = "conflate", [RC_JK_STATE_KEY] = "state_key",
    [RC_JK_STATE_DELETE] = "state_delete", [RC_JK_USER] = "user", [RC_JK_TOKEN] = "token",
};

struct ref {
    const uc *p;
    size_t n, i;               /* input and read position */
    unsigned cut_mask;
    size_t members, members_cut;
    size_t koff[RC_JK__COUNT], klen[RC_JK__COUNT]; /* last top-level value of each key */
    enum rc_json_type ktype[RC_JK__COUNT];
    unsigned dups;                /* known keys seen more than once at the top level */
};

static int ref_peek(const struct ref *r)
{
    return r->i < r->n ? r->p[r->i] : -1;
}

static void ref_ws(struct ref *r)
{
    while (r->i < r->n && (r->p[r->i] == ' ' || r->p[r->i] == '\t' || r->p[r->i] == '\n' ||
                           r->p[r->i] == '\r'))
        r->i++;
}

static int ref_hex(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* ref_decode decodes the body of a string literal p[0..n) (no quotes) into out; returns the
 * length, -1 when invalid or longer than cap, -2 when it is valid JSON that does not decode
 * (lone surrogate, NUL). */
static long ref_decode(const uc *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    int bad = 0;
    for (size_t i = 0; i < n;) {
        unsigned long cp;
        if (p[i] == '"' || p[i] < 0x20) return -1;
        if (p[i] != '\\') {
            if (o >= cap) return -1;
            out[o++] = (char)p[i++];
            continue;
        }
        if (i + 1 >= n) return -1;
        char c = (char)p[i + 1];
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        const char *hit = c ? strchr(from, c) : NULL;
        if (hit) {
            if (o >= cap) return -1;
            out[o++] = to[hit - from];
            i += 2;
            continue;
        }
        if (c != 'u' || i + 6 > n) return -1;
        cp = 0;
        for (int k = 2; k < 6; k++) {
            int h = ref_hex(p[i + k]);
            if (h < 0) return -1;
            cp = cp * 16 + (unsigned long)h;
        }
        i += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= n && p[i] == '\\' && p[i + 1] == 'u') {
            unsigned long lo = 0;
            int okhex = 1;
            for (int k = 2; k < 6; k++) {
                int h = ref_hex(p[i + k]);
                if (h < 0) okhex = 0;
                else lo = lo * 16 + (unsigned long)h;
            }
            if (okhex && lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
        }
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0) {
            bad = 1; /* keep going: a later syntax error still makes it -1 */
            continue;
        }
        uc u[4];
        size_t k;
        if (cp < 0x80) u[0] = (uc)cp, k = 1;
        else if (cp < 0x800) u[0] = (uc)(0xC0 | cp >> 6), u[1] = (uc)(0x80 | (cp & 63)), k = 2;
        else if (cp < 0x10000)
            u[0] = (uc)(0xE0 | cp >> 12), u[1] = (uc)(0x80 | (cp >> 6 & 63)),
            u[2] = (uc)(0x80 | (cp & 63)), k = 3;
        else
            u[0] = (uc)(0xF0 | cp >> 18), u[1] = (uc)(0x80 | (cp >> 12 & 63)),
            u[2] = (uc)(0x80 | (cp >> 6 & 63)), u[3] = (uc)(0x80 | (cp & 63)), k = 4;
        if (o + k > cap) return -1;
        memcpy(out + o, u, k);
        o += k;
    }
    return bad ? -2 : (long)o;
}

/* ref_string reads a string literal at r->i; the body is [*b, *b + *blen). */
static int ref_string(struct ref *r, size_t *b, size_t *blen)
{
    if (ref_peek(r) != '"') return RC_JSON_ESYNTAX;
    r->i++;
    *b = r->i;
    for (;;) {
        int c = ref_peek(r);
        if (c < 0x20) return RC_JSON_ESYNTAX; /* end of input, or a control character */
        r->i++;
        if (c == '"') break;
        if (c != '\\') continue;
        c = ref_peek(r);
        if (c <= 0 || !strchr("\"\\/bfnrtu", c)) return RC_JSON_ESYNTAX;
        r->i++;
        if (c == 'u')
            for (int k = 0; k < 4; k++) {
                if (ref_hex(ref_peek(r)) < 0) return RC_JSON_ESYNTAX;
                r->i++;
            }
    }
    *blen = r->i - 1 - *b;
    return RC_JSON_OK;
}

static int ref_digits(struct ref *r)
{
    size_t start = r->i;
    while (ref_peek(r) >= '0' && ref_peek(r) <= '9') r->i++;
    return r->i > start;
}

static int ref_number(struct ref *r)
{
    if (ref_peek(r) == '-') r->i++;
    if (ref_peek(r) == '0') r->i++;
    else if (!ref_digits(r)) return RC_JSON_ESYNTAX;
    if (ref_peek(r) == '.') {
        r->i++;
        if (!ref_digits(r)) return RC_JSON_ESYNTAX;
    }
    if (ref_peek(r) == 'e' || ref_peek(r) == 'E') {
        r->i++;
        if (ref_peek(r) == '+' || ref_peek(r) == '-') r->i++;
        if (!ref_digits(r)) return RC_JSON_ESYNTAX;
    }
    return RC_JSON_OK;
}

static int ref_value(struct ref *r, int depth);

/* ref_object reads an object at r->i; depth counts it. top: record members. */
static int ref_object(struct ref *r, int depth, int top)
{
    r->i++;
    ref_ws(r);
    if (ref_peek(r) == '}') {
        r->i++;
        return RC_JSON_OK;
    }
    for (;;) {
        size_t b, blen;
        ref_ws(r);
        int e = ref_string(r, &b, &blen);
        if (e) return e;
        ref_ws(r);
        if (ref_peek(r) != ':') return RC_JSON_ESYNTAX;
        r->i++;
        ref_ws(r);
        size_t vstart = r->i;
        e = ref_value(r, depth);
        if (e) return e;
        if (top) {
            char name[128];
            long len = ref_decode(r->p + b, blen, name, sizeof name);
            r->members++;
            for (int k = 0; k < RC_JK__COUNT; k++) {
                if (len != (long)strlen(ref_names[k]) || memcmp(name, ref_names[k], (size_t)len))
                    continue;
                if (r->ktype[k] != RC_JSON_NONE) r->dups |= RC_JK_BIT(k);
                r->koff[k] = vstart;
                r->klen[k] = r->i - vstart;
                switch (r->p[vstart]) {
                case '"': r->ktype[k] = RC_JSON_STRING; break;
                case '{': r->ktype[k] = RC_JSON_OBJECT; break;
                case '[': r->ktype[k] = RC_JSON_ARRAY; break;
                case 't': r->ktype[k] = RC_JSON_TRUE; break;
                case 'f': r->ktype[k] = RC_JSON_FALSE; break;
                case 'n': r->ktype[k] = RC_JSON_NULL; break;
                default: r->ktype[k] = RC_JSON_NUMBER; break;
                }
                if (r->cut_mask & RC_JK_BIT(k)) r->members_cut++;
            }
        }
        ref_ws(r);
        int c = ref_peek(r);
        r->i++;
        if (c == '}') return RC_JSON_OK;
        if (c != ',') return RC_JSON_ESYNTAX;
    }
}

static int ref_array(struct ref *r, int depth)
{
    r->i++;
    ref_ws(r);
    if (ref_peek(r) == ']') {
        r->i++;
        return RC_JSON_OK;
    }
    for (;;) {
        int e = ref_value(r, depth);
        if (e) return e;
        ref_ws(r);
        int c = ref_peek(r);
        r->i++;
        if (c == ']') return RC_JSON_OK;
        if (c != ',') return RC_JSON_ESYNTAX;
    }
}

/* ref_value reads a value inside `depth` open containers. */
static int ref_value(struct ref *r, int depth)
{
    ref_ws(r);
    int c = ref_peek(r);
    static const char *const lits[] = { "true", "false", "null" };
    switch (c) {
    case '{':
        if (depth >= RC_JSON_MAX_DEPTH) return RC_JSON_EDEPTH;
        return ref_object(r, depth + 1, depth == 0);
    case '[':
        if (depth >= RC_JSON_MAX_DEPTH) return RC_JSON_EDEPTH;
        return ref_array(r, depth + 1);
    case '"': {
        size_t b, blen;
        return ref_string(r, &b, &blen);
    }
    case 't': case 'f': case 'n':
        for (int k = 0; k < 3; k++) {
            size_t l = strlen(lits[k]);
            if (lits[k][0] == c) {
                if (r->n - r->i < l || memcmp(r->p + r->i, lits[k], l)) return RC_JSON_ESYNTAX;
                r->i += l;
            }
        }
        return RC_JSON_OK;
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return ref_number(r);
        return RC_JSON_ESYNTAX;
    }
}

static int ref_scan(const uc *p, size_t n, unsigned cut_mask, struct ref *r)
{
    memset(r, 0, sizeof *r);
    r->p = p;
    r->n = n;
    r->cut_mask = cut_mask;
    ref_ws(r);
    int top_obj = ref_peek(r) == '{';
    int e = ref_value(r, 0);
    if (e) return e;
    ref_ws(r);
    if (r->i != n) return RC_JSON_ESYNTAX;
    if (!top_obj) return RC_JSON_ENOTOBJECT;
    if (r->members_cut > RC_JSON_MAX_CUTS) return RC_JSON_ECUTS;
    return RC_JSON_OK;
}

/* ---- checks ---------------------------------------------------------------------------- */

static void compare_with_ref(const uc *p, size_t n, unsigned mask, int got,
                             const rc_json_top *t)
{
    struct ref r;
    int want = ref_scan(p, n, mask, &r);
    if (got != want) {
        fprintf(stderr, "fuzz_json: scan %d, reference %d, mask %#x, input '%.*s'\n", got, want,
                mask, (int)n, (const char *)p);
        abort();
    }
    if (got != RC_JSON_OK) return;
    CHECK(t->members == r.members);
    CHECK(t->members_cut == r.members_cut);
    CHECK(t->ncut == t->members_cut);
    CHECK(t->dups == r.dups);
    CHECK(p[t->open] == '{' && p[t->close] == '}' && t->open < t->close && t->close < n);
    for (int k = 0; k < RC_JK__COUNT; k++) {
        const rc_json_span *s = &t->key[k];
        CHECK(s->type == r.ktype[k]);
        if (s->type == RC_JSON_NONE) continue;
        CHECK((const uc *)s->p == p + r.koff[k] && s->len == r.klen[k]);
    }
    for (size_t i = 0; i < t->ncut; i++) {
        CHECK(t->cut[i].off > t->open && t->cut[i].off + t->cut[i].len <= t->close);
        if (i) CHECK(t->cut[i].off >= t->cut[i - 1].off + t->cut[i - 1].len);
    }
    /* The member walker (rc_json_member, for accepted text) must find what the scanner
     * found, span for span, and count the same members. */
    for (int k = 0; k < RC_JK__COUNT; k++) {
        rc_json_span v;
        bool found = rc_json_member((const char *)p, n, ref_names[k], &v);
        CHECK(found == (t->key[k].type != RC_JSON_NONE));
        if (found) CHECK(v.p == t->key[k].p && v.len == t->key[k].len && v.type == t->key[k].type);
    }
    rc_json_iter it;
    rc_json_span ks, vs;
    size_t members = 0;
    CHECK(rc_json_iter_init(&it, (const char *)p, n));
    while (rc_json_iter_next(&it, &ks, &vs)) members++;
    CHECK(members == t->members);
}

/* check_splice rebuilds the message as the server does and checks the result. */
static void check_splice(const uc *p, size_t n, const rc_json_top *t)
{
    static const char tail[] = "\"client_id\":1,\"msg_id\":2}";
    size_t cap = n + sizeof tail;
    char *out = malloc(cap);
    CHECK(out);
    bool nonempty;
    size_t o = rc_json_copy_open((const char *)p, t, out, &nonempty);
    CHECK(o <= n);
    CHECK(nonempty == (t->members > t->members_cut));
    if (nonempty) out[o++] = ',';
    memcpy(out + o, tail, sizeof tail - 1);
    o += sizeof tail - 1;

    rc_json_top t2;
    int r2 = rc_json_scan(out, o, CUT_IDS, &t2);
    if (r2 != RC_JSON_OK) {
        fprintf(stderr, "fuzz_json: splice of '%.*s' gave '%.*s' (%d)\n", (int)n,
                (const char *)p, (int)o, out, r2);
        abort();
    }
    compare_with_ref((const uc *)out, o, CUT_IDS, r2, &t2);
    CHECK(t2.members_cut == 2);
    CHECK(t2.members == t->members - t->members_cut + 2);
    CHECK(t2.key[RC_JK_CLIENT_ID].len == 1 && t2.key[RC_JK_CLIENT_ID].p[0] == '1');
    CHECK(t2.key[RC_JK_MSG_ID].len == 1 && t2.key[RC_JK_MSG_ID].p[0] == '2');
    /* Every other key the client sent survives with the same value text. */
    for (int k = 0; k < RC_JK__COUNT; k++) {
        if (CUT_IDS & RC_JK_BIT(k)) continue;
        CHECK(t2.key[k].type == t->key[k].type && t2.key[k].len == t->key[k].len);
        if (t->key[k].len) CHECK(!memcmp(t2.key[k].p, t->key[k].p, t->key[k].len));
    }
    free(out);
}

static void check_strings(const uc *p, size_t n)
{
    char *buf = malloc(n + 1);
    CHECK(buf);

    /* The whole input as a string literal, with room to spare and with too little. */
    long got = rc_json_unescape((const char *)p, n, buf, n + 1);
    long want = -1;
    char *rbuf = malloc(n + 1);
    CHECK(rbuf);
    if (n >= 2 && p[0] == '"' && p[n - 1] == '"') {
        want = ref_decode(p + 1, n - 2, rbuf, n + 1);
        if (want == -2) want = -1;
    }
    if (got != want) {
        fprintf(stderr, "fuzz_json: unescape %ld, reference %ld, input '%.*s'\n", got, want,
                (int)n, (const char *)p);
        abort();
    }
    if (got >= 0) {
        CHECK(!memcmp(buf, rbuf, (size_t)got));
        if (got > 0) CHECK(rc_json_unescape((const char *)p, n, buf, (size_t)got - 1) == -1);
    }
    free(rbuf);

    /* Escape round trip; the escaped text must be a valid member value. */
    size_t cap = rc_json_escape_max(n) + 8;
    char *lit = malloc(cap);
    CHECK(lit);
    memcpy(lit, "{\"k\":", 5);
    size_t ln = rc_json_escape((const char *)p, n, lit + 5);
    CHECK(ln <= rc_json_escape_max(n));
    lit[5 + ln] = '}';
    rc_json_top t;
    CHECK(rc_json_scan(lit, ln + 6, CUT_IDS, &t) == RC_JSON_OK);
    long back = rc_json_unescape(lit + 5, ln, buf, n);
    if (memchr(p, 0, n)) {
        CHECK(back == -1);
    } else {
        CHECK(back == (long)n && !memcmp(buf, p, n));
    }
    free(lit);
    free(buf);
}

static void check_u64(const uc *p, size_t n)
{
    rc_json_span s = { (const char *)p, n, RC_JSON_NUMBER };
    uint64_t v = 0;
    bool got = rc_json_get_u64(&s, &v);
    bool want = n > 0 && !(n > 1 && p[0] == '0');
    unsigned __int128 acc = 0;
    for (size_t i = 0; want && i < n; i++) {
        if (p[i] < '0' || p[i] > '9') want = false;
        else if ((acc = acc * 10 + (p[i] - '0')) > UINT64_MAX) want = false;
    }
    CHECK(got == want);
    if (got) CHECK(v == (uint64_t)acc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size heap copy, so ASan sees any read past the end. */
    uc *p = malloc(size ? size : 1);
    CHECK(p);
    memcpy(p, data, size);

    rc_json_top t;
    int r = rc_json_scan((const char *)p, size, CUT_IDS, &t);
    compare_with_ref(p, size, CUT_IDS, r, &t);
    if (r == RC_JSON_OK) check_splice(p, size, &t);

    /* Without cuts the verdict is the same, except that too many cuts cannot happen. */
    rc_json_top t0;
    int r0 = rc_json_scan((const char *)p, size, 0, &t0);
    compare_with_ref(p, size, 0, r0, &t0);
    CHECK(r0 == (r == RC_JSON_ECUTS ? RC_JSON_OK : r));
    if (r0 == RC_JSON_OK) {
        CHECK(t0.ncut == 0);
        char *out = malloc(size);
        CHECK(out);
        bool ne;
        size_t o = rc_json_copy_open((const char *)p, &t0, out, &ne);
        CHECK(o == t0.close - t0.open && !memcmp(out, p + t0.open, o));
        CHECK(ne == (t0.members > 0));
        free(out);
    }

    if (size <= 4096) {
        check_strings(p, size);
        check_u64(p, size);
    }
    free(p);
    return 0;
}
