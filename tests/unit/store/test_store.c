/* test_store.c — tests for the durable log as a whole (src/store/store.c, writer.c, roomdir.c):
 * a real store in a temporary directory, its writer thread, and a reopen that restores what
 * was written. The loop is never run: durability is polled, not waited for through
 * on_durable.
 */
#include "unit.h"

#include "core/log.h"
#include "core/loop.h"
#include "store/format.h"
#include "store/store.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- what a reopen restores -------------------------------------------------------------- */

#define MAX_ROOMS 300
#define MAX_RECS 64

struct lroom {
    char name[256];          /* room name (not NUL-terminated when 255 bytes: see len) */
    size_t len;              /* its length */
    char epoch[RC_EPOCH_LEN + 1]; /* epoch read */
    uint64_t ids[MAX_RECS];  /* msg_ids of its records */
    uint64_t keys[MAX_RECS]; /* their idempotency key hashes */
    char data[MAX_RECS][16]; /* their payloads (short ones) */
    size_t nrecs;            /* records */
    rc_store_room *sr;       /* handle from done */
    bool lost;               /* done said lost */
};

static struct lroom loaded[MAX_ROOMS];
static size_t nloaded;

static void *l_room(void *arg, const char *name, size_t len, const char *epoch)
{
    if (nloaded == MAX_ROOMS) return NULL;
    struct lroom *r = &loaded[nloaded++];
    memset(r, 0, sizeof(*r));
    memcpy(r->name, name, len);
    r->len = len;
    memcpy(r->epoch, epoch, RC_EPOCH_LEN);
    return r;
}

static void l_record(void *arg, void *room, uint64_t msg_id, uint64_t time_ms, uint8_t opcode,
                     uint64_t key, const char *payload, size_t len)
{
    struct lroom *r = room;
    if (r->nrecs == MAX_RECS) return;
    r->ids[r->nrecs] = msg_id;
    r->keys[r->nrecs] = key;
    memcpy(r->data[r->nrecs], payload, len < 15 ? len : 15);
    r->nrecs++;
}

static const char *l_done(void *arg, void *room, rc_store_room *sr, bool lost)
{
    struct lroom *r = room;
    r->sr = sr;
    r->lost = lost;
    return r->epoch;
}

static const rc_store_loader loader = {.room = l_room, .record = l_record, .done = l_done};

static struct lroom *find_loaded(const char *name, size_t len)
{
    for (size_t i = 0; i < nloaded; i++)
        if (loaded[i].len == len && memcmp(loaded[i].name, name, len) == 0) return &loaded[i];
    return NULL;
}

/* ---- helpers ------------------------------------------------------------------------------ */

static char tmpl[64];

static const char *new_dir(void)
{
    snprintf(tmpl, sizeof(tmpl), "/tmp/rc-store-test-XXXXXX");
    return mkdtemp(tmpl);
}

static void remove_all(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", path);
}

static rc_store *open_with(rc_loop *loop, const char *dir, enum rc_fsync mode,
                           const rc_store_loader *l)
{
    nloaded = 0;
    return rc_store_open(loop, dir, mode, 1 << 20, l, NULL, NULL);
}

/* A store with 4 KiB segments (the smallest), calling on_durable(arg). */
static rc_store *open_small(rc_loop *loop, const char *dir, enum rc_fsync mode,
                            void (*on_durable)(void *), void *arg)
{
    nloaded = 0;
    return rc_store_open(loop, dir, mode, 4096, &loader, on_durable, arg);
}

static rc_store *open_store(rc_loop *loop, const char *dir, enum rc_fsync mode)
{
    return open_with(loop, dir, mode, &loader);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (up to 10 s) until batch lsn is durable for every room. */
static bool wait_durable(rc_store *st, uint64_t lsn)
{
    for (int w = 0; w < 1000 && rc_store_durable(st) < lsn; w++) sleep_ms(10);
    return rc_store_durable(st) >= lsn;
}

/* Waits (up to ms) until room sr is durable through lsn. */
static bool wait_room(const rc_store_room *sr, uint64_t lsn, int ms)
{
    for (int w = 0; w < ms / 10 && rc_store_room_durable(sr) < lsn; w++) sleep_ms(10);
    return rc_store_room_durable(sr) >= lsn;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the DIR's own */
}

static void name_of(char *out, size_t len, int seed)
{
    for (size_t i = 0; i < len; i++) out[i] = (char)('a' + (seed + (int)i) % 26);
}

static bool exists(const char *dir, const char *rel)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    return access(p, F_OK) == 0;
}

