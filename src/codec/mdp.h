/* mdp.h — the frame codec of the worker broker's three ZeroMQ protocols (docs/broker.md):
 *
 *  - the seed's LRU queue (the ZeroMQ guide's load-balancing broker, REQ workers and clients),
 *  - Paranoid Pirate (ZeroMQ RFC 6, DEALER workers, one-byte READY 0x01 / HEARTBEAT 0x02),
 *  - Majordomo MDP/0.1 (ZeroMQ RFC 7, "MDPW01" workers, "MDPC01" clients; MMI of RFC 8).
 *
 * Input is one ZeroMQ message as a ROUTER socket receives it: frame 0 is the peer's routing
 * identity, then the parts the peer sent. Frames are views (pointer + length) into the socket
 * layer's buffers; parsers allocate nothing and the parsed mdp_msg points into the same frames
 * (valid as long as they are). Parsing is strict: exact frame counts, empty delimiters must be
 * empty, command frames exactly one byte, protocol headers byte-exact. Which protocol a worker
 * speaks is decided by its first message; after that the caller passes that protocol as a
 * hint and a message of another protocol is MDP_E_PROTOCOL (the kind it would have been is
 * still reported, so the broker can treat a new READY as a re-registration).
 *
 * Worker port (frames after the identity; "" is an empty frame, A a client address):
 *    LRU  READY      [""]["READY"]
 *    LRU  REPLY      [""][A][""][body ...]            (one address frame, >= 1 body frames)
 *    PPP  READY      [0x01]
 *    PPP  HEARTBEAT  [0x02]
 *    PPP  REPLY      [A][""][body ...]                (A non-empty, >= 1 body frames)
 *    MDP  READY      [""]["MDPW01"][0x01][service]
 *    MDP  REPLY      [""]["MDPW01"][0x03][A][""][body ...]   (>= 0 body frames)
 *    MDP  HEARTBEAT  [""]["MDPW01"][0x04]
 *    MDP  DISCONNECT [""]["MDPW01"][0x05]
 * Client port:
 *    LRU  REQUEST    [""][body ...]                   (>= 1 body frames, first not "MDPC01")
 *    MDP  REQUEST    [""]["MDPC01"][service][body ...] (>= 0 body frames)
 * Ambiguities are settled this way, and documented in docs/broker.md: on the client port a
 * message whose first body frame is exactly "MDPC01" is MDP; on the worker port an LRU reply
 * to a client address that is exactly "MDPW01" is read as LRU only for a worker already known
 * to speak LRU. The broker puts its own request token in the address frame (never a client's
 * identity), so the second case does not arise with roomcast's own traffic.
 *
 * Encoders fill a caller-provided frame array (what the socket layer sends with ZMQ_SNDMORE,
 * frame 0 being the destination identity for the ROUTER). Constant frames point at static
 * storage; every other frame points at the caller's data, which must outlive the send.
 */
#ifndef RC_MDP_H
#define RC_MDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A frame view: len bytes at p (p may be NULL when len is 0). Not owned. */
typedef struct mdp_frame {
    const uint8_t *p;        /* bytes, not NUL-terminated */
    size_t len;              /* length in bytes */
} mdp_frame;

/* Which protocol a peer speaks. */
enum mdp_proto {
    MDP_PROTO_NONE = 0,      /* not known yet (a worker's first message decides) */
    MDP_PROTO_LRU = 1,       /* the seed's REQ workers/clients */
    MDP_PROTO_PPP = 2,       /* Paranoid Pirate, RFC 6 */
    MDP_PROTO_MDP = 3,       /* Majordomo MDP/0.1, RFC 7 */
};

/* What a message is (mdp_msg.kind). */
enum mdp_kind {
    MDP_K_NONE = 0,
    /* worker port */
    MDP_K_READY,             /* any protocol; MDP carries the service */
    MDP_K_HEARTBEAT,         /* PPP, MDP */
    MDP_K_REPLY,             /* any protocol; carries addr + body */
    MDP_K_DISCONNECT,        /* MDP */
    /* client port */
    MDP_K_REQUEST,           /* LRU (no service) or MDP (service) */
};

/* Parse errors: each is its own malformed-input counter in the broker (brk_stats.bad[]). */
enum mdp_err {
    MDP_OK = 0,
    MDP_E_IDENTITY = -1,     /* no frames, or the identity frame is empty / > MDP_ID_MAX */
    MDP_E_FRAMES = -2,       /* wrong number of frames for the message */
    MDP_E_DELIM = -3,        /* a frame that must be empty is not */
    MDP_E_HEADER = -4,       /* not a known protocol header (e.g. "MDPW02", "MDPC01" on the worker port) */
    MDP_E_COMMAND = -5,      /* unknown command byte, command frame not 1 byte, LRU 3-frame not "READY" */
    MDP_E_SERVICE = -6,      /* empty service name, or longer than MDP_SERVICE_MAX */
    MDP_E_ADDRESS = -7,      /* an empty or over-long (> MDP_ID_MAX) client address */
    MDP_E_PROTOCOL = -8,     /* a valid message of another protocol than the hint (kind/proto filled) */
};
#define MDP_ERR_COUNT 9      /* size of a counter array indexed by -err (index 0 unused) */

