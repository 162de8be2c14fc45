/* test_journal.c — tests for the journal of --fsync always (src/store/journal.c and the
 * journal side of writer.c and store.c): after a crash (no clean marker), start-up completes
 * rooms from the journal and says which rooms may have lost delivered messages. A crash is
 * made by hand: a store is written and closed, its clean marker removed and a journal written
 * with format.h's encoder, as the writer would have left it; then the store is reopened.
 * Also: one journal sync per batch, however many rooms the batch touches.
 */
#include "unit.h"

#include "core/log.h"
#include "core/loop.h"
#include "store/format.h"
#include "store/store.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROOMS 80
#define MAX_RECS 64

struct lroom {
    char name[64];           /* room name, NUL-terminated */
    char epoch[RC_EPOCH_LEN + 1]; /* epoch given by the store */
    uint64_t ids[MAX_RECS];  /* msg_ids of its records */
    char data[MAX_RECS][16]; /* their payloads */
    size_t nrecs;            /* records */
    bool lost;               /* done said lost */
};

static struct lroom loaded[MAX_ROOMS];
static size_t nloaded;

static void *l_room(void *arg, const char *name, size_t len, const char *epoch)
{
    struct lroom *r = &loaded[nloaded++];
    memset(r, 0, sizeof(*r));
    memcpy(r->name, name, len < 63 ? len : 63);
    memcpy(r->epoch, epoch, RC_EPOCH_LEN);
    return r;
}

static void l_record(void *arg, void *room, uint64_t msg_id, uint64_t time_ms, uint8_t opcode,
                     uint64_t key, const char *payload, size_t len)
{
    struct lroom *r = room;
    if (r->nrecs == MAX_RECS) return;
    r->ids[r->nrecs] = msg_id;
    memcpy(r->data[r->nrecs], payload, len < 15 ? len : 15);
    r->nrecs++;
}

static const char *l_done(void *arg, void *room, rc_store_room *sr, bool lost)
{
    struct lroom *r = room;
    r->lost = lost;
    return r->epoch;
}

static const rc_store_loader loader = {.room = l_room, .record = l_record, .done = l_done};

static struct lroom *find(const char *name)
{
    for (size_t i = 0; i < nloaded; i++)
        if (strcmp(loaded[i].name, name) == 0) return &loaded[i];
    return NULL;
}

static char tmpl[64];
static rc_loop *loop;

static const char *new_dir(void)
{
    snprintf(tmpl, sizeof(tmpl), "/tmp/rc-journal-test-XXXXXX");
    return mkdtemp(tmpl);
}

static void remove_all(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", path);
}

static rc_store *reopen(const char *dir, enum rc_fsync mode)
{
    nloaded = 0;
    return rc_store_open(loop, dir, mode, 1 << 20, &loader, NULL, NULL);
}

static const char EPOCH_A[] = "aaaaaaaaaaaaaaaa";
static const char EPOCH_B[] = "bbbbbbbbbbbbbbbb";

/* Writes a store with room name (epoch EPOCH_A) holding records 1..n ("r<i>"), closes it and
 * removes its clean marker: the directory of a server that crashed. */
static void crashed_store(const char *dir, const char *name, int n, enum rc_fsync mode)
{
    rc_store *st = reopen(dir, mode);
    rc_store_room *sr = rc_store_room_new(st, name, strlen(name), EPOCH_A);
    for (int i = 1; i <= n; i++) {
        char p[16];
        int pl = snprintf(p, sizeof(p), "r%d", i);
        rc_store_append(st, sr, (uint64_t)i, 1000, 1, p, (size_t)pl, 1, 0);
    }
    rc_store_kick(st);
    rc_store_close(st);
    char path[256];
    snprintf(path, sizeof(path), "%s/clean", dir);
    unlink(path);
}

static const char *journal_file = "journal";

/* Appends to DIR/<journal_file> an entry for room name: records first..last ("r<i>"), or a
 * deletion when first is 0. */
