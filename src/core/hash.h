/* hash.h — the one string hash and the one hash table, for every table in roomcast.
 *
 * rc_hash is 64-bit FNV-1a: keys here are short (room names, NetSync room ids) and bounded per
 * client, so a faster or keyed hash would not change what a hostile client can do; rc_hash_mix
 * adds an avalanche step where the hash itself is compared as an identity (idempotency keys).
 *
 * rc_htab is an intrusive chained table: the caller embeds an rc_hnode in its own struct, so a
 * lookup touches the bucket array and the nodes, and the table allocates nothing per entry. It
 * doubles when it holds as many entries as buckets; if that allocation fails the chains just get
 * longer. Lookups walk a chain themselves (the key comparison is the caller's):
 *
 *     for (rc_hnode *n = rc_htab_chain(t, h); n; n = n->next)
 *         if (n->hash == h && key_matches(container_of(n), ...)) return ...;
 */
#ifndef RC_HASH_H
#define RC_HASH_H

#include <stddef.h>
#include <stdint.h>

/* rc_hash_more goes on hashing p[0..n) after h (a hash of what came before). */
static inline uint64_t rc_hash_more(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static inline uint64_t rc_hash(const void *p, size_t n)
{
    return rc_hash_more(14695981039346656037ull, p, n);
}

/* rc_hash_mix spreads every input bit over the result (the finaliser of MurmurHash3). */
static inline uint64_t rc_hash_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

typedef struct rc_hnode {
    struct rc_hnode *next;   /* next node of the same bucket */
    uint64_t hash;           /* the key's hash, set by rc_htab_insert */
} rc_hnode;

typedef struct rc_htab {
    rc_hnode **bucket;       /* nbucket chains, NULL before the first insert */
    uint32_t nbucket;        /* power of two, 0 before the first insert */
    uint32_t count;          /* nodes in the table */
} rc_htab;

/* rc_htab_chain is the first node of the chain hash belongs to (NULL when empty). */
static inline rc_hnode *rc_htab_chain(const rc_htab *t, uint64_t hash)
{
    return t->nbucket ? t->bucket[hash & (t->nbucket - 1)] : NULL;
}

/* rc_htab_insert adds n under hash. Returns 0, or -1 when the first bucket array cannot be
 * allocated (n is then not in the table). */
int rc_htab_insert(rc_htab *t, rc_hnode *n, uint64_t hash);

/* rc_htab_remove takes n (which must be in t) out of the table. */
void rc_htab_remove(rc_htab *t, rc_hnode *n);

/* rc_htab_next iterates: start with *b = 0 and n = NULL; returns the next node or NULL at the
 * end. The node returned may be removed before the next call only if the caller saved its
 * successor with another call first. */
rc_hnode *rc_htab_next(const rc_htab *t, uint32_t *b, const rc_hnode *n);

/* rc_htab_release frees the bucket array (not the nodes: they are the caller's). */
void rc_htab_release(rc_htab *t);

#endif
