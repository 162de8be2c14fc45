/* zmtp.h — ZMTP 3.0 / 3.1 codec, NULL mechanism, server side (RFC 23, RFC 37).
 *
 * What a ZeroMQ peer sends a server: a 64-byte greeting (signature, version, mechanism), a
 * READY command carrying its Socket-Type and, for DEALER/REQ/ROUTER, its Identity, then
 * traffic: commands (PING, PONG, ERROR, and 3.1's SUBSCRIBE/CANCEL) and messages of one or more
 * frames. A frame is a flags byte (MORE, LONG, COMMAND), a 1- or 8-byte big-endian size and
 * the body.
 *
 * The reader works like the WebSocket codec (wsframe.h) and picohttpparser: the caller keeps
 * the unconsumed input contiguous, starting at the current unit (the greeting, one command, or
 * every frame of the current message so far), and calls rc_zmtp_read with it after each read.
 * The reader remembers how far it has validated (r->pos), so a call costs only the new bytes,
 * and it decides at every byte: any prefix of a valid stream asks for more, an invalid one is
 * refused as soon as the byte that proves it is in. It never allocates and never copies:
 * items point into the caller's bytes. Limits are checked on frame headers, before the body
 * arrives: a frame over max_frame, a message over max_frames frames (unless truncate) or over
 * max_bytes of wire size (headers included: that is what the caller's buffer must hold) is an
 * error the moment its header is read.
 *
 * Version handling follows libzmq 4.3 (zmtp_engine.cpp): a peer whose first byte is not 0xFF,
 * or whose 10th byte has bit 0 clear, speaks unversioned ZMTP 1.0 (or is not ZeroMQ); major
 * versions 1 and 2 are ZMTP 1.0/2.0. Those are refused (RC_ZMTP_E_NOT_ZMTP, _E_VERSION):
 * every NetSync and broker client speaks ZMTP 3 (libzmq 4, NetMQ 4). Major 3 with any minor
 * is accepted, and so are majors above 3 (libzmq answers them as 3.1: the greeting is
 * backwards compatible by design, RFC 37 §"Version Negotiation"). The server's own greeting is
 * libzmq's byte for byte (rc_zmtp_greeting_encode), sent in libzmq's three steps (signature,
 * major, rest) by the transport.
 *
 * Commands inside a multipart message (after a frame with MORE) are refused, as are reserved
 * flag bits (RFC 23: "SHALL be zero"; libzmq ignores them, no client sets them) and a command
 * frame with MORE. Unknown commands are returned as RC_ZMTP_CMD_OTHER for the caller to
 * ignore. Property names of READY compare case-insensitively (RFC 23); a READY without a
 * Socket-Type is refused.
 */
#ifndef RC_ZMTP_H
#define RC_ZMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_ZMTP_GREETING_LEN 64
#define RC_ZMTP_SIGNATURE_LEN 10     /* bytes of the greeting before the major version */
#define RC_ZMTP_MAX_HEADER 9         /* flags + 8-byte size */
#define RC_ZMTP_IDENTITY_MAX 255     /* libzmq's limit on a routing id */
#define RC_ZMTP_PING_CONTEXT_MAX 16  /* RFC 37: a PING's context is at most 16 bytes */

/* Frame flags (RFC 23 §"Framing"). */
enum { RC_ZMTP_MORE = 1, RC_ZMTP_LONG = 2, RC_ZMTP_COMMAND = 4 };

/* Errors, returned negated. Each has a metric label (rc_zmtp_err_names) and a sentence for
 * logs and ERROR commands (rc_zmtp_err_text). */
enum rc_zmtp_err {
    RC_ZMTP_OK = 0,
    RC_ZMTP_E_NOT_ZMTP,          /* no ZMTP signature: ZMTP 1.0 (unversioned) or not ZeroMQ */
    RC_ZMTP_E_VERSION,           /* ZMTP 1.0/2.0 greeting (major version below 3) */
    RC_ZMTP_E_MECHANISM,         /* security mechanism other than NULL */
    RC_ZMTP_E_FLAGS,             /* reserved flag bits, or a command frame with MORE */
    RC_ZMTP_E_FRAME_TOO_BIG,     /* a frame over max_frame */
    RC_ZMTP_E_TOO_MANY_FRAMES,   /* a message of more than max_frames frames */
    RC_ZMTP_E_MSG_TOO_BIG,       /* a message over max_bytes on the wire */
    RC_ZMTP_E_COMMAND,           /* malformed command (name size past the body, bad PING) */
    RC_ZMTP_E_NO_READY,          /* the handshake's first command is not READY */
    RC_ZMTP_E_METADATA,          /* malformed READY properties, or an Identity over 255 */
    RC_ZMTP_E_SOCKET_TYPE,       /* Socket-Type missing or not compatible with ours */
    RC_ZMTP_E_COMMAND_IN_MSG,    /* a command between the frames of a message */
    RC_ZMTP_E_PEER_ERROR,        /* the peer sent ERROR (it closes next) */
    RC_ZMTP_E__COUNT
};
extern const char *const rc_zmtp_err_names[RC_ZMTP_E__COUNT];
extern const char *const rc_zmtp_err_text[RC_ZMTP_E__COUNT];

