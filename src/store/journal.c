/* journal.c — reading the durable log's journal back at start-up (store_int.h, "journal").
 *
 * Under --fsync always the writer appends, per batch, one entry per room that changed to
 * DIR/journal (format.h) and makes the journal durable with one fdatasync before it writes
 * the rooms' segments; segments are fsynced only at checkpoints, which start a new journal and
 * delete the previous one (journal.old) once the segments written before are synced. So after
 * a crash the two journals hold, for every room, whatever its segments may lack: start-up
 * reads them whole, the older first (rc__store_journal_read), and each room's
 * records that follow the last one its segments kept are appended to its last segment
 * (rc__store_journal_apply) before the room is handed to the loop.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "store/roomdir.h"

static rc__store_jroom *jroom_get(rc__store_journal *j, const char *name, size_t len)
{
    rc__store_jroom *jr = rc__store_journal_find(j, name, len);
    if (jr) return jr;
    jr = calloc(1, sizeof(*jr));
    if (!jr) return NULL;
    memcpy(jr->name, name, len);
    jr->len = len;
    if (rc_htab_insert(&j->rooms, &jr->node, rc_hash(name, len)) < 0) {
        free(jr);
        return NULL;
    }
    jr->next = j->list;
    j->list = jr;
    return jr;
}

rc__store_jroom *rc__store_journal_find(const rc__store_journal *j, const char *name, size_t len)
{
    uint64_t h = rc_hash(name, len);
    for (rc_hnode *n = rc_htab_chain(&j->rooms, h); n; n = n->next) {
        rc__store_jroom *jr = (rc__store_jroom *)(void *)((char *)n - offsetof(rc__store_jroom, node));
        if (n->hash == h && jr->len == len && memcmp(jr->name, name, len) == 0) return jr;
    }
    return NULL;
}

/* Reads the journal file at path into *j, after what is there already: 1, 0 when there is
 * no such file, -errno. */
