/* redis.c — a hiredis async connection on roomcast's loop; see redis.h.
 *
 * Lifetime of one connection (hiredis 0.14.1 semantics, which this file relies on):
 *   connect_now: redisAsyncConnect[Unix] starts a non-blocking connect; we attach our hooks,
 *       queue the handshake (hiredis buffers it until the socket connects) and arm write
 *       interest ourselves, because 0.14 only notices the finished connect on the first
 *       writable event;
 *   the handshake's last reply (PING) marks the connection up;
 *   however it ends — a read/write error, EOF, the connect failing or timing out,
 *   rc_redis_reset, rc_redis_free — hiredis frees the context through __redisAsyncFree, which
 *   first runs every pending callback with reply NULL and then calls our cleanup hook exactly
 *   once. The cleanup hook is therefore the one place where a connection is declared lost
 *   (conn_lost): it unregisters the fd (before hiredis closes it), reports "down" if the
 *   connection was up, and arms the reconnect timer.
 * hiredis defers a free requested from inside one of its callbacks (REDIS_IN_CALLBACK) until
 * the callback returns, which is what makes rc_redis_reset safe there.
 */
#include "cluster/redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "core/log.h"

/* Reads of the socket per wake-up (each up to hiredis's 16 KB): see on_io. */
enum { READ_BUDGET = 64 };

#define DEFAULT_CONNECT_TIMEOUT (2 * RC_NS_PER_SEC)
#define DEFAULT_BACKOFF_MIN (100 * RC_NS_PER_MS)
#define DEFAULT_BACKOFF_MAX (5 * RC_NS_PER_SEC)

/* One queued command's callback. Kept on a free list: a publish-heavy node sends a command per
 * message, and the list makes that allocation-free once warm. */
struct rc_redis__req {
    struct rc_redis__req *next; /* free list link */
    rc_redis *r;                /* the connection (hiredis gives callbacks only privdata) */
    rc_redis_reply_cb *cb;      /* the owner's callback, may be NULL */
    void *arg;                  /* its argument */
};

struct rc_redis {
    rc_loop *loop;              /* the loop everything runs on */
    rc_clwire_url url;          /* the URL, host replaced by its resolved address */
    char desc[RC_CLWIRE_HOST_MAX + RC_CLWIRE_PATH_MAX + 48]; /* URL without password, logs */
    rc_redis_opts o;            /* owner's options, defaults filled in */
    char client_name[96];       /* CLIENT SETNAME value, "" for none */
    redisAsyncContext *ac;      /* the live context, NULL between connections */
    rc_io io;                   /* hiredis's socket; registered with the loop while `want` != 0 */
    bool io_on;                 /* io is registered with epoll */
    uint32_t want;              /* RC_EV_READ/RC_EV_WRITE as hiredis asked through the hooks */
    bool up;                    /* handshake completed on the live context */
    bool handshaking;           /* the live context is in its handshake (early commands OK) */
    bool freeing;               /* rc_redis_free is running: no reconnect, no state callback */
    rc_timer connect_timer;     /* connect + handshake deadline of the live context */
    rc_timer retry_timer;       /* armed between connections: when to try again */
    uint64_t backoff_ns;        /* next reconnect delay */
    struct rc_redis__req *free_reqs; /* recycled callback records */
    rc_redis_stats st;          /* counters */
};

/* ---- the hiredis event hooks: interest is a bit set, applied to one rc_io ---------------- */

static void apply_interest(rc_redis *r)
{
    if (!r->ac) return;
    int rc = 0;
    if (r->want == 0) {
        if (r->io_on) rc_io_stop(r->loop, &r->io);
        r->io_on = false;
    } else if (!r->io_on) {
        rc = rc_io_start(r->loop, &r->io, r->want);
        r->io_on = rc == 0;
    } else {
        rc = rc_io_set(r->loop, &r->io, r->want);
    }
    /* epoll refusing a socket it accepted a moment ago means the program is broken. */
    if (rc < 0) rc_error("redis %s: cannot watch its socket: %s", r->o.name, strerror(-rc));
}

/* The hooks are idempotent, as hiredis requires: they set or clear a bit, and rc_io_set makes
 * no system call when the interest did not change (hiredis calls addRead after every read). */
static void hook_add_read(void *p)
{
    rc_redis *r = p;
    r->want |= RC_EV_READ;
    apply_interest(r);
}

static void hook_del_read(void *p)
{
    rc_redis *r = p;
    r->want &= ~(uint32_t)RC_EV_READ;
    apply_interest(r);
}

static void hook_add_write(void *p)
{
    rc_redis *r = p;
    r->want |= RC_EV_WRITE;
    apply_interest(r);
}

static void hook_del_write(void *p)
{
    rc_redis *r = p;
    r->want &= ~(uint32_t)RC_EV_WRITE;
    apply_interest(r);
}

