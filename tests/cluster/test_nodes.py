"""Several roomcast nodes over one private redis-server (--redis, docs/cluster.md).

* three nodes, clients spread over them publishing concurrently into shared rooms: every client
  sees the same msg_id sequence, 1..N without gap or duplicate, and each ack names the msg_id
  its message was delivered with;
* idempotency keys hold across nodes (a client that moves to another node with its session);
* a join with since/epoch on a node that never had the room, or that keeps fewer bytes than
  the stream, recovers from the stream;
* one node's subscription killed: its gap is read from the stream; the room lost in Redis:
  members are closed with 1013 and told recovered:false;
* Redis stopped: publishes answer `unavailable` (never an ack), connections stay up, /healthz
  and /metrics say so; once Redis is back (AOF), everything resumes in the same sequence.

The nodes are the binary under test (ROOMCAST_BIN, as the integration tests); Redis is the
fixture of conftest.py (its own port, socket and data directory).
"""

import asyncio
import importlib.util
import json
import os
import time

import pytest
import websockets
from nodeproc import stop_nodes

_spec = importlib.util.spec_from_file_location(
    "rc_integration", os.path.join(os.path.dirname(__file__), "..", "integration", "conftest.py"))
itest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(itest)

TIMEOUT = 10.0


@pytest.fixture
def nodes(redis_server):
    """Three nodes on redis_server (started; stopped and exit-checked afterwards)."""
    made = []

    def start(n=3, *flags):
        for _ in range(n):
            made.append(itest.Server("--redis", redis_server.unix_url, *flags))
        for s in made:
            wait_health(s, "up")
        return made

    yield start
    stop_nodes(made)


