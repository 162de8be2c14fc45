/* test_store.c — tests for the durable log as a whole (src/store/store.c, writer.c, roomdir.c):
 * a real store in a temporary directory, its writer thread, and a reopen that restores what
 * was written. The loop is never run: durability is polled, not waited for through
 * on_durable.
 */
#include "unit.h"

#include "core/log.h"
#include "core/loop.h"
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

static void l_record_key(void *arg, void *room, uint64_t msg_id, uint64_t time_ms,
                         uint8_t opcode, uint64_t key, const char *payload, size_t len)
{
    struct lroom *r = room;
    if (r->nrecs == MAX_RECS) return;
    r->ids[r->nrecs] = msg_id;
    r->keys[r->nrecs] = key;
    memcpy(r->data[r->nrecs], payload, len < 15 ? len : 15);
    r->nrecs++;
}

/* The bridge for loaders written before keys: no key, everything else the same. */
static void l_record(void *arg, void *room, uint64_t msg_id, uint64_t time_ms, uint8_t opcode,
                     const char *payload, size_t len)
{
    l_record_key(arg, room, msg_id, time_ms, opcode, 0xDEAD, payload, len);
}

static const char *l_done(void *arg, void *room, rc_store_room *sr, bool lost)
{
    struct lroom *r = room;
    r->sr = sr;
    r->lost = lost;
    return r->epoch;
}

static const rc_store_loader loader = {.room = l_room, .record_key = l_record_key,
                                       .record = l_record, .done = l_done};
static const rc_store_loader old_loader = {.room = l_room, .record = l_record, .done = l_done};

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

static rc_store *open_store(rc_loop *loop, const char *dir, enum rc_fsync mode)
{
    return open_with(loop, dir, mode, &loader);
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
        if (i == 4)
            rc_store_append(st, sr, 5, 1000, 2, payload, (size_t)n, 1); /* the bridge: no key */
        else
            rc_store_append_key(st, sr, (uint64_t)i + 1, 1000, 1, payload, (size_t)n, 1, keys[i]);
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

    st = open_with(loop, dir, RC_FSYNC_ALWAYS, &old_loader);
    CHECK(st != NULL);
    rc_store_close(st);
    CHECK_EQ_INT(loaded[0].nrecs, 5);
    for (int i = 0; i < 5; i++) CHECK(loaded[0].keys[i] == 0xDEAD && loaded[0].ids[i] == (uint64_t)i + 1);
    rc_loop_free(loop);
    remove_all(dir);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    rc_log_level = RC_LOG_WARN; /* the store's "restored" and "durable log in" lines */
    RUN(test_keys_restored);
    UNIT_MAIN_END("test_store");
}
