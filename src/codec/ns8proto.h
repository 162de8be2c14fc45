/* ns8proto.h — the STYLY NetSync protocol 8 binary codec (server 0.16.x; wire spec
 * /work/shared/netsync-protocol-v8.md §2-3, generation rules §9). The v0.6 codec is nsproto.h.
 *
 * Every message is one ZeroMQ frame whose first byte is the type. Integers are little-endian,
 * i24 is 3-byte two's complement, str8/str16 are a u8/u16 byte length followed by UTF-8, Q is a
 * smallest-three quaternion packed in a u32.
 *
 * Parsers (ns8_parse_*) allocate nothing and never trust a length: they return views (ns8_str,
 * raw byte pointers) into the caller's buffer, valid as long as that buffer is. They are
 * STRICT, unlike the reference (which slices overrunning strings and ignores trailing bytes):
 *  - the version byte must be 8 where the layout has one (NS8_E_VERSION otherwise);
 *  - every string must be valid UTF-8 (NS8_E_UTF8) and must fit (NS8_E_TRUNCATED);
 *  - a control message (3, 7, 9, 15, 18, 19) must end exactly at its last field
 *    (NS8_E_TRAILING). This full-length rule is what tells a v8 RPC/NV from a v0.6 one (§6.4,
 *    §9): a v0.6 NV set ends with an f64 timestamp and a v0.6 RPC almost never lines up with
 *    the v8 layout to the last byte;
 *  - transform-lane messages (11 CLIENT_POSE, 13 OBJECT_POSE) may carry trailing bytes: the
 *    parser reports how many (`trailing`) and the server must count them and re-frame by the
 *    parsed length, never relay them (defect §6.2 of the reference).
 *
 * Pose BODY (§3.3): u16 poseSeq, u8 flags, u8 encodingFlags, [4 x i16 physical], [3 x i24 + Q
 * head], [3 x i16 + Q right], [3 x i16 + Q left], u8 nVirt, nVirt x (3 x i16 + Q).
 *  - PhysicalValid without MovingFloorLocal and without encoding bit4 is NS8_E_PHYSICAL (the
 *    reference and Unity reject it);
 *  - the hands are present only when HeadValid and their own bit are set;
 *  - virtuals are consumed whether or not HeadValid/VirtualsValid are set;
 *  - nVirt > 50: the reference readers clamp to 50 and read 50 entries; a relayed body that
 *    still said 60 would mis-frame every following ROOM_POSE entry in Unity. So the parser
 *    reads min(nVirt, 50) entries (the rest of the message is `trailing`), reports
 *    `nvirt_clamped`, and ns8_body_copy_relay() writes the relay form with the count byte set
 *    to 50. A relayed body therefore always parses again with the same length.
 *
 * Encoders append to an rc_buf through an ns8_enc whose error is sticky, so a message is
 * written as straight-line code and checked once at the end (enc.err). A string longer than
 * its length prefix allows is NS8_E_TOO_LONG, never a silently wrapped length.
 */
#ifndef RC_NS8PROTO_H
#define RC_NS8PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define NS8_VERSION 8             /* protocol version byte of types 11-15 and 19 */
#define NS8_MAX_VIRTUAL 50        /* virtual transforms relayed per pose (max_virtual_transforms) */
#define NS8_STR8_MAX 255
#define NS8_STR16_MAX 65535
#define NS8_OBJ_BODY_SIZE 13      /* i24 x, y, z + Q */
/* Largest relayed pose body: 4 + 8 + 13 + 10 + 10 + 1 + 50 x 10. */
#define NS8_BODY_MAX (4 + 8 + 13 + 10 + 10 + 1 + NS8_MAX_VIRTUAL * 10)
#define NS8_SERVER_VERSION_MAJOR 0 /* DEVICE_ID_MAPPING default: the reference's 0.16.3 */
#define NS8_SERVER_VERSION_MINOR 16
#define NS8_SERVER_VERSION_PATCH 3

