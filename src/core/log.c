/* log.c — leveled logging to stderr; see log.h. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

enum rc_log_level rc_log_level = RC_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int rc_log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0) return i;
    return -1;
}

void rc_log(enum rc_log_level l, const char *fmt, ...)
{
    if (!rc_log_enabled(l)) return;
    char line[1024], ts[32];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    int n = snprintf(line, sizeof(line), "%s.%03dZ %-5s ", ts, (int)(tv.tv_usec / 1000),
                     level_names[l]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per line so concurrent writers (tests capture stderr) never interleave. */
    fprintf(stderr, "%s\n", line);
}

void rc_log_lines(enum rc_log_level l, const char *prefix, const char *text, size_t len)
{
    const char *p = text, *end = text + (text ? len : 0);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n) rc_log(l, "%s: %.*s", prefix, (int)n, p);
        p += n + 1;
    }
}