def http_get(port, path):
    status, _h, body = itest.http_exchange(
        port, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return status, body


def health(node):
    status, body = http_get(node.port, "/healthz")
    assert status == 200, body
    return json.loads(body)


def wait_health(node, want, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        h = health(node)
        if h.get("redis") == want:
            return h
        assert time.monotonic() < deadline, f"/healthz never said redis {want}: {h}"
        time.sleep(0.05)


def metric(node, name):
    status, body = http_get(node.port, "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def recv(ws, timeout=TIMEOUT):
    raw = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(raw)


async def join(ws, room, **extra):
    await ws.send(json.dumps({"type": "join", "room": room, **extra}))
    while True:
        m = await recv(ws)
        if m.get("type") == "joined" and m.get("room") == room:
            return m
        assert m.get("type") != "error", m


class Client:
    """A WebSocket client that files everything it receives: room messages by room, acks and
    errors by ref."""

    def __init__(self, ws, name):
        self.ws, self.name = ws, name
        self.msgs = {}     # room -> [message]
        self.acks = {}     # ref -> ack
        self.errors = {}   # ref -> error
        self.task = None

    async def pump(self):
        async for raw in self.ws:
            m = json.loads(raw)
            t = m.get("type")
            if t == "ack":
                self.acks[m["ref"]] = m
            elif t == "error":
                self.errors[m.get("ref")] = m
            elif "msg_id" in m:
                self.msgs.setdefault(m["room"], []).append(m)

    def start(self):
        self.task = asyncio.ensure_future(self.pump())

    async def wait(self, pred, what):
        deadline = time.monotonic() + TIMEOUT
        while not pred():
            assert time.monotonic() < deadline, f"{self.name}: never {what}"
            assert not self.task.done() or self.task.exception() is None, self.task.exception()
            await asyncio.sleep(0.02)

    async def close(self):
        await self.ws.close()
        if self.task:
            await asyncio.gather(self.task, return_exceptions=True)


async def connect(node, name):
    return Client(await itest.ws_connect(node.ws_url), name)


def test_three_nodes_one_order_per_room(nodes):
    ns = nodes(3)
    rooms = ["lobby", "game"]
    per_client = 25

    async def main():
        clients = []
        for i in range(6):  # two per node
            c = await connect(ns[i % 3], "c%d@n%d" % (i, i % 3))
            for r in rooms:
                j = await join(c.ws, r)
                assert j["last_msg_id"] == 0
            clients.append(c)
        for c in clients:
            c.start()
        ids = {c.name: None for c in clients}

        async def publish(ci, c):
            for k in range(per_client):
                for r in rooms:
                    await c.ws.send(json.dumps({"room": r, "text": "%d:%d" % (ci, k),
                                                "ack": "%s/%d" % (r, k)}))
        await asyncio.gather(*(publish(i, c) for i, c in enumerate(clients)))
        total = per_client * len(clients)
        for c in clients:
            await c.wait(lambda c=c: all(len(c.msgs.get(r, [])) >= total for r in rooms) and
                         len(c.acks) == per_client * len(rooms), "received everything")
            assert not c.errors, c.errors
        for r in rooms:
            first = [(m["msg_id"], m["text"], m["client_id"]) for m in clients[0].msgs[r]]
            assert [m[0] for m in first] == list(range(1, total + 1)), f"{r}: gap or duplicate"
            for c in clients[1:]:
                seen = [(m["msg_id"], m["text"], m["client_id"]) for m in c.msgs[r]]
                assert seen == first, f"{c.name} saw another order in {r}"
            # each message came from the client and in the order it sent them
            by_text = {t: mid for mid, t, _ in first}
            for ci, c in enumerate(clients):
                mine = [by_text["%d:%d" % (ci, k)] for k in range(per_client)]
                assert mine == sorted(mine), f"{c.name}'s messages out of its own order"
                for k in range(per_client):
                    assert c.acks["%s/%d" % (r, k)]["msg_id"] == by_text["%d:%d" % (ci, k)]
        # client ids name one client across nodes
        assert len({m[2] for m in first}) == len(clients)
        for c in clients:
            await c.close()
        del ids

    itest.run(main())
    assert sum(metric(n, "roomcast_redis_published_total") for n in ns) == 2 * 25 * 6
    for n in ns:
        assert metric(n, "roomcast_redis_up") == 1


def test_idempotency_and_recovery_across_nodes(nodes):
    # --room-ttl 0: a room goes from a node with its last member there, so a later join on
    # that node brings the room in step from Redis again (its stream is kept: no TTL in Redis)
    a, b, c = nodes(3, "--room-ttl", "0")

    async def main():
        watcher = await connect(c, "watcher")
        await join(watcher.ws, "r")
        watcher.start()
        p = await itest.ws_connect(a.ws_url)
        j = await join(p, "r")
        await p.send(json.dumps({"text": "once", "ack": 1, "idempotency_key": "k-1"}))
        acks = []
        while len(acks) < 1:
            m = await recv(p)
            if m.get("type") == "ack":
                acks.append(m)
        first = acks[0]
        assert "duplicate" not in first
        await p.close()
        # the same client (its session) on another node repeats the publish
        q = await itest.ws_connect(b.ws_url)
        jq = await join(q, "r", session=j["session"])
        assert jq["epoch"] and jq["last_msg_id"] == first["msg_id"]
        await q.send(json.dumps({"text": "once", "ack": 2, "idempotency_key": "k-1"}))
        await q.send(json.dumps({"text": "next", "ack": 3}))
        got = {}
        while len(got) < 2:
            m = await recv(q)
            if m.get("type") == "ack":
                got[m["ref"]] = m
        assert got[2]["msg_id"] == first["msg_id"] and got[2]["duplicate"] is True
        assert got[3]["msg_id"] == first["msg_id"] + 1
        await watcher.wait(lambda: len(watcher.msgs.get("r", [])) == 2, "saw both")
        assert [m["text"] for m in watcher.msgs["r"]] == ["once", "next"]
        # another client of node a (which has no room "r" any more) recovers from the
        # stream with since/epoch: exactly the messages after since; and one of node c, where
        # the room is live (the watcher), from the node's copy of the stream
        for node in (a, c):
            r = await itest.ws_connect(node.ws_url)
            jr = await join(r, "r", since=first["msg_id"] - 1, epoch=jq["epoch"])
            assert jr["recovered"] is True and jr["last_msg_id"] == first["msg_id"] + 1
            got = [await recv(r), await recv(r)]
            assert [(m["msg_id"], m["text"]) for m in got] == \
                [(first["msg_id"], "once"), (first["msg_id"] + 1, "next")]
            await r.close()
        # a wrong epoch is never recovered silently
        s = await itest.ws_connect(b.ws_url)
        js = await join(s, "r", since=0, epoch="0000000000000000")
        assert js["recovered"] is False
        for w in (q, s):
            await w.close()
        await watcher.close()

    itest.run(main())
    assert sum(metric(n, "roomcast_redis_duplicates_total") for n in (a, b, c)) == 1
    assert metric(a, "roomcast_redis_syncs_total") == 2  # "r" read again for the recovery


def test_redis_stopped_then_back(nodes, redis_server):
    ns = nodes(3)

    async def main():
        clients = []
        for i, n in enumerate(ns):
            cl = await connect(n, "c%d" % i)
            await join(cl.ws, "s")
            cl.start()
            clients.append(cl)
        await clients[0].ws.send(json.dumps({"text": "before", "ack": "b"}))
        for cl in clients:
            await cl.wait(lambda cl=cl: len(cl.msgs.get("s", [])) == 1, "got 'before'")
        before = {n.port: n.stats()["errors"]["unavailable"] for n in ns}

        redis_server.stop()
        for n in ns:
            wait_health(n, "down")
            assert metric(n, "roomcast_redis_up") == 0
        for i, cl in enumerate(clients):
            await cl.ws.send(json.dumps({"text": "lost %d" % i, "ack": "d%d" % i}))
        for i, cl in enumerate(clients):
            await cl.wait(lambda cl=cl, i=i: "d%d" % i in cl.errors, "got unavailable")
            assert cl.errors["d%d" % i]["code"] == "unavailable"
            assert "d%d" % i not in cl.acks
        for n in ns:
            assert n.stats()["errors"]["unavailable"] == before[n.port] + 1

        redis_server.start()  # AOF: the room's epoch and msg_ids are back
        for n in ns:
            wait_health(n, "up")
        for i, cl in enumerate(clients):
            await cl.ws.send(json.dumps({"text": "after %d" % i, "ack": "a%d" % i}))
        for cl in clients:
            await cl.wait(lambda cl=cl: len(cl.msgs.get("s", [])) == 4, "got everything after")
        seqs = [[(m["msg_id"], m["text"]) for m in cl.msgs["s"]] for cl in clients]
        assert [m[0] for m in seqs[0]] == [1, 2, 3, 4]
        assert seqs[0][0][1] == "before"
        assert all(s == seqs[0] for s in seqs), seqs
        for i, cl in enumerate(clients):
            assert cl.acks["a%d" % i]["msg_id"] in (2, 3, 4)
            assert not cl.task.done(), "a connection was closed"
        for cl in clients:
            await cl.close()

    itest.run(main())


def test_killed_subscription_gap_is_filled_from_the_stream(nodes, redis_server):
    """One node's subscription is killed (CLIENT KILL) while clients on every node publish:
    that node reads what it missed from the stream when it resubscribes, so every client still
    sees 1..N once, in one order, and nobody is closed. Publishers retry `unavailable` with
    their idempotency key, as a client should: each message is sequenced exactly once."""
    ns = nodes(3)
    per_client = 40

    async def main():
        clients = []
        for i in range(6):
            c = await connect(ns[i % 3], "c%d@n%d" % (i, i % 3))
            await join(c.ws, "k")
            c.start()
            clients.append(c)
        retries = [0]

        async def publish(ci, c):
            for k in range(per_client):
                attempt = 0
                while True:
                    ref = "%d/%d" % (k, attempt)
                    await c.ws.send(json.dumps({"text": "%d:%d" % (ci, k), "ack": ref,
                                                "idempotency_key": "m-%d" % k}))
                    await c.wait(lambda: ref in c.acks or ref in c.errors, "answered " + ref)
                    if ref in c.acks:
                        break
                    assert c.errors[ref]["code"] == "unavailable", c.errors[ref]
                    retries[0] += 1
                    attempt += 1
                    await asyncio.sleep(0.05)
                if k == per_client // 4 and ci == 0:
                    conn = redis_server.connect()
                    try:
                        subs = [dict(f.split("=", 1) for f in line.split(" ") if "=" in f)
                                for line in conn.cmd("CLIENT", "LIST").decode().splitlines()]
                        sub = [s for s in subs if s.get("name", "").endswith(":sub")][0]
                        assert conn.cmd("CLIENT", "KILL", "ID", sub["id"]) == 1
                    finally:
                        conn.close()

        await asyncio.gather(*(publish(i, c) for i, c in enumerate(clients)))
        total = per_client * len(clients)
        for c in clients:
            await c.wait(lambda c=c: len(c.msgs.get("k", [])) >= total, "received everything")
        first = [(m["msg_id"], m["text"]) for m in clients[0].msgs["k"]]
        assert [m[0] for m in first] == list(range(1, total + 1)), "gap or duplicate"
        assert len({m[1] for m in first}) == total, "a retried message was sequenced twice"
        for c in clients[1:]:
            assert [(m["msg_id"], m["text"]) for m in c.msgs["k"]] == first, c.name
        for c in clients:
            assert not c.task.done(), f"{c.name} was closed"
            await c.close()

    itest.run(main())
    # the first read of each node, and the killed one read again after resubscribing
    assert sum(metric(n, "roomcast_redis_syncs_total") for n in ns) >= 4
    assert sum(metric(n, "roomcast_redis_resyncs_lost_total") for n in ns) == 0


def test_epoch_lost_in_redis_resynchronises_members(nodes, redis_server):
    """Redis loses the room (FLUSHALL, as a restart without persistence would): the next
    message starts a new epoch at msg_id 1. Members cannot have it silently: every member, on
    every node, is closed with 1013, and rejoining with since/epoch says recovered:false."""
    ns = nodes(2)

    async def main():
        ws = []
        for i in range(4):
            w = await itest.ws_connect(ns[i % 2].ws_url)
            await join(w, "e")
            ws.append(w)
        await ws[0].send(json.dumps({"text": "one", "ack": 1}))
        for w in ws:
            while (await recv(w)).get("text") != "one":
                pass
        old = (await join(ws[1], "e"))  # joined again: the same room, its epoch
        assert old["last_msg_id"] == 1 and old["epoch"]
        assert redis_server.cmd("FLUSHALL") == b"OK"
        await ws[1].send(json.dumps({"text": "new epoch", "ack": 2}))
        for w in ws:
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                while True:
                    m = await recv(w)
                    assert m.get("text") != "new epoch", "a message of a new epoch was shown"
            assert w.close_code == 1013, w.close_code
        w = await itest.ws_connect(ns[0].ws_url)
        j = await join(w, "e", since=1, epoch=old["epoch"])
        assert j["recovered"] is False and j["epoch"] != old["epoch"] and j["last_msg_id"] == 1
        await w.close()

    itest.run(main())
    assert sum(metric(n, "roomcast_redis_resyncs_lost_total") for n in ns) == 2


def test_recovery_beyond_the_nodes_copy_reads_the_stream(nodes):
    """A node keeps fewer bytes of a room than Redis's stream holds (--history-bytes): a join
    with since/epoch from before what the node kept is recovered from a read of the stream,
    merged with what is delivered meanwhile — exactly the messages after since."""
    a, b = nodes(2, "--history-bytes", "400")

    async def main():
        watcher = await connect(a, "watcher")  # keeps "d" live on a
        j = await join(watcher.ws, "d")
        watcher.start()
        pub = await connect(b, "pub")
        await join(pub.ws, "d")
        pub.start()
        for k in range(30):
            await pub.ws.send(json.dumps({"text": "m%02d" % k, "ack": k}))
        await watcher.wait(lambda: len(watcher.msgs.get("d", [])) == 30, "got 30")
        peek = await itest.ws_connect(b.ws_url)
        epoch = (await join(peek, "d"))["epoch"]
        await peek.close()
        assert epoch
        # a publishes more while the recovery's read is out
        late = asyncio.ensure_future(pub.ws.send(json.dumps({"text": "late", "ack": "late"})))
        r = await itest.ws_connect(a.ws_url)
        jr = await join(r, "d", since=3, epoch=epoch)
        await late
        assert jr["recovered"] is True, jr
        last = jr["last_msg_id"]
        got = [await recv(r) for _ in range(last - 3)]
        assert [m["msg_id"] for m in got] == list(range(4, last + 1))
        assert [m["text"] for m in got][:27] == ["m%02d" % k for k in range(3, 30)]
        if last == 30:  # "late" came after the join: live
            m = await recv(r)
            assert (m["msg_id"], m["text"]) == (31, "late")
        await r.close()
        await watcher.close()
        await pub.close()
        del j

    itest.run(main())
    assert metric(a, "roomcast_redis_deep_recoveries_total") == 1


def test_room_with_members_does_not_expire(nodes, redis_server):
    """--room-ttl 2: members sit idle in a room past the TTL; the room's keys must not expire
    in Redis meanwhile (a room with members is kept), so the next message continues the same
    epoch with the next msg_id and nobody is closed. Once everyone has left, the room's keys
    get the TTL and expire."""
    a, b = nodes(2, "--room-ttl", "2")
    meta, stream = "rc:{idle}:m", "rc:{idle}:s"

    async def main():
        wa = await itest.ws_connect(a.ws_url)
        wb = await itest.ws_connect(b.ws_url)
        ja = await join(wa, "idle")
        await join(wb, "idle")
        await wa.send(json.dumps({"text": "one", "ack": 1}))
        for w in (wa, wb):
            while (await recv(w)).get("text") != "one":
                pass
        assert redis_server.cmd("TTL", meta) == -1, "a room with members has a TTL"
        assert redis_server.cmd("TTL", stream) == -1
        await asyncio.sleep(3.5)  # idle past --room-ttl
        assert redis_server.cmd("EXISTS", meta, stream) == 2
        await wb.send(json.dumps({"text": "two", "ack": 2}))
        for w in (wa, wb):
            while True:
                m = await recv(w)  # a close (1013) raises here
                if m.get("text") == "two":
                    assert m["msg_id"] == 2, m
                    break
        jb = await join(wb, "idle")  # joined again: the room's epoch as the node has it
        assert jb["epoch"] == ja["epoch"] and jb["last_msg_id"] == 2
        # everyone leaves: the keys get the room TTL, and go
        await wa.close()
        await wb.close()
        deadline = time.monotonic() + TIMEOUT
        while redis_server.cmd("TTL", meta) == -1:
            assert time.monotonic() < deadline, "the room kept no TTL after its last member left"
            await asyncio.sleep(0.05)
        assert 0 < redis_server.cmd("TTL", meta) <= 2 and 0 < redis_server.cmd("TTL", stream) <= 2
        while redis_server.cmd("EXISTS", meta, stream) != 0:
            assert time.monotonic() < deadline, "the room's keys never expired"
            await asyncio.sleep(0.1)

    itest.run(main())
    assert sum(metric(n, "roomcast_redis_resyncs_lost_total") for n in (a, b)) == 0
