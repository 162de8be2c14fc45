/* test_format.c — tests for src/store/format.c: the exact bytes of a record (a golden record
 * pins the on-disk format), round trips of records and of segments, every way a record can be
 * torn (every prefix) or corrupt (bad length at its boundaries, every single-bit flip, a
 * broken sequence, garbage after the end), byte-by-byte and random-piece resumption in
 * exact-size buffers (so ASan sees any read past n), records with an idempotency key (a second
 * golden record, old records beside new ones, every malformed key), and the room-directory
 * names (hex for short names, SHA-256 for long ones); journal entries (golden entries, round
 * trips, every torn prefix, every bit flip, bad lengths, names and kinds, resumption).
 */
#include "unit.h"

#include "store/format.h"

#include <stdbool.h>
#include <stdint.h>
#include <zlib.h>

/* A record as written, built from format.h's encoder, with an idempotency key hash (0: none). */
static size_t encode_key(unsigned char *out, uint64_t msg_id, uint64_t time_ms, uint8_t opcode,
                         uint64_t key, const void *payload, size_t len)
{
    size_t h = rc__store_rec_head(out, msg_id, time_ms, opcode, key, len);
    if (len) memcpy(out + h, payload, len);
    rc__store_rec_seal(out, h + len);
    return h + len;
}

static size_t encode(unsigned char *out, uint64_t msg_id, uint64_t time_ms, uint8_t opcode,
                     const void *payload, size_t len)
{
    return encode_key(out, msg_id, time_ms, opcode, 0, payload, len);
}

/* A segment of n records with ids first.. and payloads of varying sizes (0 among them). */
static size_t segment(unsigned char *out, uint64_t first, int n, size_t *ends)
{
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        char payload[64];
        size_t len = (size_t)(i * 7) % sizeof(payload);
        for (size_t k = 0; k < len; k++) payload[k] = (char)(i + k);
        off += encode(out + off, first + (uint64_t)i, 1000 + (uint64_t)i, i % 2 ? 2 : 1, payload,
                      len);
        if (ends) ends[i] = off;
    }
    return off;
}

/* Reads buf[0..n) through an exact-size heap copy from a fresh reader; returns the last
 * result, the records in recs (copied field by field, payload offsets relative to the copy). */
struct readout {
    int result;              /* what the last call returned */
    size_t off;              /* reader's offset at the end */
    size_t count;            /* records read */
    uint64_t ids[64];        /* their msg_ids */
    size_t ends[64];         /* offset after each */
};

static void read_all(const unsigned char *buf, size_t n, uint64_t prev, struct readout *o)
{
    unsigned char *copy = n ? malloc(n) : NULL;
    if (n) memcpy(copy, buf, n);
    rc__store_reader r;
    rc__store_reader_init(&r, prev);
    rc__store_rec rec;
    memset(o, 0, sizeof(*o));
    while ((o->result = rc__store_read(&r, copy, n, &rec)) == RC__STORE_RECORD && o->count < 64) {
        o->ids[o->count] = rec.msg_id;
        o->ends[o->count++] = r.off;
    }
    o->off = r.off;
    free(copy);
}

TEST(test_golden_record)
{
    /* u32 length 19 | u32 crc32 | u64 msg_id | u64 time_ms | u8 opcode | "hi", little-endian;
     * the crc32 was computed apart from roomcast (Python's zlib.crc32 of the 19 bytes). */
    static const unsigned char golden[] = {
        0x13, 0x00, 0x00, 0x00, 0x28, 0x78, 0x80, 0xf0, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03,
        0x02, 0x01, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x01, 0x68, 0x69,
    };
    unsigned char out[64];
    memset(out, 0xEE, sizeof(out));
    size_t n = encode(out, 0x0102030405060708ull, 0x1122334455667788ull, 1, "hi", 2);
    CHECK_EQ_INT(n, sizeof(golden));
    CHECK_MEM(out, n, golden, sizeof(golden));
    CHECK_EQ_INT(out[n], 0xEE); /* nothing written past the record */
    CHECK(rc__store_rec_msg_id(out) == 0x0102030405060708ull);

    /* The head alone leaves the crc32 at zero for the writer thread to fill in. */
    unsigned char h[RC__STORE_REC_HEAD_MAX];
    CHECK_EQ_INT(rc__store_rec_head(h, 0x0102030405060708ull, 0x1122334455667788ull, 1, 0, 2),
                 RC__STORE_REC_HEAD);
    CHECK_MEM(h, 4, golden, 4);
    CHECK(h[4] == 0 && h[5] == 0 && h[6] == 0 && h[7] == 0);
    CHECK_MEM(h + 8, RC__STORE_REC_HEAD - 8, golden + 8, RC__STORE_REC_HEAD - 8);

    rc__store_reader r;
    rc__store_reader_init(&r, 0);
    rc__store_rec rec;
    CHECK_EQ_INT(rc__store_read(&r, golden, sizeof(golden), &rec), RC__STORE_RECORD);
    CHECK(rec.msg_id == 0x0102030405060708ull && rec.time_ms == 0x1122334455667788ull);
    CHECK_EQ_INT(rec.opcode, 1);
    CHECK(rec.key == 0);
    CHECK_EQ_INT(rec.len, 2);
    CHECK(rec.payload == golden + RC__STORE_REC_HEAD);
    CHECK_EQ_INT(rec.size, sizeof(golden));
    CHECK_EQ_INT(r.off, sizeof(golden));
    CHECK(r.prev_id == 0x0102030405060708ull);
    CHECK_EQ_INT(rc__store_read(&r, golden, sizeof(golden), &rec), RC__STORE_MORE);
}

