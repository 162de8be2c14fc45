/* client.h — a client of the rooms over a stream connection: where transport meets rooms.
 *
 * The transport knows connections (rc_conn) and the rooms know endpoints (rc_endpoint); a
 * client is both, in one allocation (the listeners allocate rc_client for every connection),
 * so delivering a room frame to a WebSocket or TCP member is pointer arithmetic and one queue
 * push. This module implements the endpoint operations for connections (deliver: queue;
 * close: the connection's protocol says goodbye) and the message handlers the transports call:
 * the room protocol, echo, and the seed chat protocol.
 */
#ifndef RC_CLIENT_H
#define RC_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "app/limits.h"
#include "rooms/endpoint.h"
#include "transport/conn.h"

struct rc_server;

typedef struct rc_client {
    rc_conn conn;            /* the connection; must stay first (listeners allocate clients) */
    rc_endpoint ep;          /* its membership of rooms, once it speaks a room protocol */
    bool rest_only;          /* accepted on --netsync-rest-port: HTTP for the NetSync REST
                                bridge only (never upgraded, never a room member) */
    struct rc_svc_client *svc; /* its worker-broker requests (app/services.c), or NULL */
    struct rc_api_pub *apipub; /* its HTTP API publish waiting for an answer (app/api.c),
                                  or NULL */
    rc_climits lim;          /* its rate-limit buckets (app/limits.h) */
} rc_client;

#define rc_client_of(c) ((rc_client *)(c))
#define rc_client_of_ep(e) ((rc_client *)(void *)((char *)(e) - offsetof(rc_client, ep)))

/* rc_client_start makes c a room endpoint reading wire (enum rc_wire), with a new client id. */
void rc_client_start(struct rc_server *srv, rc_conn *c, uint8_t wire);

/* rc_client_ended is the net's `ended` hook: c leaves every room and observation. */
void rc_client_ended(struct rc_server *srv, rc_conn *c);

/* rc_client_join_chat puts the chat-port client c in the chat room (--chat-room). False when
 * out of memory (c is then being closed). */
bool rc_client_join_chat(struct rc_server *srv, rc_conn *c);

/* Message handlers (rc_message_fn) for the transports: the room protocol over WebSocket
 * ("/") and over the TCP port, echo ("/echo"), and the seed chat protocol: an object
 * {"user":U,"text":T} becomes the publish {"type":"chat","user":U,"text":T} in the chat room. */
int rc_client_room_message(rc_conn *c, uint8_t opcode, const char *p, size_t n);
int rc_client_tcp_message(rc_conn *c, uint8_t opcode, const char *p, size_t n);
int rc_client_echo_message(rc_conn *c, uint8_t opcode, const char *p, size_t n);
int rc_client_chat_message(rc_conn *c, uint8_t opcode, const char *p, size_t n);

/* rc_client_find returns the open room client with id, or NULL (a linear walk: kicking is rare,
 * and an index by id would cost every connection). */
rc_client *rc_client_find(struct rc_server *srv, uint64_t id);

#endif
