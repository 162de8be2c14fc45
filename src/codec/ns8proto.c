/* ns8proto.c — the NetSync protocol 8 codec; see ns8proto.h for the rules it follows. */
#include "codec/ns8proto.h"

#include <math.h>
#include <string.h>

#include "codec/nsproto.h"
#include "codec/utf8.h"

/* A bounds-checked cursor: every read checks the remaining length first and `off` never passes
 * `n`, so a hostile length can only make a read fail, never read past the buffer. */
typedef struct rd {
    const uint8_t *p;             /* message */
    size_t n;                     /* its length */
    size_t off;                   /* next unread byte */
} rd;

static bool rd_skip(rd *r, size_t len, const uint8_t **at)
{
    if (r->n - r->off < len) return false;
    if (at) *at = r->p + r->off;
    r->off += len;
    return true;
}

static bool rd_u8(rd *r, uint8_t *v)
{
    const uint8_t *a;
    if (!rd_skip(r, 1, &a)) return false;
    *v = a[0];
    return true;
}

static bool rd_u16(rd *r, uint16_t *v)
{
    const uint8_t *a;
    if (!rd_skip(r, 2, &a)) return false;
    *v = ns8_get_u16(a);
    return true;
}

static uint32_t get_u32(const uint8_t *a)
{
    return (uint32_t)a[0] | (uint32_t)a[1] << 8 | (uint32_t)a[2] << 16 | (uint32_t)a[3] << 24;
}

static bool rd_u32(rd *r, uint32_t *v)
{
    const uint8_t *a;
    if (!rd_skip(r, 4, &a)) return false;
    *v = get_u32(a);
    return true;
}

/* rd_str reads a str8 (wide false) or str16, strictly: it must fit and be valid UTF-8. */
static int rd_str(rd *r, bool wide, ns8_str *s)
{
    size_t len;
    if (wide) {
        uint16_t l;
        if (!rd_u16(r, &l)) return NS8_E_TRUNCATED;
        len = l;
    } else {
        uint8_t l;
        if (!rd_u8(r, &l)) return NS8_E_TRUNCATED;
        len = l;
    }
    if (!rd_skip(r, len, &s->p)) return NS8_E_TRUNCATED;
    s->len = len;
    return rc_utf8_valid(s->p, s->len) ? NS8_OK : NS8_E_UTF8;
}

/* rd_version checks the version byte at offset 1. */
static int rd_version(rd *r)
{
    uint8_t v;
    if (!rd_u8(r, &v)) return NS8_E_TRUNCATED;
    return v == NS8_VERSION ? NS8_OK : NS8_E_VERSION;
}

/* rd_end is the full-length rule of control messages. */
static int rd_end(const rd *r) { return r->off == r->n ? NS8_OK : NS8_E_TRAILING; }

/* ---- pose body --------------------------------------------------------------------------- */

int ns8_parse_body(const uint8_t *p, size_t n, ns8_body *out)
{
    rd r = {p, n, 0};
    if (!rd_u16(&r, &out->seq) || !rd_u8(&r, &out->flags) || !rd_u8(&r, &out->enc))
        return NS8_E_TRUNCATED;
    uint8_t f = out->flags;
    if (f & NS8_F_PHYSICAL) {
        /* Neither a floor-local pose nor an XR-origin delta: the reference has no decoding for
         * it and rejects the message; relaying it would make Unity drop the whole ROOM_POSE. */
        if (!(f & NS8_F_FLOOR_LOCAL) && !(out->enc & NS8_E_PHYS_XR_DELTA)) {
            if (!rd_skip(&r, 8, NULL)) return NS8_E_TRUNCATED;
            return NS8_E_PHYSICAL;
        }
        if (!rd_skip(&r, 8, NULL)) return NS8_E_TRUNCATED;
    }
    if (f & NS8_F_HEAD) {
        if (!rd_skip(&r, 13, NULL)) return NS8_E_TRUNCATED;
        if ((f & NS8_F_RIGHT) && !rd_skip(&r, 10, NULL)) return NS8_E_TRUNCATED;
        if ((f & NS8_F_LEFT) && !rd_skip(&r, 10, NULL)) return NS8_E_TRUNCATED;
    }
    out->nvirt_off = r.off;
    if (!rd_u8(&r, &out->nvirt_wire)) return NS8_E_TRUNCATED;
    out->nvirt_clamped = out->nvirt_wire > NS8_MAX_VIRTUAL;
    out->nvirt = out->nvirt_clamped ? NS8_MAX_VIRTUAL : out->nvirt_wire;
    /* consumed whether or not HeadValid/VirtualsValid are set (the readers do the same) */
    if (!rd_skip(&r, (size_t)out->nvirt * 10, NULL)) return NS8_E_TRUNCATED;
    out->p = p;
    out->len = r.off;
    return NS8_OK;
}

