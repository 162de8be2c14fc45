/* test_broker.c — tests for src/broker/broker.c without sockets: worker messages go in as
 * ROUTER frames built with the codec's worker-side encoders, everything the broker sends is
 * recorded (worker port, client port, disconnects, moved keys), origins record their replies
 * and failures, and time is a fake clock passed to every call.
 *
 * Covered: LRU order across workers, queueing while no worker, zero-downtime restarts (all
 * workers gone and back within the timeout: nothing lost), heartbeats and expiry, a worker dying
 * mid-request (retry once, then worker_lost; at-most-once), late replies dropped and counted,
 * MDP DISCONNECT cases, MMI, sticky keys and moves, overloaded, timeouts (queued and in
 * flight), origin gone, no_service, too_large, and the ZeroMQ client port.
 */
#include "unit.h"

#include "broker/broker.h"

#define MS 1000000ull
#define SEC (1000 * MS)
#define T0 (1000 * SEC)
#define F(s) mdp_frame_of((s), strlen(s))
#define E mdp_frame_of(NULL, 0)
#define NOKEY E

/* ---- recorders --------------------------------------------------------------------------- */

#define MAXF 16
typedef struct rec {
    int port;                /* 0 worker port, 1 client port */
    size_t n;                /* frames */
    size_t len[MAXF];
    char f[MAXF][64];        /* frame bytes (tests keep them short), NUL-terminated */
} rec;

static rec sent[512];
static size_t nsent;
static char gone[32][64], moved[32][64];
static size_t ngone, nmoved;

static void rec_msg(int port, const mdp_frame *f, size_t n)
{
    if (nsent == 512) return;
    rec *r = &sent[nsent++];
    r->port = port;
    r->n = n < MAXF ? n : MAXF;
    for (size_t i = 0; i < r->n; i++) {
        size_t l = f[i].len < 63 ? f[i].len : 63;
        if (l) memcpy(r->f[i], f[i].p, l);
        r->f[i][l] = 0;
        r->len[i] = f[i].len;
    }
}

static void cb_send_worker(void *arg, const mdp_frame *f, size_t n) { (void)arg; rec_msg(0, f, n); }
static void cb_send_client(void *arg, const mdp_frame *f, size_t n) { (void)arg; rec_msg(1, f, n); }
static void cb_disconnect(void *arg, mdp_frame id)
{
    (void)arg;
    if (ngone < 32) snprintf(gone[ngone++], 64, "%.*s", (int)id.len, (const char *)id.p);
}
static void cb_moved(void *arg, mdp_frame svc, mdp_frame key)
{
    (void)arg;
    if (nmoved < 32)
        snprintf(moved[nmoved++], 64, "%.*s/%.*s", (int)svc.len, (const char *)svc.p, (int)key.len,
                 (const char *)key.p);
}

/* An origin that records outcomes: "ok:<id>:<first body frame>" or "fail:<id>:<code>". */
typedef struct torigin {
    brk_origin o;
    char out[64][64];
    size_t n;
} torigin;

static void o_reply(brk_origin *o, uint64_t id, mdp_frame s, const mdp_frame *b, size_t nb)
{
    torigin *t = (torigin *)o;
    (void)s;
    if (t->n < 64)
        snprintf(t->out[t->n++], 64, "ok:%llu:%.*s", (unsigned long long)id,
                 nb ? (int)b[0].len : 0, nb ? (const char *)b[0].p : "");
}
static void o_fail(brk_origin *o, uint64_t id, enum brk_code c)
{
    torigin *t = (torigin *)o;
    if (t->n < 64) snprintf(t->out[t->n++], 64, "fail:%llu:%s", (unsigned long long)id, brk_code_name(c));
}
static const brk_origin_ops oops = {o_reply, o_fail};

/* ---- fixture ----------------------------------------------------------------------------- */

static brk_broker B;
static uint64_t now;
static torigin O1, O2;

static void fx(const brk_params *p)
{
    memset(&O1, 0, sizeof(O1));
    memset(&O2, 0, sizeof(O2));
    brk_origin_init(&O1.o, &oops, NULL);
    brk_origin_init(&O2.o, &oops, NULL);
    nsent = ngone = nmoved = 0;
    now = T0;
    brk_callbacks cb = {NULL, cb_send_worker, cb_disconnect, cb_send_client, cb_moved};
    brk_init(&B, p, &cb, now);
}