/* A record with an idempotency key: the opcode's high bit, then the key hash before the
 * payload. Pinned by bytes computed apart from roomcast (Python's struct and zlib.crc32). */
TEST(test_golden_keyed_record)
{
    static const unsigned char golden[] = {
        0x1b, 0x00, 0x00, 0x00, 0x28, 0x47, 0xb6, 0x6a, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03,
        0x02, 0x01, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x81, 0x18, 0x07, 0xf6,
        0xe5, 0xd4, 0xc3, 0xb2, 0xa1, 0x68, 0x69,
    };
    unsigned char out[64];
    memset(out, 0xEE, sizeof(out));
    size_t n = encode_key(out, 0x0102030405060708ull, 0x1122334455667788ull, 1,
                          0xa1b2c3d4e5f60718ull, "hi", 2);
    CHECK_EQ_INT(n, sizeof(golden));
    CHECK_MEM(out, n, golden, sizeof(golden));
    CHECK_EQ_INT(out[n], 0xEE);
    CHECK(rc__store_rec_msg_id(out) == 0x0102030405060708ull);
    /* An opcode with the flag's bit set does not change the encoding: the key alone sets it. */
    unsigned char h[RC__STORE_REC_HEAD_MAX];
    CHECK_EQ_INT(rc__store_rec_head(h, 0x0102030405060708ull, 0x1122334455667788ull, 0x81,
                                    0xa1b2c3d4e5f60718ull, 2),
                 RC__STORE_REC_HEAD_MAX);
    CHECK_MEM(h + 8, sizeof(h) - 8, golden + 8, sizeof(h) - 8);
    CHECK_EQ_INT(rc__store_rec_head(h, 1, 2, 0x81, 0, 2), RC__STORE_REC_HEAD);
    CHECK_EQ_INT(h[24], 1);

    rc__store_reader r;
    rc__store_reader_init(&r, 0);
    rc__store_rec rec;
    CHECK_EQ_INT(rc__store_read(&r, golden, sizeof(golden), &rec), RC__STORE_RECORD);
    CHECK(rec.msg_id == 0x0102030405060708ull && rec.time_ms == 0x1122334455667788ull);
    CHECK_EQ_INT(rec.opcode, 1);
    CHECK(rec.key == 0xa1b2c3d4e5f60718ull);
    CHECK_EQ_INT(rec.len, 2);
    CHECK(rec.payload == golden + RC__STORE_REC_HEAD_MAX);
    CHECK_EQ_INT(rec.size, sizeof(golden));
    CHECK_EQ_INT(r.off, sizeof(golden));
}

/* Records with and without keys side by side in one segment, as a log written before keys
 * existed and continued after: each reads back with its own key (0 for none). */
TEST(test_keys_mixed)
{
    unsigned char buf[4096];
    size_t off = 0, ends[20];
    for (int i = 0; i < 20; i++) {
        char payload[40];
        size_t len = (size_t)(i * 5) % sizeof(payload);
        memset(payload, 'a' + i, len);
        uint64_t key = i % 3 == 0 ? 0 : i % 3 == 1 ? (uint64_t)i * 0x9E3779B97F4A7C15ull : UINT64_MAX;
        off += encode_key(buf + off, 100 + (uint64_t)i, 5, i % 2 ? 2 : 1, key, payload, len);
        ends[i] = off;
    }
    rc__store_reader r;
    rc__store_reader_init(&r, 99);
    rc__store_rec rec;
    for (int i = 0; i < 20; i++) {
        CHECK_EQ_INT(rc__store_read(&r, buf, off, &rec), RC__STORE_RECORD);
        uint64_t key = i % 3 == 0 ? 0 : i % 3 == 1 ? (uint64_t)i * 0x9E3779B97F4A7C15ull : UINT64_MAX;
        CHECK(rec.msg_id == 100 + (uint64_t)i && rec.key == key);
        CHECK_EQ_INT(rec.opcode, i % 2 ? 2 : 1);
        CHECK_EQ_INT(rec.len, (size_t)(i * 5) % 40);
        CHECK_EQ_INT(rec.size, (key ? RC__STORE_REC_HEAD_MAX : RC__STORE_REC_HEAD) + rec.len);
        for (size_t k = 0; k < rec.len; k++) CHECK(rec.payload[k] == 'a' + i);
        CHECK_EQ_INT(r.off, ends[i]);
    }
    CHECK_EQ_INT(rc__store_read(&r, buf, off, &rec), RC__STORE_MORE);
    /* Every prefix: whole records read, the rest is "need more". */
    for (size_t k = 0; k <= off; k++) {
        struct readout o;
        read_all(buf, k, 0, &o);
        size_t whole = 0;
        while (whole < 20 && ends[whole] <= k) whole++;
        CHECK_EQ_INT(o.result, RC__STORE_MORE);
        CHECK_EQ_INT(o.count, whole);
    }
}

