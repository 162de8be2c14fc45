/* joincost.c — join-cost: what one join costs in a big room (issue 12: "join-with-history/state
 * cost for rooms of 1,000 members").
 *
 * The rooms engine (rooms.c) fills one room: --clients members (1,000) join it, each publishes
 * --messages messages (1: 1,000 messages of history, every delivery validated as in fanout),
 * keyed "k<slot mod N>" with --state-keys N, so the room's state holds N keys. Then, with every
 * member still joined and still validating what it gets, this file's hook runs the join modes
 * one after the other: --joiners extra connections (4) each join the room and leave it again,
 * as fast as the server answers, for --mode-time seconds per mode. A mode is what the join
 * asks for: plain, history:N, state, presence, or several of them joined with '+'.
 *
 * Every join is checked completely before its leave is sent: joined (room, last_msg_id = the
 * room's last id, replay_from, the members list or member_count), the replayed messages (the
 * msg_ids from replay_from to last_msg_id in order, each the very message the members saw under
 * that id), the state message (exactly the latest message of each key, in msg_id order, each the
 * message the members saw), then left. Members that joined with "presence":true (--presence)
 * hear of every joiner's join and leave, or of a batch once a second above the server's
 * --presence-limit; at the end of each mode their picture of the room must be the members it
 * really has.
 *
 * Measured per mode, divided by the join/leave cycles completed: server CPU (the scheduler's ns
 * account, proc.c; the tick figure beside it), bytes the joiner read, presence events and bytes
 * the members read, the generator's CPU, and the time from sending join to having everything
 * it asked for. A first "idle" interval of the same length, without joins, gives the server's
 * background CPU (keepalive pings of the members, the once-a-second sweep), reported per second
 * so it can be subtracted; at a few thousand joins a second it is small.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MODES 16

enum jstate { J_CONNECTING, J_IDLE, J_JOINING, J_LEAVING, J_DEAD };

struct jmode {
    char label[40];          /* as given, e.g. "history:100+state" */
    char key[40];            /* label with ':' and '+' as '_', for result keys */
    char extra[96];          /* the join's members beyond type and room */
    bool history, state, presence;
    uint64_t hist_n;
};

struct joiner {
    struct rb_conn conn;     /* must stay first */
    uint32_t idx;
    enum jstate st;
    int64_t client_id;       /* from its first joined; a connection keeps its id */
    bool got_joined;         /* this join's joined arrived */
    int64_t next_id;         /* next replayed msg_id expected */
    int64_t replay_end;      /* last replayed msg_id (the room's last) */
    uint64_t t_join;         /* when join was sent */
};

static struct {
    const struct rb_opts *o;
    struct rb_result *r;
    struct joiner *j;
    uint32_t nj;
    const struct jmode *mode;
    bool running;            /* start a new join after each left */
    int64_t last;            /* the room's last msg_id */
    uint32_t live;           /* members still joined */
    int64_t *state_ids;      /* what a state join must get */
    uint32_t nstate;
    uint64_t cycles;         /* join/leave cycles completed in this mode */
    uint64_t replayed;       /* replayed messages received in this mode */
    uint64_t state_msgs;     /* state entries received in this mode */
    uint64_t jevents;        /* presence events the joiners received in this mode */
    struct rb_hist lat;      /* join sent -> all it asked for received, ns */
    char buf[1024];
} J;

static void bad(const char *fmt, const char *detail)
{
    J.r->order_violations++;
    rb_result_fail(J.r, fmt, detail);
}

static bool my_room(const struct rb_msg *g)
{
    const char *name = rb_rooms_name(0);
    return g->room && g->room_len == strlen(name) && !memcmp(g->room, name, g->room_len);
}

static void start_join(struct joiner *x)
{
    size_t n = rb_msg_join_ext(J.buf, sizeof(J.buf), rb_rooms_name(0), J.mode->extra);
    x->st = J_JOINING;
    x->got_joined = false;
    x->t_join = rb_now_ns();
    rb_conn_send_text(&x->conn, J.buf, n);
}

