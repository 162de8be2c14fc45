/* config.c — the flag table, and the defaults, parser and --help that are read from it; see
 * config.h.
 *
 * Each flag is one row of rc_config_options (the idea of Redis's standardConfig table): the
 * enum/option-table/switch/help/default that a getopt_long program writes five times are
 * derived here from that row. The parser is still getopt_long, fed an option array built
 * from the table, so `--flag value`, `--flag=value`, unique prefixes, `--` and the permuting
 * of operands behave as before.
 */
#include "app/config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/utf8.h"
#include "core/log.h"
#include "core/loop.h"
#include "transport/zmtpsock.h"
#include "netsync/netsync.h"
#include "rooms/room.h"
#include "store/store.h"

/* ---- the table ---------------------------------------------------------------------------- */

/* ENUM values; a value's index is the enum constant (checked against rc_log_parse_level and
 * rc_fsync_parse by tests/unit/app/test_config.c). */
static const char *const log_level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const fsync_names[] = {"no", "everysec", "always", NULL};
static const char *const off_on_names[] = {"off", "on", NULL};
static const char *const off_on_same_names[] = {"off", "on", "same", NULL}; /* RC_TLS_WS_... */
static const char *const tcp_disc_names[] = {"v06", "v8", NULL}; /* enum rc_netsync_tcp_disc */
static const char *const zmq_engine_names[] = {"native", "libzmq", NULL}; /* enum rc_zms_engine */

#define FIELD(f) .offset = offsetof(rc_config, f), .size = sizeof(((rc_config *)0)->f)
#define SECONDS(s) ((int64_t)((s) * RC_NS_PER_SEC))
#define MS(ms) ((int64_t)((ms) * RC_NS_PER_MS))

/* The longest duration a flag takes, in seconds. */
#define MAX_SECONDS (86400.0 * 365)

