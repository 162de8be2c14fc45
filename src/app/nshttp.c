/* nshttp.c — the NetSync routes of roomcast's HTTP listener; see nshttp.h and docs/netsync.md.
 *
 *   POST /v1/rooms/{room}/devices/{device}/client-variables   the reference's REST bridge
 *   GET  /api/netsync/rooms                                   rooms, devices, rates
 *
 * Both answer synchronously on the loop, like every other route: a variable set through HTTP
 * is applied between two ZeroMQ messages with the same conflict rule, never concurrently.
 */
#include "app/nshttp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "app/api.h"
#include "app/server.h"
#include "codec/json.h"
#include "codec/textbuf.h"
#include "netsync/netsync.h"

#define NAME_MAX_CP 64           /* the bridge's limits (RB:20-25): names 1..64, values <= 1024 */
#define VALUE_MAX_CP 1024
#define VALUE_MAX_BYTES (4 * VALUE_MAX_CP)
#define MAX_VARS 256             /* per request; more is a 422 */


typedef struct var_item {
    rc_json_span name, value; /* raw JSON literals (quotes included) */
} var_item;

/* The decoded variables of one request (about 80 KiB: allocated per request, which is rare). */
typedef struct vars_req {
    var_item items[MAX_VARS];                 /* the members of "vars", raw */
    char names[MAX_VARS][NSY_STR8_MAX + 1];   /* their decoded names */
    long name_lens[MAX_VARS];                 /* bytes of each name */
    char value[VALUE_MAX_BYTES + 1];          /* one decoded value at a time */
} vars_req;

/* parse_vars lists the members of the "vars" object of a body rc_json_scan accepted. Returns
 * the count, -1 when "vars" is absent or not an object, -2 when there are more than
 * MAX_VARS. */
static int parse_vars(const char *body, size_t len, var_item *items)
{
    rc_json_span vars, k, v;
    rc_json_iter it;
    if (!rc_json_member(body, len, "vars", &vars) || vars.type != RC_JSON_OBJECT ||
        !rc_json_iter_init(&it, vars.p, vars.len))
        return -1;
    int n = 0;
    while (rc_json_iter_next(&it, &k, &v)) {
        if (n == MAX_VARS) return -2;
        items[n++] = (var_item){.name = k, .value = v};
    }
    return n;
}

/* ---- POST /v1/rooms/{room}/devices/{device}/client-variables ------------------------------ */

