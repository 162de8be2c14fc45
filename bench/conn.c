/* conn.c — the generator's epoll loop and its client side of RFC 6455.
 *
 * Connections to roomcast's raw TCP port share the loop, the buffers and the flush list; only
 * their wire differs, and that lives in tcp.c (each WebSocket entry point below hands a TCP
 * connection over with one test of c->tr, so the WebSocket path costs what it did).
 *
 * One loop, level-triggered, no threads: every connection is a struct rb_conn owned by a
 * scenario, registered with data.ptr pointing at it. Writes are never issued from callbacks:
 * rb_conn_send_* appends to the connection's output buffer and puts it on a flush list, and the
 * loop writes each dirty connection once at the end of the turn. So a client that gets several
 * of its own messages back in one read answers them with one write(), as a real client library
 * would, and the generator spends its CPU on validating deliveries rather than on syscalls.
 *
 * Reads go into one shared scratch buffer; only an incomplete frame left at the end of a read
 * is copied into the connection's own buffer. Idle connections therefore hold no buffer at all,
 * which matters when the idle scenario opens 19,000 of them.
 *
 * Frames we send are masked with a per-connection key (RFC 6455 §5.3 wants a fresh key per
 * frame; servers cannot tell and the XOR costs the same either way).
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>

#define SCRATCH_SIZE (256u * 1024u)
#define MAX_EVENTS 1024
#define MAX_READS_PER_WAKE 4   /* fairness: a flooded connection yields after this many reads */

uint64_t rb_conn_errors;
uint64_t rb_frame_errors;
uint64_t rb_rx_ns;
bool rb_spin;
bool rb_deflate;

/* Inflating what a deflate connection receives: the server never keeps context
 * (server_no_context_takeover), so one inflater, reset per message, serves every connection. */
static z_stream rb_zin;
static bool rb_zin_ready;
static char *rb_zout;
static size_t rb_zout_cap;

/* Inflates the compressed message p[0..n) into rb_zout: its length, or -1. */
static long inflate_msg(const char *p, size_t n)
{
    static const unsigned char tail[4] = {0, 0, 0xff, 0xff};
    if (!rb_zin_ready) {
        if (inflateInit2(&rb_zin, -15) != Z_OK) return -1;
        rb_zin_ready = true;
    } else if (inflateReset(&rb_zin) != Z_OK) {
        return -1;
    }
    size_t got = 0;
    for (int part = 0; part < 2; part++) {
        rb_zin.next_in = part ? (Bytef *)tail : (Bytef *)p;
        rb_zin.avail_in = part ? 4 : (uInt)n;
        while (rb_zin.avail_in > 0) {
            if (rb_zout_cap - got < 4096) {
                size_t cap = rb_zout_cap ? rb_zout_cap * 2 : 65536;
                char *q = realloc(rb_zout, cap);
                if (!q) return -1;
                rb_zout = q;
                rb_zout_cap = cap;
            }
            rb_zin.next_out = (Bytef *)rb_zout + got;
            rb_zin.avail_out = (uInt)(rb_zout_cap - got);
            int r = inflate(&rb_zin, Z_SYNC_FLUSH);
            got = rb_zout_cap - rb_zin.avail_out;
            if (r == Z_STREAM_END) return (long)got;
            if (r != Z_OK && r != Z_BUF_ERROR) return -1;
        }
    }
    return (long)got;
}

static int loop_fd = -1;
static char *scratch;
static struct rb_conn *dirty_head;
static uint64_t rng_state;

/* ---- buffers ----------------------------------------------------------------------------- */

void rb_buf_reserve(struct rb_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    if (b->off > 0) {             /* reclaim consumed space first */
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= extra)
            return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < extra)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        perror("roomcast-bench: realloc");
        exit(2);
    }
    b->data = p;
    b->cap = cap;
}