/* The key flag on a record too short to hold a key, or holding key 0 (which has its own,
 * unflagged encoding), is corruption: found after the checksum, before the sequence. */
TEST(test_bad_key)
{
    unsigned char buf[256];
    size_t first = encode(buf, 1, 0, 1, "ok", 2);
    for (uint32_t extra = 0; extra < RC__STORE_REC_KEY; extra++) {
        /* length 17 + extra: flag set, fewer than 8 bytes after the opcode */
        unsigned char *p = buf + first;
        size_t n = encode(p, 2, 0, 1, "abcdefg", extra);
        p[24] |= RC__STORE_OP_KEYED;
        rc__store_rec_seal(p, n);
        struct readout o;
        read_all(buf, first + n, 0, &o);
        CHECK_EQ_INT(o.count, 1);
        CHECK_EQ_INT(o.off, first);
        CHECK_EQ_INT(o.result, RC__STORE_BAD_KEY);
        for (size_t k = first; k < first + n; k++) { /* torn: still "need more" */
            read_all(buf, k, 0, &o);
            CHECK_EQ_INT(o.result, RC__STORE_MORE);
        }
    }
    /* Key 0 with the flag, with and without a payload. */
    for (size_t len = 0; len < 3; len++) {
        unsigned char *p = buf + first;
        size_t n = encode_key(p, 2, 0, 1, 1, "xyz", len);
        memset(p + RC__STORE_REC_HEAD, 0, RC__STORE_REC_KEY);
        rc__store_rec_seal(p, n);
        struct readout o;
        read_all(buf, first + n, 0, &o);
        CHECK_EQ_INT(o.count, 1);
        CHECK_EQ_INT(o.result, RC__STORE_BAD_KEY);
    }
    /* A bad key is found before a bad sequence (msg_id 9 after 1). */
    size_t n = encode(buf + first, 9, 0, 1, "abc", 3);
    buf[first + 24] |= RC__STORE_OP_KEYED;
    rc__store_rec_seal(buf + first, n);
    struct readout o;
    read_all(buf, first + n, 0, &o);
    CHECK_EQ_INT(o.result, RC__STORE_BAD_KEY);
    /* ... and after a bad checksum. */
    buf[first + 5] ^= 1;
    read_all(buf, first + n, 0, &o);
    CHECK_EQ_INT(o.result, RC__STORE_BAD_CRC);
}

/* No single-bit flip in a keyed record gets it accepted. */
TEST(test_keyed_bit_flip)
{
    unsigned char buf[512];
    size_t a = encode_key(buf, 1, 0, 1, 77, "first", 5);
    size_t b = a + encode_key(buf + a, 2, 0, 2, 0x8000000000000001ull, "second", 6);
    size_t n = b + encode_key(buf + b, 3, 0, 1, 5, "third", 5);
    for (size_t i = a; i < b; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (unsigned char)(1 << bit);
            struct readout o;
            read_all(buf, n, 0, &o);
            buf[i] ^= (unsigned char)(1 << bit);
            CHECK_EQ_INT(o.count, 1);
            CHECK_EQ_INT(o.off, a);
            CHECK(o.result != RC__STORE_RECORD);
        }
    }
}

TEST(test_round_trip)
{
    static unsigned char buf[8192];
    static const size_t lens[] = {0, 1, 2, 17, 255, 256, 1000, 4000};
    static const uint8_t ops[] = {1, 2, 0, 0x7f}; /* the opcode has seven bits (format.h) */
    static const uint64_t ids[] = {1, 2, 0x7FFFFFFFFFFFFFFEull, UINT64_MAX - 1};
    static const uint64_t keys[] = {0, 1, 0x8000000000000000ull, UINT64_MAX, 0, 42};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (size_t j = 0; j < sizeof(ops); j++) {
            unsigned char payload[4000];
            for (size_t k = 0; k < lens[i]; k++) payload[k] = (unsigned char)(k * 31 + j);
            uint64_t id = ids[(i + j) % 4], t = UINT64_MAX - i;
            uint64_t key = keys[(i + 2 * j) % 6];
            size_t n = encode_key(buf, id, t, ops[j], key, payload, lens[i]);
            CHECK_EQ_INT(n, (key ? RC__STORE_REC_HEAD_MAX : RC__STORE_REC_HEAD) + lens[i]);
            CHECK_EQ_INT(crc32(0, buf + 8, (uInt)(n - 8)),
                         (uint32_t)buf[4] | (uint32_t)buf[5] << 8 | (uint32_t)buf[6] << 16 |
                             (uint32_t)buf[7] << 24);
            rc__store_reader r;
            rc__store_reader_init(&r, id - 1);
            rc__store_rec rec;
            CHECK_EQ_INT(rc__store_read(&r, buf, n, &rec), RC__STORE_RECORD);
            CHECK(rec.msg_id == id && rec.time_ms == t && rec.opcode == ops[j] && rec.key == key);
            CHECK_MEM(rec.payload, rec.len, payload, lens[i]);
            CHECK_EQ_INT(rec.size, n);
            CHECK_EQ_INT(r.off, n);
        }
    }
    /* A whole segment: every record comes back, in order, and nothing else. */
    size_t ends[40];
    size_t n = segment(buf, 7, 40, ends);
    struct readout o;
    read_all(buf, n, 0, &o);
    CHECK_EQ_INT(o.result, RC__STORE_MORE);
    CHECK_EQ_INT(o.count, 40);
    CHECK_EQ_INT(o.off, n);
    for (size_t i = 0; i < 40; i++) {
        CHECK(o.ids[i] == 7 + i);
        CHECK_EQ_INT(o.ends[i], ends[i]);
    }
    /* The segment of a room goes on from the previous one's last id. */
    read_all(buf, n, 6, &o);
    CHECK_EQ_INT(o.count, 40);
}

