/* zmtp.c — ZMTP 3.0 / 3.1 codec; see zmtp.h. */
#include "codec/zmtp.h"

#include <string.h>

const char *const rc_zmtp_err_names[RC_ZMTP_E__COUNT] = {
    [RC_ZMTP_OK] = "ok",
    [RC_ZMTP_E_NOT_ZMTP] = "not_zmtp",
    [RC_ZMTP_E_VERSION] = "old_version",
    [RC_ZMTP_E_MECHANISM] = "mechanism",
    [RC_ZMTP_E_FLAGS] = "bad_flags",
    [RC_ZMTP_E_FRAME_TOO_BIG] = "frame_too_big",
    [RC_ZMTP_E_TOO_MANY_FRAMES] = "too_many_frames",
    [RC_ZMTP_E_MSG_TOO_BIG] = "message_too_big",
    [RC_ZMTP_E_COMMAND] = "bad_command",
    [RC_ZMTP_E_NO_READY] = "no_ready",
    [RC_ZMTP_E_METADATA] = "bad_metadata",
    [RC_ZMTP_E_SOCKET_TYPE] = "socket_type",
    [RC_ZMTP_E_COMMAND_IN_MSG] = "command_in_message",
    [RC_ZMTP_E_PEER_ERROR] = "peer_error",
};

const char *const rc_zmtp_err_text[RC_ZMTP_E__COUNT] = {
    [RC_ZMTP_OK] = "no error",
    [RC_ZMTP_E_NOT_ZMTP] = "not a ZMTP 3 greeting (ZMTP 1.0 or not ZeroMQ)",
    [RC_ZMTP_E_VERSION] = "ZMTP 1.0/2.0 peer: ZMTP 3.0 or later is required",
    [RC_ZMTP_E_MECHANISM] = "security mechanism not supported (NULL only)",
    [RC_ZMTP_E_FLAGS] = "invalid frame flags",
    [RC_ZMTP_E_FRAME_TOO_BIG] = "frame over the size limit",
    [RC_ZMTP_E_TOO_MANY_FRAMES] = "message with too many frames",
    [RC_ZMTP_E_MSG_TOO_BIG] = "message over the size limit",
    [RC_ZMTP_E_COMMAND] = "malformed command",
    [RC_ZMTP_E_NO_READY] = "expected READY",
    [RC_ZMTP_E_METADATA] = "invalid metadata",
    [RC_ZMTP_E_SOCKET_TYPE] = "invalid socket type",
    [RC_ZMTP_E_COMMAND_IN_MSG] = "command inside a multipart message",
    [RC_ZMTP_E_PEER_ERROR] = "the peer sent ERROR",
};

const char *const rc_zmtp_type_names[RC_ZMTP_T__COUNT] = {
    [RC_ZMTP_T_UNKNOWN] = "", [RC_ZMTP_T_REQ] = "REQ", [RC_ZMTP_T_REP] = "REP",
    [RC_ZMTP_T_DEALER] = "DEALER", [RC_ZMTP_T_ROUTER] = "ROUTER", [RC_ZMTP_T_PUB] = "PUB",
    [RC_ZMTP_T_SUB] = "SUB", [RC_ZMTP_T_XPUB] = "XPUB", [RC_ZMTP_T_XSUB] = "XSUB",
    [RC_ZMTP_T_PUSH] = "PUSH", [RC_ZMTP_T_PULL] = "PULL", [RC_ZMTP_T_PAIR] = "PAIR",
};

bool rc_zmtp_type_compatible(enum rc_zmtp_type self, enum rc_zmtp_type peer)
{
    switch (self) {
    case RC_ZMTP_T_ROUTER:
        return peer == RC_ZMTP_T_DEALER || peer == RC_ZMTP_T_REQ || peer == RC_ZMTP_T_ROUTER;
    case RC_ZMTP_T_PUB:
    case RC_ZMTP_T_XPUB:
        return peer == RC_ZMTP_T_SUB || peer == RC_ZMTP_T_XSUB;
    default:
        return false;
    }
}

/* ---- greeting ---------------------------------------------------------------------------- */

static const uint8_t null_mechanism[20] = {'N', 'U', 'L', 'L'};