/* Everything this join asked for has arrived: leave. */
static void complete(struct joiner *x)
{
    rb_hist_add(&J.lat, rb_now_ns() - x->t_join);
    size_t n = rb_msg_leave(J.buf, sizeof(J.buf), rb_rooms_name(0));
    x->st = J_LEAVING;
    rb_conn_send_text(&x->conn, J.buf, n);
}

static void on_joined(struct joiner *x, const struct rb_msg *g)
{
    const struct jmode *md = J.mode;
    if (x->st != J_JOINING || x->got_joined || !my_room(g) || g->last_msg_id != J.last ||
        g->client_id < 0 || (x->client_id >= 0 && g->client_id != x->client_id)) {
        bad("join-cost: unexpected joined%s", "");
        return;
    }
    x->client_id = g->client_id;
    x->got_joined = true;
    x->next_id = J.last + 1;
    x->replay_end = J.last;
    if (md->history) {
        /* At most what was asked for, and from a kept message on. */
        int64_t from = g->replay_from;
        if (from < 1 || from > J.last + 1 || (uint64_t)(J.last + 1 - from) > md->hist_n) {
            bad("join-cost: joined with replay_from out of range%s", "");
            return;
        }
        x->next_id = from;
    }
    if (md->presence) {
        int64_t n = g->member_count;
        if (n < 0) {
            const char *it = NULL;
            struct rb_span el;
            bool b = false, self = false;
            n = 0;
            while (rb_msg_array_next(g->members, &it, &el, &b)) {
                n++;
                self |= rb_msg_int(el) == g->client_id;
            }
            if (b || !g->members.p || !self) {
                bad("join-cost: joined with presence lacks members with its own id%s", "");
                return;
            }
        }
        /* the members, itself, and perhaps other joiners */
        if (n < (int64_t)J.live + 1 || n > (int64_t)(J.live + J.nj)) {
            bad("join-cost: joined with presence counts the wrong members%s", "");
            return;
        }
    }
    if (x->next_id > x->replay_end && !md->state)
        complete(x);
}

static void on_replayed(struct joiner *x, const struct rb_msg *g)
{
    if (x->st != J_JOINING || !x->got_joined || g->msg_id != x->next_id ||
        g->msg_id > x->replay_end || !my_room(g) ||
        !rb_rooms_agrees(0, g->msg_id, g->s, g->q)) {
        bad("join-cost: replayed message out of place or not the room's (msg_id %s)", "");
        return;
    }
    x->next_id++;
    J.replayed++;
    if (x->next_id > x->replay_end && !J.mode->state)
        complete(x);
}

static void on_state(struct joiner *x, const struct rb_msg *g)
{
    if (x->st != J_JOINING || !x->got_joined || x->next_id <= x->replay_end || !J.mode->state ||
        !my_room(g) || g->last_msg_id != J.last) {
        bad("join-cost: unexpected state message%s", "");
        return;
    }
    const char *it = NULL;
    struct rb_span el;
    bool b = false;
    uint32_t i = 0;
    while (rb_msg_array_next(g->messages, &it, &el, &b)) {
        struct rb_msg e;
        if (rb_msg_scan(el.p, el.n, &e) != 0 || i >= J.nstate || e.msg_id != J.state_ids[i] ||
            !rb_rooms_agrees(0, e.msg_id, e.s, e.q)) {
            bad("join-cost: the state is not each key's latest message%s", "");
            return;
        }
        i++;
    }
    if (b || i != J.nstate) {
        bad("join-cost: the state has the wrong number of keys%s", "");
        return;
    }
    J.state_msgs += i;
    complete(x);
}

static void j_open(struct rb_conn *c)
{
    struct joiner *x = (struct joiner *)c;
    x->st = J_IDLE;
}

