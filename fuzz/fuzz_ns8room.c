/* fuzz_ns8room.c — libFuzzer target for the NetSync protocol 8 rooms (src/netsync/ns8room.c)
 * fed through nsr8_input, with a script of steps so that sequences matter:
 *   step = op u8, then for a message: ident u8, room u8, len u8, len payload bytes
 *   op & 3 == 3: advance the clock by (op >> 2) * 23 ms and tick when the deadline is reached;
 *   op & 3 == 2: toggle whether identity (op >> 2) % 6 is "connected";
 *   otherwise a payload on lane op & 1 from identity ident % 6 to room room % 4 (a 255-byte id
 *   and the empty id among them). A payload whose first byte is below 32 gets a v8 client type
 *   and, where it has one, version 8; the seeds (fuzz/corpus/ns8room) hold scripts of valid
 *   messages of a few devices, so mutations reach the handlers with matching deviceIds.
 * Checked after every step: everything sent passes ns8_check_server_msg and goes to an identity
 * or topic of bounded length; gauges agree with the rooms; every object owner is a present
 * entry (the §6.5 fix); the deadline is never in the past after a tick. No leaks (ASan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netsync/ns8room.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) \
    do {         \
        if (!(c)) abort(); \
    } while (0)

static bool gone[6];
static const char *const idents[6] = {"A", "B", "C", "tA", "tB", "\x01\x02"};

static void on_unicast(void *arg, const uint8_t *ident, size_t ilen, const uint8_t *room,
                       size_t rlen, const uint8_t *p, size_t n)
{
    (void)arg; (void)ident; (void)room;
    CHECK(ilen <= NSR8_ID_MAX && rlen <= NSR8_ID_MAX);
    CHECK(ns8_check_server_msg(p, n) == NS8_OK);
}

static void on_publish(void *arg, const uint8_t *topic, size_t tlen, const uint8_t *p, size_t n)
{
    (void)arg; (void)topic;
    CHECK(tlen <= NSR8_ID_MAX + 4);
    CHECK(ns8_check_server_msg(p, n) == NS8_OK);
}

static bool on_connected(void *arg, enum ns8_lane lane, const uint8_t *ident, size_t len)
{
    (void)arg; (void)lane;
    for (int i = 0; i < 6; i++)
        if (strlen(idents[i]) == len && memcmp(idents[i], ident, len) == 0) return !gone[i];
    return false;
}

static void check(const nsr8_rooms *rs, const nsr8_stats *st)
{
    uint64_t present = 0, devs = 0, n = 0;
    for (const nsr8_room *r = rs->head; r; r = r->next, n++) {
        uint32_t pr = 0, posed = 0;
        for (uint32_t i = 0; i < r->ndev; i++) {
            pr += r->dev[i].present;
            CHECK(r->dev[i].no != 0);
            for (uint32_t j = i + 1; j < r->ndev; j++) CHECK(r->dev[i].no != r->dev[j].no);
        }
        CHECK(pr == r->npresent);
        for (uint32_t i = 0; i < r->nobj; i++) {
            const nsr8_obj *o = &r->obj[i];
            posed += o->has_pose;
            if (!o->owner) continue;
            bool ok = false;
            for (uint32_t k = 0; k < r->ndev; k++) ok |= r->dev[k].no == o->owner && r->dev[k].present;
            CHECK(ok);
        }
        CHECK(posed == r->nobj_posed);
        present += pr;
        devs += r->ndev;
    }
    CHECK(n == rs->nrooms && st->rooms == n && st->clients == present && st->devices == devs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t types[] = {NS8_HELLO, NS8_CLIENT_POSE, NS8_OBJECT_POSE,
                                    NS8_OWNERSHIP_REQUEST, NS8_RPC, NS8_GLOBAL_VAR_SET,
                                    NS8_CLIENT_VAR_SET, NS8_CLIENT_VAR_CLEAR};
    static uint8_t long_room[NSR8_ID_MAX];
    memset(long_room, 'r', sizeof(long_room));
    const uint8_t *rooms[4] = {(const uint8_t *)"x", (const uint8_t *)"", long_room,
                               (const uint8_t *)"y"};
    const size_t room_len[4] = {1, 0, sizeof(long_room), 1};
    memset(gone, 0, sizeof(gone));

    nsr8_params p;
    nsr8_params_default(&p);
    p.max_devices = 6;
    p.max_rooms = 3;
    p.max_objects = 4;
    p.max_global_vars = 3;
    p.max_client_vars = 3;
    p.max_pending = 8;
    p.expiry_ns = 3000 * 1000000ull;
    p.expiry_sweep_ns = 500 * 1000000ull;
    p.empty_room_ns = 4000 * 1000000ull;
    nsr8_stats st;
    memset(&st, 0, sizeof(st));
    nsr8_io io = {on_unicast, on_publish, on_connected, NULL};
    nsr8_rooms rs;
    nsr8_rooms_init(&rs, &p, &st, &io);
    uint64_t now = 1000000000ull;
    uint8_t msg[256];
    size_t i = 0;
    while (i < size) {
        uint8_t op = data[i++];
        if ((op & 3) == 3) {
            now += (uint64_t)(op >> 2) * 23 * 1000000ull;
            if (now >= nsr8_next_deadline(&rs)) CHECK(nsr8_tick(&rs, now) > now);
        } else if ((op & 3) == 2) {
            gone[(op >> 2) % 6] ^= 1;
        } else {
            if (i + 3 > size) break;
            uint8_t ident = data[i] % 6, room = data[i + 1] % 4, len = data[i + 2];
            i += 3;
            if (len > size - i) len = (uint8_t)(size - i);
            memcpy(msg, data + i, len);
            i += len;
            if (len && msg[0] < 32) {
                msg[0] = types[msg[0] % sizeof(types)];
                if (len > 1 && msg[0] >= 11) msg[1] = NS8_VERSION;
            }
            nsr8_input(&rs, op & 1 ? NS8_LANE_TRANSFORM : NS8_LANE_CONTROL,
                       (const uint8_t *)idents[ident], strlen(idents[ident]), rooms[room],
                       room_len[room], msg, len, now);
        }
        check(&rs, &st);
    }
    nsr8_rooms_release(&rs);
    return 0;
}
