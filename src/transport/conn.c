/* conn.c — connection lifecycle, reading, flushing and closing; see conn.h.
 *
 * Reading: while a connection has no partial input buffered, bytes are read into the net's
 * shared buffer and parsed in place there; only an incomplete tail (a frame, line or request
 * head cut by the read) is copied into the connection's own buffer. Idle connections therefore
 * hold no input memory at all, and the common case copies nothing.
 *
 * Connections are edge-triggered (CONN_EV). Level-triggered epoll hands every descriptor it
 * reported back to the next epoll_wait, which polls it again only to find it drained: with
 * hundreds of busy connections per wake-up that second poll was about 3% of the server's CPU
 * in the fanout benchmark. The price is that a reader must not leave input behind unseen:
 * conn_read still reads once per wake-up (so one flooding client cannot starve the others),
 * and when that read filled the buffer it re-arms the descriptor so the next wait reports it
 * again; when the peer has shut down (RC_EV_HUP) it reads on to the EOF, which no later event
 * would announce.
 *
 * TLS connections (c->tls, transport/tls.h) take the same paths with OpenSSL in between, and
 * one more rule: OpenSSL may hold decrypted bytes that no socket event will ever announce
 * (SSL_pending), so a TLS read goes on until SSL_read wants the socket (WANT_READ) with nothing
 * pending, or until the buffer fills — then it takes what OpenSSL still holds (at most the rest
 * of one record) and re-arms like the plain path. Either direction may need the other
 * (WANT_READ from a write, WANT_WRITE from a read or the handshake); tls_interest turns those
 * into the descriptor's interest.
 */
#include "transport/conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "codec/pmdeflate.h"
#include "core/log.h"
#include "transport/tls.h"

#define conn_of_timer(t) ((rc_conn *)(void *)((char *)(t) - offsetof(rc_conn, timer)))

/* Interest flags every connection is registered with, added to READ/WRITE (see above). */
#define CONN_EV (RC_EV_EDGE | RC_EV_HUP)

const char *const rc_nerr_names[RC_NERR__COUNT] = {
    [RC_NERR_HTTP_400] = "http_400",
    [RC_NERR_HTTP_404] = "http_404",
    [RC_NERR_HTTP_405] = "http_405",
    [RC_NERR_HTTP_408] = "http_408",
    [RC_NERR_HTTP_426] = "http_426",
    [RC_NERR_HTTP_431] = "http_431",
    [RC_NERR_HTTP_503] = "http_503",
    [RC_NERR_HTTP_401] = "http_401",
    [RC_NERR_HTTP_403] = "http_403",
    [RC_NERR_HTTP_411] = "http_411",
    [RC_NERR_HTTP_413] = "http_413",
    [RC_NERR_HTTP_501] = "http_501",
    [RC_NERR_HTTP_409] = "http_409",
    [RC_NERR_HTTP_422] = "http_422",
    [RC_NERR_WS_1002] = "ws_1002",
    [RC_NERR_WS_1007] = "ws_1007",
    [RC_NERR_WS_1009] = "ws_1009",
    [RC_NERR_TCP_LINE_TOO_LONG] = "tcp_line_too_long",
    [RC_NERR_TCP_BAD_UTF8] = "tcp_bad_utf8",
    [RC_NERR_TCP_1002] = "tcp_1002",
    [RC_NERR_TCP_1007] = "tcp_1007",
    [RC_NERR_TCP_1009] = "tcp_1009",
    [RC_NERR_CHAT_GARBAGE] = "chat_garbage",
    [RC_NERR_CHAT_BAD_OBJECT] = "chat_bad_object",
    [RC_NERR_CHAT_TOO_BIG] = "chat_too_big",
    [RC_NERR_TOO_MANY_ERRORS] = "too_many_errors",
};

static void on_io(rc_loop *loop, rc_io *io, uint32_t events);
static void on_timer(rc_loop *loop, rc_timer *t);