static int read_file(const char *path, rc__store_journal *j)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -errno;
    j->present = true;
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    size_t size = (size_t)sb.st_size, got = 0;
    unsigned char *data = size ? malloc(size) : NULL;
    if (size && !data) {
        close(fd);
        return -ENOMEM;
    }
    while (got < size) {
        ssize_t r = read(fd, data + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    rc__store_reader rd;
    rc__store_reader_init(&rd, 0);
    rc__store_jentry e;
    while (rc__store_jread(&rd, data, got, &e) == RC__STORE_RECORD) {
        rc__store_jroom *jr = jroom_get(j, e.name, e.name_len);
        if (!jr) {
            free(data);
            return -ENOMEM;
        }
        j->entries++;
        if (e.kind == RC__STORE_J_DELETE) {
            jr->deleted = true;
            rc_buf_reset(&jr->recs);
            continue;
        }
        jr->deleted = false;
        memcpy(jr->epoch, e.epoch, RC__STORE_J_EPOCH);
        jr->epoch[RC__STORE_J_EPOCH] = '\0';
        if (e.recs_len && rc_buf_append(&jr->recs, e.recs, e.recs_len) < 0) {
            free(data);
            return -ENOMEM;
        }
    }
    /* A torn or corrupt tail is the batch the writer was making durable when the server
     * stopped: nothing of it was delivered or acknowledged. */
    if (rd.off < got) j->torn = true;
    free(data);
    return 1;
}

int rc__store_journal_read(const char *dir, rc__store_journal *j)
{
    memset(j, 0, sizeof(*j));
    char p[PATH_MAX + 16];
    snprintf(p, sizeof(p), "%s/" RC__STORE_JOURNAL_OLD, dir);
    int a = read_file(p, j);
    if (a < 0) return a;
    snprintf(p, sizeof(p), "%s/" RC__STORE_JOURNAL_FILE, dir);
    int b = read_file(p, j);
    if (b < 0) return b;
    return a || b;
}

void rc__store_journal_release(rc__store_journal *j)
{
    rc__store_jroom *next;
    for (rc__store_jroom *jr = j->list; jr; jr = next) {
        next = jr->next;
        rc_buf_release(&jr->recs);
        free(jr);
    }
    rc_htab_release(&j->rooms);
    memset(j, 0, sizeof(*j));
}

long rc__store_journal_apply(const rc__store_jroom *jr, const char *dir, uint64_t last,
                             rc__store_record_fn *fn, void *arg, uint64_t **segs, size_t *nsegs,
                             size_t *last_size, uint64_t *first_applied, bool *gap)
{
    const unsigned char *data = (const unsigned char *)rc_buf_head(&jr->recs);
    size_t n = rc_buf_size(&jr->recs);
    rc_buf out = RC_BUF_INIT;
    rc__store_reader rd;
    rc__store_reader_init(&rd, 0);
    rc__store_rec rec;
    long applied = 0;
    uint64_t next = last + 1;
    *first_applied = 0;
    *gap = false;
    for (;;) {
        rd.prev_id = 0; /* entries overlap after a retried checkpoint: the order is checked here */
        if (rc__store_read(&rd, data, n, &rec) != RC__STORE_RECORD) break;
        if (last && rec.msg_id < next) continue;
        if (last && rec.msg_id != next) {
            *gap = true; /* the segments lost records the journal no longer has */
            break;
        }
        if (!applied) *first_applied = rec.msg_id;
        const unsigned char *start = rec.payload - (rec.size - rec.len);
        if (rc_buf_append(&out, start, rec.size) < 0) {
            rc_buf_release(&out);
            return -ENOMEM;
        }
        last = rec.msg_id;
        next = last + 1;
        applied++;
    }
    if (!applied) {
        rc_buf_release(&out);
        /* The segment holds them all, maybe not fsynced (the writer syncs segments only at
         * checkpoints): synced now, before the journal is emptied. */
        if (n && *nsegs) {
            char p[PATH_MAX + 32];
            rc__store_seg_path(p, sizeof(p), dir, (*segs)[*nsegs - 1]);
            int fd = open(p, O_WRONLY | O_CLOEXEC);
            if (fd < 0 || fsync(fd) < 0) {
                int e = errno;
                if (fd >= 0) close(fd);
                return -e;
            }
            close(fd);
        }
        return 0;
    }
    /* Into the last segment, unless there is none or it is empty: a segment is named after its
     * first record. */
    uint64_t seg = *nsegs && *last_size ? (*segs)[*nsegs - 1] : *first_applied;
    if (!(*nsegs && (*segs)[*nsegs - 1] == seg)) {
        uint64_t *v = realloc(*segs, (*nsegs + 1) * sizeof(*v));
        if (!v) {
            rc_buf_release(&out);
            return -ENOMEM;
        }
        *segs = v;
        v[(*nsegs)++] = seg;
        *last_size = 0;
    }
    char p[PATH_MAX + 32];
    rc__store_seg_path(p, sizeof(p), dir, seg);
    int fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    int err = fd < 0 ? errno : 0;
    size_t done = 0;
    while (!err && done < rc_buf_size(&out)) {
        ssize_t w = write(fd, rc_buf_head(&out) + done, rc_buf_size(&out) - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) err = w < 0 ? errno : ENOSPC;
        else done += (size_t)w;
    }
    if (!err && fsync(fd) < 0) err = errno;
    if (err && fd >= 0 && ftruncate(fd, (off_t)*last_size) < 0) {}
    if (fd >= 0) close(fd);
    if (err) {
        rc_warn("log '%s': cannot restore from the journal: %s", p, strerror(err));
        rc_buf_release(&out);
        return -err;
    }
    *last_size += done;
    /* Handed to the loader only once on disk. */
    rc__store_reader_init(&rd, 0);
    while (rc__store_read(&rd, (const unsigned char *)rc_buf_head(&out), rc_buf_size(&out), &rec) ==
           RC__STORE_RECORD)
        fn(arg, rec.msg_id, rec.time_ms, rec.opcode, rec.key, (const char *)rec.payload, rec.len);
    rc_buf_release(&out);
    return applied;
}
