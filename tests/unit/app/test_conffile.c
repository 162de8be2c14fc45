/* test_conffile.c — tests for src/app/conffile.c: the config file's lines, through the flag
 * table, its namespace blocks, its errors (each with its line), and the command line on top.
 *
 * Files are given as text (rc_conffile_load_text) and errors captured with open_memstream, so
 * each test sees exactly the messages an operator would; rc_conffile_setup is driven with a
 * temporary file to check precedence.
 */
#include "unit.h"

#include "app/conffile.h"
#include "app/config.h"
#include "core/loop.h"

#include <stdlib.h>
#include <unistd.h>

static char errs[8192];

/* load applies text to *cfg (defaults first) and *cf; returns the error count, messages in
 * errs. The caller releases cf. */
static int load(rc_conffile *cf, rc_config *cfg, const char *text)
{
    rc_conffile_init(cf);
    rc_config_init(cfg);
    char *buf = NULL;
    size_t n = 0;
    FILE *err = open_memstream(&buf, &n);
    int e = rc_conffile_load_text(cf, "t.conf", text, strlen(text), cfg, err);
    fclose(err);
    snprintf(errs, sizeof errs, "%s", buf ? buf : "");
    free(buf);
    return e;
}

TEST(every_key_type)
{
    rc_conffile cf;
    rc_config cfg;
    int e = load(&cf, &cfg,
                 "# a comment\n"
                 "\n"
                 "bind 0.0.0.0\n"                 /* STRING */
                 "chat-room lobby\n"              /* ROOM */
                 "no-netsync\n"                   /* SWITCH, bare */
                 "no-latency-metrics yes\n"       /* SWITCH, with a value */
                 "history-size 5   # trailing\n"  /* UINT */
                 "max-message-size 4096\n"        /* BYTES */
                 "ping-interval 1.5\n"            /* SECONDS */
                 "room-ttl 0\n"                   /* SECONDS, ZERO_OFF */
                 "port 9001\n"                    /* PORT */
                 "tcp-port off\n"                 /* OFF_PORT */
                 "chat-port 0\n"
                 "log-level debug\n"              /* ENUM */
                 "data-dir \"\"\n");              /* EMPTY_NULL */
    CHECK_EQ_INT(e, 0);
    CHECK(strcmp(cfg.bind, "0.0.0.0") == 0);
    CHECK(strcmp(cfg.chat_room, "lobby") == 0);
    CHECK_EQ_INT(cfg.netsync, 0);
    CHECK_EQ_INT(cfg.no_latency_metrics, 1);
    CHECK_EQ_INT(cfg.history_size, 5);
    CHECK_EQ_INT(cfg.max_message_size, 4096);
    CHECK_EQ_INT(cfg.ping_interval, 1500 * RC_NS_PER_MS);
    CHECK_EQ_INT(cfg.room_ttl, 0);
    CHECK_EQ_INT(cfg.port, 9001);
    CHECK_EQ_INT(cfg.tcp_port, -1);
    CHECK_EQ_INT(cfg.chat_port, 0);
    CHECK_EQ_INT(cfg.log_level, 3);
    CHECK(cfg.data_dir == NULL);
    rc_conffile_release(&cf);
}

TEST(switch_no_keeps_default)
{
    rc_conffile cf;
    rc_config cfg;
    CHECK_EQ_INT(load(&cf, &cfg, "no-netsync no\n"), 0);
    CHECK_EQ_INT(cfg.netsync, 1);
    rc_conffile_release(&cf);
}

TEST(quoting)
{
    rc_conffile cf;
    rc_config cfg;
    int e = load(&cf, &cfg,
                 "cors-origins \"https://a.example, https://b.example\"\n"
                 "web-root 'C:\\web dir'\n"
                 "broker-default-service \"say \\\"hi\\\"\\t#1\"\r\n"
                 "api-key k#ey\n");
    CHECK_EQ_INT(e, 0);
    CHECK(strcmp(cfg.cors_origins, "https://a.example, https://b.example") == 0);
    CHECK(strcmp(cfg.web_root, "C:\\web dir") == 0);
    CHECK(strcmp(cfg.broker_default_service, "say \"hi\"\t#1") == 0);
    CHECK(strcmp(cfg.api_key, "k#ey") == 0); /* '#' inside a token is not a comment */
    rc_conffile_release(&cf);
}