/* Rows are listed in --help order; a section's rows are contiguous. */
const rc_config_option rc_config_options[] = {
    /* The HTTP/WebSocket server */
    {.name = "bind", .type = RC_OPT_STRING, FIELD(bind), .def_str = "127.0.0.1",
     .metavar = "ADDR", .help = "listen address"},
    {.name = "port", .type = RC_OPT_PORT, FIELD(port), .def = 8080,
     .metavar = "N", .help = "listen port; 0 picks a free one"},
    {.name = "reuseport", .type = RC_OPT_SWITCH, FIELD(reuseport), .def = 0,
     .help = "share every TCP listening port (--port, --tls-port, --tcp-port, ...) with other "
             "roomcast processes of the same user that also give it (SO_REUSEPORT): the kernel "
             "spreads connections over them; with --redis, one machine's cores as one server "
             "(docs/cluster.md); the NetSync and broker ports are never shared"},
    {.name = "max-connections", .type = RC_OPT_UINT, .flags = RC_OPT_LIVE,
     FIELD(max_connections),
     .max = UINT32_MAX, .def = 0, .def_help = "as many as the file-descriptor limit allows",
     .metavar = "N",
     .help = "client connections at most (the native ZeroMQ ports' connections included)"},
    {.name = "max-message-size", .type = RC_OPT_BYTES, FIELD(max_message_size),
     .max = 1ull << 31, .def = 1 << 20,
     .metavar = "BYTES", .help = "largest message accepted; larger ones close 1009"},
    {.name = "max-pending", .type = RC_OPT_BYTES, FIELD(max_pending),
     .max = 1ull << 40, .def = 1 << 20, .metavar = "BYTES",
     .help = "output queued for one client before it is disconnected as a slow consumer, "
             "close 1008"},
    {.name = "ws-deflate", .type = RC_OPT_ENUM, .flags = RC_OPT_LIVE, FIELD(ws_deflate),
     .names = off_on_names, .def = 1, .metavar = "on|off",
     .help = "accept permessage-deflate (RFC 7692) on the WebSocket listeners: room messages "
             "are compressed once per room for every member that negotiated it; "
             "--tls-ws-deflate can differ on the TLS listener; SIGHUP applies it to new "
             "connections"},
    {.name = "ws-deflate-threshold", .type = RC_OPT_BYTES, FIELD(ws_deflate_threshold),
     .max = 1ull << 31, .def = 128, .metavar = "BYTES",
     .help = "messages shorter than this go uncompressed to deflate clients"},
    {.name = "max-header-size", .type = RC_OPT_BYTES, FIELD(max_header_size),
     .min = 256, .max = 1 << 20, .def = 8192,
     .metavar = "BYTES", .help = "largest HTTP request head; larger ones get 431"},
    {.name = "max-rooms-per-client", .type = RC_OPT_UINT, .flags = RC_OPT_LIVE,
     FIELD(max_rooms_per_client),
     .min = 1, .max = 1 << 20, .def = 64,
     .metavar = "N", .help = "rooms one connection may join"},
    {.name = "max-rooms", .type = RC_OPT_UINT, FIELD(max_rooms), .max = 1u << 30,
     .def = 100000, .metavar = "N",
     .help = "rooms that may exist at once (they outlive their members by --room-ttl); a join "
             "that would create one more is refused; 0: no limit"},
    {.name = "room-create-rate", .type = RC_OPT_UINT, .flags = RC_OPT_LIVE,
     FIELD(room_create_rate), .max = 1u << 20,
     .def = 20, .metavar = "N",
     .help = "rooms one connection may create per second, after a first burst of "
             "--max-rooms-per-client plus one second's worth; 0: no limit"},
    {.name = "session-ttl", .type = RC_OPT_SECONDS, FIELD(session_ttl), .def = SECONDS(300),
     .metavar = "SEC",
     .help = "remember a client's session (its client_id, for a reconnect that presents it) "
             "this long after its connection closed"},
    {.name = "max-sessions", .type = RC_OPT_UINT, FIELD(max_sessions), .max = 1u << 26,
     .def = 100000, .metavar = "N",
     .help = "sessions remembered after their connection closed, at most (the oldest are "
             "forgotten first)"},
    {.name = "presence-limit", .type = RC_OPT_UINT, FIELD(presence_limit), .max = 1u << 20,
     .def = 100, .metavar = "N",
     .help = "in rooms above this many members, presence is a batch once a second and joined "
             "gives a member count instead of the list"},
    {.name = "max-state-keys", .type = RC_OPT_UINT, FIELD(max_state_keys), .max = 1u << 24,
     .def = 1000, .metavar = "N", .help = "state keys one room may hold"},
    {.name = "max-state-bytes", .type = RC_OPT_BYTES, FIELD(max_state_bytes), .max = 1ull << 32,
     .def = 512 << 10, .metavar = "BYTES",
     .help = "bytes of state (keys and their messages) one room may hold"},
    {.name = "state-memory", .type = RC_OPT_BYTES, FIELD(state_memory), .max = 1ull << 44,
     .def = 256 << 20, .metavar = "BYTES",
     .help = "bytes the states of all rooms may hold together (a new key or a bigger value "
             "beyond it is refused); 0: no limit"},
    {.name = "ping-interval", .type = RC_OPT_SECONDS, .flags = RC_OPT_LIVE,
     FIELD(ping_interval), .def = SECONDS(5),
     .metavar = "SEC", .help = "ping a client after this much silence"},
    {.name = "ping-timeout", .type = RC_OPT_SECONDS, .flags = RC_OPT_LIVE,
     FIELD(ping_timeout), .def = SECONDS(5),
     .metavar = "SEC", .help = "drop a client that stays silent this long after a ping"},
    {.name = "handshake-timeout", .type = RC_OPT_SECONDS, .flags = RC_OPT_LIVE,
     FIELD(handshake_timeout),
     .def = SECONDS(10), .metavar = "SEC",
     .help = "time for an HTTP request head to arrive, idle time of a keep-alive HTTP "
             "connection, and time for a ZMTP greeting and READY (native ZeroMQ engine)"},
    {.name = "close-timeout", .type = RC_OPT_SECONDS, .flags = RC_OPT_LIVE,
     FIELD(close_timeout), .def = SECONDS(2),
     .metavar = "SEC", .help = "time to wait for a peer to finish a close"},
    {.name = "log-level", .type = RC_OPT_ENUM, .flags = RC_OPT_LIVE,
     FIELD(log_level), .names = log_level_names,
     .def = RC_LOG_INFO, .metavar = "LEVEL", .help = "error, warn, info or debug"},
    {.name = "no-latency-metrics", .type = RC_OPT_SWITCH, FIELD(no_latency_metrics), .def = 0,
     .help = "do not measure the latency and loop-time histograms of /metrics (counters "
             "stay; for measuring their cost)"},
    {.name = "api-key", .type = RC_OPT_STRING, .flags = RC_OPT_LIVE | RC_OPT_NONEMPTY,
     FIELD(api_key),
     .def_help = "none, backend calls are refused", .metavar = "KEY",
     .help = "key for the backend HTTP API (Authorization: Bearer KEY); the environment "
             "variable ROOMCAST_API_KEY is read when the flag is absent"},
    {.name = "cors-origins", .type = RC_OPT_STRING, .flags = RC_OPT_LIVE,
     FIELD(cors_origins), .def_str = "*",
     .metavar = "LIST",
     .help = "origins whose pages may fetch the web client and the public endpoints "
             "(comma-separated, or * for any; empty: none)"},
    {.name = "web-root", .type = RC_OPT_STRING, FIELD(web_root), .metavar = "DIR",
     .help = "serve the web client and demo from DIR instead of the copies built in (for "
             "development)"},

    /* Abuse limits (src/app/limits.c, docs/limits.md): all live, all off by default */
    {.name = "allowed-origins", .type = RC_OPT_STRING, .flags = RC_OPT_LIVE,
     FIELD(allowed_origins), .def_str = "*", .metavar = "LIST",
     .help = "origins (scheme://host[:port], comma-separated) whose pages may open a WebSocket; "
             "others get 403 at the upgrade; * for any; upgrades without an Origin header "
             "(non-browser clients) are always let through"},
    {.name = "connections-per-ip", .type = RC_OPT_UINT, .flags = RC_OPT_LIVE,
     FIELD(connections_per_ip), .max = UINT32_MAX, .def = 0, .def_help = "0, no limit",
     .metavar = "N",
     .help = "open connections from one IPv4 address or IPv6 /64, on every client listener; "
             "more are refused (HTTP 503, TCP and chat a close line; the native ZeroMQ "
             "ports of NetSync and the broker close them)"},
    {.name = "rate-messages", .type = RC_OPT_UINT, .flags = RC_OPT_LIVE, FIELD(rate_messages),
     .max = 1u << 30, .def = 0, .def_help = "0, no limit", .metavar = "N",
     .help = "messages one connection may send a second (WebSocket, TCP, chat); more are "
             "refused with a rate_limited error"},
    {.name = "rate-messages-burst", .type = RC_OPT_UINT, .flags = RC_OPT_LIVE,
     FIELD(rate_messages_burst), .max = 1u << 30, .def = 0,
     .def_help = "0, one second's worth", .metavar = "N",
     .help = "messages a connection may send at once above --rate-messages"},
    {.name = "rate-bytes", .type = RC_OPT_BYTES, .flags = RC_OPT_LIVE, FIELD(rate_bytes),
     .max = 1ull << 33, .def = 0, .def_help = "0, no limit", .metavar = "BYTES",
     .help = "message bytes one connection may send a second; more are refused with a "
             "rate_limited error"},
    {.name = "rate-bytes-burst", .type = RC_OPT_BYTES, .flags = RC_OPT_LIVE,
     FIELD(rate_bytes_burst), .max = 1ull << 33, .def = 0,
     .def_help = "0, one second's worth", .metavar = "BYTES",
     .help = "message bytes a connection may send at once above --rate-bytes (a larger "
             "message passes only when the allowance is full)"},
    {.name = "join-rate", .type = RC_OPT_UINT, .flags = RC_OPT_LIVE, FIELD(join_rate),
     .max = 1u << 20, .def = 0, .def_help = "0, no limit", .metavar = "N",
     .help = "joins one connection may send a second; more are refused with rate_limited"},
    {.name = "join-burst", .type = RC_OPT_UINT, .flags = RC_OPT_LIVE, FIELD(join_burst),
     .max = 1u << 20, .def = 0, .def_help = "0, one second's worth", .metavar = "N",
     .help = "joins a connection may send at once above --join-rate"},
    {.name = "rate-close-after", .type = RC_OPT_UINT, .flags = RC_OPT_LIVE,
     FIELD(rate_close_after), .max = 1u << 20, .def = 10, .metavar = "N",
     .help = "a connection refused this many times for rate limits, without a second free "
             "of refusals in between, is closed (1008 rate limit exceeded); 0: never closed"},

    /* TLS */
    {.name = "tls-cert", .section = RC_SEC_TLS, .type = RC_OPT_STRING, .flags = RC_OPT_NONEMPTY,
     FIELD(tls_cert), .metavar = "FILE",
     .help = "PEM certificate (chain) for TLS; with --tls-key, --port speaks TLS (https, wss) "
             "unless --tls-port is given; SIGHUP reloads it"},
    {.name = "tls-key", .section = RC_SEC_TLS, .type = RC_OPT_STRING, .flags = RC_OPT_NONEMPTY,
     FIELD(tls_key), .metavar = "FILE", .help = "PEM private key of --tls-cert"},
    {.name = "tls-port", .section = RC_SEC_TLS, .type = RC_OPT_OFF_PORT, FIELD(tls_port),
     .def = -1, .metavar = "N",
     .help = "a TLS listener on port N beside the plain --port (same routes); 0 picks a free "
             "one"},
    {.name = "tls-ws-deflate", .section = RC_SEC_TLS, .type = RC_OPT_ENUM, .flags = RC_OPT_LIVE,
     FIELD(tls_ws_deflate), .names = off_on_same_names, .def = RC_TLS_WS_DEFLATE_SAME,
     .metavar = "on|off|same",
     .help = "--ws-deflate for the TLS WebSocket listener (--tls-port, or --port when it "
             "speaks TLS); same: as --ws-deflate"},

    /* Connection tokens and permissions (docs/auth.md). Keys are read when the server starts
     * and, once the lead's reload lands, rebuilt with rc_auth_keys_load on SIGHUP: LIVE. */
    {.name = "jwt-secret", .section = RC_SEC_AUTH, .type = RC_OPT_STRING,
     .flags = RC_OPT_NONEMPTY | RC_OPT_APPEND | RC_OPT_LIVE, FIELD(jwt_secret),
     .metavar = "SECRET",
     .help = "HMAC secret (at least 32 bytes, taken as is) for HS256/HS384/HS512 tokens; "
             "repeatable; with any key, connections need a token (docs/auth.md)"},
    {.name = "jwt-secret-file", .section = RC_SEC_AUTH, .type = RC_OPT_STRING,
     .flags = RC_OPT_NONEMPTY | RC_OPT_APPEND | RC_OPT_LIVE, FIELD(jwt_secret_file),
     .metavar = "[KID=]FILE",
     .help = "HMAC secret read from FILE (one trailing newline dropped), with the kid KID "
             "when given; repeatable"},
    {.name = "jwt-public-key", .section = RC_SEC_AUTH, .type = RC_OPT_STRING,
     .flags = RC_OPT_NONEMPTY | RC_OPT_APPEND | RC_OPT_LIVE, FIELD(jwt_public_key),
     .metavar = "[KID=]FILE",
     .help = "PEM public key (or certificate) for RS256 (RSA) or ES256 (P-256) tokens, with "
             "the kid KID when given; repeatable"},
    {.name = "jwt-issuer", .section = RC_SEC_AUTH, .type = RC_OPT_STRING,
     .flags = RC_OPT_EMPTY_NULL | RC_OPT_LIVE, FIELD(jwt_issuer), .metavar = "ISS",
     .def_help = "not checked", .help = "tokens must carry iss ISS"},
    {.name = "jwt-audience", .section = RC_SEC_AUTH, .type = RC_OPT_STRING,
     .flags = RC_OPT_EMPTY_NULL | RC_OPT_LIVE, FIELD(jwt_audience), .metavar = "AUD",
     .def_help = "not checked", .help = "tokens' aud must be or contain AUD"},
    {.name = "jwt-leeway", .section = RC_SEC_AUTH, .type = RC_OPT_UINT, .flags = RC_OPT_LIVE,
     FIELD(jwt_leeway), .max = 3600, .def = 0, .metavar = "SEC",
     .help = "seconds of clock skew allowed on exp and nbf"},
    {.name = "allow-anonymous", .section = RC_SEC_AUTH, .type = RC_OPT_SWITCH,
     .flags = RC_OPT_LIVE, FIELD(allow_anonymous),
     .help = "with token keys, admit connections without a token as anonymous (the "
             "namespace rules decide what they may do)"},
    {.name = "auth-timeout", .section = RC_SEC_AUTH, .type = RC_OPT_SECONDS,
     .flags = RC_OPT_LIVE, FIELD(auth_timeout), .def = SECONDS(10), .metavar = "SEC",
     .help = "a connection that must authenticate with its first message is closed (4001) "
             "when none came within SEC"},

    /* Raw TCP and chat listeners */
    {.name = "tcp-port", .section = RC_SEC_TCP, .type = RC_OPT_OFF_PORT, FIELD(tcp_port),
     .def = -1, .metavar = "N",
     .help = "raw TCP listener: the room protocol as newline-delimited JSON or "
             "length-prefixed frames (docs/tcp.md); 0 picks a free one"},
    {.name = "tcp-tls-port", .section = RC_SEC_TCP, .type = RC_OPT_OFF_PORT,
     FIELD(tcp_tls_port), .def = -1, .metavar = "N",
     .help = "the raw TCP protocol over TLS on port N, with the --tls-cert certificate (ALPN "
             "roomcast-tcp, docs/tls.md); 0 picks a free one"},
    {.name = "chat-port", .section = RC_SEC_TCP, .type = RC_OPT_OFF_PORT, FIELD(chat_port),
     .def = -1, .metavar = "N",
     .help = "chat listener for the seed chat client: bare JSON objects in, [user] text "
             "lines out (docs/tcp.md); 0 picks a free one"},
    {.name = "chat-room", .section = RC_SEC_TCP, .type = RC_OPT_ROOM, FIELD(chat_room),
     .def_str = "chat", .metavar = "NAME", .help = "room the chat port's clients are in"},

    /* NetSync */
    {.name = "no-netsync", .section = RC_SEC_NETSYNC, .type = RC_OPT_SWITCH, FIELD(netsync),
     .def = 1, .help = "do not open the NetSync ports"},
    {.name = "netsync-bind", .section = RC_SEC_NETSYNC, .type = RC_OPT_STRING,
     FIELD(netsync_bind), .def_help = "--bind",
     .metavar = "ADDR", .help = "address of the NetSync ports"},
    {.name = "netsync-router-port", .section = RC_SEC_NETSYNC, .type = RC_OPT_PORT,
     FIELD(netsync_router_port), .def = 5555,
     .metavar = "N", .help = "control ROUTER port for clients' DEALER (protocol 8: the "
                             "control lane and unicast downlink); 0 picks a free one"},
    {.name = "netsync-pose-port", .section = RC_SEC_NETSYNC, .type = RC_OPT_PORT,
     FIELD(netsync_pose_port), .def = 5557,
     .metavar = "N", .help = "transform (pose) ROUTER port of protocol-8 clients; 0 picks a "
                             "free one"},
    {.name = "netsync-pub-port", .section = RC_SEC_NETSYNC, .type = RC_OPT_PORT,
     FIELD(netsync_pub_port), .def = 5556,
     .metavar = "N", .help = "PUB port for clients' SUB; 0 picks a free one"},
    {.name = "netsync-discovery-port", .section = RC_SEC_NETSYNC, .type = RC_OPT_PORT,
     FIELD(netsync_discovery_port), .def = 9999,
     .metavar = "N", .help = "UDP and TCP discovery port; 0 picks a free one"},
    {.name = "netsync-tcp-discovery", .section = RC_SEC_NETSYNC, .type = RC_OPT_ENUM,
     FIELD(netsync_tcp_discovery), .names = tcp_disc_names, .def = RC_NETSYNC_TCP_DISC_V06,
     .metavar = "v06|v8",
     .help = "the one reply of TCP discovery: v06 (STYLY-NETSYNC|router|pub|name) or v8 "
             "(STYLY-NETSYNC3|control|transform|pub|rest|name); UDP answers every format"},
    {.name = "netsync-max-pending", .section = RC_SEC_NETSYNC, .type = RC_OPT_BYTES,
     FIELD(netsync_max_pending), .min = 64 << 10, .max = 1ull << 32,
     .def = RC_NETSYNC_UNICAST_MAX_BYTES_DEFAULT, .metavar = "BYTES",
     .help = "control messages queued for one protocol-8 client before it is disconnected "
             "as a slow consumer"},
    {.name = "netsync-client-timeout", .section = RC_SEC_NETSYNC, .type = RC_OPT_SECONDS,
     FIELD(netsync_client_timeout), .def = SECONDS(1),
     .metavar = "SEC", .help = "a client without transforms this long leaves its room"},
    {.name = "netsync-tick", .section = RC_SEC_NETSYNC, .type = RC_OPT_SECONDS,
     FIELD(netsync_tick), .def = MS(50),
     .metavar = "SEC", .help = "broadcast period of a changed room"},
    {.name = "netsync-v8-client-timeout", .section = RC_SEC_NETSYNC, .type = RC_OPT_SECONDS,
     FIELD(netsync_v8_client_timeout), .def = SECONDS(5),
     .metavar = "SEC", .help = "a protocol-8 client silent this long leaves its room"},
    {.name = "netsync-v8-pose-tick", .section = RC_SEC_NETSYNC, .type = RC_OPT_SECONDS,
     FIELD(netsync_v8_pose_tick), .def = MS(100),
     .metavar = "SEC", .help = "protocol 8: ROOM_POSE/ROOM_OBJECTS period of a changed room"},
    {.name = "netsync-v8-idle-interval", .section = RC_SEC_NETSYNC, .type = RC_OPT_SECONDS,
     FIELD(netsync_v8_idle), .def = SECONDS(2),
     .metavar = "SEC", .help = "protocol 8: re-broadcast period of an unchanged room"},
    {.name = "netsync-v8-mapping-debounce", .section = RC_SEC_NETSYNC, .type = RC_OPT_SECONDS,
     FIELD(netsync_v8_mapping), .def = MS(500),
     .metavar = "SEC", .help = "protocol 8: least time between two DEVICE_ID_MAPPINGs of a room"},
    {.name = "netsync-v8-nv-flush", .section = RC_SEC_NETSYNC, .type = RC_OPT_SECONDS,
     FIELD(netsync_v8_nv_flush), .def = MS(100),
     .metavar = "SEC", .help = "protocol 8: network-variable writes are gathered this long, "
                               "then synced"},
    {.name = "netsync-max-message-size", .section = RC_SEC_NETSYNC, .type = RC_OPT_BYTES,
     FIELD(netsync_max_message_size), .min = RC_NETSYNC_MAX_MESSAGE_MIN,
     .max = RC_NETSYNC_MAX_MESSAGE_MAX, .def = RC_NETSYNC_MAX_MESSAGE_DEFAULT,
     .metavar = "BYTES",
     .help = "largest message a NetSync client may send, room id aside (one frame, or all "
             "its frames together); a client that sends more is disconnected (the largest "
             "legal one is 65806 bytes)"},
    {.name = "zmq-engine", .section = RC_SEC_NETSYNC, .type = RC_OPT_ENUM,
     FIELD(zmq_engine), .names = zmq_engine_names, .def = RC_ZMQ_ENGINE_DEFAULT,
     .metavar = "native|libzmq",
     .help = "the ZeroMQ sockets of NetSync and of the worker broker: native (ZMTP 3 spoken "
             "by roomcast on its own loop) or libzmq (its sockets and I/O thread)"},
    /* The REST bridge of NetSync's server (src/app/nshttp.c): its own port and its CORS. */
    {.name = "netsync-rest-port", .section = RC_SEC_NETSYNC, .type = RC_OPT_OFF_PORT,
     FIELD(netsync_rest_port), .def = -1, .metavar = "N",
     .help = "a second HTTP listener serving only NetSync's REST bridge (GET /, /v1/rooms/..., "
             "/logs/export), as the reference's port 8800, and announced by STYLY-NETSYNC3 "
             "discovery; 0 picks a free one; the routes stay on --port too"},
    {.name = "netsync-rest-cors", .section = RC_SEC_NETSYNC, .type = RC_OPT_STRING,
     .flags = RC_OPT_LIVE,
     FIELD(netsync_rest_cors), .def_str = "*", .metavar = "ORIGINS",
     .help = "origins whose pages may call the REST bridge (comma-separated: the matching "
             "Origin is echoed; * for any, as the reference; empty: none)"},

    /* Worker broker (src/broker/, docs/broker.md). Request/room-service flags of the broker
     * go in this section too. */
    {.name = "broker-worker-port", .section = RC_SEC_BROKER, .type = RC_OPT_OFF_PORT,
     FIELD(broker_worker_port), .def = -1, .metavar = "N",
     .help = "ZeroMQ ROUTER port for workers (seed REQ, Paranoid Pirate and MDP/0.1 workers); "
             "0 picks a free one"},
    {.name = "broker-client-port", .section = RC_SEC_BROKER, .type = RC_OPT_OFF_PORT,
     FIELD(broker_client_port), .def = -1, .metavar = "N",
     .help = "ZeroMQ ROUTER port for clients (seed REQ and MDP/0.1 clients); 0 picks a free "
             "one"},
    {.name = "broker-bind", .section = RC_SEC_BROKER, .type = RC_OPT_STRING,
     .flags = RC_OPT_EMPTY_NULL, FIELD(broker_bind), .def_help = "--bind", .metavar = "ADDR",
     .help = "address of the broker ports"},
    {.name = "broker-default-service", .section = RC_SEC_BROKER, .type = RC_OPT_STRING,
     .flags = RC_OPT_NONEMPTY, FIELD(broker_default_service), .def_str = "default",
     .metavar = "NAME",
     .help = "service of workers whose protocol names none (seed, Paranoid Pirate) and of "
             "requests that name none"},
    {.name = "request-timeout", .section = RC_SEC_BROKER, .type = RC_OPT_SECONDS,
     .flags = RC_OPT_LIVE,
     FIELD(request_timeout), .def = SECONDS(5), .metavar = "SEC",
     .help = "a request not answered this long after it arrived (waiting for a worker "
             "included) fails with timeout"},
    {.name = "service-grace", .section = RC_SEC_BROKER, .type = RC_OPT_SECONDS,
     FIELD(service_grace), .def = SECONDS(30), .metavar = "SEC",
     .help = "a service without workers still queues requests this long after its last "
             "worker left, and every service does this long after start-up (workers may not "
             "have connected yet); otherwise a request for it fails with no_service at once"},
    {.name = "service-queue", .section = RC_SEC_BROKER, .type = RC_OPT_UINT,
     FIELD(service_queue), .min = 1, .max = 1u << 24, .def = 1000, .metavar = "N",
     .help = "requests one service holds while no worker is idle; beyond it a request fails "
             "with overloaded"},
    /* 0 (each protocol's guide default) is the default but not a value the flag takes. */
    {.name = "broker-heartbeat", .section = RC_SEC_BROKER, .type = RC_OPT_SECONDS,
     FIELD(broker_heartbeat), .def = 0,
     .def_help = "1 for Paranoid Pirate, 2.5 for MDP, as the ZeroMQ guide's workers",
     .metavar = "SEC", .help = "heartbeat interval, both ways, of Paranoid Pirate and MDP "
                               "workers"},
    {.name = "broker-liveness", .section = RC_SEC_BROKER, .type = RC_OPT_UINT,
     FIELD(broker_liveness), .min = 1, .max = 100, .def = 3, .metavar = "N",
     .help = "heartbeat intervals a worker may miss before it is declared dead"},
    {.name = "broker-max-message", .section = RC_SEC_BROKER, .type = RC_OPT_BYTES,
     FIELD(broker_max_message), .min = 1024, .max = 256u << 20, .def = 1 << 20,
     .metavar = "BYTES",
     .help = "largest request or reply body; a larger request fails too_large (counted); "
             "a frame over twice this disconnects its peer"},
    {.name = "room-service", .section = RC_SEC_BROKER, .type = RC_OPT_STRING,
     .flags = RC_OPT_NONEMPTY | RC_OPT_APPEND, FIELD(room_service), .metavar = "PATTERN=SERVICE",
     .help = "publishes into rooms matching the glob PATTERN go to SERVICE as requests, and "
             "the messages of its replies are broadcast (authoritative rooms); repeatable, "
             "the first matching pattern wins"},
    {.name = "broker-at-most-once", .section = RC_SEC_BROKER, .type = RC_OPT_STRING,
     .flags = RC_OPT_NONEMPTY | RC_OPT_APPEND, FIELD(broker_at_most_once), .metavar = "SERVICE",
     .help = "a request of SERVICE whose worker dies fails with worker_lost instead of being "
             "retried once; repeatable, or several names separated by commas"},

    /* History and durability */
    {.name = "history-size", .section = RC_SEC_HISTORY, .type = RC_OPT_UINT,
     FIELD(history_size), .max = 1u << 24, .def = 1000, .metavar = "N",
     .help = "messages each room keeps for clients that rejoin with \"since\"; 0 disables "
             "history"},
    {.name = "history-bytes", .section = RC_SEC_HISTORY, .type = RC_OPT_BYTES,
     FIELD(history_bytes), .max = 1ull << 40, .def = 1 << 20,
     .metavar = "BYTES", .help = "bytes of messages each room keeps"},
    /* 0 ("never") is the default but not a value the flag takes: as before the table. */
    {.name = "history-age", .section = RC_SEC_HISTORY, .type = RC_OPT_SECONDS,
     FIELD(history_age), .def = 0, .def_help = "never",
     .metavar = "SEC", .help = "drop kept messages older than this"},
    {.name = "room-ttl", .section = RC_SEC_HISTORY, .type = RC_OPT_SECONDS,
     .flags = RC_OPT_ZERO_OFF, FIELD(room_ttl), .def = SECONDS(300), .metavar = "SEC",
     .help = "keep a room and its history this long after its last member leaves; 0: the "
             "room goes with its last member"},
    {.name = "history-memory", .section = RC_SEC_HISTORY, .type = RC_OPT_BYTES,
     FIELD(history_memory), .max = 1ull << 44, .def = 256 << 20, .metavar = "BYTES",
     .help = "bytes the histories of all rooms keep together; past it the histories of rooms "
             "without members go first, then the oldest messages; 0: no limit"},
    {.name = "idempotency-window", .section = RC_SEC_HISTORY, .type = RC_OPT_UINT,
     FIELD(idempotency_window), .max = 1u << 24, .def = 1000,
     .metavar = "N", .help = "idempotency keys remembered per room"},
    {.name = "data-dir", .section = RC_SEC_HISTORY, .type = RC_OPT_STRING,
     .flags = RC_OPT_EMPTY_NULL, FIELD(data_dir), .def_help = "memory only",
     .metavar = "DIR",
     .help = "keep an append-only log per room in DIR and restore rooms from it at start"},
    {.name = "fsync", .section = RC_SEC_HISTORY, .type = RC_OPT_ENUM, FIELD(fsync_mode),
     .names = fsync_names, .def = RC_FSYNC_EVERYSEC,
     .metavar = "no|everysec|always", .help = "when the log is synced to disk"},
    {.name = "redis", .section = RC_SEC_HISTORY, .type = RC_OPT_STRING,
     .flags = RC_OPT_EMPTY_NULL, FIELD(redis_url), .def_help = "off: rooms live in this process",
     .metavar = "URL",
     .help = "sequence and share rooms through Redis (redis://[[user]:pass@]host[:port][/db] or "
             "unix:///path[?db=N]): several nodes, one order per room (docs/cluster.md)"},
    {.name = "redis-prefix", .section = RC_SEC_HISTORY, .type = RC_OPT_STRING,
     .flags = RC_OPT_NONEMPTY, FIELD(redis_prefix), .def_str = "rc", .metavar = "P",
     .help = "with --redis: the prefix of every key and channel name"},
    {.name = "redis-heartbeat", .section = RC_SEC_HISTORY, .type = RC_OPT_SECONDS,
     FIELD(redis_heartbeat), .def = SECONDS(1), .metavar = "SEC",
     .help = "with --redis: how often this node refreshes its heartbeat and reaps dead nodes"},
    {.name = "redis-node-ttl", .section = RC_SEC_HISTORY, .type = RC_OPT_SECONDS,
     FIELD(redis_node_ttl), .def = SECONDS(5), .metavar = "SEC",
     .help = "with --redis: a node whose heartbeat is this old is dead: another node removes "
             "its members from presence"},
    {.name = "list-rooms", .section = RC_SEC_HISTORY, .type = RC_OPT_SWITCH, FIELD(tool_list),
     .def = 0, .help = "with --data-dir: print its rooms as JSON lines, exit"},
    {.name = "dump", .section = RC_SEC_HISTORY, .type = RC_OPT_STRING, FIELD(tool_dump),
     .metavar = "ROOM", .help = "with --data-dir: print ROOM's log as JSON lines, exit"},

    /* The configuration file (src/app/conffile.c, docs/config.md); command line only */
    {.name = "config", .section = RC_SEC_INFO, .type = RC_OPT_STRING,
     .flags = RC_OPT_NONEMPTY | RC_OPT_CLI_ONLY, FIELD(config_file), .metavar = "FILE",
     .help = "read settings from FILE (key value lines, docs/config.md); flags given on the "
             "command line override it"},
    {.name = "check-config", .section = RC_SEC_INFO, .type = RC_OPT_SWITCH,
     .flags = RC_OPT_CLI_ONLY, FIELD(check_config), .def = 0,
     .help = "check the flags and the --config file, say what is wrong with file:line, exit 0 "
             "when they are valid, 1 when not"},
    {.name = "print-config", .section = RC_SEC_INFO, .type = RC_OPT_SWITCH,
     .flags = RC_OPT_CLI_ONLY, FIELD(print_config), .def = 0,
     .help = "print a config file with every key at its default (roomcast.conf.example), exit"},

    /* Information */
    {.name = "help", .short_name = 'h', .section = RC_SEC_INFO, .type = RC_OPT_HELP,
     .flags = RC_OPT_CLI_ONLY, .help = "this text"},
    {.name = "version", .short_name = 'V', .section = RC_SEC_INFO, .type = RC_OPT_VERSION,
     .flags = RC_OPT_CLI_ONLY, .help = "print the version"},
};