static void journal_add(const char *dir, const char *name, const char *epoch, uint64_t first,
                        uint64_t last)
{
    static unsigned char recs[8192], entry[8192 + RC__STORE_J_HEAD_MAX];
    size_t rl = 0;
    for (uint64_t i = first; first && i <= last; i++) {
        char p[16];
        int pl = snprintf(p, sizeof(p), "r%llu", (unsigned long long)i);
        size_t h = rc__store_rec_head(recs + rl, i, 1000, 1, 0, (size_t)pl);
        memcpy(recs + rl + h, p, (size_t)pl);
        rc__store_rec_seal(recs + rl, h + (size_t)pl);
        rl += h + (size_t)pl;
    }
    size_t h = rc__store_jhead(entry, first ? RC__STORE_J_ROOM : RC__STORE_J_DELETE, name,
                               strlen(name), epoch, rl);
    memcpy(entry + h, recs, rl);
    rc__store_jseal(entry, h + rl);
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, journal_file);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0 || write(fd, entry, h + rl) != (ssize_t)(h + rl)) abort();
    close(fd);
}

static void append_raw(const char *dir, const char *file, const void *p, size_t n)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0 || write(fd, p, n) != (ssize_t)n) abort();
    close(fd);
}

static bool ids_run(const struct lroom *r, uint64_t from, uint64_t to)
{
    if (r->nrecs != to - from + 1) return false;
    for (size_t i = 0; i < r->nrecs; i++) {
        char p[16];
        snprintf(p, sizeof(p), "r%llu", (unsigned long long)(from + i));
        if (r->ids[i] != from + i || strcmp(r->data[i], p) != 0) return false;
    }
    return true;
}

/* The segment file of room "room" (hex 726f6f6d) starting at 1. */
#define SEG1 "rooms/726f6f6d/00000000000000000001.log"

/* The journal holds records past the segments (written to the journal, not yet to the room's
 * segment, when the server died), overlapping them: the room is completed, keeps its epoch,
 * and is not lost; the segment holds them afterwards, and a second start reads them back
 * without the journal. */
TEST(test_journal_completes_room)
{
    const char *dir = new_dir();
    crashed_store(dir, "room", 5, RC_FSYNC_ALWAYS);
    journal_add(dir, "room", EPOCH_A, 4, 9);
    rc_store *st = reopen(dir, RC_FSYNC_ALWAYS);
    CHECK(st != NULL);
    struct lroom *r = find("room");
    CHECK(r && ids_run(r, 1, 9) && !r->lost);
    CHECK(strcmp(r->epoch, EPOCH_A) == 0);
    rc_store_close(st);
    st = reopen(dir, RC_FSYNC_EVERYSEC);
    r = find("room");
    CHECK(r && ids_run(r, 1, 9) && !r->lost);
    rc_store_close(st);
    remove_all(dir);
}

/* A crash during a checkpoint leaves journal.old (the journal before it) beside the new one:
 * both are read, the old first; afterwards neither is left. */
TEST(test_old_journal_read_first)
{
    const char *dir = new_dir();
    crashed_store(dir, "room", 3, RC_FSYNC_ALWAYS);
    journal_file = "journal.old";
    journal_add(dir, "room", EPOCH_A, 2, 6);
    journal_add(dir, "other", EPOCH_B, 1, 2);
    journal_file = "journal";
    journal_add(dir, "room", EPOCH_A, 7, 8);
    journal_add(dir, "other", EPOCH_B, 0, 0);
    rc_store *st = reopen(dir, RC_FSYNC_ALWAYS);
    struct lroom *r = find("room");
    CHECK(r && ids_run(r, 1, 8) && !r->lost);
    CHECK(find("other") == NULL);
    rc_store_close(st);
    char path[256];
    snprintf(path, sizeof(path), "%s/journal.old", dir);
    CHECK(access(path, F_OK) != 0);
    remove_all(dir);
}

