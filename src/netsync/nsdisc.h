/* nsdisc.h — NetSync server discovery on one port, UDP and TCP (wire spec §4.6, v8 §4.9, §9).
 *
 * UDP: a datagram that is exactly "STYLY-NETSYNC-DISCOVER" (no trimming) is answered to its
 * sender with one datagram per client generation, in this order:
 *   STYLY-NETSYNC|<router>|<pub>|<name>                           v0.5 … v0.14 clients
 *   STYLY-NETSYNC2|<control>|<transform>|<pub>|<name>             v0.15 … v0.16.3 (protocol 7/8)
 *   STYLY-NETSYNC3|<control>|<transform>|<pub>|<rest>|<name>      HEAD (protocol 8)
 * Every client keeps listening past a reply whose prefix it does not know (v8 §4.9), so each
 * takes its own; anything else is ignored.
 * TCP: one read of at most 1024 bytes, stripped of ASCII whitespace (Python's .strip() on the
 * texts that matter); the same request gets ONE reply plus "\n" — the v0.6 one, or the
 * STYLY-NETSYNC3 one with tcp_v8 (a connection carries one reply: v8 §9) — then the
 * connection is closed; a wrong request is closed without data. Unlike the reference (one thread, blocking
 * accept, 2 s read timeout, so one idle connection blocks everyone), every connection is a
 * non-blocking rc_io with its own 2 s rc_timer, and at most NSY_DISC_MAX_CONNS are open at once
 * (more are closed on accept and counted), so discovery can never hold up the loop.
 */
#ifndef RC_NSDISC_H
#define RC_NSDISC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"
#include "netsync/nsstats.h"

#define NSY_DISC_REQUEST "STYLY-NETSYNC-DISCOVER"
#define NSY_DISC_FORMATS 3      /* v0.6, STYLY-NETSYNC2, STYLY-NETSYNC3 */
#define NSY_DISC_NAME_MAX 100   /* server name bytes */

/* The ports discovery announces. */
typedef struct nsy_disc_ports {
    uint16_t control;            /* control ROUTER ("dealer" port of v0.6) */
    uint16_t pose;               /* transform ROUTER */
    uint16_t pub;                /* PUB */
    uint16_t rest;               /* REST bridge (HTTP) */
} nsy_disc_ports;
#define NSY_DISC_MAX_CONNS 128
#define NSY_DISC_TIMEOUT_NS (2 * RC_NS_PER_SEC)

typedef struct nsy_disc_conn nsy_disc_conn;

typedef struct nsy_disc {
    rc_loop *loop;               /* not owned */
    rc_netsync_stats *st;        /* counters (not owned) */
    rc_io udp_io;                /* UDP socket (fd owned) */
    rc_io tcp_io;                /* TCP listener (fd owned) */
    rc_timer accept_timer;       /* resumes accepting after descriptor exhaustion */
    uint16_t port;               /* bound port (UDP and TCP) */
    nsy_disc_ports ports;        /* announced */
    char name[NSY_DISC_NAME_MAX + 1]; /* server name, NUL-terminated */
    int tcp_format;              /* index into reply answered on TCP */
    char reply[NSY_DISC_FORMATS][160]; /* each "...|name\n" */
    size_t reply_len[NSY_DISC_FORMATS]; /* bytes of reply without the "\n" */
    nsy_disc_conn *conns;         /* open TCP connections, doubly linked */
    uint32_t nconns;
} nsy_disc;

/* nsy_disc_start binds UDP and TCP on addr:port (port 0: one free port for both) and answers
 * with the given ports and name. Returns 0, or -errno after logging. */
int nsy_disc_start(nsy_disc *d, rc_loop *loop, const char *addr, uint16_t port,
                   const nsy_disc_ports *ports, const char *name, bool tcp_v8,
                   rc_netsync_stats *st);
/* nsy_disc_set_rest_port changes the REST port of the STYLY-NETSYNC3 reply. */
void nsy_disc_set_rest_port(nsy_disc *d, uint16_t rest);
/* nsy_disc_stop closes every socket and connection. Safe on a zeroed or stopped nsy_disc. */
void nsy_disc_stop(nsy_disc *d);

#endif
