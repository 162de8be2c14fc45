/* conn.c — connection lifecycle, reading, flushing and closing; see conn.h.
 *
 * Reading: while a connection has no partial input buffered, bytes are read into the server's
 * shared buffer and parsed in place there; only an incomplete tail (a frame or request head
 * cut by the read) is copied into the connection's own buffer. Idle connections therefore hold
 * no input memory at all, and the common case copies nothing.
 *
 * Connections are edge-triggered (CONN_EV). Level-triggered epoll hands every descriptor it
 * reported back to the next epoll_wait, which polls it again only to find it drained: with
 * hundreds of busy connections per wake-up that second poll was about 3% of the server's CPU
 * in the fanout benchmark. The price is that a reader must not leave input behind unseen:
 * conn_read still reads once per wake-up (so one flooding client cannot starve the others),
 * and when that read filled the buffer it re-arms the descriptor so the next wait reports it
 * again; when the peer has shut down (RC_EV_HUP) it reads on to the EOF, which no later event
 * would announce.
 */
#include "transport/conn.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "app/nsws.h"
#include "codec/wsframe.h"
#include "transport/http.h"
#include "rooms/room.h"
#include "app/server.h"
#include "transport/ws.h"

#define conn_of_timer(t) ((rc_conn *)((char *)(t) - offsetof(rc_conn, timer)))

/* Interest flags every connection is registered with, added to READ/WRITE (see above). */
#define CONN_EV (RC_EV_EDGE | RC_EV_HUP)

static void on_io(rc_loop *loop, rc_io *io, uint32_t events);
static void on_timer(rc_loop *loop, rc_timer *t);

rc_conn *rc_conn_accept(rc_server *srv, int fd)
{
    rc_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return NULL;
    }
    c->srv = srv;
    c->state = RC_CONN_HTTP;
    c->last_rx = rc_loop_now(srv->loop);
    rc_io_init(&c->io, fd, on_io);
    rc_timer_init(&c->timer, on_timer);
    if (rc_io_start(srv->loop, &c->io, RC_EV_READ | CONN_EV) < 0) {
        close(fd);
        free(c);
        return NULL;
    }
    rc_timer_start(srv->loop, &c->timer, c->last_rx + srv->cfg.handshake_timeout);
    c->next = srv->conns;
    if (srv->conns) srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    srv->stats.connections_total++;
    return c;
}

/* Queues without the budget check: close frames and final responses must go out. */
static void queue(rc_conn *c, rc_msg *m, bool quiet)
{
    if ((quiet ? rc_outq_push_quiet(&c->out, m) : rc_outq_push(&c->out, m)) < 0) {
        /* Out of memory for one pointer: this client cannot be served correctly any more. */
        rc_conn_close(c);
        return;
    }
    rc_server_flush_later(c->srv, c);
}

bool rc_conn_send(rc_conn *c, rc_msg *m)
{
    if (c->state != RC_CONN_WS && c->state != RC_CONN_HTTP) return false;
    if (c->slow) return false;
    /* Receipt time for the delivery-latency histogram: the loop clock of the wake-up that
     * produced the frame (the first recipient stamps a broadcast for all of them). */
    if (c->state == RC_CONN_WS && !m->t_recv) m->t_recv = rc_loop_now(c->srv->loop);
    /* A single message larger than the budget still goes to a client that is keeping up. */
    if (c->out.count > 0 && c->out.bytes + m->len > c->srv->cfg.max_pending) {
        c->slow = true;
        rc_server_flush_later(c->srv, c);
        return false;
    }
    queue(c, m, false);
    return true;
}

bool rc_conn_send_replay(rc_conn *c, rc_msg *m)
{
    if (c->state != RC_CONN_WS || c->slow) return false;
    /* Quiet: the frame's t_recv is its original receipt, which would count a replay as a
     * delivery as late as the history is old in the latency histogram. */
    queue(c, m, true);
    return true;
}