void rb_buf_append(struct rb_buf *b, const void *p, size_t n)
{
    rb_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void rb_buf_consume(struct rb_buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

void rb_buf_release(struct rb_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* ---- setup ------------------------------------------------------------------------------- */

static uint64_t rng_next(void)
{
    /* xorshift64*: plenty for masking keys and handshake nonces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

int rb_loop_init(void)
{
    if (loop_fd >= 0)
        return 0;
    loop_fd = epoll_create1(EPOLL_CLOEXEC);
    scratch = malloc(SCRATCH_SIZE);
    if (loop_fd < 0 || !scratch)
        return -1;
    if (getrandom(&rng_state, sizeof(rng_state), 0) != sizeof(rng_state) || rng_state == 0)
        rng_state = rb_now_ns() | 1;
    return 0;
}

uint32_t rb_src_addr(uint32_t n)
{
    /* 127.0.0.1 .. 127.0.0.250, then 127.0.1.1 ..: n = 0 is 127.0.0.1, the server's own
     * address, so small runs look like ordinary loopback clients. */
    uint32_t host = n % 250u + 1u, mid = (n / 250u) % 250u;
    return (127u << 24) | (mid << 8) | host;
}

static void set_events(struct rb_conn *c, uint32_t ev)
{
    if (c->events == ev || c->detached)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(loop_fd, EPOLL_CTL_MOD, c->fd, &e);
    c->events = ev;
}

/* Interest follows state: reading unless paused, writing while connecting or output is
 * pending. Arming EPOLLOUT only while needed keeps idle connections out of every wake-up. */
static void update_events(struct rb_conn *c)
{
    uint32_t ev = 0;
    if (c->state == RB_CONNECTING)
        ev = EPOLLOUT;
    else if (c->tls_hs)
        ev = EPOLLIN | EPOLLRDHUP | (c->tls_want_write ? EPOLLOUT : 0);
    else {
        if (!c->paused)
            ev |= EPOLLIN | EPOLLRDHUP;
        if (c->out.len > c->out.off)
            ev |= EPOLLOUT;
    }
    set_events(c, ev);
}

static void mark_dirty(struct rb_conn *c)
{
    if (!c->dirty) {
        c->dirty = true;
        c->next_dirty = dirty_head;
        dirty_head = c;
    }
}

void rb__conn_dirty(struct rb_conn *c)
{
    mark_dirty(c);
}

const char *rb_transport_name(enum rb_transport tr)
{
    switch (tr) {
    case RB_TR_WS: return "ws";
    case RB_TR_LINE: return "line";
    case RB_TR_FRAMED: return "framed";
    case RB_TR_SIO: return "sio";
    default: return "?";
    }
}

static void compute_accept(const char *key, char out[32])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char in[128];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int n = snprintf(in, sizeof(in), "%s%s", key, guid);
    EVP_Digest(in, (size_t)n, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

int rb_conn_start(struct rb_conn *c, const struct rb_handler *h, const struct rb_target *t,
                  enum rb_transport tr, uint32_t src_ip, int rcvbuf)
{
    rb_buf_release(&c->in);
    rb_buf_release(&c->out);
    rb_buf_release(&c->frag);
    c->h = h;
    c->tr = tr;
    c->state = RB_CONNECTING;
    c->paused = false;
    c->close_sent = false;
    c->shut_pending = false;
    c->close_code = 0;
    c->detached = false;
    c->errmsg[0] = 0;
    c->events = 0;
    c->mask = (uint32_t)rng_next() | 0x01010101u;
    c->sio_state = 0;
    bool ws = tr == RB_TR_WS || tr == RB_TR_SIO;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->state = RB_IDLE;
        return -errno;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (rcvbuf > 0) /* must precede connect() to shrink the advertised window */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (src_ip) {
        /* Let connect() pick the port against the full 4-tuple, not bind(). */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(src_ip)};
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
            int e = errno;
            close(fd);
            c->state = RB_IDLE;
            return -e;
        }
    }
    const struct sockaddr_in *to = ws ? &t->addr : &t->tcp;
    if (connect(fd, (const struct sockaddr *)to, sizeof(*to)) != 0 &&
        errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        c->state = RB_IDLE;
        return -e;
    }
    c->fd = fd;
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(loop_fd, EPOLL_CTL_ADD, fd, &e) != 0) {
        int err = errno;
        close(fd);
        c->fd = -1;
        c->state = RB_IDLE;
        return -err;
    }
    c->events = EPOLLOUT;
    c->ssl = NULL;
    c->tls_hs = c->tls_want_write = false;
    c->tls_retry = 0;
    if (rb_tls_on() && rb__tls_start(c) != 0) {
        epoll_ctl(loop_fd, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
        c->fd = -1;
        c->state = RB_IDLE;
        return -ENOMEM;
    }
    if (!ws) {
        rb__tcp_start(c);
        return 0;
    }

    /* The upgrade request goes out once connect() completes. */
    unsigned char nonce[16];
    char key[32];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rng_next();
        memcpy(nonce + i, &r, 8);
    }
    EVP_EncodeBlock((unsigned char *)key, nonce, 16);
    compute_accept(key, c->accept);
    char req[384];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     tr == RB_TR_SIO ? "/socket.io/?EIO=4&transport=websocket" : "/", t->host, key,
                     rb_deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                  "client_no_context_takeover\r\n" : "");
    rb_buf_append(&c->out, req, (size_t)n);
    return 0;
}

