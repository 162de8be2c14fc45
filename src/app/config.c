/* config.c — defaults and command-line parsing; see config.h. */
#include "app/config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/loop.h"
#include "store/store.h"

void rc_config_init(rc_config *cfg)
{
    *cfg = (rc_config){
        .bind = "127.0.0.1",
        .port = 8080,
        .max_connections = 0, /* 0: as many as the descriptor limit allows */
        .max_message_size = 1 << 20,
        .max_pending = 1 << 20,
        .max_header_size = 8192,
        .max_rooms_per_client = 64,
        .ping_interval = 5 * RC_NS_PER_SEC,
        .ping_timeout = 5 * RC_NS_PER_SEC,
        .handshake_timeout = 10 * RC_NS_PER_SEC,
        .close_timeout = 2 * RC_NS_PER_SEC,
        .log_level = RC_LOG_INFO,
        .history_size = 1000,
        .history_bytes = 1 << 20,
        .history_age = 0,
        .room_ttl = 300 * RC_NS_PER_SEC,
        .idempotency_window = 1000,
        .netsync = 1,
        .netsync_router_port = 5555,
        .netsync_pub_port = 5556,
        .netsync_discovery_port = 9999,
        .netsync_client_timeout = RC_NS_PER_SEC,
        .netsync_tick = 50 * RC_NS_PER_MS,
        .data_dir = NULL,
        .fsync_mode = RC_FSYNC_EVERYSEC,
    };
    /* The environment is the better place for a secret: argv is visible to every local user. */
    const char *key = getenv("ROOMCAST_API_KEY");
    cfg->api_key = key && *key ? key : NULL;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: roomcast [options]\n"
        "\n"
        "A real-time room messaging server: WebSocket clients join rooms, and every message\n"
        "published to a room reaches every member in one total order (per-room msg_id).\n"
        "\n"
        "  --bind ADDR                 listen address (default 127.0.0.1)\n"
        "  --port N                    listen port; 0 picks a free one (default 8080)\n"
        "  --max-connections N         client connections at most (default: as many as the\n"
        "                              file-descriptor limit allows)\n"
        "  --max-message-size BYTES    largest message accepted; larger ones close 1009\n"
        "                              (default 1048576)\n"
        "  --max-pending BYTES         output queued for one client before it is disconnected\n"
        "                              as a slow consumer, close 1008 (default 1048576)\n"
        "  --max-header-size BYTES     largest HTTP request head; larger ones get 431\n"
        "                              (default 8192)\n"
        "  --max-rooms-per-client N    rooms one connection may join (default 64)\n"
        "  --ping-interval SEC         ping a client after this much silence (default 5)\n"
        "  --ping-timeout SEC          drop a client that stays silent this long after a\n"
        "                              ping (default 5)\n"
        "  --handshake-timeout SEC     time for an HTTP request head to arrive, and idle\n"
        "                              time of a keep-alive HTTP connection (default 10)\n"
        "  --close-timeout SEC         time to wait for a peer to finish a close (default 2)\n"
        "  --log-level LEVEL           error, warn, info or debug (default info)\n"
        "  --no-latency-metrics        do not measure the latency and loop-time histograms of\n"
        "                              /metrics (counters stay; for measuring their cost)\n"
        "\n"
        "NetSync (STYLY NetSync-compatible ZeroMQ transport, see docs/netsync.md):\n"
        "  --no-netsync                do not open the NetSync ports\n"
        "  --netsync-bind ADDR         address of the NetSync ports (default: --bind)\n"
        "  --netsync-router-port N     ROUTER port for clients' DEALER; 0 picks a free one\n"
        "                              (default 5555)\n"
        "  --netsync-pub-port N        PUB port for clients' SUB; 0 picks (default 5556)\n"
        "  --netsync-discovery-port N  UDP and TCP discovery port; 0 picks (default 9999)\n"
        "  --netsync-client-timeout SEC  a client without transforms this long leaves its\n"
        "                              room (default 1)\n"
        "  --netsync-tick SEC          broadcast period of a changed room (default 0.05)\n"
        "\n"
        "History and durability:\n"
        "  --history-size N            messages each room keeps for clients that rejoin\n"
        "                              with \"since\"; 0 disables history (default 1000)\n"
        "  --history-bytes BYTES       bytes of messages each room keeps (default 1048576)\n"
        "  --history-age SEC           drop kept messages older than this (default: never)\n"
        "  --room-ttl SEC              keep a room and its history this long after its last\n"
        "                              member leaves (default 300)\n"
        "  --idempotency-window N      idempotency keys remembered per room (default 1000)\n"
        "  --data-dir DIR              keep an append-only log per room in DIR and restore\n"
        "                              rooms from it at start (default: memory only)\n"
        "  --fsync no|everysec|always  when the log is synced to disk (default everysec)\n"
        "  --list-rooms                with --data-dir: print its rooms as JSON lines, exit\n"
        "  --dump ROOM                 with --data-dir: print ROOM's log as JSON lines, exit\n"
        "  --api-key KEY               key for the backend HTTP API (Authorization: Bearer\n"
        "                              KEY); the environment variable ROOMCAST_API_KEY is\n"
        "                              read when the flag is absent (default: none, backend\n"
        "                              calls are refused)\n"
        "  --web-root DIR              serve the web client and demo from DIR instead of\n"
        "                              the copies built in (for development)\n"
        "  -h, --help                  this text\n"
        "  -V, --version               print the version\n");
}