enum ns8_type {
    NS8_CLIENT_TRANSFORM = 1,     /* v0.6 only; removed in v8 */
    NS8_ROOM_TRANSFORM = 2,       /* v0.6 only */
    NS8_RPC = 3,                  /* both directions */
    NS8_DEVICE_ID_MAPPING = 6,    /* s->c unicast */
    NS8_GLOBAL_VAR_SET = 7,       /* c->s control */
    NS8_GLOBAL_VAR_SYNC = 8,      /* s->c unicast */
    NS8_CLIENT_VAR_SET = 9,       /* c->s control */
    NS8_CLIENT_VAR_SYNC = 10,     /* s->c unicast */
    NS8_CLIENT_POSE = 11,         /* c->s transform */
    NS8_ROOM_POSE = 12,           /* s->c PUB, topic room */
    NS8_OBJECT_POSE = 13,         /* c->s transform */
    NS8_ROOM_OBJECTS = 14,        /* s->c PUB, topic room + "\0obj" */
    NS8_OWNERSHIP_REQUEST = 15,   /* c->s control */
    NS8_OWNERSHIP_CHANGED = 16,   /* s->c unicast */
    NS8_OWNERSHIP_REJECTED = 17,  /* s->c unicast */
    NS8_CLIENT_VAR_CLEAR = 18,    /* c->s control */
    NS8_HELLO = 19,               /* c->s control */
};

/* Pose flags (body byte 2) and encoding flags (body byte 3). */
#define NS8_F_STEALTH 0x01
#define NS8_F_PHYSICAL 0x02
#define NS8_F_HEAD 0x04
#define NS8_F_RIGHT 0x08
#define NS8_F_LEFT 0x10
#define NS8_F_VIRTUALS 0x20
#define NS8_F_FLOOR_LOCAL 0x40
#define NS8_E_PHYS_XR_DELTA 0x10  /* encodingFlags bit4: physical is the XR-origin delta */

#define NS8_HELLO_STEALTH 0x01    /* HELLO flags bit0 */
#define NS8_OWN_RELEASE 1         /* OWNERSHIP_REQUEST op */
#define NS8_OWN_REQUEST 2
#define NS8_REJECT_NOT_OWNER 1    /* OWNERSHIP_REJECTED reason */

/* Parse and classification results: 0 or one of these (each is a separate counter). */
enum ns8_err {
    NS8_OK = 0,
    NS8_E_EMPTY = -1,             /* zero-length payload */
    NS8_E_TYPE = -2,              /* type 0, 1, 2, 4, 5, > 19 (not a v8 client->server type) */
    NS8_E_DIRECTION = -3,         /* a server->client type (6, 8, 10, 12, 14, 16, 17) */
    NS8_E_TRUNCATED = -4,         /* a field runs past the end of the payload */
    NS8_E_UTF8 = -5,              /* a string is not valid UTF-8 */
    NS8_E_TOO_LONG = -6,          /* encoder: string too long for its length prefix */
    NS8_E_NOMEM = -7,             /* encoder: out of memory */
    NS8_E_VERSION = -8,           /* version byte is not 8 */
    NS8_E_TRAILING = -9,          /* control message longer than its last field */
    NS8_E_PHYSICAL = -10,         /* PhysicalValid without MovingFloorLocal nor encoding bit4 */
    NS8_E_LANE = -11,             /* classification: a valid v8 message on the wrong lane */
};

/* The two uplinks of a v8 server (§1): ROUTER 5555 and ROUTER 5557. */
enum ns8_lane { NS8_LANE_CONTROL, NS8_LANE_TRANSFORM };

typedef struct ns8_str {
    const uint8_t *p;             /* bytes (not NUL-terminated), into the parsed message */
    size_t len;                   /* length in bytes */
} ns8_str;

/* A parsed pose body. */
typedef struct ns8_body {
    const uint8_t *p;             /* first byte (poseSeq) */
    size_t len;                   /* body bytes up to the last relayed virtual */
    size_t nvirt_off;             /* offset of the nVirt byte in the body */
    uint16_t seq;                 /* poseSeq */
    uint8_t flags;                /* NS8_F_* */
    uint8_t enc;                  /* encodingFlags */
    uint8_t nvirt;                /* virtuals read and relayed (<= 50) */
    uint8_t nvirt_wire;           /* count as sent */
    bool nvirt_clamped;           /* nvirt_wire > 50 */
} ns8_body;

typedef struct ns8_hello {
    uint8_t flags;                /* bit0 stealth, others kept as sent */
    ns8_str device_id;            /* 0..255 bytes; "" is a valid device (§4.1) */
} ns8_hello;

typedef struct ns8_pose {
    ns8_str device_id;
    ns8_body body;
    size_t trailing;              /* bytes after the body: not relayed, to be counted */
} ns8_pose;

typedef struct ns8_object_pose {
    ns8_str device_id;
    uint32_t object_id;           /* 0 is invalid (the room ignores it) */
    uint16_t seq;                 /* poseSeq */
    const uint8_t *body;          /* NS8_OBJ_BODY_SIZE bytes: i24 x, y, z, Q */
    size_t trailing;              /* bytes after the body */
} ns8_object_pose;