void rc_net_init(rc_net *net, rc_loop *loop, const rc_net_config *cfg, const rc_net_hooks *hooks)
{
    net->loop = loop;
    net->cfg = *cfg;
    net->hooks = *hooks;
}

static void flush_later(rc_conn *c)
{
    if (c->in_flush) return;
    c->in_flush = true;
    c->next_flush = c->net->flush_head;
    c->net->flush_head = c;
}

void rc_net_flush(rc_net *net)
{
    if (net->flush_head && net->hooks.sent && !net->cfg.no_latency_metrics)
        net->flush_now = rc_clock_ns();
    while (net->flush_head) {
        rc_conn *c = net->flush_head;
        net->flush_head = c->next_flush;
        c->in_flush = false;
        c->next_flush = NULL;
        rc_conn_flush(c);
    }
    while (net->free_head) {
        rc_conn *c = net->free_head;
        net->free_head = c->next;
        free(c);
    }
}

void rc_net_close_all(rc_net *net)
{
    while (net->conns) rc_conn_close(net->conns);
    rc_net_flush(net);
    rc_ipcount_release(&net->peers); /* empty by now: every connection uncounted itself */
}

rc_conn *rc_conn_new(rc_net *net, int fd, size_t size, const rc_proto *proto)
{
    rc_conn *c = calloc(1, size);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->net = net;
    c->state = RC_CONN_OPEN;
    c->last_rx = rc_loop_now(net->loop);
    rc_io_init(&c->io, fd, on_io);
    rc_timer_init(&c->timer, on_timer);
    if (rc_io_start(net->loop, &c->io, RC_EV_READ | CONN_EV) < 0) {
        close(fd);
        free(c);
        return NULL;
    }
    c->next = net->conns;
    if (net->conns) net->conns->prev = c;
    net->conns = c;
    net->nconns++;
    net->stats.connections_total++;
    rc_conn_set_proto(c, proto);
    return c;
}

void rc_conn_set_peer(rc_conn *c, const struct sockaddr *sa)
{
    c->peer = rc_ipkey_of(sa);
    c->peer_counted = rc_ipkey_known(&c->peer) && rc_ipcount_add(&c->net->peers, &c->peer) > 0;
}

int rc_conn_start_tls(rc_conn *c, struct rc_tls_ctx *t, int alpn)
{
    if (!(c->tls = rc_tls_conn_new(t, c->io.fd, (rc_tls_alpn)alpn))) {
        rc_warn("out of memory for a TLS session");
        rc_conn_close(c);
        return -1;
    }
    c->net->ntls++;
    /* The handshake gets --handshake-timeout whatever the protocol armed: HTTP arms that same
     * deadline for its request head, which goes on after the handshake; TCP arms its keepalive,
     * which is put off and re-armed with its full delay once the handshake is done. */
    rc_loop *loop = c->net->loop;
    uint64_t now = rc_loop_now(loop), due = now + c->net->cfg.handshake_timeout;
    if (c->state != RC_CONN_OPEN) return 0;
    if (rc_timer_armed(&c->timer) && rc_timer_due(&c->timer) != due) {
        uint64_t d = rc_timer_due(&c->timer);
        c->tls->proto_timer = d > now ? d - now : 1;
    }
    rc_timer_start(loop, &c->timer, due);
    return 0;
}

void rc_conn_set_proto(rc_conn *c, const rc_proto *proto)
{
    c->proto = proto;
    if (proto->start) proto->start(c);
}

/* Queues without the budget check: close frames and final responses must go out. */
static void queue_quiet(rc_conn *c, rc_msg *m)
{
    if (rc_outq_push_quiet(&c->out, m) < 0) {
        /* Out of memory for one pointer: this client cannot be served correctly any more. */
        rc_conn_close(c);
        return;
    }
    flush_later(c);
}

