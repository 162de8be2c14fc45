/* webassets.h — the web client and demo (the files in web/): GET / serves index.html, GET /NAME the file
 * NAME (roomcast.js, ...).
 *
 * The files are compiled into the binary at build time (tools/embed.c writes them as C
 * arrays), so a deployed roomcast needs nothing beside itself. --web-root DIR serves them from
 * DIR instead, read from disk on every request, so that editing web/ shows on reload during
 * development. Only single path segments of [A-Za-z0-9._-] that do not start with '.' are
 * file names: no directory traversal, no hidden files. Responses carry an ETag and answer
 * If-None-Match with 304.
 */
#ifndef RC_WEBASSETS_H
#define RC_WEBASSETS_H

#include <stdbool.h>
#include <stddef.h>

#include "transport/conn.h"
#include "transport/http.h"

struct rc_server;

typedef struct rc_web_asset {
    const char *name;        /* file name, e.g. "index.html"; NULL ends the table */
    const char *ctype;       /* Content-Type */
    const unsigned char *data; /* the file's bytes */
    size_t len;              /* bytes in data */
    const char *etag;        /* quoted ETag */
} rc_web_asset;

/* The embedded files (generated at build time), ended by an entry with a NULL name. */
extern const rc_web_asset rc_web_assets[];

/* rc_web_handle answers x when its path names a web file (returns true), or returns false. */
bool rc_web_handle(struct rc_server *srv, rc_conn *c, const rc_http_ctx *x);

#endif