static void fx_done(void) { brk_release(&B); }

/* Worker side: identity + what the worker sends. */
static void w_in(const char *id, const mdp_frame *f, int n)
{
    mdp_frame all[MAXF];
    all[0] = F(id);
    for (int i = 0; i < n; i++) all[i + 1] = f[i];
    brk_worker_input(&B, all, (size_t)n + 1, now);
}

static void ready(enum mdp_proto p, const char *id, const char *svc)
{
    mdp_frame f[MAXF];
    w_in(id, f, mdp_enc_worker_ready(f, MAXF, p, F(svc)));
}

/* The request token of the last request sent to worker id (proto p), "" when none. */
static const rec *last_to(const char *id)
{
    for (size_t i = nsent; i-- > 0;)
        if (sent[i].port == 0 && strcmp(sent[i].f[0], id) == 0) return &sent[i];
    return NULL;
}

static int tok_index(enum mdp_proto p) { return p == MDP_PROTO_LRU ? 2 : p == MDP_PROTO_PPP ? 1 : 4; }

/* reply makes worker id answer the last request it was sent, with body. Returns 0 when there
 * was no request to answer. */
static int reply(enum mdp_proto p, const char *id, const char *body)
{
    const rec *r = last_to(id);
    int ti = tok_index(p);
    if (!r || r->n <= (size_t)ti + 1 || r->len[ti] != BRK_TOKEN_LEN) return 0;
    mdp_frame b = F(body), f[MAXF];
    int n = mdp_enc_worker_reply(f, MAXF, p, mdp_frame_of(r->f[ti], BRK_TOKEN_LEN), &b, 1);
    w_in(id, f, n);
    return 1;
}

/* The body (first body frame) of the last request sent to id, "" when none. */
static const char *req_body(enum mdp_proto p, const char *id)
{
    const rec *r = last_to(id);
    int bi = tok_index(p) + 2;
    return r && r->n > (size_t)bi ? r->f[bi] : "";
}

static bool request(torigin *o, uint64_t id, const char *svc, const char *body, const char *key)
{
    mdp_frame b = F(body);
    return brk_request(&B, &o->o, id, F(svc), &b, 1, key ? F(key) : NOKEY, now);
}

static void advance(uint64_t ns)
{
    /* Step through every deadline in between, as the loop's timer would. */
    uint64_t end = now + ns;
    for (;;) {
        uint64_t d = brk_next_deadline(&B);
        if (d > end) break;
        now = d > now ? d : now;
        brk_tick(&B, now);
    }
    now = end;
    brk_tick(&B, now);
}

static const brk_service *svc(const char *name) { return brk_service_find(&B, F(name)); }

/* ---- tests ------------------------------------------------------------------------------- */

TEST(lru_order_across_workers)
{
    fx(NULL);
    ready(MDP_PROTO_LRU, "w1", "");
    ready(MDP_PROTO_LRU, "w2", "");
    ready(MDP_PROTO_LRU, "w3", "");
    CHECK_EQ_INT(svc("default")->nidle, 3);
    for (int i = 1; i <= 3; i++) {
        char b[16];
        snprintf(b, sizeof(b), "r%d", i);
        CHECK(request(&O1, (uint64_t)i, "", b, NULL));
    }
    CHECK(strcmp(req_body(MDP_PROTO_LRU, "w1"), "r1") == 0);
    CHECK(strcmp(req_body(MDP_PROTO_LRU, "w2"), "r2") == 0);
    CHECK(strcmp(req_body(MDP_PROTO_LRU, "w3"), "r3") == 0);
    /* w2 then w1 become free: w2 is now the least recently used. */
    CHECK(reply(MDP_PROTO_LRU, "w2", "a2"));
    CHECK(reply(MDP_PROTO_LRU, "w1", "a1"));
    CHECK_EQ_INT(O1.n, 2);
    CHECK(strcmp(O1.out[0], "ok:2:a2") == 0);
    CHECK(strcmp(O1.out[1], "ok:1:a1") == 0);
    request(&O1, 4, "default", "r4", NULL);
    CHECK(strcmp(req_body(MDP_PROTO_LRU, "w2"), "r4") == 0);
    request(&O1, 5, "default", "r5", NULL);
    CHECK(strcmp(req_body(MDP_PROTO_LRU, "w1"), "r5") == 0);
    /* One in flight per worker: the sixth waits. */
    request(&O1, 6, "default", "r6", NULL);
    CHECK_EQ_INT(svc("default")->qlen, 1);
    CHECK(reply(MDP_PROTO_LRU, "w3", "a3"));
    CHECK(strcmp(req_body(MDP_PROTO_LRU, "w3"), "r6") == 0);
    CHECK_EQ_INT(svc("default")->qlen, 0);
    CHECK_EQ_INT(svc("default")->st.ok, 3);
    fx_done();
}

