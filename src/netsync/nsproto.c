/* nsproto.c — the NetSync binary codec; see nsproto.h for the rules it follows. */
#include "netsync/nsproto.h"

#include <string.h>

#include "proto/utf8.h"

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
    *v = ns_get_u16(r->p + r->off);
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

double ns_get_f64(const uint8_t *p)
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
    *v = ns_get_f64(r->p + r->off);
    r->off += 8;
    return true;
}

/* rd_str reads a str8 (wide false) or str16. `last` reproduces the reference's slicing: the
 * final string of a message may announce more bytes than remain and gets the bytes present;
 * `*cut` says so. Returns NS_OK, NS_E_TRUNCATED or NS_E_UTF8. */
static int rd_str(rd *r, bool wide, bool last, ns_str *s, bool *cut)
{
    size_t len;
    if (wide) {
        uint16_t l;
        if (!rd_u16(r, &l)) return NS_E_TRUNCATED;
        len = l;
    } else {
        uint8_t l;
        if (!rd_u8(r, &l)) return NS_E_TRUNCATED;
        len = l;
    }
    size_t avail = r->n - r->off;
    if (cut) *cut = false;
    if (len > avail) {
        if (!last) return NS_E_TRUNCATED;
        len = avail;
        if (cut) *cut = true;
    }
    s->p = r->p + r->off;
    s->len = len;
    r->off += len;
    return rc_utf8_valid(s->p, s->len) ? NS_OK : NS_E_UTF8;
}

int ns_classify(const uint8_t *p, size_t n)
{
    if (n == 0) return NS_E_EMPTY;
    switch (p[0]) {
    case NS_CLIENT_TRANSFORM:
    case NS_RPC:
    case NS_GLOBAL_VAR_SET:
    case NS_CLIENT_VAR_SET: return p[0];
    case NS_ROOM_TRANSFORM:
    case NS_DEVICE_ID_MAPPING:
    case NS_GLOBAL_VAR_SYNC:
    case NS_CLIENT_VAR_SYNC: return NS_E_DIRECTION;
    default: return NS_E_TYPE;
    }
}

