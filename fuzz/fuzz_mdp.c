/* fuzz_mdp.c — libFuzzer target for the broker's frame codec (src/codec/mdp.c) and, through
 * the same messages, the broker state machine (src/broker/broker.c).
 *
 * The input is a script of steps, so that sequences matter (registration, requests, replies,
 * deaths, timeouts):
 *   step = op u8, then for a message: nframes u8 (% 8), then per frame len u8 (% 24) + bytes
 *   op % 8 == 0..2: the message goes to the worker port (frame 0 replaced by one of 4
 *                   identities, so workers recur), parsed once with every hint first;
 *   op % 8 == 3:    the message goes to the client port;
 *   op % 8 == 4:    a request from one of two origins (frames 0/1: service, sticky key; the
 *                   rest is the body);
 *   op % 8 == 5:    advance the clock by (op >> 3) * 100 ms and tick;
 *   op % 8 == 6:    a worker identity disconnects; 7: an origin goes away.
 * Replies from workers with a valid token are made likely by rewriting a frame that is
 * exactly "TT" into the token of the last request sent to any worker. Checked on every step:
 *   - a parse that succeeds has views inside the input frames and a consistent frame count;
 *   - everything the broker sends parses back (worker messages as the broker->worker shape,
 *     client replies as a client reply), with the identity frame first;
 *   - every brk_request gets at most one outcome, and outcomes never exceed requests.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "codec/mdp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) \
    do {         \
        if (!(c)) abort(); \
    } while (0)

static uint8_t last_tok[BRK_TOKEN_LEN];
static bool have_tok;

static void on_send_worker(void *arg, const mdp_frame *f, size_t n)
{
    (void)arg;
    CHECK(n >= 2 && f[0].len > 0 && f[0].len <= MDP_ID_MAX);
    /* A request carries the token right before the empty delimiter. */
    for (size_t i = 1; i + 1 < n; i++)
        if (f[i].len == BRK_TOKEN_LEN && f[i + 1].len == 0) {
            memcpy(last_tok, f[i].p, BRK_TOKEN_LEN);
            have_tok = true;
            break;
        }
}

static void on_send_client(void *arg, const mdp_frame *f, size_t n)
{
    (void)arg;
    CHECK(n >= 2 && f[0].len > 0 && f[1].len == 0);
}

static void on_disconnect(void *arg, mdp_frame id) { (void)arg; CHECK(id.len > 0); }
static void on_moved(void *arg, mdp_frame s, mdp_frame k) { (void)arg; (void)s; CHECK(k.len > 0); }

typedef struct forigin {
    brk_origin o;
    uint64_t asked, answered;
    uint8_t seen[256];        /* outcomes per request id (ids are < 256) */
} forigin;

static void o_reply(brk_origin *o, uint64_t id, mdp_frame s, const mdp_frame *b, size_t n)
{
    forigin *f = (forigin *)o;
    (void)s;
    (void)b;
    CHECK(n <= BRK_MAX_FRAMES);
    CHECK(id < 256 && f->seen[id] == 0);
    f->seen[id] = 1;
    f->answered++;
}

static void o_fail(brk_origin *o, uint64_t id, enum brk_code c)
{
    forigin *f = (forigin *)o;
    CHECK((int)c >= 0 && c < BRK_CODE_COUNT);
    CHECK(id < 256 && f->seen[id] == 0);
    f->seen[id] = 1;
    f->answered++;
}

static const brk_origin_ops ops = {o_reply, o_fail};

static void check_parse(const mdp_frame *f, size_t n, int rc, const mdp_msg *m)
{
    if (rc != MDP_OK) return;
    CHECK(m->identity.p == f[0].p);
    if (m->nbody) CHECK(m->body >= f && m->body + m->nbody <= f + n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *ids[4] = {"w1", "w2", "w3", "w4"};
    brk_params p;
    brk_params_default(&p);
    p.queue_max = 4;
    p.ppp_heartbeat_ns = 100000000ull;
    p.mdp_heartbeat_ns = 250000000ull;
    p.request_timeout_ns = 1000000000ull;
    p.service_grace_ns = 2000000000ull;
    brk_callbacks cb = {NULL, on_send_worker, on_disconnect, on_send_client, on_moved};
    brk_broker b;
    uint64_t now = 1000000000ull;
    if (brk_init(&b, &p, &cb, now) != 0) abort();
    forigin o[2];
    memset(o, 0, sizeof(o));
    brk_origin_init(&o[0].o, &ops, NULL);
    brk_origin_init(&o[1].o, &ops, NULL);
    have_tok = false;
    uint64_t next_id = 0;

    size_t off = 0;
    mdp_frame f[8];
    while (off < size) {
        uint8_t op = data[off++];
        int kind = op % 8;
        if (kind == 5) {
            now += (uint64_t)(op >> 3) * 100000000ull;
            brk_tick(&b, now);
            CHECK(brk_next_deadline(&b) > now);
            continue;
        }
        if (kind == 6 || kind == 7) {
            if (off >= size) break;
            uint8_t x = data[off++];
            if (kind == 6) brk_worker_gone(&b, mdp_frame_of(ids[x % 4], 2), now);
            else brk_origin_gone(&b, &o[x % 2].o);
            continue;
        }
        if (off >= size) break;
        size_t n = data[off++] % 8;
        size_t i = 0;
        for (; i < n && off < size; i++) {
            size_t len = data[off++] % 24;
            if (len > size - off) len = size - off;
            f[i] = mdp_frame_of(data + off, len);
            off += len;
            if (len == 2 && memcmp(f[i].p, "TT", 2) == 0 && have_tok)
                f[i] = mdp_frame_of(last_tok, BRK_TOKEN_LEN);
        }
        n = i;
        mdp_msg m;
        if (kind <= 2) {
            if (n) f[0] = mdp_frame_of(ids[op >> 6], 2);
            for (int h = MDP_PROTO_NONE; h <= MDP_PROTO_MDP; h++)
                check_parse(f, n, mdp_parse_worker(f, n, (enum mdp_proto)h, &m), &m);
            brk_worker_input(&b, f, n, now);
        } else if (kind == 3) {
            check_parse(f, n, mdp_parse_client(f, n, &m), &m);
            brk_client_input(&b, f, n, now);
        } else {
            forigin *fo = &o[(op >> 3) & 1];
            if (next_id >= 256) continue;
            mdp_frame svc = n > 0 ? f[0] : mdp_frame_of(NULL, 0);
            mdp_frame key = n > 1 ? f[1] : mdp_frame_of(NULL, 0);
            fo->asked++;
            brk_request(&b, &fo->o, next_id++, svc, n > 2 ? f + 2 : NULL, n > 2 ? n - 2 : 0, key,
                        now);
        }
        for (int k = 0; k < 2; k++) CHECK(o[k].answered <= o[k].asked);
    }
    /* Drain: every request still pending must end by its deadline. */
    now += 2 * p.request_timeout_ns;
    brk_tick(&b, now);
    brk_release(&b);
    return 0;
}
