/* auth.h — connection tokens where the app layer meets them: the keyset built from the
 * configuration, and the token a WebSocket upgrade carries (docs/auth.md).
 *
 * The keyset is built here and nowhere else, at start-up and (the lead's SIGHUP reload) again
 * from the reloaded configuration: the server keeps it behind one pointer (rc_server.jwt,
 * shared read-only with the rooms as rc_rooms.jwt), so a reload builds a new one, swaps the
 * pointer with rc_server_set_keys and frees the old one. Connections keep nothing that points
 * into a keyset (rooms/ident.h).
 */
#ifndef RC_AUTH_H
#define RC_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "app/config.h"
#include "codec/jwt.h"
#include "transport/http.h"

/* rc_auth_keys_load builds in *out (any state; it is initialised here) the keys, issuer,
 * audience and leeway cfg names: --jwt-secret (as given, no kid), --jwt-secret-file and
 * --jwt-public-key ([KID=]FILE each: KID is the part before the first '=' when that part is
 * 1..128 bytes of [A-Za-z0-9_.-]; otherwise the whole value is the file, so a file name with
 * '=' and no kid is written ./name). Returns the number of keys (0: tokens are off), or -1
 * after writing why to err (out is then empty). */
int rc_auth_keys_load(const rc_config *cfg, rc_jwt_keys *out, FILE *err);

/* rc_auth_split_kid splits a [KID=]FILE value as above: *kid gets the kid (NUL-terminated, in
 * kidbuf of RC_JWT_MAX_KID + 1 bytes) or NULL, and the file name is returned. */
const char *rc_auth_split_kid(const char *value, char *kidbuf, const char **kid);

/* rc_auth_upgrade_token finds the token of an upgrade request: "Authorization: Bearer T"
 * first, else the query's token=T (percent-decoded into buf[0..cap)). Returns 1 with
 * tok and n set, 0 when the request carries none, -1 when it carries one that cannot be read
 * (another Authorization scheme, a bad escape, longer than cap). */
int rc_auth_upgrade_token(const rc_http_ctx *x, char *buf, size_t cap, const char **tok,
                          size_t *n);

#endif
