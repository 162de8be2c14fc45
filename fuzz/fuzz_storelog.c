/* fuzz_storelog.c — libFuzzer target for src/store/format.c, the durable log's on-disk reader.
 *
 * The input is a segment file, read twice: as it is, and with the checksum of every record
 * its length fields delimit recomputed (a fuzzer cannot guess CRC-32s, so without this pass
 * it would hardly ever get past the first record to the sequence rule, long runs of records
 * and the tails after them). Checked on every file:
 *   - read from an exact-size copy, the reader never reads outside it (ASan), and each
 *     record it returns lies inside the file, starts where the previous one ended, has the
 *     length, CRC-32 (zlib's, recomputed here), fields, idempotency key (present exactly when
 *     the opcode byte's high bit is set, never 0) and msg_id sequence that the bytes say;
 *   - it stops with "need more" or a bad-record result that the bytes justify (checked here
 *     independently), and asking again gives the same answer without moving;
 *   - the valid prefix it reports, copied alone, re-reads to the same records and ends clean;
 *   - re-encoding the records (rc__store_rec_head with their keys + payload +
 *     rc__store_rec_seal) reproduces the valid prefix byte for byte;
 *   - fed to one reader a byte at a time, and in exact-size pieces, the file reads the same;
 *   - started after the first record's predecessor id, it reads the same.
 * The input is also a room-directory name: decoding it either fails for a reason checked
 * here, or gives a name that encodes back to exactly the input; and it is a room name (its
 * first 255 bytes at most), whose directory name is checked: short, a plain file name, the hex
 * of the name up to 127 bytes (decoding back to it), "sha256-" and 64 hex digits beyond.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "store/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    if (!q) abort();
    if (n) memcpy(q, p, n);
    return q;
}

/* What one full read of a file gave. */
struct outcome {
    size_t *ends;            /* offset after each record */
    uint64_t *ids;           /* msg_id of each record */
    size_t count;            /* records */
    size_t off;              /* valid prefix */
    int result;              /* the call that stopped */
};

/* Reads buf[0..n) (an exact-size allocation) from prev_id, checking each record against the
 * bytes; fills *o (arrays sized for the most records n bytes can hold). */
static void read_checked(const uint8_t *buf, size_t n, uint64_t prev_id, struct outcome *o)
{
    size_t max = n / RC__STORE_REC_HEAD + 1;
    o->ends = malloc(max * sizeof(*o->ends));
    o->ids = malloc(max * sizeof(*o->ids));
    if (!o->ends || !o->ids) abort();
    o->count = 0;
    rc__store_reader r;
    rc__store_reader_init(&r, prev_id);
    rc__store_rec rec;
    uint64_t prev = prev_id;
    for (;;) {
        size_t start = r.off;
        int res = rc__store_read(&r, buf, n, &rec);
        if (res != RC__STORE_RECORD) {
            o->result = res;
            break;
        }
        const uint8_t *p = buf + start;
        bool keyed = p[24] & RC__STORE_OP_KEYED;
        size_t head = keyed ? RC__STORE_REC_HEAD_MAX : RC__STORE_REC_HEAD;
        if (o->count >= max) abort();
        if (r.off <= start || r.off > n || rec.size != r.off - start) abort();
        if (rec.size != head + rec.len) abort();
        if (rec.payload != p + head) abort();
        if (get32(p) != head - RC__STORE_REC_HEADER + rec.len || get32(p) > RC__STORE_REC_MAX)
            abort();
        if ((uint32_t)crc32(0, p + RC__STORE_REC_HEADER, (uInt)(rec.size - RC__STORE_REC_HEADER)) !=
            get32(p + 4))
            abort();
        if (rec.msg_id != get64(p + 8) || rec.time_ms != get64(p + 16) ||
            rec.opcode != (p[24] & 0x7f))
            abort();
        if (keyed ? rec.key == 0 || rec.key != get64(p + RC__STORE_REC_HEAD) : rec.key != 0)
            abort();
        if (prev && rec.msg_id != prev + 1) abort();
        if (r.prev_id != rec.msg_id) abort();
        prev = rec.msg_id;
        o->ids[o->count] = rec.msg_id;
        o->ends[o->count++] = r.off;
    }
    o->off = r.off;
    if (o->off != (o->count ? o->ends[o->count - 1] : 0)) abort();

    /* Why it stopped, judged from the bytes. */
    size_t avail = n - o->off;
    const uint8_t *p = buf + o->off;
    uint32_t len = avail >= 4 ? get32(p) : 0;
    bool len_ok = len >= RC__STORE_REC_FIXED && len <= RC__STORE_REC_MAX;
    bool whole = avail >= 4 && len_ok && (uint64_t)len + RC__STORE_REC_HEADER <= avail;
    bool crc_ok = whole && (uint32_t)crc32(0, p + RC__STORE_REC_HEADER, len) == get32(p + 4);
    bool key_ok = whole && (!(p[24] & RC__STORE_OP_KEYED) ||
                            (len >= RC__STORE_REC_FIXED + RC__STORE_REC_KEY &&
                             get64(p + RC__STORE_REC_HEAD) != 0));
    switch (o->result) {
    case RC__STORE_MORE:
        if (avail >= 4 && (!len_ok || whole)) abort();
        break;
    case RC__STORE_BAD_LENGTH:
        if (avail < 4 || len_ok) abort();
        break;
    case RC__STORE_BAD_CRC:
        if (!whole || crc_ok) abort();
        break;
    case RC__STORE_BAD_KEY:
        if (!crc_ok || key_ok) abort();
        break;
    case RC__STORE_BAD_SEQUENCE:
        if (!crc_ok || !key_ok) abort();
        if (!prev || get64(p + 8) == prev + 1) abort();
        break;
    default:
        abort();
    }

    /* Asking again changes nothing. */
    rc__store_reader again = r;
    if (rc__store_read(&again, buf, n, &rec) != o->result) abort();
    if (again.off != r.off || again.prev_id != r.prev_id) abort();
}

