/* config.h — roomcast's settings and their command-line flags.
 *
 * Every setting is one row of rc_config_options (config.c): the row names the flag, the type
 * and limits of its value, the rc_config field it sets, its default and its --help text.
 * rc_config_init, rc_config_parse and rc_config_usage all read that table, so a new flag is a
 * new field here plus one row there. README.md and docs/ describe the flags for users.
 *
 * Durations are given in seconds on the command line (fractions allowed) and kept in
 * nanoseconds. Strings point into argv (or at static defaults) and are never freed.
 */
#ifndef RC_CONFIG_H
#define RC_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define RC_TLS_WS_DEFLATE_SAME 2 /* --tls-ws-deflate same: follow --ws-deflate */

typedef struct rc_config {
    const char *bind;             /* listen address (default 127.0.0.1) */
    uint16_t port;                /* listen port, 0 = pick a free one (default 8080) */
    int reuseport;                /* 1 = --reuseport: every TCP listener binds with SO_REUSEPORT,
                                     so several nodes on one machine share its ports (0) */
    uint32_t max_connections;     /* open client connections at most, 0 = as many as the
                                     descriptor limit allows (default 0) */
    size_t max_message_size;      /* largest WebSocket message accepted, bytes (1 MiB) */
    size_t max_pending;           /* output queued per client before it is cut off, bytes
                                     (1 MiB) */
    size_t max_header_size;       /* largest HTTP request head, bytes (8 KiB) */
    int ws_deflate;               /* 1 = accept permessage-deflate at WebSocket upgrades (on) */
    int tls_ws_deflate;           /* the same on the TLS listener: 0 off, 1 on,
                                     RC_TLS_WS_DEFLATE_SAME as ws_deflate (the default) */
    size_t ws_deflate_threshold;  /* payloads shorter than this are not compressed, bytes (128) */
    uint32_t max_rooms_per_client; /* rooms one connection may be in (64) */
    uint64_t ping_interval;       /* ns of silence before the server pings (5 s) */
    uint64_t ping_timeout;        /* ns to wait for any traffic after a ping (5 s) */
    uint64_t handshake_timeout;   /* ns for a request head to arrive, and HTTP idle (10 s) */
    uint64_t close_timeout;       /* ns to wait for the peer during a close (2 s) */
    int log_level;                /* enum rc_log_level (info) */
    int no_latency_metrics;       /* 1 = --no-latency-metrics: skip the histogram hooks (to
                                     measure what they cost; counters stay) (0) */
    uint32_t history_size;        /* messages kept per room for recovery, 0 = none (1000) */
    size_t history_bytes;         /* frame bytes kept per room (1 MiB) */
    uint64_t history_age;         /* ns after which a kept message expires, 0 = never (0) */
    uint64_t room_ttl;            /* ns a room with history outlives its last member,
                                     0 = it goes with its last member (300 s) */
    uint32_t idempotency_window;  /* idempotency keys remembered per room (at least) (1000) */
    size_t history_memory;        /* bytes all rooms' histories keep together, 0 = no limit
                                     (256 MiB) */
    uint32_t max_rooms;           /* rooms that may exist at once, 0 = no limit (100000) */
    uint32_t room_create_rate;    /* rooms one connection may create per second, 0 = no limit
                                     (20) */
    uint64_t session_ttl;         /* ns a session outlives its connection (300 s) */
    uint32_t max_sessions;        /* released sessions remembered at most (100000) */
    uint32_t presence_limit;      /* rooms above this many members batch presence (100) */
    uint32_t max_state_keys;      /* state keys per room (1000) */
    size_t max_state_bytes;       /* bytes of state per room (512 KiB) */
    size_t state_memory;          /* bytes of state of all rooms, 0 = no limit (256 MiB) */
    const char *data_dir;         /* durable log directory, NULL = in memory only */
    int fsync_mode;               /* enum rc_fsync (everysec) */
    const char *redis_url;        /* --redis: rooms sequenced in Redis (docs/cluster.md);
                                     NULL = the embedded engine (default) */
    const char *redis_prefix;     /* key prefix in Redis ("rc") */
    uint64_t redis_heartbeat;     /* ns between node heartbeats (--redis-heartbeat) */
    uint64_t redis_node_ttl;      /* ns after which a silent node is dead (--redis-node-ttl) */
    const char *tool_dump;        /* --dump ROOM: print a room's log and exit; NULL = no */
    int tool_list;                /* 1 = --list-rooms: print the rooms of --data-dir and exit */
    const char *api_key;          /* bearer key for backend HTTP calls (--api-key or env
                                     ROOMCAST_API_KEY); NULL: those calls are refused. Never logged */
    const char *cors_origins;     /* origins allowed to fetch the web files and the public
                                     endpoints: "*", a comma-separated list, or "" (none) */
    const char *web_root;         /* serve web/ files from this directory instead of the copies
                                     built into the binary (development); NULL: built-in */
    /* Abuse limits (docs/limits.md); all live on reload, 0 = off */
    const char *allowed_origins;  /* Origins a browser's WebSocket upgrade may come from: "*"
                                     (default, any), a comma-separated list, or "" (none);
                                     upgrades without Origin (non-browser clients) pass */
    uint32_t connections_per_ip; /* open connections per IPv4 address or IPv6 /64 (0) */
    uint32_t rate_messages;       /* messages a second per connection (room protocol, chat) (0) */
    uint32_t rate_messages_burst; /* their burst, 0 = one second's worth (0) */
    size_t rate_bytes;            /* message bytes a second per connection (0) */
    size_t rate_bytes_burst;      /* their burst, 0 = one second's worth (0) */
    uint32_t join_rate;           /* joins a second per connection (0) */
    uint32_t join_burst;          /* their burst, 0 = one second's worth (0) */
    uint32_t rate_close_after;    /* refusals in a row (no quiet second between them) before
                                     the connection is closed 1008, 0 = never (10) */
    /* TLS (docs/tls.md) */
    const char *tls_cert;         /* PEM certificate chain; with tls_key: TLS listeners, NULL =
                                     none */
    const char *tls_key;          /* PEM private key of tls_cert, NULL = none */
    int32_t tls_port;             /* extra TLS listener beside the plain --port: -1 = off
                                     (default: then --tls-cert makes --port itself TLS), 0 =
                                     pick a free one, else the port */
    /* Connection tokens (docs/auth.md); the keys are built by rc_auth_keys_load (app/auth.h) */
    const char *jwt_secret;       /* --jwt-secret HMAC secrets, '\n'-separated (repeatable),
                                     NULL = none */
    const char *jwt_secret_file;  /* --jwt-secret-file [KID=]FILE rows, NULL = none */
    const char *jwt_public_key;   /* --jwt-public-key [KID=]FILE rows, NULL = none */
    const char *jwt_issuer;       /* required iss, NULL = not checked */
    const char *jwt_audience;     /* required aud member, NULL = not checked */
    uint32_t jwt_leeway;          /* seconds of skew allowed on exp/nbf (0) */
    int allow_anonymous;          /* 1 = with keys, connections without a token are anonymous */
    uint64_t auth_timeout;        /* ns a pending connection has to send auth (10 s) */
    /* Raw TCP and chat listeners (docs/tcp.md) */
    int32_t tcp_port;             /* raw TCP listener (room protocol as JSON lines or frames):
                                     -1 = off (default), 0 = pick a free one, else the port */
    int32_t tcp_tls_port;         /* the raw TCP listener's protocol over TLS (--tls-cert): -1 =
                                     off (default), 0 = pick a free one, else the port */
    int32_t chat_port;            /* chat listener for the seed chat client: -1 = off
                                     (default), 0 = pick a free one, else the port */
    const char *chat_room;        /* room the chat port's clients are in: 1..255 bytes of
                                     UTF-8 ("chat") */
    /* NetSync (STYLY NetSync-compatible ZeroMQ transport, src/netsync/) */
    int netsync;                  /* 1 = enabled (default), 0 = --no-netsync */
    const char *netsync_bind;     /* address of the three NetSync ports, NULL = same as bind */
    uint16_t netsync_router_port; /* control ROUTER port, 0 = pick a free one (5555) */
    uint16_t netsync_pose_port;   /* transform (pose) ROUTER port, 0 = pick (5557) */
    int netsync_tcp_discovery;    /* enum rc_netsync_tcp_disc: TCP discovery reply (v06) */
    size_t netsync_max_pending;   /* unicast bytes queued for one NetSync peer (4 MiB) */
    uint16_t netsync_pub_port;    /* PUB port, 0 = pick a free one (5556) */
    uint16_t netsync_discovery_port; /* UDP+TCP discovery port, 0 = pick a free one (9999) */
    uint64_t netsync_client_timeout; /* ns without a transform before a client leaves (1 s) */
    uint64_t netsync_v8_client_timeout; /* protocol 8, ns (5 s) */
    uint64_t netsync_v8_pose_tick;   /* protocol 8: ROOM_POSE period of a dirty room, ns (0.1 s) */
    uint64_t netsync_v8_idle;        /* protocol 8: idle re-broadcast, ns (2 s) */
    uint64_t netsync_v8_mapping;     /* protocol 8: mapping debounce, ns (0.5 s) */
    uint64_t netsync_v8_nv_flush;    /* protocol 8: NV window, ns (0.1 s) */
    uint64_t netsync_tick;        /* ns between broadcasts of a changed room (50 ms) */
    int zmq_engine;               /* enum rc_zms_engine (transport/zmtpsock.h): NetSync's and the
                                     broker's ZeroMQ sockets, native or libzmq */
    size_t netsync_max_message_size; /* largest message a NetSync client may send, room id
                                     aside (a frame, or a message's frames together), bytes
                                     (RC_NETSYNC_MAX_MESSAGE_DEFAULT, 128 KiB) */
    int32_t netsync_rest_port;    /* dedicated REST bridge listener: -1 = off (default), 0 =
                                     pick a free one, else the port (the reference's 8800) */
    const char *netsync_rest_cors; /* origins allowed to call the REST bridge: "*" (default),
                                     a comma-separated list, or "" (none) */
    /* Worker broker (ZeroMQ workers and clients, src/broker/; docs/broker.md) */
    int32_t broker_worker_port;   /* ROUTER for workers: -1 = off (default), 0 = pick a free
                                     one, else the port */
    int32_t broker_client_port;   /* ROUTER for ZeroMQ clients (seed REQ, MDP): -1 = off
                                     (default), 0 = pick, else the port */
    const char *broker_bind;      /* address of the broker ports, NULL = same as bind */
    const char *broker_default_service; /* service of workers and requests that name none
                                     ("default") */
    uint64_t service_grace;       /* ns a service without workers still queues (and
                                   * every service after start-up): --service-grace */
    uint64_t request_timeout;     /* ns a request may wait and run before it fails with
                                     timeout (5 s) */
    uint32_t service_queue;       /* requests one service holds waiting for a worker (1000) */
    uint64_t broker_heartbeat;    /* ns between heartbeats both ways (Paranoid Pirate, MDP);
                                     0 = the guide's: PPP 1 s, MDP 2.5 s (0) */
    uint32_t broker_liveness;     /* heartbeat intervals missed before a worker is dead (3) */
    size_t broker_max_message;    /* largest request/reply body, bytes; the broker's sockets
                                     take frames up to twice it (1 MiB) */
    const char *room_service;     /* --room-service PATTERN=SERVICE rows, '\n'-separated
                                     (repeatable), NULL = none */
    const char *broker_at_most_once; /* --broker-at-most-once SERVICE rows, '\n'-separated
                                     (repeatable), NULL = none */
    /* The configuration file (src/app/conffile.h; command line only) */
    const char *config_file;      /* --config FILE: read settings from FILE first, NULL = none */
    int check_config;             /* 1 = --check-config: validate flags and file, then exit */
    int print_config;             /* 1 = --print-config: print an example file, then exit */
} rc_config;

