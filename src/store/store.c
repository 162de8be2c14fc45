/* store.c — durable per-room logs with a writer thread; see store.h. */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "core/buf.h"
#include "core/log.h"
#include "codec/json.h"

#define REC_HEADER 8          /* u32 length + u32 crc32 */
#define REC_FIXED 17          /* u64 msg_id + u64 time_ms + u8 opcode */
#define REC_MAX (64u << 20)   /* no record is larger; a longer length is corruption */
#define ROOM_BACKLOG_MAX (16u << 20) /* unwritten bytes kept per room while the disk fails */

enum op_kind { OP_RECORD, OP_NEW, OP_EPOCH, OP_DELETE };

/* An operation from the loop to the writer, followed in the batch by its data. */
struct op {
    uint8_t kind;            /* enum op_kind */
    rc_store_room *sr;       /* the room */
    uint64_t first_kept;     /* OP_RECORD: oldest msg_id still retained */
    uint32_t len;            /* bytes of data following this header */
};

struct rc_store_room {
    /* Written by the loop before OP_NEW, then read-only. */
    char dir[PATH_MAX];      /* the room's directory */
    /* Writer-side state. */
    char epoch[RC_EPOCH_LEN + 1]; /* epoch to write when epoch_dirty */
    bool dir_ready;          /* directory and epoch file exist */
    bool epoch_dirty;        /* epoch file must be rewritten */
    int fd;                  /* current segment, -1 when not open */
    size_t seg_size;         /* bytes of the current segment known to be good */
    uint64_t *segs;          /* first msg_id of each segment on disk, ascending */
    size_t nsegs, capsegs;
    uint64_t first_kept;     /* latest retention bound from the loop */
    bool need_fsync;         /* written since the last fsync */
    rc_buf wbuf;             /* records not yet written */
    rc_store_room *touched_next; /* writer's list of rooms with pending bytes */
    bool touched;
    rc_store_room *all_prev, *all_next; /* every room the writer knows */
    atomic_bool lost;        /* the writer dropped records: the loop changes the epoch */
};

/* Longest data directory path accepted: room paths add "/rooms/" and up to 510 hex digits. */
#define DIR_MAX 3072

struct rc_store {
    char dir[DIR_MAX];       /* data directory */
    enum rc_fsync mode;
    size_t segment_max;      /* rotate segments beyond this size */
    rc_loop *loop;
    rc_io efd_io;            /* eventfd the writer signals */
    void (*on_durable)(void *arg);
    void *arg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Loop only: appended without a lock, handed over at each kick. */
    rc_buf filling;          /* ops appended by the loop since the last kick */
    /* Guarded by mu. */
    rc_buf handoff;          /* ops handed to the writer, not yet taken */
    uint64_t handoff_seq;    /* batch number of the last handed-off batch */
    bool stop;
    /* Loop only. */
    uint64_t seq;            /* batches handed off */
    /* Writer → loop. */
    _Atomic uint64_t durable;
    _Atomic uint64_t bytes_written, records, bytes_dropped, fsyncs, repaired;
    _Atomic int error;
    _Atomic size_t backlog;
    /* Writer only. */
    rc_store_room *all;      /* every room */
    rc_store_room *touched;  /* rooms with bytes to write */
};

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

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

/* ---- names and files ---------------------------------------------------------------------- */

static void hex_name(const char *name, size_t len, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hx[(unsigned char)name[i] >> 4];
        out[2 * i + 1] = hx[(unsigned char)name[i] & 15];
    }
    out[2 * len] = '\0';
}

static long unhex_name(const char *hex, char *out, size_t cap)
{
    size_t n = strlen(hex);
    if (n == 0 || n % 2 || n / 2 > cap) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + (size_t)k];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0) return -1;
            v = v * 16 + d;
        }
        out[i] = (char)v;
    }
    return (long)(n / 2);
}

static int write_file(const char *path, const char *data, size_t len, bool sync)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    ssize_t w = write(fd, data, len);
    int err = w == (ssize_t)len ? 0 : (w < 0 ? errno : ENOSPC);
    if (!err && sync && fsync(fd) < 0) err = errno;
    close(fd);
    if (!err && rename(tmp, path) < 0) err = errno;
    if (err) unlink(tmp);
    return -err;
}

