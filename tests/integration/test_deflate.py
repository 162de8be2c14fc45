"""permessage-deflate (RFC 7692, issue 17): the offers roomcast accepts and declines and its
exact answer, compressed client messages (whole, fragmented, with control frames between the
fragments, invalid, a decompression bomb), room broadcasts compressed once for every member
that negotiated it, the threshold below which frames go plain, --ws-deflate off, and the
Python `websockets` client with every parameter combination it can offer."""

import asyncio
import json
import os
import time
import zlib

import pytest

from conftest import (OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWS, assert_only_errors,
                      encode_frame)

EXT = "Sec-WebSocket-Extensions"
BASE = "permessage-deflate; server_no_context_takeover"
CNCT = "; client_no_context_takeover"


def offer(server, *values, path="/echo"):
    """Connect offering each value in its own Sec-WebSocket-Extensions header; return the
    connection and the extension header of the answer (None when declined)."""
    ws = RawWS.connect(server.port, path, extra=[(EXT, v) for v in values])
    return ws, ws.response_headers.get(EXT.lower())


def deflate(data, wbits=15):
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate(data):
    return zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")


def recv_z(ws, want_rsv=None):
    """The next data message, inflated when compressed (the echo answers a deflate client in
    its wire: compressed from --ws-deflate-threshold on, when it shrinks). want_rsv, when given,
    is whether it must have come compressed."""
    f = ws.recv_frame()
    while f.opcode in (OP_PING, OP_PONG):
        f = ws.recv_frame()
    assert f.fin, f
    if want_rsv is not None:
        assert (f.rsv == 4) == want_rsv, f
    return (f.opcode, inflate(f.payload) if f.rsv == 4 else f.payload)


def pose(i, pad=0):
    return json.dumps({"type": "pose", "player": f"p{i}", "x": 1.25 * i, "y": -3.5, "z": 7.0,
                       "rot": [0.0, 0.7071, 0.0, 0.7071], "vel": [0.1, 0.0, -0.2],
                       "anim": "run", "pad": "." * pad}, separators=(",", ":")).encode()


# -- negotiation ---------------------------------------------------------------------------------

ACCEPTED = [
    ("permessage-deflate", BASE),
    ("permessage-deflate; client_max_window_bits", BASE),
    ("permessage-deflate; client_max_window_bits=10", BASE + "; client_max_window_bits=10"),
    ('permessage-deflate; client_max_window_bits="8"', BASE + "; client_max_window_bits=8"),
    ("permessage-deflate; server_max_window_bits=15", BASE + "; server_max_window_bits=15"),
    ("permessage-deflate; server_max_window_bits=9", BASE + "; server_max_window_bits=9"),
    ("permessage-deflate;server_max_window_bits=12;client_max_window_bits=11",
     BASE + "; server_max_window_bits=12; client_max_window_bits=11"),
    ("permessage-deflate; server_no_context_takeover", BASE),
    ("permessage-deflate; client_no_context_takeover", BASE + CNCT),
    ("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=10; client_max_window_bits",
     BASE + CNCT + "; server_max_window_bits=10"),
    # the first acceptable offer wins: an unacceptable one before it is skipped
    ("permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits",
     BASE),
    ("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=12",
     BASE + "; client_max_window_bits=12"),
    ('foo; bar="a,b", permessage-deflate', BASE),
    ("PerMessage-Deflate", BASE),
]


@pytest.mark.parametrize("value,expected", ACCEPTED)
def test_offer_accepted(server, value, expected):
    ws, ext = offer(server, value)
    ws.close()
    assert ext == expected


DECLINED = [
    "permessage-deflate; server_max_window_bits=8",   # zlib cannot make 8-bit raw windows
    "permessage-deflate; server_max_window_bits",     # needs a value
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=010",
    "permessage-deflate; client_max_window_bits=7",
    "permessage-deflate; client_max_window_bits=abc",
    "permessage-deflate; server_no_context_takeover=1",
    "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
    "permessage-deflate; mystery=1",
    "x-webkit-deflate-frame",
    "permessage-deflate; client_max_window_bits=\"10",  # unterminated quote: malformed
]


@pytest.mark.parametrize("value", DECLINED)
def test_offer_declined(server, value):
    ws, ext = offer(server, value)
    try:
        assert ext is None
        # declined means plain WebSocket: RSV1 is now a protocol error
        ws.send_frame(OP_TEXT, deflate(b"hello"), rsv=4)
        ws.expect_close(1002)
    finally:
        ws.close()