TEST(test_empty)
{
    rc__store_reader r;
    rc__store_reader_init(&r, 0);
    rc__store_rec rec;
    CHECK_EQ_INT(rc__store_read(&r, NULL, 0, &rec), RC__STORE_MORE); /* an empty file */
    CHECK_EQ_INT(r.off, 0);
}

/* Every prefix of a segment: the whole records in it are read, the rest is "need more", and
 * the valid prefix ends at the last whole record (a torn tail, repaired by truncating there). */
TEST(test_torn_every_prefix)
{
    unsigned char buf[2048];
    size_t ends[12];
    size_t n = segment(buf, 1, 12, ends);
    for (size_t k = 0; k <= n; k++) {
        struct readout o;
        read_all(buf, k, 0, &o);
        size_t whole = 0;
        while (whole < 12 && ends[whole] <= k) whole++;
        CHECK_EQ_INT(o.result, RC__STORE_MORE);
        CHECK_EQ_INT(o.count, whole);
        CHECK_EQ_INT(o.off, whole ? ends[whole - 1] : 0);
    }
}

static void put32le(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* A bad length is known from its 4 bytes on; shorter prefixes ask for more. */
TEST(test_bad_length)
{
    static const uint32_t bad[] = {0, 1, RC__STORE_REC_FIXED - 1, RC__STORE_REC_MAX + 1,
                                   0x80000000u, UINT32_MAX};
    unsigned char buf[256];
    size_t first = segment(buf, 1, 1, NULL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = first + encode(buf + first, 2, 0, 1, "abc", 3);
        put32le(buf + first, bad[i]);
        memset(buf + n, 0, 64); /* even with plenty of bytes after it */
        for (size_t k = first; k <= n + 64; k++) {
            struct readout o;
            read_all(buf, k, 0, &o);
            CHECK_EQ_INT(o.count, 1);
            CHECK_EQ_INT(o.off, first);
            CHECK_EQ_INT(o.result, k < first + 4 ? RC__STORE_MORE : RC__STORE_BAD_LENGTH);
        }
    }
    /* The smallest length is a record with an empty payload. */
    size_t n = encode(buf, 1, 0, 2, NULL, 0);
    CHECK_EQ_INT(n, RC__STORE_REC_HEAD);
    struct readout o;
    read_all(buf, n, 0, &o);
    CHECK_EQ_INT(o.count, 1);
}

/* The largest length is accepted: "need more" until all of it is in, then a record. */
TEST(test_max_length)
{
    size_t len = RC__STORE_REC_MAX - RC__STORE_REC_FIXED;
    unsigned char *buf = calloc(1, RC__STORE_REC_HEAD + len);
    CHECK(buf != NULL);
    size_t n = RC__STORE_REC_HEAD + len;
    rc__store_rec_head(buf, 1, 2, 2, 0, len);
    rc__store_rec_seal(buf, n);
    rc__store_reader r;
    rc__store_reader_init(&r, 0);
    rc__store_rec rec;
    int a = rc__store_read(&r, buf, 4, &rec), b = rc__store_read(&r, buf, n - 1, &rec);
    int c = rc__store_read(&r, buf, n, &rec);
    free(buf);
    CHECK_EQ_INT(a, RC__STORE_MORE);
    CHECK_EQ_INT(b, RC__STORE_MORE);
    CHECK_EQ_INT(c, RC__STORE_RECORD);
    CHECK_EQ_INT(rec.len, len);
    CHECK_EQ_INT(r.off, n);
}

/* No single-bit flip anywhere in a record gets it accepted: a flip in the length gives a bad
 * length, a torn record (longer) or a bad checksum (shorter); anywhere else a bad checksum.
 * The records before it are still read, and the valid prefix ends where it starts. */
TEST(test_every_bit_flip)
{
    unsigned char buf[512];
    size_t ends[3];
    size_t n = segment(buf, 1, 3, ends);
    size_t start = ends[0], end = ends[1];
    for (size_t i = start; i < end; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (unsigned char)(1 << bit);
            struct readout o;
            read_all(buf, n, 0, &o);
            buf[i] ^= (unsigned char)(1 << bit);
            CHECK_EQ_INT(o.count, 1);
            CHECK_EQ_INT(o.off, start);
            if (i >= start + 4) {
                CHECK_EQ_INT(o.result, RC__STORE_BAD_CRC);
            } else {
                CHECK(o.result == RC__STORE_BAD_LENGTH || o.result == RC__STORE_BAD_CRC ||
                      o.result == RC__STORE_MORE);
            }
        }
    }
}

