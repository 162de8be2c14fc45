/* bench.h — shared pieces of the roomcast load generator (build/roomcast-bench).
 *
 * The generator is self-contained: it shares no code with src/ so that a bug in roomcast's
 * codecs cannot hide itself by being present on both ends of the wire. Layers, in reading order:
 *
 *   hist.c      log-linear latency histogram
 *   proc.c      /proc readers (server CPU and RSS), own CPU, clocks, raising RLIMIT_NOFILE
 *   conn.c      the epoll loop and client WebSocket connections (handshake, frames, masking)
 *   tcp.c       client connections to the raw TCP port (docs/tcp.md): line and framed modes
 *   tls.c       TLS under any of them (--tls, OpenSSL), and the tls-handshakes scenario
 *   sio.c       Socket.IO (v5 over Engine.IO v4, websocket only) on top of the WebSocket client
 *   msg.c       the JSON subset the room protocol needs: building publishes, scanning replies
 *   report.c    one result: the JSON line and the readable table
 *   rooms.c     fanout, pingpong and slow: rooms of clients publishing and validating order
 *   idle.c      many idle connections, memory per connection, then a liveness sample
 *   churn.c     connect -> join -> publish -> leave -> close, as many per second as possible
 *   main.c      options and scenario dispatch
 *
 * Internal symbols use the rb_ prefix ("roomcast bench"); nothing here is a library.
 */
#ifndef RB_BENCH_H
#define RB_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/types.h>

/* ---- histogram (hist.c) ------------------------------------------------------------------ */

/* Values are nanoseconds. Each power of two is split into RB_HIST_SUB linear sub-buckets, so a
 * recorded value is known to within 1/RB_HIST_SUB (about 3%) whatever its magnitude. */
#define RB_HIST_SUB_BITS 5
#define RB_HIST_SUB (1u << RB_HIST_SUB_BITS)
#define RB_HIST_BUCKETS (64u * RB_HIST_SUB)

struct rb_hist {
    uint64_t count[RB_HIST_BUCKETS]; /* number of values per bucket */
    uint64_t n;                      /* values recorded */
    uint64_t max;                    /* largest value recorded, exact, ns */
    uint64_t min;                    /* smallest value recorded, exact, ns */
    double sum;                      /* sum of values, ns (for the mean) */
};

void rb_hist_init(struct rb_hist *h);
void rb_hist_add(struct rb_hist *h, uint64_t v);
void rb_hist_merge(struct rb_hist *dst, const struct rb_hist *src);
/* Value at quantile q (0..1): the upper edge of the bucket holding it, capped at max. */
uint64_t rb_hist_quantile(const struct rb_hist *h, double q);

/* ---- process facts (proc.c) -------------------------------------------------------------- */

uint64_t rb_now_ns(void); /* CLOCK_MONOTONIC */

struct rb_proc_sample {
    bool ok;          /* the process existed and /proc could be read */
    double cpu_s;     /* utime + stime of the whole process (all threads), seconds: 10 ms ticks */
    double run_s;     /* time on CPU of its live threads from /proc/PID/task/TID/schedstat, in ns
                       * (the scheduler's sum_exec_runtime): exact, so short intervals (a few
                       * thousand joins) can be measured; -1 when unavailable */
    long rss_kb;      /* VmRSS */
    long hwm_kb;      /* VmHWM: peak RSS */
};

void rb_proc_sample(int pid, struct rb_proc_sample *out);
double rb_self_cpu_s(void);        /* own user + system time */
long rb_raise_nofile(void);        /* soft RLIMIT_NOFILE := hard; returns the new soft limit */

/* ---- byte buffer (conn.c) ---------------------------------------------------------------- */

/* Bytes [off, len) are live; [len, cap) is free space. */
struct rb_buf {
    char *data;  /* heap storage, NULL until first use */
    size_t off;  /* first unconsumed byte */
    size_t len;  /* end of live bytes */
    size_t cap;  /* allocated size */
};

void rb_buf_reserve(struct rb_buf *b, size_t extra);
void rb_buf_append(struct rb_buf *b, const void *p, size_t n);
void rb_buf_consume(struct rb_buf *b, size_t n);
void rb_buf_release(struct rb_buf *b);

/* ---- connections and the loop (conn.c) --------------------------------------------------- */

