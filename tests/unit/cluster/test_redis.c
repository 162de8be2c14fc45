/* Tests src/cluster/redis.c against private redis-servers (redis_proc.h): the loop adapter,
 * the handshake (AUTH, SELECT), replies in order, reconnecting, the connect timeout, and that
 * every callback runs exactly once however a connection ends. Skips when redis-server is not
 * installed (scripts/deps.sh test installs it). */
#include "cluster/redis.h"

#include <hiredis/hiredis.h>

#include "cluster/redis_proc.h"
#include "unit.h"

static rproc srv;            /* the shared server, no password */

typedef struct probe {
    int ups, downs;          /* on_state calls */
    int replies, nulls;      /* reply callbacks with a reply / with NULL */
    long long last_int;      /* last integer reply */
    bool in_order;           /* INCR replies came as 1, 2, 3, ... */
    char last_str[64];       /* last string reply */
    bool reset_on_reply;     /* call rc_redis_reset from the next reply callback */
} probe;

static void on_state(rc_redis *r, bool up, void *arg)
{
    probe *p = arg;
    if (up) p->ups++;
    else p->downs++;
}

static void on_reply(rc_redis *r, struct redisReply *rp, void *arg)
{
    probe *p = arg;
    if (!rp) {
        p->nulls++;
        return;
    }
    p->replies++;
    if (rp->type == REDIS_REPLY_INTEGER) {
        if (rp->integer != p->last_int + 1) p->in_order = false;
        p->last_int = rp->integer;
    } else if (rp->type == REDIS_REPLY_STRING || rp->type == REDIS_REPLY_STATUS) {
        snprintf(p->last_str, sizeof(p->last_str), "%.*s", (int)rp->len, rp->str);
    }
    if (p->reset_on_reply) {
        p->reset_on_reply = false;
        rc_redis_reset(r);
    }
}

static bool is_up(void *arg) { return rc_redis_up(arg); }
static bool is_down(void *arg) { return !rc_redis_up(arg); }

static int cmd(rc_redis *r, probe *p, const char *a0, const char *a1, const char *a2)
{
    const char *argv[3] = {a0, a1, a2};
    size_t lens[3] = {strlen(a0), a1 ? strlen(a1) : 0, a2 ? strlen(a2) : 0};
    return rc_redis_command(r, on_reply, p, a2 ? 3 : a1 ? 2 : 1, argv, lens);
}

static rc_redis *open_url(rc_loop *loop, const char *url, probe *p, uint64_t timeout_ms)
{
    rc_clwire_url u;
    const char *why;
    char err[256];
    if (rc_clwire_url_parse(url, strlen(url), &u, &why) < 0) return NULL;
    rc_redis_opts o = {.name = "test", .on_state = on_state, .arg = p,
                       .connect_timeout_ns = timeout_ms * RC_NS_PER_MS,
                       .backoff_min_ns = 10 * RC_NS_PER_MS, .backoff_max_ns = 50 * RC_NS_PER_MS};
    rc_redis *r = rc_redis_new(loop, &u, &o, err, sizeof(err));
    if (r) rc_redis_start(r);
    return r;
}

static int replies_n;
static probe *wait_p;
static bool got_replies(void *arg) { return wait_p->replies + wait_p->nulls >= replies_n; }

static void pipeline_in_order(const char *url)
{
    rc_loop *loop = rc_loop_new();
    probe p = {.in_order = true};
    rc_redis *r = open_url(loop, url, &p, 2000);
    CHECK(r);
    CHECK_EQ_INT(cmd(r, &p, "PING", NULL, NULL), -ENOTCONN); /* not up yet */
    CHECK(rproc_run_until(loop, is_up, r, 10000));
    CHECK_EQ_INT(p.ups, 1);
    char key[32];
    snprintf(key, sizeof(key), "ctr-%d", rand());
    /* 200 INCRs queued in one go: replies must come back one by one, in order. */
    rc_redis_stats st;
    rc_redis_stats_get(r, &st);
    uint64_t writes = st.writes;
    for (int i = 0; i < 200; i++) CHECK(cmd(r, &p, "INCR", key, NULL) == 0);
    rc_redis_flush(r); /* as the before-sleep hook does */
    replies_n = 200, wait_p = &p;
    CHECK(rproc_run_until(loop, got_replies, NULL, 10000));
    CHECK_EQ_INT(p.replies, 200);
    CHECK(p.in_order);
    CHECK_EQ_INT(p.last_int, 200);
    rc_redis_stats_get(r, &st);
    CHECK_EQ_INT(st.writes - writes, 1); /* 200 commands, one write() */
    /* Without the flush the write event sends them: still one write for the iteration. */
    writes = st.writes;
    for (int i = 0; i < 100; i++) CHECK(cmd(r, &p, "INCR", key, NULL) == 0);
    replies_n = 300;
    CHECK(rproc_run_until(loop, got_replies, NULL, 10000));
    CHECK(p.in_order);
    rc_redis_stats_get(r, &st);
    CHECK_EQ_INT(st.writes - writes, 1);
    CHECK_EQ_INT(st.connects, 1);
    CHECK(st.commands >= 201); /* ours + the handshake's PING */
    rc_redis_free(r);
    CHECK_EQ_INT(p.downs, 0); /* freeing is not reported as "down" */
    rc_loop_free(loop);
}