/* rc_config_init fills in the defaults of every row of the table, then takes the API key from
 * the environment variable ROOMCAST_API_KEY when it is set and not empty. */
void rc_config_init(rc_config *cfg);

/* rc_config_parse applies argv to cfg: `--flag value` or `--flag=value` (a unique prefix of a
 * flag also works, as with any getopt_long program), -h/--help, -V/--version. Returns 0 to go
 * on, 1 when the program should exit successfully (--help and --version print to stdout), -1
 * after printing an error to stderr. Settings of cfg that argv does not name are left alone.
 * Not thread-safe (getopt's globals). */
int rc_config_parse(rc_config *cfg, int argc, char **argv);

/* rc_config_parse_flags is rc_config_parse; cross_check 0 leaves out the checks between
 * settings (--dump needs --data-dir), for a first look at argv before a config file that may
 * supply the rest is read. */
int rc_config_parse_flags(rc_config *cfg, int argc, char **argv, int cross_check);

/* rc_config_usage writes the --help text, generated from the table, to f. */
void rc_config_usage(FILE *f);

/* Strings a parse had to make and a config must point at (the joined rows of a repeated flag,
 * the values read from a config file): owned here, freed together by rc_config_pool_release. */
typedef struct rc_config_pool {
    char **strs;                  /* the strings, each malloc'd */
    size_t n, cap;                /* used and allocated entries of strs */
} rc_config_pool;

