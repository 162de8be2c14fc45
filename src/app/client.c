/* client.c — room clients over stream connections; see client.h. */
#include "app/client.h"

#include "app/api.h"

#include <stdlib.h>
#include <string.h>

#include "app/api.h"
#include "app/clapi.h"
#include "app/nsws.h"
#include "app/server.h"
#include "app/services.h"
#include "codec/json.h"
#include "codec/wsframe.h"
#include "core/log.h"
#include "rooms/redisrooms.h"
#include "rooms/roomproto.h"
#include "rooms/wire.h"
#include "transport/tcp.h"
#include "transport/ws.h"

/* Once per recipient of every broadcast: one queue push (rc_conn_send is inline). */
static void deliver(rc_endpoint *ep, rc_msg *m)
{
    rc_conn_send(&rc_client_of_ep(ep)->conn, m);
}

static void replay(rc_endpoint *ep, rc_msg *m)
{
    rc_conn_send_replay(&rc_client_of_ep(ep)->conn, m);
}

static void lost(rc_endpoint *ep)
{
    rc_conn_cut(&rc_client_of_ep(ep)->conn);
}

/* The room layer ends a client for being kicked (1008: the client did nothing wrong at the
 * protocol level, so its close is still read) or for running out of memory (1011: failed). */
static void close_ep(rc_endpoint *ep, uint16_t code, const char *reason)
{
    rc_conn_end(&rc_client_of_ep(ep)->conn, code, reason, code == RC_WS_CLOSE_INTERNAL);
}

static long find(rc_endpoint *ep, uint64_t ckey, uint8_t mark)
{
    rc_conn *c = &rc_client_of_ep(ep)->conn;
    return c->state == RC_CONN_OPEN ? rc_outq_find(&c->out, ckey, mark) : -1;
}

static rc_msg *at(rc_endpoint *ep, long pos)
{
    return rc_outq_at(&rc_client_of_ep(ep)->conn.out, pos);
}

static void set(rc_endpoint *ep, long pos, rc_msg *m)
{
    rc_outq_set(&rc_client_of_ep(ep)->conn.out, pos, m);
}

static const rc_endpoint_ops client_ops = {.deliver = deliver, .replay = replay, .lost = lost,
                                           .close = close_ep, .find = find, .at = at, .set = set};

void rc_client_start(rc_server *srv, rc_conn *c, uint8_t wire)
{
    rc_endpoint_init(&rc_client_of(c)->ep, &client_ops, wire, rc_server_new_client_id(srv));
}

void rc_client_ended(rc_server *srv, rc_conn *c)
{
    rc_endpoint *ep = &rc_client_of(c)->ep;
    /* Its requests (WebSocket, TCP, or a waiting HTTP exchange) are cancelled. */
    if (srv->services) rc_services_client_gone(srv->services, rc_client_of(c));
    if (rc_client_of(c)->apipub) rc_api_client_gone(srv, rc_client_of(c));
    if (srv->rooms.cluster) rc_clapi_conn_gone(c); /* a deferred cluster-wide API read */
    if (!ep->open) return;
    if (srv->nsws) rc_nsws_forget(srv->nsws, ep);
    /* Presence tells a client that said goodbye (a close frame, or EOF on a stream) from one
     * the server lost or cut off. */
    if (ep->end_reason == RC_LEAVE_DROPPED && (c->close_received || c->rd_eof) && !c->slow &&
        !c->lost)
        ep->end_reason = RC_LEAVE_CLOSED;
    rc_endpoint_gone(&srv->rooms, ep);
}

int rc_client_room_message(rc_conn *c, uint8_t opcode, const char *p, size_t n)
{
    if (rc_limits_message(c, n) < 0) return -1; /* over a rate limit: answered or closed */
    rc_server *srv = rc_server_of_net(c->net);
    rc_endpoint *ep = &rc_client_of(c)->ep;
    if (opcode == RC_WS_TEXT) return rc_roomproto_text(&srv->rooms, ep, p, n);
    return rc_roomproto_binary(&srv->rooms, ep, (const uint8_t *)p, n);
}

int rc_client_tcp_message(rc_conn *c, uint8_t opcode, const char *p, size_t n)
{
    /* The framing is chosen by the client's first bytes, so before its first message (and so
     * before it can join a room, where members keep their wire) it is known. */
    rc_client_of(c)->ep.wire = rc_tcp_framed(c) ? RC_WIRE_FRAMED : RC_WIRE_LINE;
    return rc_client_room_message(c, opcode, p, n);
}

