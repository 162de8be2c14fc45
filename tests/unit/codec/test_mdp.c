/* test_mdp.c — tests for src/codec/mdp.c: every worker-port and client-port message shape of
 * the seed LRU queue, Paranoid Pirate and MDP/0.1, each malformation the parsers reject (with
 * its own error), the protocol hint, and every encoder byte by byte. */
#include "unit.h"

#include "codec/mdp.h"

/* F builds a frame from a string literal (the NUL is not part of it). */
#define F(s) mdp_frame_of((s), sizeof(s) - 1)
#define E mdp_frame_of(NULL, 0)
#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char b01[] = {1}, b02[] = {2}, b03[] = {3}, b04[] = {4}, b05[] = {5}, b09[] = {9};
#define B(x) mdp_frame_of((x), 1)

static int pw(const mdp_frame *f, size_t n, enum mdp_proto hint, mdp_msg *m)
{
    return mdp_parse_worker(f, n, hint, m);
}

TEST(lru_worker_ready_and_reply)
{
    mdp_msg m;
    mdp_frame r[] = {F("w1"), E, F("READY")};
    CHECK_EQ_INT(pw(r, N(r), MDP_PROTO_NONE, &m), MDP_OK);
    CHECK_EQ_INT(m.proto, MDP_PROTO_LRU);
    CHECK_EQ_INT(m.kind, MDP_K_READY);
    CHECK_MEM(m.identity.p, m.identity.len, "w1", 2);

    mdp_frame p[] = {F("w1"), E, F("client-1"), E, F("OK"), F("more")};
    CHECK_EQ_INT(pw(p, N(p), MDP_PROTO_LRU, &m), MDP_OK);
    CHECK_EQ_INT(m.kind, MDP_K_REPLY);
    CHECK_MEM(m.addr.p, m.addr.len, "client-1", 8);
    CHECK_EQ_INT(m.nbody, 2);
    CHECK_MEM(m.body[0].p, m.body[0].len, "OK", 2);
    CHECK_MEM(m.body[1].p, m.body[1].len, "more", 4);
    /* An empty body frame is a body frame. */
    mdp_frame pe[] = {F("w1"), E, F("c"), E, E};
    CHECK_EQ_INT(pw(pe, N(pe), MDP_PROTO_LRU, &m), MDP_OK);
    CHECK_EQ_INT(m.nbody, 1);
}

TEST(lru_worker_malformed)
{
    mdp_msg m;
    mdp_frame a[] = {F("w1"), E, F("READX")};
    CHECK_EQ_INT(pw(a, N(a), MDP_PROTO_NONE, &m), MDP_E_COMMAND);
    mdp_frame b[] = {F("w1"), E, F("READY"), E};     /* 4 frames: neither READY nor reply */
    CHECK_EQ_INT(pw(b, N(b), MDP_PROTO_NONE, &m), MDP_E_FRAMES);
    mdp_frame c[] = {F("w1"), E, F("c"), F("x"), F("OK")};
    CHECK_EQ_INT(pw(c, N(c), MDP_PROTO_LRU, &m), MDP_E_DELIM);
    mdp_frame d[] = {F("w1"), E, E, E, F("OK")};
    CHECK_EQ_INT(pw(d, N(d), MDP_PROTO_LRU, &m), MDP_E_ADDRESS);
    mdp_frame e[] = {F("w1"), E};
    CHECK_EQ_INT(pw(e, N(e), MDP_PROTO_NONE, &m), MDP_E_FRAMES);
    mdp_frame g[] = {F("w1")};
    CHECK_EQ_INT(pw(g, N(g), MDP_PROTO_NONE, &m), MDP_E_FRAMES);
    CHECK_EQ_INT(pw(g, 0, MDP_PROTO_NONE, &m), MDP_E_IDENTITY);
    mdp_frame h[] = {E, E, F("READY")};
    CHECK_EQ_INT(pw(h, N(h), MDP_PROTO_NONE, &m), MDP_E_IDENTITY);
    static uint8_t big[300];
    mdp_frame i[] = {mdp_frame_of(big, 256), E, F("READY")};
    CHECK_EQ_INT(pw(i, N(i), MDP_PROTO_NONE, &m), MDP_E_IDENTITY);
    i[0].len = 255;
    CHECK_EQ_INT(pw(i, N(i), MDP_PROTO_NONE, &m), MDP_OK);
    mdp_frame j[] = {F("w1"), E, mdp_frame_of(big, 256), E, F("x")};
    CHECK_EQ_INT(pw(j, N(j), MDP_PROTO_LRU, &m), MDP_E_ADDRESS);
}

