/* broker.c — the worker broker's state machine; see broker.h for the rules it implements.
 *
 * Invariants that the code relies on (checked by tests/unit/broker/test_broker.c):
 *  - a service's queue is non-empty only while it has no idle worker: every path that frees a
 *    worker or puts requests back into a queue ends in worker_free / svc_drain;
 *  - a worker's sticky queue is non-empty only while the worker is busy;
 *  - a request is in exactly one place: a service queue, a worker's sticky queue, or in flight
 *    (worker->cur); it is always in the token table, its origin's list and the deadline heap
 *    until req_finish frees it.
 */
#include "broker/broker.h"

#include <stdlib.h>
#include <string.h>

#define container_of(p, T, m) ((T *)(void *)((char *)(p) - offsetof(T, m)))

enum rq_where { RQ_SVC, RQ_WORKER, RQ_FLIGHT };

struct brk_req {
    rc_hnode node;               /* in b->reqs, by token hash */
    brk_req *next, *prev;        /* in a service queue or a worker's sticky queue */
    brk_req *onext, *oprev;      /* in the origin's list */
    brk_origin *origin;          /* who asked (b->zclients for the ZeroMQ client port) */
    uint64_t req_id;             /* the origin's id */
    uint64_t token;              /* what workers see as the client address */
    brk_service *svc;            /* its service */
    struct brk_sticky *sticky;   /* its sticky key, NULL when none */
    brk_worker *worker;          /* RQ_WORKER: whose sticky queue; RQ_FLIGHT: who holds it */
    enum rq_where where;         /* where it is */
    uint8_t tries;               /* times it was sent to a worker */
    enum mdp_proto cproto;       /* client-port requests: the client's protocol */
    mdp_frame cid;               /* client-port requests: the client's identity (in data) */
    rc_heap_node timer;          /* key: deadline, loop ns */
    size_t nbody;                /* body frames */
    mdp_frame *body;             /* body frames, pointing into this allocation */
};

typedef struct brk_sticky {
    rc_hnode node;               /* in b->stickies, by hash of service pointer and key */
    struct brk_sticky *wnext, *wprev; /* in the bound worker's list */
    brk_service *svc;            /* the key's service */
    brk_worker *worker;          /* bound worker, NULL while unbound */
    uint32_t pending;            /* unfinished requests carrying the key */
    uint8_t len;                 /* key bytes */
    uint8_t key[MDP_ID_MAX];     /* the key */
} brk_sticky;

const char *brk_code_name(enum brk_code c)
{
    switch (c) {
    case BRK_NO_SERVICE: return "no_service";
    case BRK_TIMEOUT: return "timeout";
    case BRK_WORKER_LOST: return "worker_lost";
    case BRK_OVERLOADED: return "overloaded";
    case BRK_TOO_LARGE: return "too_large";
    }
    return "unknown";
}

void brk_params_default(brk_params *p)
{
    p->default_service = "default";
    p->request_timeout_ns = 5000000000ull;
    p->queue_max = 1000;
    p->ppp_heartbeat_ns = 1000000000ull;
    p->mdp_heartbeat_ns = 2500000000ull;
    p->liveness = 3;
    p->service_grace_ns = 30000000000ull;
    p->max_body = 1u << 20;
}

static uint64_t sticky_hash(const brk_service *s, mdp_frame key)
{
    return rc_hash_more(rc_hash(&s, sizeof(s)), key.p, key.len);
}

static bool is_mmi(mdp_frame name) { return name.len >= 4 && memcmp(name.p, "mmi.", 4) == 0; }

/* ---- lookups ------------------------------------------------------------------------------ */

static brk_service *svc_find(const brk_broker *b, mdp_frame name)
{
    uint64_t h = rc_hash(name.p, name.len);
    for (rc_hnode *n = rc_htab_chain(&b->services, h); n; n = n->next) {
        brk_service *s = container_of(n, brk_service, node);
        if (n->hash == h && s->name_len == name.len && memcmp(s->name, name.p, name.len) == 0)
            return s;
    }
    return NULL;
}

static brk_service *svc_get(brk_broker *b, mdp_frame name, uint64_t now)
{
    if (name.len == 0 || name.len > MDP_SERVICE_MAX) return NULL;
    brk_service *s = svc_find(b, name);
    if (s) return s;
    s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    memcpy(s->name, name.p, name.len);
    s->name_len = (uint8_t)name.len;
    s->mmi = is_mmi(name);
    /* A service first named by a request (during the start-up grace) counts as seen now. */
    s->last_worker = now;
    if (rc_htab_insert(&b->services, &s->node, rc_hash(name.p, name.len)) < 0) {
        free(s);
        return NULL;
    }
    s->prev = b->svc_tail;
    if (b->svc_tail) b->svc_tail->next = s;
    else b->svc_head = s;
    b->svc_tail = s;
    return s;
}

