/* endpoint.c — see endpoint.h. */
#include "rooms/endpoint.h"

#include <string.h>
#include <sys/random.h>

#include "rooms/wire.h"

void rc_endpoint_init(rc_endpoint *ep, const rc_endpoint_ops *ops, uint8_t wire, uint64_t id)
{
    memset(ep, 0, sizeof(*ep));
    ep->deliver = ops->deliver;
    ep->ops = ops;
    ep->wire = wire;
    ep->client_id = id;
    ep->open = true;
}

const uint8_t *rc_endpoint_session(rc_endpoint *ep)
{
    if (!ep->has_session) {
        /* A session is a secret: it scopes the idempotency keys of whoever holds it, so it
         * must not be guessable. getrandom() only fails before the kernel's pool is
         * initialised, long before a client can connect; should it fail, the token is
         * still unique per endpoint (its address and id), only not secret. */
        if (getrandom(ep->session, sizeof(ep->session), 0) != (ssize_t)sizeof(ep->session)) {
            uint64_t a = (uint64_t)(uintptr_t)ep, b = ep->client_id;
            memcpy(ep->session, &a, 8);
            memcpy(ep->session + 8, &b, 8);
        }
        ep->has_session = true;
    }
    return ep->session;
}

void rc_endpoint_send_text(rc_endpoint *ep, const char *json, size_t n)
{
    rc_msg *m = rc_wire_text(ep->wire, json, n);
    rc_endpoint_give(ep, m);
    if (m) rc_msg_unref(m);
}

uint32_t rc_endpoints_send_text(rc_endpoint *const *eps, uint32_t n, const char *json, size_t len)
{
    rc_msg *enc[RC_WIRE__COUNT] = {0};
    for (uint32_t i = 0; i < n; i++) {
        uint8_t w = eps[i]->wire;
        if (!enc[w]) enc[w] = rc_wire_text(w, json, len);
        rc_endpoint_give(eps[i], enc[w]);
    }
    for (int w = 0; w < RC_WIRE__COUNT; w++)
        if (enc[w]) rc_msg_unref(enc[w]);
    return n;
}
