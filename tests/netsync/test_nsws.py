"""WebSocket observers of NetSync rooms (docs/netsync.md, "Observers"): a websockets client
watches a room that pyzmq NetSync clients are in, receives its state as JSON, sends RPCs and
sets network variables; and every bad request gets its error."""

import asyncio
import json
import math
import re
import struct
import time
import urllib.request

import pytest
import websockets

from conftest import NAN, STEALTH_BODY, Client, NSServer, body, gvar, wait_sub

IO = 5.0   # bound on any one wait (a broken server fails instead of hanging)


def f32(x):
    """x rounded to float32, as a Python float."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def floats(b):
    return list(struct.unpack(f"<{len(b) // 4}f", b))


def same_f32(json_value, expected):
    if json_value is None:
        return not math.isfinite(expected)
    return f32(json_value) == expected


async def ws_connect(server):
    return await websockets.connect(f"ws://127.0.0.1:{server.http_port}/", max_size=None)


async def recv_until(ws, pred, timeout=IO):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no matching message")
        m = json.loads(await asyncio.wait_for(ws.recv(), left))
        if pred(m):
            return m


async def request(ws, msg, reply_type):
    await ws.send(json.dumps(msg))
    return await recv_until(ws, lambda m: m["type"] in (reply_type, "error"))


async def request_seen(ws, msg, *types):
    """Sends msg and returns {type: message} once each of types has arrived (in any order)."""
    await ws.send(json.dumps(msg))
    seen = {}
    while set(types) - set(seen):
        m = await recv_until(ws, lambda m: m["type"] in types + ("error",))
        assert m["type"] != "error", m
        seen[m["type"]] = m
    return seen


def joined(ctx, server, room, dev, body_bytes=None, virt=b""):
    c = Client(ctx, server, room, dev)
    wait_sub()
    c.send_transform(body_bytes, virt)
    c.number()
    return c


def http_get(server, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}{path}", timeout=5) as r:
        return r.read().decode()


def run(coro):
    return asyncio.run(coro)


def test_observe_before_and_after_clients_join(ctx, steady_server):
    async def go():
        ws = await ws_connect(steady_server)
        m = await request(ws, {"type": "netsync_observe", "room": "ob1"}, "netsync_observing")
        assert m == {"type": "netsync_observing", "room": "ob1", "tick_ms": 50.0,
                     "exists": False}
        m = await recv_until(ws, lambda m: m["type"] == "netsync_state")
        assert m["exists"] is False and m["clients"] == [] and m["stealth"] == []

        virt = struct.pack("<12f", *[100.5 + i for i in range(12)])
        a = await asyncio.to_thread(joined, ctx, steady_server, "ob1", "devA", body(1.0), virt)
        b = await asyncio.to_thread(joined, ctx, steady_server, "ob1", "cam", STEALTH_BODY)
        m = await recv_until(ws, lambda m: m["type"] == "netsync_state" and m["exists"]
                             and m["clients"] and m["stealth"])
        assert [c["device"] for c in m["clients"]] == ["devA"]
        cl = m["clients"][0]
        assert cl["no"] == 1 and cl["transforms"] >= 1
        want = floats(body(1.0))
        got = cl["physical"] + cl["head"] + cl["right"] + cl["left"]
        assert len(got) == 24 and all(same_f32(g, w) for g, w in zip(got, want))
        assert len(cl["virtual"]) == 2
        assert all(same_f32(g, w) for g, w in zip(cl["virtual"][0] + cl["virtual"][1],
                                                    floats(virt)))
        assert m["stealth"] == [{"no": 2, "device": "cam", "transforms": m["stealth"][0]["transforms"]}]
        assert m["devices"] == 2 and m["transforms_in"] >= 2

        # A new pose reaches the observer; a float without a JSON form is null.
        pose = bytearray(body(7.25))
        pose[4:8] = struct.pack("<f", NAN)
        a.send_transform(bytes(pose))
        m = await recv_until(ws, lambda m: m["type"] == "netsync_state" and m["clients"]
                             and m["clients"][0]["physical"][0] == 7.25)
        assert m["clients"][0]["physical"][1] is None
        assert same_f32(m["clients"][0]["physical"][2], floats(body(7.25))[2])

        # A second observe of the same room is idempotent; unobserve stops the stream.
        m = await request(ws, {"type": "netsync_observe", "room": "ob1"}, "netsync_observing")
        assert m["exists"] is True
        m = await request(ws, {"type": "netsync_unobserve", "room": "ob1"}, "netsync_unobserved")
        assert m == {"type": "netsync_unobserved", "room": "ob1"}
        a.send_transform(body(9.0))
        with pytest.raises(asyncio.TimeoutError):
            await recv_until(ws, lambda m: True, timeout=0.5)
        await ws.close()
        a.close()
        b.close()
    run(go())


def test_rpc_both_ways(ctx, steady_server):
    async def go():
        a = await asyncio.to_thread(joined, ctx, steady_server, "ob2", "devA")
        ws = await ws_connect(steady_server)
        await request(ws, {"type": "netsync_observe", "room": "ob2"}, "netsync_observing")
        # observer -> room, as client number 0; args as JSON text or as a string
        seen = await request_seen(ws, {"type": "netsync_rpc", "room": "ob2", "name": "Flash",
                                       "args": ["red", 2]}, "netsync_rpc_sent", "netsync_rpc")
        assert seen["netsync_rpc_sent"] == {"type": "netsync_rpc_sent", "room": "ob2"}
        assert seen["netsync_rpc"] == {"type": "netsync_rpc", "room": "ob2", "sender": 0,
                                       "name": "Flash", "args": '["red", 2]'}
        got = await asyncio.to_thread(a.recv_until, lambda m: m[0] == "rpc", 3)
        assert got == ("rpc", 0, "Flash", b'["red", 2]')
        await request_seen(ws, {"type": "netsync_rpc", "room": "ob2", "name": "Say",
                                "args": "h\u00e9llo"}, "netsync_rpc_sent", "netsync_rpc")
        got = await asyncio.to_thread(a.recv_until, lambda m: m[0] == "rpc", 3)
        assert got == ("rpc", 0, "Say", "h\u00e9llo".encode())
        # client -> room: the observer sees it with the client's real number
        a.send(b"\x03" + struct.pack("<H", 99) + bytes([4]) + b"Wave" + struct.pack("<H", 2) + b"[]")
        m = await recv_until(ws, lambda m: m["type"] == "netsync_rpc" and m["name"] == "Wave")
        assert m["sender"] == 1 and m["args"] == "[]"
        await ws.close()
        a.close()
    run(go())


def test_set_variables(ctx, steady_server):
    async def go():
        a = await asyncio.to_thread(joined, ctx, steady_server, "ob3", "devA")
        ws = await ws_connect(steady_server)
        await request(ws, {"type": "netsync_observe", "room": "ob3"}, "netsync_observing")

        m = await request(ws, {"type": "netsync_set", "room": "ob3", "name": "phase",
                               "value": "intro"}, "netsync_set_result")
        assert m == {"type": "netsync_set_result", "room": "ob3", "name": "phase",
                     "result": "applied"}
        got = await asyncio.to_thread(a.recv_until, lambda m: m[0] == "gsync", 3)
        assert [(n, v, w) for n, v, _, w in got[1]] == [("phase", "intro", 0)]
        m = await recv_until(ws, lambda m: m["type"] == "netsync_vars")
        assert m["full"] is False and m["clients"] == []
        assert [(v["name"], v["value"], v["writer"]) for v in m["globals"]] == [("phase", "intro", 0)]

        m = await request(ws, {"type": "netsync_set", "room": "ob3", "name": "phase",
                               "value": "intro"}, "netsync_set_result")
        assert m["result"] == "unchanged"

        # client variable of a device by deviceId
        m = await request(ws, {"type": "netsync_set", "room": "ob3", "device": "devA",
                               "name": "hp", "value": "10"}, "netsync_set_result")
        assert m["result"] == "applied" and m["device"] == "devA"
        got = await asyncio.to_thread(a.recv_until, lambda m: m[0] == "csync", 3)
        assert [(no, [(n, v, w) for n, v, _, w in vs]) for no, vs in got[1]] == \
            [(1, [("hp", "10", 0)])]
        m = await recv_until(ws, lambda m: m["type"] == "netsync_vars" and m["clients"])
        assert m["clients"][0]["target"] == 1
        assert m["clients"][0]["vars"][0]["name"] == "hp"

        # conflict rule: a client's newer timestamp wins over the observer's wall clock
        a.send(gvar(1, "phase", "finale", time.time() + 3600))
        await asyncio.to_thread(a.recv_until,
                                lambda m: m[0] == "gsync" and m[1][0][1] == "finale", 3)
        m = await request(ws, {"type": "netsync_set", "room": "ob3", "name": "phase",
                               "value": "again"}, "netsync_set_result")
        assert m["result"] == "stale"

        # a device that has not joined gets the value when it does
        m = await request(ws, {"type": "netsync_set", "room": "ob3", "device": "late",
                               "name": "seat", "value": "B7"}, "netsync_set_result")
        assert m["result"] == "queued"
        late = await asyncio.to_thread(joined, ctx, steady_server, "ob3", "late")
        got = await asyncio.to_thread(
            late.recv_until, lambda m: m[0] == "csync" and any(
                n == "seat" for _, vs in m[1] for n, *_ in vs), 3)
        assert got, "queued variable not applied after the join"

        # a new observer gets the whole variable state first
        ws2 = await ws_connect(steady_server)
        await request(ws2, {"type": "netsync_observe", "room": "ob3"}, "netsync_observing")
        m = await recv_until(ws2, lambda m: m["type"] == "netsync_vars")
        assert m["full"] is True
        assert {v["name"]: v["value"] for v in m["globals"]} == {"phase": "finale"}
        targets = {c["target"]: {v["name"]: v["value"] for v in c["vars"]} for c in m["clients"]}
        assert targets[1] == {"hp": "10"} and targets[2] == {"seat": "B7"}
        for w in (ws, ws2):
            await w.close()
        a.close()
        late.close()
    run(go())


def test_bad_requests_get_errors(steady_server):
    async def go():
        ws = await ws_connect(steady_server)

        async def err(msg):
            await ws.send(json.dumps(msg))
            m = await recv_until(ws, lambda m: True)
            assert m["type"] == "error", m
            return m["code"]

        assert await err({"type": "netsync_observe"}) == "missing_field"
        assert await err({"type": "netsync_observe", "room": 5}) == "bad_field"
        assert await err({"type": "netsync_observe", "room": "x" * 256}) == "bad_field"
        assert await err({"type": "netsync_frobnicate", "room": "r"}) == "reserved_type"
        assert await err({"type": "netsync_unobserve", "room": "never"}) == "not_member"
        assert await err({"type": "netsync_rpc", "room": "no-such-room", "name": "f"}) == \
            "no_such_room"
        assert await err({"type": "netsync_rpc", "room": "r", "name": ""}) == "bad_field"
        assert await err({"type": "netsync_rpc", "room": "r"}) == "missing_field"
        assert await err({"type": "netsync_rpc", "room": "r", "name": "f", "args": 3}) == \
            "bad_field"
        assert await err({"type": "netsync_set", "room": "r", "name": "n"}) == "missing_field"
        assert await err({"type": "netsync_set", "room": "r", "name": "n", "value": 1}) == \
            "bad_field"
        # a room member cannot publish a message that looks like an observer event
        await ws.send(json.dumps({"type": "join", "room": "plain"}))
        await recv_until(ws, lambda m: m["type"] == "joined")
        assert await err({"type": "netsync_state", "room": "plain"}) == "reserved_type"
        # the connection is still fine
        m = await request(ws, {"type": "netsync_set", "room": "nowhere", "name": "n",
                               "value": "v"}, "netsync_set_result")
        assert m["result"] == "no_room"
        await ws.close()
    run(go())


def test_observer_limit_and_netsync_off():
    s = NSServer("--max-rooms-per-client", 2)
    off = NSServer("--no-netsync", netsync=False)
    try:
        async def go():
            ws = await ws_connect(s)
            for room in ("l1", "l2"):
                await request(ws, {"type": "netsync_observe", "room": room}, "netsync_observing")
            m = await request(ws, {"type": "netsync_observe", "room": "l3"}, "netsync_observing")
            assert m["type"] == "error" and m["code"] == "too_many_rooms"
            await request(ws, {"type": "netsync_unobserve", "room": "l1"}, "netsync_unobserved")
            m = await request(ws, {"type": "netsync_observe", "room": "l3"}, "netsync_observing")
            assert m["type"] == "netsync_observing"
            await ws.close()

            ws = await ws_connect(off)
            m = await request(ws, {"type": "netsync_observe", "room": "x"}, "netsync_observing")
            assert m["type"] == "error" and m["code"] == "netsync_off"
            await ws.close()
        run(go())
    finally:
        for srv in (s, off):
            err = srv.stderr()
            assert srv.stop() == 0, err[-3000:]


def test_room_gone_and_observer_churn(ctx, server):
    """Every client times out: observers learn the room is gone; observers that vanish
    mid-stream (no close handshake) are forgotten without harm to the others."""
    async def go():
        keep = await ws_connect(server)
        await request(keep, {"type": "netsync_observe", "room": "ob6"}, "netsync_observing")
        a = await asyncio.to_thread(joined, ctx, server, "ob6", "devA")
        churn = []
        for _ in range(20):
            w = await ws_connect(server)
            await request(w, {"type": "netsync_observe", "room": "ob6"}, "netsync_observing")
            churn.append(w)
        for w in churn:
            w.transport.abort()
        # the aborted observers are forgotten; the one left is counted
        deadline = time.monotonic() + IO
        while True:
            text = await asyncio.to_thread(http_get, server, "/metrics")
            if "roomcast_netsync_observations 1\n" in text:
                break
            assert time.monotonic() < deadline, text
            await asyncio.sleep(0.05)
        assert "roomcast_netsync_observed_rooms 1\n" in text
        frames = re.search(r"^roomcast_netsync_observer_frames_total (\d+)$", text, re.M)
        assert frames and int(frames.group(1)) >= 21  # at least the 21 snapshots
        m = await recv_until(keep, lambda m: m["type"] == "netsync_state" and m["exists"])
        a.close()  # silent: the server times it out (--netsync-client-timeout 0.4)
        m = await recv_until(keep, lambda m: m["type"] == "netsync_state" and not m["exists"])
        assert m["clients"] == []
        # the room comes back when a client does, and the observer is still subscribed
        b = await asyncio.to_thread(joined, ctx, server, "ob6", "devB")
        m = await recv_until(keep, lambda m: m["type"] == "netsync_state" and m["exists"]
                             and m["clients"])
        assert m["clients"][0]["device"] == "devB" and m["clients"][0]["no"] == 1
        await keep.close()
        b.close()
    run(go())
