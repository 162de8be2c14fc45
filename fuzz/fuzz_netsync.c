/* fuzz_netsync.c — libFuzzer target for src/codec/nsproto.c.
 *
 * The input is one payload as a NetSync client would send it. Checked on every input:
 *   - the server->client checker and every client->server parser run on it without reading
 *     out of bounds (ASan) and agree with nsy_classify about which messages can parse;
 *   - every view a parser returns lies inside the input, nVirt is never above 50, stealth
 *     implies no virtuals;
 *   - what the server would emit from a parsed message (ROOM_TRANSFORM entry, RPC) passes the
 *     strict nsy_check_server_msg and carries the input bytes unchanged (bit-exact floats);
 *   - re-encoding a parsed message and parsing it again gives the same fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/nsproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(const uint8_t *data, size_t size, const uint8_t *p, size_t n)
{
    if (n == 0) return;
    if (p < data || p + n > data + size) abort();
}

static void same_str(nsy_str a, nsy_str b)
{
    if (a.len != b.len || (a.len && memcmp(a.p, b.p, a.len) != 0)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)nsy_check_server_msg(data, size);
    int type = nsy_classify(data, size);
    rc_buf b = RC_BUF_INIT;
    nsy_enc e;
    nsy_enc_init(&e, &b);
    if (type == NSY_CLIENT_TRANSFORM) {
        nsy_client_transform t, t2;
        if (nsy_parse_client_transform(data, size, &t) == NSY_OK) {
            inside(data, size, t.device_id.p, t.device_id.len);
            inside(data, size, t.body, NSY_BODY_SIZE);
            inside(data, size, t.virt, (size_t)t.nvirt * NSY_TRANSFORM_SIZE);
            if (t.nvirt > NSY_MAX_VIRTUAL || (t.stealth && t.nvirt)) abort();
            /* what a tick would publish */
            size_t at = nsy_enc_room_transform_begin(&e, "r", 1);
            nsy_enc_entry(&e, 1, t.body, t.nvirt, t.virt);
            nsy_patch_u16(&e, at, 1);
            if (e.err) abort();
            const uint8_t *o = (const uint8_t *)rc_buf_head(&b);
            if (nsy_check_server_msg(o, rc_buf_size(&b)) != NSY_OK) abort();
            if (memcmp(o + at + 4, t.body, NSY_BODY_SIZE) != 0) abort();
            if (t.nvirt && memcmp(o + at + 4 + NSY_BODY_SIZE + 1, t.virt,
                                  (size_t)t.nvirt * NSY_TRANSFORM_SIZE) != 0)
                abort();
            rc_buf_reset(&b);
            nsy_enc_init(&e, &b);
            nsy_enc_client_transform(&e, t.device_id.p, t.device_id.len, t.body, t.nvirt, t.virt);
            if (e.err) abort();
            if (nsy_parse_client_transform((uint8_t *)rc_buf_head(&b), rc_buf_size(&b), &t2))
                abort();
            same_str(t.device_id, t2.device_id);
            if (t.nvirt != t2.nvirt || t.stealth != t2.stealth) abort();
        }
    } else if (type == NSY_RPC) {
        nsy_rpc r, r2;
        if (nsy_parse_rpc(data, size, &r) == NSY_OK) {
            inside(data, size, r.name.p, r.name.len);
            inside(data, size, r.args.p, r.args.len);
            nsy_enc_rpc(&e, r.sender, r.name.p, r.name.len, r.args.p, r.args.len);
            if (e.err) abort();
            const uint8_t *o = (const uint8_t *)rc_buf_head(&b);
            if (nsy_check_server_msg(o, rc_buf_size(&b)) != NSY_OK) abort();
            if (nsy_parse_rpc(o, rc_buf_size(&b), &r2) != NSY_OK || r2.args_cut) abort();
            same_str(r.name, r2.name);
            same_str(r.args, r2.args);
            if (r.sender != r2.sender) abort();
        }
    } else if (type == NSY_GLOBAL_VAR_SET || type == NSY_CLIENT_VAR_SET) {
        nsy_var_set v, v2;
        int rc = type == NSY_GLOBAL_VAR_SET ? nsy_parse_global_var_set(data, size, &v)
                                           : nsy_parse_client_var_set(data, size, &v);
        if (rc == NSY_OK) {
            inside(data, size, v.name.p, v.name.len);
            inside(data, size, v.value.p, v.value.len);
            size_t nl = nsy_utf8_prefix(v.name.p, v.name.len, 64);
            size_t vl = nsy_utf8_prefix(v.value.p, v.value.len, 1024);
            if (nl > v.name.len || vl > v.value.len) abort();
            if (type == NSY_GLOBAL_VAR_SET) {
                nsy_enc_global_var_set(&e, v.sender, v.name.p, v.name.len, v.value.p, v.value.len,
                                      v.timestamp);
                rc = nsy_parse_global_var_set((uint8_t *)rc_buf_head(&b), rc_buf_size(&b), &v2);
            } else {
                nsy_enc_client_var_set(&e, v.sender, v.target, v.name.p, v.name.len, v.value.p,
                                      v.value.len, v.timestamp);
                rc = nsy_parse_client_var_set((uint8_t *)rc_buf_head(&b), rc_buf_size(&b), &v2);
            }
            if (e.err || rc != NSY_OK) abort();
            same_str(v.name, v2.name);
            same_str(v.value, v2.value);
            if (v.sender != v2.sender || v.target != v2.target ||
                memcmp(&v.timestamp, &v2.timestamp, sizeof(double)) != 0)
                abort();
        }
    }
    rc_buf_release(&b);
    return 0;
}
