"""HTTP API (docs/api.md): framing (keep-alive, pipelining, Content-Length, the malformed-request
list), auth, publishing through the API into the same msg_id order WebSocket members see,
kicking clients, closing rooms, room names in paths, and the web files."""

import json
import socket
import urllib.parse

import pytest

from conftest import (Server, assert_json_error_body, http_exchange, read_http_response, run,
                      ws_connect, ws_join, ws_recv_json)

KEY = "test-key-0123456789"
AUTH = f"Authorization: Bearer {KEY}\r\n"


@pytest.fixture(scope="module")
def api():
    """A server with an API key (the key must never show up in its log)."""
    srv = Server("--api-key", KEY, "--max-message-size", "4096")
    try:
        yield srv
        assert KEY not in srv.stderr(), "the API key appeared in the server's log"
        srv.stop()
    finally:
        srv.cleanup()


def req(method, path, body=None, headers="", close=True):
    b = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    length = f"Content-Length: {len(b)}\r\n" if body is not None else ""
    conn = "Connection: close\r\n" if close else ""
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}{length}{conn}\r\n").encode() + b


def call(srv, method, path, body=None, headers=""):
    status, hdrs, raw = http_exchange(srv.port, req(method, path, body, headers))
    ctype = hdrs.get("content-type", "")
    return status, hdrs, (json.loads(raw) if "json" in ctype and raw else raw)


def room_path(name, sub=""):
    return "/api/rooms/" + urllib.parse.quote(name, safe="") + sub


# -- keep-alive and pipelining --------------------------------------------------------------

def test_keep_alive_serves_many_requests_on_one_connection(api):
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
        for _ in range(5):
            s.sendall(req("GET", "/healthz", close=False))
            status, headers, body, rest = read_http_response(s)
            assert status == 200 and rest == b""
            assert "close" not in headers.get("connection", "").lower()
            assert json.loads(body)["status"] == "ok"


def test_pipelined_requests_answered_in_order(api):
    paths = ["/healthz", "/api/stats", "/nope", "/api/rooms", "/metrics", "/roomcast.js"]
    want = [200, 200, 404, 200, 200, 200]
    blob = b"".join(req("GET", p, close=False) for p in paths)
    blob += req("POST", room_path("nobody-here", "/messages"), {"type": "x"}, AUTH, close=False)
    want.append(404)
    blob += req("GET", "/healthz", close=True)
    want.append(200)
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
        s.sendall(blob)
        got, rest = [], b""
        for i in range(len(want)):
            # read_http_response reads from the socket; feed leftovers back through a buffer
            status, headers, body, rest = _read_with_leftover(s, rest)
            got.append(status)
        assert got == want
        assert s.recv(1) == b"", "connection should close after 'Connection: close'"


def _read_with_leftover(sock, leftover):
    class Pre:
        def __init__(self, s, pre):
            self.s, self.pre = s, pre

        def settimeout(self, t):
            self.s.settimeout(t)

        def recv(self, n):
            if self.pre:
                d, self.pre = self.pre, b""
                return d
            return self.s.recv(n)
    return read_http_response(Pre(sock, leftover))


def test_pipelined_post_bodies_are_framed(api):
    """Bodies are framed by Content-Length, so a pipelined request after a body is parsed as a
    request (and a body is never parsed as one)."""
    fake = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    blob = req("POST", room_path("framing", "/messages"), fake, AUTH, close=False)
    blob += req("GET", "/healthz", close=True)
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
        s.sendall(blob)
        st1, _, _, rest = read_http_response(s)
        st2, _, body2, _ = _read_with_leftover(s, rest)
    assert (st1, st2) == (400, 200), (st1, st2, body2)  # 400: the body is not JSON