#define NOPTIONS (sizeof rc_config_options / sizeof rc_config_options[0])
const size_t rc_config_noptions = NOPTIONS;

const char *rc_config_section_title(enum rc_opt_section s)
{
    static const char *const titles[RC_SEC_COUNT] = {
        [RC_SEC_SERVER] = "",
        [RC_SEC_TLS] = "TLS (off unless a certificate is given, see docs/tls.md):",
        [RC_SEC_AUTH] = "Tokens and permissions (off unless a key is given, see docs/auth.md):",
        [RC_SEC_TCP] = "Raw TCP and chat listeners (off unless a port is given, see docs/tcp.md):",
        [RC_SEC_NETSYNC] = ("NetSync (STYLY NetSync-compatible ZeroMQ transport, see "
                            "docs/netsync.md):"),
        [RC_SEC_BROKER] = "Worker broker (off unless a port is given, see docs/broker.md):",
        [RC_SEC_HISTORY] = "History and durability:",
        [RC_SEC_INFO] = "",
    };
    return (unsigned)s < RC_SEC_COUNT ? titles[s] : "";
}

/* ---- storing values ----------------------------------------------------------------------- */

static void *field(rc_config *cfg, const rc_config_option *o)
{
    return (char *)cfg + o->offset;
}

/* store_uint writes v to an unsigned field of o->size bytes; v fits (checked by the caller
 * against o->max, and by the unit tests against the field's width). */
