"""Crash consistency of the embedded log (docs/protocol.md, "Durability"): with --fsync always
a message is delivered only once durable, so after kill -9 the room keeps its epoch and every
client recovers exactly with since/epoch; with everysec a crash changes the epoch (clients are
told to resynchronise, never shown a silent gap); joiners while messages wait for the disk see
no gap and no duplicate."""
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import uuid

import pytest
import websockets

from conftest import RawWS, roomcast_bin, run


@pytest.fixture
def data_dir():
    d = tempfile.mkdtemp(prefix="roomcast-durable-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def rn():
    return "d-" + uuid.uuid4().hex[:10]


def dump(data_dir, room):
    out = subprocess.run([roomcast_bin(), "--data-dir", data_dir, "--dump", room],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return {r["msg_id"]: r["data"] for r in map(json.loads, out.stdout.splitlines())}


BIG_HISTORY = ("--history-size", "10000000", "--history-bytes", str(1 << 30))


def load_then_kill(srv, rooms, min_acks):
    """Three publishers (members of every room) publish with acks and idempotency keys as fast
    as they can; two observers per room record everything delivered to them. Once min_acks
    acknowledgements came back, the server is killed with SIGKILL. Returns (seen, acked):
    seen[(client, room)] = {"epoch": E, "msgs": [(msg_id, message)]}, acked[ref] = msg_id."""
    seen, acked = {}, {}

    async def reader(ws, name, joined):
        try:
            await read(ws, name, joined)
        except websockets.ConnectionClosed:
            pass                        # the kill

    async def read(ws, name, joined):
        async for raw in ws:
            m = json.loads(raw)
            if m["type"] == "ack":
                acked[m["ref"]] = (m["room"], m["msg_id"])
            elif m["type"] == "joined":
                seen[(name, m["room"])] = {"epoch": m["epoch"], "first": m["last_msg_id"] + 1,
                                           "msgs": []}
                if not joined.done() and all((name, r) in seen for r in rooms):
                    joined.set_result(None)
            elif "msg_id" in m:
                seen[(name, m["room"])]["msgs"].append((m["msg_id"], m))

    async def client(name, publish):
        async with websockets.connect(srv.ws_url, max_size=None) as ws:
            joined = asyncio.get_running_loop().create_future()
            r = asyncio.ensure_future(reader(ws, name, joined))
            for room in rooms:
                await ws.send(json.dumps({"type": "join", "room": room}))
            await joined
            i = 0
            while publish:
                room = rooms[i % len(rooms)]
                ref = f"{name}-{i}"
                await ws.send(json.dumps({"type": "m", "room": room, "ack": ref,
                                          "idempotency_key": ref, "who": name, "i": i}))
                i += 1
                if i % 10 == 0:
                    await asyncio.sleep(0.001)
            await r

    async def main():
        tasks = [asyncio.ensure_future(client(f"obs{k}", False)) for k in range(2)]
        tasks += [asyncio.ensure_future(client(f"pub{k}", True)) for k in range(3)]
        while len(acked) < min_acks:
            await asyncio.sleep(0.01)
            for t in tasks:
                if t.done() and t.exception():
                    raise t.exception()
        srv.proc.kill()                 # SIGKILL mid-stream
        srv.signaled = True
        await asyncio.gather(*tasks, return_exceptions=True)

    run(main(), timeout=120)
    srv.proc.wait()
    srv.returncode = 0                  # killed on purpose: nothing to judge
    for (name, room), s in seen.items():
        ids = [i for i, _ in s["msgs"]]
        assert ids == list(range(s["first"], s["first"] + len(ids))), \
            f"{name} saw a gap or duplicate in {room} before the kill"
    return seen, acked


def without_ids(m):
    return {k: v for k, v in m.items() if k not in ("room", "client_id", "msg_id")}


def test_kill9_with_fsync_always_keeps_the_epoch_and_recovers_exactly(start_server, data_dir):
    rooms = [rn() for _ in range(3)]
    srv = start_server("--data-dir", data_dir, "--fsync", "always", *BIG_HISTORY)
    seen, acked = load_then_kill(srv, rooms, 600)

    srv2 = start_server("--data-dir", data_dir, "--fsync", "always", *BIG_HISTORY)
    st = srv2.stats()["storage"]
    assert st["rooms_new_epoch"] == 0 and st["repaired_logs"] == 0, st
    logs = {room: dump(data_dir, room) for room in rooms}
    for room, recs in logs.items():
        assert sorted(recs) == list(range(1, len(recs) + 1)), f"{room}: the log has a hole"
    # Nothing a member saw is missing, or different, after the crash; nothing acknowledged is.
    delivered = 0
    for (name, room), s in seen.items():
        for msg_id, m in s["msgs"]:
            assert msg_id in logs[room], f"{name} saw {room}/{msg_id}, gone after kill -9"
            assert logs[room][msg_id] == m, f"{room}/{msg_id} differs from what {name} saw"
            delivered += 1
    assert delivered > 0
    for ref, (room, msg_id) in acked.items():
        assert msg_id in logs[room], f"acknowledged {ref} ({room}/{msg_id}) missing"
        assert logs[room][msg_id]["i"] == int(ref.rsplit("-", 1)[1])
    # Every client recovers from where it stopped, under the same epoch: exactly the rest.
    recovered = []
    for (name, room), s in sorted(seen.items()):
        since = s["msgs"][-1][0] if s["msgs"] else s["first"] - 1
        last = max(logs[room])
        c = RawWS.connect(srv2.port)
        c.send_json({"type": "join", "room": room, "since": since, "epoch": s["epoch"]})
        j = c.recv_json()
        assert j["recovered"] is True and j["epoch"] == s["epoch"], (name, j)
        assert j["last_msg_id"] == last
        got = [c.recv_json() for _ in range(last - since)]
        assert [m["msg_id"] for m in got] == list(range(since + 1, last + 1))
        assert all(logs[room][m["msg_id"]] == m for m in got)
        recovered.append(c)
    for room in rooms:                  # then the stream goes on, with no duplicate
        c = RawWS.connect(srv2.port)
        c.join(room)
        c.send_json({"type": "m", "room": room, "after": True})
    for (name, room), c in zip(sorted(seen), recovered):
        assert c.recv_json()["msg_id"] == max(logs[room]) + 1, (name, room)


def test_kill9_with_fsync_everysec_changes_the_epoch(start_server, data_dir):
    """everysec delivers before the disk: a crash may lose delivered messages, so every room
    comes back under a new epoch and a client that resumes is told recovered:false — never
    shown a silent gap."""
    rooms = [rn() for _ in range(2)]
    srv = start_server("--data-dir", data_dir, "--fsync", "everysec", *BIG_HISTORY)
    seen, _acked = load_then_kill(srv, rooms, 300)
    srv2 = start_server("--data-dir", data_dir, "--fsync", "everysec", *BIG_HISTORY)
    # Every room found on disk starts a new epoch. A room whose first records had not reached
    # the disk when the server was killed (a loaded machine's writer behind) is not found at
    # all: it comes back as a new room, which has a new epoch too (checked below per client).
    assert 1 <= srv2.stats()["storage"]["rooms_new_epoch"] <= len(rooms)
    for (name, room), s in sorted(seen.items()):
        since = s["msgs"][-1][0] if s["msgs"] else s["first"] - 1
        c = RawWS.connect(srv2.port)
        c.send_json({"type": "join", "room": room, "since": since, "epoch": s["epoch"]})
        j = c.recv_json()
        assert j["recovered"] is False and j["epoch"] != s["epoch"], (name, j)
        c.send_json({"type": "m"})
        assert c.recv_json()["msg_id"] == j["last_msg_id"] + 1   # nothing was replayed
        c.close()


def test_always_crash_then_everysec_restart_keeps_the_epoch(start_server, data_dir):
    """What the journal of a crashed --fsync always server holds is restored whatever mode the
    next server runs in: the epoch stays, and recovery is exact."""
    room = rn()
    srv = start_server("--data-dir", data_dir, "--fsync", "always")
    a = RawWS.connect(srv.port)
    epoch = a.join(room)["epoch"]
    for i in range(20):
        a.send_json({"type": "m", "i": i, "ack": i})
        assert a.recv_json()["msg_id"] == i + 1
        assert a.recv_json()["type"] == "ack"
    srv.proc.kill()
    srv.proc.wait()
    srv.signaled, srv.returncode = True, 0
    assert os.path.exists(os.path.join(data_dir, "journal"))
    srv2 = start_server("--data-dir", data_dir, "--fsync", "everysec")
    b = RawWS.connect(srv2.port)
    b.send_json({"type": "join", "room": room, "since": 15, "epoch": epoch})
    j = b.recv_json()
    assert j["recovered"] is True and j["epoch"] == epoch and j["last_msg_id"] == 20
    assert [b.recv_json()["i"] for _ in range(5)] == [15, 16, 17, 18, 19]
    # everysec keeps no journal: a crash of this server must not pass for one under always
    assert not os.path.exists(os.path.join(data_dir, "journal"))


@pytest.mark.parametrize("how", ["since", "history"])
def test_joins_while_messages_wait_for_the_disk(start_server, data_dir, how):
    """--fsync always, four publishers flat out: one client keeps dropping its connection and
    rejoining (with since/epoch, or as a late joiner asking for history) while messages are
    held for the disk. Across all its sessions it sees every msg_id once, in order."""
    srv = start_server("--data-dir", data_dir, "--fsync", "always", *BIG_HISTORY)
    room = rn()
    per_pub = 300

    async def publisher(k):
        async with websockets.connect(srv.ws_url, max_size=None, max_queue=None) as ws:
            await ws.send(json.dumps({"type": "join", "room": room}))
            json.loads(await ws.recv())
            for i in range(per_pub):
                await ws.send(json.dumps({"type": "p", "k": k, "i": i}))
                if i % 50 == 0:
                    await asyncio.sleep(0)

    async def rejoiner(total):
        seen, epoch, last, sessions = [], None, 0, 0
        rng = random.Random(11)
        while last < total:
            ws = await websockets.connect(srv.ws_url, max_size=None)
            req = {"type": "join", "room": room}
            if epoch is not None and how == "since":
                req.update(since=last, epoch=epoch)
            elif epoch is not None:
                req.update(history=100000)
            await ws.send(json.dumps(req))
            j = json.loads(await ws.recv())
            assert j["type"] == "joined", j
            if epoch is None:
                epoch, last = j["epoch"], j["last_msg_id"]
                first = last + 1
            elif how == "since":
                assert j["recovered"] is True, j
            skip = 0 if how == "since" or sessions == 0 else last - j["replay_from"] + 1
            sessions += 1
            for _ in range(skip):        # the history replay up to where this client was
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert m["msg_id"] <= last
            for _ in range(rng.randint(5, 120)):
                try:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                except asyncio.TimeoutError:
                    break
                seen.append(m["msg_id"])
                last = m["msg_id"]
                if last >= total:
                    break
            ws.transport.abort()
            await ws.wait_closed()
        return first, seen, sessions

    async def main():
        pubs = [asyncio.ensure_future(publisher(k)) for k in range(4)]
        res = await rejoiner(4 * per_pub)
        await asyncio.gather(*pubs)
        return res

    first, seen, sessions = run(main(), timeout=180)
    assert seen == list(range(first, 4 * per_pub + 1)), "gap or duplicate at a seam"
    assert sessions > 3


def _responses(raw):
    """Split raw bytes holding complete HTTP responses (each with Content-Length)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        n = int(hdrs["content-length"])
        out.append((int(lines[0].split()[1]), json.loads(rest[:n])))
        raw = rest[n:]
    return out


def test_api_publish_answers_once_durable(start_server, data_dir):
    """--fsync always: the HTTP API's publish is answered once its message is durable, as a
    WebSocket ack is — so also once it is delivered and in the history. A GET of the history
    pipelined right behind the POST (read only after the POST's answer) finds the message: an
    answer given at sequencing, before the disk, would let the GET run in the same wake-up,
    while the message is still held."""
    key = "durable-api-key-0123"
    srv = start_server("--data-dir", data_dir, "--fsync", "always", "--api-key", key)
    room = rn()

    async def main():
        ws = await websockets.connect(srv.ws_url)
        await ws.send(json.dumps({"type": "join", "room": room}))
        joined = json.loads(await ws.recv())
        assert joined["type"] == "joined", joined
        base = joined["last_msg_id"]
        for i in range(10):
            body = json.dumps({"type": "api", "i": i}).encode()
            req = (f"POST /api/rooms/{room}/messages HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            req += body
            req += (f"GET /api/rooms/{room}/messages?since={base} HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {key}\r\nConnection: close\r\n\r\n").encode()
            raw = b""
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                s.sendall(req)
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    raw += chunk
            (st, pub), (st2, hist) = _responses(raw)
            assert st == 200 and pub["msg_id"] == base + i + 1, pub
            assert st2 == 200, hist
            assert [m["i"] for m in hist["messages"]] == list(range(i + 1)), hist
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert m["msg_id"] == pub["msg_id"] and m["i"] == i, m
        await ws.close()
    run(main())
    assert [d["i"] for d in dump_sorted(data_dir, room)] == list(range(10))


def dump_sorted(data_dir, room):
    d = dump(data_dir, room)
    return [d[k] for k in sorted(d)]
