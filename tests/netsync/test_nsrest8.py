"""The REST bridge of NetSync protocol 8 (/work/shared/netsync-protocol-v8.md §4.10, issue 13):
every route with the reference's bodies, statuses and error shapes, the CORS preflight and
headers (any origin, and a configured list), the dedicated port (--netsync-rest-port) with
its GET / and its discovery announcement, and the v0.6 route beside them.

A REST write to a v8 room must reach the room's v8 clients: CLIENT_VAR_SYNC / GLOBAL_VAR_SYNC
with lastWriter 0 on each client's control DEALER (ns8client.Client8).
"""

import http.client
import json
import random
import re
import time
import urllib.parse

import pytest
import zmq

import ns8client as n8
from conftest import NSServer
from ns8client import STEADY, Client8

REST_RE = re.compile(r"roomcast: netsync rest http://\S+:(\d+)/")
T_NV = 5.0                      # generous: a REST write is synced at once (no NV window)


def uniq(prefix):
    return f"{prefix}-{random.randrange(1 << 30)}"


def start(*flags, rest=True):
    s = NSServer(*n8.server_flags(STEADY), *(["--netsync-rest-port", "0"] if rest else []),
                 *flags)
    m = REST_RE.search(s.stderr())
    s.rest_port = int(m.group(1)) if m else None
    if rest:
        assert s.rest_port, "no 'netsync rest' line in the startup log"
    return s


def stop(s):
    err = s.stderr()
    rc = s.stop()
    assert rc == 0, f"server exited with {rc}:\n{err[-5000:]}"