TEST(repeats_join)
{
    rc_conffile cf;
    rc_config cfg;
    CHECK_EQ_INT(load(&cf, &cfg, "room-service a-*=x\nroom-service b-*=y\n"
                                 "broker-at-most-once s1\n"), 0);
    CHECK(strcmp(cfg.room_service, "a-*=x\nb-*=y") == 0);
    CHECK(strcmp(cfg.broker_at_most_once, "s1") == 0);
    rc_conffile_release(&cf);
}

/* err_is checks one error, its count and that errs holds "t.conf:LINE: " + what. */
#define ERR_AT(text, line, what)                                                     \
    do {                                                                             \
        rc_conffile cf_;                                                             \
        rc_config cfg_;                                                              \
        int e_ = load(&cf_, &cfg_, text);                                            \
        rc_conffile_release(&cf_);                                                   \
        char want_[512];                                                             \
        snprintf(want_, sizeof want_, "t.conf:%d: %s", line, what);                  \
        if (e_ != 1 || !strstr(errs, want_)) fprintf(stderr, "got: %s", errs);       \
        CHECK_EQ_INT(e_, 1);                                                         \
        CHECK(strstr(errs, want_) != NULL);                                          \
    } while (0)

TEST(errors_with_their_line)
{
    ERR_AT("\nfoo 1\n", 2, "unknown key 'foo'");
    ERR_AT("--port 1\n", 1, "unknown key '--port' (write keys without '--')");
    ERR_AT("config x\n", 1, "'config' is a command-line flag");
    ERR_AT("help\n", 1, "'help' is a command-line flag");
    ERR_AT("#\nport\n", 2, "'port' needs a value");
    ERR_AT("port 1 2\n", 1, "'port' takes one value");
    ERR_AT("port 70000\n", 1, "invalid port '70000' for port (0..65535");
    ERR_AT("history-size -1\n", 1, "invalid value '-1' for history-size (an integer");
    ERR_AT("max-header-size 10\n", 1, "invalid value '10' for max-header-size (bytes,");
    ERR_AT("ping-interval 0\n", 1, "invalid duration '0' for ping-interval");
    ERR_AT("tcp-port on\n", 1, "invalid port 'on' for tcp-port");
    ERR_AT("log-level loud\n", 1, "invalid value 'loud' for log-level (error, warn, info, debug)");
    ERR_AT("no-netsync maybe\n", 1, "invalid value 'maybe' for no-netsync (yes or no)");
    ERR_AT("api-key \"\"\n", 1, "api-key must not be empty");
    ERR_AT("chat-room \"\"\n", 1, "invalid room name '' for chat-room");
    ERR_AT("port 1\n\nport 2\n", 3, "'port' already set at line 1");
    ERR_AT("bind \"a\n", 1, "unterminated \"quoted\" value");
    ERR_AT("bind 'a\n", 1, "unterminated 'quoted' value");
    ERR_AT("bind \"\\q\"\n", 1, "unknown escape");
}

TEST(nul_byte_is_an_error)
{
    rc_conffile cf;
    rc_config cfg;
    rc_conffile_init(&cf);
    rc_config_init(&cfg);
    char *buf = NULL;
    size_t n = 0;
    FILE *err = open_memstream(&buf, &n);
    int e = rc_conffile_load_text(&cf, "t.conf", "port 1\nbind a\0b\n", 15, &cfg, err);
    fclose(err);
    int ok = strstr(buf, "t.conf:2: NUL byte") != NULL;
    free(buf);
    rc_conffile_release(&cf);
    CHECK_EQ_INT(e, 1);
    CHECK(ok);
}

TEST(errors_do_not_stop_the_check)
{
    rc_conffile cf;
    rc_config cfg;
    CHECK_EQ_INT(load(&cf, &cfg, "foo 1\nport x\nhistory-size 7\nbar\n"), 3);
    CHECK(strstr(errs, "t.conf:1: ") && strstr(errs, "t.conf:2: ") && strstr(errs, "t.conf:4: "));
    CHECK_EQ_INT(cfg.history_size, 7); /* good lines still apply */
    rc_conffile_release(&cf);
}

