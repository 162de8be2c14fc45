/* test_zmtp.c — tests for src/codec/zmtp.c: greetings of every version on every prefix, each
 * refusal reported at the byte that proves it, frame headers in both forms and their limits,
 * every command, READY's metadata and socket-type table, the encoders against the bytes
 * libzmq sends, and the stream reader fed a whole session one byte at a time and in random
 * pieces.
 */
#include "unit.h"

#include "codec/zmtp.h"

#include <stdint.h>

/* A peer's greeting: version major.minor, mechanism NULL unless mech is given. */
static void greeting(uint8_t out[64], uint8_t major, uint8_t minor, const char *mech)
{
    memset(out, 0, 64);
    out[0] = 0xFF;
    out[9] = 0x7F;
    out[10] = major;
    out[11] = minor;
    memcpy(out + 12, mech ? mech : "NULL", strlen(mech ? mech : "NULL"));
}

/* refused_at checks that p[0..n) is refused with err from prefix length at on, and that every
 * shorter prefix asks for more. */
static bool greeting_refused_at(const uint8_t *p, size_t n, size_t at, int err)
{
    rc_zmtp_greeting g;
    for (size_t k = 0; k <= n; k++) {
        int r = rc_zmtp_greeting_parse(p, k, &g);
        if (k < at && r != 0) return false;
        if (k >= at && r != -err) return false;
    }
    return true;
}

TEST(test_greeting_versions)
{
    uint8_t g[64];
    rc_zmtp_greeting out;
    for (int minor = 0; minor <= 2; minor++) {
        greeting(g, 3, (uint8_t)minor, NULL);
        for (size_t k = 0; k < 64; k++) CHECK_EQ_INT(rc_zmtp_greeting_parse(g, k, &out), 0);
        CHECK_EQ_INT(rc_zmtp_greeting_parse(g, 64, &out), 64);
        CHECK_EQ_INT(out.major, 3);
        CHECK_EQ_INT(out.minor, minor);
    }
    /* a later major is answered as 3.1, like libzmq */
    greeting(g, 4, 0, NULL);
    CHECK_EQ_INT(rc_zmtp_greeting_parse(g, 64, &out), 64);
    /* NetMQ 4 pads its signature with zeros and sends 3.0, as-server 0 */
    greeting(g, 3, 0, NULL);
    g[32] = 1; /* as-server is carried, not judged */
    CHECK_EQ_INT(rc_zmtp_greeting_parse(g, 64, &out), 64);
    CHECK(out.as_server);
}

TEST(test_greeting_refusals)
{
    uint8_t g[64];
    /* not 0xFF: ZMTP 1.0 unversioned (a length byte) or not ZeroMQ at all */
    greeting(g, 3, 1, NULL);
    g[0] = 0x01;
    CHECK(greeting_refused_at(g, 64, 1, RC_ZMTP_E_NOT_ZMTP));
    memcpy(g, "GET / HTTP/1.1\r\n", 16);
    CHECK(greeting_refused_at(g, 64, 1, RC_ZMTP_E_NOT_ZMTP));
    /* 10th byte without bit 0: a ZMTP 1.0 identity frame's flags */
    greeting(g, 3, 1, NULL);
    g[9] = 0x00;
    CHECK(greeting_refused_at(g, 64, 10, RC_ZMTP_E_NOT_ZMTP));
    /* ZMTP 1.0 (revision 0) and 2.0 (revision 1) */
    for (uint8_t v = 0; v < 3; v++) {
        greeting(g, v, 0, NULL);
        CHECK(greeting_refused_at(g, 64, 11, RC_ZMTP_E_VERSION));
    }
    /* mechanisms: each refused at its first differing byte */
    greeting(g, 3, 1, "PLAIN");
    CHECK(greeting_refused_at(g, 64, 13, RC_ZMTP_E_MECHANISM));
    greeting(g, 3, 1, "CURVE");
    CHECK(greeting_refused_at(g, 64, 13, RC_ZMTP_E_MECHANISM));
    greeting(g, 3, 1, "NULLX");
    CHECK(greeting_refused_at(g, 64, 17, RC_ZMTP_E_MECHANISM));
    greeting(g, 3, 1, NULL);
    g[31] = 'x';
    CHECK(greeting_refused_at(g, 64, 32, RC_ZMTP_E_MECHANISM));
}

