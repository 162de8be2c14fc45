"""Resource limits: --max-connections (503, counted, slots freed on close), --max-rooms-per-client
(too_many_rooms), and exact connection/room accounting on a private server."""

import socket
import time

import pytest
import websockets

from conftest import (RawWS, assert_json_error_body, http_exchange, no_retention,
                      read_http_response, run, ws_connect, ws_request)


def test_max_connections(start_server):
    srv = start_server("--max-connections", "4", "--ping-interval", "60")
    assert srv.stats()["connections"] in (0, 1)
    clients = [RawWS.connect(srv.port) for _ in range(4)]
    try:
        for i, c in enumerate(clients):
            c.join(f"limit-{i % 2}")
        # the 5th connection is refused with 503 and a JSON body
        req, _ = ws_request("/")
        status, headers, body = http_exchange(srv.port, req)
        assert status == 503, (status, body)
        assert_json_error_body(503, body)
        # the existing ones are unaffected
        clients[0].send_json({"type": "m"})
        assert clients[0].recv_json()["msg_id"] == 1
        assert clients[2].recv_json()["msg_id"] == 1
        # a slot is freed by a clean close
        clients[3].send_close(1000)
        clients[3].expect_close(1000)
        clients[3].close()
        again = RawWS.connect(srv.port)
        clients[3] = again
        again.join("limit-1")
        # full again: a websockets client gets the 503 too
        async def refused():
            with pytest.raises(websockets.InvalidStatusCode) as ei:
                await ws_connect(srv.ws_url)
            assert ei.value.status_code == 503
        run(refused())
    finally:
        for c in clients:
            try:   # clean closes, so that the slots are free before we ask for the stats
                c.send_close(1000)
                c.expect_close(1000)
            except Exception:
                pass
            c.close()
    st = srv.wait_stats(lambda s: s["connections"] <= 1, what="all closed")
    assert st["errors"]["http_503"] == 2, st["errors"]
    assert st["disconnects"]["max_connections"] == 2, st["disconnects"]


def test_max_connections_counts_pending_handshakes(start_server):
    """Connections that have not finished their handshake hold a slot too; when they leave,
    the slot is available again."""
    srv = start_server("--max-connections", "3")
    socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(3)]
    try:
        for s in socks:
            s.sendall(b"GET / HTTP/1.1\r\n")
        req, _ = ws_request("/")
        status, _, body = http_exchange(srv.port, req)
        assert status == 503, body
    finally:
        for s in socks:
            s.close()
    srv.wait_stats(lambda s: s["connections"] <= 1, what="slots freed")
    ws = RawWS.connect(srv.port)
    ws.join("ok")
    ws.close()


def test_connection_flood_beyond_limit(start_server):
    """Far more connection attempts than the limit: the server refuses the excess, never spins
    or dies, and serves normally afterwards."""
    srv = start_server("--max-connections", "20")
    socks = []
    try:
        for _ in range(120):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            socks.append(s)
            try:
                s.sendall(ws_request("/")[0])
            except OSError:
                pass
        statuses = []
        for s in socks:
            try:
                status, _, _, _ = read_http_response(s, timeout=10)
                statuses.append(status)
            except (AssertionError, OSError):
                statuses.append(None)
        assert statuses.count(101) == 20, statuses
        assert statuses.count(503) == 100, statuses
    finally:
        for s in socks:
            s.close()
    srv.wait_stats(lambda s: s["connections"] <= 1, what="all closed")
    ws = RawWS.connect(srv.port)
    ws.join("after-flood")
    ws.close()


def test_max_rooms_per_client(start_server):
    srv = start_server("--max-rooms-per-client", "3")
    ws = RawWS.connect(srv.port)
    try:
        for r in ("a", "b", "c"):
            ws.join(r)
        ws.send_json({"type": "join", "room": "d"})
        ws.expect_error("too_many_rooms")
        # rejoining a room it is in is not a new room
        ws.join("b")
        ws.send_json({"type": "leave", "room": "a"})
        assert ws.recv_json() == {"type": "left", "room": "a"}
        ws.join("d")
        ws.send_json({"type": "join", "room": "e"})
        ws.expect_error("too_many_rooms")
        # the limit is per client
        other = RawWS.connect(srv.port)
        for r in ("x", "y", "z"):
            other.join(r)
        other.close()
    finally:
        ws.close()
    st = srv.stats()
    assert st["errors"]["too_many_rooms"] == 2, st["errors"]


def test_default_max_rooms_is_64(server):
    ws = RawWS.connect(server.port)
    try:
        for i in range(64):
            ws.join(f"many-{i}")
        ws.send_json({"type": "join", "room": "many-64"})
        ws.expect_error("too_many_rooms")
    finally:
        ws.close()


def test_exact_room_and_connection_accounting(start_server):
    srv = start_server(*no_retention())
    st = srv.stats()
    assert st["rooms"] == 0 and st["connections"] in (0, 1), st
    conns_self = st["connections"]  # 1 if the stats request counts itself
    a, b = RawWS.connect(srv.port), RawWS.connect(srv.port)
    try:
        a.join("one")
        a.join("two")
        b.join("two")
        b.join("three")
        st = srv.stats()
        assert st["rooms"] == 3 and st["connections"] == 2 + conns_self, st
        a.send_json({"type": "leave", "room": "one"})
        assert a.recv_json()["type"] == "left"
        assert srv.stats()["rooms"] == 2
        a.send_json({"type": "leave", "room": "two"})
        assert a.recv_json()["type"] == "left"
        assert srv.stats()["rooms"] == 2      # b is still in "two"
        b.reset()
        srv.wait_stats(lambda s: s["rooms"] == 0 and s["connections"] == 1 + conns_self,
                       what="b's rooms gone")
    finally:
        a.close()
        b.close()
    st = srv.wait_stats(lambda s: s["connections"] == conns_self, what="all closed")
    assert st["connections_total"] >= 2 + conns_self