static brk_worker *worker_find(const brk_broker *b, mdp_frame id)
{
    uint64_t h = rc_hash(id.p, id.len);
    for (rc_hnode *n = rc_htab_chain(&b->workers, h); n; n = n->next) {
        brk_worker *w = container_of(n, brk_worker, node);
        if (n->hash == h && w->id_len == id.len && memcmp(w->id, id.p, id.len) == 0) return w;
    }
    return NULL;
}

static brk_req *req_find(const brk_broker *b, uint64_t token)
{
    uint64_t h = rc_hash_mix(token);
    for (rc_hnode *n = rc_htab_chain(&b->reqs, h); n; n = n->next) {
        brk_req *r = container_of(n, brk_req, node);
        if (r->token == token) return r;
    }
    return NULL;
}

static brk_sticky *sticky_find(const brk_broker *b, brk_service *s, mdp_frame key)
{
    uint64_t h = sticky_hash(s, key);
    for (rc_hnode *n = rc_htab_chain(&b->stickies, h); n; n = n->next) {
        brk_sticky *k = container_of(n, brk_sticky, node);
        if (n->hash == h && k->svc == s && k->len == key.len && memcmp(k->key, key.p, key.len) == 0)
            return k;
    }
    return NULL;
}

static mdp_frame w_id(const brk_worker *w) { return mdp_frame_of(w->id, w->id_len); }
static mdp_frame s_name(const brk_service *s) { return mdp_frame_of(s->name, s->name_len); }

static void put_token(uint8_t out[BRK_TOKEN_LEN], uint64_t t)
{
    for (int i = BRK_TOKEN_LEN - 1; i >= 0; i--, t >>= 8) out[i] = (uint8_t)t;
}

/* get_token reads a request token from a reply's address; 0 (never issued) when the address
 * is not a token. */
static uint64_t get_token(mdp_frame a)
{
    if (a.len != BRK_TOKEN_LEN) return 0;
    uint64_t t = 0;
    for (size_t i = 0; i < BRK_TOKEN_LEN; i++) t = t << 8 | a.p[i];
    return t;
}

/* ---- queues ------------------------------------------------------------------------------- */

static void idle_push(brk_worker *w)
{
    brk_service *s = w->svc;
    w->inext = NULL;
    w->iprev = s->idle_tail;
    if (s->idle_tail) s->idle_tail->inext = w;
    else s->idle_head = w;
    s->idle_tail = w;
    w->idle_listed = true;
    s->nidle++;
}

static void idle_remove(brk_worker *w)
{
    if (!w->idle_listed) return;
    brk_service *s = w->svc;
    if (w->iprev) w->iprev->inext = w->inext;
    else s->idle_head = w->inext;
    if (w->inext) w->inext->iprev = w->iprev;
    else s->idle_tail = w->iprev;
    w->inext = w->iprev = NULL;
    w->idle_listed = false;
    s->nidle--;
}

/* A FIFO of requests, as head/tail/count pointers into a service or a worker. */
typedef struct rq_list {
    brk_req **head, **tail;
    uint32_t *len;
} rq_list;

static rq_list svc_q(brk_service *s) { return (rq_list){&s->q_head, &s->q_tail, &s->qlen}; }
static rq_list w_q(brk_worker *w) { return (rq_list){&w->sq_head, &w->sq_tail, &w->sqlen}; }

static void q_append(rq_list q, brk_req *r)
{
    r->next = NULL;
    r->prev = *q.tail;
    if (*q.tail) (*q.tail)->next = r;
    else *q.head = r;
    *q.tail = r;
    (*q.len)++;
}

static void q_prepend(rq_list q, brk_req *r)
{
    r->prev = NULL;
    r->next = *q.head;
    if (*q.head) (*q.head)->prev = r;
    else *q.tail = r;
    *q.head = r;
    (*q.len)++;
}

static void q_remove(rq_list q, brk_req *r)
{
    if (r->prev) r->prev->next = r->next;
    else *q.head = r->next;
    if (r->next) r->next->prev = r->prev;
    else *q.tail = r->prev;
    r->next = r->prev = NULL;
    (*q.len)--;
}

/* ---- stickies ----------------------------------------------------------------------------- */

static void sticky_bind(brk_sticky *k, brk_worker *w)
{
    k->worker = w;
    k->wprev = NULL;
    k->wnext = w->sticky_head;
    if (w->sticky_head) w->sticky_head->wprev = k;
    w->sticky_head = k;
    w->nsticky++;
}

static void sticky_unbind(brk_sticky *k)
{
    brk_worker *w = k->worker;
    if (!w) return;
    if (k->wprev) k->wprev->wnext = k->wnext;
    else w->sticky_head = k->wnext;
    if (k->wnext) k->wnext->wprev = k->wprev;
    k->wnext = k->wprev = NULL;
    k->worker = NULL;
    w->nsticky--;
}