rc_msg *rc_frame_new(uint8_t opcode, const void *payload, size_t len)
{
    size_t h = rc_ws_header_size(len);
    rc_msg *m = rc_msg_new(h + len);
    if (!m) return NULL;
    rc_ws_encode_header((uint8_t *)m->data, opcode, true, len);
    if (len) memcpy(m->data + h, payload, len);
    return m;
}

bool rc_conn_send_frame(rc_conn *c, uint8_t opcode, const void *payload, size_t len)
{
    rc_msg *m = rc_frame_new(opcode, payload, len);
    if (!m) {
        rc_conn_close(c);
        return false;
    }
    bool ok = rc_conn_send(c, m);
    rc_msg_unref(m);
    return ok;
}

/* leave_everything takes c out of its rooms and the NetSync rooms it observes. */
static void leave_everything(rc_conn *c)
{
    rc_room_leave_all(c->srv, c);
    if (c->nsobs && c->srv->nsws) rc_nsws_forget(c->srv->nsws, c);
}

void rc_conn_close_ws(rc_conn *c, uint16_t code, const char *reason, bool fail)
{
    if (c->state != RC_CONN_WS) {
        if (c->state == RC_CONN_CLOSING && fail) c->discard_input = true;
        return;
    }
    uint8_t payload[RC_WS_MAX_CONTROL_PAYLOAD];
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > sizeof(payload) - 2) rl = sizeof(payload) - 2;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (rl) memcpy(payload + 2, reason, rl);
    rc_msg *m = rc_frame_new(RC_WS_CLOSE, payload, rl + 2);
    if (!m) {
        rc_conn_close(c);
        return;
    }
    /* No room message may follow the close frame (RFC 6455 §5.5.1). */
    leave_everything(c);
    c->state = RC_CONN_CLOSING;
    c->discard_input = fail;
    c->shut_after_flush = true;
    queue(c, m, false);
    rc_msg_unref(m);
    rc_timer_start(c->srv->loop, &c->timer, rc_loop_now(c->srv->loop) + c->srv->cfg.close_timeout);
}

static void acks_release(rc_conn *c)
{
    rc_server *srv = c->srv;
    for (uint32_t i = 0; i < c->nacks; i++) rc_msg_unref(c->acks[i].msg);
    free(c->acks);
    c->acks = NULL;
    c->nacks = c->capacks = 0;
    if (c->ack_prev) c->ack_prev->ack_next = c->ack_next;
    else if (srv->ack_conns == c) srv->ack_conns = c->ack_next;
    if (c->ack_next) c->ack_next->ack_prev = c->ack_prev;
    c->ack_prev = c->ack_next = NULL;
}

void rc_conn_defer_ack(rc_conn *c, uint64_t lsn, rc_msg *m)
{
    rc_server *srv = c->srv;
    if (c->nacks == c->capacks) {
        uint32_t cap = c->capacks ? c->capacks * 2 : 4;
        rc_pending_ack *a = realloc(c->acks, cap * sizeof(*a));
        if (!a) return; /* the ack is lost; the client will time out and resend (idempotent) */
        c->acks = a;
        c->capacks = cap;
    }
    if (c->nacks == 0) {
        c->ack_prev = NULL;
        c->ack_next = srv->ack_conns;
        if (srv->ack_conns) srv->ack_conns->ack_prev = c;
        srv->ack_conns = c;
    }
    c->acks[c->nacks++] = (rc_pending_ack){.lsn = lsn, .msg = rc_msg_ref(m)};
}

void rc_conn_acks_durable(rc_server *srv, uint64_t durable)
{
    rc_conn *next;
    for (rc_conn *c = srv->ack_conns; c; c = next) {
        next = c->ack_next;
        uint32_t i = 0;
        while (i < c->nacks && c->acks[i].lsn <= durable) {
            rc_conn_send(c, c->acks[i].msg);
            rc_msg_unref(c->acks[i].msg);
            i++;
        }
        if (i == c->nacks) {
            c->nacks = 0; /* keep nothing; acks_release unlinks and frees */
            acks_release(c);
        } else if (i > 0) {
            memmove(c->acks, c->acks + i, (c->nacks - i) * sizeof(*c->acks));
            c->nacks -= i;
        }
    }
}

