/* test_json.c — unit tests for src/codec/json.c.
 *
 * Every document is copied into a heap buffer of exactly its length before scanning, so
 * AddressSanitizer catches any read past n (the scanner must never rely on a terminator).
 * The tables are JSONTestSuite-style cases written for roomcast; the splice tests rebuild the
 * message the way the server does (copy_open + `,"client_id":1,"msg_id":2}`) and re-scan it.
 */
#include "unit.h"

#include "codec/json.h"

#include <stdint.h>

#define CUT_IDS (RC_JK_BIT(RC_JK_CLIENT_ID) | RC_JK_BIT(RC_JK_MSG_ID))

/* scan_exact scans doc[0..n) from a heap copy of exactly n bytes. */
static int scan_exact(const char *doc, size_t n, unsigned mask, rc_json_top *t)
{
    char *b = malloc(n ? n : 1);
    if (!b) abort();
    memcpy(b, doc, n);
    int r = rc_json_scan(b, n, mask, t);
    /* Spans point into b; callers that look at them use scan_keep instead. */
    free(b);
    return r;
}

static int scan_str(const char *doc, unsigned mask)
{
    rc_json_top t;
    return scan_exact(doc, strlen(doc), mask, &t);
}

struct json_case {
    const char *doc;
    size_t n;     /* bytes of doc, which may contain NUL bytes */
    int want;
};
#define C(lit, want) { lit, sizeof(lit) - 1, want }

/* Valid top-level objects. */
static const struct json_case valid_objects[] = {
    C("{}", RC_JSON_OK),
    C(" {} ", RC_JSON_OK),
    C("\t\r\n{\t\r\n}\t\r\n", RC_JSON_OK),
    C("{\"a\":1}", RC_JSON_OK),
    C("{\"type\":\"chat\",\"room\":\"lobby\",\"text\":\"hi\"}", RC_JSON_OK),
    C("{ \"a\" : 1 , \"b\" : [ 1 , 2 , { } , [ ] ] , \"c\" : { \"d\" : null } }", RC_JSON_OK),
    C("{\"a\":[],\"b\":{},\"c\":[[]],\"d\":[{}],\"e\":{\"f\":{}}}", RC_JSON_OK),
    C("{\"t\":true,\"f\":false,\"n\":null}", RC_JSON_OK),
    C("{\"a\":[true,false,null]}", RC_JSON_OK),
    C("{\"n\":0}", RC_JSON_OK),
    C("{\"n\":-0}", RC_JSON_OK),
    C("{\"n\":-0.0}", RC_JSON_OK),
    C("{\"n\":0.5}", RC_JSON_OK),
    C("{\"n\":-1.5e10}", RC_JSON_OK),
    C("{\"n\":1E+2}", RC_JSON_OK),
    C("{\"n\":1e-2}", RC_JSON_OK),
    C("{\"n\":1e2}", RC_JSON_OK),
    C("{\"n\":0e0}", RC_JSON_OK),
    C("{\"n\":123456789012345678901234567890}", RC_JSON_OK),
    C("{\"n\":[1,-1,0.1,1e1,1E1,1e+1,1e-1,-0e-0]}", RC_JSON_OK),
    C("{\"s\":\"\"}", RC_JSON_OK),
    C("{\"\":\"\"}", RC_JSON_OK),
    C("{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}", RC_JSON_OK),
    C("{\"s\":\"\\u0041\\u00e9\\u00E9\\uFFFF\\uabcd\"}", RC_JSON_OK),
    C("{\"s\":\"\\uD834\\uDD1E\"}", RC_JSON_OK),
    C("{\"s\":\"\\uD800\"}", RC_JSON_OK),          /* lone surrogates are valid JSON */
    C("{\"s\":\"\\uDC00\"}", RC_JSON_OK),
    C("{\"s\":\"\\uDD1E\\uD834\"}", RC_JSON_OK),
    C("{\"s\":\"\\u0000\"}", RC_JSON_OK),          /* valid JSON; unescape refuses it */
    C("{\"s\":\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"}", RC_JSON_OK),
    C("{\"s\":\"\x7f/'\"}", RC_JSON_OK),
    C("{\"s\":\"a long string that crosses several eight-byte words of input\"}", RC_JSON_OK),
    C("{\"a\":1,\"a\":2}", RC_JSON_OK),             /* duplicates are allowed */
    C("{\"a\\\"b\":1}", RC_JSON_OK),
    C("{\"a\":\"}\",\"b\":\"]\",\"c\":\",\"}", RC_JSON_OK),
};

/* Valid JSON whose top level is not an object. */
static const struct json_case valid_not_objects[] = {
    C("[]", RC_JSON_ENOTOBJECT),
    C("[1,2]", RC_JSON_ENOTOBJECT),
    C(" [ ] ", RC_JSON_ENOTOBJECT),
    C("[{}]", RC_JSON_ENOTOBJECT),
    C("[{\"a\":[1,{\"b\":2}]}]", RC_JSON_ENOTOBJECT),
    C("1", RC_JSON_ENOTOBJECT),
    C("0", RC_JSON_ENOTOBJECT),
    C("-0", RC_JSON_ENOTOBJECT),
    C("1.5e3 ", RC_JSON_ENOTOBJECT),
    C("\"x\"", RC_JSON_ENOTOBJECT),
    C("\"\"", RC_JSON_ENOTOBJECT),
    C("true", RC_JSON_ENOTOBJECT),
    C("false", RC_JSON_ENOTOBJECT),
    C("null", RC_JSON_ENOTOBJECT),
    C(" null\n", RC_JSON_ENOTOBJECT),
};

