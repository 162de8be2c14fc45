"""Many rooms x many clients publishing concurrently (python websockets clients). Every client
checks that it receives every message of its room(s), with consecutive msg_ids starting right
after its join's last_msg_id, and each sender's messages in the order they were sent."""

import asyncio
import json
import random
import struct
import uuid

import pytest

from conftest import IO_TIMEOUT, run, ws_connect, ws_join


def bin_env(room, payload):
    r = room.encode()
    return bytes([len(r)]) + r + payload


class Member:
    """One websockets client's view of the rooms it is in, with the ordering checks."""

    def __init__(self, ws, name):
        self.ws = ws
        self.name = name
        self.client_id = None
        self.next_id = {}         # room -> expected next msg_id
        self.next_seq = {}        # (room, sender client_id) -> expected next seq
        self.count = {}           # room -> messages received
        self.control = asyncio.Queue()   # joined / left / error replies, in arrival order

    def on_joined(self, msg):
        self.client_id = msg["client_id"]
        self.next_id[msg["room"]] = msg["last_msg_id"] + 1
        self.count.setdefault(msg["room"], 0)

    def on_room_message(self, room, msg_id, sender, seq, kind):
        assert room in self.next_id, f"{self.name}: message for room {room} it is not in"
        exp = self.next_id[room]
        assert msg_id == exp, f"{self.name}: room {room}: msg_id {msg_id}, expected {exp} ({kind})"
        self.next_id[room] = msg_id + 1
        key = (room, sender)
        if key in self.next_seq:
            assert seq == self.next_seq[key], \
                f"{self.name}: sender {sender} seq {seq}, expected {self.next_seq[key]}"
        self.next_seq[key] = seq + 1
        self.count[room] += 1

    async def read_until(self, done, timeout=60):
        """Consume messages until done(self) is true."""
        async def loop():
            while not done(self):
                raw = await self.ws.recv()
                if isinstance(raw, bytes):
                    msg_id, sender, rlen = struct.unpack_from("<QQB", raw, 0)
                    room = raw[17:17 + rlen].decode()
                    payload = json.loads(raw[17 + rlen:])
                    self.on_room_message(room, msg_id, sender, payload["seq"], "binary")
                    continue
                msg = json.loads(raw)
                t = msg.get("type")
                if t in ("joined", "left", "error"):
                    if t == "joined":
                        self.on_joined(msg)
                    elif t == "left":
                        self.next_id.pop(msg["room"], None)
                    await self.control.put(msg)
                    continue
                assert "room" in msg and "msg_id" in msg and "client_id" in msg, msg
                self.on_room_message(msg["room"], msg["msg_id"], msg["client_id"], msg["seq"], t)
        await asyncio.wait_for(loop(), timeout)


async def publish(ws, room, n, seq0=0, binary_every=3, pad=40, name_room=True, yield_every=7):
    for i in range(seq0, seq0 + n):
        if binary_every and i % binary_every == binary_every - 1:
            await ws.send(bin_env(room if name_room else "",
                                  json.dumps({"seq": i, "p": "b" * pad}).encode()))
        else:
            msg = {"type": "load", "seq": i, "pad": "x" * pad}
            if name_room:
                msg["room"] = room
            await ws.send(json.dumps(msg))
        if i % yield_every == 0:
            await asyncio.sleep(0)


@pytest.mark.parametrize("nrooms,nclients,nmsgs", [(10, 8, 80), (2, 20, 25), (24, 2, 40)])
def test_many_rooms_many_clients(server, nrooms, nclients, nmsgs):
    """All clients join first, then everyone publishes at once (text and binary interleaved):
    each member must see msg_ids 1..nclients*nmsgs of its room, every sender in order."""
    async def main():
        members = []
        rooms = [f"storm-{uuid.uuid4().hex[:8]}-{r}" for r in range(nrooms)]
        for r, room in enumerate(rooms):
            for c in range(nclients):
                ws = await ws_connect(server.ws_url)
                m = Member(ws, f"room{r}/client{c}")
                m.on_joined(await ws_join(ws, room))
                assert m.next_id[room] == 1
                members.append((m, room))
        ids = [m.client_id for m, _ in members]
        assert len(set(ids)) == len(ids), "client ids are not unique"
        before = server.stats()
        total = nclients * nmsgs

        async def one(m, room):
            reader = asyncio.ensure_future(m.read_until(lambda s: s.count[room] == total))
            await publish(m.ws, room, nmsgs, name_room=random.random() < 0.5)
            await reader
            assert m.next_id[room] == total + 1
            assert all(m.next_seq[(room, s)] == nmsgs for (r, s) in m.next_seq if r == room)
            assert len([k for k in m.next_seq if k[0] == room]) == nclients

        await asyncio.gather(*(one(m, room) for m, room in members))
        after = server.stats()
        assert after["broadcasts"] - before["broadcasts"] == nrooms * total
        assert after["messages_out"] - before["messages_out"] >= nrooms * nclients * total
        for m, _ in members:
            await m.ws.close()
    run(main(), timeout=150)