TEST(ppp_worker_shapes)
{
    mdp_msg m;
    mdp_frame r[] = {F("w"), B(b01)};
    CHECK_EQ_INT(pw(r, N(r), MDP_PROTO_NONE, &m), MDP_OK);
    CHECK_EQ_INT(m.proto, MDP_PROTO_PPP);
    CHECK_EQ_INT(m.kind, MDP_K_READY);
    mdp_frame h[] = {F("w"), B(b02)};
    CHECK_EQ_INT(pw(h, N(h), MDP_PROTO_PPP, &m), MDP_OK);
    CHECK_EQ_INT(m.kind, MDP_K_HEARTBEAT);
    mdp_frame p[] = {F("w"), F("addr"), E, F("body")};
    CHECK_EQ_INT(pw(p, N(p), MDP_PROTO_PPP, &m), MDP_OK);
    CHECK_EQ_INT(m.kind, MDP_K_REPLY);
    CHECK_MEM(m.addr.p, m.addr.len, "addr", 4);
    CHECK_EQ_INT(m.nbody, 1);
    CHECK_MEM(m.body[0].p, m.body[0].len, "body", 4);

    mdp_frame x[] = {F("w"), B(b03)};
    CHECK_EQ_INT(pw(x, N(x), MDP_PROTO_PPP, &m), MDP_E_COMMAND);
    mdp_frame y[] = {F("w"), F("\x01\x01")};
    CHECK_EQ_INT(pw(y, N(y), MDP_PROTO_PPP, &m), MDP_E_COMMAND);
    mdp_frame z[] = {F("w"), F("addr"), E};               /* no body */
    CHECK_EQ_INT(pw(z, N(z), MDP_PROTO_PPP, &m), MDP_E_FRAMES);
    mdp_frame q[] = {F("w"), F("addr"), F("x"), F("b")};
    CHECK_EQ_INT(pw(q, N(q), MDP_PROTO_PPP, &m), MDP_E_DELIM);
}

TEST(mdp_worker_shapes)
{
    mdp_msg m;
    mdp_frame r[] = {F("w"), E, F("MDPW01"), B(b01), F("echo")};
    CHECK_EQ_INT(pw(r, N(r), MDP_PROTO_NONE, &m), MDP_OK);
    CHECK_EQ_INT(m.proto, MDP_PROTO_MDP);
    CHECK_EQ_INT(m.kind, MDP_K_READY);
    CHECK_MEM(m.service.p, m.service.len, "echo", 4);
    mdp_frame p[] = {F("w"), E, F("MDPW01"), B(b03), F("tok"), E, F("a"), F("b")};
    CHECK_EQ_INT(pw(p, N(p), MDP_PROTO_MDP, &m), MDP_OK);
    CHECK_EQ_INT(m.kind, MDP_K_REPLY);
    CHECK_MEM(m.addr.p, m.addr.len, "tok", 3);
    CHECK_EQ_INT(m.nbody, 2);
    mdp_frame p0[] = {F("w"), E, F("MDPW01"), B(b03), F("tok"), E}; /* empty body allowed */
    CHECK_EQ_INT(pw(p0, N(p0), MDP_PROTO_MDP, &m), MDP_OK);
    CHECK_EQ_INT(m.nbody, 0);
    mdp_frame h[] = {F("w"), E, F("MDPW01"), B(b04)};
    CHECK_EQ_INT(pw(h, N(h), MDP_PROTO_MDP, &m), MDP_OK);
    CHECK_EQ_INT(m.kind, MDP_K_HEARTBEAT);
    mdp_frame d[] = {F("w"), E, F("MDPW01"), B(b05)};
    CHECK_EQ_INT(pw(d, N(d), MDP_PROTO_MDP, &m), MDP_OK);
    CHECK_EQ_INT(m.kind, MDP_K_DISCONNECT);
}