/* How a connection talks to the server. The scenarios do not care: they send and receive whole
 * JSON messages through the same calls whatever the wire. */
enum rb_transport {
    RB_TR_WS,       /* WebSocket (RFC 6455) on the HTTP port */
    RB_TR_LINE,     /* raw TCP port, line mode: one JSON object per '\n'-terminated line */
    RB_TR_FRAMED,   /* raw TCP port, framed mode: preamble 00 52 43 01, then u32 LE length,
                     * u8 opcode (WebSocket's), payload */
    RB_TR_SIO,      /* Socket.IO v5 over Engine.IO v4, websocket transport only (sio.c): the
                     * room protocol's JSON objects travel as the argument of an "m" event,
                     * 42["m",{...}], both ways; for the Socket.IO peer (sio_server.mjs) */
    RB_TR__COUNT
};

/* Name of a transport as the command line spells it: "ws", "line", "framed". */
const char *rb_transport_name(enum rb_transport tr);

enum rb_state {
    RB_IDLE,        /* not started, or finished and closed */
    RB_CONNECTING,  /* non-blocking connect() in progress */
    RB_HANDSHAKE,   /* WebSocket: upgrade request sent, waiting for 101; framed TCP: preamble
                     * sent, waiting for the server's (line mode has no handshake) */
    RB_OPEN,        /* open: messages flow */
    RB_CLOSING,     /* we sent a close (frame, or our EOF in line mode), waiting for the
                     * server's close or EOF */
};

/* Why a connection ended, passed to the closed callback. */
enum rb_end {
    RB_END_CLOSE_FRAME, /* the server sent a close frame, or a close line in line mode (code in
                         * close_code) */
    RB_END_EOF,         /* TCP EOF without a close frame */
    RB_END_ERROR,       /* connect/read/write error, bad handshake or a malformed frame */
};

struct rb_conn;

/* What a scenario does with its connections. All callbacks are optional. A callback may send,
 * close or abort its connection, but must not rb_conn_start() it again: the loop may still be
 * looking at the old socket's buffers. Restart from the scenario's own loop instead. */
struct rb_handler {
    void (*open)(struct rb_conn *c);                               /* handshake done */
    void (*text)(struct rb_conn *c, const char *p, size_t n);      /* one text message */
    void (*closed)(struct rb_conn *c, enum rb_end why);            /* fd already closed */
};

struct rb_conn {
    int fd;                    /* socket, -1 when not connected */
    enum rb_state state;       /* see enum rb_state */
    enum rb_transport tr;      /* the wire, fixed by rb_conn_start */
    const struct rb_handler *h;/* callbacks */
    void *user;                /* the scenario's object for this connection */
    uint32_t mask;             /* masking key for frames we send (fixed per connection) */
    uint32_t events;           /* epoll interest currently registered */
    bool paused;               /* true: do not read (a stuck reader) */
    bool detached;             /* paused and hung up: removed from epoll until resumed */
    bool dirty;                /* on the loop's flush list */
    bool close_sent;           /* our close frame is queued */
    bool shut_pending;         /* line mode: shut our write side once out is flushed */
    int close_code;            /* code of the server's close frame, 0 if none */
    uint64_t rx_bytes;         /* bytes read from the server (all of them: frames, lines) */
    bool deflate;              /* WebSocket: the server accepted permessage-deflate */
    char accept[32];           /* WebSocket: expected Sec-WebSocket-Accept, NUL-terminated */
    struct rb_buf in;          /* partial frame or handshake bytes carried between reads */
    struct rb_buf out;         /* bytes waiting for the socket */
    struct rb_buf frag;        /* a fragmented message being reassembled */
    struct rb_conn *next_dirty;/* flush list link */
    char errmsg[64];           /* first error seen, for diagnostics */
    struct ssl_st *ssl;        /* TLS session (tls.c) when --tls, else NULL */
    bool tls_hs;               /* TLS: the handshake is not finished yet */
    bool tls_want_write;       /* TLS: the handshake waits for writability */
    int tls_retry;             /* TLS: length of an SSL_write that must be repeated, or 0 */
    uint8_t sio_state;         /* Socket.IO: 0 waiting for Engine.IO's open packet, 1 our "40"
                                * sent, waiting for the server's, 2 connected (open called) */
};