TEST(queue_while_no_worker)
{
    fx(NULL);
    CHECK(request(&O1, 1, "echo", "x", NULL)); /* start-up grace: queued */
    CHECK(request(&O1, 2, "echo", "y", NULL));
    CHECK_EQ_INT(svc("echo")->qlen, 2);
    now += SEC;
    ready(MDP_PROTO_MDP, "m1", "echo");
    CHECK(strcmp(req_body(MDP_PROTO_MDP, "m1"), "x") == 0);
    CHECK(reply(MDP_PROTO_MDP, "m1", "X"));
    CHECK(strcmp(req_body(MDP_PROTO_MDP, "m1"), "y") == 0);
    CHECK(reply(MDP_PROTO_MDP, "m1", "Y"));
    CHECK_EQ_INT(O1.n, 2);
    CHECK(strcmp(O1.out[1], "ok:2:Y") == 0);
    fx_done();
}

/* Every worker goes away at once with requests in flight and queued; new workers come back
 * within the timeout; every request is answered exactly once. */
TEST(zero_downtime_full_restart)
{
    fx(NULL);
    ready(MDP_PROTO_MDP, "a", "game");
    ready(MDP_PROTO_MDP, "b", "game");
    for (uint64_t i = 1; i <= 6; i++) request(&O1, i, "game", "q", NULL);
    CHECK_EQ_INT(svc("game")->qlen, 4);
    brk_worker_gone(&B, F("a"), now);
    brk_worker_gone(&B, F("b"), now);
    CHECK_EQ_INT(svc("game")->nworkers, 0);
    CHECK_EQ_INT(svc("game")->qlen, 6);  /* the two in flight are back in front */
    CHECK_EQ_INT(svc("game")->st.retries, 2);
    advance(2 * SEC);
    CHECK_EQ_INT(O1.n, 0);
    ready(MDP_PROTO_MDP, "a2", "game");
    ready(MDP_PROTO_MDP, "b2", "game");
    for (int k = 0; k < 6; k++) {
        const char *w = (k % 2) ? "b2" : "a2";
        CHECK(reply(MDP_PROTO_MDP, w, "done"));
    }
    CHECK_EQ_INT(O1.n, 6);
    for (size_t i = 0; i < 6; i++) CHECK(strncmp(O1.out[i], "ok:", 3) == 0);
    CHECK_EQ_INT(svc("game")->st.ok, 6);
    CHECK_EQ_INT(svc("game")->qlen, 0);
    fx_done();
}

