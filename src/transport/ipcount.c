/* ipcount.c — open connections per address; see ipcount.h. */
#include "transport/ipcount.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rc_ipcount_entry {
    rc_hnode node;           /* in rc_ipcount.tab, by the key's hash */
    rc_ipkey key;            /* the address (ipcount.h) */
    uint32_t n;              /* its open connections, > 0 */
} rc_ipcount_entry;

#define entry_of(x) ((rc_ipcount_entry *)(void *)((char *)(x) - offsetof(rc_ipcount_entry, node)))

static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

rc_ipkey rc_ipkey_of(const struct sockaddr *sa)
{
    rc_ipkey k;
    memset(&k, 0, sizeof(k));
    if (sa->sa_family == AF_INET) {
        memcpy(k.b, v4_prefix, 12);
        memcpy(k.b + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
        if (memcmp(a, v4_prefix, 12) == 0) memcpy(k.b, a, 16); /* IPv4-mapped: the whole */
        else memcpy(k.b, a, 8);                                 /* the /64 */
    }
    return k;
}

int rc_ipkey_known(const rc_ipkey *k)
{
    for (int i = 0; i < 16; i++)
        if (k->b[i]) return 1;
    return 0;
}

void rc_ipkey_format(const rc_ipkey *k, char *buf, size_t cap)
{
    char a[INET6_ADDRSTRLEN];
    if (memcmp(k->b, v4_prefix, 12) == 0) {
        inet_ntop(AF_INET, k->b + 12, a, sizeof(a));
        snprintf(buf, cap, "%s", a);
    } else {
        inet_ntop(AF_INET6, k->b, a, sizeof(a));
        snprintf(buf, cap, "%s/64", a);
    }
}

static uint64_t key_hash(const rc_ipkey *k)
{
    return rc_hash_mix(rc_hash(k->b, sizeof(k->b)));
}

static rc_ipcount_entry *find(const rc_ipcount *t, const rc_ipkey *k, uint64_t h)
{
    for (rc_hnode *x = rc_htab_chain(&t->tab, h); x; x = x->next)
        if (x->hash == h && memcmp(entry_of(x)->key.b, k->b, sizeof(k->b)) == 0)
            return entry_of(x);
    return NULL;
}

uint32_t rc_ipcount_add(rc_ipcount *t, const rc_ipkey *k)
{
    uint64_t h = key_hash(k);
    rc_ipcount_entry *e = find(t, k, h);
    if (e) return ++e->n;
    if (!(e = calloc(1, sizeof(*e)))) {
        t->oom++;
        return 0;
    }
    e->key = *k;
    e->n = 1;
    if (rc_htab_insert(&t->tab, &e->node, h) < 0) {
        free(e);
        t->oom++;
        return 0;
    }
    return 1;
}

void rc_ipcount_del(rc_ipcount *t, const rc_ipkey *k)
{
    uint64_t h = key_hash(k);
    rc_ipcount_entry *e = find(t, k, h);
    if (!e) abort(); /* a connection uncounted that was never counted: conn.c is broken */
    if (--e->n) return;
    rc_htab_remove(&t->tab, &e->node);
    free(e);
}

uint32_t rc_ipcount_get(const rc_ipcount *t, const rc_ipkey *k)
{
    rc_ipcount_entry *e = find(t, k, key_hash(k));
    return e ? e->n : 0;
}

void rc_ipcount_release(rc_ipcount *t)
{
    uint32_t b = 0;
    rc_hnode *x = rc_htab_next(&t->tab, &b, NULL);
    while (x) {
        rc_hnode *next = rc_htab_next(&t->tab, &b, x);
        free(entry_of(x));
        x = next;
    }
    rc_htab_release(&t->tab);
}