static void conn_lost(rc_redis *r);

/* hook_cleanup: hiredis is freeing the context (pending callbacks have run); the fd is still
 * open and closes right after we return. */
static void hook_cleanup(void *p)
{
    rc_redis *r = p;
    if (r->io_on) rc_io_stop(r->loop, &r->io);
    r->io_on = false;
    r->want = 0;
    r->ac = NULL;
    conn_lost(r);
}

static void on_io(rc_loop *loop, rc_io *io, uint32_t events)
{
    rc_redis *r = (rc_redis *)(void *)((char *)io - offsetof(rc_redis, io));
    redisAsyncContext *ac = r->ac;
    if (!ac) return;
    /* An error or hang-up is handled by reading: the read sees the error or the EOF.
     * hiredis 0.14 reads at most 16 KB per call (about 80 channel messages), while the same loop
     * iteration reads every ready client socket: one read per wake-up let a node fall behind its
     * own subscription under load well below its capacity (Redis's output buffer for it grew to
     * megabytes, the heartbeat through it timed out, publishes answered `unavailable`). So keep
     * reading while the socket holds bytes, up to READ_BUDGET reads (1 MiB) per wake-up, which
     * still leaves the loop's other clients their turn. */
    if (events & (RC_EV_READ | RC_EV_ERROR | RC_EV_HANGUP)) {
        redisAsyncHandleRead(ac);
        for (int i = 1; i < READ_BUDGET && r->ac == ac; i++) {
            int avail = 0;
            if (ioctl(ac->c.fd, FIONREAD, &avail) < 0 || avail <= 0) break;
            redisAsyncHandleRead(ac);
        }
    }
    /* The read may have ended the connection (cleanup cleared r->ac); no new one can have been
     * made meanwhile, as reconnecting waits for retry_timer. */
    if ((events & RC_EV_WRITE) && r->ac == ac) {
        r->st.writes++;
        redisAsyncHandleWrite(ac);
    }
}

/* ---- connection life --------------------------------------------------------------------- */

static void conn_lost(rc_redis *r)
{
    rc_timer_stop(r->loop, &r->connect_timer);
    bool was_up = r->up;
    r->up = false;
    r->handshaking = false;
    if (was_up) r->st.disconnects++;
    else r->st.failures++;
    if (r->freeing) return;
    if (was_up) {
        rc_warn("redis %s: connection to %s lost; reconnecting", r->o.name, r->desc);
        if (r->o.on_state) r->o.on_state(r, false, r->o.arg);
    } else {
        rc_debug("redis %s: cannot connect to %s; retrying in %llu ms", r->o.name, r->desc,
                 (unsigned long long)(r->backoff_ns / RC_NS_PER_MS));
    }
    /* The only place a reconnect is armed: once per ended connection or failed attempt. */
    rc_timer_start(r->loop, &r->retry_timer, rc_loop_now(r->loop) + r->backoff_ns);
    r->backoff_ns *= 2;
    if (r->backoff_ns > r->o.backoff_max_ns) r->backoff_ns = r->o.backoff_max_ns;
}

static struct rc_redis__req *req_get(rc_redis *r, rc_redis_reply_cb *cb, void *arg)
{
    struct rc_redis__req *q = r->free_reqs;
    if (q) r->free_reqs = q->next;
    else if (!(q = malloc(sizeof(*q)))) return NULL;
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    return q;
}

static void req_put(rc_redis *r, struct rc_redis__req *q)
{
    q->next = r->free_reqs;
    r->free_reqs = q;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rc_redis__req *q = priv;
    rc_redis *r = q->r;
    rc_redis_reply_cb *cb = q->cb;
    void *arg = q->arg;
    req_put(r, q);
    if (cb) cb(r, reply, arg);
}

static int send_cmd(rc_redis *r, rc_redis_reply_cb *cb, void *arg, int argc,
                    const char *const *argv, const size_t *lens)
{
    struct rc_redis__req *q = req_get(r, cb, arg);
    if (!q) return -ENOMEM;
    /* hiredis's prototype takes `const char **`; it does not write through it. */
    if (redisAsyncCommandArgv(r->ac, on_reply, q, argc, (const char **)argv, lens) != REDIS_OK) {
        req_put(r, q);
        /* Refused because the context is being torn down (or out of memory formatting). */
        return -ENOTCONN;
    }
    r->st.commands++;
    return 0;
}

int rc_redis_command(rc_redis *r, rc_redis_reply_cb *cb, void *arg, int argc,
                     const char *const *argv, const size_t *lens)
{
    if (!r->up || !r->ac) return -ENOTCONN;
    return send_cmd(r, cb, arg, argc, argv, lens);
}