void ns8_body_copy_relay(const ns8_body *b, uint8_t *dst)
{
    memcpy(dst, b->p, b->len);
    dst[b->nvirt_off] = b->nvirt;
}

/* ---- client->server parsers -------------------------------------------------------------- */

int ns8_parse_hello(const uint8_t *p, size_t n, ns8_hello *out)
{
    if (n == 0) return NS8_E_EMPTY; /* p[0], the type, is required */
    rd r = {p, n, 1};
    int rc = rd_version(&r);
    if (rc) return rc;
    if (!rd_u8(&r, &out->flags)) return NS8_E_TRUNCATED;
    if ((rc = rd_str(&r, false, &out->device_id))) return rc;
    return rd_end(&r);
}

int ns8_parse_pose(const uint8_t *p, size_t n, ns8_pose *out)
{
    if (n == 0) return NS8_E_EMPTY; /* p[0], the type, is required */
    rd r = {p, n, 1};
    int rc = rd_version(&r);
    if (rc || (rc = rd_str(&r, false, &out->device_id))) return rc;
    if ((rc = ns8_parse_body(p + r.off, n - r.off, &out->body))) return rc;
    out->trailing = n - r.off - out->body.len;
    return NS8_OK;
}

int ns8_parse_object_pose(const uint8_t *p, size_t n, ns8_object_pose *out)
{
    if (n == 0) return NS8_E_EMPTY; /* p[0], the type, is required */
    rd r = {p, n, 1};
    int rc = rd_version(&r);
    if (rc || (rc = rd_str(&r, false, &out->device_id))) return rc;
    if (!rd_u32(&r, &out->object_id) || !rd_u16(&r, &out->seq) ||
        !rd_skip(&r, NS8_OBJ_BODY_SIZE, &out->body))
        return NS8_E_TRUNCATED;
    out->trailing = n - r.off;
    return NS8_OK;
}

int ns8_parse_own_req(const uint8_t *p, size_t n, ns8_own_req *out)
{
    if (n == 0) return NS8_E_EMPTY; /* p[0], the type, is required */
    rd r = {p, n, 1};
    int rc = rd_version(&r);
    if (rc || (rc = rd_str(&r, false, &out->device_id))) return rc;
    if (!rd_u8(&r, &out->op) || !rd_u32(&r, &out->object_id)) return NS8_E_TRUNCATED;
    return rd_end(&r);
}

int ns8_parse_rpc(const uint8_t *p, size_t n, ns8_rpc *out)
{
    if (n == 0) return NS8_E_EMPTY; /* p[0], the type, is required */
    rd r = {p, n, 1};
    int rc;
    if (!rd_u16(&r, &out->sender)) return NS8_E_TRUNCATED;
    if ((rc = rd_str(&r, false, &out->device_id))) return rc;
    if (!rd_u8(&r, &out->ntargets) || !rd_skip(&r, 2 * (size_t)out->ntargets, &out->targets))
        return NS8_E_TRUNCATED;
    if ((rc = rd_str(&r, false, &out->name)) || (rc = rd_str(&r, true, &out->args))) return rc;
    return rd_end(&r);
}