TEST(mdp_worker_malformed)
{
    mdp_msg m;
    mdp_frame a[] = {F("w"), E, F("MDPW01"), B(b01)};               /* READY without service */
    CHECK_EQ_INT(pw(a, N(a), MDP_PROTO_NONE, &m), MDP_E_FRAMES);
    mdp_frame b[] = {F("w"), E, F("MDPW01"), B(b01), E};            /* empty service */
    CHECK_EQ_INT(pw(b, N(b), MDP_PROTO_NONE, &m), MDP_E_SERVICE);
    mdp_frame c[] = {F("w"), E, F("MDPW01"), B(b01), F("s"), F("x")};
    CHECK_EQ_INT(pw(c, N(c), MDP_PROTO_NONE, &m), MDP_E_FRAMES);
    mdp_frame d[] = {F("w"), E, F("MDPW01"), B(b02), F("a"), E, F("x")}; /* REQUEST from a worker */
    CHECK_EQ_INT(pw(d, N(d), MDP_PROTO_MDP, &m), MDP_E_COMMAND);
    mdp_frame e[] = {F("w"), E, F("MDPW01"), B(b09)};
    CHECK_EQ_INT(pw(e, N(e), MDP_PROTO_MDP, &m), MDP_E_COMMAND);
    mdp_frame f[] = {F("w"), E, F("MDPW01"), F("\x04\x00")};
    CHECK_EQ_INT(pw(f, N(f), MDP_PROTO_MDP, &m), MDP_E_COMMAND);
    mdp_frame g[] = {F("w"), E, F("MDPW01"), B(b04), F("x")};
    CHECK_EQ_INT(pw(g, N(g), MDP_PROTO_MDP, &m), MDP_E_FRAMES);
    mdp_frame h[] = {F("w"), E, F("MDPW01"), B(b05), F("x")};
    CHECK_EQ_INT(pw(h, N(h), MDP_PROTO_MDP, &m), MDP_E_FRAMES);
    mdp_frame i[] = {F("w"), E, F("MDPW01"), B(b03), F("a")};            /* no delimiter */
    CHECK_EQ_INT(pw(i, N(i), MDP_PROTO_MDP, &m), MDP_E_FRAMES);
    mdp_frame j[] = {F("w"), E, F("MDPW01"), B(b03), F("a"), F("x"), F("y")};
    CHECK_EQ_INT(pw(j, N(j), MDP_PROTO_MDP, &m), MDP_E_DELIM);
    mdp_frame k[] = {F("w"), E, F("MDPW01"), B(b03), E, E, F("y")};
    CHECK_EQ_INT(pw(k, N(k), MDP_PROTO_MDP, &m), MDP_E_ADDRESS);
    mdp_frame l[] = {F("w"), E, F("MDPW02"), B(b01), F("s")};      /* MDP/0.2 is not served */
    CHECK_EQ_INT(pw(l, N(l), MDP_PROTO_NONE, &m), MDP_E_HEADER);
    mdp_frame n[] = {F("w"), E, F("MDPC01"), F("s"), F("x")};      /* a client on the worker port */
    CHECK_EQ_INT(pw(n, N(n), MDP_PROTO_NONE, &m), MDP_E_HEADER);
    mdp_frame o[] = {F("w"), E, F("MDPW01")};
    CHECK_EQ_INT(pw(o, N(o), MDP_PROTO_NONE, &m), MDP_E_FRAMES);
    mdp_frame p[] = {F("w"), E, F("MDPW01"), E};
    CHECK_EQ_INT(pw(p, N(p), MDP_PROTO_MDP, &m), MDP_E_COMMAND);
    static uint8_t big[300];
    mdp_frame q[] = {F("w"), E, F("MDPW01"), B(b01), mdp_frame_of(big, 256)};
    CHECK_EQ_INT(pw(q, N(q), MDP_PROTO_NONE, &m), MDP_E_SERVICE);
}

/* The hint holds a worker to its protocol and settles the one LRU/MDP ambiguity. */
TEST(protocol_hint)
{
    mdp_msg m;
    mdp_frame ppp_ready[] = {F("w"), B(b01)};
    CHECK_EQ_INT(pw(ppp_ready, 2, MDP_PROTO_MDP, &m), MDP_E_PROTOCOL);
    CHECK_EQ_INT(m.proto, MDP_PROTO_PPP);
    CHECK_EQ_INT(m.kind, MDP_K_READY);
    mdp_frame lru_ready[] = {F("w"), E, F("READY")};
    CHECK_EQ_INT(pw(lru_ready, 3, MDP_PROTO_PPP, &m), MDP_E_PROTOCOL);
    CHECK_EQ_INT(m.proto, MDP_PROTO_LRU);
    mdp_frame mdp_hb[] = {F("w"), E, F("MDPW01"), B(b04)};
    CHECK_EQ_INT(pw(mdp_hb, 4, MDP_PROTO_PPP, &m), MDP_E_PROTOCOL);
    CHECK_EQ_INT(m.kind, MDP_K_HEARTBEAT);
    /* An LRU reply to a client literally called "MDPW01". */
    mdp_frame amb[] = {F("w"), E, F("MDPW01"), E, F("OK")};
    CHECK_EQ_INT(pw(amb, 5, MDP_PROTO_LRU, &m), MDP_OK);
    CHECK_EQ_INT(m.kind, MDP_K_REPLY);
    CHECK_MEM(m.addr.p, m.addr.len, "MDPW01", 6);
    CHECK_EQ_INT(pw(amb, 5, MDP_PROTO_NONE, &m), MDP_E_COMMAND);
}

