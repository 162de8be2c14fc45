/* store.h — the durable log: an append-only file per room, written off the event loop.
 *
 * Layout under the data directory (roomdir.h has the details):
 *   DIR/clean                         present only while no server runs after a clean exit
 *   DIR/lock                          flock()ed by the server that has the directory open
 *   DIR/client_ids                    a mark client ids have not reached (rc_store_ids_load)
 *   DIR/journal                       --fsync always only: each batch's records, all rooms
 *                                     (format.h), until the next checkpoint
 *   DIR/rooms/<dirname>/epoch         the room's epoch (text)
 *   DIR/rooms/<dirname>/name          the room's name, in a hashed directory only
 *   DIR/rooms/<dirname>/<first msg_id, 20 digits>.log   segments, oldest first
 *   DIR/rooms/<dirname>/state         the room's last state snapshot (rc_store_room_state)
 * <dirname> is the room name in lowercase hex for names up to 127 bytes (as always), and
 * "sha256-" with the hex SHA-256 of the name for longer ones (up to 255 bytes), whose hex would
 * not fit a file name; such a directory is trusted only if its name file hashes back to it.
 * A record is  u32 length | u32 crc32 | u64 msg_id | u64 time_ms | u8 opcode | [u64 key] | payload
 * (little-endian; length counts from msg_id to the end; crc32 covers the same bytes), so a torn
 * or corrupt tail is recognised on start, truncated and logged, never fatal. The key is the
 * hash of the message's idempotency key, present when the opcode byte's high bit is set
 * (format.h); records written before keys existed have no key and read as they did.
 *
 * Threads: the loop appends records to a batch of its own (no lock, no syscall, no checksum);
 * at each before-sleep it hands the batch to one writer thread under a mutex, and the writer
 * computes the checksums, writes each room's records with one write() and, depending on
 * --fsync, calls fsync: `no` never (the kernel decides; and once at close), `everysec` once a
 * second. `always` makes every batch durable before it reports it, with one fdatasync for all
 * rooms: the batch's records go first to DIR/journal (one write, one fdatasync), then to the
 * rooms' segments unsynced; once a second a checkpoint fsyncs the segments and empties the
 * journal (writer.c, "the journal"). rc_store_open appends to each room what the journal holds
 * beyond its segments (journal.c), so after a crash nothing made durable is missing; the
 * journal exists only while a server runs under `always`, which is how start-up knows that
 * everything delivered was durable (the loader's `lost` is then false unless a log is damaged
 * where the journal does not cover it), while after a crash under everysec or no every room
 * may have lost messages (`lost` is true). It keeps at most
 * RC_STORE_FD_MAX segment files open, however many rooms there are. The writer reports
 * progress through an eventfd watched by the loop (on_durable), room by room:
 * rc_store_room_durable() is the highest batch sequence number through which a room's records
 * are on disk, which is when acknowledgements are sent under `always`. Failures (disk full,
 * read-only or vanished directory) never stop the loop, and one room's failure does not hold
 * back the others: the writer keeps the room's unwritten bytes (bounded), reports the error
 * through rc_store_status, and retries every second; if it had to drop bytes, the room is
 * flagged so the loop changes its epoch (clients then know its history has a hole).
 */
#ifndef RC_STORE_H
#define RC_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"

enum rc_fsync { RC_FSYNC_NO, RC_FSYNC_EVERYSEC, RC_FSYNC_ALWAYS };

#define RC_EPOCH_LEN 16

/* The writer keeps at most this many segment files open (least recently written closed
 * first, reopened on demand), or an eighth of RLIMIT_NOFILE when that is lower (at least 4):
 * however many rooms there are, the log holds at most this many descriptors plus its eventfd,
 * its directory lock, its journal (--fsync always) and, briefly, one more while it replaces an
 * epoch, name or state file or deletes a room. */
#define RC_STORE_FD_MAX 64

typedef struct rc_store rc_store;
typedef struct rc_store_room rc_store_room;

/* Called by rc_store_open for every room found on disk, with its records oldest first. */
typedef struct rc_store_loader {
    /* A room: return an opaque pointer passed to `record` and `done`, NULL to skip it. */
    void *(*room)(void *arg, const char *name, size_t len, const char *epoch);
    /* A record of the room, oldest first: key is the hash of its idempotency key as given to
     * rc_store_append, 0 when it had none (so the loop can refill its window of keys and a
     * resend after a restart is still recognised). */
    void (*record)(void *arg, void *room, uint64_t msg_id, uint64_t time_ms, uint8_t opcode,
                   uint64_t key, const char *payload, size_t len);
    /* The room's state snapshot, the blob last given to rc_store_room_state, before its
     * records (NULL: the caller keeps no state; a damaged snapshot is logged and skipped). */
    void (*state)(void *arg, void *room, const char *blob, size_t len);
    /* End of the room's records: its store handle (for appends), and whether its history may
     * have lost messages that were delivered (an unclean shutdown without the journal of
     * --fsync always, or a damaged log the journal does not cover), in which case the loop
     * picks a new epoch. Returns the epoch the room goes on with (recorded if it changed). */
    const char *(*done)(void *arg, void *room, rc_store_room *sr, bool lost);
    void *arg;
} rc_store_loader;

