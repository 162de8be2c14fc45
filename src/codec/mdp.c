/* mdp.c — frame codec of the worker broker's protocols (seed LRU, Paranoid Pirate, MDP/0.1);
 * see mdp.h for the message shapes and the rules. */
#include "codec/mdp.h"

#include <string.h>

static const uint8_t k_ready[] = "READY";
static const uint8_t k_whdr[] = MDP_WORKER_HDR;
static const uint8_t k_chdr[] = MDP_CLIENT_HDR;
/* One static byte per command, so an encoded command frame needs no caller storage. */
static const uint8_t k_cmd[6] = {0, 1, 2, 3, 4, 5};
static const uint8_t k_200[] = "200", k_404[] = "404", k_501[] = "501";

bool mdp_frame_is(mdp_frame f, const char *s)
{
    size_t n = strlen(s);
    return f.len == n && (n == 0 || memcmp(f.p, s, n) == 0);
}

const char *mdp_err_name(int err)
{
    switch (err) {
    case MDP_OK: return "ok";
    case MDP_E_IDENTITY: return "identity";
    case MDP_E_FRAMES: return "frames";
    case MDP_E_DELIM: return "delimiter";
    case MDP_E_HEADER: return "header";
    case MDP_E_COMMAND: return "command";
    case MDP_E_SERVICE: return "service";
    case MDP_E_ADDRESS: return "address";
    case MDP_E_PROTOCOL: return "protocol";
    }
    return "unknown";
}

static void msg_reset(mdp_msg *m, const mdp_frame *f)
{
    memset(m, 0, sizeof(*m));
    m->identity = f[0];
}

static bool addr_ok(mdp_frame a) { return a.len > 0 && a.len <= MDP_ID_MAX; }

/* The three worker protocols, parsed without regard to the hint. f[1] decides the family:
 * empty -> LRU or MDP (REQ adds the empty delimiter, MDP workers send it), non-empty -> PPP
 * (a DEALER sends its parts bare); mdp_parse_worker picks one. */
static int parse_lru(const mdp_frame *f, size_t n, mdp_msg *m)
{
    m->proto = MDP_PROTO_LRU;
    if (n == 3) {
        if (!mdp_frame_is(f[2], "READY")) return MDP_E_COMMAND;
        m->kind = MDP_K_READY;
        return MDP_OK;
    }
    /* [id][""][A][""][body >= 1] */
    if (n < 5) return MDP_E_FRAMES;
    if (!addr_ok(f[2])) return MDP_E_ADDRESS;
    if (f[3].len != 0) return MDP_E_DELIM;
    m->kind = MDP_K_REPLY;
    m->addr = f[2];
    m->body = f + 4;
    m->nbody = n - 4;
    return MDP_OK;
}

static int parse_mdpw(const mdp_frame *f, size_t n, mdp_msg *m)
{
    m->proto = MDP_PROTO_MDP;
    if (n < 4) return MDP_E_FRAMES;
    if (f[3].len != 1) return MDP_E_COMMAND;
    switch (f[3].p[0]) {
    case MDP_CMD_READY:
        if (n != 5) return MDP_E_FRAMES;
        if (f[4].len == 0 || f[4].len > MDP_SERVICE_MAX) return MDP_E_SERVICE;
        m->kind = MDP_K_READY;
        m->service = f[4];
        return MDP_OK;
    case MDP_CMD_REPLY:
        /* [id][""]["MDPW01"][0x03][A][""][body >= 0] */
        if (n < 6) return MDP_E_FRAMES;
        if (!addr_ok(f[4])) return MDP_E_ADDRESS;
        if (f[5].len != 0) return MDP_E_DELIM;
        m->kind = MDP_K_REPLY;
        m->addr = f[4];
        m->body = f + 6;
        m->nbody = n - 6;
        return MDP_OK;
    case MDP_CMD_HEARTBEAT:
        if (n != 4) return MDP_E_FRAMES;
        m->kind = MDP_K_HEARTBEAT;
        return MDP_OK;
    case MDP_CMD_DISCONNECT:
        if (n != 4) return MDP_E_FRAMES;
        m->kind = MDP_K_DISCONNECT;
        return MDP_OK;
    }
    /* 0x02 REQUEST is broker->worker only: from a worker it is no valid command. */
    return MDP_E_COMMAND;
}

