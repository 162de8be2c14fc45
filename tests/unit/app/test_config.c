/* test_config.c — tests for src/app/config.c: the flag table, the defaults, the parser and the
 * generated --help.
 *
 * The parser is driven through rc_config_parse with stdout and stderr redirected into
 * buffers, so the tests see exactly what a user would: the return value, the settings, and
 * the message, which must quote both the flag and the bad value. The table itself is checked
 * for what the compiler cannot check: that each row's type matches its field, that its
 * default is within its limits, that no field is missing a row.
 */
#include "unit.h"

#include "app/config.h"
#include "core/log.h"
#include "core/loop.h"
#include "rooms/room.h"
#include "store/store.h"

#include <stdint.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------------ */

static char out_buf[65536], err_buf[4096]; /* out_buf holds --help whole */

typedef struct capture {
    FILE *stream; /* stdout or stderr */
    int saved_fd; /* the descriptor it had */
    FILE *tmp;    /* where it writes meanwhile */
} capture;

static void capture_begin(capture *cp, FILE *stream)
{
    fflush(stream);
    cp->stream = stream;
    cp->tmp = tmpfile();
    cp->saved_fd = dup(fileno(stream));
    if (!cp->tmp || cp->saved_fd < 0 || dup2(fileno(cp->tmp), fileno(stream)) < 0) {
        perror("test_config: capture");
        exit(2);
    }
}

static void capture_end(capture *cp, char *buf, size_t n)
{
    fflush(cp->stream);
    dup2(cp->saved_fd, fileno(cp->stream));
    close(cp->saved_fd);
    rewind(cp->tmp);
    size_t k = fread(buf, 1, n - 1, cp->tmp);
    buf[k] = '\0';
    fclose(cp->tmp);
}

/* parse sets *cfg to the defaults, then applies "roomcast" + args (NULL-terminated), with
 * stdout captured into out_buf and stderr into err_buf. */
static int parse(rc_config *cfg, const char *const *args)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"roomcast";
    /* getopt_long permutes the array but never writes to the strings: the casts are safe. */
    while (*args && argc < 63) argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    rc_config_init(cfg);
    capture out, err;
    capture_begin(&out, stdout);
    capture_begin(&err, stderr);
    int r = rc_config_parse(cfg, argc, argv);
    capture_end(&err, err_buf, sizeof err_buf);
    capture_end(&out, out_buf, sizeof out_buf);
    return r;
}

#define PARSE(cfg, ...) parse((cfg), (const char *const[]){__VA_ARGS__, NULL})

/* mentions is true when err_buf names flag and quotes value ('value'). */
static int mentions(const char *flag, const char *value)
{
    char q[512];
    snprintf(q, sizeof q, "'%s'", value);
    return strstr(err_buf, flag) && strstr(err_buf, q);
}

/* CHECK_REFUSED: "--flag value" and "--flag=value" both fail with a message that names the
 * flag and quotes the value, and nothing on stdout. */
#define CHECK_REFUSED(flag, value)                                                         \
    do {                                                                                   \
        rc_config c_;                                                                      \
        char eq_[512];                                                                     \
        CHECK_EQ_INT(PARSE(&c_, flag, value), -1);                                         \
        CHECK(mentions(flag, value));                                                      \
        CHECK(!out_buf[0]);                                                                \
        snprintf(eq_, sizeof eq_, "%s=%s", flag, value);                                   \
        CHECK_EQ_INT(PARSE(&c_, eq_), -1);                                                 \
        CHECK(mentions(flag, value));                                                      \
    } while (0)

/* CHECK_SETS: "--flag value" and "--flag=value" both succeed, silently, and set field. */
#define CHECK_SETS(flag, value, field, expect)                                             \
    do {                                                                                   \
        rc_config c_;                                                                      \
        char eq_[512];                                                                     \
        CHECK_EQ_INT(PARSE(&c_, flag, value), 0);                                          \
        CHECK_EQ_INT(c_.field, (expect));                                                  \
        CHECK(!err_buf[0] && !out_buf[0]);                                                 \
        snprintf(eq_, sizeof eq_, "%s=%s", flag, value);                                   \
        CHECK_EQ_INT(PARSE(&c_, eq_), 0);                                                  \
        CHECK_EQ_INT(c_.field, (expect));                                                  \
    } while (0)

static int str_eq(const char *a, const char *b)
{
    return a && strcmp(a, b) == 0;
}

#define CHECK_STR(a, b) CHECK(str_eq((a), (b)))

