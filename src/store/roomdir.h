/* roomdir.h — the files of the durable log's data directory, internal to src/store/.
 *
 *   DIR/rooms/<dirname>/name                             a long room's name (see below)
 *   DIR/rooms/<dirname>/epoch                            the room's epoch (text, one line)
 *   DIR/rooms/<dirname>/<first msg_id, 20 digits>.log    segments, oldest first (format.h)
 *   DIR/rooms/.new-<dirname>, DIR/rooms/.del-<dirname>   a room directory being created or
 *                                                        deleted (left only by a crash)
 *
 * <dirname> is rc__store_dirname of the room name (format.h): its hex for names up to 127
 * bytes, "sha256-" and the hex SHA-256 of the name beyond. A hashed directory holds the name
 * itself in its `name` file (the raw bytes, no newline), and appears under its final name only
 * with that file in it (it is made as .new-<dirname>, then renamed); it is trusted only if the
 * name hashes back to the directory's name. A deleted room's directory is renamed to
 * .del-<dirname> before its files go, so a crash never leaves half a room under a room's name.
 * Names starting with '.' are never rooms; start-up removes the .new-/.del- leftovers.
 *
 * Used from both sides: start-up restore and the tools read rooms here (the tools read-only),
 * the writer thread creates room directories, writes epochs and deletes rooms. Nothing here
 * keeps state; errors come back as negative errno.
 */
#ifndef RC_STORE_ROOMDIR_H
#define RC_STORE_ROOMDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "store/format.h"
#include "store/store.h"

/* rc__store_write_file replaces path with data[0..len) through a temporary file and a rename,
 * so a reader sees the old content or the new, never a mix; with sync, fsyncs it first.
 * Returns 0 or -errno. */
int rc__store_write_file(const char *path, const char *data, size_t len, bool sync);

/* A state file is "RCS1", u32 crc32 of the blob, u32 its length, then the blob (little-endian):
 * rc__store_write_state writes one like rc__store_write_file; rc__store_read_state reads the
 * blob of room_dir/state into *out: 1, 0 when there is none, -1 when it is damaged. */
int rc__store_write_state(const char *path, const char *blob, size_t len, bool sync);
int rc__store_read_state(const char *room_dir, rc_buf *out);

/* rc__store_remove_tree deletes dir and the files in it (a room directory has no
 * subdirectories). Returns 0 (also when dir does not exist) or -errno. */
int rc__store_remove_tree(const char *dir);

#define RC__STORE_NAME_FILE "name" /* a hashed room directory's room name */
#define RC__STORE_NEW_PREFIX ".new-"  /* a room directory being created */
#define RC__STORE_DEL_PREFIX ".del-"  /* a room directory being deleted */

/* rc__store_read_name reads the name file of room directory room_dir into out. Returns the
 * name's length (1..RC__STORE_NAME_MAX), or -1 when the file is missing, unreadable, empty or
 * longer than a room name. */
long rc__store_read_name(const char *room_dir, char out[RC__STORE_NAME_MAX]);

/* rc__store_room_name tells which room the directory rooms/dirname holds, writing its name to
 * out. Returns the name's length; or -1 with *why NULL when dirname is not a room directory's
 * name at all, or -1 with *why saying the problem when it is a hashed directory whose name
 * file is missing or does not hash back to dirname: such a directory is never trusted. */
long rc__store_room_name(const char *rooms, const char *dirname, char out[RC__STORE_NAME_MAX],
                         const char **why);

/* rc__store_create_room_dir creates rooms/dirname for room name[0..len): a hex directory with
 * mkdir (one already there is used, as before long names existed); a hashed one through
 * rooms/.new-dirname holding the name file (fsynced with sync), renamed into place. An existing
 * hashed directory is used only if its name file names this room: otherwise -EEXIST. Returns
 * 0 or -errno. */
int rc__store_create_room_dir(const char *rooms, const char *dirname, const char *name,
                              size_t len, bool sync);

/* rc__store_remove_room deletes rooms/dirname and its files: renamed to rooms/.del-dirname
 * first, so that no crash leaves a partial room under the room's name. Returns 0 (also when
 * there is no such directory) or -errno. */
int rc__store_remove_room(const char *rooms, const char *dirname);

/* rc__store_is_leftover is true for a directory entry of rooms/ that a crash left while
 * creating or deleting a room (.new-*, .del-*). */
bool rc__store_is_leftover(const char *entry);

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