TEST(heartbeats_and_expiry)
{
    fx(NULL);
    ready(MDP_PROTO_PPP, "p", "");
    ready(MDP_PROTO_MDP, "m", "svc");
    ready(MDP_PROTO_LRU, "l", "");
    CHECK_EQ_INT(brk_next_deadline(&B), T0 + SEC);
    advance(SEC);
    const rec *r = last_to("p");
    CHECK(r && r->n == 2 && r->len[1] == 1 && r->f[1][0] == 2);
    /* The PPP worker keeps talking, the MDP one goes silent. */
    mdp_frame hb = mdp_frame_of("\x02", 1);
    for (int i = 0; i < 14; i++) { /* to 8 s: past 3 x 2.5 s */
        advance(SEC / 2);
        w_in("p", &hb, 1);
    }
    r = last_to("m");
    CHECK(r && r->n == 4 && r->f[3][0] == 4);  /* MDP heartbeats went out (2.5 s) */
    CHECK_EQ_INT(ngone, 1);                   /* 3 x 2.5 s have passed for "m" */
    CHECK(strcmp(gone[0], "m") == 0);
    CHECK_EQ_INT(B.st.workers_expired, 1);
    CHECK(svc("svc")->nworkers == 0);
    CHECK(svc("default")->nworkers == 2);     /* the LRU worker never expires */
    advance(100 * SEC);
    CHECK_EQ_INT(svc("default")->nworkers, 1);
    CHECK(last_to("l") == NULL);              /* and gets no heartbeats */
    fx_done();
}

TEST(death_mid_request_retry_once)
{
    fx(NULL);
    ready(MDP_PROTO_PPP, "p1", "");
    ready(MDP_PROTO_PPP, "p2", "");
    request(&O1, 1, "", "job", NULL);             /* to p1 */
    request(&O1, 2, "", "other", NULL);           /* to p2 */
    brk_worker_gone(&B, F("p1"), now);
    CHECK_EQ_INT(svc("default")->qlen, 1);        /* p2 is busy */
    CHECK(reply(MDP_PROTO_PPP, "p2", "A2"));
    CHECK(strcmp(req_body(MDP_PROTO_PPP, "p2"), "job") == 0); /* the retry */
    brk_worker_gone(&B, F("p2"), now);            /* second loss: no more retries */
    CHECK_EQ_INT(O1.n, 2);
    CHECK(strcmp(O1.out[1], "fail:1:worker_lost") == 0);
    CHECK_EQ_INT(svc("default")->st.retries, 1);
    CHECK_EQ_INT(svc("default")->st.failed[BRK_WORKER_LOST], 1);
    fx_done();
}

TEST(at_most_once)
{
    fx(NULL);
    CHECK_EQ_INT(brk_service_set_at_most_once(&B, F("pay"), true), 0);
    ready(MDP_PROTO_MDP, "m1", "pay");
    ready(MDP_PROTO_MDP, "m2", "pay");
    request(&O1, 7, "pay", "charge", NULL);
    brk_worker_gone(&B, F("m1"), now);
    CHECK_EQ_INT(O1.n, 1);
    CHECK(strcmp(O1.out[0], "fail:7:worker_lost") == 0);
    CHECK(last_to("m2") == NULL || strcmp(req_body(MDP_PROTO_MDP, "m2"), "charge") != 0);
    fx_done();
}

/* A worker declared dead answers after all: dropped and counted, the retry's answer wins. */
TEST(late_reply_dropped)
{
    fx(NULL);
    ready(MDP_PROTO_PPP, "p1", "");
    request(&O1, 1, "", "job", NULL);
    const rec *r = last_to("p1");
    CHECK(r);
    char tok[BRK_TOKEN_LEN];
    memcpy(tok, r->f[1], BRK_TOKEN_LEN);
    advance(3 * SEC);                              /* p1 expires */
    CHECK_EQ_INT(B.st.workers_expired, 1);
    CHECK_EQ_INT(svc("default")->qlen, 1);
    ready(MDP_PROTO_PPP, "p2", "");
    CHECK(strcmp(req_body(MDP_PROTO_PPP, "p2"), "job") == 0);
    mdp_frame b = F("stale"), f[MAXF];
    w_in("p1", f, mdp_enc_worker_reply(f, MAXF, MDP_PROTO_PPP, mdp_frame_of(tok, BRK_TOKEN_LEN), &b, 1));
    CHECK_EQ_INT(O1.n, 0);
    CHECK_EQ_INT(svc("default")->st.late_dropped, 1);
    CHECK(reply(MDP_PROTO_PPP, "p2", "fresh"));
    CHECK_EQ_INT(O1.n, 1);
    CHECK(strcmp(O1.out[0], "ok:1:fresh") == 0);
    /* The same stale reply again, now that the request is gone. */
    w_in("p1", f, mdp_enc_worker_reply(f, MAXF, MDP_PROTO_PPP, mdp_frame_of(tok, BRK_TOKEN_LEN), &b, 1));
    CHECK_EQ_INT(O1.n, 1);
    CHECK_EQ_INT(B.st.late_unknown, 1);
    /* A reply with a wrong token from a busy worker is not delivered either. */
    request(&O1, 2, "", "job2", NULL);
    w_in("p2", f, mdp_enc_worker_reply(f, MAXF, MDP_PROTO_PPP, F("XXXXXXXX"), &b, 1));
    CHECK_EQ_INT(B.st.bad_address, 1);
    CHECK_EQ_INT(O1.n, 1);
    fx_done();
}