/* Socket types that can meet a roomcast server socket (names as on the wire). */
enum rc_zmtp_type {
    RC_ZMTP_T_UNKNOWN,
    RC_ZMTP_T_REQ, RC_ZMTP_T_REP, RC_ZMTP_T_DEALER, RC_ZMTP_T_ROUTER, RC_ZMTP_T_PUB,
    RC_ZMTP_T_SUB, RC_ZMTP_T_XPUB, RC_ZMTP_T_XSUB, RC_ZMTP_T_PUSH, RC_ZMTP_T_PULL,
    RC_ZMTP_T_PAIR,
    RC_ZMTP_T__COUNT
};
extern const char *const rc_zmtp_type_names[RC_ZMTP_T__COUNT];

/* rc_zmtp_type_compatible says whether a peer of type peer may talk to our socket of type
 * self (libzmq's mechanism.cpp table for the server types: ROUTER takes DEALER, REQ, ROUTER;
 * PUB and XPUB take SUB and XSUB). */
bool rc_zmtp_type_compatible(enum rc_zmtp_type self, enum rc_zmtp_type peer);

/* ---- greeting ---------------------------------------------------------------------------- */

typedef struct rc_zmtp_greeting {
    uint8_t major;               /* peer's version: 3 */
    uint8_t minor;               /* 0 (ZMTP 3.0: subscriptions as messages) or 1+ (3.1) */
    bool as_server;              /* the peer's as-server byte (meaningless for NULL) */
} rc_zmtp_greeting;

/* rc_zmtp_greeting_parse checks a peer's greeting at p[0..n): RC_ZMTP_GREETING_LEN when it
 * is complete and acceptable (*g filled), 0 when more bytes are needed, or -RC_ZMTP_E_* as
 * soon as the bytes in prove it unacceptable. */
int rc_zmtp_greeting_parse(const uint8_t *p, size_t n, rc_zmtp_greeting *g);

/* rc_zmtp_greeting_encode writes libzmq's server greeting (version 3.1, NULL, as-server 0)
 * into out. libzmq sends out[0..10) at once, out[10] once the peer's signature is in, and the
 * rest once its major version is (so that it could still fall back to ZMTP 1.0/2.0). */
void rc_zmtp_greeting_encode(uint8_t out[RC_ZMTP_GREETING_LEN]);

/* ---- frames ------------------------------------------------------------------------------ */

typedef struct rc_zmtp_frame {
    uint8_t flags;               /* RC_ZMTP_MORE / _LONG / _COMMAND */
    uint64_t len;                /* body bytes */
    size_t header_len;           /* 2 or 9 */
} rc_zmtp_frame;

/* rc_zmtp_frame_parse parses a frame header at p[0..n): its length (2 or 9) with *f filled,
 * 0 when more bytes are needed, -RC_ZMTP_E_FLAGS or -RC_ZMTP_E_FRAME_TOO_BIG (len > max_len;
 * 0 = no limit). The long form is accepted for any size (libzmq does). */
int rc_zmtp_frame_parse(const uint8_t *p, size_t n, uint64_t max_len, rc_zmtp_frame *f);

/* rc_zmtp_frame_header writes the header of a frame of len bytes (short form up to 255) into
 * out (RC_ZMTP_MAX_HEADER bytes) and returns its length; rc_zmtp_header_size says it ahead. */
size_t rc_zmtp_frame_header(uint8_t *out, uint64_t len, uint8_t flags);
static inline size_t rc_zmtp_header_size(uint64_t len) { return len > 255 ? 9 : 2; }

/* ---- commands ---------------------------------------------------------------------------- */

enum rc_zmtp_cmd_kind {
    RC_ZMTP_CMD_READY, RC_ZMTP_CMD_ERROR, RC_ZMTP_CMD_SUBSCRIBE, RC_ZMTP_CMD_CANCEL,
    RC_ZMTP_CMD_PING, RC_ZMTP_CMD_PONG, RC_ZMTP_CMD_OTHER
};

/* A command body, parsed. Pointers are into the caller's bytes. */
typedef struct rc_zmtp_cmd {
    enum rc_zmtp_cmd_kind kind;
    const uint8_t *name;         /* command name */
    size_t name_len;
    const uint8_t *data;         /* what follows the name: READY's properties, ERROR's reason
                                    (without its size byte), SUBSCRIBE's/CANCEL's topic,
                                    PING's context (after its TTL, at most 16 bytes: a longer
                                    one is cut, as libzmq does), PONG's context */
    size_t len;
    uint16_t ttl;                /* PING: time to live, tenths of a second */
} rc_zmtp_cmd;

