/* store.c — the durable log's store object: open (start-up restore and repair of every room,
 * then the writer thread), close, room handles and status; see store.h.
 *
 * The rest of the store lives beside it: format.c (the record format and room-directory
 * names), roomdir.c (the files: reading and repairing a room's segments, atomic small files),
 * writer.c (the batches and the writer thread: writes, fsync, retention, failures) and
 * tools.c (--list-rooms, --dump). store_int.h holds what store.c and writer.c share.
 */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "store/format.h"
#include "store/roomdir.h"
#include "store/store_int.h"

const char *rc_fsync_name(enum rc_fsync m)
{
    return m == RC_FSYNC_NO ? "no" : m == RC_FSYNC_EVERYSEC ? "everysec" : "always";
}

int rc_fsync_parse(const char *s)
{
    if (strcmp(s, "no") == 0) return RC_FSYNC_NO;
    if (strcmp(s, "everysec") == 0) return RC_FSYNC_EVERYSEC;
    if (strcmp(s, "always") == 0) return RC_FSYNC_ALWAYS;
    return -1;
}

enum rc_fsync rc_store_mode(const rc_store *st) { return st->mode; }

void rc_epoch_new(char out[RC_EPOCH_LEN + 1])
{
    unsigned char r[RC_EPOCH_LEN / 2];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        /* No entropy source: time and address still make a value that changes. */
        uint64_t t = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)out ^ (uint64_t)clock();
        memcpy(r, &t, sizeof(r));
    }
    for (size_t i = 0; i < sizeof(r); i++) sprintf(out + 2 * i, "%02x", r[i]);
    out[RC_EPOCH_LEN] = '\0';
}

/* ---- room handles ------------------------------------------------------------------------- */

rc_store_room *rc__store_room_alloc(const rc_store *st, const char *name, size_t len)
{
    rc_store_room *sr = calloc(1, sizeof(*sr));
    if (!sr) return NULL;
    rc__store_dirname(name, len, sr->dirname);
    snprintf(sr->dir, sizeof(sr->dir), "%s/rooms/%s", st->dir, sr->dirname);
    memcpy(sr->name, name, len);
    sr->name_len = len;
    sr->st = (rc_store *)st;
    sr->fd = -1;
    return sr;
}

void rc__store_room_link(rc_store *st, rc_store_room *sr)
{
    sr->all_next = st->all;
    if (st->all) st->all->all_prev = sr;
    st->all = sr;
}

void rc__store_room_free(rc_store *st, rc_store_room *sr)
{
    rc__store_seg_forget(st, sr);
    rc__store_ckpt_forget(st, sr);
    if (sr->all_prev) sr->all_prev->all_next = sr->all_next;
    else if (st->all == sr) st->all = sr->all_next;
    if (sr->all_next) sr->all_next->all_prev = sr->all_prev;
    rc_buf_release(&sr->wbuf);
    rc_buf_release(&sr->state);
    free(sr->segs);
    free(sr);
}

bool rc_store_room_lost(rc_store_room *sr)
{
    return atomic_exchange(&sr->lost, false);
}

/* ---- start-up restore --------------------------------------------------------------------- */

struct load_ctx {
    const rc_store_loader *loader;
    void *room;
    uint64_t last;           /* msg_id of the last record handed over */
};

static void load_record(void *arg, uint64_t msg_id, uint64_t time_ms, uint8_t opcode,
                        uint64_t key, const char *payload, size_t len)
{
    struct load_ctx *x = arg;
    const rc_store_loader *l = x->loader;
    x->last = msg_id;
    l->record(l->arg, x->room, msg_id, time_ms, opcode, key, payload, len);
}

/* Restores one room, directory rooms/dirname, named name[0..nl): its epoch, state and
 * segments, then what the journal (jr, NULL: none) holds beyond them. unclean: the last
 * server did not stop cleanly. Whether the room may have lost messages it delivered:
 *   - after an unclean stop without a journal (--fsync everysec or no): yes, messages are
 *     delivered before they are durable;
 *   - with a journal (--fsync always): everything delivered was durable first, in the
 *     segments (checkpointed) or in the journal; so only when a damaged segment had to be
 *     truncated and the journal does not go on exactly where the truncation stopped (the
 *     damage hit records made durable at a checkpoint: a disk fault), or when the segments
 *     end before the journal's records begin. A torn tail the journal covers is the batch
 *     being written when the server stopped: it is restored from the journal. */
