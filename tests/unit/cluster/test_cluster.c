/* Tests src/cluster/cluster.c against a private redis-server (redis_proc.h): sequencing through
 * the script, idempotency, two "nodes" (two rc_cluster in one process) seeing one order, reads
 * for recovery, subscription churn, NOSCRIPT, a killed subscription, Redis restarting (AOF).
 * Skips when redis-server is not installed. */
#include "cluster/cluster.h"

#include <hiredis/hiredis.h>

#include "cluster/redis_proc.h"
#include "unit.h"

static rproc srv;
static char url[200];
static int prefix_n;         /* each test uses its own key prefix: tests do not see each other */

#define MAXMSG 4096

typedef struct got {
    uint64_t id;             /* msg_id */
    char epoch[33];
    char payload[48];
    bool gap, regressed;
} got;

typedef struct node {
    rc_cluster *c;
    int avail_changes;       /* on_state calls */
    bool available;          /* last on_state value */
    int subscribed, resubscribed; /* on_subscribed calls (first / again) */
    int n;                   /* messages received */
    got msgs[MAXMSG];
    int npres;               /* presence changes of other nodes received */
    struct {
        uint64_t client_id, version;
        bool join;
        char node[33], info[48];
    } pres[16];
    int registered;          /* on_registered calls */
} node;

static void on_state(void *arg, bool available)
{
    node *d = arg;
    d->avail_changes++;
    d->available = available;
}

static void on_message(void *arg, const rc_cluster_msg *m)
{
    node *d = arg;
    if (d->n >= MAXMSG) return;
    got *g = &d->msgs[d->n++];
    g->id = m->msg_id;
    snprintf(g->epoch, sizeof(g->epoch), "%.*s", (int)m->epoch_len, m->epoch);
    snprintf(g->payload, sizeof(g->payload), "%.*s", (int)m->payload_len, (const char *)m->payload);
    g->gap = m->gap;
    g->regressed = m->regressed;
}

static void on_subscribed(void *arg, const char *room, size_t len, bool resub)
{
    node *d = arg;
    if (resub) d->resubscribed++;
    else d->subscribed++;
}

static void on_presence(void *arg, const char *room, size_t len, const rc_clwire_pres *e)
{
    node *d = arg;
    if (d->npres >= 16) return;
    d->pres[d->npres].client_id = e->client_id;
    d->pres[d->npres].version = e->version;
    d->pres[d->npres].join = e->join;
    snprintf(d->pres[d->npres].node, 33, "%.*s", (int)e->node_len, e->node);
    snprintf(d->pres[d->npres].info, 48, "%.*s", (int)e->info_len, e->info);
    d->npres++;
}

static void on_registered(void *arg) { ((node *)arg)->registered++; }

static char prefix[32];

/* Heartbeat settings for node_new; 0 keeps the defaults (1 s / 3 s), which a loaded machine
 * running sanitizer builds never trips by accident. */
static uint64_t hb_interval, hb_timeout;
static uint32_t max_inflight; /* for node_new; 0 keeps the default */
static uint64_t node_interval, node_ttl; /* node heartbeat for node_new; 0: the defaults */

static node *node_new(rc_loop *loop, uint32_t history)
{
    node *d = calloc(1, sizeof(*d));
    rc_cluster_cfg cfg = {
        .url = url, .prefix = prefix, .history_size = history, .room_ttl_s = 3600,
        .backoff_min_ns = 10 * RC_NS_PER_MS, .backoff_max_ns = 50 * RC_NS_PER_MS,
        .health_interval_ns = hb_interval, .health_timeout_ns = hb_timeout,
        .connect_timeout_ns = hb_timeout, .max_inflight = max_inflight,
        .node_interval_ns = node_interval, .node_ttl_ns = node_ttl,
    };
    rc_cluster_hooks h = {.on_state = on_state, .on_message = on_message,
                          .on_subscribed = on_subscribed, .on_presence = on_presence,
                          .on_registered = on_registered, .arg = d};
    char err[256];
    d->c = rc_cluster_new(loop, &cfg, &h, err, sizeof(err));
    if (!d->c) {
        fprintf(stderr, "rc_cluster_new: %s\n", err);
        free(d);
        return NULL;
    }
    return d;
}

static void node_free(node *d)
{
    if (!d) return;
    rc_cluster_free(d->c);
    free(d);
}

static void new_prefix(void) { snprintf(prefix, sizeof(prefix), "t%d", ++prefix_n); }

static bool avail1(void *arg) { return rc_cluster_available(((node *)arg)->c); }
static bool unavail1(void *arg) { return !rc_cluster_available(((node *)arg)->c); }

/* Publish results, recorded in call order. */
typedef struct pubres {
    int n, fails, dups;
    uint64_t ids[MAXMSG];
    char epoch[33];
    int last_status;
} pubres;

static void on_pub(void *arg, int status, const rc_cluster_seq *seq)
{
    pubres *p = arg;
    p->last_status = status;
    if (status < 0) {
        p->fails++;
        return;
    }
    if (p->n < MAXMSG) p->ids[p->n] = seq->msg_id;
    p->n++;
    if (seq->duplicate) p->dups++;
    snprintf(p->epoch, sizeof(p->epoch), "%s", seq->epoch);
}

static int publish(node *d, const char *room, const char *payload, const char *key, pubres *p)
{
    return rc_cluster_publish(d->c, room, strlen(room), payload, strlen(payload), key,
                              key ? strlen(key) : 0, on_pub, p);
}

static pubres *wait_pub;
static int wait_pub_n;
static bool pubs_done(void *arg) { return wait_pub->n + wait_pub->fails >= wait_pub_n; }

static bool run_pubs(rc_loop *loop, pubres *p, int n)
{
    wait_pub = p, wait_pub_n = n;
    return rproc_run_until(loop, pubs_done, NULL, 10000);
}

static node *wait_node;
static int wait_n;
static bool msgs_done(void *arg) { return wait_node->n >= wait_n; }
static bool run_msgs(rc_loop *loop, node *d, int n)
{
    wait_node = d, wait_n = n;
    return rproc_run_until(loop, msgs_done, NULL, 10000);
}

static bool is_subscribed(void *arg)
{
    node *d = arg;
    return rc_cluster_subscribed(d->c, "room", 4);
}

/* A read, recorded. */
typedef struct readres {
    int done, status;
    char epoch[33];
    uint64_t top, first;
    int n;
    uint64_t ids[MAXMSG];
    char payloads[64][48];
} readres;

