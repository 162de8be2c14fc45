/* test_ident.c — tests for src/rooms/ident.c through the room protocol, with endpoints that
 * record what they are sent: the auth message (good, bad, refresh with the same and another
 * sub), the pending state (anything else first closes 4001), the identity's bounds (grants,
 * no sub), "user" spliced into publishes and a client's own cut, and the namespace rules with
 * the token's grants at join and publish, counted by action and code. Tokens are HS256, made
 * here with libcrypto's HMAC. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <time.h>

#include "codec/wsframe.h"
#include "rooms/ident.h"
#include "rooms/room.h"
#include "rooms/roomproto.h"
#include "rooms/wire.h"
#include "unit.h"

static const char secret[] = "0123456789abcdef0123456789abcdef-ident";

typedef struct fake {
    rc_endpoint ep;
    char last[2048];         /* the last text sent to it */
    int nsent;               /* texts sent */
    int closed;              /* close code, 0 = open */
} fake;

#define fake_of(e) ((fake *)(void *)((char *)(e) - offsetof(fake, ep)))

static void fake_deliver(rc_endpoint *ep, rc_msg *m)
{
    fake *f = fake_of(ep);
    size_t h = rc_ws_server_header_len(m->data), n = m->len - h;
    if (n >= sizeof(f->last)) n = sizeof(f->last) - 1;
    memcpy(f->last, m->data + h, n);
    f->last[n] = '\0';
    f->nsent++;
}

static void fake_lost(rc_endpoint *ep) {}

static void fake_close(rc_endpoint *ep, uint16_t code, const char *reason)
{
    fake_of(ep)->closed = code;
}

static const rc_endpoint_ops fake_ops = {.deliver = fake_deliver, .replay = fake_deliver,
                                         .lost = fake_lost, .close = fake_close};

static rc_loop *loop;
static rc_rooms t;
static rc_jwt_keys keys;
static rc_perm_rules rules;

static void setup(void)
{
    rc_rooms_config cfg = {.max_rooms_per_client = 8, .history_bytes = 1 << 20,
                           .idempotency_window = 16, .presence_limit = 100};
    rc_rooms_init(&t, loop, &cfg);
    rc_jwt_keys_init(&keys);
    char err[128];
    if (rc_jwt_keys_add_secret(&keys, NULL, secret, strlen(secret), err, sizeof(err)) < 0)
        abort();
    t.jwt = &keys;
    rc_perm_rules_init(&rules);
    rc_perm_ns *ns = rc_perm_add(&rules, "vip", 3);
    ns->join = RC_PERM_GRANTED;
    ns->publish = RC_PERM_GRANTED;
    ns = rc_perm_add(&rules, "members", 7);
    ns->join = RC_PERM_AUTHENTICATED;
    ns->publish = RC_PERM_AUTHENTICATED;
    rc_rooms_set_perm(&t, &rules);
}

static void teardown(fake *f, int n)
{
    for (int i = 0; i < n; i++) rc_endpoint_gone(&t, &f[i].ep);
    CHECK_EQ_INT(t.auth.users, 0);
    CHECK_EQ_INT(t.auth.pending, 0);
    rc_rooms_release(&t);
    rc_jwt_keys_release(&keys);
    rc_perm_rules_release(&rules);
}

static size_t b64url(const void *p, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *s = p;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? s[i + 1] : 0) << 8 | (i + 2 < n ? s[i + 2] : 0);
        out[k++] = a[v >> 18 & 63];
        out[k++] = a[v >> 12 & 63];
        if (i + 1 < n) out[k++] = a[v >> 6 & 63];
        if (i + 2 < n) out[k++] = a[v & 63];
    }
    return k;
}

/* An HS256 token with the payload JSON text. */
static void token(const char *payload, char *out)
{
    const char *hdr = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    size_t k = b64url(hdr, strlen(hdr), out);
    out[k++] = '.';
    k += b64url(payload, strlen(payload), out + k);
    unsigned char mac[32];
    unsigned ml = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)out, k, mac, &ml);
    out[k++] = '.';
    k += b64url(mac, ml, out + k);
    out[k] = '\0';
}

static void send(fake *f, const char *json)
{
    rc_roomproto_text(&t, &f->ep, json, strlen(json));
}