static void load_room(rc_store *st, const rc_store_loader *loader, const char *rooms,
                      const char *dirname, const char *name, long nl, bool unclean,
                      const rc__store_journal *j, rc__store_jroom *jr)
{
    char rdir[PATH_MAX];
    snprintf(rdir, sizeof(rdir), "%s/%s", rooms, dirname);
    char epoch[RC_EPOCH_LEN + 2];
    bool lost = unclean && !j->present;
    if (!rc__store_read_epoch(rdir, epoch) || strlen(epoch) < RC_EPOCH_LEN) {
        rc_epoch_new(epoch);
        if (!(jr && jr->epoch[0])) lost = true;
    }
    epoch[RC_EPOCH_LEN] = '\0';
    if (jr && jr->epoch[0] && strcmp(jr->epoch, epoch) != 0) {
        /* The journal is written before the epoch file: its epoch is the newer. Written now,
         * before the journal is emptied. */
        memcpy(epoch, jr->epoch, RC_EPOCH_LEN + 1);
        char p[PATH_MAX + 8], line[RC_EPOCH_LEN + 2];
        snprintf(p, sizeof(p), "%s/epoch", rdir);
        snprintf(line, sizeof(line), "%.16s\n", epoch);
        int w = rc__store_write_file(p, line, strlen(line), true);
        if (w < 0) rc_warn("log '%s': cannot write its epoch: %s", rdir, strerror(-w));
    }
    struct load_ctx x = {.loader = loader};
    x.room = loader->room(loader->arg, name, (size_t)nl, epoch);
    if (!x.room) return;
    rc_store_room *sr = rc__store_room_alloc(st, name, (size_t)nl);
    if (loader->state) {
        rc_buf blob = {0};
        int sr_r = rc__store_read_state(rdir, &blob);
        if (sr_r < 0) rc_warn("log '%s': state snapshot damaged, ignored", rdir);
        if (sr_r > 0) loader->state(loader->arg, x.room, rc_buf_head(&blob), rc_buf_size(&blob));
        /* the writer keeps it, to write it again should the directory have to be made
         * again */
        if (sr_r > 0 && sr) sr->state = blob;
        else rc_buf_release(&blob);
    }
    uint64_t *segs = NULL;
    size_t nsegs = 0, last_size = 0;
    int r = rc__store_read_room(rdir, false, load_record, &x, &segs, &nsegs, &last_size);
    if (r < 0) rc_warn("log '%s': cannot read: %s", rdir, strerror(-r));
    if (r == 1) atomic_fetch_add(&st->repaired, 1);
    bool bridged = false;
    if (jr && r >= 0) {
        uint64_t first = 0;
        bool gap = false;
        uint64_t before = x.last;
        long a = rc__store_journal_apply(jr, rdir, x.last, load_record, &x, &segs, &nsegs,
                                         &last_size, &first, &gap);
        if (a > 0) {
            rc_info("log '%s': %ld records restored from the journal", rdir, a);
            bridged = before == 0 || first == before + 1;
        }
        if (a < 0 || gap) lost = true;
    }
    if (r == 1 && !bridged) lost = true;
    if (sr) {
        sr->segs = segs;
        sr->nsegs = nsegs;
        sr->capsegs = nsegs;
        sr->seg_size = last_size;
        sr->dir_ready = true;
        memcpy(sr->epoch, epoch, sizeof(sr->epoch));
        rc__store_room_link(st, sr);
    } else {
        free(segs);
    }
    const char *now_epoch = loader->done(loader->arg, x.room, sr, lost);
    if (sr && now_epoch && strcmp(now_epoch, sr->epoch) != 0) {
        snprintf(sr->epoch, sizeof(sr->epoch), "%s", now_epoch);
        sr->epoch_dirty = true;
        rc__store_touch(st, sr); /* written by the writer's first pass */
    }
}

/* Restores every room of the data directory through loader, repairing damaged tails (see
 * rc__store_read_room) and completing rooms from the journal j, before the writer thread
 * exists: the writer-side state set here is the thread's starting point. */