struct rb_target {
    struct sockaddr_in addr;   /* server address: the HTTP/WebSocket port */
    struct sockaddr_in tcp;    /* the raw TCP port (docs/tcp.md); sin_port 0 when not given */
    char host[64];             /* Host header value */
};

int rb_loop_init(void);
/* Spread source addresses over 127.0.0.0/8 so one process can hold more connections than one
 * address has ephemeral ports: connection n binds to 127.0.(n / 250 % 250).(n % 250 + 1). */
uint32_t rb_src_addr(uint32_t n);
/* Start connecting over transport tr (WebSocket to t->addr, the others to t->tcp); 0 or
 * -errno. src_ip is in host byte order, 0 for "let the kernel pick". The open callback runs
 * once messages may be sent: after the upgrade (WebSocket), the server's preamble (framed), or
 * connect() (line). */
int rb_conn_start(struct rb_conn *c, const struct rb_handler *h, const struct rb_target *t,
                  enum rb_transport tr, uint32_t src_ip, int rcvbuf);
/* Queue one text message (a JSON object without '\n'): a masked text frame, a line, or a text
 * frame of the TCP port. Flushed after the current loop turn. */
void rb_conn_send_text(struct rb_conn *c, const char *p, size_t n);
/* Queue a close with this code (line mode has none: our write side is shut once the output is
 * flushed); the connection ends on the server's close or EOF. */
void rb_conn_send_close(struct rb_conn *c, int code);
/* Close the socket now without any WebSocket close (abort). No callback. */
void rb_conn_abort(struct rb_conn *c);
/* Stop or resume reading this connection (a stuck reader). */
void rb_conn_pause(struct rb_conn *c, bool paused);
/* Run one loop turn: wait at most timeout_ns (negative: forever), dispatch, flush. */
int rb_loop_once(int64_t timeout_ns);
/* Busy-poll the loop instead of sleeping in epoll. On loopback the kernel charges the cost of
 * waking a sleeping receiver (an inter-processor interrupt, a VM exit on this virtual machine)
 * to the process that writes, so a server's CPU per delivery depends on whether the generator
 * happened to be asleep. A spinning generator is never asleep: the server pays what it would pay
 * for remote clients, and the generator's own CPU reads 100%. */
extern bool rb_spin;
/* --deflate: WebSocket connections offer permessage-deflate (with client_no_context_takeover)
 * and inflate the compressed frames they receive; what they send stays uncompressed. */
extern bool rb_deflate;
/* --game-json: publishes carry pose-like JSON (position, rotation, velocity, animation, hp with
 * fresh numbers each time) before the padding, instead of padding alone: text that compresses
 * like a game's, not like a run of 'x'. */
extern bool rb_game_json;
/* Connections that ended with RB_END_ERROR since start, and handshakes refused. */
extern uint64_t rb_conn_errors;
extern uint64_t rb_frame_errors;   /* malformed frames from the server (protocol violations) */
/* CLOCK_MONOTONIC ns at which the bytes being parsed were read: the receive time of every
 * message in them, taken once per read rather than once per message (a clock read per delivery
 * was 4% of the generator's CPU in the fanout profile). */
extern uint64_t rb_rx_ns;

/* Internal to conn.c and tcp.c: the loop's parts the TCP transport needs, and its hooks. */
void rb__conn_end(struct rb_conn *c, enum rb_end why, const char *err);
void rb__conn_dirty(struct rb_conn *c);
bool rb__conn_flush(struct rb_conn *c);
void rb__conn_open(struct rb_conn *c);
/* What a TCP connection queues before anything else (the framed preamble, or nothing). */
void rb__tcp_start(struct rb_conn *c);
/* Parse bytes p[0..n) of a TCP connection: preamble, lines or frames, dispatched to the
 * handler. Returns the bytes consumed, -1 if the connection ended. */
ssize_t rb__tcp_input(struct rb_conn *c, const char *p, size_t n);
void rb__tcp_put_text(struct rb_conn *c, const char *p, size_t n);
void rb__tcp_put_close(struct rb_conn *c, int code);
/* Queue one WebSocket frame (masked) with this opcode; sio.c wraps its packets in them. */
void rb__conn_put_frame(struct rb_conn *c, unsigned opcode, const char *p, size_t n);