static void client_variables(rc_conn *c, const rc_http_ctx *x, rc_netsync *ns, const char *room,
                             size_t room_len, const char *dev, size_t dev_len, vars_req *q)
{
    rc_json_top top;
    int jr = rc_json_scan(x->body, x->body_len, 0, &top);
    if (jr != RC_JSON_OK) {
        rc_http_error(c, x, 422, NULL, false, "the body must be a JSON object {\"vars\":{...}}");
        return;
    }
    int n = parse_vars(x->body, x->body_len, q->items);
    if (n == -1) {
        rc_http_error(c, x, 422, NULL, false, "\"vars\" must be an object of name: string");
        return;
    }
    if (n == -2) {
        rc_http_error(c, x, 422, NULL, false, "at most %d variables per request", MAX_VARS);
        return;
    }
    if (n == 0) {
        rc_http_error(c, x, 400, NULL, false, "\"vars\" is empty");
        return;
    }
    /* Validate everything before applying anything (422 leaves no partial effect). */
    for (int i = 0; i < n; i++) {
        long nl = rc_json_unescape(q->items[i].name.p, q->items[i].name.len, q->names[i],
                                   NSY_STR8_MAX);
        if (nl <= 0 || nsy_utf8_prefix((const uint8_t *)q->names[i], (size_t)nl, NAME_MAX_CP) !=
                           (size_t)nl) {
            rc_http_error(c, x, 422, NULL, false,
                          "variable %d: a name is 1 to %d characters", i + 1, NAME_MAX_CP);
            return;
        }
        q->name_lens[i] = nl;
        long vl = q->items[i].value.type == RC_JSON_STRING
                      ? rc_json_unescape(q->items[i].value.p, q->items[i].value.len, q->value,
                                         sizeof(q->value))
                      : -1;
        if (vl < 0 || nsy_utf8_prefix((const uint8_t *)q->value, (size_t)vl, VALUE_MAX_CP) !=
                          (size_t)vl) {
            rc_http_error(c, x, 422, NULL, false,
                          "variable '%.*s': the value must be a string of at most %d characters",
                          (int)nl, q->names[i], VALUE_MAX_CP);
            return;
        }
    }
    const nsy_room *r = rc_netsync_room(ns, room, room_len);
    long di = r ? nsy_room_find_device(r, (const uint8_t *)dev, dev_len) : -1;
    bool known = di >= 0;
    if (!known && rc_netsync_queued(ns, room, room_len, dev, dev_len) + (size_t)n >
                      RC_NETSYNC_QUEUE_PER_DEVICE) {
        rc_http_error(c, x, 409, NULL, false,
                      "device would have more than %d queued variables (it has not joined the "
                      "room yet)", RC_NETSYNC_QUEUE_PER_DEVICE);
        return;
    }
    rc_textbuf t = {0};
    rc_textbuf_printf(&t, "{\"roomId\":");
    rc_textbuf_json_string(&t, room, room_len);
    rc_textbuf_printf(&t, ",\"deviceId\":");
    rc_textbuf_json_string(&t, dev, dev_len);
    if (known)
        rc_textbuf_printf(&t, ",\"mapping\":{\"clientNo\":%u},\"result\":{", r->dev[di].no);
    else
        rc_textbuf_printf(&t, ",\"mapping\":{\"clientNo\":null},\"result\":{");
    for (int i = 0; i < n; i++) {
        long vl = rc_json_unescape(q->items[i].value.p, q->items[i].value.len, q->value,
                                   sizeof(q->value));
        const char *state = "failed";
        if (known) {
            enum rc_netsync_nv res = rc_netsync_set_client_var(
                ns, room, room_len, dev, dev_len, q->names[i], (size_t)q->name_lens[i], q->value,
                (size_t)vl);
            if (res == RC_NETSYNC_NV_APPLIED || res == RC_NETSYNC_NV_UNCHANGED) state = "applied";
        } else if (rc_netsync_queue_client_var(ns, room, room_len, dev, dev_len, q->names[i],
                                               (size_t)q->name_lens[i], q->value, (size_t)vl) == 0) {
            state = "queued";
        }
        if (i) rc_textbuf_append(&t, ",", 1);
        rc_textbuf_json_string(&t, q->names[i], (size_t)q->name_lens[i]);
        rc_textbuf_printf(&t, ":{\"state\":\"%s\"}", state);
    }
    rc_textbuf_printf(&t, "}}\n");
    rc_http_respond_json(c, x, 200, &t);
}

/* /v1/rooms/{room}/devices/{device}/client-variables */
static void v1_routes(rc_server *srv, rc_conn *c, const rc_http_ctx *x, const char *rest, size_t rlen)
{
    rc_netsync *ns = srv->netsync;
    const char *slash = memchr(rest, '/', rlen);
    static const char mid[] = "/devices/", tail[] = "/client-variables";
    size_t rseg = slash ? (size_t)(slash - rest) : rlen;
    const char *after = rest + rseg;
    size_t alen = rlen - rseg;
    if (!slash || alen < sizeof(mid) - 1 || memcmp(after, mid, sizeof(mid) - 1) != 0) {
        rc_http_error(c, x, 404, NULL, false, "not found");
        return;
    }
    const char *dseg = after + sizeof(mid) - 1;
    size_t dlen_all = alen - (sizeof(mid) - 1);
    const char *dslash = memchr(dseg, '/', dlen_all);
    size_t dseg_len = dslash ? (size_t)(dslash - dseg) : dlen_all;
    if (!dslash || dlen_all - dseg_len != sizeof(tail) - 1 ||
        memcmp(dslash, tail, sizeof(tail) - 1) != 0) {
        rc_http_error(c, x, 404, NULL, false, "not found");
        return;
    }
    if (x->method != RC_HTTP_POST) {
        rc_http_error(c, x, 405, "Allow: POST\r\n", false, "method not allowed");
        return;
    }
    if (!ns) {
        rc_http_error(c, x, 503, NULL, false, "the NetSync transport is off (--no-netsync)");
        return;
    }
    char room[RC_ROOM_NAME_MAX + 1], dev[RC_ROOM_NAME_MAX + 1];
    long room_len = rc_api_decode_room(rest, rseg, room);
    long dev_len = rc_api_decode_room(dseg, dseg_len, dev);
    if (room_len < 0 || dev_len < 0) {
        rc_http_error(c, x, 422, NULL, false,
                      "room and device ids are 1 to 255 bytes of UTF-8, percent-encoded");
        return;
    }
    vars_req *q = malloc(sizeof(*q));
    if (!q) {
        rc_http_error(c, x, 500, NULL, false, "out of memory");
        return;
    }
    client_variables(c, x, ns, room, (size_t)room_len, dev, (size_t)dev_len, q);
    free(q);
}