TEST(namespaces)
{
    rc_conffile cf;
    rc_config cfg;
    int e = load(&cf, &cfg,
                 "port 1\n"
                 "namespace game\n"
                 "  join authenticated        # anyone | authenticated | granted\n"
                 "  publish granted\n"
                 "  history off\n"
                 "  recovery off\n"
                 "  max-members 16\n"
                 "  presence off\n"
                 "end\n"
                 "namespace default\n"
                 "  publish authenticated\n"
                 "end\n"
                 "namespace chat.v2\n"
                 "end\n");
    CHECK_EQ_INT(e, 0);
    const rc_perm_ns *g = rc_perm_find(&cf.rules, "game", 4);
    CHECK(g != NULL);
    CHECK_EQ_INT(g->join, RC_PERM_AUTHENTICATED);
    CHECK_EQ_INT(g->publish, RC_PERM_GRANTED);
    CHECK_EQ_INT(g->history, 0);
    CHECK_EQ_INT(g->recovery, 0);
    CHECK_EQ_INT(g->presence, 0);
    CHECK_EQ_INT(g->max_members, 16);
    CHECK_EQ_INT(g->line, 2);
    CHECK_EQ_INT(cf.rules.def.publish, RC_PERM_AUTHENTICATED);
    CHECK_EQ_INT(cf.rules.def.join, RC_PERM_ANYONE);
    const rc_perm_ns *c = rc_perm_find(&cf.rules, "chat.v2", 7);
    CHECK(c && c->join == RC_PERM_ANYONE && c->history == 1 && c->max_members == 0);
    CHECK(rc_perm_lookup(&cf.rules, "game:42", 7) == g);
    CHECK(rc_perm_lookup(&cf.rules, "lobby", 5) == &cf.rules.def);
    CHECK(rc_perm_lookup(&cf.rules, "other:1", 7) == &cf.rules.def);
    rc_conffile_release(&cf);
}

TEST(namespace_errors)
{
    ERR_AT("namespace game\n join nobody\nend\n", 2, "invalid value 'nobody' for join");
    ERR_AT("namespace game\n history maybe\nend\n", 2, "invalid value 'maybe' for history");
    ERR_AT("namespace game\n max-members -1\nend\n", 2, "invalid value '-1' for max-members");
    ERR_AT("namespace game\n max-members 99999999\nend\n", 2,
           "invalid value '99999999' for max-members");
    ERR_AT("namespace game\n colour red\nend\n", 2, "unknown namespace key 'colour'");
    ERR_AT("namespace game\n port 1\nend\n", 2, "'port' is not a namespace key");
    ERR_AT("namespace game\n join\nend\n", 2, "'join' takes one value");
    ERR_AT("namespace game\n join anyone\n join anyone\nend\n", 3, "'join' given twice");
    ERR_AT("namespace game\nnamespace x\nend\n", 2, "namespace inside namespace 'game' (line 1)");
    ERR_AT("namespace game\nend\nnamespace game\nend\n", 3, "namespace 'game' given twice");
    ERR_AT("namespace default\nend\nnamespace default\nend\n", 3, "namespace 'default' given twice");
    ERR_AT("namespace a:b\nend\n", 1, "invalid namespace name 'a:b'");
    ERR_AT("namespace\nend\n", 1, "'namespace' takes one name");
    ERR_AT("port 1\nend\n", 2, "'end' without a namespace");
    ERR_AT("namespace game\nend now\n", 2, "'end' takes no value");
    ERR_AT("\nnamespace game\n join anyone\n", 2, "namespace 'game' has no 'end'");
}

TEST(missing_file)
{
    rc_conffile cf;
    rc_config cfg;
    rc_conffile_init(&cf);
    rc_config_init(&cfg);
    char *buf = NULL;
    size_t n = 0;
    FILE *err = open_memstream(&buf, &n);
    CHECK_EQ_INT(rc_conffile_load(&cf, "/nonexistent/roomcast.conf", &cfg, err), 1);
    fclose(err);
    int ok = strstr(buf, "/nonexistent/roomcast.conf: cannot read: ") != NULL;
    free(buf);
    rc_conffile_release(&cf);
    CHECK(ok);
}

