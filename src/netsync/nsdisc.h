/* nsdisc.h — NetSync server discovery on one port, UDP and TCP (wire spec §4.6).
 *
 * UDP: a datagram that is exactly "STYLY-NETSYNC-DISCOVER" (no trimming) is answered to its
 * sender with "STYLY-NETSYNC|<dealerPort>|<pubPort>|<serverName>"; anything else is ignored.
 * TCP: one read of at most 1024 bytes, stripped of ASCII whitespace (Python's .strip() on the
 * texts that matter); the same request gets the same reply plus "\n", then the connection is
 * closed; a wrong request is closed without data. Unlike the reference (one thread, blocking
 * accept, 2 s read timeout, so one idle connection blocks everyone), every connection is a
 * non-blocking rc_io with its own 2 s rc_timer, and at most NSY_DISC_MAX_CONNS are open at once
 * (more are closed on accept and counted), so discovery can never hold up the loop.
 */
#ifndef RC_NSDISC_H
#define RC_NSDISC_H

#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"
#include "netsync/nsstats.h"

#define NSY_DISC_REQUEST "STYLY-NETSYNC-DISCOVER"
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
    char reply[160];             /* "STYLY-NETSYNC|...|...|name\n" */
    size_t reply_len;            /* bytes of reply without the "\n" */
    nsy_disc_conn *conns;         /* open TCP connections, doubly linked */
    uint32_t nconns;
} nsy_disc;

/* nsy_disc_start binds UDP and TCP on addr:port (port 0: one free port for both) and answers
 * with the given ports and name. Returns 0, or -errno after logging. */
int nsy_disc_start(nsy_disc *d, rc_loop *loop, const char *addr, uint16_t port,
                  uint16_t router_port, uint16_t pub_port, const char *name,
                  rc_netsync_stats *st);
/* nsy_disc_stop closes every socket and connection. Safe on a zeroed or stopped nsy_disc. */
void nsy_disc_stop(nsy_disc *d);

#endif
