/* conffile.c — reading the configuration file; see conffile.h and docs/config.md.
 *
 * The file is read whole (it is small, and a line-at-a-time reader would need its own buffer
 * management for long lines), copied, and cut into lines and tokens in place. A token is a run
 * of non-blank bytes, or a quoted string: "..." with \" \\ \n \t escapes, or '...' taken
 * literally. A token starting with '#' (outside quotes) starts a comment, so comments may
 * follow a value. The values of flag keys go through rc_config_set, the parser of the command
 * line, so a value means the same in both places and is refused with the same words.
 */
#include "app/conffile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS 4 /* a line has a key and one value; more are only counted, for the error */

void rc_conffile_init(rc_conffile *cf)
{
    memset(cf, 0, sizeof *cf);
    rc_perm_rules_init(&cf->rules);
}

void rc_conffile_release(rc_conffile *cf)
{
    rc_config_pool_release(&cf->pool);
    rc_perm_rules_release(&cf->rules);
    cf->path = NULL;
}

/* tokenize cuts the NUL-terminated line into tokens, unquoting in place (a token never grows
 * when unquoted, so the write position stays behind the read position). Returns the number of
 * tokens (up to MAX_TOKENS are stored, more are counted), or -1 with *msg set. */
static int tokenize(char *line, char **tok, const char **msg)
{
    int n = 0;
    char *r = line;
    for (;;) {
        while (*r == ' ' || *r == '\t') r++;
        if (!*r || *r == '#') return n;
        char *w = r, *start = r;
        while (*r && *r != ' ' && *r != '\t') {
            if (*r == '"') {
                for (r++;; r++) {
                    if (!*r) return *msg = "unterminated \"quoted\" value", -1;
                    if (*r == '"') break;
                    if (*r == '\\') {
                        r++;
                        switch (*r) {
                        case '"': *w++ = '"'; break;
                        case '\\': *w++ = '\\'; break;
                        case 'n': *w++ = '\n'; break;
                        case 't': *w++ = '\t'; break;
                        default:
                            *msg = "unknown escape in a \"quoted\" value (\\\" \\\\ \\n \\t "
                                   "are known)";
                            return -1;
                        }
                    } else {
                        *w++ = *r;
                    }
                }
                r++;
            } else if (*r == '\'') {
                for (r++; *r != '\''; r++) {
                    if (!*r) return *msg = "unterminated 'quoted' value", -1;
                    *w++ = *r;
                }
                r++;
            } else {
                *w++ = *r++;
            }
        }
        /* w <= r: ending the token may overwrite the blank at r only after it was read. */
        char end = *r;
        *w = '\0';
        if (n < MAX_TOKENS) tok[n] = start;
        n++;
        if (!end) return n;
        r++;
    }
}

/* Keys of a namespace block; the bit is for "given twice". */
enum { NS_JOIN, NS_PUBLISH, NS_HISTORY, NS_RECOVERY, NS_PRESENCE, NS_MAX_MEMBERS, NS_NKEYS };
static const char *const ns_keys[NS_NKEYS] = {"join", "publish", "history", "recovery",
                                              "presence", "max-members"};
#define NS_MAX_MEMBERS_LIMIT (1u << 24)

/* ns_set applies `key value` to ns, or prints why not. Values are read with the parsers of the
 * flag table (rc_config_parse_bool, rc_config_parse_uint). */
static int ns_set(rc_perm_ns *ns, int k, const char *v, const char *where, FILE *err)
{
    int b;
    uint64_t u;
    switch (k) {
    case NS_JOIN:
    case NS_PUBLISH:
        b = rc_perm_parse_policy(v);
        if (b < 0) break;
        if (k == NS_JOIN) ns->join = (uint8_t)b;
        else ns->publish = (uint8_t)b;
        return 0;
    case NS_HISTORY:
    case NS_RECOVERY:
    case NS_PRESENCE:
        b = rc_config_parse_bool(v);
        if (b < 0) break;
        *(k == NS_HISTORY ? &ns->history : k == NS_RECOVERY ? &ns->recovery : &ns->presence) =
            (uint8_t)b;
        return 0;
    case NS_MAX_MEMBERS:
        if (rc_config_parse_uint(v, 0, NS_MAX_MEMBERS_LIMIT, &u) < 0) break;
        ns->max_members = (uint32_t)u;
        return 0;
    }
    const char *rule = k <= NS_PUBLISH      ? "anyone, authenticated or granted"
                       : k == NS_MAX_MEMBERS ? "an integer 0..16777216, 0: no limit"
                                             : "on or off";
    fprintf(err, "%s: invalid value '%s' for %s (%s)\n", where, v, ns_keys[k], rule);
    return -1;
}

