"""Presence and cluster-wide state across roomcast nodes over one private redis-server
(--redis, docs/cluster.md "Presence" and "Nodes").

* three nodes: a member that joins with presence is listed in `joined` with the members of
  every node, and hears of joins and leaves on the other nodes (with their reasons);
* GET /api/rooms, /api/rooms/{room} and /api/stats answer for the whole cluster from any
  node; with Redis stopped they answer with the node's own view and say so;
* kill -9 of one node while clients on all three publish into shared rooms: its clients
  reconnect to another node and recover exactly with since/epoch (resending what was not
  acknowledged with its idempotency key), every client ends with the same msg_id sequence
  1..N (no gap, no duplicate, each message once), the clients of the other nodes are never
  closed, and the dead node's members leave presence and /api/rooms within a few seconds.
"""

import asyncio
import json
import signal
import time

import pytest
import websockets

from test_nodes import (Client, connect, http_get, itest, join, metric, nodes,  # noqa: F401
                        recv, wait_health)

# A dead node is noticed after --redis-node-ttl (5 s by default) plus a heartbeat; polled
# with a generous deadline, not asserted as a time.
DEATH_DEADLINE = 40.0


def get_json(node, path):
    status, body = http_get(node.port, path)
    return status, json.loads(body)


def poll(pred, what, timeout=DEATH_DEADLINE):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        ok, last = pred()
        if ok:
            return last
        assert time.monotonic() < deadline, f"never {what}; last: {last}"
        time.sleep(0.1)


async def next_presence(ws, room, timeout=10.0):
    while True:
        m = await recv(ws, timeout)
        if m.get("type") == "presence" and m.get("room") == room:
            return m


def test_presence_across_three_nodes(nodes):
    ns = nodes(3)

    async def main():
        a = await itest.ws_connect(ns[0].ws_url)
        ja = await join(a, "lobby", presence=True)
        assert ja["members"] == [ja["client_id"]]
        b = await itest.ws_connect(ns[1].ws_url)
        jb = await join(b, "lobby", presence=True)
        assert sorted(jb["members"]) == sorted([ja["client_id"], jb["client_id"]]), jb
        ev = await next_presence(a, "lobby")
        assert ev["event"] == "join" and ev["client_id"] == jb["client_id"], ev
        # a member without presence on the third node: listed and announced all the same
        c = await itest.ws_connect(ns[2].ws_url)
        jc = await join(c, "lobby")
        assert "members" not in jc
        for ws in (a, b):
            ev = await next_presence(ws, "lobby")
            assert ev["event"] == "join" and ev["client_id"] == jc["client_id"], ev
        d = await itest.ws_connect(ns[2].ws_url)
        jd = await join(d, "lobby", presence=True)
        everyone = sorted(j["client_id"] for j in (ja, jb, jc, jd))
        assert sorted(jd["members"]) == everyone, jd
        for ws in (a, b):
            ev = await next_presence(ws, "lobby")
            assert ev["event"] == "join" and ev["client_id"] == jd["client_id"], ev

        # the API of any node sees every member
        for n in ns:
            st, room = get_json(n, "/api/rooms/lobby")
            assert st == 200 and room["cluster"] == "ok", room
            assert sorted(room["clients"]) == everyone and room["members"] == 4, room
            st, rooms = get_json(n, "/api/rooms")
            assert st == 200 and rooms["cluster"] == "ok", rooms
            lobby = [r for r in rooms["rooms"] if r["room"] == "lobby"]
            assert lobby and lobby[0]["members"] == 4, rooms
        # other nodes' figures are as of their last heartbeat (one a second)
        cl = poll(lambda: ((lambda c: (c["totals"]["members"] == 4 and
                                       c["totals"]["connections"] >= 4, c))(
            get_json(ns[1], "/api/stats")[1]["cluster"])), "cluster totals", 10.0)
        assert cl["nodes_alive"] == 3 and len(cl["nodes"]) == 3, cl
        assert sum(1 for x in cl["nodes"] if x["self"]) == 1
        assert [x["members"] for x in cl["nodes"] if x["port"] == ns[2].port] == [2], cl
        assert {x["port"] for x in cl["nodes"]} == {n.port for n in ns}, cl
        assert {x["addr"] for x in cl["nodes"]} == {"127.0.0.1:%d" % n.port for n in ns}, cl
        for x in cl["nodes"]:
            assert x["alive"] and x["last_heartbeat_ms"] >= 0, x

        # leaves, with their reasons, on the other nodes
        await b.send(json.dumps({"type": "leave", "room": "lobby"}))
        for ws in (a, d):
            ev = await next_presence(ws, "lobby")
            assert ev == {**ev, "event": "leave", "client_id": jb["client_id"],
                          "reason": "left"}, ev
        await c.close()
        for ws in (a, d):
            ev = await next_presence(ws, "lobby")
            assert ev == {**ev, "event": "leave", "client_id": jc["client_id"],
                          "reason": "closed"}, ev
        # a late joiner on the node the first leaver is on sees who is left
        e = await itest.ws_connect(ns[1].ws_url)
        je = await join(e, "lobby", presence=True)
        assert sorted(je["members"]) == sorted([ja["client_id"], jd["client_id"],
                                                je["client_id"]]), je
        st, room = get_json(ns[0], "/api/rooms/lobby")
        assert sorted(room["clients"]) == sorted(je["members"]), room
        for ws in (a, b, d, e):
            await ws.close()
        # the room empties everywhere
        poll(lambda: ((lambda r: (r[0] == 404 or r[1]["members"] == 0, r))(
            get_json(ns[2], "/api/rooms/lobby"))), "an empty lobby", 10.0)

    itest.run(main())
    poll(lambda: ((lambda v: (v == 3, v))(metric(ns[0], "roomcast_cluster_nodes"))),
         "roomcast_cluster_nodes 3", 10.0)
    assert metric(ns[0], "roomcast_redis_presence_events_total") >= 3