TEST(pipeline_over_unix)
{
    char url[200];
    snprintf(url, sizeof(url), "unix://%s", srv.sock);
    pipeline_in_order(url);
}

TEST(pipeline_over_tcp)
{
    char url[200];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", srv.port);
    pipeline_in_order(url);
    snprintf(url, sizeof(url), "redis://localhost:%d/0", srv.port); /* resolved once */
    pipeline_in_order(url);
}

static rc_redis *watched;
static bool failed_twice(void *arg)
{
    rc_redis_stats st;
    rc_redis_stats_get(watched, &st);
    return st.failures >= 2;
}

TEST(auth_and_select)
{
    rproc sec;
    CHECK(rproc_start(&sec, "pa ss") == 0);
    rc_loop *loop = rc_loop_new();
    char url[256];
    /* wrong password: refused, never up, keeps retrying */
    probe bad = {0};
    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d", sec.port);
    rc_redis *r = open_url(loop, url, &bad, 2000);
    watched = r;
    CHECK(rproc_run_until(loop, failed_twice, NULL, 10000));
    CHECK_EQ_INT(bad.ups, 0);
    rc_redis_free(r);
    /* right password (percent-encoded space) and database 3 */
    probe good = {0};
    snprintf(url, sizeof(url), "unix://:pa%%20ss@%s?db=3", sec.sock);
    r = open_url(loop, url, &good, 2000);
    CHECK(rproc_run_until(loop, is_up, r, 10000));
    CHECK(cmd(r, &good, "SET", "where", "db3") == 0);
    replies_n = 1, wait_p = &good;
    CHECK(rproc_run_until(loop, got_replies, NULL, 10000));
    rc_redis_free(r);
    redisContext *c = rproc_admin(&sec);
    CHECK(c);
    redisReply *rp = redisCommand(c, "SELECT 3");
    freeReplyObject(rp);
    rp = redisCommand(c, "GET where");
    bool ok = rp && rp->type == REDIS_REPLY_STRING && strcmp(rp->str, "db3") == 0;
    freeReplyObject(rp);
    redisFree(c);
    rproc_destroy(&sec);
    rc_loop_free(loop);
    CHECK(ok);
}

TEST(down_and_back)
{
    rc_loop *loop = rc_loop_new();
    probe p = {.in_order = true};
    char url[200];
    snprintf(url, sizeof(url), "unix://%s", srv.sock);
    rc_redis *r = open_url(loop, url, &p, 2000);
    CHECK(rproc_run_until(loop, is_up, r, 10000));
    /* Queued but not yet written when the server goes away: its callback gets NULL. */
    CHECK(cmd(r, &p, "PING", NULL, NULL) == 0);
    rproc_stop(&srv);
    CHECK(rproc_run_until(loop, is_down, r, 10000));
    CHECK_EQ_INT(p.downs, 1);
    CHECK_EQ_INT(p.nulls + p.replies, 1); /* exactly once */
    CHECK_EQ_INT(cmd(r, &p, "PING", NULL, NULL), -ENOTCONN);
    /* It keeps trying (and failing) while the server is away... */
    watched = r;
    CHECK(rproc_run_until(loop, failed_twice, NULL, 10000));
    CHECK_EQ_INT(p.downs, 1); /* failed attempts are not reported again */
    /* ...and comes back by itself. */
    CHECK(rproc_spawn(&srv) == 0);
    CHECK(rproc_run_until(loop, is_up, r, 10000));
    CHECK_EQ_INT(p.ups, 2);
    rc_redis_stats st;
    rc_redis_stats_get(r, &st);
    CHECK_EQ_INT(st.connects, 2);
    CHECK_EQ_INT(st.disconnects, 1);
    rc_redis_free(r);
    rc_loop_free(loop);
}