static const struct json_case invalid[] = {
    /* empty and whitespace */
    C("", RC_JSON_ESYNTAX),
    C(" ", RC_JSON_ESYNTAX),
    C("\t\r\n ", RC_JSON_ESYNTAX),
    C("\f{}", RC_JSON_ESYNTAX),                 /* form feed is not JSON whitespace */
    C("{}\v", RC_JSON_ESYNTAX),
    C("\xc2\xa0{}", RC_JSON_ESYNTAX),           /* no-break space is not either */
    /* structure */
    C("{", RC_JSON_ESYNTAX),
    C("}", RC_JSON_ESYNTAX),
    C("{{}}", RC_JSON_ESYNTAX),
    C("{,}", RC_JSON_ESYNTAX),
    C("{\"a\":1,}", RC_JSON_ESYNTAX),
    C("{\"a\":1 ,}", RC_JSON_ESYNTAX),
    C("{\"a\":[1,]}", RC_JSON_ESYNTAX),
    C("{\"a\":{\"b\":1,}}", RC_JSON_ESYNTAX),
    C("{\"a\":[,1]}", RC_JSON_ESYNTAX),
    C("{\"a\":[1,,2]}", RC_JSON_ESYNTAX),
    C("{\"a\":[1 2]}", RC_JSON_ESYNTAX),
    C("{\"a\":1,,\"b\":2}", RC_JSON_ESYNTAX),
    C("{,\"a\":1}", RC_JSON_ESYNTAX),
    C("{\"a\"}", RC_JSON_ESYNTAX),
    C("{\"a\":}", RC_JSON_ESYNTAX),
    C("{\"a\" 1}", RC_JSON_ESYNTAX),
    C("{\"a\"::1}", RC_JSON_ESYNTAX),
    C("{\"a\":1:2}", RC_JSON_ESYNTAX),
    C("{a:1}", RC_JSON_ESYNTAX),
    C("{'a':1}", RC_JSON_ESYNTAX),
    C("{1:1}", RC_JSON_ESYNTAX),
    C("{null:1}", RC_JSON_ESYNTAX),
    C("{\"a\":1 \"b\":2}", RC_JSON_ESYNTAX),
    C("{\"a\":{\"b\" 1}}", RC_JSON_ESYNTAX),
    C("{\"a\":{1:1}}", RC_JSON_ESYNTAX),
    C("{\"a\":{\"b\":}}", RC_JSON_ESYNTAX),
    C("{\"a\":[1}", RC_JSON_ESYNTAX),
    C("{\"a\":{]}", RC_JSON_ESYNTAX),
    C("{\"a\":{\"b\":1]}", RC_JSON_ESYNTAX),
    C("{\"a\":[}", RC_JSON_ESYNTAX),
    C("{\"a\":[1,2}", RC_JSON_ESYNTAX),
    C("{\"a\":1]", RC_JSON_ESYNTAX),
    C("[1}", RC_JSON_ESYNTAX),
    C("[1,", RC_JSON_ESYNTAX),
    C("[1", RC_JSON_ESYNTAX),
    C("[", RC_JSON_ESYNTAX),
    C("]", RC_JSON_ESYNTAX),
    C("[]]", RC_JSON_ESYNTAX),
    C("{\"a\":[[1]]]}", RC_JSON_ESYNTAX),
    /* unclosed */
    C("{\"a\":1", RC_JSON_ESYNTAX),
    C("{\"a\":1,", RC_JSON_ESYNTAX),
    C("{\"a\":", RC_JSON_ESYNTAX),
    C("{\"a\"", RC_JSON_ESYNTAX),
    C("{\"a", RC_JSON_ESYNTAX),
    C("{\"a\":\"abc", RC_JSON_ESYNTAX),
    C("{\"a\":\"abc\\", RC_JSON_ESYNTAX),
    C("{\"a\":\"abc\\\"}", RC_JSON_ESYNTAX),
    C("{\"a\":[1,2", RC_JSON_ESYNTAX),
    C("{\"a\":{\"b\":1}", RC_JSON_ESYNTAX),
    C("\"abc", RC_JSON_ESYNTAX),
    /* extra tokens after the value */
    C("{\"a\":1}}", RC_JSON_ESYNTAX),
    C("{\"a\":1} x", RC_JSON_ESYNTAX),
    C("{} {}", RC_JSON_ESYNTAX),
    C("{}1", RC_JSON_ESYNTAX),
    C("{},", RC_JSON_ESYNTAX),
    C("[] []", RC_JSON_ESYNTAX),
    C("1 2", RC_JSON_ESYNTAX),
    C("truefalse", RC_JSON_ESYNTAX),
    C("{\"a\":truex}", RC_JSON_ESYNTAX),
    C("{\"a\":nullnull}", RC_JSON_ESYNTAX),
    C("{\"a\":\"b\"\"c\"}", RC_JSON_ESYNTAX),
    /* numbers */
    C("-", RC_JSON_ESYNTAX),
    C("1.", RC_JSON_ESYNTAX),
    C(".5", RC_JSON_ESYNTAX),
    C("1e", RC_JSON_ESYNTAX),
    C("01", RC_JSON_ESYNTAX),
    C("--1", RC_JSON_ESYNTAX),
    C("{\"a\":-}", RC_JSON_ESYNTAX),
    C("{\"a\":1.}", RC_JSON_ESYNTAX),
    C("{\"a\":.5}", RC_JSON_ESYNTAX),
    C("{\"a\":1e}", RC_JSON_ESYNTAX),
    C("{\"a\":1E}", RC_JSON_ESYNTAX),
    C("{\"a\":1e+}", RC_JSON_ESYNTAX),
    C("{\"a\":1e-}", RC_JSON_ESYNTAX),
    C("{\"a\":1.e1}", RC_JSON_ESYNTAX),
    C("{\"a\":1.5.2}", RC_JSON_ESYNTAX),
    C("{\"a\":1e1.5}", RC_JSON_ESYNTAX),
    C("{\"a\":1e1e1}", RC_JSON_ESYNTAX),
    C("{\"a\":01}", RC_JSON_ESYNTAX),
    C("{\"a\":00}", RC_JSON_ESYNTAX),
    C("{\"a\":-01}", RC_JSON_ESYNTAX),
    C("{\"a\":+1}", RC_JSON_ESYNTAX),
    C("{\"a\":--1}", RC_JSON_ESYNTAX),
    C("{\"a\":- 1}", RC_JSON_ESYNTAX),
    C("{\"a\":0x10}", RC_JSON_ESYNTAX),
    C("{\"a\":1_000}", RC_JSON_ESYNTAX),
    C("{\"a\":Infinity}", RC_JSON_ESYNTAX),
    C("{\"a\":-Infinity}", RC_JSON_ESYNTAX),
    C("{\"a\":NaN}", RC_JSON_ESYNTAX),
    C("{\"a\":[.1]}", RC_JSON_ESYNTAX),
    C("{\"a\":[1.]}", RC_JSON_ESYNTAX),
    C("{\"a\":1", RC_JSON_ESYNTAX),
    C("{\"a\":-", RC_JSON_ESYNTAX),
    C("{\"a\":1.", RC_JSON_ESYNTAX),
    C("{\"a\":1e", RC_JSON_ESYNTAX),
    C("{\"a\":1e+", RC_JSON_ESYNTAX),
    /* literals */
    C("{\"a\":tru}", RC_JSON_ESYNTAX),
    C("{\"a\":True}", RC_JSON_ESYNTAX),
    C("{\"a\":nul}", RC_JSON_ESYNTAX),
    C("{\"a\":NULL}", RC_JSON_ESYNTAX),
    C("{\"a\":fals}", RC_JSON_ESYNTAX),
    C("{\"a\":undefined}", RC_JSON_ESYNTAX),
    C("{\"a\":t", RC_JSON_ESYNTAX),
    C("{\"a\":tr", RC_JSON_ESYNTAX),
    C("{\"a\":fal", RC_JSON_ESYNTAX),
    C("tru", RC_JSON_ESYNTAX),
    C("nul", RC_JSON_ESYNTAX),
    /* strings */
    C("{\"a\":\"\x01\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\x1f\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\t\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\n\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"abcdefghijklmnop\nqrstuvwxyz\"}", RC_JSON_ESYNTAX),
    C("{\"a\x01\":1}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\\x41\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\\'\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\\a\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\\0\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\\U0041\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\\u12\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\\u123\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\\u12G4\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\\u-123\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\\u\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\\u12", RC_JSON_ESYNTAX),
    C("{\"a\":\"\\\x01\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\\ \"}", RC_JSON_ESYNTAX),
    C("{\"\\q\":1}", RC_JSON_ESYNTAX),
    C("\"\\u12\"", RC_JSON_ESYNTAX),
    C("{\"a\":'b'}", RC_JSON_ESYNTAX),
    /* embedded NUL bytes, outside and inside strings */
    C("{\"a\":1}\0", RC_JSON_ESYNTAX),
    C("\0{\"a\":1}", RC_JSON_ESYNTAX),
    C("{\0\"a\":1}", RC_JSON_ESYNTAX),
    C("{\"a\"\0:1}", RC_JSON_ESYNTAX),
    C("{\"a\":\0 1}", RC_JSON_ESYNTAX),
    C("{\"a\":1\0}", RC_JSON_ESYNTAX),
    C("{\"a\0\":1}", RC_JSON_ESYNTAX),
    C("{\"a\":\"b\0c\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"0123456789\0abcdef\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\\\0\"}", RC_JSON_ESYNTAX),
    C("{\"a\":\"\\u00\0\"}", RC_JSON_ESYNTAX),
    C("{\"a\":[1,\0 2]}", RC_JSON_ESYNTAX),
    C("{\"a\":t\0ue}", RC_JSON_ESYNTAX),
    C("\0", RC_JSON_ESYNTAX),
};

static int check_table(const struct json_case *c, size_t count, const char *name)
{
    int bad = 0;
    for (size_t i = 0; i < count; i++) {
        size_t n = c[i].n;
        rc_json_top t;
        int r = scan_exact(c[i].doc, n, CUT_IDS, &t);
        if (r != c[i].want) {
            fprintf(stderr, "  %s[%zu] '%.*s': got %d, want %d\n", name, i, (int)n, c[i].doc, r,
                    c[i].want);
            bad++;
        }
    }
    return bad;
}

TEST(json_valid_objects)
{
    CHECK_EQ_INT(check_table(valid_objects, sizeof valid_objects / sizeof *valid_objects,
                             "valid_objects"), 0);
}

TEST(json_empty_null)
{
    rc_json_top t;
    CHECK_EQ_INT(rc_json_scan(NULL, 0, CUT_IDS, &t), RC_JSON_ESYNTAX);
    char out[4];
    CHECK_EQ_INT(rc_json_unescape(NULL, 0, out, sizeof out), -1);
}

TEST(json_valid_not_objects)
{
    CHECK_EQ_INT(check_table(valid_not_objects,
                             sizeof valid_not_objects / sizeof *valid_not_objects,
                             "valid_not_objects"), 0);
}

TEST(json_invalid)
{
    CHECK_EQ_INT(check_table(invalid, sizeof invalid / sizeof *invalid, "invalid"), 0);
}

/* Every proper prefix of a valid object that stops before its closing brace is invalid, and
 * whitespace may follow the object. */
TEST(json_prefixes_are_invalid)
{
    for (size_t i = 0; i < sizeof valid_objects / sizeof *valid_objects; i++) {
        const char *doc = valid_objects[i].doc;
        size_t n = strlen(doc);
        const char *close = strrchr(doc, '}');
        CHECK(close != NULL);
        for (size_t k = 0; k <= (size_t)(close - doc); k++) {
            rc_json_top t;
            int r = scan_exact(doc, k, CUT_IDS, &t);
            if (r != RC_JSON_ESYNTAX) {
                fprintf(stderr, "  prefix %zu of '%s' gave %d\n", k, doc, r);
                CHECK(0);
            }
        }
        for (size_t k = (size_t)(close - doc) + 1; k <= n; k++) {
            rc_json_top t;
            CHECK_EQ_INT(scan_exact(doc, k, CUT_IDS, &t), RC_JSON_OK);
        }
    }
}

/* nest builds an object of the given depth: {"a": then depth-1 containers of kind open. */
static char *nest(unsigned depth, char open, bool unclosed)
{
    char close = open == '[' ? ']' : '}';
    size_t cap = 16 + 8 * (size_t)depth;
    char *b = malloc(cap);
    size_t o = 0;
    if (!b) abort();
    o += (size_t)sprintf(b + o, "{\"a\":");
    for (unsigned i = 1; i < depth; i++) {
        if (open == '{' && i + 1 < depth) o += (size_t)sprintf(b + o, "{\"a\":");
        else b[o++] = open;
    }
    if (!unclosed) {
        for (unsigned i = 1; i < depth; i++) b[o++] = close;
        b[o++] = '}';
    }
    b[o] = 0;
    return b;
}