static inline bool f32_is_nan(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    return (u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0;
}

int ns_parse_client_transform(const uint8_t *p, size_t n, ns_client_transform *out)
{
    rd r = {p, n, 1};
    int rc = rd_str(&r, false, false, &out->device_id, NULL);
    if (rc) return rc;
    if (!rd_skip(&r, NS_BODY_SIZE, &out->body)) return NS_E_TRUNCATED;
    uint8_t nv;
    if (!rd_u8(&r, &nv)) return NS_E_TRUNCATED;
    out->clamped = nv > NS_MAX_VIRTUAL;
    out->nvirt = out->clamped ? NS_MAX_VIRTUAL : nv;
    if (!rd_skip(&r, (size_t)out->nvirt * NS_TRANSFORM_SIZE, &out->virt)) return NS_E_TRUNCATED;
    /* Stealth is the reference's "all 24 floats NaN and no virtuals" (B:24-70). Checked on the
     * clamped count, as the reference does after its own clamp. */
    out->stealth = false;
    if (out->nvirt == 0) {
        out->stealth = true;
        for (int i = 0; i < NS_BODY_SIZE; i += 4) {
            if (!f32_is_nan(out->body + i)) {
                out->stealth = false;
                break;
            }
        }
    }
    return NS_OK; /* trailing bytes are ignored, like the reference */
}

int ns_parse_rpc(const uint8_t *p, size_t n, ns_rpc *out)
{
    rd r = {p, n, 1};
    if (!rd_u16(&r, &out->sender)) return NS_E_TRUNCATED;
    int rc = rd_str(&r, false, false, &out->name, NULL);
    if (rc) return rc;
    return rd_str(&r, true, true, &out->args, &out->args_cut);
}

int ns_parse_global_var_set(const uint8_t *p, size_t n, ns_var_set *out)
{
    rd r = {p, n, 1};
    out->target = 0;
    if (!rd_u16(&r, &out->sender)) return NS_E_TRUNCATED;
    int rc = rd_str(&r, false, false, &out->name, NULL);
    if (rc) return rc;
    if ((rc = rd_str(&r, true, false, &out->value, NULL))) return rc;
    return rd_f64(&r, &out->timestamp) ? NS_OK : NS_E_TRUNCATED;
}

int ns_parse_client_var_set(const uint8_t *p, size_t n, ns_var_set *out)
{
    rd r = {p, n, 1};
    if (!rd_u16(&r, &out->sender) || !rd_u16(&r, &out->target)) return NS_E_TRUNCATED;
    int rc = rd_str(&r, false, false, &out->name, NULL);
    if (rc) return rc;
    if ((rc = rd_str(&r, true, false, &out->value, NULL))) return rc;
    return rd_f64(&r, &out->timestamp) ? NS_OK : NS_E_TRUNCATED;
}

/* ---- strict validation of server->client messages ---------------------------------------- */

static int check_var(rd *r, bool with_writer)
{
    ns_str s;
    double ts;
    uint16_t w;
    int rc;
    if ((rc = rd_str(r, false, false, &s, NULL)) || (rc = rd_str(r, true, false, &s, NULL)))
        return rc;
    if (!rd_f64(r, &ts)) return NS_E_TRUNCATED;
    if (with_writer && !rd_u16(r, &w)) return NS_E_TRUNCATED;
    return NS_OK;
}

int ns_check_server_msg(const uint8_t *p, size_t n)
{
    if (n == 0) return NS_E_EMPTY;
    rd r = {p, n, 1};
    ns_str s;
    uint16_t count, u;
    uint8_t b;
    const uint8_t *at;
    int rc;
    switch (p[0]) {
    case NS_ROOM_TRANSFORM:
        if ((rc = rd_str(&r, false, false, &s, NULL))) return rc;
        if (!rd_u16(&r, &count)) return NS_E_TRUNCATED;
        if (count == 0) return NS_E_TRUNCATED;
        for (unsigned i = 0; i < count; i++) {
            if (!rd_u16(&r, &u) || !rd_skip(&r, NS_BODY_SIZE, &at) || !rd_u8(&r, &b))
                return NS_E_TRUNCATED;
            if (b > NS_MAX_VIRTUAL) return NS_E_TOO_LONG;
            if (!rd_skip(&r, (size_t)b * NS_TRANSFORM_SIZE, &at)) return NS_E_TRUNCATED;
        }
        break;
    case NS_RPC:
        if (!rd_u16(&r, &u)) return NS_E_TRUNCATED;
        if ((rc = rd_str(&r, false, false, &s, NULL)) || (rc = rd_str(&r, true, false, &s, NULL)))
            return rc;
        break;
    case NS_DEVICE_ID_MAPPING:
        if (!rd_u16(&r, &count)) return NS_E_TRUNCATED;
        for (unsigned i = 0; i < count; i++) {
            if (!rd_u16(&r, &u) || !rd_u8(&r, &b)) return NS_E_TRUNCATED;
            if (b > 1) return NS_E_TYPE;
            if ((rc = rd_str(&r, false, false, &s, NULL))) return rc;
        }
        break;
    case NS_GLOBAL_VAR_SYNC:
        if (!rd_u16(&r, &count)) return NS_E_TRUNCATED;
        for (unsigned i = 0; i < count; i++)
            if ((rc = check_var(&r, true))) return rc;
        break;
    case NS_CLIENT_VAR_SYNC:
        if (!rd_u16(&r, &count)) return NS_E_TRUNCATED;
        for (unsigned i = 0; i < count; i++) {
            uint16_t nv;
            if (!rd_u16(&r, &u) || !rd_u16(&r, &nv)) return NS_E_TRUNCATED;
            for (unsigned j = 0; j < nv; j++)
                if ((rc = check_var(&r, true))) return rc;
        }
        break;
    default: return NS_E_TYPE;
    }
    return r.off == n ? NS_OK : NS_E_TRUNCATED;
}

size_t ns_utf8_prefix(const uint8_t *s, size_t n, size_t max_cp)
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

void ns_put_bytes(ns_enc *e, const void *p, size_t n)
{
    if (e->err) return;
    if (rc_buf_append(e->b, p, n) < 0) e->err = NS_E_NOMEM;
}

void ns_put_u8(ns_enc *e, uint8_t v) { ns_put_bytes(e, &v, 1); }

void ns_put_u16(ns_enc *e, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    ns_put_bytes(e, b, 2);
}

void ns_put_f64(ns_enc *e, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(u >> (8 * i));
    ns_put_bytes(e, b, 8);
}

void ns_put_str8(ns_enc *e, const void *p, size_t n)
{
    if (n > NS_STR8_MAX) {
        if (!e->err) e->err = NS_E_TOO_LONG;
        return;
    }
    ns_put_u8(e, (uint8_t)n);
    ns_put_bytes(e, p, n);
}

void ns_put_str16(ns_enc *e, const void *p, size_t n)
{
    if (n > NS_STR16_MAX) {
        if (!e->err) e->err = NS_E_TOO_LONG;
        return;
    }
    ns_put_u16(e, (uint16_t)n);
    ns_put_bytes(e, p, n);
}

void ns_patch_u16(ns_enc *e, size_t off, uint16_t v)
{
    if (e->err || off + 2 > rc_buf_size(e->b)) return;
    uint8_t *p = (uint8_t *)rc_buf_head(e->b) + off;
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

size_t ns_enc_room_transform_begin(ns_enc *e, const void *room, size_t room_len)
{
    ns_put_u8(e, NS_ROOM_TRANSFORM);
    ns_put_str8(e, room, room_len);
    size_t at = rc_buf_size(e->b);
    ns_put_u16(e, 0);
    return at;
}

void ns_enc_entry(ns_enc *e, uint16_t client_no, const uint8_t body[NS_BODY_SIZE],
                  uint8_t nvirt, const uint8_t *virt)
{
    if (nvirt > NS_MAX_VIRTUAL) nvirt = NS_MAX_VIRTUAL;
    ns_put_u16(e, client_no);
    ns_put_bytes(e, body, NS_BODY_SIZE);
    ns_put_u8(e, nvirt);
    ns_put_bytes(e, virt, (size_t)nvirt * NS_TRANSFORM_SIZE);
}

void ns_enc_rpc(ns_enc *e, uint16_t sender, const void *name, size_t name_len, const void *args,
                size_t args_len)
{
    ns_put_u8(e, NS_RPC);
    ns_put_u16(e, sender);
    ns_put_str8(e, name, name_len);
    ns_put_str16(e, args, args_len);
}

void ns_enc_mapping_entry(ns_enc *e, uint16_t client_no, bool stealth, const void *id,
                          size_t id_len)
{
    ns_put_u16(e, client_no);
    ns_put_u8(e, stealth ? 1 : 0);
    ns_put_str8(e, id, id_len);
}

void ns_enc_var(ns_enc *e, const void *name, size_t name_len, const void *value,
                size_t value_len, double ts, uint16_t last_writer)
{
    ns_put_str8(e, name, name_len);
    ns_put_str16(e, value, value_len);
    ns_put_f64(e, ts);
    ns_put_u16(e, last_writer);
}

void ns_enc_client_transform(ns_enc *e, const void *device, size_t device_len,
                             const uint8_t body[NS_BODY_SIZE], uint8_t nvirt,
                             const uint8_t *virt)
{
    ns_put_u8(e, NS_CLIENT_TRANSFORM);
    ns_put_str8(e, device, device_len);
    ns_put_bytes(e, body, NS_BODY_SIZE);
    ns_put_u8(e, nvirt);
    ns_put_bytes(e, virt, (size_t)(nvirt > NS_MAX_VIRTUAL ? NS_MAX_VIRTUAL : nvirt) *
                              NS_TRANSFORM_SIZE);
}

void ns_enc_global_var_set(ns_enc *e, uint16_t sender, const void *name, size_t name_len,
                           const void *value, size_t value_len, double ts)
{
    ns_put_u8(e, NS_GLOBAL_VAR_SET);
    ns_put_u16(e, sender);
    ns_put_str8(e, name, name_len);
    ns_put_str16(e, value, value_len);
    ns_put_f64(e, ts);
}

void ns_enc_client_var_set(ns_enc *e, uint16_t sender, uint16_t target, const void *name,
                           size_t name_len, const void *value, size_t value_len, double ts)
{
    ns_put_u8(e, NS_CLIENT_VAR_SET);
    ns_put_u16(e, sender);
    ns_put_u16(e, target);
    ns_put_str8(e, name, name_len);
    ns_put_str16(e, value, value_len);
    ns_put_f64(e, ts);
}