/* One room name[0..len) with records 1..n ("r<i>") written and the store closed. */
static rc_store_room *add_room(rc_store *st, const char *name, size_t len, int n)
{
    char epoch[RC_EPOCH_LEN + 1];
    rc_epoch_new(epoch);
    rc_store_room *sr = rc_store_room_new(st, name, len, epoch);
    for (int i = 1; i <= n; i++) {
        char payload[16];
        int pl = snprintf(payload, sizeof(payload), "r%d", i);
        rc_store_append(st, sr, (uint64_t)i, 1000, 1, payload, (size_t)pl, 1, 0);
    }
    return sr;
}

/* ---- tests -------------------------------------------------------------------------------- */

/* Idempotency key hashes go into the log with their records and come back on a restart (so a
 * resend after the restart is still recognised); records without one come back with 0. A
 * loader that only knows the old record callback gets the same records without keys. */
TEST(test_keys_restored)
{
    const char *dir = new_dir();
    CHECK(dir != NULL);
    rc_loop *loop = rc_loop_new();
    rc_store *st = open_store(loop, dir, RC_FSYNC_ALWAYS);
    CHECK(st != NULL);
    char epoch[RC_EPOCH_LEN + 1];
    rc_epoch_new(epoch);
    rc_store_room *sr = rc_store_room_new(st, "keys", 4, epoch);
    static const uint64_t keys[] = {0x0123456789abcdefull, 0, UINT64_MAX, 1, 0};
    for (int i = 0; i < 5; i++) {
        char payload[16];
        int n = snprintf(payload, sizeof(payload), "p%d", i);
        rc_store_append(st, sr, (uint64_t)i + 1, 1000, (uint8_t)(i == 4 ? 2 : 1), payload,
                        (size_t)n, 1, keys[i]);
    }
    rc_store_kick(st);
    rc_store_close(st);

    st = open_store(loop, dir, RC_FSYNC_ALWAYS);
    CHECK(st != NULL);
    rc_store_close(st);
    CHECK_EQ_INT(nloaded, 1);
    CHECK_EQ_INT(loaded[0].nrecs, 5);
    for (int i = 0; i < 5; i++) {
        char payload[16];
        snprintf(payload, sizeof(payload), "p%d", i);
        CHECK(loaded[0].ids[i] == (uint64_t)i + 1);
        CHECK(loaded[0].keys[i] == keys[i]);
        CHECK(strcmp(loaded[0].data[i], payload) == 0);
    }

    rc_loop_free(loop);
    remove_all(dir);
}

/* Every valid room name (1..255 bytes) is stored and restored, the longest ones included:
 * their directory cannot be named after the name's hex (510 characters), so it is named by
 * the name's SHA-256 and holds the name. Short names keep their hex directory. */
TEST(test_long_names_restored)
{
    const char *dir = new_dir();
    CHECK(dir != NULL);
    rc_loop *loop = rc_loop_new();
    rc_store *st = open_store(loop, dir, RC_FSYNC_EVERYSEC);
    CHECK(st != NULL);
    static const size_t lens[] = {1, 126, 127, 128, 200, 255};
    char names[6][255];
    char epoch[RC_EPOCH_LEN + 1];
    rc_epoch_new(epoch);
    for (int i = 0; i < 6; i++) {
        name_of(names[i], lens[i], i);
        rc_store_room *sr = rc_store_room_new(st, names[i], lens[i], epoch);
        CHECK(sr != NULL);
        rc_store_append(st, sr, 1, 1000, 1, "one", 3, 1, 0);
        rc_store_append(st, sr, 2, 1001, 2, "two", 3, 1, 0);
    }
    rc_store_kick(st);
    rc_store_close(st);
    CHECK(exists(dir, "rooms/61"));  /* "a": hex, as before */
    CHECK(exists(dir, "clean"));     /* nothing failed */

    st = open_store(loop, dir, RC_FSYNC_EVERYSEC);
    CHECK(st != NULL);
    rc_store_close(st);
    rc_loop_free(loop);
    CHECK_EQ_INT(nloaded, 6);
    for (int i = 0; i < 6; i++) {
        struct lroom *r = find_loaded(names[i], lens[i]);
        CHECK(r != NULL);
        CHECK_EQ_INT(r->nrecs, 2);
        CHECK(r->ids[0] == 1 && r->ids[1] == 2);
        CHECK(strcmp(r->data[1], "two") == 0);
        CHECK(strcmp(r->epoch, epoch) == 0);
        CHECK(!r->lost);
    }
    remove_all(dir);
}

