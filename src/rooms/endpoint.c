/* endpoint.c — see endpoint.h. */
#include "rooms/endpoint.h"

#include <string.h>

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