int rc_conffile_load_text(rc_conffile *cf, const char *name, const char *text, size_t len,
                          rc_config *cfg, FILE *err)
{
    int errors = 0;
    char *buf = malloc(len + 1);
    uint32_t *set_at = calloc(rc_config_noptions, sizeof *set_at); /* line that set row i */
    if (!buf || !set_at) abort(); /* start-up; nothing to fall back on */
    memcpy(buf, text, len);
    buf[len] = '\0';

    rc_perm_ns *ns = NULL; /* the open namespace block */
    uint32_t ns_line = 0;  /* where it began */
    unsigned ns_given = 0; /* bits of ns_keys given in it */
    int def_seen = 0;      /* `namespace default` was given */
    rc_perm_ns scratch;    /* where the body of a block with a bad opening line goes */
    char where[512];
    uint32_t line = 0;
    char *p = buf, *end = buf + len;
#define FAIL(...)                                                                          \
    do {                                                                                   \
        fprintf(err, "%s: ", where);                                                       \
        fprintf(err, __VA_ARGS__);                                                         \
        fputc('\n', err);                                                                  \
        errors++;                                                                          \
    } while (0)
    while (p < end) {
        line++;
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end;
        char *next = nl ? nl + 1 : end;
        if (eol > p && eol[-1] == '\r') eol--; /* a file edited on Windows */
        snprintf(where, sizeof where, "%s:%u", name, line);
        if (memchr(p, '\0', (size_t)(eol - p))) {
            FAIL("NUL byte in the line (not a text file?)");
            p = next;
            continue;
        }
        *eol = '\0';
        char *tok[MAX_TOKENS];
        const char *msg = NULL;
        int n = tokenize(p, tok, &msg);
        p = next;
        if (n < 0) {
            FAIL("%s", msg);
            continue;
        }
        if (n == 0) continue;
        const char *key = tok[0];

        if (ns) { /* inside a namespace block */
            if (strcmp(key, "end") == 0) {
                if (n > 1) FAIL("'end' takes no value");
                ns = NULL;
                continue;
            }
            int k = 0;
            while (k < NS_NKEYS && strcmp(key, ns_keys[k]) != 0) k++;
            if (k == NS_NKEYS) {
                if (strcmp(key, "namespace") == 0)
                    FAIL("namespace inside namespace '%s' (line %u): close it with 'end' first",
                         ns->name[0] ? ns->name : "default", ns_line);
                else if (rc_config_find(key))
                    FAIL("'%s' is not a namespace key (join, publish, history, recovery, "
                         "presence, max-members); close the block with 'end' first", key);
                else
                    FAIL("unknown namespace key '%s' (join, publish, history, recovery, "
                         "presence, max-members)", key);
                continue;
            }
            if (n != 2) {
                FAIL("'%s' takes one value", key);
                continue;
            }
            if (ns_given & (1u << k)) {
                FAIL("'%s' given twice in namespace '%s'", key, ns->name[0] ? ns->name : "default");
                continue;
            }
            ns_given |= 1u << k;
            if (ns_set(ns, k, tok[1], where, err) < 0) errors++;
            continue;
        }

        if (strcmp(key, "namespace") == 0) {
            /* A bad opening line still opens a block (into scratch), so that its body is
             * checked and its 'end' does not count as a stray one. */
            const char *nsname = n == 2 ? tok[1] : "";
            if (n != 2) {
                FAIL("'namespace' takes one name: namespace NAME ... end");
                ns = &scratch;
            } else if (strcmp(nsname, "default") == 0) {
                /* Rooms without ':' (and "default:..." rooms, whose namespace has no other
                 * rules) follow the default namespace. */
                if (def_seen) FAIL("namespace 'default' given twice");
                ns = def_seen ? &scratch : &cf->rules.def;
                def_seen = 1;
            } else if (!rc_perm_name_valid(nsname, strlen(nsname))) {
                FAIL("invalid namespace name '%s' (1 to %d of A-Z a-z 0-9 _ - .)", nsname,
                     RC_PERM_NS_MAX);
                ns = &scratch;
            } else if (rc_perm_find(&cf->rules, nsname, strlen(nsname))) {
                FAIL("namespace '%s' given twice", nsname);
                ns = &scratch;
            } else if (!(ns = rc_perm_add(&cf->rules, nsname, strlen(nsname)))) {
                abort(); /* valid and new: only memory can have failed */
            }
            if (ns == &scratch) rc_perm_ns_init(&scratch, "", 0);
            ns->line = line;
            ns_line = line;
            ns_given = 0;
            continue;
        }
        if (strcmp(key, "end") == 0) {
            FAIL("'end' without a namespace");
            continue;
        }
        const rc_config_option *o = rc_config_find(key);
        if (!o || (o->flags & RC_OPT_CLI_ONLY)) {
            if (o) FAIL("'%s' is a command-line flag, not a config-file key", key);
            else if (key[0] == '-') FAIL("unknown key '%s' (write keys without '--')", key);
            else FAIL("unknown key '%s'", key);
            continue;
        }
        const char *value = n > 1 ? tok[1] : NULL;
        if (n > 2) {
            FAIL("'%s' takes one value (quote a value that has spaces)", key);
            continue;
        }
        if (!value && o->type != RC_OPT_SWITCH) {
            FAIL("'%s' needs a value", key);
            continue;
        }
        size_t row = (size_t)(o - rc_config_options);
        if (set_at[row] && !(o->flags & RC_OPT_APPEND)) {
            FAIL("'%s' already set at line %u", key, set_at[row]);
            continue;
        }
        /* The rc_config keeps pointing at string values: they live in the pool. */
        const char *kept = value ? rc_config_pool_add(&cf->pool, value, strlen(value)) : NULL;
        if (rc_config_set(cfg, o, kept, set_at[row] != 0, where, &cf->pool, err) < 0) errors++;
        else set_at[row] = line;
    }
    if (ns) {
        snprintf(where, sizeof where, "%s:%u", name, ns_line);
        FAIL("namespace '%s' has no 'end'", ns->name[0] ? ns->name : "default");
    }
#undef FAIL
    free(buf);
    free(set_at);
    return errors;
}

