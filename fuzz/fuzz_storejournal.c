/* fuzz_storejournal.c — libFuzzer target for the journal entries of src/store/format.c
 * (rc__store_jread), the reader start-up uses on DIR/journal after a crash.
 *
 * The input is a journal file, read twice: as it is, and with the checksum of every entry its
 * length fields delimit recomputed (a fuzzer cannot guess CRC-32s). Checked on every file:
 *   - read from an exact-size copy, the reader never reads outside it (ASan), and each entry
 *     it returns lies inside the file, starts where the previous one ended, has a known kind,
 *     a name of 1..255 bytes and, for a deletion, no records;
 *   - re-encoding each entry (rc__store_jhead + its records + rc__store_jseal) reproduces its
 *     bytes exactly; the records inside read (rc__store_read) within the entry's bounds;
 *   - a bad result repeats without moving; fed a byte at a time, the file reads the same.
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

/* Reads buf[0..n) whole; returns the valid prefix and the number of entries. */
static size_t read_file(const uint8_t *buf, size_t n, size_t *count, int *last)
{
    rc__store_reader r;
    rc__store_reader_init(&r, 0);
    rc__store_jentry e;
    int res;
    *count = 0;
    while ((res = rc__store_jread(&r, buf, n, &e)) == RC__STORE_RECORD) {
        size_t start = r.off - e.size;
        if (r.off > n || e.size < RC__STORE_J_HEADER + RC__STORE_J_FIXED + 1) abort();
        if (e.kind != RC__STORE_J_ROOM && e.kind != RC__STORE_J_DELETE) abort();
        if (e.name_len < 1 || e.name_len > 255) abort();
        if (e.kind == RC__STORE_J_DELETE && e.recs_len) abort();
        if ((const uint8_t *)e.name != buf + start + RC__STORE_J_HEADER + RC__STORE_J_FIXED)
            abort();
        if (e.recs + e.recs_len != buf + r.off) abort();
        if (get32(buf + start + 4) != (uint32_t)crc32(0, buf + start + 8, (uInt)(e.size - 8)))
            abort();
        /* re-encoding gives the same bytes */
        uint8_t *again = malloc(e.size);
        if (!again) abort();
        size_t h = rc__store_jhead(again, e.kind, e.name, e.name_len, e.epoch, e.recs_len);
        if (h + e.recs_len != e.size) abort();
        memcpy(again + h, e.recs, e.recs_len);
        rc__store_jseal(again, e.size);
        if (memcmp(again, buf + start, e.size) != 0) abort();
        free(again);
        /* the records inside stay inside */
        rc__store_reader rr;
        rc__store_reader_init(&rr, 0);
        rc__store_rec rec;
        while (rc__store_read(&rr, e.recs, e.recs_len, &rec) == RC__STORE_RECORD)
            if (rr.off > e.recs_len || rec.payload + rec.len > e.recs + e.recs_len) abort();
        (*count)++;
    }
    /* a bad result repeats, and does not move */
    size_t off = r.off;
    if (rc__store_jread(&r, buf, n, &e) != res || r.off != off) abort();
    *last = res;
    return off;
}

static void check(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) abort();
    memcpy(copy, data, size);
    size_t count, off;
    int last;
    off = read_file(copy, size, &count, &last);
    if (off > size) abort();
    /* byte by byte, one reader: the same entries and the same end */
    rc__store_reader r;
    rc__store_reader_init(&r, 0);
    size_t n2 = 0;
    for (size_t have = 0; have <= size; have++) {
        uint8_t *piece = malloc(have ? have : 1);
        if (!piece) abort();
        memcpy(piece, data, have);
        rc__store_jentry e;
        int res;
        while ((res = rc__store_jread(&r, piece, have, &e)) == RC__STORE_RECORD) n2++;
        free(piece);
        if (res != RC__STORE_MORE) break;
    }
    if (n2 != count || r.off != off) abort();
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0; /* the byte-by-byte pass is quadratic */
    check(data, size);
    /* the same file with every entry's checksum made right */
    uint8_t *fixed = malloc(size ? size : 1);
    if (!fixed) abort();
    memcpy(fixed, data, size);
    size_t off = 0;
    while (size - off >= RC__STORE_J_HEADER) {
        uint32_t len = get32(fixed + off);
        if (len > size - off - RC__STORE_J_HEADER) break;
        uint32_t c = (uint32_t)crc32(0, fixed + off + 8, len);
        for (int i = 0; i < 4; i++) fixed[off + 4 + i] = (uint8_t)(c >> (8 * i));
        off += RC__STORE_J_HEADER + len;
    }
    check(fixed, size);
    free(fixed);
    return 0;
}
