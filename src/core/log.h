/* log.h — leveled logging to stderr.
 *
 * One process-wide level, set at start-up from --log-level; it is the only mutable global
 * state in roomcast and it is never on the hot path (callers check rc_log_enabled first when
 * formatting would cost something). Lines look like
 *   2026-11-23T20:03:35.145Z warn  cannot bind '127.0.0.1:8080': Address already in use
 * Messages state the problem first and quote the offending value.
 */
#ifndef RC_LOG_H
#define RC_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum rc_log_level { RC_LOG_ERROR, RC_LOG_WARN, RC_LOG_INFO, RC_LOG_DEBUG };

extern enum rc_log_level rc_log_level;

/* rc_log_parse_level maps "error", "warn", "info", "debug" to a level; -1 when unknown. */
int rc_log_parse_level(const char *s);

static inline bool rc_log_enabled(enum rc_log_level l) { return l <= rc_log_level; }

void rc_log(enum rc_log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* rc_log_lines logs each non-empty line of text[0..len) at level l as "prefix: line" (messages
 * a parser printed to a memory stream, logged one entry per line). */
void rc_log_lines(enum rc_log_level l, const char *prefix, const char *text, size_t len);

#define rc_error(...) rc_log(RC_LOG_ERROR, __VA_ARGS__)
#define rc_warn(...) rc_log(RC_LOG_WARN, __VA_ARGS__)
#define rc_info(...) rc_log(RC_LOG_INFO, __VA_ARGS__)
#define rc_debug(...) do { if (rc_log_enabled(RC_LOG_DEBUG)) rc_log(RC_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