def test_offer_in_second_header(server):
    ws, ext = offer(server, "foo", "permessage-deflate; server_max_window_bits=11")
    ws.close()
    assert ext == BASE + "; server_max_window_bits=11"


def test_deflate_off(start_server):
    srv = start_server("--ws-deflate", "off")
    ws, ext = offer(srv, "permessage-deflate")
    try:
        assert ext is None
        ws.send_frame(OP_TEXT, deflate(b"hello"), rsv=4)
        ws.expect_close(1002)
    finally:
        ws.close()


# -- compressed client messages ------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 200, 5000, 300000])
def test_compressed_echo(server, size):
    ws, ext = offer(server, "permessage-deflate")
    try:
        assert ext == BASE
        data = (b"roomcast " * (size // 9 + 1))[:size]
        ws.send_frame(OP_TEXT, deflate(data), rsv=4)
        assert recv_z(ws, want_rsv=size >= 200) == (OP_TEXT, data)
        ws.send_frame(OP_BINARY, deflate(bytes(range(256)) * 3), rsv=4)
        assert recv_z(ws, want_rsv=True) == (OP_BINARY, bytes(range(256)) * 3)
        ws.send_frame(OP_TEXT, b"plain")  # an uncompressed message is fine too
        assert recv_z(ws, want_rsv=False) == (OP_TEXT, b"plain")
    finally:
        ws.close()


@pytest.mark.parametrize("value", ["permessage-deflate",
                                   "permessage-deflate; client_no_context_takeover"])
def test_client_context(server, value):
    """Without client_no_context_takeover the client keeps its window: later messages refer to
    earlier ones (its own inflater on the server); with it, each message stands alone."""
    takeover = "client_no_context_takeover" not in value
    ws, ext = offer(server, value)
    try:
        assert (CNCT in ext) != takeover
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        sizes = []
        for i in range(4):
            data = pose(i, pad=100)
            if not takeover:
                comp = zlib.compressobj(6, zlib.DEFLATED, -15)
            z = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
            sizes.append(len(z))
            ws.send_frame(OP_TEXT, z[:-4], rsv=4)
            assert recv_z(ws) == (OP_TEXT, data)
            if i == 1:
                ws.send_frame(OP_TEXT, b"plain between")  # does not disturb the context
                assert recv_z(ws) == (OP_TEXT, b"plain between")
        if takeover:
            assert sizes[3] < sizes[0] // 2  # the context was really used
    finally:
        ws.close()


def test_compressed_fragmented_with_control_frames_between(server):
    data = json.dumps({"text": "héllo wörld " * 200}).encode()
    z = deflate(data)
    ws, _ = offer(server, "permessage-deflate")
    try:
        third = len(z) // 3
        ws.send_frame(OP_TEXT, z[:third], fin=False, rsv=4)
        ws.send_frame(OP_PING, b"between")
        ws.send_frame(OP_CONT, z[third:2 * third], fin=False)
        ws.send_frame(OP_CONT, b"", fin=False)
        ws.send_frame(OP_PONG, b"unasked")
        ws.send_frame(OP_CONT, z[2 * third:], fin=True)
        f = ws.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"between")
        assert recv_z(ws) == (OP_TEXT, data)
    finally:
        ws.close()


def test_rsv1_on_continuation_1002(server):
    ws, _ = offer(server, "permessage-deflate")
    try:
        ws.send_frame(OP_TEXT, deflate(b"abc")[:1], fin=False, rsv=4)
        ws.send_frame(OP_CONT, deflate(b"abc")[1:], rsv=4)
        ws.expect_close(1002)
    finally:
        ws.close()


def test_rsv1_on_control_frame_1002(server):
    ws, _ = offer(server, "permessage-deflate")
    try:
        ws.send_frame(OP_PING, b"x", rsv=4)
        ws.expect_close(1002)
    finally:
        ws.close()


def test_invalid_compressed_data_1007(server, bystanders):
    before = server.stats()
    ws, _ = offer(server, "permessage-deflate")
    try:
        ws.send_frame(OP_BINARY, b"\xff\xff\xff\xff\xff", rsv=4)  # reserved block type
        ws.expect_close(1007)
    finally:
        ws.close()
    assert_only_errors(before, server.stats(), errors_ws_1007=1)
    bystanders.check()


def test_compressed_invalid_utf8_1007(server):
    ws, _ = offer(server, "permessage-deflate")
    try:
        ws.send_frame(OP_TEXT, deflate(b"ok " * 100 + b"\xc0\xaf" + b"x" * 1000), rsv=4)
        ws.expect_close(1007)
    finally:
        ws.close()


def test_compressed_truncated_utf8_1007(server):
    ws, _ = offer(server, "permessage-deflate")
    try:
        ws.send_frame(OP_TEXT, deflate("ok €".encode()[:-1]), rsv=4)
        ws.expect_close(1007)
    finally:
        ws.close()


def rss_kib(srv):
    with open(f"/proc/{srv.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_decompression_bomb_1009_before_memory_grows(start_server):
    """200 MB of zeros deflate to ~200 KB; with --max-message-size 1 MB the server stops
    inflating at the limit: 1009, and its memory grows by far less than the bomb."""
    srv = start_server("--max-message-size", "1048576")
    bomb = deflate(b"\0" * (200 << 20))
    assert len(bomb) < 1 << 20
    before_rss = rss_kib(srv)
    before = srv.stats()
    ws, _ = offer(srv, "permessage-deflate")
    try:
        ws.send_frame(OP_BINARY, bomb, rsv=4)
        ws.expect_close(1009)
    finally:
        ws.close()
    assert_only_errors(before, srv.stats(), errors_ws_1009=1)
    grown = rss_kib(srv) - before_rss
    assert grown < 16 * 1024, f"RSS grew by {grown} KiB"
    # fragmented, the same
    ws, _ = offer(srv, "permessage-deflate")
    try:
        half = len(bomb) // 2
        ws.send_frame(OP_TEXT, bomb[:half], fin=False, rsv=4)
        ws.send_frame(OP_CONT, bomb[half:])
        ws.expect_close(1009)
    finally:
        ws.close()


def test_inflated_size_limit_exact(start_server):
    srv = start_server("--max-message-size", "10000")
    ws, _ = offer(srv, "permessage-deflate")
    try:
        ws.send_frame(OP_TEXT, deflate(b"a" * 10000), rsv=4)
        assert recv_z(ws) == (OP_TEXT, b"a" * 10000)
        ws.send_frame(OP_TEXT, deflate(b"a" * 10001), rsv=4)
        ws.expect_close(1009)
    finally:
        ws.close()


# -- room broadcasts -----------------------------------------------------------------------------

def test_broadcast_compressed_once_for_all_deflate_members(server):
    """Deflate members get the same compressed frame byte for byte (server_no_context_takeover
    makes it valid for each); a plain member gets the plain frame; both carry the same text."""
    room = "dz-" + os.urandom(4).hex()
    zs = [offer(server, "permessage-deflate", path="/")[0] for _ in range(3)]
    small, _ = offer(server, "permessage-deflate; server_max_window_bits=10", path="/")
    plain = RawWS.connect(server.port, "/")
    everyone = zs + [small, plain]
    try:
        for w in everyone:
            w.join(room)
        msg = pose(1, pad=400)
        before = server.stats()["deflate"]
        zs[0].send_frame(OP_TEXT, deflate(msg), rsv=4)
        frames = []
        for w in everyone:
            while True:
                f = w.recv_frame()
                if f.opcode == OP_TEXT:
                    break
            frames.append(f)
        pf = frames[-1]
        assert pf.rsv == 0
        text = pf.payload
        assert json.loads(text)["player"] == "p1"
        for f in frames[:-1]:
            assert f.rsv == 4, f
            assert f.fin
            assert inflate(f.payload) == text
            assert len(f.payload) < len(text)
        assert frames[0].payload == frames[1].payload == frames[2].payload
        # the 512-byte window variant is a different encoding, valid within its limit
        assert zlib.decompressobj(-10).decompress(frames[3].payload + b"\0\0\xff\xff") == text
        # compressed once per window size for the four deflate members: two messages
        after = server.stats()["deflate"]
        assert after["messages"] - before["messages"] == 2
        assert after["bytes_in"] - before["bytes_in"] == 2 * len(text)
        assert after["bytes_out"] - before["bytes_out"] == len(frames[0].payload) + len(frames[3].payload)
    finally:
        for w in everyone:
            w.close()


def test_short_messages_go_plain(start_server):
    srv = start_server("--ws-deflate-threshold", "300")
    room = "short"
    a, _ = offer(srv, "permessage-deflate", path="/")
    b, _ = offer(srv, "permessage-deflate", path="/")
    try:
        a.join(room)
        b.join(room)
        for pad, compressed in [(0, False), (400, True)]:
            a.send_frame(OP_TEXT, pose(2, pad))
            f = b.recv_frame()
            while f.opcode != OP_TEXT:
                f = b.recv_frame()
            assert (f.rsv == 4) == compressed, (pad, f)
            text = inflate(f.payload) if compressed else f.payload
            assert json.loads(text)["player"] == "p2"
    finally:
        a.close()
        b.close()


def test_history_replay_to_deflate_member(server):
    room = "dzh-" + os.urandom(4).hex()
    a = RawWS.connect(server.port, "/")
    try:
        a.join(room)
        for i in range(3):
            a.send_frame(OP_TEXT, pose(i, pad=300))
        b, _ = offer(server, "permessage-deflate", path="/")
        try:
            b.send_json({"type": "join", "room": room, "history": 10})
            got = []
            while len(got) < 3:
                f = b.recv_frame()
                if f.opcode != OP_TEXT:
                    continue
                text = inflate(f.payload) if f.rsv == 4 else f.payload
                m = json.loads(text)
                if m.get("type") == "pose":
                    got.append(m["player"])
            assert got == ["p0", "p1", "p2"]
        finally:
            b.close()
    finally:
        a.close()


def test_history_does_not_keep_compressed_frames(start_server):
    """The compressed frame of a room message goes to its deflate members and is not kept in
    the room's history (it would double it): a room with a deflate member keeps as many bytes
    as the same messages in a room without one. A server of its own: the compression counter
    is server-wide, and the module's shared server may still be replaying to an earlier
    test's deflate clients."""
    server = start_server()

    def kept_by(member_offers):
        room = "dzk-" + os.urandom(4).hex()
        ws = [offer(server, o, path="/")[0] if o else RawWS.connect(server.port, "/")
              for o in member_offers]
        try:
            for w in ws:
                w.join(room)
            before = server.stats()
            for i in range(5):
                ws[0].send_frame(OP_TEXT, pose(i, pad=600))
                for w in ws:
                    while w.recv_frame().opcode != OP_TEXT:
                        pass
            after = server.stats()
            assert after["deflate"]["messages"] - before["deflate"]["messages"] == (
                5 if any(member_offers) else 0)
            return after["history"]["memory"] - before["history"]["memory"]
        finally:
            for w in ws:
                w.close()

    plain = kept_by([None, None])
    with_deflate = kept_by([None, "permessage-deflate"])
    assert plain > 5 * 600
    assert abs(with_deflate - plain) < 50, (plain, with_deflate)


# -- the Python websockets client: every combination it can offer ---------------------------------

def combos():
    # client_max_window_bits=8 is accepted (test_offer_accepted), but this client then
    # compresses with wbits=-8, which Python's zlib refuses: its own limit, not ours.
    for snct in (False, True):
        for cnct in (False, True):
            for smwb in (None, 9, 12, 15):
                for cmwb in (None, True, 9, 11, 15):
                    yield snct, cnct, smwb, cmwb


@pytest.mark.parametrize("snct,cnct,smwb,cmwb", list(combos()))
def test_websockets_client_every_combination(server, snct, cnct, smwb, cmwb):
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
    import websockets

    async def run():
        factory = ClientPerMessageDeflateFactory(
            server_no_context_takeover=snct, client_no_context_takeover=cnct,
            server_max_window_bits=smwb, client_max_window_bits=cmwb)
        room = "py-" + os.urandom(4).hex()
        async with websockets.connect(server.ws_url, extensions=[factory]) as a, \
                websockets.connect(server.ws_url, extensions=[factory]) as b:
            assert a.response_headers.get(EXT, "").startswith("permessage-deflate")
            for w in (a, b):
                await w.send(json.dumps({"type": "join", "room": room}))
                assert json.loads(await w.recv())["type"] == "joined"
            for i in range(5):  # several messages: context must not leak between them
                await a.send(pose(i, pad=500).decode())
                got = json.loads(await asyncio.wait_for(b.recv(), 10))
                assert got["player"] == f"p{i}"
        async with websockets.connect(server.echo_url, extensions=[factory]) as e:
            big = "x" * 100000 + "é" * 1000
            await e.send(big)
            assert await e.recv() == big

    asyncio.run(run())


def test_websockets_client_offering_8_bits_falls_back_to_plain(server):
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
    import websockets

    async def run():
        factory = ClientPerMessageDeflateFactory(server_max_window_bits=8)
        async with websockets.connect(server.echo_url, extensions=[factory]) as e:
            assert e.response_headers.get(EXT) is None
            await e.send("plain")
            assert await e.recv() == "plain"

    asyncio.run(run())


# -- fail fast inside compressed messages ------------------------------------------------------

TEXT = "aé€😀z".encode()  # 1 + 2 + 3 + 4 + 1 bytes: every kind of sequence
PAUSE = 0.01  # between the writes of one split: the server sees them as separate reads


def masked(opcode, payload, fin=True, rsv=0, length=None):
    return encode_frame(opcode, payload, fin=fin, rsv=rsv, length=length)


def inflatable_prefix(z, upto):
    """The shortest prefix of the compressed z that inflates to more than `upto` bytes: the
    compressed bytes a server needs to have seen the byte at position `upto`."""
    for n in range(len(z) + 1):
        if len(zlib.decompressobj(-15).decompress(z[:n])) > upto:
            return n
    raise AssertionError("never inflates that far")


def open_deflate(server):
    ws, ext = offer(server, "permessage-deflate; client_no_context_takeover")
    assert ext == BASE + CNCT
    return ws


@pytest.mark.parametrize("k", range(len(TEXT) + 1))
def test_compressed_invalid_byte_fails_before_message_is_complete(server, k):
    """An invalid byte at position k of a compressed text message, split into two fragments at
    every position j of the compressed bytes sent so far: 1007 arrives once the compressed
    bytes that inflate to it are in, although the rest of the message never is."""
    plain = TEXT[:k] + b"\xff" + TEXT[k:] + bytes(range(0x20, 0x7f)) * 4
    z = deflate(plain)
    need = inflatable_prefix(z, k)
    assert need < len(z)
    for j in range(need + 1):
        before = server.stats()
        ws = open_deflate(server)
        try:
            if j:
                ws.send_raw(masked(OP_TEXT, z[:j], fin=False, rsv=4))
                rest = masked(OP_CONT, z[j:])
            else:
                rest = masked(OP_TEXT, z, rsv=4)
            head = len(rest) - (len(z) - j)
            ws.send_raw(rest[:head + need - j])  # the second frame, never finished
            ws.expect_close(1007)
        finally:
            ws.close()
        assert_only_errors(before, server.stats(), errors_ws_1007=1)


def test_compressed_invalid_byte_fails_as_bytes_trickle_in(server):
    """The compressed bytes of a text message with an invalid byte at position 300 arrive one
    read at a time: 1007 comes while most of the message is still unsent."""
    plain = b"x" * 300 + b"\xc0\xaf" + os.urandom(3000).hex().encode()
    z = deflate(plain)
    need = inflatable_prefix(z, 300)
    assert need < len(z) // 2
    ws = open_deflate(server)
    try:
        data = masked(OP_TEXT, z, rsv=4)
        head = len(data) - len(z)
        ws.send_raw(data[:head])
        for i in range(need):
            time.sleep(0.002)
            ws.send_raw(data[head + i:head + i + 1])
        ws.expect_close(1007)
    finally:
        ws.close()


@pytest.mark.parametrize("j", range(0, 20))
def test_compressed_valid_text_split_at_every_fragment_and_read_position(server, j):
    """Valid compressed text, its compressed bytes split into two fragments at j, the frames
    sent in two reads split at every position: it arrives whole, for clients with and without
    context takeover (their own inflater), message after message."""
    z = deflate(TEXT)
    assert len(z) < 20
    j = min(j, len(z))
    for value in ("permessage-deflate; client_no_context_takeover", "permessage-deflate"):
        ws, _ = offer(server, value)
        try:
            data = (masked(OP_TEXT, z[:j], fin=False, rsv=4) + masked(OP_CONT, z[j:])
                    if j else masked(OP_TEXT, z, rsv=4))
            for at in range(1, len(data)):
                ws.send_raw(data[:at])
                time.sleep(PAUSE)
                ws.send_raw(data[at:])
                assert recv_z(ws) == (OP_TEXT, TEXT), (value, j, at)
        finally:
            ws.close()


def test_compressed_message_ending_inside_a_code_point_1007(server):
    """Fragmented and across reads, the message is valid until its end, where a code point is
    cut: 1007 at the final fragment."""
    z = deflate("ok €".encode()[:-1])
    ws = open_deflate(server)
    try:
        ws.send_raw(masked(OP_TEXT, z[:2], fin=False, rsv=4))
        time.sleep(PAUSE)
        ws.send_raw(masked(OP_CONT, z[2:]))
        ws.expect_close(1007)
    finally:
        ws.close()


def test_fragmented_bomb_1009_before_the_last_fragment(start_server):
    """A compressed message that inflates past --max-message-size in its first fragments: 1009
    although its final fragment never comes."""
    srv = start_server("--max-message-size", "1048576")
    bomb = deflate(b"\0" * (8 << 20))
    before = srv.stats()
    ws = open_deflate(srv)
    try:
        step = len(bomb) // 8
        ws.send_frame(OP_BINARY, bomb[:step], fin=False, rsv=4)
        for i in range(1, 7):
            ws.send_frame(OP_CONT, bomb[i * step:(i + 1) * step], fin=False)
        ws.expect_close(1009)
    finally:
        ws.close()
    assert_only_errors(before, srv.stats(), errors_ws_1009=1)


# -- per listener: --tls-ws-deflate beside --ws-deflate; both live on SIGHUP --------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from tlspki import make_ca, make_server_cert
    d = str(tmp_path_factory.mktemp("pki"))
    ca = make_ca(d, "ca")
    cert, key = make_server_cert(d, "ca", "srv")
    return {"ca": ca, "cert": cert, "key": key}


def tls_listen_port(srv):
    import re
    m = re.search(r"roomcast: tls listening on https://127\.0\.0\.1:(\d+)/", srv.stderr())
    assert m, srv.stderr()
    return int(m.group(1))


def tls_offer(port, ca, value="permessage-deflate"):
    """Upgrade over TLS offering value: the answer's extension header (None when declined),
    after checking that a compressed message is echoed (agreed) or fails 1002 (declined)."""
    import socket
    import ssl
    from conftest import read_http_response, ws_request
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        req, _key = ws_request("/echo", extra=[(EXT, value)])
        sock.sendall(req)
        status, headers, _body, _rest = read_http_response(sock)
        assert status == 101
        ext = headers.get(EXT.lower())
        sock.sendall(encode_frame(OP_TEXT, deflate(b"tls " * 100), rsv=4))
        head = sock.recv(2)
        if ext:
            assert head[0] & 0x0F == OP_TEXT, head
        else:
            assert head[0] & 0x0F == 0x8, head  # close (1002: RSV1 not agreed)
        return ext
    finally:
        sock.close()


@pytest.mark.parametrize("flags,plain,tls", [
    ((), True, True),
    (("--tls-ws-deflate", "off"), True, False),
    (("--ws-deflate", "off"), False, False),
    (("--ws-deflate", "off", "--tls-ws-deflate", "on"), False, True),
    (("--tls-ws-deflate", "same", "--ws-deflate", "off"), False, False),
])
def test_per_listener(start_server, pki, flags, plain, tls):
    srv = start_server("--tls-cert", pki["cert"], "--tls-key", pki["key"], "--tls-port", "0",
                       *flags)
    ws, ext = offer(srv, "permessage-deflate")
    ws.close()
    assert (ext == BASE) == plain, ext
    assert (tls_offer(tls_listen_port(srv), pki["ca"]) == BASE) == tls


def test_tls_ws_deflate_applies_to_port_when_it_speaks_tls(start_server, pki):
    """Without --tls-port, --port itself is the TLS listener."""
    srv = start_server("--tls-cert", pki["cert"], "--tls-key", pki["key"],
                       "--tls-ws-deflate", "off")
    assert tls_offer(srv.port, pki["ca"]) is None


def test_ws_deflate_live_on_sighup(tmp_path):
    """--ws-deflate and --tls-ws-deflate change on SIGHUP for new upgrades; a connection keeps
    what it agreed."""
    import signal
    from conftest import Server
    conf = tmp_path / "roomcast.conf"
    conf.write_text("ws-deflate off\n")
    srv = Server("--config", conf)
    try:
        old, ext = offer(srv, "permessage-deflate")
        assert ext is None
        before = srv.stats()["config"]["reloads"]
        conf.write_text("ws-deflate on\n")
        srv.proc.send_signal(signal.SIGHUP)
        st = srv.wait_stats(lambda s: s["config"]["reloads"] == before + 1, what="reload")
        assert st["config"]["restart_needed"] == ""
        new, ext = offer(srv, "permessage-deflate")
        assert ext == BASE
        new.send_frame(OP_TEXT, deflate(b"live " * 100), rsv=4)
        assert recv_z(new) == (OP_TEXT, b"live " * 100)
        new.close()
        # the connection made before the reload still has no deflate: RSV1 is 1002
        old.send_frame(OP_TEXT, deflate(b"old " * 100), rsv=4)
        old.expect_close(1002)
        old.close()
        srv.stop()
    finally:
        srv.cleanup()
