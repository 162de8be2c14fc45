/* format.h — the durable log's on-disk formats: records in a segment file, and the name of a
 * room's directory. Internal to src/store/ (prefix rc__store_); no I/O, no allocation, no
 * dependency beyond zlib's crc32 and libcrypto's SHA-256, so it is unit-tested and fuzzed on its
 * own.
 *
 * A segment file is a sequence of records, nothing else (no file header):
 *
 *   u32 length | u32 crc32 | u64 msg_id | u64 time_ms | u8 opcode | [u64 key] | payload
 *
 * all little-endian. `length` counts the bytes from msg_id to the end of the payload
 * (RC__STORE_REC_FIXED, plus 8 with a key, plus the payload length) and lies in
 * [RC__STORE_REC_FIXED, RC__STORE_REC_MAX]; `crc32` is zlib's CRC-32 of the same bytes. Within a
 * room the msg_ids of consecutive records are consecutive (n, n + 1, ...), across segment files
 * too.
 *
 * The opcode byte's low seven bits are the WebSocket opcode the message was sent with (1 text,
 * 2 binary). Its high bit, RC__STORE_OP_KEYED, says that the message came with an idempotency
 * key: the key's 64-bit hash follows the opcode byte. The hash is never 0 (0 means "no key" and
 * is written as a record without the bit), so every record has exactly one encoding. Records
 * written before keys existed never have the bit (roomcast wrote opcodes 0..15 only): they read
 * as before, with no key.
 *
 * Records are read with rc__store_read, which validates one record at a time over the bytes
 * of a segment read so far. Its invariants, relied on by start-up repair (roomdir.c):
 *   - it never reads outside buf[0..n) and never allocates;
 *   - r->off only moves forward, past whole valid records: buf[0..r->off) is the valid
 *     prefix, and reading buf[0..r->off) again gives the same records;
 *   - a call with more bytes of the same file picks up where it stopped ("need more" is a
 *     promise that nothing so far is wrong), so a file can be read in pieces of any size;
 *   - at the end of a file, RC__STORE_MORE with r->off < n means a torn tail (a record cut
 *     short), any RC__STORE_BAD_* a corrupt one; either way the file is good up to r->off.
 *
 * The journal (DIR/journal, --fsync always only: store.h) is a sequence of entries, each one
 * room's share of one writer batch:
 *
 *   u32 length | u32 crc32 | u8 kind | u8 name_len | char epoch[16] | name | records
 *
 * little-endian; `length` counts the bytes from kind to the end and lies in
 * [RC__STORE_J_FIXED + name_len, RC__STORE_J_MAX]; `crc32` covers the same bytes. kind is
 * RC__STORE_J_ROOM (records: whole segment records of the room, consecutive msg_ids, possibly
 * none, under the room's epoch at that batch) or RC__STORE_J_DELETE (the room was deleted; no
 * records). name_len is 1..255. rc__store_jread reads entries with the same contract as
 * rc__store_read (never outside buf[0..n), no allocation, resumable, a torn or corrupt entry
 * ends the valid prefix at r->off); the records inside an entry are read with rc__store_read.
 *
 * Room directories. A room name is 1..255 bytes, any bytes; a directory name at most 255 (Linux
 * NAME_MAX). A name of at most RC__STORE_NAME_HEX_MAX (127) bytes is stored in the directory
 * named by its lowercase hex (two digits a byte): distinct, safe on any filesystem, and what
 * every data directory written before long names were supported holds. A longer name is stored
 * in the directory RC__STORE_HASHED_PREFIX followed by the lowercase hex SHA-256 of the name
 * ("sha256-" and 64 digits): the prefix is not hex, so the two kinds never meet, and the name
 * itself is kept in a file inside the directory (roomdir.h), which must hash back to the
 * directory's name for the directory to be trusted.
 */
#ifndef RC_STORE_FORMAT_H
#define RC_STORE_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC__STORE_REC_HEADER 8   /* u32 length + u32 crc32 */
#define RC__STORE_REC_FIXED 17   /* u64 msg_id + u64 time_ms + u8 opcode */
#define RC__STORE_REC_HEAD (RC__STORE_REC_HEADER + RC__STORE_REC_FIXED) /* bytes before payload */
#define RC__STORE_REC_KEY 8      /* u64 key hash, after the opcode when RC__STORE_OP_KEYED */
#define RC__STORE_REC_HEAD_MAX (RC__STORE_REC_HEAD + RC__STORE_REC_KEY) /* the same, with a key */
#define RC__STORE_REC_MAX (64u << 20) /* largest `length`; a longer one is corruption */
#define RC__STORE_OP_KEYED 0x80  /* opcode byte: an idempotency key hash follows */

