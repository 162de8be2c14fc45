/* stats.h — every layer's counters, gathered as JSON for GET /api/stats.
 *
 * Counters are plain integers owned by one loop (no atomics on the hot path), each kept by the
 * module it counts (transport: rc_net_stats, rooms: rc_rooms_stats, the log: rc_store_status).
 * Every kind of client fault has its own counter, so "bad input is counted" is checkable from
 * outside.
 */
#ifndef RC_STATS_H
#define RC_STATS_H

#include <stddef.h>
#include <stdint.h>

struct rc_server;

/* The open connections by what they speak now: "http", "ws", "tcp", "chat". */
enum { RC_TRANSPORTS = 4 };
extern const char *const rc_transport_names[RC_TRANSPORTS];
void rc_server_count_transports(const struct rc_server *srv, uint32_t out[RC_TRANSPORTS]);

/* rc_server_stats_json renders the counters as a JSON object into out (cap bytes, >= 8192);
 * returns the length written (truncated, never overflowing, if cap is too small). */
size_t rc_server_stats_json(const struct rc_server *srv, char *out, size_t cap);

#endif