static void j_text(struct rb_conn *c, const char *p, size_t n)
{
    struct joiner *x = (struct joiner *)c;
    struct rb_msg g;
    if (rb_msg_scan(p, n, &g) != 0) {
        J.r->errors++;
        rb_result_fail(J.r, "join-cost: malformed JSON from server: %.60s", p);
        return;
    }
    if (g.type_len == 1 && g.type[0] == 'b') {
        on_replayed(x, &g);
    } else if (rb_msg_is(g.type, g.type_len, "joined")) {
        on_joined(x, &g);
    } else if (rb_msg_is(g.type, g.type_len, "state")) {
        on_state(x, &g);
    } else if (rb_msg_is(g.type, g.type_len, "presence")) {
        /* other joiners coming and going; only a joiner that asked, about its room, in place */
        if (!J.mode->presence || !x->got_joined || !my_room(&g) || g.after_msg_id != J.last) {
            char d[160];
            snprintf(d, sizeof(d), " (%s, after %llu joins): %.*s",
                     !J.mode->presence ? "not asked for" : !x->got_joined ? "before joined" :
                     "out of place", (unsigned long long)J.cycles, (int)(n < 90 ? n : 90), p);
            bad("join-cost: presence event a joiner did not expect%s", d);
        }
        J.jevents++;
    } else if (rb_msg_is(g.type, g.type_len, "left")) {
        if (x->st != J_LEAVING || !my_room(&g)) {
            bad("join-cost: unexpected left%s", "");
            return;
        }
        J.cycles++;
        x->st = J_IDLE;
        if (J.running)
            start_join(x);
    } else if (rb_msg_is(g.type, g.type_len, "error")) {
        J.r->errors++;
        rb_result_fail(J.r, "join-cost: server error: %.*s", (int)g.code_len,
                       g.code ? g.code : "");
    } else {
        J.r->errors++;
        rb_result_fail(J.r, "join-cost: unexpected message: %.60s", p);
    }
}

static void j_closed(struct rb_conn *c, enum rb_end why)
{
    struct joiner *x = (struct joiner *)c;
    x->st = J_DEAD;
    J.r->errors++;
    rb_result_fail(J.r, "join-cost: joiner %u's connection ended (%s)", x->idx,
                   why == RB_END_ERROR ? c->errmsg : "closed");
}

static const struct rb_handler jhandler = {j_open, j_text, j_closed};

/* "history:100+state" -> a mode; false if a part is unknown. */
static bool parse_mode(const char *s, size_t n, struct jmode *md)
{
    memset(md, 0, sizeof(*md));
    if (n == 0 || n >= sizeof(md->label))
        return false;
    memcpy(md->label, s, n);
    for (size_t i = 0; i < n; i++)
        md->key[i] = (s[i] == ':' || s[i] == '+') ? '_' : s[i];
    char *d = md->extra, *de = md->extra + sizeof(md->extra);
    const char *p = s, *e = s + n;
    while (p < e) {
        const char *q = memchr(p, '+', (size_t)(e - p));
        size_t l = (size_t)((q ? q : e) - p);
        if (l == 5 && !memcmp(p, "plain", 5)) {
        } else if (l == 5 && !memcmp(p, "state", 5)) {
            md->state = true;
            d += snprintf(d, (size_t)(de - d), ",\"state\":true");
        } else if (l == 8 && !memcmp(p, "presence", 8)) {
            md->presence = true;
            d += snprintf(d, (size_t)(de - d), ",\"presence\":true");
        } else if (l > 8 && !memcmp(p, "history:", 8)) {
            char num[24];
            if (l - 8 >= sizeof(num))
                return false;
            memcpy(num, p + 8, l - 8);
            num[l - 8] = 0;
            char *end;
            md->hist_n = strtoull(num, &end, 10);
            if (*end)
                return false;
            md->history = true;
            d += snprintf(d, (size_t)(de - d), ",\"history\":%llu",
                          (unsigned long long)md->hist_n);
        } else {
            return false;
        }
        p += l + 1;
    }
    return true;
}

static void put(struct rb_result *r, const struct jmode *md, const char *what, double v)
{
    char k[64];
    snprintf(k, sizeof(k), "%s_%s", md ? md->key : "idle", what);
    rb_result_num(r, k, v);
}