static int remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : -errno;
    struct dirent *e;
    char p[PATH_MAX + 300];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    return rmdir(dir) < 0 ? -errno : 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lists the segments of a room directory, ascending. Returns the count or -errno. */
static long list_segments(const char *dir, uint64_t **out)
{
    DIR *d = opendir(dir);
    if (!d) return -errno;
    uint64_t *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l != 24 || strcmp(e->d_name + 20, ".log") != 0) continue;
        char *end;
        unsigned long long id = strtoull(e->d_name, &end, 10);
        if (end != e->d_name + 20) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            uint64_t *nv = realloc(v, cap * sizeof(*v));
            if (!nv) {
                free(v);
                closedir(d);
                return -ENOMEM;
            }
            v = nv;
        }
        v[n++] = id;
    }
    closedir(d);
    qsort(v, n, sizeof(*v), cmp_u64);
    *out = v;
    return (long)n;
}

static void seg_path(char *out, size_t cap, const char *dir, uint64_t first)
{
    snprintf(out, cap, "%s/%020llu.log", dir, (unsigned long long)first);
}

/* ---- reading (start-up and tooling) -------------------------------------------------------- */

typedef void record_fn(void *arg, uint64_t msg_id, uint64_t time_ms, uint8_t opcode,
                       const char *payload, size_t len);

/* Reads a room's segments in order, calling fn for each valid record. At the first invalid
 * one (torn, corrupt, or out of sequence) it stops; unless readonly it truncates that segment
 * there and deletes the later ones. Returns 1 if something was repaired (or would have been),
 * 0 if all was valid, -errno on I/O failure. segs and nsegs receive what remains on disk. */
static int read_room(const char *dir, bool readonly, record_fn *fn, void *arg, uint64_t **segs,
                     size_t *nsegs, size_t *last_size)
{
    uint64_t *v = NULL;
    long n = list_segments(dir, &v);
    if (n < 0) return (int)n;
    uint64_t prev = 0;
    int repaired = 0;
    size_t keep = (size_t)n, lastsz = 0;
    for (size_t i = 0; i < (size_t)n && !repaired; i++) {
        char p[PATH_MAX + 32];
        seg_path(p, sizeof(p), dir, v[i]);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            free(v);
            return -errno;
        }
        struct stat sb;
        fstat(fd, &sb);
        size_t size = (size_t)sb.st_size;
        unsigned char *data = size ? malloc(size) : NULL;
        size_t got = 0;
        while (data && got < size) {
            ssize_t r = read(fd, data + got, size - got);
            if (r <= 0) break;
            got += (size_t)r;
        }
        close(fd);
        if (size && (!data || got != size)) {
            free(data);
            free(v);
            return -EIO;
        }
        size_t off = 0;
        while (off < size) {
            if (size - off < REC_HEADER + REC_FIXED) break;
            uint32_t len = le32(data + off), crc = le32(data + off + 4);
            if (len < REC_FIXED || len > REC_MAX || len > size - off - REC_HEADER) break;
            const unsigned char *body = data + off + REC_HEADER;
            if ((uint32_t)crc32(0, body, len) != crc) break;
            uint64_t id = le64(body);
            if (prev && id != prev + 1) break;
            prev = id;
            fn(arg, id, le64(body + 8), body[16], (const char *)body + REC_FIXED, len - REC_FIXED);
            off += REC_HEADER + len;
        }
        free(data);
        lastsz = off;
        if (off < size) {
            repaired = 1;
            keep = off > 0 ? i + 1 : i;
            if (!readonly) {
                rc_warn("log '%s': invalid record at byte %zu of %zu: truncating", p, off, size);
                if (off > 0) {
                    if (truncate(p, (off_t)off) < 0) rc_warn("cannot truncate '%s': %s", p, strerror(errno));
                } else {
                    unlink(p);
                }
                for (size_t k = i + 1; k < (size_t)n; k++) {
                    char q[PATH_MAX + 32];
                    seg_path(q, sizeof(q), dir, v[k]);
                    rc_warn("log '%s': after a damaged segment: removing", q);
                    unlink(q);
                }
            }
        }
    }
    *segs = v;
    *nsegs = keep;
    if (last_size) *last_size = keep == (size_t)n ? lastsz : (keep ? lastsz : 0);
    return repaired;
}

