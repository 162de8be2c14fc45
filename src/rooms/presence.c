/* presence.c — presence events and batches; see presence.h. */
#include "rooms/presence.h"

#include <stdio.h>
#include <stdlib.h>

#include "codec/json.h"
#include "codec/textbuf.h"
#include "core/log.h"
#include "rooms/redispresence.h"
#include "rooms/wire.h"

/* A batch flushes early at this many gathered changes, so its memory stays bounded. */
#define BATCH_MAX 65536

struct change {
    uint64_t client_id;
    uint32_t seq;            /* order of the changes of one batch */
    uint8_t join;            /* 1 join, 0 leave */
};

typedef struct rc_presence_batch {
    rc_room *room;
    struct rc_presence_batch *prev, *next; /* rc_rooms.pbatches */
    struct change *ch;
    uint32_t n, cap;
} rc_presence_batch;

const char *rc_presence_reason_name(int reason)
{
    static const char *const names[RC_LEAVE__COUNT] = {
        [RC_LEAVE_DROPPED] = "dropped", [RC_LEAVE_CLOSED] = "closed", [RC_LEAVE_LEFT] = "left",
        [RC_LEAVE_KICKED] = "kicked", [RC_LEAVE_REPLACED] = "replaced", [RC_LEAVE_QUIET] = "closed",
    };
    return reason >= 0 && reason < RC_LEAVE__COUNT ? names[reason] : "dropped";
}

/* Queues json to every member that asked for presence, but `except`: encoded once per wire
 * format among them, as a broadcast is. */
static void tell(rc_rooms *t, rc_room *room, const rc_endpoint *except, const char *json,
                 size_t len)
{
    rc_msg *enc[RC_WIRE__COUNT] = {0};
    bool made[RC_WIRE__COUNT] = {0};
    for (uint32_t i = 0; i < room->nmembers; i++) {
        rc_member *mb = &room->members[i];
        if (!(mb->flags & RC_MEMBER_PRESENCE) || mb->ep == except) continue;
        if (!made[mb->wire]) {
            enc[mb->wire] = rc_wire_text(mb->wire, json, len);
            made[mb->wire] = true;
        }
        rc_endpoint_give(mb->ep, enc[mb->wire]);
        t->stats.presence_events++;
    }
    for (int w = 0; w < RC_WIRE__COUNT; w++)
        if (enc[w]) rc_msg_unref(enc[w]);
}

static void batch_free(rc_rooms *t, rc_presence_batch *b)
{
    if (b->prev) b->prev->next = b->next;
    else t->pbatches = b->next;
    if (b->next) b->next->prev = b->prev;
    b->room->pbatch = NULL;
    free(b->ch);
    free(b);
}