TEST(client_shapes)
{
    mdp_msg m;
    mdp_frame l[] = {F("c"), E, F("HELLO")};
    CHECK_EQ_INT(mdp_parse_client(l, 3, &m), MDP_OK);
    CHECK_EQ_INT(m.proto, MDP_PROTO_LRU);
    CHECK_EQ_INT(m.kind, MDP_K_REQUEST);
    CHECK_EQ_INT(m.service.len, 0);
    CHECK_EQ_INT(m.nbody, 1);
    CHECK_MEM(m.body[0].p, m.body[0].len, "HELLO", 5);
    mdp_frame d[] = {F("c"), E, F("MDPC01"), F("echo"), F("a"), F("b")};
    CHECK_EQ_INT(mdp_parse_client(d, 6, &m), MDP_OK);
    CHECK_EQ_INT(m.proto, MDP_PROTO_MDP);
    CHECK_MEM(m.service.p, m.service.len, "echo", 4);
    CHECK_EQ_INT(m.nbody, 2);
    CHECK_EQ_INT(mdp_parse_client(d, 4, &m), MDP_OK);
    CHECK_EQ_INT(m.nbody, 0);

    CHECK_EQ_INT(mdp_parse_client(d, 3, &m), MDP_E_FRAMES);
    CHECK_EQ_INT(mdp_parse_client(l, 2, &m), MDP_E_FRAMES);
    CHECK_EQ_INT(mdp_parse_client(l, 0, &m), MDP_E_IDENTITY);
    mdp_frame x[] = {F("c"), F("x"), F("HELLO")};
    CHECK_EQ_INT(mdp_parse_client(x, 3, &m), MDP_E_DELIM);
    mdp_frame y[] = {F("c"), E, F("MDPC01"), E};
    CHECK_EQ_INT(mdp_parse_client(y, 4, &m), MDP_E_SERVICE);
    mdp_frame z[] = {E, E, F("HELLO")};
    CHECK_EQ_INT(mdp_parse_client(z, 3, &m), MDP_E_IDENTITY);
}

/* expect compares an encoded frame list with the expected frames. */
static int same(const mdp_frame *a, int n, const mdp_frame *b, size_t nb)
{
    if (n < 0 || (size_t)n != nb) return 0;
    for (size_t i = 0; i < nb; i++)
        if (a[i].len != b[i].len || (b[i].len && memcmp(a[i].p, b[i].p, b[i].len))) return 0;
    return 1;
}

