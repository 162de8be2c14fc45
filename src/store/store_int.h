/* store_int.h — what store.c (the store object, restore) and writer.c (the batches and the
 * writer thread) share: the two structs behind store.h's handles and the functions each side
 * calls in the other. Internal to src/store/ (prefix rc__store_). Which thread may touch a
 * field is written next to it; "writer" fields are also used by rc_store_open before the
 * thread starts and by rc_store_close after it is joined.
 */
#ifndef RC_STORE_INT_H
#define RC_STORE_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/hash.h"
#include "core/loop.h"
#include "store/format.h"
#include "store/roomdir.h"
#include "store/store.h"

/* Longest data directory path accepted: room paths add "/rooms/", ".new-", a directory name of
 * at most 254 characters and a file name, and must fit PATH_MAX. */
#define RC__STORE_DIR_MAX 3072

struct rc_store_room {
    /* Written by the loop before OP_NEW, then read-only. */
    char dir[PATH_MAX];      /* the room's directory: DIR/rooms/<dirname> */
    char dirname[RC__STORE_DIRNAME_SIZE]; /* its name under DIR/rooms (format.h) */
    char name[RC__STORE_NAME_MAX]; /* the room's name, written into a hashed directory */
    size_t name_len;         /* its length, bytes */
    /* Writer-side state. */
    char epoch[RC_EPOCH_LEN + 1]; /* epoch to write when epoch_dirty */
    bool dir_ready;          /* directory and epoch file exist */
    bool epoch_dirty;        /* epoch file must be rewritten */
    rc_buf state;            /* the room's state snapshot, as last given */
    bool state_dirty;        /* the state file must be rewritten */
    int fd;                  /* current segment, -1 when not open (writer.c: at most
                              * st->fd_max rooms have one open) */
    uint8_t seg_list;        /* the writer list seg_prev/seg_next link sr into (RC__SEG_*) */
    rc_store_room *seg_prev, *seg_next; /* open segments in use order, or unsynced ones */
    size_t seg_size;         /* bytes of the current segment known to be good */
    uint64_t *segs;          /* first msg_id of each segment on disk, ascending */
    size_t nsegs, capsegs;   /* entries used and allocated in segs */
    uint64_t first_kept;     /* latest retention bound from the loop */
    bool need_fsync;         /* current segment written since its last fsync */
    rc_buf wbuf;             /* records not yet written */
    size_t journaled;        /* bytes at the head of wbuf already in the journal (writer.c) */
    bool in_ckpt;            /* on the checkpoint's list: segment to fsync before the old
                                journal may go (writer.c) */
    rc_store_room *ckpt_next; /* next on that list */
    rc_store_room *touched_next; /* writer's list of rooms with pending bytes */
    bool touched;            /* on that list */
    rc_store_room *all_prev, *all_next; /* every room the writer knows */
    atomic_bool lost;        /* the writer dropped records: the loop changes the epoch */
    rc_store *st;            /* its store (set at allocation, read-only) */
    /* Writer → loop (writer.c, "durability, room by room"). */
    atomic_bool behind;      /* some records not durable after the last pass */
    _Atomic uint64_t durable; /* while behind: batch through which it is durable */
    rc_store_room *behind_next; /* writer's list of rooms behind */
};

struct rc_store {
    char dir[RC__STORE_DIR_MAX]; /* data directory */
    int lock_fd;             /* DIR/lock, flock()ed for as long as the store is open */
    enum rc_fsync mode;      /* when the writer fsyncs (--fsync) */
    size_t segment_max;      /* rotate segments beyond this size, bytes */
    rc_loop *loop;           /* the loop that owns the store */
    rc_io efd_io;            /* eventfd the writer signals */
    void (*on_durable)(void *arg); /* called on the loop when durability moved (store.h) */
    void *arg;               /* for on_durable */
    pthread_t thread;        /* the writer */
    pthread_mutex_t mu;      /* guards handoff, handoff_seq, stop */
    pthread_cond_t cv;       /* signalled on handoff and stop */
    /* Loop only: appended without a lock, handed over at each kick. */
    rc_buf filling;          /* ops appended by the loop since the last kick */
    /* Guarded by mu. */
    rc_buf handoff;          /* ops handed to the writer, not yet taken */
    uint64_t handoff_seq;    /* batch number of the last handed-off batch */
    bool stop;               /* the writer should finish what it has and exit */
    /* Loop only. */
    uint64_t seq;            /* batches handed off */
    /* Writer → loop. */
    _Atomic uint64_t passed; /* last batch done: every room not behind is durable through it */
    _Atomic uint64_t durable; /* every room is durable through it (<= passed) */
    _Atomic uint64_t bytes_written, records, bytes_dropped, fsyncs, repaired; /* rc_store_status */
    _Atomic uint64_t journal_syncs; /* rc_store_status */
    _Atomic int error;       /* errno of the last failure, 0 once writing works again */
    _Atomic size_t backlog;  /* bytes waiting for the writer after its last pass */
    /* Writer only. */
    rc_store_room *all;      /* every room */
    rc_store_room *touched;  /* rooms with bytes to write */
    rc_store_room *open_head, *open_tail; /* rooms with an open segment, last written first */
    size_t nopen;            /* their count */
    size_t fd_max;           /* most segments open at once (store.h: RC_STORE_FD_MAX) */
    rc_store_room *unsynced; /* rooms whose segment was closed with bytes not fsynced */
    rc_store_room *behind;   /* rooms with records not durable (writer.c) */
    /* The journal (--fsync always; writer.c, "the journal"). */
    int jfd;                 /* DIR/journal, -1 when not journaling */
    uint64_t jsize;          /* bytes in it since the last checkpoint */
    bool jold;               /* DIR/journal.old exists: a checkpoint is under way */
    rc_store_room *ckpt;     /* rooms whose segments it still has to fsync */
    rc_buf jbuf;             /* entries of the pass being made (deletes are added at once) */
};