/* ---- Socket.IO (sio.c) ------------------------------------------------------------------- */

/* Handle one text frame of a Socket.IO connection: Engine.IO open, ping, the namespace connect,
 * events (the "m" event's object goes to the handler's text callback), errors. */
void rb__sio_input(struct rb_conn *c, const char *p, size_t n);
/* Queue one room-protocol JSON object as 42["m",<object>]. */
void rb__sio_put_text(struct rb_conn *c, const char *p, size_t n);

/* ---- TLS (tls.c) ------------------------------------------------------------------------- */

struct rb_result;

/* rb_tls_init turns on TLS for every connection made from now on (--tls): TLS 1.2 or 1.3
 * (max_version "1.2" or "1.3", NULL for both), verifying the server against ca_file when given
 * (else not verifying: the generator's CPU goes to the load, not to checks the server's cost
 * does not depend on). No session cache, no tickets: every handshake is a full one. 0 or -1
 * after saying why. */
int rb_tls_init(const char *ca_file, const char *max_version);
bool rb_tls_on(void);
/* What conn.c calls on a connection when TLS is on. */
int rb__tls_start(struct rb_conn *c);        /* after connect() is issued: 0 or -1 */
/* Advances the handshake: 1 done, 0 waiting (c->tls_want_write says for what), -1 failed. */
int rb__tls_handshake(struct rb_conn *c);
/* Like recv(): bytes (> 0), 0 at the end of the stream, -1 with errno (EAGAIN: nothing now). */
ssize_t rb__tls_read(struct rb_conn *c, void *buf, size_t cap);
/* Like send(): bytes taken (> 0), -1 with errno (EAGAIN: socket full; repeat with the same
 * bytes, which stay at the head of c->out). */
ssize_t rb__tls_write(struct rb_conn *c, const void *p, size_t n);
void rb__tls_shutdown(struct rb_conn *c);    /* close_notify, best effort */
void rb__tls_free(struct rb_conn *c);
/* Version, cipher and group of c's session, and the server certificate's key, for reports. */
void rb__tls_describe(struct rb_conn *c, struct rb_result *r);

/* ---- the room protocol's JSON subset (msg.c) --------------------------------------------- */

/* A JSON value inside a scanned message: p[0..n), NULL when absent. */
struct rb_span {
    const char *p;
    size_t n;
};

/* Members of a server message the generator looks at. Absent numbers are -1. */
struct rb_msg {
    const char *type; size_t type_len;   /* "type" string (not unescaped) */
    const char *room; size_t room_len;   /* "room" string */
    const char *code; size_t code_len;   /* "code" string (errors) */
    const char *event; size_t event_len; /* "event" string (presence) */
    int64_t close_code;                  /* "code" number (a close line of the TCP port) */
    int64_t client_id;                   /* "client_id" */
    int64_t msg_id;                      /* "msg_id" */
    int64_t last_msg_id;                 /* "last_msg_id" */
    int64_t s;                           /* "s": sender's slot in its room (ours) */
    int64_t q;                           /* "q": sender's sequence number (ours) */
    int64_t t;                           /* "t": send time, CLOCK_MONOTONIC ns (ours) */
    /* Issue 12's server messages (docs/protocol.md: late joiners, state, conflation,
     * presence); only the general scan fills them, deliveries never carry them. */
    int64_t after_msg_id;                /* "after_msg_id" (presence) */
    int64_t replay_from;                 /* "replay_from" (joined with "history") */
    int64_t member_count;                /* "member_count" (joined, presence batches) */
    struct rb_span members;              /* "members":[ids] (joined with "presence") */
    struct rb_span msg_ids;              /* "msg_ids":[ids] (conflated) */
    struct rb_span messages;             /* "messages":[objects] (state) */
    struct rb_span joined_ids, left_ids; /* "joined":[ids], "left":[ids] (presence batches) */
};

/* Scan one JSON object; 0 on success, -1 if it is not a well-formed object. */
int rb_msg_scan(const char *p, size_t n, struct rb_msg *m);
bool rb_msg_is(const char *s, size_t n, const char *lit);
/* Build a publish of exactly `size` bytes when size is large enough (padding in "p"). */
size_t rb_msg_publish(char *dst, size_t cap, size_t size, uint32_t s, uint64_t q, uint64_t t);
/* Iterate over the elements of an array span: *it starts at NULL; each call stores the next
 * element's span in *el and returns true, false at the end (or if malformed: *bad set). */