#define MDP_ID_MAX 255       /* routing identities and client addresses (ZeroMQ's own limit) */
#define MDP_SERVICE_MAX 255  /* service names */

#define MDP_WORKER_HDR "MDPW01"
#define MDP_CLIENT_HDR "MDPC01"
/* MDP/0.1 worker command bytes. */
#define MDP_CMD_READY 0x01
#define MDP_CMD_REQUEST 0x02
#define MDP_CMD_REPLY 0x03
#define MDP_CMD_HEARTBEAT 0x04
#define MDP_CMD_DISCONNECT 0x05
/* Paranoid Pirate command bytes. */
#define MDP_PPP_READY 0x01
#define MDP_PPP_HEARTBEAT 0x02

/* One parsed message; every view points into the frames given to the parser. */
typedef struct mdp_msg {
    enum mdp_proto proto;    /* protocol the message belongs to */
    enum mdp_kind kind;      /* what it is */
    mdp_frame identity;      /* frame 0: the peer's routing identity */
    mdp_frame service;       /* MDP READY / MDP REQUEST: service name; else len 0 */
    mdp_frame addr;          /* REPLY: the client address frame echoed by the worker */
    const mdp_frame *body;   /* REPLY / REQUEST: first body frame (inside the input array) */
    size_t nbody;            /* number of body frames */
} mdp_msg;

/* mdp_parse_worker classifies a message received on the worker port. hint is the protocol
 * the worker identity already speaks (MDP_PROTO_NONE for an unknown identity). Returns
 * MDP_OK with *out filled, or a negative mdp_err; for MDP_E_PROTOCOL, out->proto and
 * out->kind say what the message would be without the hint (the rest of out is filled too). */
int mdp_parse_worker(const mdp_frame *f, size_t n, enum mdp_proto hint, mdp_msg *out);

/* mdp_parse_client classifies a message received on the client port (LRU or MDP REQUEST). */
int mdp_parse_client(const mdp_frame *f, size_t n, mdp_msg *out);

/* mdp_err_name is a short stable name for a parse error ("frames", "delimiter", ...), for
 * logs and /metrics labels; "ok" for 0 and "unknown" outside the enum. */
const char *mdp_err_name(int err);

/* ---- encoding ----------------------------------------------------------------------------
 * Each encoder writes at most cap frames into out and returns the number written, or -1 when
 * cap is too small or the protocol has no such message (nothing useful is in out then).
 * MDP_ENC_FIXED is the largest number of non-body frames any encoder writes, so
 * cap = MDP_ENC_FIXED + nbody always suffices. */
#define MDP_ENC_FIXED 7

/* A request to a worker: LRU [id][""][addr][""][body...], PPP [id][addr][""][body...],
 * MDP [id][""]["MDPW01"][0x02][addr][""][body...]. */
int mdp_enc_request(mdp_frame *out, size_t cap, enum mdp_proto proto, mdp_frame identity,
                    mdp_frame addr, const mdp_frame *body, size_t nbody);

/* HEARTBEAT to a worker: PPP [id][0x02], MDP [id][""]["MDPW01"][0x04]; -1 for LRU. */
int mdp_enc_heartbeat(mdp_frame *out, size_t cap, enum mdp_proto proto, mdp_frame identity);

/* DISCONNECT to an MDP worker: [id][""]["MDPW01"][0x05]; -1 for other protocols. */
int mdp_enc_disconnect(mdp_frame *out, size_t cap, enum mdp_proto proto, mdp_frame identity);

/* A reply to a client: LRU [id][""][body...], MDP [id][""]["MDPC01"][service][body...]. */
int mdp_enc_client_reply(mdp_frame *out, size_t cap, enum mdp_proto proto, mdp_frame identity,
                         mdp_frame service, const mdp_frame *body, size_t nbody);

/* An MMI answer (RFC 8) to an MDP client: [id][""]["MDPC01"][service][code], code one of
 * "200", "404", "501" (mdp_mmi_code gives the static frame). */
int mdp_enc_mmi(mdp_frame *out, size_t cap, mdp_frame identity, mdp_frame service, int code);
mdp_frame mdp_mmi_code(int code);

/* Client-side and worker-side encoders, for tests, the fuzzer and in-process peers: the
 * frames a peer sends (no identity frame; the ROUTER adds it on receipt). */
int mdp_enc_worker_ready(mdp_frame *out, size_t cap, enum mdp_proto proto, mdp_frame service);
int mdp_enc_worker_reply(mdp_frame *out, size_t cap, enum mdp_proto proto, mdp_frame addr,
                         const mdp_frame *body, size_t nbody);

/* mdp_frame_is compares a frame with a C string (byte-exact, no NUL). */
bool mdp_frame_is(mdp_frame f, const char *s);
static inline mdp_frame mdp_frame_of(const void *p, size_t len)
{
    mdp_frame f = {(const uint8_t *)p, len};
    return f;
}

#endif