void rc_conn_close(rc_conn *c)
{
    if (c->state == RC_CONN_CLOSED) return;
    rc_server *srv = c->srv;
    if (c->nacks) acks_release(c);
    leave_everything(c);
    rc_io_stop(srv->loop, &c->io);
    close(c->io.fd);
    c->io.fd = -1;
    rc_timer_stop(srv->loop, &c->timer);
    c->state = RC_CONN_CLOSED;
    rc_outq_release(&c->out);
    rc_buf_release(&c->in);
    rc_buf_release(&c->frag);
    /* Move from the live list to the free list; the struct is freed at before-sleep. */
    if (c->prev) c->prev->next = c->next;
    else srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = NULL;
    c->next = srv->free_head;
    srv->free_head = c;
    srv->nconns--;
}

void rc_conn_free(rc_conn *c)
{
    free(c);
}

/* Dispatches input to the protocol of the current state; a state change mid-buffer (an upgrade
 * followed by frames, a close) hands the rest to the new state's parser. Returns bytes used. */
static size_t process(rc_conn *c, char *p, size_t n)
{
    size_t used = 0;
    while (used < n) {
        uint8_t st = c->state;
        bool discard = c->discard_input;
        size_t k;
        if (st == RC_CONN_HTTP) k = rc_http_on_input(c, p + used, n - used);
        else if (st == RC_CONN_WS || (st == RC_CONN_CLOSING && !discard))
            k = rc_ws_on_input(c, p + used, n - used);
        else return n; /* closing for good, or closed: input is dropped */
        used += k;
        if (c->state == st && c->discard_input == discard) break;
    }
    return used;
}

static void on_eof(rc_conn *c, bool reset)
{
    if (c->state == RC_CONN_WS) rc_debug("client %llu disconnected without a close frame",
                                         (unsigned long long)c->client_id);
    /* A peer that only shut its sending side may still be reading the answers to what it
     * sent (an HTTP client half-closing after its request): finish writing them first, with
     * read interest off so the readable EOF cannot spin the loop. */
    if (!reset && c->out.count > 0 && c->state != RC_CONN_WS) {
        c->rd_eof = true;
        c->close_received = true;
        c->discard_input = true;
        c->state = RC_CONN_CLOSING;
        rc_server_flush_later(c->srv, c);
        return;
    }
    rc_conn_close(c);
}

/* One read; returns true when the caller should read again now: the peer has shut down
 * (hup) and the read may not have reached the EOF yet. */
static bool conn_read(rc_conn *c, bool hup)
{
    rc_server *srv = c->srv;
    bool shared = rc_buf_size(&c->in) == 0;
    char *dst;
    size_t cap;
    if (shared) {
        dst = srv->rxbuf;
        cap = sizeof(srv->rxbuf);
    } else {
        if (rc_buf_reserve(&c->in, 16384) < 0) {
            rc_conn_close(c);
            return false;
        }
        dst = rc_buf_tail(&c->in);
        cap = rc_buf_room(&c->in);
    }
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
    c->last_rx = rc_loop_now(srv->loop);
    srv->stats.bytes_in += (uint64_t)r;
    if (shared) {
        size_t used = process(c, dst, (size_t)r);
        if (c->state != RC_CONN_CLOSED && used < (size_t)r &&
            rc_buf_append(&c->in, dst + used, (size_t)r - used) < 0)
            rc_conn_close(c);
    } else {
        rc_buf_commit(&c->in, (size_t)r);
        size_t used = process(c, rc_buf_head(&c->in), rc_buf_size(&c->in));
        if (c->state == RC_CONN_CLOSED) return false;
        rc_buf_consume(&c->in, used);
        /* A large partial message was buffered; give the memory back once it is done. */
        if (rc_buf_size(&c->in) == 0 && c->in.cap > 65536) rc_buf_release(&c->in);
    }
    if (c->state == RC_CONN_CLOSED || !(c->io.events & RC_EV_READ)) return false;
    if ((size_t)r == cap) {
        /* The buffer filled: more may be waiting, and edge-triggered epoll will not say so
         * again unless asked. Next wake-up, not now: the other connections come first. */
        if (rc_io_rearm(srv->loop, &c->io) < 0) rc_conn_close(c);
        return false;
    }
    return hup;
}