static void on_read(void *arg, int status, const rc_cluster_range *r)
{
    readres *x = arg;
    x->done++;
    x->status = status;
    if (status < 0) return;
    snprintf(x->epoch, sizeof(x->epoch), "%s", rc_cluster_range_epoch(r));
    x->top = rc_cluster_range_top(r);
    x->first = rc_cluster_range_first(r);
    x->n = (int)rc_cluster_range_count(r);
    for (int i = 0; i < x->n && i < MAXMSG; i++) {
        rc_cluster_msg m;
        if (rc_cluster_range_get(r, (size_t)i, &m) < 0) {
            x->status = -1;
            return;
        }
        x->ids[i] = m.msg_id;
        if (i < 64)
            snprintf(x->payloads[i], 48, "%.*s", (int)m.payload_len, (const char *)m.payload);
    }
}

static bool read_done(void *arg) { return ((readres *)arg)->done > 0; }

static bool do_read(rc_loop *loop, node *d, const char *room, uint64_t after, uint32_t max,
                    readres *x)
{
    memset(x, 0, sizeof(*x));
    if (rc_cluster_read(d->c, room, strlen(room), after, max, on_read, x) < 0) return false;
    return rproc_run_until(loop, read_done, x, 10000) && x->status == 0;
}

static void flush_hook(rc_loop *loop, void *arg)
{
    node **nodes = arg;
    for (int i = 0; nodes[i]; i++) rc_cluster_flush(nodes[i]->c);
}

/* ---- tests ------------------------------------------------------------------------------- */

static bool nothing_in_flight(void *arg)
{
    rc_cluster_stats st;
    rc_cluster_stats_get(((node *)arg)->c, &st);
    return st.inflight == 0;
}

TEST(publish_sequences_and_reads_back)
{
    new_prefix();
    rc_loop *loop = rc_loop_new();
    /* no connection or node heartbeat among the writes counted below */
    hb_interval = node_interval = 3600 * RC_NS_PER_SEC;
    node_ttl = 7200 * RC_NS_PER_SEC;
    node *a = node_new(loop, 1000);
    hb_interval = node_interval = node_ttl = 0;
    CHECK(a);
    CHECK_EQ_INT(publish(a, "room", "x", NULL, &(pubres){0}), -EAGAIN); /* not connected yet */
    CHECK(rproc_run_until(loop, avail1, a, 10000));
    CHECK(a->available && a->avail_changes == 1);
    /* the node heartbeat sent when the node turned available is written and answered first:
     * otherwise its write can fall among the ones counted below */
    CHECK(rproc_run_until(loop, nothing_in_flight, a, 10000));
    /* 100 publishes of one room in one loop iteration: one script call (a batch), one write;
     * ids 1..100 in call order. */
    static pubres p;
    memset(&p, 0, sizeof(p));
    char pl[32];
    rc_cluster_stats st;
    rc_cluster_stats_get(a->c, &st);
    uint64_t writes = st.pub_writes, commands = st.pub_commands;
    for (int i = 1; i <= 100; i++) {
        snprintf(pl, sizeof(pl), "m%d", i);
        CHECK(publish(a, "room", pl, NULL, &p) == 0);
    }
    CHECK(run_pubs(loop, &p, 100));
    CHECK_EQ_INT(p.n, 100);
    rc_cluster_stats_get(a->c, &st);
    CHECK_EQ_INT(st.pub_commands - commands, 1); /* batched: one call per room */
    CHECK_EQ_INT(st.pub_writes - writes, 1); /* pipelined: one write for the iteration */
    for (int i = 0; i < 100; i++) CHECK_EQ_INT(p.ids[i], i + 1);
    CHECK(strlen(p.epoch) == 16);
    /* Another room has its own sequence and epoch. */
    pubres q = {0};
    CHECK(publish(a, "other", "o1", NULL, &q) == 0);
    CHECK(run_pubs(loop, &q, 1));
    CHECK_EQ_INT(q.ids[0], 1);
    CHECK(strcmp(q.epoch, p.epoch) != 0);
    /* Recovery read: everything after 90, atomically with the epoch and the top. */
    static readres x;
    CHECK(do_read(loop, a, "room", 90, 1000, &x));
    CHECK_EQ_INT(x.top, 100);
    CHECK_EQ_INT(x.first, 1);
    CHECK(strcmp(x.epoch, p.epoch) == 0);
    CHECK_EQ_INT(x.n, 10);
    for (int i = 0; i < 10; i++) CHECK_EQ_INT(x.ids[i], 91 + i);
    CHECK(strcmp(x.payloads[0], "m91") == 0 && strcmp(x.payloads[9], "m100") == 0);
    /* max bounds the count; max 0 reads only the epoch and the bounds */
    CHECK(do_read(loop, a, "room", 0, 3, &x));
    CHECK_EQ_INT(x.n, 3);
    CHECK_EQ_INT(x.ids[2], 3);
    CHECK(do_read(loop, a, "room", 0, 0, &x));
    CHECK(x.n == 0 && x.top == 100);
    /* A room Redis never saw: the read creates it, empty, in a new epoch that the next read
     * and the first publish keep (a member that joined before the first message recovers). */
    CHECK(do_read(loop, a, "never", 0, 10, &x));
    CHECK(strlen(x.epoch) == 16 && x.top == 0 && x.first == 0 && x.n == 0);
    char created[sizeof(x.epoch)];
    memcpy(created, x.epoch, sizeof(created));
    CHECK(do_read(loop, a, "never", 0, 10, &x));
    CHECK(strcmp(x.epoch, created) == 0 && x.top == 0);
    pubres r = {0};
    CHECK(publish(a, "never", "first", NULL, &r) == 0);
    CHECK(run_pubs(loop, &r, 1));
    CHECK(strcmp(r.epoch, created) == 0 && r.ids[0] == 1);
    CHECK(do_read(loop, a, "never", 0, 10, &x));
    CHECK(strcmp(x.epoch, created) == 0 && x.top == 1 && x.n == 1);
    rc_cluster_stats_get(a->c, &st);
    CHECK_EQ_INT(st.published, 102);
    node_free(a);
    rc_loop_free(loop);
}

/* The publishes of one room in one loop iteration go as one script call (a batch): keys, state
 * and order hold inside it as they did with a call per message, and a subscribed node gets the
 * batch form and delivers each message in order, without a gap. */