/* rc_config_pool_add copies s[0..len) with a NUL into the pool; aborts when out of memory (a
 * config is read at start-up and on reload, where there is nothing sensible to fall back on). */
char *rc_config_pool_add(rc_config_pool *p, const char *s, size_t len);
void rc_config_pool_release(rc_config_pool *p);

struct rc_config_option;

/* rc_config_find returns the row whose name is name (no "--", no prefix matching), or NULL. */
const struct rc_config_option *rc_config_find(const char *name);

/* rc_config_set is the one value parser, shared by the command line and the config file: it
 * parses arg for row o into cfg. arg is NULL for a SWITCH given bare; a SWITCH given a value
 * (the file's `no-netsync yes`) takes yes/no/on/off/true/false/1/0, no leaving the default.
 * append: 1 when an earlier value from the same source stands, so an RC_OPT_APPEND row joins
 * arg to it with '\n'; 0 replaces (the command line replaces the rows of a file). The field
 * keeps pointing at arg (or at a joined copy in pool): arg must outlive cfg.
 * On a bad value prints why to err and returns -1: with where == NULL as the command line says
 * it ("roomcast: invalid value 'x' for --port (...)"), else as "WHERE: invalid value 'x' for
 * port (...)" (where is "file:line"). */
int rc_config_set(rc_config *cfg, const struct rc_config_option *o, const char *arg, int append,
                  const char *where, rc_config_pool *pool, FILE *err);