int ns8_parse_global_var_set(const uint8_t *p, size_t n, ns8_var_set *out)
{
    if (n == 0) return NS8_E_EMPTY; /* p[0], the type, is required */
    rd r = {p, n, 1};
    int rc;
    out->target = 0;
    if (!rd_u16(&r, &out->sender)) return NS8_E_TRUNCATED;
    if ((rc = rd_str(&r, false, &out->device_id)) || (rc = rd_str(&r, false, &out->name)) ||
        (rc = rd_str(&r, true, &out->value)))
        return rc;
    return rd_end(&r);
}

int ns8_parse_client_var_set(const uint8_t *p, size_t n, ns8_var_set *out)
{
    if (n == 0) return NS8_E_EMPTY; /* p[0], the type, is required */
    rd r = {p, n, 1};
    int rc;
    if (!rd_u16(&r, &out->sender)) return NS8_E_TRUNCATED;
    if ((rc = rd_str(&r, false, &out->device_id))) return rc;
    if (!rd_u16(&r, &out->target)) return NS8_E_TRUNCATED;
    if ((rc = rd_str(&r, false, &out->name)) || (rc = rd_str(&r, true, &out->value))) return rc;
    return rd_end(&r);
}

int ns8_parse_var_clear(const uint8_t *p, size_t n, ns8_var_clear *out)
{
    if (n == 0) return NS8_E_EMPTY; /* p[0], the type, is required */
    rd r = {p, n, 1};
    int rc;
    if (!rd_u16(&r, &out->sender)) return NS8_E_TRUNCATED;
    if ((rc = rd_str(&r, false, &out->device_id))) return rc;
    return rd_end(&r);
}

int ns8_parse(const uint8_t *p, size_t n, ns8_msg *out)
{
    if (n == 0) return NS8_E_EMPTY;
    out->type = p[0];
    switch (p[0]) {
    case NS8_HELLO: return ns8_parse_hello(p, n, &out->u.hello);
    case NS8_CLIENT_POSE: return ns8_parse_pose(p, n, &out->u.pose);
    case NS8_OBJECT_POSE: return ns8_parse_object_pose(p, n, &out->u.obj);
    case NS8_OWNERSHIP_REQUEST: return ns8_parse_own_req(p, n, &out->u.own);
    case NS8_RPC: return ns8_parse_rpc(p, n, &out->u.rpc);
    case NS8_GLOBAL_VAR_SET: return ns8_parse_global_var_set(p, n, &out->u.var);
    case NS8_CLIENT_VAR_SET: return ns8_parse_client_var_set(p, n, &out->u.var);
    case NS8_CLIENT_VAR_CLEAR: return ns8_parse_var_clear(p, n, &out->u.clear);
    case NS8_ROOM_TRANSFORM:
    case NS8_DEVICE_ID_MAPPING:
    case NS8_GLOBAL_VAR_SYNC:
    case NS8_CLIENT_VAR_SYNC:
    case NS8_ROOM_POSE:
    case NS8_ROOM_OBJECTS:
    case NS8_OWNERSHIP_CHANGED:
    case NS8_OWNERSHIP_REJECTED: return NS8_E_DIRECTION;
    default: return NS8_E_TYPE;
    }
}

/* ---- classification ---------------------------------------------------------------------- */