static void touch(rc_store *st, rc_store_room *sr);

struct load_ctx {
    const rc_store_loader *loader;
    void *room;
};

static void load_record(void *arg, uint64_t msg_id, uint64_t time_ms, uint8_t opcode,
                        const char *payload, size_t len)
{
    struct load_ctx *x = arg;
    x->loader->record(x->loader->arg, x->room, msg_id, time_ms, opcode, payload, len);
}

static rc_store_room *room_alloc(const char *dir)
{
    rc_store_room *sr = calloc(1, sizeof(*sr));
    if (!sr) return NULL;
    snprintf(sr->dir, sizeof(sr->dir), "%s", dir);
    sr->fd = -1;
    return sr;
}

static void link_room(rc_store *st, rc_store_room *sr)
{
    sr->all_next = st->all;
    if (st->all) st->all->all_prev = sr;
    st->all = sr;
}

static void load_rooms(rc_store *st, const rc_store_loader *loader, bool unclean)
{
    char rooms[PATH_MAX];
    snprintf(rooms, sizeof(rooms), "%s/rooms", st->dir);
    DIR *d = opendir(rooms);
    if (!d) return;
    struct dirent *e;
    unsigned nrooms = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char name[256];
        long nl = unhex_name(e->d_name, name, 255);
        char rdir[PATH_MAX];
        if (snprintf(rdir, sizeof(rdir), "%s/%s", rooms, e->d_name) >= (int)sizeof(rdir)) continue;
        if (nl <= 0) {
            rc_warn("data directory: ignoring '%s' (not a room directory)", rdir);
            continue;
        }
        char epoch[RC_EPOCH_LEN + 2] = "", ep[PATH_MAX + 8];
        snprintf(ep, sizeof(ep), "%s/epoch", rdir);
        FILE *f = fopen(ep, "r");
        bool lost = unclean;
        if (!f || !fgets(epoch, sizeof(epoch), f) || strlen(epoch) < RC_EPOCH_LEN) {
            rc_epoch_new(epoch);
            lost = true;
        }
        if (f) fclose(f);
        epoch[RC_EPOCH_LEN] = '\0';
        struct load_ctx x = {.loader = loader};
        x.room = loader->room(loader->arg, name, (size_t)nl, epoch);
        if (!x.room) continue;
        rc_store_room *sr = room_alloc(rdir);
        uint64_t *segs = NULL;
        size_t nsegs = 0, last_size = 0;
        int r = read_room(rdir, false, load_record, &x, &segs, &nsegs, &last_size);
        if (r < 0) rc_warn("log '%s': cannot read: %s", rdir, strerror(-r));
        if (r == 1) {
            atomic_fetch_add(&st->repaired, 1);
            lost = true;
        }
        if (sr) {
            sr->segs = segs;
            sr->nsegs = nsegs;
            sr->capsegs = nsegs;
            sr->seg_size = last_size;
            sr->dir_ready = true;
            memcpy(sr->epoch, epoch, sizeof(sr->epoch));
            link_room(st, sr);
        } else {
            free(segs);
        }
        const char *now_epoch = loader->done(loader->arg, x.room, sr, lost);
        if (sr && now_epoch && strcmp(now_epoch, sr->epoch) != 0) {
            snprintf(sr->epoch, sizeof(sr->epoch), "%s", now_epoch);
            sr->epoch_dirty = true;
            touch(st, sr); /* written by the writer's first pass */
        }
        nrooms++;
    }
    closedir(d);
    if (nrooms) rc_info("data directory '%s': %u rooms restored%s", st->dir, nrooms,
                        unclean ? " (after an unclean shutdown: epochs changed)" : "");
}

/* ---- the writer thread -------------------------------------------------------------------- */

static void set_error(rc_store *st, int err, const char *what, const char *path)
{
    int old = atomic_exchange(&st->error, err);
    if (old != err) rc_error("durable log: cannot %s '%s': %s", what, path, strerror(err));
}

static void touch(rc_store *st, rc_store_room *sr)
{
    if (sr->touched) return;
    sr->touched = true;
    sr->touched_next = st->touched;
    st->touched = sr;
}