static void load_rooms(rc_store *st, const rc_store_loader *loader, bool unclean,
                       rc__store_journal *j)
{
    char rooms[PATH_MAX];
    snprintf(rooms, sizeof(rooms), "%s/rooms", st->dir);
    unsigned nrooms = 0;
    DIR *d = opendir(rooms);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char rdir[PATH_MAX];
        if (snprintf(rdir, sizeof(rdir), "%s/%s", rooms, e->d_name) >= (int)sizeof(rdir)) continue;
        if (e->d_name[0] == '.') {
            /* A room directory half created or half deleted when the server stopped. */
            if (rc__store_is_leftover(e->d_name)) {
                rc_warn("data directory: removing '%s' (left by an interrupted create or delete)",
                        rdir);
                rc__store_remove_tree(rdir);
            }
            continue;
        }
        char name[RC__STORE_NAME_MAX];
        const char *why;
        long nl = rc__store_room_name(rooms, e->d_name, name, &why);
        if (nl <= 0) {
            rc_warn("data directory: ignoring '%s' (%s)", rdir, why ? why : "not a room directory");
            continue;
        }
        rc__store_jroom *jr = rc__store_journal_find(j, name, (size_t)nl);
        if (jr) jr->seen = true;
        if (jr && jr->deleted) {
            /* deleted after its last checkpoint: its removal did not complete */
            rc__store_remove_room(rooms, e->d_name);
            continue;
        }
        load_room(st, loader, rooms, e->d_name, name, nl, unclean, j, jr);
        nrooms++;
    }
    if (d) closedir(d);
    /* Rooms the journal knows whose directory did not make it (created since the last
     * checkpoint): made now, with the epoch the journal gives them. */
    for (rc__store_jroom *jr = j->list; jr; jr = jr->next) {
        if (jr->seen || jr->deleted || !jr->epoch[0]) continue;
        char dirname[RC__STORE_DIRNAME_SIZE];
        rc__store_dirname(jr->name, jr->len, dirname);
        mkdir(rooms, 0755);
        int r = rc__store_create_room_dir(rooms, dirname, jr->name, jr->len, true);
        char p[PATH_MAX + RC__STORE_DIRNAME_SIZE + 16], line[RC_EPOCH_LEN + 2];
        snprintf(p, sizeof(p), "%s/%s/epoch", rooms, dirname);
        snprintf(line, sizeof(line), "%s\n", jr->epoch);
        if (r == 0) r = rc__store_write_file(p, line, strlen(line), true);
        if (r < 0) {
            rc_warn("data directory: cannot restore room '%s' from the journal: %s", p,
                    strerror(-r));
            continue;
        }
        load_room(st, loader, rooms, dirname, jr->name, (long)jr->len, unclean, j, jr);
        nrooms++;
    }
    if (nrooms)
        rc_info("data directory '%s': %u rooms restored%s", st->dir, nrooms,
                !unclean ? "" : j->present ? " (after an unclean shutdown, from the journal)"
                                           : " (after an unclean shutdown: epochs changed)");
}

/* ---- open, close, status ------------------------------------------------------------------ */

/* How many segments the writer may keep open: RC_STORE_FD_MAX, or an eighth of the descriptor
 * limit when that is lower (at least 4), so that the log never takes the descriptors the
 * server needs for connections whatever the limit. */
static size_t fd_bound(void)
{
    struct rlimit rl;
    size_t n = RC_STORE_FD_MAX;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 8 < n)
        n = rl.rlim_cur / 8;
    return n < 4 ? 4 : n;
}

static void on_eventfd(rc_loop *loop, rc_io *io, uint32_t events)
{
    rc_store *st = (rc_store *)((char *)io - offsetof(rc_store, efd_io));
    uint64_t v;
    if (read(io->fd, &v, sizeof(v)) < 0) {}
    if (st->on_durable) st->on_durable(st->arg);
}

