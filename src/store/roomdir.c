/* roomdir.c — the files of the data directory: segment names and listing, reading (and
 * repairing) a room's segments, small files replaced atomically; see roomdir.h. */
#include "store/roomdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/log.h"
#include "store/format.h"

int rc__store_write_file(const char *path, const char *data, size_t len, bool sync)
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

static void le32_put(unsigned char *w, uint32_t v)
{
    for (int i = 0; i < 4; i++) w[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t le32_get(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int rc_store_ids_load(const char *dir, uint64_t *mark)
{
    char p[PATH_MAX + 16], text[32];
    snprintf(p, sizeof(p), "%s/client_ids", dir);
    *mark = 0;
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return 0;
        rc_error("cannot read '%s': %s", p, strerror(errno));
        return -1;
    }
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    char *end;
    if (n > 0) text[n] = '\0';
    unsigned long long v = n > 0 ? strtoull(text, &end, 10) : 0;
    if (n <= 0 || end == text || (*end && *end != '\n')) {
        rc_error("'%s' is not a number: remove it only if no client id of an earlier run "
                 "matters any more",
                 p);
        return -1;
    }
    *mark = v;
    return 0;
}

int rc_store_ids_save(const char *dir, uint64_t mark)
{
    char p[PATH_MAX + 16], text[32];
    snprintf(p, sizeof(p), "%s/client_ids", dir);
    int n = snprintf(text, sizeof(text), "%llu\n", (unsigned long long)mark);
    int r = rc__store_write_file(p, text, (size_t)n, true);
    if (r < 0) rc_error("cannot write '%s': %s", p, strerror(-r));
    return r < 0 ? -1 : 0;
}

int rc__store_write_state(const char *path, const char *blob, size_t len, bool sync)
{
    if (len > UINT32_MAX - 12) return -EFBIG;
    unsigned char *f = malloc(12 + len);
    if (!f) return -ENOMEM;
    memcpy(f, "RCS1", 4);
    le32_put(f + 4, (uint32_t)crc32(0, (const unsigned char *)blob, (uInt)len));
    le32_put(f + 8, (uint32_t)len);
    if (len) memcpy(f + 12, blob, len);
    int r = rc__store_write_file(path, (const char *)f, 12 + len, sync);
    free(f);
    return r;
}

int rc__store_read_state(const char *room_dir, rc_buf *out)
{
    char p[PATH_MAX + 8];
    snprintf(p, sizeof(p), "%s/state", room_dir);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    struct stat stb;
    int r = -1;
    if (fstat(fd, &stb) == 0 && stb.st_size >= 12 && (uint64_t)stb.st_size <= UINT32_MAX &&
        rc_buf_reserve(out, (size_t)stb.st_size) == 0) {
        size_t want = (size_t)stb.st_size, got = 0;
        while (got < want) {
            ssize_t n = read(fd, rc_buf_tail(out) + got, want - got);
            if (n <= 0) break;
            got += (size_t)n;
        }
        const unsigned char *h = (const unsigned char *)rc_buf_tail(out);
        if (got == want && memcmp(h, "RCS1", 4) == 0 && le32_get(h + 8) == want - 12 &&
            (uint32_t)crc32(0, h + 12, (uInt)(want - 12)) == le32_get(h + 4)) {
            rc_buf_commit(out, want);
            rc_buf_consume(out, 12);
            r = 1;
        }
    }
    close(fd);
    return r;
}

int rc__store_remove_tree(const char *dir)
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

long rc__store_read_name(const char *room_dir, char out[RC__STORE_NAME_MAX])
{
    char p[PATH_MAX + 8];
    snprintf(p, sizeof(p), "%s/" RC__STORE_NAME_FILE, room_dir);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    /* One byte more than a name may have, to tell a longer file from a full-length name. */
    char buf[RC__STORE_NAME_MAX + 1];
    size_t got = 0;
    while (got < sizeof(buf)) {
        ssize_t r = read(fd, buf + got, sizeof(buf) - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got == 0 || got > RC__STORE_NAME_MAX) return -1;
    memcpy(out, buf, got);
    return (long)got;
}

long rc__store_room_name(const char *rooms, const char *dirname, char out[RC__STORE_NAME_MAX],
                         const char **why)
{
    *why = NULL;
    long nl = rc__store_name_decode(dirname, out, RC__STORE_NAME_HEX_MAX);
    if (nl > 0) return nl;
    if (!rc__store_dirname_hashed(dirname)) return -1;
    char rdir[PATH_MAX];
    snprintf(rdir, sizeof(rdir), "%s/%s", rooms, dirname);
    nl = rc__store_read_name(rdir, out);
    if (nl < 0) {
        *why = "no valid " RC__STORE_NAME_FILE " file: not trusted";
        return -1;
    }
    /* The name must lead back here: a name file copied, edited or damaged is not believed. */
    char back[RC__STORE_DIRNAME_SIZE];
    rc__store_dirname(out, (size_t)nl, back);
    if (strcmp(back, dirname) != 0) {
        *why = "its " RC__STORE_NAME_FILE " file does not hash to the directory's name: not trusted";
        return -1;
    }
    return nl;
}

int rc__store_create_room_dir(const char *rooms, const char *dirname, const char *name,
                              size_t len, bool sync)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/%s", rooms, dirname);
    if (!rc__store_dirname_hashed(dirname)) {
        if (mkdir(dir, 0755) == 0) return 0;
        if (errno != EEXIST) return -errno;
        struct stat sb; /* something that is not a directory cannot be used as one */
        return stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode) ? 0 : -ENOTDIR;
    }
    char tmp[PATH_MAX], p[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s/" RC__STORE_NEW_PREFIX "%s", rooms, dirname);
    snprintf(p, sizeof(p), "%s/" RC__STORE_NAME_FILE, tmp);
    rc__store_remove_tree(tmp); /* a previous attempt's */
    if (mkdir(tmp, 0755) < 0) return -errno;
    int r = rc__store_write_file(p, name, len, sync);
    if (r == 0 && rename(tmp, dir) < 0) {
        r = -errno;
        if (r == -EEXIST || r == -ENOTEMPTY) {
            /* Already there: fine if it is this room's (its name file says so), never a
             * directory whose name cannot be checked. */
            char have[RC__STORE_NAME_MAX];
            long hl = rc__store_read_name(dir, have);
            r = hl == (long)len && memcmp(have, name, len) == 0 ? 0 : -EEXIST;
        }
    }
    rc__store_remove_tree(tmp); /* on success it is gone already: nothing to do */
    return r;
}

int rc__store_remove_room(const char *rooms, const char *dirname)
{
    char dir[PATH_MAX], del[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/%s", rooms, dirname);
    snprintf(del, sizeof(del), "%s/" RC__STORE_DEL_PREFIX "%s", rooms, dirname);
    rc__store_remove_tree(del); /* an earlier deletion's, cut short */
    if (rename(dir, del) < 0) {
        if (errno == ENOENT) return 0;
        return rc__store_remove_tree(dir); /* cannot rename: delete in place, as before */
    }
    return rc__store_remove_tree(del);
}

bool rc__store_is_leftover(const char *entry)
{
    return strncmp(entry, RC__STORE_NEW_PREFIX, sizeof(RC__STORE_NEW_PREFIX) - 1) == 0 ||
           strncmp(entry, RC__STORE_DEL_PREFIX, sizeof(RC__STORE_DEL_PREFIX) - 1) == 0;
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
    /* Not with n == 0: v is NULL then, and qsort's pointer is declared nonnull (UBSan aborts
     * on a room directory that holds only its epoch: a room that never got a message). */
    if (n) qsort(v, n, sizeof(*v), cmp_u64);
    *out = v;
    return (long)n;
}

void rc__store_seg_path(char *out, size_t cap, const char *dir, uint64_t first)
{
    snprintf(out, cap, "%s/%020llu.log", dir, (unsigned long long)first);
}

bool rc__store_read_epoch(const char *room_dir, char out[RC_EPOCH_LEN + 2])
{
    char p[PATH_MAX + 8];
    out[0] = '\0';
    snprintf(p, sizeof(p), "%s/epoch", room_dir);
    FILE *f = fopen(p, "r");
    if (!f) return false;
    bool got = fgets(out, RC_EPOCH_LEN + 2, f) != NULL;
    fclose(f);
    return got;
}

/* A segment is read whole into memory and validated by format.c's reader: the writer rotates
 * segments at its segment_max (at most 64 MiB, plus one batch), and reading happens only at
 * start-up and in the tools, so reading in pieces would buy nothing but code. */
int rc__store_read_room(const char *dir, bool readonly, rc__store_record_fn *fn, void *arg,
                        uint64_t **segs, size_t *nsegs, size_t *last_size)
{
    uint64_t *v = NULL;
    long n = list_segments(dir, &v);
    if (n < 0) return (int)n;
    uint64_t prev = 0;
    int repaired = 0;
    size_t keep = (size_t)n, lastsz = 0;
    for (size_t i = 0; i < (size_t)n && !repaired; i++) {
        char p[PATH_MAX + 32];
        rc__store_seg_path(p, sizeof(p), dir, v[i]);
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
        /* The room's msg_ids run on across its segments: each goes on from the last. */
        rc__store_reader rd;
        rc__store_reader_init(&rd, prev);
        rc__store_rec rec;
        while (rc__store_read(&rd, data, size, &rec) == RC__STORE_RECORD)
            fn(arg, rec.msg_id, rec.time_ms, rec.opcode, rec.key, (const char *)rec.payload,
               rec.len);
        prev = rd.prev_id;
        size_t off = rd.off;
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
                    rc__store_seg_path(q, sizeof(q), dir, v[k]);
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