typedef struct ns8_own_req {
    ns8_str device_id;
    uint8_t op;                   /* NS8_OWN_RELEASE, NS8_OWN_REQUEST, other = register only */
    uint32_t object_id;
} ns8_own_req;

typedef struct ns8_rpc {
    uint16_t sender;              /* claimed senderClientNo (ignored, rewritten by the server) */
    ns8_str device_id;            /* the sender's deviceId */
    uint8_t ntargets;             /* target count, 0 = everyone */
    const uint8_t *targets;       /* ntargets x u16 LE, read with ns8_rpc_target() */
    ns8_str name;                 /* function name, str8 */
    ns8_str args;                 /* argumentsJson, str16, opaque bytes */
} ns8_rpc;

static inline uint16_t ns8_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint16_t ns8_rpc_target(const ns8_rpc *r, unsigned i)
{
    return ns8_get_u16(r->targets + 2 * (size_t)i);
}

typedef struct ns8_var_set {
    uint16_t sender;              /* claimed senderClientNo (ignored) */
    ns8_str device_id;            /* the sender's deviceId */
    uint16_t target;              /* CLIENT_VAR_SET only: target client number */
    ns8_str name;                 /* str8 */
    ns8_str value;                /* str16 */
} ns8_var_set;

typedef struct ns8_var_clear {
    uint16_t sender;              /* claimed senderClientNo (ignored) */
    ns8_str device_id;
} ns8_var_clear;

/* Any client->server v8 message. */
typedef struct ns8_msg {
    uint8_t type;                 /* enum ns8_type: selects the union member */
    union {
        ns8_hello hello;
        ns8_pose pose;
        ns8_object_pose obj;
        ns8_own_req own;
        ns8_rpc rpc;
        ns8_var_set var;          /* GLOBAL_VAR_SET (target 0) and CLIENT_VAR_SET */
        ns8_var_clear clear;
    } u;
} ns8_msg;

/* Parsers; p[0] must be the matching type. Return NS8_OK and fill *out, or a negative ns8_err
 * (out is then unspecified). */
int ns8_parse_hello(const uint8_t *p, size_t n, ns8_hello *out);
int ns8_parse_pose(const uint8_t *p, size_t n, ns8_pose *out);
int ns8_parse_object_pose(const uint8_t *p, size_t n, ns8_object_pose *out);
int ns8_parse_own_req(const uint8_t *p, size_t n, ns8_own_req *out);
int ns8_parse_rpc(const uint8_t *p, size_t n, ns8_rpc *out);
int ns8_parse_global_var_set(const uint8_t *p, size_t n, ns8_var_set *out);
int ns8_parse_client_var_set(const uint8_t *p, size_t n, ns8_var_set *out);
int ns8_parse_var_clear(const uint8_t *p, size_t n, ns8_var_clear *out);
/* ns8_parse dispatches on p[0] to the parser of that type (NS8_E_EMPTY, NS8_E_TYPE,
 * NS8_E_DIRECTION for payloads that are no v8 client->server message). It does not check the
 * lane; ns8_classify does. */
int ns8_parse(const uint8_t *p, size_t n, ns8_msg *out);

/* ns8_parse_body parses a pose body at p[0..n): NS8_OK and *out (out->len is the exact parsed
 * length, n - out->len bytes follow it), or a negative ns8_err. */
int ns8_parse_body(const uint8_t *p, size_t n, ns8_body *out);
/* ns8_body_copy_relay writes the relay form of b (b->len bytes, nVirt byte = b->nvirt) to dst,
 * which must hold b->len bytes (<= NS8_BODY_MAX). */
void ns8_body_copy_relay(const ns8_body *b, uint8_t *dst);

