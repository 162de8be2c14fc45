/* nshttp.c — the NetSync routes of roomcast's HTTP listeners; see nshttp.h and docs/netsync.md.
 *
 *   POST   /v1/rooms/{room}/devices/{device}/client-variables   {"vars"}: v0.6 bridge, v0.6 rooms
 *                                                               {"variables"}: v8, v8 rooms
 *   GET    /v1/rooms/{room}/devices/{device}/client-variables(/{name})   v8
 *   DELETE /v1/rooms/{room}/devices/{device}/client-variables(/{name})   v8
 *   POST   /v1/rooms/{room}/global-variables                              v8
 *   GET    /v1/rooms/{room}/global-variables(/{name})                     v8
 *   GET    /logs/export                       the reference's answer without log files
 *   GET    /                                  {"status":"ok"}, on --netsync-rest-port only
 *   GET    /api/netsync/rooms                 rooms, devices, rates (main port only)
 *
 * Everything answers synchronously on the loop, like every other route: a variable set
 * through HTTP is applied between two ZeroMQ messages, never concurrently with them.
 */
#include "app/nshttp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/api.h"
#include "app/server.h"
#include "codec/json.h"
#include "codec/textbuf.h"
#include "netsync/netsync.h"
#include "netsync/ns8room.h"

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

/* POST /v1/rooms/{room}/devices/{device}/client-variables with the v0.6 body {"vars":...}:
 * the v0.6 rooms, with roomcast's error shape as before protocol 8. */