static int by_client(const void *a, const void *b)
{
    const struct change *x = a, *y = b;
    if (x->client_id != y->client_id) return x->client_id < y->client_id ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sends room's batch: the net effect of its changes. A member's changes alternate (it cannot
 * join twice without leaving), so an even number of them cancels out and an odd number has
 * the effect of the first. */
static void batch_send(rc_rooms *t, rc_presence_batch *b, const rc_endpoint *except)
{
    rc_room *room = b->room;
    if (room->npresence == 0 || b->n == 0) {
        batch_free(t, b);
        return;
    }
    qsort(b->ch, b->n, sizeof(*b->ch), by_client);
    rc_textbuf out = {0};
    rc_textbuf_printf(&out, "{\"type\":\"presence\",\"room\":%.*s,\"event\":\"batch\",\"joined\":[",
                      (int)room->json_len, room->json_name);
    for (int pass = 1; pass >= 0; pass--) {
        if (pass == 0) rc_textbuf_append(&out, "],\"left\":[", 10);
        bool first = true;
        for (uint32_t i = 0, j; i < b->n; i = j) {
            for (j = i + 1; j < b->n && b->ch[j].client_id == b->ch[i].client_id; j++) {}
            if ((j - i) % 2 == 0 || b->ch[i].join != pass) continue;
            rc_textbuf_printf(&out, "%s%llu", first ? "" : ",",
                              (unsigned long long)b->ch[i].client_id);
            first = false;
        }
    }
    rc_textbuf_printf(&out, "],\"member_count\":%u,\"after_msg_id\":%llu}",
                      room->nmembers + rc_redispresence_count(room),
                      (unsigned long long)room->last_msg_id);
    batch_free(t, b);
    if (out.failed) rc_warn("room '%s': out of memory for a presence batch", room->name);
    else tell(t, room, except, rc_buf_head(&out.buf), rc_buf_size(&out.buf));
    rc_textbuf_release(&out);
}

/* Gathers one change of a big room. A batch that fills up is sent at once, but not to a
 * member whose join filled it (`except`): that member is in the room already but has not been
 * sent its `joined` yet, and its member_count there counts what the batch says. */
static void gather(rc_rooms *t, rc_room *room, const rc_endpoint *except, uint64_t client_id,
                   bool join)
{
    rc_presence_batch *b = room->pbatch;
    if (!b) {
        if (!(b = calloc(1, sizeof(*b)))) return;
        b->room = room;
        b->next = t->pbatches;
        if (t->pbatches) t->pbatches->prev = b;
        t->pbatches = b;
        room->pbatch = b;
    }
    if (b->n == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : 16;
        struct change *ch = realloc(b->ch, cap * sizeof(*ch));
        if (!ch) return; /* that change is not told; member_count still is */
        b->ch = ch;
        b->cap = cap;
    }
    b->ch[b->n] = (struct change){.client_id = client_id, .seq = b->n, .join = join};
    if (++b->n >= BATCH_MAX) batch_send(t, b, join ? except : NULL);
}

/* One change of member client_id (with its `"user":...,` text, ulen bytes, on a join): gathered
 * in a room above the limit (`size` is the room's size, on every node, with the member in it),
 * else told at once, after what was gathered before, to every member but `except` (a local
 * member's own change). */
static void change(rc_rooms *t, rc_room *room, const rc_endpoint *except, uint64_t client_id,
                   const char *user, size_t ulen, bool join, const char *reason, uint32_t size)
{
    if (room->npresence == 0 && !room->pbatch) return;
    if (size > t->cfg.presence_limit) {
        gather(t, room, except, client_id, join);
        return;
    }
    if (room->pbatch) batch_send(t, room->pbatch, join ? except : NULL);
    if (room->npresence == 0) return;
    char out[192 + rc_json_escape_max(RC_ROOM_NAME_MAX) + 8 + rc_json_escape_max(RC_JWT_MAX_SUB)];
    int n;
    if (join)
        n = snprintf(out, sizeof(out),
                     "{\"type\":\"presence\",\"room\":%.*s,\"event\":\"join\",\"client_id\":%llu,"
                     "%.*s\"after_msg_id\":%llu}",
                     (int)room->json_len, room->json_name, (unsigned long long)client_id,
                     (int)ulen, user, (unsigned long long)room->last_msg_id);
    else
        n = snprintf(out, sizeof(out),
                     "{\"type\":\"presence\",\"room\":%.*s,\"event\":\"leave\",\"client_id\":%llu,"
                     "\"reason\":\"%s\",\"after_msg_id\":%llu}",
                     (int)room->json_len, room->json_name, (unsigned long long)client_id,
                     reason, (unsigned long long)room->last_msg_id);
    if (n > 0 && (size_t)n < sizeof(out)) tell(t, room, except, out, (size_t)n);
}

void rc_presence_join(rc_rooms *t, rc_room *room, const rc_endpoint *ep)
{
    /* an authenticated member's user comes with its join (ident.h) */
    bool user = ep->auth == RC_IDENT_USER;
    change(t, room, ep, ep->client_id, user ? ep->ident->user_json : "",
           user ? ep->ident->user_json_len : 0, true, NULL,
           room->nmembers + rc_redispresence_count(room));
}

void rc_presence_leave(rc_rooms *t, rc_room *room, const rc_endpoint *ep, int reason)
{
    if (reason == RC_LEAVE_QUIET) return;
    change(t, room, ep, ep->client_id, NULL, 0, false, rc_presence_reason_name(reason),
           room->nmembers + 1 + rc_redispresence_count(room));
}

void rc_presence_remote(rc_rooms *t, rc_room *room, uint64_t client_id, const char *user,
                        size_t ulen, bool join, const char *reason)
{
    /* the mirror has already counted the change: a join is in it, a leave is not */
    uint32_t size = room->nmembers + rc_redispresence_count(room) + (join ? 0 : 1);
    change(t, room, NULL, client_id, user, ulen, join, reason, size);
}

void rc_presence_flush(rc_rooms *t)
{
    while (t->pbatches) batch_send(t, t->pbatches, NULL);
}

void rc_presence_room_gone(rc_rooms *t, rc_room *room)
{
    if (room->pbatch) batch_free(t, room->pbatch);
}