/* ---- GET /api/netsync/rooms --------------------------------------------------------------- */

static void list_rooms(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    rc_netsync *ns = srv->netsync;
    uint64_t now = rc_loop_now(srv->loop);
    rc_textbuf t = {0};
    if (!ns) {
        rc_textbuf_printf(&t, "{\"enabled\":false,\"rooms\":[]}\n");
        rc_http_respond_json(c, x, 200, &t);
        return;
    }
    const rc_netsync_stats *st = rc_netsync_stats_of(ns);
    rc_textbuf_printf(&t,
                      "{\"enabled\":true,\"ports\":{\"router\":%u,\"pose\":%u,\"pub\":%u,"
                      "\"discovery\":%u},\"clients\":%llu,\"transformsIn\":%llu,"
                      "\"bytesOut\":%llu,\"unicastQueued\":%llu,\"rooms\":[",
                      rc_netsync_router_port(ns), rc_netsync_pose_port(ns),
                      rc_netsync_pub_port(ns), rc_netsync_discovery_port(ns),
                      (unsigned long long)st->clients, (unsigned long long)st->transforms_in,
                      (unsigned long long)st->bytes_out, (unsigned long long)st->unicast_queued);
    bool first = true;
    for (const nsy_room *r = rc_netsync_rooms(ns); r; r = r->next) {
        double age = now > r->created ? (double)(now - r->created) / 1e9 : 0;
        if (!first) rc_textbuf_append(&t, ",", 1);
        first = false;
        rc_textbuf_printf(&t, "{\"roomId\":");
        rc_textbuf_json_string(&t, (const char *)r->id, r->id_len);
        rc_textbuf_printf(&t,
                          ",\"clients\":%u,\"visible\":%u,\"transformsIn\":%llu,"
                          "\"broadcasts\":%llu,\"ageSec\":%.3f,"
                          "\"transformsPerSec\":%.1f,\"broadcastsPerSec\":%.1f,\"devices\":[",
                          r->nlive, r->nvisible, (unsigned long long)r->transforms_in,
                          (unsigned long long)r->bcasts, age,
                          age > 0 ? (double)r->transforms_in / age : 0.0,
                          age > 0 ? (double)r->bcasts / age : 0.0);
        for (uint32_t i = 0; i < r->ndev; i++) {
            const nsy_dev *d = &r->dev[i];
            if (i) rc_textbuf_append(&t, ",", 1);
            rc_textbuf_printf(&t, "{\"deviceId\":");
            rc_textbuf_json_string(&t, (const char *)d->id, d->id_len);
            rc_textbuf_printf(&t, ",\"clientNo\":%u,\"live\":%s,\"stealth\":%s}", d->no,
                              d->live ? "true" : "false", d->stealth ? "true" : "false");
        }
        rc_textbuf_printf(&t, "]}");
    }
    rc_textbuf_printf(&t, "]}\n");
    rc_http_respond_json(c, x, 200, &t);
}

/* ---- routing ------------------------------------------------------------------------------ */

bool rc_nshttp_handle(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    static const char v1[] = "/v1/rooms/";
    if (rc_http_path_is(x, "/api/netsync/rooms")) {
        if (x->method == RC_HTTP_GET || x->method == RC_HTTP_HEAD) list_rooms(srv, c, x);
        else rc_http_error(c, x, 405, "Allow: GET, HEAD\r\n", false, "method not allowed");
        return true;
    }
    if (x->path_len > sizeof(v1) - 1 && memcmp(x->path, v1, sizeof(v1) - 1) == 0) {
        v1_routes(srv, c, x, x->path + sizeof(v1) - 1, x->path_len - (sizeof(v1) - 1));
        return true;
    }
    return false;
}
