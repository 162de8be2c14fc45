/* reload.h — SIGHUP: read the configuration again and apply what can change while running.
 *
 * A reload is a fresh start-up parse — defaults, the config file, then the command line on
 * top, exactly as at start (rc_conffile_setup) — into a new rc_conffile, compared key by key
 * with what the server runs (rc_conffile_changes). Then:
 *   - a file with errors changes nothing: every error is logged as "file:line: what", the
 *     running configuration stays, and the failure is counted;
 *   - a changed key whose table row is RC_OPT_LIVE takes effect (rc_server_apply_live pushes
 *     it into the modules that keep a copy: the connections' timeouts, the rooms' limits, the
 *     log level, ...); the namespace rules are swapped whole;
 *   - a changed key without RC_OPT_LIVE (a port, a directory) is logged as needing a restart
 *     and keeps its running value; /api/stats and /metrics list how many such keys wait;
 *   - files named by the configuration are read again whatever changed: the TLS certificate
 *     and key, and the token keys (a failure keeps the old ones).
 * Without --config, a reload still re-reads those files.
 *
 * Memory: the running rc_config's strings point into argv, the start-up file's pool (kept for
 * the life of the process: modules set up at start may point into it) and, for live keys, the
 * pool of the last reload's file. Each reload copies every live field from the new parse,
 * changed or not, so the previous reload's pool is unreferenced and freed.
 */
#ifndef RC_RELOAD_H
#define RC_RELOAD_H

#include <stddef.h>
#include <stdint.h>

#include "app/conffile.h"

struct rc_server;

#define RC_RELOAD_PENDING_MAX 512 /* bytes of the restart-needed key list kept for stats */

typedef struct rc_reload {
    int argc;                /* the command line, applied again over the file */
    char **argv;
    rc_conffile *cur;        /* the last good reload's file (NULL until one) */
    uint64_t ok;             /* reloads applied */
    uint64_t failed;         /* reloads refused (a bad file) */
    uint32_t restart_keys;   /* changed keys that wait for a restart, after the last reload */
    char restart_list[RC_RELOAD_PENDING_MAX]; /* their names, comma-separated (may be cut) */
} rc_reload;

/* rc_reload_init remembers the command line (argv must outlive r). */
void rc_reload_init(rc_reload *r, int argc, char **argv);
void rc_reload_release(rc_reload *r);

/* rc_reload_run reloads srv's configuration as described above, logging each change.
 * Returns 0 when the new configuration was applied (some keys may wait for a restart), -1 when
 * the file had errors and nothing changed. */
int rc_reload_run(rc_reload *r, struct rc_server *srv);

#endif