static const rc_config_option *row(const char *name)
{
    for (size_t i = 0; i < rc_config_noptions; i++)
        if (strcmp(rc_config_options[i].name, name) == 0) return &rc_config_options[i];
    return NULL;
}

static int takes_value(const rc_config_option *o)
{
    return o->type != RC_OPT_SWITCH && o->type != RC_OPT_HELP && o->type != RC_OPT_VERSION;
}

static char *usage_text(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) abort();
    rc_config_usage(f);
    fclose(f);
    return text;
}

/* ---- the table ---------------------------------------------------------------------------- */

TEST(table_rows_match_their_fields)
{
    for (size_t i = 0; i < rc_config_noptions; i++) {
        const rc_config_option *o = &rc_config_options[i];
        uint64_t width_max = o->size >= 8 ? UINT64_MAX : (1ull << (8 * o->size)) - 1;
        switch (o->type) {
        case RC_OPT_STRING:
        case RC_OPT_ROOM: CHECK_EQ_INT(o->size, sizeof(const char *)); break;
        case RC_OPT_SWITCH: CHECK_EQ_INT(o->size, sizeof(int)); break;
        case RC_OPT_ENUM: {
            CHECK_EQ_INT(o->size, sizeof(int));
            CHECK(o->names && o->names[0]);
            int n = 0;
            while (o->names[n]) n++;
            CHECK(o->def >= 0 && o->def < n);
            break;
        }
        case RC_OPT_BYTES: CHECK_EQ_INT(o->size, sizeof(size_t)); /* fall through */
        case RC_OPT_UINT:
            CHECK(o->size == 1 || o->size == 2 || o->size == 4 || o->size == 8);
            CHECK(o->min <= o->max);
            CHECK(o->max <= width_max);
            CHECK(o->def >= 0 && (uint64_t)o->def >= o->min && (uint64_t)o->def <= o->max);
            break;
        case RC_OPT_SECONDS:
            CHECK_EQ_INT(o->size, sizeof(uint64_t));
            CHECK(o->def >= 0 && o->def <= (int64_t)(86400ull * 365 * RC_NS_PER_SEC));
            break;
        case RC_OPT_PORT:
            CHECK_EQ_INT(o->size, sizeof(uint16_t));
            CHECK(o->def >= 0 && o->def <= 65535);
            break;
        case RC_OPT_OFF_PORT:
            CHECK_EQ_INT(o->size, sizeof(int32_t));
            CHECK(o->def >= -1 && o->def <= 65535);
            break;
        case RC_OPT_HELP:
        case RC_OPT_VERSION: CHECK(o->short_name); break;
        default: CHECK(!"unknown type");
        }
        /* Limits only mean something to the integer types; modifiers only to theirs. */
        if (o->type != RC_OPT_UINT && o->type != RC_OPT_BYTES) CHECK(o->min == 0 && o->max == 0);
        if (o->flags & (RC_OPT_NONEMPTY | RC_OPT_EMPTY_NULL)) CHECK(o->type == RC_OPT_STRING);
        if (o->flags & RC_OPT_ZERO_OFF) CHECK(o->type == RC_OPT_SECONDS);
        CHECK(!(o->flags & RC_OPT_NONEMPTY && o->flags & RC_OPT_EMPTY_NULL));
    }
}

TEST(table_names_and_help)
{
    int prev_section = -1;
    for (size_t i = 0; i < rc_config_noptions; i++) {
        const rc_config_option *o = &rc_config_options[i];
        CHECK(o->name && o->name[0] && o->name[0] != '-');
        CHECK_EQ_INT(strspn(o->name, "abcdefghijklmnopqrstuvwxyz0123456789-"), strlen(o->name));
        for (size_t j = 0; j < i; j++) {
            CHECK(strcmp(rc_config_options[j].name, o->name) != 0);
            CHECK(!o->short_name || rc_config_options[j].short_name != o->short_name);
        }
        CHECK(o->help && o->help[0]);
        CHECK(!takes_value(o) == !o->metavar); /* a value is shown iff the flag takes one */
        /* Sections in enum order, each in one run: --help prints them in table order. */
        CHECK(o->section < RC_SEC_COUNT);
        CHECK((int)o->section >= prev_section);
        prev_section = o->section;
    }
}

/* Every field of rc_config has a row: the rows' fields do not overlap, and what lies between
 * them is no more than alignment padding (a forgotten pointer or 64-bit field would leave a
 * gap at least its own size). */
