"""NetSync on roomcast's HTTP listener: the v0.6 REST bridge (v0.6 spec §4.7, body {"vars"}), GET /api/netsync/rooms
and the NetSync metrics in /metrics."""

import json
import time
import urllib.error
import urllib.request

from conftest import Client, NSServer, decode, wait_sub  # noqa: F401


def http(server, method, path, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}", data=data,
                                 method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post_vars(server, room, dev, body):
    st, b = http(server, "POST", f"/v1/rooms/{room}/devices/{dev}/client-variables", body)
    return st, (json.loads(b) if b else None)


def joined(ctx, server, room, dev):
    c = Client(ctx, server, room, dev)
    wait_sub()
    c.send_transform()
    c.number()
    return c


def test_bridge_applies_and_syncs(ctx, steady_server):
    a = joined(ctx, steady_server, "rb1", "devA")
    st, r = post_vars(steady_server, "rb1", "devA", {"vars": {"color": "red", "hp": "10"}})
    assert st == 200, r
    assert r["roomId"] == "rb1" and r["deviceId"] == "devA"
    assert r["mapping"]["clientNo"] == 1
    assert r["result"] == {"color": {"state": "applied"}, "hp": {"state": "applied"}}
    m = a.recv_until(lambda m: m[0] == "csync", 3)
    assert m, "no CLIENT_VAR_SYNC after the bridge set"
    got = {name: (val, writer) for no, vs in m[1] if no == 1 for name, val, _, writer in vs}
    assert got["color"] == ("red", 0) and got["hp"] == ("10", 0)
    a.close()


def test_bridge_errors(ctx, steady_server):
    a = joined(ctx, steady_server, "rb2", "devB")
    assert post_vars(steady_server, "rb2", "devB", {"vars": {}})[0] == 400
    assert post_vars(steady_server, "rb2", "devB", {"vars": {"x" * 65: "v"}})[0] == 422
    assert post_vars(steady_server, "rb2", "devB", {"vars": {"": "v"}})[0] == 422
    assert post_vars(steady_server, "rb2", "devB", {"vars": {"n": "v" * 1025}})[0] == 422
    assert post_vars(steady_server, "rb2", "devB", {"vars": {"n": 5}})[0] == 422
    # neither "vars" nor "variables": the current bridge's empty default (test_nsrest8.py)
    assert post_vars(steady_server, "rb2", "devB", {"nope": 1})[0] == 400
    assert post_vars(steady_server, "rb2", "devB", b"{not json")[0] == 422
    # limits in code points, not bytes
    st, r = post_vars(steady_server, "rb2", "devB", {"vars": {"é" * 64: "ü" * 1024}})
    assert st == 200 and r["result"]["é" * 64]["state"] == "applied"
    # GET is protocol 8's read of the device-keyed store (v8 rooms; test_nsrest8.py)
    st, _ = http(steady_server, "GET", "/v1/rooms/rb2/devices/devB/client-variables")
    assert st == 200
    st, _ = http(steady_server, "PUT", "/v1/rooms/rb2/devices/devB/client-variables")
    assert st == 405
    a.close()


def test_bridge_queues_until_join(ctx, steady_server):
    st, r = post_vars(steady_server, "rb3", "later", {"vars": {"q": "1"}})
    assert st == 200, r
    assert r["mapping"]["clientNo"] is None and r["result"]["q"]["state"] == "queued"
    # 20 queued at most per device: 1 + 20 > 20
    st, _ = post_vars(steady_server, "rb3", "later", {"vars": {f"v{i}": "x" for i in range(20)}})
    assert st == 409
    c = joined(ctx, steady_server, "rb3", "later")
    m = c.recv_until(lambda m: m[0] == "csync" and any(
        name == "q" for _, vs in m[1] for name, _, _, _ in vs), 3)
    assert m, "queued variable not applied after the join"
    c.close()


def test_netsync_rooms_listing(ctx, steady_server):
    a = joined(ctx, steady_server, "list-room", "devL")
    st, b = http(steady_server, "GET", "/api/netsync/rooms")
    assert st == 200
    j = json.loads(b)
    assert j["enabled"] is True
    room = [r for r in j["rooms"] if r["roomId"] == "list-room"][0]
    assert room["clients"] == 1
    assert room["devices"] == [{"deviceId": "devL", "clientNo": 1, "live": True,
                                "stealth": False}]
    assert "transformsPerSec" in room and "broadcastsPerSec" in room
    assert http(steady_server, "POST", "/api/netsync/rooms", {})[0] == 405
    a.close()


def test_metrics(ctx, steady_server):
    a = joined(ctx, steady_server, "met-room", "devM")
    a.send(b"\x63junk")  # unknown type: counted
    time.sleep(0.2)
    st, b = http(steady_server, "GET", "/metrics")
    assert st == 200
    text = b.decode()
    for name in ("roomcast_netsync_clients", "roomcast_netsync_rooms",
                 "roomcast_netsync_transforms_received_total",
                 "roomcast_netsync_sent_bytes_total", "roomcast_netsync_tick_seconds_count",
                 'roomcast_netsync_tick_seconds_bucket{le="+Inf"}'):
        assert name in text, name
    line = [ln for ln in text.splitlines()
            if ln.startswith('roomcast_netsync_dropped_total{reason="unknown_type"}')][0]
    assert int(line.split()[-1]) >= 1
    a.close()


def test_off_without_netsync():
    s = NSServer("--no-netsync", netsync=False)
    try:
        st, b = http(s, "GET", "/api/netsync/rooms")
        assert st == 200 and json.loads(b)["enabled"] is False
        assert post_vars(s, "r", "d", {"vars": {"a": "b"}})[0] == 503
        st, b = http(s, "GET", "/metrics")
        assert st == 200 and b"roomcast_netsync_" not in b
    finally:
        assert s.stop() == 0
