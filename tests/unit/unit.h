/* unit.h — a tiny unit-test harness for roomcast.
 *
 * Each tests/unit/test_NAME.c defines test functions with TEST(name) and lists them in
 * main() through RUN(name). A test fails on the first CHECK that does not hold; the binary
 * prints one line per failure and a closing "NAME: N passed, N failed" line, and exits
 * non-zero when anything failed. `build/.../tests/test_NAME [filter]` runs one file on its own,
 * optionally only the tests whose name contains filter. tests/unit/run.sh runs them all.
 */
#ifndef RC_UNIT_H
#define RC_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int unit_passed, unit_failed, unit_cur_failed;
static const char *unit_filter;

#define TEST(name) static void name(void)

#define RUN(name)                                                              \
    do {                                                                       \
        if (unit_filter && !strstr(#name, unit_filter)) break;                 \
        unit_cur_failed = 0;                                                   \
        name();                                                                \
        if (unit_cur_failed) unit_failed++; else unit_passed++;                \
    } while (0)

/* CHECK fails the current test and returns from it. */
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "FAIL %s:%d: %s: CHECK(%s)\n", __FILE__, __LINE__, \
                    __func__, #cond);                                          \
            unit_cur_failed = 1;                                               \
            return;                                                            \
        }                                                                      \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                     \
    do {                                                                       \
        long long unit_a_ = (long long)(a), unit_b_ = (long long)(b);          \
        if (unit_a_ != unit_b_) {                                              \
            fprintf(stderr, "FAIL %s:%d: %s: %s == %s (%lld != %lld)\n",       \
                    __FILE__, __LINE__, __func__, #a, #b, unit_a_, unit_b_);   \
            unit_cur_failed = 1;                                               \
            return;                                                            \
        }                                                                      \
    } while (0)

#define CHECK_MEM(a, alen, b, blen)                                            \
    do {                                                                       \
        size_t unit_al_ = (alen), unit_bl_ = (blen);                           \
        if (unit_al_ != unit_bl_ || memcmp((a), (b), unit_al_) != 0) {         \
            fprintf(stderr, "FAIL %s:%d: %s: '%.*s' != '%.*s'\n", __FILE__,    \
                    __LINE__, __func__, (int)unit_al_, (const char *)(a),      \
                    (int)unit_bl_, (const char *)(b));                         \
            unit_cur_failed = 1;                                               \
            return;                                                            \
        }                                                                      \
    } while (0)

#define UNIT_MAIN_BEGIN(argc, argv) unit_filter = (argc) > 1 ? (argv)[1] : NULL
#define UNIT_MAIN_END(file)                                                    \
    do {                                                                       \
        printf("%s: %d passed, %d failed\n", (file), unit_passed, unit_failed);\
        return unit_failed ? 1 : 0;                                            \
    } while (0)

/* Deterministic PRNG for random splits (xorshift64*), so failures reproduce. */
static unsigned long long unit_rng_state = 0x9E3779B97F4A7C15ull;
static inline unsigned long long unit_rand(void)
{
    unit_rng_state ^= unit_rng_state >> 12;
    unit_rng_state ^= unit_rng_state << 25;
    unit_rng_state ^= unit_rng_state >> 27;
    return unit_rng_state * 2685821657736338717ull;
}

#endif