static int parse_u64(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max) {
        fprintf(stderr, "roomcast: invalid value '%s' for %s\n", s, opt);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_seconds(const char *opt, const char *s, uint64_t *ns)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v <= 0 || v > 86400.0 * 365) {
        fprintf(stderr, "roomcast: invalid duration '%s' for %s (seconds > 0)\n", s, opt);
        return -1;
    }
    *ns = (uint64_t)(v * 1e9);
    return 0;
}

enum {
    OPT_BIND = 256, OPT_PORT, OPT_MAX_CONN, OPT_MAX_MSG, OPT_MAX_PENDING, OPT_MAX_HEADER,
    OPT_MAX_ROOMS, OPT_PING_INTERVAL, OPT_PING_TIMEOUT, OPT_HANDSHAKE_TIMEOUT,
    OPT_CLOSE_TIMEOUT, OPT_LOG_LEVEL, OPT_NO_LAT_METRICS,
    OPT_HISTORY_SIZE, OPT_HISTORY_BYTES, OPT_HISTORY_AGE, OPT_ROOM_TTL, OPT_IDEM_WINDOW,
    OPT_DATA_DIR, OPT_FSYNC, OPT_LIST_ROOMS, OPT_DUMP,
    OPT_API_KEY, OPT_WEB_ROOT,
    OPT_NO_NETSYNC, OPT_NS_BIND, OPT_NS_ROUTER_PORT, OPT_NS_PUB_PORT, OPT_NS_DISC_PORT,
    OPT_NS_CLIENT_TIMEOUT, OPT_NS_TICK,
};

