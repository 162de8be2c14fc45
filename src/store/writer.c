/* writer.c — the durable log's batches and its writer thread; see store.h ("Threads").
 *
 * Loop side: every operation (a record, a new room, a new epoch, a deleted room) is appended
 * to the loop's own batch without a lock or a syscall (rc_store_append does not even compute
 * the checksum), and rc_store_kick hands the batch over under the mutex once per loop
 * iteration. Writer side: the thread applies a batch to its rooms, writes each touched room's
 * records with one write() (keeping a bounded number of segments open: "open segments"
 * below), rotates segments and drops the ones retention no longer needs, fsyncs per --fsync,
 * and reports the highest batch on disk through the eventfd. Under --fsync always a batch is
 * made durable by one fdatasync of the journal, whatever the number of rooms ("the journal"
 * below). A failure
 * keeps the room's bytes (up to ROOM_BACKLOG_MAX) and the thread retries at least once a
 * second; bytes it has to give up flag the room as lost.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "store/format.h"
#include "store/roomdir.h"

#define ROOM_BACKLOG_MAX (16u << 20) /* unwritten bytes kept per room while the disk fails */

enum op_kind { OP_RECORD, OP_NEW, OP_EPOCH, OP_DELETE, OP_STATE };

/* An operation from the loop to the writer, followed in the batch by its data. */
struct op {
    uint8_t kind;            /* enum op_kind */
    rc_store_room *sr;       /* the room */
    uint64_t first_kept;     /* OP_RECORD: oldest msg_id still retained */
    uint32_t len;            /* bytes of data following this header */
};

/* ---- the writer thread -------------------------------------------------------------------- */

void rc__store_set_error(rc_store *st, int err, const char *what, const char *path)
{
    int old = atomic_exchange(&st->error, err);
    if (old != err) rc_error("durable log: cannot %s '%s': %s", what, path, strerror(err));
}

void rc__store_touch(rc_store *st, rc_store_room *sr)
{
    if (sr->touched) return;
    sr->touched = true;
    sr->touched_next = st->touched;
    st->touched = sr;
}

static void dir_lost(rc_store *st, rc_store_room *sr);

/* Makes sure the room's directory exists and holds its current epoch. */
static bool ensure_dir(rc_store *st, rc_store_room *sr)
{
    if (!sr->dir_ready) {
        char rooms[PATH_MAX];
        snprintf(rooms, sizeof(rooms), "%s/rooms", st->dir);
        mkdir(st->dir, 0755);
        mkdir(rooms, 0755);
        int r = rc__store_create_room_dir(rooms, sr->dirname, sr->name, sr->name_len,
                                          st->mode != RC_FSYNC_NO);
        if (r < 0) {
            rc__store_set_error(st, -r, "create", sr->dir);
            return false;
        }
        sr->dir_ready = true;
    }
    if (sr->epoch_dirty) {
        char p[PATH_MAX + 8], line[RC_EPOCH_LEN + 2];
        snprintf(p, sizeof(p), "%s/epoch", sr->dir);
        snprintf(line, sizeof(line), "%s\n", sr->epoch);
        int r = rc__store_write_file(p, line, strlen(line), st->mode != RC_FSYNC_NO);
        if (r < 0) {
            rc__store_set_error(st, -r, "write", p);
            if (r == -ENOENT || r == -ENOTDIR) dir_lost(st, sr);
            return false;
        }
        sr->epoch_dirty = false;
    }
    if (sr->state_dirty) {
        char p[PATH_MAX + 8];
        snprintf(p, sizeof(p), "%s/state", sr->dir);
        int r = rc__store_write_state(p, rc_buf_head(&sr->state), rc_buf_size(&sr->state),
                                      st->mode != RC_FSYNC_NO);
        if (r < 0) {
            rc__store_set_error(st, -r, "write", p);
            if (r == -ENOENT || r == -ENOTDIR) dir_lost(st, sr);
            return false;
        }
        sr->state_dirty = false;
    }
    return true;
}

/* ---- durability, room by room -------------------------------------------------------------
 *
 * A room is "behind" when, after a pass, some of its records are not durable: not written
 * (its directory is unusable, the disk is full), or under --fsync always not fsynced. Its
 * durability then stays where it was at the end of the last pass (st->passed: it was not
 * behind then) while every other room moves on with each batch; once its records are all
 * written (and synced) it leaves the behind list and follows st->passed again. Stores and
 * loads are ordered so that the loop, reading st->passed before sr->behind
 * (rc_store_room_durable), never sees a value the room has not reached: a room is marked
 * behind before st->passed moves past its frozen value, and unmarked only once it has caught
 * up with the batch st->passed is about to take.
 */