int rc_conffile_load(rc_conffile *cf, const char *path, rc_config *cfg, FILE *err)
{
    cf->path = rc_config_pool_add(&cf->pool, path, strlen(path));
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(err, "%s: cannot read: %s\n", path, strerror(errno));
        return 1;
    }
    char *text = malloc(RC_CONFFILE_MAX_BYTES + 1);
    if (!text) abort();
    size_t len = fread(text, 1, RC_CONFFILE_MAX_BYTES + 1, f);
    int bad = ferror(f);
    fclose(f);
    int errors;
    if (bad) {
        fprintf(err, "%s: cannot read: %s\n", path, strerror(EIO));
        errors = 1;
    } else if (len > RC_CONFFILE_MAX_BYTES) {
        fprintf(err, "%s: larger than %u bytes, not a config file?\n", path,
                RC_CONFFILE_MAX_BYTES);
        errors = 1;
    } else {
        errors = rc_conffile_load_text(cf, path, text, len, cfg, err);
    }
    free(text);
    return errors;
}

int rc_conffile_setup(rc_conffile *cf, rc_config *cfg, int argc, char **argv, FILE *err)
{
    /* A first look at argv, only to learn --config (and to stop early on --help or a bad
     * flag); the settings between them are checked once the file has had its say. */
    rc_config first;
    rc_config_init(&first);
    int r = rc_config_parse_flags(&first, argc, argv, 0);
    if (r != 0) return r;
    rc_config_init(cfg);
    if (first.config_file && rc_conffile_load(cf, first.config_file, cfg, err) > 0) return -2;
    return rc_config_parse_flags(cfg, argc, argv, 1);
}

size_t rc_conffile_changes(const rc_config *old, const rc_perm_rules *old_rules,
                           const rc_config *cur, const rc_perm_rules *cur_rules,
                           rc_conffile_change_fn *cb, void *ctx)
{
    size_t restart = 0;
    for (size_t i = 0; i < rc_config_noptions; i++) {
        const rc_config_option *o = &rc_config_options[i];
        if ((o->flags & RC_OPT_CLI_ONLY) || rc_config_field_equal(old, cur, o)) continue;
        bool needs = !(o->flags & RC_OPT_LIVE);
        restart += needs;
        cb(ctx, o->name, needs);
    }
    if (!rc_perm_rules_equal(old_rules, cur_rules)) cb(ctx, "namespace", false);
    return restart;
}