TEST(test_greeting_encode_is_libzmqs)
{
    uint8_t g[64];
    rc_zmtp_greeting_encode(g);
    static const uint8_t head[] = {0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 1, 'N', 'U', 'L', 'L'};
    CHECK_MEM(g, sizeof head, head, sizeof head);
    for (size_t i = sizeof head; i < 64; i++) CHECK_EQ_INT(g[i], 0);
    rc_zmtp_greeting out;
    CHECK_EQ_INT(rc_zmtp_greeting_parse(g, 64, &out), 64); /* we would accept ourselves */
}

TEST(test_frame_headers)
{
    uint8_t h[16];
    rc_zmtp_frame f;
    /* short and long at the boundary, with each flag */
    uint64_t lens[] = {0, 1, 255, 256, 65536, 1ull << 40};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (uint8_t flags = 0; flags <= RC_ZMTP_COMMAND; flags += RC_ZMTP_COMMAND) {
            size_t n = rc_zmtp_frame_header(h, lens[i], flags);
            CHECK_EQ_INT(n, rc_zmtp_header_size(lens[i]));
            for (size_t k = 0; k < n; k++) CHECK_EQ_INT(rc_zmtp_frame_parse(h, k, 0, &f), 0);
            CHECK_EQ_INT(rc_zmtp_frame_parse(h, n, 0, &f), (int)n);
            CHECK(f.len == lens[i]);
            CHECK_EQ_INT(f.flags & ~RC_ZMTP_LONG, flags);
        }
        size_t n = rc_zmtp_frame_header(h, lens[i], RC_ZMTP_MORE);
        CHECK_EQ_INT(rc_zmtp_frame_parse(h, n, 0, &f), (int)n);
        CHECK(f.flags & RC_ZMTP_MORE);
    }
    /* long form for a small size is accepted (libzmq does) */
    static const uint8_t lsmall[] = {RC_ZMTP_LONG, 0, 0, 0, 0, 0, 0, 0, 5};
    CHECK_EQ_INT(rc_zmtp_frame_parse(lsmall, 9, 0, &f), 9);
    CHECK_EQ_INT(f.len, 5);
    /* reserved bits and MORE on a command: refused at the flags byte */
    for (int bit = 3; bit < 8; bit++) {
        uint8_t b[2] = {(uint8_t)(1 << bit), 0};
        CHECK_EQ_INT(rc_zmtp_frame_parse(b, 1, 0, &f), -RC_ZMTP_E_FLAGS);
    }
    uint8_t cm[2] = {RC_ZMTP_COMMAND | RC_ZMTP_MORE, 0};
    CHECK_EQ_INT(rc_zmtp_frame_parse(cm, 1, 0, &f), -RC_ZMTP_E_FLAGS);
    /* limits: short form at its size byte */
    uint8_t s[2] = {0, 101};
    CHECK_EQ_INT(rc_zmtp_frame_parse(s, 1, 100, &f), 0);
    CHECK_EQ_INT(rc_zmtp_frame_parse(s, 2, 100, &f), -RC_ZMTP_E_FRAME_TOO_BIG);
    CHECK_EQ_INT(rc_zmtp_frame_parse(s, 2, 101, &f), 2);
    /* long form: refused at the first size byte that proves it */
    uint8_t l[9];
    rc_zmtp_frame_header(l, 1ull << 32, 0);
    CHECK_EQ_INT(rc_zmtp_frame_parse(l, 4, 65536, &f), 0);
    CHECK_EQ_INT(rc_zmtp_frame_parse(l, 5, 65536, &f), -RC_ZMTP_E_FRAME_TOO_BIG);
    rc_zmtp_frame_header(l, 65537, 0);
    CHECK_EQ_INT(rc_zmtp_frame_parse(l, 8, 65536, &f), 0);
    CHECK_EQ_INT(rc_zmtp_frame_parse(l, 9, 65536, &f), -RC_ZMTP_E_FRAME_TOO_BIG);
    /* an absurd size is refused even without a limit */
    static const uint8_t huge[] = {RC_ZMTP_LONG, 0xFF, 0, 0, 0, 0, 0, 0, 0};
    CHECK_EQ_INT(rc_zmtp_frame_parse(huge, 2, 0, &f), -RC_ZMTP_E_FRAME_TOO_BIG);
}