int rc_zmtp_greeting_parse(const uint8_t *p, size_t n, rc_zmtp_greeting *g)
{
    /* Checked in wire order so that the earliest byte that proves a refusal refuses. */
    if (n >= 1 && p[0] != 0xFF) return -RC_ZMTP_E_NOT_ZMTP;
    if (n >= 10 && !(p[9] & 1)) return -RC_ZMTP_E_NOT_ZMTP; /* a ZMTP 1.0 identity header */
    if (n >= 11 && p[10] < 3) return -RC_ZMTP_E_VERSION;
    for (size_t i = 12; i < 32 && i < n; i++)
        if (p[i] != null_mechanism[i - 12]) return -RC_ZMTP_E_MECHANISM;
    if (n < RC_ZMTP_GREETING_LEN) return 0;
    *g = (rc_zmtp_greeting){.major = p[10], .minor = p[11], .as_server = p[32] != 0};
    return RC_ZMTP_GREETING_LEN;
}

void rc_zmtp_greeting_encode(uint8_t out[RC_ZMTP_GREETING_LEN])
{
    memset(out, 0, RC_ZMTP_GREETING_LEN);
    /* libzmq's signature: 0xFF, a 64-bit "length" of its routing id + 1 (1: a server has
     * none), 0x7F — the padding doubles as a ZMTP 1.0 identity header for old peers. */
    out[0] = 0xFF;
    out[8] = 1;
    out[9] = 0x7F;
    out[10] = 3; /* major */
    out[11] = 1; /* minor: libzmq always offers 3.1 and speaks 3.0 to a 3.0 peer */
    memcpy(out + 12, null_mechanism, sizeof(null_mechanism));
    /* out[32], as-server, and the filler stay 0 */
}

/* ---- frames ------------------------------------------------------------------------------ */

/* Bigger than any limit, small enough that sums of a few never overflow. */
#define FRAME_ABSURD (UINT64_MAX >> 4)

int rc_zmtp_frame_parse(const uint8_t *p, size_t n, uint64_t max_len, rc_zmtp_frame *f)
{
    if (n < 1) return 0;
    uint8_t flags = p[0];
    if (flags & 0xF8) return -RC_ZMTP_E_FLAGS;
    if ((flags & RC_ZMTP_COMMAND) && (flags & RC_ZMTP_MORE)) return -RC_ZMTP_E_FLAGS;
    size_t hl = flags & RC_ZMTP_LONG ? 9 : 2;
    uint64_t len = 0;
    if (flags & RC_ZMTP_LONG) {
        /* the size is refused as soon as its leading bytes exceed the limit */
        for (size_t i = 1; i < 9 && i < n; i++) {
            len = len << 8 | p[i];
            uint64_t least = len << (8 * (8 - i)); /* the smallest size with this prefix */
            if (least > FRAME_ABSURD || (max_len && least > max_len))
                return -RC_ZMTP_E_FRAME_TOO_BIG;
        }
        if (n < 9) return 0;
    } else {
        if (n < 2) return 0;
        len = p[1];
        if (max_len && len > max_len) return -RC_ZMTP_E_FRAME_TOO_BIG;
    }
    *f = (rc_zmtp_frame){.flags = flags, .len = len, .header_len = hl};
    return (int)hl;
}