typedef struct rc_store_status {
    bool ok;                 /* the last write/fsync succeeded */
    int error;               /* errno of the last failure, 0 if none */
    uint64_t bytes_written;  /* bytes written since start */
    uint64_t records;        /* records appended since start */
    uint64_t bytes_dropped;  /* bytes given up after failures (history holes) */
    uint64_t fsyncs;         /* fsync calls (the journal's fdatasyncs included) */
    uint64_t journal_syncs;  /* fdatasyncs of the journal (--fsync always): one per batch */
    uint64_t repaired;       /* torn or corrupt tails truncated at start */
    size_t backlog;          /* bytes waiting for the writer */
} rc_store_status;

/* rc_store_open creates the directory if needed, loads every room through loader, and starts
 * the writer. NULL (after logging why) only when it cannot work at all (e.g. no thread); an
 * unwritable directory gives a store in the failed state that keeps retrying. on_durable(arg)
 * is called on the loop whenever durability moved: the writer finished a batch, or a room
 * that was behind caught up (see rc_store_room_durable); it may be called when nothing that
 * the caller waits for moved. */
rc_store *rc_store_open(rc_loop *loop, const char *dir, enum rc_fsync mode, size_t segment_max,
                        const rc_store_loader *loader, void (*on_durable)(void *arg), void *arg);

/* rc_store_close flushes, fsyncs, stops the writer, marks the directory clean, frees. */
void rc_store_close(rc_store *st);

/* rc_store_room_new returns the handle of a new room (its directory is created by the writer). */
rc_store_room *rc_store_room_new(rc_store *st, const char *name, size_t len, const char *epoch);

/* rc_store_room_epoch records a new epoch for the room. */
void rc_store_room_epoch(rc_store *st, rc_store_room *sr, const char *epoch);

/* rc_store_room_delete removes the room's files; the handle is gone afterwards. */
void rc_store_room_delete(rc_store *st, rc_store_room *sr);

/* rc_store_room_lost is true (once) when the writer dropped records of the room. */
bool rc_store_room_lost(rc_store_room *sr);

/* rc_store_append queues one record: the message msg_id of the room, sequenced at time_ms (wall
 * clock, ms), sent with WebSocket opcode (below 0x80), its payload[0..len), and key, the 64-bit
 * hash of its idempotency key (0: it had none; stored only when not 0, and given back to the
 * loader's record on the next start). first_kept is the oldest msg_id still retained:
 * segments entirely older are deleted when the writer rotates. Returns the batch sequence
 * number that will contain it (compare with rc_store_room_durable). */
uint64_t rc_store_append(rc_store *st, rc_store_room *sr, uint64_t msg_id, uint64_t time_ms,
                         uint8_t opcode, const void *payload, size_t len, uint64_t first_kept,
                         uint64_t key);

/* rc_store_room_state replaces the room's state snapshot with blob[0..len) (opaque to the
 * log; the rooms' state.c). The writer writes it whole (a temporary file renamed over the
 * old one, fsynced unless --fsync no) before the records of the same batch, so it is on disk
 * before any segment the caller stops needing because of it is deleted; the loader gives it
 * back before the room's records. */
void rc_store_room_state(rc_store *st, rc_store_room *sr, const void *blob, size_t len);

/* rc_store_kick hands the records appended so far to the writer (called at before-sleep). */
void rc_store_kick(rc_store *st);

/* rc_store_room_durable is the highest batch sequence number through which the room's records
 * are durable: written, and under --fsync always fsynced as well. A room with nothing pending
 * in a batch is durable through it, so a healthy room keeps up with the writer batch by batch;
 * a room whose writes (or, under always, fsyncs) fail stays where it was, holding back no
 * other room, until its records are written. A record appended with rc_store_append is
 * durable once this reaches the number that call returned (acknowledgements under --fsync
 * always wait for that). Records the writer had to drop after failures (the room is then
 * flagged, rc_store_room_lost) do not hold it back. Loop thread; sr must not have been
 * deleted (after rc_store_room_delete the handle is gone: settle what waits on it first). */
uint64_t rc_store_room_durable(const rc_store_room *sr);

/* rc_store_durable is the highest batch sequence number through which every room is durable,
 * the least rc_store_room_durable of all rooms: one failing room holds it back for all, so
 * what waits on one room should use rc_store_room_durable. For callers that need the whole
 * log (tests, tools). */
uint64_t rc_store_durable(const rc_store *st);

void rc_store_status_get(rc_store *st, rc_store_status *out);
enum rc_fsync rc_store_mode(const rc_store *st);
const char *rc_fsync_name(enum rc_fsync m);
int rc_fsync_parse(const char *s);

/* The client id mark: DIR/client_ids holds a number no client id handed out reaches, so ids
 * are never reused across restarts. rc_store_ids_load reads it (0 when absent; -1 when it
 * exists but cannot be read); rc_store_ids_save replaces it (written through a temporary file
 * and fsynced: it is written once per block of ids). 0 or -1, after logging. */
int rc_store_ids_load(const char *dir, uint64_t *mark);
int rc_store_ids_save(const char *dir, uint64_t mark);

/* rc_epoch_new writes a fresh random epoch (RC_EPOCH_LEN hex digits + NUL). */
void rc_epoch_new(char out[RC_EPOCH_LEN + 1]);

/* Tooling (`roomcast --data-dir DIR --list-rooms` / `--dump ROOM`), printing JSON lines to
 * stdout: read-only, never repairs. Return 0, or -1 after printing the problem to stderr.
 * --dump prints a record as {"msg_id":N,"time_ms":T,["key":"<16 hex digits>",]"type":"text",
 * "data":<payload>} or with "type":"binary","data_base64":"..."; "key" (the idempotency key
 * hash) only for records that have one. */
int rc_store_tool_list(const char *dir);
int rc_store_tool_dump(const char *dir, const char *room);

#endif