/* Whether the chat client c may do action in the chat room; closes it when not. */
static bool chat_allowed(rc_server *srv, rc_conn *c, enum rc_perm_action action)
{
    if (srv->rooms.perm_open) return true;
    const char *name = srv->cfg.chat_room;
    rc_room *room = rc_rooms_find(&srv->rooms, name, strlen(name));
    enum rc_perm_result r = rc_ident_may(&srv->rooms, &rc_client_of(c)->ep, name, strlen(name),
                                         action, room ? room->nmembers : 0);
    if (r == RC_PERM_OK) return true;
    rc_conn_end(c, r == RC_PERM_UNAUTHENTICATED ? RC_CLOSE_UNAUTHENTICATED : RC_WS_CLOSE_POLICY,
                rc_perm_result_name(r), false);
    return false;
}

bool rc_client_join_chat(rc_server *srv, rc_conn *c)
{
    const char *name = srv->cfg.chat_room;
    rc_room *room;
    /* The chat protocol has no error replies: a client the namespace rules keep out of the
     * chat room (or from publishing in it) is closed with the reason. */
    if (!chat_allowed(srv, c, RC_PERM_JOIN)) return false;
    if (srv->rooms.cluster) { /* --redis: once the room is in step with Redis */
        int h = rc_redisrooms_member_hold(&srv->rooms, &rc_client_of(c)->ep, name, strlen(name));
        if (h != 0) return h > 0;
    }
    int r = rc_room_join(&srv->rooms, &rc_client_of(c)->ep, name, strlen(name), 0, &room);
    if (r == RC_JOIN_OK || r == RC_JOIN_ALREADY) return true;
    rc_warn("chat client: cannot join room '%s'", name);
    rc_conn_end(c, RC_WS_CLOSE_INTERNAL, "out of memory", true);
    return false;
}

int rc_client_chat_message(rc_conn *c, uint8_t opcode, const char *p, size_t n)
{
    if (rc_limits_message(c, n) < 0) return -1; /* over a rate limit: answered or closed */
    rc_server *srv = rc_server_of_net(c->net);
    rc_endpoint *ep = &rc_client_of(c)->ep;
    /* In the room from the first byte; back in it after the API closed it. */
    if (ep->nrooms == 0 && !rc_client_join_chat(srv, c)) return -1;
    if (!chat_allowed(srv, c, RC_PERM_PUBLISH)) return -1;
    if (srv->rooms.cluster) /* --redis: through the sequencing script */
        return rc_redisrooms_chat_publish(&srv->rooms, ep, srv->cfg.chat_room,
                                          strlen(srv->cfg.chat_room), p, n);
    rc_json_top q;
    if (rc_json_scan(p, n, RC_ROOMPROTO_CUT, &q) != RC_JSON_OK) abort(); /* chat.c made it */
    bool dup;
    if (rc_roomproto_publish_text(&srv->rooms, ep->rooms[0].room, p, &q, ep->client_id, 0, NULL, &dup,
                                  NULL) == 0) {
        rc_conn_end(c, RC_WS_CLOSE_INTERNAL, "out of memory", true);
        return -1;
    }
    return 0;
}

/* The echo answers in the client's wire: a client that agreed to permessage-deflate gets the
 * frame compressed as a room message would be (same threshold, same encoders), so /echo tests
 * the server's compressed output too (docs/autobahn.md). */
int rc_client_echo_message(rc_conn *c, uint8_t opcode, const char *p, size_t n)
{
    uint8_t wire = rc_client_of(c)->ep.wire;
    if (wire == RC_WIRE_WS) {
        rc_ws_send(c, opcode, p, n);
        return 0;
    }
    rc_msg *m = rc_ws_msg_new(opcode, p, n);
    rc_msg *z = m ? rc_wire_of(m, wire) : NULL; /* borrowed from m's chain, or m itself */
    if (z) rc_conn_send(c, z);
    else rc_conn_end(c, RC_WS_CLOSE_INTERNAL, "out of memory", true);
    if (m) rc_msg_unref(m);
    return 0;
}

rc_client *rc_client_find(rc_server *srv, uint64_t id)
{
    for (rc_conn *c = srv->net.conns; c; c = c->next) {
        rc_client *cl = rc_client_of(c);
        if (c->state == RC_CONN_OPEN && cl->ep.open && cl->ep.client_id == id) return cl;
    }
    return NULL;
}
