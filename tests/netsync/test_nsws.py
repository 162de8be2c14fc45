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


# ---- protocol 8 rooms (docs/netsync.md, "Observers" -> "Protocol 8 rooms") ----------------
#
# v8 clients from ns8client.py; the observer's JSON is checked against values computed here
# from the spec (§2 smallest-three, §3.3 body, §4.7 objects), in float32 like the server.

import numpy as np  # noqa: E402  (float32 arithmetic, to know the server's exact floats)

import ns8client as n8  # noqa: E402

F32 = np.float32


def pack_q(q):
    """Smallest-three packing of a unit quaternion (x, y, z, w) (§2)."""
    big = max(range(4), key=lambda i: abs(q[i]))
    if q[big] < 0:
        q = [-c for c in q]
    packed, shift = big << 30, 20
    for i in range(4):
        if i == big:
            continue
        v = round((q[i] + 0.70710677) / 1.41421354 * 1023)
        packed |= max(0, min(1023, v)) << shift
        shift -= 10
    return packed


def unpack_q(packed):
    """The server's decode (ns8_quat_decode), step by step in float32."""
    big, shift, q, s = packed >> 30, 20, [F32(0)] * 4, F32(0)
    for i in range(4):
        if i == big:
            continue
        v = (packed >> shift) & 0x3FF
        shift -= 10
        q[i] = F32(-0.70710677) + F32(1.41421354) * F32(v) / F32(1023.0)
        s = s + q[i] * q[i]
    q[big] = np.sqrt(F32(1) - s if s < 1 else F32(0))
    norm = np.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    return [float(c / norm) for c in q]


def i24(v):
    return struct.pack("<i", v)[:3]


def cm(v):
    return float(F32(v) * F32(0.01))


def half_cm(v):
    return float(F32(v) * F32(0.005))


def qmul(a, b):
    return [a[3] * b[0] + a[0] * b[3] + a[1] * b[2] - a[2] * b[1],
            a[3] * b[1] - a[0] * b[2] + a[1] * b[3] + a[2] * b[0],
            a[3] * b[2] + a[0] * b[1] - a[1] * b[0] + a[2] * b[3],
            a[3] * b[3] - a[0] * b[0] - a[1] * b[1] - a[2] * b[2]]


def yaw_of(q):
    return math.degrees(math.atan2(2 * (q[0] * q[2] + q[3] * q[1]),
                                   1 - 2 * (q[0] * q[0] + q[1] * q[1])))


S45 = math.sin(math.pi / 4)
HEAD = (150, 160, -275)                    # cm
HEAD_Q = pack_q([0.0, S45, 0.0, S45])      # 90° about y: facing +x
RIGHT = (40, -60, 20)                      # 0.5 cm units, relative to the head
RIGHT_Q = pack_q([0.0, 0.0, 0.0, 1.0])
LEFT = (-40, -60, 20)
LEFT_Q = pack_q([0.0, -0.3826834, 0.0, 0.9238795])   # -45° about y
PHYS = (120, 0, -250, 900)                 # cm, cm, cm, 0.1°


def known_body(seq=7, moved=0):
    """A full body (physical local to a moving floor, head, both hands, 3 virtuals)."""
    flags = n8.F_PHYS | n8.F_HEAD | n8.F_RIGHT | n8.F_LEFT | n8.F_VIRT | n8.F_MOVING
    out = struct.pack("<HBB", seq, flags, n8.ENC_MOVING)
    out += struct.pack("<4h", *PHYS)
    out += b"".join(i24(v) for v in (HEAD[0] + moved, HEAD[1], HEAD[2])) + struct.pack("<I", HEAD_Q)
    out += struct.pack("<3hI", *RIGHT, RIGHT_Q) + struct.pack("<3hI", *LEFT, LEFT_Q)
    out += bytes([3]) + bytes(30)
    return out


OBJ_POS = (-200, 85, 310)                  # cm
OBJ_Q = pack_q([0.0, 1.0, 0.0, 0.0])       # 180° about y


def obj_body():
    return b"".join(i24(v) for v in OBJ_POS) + struct.pack("<I", OBJ_Q)


def g32(v):
    """JSON floats (shortest text that reads back as the float32) as float32 values."""
    return [f32(x) for x in v]


def approx(got, want, tol=1e-6):
    return len(got) == len(want) and all(abs(g - w) <= tol for g, w in zip(got, want))


def v8_state(pred=lambda m: True):
    return lambda m: m["type"] == "netsync_state" and m.get("protocol") == 8 and pred(m)


