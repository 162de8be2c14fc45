/* clwire.h — the cluster's text formats: the Redis URL, key and channel names, and the message
 * a node finds on a room's channel.
 *
 * Everything here is pure (no sockets, no allocation) so it can be unit-tested byte by byte and
 * fuzzed (fuzz/fuzz_clwire.c). The layout these functions produce is specified in
 * docs/cluster.md ("Keys" and "The channel message"); change the two together.
 *
 * Names, for prefix P and room R (R is copied as is: Redis keys and channels are binary-safe):
 *     P:{R}:m     the room's meta hash: e = epoch, s = last msg_id
 *     P:{R}:s     the room's stream: entry id "<msg_id>-0", field d = payload
 *     P:{R}:i:K   an idempotency record for key K: "<msg_id>:<epoch>"
 *     P:{R}:c     the room's pub/sub channel
 *     P:ctl:N     node N's control channel: its subscriber joins it first and its heartbeat
 *                 goes through it (cluster.c)
 *     P:{R}:p     the room's members on every node (presence): field <client_id> =
 *                 "<node>:<user member or ''>", field v = version (cluster.c's scripts)
 *     P:nodes, P:hb:N, P:node:N:m, P:rooms   the node registry, heartbeats, each node's
 *                 members and the rooms with members (built by the scripts; docs/cluster.md)
 * The {R} hash tag keeps a room's keys in one Redis Cluster slot (for a later sharded setup);
 * with a single Redis it is just part of the name.
 */
#ifndef RC_CLWIRE_H
#define RC_CLWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the --redis URL ------------------------------------------------------------------------
 *
 *     redis://[[user]:password@]host[:port][/db]      host: name, IPv4, or [IPv6]
 *     unix://[[user]:password@]/path/to/socket[?db=N]
 *
 * user and password may be percent-encoded (%40 for '@'); the port defaults to 6379 and db to 0.
 * A password without a user is sent as `AUTH password`, with one as `AUTH user password`. */

#define RC_CLWIRE_HOST_MAX 255
#define RC_CLWIRE_PATH_MAX 107  /* sun_path holds 108 bytes with the NUL */
#define RC_CLWIRE_USER_MAX 127
#define RC_CLWIRE_PASS_MAX 255

typedef struct rc_clwire_url {
    bool is_unix;                          /* unix:// (path) rather than redis:// (host, port) */
    char host[RC_CLWIRE_HOST_MAX + 1];     /* host name or address, no brackets; "" for unix */
    uint16_t port;                         /* TCP port; 0 for unix */
    char path[RC_CLWIRE_PATH_MAX + 1];     /* socket path; "" for TCP */
    char user[RC_CLWIRE_USER_MAX + 1];     /* ACL user, "" when none */
    char pass[RC_CLWIRE_PASS_MAX + 1];     /* password, "" when none (then no AUTH) */
    bool has_pass;                         /* a password was given (it may be empty) */
    uint32_t db;                           /* SELECTed database, 0 by default */
} rc_clwire_url;

/* rc_clwire_url_parse fills *u from the n bytes at s. Returns 0, or -1 with a static message
 * saying what is wrong in *why. */
int rc_clwire_url_parse(const char *s, size_t n, rc_clwire_url *u, const char **why);

/* rc_clwire_url_describe writes the URL without its password ("redis://host:port/db" or
 * "unix:///path?db=N"), for logs. Returns the length (truncated to cap - 1). */
size_t rc_clwire_url_describe(const rc_clwire_url *u, char *out, size_t cap);

/* ---- names ------------------------------------------------------------------------------- */

/* The kinds of names above. */
enum rc_clwire_name { RC_CLWIRE_META, RC_CLWIRE_STREAM, RC_CLWIRE_IDEM, RC_CLWIRE_CHANNEL,
                      RC_CLWIRE_STATE, /* the room's state: latest message per state key */
                      RC_CLWIRE_PRESENCE /* the room's members on every node */ };

/* rc_clwire_name writes the name of kind for room (and, for RC_CLWIRE_IDEM, the key) into out.
 * Returns the length, or -1 if it does not fit in cap bytes (no NUL is written; names are
 * passed to Redis with their length). */
int rc_clwire_name(char *out, size_t cap, const char *prefix, enum rc_clwire_name kind,
                   const char *room, size_t room_len, const char *key, size_t key_len);

/* rc_clwire_channel_room finds the room in a channel name made by rc_clwire_name: sets
 * *room and *room_len (pointing into ch) and returns 0, or -1 if ch is not a room channel of
 * prefix. */
int rc_clwire_channel_room(const char *ch, size_t n, const char *prefix, const char **room,
                           size_t *room_len);

/* ---- the channel message ----------------------------------------------------------------
 *
 *     r1:<msg_id>:<epoch>:<payload>
 *
 * msg_id: decimal, 1 to 2^53 (Lua's exact integers), no leading zero; epoch: 1 to
 * RC_CLWIRE_EPOCH_MAX letters or digits; payload: the rest, any bytes. The Lua script writes it
 * (docs/cluster.md); nodes only read it. */