static void auth(fake *f, const char *payload)
{
    char tok[4096], msg[4200];
    token(payload, tok);
    snprintf(msg, sizeof(msg), "{\"type\":\"auth\",\"token\":\"%s\"}", tok);
    send(f, msg);
}

static void fake_init(fake *f, uint64_t id)
{
    memset(f, 0, sizeof(*f));
    rc_endpoint_init(&f->ep, &fake_ops, RC_WIRE_WS, id);
}

#define HAS(f, s) (strstr((f)->last, (s)) != NULL)

TEST(auth_message_and_refresh)
{
    setup();
    fake f[1];
    fake_init(&f[0], 1);
    auth(&f[0], "{\"sub\":\"al\\\"ice\",\"exp\":4102444800}");
    CHECK_EQ_INT(f[0].ep.auth, RC_IDENT_USER);
    CHECK(HAS(&f[0], "\"type\":\"authenticated\",\"user\":\"al\\\"ice\",\"client_id\":1,"
                     "\"exp\":4102444800}"));
    CHECK_EQ_INT(t.auth.users, 1);
    /* refresh, same sub: new exp */
    auth(&f[0], "{\"sub\":\"al\\\"ice\",\"exp\":4102444900}");
    CHECK(HAS(&f[0], "4102444900"));
    CHECK_EQ_INT(t.auth.refreshed, 1);
    CHECK_EQ_INT(t.auth.users, 1);
    /* another sub: refused, nothing changes */
    auth(&f[0], "{\"sub\":\"bob\"}");
    CHECK(HAS(&f[0], "\"code\":\"forbidden\""));
    CHECK_EQ_INT(t.auth.sub_changed, 1);
    CHECK(strcmp(f[0].ep.ident->user, "al\"ice") == 0);
    CHECK_EQ_INT(f[0].closed, 0);
    /* a bad token closes */
    send(&f[0], "{\"type\":\"auth\",\"token\":\"a.b.c\"}");
    CHECK_EQ_INT(f[0].closed, RC_CLOSE_UNAUTHENTICATED);
    teardown(f, 1);
}

TEST(pending_needs_auth_first)
{
    setup();
    fake f[3];
    for (int i = 0; i < 3; i++) {
        fake_init(&f[i], (uint64_t)i + 1);
        rc_ident_expect(&t, &f[i].ep, 0);
    }
    CHECK_EQ_INT(t.auth.pending, 3);
    send(&f[0], "{\"type\":\"join\",\"room\":\"x\"}");
    CHECK_EQ_INT(f[0].closed, RC_CLOSE_UNAUTHENTICATED);
    CHECK_EQ_INT(f[0].ep.nrooms, 0);
    send(&f[1], "not json");
    CHECK_EQ_INT(f[1].closed, RC_CLOSE_UNAUTHENTICATED);
    CHECK_EQ_INT(t.auth.result[RC_IDENT_MISSING], 2);
    auth(&f[2], "{\"sub\":\"carol\"}");
    CHECK_EQ_INT(f[2].closed, 0);
    CHECK_EQ_INT(f[2].ep.auth, RC_IDENT_USER);
    CHECK_EQ_INT(t.auth.pending, 2); /* the closed ones are still pending until they go */
    CHECK(HAS(&f[2], "\"user\":\"carol\"") && !HAS(&f[2], "exp"));
    teardown(f, 3);
    CHECK_EQ_INT(t.auth.result[RC_JWT_OK], 1);
}

TEST(identity_bounds)
{
    setup();
    fake f[2];
    fake_init(&f[0], 1);
    fake_init(&f[1], 2);
    auth(&f[0], "{\"exp\":4102444800}"); /* no sub */
    CHECK_EQ_INT(f[0].closed, RC_CLOSE_UNAUTHENTICATED);
    CHECK_EQ_INT(t.auth.result[RC_IDENT_NO_SUB], 1);
    /* 65 grants: one over the bound */
    char payload[4096];
    int n = snprintf(payload, sizeof(payload), "{\"sub\":\"d\",\"rooms\":{");
    for (int i = 0; i <= RC_IDENT_MAX_GRANTS; i++)
        n += snprintf(payload + n, sizeof(payload) - (size_t)n, "%s\"r%d\":\"r\"", i ? "," : "", i);
    snprintf(payload + n, sizeof(payload) - (size_t)n, "}}");
    auth(&f[1], payload);
    CHECK_EQ_INT(f[1].closed, RC_CLOSE_UNAUTHENTICATED);
    CHECK_EQ_INT(t.auth.result[RC_IDENT_BAD_GRANTS], 1);
    teardown(f, 2);
}

