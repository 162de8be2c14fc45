/* config.h — roomcast's settings and their command-line flags.
 *
 * Every flag is listed by `roomcast --help`; README.md documents them. Durations are given in
 * seconds on the command line (fractions allowed) and kept in nanoseconds.
 */
#ifndef RC_CONFIG_H
#define RC_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct rc_config {
    const char *bind;             /* listen address (default 127.0.0.1) */
    uint16_t port;                /* listen port, 0 = pick a free one (default 8080) */
    uint32_t max_connections;     /* open client connections at most (default: fd limit) */
    size_t max_message_size;      /* largest WebSocket message accepted, bytes (1 MiB) */
    size_t max_pending;           /* output queued per client before it is cut off (1 MiB) */
    size_t max_header_size;       /* largest HTTP request head, bytes (8 KiB) */
    uint32_t max_rooms_per_client; /* rooms one connection may be in (64) */
    uint64_t ping_interval;       /* ns of silence before the server pings (5 s) */
    uint64_t ping_timeout;        /* ns to wait for any traffic after a ping (5 s) */
    uint64_t handshake_timeout;   /* ns for a request head to arrive, and HTTP idle (10 s) */
    uint64_t close_timeout;       /* ns to wait for the peer during a close (2 s) */
    int log_level;                /* enum rc_log_level */
    int no_latency_metrics;       /* --no-latency-metrics: skip the histogram hooks (to measure
                                   * what they cost; counters stay) */
    uint32_t history_size;        /* messages kept per room for recovery, 0 = none (1000) */
    size_t history_bytes;         /* frame bytes kept per room (1 MiB) */
    uint64_t history_age;         /* ns after which a kept message expires, 0 = never (0) */
    uint64_t room_ttl;            /* ns a room with history outlives its last member (300 s) */
    uint32_t idempotency_window;  /* idempotency keys remembered per room (at least) (1000) */
    const char *data_dir;         /* durable log directory, NULL = in memory only */
    int fsync_mode;               /* enum rc_fsync (everysec) */
    const char *tool_dump;        /* --dump ROOM: print a room's log and exit */
    int tool_list;                /* --list-rooms: print the rooms of --data-dir and exit */
    const char *api_key;          /* bearer key for backend HTTP calls (--api-key or env
                                     ROOMCAST_API_KEY); NULL: those calls are refused. Never logged */
    const char *web_root;         /* serve web/ files from this directory instead of the copies
                                     built into the binary (development); NULL: built-in */
    /* NetSync (STYLY NetSync-compatible ZeroMQ transport, src/netsync/) */
    int netsync;                  /* 1 = enabled (default), 0 = --no-netsync */
    const char *netsync_bind;     /* address of the three NetSync ports, NULL = same as bind */
    uint16_t netsync_router_port; /* ROUTER port, 0 = pick a free one (5555) */
    uint16_t netsync_pub_port;    /* PUB port, 0 = pick a free one (5556) */
    uint16_t netsync_discovery_port; /* UDP+TCP discovery port, 0 = pick a free one (9999) */
    uint64_t netsync_client_timeout; /* ns without a transform before a client leaves (1 s) */
    uint64_t netsync_tick;        /* ns between broadcasts of a changed room (50 ms) */
} rc_config;

/* rc_config_init fills in the defaults. */
void rc_config_init(rc_config *cfg);

/* rc_config_parse applies argv to cfg. Returns 0 to go on, 1 when the program should exit
 * successfully (--help, --version), -1 after printing an error to stderr. */
int rc_config_parse(rc_config *cfg, int argc, char **argv);

#define RC_VERSION "0.1.0"

#endif
