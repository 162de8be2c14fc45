/* webassets.c — serving web/ files, built in or from --web-root; see webassets.h. */
#include "app/webassets.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "app/server.h"

#define RC_WEB_FILE_MAX (8u << 20) /* larger files in --web-root are refused */

/* A file name is one path segment of [A-Za-z0-9._-], not starting with '.'. */
static bool safe_name(const char *s, size_t n)
{
    if (n == 0 || n > 128 || s[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static const rc_web_asset *find_embedded(const char *name, size_t n)
{
    for (const rc_web_asset *a = rc_web_assets; a->name; a++)
        if (strlen(a->name) == n && memcmp(a->name, name, n) == 0) return a;
    return NULL;
}

static const char *ctype_of(const char *name, size_t n)
{
    /* The embedded table knows the types of the files web/ has; other files are rare. */
    const rc_web_asset *a = find_embedded(name, n);
    if (a) return a->ctype;
    if (n > 5 && memcmp(name + n - 5, ".html", 5) == 0) return "text/html; charset=utf-8";
    if (n > 3 && memcmp(name + n - 3, ".js", 3) == 0) return "text/javascript; charset=utf-8";
    if (n > 4 && memcmp(name + n - 4, ".css", 4) == 0) return "text/css; charset=utf-8";
    if (n > 4 && memcmp(name + n - 4, ".svg", 4) == 0) return "image/svg+xml";
    return "application/octet-stream";
}

static bool etag_matches(const rc_http_ctx *x, const char *etag)
{
    const rc_http_header *h = rc_http_find_header(x->req, "If-None-Match");
    return h && rc_http_has_token(h->value, h->value_len, etag);
}

static void send_file(rc_conn *c, const rc_http_ctx *x, const char *ctype, const char *etag,
                      const void *data, size_t len)
{
    char extra[128];
    /* no-cache: browsers revalidate (a 304 is cheap), so a new build is picked up at once. */
    snprintf(extra, sizeof(extra), "ETag: %s\r\nCache-Control: no-cache\r\n", etag);
    if (etag_matches(x, etag)) rc_http_respond(c, x, 304, ctype, extra, "", 0);
    else rc_http_respond(c, x, 200, ctype, extra, data, len);
}

/* Development mode: reads the file from --web-root on every request (blocking, on the loop:
 * acceptable for a developer's machine, which is the only place this flag is for). Returns
 * false when there is no such file. */
static bool serve_from_disk(rc_server *srv, rc_conn *c, const rc_http_ctx *x, const char *name, size_t n)
{
    const char *root = srv->cfg.web_root;
    char path[4096];
    int pl = snprintf(path, sizeof(path), "%s/%.*s", root, (int)n, name);
    if (pl < 0 || (size_t)pl >= sizeof(path)) return false;
    /* O_NONBLOCK: opening a FIFO (or a device) would otherwise block the whole loop until a
     * writer appears; only regular files are served, and they never block on open. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return false;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > RC_WEB_FILE_MAX) {
        close(fd);
        return false;
    }
    size_t len = (size_t)st.st_size;
    char *data = malloc(len ? len : 1);
    size_t got = 0;
    while (data && got < len) {
        ssize_t r = read(fd, data + got, len - got);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    if (!data || got != len) {
        free(data);
        rc_http_error(c, x, 500, NULL, false, "cannot read '%.*s' from --web-root", (int)n, name);
        return true;
    }
    char etag[40];
    snprintf(etag, sizeof(etag), "\"%llx-%llx\"", (unsigned long long)st.st_mtime,
             (unsigned long long)st.st_size);
    send_file(c, x, ctype_of(name, n), etag, data, len);
    free(data);
    return true;
}

bool rc_web_handle(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    if (x->path_len < 1 || x->path[0] != '/') return false;
    const char *name = x->path + 1;
    size_t n = x->path_len - 1;
    if (n == 0) {
        name = "index.html";
        n = strlen(name);
    }
    if (!safe_name(name, n)) return false;
    bool read = x->method == RC_HTTP_GET || x->method == RC_HTTP_HEAD;
    const rc_web_asset *a = find_embedded(name, n);
    if (!read) {
        if (!a && !srv->cfg.web_root) return false;
        rc_http_error(c, x, 405, "Allow: GET, HEAD\r\n", false, "method not allowed");
        return true;
    }
    if (srv->cfg.web_root) return serve_from_disk(srv, c, x, name, n);
    if (!a) return false;
    send_file(c, x, a->ctype, a->etag, a->data, a->len);
    return true;
}
