/* deflate_micro.c — micro-benchmark: compressing one room message, roomcast's fixed-code encoder
 * (rc_pmd_deflate_fixed) against zlib (rc_pmd_deflate: deflateReset + deflate(Z_SYNC_FLUSH)).
 *
 * A room message is compressed once and the frame shared by every member (rooms/wire.h), so
 * this cost, once per message, is what permessage-deflate adds to a room's fan-out. The
 * messages are what bench/ fans out with --game-json as the server delivers them: 200 bytes of
 * pose JSON (fresh numbers every time, padded with 'x' to the size) with the "room",
 * "client_id" and "msg_id" the server appends, about 255 bytes; and the same JSON without the
 * padding. Each encoder is timed two ways, in nanoseconds per message:
 *
 *   hot    back to back, 2,000 different messages round robin (the best of 15 rounds, as other
 *          processes on a shared machine only ever make a round slower)
 *   cold   each call timed on its own after 4 MiB of other memory was written, as in the server,
 *          where the fan-out of the message, its socket writes and the other rooms' work run
 *          between two compressions (the median of 3,000 calls, less the timer's own cost)
 *
 * and the compressed size (mean bytes) is printed with it; every output is inflated back and
 * compared. A last line times the other direction, what a message a client publishes
 * compressed costs the server: rc_pmd_inflate with a reset inflater (zlib), hot and cold. zlib is run at level 1 and 6 (wire.c uses 1 for messages over 4 KiB) with memLevel
 * 8 (its default) and 1.
 *
 * Build and run (from the repository root):
 *
 *   cc -O2 -Isrc bench/deflate_micro.c src/codec/pmdeflate.c -lz -o build/deflate_micro
 *   build/deflate_micro
 *
 * Not part of `make`: a one-off measurement behind a design decision (bench/RESULTS.md).
 */
#include "codec/pmdeflate.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define NMSG 2000
#define EVICT (4u << 20)

static char msgs[NMSG][512];
static size_t msg_len[NMSG];
static uint8_t zout[2048], back[2048];
static uint8_t *evict_buf;
static volatile size_t sink;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* make_msgs fills msgs with pose JSON as bench/msg.c writes it with --game-json, padded to 200
 * bytes when `pad`, and with the keys the server appends. */
static void make_msgs(bool pad)
{
    static const char *const anims[] = {"idle", "walk", "run", "jump", "crouch"};
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int m = 0; m < NMSG; m++) {
        double v[10];
        for (int i = 0; i < 10; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            v[i] = (double)(x % 2000001) / 1000.0 - 1000.0;
        }
        char *d = msgs[m];
        d += sprintf(d, "{\"type\":\"b\",\"s\":%d,\"q\":%d,\"t\":%llu", m % 1000, m,
                     1764900000000000ull + (unsigned long long)m * 1377);
        d += sprintf(d, ",\"pos\":[%.3f,%.3f,%.3f],\"rot\":[%.4f,%.4f,%.4f,%.4f],"
                     "\"vel\":[%.2f,%.2f,%.2f],\"anim\":\"%s\",\"hp\":%u",
                     v[0], v[1] / 10, v[2], v[3] / 1000, v[4] / 1000, v[5] / 1000, v[6] / 1000,
                     v[7] / 100, v[8] / 100, v[9] / 100, anims[x % 5], (unsigned)(x >> 40) % 101);
        d += sprintf(d, ",\"p\":\"");
        size_t hl = (size_t)(d - msgs[m]);
        if (pad && hl + 2 < 200) {
            memset(d, 'x', 200 - hl - 2);
            d += 200 - hl - 2;
        }
        d += sprintf(d, "\",\"room\":\"r%d\",\"client_id\":%d,\"msg_id\":%d}", m % 100,
                     1000 + m % 1000, 100000 + m);
        msg_len[m] = (size_t)(d - msgs[m]);
    }
}

typedef struct enc {
    const char *name;
    int level, mem;          /* zlib; level 0 = the fixed-code encoder */
    rc_pmd_stream s;
} enc;

static long run(enc *e, int m)
{
    if (!e->level) return (long)rc_pmd_deflate_fixed(msgs[m], msg_len[m], 15, zout);
    return rc_pmd_deflate(&e->s, e->level, msgs[m], msg_len[m], zout);
}

