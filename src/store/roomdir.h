/* roomdir.h — the files of the durable log's data directory, internal to src/store/.
 *
 *   DIR/rooms/<hex(room)>/epoch                          the room's epoch (text, one line)
 *   DIR/rooms/<hex(room)>/<first msg_id, 20 digits>.log  segments, oldest first (format.h)
 *
 * Used from both sides: start-up restore and the tools read rooms here (the tools read-only),
 * the writer thread writes epochs and deletes rooms. Nothing here keeps state; errors come
 * back as negative errno.
 */
#ifndef RC_STORE_ROOMDIR_H
#define RC_STORE_ROOMDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* rc__store_write_file replaces path with data[0..len) through a temporary file and a rename,
 * so a reader sees the old content or the new, never a mix; with sync, fsyncs it first.
 * Returns 0 or -errno. */
int rc__store_write_file(const char *path, const char *data, size_t len, bool sync);

/* rc__store_remove_tree deletes dir and the files in it (a room directory has no
 * subdirectories). Returns 0 (also when dir does not exist) or -errno. */
int rc__store_remove_tree(const char *dir);

/* rc__store_seg_path writes the path of the segment of room directory dir whose first record
 * is msg_id first. */
void rc__store_seg_path(char *out, size_t cap, const char *dir, uint64_t first);

/* rc__store_read_epoch reads the first line of the room's epoch file (at most
 * RC_EPOCH_LEN + 1 bytes, the newline kept) into out. Returns false, out left "", when there
 * is no file or nothing in it. */
bool rc__store_read_epoch(const char *room_dir, char out[RC_EPOCH_LEN + 2]);

/* A record as read back: key is its idempotency key hash, 0 when it has none (format.h). */
typedef void rc__store_record_fn(void *arg, uint64_t msg_id, uint64_t time_ms, uint8_t opcode,
                                 uint64_t key, const char *payload, size_t len);

/* rc__store_read_room reads the segments of room directory dir in order, calling fn for each
 * valid record. At the first invalid one (torn, corrupt, or out of sequence) it stops; unless
 * readonly it truncates that segment there and deletes the later ones. Returns 1 if something
 * was repaired (or would have been), 0 if all was valid, -errno on I/O failure. On success
 * *segs (malloc'ed, the caller frees it) and *nsegs receive the segments that remain on disk,
 * and *last_size (if not NULL) the size of the last one. */
int rc__store_read_room(const char *dir, bool readonly, rc__store_record_fn *fn, void *arg,
                        uint64_t **segs, size_t *nsegs, size_t *last_size);

#endif