def test_presence_off_namespace_tells_nobody(nodes, tmp_path):
    rules = tmp_path / "ns.conf"
    rules.write_text("namespace quiet\n  presence off\nend\n")
    ns = nodes(2, "--config", str(rules))

    async def main():
        a = await itest.ws_connect(ns[0].ws_url)
        await a.send(json.dumps({"type": "join", "room": "quiet:x", "presence": True}))
        m = await recv(a)
        assert m["type"] == "error" and m["code"] == "forbidden", m
        await join(a, "quiet:x")
        await join(a, "loud", presence=True)
        b = await itest.ws_connect(ns[1].ws_url)
        jb = await join(b, "quiet:x")
        # a hears of b's join of "loud" (a marker published after), never of "quiet:x"
        await join(b, "loud")
        ev = await next_presence(a, "loud")
        assert ev["client_id"] == jb["client_id"], ev
        # its members are still counted cluster-wide
        st, room = get_json(ns[0], "/api/rooms/quiet:x")
        assert st == 200 and room["members"] == 2, room
        await b.close()
        ev = await next_presence(a, "loud")
        assert ev["event"] == "leave", ev
        await a.close()

    itest.run(main())
    assert metric(ns[0], "roomcast_redis_presence_events_total") == 2


def test_api_without_redis_answers_the_nodes_own_view(nodes, redis_server):
    ns = nodes(2)

    async def main():
        a = await itest.ws_connect(ns[0].ws_url)
        ja = await join(a, "lobby", presence=True)
        b = await itest.ws_connect(ns[1].ws_url)
        await join(b, "lobby")
        poll(lambda: ((lambda r: (r[1].get("members") == 2, r))(
            get_json(ns[0], "/api/rooms/lobby"))), "two members", 10.0)
        redis_server.stop()
        wait_health(ns[0], "down")
        st, room = get_json(ns[0], "/api/rooms/lobby")
        assert st == 200 and room["cluster"] == "unavailable", room
        assert room["clients"] == [ja["client_id"]], room
        st, rooms = get_json(ns[0], "/api/rooms")
        assert rooms["cluster"] == "unavailable" and rooms["count"] == 1, rooms
        st, stats = get_json(ns[0], "/api/stats")
        assert st == 200 and stats["cluster"] == "unavailable", stats
        assert stats["connections"] >= 1
        await a.close()
        await b.close()

    itest.run(main())