TEST(table_covers_every_field)
{
    size_t n = 0;
    const rc_config_option *f[128];
    for (size_t i = 0; i < rc_config_noptions; i++)
        if (rc_config_options[i].size) f[n++] = &rc_config_options[i];
    CHECK(n > 0 && n < 128);
    for (size_t i = 1; i < n; i++) /* insertion sort by offset */
        for (size_t j = i; j > 0 && f[j - 1]->offset > f[j]->offset; j--) {
            const rc_config_option *t = f[j];
            f[j] = f[j - 1];
            f[j - 1] = t;
        }
    size_t end = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(f[i]->offset >= end);                /* no overlap */
        CHECK(f[i]->offset - end < f[i]->size);    /* only the padding this field needs */
        CHECK_EQ_INT(f[i]->offset % f[i]->size, 0);
        end = f[i]->offset + f[i]->size;
    }
    CHECK(sizeof(rc_config) - end < 8);
}

TEST(table_enum_names_agree_with_their_modules)
{
    const rc_config_option *lv = row("log-level"), *fs = row("fsync");
    CHECK(lv && fs);
    for (int i = 0; lv->names[i]; i++) CHECK_EQ_INT(rc_log_parse_level(lv->names[i]), i);
    for (int i = 0; fs->names[i]; i++) {
        CHECK_EQ_INT(rc_fsync_parse(fs->names[i]), i);
        CHECK_STR(rc_fsync_name((enum rc_fsync)i), fs->names[i]);
    }
    CHECK_STR(lv->names[RC_LOG_DEBUG], "debug");
    CHECK(!lv->names[RC_LOG_DEBUG + 1]);
    CHECK_STR(fs->names[RC_FSYNC_ALWAYS], "always");
    CHECK(!fs->names[RC_FSYNC_ALWAYS + 1]);
}

/* ---- defaults ----------------------------------------------------------------------------- */

TEST(defaults)
{
    unsetenv("ROOMCAST_API_KEY");
    rc_config c;
    memset(&c, 0xA5, sizeof c); /* init must set everything, not rely on zeroed memory */
    rc_config_init(&c);
    CHECK_STR(c.bind, "127.0.0.1");
    CHECK_EQ_INT(c.port, 8080);
    CHECK_EQ_INT(c.max_connections, 0);
    CHECK_EQ_INT(c.max_message_size, 1 << 20);
    CHECK_EQ_INT(c.max_pending, 1 << 20);
    CHECK_EQ_INT(c.max_header_size, 8192);
    CHECK_EQ_INT(c.max_rooms_per_client, 64);
    CHECK_EQ_INT(c.ping_interval, 5 * RC_NS_PER_SEC);
    CHECK_EQ_INT(c.ping_timeout, 5 * RC_NS_PER_SEC);
    CHECK_EQ_INT(c.handshake_timeout, 10 * RC_NS_PER_SEC);
    CHECK_EQ_INT(c.close_timeout, 2 * RC_NS_PER_SEC);
    CHECK_EQ_INT(c.log_level, RC_LOG_INFO);
    CHECK_EQ_INT(c.no_latency_metrics, 0);
    CHECK_EQ_INT(c.history_size, 1000);
    CHECK_EQ_INT(c.history_bytes, 1 << 20);
    CHECK_EQ_INT(c.history_age, 0);
    CHECK_EQ_INT(c.room_ttl, 300 * RC_NS_PER_SEC);
    CHECK_EQ_INT(c.idempotency_window, 1000);
    CHECK(c.data_dir == NULL);
    CHECK_EQ_INT(c.fsync_mode, RC_FSYNC_EVERYSEC);
    CHECK(c.tool_dump == NULL);
    CHECK_EQ_INT(c.tool_list, 0);
    CHECK(c.api_key == NULL);
    CHECK(c.web_root == NULL);
    CHECK_EQ_INT(c.tcp_port, -1);
    CHECK_EQ_INT(c.chat_port, -1);
    CHECK_STR(c.chat_room, "chat");
    CHECK_EQ_INT(c.netsync, 1);
    CHECK(c.netsync_bind == NULL);
    CHECK_EQ_INT(c.netsync_router_port, 5555);
    CHECK_EQ_INT(c.netsync_pub_port, 5556);
    CHECK_EQ_INT(c.netsync_discovery_port, 9999);
    CHECK_EQ_INT(c.netsync_client_timeout, RC_NS_PER_SEC);
    CHECK_EQ_INT(c.netsync_tick, 50 * RC_NS_PER_MS);
    CHECK_EQ_INT(c.netsync_max_message_size, 128 * 1024);
}