static int disconnects_to(const char *id)
{
    int n = 0;
    for (size_t i = 0; i < nsent; i++)
        if (sent[i].port == 0 && strcmp(sent[i].f[0], id) == 0 && sent[i].n == 4 &&
            strcmp(sent[i].f[2], "MDPW01") == 0 && sent[i].f[3][0] == 5)
            n++;
    return n;
}

TEST(mdp_disconnect_cases)
{
    fx(NULL);
    /* READY twice. */
    ready(MDP_PROTO_MDP, "m", "echo");
    ready(MDP_PROTO_MDP, "m", "echo");
    CHECK_EQ_INT(disconnects_to("m"), 1);
    CHECK_EQ_INT(svc("echo")->nworkers, 0);
    /* REPLY with nothing in flight. */
    ready(MDP_PROTO_MDP, "m", "echo");
    mdp_frame b = F("x"), f[MAXF];
    w_in("m", f, mdp_enc_worker_reply(f, MAXF, MDP_PROTO_MDP, F("AAAAAAAA"), &b, 1));
    CHECK_EQ_INT(disconnects_to("m"), 2);
    /* HEARTBEAT before READY. */
    mdp_frame hb[] = {E, F("MDPW01"), mdp_frame_of("\x04", 1)};
    w_in("n", hb, 3);
    CHECK_EQ_INT(disconnects_to("n"), 1);
    /* Registering mmi.*. */
    ready(MDP_PROTO_MDP, "q", "mmi.service");
    CHECK_EQ_INT(disconnects_to("q"), 1);
    CHECK_EQ_INT(B.st.mmi_service_rejected, 1);
    /* A malformed message from a registered worker. */
    ready(MDP_PROTO_MDP, "r", "echo");
    mdp_frame bad[] = {E, F("MDPW01"), mdp_frame_of("\x09", 1)};
    w_in("r", bad, 3);
    CHECK_EQ_INT(disconnects_to("r"), 1);
    CHECK_EQ_INT(B.st.bad_worker[-MDP_E_COMMAND], 1);
    /* DISCONNECT from the worker: forgotten, nothing sent back. */
    ready(MDP_PROTO_MDP, "s", "echo");
    mdp_frame dc[] = {E, F("MDPW01"), mdp_frame_of("\x05", 1)};
    w_in("s", dc, 3);
    CHECK_EQ_INT(disconnects_to("s"), 0);
    CHECK_EQ_INT(svc("echo")->nworkers, 0);
    CHECK_EQ_INT(B.st.unexpected, 3);
    /* A busy worker's REPLY for another request: DISCONNECT, and its request is retried once
     * on another worker. */
    ready(MDP_PROTO_MDP, "t", "echo");
    request(&O1, 7, "echo", "job7", NULL);
    w_in("t", f, mdp_enc_worker_reply(f, MAXF, MDP_PROTO_MDP, F("ZZZZZZZZ"), &b, 1));
    CHECK_EQ_INT(disconnects_to("t"), 1);
    CHECK_EQ_INT(B.st.bad_address, 1);
    CHECK_EQ_INT(svc("echo")->st.retries, 1);
    ready(MDP_PROTO_MDP, "u", "echo");
    CHECK(strcmp(req_body(MDP_PROTO_MDP, "u"), "job7") == 0);
    /* PPP and LRU workers are not disconnected for bad input. */
    ready(MDP_PROTO_PPP, "p", "");
    mdp_frame pb = mdp_frame_of("\x07", 1);
    w_in("p", &pb, 1);
    CHECK_EQ_INT(svc("default")->nworkers, 1);
    fx_done();
}