TEST(batch_keeps_keys_state_and_order)
{
    new_prefix();
    rc_loop *loop = rc_loop_new();
    node *a = node_new(loop, 5), *b = node_new(loop, 5);
    CHECK(a && b && rproc_run_until(loop, avail1, a, 10000) &&
          rproc_run_until(loop, avail1, b, 10000));
    CHECK(rc_cluster_sub(b->c, "room", 4) == 0);
    CHECK(rproc_run_until(loop, is_subscribed, b, 10000));
    static pubres p, q;
    memset(&p, 0, sizeof(p));
    memset(&q, 0, sizeof(q));
    /* one iteration: a keyed message, its repeat in the same batch, a state set, another
     * room between them, a delete of the state key, and plain messages */
    CHECK(publish(a, "room", "k1", "key-1", &p) == 0);
    CHECK(publish(a, "other", "o1", NULL, &q) == 0);
    CHECK(publish(a, "room", "k1 again", "key-1", &p) == 0);
    CHECK(rc_cluster_publish_keyed(a->c, "room", 4, "s1", 2, NULL, 0, 's', "sk", 2, on_pub,
                                   &p) == 0);
    CHECK(rc_cluster_publish_keyed(a->c, "room", 4, "s2", 2, NULL, 0, 's', "sk2", 3, on_pub,
                                   &p) == 0);
    CHECK(rc_cluster_publish_keyed(a->c, "room", 4, "d", 1, NULL, 0, 'd', "sk2", 3, on_pub,
                                   &p) == 0);
    for (int i = 0; i < 10; i++) CHECK(publish(a, "room", "plain", NULL, &p) == 0);
    CHECK(run_pubs(loop, &p, 15) && run_pubs(loop, &q, 1));
    CHECK_EQ_INT(p.fails, 0);
    CHECK_EQ_INT(p.dups, 1);
    CHECK_EQ_INT(p.ids[0], 1);
    CHECK_EQ_INT(p.ids[1], 1); /* the repeat names the first */
    for (int i = 2; i < 15; i++) CHECK_EQ_INT(p.ids[i], (uint64_t)i);
    CHECK_EQ_INT(q.ids[0], 1);
    CHECK(run_msgs(loop, b, 14));
    for (int i = 0; i < 14; i++) {
        CHECK_EQ_INT(b->msgs[i].id, (uint64_t)i + 1);
        CHECK(!b->msgs[i].gap && strcmp(b->msgs[i].epoch, p.epoch) == 0);
    }
    CHECK(strcmp(b->msgs[0].payload, "k1") == 0 && strcmp(b->msgs[1].payload, "s1") == 0 &&
          strcmp(b->msgs[13].payload, "plain") == 0);
    /* the stream holds one entry per msg_id, trimmed to the history size (5) */
    static readres x;
    CHECK(do_read(loop, a, "room", 0, 100, &x));
    CHECK(x.top == 14 && x.first == 10 && x.n == 5 && x.ids[0] == 10 && x.ids[4] == 14);
    /* the stream holds the batch as one entry: a read from inside it gets exactly what it asks */
    CHECK(do_read(loop, a, "room", 11, 2, &x));
    CHECK(x.n == 2 && x.ids[0] == 12 && x.ids[1] == 13 && strcmp(x.payloads[0], "plain") == 0);
    /* the key is still known in a later batch, to both nodes */
    memset(&p, 0, sizeof(p));
    CHECK(publish(b, "room", "k1 later", "key-1", &p) == 0);
    CHECK(publish(b, "room", "next", NULL, &p) == 0);
    CHECK(run_pubs(loop, &p, 2));
    CHECK(p.dups == 1 && p.ids[0] == 1 && p.ids[1] == 15);
    CHECK(run_msgs(loop, b, 15));
    CHECK(b->msgs[14].id == 15 && strcmp(b->msgs[14].payload, "next") == 0);
    rc_cluster_stats st;
    rc_cluster_stats_get(b->c, &st);
    CHECK_EQ_INT(st.gaps, 0);
    CHECK_EQ_INT(st.bad_messages, 0);
    node_free(a);
    node_free(b);
    rc_loop_free(loop);
}

TEST(history_is_trimmed_and_epoch_renewed)
{
    new_prefix();
    rc_loop *loop = rc_loop_new();
    node *a = node_new(loop, 5);
    CHECK(a && rproc_run_until(loop, avail1, a, 10000));
    static pubres p;
    memset(&p, 0, sizeof(p));
    for (int i = 0; i < 12; i++) CHECK(publish(a, "room", "x", NULL, &p) == 0);
    CHECK(run_pubs(loop, &p, 12));
    static readres x;
    CHECK(do_read(loop, a, "room", 0, 100, &x));
    CHECK_EQ_INT(x.top, 12);
    CHECK_EQ_INT(x.first, 8); /* MAXLEN 5 keeps 8..12 */
    CHECK_EQ_INT(x.n, 5);
    /* The meta hash expiring (simulated by deleting it) starts a new epoch at msg_id 1 and drops
     * the old stream, so no old entry can pass for one of the new epoch. */
    char key[64];
    snprintf(key, sizeof(key), "%s:{room}:m", prefix);
    redisReply *rp = rproc_cmd(&srv, "DEL %s", key);
    CHECK(rp);
    freeReplyObject(rp);
    char old_epoch[33];
    snprintf(old_epoch, sizeof(old_epoch), "%s", p.epoch);
    pubres q = {0};
    CHECK(publish(a, "room", "fresh", NULL, &q) == 0);
    CHECK(run_pubs(loop, &q, 1));
    CHECK_EQ_INT(q.ids[0], 1);
    CHECK(strcmp(q.epoch, old_epoch) != 0);
    CHECK(do_read(loop, a, "room", 0, 100, &x));
    CHECK(x.n == 1 && x.first == 1 && strcmp(x.payloads[0], "fresh") == 0);
    node_free(a);
    rc_loop_free(loop);
}

/* A read's state, recorded. */
typedef struct stateres {
    int done, status, n;
    uint64_t top;
    char keys[8][16];
    uint64_t ids[8];
    char payloads[8][24];
} stateres;

static void on_state_read(void *arg, int status, const rc_cluster_range *r)
{
    stateres *x = arg;
    x->done++;
    x->status = status;
    if (status < 0) return;
    x->top = rc_cluster_range_top(r);
    x->n = (int)rc_cluster_range_state_count(r);
    for (int i = 0; i < x->n && i < 8; i++) {
        rc_cluster_state st;
        if (rc_cluster_range_state_get(r, (size_t)i, &st) < 0) {
            x->status = -1;
            return;
        }
        snprintf(x->keys[i], 16, "%.*s", (int)st.key_len, st.key);
        x->ids[i] = st.msg_id;
        snprintf(x->payloads[i], 24, "%.*s", (int)st.payload_len, (const char *)st.payload);
    }
}

static bool state_read_done(void *arg) { return ((stateres *)arg)->done > 0; }

static int publish_keyed(node *d, const char *payload, char op, const char *skey, pubres *p,
                         const char *idem)
{
    return rc_cluster_publish_keyed(d->c, "room", 4, payload, strlen(payload), idem,
                                    idem ? strlen(idem) : 0, op, skey, skey ? strlen(skey) : 0,
                                    on_pub, p);
}