size_t rc_zmtp_frame_header(uint8_t *out, uint64_t len, uint8_t flags)
{
    flags &= RC_ZMTP_MORE | RC_ZMTP_COMMAND;
    if (len <= 255) {
        out[0] = flags;
        out[1] = (uint8_t)len;
        return 2;
    }
    out[0] = flags | RC_ZMTP_LONG;
    for (int i = 0; i < 8; i++) out[1 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 9;
}

/* ---- commands ---------------------------------------------------------------------------- */

static bool name_is(const uint8_t *name, size_t len, const char *want)
{
    size_t wl = strlen(want);
    return len == wl && memcmp(name, want, wl) == 0;
}

int rc_zmtp_command_parse(const uint8_t *b, size_t n, rc_zmtp_cmd *c)
{
    if (n < 1 || (size_t)b[0] + 1 > n) return -RC_ZMTP_E_COMMAND;
    size_t nl = b[0];
    *c = (rc_zmtp_cmd){.kind = RC_ZMTP_CMD_OTHER, .name = b + 1, .name_len = nl,
                       .data = b + 1 + nl, .len = n - 1 - nl};
    if (name_is(c->name, nl, "READY")) {
        c->kind = RC_ZMTP_CMD_READY;
    } else if (name_is(c->name, nl, "ERROR")) {
        c->kind = RC_ZMTP_CMD_ERROR;
        if (c->len < 1 || (size_t)c->data[0] + 1 > c->len) return -RC_ZMTP_E_COMMAND;
        c->len = c->data[0];
        c->data++;
    } else if (name_is(c->name, nl, "SUBSCRIBE")) {
        c->kind = RC_ZMTP_CMD_SUBSCRIBE;
    } else if (name_is(c->name, nl, "CANCEL")) {
        c->kind = RC_ZMTP_CMD_CANCEL;
    } else if (name_is(c->name, nl, "PING")) {
        c->kind = RC_ZMTP_CMD_PING;
        if (c->len < 2) return -RC_ZMTP_E_COMMAND;
        c->ttl = (uint16_t)(c->data[0] << 8 | c->data[1]);
        c->data += 2;
        c->len -= 2;
        if (c->len > RC_ZMTP_PING_CONTEXT_MAX) c->len = RC_ZMTP_PING_CONTEXT_MAX;
    } else if (name_is(c->name, nl, "PONG")) {
        c->kind = RC_ZMTP_CMD_PONG;
    }
    return 0;
}

static bool prop_is(const uint8_t *name, size_t len, const char *want)
{
    size_t wl = strlen(want);
    if (len != wl) return false;
    for (size_t i = 0; i < wl; i++) {
        uint8_t a = name[i], b = (uint8_t)want[i];
        if (a >= 'A' && a <= 'Z') a = (uint8_t)(a + 32);
        if (b >= 'A' && b <= 'Z') b = (uint8_t)(b + 32);
        if (a != b) return false;
    }
    return true;
}

int rc_zmtp_ready_parse(const uint8_t *p, size_t n, enum rc_zmtp_type self, rc_zmtp_peer *peer)
{
    *peer = (rc_zmtp_peer){.type = RC_ZMTP_T_UNKNOWN};
    bool have_type = false;
    size_t i = 0;
    while (i < n) {
        size_t nl = p[i++];
        if (nl > n - i) return -RC_ZMTP_E_METADATA;
        const uint8_t *name = p + i;
        i += nl;
        if (n - i < 4) return -RC_ZMTP_E_METADATA;
        uint32_t vl = (uint32_t)p[i] << 24 | (uint32_t)p[i + 1] << 16 | (uint32_t)p[i + 2] << 8 |
                      p[i + 3];
        i += 4;
        if (vl > n - i) return -RC_ZMTP_E_METADATA;
        const uint8_t *value = p + i;
        i += vl;
        if (prop_is(name, nl, "Socket-Type")) {
            have_type = true;
            peer->type = RC_ZMTP_T_UNKNOWN;
            for (int t = 1; t < RC_ZMTP_T__COUNT; t++)
                if (name_is(value, vl, rc_zmtp_type_names[t])) peer->type = (enum rc_zmtp_type)t;
        } else if (prop_is(name, nl, "Identity")) {
            if (vl > RC_ZMTP_IDENTITY_MAX) return -RC_ZMTP_E_METADATA;
            peer->identity = value;
            peer->identity_len = vl;
        }
    }
    if (!have_type || !rc_zmtp_type_compatible(self, peer->type)) return -RC_ZMTP_E_SOCKET_TYPE;
    return 0;
}

/* put_command writes a command frame whose body is name then body[0..len) into out. */
static size_t put_command(uint8_t *out, size_t cap, const char *name, const uint8_t *body,
                          size_t len)
{
    size_t nl = strlen(name), bl = 1 + nl + len;
    size_t hl = rc_zmtp_header_size(bl);
    if (hl + bl > cap) return 0;
    rc_zmtp_frame_header(out, bl, RC_ZMTP_COMMAND);
    out[hl] = (uint8_t)nl;
    memcpy(out + hl + 1, name, nl);
    if (len) memcpy(out + hl + 1 + nl, body, len);
    return hl + bl;
}

static size_t put_prop(uint8_t *out, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value), i = 0;
    out[i++] = (uint8_t)nl;
    memcpy(out + i, name, nl);
    i += nl;
    out[i++] = 0;
    out[i++] = 0;
    out[i++] = 0;
    out[i++] = (uint8_t)vl;
    memcpy(out + i, value, vl);
    return i + vl;
}

size_t rc_zmtp_ready_encode(uint8_t *out, size_t cap, enum rc_zmtp_type self)
{
    uint8_t props[48];
    size_t n = put_prop(props, "Socket-Type", rc_zmtp_type_names[self]);
    if (self == RC_ZMTP_T_REQ || self == RC_ZMTP_T_DEALER || self == RC_ZMTP_T_ROUTER)
        n += put_prop(props + n, "Identity", "");
    return put_command(out, cap, "READY", props, n);
}

