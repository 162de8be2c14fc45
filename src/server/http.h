/* http.h — the HTTP side of a connection: request heads, the WebSocket upgrade, the status
 * page and /api/stats, and HTTP error responses.
 *
 * Requests on one connection are answered in order (keep-alive and pipelining work because
 * every response is produced synchronously when its request head is complete). Statuses and
 * their causes: 400 malformed, 404 unknown path, 405 wrong method (with Allow), 408 head too
 * slow, 426 upgrade required / unsupported WebSocket version, 431 head too large, 503 full.
 * Error bodies are JSON: {"status":N,"error":"..."}.
 */
#ifndef RC_HTTP_H
#define RC_HTTP_H

#include <stddef.h>

#include "server/conn.h"

/* rc_http_on_input parses request heads from p[0..n) and answers them; returns the bytes
 * used (the rest is an incomplete head, or belongs to the WebSocket after an upgrade). */
size_t rc_http_on_input(rc_conn *c, char *p, size_t n);

/* rc_http_on_timeout handles the handshake / keep-alive idle timer. */
void rc_http_on_timeout(rc_conn *c);

/* rc_http_reject answers status with a JSON error body and closes the connection after it.
 * Used by the listener to refuse connections over --max-connections (503). */
void rc_http_reject(rc_conn *c, int status, const char *why);

#endif