#define RC_CLWIRE_EPOCH_MAX 32
#define RC_CLWIRE_MSG_ID_MAX (1ull << 53)

typedef struct rc_clwire_msg {
    uint64_t msg_id;         /* the room's sequence number, >= 1 */
    const char *epoch;       /* points into the decoded bytes, epoch_len long */
    size_t epoch_len;
    const char *payload;     /* points into the decoded bytes, payload_len long */
    size_t payload_len;
} rc_clwire_msg;

/* rc_clwire_msg_decode parses the n bytes at p (a whole pub/sub message; nothing is copied).
 * Returns 0, or -1 if they are not a message of this format. */
int rc_clwire_msg_decode(const char *p, size_t n, rc_clwire_msg *m);

/* rc_clwire_msg_encode writes the format above (what the script sends), for tests and tools.
 * Returns the length, or -1 if it does not fit in cap. */
int rc_clwire_msg_encode(char *out, size_t cap, uint64_t msg_id, const char *epoch,
                         size_t epoch_len, const void *payload, size_t payload_len);

/* ---- the batch form ------------------------------------------------------------------------
 *
 *     r2:<first msg_id>:<count>:<epoch>:<len>:<payload><len>:<payload>...
 *
 * count (2 to RC_CLWIRE_BATCH_MAX) messages of one room sequenced by one script call, with
 * msg_ids first .. first + count - 1 in one epoch; each payload is preceded by its length
 * (decimal, no leading zero) and ':'. Nothing follows the last payload. One PUBLISH per batch is
 * what makes Redis's cost per message fall below one PUBLISH's (docs/cluster.md). */
#define RC_CLWIRE_BATCH_MAX 4096

typedef struct rc_clwire_batch {
    uint64_t first;          /* msg_id of the first message */
    uint64_t count;          /* messages in the batch */
    const char *epoch;       /* points into the decoded bytes, epoch_len long */
    size_t epoch_len;
    const char *at, *end;    /* iteration: the next length prefix, the end of the bytes */
    uint64_t next;           /* iteration: index of the next message */
} rc_clwire_batch;

/* rc_clwire_batch_decode checks the whole n bytes at p (nothing is copied; every length and
 * the count must agree exactly) and sets b up for rc_clwire_batch_next. Returns 0, or -1 if
 * they are not a batch of this format. */
int rc_clwire_batch_decode(const char *p, size_t n, rc_clwire_batch *b);

/* rc_clwire_batch_body is rc_clwire_batch_decode for a body whose header is known (a stream
 * entry holding a batch: first msg_id, count, the room's epoch; body is n bytes). */
int rc_clwire_batch_body(rc_clwire_batch *b, uint64_t first, uint64_t count, const char *epoch,
                         size_t epoch_len, const char *body, size_t n);

/* rc_clwire_batch_next fills m with the next message of a decoded batch (msg_id, epoch,
 * payload pointing into the decoded bytes). Returns 1, or 0 after the last one. */
int rc_clwire_batch_next(rc_clwire_batch *b, rc_clwire_msg *m);

/* rc_clwire_batch_encode writes the batch form of count payloads (for tests and the fuzz
 * target). Returns the length, or -1 if it does not fit in cap or count is out of range. */
int rc_clwire_batch_encode(char *out, size_t cap, uint64_t first, const char *epoch,
                           size_t epoch_len, const void *const *payloads, const size_t *lens,
                           size_t count);

/* ---- the presence event ------------------------------------------------------------------
 *
 *     p1:<version>:<j|l>:<client_id>:<node>:<info>
 *
 * A member joined (j) or left (l) a room on node <node> (1 to RC_CLWIRE_NODE_MAX letters or
 * digits); version is the room's presence version after the change (decimal, >= 1); info is
 * the rest: for a join the member's `"user":...,` text (empty when anonymous), for a leave
 * the reason's name. The presence scripts write it on the room's channel (docs/cluster.md). */
#define RC_CLWIRE_NODE_MAX 32

typedef struct rc_clwire_pres {
    uint64_t version;        /* the room's presence version after this change */
    bool join;               /* joined (else left) */
    uint64_t client_id;      /* the member */
    const char *node;        /* points into the decoded bytes, node_len long */
    size_t node_len;
    const char *info;        /* points into the decoded bytes, info_len long */
    size_t info_len;
} rc_clwire_pres;

/* rc_clwire_pres_decode parses the n bytes at p (nothing is copied). Returns 0, or -1 if they
 * are not a presence event. */
int rc_clwire_pres_decode(const char *p, size_t n, rc_clwire_pres *e);

/* rc_clwire_pres_encode writes the format above (for tests and the fuzz target). Returns the
 * length, or -1 if it does not fit in cap. */
int rc_clwire_pres_encode(char *out, size_t cap, const rc_clwire_pres *e);

/* rc_clwire_epoch_ok says whether e (n bytes) is a well-formed epoch. */
bool rc_clwire_epoch_ok(const char *e, size_t n);

/* rc_clwire_u64 parses a decimal number without sign or leading zero (except "0") in n bytes.
 * Returns 0, or -1 on anything else or overflow. */
int rc_clwire_u64(const char *s, size_t n, uint64_t *v);

#endif