TEST(no_arguments_keep_the_defaults)
{
    rc_config a, b;
    rc_config_init(&a);
    CHECK_EQ_INT(parse(&b, (const char *const[]){NULL}), 0);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    CHECK(!err_buf[0] && !out_buf[0]);
}

TEST(api_key_from_the_environment)
{
    rc_config c;
    setenv("ROOMCAST_API_KEY", "from-env", 1);
    rc_config_init(&c);
    CHECK_STR(c.api_key, "from-env");
    CHECK_EQ_INT(PARSE(&c, "--api-key", "from-flag"), 0); /* the flag wins */
    CHECK_STR(c.api_key, "from-flag");
    setenv("ROOMCAST_API_KEY", "", 1); /* empty: no key */
    rc_config_init(&c);
    CHECK(c.api_key == NULL);
    unsetenv("ROOMCAST_API_KEY");
    rc_config_init(&c);
    CHECK(c.api_key == NULL);
}

/* ---- each type ---------------------------------------------------------------------------- */

TEST(type_string)
{
    rc_config c;
    CHECK_EQ_INT(PARSE(&c, "--bind", "0.0.0.0", "--web-root", "web", "--netsync-bind=::1"), 0);
    CHECK_STR(c.bind, "0.0.0.0");
    CHECK_STR(c.web_root, "web");
    CHECK_STR(c.netsync_bind, "::1");
    CHECK_EQ_INT(PARSE(&c, "--bind="), 0); /* taken as is; binding it fails later */
    CHECK_STR(c.bind, "");
    /* RC_OPT_EMPTY_NULL: an empty --data-dir means none */
    CHECK_EQ_INT(PARSE(&c, "--data-dir", "d"), 0);
    CHECK_STR(c.data_dir, "d");
    CHECK_EQ_INT(PARSE(&c, "--data-dir", ""), 0);
    CHECK(c.data_dir == NULL);
    /* RC_OPT_NONEMPTY */
    CHECK_EQ_INT(PARSE(&c, "--api-key", "k"), 0);
    CHECK_STR(c.api_key, "k");
    CHECK_EQ_INT(PARSE(&c, "--api-key", ""), -1);
    CHECK(strstr(err_buf, "--api-key") && strstr(err_buf, "empty"));
    CHECK_EQ_INT(PARSE(&c, "--api-key="), -1);
}

TEST(type_switch)
{
    rc_config c;
    CHECK_EQ_INT(PARSE(&c, "--no-latency-metrics", "--no-netsync"), 0);
    CHECK_EQ_INT(c.no_latency_metrics, 1);
    CHECK_EQ_INT(c.netsync, 0); /* a switch flips its default, whichever it is */
    CHECK_EQ_INT(PARSE(&c, "--no-netsync", "--no-netsync"), 0);
    CHECK_EQ_INT(c.netsync, 0);
    CHECK_EQ_INT(PARSE(&c, "--no-netsync=1"), -1); /* a switch takes no value */
    CHECK(strstr(err_buf, "--no-netsync"));
    CHECK_EQ_INT(PARSE(&c, "--list-rooms", "--data-dir", "d"), 0);
    CHECK_EQ_INT(c.tool_list, 1);
}

TEST(type_uint_limits)
{
    CHECK_SETS("--max-connections", "0", max_connections, 0);
    CHECK_SETS("--max-connections", "4294967295", max_connections, 4294967295u);
    CHECK_REFUSED("--max-connections", "4294967296");
    CHECK_REFUSED("--max-connections", "-5");
    CHECK_REFUSED("--max-connections", "12x");
    CHECK_REFUSED("--max-connections", "");
    CHECK_REFUSED("--max-connections", "99999999999999999999999");
    CHECK_SETS("--max-rooms-per-client", "1", max_rooms_per_client, 1);
    CHECK_SETS("--max-rooms-per-client", "1048576", max_rooms_per_client, 1 << 20);
    CHECK_REFUSED("--max-rooms-per-client", "0");
    CHECK_REFUSED("--max-rooms-per-client", "1048577");
    CHECK_SETS("--history-size", "0", history_size, 0);
    CHECK_SETS("--history-size", "16777216", history_size, 1 << 24);
    CHECK_REFUSED("--history-size", "16777217");
    CHECK_SETS("--idempotency-window", "16777216", idempotency_window, 1 << 24);
    CHECK_REFUSED("--idempotency-window", "16777217");
    /* the range is in the message */
    rc_config c;
    CHECK_EQ_INT(PARSE(&c, "--max-rooms-per-client", "0"), -1);
    CHECK(strstr(err_buf, "1..1048576"));
}

