"""Keepalive (--ping-interval / --ping-timeout) and the handshake timeout (408)."""

import asyncio
import json
import socket
import time

import pytest

from conftest import (OP_CLOSE, OP_PING, OP_PONG, ConnectionGone, RawWS, assert_json_error_body,
                      read_http_response, run, ws_connect, ws_join)

FAST_PING = ("--ping-interval", "0.3", "--ping-timeout", "0.3")


def test_unresponsive_client_is_pinged_then_dropped(start_server):
    srv = start_server(*FAST_PING)
    ws = RawWS.connect(srv.port)
    try:
        ws.join("keepalive")
        f = ws.recv_frame(timeout=10)
        assert f.opcode == OP_PING, f"expected a ping first, got {f}"
        assert f.fin and len(f.payload) <= 125
        # we do not answer: the server drops us (a close 1011 'ping timeout' if it can)
        try:
            while True:
                f = ws.recv_frame(timeout=10)
                if f.opcode == OP_PING:
                    continue
                assert f.opcode == OP_CLOSE, f"unexpected {f}"
                assert f.close_code() == (1011, b"ping timeout"), f.close_code()
                ws.expect_eof()
                break
        except ConnectionGone:
            pass
    finally:
        ws.close()
    st = srv.wait_stats(lambda s: s["disconnects"]["ping_timeout"] >= 1, what="ping_timeout")
    assert st["disconnects"]["ping_timeout"] == 1, st["disconnects"]


def test_silent_before_joining_is_dropped_too(start_server):
    srv = start_server(*FAST_PING)
    ws = RawWS.connect(srv.port, "/echo")
    try:
        ws.expect_eof(timeout=10)
    finally:
        ws.close()
    srv.wait_stats(lambda s: s["disconnects"]["ping_timeout"] == 1, what="ping_timeout == 1")


def test_answering_clients_stay_connected(start_server):
    """A websockets client (answers pings automatically) and a raw client that answers pongs
    stay connected across many ping intervals and still work. (The timeout is 2 s rather than
    0.3 s so that a loaded test machine cannot make a Python client look dead.)"""
    srv = start_server("--ping-interval", "0.3", "--ping-timeout", "2")

    async def main():
        ws = await ws_connect(srv.ws_url)
        j = await ws_join(ws, "alive")
        raw = await asyncio.get_running_loop().run_in_executor(None, RawWS.connect, srv.port)

        def raw_session():
            raw.join("alive")
            deadline = time.monotonic() + 2.0
            pings = 0
            while time.monotonic() < deadline:
                try:
                    f = raw.recv_frame(timeout=0.5)
                except socket.timeout:
                    continue
                assert f.opcode == OP_PING, f
                pings += 1
                raw.send_frame(OP_PONG, f.payload)
            return pings

        # the websockets client sits idle (its library answers the pings in the background)
        pings = await asyncio.get_running_loop().run_in_executor(None, raw_session)
        assert pings >= 2, f"only {pings} pings in 2 s with --ping-interval 0.3"
        await ws.send(json.dumps({"type": "still-here"}))
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert msg["type"] == "still-here" and msg["client_id"] == j["client_id"]
        assert ws.open
        raw.send_json({"type": "raw-here"})
        m = raw.recv_json()
        assert m["type"] == "still-here" or m["type"] == "raw-here"
        await ws.close()
        raw.close()

    run(main())
    st = srv.stats()
    assert st["disconnects"]["ping_timeout"] == 0, st["disconnects"]


def test_traffic_counts_as_liveness(start_server):
    """A client that keeps sending (but never answers pings) is not dropped while it talks:
    'no pong or other traffic' is the rule. (If only pongs counted, it would be dropped after
    1.3 s of the 2 s it talks.)"""
    srv = start_server("--ping-interval", "0.3", "--ping-timeout", "1")
    ws = RawWS.connect(srv.port)
    try:
        ws.join("chatty")
        deadline = time.monotonic() + 2.0
        n = 0
        while time.monotonic() < deadline:
            ws.send_json({"type": "talk", "n": n})
            n += 1
            time.sleep(0.05)
        # everything we said came back, pings in between are skipped (and not answered)
        got = 0
        while got < n:
            f = ws.recv_frame(timeout=10)
            if f.opcode == OP_PING:
                continue
            assert f.opcode == 0x1, f
            assert json.loads(f.payload)["n"] == got
            got += 1
    finally:
        ws.close()
    assert srv.stats()["disconnects"]["ping_timeout"] == 0


def test_handshake_timeout_partial_head(start_server):
    srv = start_server("--handshake-timeout", "1")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        status, headers, body, _ = read_http_response(s, timeout=15)
        assert status == 408, (status, body)
        assert_json_error_body(408, body)
    st = srv.stats()
    assert st["errors"]["http_408"] == 1, st["errors"]
    assert st["disconnects"]["handshake_timeout"] == 1, st["disconnects"]


def test_handshake_timeout_silent_connection(start_server):
    """A connection that never sends a byte is dropped after the handshake timeout (408 or a
    plain close) and counted."""
    srv = start_server("--handshake-timeout", "1")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as s:
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]
    st = srv.stats()
    assert st["disconnects"]["handshake_timeout"] == 1, st["disconnects"]


def test_slowloris_trickle_still_times_out(start_server):
    """Sending one header byte at a time does not extend the handshake deadline forever."""
    srv = start_server("--handshake-timeout", "1")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as s:
        s.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
        deadline = time.monotonic() + 8
        closed = False
        while time.monotonic() < deadline:
            try:
                s.sendall(b"a")
            except OSError:
                closed = True
                break
            try:
                r = s.recv(4096, socket.MSG_DONTWAIT) if _readable(s) else None
            except ConnectionResetError:
                closed = True
                break
            if r is not None:
                assert r == b"" or r.startswith(b"HTTP/1.1 408"), r[:200]
                closed = True
                break
            time.sleep(0.1)
        assert closed, "server kept a trickling handshake open for 8 s with --handshake-timeout 1"
    st = srv.stats()
    assert st["disconnects"]["handshake_timeout"] == 1, st["disconnects"]


def _readable(s):
    import select
    r, _, _ = select.select([s], [], [], 0)
    return bool(r)


def test_completed_handshake_has_no_handshake_timeout(start_server):
    srv = start_server("--handshake-timeout", "1", "--ping-interval", "30")
    ws = RawWS.connect(srv.port, "/echo")
    try:
        time.sleep(1.8)
        ws.send_text("still here")
        assert ws.recv_message() == (0x1, b"still here")
    finally:
        ws.close()


def test_idle_keepalive_http_connection_is_closed(start_server):
    """After a complete plain HTTP exchange, an idle keep-alive connection is closed after
    --handshake-timeout (it does not hold a slot forever)."""
    srv = start_server("--handshake-timeout", "1")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as s:
        s.sendall(b"GET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body, rest = read_http_response(s, timeout=10)
        assert status == 200
        s.settimeout(10)
        data = rest
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        except socket.timeout:
            pytest.fail("idle keep-alive connection still open 10 s after --handshake-timeout 1")
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]