/* A sticky record lives while it is bound or requests carry it. */
static void sticky_maybe_free(brk_broker *b, brk_sticky *k)
{
    if (k->worker || k->pending) return;
    rc_htab_remove(&b->stickies, &k->node);
    free(k);
}

/* ---- requests ----------------------------------------------------------------------------- */

/* req_finish takes r out of every structure and frees it (no callback). */
static void req_finish(brk_broker *b, brk_req *r)
{
    switch (r->where) {
    case RQ_SVC: q_remove(svc_q(r->svc), r); break;
    case RQ_WORKER: q_remove(w_q(r->worker), r); break;
    case RQ_FLIGHT: r->worker->cur = NULL; break; /* the worker stays busy: see broker.h */
    }
    if (rc_heap_contains(&r->timer)) rc_heap_remove(&b->deadlines, &r->timer);
    rc_htab_remove(&b->reqs, &r->node);
    brk_origin *o = r->origin;
    if (r->oprev) r->oprev->onext = r->onext;
    else o->reqs = r->onext;
    if (r->onext) r->onext->oprev = r->oprev;
    if (r->sticky) {
        r->sticky->pending--;
        sticky_maybe_free(b, r->sticky);
    }
    free(r);
}

static void deliver(brk_broker *b, brk_req *r, const mdp_frame *body, size_t nbody)
{
    r->svc->st.ok++;
    if (r->origin == &b->zclients) {
        mdp_frame out[MDP_ENC_FIXED + BRK_MAX_FRAMES];
        int n = mdp_enc_client_reply(out, MDP_ENC_FIXED + BRK_MAX_FRAMES, r->cproto, r->cid,
                                     s_name(r->svc), body, nbody);
        if (n > 0 && b->cb.send_client) b->cb.send_client(b->cb.arg, out, (size_t)n);
        return;
    }
    r->origin->ops->reply(r->origin, r->req_id, s_name(r->svc), body, nbody);
}

/* fail_req reports code for r and frees it. */
static void fail_req(brk_broker *b, brk_req *r, enum brk_code code)
{
    r->svc->st.failed[code]++;
    brk_origin *o = r->origin;
    uint64_t id = r->req_id;
    bool z = o == &b->zclients;
    req_finish(b, r);
    /* Neither client-port protocol has an error reply: the client times out (broker.h). */
    if (!z) o->ops->fail(o, id, code);
}

/* ---- workers ------------------------------------------------------------------------------ */

static uint64_t w_interval(const brk_broker *b, const brk_worker *w)
{
    return w->proto == MDP_PROTO_PPP ? b->p.ppp_heartbeat_ns : b->p.mdp_heartbeat_ns;
}

static void w_timer_update(brk_broker *b, brk_worker *w)
{
    if (w->proto == MDP_PROTO_LRU) return; /* no heartbeats: only brk_worker_gone ends it */
    uint64_t key = w->hb_next < w->expiry ? w->hb_next : w->expiry;
    if (rc_heap_contains(&w->timer)) rc_heap_update(&b->wtimers, &w->timer, key);
    else (void)rc_heap_push(&b->wtimers, &w->timer, key); /* OOM: it just never expires */
}

static void w_heard(brk_broker *b, brk_worker *w, uint64_t now)
{
    w->last_heard = now;
    if (w->proto == MDP_PROTO_LRU) return;
    w->expiry = now + (uint64_t)b->p.liveness * w_interval(b, w);
    w_timer_update(b, w);
}

static void send_frames(brk_broker *b, const mdp_frame *f, int n)
{
    if (n > 0) b->cb.send_worker(b->cb.arg, f, (size_t)n);
}

static void dispatch(brk_broker *b, brk_worker *w, brk_req *r)
{
    idle_remove(w);
    r->where = RQ_FLIGHT;
    r->worker = w;
    r->tries++;
    w->busy = true;
    w->cur = r;
    w->token = r->token;
    if (r->sticky && !r->sticky->worker) {
        sticky_bind(r->sticky, w);
        /* The key's later requests still in the service queue (after a move they were put
         * back there, in order) follow it onto this worker's own queue now: requests of the
         * key that arrive from here on are appended there, and must not overtake them. */
        if (r->sticky->pending > 1) {
            brk_service *s = w->svc;
            for (brk_req *q = s->q_head, *nx; q; q = nx) {
                nx = q->next;
                if (q->sticky != r->sticky) continue;
                q_remove(svc_q(s), q);
                q->where = RQ_WORKER;
                q->worker = w;
                q_append(w_q(w), q);
            }
        }
    }
    uint8_t tok[BRK_TOKEN_LEN];
    put_token(tok, r->token);
    mdp_frame out[MDP_ENC_FIXED + BRK_MAX_FRAMES];
    int n = mdp_enc_request(out, MDP_ENC_FIXED + BRK_MAX_FRAMES, w->proto, w_id(w),
                            mdp_frame_of(tok, sizeof(tok)), r->body, r->nbody);
    send_frames(b, out, n);
}