TEST(test_sequence)
{
    unsigned char buf[512];
    size_t off = 0, ends[4];
    static const uint64_t ids[] = {5, 6, 8, 9};
    for (int i = 0; i < 4; i++) ends[i] = off += encode(buf + off, ids[i], 0, 1, "x", 1);
    struct readout o;
    read_all(buf, off, 0, &o);
    CHECK_EQ_INT(o.result, RC__STORE_BAD_SEQUENCE);
    CHECK_EQ_INT(o.count, 2);
    CHECK_EQ_INT(o.off, ends[1]);
    /* The first record must follow the previous segment's last id, when there is one. */
    read_all(buf, ends[0], 4, &o);
    CHECK_EQ_INT(o.count, 1);
    read_all(buf, ends[0], 5, &o);
    CHECK_EQ_INT(o.result, RC__STORE_BAD_SEQUENCE);
    CHECK_EQ_INT(o.off, 0);
    read_all(buf, ends[0], 3, &o);
    CHECK_EQ_INT(o.result, RC__STORE_BAD_SEQUENCE);
    /* msg_id 0 (never written: roomcast numbers from 1) constrains nothing after it, as
     * before this reader existed. */
    off = encode(buf, 0, 0, 1, NULL, 0);
    off += encode(buf + off, 42, 0, 1, NULL, 0);
    size_t n = off + encode(buf + off, 44, 0, 1, NULL, 0);
    read_all(buf, n, 0, &o);
    CHECK_EQ_INT(o.count, 2);
    CHECK_EQ_INT(o.result, RC__STORE_BAD_SEQUENCE);
}

/* Garbage after the last record: whatever it is, the records before are all read and the
 * valid prefix ends at the last one. */
TEST(test_garbage_after)
{
    unsigned char buf[1024];
    size_t ends[5];
    size_t n = segment(buf, 1, 5, ends);
    for (int round = 0; round < 2000; round++) {
        size_t extra = 1 + (size_t)(unit_rand() % 100);
        for (size_t k = 0; k < extra; k++) buf[n + k] = (unsigned char)unit_rand();
        if (round % 4 == 0) put32le(buf + n, (uint32_t)(17 + unit_rand() % 200)); /* plausible */
        struct readout o;
        read_all(buf, n + extra, 0, &o);
        CHECK(o.count >= 5);
        CHECK_EQ_INT(o.ends[4], n);
        if (o.count == 5) {
            CHECK_EQ_INT(o.off, n);
            CHECK(o.result != RC__STORE_RECORD);
        }
    }
}

/* A bad result repeats, and more bytes do not change it; the reader's state is untouched. */
TEST(test_bad_is_sticky)
{
    unsigned char buf[512];
    size_t ends[3];
    size_t n = segment(buf, 1, 3, ends);
    buf[ends[0] + 10] ^= 1;
    rc__store_reader r;
    rc__store_reader_init(&r, 0);
    rc__store_rec rec, keep;
    CHECK_EQ_INT(rc__store_read(&r, buf, n, &rec), RC__STORE_RECORD);
    keep = rec;
    rc__store_reader before = r;
    for (size_t k = ends[1]; k <= n; k++) {
        CHECK_EQ_INT(rc__store_read(&r, buf, k, &rec), RC__STORE_BAD_CRC);
        CHECK(r.off == before.off && r.prev_id == before.prev_id);
        CHECK(memcmp(&rec, &keep, sizeof(rec)) == 0);
    }
}

/* Resumption: one reader fed the same file a byte at a time, or in random pieces, each time
 * in an exact-size copy of what has "arrived", reads what a single pass reads. */
static bool resumes(const unsigned char *buf, size_t n, bool bytewise)
{
    struct readout whole;
    read_all(buf, n, 0, &whole);
    rc__store_reader r;
    rc__store_reader_init(&r, 0);
    size_t count = 0, k = 0;
    int res = RC__STORE_MORE;
    for (;;) {
        unsigned char *copy = k ? malloc(k) : NULL;
        if (k) memcpy(copy, buf, k);
        rc__store_rec rec;
        while ((res = rc__store_read(&r, copy, k, &rec)) == RC__STORE_RECORD) {
            if (count >= whole.count || rec.msg_id != whole.ids[count] ||
                r.off != whole.ends[count] || rec.payload < copy || rec.payload + rec.len > copy + k) {
                free(copy);
                return false;
            }
            count++;
        }
        free(copy);
        if (res != RC__STORE_MORE || k == n) break;
        k += bytewise ? 1 : 1 + (size_t)(unit_rand() % 40);
        if (k > n) k = n;
    }
    return count == whole.count && r.off == whole.off && res == whole.result;
}

TEST(test_resume)
{
    unsigned char buf[2048];
    size_t ends[10];
    size_t n = segment(buf, 1, 10, ends);
    CHECK(resumes(buf, n, true));
    for (int i = 0; i < 50; i++) CHECK(resumes(buf, n, false));
    CHECK(resumes(buf, n - 3, true));  /* torn */
    buf[ends[6] + 20] ^= 0x40;         /* corrupt */
    CHECK(resumes(buf, n, true));
    for (int i = 0; i < 50; i++) CHECK(resumes(buf, n, false));
    buf[ends[6] + 20] ^= 0x40;
    put32le(buf + ends[2], 3);         /* bad length */
    CHECK(resumes(buf, n, true));
}