/* A hashed directory whose name file is missing, or names another room, is reported and
 * skipped, and never written into: a room of that name cannot take it over. */
TEST(test_untrusted_hashed_dir)
{
    const char *dir = new_dir();
    CHECK(dir != NULL);
    rc_loop *loop = rc_loop_new();
    char name[200], other[200], dn[RC__STORE_DIRNAME_SIZE], odn[RC__STORE_DIRNAME_SIZE];
    name_of(name, sizeof(name), 3);
    name_of(other, sizeof(other), 4);
    rc__store_dirname(name, sizeof(name), dn);
    rc__store_dirname(other, sizeof(other), odn);
    rc_store *st = open_store(loop, dir, RC_FSYNC_NO);
    add_room(st, name, sizeof(name), 3);
    rc_store_kick(st);
    rc_store_close(st);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "test \"$(cat '%s/rooms/%s/name')\" = '%.200s'", dir, dn, name);
    CHECK(system(cmd) == 0);

    for (int damage = 0; damage < 3; damage++) {
        /* 0: name file gone; 1: another room's name in it; 2: empty. */
        snprintf(cmd, sizeof(cmd), "cd '%s/rooms/%s' && rm -f name%s", dir, dn,
                 damage == 1 ? " && printf other > name" : damage == 2 ? " && : > name" : "");
        CHECK(system(cmd) == 0);
        st = open_store(loop, dir, RC_FSYNC_NO);
        CHECK(st != NULL);
        CHECK_EQ_INT(nloaded, 0);
        /* The room comes back to life: it must not adopt the untrusted directory. */
        add_room(st, name, sizeof(name), 1);
        add_room(st, other, sizeof(other), 1);
        rc_store_kick(st);
        rc_store_close(st);
        CHECK(!exists(dir, "clean")); /* the failure to create it was an error */
        st = open_store(loop, dir, RC_FSYNC_NO);
        rc_store_close(st);
        CHECK_EQ_INT(nloaded, 1);     /* "other" only */
        CHECK(find_loaded(other, sizeof(other)) != NULL);
        /* The three old records are still there, untouched (for an operator to look at). */
        snprintf(cmd, sizeof(cmd), "test $(cat '%s/rooms/%s'/*.log | wc -c) -eq 81", dir, dn);
        CHECK(system(cmd) == 0);
        snprintf(cmd, sizeof(cmd), "rm -r '%s/rooms/%s'", dir, odn);
        CHECK(system(cmd) == 0);
    }
    /* Given its name back, the directory is trusted again: the room has its three records. */
    snprintf(cmd, sizeof(cmd), "printf '%%s' '%.200s' > '%s/rooms/%s/name'", name, dir, dn);
    CHECK(system(cmd) == 0);
    st = open_store(loop, dir, RC_FSYNC_NO);
    rc_store_close(st);
    rc_loop_free(loop);
    CHECK_EQ_INT(nloaded, 1);
    CHECK_EQ_INT(loaded[0].nrecs, 3);
    remove_all(dir);
}

/* Deleting rooms removes their directories, hex and hashed alike; directories a crash left
 * half created or half deleted are removed at start and never loaded. */
TEST(test_delete_and_leftovers)
{
    const char *dir = new_dir();
    CHECK(dir != NULL);
    rc_loop *loop = rc_loop_new();
    char lname[255];
    name_of(lname, sizeof(lname), 9);
    rc_store *st = open_store(loop, dir, RC_FSYNC_EVERYSEC);
    rc_store_room *a = add_room(st, "short", 5, 2);
    rc_store_room *b = add_room(st, lname, sizeof(lname), 2);
    add_room(st, "kept", 4, 1);
    rc_store_kick(st);
    for (int w = 0; w < 500 && !exists(dir, "rooms/6b657074/00000000000000000001.log"); w++)
        usleep(10000);
    rc_store_room_delete(st, a);
    rc_store_room_delete(st, b);
    rc_store_kick(st);
    rc_store_close(st);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "test $(ls -A '%s/rooms' | tr '\\n' ' ') = 6b657074", dir);
    CHECK(system(cmd) == 0);

    /* Leftovers: a creation and a deletion cut short. */
    snprintf(cmd, sizeof(cmd), "cd '%s/rooms' && mkdir .new-sha256-00 .del-73686f7274 && "
             "touch .new-sha256-00/name .del-73686f7274/00000000000000000001.log", dir);
    CHECK(system(cmd) == 0);
    st = open_store(loop, dir, RC_FSYNC_EVERYSEC);
    rc_store_close(st);
    rc_loop_free(loop);
    CHECK_EQ_INT(nloaded, 1);
    CHECK(find_loaded("kept", 4) != NULL);
    snprintf(cmd, sizeof(cmd), "test $(ls -A '%s/rooms' | tr '\\n' ' ') = 6b657074", dir);
    CHECK(system(cmd) == 0);
    remove_all(dir);
}

