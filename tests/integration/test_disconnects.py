"""Abrupt disconnects: RST, EOF in the middle of a handshake / frame header / payload /
fragmented message, clients vanishing while a broadcast is being fanned out to them, clean
closes. The server must clean up (connections and rooms return to baseline, no leak at exit:
the module's server is stopped with SIGTERM and must exit 0 under ASan) and nobody else
notices."""

import asyncio
import json
import random
import socket
import struct
import threading
import time
import uuid

import pytest

from conftest import (OP_BINARY, OP_CONT, OP_TEXT, RawWS, encode_frame, run, ws_connect, ws_join,
                      ws_request)


def room_name(tag):
    return f"{tag}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def baseline(server, bystanders):
    """Connections before the test (bystanders included); after the test the server must be back
    to it and the bystanders must have noticed nothing."""
    base = server.stats()["connections"]
    yield base
    server.wait_stats(lambda s: s["connections"] <= base, what=f"connections back to {base}")
    bystanders.check()


def abort(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- during the handshake ----------------------------------------------------------------------------

@pytest.mark.parametrize("cut", ["nothing", "half-line", "half-head", "whole-head-minus-crlf"])
@pytest.mark.parametrize("how", ["eof", "rst"])
def test_cut_during_handshake(server, baseline, cut, how):
    req, _ = ws_request("/")
    part = {"nothing": b"", "half-line": req[:7], "half-head": req[:len(req) // 2],
            "whole-head-minus-crlf": req[:-2]}[cut]
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    if part:
        s.sendall(part)
    time.sleep(0.05)
    if how == "rst":
        abort(s)
        return
    s.shutdown(socket.SHUT_WR)
    # the server closes its side (possibly after a 400); it must not wait for the timeout
    s.settimeout(10)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    s.close()
    assert data == b"" or data.startswith(b"HTTP/1.1 400"), data[:200]


def test_many_connect_and_vanish(server, baseline):
    """A burst of connections that go away at once, in every way."""
    socks = []
    for i in range(200):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        if i % 3 == 1:
            s.sendall(b"GET / HTTP/1.1\r\n")
        elif i % 3 == 2:
            s.sendall(ws_request("/")[0])
        socks.append(s)
    for i, s in enumerate(socks):
        if i % 2:
            abort(s)
        else:
            s.close()


# -- after the handshake -----------------------------------------------------------------------------

CUTS = {
    "no-frame": lambda ws: None,
    "1-byte-header": lambda ws: ws.send_raw(b"\x81"),
    "2-byte-header-of-126": lambda ws: ws.send_raw(b"\x81\xfe"),
    "header-without-mask": lambda ws: ws.send_raw(b"\x81\xfe\x01\x00"),
    "mid-mask": lambda ws: ws.send_raw(b"\x81\x85\x01\x02"),
    "mid-payload": lambda ws: ws.send_raw(encode_frame(OP_TEXT, b'{"type":"m","x":"' + b"a" * 90 + b'"}')[:40]),
    "mid-64bit-length": lambda ws: ws.send_raw(b"\x82\xff\x00\x00\x00"),
    "mid-fragmented": lambda ws: ws.send_raw(encode_frame(OP_TEXT, b'{"type":', fin=False) +
                                            encode_frame(OP_CONT, b'"m"', fin=False)),
    "mid-big-binary": lambda ws: ws.send_raw(encode_frame(OP_BINARY, b"\x00" + b"z" * 200000)[:100000]),
    "after-close-frame": lambda ws: ws.send_close(1000),
}


@pytest.mark.parametrize("name", list(CUTS))
@pytest.mark.parametrize("how", ["eof", "rst"])
@pytest.mark.parametrize("joined", [False, True], ids=["lobby", "in-room"])
def test_cut_after_handshake(server, baseline, name, how, joined):
    room = room_name("cut")
    ws = RawWS.connect(server.port)
    peer = RawWS.connect(server.port)
    try:
        if joined:
            ws.join(room)
        peer.join(room)
        CUTS[name](ws)
        if how == "rst":
            ws.reset()
        else:
            ws.sock.shutdown(socket.SHUT_WR)
            ws.expect_eof()
            ws.close()
        # the room goes on for the peer; the departed member is gone
        peer.send_json({"type": "after"})
        m = peer.recv_json()
        assert (m["type"], m["msg_id"]) == ("after", 1), m
    finally:
        ws.close()
        peer.close()


def test_rst_with_unread_output(server, baseline):
    """A member with lots of unread, queued output resets its connection."""
    room = room_name("unread")
    victims = [RawWS.connect(server.port, rcvbuf=4096) for _ in range(5)]
    pub = RawWS.connect(server.port)
    try:
        for v in victims:
            v.join(room)
        pub.join(room)
        for i in range(300):
            pub.send_json({"type": "m", "seq": i, "pad": "u" * 1000})
        for i in range(300):
            assert pub.recv_json()["seq"] == i
        for v in victims:
            v.reset()
        pub.send_json({"type": "m", "seq": 300})
        assert pub.recv_json()["msg_id"] == 301
    finally:
        pub.close()


def test_clean_close_leaves_rooms(server, baseline):
    room = room_name("clean")
    a, b = RawWS.connect(server.port), RawWS.connect(server.port)
    try:
        a.join(room)
        b.join(room)
        a.send_close(1000, b"bye")
        a.expect_close(1000)
        b.send_json({"type": "alone"})
        assert b.recv_json()["msg_id"] == 1
    finally:
        a.close()
        b.close()


def test_close_frame_then_immediate_rst(server, baseline):
    """The client sends close and resets without waiting for the answer: the server's close
    reply hits a dead socket."""
    for _ in range(20):
        ws = RawWS.connect(server.port)
        ws.join(room_name("closerst"))
        ws.send_close(1000)
        ws.reset()


# -- vanishing during broadcasts ------------------------------------------------------------------

def vanish(sock, mode):
    if mode == "rst":
        abort(sock)
    elif mode == "fin":
        sock.close()
    elif mode == "half":
        sock.shutdown(socket.SHUT_WR)
        time.sleep(0.01)
        sock.close()
    elif mode == "midframe":
        try:
            sock.sendall(encode_frame(OP_TEXT, b'{"type":"x","p":"' + b"m" * 500 + b'"}')[:100])
        except OSError:
            pass
        abort(sock)
    elif mode == "close-then-rst":
        try:
            sock.sendall(encode_frame(0x8, struct.pack("!H", 1000)))
        except OSError:
            pass
        abort(sock)


def test_clients_vanish_during_broadcast(server, baseline):
    """30 members vanish (RST, FIN, half-close, mid-frame, close-then-RST) at random moments
    while 3 publishers flood the room; the 5 checking members see every message in order."""
    room = room_name("vanish")
    modes = ["rst", "fin", "half", "midframe", "close-then-rst"]
    vanishers = []
    for i in range(30):
        v = RawWS.connect(server.port, rcvbuf=8192 if i % 2 else None)
        v.join(room)
        vanishers.append((v, modes[i % len(modes)]))
    rng = random.Random(1234)
    go = threading.Event()

    def killer():
        go.wait(10)
        order = list(vanishers)
        rng.shuffle(order)
        for v, mode in order:
            time.sleep(rng.uniform(0, 0.01))
            vanish(v.sock, mode)

    kt = threading.Thread(target=killer, daemon=True)
    kt.start()

    async def main():
        checkers = []
        for _ in range(5):
            ws = await ws_connect(server.ws_url, max_queue=None)
            await ws_join(ws, room)
            checkers.append(ws)
        npub, nmsgs = 3, 300
        total = npub * nmsgs

        async def check(ws):
            for exp in range(1, total + 1):
                msg = json.loads(await ws.recv())
                assert msg["msg_id"] == exp, (msg["msg_id"], exp)

        async def pub(ws, k):
            for i in range(nmsgs):
                await ws.send(json.dumps({"type": "flood", "p": k, "seq": i, "pad": "v" * 300}))
                if i == 20 and k == 0:
                    go.set()
                if i % 10 == 0:
                    await asyncio.sleep(0.001)

        await asyncio.gather(*(check(ws) for ws in checkers),
                             *(pub(ws, k) for k, ws in enumerate(checkers[:npub])))
        for ws in checkers:
            await ws.close()

    try:
        run(main(), timeout=120)
    finally:
        go.set()
        kt.join(10)
        for v, _ in vanishers:
            v.close()


def test_resets_racing_broadcasts(server, baseline):
    """Repeatedly: many members reset their connections at the very moment a burst of messages
    is published, so that the server meets dead sockets in the middle of fanning out (writes
    failing with EPIPE/ECONNRESET, members removed while the room is being iterated). The
    surviving members see every message; under ASan any use-after-free shows."""
    for rnd in range(8):
        room = room_name(f"race{rnd}")
        doomed = [RawWS.connect(server.port, rcvbuf=4096 if i % 2 else None) for i in range(30)]
        keep = [RawWS.connect(server.port) for _ in range(4)]
        for m in doomed + keep:
            m.send_json({"type": "join", "room": room})
        for m in doomed + keep:
            assert m.recv_json()["type"] == "joined"
        burst = b"".join(encode_frame(OP_TEXT, json.dumps(
            {"type": "race", "i": i, "pad": "r" * 3000}).encode()) for i in range(20))
        # half reset before the burst, half right after it was sent
        for m in doomed[:15]:
            m.reset()
        keep[0].send_raw(burst)
        for m in doomed[15:]:
            m.reset()
        for m in keep:
            assert [m.recv_json()["msg_id"] for _ in range(20)] == list(range(1, 21))
        for m in keep:
            m.close()
