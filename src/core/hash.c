/* hash.c — the hash table; see hash.h. */
#include "core/hash.h"

#include <stdlib.h>
#include <string.h>

#define RC_HTAB_MIN 16

static void regrow(rc_htab *t, uint32_t n)
{
    rc_hnode **b = calloc(n, sizeof(*b));
    if (!b) return; /* chains just get longer */
    for (uint32_t i = 0; i < t->nbucket; i++) {
        rc_hnode *x = t->bucket[i];
        while (x) {
            rc_hnode *next = x->next;
            x->next = b[x->hash & (n - 1)];
            b[x->hash & (n - 1)] = x;
            x = next;
        }
    }
    free(t->bucket);
    t->bucket = b;
    t->nbucket = n;
}

int rc_htab_insert(rc_htab *t, rc_hnode *n, uint64_t hash)
{
    if (t->nbucket == 0) {
        regrow(t, RC_HTAB_MIN);
        if (t->nbucket == 0) return -1;
    } else if (t->count >= t->nbucket && t->nbucket < (1u << 31)) {
        regrow(t, t->nbucket * 2);
    }
    n->hash = hash;
    rc_hnode **head = &t->bucket[hash & (t->nbucket - 1)];
    n->next = *head;
    *head = n;
    t->count++;
    return 0;
}

void rc_htab_remove(rc_htab *t, rc_hnode *n)
{
    rc_hnode **pp = &t->bucket[n->hash & (t->nbucket - 1)];
    while (*pp != n) pp = &(*pp)->next;
    *pp = n->next;
    n->next = NULL;
    t->count--;
}

rc_hnode *rc_htab_next(const rc_htab *t, uint32_t *b, const rc_hnode *n)
{
    if (n && n->next) return n->next;
    if (n) ++*b;
    for (; *b < t->nbucket; ++*b)
        if (t->bucket[*b]) return t->bucket[*b];
    return NULL;
}

void rc_htab_release(rc_htab *t)
{
    free(t->bucket);
    memset(t, 0, sizeof(*t));
}