/* Close the fd and free the buffers; the struct is ready to be reused. */
static void conn_release(struct rb_conn *c)
{
    if (!c->detached)
        epoll_ctl(loop_fd, EPOLL_CTL_DEL, c->fd, NULL);
    rb__tls_free(c); /* before the socket: the session writes nothing more */
    close(c->fd);
    c->fd = -1;
    c->state = RB_IDLE;
    c->events = 0;
    c->detached = false;
    rb_buf_release(&c->in);
    rb_buf_release(&c->out);
    rb_buf_release(&c->frag);
}

/* Close the fd and tell the owner. */
void rb__conn_end(struct rb_conn *c, enum rb_end why, const char *err)
{
    if (c->fd < 0)
        return;
    if (why == RB_END_ERROR) {
        rb_conn_errors++;
        if (!c->errmsg[0] && err)
            snprintf(c->errmsg, sizeof(c->errmsg), "%s", err);
    }
    conn_release(c);
    if (c->h && c->h->closed)
        c->h->closed(c, why);
}

void rb_conn_abort(struct rb_conn *c)
{
    if (c->fd >= 0)
        conn_release(c);
}

void rb_conn_pause(struct rb_conn *c, bool paused)
{
    c->paused = paused;
    if (!paused && c->detached && c->fd >= 0) {
        struct epoll_event e = {.events = 0, .data.ptr = c};
        epoll_ctl(loop_fd, EPOLL_CTL_ADD, c->fd, &e);
        c->detached = false;
        c->events = 0;
    }
    if (c->fd >= 0 && c->state != RB_CONNECTING)
        update_events(c);
}

/* ---- sending ----------------------------------------------------------------------------- */

void rb__conn_put_frame(struct rb_conn *c, unsigned opcode, const char *p, size_t n)
{
    rb_buf_reserve(&c->out, n + 14);
    unsigned char *h = (unsigned char *)c->out.data + c->out.len;
    size_t hl = 2;
    h[0] = (unsigned char)(0x80u | opcode);
    if (n < 126) {
        h[1] = (unsigned char)(0x80u | n);
    } else if (n < 65536) {
        h[1] = 0x80u | 126u;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    } else {
        h[1] = 0x80u | 127u;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    memcpy(h + hl, &c->mask, 4);
    unsigned char *d = h + hl + 4;
    /* XOR eight bytes at a time with the key repeated; the key is in wire order already. */
    uint64_t m8 = (uint64_t)c->mask | ((uint64_t)c->mask << 32);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= m8;
        memcpy(d + i, &w, 8);
    }
    const unsigned char *mk = (const unsigned char *)&c->mask;
    for (; i < n; i++)
        d[i] = (unsigned char)p[i] ^ mk[i & 3];
    c->out.len += hl + 4 + n;
    mark_dirty(c);
}