#define RC__STORE_NAME_MAX 255                            /* longest room name, bytes */
#define RC__STORE_NAME_HEX_SIZE (2 * RC__STORE_NAME_MAX + 1) /* its hex form with the NUL */
#define RC__STORE_NAME_HEX_MAX 127 /* longest name whose directory is its hex (254 characters) */
#define RC__STORE_HASHED_PREFIX "sha256-" /* directory of a longer name: this + 64 hex digits */
#define RC__STORE_HASHED_LEN (sizeof(RC__STORE_HASHED_PREFIX) - 1 + 64) /* its length: 71 */
#define RC__STORE_DIRNAME_SIZE (2 * RC__STORE_NAME_HEX_MAX + 1) /* longest directory name + NUL */

/* One record as read: the pointers point into the buffer given to rc__store_read. */
typedef struct rc__store_rec {
    uint64_t msg_id;                /* the message's id in its room */
    uint64_t time_ms;               /* when it was sequenced, ms since the epoch (wall clock) */
    uint8_t opcode;                 /* WebSocket opcode it was sent with (1 text, 2 binary) */
    uint64_t key;                   /* hash of its idempotency key, 0 when it had none */
    const unsigned char *payload;   /* its payload bytes, inside the buffer */
    size_t len;                     /* payload length, bytes */
    size_t size;                    /* whole record on disk, bytes (head, key if any, payload) */
} rc__store_rec;

/* rc__store_rec_head writes the bytes that precede a payload of payload_len bytes — the fixed
 * head, and the key when key is not 0 — with the crc32 field zero: the event loop only copies,
 * the writer thread computes the checksum with rc__store_rec_seal once the payload follows.
 * Returns how many bytes it wrote: RC__STORE_REC_HEAD, or RC__STORE_REC_HEAD_MAX with a key.
 * opcode must be below RC__STORE_OP_KEYED (its high bit is the key flag and is ignored).
 * payload_len must be at most RC__STORE_REC_MAX - RC__STORE_REC_FIXED (less 8 with a key) for
 * the record to read back. */
size_t rc__store_rec_head(unsigned char out[RC__STORE_REC_HEAD_MAX], uint64_t msg_id,
                          uint64_t time_ms, uint8_t opcode, uint64_t key, size_t payload_len);

/* rc__store_rec_seal fills in the crc32 field of the complete record rec[0..size). */
void rc__store_rec_seal(unsigned char *rec, size_t size);

/* rc__store_rec_msg_id is the msg_id of the record starting at rec (at least
 * RC__STORE_REC_HEAD bytes). */
uint64_t rc__store_rec_msg_id(const unsigned char *rec);

/* The reader's whole state: two numbers, so it can be copied, reset, and resumed. */
typedef struct rc__store_reader {
    size_t off;          /* end of the valid prefix: where the next record starts, bytes */
    uint64_t prev_id;    /* msg_id of the last record accepted; 0: none, any id may come next */
} rc__store_reader;

/* rc__store_reader_init starts reading a segment whose first record must follow prev_id (the
 * last msg_id of the room's previous segment), or, with 0, may have any msg_id. As on disk
 * before this module existed, a record with msg_id 0 (roomcast numbers from 1) also leaves
 * the next one unconstrained. */
void rc__store_reader_init(rc__store_reader *r, uint64_t prev_id);

enum rc__store_read_result {
    RC__STORE_RECORD = 1,         /* *rec is the record at the old r->off; r->off moved past it */
    RC__STORE_MORE = 0,           /* buf[r->off..n) is empty or the start of a record: need more */
    RC__STORE_BAD_LENGTH = -1,    /* its length field is outside [REC_FIXED, REC_MAX] */
    RC__STORE_BAD_CRC = -2,       /* its bytes do not match its crc32 */
    RC__STORE_BAD_SEQUENCE = -3,  /* its msg_id is not r->prev_id + 1 */
    RC__STORE_BAD_KEY = -4,       /* RC__STORE_OP_KEYED, but no room for the key, or key 0 */
    RC__STORE_BAD_KIND = -5,      /* a journal entry of an unknown kind, or a delete with
                                     records */
};