static bool ensure_dir(rc_store *st, rc_store_room *sr)
{
    if (!sr->dir_ready) {
        char rooms[PATH_MAX];
        snprintf(rooms, sizeof(rooms), "%s/rooms", st->dir);
        mkdir(st->dir, 0755);
        mkdir(rooms, 0755);
        if (mkdir(sr->dir, 0755) < 0 && errno != EEXIST) {
            set_error(st, errno, "create", sr->dir);
            return false;
        }
        sr->dir_ready = true;
    }
    if (sr->epoch_dirty) {
        char p[PATH_MAX + 8], line[RC_EPOCH_LEN + 2];
        snprintf(p, sizeof(p), "%s/epoch", sr->dir);
        snprintf(line, sizeof(line), "%s\n", sr->epoch);
        int r = write_file(p, line, strlen(line), st->mode != RC_FSYNC_NO);
        if (r < 0) {
            set_error(st, -r, "write", p);
            return false;
        }
        sr->epoch_dirty = false;
    }
    return true;
}

static int open_segment(rc_store *st, rc_store_room *sr, uint64_t first)
{
    char p[PATH_MAX + 32];
    seg_path(p, sizeof(p), sr->dir, first);
    int fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        set_error(st, errno, "open", p);
        return -1;
    }
    if (sr->nsegs == 0 || sr->segs[sr->nsegs - 1] != first) {
        if (sr->nsegs == sr->capsegs) {
            size_t cap = sr->capsegs ? sr->capsegs * 2 : 8;
            uint64_t *v = realloc(sr->segs, cap * sizeof(*v));
            if (!v) {
                close(fd);
                return -1;
            }
            sr->segs = v;
            sr->capsegs = cap;
        }
        sr->segs[sr->nsegs++] = first;
        sr->seg_size = 0;
    }
    sr->fd = fd;
    return 0;
}