bool rc_conn__send_slow(rc_conn *c, rc_msg *m)
{
    if (!m) {
        rc_conn_close(c); /* out of memory for one pointer in the queue */
        return false;
    }
    c->slow = true;
    flush_later(c);
    return false;
}

bool rc_conn_send_replay(rc_conn *c, rc_msg *m)
{
    if (c->state != RC_CONN_OPEN || c->slow) return false;
    queue_quiet(c, m);
    return true;
}

void rc_conn_send_last(rc_conn *c, rc_msg *m)
{
    if (c->state == RC_CONN_CLOSED) return;
    queue_quiet(c, m);
}

bool rc_conn_give(rc_conn *c, rc_msg *m, bool last)
{
    if (!m) {
        rc_conn_close(c);
        return false;
    }
    bool ok = true;
    if (last) rc_conn_send_last(c, m);
    else ok = rc_conn_send(c, m);
    rc_msg_unref(m);
    return ok;
}

bool rc_conn_send_copy(rc_conn *c, const void *p, size_t n)
{
    return rc_conn_give(c, rc_msg_copy(p, n), false);
}

void rc_conn_cut(rc_conn *c)
{
    if (c->state != RC_CONN_OPEN) return;
    c->lost = true;
    flush_later(c);
}

/* ended runs the owner's hook once, as the connection leaves OPEN. */
static void ended(rc_conn *c)
{
    if (c->net->hooks.ended) c->net->hooks.ended(c->net->hooks.arg, c);
}

void rc_conn_end(rc_conn *c, uint16_t code, const char *reason, bool fail)
{
    if (c->state != RC_CONN_OPEN) {
        if (c->state == RC_CONN_CLOSING && fail) c->discard_input = true;
        return;
    }
    if (c->proto->end) c->proto->end(c, code, reason, fail);
    else rc_conn_close(c);
}

void rc_conn_closing(rc_conn *c, bool discard)
{
    if (c->state != RC_CONN_OPEN) return;
    c->state = RC_CONN_CLOSING;
    ended(c);
    if (c->state == RC_CONN_CLOSED) return;
    c->discard_input = discard;
    c->shut_after_flush = true;
    rc_timer_start(c->net->loop, &c->timer, rc_loop_now(c->net->loop) + c->net->cfg.close_timeout);
    flush_later(c);
}

void rc_conn_close(rc_conn *c)
{
    if (c->state == RC_CONN_CLOSED) return;
    rc_net *net = c->net;
    bool was_open = c->state == RC_CONN_OPEN;
    c->state = RC_CONN_CLOSED;
    if (was_open) ended(c);
    if (c->peer_counted) { /* every way out of a connection passes here exactly once */
        rc_ipcount_del(&net->peers, &c->peer);
        c->peer_counted = false;
    }
    rc_io_stop(net->loop, &c->io);
    if (c->tls) { /* before the socket: the session's BIO does not own the descriptor */
        rc_tls_conn_free(c->tls);
        c->tls = NULL;
        net->ntls--;
    }
    close(c->io.fd);
    c->io.fd = -1;
    rc_timer_stop(net->loop, &c->timer);
    rc_outq_release(&c->out);
    rc_buf_release(&c->in);
    rc_buf_release(&c->frag);
    if (c->ws_zin) { /* a permessage-deflate client's inflater (ws.c) */
        rc_pmd_stream_release(c->ws_zin);
        free(c->ws_zin);
        c->ws_zin = NULL;
    }
    /* Move from the live list to the free list; the struct is freed at rc_net_flush. */
    if (c->prev) c->prev->next = c->next;
    else net->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = NULL;
    c->next = net->free_head;
    net->free_head = c;
    net->nconns--;
}

/* Dispatches input to the protocol; a change mid-buffer (an upgrade followed by frames, a
 * close) hands the rest to the new protocol or state. Returns bytes used. */
