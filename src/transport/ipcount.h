/* ipcount.h — open connections per client address, for --connections-per-ip.
 *
 * One entry per address that has connections open: the address key and its count. Connections
 * add themselves when accepted and remove themselves when closed (conn.c, the same place that
 * keeps rc_net.nconns), so a count cannot leak whichever way a connection ends. An entry is
 * freed when its count returns to zero: the table holds as many entries as there are distinct
 * addresses connected now, never more.
 *
 * The key: an IPv4 address (also when it arrives IPv4-mapped on a dual-stack socket), or the
 * first 64 bits of an IPv6 address. One IPv6 host usually owns a whole /64 (SLAAC, privacy
 * addresses, anything a provider hands a customer), so counting single IPv6 addresses would let
 * one host open connections from 2^64 addresses; counting /64s treats it as one, as Cloudflare
 * and nginx setups commonly do. (Many users behind one IPv4 NAT do share a count: that is what
 * the limit's default being off, and its being a setting, are for; docs/limits.md.)
 */
#ifndef RC_IPCOUNT_H
#define RC_IPCOUNT_H

#include <stdint.h>
#include <sys/socket.h>

#include "core/hash.h"

/* A client address as counted: 16 bytes, an IPv4 address as ::ffff:a.b.c.d, an IPv6 one with
 * its last 64 bits zeroed. All zero: unknown (not counted). */
typedef struct rc_ipkey {
    uint8_t b[16];
} rc_ipkey;

typedef struct rc_ipcount {
    rc_htab tab;             /* rc_ipcount_entry by key */
    uint64_t oom;            /* entries that could not be allocated (the connection then goes
                                uncounted rather than refused) */
} rc_ipcount;

/* rc_ipkey_of makes the key of the peer address sa (AF_INET or AF_INET6); all zero for any
 * other family. */
rc_ipkey rc_ipkey_of(const struct sockaddr *sa);

/* rc_ipkey_known is false for the all-zero key. */
int rc_ipkey_known(const rc_ipkey *k);

/* rc_ipkey_format writes the key as an address ("192.0.2.1", "2001:db8:1:2::/64") into buf. */
void rc_ipkey_format(const rc_ipkey *k, char *buf, size_t cap);

/* rc_ipcount_add counts one more connection of k and returns the count with it, or 0 when
 * out of memory (nothing counted: the caller must not call rc_ipcount_del for it). */
uint32_t rc_ipcount_add(rc_ipcount *t, const rc_ipkey *k);

/* rc_ipcount_del counts one connection of k less (k was counted by rc_ipcount_add). */
void rc_ipcount_del(rc_ipcount *t, const rc_ipkey *k);

/* rc_ipcount_get is the count of k (0 when none). */
uint32_t rc_ipcount_get(const rc_ipcount *t, const rc_ipkey *k);

/* rc_ipcount_addresses is how many addresses have connections open. */
static inline uint32_t rc_ipcount_addresses(const rc_ipcount *t)
{
    return t->tab.count;
}

/* rc_ipcount_release frees every entry and the table. */
void rc_ipcount_release(rc_ipcount *t);

#endif