def test_descriptor_exhaustion_no_spin_no_crash(start_server):
    """With a hard limit of 64 descriptors (which the server cannot raise) and no
    --max-connections, a flood of 100 connections is served up to what fits, the rest are
    refused (503, or closed when not even that is possible) — none hangs, the loop does not spin
    while at the limit, and everything works again once clients leave."""
    srv = start_server(rlimit_nofile=64)
    socks = []
    try:
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            socks.append(s)
            s.sendall(ws_request("/")[0])
        results = []
        for s in socks:
            try:
                results.append(read_http_response(s, timeout=10)[0])
            except (ConnectionResetError, BrokenPipeError):
                results.append("reset")
            except AssertionError:          # EOF before a response
                results.append("closed")
        accepted = results.count(101)
        assert accepted >= 16, results
        assert set(results) <= {101, 503, "reset", "closed"}, results
        # at the limit, with the accepted connections idle: the loop must sleep, not spin
        cpu0 = srv.cpu_seconds()
        time.sleep(2.0)
        used = srv.cpu_seconds() - cpu0
        assert used < 1.0, f"server burnt {used:.2f} s of CPU in 2 s while idle at the fd limit"
        assert srv.alive()
    finally:
        for s in socks:
            s.close()
    srv.wait_stats(lambda s: s["connections"] <= 1, what="all closed")
    clients = [RawWS.connect(srv.port) for _ in range(10)]
    try:
        for c in clients:
            c.join("recovered")
    finally:
        for c in clients:
            c.close()


def test_room_creation_rate_and_room_limit(start_server):
    """One client cannot create rooms without bound (rooms outlive their members): after a
    burst of --max-rooms-per-client plus one second's worth it may create --room-create-rate
    new rooms a second
    (rate_limited), and at most --max-rooms exist (room_limit); joining rooms that exist is
    never limited."""
    srv = start_server("--room-create-rate", "2", "--max-rooms-per-client", "4",
                       "--max-rooms", "8", "--room-ttl", "0")
    a = RawWS.connect(srv.port)
    t0 = time.monotonic()
    joined = limited = 0
    for i in range(20):        # join/leave churn: every join creates a room
        a.send_json({"type": "join", "room": f"churn-{i}"})
        r = a.recv_json()
        if r["type"] == "joined":
            joined += 1
            a.send_json({"type": "leave", "room": f"churn-{i}"})
            assert a.recv_json()["type"] == "left"
        else:
            assert r["code"] == "rate_limited", r
            limited += 1
    elapsed = time.monotonic() - t0
    # a burst of 4 + 2, then 2 a second
    assert limited > 0 and 6 <= joined <= 6 + 2 * elapsed + 1, (joined, limited, elapsed)
    assert srv.stats()["errors"]["rate_limited"] == limited
    # --max-rooms: two clients fill the server, the next new room is refused
    b, c = RawWS.connect(srv.port), RawWS.connect(srv.port)
    for i in range(4):
        b.join(f"fill-b{i}")
        c.join(f"fill-c{i}")
    assert srv.stats()["rooms"] == 8
    d = RawWS.connect(srv.port)
    d.send_json({"type": "join", "room": "one-too-many"})
    d.expect_error("room_limit")
    d.join("fill-b0")          # an existing room: fine
    assert srv.stats()["errors"]["room_limit"] == 1


def test_history_memory_budget(start_server):
    """One client filling many rooms with history cannot make the server keep it all: past
    --history-memory the histories of rooms without members go first (counted), and what is
    kept stays under the budget; the live room keeps its newest messages."""
    srv = start_server("--history-memory", "400000", "--room-create-rate", "0")
    filler = RawWS.connect(srv.port)
    pad = "x" * 1000
    for r in range(10):
        room = f"mem-{r}"
        filler.join(room)
        for _ in range(60):
            filler.send_json({"type": "m", "pad": pad, "room": room})
        for _ in range(60):
            filler.recv_json()
        filler.send_json({"type": "leave", "room": room})
        assert filler.recv_json()["type"] == "left"
    live = RawWS.connect(srv.port)
    epoch = live.join("mem-live")["epoch"]
    for i in range(100):
        live.send_json({"type": "m", "pad": pad, "i": i})
    last = [live.recv_json() for _ in range(100)][-1]["msg_id"]
    hist = srv.stats()["history"]
    assert hist["memory"] <= 400000 and hist["memory_limit"] == 400000, hist
    assert hist["evicted"] > 0 and hist["evicted_bytes"] > hist["evicted"] * 1000, hist
    # the empty rooms went first: the live room can still replay its recent messages
    again = RawWS.connect(srv.port)
    j = again.join("mem-live", since=last - 10, epoch=epoch)
    assert j["recovered"] is True
    assert [again.recv_json()["i"] for _ in range(10)] == list(range(90, 100))
    # an early empty room has nothing left to replay
    old = RawWS.connect(srv.port)
    j = old.join("mem-0", since=1, epoch=j["epoch"])
    assert j["recovered"] is False
