/* fuzz_ns8proto.c — libFuzzer target for the NetSync protocol 8 codec (src/codec/ns8proto.c).
 *
 * The first input byte picks the lane and the classification hint, the rest is one payload.
 * Checked: the parsers and the classifier never read out of bounds (ASan); a parsed pose body
 * re-parses from its relay form to the same length with nVirt <= 50, and a ROOM_POSE built from
 * it passes the strict server-message check; every parsed control message re-encodes to exactly
 * the bytes it came from (full-length parse, so no byte may be lost or invented); a parsed
 * object pose re-encodes to its bytes minus the trailing ones; display decoding never yields a
 * non-finite quaternion.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/ns8proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) \
    do {         \
        if (!(c)) abort(); \
    } while (0)

static void same_bytes(const rc_buf *b, const uint8_t *p, size_t n)
{
    CHECK(rc_buf_size(b) == n && memcmp(rc_buf_head(b), p, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    enum ns8_lane lane = data[0] & 1 ? NS8_LANE_TRANSFORM : NS8_LANE_CONTROL;
    enum ns8_gen hint = (enum ns8_gen)((data[0] >> 1) % 4);
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    /* a copy of exactly n bytes, so ASan sees any read past the payload */
    uint8_t *m = malloc(n ? n : 1);
    if (!m) return 0;
    memcpy(m, p, n);
    ns8_class c;
    ns8_msg msg;
    ns8_classify(lane, m, n, hint, &c, &msg);
    int rc = ns8_parse(m, n, &msg);
    rc_buf b = RC_BUF_INIT;
    ns8_enc e;
    ns8_enc_init(&e, &b);
    if (rc == NS8_OK) {
        switch (msg.type) {
        case NS8_HELLO:
            ns8_enc_hello(&e, msg.u.hello.flags, msg.u.hello.device_id.p, msg.u.hello.device_id.len);
            same_bytes(&b, m, n);
            break;
        case NS8_RPC: {
            const ns8_rpc *r = &msg.u.rpc;
            ns8_enc_rpc(&e, r->sender, r->device_id.p, r->device_id.len, r->targets, r->ntargets,
                        r->name.p, r->name.len, r->args.p, r->args.len);
            same_bytes(&b, m, n);
            CHECK(ns8_check_server_msg(m, n) == NS8_OK);
            break;
        }
        case NS8_GLOBAL_VAR_SET: {
            const ns8_var_set *v = &msg.u.var;
            ns8_enc_global_var_set(&e, v->sender, v->device_id.p, v->device_id.len, v->name.p,
                                   v->name.len, v->value.p, v->value.len);
            same_bytes(&b, m, n);
            break;
        }
        case NS8_CLIENT_VAR_SET: {
            const ns8_var_set *v = &msg.u.var;
            ns8_enc_client_var_set(&e, v->sender, v->device_id.p, v->device_id.len, v->target,
                                   v->name.p, v->name.len, v->value.p, v->value.len);
            same_bytes(&b, m, n);
            break;
        }
        case NS8_CLIENT_VAR_CLEAR:
            ns8_enc_var_clear(&e, msg.u.clear.sender, msg.u.clear.device_id.p,
                              msg.u.clear.device_id.len);
            same_bytes(&b, m, n);
            break;
        case NS8_OWNERSHIP_REQUEST:
            ns8_enc_own_req(&e, msg.u.own.device_id.p, msg.u.own.device_id.len, msg.u.own.op,
                            msg.u.own.object_id);
            same_bytes(&b, m, n);
            break;
        case NS8_OBJECT_POSE: {
            const ns8_object_pose *o = &msg.u.obj;
            ns8_enc_object_pose(&e, o->device_id.p, o->device_id.len, o->object_id, o->seq, o->body);
            same_bytes(&b, m, n - o->trailing);
            ns8_object_view ov;
            ns8_decode_object(o->body, &ov);
            for (int i = 0; i < 4; i++) CHECK(isfinite(ov.rot[i]));
            break;
        }
        case NS8_CLIENT_POSE: {
            const ns8_pose *ps = &msg.u.pose;
            CHECK(ps->body.len <= NS8_BODY_MAX && ps->body.nvirt <= NS8_MAX_VIRTUAL);
            uint8_t relay[NS8_BODY_MAX];
            ns8_body_copy_relay(&ps->body, relay);
            ns8_body again;
            CHECK(ns8_parse_body(relay, ps->body.len, &again) == NS8_OK);
            CHECK(again.len == ps->body.len && !again.nvirt_clamped);
            size_t at = ns8_enc_room_pose_begin(&e, "room", 4, 1.5);
            ns8_enc_room_pose_entry(&e, 1, 1.0, relay, ps->body.len);
            ns8_enc_room_pose_entry(&e, 2, 1.0, relay, ps->body.len);
            ns8_patch_u16(&e, at, 2);
            CHECK(!e.err);
            CHECK(ns8_check_server_msg((const uint8_t *)rc_buf_head(&b), rc_buf_size(&b)) == NS8_OK);
            ns8_pose_view v;
            CHECK(ns8_decode_body(relay, ps->body.len, &v) == NS8_OK);
            for (int i = 0; i < 4; i++) CHECK(isfinite(v.head_rot[i]) && isfinite(v.right_rot[i]));
            break;
        }
        default: abort();
        }
        CHECK(!e.err);
    }
    if (c.gen == NS8_GEN_V8 && c.err == NS8_OK) CHECK(rc == NS8_OK);
    (void)ns8_check_server_msg(m, n);
    rc_buf_release(&b);
    free(m);
    return 0;
}