/* worker_free gives a worker that just became free its next request — its own sticky queue
 * first (those keys can go nowhere else), then the service queue — or makes it idle. A queued
 * request whose sticky key got bound to another worker meanwhile moves to that worker. */
static void worker_free(brk_broker *b, brk_worker *w)
{
    w->busy = false;
    w->cur = NULL;
    if (w->sq_head) {
        brk_req *r = w->sq_head;
        q_remove(w_q(w), r);
        dispatch(b, w, r);
        return;
    }
    brk_service *s = w->svc;
    while (s->q_head) {
        brk_req *r = s->q_head;
        q_remove(svc_q(s), r);
        brk_worker *o = r->sticky ? r->sticky->worker : NULL;
        if (o && o != w) {
            if (o->busy) {
                r->where = RQ_WORKER;
                r->worker = o;
                q_append(w_q(o), r);
            } else {
                dispatch(b, o, r);
            }
            continue;
        }
        dispatch(b, w, r);
        return;
    }
    if (!w->idle_listed) idle_push(w);
}

/* svc_drain hands queued requests to idle workers (after requests went back to a queue). */
static void svc_drain(brk_broker *b, brk_service *s)
{
    while (s->q_head && s->idle_head) {
        brk_worker *w = s->idle_head;
        idle_remove(w);
        worker_free(b, w);
    }
}

/* worker_remove forgets w: its in-flight request is retried once (front of the queue) or fails
 * worker_lost; requests waiting on its sticky queue go back to the front of the service queue
 * in order (they were never sent); its sticky keys are released and reported. */
static void worker_remove(brk_broker *b, brk_worker *w, uint64_t now)
{
    brk_service *s = w->svc;
    idle_remove(w);
    if (rc_heap_contains(&w->timer)) rc_heap_remove(&b->wtimers, &w->timer);
    rc_htab_remove(&b->workers, &w->node);
    if (w->prev) w->prev->next = w->next;
    else b->w_head = w->next;
    if (w->next) w->next->prev = w->prev;
    else b->w_tail = w->prev;

    /* Sticky keys first, so the requests re-queued below find them unbound. */
    while (w->sticky_head) {
        brk_sticky *k = w->sticky_head;
        sticky_unbind(k);
        b->st.moved++;
        if (b->cb.on_moved) b->cb.on_moved(b->cb.arg, s_name(k->svc), mdp_frame_of(k->key, k->len));
        sticky_maybe_free(b, k);
    }
    while (w->sq_tail) { /* back to front, prepending, keeps their order */
        brk_req *r = w->sq_tail;
        q_remove(w_q(w), r);
        r->where = RQ_SVC;
        r->worker = NULL;
        q_prepend(svc_q(s), r);
    }
    brk_req *cur = w->busy ? w->cur : NULL;
    if (cur) {
        w->cur = NULL;
        if (s->at_most_once || cur->tries >= 2) {
            cur->where = RQ_SVC; /* detached from w; req_finish must not touch it */
            q_prepend(svc_q(s), cur);
            fail_req(b, cur, BRK_WORKER_LOST);
        } else {
            s->st.retries++;
            cur->where = RQ_SVC;
            cur->worker = NULL;
            q_prepend(svc_q(s), cur);
        }
    }
    s->nworkers--;
    s->last_worker = now;
    free(w);
    svc_drain(b, s);
}

static void send_disconnect(brk_broker *b, mdp_frame id)
{
    mdp_frame out[MDP_ENC_FIXED];
    send_frames(b, out, mdp_enc_disconnect(out, MDP_ENC_FIXED, MDP_PROTO_MDP, id));
    if (b->cb.disconnect_worker) b->cb.disconnect_worker(b->cb.arg, id);
}

/* disconnect answers an MDP worker per RFC 7 (DISCONNECT) and forgets it if registered. */
static void disconnect(brk_broker *b, brk_worker *w, mdp_frame id, uint64_t now)
{
    uint8_t copy[MDP_ID_MAX];
    memcpy(copy, id.p, id.len); /* id may point into w, which worker_remove frees */
    mdp_frame c = mdp_frame_of(copy, id.len);
    if (w) worker_remove(b, w, now);
    send_disconnect(b, c);
}