static void store_uint(rc_config *cfg, const rc_config_option *o, uint64_t v)
{
    void *p = field(cfg, o);
    switch (o->size) {
    case 1: *(uint8_t *)p = (uint8_t)v; break;
    case 2: *(uint16_t *)p = (uint16_t)v; break;
    case 4: *(uint32_t *)p = (uint32_t)v; break;
    case 8: *(uint64_t *)p = v; break;
    default: abort(); /* a row whose field is no integer: the table is broken */
    }
}

static void store_int(rc_config *cfg, const rc_config_option *o, int v)
{
    *(int *)field(cfg, o) = v;
}

static void store_i32(rc_config *cfg, const rc_config_option *o, int32_t v)
{
    *(int32_t *)field(cfg, o) = v;
}

static void store_str(rc_config *cfg, const rc_config_option *o, const char *s)
{
    *(const char **)field(cfg, o) = s;
}

void rc_config_init(rc_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NOPTIONS; i++) {
        const rc_config_option *o = &rc_config_options[i];
        switch (o->type) {
        case RC_OPT_STRING:
        case RC_OPT_ROOM: store_str(cfg, o, o->def_str); break;
        case RC_OPT_SWITCH:
        case RC_OPT_ENUM: store_int(cfg, o, (int)o->def); break;
        case RC_OPT_UINT:
        case RC_OPT_BYTES:
        case RC_OPT_SECONDS:
        case RC_OPT_PORT: store_uint(cfg, o, (uint64_t)o->def); break;
        case RC_OPT_OFF_PORT: store_i32(cfg, o, (int32_t)o->def); break;
        case RC_OPT_HELP:
        case RC_OPT_VERSION: break;
        }
    }
    /* The environment is the better place for a secret: argv is visible to every local user. */
    const char *key = getenv("ROOMCAST_API_KEY");
    cfg->api_key = key && *key ? key : NULL;
}