void rb_conn_send_text(struct rb_conn *c, const char *p, size_t n)
{
    if (c->state != RB_OPEN)
        return;
    if (c->tr == RB_TR_SIO) {
        rb__sio_put_text(c, p, n);
        return;
    }
    if (c->tr != RB_TR_WS) {
        rb__tcp_put_text(c, p, n);
        return;
    }
    rb__conn_put_frame(c, 0x1, p, n);
}

void rb_conn_send_close(struct rb_conn *c, int code)
{
    if (c->state != RB_OPEN || c->close_sent)
        return;
    if (c->tr != RB_TR_WS && c->tr != RB_TR_SIO) {
        rb__tcp_put_close(c, code);
        return;
    }
    char b[2] = {(char)(code >> 8), (char)code};
    rb__conn_put_frame(c, 0x8, b, 2);
    c->close_sent = true;
    c->state = RB_CLOSING;
}

/* Write what is queued; false if the connection ended. */
bool rb__conn_flush(struct rb_conn *c)
{
    if (c->tls_hs) {
        /* TLS: nothing goes out before the handshake is done; it is driven from here. */
        int h = rb__tls_handshake(c);
        if (h < 0) {
            rb__conn_end(c, RB_END_ERROR, c->errmsg[0] ? c->errmsg : "TLS handshake failed");
            return false;
        }
        if (h == 0) {
            update_events(c);
            return true;
        }
    }
    while (c->out.len > c->out.off) {
        ssize_t n = c->ssl ? rb__tls_write(c, c->out.data + c->out.off, c->out.len - c->out.off)
                           : send(c->fd, c->out.data + c->out.off, c->out.len - c->out.off,
                                  MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            rb_buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        char e[64];
        snprintf(e, sizeof(e), "write: %s", strerror(errno));
        rb__conn_end(c, RB_END_ERROR, e);
        return false;
    }
    /* Large buffers are returned once empty so idle connections stay small. */
    if (c->out.len == 0 && c->out.cap > 65536)
        rb_buf_release(&c->out);
    if (c->shut_pending && c->out.len == c->out.off) {
        /* Line mode's close: our EOF, once everything before it is written. */
        c->shut_pending = false;
        if (c->ssl)
            rb__tls_shutdown(c);
        shutdown(c->fd, SHUT_WR);
    }
    update_events(c);
    return true;
}

/* ---- receiving --------------------------------------------------------------------------- */

static void deliver(struct rb_conn *c, unsigned opcode, const char *p, size_t n)
{
    if (opcode == 0x1 && c->tr == RB_TR_SIO)
        rb__sio_input(c, p, n);
    else if (opcode == 0x1 && c->h && c->h->text)
        c->h->text(c, p, n);
    /* Binary messages are not used by the generator; they are ignored. */
}

/* Parse complete frames from p[0..n); returns bytes consumed, or -1 if the connection ended. */
static ssize_t parse_frames(struct rb_conn *c, const char *p, size_t n)
{
    size_t pos = 0;
    while (n - pos >= 2 && c->fd >= 0 && !c->paused) {
        const unsigned char *h = (const unsigned char *)p + pos;
        bool fin = h[0] & 0x80;
        unsigned op = h[0] & 0x0f;
        size_t hl = 2;
        uint64_t len = h[1] & 0x7f;
        bool rsv1 = (h[0] & 0x40) && c->deflate && (op == 0x1 || op == 0x2) && fin;
        if ((h[0] & (rsv1 ? 0x30 : 0x70)) || (h[1] & 0x80)) { /* RSV bits or a masked frame */
            rb_frame_errors++;
            rb__conn_end(c, RB_END_ERROR, "bad frame header from server");
            return -1;
        }
        if (len == 126) {
            if (n - pos < 4)
                break;
            len = ((uint64_t)h[2] << 8) | h[3];
            hl = 4;
        } else if (len == 127) {
            if (n - pos < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | h[2 + i];
            hl = 10;
        }
        if (len > (64u << 20)) {
            rb_frame_errors++;
            rb__conn_end(c, RB_END_ERROR, "frame larger than 64 MiB");
            return -1;
        }
        if (n - pos < hl + len)
            break;
        const char *pl = p + pos + hl;
        pos += hl + (size_t)len;
        switch (op) {
        case 0x1:
        case 0x2:
            if (c->frag.len) {
                rb_frame_errors++;
                rb__conn_end(c, RB_END_ERROR, "new message inside a fragmented one");
                return -1;
            }
            if (fin && rsv1) {
                long il = inflate_msg(pl, (size_t)len);
                if (il < 0) {
                    rb_frame_errors++;
                    rb__conn_end(c, RB_END_ERROR, "bad compressed frame from server");
                    return -1;
                }
                deliver(c, op, rb_zout, (size_t)il);
            } else if (fin) {
                deliver(c, op, pl, (size_t)len);
            } else {
                rb_buf_append(&c->frag, &op, 1); /* first byte remembers the opcode */
                rb_buf_append(&c->frag, pl, (size_t)len);
            }
            break;
        case 0x0:
            if (!c->frag.len) {
                rb_frame_errors++;
                rb__conn_end(c, RB_END_ERROR, "continuation without a message");
                return -1;
            }
            rb_buf_append(&c->frag, pl, (size_t)len);
            if (fin) {
                unsigned mop = (unsigned char)c->frag.data[0];
                deliver(c, mop, c->frag.data + 1, c->frag.len - 1);
                rb_buf_release(&c->frag);
            }
            break;
        case 0x8:
            c->close_code = len >= 2 ? (((unsigned char)pl[0] << 8) | (unsigned char)pl[1]) : 1005;
            if (!c->close_sent && c->state == RB_OPEN) {
                /* Echo the code, then finish: the server closes TCP after our answer. */
                char b[2] = {pl[0], pl[1]};
                rb__conn_put_frame(c, 0x8, b, len >= 2 ? 2 : 0);
                c->close_sent = true;
                rb__conn_flush(c);
            }
            rb__conn_end(c, RB_END_CLOSE_FRAME, NULL);
            return -1;
        case 0x9:
            if (len > 125 || !fin) {
                rb_frame_errors++;
                rb__conn_end(c, RB_END_ERROR, "bad ping");
                return -1;
            }
            if (c->state == RB_OPEN)
                rb__conn_put_frame(c, 0xA, pl, (size_t)len);
            break;
        case 0xA:
            break;
        default:
            rb_frame_errors++;
            rb__conn_end(c, RB_END_ERROR, "reserved opcode from server");
            return -1;
        }
    }
    return (ssize_t)pos;
}

/* Upgrade response: 101, and the Sec-WebSocket-Accept we expect. Returns header length, 0 if
 * incomplete, -1 if refused. */
static ssize_t parse_handshake(struct rb_conn *c, const char *p, size_t n)
{
    const char *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end)
        return n > 16384 ? -1 : 0;
    size_t hlen = (size_t)(end - p) + 4;
    if (n < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0) {
        snprintf(c->errmsg, sizeof(c->errmsg), "handshake refused: %.40s", p);
        char *nl = strchr(c->errmsg, '\r');
        if (nl)
            *nl = 0;
        return -1;
    }
    /* Header names are case-insensitive; scan line by line. */
    const char *line = memchr(p, '\n', hlen);
    bool ok = false;
    while (line && line < end) {
        line++;
        static const char name[] = "sec-websocket-accept:";
        if ((size_t)(end - line) > sizeof(name) && strncasecmp(line, name, sizeof(name) - 1) == 0) {
            const char *v = line + sizeof(name) - 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t al = strlen(c->accept);
            ok = (size_t)(end - v) >= al && memcmp(v, c->accept, al) == 0 &&
                 (v[al] == '\r' || v[al] == ' ');
        }
        line = memchr(line, '\n', (size_t)(end - line) + 2);
    }
    if (!ok) {
        snprintf(c->errmsg, sizeof(c->errmsg), "bad Sec-WebSocket-Accept");
        return -1;
    }
    /* permessage-deflate accepted when the answer names it (case as roomcast writes it) */
    c->deflate = rb_deflate && memmem(p, hlen, "permessage-deflate", 18) != NULL;
    return (ssize_t)hlen;
}

void rb__conn_open(struct rb_conn *c)
{
    c->state = RB_OPEN;
    if (c->tr == RB_TR_SIO && c->sio_state != 2)
        return;    /* the WebSocket is up; the scenario's open waits for Socket.IO's connect */
    if (c->h && c->h->open)
        c->h->open(c);
}

/* Handle bytes p[0..n) read from the socket; `own` says p is c->in rather than scratch. */
static void conn_input(struct rb_conn *c, const char *p, size_t n, bool own)
{
    size_t used = 0;
    if (c->tr != RB_TR_WS && c->tr != RB_TR_SIO) {
        ssize_t k = rb__tcp_input(c, p, n);
        if (k < 0)
            return;
        used = (size_t)k;
        goto keep;
    }
    if (c->state == RB_HANDSHAKE) {
        ssize_t h = parse_handshake(c, p, n);
        if (h < 0) {
            char e[64];
            snprintf(e, sizeof(e), "%s", c->errmsg[0] ? c->errmsg : "bad handshake");
            rb__conn_end(c, RB_END_ERROR, e);
            return;
        }
        if (h == 0)
            goto keep;
        used = (size_t)h;
        rb__conn_open(c);
        if (c->fd < 0)
            return;
    }
    if (c->state == RB_OPEN || c->state == RB_CLOSING) {
        ssize_t k = parse_frames(c, p + used, n - used);
        if (k < 0)
            return;
        used += (size_t)k;
    }
keep:
    if (own) {
        rb_buf_consume(&c->in, used);
        if (c->in.len == 0 && c->in.cap > SCRATCH_SIZE)
            rb_buf_release(&c->in);
    } else if (used < n) {
        rb_buf_append(&c->in, p + used, n - used);
    }
}

static void conn_readable(struct rb_conn *c)
{
    if (c->tls_hs && (!rb__conn_flush(c) || c->tls_hs))
        return; /* ended, or the handshake goes on */
    /* TLS reads on until drained (rb__tls_read fills the buffer and stops at WANT_READ): bytes
     * decrypted inside OpenSSL would never make the level-triggered socket readable again. */
    for (int i = 0; (i < MAX_READS_PER_WAKE || c->ssl) && c->fd >= 0 && !c->paused; i++) {
        bool own = c->in.len > c->in.off;
        char *dst;
        size_t room;
        if (own) {
            rb_buf_reserve(&c->in, 65536);
            dst = c->in.data + c->in.len;
            room = c->in.cap - c->in.len;
        } else {
            dst = scratch;
            room = SCRATCH_SIZE;
        }
        ssize_t n = c->ssl ? rb__tls_read(c, dst, room) : recv(c->fd, dst, room, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            char e[64];
            snprintf(e, sizeof(e), "read: %s", strerror(errno));
            rb__conn_end(c, RB_END_ERROR, e);
            return;
        }
        if (n == 0) {
            rb__conn_end(c, c->state == RB_HANDSHAKE ? RB_END_ERROR : RB_END_EOF,
                         "EOF in handshake");
            return;
        }
        rb_rx_ns = rb_now_ns();
        c->rx_bytes += (uint64_t)n;
        if (own) {
            c->in.len += (size_t)n;
            conn_input(c, c->in.data + c->in.off, c->in.len - c->in.off, true);
        } else {
            conn_input(c, scratch, (size_t)n, false);
        }
        if ((size_t)n < room)
            return;
    }
}

static void conn_writable(struct rb_conn *c)
{
    if (c->state == RB_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            char e[64];
            snprintf(e, sizeof(e), "connect: %s", strerror(err));
            rb__conn_end(c, RB_END_ERROR, e);
            return;
        }
        if (c->tr == RB_TR_LINE) {
            /* No handshake: messages may go out now. */
            rb__conn_open(c);
            if (c->fd < 0)
                return;
        } else {
            c->state = RB_HANDSHAKE;
        }
    }
    rb__conn_flush(c);
}