/* ---- room directory names ----------------------------------------------------------------- */

TEST(test_name_round_trip)
{
    char hex[RC__STORE_NAME_HEX_SIZE], back[RC__STORE_NAME_MAX + 1];
    for (int c = 0; c < 256; c++) { /* every byte, NUL included */
        char name[1] = {(char)c};
        rc__store_name_encode(name, 1, hex);
        CHECK_EQ_INT(strlen(hex), 2);
        CHECK(hex[0] == "0123456789abcdef"[c >> 4] && hex[1] == "0123456789abcdef"[c & 15]);
        CHECK_EQ_INT(rc__store_name_decode(hex, back, RC__STORE_NAME_MAX), 1);
        CHECK_EQ_INT((unsigned char)back[0], c);
    }
    char name[RC__STORE_NAME_MAX];
    for (size_t i = 0; i < sizeof(name); i++) name[i] = (char)(0xFF - i);
    rc__store_name_encode(name, sizeof(name), hex);
    CHECK_EQ_INT(strlen(hex), 2 * RC__STORE_NAME_MAX);
    CHECK_EQ_INT(rc__store_name_decode(hex, back, RC__STORE_NAME_MAX), RC__STORE_NAME_MAX);
    CHECK_MEM(back, RC__STORE_NAME_MAX, name, RC__STORE_NAME_MAX);
    rc__store_name_encode("caf\xc3\xa9 \"q\"", 9, hex);
    CHECK(strcmp(hex, "636166c3a920227122") == 0);
    /* Exactly cap bytes fit. */
    CHECK_EQ_INT(rc__store_name_decode("616263", back, 3), 3);
    CHECK_MEM(back, 3, "abc", 3);
}