rc_store *rc_store_open(rc_loop *loop, const char *dir, enum rc_fsync mode, size_t segment_max,
                        const rc_store_loader *loader, void (*on_durable)(void *arg), void *arg)
{
    if (strlen(dir) >= RC__STORE_DIR_MAX) {
        rc_error("durable log: data directory path too long: '%s'", dir);
        return NULL;
    }
    rc_store *st = calloc(1, sizeof(*st));
    if (!st) return NULL;
    snprintf(st->dir, sizeof(st->dir), "%s", dir);
    st->mode = mode;
    st->segment_max = segment_max < 4096 ? 4096 : segment_max;
    st->fd_max = fd_bound();
    st->loop = loop;
    st->on_durable = on_durable;
    st->arg = arg;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);

    char p[PATH_MAX + 16];
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        rc__store_set_error(st, errno, "create data directory", dir);
    /* One server per data directory: two would interleave records in the same segments. An
     * advisory lock, so the kernel drops it with the process, however it ends. */
    snprintf(p, sizeof(p), "%s/lock", dir);
    st->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (st->lock_fd >= 0 && flock(st->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(st->lock_fd);
        free(st);
        if (e == EWOULDBLOCK)
            rc_error("data directory '%s' is in use by another roomcast; give each server its "
                     "own --data-dir",
                     dir);
        else
            rc_error("data directory '%s': cannot lock: %s", dir, strerror(e));
        return NULL;
    }
    snprintf(p, sizeof(p), "%s/clean", dir);
    bool clean = access(p, F_OK) == 0;
    rc__store_journal j;
    int jr = rc__store_journal_read(dir, &j);
    if (jr < 0) {
        /* Unreadable: treated as absent, so a crash counts as one without it (new epochs). */
        rc_warn("data directory '%s': cannot read its journal: %s", dir, strerror(-jr));
        rc__store_journal_release(&j);
    }
    load_rooms(st, loader, !clean, &j);
    rc__store_journal_release(&j);
    if (clean && unlink(p) < 0) rc__store_set_error(st, errno, "remove", p);
    /* Rooms are complete on disk now: the journal starts afresh (or goes, without
     * --fsync always, so that a crash of this server is not taken for one under always). */
    st->jfd = -1;
    if (mode == RC_FSYNC_ALWAYS) {
        int r = rc__store_journal_start(st);
        if (r < 0) {
            rc__store_set_error(st, -r, "create journal in", dir);
            rc__store_journal_stop(st);
        }
    } else {
        rc__store_journal_stop(st);
    }
    /* A probe write so that an unwritable directory is reported at once, not at first use. */
    snprintf(p, sizeof(p), "%s/.probe", dir);
    int r = rc__store_write_file(p, "", 0, false);
    if (r < 0) rc__store_set_error(st, -r, "write in data directory", dir);
    else unlink(p);

    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) goto err;
    rc_io_init(&st->efd_io, efd, on_eventfd);
    if (rc_io_start(loop, &st->efd_io, RC_EV_READ) < 0) goto err_fd;
    /* The writer must never take a signal meant for the loop's signalfd (SIGTERM would then
     * kill the process instead of shutting it down): it starts with every signal blocked. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int tr = pthread_create(&st->thread, NULL, rc__store_writer_main, st);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (tr != 0) goto err_io;
    rc_info("durable log in '%s', fsync %s%s", dir, rc_fsync_name(mode),
            st->jfd >= 0 ? " (journal: one fsync per batch)" : "");
    return st;
err_io:
    rc_io_stop(loop, &st->efd_io);
err_fd:
    close(efd);
err:
    rc_error("durable log: cannot start: %s", strerror(errno));
    if (st->jfd >= 0) close(st->jfd);
    if (st->lock_fd >= 0) close(st->lock_fd);
    free(st);
    return NULL;
}

void rc_store_close(rc_store *st)
{
    if (!st) return;
    rc_store_kick(st);
    pthread_mutex_lock(&st->mu);
    st->stop = true;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->thread, NULL);
    bool clean = st->touched == NULL && atomic_load(&st->error) == 0;
    while (st->all) rc__store_room_free(st, st->all);
    if (clean) {
        char p[PATH_MAX + 16];
        snprintf(p, sizeof(p), "%s/clean", st->dir);
        rc__store_write_file(p, "", 0, true);
    }
    rc_io_stop(st->loop, &st->efd_io);
    close(st->efd_io.fd);
    rc_buf_release(&st->filling);
    rc_buf_release(&st->handoff);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    if (st->jfd >= 0) close(st->jfd);
    rc_buf_release(&st->jbuf);
    if (st->lock_fd >= 0) close(st->lock_fd); /* last: the directory is consistent now */
    free(st);
}

uint64_t rc_store_durable(const rc_store *st)
{
    return atomic_load(&((rc_store *)st)->durable);
}

uint64_t rc_store_room_durable(const rc_store_room *sr)
{
    rc_store_room *r = (rc_store_room *)sr;
    /* st->passed first, then the room's flag: see writer.c, "durability, room by room". */
    uint64_t passed = atomic_load(&r->st->passed);
    if (atomic_load(&r->behind)) return atomic_load(&r->durable);
    return passed;
}

void rc_store_status_get(rc_store *st, rc_store_status *out)
{
    out->error = atomic_load(&st->error);
    out->ok = out->error == 0;
    out->bytes_written = atomic_load(&st->bytes_written);
    out->records = atomic_load(&st->records);
    out->bytes_dropped = atomic_load(&st->bytes_dropped);
    out->fsyncs = atomic_load(&st->fsyncs);
    out->journal_syncs = atomic_load(&st->journal_syncs);
    out->repaired = atomic_load(&st->repaired);
    out->backlog = atomic_load(&st->backlog);
}