/* Whether a room's records are durable only once its segment is fsynced: --fsync always
 * without a journal (the journal could not be made). With one, they are durable once
 * journaled and written. */
static bool syncs_rooms(const rc_store *st)
{
    return st->mode == RC_FSYNC_ALWAYS && st->jfd < 0;
}

static void mark_behind(rc_store *st, rc_store_room *sr)
{
    if (atomic_load(&sr->behind)) return;
    atomic_store(&sr->durable, atomic_load(&st->passed));
    atomic_store(&sr->behind, true);
    sr->behind_next = st->behind;
    st->behind = sr;
}

static void unlink_behind(rc_store *st, rc_store_room *sr)
{
    if (!atomic_load(&sr->behind)) return;
    rc_store_room **pp = &st->behind;
    while (*pp && *pp != sr) pp = &(*pp)->behind_next;
    if (*pp) *pp = sr->behind_next;
    sr->behind_next = NULL;
    atomic_store(&sr->behind, false);
}

/* After the pass over batch seq: rooms that caught up leave the behind list, then st->passed
 * and st->durable (every room: the least of the behind rooms' values) are published. Returns
 * whether anything moved, i.e. whether the loop should look again. */
static bool settle(rc_store *st, uint64_t seq)
{
    bool moved = false;
    uint64_t all = seq;
    rc_store_room **pp = &st->behind;
    while (*pp) {
        rc_store_room *sr = *pp;
        if (rc_buf_size(&sr->wbuf) == 0 && !(syncs_rooms(st) && sr->need_fsync)) {
            *pp = sr->behind_next;
            sr->behind_next = NULL;
            atomic_store(&sr->behind, false);
            moved = true;
            continue;
        }
        uint64_t d = atomic_load(&sr->durable);
        if (d < all) all = d;
        pp = &sr->behind_next;
    }
    if (atomic_load(&st->passed) != seq) {
        atomic_store(&st->passed, seq);
        moved = true;
    }
    if (atomic_load(&st->durable) != all) {
        atomic_store(&st->durable, all);
        moved = true;
    }
    return moved;
}

/* ---- open segments: a bounded cache ------------------------------------------------------
 *
 * A room keeps its current segment open between batches, so a busy room costs one write() a
 * batch, not an open() and a close() as well. But rooms outlive their members (--room-ttl) and
 * one client can publish into hundreds of them: a descriptor per room would let the log use up
 * RLIMIT_NOFILE and leave the server unable to accept connections or write its own logs. So
 * at most st->fd_max segments are open (RC_STORE_FD_MAX, store.h), kept most recently written
 * first; opening one more closes the least recently written, fsynced first unless --fsync no
 * (so closing never loses what the next sync would have covered). A segment closed with bytes
 * not fsynced (--fsync no, or a failed fsync) puts its room on the unsynced list, and the next
 * sync reopens it to fsync it. The two lists share the rooms' seg_prev/seg_next links: a room
 * is on one of them at most (sr->seg_list says which).
 */

static void seg_unlink(rc_store *st, rc_store_room *sr)
{
    if (sr->seg_list == RC__SEG_NONE) return;
    bool open = sr->seg_list == RC__SEG_OPEN;
    if (sr->seg_prev) sr->seg_prev->seg_next = sr->seg_next;
    else if (open) st->open_head = sr->seg_next;
    else st->unsynced = sr->seg_next;
    if (sr->seg_next) sr->seg_next->seg_prev = sr->seg_prev;
    else if (open) st->open_tail = sr->seg_prev;
    if (open) st->nopen--;
    sr->seg_prev = sr->seg_next = NULL;
    sr->seg_list = RC__SEG_NONE;
}

/* Puts sr at the head of a list: RC__SEG_OPEN (most recently written) or RC__SEG_UNSYNCED. */
static void seg_push(rc_store *st, rc_store_room *sr, uint8_t list)
{
    rc_store_room **head = list == RC__SEG_OPEN ? &st->open_head : &st->unsynced;
    sr->seg_prev = NULL;
    sr->seg_next = *head;
    if (*head) (*head)->seg_prev = sr;
    else if (list == RC__SEG_OPEN) st->open_tail = sr;
    *head = sr;
    sr->seg_list = list;
    if (list == RC__SEG_OPEN) st->nopen++;
}

/* Closes sr's segment, if open. Bytes in it not fsynced yet leave sr on the unsynced list. */
static void seg_close(rc_store *st, rc_store_room *sr)
{
    if (sr->fd < 0) return;
    seg_unlink(st, sr);
    close(sr->fd);
    sr->fd = -1;
    if (sr->need_fsync) seg_push(st, sr, RC__SEG_UNSYNCED);
}

void rc__store_seg_forget(rc_store *st, rc_store_room *sr)
{
    seg_close(st, sr);
    seg_unlink(st, sr);
}