/* v06_strict: the payload is a complete v0.6 RPC / NV set, ending exactly at its last field. */
static bool v06_strict(const uint8_t *p, size_t n)
{
    switch (p[0]) {
    case NSY_RPC: {
        nsy_rpc m;
        return nsy_parse_rpc(p, n, &m) == NSY_OK && !m.args_cut &&
               1 + 2 + 1 + m.name.len + 2 + m.args.len == n;
    }
    case NSY_GLOBAL_VAR_SET: {
        nsy_var_set v;
        return nsy_parse_global_var_set(p, n, &v) == NSY_OK &&
               1 + 2 + 1 + v.name.len + 2 + v.value.len + 8 == n;
    }
    case NSY_CLIENT_VAR_SET: {
        nsy_var_set v;
        return nsy_parse_client_var_set(p, n, &v) == NSY_OK &&
               1 + 2 + 2 + 1 + v.name.len + 2 + v.value.len + 8 == n;
    }
    default: return false;
    }
}

void ns8_classify(enum ns8_lane lane, const uint8_t *p, size_t n, enum ns8_gen hint,
                  ns8_class *out, ns8_msg *msg)
{
    ns8_msg scratch;
    if (!msg) msg = &scratch;
    *out = (ns8_class){.gen = NS8_GEN_INVALID};
    if (n == 0) {
        out->err = NS8_E_EMPTY;
        return;
    }
    uint8_t t = p[0];
    switch (t) {
    case NS8_CLIENT_TRANSFORM: {
        nsy_client_transform ct;
        int rc = nsy_parse_client_transform(p, n, &ct);
        if (lane != NS8_LANE_CONTROL) out->err = NS8_E_LANE;
        else if (rc == NSY_OK) out->gen = NS8_GEN_V06;
        else out->err = rc == NSY_E_UTF8 ? NS8_E_UTF8 : NS8_E_TRUNCATED;
        return;
    }
    case NS8_CLIENT_POSE:
    case NS8_OBJECT_POSE:
    case NS8_OWNERSHIP_REQUEST:
    case NS8_HELLO: {
        if (n < 2) {
            out->err = NS8_E_TRUNCATED;
            return;
        }
        uint8_t v = p[1];
        if (v >= 2 && v <= 7) {
            out->gen = NS8_GEN_UNSUPPORTED;
            out->version = v;
            out->err = NS8_E_VERSION;
            return;
        }
        if (v != NS8_VERSION) {
            out->err = NS8_E_VERSION;
            return;
        }
        out->gen = NS8_GEN_V8;
        out->err = ns8_parse(p, n, msg);
        bool tf = t == NS8_CLIENT_POSE || t == NS8_OBJECT_POSE;
        if (!out->err && tf != (lane == NS8_LANE_TRANSFORM)) out->err = NS8_E_LANE;
        return;
    }
    case NS8_CLIENT_VAR_CLEAR:
        out->gen = NS8_GEN_V8;
        out->err = ns8_parse(p, n, msg);
        if (!out->err && lane != NS8_LANE_CONTROL) out->err = NS8_E_LANE;
        if (out->err && out->err != NS8_E_LANE) out->gen = NS8_GEN_INVALID;
        return;
    case NS8_RPC:
    case NS8_GLOBAL_VAR_SET:
    case NS8_CLIENT_VAR_SET: {
        int rc8 = ns8_parse(p, n, msg);
        bool v6 = v06_strict(p, n);
        if (rc8 == NS8_OK && v6) {
            out->ambiguous = true;
            out->gen = hint == NS8_GEN_V8 ? NS8_GEN_V8 : NS8_GEN_V06;
        } else if (rc8 == NS8_OK) {
            out->gen = NS8_GEN_V8;
        } else if (v6) {
            out->gen = NS8_GEN_V06;
        } else {
            out->err = rc8;
            return;
        }
        if (lane != NS8_LANE_CONTROL) out->err = NS8_E_LANE;
        return;
    }
    default:
        out->err = ns8_parse(p, n, msg); /* DIRECTION or TYPE */
        return;
    }
}

/* ---- strict validation of server->client messages ---------------------------------------- */

static int check_var(rd *r)
{
    ns8_str s;
    uint16_t w;
    int rc;
    if ((rc = rd_str(r, false, &s)) || (rc = rd_str(r, true, &s))) return rc;
    return rd_u16(r, &w) ? NS8_OK : NS8_E_TRUNCATED;
}