/* ---- strings and lookup ------------------------------------------------------------------- */

/* pool_alloc returns n uninitialised bytes owned by p. */
static char *pool_alloc(rc_config_pool *p, size_t n)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        char **v = realloc(p->strs, cap * sizeof *v);
        if (!v) abort();
        p->strs = v;
        p->cap = cap;
    }
    char *c = malloc(n);
    if (!c) abort();
    p->strs[p->n++] = c;
    return c;
}

char *rc_config_pool_add(rc_config_pool *p, const char *s, size_t len)
{
    char *c = pool_alloc(p, len + 1);
    memcpy(c, s, len);
    c[len] = '\0';
    return c;
}

void rc_config_pool_release(rc_config_pool *p)
{
    for (size_t i = 0; i < p->n; i++) free(p->strs[i]);
    free(p->strs);
    *p = (rc_config_pool){0};
}

const rc_config_option *rc_config_find(const char *name)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strcmp(rc_config_options[i].name, name) == 0) return &rc_config_options[i];
    return NULL;
}

/* ---- parsing values ----------------------------------------------------------------------- */

/* rc_config_parse_uint reads a decimal integer in min..max. A leading '-' is refused rather
 * than wrapped around by strtoull. */
int rc_config_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max) return -1;
    *out = v;
    return 0;
}

