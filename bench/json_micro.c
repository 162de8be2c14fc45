/* json_micro.c — micro-benchmark: roomcast's JSON hot path against libjansson.
 *
 * For every incoming room message the server validates the JSON, reads a few top-level keys,
 * drops any client-supplied "client_id"/"msg_id" and appends its own. This program times that
 * work per message for a typical ~100-byte chat message and a ~1 KiB message (with a spoofed
 * client_id to cut), done two ways:
 *
 *   roomcast  rc_json_scan + rc_json_copy_open + append `,"client_id":N,"msg_id":M}`
 *   jansson   json_loadb (json_loads that takes a length, as the server's buffers are not
 *             NUL-terminated) + json_object_get "type"/"room" + json_object_set_new
 *             client_id/msg_id + json_dumps(JSON_COMPACT) + free/decref
 *
 * and checks that both produce equivalent JSON (json_equal on the two outputs re-parsed by
 * jansson; our output must also re-scan with exactly one client_id and msg_id). Each figure is
 * the best of 31 timed rounds of about 5 ms each, in nanoseconds per message (the best, not the
 * mean, because other processes on a shared machine only ever make a round slower).
 *
 * Build and run (from the repository root; libjansson-dev must be installed):
 *
 *   mkdir -p build
 *   cc -O2 -Isrc bench/json_micro.c src/codec/json.c -ljansson -o build/json_micro
 *   build/json_micro
 *
 * Not part of `make`: it needs libjansson, which roomcast itself does not link.
 */
#include "codec/json.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CUT_IDS (RC_JK_BIT(RC_JK_CLIENT_ID) | RC_JK_BIT(RC_JK_MSG_ID))

static volatile size_t sink; /* keeps the compiler from discarding the work */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* put_u64 writes v in decimal at out and returns the digits written. */
static size_t put_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < k; i++) out[i] = tmp[k - 1 - i];
    return k;
}

/* ours rewrites msg into out the way the server does; returns the bytes written, 0 on error.
 * out needs n + 64 bytes. */
static size_t ours(const char *msg, size_t n, uint64_t cid, uint64_t mid, char *out)
{
    rc_json_top t;
    if (rc_json_scan(msg, n, CUT_IDS, &t) != RC_JSON_OK) return 0;
    /* What the server would look at before forwarding. */
    if (t.key[RC_JK_TYPE].type != RC_JSON_STRING || t.key[RC_JK_ROOM].type != RC_JSON_STRING)
        return 0;
    bool nonempty;
    size_t o = rc_json_copy_open(msg, &t, out, &nonempty);
    if (nonempty) out[o++] = ',';
    memcpy(out + o, "\"client_id\":", 12);
    o += 12;
    o += put_u64(out + o, cid);
    memcpy(out + o, ",\"msg_id\":", 10);
    o += 10;
    o += put_u64(out + o, mid);
    out[o++] = '}';
    return o;
}

/* theirs does the same with jansson; returns a malloc'd NUL-terminated string or NULL. */
static char *theirs(const char *msg, size_t n, uint64_t cid, uint64_t mid)
{
    json_error_t err;
    json_t *root = json_loadb(msg, n, 0, &err);
    if (!root) return NULL;
    const char *type = json_string_value(json_object_get(root, "type"));
    const char *room = json_string_value(json_object_get(root, "room"));
    char *s = NULL;
    if (type && room && json_is_object(root)) {
        json_object_set_new(root, "client_id", json_integer((json_int_t)cid));
        json_object_set_new(root, "msg_id", json_integer((json_int_t)mid));
        s = json_dumps(root, JSON_COMPACT);
    }
    json_decref(root);
    return s;
}

static void check_equivalent(const char *name, const char *msg, size_t n)
{
    char *out = malloc(n + 64);
    size_t o = ours(msg, n, 5, 17, out);
    char *js = theirs(msg, n, 5, 17);
    if (!o || !js) {
        fprintf(stderr, "%s: a side rejected the message\n", name);
        exit(1);
    }
    json_error_t err;
    json_t *a = json_loadb(out, o, 0, &err), *b = json_loads(js, 0, &err);
    rc_json_top t;
    int r = rc_json_scan(out, o, CUT_IDS, &t);
    if (!a || !b || !json_equal(a, b) || r != RC_JSON_OK || t.members_cut != 2) {
        fprintf(stderr, "%s: outputs differ\n  ours:    %.*s\n  jansson: %s\n", name, (int)o,
                out, js);
        exit(1);
    }
    printf("%-6s %4zu bytes in, equivalent output (ours %zu bytes, jansson %zu bytes)\n", name, n,
           o, strlen(js));
    json_decref(a);
    json_decref(b);
    free(js);
    free(out);
}