TEST(encoders)
{
    mdp_frame o[16];
    mdp_frame body[] = {F("b1"), F("b2")};
    mdp_frame id = F("W"), tok = F("TOKEN123"), svc = F("echo"), cid = F("C");

    mdp_frame lru[] = {F("W"), E, F("TOKEN123"), E, F("b1"), F("b2")};
    CHECK(same(o, mdp_enc_request(o, 16, MDP_PROTO_LRU, id, tok, body, 2), lru, N(lru)));
    mdp_frame ppp[] = {F("W"), F("TOKEN123"), E, F("b1"), F("b2")};
    CHECK(same(o, mdp_enc_request(o, 16, MDP_PROTO_PPP, id, tok, body, 2), ppp, N(ppp)));
    mdp_frame mdp[] = {F("W"), E, F("MDPW01"), B(b02), F("TOKEN123"), E, F("b1"), F("b2")};
    CHECK(same(o, mdp_enc_request(o, 16, MDP_PROTO_MDP, id, tok, body, 2), mdp, N(mdp)));
    CHECK_EQ_INT(mdp_enc_request(o, 7, MDP_PROTO_MDP, id, tok, body, 2), -1);
    CHECK_EQ_INT(mdp_enc_request(o, 16, MDP_PROTO_NONE, id, tok, body, 2), -1);

    mdp_frame hp[] = {F("W"), B(b02)};
    CHECK(same(o, mdp_enc_heartbeat(o, 16, MDP_PROTO_PPP, id), hp, N(hp)));
    mdp_frame hm[] = {F("W"), E, F("MDPW01"), B(b04)};
    CHECK(same(o, mdp_enc_heartbeat(o, 16, MDP_PROTO_MDP, id), hm, N(hm)));
    CHECK_EQ_INT(mdp_enc_heartbeat(o, 16, MDP_PROTO_LRU, id), -1);
    mdp_frame dm[] = {F("W"), E, F("MDPW01"), B(b05)};
    CHECK(same(o, mdp_enc_disconnect(o, 16, MDP_PROTO_MDP, id), dm, N(dm)));
    CHECK_EQ_INT(mdp_enc_disconnect(o, 16, MDP_PROTO_PPP, id), -1);

    mdp_frame cl[] = {F("C"), E, F("b1"), F("b2")};
    CHECK(same(o, mdp_enc_client_reply(o, 16, MDP_PROTO_LRU, cid, svc, body, 2), cl, N(cl)));
    mdp_frame cm[] = {F("C"), E, F("MDPC01"), F("echo"), F("b1"), F("b2")};
    CHECK(same(o, mdp_enc_client_reply(o, 16, MDP_PROTO_MDP, cid, svc, body, 2), cm, N(cm)));
    mdp_frame mm[] = {F("C"), E, F("MDPC01"), F("mmi.service"), F("404")};
    CHECK(same(o, mdp_enc_mmi(o, 16, cid, F("mmi.service"), 404), mm, N(mm)));
    CHECK_MEM(mdp_mmi_code(200).p, 3, "200", 3);
    CHECK_MEM(mdp_mmi_code(501).p, 3, "501", 3);

    mdp_frame wr[] = {E, F("READY")};
    CHECK(same(o, mdp_enc_worker_ready(o, 16, MDP_PROTO_LRU, E), wr, N(wr)));
    mdp_frame wp[] = {B(b01)};
    CHECK(same(o, mdp_enc_worker_ready(o, 16, MDP_PROTO_PPP, E), wp, N(wp)));
    mdp_frame wm[] = {E, F("MDPW01"), B(b01), F("echo")};
    CHECK(same(o, mdp_enc_worker_ready(o, 16, MDP_PROTO_MDP, svc), wm, N(wm)));
    mdp_frame rm[] = {E, F("MDPW01"), B(b03), F("TOKEN123"), E, F("b1"), F("b2")};
    CHECK(same(o, mdp_enc_worker_reply(o, 16, MDP_PROTO_MDP, tok, body, 2), rm, N(rm)));
}

/* What a worker encoder writes, with an identity in front, parses back to itself. */
TEST(round_trip)
{
    mdp_frame o[17], *w = o + 1;
    mdp_frame body[] = {F("x"), E};
    o[0] = F("id");
    for (int p = MDP_PROTO_LRU; p <= MDP_PROTO_MDP; p++) {
        mdp_msg m;
        int n = mdp_enc_worker_ready(w, 16, (enum mdp_proto)p, F("svc"));
        CHECK(n > 0);
        CHECK_EQ_INT(mdp_parse_worker(o, (size_t)n + 1, MDP_PROTO_NONE, &m), MDP_OK);
        CHECK_EQ_INT(m.kind, MDP_K_READY);
        CHECK_EQ_INT(m.proto, p);
        n = mdp_enc_worker_reply(w, 16, (enum mdp_proto)p, F("TOKEN123"), body, 2);
        CHECK_EQ_INT(mdp_parse_worker(o, (size_t)n + 1, (enum mdp_proto)p, &m), MDP_OK);
        CHECK_EQ_INT(m.kind, MDP_K_REPLY);
        CHECK_EQ_INT(m.nbody, 2);
        CHECK_MEM(m.addr.p, m.addr.len, "TOKEN123", 8);
    }
    CHECK(strcmp(mdp_err_name(MDP_E_DELIM), "delimiter") == 0);
    CHECK(strcmp(mdp_err_name(42), "unknown") == 0);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(lru_worker_ready_and_reply);
    RUN(lru_worker_malformed);
    RUN(ppp_worker_shapes);
    RUN(mdp_worker_shapes);
    RUN(mdp_worker_malformed);
    RUN(protocol_hint);
    RUN(client_shapes);
    RUN(encoders);
    RUN(round_trip);
    UNIT_MAIN_END("test_mdp");
}
