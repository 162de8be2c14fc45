"""SIGTERM / SIGINT: every WebSocket client gets close 1001, the server exits 0 (no leak under
ASan) promptly, including when clients are mid-handshake, idle, or not reading at all."""

import asyncio
import json
import signal
import socket

import pytest
import websockets

from conftest import RawWS, run, ws_connect, ws_join


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_closes_everyone_with_1001(start_server, sig):
    srv = start_server()
    raws = [RawWS.connect(srv.port) for _ in range(3)]
    echo = RawWS.connect(srv.port, "/echo")
    lobby = RawWS.connect(srv.port)                      # connected, in no room
    for i, r in enumerate(raws):
        r.join(f"room-{i % 2}")
    half = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    half.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")      # mid-handshake

    async def main():
        wss = []
        for i in range(4):
            ws = await ws_connect(srv.ws_url)
            await ws_join(ws, f"room-{i % 2}")
            wss.append(ws)
        srv.signal(sig)
        codes = []
        for ws in wss:
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 20)
            except websockets.ConnectionClosed:
                pass
            await ws.wait_closed()
            codes.append(ws.close_code)
        return codes

    codes = run(main(), timeout=60)
    assert codes == [1001] * 4, codes

    try:
        for r in raws + [echo, lobby]:
            r.expect_close(1001)
        # the half-open handshake is simply closed (or answered) — not left hanging
        half.settimeout(10)
        try:
            while half.recv(4096):
                pass
        except ConnectionResetError:
            pass
        rc = srv.wait_exit()
        srv.assert_clean_exit(rc)
    finally:
        for r in raws + [echo, lobby]:
            r.close()
        half.close()


def test_signal_with_idle_server(start_server):
    srv = start_server()
    srv.stop(signal.SIGTERM)


def test_signal_with_client_that_never_reads(start_server):
    """A member with full buffers that never reads must not keep the server from exiting: the
    close is bounded by --close-timeout."""
    srv = start_server("--close-timeout", "1", "--max-pending", str(8 * 1024 * 1024))
    stuck = RawWS.connect(srv.port, rcvbuf=4096)
    stuck.join("stuck")
    pub = RawWS.connect(srv.port)
    pub.join("stuck")
    try:
        for i in range(2000):
            pub.send_json({"type": "fill", "i": i, "pad": "f" * 1000})
        for i in range(2000):
            pub.recv_json()
        srv.signal(signal.SIGTERM)
        pub.expect_close(1001)
        rc = srv.wait_exit(timeout=20)
        srv.assert_clean_exit(rc)
    finally:
        stuck.close()
        pub.close()


def test_signal_during_broadcast_storm(start_server):
    """SIGTERM while messages are flowing: clients see a gap-free prefix of their room's
    sequence, then close 1001."""
    srv = start_server()

    async def main():
        wss = []
        for i in range(6):
            ws = await ws_connect(srv.ws_url, max_queue=None)
            await ws_join(ws, "storm")
            wss.append(ws)

        async def member(ws):
            exp = 1
            try:
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
                    assert msg["msg_id"] == exp
                    exp += 1
            except websockets.ConnectionClosed:
                pass
            await ws.wait_closed()
            return ws.close_code

        async def flood(ws):
            try:
                for i in range(100000):
                    await ws.send(json.dumps({"type": "f", "i": i}))
                    if i % 20 == 0:
                        await asyncio.sleep(0)
            except websockets.ConnectionClosed:
                pass

        readers = [asyncio.ensure_future(member(ws)) for ws in wss]
        floods = [asyncio.ensure_future(flood(ws)) for ws in wss[:2]]
        await asyncio.sleep(1.0)
        srv.signal(signal.SIGTERM)
        codes = await asyncio.gather(*readers)
        await asyncio.gather(*floods)
        return codes

    codes = run(main(), timeout=60)
    assert codes == [1001] * 6, codes
    rc = srv.wait_exit()
    srv.assert_clean_exit(rc)