/* Deletes segments whose messages are all older than first_kept (never the current one). */
static void trim_segments(rc_store_room *sr)
{
    size_t drop = 0;
    while (drop + 1 < sr->nsegs && sr->segs[drop + 1] <= sr->first_kept) drop++;
    for (size_t i = 0; i < drop; i++) {
        char p[PATH_MAX + 32];
        seg_path(p, sizeof(p), sr->dir, sr->segs[i]);
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
    if (rc_buf_size(&sr->wbuf) == 0) return true;
    if (!ensure_dir(st, sr)) goto failed;
    uint64_t first_id = le64((const unsigned char *)rc_buf_head(&sr->wbuf) + REC_HEADER);
    if (sr->fd >= 0 && sr->seg_size > 0 && sr->seg_size + rc_buf_size(&sr->wbuf) > st->segment_max) {
        if (st->mode != RC_FSYNC_NO && sr->need_fsync) fsync(sr->fd);
        close(sr->fd);
        sr->fd = -1;
        sr->need_fsync = false;
        sr->seg_size = 0;
        if (open_segment(st, sr, first_id) < 0) goto failed;
        trim_segments(sr);
    }
    if (sr->fd < 0) {
        uint64_t first = sr->nsegs && sr->seg_size > 0 ? sr->segs[sr->nsegs - 1] : first_id;
        if (open_segment(st, sr, first) < 0) goto failed;
    }
    while (rc_buf_size(&sr->wbuf) > 0) {
        ssize_t w = write(sr->fd, rc_buf_head(&sr->wbuf), rc_buf_size(&sr->wbuf));
        if (w < 0) {
            if (errno == EINTR) continue;
            int err = errno;
            /* Cut off whatever part of a record made it, so the file ends on a record. */
            if (ftruncate(sr->fd, (off_t)sr->seg_size) < 0) {}
            close(sr->fd);
            sr->fd = -1;
            char p[PATH_MAX + 32];
            seg_path(p, sizeof(p), sr->dir, sr->nsegs ? sr->segs[sr->nsegs - 1] : first_id);
            set_error(st, err, "write", p);
            goto failed;
        }
        if ((size_t)w < rc_buf_size(&sr->wbuf)) {
            /* A short write means the device is full; treat it as a failure of the rest. */
            if (ftruncate(sr->fd, (off_t)sr->seg_size) < 0) {}
            close(sr->fd);
            sr->fd = -1;
            set_error(st, ENOSPC, "write", sr->dir);
            goto failed;
        }
        sr->seg_size += (size_t)w;
        atomic_fetch_add(&st->bytes_written, (uint64_t)w);
        rc_buf_consume(&sr->wbuf, (size_t)w);
        sr->need_fsync = true;
    }
    return true;
failed:
    if (rc_buf_size(&sr->wbuf) > ROOM_BACKLOG_MAX) {
        atomic_fetch_add(&st->bytes_dropped, rc_buf_size(&sr->wbuf));
        rc_buf_release(&sr->wbuf);
        atomic_store(&sr->lost, true);
        return true;
    }
    return false;
}

static void free_room(rc_store *st, rc_store_room *sr)
{
    if (sr->fd >= 0) close(sr->fd);
    if (sr->all_prev) sr->all_prev->all_next = sr->all_next;
    else if (st->all == sr) st->all = sr->all_next;
    if (sr->all_next) sr->all_next->all_prev = sr->all_prev;
    rc_buf_release(&sr->wbuf);
    free(sr->segs);
    free(sr);
}

/* Applies one batch of operations. Returns true if all writes succeeded. */
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
            link_room(st, sr);
            memcpy(sr->epoch, data, RC_EPOCH_LEN);
            sr->epoch[RC_EPOCH_LEN] = '\0';
            sr->epoch_dirty = true;
            touch(st, sr);
            break;
        case OP_EPOCH:
            memcpy(sr->epoch, data, RC_EPOCH_LEN);
            sr->epoch_dirty = true;
            touch(st, sr);
            break;
        case OP_RECORD:
            put32((unsigned char *)data + 4,
                  (uint32_t)crc32(0, (const unsigned char *)data + REC_HEADER, o.len - REC_HEADER));
            if (rc_buf_append(&sr->wbuf, data, o.len) < 0) {
                atomic_fetch_add(&st->bytes_dropped, o.len);
                atomic_store(&sr->lost, true);
            }
            sr->first_kept = o.first_kept;
            atomic_fetch_add(&st->records, 1);
            touch(st, sr);
            break;
        case OP_DELETE:
            if (sr->touched) {
                /* Unlink from the touched list before freeing. */
                rc_store_room **pp = &st->touched;
                while (*pp && *pp != sr) pp = &(*pp)->touched_next;
                if (*pp) *pp = sr->touched_next;
            }
            if (sr->fd >= 0) {
                close(sr->fd);
                sr->fd = -1;
            }
            remove_tree(sr->dir);
            free_room(st, sr);
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

static bool sync_all(rc_store *st)
{
    bool ok = true;
    for (rc_store_room *sr = st->all; sr; sr = sr->all_next) {
        if (!sr->need_fsync || sr->fd < 0) continue;
        if (fsync(sr->fd) < 0) {
            set_error(st, errno, "fsync", sr->dir);
            ok = false;
            continue;
        }
        sr->need_fsync = false;
        atomic_fetch_add(&st->fsyncs, 1);
    }
    return ok;
}

static void *writer_main(void *arg)
{
    rc_store *st = arg;
    rc_buf work = RC_BUF_INIT;
    uint64_t last_sync = rc_clock_ns();
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->stop && rc_buf_size(&st->handoff) == 0) {
            /* Wake at least once a second: everysec fsync and retries after failures. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            if (pthread_cond_timedwait(&st->cv, &st->mu, &ts) == ETIMEDOUT) break;
        }
        rc_buf tmp = work;
        work = st->handoff;
        st->handoff = tmp;
        uint64_t seq = st->handoff_seq;
        bool stop = st->stop;
        pthread_mutex_unlock(&st->mu);

        apply_batch(st, &work);
        bool ok = flush_touched(st);
        uint64_t now = rc_clock_ns();
        if (st->mode == RC_FSYNC_ALWAYS || stop ||
            (st->mode == RC_FSYNC_EVERYSEC && now - last_sync >= RC_NS_PER_SEC)) {
            ok = sync_all(st) && ok;
            last_sync = now;
        }
        if (ok && st->touched == NULL) {
            if (atomic_load(&st->error)) {
                atomic_store(&st->error, 0);
                rc_info("durable log: writing again");
            }
            if (atomic_load(&st->durable) != seq) {
                atomic_store(&st->durable, seq);
                uint64_t one = 1;
                if (write(st->efd_io.fd, &one, sizeof(one)) < 0) {}
            }
        }
        pthread_mutex_lock(&st->mu);
        if (stop && rc_buf_size(&st->handoff) == 0) break;
    }
    pthread_mutex_unlock(&st->mu);
    rc_buf_release(&work);
    return NULL;
}

/* ---- loop side ---------------------------------------------------------------------------- */

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
    if (strlen(dir) >= DIR_MAX) {
        rc_error("durable log: data directory path too long: '%s'", dir);
        return NULL;
    }
    rc_store *st = calloc(1, sizeof(*st));
    if (!st) return NULL;
    snprintf(st->dir, sizeof(st->dir), "%s", dir);
    st->mode = mode;
    st->segment_max = segment_max < 4096 ? 4096 : segment_max;
    st->loop = loop;
    st->on_durable = on_durable;
    st->arg = arg;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);

    char p[PATH_MAX + 16];
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        set_error(st, errno, "create data directory", dir);
    snprintf(p, sizeof(p), "%s/clean", dir);
    bool clean = access(p, F_OK) == 0;
    load_rooms(st, loader, !clean);
    if (clean && unlink(p) < 0) set_error(st, errno, "remove", p);
    /* A probe write so that an unwritable directory is reported at once, not at first use. */
    snprintf(p, sizeof(p), "%s/.probe", dir);
    int r = write_file(p, "", 0, false);
    if (r < 0) set_error(st, -r, "write in data directory", dir);
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
    int tr = pthread_create(&st->thread, NULL, writer_main, st);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (tr != 0) goto err_io;
    rc_info("durable log in '%s', fsync %s", dir, rc_fsync_name(mode));
    return st;
err_io:
    rc_io_stop(loop, &st->efd_io);
err_fd:
    close(efd);
err:
    rc_error("durable log: cannot start: %s", strerror(errno));
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
    while (st->all) free_room(st, st->all);
    if (clean) {
        char p[PATH_MAX + 16];
        snprintf(p, sizeof(p), "%s/clean", st->dir);
        write_file(p, "", 0, true);
    }
    rc_io_stop(st->loop, &st->efd_io);
    close(st->efd_io.fd);
    rc_buf_release(&st->filling);
    rc_buf_release(&st->handoff);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st);
}

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
    char hex[2 * 255 + 1], dir[PATH_MAX];
    hex_name(name, len, hex);
    snprintf(dir, sizeof(dir), "%s/rooms/%s", st->dir, hex);
    rc_store_room *sr = room_alloc(dir);
    if (!sr) return NULL;
    post(st, OP_NEW, sr, 0, epoch, RC_EPOCH_LEN, NULL, 0);
    return sr;
}