TEST(user_spliced_and_forgeries_cut)
{
    setup();
    fake f[2];
    fake_init(&f[0], 1);
    fake_init(&f[1], 2);
    auth(&f[0], "{\"sub\":\"eve\"}");
    send(&f[0], "{\"type\":\"join\",\"room\":\"lobby\"}");
    send(&f[1], "{\"type\":\"join\",\"room\":\"lobby\"}");
    send(&f[0], "{\"user\":\"mallory\",\"t\":1}");
    CHECK(strcmp(f[1].last, "{\"t\":1,\"room\":\"lobby\",\"user\":\"eve\",\"client_id\":1,"
                            "\"msg_id\":1}") == 0);
    send(&f[1], "{\"t\":2,\"user\":\"eve\"}"); /* anonymous: its "user" is removed */
    CHECK(strcmp(f[0].last, "{\"t\":2,\"room\":\"lobby\",\"client_id\":2,\"msg_id\":2}") == 0);
    teardown(f, 2);
}

TEST(rules_and_grants)
{
    setup();
    fake f[3];
    for (int i = 0; i < 3; i++) fake_init(&f[i], (uint64_t)i + 1);
    auth(&f[1], "{\"sub\":\"u\"}");
    auth(&f[2], "{\"sub\":\"g\",\"rooms\":{\"vip:*\":\"rw\",\"vip:ro\":\"r\"}}");
    send(&f[0], "{\"type\":\"join\",\"room\":\"members:1\"}");
    CHECK(HAS(&f[0], "\"code\":\"unauthenticated\""));
    send(&f[1], "{\"type\":\"join\",\"room\":\"members:1\"}");
    CHECK(HAS(&f[1], "\"type\":\"joined\""));
    send(&f[1], "{\"type\":\"join\",\"room\":\"vip:1\"}");
    CHECK(HAS(&f[1], "\"code\":\"forbidden\""));
    send(&f[2], "{\"type\":\"join\",\"room\":\"vip:ro\"}");
    CHECK(HAS(&f[2], "\"type\":\"joined\""));
    send(&f[2], "{\"room\":\"vip:ro\",\"x\":1}");
    CHECK(HAS(&f[2], "\"code\":\"forbidden\"") && HAS(&f[2], "\"room\":\"vip:ro\""));
    uint8_t bin[] = {6, 'v', 'i', 'p', ':', 'r', 'o', 'x'};
    CHECK_EQ_INT(rc_roomproto_binary(&t, &f[2].ep, bin, sizeof(bin)), -1);
    send(&f[2], "{\"type\":\"join\",\"room\":\"vip:rw\"}");
    send(&f[2], "{\"room\":\"vip:rw\",\"x\":2}");
    CHECK(HAS(&f[2], "\"x\":2") && HAS(&f[2], "\"user\":\"g\""));
    CHECK_EQ_INT(t.auth.refused[RC_PERM_JOIN][RC_PERM_UNAUTHENTICATED], 1);
    CHECK_EQ_INT(t.auth.refused[RC_PERM_JOIN][RC_PERM_FORBIDDEN], 1);
    CHECK_EQ_INT(t.auth.refused[RC_PERM_PUBLISH][RC_PERM_FORBIDDEN], 2);
    CHECK_EQ_INT(t.stats.err[RC_RERR_FORBIDDEN], 3);
    CHECK_EQ_INT(t.stats.err[RC_RERR_UNAUTHENTICATED], 1);
    teardown(f, 3);
}

TEST(open_rules_check_nothing)
{
    setup();
    rc_rooms_set_perm(&t, NULL);
    CHECK(t.perm_open);
    rc_rooms_set_perm(&t, &rules);
    CHECK(!t.perm_open);
    teardown(NULL, 0);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    loop = rc_loop_new();
    RUN(auth_message_and_refresh);
    RUN(pending_needs_auth_first);
    RUN(identity_bounds);
    RUN(user_spliced_and_forgeries_cut);
    RUN(rules_and_grants);
    RUN(open_rules_check_nothing);
    rc_loop_free(loop);
    UNIT_MAIN_END("test_ident");
}