TEST(type_bytes_limits)
{
    CHECK_SETS("--max-message-size", "0", max_message_size, 0);
    CHECK_SETS("--max-message-size", "2147483648", max_message_size, 1ull << 31);
    CHECK_REFUSED("--max-message-size", "2147483649");
    CHECK_REFUSED("--max-message-size", "1M"); /* no suffixes */
    CHECK_SETS("--max-pending", "1099511627776", max_pending, 1ull << 40);
    CHECK_REFUSED("--max-pending", "1099511627777");
    CHECK_SETS("--history-bytes", "1099511627776", history_bytes, 1ull << 40);
    CHECK_REFUSED("--history-bytes", "1099511627777");
    CHECK_SETS("--max-header-size", "256", max_header_size, 256);
    CHECK_SETS("--max-header-size", "1048576", max_header_size, 1 << 20);
    CHECK_REFUSED("--max-header-size", "255");
    CHECK_REFUSED("--max-header-size", "1048577");
    CHECK_REFUSED("--max-header-size", "-1");
    /* NetSync: never below the largest transform and handshake, never near libzmq's own */
    CHECK_SETS("--netsync-max-message-size", "8192", netsync_max_message_size, 8192);
    CHECK_SETS("--netsync-max-message-size", "65806", netsync_max_message_size, 65806);
    CHECK_SETS("--netsync-max-message-size", "16777216", netsync_max_message_size, 1 << 24);
    CHECK_REFUSED("--netsync-max-message-size", "8191");
    CHECK_REFUSED("--netsync-max-message-size", "16777217");
    CHECK_REFUSED("--netsync-max-message-size", "0");
    rc_config c;
    CHECK_EQ_INT(PARSE(&c, "--max-header-size", "10"), -1);
    CHECK(strstr(err_buf, "256..1048576"));
}

TEST(type_seconds)
{
    CHECK_SETS("--ping-interval", "0.5", ping_interval, RC_NS_PER_SEC / 2);
    CHECK_SETS("--ping-timeout", "7", ping_timeout, 7 * RC_NS_PER_SEC);
    CHECK_SETS("--handshake-timeout", "1e1", handshake_timeout, 10 * RC_NS_PER_SEC);
    CHECK_SETS("--close-timeout", "31536000", close_timeout, 31536000ull * RC_NS_PER_SEC);
    CHECK_SETS("--netsync-tick", "0.02", netsync_tick, 20 * RC_NS_PER_MS);
    CHECK_SETS("--netsync-client-timeout", "3", netsync_client_timeout, 3 * RC_NS_PER_SEC);
    CHECK_SETS("--history-age", "60", history_age, 60 * RC_NS_PER_SEC);
    CHECK_REFUSED("--close-timeout", "31536001");
    CHECK_REFUSED("--ping-interval", "0");
    CHECK_REFUSED("--ping-interval", "soon");
    CHECK_REFUSED("--ping-timeout", "-1");
    CHECK_REFUSED("--ping-timeout", "inf");
    CHECK_REFUSED("--ping-timeout", "nan");
    CHECK_REFUSED("--ping-timeout", "5s");
    CHECK_REFUSED("--ping-timeout", "");
    CHECK_REFUSED("--history-age", "0"); /* "never" is the default, not a value */
    rc_config c;
    CHECK_EQ_INT(PARSE(&c, "--ping-interval", "0"), -1);
    CHECK(strstr(err_buf, "seconds > 0"));
}

TEST(type_seconds_room_ttl_zero)
{
    CHECK_SETS("--room-ttl", "0", room_ttl, 0); /* 0: the room goes with its last member */
    CHECK_SETS("--room-ttl", "2.5", room_ttl, 2500 * RC_NS_PER_MS);
    CHECK_REFUSED("--room-ttl", "0.0"); /* exactly "0", as before the table */
    CHECK_REFUSED("--room-ttl", "-1");
    CHECK_REFUSED("--room-ttl", "never");
}