static const char *state_of(const stateres *x, const char *key, uint64_t *id)
{
    for (int i = 0; i < x->n; i++)
        if (strcmp(x->keys[i], key) == 0) {
            *id = x->ids[i];
            return x->payloads[i];
        }
    return NULL;
}

TEST(state_is_kept_with_the_sequence)
{
    new_prefix();
    rc_loop *loop = rc_loop_new();
    node *a = node_new(loop, 100), *b = node_new(loop, 100);
    CHECK(a && b && rproc_run_until(loop, avail1, a, 10000) &&
          rproc_run_until(loop, avail1, b, 10000));
    static pubres p;
    memset(&p, 0, sizeof(p));
    /* both nodes write the state (each step waits, so that the order is known) */
    CHECK(publish_keyed(a, "x1", 's', "x", &p, NULL) == 0);
    CHECK(run_pubs(loop, &p, 1));
    CHECK(publish_keyed(b, "y1", 's', "y", &p, NULL) == 0);
    CHECK(run_pubs(loop, &p, 2));
    CHECK(publish_keyed(a, "plain", 0, NULL, &p, NULL) == 0);
    CHECK(run_pubs(loop, &p, 3));
    CHECK(publish_keyed(b, "x2", 's', "x", &p, "k1") == 0);
    CHECK(run_pubs(loop, &p, 4));
    CHECK(publish_keyed(a, "ydel", 'd', "y", &p, NULL) == 0);
    CHECK(run_pubs(loop, &p, 5));
    CHECK_EQ_INT(p.fails, 0);
    /* an idempotent repeat changes nothing, not even a delete it would make */
    CHECK(publish_keyed(a, "xx", 'd', "x", &p, "k1") == 0);
    CHECK(run_pubs(loop, &p, 6));
    CHECK_EQ_INT(p.dups, 1);
    CHECK_EQ_INT(rc_cluster_publish_keyed(a->c, "room", 4, "q", 1, NULL, 0, 'z', "x", 1, on_pub,
                                          &p), -EINVAL);
    static stateres x;
    memset(&x, 0, sizeof(x));
    CHECK(rc_cluster_read(b->c, "room", 4, 0, 0, on_state_read, &x) == 0);
    CHECK(rproc_run_until(loop, state_read_done, &x, 10000) && x.status == 0);
    CHECK_EQ_INT(x.top, 5);
    CHECK_EQ_INT(x.n, 1);
    uint64_t id = 0;
    const char *v = state_of(&x, "x", &id);
    CHECK(v && strcmp(v, "x2") == 0);
    /* the id of the publish that wrote it: x2 was the fourth call */
    CHECK_EQ_INT(id, 4);
    /* a new epoch (the meta gone) starts without state */
    char key[64];
    snprintf(key, sizeof(key), "%s:{room}:m", prefix);
    redisReply *rp = rproc_cmd(&srv, "DEL %s", key);
    CHECK(rp);
    freeReplyObject(rp);
    pubres q = {0};
    CHECK(publish_keyed(a, "z1", 's', "z", &q, NULL) == 0);
    CHECK(run_pubs(loop, &q, 1));
    memset(&x, 0, sizeof(x));
    CHECK(rc_cluster_read(a->c, "room", 4, 0, 0, on_state_read, &x) == 0);
    CHECK(rproc_run_until(loop, state_read_done, &x, 10000) && x.status == 0);
    CHECK(x.top == 1 && x.n == 1 && strcmp(x.keys[0], "z") == 0 && x.ids[0] == 1);
    node_free(a);
    node_free(b);
    rc_loop_free(loop);
}

TEST(idempotency_key_across_nodes)
{
    new_prefix();
    rc_loop *loop = rc_loop_new();
    node *a = node_new(loop, 100), *b = node_new(loop, 100);
    CHECK(a && b);
    CHECK(rproc_run_until(loop, avail1, a, 10000) && rproc_run_until(loop, avail1, b, 10000));
    CHECK(rc_cluster_sub(a->c, "room", 4) == 0);
    CHECK(rproc_run_until(loop, is_subscribed, a, 10000));
    pubres p = {0};
    CHECK(publish(a, "room", "one", "k1", &p) == 0);
    CHECK(run_pubs(loop, &p, 1));
    CHECK(publish(b, "room", "one again", "k1", &p) == 0); /* the retry lands on another node */
    CHECK(publish(b, "room", "two", "k2", &p) == 0);
    CHECK(run_pubs(loop, &p, 3));
    CHECK_EQ_INT(p.ids[0], 1);
    CHECK_EQ_INT(p.ids[1], 1); /* the earlier msg_id */
    CHECK_EQ_INT(p.ids[2], 2);
    CHECK_EQ_INT(p.dups, 1);
    CHECK(run_msgs(loop, a, 2));
    rproc_run_for(loop, 50); /* a second copy of "one" would have arrived by now */
    CHECK_EQ_INT(a->n, 2); /* published once */
    CHECK(a->msgs[0].id == 1 && strcmp(a->msgs[0].payload, "one") == 0);
    CHECK(a->msgs[1].id == 2 && strcmp(a->msgs[1].payload, "two") == 0);
    node_free(a);
    node_free(b);
    rc_loop_free(loop);
}

/* Members read back, recorded. */
typedef struct memres {
    int done, status, n;
    uint64_t version, ids[8];
    char nodes[8][33];
} memres;

static void on_members(void *arg, int status, uint64_t version, uint64_t top,
                       const rc_cluster_member *v, size_t n)
{
    memres *x = arg;
    x->done++;
    x->status = status;
    x->version = version;
    x->n = (int)n;
    for (size_t i = 0; i < n && i < 8; i++) {
        x->ids[i] = v[i].client_id;
        snprintf(x->nodes[i], 33, "%.*s", (int)v[i].node_len, v[i].node);
    }
}

static bool members_done(void *arg) { return ((memres *)arg)->done > 0; }

static bool read_members(rc_loop *loop, node *d, memres *x)
{
    memset(x, 0, sizeof(*x));
    if (rc_cluster_members_read(d->c, "room", 4, on_members, x) < 0) return false;
    return rproc_run_until(loop, members_done, x, 10000) && x->status == 0;
}

static bool pres2(void *arg) { return ((node *)arg)->npres >= 2; }
static bool pres3(void *arg) { return ((node *)arg)->npres >= 3; }
static bool reaped1(void *arg)
{
    rc_cluster_stats st;
    rc_cluster_stats_get(((node *)arg)->c, &st);
    return st.reaped_members >= 1 && st.nodes_alive == 2;
}
static bool registered1(void *arg) { return ((node *)arg)->registered >= 1; }