def joined8(ctx, server, room, dev, body_bytes=None, stealth=False):
    c = n8.Client8(ctx, server, room, dev, stealth=stealth)
    wait_sub()
    c.pose(n8.STEALTH_POSE_BODY if stealth else (body_bytes or known_body()))
    c.number()
    return c


def test_v8_room_decoded_for_observers(ctx, steady_server):
    async def go():
        ws = await ws_connect(steady_server)
        m = await request(ws, {"type": "netsync_observe", "room": "v8a"}, "netsync_observing")
        assert m == {"type": "netsync_observing", "room": "v8a", "tick_ms": 50.0,
                     "exists": False}
        a = await asyncio.to_thread(joined8, ctx, steady_server, "v8a", "headset-a")
        cam = await asyncio.to_thread(joined8, ctx, steady_server, "v8a", "cam", None, True)
        m = await recv_until(ws, v8_state(lambda m: m["clients"] and m["stealth"]))
        assert m["exists"] is True and m["devices"] == 2 and m["poses_in"] >= 1
        assert m["members"] == [{"no": a.no, "device": "headset-a", "present": True,
                                 "stealth": False},
                                {"no": cam.no, "device": "cam", "present": True,
                                 "stealth": True}]
        # stealth: named, never placed
        assert m["stealth"] == [{"no": cam.no, "device": "cam",
                                 "poses": m["stealth"][0]["poses"]}]
        assert [c["device"] for c in m["clients"]] == ["headset-a"]
        c = m["clients"][0]
        assert c["no"] == a.no and c["seq"] == 7 and c["virtual"] == 3 and c["poses"] >= 1
        head_q = unpack_q(HEAD_Q)
        assert g32(c["head"]["pos"]) == [cm(v) for v in HEAD]
        assert g32(c["head"]["rot"]) == head_q
        assert abs(c["head"]["yaw"] - 90) < 0.2
        for side, rel, q in (("right", RIGHT, RIGHT_Q), ("left", LEFT, LEFT_Q)):
            want = [float(F32(cm(h)) + F32(half_cm(r))) for h, r in zip(HEAD, rel)]
            assert g32(c[side]["pos"]) == want, side
            assert approx(c[side]["rot"], qmul(head_q, unpack_q(q))), side
            assert abs(c[side]["yaw"] - yaw_of(c[side]["rot"])) < 1e-3
        assert abs(c["left"]["yaw"] - 45) < 0.3
        ph = c["physical"]
        assert g32(ph["pos"]) == [cm(v) for v in PHYS[:3]] and ph["local"] is True
        assert f32(ph["yaw"]) == float(F32(PHYS[3]) * F32(0.1))

        # a second observer gets the v8 marker in its reply and a snapshot at once
        ws2 = await ws_connect(steady_server)
        m = await request(ws2, {"type": "netsync_observe", "room": "v8a"}, "netsync_observing")
        assert m == {"type": "netsync_observing", "room": "v8a", "tick_ms": 50.0,
                     "exists": True, "protocol": 8, "sample_ms": 100.0}
        m = await recv_until(ws2, lambda m: m["type"] == "netsync_state")
        assert m["protocol"] == 8 and [c["device"] for c in m["clients"]] == ["headset-a"]

        # a move reaches the observers; an unchanged room is not re-sent at every sample
        a.pose(known_body(seq=8, moved=100))
        m = await recv_until(ws, v8_state(lambda m: m["clients"]
                                          and m["clients"][0]["seq"] == 8))
        assert f32(m["clients"][0]["head"]["pos"][0]) == cm(HEAD[0] + 100)
        n = 0
        with pytest.raises(asyncio.TimeoutError):
            while True:
                await recv_until(ws2, v8_state(), timeout=1.0)
                n += 1
        assert n <= 2, f"{n} states for one change"   # the move, at most one idle resend
        for w in (ws, ws2):
            await w.close()
        a.close()
        cam.close()
    run(go())