/* parse_seconds reads a duration in seconds, > 0 and at most MAX_SECONDS, into ns. */
static int parse_seconds(const char *s, uint64_t *ns)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v <= 0 || v > MAX_SECONDS) return -1;
    *ns = (uint64_t)(v * 1e9);
    return 0;
}

int rc_config_parse_bool(const char *s)
{
    static const char *const yes[] = {"yes", "on", "true", "1", NULL};
    static const char *const no[] = {"no", "off", "false", "0", NULL};
    for (int i = 0; yes[i]; i++)
        if (strcmp(s, yes[i]) == 0) return 1;
    for (int i = 0; no[i]; i++)
        if (strcmp(s, no[i]) == 0) return 0;
    return -1;
}

static int parse_enum(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

/* join_names writes "a, b, c" into buf. */
static void join_names(const char *const *names, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; names[i] && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? ", " : "", names[i]);
}

/* put_quoted writes s between single quotes, with control bytes, and every byte of a text that
 * is not UTF-8, as \xHH: a bad argument must not garble the terminal or a log reader. */
static void put_quoted(FILE *f, const char *s)
{
    int utf8 = rc_utf8_valid((const uint8_t *)s, strlen(s));
    fputc('\'', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || (*p >= 0x80 && !utf8)) fprintf(f, "\\x%02x", *p);
        else fputc(*p, f);
    }
    fputc('\'', f);
}

/* The joined rows of repeated command-line flags: they live as long as argv, reachable from
 * here so that leak checkers agree. */
static rc_config_pool argv_pool;