/* ---- generation classification (§9) -----------------------------------------------------
 *
 * ns8_classify tells the server which client generation a payload on `lane` belongs to, so one
 * set of ports can serve v0.6 and v8 clients. Rules, first match wins:
 *   1. empty -> INVALID (NS8_E_EMPTY).
 *   2. type 1 CLIENT_TRANSFORM: on the control lane and accepted by the v0.6 codec
 *      (nsy_parse_client_transform; it ignores trailing bytes like the v0.6 server does) ->
 *      V06; on the transform lane -> INVALID (NS8_E_LANE: legacy clients never use 5557);
 *      otherwise INVALID with the v0.6 parse error.
 *   3. types 11-15 and 19 carry a version byte at offset 1: version 8 -> parsed strictly
 *      (V8, err = parse result; a v8 message on the wrong lane gets NS8_E_LANE: HELLO, 15 on
 *      control only, 11 and 13 on transform only); version 2..7 with type 11, 13, 15 or 19 ->
 *      UNSUPPORTED with `version` set (2-6 = v0.8-v0.14, 7 = v0.15; no parse attempted: those
 *      layouts differ); any other version -> INVALID (NS8_E_VERSION). Types 12, 14 -> INVALID
 *      (NS8_E_DIRECTION).
 *   4. type 18 CLIENT_VAR_CLEAR exists only in v8: V8 when it parses strictly.
 *   5. types 3, 7, 9 exist in both generations: parsed strictly both ways (v0.6: the v0.6
 *      codec and the message ends exactly after its last field — the f64 for NV, the args for
 *      RPC with no overrun; v8: ns8_parse_*, full length). Only one parses -> that one. Both
 *      parse (possible only by a coincidence of lengths, `ambiguous` is set) -> `hint` when it
 *      is V06 or V8 (what the transport already knows about that routing identity), else V06:
 *      the v0.6 path only accepts RPC/NV from a live v0.6 sender, so a wrong guess is a counted
 *      drop, while a wrong V8 guess could name a device (the phantom of §6.4). Neither parses ->
 *      INVALID with the v8 error. On the transform lane -> INVALID (NS8_E_LANE).
 *   6. types 2, 6, 8, 10, 16, 17 -> INVALID (NS8_E_DIRECTION); 0, 4, 5, > 19 -> INVALID
 *      (NS8_E_TYPE).
 * For V8 with err == NS8_OK, *msg (when not NULL) holds the parsed message.
 */
enum ns8_gen {
    NS8_GEN_INVALID,              /* drop; err says why */
    NS8_GEN_V06,                  /* a v0.6.x message: hand it to the nsproto/nsroom path */
    NS8_GEN_V8,                   /* a protocol 8 message (err != 0: drop, e.g. wrong lane) */
    NS8_GEN_UNSUPPORTED,          /* protocol 2..7 (v0.8 .. v0.15): drop, count by version */
};

typedef struct ns8_class {
    enum ns8_gen gen;
    int err;                      /* NS8_OK or the reason to drop */
    uint8_t version;              /* NS8_GEN_UNSUPPORTED: the protocol version byte */
    bool ambiguous;               /* rule 5: parsed as v0.6 and as v8 */
} ns8_class;

void ns8_classify(enum ns8_lane lane, const uint8_t *p, size_t n, enum ns8_gen hint,
                  ns8_class *out, ns8_msg *msg);

/* ns8_check_server_msg validates a server->client message (3, 6, 8, 10, 12, 14, 16, 17)
 * strictly: lengths in bounds, version 8, every ROOM_POSE body parses to its exact framing
 * with nVirt <= 50, strings valid UTF-8, no trailing bytes. For tests and fuzzers: what the
 * server emits is something Unity can read. */
int ns8_check_server_msg(const uint8_t *p, size_t n);

/* ---- encoding ---------------------------------------------------------------------------- */

typedef struct ns8_enc {
    rc_buf *b;                    /* output, appended to (not owned) */
    int err;                      /* first error (negative ns8_err), 0 while everything fit */
} ns8_enc;

static inline void ns8_enc_init(ns8_enc *e, rc_buf *b) { e->b = b; e->err = 0; }

void ns8_put_u8(ns8_enc *e, uint8_t v);
void ns8_put_u16(ns8_enc *e, uint16_t v);
void ns8_put_u32(ns8_enc *e, uint32_t v);
void ns8_put_f64(ns8_enc *e, double v);
void ns8_put_bytes(ns8_enc *e, const void *p, size_t n);
void ns8_put_str8(ns8_enc *e, const void *p, size_t n);   /* NS8_E_TOO_LONG when n > 255 */
void ns8_put_str16(ns8_enc *e, const void *p, size_t n);  /* NS8_E_TOO_LONG when n > 65535 */
/* ns8_patch_u16 overwrites the u16 at byte offset off of the buffer's valid bytes (counts
 * written after the entries). */
void ns8_patch_u16(ns8_enc *e, size_t off, uint16_t v);

/* Server->client. The *_begin functions write the header with a zero count and return the
 * offset of the count, to be patched with ns8_patch_u16 once the entries are appended. */
size_t ns8_enc_mapping_begin(ns8_enc *e, uint8_t major, uint8_t minor, uint8_t patch);
void ns8_enc_mapping_entry(ns8_enc *e, uint16_t client_no, bool stealth, const void *id,
                           size_t id_len);