def test_v8_objects_and_variables(ctx, steady_server):
    async def go():
        a = await asyncio.to_thread(joined8, ctx, steady_server, "v8b", "owner-dev")
        ws = await ws_connect(steady_server)
        await request(ws, {"type": "netsync_observe", "room": "v8b"}, "netsync_observing")
        m = await recv_until(ws, v8_state())
        assert m["objects"] == []
        a.obj_pose(4242, 3, obj_body())
        a.own(n8.OP_REQUEST, 99)           # registered by a request: owned, never posed
        a.gvar("phase", "intro")
        # the two lanes are separate connections: either message may reach the room first,
        # and the variables may come in a sample before or after the objects
        seen = {}
        while not ("vars" in seen and len(seen.get("state", {"objects": []})["objects"]) == 2):
            m = await recv_until(ws, lambda m: m["type"] in ("netsync_state", "netsync_vars"))
            seen["vars" if m["type"] == "netsync_vars" else "state"] = m
        objs = {o["id"]: o for o in seen["state"]["objects"]}
        o = objs[4242]
        assert (o["id"], o["owner"], o["seq"]) == (4242, a.no, 3)
        assert g32(o["pos"]) == [cm(v) for v in OBJ_POS]
        assert g32(o["rot"]) == unpack_q(OBJ_Q) and abs(abs(o["yaw"]) - 180) < 0.2
        assert objs[99] == {"id": 99, "owner": a.no, "seq": None, "pos": None,
                            "rot": None, "yaw": None}
        assert seen["vars"] == {"type": "netsync_vars", "room": "v8b", "protocol": 8, "full": True,
                     "globals": [{"name": "phase", "value": "intro", "writer": a.no}],
                     "clients": []}

        # the observer sets variables of the v8 room like the REST bridge does
        m = await request(ws, {"type": "netsync_set", "room": "v8b", "name": "phase",
                               "value": "finale"}, "netsync_set_result")
        assert m == {"type": "netsync_set_result", "room": "v8b", "name": "phase",
                     "result": "applied"}
        got = await asyncio.to_thread(a.ctl_until, lambda m: m[0] == "gsync", 3)
        assert got, "no GLOBAL_VAR_SYNC after the observer's set"
        m = await request(ws, {"type": "netsync_set", "room": "v8b", "device": "owner-dev",
                               "name": "seat", "value": "B7"}, "netsync_set_result")
        assert m["result"] == "applied"
        m = await recv_until(ws, lambda m: m["type"] == "netsync_vars" and m["clients"])
        assert m["globals"] == [{"name": "phase", "value": "finale", "writer": 0}]
        assert m["clients"] == [{"target": a.no, "device": "owner-dev",
                                 "vars": [{"name": "seat", "value": "B7", "writer": 0}]}]
        await ws.close()
        a.close()
    run(go())


def test_v8_departure_and_room_list(ctx):
    s = NSServer("--netsync-v8-client-timeout", "0.5", "--netsync-client-timeout", 10)
    try:
        async def go():
            old = await asyncio.to_thread(joined, ctx, s, "gen6", "old-headset")
            # The v8 timeout is 0.5 s: both v8 clients keep posing (on their pose sockets,
            # which nothing else uses meanwhile) until the test lets "leaver" fall silent, so
            # a slow machine cannot time either out early.
            live, stop = [], [False]

            def keep():
                give_up = time.monotonic() + 30     # never outlives a failed test for long
                while not stop[0] and time.monotonic() < give_up:
                    for c in list(live):
                        c.pose(known_body())
                    time.sleep(0.1)
            a = await asyncio.to_thread(joined8, ctx, s, "gen8", "leaver")
            live.append(a)
            keeper = asyncio.create_task(asyncio.to_thread(keep))
            b = await asyncio.to_thread(joined8, ctx, s, "gen8", "stayer")
            live.append(b)
            ws = await ws_connect(s)
            m = await request(ws, {"type": "netsync_rooms"}, "netsync_rooms")
            assert m == {"type": "netsync_rooms", "rooms": [
                {"room": "gen6", "protocol": 6, "clients": 1, "visible": 1, "devices": 1},
                {"room": "gen8", "protocol": 8, "clients": 2, "visible": 2, "devices": 2,
                 "objects": 0}]}
            await request(ws, {"type": "netsync_observe", "room": "gen8"}, "netsync_observing")
            await recv_until(ws, v8_state(lambda m: len(m["clients"]) == 2))
            live.remove(a)
            await asyncio.sleep(0.25)          # the keeper's current round is over
            a.close()                          # silent: timed out after 0.5 s

            async def stop_later():
                await asyncio.sleep(3)
                stop[0] = True
            stopper = asyncio.create_task(stop_later())
            m = await recv_until(ws, v8_state(lambda m: len(m["clients"]) == 1))
            assert m["clients"][0]["device"] == "stayer"
            assert {x["device"]: x["present"] for x in m["members"]} == \
                {"leaver": False, "stayer": True}
            await stopper
            await keeper
            await ws.close()
            old.close()
            b.close()
        run(go())
    finally:
        err = s.stderr()
        assert s.stop() == 0, err[-3000:]