int rc_config_set(rc_config *cfg, const rc_config_option *o, const char *arg, int append,
                  const char *where, rc_config_pool *pool, FILE *err)
{
    const char *what = "value", *rule = NULL;
    char rulebuf[160];
    uint64_t v;
    switch (o->type) {
    case RC_OPT_STRING:
        if (!*arg && (o->flags & RC_OPT_NONEMPTY)) {
            rule = "must not be empty";
            break;
        }
        if ((o->flags & RC_OPT_APPEND) && append && *(const char **)field(cfg, o)) {
            /* Repeated: the rows so far, '\n', this one. */
            const char *old = *(const char **)field(cfg, o);
            size_t lo = strlen(old), la = strlen(arg);
            char *joined = pool_alloc(pool ? pool : &argv_pool, lo + 1 + la + 1);
            memcpy(joined, old, lo);
            joined[lo] = '\n';
            memcpy(joined + lo + 1, arg, la + 1);
            store_str(cfg, o, joined);
            return 0;
        }
        store_str(cfg, o, *arg || !(o->flags & RC_OPT_EMPTY_NULL) ? arg : NULL);
        return 0;
    case RC_OPT_ROOM: {
        size_t len = strlen(arg);
        if (len >= 1 && len <= RC_ROOM_NAME_MAX && rc_utf8_valid((const uint8_t *)arg, len)) {
            store_str(cfg, o, arg);
            return 0;
        }
        what = "room name";
        if (len >= 1 && len <= RC_ROOM_NAME_MAX)
            snprintf(rulebuf, sizeof rulebuf, "1 to %d bytes of UTF-8; not UTF-8",
                     RC_ROOM_NAME_MAX);
        else
            snprintf(rulebuf, sizeof rulebuf, "1 to %d bytes of UTF-8; %zu bytes",
                     RC_ROOM_NAME_MAX, len);
        rule = rulebuf;
        break;
    }
    case RC_OPT_SWITCH: {
        int on = arg ? rc_config_parse_bool(arg) : 1;
        if (on >= 0) {
            store_int(cfg, o, on ? !o->def : (int)o->def);
            return 0;
        }
        rule = "yes or no";
        break;
    }
    case RC_OPT_UINT:
    case RC_OPT_BYTES:
        if (rc_config_parse_uint(arg, o->min, o->max, &v) == 0) {
            store_uint(cfg, o, v);
            return 0;
        }
        snprintf(rulebuf, sizeof rulebuf, "%s %llu..%llu",
                 o->type == RC_OPT_BYTES ? "bytes," : "an integer", (unsigned long long)o->min,
                 (unsigned long long)o->max);
        rule = rulebuf;
        break;
    case RC_OPT_SECONDS:
        if ((o->flags & RC_OPT_ZERO_OFF) && strcmp(arg, "0") == 0) {
            store_uint(cfg, o, 0);
            return 0;
        }
        if (parse_seconds(arg, &v) == 0) {
            store_uint(cfg, o, v);
            return 0;
        }
        what = "duration";
        snprintf(rulebuf, sizeof rulebuf, "%sseconds > 0 up to %.0f",
                 o->flags & RC_OPT_ZERO_OFF ? "0, or " : "", MAX_SECONDS);
        rule = rulebuf;
        break;
    case RC_OPT_PORT:
        if (rc_config_parse_uint(arg, 0, 65535, &v) == 0) {
            store_uint(cfg, o, v);
            return 0;
        }
        what = "port";
        rule = "0..65535, 0 picks a free one";
        break;
    case RC_OPT_OFF_PORT:
        if (strcmp(arg, "off") == 0 || strcmp(arg, "-1") == 0) {
            store_i32(cfg, o, -1);
            return 0;
        }
        if (rc_config_parse_uint(arg, 0, 65535, &v) == 0) {
            store_i32(cfg, o, (int32_t)v);
            return 0;
        }
        what = "port";
        rule = "0..65535, 0 picks a free one, or off";
        break;
    case RC_OPT_ENUM: {
        int i = parse_enum(o->names, arg);
        if (i >= 0) {
            store_int(cfg, o, i);
            return 0;
        }
        join_names(o->names, rulebuf, sizeof rulebuf);
        rule = rulebuf;
        break;
    }
    case RC_OPT_HELP:
    case RC_OPT_VERSION: abort(); /* handled by rc_config_parse, no config-file keys */
    }
    /* The command line names the flag as typed (--port), a file as its key (port). */
    const char *dash = where ? "" : "--";
    fprintf(err, "%s: ", where ? where : "roomcast");
    if (!*arg && o->type == RC_OPT_STRING) {
        fprintf(err, "%s%s %s\n", dash, o->name, rule);
    } else {
        fprintf(err, "invalid %s ", what);
        put_quoted(err, arg);
        fprintf(err, " for %s%s (%s)\n", dash, o->name, rule);
    }
    return -1;
}

/* ---- the parser --------------------------------------------------------------------------- */

/* getopt_long reports a long flag as OPT_BASE + its row, a short one as its letter. */
#define OPT_BASE 256

static int takes_value(const rc_config_option *o)
{
    return o->type != RC_OPT_SWITCH && o->type != RC_OPT_HELP && o->type != RC_OPT_VERSION;
}

int rc_config_parse(rc_config *cfg, int argc, char **argv)
{
    return rc_config_parse_flags(cfg, argc, argv, 1);
}

int rc_config_parse_flags(rc_config *cfg, int argc, char **argv, int cross_check)
{
    struct option opts[NOPTIONS + 1];
    char shorts[2 * NOPTIONS + 1];
    size_t ns = 0;
    for (size_t i = 0; i < NOPTIONS; i++) {
        const rc_config_option *o = &rc_config_options[i];
        opts[i] = (struct option){o->name, takes_value(o) ? required_argument : no_argument,
                                  NULL, OPT_BASE + (int)i};
        if (o->short_name) {
            shorts[ns++] = o->short_name;
            if (takes_value(o)) shorts[ns++] = ':';
        }
    }
    opts[NOPTIONS] = (struct option){NULL, 0, NULL, 0};
    shorts[ns] = '\0';

    /* 0, not 1: glibc then also forgets the state of an earlier scan (a half-read "-hV"),
     * which matters when rc_config_parse runs more than once in a process (unit tests). */
    optind = 0;
    /* seen[i]: row i was given earlier in this argv, so a repeatable row appends to it; its
     * first occurrence replaces what a config file said. */
    unsigned char seen[NOPTIONS];
    memset(seen, 0, sizeof seen);
    int c;
    while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
        const rc_config_option *o = NULL;
        if (c >= OPT_BASE && c < OPT_BASE + (int)NOPTIONS) {
            o = &rc_config_options[c - OPT_BASE];
        } else if (c != '?') {
            for (size_t i = 0; i < NOPTIONS; i++)
                if (rc_config_options[i].short_name == c) o = &rc_config_options[i];
        }
        if (!o) { /* getopt_long has said what is wrong */
            fprintf(stderr, "Try 'roomcast --help'.\n");
            return -1;
        }
        if (o->type == RC_OPT_HELP) {
            rc_config_usage(stdout);
            return 1;
        }
        if (o->type == RC_OPT_VERSION) {
            printf("roomcast %s\n", RC_VERSION);
            return 1;
        }
        size_t row = (size_t)(o - rc_config_options);
        if (rc_config_set(cfg, o, takes_value(o) ? optarg : NULL, seen[row], NULL, NULL,
                          stderr) < 0)
            return -1;
        seen[row] = 1;
    }
    if (cross_check && (cfg->tool_list || cfg->tool_dump) && !cfg->data_dir) {
        fprintf(stderr, "roomcast: --list-rooms and --dump need --data-dir\n");
        return -1;
    }
    if (cfg->redis_url && cfg->data_dir) {
        fprintf(stderr, "roomcast: --redis does not go with --data-dir (Redis holds the "
                        "history)\n");
        return -1;
    }
    if (!cfg->tls_cert != !cfg->tls_key) {
        fprintf(stderr, "roomcast: --tls-cert and --tls-key go together\n");
        return -1;
    }
    if (cfg->tls_port >= 0 && !cfg->tls_cert) {
        fprintf(stderr, "roomcast: --tls-port needs --tls-cert and --tls-key\n");
        return -1;
    }
    if (cfg->tcp_tls_port >= 0 && !cfg->tls_cert) {
        fprintf(stderr, "roomcast: --tcp-tls-port needs --tls-cert and --tls-key\n");
        return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "roomcast: unexpected argument ");
        put_quoted(stderr, argv[optind]);
        fprintf(stderr, "\nTry 'roomcast --help'.\n");
        return -1;
    }
    return 0;
}

