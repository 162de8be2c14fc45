/* format.c — the durable log's record format and room-directory names; see format.h. */
#include "store/format.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* ---- records ------------------------------------------------------------------------------ */

size_t rc__store_rec_head(unsigned char out[RC__STORE_REC_HEAD_MAX], uint64_t msg_id,
                          uint64_t time_ms, uint8_t opcode, uint64_t key, size_t payload_len)
{
    size_t keylen = key ? RC__STORE_REC_KEY : 0;
    put32(out, (uint32_t)(RC__STORE_REC_FIXED + keylen + payload_len));
    put32(out + 4, 0);
    put64(out + RC__STORE_REC_HEADER, msg_id);
    put64(out + RC__STORE_REC_HEADER + 8, time_ms);
    out[RC__STORE_REC_HEADER + 16] = (uint8_t)((opcode & ~RC__STORE_OP_KEYED) |
                                               (key ? RC__STORE_OP_KEYED : 0));
    if (key) put64(out + RC__STORE_REC_HEAD, key);
    return RC__STORE_REC_HEAD + keylen;
}

void rc__store_rec_seal(unsigned char *rec, size_t size)
{
    put32(rec + 4, (uint32_t)crc32(0, rec + RC__STORE_REC_HEADER,
                                   (uInt)(size - RC__STORE_REC_HEADER)));
}

uint64_t rc__store_rec_msg_id(const unsigned char *rec)
{
    return le64(rec + RC__STORE_REC_HEADER);
}

void rc__store_reader_init(rc__store_reader *r, uint64_t prev_id)
{
    r->off = 0;
    r->prev_id = prev_id;
}

int rc__store_read(rc__store_reader *r, const unsigned char *buf, size_t n, rc__store_rec *rec)
{
    /* Nothing is computed from buf before it is known to hold bytes at r->off: buf may be
     * NULL for an empty file. */
    if (r->off >= n) return RC__STORE_MORE;
    size_t avail = n - r->off;
    const unsigned char *p = buf + r->off;
    if (avail < 4) return RC__STORE_MORE;
    uint32_t len = le32(p);
    if (len < RC__STORE_REC_FIXED || len > RC__STORE_REC_MAX) return RC__STORE_BAD_LENGTH;
    /* Compared as avail - HEADER, never len + HEADER: no sum that could wrap. */
    if (avail < RC__STORE_REC_HEADER || len > avail - RC__STORE_REC_HEADER) return RC__STORE_MORE;
    const unsigned char *body = p + RC__STORE_REC_HEADER;
    if ((uint32_t)crc32(0, body, len) != le32(p + 4)) return RC__STORE_BAD_CRC;
    /* The key flag is checked before the sequence: a record that is not well formed says
     * nothing about its msg_id. A keyed record holding key 0 would encode two ways. */
    uint32_t fixed = RC__STORE_REC_FIXED;
    uint64_t key = 0;
    if (body[16] & RC__STORE_OP_KEYED) {
        if (len < RC__STORE_REC_FIXED + RC__STORE_REC_KEY) return RC__STORE_BAD_KEY;
        key = le64(body + RC__STORE_REC_FIXED);
        if (key == 0) return RC__STORE_BAD_KEY;
        fixed += RC__STORE_REC_KEY;
    }
    uint64_t id = le64(body);
    if (r->prev_id && id != r->prev_id + 1) return RC__STORE_BAD_SEQUENCE;
    rec->msg_id = id;
    rec->time_ms = le64(body + 8);
    rec->opcode = body[16] & (uint8_t)~RC__STORE_OP_KEYED;
    rec->key = key;
    rec->payload = body + fixed;
    rec->len = len - fixed;
    rec->size = RC__STORE_REC_HEADER + (size_t)len;
    r->off += rec->size;
    r->prev_id = id;
    return RC__STORE_RECORD;
}

/* ---- journal entries ---------------------------------------------------------------------- */

size_t rc__store_jhead(unsigned char out[RC__STORE_J_HEAD_MAX], uint8_t kind, const char *name,
                       size_t name_len, const char *epoch, size_t recs_len)
{
    put32(out, (uint32_t)(RC__STORE_J_FIXED + name_len + recs_len));
    put32(out + 4, 0);
    out[RC__STORE_J_HEADER] = kind;
    out[RC__STORE_J_HEADER + 1] = (uint8_t)name_len;
    memcpy(out + RC__STORE_J_HEADER + 2, epoch, RC__STORE_J_EPOCH);
    memcpy(out + RC__STORE_J_HEADER + RC__STORE_J_FIXED, name, name_len);
    return RC__STORE_J_HEADER + RC__STORE_J_FIXED + name_len;
}