static bool sync_room(rc_store *st, rc_store_room *sr);

/* Opens segment first of sr (creating it with create), closing the least recently written
 * segment first when st->fd_max are open. Returns 0, or -errno after recording the error. */
static int seg_open(rc_store *st, rc_store_room *sr, uint64_t first, bool create)
{
    if (st->nopen >= st->fd_max && st->open_tail) {
        rc_store_room *lru = st->open_tail;
        /* on failure it is left unsynced; with a journal the next checkpoint syncs it */
        if (st->mode != RC_FSYNC_NO && st->jfd < 0) sync_room(st, lru);
        seg_close(st, lru);
    }
    char p[PATH_MAX + 32];
    rc__store_seg_path(p, sizeof(p), sr->dir, first);
    int fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
    if (fd < 0) {
        int err = errno;
        rc__store_set_error(st, err, "open", p);
        return -err;
    }
    seg_unlink(st, sr); /* off the unsynced list, if it was there */
    seg_push(st, sr, RC__SEG_OPEN);
    sr->fd = fd;
    return 0;
}

/* Fsyncs sr's current segment if it has bytes not synced yet, reopening it if it was closed
 * since (never creating it: a segment that vanished has nothing left to sync). */
static bool sync_room(rc_store *st, rc_store_room *sr)
{
    if (!sr->need_fsync) return true;
    if (sr->fd < 0) {
        int r = sr->nsegs ? seg_open(st, sr, sr->segs[sr->nsegs - 1], false) : -ENOENT;
        if (r == -ENOENT || r == -ENOTDIR) {
            /* The segment is gone, and its bytes that were never synced with it. */
            atomic_store(&sr->lost, true);
            dir_lost(st, sr);
            return false;
        }
        if (r < 0) {
            if (syncs_rooms(st)) mark_behind(st, sr);
            return false;
        }
    }
    if (fsync(sr->fd) < 0) {
        rc__store_set_error(st, errno, "fsync", sr->dir);
        if (syncs_rooms(st)) mark_behind(st, sr);
        return false;
    }
    sr->need_fsync = false;
    atomic_fetch_add(&st->fsyncs, 1);
    return true;
}

/* The room's directory vanished, or something else stands in its place (ENOENT, ENOTDIR):
 * what was in it is gone. Start afresh: the directory is made again with its epoch (and name)
 * on the next attempt, and the next segment is named after the first record it gets. */
static void dir_lost(rc_store *st, rc_store_room *sr)
{
    sr->need_fsync = false;
    rc__store_seg_forget(st, sr);
    sr->dir_ready = false;
    sr->epoch_dirty = true;
    sr->state_dirty = rc_buf_size(&sr->state) > 0;
    sr->nsegs = 0;
    sr->seg_size = 0;
}

/* Opens the segment of sr that starts at msg_id first, adding it to sr's segments if new.
 * Returns 0 or -errno. */
static int open_segment(rc_store *st, rc_store_room *sr, uint64_t first)
{
    bool fresh = sr->nsegs == 0 || sr->segs[sr->nsegs - 1] != first;
    if (fresh && sr->nsegs == sr->capsegs) {
        size_t cap = sr->capsegs ? sr->capsegs * 2 : 8;
        uint64_t *v = realloc(sr->segs, cap * sizeof(*v));
        if (!v) return -ENOMEM;
        sr->segs = v;
        sr->capsegs = cap;
    }
    int r = seg_open(st, sr, first, true);
    if (r < 0) {
        if (r == -ENOENT || r == -ENOTDIR) dir_lost(st, sr);
        return r;
    }
    if (fresh) {
        sr->segs[sr->nsegs++] = first;
        sr->seg_size = 0;
    }
    return 0;
}

/* Deletes segments whose messages are all older than first_kept (never the current one). */
static void trim_segments(rc_store_room *sr)
{
    size_t drop = 0;
    while (drop + 1 < sr->nsegs && sr->segs[drop + 1] <= sr->first_kept) drop++;
    for (size_t i = 0; i < drop; i++) {
        char p[PATH_MAX + 32];
        rc__store_seg_path(p, sizeof(p), sr->dir, sr->segs[i]);
        unlink(p);
    }
    if (drop) {
        memmove(sr->segs, sr->segs + drop, (sr->nsegs - drop) * sizeof(*sr->segs));
        sr->nsegs -= drop;
    }
}