/* bench_* return the best ns/message over `rounds` rounds of `iters` messages. */
static double bench_ours(const char *msg, size_t n, long iters, int rounds)
{
    char *out = malloc(n + 64);
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        size_t acc = 0;
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) acc += ours(msg, n, 5, (uint64_t)i, out);
        double dt = (now_ns() - t0) / (double)iters;
        sink += acc;
        if (dt < best) best = dt;
    }
    free(out);
    return best;
}

static double bench_theirs(const char *msg, size_t n, long iters, int rounds)
{
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        size_t acc = 0;
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) {
            char *s = theirs(msg, n, 5, (uint64_t)i);
            acc += s[0];
            free(s);
        }
        double dt = (now_ns() - t0) / (double)iters;
        sink += acc;
        if (dt < best) best = dt;
    }
    return best;
}

/* bench_scan times validation alone, to show where our time goes. */
static double bench_scan(const char *msg, size_t n, long iters, int rounds)
{
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        size_t acc = 0;
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) {
            rc_json_top t;
            acc += (size_t)rc_json_scan(msg, n, CUT_IDS, &t) + t.members;
        }
        double dt = (now_ns() - t0) / (double)iters;
        sink += acc;
        if (dt < best) best = dt;
    }
    return best;
}

/* calibrate returns an iteration count that makes one round of fn last about 5 ms, so that
 * many short rounds fit in a second and the best of them is rarely disturbed by other load. */
static long calibrate(double (*fn)(const char *, size_t, long, int), const char *msg, size_t n)
{
    double per = fn(msg, n, 200, 1);
    long iters = (long)(5e6 / per);
    return iters < 10 ? 10 : iters;
}

static void run(const char *name, const char *msg, size_t n)
{
    check_equivalent(name, msg, n);
    const int rounds = 31;
    double s = bench_scan(msg, n, calibrate(bench_scan, msg, n), rounds);
    double a = bench_ours(msg, n, calibrate(bench_ours, msg, n), rounds);
    double b = bench_theirs(msg, n, calibrate(bench_theirs, msg, n), rounds);
    printf("%-6s roomcast scan only      %8.1f ns/msg  (%6.0f MB/s)\n", name, s,
           (double)n * 1e3 / s);
    printf("%-6s roomcast scan+splice    %8.1f ns/msg  (%6.0f MB/s)\n", name, a,
           (double)n * 1e3 / a);
    printf("%-6s jansson load+set+dump   %8.1f ns/msg  (%6.0f MB/s)  -> roomcast %.1fx faster\n",
           name, b, (double)n * 1e3 / b, b / a);
}

int main(void)
{
    static const char small[] =
        "{\"type\":\"chat\",\"room\":\"lobby\",\"text\":\"anyone up for a game tonight?\","
        "\"ts\":1700000000123}";

    /* ~1 KiB: nested members, escapes, non-ASCII text and a spoofed client_id to cut. */
    char big[2048];
    static const char head[] =
        "{\"type\":\"chat\",\"room\":\"general\",\"client_id\":999,\"reply_to\":123456,"
        "\"mentions\":[\"alice\",\"bob\",\"carol\"],\"attachments\":[{\"kind\":\"image\","
        "\"url\":\"https://cdn.example.com/u/42/img_2024_01_01.png\",\"w\":640,\"h\":480,"
        "\"alt\":\"a \\\"screenshot\\\" of the scoreboard\"}],\"meta\":{\"client\":\"web/1.4.2\","
        "\"lang\":\"fr\",\"edited\":false,\"thread\":null,\"score\":-12.5e2},\"text\":\"";
    static const char words[] = "Bonjour \xc3\xa0 tous, la partie commence \xc3\xa0 21h. "
                                "Line two\\nwith a tab\\there and \\u00e9 escapes. ";
    static const char tail[] = "\",\"ts\":1700000000123}";
    size_t n = 0;
    memcpy(big + n, head, sizeof head - 1);
    n += sizeof head - 1;
    while (n + (sizeof words - 1) + (sizeof tail - 1) <= 1024) {
        memcpy(big + n, words, sizeof words - 1);
        n += sizeof words - 1;
    }
    while (n + (sizeof tail - 1) < 1024) big[n++] = 'x';
    memcpy(big + n, tail, sizeof tail - 1);
    n += sizeof tail - 1;

    printf("jansson %s; best of 31 rounds per figure\n\n", JANSSON_VERSION);
    run("small", small, sizeof small - 1);
    printf("\n");
    run("1k", big, n);
    return (int)(sink & 0);
}