size_t rc_zmtp_pong_encode(uint8_t *out, size_t cap, const uint8_t *ctx, size_t ctx_len)
{
    if (ctx_len > RC_ZMTP_PING_CONTEXT_MAX) ctx_len = RC_ZMTP_PING_CONTEXT_MAX;
    return put_command(out, cap, "PONG", ctx, ctx_len);
}

size_t rc_zmtp_error_encode(uint8_t *out, size_t cap, const char *reason)
{
    uint8_t body[256];
    size_t rl = strlen(reason);
    if (rl > 255) rl = 255;
    body[0] = (uint8_t)rl;
    memcpy(body + 1, reason, rl);
    return put_command(out, cap, "ERROR", body, 1 + rl);
}

/* ---- the stream reader ------------------------------------------------------------------- */

void rc_zmtp_reader_init(rc_zmtp_reader *r, enum rc_zmtp_type self, const rc_zmtp_limits *lim)
{
    *r = (rc_zmtp_reader){.lim = *lim, .self = self, .stage = RC_ZMTP_S_GREETING};
}

/* A command: complete in p[0..total), parsed and checked against the stage. */
static long read_command(rc_zmtp_reader *r, const uint8_t *p, const rc_zmtp_frame *f,
                         rc_zmtp_item *it)
{
    const uint8_t *body = p + f->header_len;
    size_t len = (size_t)f->len;
    int rc = rc_zmtp_command_parse(body, len, &it->cmd);
    if (rc < 0) return r->stage == RC_ZMTP_S_READY ? -RC_ZMTP_E_NO_READY : rc;
    if (r->stage == RC_ZMTP_S_READY) {
        if (it->cmd.kind != RC_ZMTP_CMD_READY) return -RC_ZMTP_E_NO_READY;
        rc = rc_zmtp_ready_parse(it->cmd.data, it->cmd.len, r->self, &it->peer);
        if (rc < 0) return rc;
        it->kind = RC_ZMTP_I_READY;
        r->stage = RC_ZMTP_S_TRAFFIC;
    } else {
        if (it->cmd.kind == RC_ZMTP_CMD_READY) return -RC_ZMTP_E_COMMAND; /* handshake only */
        it->kind = RC_ZMTP_I_COMMAND;
    }
    return (long)(f->header_len + len);
}

long rc_zmtp_read(rc_zmtp_reader *r, const uint8_t *p, size_t n, rc_zmtp_item *it)
{
    if (r->stage == RC_ZMTP_S_GREETING) {
        int rc = rc_zmtp_greeting_parse(p, n, &r->greeting);
        if (rc <= 0) return rc;
        r->stage = RC_ZMTP_S_READY;
        it->kind = RC_ZMTP_I_GREETING;
        return rc;
    }
    for (;;) {
        rc_zmtp_frame f;
        int rc = rc_zmtp_frame_parse(p + r->pos, n - r->pos, r->lim.max_frame, &f);
        if (rc <= 0) return rc;
        uint64_t wire = r->pos + f.header_len + f.len;
        if (r->lim.max_bytes && wire > r->lim.max_bytes) return -RC_ZMTP_E_MSG_TOO_BIG;
        if (f.flags & RC_ZMTP_COMMAND) {
            if (r->nframes > 0) return -RC_ZMTP_E_COMMAND_IN_MSG;
            if (n < wire) return 0;
            return read_command(r, p, &f, it);
        }
        if (r->stage == RC_ZMTP_S_READY) return -RC_ZMTP_E_NO_READY;
        if (r->lim.max_frames && r->nframes + 1 > r->lim.max_frames && !r->lim.truncate)
            return -RC_ZMTP_E_TOO_MANY_FRAMES;
        if (n < wire) return 0; /* the header is read again next time: at most 9 bytes */
        r->pos = (size_t)wire;
        r->nframes++;
        r->bytes += f.len;
        if (!(f.flags & RC_ZMTP_MORE)) {
            it->kind = RC_ZMTP_I_MESSAGE;
            it->nframes = r->nframes;
            it->bytes = r->bytes;
            long total = (long)r->pos;
            r->pos = 0;
            r->nframes = 0;
            r->bytes = 0;
            return total;
        }
    }
}

size_t rc_zmtp_parts(const uint8_t *p, size_t len, rc_zmtp_part *out, size_t max)
{
    size_t i = 0, k = 0;
    while (i < len && k < max) {
        rc_zmtp_frame f;
        if (rc_zmtp_frame_parse(p + i, len - i, 0, &f) <= 0) break;
        if (f.len > len - i - f.header_len) break;
        out[k++] = (rc_zmtp_part){p + i + f.header_len, (size_t)f.len};
        i += f.header_len + (size_t)f.len;
    }
    return k;
}