/* rc_config_parse_uint and rc_config_parse_bool are the number and switch parsers of the
 * table, for the config file's own keys (namespace rules), so that both read values alike. */
int rc_config_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);
int rc_config_parse_bool(const char *s); /* 1, 0, or -1 when s is none of the words */

/* rc_config_field_equal is true when a and b hold the same value for row o. */
int rc_config_field_equal(const rc_config *a, const rc_config *b, const struct rc_config_option *o);

/* rc_config_format_default writes o's default as a config-file value into buf ("" when the
 * default is "unset" and has no value to write). */
void rc_config_format_default(const struct rc_config_option *o, char *buf, size_t n);

/* ---- the flag table ----------------------------------------------------------------------- */

/* The type of a flag's value, which also fixes the type of the field it sets. */
enum rc_opt_type {
    RC_OPT_STRING,   /* const char *: the argument as is (see RC_OPT_NONEMPTY, _EMPTY_NULL) */
    RC_OPT_ROOM,     /* const char *: a room name, 1..RC_ROOM_NAME_MAX bytes of UTF-8 */
    RC_OPT_SWITCH,   /* int; takes no value: the flag sets the field to !default */
    RC_OPT_UINT,     /* an unsigned integer field of any width: decimal, min..max */
    RC_OPT_BYTES,    /* size_t, a number of bytes: parsed as RC_OPT_UINT (no k/M suffixes) */
    RC_OPT_SECONDS,  /* uint64_t ns, given in seconds: > 0 and at most a year, fractions
                        allowed (RC_OPT_ZERO_OFF also takes "0") */
    RC_OPT_PORT,     /* uint16_t: 0..65535, 0 = pick a free one */
    RC_OPT_OFF_PORT, /* int32_t: "off" or -1 = off, else a port as RC_OPT_PORT */
    RC_OPT_ENUM,     /* int: the index of the argument in names */
    RC_OPT_HELP,     /* -h, --help: no field, prints rc_config_usage */
    RC_OPT_VERSION,  /* -V, --version: no field, prints the version */
};

