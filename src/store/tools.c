/* tools.c — `roomcast --data-dir DIR --list-rooms` and `--dump ROOM`: read a data directory
 * without a server and print JSON lines; see store.h. Read-only: a damaged tail is reported
 * (damaged_tail) and the valid records before it printed, never repaired. */
#include "store/store.h"

#include <errno.h>
#include <dirent.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/json.h"
#include "store/format.h"
#include "store/roomdir.h"

struct tool_ctx {
    uint64_t count, first, last, bytes; /* records, first and last msg_id, payload bytes */
    bool dump;                          /* print each record (--dump), not just count them */
};

static void tool_record(void *arg, uint64_t msg_id, uint64_t time_ms, uint8_t opcode,
                        uint64_t key, const char *payload, size_t len)
{
    struct tool_ctx *x = arg;
    if (!x->count) x->first = msg_id;
    x->count++;
    x->last = msg_id;
    x->bytes += len;
    if (!x->dump) return;
    /* "key" only on records that have one, so a record without reads as it always did. */
    char keyf[32] = "";
    if (key) snprintf(keyf, sizeof(keyf), "\"key\":\"%016llx\",", (unsigned long long)key);
    if (opcode == 1) {
        printf("{\"msg_id\":%llu,\"time_ms\":%llu,%s\"type\":\"text\",\"data\":%.*s}\n",
               (unsigned long long)msg_id, (unsigned long long)time_ms, keyf, (int)len, payload);
    } else {
        char *b64 = malloc(4 * (len / 3 + 1) + 1);
        if (!b64) return;
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)payload, (int)len);
        printf("{\"msg_id\":%llu,\"time_ms\":%llu,%s\"type\":\"binary\",\"data_base64\":\"%s\"}\n",
               (unsigned long long)msg_id, (unsigned long long)time_ms, keyf, b64);
        free(b64);
    }
}

/* Prints the room in directory rooms/dirname, named name[0..nl). */
static int tool_room(const char *dir, const char *dirname, const char *name, long nl, bool dump)
{
    char rdir[PATH_MAX], esc[rc_json_escape_max(RC__STORE_NAME_MAX)];
    char epoch[RC_EPOCH_LEN + 2];
    snprintf(rdir, sizeof(rdir), "%s/rooms/%s", dir, dirname);
    rc__store_read_epoch(rdir, epoch);
    epoch[strcspn(epoch, "\n")] = '\0';
    struct tool_ctx x = {.dump = dump};
    uint64_t *segs = NULL;
    size_t nsegs = 0;
    int r = rc__store_read_room(rdir, true, tool_record, &x, &segs, &nsegs, NULL);
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
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char name[RC__STORE_NAME_MAX];
        const char *why;
        long nl = rc__store_room_name(rooms, e->d_name, name, &why);
        if (nl <= 0) {
            /* Reported, as the server does at start, and left out: never listed under a name
             * that cannot be checked. */
            if (why) fprintf(stderr, "roomcast: skipping '%s/%s': %s\n", rooms, e->d_name, why);
            continue;
        }
        if (tool_room(dir, e->d_name, name, nl, false) < 0) rc = -1;
    }
    closedir(d);
    return rc;
}

int rc_store_tool_dump(const char *dir, const char *room)
{
    size_t len = strlen(room);
    if (len == 0 || len > RC__STORE_NAME_MAX) {
        fprintf(stderr, "roomcast: invalid room name '%s'\n", room);
        return -1;
    }
    char dirname[RC__STORE_DIRNAME_SIZE], rooms[PATH_MAX], rdir[PATH_MAX + RC__STORE_DIRNAME_SIZE];
    rc__store_dirname(room, len, dirname);
    snprintf(rooms, sizeof(rooms), "%s/rooms", dir);
    snprintf(rdir, sizeof(rdir), "%s/%s", rooms, dirname);
    if (access(rdir, F_OK) < 0) {
        fprintf(stderr, "roomcast: no room '%s' in '%s'\n", room, dir);
        return -1;
    }
    char name[RC__STORE_NAME_MAX];
    const char *why;
    long nl = rc__store_room_name(rooms, dirname, name, &why);
    if (nl <= 0 || (size_t)nl != len || memcmp(name, room, len) != 0) {
        fprintf(stderr, "roomcast: room '%s': directory '%s' %s\n", room, rdir,
                why ? why : "does not hold it");
        return -1;
    }
    return tool_room(dir, dirname, name, nl, true);
}