@pytest.fixture(scope="module")
def srv():
    s = start()
    yield s
    stop(s)


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def req(port, method, path, body=None, headers=None):
    """(status, headers {lower name: value}, parsed JSON body or raw bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json"} if data is not None else {}
    h.update(headers or {})
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    raw = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    conn.close()
    if hdrs.get("content-type", "").startswith("application/json") and raw:
        return r.status, hdrs, json.loads(raw)
    return r.status, hdrs, raw


def q(s):
    return urllib.parse.quote(s, safe="")


def cpath(room, dev, name=None):
    p = f"/v1/rooms/{q(room)}/devices/{q(dev)}/client-variables"
    return p + (f"/{q(name)}" if name is not None else "")


def gpath(room, name=None):
    p = f"/v1/rooms/{q(room)}/global-variables"
    return p + (f"/{q(name)}" if name is not None else "")


def joined(ctx, s, room, dev):
    c = Client8(ctx, s, room, dev)
    c.number()
    return c


def csync_of(c, no, pred=lambda vs: True):
    """The next CLIENT_VAR_SYNC listing client `no` whose list satisfies pred: {name: (value,
    writer)}."""
    m = c.ctl_until(lambda m: m[0] == "csync" and any(
        n == no and pred({a: (b, w) for a, b, w in vs}) for n, vs in m[1]), T_NV)
    assert m, f"no CLIENT_VAR_SYNC for client {no}; got {c.ctl_log[-5:]}"
    return [{a: (b, w) for a, b, w in vs} for n, vs in m[1] if n == no][0]


def errors_total(s, kind):
    m = n8.metrics(s)
    return m.get(f'roomcast_errors_total{{kind="{kind}"}}', 0.0)


# ---- client variables ------------------------------------------------------------------------

@pytest.mark.parametrize("port_attr", ["http_port", "rest_port"])
def test_client_post_applies_and_syncs(ctx, srv, port_attr):
    port = getattr(srv, port_attr)
    room, dev = uniq("rc"), "dev-A"
    a = joined(ctx, srv, room, dev)
    st, h, r = req(port, "POST", cpath(room, dev), {"variables": {"color": "red", "hp": "10"}})
    assert st == 200, r
    assert r == {"roomId": room, "deviceId": dev, "mapping": {"clientNo": a.no},
                 "result": {"color": {"state": "applied"}, "hp": {"state": "applied"}}}
    assert h["access-control-allow-origin"] == "*"
    got = csync_of(a, a.no, lambda v: "color" in v)
    assert got == {"color": ("red", 0), "hp": ("10", 0)}
    # read back, all and by name
    st, _, r = req(port, "GET", cpath(room, dev))
    assert (st, r) == (200, {"clientNo": a.no, "variables": {"color": "red", "hp": "10"}})
    st, _, r = req(port, "GET", cpath(room, dev, "hp"))
    assert (st, r) == (200, {"clientNo": a.no, "value": "10"})
    st, _, r = req(port, "GET", cpath(room, dev, "nope"))
    assert (st, r) == (404, {"detail": f"Client variable 'nope' not found for device '{dev}'"})
    a.close()


def test_client_delete_one_and_all(ctx, srv):
    room, dev = uniq("rd"), "dev-D"
    a = joined(ctx, srv, room, dev)
    assert req(srv.http_port, "POST", cpath(room, dev),
               {"variables": {"x": "1", "y": "2", "z": "3"}})[0] == 200
    csync_of(a, a.no, lambda v: "z" in v)
    st, _, r = req(srv.http_port, "DELETE", cpath(room, dev, "y"))
    assert (st, r) == (200, {"clientNo": a.no, "deletedCount": 1})
    assert csync_of(a, a.no, lambda v: "y" not in v) == {"x": ("1", 0), "z": ("3", 0)}
    st, _, r = req(srv.http_port, "DELETE", cpath(room, dev, "y"))     # already gone
    assert (st, r) == (200, {"clientNo": a.no, "deletedCount": 0})
    st, _, r = req(srv.http_port, "DELETE", cpath(room, dev))
    assert (st, r) == (200, {"clientNo": a.no, "deletedCount": 2})
    assert csync_of(a, a.no, lambda v: not v) == {}                   # empty list = cleared
    st, _, r = req(srv.http_port, "GET", cpath(room, dev))
    assert (st, r) == (200, {"clientNo": a.no, "variables": {}})
    a.close()


def test_client_post_unknown_device_is_queued_then_synced(ctx, srv):
    room, dev = uniq("rq"), "dev-late"
    st, _, r = req(srv.http_port, "POST", cpath(room, dev), {"variables": {"q": "1"}})
    assert st == 200
    assert r == {"roomId": room, "deviceId": dev, "mapping": {"clientNo": None},
                 "result": {"q": {"state": "queued"}}}
    st, _, r = req(srv.http_port, "GET", cpath(room, dev))
    assert (st, r) == (200, {"clientNo": None, "variables": {"q": "1"}})
    c = joined(ctx, srv, room, dev)
    # the join's CLIENT_VAR_SYNC may come before the mapping that number() waited for
    early = [{a: (b, w) for a, b, w in vs} for m in c.ctl_log if m[0] == "csync"
             for n, vs in m[1] if n == c.no and vs]
    got = early[0] if early else csync_of(c, c.no, lambda v: "q" in v)
    assert got == {"q": ("1", 0)}
    c.close()


def test_unknown_room_reads(srv):
    room = uniq("nobody")
    assert req(srv.http_port, "GET", cpath(room, "d"))[::2] == (
        200, {"clientNo": None, "variables": {}})
    assert req(srv.http_port, "DELETE", cpath(room, "d"))[::2] == (
        200, {"clientNo": None, "deletedCount": 0})
    assert req(srv.http_port, "GET", gpath(room))[::2] == (200, {"variables": {}})
    assert req(srv.http_port, "GET", gpath(room, "g"))[::2] == (
        404, {"detail": "Global variable 'g' not found"})


# ---- global variables ------------------------------------------------------------------------

def test_global_post_get_and_sync(ctx, srv):
    room = uniq("rg")
    a = joined(ctx, srv, room, "dev-G")
    st, _, r = req(srv.rest_port, "POST", gpath(room), {"variables": {"mode": "play", "n": "7"}})
    assert (st, r) == (200, {"roomId": room, "result": {"mode": {"state": "applied"},
                                                        "n": {"state": "applied"}}})
    seen = {}
    while set(seen) != {"mode", "n"}:
        m = a.ctl_until(lambda m: m[0] == "gsync", T_NV)
        assert m, f"no GLOBAL_VAR_SYNC; got {a.ctl_log[-5:]}"
        seen.update({name: (val, w) for name, val, w in m[1]})
    assert seen == {"mode": ("play", 0), "n": ("7", 0)}
    assert req(srv.http_port, "GET", gpath(room))[::2] == (
        200, {"variables": {"mode": "play", "n": "7"}})
    assert req(srv.http_port, "GET", gpath(room, "mode"))[::2] == (200, {"value": "play"})
    a.close()


# ---- bad input -------------------------------------------------------------------------------

def test_bad_bodies(srv):
    p, room = srv.http_port, uniq("rbad")
    before422, before409 = errors_total(srv, "http_422"), errors_total(srv, "http_409")
    for path in (cpath(room, "d"), gpath(room)):
        assert req(p, "POST", path, {"variables": {}})[::2] == (
            400, {"detail": "variables must not be empty"})
        assert req(p, "POST", path, {})[::2] == (400, {"detail": "variables must not be empty"})
        st, _, r = req(p, "POST", path, b"{not json")
        assert st == 422 and r["detail"][0]["type"] == "json_invalid"
        st, _, r = req(p, "POST", path, b"")
        assert st == 422 and r["detail"][0]["type"] == "missing"
        st, _, r = req(p, "POST", path, [1])
        assert st == 422 and r["detail"][0]["loc"] == ["body"]
        st, _, r = req(p, "POST", path, {"variables": [1]})
        assert st == 422 and r["detail"][0] == {"type": "dict_type",
                                                "loc": ["body", "variables"],
                                                "msg": "Input should be a valid dictionary"}
        st, _, r = req(p, "POST", path, {"variables": {"x" * 65: "v", "": "v", "n": 5,
                                                       "ok": "v" * 1025}})
        assert st == 422
        assert [(e["type"], e["loc"]) for e in r["detail"]] == [
            ("string_too_long", ["body", "variables", "x" * 65, "[key]"]),
            ("string_too_short", ["body", "variables", "", "[key]"]),
            ("string_type", ["body", "variables", "n"]),
            ("string_too_long", ["body", "variables", "ok"])]
        # nothing was applied by the rejected requests
    assert req(p, "GET", cpath(room, "d"))[::2] == (200, {"clientNo": None, "variables": {}})
    assert req(p, "GET", gpath(room))[::2] == (200, {"variables": {}})
    # limits are code points, not bytes
    st, _, r = req(p, "POST", cpath(room, "d"), {"variables": {"é" * 64: "ü" * 1024}})
    assert st == 200 and r["result"] == {"é" * 64: {"state": "queued"}}
    # too many variables: 409, and nothing applied
    many = {f"v{i}": "x" for i in range(100)}
    st, _, r = req(p, "POST", cpath(room, "d"), {"variables": many})
    assert (st, r) == (409, {"detail": "Too many client variables (> 100) for device d"})
    assert len(req(p, "GET", cpath(room, "d"))[2]["variables"]) == 1
    st, _, r = req(p, "POST", gpath(room), {"variables": {f"g{i}": "x" for i in range(101)}})
    assert (st, r) == (409, {"detail": f"Too many global variables (> 100) for room {room}"})
    assert req(p, "POST", gpath(room), {"variables": {f"g{i}": "x" for i in range(100)}})[0] == 200
    # a name in the path: at most 64 code points
    st, _, r = req(p, "GET", cpath(room, "d", "n" * 65))
    assert st == 422 and r["detail"][0]["loc"] == ["path", "name"]
    # a room id the v8 rooms cannot hold (over 255 bytes)
    st, _, r = req(p, "GET", gpath("r" * 256))
    assert st == 422 and r["detail"][0]["loc"] == ["path", "room_id"]
    # counted like every HTTP error
    assert errors_total(srv, "http_422") >= before422 + 12
    assert errors_total(srv, "http_409") >= before409 + 2


def test_routes_and_methods(srv):
    p, room = srv.http_port, uniq("rm")
    st, h, r = req(p, "PUT", cpath(room, "d"))
    assert (st, r) == (405, {"detail": "Method Not Allowed"})
    assert h["allow"] == "GET, POST, DELETE"
    assert req(p, "POST", cpath(room, "d", "x"), {"variables": {"a": "b"}})[0] == 405
    assert req(p, "DELETE", gpath(room))[0] == 405
    assert req(p, "POST", gpath(room, "x"), {"variables": {"a": "b"}})[0] == 405
    for bad in (f"/v1/rooms/{room}/other", f"/v1/rooms/{room}/devices/d",
                f"/v1/rooms//global-variables", "/v1/nothing",
                f"/v1/rooms/{room}/global-variables/a/b"):
        assert req(p, "GET", bad)[::2] == (404, {"detail": "Not Found"}), bad


def test_logs_export(srv):
    for port in (srv.http_port, srv.rest_port):
        st, _, r = req(port, "GET", "/logs/export")
        assert st == 422 and [e["loc"] for e in r["detail"]] == [["query", "from"],
                                                                  ["query", "to"]]
        st, _, r = req(port, "GET", "/logs/export?from=2026-01-01T00:00:00Z&to=2026-01-02")
        assert (st, r) == (404, {"detail": "file logging is not enabled"})


# ---- CORS ------------------------------------------------------------------------------------

PREFLIGHT = {"Origin": "http://tool.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type"}


@pytest.mark.parametrize("port_attr", ["http_port", "rest_port"])
def test_cors_any_origin(srv, port_attr):
    port, room = getattr(srv, port_attr), uniq("rcors")
    st, h, body = req(port, "OPTIONS", cpath(room, "d"), headers=PREFLIGHT)
    assert st == 204 and body == b""
    assert h["access-control-allow-origin"] == "*"
    assert "POST" in h["access-control-allow-methods"]
    assert "DELETE" in h["access-control-allow-methods"]
    assert "content-type" in h["access-control-allow-headers"].lower()
    assert h["access-control-max-age"] == "3600"
    o = {"Origin": "http://tool.example"}
    for method, path, body in (("GET", gpath(room), None),
                               ("POST", gpath(room), {"variables": {}}),       # 400
                               ("GET", cpath(room, "d", "missing"), None),     # 404
                               ("PUT", gpath(room), None)):                    # 405
        st, h, _ = req(port, method, path, body, headers=o)
        assert h.get("access-control-allow-origin") == "*", (method, path, st)
    # OPTIONS without Access-Control-Request-Method is not a preflight
    assert req(port, "OPTIONS", gpath(room))[0] == 405


def test_cors_origin_list():
    s = start("--netsync-rest-cors", "http://a.example,http://b.example")
    try:
        for port in (s.http_port, s.rest_port):
            st, h, _ = req(port, "OPTIONS", gpath("r"),
                           headers=dict(PREFLIGHT, Origin="http://b.example"))
            assert st == 204
            assert h["access-control-allow-origin"] == "http://b.example"
            assert h["vary"] == "Origin"
            st, h, _ = req(port, "GET", gpath("r"), headers={"Origin": "http://a.example"})
            assert st == 200 and h["access-control-allow-origin"] == "http://a.example"
            assert h["vary"] == "Origin"
            st, h, _ = req(port, "GET", gpath("r"), headers={"Origin": "http://evil.example"})
            assert st == 200 and "access-control-allow-origin" not in h
            st, h, _ = req(port, "OPTIONS", gpath("r"),
                           headers=dict(PREFLIGHT, Origin="http://evil.example"))
            assert st == 400 and "access-control-allow-origin" not in h
        # the public endpoints keep their own list (--cors-origins, default *)
        st, h, _ = req(s.http_port, "GET", "/healthz", headers={"Origin": "http://evil.example"})
        assert h.get("access-control-allow-origin") == "*"
    finally:
        stop(s)


# ---- the dedicated port ----------------------------------------------------------------------

def test_rest_port_serves_only_the_bridge(srv):
    st, h, r = req(srv.rest_port, "GET", "/")
    assert (st, r) == (200, {"status": "ok"})
    assert h["access-control-allow-origin"] == "*"
    assert req(srv.rest_port, "POST", "/", {})[0] == 405
    for path in ("/api/netsync/rooms", "/healthz", "/metrics", "/roomcast.js", "/echo"):
        assert req(srv.rest_port, "GET", path)[::2] == (404, {"detail": "Not Found"}), path
    # a WebSocket upgrade is not served there
    st, _, _ = req(srv.rest_port, "GET", "/", headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert st == 404
    # on the main port / is still roomcast's page
    st, h, _ = req(srv.http_port, "GET", "/")
    assert st == 200 and h["content-type"].startswith("text/html")


def test_discovery_announces_the_rest_port(srv):
    got = {d.decode().split("|")[0]: d.decode().split("|") for d in n8.discover_udp(srv.disc_port)}
    assert got["STYLY-NETSYNC3"][4] == str(srv.rest_port)


def test_without_rest_port_discovery_names_http():
    s = start(rest=False)
    try:
        assert s.rest_port is None
        got = {d.decode().split("|")[0]: d.decode().split("|")
               for d in n8.discover_udp(s.disc_port)}
        assert got["STYLY-NETSYNC3"][4] == str(s.http_port)
        assert req(s.http_port, "GET", gpath("r"))[::2] == (200, {"variables": {}})
    finally:
        stop(s)


def test_no_netsync():
    s = NSServer("--no-netsync", "--netsync-rest-port", "0", netsync=False)
    try:
        assert not REST_RE.search(s.stderr())       # no bridge, no port
        assert req(s.http_port, "GET", gpath("r"))[::2] == (
            503, {"detail": "the NetSync transport is off (--no-netsync)"})
        assert req(s.http_port, "POST", cpath("r", "d"), {"vars": {"a": "b"}})[0] == 503
    finally:
        assert s.stop() == 0


# ---- the generations side by side ------------------------------------------------------------

def test_v06_body_reaches_v06_rooms_only(ctx, srv):
    """{"vars"} is the v0.6 bridge (v0.6 rooms, roomcast's error shape); {"variables"} the v8
    one: the same path, told apart by the body."""
    room = uniq("rgen")
    a = joined(ctx, srv, room, "dev-8")
    st, _, r = req(srv.http_port, "POST", cpath(room, "dev-8"), {"vars": {"old": "1"}})
    assert st == 200 and r["mapping"]["clientNo"] is None        # not a v0.6 member
    assert r["result"] == {"old": {"state": "queued"}}
    assert req(srv.http_port, "GET", cpath(room, "dev-8"))[2]["variables"] == {}
    st, _, r = req(srv.http_port, "POST", cpath(room, "dev-8"), {"vars": {}})
    assert st == 400 and "error" in r                           # the v0.6 shape
    a.close()


def test_rooms_listing_has_both_generations(srv, ctx):
    """GET /api/netsync/rooms lists protocol-8 rooms beside v0.6 ones, marked by protocol."""
    import conftest
    r8, r6 = uniq("list8"), uniq("list6")
    a = joined(ctx, srv, r8, "dev-a")
    a.pose(n8.make_body(seed=4))
    old = conftest.Client(ctx, srv, r6, "old")
    conftest.wait_sub()
    old.send_transform()
    assert old.number() == 1
    rooms = {}
    for _ in range(50):
        st, _, b = req(srv.http_port, "GET", "/api/netsync/rooms")
        assert st == 200
        rooms = {r["roomId"]: r for r in b["rooms"]}
        if r8 in rooms and rooms[r8]["visible"] == 1 and r6 in rooms:
            break
        time.sleep(0.05)
    assert rooms[r6]["protocol"] == 6 and rooms[r6]["clients"] == 1
    v8 = rooms[r8]
    assert v8["protocol"] == 8 and v8["clients"] == 1 and v8["visible"] == 1
    assert v8["devices"] == [{"deviceId": "dev-a", "clientNo": a.no, "live": True,
                              "stealth": False}]
    assert v8["posesIn"] >= 1
    a.close(), old.close()
