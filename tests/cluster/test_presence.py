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
    assert metric(ns[0], "roomcast_cluster_nodes") == 3
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
