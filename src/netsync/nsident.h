/* nsident.h — what roomcast remembers about each ZeroMQ routing identity of the NetSync
 * ROUTERs: the client generation it announced, the connection it last spoke on, and (control
 * lane) its unicast output queue.
 *
 * Protocol 8 moves the control downlink from the PUB to the control ROUTER: the server sends
 * [identity][room][payload] to each client (wire spec v8 §1, §8). The reference keeps one
 * server-wide FIFO of 1024 entries for all of them and drops the newest message when it is
 * full, so a join storm of 100 clients loses thousands of mappings and NV syncs, also of
 * unrelated rooms (spec §4.8, §6.6). Here every identity has its own queue:
 *
 *  - Order: a peer's messages leave in the order they were given. A message is sent at once
 *    when its peer's queue is empty; otherwise it waits behind the others.
 *  - EAGAIN (ROUTER_MANDATORY: that peer's pipe is at its high-water mark): the message stays
 *    at the head and the peer is put on the blocked list; nsy_idents_flush retries the blocked
 *    peers (netsync.c calls it when the ROUTER's ZMQ_FD signals — libzmq's activate_write
 *    command arrives through it — after every drain and from a back-off timer, because any
 *    call on the socket may consume that edge). One slow peer never delays another.
 *  - EHOSTUNREACH (the ROUTER no longer knows the identity: the peer disconnected): the peer's
 *    whole queue is dropped and counted (unicast_dropped{reason="unreachable"}).
 *  - Supersede: a DEVICE_ID_MAPPING (type 6) is a complete snapshot of its room, so a queued,
 *    unsent mapping for the same room is removed when a newer one is queued (the newer one
 *    goes to the tail, so it never overtakes what was queued before it). Counted as
 *    unicast_superseded; no information is lost.
 *  - Slow consumer: a peer whose queue would exceed max_msgs messages or max_bytes bytes is
 *    disconnected (the slow callback cuts its connection, nspeers NSY_GONE_SLOW) and its
 *    queue dropped, as roomcast does with a WebSocket client over --max-pending. Dropping
 *    single messages instead would leave the client with silently wrong state (an RPC or
 *    an NV delta missing, which nothing ever repairs); a disconnected client reconnects
 *    and is sent its state afresh by the engine. The limits are far above what a join storm
 *    needs: the queue only holds what exceeds libzmq's own pipe (SNDHWM 1000 messages per
 *    peer on top of the client's RCVHWM).
 *
 * Bounds: at most `max` records (the least recently seen is evicted, its queue dropped and
 * counted, when a new identity needs a record); a record whose queue is empty is forgotten
 * after `ttl` ns without traffic. Records are keyed by (lane, identity): the two ROUTERs have
 * separate identity spaces.
 */
#ifndef RC_NSIDENT_H
#define RC_NSIDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/hash.h"
#include "netsync/nsstats.h"

#define NSY_IDENT_MAX_LEN 255    /* libzmq caps routing ids at 255 bytes */

typedef struct nsy_ucmsg nsy_ucmsg;

typedef struct nsy_ident {
    rc_hnode node;               /* in nsy_idents.tab, keyed by (lane, id) */
    struct nsy_ident *older, *newer; /* recency list (oldest first) */
    struct nsy_ident *bprev, *bnext; /* blocked list, when blocked */
    uint8_t lane;                /* enum nsy_lane */
    uint8_t gen;                 /* generation announced (netsync.h RC_NETSYNC_GEN_*), 0: none */
    uint8_t version;             /* protocol version announced with an unsupported gen */
    uint8_t len;                 /* bytes of id */
    bool blocked;                /* on the blocked list (head met EAGAIN) */
    int fd;                      /* libzmq descriptor of its last message's connection, -1 */
    uint64_t conn;               /* nspeers serial of that connection, 0: unknown */
    uint64_t last_seen;          /* loop ns of its last message (or unicast) */
    uint64_t last_reply;         /* loop ns of the last version reply (rate limit), 0: none */
    nsy_ucmsg *head, *tail;      /* unicast queue (control lane only) */
    uint32_t nq;                 /* messages queued */
    size_t qbytes;               /* their room + payload bytes */
    uint8_t id[];                /* the routing id */
} nsy_ident;

/* Sends one message [id][room][payload] on the control ROUTER without blocking: 0, -EAGAIN
 * (pipe full), -EHOSTUNREACH (unknown identity) or another -errno. */
typedef int nsy_ident_send_fn(void *arg, const uint8_t *id, size_t id_len, const uint8_t *room,
                              size_t room_len, const uint8_t *p, size_t n);
/* Disconnects a slow consumer's connection (fd, conn as recorded; fd may be -1). */
typedef void nsy_ident_slow_fn(void *arg, const nsy_ident *who);

typedef struct nsy_idents {
    rc_htab tab;                 /* every record */
    nsy_ident *oldest, *newest;  /* recency list */
    nsy_ident *blocked;          /* peers whose queue head met EAGAIN */
    size_t count;                /* records */
    size_t max;                  /* records at most */
    uint64_t ttl;                /* ns an idle record with an empty queue is kept */
    uint32_t max_msgs;           /* queued messages per peer before it is a slow consumer */
    size_t max_bytes;            /* queued bytes per peer before it is a slow consumer */
    nsy_ident_send_fn *send;     /* the ROUTER */
    nsy_ident_slow_fn *slow;     /* cuts a slow consumer */
    void *arg;                   /* their argument */
    rc_netsync_stats *st;        /* counters (not owned) */
} nsy_idents;

/* nsy_idents_init sets up an empty table; nsy_idents_release frees every record and queue
 * (dropped queues are not counted: the server is stopping). */
void nsy_idents_init(nsy_idents *t, rc_netsync_stats *st, size_t max, uint64_t ttl,
                     uint32_t max_msgs, size_t max_bytes, nsy_ident_send_fn *send,
                     nsy_ident_slow_fn *slow, void *arg);
void nsy_idents_release(nsy_idents *t);

/* nsy_idents_find is the record of (lane, id), or NULL. */
nsy_ident *nsy_idents_find(const nsy_idents *t, int lane, const uint8_t *id, size_t len);

/* nsy_idents_touch finds or creates the record of (lane, id), marks it seen at now and makes
 * it the most recent (creating one may evict the oldest). NULL when out of memory. */
nsy_ident *nsy_idents_touch(nsy_idents *t, int lane, const uint8_t *id, size_t len,
                            uint64_t now);

/* nsy_idents_unicast queues [id][room][payload] for the control-lane identity id (creating
 * its record) and sends what its queue allows. Copies room and payload. Returns 0 (sent or
 * queued), -ENOBUFS (slow consumer: disconnected, queue and this message dropped),
 * -EHOSTUNREACH (the identity is not connected: nothing queued), -ENOMEM, -EINVAL. */
int nsy_idents_unicast(nsy_idents *t, const uint8_t *id, size_t id_len, const uint8_t *room,
                       size_t room_len, const uint8_t *p, size_t n, uint64_t now);

/* nsy_idents_flush retries the blocked peers, sending at most budget messages in all.
 * Returns true when no peer is blocked any more. */
bool nsy_idents_flush(nsy_idents *t, size_t budget);

/* nsy_idents_expire forgets records idle for ttl with an empty queue. */
void nsy_idents_expire(nsy_idents *t, uint64_t now);

#endif