class Member:
    """A client of the kill -9 test: one reader task files everything; when its node dies it
    reconnects to another node, rejoins every room with its session and since/epoch, and
    resends what was not acknowledged with the same idempotency key."""

    def __init__(self, name, rooms):
        self.name, self.rooms = name, rooms
        self.msgs = {r: [] for r in rooms}      # room -> [(msg_id, text)]
        self.presence = []                      # presence events
        self.joined = {}                        # room -> the last joined
        self.waiting = {}                       # room -> future of the next joined
        self.session = None
        self.sent = {}                          # ref -> request (in order)
        self.acked = {}                         # ref -> msg_id
        self.errors = []
        self.closes = 0
        self.ready = asyncio.Event()
        self.ws = None
        self.client_ids = []

    async def connect(self, node, since=False):
        self.ready.clear()
        self.node = node
        self.ws = await itest.ws_connect(node.ws_url)
        self.reader = asyncio.ensure_future(self.read(self.ws))
        for r in self.rooms:
            req = {"type": "join", "room": r, "presence": True}
            if self.session:
                req["session"] = self.session
            if since:
                req["since"] = self.msgs[r][-1][0] if self.msgs[r] else self.joined[r]["last_msg_id"]
                req["epoch"] = self.joined[r]["epoch"]
            fut = asyncio.get_event_loop().create_future()
            self.waiting[r] = fut
            await self.ws.send(json.dumps(req))
            j = await asyncio.wait_for(fut, 10)
            if since:
                assert j.get("recovered") is True, f"{self.name}: not recovered: {j}"
            self.session = j["session"]
        self.client_ids.append(self.joined[self.rooms[0]]["client_id"])
        for ref, req in list(self.sent.items()):  # what the dead node never acknowledged
            if ref not in self.acked:
                await self.ws.send(json.dumps(req))
        self.ready.set()

    async def read(self, ws):
        try:
            async for raw in ws:
                m = json.loads(raw)
                t = m.get("type")
                if t == "joined":
                    self.joined[m["room"]] = m
                    fut = self.waiting.pop(m["room"], None)
                    if fut and not fut.done():
                        fut.set_result(m)
                elif t == "ack":
                    self.acked[m["ref"]] = m["msg_id"]
                elif t == "presence":
                    self.presence.append(m)
                elif t == "error":
                    self.errors.append(m)
                elif "msg_id" in m:
                    self.msgs[m["room"]].append((m["msg_id"], m["text"]))
        except websockets.ConnectionClosed:
            pass
        if ws is self.ws:
            self.closes += 1
            self.ready.clear()

    async def publish(self, ci, per_room, pace):
        for k in range(per_room):
            for r in self.rooms:
                ref = "%s/%d" % (r, k)
                req = {"room": r, "text": "%d:%d" % (ci, k), "ack": ref,
                       "idempotency_key": "%d-%s-%d" % (ci, r, k)}
                self.sent[ref] = req
                await self.ready.wait()
                try:
                    await self.ws.send(json.dumps(req))
                except websockets.ConnectionClosed:
                    pass  # resent after the reconnect
            await asyncio.sleep(pace)