/* Writes a room's pending records. Returns true when nothing is left pending. */
static bool write_room(rc_store *st, rc_store_room *sr)
{
    if (rc_buf_size(&sr->wbuf) == 0 && !sr->state_dirty) return true;
    if (!ensure_dir(st, sr)) goto failed;
    if (rc_buf_size(&sr->wbuf) == 0) return true; /* a state snapshot alone */
    uint64_t first_id = rc__store_rec_msg_id((const unsigned char *)rc_buf_head(&sr->wbuf));
    if (sr->nsegs && sr->seg_size > 0 && sr->seg_size + rc_buf_size(&sr->wbuf) > st->segment_max) {
        /* Rotate. The full segment is synced first (per --fsync): once closed, nothing would
         * sync it, and under `always` its last records may not be acknowledged yet. */
        if (st->mode != RC_FSYNC_NO && !sync_room(st, sr)) goto failed;
        sr->need_fsync = false;
        seg_close(st, sr);
        sr->seg_size = 0;
        if (open_segment(st, sr, first_id) < 0) goto failed;
        trim_segments(sr);
    }
    if (sr->fd < 0) {
        uint64_t first = sr->nsegs && sr->seg_size > 0 ? sr->segs[sr->nsegs - 1] : first_id;
        if (open_segment(st, sr, first) < 0) goto failed;
    } else if (st->open_head != sr) {
        seg_unlink(st, sr); /* most recently written now */
        seg_push(st, sr, RC__SEG_OPEN);
    }
    while (rc_buf_size(&sr->wbuf) > 0) {
        ssize_t w = write(sr->fd, rc_buf_head(&sr->wbuf), rc_buf_size(&sr->wbuf));
        if (w < 0) {
            if (errno == EINTR) continue;
            int err = errno;
            /* Cut off whatever part of a record made it, so the file ends on a record. */
            if (ftruncate(sr->fd, (off_t)sr->seg_size) < 0) {}
            seg_close(st, sr);
            char p[PATH_MAX + 32];
            rc__store_seg_path(p, sizeof(p), sr->dir, sr->nsegs ? sr->segs[sr->nsegs - 1] : first_id);
            rc__store_set_error(st, err, "write", p);
            goto failed;
        }
        if ((size_t)w < rc_buf_size(&sr->wbuf)) {
            /* A short write means the device is full; treat it as a failure of the rest. */
            if (ftruncate(sr->fd, (off_t)sr->seg_size) < 0) {}
            seg_close(st, sr);
            rc__store_set_error(st, ENOSPC, "write", sr->dir);
            goto failed;
        }
        sr->seg_size += (size_t)w;
        atomic_fetch_add(&st->bytes_written, (uint64_t)w);
        rc_buf_consume(&sr->wbuf, (size_t)w);
        sr->journaled = sr->journaled > (size_t)w ? sr->journaled - (size_t)w : 0;
        sr->need_fsync = true;
    }
    return true;
failed:
    if (rc_buf_size(&sr->wbuf) > ROOM_BACKLOG_MAX) {
        atomic_fetch_add(&st->bytes_dropped, rc_buf_size(&sr->wbuf));
        rc_buf_release(&sr->wbuf);
        sr->journaled = 0;
        atomic_store(&sr->lost, true);
        return true;
    }
    return false;
}

static bool journal_entry(rc_store *st, uint8_t kind, rc_store_room *sr, size_t from);

/* Applies one batch of operations. */
static void apply_batch(rc_store *st, rc_buf *b)
{
    char *p = rc_buf_head(b), *end = p + rc_buf_size(b);
    while (p < end) {
        struct op o;
        memcpy(&o, p, sizeof(o));
        char *data = p + sizeof(o);
        p = data + o.len;
        rc_store_room *sr = o.sr;
        switch (o.kind) {
        case OP_NEW:
            rc__store_room_link(st, sr);
            memcpy(sr->epoch, data, RC_EPOCH_LEN);
            sr->epoch[RC_EPOCH_LEN] = '\0';
            sr->epoch_dirty = true;
            rc__store_touch(st, sr);
            break;
        case OP_EPOCH:
            memcpy(sr->epoch, data, RC_EPOCH_LEN);
            sr->epoch_dirty = true;
            rc__store_touch(st, sr);
            break;
        case OP_RECORD:
            rc__store_rec_seal((unsigned char *)data, o.len);
            if (rc_buf_append(&sr->wbuf, data, o.len) < 0) {
                atomic_fetch_add(&st->bytes_dropped, o.len);
                atomic_store(&sr->lost, true);
            }
            sr->first_kept = o.first_kept;
            atomic_fetch_add(&st->records, 1);
            rc__store_touch(st, sr);
            break;
        case OP_STATE:
            rc_buf_reset(&sr->state);
            if (rc_buf_append(&sr->state, data, o.len) < 0) {
                /* the older snapshot stays; segments it needs may go: the state may come
                 * back incomplete after a restart */
                atomic_fetch_add(&st->bytes_dropped, o.len);
                atomic_store(&sr->lost, true);
                break;
            }
            sr->state_dirty = true;
            rc__store_touch(st, sr);
            break;
        case OP_DELETE:
            if (sr->touched) {
                /* Unlink from the touched list before freeing. */
                rc_store_room **pp = &st->touched;
                while (*pp && *pp != sr) pp = &(*pp)->touched_next;
                if (*pp) *pp = sr->touched_next;
            }
            rc__store_seg_forget(st, sr);
            unlink_behind(st, sr);
            /* out of memory: the room may come back from older entries after a crash */
            if (st->jfd >= 0) (void)journal_entry(st, RC__STORE_J_DELETE, sr, 0);
            {
                char rooms[PATH_MAX];
                snprintf(rooms, sizeof(rooms), "%s/rooms", st->dir);
                int r = rc__store_remove_room(rooms, sr->dirname);
                if (r < 0) rc_warn("durable log: cannot remove '%s': %s", sr->dir, strerror(-r));
            }
            rc__store_room_free(st, sr);
            break;
        }
    }
    rc_buf_reset(b);
}

