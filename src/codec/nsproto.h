/* nsproto.h — the STYLY NetSync v0.6.x binary codec (docs/netsync.md, the wire spec in
 * /work/shared/netsync-protocol.md §2-3).
 *
 * Every message is one ZeroMQ frame whose first byte is the type. Integers are little-endian,
 * str8/str16 are a u8/u16 byte length followed by UTF-8, a transform is 6 raw float32.
 *
 * Parsers (nsy_parse_*) allocate nothing and never trust a length: they return views (nsy_str,
 * raw byte pointers) into the caller's buffer, valid as long as that buffer is. Floats are
 * never converted — transforms are kept and re-emitted as the bytes that arrived, which makes
 * the float round trip bit-exact by construction (NaN payloads and signed zeros included).
 * The reference's leniencies that clients may rely on are reproduced and reported in the
 * parsed struct: nVirt > 50 is clamped to 50 (exactly 50 transforms are read), trailing bytes
 * are ignored, and a string that is the *last* field may overrun the message (it is cut to
 * the bytes present, as Python slicing does). Any other overrun is NSY_E_TRUNCATED. Strings
 * must be valid UTF-8 (the reference decodes them and drops the message otherwise).
 *
 * Encoders append to an rc_buf through an nsy_enc whose error is sticky, so a message is
 * written as straight-line code and checked once at the end (enc.err). A str8 longer than 255
 * bytes is an error (NSY_E_TOO_LONG), never a silently wrapped length byte.
 */
#ifndef RC_NSPROTO_H
#define RC_NSPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum nsy_type {
    NSY_CLIENT_TRANSFORM = 1,  /* c->s */
    NSY_ROOM_TRANSFORM = 2,    /* s->c */
    NSY_RPC = 3,               /* both */
    NSY_DEVICE_ID_MAPPING = 6, /* s->c */
    NSY_GLOBAL_VAR_SET = 7,    /* c->s */
    NSY_GLOBAL_VAR_SYNC = 8,   /* s->c */
    NSY_CLIENT_VAR_SET = 9,    /* c->s */
    NSY_CLIENT_VAR_SYNC = 10,  /* s->c */
};

/* Parse results: 0 or one of these (each is a separate malformed-input counter). */
enum nsy_err {
    NSY_OK = 0,
    NSY_E_EMPTY = -1,          /* zero-length payload */
    NSY_E_TYPE = -2,           /* type byte outside 1..10, or reserved 4/5 */
    NSY_E_DIRECTION = -3,      /* a server->client type (2, 6, 8, 10) sent to the server */
    NSY_E_TRUNCATED = -4,      /* a fixed-size field or a non-final string runs past the end */
    NSY_E_UTF8 = -5,           /* a string is not valid UTF-8 */
    NSY_E_TOO_LONG = -6,       /* encoder: string too long for its length prefix */
    NSY_E_NOMEM = -7,          /* encoder: out of memory */
};

#define NSY_MAX_VIRTUAL 50        /* virtual transforms per client, in and out */
#define NSY_TRANSFORM_SIZE 24     /* 6 x float32 */
#define NSY_BODY_SIZE 96          /* physical, head, right hand, left hand */
#define NSY_STR8_MAX 255
#define NSY_STR16_MAX 65535
/* A ROOM_TRANSFORM entry: u16 clientNo + body + u8 nVirt + nVirt transforms. */
#define NSY_ENTRY_FIXED (2 + NSY_BODY_SIZE + 1)
#define NSY_ENTRY_MAX (NSY_ENTRY_FIXED + NSY_MAX_VIRTUAL * NSY_TRANSFORM_SIZE)

typedef struct nsy_str {
    const uint8_t *p;        /* bytes (not NUL-terminated), points into the parsed message */
    size_t len;              /* length in bytes */
} nsy_str;

typedef struct nsy_client_transform {
    nsy_str device_id;        /* client-chosen identity key, 0..255 bytes of UTF-8 */
    const uint8_t *body;     /* NSY_BODY_SIZE raw bytes: physical, head, right, left */
    const uint8_t *virt;     /* nvirt * NSY_TRANSFORM_SIZE raw bytes */
    uint8_t nvirt;           /* virtual transforms, already clamped to NSY_MAX_VIRTUAL */
    bool clamped;            /* the message announced more than NSY_MAX_VIRTUAL */
    bool stealth;            /* all 24 body floats are NaN and nvirt == 0 */
} nsy_client_transform;

typedef struct nsy_rpc {
    uint16_t sender;         /* claimed senderClientNo (the server rewrites it) */
    nsy_str name;             /* function name, str8 */
    nsy_str args;             /* argumentsJson, str16, opaque bytes (never parsed as JSON) */
    bool args_cut;           /* the announced args length overran the message (lenient) */
} nsy_rpc;