static size_t process(rc_conn *c, char *p, size_t n)
{
    size_t used = 0;
    while (used < n) {
        if (c->state == RC_CONN_CLOSED || c->discard_input) return n; /* dropped */
        const rc_proto *proto = c->proto;
        uint8_t st = c->state;
        used += proto->input(c, p + used, n - used);
        if (c->proto == proto && c->state == st && !c->discard_input) break;
    }
    return used;
}

static void on_eof(rc_conn *c, bool reset)
{
    rc_debug("connection (%s) closed by the peer%s", c->proto->name, reset ? " (reset)" : "");
    /* A peer that only shut its sending side may still be reading the answers to what it
     * sent (an HTTP client half-closing after its request, `nc -N`): finish writing them
     * first, with read interest off so the readable EOF cannot spin the loop. */
    bool pending = c->out.count > 0 || (c->tls && c->tls->retry); /* a record half-written */
    if (!reset && pending && (c->state == RC_CONN_CLOSING || c->proto->half_close)) {
        c->rd_eof = true;
        c->close_received = true;
        if (c->state == RC_CONN_OPEN) {
            rc_conn_closing(c, true);
        } else {
            c->discard_input = true;
            flush_later(c);
        }
        return;
    }
    c->rd_eof = !reset; /* for the ended hook: the peer said goodbye (presence: "closed") */
    rc_conn_close(c);
}

/* read_dst is where the next read goes: the shared buffer while nothing is buffered, else the
 * tail of c->in. False when out of memory (c is then closed). */
static bool read_dst(rc_conn *c, bool shared, char **dst, size_t *cap)
{
    if (shared) {
        *dst = c->net->rxbuf;
        *cap = sizeof(c->net->rxbuf);
        return true;
    }
    if (rc_buf_reserve(&c->in, 16384) < 0) {
        rc_conn_close(c);
        return false;
    }
    *dst = rc_buf_tail(&c->in);
    *cap = rc_buf_room(&c->in);
    return true;
}

/* deliver hands the n bytes just read into dst (from read_dst) to the protocol, keeping an
 * incomplete tail in c->in. */
static void deliver(rc_conn *c, char *dst, size_t n, bool shared)
{
    rc_net *net = c->net;
    c->last_rx = rc_loop_now(net->loop);
    net->stats.bytes_in += (uint64_t)n;
    if (shared) {
        size_t used = process(c, dst, n);
        if (c->state != RC_CONN_CLOSED && used < n && rc_buf_append(&c->in, dst + used, n - used) < 0)
            rc_conn_close(c);
    } else {
        rc_buf_commit(&c->in, n);
        size_t used = process(c, rc_buf_head(&c->in), rc_buf_size(&c->in));
        if (c->state == RC_CONN_CLOSED) return;
        rc_buf_consume(&c->in, used);
        /* A large partial message was buffered; give the memory back once it is done. */
        if (rc_buf_size(&c->in) == 0 && c->in.cap > 65536) rc_buf_release(&c->in);
    }
}

/* One read; returns true when the caller should read again now: the peer has shut down
 * (hup) and the read may not have reached the EOF yet. */
static bool conn_read(rc_conn *c, bool hup)
{
    rc_net *net = c->net;
    bool shared = rc_buf_size(&c->in) == 0;
    char *dst;
    size_t cap;
    if (!read_dst(c, shared, &dst, &cap)) return false;
    ssize_t r = recv(c->io.fd, dst, cap, 0);
    if (r == 0) {
        on_eof(c, false);
        return false;
    }
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
        if (errno == EINTR) return true;
        on_eof(c, true);
        return false;
    }
    deliver(c, dst, (size_t)r, shared);
    if (c->state == RC_CONN_CLOSED || !(c->io.events & RC_EV_READ)) return false;
    if ((size_t)r == cap) {
        /* The buffer filled: more may be waiting, and edge-triggered epoll will not say so
         * again unless asked. Next wake-up, not now: the other connections come first. */
        if (rc_io_rearm(net->loop, &c->io) < 0) rc_conn_close(c);
        return false;
    }
    return hup;
}