async def next_control(m, reader, timeout=IO_TIMEOUT):
    """The next joined/left/error reply seen by m's reader task (failing fast if it died)."""
    get = asyncio.ensure_future(m.control.get())
    done, _ = await asyncio.wait({get, reader}, timeout=timeout,
                                 return_when=asyncio.FIRST_COMPLETED)
    if get in done:
        return get.result()
    get.cancel()
    if reader in done:
        reader.result()  # re-raises the reader's failure
        raise AssertionError(f"{m.name}: reader finished before the expected reply")
    raise AssertionError(f"{m.name}: no joined/left reply within {timeout}s")


def test_joiners_mid_stream(server):
    """Publishers keep publishing while others join (and leave and rejoin): each joiner's first
    message is last_msg_id+1 and then nothing is missed until the end; nothing of the room
    arrives between left and the next joined."""
    async def main():
        room = f"midstream-{uuid.uuid4().hex[:8]}"
        npub, first, second, njoin = 4, 100, 50, 8
        total = npub * (first + second)
        joins_done = asyncio.Event()
        joined = []
        pubs = []
        for i in range(npub):
            ws = await ws_connect(server.ws_url)
            m = Member(ws, f"pub{i}")
            m.on_joined(await ws_join(ws, room))
            pubs.append(m)

        async def publisher(m):
            reader = asyncio.ensure_future(m.read_until(lambda s: s.next_id[room] > total))
            for k in range(0, first, 10):
                await publish(m.ws, room, 10, seq0=k, binary_every=4)
                await asyncio.sleep(0.002)
            # the stream cannot end before every joiner has joined (and rejoined)
            await asyncio.wait_for(joins_done.wait(), 60)
            for k in range(first, first + second, 10):
                await publish(m.ws, room, 10, seq0=k, binary_every=4)
                await asyncio.sleep(0.002)
            await reader
            assert m.count[room] == total

        async def joiner(idx):
            await asyncio.sleep(0.01 * idx)
            ws = await ws_connect(server.ws_url)
            m = Member(ws, f"joiner{idx}")
            reader = asyncio.ensure_future(m.read_until(
                lambda s: room in s.next_id and s.next_id[room] > total))
            await ws.send(json.dumps({"type": "join", "room": room}))
            j = await next_control(m, reader)
            assert j["type"] == "joined" and j["room"] == room, j
            assert j["last_msg_id"] < total
            if idx % 2 == 0:
                await asyncio.sleep(0.005 * idx)
                await ws.send(json.dumps({"type": "leave", "room": room}))
                left = await next_control(m, reader)
                assert left == {"type": "left", "room": room}, left
                seen_before_leave = m.count[room]
                await asyncio.sleep(0.01)
                # senders' seq tracking restarts after the gap
                m.next_seq = {k: v for k, v in m.next_seq.items() if k[0] != room}
                await ws.send(json.dumps({"type": "join", "room": room}))
                j2 = await next_control(m, reader)
                assert j2["type"] == "joined", j2
                assert j2["last_msg_id"] >= j["last_msg_id"] + seen_before_leave, (j, j2)
            joined.append(idx)
            if len(joined) == njoin:
                joins_done.set()
            await reader
            await ws.close()

        await asyncio.gather(*(publisher(m) for m in pubs), *(joiner(i) for i in range(njoin)))
        for m in pubs:
            await m.ws.close()
    run(main(), timeout=120)


def test_multi_room_members_concurrent(server):
    """Clients in several overlapping rooms, naming the room on every publish: each room's
    sequence is independent and complete for every member."""
    async def main():
        rooms = [f"multi-{uuid.uuid4().hex[:6]}-{i}" for i in range(4)]
        members = []
        for c in range(8):
            ws = await ws_connect(server.ws_url)
            m = Member(ws, f"client{c}")
            mine = [rooms[c % 4], rooms[(c + 1) % 4], rooms[(c + 2) % 4]]
            for r in mine:
                m.on_joined(await ws_join(ws, r))
            members.append((m, mine))
        nmsgs = 30
        # room -> number of members (each member publishes nmsgs to each of its rooms)
        per_room = {r: sum(1 for _, mine in members if r in mine) * nmsgs for r in rooms}

        async def one(m, mine):
            reader = asyncio.ensure_future(m.read_until(
                lambda s: all(s.count[r] == per_room[r] for r in mine)))
            for k in range(nmsgs):
                for r in mine:
                    await publish(m.ws, r, 1, seq0=k, binary_every=2)
            await reader

        await asyncio.gather(*(one(m, mine) for m, mine in members))
        for m, mine in members:
            for r in mine:
                assert m.next_id[r] == per_room[r] + 1
            await m.ws.close()
    run(main(), timeout=120)