void rc_store_room_epoch(rc_store *st, rc_store_room *sr, const char *epoch)
{
    post(st, OP_EPOCH, sr, 0, epoch, RC_EPOCH_LEN, NULL, 0);
}

void rc_store_room_delete(rc_store *st, rc_store_room *sr)
{
    post(st, OP_DELETE, sr, 0, NULL, 0, NULL, 0);
}

bool rc_store_room_lost(rc_store_room *sr)
{
    return atomic_exchange(&sr->lost, false);
}

uint64_t rc_store_append(rc_store *st, rc_store_room *sr, uint64_t msg_id, uint64_t time_ms,
                         uint8_t opcode, const void *payload, size_t len, uint64_t first_kept)
{
    /* The checksum is left to the writer thread: the loop only copies. */
    unsigned char h[REC_HEADER + REC_FIXED];
    uint32_t blen = (uint32_t)(REC_FIXED + len);
    put32(h, blen);
    put32(h + 4, 0);
    put64(h + REC_HEADER, msg_id);
    put64(h + REC_HEADER + 8, time_ms);
    h[REC_HEADER + 16] = opcode;
    post(st, OP_RECORD, sr, first_kept, h, sizeof(h), payload, len);
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

uint64_t rc_store_durable(const rc_store *st)
{
    return atomic_load(&((rc_store *)st)->durable);
}

void rc_store_status_get(rc_store *st, rc_store_status *out)
{
    out->error = atomic_load(&st->error);
    out->ok = out->error == 0;
    out->bytes_written = atomic_load(&st->bytes_written);
    out->records = atomic_load(&st->records);
    out->bytes_dropped = atomic_load(&st->bytes_dropped);
    out->fsyncs = atomic_load(&st->fsyncs);
    out->repaired = atomic_load(&st->repaired);
    out->backlog = atomic_load(&st->backlog);
}

/* ---- tooling ------------------------------------------------------------------------------ */

struct tool_ctx {
    uint64_t count, first, last, bytes;
    bool dump;
};

static void tool_record(void *arg, uint64_t msg_id, uint64_t time_ms, uint8_t opcode,
                        const char *payload, size_t len)
{
    struct tool_ctx *x = arg;
    if (!x->count) x->first = msg_id;
    x->count++;
    x->last = msg_id;
    x->bytes += len;
    if (!x->dump) return;
    if (opcode == 1) {
        printf("{\"msg_id\":%llu,\"time_ms\":%llu,\"type\":\"text\",\"data\":%.*s}\n",
               (unsigned long long)msg_id, (unsigned long long)time_ms, (int)len, payload);
    } else {
        char *b64 = malloc(4 * (len / 3 + 1) + 1);
        if (!b64) return;
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)payload, (int)len);
        printf("{\"msg_id\":%llu,\"time_ms\":%llu,\"type\":\"binary\",\"data_base64\":\"%s\"}\n",
               (unsigned long long)msg_id, (unsigned long long)time_ms, b64);
        free(b64);
    }
}