static bool flush_touched(rc_store *st)
{
    bool ok = true;
    rc_store_room *keep = NULL, *sr = st->touched;
    st->touched = NULL;
    size_t backlog = 0;
    while (sr) {
        rc_store_room *next = sr->touched_next;
        sr->touched = false;
        bool done = write_room(st, sr) && (sr->epoch_dirty ? ensure_dir(st, sr) : true);
        if (rc_buf_size(&sr->wbuf) > 0) mark_behind(st, sr);
        if (!done) {
            ok = false;
            backlog += rc_buf_size(&sr->wbuf);
            sr->touched_next = keep;
            sr->touched = true;
            keep = sr;
        }
        sr = next;
    }
    st->touched = keep;
    atomic_store(&st->backlog, backlog);
    return ok;
}

/* Fsyncs every segment with bytes not synced yet: the open ones, then those closed since
 * (reopened one at a time: a reopen may close another, already synced, segment). */
static bool sync_all(rc_store *st)
{
    bool ok = true;
    for (rc_store_room *sr = st->open_head; sr; sr = sr->seg_next)
        if (!sync_room(st, sr)) ok = false;
    /* Taken off as a whole: rooms whose sync fails here go back on for the next time, and
     * nothing pushed meanwhile is visited twice. */
    rc_store_room *list = st->unsynced;
    st->unsynced = NULL;
    while (list) {
        rc_store_room *sr = list;
        list = sr->seg_next;
        sr->seg_prev = sr->seg_next = NULL;
        sr->seg_list = RC__SEG_NONE;
        if (!sync_room(st, sr)) {
            ok = false;
            if (sr->fd < 0) seg_push(st, sr, RC__SEG_UNSYNCED);
        }
    }
    return ok;
}

/* ---- the journal ---------------------------------------------------------------------------
 *
 * Under --fsync always, fsyncing every room's segment after every batch costs one fsync per
 * room that changed, and delivery waits for all of them. Instead each pass first appends, for
 * every room with records not journaled yet (or a new epoch), one entry to DIR/journal
 * (format.h) — one write() and one fdatasync() for the whole batch, however many rooms — and
 * only then writes the rooms' segments, without fsyncing them: a room's records are durable
 * once journaled and written (settle). Once a second, or when the journal passes JOURNAL_MAX,
 * a checkpoint starts: the journal is renamed journal.old and a new one begins, and the
 * segments written so far are fsynced (the everysec cost) one at a time *between* batches —
 * after the loop was told a batch is durable, and never while another batch waits — so a
 * checkpoint never holds a batch back by more than one segment's fsync; once they all are,
 * journal.old is deleted. Start-up (journal.c) appends to each room's segments whatever records
 * the journals hold beyond them, so a crash loses nothing a journal made durable; a room whose
 * bytes were journaled but not yet written when a checkpoint began has them journaled again
 * in the new journal (sr->journaled back to 0), so it never waits on a journal about to go.
 */

#define JOURNAL_MAX (64u << 20) /* journal bytes that force a checkpoint before the second */

/* Appends to st->jbuf one entry of kind for sr: a room's records from wbuf offset from on (and
 * its epoch), or a deletion. False when out of memory. */
static bool journal_entry(rc_store *st, uint8_t kind, rc_store_room *sr, size_t from)
{
    size_t recs = kind == RC__STORE_J_ROOM ? rc_buf_size(&sr->wbuf) - from : 0;
    if (rc_buf_reserve(&st->jbuf, RC__STORE_J_HEAD_MAX + recs) < 0) return false;
    unsigned char *w = (unsigned char *)rc_buf_tail(&st->jbuf);
    size_t h = rc__store_jhead(w, kind, sr->name, sr->name_len, sr->epoch, recs);
    if (recs) memcpy(w + h, rc_buf_head(&sr->wbuf) + from, recs);
    rc__store_jseal(w, h + recs);
    rc_buf_commit(&st->jbuf, h + recs);
    return true;
}