static void outcome_free(struct outcome *o)
{
    free(o->ends);
    free(o->ids);
}

static bool same_records(const struct outcome *a, const struct outcome *b)
{
    if (a->count != b->count || a->off != b->off) return false;
    for (size_t i = 0; i < a->count; i++)
        if (a->ids[i] != b->ids[i] || a->ends[i] != b->ends[i]) return false;
    return true;
}

/* Feeds buf[0..n) to one reader in growing prefixes: every length when bytewise (in place:
 * the bytes are the same, only n grows), else at the cuts, each in an exact-size copy. */
static void read_resumed(const uint8_t *buf, size_t n, const size_t *cuts, size_t ncuts,
                         bool bytewise, const struct outcome *want)
{
    rc__store_reader r;
    rc__store_reader_init(&r, 0);
    rc__store_rec rec;
    size_t count = 0, steps = bytewise ? n + 1 : ncuts;
    int res = RC__STORE_MORE;
    for (size_t s = 0; s < steps; s++) {
        size_t k = bytewise ? s : cuts[s];
        uint8_t *copy = bytewise ? NULL : dup_exact(buf, k);
        const uint8_t *view = bytewise ? buf : copy;
        while ((res = rc__store_read(&r, view, k, &rec)) == RC__STORE_RECORD) {
            if (count >= want->count || rec.msg_id != want->ids[count] ||
                r.off != want->ends[count])
                abort();
            count++;
        }
        free(copy);
        /* A bad record shows only once it is in whole (or its length is): never earlier. */
        if (res != RC__STORE_MORE && (res != want->result || r.off != want->off)) abort();
    }
    if (count != want->count || r.off != want->off || res != want->result) abort();
}

static void check_file(const uint8_t *buf, size_t n)
{
    struct outcome o;
    read_checked(buf, n, 0, &o);

    /* The valid prefix alone: same records, and it ends clean. */
    uint8_t *prefix = dup_exact(buf, o.off);
    struct outcome po;
    read_checked(prefix, o.off, 0, &po);
    if (!same_records(&o, &po) || po.result != RC__STORE_MORE) abort();
    outcome_free(&po);

    /* Re-encoding the records gives the valid prefix back. */
    uint8_t *enc = malloc(o.off ? o.off : 1);
    if (!enc) abort();
    rc__store_reader r;
    rc__store_reader_init(&r, 0);
    rc__store_rec rec;
    size_t w = 0;
    while (rc__store_read(&r, prefix, o.off, &rec) == RC__STORE_RECORD) {
        if (w + rec.size > o.off) abort();
        /* Headed in a scratch buffer: a keyless record's RC__STORE_REC_HEAD_MAX bytes could
         * reach past the end of enc. */
        unsigned char h[RC__STORE_REC_HEAD_MAX];
        size_t hl = rc__store_rec_head(h, rec.msg_id, rec.time_ms, rec.opcode, rec.key, rec.len);
        if (hl + rec.len != rec.size) abort();
        memcpy(enc + w, h, hl);
        if (rec.len) memcpy(enc + w + hl, rec.payload, rec.len);
        rc__store_rec_seal(enc + w, rec.size);
        w += rec.size;
    }
    if (w != o.off || (w && memcmp(enc, buf, w) != 0)) abort();
    free(enc);
    free(prefix);

    /* Resumption: byte by byte, then in exact-size pieces cut around each record's end and
     * inside the bytes after the valid prefix. */
    read_resumed(buf, n, NULL, 0, true, &o);
    size_t cap = 3 * o.count + 40, ncuts = 0;
    size_t *cuts = malloc(cap * sizeof(*cuts));
    if (!cuts) abort();
    for (size_t i = 0; i < o.count; i++) {
        if (o.ends[i] > 1 && (!ncuts || cuts[ncuts - 1] < o.ends[i] - 1)) cuts[ncuts++] = o.ends[i] - 1;
        if (!ncuts || cuts[ncuts - 1] < o.ends[i]) cuts[ncuts++] = o.ends[i];
    }
    for (size_t k = o.off + 1; k <= n && k <= o.off + RC__STORE_REC_HEAD + 8; k++)
        if (!ncuts || cuts[ncuts - 1] < k) cuts[ncuts++] = k;
    if (!ncuts || cuts[ncuts - 1] < n) cuts[ncuts++] = n;
    read_resumed(buf, n, cuts, ncuts, false, &o);
    free(cuts);

    /* Starting from the previous segment's last id changes nothing when it fits. */
    if (o.count && o.ids[0] > 1) {
        struct outcome co;
        read_checked(buf, n, o.ids[0] - 1, &co);
        if (!same_records(&o, &co) || co.result != o.result) abort();
        outcome_free(&co);
    }
    outcome_free(&o);
}

