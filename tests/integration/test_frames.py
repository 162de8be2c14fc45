"""WebSocket framing (RFC 6455) against /echo and /: masking, fragmentation, control frames,
the close handshake, and every protocol violation with its close code (1002, 1007, 1009),
counted in /api/stats and unnoticed by the bystanders."""

import json
import os
import socket
import struct
import time

import pytest

from conftest import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWS,
                      assert_only_errors, close_payload, encode_frame)


def violation(server, bystanders, send, code, counter, path="/echo", reason=None):
    """Open a connection, let `send(ws)` misbehave, expect close `code` then TCP close, and the
    counter `counter` (or none when None) to move by exactly one."""
    before = server.stats()
    ws = RawWS.connect(server.port, path)
    try:
        send(ws)
        ws.expect_close(code, reason)
    finally:
        ws.close()
    after = server.stats()
    if counter:
        assert_only_errors(before, after, **{f"errors_{counter}": 1})
    else:
        assert_only_errors(before, after)
    bystanders.check()


# -- echo: what must work -----------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 300000])
def test_echo_text_sizes(server, size):
    ws = RawWS.connect(server.port, "/echo")
    try:
        data = (b"0123456789abcdef" * (size // 16 + 1))[:size]
        ws.send_frame(OP_TEXT, data)
        assert ws.recv_message() == (OP_TEXT, data)
        ws.send_frame(OP_BINARY, data[::-1])
        assert ws.recv_message() == (OP_BINARY, data[::-1])
    finally:
        ws.close()


def test_echo_binary_all_bytes(server):
    ws = RawWS.connect(server.port, "/echo")
    try:
        data = bytes(range(256)) * 4 + os.urandom(5000)
        ws.send_binary(data)
        assert ws.recv_message() == (OP_BINARY, data)
    finally:
        ws.close()


def test_echo_fragmented_with_interleaved_ping(server):
    ws = RawWS.connect(server.port, "/echo")
    try:
        ws.send_frame(OP_TEXT, b"Hel", fin=False)
        ws.send_frame(OP_PING, b"mid")
        ws.send_frame(OP_CONT, b"lo, ", fin=False)
        ws.send_frame(OP_CONT, b"", fin=False)
        ws.send_frame(OP_CONT, b"world", fin=True)
        f = ws.recv_frame()
        assert (f.opcode, f.payload, f.fin) == (OP_PONG, b"mid", True), f
        assert ws.recv_message() == (OP_TEXT, b"Hello, world")
    finally:
        ws.close()


def test_echo_utf8_split_across_fragments(server):
    """A multi-byte character split between fragments is valid (validation spans fragments)."""
    ws = RawWS.connect(server.port, "/echo")
    try:
        text = "é€😀".encode()  # 2 + 3 + 4 bytes
        ws.send_frame(OP_TEXT, text[:1], fin=False)
        ws.send_frame(OP_CONT, text[1:3], fin=False)
        ws.send_frame(OP_CONT, text[3:7], fin=False)
        ws.send_frame(OP_CONT, text[7:], fin=True)
        assert ws.recv_message() == (OP_TEXT, text)
    finally:
        ws.close()


def test_echo_frames_byte_by_byte(server):
    ws = RawWS.connect(server.port, "/echo")
    try:
        ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = encode_frame(OP_TEXT, b"x" * 200) + encode_frame(OP_PING, b"p")
        for b in data:
            ws.send_raw(bytes([b]))
        assert ws.recv_message(auto_pong=False) == (OP_TEXT, b"x" * 200)
        f = ws.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"p")
    finally:
        ws.close()


def test_ping_pong_payload(server):
    ws = RawWS.connect(server.port, "/")
    try:
        for payload in (b"", b"abc", bytes(range(125))):
            ws.send_frame(OP_PING, payload)
            f = ws.recv_frame()
            assert (f.opcode, f.fin, f.payload) == (OP_PONG, True, payload), f
        # an unsolicited pong is ignored
        ws.send_frame(OP_PONG, b"whatever")
        ws.send_frame(OP_PING, b"after")
        f = ws.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"after")
    finally:
        ws.close()


def test_zero_mask_key(server):
    ws = RawWS.connect(server.port, "/echo")
    try:
        ws.send_frame(OP_TEXT, b"plain", mask_key=b"\0\0\0\0")
        assert ws.recv_message() == (OP_TEXT, b"plain")
    finally:
        ws.close()


# -- the close handshake ----------------------------------------------------------------------------

@pytest.mark.parametrize("code,reason", [(1000, b""), (1001, b"bye"), (3000, b""),
                                         (4999, "é".encode()), (1000, b"r" * 123)])