def test_many_connections_in_one_room_fanout(server):
    """One room, 60 members, 3 publishers: a wide fan-out with every member checking."""
    async def main():
        room = f"fanout-{uuid.uuid4().hex[:8]}"
        members = []
        for c in range(60):
            ws = await ws_connect(server.ws_url)
            m = Member(ws, f"member{c}")
            m.on_joined(await ws_join(ws, room))
            members.append(m)
        nmsgs = 40
        total = 3 * nmsgs
        readers = [asyncio.ensure_future(m.read_until(lambda s: s.count[room] == total))
                   for m in members]
        await asyncio.gather(*(publish(m.ws, room, nmsgs, pad=300) for m in members[:3]))
        await asyncio.gather(*readers)
        for m in members:
            await m.ws.close()
    run(main(), timeout=120)


def test_wide_room_of_raw_members(server):
    """400 members in one room (plain sockets): each of 5 broadcasts reaches all of them, in
    order, and a member list this long survives members leaving in the middle."""
    from conftest import RawWS
    room = f"wide-{uuid.uuid4().hex[:8]}"
    members = [RawWS.connect(server.port) for _ in range(400)]
    try:
        for m in members:
            m.send_json({"type": "join", "room": room})
        for m in members:
            assert m.recv_json()["type"] == "joined"
        for i in range(5):
            members[i].send_json({"type": "wide", "i": i})
        for m in members:
            assert [m.recv_json()["msg_id"] for _ in range(5)] == [1, 2, 3, 4, 5]
        for m in members[100:300]:
            m.close()
        members[0].send_json({"type": "wide", "i": 5})
        for m in members[:100] + members[300:]:
            assert m.recv_json()["msg_id"] == 6
    finally:
        for m in members:
            m.close()


def test_big_messages_to_uneven_readers(start_server):
    """Large text and binary messages (up to 200 KB) fanned out to readers that pause at
    random: partial writes of shared frames must resume at the right byte. Every member checks
    every byte of every message (the cap is raised so that nobody is dropped)."""
    import hashlib
    srv = start_server("--max-pending", str(256 * 1024 * 1024), "--ping-interval", "60")

    def blob(sender, seq, size):
        seed = hashlib.sha256(f"{sender}/{seq}".encode()).digest()
        return (seed * (size // 32 + 1))[:size]

    async def main():
        room = f"big-{uuid.uuid4().hex[:8]}"
        rng = random.Random(42)
        nmem, nmsgs = 5, 16
        members = []
        for i in range(nmem):
            ws = await ws_connect(srv.ws_url, max_queue=4)
            j = await ws_join(ws, room)
            members.append((ws, j["client_id"]))
        total = nmem * nmsgs
        sizes = [rng.choice([10, 1000, 70000, 200000]) for _ in range(nmsgs)]

        async def member(idx, ws, me):
            async def send():
                for s in range(nmsgs):
                    data = blob(me, s, sizes[s])
                    if s % 2:
                        await ws.send(bin_env(room, data))
                    else:
                        await ws.send(json.dumps({"type": "big", "s": s, "d": data.hex()}))
            st = asyncio.ensure_future(send())
            next_seq = {}
            for exp in range(1, total + 1):
                raw = await asyncio.wait_for(ws.recv(), 60)
                if isinstance(raw, bytes):
                    msg_id, sender, rlen = struct.unpack_from("<QQB", raw, 0)
                    data = raw[17 + rlen:]
                    s = next_seq.get(sender, 0)
                    assert s % 2 == 1, f"binary where text expected from {sender}"
                else:
                    msg = json.loads(raw)
                    msg_id, sender, s = msg["msg_id"], msg["client_id"], msg["s"]
                    data = bytes.fromhex(msg["d"])
                assert msg_id == exp, (msg_id, exp)
                assert s == next_seq.get(sender, 0)
                assert data == blob(sender, s, sizes[s]), f"corrupted message {msg_id}"
                next_seq[sender] = s + 1
                if rng.random() < 0.3 and idx % 2:
                    await asyncio.sleep(rng.uniform(0, 0.02))   # an uneven reader
            await st

        await asyncio.gather(*(member(i, ws, me) for i, (ws, me) in enumerate(members)))
        for ws, _ in members:
            await ws.close()
    run(main(), timeout=120)
    assert srv.stats()["disconnects"]["slow_consumer"] == 0