/* Seals every record the length fields delimit, so that records are valid but for lengths,
 * sequence, and where the data ends. */
static void reseal(uint8_t *p, size_t n)
{
    size_t off = 0;
    while (n - off >= RC__STORE_REC_HEAD) {
        uint32_t len = get32(p + off);
        if (len < RC__STORE_REC_FIXED || len > RC__STORE_REC_MAX ||
            len > n - off - RC__STORE_REC_HEADER)
            break;
        rc__store_rec_seal(p + off, RC__STORE_REC_HEADER + (size_t)len);
        off += RC__STORE_REC_HEADER + (size_t)len;
    }
}

static bool lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void check_name(const uint8_t *data, size_t size)
{
    size_t n = size < 2 * RC__STORE_NAME_MAX + 8 ? size : 2 * RC__STORE_NAME_MAX + 8;
    char *hex = malloc(n + 1);
    if (!hex) abort();
    memcpy(hex, data, n);
    hex[n] = '\0';
    size_t hl = strlen(hex);
    char name[RC__STORE_NAME_MAX];
    long r = rc__store_name_decode(hex, name, sizeof(name));
    bool valid = hl > 0 && hl % 2 == 0 && hl / 2 <= sizeof(name);
    for (size_t i = 0; i < hl && valid; i++) valid = lower_hex(hex[i]);
    if (!valid) {
        if (r != -1) abort();
    } else {
        if (r != (long)(hl / 2)) abort();
        char back[RC__STORE_NAME_HEX_SIZE];
        rc__store_name_encode(name, (size_t)r, back);
        if (strcmp(back, hex) != 0) abort();
    }
    free(hex);

    /* The input as a room name: its directory name. */
    size_t len = size < RC__STORE_NAME_MAX ? size : RC__STORE_NAME_MAX;
    if (len == 0) return;
    char dn[RC__STORE_DIRNAME_SIZE];
    memset(dn, 0x55, sizeof(dn));
    rc__store_dirname((const char *)data, len, dn);
    size_t dl = strnlen(dn, sizeof(dn));
    if (dl == sizeof(dn) || dl == 0 || dn[0] == '.') abort();
    for (size_t i = 0; i < dl; i++)
        if (!lower_hex(dn[i]) && !(i < 7 && len > RC__STORE_NAME_HEX_MAX)) abort();
    bool hashed = rc__store_dirname_hashed(dn);
    if (len <= RC__STORE_NAME_HEX_MAX) {
        char back[RC__STORE_NAME_MAX];
        if (hashed || dl != 2 * len) abort();
        if (rc__store_name_decode(dn, back, RC__STORE_NAME_HEX_MAX) != (long)len) abort();
        if (memcmp(back, data, len) != 0) abort();
    } else {
        if (!hashed || dl != RC__STORE_HASHED_LEN || memcmp(dn, "sha256-", 7) != 0) abort();
        char back[RC__STORE_NAME_MAX];
        if (rc__store_name_decode(dn, back, RC__STORE_NAME_MAX) != -1) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *p = dup_exact(data, size); /* exact size: ASan sees any over-read */
    check_file(p, size);
    reseal(p, size);
    check_file(p, size);
    free(p);
    check_name(data, size);
    return 0;
}
