/* test_format.c — tests for src/store/format.c: the exact bytes of a record (a golden record
 * pins the on-disk format), round trips of records and of segments, every way a record can be
 * torn (every prefix) or corrupt (bad length at its boundaries, every single-bit flip, a
 * broken sequence, garbage after the end), byte-by-byte and random-piece resumption in
 * exact-size buffers (so ASan sees any read past n), and the room-directory name codec.
 */
#include "unit.h"

#include "store/format.h"

#include <stdbool.h>
#include <stdint.h>
#include <zlib.h>

/* A record as written, built from format.h's encoder. */
static size_t encode(unsigned char *out, uint64_t msg_id, uint64_t time_ms, uint8_t opcode,
                     const void *payload, size_t len)
{
    rc__store_rec_head(out, msg_id, time_ms, opcode, len);
    if (len) memcpy(out + RC__STORE_REC_HEAD, payload, len);
    rc__store_rec_seal(out, RC__STORE_REC_HEAD + len);
    return RC__STORE_REC_HEAD + len;
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
    unsigned char h[RC__STORE_REC_HEAD];
    rc__store_rec_head(h, 0x0102030405060708ull, 0x1122334455667788ull, 1, 2);
    CHECK_MEM(h, 4, golden, 4);
    CHECK(h[4] == 0 && h[5] == 0 && h[6] == 0 && h[7] == 0);
    CHECK_MEM(h + 8, sizeof(h) - 8, golden + 8, sizeof(h) - 8);

    rc__store_reader r;
    rc__store_reader_init(&r, 0);
    rc__store_rec rec;
    CHECK_EQ_INT(rc__store_read(&r, golden, sizeof(golden), &rec), RC__STORE_RECORD);
    CHECK(rec.msg_id == 0x0102030405060708ull && rec.time_ms == 0x1122334455667788ull);
    CHECK_EQ_INT(rec.opcode, 1);
    CHECK_EQ_INT(rec.len, 2);
    CHECK(rec.payload == golden + RC__STORE_REC_HEAD);
    CHECK_EQ_INT(rec.size, sizeof(golden));
    CHECK_EQ_INT(r.off, sizeof(golden));
    CHECK(r.prev_id == 0x0102030405060708ull);
    CHECK_EQ_INT(rc__store_read(&r, golden, sizeof(golden), &rec), RC__STORE_MORE);
}

TEST(test_round_trip)
{
    static unsigned char buf[8192];
    static const size_t lens[] = {0, 1, 2, 17, 255, 256, 1000, 4000};
    static const uint8_t ops[] = {1, 2, 0, 255};
    static const uint64_t ids[] = {1, 2, 0x7FFFFFFFFFFFFFFEull, UINT64_MAX - 1};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (size_t j = 0; j < sizeof(ops); j++) {
            unsigned char payload[4000];
            for (size_t k = 0; k < lens[i]; k++) payload[k] = (unsigned char)(k * 31 + j);
            uint64_t id = ids[(i + j) % 4], t = UINT64_MAX - i;
            size_t n = encode(buf, id, t, ops[j], payload, lens[i]);
            CHECK_EQ_INT(n, RC__STORE_REC_HEAD + lens[i]);
            CHECK_EQ_INT(crc32(0, buf + 8, (uInt)(n - 8)),
                         (uint32_t)buf[4] | (uint32_t)buf[5] << 8 | (uint32_t)buf[6] << 16 |
                             (uint32_t)buf[7] << 24);
            rc__store_reader r;
            rc__store_reader_init(&r, id - 1);
            rc__store_rec rec;
            CHECK_EQ_INT(rc__store_read(&r, buf, n, &rec), RC__STORE_RECORD);
            CHECK(rec.msg_id == id && rec.time_ms == t && rec.opcode == ops[j]);
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
    rc__store_rec_head(buf, 1, 2, 2, len);
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

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(test_golden_record);
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
    UNIT_MAIN_END("test_format");
}
