/* perm.c — namespaces, grants and the permission check; see perm.h.
 *
 * Namespaces are few (an operator writes each by hand), so they are a plain array searched
 * linearly: a hash table would cost more code than the handful of comparisons it saves. The
 * same goes for grants, which come from one token.
 */
#include "rooms/perm.h"

#include <stdlib.h>
#include <string.h>

#include "codec/json.h"

void rc_perm_ns_init(rc_perm_ns *ns, const char *name, size_t len)
{
    memset(ns, 0, sizeof *ns);
    memcpy(ns->name, name, len);
    ns->name[len] = '\0';
    ns->join = RC_PERM_ANYONE;
    ns->publish = RC_PERM_ANYONE;
    ns->history = ns->recovery = ns->presence = 1;
}

void rc_perm_rules_init(rc_perm_rules *r)
{
    memset(r, 0, sizeof *r);
    rc_perm_ns_init(&r->def, "", 0);
}

void rc_perm_rules_release(rc_perm_rules *r)
{
    free(r->ns);
    rc_perm_rules_init(r);
}

bool rc_perm_name_valid(const char *name, size_t len)
{
    if (len < 1 || len > RC_PERM_NS_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

const rc_perm_ns *rc_perm_find(const rc_perm_rules *r, const char *name, size_t len)
{
    for (size_t i = 0; i < r->nns; i++)
        if (strlen(r->ns[i].name) == len && memcmp(r->ns[i].name, name, len) == 0)
            return &r->ns[i];
    return NULL;
}

rc_perm_ns *rc_perm_add(rc_perm_rules *r, const char *name, size_t len)
{
    if (!rc_perm_name_valid(name, len) || rc_perm_find(r, name, len)) return NULL;
    if (r->nns == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 8;
        rc_perm_ns *v = realloc(r->ns, cap * sizeof *v);
        if (!v) return NULL;
        r->ns = v;
        r->cap = cap;
    }
    rc_perm_ns *ns = &r->ns[r->nns++];
    rc_perm_ns_init(ns, name, len);
    return ns;
}

const rc_perm_ns *rc_perm_lookup(const rc_perm_rules *r, const char *room, size_t len)
{
    const char *colon = memchr(room, ':', len);
    if (!colon) return &r->def;
    const rc_perm_ns *ns = rc_perm_find(r, room, (size_t)(colon - room));
    return ns ? ns : &r->def;
}

static const char *const policy_names[] = {"anyone", "authenticated", "granted", NULL};

int rc_perm_parse_policy(const char *s)
{
    for (int i = 0; policy_names[i]; i++)
        if (strcmp(s, policy_names[i]) == 0) return i;
    return -1;
}

const char *rc_perm_policy_name(int policy)
{
    return policy >= 0 && policy <= RC_PERM_GRANTED ? policy_names[policy] : "?";
}

const char *rc_perm_result_name(enum rc_perm_result res)
{
    switch (res) {
    case RC_PERM_OK: return "ok";
    case RC_PERM_FORBIDDEN: return "forbidden";
    case RC_PERM_UNAUTHENTICATED: return "unauthenticated";
    case RC_PERM_ROOM_FULL: return "room_full";
    }
    return "?";
}

/* ns_equal compares the rules, not where they were written (line). */
static bool ns_equal(const rc_perm_ns *a, const rc_perm_ns *b)
{
    return strcmp(a->name, b->name) == 0 && a->join == b->join && a->publish == b->publish &&
           a->history == b->history && a->recovery == b->recovery &&
           a->presence == b->presence && a->max_members == b->max_members;
}

bool rc_perm_rules_equal(const rc_perm_rules *a, const rc_perm_rules *b)
{
    if (!ns_equal(&a->def, &b->def) || a->nns != b->nns) return false;
    for (size_t i = 0; i < a->nns; i++) {
        const rc_perm_ns *o = rc_perm_find(b, a->ns[i].name, strlen(a->ns[i].name));
        if (!o || !ns_equal(&a->ns[i], o)) return false;
    }
    return true;
}

/* star_match: does s[0..n) match pattern p[0..m), where '*' matches any run of bytes? The
 * classic greedy walk that backtracks only to the last '*': linear in practice, never
 * exponential, no recursion on attacker-chosen input. */
static bool star_match(const char *p, size_t m, const char *s, size_t n)
{
    size_t i = 0, j = 0, star = (size_t)-1, mark = 0;
    while (j < n) {
        if (i < m && p[i] == '*') {
            star = i++;
            mark = j;
        } else if (i < m && p[i] == s[j]) {
            i++;
            j++;
        } else if (star != (size_t)-1) {
            i = star + 1;
            j = ++mark;
        } else {
            return false;
        }
    }
    while (i < m && p[i] == '*') i++;
    return i == m;
}

unsigned rc_perm_granted(const rc_perm_grants *grants, const char *room, size_t len)
{
    if (!grants) return 0;
    unsigned patterns = 0;
    for (size_t i = 0; i < grants->n; i++) {
        const rc_perm_grant *g = &grants->v[i];
        if (g->len == len && memcmp(g->pattern, room, len) == 0) return g->rights;
        if (memchr(g->pattern, '*', g->len) && star_match(g->pattern, g->len, room, len))
            patterns |= g->rights;
    }
    return patterns;
}

/* allowed applies one policy; need is the right a grant must carry. */
static enum rc_perm_result allowed(int policy, bool authenticated, const rc_perm_grants *grants,
                                   const char *room, size_t len, unsigned need)
{
    if (policy == RC_PERM_ANYONE) return RC_PERM_OK;
    if (!authenticated) return RC_PERM_UNAUTHENTICATED;
    if (policy == RC_PERM_AUTHENTICATED) return RC_PERM_OK;
    return rc_perm_granted(grants, room, len) & need ? RC_PERM_OK : RC_PERM_FORBIDDEN;
}

enum rc_perm_result rc_perm_check(const rc_perm_rules *r, const char *room, size_t len,
                                  enum rc_perm_action action, bool authenticated,
                                  const rc_perm_grants *grants, uint32_t members)
{
    const rc_perm_ns *ns = rc_perm_lookup(r, room, len);
    if (action == RC_PERM_PUBLISH)
        return allowed(ns->publish, authenticated, grants, room, len, RC_PERM_W);
    enum rc_perm_result res = allowed(ns->join, authenticated, grants, room, len, RC_PERM_R);
    if (res != RC_PERM_OK) return res;
    switch (action) {
    case RC_PERM_JOIN:
        return ns->max_members && members >= ns->max_members ? RC_PERM_ROOM_FULL : RC_PERM_OK;
    case RC_PERM_HISTORY: return ns->history ? RC_PERM_OK : RC_PERM_FORBIDDEN;
    case RC_PERM_RECOVER: return ns->recovery ? RC_PERM_OK : RC_PERM_FORBIDDEN;
    case RC_PERM_PRESENCE: return ns->presence ? RC_PERM_OK : RC_PERM_FORBIDDEN;
    case RC_PERM_PUBLISH: break; /* handled above */
    }
    return RC_PERM_FORBIDDEN;
}

long rc_perm_grants_from_json(const char *p, size_t n, rc_perm_grant *out, size_t cap,
                              char *buf, size_t bufcap)
{
    rc_json_top top;
    if (rc_json_scan(p, n, 0, &top) != RC_JSON_OK) return -1;
    rc_json_iter it;
    rc_json_span key, val;
    if (!rc_json_iter_init(&it, p, n)) return -1;
    size_t count = 0, used = 0;
    while (rc_json_iter_next(&it, &key, &val)) {
        if (count == cap || val.type != RC_JSON_STRING) return -1;
        char rights[4];
        long rl = rc_json_unescape(val.p, val.len, rights, sizeof rights - 1);
        if (rl < 0) return -1;
        rights[rl] = '\0';
        unsigned bits = strcmp(rights, "r") == 0    ? RC_PERM_R
                        : strcmp(rights, "w") == 0  ? RC_PERM_W
                        : strcmp(rights, "rw") == 0 ? RC_PERM_R | RC_PERM_W
                                                    : 0;
        if (!bits) return -1;
        long kl = rc_json_unescape(key.p, key.len, buf + used, bufcap - used);
        if (kl <= 0) return -1; /* does not fit, or an empty room name grants nothing */
        out[count++] = (rc_perm_grant){buf + used, (size_t)kl, (uint8_t)bits};
        used += (size_t)kl;
    }
    return (long)count;
}