def test_kill9_one_node_under_load(nodes):
    ns = nodes(3)
    rooms = ["r0", "r1"]
    per_room = 40

    async def main():
        # each room has an epoch before anyone joins (since/epoch needs one)
        setup = await itest.ws_connect(ns[0].ws_url)
        for r in rooms:
            await join(setup, r)
            await setup.send(json.dumps({"room": r, "text": "start", "ack": r}))
            while (await recv(setup)).get("type") != "ack":
                pass
        await setup.close()

        members = [Member("m%d" % i, rooms) for i in range(6)]
        for i, m in enumerate(members):
            await m.connect(ns[i % 3])
        victims = [m for i, m in enumerate(members) if i % 3 == 2]
        others = [m for m in members if m not in victims]
        dead_ids = {m.client_ids[0] for m in victims}
        pubs = [asyncio.ensure_future(m.publish(i, per_room, 0.01))
                for i, m in enumerate(members)]

        # kill -9 the third node in the middle of the traffic
        deadline = time.monotonic() + 30
        while len(members[0].msgs["r0"]) < per_room * 6 // 3:
            assert time.monotonic() < deadline, "the traffic never got going"
            await asyncio.sleep(0.01)
        ns[2].proc.kill()
        ns[2].returncode = ns[2].proc.wait()
        for v in victims:  # its clients notice and move
            while v.closes == 0:
                await asyncio.sleep(0.01)
        for k, v in enumerate(victims):
            await v.connect(ns[k % 2], since=True)

        await asyncio.gather(*pubs)
        total = 1 + 6 * per_room
        deadline = time.monotonic() + 60
        while not all(len(m.acked) == len(rooms) * per_room and
                      all(m.msgs[r] and m.msgs[r][-1][0] >= total for r in rooms)
                      for m in members):
            assert time.monotonic() < deadline, [
                (m.name, len(m.acked), {r: len(m.msgs[r]) for r in rooms}, m.errors)
                for m in members]
            await asyncio.sleep(0.05)

        for r in rooms:
            ref = members[0].msgs[r]
            assert [i for i, _ in ref] == list(range(2, total + 1)), f"{r}: gap or duplicate"
            texts = sorted(t for _, t in ref)
            assert texts == sorted("%d:%d" % (ci, k) for ci in range(6)
                                   for k in range(per_room)), f"{r}: a message lost or twice"
            for m in members[1:]:
                assert m.msgs[r] == ref, f"{m.name} saw another sequence in {r}"
            by_text = dict((t, i) for i, t in ref)
            for ci, m in enumerate(members):  # every ack names the id it was delivered as
                for k in range(per_room):
                    assert m.acked["%s/%d" % (r, k)] == by_text["%d:%d" % (ci, k)]
        for m in members:
            assert not m.errors, (m.name, m.errors)
        for m in others:
            assert m.closes == 0, f"{m.name} (not on the dead node) was disconnected"

        # the dead node's members leave presence and the API within a few seconds
        live_ids = sorted(m.client_ids[-1] for m in members)
        for r in rooms:
            poll(lambda r=r: ((lambda x: (sorted(x[1].get("clients", [])) == live_ids, x))(
                get_json(ns[0], "/api/rooms/" + r))), f"the dead node's members gone from {r}")
        for m in others:
            async def told(m=m):
                while True:
                    gone = {e["client_id"] for e in m.presence
                            if e["event"] == "leave" and e["room"] == "r0"}
                    if dead_ids <= gone:
                        return
                    await asyncio.sleep(0.1)
            await asyncio.wait_for(told(), DEATH_DEADLINE)
            leaves = [e for e in m.presence if e["event"] == "leave" and
                      e["client_id"] in dead_ids and e["room"] == "r0"]
            assert all(e["reason"] == "dropped" for e in leaves), leaves
        st = poll(lambda: ((lambda x: (x["cluster"]["nodes_alive"] == 2, x))(
            get_json(ns[1], "/api/stats")[1])), "the dead node out of the registry")
        assert not any(n["port"] == ns[2].port for n in st["cluster"]["nodes"]), st
        # a late joiner is told exactly the live members
        late = await itest.ws_connect(ns[1].ws_url)
        j = await join(late, "r0", presence=True)
        assert sorted(j["members"]) == sorted(live_ids + [j["client_id"]]), j
        await late.close()
        for m in members:
            await m.ws.close()
            await m.reader

    itest.run(main(), timeout=180)
    assert metric(ns[0], "roomcast_redis_presence_reaped_members_total") + \
        metric(ns[1], "roomcast_redis_presence_reaped_members_total") == 2 * len(rooms)
    # as of each node's own last heartbeat
    poll(lambda: ((lambda v: (v == 2, v))(metric(ns[0], "roomcast_cluster_nodes"))),
         "roomcast_cluster_nodes 2 on a live node", 10.0)