def test_client_close_is_echoed(server, bystanders, code, reason):
    before = server.stats()
    ws = RawWS.connect(server.port, "/")
    try:
        ws.join("close-room")
        ws.send_close(code, reason)
        got, _ = ws.expect_close(code)
    finally:
        ws.close()
    assert_only_errors(before, server.stats())
    bystanders.check()


def test_client_close_without_code(server):
    ws = RawWS.connect(server.port, "/echo")
    try:
        ws.send_close()
        f = ws.recv_frame()
        assert f.opcode == OP_CLOSE
        # an empty close is answered with an empty close or 1000
        assert f.payload == b"" or struct.unpack("!H", f.payload[:2])[0] == 1000, f
        ws.expect_eof()
    finally:
        ws.close()


def test_nothing_after_close(server):
    """Data after the client's close frame is ignored; the server answers the close only."""
    ws = RawWS.connect(server.port, "/echo")
    try:
        ws.send_raw(encode_frame(OP_CLOSE, close_payload(1000)) + encode_frame(OP_TEXT, b"late"))
        ws.expect_close(1000)
    finally:
        ws.close()


# -- protocol violations: close 1002 ------------------------------------------------------------------

V1002 = {
    "unmasked": lambda ws: ws.send_frame(OP_TEXT, b"hello", mask=False),
    "rsv1": lambda ws: ws.send_frame(OP_TEXT, b"hello", rsv=4),
    "rsv2": lambda ws: ws.send_frame(OP_TEXT, b"hello", rsv=2),
    "rsv3": lambda ws: ws.send_frame(OP_BINARY, b"hello", rsv=1),
    "opcode-3": lambda ws: ws.send_frame(0x3, b"x"),
    "opcode-7": lambda ws: ws.send_frame(0x7, b"x"),
    "opcode-B": lambda ws: ws.send_frame(0xB, b"x"),
    "opcode-F": lambda ws: ws.send_frame(0xF, b""),
    "cont-without-start": lambda ws: ws.send_frame(OP_CONT, b"x"),
    "text-inside-fragmented": lambda ws: (ws.send_frame(OP_TEXT, b"a", fin=False),
                                          ws.send_frame(OP_TEXT, b"b")),
    "binary-inside-fragmented": lambda ws: (ws.send_frame(OP_BINARY, b"a", fin=False),
                                            ws.send_frame(OP_BINARY, b"b")),
    "fragmented-ping": lambda ws: ws.send_frame(OP_PING, b"x", fin=False),
    "fragmented-close": lambda ws: ws.send_frame(OP_CLOSE, close_payload(1000), fin=False),
    "ping-126": lambda ws: ws.send_frame(OP_PING, b"p" * 126),
    "pong-200": lambda ws: ws.send_frame(OP_PONG, b"p" * 200),
    "close-1-byte": lambda ws: ws.send_frame(OP_CLOSE, b"\x03"),
    "close-code-0": lambda ws: ws.send_close(0),
    "close-code-999": lambda ws: ws.send_close(999),
    "close-code-1004": lambda ws: ws.send_close(1004),
    "close-code-1005": lambda ws: ws.send_close(1005),
    "close-code-1006": lambda ws: ws.send_close(1006),
    "close-code-1015": lambda ws: ws.send_close(1015),
    "close-code-2000": lambda ws: ws.send_close(2000),
    "close-code-2999": lambda ws: ws.send_close(2999),
    "close-code-5000": lambda ws: ws.send_close(5000),
    "close-code-65535": lambda ws: ws.send_close(65535),
    "length-top-bit": lambda ws: ws.send_raw(b"\x82\xff" + struct.pack("!Q", 1 << 63) + b"abcd"),
}


@pytest.mark.parametrize("name", list(V1002))
def test_violation_1002(server, bystanders, name):
    violation(server, bystanders, V1002[name], 1002, "ws_1002")


def test_violation_1002_on_room_endpoint(server, bystanders):
    def send(ws):
        ws.join("violators")
        ws.send_frame(OP_TEXT, b'{"type":"x"}', mask=False)
    violation(server, bystanders, send, 1002, "ws_1002", path="/")


# -- invalid UTF-8: close 1007 ---------------------------------------------------------------------

BAD_UTF8 = {
    "lone-continuation": b"abc\x80def",
    "overlong-slash": b"\xc0\xaf",
    "overlong-3": b"\xe0\x80\xaf",
    "surrogate": b"\xed\xa0\x80",
    "above-max": b"\xf4\x90\x80\x80",
    "ff-byte": b"\xff",
    "truncated-at-end": b"ok\xe2\x82",
}


@pytest.mark.parametrize("name", list(BAD_UTF8))
def test_invalid_utf8_text_1007(server, bystanders, name):
    violation(server, bystanders, lambda ws: ws.send_frame(OP_TEXT, BAD_UTF8[name]), 1007, "ws_1007")