static int parse_ppp(const mdp_frame *f, size_t n, mdp_msg *m)
{
    m->proto = MDP_PROTO_PPP;
    if (n == 2) {
        if (f[1].len != 1) return MDP_E_COMMAND;
        if (f[1].p[0] == MDP_PPP_READY) m->kind = MDP_K_READY;
        else if (f[1].p[0] == MDP_PPP_HEARTBEAT) m->kind = MDP_K_HEARTBEAT;
        else return MDP_E_COMMAND;
        return MDP_OK;
    }
    /* [id][A][""][body >= 1] */
    if (n < 4) return MDP_E_FRAMES;
    if (!addr_ok(f[1])) return MDP_E_ADDRESS;
    if (f[2].len != 0) return MDP_E_DELIM;
    m->kind = MDP_K_REPLY;
    m->addr = f[1];
    m->body = f + 3;
    m->nbody = n - 3;
    return MDP_OK;
}

int mdp_parse_worker(const mdp_frame *f, size_t n, enum mdp_proto hint, mdp_msg *out)
{
    if (n == 0) {
        memset(out, 0, sizeof(*out));
        return MDP_E_IDENTITY;
    }
    msg_reset(out, f);
    if (f[0].len == 0 || f[0].len > MDP_ID_MAX) return MDP_E_IDENTITY;
    if (n < 2) return MDP_E_FRAMES;
    int rc;
    if (f[1].len != 0) {
        rc = parse_ppp(f, n, out);
    } else if (n < 3) {
        return MDP_E_FRAMES;
    } else if (mdp_frame_is(f[2], MDP_WORKER_HDR) && hint != MDP_PROTO_LRU) {
        rc = parse_mdpw(f, n, out);
    } else if (f[2].len == 6 && memcmp(f[2].p, "MDP", 3) == 0 && hint != MDP_PROTO_LRU) {
        /* MDPC01 on the worker port, MDPW02 (MDP/0.2 is not served): a wrong header, not a
         * seed reply addressed to a client called "MDP...". */
        out->proto = MDP_PROTO_MDP;
        return MDP_E_HEADER;
    } else {
        rc = parse_lru(f, n, out);
    }
    if (rc == MDP_OK && hint != MDP_PROTO_NONE && out->proto != hint) return MDP_E_PROTOCOL;
    return rc;
}

int mdp_parse_client(const mdp_frame *f, size_t n, mdp_msg *out)
{
    if (n == 0) {
        memset(out, 0, sizeof(*out));
        return MDP_E_IDENTITY;
    }
    msg_reset(out, f);
    if (f[0].len == 0 || f[0].len > MDP_ID_MAX) return MDP_E_IDENTITY;
    if (n < 3) return MDP_E_FRAMES;
    if (f[1].len != 0) return MDP_E_DELIM;
    out->kind = MDP_K_REQUEST;
    if (mdp_frame_is(f[2], MDP_CLIENT_HDR)) {
        out->proto = MDP_PROTO_MDP;
        if (n < 4) return MDP_E_FRAMES;
        if (f[3].len == 0 || f[3].len > MDP_SERVICE_MAX) return MDP_E_SERVICE;
        out->service = f[3];
        out->body = f + 4;
        out->nbody = n - 4;
        return MDP_OK;
    }
    out->proto = MDP_PROTO_LRU;
    out->body = f + 2;
    out->nbody = n - 2;
    return MDP_OK;
}

/* ---- encoding ---------------------------------------------------------------------------- */

/* A small writer over the caller's array; `ok` goes false once cap is exceeded. */
typedef struct wr {
    mdp_frame *out;
    size_t cap, n;
    bool ok;
} wr;

static void put(wr *w, const void *p, size_t len)
{
    if (w->n >= w->cap) {
        w->ok = false;
        return;
    }
    w->out[w->n].p = p;
    w->out[w->n].len = len;
    w->n++;
}

static void put_f(wr *w, mdp_frame f) { put(w, f.p, f.len); }
static void put_empty(wr *w) { put(w, k_cmd, 0); }
static void put_body(wr *w, const mdp_frame *b, size_t nb)
{
    for (size_t i = 0; i < nb; i++) put_f(w, b[i]);
}
static int done(wr *w) { return w->ok ? (int)w->n : -1; }