/* Write every connection that queued output. Ending a connection while flushing cannot put
 * anything new on the list, so taking entries off the head is safe. */
static void flush_dirty(void)
{
    while (dirty_head) {
        struct rb_conn *c = dirty_head;
        dirty_head = c->next_dirty;
        c->dirty = false;
        if (c->fd >= 0 && c->state != RB_CONNECTING)
            rb__conn_flush(c);
    }
}

/* epoll_pwait2 for its nanosecond timeout (the 30 Hz pacing needs better than 1 ms); where the
 * kernel or a tool lacks it (valgrind does not know the syscall), epoll_wait with the timeout
 * rounded up to whole milliseconds, so a profile of the generator can still be taken. */
static int wait_events(struct epoll_event *ev, const struct timespec *ts)
{
    static bool no_pwait2;
    if (!no_pwait2) {
        int n = epoll_pwait2(loop_fd, ev, MAX_EVENTS, ts, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n;
        no_pwait2 = true;
    }
    int ms = -1;
    if (ts) {
        int64_t ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
        ms = (int)((ns + 999999) / 1000000);
    }
    return epoll_wait(loop_fd, ev, MAX_EVENTS, ms);
}

int rb_loop_once(int64_t timeout_ns)
{
    /* Output queued outside a loop turn (the first publishes, paced sends) goes out before we
     * sleep, not after. */
    flush_dirty();
    static struct epoll_event ev[MAX_EVENTS];
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    int n;
    if (rb_spin && timeout_ns != 0) {
        /* Busy-poll instead of sleeping: see rb_spin in bench.h. */
        uint64_t until = timeout_ns > 0 ? rb_now_ns() + (uint64_t)timeout_ns : UINT64_MAX;
        struct timespec zero = {0, 0};
        do
            n = wait_events(ev, &zero);
        while (n == 0 && rb_now_ns() < until);
    } else {
        n = wait_events(ev, tsp);
    }
    if (n < 0 && errno != EINTR) {
        perror("roomcast-bench: epoll_pwait2");
        exit(2);
    }
    for (int i = 0; i < n; i++) {
        struct rb_conn *c = ev[i].data.ptr;
        uint32_t e = ev[i].events;
        if (c->fd < 0)
            continue;
        if (e & EPOLLOUT)
            conn_writable(c);
        if (c->fd < 0)
            continue;
        if (c->paused && (e & (EPOLLERR | EPOLLHUP))) {
            /* A stuck reader must not read, but epoll reports hang-ups whatever the interest
             * mask: take it out of the set until it is resumed, or the loop would spin. */
            epoll_ctl(loop_fd, EPOLL_CTL_DEL, c->fd, NULL);
            c->detached = true;
            continue;
        }
        if (e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
            conn_readable(c);
    }
    flush_dirty();
    return n < 0 ? 0 : n;
}
