/* reload.c — SIGHUP: the configuration read again, live keys applied; see reload.h. */
#include "app/reload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/server.h"
#include "core/log.h"

void rc_reload_init(rc_reload *r, int argc, char **argv)
{
    memset(r, 0, sizeof(*r));
    r->argc = argc;
    r->argv = argv;
}

static void free_conffile(rc_conffile *cf)
{
    if (!cf) return;
    rc_conffile_release(cf);
    free(cf);
}

void rc_reload_release(rc_reload *r)
{
    free_conffile(r->cur);
    r->cur = NULL;
}

/* What one reload found, for the change callback. */
typedef struct change_ctx {
    rc_reload *r;
    const char *file;
    size_t used;             /* bytes of r->restart_list in use */
} change_ctx;

static void on_change(void *arg, const char *key, bool needs_restart)
{
    change_ctx *x = arg;
    if (!needs_restart) {
        rc_info("SIGHUP: %s changed: applied", key);
        return;
    }
    rc_warn("SIGHUP: %s changed in %s: needs a restart, the running value stays", key, x->file);
    rc_reload *r = x->r;
    r->restart_keys++;
    size_t klen = strlen(key), cap = sizeof(r->restart_list);
    if (x->used + (x->used ? 1 : 0) + klen < cap) {
        if (x->used) r->restart_list[x->used++] = ',';
        memcpy(r->restart_list + x->used, key, klen + 1);
        x->used += klen;
    }
}

/* copy_field copies row o's field from src to dst. */
static void copy_field(rc_config *dst, const rc_config *src, const rc_config_option *o)
{
    memcpy((char *)dst + o->offset, (const char *)src + o->offset, o->size);
}

int rc_reload_run(rc_reload *r, rc_server *srv)
{
    const char *file = srv->cfg.config_file;
    if (!file) {
        rc_info("SIGHUP: no --config: re-reading the certificate and key files only");
        rc_server_reload_files(srv);
        r->ok++;
        return 0;
    }
    rc_conffile *nf = calloc(1, sizeof(*nf));
    if (!nf) {
        rc_error("SIGHUP: out of memory: nothing reloaded");
        r->failed++;
        return -1;
    }
    rc_conffile_init(nf);
    rc_config ncfg;
    char *msgs = NULL;
    size_t msglen = 0;
    FILE *err = open_memstream(&msgs, &msglen);
    int res = err ? rc_conffile_setup(nf, &ncfg, r->argc, r->argv, err) : -2;
    if (err) fclose(err);
    if (res != 0) {
        rc_log_lines(RC_LOG_WARN, "SIGHUP", msgs, msglen);
        rc_error("SIGHUP: %s has errors: the running configuration stays", file);
        free(msgs);
        free_conffile(nf);
        r->failed++;
        return -1;
    }
    free(msgs);

    /* Report, then build the configuration to run: the running one, with every live field
     * taken from the new parse (changed or not, so nothing points into the previous reload's
     * pool any more). */
    r->restart_keys = 0;
    r->restart_list[0] = '\0';
    change_ctx x = {.r = r, .file = file};
    const rc_perm_rules *old_rules = srv->rooms.perm;
    rc_conffile_changes(&srv->cfg, old_rules, &ncfg, &nf->rules, on_change, &x);
    rc_config next = srv->cfg;
    for (size_t i = 0; i < rc_config_noptions; i++) {
        const rc_config_option *o = &rc_config_options[i];
        if ((o->flags & RC_OPT_LIVE) && !(o->flags & RC_OPT_CLI_ONLY)) copy_field(&next, &ncfg, o);
    }
    srv->cfg = next;
    rc_rooms_set_perm(&srv->rooms, &nf->rules);
    rc_server_apply_live(srv);
    rc_server_reload_files(srv);
    free_conffile(r->cur); /* after the swap: nothing points into it now */
    r->cur = nf;
    r->ok++;
    rc_info("SIGHUP: %s reloaded%s", file,
            r->restart_keys ? " (some changes need a restart, see above)" : "");
    return 0;
}