TEST(type_port)
{
    CHECK_SETS("--port", "0", port, 0);
    CHECK_SETS("--port", "65535", port, 65535);
    CHECK_SETS("--netsync-router-port", "1", netsync_router_port, 1);
    CHECK_SETS("--netsync-pub-port", "2", netsync_pub_port, 2);
    CHECK_SETS("--netsync-discovery-port", "3", netsync_discovery_port, 3);
    CHECK_REFUSED("--port", "65536");
    CHECK_REFUSED("--port", "70000");
    CHECK_REFUSED("--port", "-1");
    CHECK_REFUSED("--port", "abc");
    CHECK_REFUSED("--port", "off"); /* --port is always on */
    CHECK_REFUSED("--netsync-pub-port", "65536");
}

TEST(type_enum)
{
    CHECK_SETS("--log-level", "error", log_level, RC_LOG_ERROR);
    CHECK_SETS("--log-level", "warn", log_level, RC_LOG_WARN);
    CHECK_SETS("--log-level", "info", log_level, RC_LOG_INFO);
    CHECK_SETS("--log-level", "debug", log_level, RC_LOG_DEBUG);
    CHECK_SETS("--fsync", "no", fsync_mode, RC_FSYNC_NO);
    CHECK_SETS("--fsync", "everysec", fsync_mode, RC_FSYNC_EVERYSEC);
    CHECK_SETS("--fsync", "always", fsync_mode, RC_FSYNC_ALWAYS);
    CHECK_REFUSED("--log-level", "loud");
    CHECK_REFUSED("--log-level", "INFO");
    CHECK_REFUSED("--log-level", "");
    CHECK_REFUSED("--fsync", "sometimes");
    rc_config c;
    CHECK_EQ_INT(PARSE(&c, "--fsync", "x"), -1);
    CHECK(strstr(err_buf, "no, everysec, always")); /* the choices are listed */
}

/* ---- the new listeners -------------------------------------------------------------------- */

TEST(tcp_and_chat_ports)
{
    CHECK_SETS("--tcp-port", "0", tcp_port, 0);
    CHECK_SETS("--tcp-port", "1", tcp_port, 1);
    CHECK_SETS("--tcp-port", "65535", tcp_port, 65535);
    CHECK_SETS("--tcp-port", "off", tcp_port, -1);
    CHECK_SETS("--tcp-port", "-1", tcp_port, -1);
    CHECK_SETS("--chat-port", "8082", chat_port, 8082);
    CHECK_SETS("--chat-port", "off", chat_port, -1);
    CHECK_REFUSED("--tcp-port", "65536");
    CHECK_REFUSED("--tcp-port", "70000");
    CHECK_REFUSED("--tcp-port", "-2");
    CHECK_REFUSED("--tcp-port", "");
    CHECK_REFUSED("--tcp-port", "on");
    CHECK_REFUSED("--chat-port", "99999");
    rc_config c;
    CHECK_EQ_INT(PARSE(&c, "--tcp-port", "70000"), -1);
    CHECK(strstr(err_buf, "0..65535"));
    /* one does not turn on the other */
    CHECK_EQ_INT(PARSE(&c, "--tcp-port", "0"), 0);
    CHECK_EQ_INT(c.chat_port, -1);
}

TEST(chat_room_name)
{
    char longest[RC_ROOM_NAME_MAX + 2];
    memset(longest, 'r', sizeof longest);
    longest[RC_ROOM_NAME_MAX] = '\0';
    rc_config c;
    CHECK_EQ_INT(PARSE(&c, "--chat-room", "lobby"), 0);
    CHECK_STR(c.chat_room, "lobby");
    CHECK_EQ_INT(PARSE(&c, "--chat-room=caf\xc3\xa9 \xf0\x9f\x92\xac"), 0); /* UTF-8 */
    CHECK_STR(c.chat_room, "caf\xc3\xa9 \xf0\x9f\x92\xac");
    CHECK_EQ_INT(PARSE(&c, "--chat-room", longest), 0);
    CHECK_EQ_INT(strlen(c.chat_room), RC_ROOM_NAME_MAX);
    longest[RC_ROOM_NAME_MAX] = 'r';
    longest[RC_ROOM_NAME_MAX + 1] = '\0';
    CHECK_REFUSED("--chat-room", longest);
    CHECK(strstr(err_buf, "256 bytes"));
    CHECK_REFUSED("--chat-room", "");
    /* Not UTF-8: the message shows the bytes escaped. */
    CHECK_EQ_INT(PARSE(&c, "--chat-room", "a\xff"), -1);
    CHECK(strstr(err_buf, "'a\\xff' for --chat-room") && strstr(err_buf, "not UTF-8"));
    CHECK_EQ_INT(PARSE(&c, "--chat-room=\xc0\xaf"), -1); /* overlong '/' */
    CHECK(strstr(err_buf, "'\\xc0\\xaf'"));
    CHECK_EQ_INT(PARSE(&c, "--chat-room", "\xed\xa0\x80"), -1); /* a surrogate */
    CHECK_EQ_INT(PARSE(&c, "--chat-room", "caf\xc3"), -1);        /* cut short */
    CHECK(strstr(err_buf, "'caf\\xc3'"));
}