/* setup runs rc_conffile_setup on "roomcast" + args with a file holding text. */
static int setup(rc_conffile *cf, rc_config *cfg, const char *text, const char *const *args)
{
    static char path[] = "/tmp/test_conffile_XXXXXX";
    strcpy(path, "/tmp/test_conffile_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) exit(2);
    close(fd);
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"roomcast";
    argv[argc++] = (char *)"--config";
    argv[argc++] = path;
    while (*args) argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    rc_conffile_init(cf);
    int r = rc_conffile_setup(cf, cfg, argc, argv, stderr);
    unlink(path);
    return r;
}

TEST(command_line_overrides_the_file)
{
    rc_conffile cf;
    rc_config cfg;
    int r = setup(&cf, &cfg,
                  "port 9001\nhistory-size 5\nroom-service a=x\nroom-service b=y\n",
                  (const char *const[]){"--port", "9002", "--room-service", "c=z", NULL});
    CHECK_EQ_INT(r, 0);
    CHECK_EQ_INT(cfg.port, 9002);       /* the flag wins */
    CHECK_EQ_INT(cfg.history_size, 5);  /* the file's stays */
    CHECK(strcmp(cfg.room_service, "c=z") == 0); /* the flag's rows replace the file's */
    CHECK(strcmp(cfg.config_file + strlen(cfg.config_file) - 6, "XXXXXX") != 0);
    rc_conffile_release(&cf);
}

TEST(file_supplies_what_flags_need)
{
    /* --list-rooms needs --data-dir, which the file gives: not refused before it is read. */
    rc_conffile cf;
    rc_config cfg;
    int r = setup(&cf, &cfg, "data-dir /tmp\n", (const char *const[]){"--list-rooms", NULL});
    CHECK_EQ_INT(r, 0);
    CHECK(cfg.tool_list && strcmp(cfg.data_dir, "/tmp") == 0);
    rc_conffile_release(&cf);
}

TEST(bad_file_is_minus_two)
{
    rc_conffile cf;
    rc_config cfg;
    fflush(stderr);
    FILE *saved = stderr;
    stderr = fopen("/dev/null", "w");
    int r = setup(&cf, &cfg, "nope 1\n", (const char *const[]){NULL});
    fclose(stderr);
    stderr = saved;
    rc_conffile_release(&cf);
    CHECK_EQ_INT(r, -2);
}

static char changed[1024];
static void on_change(void *ctx, const char *key, bool restart)
{
    (void)ctx;
    size_t n = strlen(changed);
    snprintf(changed + n, sizeof changed - n, "%s%s;", key, restart ? "!" : "");
}

TEST(reload_reports_changes)
{
    rc_conffile a, b;
    rc_config ca, cb;
    CHECK_EQ_INT(load(&a, &ca, "port 1\nlog-level info\nnamespace g\nend\n"), 0);
    CHECK_EQ_INT(load(&b, &cb, "port 2\nlog-level debug\nnamespace g\n join granted\nend\n"), 0);
    changed[0] = '\0';
    size_t restart = rc_conffile_changes(&ca, &a.rules, &cb, &b.rules, on_change, NULL);
    CHECK_EQ_INT(restart, 1);
    CHECK(strcmp(changed, "port!;log-level;namespace;") == 0);
    changed[0] = '\0';
    CHECK_EQ_INT(rc_conffile_changes(&ca, &a.rules, &ca, &a.rules, on_change, NULL), 0);
    CHECK(changed[0] == '\0');
    rc_conffile_release(&a);
    rc_conffile_release(&b);
}

TEST(example_has_every_key_and_loads)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    rc_conffile_print_example(f);
    fclose(f);
    int missing = 0;
    for (size_t i = 0; i < rc_config_noptions; i++) {
        const rc_config_option *o = &rc_config_options[i];
        char want[128];
        snprintf(want, sizeof want, "\n#%s ", o->name);
        if (!(o->flags & RC_OPT_CLI_ONLY) && !strstr(buf, want)) {
            fprintf(stderr, "example lacks %s\n", o->name);
            missing++;
        }
    }
    rc_conffile cf;
    rc_config cfg;
    int e = load(&cf, &cfg, buf);
    free(buf);
    rc_conffile_release(&cf);
    CHECK_EQ_INT(missing, 0);
    CHECK_EQ_INT(e, 0);
}

int main(int argc, char **argv)
{
    UNIT_MAIN_BEGIN(argc, argv);
    RUN(every_key_type);
    RUN(switch_no_keeps_default);
    RUN(quoting);
    RUN(repeats_join);
    RUN(errors_with_their_line);
    RUN(nul_byte_is_an_error);
    RUN(errors_do_not_stop_the_check);
    RUN(namespaces);
    RUN(namespace_errors);
    RUN(missing_file);
    RUN(command_line_overrides_the_file);
    RUN(file_supplies_what_flags_need);
    RUN(bad_file_is_minus_two);
    RUN(reload_reports_changes);
    RUN(example_has_every_key_and_loads);
    UNIT_MAIN_END("test_conffile");
}