int ns8_check_server_msg(const uint8_t *p, size_t n)
{
    if (n == 0) return NS8_E_EMPTY;
    rd r = {p, n, 1};
    ns8_str s;
    uint16_t count, u;
    uint8_t b;
    uint32_t w;
    const uint8_t *at;
    int rc;
    switch (p[0]) {
    case NS8_RPC: {
        ns8_rpc m;
        return ns8_parse_rpc(p, n, &m);
    }
    case NS8_DEVICE_ID_MAPPING:
        if (!rd_skip(&r, 3, NULL) || !rd_u16(&r, &count)) return NS8_E_TRUNCATED;
        for (unsigned i = 0; i < count; i++) {
            if (!rd_u16(&r, &u) || !rd_u8(&r, &b)) return NS8_E_TRUNCATED;
            if (b > 1) return NS8_E_TYPE;
            if ((rc = rd_str(&r, false, &s))) return rc;
        }
        break;
    case NS8_GLOBAL_VAR_SYNC:
        if (!rd_u16(&r, &count)) return NS8_E_TRUNCATED;
        for (unsigned i = 0; i < count; i++)
            if ((rc = check_var(&r))) return rc;
        break;
    case NS8_CLIENT_VAR_SYNC:
        if (!rd_u16(&r, &count)) return NS8_E_TRUNCATED;
        for (unsigned i = 0; i < count; i++) {
            uint16_t nv;
            if (!rd_u16(&r, &u) || !rd_u16(&r, &nv)) return NS8_E_TRUNCATED;
            for (unsigned j = 0; j < nv; j++)
                if ((rc = check_var(&r))) return rc;
        }
        break;
    case NS8_ROOM_POSE:
        if ((rc = rd_version(&r)) || (rc = rd_str(&r, false, &s))) return rc;
        if (!rd_skip(&r, 8, NULL) || !rd_u16(&r, &count)) return NS8_E_TRUNCATED;
        for (unsigned i = 0; i < count; i++) {
            ns8_body body;
            if (!rd_skip(&r, 10, NULL)) return NS8_E_TRUNCATED;
            if ((rc = ns8_parse_body(p + r.off, n - r.off, &body))) return rc;
            if (body.nvirt_clamped) return NS8_E_TOO_LONG;
            r.off += body.len;
        }
        break;
    case NS8_ROOM_OBJECTS:
        if ((rc = rd_version(&r))) return rc;
        if (!rd_skip(&r, 8, NULL) || !rd_u16(&r, &count)) return NS8_E_TRUNCATED;
        for (unsigned i = 0; i < count; i++)
            if (!rd_skip(&r, 4 + 2 + 2 + 8 + NS8_OBJ_BODY_SIZE, &at)) return NS8_E_TRUNCATED;
        break;
    case NS8_OWNERSHIP_CHANGED:
        if (!rd_u32(&r, &w) || !rd_u16(&r, &u) || !rd_u16(&r, &u)) return NS8_E_TRUNCATED;
        break;
    case NS8_OWNERSHIP_REJECTED:
        if (!rd_u32(&r, &w) || !rd_u16(&r, &u) || !rd_u8(&r, &b)) return NS8_E_TRUNCATED;
        break;
    default: return NS8_E_TYPE;
    }
    return rd_end(&r);
}

/* ---- encoding ---------------------------------------------------------------------------- */

void ns8_put_bytes(ns8_enc *e, const void *p, size_t n)
{
    if (e->err || n == 0) return;
    if (rc_buf_append(e->b, p, n) < 0) e->err = NS8_E_NOMEM;
}

void ns8_put_u8(ns8_enc *e, uint8_t v) { ns8_put_bytes(e, &v, 1); }

void ns8_put_u16(ns8_enc *e, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    ns8_put_bytes(e, b, 2);
}

void ns8_put_u32(ns8_enc *e, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    ns8_put_bytes(e, b, 4);
}

