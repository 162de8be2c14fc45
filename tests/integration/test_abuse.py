"""Abuse limits (docs/limits.md): --allowed-origins (403 at the upgrade), --connections-per-ip
(refused on every listener, counts released however a connection ends), and the per-connection
rate limits on messages, bytes and joins (rate_limited errors, then close 1008), all counted in
/metrics and /api/stats.

No assertion here depends on timing: each test either stays within a burst (nothing can be
refused whatever the machine does) or sends far more than a burst at once, and rates are set
so low that what passes within the test does not depend on how long it takes."""

import asyncio
import json
import re
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest
import websockets

from conftest import (IO_TIMEOUT, OP_CLOSE, RawWS, assert_json_error_body, encode_frame,
                      http_exchange, read_http_response, run, ws_connect, ws_request)
from rawtcp import ChatClient, LineClient


def metrics(srv):
    status, _, body = http_exchange(
        srv.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200, body
    return metrics_text(body)


def metrics_text(body):
    """The samples of a /metrics body as {name{labels}: value}."""
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def frames(msgs):
    """Many room-protocol messages as masked WebSocket text frames in one byte string."""
    return b"".join(encode_frame(0x1, json.dumps(m, separators=(",", ":")).encode())
                    for m in msgs)


def read_until_close(ws, limit=100000):
    """Messages of ws up to its close frame: (list of JSON messages, close code, reason)."""
    got = []
    for _ in range(limit):
        op, payload = ws.recv_message()
        if op == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            return got, code, payload[2:].decode()
        got.append(json.loads(payload))
    raise AssertionError("no close frame")


# -- rate limits ---------------------------------------------------------------------------------

def test_flooder_is_cut_others_keep_every_message(start_server):
    """A client flooding a room is refused (rate_limited) and then closed 1008, while two
    members keep receiving every message of a steady sender, in order. The steady sender sends
    fewer messages than one burst, so it can never be refused, however slow the machine."""
    srv = start_server("--rate-messages", "50", "--rate-messages-burst", "100",
                       "--rate-close-after", "10", "--ping-interval", "60")
    room = "arena"
    receivers = [RawWS.connect(srv.port) for _ in range(2)]
    for r in receivers:
        r.join(room)
    steady = RawWS.connect(srv.port)
    steady.join(room)
    flooder = RawWS.connect(srv.port)
    flooder.join(room)

    steady_n = 60
    done = threading.Event()

    def send_steady():
        for i in range(steady_n):
            steady.send_json({"type": "tick", "seq": i})
        done.set()

    t = threading.Thread(target=send_steady)
    t.start()
    try:
        flooder.send_raw(frames({"type": "spam", "i": i} for i in range(3000)))
    except OSError:
        pass  # the server may have closed it already (it discards the rest unread)
    t.join(30)
    assert done.is_set()

    got, code, reason = read_until_close(flooder)
    assert code == 1008 and reason == "rate limit exceeded", (code, reason)
    errors = [m for m in got if m.get("type") == "error"]
    assert errors, got[-5:]
    for e in errors:
        assert e["code"] == "rate_limited" and e["limit"] == "messages", e
        assert isinstance(e["retry_after_ms"], int) and e["retry_after_ms"] > 0, e
        assert "messages" in e["message"], e
    assert len(errors) >= 10, len(errors)  # it ignored them: closed after the 10th (or later)
    spam_passed = sum(1 for m in got if m.get("type") == "spam")
    flooder.expect_eof()
    flooder.close()

    # every member sees every steady message, in order, with increasing msg_ids
    for r in receivers:
        seqs, last_id = [], 0
        while len(seqs) < steady_n:
            m = r.recv_json()
            assert m["msg_id"] > last_id, m
            last_id = m["msg_id"]
            if m.get("type") == "tick":
                seqs.append(m["seq"])
        assert seqs == list(range(steady_n))
    # the steady sender was never refused: it got its own messages back, no error
    seqs = []
    while len(seqs) < steady_n:
        m = steady.recv_json()
        assert m.get("type") != "error", m
        if m.get("type") == "tick":
            seqs.append(m["seq"])

    st = srv.stats()
    lim = st["limits"]
    assert lim["rate_limited"]["messages"] == len(errors) + 1  # the last one closed it
    assert lim["rate_limit_closes"] == 1
    assert st["errors"]["rate_limited"] == len(errors)
    # what passed is the burst less the join, plus what refilled meanwhile; never all of it
    assert 99 <= spam_passed < 3000
    m = metrics(srv)
    assert m['roomcast_rate_limited_total{limit="messages"}'] == len(errors) + 1
    assert m["roomcast_rate_limit_disconnects_total"] == 1
    for c in receivers + [steady]:
        c.close()


def test_bytes_limit(start_server):
    """--rate-bytes: 10 B/s with a 1000-byte burst; a refill needs tens of seconds, so what
    passes is decided by the burst alone. A message larger than the burst passes when the
    allowance is full (and leaves it in debt)."""
    srv = start_server("--rate-bytes", "10", "--rate-bytes-burst", "1000",
                       "--rate-close-after", "0")
    ws = RawWS.connect(srv.port)
    ws.join("bytes")  # ~30 bytes
    pad = "x" * 560
    ws.send_raw(frames([{"type": "m", "pad": pad}, {"type": "m", "pad": pad}]))
    first = ws.recv_json()
    assert first.get("type") == "m" and first["msg_id"] == 1, first
    err = ws.expect_error("rate_limited")
    assert err["limit"] == "bytes" and "bytes" in err["message"], err
    assert err["retry_after_ms"] > 1000, err  # hundreds of bytes at 10 B/s
    # the refused message cost nothing: a small one still fits in what is left (not closed:
    # --rate-close-after 0)
    ws.send_json({"type": "small"})
    m = ws.recv_json()
    assert m["type"] == "small" and m["msg_id"] == 2, m

    # a fresh connection: one message larger than the whole burst passes, then it is in debt
    big = RawWS.connect(srv.port)
    big.send_json({"type": "join", "room": "bytes2"})
    assert big.recv_json()["type"] == "joined"
    # its bucket is not full after the join: the oversized message waits for a full bucket
    big.send_json({"type": "m", "pad": "y" * 3000})
    assert big.expect_error("rate_limited")["limit"] == "bytes"
    big.close()
    big = RawWS.connect(srv.port)
    big.send_raw(frames([{"type": "m", "room": "nowhere", "pad": "y" * 3000}, {"type": "m"}]))
    e1 = big.expect_error("not_member")  # processed (it passed the limit): a room error
    e2 = big.expect_error("rate_limited")
    assert e1 and e2["limit"] == "bytes"
    st = srv.stats()
    assert st["limits"]["rate_limited"]["bytes"] == 3
    assert st["limits"]["rate_limited"]["messages"] == 0
    assert st["limits"]["rate_limit_closes"] == 0
    ws.close()
    big.close()


def test_join_rate(start_server):
    """--join-rate 1 with a burst of 3: four joins sent at once give three joined and one
    rate_limited (limit joins); the refused join had no effect; publishing is not limited by
    it."""
    srv = start_server("--join-rate", "1", "--join-burst", "3", "--rate-close-after", "0")
    ws = RawWS.connect(srv.port)
    ws.send_raw(frames({"type": "join", "room": f"j{i}"} for i in range(4)))
    for i in range(3):
        m = ws.recv_json()
        assert m["type"] == "joined" and m["room"] == f"j{i}", m
    err = ws.expect_error("rate_limited")
    assert err["limit"] == "joins" and "joins" in err["message"], err
    assert 0 < err["retry_after_ms"] <= 1000, err
    ws.send_json({"type": "m", "room": "j3"})
    ws.expect_error("not_member")  # the refused join did not happen
    for i in range(10):
        ws.send_json({"type": "m", "room": "j0", "i": i})
        assert ws.recv_json()["i"] == i
    st = srv.stats()
    assert st["limits"]["rate_limited"] == {"messages": 0, "bytes": 0, "joins": 1}
    ws.close()


def test_rate_limits_over_tcp_and_chat(start_server):
    """The same limits on the raw TCP port (error lines, then the close line 1008) and the chat
    port (error notices, then the closing line)."""
    srv = start_server("--tcp-port", "0", "--chat-port", "0", "--rate-messages", "1",
                       "--rate-messages-burst", "5", "--rate-close-after", "3")
    c = LineClient.connect(srv.tcp_port)
    c.send_lines([{"type": "join", "room": "t"}] + [{"type": "m", "i": i} for i in range(50)])
    assert c.recv_json()["type"] == "joined"
    for i in range(4):
        assert c.recv_json()["i"] == i
    for _ in range(3):
        e = c.expect_error("rate_limited")
        assert e["limit"] == "messages", e
    c.expect_close(1008, "rate limit exceeded")
    c.close()

    chat = ChatClient.connect(srv.chat_port)
    chat.send(b"".join(json.dumps({"user": "ann", "text": f"t{i}"}).encode() for i in range(40)))
    for i in range(5):
        assert chat.recv_line() == f"[ann] t{i}"
    for _ in range(3):
        line = chat.recv_line()
        assert line.startswith("[roomcast] ") and '"rate_limited"' in line, line
    chat.expect_closing("rate limit exceeded")
    chat.close()
    st = srv.stats()
    assert st["limits"]["rate_limit_closes"] == 2
    assert st["limits"]["rate_limited"]["messages"] == 8


def test_limits_off_by_default(server):
    """Without flags nothing is limited: a burst of 2000 messages all pass."""
    ws = RawWS.connect(server.port)
    ws.join("no-limits")
    ws.send_raw(frames({"type": "m", "i": i} for i in range(2000)))
    for i in range(2000):
        assert ws.recv_json()["i"] == i
    ws.close()
    st = server.stats()["limits"]
    assert st["rate_limited"] == {"messages": 0, "bytes": 0, "joins": 0}
    assert st["refused_origin"] == 0 and st["refused_per_ip"] == 0


# -- Origin --------------------------------------------------------------------------------------

def test_allowed_origins(start_server):
    srv = start_server("--allowed-origins", "https://game.example, http://localhost:3000")

    async def clients():
        ws = await ws_connect(srv.ws_url, origin="https://game.example")
        await ws.close()
        ws = await ws_connect(srv.ws_url, origin="http://localhost:3000")
        await ws.close()
        ws = await ws_connect(srv.ws_url)  # no Origin: not a browser, allowed
        await ws.close()
        for bad in ("https://evil.example", "http://game.example", "http://localhost:3001"):
            with pytest.raises(websockets.InvalidStatusCode) as ei:
                await ws_connect(srv.ws_url, origin=bad)
            assert ei.value.status_code == 403
    run(clients())

    req, _ = ws_request("/", extra=(("Origin", "https://evil.example"),))
    status, _, body = http_exchange(srv.port, req)
    assert status == 403, body
    assert_json_error_body(403, body)
    assert b"https://evil.example" in body and b"--allowed-origins" in body, body
    req, _ = ws_request("/echo", extra=(("Origin", "https://evil.example"),))
    assert http_exchange(srv.port, req)[0] == 403
    # plain HTTP (not an upgrade) is not the allowlist's business
    status, _, _ = http_exchange(
        srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n"
                  b"Connection: close\r\n\r\n")
    assert status == 200
    st = srv.stats()
    assert st["limits"]["refused_origin"] == 5
    assert st["errors"]["http_403"] == 5
    assert metrics(srv)['roomcast_connections_refused_total{reason="origin"}'] == 5


def test_any_origin_by_default(server):
    async def client():
        ws = await ws_connect(server.ws_url, origin="https://anything.example")
        await ws.close()
    run(client())


# -- per-IP connections --------------------------------------------------------------------------
#
# The tests' own HTTP requests (stats, metrics) come from 127.0.0.1 too and count while the
# server has not yet reaped them, so they go through fetch(), which retries a refusal and
# counts it; a count that leaked would make every retry fail, so the retries hide nothing.

class Refusals:
    def __init__(self):
        self.n = 0


def fetch(srv, path, refusals, pred=lambda body: True):
    """GET path until answered 200 and pred(body) holds, retrying 503s (counted)."""
    deadline = time.monotonic() + IO_TIMEOUT
    while True:
        status, _, body = http_exchange(
            srv.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        if status == 503:
            refusals.n += 1
        elif status == 200 and pred(body):
            return body
        assert time.monotonic() < deadline, f"GET {path}: last {status} {body[:300]!r}"
        time.sleep(0.02)


def stats_until(srv, refusals, pred=lambda st: True):
    return json.loads(fetch(srv, "/api/stats", refusals, lambda b: pred(json.loads(b))))


def open_ws(srv, refusals):
    deadline = time.monotonic() + IO_TIMEOUT
    while True:
        try:
            return RawWS.connect(srv.port)
        except AssertionError as e:
            assert "answered 503" in str(e) and time.monotonic() < deadline, e
            refusals.n += 1
            time.sleep(0.02)


def open_line(srv, refusals, room):
    deadline = time.monotonic() + IO_TIMEOUT
    while True:
        c = LineClient.connect(srv.tcp_port)
        c.send_line({"type": "join", "room": room})
        m = c.recv_json()
        if m.get("type") == "joined":
            return c
        assert m == {"type": "close", "code": 1013, "reason": m["reason"]}, m
        assert time.monotonic() < deadline
        refusals.n += 1
        c.close()
        time.sleep(0.02)


def test_per_ip_limit_every_listener(start_server):
    """--connections-per-ip 3 counts one address across every listener: with three open, a
    fourth is refused on the HTTP port (503 and why), the TCP port and the chat port (their
    close lines); the open ones are unaffected; closing one frees its place."""
    srv = start_server("--connections-per-ip", "3", "--tcp-port", "0", "--chat-port", "0",
                       "--ping-interval", "60")
    r = Refusals()
    a = open_ws(srv, r)
    a.join("ip")
    b = open_line(srv, r, "ip")
    c = ChatClient.connect(srv.chat_port)
    c.say("ann", "hi")  # answered: so it has been accepted (and not refused)
    assert c.recv_line() == "[ann] hi"

    req, _ = ws_request("/")
    status, _, body = http_exchange(srv.port, req)
    assert status == 503, body
    assert_json_error_body(503, body)
    assert b"too many connections from your address (at most 3)" in body, body
    t = LineClient.connect(srv.tcp_port)
    t.expect_close(1013, "too many connections from your address (at most 3)")
    t.close()
    ch = ChatClient.connect(srv.chat_port)
    ch.expect_closing("too many connections from your address (at most 3)")
    ch.close()

    a.send_json({"type": "m"})
    assert a.recv_json()["type"] == "m"
    assert b.recv_json()["type"] == "m"
    c.close()
    st = stats_until(srv, r, lambda s: s["connections"] <= 3)
    assert st["limits"]["refused_per_ip"] == 3 + r.n
    assert st["limits"]["addresses"] == 1
    m = metrics_text(fetch(srv, "/metrics", r))
    assert m['roomcast_connections_refused_total{reason="per_ip"}'] >= 3
    # a's place taken by a new client once a is gone
    a.send_close(1000)
    a.expect_close(1000)
    a.close()
    a2 = open_ws(srv, r)
    a2.join("ip")
    a2.close()
    b.close()


def test_per_ip_counts_released_however_closed(start_server):
    """Rounds of four connections (WebSocket, raw TCP, an HTTP keep-alive connection left
    mid-request, a TCP client) plus a fifth that is refused, ended every way (close
    handshake, reset, EOF mid-request, leave then close, linger-0 reset): no count leaks, and
    afterwards the full allowance is there again."""
    srv = start_server("--connections-per-ip", "4", "--tcp-port", "0", "--ping-interval", "60",
                       "--handshake-timeout", "30")
    r = Refusals()
    rounds = 30
    for i in range(rounds):
        ws = open_ws(srv, r)
        ws.join(f"r{i % 3}")
        tcp = open_line(srv, r, "x")
        s4 = open_line(srv, r, "y")
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=IO_TIMEOUT)
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _, _ = read_http_response(raw)
        if status == 503:  # a connection of the last round not yet reaped: try again
            r.n += 1
            raw.close()
            stats_until(srv, r, lambda st: st["connections"] <= 5)
            raw = socket.create_connection(("127.0.0.1", srv.port), timeout=IO_TIMEOUT)
            raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, _, _ = read_http_response(raw)
        assert status == 200
        raw.sendall(b"GET / HTTP/1.1\r\n")  # and half of the next request
        over = LineClient.connect(srv.tcp_port)  # the fifth: all four are in
        over.expect_close(1013)
        over.close()
        if i % 2:
            ws.send_close(1000)
            ws.expect_close(1000)
        else:
            ws.reset()
        ws.close()
        if i % 3 == 0:
            tcp.send_line({"type": "leave", "room": "x"})
            assert tcp.recv_json()["type"] == "left"
        tcp.close()
        raw.close()
        s4.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s4.close()
    st = stats_until(srv, r, lambda s: s["connections"] <= 1)
    assert st["limits"]["refused_per_ip"] == rounds + r.n
    # the whole allowance again
    held = [open_ws(srv, r) for _ in range(4)]
    for h in held:
        h.join("after")
    assert len({h.sock.getsockname() for h in held}) == 4
    for h in held:
        h.send_close(1000)
        h.expect_close(1000)
        h.close()
    stats_until(srv, r, lambda s: s["limits"]["addresses"] == 1 and s["connections"] == 1)


def test_per_ip_limit_on_tls_listener(start_server, tmp_path):
    """The TLS listener counts in the same allowance: with the limit held by plain clients, a
    TLS client finishes its handshake and reads 503 and why; one plain client gone, wss works."""
    d = str(tmp_path)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    "k.pem", "-out", "c.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   cwd=d, check=True, capture_output=True, timeout=60)
    srv = start_server("--tls-cert", f"{d}/c.pem", "--tls-key", f"{d}/k.pem", "--tls-port", "0",
                       "--connections-per-ip", "2", "--ping-interval", "60")
    port = int(re.search(r"listening on https://127\.0\.0\.1:(\d+)/", srv.stderr()).group(1))
    ctx = ssl.create_default_context(cafile=f"{d}/c.pem")
    r = Refusals()
    a, b = open_ws(srv, r), open_ws(srv, r)
    a.join("tls")
    b.join("tls")
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(ws_request("/")[0])
            status, _, body, _ = read_http_response(s)
    assert status == 503 and b"too many connections from your address" in body, (status, body)
    b.send_close(1000)
    b.expect_close(1000)
    b.close()

    async def wss():
        deadline = time.monotonic() + IO_TIMEOUT
        while True:
            try:
                ws = await ws_connect(f"wss://127.0.0.1:{port}/", ssl=ctx)
                break
            except websockets.InvalidStatusCode as e:  # the refused one not reaped yet
                assert e.status_code == 503 and time.monotonic() < deadline
                r.n += 1
                await asyncio.sleep(0.02)
        await ws.send(json.dumps({"type": "join", "room": "tls"}))
        assert json.loads(await ws.recv())["type"] == "joined"
        await ws.close()
    run(wss())
    a.close()
    assert stats_until(srv, r)["limits"]["refused_per_ip"] == 1 + r.n