int rc_redis_formatted(rc_redis *r, rc_redis_reply_cb *cb, void *arg, const char *cmd,
                       size_t len)
{
    if (!r->up || !r->ac) return -ENOTCONN;
    struct rc_redis__req *q = req_get(r, cb, arg);
    if (!q) return -ENOMEM;
    if (redisAsyncFormattedCommand(r->ac, on_reply, q, cmd, len) != REDIS_OK) {
        req_put(r, q);
        return -ENOTCONN;
    }
    r->st.commands++;
    return 0;
}

int rc_redis_command_early(rc_redis *r, rc_redis_reply_cb *cb, void *arg, int argc,
                           const char *const *argv, const size_t *lens)
{
    if (!r->ac || (!r->handshaking && !r->up)) return -ENOTCONN;
    return send_cmd(r, cb, arg, argc, argv, lens);
}

void rc_redis_reset(rc_redis *r)
{
    redisAsyncContext *ac = r->ac;
    if (!ac || (ac->c.flags & REDIS_FREEING)) return;
    /* redisAsyncFree, not redisAsyncDisconnect: the latter waits for pending replies, and a
     * connection being reset is not trusted to deliver them. */
    redisAsyncFree(ac);
}

static bool reply_ok(const redisReply *rp)
{
    return rp && rp->type != REDIS_REPLY_ERROR;
}

static void on_handshake_reply(rc_redis *r, redisReply *rp, void *arg)
{
    const char *what = arg;
    if (!rp) return; /* the connection is going away; conn_lost reports it */
    if (rp->type == REDIS_REPLY_ERROR) {
        rc_error("redis %s: %s refused by %s: %.*s", r->o.name, what, r->desc, (int)rp->len,
                 rp->str);
        rc_redis_reset(r);
    }
}

static void on_ping_reply(rc_redis *r, redisReply *rp, void *arg)
{
    if (!reply_ok(rp) || !r->handshaking) {
        if (rp) rc_redis_reset(r);
        return;
    }
    rc_timer_stop(r->loop, &r->connect_timer);
    r->handshaking = false;
    r->up = true;
    r->backoff_ns = r->o.backoff_min_ns;
    r->st.connects++;
    rc_info("redis %s: connected to %s", r->o.name, r->desc);
    if (r->o.on_state) r->o.on_state(r, true, r->o.arg);
}

/* Names of the handshake steps, for on_handshake_reply's messages (mutable because callback
 * arguments are `void *`). */
static char step_auth[] = "AUTH", step_select[] = "SELECT", step_name[] = "CLIENT SETNAME";

static void queue_handshake(rc_redis *r)
{
    r->handshaking = true;
    if (r->url.has_pass) {
        const char *argv[3] = {"AUTH", r->url.user, r->url.pass};
        size_t lens[3] = {4, strlen(r->url.user), strlen(r->url.pass)};
        if (r->url.user[0]) send_cmd(r, on_handshake_reply, step_auth, 3, argv, lens);
        else send_cmd(r, on_handshake_reply, step_auth, 2, (const char *const[]){"AUTH", r->url.pass},
                      (const size_t[]){4, lens[2]});
    }
    if (r->url.db) {
        char db[16];
        int n = snprintf(db, sizeof(db), "%u", (unsigned)r->url.db);
        send_cmd(r, on_handshake_reply, step_select, 2, (const char *const[]){"SELECT", db},
                 (const size_t[]){6, (size_t)n});
    }
    if (r->client_name[0])
        send_cmd(r, on_handshake_reply, step_name, 3,
                 (const char *const[]){"CLIENT", "SETNAME", r->client_name},
                 (const size_t[]){6, 7, strlen(r->client_name)});
    if (r->o.on_handshake) r->o.on_handshake(r, r->o.arg);
    /* The handshake may have been cut short already (an early command failed to queue). */
    if (r->ac && r->handshaking)
        send_cmd(r, on_ping_reply, NULL, 1, (const char *const[]){"PING"}, (const size_t[]){4});
}

static void connect_now(rc_redis *r)
{
    redisAsyncContext *ac = r->url.is_unix ? redisAsyncConnectUnix(r->url.path)
                                           : redisAsyncConnect(r->url.host, r->url.port);
    if (!ac) {
        rc_error("redis %s: out of memory connecting to %s", r->o.name, r->desc);
        conn_lost(r);
        return;
    }
    if (ac->err) {
        rc_debug("redis %s: cannot connect to %s: %s", r->o.name, r->desc, ac->errstr);
        redisAsyncFree(ac); /* no hooks attached yet: no cleanup call */
        conn_lost(r);
        return;
    }
    r->ac = ac;
    ac->data = r;
    ac->ev.data = r;
    ac->ev.addRead = hook_add_read;
    ac->ev.delRead = hook_del_read;
    ac->ev.addWrite = hook_add_write;
    ac->ev.delWrite = hook_del_write;
    ac->ev.cleanup = hook_cleanup;
    rc_io_init(&r->io, ac->c.fd, on_io);
    r->io_on = false;
    r->want = 0;
    rc_timer_start(r->loop, &r->connect_timer, rc_loop_now(r->loop) + r->o.connect_timeout_ns);
    queue_handshake(r);
    if (r->ac == ac) hook_add_write(r); /* see the file comment: 0.14 connects on writable */
}