void ns8_put_f64(ns8_enc *e, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(u >> (8 * i));
    ns8_put_bytes(e, b, 8);
}

void ns8_put_str8(ns8_enc *e, const void *p, size_t n)
{
    if (n > NS8_STR8_MAX) {
        if (!e->err) e->err = NS8_E_TOO_LONG;
        return;
    }
    ns8_put_u8(e, (uint8_t)n);
    ns8_put_bytes(e, p, n);
}

void ns8_put_str16(ns8_enc *e, const void *p, size_t n)
{
    if (n > NS8_STR16_MAX) {
        if (!e->err) e->err = NS8_E_TOO_LONG;
        return;
    }
    ns8_put_u16(e, (uint16_t)n);
    ns8_put_bytes(e, p, n);
}

void ns8_patch_u16(ns8_enc *e, size_t off, uint16_t v)
{
    if (e->err || off + 2 > rc_buf_size(e->b)) return;
    uint8_t *p = (uint8_t *)rc_buf_head(e->b) + off;
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

size_t ns8_enc_mapping_begin(ns8_enc *e, uint8_t major, uint8_t minor, uint8_t patch)
{
    ns8_put_u8(e, NS8_DEVICE_ID_MAPPING);
    ns8_put_u8(e, major);
    ns8_put_u8(e, minor);
    ns8_put_u8(e, patch);
    size_t at = rc_buf_size(e->b);
    ns8_put_u16(e, 0);
    return at;
}

void ns8_enc_mapping_entry(ns8_enc *e, uint16_t client_no, bool stealth, const void *id,
                           size_t id_len)
{
    ns8_put_u16(e, client_no);
    ns8_put_u8(e, stealth ? 1 : 0);
    ns8_put_str8(e, id, id_len);
}

size_t ns8_enc_global_sync_begin(ns8_enc *e)
{
    ns8_put_u8(e, NS8_GLOBAL_VAR_SYNC);
    size_t at = rc_buf_size(e->b);
    ns8_put_u16(e, 0);
    return at;
}

void ns8_enc_var(ns8_enc *e, const void *name, size_t name_len, const void *value,
                 size_t value_len, uint16_t last_writer)
{
    ns8_put_str8(e, name, name_len);
    ns8_put_str16(e, value, value_len);
    ns8_put_u16(e, last_writer);
}

size_t ns8_enc_client_sync_begin(ns8_enc *e)
{
    ns8_put_u8(e, NS8_CLIENT_VAR_SYNC);
    size_t at = rc_buf_size(e->b);
    ns8_put_u16(e, 0);
    return at;
}

void ns8_enc_client_sync_target(ns8_enc *e, uint16_t client_no, uint16_t nvars)
{
    ns8_put_u16(e, client_no);
    ns8_put_u16(e, nvars);
}

void ns8_enc_rpc(ns8_enc *e, uint16_t sender, const void *device, size_t device_len,
                 const uint8_t *targets, uint8_t ntargets, const void *name, size_t name_len,
                 const void *args, size_t args_len)
{
    ns8_put_u8(e, NS8_RPC);
    ns8_put_u16(e, sender);
    ns8_put_str8(e, device, device_len);
    ns8_put_u8(e, ntargets);
    ns8_put_bytes(e, targets, 2 * (size_t)ntargets);
    ns8_put_str8(e, name, name_len);
    ns8_put_str16(e, args, args_len);
}

void ns8_enc_ownership_changed(ns8_enc *e, uint32_t object_id, uint16_t new_owner,
                               uint16_t prev_owner)
{
    ns8_put_u8(e, NS8_OWNERSHIP_CHANGED);
    ns8_put_u32(e, object_id);
    ns8_put_u16(e, new_owner);
    ns8_put_u16(e, prev_owner);
}

void ns8_enc_ownership_rejected(ns8_enc *e, uint32_t object_id, uint16_t current_owner,
                                uint8_t reason)
{
    ns8_put_u8(e, NS8_OWNERSHIP_REJECTED);
    ns8_put_u32(e, object_id);
    ns8_put_u16(e, current_owner);
    ns8_put_u8(e, reason);
}

size_t ns8_enc_room_pose_begin(ns8_enc *e, const void *room, size_t room_len,
                               double broadcast_time)
{
    ns8_put_u8(e, NS8_ROOM_POSE);
    ns8_put_u8(e, NS8_VERSION);
    ns8_put_str8(e, room, room_len);
    ns8_put_f64(e, broadcast_time);
    size_t at = rc_buf_size(e->b);
    ns8_put_u16(e, 0);
    return at;
}

void ns8_enc_room_pose_entry(ns8_enc *e, uint16_t client_no, double pose_time,
                             const uint8_t *body, size_t body_len)
{
    ns8_put_u16(e, client_no);
    ns8_put_f64(e, pose_time);
    ns8_put_bytes(e, body, body_len);
}

size_t ns8_enc_room_objects_begin(ns8_enc *e, double broadcast_time)
{
    ns8_put_u8(e, NS8_ROOM_OBJECTS);
    ns8_put_u8(e, NS8_VERSION);
    ns8_put_f64(e, broadcast_time);
    size_t at = rc_buf_size(e->b);
    ns8_put_u16(e, 0);
    return at;
}

void ns8_enc_room_objects_entry(ns8_enc *e, uint32_t object_id, uint16_t owner, uint16_t seq,
                                double pose_time, const uint8_t body[NS8_OBJ_BODY_SIZE])
{
    ns8_put_u32(e, object_id);
    ns8_put_u16(e, owner);
    ns8_put_u16(e, seq);
    ns8_put_f64(e, pose_time);
    ns8_put_bytes(e, body, NS8_OBJ_BODY_SIZE);
}

void ns8_enc_hello(ns8_enc *e, uint8_t flags, const void *device, size_t device_len)
{
    ns8_put_u8(e, NS8_HELLO);
    ns8_put_u8(e, NS8_VERSION);
    ns8_put_u8(e, flags);
    ns8_put_str8(e, device, device_len);
}

void ns8_enc_pose(ns8_enc *e, const void *device, size_t device_len, const uint8_t *body,
                  size_t body_len)
{
    ns8_put_u8(e, NS8_CLIENT_POSE);
    ns8_put_u8(e, NS8_VERSION);
    ns8_put_str8(e, device, device_len);
    ns8_put_bytes(e, body, body_len);
}

void ns8_enc_object_pose(ns8_enc *e, const void *device, size_t device_len, uint32_t object_id,
                         uint16_t seq, const uint8_t body[NS8_OBJ_BODY_SIZE])
{
    ns8_put_u8(e, NS8_OBJECT_POSE);
    ns8_put_u8(e, NS8_VERSION);
    ns8_put_str8(e, device, device_len);
    ns8_put_u32(e, object_id);
    ns8_put_u16(e, seq);
    ns8_put_bytes(e, body, NS8_OBJ_BODY_SIZE);
}

void ns8_enc_own_req(ns8_enc *e, const void *device, size_t device_len, uint8_t op,
                     uint32_t object_id)
{
    ns8_put_u8(e, NS8_OWNERSHIP_REQUEST);
    ns8_put_u8(e, NS8_VERSION);
    ns8_put_str8(e, device, device_len);
    ns8_put_u8(e, op);
    ns8_put_u32(e, object_id);
}

void ns8_enc_global_var_set(ns8_enc *e, uint16_t sender, const void *device, size_t device_len,
                            const void *name, size_t name_len, const void *value,
                            size_t value_len)
{
    ns8_put_u8(e, NS8_GLOBAL_VAR_SET);
    ns8_put_u16(e, sender);
    ns8_put_str8(e, device, device_len);
    ns8_put_str8(e, name, name_len);
    ns8_put_str16(e, value, value_len);
}

void ns8_enc_client_var_set(ns8_enc *e, uint16_t sender, const void *device, size_t device_len,
                            uint16_t target, const void *name, size_t name_len,
                            const void *value, size_t value_len)
{
    ns8_put_u8(e, NS8_CLIENT_VAR_SET);
    ns8_put_u16(e, sender);
    ns8_put_str8(e, device, device_len);
    ns8_put_u16(e, target);
    ns8_put_str8(e, name, name_len);
    ns8_put_str16(e, value, value_len);
}

void ns8_enc_var_clear(ns8_enc *e, uint16_t sender, const void *device, size_t device_len)
{
    ns8_put_u8(e, NS8_CLIENT_VAR_CLEAR);
    ns8_put_u16(e, sender);
    ns8_put_str8(e, device, device_len);
}

/* ---- display decoding -------------------------------------------------------------------- */

void ns8_quat_decode(uint32_t packed, float q[4])
{
    unsigned largest = packed >> 30;
    float sum = 0;
    int shift = 20;
    for (unsigned i = 0; i < 4; i++) {
        if (i == largest) continue;
        unsigned v = (packed >> shift) & 0x3FF;
        shift -= 10;
        q[i] = -0.70710677f + 1.41421354f * (float)v / 1023.0f;
        sum += q[i] * q[i];
    }
    q[largest] = sqrtf(sum < 1 ? 1 - sum : 0);
    float norm = sqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    if (norm > 0)
        for (int i = 0; i < 4; i++) q[i] /= norm;
}

static int32_t get_i24(const uint8_t *a)
{
    uint32_t u = (uint32_t)a[0] | (uint32_t)a[1] << 8 | (uint32_t)a[2] << 16;
    return (int32_t)(u ^ 0x800000u) - 0x800000; /* sign-extend bit 23 */
}

static int16_t get_i16(const uint8_t *a) { return (int16_t)ns8_get_u16(a); }

/* rel reads a 3 x i16 (0.005 m) + Q relative transform. */
static void rel(const uint8_t *a, float pos[3], float rot[4])
{
    for (int i = 0; i < 3; i++) pos[i] = (float)get_i16(a + 2 * i) * 0.005f;
    ns8_quat_decode(get_u32(a + 6), rot);
}

int ns8_decode_body(const uint8_t *p, size_t n, ns8_pose_view *out)
{
    ns8_body b;
    int rc = ns8_parse_body(p, n, &b);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    out->seq = b.seq;
    out->flags = b.flags;
    out->enc = b.enc;
    out->nvirt = b.nvirt;
    size_t off = 4;
    if (b.flags & NS8_F_PHYSICAL) {
        out->has_physical = true;
        for (int i = 0; i < 3; i++) out->physical[i] = (float)get_i16(p + off + 2 * i) * 0.01f;
        out->physical[3] = (float)get_i16(p + off + 6) * 0.1f;
        off += 8;
    }
    if (b.flags & NS8_F_HEAD) {
        out->has_head = true;
        for (int i = 0; i < 3; i++) out->head_pos[i] = (float)get_i24(p + off + 3 * i) * 0.01f;
        ns8_quat_decode(get_u32(p + off + 9), out->head_rot);
        off += 13;
        if (b.flags & NS8_F_RIGHT) {
            out->has_right = true;
            rel(p + off, out->right_pos, out->right_rot);
            off += 10;
        }
        if (b.flags & NS8_F_LEFT) {
            out->has_left = true;
            rel(p + off, out->left_pos, out->left_rot);
        }
    }
    return NS8_OK;
}

void ns8_decode_object(const uint8_t body[NS8_OBJ_BODY_SIZE], ns8_object_view *out)
{
    for (int i = 0; i < 3; i++) out->pos[i] = (float)get_i24(body + 3 * i) * 0.01f;
    ns8_quat_decode(get_u32(body + 9), out->rot);
}