def test_invalid_utf8_room_endpoint_1007(server, bystanders):
    def send(ws):
        ws.join("utf8-room")
        ws.send_frame(OP_TEXT, b'{"type":"x","v":"\xff"}')
    violation(server, bystanders, send, 1007, "ws_1007", path="/")


def test_invalid_utf8_across_fragments_1007(server, bystanders):
    """Each fragment alone looks fine-ish; together they are invalid (a 3-byte lead followed by
    ASCII in the next fragment)."""
    def send(ws):
        ws.send_frame(OP_TEXT, b"abc\xe2\x82", fin=False)
        ws.send_frame(OP_CONT, b"xyz", fin=True)
    violation(server, bystanders, send, 1007, "ws_1007")


def test_truncated_utf8_at_end_of_fragmented_message_1007(server, bystanders):
    def send(ws):
        ws.send_frame(OP_TEXT, b"abc", fin=False)
        ws.send_frame(OP_CONT, b"\xf0\x9f\x98", fin=True)
    violation(server, bystanders, send, 1007, "ws_1007")


def test_invalid_utf8_detected_before_message_ends(server, bystanders):
    """Invalid UTF-8 in a first fragment is a 1007 even if the message never finishes."""
    def send(ws):
        ws.send_frame(OP_TEXT, b"\xff\xfe", fin=False)
    violation(server, bystanders, send, 1007, "ws_1007")


def test_invalid_utf8_close_reason_1007(server, bystanders):
    violation(server, bystanders, lambda ws: ws.send_close(1000, b"\xff\xfe"), 1007, "ws_1007")


def test_binary_is_not_utf8_checked(server):
    ws = RawWS.connect(server.port, "/echo")
    try:
        ws.send_binary(b"\xff\xfe\xc0\xaf")
        assert ws.recv_message() == (OP_BINARY, b"\xff\xfe\xc0\xaf")
    finally:
        ws.close()


# -- too big: close 1009 ---------------------------------------------------------------------------

def test_frame_header_announcing_100mb(server, bystanders):
    """Only the header is sent: the server must decide from the header, without waiting for (or
    allocating) 100 MB."""
    def send(ws):
        ws.send_raw(encode_frame(OP_BINARY, b"", length=100 * 1024 * 1024)[:14])
    violation(server, bystanders, send, 1009, "ws_1009")


def test_frame_header_announcing_100mb_on_room_endpoint(server, bystanders):
    def send(ws):
        ws.join("big-room")
        ws.send_raw(encode_frame(OP_TEXT, b"", length=100 * 1024 * 1024)[:14] + b"{")
    violation(server, bystanders, send, 1009, "ws_1009", path="/")


def test_fragments_adding_up_past_max_message_size(server, bystanders):
    """Default max is 1 MiB: 3 fragments of 400 KiB pass individually but not together."""
    def send(ws):
        chunk = b"a" * (400 * 1024)
        ws.send_frame(OP_BINARY, chunk, fin=False)
        ws.send_frame(OP_CONT, chunk, fin=False)
        try:
            ws.send_frame(OP_CONT, chunk, fin=True)
        except (BrokenPipeError, ConnectionResetError):
            pass
    violation(server, bystanders, send, 1009, "ws_1009")


def test_max_message_size_flag(start_server):
    srv = start_server("--max-message-size", "1000")
    ws = RawWS.connect(srv.port, "/echo")
    try:
        ws.send_frame(OP_TEXT, b"x" * 1000)
        assert ws.recv_message() == (OP_TEXT, b"x" * 1000)
        ws.send_frame(OP_BINARY, b"y" * 600, fin=False)
        ws.send_frame(OP_CONT, b"y" * 400, fin=True)
        assert ws.recv_message() == (OP_BINARY, b"y" * 1000)
        ws.send_frame(OP_TEXT, b"z" * 1001)
        ws.expect_close(1009)
    finally:
        ws.close()
    ws = RawWS.connect(srv.port, "/echo")
    try:
        ws.send_frame(OP_TEXT, b"z" * 600, fin=False)
        ws.send_frame(OP_CONT, b"z" * 401, fin=True)
        ws.expect_close(1009)
    finally:
        ws.close()
    st = srv.stats()
    assert st["errors"]["ws_1009"] == 2, st["errors"]


# -- after a violation the server stops reading ---------------------------------------------------

def test_nothing_processed_after_violation(server):
    """Frames pipelined behind a protocol violation are not processed (no echo of 'after')."""
    ws = RawWS.connect(server.port, "/echo")
    try:
        ws.send_raw(encode_frame(OP_TEXT, b"before") + encode_frame(0x3, b"") +
                    encode_frame(OP_TEXT, b"after"))
        assert ws.recv_message() == (OP_TEXT, b"before")
        ws.expect_close(1002)
    finally:
        ws.close()