def test_body_split_across_segments(api):
    async def main():
        ws = await ws_connect(api.ws_url)
        await ws_join(ws, "split")
        body = json.dumps({"type": "chat", "text": "x" * 1000}).encode()
        head = (f"POST {room_path('split', '/messages')} HTTP/1.1\r\nHost: x\r\n{AUTH}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(head + body[:10])
            import time
            time.sleep(0.05)
            s.sendall(body[10:500])
            time.sleep(0.05)
            s.sendall(body[500:])
            status, _, raw, _ = read_http_response(s)
        assert status == 200, raw
        msg = await ws_recv_json(ws)
        assert msg["text"] == "x" * 1000 and msg["msg_id"] == json.loads(raw)["msg_id"]
        await ws.close()
    run(main())


# -- malformed requests ---------------------------------------------------------------------

MALFORMED = [
    # (request bytes, status, extra check)
    (b"POST /api/rooms/x/messages HTTP/1.1\r\nHost: x\r\n\r\n", 411, None),
    (b"POST /api/rooms/x/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n", 413, None),
    (b"POST /api/rooms/x/messages HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, None),
    (b"POST /api/rooms/x/messages HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, None),
    (b"POST /api/rooms/x/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
     b"Content-Length: 3\r\n\r\n{}", 400, None),
    (b"POST /api/rooms/x/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"2\r\n{}\r\n0\r\n\r\n", 501, None),
    (b"POST /api/rooms/x/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Length: 2\r\n\r\n{}", 501, None),
    (b"GET /api/nothing HTTP/1.1\r\nHost: x\r\n\r\n", 404, None),
    (b"GET /api/rooms/x/bogus HTTP/1.1\r\nHost: x\r\n\r\n", 404, None),
    (b"DELETE /api/stats HTTP/1.1\r\nHost: x\r\n\r\n", 405, "GET"),
    (b"PUT /api/rooms/x/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "POST"),
    (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "GET"),
    (b"GET /api/clients/3 HTTP/1.1\r\nHost: x\r\n\r\n", 405, "DELETE"),
    (b"GET /api/rooms/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, None),
    (b"GET /api/rooms/a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 400, None),
    (b"GET /api/rooms/%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n", 400, None),
    (b"GET /api/rooms/%4 HTTP/1.1\r\nHost: x\r\n\r\n", 400, None),
    (b"GET /api/rooms/" + b"a" * 256 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400, None),
    (b"GARBAGE\r\n\r\n", 400, None),
]


@pytest.mark.parametrize("request_bytes,status,allow", MALFORMED,
                         ids=[f"{i}-{m[1]}" for i, m in enumerate(MALFORMED)])
def test_malformed_requests(api, request_bytes, status, allow):
    got, headers, body = http_exchange(api.port, request_bytes)
    assert got == status, (got, body)
    assert_json_error_body(status, body)
    if allow:
        assert allow in headers.get("allow", ""), headers
    # the server is fine afterwards
    assert call(api, "GET", "/healthz")[0] == 200


def test_errors_are_counted(api):
    before = api.stats()["errors"]
    http_exchange(api.port, MALFORMED[0][0])
    http_exchange(api.port, MALFORMED[1][0])
    http_exchange(api.port, MALFORMED[5][0])
    after = api.stats()["errors"]
    assert after["http_411"] == before["http_411"] + 1
    assert after["http_413"] == before["http_413"] + 1
    assert after["http_501"] == before["http_501"] + 1


def test_get_with_body_keeps_connection_usable(api):
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
        s.sendall(req("GET", "/healthz", b"ignored body", close=False) + req("GET", "/api/rooms"))
        st1, _, _, rest = read_http_response(s)
        st2, _, body, _ = _read_with_leftover(s, rest)
    assert (st1, st2) == (200, 200)
    assert "rooms" in json.loads(body)


# -- auth -----------------------------------------------------------------------------------

@pytest.mark.parametrize("auth", ["", "Authorization: Bearer wrong\r\n",
                                  f"Authorization: Basic {KEY}\r\n",
                                  f"Authorization: Bearer {KEY}x\r\n",
                                  f"Authorization: Bearer {KEY[:-1]}\r\n"])
def test_backend_calls_need_the_key(api, auth):
    for method, path, body in [("POST", room_path("lobby", "/messages"), {"type": "x"}),
                               ("DELETE", room_path("lobby"), None),
                               ("DELETE", "/api/clients/1", None),
                               ("GET", room_path("lobby", "/messages"), None)]:
        status, headers, doc = call(api, method, path, body, auth)
        assert status == 401, (method, path, status, doc)
        assert headers.get("www-authenticate", "").startswith("Bearer"), headers
        assert KEY not in json.dumps(doc)


def test_backend_calls_refused_without_configured_key(server):
    status, _, doc = call(server, "POST", room_path("lobby", "/messages"), {"type": "x"},
                          "Authorization: Bearer anything\r\n")
    assert status == 403, doc


def test_reads_are_open(api):
    for path in ["/healthz", "/api/stats", "/api/rooms", "/metrics", "/status"]:
        assert call(api, "GET", path)[0] == 200, path


# -- rooms, publish, kick, close --------------------------------------------------------------

def test_publish_via_api_is_sequenced_with_websocket_messages(api):
    room = "mixed/order é"

    async def main():
        a = await ws_connect(api.ws_url)
        b = await ws_connect(api.ws_url)
        ja = await ws_join(a, room)
        await ws_join(b, room)
        base = ja["last_msg_id"]
        ids, seen_b = [], []
        for i in range(20):
            if i % 2:
                await a.send(json.dumps({"type": "chat", "seq": i}))
            else:
                status, _, doc = call(api, "POST", room_path(room, "/messages"),
                                      {"type": "chat", "seq": i, "client_id": 99, "msg_id": 99},
                                      AUTH)
                assert status == 200, doc
                assert doc["client_id"] == 0 and doc["room"] == room
                ids.append(doc["msg_id"])
            # wait for it, so API and WebSocket publishes interleave in seq order
            seen_b.append(await ws_recv_json(b))
            assert seen_b[-1]["seq"] == i
        seen_a = [await ws_recv_json(a) for _ in range(20)]
        for seen in (seen_a, seen_b):
            assert [m["msg_id"] for m in seen] == list(range(base + 1, base + 21))
            assert [m["seq"] for m in seen] == list(range(20))
            for m in seen:
                if m["seq"] % 2 == 0:
                    assert m["client_id"] == 0 and m["msg_id"] in ids and m["room"] == room
                    # client_id/msg_id in the body were replaced, as for a client's publish
                    assert list(m.keys()) == ["type", "seq", "room", "client_id", "msg_id"], m
                else:
                    assert m["client_id"] == ja["client_id"]
        await a.close()
        await b.close()
    run(main())


def test_room_listing_and_details(api):
    async def main():
        a = await ws_connect(api.ws_url)
        b = await ws_connect(api.ws_url)
        ja = await ws_join(a, "listed")
        jb = await ws_join(b, "listed")
        await a.send(json.dumps({"type": "x"}))
        await ws_recv_json(a)
        status, _, doc = call(api, "GET", "/api/rooms")
        assert status == 200
        rooms = {r["room"]: r for r in doc["rooms"]}
        assert rooms["listed"]["members"] == 2
        assert rooms["listed"]["last_msg_id"] == ja["last_msg_id"] + 1
        assert doc["count"] == len(doc["rooms"])
        status, _, doc = call(api, "GET", room_path("listed"))
        assert status == 200
        assert sorted(doc["clients"]) == sorted([ja["client_id"], jb["client_id"]])
        assert call(api, "GET", room_path("never-was"))[0] == 404
        await a.close()
        await b.close()
    run(main())


def test_publish_rejects_bad_bodies(api):
    async def main():
        ws = await ws_connect(api.ws_url)
        await ws_join(ws, "strict")
        path = room_path("strict", "/messages")
        for body, why in [(b"not json", "json"), (b"[1,2]", "object"), (b"\xff\xfe", "utf-8"),
                          (b'{"type":"joined"}', "reserved"),
                          (b'{"type":"x","room":"other"}', "room")]:
            status, _, doc = call(api, "POST", path, body, AUTH)
            assert status == 400, (body, doc)
        # the room's sequence did not move
        status, _, doc = call(api, "POST", path, {"type": "ok", "room": "strict"}, AUTH)
        assert status == 200
        msg = await ws_recv_json(ws)
        assert msg["type"] == "ok" and msg["msg_id"] == doc["msg_id"]
        await ws.close()
    run(main())


def test_kick_client(api):
    async def main():
        victim = await ws_connect(api.ws_url)
        j = await ws_join(victim, "kick-room")
        status, _, doc = call(api, "DELETE", f"/api/clients/{j['client_id']}", None, AUTH)
        assert status == 200 and doc["kicked"] is True
        import websockets
        with pytest.raises(websockets.ConnectionClosed):
            await ws_recv_json(victim)
        assert victim.close_code == 1008
        assert call(api, "DELETE", "/api/clients/999999", None, AUTH)[0] == 404
        assert call(api, "DELETE", "/api/clients/abc", None, AUTH)[0] == 400
    run(main())


def test_close_room(api):
    async def main():
        a = await ws_connect(api.ws_url)
        b = await ws_connect(api.ws_url)
        await ws_join(a, "doomed")
        await ws_join(b, "doomed")
        await ws_join(b, "survivor")
        status, _, doc = call(api, "DELETE", room_path("doomed"), None, AUTH)
        assert status == 200 and doc["members_removed"] == 2
        for ws in (a, b):
            note = await ws_recv_json(ws)
            assert note == {"type": "left", "room": "doomed", "reason": "room_closed"}
        # b is still connected and still in its other room
        await b.send(json.dumps({"type": "still-here", "room": "survivor"}))
        assert (await ws_recv_json(b))["type"] == "still-here"
        # publishing to the closed room from a is refused: not a member any more
        await a.send(json.dumps({"type": "x", "room": "doomed"}))
        err = await ws_recv_json(a)
        assert err["type"] == "error" and err["code"] == "not_member"
        await a.close()
        await b.close()
    run(main())


def test_room_names_are_percent_decoded(api):
    name = "ünïcode room/with slash?&#"

    async def main():
        ws = await ws_connect(api.ws_url)
        await ws_join(ws, name)
        status, _, doc = call(api, "GET", room_path(name))
        assert status == 200 and doc["room"] == name
        status, _, doc = call(api, "POST", room_path(name, "/messages"), {"t": 1}, AUTH)
        assert status == 200, doc
        assert (await ws_recv_json(ws))["room"] == name
        await ws.close()
    run(main())


def test_history_endpoint(api):
    async def main():
        ws = await ws_connect(api.ws_url)
        j = await ws_join(ws, "hist")
        for i in range(5):
            await ws.send(json.dumps({"type": "h", "i": i}))
            await ws_recv_json(ws)
        status, _, doc = call(api, "GET", room_path("hist", f"/messages?since={j['last_msg_id'] + 1}&limit=2"),
                              None, AUTH)
        if status == 501:  # a build without history
            assert "history" in doc["error"]
            return
        assert status == 200, doc
        assert [m["i"] for m in doc["messages"]] == [1, 2]
        assert doc["more"] is True
        assert call(api, "GET", room_path("hist", "/messages?since=x"), None, AUTH)[0] == 400
        await ws.close()
    run(main())


# -- web files --------------------------------------------------------------------------------

def test_demo_page_and_client_library(api):
    status, headers, body = call(api, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"roomcast.js" in body
    status, headers, body = call(api, "GET", "/roomcast.js")
    assert status == 200 and "javascript" in headers["content-type"]
    assert b"export class RoomcastClient" in body
    etag = headers["etag"]
    status, _, _ = call(api, "GET", "/roomcast.js", None, f"If-None-Match: {etag}\r\n")
    assert status == 304
    status, headers, body = call(api, "HEAD", "/roomcast.js")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 1000


@pytest.mark.parametrize("path", ["/../Makefile", "/..%2fMakefile", "/.hidden", "/web/index.html",
                                  "/%2e%2e/Makefile", "//etc/passwd"])
def test_no_traversal(api, path):
    assert call(api, "GET", path)[0] == 404


def test_web_root_serves_from_disk(start_server, tmp_path):
    (tmp_path / "index.html").write_text("<p>from disk</p>")
    (tmp_path / "extra.css").write_text("body{}")
    srv = start_server("--web-root", str(tmp_path))
    status, headers, body = call(srv, "GET", "/")
    assert status == 200 and body == b"<p>from disk</p>"
    status, headers, body = call(srv, "GET", "/extra.css")
    assert status == 200 and headers["content-type"].startswith("text/css")
    assert call(srv, "GET", "/..%2f..%2fetc%2fpasswd")[0] == 404
    assert call(srv, "GET", "/missing.js")[0] == 404


def test_web_root_fifo_does_not_hang_the_server(start_server, tmp_path):
    """A FIFO (or any non-regular file) in --web-root is not served: opening it must not
    block the loop, which would stop every client."""
    import os
    os.mkfifo(tmp_path / "x.txt")
    (tmp_path / "ok.txt").write_text("fine")
    srv = start_server("--web-root", str(tmp_path))
    assert call(srv, "GET", "/x.txt")[0] == 404
    status, _, body = call(srv, "GET", "/ok.txt")
    assert status == 200 and body == b"fine"
    assert call(srv, "GET", "/healthz")[0] == 200


def test_websocket_upgrade_on_root_still_joins_rooms(api):
    async def main():
        ws = await ws_connect(api.ws_url)
        j = await ws_join(ws, "still-works")
        assert j["client_id"] > 0
        await ws.close()
    run(main())


def test_publish_idempotency_key(api):
    """POST .../messages treats idempotency_key like a member's publish: the second POST with
    the same key is not sequenced again and answers the first msg_id with duplicate:true. The
    API's keys are its own scope: a WebSocket client using the same key is not suppressed."""
    async def main():
        ws = await ws_connect(api.ws_url)
        await ws_join(ws, "idem-api")
        path = room_path("idem-api", "/messages")
        s1, _, d1 = call(api, "POST", path, {"type": "order", "idempotency_key": "order-1"}, AUTH)
        s2, _, d2 = call(api, "POST", path, {"type": "order", "idempotency_key": "order-1"}, AUTH)
        assert s1 == 200 and s2 == 200, (d1, d2)
        assert d2["msg_id"] == d1["msg_id"] and d2.get("duplicate") is True and "duplicate" not in d1
        first = await ws_recv_json(ws)
        assert first["msg_id"] == d1["msg_id"] and "idempotency_key" not in first
        # a client's own key "order-1" is another key
        await ws.send(json.dumps({"type": "mine", "idempotency_key": "order-1"}))
        mine = await ws_recv_json(ws)
        assert mine["type"] == "mine" and mine["msg_id"] == d1["msg_id"] + 1
        s3, _, d3 = call(api, "POST", path, {"type": "o", "idempotency_key": 5}, AUTH)
        assert s3 == 400 and "idempotency_key" in d3["error"]
        await ws.close()
    run(main())


@pytest.mark.parametrize("body,key", [
    (b'{"type":"joined","type":"chat"}', "type"),
    (b'{"type":"x","room":"dup-api","room":"other"}', "room"),
    (b'{"type":"x","msg_id":1,"msg_id":2}', "msg_id"),
])
def test_publish_refuses_repeated_server_members(api, body, key):
    status, _, doc = call(api, "POST", room_path("dup-api", "/messages"), body, AUTH)
    assert status == 400 and key in doc["error"], doc


def test_cors_for_the_web_client_and_public_endpoints(start_server):
    """A page on another origin can import roomcast.js and read the public endpoints (the
    README's `import ... from "http://127.0.0.1:8080/roomcast.js"`); calls that need the API key
    get no CORS headers; --cors-origins narrows the origins."""
    srv = start_server("--api-key", KEY)
    origin = "Origin: http://game.example\r\n"
    for path in ("/roomcast.js", "/healthz", "/api/stats", "/api/rooms", "/metrics"):
        status, headers, _ = call(srv, "GET", path, None, origin)
        assert status == 200 and headers.get("access-control-allow-origin") == "*", (path, headers)
    status, headers, _ = call(srv, "OPTIONS", "/roomcast.js", None,
                              origin + "Access-Control-Request-Method: GET\r\n")
    assert status == 204 and headers["access-control-allow-origin"] == "*"
    assert "GET" in headers["access-control-allow-methods"]
    status, headers, _ = call(srv, "GET", room_path("r", "/messages"), None, origin + AUTH)
    assert "access-control-allow-origin" not in headers
    narrow = start_server("--cors-origins", "http://a.example,http://b.example")
    _, headers, _ = call(narrow, "GET", "/healthz", None, "Origin: http://b.example\r\n")
    assert headers.get("access-control-allow-origin") == "http://b.example"
    assert "origin" in headers.get("vary", "").lower()
    _, headers, _ = call(narrow, "GET", "/healthz", None, "Origin: http://evil.example\r\n")
    assert "access-control-allow-origin" not in headers