/* Presence across nodes: a change is published on the room's channel to the other nodes
 * (never back to its own), is kept in Redis with its node, and a node whose heartbeat stops
 * is reaped by another: its members leave ("dropped") and it leaves the registry. */
TEST(presence_and_dead_node_reaping)
{
    new_prefix();
    node_interval = 50 * RC_NS_PER_MS;
    node_ttl = 400 * RC_NS_PER_MS;
    rc_loop *loop = rc_loop_new();
    node *a = node_new(loop, 10), *b = node_new(loop, 10), *c = node_new(loop, 10);
    CHECK(a && b && c);
    CHECK(rproc_run_until(loop, avail1, a, 10000) && rproc_run_until(loop, avail1, b, 10000) &&
          rproc_run_until(loop, avail1, c, 10000));
    CHECK(rproc_run_until(loop, registered1, a, 10000)); /* its first heartbeat */
    CHECK(rc_cluster_sub(a->c, "room", 4) == 0 && rc_cluster_sub(b->c, "room", 4) == 0);
    CHECK(rproc_run_until(loop, is_subscribed, a, 10000) &&
          rproc_run_until(loop, is_subscribed, b, 10000));
    CHECK(rc_cluster_presence(a->c, "room", 4, true, 7, "\"user\":\"al\",", 12, true) == 0);
    CHECK(rc_cluster_presence(a->c, "room", 4, true, 7, "\"user\":\"al\",", 12, true) == 0);
    CHECK(rc_cluster_presence(c->c, "room", 4, true, 9, "", 0, true) == 0);
    CHECK(rproc_run_until(loop, pres2, b, 10000));
    rproc_run_for(loop, 50);
    CHECK_EQ_INT(b->npres, 2); /* the repeated join changed nothing: not published */
    CHECK(b->pres[0].join && b->pres[0].client_id == 7 &&
          strcmp(b->pres[0].node, rc_cluster_node_id(a->c)) == 0 &&
          strcmp(b->pres[0].info, "\"user\":\"al\",") == 0);
    CHECK(b->pres[1].client_id == 9 && b->pres[1].version == b->pres[0].version + 1);
    CHECK_EQ_INT(a->npres, 1); /* c's join only: never its own */
    memres m;
    CHECK(read_members(loop, b, &m));
    CHECK_EQ_INT(m.n, 2);
    CHECK(m.version == b->pres[1].version);
    /* c dies without a word: a's heartbeat reaps it after its TTL */
    node_free(c);
    CHECK(rproc_run_until(loop, pres3, b, 10000));
    CHECK(!b->pres[2].join && b->pres[2].client_id == 9 &&
          strcmp(b->pres[2].info, "dropped") == 0);
    CHECK(rproc_run_until(loop, reaped1, a, 10000) || rproc_run_until(loop, reaped1, b, 10000));
    CHECK(read_members(loop, a, &m));
    CHECK(m.n == 1 && m.ids[0] == 7);
    /* a leave from another node than the member's changes nothing; from its own, it goes */
    CHECK(rc_cluster_presence(b->c, "room", 4, false, 7, "left", 4, true) == 0);
    CHECK(rc_cluster_presence(a->c, "room", 4, false, 7, "left", 4, true) == 0);
    CHECK(read_members(loop, a, &m));
    CHECK_EQ_INT(m.n, 0);
    node_free(a);
    node_free(b);
    rc_loop_free(loop);
    node_interval = node_ttl = 0;
}

TEST(two_nodes_see_one_order)
{
    new_prefix();
    rc_loop *loop = rc_loop_new();
    node *a = node_new(loop, 1000), *b = node_new(loop, 1000);
    CHECK(a && b);
    node *nodes[3] = {a, b, NULL};
    rc_loop_set_before_sleep(loop, flush_hook, nodes);
    CHECK(rproc_run_until(loop, avail1, a, 10000) && rproc_run_until(loop, avail1, b, 10000));
    CHECK(rc_cluster_sub(a->c, "room", 4) == 0 && rc_cluster_sub(b->c, "room", 4) == 0);
    CHECK(rc_cluster_sub(b->c, "room", 4) == 0); /* a second member on b: still one subscription */
    CHECK(rproc_run_until(loop, is_subscribed, a, 10000));
    CHECK(rproc_run_until(loop, is_subscribed, b, 10000));
    CHECK(a->subscribed == 1 && b->subscribed == 1);
    /* Both nodes publish, interleaved, over several loop iterations. */
    static pubres pa, pb;
    memset(&pa, 0, sizeof(pa));
    memset(&pb, 0, sizeof(pb));
    char pl[32];
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 20; i++) {
            snprintf(pl, sizeof(pl), "%c%d", i % 2 ? 'a' : 'b', round * 20 + i);
            CHECK(publish(i % 2 ? a : b, "room", pl, NULL, i % 2 ? &pa : &pb) == 0);
        }
        rproc_run_for(loop, 1);
    }
    CHECK(run_pubs(loop, &pa, 100) && run_pubs(loop, &pb, 100));
    CHECK(run_msgs(loop, a, 200) && run_msgs(loop, b, 200));
    for (int i = 0; i < 200; i++) {
        CHECK_EQ_INT(a->msgs[i].id, i + 1); /* no gap, no duplicate, msg_id order */
        CHECK_EQ_INT(b->msgs[i].id, i + 1);
        CHECK(strcmp(a->msgs[i].payload, b->msgs[i].payload) == 0);
        CHECK(strcmp(a->msgs[i].epoch, b->msgs[i].epoch) == 0);
        CHECK(!a->msgs[i].gap && !b->msgs[i].gap);
    }
    /* Each publisher's own messages keep its call order. */
    for (int i = 1; i < 100; i++) CHECK(pa.ids[i] > pa.ids[i - 1] && pb.ids[i] > pb.ids[i - 1]);
    rc_cluster_stats st;
    rc_cluster_stats_get(b->c, &st);
    CHECK_EQ_INT(st.rooms, 1);
    CHECK_EQ_INT(st.delivered, 200);
    rc_loop_set_before_sleep(loop, NULL, NULL);
    node_free(a);
    node_free(b);
    rc_loop_free(loop);
}