/* ---- comparing and writing values (reload, --print-config) -------------------------------- */

int rc_config_field_equal(const rc_config *a, const rc_config *b, const rc_config_option *o)
{
    if (o->type == RC_OPT_HELP || o->type == RC_OPT_VERSION) return 1;
    const void *pa = (const char *)a + o->offset, *pb = (const char *)b + o->offset;
    if (o->type == RC_OPT_STRING || o->type == RC_OPT_ROOM) {
        const char *sa = *(const char *const *)pa, *sb = *(const char *const *)pb;
        return sa == sb || (sa && sb && strcmp(sa, sb) == 0);
    }
    return memcmp(pa, pb, o->size) == 0;
}

void rc_config_format_default(const rc_config_option *o, char *buf, size_t n)
{
    buf[0] = '\0';
    switch (o->type) {
    case RC_OPT_STRING:
    case RC_OPT_ROOM:
        if (o->def_str) snprintf(buf, n, "%s", o->def_str);
        break;
    case RC_OPT_UINT:
    case RC_OPT_BYTES:
    case RC_OPT_PORT: snprintf(buf, n, "%lld", (long long)o->def); break;
    case RC_OPT_SECONDS:
        /* 0 is a default some rows cannot be given (history-age: "never"); leave it unset */
        if (o->def || (o->flags & RC_OPT_ZERO_OFF)) snprintf(buf, n, "%g", (double)o->def / 1e9);
        break;
    case RC_OPT_OFF_PORT:
        if (o->def < 0) snprintf(buf, n, "off");
        else snprintf(buf, n, "%lld", (long long)o->def);
        break;
    case RC_OPT_ENUM: snprintf(buf, n, "%s", o->names[o->def]); break;
    case RC_OPT_SWITCH: snprintf(buf, n, "no"); break;
    case RC_OPT_HELP:
    case RC_OPT_VERSION: break;
    }
}

/* ---- --help ------------------------------------------------------------------------------- */

#define HELP_COL 30   /* the column where help texts start */
#define HELP_WIDTH 88 /* longest line, unless one word is longer */

/* NBSP joins two words of a --help text that must stay on one line: "(default" and what
 * follows it. Printed as a space. */
#define NBSP '\x01'

/* format_default writes what --help says about o's default into buf ("" for nothing). */
static void format_default(const rc_config_option *o, char *buf, size_t n)
{
    buf[0] = '\0';
    if (o->def_help) {
        snprintf(buf, n, "(default:%c%s)", NBSP, o->def_help);
        return;
    }
    switch (o->type) {
    case RC_OPT_STRING:
    case RC_OPT_ROOM:
        if (o->def_str) snprintf(buf, n, "(default%c%s)", NBSP, o->def_str);
        break;
    case RC_OPT_UINT:
    case RC_OPT_BYTES:
    case RC_OPT_PORT: snprintf(buf, n, "(default%c%lld)", NBSP, (long long)o->def); break;
    case RC_OPT_SECONDS: snprintf(buf, n, "(default%c%g)", NBSP, (double)o->def / 1e9); break;
    case RC_OPT_OFF_PORT:
        if (o->def < 0) snprintf(buf, n, "(default%coff)", NBSP);
        else snprintf(buf, n, "(default%c%lld)", NBSP, (long long)o->def);
        break;
    case RC_OPT_ENUM: snprintf(buf, n, "(default%c%s)", NBSP, o->names[o->def]); break;
    case RC_OPT_SWITCH:
    case RC_OPT_HELP:
    case RC_OPT_VERSION: break;
    }
}

/* print_wrapped prints the words of text from column col on, breaking lines before
 * HELP_WIDTH and indenting continuation lines to HELP_COL. Ends the line. */
static void print_wrapped(FILE *f, const char *text, int col)
{
    int first = 1;
    for (const char *p = text; *p;) {
        while (*p == ' ') p++;
        int len = (int)strcspn(p, " ");
        if (!len) break;
        if (!first && col + 1 + len > HELP_WIDTH) {
            fprintf(f, "\n%*s", HELP_COL, "");
            col = HELP_COL;
            first = 1;
        }
        if (!first) fputc(' ', f);
        for (int i = 0; i < len; i++) fputc(p[i] == NBSP ? ' ' : p[i], f);
        col += len + !first;
        first = 0;
        p += len;
    }
    fputc('\n', f);
}

void rc_config_usage(FILE *f)
{
    fprintf(f,
        "usage: roomcast [options]\n"
        "\n"
        "A real-time room messaging server: WebSocket clients join rooms, and every message\n"
        "published to a room reaches every member in one total order (per-room msg_id).\n"
        "\n");
    int section = rc_config_options[0].section;
    for (size_t i = 0; i < NOPTIONS; i++) {
        const rc_config_option *o = &rc_config_options[i];
        if (o->section != section) {
            const char *title = rc_config_section_title(o->section);
            fprintf(f, "\n%s%s", title, *title ? "\n" : "");
            section = o->section;
        }
        char left[96], def[160], text[640];
        int n;
        if (o->short_name) n = snprintf(left, sizeof left, "-%c, --%s", o->short_name, o->name);
        else n = snprintf(left, sizeof left, "--%s", o->name);
        if (o->metavar) n += snprintf(left + n, sizeof left - (size_t)n, " %s", o->metavar);
        format_default(o, def, sizeof def);
        snprintf(text, sizeof text, "%s%s%s", o->help, *def ? " " : "", def);
        /* A flag too long for the column pushes its text right, two spaces after it. */
        int col = 2 + n + 2 <= HELP_COL ? HELP_COL : 2 + n + 2;
        fprintf(f, "  %-*s", col - 2, left);
        print_wrapped(f, text, col);
    }
}