/* Journals what the touched rooms have not journaled yet, with one write and one fdatasync.
 * Returns false (after recording the error) when the journal could not be made durable: the
 * journal is cut back and the rooms' records stay unwritten for the next pass. */
static bool journal_pass(rc_store *st)
{
    int err = 0;
    for (rc_store_room *sr = st->touched; sr && !err; sr = sr->touched_next)
        if ((rc_buf_size(&sr->wbuf) > sr->journaled || sr->epoch_dirty) &&
            !journal_entry(st, RC__STORE_J_ROOM, sr, sr->journaled))
            err = ENOMEM;
    size_t n = rc_buf_size(&st->jbuf), done = 0;
    if (n == 0) return true;
    char p[PATH_MAX + 16];
    while (!err && done < n) {
        ssize_t w = write(st->jfd, rc_buf_head(&st->jbuf) + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            err = w < 0 ? errno : ENOSPC;
            break;
        }
        done += (size_t)w;
    }
    if (!err && fdatasync(st->jfd) < 0) err = errno;
    if (err) {
        /* What made it may or may not be durable: cut it off, and journal it all again. */
        if (ftruncate(st->jfd, (off_t)st->jsize) < 0) {}
        snprintf(p, sizeof(p), "%s/" RC__STORE_JOURNAL_FILE, st->dir);
        rc__store_set_error(st, err, "write", p);
        rc_buf_reset(&st->jbuf);
        return false;
    }
    atomic_fetch_add(&st->fsyncs, 1);
    atomic_fetch_add(&st->journal_syncs, 1);
    st->jsize += n;
    rc_buf_reset(&st->jbuf);
    for (rc_store_room *sr = st->touched; sr; sr = sr->touched_next)
        sr->journaled = rc_buf_size(&sr->wbuf);
    return true;
}

/* The journal failed: the touched rooms keep their records (up to ROOM_BACKLOG_MAX each, as
 * when their own writes fail) and are behind until a pass journals them. */
static bool hold_touched(rc_store *st)
{
    size_t backlog = 0;
    for (rc_store_room *sr = st->touched; sr; sr = sr->touched_next) {
        if (rc_buf_size(&sr->wbuf) > ROOM_BACKLOG_MAX) {
            atomic_fetch_add(&st->bytes_dropped, rc_buf_size(&sr->wbuf));
            rc_buf_release(&sr->wbuf);
            sr->journaled = 0;
            atomic_store(&sr->lost, true);
        }
        if (rc_buf_size(&sr->wbuf) > 0) mark_behind(st, sr);
        backlog += rc_buf_size(&sr->wbuf);
    }
    atomic_store(&st->backlog, backlog);
    return false;
}

static void sync_dir(const char *dir);

static void ckpt_push(rc_store *st, rc_store_room *sr)
{
    if (sr->in_ckpt || !sr->need_fsync) return;
    sr->in_ckpt = true;
    sr->ckpt_next = st->ckpt;
    st->ckpt = sr;
}

void rc__store_ckpt_forget(rc_store *st, rc_store_room *sr)
{
    if (!sr->in_ckpt) return;
    rc_store_room **pp = &st->ckpt;
    while (*pp && *pp != sr) pp = &(*pp)->ckpt_next;
    if (*pp) *pp = sr->ckpt_next;
    sr->ckpt_next = NULL;
    sr->in_ckpt = false;
}

static void journal_path(const rc_store *st, char *out, size_t cap, const char *file)
{
    snprintf(out, cap, "%s/%s", st->dir, file);
}

/* Starts a checkpoint: the journal becomes journal.old, a new one begins (its name synced
 * before anything relies on it), and every segment with bytes not fsynced joins the list
 * checkpoint_step works through. */
static void checkpoint_begin(rc_store *st)
{
    char cur[PATH_MAX + 16], old[PATH_MAX + 16];
    journal_path(st, cur, sizeof(cur), RC__STORE_JOURNAL_FILE);
    journal_path(st, old, sizeof(old), RC__STORE_JOURNAL_OLD);
    if (rename(cur, old) < 0) {
        rc__store_set_error(st, errno, "rename", cur);
        return;
    }
    int fd = open(cur, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc__store_set_error(st, errno, "create", cur);
        if (rename(old, cur) < 0) {}
        return;
    }
    sync_dir(st->dir);
    close(st->jfd);
    st->jfd = fd;
    st->jsize = 0;
    st->jold = true;
    for (rc_store_room *sr = st->open_head; sr; sr = sr->seg_next) ckpt_push(st, sr);
    for (rc_store_room *sr = st->unsynced; sr; sr = sr->seg_next) ckpt_push(st, sr);
    for (rc_store_room *sr = st->touched; sr; sr = sr->touched_next) sr->journaled = 0;
}