static void worker_register(brk_broker *b, const mdp_msg *m, uint64_t now)
{
    mdp_frame svcname = m->proto == MDP_PROTO_MDP
                            ? m->service
                            : mdp_frame_of(b->default_name, b->default_len);
    if (m->proto == MDP_PROTO_MDP && is_mmi(svcname)) {
        /* RFC 8: mmi.* belongs to the broker. */
        b->st.mmi_service_rejected++;
        send_disconnect(b, m->identity);
        return;
    }
    brk_service *s = svc_get(b, svcname, now);
    brk_worker *w = s ? calloc(1, sizeof(*w)) : NULL;
    if (!w) {
        /* Out of memory: the worker is not registered; an MDP worker is told so it retries. */
        if (m->proto == MDP_PROTO_MDP) send_disconnect(b, m->identity);
        return;
    }
    memcpy(w->id, m->identity.p, m->identity.len);
    w->id_len = (uint8_t)m->identity.len;
    w->svc = s;
    w->proto = m->proto;
    w->registered = now;
    rc_heap_node_init(&w->timer);
    if (rc_htab_insert(&b->workers, &w->node, rc_hash(w->id, w->id_len)) < 0) {
        free(w);
        return;
    }
    w->prev = b->w_tail;
    if (b->w_tail) b->w_tail->next = w;
    else b->w_head = w;
    b->w_tail = w;
    s->nworkers++;
    s->last_worker = now;
    if (w->proto != MDP_PROTO_LRU) w->hb_next = now + w_interval(b, w);
    w_heard(b, w, now);
    worker_free(b, w);
}

/* A reply from a registered worker. */
static void worker_reply(brk_broker *b, brk_worker *w, const mdp_msg *m, uint64_t now)
{
    if (!w->busy) {
        b->st.unexpected++;
        if (w->proto == MDP_PROTO_MDP) disconnect(b, w, m->identity, now);
        return;
    }
    uint64_t t = get_token(m->addr);
    if (t == 0 || t != w->token) {
        /* A reply for another request than the one it holds. An MDP worker gets DISCONNECT
         * (a valid but unexpected command, RFC 7; its request is retried once like any lost
         * worker's); the others, which have no such command, are counted and keep theirs. */
        b->st.bad_address++;
        if (w->proto == MDP_PROTO_MDP) disconnect(b, w, m->identity, now);
        return;
    }
    if (m->nbody > BRK_MAX_FRAMES) {
        /* Cannot be passed on in one piece: the request fails rather than half-arriving. */
        b->st.bad_worker[-MDP_E_FRAMES]++;
        if (w->cur) fail_req(b, w->cur, BRK_TOO_LARGE);
        worker_free(b, w);
        return;
    }
    brk_req *r = w->cur;
    if (r) {
        w->served++;
        deliver(b, r, m->body, m->nbody);
        req_finish(b, r);
    } else {
        w->svc->st.late_dropped++; /* it timed out or its origin went away */
    }
    worker_free(b, w);
}

/* A reply from an identity the broker does not know (it was declared dead, or the broker was
 * restarted): never delivered; counted against the request's service when that is known. */
static void count_late(brk_broker *b, const mdp_msg *m)
{
    brk_req *r = req_find(b, get_token(m->addr));
    if (r) r->svc->st.late_dropped++;
    else b->st.late_unknown++;
}

void brk_worker_input(brk_broker *b, const mdp_frame *f, size_t n, uint64_t now)
{
    brk_worker *w = NULL;
    if (n > 0 && f[0].len > 0 && f[0].len <= MDP_ID_MAX) w = worker_find(b, f[0]);
    mdp_msg m;
    int rc = mdp_parse_worker(f, n, w ? w->proto : MDP_PROTO_NONE, &m);
    if (rc == MDP_E_PROTOCOL && m.kind == MDP_K_READY) {
        /* Same identity, another protocol: a different worker program took over the identity.
         * The old one is gone (its request is retried); the new one registers. */
        b->st.workers_gone++;
        worker_remove(b, w, now);
        worker_register(b, &m, now);
        return;
    }
    if (rc != MDP_OK) {
        b->st.bad_worker[-rc]++;
        if (w && w->proto != MDP_PROTO_MDP) {
            w_heard(b, w, now); /* alive, if confused; LRU/PPP have no way to say so */
            return;
        }
        /* A registered MDP worker is disconnected; an unknown peer that spoke MDP is told to
         * reconnect cleanly. A bad identity gets nothing (there is no one to answer). */
        if (rc != MDP_E_IDENTITY && (w || m.proto == MDP_PROTO_MDP))
            disconnect(b, w, m.identity, now);
        return;
    }
    if (!w) {
        switch (m.kind) {
        case MDP_K_READY:
            worker_register(b, &m, now);
            return;
        case MDP_K_REPLY:
            count_late(b, &m);
            if (m.proto == MDP_PROTO_MDP) {
                b->st.unexpected++;
                send_disconnect(b, m.identity);
            } else if (m.proto == MDP_PROTO_LRU) {
                /* A REQ worker that replied waits for its next request (the seed's broker
                 * queues a worker on any message): take it as READY. */
                mdp_msg ready = m;
                ready.kind = MDP_K_READY;
                worker_register(b, &ready, now);
            }
            /* PPP: dropped; the worker misses our heartbeats and re-announces with READY. */
            return;
        case MDP_K_HEARTBEAT:
            b->st.unexpected++;
            if (m.proto == MDP_PROTO_MDP) send_disconnect(b, m.identity);
            return;
        case MDP_K_DISCONNECT:
            return; /* already forgotten */
        default:
            return;
        }
    }
    w_heard(b, w, now);
    switch (m.kind) {
    case MDP_K_READY:
        if (w->proto == MDP_PROTO_MDP) {
            b->st.unexpected++;
            disconnect(b, w, m.identity, now);
            return;
        }
        /* A seed or PPP worker announcing itself again restarted: what it held is lost. */
        worker_remove(b, w, now);
        worker_register(b, &m, now);
        return;
    case MDP_K_REPLY:
        worker_reply(b, w, &m, now);
        return;
    case MDP_K_HEARTBEAT:
        return;
    case MDP_K_DISCONNECT: {
        b->st.workers_gone++;
        uint8_t copy[MDP_ID_MAX];
        size_t len = w->id_len;
        memcpy(copy, w->id, len);
        worker_remove(b, w, now);
        if (b->cb.disconnect_worker) b->cb.disconnect_worker(b->cb.arg, mdp_frame_of(copy, len));
        return;
    }
    default:
        return;
    }
}