/* rc__store_read reads the record at buf[r->off..n), where buf[0..n) is the segment's content
 * so far (the same bytes on every call, n never smaller). On RC__STORE_RECORD it fills *rec
 * and advances r; otherwise r and *rec are left alone, so a BAD result repeats and MORE can
 * be retried with more bytes. A bad length is reported as soon as the length field is in,
 * anything else once the whole record is, in this order: checksum, key, sequence. */
int rc__store_read(rc__store_reader *r, const unsigned char *buf, size_t n, rc__store_rec *rec);

/* ---- journal entries ---- */

#define RC__STORE_J_HEADER 8     /* u32 length + u32 crc32 */
#define RC__STORE_J_FIXED 18     /* u8 kind + u8 name_len + 16 epoch characters */
#define RC__STORE_J_HEAD_MAX (RC__STORE_J_HEADER + RC__STORE_J_FIXED + RC__STORE_NAME_MAX)
#define RC__STORE_J_MAX (1u << 30) /* largest `length`; a longer one is corruption */
#define RC__STORE_J_EPOCH 16     /* epoch characters (store.h RC_EPOCH_LEN) */

enum { RC__STORE_J_ROOM = 1, RC__STORE_J_DELETE = 2 };

/* One journal entry as read: pointers into the buffer given to rc__store_jread. */
typedef struct rc__store_jentry {
    uint8_t kind;                   /* RC__STORE_J_ROOM or RC__STORE_J_DELETE */
    const char *name;               /* the room's name, name_len bytes (not NUL-terminated) */
    size_t name_len;                /* 1..RC__STORE_NAME_MAX */
    const char *epoch;              /* RC__STORE_J_EPOCH characters, not NUL-terminated */
    const unsigned char *recs;      /* the records (J_ROOM), recs_len bytes */
    size_t recs_len;                /* bytes of records, 0 for J_DELETE */
    size_t size;                    /* whole entry, bytes */
} rc__store_jentry;

/* rc__store_jhead writes the bytes that precede the records of an entry (kind, the room's
 * name[0..name_len), 1..255 bytes, its epoch, 16 characters, followed by recs_len bytes of
 * records) with the crc32 field zero; rc__store_jseal fills it in once the records follow.
 * Returns the head's size (RC__STORE_J_HEADER + RC__STORE_J_FIXED + name_len). */
size_t rc__store_jhead(unsigned char out[RC__STORE_J_HEAD_MAX], uint8_t kind, const char *name,
                       size_t name_len, const char *epoch, size_t recs_len);
void rc__store_jseal(unsigned char *entry, size_t size);

/* rc__store_jread reads the entry at buf[r->off..n) (r->prev_id is unused): like
 * rc__store_read, RC__STORE_RECORD with *e filled and r->off moved past it, RC__STORE_MORE,
 * or RC__STORE_BAD_LENGTH (also a name_len of 0 or beyond the entry), RC__STORE_BAD_CRC or
 * RC__STORE_BAD_KIND (checked in that order). Records inside are not checked. */
int rc__store_jread(rc__store_reader *r, const unsigned char *buf, size_t n,
                    rc__store_jentry *e);

/* rc__store_name_encode writes the directory name of room name[0..len) (len at most
 * RC__STORE_NAME_MAX) to out: 2 * len lowercase hex digits and a NUL. */
void rc__store_name_encode(const char *name, size_t len, char *out);

/* rc__store_name_decode turns the directory name hex (NUL-terminated) back into the room name
 * in out[0..cap). Returns its length, or -1 if hex is not a room directory: empty, odd length,
 * anything but lowercase hex digits, or a name longer than cap. */
long rc__store_name_decode(const char *hex, char *out, size_t cap);

/* rc__store_dirname writes the directory name of room name[0..len) (1 <= len <=
 * RC__STORE_NAME_MAX) to out, NUL-terminated: its hex up to RC__STORE_NAME_HEX_MAX bytes,
 * else RC__STORE_HASHED_PREFIX and the hex SHA-256 of the name. */
void rc__store_dirname(const char *name, size_t len, char out[RC__STORE_DIRNAME_SIZE]);

/* rc__store_dirname_hashed is true when dirname (NUL-terminated) has the form of a long name's
 * directory: RC__STORE_HASHED_PREFIX and 64 lowercase hex digits, nothing else. Such a
 * directory's name is in its name file, to be checked with rc__store_dirname. */
bool rc__store_dirname_hashed(const char *dirname);

#endif