TEST(unsubscribe_and_churn)
{
    new_prefix();
    rc_loop *loop = rc_loop_new();
    node *a = node_new(loop, 100), *b = node_new(loop, 100);
    CHECK(a && b);
    CHECK(rproc_run_until(loop, avail1, a, 10000) && rproc_run_until(loop, avail1, b, 10000));
    CHECK(rc_cluster_sub(a->c, "room", 4) == 0 && rc_cluster_sub(b->c, "room", 4) == 0);
    CHECK(rproc_run_until(loop, is_subscribed, a, 10000));
    CHECK(rproc_run_until(loop, is_subscribed, b, 10000));
    /* b's last member leaves: b stops receiving the room. */
    CHECK(rc_cluster_unsub(b->c, "room", 4) == 0);
    CHECK_EQ_INT(rc_cluster_unsub(b->c, "room", 4), -ENOENT);
    CHECK(!rc_cluster_subscribed(b->c, "room", 4));
    rproc_run_for(loop, 20);
    pubres p = {0};
    CHECK(publish(a, "room", "1", NULL, &p) == 0);
    CHECK(run_msgs(loop, a, 1));
    rproc_run_for(loop, 50);
    CHECK_EQ_INT(b->n, 0);
    /* Churn within one iteration: leave, join, leave, join while commands are in flight. The
     * node must end up subscribed and receive (hiredis keeps one callback per channel, which a
     * late UNSUBSCRIBE reply would otherwise delete). */
    for (int i = 0; i < 3; i++) {
        CHECK(rc_cluster_sub(b->c, "room", 4) == 0);
        rproc_run_for(loop, 0);
        CHECK(rc_cluster_unsub(b->c, "room", 4) == 0);
    }
    CHECK(rc_cluster_sub(b->c, "room", 4) == 0);
    CHECK(rproc_run_until(loop, is_subscribed, b, 10000));
    CHECK(publish(a, "room", "2", NULL, &p) == 0);
    CHECK(run_msgs(loop, b, 1));
    CHECK(b->msgs[0].id == 2 && !b->msgs[0].gap);
    rc_cluster_stats st;
    rc_cluster_stats_get(b->c, &st);
    CHECK_EQ_INT(st.rooms, 1);
    /* Everyone leaves: the room is forgotten once the UNSUBSCRIBE is confirmed. */
    CHECK(rc_cluster_unsub(b->c, "room", 4) == 0);
    rproc_run_for(loop, 50);
    rc_cluster_stats_get(b->c, &st);
    CHECK_EQ_INT(st.rooms, 0);
    node_free(a);
    node_free(b);
    rc_loop_free(loop);
}

TEST(noscript_reloads)
{
    new_prefix();
    rc_loop *loop = rc_loop_new();
    node *a = node_new(loop, 100);
    CHECK(a && rproc_run_until(loop, avail1, a, 10000));
    pubres p = {0};
    CHECK(publish(a, "room", "1", NULL, &p) == 0);
    CHECK(run_pubs(loop, &p, 1));
    redisReply *rp = rproc_cmd(&srv, "SCRIPT FLUSH");
    CHECK(rp);
    freeReplyObject(rp);
    CHECK(publish(a, "room", "2", NULL, &p) == 0);
    CHECK(publish(a, "room", "3", NULL, &p) == 0);
    CHECK(run_pubs(loop, &p, 3));
    CHECK_EQ_INT(p.fails, 0);
    CHECK(p.ids[1] == 2 && p.ids[2] == 3);
    static readres x;
    CHECK(do_read(loop, a, "room", 0, 10, &x)); /* the read script is reloaded as well */
    CHECK_EQ_INT(x.n, 3);
    rc_cluster_stats st;
    rc_cluster_stats_get(a->c, &st);
    CHECK(st.noscript >= 2);
    node_free(a);
    rc_loop_free(loop);
}

/* kill_client ends the connection whose CLIENT SETNAME is name; returns how many were killed. */
static int kill_client(const char *name)
{
    redisReply *rp = rproc_cmd(&srv, "CLIENT LIST");
    if (!rp || (rp->type != REDIS_REPLY_STRING)) {
        if (rp) freeReplyObject(rp);
        return -1;
    }
    char want[128];
    snprintf(want, sizeof(want), " name=%s ", name);
    long long id = -1;
    for (char *line = rp->str; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char buf[1024];
        snprintf(buf, sizeof(buf), "%.*s", (int)len, line);
        if (strstr(buf, want) && sscanf(buf, "id=%lld", &id) == 1) break;
    }
    freeReplyObject(rp);
    if (id < 0) return 0;
    rp = rproc_cmd(&srv, "CLIENT KILL ID %lld", id);
    int n = rp && rp->type == REDIS_REPLY_INTEGER ? (int)rp->integer : -1;
    if (rp) freeReplyObject(rp);
    return n;
}

static node *gap_node;
static bool resubscribed(void *arg) { return gap_node->resubscribed > 0 && is_subscribed(gap_node); }

TEST(killed_subscription_is_renewed_and_gap_reported)
{
    new_prefix();
    rc_loop *loop = rc_loop_new();
    node *a = node_new(loop, 100), *b = node_new(loop, 100);
    CHECK(a && b);
    CHECK(rproc_run_until(loop, avail1, a, 10000) && rproc_run_until(loop, avail1, b, 10000));
    CHECK(rc_cluster_sub(a->c, "room", 4) == 0);
    CHECK(rproc_run_until(loop, is_subscribed, a, 10000));
    pubres p = {0};
    CHECK(publish(a, "room", "1", NULL, &p) == 0);
    CHECK(run_msgs(loop, a, 1));
    /* a's subscription is killed (as CLIENT KILL or a proxy would); b publishes at once, long
     * before a can be back (its reconnect waits for the backoff timer): a misses msg_id 2. */
    char name[64];
    snprintf(name, sizeof(name), "%s:%s:sub", prefix, rc_cluster_node_id(a->c));
    CHECK_EQ_INT(kill_client(name), 1);
    CHECK(publish(b, "room", "2", NULL, &p) == 0);
    CHECK(run_pubs(loop, &p, 2));
    CHECK(p.ids[1] == 2);
    gap_node = a;
    CHECK(rproc_run_until(loop, resubscribed, NULL, 10000));
    CHECK_EQ_INT(a->resubscribed, 1);
    CHECK(a->available && a->avail_changes == 3); /* up, down, up */
    CHECK(publish(b, "room", "3", NULL, &p) == 0);
    CHECK(run_msgs(loop, a, 2));
    CHECK(a->msgs[1].id == 3 && a->msgs[1].gap && !a->msgs[1].regressed);
    /* the gap is in the stream */
    static readres x;
    CHECK(do_read(loop, a, "room", 1, 100, &x));
    CHECK(x.n == 2 && x.ids[0] == 2 && strcmp(x.payloads[0], "2") == 0 && x.ids[1] == 3);
    node_free(a);
    node_free(b);
    rc_loop_free(loop);
}