/* cmd writes a command frame named name with body b[0..n) into out. */
static size_t cmd(uint8_t *out, const char *name, const void *b, size_t n)
{
    uint8_t body[512];
    size_t nl = strlen(name);
    body[0] = (uint8_t)nl;
    memcpy(body + 1, name, nl);
    memcpy(body + 1 + nl, b, n);
    size_t hl = rc_zmtp_frame_header(out, 1 + nl + n, RC_ZMTP_COMMAND);
    memcpy(out + hl, body, 1 + nl + n);
    return hl + 1 + nl + n;
}

TEST(test_commands)
{
    rc_zmtp_cmd c;
    uint8_t b[64];
    /* PING with a TTL and a context; a context over 16 bytes is cut */
    memcpy(b, "\x04PING\x00\x0a" "ctx", 10);
    CHECK_EQ_INT(rc_zmtp_command_parse(b, 10, &c), 0);
    CHECK_EQ_INT(c.kind, RC_ZMTP_CMD_PING);
    CHECK_EQ_INT(c.ttl, 10);
    CHECK_MEM(c.data, c.len, "ctx", 3);
    memcpy(b, "\x04PING\x00\x01" "0123456789abcdefXYZ", 26);
    CHECK_EQ_INT(rc_zmtp_command_parse(b, 26, &c), 0);
    CHECK_EQ_INT(c.len, 16);
    CHECK_EQ_INT(rc_zmtp_command_parse((const uint8_t *)"\x04PING\x00", 6, &c), -RC_ZMTP_E_COMMAND);
    /* SUBSCRIBE, CANCEL: the topic is the rest, possibly empty */
    CHECK_EQ_INT(rc_zmtp_command_parse((const uint8_t *)"\x09SUBSCRIBEroom", 14, &c), 0);
    CHECK_EQ_INT(c.kind, RC_ZMTP_CMD_SUBSCRIBE);
    CHECK_MEM(c.data, c.len, "room", 4);
    CHECK_EQ_INT(rc_zmtp_command_parse((const uint8_t *)"\x06" "CANCEL", 7, &c), 0);
    CHECK_EQ_INT(c.kind, RC_ZMTP_CMD_CANCEL);
    CHECK_EQ_INT(c.len, 0);
    /* ERROR: reason with its size byte, which must fit */
    CHECK_EQ_INT(rc_zmtp_command_parse((const uint8_t *)"\x05" "ERROR\x03" "bad", 10, &c), 0);
    CHECK_EQ_INT(c.kind, RC_ZMTP_CMD_ERROR);
    CHECK_MEM(c.data, c.len, "bad", 3);
    CHECK_EQ_INT(rc_zmtp_command_parse((const uint8_t *)"\x05" "ERROR\x04" "bad", 10, &c),
                 -RC_ZMTP_E_COMMAND);
    CHECK_EQ_INT(rc_zmtp_command_parse((const uint8_t *)"\x05" "ERROR", 6, &c), -RC_ZMTP_E_COMMAND);
    /* unknown names pass as OTHER; names are case-sensitive */
    CHECK_EQ_INT(rc_zmtp_command_parse((const uint8_t *)"\x04ping\x00\x00", 7, &c), 0);
    CHECK_EQ_INT(c.kind, RC_ZMTP_CMD_OTHER);
    /* a name running past the body, an empty body */
    CHECK_EQ_INT(rc_zmtp_command_parse((const uint8_t *)"\x09PING", 5, &c), -RC_ZMTP_E_COMMAND);
    CHECK_EQ_INT(rc_zmtp_command_parse(b, 0, &c), -RC_ZMTP_E_COMMAND);
}

/* props writes READY properties: pairs of (name, value) strings, value may contain NULs when
 * vlen is given; returns the length. */
static size_t prop(uint8_t *out, const char *name, const void *value, size_t vl)
{
    size_t nl = strlen(name), i = 0;
    out[i++] = (uint8_t)nl;
    memcpy(out + i, name, nl);
    i += nl;
    out[i++] = (uint8_t)(vl >> 24);
    out[i++] = (uint8_t)(vl >> 16);
    out[i++] = (uint8_t)(vl >> 8);
    out[i++] = (uint8_t)vl;
    memcpy(out + i, value, vl);
    return i + vl;
}