void rc__store_jseal(unsigned char *entry, size_t size)
{
    put32(entry + 4, (uint32_t)crc32(0, entry + RC__STORE_J_HEADER,
                                     (uInt)(size - RC__STORE_J_HEADER)));
}

int rc__store_jread(rc__store_reader *r, const unsigned char *buf, size_t n, rc__store_jentry *e)
{
    if (r->off >= n) return RC__STORE_MORE;
    size_t avail = n - r->off;
    const unsigned char *p = buf + r->off;
    if (avail < 4) return RC__STORE_MORE;
    uint32_t len = le32(p);
    if (len < RC__STORE_J_FIXED + 1 || len > RC__STORE_J_MAX) return RC__STORE_BAD_LENGTH;
    /* the name length is known as soon as its byte is in: a name past the entry's end is
     * corruption, not a promise of more */
    if (avail >= RC__STORE_J_HEADER + 2) {
        size_t nl = p[RC__STORE_J_HEADER + 1];
        if (nl == 0 || RC__STORE_J_FIXED + nl > len) return RC__STORE_BAD_LENGTH;
    }
    if (avail < RC__STORE_J_HEADER || len > avail - RC__STORE_J_HEADER) return RC__STORE_MORE;
    const unsigned char *body = p + RC__STORE_J_HEADER;
    if ((uint32_t)crc32(0, body, len) != le32(p + 4)) return RC__STORE_BAD_CRC;
    size_t nl = body[1];
    size_t recs = len - RC__STORE_J_FIXED - nl;
    if (body[0] != RC__STORE_J_ROOM && body[0] != RC__STORE_J_DELETE) return RC__STORE_BAD_KIND;
    if (body[0] == RC__STORE_J_DELETE && recs) return RC__STORE_BAD_KIND;
    e->kind = body[0];
    e->name_len = nl;
    e->epoch = (const char *)body + 2;
    e->name = (const char *)body + RC__STORE_J_FIXED;
    e->recs = body + RC__STORE_J_FIXED + nl;
    e->recs_len = recs;
    e->size = RC__STORE_J_HEADER + (size_t)len;
    r->off += e->size;
    return RC__STORE_RECORD;
}

/* ---- room directory names ----------------------------------------------------------------- */

static const char hx[] = "0123456789abcdef";

void rc__store_name_encode(const char *name, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hx[(unsigned char)name[i] >> 4];
        out[2 * i + 1] = hx[(unsigned char)name[i] & 15];
    }
    out[2 * len] = '\0';
}

long rc__store_name_decode(const char *hex, char *out, size_t cap)
{
    size_t n = strlen(hex);
    if (n == 0 || n % 2 || n / 2 > cap) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + (size_t)k];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0) return -1;
            v = v * 16 + d;
        }
        out[i] = (char)v;
    }
    return (long)(n / 2);
}

void rc__store_dirname(const char *name, size_t len, char out[RC__STORE_DIRNAME_SIZE])
{
    if (len <= RC__STORE_NAME_HEX_MAX) {
        rc__store_name_encode(name, len, out);
        return;
    }
    /* SHA-256, not a fast 64-bit hash: two names in one directory would mix two rooms'
     * histories, so a collision must be out of reach even of someone choosing names. */
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(name, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) abort();
    memcpy(out, RC__STORE_HASHED_PREFIX, sizeof(RC__STORE_HASHED_PREFIX) - 1);
    rc__store_name_encode((const char *)md, 32, out + sizeof(RC__STORE_HASHED_PREFIX) - 1);
}

bool rc__store_dirname_hashed(const char *dirname)
{
    size_t pl = sizeof(RC__STORE_HASHED_PREFIX) - 1;
    if (strncmp(dirname, RC__STORE_HASHED_PREFIX, pl) != 0) return false;
    size_t i = pl;
    for (; dirname[i]; i++)
        if (!((dirname[i] >= '0' && dirname[i] <= '9') || (dirname[i] >= 'a' && dirname[i] <= 'f')))
            return false;
    return i == RC__STORE_HASHED_LEN;
}