/* rc_zmtp_command_parse parses a complete command body b[0..n): 0, or -RC_ZMTP_E_COMMAND. */
int rc_zmtp_command_parse(const uint8_t *b, size_t n, rc_zmtp_cmd *c);

/* What a READY says about the peer. */
typedef struct rc_zmtp_peer {
    enum rc_zmtp_type type;      /* its Socket-Type */
    const uint8_t *identity;     /* its Identity property, NULL when absent */
    size_t identity_len;         /* <= RC_ZMTP_IDENTITY_MAX */
} rc_zmtp_peer;

/* rc_zmtp_ready_parse reads READY's properties p[0..n) (name-size, name, 4-byte value-size,
 * value; repeated): 0 with *peer filled, -RC_ZMTP_E_METADATA when malformed, or
 * -RC_ZMTP_E_SOCKET_TYPE when the Socket-Type is missing or not compatible with self. */
int rc_zmtp_ready_parse(const uint8_t *p, size_t n, enum rc_zmtp_type self, rc_zmtp_peer *peer);

/* Encoders write a whole command frame (header included) and return its length, or 0 when it
 * does not fit in cap bytes. READY carries Socket-Type and, for REQ/DEALER/ROUTER, an empty
 * Identity (what libzmq's server sockets send). PONG echoes ctx (cut to 16 bytes). ERROR's
 * reason is cut to 255 bytes. */
#define RC_ZMTP_READY_MAX 64         /* room for any rc_zmtp_ready_encode of ours */
#define RC_ZMTP_PONG_MAX (2 + 5 + RC_ZMTP_PING_CONTEXT_MAX)
size_t rc_zmtp_ready_encode(uint8_t *out, size_t cap, enum rc_zmtp_type self);
size_t rc_zmtp_pong_encode(uint8_t *out, size_t cap, const uint8_t *ctx, size_t ctx_len);
size_t rc_zmtp_error_encode(uint8_t *out, size_t cap, const char *reason);

/* ---- the stream reader ------------------------------------------------------------------- */

typedef struct rc_zmtp_limits {
    uint64_t max_frame;          /* largest frame body, bytes (0 = no limit) */
    size_t max_frames;           /* most frames per message (0 = no limit) */
    bool truncate;               /* more frames than max_frames is not an error: the message
                                    is returned whole and the caller looks at what it needs */
    uint64_t max_bytes;          /* most wire bytes of one message, headers included (0 = no
                                    limit); also caps one command */
} rc_zmtp_limits;

enum rc_zmtp_stage { RC_ZMTP_S_GREETING, RC_ZMTP_S_READY, RC_ZMTP_S_TRAFFIC };

typedef struct rc_zmtp_reader {
    rc_zmtp_limits lim;          /* set by rc_zmtp_reader_init */
    enum rc_zmtp_type self;      /* our socket type, for READY's check */
    enum rc_zmtp_stage stage;    /* what comes next */
    rc_zmtp_greeting greeting;   /* the peer's, once read */
    size_t pos;                  /* bytes of the current unit validated so far */
    size_t nframes;              /* frames of the current message so far */
    uint64_t bytes;              /* body bytes of the current message so far */
} rc_zmtp_reader;

enum rc_zmtp_item_kind {
    RC_ZMTP_I_GREETING,          /* the peer's greeting (r->greeting) */
    RC_ZMTP_I_READY,             /* the handshake's READY, checked (item.peer) */
    RC_ZMTP_I_COMMAND,           /* a command after the handshake (item.cmd; never READY) */
    RC_ZMTP_I_MESSAGE,           /* a complete message: rc_zmtp_parts walks its frames */
};

typedef struct rc_zmtp_item {
    enum rc_zmtp_item_kind kind;
    rc_zmtp_cmd cmd;             /* I_READY, I_COMMAND */
    rc_zmtp_peer peer;           /* I_READY */
    size_t nframes;              /* I_MESSAGE: frames */
    uint64_t bytes;              /* I_MESSAGE: body bytes of all its frames */
} rc_zmtp_item;

void rc_zmtp_reader_init(rc_zmtp_reader *r, enum rc_zmtp_type self, const rc_zmtp_limits *lim);

/* rc_zmtp_read looks at the unconsumed input p[0..n), which starts at the current unit.
 * Returns the length of one complete unit at p (> 0: *it describes it; the caller drops those
 * bytes before the next call), 0 when more input is needed (keep p[0..n) and call again with
 * more after it), or -RC_ZMTP_E_* (the connection must end). */
long rc_zmtp_read(rc_zmtp_reader *r, const uint8_t *p, size_t n, rc_zmtp_item *it);

/* One frame of a message, pointing into the caller's bytes. */
typedef struct rc_zmtp_part {
    const uint8_t *data;
    size_t len;
} rc_zmtp_part;

/* rc_zmtp_parts fills out[0..max) with the frames of a complete message p[0..len) (as
 * returned by rc_zmtp_read) and returns how many it filled. */
size_t rc_zmtp_parts(const uint8_t *p, size_t len, rc_zmtp_part *out, size_t max);

#endif
