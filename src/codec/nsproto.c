/* nsproto.c — the NetSync binary codec; see nsproto.h for the rules it follows. */
#include "codec/nsproto.h"

#include <string.h>

#include "codec/utf8.h"

/* A bounds-checked cursor. Every read checks the remaining length first; `off` never passes
 * `n`, so a hostile length can only make a read fail, never read past the buffer. */
typedef struct rd {
    const uint8_t *p;        /* message */
    size_t n;                /* its length */
    size_t off;              /* next unread byte */
} rd;

static bool rd_u8(rd *r, uint8_t *v)
{
    if (r->n - r->off < 1) return false;
    *v = r->p[r->off++];
    return true;
}

static bool rd_u16(rd *r, uint16_t *v)
{
    if (r->n - r->off < 2) return false;
    *v = nsy_get_u16(r->p + r->off);
    r->off += 2;
    return true;
}

static bool rd_skip(rd *r, size_t len, const uint8_t **at)
{
    if (r->n - r->off < len) return false;
    *at = r->p + r->off;
    r->off += len;
    return true;
}

double nsy_get_f64(const uint8_t *p)
{
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--) u = u << 8 | p[i];
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static bool rd_f64(rd *r, double *v)
{
    if (r->n - r->off < 8) return false;
    *v = nsy_get_f64(r->p + r->off);
    r->off += 8;
    return true;
}

/* rd_str reads a str8 (wide false) or str16. `last` reproduces the reference's slicing: the
 * final string of a message may announce more bytes than remain and gets the bytes present;
 * `*cut` says so. Returns NSY_OK, NSY_E_TRUNCATED or NSY_E_UTF8. */
static int rd_str(rd *r, bool wide, bool last, nsy_str *s, bool *cut)
{
    size_t len;
    if (wide) {
        uint16_t l;
        if (!rd_u16(r, &l)) return NSY_E_TRUNCATED;
        len = l;
    } else {
        uint8_t l;
        if (!rd_u8(r, &l)) return NSY_E_TRUNCATED;
        len = l;
    }
    size_t avail = r->n - r->off;
    if (cut) *cut = false;
    if (len > avail) {
        if (!last) return NSY_E_TRUNCATED;
        len = avail;
        if (cut) *cut = true;
    }
    s->p = r->p + r->off;
    s->len = len;
    r->off += len;
    return rc_utf8_valid(s->p, s->len) ? NSY_OK : NSY_E_UTF8;
}

int nsy_classify(const uint8_t *p, size_t n)
{
    if (n == 0) return NSY_E_EMPTY;
    switch (p[0]) {
    case NSY_CLIENT_TRANSFORM:
    case NSY_RPC:
    case NSY_GLOBAL_VAR_SET:
    case NSY_CLIENT_VAR_SET: return p[0];
    case NSY_ROOM_TRANSFORM:
    case NSY_DEVICE_ID_MAPPING:
    case NSY_GLOBAL_VAR_SYNC:
    case NSY_CLIENT_VAR_SYNC: return NSY_E_DIRECTION;
    default: return NSY_E_TYPE;
    }
}