def test_presence_repaired_after_redis_outage(nodes, redis_server):
    """A member that leaves while Redis is down cannot be recorded then: when Redis is back,
    its node puts its members back as they are, and the others hear of the leave once."""
    ns = nodes(2)

    async def main():
        a = await itest.ws_connect(ns[0].ws_url)
        ja = await join(a, "lobby", presence=True)
        b = await itest.ws_connect(ns[1].ws_url)
        jb = await join(b, "lobby")
        c = await itest.ws_connect(ns[1].ws_url)
        jc = await join(c, "lobby")
        for want in (jb, jc):
            ev = await next_presence(a, "lobby")
            assert ev["event"] == "join" and ev["client_id"] == want["client_id"], ev
        redis_server.stop()
        for n in ns:
            wait_health(n, "down")
        await c.close()
        redis_server.start()  # AOF: the members recorded before are back
        for n in ns:
            wait_health(n, "up")
        poll(lambda: ((lambda r: (sorted(r[1].get("clients", [])) ==
                                  sorted([ja["client_id"], jb["client_id"]]), r))(
            get_json(ns[0], "/api/rooms/lobby"))), "c gone from the room", 20.0)
        ev = await next_presence(a, "lobby")
        assert ev["event"] == "leave" and ev["client_id"] == jc["client_id"], ev
        # told once: nothing else comes
        with pytest.raises(asyncio.TimeoutError):
            await next_presence(a, "lobby", timeout=1.5)
        # a late joiner sees exactly who is there
        d = await itest.ws_connect(ns[1].ws_url)
        jd = await join(d, "lobby", presence=True)
        assert sorted(jd["members"]) == sorted([ja["client_id"], jb["client_id"],
                                                jd["client_id"]]), jd
        for ws in (a, b, d):
            await ws.close()

    itest.run(main())
    assert metric(ns[1], "roomcast_redis_presence_reasserts_total") >= 1


def test_presence_batches_count_every_node(nodes):
    """Above --presence-limit, changes on other nodes are gathered into the once-a-second
    batch, and member_count counts the members of every node."""
    ns = nodes(2, "--presence-limit", "2")

    async def main():
        a = await itest.ws_connect(ns[0].ws_url)
        ja = await join(a, "hall", presence=True)
        others = []
        for _ in range(3):
            ws = await itest.ws_connect(ns[1].ws_url)
            others.append((ws, await join(ws, "hall")))
        ids = {j["client_id"] for _, j in others}
        told, count = set(), None
        while not ids <= told:
            ev = await next_presence(a, "hall")
            if ev["event"] == "batch":
                told |= set(ev["joined"])
                count = ev["member_count"]
            else:
                told.add(ev["client_id"])
        assert count == 4, count
        late = await itest.ws_connect(ns[0].ws_url)
        jl = await join(late, "hall", presence=True)
        assert jl["member_count"] == 5 and "members" not in jl, jl
        for ws, _ in others:
            await ws.close()
        for ws in (a, late):
            await ws.close()
        del ja

    itest.run(main())


def test_unknown_room_is_404_on_every_node(nodes):
    ns = nodes(2)
    for n in ns:
        status, body = http_get(n.port, "/api/rooms/nowhere")
        assert status == 404, body
        assert "no room 'nowhere'" in json.loads(body)["error"]
