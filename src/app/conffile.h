/* conffile.h — the configuration file (--config FILE), docs/config.md.
 *
 * The format is Redis's and Mosquitto's: one `key value` per line, '#' comments, blank lines,
 * values quoted when they hold spaces or are empty. Every command-line flag is a key of the
 * same name without "--" (config.h's table: the same rows, the same value parser,
 * rc_config_set); a repeatable flag is repeated as lines. What a flag line cannot say well is
 * written as a block, `namespace NAME` ... `end`, parsed into rc_perm_rules (rooms/perm.h).
 *
 * Precedence: command line > file > environment (ROOMCAST_API_KEY) > built-in default. A flag
 * given on the command line replaces the file's value; for a repeatable flag, the command
 * line's rows replace all of the file's rows.
 *
 * Reload: loading is a pure function of (argv, file) into a fresh rc_conffile and rc_config,
 * so a SIGHUP handler can load again, ask rc_conffile_changes which keys differ and which of
 * those need a restart (rows without RC_OPT_LIVE), and swap. Nothing is reloaded yet.
 */
#ifndef RC_CONFFILE_H
#define RC_CONFFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "app/config.h"
#include "rooms/perm.h"

#define RC_CONFFILE_MAX_BYTES (1u << 20) /* a larger file is refused: surely not a config */

/* What one load produced, besides the rc_config it filled in. */
typedef struct rc_conffile {
    rc_config_pool pool;          /* the file's values (and path), which the rc_config's
                                     string fields point at: release after the rc_config */
    rc_perm_rules rules;          /* the namespaces (the defaults when the file has none) */
    const char *path;             /* the file read, NULL = none (in pool) */
} rc_conffile;

void rc_conffile_init(rc_conffile *cf);
void rc_conffile_release(rc_conffile *cf);

/* rc_conffile_load_text applies the file text[0..len), named name in messages, to cfg (whose
 * other settings stay) and to cf->rules. Every error is printed to err as "name:line: what"
 * and the rest of the file is still checked. Returns the number of errors (0 = valid). */
int rc_conffile_load_text(rc_conffile *cf, const char *name, const char *text, size_t len,
                          rc_config *cfg, FILE *err);

/* rc_conffile_load reads the file at path, then as rc_conffile_load_text. Returns the number
 * of errors; a file that cannot be read is one ("path: cannot read: reason"). */
int rc_conffile_load(rc_conffile *cf, const char *path, rc_config *cfg, FILE *err);

/* rc_conffile_setup is the whole start-up: defaults, argv looked at for --config, the file,
 * then argv again on top. Returns 0 to go on, 1 to exit successfully (--help, --version), -1
 * after a bad command line, -2 after a bad file (messages on stderr and err). */
int rc_conffile_setup(rc_conffile *cf, rc_config *cfg, int argc, char **argv, FILE *err);

/* rc_conffile_changes calls cb(ctx, key, needs_restart) for each key whose value differs
 * between (old, old_rules) and (cur, cur_rules): table rows by name, the namespace rules as
 * "namespace" (live: they are read per request). Returns how many of them need a restart. */
typedef void rc_conffile_change_fn(void *ctx, const char *key, bool needs_restart);
size_t rc_conffile_changes(const rc_config *old, const rc_perm_rules *old_rules,
                           const rc_config *cur, const rc_perm_rules *cur_rules,
                           rc_conffile_change_fn *cb, void *ctx);

/* rc_conffile_print_example writes a config file with every key of the table, commented out
 * at its default, and an example of the namespace blocks (roomcast.conf.example is its
 * output, so the example cannot drift from the table). */
void rc_conffile_print_example(FILE *f);

#endif