static void on_retry_timer(rc_loop *loop, rc_timer *t)
{
    rc_redis *r = (rc_redis *)(void *)((char *)t - offsetof(rc_redis, retry_timer));
    if (!r->ac) connect_now(r);
}

static void on_connect_timer(rc_loop *loop, rc_timer *t)
{
    rc_redis *r = (rc_redis *)(void *)((char *)t - offsetof(rc_redis, connect_timer));
    if (!r->ac || r->up) return;
    rc_warn("redis %s: connecting to %s timed out after %llu ms", r->o.name, r->desc,
            (unsigned long long)(r->o.connect_timeout_ns / RC_NS_PER_MS));
    rc_redis_reset(r);
}

/* ---- public ------------------------------------------------------------------------------ */

/* resolve replaces a host name by its first address, so that reconnecting never blocks on
 * DNS (hiredis 0.14 calls getaddrinfo on every connect). Numeric hosts stay as they are. */
static int resolve(rc_clwire_url *u, char *err, size_t cap)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(u->host, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(err, cap, "cannot resolve redis host '%s': %s", u->host, gai_strerror(rc));
        return -1;
    }
    const void *a = res->ai_family == AF_INET6
                        ? (const void *)&((struct sockaddr_in6 *)(void *)res->ai_addr)->sin6_addr
                        : (const void *)&((struct sockaddr_in *)(void *)res->ai_addr)->sin_addr;
    const char *ok = inet_ntop(res->ai_family, a, u->host, sizeof(u->host));
    freeaddrinfo(res);
    if (!ok) {
        snprintf(err, cap, "cannot use the address of redis host '%s'", u->host);
        return -1;
    }
    return 0;
}

rc_redis *rc_redis_new(rc_loop *loop, const rc_clwire_url *url, const rc_redis_opts *o,
                       char *err, size_t cap)
{
    rc_redis *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    r->loop = loop;
    r->url = *url;
    rc_clwire_url_describe(url, r->desc, sizeof(r->desc));
    if (!url->is_unix && resolve(&r->url, err, cap) < 0) goto err;
    r->o = *o;
    if (!r->o.name) r->o.name = "connection";
    if (o->client_name) snprintf(r->client_name, sizeof(r->client_name), "%s", o->client_name);
    r->o.client_name = NULL; /* not kept: the copy above is */
    if (!r->o.connect_timeout_ns) r->o.connect_timeout_ns = DEFAULT_CONNECT_TIMEOUT;
    if (!r->o.backoff_min_ns) r->o.backoff_min_ns = DEFAULT_BACKOFF_MIN;
    if (!r->o.backoff_max_ns) r->o.backoff_max_ns = DEFAULT_BACKOFF_MAX;
    if (r->o.backoff_max_ns < r->o.backoff_min_ns) r->o.backoff_max_ns = r->o.backoff_min_ns;
    r->backoff_ns = r->o.backoff_min_ns;
    rc_io_init(&r->io, -1, on_io);
    rc_timer_init(&r->connect_timer, on_connect_timer);
    rc_timer_init(&r->retry_timer, on_retry_timer);
    return r;
err:
    free(r);
    return NULL;
}

void rc_redis_start(rc_redis *r)
{
    if (!r->ac && !rc_timer_armed(&r->retry_timer)) connect_now(r);
}

void rc_redis_free(rc_redis *r)
{
    if (!r) return;
    r->freeing = true;
    rc_timer_stop(r->loop, &r->retry_timer);
    rc_timer_stop(r->loop, &r->connect_timer);
    if (r->ac) {
        redisAsyncFree(r->ac); /* pending callbacks run with NULL, then hook_cleanup */
    }
    while (r->free_reqs) {
        struct rc_redis__req *q = r->free_reqs;
        r->free_reqs = q->next;
        free(q);
    }
    free(r);
}

bool rc_redis_up(const rc_redis *r) { return r->up; }

void rc_redis_flush(rc_redis *r)
{
    redisAsyncContext *ac = r->ac;
    if (ac && (r->want & RC_EV_WRITE) && (ac->c.flags & REDIS_CONNECTED)) {
        r->st.writes++;
        redisAsyncHandleWrite(ac);
    }
}

struct redisAsyncContext *rc_redis_context(rc_redis *r) { return r->ac; }

void rc_redis_stats_get(const rc_redis *r, rc_redis_stats *out) { *out = r->st; }

const char *rc_redis_describe(const rc_redis *r) { return r->desc; }