/* put_comment writes text as '#' comment lines of at most 88 columns. */
static void put_comment(FILE *f, const char *text)
{
    int col = 0;
    for (const char *p = text; *p;) {
        while (*p == ' ') p++;
        int len = (int)strcspn(p, " ");
        if (!len) break;
        if (col && col + 1 + len > 88) {
            fputc('\n', f);
            col = 0;
        }
        col += fprintf(f, "%s%.*s", col ? " " : "# ", len, p);
        p += len;
    }
    if (col) fputc('\n', f);
}

/* The namespace part of the example: an active `default` block that states the built-in rules
 * (so the example checks the block syntax and still changes nothing), and a commented one. */
static const char example_namespaces[] =
    "# ---- Namespaces ------------------------------------------------------------------\n"
    "#\n"
    "# A room's namespace is the part of its name before the first ':' (\"game:42\" is in\n"
    "# \"game\"). Rooms without ':', and rooms whose namespace has no block, follow the\n"
    "# default namespace. A block:\n"
    "#\n"
    "#   join POLICY      who may join: anyone | authenticated (a valid token) | granted\n"
    "#                    (the token's \"rooms\" claim grants r on the room)\n"
    "#   publish POLICY   who may publish (granted: the claim grants w)\n"
    "#   history on|off   whether members may read kept messages\n"
    "#   recovery on|off  whether a rejoin may recover missed messages (\"since\")\n"
    "#   presence on|off  whether a joiner gets the member list\n"
    "#   max-members N    members one room may have; 0: no limit\n"
    "#\n"
    "# Rules may change on reload (SIGHUP) without a restart. These are the built-in rules:\n"
    "namespace default\n"
    "  join anyone\n"
    "  publish anyone\n"
    "  history on\n"
    "  recovery on\n"
    "  presence on\n"
    "  max-members 0\n"
    "end\n"
    "\n"
    "# A game namespace: members need a token, the token's rooms claim says who plays.\n"
    "#namespace game\n"
    "#  join authenticated\n"
    "#  publish granted\n"
    "#  history on\n"
    "#  recovery on\n"
    "#  max-members 16\n"
    "#  presence on\n"
    "#end\n";

void rc_conffile_print_example(FILE *f)
{
    fprintf(f, "# roomcast.conf — generated by `roomcast --print-config`; docs/config.md.\n"
               "#\n"
               "# One `key value` per line; '#' starts a comment; quote a value that has spaces\n"
               "# or is empty (\"...\" with \\\" \\\\ \\n \\t, or '...' as is). Every key is the\n"
               "# command-line flag of the same name without \"--\", and a flag given on the\n"
               "# command line overrides the file. A switch (no-netsync) is a bare key or takes\n"
               "# yes/no. Keys marked (live) could change on reload without a restart.\n"
               "# Every key below is commented out at its default.\n");
    int section = -1;
    for (size_t i = 0; i < rc_config_noptions; i++) {
        const rc_config_option *o = &rc_config_options[i];
        if (o->flags & RC_OPT_CLI_ONLY) continue;
        if (o->section != section) {
            const char *title = rc_config_section_title(o->section);
            fprintf(f, "\n# ---- %s\n", *title ? title : "Server");
            section = o->section;
        }
        char text[800], def[160];
        rc_config_format_default(o, def, sizeof def);
        snprintf(text, sizeof text, "%s%s%s%s%s", o->help,
                 o->def_help ? " (default: " : "", o->def_help ? o->def_help : "",
                 o->def_help ? ")" : "", o->flags & RC_OPT_LIVE ? " (live)" : "");
        fputc('\n', f);
        put_comment(f, text);
        if (o->type == RC_OPT_SWITCH) fprintf(f, "#%s no\n", o->name);
        else if (*def) fprintf(f, "#%s %s\n", o->name, def); /* no default needs quotes */
        else fprintf(f, "#%s %s\n", o->name, o->metavar ? o->metavar : "VALUE");
    }
    fputc('\n', f);
    fputs(example_namespaces, f);
}