static int tool_room(const char *dir, const char *hex, bool dump)
{
    char rdir[PATH_MAX], name[256], esc[rc_json_escape_max(255)], ep[PATH_MAX + 8];
    char epoch[RC_EPOCH_LEN + 2] = "";
    long nl = unhex_name(hex, name, 255);
    if (nl <= 0) return 0;
    snprintf(rdir, sizeof(rdir), "%s/rooms/%s", dir, hex);
    snprintf(ep, sizeof(ep), "%s/epoch", rdir);
    FILE *f = fopen(ep, "r");
    if (f) {
        if (!fgets(epoch, sizeof(epoch), f)) epoch[0] = '\0';
        fclose(f);
    }
    epoch[strcspn(epoch, "\n")] = '\0';
    struct tool_ctx x = {.dump = dump};
    uint64_t *segs = NULL;
    size_t nsegs = 0;
    int r = read_room(rdir, true, tool_record, &x, &segs, &nsegs, NULL);
    free(segs);
    if (r < 0) {
        fprintf(stderr, "roomcast: cannot read '%s': %s\n", rdir, strerror(-r));
        return -1;
    }
    if (!dump) {
        size_t el = rc_json_escape(name, (size_t)nl, esc);
        printf("{\"room\":%.*s,\"epoch\":\"%s\",\"messages\":%llu,\"first_msg_id\":%llu,"
               "\"last_msg_id\":%llu,\"bytes\":%llu,\"damaged_tail\":%s}\n",
               (int)el, esc, epoch, (unsigned long long)x.count, (unsigned long long)x.first,
               (unsigned long long)x.last, (unsigned long long)x.bytes, r == 1 ? "true" : "false");
    }
    return 0;
}

int rc_store_tool_list(const char *dir)
{
    char rooms[PATH_MAX];
    snprintf(rooms, sizeof(rooms), "%s/rooms", dir);
    DIR *d = opendir(rooms);
    if (!d) {
        fprintf(stderr, "roomcast: cannot open data directory '%s': %s\n", rooms, strerror(errno));
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && tool_room(dir, e->d_name, false) < 0) rc = -1;
    closedir(d);
    return rc;
}

int rc_store_tool_dump(const char *dir, const char *room)
{
    size_t len = strlen(room);
    if (len == 0 || len > 255) {
        fprintf(stderr, "roomcast: invalid room name '%s'\n", room);
        return -1;
    }
    char hex[2 * 255 + 1], rdir[PATH_MAX];
    hex_name(room, len, hex);
    snprintf(rdir, sizeof(rdir), "%s/rooms/%s", dir, hex);
    if (access(rdir, F_OK) < 0) {
        fprintf(stderr, "roomcast: no room '%s' in '%s'\n", room, dir);
        return -1;
    }
    return tool_room(dir, hex, true);
}