/* Modifiers (rc_config_option.flags). */
enum {
    RC_OPT_NONEMPTY = 1,   /* RC_OPT_STRING: "" is refused */
    RC_OPT_EMPTY_NULL = 2, /* RC_OPT_STRING: "" leaves the field NULL (unset) */
    RC_OPT_ZERO_OFF = 4,   /* RC_OPT_SECONDS: exactly "0" is accepted and stored as 0 */
    RC_OPT_APPEND = 8,     /* RC_OPT_STRING: repeatable, the values joined with '\n' */
    RC_OPT_LIVE = 16,      /* a change could take effect on reload (SIGHUP) without a
                              restart: the value is read per connection or request, not when
                              a listener or a table is set up. Unmarked rows need a restart */
    RC_OPT_CLI_ONLY = 32,  /* command line only, not a config-file key (--config itself) */
};

/* The groups of `--help`, in the order they are printed. */
enum rc_opt_section {
    RC_SEC_SERVER,   /* the HTTP/WebSocket server (no title) */
    RC_SEC_TLS,      /* TLS */
    RC_SEC_AUTH,     /* connection tokens and permissions */
    RC_SEC_TCP,      /* raw TCP and chat listeners */
    RC_SEC_NETSYNC,  /* NetSync transport */
    RC_SEC_BROKER,   /* worker broker */
    RC_SEC_HISTORY,  /* history, durability and their tools */
    RC_SEC_INFO,     /* -h, -V (no title) */
    RC_SEC_COUNT,
};

/* One row of the table: everything about one flag. */
typedef struct rc_config_option {
    const char *name;        /* long flag without "--"; also the key a config file would use */
    char short_name;         /* short flag letter, 0 = none */
    uint8_t type;            /* enum rc_opt_type */
    uint8_t flags;           /* RC_OPT_NONEMPTY | RC_OPT_EMPTY_NULL | ... (the enum above) */
    uint8_t section;         /* enum rc_opt_section: where --help lists the flag */
    size_t offset;           /* offsetof(rc_config, field) (unused by HELP, VERSION) */
    size_t size;             /* sizeof the field (0 for HELP, VERSION) */
    uint64_t min, max;       /* RC_OPT_UINT, RC_OPT_BYTES: accepted range, inclusive */
    int64_t def;             /* default of a numeric field: the value (ns for SECONDS, -1 for
                                an OFF_PORT that is off, the index into names for ENUM) */
    const char *def_str;     /* default of a STRING or ROOM field (NULL: unset) */
    const char *const *names; /* RC_OPT_ENUM: the accepted values, NULL-terminated */
    const char *metavar;     /* the value in --help ("N", "SEC"); NULL when there is none */
    const char *help;        /* --help text, without the default */
    const char *def_help;    /* how --help states the default, for when the value alone would
                                mislead ("never" for 0); NULL: derived from def/def_str */
} rc_config_option;

extern const rc_config_option rc_config_options[];
extern const size_t rc_config_noptions;

/* rc_config_section_title is the heading --help prints above section s ("" for none). */
const char *rc_config_section_title(enum rc_opt_section s);

#define RC_VERSION "0.1.0"

#endif
