"""HTTP layer: the status page, /api/stats, the upgrade handshake and every HTTP error status
of docs/protocol.md ("HTTP errors before the upgrade"), each counted in /api/stats and unnoticed
by the clients already connected (the bystanders)."""

import json
import socket
import time

import pytest

from conftest import (RawWS, STATS_DISCONNECT_KEYS, STATS_ERROR_KEYS, STATS_TOP_KEYS,
                      OP_TEXT, accept_for, assert_json_error_body, assert_only_errors,
                      http_exchange, read_http_response, run, ws_connect, ws_join, ws_recv_json,
                      ws_request)


def get(path, extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n".encode()


def expect_http_error(server, bystanders, request, status, counter, shut_wr=False):
    before = server.stats()
    got, headers, body = http_exchange(server.port, request, shut_wr=shut_wr)
    assert got == status, f"expected {status}, got {got} {headers} {body[:300]!r}"
    assert_json_error_body(status, body)
    after = server.stats()
    assert_only_errors(before, after, **{f"errors_{counter}": 1})
    bystanders.check()
    return headers


# -- plain HTTP ---------------------------------------------------------------------------------

def test_status_page(server):
    status, headers, body = http_exchange(server.port, get("/"))
    assert status == 200
    assert body, "status page is empty"


def test_stats_document_has_every_counter(server):
    status, headers, body = http_exchange(server.port, get("/api/stats"))
    assert status == 200
    assert "json" in headers.get("content-type", ""), headers
    st = json.loads(body)
    for k in STATS_TOP_KEYS:
        assert isinstance(st.get(k), int), f"{k} missing or not an integer: {st}"
    for k in STATS_ERROR_KEYS:
        assert isinstance(st["errors"].get(k), int), f"errors.{k} missing: {st['errors']}"
    for k in STATS_DISCONNECT_KEYS:
        assert isinstance(st["disconnects"].get(k), int), f"disconnects.{k} missing: {st}"


def test_stats_connections_counts_websockets(server, bystanders):
    base = server.stats()
    clients = [RawWS.connect(server.port) for _ in range(3)]
    try:
        st = server.wait_stats(lambda s: s["connections"] >= base["connections"] + 3,
                               what="3 more connections")
        assert st["connections_total"] >= base["connections_total"] + 3
    finally:
        for c in clients:
            c.close()
    server.wait_stats(lambda s: s["connections"] <= base["connections"], what="back to baseline")


def assert_allow_get(headers):
    """405 carries Allow listing GET (HEAD may be listed too; nothing else)."""
    allowed = {m.strip() for m in headers.get("allow", "").split(",") if m.strip()}
    assert "GET" in allowed and allowed <= {"GET", "HEAD"}, headers


# -- HTTP errors ----------------------------------------------------------------------------------

def test_404_unknown_path(server, bystanders):
    expect_http_error(server, bystanders, get("/no/such/thing"), 404, "http_404")


def test_404_unknown_path_with_upgrade(server, bystanders):
    req, _ = ws_request("/nope")
    expect_http_error(server, bystanders, req, 404, "http_404")


def test_405_post_on_websocket_path(server, bystanders):
    req = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    headers = expect_http_error(server, bystanders, req, 405, "http_405")
    assert_allow_get(headers)


def test_405_put_on_echo(server, bystanders):
    req = b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    headers = expect_http_error(server, bystanders, req, 405, "http_405")
    assert_allow_get(headers)


def test_426_echo_without_upgrade(server, bystanders):
    headers = expect_http_error(server, bystanders, get("/echo"), 426, "http_426")
    # RFC 9110 15.5.22: a 426 names the protocol to upgrade to
    assert headers.get("upgrade", "").lower() == "websocket", headers


@pytest.mark.parametrize("version", ["8", "12", "14", "abc"])
def test_426_wrong_websocket_version(server, bystanders, version):
    req, _ = ws_request("/", version=version)
    headers = expect_http_error(server, bystanders, req, 426, "http_426")
    assert headers.get("sec-websocket-version") == "13", headers


def test_400_missing_key(server, bystanders):
    req, _ = ws_request("/", omit=("sec-websocket-key",))
    expect_http_error(server, bystanders, req, 400, "http_400")


@pytest.mark.parametrize("key", ["abc", "!!!!!!!!!!!!!!!!!!!!!!!!", "dGhlIHNhbXBsZSBub25jZQ",
                                 "dGhlIHNhbXBsZSBub25jZSEh"])
def test_400_bad_key(server, bystanders, key):
    # not base64, not 16 bytes once decoded (missing padding / 17 bytes)
    req, _ = ws_request("/", key=key)
    expect_http_error(server, bystanders, req, 400, "http_400")


def test_400_http10_upgrade(server, bystanders):
    req, _ = ws_request("/", http="1.0")
    expect_http_error(server, bystanders, req, 400, "http_400")


@pytest.mark.parametrize("garbage", [
    b"HELLO\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n folded: continuation\r\n\r\n",
    b"\x00\x01\x02\x03\xff\xfe\xfd\r\n\r\n",
], ids=["word", "tls-hello", "no-target", "http-9.9", "space-in-name", "obs-fold", "binary"])
def test_400_not_http(server, bystanders, garbage):
    expect_http_error(server, bystanders, garbage, 400, "http_400")


def test_431_header_too_large(server, bystanders):
    req, _ = ws_request("/", extra=[("X-Big", "a" * 9000)])
    expect_http_error(server, bystanders, req, 431, "http_431")


def test_431_too_many_headers(server, bystanders):
    req, _ = ws_request("/", extra=[(f"X-H{i}", "v") for i in range(70)])
    expect_http_error(server, bystanders, req, 431, "http_431")


def test_431_huge_head_delivered_not_reset(server, bystanders):
    """A 64 KiB head: the server rejects it early; the 431 must still reach the client (the
    server must not reset the connection while unread request bytes are pending)."""
    req, _ = ws_request("/", extra=[(f"X-Cookie{i}", "c" * 1000) for i in range(60)])
    before = server.stats()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        try:
            s.sendall(req)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            status, headers, body, _ = read_http_response(s)
        except ConnectionResetError:
            pytest.fail("server reset the connection instead of delivering its 431 response")
    assert status == 431, (status, body)
    after = server.stats()
    assert_only_errors(before, after, errors_http_431=1)
    bystanders.check()


def test_header_limit_is_configurable(start_server):
    srv = start_server("--max-header-size", "1024")
    req, _ = ws_request("/", extra=[("X-Pad", "p" * 1100)])
    status, _, body = http_exchange(srv.port, req)
    assert status == 431, body
    # a head just under the limit is fine
    ws = RawWS.connect(srv.port, extra=[("X-Pad", "p" * 600)])
    ws.send_text("{}")
    ws.close()


# -- successful handshakes ------------------------------------------------------------------------

def test_handshake_accept_deflate_and_no_subprotocol(server):
    """permessage-deflate is accepted (docs/protocol.md, Compression; every offer is tested in
    test_deflate.py), a subprotocol is not."""
    ws = RawWS.connect(server.port, "/echo", extra=[
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ("Sec-WebSocket-Protocol", "chat, superchat"),
        ("Origin", "http://example.com")])
    try:
        assert ws.response_headers.get("sec-websocket-extensions") == \
            "permessage-deflate; server_no_context_takeover", ws.response_headers
        assert "sec-websocket-protocol" not in ws.response_headers, ws.response_headers
        assert ws.response_headers.get("upgrade", "").lower() == "websocket"
        assert "upgrade" in ws.response_headers.get("connection", "").lower()
        ws.send_text("hi")
        assert ws.recv_message() == (OP_TEXT, b"hi")
    finally:
        ws.close()


def test_handshake_header_case_and_token_lists(server):
    """Firefox sends 'Connection: keep-alive, Upgrade'; header names are case-insensitive."""
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    req = ("GET /echo HTTP/1.1\r\nhost: x\r\nuPGRADE: WebSocket\r\n"
           "connection: keep-alive, Upgrade\r\nsec-websocket-key: " + key + "\r\n"
           "SEC-WEBSOCKET-VERSION: 13\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(req)
        status, headers, _, rest = read_http_response(s)
        assert status == 101, headers
        assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert accept_for(key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_byte_by_byte(server):
    req, key = ws_request("/echo")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in req:
            s.send(bytes([b]))
            time.sleep(0.0005)
        status, headers, _, rest = read_http_response(s)
        assert status == 101
        assert headers["sec-websocket-accept"] == accept_for(key)
        ws = RawWS(s, rest)
        ws.send_text("slow but fine")
        assert ws.recv_message() == (OP_TEXT, b"slow but fine")


def test_frames_pipelined_with_handshake(server):
    """A client may send frames right behind its request head, in the same segment."""
    from conftest import encode_frame
    req, key = ws_request("/echo")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(req + encode_frame(OP_TEXT, b"first") + encode_frame(OP_TEXT, b"second"))
        status, headers, _, rest = read_http_response(s)
        assert status == 101
        ws = RawWS(s, rest)
        assert ws.recv_message() == (OP_TEXT, b"first")
        assert ws.recv_message() == (OP_TEXT, b"second")


def test_websockets_client_offering_compression(server):
    """websockets offers permessage-deflate by default; roomcast declines and it still works."""
    async def main():
        ws = await ws_connect(server.ws_url, compression="deflate")
        try:
            j = await ws_join(ws, "deflate-room")
            await ws.send(json.dumps({"type": "hello", "text": "é" * 100}))
            msg = await ws_recv_json(ws)
            assert msg["text"] == "é" * 100 and msg["client_id"] == j["client_id"]
        finally:
            await ws.close()
    run(main())


# -- keep-alive, pipelining, odd but valid requests ---------------------------------------------------

def test_keepalive_pipelined_requests_then_upgrade(server):
    """Plain requests pipelined on one keep-alive connection are answered in order, and the same
    connection can then be upgraded."""
    req, key = ws_request("/echo")
    from conftest import encode_frame
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + req + encode_frame(OP_TEXT, b"up"))
        st, h, body, rest = read_http_response(s)
        assert st == 200 and json.loads(body)["connections"] >= 1
        ws = RawWS(s, rest)
        st, h, body, rest = read_http_response_buffered(ws)
        assert st == 404
        st, h, body, rest = read_http_response_buffered(ws, head_only=True)
        assert st == 200
        st, h, body, rest = read_http_response_buffered(ws)
        assert st == 101 and h["sec-websocket-accept"] == accept_for(key)
        assert ws.recv_message() == (OP_TEXT, b"up")


def read_http_response_buffered(ws, head_only=False):
    """Read one response from a RawWS's buffer+socket (for pipelined responses)."""
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in ws.buf:
        ws._fill(len(ws.buf) + 1, deadline)
    head, _, rest = bytes(ws.buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
    n = 0 if head_only or status == 101 else int(headers.get("content-length", "0"))
    ws.buf = bytearray(rest)
    ws._fill(n, deadline)
    body = bytes(ws.buf[:n])
    del ws.buf[:n]
    return status, headers, body, b""


def test_head_has_no_body(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body == b"", body[:100]


def test_query_string_on_websocket_path(server):
    """Browsers' clients often add ?token=...: the path is what routes."""
    ws = RawWS.connect(server.port, "/?token=abc&x=1")
    try:
        assert ws.join("query-room")["type"] == "joined"
    finally:
        ws.close()
    ws = RawWS.connect(server.port, "/echo?x=1")
    try:
        ws.send_text("q")
        assert ws.recv_message() == (OP_TEXT, b"q")
    finally:
        ws.close()


def test_400_missing_host(server, bystanders):
    req, _ = ws_request("/", omit=("host",))
    expect_http_error(server, bystanders, req, 400, "http_400")


def test_zz_no_connection_left_behind(server, bystanders):
    """Runs last in this module: after every malformed request above, only the bystanders are
    still connected (no leaked connection slots)."""
    server.wait_stats(lambda s: s["connections"] <= 3, what="only the 2 bystanders connected")
    bystanders.check()