TEST(test_name_rejects)
{
    char back[RC__STORE_NAME_MAX + 1];
    static const char *bad[] = {
        "",        /* no name */
        "6",       /* odd length */
        "61626",   /* odd length */
        "4A",      /* uppercase: never written, so not ours */
        "zz", "6g", "g6", " 61", "61 ", "0x61", "-1", ".tmp", "..", "616263.tmp",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(rc__store_name_decode(bad[i], back, RC__STORE_NAME_MAX), -1);
    /* Longer than cap. */
    CHECK_EQ_INT(rc__store_name_decode("616263", back, 2), -1);
    char hex[2 * (RC__STORE_NAME_MAX + 1) + 1];
    memset(hex, 'a', sizeof(hex) - 1);
    hex[sizeof(hex) - 1] = '\0';
    CHECK_EQ_INT(rc__store_name_decode(hex, back, RC__STORE_NAME_MAX), -1);
}

static bool is_lower_hex(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return false;
    return true;
}

/* Names up to 127 bytes keep their hex directory (what existing data directories hold); longer
 * ones get "sha256-" and the SHA-256 of the name (vectors from Python's hashlib). */
TEST(test_dirname)
{
    char out[RC__STORE_DIRNAME_SIZE], hex[RC__STORE_NAME_HEX_SIZE];
    char name[RC__STORE_NAME_MAX];
    for (size_t len = 1; len <= RC__STORE_NAME_MAX; len++) {
        for (size_t i = 0; i < len; i++) name[i] = (char)(i * 7 + 3);
        rc__store_dirname(name, len, out);
        CHECK(strlen(out) < RC__STORE_DIRNAME_SIZE);
        CHECK(strlen(out) <= 255);          /* NAME_MAX */
        CHECK(strchr(out, '/') == NULL && out[0] != '.');
        if (len <= RC__STORE_NAME_HEX_MAX) {
            rc__store_name_encode(name, len, hex);
            CHECK(strcmp(out, hex) == 0);
            CHECK(!rc__store_dirname_hashed(out));
            char back[RC__STORE_NAME_MAX];
            CHECK_EQ_INT(rc__store_name_decode(out, back, RC__STORE_NAME_HEX_MAX), (long)len);
        } else {
            CHECK_EQ_INT(strlen(out), RC__STORE_HASHED_LEN);
            CHECK(strncmp(out, "sha256-", 7) == 0 && is_lower_hex(out + 7));
            CHECK(rc__store_dirname_hashed(out));
            char back[RC__STORE_NAME_MAX];
            CHECK_EQ_INT(rc__store_name_decode(out, back, RC__STORE_NAME_MAX), -1);
        }
    }
    /* The 255-byte name of the loop above, then 128 times 'a'. */
    CHECK(strcmp(out, "sha256-3c8af6e36699077166f180b277f93992e354c66a63a3541ef18d61524eac85e9") == 0);
    memset(name, 'a', 128);
    rc__store_dirname(name, 128, out);
    CHECK(strcmp(out, "sha256-6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e") == 0);
    /* A one-byte difference is a different directory. */
    name[127] = 'b';
    rc__store_dirname(name, 128, hex);
    CHECK(strcmp(out, hex) != 0);
    rc__store_dirname(name, 127, out);
    CHECK_EQ_INT(strlen(out), 254);
}

TEST(test_dirname_hashed_form)
{
    static const char *good = "sha256-6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e";
    CHECK(rc__store_dirname_hashed(good));
    static const char *bad[] = {
        "", "sha256-", "sha256", "616263",
        "sha256-6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73",   /* 63 */
        "sha256-6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e0", /* 65 */
        "sha256-6836CF13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e",  /* upper */
        "sha256-6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73g",
        "Sha256-6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e",
        "sha512-6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e",
        ".sha256-6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) CHECK(!rc__store_dirname_hashed(bad[i]));
}

/* ---- journal entries ---------------------------------------------------------------------- */

/* An entry of kind for room name with epoch and records recs[0..rl), encoded with format.h. */
static size_t jencode(unsigned char *out, uint8_t kind, const char *name, const char *epoch,
                      const void *recs, size_t rl)
{
    size_t h = rc__store_jhead(out, kind, name, strlen(name), epoch, rl);
    if (rl) memcpy(out + h, recs, rl);
    rc__store_jseal(out, h + rl);
    return h + rl;
}

/* Golden entries, computed apart from roomcast (Python's struct and zlib.crc32): room "ab"
 * with the golden record, and a deletion of room "z". */
TEST(test_journal_golden)
{
    static const unsigned char room[] = {
        0x2f, 0x00, 0x00, 0x00, 0xcc, 0x28, 0x78, 0x08, 0x01, 0x02, 0x30, 0x31, 0x32, 0x33,
        0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x61, 0x62,
        0x13, 0x00, 0x00, 0x00, 0x28, 0x78, 0x80, 0xf0, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03,
        0x02, 0x01, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x01, 0x68, 0x69,
    };
    static const unsigned char del[] = {
        0x13, 0x00, 0x00, 0x00, 0x18, 0x50, 0x5c, 0x81, 0x02, 0x01, 0x66, 0x65, 0x64, 0x63,
        0x62, 0x61, 0x39, 0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31, 0x30, 0x7a,
    };
    unsigned char rec[64], out[128];
    size_t rl = encode(rec, 0x0102030405060708ull, 0x1122334455667788ull, 1, "hi", 2);
    memset(out, 0xEE, sizeof(out));
    size_t n = jencode(out, RC__STORE_J_ROOM, "ab", "0123456789abcdef", rec, rl);
    CHECK_EQ_INT(n, sizeof(room));
    CHECK_MEM(out, n, room, sizeof(room));
    CHECK_EQ_INT(out[n], 0xEE);
    n = jencode(out, RC__STORE_J_DELETE, "z", "fedcba9876543210", NULL, 0);
    CHECK_MEM(out, n, del, sizeof(del));

    unsigned char both[sizeof(room) + sizeof(del)];
    memcpy(both, room, sizeof(room));
    memcpy(both + sizeof(room), del, sizeof(del));
    rc__store_reader r;
    rc__store_reader_init(&r, 0);
    rc__store_jentry e;
    CHECK_EQ_INT(rc__store_jread(&r, both, sizeof(both), &e), RC__STORE_RECORD);
    CHECK_EQ_INT(e.kind, RC__STORE_J_ROOM);
    CHECK(e.name_len == 2 && memcmp(e.name, "ab", 2) == 0);
    CHECK(memcmp(e.epoch, "0123456789abcdef", 16) == 0);
    CHECK(e.recs == both + 28 && e.recs_len == rl);
    CHECK_EQ_INT(e.size, sizeof(room));
    CHECK_EQ_INT(rc__store_jread(&r, both, sizeof(both), &e), RC__STORE_RECORD);
    CHECK_EQ_INT(e.kind, RC__STORE_J_DELETE);
    CHECK(e.name_len == 1 && e.name[0] == 'z' && e.recs_len == 0);
    CHECK_EQ_INT(r.off, sizeof(both));
    CHECK_EQ_INT(rc__store_jread(&r, both, sizeof(both), &e), RC__STORE_MORE);
}

/* A journal of three entries (the longest name among them) for the torn/flip/resume tests. */
static size_t journal3(unsigned char *out, size_t *ends)
{
    unsigned char recs[512];
    size_t rl = segment(recs, 7, 5, NULL);
    char longname[256];
    memset(longname, 'n', 255);
    longname[255] = '\0';
    size_t off = jencode(out, RC__STORE_J_ROOM, "lobby", "0123456789abcdef", recs, rl);
    ends[0] = off;
    off += jencode(out + off, RC__STORE_J_ROOM, longname, "aaaaaaaaaaaaaaaa", NULL, 0);
    ends[1] = off;
    off += jencode(out + off, RC__STORE_J_DELETE, "lobby", "0000000000000000", NULL, 0);
    ends[2] = off;
    return off;
}

/* Reads buf[0..n) through an exact-size copy; returns the last result, entries and offset. */
static int jread_all(const unsigned char *buf, size_t n, size_t *count, size_t *off)
{
    unsigned char *copy = n ? malloc(n) : NULL;
    if (n) memcpy(copy, buf, n);
    rc__store_reader r;
    rc__store_reader_init(&r, 0);
    rc__store_jentry e;
    int res;
    *count = 0;
    while ((res = rc__store_jread(&r, copy, n, &e)) == RC__STORE_RECORD) (*count)++;
    *off = r.off;
    free(copy);
    return res;
}

TEST(test_journal_torn_every_prefix)
{
    unsigned char j[2048];
    size_t ends[3];
    size_t n = journal3(j, ends);
    for (size_t cut = 0; cut <= n; cut++) {
        size_t count, off;
        int res = jread_all(j, cut, &count, &off);
        size_t want = cut >= ends[2] ? 3 : cut >= ends[1] ? 2 : cut >= ends[0] ? 1 : 0;
        CHECK_EQ_INT(res, RC__STORE_MORE);
        CHECK_EQ_INT(count, want);
        CHECK_EQ_INT(off, want ? ends[want - 1] : 0);
    }
}

TEST(test_journal_every_bit_flip)
{
    unsigned char j[2048];
    size_t ends[3];
    size_t n = journal3(j, ends);
    for (size_t i = 0; i < n; i++) {
        for (int b = 0; b < 8; b++) {
            j[i] ^= (unsigned char)(1 << b);
            size_t count, off;
            int res = jread_all(j, n, &count, &off);
            /* the entry holding the flipped byte and those after it are never read; a flip
             * in a length field may also make the entry look torn */
            size_t hit = i < ends[0] ? 0 : i < ends[1] ? 1 : 2;
            CHECK_EQ_INT(count, hit);
            CHECK_EQ_INT(off, hit ? ends[hit - 1] : 0);
            CHECK(res != RC__STORE_RECORD);
            j[i] ^= (unsigned char)(1 << b);
        }
    }
}

TEST(test_journal_bad_fields)
{
    unsigned char j[256];
    size_t n = jencode(j, RC__STORE_J_ROOM, "abc", "0123456789abcdef", NULL, 0);
    size_t count, off;
    /* length below the fixed part plus one name byte, and beyond the maximum */
    unsigned char b[256];
    memcpy(b, j, n);
    b[0] = RC__STORE_J_FIXED;
    CHECK_EQ_INT(jread_all(b, n, &count, &off), RC__STORE_BAD_LENGTH);
    memcpy(b, j, n);
    b[0] = 0, b[1] = 0, b[2] = 0, b[3] = 0x41; /* 1 GiB + 1 */
    CHECK_EQ_INT(jread_all(b, n, &count, &off), RC__STORE_BAD_LENGTH);
    /* a name of length 0, or running past the entry, is known bad before the rest is in */
    memcpy(b, j, n);
    b[9] = 0;
    CHECK_EQ_INT(jread_all(b, 10, &count, &off), RC__STORE_BAD_LENGTH);
    b[9] = 4;
    CHECK_EQ_INT(jread_all(b, 10, &count, &off), RC__STORE_BAD_LENGTH);
    /* unknown kind; a deletion with records (both resealed: the checksum is right) */
    memcpy(b, j, n);
    b[8] = 3;
    rc__store_jseal(b, n);
    CHECK_EQ_INT(jread_all(b, n, &count, &off), RC__STORE_BAD_KIND);
    unsigned char rec[64];
    size_t rl = encode(rec, 1, 2, 1, "x", 1);
    n = jencode(b, RC__STORE_J_DELETE, "abc", "0123456789abcdef", rec, rl);
    CHECK_EQ_INT(jread_all(b, n, &count, &off), RC__STORE_BAD_KIND);
    CHECK_EQ_INT(count, 0);
    CHECK_EQ_INT(off, 0);
}

TEST(test_journal_resume)
{
    unsigned char j[2048];
    size_t ends[3];
    size_t n = journal3(j, ends);
    /* fed one byte more each call, in exact-size copies: the same entries */
    rc__store_reader r;
    rc__store_reader_init(&r, 0);
    size_t count = 0;
    for (size_t have = 0; have <= n; have++) {
        unsigned char *copy = malloc(have ? have : 1);
        memcpy(copy, j, have);
        rc__store_jentry e;
        int res;
        while ((res = rc__store_jread(&r, copy, have, &e)) == RC__STORE_RECORD) {
            CHECK_EQ_INT(r.off, ends[count]);
            count++;
        }
        CHECK_EQ_INT(res, RC__STORE_MORE);
        free(copy);
    }
    CHECK_EQ_INT(count, 3);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(test_golden_record);
    RUN(test_golden_keyed_record);
    RUN(test_keys_mixed);
    RUN(test_bad_key);
    RUN(test_keyed_bit_flip);
    RUN(test_round_trip);
    RUN(test_empty);
    RUN(test_torn_every_prefix);
    RUN(test_bad_length);
    RUN(test_max_length);
    RUN(test_every_bit_flip);
    RUN(test_sequence);
    RUN(test_garbage_after);
    RUN(test_bad_is_sticky);
    RUN(test_resume);
    RUN(test_name_round_trip);
    RUN(test_name_rejects);
    RUN(test_dirname);
    RUN(test_dirname_hashed_form);
    RUN(test_journal_golden);
    RUN(test_journal_torn_every_prefix);
    RUN(test_journal_every_bit_flip);
    RUN(test_journal_bad_fields);
    RUN(test_journal_resume);
    UNIT_MAIN_END("test_format");
}