static void cut_slow_consumer(rc_conn *c)
{
    c->slow = false;
    c->srv->stats.disc_slow++;
    rc_info("client %llu: slow consumer (%zu bytes pending), disconnecting",
            (unsigned long long)c->client_id, c->out.bytes);
    rc_outq_drop_unstarted(&c->out);
    if (c->state == RC_CONN_WS) rc_conn_close_ws(c, RC_WS_CLOSE_POLICY, "slow consumer", true);
    else rc_conn_close(c);
}

void rc_conn_flush(rc_conn *c)
{
    if (c->state == RC_CONN_CLOSED) return;
    if (c->slow) cut_slow_consumer(c);
    if (c->state == RC_CONN_CLOSED) return;
    rc_server *srv = c->srv;
    if (c->out.count > 0) {
        ssize_t w = rc_outq_flush_cb(&c->out, c->io.fd,
                                     srv->cfg.no_latency_metrics ? NULL : rc_metrics_on_sent, srv);
        if (w < 0) {
            rc_debug("client %llu: write failed: %s", (unsigned long long)c->client_id,
                     strerror((int)-w));
            rc_conn_close(c);
            return;
        }
        srv->stats.bytes_out += (uint64_t)w;
    }
    if (c->out.count > 0) {
        /* The socket is full: ask to be told when it drains. */
        uint32_t ev = c->rd_eof ? RC_EV_WRITE : RC_EV_READ | RC_EV_WRITE;
        if (rc_io_set(srv->loop, &c->io, ev | CONN_EV) < 0) rc_conn_close(c);
        return;
    }
    rc_io_set(srv->loop, &c->io, (c->rd_eof ? 0 : RC_EV_READ) | CONN_EV);
    rc_outq_shrink(&c->out);
    if (c->shut_after_flush) {
        c->shut_after_flush = false;
        shutdown(c->io.fd, SHUT_WR);
    }
    /* Both close frames exchanged and ours is out: the server closes TCP first (§7.1.1). */
    if (c->state == RC_CONN_CLOSING && c->close_received) rc_conn_close(c);
}

static void on_io(rc_loop *loop, rc_io *io, uint32_t events)
{
    rc_conn *c = (rc_conn *)io;
    if (c->state == RC_CONN_CLOSED) return;
    if (events & EPOLLOUT) rc_conn_flush(c);
    if (c->state == RC_CONN_CLOSED) return;
    /* Input only while reading is wanted (not after a half-close, see on_eof); a hang-up or an
     * error is always looked at. */
    uint32_t want = EPOLLHUP | EPOLLERR | (c->io.events & RC_EV_READ ? EPOLLIN | EPOLLRDHUP : 0);
    if (!(events & want)) return;
    bool hup = events & want & (EPOLLHUP | EPOLLERR | EPOLLRDHUP);
    /* Edge-triggered: after a shutdown no new event will come, so read on to the EOF. */
    while (conn_read(c, hup) && c->state != RC_CONN_CLOSED) {}
}

static void on_timer(rc_loop *loop, rc_timer *t)
{
    rc_conn *c = conn_of_timer(t);
    switch (c->state) {
    case RC_CONN_HTTP: rc_http_on_timeout(c); break;
    case RC_CONN_WS: rc_ws_on_keepalive(c); break;
    case RC_CONN_CLOSING: rc_conn_close(c); break;
    default: break;
    }
}