static int collect(void *arg, const uint8_t *p, size_t n)
{
    size_t *got = arg;
    memcpy(back + *got, p, n);
    *got += n;
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void evict(void)
{
    for (size_t i = 0; i < EVICT; i += 64) evict_buf[i]++;
}

static void bench(enc *e, double timer_ns)
{
    static rc_pmd_stream inf = {.bits = 15, .inflate = true};
    static uint8_t chunk[4096];
    double bytes = 0;
    for (int m = 0; m < NMSG; m++) {
        long z = run(e, m);
        size_t got = 0;
        if (z < 0 || rc_pmd_inflate(&inf, false, zout, (size_t)z, chunk, sizeof chunk, collect,
                                    &got) != 0 || got != msg_len[m] ||
            memcmp(back, msgs[m], got) != 0) {
            fprintf(stderr, "%s: message %d does not come back\n", e->name, m);
            exit(1);
        }
        bytes += (double)z;
    }
    double best = 1e18;
    for (int r = 0; r < 15; r++) {
        double t0 = now_ns();
        for (int m = 0; m < NMSG; m++) sink += (size_t)run(e, m);
        double t = (now_ns() - t0) / NMSG;
        if (t < best) best = t;
    }
    static double cold[3000];
    for (int k = 0; k < 3000; k++) {
        evict();
        double t0 = now_ns();
        sink += (size_t)run(e, k % NMSG);
        cold[k] = now_ns() - t0 - timer_ns;
    }
    qsort(cold, 3000, sizeof cold[0], cmp_d);
    printf("| %-22s | %7.0f | %7.0f | %6.1f |\n", e->name, best, cold[1500], bytes / NMSG);
}

static uint8_t zmsgs[NMSG][600];
static size_t zmsg_len[NMSG];

static int discard(void *arg, const uint8_t *p, size_t n)
{
    (void)arg;
    sink += n + p[0];
    return 0;
}

/* bench_inflate times inflating each message as the fixed-code encoder compressed it. */
static void bench_inflate(double timer_ns)
{
    static rc_pmd_stream inf = {.bits = 15, .inflate = true};
    static uint8_t chunk[16384];
    for (int m = 0; m < NMSG; m++)
        zmsg_len[m] = rc_pmd_deflate_fixed(msgs[m], msg_len[m], 15, zmsgs[m]);
    double best = 1e18;
    for (int r = 0; r < 15; r++) {
        double t0 = now_ns();
        for (int m = 0; m < NMSG; m++)
            rc_pmd_inflate(&inf, false, zmsgs[m], zmsg_len[m], chunk, sizeof chunk, discard, NULL);
        double t = (now_ns() - t0) / NMSG;
        if (t < best) best = t;
    }
    static double cold[3000];
    for (int k = 0; k < 3000; k++) {
        evict();
        double t0 = now_ns();
        rc_pmd_inflate(&inf, false, zmsgs[k % NMSG], zmsg_len[k % NMSG], chunk, sizeof chunk,
                       discard, NULL);
        cold[k] = now_ns() - t0 - timer_ns;
    }
    qsort(cold, 3000, sizeof cold[0], cmp_d);
    printf("| %-22s | %7.0f | %7.0f |        |\n", "inflate (zlib, reset)", best, cold[1500]);
    rc_pmd_stream_release(&inf);
}

int main(void)
{
    evict_buf = calloc(1, EVICT);
    if (!evict_buf) return 1;
    double tt[1001];
    for (int k = 0; k < 1001; k++) {
        double t0 = now_ns();
        tt[k] = now_ns() - t0;
    }
    qsort(tt, 1001, sizeof tt[0], cmp_d);
    double timer_ns = tt[500];
    for (int pad = 1; pad >= 0; pad--) {
        make_msgs(pad);
        double mean = 0;
        for (int m = 0; m < NMSG; m++) mean += (double)msg_len[m];
        printf("\n%s, %.1f bytes on average (timer cost %.0f ns, subtracted from cold)\n\n",
               pad ? "padded game JSON as the fan-out bench sends it"
                   : "game JSON without padding",
               mean / NMSG, timer_ns);
        printf("| encoder                | hot ns  | cold ns | bytes  |\n");
        printf("|---|---|---|---|\n");
        enc encs[] = {
            {"fixed codes (roomcast)", 0, 0, {0}},
            {"zlib level 1, mem 8", 1, 8, {0}},
            {"zlib level 1, mem 1", 1, 1, {0}},
            {"zlib level 6, mem 8", 6, 8, {0}},
            {"zlib level 6, mem 1", 6, 1, {0}},
        };
        for (size_t i = 0; i < sizeof encs / sizeof encs[0]; i++) {
            encs[i].s.bits = 15;
            encs[i].s.mem = (uint8_t)encs[i].mem;
            bench(&encs[i], timer_ns);
            rc_pmd_stream_release(&encs[i].s);
        }
        bench_inflate(timer_ns);
    }
    return 0;
}