TEST(messages_escape_unprintable_bytes)
{
    rc_config c;
    CHECK_EQ_INT(PARSE(&c, "--port", "\x1b[31m"), -1);
    CHECK(strstr(err_buf, "'\\x1b[31m' for --port"));
    CHECK(!strchr(err_buf, 0x1b));
    CHECK_EQ_INT(PARSE(&c, "--log-level", "caf\xc3\xa9"), -1); /* UTF-8 is shown as is */
    CHECK(strstr(err_buf, "'caf\xc3\xa9'"));
    CHECK_EQ_INT(PARSE(&c, "--log-level", "caf\xe9"), -1); /* Latin-1 is not */
    CHECK(strstr(err_buf, "'caf\\xe9' for --log-level"));
    CHECK_EQ_INT(PARSE(&c, "a\tb"), -1);
    CHECK(strstr(err_buf, "unexpected argument 'a\\x09b'"));
}

/* ---- the command line as a whole ---------------------------------------------------------- */

TEST(many_flags_at_once)
{
    rc_config c;
    CHECK_EQ_INT(PARSE(&c, "--bind", "0.0.0.0", "--port=9000", "--tcp-port", "9001",
                       "--chat-port=9002", "--chat-room", "hall", "--log-level=debug",
                       "--room-ttl", "0", "--no-netsync", "--port", "9003"),
                 0);
    CHECK_STR(c.bind, "0.0.0.0");
    CHECK_EQ_INT(c.port, 9003); /* the last one wins */
    CHECK_EQ_INT(c.tcp_port, 9001);
    CHECK_EQ_INT(c.chat_port, 9002);
    CHECK_STR(c.chat_room, "hall");
    CHECK_EQ_INT(c.log_level, RC_LOG_DEBUG);
    CHECK_EQ_INT(c.room_ttl, 0);
    CHECK_EQ_INT(c.netsync, 0);
    CHECK_EQ_INT(c.max_rooms_per_client, 64); /* untouched */
}

TEST(unique_prefixes_still_work)
{
    rc_config c;
    CHECK_EQ_INT(PARSE(&c, "--max-conn", "7", "--chat-r", "x"), 0);
    CHECK_EQ_INT(c.max_connections, 7);
    CHECK_STR(c.chat_room, "x");
    CHECK_EQ_INT(PARSE(&c, "--max", "7"), -1); /* ambiguous */
    CHECK(strstr(err_buf, "ambiguous"));
}

TEST(bad_command_lines)
{
    rc_config c;
    CHECK_EQ_INT(PARSE(&c, "--no-such-flag"), -1);
    CHECK(strstr(err_buf, "--no-such-flag") && strstr(err_buf, "Try 'roomcast --help'"));
    CHECK_EQ_INT(PARSE(&c, "--port"), -1); /* no value */
    CHECK(strstr(err_buf, "--port"));
    CHECK_EQ_INT(PARSE(&c, "-x"), -1);
    CHECK_EQ_INT(PARSE(&c, "--port", "1", "positional"), -1);
    CHECK(strstr(err_buf, "unexpected argument 'positional'"));
    CHECK_EQ_INT(PARSE(&c, "--", "--port"), -1); /* after --, a flag is an operand */
    CHECK(strstr(err_buf, "'--port'"));
    CHECK_EQ_INT(PARSE(&c, "--dump", "room"), -1);
    CHECK(strstr(err_buf, "need --data-dir"));
    CHECK_EQ_INT(PARSE(&c, "--list-rooms"), -1);
    CHECK_EQ_INT(PARSE(&c, "--list-rooms", "--data-dir", ""), -1); /* "" is no directory */
    CHECK_EQ_INT(PARSE(&c, "--dump", "room", "--data-dir", "d"), 0);
    CHECK_STR(c.tool_dump, "room");
}