void brk_worker_gone(brk_broker *b, mdp_frame id, uint64_t now)
{
    if (id.len == 0 || id.len > MDP_ID_MAX) return;
    brk_worker *w = worker_find(b, id);
    if (!w) return;
    b->st.workers_gone++;
    worker_remove(b, w, now);
}

/* ---- requests in -------------------------------------------------------------------------- */

/* mmi_answer gives the RFC 8 status for an mmi.* request. */
static int mmi_answer(const brk_broker *b, mdp_frame service, const mdp_frame *body, size_t nbody)
{
    if (!mdp_frame_is(service, "mmi.service")) return 501;
    if (nbody < 1 || body[0].len == 0 || body[0].len > MDP_SERVICE_MAX) return 404;
    const brk_service *s = svc_find(b, body[0]);
    return s && s->nworkers > 0 ? 200 : 404;
}

/* resolve finds the service a request goes to, or says why there is none. */
static brk_service *resolve(brk_broker *b, mdp_frame name, uint64_t now, enum brk_code *why)
{
    *why = BRK_NO_SERVICE;
    if (name.len > MDP_SERVICE_MAX) return NULL;
    brk_service *s = svc_find(b, name);
    if (!s) {
        /* Never seen: queue only during the start-up grace (workers may not be connected). */
        if (now - b->started >= b->p.service_grace_ns) return NULL;
        s = svc_get(b, name, now);
        if (!s) *why = BRK_OVERLOADED;
        return s;
    }
    if (s->nworkers == 0 && now - s->last_worker >= b->p.service_grace_ns) return NULL;
    return s;
}