/* ---- TLS ---------------------------------------------------------------------------------- */

/* tls_interest sets the interest a TLS connection needs now: readable unless the peer has shut
 * its side (a handshake or a write waiting to read still needs it); writable while output waits
 * for the socket, or the handshake or a read waits to write. */
static void tls_interest(rc_conn *c)
{
    rc_tls_conn *tc = c->tls;
    bool w = tc->done ? (rc_tls_out_pending(tc, &c->out) && !tc->wr_want_read) || tc->rd_want_write
                      : tc->hs_want_write;
    bool r = !c->rd_eof || !tc->done || tc->wr_want_read;
    if (rc_io_set(c->net->loop, &c->io, (r ? RC_EV_READ : 0) | (w ? RC_EV_WRITE : 0) | CONN_EV) < 0)
        rc_conn_close(c);
}

/* conn_read_tls is conn_read through OpenSSL (see the top of the file for the draining rule).
 * The socket's end comes as a read result, so it needs no `hup` loop of its own. */
static void conn_read_tls(rc_conn *c)
{
    rc_tls_conn *tc = c->tls;
    size_t limit = SIZE_MAX; /* after a full buffer: only what OpenSSL already holds */
    for (;;) {
        bool shared = rc_buf_size(&c->in) == 0;
        char *dst;
        size_t cap, got = 0;
        ssize_t r = 0;
        if (!read_dst(c, shared, &dst, &cap)) return;
        if (cap > limit) cap = limit;
        /* Several records into one buffer: the protocol parses them in one pass. */
        while (got < cap && (r = rc_tls_read(tc, dst + got, cap - got)) > 0) got += (size_t)r;
        if (got > 0) {
            deliver(c, dst, got, shared);
            if (c->state == RC_CONN_CLOSED) return;
        }
        if (got == cap) {
            if (!(c->io.events & RC_EV_READ)) return;
            if ((limit = rc_tls_pending(tc)) > 0) continue;
            /* Nothing left inside OpenSSL; the socket may still hold records: as conn_read,
             * next wake-up. */
            if (rc_io_rearm(c->net->loop, &c->io) < 0) rc_conn_close(c);
            return;
        }
        if (r == RC_TLS_WANT_READ) return; /* drained: the next bytes bring an event */
        if (r == RC_TLS_WANT_WRITE) {
            tls_interest(c);
            return;
        }
        on_eof(c, r != 0); /* 0: the peer's end of stream; RC_TLS_FAIL: as a reset */
        return;
    }
}

/* tls_flush is rc_conn_flush's TLS half: output waits for the end of the handshake. */
static void tls_flush(rc_conn *c)
{
    rc_net *net = c->net;
    rc_tls_conn *tc = c->tls;
    if (!tc->done) return; /* tls_on_io flushes once it is done */
    if (rc_tls_out_pending(tc, &c->out)) {
        rc_outq_sent_fn *sent = net->cfg.no_latency_metrics ? NULL : net->hooks.sent;
        ssize_t w = rc_tls_flush(tc, &c->out, sent, net->hooks.arg);
        if (w < 0) {
            rc_debug("%s client: TLS write failed", c->proto->name);
            rc_conn_close(c);
            return;
        }
        net->stats.bytes_out += (uint64_t)w;
    }
    tls_interest(c);
    if (c->state == RC_CONN_CLOSED || rc_tls_out_pending(tc, &c->out)) return;
    rc_outq_shrink(&c->out);
    if (c->shut_after_flush) {
        c->shut_after_flush = false;
        rc_tls_shutdown(tc);
        shutdown(c->io.fd, SHUT_WR);
    }
    if (c->state == RC_CONN_CLOSING && c->close_received) rc_conn_close(c);
}

