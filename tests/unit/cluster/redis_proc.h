/* redis_proc.h — a private redis-server for the tests of src/cluster/, and a way to run the loop
 * until something happened.
 *
 * rproc_start runs `redis-server` (ROOMCAST_REDIS_SERVER overrides the binary) in the
 * foreground on a free loopback port and a unix socket in its own temporary directory, which
 * is also its data directory (AOF on with appendfsync always, no RDB snapshots), so a restart
 * with rproc_restart finds the data again. Tests talk to it for setup and checks through
 * hiredis's blocking API (rproc_admin), which is fine in a test. tests/cluster/redis_server.py
 * is the same thing for pytest.
 */
#ifndef RC_TEST_REDIS_PROC_H
#define RC_TEST_REDIS_PROC_H

#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/loop.h"

typedef struct rproc {
    pid_t pid;               /* the server, 0 when stopped */
    char dir[64];            /* its temporary data directory */
    char sock[128];          /* its unix socket */
    int port;                /* its TCP port on 127.0.0.1 */
    const char *pass;        /* --requirepass, NULL for none */
} rproc;

static inline const char *rproc_binary(void)
{
    const char *b = getenv("ROOMCAST_REDIS_SERVER");
    return b && *b ? b : "redis-server";
}

/* rproc_installed says whether the binary can be run (the tests skip when it cannot). */
static inline bool rproc_installed(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", rproc_binary());
    return system(cmd) == 0;
}

static inline int rproc_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static inline void rproc_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* rproc_admin opens a blocking connection over the unix socket (authenticated); NULL if the
 * server does not answer. */
static inline redisContext *rproc_admin(const rproc *p)
{
    redisContext *c = redisConnectUnix(p->sock);
    if (!c || c->err) {
        if (c) redisFree(c);
        return NULL;
    }
    if (p->pass) {
        redisReply *r = redisCommand(c, "AUTH %s", p->pass);
        if (r) freeReplyObject(r);
    }
    return c;
}

/* rproc_cmd runs one admin command and returns its reply (caller frees), NULL on failure. */
static inline redisReply *rproc_cmd(const rproc *p, const char *fmt, ...)
{
    redisContext *c = rproc_admin(p);
    if (!c) return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

static inline int rproc_spawn(rproc *p)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", p->port);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        char log[160];
        snprintf(log, sizeof(log), "%s/redis.log", p->dir);
        const char *argv[32] = {rproc_binary(), "--port", port, "--bind", "127.0.0.1",
                                "--unixsocket", p->sock, "--unixsocketperm", "700",
                                "--dir", p->dir, "--save", "", "--appendonly", "yes",
                                "--appendfsync", "always", "--daemonize", "no",
                                "--logfile", log};
        int n = 21;
        if (p->pass) {
            argv[n++] = "--requirepass";
            argv[n++] = p->pass;
        }
        argv[n] = NULL;
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    p->pid = pid;
    /* Ready when it answers PING (bounded: a broken install fails the test, not hangs it). */
    for (int i = 0; i < 500; i++) {
        redisReply *r = rproc_cmd(p, "PING");
        bool ok = r && r->type != REDIS_REPLY_ERROR;
        if (r) freeReplyObject(r);
        if (ok) return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            p->pid = 0;
            return -1;
        }
        rproc_sleep_ms(20);
    }
    return -1;
}

/* rproc_start creates the directory and starts the server. Returns 0 or -1. */
static inline int rproc_start(rproc *p, const char *pass)
{
    memset(p, 0, sizeof(*p));
    p->pass = pass;
    snprintf(p->dir, sizeof(p->dir), "/tmp/rc-redis-XXXXXX");
    if (!mkdtemp(p->dir)) return -1;
    snprintf(p->sock, sizeof(p->sock), "%s/redis.sock", p->dir);
    if ((p->port = rproc_free_port()) < 0) return -1;
    return rproc_spawn(p);
}

/* rproc_stop ends the server (SIGTERM: it finishes its AOF) and waits for it. */
static inline void rproc_stop(rproc *p)
{
    if (!p->pid) return;
    kill(p->pid, SIGTERM);
    int st;
    waitpid(p->pid, &st, 0);
    p->pid = 0;
}

/* rproc_restart starts it again on the same port, socket and data. */
static inline int rproc_restart(rproc *p)
{
    rproc_stop(p);
    return rproc_spawn(p);
}

/* rproc_destroy stops it and removes its directory. */
static inline void rproc_destroy(rproc *p)
{
    rproc_stop(p);
    if (p->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p->dir);
        if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", p->dir);
        p->dir[0] = '\0';
    }
}

/* ---- running the loop until a condition holds ----------------------------------------- */

typedef bool rproc_cond(void *arg);

struct rproc_wait {
    rc_timer tick;           /* checks the condition every millisecond */
    rproc_cond *cond;
    void *arg;
    uint64_t deadline;       /* CLOCK_MONOTONIC ns */
    bool met;
};

static inline void rproc_tick(rc_loop *loop, rc_timer *t)
{
    struct rproc_wait *w = (struct rproc_wait *)(void *)t;
    if (w->cond(w->arg)) {
        w->met = true;
        rc_loop_stop(loop);
    } else if (rc_loop_now(loop) >= w->deadline) {
        rc_loop_stop(loop);
    } else {
        rc_timer_start(loop, t, rc_loop_now(loop) + RC_NS_PER_MS);
    }
}

/* rproc_run_until runs loop until cond(arg) holds (true) or timeout_ms passed (false). The
 * bound only keeps a broken build from hanging; no test asserts on how long anything took. */
static inline bool rproc_run_until(rc_loop *loop, rproc_cond *cond, void *arg, long timeout_ms)
{
    struct rproc_wait w = {.cond = cond, .arg = arg};
    rc_timer_init(&w.tick, rproc_tick);
    w.deadline = rc_clock_ns() + (uint64_t)timeout_ms * RC_NS_PER_MS;
    if (cond(arg)) return true;
    rc_timer_start(loop, &w.tick, rc_clock_ns());
    rc_loop_run(loop);
    rc_timer_stop(loop, &w.tick);
    return w.met;
}

/* rproc_run_for runs the loop for ms (to show that something does NOT happen). */
static inline bool rproc_never(void *arg) { return false; }
static inline void rproc_run_for(rc_loop *loop, long ms) { rproc_run_until(loop, rproc_never, NULL, ms); }

#endif