TEST(test_ready_metadata)
{
    uint8_t p[600];
    rc_zmtp_peer peer;
    size_t n = prop(p, "Socket-Type", "DEALER", 6);
    n += prop(p + n, "Identity", "dev-1", 5);
    CHECK_EQ_INT(rc_zmtp_ready_parse(p, n, RC_ZMTP_T_ROUTER, &peer), 0);
    CHECK_EQ_INT(peer.type, RC_ZMTP_T_DEALER);
    CHECK_MEM(peer.identity, peer.identity_len, "dev-1", 5);
    /* names are case-insensitive (RFC 23), unknown properties are skipped */
    n = prop(p, "X-Custom", "1", 1);
    n += prop(p + n, "socket-type", "REQ", 3);
    CHECK_EQ_INT(rc_zmtp_ready_parse(p, n, RC_ZMTP_T_ROUTER, &peer), 0);
    CHECK_EQ_INT(peer.type, RC_ZMTP_T_REQ);
    CHECK(peer.identity == NULL);
    /* the compatibility table, both server types */
    static const struct { enum rc_zmtp_type self; const char *peer; bool ok; } table[] = {
        {RC_ZMTP_T_ROUTER, "DEALER", true}, {RC_ZMTP_T_ROUTER, "REQ", true},
        {RC_ZMTP_T_ROUTER, "ROUTER", true}, {RC_ZMTP_T_ROUTER, "SUB", false},
        {RC_ZMTP_T_ROUTER, "PUSH", false}, {RC_ZMTP_T_ROUTER, "dealer", false},
        {RC_ZMTP_T_PUB, "SUB", true}, {RC_ZMTP_T_PUB, "XSUB", true},
        {RC_ZMTP_T_PUB, "DEALER", false}, {RC_ZMTP_T_XPUB, "SUB", true},
        {RC_ZMTP_T_XPUB, "PUB", false}, {RC_ZMTP_T_PUB, "NOPE", false},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        n = prop(p, "Socket-Type", table[i].peer, strlen(table[i].peer));
        int r = rc_zmtp_ready_parse(p, n, table[i].self, &peer);
        CHECK_EQ_INT(r, table[i].ok ? 0 : -RC_ZMTP_E_SOCKET_TYPE);
    }
    /* no Socket-Type at all */
    n = prop(p, "Identity", "x", 1);
    CHECK_EQ_INT(rc_zmtp_ready_parse(p, n, RC_ZMTP_T_ROUTER, &peer), -RC_ZMTP_E_SOCKET_TYPE);
    /* malformed: a value running past the end at every cut, an identity over 255 */
    n = prop(p, "Socket-Type", "DEALER", 6);
    for (size_t k = 1; k < n; k++)
        CHECK_EQ_INT(rc_zmtp_ready_parse(p, k, RC_ZMTP_T_ROUTER, &peer), -RC_ZMTP_E_METADATA);
    static uint8_t big[256];
    memset(big, 'i', sizeof big);
    n = prop(p, "Socket-Type", "DEALER", 6);
    n += prop(p + n, "Identity", big, 256);
    CHECK_EQ_INT(rc_zmtp_ready_parse(p, n, RC_ZMTP_T_ROUTER, &peer), -RC_ZMTP_E_METADATA);
    n = prop(p, "Socket-Type", "DEALER", 6);
    n += prop(p + n, "Identity", big, 255);
    CHECK_EQ_INT(rc_zmtp_ready_parse(p, n, RC_ZMTP_T_ROUTER, &peer), 0);
    CHECK_EQ_INT(peer.identity_len, 255);
}