static void tls_on_io(rc_conn *c, uint32_t events)
{
    rc_tls_conn *tc = c->tls;
    if (!tc->done) {
        int r = rc_tls_handshake(tc);
        if (r == RC_TLS_FAIL) { /* counted by rc_tls_handshake */
            rc_conn_close(c);
            return;
        }
        if (r < 0) {
            if (events & (RC_EV_HANGUP | RC_EV_ERROR)) { /* gone before finishing */
                rc_tls_handshake_failed(tc);
                rc_conn_close(c);
                return;
            }
            tls_interest(c);
            return;
        }
        /* Done: write what was queued meanwhile and read what came with the client's last
         * flight (edge-triggered, its event may already be spent). The protocol's own timer,
         * put off by the handshake deadline, starts now. */
        if (tc->proto_timer && c->state == RC_CONN_OPEN)
            rc_timer_start(c->net->loop, &c->timer, rc_loop_now(c->net->loop) + tc->proto_timer);
        tc->proto_timer = 0;
        events |= RC_EV_READ | RC_EV_WRITE;
    }
    if ((events & RC_EV_WRITE) || (tc->wr_want_read && (events & RC_EV_READ))) rc_conn_flush(c);
    if (c->state == RC_CONN_CLOSED) return;
    uint32_t want = RC_EV_HANGUP | RC_EV_ERROR | (c->io.events & RC_EV_READ ? RC_EV_READ | RC_EV_HUP : 0);
    if (!(events & want) && !(tc->rd_want_write && (events & RC_EV_WRITE))) return;
    bool rd_wanted_write = tc->rd_want_write;
    conn_read_tls(c);
    /* A read that waited for the socket to drain no longer needs writability. */
    if (c->state != RC_CONN_CLOSED && rd_wanted_write && !tc->rd_want_write) tls_interest(c);
}

static void cut_off(rc_conn *c)
{
    rc_net *net = c->net;
    bool slow = c->slow;
    c->slow = c->lost = false;
    if (slow) {
        net->stats.disc_slow++;
        rc_info("%s client: slow consumer (%zu bytes pending), disconnecting", c->proto->name,
                c->out.bytes);
    } else {
        rc_warn("%s client: a message for it could not be encoded (out of memory), disconnecting",
                c->proto->name);
    }
    rc_outq_drop_unstarted(&c->out);
    rc_conn_end(c, slow ? 1008 : 1011, slow ? "slow consumer" : "out of memory", true);
}

void rc_conn_flush(rc_conn *c)
{
    if (c->state == RC_CONN_CLOSED) return;
    if (c->slow || c->lost) cut_off(c);
    if (c->state == RC_CONN_CLOSED) return;
    if (c->tls) {
        tls_flush(c);
        return;
    }
    rc_net *net = c->net;
    if (c->out.count > 0) {
        rc_outq_sent_fn *sent = net->cfg.no_latency_metrics ? NULL : net->hooks.sent;
        ssize_t w = rc_outq_flush_cb(&c->out, c->io.fd, sent, net->hooks.arg);
        if (w < 0) {
            rc_debug("%s client: write failed: %s", c->proto->name, strerror((int)-w));
            rc_conn_close(c);
            return;
        }
        net->stats.bytes_out += (uint64_t)w;
    }
    if (c->out.count > 0) {
        /* The socket is full: ask to be told when it drains. */
        uint32_t ev = c->rd_eof ? RC_EV_WRITE : RC_EV_READ | RC_EV_WRITE;
        if (rc_io_set(net->loop, &c->io, ev | CONN_EV) < 0) rc_conn_close(c);
        return;
    }
    rc_io_set(net->loop, &c->io, (c->rd_eof ? 0 : RC_EV_READ) | CONN_EV);
    rc_outq_shrink(&c->out);
    if (c->shut_after_flush) {
        c->shut_after_flush = false;
        shutdown(c->io.fd, SHUT_WR);
    }
    /* Both sides said goodbye and ours is out: the server closes TCP first (RFC 6455 §7.1.1). */
    if (c->state == RC_CONN_CLOSING && c->close_received) rc_conn_close(c);
}