/* What precedes the address of a request or reply in each worker protocol: the REQ
 * envelope's empty frame (seed LRU), nothing (Paranoid Pirate), or the empty frame, MDPW01
 * and the command (MDP). False for an unknown protocol. */
static bool put_work_head(wr *w, enum mdp_proto proto, int cmd)
{
    switch (proto) {
    case MDP_PROTO_LRU:
        put_empty(w);
        return true;
    case MDP_PROTO_PPP:
        return true;
    case MDP_PROTO_MDP:
        put_empty(w);
        put(w, k_whdr, 6);
        put(w, &k_cmd[cmd], 1);
        return true;
    default:
        return false;
    }
}

int mdp_enc_request(mdp_frame *out, size_t cap, enum mdp_proto proto, mdp_frame identity,
                    mdp_frame addr, const mdp_frame *body, size_t nbody)
{
    wr w = {out, cap, 0, true};
    put_f(&w, identity);
    if (!put_work_head(&w, proto, MDP_CMD_REQUEST)) return -1;
    put_f(&w, addr);
    put_empty(&w);
    put_body(&w, body, nbody);
    return done(&w);
}

int mdp_enc_heartbeat(mdp_frame *out, size_t cap, enum mdp_proto proto, mdp_frame identity)
{
    wr w = {out, cap, 0, true};
    put_f(&w, identity);
    if (proto == MDP_PROTO_PPP) {
        put(&w, &k_cmd[MDP_PPP_HEARTBEAT], 1);
    } else if (proto == MDP_PROTO_MDP) {
        put_empty(&w);
        put(&w, k_whdr, 6);
        put(&w, &k_cmd[MDP_CMD_HEARTBEAT], 1);
    } else {
        return -1;
    }
    return done(&w);
}

int mdp_enc_disconnect(mdp_frame *out, size_t cap, enum mdp_proto proto, mdp_frame identity)
{
    if (proto != MDP_PROTO_MDP) return -1;
    wr w = {out, cap, 0, true};
    put_f(&w, identity);
    put_empty(&w);
    put(&w, k_whdr, 6);
    put(&w, &k_cmd[MDP_CMD_DISCONNECT], 1);
    return done(&w);
}

int mdp_enc_client_reply(mdp_frame *out, size_t cap, enum mdp_proto proto, mdp_frame identity,
                         mdp_frame service, const mdp_frame *body, size_t nbody)
{
    wr w = {out, cap, 0, true};
    put_f(&w, identity);
    put_empty(&w);
    if (proto == MDP_PROTO_MDP) {
        put(&w, k_chdr, 6);
        put_f(&w, service);
    } else if (proto != MDP_PROTO_LRU) {
        return -1;
    }
    put_body(&w, body, nbody);
    return done(&w);
}

mdp_frame mdp_mmi_code(int code)
{
    switch (code) {
    case 200: return mdp_frame_of(k_200, 3);
    case 404: return mdp_frame_of(k_404, 3);
    default: return mdp_frame_of(k_501, 3);
    }
}

int mdp_enc_mmi(mdp_frame *out, size_t cap, mdp_frame identity, mdp_frame service, int code)
{
    mdp_frame c = mdp_mmi_code(code);
    return mdp_enc_client_reply(out, cap, MDP_PROTO_MDP, identity, service, &c, 1);
}

int mdp_enc_worker_ready(mdp_frame *out, size_t cap, enum mdp_proto proto, mdp_frame service)
{
    wr w = {out, cap, 0, true};
    switch (proto) {
    case MDP_PROTO_LRU:
        put_empty(&w);
        put(&w, k_ready, 5);
        break;
    case MDP_PROTO_PPP:
        put(&w, &k_cmd[MDP_PPP_READY], 1);
        break;
    case MDP_PROTO_MDP:
        put_empty(&w);
        put(&w, k_whdr, 6);
        put(&w, &k_cmd[MDP_CMD_READY], 1);
        put_f(&w, service);
        break;
    default:
        return -1;
    }
    return done(&w);
}

int mdp_enc_worker_reply(mdp_frame *out, size_t cap, enum mdp_proto proto, mdp_frame addr,
                         const mdp_frame *body, size_t nbody)
{
    wr w = {out, cap, 0, true};
    if (!put_work_head(&w, proto, MDP_CMD_REPLY)) return -1;
    put_f(&w, addr);
    put_empty(&w);
    put_body(&w, body, nbody);
    return done(&w);
}