TEST(reset_from_a_callback_reconnects)
{
    rc_loop *loop = rc_loop_new();
    probe p = {.in_order = true};
    char url[200];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", srv.port);
    rc_redis *r = open_url(loop, url, &p, 2000);
    CHECK(rproc_run_until(loop, is_up, r, 10000));
    p.reset_on_reply = true;
    CHECK(cmd(r, &p, "PING", NULL, NULL) == 0);
    CHECK(cmd(r, &p, "PING", NULL, NULL) == 0); /* pending when the reset happens */
    replies_n = 2, wait_p = &p;
    CHECK(rproc_run_until(loop, got_replies, NULL, 10000));
    CHECK_EQ_INT(p.replies, 1);
    CHECK_EQ_INT(p.nulls, 1);
    CHECK(rproc_run_until(loop, is_up, r, 10000));
    CHECK_EQ_INT(p.ups, 2);
    CHECK_EQ_INT(p.downs, 1);
    rc_redis_free(r);
    rc_loop_free(loop);
}

TEST(free_runs_pending_callbacks_once)
{
    rc_loop *loop = rc_loop_new();
    probe p = {.in_order = true};
    char url[200];
    snprintf(url, sizeof(url), "unix://%s", srv.sock);
    rc_redis *r = open_url(loop, url, &p, 2000);
    CHECK(rproc_run_until(loop, is_up, r, 10000));
    for (int i = 0; i < 10; i++) CHECK(cmd(r, &p, "PING", NULL, NULL) == 0);
    rc_redis_free(r);
    CHECK_EQ_INT(p.nulls, 10);
    CHECK_EQ_INT(p.replies, 0);
    rc_loop_free(loop);
}

TEST(connect_timeout)
{
    /* A listener that never accepts: the TCP connect completes (the kernel's backlog), the
     * handshake's PING is never answered, so only the timeout can end the attempt. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 16) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    rc_loop *loop = rc_loop_new();
    probe p = {0};
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", ntohs(a.sin_port));
    rc_redis *r = open_url(loop, url, &p, 50);
    watched = r;
    bool ok = rproc_run_until(loop, failed_twice, NULL, 10000);
    rc_redis_free(r);
    rc_loop_free(loop);
    close(fd);
    CHECK(ok);
    CHECK_EQ_INT(p.ups, 0);
}

TEST(refused_keeps_retrying)
{
    rc_loop *loop = rc_loop_new();
    probe p = {0};
    char url[200];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", rproc_free_port());
    rc_redis *r = open_url(loop, url, &p, 2000);
    watched = r;
    CHECK(rproc_run_until(loop, failed_twice, NULL, 10000));
    CHECK_EQ_INT(p.ups, 0);
    CHECK_EQ_INT(p.downs, 0);
    rc_redis_free(r);
    snprintf(url, sizeof(url), "unix://%s/nothing-here.sock", srv.dir);
    r = open_url(loop, url, &p, 2000);
    watched = r;
    CHECK(rproc_run_until(loop, failed_twice, NULL, 10000));
    rc_redis_free(r);
    rc_loop_free(loop);
}

TEST(unresolvable_host_is_refused_at_start)
{
    rc_loop *loop = rc_loop_new();
    rc_clwire_url u;
    const char *why;
    char err[256] = "";
    const char *url = "redis://no-such-host.invalid:6379";
    CHECK(rc_clwire_url_parse(url, strlen(url), &u, &why) == 0);
    rc_redis_opts o = {.name = "test"};
    CHECK(rc_redis_new(loop, &u, &o, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "no-such-host.invalid") != NULL);
    rc_loop_free(loop);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (!rproc_installed()) {
        fprintf(stderr, "test_redis: SKIP: %s is not installed (scripts/deps.sh test)\n",
                rproc_binary());
        UNIT_MAIN_END("test_redis");
    }
    if (rproc_start(&srv, NULL) < 0) {
        fprintf(stderr, "FAIL: cannot start %s\n", rproc_binary());
        rproc_destroy(&srv);
        return 1;
    }
    RUN(pipeline_over_unix);
    RUN(pipeline_over_tcp);
    RUN(auth_and_select);
    RUN(down_and_back);
    RUN(reset_from_a_callback_reconnects);
    RUN(free_runs_pending_callbacks_once);
    RUN(connect_timeout);
    RUN(refused_keeps_retrying);
    RUN(unresolvable_host_is_refused_at_start);
    rproc_destroy(&srv);
    UNIT_MAIN_END("test_redis");
}