typedef struct nsy_var_set {
    uint16_t sender;         /* claimed senderClientNo */
    uint16_t target;         /* CLIENT_VAR_SET only: target client number (any u16) */
    nsy_str name;             /* variable name, str8 */
    nsy_str value;            /* value, str16 */
    double timestamp;        /* client's Unix time in seconds, only compared */
} nsy_var_set;

/* nsy_classify checks the type byte of a client->server payload: returns the type (1, 3, 7,
 * 9) or NSY_E_EMPTY / NSY_E_TYPE / NSY_E_DIRECTION. */
int nsy_classify(const uint8_t *p, size_t n);

/* Parsers of the client->server messages; p[0] must be the matching type. Return NSY_OK and
 * fill *out, or a negative nsy_err (out is then unspecified). */
int nsy_parse_client_transform(const uint8_t *p, size_t n, nsy_client_transform *out);
int nsy_parse_rpc(const uint8_t *p, size_t n, nsy_rpc *out);
int nsy_parse_global_var_set(const uint8_t *p, size_t n, nsy_var_set *out);
int nsy_parse_client_var_set(const uint8_t *p, size_t n, nsy_var_set *out);

/* nsy_check_server_msg validates a server->client message (types 2, 3, 6, 8, 10) strictly: every
 * length in bounds, nVirt <= 50, count > 0 for ROOM_TRANSFORM, strings valid UTF-8, no
 * trailing bytes. Returns NSY_OK or a negative nsy_err. Used by tests, the fuzzer and the
 * simulator to prove that what the server emits is something Unity can read. */
int nsy_check_server_msg(const uint8_t *p, size_t n);

/* nsy_utf8_prefix returns the byte length of the first max_cp code points of valid UTF-8
 * s[0..n) — Python's str[:max_cp] on the decoded string. */
size_t nsy_utf8_prefix(const uint8_t *s, size_t n, size_t max_cp);

/* Little-endian loads from unaligned bytes. */
static inline uint16_t nsy_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
double nsy_get_f64(const uint8_t *p);

/* ---- encoding ---------------------------------------------------------------------------- */

typedef struct nsy_enc {
    rc_buf *b;               /* output, appended to (not owned) */
    int err;                 /* first error (negative nsy_err), 0 while everything fit */
} nsy_enc;

static inline void nsy_enc_init(nsy_enc *e, rc_buf *b) { e->b = b; e->err = 0; }

void nsy_put_u8(nsy_enc *e, uint8_t v);
void nsy_put_u16(nsy_enc *e, uint16_t v);
void nsy_put_f64(nsy_enc *e, double v);
void nsy_put_bytes(nsy_enc *e, const void *p, size_t n);
void nsy_put_str8(nsy_enc *e, const void *p, size_t n);   /* NSY_E_TOO_LONG when n > 255 */
void nsy_put_str16(nsy_enc *e, const void *p, size_t n);  /* NSY_E_TOO_LONG when n > 65535 */
/* nsy_patch_u16 overwrites the u16 at byte offset off of the buffer's valid bytes. */
void nsy_patch_u16(nsy_enc *e, size_t off, uint16_t v);

/* ROOM_TRANSFORM: begin writes type, room id and a count placeholder and returns the offset of
 * the count (patch it with nsy_patch_u16 after appending the entries as raw bytes). */
size_t nsy_enc_room_transform_begin(nsy_enc *e, const void *room, size_t room_len);
/* nsy_enc_entry writes one ROOM_TRANSFORM entry; nvirt above 50 is clamped (Unity reads at most
 * 50 and would mis-frame the message). */
void nsy_enc_entry(nsy_enc *e, uint16_t client_no, const uint8_t body[NSY_BODY_SIZE],
                  uint8_t nvirt, const uint8_t *virt);
void nsy_enc_rpc(nsy_enc *e, uint16_t sender, const void *name, size_t name_len, const void *args,
                size_t args_len);
/* DEVICE_ID_MAPPING / GLOBAL_VAR_SYNC / CLIENT_VAR_SYNC: the caller writes the type and u16
 * count, then the entries with these helpers. */
void nsy_enc_mapping_entry(nsy_enc *e, uint16_t client_no, bool stealth, const void *id,
                          size_t id_len);
void nsy_enc_var(nsy_enc *e, const void *name, size_t name_len, const void *value,
                size_t value_len, double ts, uint16_t last_writer);

/* Client->server encoders, for tests, the fuzzer and the simulator. */
void nsy_enc_client_transform(nsy_enc *e, const void *device, size_t device_len,
                             const uint8_t body[NSY_BODY_SIZE], uint8_t nvirt,
                             const uint8_t *virt);
void nsy_enc_global_var_set(nsy_enc *e, uint16_t sender, const void *name, size_t name_len,
                           const void *value, size_t value_len, double ts);
void nsy_enc_client_var_set(nsy_enc *e, uint16_t sender, uint16_t target, const void *name,
                           size_t name_len, const void *value, size_t value_len, double ts);

#endif