bool rb_msg_array_next(struct rb_span arr, const char **it, struct rb_span *el, bool *bad);
/* The non-negative integer an element spells, or -1. */
int64_t rb_msg_int(struct rb_span el);
/* A publish with "state_key":"KEY" (skey NULL: none) placed before the padding; the text is
 * still exactly `size` bytes when size allows it. */
size_t rb_msg_publish_key(char *dst, size_t cap, size_t size, uint32_t s, uint64_t q, uint64_t t,
                          const char *skey);
size_t rb_msg_join(char *dst, size_t cap, const char *room);
/* A join with more members: extra is raw JSON members with a leading comma, e.g.
 * ",\"presence\":true,\"history\":100" (NULL or "": a plain join). */
size_t rb_msg_join_ext(char *dst, size_t cap, const char *room, const char *extra);
size_t rb_msg_leave(char *dst, size_t cap, const char *room);

/* ---- one scenario result (report.c) ------------------------------------------------------ */

#define RB_MAX_EXTRA 120
#define RB_MAX_TARGETS 4   /* nodes one run may spread its clients over (--port P1,P2) */

struct rb_extra {
    char key[40];       /* JSON member name */
    bool is_str;        /* value is a string */
    double num;         /* numeric value */
    char str[96];       /* string value */
};

struct rb_result {
    char scenario[16];       /* fanout, pingpong, idle, churn, slow */
    char server[32];         /* label of the server under test */
    int server_pid;          /* 0 when unknown */
    double wall_s;           /* measured interval */
    uint64_t published;      /* messages published by the generator */
    uint64_t deliveries;     /* room messages received by the generator's clients */
    struct rb_proc_sample srv0, srv1; /* server before and after the measured interval (summed
                                       * over server_pids when there are several nodes) */
    int server_pids[RB_MAX_TARGETS];  /* every node of the server under test (--server-pid
                                       * P1,P2): their CPU is summed; [0] == server_pid */
    int nserver_pids;        /* entries in server_pids (0: none known) */
    int redis_pid;           /* redis-server behind the nodes (--redis-pid), 0 = none: its CPU
                              * is reported apart from the nodes' */
    struct rb_proc_sample redis0, redis1; /* redis-server before and after the interval */
    struct rb_hist lat_cross;/* latency of deliveries whose sender is on another node, ns */
    double bench_cpu_s;      /* generator's own CPU during the measured interval */
    struct rb_hist lat;      /* publish-to-delivery latency, ns */
    uint64_t order_violations, losses, duplicates; /* correctness, must be 0 */
    uint64_t errors;         /* failed connections, timeouts, server error replies */
    bool failed;             /* the run did not complete */
    char failure[160];       /* why, if failed */
    struct rb_extra extra[RB_MAX_EXTRA]; /* scenario parameters and metrics */
    int nextra;
};