/* Whether a batch (or the order to stop) waits for the writer. */
static bool batch_waiting(rc_store *st)
{
    pthread_mutex_lock(&st->mu);
    bool w = rc_buf_size(&st->handoff) > 0 || st->stop;
    pthread_mutex_unlock(&st->mu);
    return w;
}

/* Goes on with the checkpoint under way until a batch waits: fsyncs the listed segments one
 * by one, then deletes journal.old. Returns false when a fsync failed (retried later). */
static bool checkpoint_step(rc_store *st)
{
    while (st->ckpt) {
        if (batch_waiting(st)) return true;
        rc_store_room *sr = st->ckpt;
        st->ckpt = sr->ckpt_next;
        sr->ckpt_next = NULL;
        sr->in_ckpt = false;
        /* a segment that vanished has nothing left to sync (dir_lost cleared need_fsync) */
        if (!sync_room(st, sr) && sr->need_fsync) {
            ckpt_push(st, sr);
            return false;
        }
    }
    if (st->jold) {
        char old[PATH_MAX + 16];
        journal_path(st, old, sizeof(old), RC__STORE_JOURNAL_OLD);
        if (unlink(old) < 0 && errno != ENOENT) rc__store_set_error(st, errno, "remove", old);
        st->jold = false; /* a copy that comes back after a crash only repeats the segments */
    }
    return true;
}

/* The whole checkpoint at once (at close): every segment fsynced, both journals emptied. */
static bool checkpoint_all(rc_store *st)
{
    if (!sync_all(st)) return false; /* the journals still hold what the segments may lack */
    while (st->ckpt) rc__store_ckpt_forget(st, st->ckpt);
    char old[PATH_MAX + 16];
    journal_path(st, old, sizeof(old), RC__STORE_JOURNAL_OLD);
    if (unlink(old) < 0 && errno != ENOENT) rc__store_set_error(st, errno, "remove", old);
    st->jold = false;
    if (st->jsize == 0) return true;
    if (ftruncate(st->jfd, 0) < 0) {
        char p[PATH_MAX + 16];
        journal_path(st, p, sizeof(p), RC__STORE_JOURNAL_FILE);
        rc__store_set_error(st, errno, "truncate", p);
        return false;
    }
    st->jsize = 0;
    for (rc_store_room *sr = st->touched; sr; sr = sr->touched_next) sr->journaled = 0;
    return true;
}

/* Fsyncs the data directory itself, so a file created or removed in it stays so. */
static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    if (fsync(fd) < 0) {}
    close(fd);
}

int rc__store_journal_start(rc_store *st)
{
    char p[PATH_MAX + 16];
    snprintf(p, sizeof(p), "%s/" RC__STORE_JOURNAL_FILE, st->dir);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    if (fsync(fd) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    /* start-up put what the old journals held into the segments and synced them */
    journal_path(st, p, sizeof(p), RC__STORE_JOURNAL_OLD);
    unlink(p);
    sync_dir(st->dir);
    st->jfd = fd;
    st->jsize = 0;
    return 0;
}

void rc__store_journal_stop(rc_store *st)
{
    char p[PATH_MAX + 16], q[PATH_MAX + 16];
    journal_path(st, p, sizeof(p), RC__STORE_JOURNAL_FILE);
    journal_path(st, q, sizeof(q), RC__STORE_JOURNAL_OLD);
    bool a = unlink(p) == 0, b = unlink(q) == 0;
    if (a || b) sync_dir(st->dir);
}

void *rc__store_writer_main(void *arg)
{
    rc_store *st = arg;
    rc_buf work = RC_BUF_INIT;
    uint64_t last_sync = rc_clock_ns();
    bool ckpt_stalled = false; /* a checkpoint fsync failed: wait for the next second */
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->stop && rc_buf_size(&st->handoff) == 0) {
            /* A checkpoint under way goes on between batches. */
            if ((st->ckpt || st->jold) && !ckpt_stalled) break;
            /* Wake at least once a second: everysec fsync and retries after failures. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            if (pthread_cond_timedwait(&st->cv, &st->mu, &ts) == ETIMEDOUT) {
                ckpt_stalled = false;
                break;
            }
        }
        rc_buf tmp = work;
        work = st->handoff;
        st->handoff = tmp;
        uint64_t seq = st->handoff_seq;
        bool stop = st->stop;
        pthread_mutex_unlock(&st->mu);

        apply_batch(st, &work);
        /* With a journal, nothing reaches a segment before it is in the durable journal. */
        bool ok = st->jfd < 0 || journal_pass(st) ? flush_touched(st) : hold_touched(st);
        uint64_t now = rc_clock_ns();
        if (st->jfd >= 0) {
            if (stop) {
                ok = checkpoint_all(st) && ok;
            } else if (!st->jold && st->jsize > 0 &&
                       (st->jsize >= JOURNAL_MAX || now - last_sync >= RC_NS_PER_SEC)) {
                checkpoint_begin(st);
                last_sync = now;
            }
        } else if (st->mode == RC_FSYNC_ALWAYS || stop ||
                   (st->mode == RC_FSYNC_EVERYSEC && now - last_sync >= RC_NS_PER_SEC)) {
            ok = sync_all(st) && ok;
            last_sync = now;
        }
        bool moved = settle(st, seq);
        /* Before the loop is told, so that what it then reads of the status is current. */
        if (ok && st->touched == NULL && st->behind == NULL && atomic_load(&st->error)) {
            atomic_store(&st->error, 0);
            rc_info("durable log: writing again");
        }
        if (moved) {
            uint64_t one = 1;
            if (write(st->efd_io.fd, &one, sizeof(one)) < 0) {}
        }
        /* After the loop was told: the segments' fsyncs never delay the batch just done (a
         * failure is recorded, and retried after the next second). */
        if (st->jfd >= 0 && !stop && !checkpoint_step(st)) ckpt_stalled = true;
        pthread_mutex_lock(&st->mu);
        if (stop && rc_buf_size(&st->handoff) == 0) break;
    }
    pthread_mutex_unlock(&st->mu);
    rc_buf_release(&work);
    return NULL;
}