TEST(help_and_version)
{
    char *text = usage_text();
    rc_config c;
    CHECK_EQ_INT(PARSE(&c, "--help"), 1);
    CHECK(strcmp(out_buf, text) == 0);
    CHECK(!err_buf[0]);
    CHECK_EQ_INT(PARSE(&c, "-h"), 1);
    CHECK(strcmp(out_buf, text) == 0);
    free(text);
    CHECK_EQ_INT(PARSE(&c, "-V"), 1);
    CHECK_STR(out_buf, "roomcast " RC_VERSION "\n");
    CHECK_EQ_INT(PARSE(&c, "--version"), 1);
    CHECK_STR(out_buf, "roomcast " RC_VERSION "\n");
    CHECK_EQ_INT(PARSE(&c, "--port", "1", "--version", "--port", "x"), 1); /* stops there */
    CHECK_EQ_INT(PARSE(&c, "--help=yes"), -1);
    /* The parser starts afresh each time, even after stopping inside "-hV". */
    CHECK_EQ_INT(PARSE(&c, "-hV"), 1);
    CHECK(strstr(out_buf, "usage:"));
    CHECK_EQ_INT(PARSE(&c, "--port", "1"), 0);
    CHECK_EQ_INT(c.port, 1);
    CHECK_EQ_INT(PARSE(&c, "-Vh"), 1);
    CHECK_STR(out_buf, "roomcast " RC_VERSION "\n");
}

/* ---- --help ------------------------------------------------------------------------------- */

TEST(help_lists_every_row)
{
    char *text = usage_text();
    int ok = 1;
    for (size_t i = 0; i < rc_config_noptions && ok; i++) {
        const rc_config_option *o = &rc_config_options[i];
        char want[128];
        if (o->short_name)
            snprintf(want, sizeof want, "\n  -%c, --%s", o->short_name, o->name);
        else
            snprintf(want, sizeof want, "\n  --%s%s%s ", o->name, o->metavar ? " " : "",
                     o->metavar ? o->metavar : "");
        if (!strstr(text, want)) {
            fprintf(stderr, "--help has no line starting '%s'\n", want + 1);
            ok = 0;
        }
    }
    for (int s = 0; s < RC_SEC_COUNT && ok; s++) {
        const char *t = rc_config_section_title((enum rc_opt_section)s);
        if (*t && !strstr(text, t)) ok = 0;
    }
    free(text);
    CHECK(ok);
}

TEST(help_states_defaults)
{
    char *text = usage_text();
    static const char *const want[] = {
        "--port N                    listen port; 0 picks a free one (default 8080)",
        "(default 127.0.0.1)", "(default 1048576)", "(default 0.05)", "(default everysec)",
        "(default info)", "(default: never)", "(default: --bind)", "(default 300)",
        "--tcp-port N", "--chat-port N", "--chat-room NAME", "(default chat)", "(default off)",
        "docs/tcp.md", NULL,
    };
    int ok = 1;
    for (int i = 0; want[i]; i++)
        if (!strstr(text, want[i])) {
            fprintf(stderr, "--help lacks '%s'\n", want[i]);
            ok = 0;
        }
    free(text);
    CHECK(ok);
}

TEST(help_lines_fit)
{
    char *text = usage_text();
    int longest = 0, lines = 0;
    for (char *p = text; *p; lines++) {
        int len = (int)strcspn(p, "\n");
        if (len > longest) longest = len;
        p += len + (p[len] == '\n');
    }
    /* "(default" is never left at the end of a line without its value */
    int orphan = strstr(text, "(default\n") || strstr(text, "(default:\n");
    free(text);
    CHECK(longest <= 88);
    CHECK(lines > (int)rc_config_noptions);
    CHECK(!orphan);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(table_rows_match_their_fields);
    RUN(table_names_and_help);
    RUN(table_covers_every_field);
    RUN(table_enum_names_agree_with_their_modules);
    RUN(defaults);
    RUN(no_arguments_keep_the_defaults);
    RUN(api_key_from_the_environment);
    RUN(type_string);
    RUN(type_switch);
    RUN(type_uint_limits);
    RUN(type_bytes_limits);
    RUN(type_seconds);
    RUN(type_seconds_room_ttl_zero);
    RUN(type_port);
    RUN(type_enum);
    RUN(tcp_and_chat_ports);
    RUN(chat_room_name);
    RUN(messages_escape_unprintable_bytes);
    RUN(many_flags_at_once);
    RUN(unique_prefixes_still_work);
    RUN(bad_command_lines);
    RUN(help_and_version);
    RUN(help_lists_every_row);
    RUN(help_states_defaults);
    RUN(help_lines_fit);
    UNIT_MAIN_END("test_config");
}