TEST(redis_restart_keeps_sequence_with_aof)
{
    new_prefix();
    rc_loop *loop = rc_loop_new();
    node *a = node_new(loop, 100);
    CHECK(a && rproc_run_until(loop, avail1, a, 10000));
    CHECK(rc_cluster_sub(a->c, "room", 4) == 0);
    CHECK(rproc_run_until(loop, is_subscribed, a, 10000));
    static pubres p;
    memset(&p, 0, sizeof(p));
    for (int i = 0; i < 5; i++) CHECK(publish(a, "room", "before", NULL, &p) == 0);
    CHECK(run_pubs(loop, &p, 5));
    char epoch[33];
    snprintf(epoch, sizeof(epoch), "%s", p.epoch);
    CHECK(run_msgs(loop, a, 5));
    /* Redis goes away: unavailable, publishes refused at once, pending ones fail. */
    CHECK(publish(a, "room", "in flight", NULL, &p) == 0);
    rproc_stop(&srv);
    CHECK(rproc_run_until(loop, unavail1, a, 10000));
    CHECK(run_pubs(loop, &p, 6));
    CHECK(p.n == 5 ? p.fails == 1 : p.n == 6); /* unknown outcome, or it got through first */
    int before = p.n;
    CHECK_EQ_INT(publish(a, "room", "refused", NULL, &p), -EAGAIN);
    rproc_run_for(loop, 100); /* reconnect attempts fail meanwhile; nothing wedges */
    /* Back (the AOF keeps the meta hash and the stream): same epoch, ids continue. */
    CHECK(rproc_spawn(&srv) == 0);
    CHECK(rproc_run_until(loop, avail1, a, 10000));
    CHECK(rproc_run_until(loop, is_subscribed, a, 10000));
    CHECK(a->resubscribed == 1);
    CHECK(publish(a, "room", "after", NULL, &p) == 0);
    CHECK(run_pubs(loop, &p, before + p.fails + 1));
    CHECK_EQ_INT(p.ids[p.n - 1], (uint64_t)before + 1);
    CHECK(strcmp(p.epoch, epoch) == 0);
    CHECK(run_msgs(loop, a, before + 1));
    CHECK_EQ_INT(a->msgs[a->n - 1].id, before + 1);
    node_free(a);
    rc_loop_free(loop);
}

TEST(frozen_redis_turns_unavailable_and_back)
{
    /* SIGSTOP: no EOF, no error, the sockets just go quiet — only the heartbeat can tell. */
    new_prefix();
    hb_interval = 20 * RC_NS_PER_MS, hb_timeout = 300 * RC_NS_PER_MS;
    rc_loop *loop = rc_loop_new();
    node *a = node_new(loop, 100);
    hb_interval = hb_timeout = 0;
    CHECK(a && rproc_run_until(loop, avail1, a, 10000));
    CHECK(rc_cluster_sub(a->c, "room", 4) == 0);
    CHECK(rproc_run_until(loop, is_subscribed, a, 10000));
    rproc_run_for(loop, 100); /* heartbeats flow: nothing happens */
    rc_cluster_stats st;
    rc_cluster_stats_get(a->c, &st);
    CHECK_EQ_INT(st.heartbeat_failures, 0);
    CHECK(a->available);
    kill(srv.pid, SIGSTOP);
    bool went = rproc_run_until(loop, unavail1, a, 10000);
    kill(srv.pid, SIGCONT);
    CHECK(went);
    rc_cluster_stats_get(a->c, &st);
    CHECK(st.heartbeat_failures >= 1);
    pubres p = {0};
    CHECK_EQ_INT(publish(a, "room", "x", NULL, &p), -EAGAIN);
    CHECK(rproc_run_until(loop, avail1, a, 10000));
    CHECK(rproc_run_until(loop, is_subscribed, a, 10000));
    CHECK(publish(a, "room", "after", NULL, &p) == 0);
    CHECK(run_msgs(loop, a, 1));
    CHECK(strcmp(a->msgs[a->n - 1].payload, "after") == 0);
    node_free(a);
    rc_loop_free(loop);
}

static readres renew_read;
static node *renew_node;
static char renew_old[33];
static bool epoch_renewed(void *arg)
{
    /* one read at a time; true once Redis reports another epoch */
    if (renew_read.done == 0 && renew_read.status == 1) return false;
    if (renew_read.done && renew_read.status == 0 && renew_read.epoch[0] &&
        strcmp(renew_read.epoch, renew_old) != 0)
        return true;
    memset(&renew_read, 0, sizeof(renew_read));
    renew_read.status = 1; /* in flight */
    if (rc_cluster_read(renew_node->c, "room", 4, 0, 0, on_read, &renew_read) < 0)
        renew_read.status = 0;
    return false;
}

TEST(redis_going_back_starts_a_new_epoch)
{
    new_prefix();
    rc_loop *loop = rc_loop_new();
    node *a = node_new(loop, 100);
    CHECK(a && rproc_run_until(loop, avail1, a, 10000));
    CHECK(rc_cluster_sub(a->c, "room", 4) == 0);
    CHECK(rproc_run_until(loop, is_subscribed, a, 10000));
    pubres p = {0};
    for (int i = 0; i < 5; i++) CHECK(publish(a, "room", "seen", NULL, &p) == 0);
    CHECK(run_msgs(loop, a, 5));
    snprintf(renew_old, sizeof(renew_old), "%s", p.epoch);
    /* Redis "loses" msg_ids 3..5, meta and stream alike (as a crash with appendfsync everysec
     * would: the AOF is one ordered log). */
    char key[64], skey[64];
    snprintf(key, sizeof(key), "%s:{room}:m", prefix);
    snprintf(skey, sizeof(skey), "%s:{room}:s", prefix);
    const char *const rollback[][6] = {
        {"HSET", key, "s", "2", NULL}, {"DEL", skey, NULL},
        {"XADD", skey, "1-0", "d", "seen", NULL}, {"XADD", skey, "2-0", "d", "seen", NULL},
    };
    redisContext *adm = rproc_admin(&srv);
    CHECK(adm);
    for (size_t i = 0; i < 4; i++) {
        int argc = 0;
        while (rollback[i][argc]) argc++;
        redisReply *rp = redisCommandArgv(adm, argc, (const char **)rollback[i], NULL);
        bool ok = rp && rp->type != REDIS_REPLY_ERROR;
        if (rp) freeReplyObject(rp);
        CHECK(ok);
    }
    redisFree(adm);
    CHECK(publish(a, "room", "reused id", NULL, &p) == 0);
    CHECK(run_msgs(loop, a, 6));
    CHECK(a->msgs[5].id == 3 && a->msgs[5].regressed && a->msgs[5].gap);
    CHECK(strcmp(a->msgs[5].epoch, renew_old) == 0);
    /* The node asked Redis for a new epoch; the next publish is the first of it. */
    renew_node = a;
    memset(&renew_read, 0, sizeof(renew_read));
    CHECK(rproc_run_until(loop, epoch_renewed, NULL, 10000));
    CHECK(publish(a, "room", "fresh", NULL, &p) == 0);
    CHECK(run_msgs(loop, a, 7));
    CHECK(a->msgs[6].id == 1 && a->msgs[6].gap && !a->msgs[6].regressed);
    CHECK(strcmp(a->msgs[6].epoch, renew_old) != 0);
    rc_cluster_stats st;
    rc_cluster_stats_get(a->c, &st);
    CHECK_EQ_INT(st.regressions, 1);
    node_free(a);
    rc_loop_free(loop);
}