void rb_result_init(struct rb_result *r, const char *scenario, const char *server, int pid);
void rb_result_num(struct rb_result *r, const char *key, double v);
void rb_result_str(struct rb_result *r, const char *key, const char *v);
void rb_result_fail(struct rb_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Start and stop the measured interval (samples server and own CPU). */
void rb_result_begin(struct rb_result *r);
void rb_result_end(struct rb_result *r);
bool rb_result_ok(const struct rb_result *r);
/* JSON line to stdout, table to stderr (unless quiet). */
void rb_result_print(const struct rb_result *r, bool quiet);

/* ---- scenarios --------------------------------------------------------------------------- */

struct rb_opts {
    struct rb_target target;  /* where the server listens (the first node) */
    struct rb_target targets[RB_MAX_TARGETS]; /* every node (--port P1,P2,...): member k of a
                                               * room connects to targets[k % ntargets] */
    uint32_t ntargets;        /* at least 1; targets[0] is target */
    bool unsequenced;         /* deliveries carry no msg_id (Socket.IO): check per-sender order,
                               * duplicates and losses, not one total order per room */
    /* rooms engine: member k of a room uses transports[k % ntransports] */
    enum rb_transport transports[RB_TR__COUNT * 2];
    uint32_t ntransports;     /* at least 1 (default: WebSocket only) */
    const char *server;       /* label for reports */
    int pid;                  /* server pid for /proc, 0 = unknown */
    bool quiet;               /* no table on stderr */
    /* rooms engine: fanout, pingpong, slow */
    uint32_t rooms;           /* R */
    uint32_t clients;         /* C per room */
    uint64_t messages;        /* M per client (flat out), 0 = until duration */
    uint32_t size;            /* bytes of JSON per publish */
    uint32_t window;          /* W unacknowledged own messages (flat out) */
    double rate;              /* messages/s per client, 0 = flat out */
    double duration;          /* s: stop publishing after this long, 0 = no limit */
    double drain;             /* s: wait this long for deliveries after publishing stopped */
    /* rooms engine, issue 12's features (docs/protocol.md). Member k of a room joins with
     * "presence":true when presence_every && k % presence_every == presence_every - 1 (1: all
     * members, 2: every second one), and with "conflate":true likewise by conflate_every. */
    uint32_t presence_every;
    uint32_t conflate_every;
    uint32_t state_keys;      /* N > 0: publishes carry "state_key":"k<s mod N>" (s: the sender's
                               * slot, so N >= clients is one key per sender) */
    uint32_t keys_per_sender; /* P > 1: "k<s mod N>.<q mod P>", each sender cycling through P
                               * keys: with P >= the window no two messages of one key are ever
                               * in flight, so a reader that keeps up has nothing to conflate */
    /* Run after the rooms engine's measured interval, before it closes its connections, with
     * every member still joined and validating (join-cost). */
    void (*after)(const struct rb_opts *o, struct rb_result *r);
    /* join-cost (joincost.c): the modes, comma-separated (each a '+'-joined set of plain,
     * history:N, state, presence), joiners at once, seconds per mode */
    const char *modes;
    uint32_t joiners;
    double mode_time;
    /* idle */
    uint32_t conns;           /* N idle connections, 0 = as many as the fd limit allows */
    uint32_t room_size;       /* members per idle room */
    uint32_t sample;          /* rooms proven alive after idling */
    double idle_time;         /* s idle before the liveness sample */
    uint32_t concurrency;     /* connections being set up at once (idle, churn) */
    /* slow */
    int stuck_rcvbuf;         /* SO_RCVBUF of the stuck reader */
};

void rb_run_rooms(const struct rb_opts *o, struct rb_result *r, uint32_t stuck);
void rb_run_idle(const struct rb_opts *o, struct rb_result *r);
void rb_run_churn(const struct rb_opts *o, struct rb_result *r);
void rb_run_slow(const struct rb_opts *o, struct rb_result *r);
void rb_run_joincost(const struct rb_opts *o, struct rb_result *r);
/* tls-handshakes (tls.c): --concurrency connections each doing a full handshake, close_notify,
 * waiting for the server's end, again, for --duration seconds. */
void rb_run_tls_handshakes(const struct rb_opts *o, struct rb_result *r);

/* What join-cost reads and checks of the rooms engine's room 0 while its hook runs (rooms.c). */
const char *rb_rooms_name(uint32_t room);
int64_t rb_rooms_last_id(uint32_t room);  /* its last msg_id (base + published) */
uint32_t rb_rooms_live(uint32_t room);    /* members still connected and joined */
/* The message the room's members saw under msg_id, as (s, q), checked against what a joiner
 * got (a replay, a state entry): false when they disagree or it was never seen. */
bool rb_rooms_agrees(uint32_t room, int64_t msg_id, int64_t s, int64_t q);
/* The state the room must hold: the msg_ids of each key's latest message, ascending (the
 * caller frees *ids); their count. */
uint32_t rb_rooms_state_ids(uint32_t room, int64_t **ids);
/* Totals over the members of the room: presence events received (join + leave events and
 * batches), and bytes read from the server. */
uint64_t rb_rooms_presence_events(uint32_t room);
uint64_t rb_rooms_rx_bytes(uint32_t room);
/* Checks every presence-asking member's picture of the membership against `expect`, after
 * waiting up to wait_s for presence to settle; returns the members that disagree. */
uint32_t rb_rooms_presence_check(uint32_t room, int64_t expect, double wait_s);

#endif