/* ---- loop side ---------------------------------------------------------------------------- */

/* Appends an operation to the loop's private batch: no lock, no syscall. */
static void post(rc_store *st, uint8_t kind, rc_store_room *sr, uint64_t first_kept,
                 const void *a, size_t alen, const void *b, size_t blen)
{
    struct op o = {.kind = kind, .sr = sr, .first_kept = first_kept, .len = (uint32_t)(alen + blen)};
    if (rc_buf_reserve(&st->filling, sizeof(o) + alen + blen) == 0) {
        char *w = rc_buf_tail(&st->filling);
        memcpy(w, &o, sizeof(o));
        if (alen) memcpy(w + sizeof(o), a, alen);
        if (blen) memcpy(w + sizeof(o) + alen, b, blen);
        rc_buf_commit(&st->filling, sizeof(o) + alen + blen);
    } else {
        atomic_fetch_add(&st->bytes_dropped, alen + blen);
        if (sr) atomic_store(&sr->lost, true);
    }
}

rc_store_room *rc_store_room_new(rc_store *st, const char *name, size_t len, const char *epoch)
{
    rc_store_room *sr = rc__store_room_alloc(st, name, len);
    if (!sr) return NULL;
    post(st, OP_NEW, sr, 0, epoch, RC_EPOCH_LEN, NULL, 0);
    return sr;
}

void rc_store_room_epoch(rc_store *st, rc_store_room *sr, const char *epoch)
{
    post(st, OP_EPOCH, sr, 0, epoch, RC_EPOCH_LEN, NULL, 0);
}

void rc_store_room_state(rc_store *st, rc_store_room *sr, const void *blob, size_t len)
{
    post(st, OP_STATE, sr, 0, blob, len, NULL, 0);
}

void rc_store_room_delete(rc_store *st, rc_store_room *sr)
{
    post(st, OP_DELETE, sr, 0, NULL, 0, NULL, 0);
}

uint64_t rc_store_append(rc_store *st, rc_store_room *sr, uint64_t msg_id, uint64_t time_ms,
                             uint8_t opcode, const void *payload, size_t len, uint64_t first_kept,
                             uint64_t key)
{
    /* The checksum is left to the writer thread: the loop only copies. */
    unsigned char h[RC__STORE_REC_HEAD_MAX];
    size_t hl = rc__store_rec_head(h, msg_id, time_ms, opcode, key, len);
    post(st, OP_RECORD, sr, first_kept, h, hl, payload, len);
    return st->seq + 1;
}

void rc_store_kick(rc_store *st)
{
    if (rc_buf_size(&st->filling) == 0) return;
    pthread_mutex_lock(&st->mu);
    {
        /* Append to what the writer has not taken yet, or hand over the whole buffer. */
        if (rc_buf_size(&st->handoff) == 0) {
            rc_buf tmp = st->handoff;
            st->handoff = st->filling;
            st->filling = tmp;
        } else if (rc_buf_append(&st->handoff, rc_buf_head(&st->filling),
                                 rc_buf_size(&st->filling)) == 0) {
            rc_buf_reset(&st->filling);
        }
        st->seq++;
        st->handoff_seq = st->seq;
        pthread_cond_signal(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
}