TEST(mmi)
{
    fx(NULL);
    ready(MDP_PROTO_MDP, "m", "echo");
    mdp_frame q = F("echo"), q2 = F("nope");
    brk_request(&B, &O1.o, 1, F("mmi.service"), &q, 1, NOKEY, now);
    brk_request(&B, &O1.o, 2, F("mmi.service"), &q2, 1, NOKEY, now);
    brk_request(&B, &O1.o, 3, F("mmi.other"), &q, 1, NOKEY, now);
    CHECK_EQ_INT(O1.n, 3);
    CHECK(strcmp(O1.out[0], "ok:1:200") == 0);
    CHECK(strcmp(O1.out[1], "ok:2:404") == 0);
    CHECK(strcmp(O1.out[2], "ok:3:501") == 0);
    /* Through the client port. */
    mdp_frame c[] = {F("cli"), E, F("MDPC01"), F("mmi.service"), F("echo")};
    brk_client_input(&B, c, 5, now);
    const rec *r = &sent[nsent - 1];
    CHECK_EQ_INT(r->port, 1);
    CHECK_EQ_INT(r->n, 5);
    CHECK(strcmp(r->f[0], "cli") == 0 && r->len[1] == 0 && strcmp(r->f[2], "MDPC01") == 0);
    CHECK(strcmp(r->f[3], "mmi.service") == 0 && strcmp(r->f[4], "200") == 0);
    fx_done();
}

TEST(client_port)
{
    fx(NULL);
    ready(MDP_PROTO_LRU, "w", "");
    ready(MDP_PROTO_MDP, "m", "echo");
    mdp_frame l[] = {F("client-1"), E, F("HELLO")};
    brk_client_input(&B, l, 3, now);
    CHECK(strcmp(req_body(MDP_PROTO_LRU, "w"), "HELLO") == 0);
    CHECK(reply(MDP_PROTO_LRU, "w", "OK"));
    const rec *r = &sent[nsent - 1];
    CHECK(r->port == 1 && r->n == 3 && strcmp(r->f[0], "client-1") == 0 && r->len[1] == 0);
    CHECK(strcmp(r->f[2], "OK") == 0);
    mdp_frame d[] = {F("c2"), E, F("MDPC01"), F("echo"), F("ping")};
    brk_client_input(&B, d, 5, now);
    CHECK(strcmp(req_body(MDP_PROTO_MDP, "m"), "ping") == 0);
    CHECK(reply(MDP_PROTO_MDP, "m", "pong"));
    r = &sent[nsent - 1];
    CHECK(r->port == 1 && r->n == 5 && strcmp(r->f[2], "MDPC01") == 0);
    CHECK(strcmp(r->f[3], "echo") == 0 && strcmp(r->f[4], "pong") == 0);
    mdp_frame bad[] = {F("c3"), F("x")};
    brk_client_input(&B, bad, 2, now);
    CHECK_EQ_INT(B.st.bad_client[-MDP_E_FRAMES], 1);
    fx_done();
}