# -- randomized streams ------------------------------------------------------------------------------

def test_random_fragmentation_and_tcp_splits(server):
    """200 messages (text with multi-byte characters, and binary), each cut into random
    fragments with pings between them, the whole byte stream written in random-sized pieces:
    every message comes back from /echo intact and in order."""
    import random
    rng = random.Random(6455)
    ws = RawWS.connect(server.port, "/echo")
    try:
        ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        expected, stream = [], bytearray()
        alphabet = "aé€😀\n\"{}"
        for i in range(200):
            if i % 2:
                data = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 50, 200, 3000])))
                op = OP_BINARY
            else:
                data = "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 30, 700]))).encode()
                op = OP_TEXT
            expected.append((op, data))
            cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 4)))) \
                if len(data) > 1 else []
            pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
            for k, piece in enumerate(pieces):
                stream += encode_frame(op if k == 0 else OP_CONT, piece, fin=k == len(pieces) - 1)
                if rng.random() < 0.2:
                    stream += encode_frame(OP_PING, b"i%d" % i)
        pos = 0
        while pos < len(stream):
            n = rng.choice([1, 2, 3, 7, 64, 1000, 20000])
            ws.send_raw(bytes(stream[pos:pos + n]))
            pos += n
        for op, data in expected:
            assert ws.recv_message() == (op, data)
    finally:
        ws.close()


def test_utf8_split_at_every_position(server):
    text = "a€b😀cé".encode()
    ws = RawWS.connect(server.port, "/echo")
    try:
        for cut in range(1, len(text)):
            ws.send_frame(OP_TEXT, text[:cut], fin=False)
            ws.send_frame(OP_CONT, text[cut:], fin=True)
            assert ws.recv_message() == (OP_TEXT, text), cut
    finally:
        ws.close()


# -- closing in a busy room --------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["violation-1002", "bad-utf8-1007", "client-close-4001"])
def test_nothing_after_the_close_frame_in_a_busy_room(server, how):
    """While a room is busy, a member's connection is closed (by a violation or by its own close):
    it may still receive room messages queued before, in order, then the close frame, then
    nothing but EOF."""
    import threading
    import uuid
    room = f"busy-{uuid.uuid4().hex[:8]}"
    victim = RawWS.connect(server.port)
    pub = RawWS.connect(server.port)
    victim.join(room)
    pub.join(room)
    stop = threading.Event()
    errors = []

    def publish():
        try:
            i = 0
            while not stop.is_set():
                pub.send_json({"type": "busy", "i": i, "pad": "b" * 200})
                i += 1
                if i % 50 == 0:
                    # keep our own pending output small: read our copies back
                    for _ in range(50):
                        pub.recv_json()
        except Exception as e:  # reported below
            errors.append(repr(e))

    t = threading.Thread(target=publish, daemon=True)
    t.start()
    try:
        for k in range(1, 21):
            assert victim.recv_json()["msg_id"] == k
        expected_code = {"violation-1002": 1002, "bad-utf8-1007": 1007,
                         "client-close-4001": 4001}[how]
        if how == "violation-1002":
            victim.send_frame(OP_TEXT, b'{"type":"x"}', rsv=4)
        elif how == "bad-utf8-1007":
            victim.send_frame(OP_TEXT, b'{"type":"\xc0\xaf"}')
        else:
            victim.send_close(4001, b"done")
        nxt = 21
        while True:
            f = victim.recv_frame()
            if f.opcode == OP_TEXT:
                m = json.loads(f.payload)
                assert m["msg_id"] == nxt, (m["msg_id"], nxt)
                nxt += 1
                continue
            if f.opcode in (OP_PING, OP_PONG):
                continue
            assert f.opcode == OP_CLOSE, f
            assert f.close_code()[0] == expected_code, f.close_code()
            break
        # after the close frame: no frame at all, only the end of the connection
        deadline = time.monotonic() + 10
        try:
            while True:
                victim.sock.settimeout(max(0.1, deadline - time.monotonic()))
                chunk = victim.sock.recv(65536)
                assert not chunk, f"server sent {len(chunk)} bytes after its close frame: {chunk[:60]!r}"
                break
        except ConnectionResetError:
            pass
    finally:
        stop.set()
        t.join(10)
        victim.close()
        pub.close()
    assert not errors, errors


def test_zz_no_connection_left_behind(server, bystanders):
    """Runs last in this module: after every malformed request above, only the bystanders are
    still connected (no leaked connection slots)."""
    server.wait_stats(lambda s: s["connections"] <= 3, what="only the 2 bystanders connected")
    bystanders.check()