static void on_io(rc_loop *loop, rc_io *io, uint32_t events)
{
    rc_conn *c = (rc_conn *)io;
    if (c->state == RC_CONN_CLOSED) return;
    if (c->tls) {
        tls_on_io(c, events);
        return;
    }
    if (events & RC_EV_WRITE) rc_conn_flush(c);
    if (c->state == RC_CONN_CLOSED) return;
    /* Input only while reading is wanted (not after a half-close, see on_eof); a hang-up or an
     * error is always looked at. */
    uint32_t want = RC_EV_HANGUP | RC_EV_ERROR | (c->io.events & RC_EV_READ ? RC_EV_READ | RC_EV_HUP : 0);
    if (!(events & want)) return;
    bool hup = events & want & (RC_EV_HANGUP | RC_EV_ERROR | RC_EV_HUP);
    /* Edge-triggered: after a shutdown no new event will come, so read on to the EOF. */
    while (conn_read(c, hup) && c->state != RC_CONN_CLOSED) {}
}

static void on_timer(rc_loop *loop, rc_timer *t)
{
    rc_conn *c = conn_of_timer(t);
    if (c->tls && !c->tls->done) {
        /* Whatever armed the timer (HTTP's handshake timeout, the close linger), a TLS
         * handshake still unfinished has had its time: a bad client, counted and closed. */
        rc_tls_handshake_failed(c->tls);
        c->net->stats.disc_handshake++;
        rc_debug("TLS handshake not finished in time, disconnecting");
        rc_conn_close(c);
        return;
    }
    if (c->state == RC_CONN_OPEN && c->proto->timer) c->proto->timer(c);
    else if (c->state == RC_CONN_CLOSING) rc_conn_close(c); /* the close linger is over */
}

/* ---- keepalive ---------------------------------------------------------------------------- */

void rc_conn_keepalive_start(rc_conn *c)
{
    rc_net *net = c->net;
    c->ping_out = false;
    rc_timer_start(net->loop, &c->timer, rc_loop_now(net->loop) + net->cfg.ping_interval);
}

/* The timer is not moved on every read (that would be a heap operation per message): it
 * fires at the earliest moment a ping could be due and re-arms from last_rx if there was
 * traffic meanwhile. */
bool rc_conn_ping_due(rc_conn *c)
{
    rc_net *net = c->net;
    uint64_t now = rc_loop_now(net->loop);
    if (c->ping_out) {
        if (c->last_rx > c->ping_sent) {
            c->ping_out = false; /* any traffic since the ping proves the peer is there */
        } else if (now - c->ping_sent >= net->cfg.ping_timeout) {
            net->stats.disc_ping++;
            rc_info("%s client: no answer to ping, disconnecting", c->proto->name);
            rc_conn_end(c, 1011, "ping timeout", true);
            return false;
        } else {
            rc_timer_start(net->loop, &c->timer, c->ping_sent + net->cfg.ping_timeout);
            return false;
        }
    }
    if (now - c->last_rx >= net->cfg.ping_interval) {
        c->ping_out = true;
        c->ping_sent = now;
        rc_timer_start(net->loop, &c->timer, now + net->cfg.ping_timeout);
        return true;
    }
    rc_timer_start(net->loop, &c->timer, c->last_rx + net->cfg.ping_interval);
    return false;
}

void rc_conn_tcp_keepalive(rc_conn *c)
{
    int one = 1;
    int idle = (int)(c->net->cfg.ping_interval / RC_NS_PER_SEC);
    int intvl = (int)(c->net->cfg.ping_timeout / RC_NS_PER_SEC / 3);
    int cnt = 3;
    if (idle < 1) idle = 1;
    if (intvl < 1) intvl = 1;
    setsockopt(c->io.fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(c->io.fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(c->io.fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(c->io.fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}
