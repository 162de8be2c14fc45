/* api.h — the HTTP API served next to WebSocket on the same port and loop (docs/api.md):
 * /healthz, /status, /metrics, /api/stats, rooms, publishing, kicking clients, closing rooms.
 *
 * Reading endpoints are open. Backend calls — publishing, kicking, closing a room, reading a
 * room's messages — need the key configured with --api-key (or ROOMCAST_API_KEY), sent as
 * "Authorization: Bearer KEY". The key is compared in constant time and never logged; without
 * a configured key those calls are refused with 403.
 */
#ifndef RC_API_H
#define RC_API_H

#include <stdbool.h>

#include "transport/conn.h"
#include "transport/http.h"

struct rc_server;

/* rc_api_handle answers x when its path belongs to the API (returns true), or returns false
 * without answering. */
bool rc_api_handle(struct rc_server *srv, rc_conn *c, const rc_http_ctx *x);

/* rc_api_decode_room percent-decodes the path segment s[0..n) into name (RC_ROOM_NAME_MAX + 1
 * bytes, NUL-terminated) and checks it as the protocol checks room names: 1 to 255 bytes of
 * UTF-8 without NUL. Returns the length, or -1. Allocates nothing. */
long rc_api_decode_room(const char *s, size_t n, char *name);

/* rc_api_authorized checks x's "Authorization: Bearer KEY" against --api-key, answering
 * 401/403 when it fails (every /api write route, and POST /api/services/{service}). */
struct rc_server;
bool rc_api_authorized(struct rc_server *srv, rc_conn *c, const rc_http_ctx *x);

/* rc_api_client_gone: the connection of cl ended; a publish of it still waiting for its
 * answer (Redis's script, or the durable log) is dropped (app/client.c calls it). */
struct rc_client;
typedef struct rc_api_pub rc_api_pub;
void rc_api_client_gone(struct rc_server *srv, struct rc_client *cl);

#endif