int rc_config_parse(rc_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {
        {"bind", required_argument, NULL, OPT_BIND},
        {"port", required_argument, NULL, OPT_PORT},
        {"max-connections", required_argument, NULL, OPT_MAX_CONN},
        {"max-message-size", required_argument, NULL, OPT_MAX_MSG},
        {"max-pending", required_argument, NULL, OPT_MAX_PENDING},
        {"max-header-size", required_argument, NULL, OPT_MAX_HEADER},
        {"max-rooms-per-client", required_argument, NULL, OPT_MAX_ROOMS},
        {"ping-interval", required_argument, NULL, OPT_PING_INTERVAL},
        {"ping-timeout", required_argument, NULL, OPT_PING_TIMEOUT},
        {"handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT},
        {"close-timeout", required_argument, NULL, OPT_CLOSE_TIMEOUT},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"no-latency-metrics", no_argument, NULL, OPT_NO_LAT_METRICS},
        {"history-size", required_argument, NULL, OPT_HISTORY_SIZE},
        {"history-bytes", required_argument, NULL, OPT_HISTORY_BYTES},
        {"history-age", required_argument, NULL, OPT_HISTORY_AGE},
        {"room-ttl", required_argument, NULL, OPT_ROOM_TTL},
        {"idempotency-window", required_argument, NULL, OPT_IDEM_WINDOW},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"fsync", required_argument, NULL, OPT_FSYNC},
        {"list-rooms", no_argument, NULL, OPT_LIST_ROOMS},
        {"dump", required_argument, NULL, OPT_DUMP},
        {"api-key", required_argument, NULL, OPT_API_KEY},
        {"web-root", required_argument, NULL, OPT_WEB_ROOT},
        {"no-netsync", no_argument, NULL, OPT_NO_NETSYNC},
        {"netsync-bind", required_argument, NULL, OPT_NS_BIND},
        {"netsync-router-port", required_argument, NULL, OPT_NS_ROUTER_PORT},
        {"netsync-pub-port", required_argument, NULL, OPT_NS_PUB_PORT},
        {"netsync-discovery-port", required_argument, NULL, OPT_NS_DISC_PORT},
        {"netsync-client-timeout", required_argument, NULL, OPT_NS_CLIENT_TIMEOUT},
        {"netsync-tick", required_argument, NULL, OPT_NS_TICK},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        const char *name = optind > 1 ? argv[optind - 1] : "option";
        switch (c) {
        case OPT_BIND: cfg->bind = optarg; break;
        case OPT_PORT:
            if (parse_u64("--port", optarg, 65535, &v) < 0) return -1;
            cfg->port = (uint16_t)v;
            break;
        case OPT_MAX_CONN:
            if (parse_u64("--max-connections", optarg, UINT32_MAX, &v) < 0) return -1;
            cfg->max_connections = (uint32_t)v;
            break;
        case OPT_MAX_MSG:
            if (parse_u64("--max-message-size", optarg, 1ull << 31, &v) < 0) return -1;
            cfg->max_message_size = v;
            break;
        case OPT_MAX_PENDING:
            if (parse_u64("--max-pending", optarg, 1ull << 40, &v) < 0) return -1;
            cfg->max_pending = v;
            break;
        case OPT_MAX_HEADER:
            if (parse_u64("--max-header-size", optarg, 1 << 20, &v) < 0 || v < 256) {
                fprintf(stderr, "roomcast: --max-header-size must be 256..1048576\n");
                return -1;
            }
            cfg->max_header_size = v;
            break;
        case OPT_MAX_ROOMS:
            if (parse_u64("--max-rooms-per-client", optarg, 1 << 20, &v) < 0 || v == 0) {
                fprintf(stderr, "roomcast: --max-rooms-per-client must be at least 1\n");
                return -1;
            }
            cfg->max_rooms_per_client = (uint32_t)v;
            break;
        case OPT_PING_INTERVAL:
            if (parse_seconds("--ping-interval", optarg, &cfg->ping_interval) < 0) return -1;
            break;
        case OPT_PING_TIMEOUT:
            if (parse_seconds("--ping-timeout", optarg, &cfg->ping_timeout) < 0) return -1;
            break;
        case OPT_HANDSHAKE_TIMEOUT:
            if (parse_seconds("--handshake-timeout", optarg, &cfg->handshake_timeout) < 0)
                return -1;
            break;
        case OPT_CLOSE_TIMEOUT:
            if (parse_seconds("--close-timeout", optarg, &cfg->close_timeout) < 0) return -1;
            break;
        case OPT_LOG_LEVEL:
            if ((cfg->log_level = rc_log_parse_level(optarg)) < 0) {
                fprintf(stderr, "roomcast: invalid log level '%s' (error, warn, info, debug)\n",
                        optarg);
                return -1;
            }
            break;
        case OPT_API_KEY:
            if (!*optarg) {
                fprintf(stderr, "roomcast: --api-key must not be empty\n");
                return -1;
            }
            cfg->api_key = optarg;
            break;
        case OPT_WEB_ROOT: cfg->web_root = optarg; break;
        case OPT_HISTORY_SIZE:
            if (parse_u64("--history-size", optarg, 1u << 24, &v) < 0) return -1;
            cfg->history_size = (uint32_t)v;
            break;
        case OPT_HISTORY_BYTES:
            if (parse_u64("--history-bytes", optarg, 1ull << 40, &v) < 0) return -1;
            cfg->history_bytes = v;
            break;
        case OPT_HISTORY_AGE:
            if (parse_seconds("--history-age", optarg, &cfg->history_age) < 0) return -1;
            break;
        case OPT_ROOM_TTL:
            if (strcmp(optarg, "0") == 0) cfg->room_ttl = 0;
            else if (parse_seconds("--room-ttl", optarg, &cfg->room_ttl) < 0) return -1;
            break;
        case OPT_IDEM_WINDOW:
            if (parse_u64("--idempotency-window", optarg, 1u << 24, &v) < 0) return -1;
            cfg->idempotency_window = (uint32_t)v;
            break;
        case OPT_DATA_DIR: cfg->data_dir = *optarg ? optarg : NULL; break;
        case OPT_FSYNC:
            if ((cfg->fsync_mode = rc_fsync_parse(optarg)) < 0) {
                fprintf(stderr, "roomcast: invalid --fsync '%s' (no, everysec, always)\n", optarg);
                return -1;
            }
            break;
        case OPT_LIST_ROOMS: cfg->tool_list = 1; break;
        case OPT_NO_LAT_METRICS: cfg->no_latency_metrics = 1; break;
        case OPT_DUMP: cfg->tool_dump = optarg; break;
        case OPT_NO_NETSYNC: cfg->netsync = 0; break;
        case OPT_NS_BIND: cfg->netsync_bind = optarg; break;
        case OPT_NS_ROUTER_PORT:
            if (parse_u64("--netsync-router-port", optarg, 65535, &v) < 0) return -1;
            cfg->netsync_router_port = (uint16_t)v;
            break;
        case OPT_NS_PUB_PORT:
            if (parse_u64("--netsync-pub-port", optarg, 65535, &v) < 0) return -1;
            cfg->netsync_pub_port = (uint16_t)v;
            break;
        case OPT_NS_DISC_PORT:
            if (parse_u64("--netsync-discovery-port", optarg, 65535, &v) < 0) return -1;
            cfg->netsync_discovery_port = (uint16_t)v;
            break;
        case OPT_NS_CLIENT_TIMEOUT:
            if (parse_seconds("--netsync-client-timeout", optarg, &cfg->netsync_client_timeout) < 0)
                return -1;
            break;
        case OPT_NS_TICK:
            if (parse_seconds("--netsync-tick", optarg, &cfg->netsync_tick) < 0) return -1;
            break;
        case 'h': usage(stdout); return 1;
        case 'V': printf("roomcast %s\n", RC_VERSION); return 1;
        default:
            (void)name;
            fprintf(stderr, "Try 'roomcast --help'.\n");
            return -1;
        }
    }
    if ((cfg->tool_list || cfg->tool_dump) && !cfg->data_dir) {
        fprintf(stderr, "roomcast: --list-rooms and --dump need --data-dir\n");
        return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "roomcast: unexpected argument '%s'\nTry 'roomcast --help'.\n",
                argv[optind]);
        return -1;
    }
    return 0;
}