TEST(test_encoders)
{
    uint8_t out[300];
    /* READY of a ROUTER: what libzmq 4.3 sends (Socket-Type, then an empty Identity) */
    static const uint8_t ready[] = "\x04\x29\x05READY\x0bSocket-Type\x00\x00\x00\x06ROUTER"
                                   "\x08Identity\x00\x00\x00\x00";
    size_t n = rc_zmtp_ready_encode(out, sizeof out, RC_ZMTP_T_ROUTER);
    CHECK_MEM(out, n, ready, sizeof ready - 1);
    static const uint8_t ready_pub[] = "\x04\x19\x05READY\x0bSocket-Type\x00\x00\x00\x03PUB";
    n = rc_zmtp_ready_encode(out, sizeof out, RC_ZMTP_T_PUB);
    CHECK_MEM(out, n, ready_pub, sizeof ready_pub - 1);
    CHECK_EQ_INT(rc_zmtp_ready_encode(out, 10, RC_ZMTP_T_ROUTER), 0);
    /* PONG echoes the context, cut to 16 */
    n = rc_zmtp_pong_encode(out, sizeof out, (const uint8_t *)"abc", 3);
    CHECK_MEM(out, n, "\x04\x08\x04PONGabc", 10);
    n = rc_zmtp_pong_encode(out, sizeof out, (const uint8_t *)"0123456789abcdefXY", 18);
    CHECK_EQ_INT(n, RC_ZMTP_PONG_MAX);
    /* ERROR */
    n = rc_zmtp_error_encode(out, sizeof out, "invalid socket type");
    CHECK_MEM(out, n, "\x04\x1a\x05" "ERROR\x13invalid socket type", 28);
    /* our encodings parse back */
    rc_zmtp_frame f;
    rc_zmtp_cmd c;
    CHECK_EQ_INT(rc_zmtp_frame_parse(out, n, 0, &f), 2);
    CHECK_EQ_INT(rc_zmtp_command_parse(out + 2, (size_t)f.len, &c), 0);
    CHECK_EQ_INT(c.kind, RC_ZMTP_CMD_ERROR);
    CHECK_MEM(c.data, c.len, "invalid socket type", 19);
}

/* ---- the reader -------------------------------------------------------------------------- */

/* A whole client session: greeting, READY (DEALER, identity), a 3-frame message, PING, a
 * 1-frame message with a long frame, SUBSCRIBE. */
static size_t session(uint8_t *s, uint8_t minor)
{
    size_t n = 0;
    greeting(s, 3, minor, NULL);
    n = 64;
    uint8_t props[64];
    size_t pn = prop(props, "Socket-Type", "DEALER", 6);
    pn += prop(props + pn, "Identity", "id", 2);
    n += cmd(s + n, "READY", props, pn);
    n += rc_zmtp_frame_header(s + n, 2, RC_ZMTP_MORE);
    memcpy(s + n, "r1", 2), n += 2;
    n += rc_zmtp_frame_header(s + n, 0, RC_ZMTP_MORE);
    n += rc_zmtp_frame_header(s + n, 3, 0);
    memcpy(s + n, "abc", 3), n += 3;
    n += cmd(s + n, "PING", "\x00\x05hb", 4);
    n += rc_zmtp_frame_header(s + n, 300, 0);
    memset(s + n, 'z', 300), n += 300;
    n += cmd(s + n, "SUBSCRIBE", "top", 3);
    return n;
}

/* expect items: what a correct reading of session() yields, in order. */
static const enum rc_zmtp_item_kind want_kinds[] = {
    RC_ZMTP_I_GREETING, RC_ZMTP_I_READY, RC_ZMTP_I_MESSAGE, RC_ZMTP_I_COMMAND,
    RC_ZMTP_I_MESSAGE, RC_ZMTP_I_COMMAND,
};

/* feed reads s[0..n) arriving in pieces (each piece's size from next_piece), keeping the
 * unconsumed input contiguous as a transport would; checks every item. */
static bool feed(const uint8_t *s, size_t n, size_t (*next_piece)(void))
{
    static uint8_t buf[2048];
    size_t have = 0, fed = 0, items = 0;
    rc_zmtp_reader r;
    rc_zmtp_limits lim = {.max_frame = 1000, .max_frames = 3, .max_bytes = 2000};
    rc_zmtp_reader_init(&r, RC_ZMTP_T_ROUTER, &lim);
    while (fed < n || have) {
        size_t k = next_piece();
        if (k > n - fed) k = n - fed;
        memcpy(buf + have, s + fed, k);
        have += k, fed += k;
        for (;;) {
            rc_zmtp_item it;
            long rc = rc_zmtp_read(&r, buf, have, &it);
            if (rc < 0) return false;
            if (rc == 0) break;
            if (items >= sizeof want_kinds / sizeof want_kinds[0]) return false;
            if (it.kind != want_kinds[items]) return false;
            if (items == 1 && (it.peer.type != RC_ZMTP_T_DEALER || it.peer.identity_len != 2))
                return false;
            if (items == 2) {
                rc_zmtp_part parts[4];
                if (it.nframes != 3 || it.bytes != 5) return false;
                if (rc_zmtp_parts(buf, (size_t)rc, parts, 4) != 3) return false;
                if (parts[0].len != 2 || memcmp(parts[0].data, "r1", 2) || parts[1].len != 0 ||
                    parts[2].len != 3 || memcmp(parts[2].data, "abc", 3))
                    return false;
            }
            if (items == 3 && (it.cmd.kind != RC_ZMTP_CMD_PING || it.cmd.ttl != 5 ||
                               it.cmd.len != 2 || memcmp(it.cmd.data, "hb", 2)))
                return false;
            if (items == 4 && (it.nframes != 1 || it.bytes != 300)) return false;
            if (items == 5 && it.cmd.kind != RC_ZMTP_CMD_SUBSCRIBE) return false;
            items++;
            memmove(buf, buf + rc, have - (size_t)rc);
            have -= (size_t)rc;
        }
        if (fed == n && have) return false; /* bytes left that never made a unit */
    }
    return items == sizeof want_kinds / sizeof want_kinds[0];
}