/* Waits (bounded) until no joiner is in the middle of a cycle. */
static void settle(double max_s)
{
    uint64_t until = rb_now_ns() + (uint64_t)(max_s * 1e9);
    for (;;) {
        bool busy = false;
        for (uint32_t i = 0; i < J.nj; i++)
            busy |= J.j[i].st == J_JOINING || J.j[i].st == J_LEAVING;
        if (!busy || rb_now_ns() > until || J.r->failed)
            return;
        rb_loop_once(20000000);
    }
}

static void run_joincost(const struct rb_opts *o, struct rb_result *r)
{
    struct jmode modes[MAX_MODES];
    uint32_t nmodes = 0;
    for (const char *p = o->modes; *p;) {
        size_t l = strcspn(p, ",");
        if (nmodes == MAX_MODES || !parse_mode(p, l, &modes[nmodes])) {
            rb_result_fail(r, "join-cost: bad mode in '%s'", o->modes);
            return;
        }
        nmodes++;
        p += l + (p[l] == ',');
    }
    memset(&J, 0, sizeof(J));
    J.o = o;
    J.r = r;
    J.last = rb_rooms_last_id(0);
    J.live = rb_rooms_live(0);
    J.nstate = rb_rooms_state_ids(0, &J.state_ids);
    J.nj = o->joiners ? o->joiners : 1;
    J.j = calloc(J.nj, sizeof(*J.j));
    rb_result_num(r, "joiners", J.nj);
    rb_result_num(r, "mode_time", o->mode_time);
    rb_result_num(r, "room_last_msg_id", (double)J.last);
    rb_result_num(r, "room_members", J.live);
    rb_result_num(r, "room_state_keys", J.nstate);
    rb_result_str(r, "modes", o->modes);

    /* The joiners connect after the members, from source addresses of their own. */
    for (uint32_t i = 0; i < J.nj; i++) {
        J.j[i].conn.fd = -1;
        J.j[i].idx = i;
        J.j[i].client_id = -1;
        J.j[i].st = J_CONNECTING;
        int rc = rb_conn_start(&J.j[i].conn, &jhandler, &o->target, o->transports[0],
                               rb_src_addr(100000 + i), 0);
        if (rc < 0) {
            r->errors++;
            rb_result_fail(r, "join-cost: connect: %s", strerror(-rc));
            J.j[i].st = J_DEAD;
        }
    }
    uint64_t until = rb_now_ns() + 10000000000ull;
    for (;;) {
        bool waiting = false;
        for (uint32_t i = 0; i < J.nj; i++)
            waiting |= J.j[i].st == J_CONNECTING;
        if (!waiting || r->failed)
            break;
        if (rb_now_ns() > until) {
            rb_result_fail(r, "join-cost: joiners did not connect");
            break;
        }
        rb_loop_once(20000000);
    }

    if (!o->quiet)
        fprintf(stderr, "\njoin-cost: room of %u members, last_msg_id %lld, %u state keys, %u "
                        "joiners, %.1f s per mode\n  %-22s %8s %10s %10s %10s %10s %10s %9s "
                        "%9s\n", J.live, (long long)J.last, J.nstate, J.nj, o->mode_time, "mode",
                "joins", "srv us/j", "tick us/j", "B to joiner", "mbr events", "mbr B/j",
                "p50 us", "gen us/j");
    /* Mode -1 is the idle interval: no joins, the server's background. */
    for (int mi = -1; mi < (int)nmodes && !r->failed; mi++) {
        const struct jmode *md = mi < 0 ? NULL : &modes[mi];
        static const struct jmode none = {.label = "idle"};
        J.mode = md ? md : &none;
        J.cycles = J.replayed = J.state_msgs = J.jevents = 0;
        rb_hist_init(&J.lat);
        struct rb_proc_sample s0, s1;
        uint64_t jrx0 = 0, jrx1 = 0, mrx0 = rb_rooms_rx_bytes(0), mev0 = rb_rooms_presence_events(0);
        for (uint32_t i = 0; i < J.nj; i++)
            jrx0 += J.j[i].conn.rx_bytes;
        rb_proc_sample(o->pid, &s0);
        double g0 = rb_self_cpu_s();
        uint64_t t0 = rb_now_ns(), stop = t0 + (uint64_t)(o->mode_time * 1e9);
        J.running = md != NULL;
        if (md)
            for (uint32_t i = 0; i < J.nj; i++)
                if (J.j[i].st == J_IDLE)
                    start_join(&J.j[i]);
        while (rb_now_ns() < stop && !r->failed)
            rb_loop_once((int64_t)(stop - rb_now_ns()));
        J.running = false;
        settle(10);
        uint64_t t1 = rb_now_ns();
        rb_proc_sample(o->pid, &s1);
        double g1 = rb_self_cpu_s();
        for (uint32_t i = 0; i < J.nj; i++)
            jrx1 += J.j[i].conn.rx_bytes;
        uint64_t mrx1 = rb_rooms_rx_bytes(0), mev1 = rb_rooms_presence_events(0);
        double wall = (double)(t1 - t0) / 1e9;
        double run = s0.ok && s1.ok && s0.run_s >= 0 ? s1.run_s - s0.run_s : -1;
        double tick = s0.ok && s1.ok ? s1.cpu_s - s0.cpu_s : -1;
        if (!md) {
            put(r, NULL, "srv_us_per_s", run >= 0 ? run * 1e6 / wall : -1);
            put(r, NULL, "mbr_B_per_s", (double)(mrx1 - mrx0) / wall);
            if (!o->quiet)
                fprintf(stderr, "  %-22s %8s %10.0f (server us of CPU per second, background)\n",
                        "idle", "-", run * 1e6 / wall);
            continue;
        }
        double c = J.cycles ? (double)J.cycles : 1;
        put(r, md, "n", (double)J.cycles);
        put(r, md, "us", run >= 0 ? run * 1e6 / c : -1);
        put(r, md, "tick_us", tick >= 0 ? tick * 1e6 / c : -1);
        put(r, md, "B", (double)(jrx1 - jrx0) / c);
        put(r, md, "replayed", (double)J.replayed / c);
        put(r, md, "state_msgs", (double)J.state_msgs / c);
        put(r, md, "ev", (double)(mev1 - mev0) / c);
        put(r, md, "memB", (double)(mrx1 - mrx0) / c);
        put(r, md, "jev", (double)J.jevents / c);
        put(r, md, "p50_us", (double)rb_hist_quantile(&J.lat, 0.5) / 1e3);
        put(r, md, "p99_us", (double)rb_hist_quantile(&J.lat, 0.99) / 1e3);
        put(r, md, "gen_us", (g1 - g0) * 1e6 / c);
        put(r, md, "srv_pct", run >= 0 ? 100 * run / wall : -1);
        if (!o->quiet)
            fprintf(stderr, "  %-22s %8llu %10.1f %10.1f %10.0f %10.1f %10.0f %9.0f %9.1f\n",
                    md->label, (unsigned long long)J.cycles, run * 1e6 / c, tick * 1e6 / c,
                    (double)(jrx1 - jrx0) / c, (double)(mev1 - mev0) / c,
                    (double)(mrx1 - mrx0) / c, (double)rb_hist_quantile(&J.lat, 0.5) / 1e3,
                    (g1 - g0) * 1e6 / c);
        if (!J.cycles) {
            r->errors++;
            rb_result_fail(r, "join-cost: no join completed in mode %s", md->label);
        }
        /* The members that asked for presence must now see the room as it is (above the
         * presence limit only after the next batch, up to a second later). */
        if (o->presence_every) {
            uint32_t off = rb_rooms_presence_check(0, (int64_t)J.live, 2.5);
            if (off) {
                r->order_violations += off;
                rb_result_fail(r, "join-cost: after %s, %u members' presence disagrees with "
                                  "the room", md->label, off);
            }
        }
    }
    for (uint32_t i = 0; i < J.nj; i++)
        rb_conn_abort(&J.j[i].conn);
    free(J.j);
    free(J.state_ids);
    J.j = NULL;
    J.state_ids = NULL;
}

void rb_run_joincost(const struct rb_opts *o, struct rb_result *r)
{
    struct rb_opts x = *o;
    x.rooms = 1;
    x.after = run_joincost;
    rb_run_rooms(&x, r, 0);
}