/* Many rooms written, under every --fsync mode: the writer never has more than
 * RC_STORE_FD_MAX segments open, and every record is on disk in the end (segments closed to
 * make room are reopened when written again). */
TEST(test_fd_bound)
{
    for (int mode = RC_FSYNC_NO; mode <= RC_FSYNC_ALWAYS; mode++) {
        const char *dir = new_dir();
        CHECK(dir != NULL);
        rc_loop *loop = rc_loop_new();
        int before = count_fds();
        rc_store *st = open_store(loop, dir, (enum rc_fsync)mode);
        CHECK(st != NULL);
        char epoch[RC_EPOCH_LEN + 1];
        rc_epoch_new(epoch);
        static rc_store_room *srs[MAX_ROOMS];
        for (int round = 0; round < 3; round++) {
            uint64_t lsn = 0;
            for (int i = 0; i < MAX_ROOMS; i++) {
                char name[16];
                int n = snprintf(name, sizeof(name), "room-%d", i);
                if (round == 0) srs[i] = rc_store_room_new(st, name, (size_t)n, epoch);
                lsn = rc_store_append(st, srs[i], (uint64_t)round + 1, 1, 1, name, (size_t)n,
                                          1, 0);
                if (i % 100 == 99) rc_store_kick(st); /* several batches a round */
            }
            rc_store_kick(st);
            CHECK(wait_durable(st, lsn));
            /* The store's eventfd and directory lock (and journal under always), and at most
             * the bound of segments. */
            CHECK(count_fds() - before <= 2 + (mode == RC_FSYNC_ALWAYS) + RC_STORE_FD_MAX);
        }
        rc_store_status stat;
        rc_store_status_get(st, &stat);
        CHECK(stat.ok);
        rc_store_close(st);
        CHECK_EQ_INT(count_fds(), before);
        CHECK(exists(dir, "clean"));
        st = open_store(loop, dir, (enum rc_fsync)mode);
        rc_store_close(st);
        rc_loop_free(loop);
        CHECK_EQ_INT(nloaded, MAX_ROOMS);
        for (size_t i = 0; i < nloaded; i++) {
            CHECK_EQ_INT(loaded[i].nrecs, 3);
            CHECK(loaded[i].ids[0] == 1 && loaded[i].ids[2] == 3);
        }
        remove_all(dir);
    }
}

/* One room's directory is unusable — a file stands where it would be, or (after it was
 * written) it is replaced by a file and the room must open a new segment: the other room's
 * records still become durable batch after batch, under every --fsync mode, while the failing
 * room's durability stays put (and the whole store's with it). Once the obstacle is gone, the
 * failing room catches up, and all its records are on disk. */