/* A torn segment tail (a record cut short: the write the crash interrupted) that the journal
 * covers is restored, not counted as lost; the same tear without the journal's help is. */
TEST(test_torn_tail_bridged_or_lost)
{
    for (int bridged = 0; bridged < 2; bridged++) {
        const char *dir = new_dir();
        crashed_store(dir, "room", 6, RC_FSYNC_ALWAYS);
        char path[256];
        snprintf(path, sizeof(path), "%s/" SEG1, dir);
        struct stat sb;
        CHECK(stat(path, &sb) == 0);
        CHECK(truncate(path, sb.st_size - 3) == 0); /* record 6 torn */
        append_raw(dir, "journal", "", 0);          /* a journal, with nothing for the room */
        if (bridged) journal_add(dir, "room", EPOCH_A, 6, 7);
        rc_store *st = reopen(dir, RC_FSYNC_ALWAYS);
        struct lroom *r = find("room");
        CHECK(r != NULL);
        if (bridged) CHECK(ids_run(r, 1, 7) && !r->lost);
        else CHECK(ids_run(r, 1, 5) && r->lost);
        rc_store_close(st);
        remove_all(dir);
    }
}

/* The journal starts after the segments end: records between were lost (a disk fault), so the
 * room is lost and the journal's records are not applied across the hole. */
TEST(test_gap_is_lost)
{
    const char *dir = new_dir();
    crashed_store(dir, "room", 5, RC_FSYNC_ALWAYS);
    journal_add(dir, "room", EPOCH_A, 8, 9);
    rc_store *st = reopen(dir, RC_FSYNC_ALWAYS);
    struct lroom *r = find("room");
    CHECK(r && ids_run(r, 1, 5) && r->lost);
    rc_store_close(st);
    remove_all(dir);
}

/* Without a journal (the last server ran with everysec or no), a crash may have lost
 * delivered messages: every room is lost. With one, even empty, nothing delivered was lost. */