size_t ns8_enc_global_sync_begin(ns8_enc *e);
/* one variable of GLOBAL_VAR_SYNC or of a CLIENT_VAR_SYNC target */
void ns8_enc_var(ns8_enc *e, const void *name, size_t name_len, const void *value,
                 size_t value_len, uint16_t last_writer);
size_t ns8_enc_client_sync_begin(ns8_enc *e);
/* a CLIENT_VAR_SYNC target header: nvars variables follow (ns8_enc_var) */
void ns8_enc_client_sync_target(ns8_enc *e, uint16_t client_no, uint16_t nvars);
/* RPC (both directions): targets are ntargets u16 in wire order (LE bytes, as parsed). */
void ns8_enc_rpc(ns8_enc *e, uint16_t sender, const void *device, size_t device_len,
                 const uint8_t *targets, uint8_t ntargets, const void *name, size_t name_len,
                 const void *args, size_t args_len);
void ns8_enc_ownership_changed(ns8_enc *e, uint32_t object_id, uint16_t new_owner,
                               uint16_t prev_owner);
void ns8_enc_ownership_rejected(ns8_enc *e, uint32_t object_id, uint16_t current_owner,
                                uint8_t reason);
size_t ns8_enc_room_pose_begin(ns8_enc *e, const void *room, size_t room_len,
                               double broadcast_time);
/* one ROOM_POSE entry: body must be a relay-form body (ns8_body_copy_relay) */
void ns8_enc_room_pose_entry(ns8_enc *e, uint16_t client_no, double pose_time,
                             const uint8_t *body, size_t body_len);
size_t ns8_enc_room_objects_begin(ns8_enc *e, double broadcast_time);
void ns8_enc_room_objects_entry(ns8_enc *e, uint32_t object_id, uint16_t owner, uint16_t seq,
                                double pose_time, const uint8_t body[NS8_OBJ_BODY_SIZE]);

/* Client->server, for tests, fuzzers and simulators. body is a complete pose body. */
void ns8_enc_hello(ns8_enc *e, uint8_t flags, const void *device, size_t device_len);
void ns8_enc_pose(ns8_enc *e, const void *device, size_t device_len, const uint8_t *body,
                  size_t body_len);
void ns8_enc_object_pose(ns8_enc *e, const void *device, size_t device_len, uint32_t object_id,
                         uint16_t seq, const uint8_t body[NS8_OBJ_BODY_SIZE]);
void ns8_enc_own_req(ns8_enc *e, const void *device, size_t device_len, uint8_t op,
                     uint32_t object_id);
void ns8_enc_global_var_set(ns8_enc *e, uint16_t sender, const void *device, size_t device_len,
                            const void *name, size_t name_len, const void *value,
                            size_t value_len);
void ns8_enc_client_var_set(ns8_enc *e, uint16_t sender, const void *device, size_t device_len,
                            uint16_t target, const void *name, size_t name_len,
                            const void *value, size_t value_len);
void ns8_enc_var_clear(ns8_enc *e, uint16_t sender, const void *device, size_t device_len);

/* ---- display decoding (§2, §3.3), for web views; never used for relaying ------------------ */

/* ns8_quat_decode unpacks a smallest-three quaternion into q[4] = x, y, z, w (normalized). */
void ns8_quat_decode(uint32_t packed, float q[4]);

typedef struct ns8_pose_view {
    uint16_t seq;                 /* poseSeq */
    uint8_t flags, enc;           /* as sent */
    bool has_physical;            /* physical[] valid */
    float physical[4];            /* x, y, z metres, yaw degrees (local or XR-origin delta) */
    bool has_head;                /* head valid */
    float head_pos[3];            /* metres, absolute */
    float head_rot[4];            /* x, y, z, w */
    bool has_right, has_left;     /* hands valid */
    float right_pos[3], left_pos[3]; /* metres, relative to the head in world axes */
    float right_rot[4], left_rot[4]; /* rotation relative to the head (inverse(head) x hand) */
    uint8_t nvirt;                /* virtual transforms in the body (<= 50) */
} ns8_pose_view;

/* ns8_decode_body decodes a body (any parseable body); NS8_OK or the parse error. */
int ns8_decode_body(const uint8_t *p, size_t n, ns8_pose_view *out);

typedef struct ns8_object_view {
    float pos[3];                 /* metres */
    float rot[4];                 /* x, y, z, w */
} ns8_object_view;

void ns8_decode_object(const uint8_t body[NS8_OBJ_BODY_SIZE], ns8_object_view *out);

#endif