TEST(sticky_keys_and_moves)
{
    fx(NULL);
    ready(MDP_PROTO_MDP, "a", "rooms");
    ready(MDP_PROTO_MDP, "b", "rooms");
    request(&O1, 1, "rooms", "r1-1", "room1");      /* a (LRU), binds room1 */
    request(&O1, 2, "rooms", "r2-1", "room2");      /* b, binds room2 */
    request(&O1, 3, "rooms", "r1-2", "room1");      /* waits on a */
    request(&O1, 4, "rooms", "r1-3", "room1");
    CHECK_EQ_INT(B.w_head->sqlen, 2);
    CHECK(reply(MDP_PROTO_MDP, "b", "x"));          /* b free: room1 still stays with a */
    CHECK_EQ_INT(svc("rooms")->nidle, 1);
    CHECK(reply(MDP_PROTO_MDP, "a", "y"));
    CHECK(strcmp(req_body(MDP_PROTO_MDP, "a"), "r1-2") == 0);
    /* a dies holding r1-2 with r1-3 waiting: room1 moves, order is kept on b. */
    brk_worker_gone(&B, F("a"), now);
    CHECK_EQ_INT(nmoved, 1);
    CHECK(strcmp(moved[0], "rooms/room1") == 0);
    CHECK(strcmp(req_body(MDP_PROTO_MDP, "b"), "r1-2") == 0);
    CHECK(reply(MDP_PROTO_MDP, "b", "z"));
    CHECK(strcmp(req_body(MDP_PROTO_MDP, "b"), "r1-3") == 0);
    CHECK(reply(MDP_PROTO_MDP, "b", "w"));
    CHECK_EQ_INT(O1.n, 4);
    CHECK(strcmp(O1.out[3], "ok:4:w") == 0);
    /* room1 is now b's: a new worker does not take it. */
    ready(MDP_PROTO_MDP, "c", "rooms");
    request(&O1, 5, "rooms", "r1-4", "room1");
    CHECK(strcmp(req_body(MDP_PROTO_MDP, "b"), "r1-4") == 0);
    brk_sticky_forget(&B, F("rooms"), F("room1"));
    fx_done();
}

/* The only worker of a key dies with requests of the key queued; a new worker takes the key,
 * and requests of the key that arrive while it works on the first must come after the queued
 * ones (tests/broker/test_rooms.py saw [0,1,2,11..19,3..10]). */
TEST(sticky_order_kept_when_a_new_worker_takes_the_key)
{
    fx(NULL);
    ready(MDP_PROTO_MDP, "a", "rooms");
    request(&O1, 1, "rooms", "m1", "room");
    request(&O1, 2, "rooms", "m2", "room");
    request(&O1, 3, "rooms", "m3", "room");
    brk_worker_gone(&B, F("a"), now);               /* m1..m3 back in the service queue */
    ready(MDP_PROTO_MDP, "b", "rooms");             /* takes m1, and the key */
    CHECK(strcmp(req_body(MDP_PROTO_MDP, "b"), "m1") == 0);
    request(&O1, 4, "rooms", "m4", "room");         /* arrives while b works on m1 */
    const char *want[] = {"m2", "m3", "m4"};
    for (int i = 0; i < 3; i++) {
        CHECK(reply(MDP_PROTO_MDP, "b", "ok"));
        CHECK(strcmp(req_body(MDP_PROTO_MDP, "b"), want[i]) == 0);
    }
    CHECK(reply(MDP_PROTO_MDP, "b", "ok"));
    CHECK_EQ_INT(O1.n, 4);
    brk_sticky_forget(&B, F("rooms"), F("room"));
    fx_done();
}

TEST(overloaded_timeout_no_service)
{
    brk_params p;
    brk_params_default(&p);
    p.queue_max = 2;
    p.service_grace_ns = 10 * SEC;
    fx(&p);
    request(&O1, 1, "s", "a", NULL);
    request(&O1, 2, "s", "b", NULL);
    CHECK(!request(&O1, 3, "s", "c", NULL));
    CHECK(strcmp(O1.out[0], "fail:3:overloaded") == 0);
    advance(5 * SEC);
    CHECK_EQ_INT(O1.n, 3);
    CHECK(strcmp(O1.out[1], "fail:1:timeout") == 0);
    CHECK(strcmp(O1.out[2], "fail:2:timeout") == 0);
    advance(10 * SEC);
    /* Past the grace, a service never served by a worker is unknown. */
    CHECK(!request(&O1, 4, "never", "x", NULL));
    CHECK(strcmp(O1.out[3], "fail:4:no_service") == 0);
    CHECK(!request(&O1, 5, "s", "x", NULL));
    CHECK(strcmp(O1.out[4], "fail:5:no_service") == 0);
    /* A service whose workers left recently still queues. */
    ready(MDP_PROTO_MDP, "m", "t");
    brk_worker_gone(&B, F("m"), now);
    advance(SEC);
    CHECK(request(&O1, 6, "t", "x", NULL));
    /* too_large */
    mdp_frame many[BRK_MAX_FRAMES + 1];
    for (size_t i = 0; i <= BRK_MAX_FRAMES; i++) many[i] = F("x");
    CHECK(!brk_request(&B, &O1.o, 7, F("t"), many, BRK_MAX_FRAMES + 1, NOKEY, now));
    CHECK(strcmp(O1.out[5], "fail:7:too_large") == 0);
    fx_done();
}