TEST(stream_ahead_of_meta_starts_a_new_epoch)
{
    /* Only the meta hash went back: the XADD of the reused id is refused, and the room starts
     * over (new epoch, msg_id 1) instead of failing every publish from then on. */
    new_prefix();
    rc_loop *loop = rc_loop_new();
    node *a = node_new(loop, 100);
    CHECK(a && rproc_run_until(loop, avail1, a, 10000));
    pubres p = {0};
    for (int i = 0; i < 5; i++) CHECK(publish(a, "room", "x", NULL, &p) == 0);
    CHECK(run_pubs(loop, &p, 5));
    char old[33];
    snprintf(old, sizeof(old), "%s", p.epoch);
    char key[64];
    snprintf(key, sizeof(key), "%s:{room}:m", prefix);
    redisReply *rp = rproc_cmd(&srv, "HSET %s s 2", key);
    CHECK(rp);
    freeReplyObject(rp);
    CHECK(publish(a, "room", "y", NULL, &p) == 0);
    CHECK(publish(a, "room", "z", NULL, &p) == 0);
    CHECK(run_pubs(loop, &p, 7));
    CHECK_EQ_INT(p.fails, 0);
    CHECK(p.ids[5] == 1 && p.ids[6] == 2);
    CHECK(strcmp(p.epoch, old) != 0);
    static readres x;
    CHECK(do_read(loop, a, "room", 0, 10, &x));
    CHECK(x.n == 2 && x.first == 1 && strcmp(x.payloads[0], "y") == 0);
    node_free(a);
    rc_loop_free(loop);
}


TEST(bounded_calls_in_flight)
{
    new_prefix();
    max_inflight = 3;
    rc_loop *loop = rc_loop_new();
    node *a = node_new(loop, 100);
    max_inflight = 0;
    CHECK(a && rproc_run_until(loop, avail1, a, 10000));
    /* the node heartbeat sent when the node turned available counts until its reply */
    CHECK(rproc_run_until(loop, nothing_in_flight, a, 10000));
    pubres p = {0};
    readres x = {0};
    CHECK(publish(a, "room", "1", NULL, &p) == 0);
    CHECK(publish(a, "room", "2", NULL, &p) == 0);
    CHECK(rc_cluster_read(a->c, "room", 4, 0, 10, on_read, &x) == 0);
    CHECK_EQ_INT(publish(a, "room", "3", NULL, &p), -ENOBUFS);
    CHECK_EQ_INT(rc_cluster_read(a->c, "room", 4, 0, 10, on_read, &x), -ENOBUFS);
    rc_cluster_stats st;
    rc_cluster_stats_get(a->c, &st);
    CHECK_EQ_INT(st.inflight, 3);
    CHECK(run_pubs(loop, &p, 2) && rproc_run_until(loop, read_done, &x, 10000));
    rc_cluster_stats_get(a->c, &st);
    CHECK_EQ_INT(st.inflight, 0);
    CHECK(publish(a, "room", "3", NULL, &p) == 0);
    CHECK(run_pubs(loop, &p, 3));
    CHECK_EQ_INT(p.ids[2], 3);
    node_free(a);
    rc_loop_free(loop);
}

TEST(bad_config_is_refused)
{
    rc_loop *loop = rc_loop_new();
    rc_cluster_hooks h = {0};
    char err[256];
    rc_cluster_cfg cfg = {.url = "http://x"};
    CHECK(rc_cluster_new(loop, &cfg, &h, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "http://x") != NULL);
    cfg = (rc_cluster_cfg){.url = url, .prefix = "a b"};
    CHECK(rc_cluster_new(loop, &cfg, &h, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "prefix") != NULL);
    rc_loop_free(loop);
}

TEST(free_while_busy_fails_pending_calls)
{
    new_prefix();
    rc_loop *loop = rc_loop_new();
    node *a = node_new(loop, 100);
    CHECK(a && rproc_run_until(loop, avail1, a, 10000));
    pubres p = {0};
    readres x = {0};
    for (int i = 0; i < 5; i++) CHECK(publish(a, "room", "x", NULL, &p) == 0);
    CHECK(rc_cluster_read(a->c, "room", 4, 0, 10, on_read, &x) == 0);
    CHECK(rc_cluster_sub(a->c, "room", 4) == 0);
    node_free(a);
    CHECK_EQ_INT(p.fails, 5);
    CHECK(x.done == 1 && x.status == -ECONNRESET);
    rc_loop_free(loop);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (!rproc_installed()) {
        fprintf(stderr, "test_cluster: SKIP: %s is not installed (scripts/deps.sh test)\n",
                rproc_binary());
        UNIT_MAIN_END("test_cluster");
    }
    if (rproc_start(&srv, NULL) < 0) {
        fprintf(stderr, "FAIL: cannot start %s\n", rproc_binary());
        rproc_destroy(&srv);
        return 1;
    }
    snprintf(url, sizeof(url), "unix://%s", srv.sock);
    RUN(publish_sequences_and_reads_back);
    RUN(batch_keeps_keys_state_and_order);
    RUN(history_is_trimmed_and_epoch_renewed);
    RUN(idempotency_key_across_nodes);
    RUN(state_is_kept_with_the_sequence);
    RUN(two_nodes_see_one_order);
    RUN(unsubscribe_and_churn);
    RUN(noscript_reloads);
    RUN(killed_subscription_is_renewed_and_gap_reported);
    RUN(frozen_redis_turns_unavailable_and_back);
    RUN(redis_going_back_starts_a_new_epoch);
    RUN(stream_ahead_of_meta_starts_a_new_epoch);
    RUN(bounded_calls_in_flight);
    RUN(bad_config_is_refused);
    RUN(free_while_busy_fails_pending_calls);
    RUN(presence_and_dead_node_reaping);
    /* over TCP as well, and last: it restarts the server */
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", srv.port);
    RUN(two_nodes_see_one_order);
    RUN(redis_restart_keeps_sequence_with_aof);
    rproc_destroy(&srv);
    UNIT_MAIN_END("test_cluster");
}