static void v06_post(rc_server *srv, rc_conn *c, const rc_http_ctx *x, const char *rseg,
                     size_t rseg_len, const char *dseg, size_t dseg_len)
{
    rc_netsync *ns = srv->netsync;
    if (!ns) {
        rc_http_error(c, x, 503, NULL, false, "the NetSync transport is off (--no-netsync)");
        return;
    }
    char room[RC_ROOM_NAME_MAX + 1], dev[RC_ROOM_NAME_MAX + 1];
    long room_len = rc_api_decode_room(rseg, rseg_len, room);
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

/* ---- protocol 8: the reference's REST bridge (v8 spec §4.10) -------------------------------
 *
 * Bodies and statuses are the reference's (rest_bridge.py: FastAPI + pydantic v2), so a tool
 * written against NetSync's server reads the same JSON here: errors are {"detail":"why"},
 * validation errors {"detail":[{"type","loc","msg"(,"ctx")}]} with pydantic's types and
 * messages. The routes write protocol-8 rooms directly through ns8room.h: no internal stealth
 * client joins a room (the reference's RoomBridge does, for global variables). */

#define V8_MAX_ITEMS 1000        /* members of "variables" per request (beyond: 409) */
#define V8_NAME_BYTES NSR8_ID_MAX /* a name is a str8 on the wire */

typedef struct v8_item {
    rc_json_span key, value;     /* raw JSON literals (quotes included) */
    uint8_t name_len;            /* bytes of name */
    bool dup;                    /* a later member has the same name (Python's dict keeps the
                                    last value at the first position: we apply in order and
                                    list the name once) */
    char name[V8_NAME_BYTES + 1]; /* decoded name */
} v8_item;

typedef struct v8_req {
    int n;                       /* items used */
    v8_item items[V8_MAX_ITEMS];
    char value[4 * VALUE_MAX_CP + 1]; /* one decoded value at a time */
} v8_req;

/* detail answers {"detail":"<fmt...>"} with status, counted as an error (rc_http_error_body). */
static void detail(rc_conn *c, const rc_http_ctx *x, int status, const char *extra,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void detail(rc_conn *c, const rc_http_ctx *x, int status, const char *extra,
                   const char *fmt, ...)
{
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    int wl = vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (wl < 0) wl = 0;
    if ((size_t)wl >= sizeof(why)) wl = sizeof(why) - 1;
    rc_textbuf t = {0};
    rc_textbuf_printf(&t, "{\"detail\":");
    rc_textbuf_json_string(&t, why, (size_t)wl);
    rc_textbuf_printf(&t, "}");
    if (t.failed) rc_http_error(c, x, 500, NULL, false, "out of memory");
    else rc_http_error_body(c, x, status, extra, rc_buf_head(&t.buf), rc_buf_size(&t.buf));
    rc_textbuf_release(&t);
}

static void not_found(rc_conn *c, const rc_http_ctx *x)
{
    detail(c, x, 404, NULL, "Not Found");
}

static void method_not_allowed(rc_conn *c, const rc_http_ctx *x, const char *allow)
{
    detail(c, x, 405, allow, "Method Not Allowed");
}

/* One pydantic validation error, appended to the "detail" list being built in t. loc is the
 * JSON text of the location list without brackets; raw_key, when set, is a raw JSON string
 * literal appended to it. */
static void verr(rc_textbuf *t, int *nerr, const char *type, const char *loc,
                 const rc_json_span *raw_key, const char *tail, const char *msg, const char *ctx)
{
    rc_textbuf_printf(t, "%s{\"type\":\"%s\",\"loc\":[%s", (*nerr)++ ? "," : "", type, loc);
    if (raw_key) {
        rc_textbuf_append(t, ",", 1);
        rc_textbuf_append(t, raw_key->p, raw_key->len);
    }
    rc_textbuf_printf(t, "%s],\"msg\":\"%s\"", tail ? tail : "", msg);
    if (ctx) rc_textbuf_printf(t, ",\"ctx\":%s", ctx);
    rc_textbuf_append(t, "}", 1);
}

/* Answers 422 with the validation errors of t (the list is closed here). */
static void validation_failed(rc_conn *c, const rc_http_ctx *x, rc_textbuf *t)
{
    rc_textbuf_printf(t, "]}");
    if (t->failed) rc_http_error(c, x, 500, NULL, false, "out of memory");
    else rc_http_error_body(c, x, 422, NULL, rc_buf_head(&t->buf), rc_buf_size(&t->buf));
    rc_textbuf_release(t);
}

/* One error alone: 422 {"detail":[{type, loc, msg}]}. */
static void invalid1(rc_conn *c, const rc_http_ctx *x, const char *type, const char *loc,
                     const char *msg)
{
    rc_textbuf t = {0};
    int nerr = 0;
    rc_textbuf_printf(&t, "{\"detail\":[");
    verr(&t, &nerr, type, loc, NULL, NULL, msg, NULL);
    validation_failed(c, x, &t);
}

/* code points of valid UTF-8 s[0..n) */
static size_t cps(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* parse_upsert reads an UpsertBody ({"variables": {name: value}}) into q as pydantic would
 * validate it. Returns the number of members (0: absent or empty -> the caller's 400), or -1
 * after answering (422 for bad JSON/types/lengths, 409 beyond V8_MAX_ITEMS). */
static int parse_upsert(rc_conn *c, const rc_http_ctx *x, v8_req *q)
{
    rc_json_top top;
    if (x->body_len == 0) {
        invalid1(c, x, "missing", "\"body\"", "Field required");
        return -1;
    }
    int jr = rc_json_scan(x->body, x->body_len, 0, &top);
    if (jr == RC_JSON_ENOTOBJECT) {
        invalid1(c, x, "model_attributes_type", "\"body\"",
                 "Input should be a valid dictionary or object to extract fields from");
        return -1;
    }
    if (jr != RC_JSON_OK) {
        invalid1(c, x, "json_invalid", "\"body\",0", "JSON decode error");
        return -1;
    }
    rc_json_span vars, k, v;
    rc_json_iter it;
    if (!rc_json_member(x->body, x->body_len, "variables", &vars)) return 0; /* default {} */
    if (vars.type != RC_JSON_OBJECT || !rc_json_iter_init(&it, vars.p, vars.len)) {
        invalid1(c, x, "dict_type", "\"body\",\"variables\"", "Input should be a valid dictionary");
        return -1;
    }
    rc_textbuf t = {0};
    int nerr = 0;
    rc_textbuf_printf(&t, "{\"detail\":[");
    q->n = 0;
    while (rc_json_iter_next(&it, &k, &v)) {
        if (q->n == V8_MAX_ITEMS) {
            rc_textbuf_release(&t);
            detail(c, x, 409, NULL, "Too many variables in one request (> %d)", V8_MAX_ITEMS);
            return -1;
        }
        v8_item *e = &q->items[q->n++];
        *e = (v8_item){.key = k, .value = v};
        static const char loc[] = "\"body\",\"variables\"";
        long nl = rc_json_unescape(k.p, k.len, e->name, sizeof(e->name) - 1);
        if (nl < 0) {
            verr(&t, &nerr, "string_too_long", loc, &k, ",\"[key]\"",
                 "String should have at most 255 bytes (a str8 on the wire)",
                 "{\"max_length\":255}");
        } else if (nl == 0) {
            verr(&t, &nerr, "string_too_short", loc, &k, ",\"[key]\"",
                 "String should have at least 1 character", "{\"min_length\":1}");
        } else if (cps(e->name, (size_t)nl) > NAME_MAX_CP) {
            verr(&t, &nerr, "string_too_long", loc, &k, ",\"[key]\"",
                 "String should have at most 64 characters", "{\"max_length\":64}");
        }
        e->name_len = nl > 0 ? (uint8_t)nl : 0;
        if (v.type != RC_JSON_STRING) {
            verr(&t, &nerr, "string_type", loc, &k, NULL, "Input should be a valid string", NULL);
            continue;
        }
        long vl = rc_json_unescape(v.p, v.len, q->value, sizeof(q->value) - 1);
        if (vl < 0 || cps(q->value, (size_t)vl) > VALUE_MAX_CP)
            verr(&t, &nerr, "string_too_long", loc, &k, NULL,
                 "String should have at most 1024 characters", "{\"max_length\":1024}");
    }
    if (nerr) {
        validation_failed(c, x, &t);
        return -1;
    }
    rc_textbuf_release(&t);
    for (int i = 0; i < q->n; i++)
        for (int j = i + 1; j < q->n && !q->items[i].dup; j++)
            q->items[i].dup = q->items[i].name_len == q->items[j].name_len &&
                              memcmp(q->items[i].name, q->items[j].name,
                                     q->items[i].name_len) == 0;
    return q->n;
}

/* The number of names of q that table t does not hold yet (each name once). */
static uint32_t new_names(const v8_req *q, const nsr8_vtab *t)
{
    uint32_t k = 0;
    for (int i = 0; i < q->n; i++)
        if (!q->items[i].dup &&
            !nsr8_var_find(t, (const uint8_t *)q->items[i].name, q->items[i].name_len))
            k++;
    return k;
}

/* The value of item i, decoded into q->value (validated by parse_upsert). */
static size_t item_value(v8_req *q, int i)
{
    long vl = rc_json_unescape(q->items[i].value.p, q->items[i].value.len, q->value,
                               sizeof(q->value) - 1);
    return vl > 0 ? (size_t)vl : 0;
}

static void put_client_no(rc_textbuf *t, uint16_t no)
{
    if (no) rc_textbuf_printf(t, "%u", no);
    else rc_textbuf_printf(t, "null");
}

/* {name: value, ...} of a table (NULL: {}) */
static void put_vars(rc_textbuf *t, const nsr8_vtab *vt)
{
    rc_textbuf_append(t, "{", 1);
    for (uint32_t i = 0; vt && i < vt->n; i++) {
        const nsr8_var *v = &vt->v[i];
        if (i) rc_textbuf_append(t, ",", 1);
        rc_textbuf_json_string(t, (const char *)v->name, v->name_len);
        rc_textbuf_append(t, ":", 1);
        rc_textbuf_json_string(t, v->value ? (const char *)v->value : "", v->value_len);
    }
    rc_textbuf_append(t, "}", 1);
}

/* What a route addresses, decoded from its path. */
typedef struct v8_target {
    char room[RC_ROOM_NAME_MAX + 1], dev[RC_ROOM_NAME_MAX + 1], name[RC_ROOM_NAME_MAX + 1];
    size_t room_len, dev_len, name_len;
    bool has_dev, has_name;      /* /devices/{device}/..., .../{name} */
    uint64_t now;                /* loop time of the request, ns */
} v8_target;

/* `"result":{name:{"state":state},...}}` for the names of a POST (each once), closing the
 * response object. */
static void result_json(rc_textbuf *t, const v8_req *q, int n, const char *state)
{
    rc_textbuf_printf(t, "\"result\":{");
    bool first = true;
    for (int i = 0; i < n; i++) {
        if (q->items[i].dup) continue;
        if (!first) rc_textbuf_append(t, ",", 1);
        first = false;
        rc_textbuf_json_string(t, q->items[i].name, q->items[i].name_len);
        rc_textbuf_printf(t, ":{\"state\":\"%s\"}", state);
    }
    rc_textbuf_printf(t, "}}");
}

/* POST .../client-variables with {"variables":{...}}: every name is validated and the limit
 * checked before anything is written (the reference's 409 leaves no partial effect either). */
static void v8_client_post(rc_conn *c, const rc_http_ctx *x, rc_netsync *ns, const v8_target *g)
{
    v8_req *q = malloc(sizeof(*q));
    if (!q) {
        rc_http_error(c, x, 500, NULL, false, "out of memory");
        return;
    }
    int n = parse_upsert(c, x, q);
    nsr8_rooms *rs = rc_netsync_rooms8(ns);
    const uint8_t *room = (const uint8_t *)g->room, *dev = (const uint8_t *)g->dev;
    if (n == 0) {
        detail(c, x, 400, NULL, "variables must not be empty");
    } else if (n > 0) {
        const nsr8_vtab *cur = nsr8_cvars(rs, room, g->room_len, dev, g->dev_len);
        if ((cur ? cur->n : 0) + new_names(q, cur) > rs->p.max_client_vars) {
            detail(c, x, 409, NULL, "Too many client variables (> %u) for device %s",
                   rs->p.max_client_vars, g->dev);
            free(q);
            return;
        }
        uint64_t now = g->now;
        bool failed = false;
        for (int i = 0; i < n && !failed; i++) {
            size_t vl = item_value(q, i);
            enum nsr8_nv_result r =
                nsr8_cvar_set(rs, room, g->room_len, dev, g->dev_len,
                              (const uint8_t *)q->items[i].name, q->items[i].name_len,
                              (const uint8_t *)q->value, vl, now);
            failed = r == NSR8_NV_NOMEM || r == NSR8_NV_BAD || r == NSR8_NV_LIMIT;
        }
        /* One CLIENT_VAR_SYNC for the batch, when the device has a number and something
         * changed (the reference's _broadcast_client_var_sync after its loop). */
        uint16_t no = nsr8_cvar_commit(rs, room, g->room_len, dev, g->dev_len);
        rc_netsync_rooms8_changed(ns);
        if (failed) {
            rc_http_error(c, x, 500, NULL, false, "out of memory");
        } else {
            rc_textbuf t = {0};
            rc_textbuf_printf(&t, "{\"roomId\":");
            rc_textbuf_json_string(&t, g->room, g->room_len);
            rc_textbuf_printf(&t, ",\"deviceId\":");
            rc_textbuf_json_string(&t, g->dev, g->dev_len);
            rc_textbuf_printf(&t, ",\"mapping\":{\"clientNo\":");
            put_client_no(&t, no);
            rc_textbuf_printf(&t, "},");
            result_json(&t, q, n, no ? "applied" : "queued");
            rc_http_respond_json(c, x, 200, &t);
        }
    }
    free(q);
}

/* POST .../global-variables: written as the operator (lastWriter 0); each change is a
 * GLOBAL_VAR_SYNC to the room at once. Always "applied": there is no bridge client whose
 * connection could delay it (the reference answers "queued" until its RoomBridge is in). */
static void v8_global_post(rc_conn *c, const rc_http_ctx *x, rc_netsync *ns, const v8_target *g)
{
    v8_req *q = malloc(sizeof(*q));
    if (!q) {
        rc_http_error(c, x, 500, NULL, false, "out of memory");
        return;
    }
    int n = parse_upsert(c, x, q);
    nsr8_rooms *rs = rc_netsync_rooms8(ns);
    const uint8_t *room = (const uint8_t *)g->room;
    if (n == 0) {
        detail(c, x, 400, NULL, "variables must not be empty");
    } else if (n > 0) {
        const nsr8_vtab *cur = nsr8_gvars(rs, room, g->room_len);
        if ((cur ? cur->n : 0) + new_names(q, cur) > rs->p.max_global_vars) {
            detail(c, x, 409, NULL, "Too many global variables (> %u) for room %s",
                   rs->p.max_global_vars, g->room);
            free(q);
            return;
        }
        uint64_t now = g->now;
        bool failed = false;
        for (int i = 0; i < n && !failed; i++) {
            size_t vl = item_value(q, i);
            enum nsr8_nv_result r = nsr8_gvar_set(rs, room, g->room_len,
                                                  (const uint8_t *)q->items[i].name,
                                                  q->items[i].name_len,
                                                  (const uint8_t *)q->value, vl, now);
            failed = r == NSR8_NV_NOMEM || r == NSR8_NV_BAD || r == NSR8_NV_LIMIT;
        }
        nsr8_gvar_commit(rs, room, g->room_len); /* one GLOBAL_VAR_SYNC for the batch */
        rc_netsync_rooms8_changed(ns);
        if (failed) {
            rc_http_error(c, x, 500, NULL, false, "out of memory");
        } else {
            rc_textbuf t = {0};
            rc_textbuf_printf(&t, "{\"roomId\":");
            rc_textbuf_json_string(&t, g->room, g->room_len);
            rc_textbuf_printf(&t, ",");
            result_json(&t, q, n, "applied");
            rc_http_respond_json(c, x, 200, &t);
        }
    }
    free(q);
}

/* GET/DELETE .../client-variables(/{name}) */
static void v8_client_read(rc_conn *c, const rc_http_ctx *x, rc_netsync *ns, const v8_target *g)
{
    nsr8_rooms *rs = rc_netsync_rooms8(ns);
    const uint8_t *room = (const uint8_t *)g->room, *dev = (const uint8_t *)g->dev;
    rc_textbuf t = {0};
    if (x->method == RC_HTTP_DELETE) {
        unsigned k = nsr8_cvar_delete(rs, room, g->room_len, dev, g->dev_len,
                                      g->has_name ? (const uint8_t *)g->name : NULL,
                                      g->name_len);
        rc_netsync_rooms8_changed(ns);
        rc_textbuf_printf(&t, "{\"clientNo\":");
        put_client_no(&t, nsr8_dev_number(rs, room, g->room_len, dev, g->dev_len));
        rc_textbuf_printf(&t, ",\"deletedCount\":%u}", k);
        rc_http_respond_json(c, x, 200, &t);
        return;
    }
    const nsr8_vtab *vt = nsr8_cvars(rs, room, g->room_len, dev, g->dev_len);
    const nsr8_var *v = NULL;
    if (g->has_name && !(v = nsr8_var_find(vt, (const uint8_t *)g->name, g->name_len))) {
        detail(c, x, 404, NULL, "Client variable '%s' not found for device '%s'", g->name,
               g->dev);
        return;
    }
    rc_textbuf_printf(&t, "{\"clientNo\":");
    put_client_no(&t, nsr8_dev_number(rs, room, g->room_len, dev, g->dev_len));
    if (v) {
        rc_textbuf_printf(&t, ",\"value\":");
        rc_textbuf_json_string(&t, v->value ? (const char *)v->value : "", v->value_len);
    } else {
        rc_textbuf_printf(&t, ",\"variables\":");
        put_vars(&t, vt);
    }
    rc_textbuf_append(&t, "}", 1);
    rc_http_respond_json(c, x, 200, &t);
}

/* GET .../global-variables(/{name}) */
static void v8_global_read(rc_conn *c, const rc_http_ctx *x, rc_netsync *ns, const v8_target *g)
{
    const nsr8_vtab *vt = nsr8_gvars(rc_netsync_rooms8(ns), (const uint8_t *)g->room,
                                     g->room_len);
    rc_textbuf t = {0};
    if (g->has_name) {
        const nsr8_var *v = nsr8_var_find(vt, (const uint8_t *)g->name, g->name_len);
        if (!v) {
            detail(c, x, 404, NULL, "Global variable '%s' not found", g->name);
            return;
        }
        rc_textbuf_printf(&t, "{\"value\":");
        rc_textbuf_json_string(&t, v->value ? (const char *)v->value : "", v->value_len);
        rc_textbuf_append(&t, "}", 1);
    } else {
        rc_textbuf_printf(&t, "{\"variables\":");
        put_vars(&t, vt);
        rc_textbuf_append(&t, "}", 1);
    }
    rc_http_respond_json(c, x, 200, &t);
}

/* Is body the v0.6 bridge's {"vars":{...}} (and not the current {"variables":{...}})? Both
 * generations POST to the same path; the body tells them apart (v8 spec §8). */
static bool v06_body(const rc_http_ctx *x)
{
    rc_json_top top;
    rc_json_span s;
    return rc_json_scan(x->body, x->body_len, 0, &top) == RC_JSON_OK &&
           rc_json_member(x->body, x->body_len, "vars", &s) &&
           !rc_json_member(x->body, x->body_len, "variables", &s);
}

/* Splits p[0..n) at '/' into at most max segments; returns the count, or -1 when there are
 * more or one is empty (Starlette's {param} matches [^/]+, so such paths are 404 there too). */
static int split(const char *p, size_t n, const char **seg, size_t *len, int max)
{
    int k = 0;
    for (;;) {
        const char *e = memchr(p, '/', n);
        size_t l = e ? (size_t)(e - p) : n;
        if (l == 0 || k == max) return -1;
        seg[k] = p;
        len[k++] = l;
        if (!e) return k;
        n -= l + 1;
        p = e + 1;
    }
}

static bool seg_is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* /v1/rooms/{room}/devices/{device}/client-variables(/{name}) and
 * /v1/rooms/{room}/global-variables(/{name}); rest is what follows "/v1/rooms/". */
static void v1_routes(rc_server *srv, rc_conn *c, const rc_http_ctx *x, const char *rest,
                      size_t rlen)
{
    const char *seg[5];
    size_t len[5];
    int k = split(rest, rlen, seg, len, 5);
    v8_target *g = calloc(1, sizeof(*g));
    if (!g) {
        rc_http_error(c, x, 500, NULL, false, "out of memory");
        return;
    }
    bool global = (k == 2 || k == 3) && seg_is(seg[1], len[1], "global-variables");
    bool client = (k == 4 || k == 5) && seg_is(seg[1], len[1], "devices") &&
                  seg_is(seg[3], len[3], "client-variables");
    g->has_dev = client;
    g->now = rc_loop_now(srv->loop);
    g->has_name = (global && k == 3) || (client && k == 5);
    const char *allow = !client ? (g->has_name ? "Allow: GET\r\n" : "Allow: GET, POST\r\n")
                        : g->has_name ? "Allow: GET, DELETE\r\n"
                                      : "Allow: GET, POST, DELETE\r\n";
    bool get = x->method == RC_HTTP_GET || x->method == RC_HTTP_HEAD;
    bool ok_method = get || (x->method == RC_HTTP_POST && !g->has_name) ||
                     (x->method == RC_HTTP_DELETE && client);
    if (!global && !client) {
        not_found(c, x);
    } else if (!ok_method) {
        method_not_allowed(c, x, allow);
    } else if (client && !g->has_name && x->method == RC_HTTP_POST && v06_body(x)) {
        v06_post(srv, c, x, seg[0], len[0], seg[2], len[2]); /* the v0.6 bridge, v0.6 rooms */
    } else if (!srv->netsync) {
        detail(c, x, 503, NULL, "the NetSync transport is off (--no-netsync)");
    } else {
        long rl = rc_api_decode_room(seg[0], len[0], g->room);
        long dl = client ? rc_api_decode_room(seg[2], len[2], g->dev) : 0;
        long nl = g->has_name ? rc_api_decode_room(seg[k - 1], len[k - 1], g->name) : 0;
        if (rl < 0 || dl < 0) {
            invalid1(c, x, "string_invalid", rl < 0 ? "\"path\",\"room_id\""
                                                    : "\"path\",\"device_id\"",
                     "room and device ids are 1 to 255 bytes of UTF-8, percent-encoded");
        } else if (nl < 0 || (g->has_name && cps(g->name, (size_t)nl) > NAME_MAX_CP)) {
            invalid1(c, x, "string_too_long", "\"path\",\"name\"",
                     "String should have at most 64 characters");
        } else {
            g->room_len = (size_t)rl;
            g->dev_len = (size_t)dl;
            g->name_len = (size_t)nl;
            if (client && x->method == RC_HTTP_POST) v8_client_post(c, x, srv->netsync, g);
            else if (client) v8_client_read(c, x, srv->netsync, g);
            else if (x->method == RC_HTTP_POST) v8_global_post(c, x, srv->netsync, g);
            else v8_global_read(c, x, srv->netsync, g);
        }
    }
    free(g);
}

/* ---- GET /logs/export -----------------------------------------------------------------------
 * The reference streams its JSONL log files (--log-dir) as NDJSON. roomcast keeps no log
 * files (it logs to stderr, for the service manager to keep), so it answers as the reference
 * does without --log-dir: after checking the required query parameters (422 without `from` or
 * `to`), 404 {"detail":"file logging is not enabled"}. */

static bool has_param(const rc_http_ctx *x, const char *name)
{
    size_t nl = strlen(name);
    const char *p = x->query, *e = x->query + x->query_len;
    while (p < e) {
        const char *amp = memchr(p, '&', (size_t)(e - p));
        const char *end = amp ? amp : e;
        if ((size_t)(end - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') return true;
        p = end + 1;
    }
    return false;
}

static void logs_export(rc_conn *c, const rc_http_ctx *x)
{
    if (x->method != RC_HTTP_GET && x->method != RC_HTTP_HEAD) {
        method_not_allowed(c, x, "Allow: GET\r\n");
        return;
    }
    bool from = has_param(x, "from"), to = has_param(x, "to");
    if (!from || !to) {
        rc_textbuf t = {0};
        int nerr = 0;
        rc_textbuf_printf(&t, "{\"detail\":[");
        if (!from) verr(&t, &nerr, "missing", "\"query\",\"from\"", NULL, NULL, "Field required", NULL);
        if (!to) verr(&t, &nerr, "missing", "\"query\",\"to\"", NULL, NULL, "Field required", NULL);
        validation_failed(c, x, &t);
        return;
    }
    detail(c, x, 404, NULL, "file logging is not enabled");
}

/* ---- GET /api/netsync/rooms --------------------------------------------------------------- */

/* One entry of a room's "devices" list (i: its index, for the comma). */
static void device_json(rc_textbuf *t, uint32_t i, const uint8_t *id, size_t id_len,
                        uint16_t no, bool live, bool stealth)
{
    if (i) rc_textbuf_append(t, ",", 1);
    rc_textbuf_printf(t, "{\"deviceId\":");
    rc_textbuf_json_string(t, (const char *)id, id_len);
    rc_textbuf_printf(t, ",\"clientNo\":%u,\"live\":%s,\"stealth\":%s}", no,
                      live ? "true" : "false", stealth ? "true" : "false");
}

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
                          ",\"protocol\":6,\"clients\":%u,\"visible\":%u,\"transformsIn\":%llu,"
                          "\"broadcasts\":%llu,\"ageSec\":%.3f,"
                          "\"transformsPerSec\":%.1f,\"broadcastsPerSec\":%.1f,\"devices\":[",
                          r->nlive, r->nvisible, (unsigned long long)r->transforms_in,
                          (unsigned long long)r->bcasts, age,
                          age > 0 ? (double)r->transforms_in / age : 0.0,
                          age > 0 ? (double)r->bcasts / age : 0.0);
        for (uint32_t i = 0; i < r->ndev; i++)
            device_json(&t, i, r->dev[i].id, r->dev[i].id_len, r->dev[i].no, r->dev[i].live,
                        r->dev[i].stealth);
        rc_textbuf_printf(&t, "]}");
    }
    /* protocol 8's rooms, in the same list (a room id is used by one generation at a time) */
    for (const nsr8_room *r = rc_netsync_rooms8(ns)->head; r; r = r->next) {
        double age = now > r->created ? (double)(now - r->created) / 1e9 : 0;
        uint32_t visible = 0;
        for (uint32_t i = 0; i < r->ndev; i++)
            visible += r->dev[i].present && !r->dev[i].stealth && r->dev[i].has_pose;
        if (!first) rc_textbuf_append(&t, ",", 1);
        first = false;
        rc_textbuf_printf(&t, "{\"roomId\":");
        rc_textbuf_json_string(&t, (const char *)r->id, r->id_len);
        rc_textbuf_printf(&t,
                          ",\"protocol\":8,\"clients\":%u,\"visible\":%u,\"posesIn\":%llu,"
                          "\"broadcasts\":%llu,\"objects\":%u,\"ageSec\":%.3f,"
                          "\"posesPerSec\":%.1f,\"broadcastsPerSec\":%.1f,\"devices\":[",
                          r->npresent, visible, (unsigned long long)r->poses_in,
                          (unsigned long long)r->pose_bcasts, r->nobj, age,
                          age > 0 ? (double)r->poses_in / age : 0.0,
                          age > 0 ? (double)r->pose_bcasts / age : 0.0);
        for (uint32_t i = 0; i < r->ndev; i++)
            device_json(&t, i, r->dev[i].id, r->dev[i].id_len, r->dev[i].no, r->dev[i].present,
                        r->dev[i].stealth);
        rc_textbuf_printf(&t, "]}");
    }
    rc_textbuf_printf(&t, "]}\n");
    rc_http_respond_json(c, x, 200, &t);
}

/* ---- routing ------------------------------------------------------------------------------ */

bool rc_nshttp_is_bridge(const rc_http_ctx *x)
{
    return (x->path_len >= 4 && memcmp(x->path, "/v1/", 4) == 0) ||
           rc_http_path_is(x, "/logs/export");
}

bool rc_nshttp_handle(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    static const char v1[] = "/v1/rooms/";
    if (rc_http_path_is(x, "/api/netsync/rooms")) {
        if (x->method == RC_HTTP_GET || x->method == RC_HTTP_HEAD) list_rooms(srv, c, x);
        else rc_http_error(c, x, 405, "Allow: GET, HEAD\r\n", false, "method not allowed");
        return true;
    }
    if (!rc_nshttp_is_bridge(x)) return false;
    if (rc_http_path_is(x, "/logs/export"))
        logs_export(c, x);
    else if (x->path_len > sizeof(v1) - 1 && memcmp(x->path, v1, sizeof(v1) - 1) == 0)
        v1_routes(srv, c, x, x->path + sizeof(v1) - 1, x->path_len - (sizeof(v1) - 1));
    else
        not_found(c, x); /* /v1/ is the bridge's: its 404 shape */
    return true;
}

void rc_nshttp_rest_request(rc_server *srv, rc_conn *c, const rc_http_ctx *x)
{
    if (rc_http_path_is(x, "/") && !x->upgrade) {
        if (x->method != RC_HTTP_GET && x->method != RC_HTTP_HEAD) {
            method_not_allowed(c, x, "Allow: GET\r\n");
            return;
        }
        static const char ok[] = "{\"status\":\"ok\"}";
        rc_http_respond(c, x, 200, "application/json", NULL, ok, sizeof(ok) - 1);
        return;
    }
    if (x->upgrade || !rc_nshttp_is_bridge(x) || !rc_nshttp_handle(srv, c, x)) not_found(c, x);
}