/* A request that times out at its worker leaves the worker busy until it answers; that answer
 * is dropped and counted. */
TEST(timeout_in_flight)
{
    fx(NULL);
    ready(MDP_PROTO_LRU, "w", "");
    request(&O1, 1, "", "slow", NULL);
    advance(6 * SEC);
    CHECK_EQ_INT(O1.n, 1);
    CHECK(strcmp(O1.out[0], "fail:1:timeout") == 0);
    request(&O1, 2, "", "next", NULL);
    CHECK_EQ_INT(svc("default")->qlen, 1);
    CHECK(reply(MDP_PROTO_LRU, "w", "late"));
    CHECK_EQ_INT(svc("default")->st.late_dropped, 1);
    CHECK(strcmp(req_body(MDP_PROTO_LRU, "w"), "next") == 0);
    CHECK(reply(MDP_PROTO_LRU, "w", "ok"));
    CHECK(strcmp(O1.out[1], "ok:2:ok") == 0);
    fx_done();
}

TEST(origin_gone)
{
    fx(NULL);
    ready(MDP_PROTO_LRU, "w", "");
    request(&O1, 1, "", "a", NULL);
    request(&O1, 2, "", "b", NULL);
    request(&O2, 3, "", "c", NULL);
    brk_origin_gone(&B, &O1.o);
    CHECK_EQ_INT(O1.n, 0);
    CHECK_EQ_INT(svc("default")->st.cancelled, 2);
    CHECK_EQ_INT(svc("default")->qlen, 1);
    CHECK(reply(MDP_PROTO_LRU, "w", "for-a"));      /* dropped */
    CHECK_EQ_INT(O1.n, 0);
    CHECK(strcmp(req_body(MDP_PROTO_LRU, "w"), "c") == 0);
    CHECK(reply(MDP_PROTO_LRU, "w", "for-c"));
    CHECK(strcmp(O2.out[0], "ok:3:for-c") == 0);
    advance(10 * SEC);
    CHECK_EQ_INT(O1.n, 0);
    fx_done();
}

/* A seed or PPP worker that announces itself again restarted; a new protocol takes over. */
TEST(reannounce)
{
    fx(NULL);
    ready(MDP_PROTO_PPP, "p", "");
    request(&O1, 1, "", "a", NULL);
    ready(MDP_PROTO_PPP, "p", "");                  /* restarted: the request is sent again */
    CHECK_EQ_INT(svc("default")->st.retries, 1);
    CHECK(strcmp(req_body(MDP_PROTO_PPP, "p"), "a") == 0);
    ready(MDP_PROTO_MDP, "p", "echo");              /* another program took the identity */
    CHECK_EQ_INT(svc("default")->nworkers, 0);
    CHECK_EQ_INT(svc("echo")->nworkers, 1);
    /* An LRU worker's reply to an unknown broker registers it (the seed's behaviour). */
    mdp_frame b = F("x"), f[MAXF];
    w_in("l", f, mdp_enc_worker_reply(f, MAXF, MDP_PROTO_LRU, F("ZZZZZZZZ"), &b, 1));
    CHECK_EQ_INT(svc("default")->nworkers, 1);
    fx_done();
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(lru_order_across_workers);
    RUN(queue_while_no_worker);
    RUN(zero_downtime_full_restart);
    RUN(heartbeats_and_expiry);
    RUN(death_mid_request_retry_once);
    RUN(at_most_once);
    RUN(late_reply_dropped);
    RUN(mdp_disconnect_cases);
    RUN(mmi);
    RUN(client_port);
    RUN(sticky_keys_and_moves);
    RUN(sticky_order_kept_when_a_new_worker_takes_the_key);
    RUN(overloaded_timeout_no_service);
    RUN(timeout_in_flight);
    RUN(origin_gone);
    RUN(reannounce);
    UNIT_MAIN_END("test_broker");
}