/* submit is brk_request with the client-port extras (cid/cproto, copied with the body). */
static bool submit(brk_broker *b, brk_origin *o, uint64_t req_id, mdp_frame name,
                   const mdp_frame *body, size_t nbody, mdp_frame skey, mdp_frame cid,
                   enum mdp_proto cproto, uint64_t now)
{
    bool z = o == &b->zclients;
    if (name.len == 0) name = mdp_frame_of(b->default_name, b->default_len);
    enum brk_code why;
    brk_service *s = resolve(b, name, now, &why);
    if (!s) {
        if (why == BRK_NO_SERVICE) b->st.unknown_service++;
        if (!z) o->ops->fail(o, req_id, why);
        return false;
    }
    s->st.requests++;
    size_t total = 0;
    for (size_t i = 0; i < nbody && total <= b->p.max_body; i++) total += body[i].len;
    if (nbody > BRK_MAX_FRAMES || total > b->p.max_body || skey.len > MDP_ID_MAX) {
        s->st.failed[BRK_TOO_LARGE]++;
        if (!z) o->ops->fail(o, req_id, BRK_TOO_LARGE);
        return false;
    }
    brk_sticky *k = skey.len ? sticky_find(b, s, skey) : NULL;
    brk_worker *target = NULL;
    if (k && k->worker) target = k->worker;
    else if (s->idle_head) target = s->idle_head;
    bool full = target ? (target->busy && target->sqlen >= b->p.queue_max)
                       : s->qlen >= b->p.queue_max;
    brk_req *r = NULL;
    if (!full) r = malloc(sizeof(*r) + nbody * sizeof(mdp_frame) + total + cid.len);
    if (r && skey.len && !k) {
        k = calloc(1, sizeof(*k));
        if (k && rc_htab_insert(&b->stickies, &k->node, sticky_hash(s, skey)) < 0) {
            free(k);
            k = NULL;
        }
        if (k) {
            k->svc = s;
            k->len = (uint8_t)skey.len;
            memcpy(k->key, skey.p, skey.len);
        } else {
            free(r);
            r = NULL;
        }
    }
    if (!r) {
        s->st.failed[BRK_OVERLOADED]++;
        if (!z) o->ops->fail(o, req_id, BRK_OVERLOADED);
        return false;
    }
    /* One allocation: the struct, the frame array, then the bytes the frames point at. */
    memset(r, 0, sizeof(*r));
    r->body = (mdp_frame *)(r + 1);
    uint8_t *data = (uint8_t *)(r->body + nbody);
    for (size_t i = 0; i < nbody; i++) {
        if (body[i].len) memcpy(data, body[i].p, body[i].len);
        r->body[i] = mdp_frame_of(data, body[i].len);
        data += body[i].len;
    }
    if (cid.len) memcpy(data, cid.p, cid.len);
    r->cid = mdp_frame_of(data, cid.len);
    r->cproto = cproto;
    r->nbody = nbody;
    r->origin = o;
    r->req_id = req_id;
    r->svc = s;
    r->sticky = k;
    if (k) k->pending++;
    do r->token = b->next_token++; while (r->token == 0 || req_find(b, r->token));
    rc_heap_node_init(&r->timer);
    if (rc_htab_insert(&b->reqs, &r->node, rc_hash_mix(r->token)) < 0) {
        r->svc = NULL;
    } else if (rc_heap_push(&b->deadlines, &r->timer, now + b->p.request_timeout_ns) < 0) {
        rc_htab_remove(&b->reqs, &r->node);
        r->svc = NULL;
    }
    if (!r->svc) { /* out of memory: refused like a full queue, nothing is linked yet */
        if (k) {
            k->pending--;
            sticky_maybe_free(b, k);
        }
        free(r);
        s->st.failed[BRK_OVERLOADED]++;
        if (!z) o->ops->fail(o, req_id, BRK_OVERLOADED);
        return false;
    }
    r->onext = o->reqs;
    if (o->reqs) o->reqs->oprev = r;
    o->reqs = r;

    if (target && !target->busy) {
        dispatch(b, target, r);
    } else if (target) {
        r->where = RQ_WORKER;
        r->worker = target;
        q_append(w_q(target), r);
    } else {
        r->where = RQ_SVC;
        q_append(svc_q(s), r);
    }
    return true;
}

bool brk_request(brk_broker *b, brk_origin *o, uint64_t req_id, mdp_frame service,
                 const mdp_frame *body, size_t nbody, mdp_frame sticky, uint64_t now)
{
    if (is_mmi(service)) {
        b->st.mmi++;
        mdp_frame code = mdp_mmi_code(mmi_answer(b, service, body, nbody));
        o->ops->reply(o, req_id, service, &code, 1);
        return false;
    }
    return submit(b, o, req_id, service, body, nbody, sticky, mdp_frame_of(NULL, 0),
                  MDP_PROTO_NONE, now);
}

void brk_client_input(brk_broker *b, const mdp_frame *f, size_t n, uint64_t now)
{
    mdp_msg m;
    int rc = mdp_parse_client(f, n, &m);
    if (rc != MDP_OK) {
        b->st.bad_client[-rc]++;
        return;
    }
    if (m.proto == MDP_PROTO_MDP && is_mmi(m.service)) {
        b->st.mmi++;
        mdp_frame out[MDP_ENC_FIXED];
        int k = mdp_enc_mmi(out, MDP_ENC_FIXED, m.identity, m.service,
                            mmi_answer(b, m.service, m.body, m.nbody));
        if (k > 0 && b->cb.send_client) b->cb.send_client(b->cb.arg, out, (size_t)k);
        return;
    }
    (void)submit(b, &b->zclients, 0, m.service, m.body, m.nbody, mdp_frame_of(NULL, 0),
                 m.identity, m.proto, now);
}

void brk_origin_gone(brk_broker *b, brk_origin *o)
{
    while (o->reqs) {
        brk_req *r = o->reqs;
        r->svc->st.cancelled++;
        req_finish(b, r);
    }
}

int brk_service_set_at_most_once(brk_broker *b, mdp_frame service, bool on)
{
    if (is_mmi(service)) return -1;
    brk_service *s = svc_get(b, service, b->started);
    if (!s) return -1;
    s->at_most_once = on;
    return 0;
}

void brk_sticky_forget(brk_broker *b, mdp_frame service, mdp_frame key)
{
    if (key.len == 0 || key.len > MDP_ID_MAX) return;
    brk_service *s = svc_find(b, service.len ? service : mdp_frame_of(b->default_name, b->default_len));
    if (!s) return;
    brk_sticky *k = sticky_find(b, s, key);
    if (!k) return;
    /* Requests already queued on the worker stay there (their order is kept). */
    sticky_unbind(k);
    sticky_maybe_free(b, k);
}