TEST(test_room_failure_is_isolated)
{
    for (int late = 0; late < 2; late++) {
        for (int mode = RC_FSYNC_NO; mode <= RC_FSYNC_ALWAYS; mode++) {
            const char *dir = new_dir();
            CHECK(dir != NULL);
            rc_loop *loop = rc_loop_new();
            rc_store *st = open_small(loop, dir, (enum rc_fsync)mode, NULL, NULL);
            CHECK(st != NULL);
            char epoch[RC_EPOCH_LEN + 1], cmd[512];
            rc_epoch_new(epoch);
            static char big[3000];
            memset(big, 'B', sizeof(big));
            if (!late) { /* "bad" is hex 626164 */
                snprintf(cmd, sizeof(cmd), "mkdir -p '%s/rooms' && touch '%s/rooms/626164'", dir, dir);
                CHECK(system(cmd) == 0);
            }
            rc_store_room *bad = rc_store_room_new(st, "bad", 3, epoch);
            rc_store_room *good = rc_store_room_new(st, "good", 4, epoch);
            uint64_t id = 1, lb = 0, lg = 0, stuck = 0;
            if (late) {
                lb = rc_store_append(st, bad, id, 1, 2, big, sizeof(big), 1, 0);
                rc_store_append(st, good, id++, 1, 1, "g", 1, 1, 0);
                rc_store_kick(st);
                CHECK(wait_room(bad, lb, 5000));
                stuck = rc_store_room_durable(bad);
                snprintf(cmd, sizeof(cmd), "cd '%s/rooms' && rm -r 626164 && touch 626164", dir);
                CHECK(system(cmd) == 0);
            }
            for (int round = 0; round < 4; round++, id++) {
                /* 3000 bytes more: the bad room must open a new segment (4 KiB each). */
                lb = rc_store_append(st, bad, id, 1, 2, big, sizeof(big), 1, 0);
                lg = rc_store_append(st, good, id, 1, 1, "g", 1, 1, 0);
                rc_store_kick(st);
                CHECK(wait_room(good, lg, 5000));
                CHECK(rc_store_room_durable(bad) < lb);
                if (late) CHECK(rc_store_room_durable(bad) >= stuck);
                CHECK(rc_store_durable(st) < lb); /* the whole store waits for "bad" */
            }
            rc_store_status stat;
            rc_store_status_get(st, &stat);
            CHECK(!stat.ok && stat.error != 0);
            /* The obstacle goes: "bad" catches up within the writer's retry (a second). */
            snprintf(cmd, sizeof(cmd), "rm -f '%s/rooms/626164'", dir);
            CHECK(system(cmd) == 0);
            CHECK(wait_room(bad, lb, 5000));
            CHECK(wait_durable(st, lb));
            rc_store_status_get(st, &stat);
            CHECK(stat.ok);
            rc_store_close(st);
            st = open_store(loop, dir, RC_FSYNC_NO);
            rc_store_close(st);
            rc_loop_free(loop);
            struct lroom *b = find_loaded("bad", 3), *g = find_loaded("good", 4);
            CHECK(b != NULL && g != NULL);
            CHECK_EQ_INT(g->nrecs, 4 + late);
            /* Everything "bad" had not written is there; what it had written before its
             * directory went is gone with the directory. */
            CHECK_EQ_INT(b->nrecs, 4);
            CHECK(b->ids[0] == 1 + (uint64_t)late && b->ids[3] == 4 + (uint64_t)late);
            remove_all(dir);
        }
    }
}

/* The same seen from the loop: on_durable fires as the healthy room's batches are written,
 * while the other room fails. */
struct dur_ctx {
    rc_loop *loop;           /* to stop */
    rc_store_room *good;     /* the room waited on */
    uint64_t lsn;            /* the batch waited for */
    int calls;               /* on_durable calls */
};

static void on_dur(void *arg)
{
    struct dur_ctx *x = arg;
    x->calls++;
    if (x->good && rc_store_room_durable(x->good) >= x->lsn) rc_loop_stop(x->loop);
}

static void on_timeout(rc_loop *loop, rc_timer *t)
{
    rc_loop_stop(loop);
}

TEST(test_on_durable_per_room)
{
    const char *dir = new_dir();
    CHECK(dir != NULL);
    rc_loop *loop = rc_loop_new();
    struct dur_ctx x = {.loop = loop};
    rc_store *st = open_small(loop, dir, RC_FSYNC_ALWAYS, on_dur, &x);
    CHECK(st != NULL);
    char epoch[RC_EPOCH_LEN + 1], cmd[512];
    rc_epoch_new(epoch);
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s/rooms' && touch '%s/rooms/626164'", dir, dir);
    CHECK(system(cmd) == 0);
    rc_store_room *bad = rc_store_room_new(st, "bad", 3, epoch);
    x.good = rc_store_room_new(st, "good", 4, epoch);
    rc_timer t;
    rc_timer_init(&t, on_timeout);
    for (uint64_t id = 1; id <= 3; id++) {
        rc_store_append(st, bad, id, 1, 1, "b", 1, 1, 0);
        x.lsn = rc_store_append(st, x.good, id, 1, 1, "g", 1, 1, 0);
        rc_store_kick(st);
        rc_timer_start(loop, &t, rc_loop_now(loop) + 5 * RC_NS_PER_SEC);
        rc_loop_run(loop);
        rc_timer_stop(loop, &t);
        CHECK(rc_store_room_durable(x.good) >= x.lsn);
        CHECK(rc_store_room_durable(bad) < x.lsn);
    }
    CHECK(x.calls >= 3);
    rc_store_close(st);
    rc_loop_free(loop);
    remove_all(dir);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    rc_log_level = RC_LOG_WARN; /* the store's "restored" and "durable log in" lines */
    RUN(test_keys_restored);
    RUN(test_long_names_restored);
    RUN(test_untrusted_hashed_dir);
    RUN(test_delete_and_leftovers);
    RUN(test_fd_bound);
    RUN(test_room_failure_is_isolated);
    RUN(test_on_durable_per_room);
    UNIT_MAIN_END("test_store");
}