static inline bool f32_is_nan(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    return (u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0;
}

int nsy_parse_client_transform(const uint8_t *p, size_t n, nsy_client_transform *out)
{
    rd r = {p, n, 1};
    int rc = rd_str(&r, false, false, &out->device_id, NULL);
    if (rc) return rc;
    if (!rd_skip(&r, NSY_BODY_SIZE, &out->body)) return NSY_E_TRUNCATED;
    uint8_t nv;
    if (!rd_u8(&r, &nv)) return NSY_E_TRUNCATED;
    out->clamped = nv > NSY_MAX_VIRTUAL;
    out->nvirt = out->clamped ? NSY_MAX_VIRTUAL : nv;
    if (!rd_skip(&r, (size_t)out->nvirt * NSY_TRANSFORM_SIZE, &out->virt)) return NSY_E_TRUNCATED;
    /* Stealth is the reference's "all 24 floats NaN and no virtuals" (B:24-70). Checked on the
     * clamped count, as the reference does after its own clamp. */
    out->stealth = false;
    if (out->nvirt == 0) {
        out->stealth = true;
        for (int i = 0; i < NSY_BODY_SIZE; i += 4) {
            if (!f32_is_nan(out->body + i)) {
                out->stealth = false;
                break;
            }
        }
    }
    return NSY_OK; /* trailing bytes are ignored, like the reference */
}

int nsy_parse_rpc(const uint8_t *p, size_t n, nsy_rpc *out)
{
    rd r = {p, n, 1};
    if (!rd_u16(&r, &out->sender)) return NSY_E_TRUNCATED;
    int rc = rd_str(&r, false, false, &out->name, NULL);
    if (rc) return rc;
    return rd_str(&r, true, true, &out->args, &out->args_cut);
}

int nsy_parse_global_var_set(const uint8_t *p, size_t n, nsy_var_set *out)
{
    rd r = {p, n, 1};
    out->target = 0;
    if (!rd_u16(&r, &out->sender)) return NSY_E_TRUNCATED;
    int rc = rd_str(&r, false, false, &out->name, NULL);
    if (rc) return rc;
    if ((rc = rd_str(&r, true, false, &out->value, NULL))) return rc;
    return rd_f64(&r, &out->timestamp) ? NSY_OK : NSY_E_TRUNCATED;
}

int nsy_parse_client_var_set(const uint8_t *p, size_t n, nsy_var_set *out)
{
    rd r = {p, n, 1};
    if (!rd_u16(&r, &out->sender) || !rd_u16(&r, &out->target)) return NSY_E_TRUNCATED;
    int rc = rd_str(&r, false, false, &out->name, NULL);
    if (rc) return rc;
    if ((rc = rd_str(&r, true, false, &out->value, NULL))) return rc;
    return rd_f64(&r, &out->timestamp) ? NSY_OK : NSY_E_TRUNCATED;
}

/* ---- strict validation of server->client messages ---------------------------------------- */

static int check_var(rd *r, bool with_writer)
{
    nsy_str s;
    double ts;
    uint16_t w;
    int rc;
    if ((rc = rd_str(r, false, false, &s, NULL)) || (rc = rd_str(r, true, false, &s, NULL)))
        return rc;
    if (!rd_f64(r, &ts)) return NSY_E_TRUNCATED;
    if (with_writer && !rd_u16(r, &w)) return NSY_E_TRUNCATED;
    return NSY_OK;
}

int nsy_check_server_msg(const uint8_t *p, size_t n)
{
    if (n == 0) return NSY_E_EMPTY;
    rd r = {p, n, 1};
    nsy_str s;
    uint16_t count, u;
    uint8_t b;
    const uint8_t *at;
    int rc;
    switch (p[0]) {
    case NSY_ROOM_TRANSFORM:
        if ((rc = rd_str(&r, false, false, &s, NULL))) return rc;
        if (!rd_u16(&r, &count)) return NSY_E_TRUNCATED;
        if (count == 0) return NSY_E_TRUNCATED;
        for (unsigned i = 0; i < count; i++) {
            if (!rd_u16(&r, &u) || !rd_skip(&r, NSY_BODY_SIZE, &at) || !rd_u8(&r, &b))
                return NSY_E_TRUNCATED;
            if (b > NSY_MAX_VIRTUAL) return NSY_E_TOO_LONG;
            if (!rd_skip(&r, (size_t)b * NSY_TRANSFORM_SIZE, &at)) return NSY_E_TRUNCATED;
        }
        break;
    case NSY_RPC:
        if (!rd_u16(&r, &u)) return NSY_E_TRUNCATED;
        if ((rc = rd_str(&r, false, false, &s, NULL)) || (rc = rd_str(&r, true, false, &s, NULL)))
            return rc;
        break;
    case NSY_DEVICE_ID_MAPPING:
        if (!rd_u16(&r, &count)) return NSY_E_TRUNCATED;
        for (unsigned i = 0; i < count; i++) {
            if (!rd_u16(&r, &u) || !rd_u8(&r, &b)) return NSY_E_TRUNCATED;
            if (b > 1) return NSY_E_TYPE;
            if ((rc = rd_str(&r, false, false, &s, NULL))) return rc;
        }
        break;
    case NSY_GLOBAL_VAR_SYNC:
        if (!rd_u16(&r, &count)) return NSY_E_TRUNCATED;
        for (unsigned i = 0; i < count; i++)
            if ((rc = check_var(&r, true))) return rc;
        break;
    case NSY_CLIENT_VAR_SYNC:
        if (!rd_u16(&r, &count)) return NSY_E_TRUNCATED;
        for (unsigned i = 0; i < count; i++) {
            uint16_t nv;
            if (!rd_u16(&r, &u) || !rd_u16(&r, &nv)) return NSY_E_TRUNCATED;
            for (unsigned j = 0; j < nv; j++)
                if ((rc = check_var(&r, true))) return rc;
        }
        break;
    default: return NSY_E_TYPE;
    }
    return r.off == n ? NSY_OK : NSY_E_TRUNCATED;
}

size_t nsy_utf8_prefix(const uint8_t *s, size_t n, size_t max_cp)
{
    size_t i = 0, cp = 0;
    /* The input is valid UTF-8, so a code point starts at every byte that is not 10xxxxxx. */
    while (i < n) {
        if ((s[i] & 0xC0) != 0x80) {
            if (cp == max_cp) return i;
            cp++;
        }
        i++;
    }
    return n;
}

/* ---- encoding ---------------------------------------------------------------------------- */

void nsy_put_bytes(nsy_enc *e, const void *p, size_t n)
{
    if (e->err) return;
    if (rc_buf_append(e->b, p, n) < 0) e->err = NSY_E_NOMEM;
}

void nsy_put_u8(nsy_enc *e, uint8_t v) { nsy_put_bytes(e, &v, 1); }

void nsy_put_u16(nsy_enc *e, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    nsy_put_bytes(e, b, 2);
}

void nsy_put_f64(nsy_enc *e, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(u >> (8 * i));
    nsy_put_bytes(e, b, 8);
}

void nsy_put_str8(nsy_enc *e, const void *p, size_t n)
{
    if (n > NSY_STR8_MAX) {
        if (!e->err) e->err = NSY_E_TOO_LONG;
        return;
    }
    nsy_put_u8(e, (uint8_t)n);
    nsy_put_bytes(e, p, n);
}

void nsy_put_str16(nsy_enc *e, const void *p, size_t n)
{
    if (n > NSY_STR16_MAX) {
        if (!e->err) e->err = NSY_E_TOO_LONG;
        return;
    }
    nsy_put_u16(e, (uint16_t)n);
    nsy_put_bytes(e, p, n);
}

void nsy_patch_u16(nsy_enc *e, size_t off, uint16_t v)
{
    if (e->err || off + 2 > rc_buf_size(e->b)) return;
    uint8_t *p = (uint8_t *)rc_buf_head(e->b) + off;
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

size_t nsy_enc_room_transform_begin(nsy_enc *e, const void *room, size_t room_len)
{
    nsy_put_u8(e, NSY_ROOM_TRANSFORM);
    nsy_put_str8(e, room, room_len);
    size_t at = rc_buf_size(e->b);
    nsy_put_u16(e, 0);
    return at;
}

void nsy_enc_entry(nsy_enc *e, uint16_t client_no, const uint8_t body[NSY_BODY_SIZE],
                  uint8_t nvirt, const uint8_t *virt)
{
    if (nvirt > NSY_MAX_VIRTUAL) nvirt = NSY_MAX_VIRTUAL;
    nsy_put_u16(e, client_no);
    nsy_put_bytes(e, body, NSY_BODY_SIZE);
    nsy_put_u8(e, nvirt);
    nsy_put_bytes(e, virt, (size_t)nvirt * NSY_TRANSFORM_SIZE);
}

void nsy_enc_rpc(nsy_enc *e, uint16_t sender, const void *name, size_t name_len, const void *args,
                size_t args_len)
{
    nsy_put_u8(e, NSY_RPC);
    nsy_put_u16(e, sender);
    nsy_put_str8(e, name, name_len);
    nsy_put_str16(e, args, args_len);
}

void nsy_enc_mapping_entry(nsy_enc *e, uint16_t client_no, bool stealth, const void *id,
                          size_t id_len)
{
    nsy_put_u16(e, client_no);
    nsy_put_u8(e, stealth ? 1 : 0);
    nsy_put_str8(e, id, id_len);
}

void nsy_enc_var(nsy_enc *e, const void *name, size_t name_len, const void *value,
                size_t value_len, double ts, uint16_t last_writer)
{
    nsy_put_str8(e, name, name_len);
    nsy_put_str16(e, value, value_len);
    nsy_put_f64(e, ts);
    nsy_put_u16(e, last_writer);
}

void nsy_enc_client_transform(nsy_enc *e, const void *device, size_t device_len,
                             const uint8_t body[NSY_BODY_SIZE], uint8_t nvirt,
                             const uint8_t *virt)
{
    nsy_put_u8(e, NSY_CLIENT_TRANSFORM);
    nsy_put_str8(e, device, device_len);
    nsy_put_bytes(e, body, NSY_BODY_SIZE);
    nsy_put_u8(e, nvirt);
    nsy_put_bytes(e, virt, (size_t)(nvirt > NSY_MAX_VIRTUAL ? NSY_MAX_VIRTUAL : nvirt) *
                              NSY_TRANSFORM_SIZE);
}

void nsy_enc_global_var_set(nsy_enc *e, uint16_t sender, const void *name, size_t name_len,
                           const void *value, size_t value_len, double ts)
{
    nsy_put_u8(e, NSY_GLOBAL_VAR_SET);
    nsy_put_u16(e, sender);
    nsy_put_str8(e, name, name_len);
    nsy_put_str16(e, value, value_len);
    nsy_put_f64(e, ts);
}

void nsy_enc_client_var_set(nsy_enc *e, uint16_t sender, uint16_t target, const void *name,
                           size_t name_len, const void *value, size_t value_len, double ts)
{
    nsy_put_u8(e, NSY_CLIENT_VAR_SET);
    nsy_put_u16(e, sender);
    nsy_put_u16(e, target);
    nsy_put_str8(e, name, name_len);
    nsy_put_str16(e, value, value_len);
    nsy_put_f64(e, ts);
}