/* ---- timers ------------------------------------------------------------------------------- */

void brk_tick(brk_broker *b, uint64_t now)
{
    for (rc_heap_node *t; (t = rc_heap_top(&b->deadlines)) && t->key <= now;) {
        brk_req *r = container_of(t, brk_req, timer);
        fail_req(b, r, BRK_TIMEOUT);
    }
    for (rc_heap_node *t; (t = rc_heap_top(&b->wtimers)) && t->key <= now;) {
        brk_worker *w = container_of(t, brk_worker, timer);
        if (w->expiry <= now) {
            b->st.workers_expired++;
            uint8_t copy[MDP_ID_MAX];
            size_t len = w->id_len;
            memcpy(copy, w->id, len);
            worker_remove(b, w, now);
            if (b->cb.disconnect_worker) b->cb.disconnect_worker(b->cb.arg, mdp_frame_of(copy, len));
            continue;
        }
        mdp_frame out[MDP_ENC_FIXED];
        send_frames(b, out, mdp_enc_heartbeat(out, MDP_ENC_FIXED, w->proto, w_id(w)));
        uint64_t iv = w_interval(b, w);
        /* From now, not from the missed slot: a late tick does not send a burst. */
        w->hb_next = now + iv;
        w_timer_update(b, w);
    }
}

uint64_t brk_next_deadline(const brk_broker *b)
{
    uint64_t d = UINT64_MAX;
    const rc_heap_node *t = rc_heap_top(&b->deadlines);
    if (t) d = t->key;
    t = rc_heap_top(&b->wtimers);
    if (t && t->key < d) d = t->key;
    return d;
}

/* ---- life cycle and reading --------------------------------------------------------------- */

static void zclients_reply(brk_origin *o, uint64_t id, mdp_frame s, const mdp_frame *body, size_t n)
{
    (void)o, (void)id, (void)s, (void)body, (void)n; /* never called: deliver() encodes instead */
}
static void zclients_fail(brk_origin *o, uint64_t id, enum brk_code c) { (void)o, (void)id, (void)c; }
static const brk_origin_ops zclients_ops = {zclients_reply, zclients_fail};

int brk_init(brk_broker *b, const brk_params *params, const brk_callbacks *cb, uint64_t now)
{
    memset(b, 0, sizeof(*b));
    if (params) b->p = *params;
    else brk_params_default(&b->p);
    size_t dl = b->p.default_service ? strlen(b->p.default_service) : 0;
    if (dl == 0 || dl > MDP_SERVICE_MAX || is_mmi(mdp_frame_of(b->p.default_service, dl)))
        return -1;
    if (b->p.liveness == 0) b->p.liveness = 1;
    memcpy(b->default_name, b->p.default_service, dl);
    b->default_len = (uint8_t)dl;
    b->p.default_service = NULL; /* the caller's string need not outlive init */
    b->cb = *cb;
    b->next_token = 1;
    b->started = now;
    brk_origin_init(&b->zclients, &zclients_ops, b);
    return 0;
}

void brk_release(brk_broker *b)
{
    /* Requests first (they reference services, workers and stickies), without callbacks. */
    uint32_t i = 0;
    for (rc_hnode *n = rc_htab_next(&b->reqs, &i, NULL), *nx; n; n = nx) {
        nx = rc_htab_next(&b->reqs, &i, n); /* before n is freed */
        free(container_of(n, brk_req, node));
    }
    i = 0;
    for (rc_hnode *n = rc_htab_next(&b->stickies, &i, NULL), *nx; n; n = nx) {
        nx = rc_htab_next(&b->stickies, &i, n);
        free(container_of(n, brk_sticky, node));
    }
    for (brk_worker *w = b->w_head, *nx; w; w = nx) {
        nx = w->next;
        free(w);
    }
    for (brk_service *s = b->svc_head, *nx; s; s = nx) {
        nx = s->next;
        free(s);
    }
    rc_htab_release(&b->reqs);
    rc_htab_release(&b->stickies);
    rc_htab_release(&b->workers);
    rc_htab_release(&b->services);
    rc_heap_release(&b->deadlines);
    rc_heap_release(&b->wtimers);
    memset(b, 0, sizeof(*b));
}

const brk_service *brk_service_next(const brk_broker *b, const brk_service *s)
{
    return s ? s->next : b->svc_head;
}

const brk_worker *brk_worker_next(const brk_broker *b, const brk_worker *w)
{
    return w ? w->next : b->w_head;
}

const brk_service *brk_service_find(const brk_broker *b, mdp_frame name)
{
    if (name.len == 0) name = mdp_frame_of(b->default_name, b->default_len);
    return name.len <= MDP_SERVICE_MAX ? svc_find(b, name) : NULL;
}