TEST(json_depth)
{
    static const char kinds[] = { '[', '{' };
    for (size_t k = 0; k < 2; k++) {
        char *d63 = nest(63, kinds[k], false), *d64 = nest(64, kinds[k], false),
             *d65 = nest(65, kinds[k], false), *u64 = nest(64, kinds[k], true),
             *u65 = nest(65, kinds[k], true), *d200 = nest(200, kinds[k], true);
        int r63 = scan_str(d63, 0), r64 = scan_str(d64, 0), r65 = scan_str(d65, 0),
            ru64 = scan_str(u64, 0), ru65 = scan_str(u65, 0), r200 = scan_str(d200, 0);
        free(d63); free(d64); free(d65); free(u64); free(u65); free(d200);
        CHECK_EQ_INT(r63, RC_JSON_OK);
        CHECK_EQ_INT(r64, RC_JSON_OK);
        CHECK_EQ_INT(r65, RC_JSON_EDEPTH);
        CHECK_EQ_INT(ru64, RC_JSON_ESYNTAX);
        CHECK_EQ_INT(ru65, RC_JSON_EDEPTH);
        CHECK_EQ_INT(r200, RC_JSON_EDEPTH);
    }
    /* Pure arrays: 64 levels are valid JSON (but not an object), 65 are too deep. */
    char a[200];
    memset(a, '[', 64);
    memset(a + 64, ']', 64);
    CHECK_EQ_INT(scan_exact(a, 128, 0, &(rc_json_top){0}), RC_JSON_ENOTOBJECT);
    memset(a, '[', 65);
    memset(a + 65, ']', 65);
    CHECK_EQ_INT(scan_exact(a, 130, 0, &(rc_json_top){0}), RC_JSON_EDEPTH);
    /* Depth goes back down: many siblings at depth 64 are fine. */
    char *b = nest(64, '[', true);
    size_t n = strlen(b);
    char *c = malloc(n + 64 * 4 + 8);
    memcpy(c, b, n);
    free(b);
    for (int i = 0; i < 3; i++) c[n++] = '1', c[n++] = ']', c[n++] = ',', c[n++] = '[';
    c[n++] = ']';
    for (int i = 1; i < 63; i++) c[n++] = ']';
    c[n++] = '}';
    int r = scan_exact(c, n, 0, &(rc_json_top){0});
    free(c);
    CHECK_EQ_INT(r, RC_JSON_OK);
    /* A syntax error before the depth limit is reported as such. */
    CHECK_EQ_INT(scan_str("{\"a\":[1 [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 0),
                 RC_JSON_ESYNTAX);
}

/* A scan whose spans stay valid: the document is kept in a heap buffer the caller frees. */
struct kept {
    char *buf;               /* exactly n bytes, not NUL-terminated */
    size_t n;
    rc_json_top t;
    int r;
};

static struct kept scan_keep(const char *doc, unsigned mask)
{
    struct kept k;
    size_t n = strlen(doc);
    k.n = n;
    k.buf = malloc(n ? n : 1);
    if (!k.buf) abort();
    memcpy(k.buf, doc, n);
    k.r = rc_json_scan(k.buf, n, mask, &k.t);
    return k;
}

static bool span_is(const rc_json_span *s, const char *text, enum rc_json_type type)
{
    return s->type == type && s->len == strlen(text) && memcmp(s->p, text, s->len) == 0;
}

TEST(json_keys_basic)
{
    struct kept k = scan_keep(" {\"type\":\"chat\",\"room\":\"lobby\",\"text\":\"hi\"} ", 0);
    CHECK_EQ_INT(k.r, RC_JSON_OK);
    CHECK(span_is(&k.t.key[RC_JK_TYPE], "\"chat\"", RC_JSON_STRING));
    CHECK(span_is(&k.t.key[RC_JK_ROOM], "\"lobby\"", RC_JSON_STRING));
    for (int i = 0; i < RC_JK__COUNT; i++) {
        if (i == RC_JK_TYPE || i == RC_JK_ROOM) continue;
        CHECK_EQ_INT(k.t.key[i].type, RC_JSON_NONE);
        CHECK_EQ_INT(k.t.key[i].len, 0);
    }
    CHECK_EQ_INT(k.t.members, 3);
    CHECK_EQ_INT(k.t.members_cut, 0);
    CHECK_EQ_INT(k.t.ncut, 0);
    CHECK_EQ_INT(k.t.open, 1);
    CHECK_EQ_INT(k.t.close, k.n - 2);
    CHECK_EQ_INT(k.buf[k.t.close], '}');
    free(k.buf);
}

/* Every known key is found under its name, also written with escapes, and a near miss is
 * not. */
TEST(json_keys_every_name)
{
    for (int i = 0; i < RC_JK__COUNT; i++) {
        const char *name = rc_json_key_names[i];
        CHECK(name != NULL);
        char doc[128], esc[128];
        snprintf(doc, sizeof doc, "{\"x\":1,\"%s\":7}", name);
        struct kept k = scan_keep(doc, 0);
        CHECK_EQ_INT(k.r, RC_JSON_OK);
        CHECK(span_is(&k.t.key[i], "7", RC_JSON_NUMBER));
        free(k.buf);
        /* the first letter as \u00XX */
        snprintf(esc, sizeof esc, "{\"\\u%04x%s\":8}", (unsigned)name[0], name + 1);
        k = scan_keep(esc, 0);
        CHECK_EQ_INT(k.r, RC_JSON_OK);
        CHECK(span_is(&k.t.key[i], "8", RC_JSON_NUMBER));
        free(k.buf);
        snprintf(doc, sizeof doc, "{\"%sx\":1}", name);
        k = scan_keep(doc, 0);
        CHECK_EQ_INT(k.r, RC_JSON_OK);
        for (int j = 0; j < RC_JK__COUNT; j++) CHECK_EQ_INT(k.t.key[j].type, RC_JSON_NONE);
        free(k.buf);
    }
}

TEST(json_keys_types)
{
    struct kept k = scan_keep("{\"ack\" : {\"a\":[1]} ,\"since\":[1, 2],\"epoch\":true,"
                              "\"msg_id\":false,\"client_id\":null,"
                              "\"idempotency_key\":-12.5e3 ,\"type\":\"a\\\"b\",\"room\":0}", 0);
    CHECK_EQ_INT(k.r, RC_JSON_OK);
    CHECK(span_is(&k.t.key[RC_JK_ACK], "{\"a\":[1]}", RC_JSON_OBJECT));
    CHECK(span_is(&k.t.key[RC_JK_SINCE], "[1, 2]", RC_JSON_ARRAY));
    CHECK(span_is(&k.t.key[RC_JK_EPOCH], "true", RC_JSON_TRUE));
    CHECK(span_is(&k.t.key[RC_JK_MSG_ID], "false", RC_JSON_FALSE));
    CHECK(span_is(&k.t.key[RC_JK_CLIENT_ID], "null", RC_JSON_NULL));
    CHECK(span_is(&k.t.key[RC_JK_IDEMPOTENCY_KEY], "-12.5e3", RC_JSON_NUMBER));
    CHECK(span_is(&k.t.key[RC_JK_TYPE], "\"a\\\"b\"", RC_JSON_STRING));
    CHECK(span_is(&k.t.key[RC_JK_ROOM], "0", RC_JSON_NUMBER));
    CHECK_EQ_INT(k.t.members, 8);
    free(k.buf);
}

TEST(json_keys_escaped)
{
    static const struct { const char *doc; int key; } cases[] = {
        { "{\"\\u0074ype\":\"x\"}", RC_JK_TYPE },
        { "{\"ty\\u0070e\":\"x\"}", RC_JK_TYPE },
        { "{\"\\u0074\\u0079\\u0070\\u0065\":\"x\"}", RC_JK_TYPE },
        { "{\"r\\u006Fom\":\"x\"}", RC_JK_ROOM },
        { "{\"r\\u006fom\":\"x\"}", RC_JK_ROOM },
        { "{\"client\\u005fid\":\"x\"}", RC_JK_CLIENT_ID },
        { "{\"msg\\u005Fid\":\"x\"}", RC_JK_MSG_ID },
        { "{\"\\u0069\\u0064\\u0065\\u006d\\u0070\\u006f\\u0074\\u0065\\u006e\\u0063"
          "\\u0079\\u005f\\u006b\\u0065\\u0079\":\"x\"}", RC_JK_IDEMPOTENCY_KEY },
        { "{\"\\u0061ck\":\"x\"}", RC_JK_ACK },
        { "{\"\\u0073ince\":\"x\"}", RC_JK_SINCE },
        { "{\"epo\\u0063h\":\"x\"}", RC_JK_EPOCH },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct kept k = scan_keep(cases[i].doc, 0);
        int r = k.r;
        bool ok = span_is(&k.t.key[cases[i].key], "\"x\"", RC_JSON_STRING);
        free(k.buf);
        if (!ok) fprintf(stderr, "  case %zu: %s\n", i, cases[i].doc);
        CHECK_EQ_INT(r, RC_JSON_OK);
        CHECK(ok);
    }
}

TEST(json_keys_not_matching)
{
    static const char *const docs[] = {
        "{\"typ\":1}", "{\"types\":1}", "{\"Type\":1}", "{\"TYPE\":1}", "{\" type\":1}",
        "{\"type \":1}", "{\"typ\\/e\":1}", "{\"type\\u0000\":1}", "{\"\\u0000type\":1}",
        "{\"typ\\u0065\\u0065\":1}", "{\"\\ud800type\":1}", "{\"type\\ud800\":1}",
        "{\"roo\":1}", "{\"rooms\":1}", "{\"client-id\":1}", "{\"clientid\":1}",
        "{\"msgid\":1}", "{\"msg_ID\":1}", "{\"idempotency\":1}", "{\"\":1}",
        "{\"t\\u0079pe_\":1}",
        /* a 15-character key spelled with more escapes than fit the decoding limit cannot
         * be any known key longer than 15 bytes either */
        "{\"idempotency_keyy\":1}",
        "{\"a\":{\"type\":1,\"room\":2,\"client_id\":3}}",
        "{\"a\":[{\"type\":1}],\"b\":[[{\"msg_id\":2}]]}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        struct kept k = scan_keep(docs[i], CUT_IDS);
        int r = k.r;
        int found = -1;
        for (int j = 0; j < RC_JK__COUNT; j++)
            if (k.t.key[j].type != RC_JSON_NONE) found = j;
        size_t ncut = k.t.ncut;
        free(k.buf);
        if (found >= 0) fprintf(stderr, "  '%s' matched key %d\n", docs[i], found);
        CHECK_EQ_INT(r, RC_JSON_OK);
        CHECK_EQ_INT(found, -1);
        CHECK_EQ_INT(ncut, 0);
    }
}

TEST(json_keys_duplicates_last_wins)
{
    struct kept k = scan_keep("{\"type\":\"a\",\"room\":1,\"type\":\"b\",\"x\":{\"type\":\"c\"},"
                              "\"\\u0074ype\":[\"d\"],\"room\":{}}", 0);
    CHECK_EQ_INT(k.r, RC_JSON_OK);
    CHECK(span_is(&k.t.key[RC_JK_TYPE], "[\"d\"]", RC_JSON_ARRAY));
    CHECK(span_is(&k.t.key[RC_JK_ROOM], "{}", RC_JSON_OBJECT));
    CHECK_EQ_INT(k.t.members, 6);
    free(k.buf);
}

/* Values are spans of the raw text, whitespace excluded. */
TEST(json_keys_whitespace)
{
    struct kept k = scan_keep("\n{ \"type\"\t:\r\n \"x\" \n, \"room\" :[ 1 ] }\n", 0);
    CHECK_EQ_INT(k.r, RC_JSON_OK);
    CHECK(span_is(&k.t.key[RC_JK_TYPE], "\"x\"", RC_JSON_STRING));
    CHECK(span_is(&k.t.key[RC_JK_ROOM], "[ 1 ]", RC_JSON_ARRAY));
    CHECK_EQ_INT(k.t.open, 1);
    CHECK_EQ_INT(k.buf[k.t.close], '}');
    CHECK_EQ_INT(k.t.close, k.n - 2);
    free(k.buf);
}

/* splice does what the server does: copy_open with client_id/msg_id cut, then append the
 * server's members. It returns a malloc'd NUL-terminated string, or NULL on a scan error. */
static char *splice(const char *doc, size_t *outlen, bool *nonempty, int *r)
{
    static const char tail[] = "\"client_id\":1,\"msg_id\":2}";
    size_t n = strlen(doc);
    char *in = malloc(n ? n : 1);
    if (!in) abort();
    memcpy(in, doc, n);
    rc_json_top t;
    *r = rc_json_scan(in, n, CUT_IDS, &t);
    if (*r != RC_JSON_OK) {
        free(in);
        return NULL;
    }
    char *out = malloc(n + sizeof tail + 1);
    if (!out) abort();
    size_t o = rc_json_copy_open(in, &t, out, nonempty);
    if (o > n) abort();
    if (*nonempty) out[o++] = ',';
    memcpy(out + o, tail, sizeof tail);
    *outlen = o + sizeof tail - 1;
    free(in);
    return out;
}

/* check_spliced verifies the spliced text is valid with exactly one client_id and msg_id,
 * which hold the server's values, and `members` members in all. */
static int check_spliced(const char *out, size_t len, size_t members)
{
    char *b = malloc(len);
    if (!b) abort();
    memcpy(b, out, len);
    rc_json_top t;
    int r = rc_json_scan(b, len, CUT_IDS, &t);
    int bad = r != RC_JSON_OK || t.members_cut != 2 || t.members != members ||
              !span_is(&t.key[RC_JK_CLIENT_ID], "1", RC_JSON_NUMBER) ||
              !span_is(&t.key[RC_JK_MSG_ID], "2", RC_JSON_NUMBER);
    if (bad)
        fprintf(stderr, "  spliced '%.*s': r=%d members=%zu cut=%zu\n", (int)len, out, r,
                t.members, t.members_cut);
    free(b);
    return bad;
}

TEST(json_splice_cases)
{
    static const struct { const char *doc, *want; bool nonempty; size_t kept; } cases[] = {
        { "{}", "{", false, 0 },
        { " { } ", "{ ", false, 0 },
        { "{\"a\":1}", "{\"a\":1", true, 1 },
        { "{\"client_id\":9}", "{", false, 0 },
        { "{\"msg_id\":9}", "{", false, 0 },
        { "{\"client_id\":9,\"a\":1}", "{\"a\":1", true, 1 },
        { "{\"a\":1,\"client_id\":9}", "{\"a\":1", true, 1 },
        { "{\"a\":1,\"msg_id\":3,\"b\":2}", "{\"a\":1,\"b\":2", true, 2 },
        { "{\"client_id\":1,\"msg_id\":2}", "{", false, 0 },
        { "{\"msg_id\":2,\"client_id\":1}", "{", false, 0 },
        { "{\"a\":1,\"client_id\":1,\"msg_id\":2,\"b\":2}", "{\"a\":1,\"b\":2", true, 2 },
        { "{\"client_id\":1,\"msg_id\":2,\"b\":2}", "{\"b\":2", true, 1 },
        { "{\"a\":1,\"client_id\":1,\"msg_id\":2}", "{\"a\":1", true, 1 },
        { "{\"client_id\":1,\"a\":1,\"client_id\":2,\"client_id\":3}", "{\"a\":1", true, 1 },
        { "{\"client_id\":1,\"client_id\":2,\"client_id\":3}", "{", false, 0 },
        { "{\"client_id\":1,\"a\":1,\"msg_id\":2,\"b\":2,\"client_id\":3}",
          "{\"a\":1,\"b\":2", true, 2 },
        { "{ \"client_id\" : 1 , \"a\" : 1 , \"msg_id\" : [1,{\"client_id\":2}] }",
          "{ \"a\" : 1 ", true, 1 },
        { "{ \"a\" : 1 , \"client_id\" : 1 , \"b\" : 2 }", "{ \"a\" : 1 , \"b\" : 2 ", true, 2 },
        { "{ \"client_id\" : 1 , \"msg_id\" : 2 }", "{  ", false, 0 },
        { "{\"\\u0063lient_id\":7,\"x\":1}", "{\"x\":1", true, 1 },
        { "{\"x\":1,\"msg\\u005fid\":7}", "{\"x\":1", true, 1 },
        { "{\"a\":{\"client_id\":1},\"b\":[{\"msg_id\":2}]}",
          "{\"a\":{\"client_id\":1},\"b\":[{\"msg_id\":2}]", true, 2 },
        { "{\"type\":\"chat\",\"client_id\":\"me\",\"text\":\"hi\"}",
          "{\"type\":\"chat\",\"text\":\"hi\"", true, 2 },
        { "{\"client_id\":\",}\",\"a\":\"}\"}", "{\"a\":\"}\"", true, 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t len = 0;
        bool nonempty = true;
        int r;
        char *out = splice(cases[i].doc, &len, &nonempty, &r);
        CHECK_EQ_INT(r, RC_JSON_OK);
        size_t wl = strlen(cases[i].want);
        bool prefix_ok = len >= wl && memcmp(out, cases[i].want, wl) == 0;
        if (!prefix_ok) fprintf(stderr, "  case %zu: got '%s' want '%s...'\n", i, out,
                                cases[i].want);
        int bad = check_spliced(out, len, cases[i].kept + 2);
        free(out);
        CHECK(prefix_ok);
        CHECK_EQ_INT(nonempty, cases[i].nonempty);
        CHECK_EQ_INT(bad, 0);
    }
}

TEST(json_splice_counts)
{
    struct kept k = scan_keep("{\"client_id\":1,\"a\":1,\"msg_id\":2,\"b\":2,\"client_id\":3}",
                              CUT_IDS);
    CHECK_EQ_INT(k.r, RC_JSON_OK);
    CHECK_EQ_INT(k.t.members, 5);
    CHECK_EQ_INT(k.t.members_cut, 3);
    CHECK_EQ_INT(k.t.ncut, 3);
    CHECK(span_is(&k.t.key[RC_JK_CLIENT_ID], "3", RC_JSON_NUMBER));
    for (size_t i = 1; i < k.t.ncut; i++)
        CHECK(k.t.cut[i].off >= k.t.cut[i - 1].off + k.t.cut[i - 1].len);
    /* Each range holds exactly one comma outside strings (none here contain commas). */
    for (size_t i = 0; i < k.t.ncut; i++) {
        int commas = 0;
        for (size_t j = 0; j < k.t.cut[i].len; j++) commas += k.buf[k.t.cut[i].off + j] == ',';
        CHECK_EQ_INT(commas, 1);
    }
    free(k.buf);
    /* A mask of 0 cuts nothing; the whole object is copied. */
    k = scan_keep("{\"client_id\":1}", 0);
    CHECK_EQ_INT(k.r, RC_JSON_OK);
    CHECK_EQ_INT(k.t.ncut, 0);
    char out[32];
    bool ne;
    size_t o = rc_json_copy_open(k.buf, &k.t, out, &ne);
    free(k.buf);
    CHECK_MEM(out, o, "{\"client_id\":1", 14);
    CHECK(ne);
}

TEST(json_splice_too_many_cuts)
{
    char doc[512];
    for (int cuts = 1; cuts <= RC_JSON_MAX_CUTS + 2; cuts++) {
        size_t o = 0;
        o += (size_t)sprintf(doc + o, "{\"a\":0");
        for (int i = 0; i < cuts; i++) o += (size_t)sprintf(doc + o, ",\"msg_id\":%d", i);
        o += (size_t)sprintf(doc + o, "}");
        int r = scan_str(doc, CUT_IDS);
        CHECK_EQ_INT(r, cuts <= RC_JSON_MAX_CUTS ? RC_JSON_OK : RC_JSON_ECUTS);
        CHECK_EQ_INT(scan_str(doc, RC_JK_BIT(RC_JK_TYPE)), RC_JSON_OK);
        if (cuts <= RC_JSON_MAX_CUTS) {
            size_t len;
            bool ne;
            char *out = splice(doc, &len, &ne, &r);
            int bad = check_spliced(out, len, 3);
            free(out);
            CHECK_EQ_INT(bad, 0);
        }
    }
    /* Too many cuts in an otherwise invalid text is a syntax error. */
    CHECK_EQ_INT(scan_str("{\"msg_id\":1,\"msg_id\":1,\"msg_id\":1,\"msg_id\":1,\"msg_id\":1,"
                          "\"msg_id\":1,\"msg_id\":1,\"msg_id\":1,\"msg_id\":1,}", CUT_IDS),
                 RC_JSON_ESYNTAX);
}

/* Random objects built from a few keys, random whitespace and values: the splice must always
 * leave valid JSON with exactly the server's ids and the kept members in order. */
static const char *const rnd_keys[] = { "\"a\"", "\"client_id\"", "\"msg_id\"", "\"type\"",
                                        "\"\\u0063lient_id\"", "\"b\"" };
static const char *const rnd_vals[] = { "1", "\"s\"", "[]", "{\"client_id\":1}", "null",
                                        "[1,{\"msg_id\":{}}]", "\",\"", "-0.5e3", "{}" };
static const char *const rnd_ws[] = { "", "", "", " ", "\n", " \t\r\n " };

static void rnd_put(char *b, size_t *o, const char *s)
{
    size_t k = strlen(s);
    memcpy(b + *o, s, k);
    *o += k;
}

#define RND_WS(b, o) rnd_put(b, o, rnd_ws[unit_rand() % 6])

TEST(json_splice_random)
{
    char doc[2048], want[2048];
    for (int iter = 0; iter < 20000; iter++) {
        size_t o = 0, w = 0, kept = 0;
        int members = (int)(unit_rand() % 7);
        RND_WS(doc, &o);
        doc[o++] = '{';
        want[w++] = '{';
        for (int m = 0; m < members; m++) {
            if (m) {
                RND_WS(doc, &o);
                doc[o++] = ',';
            }
            RND_WS(doc, &o);
            unsigned ki = (unsigned)(unit_rand() % 6);
            const char *v = rnd_vals[unit_rand() % 9];
            rnd_put(doc, &o, rnd_keys[ki]);
            RND_WS(doc, &o);
            doc[o++] = ':';
            RND_WS(doc, &o);
            rnd_put(doc, &o, v);
            bool is_cut = ki == 1 || ki == 2 || ki == 4;
            if (!is_cut) {
                if (kept++) want[w++] = ',';
                rnd_put(want, &w, rnd_keys[ki]);
                want[w++] = ':';
                rnd_put(want, &w, v);
            }
        }
        RND_WS(doc, &o);
        doc[o++] = '}';
        RND_WS(doc, &o);
        doc[o] = 0;

        size_t len;
        bool ne;
        int r;
        char *out = splice(doc, &len, &ne, &r);
        if (r != RC_JSON_OK) fprintf(stderr, "  doc '%s' -> %d\n", doc, r);
        CHECK_EQ_INT(r, RC_JSON_OK);
        int bad = check_spliced(out, len, kept + 2);
        /* Compare with the expected members once whitespace (outside strings; the values
         * above contain no spaces) is squeezed out. */
        size_t sq = 0;
        for (size_t i = 0; i < len; i++)
            if (!strchr(" \t\r\n", out[i])) out[sq++] = out[i];
        bool same = sq >= w && memcmp(out, want, w) == 0;
        if (!same) fprintf(stderr, "  doc '%s': got '%.*s' want '%.*s'\n", doc, (int)sq, out,
                           (int)w, want);
        free(out);
        CHECK_EQ_INT(bad, 0);
        CHECK(same);
        CHECK_EQ_INT(ne, kept > 0);
    }
}

/* The string scanner skips plain bytes 16 and 8 at a time: put each interesting byte at every
 * position of strings of every length up to 40, with the string ending at every distance from
 * the end of the input, and compare with what the byte alone should do. */
TEST(json_string_fast_paths)
{
    static const struct { unsigned char c; int valid; } bytes[] = {
        { 'a', 1 }, { ' ', 1 }, { 0x7f, 1 }, { 0x80, 1 }, { 0xff, 1 }, { '/', 1 }, { '!', 1 },
        { '#', 1 }, { '[', 1 }, { ']', 1 }, { 0x00, 0 }, { 0x01, 0 }, { 0x1f, 0 }, { '\t', 0 },
        { '\\', 0 }, /* a lone backslash escapes the next 'x': invalid */
        { '"', 0 },   /* ends the string early; the rest is garbage */
    };
    char doc[128];
    for (size_t len = 0; len <= 40; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            for (size_t b = 0; b < sizeof bytes / sizeof *bytes; b++) {
                for (size_t pad = 0; pad < 3; pad++) {
                    size_t o = 0;
                    o += (size_t)sprintf(doc, "{\"k\":\"");
                    memset(doc + o, 'x', len);
                    doc[o + pos] = (char)bytes[b].c;
                    o += len;
                    doc[o++] = '"';
                    for (size_t i = 0; i < pad * 7; i++) doc[o++] = ' ';
                    doc[o++] = '}';
                    rc_json_top t;
                    int r = scan_exact(doc, o, 0, &t);
                    int want = bytes[b].valid ? RC_JSON_OK : RC_JSON_ESYNTAX;
                    if (r != want)
                        fprintf(stderr, "  len %zu pos %zu byte %#x pad %zu: %d\n", len, pos,
                                bytes[b].c, pad, r);
                    CHECK_EQ_INT(r, want);
                    /* Escapes at every position, too. */
                    if (bytes[b].c == '\\' && pos + 1 < len) {
                        doc[6 + pos + 1] = 'n'; /* after {"k":" */
                        CHECK_EQ_INT(scan_exact(doc, o, 0, &t), RC_JSON_OK);
                    }
                }
            }
        }
    }
}

/* Digits are also skipped eight at a time. */
TEST(json_number_fast_paths)
{
    static const char follow[] = { '}', ',', ' ', '.', 'e', 'x', '/', ':', '0' - 1, '9' + 1,
                                   (char)0xfa, (char)0xff, '\0' };
    char doc[128];
    for (size_t len = 1; len <= 40; len++) {
        for (size_t f = 0; f < sizeof follow; f++) {
            size_t o = (size_t)sprintf(doc, "{\"k\":1");
            memset(doc + o, '7', len - 1);
            o += len - 1;
            doc[o++] = follow[f];
            bool ok = follow[f] == '}' || follow[f] == ' ';
            if (follow[f] == ',') o += (size_t)sprintf(doc + o, "\"b\":2");
            if (follow[f] == '.' || follow[f] == 'e') {
                memset(doc + o, '3', len);
                o += len;
            }
            ok = ok || follow[f] == ',' || follow[f] == '.' || follow[f] == 'e';
            if (follow[f] != '}') doc[o++] = '}';
            rc_json_top t;
            int r = scan_exact(doc, o, 0, &t);
            if (r != (ok ? RC_JSON_OK : RC_JSON_ESYNTAX))
                fprintf(stderr, "  '%.*s' gave %d\n", (int)o, doc, r);
            CHECK_EQ_INT(r, ok ? RC_JSON_OK : RC_JSON_ESYNTAX);
        }
    }
    /* The digits end exactly where the span says, whatever the length. */
    for (size_t len = 1; len <= 40; len++) {
        size_t o = (size_t)sprintf(doc, "{\"since\":9");
        memset(doc + o, '0', len - 1);
        o += len - 1;
        doc[o++] = '}';
        doc[o] = 0;
        struct kept k = scan_keep(doc, 0);
        size_t got = k.t.key[RC_JK_SINCE].len;
        free(k.buf);
        CHECK_EQ_INT(k.r, RC_JSON_OK);
        CHECK_EQ_INT(got, len);
    }
}

static long unesc_len(const char *lit, size_t n, char *out, size_t cap)
{
    char *b = malloc(n ? n : 1);
    if (!b) abort();
    memcpy(b, lit, n);
    long r = rc_json_unescape(b, n, out, cap);
    free(b);
    return r;
}

static long unesc(const char *lit, char *out, size_t cap)
{
    return unesc_len(lit, strlen(lit), out, cap);
}

TEST(json_unescape)
{
    static const struct { const char *lit, *want; long len; } ok[] = {
        { "\"\"", "", 0 },
        { "\"abc\"", "abc", 3 },
        { "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8 },
        { "\"\\u0041\"", "A", 1 },
        { "\"\\u00e9\"", "\xc3\xa9", 2 },
        { "\"\\u00E9\"", "\xc3\xa9", 2 },
        { "\"\\u07FF\"", "\xdf\xbf", 2 },
        { "\"\\u0800\"", "\xe0\xa0\x80", 3 },
        { "\"\\u20AC\"", "\xe2\x82\xac", 3 },
        { "\"\\uFFFF\"", "\xef\xbf\xbf", 3 },
        { "\"\\uD834\\uDD1E\"", "\xf0\x9d\x84\x9e", 4 },
        { "\"\\ud834\\udd1e\"", "\xf0\x9d\x84\x9e", 4 },
        { "\"\\uD800\\uDC00\"", "\xf0\x90\x80\x80", 4 },
        { "\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4 },
        { "\"x\\u0001y\"", "x\001y", 3 },
        { "\"h\xc3\xa9llo\"", "h\xc3\xa9llo", 6 },
        { "\"a\\nb\\u0063\"", "a\nbc", 4 },
    };
    char out[64];
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        long r = unesc(ok[i].lit, out, sizeof out);
        CHECK_EQ_INT(r, ok[i].len);
        CHECK_MEM(out, (size_t)r, ok[i].want, (size_t)ok[i].len);
        /* Exactly enough room works, one byte less does not. */
        CHECK_EQ_INT(unesc(ok[i].lit, out, (size_t)ok[i].len), ok[i].len);
        if (ok[i].len > 0) CHECK_EQ_INT(unesc(ok[i].lit, out, (size_t)ok[i].len - 1), -1);
    }
    static const char *const bad[] = {
        "", "\"", "abc", "\"abc", "abc\"", "'abc'", "\"a\"b\"", "\"\\\"", "\"a\\\"",
        "\"\\uD800\"", "\"\\uDBFF\"", "\"\\uDC00\"", "\"\\uDFFF\"", "\"\\uD800x\"",
        "\"\\uD800\\u0041\"", "\"\\uD800\\uD800\"", "\"\\uDD1E\\uD834\"", "\"\\uD800\\n\"",
        "\"\\uD800\\uDC0\"", "\"\\u0000\"", "\"a\\u0000b\"", "\"\\u12\"", "\"\\u12G4\"",
        "\"\\x41\"", "\"\\'\"", "\"\\U0041\"", "\"a\tb\"", "\"a\nb\"", "\"\x01\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        long r = unesc(bad[i], out, sizeof out);
        if (r != -1) fprintf(stderr, "  unescape '%s' gave %ld\n", bad[i], r);
        CHECK_EQ_INT(r, -1);
    }
    /* An embedded NUL byte (not escaped) is a control character. */
    CHECK_EQ_INT(rc_json_unescape("\"a\0b\"", 5, out, sizeof out), -1);
    CHECK_EQ_INT(unesc("\"abc\"", out, 0), -1);
    CHECK_EQ_INT(unesc("\"\"", out, 0), 0);
}

static size_t esc(const char *s, size_t n, char *out)
{
    char *b = malloc(n ? n : 1);
    if (!b) abort();
    memcpy(b, s, n);
    size_t r = rc_json_escape(b, n, out);
    free(b);
    return r;
}

TEST(json_unescape_lossy)
{
    char out[32];
    /* what the strict decoder refuses, the lossy one shows */
    CHECK_EQ_INT(rc_json_unescape("\"a\\u0000b\"", 10, out, sizeof(out)), -1);
    CHECK_EQ_INT(rc_json_unescape_lossy("\"a\\u0000b\"", 10, out, sizeof(out)), 3);
    CHECK_MEM(out, 3, "a\0b", 3);
    CHECK_EQ_INT(rc_json_unescape("\"\\ud800x\"", 9, out, sizeof(out)), -1);
    CHECK_EQ_INT(rc_json_unescape_lossy("\"\\ud800x\"", 9, out, sizeof(out)), 4);
    CHECK_MEM(out, 4, "\xef\xbf\xbdx", 4);
    /* a lone high surrogate before an escape: U+FFFD, then the escape on its own */
    CHECK_EQ_INT(rc_json_unescape_lossy("\"\\ud800\\u0041\"", 14, out, sizeof(out)), 4);
    CHECK_MEM(out, 4, "\xef\xbf\xbd" "A", 4);
    CHECK_EQ_INT(rc_json_unescape_lossy("\"\\udc00\"", 8, out, sizeof(out)), 3); /* low first */
    /* a pair is still a pair; a bad literal is still refused */
    CHECK_EQ_INT(rc_json_unescape_lossy("\"\\ud83d\\ude00\"", 14, out, sizeof(out)), 4);
    CHECK_MEM(out, 4, "\xf0\x9f\x98\x80", 4);
    CHECK_EQ_INT(rc_json_unescape_lossy("\"\\q\"", 5, out, sizeof(out)), -1);
    CHECK_EQ_INT(rc_json_unescape_lossy("\"abc\"", 5, out, 2), -1);
}

TEST(json_escape)
{
    char out[512];
    size_t n = esc("", 0, out);
    CHECK_MEM(out, n, "\"\"", 2);
    n = esc("hello", 5, out);
    CHECK_MEM(out, n, "\"hello\"", 7);
    static const char in[] = "a\"b\\c\n\r\t\b\f\x01\x1f\x7f/\xc3\xa9";
    static const char want[] = "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\x7f/\xc3\xa9\"";
    n = esc(in, sizeof in - 1, out);
    CHECK_MEM(out, n, want, sizeof want - 1);
    n = rc_json_escape(NULL, 0, out);
    CHECK_MEM(out, n, "\"\"", 2);
    n = esc("\0", 1, out);
    CHECK_MEM(out, n, "\"\\u0000\"", 8);
    /* The bound is reached by a text of control characters. */
    char ctl[40];
    memset(ctl, 0x01, sizeof ctl);
    n = esc(ctl, sizeof ctl, out);
    CHECK_EQ_INT(n, rc_json_escape_max(sizeof ctl));
}

/* Round trip: escape then unescape gives the original, and the escaped text is valid JSON. */
TEST(json_escape_round_trip)
{
    char s[64], lit[rc_json_escape_max(64)], back[64], doc[sizeof lit + 8];
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = unit_rand() % sizeof s;
        for (size_t i = 0; i < n; i++) {
            /* Mostly special bytes; no NUL (unescape refuses \u0000) and ASCII only so the
             * input is valid UTF-8 as the API requires. */
            unsigned x = (unsigned)(unit_rand() % 40);
            s[i] = x < 31 ? (char)(x + 1) : "\"\\/aZ~ u\x7f"[x - 31];
        }
        size_t ln = esc(s, n, lit);
        CHECK(ln <= rc_json_escape_max(n));
        long r = unesc_len(lit, ln, back, sizeof back);
        CHECK_EQ_INT(r, (long)n);
        CHECK_MEM(back, (size_t)r, s, n);
        size_t dl = (size_t)sprintf(doc, "{\"k\":%.*s}", (int)ln, lit);
        CHECK_EQ_INT(scan_exact(doc, dl, 0, &(rc_json_top){0}), RC_JSON_OK);
    }
    /* Multi-byte UTF-8 passes through untouched. */
    static const char u[] = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    size_t ln = esc(u, sizeof u - 1, lit);
    CHECK_MEM(lit + 1, ln - 2, u, sizeof u - 1);
    CHECK_EQ_INT(unesc_len(lit, ln, back, sizeof back), (long)sizeof u - 1);
}

static bool u64_of(const char *text, enum rc_json_type type, uint64_t *v)
{
    size_t n = strlen(text);
    char *b = malloc(n ? n : 1);
    if (!b) abort();
    memcpy(b, text, n);
    rc_json_span sp = { b, n, type };
    bool ok = rc_json_get_u64(&sp, v);
    free(b);
    return ok;
}

TEST(json_get_u64)
{
    uint64_t v = 7;
    CHECK(u64_of("0", RC_JSON_NUMBER, &v) && v == 0);
    CHECK(u64_of("1", RC_JSON_NUMBER, &v) && v == 1);
    CHECK(u64_of("17", RC_JSON_NUMBER, &v) && v == 17);
    CHECK(u64_of("18446744073709551615", RC_JSON_NUMBER, &v) && v == UINT64_MAX);
    CHECK(u64_of("18446744073709551610", RC_JSON_NUMBER, &v) && v == UINT64_MAX - 5);
    CHECK(u64_of("1844674407370955161", RC_JSON_NUMBER, &v) && v == 1844674407370955161ull);
    v = 7;
    CHECK(!u64_of("18446744073709551616", RC_JSON_NUMBER, &v));
    CHECK(!u64_of("18446744073709551620", RC_JSON_NUMBER, &v));
    CHECK(!u64_of("99999999999999999999", RC_JSON_NUMBER, &v));
    CHECK(!u64_of("184467440737095516150", RC_JSON_NUMBER, &v));
    CHECK(!u64_of("01", RC_JSON_NUMBER, &v));
    CHECK(!u64_of("00", RC_JSON_NUMBER, &v));
    CHECK(!u64_of("-1", RC_JSON_NUMBER, &v));
    CHECK(!u64_of("-0", RC_JSON_NUMBER, &v));
    CHECK(!u64_of("1.0", RC_JSON_NUMBER, &v));
    CHECK(!u64_of("1e3", RC_JSON_NUMBER, &v));
    CHECK(!u64_of("1E3", RC_JSON_NUMBER, &v));
    CHECK(!u64_of("", RC_JSON_NUMBER, &v));
    CHECK(!u64_of("\"1\"", RC_JSON_STRING, &v));
    CHECK(!u64_of("1", RC_JSON_STRING, &v));
    CHECK(!u64_of("true", RC_JSON_TRUE, &v));
    CHECK(v == 7); /* untouched on failure */
    rc_json_span none = { NULL, 0, RC_JSON_NONE };
    CHECK(!rc_json_get_u64(&none, &v));
    CHECK(!rc_json_get_u64(NULL, &v));
    /* Spans straight from a scan. */
    struct kept k = scan_keep("{\"msg_id\":42,\"since\":-1,\"epoch\":1.5,\"ack\":\"3\"}", 0);
    CHECK_EQ_INT(k.r, RC_JSON_OK);
    bool a = rc_json_get_u64(&k.t.key[RC_JK_MSG_ID], &v);
    uint64_t got = v;
    bool b = rc_json_get_u64(&k.t.key[RC_JK_SINCE], &v);
    bool c = rc_json_get_u64(&k.t.key[RC_JK_EPOCH], &v);
    bool d = rc_json_get_u64(&k.t.key[RC_JK_ACK], &v);
    bool e = rc_json_get_u64(&k.t.key[RC_JK_ROOM], &v);
    free(k.buf);
    CHECK(a && got == 42);
    CHECK(!b && !c && !d && !e);
}

/* rc_json_member and the member walker on a message that rc_json_scan accepted. */
TEST(json_walk_members)
{
    static const char msg[] =
        " { \"type\" : \"netsync_set\", \"vars\":{\"a\":\"x,}\\\"\",\"b\":[1,{\"c\":[]}]},"
        "\"n\":-1.5e3 ,\"t\":true,\"z\":null,\"\\u0076alue\":\"v\",\"n\":7} ";
    rc_json_top t;
    CHECK_EQ_INT(rc_json_scan(msg, sizeof(msg) - 1, 0, &t), RC_JSON_OK);
    rc_json_span v, k;
    CHECK(rc_json_member(msg, sizeof(msg) - 1, "type", &v));
    CHECK_MEM(v.p, v.len, "\"netsync_set\"", 13);
    CHECK(v.type == RC_JSON_STRING);
    CHECK(rc_json_member(msg, sizeof(msg) - 1, "n", &v)); /* the last occurrence wins */
    CHECK_MEM(v.p, v.len, "7", 1);
    CHECK(rc_json_member(msg, sizeof(msg) - 1, "value", &v)); /* keys compared unescaped */
    CHECK_MEM(v.p, v.len, "\"v\"", 3);
    CHECK(rc_json_member(msg, sizeof(msg) - 1, "t", &v) && v.type == RC_JSON_TRUE);
    CHECK(rc_json_member(msg, sizeof(msg) - 1, "z", &v) && v.type == RC_JSON_NULL);
    CHECK(!rc_json_member(msg, sizeof(msg) - 1, "c", &v)); /* top level only */
    CHECK(v.type == RC_JSON_NONE);
    CHECK(rc_json_member(msg, sizeof(msg) - 1, "vars", &v) && v.type == RC_JSON_OBJECT);
    rc_json_iter it;
    CHECK(rc_json_iter_init(&it, v.p, v.len));
    CHECK(rc_json_iter_next(&it, &k, &v));
    CHECK_MEM(k.p, k.len, "\"a\"", 3);
    CHECK_MEM(v.p, v.len, "\"x,}\\\"\"", 7);
    CHECK(rc_json_iter_next(&it, &k, &v));
    CHECK_MEM(k.p, k.len, "\"b\"", 3);
    CHECK_MEM(v.p, v.len, "[1,{\"c\":[]}]", 12);
    CHECK(v.type == RC_JSON_ARRAY);
    CHECK(!rc_json_iter_next(&it, &k, &v));
    CHECK(!rc_json_iter_init(&it, "[1]", 3));
    CHECK(rc_json_iter_init(&it, "{}", 2) && !rc_json_iter_next(&it, &k, &v));
    /* the array cursor */
    static const char arr[] = " [ \"a\" , [1,\"]\"], {\"k\":[]},-2 ,null ] ";
    CHECK(rc_json_scan("{\"x\":[ \"a\" , [1,\"]\"], {\"k\":[]},-2 ,null ]}", 42, 0, &t) ==
          RC_JSON_OK);
    CHECK(rc_json_array_init(&it, arr, sizeof(arr) - 1));
    CHECK(rc_json_array_next(&it, &v) && v.type == RC_JSON_STRING);
    CHECK_MEM(v.p, v.len, "\"a\"", 3);
    CHECK(rc_json_array_next(&it, &v) && v.type == RC_JSON_ARRAY);
    CHECK_MEM(v.p, v.len, "[1,\"]\"]", 7);
    CHECK(rc_json_array_next(&it, &v) && v.type == RC_JSON_OBJECT);
    CHECK_MEM(v.p, v.len, "{\"k\":[]}", 8);
    CHECK(rc_json_array_next(&it, &v) && v.type == RC_JSON_NUMBER);
    CHECK_MEM(v.p, v.len, "-2", 2);
    CHECK(rc_json_array_next(&it, &v) && v.type == RC_JSON_NULL);
    CHECK(!rc_json_array_next(&it, &v) && !rc_json_array_next(&it, &v));
    CHECK(rc_json_array_init(&it, "[]", 2) && !rc_json_array_next(&it, &v));
    CHECK(!rc_json_array_init(&it, "{}", 2) && !rc_json_array_init(&it, " ", 1));
    double d;
    rc_json_span num = {.p = "-1.5e3", .len = 6, .type = RC_JSON_NUMBER};
    CHECK(rc_json_get_f64(&num, &d) && d == -1500.0);
    num.type = RC_JSON_STRING;
    CHECK(!rc_json_get_f64(&num, &d));
}

/* ---- an independent verdict for json_mutations ------------------------------------------
 *
 * A small, obvious recursive-descent validator written from RFC 8259 and json.h's rules, so the
 * mutation test can demand the exact code instead of "some error": ESYNTAX or EDEPTH for
 * invalid text, whichever the first offending byte gives (left to right, depth counted as open
 * containers, at most RC_JSON_MAX_DEPTH); ENOTOBJECT for valid JSON that is not an object; ECUTS
 * only for a valid object with more than RC_JSON_MAX_CUTS top-level members to cut, keys
 * compared after unescaping. It shares no code with json.c (nor with fuzz/fuzz_json.c). */
static const char *const jref_names[RC_JK__COUNT] = {
    [RC_JK_TYPE] = "type", [RC_JK_ROOM] = "room", [RC_JK_CLIENT_ID] = "client_id",
    [RC_JK_MSG_ID] = "msg_id", [RC_JK_ACK] = "ack", [RC_JK_SINCE] = "since",
    [RC_JK_EPOCH] = "epoch", [RC_JK_IDEMPOTENCY_KEY] = "idempotency_key",
    [RC_JK_SESSION] = "session", [RC_JK_HISTORY] = "history", [RC_JK_STATE] = "state",
    [RC_JK_PRESENCE] = "presence", [RC_JK_CONFLATE] = "conflate",
    [RC_JK_STATE_KEY] = "state_key", [RC_JK_STATE_DELETE] = "state_delete",
};

struct jref {
    const char *p;
    size_t n, i;             /* the text and the read position */
    unsigned cut_mask;       /* keys to cut, as in rc_json_scan */
    size_t cuts;             /* top-level members whose key is in cut_mask */
};

static int jref_at(const struct jref *r)
{
    return r->i < r->n ? (unsigned char)r->p[r->i] : -1;
}

static bool jref_eat(struct jref *r, int c)
{
    if (jref_at(r) != c) return false;
    r->i++;
    return true;
}

static void jref_ws(struct jref *r)
{
    while (jref_eat(r, ' ') || jref_eat(r, '\t') || jref_eat(r, '\n') || jref_eat(r, '\r')) {}
}

static int jref_hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool jref_digits(struct jref *r)
{
    size_t from = r->i;
    while (jref_at(r) >= '0' && jref_at(r) <= '9') r->i++;
    return r->i > from;
}

/* jref_string reads a string literal and decodes it into key[0..*klen) (a \u escape above
 * U+007F becomes 0xFF: no known key has one); key may be NULL. */
static int jref_string(struct jref *r, char *key, size_t cap, size_t *klen)
{
    size_t k = 0;
    if (!jref_eat(r, '"')) return RC_JSON_ESYNTAX;
    for (;;) {
        int c = jref_at(r);
        if (c < 0x20) return RC_JSON_ESYNTAX; /* the end of the text, or a control character */
        r->i++;
        if (c == '"') break;
        if (c == '\\') {
            static const char esc[] = "\"\\/bfnrt", val[] = "\"\\/\b\f\n\r\t";
            int e = jref_at(r);
            r->i++;
            if (e > 0 && strchr(esc, e)) {
                c = val[strchr(esc, e) - esc];
            } else if (e == 'u') {
                unsigned v = 0;
                for (int j = 0; j < 4; j++, r->i++) {
                    int h = jref_hexval(jref_at(r));
                    if (h < 0) return RC_JSON_ESYNTAX;
                    v = v * 16 + (unsigned)h;
                }
                c = v < 0x80 ? (int)v : 0xFF;
            } else {
                return RC_JSON_ESYNTAX;
            }
        }
        if (key && k < cap) key[k] = (char)c;
        k++;
    }
    if (klen) *klen = k;
    return RC_JSON_OK;
}

static int jref_number(struct jref *r)
{
    jref_eat(r, '-');
    if (!jref_eat(r, '0') && !jref_digits(r)) return RC_JSON_ESYNTAX;
    if (jref_eat(r, '.') && !jref_digits(r)) return RC_JSON_ESYNTAX;
    if (jref_eat(r, 'e') || jref_eat(r, 'E')) {
        if (!jref_eat(r, '+')) jref_eat(r, '-');
        if (!jref_digits(r)) return RC_JSON_ESYNTAX;
    }
    return RC_JSON_OK;
}

/* jref_value reads a value with `depth` containers open around it; top: it is the whole text. */
static int jref_value(struct jref *r, int depth, bool top)
{
    jref_ws(r);
    int c = jref_at(r);
    if (c == '{' || c == '[') {
        if (depth == RC_JSON_MAX_DEPTH) return RC_JSON_EDEPTH;
        r->i++;
        int close = c == '{' ? '}' : ']';
        jref_ws(r);
        if (jref_eat(r, close)) return RC_JSON_OK;
        for (;;) {
            if (c == '{') {
                char key[32];
                size_t klen = 0;
                jref_ws(r);
                int e = jref_string(r, key, sizeof key, &klen);
                if (e) return e;
                for (int k = 0; top && k < RC_JK__COUNT; k++)
                    if ((r->cut_mask & RC_JK_BIT(k)) && klen == strlen(jref_names[k]) &&
                        memcmp(key, jref_names[k], klen) == 0)
                        r->cuts++;
                jref_ws(r);
                if (!jref_eat(r, ':')) return RC_JSON_ESYNTAX;
            }
            int e = jref_value(r, depth + 1, false);
            if (e) return e;
            jref_ws(r);
            if (jref_eat(r, close)) return RC_JSON_OK;
            if (!jref_eat(r, ',')) return RC_JSON_ESYNTAX;
        }
    }
    if (c == '"') return jref_string(r, NULL, 0, NULL);
    if (c == '-' || (c >= '0' && c <= '9')) return jref_number(r);
    static const char *const lits[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(lits[k]);
        if (c != lits[k][0]) continue;
        if (r->n - r->i < l || memcmp(r->p + r->i, lits[k], l) != 0) return RC_JSON_ESYNTAX;
        r->i += l;
        return RC_JSON_OK;
    }
    return RC_JSON_ESYNTAX;
}

static int jref_scan(const char *p, size_t n, unsigned cut_mask)
{
    struct jref r = {p, n, 0, cut_mask, 0};
    jref_ws(&r);
    bool object = jref_at(&r) == '{';
    int e = jref_value(&r, 0, true);
    if (e) return e;
    jref_ws(&r);
    if (r.i != n) return RC_JSON_ESYNTAX;
    if (!object) return RC_JSON_ENOTOBJECT;
    return r.cuts > RC_JSON_MAX_CUTS ? RC_JSON_ECUTS : RC_JSON_OK;
}

/* Random byte flips and truncations of a few messages: the scan's verdict must be the
 * reference's, with and without members to cut, and an accepted message must splice into
 * valid JSON. The bases are chosen so that every verdict comes up: a chat message, one with
 * nine members to cut (ECUTS until a flip spoils a key), one nested exactly to the depth limit
 * (EDEPTH when a flip opens one more level), and a top-level array (ENOTOBJECT). */
TEST(json_mutations)
{
    static char deep[512];
    size_t o = (size_t)sprintf(deep, "{\"a\":");
    for (int i = 0; i < RC_JSON_MAX_DEPTH - 1; i++) deep[o++] = '[';
    o += (size_t)sprintf(deep + o, "1,2,3,4,5,6,7,8");
    for (int i = 0; i < RC_JSON_MAX_DEPTH - 1; i++) deep[o++] = ']';
    deep[o++] = '}';
    deep[o] = 0;
    const char *const bases[] = {
        "{\"type\":\"chat\",\"room\":\"lobby\",\"client_id\":3,"
        "\"text\":\"h\\u00e9llo \\\"w\\\"\",\"n\":[1,-2.5e3,true,null],\"o\":{\"msg_id\":1}}",
        "{\"msg_id\":1,\"client_id\":2,\"msg_id\":3,\"client_id\":4,\"msg\\u005fid\":5,"
        "\"client_id\":6,\"msg_id\":7,\"client_id\":8,\"msg_id\":9,\"a\":[0]}",
        deep,
        "[{\"msg_id\":1},-2.5e3,\"x\",[true,false,null],0.5]",
    };
    static const char alphabet[] = "{}[]\":,\\ \t0123456789-+.eEtrufalsn\x01\x7f";
    int seen[5] = {0}; /* by -code: OK, ESYNTAX, ENOTOBJECT, EDEPTH, ECUTS */
    char doc[512];
    for (int iter = 0; iter < 50000; iter++) {
        const char *base = bases[iter % 4];
        size_t len = strlen(base);
        memcpy(doc, base, len);
        int flips = 1 + (int)(unit_rand() % 3);
        for (int f = 0; f < flips; f++)
            doc[unit_rand() % len] = alphabet[unit_rand() % (sizeof alphabet - 1)];
        size_t n = unit_rand() % 2 ? len : 1 + unit_rand() % len;
        char *b = malloc(n);
        if (!b) abort();
        memcpy(b, doc, n);
        rc_json_top t;
        int r = rc_json_scan(b, n, CUT_IDS, &t);
        int want = jref_scan(b, n, CUT_IDS);
        int r0 = rc_json_scan(b, n, 0, &(rc_json_top){0});
        int want0 = jref_scan(b, n, 0);
        if (r != want || r0 != want0)
            fprintf(stderr, "  '%.*s': scan %d/%d, reference %d/%d\n", (int)n, b, r, r0, want,
                    want0);
        if (r == RC_JSON_OK && want == RC_JSON_OK) {
            char *out = malloc(n + 32);
            if (!out) abort();
            bool ne;
            size_t k = rc_json_copy_open(b, &t, out, &ne);
            if (k > n) abort();
            if (ne) out[k++] = ',';
            memcpy(out + k, "\"client_id\":1,\"msg_id\":2}", 25);
            k += 25;
            int bad = check_spliced(out, k, t.members - t.members_cut + 2);
            free(out);
            CHECK_EQ_INT(bad, 0);
        }
        free(b);
        CHECK_EQ_INT(r, want);
        CHECK_EQ_INT(r0, want0);
        seen[-r]++;
    }
    for (int i = 0; i < 5; i++) {
        if (!seen[i]) fprintf(stderr, "  verdict %d never came up\n", -i);
        CHECK(seen[i] > 0);
    }
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(json_valid_objects);
    RUN(json_empty_null);
    RUN(json_valid_not_objects);
    RUN(json_invalid);
    RUN(json_prefixes_are_invalid);
    RUN(json_depth);
    RUN(json_keys_basic);
    RUN(json_keys_every_name);
    RUN(json_keys_types);
    RUN(json_keys_escaped);
    RUN(json_keys_not_matching);
    RUN(json_keys_duplicates_last_wins);
    RUN(json_keys_whitespace);
    RUN(json_splice_cases);
    RUN(json_splice_counts);
    RUN(json_splice_too_many_cuts);
    RUN(json_splice_random);
    RUN(json_string_fast_paths);
    RUN(json_number_fast_paths);
    RUN(json_unescape);
    RUN(json_unescape_lossy);
    RUN(json_escape);
    RUN(json_escape_round_trip);
    RUN(json_get_u64);
    RUN(json_walk_members);
    RUN(json_mutations);
    UNIT_MAIN_END("test_json");
}