static size_t one(void) { return 1; }
static size_t random_piece(void) { return 1 + unit_rand() % 97; }
static size_t all(void) { return 100000; }

TEST(test_reader_any_split)
{
    uint8_t s[1024];
    for (uint8_t minor = 0; minor <= 1; minor++) {
        size_t n = session(s, minor);
        CHECK(feed(s, n, one));
        CHECK(feed(s, n, all));
        for (int i = 0; i < 200; i++) CHECK(feed(s, n, random_piece));
    }
}

/* read_all reads s[0..n) at once and returns the first error or 0 after every unit. */
static long read_all(const uint8_t *s, size_t n, const rc_zmtp_limits *lim,
                     enum rc_zmtp_type self)
{
    rc_zmtp_reader r;
    rc_zmtp_reader_init(&r, self, lim);
    size_t off = 0;
    for (;;) {
        rc_zmtp_item it;
        long rc = rc_zmtp_read(&r, s + off, n - off, &it);
        if (rc <= 0) return rc;
        off += (size_t)rc;
    }
}

/* handshake writes a greeting and READY of type into s; returns the length. */
static size_t handshake(uint8_t *s, const char *type)
{
    greeting(s, 3, 1, NULL);
    uint8_t props[32];
    size_t pn = prop(props, "Socket-Type", type, strlen(type));
    return 64 + cmd(s + 64, "READY", props, pn);
}