/* The journal's file name under the data directory, and the previous journal's while a
 * checkpoint is under way (start-up reads it first). */
#define RC__STORE_JOURNAL_FILE "journal"
#define RC__STORE_JOURNAL_OLD "journal.old"

/* Which writer list a room's seg_prev/seg_next link it into (writer.c, "open segments"). */
enum { RC__SEG_NONE, RC__SEG_OPEN, RC__SEG_UNSYNCED };

/* ---- store.c ---- */

/* rc__store_room_alloc returns a new handle for room name[0..len) of st (its directory named
 * by rc__store_dirname), not yet linked. */
rc_store_room *rc__store_room_alloc(const rc_store *st, const char *name, size_t len);

/* rc__store_room_link adds sr to the writer's list of every room (st->all). */
void rc__store_room_link(rc_store *st, rc_store_room *sr);

/* rc__store_room_free closes sr's segment, unlinks it from st->all and frees it. */
void rc__store_room_free(rc_store *st, rc_store_room *sr);

/* ---- journal.c: the journal read back at start-up ---- */

/* One room's part of the journal. */
typedef struct rc__store_jroom {
    rc_hnode node;           /* in rc__store_journal.rooms, by name */
    struct rc__store_jroom *next; /* every room of the journal */
    char name[RC__STORE_NAME_MAX]; /* the room's name */
    size_t len;              /* its length */
    char epoch[RC__STORE_J_EPOCH + 1]; /* the epoch of its last entry, "" if none */
    bool deleted;            /* its last entry deletes it */
    bool seen;               /* start-up found its directory */
    rc_buf recs;             /* its records since it was last deleted, in journal order */
} rc__store_jroom;

typedef struct rc__store_journal {
    bool present;            /* DIR/journal exists: the last server ran with --fsync always */
    bool torn;               /* its end was torn or corrupt (the batch being written) */
    size_t entries;          /* valid entries read */
    rc_htab rooms;           /* rc__store_jroom by name */
    rc__store_jroom *list;   /* the same, as a list */
} rc__store_journal;

/* rc__store_journal_read reads DIR/journal.old and DIR/journal, in this order, into *j: 1, 0
 * when there is neither, -errno. */
int rc__store_journal_read(const char *dir, rc__store_journal *j);
rc__store_jroom *rc__store_journal_find(const rc__store_journal *j, const char *name, size_t len);
void rc__store_journal_release(rc__store_journal *j);

/* rc__store_journal_apply appends to room directory dir the records of jr that follow msg_id
 * last (the last its segments hold; 0: none, any first id), fsyncs them, then calls fn for
 * each. *segs, *nsegs, *last_size describe the room's segments (rc__store_read_room) and are
 * updated. Returns how many were applied (*first_applied: the first of them), or -errno; *gap
 * is set when the journal's records start after last + 1 (records lost). */
long rc__store_journal_apply(const rc__store_jroom *jr, const char *dir, uint64_t last,
                             rc__store_record_fn *fn, void *arg, uint64_t **segs, size_t *nsegs,
                             size_t *last_size, uint64_t *first_applied, bool *gap);

/* ---- writer.c ---- */

/* rc__store_journal_start makes DIR/journal an empty, durable file and has the writer use it
 * (st->jfd). 0, or -errno (the writer then fsyncs every room log per batch instead). */
int rc__store_journal_start(rc_store *st);

/* rc__store_journal_stop: no journal (--fsync everysec or no): DIR/journal (and .old) are
 * removed, so a crash of this server is not mistaken for one under --fsync always. */
void rc__store_journal_stop(rc_store *st);

/* rc__store_ckpt_forget takes sr off the checkpoint's list (before sr is freed). */
void rc__store_ckpt_forget(rc_store *st, rc_store_room *sr);


/* rc__store_set_error records errno err as the store's state, logging it when it changed. */
void rc__store_set_error(rc_store *st, int err, const char *what, const char *path);

/* rc__store_seg_forget closes sr's segment without syncing it and takes sr off the writer's
 * segment lists (before sr is freed). */
void rc__store_seg_forget(rc_store *st, rc_store_room *sr);

/* rc__store_touch puts sr on the list of rooms the writer's next pass writes. */
void rc__store_touch(rc_store *st, rc_store_room *sr);

/* rc__store_writer_main is the writer thread (arg: the rc_store). It runs until st->stop is
 * set and everything handed off before is written. */
void *rc__store_writer_main(void *arg);

#endif