TEST(test_unclean_with_and_without_journal)
{
    const char *dir = new_dir();
    crashed_store(dir, "room", 3, RC_FSYNC_EVERYSEC);
    CHECK(access(dir, F_OK) == 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/journal", dir);
    CHECK(access(path, F_OK) != 0); /* everysec keeps none */
    rc_store *st = reopen(dir, RC_FSYNC_ALWAYS);
    struct lroom *r = find("room");
    CHECK(r && ids_run(r, 1, 3) && r->lost);
    CHECK(access(path, F_OK) == 0); /* always makes one at once */
    rc_store_close(st);
    snprintf(path, sizeof(path), "%s/clean", dir);
    unlink(path);
    st = reopen(dir, RC_FSYNC_ALWAYS);
    r = find("room");
    CHECK(r && ids_run(r, 1, 3) && !r->lost);
    rc_store_close(st);
    remove_all(dir);
}

/* A room the journal knows but whose directory never made it to disk is made, with the
 * journal's epoch; a room the journal deleted last is not restored (and its directory goes);
 * a room deleted and then made again comes back with what followed the deletion; a journal
 * epoch newer than the epoch file wins; a torn journal tail is ignored. */
TEST(test_journal_rooms_epochs_deletes)
{
    const char *dir = new_dir();
    crashed_store(dir, "gone", 2, RC_FSYNC_ALWAYS);
    journal_add(dir, "new", EPOCH_B, 1, 3);
    journal_add(dir, "gone", EPOCH_A, 3, 3);
    journal_add(dir, "gone", EPOCH_A, 0, 0);  /* deleted */
    journal_add(dir, "again", EPOCH_A, 1, 2);
    journal_add(dir, "again", EPOCH_A, 0, 0); /* deleted, then made anew */
    journal_add(dir, "again", EPOCH_B, 1, 1);
    static const unsigned char torn[] = {0x40, 0x00, 0x00, 0x00, 0x01, 0x02};
    append_raw(dir, "journal", torn, sizeof(torn));
    rc_store *st = reopen(dir, RC_FSYNC_ALWAYS);
    CHECK_EQ_INT(nloaded, 2);
    struct lroom *r = find("new");
    CHECK(r && ids_run(r, 1, 3) && !r->lost && strcmp(r->epoch, EPOCH_B) == 0);
    r = find("again");
    CHECK(r && ids_run(r, 1, 1) && !r->lost && strcmp(r->epoch, EPOCH_B) == 0);
    CHECK(find("gone") == NULL);
    rc_store_close(st);
    char path[256];
    snprintf(path, sizeof(path), "%s/rooms/676f6e65", dir);
    CHECK(access(path, F_OK) != 0);
    /* written back: a clean restart without the journal gives the same */
    st = reopen(dir, RC_FSYNC_EVERYSEC);
    CHECK_EQ_INT(nloaded, 2);
    r = find("new");
    CHECK(r && ids_run(r, 1, 3) && strcmp(r->epoch, EPOCH_B) == 0);
    rc_store_close(st);
    remove_all(dir);

    /* an existing room's epoch file older than the journal's epoch */
    dir = new_dir();
    crashed_store(dir, "room", 2, RC_FSYNC_ALWAYS);
    journal_add(dir, "room", EPOCH_B, 3, 3);
    st = reopen(dir, RC_FSYNC_ALWAYS);
    r = find("room");
    CHECK(r && ids_run(r, 1, 3) && !r->lost && strcmp(r->epoch, EPOCH_B) == 0);
    rc_store_close(st);
    st = reopen(dir, RC_FSYNC_ALWAYS);
    r = find("room");
    CHECK(r && strcmp(r->epoch, EPOCH_B) == 0);
    rc_store_close(st);
    remove_all(dir);
}

/* Group commit: one batch touching 50 rooms is made durable with one journal sync, not 50
 * fsyncs; and what the writer journals reads back as the rooms' records after a crash that
 * left the segments without them. */
TEST(test_one_sync_per_batch)
{
    const char *dir = new_dir();
    rc_store *st = reopen(dir, RC_FSYNC_ALWAYS);
    rc_store_room *rooms[50];
    for (int i = 0; i < 50; i++) {
        char name[16];
        int nl = snprintf(name, sizeof(name), "g%02d", i);
        rooms[i] = rc_store_room_new(st, name, (size_t)nl, EPOCH_A);
    }
    rc_store_kick(st); /* the rooms' epochs: one batch */
    for (int w = 0; w < 1000 && rc_store_durable(st) < 1; w++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    rc_store_status a, b;
    rc_store_status_get(st, &a);
    uint64_t lsn = 0;
    for (int i = 0; i < 50; i++) lsn = rc_store_append(st, rooms[i], 1, 1000, 1, "r1", 2, 1, 0);
    rc_store_kick(st);
    for (int w = 0; w < 1000 && rc_store_durable(st) < lsn; w++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    rc_store_status_get(st, &b);
    CHECK(rc_store_durable(st) >= lsn);
    /* one journal sync; a checkpoint (once a second) may have added the rooms' own */
    CHECK(b.journal_syncs - a.journal_syncs == 1);
    char path[256];
    snprintf(path, sizeof(path), "%s/journal", dir);
    struct stat sb;
    CHECK(stat(path, &sb) == 0);
    rc_store_close(st);
    CHECK(stat(path, &sb) == 0 && sb.st_size == 0); /* emptied by the closing checkpoint */
    remove_all(dir);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    rc_log_level = RC_LOG_ERROR; /* the store's repairs and restores are expected here */
    loop = rc_loop_new();
    RUN(test_journal_completes_room);
    RUN(test_old_journal_read_first);
    RUN(test_torn_tail_bridged_or_lost);
    RUN(test_gap_is_lost);
    RUN(test_unclean_with_and_without_journal);
    RUN(test_journal_rooms_epochs_deletes);
    RUN(test_one_sync_per_batch);
    rc_loop_free(loop);
    UNIT_MAIN_END("test_journal");
}