TEST(test_reader_errors)
{
    uint8_t s[4096];
    rc_zmtp_limits lim = {.max_frame = 100, .max_frames = 2, .max_bytes = 150};
    size_t n;
    /* data before READY; another command before READY */
    greeting(s, 3, 1, NULL);
    n = 64 + rc_zmtp_frame_header(s + 64, 1, 0);
    s[n++] = 'x';
    CHECK_EQ_INT(read_all(s, n, &lim, RC_ZMTP_T_ROUTER), -RC_ZMTP_E_NO_READY);
    n = 64 + cmd(s + 64, "PING", "\0\0", 2);
    CHECK_EQ_INT(read_all(s, n, &lim, RC_ZMTP_T_ROUTER), -RC_ZMTP_E_NO_READY);
    /* a SUB at a ROUTER */
    n = handshake(s, "SUB");
    CHECK_EQ_INT(read_all(s, n, &lim, RC_ZMTP_T_ROUTER), -RC_ZMTP_E_SOCKET_TYPE);
    CHECK_EQ_INT(read_all(s, n, &lim, RC_ZMTP_T_PUB), 0);
    /* frame over the limit: refused at its header, before the body */
    n = handshake(s, "DEALER");
    n += rc_zmtp_frame_header(s + n, 101, 0);
    CHECK_EQ_INT(read_all(s, n, &lim, RC_ZMTP_T_ROUTER), -RC_ZMTP_E_FRAME_TOO_BIG);
    /* three frames with max_frames 2: refused at the third header; truncate takes it */
    n = handshake(s, "DEALER");
    for (int i = 0; i < 3; i++) n += rc_zmtp_frame_header(s + n, 0, i < 2 ? RC_ZMTP_MORE : 0);
    CHECK_EQ_INT(read_all(s, n - 2, &lim, RC_ZMTP_T_ROUTER), 0);
    CHECK_EQ_INT(read_all(s, n, &lim, RC_ZMTP_T_ROUTER), -RC_ZMTP_E_TOO_MANY_FRAMES);
    rc_zmtp_limits tl = lim;
    tl.truncate = true;
    CHECK_EQ_INT(read_all(s, n, &tl, RC_ZMTP_T_ROUTER), 0);
    /* frames within the limit that together exceed max_bytes (wire size) */
    n = handshake(s, "DEALER");
    n += rc_zmtp_frame_header(s + n, 100, RC_ZMTP_MORE);
    memset(s + n, 'a', 100), n += 100;
    n += rc_zmtp_frame_header(s + n, 47, 0);
    CHECK_EQ_INT(read_all(s, n, &lim, RC_ZMTP_T_ROUTER), -RC_ZMTP_E_MSG_TOO_BIG);
    s[n - 1] = 46; /* 102 + 2 + 46 = 150: fits */
    CHECK_EQ_INT(read_all(s, n, &lim, RC_ZMTP_T_ROUTER), 0);
    /* a command between the frames of a message */
    n = handshake(s, "DEALER");
    n += rc_zmtp_frame_header(s + n, 0, RC_ZMTP_MORE);
    n += cmd(s + n, "PING", "\0\0", 2);
    CHECK_EQ_INT(read_all(s, n, &lim, RC_ZMTP_T_ROUTER), -RC_ZMTP_E_COMMAND_IN_MSG);
    /* READY again after the handshake, a malformed command */
    n = handshake(s, "DEALER");
    n += cmd(s + n, "READY", "", 0);
    CHECK_EQ_INT(read_all(s, n, &lim, RC_ZMTP_T_ROUTER), -RC_ZMTP_E_COMMAND);
    n = handshake(s, "DEALER");
    n += cmd(s + n, "PING", "", 0);
    CHECK_EQ_INT(read_all(s, n, &lim, RC_ZMTP_T_ROUTER), -RC_ZMTP_E_COMMAND);
    /* a command over max_bytes */
    n = handshake(s, "DEALER");
    static uint8_t pad[200];
    n += cmd(s + n, "X", pad, 160);
    CHECK_EQ_INT(read_all(s, n, &lim, RC_ZMTP_T_ROUTER), -RC_ZMTP_E_FRAME_TOO_BIG);
    rc_zmtp_limits cl = {.max_bytes = 150};
    CHECK_EQ_INT(read_all(s, n, &cl, RC_ZMTP_T_ROUTER), -RC_ZMTP_E_MSG_TOO_BIG);
}

TEST(test_reader_resumes_without_rereading_frames)
{
    /* a message whose frames arrive one call at a time keeps its progress in r.pos */
    uint8_t s[256];
    size_t n = handshake(s, "DEALER");
    size_t start = n;
    n += rc_zmtp_frame_header(s + n, 1, RC_ZMTP_MORE);
    s[n++] = 'a';
    size_t mid = n;
    n += rc_zmtp_frame_header(s + n, 1, 0);
    s[n++] = 'b';
    rc_zmtp_reader r;
    rc_zmtp_limits lim = {0};
    rc_zmtp_reader_init(&r, RC_ZMTP_T_ROUTER, &lim);
    rc_zmtp_item it;
    CHECK_EQ_INT(rc_zmtp_read(&r, s, 64, &it), 64);
    CHECK_EQ_INT(rc_zmtp_read(&r, s + 64, start - 64, &it), (long)(start - 64));
    CHECK_EQ_INT(rc_zmtp_read(&r, s + start, mid - start, &it), 0);
    CHECK_EQ_INT(r.pos, mid - start);
    CHECK_EQ_INT(r.nframes, 1);
    CHECK_EQ_INT(rc_zmtp_read(&r, s + start, n - start, &it), (long)(n - start));
    CHECK_EQ_INT(it.nframes, 2);
    CHECK_EQ_INT(r.pos, 0);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(test_greeting_versions);
    RUN(test_greeting_refusals);
    RUN(test_greeting_encode_is_libzmqs);
    RUN(test_frame_headers);
    RUN(test_commands);
    RUN(test_ready_metadata);
    RUN(test_encoders);
    RUN(test_reader_any_split);
    RUN(test_reader_errors);
    RUN(test_reader_resumes_without_rereading_frames);
    UNIT_MAIN_END("test_zmtp");
}
