"""The raw TCP port (docs/tcp.md): the room protocol of docs/protocol.md as newline-delimited
JSON (line mode) or length-prefixed frames (framed mode, chosen by the \\0RC\\x01 preamble).

Real sockets against the real binary: join/leave/publish with the server's members spliced in,
acks and idempotency keys, since/epoch recovery, every error and fault (each counted in
/api/stats while WebSocket bystanders notice nothing), keepalive and ping timeout, slow
consumers, shutdown, the API's kick, and `nc` as a client."""

import base64
import json
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid

import pytest

from conftest import IO_TIMEOUT, OP_BINARY as WS_BINARY, RawWS, Server, assert_only_errors
from rawtcp import (KEEPALIVE, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, ChatClient,
                    FramedClient, LineClient, api, dumps, envelope, parse_envelope, room_info,
                    room_path)

KEY = "tcp-test-key-0123456789"
MAX = 1024   # --max-message-size: the longest line / largest frame payload


@pytest.fixture(scope="module")
def server():
    """Shared by this module's tests (and by conftest's `bystanders`)."""
    srv = Server("--tcp-port", "0", "--api-key", KEY, "--max-message-size", str(MAX))
    try:
        yield srv
        srv.stop()
    finally:
        srv.cleanup()


def new_room(prefix="tcp"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def padded_line(length):
    """A publish of exactly `length` bytes."""
    base = len('{"type":"pad","p":""}')
    assert length >= base
    line = '{"type":"pad","p":"' + "x" * (length - base) + '"}'
    assert len(line) == length
    return line.encode()


# --------------------------------------------------------------------------------------------
# line mode: the room protocol
# --------------------------------------------------------------------------------------------

def test_line_join_publish_leave(server):
    room, other = new_room(), new_room()
    with LineClient.connect(server.tcp_port) as a, LineClient.connect(server.tcp_port) as b:
        ja = a.join(room)
        assert ja["last_msg_id"] == 0 and "recovered" not in ja, ja
        jb = b.join(room)
        assert jb["epoch"] == ja["epoch"] and jb["last_msg_id"] == 0, jb
        ca, cb = ja["client_id"], jb["client_id"]
        assert ca != cb

        # forwarded as sent, with room, client_id and msg_id appended
        a.send_line('{"type":"move","x":3,"y":4,"nested":{"a":[1,"}"]}}')
        want = (f'{{"type":"move","x":3,"y":4,"nested":{{"a":[1,"}}"]}},"room":"{room}",'
                f'"client_id":{ca},"msg_id":1}}')
        assert a.recv_raw() == want
        assert b.recv_raw() == want
        # a "room" member stays where it is; client_id/msg_id from a client are removed
        b.send_line(f'{{"client_id":99,"type":"say","room":"{room}","msg_id":7,"text":"x"}}')
        want = f'{{"type":"say","room":"{room}","text":"x","client_id":{cb},"msg_id":2}}'
        assert a.recv_raw() == want
        assert b.recv_raw() == want

        # joining again answers joined and changes nothing
        again = b.join(room)
        assert again["client_id"] == cb and again["last_msg_id"] == 2, again

        # in two rooms, a publish must name its room
        b.join(other)
        b.send_line({"type": "say"})
        b.expect_error("missing_field")

        assert b.request({"type": "leave", "room": room}) == {"type": "left", "room": room}
        a.send_line({"type": "after-leave"})
        assert a.recv_json()["msg_id"] == 3
        # b gets nothing more from the room: its next line answers its next request
        b.send_line({"type": "say", "room": room})
        b.expect_error("not_member")
        assert b.request({"type": "leave", "room": other}) == {"type": "left", "room": other}
        b.send_line({"type": "say"})
        b.expect_error("not_member")   # in no room at all


def test_multi_line_json_reaches_line_members_on_one_line(server):
    """JSON may hold newlines between its tokens (pretty-printed JSON from a WebSocket or framed
    client, or a backend's POST body). Published messages are forwarded as sent, but a line
    member must still get one JSON object per line (docs/tcp.md: "Everything the server sends
    is one JSON object per line"): the message must not arrive cut into several lines."""
    room = new_room("pretty")
    pretty = '{\n  "type": "pretty",\r\n  "n": [\n    1,\n    2\n  ]\n}'
    with LineClient.connect(server.tcp_port) as line, FramedClient.connect(server.tcp_port) as f:
        ws = RawWS.connect(server.port)
        try:
            line.join(room)
            f.join(room)
            ws.join(room)
            ws.send_text(pretty)
            f.send_frame(OP_TEXT, pretty.encode())
            status, doc = api(server, "POST", room_path(room, "/messages"), pretty.encode(),
                              key=KEY)
            assert status == 200, doc
            for msg_id in (1, 2, 3):
                seen_ws = json.loads(ws.recv_json_raw())
                assert seen_ws["msg_id"] == msg_id and seen_ws["n"] == [1, 2], seen_ws
                raw = line.recv_raw()
                try:
                    got = json.loads(raw)
                except ValueError:
                    raise AssertionError(f"message {msg_id} reached the line member cut into "
                                         f"lines; the first is {raw!r}")
                assert got == seen_ws, (got, seen_ws)
        finally:
            ws.close()


def test_line_acks_and_idempotency_keys(server):
    room = new_room()
    with LineClient.connect(server.tcp_port) as a, LineClient.connect(server.tcp_port) as b:
        ca = a.join(room)["client_id"]
        b.join(room)

        def publish(extra):
            a.send_line({"type": "c", "text": "once", **extra})

        publish({"ack": "a-1", "idempotency_key": "key-1"})
        got = sorted((a.recv_json(), a.recv_json()), key=lambda m: m["type"])
        assert got[0] == {"type": "ack", "ref": "a-1", "room": room, "msg_id": 1}, got
        # neither ack nor idempotency_key is forwarded
        want = f'{{"type":"c","text":"once","room":"{room}","client_id":{ca},"msg_id":1}}'
        assert dumps(got[1]) == want
        assert b.recv_raw() == want

        # the same key again: not sequenced, the original msg_id, duplicate:true
        publish({"ack": {"n": [2]}, "idempotency_key": "key-1"})
        assert a.recv_json() == {"type": "ack", "ref": {"n": [2]}, "room": room, "msg_id": 1,
                                 "duplicate": True}
        # without an ack a duplicate gets no answer at all
        publish({"idempotency_key": "key-1"})
        publish({"idempotency_key": "key-2"})
        assert a.recv_json()["msg_id"] == 2
        assert b.recv_json()["msg_id"] == 2   # msg_id 2 follows 1: the duplicates made no message
        publish({"ack": 3, "idempotency_key": "key-2"})
        assert a.recv_json() == {"type": "ack", "ref": 3, "room": room, "msg_id": 2,
                                 "duplicate": True}
        assert room_info(server, room)["last_msg_id"] == 2


def test_line_recovery_with_since_and_epoch(server):
    """A member that lost its connection rejoins with since+epoch while a publisher floods the
    room: exactly the missed messages, then live, with no gap and no duplicate at the seam."""
    room = new_room("recover")
    pub = LineClient.connect(server.tcp_port)
    try:
        epoch = pub.join(room)["epoch"]
        first = LineClient.connect(server.tcp_port)
        first.join(room)
        pub.send_lines([{"type": "n", "seq": i} for i in range(50)])
        for i in range(1, 51):
            assert pub.recv_json()["msg_id"] == i
        seen = [first.recv_json() for _ in range(20)]
        assert [m["msg_id"] for m in seen] == list(range(1, 21))
        first.close()

        total = 1000   # since=20: the history (--history-size 1000) still holds 21..1000

        def flood():
            for k in range(50, total, 10):
                pub.send_lines([{"type": "n", "seq": i} for i in range(k, min(total, k + 10))])

        t = threading.Thread(target=flood)
        t.start()
        again = LineClient.connect(server.tcp_port)
        try:
            j = again.join(room, since=20, epoch=epoch)
            assert j["recovered"] is True and j["epoch"] == epoch and j["last_msg_id"] >= 50, j
            got = [again.recv_json() for _ in range(total - 20)]
        finally:
            t.join()
        assert [m["msg_id"] for m in got] == list(range(21, total + 1))
        assert all(m["seq"] == m["msg_id"] - 1 and m["client_id"] == seen[0]["client_id"]
                   for m in got)
        for i in range(51, total + 1):
            assert pub.recv_json()["msg_id"] == i

        # a wrong epoch, no epoch, a since in the future: recovered:false and nothing replayed
        for extra in ({"since": 20, "epoch": "0000000000000000"}, {"since": 20},
                      {"since": total + 5, "epoch": epoch}):
            with LineClient.connect(server.tcp_port) as late:
                j = late.join(room, **extra)
                assert j["recovered"] is False and j["last_msg_id"] == total, (extra, j)
                pub.send_line({"type": "n", "seq": total})
                total += 1
                assert late.recv_json()["msg_id"] == total, extra   # the live one, no replay
                assert pub.recv_json()["msg_id"] == total
                assert again.recv_json()["msg_id"] == total
        again.close()
    finally:
        pub.close()


def test_line_protocol_errors_keep_the_connection(server, bystanders):
    room = new_room()
    before = server.stats()
    with LineClient.connect(server.tcp_port) as c:
        c.send_line({"type": "say"})
        c.expect_error("not_member")                  # in no room
        c.join(room)
        cases = [
            (b'{"type":"say"', "bad_json"),
            (b'{"type":"say",}', "bad_json"),
            (b"[" * 70 + b"]" * 70, "bad_json"),       # nests deeper than 64
            (b"[1,2]", "not_object"),
            (b'"hello"', "not_object"),
            (b"42", "not_object"),
            (b'{"type":"joined"}', "reserved_type"),
            (b'{"type":"left"}', "reserved_type"),
            (b'{"type":"error"}', "reserved_type"),
            (b'{"type":"ack"}', "reserved_type"),
            (b'{"type":"join"}', "missing_field"),
            (b'{"type":"join","room":""}', "bad_field"),
            (b'{"type":"join","room":7}', "bad_field"),
            (b'{"type":"say","room":"nowhere-' + uuid.uuid4().hex.encode() + b'"}', "not_member"),
            (b'{"type":"leave","room":"nowhere-' + uuid.uuid4().hex.encode() + b'"}',
             "no_such_room"),
            (b'{"type":"say","ack":"' + b"a" * 300 + b'"}', "bad_field"),
            (b'{"type":"say","idempotency_key":5}', "bad_field"),
            (b'{"type":"netsync_observe","room":"x"}', "netsync_off"),   # --no-netsync
        ]
        for line, code in cases:
            c.send_line(line)
            c.expect_error(code)
            # and the connection still works: a good request in between resets the count
            c.send_line({"type": "ok"})
            assert c.recv_json()["type"] == "ok", line
    after = server.stats()
    want = {}
    for _, code in cases + [(None, "not_member")]:
        want[f"errors_{code}"] = want.get(f"errors_{code}", 0) + 1
    assert_only_errors(before, after, **want)
    bystanders.check()


def test_line_endings_blank_lines_and_keepalive(server):
    room = new_room()
    with LineClient.connect(server.tcp_port) as c:
        c.send(b'{"type":"join","room":"' + room.encode() + b'"}\r\n')
        j = c.recv_json()
        assert j["type"] == "joined", j
        # blank lines (spaces, tabs, \r\n) are ignored; \r\n ends a line like \n
        c.send(b"\n\n   \n\t \r\n\r\n" + b'{"type":"a"}\r\n' + b"  \t\n" + b'{"type":"b"}\n')
        assert c.recv_json()["type"] == "a"
        assert c.recv_json()["type"] == "b"
        # a client keepalive is consumed without a reply (and is not published)
        c.send_line(KEEPALIVE)
        c.send_line(b'{"type":"keepalive"}', end=b"\r\n")
        c.send_line({"type": "c"})
        got = c.recv_raw(keepalives=True)
        assert '"type":"c"' in got, f"expected the publish's echo, got {got!r}"
        assert room_info(server, room)["last_msg_id"] == 3


def test_line_split_into_tiny_writes_and_many_lines_in_one_write(server):
    room = new_room()
    with LineClient.connect(server.tcp_port) as a, LineClient.connect(server.tcp_port) as b:
        # the join itself byte by byte
        a.send_slowly(dumps({"type": "join", "room": room}).encode() + b"\n")
        ca = a.recv_json()["client_id"]
        b.join(room)
        # a line of the longest length in small pieces, its \r\n cut between the two bytes
        line = padded_line(MAX) + b"\r\n"
        for step in (3, 7, 100):
            a.send_slowly(line, step=step, pause=0.0002)
            got = b.recv_json()
            assert got["type"] == "pad" and len(got["p"]) == MAX - 21 and got["client_id"] == ca
            assert a.recv_json()["msg_id"] == got["msg_id"]
        # 300 lines in one write, then 300 more with the write cut mid-line
        batch = [{"type": "bulk", "seq": i} for i in range(300)]
        a.send_lines(batch)
        blob = b"".join(dumps({"type": "bulk", "seq": i}).encode() + b"\n"
                        for i in range(300, 600))
        a.send(blob[:1001])
        a.send(blob[1001:])
        for who in (a, b):
            got = [who.recv_json() for _ in range(600)]
            assert [m["seq"] for m in got] == list(range(600))
            assert [m["msg_id"] for m in got] == list(range(4, 604))


# --------------------------------------------------------------------------------------------
# line mode: bad input
# --------------------------------------------------------------------------------------------

def test_line_bad_input(server, bystanders):
    room = new_room()
    before = server.stats()
    with LineClient.connect(server.tcp_port) as c:
        c.join(room)
        # exactly MAX bytes is a line; MAX + 1 is not (nor MAX + 1 with \r\n)
        c.send_line(padded_line(MAX))
        assert c.recv_json()["type"] == "pad"
        c.send_line(padded_line(MAX), end=b"\r\n")
        assert c.recv_json()["type"] == "pad"
        c.send_line(padded_line(MAX + 1))
        c.expect_error("line_too_long")
        c.send_line(padded_line(MAX + 1), end=b"\r\n")
        c.expect_error("line_too_long")
        # a much longer line, in pieces, followed by a good line in the same write: the rest
        # of the long line is skipped, the next line works
        long = b'{"type":"pad","p":"' + b"y" * (5 * MAX) + b'"}'
        c.send(long[:700])
        c.send(long[700:3000])
        c.send(long[3000:] + b'\n{"type":"after-long"}\n')
        c.expect_error("line_too_long")
        assert c.recv_json()["type"] == "after-long"
        # not UTF-8: a stray byte, an overlong encoding, a surrogate, a truncated sequence
        for bad in (b'{"type":"x","t":"\xff"}', b'{"type":"x","t":"\xc0\xaf"}',
                    b'{"type":"x","t":"\xed\xa0\x80"}', b'{"type":"x","t":"\xe2\x82"}'):
            c.send_line(bad)
            c.expect_error("bad_utf8")
        # binary garbage (NUL bytes and control characters) is not JSON
        c.send_line(b"\x00\x01\x02garbage\x00\x7f")
        c.expect_error("bad_json")
        c.send_line(b"\x00")
        c.expect_error("bad_json")
        c.send_line({"type": "still-here"})
        got = c.recv_json()
        assert got["type"] == "still-here" and got["room"] == room, got
    after = server.stats()
    assert_only_errors(before, after, errors_tcp_line_too_long=3, errors_tcp_bad_utf8=4,
                       errors_bad_json=2)
    bystanders.check()


def test_sixteen_errors_in_a_row_close_the_connection(server, bystanders):
    before = server.stats()
    # 15 errors, a good request, 15 errors, a good request: the count starts over, still open
    room = new_room()
    with LineClient.connect(server.tcp_port) as c:
        for _ in range(2):
            c.send_lines([b"not json"] * 15)
            for _ in range(15):
                c.expect_error("bad_json")
            c.join(room)
        c.send_line({"type": "fine"})
        assert c.recv_json()["type"] == "fine"
    # 16 in a row (any mix of errors): 16 error lines, the close line, then EOF
    with LineClient.connect(server.tcp_port) as c:
        bad = [b"not json", b"[1]", b'{"type":"ack"}', b"\xff", padded_line(MAX + 1)] * 3
        bad.append(b'{"type":"say"}')   # not_member: the 16th
        c.send_lines(bad)
        codes = [c.recv_json() for _ in range(16)]
        assert [m["code"] for m in codes] == (["bad_json", "not_object", "reserved_type",
                                               "bad_utf8", "line_too_long"] * 3
                                              + ["not_member"]), codes
        msg = c.expect_close(1008, "too many errors")
        assert msg == {"type": "close", "code": 1008, "reason": "too many errors"}
    # framed mode: 16 error frames, then a close frame
    with FramedClient.connect(server.tcp_port) as f:
        f.send(b"".join(FramedClient.frame(OP_TEXT, b"[]") for _ in range(8)) +
               b"".join(FramedClient.frame(OP_BINARY, b"\x05ab") for _ in range(8)))
        for _ in range(8):
            f.expect_error("not_object")
        for _ in range(8):
            f.expect_error("bad_binary")
        f.expect_close(1008, "too many errors")
    after = server.stats()
    assert_only_errors(before, after, errors_not_object=11, errors_bad_binary=8,
                       errors_too_many_errors=2, errors_bad_json=33,
                       errors_reserved_type=3, errors_tcp_bad_utf8=3,
                       errors_tcp_line_too_long=3, errors_not_member=1)
    bystanders.check()


# --------------------------------------------------------------------------------------------
# framed mode
# --------------------------------------------------------------------------------------------

def test_framed_text_and_binary_round_trips(server):
    room = new_room("framed")
    payload = bytes(range(256)) * 2
    with FramedClient.connect(server.tcp_port) as f, \
            LineClient.connect(server.tcp_port) as line:
        ws = RawWS.connect(server.port)
        try:
            jf = f.join(room)
            cf = jf["client_id"]
            line.join(room)
            ws.join(room)

            # text: the same bytes as the line member's line and the WebSocket text frame
            f.send_frame(OP_TEXT, b'{"type":"hello","n":1}')
            want = f'{{"type":"hello","n":1,"room":"{room}","client_id":{cf},"msg_id":1}}'
            assert f.recv_raw() == want
            assert line.recv_raw() == want
            assert ws.recv_json_raw() == want

            # binary from the framed client: [msg_id][client_id][room_len][room][payload]
            f.send_binary(room, payload)
            assert f.recv_binary() == (2, cf, room, payload)
            op, data = ws.recv_message()
            assert op == WS_BINARY and parse_envelope(data) == (2, cf, room, payload)
            got = line.recv_json()
            assert got == {"binary": base64.b64encode(payload).decode(), "room": room,
                           "client_id": cf, "msg_id": 2}, got
            # room_len 0: the sender's only room
            f.send_binary("", b"")
            assert f.recv_binary() == (3, cf, room, b"")
            assert line.recv_json() == {"binary": "", "room": room, "client_id": cf,
                                        "msg_id": 3}
            ws.recv_message()

            # binary from a WebSocket member reaches the framed and the line member
            ws.send_binary(envelope(room, b"\x00\x01from-ws"))
            cw = ws.recv_message()[1]
            mid, cws, _, _ = parse_envelope(cw)
            assert f.recv_binary() == (4, cws, room, b"\x00\x01from-ws")
            assert line.recv_json()["binary"] == base64.b64encode(b"\x00\x01from-ws").decode()

            # a malformed envelope is an error, and the connection stays
            f.send_frame(OP_BINARY, b"\x09abc")
            f.expect_error("bad_binary")
            f.send_frame(OP_TEXT, b"not json")
            f.expect_error("bad_json")
            # keepalive in a text frame: consumed, no reply
            f.send_json(KEEPALIVE)
            f.send_json({"type": "after"})
            assert f.recv_json()["msg_id"] == 5
            # leave
            assert f.request({"type": "leave", "room": room}) == {"type": "left", "room": room}
        finally:
            ws.close()


def test_framed_ping_pong_and_client_close(server):
    with FramedClient.connect(server.tcp_port) as f:
        for payload in (b"", b"hello", b"\x00\xff" * 60):
            f.send_frame(OP_PING, payload)
            assert f.recv_frame() == (OP_PONG, payload)
        f.send_frame(OP_PONG, b"unsolicited")     # ignored
        f.send_close(1000)
        f.expect_close(1000)
    with FramedClient.connect(server.tcp_port) as f:
        f.join(new_room())
        f.send_close(4321, "bye \u2713".encode())
        f.expect_close(4321)


def test_framed_preamble_in_pieces(server):
    with FramedClient.connect(server.tcp_port, slowly=True) as f:
        room = new_room()
        f.join(room)
        # a frame cut into pieces too
        f.send_slowly(FramedClient.frame(OP_TEXT, b'{"type":"pieces"}'), step=2)
        assert f.recv_json()["type"] == "pieces"


@pytest.mark.parametrize("name, data, code, counter", [
    ("unknown opcode", FramedClient.frame(0x3, b"x"), 1002, "tcp_1002"),
    ("continuation opcode", FramedClient.frame(0x0, b"x"), 1002, "tcp_1002"),
    ("opcode 0xF", FramedClient.frame(0xF), 1002, "tcp_1002"),
    ("oversize, header alone", struct.pack("<IB", MAX + 1, OP_TEXT), 1009, "tcp_1009"),
    ("oversize binary, huge length", struct.pack("<IB", 0xFFFFFFFF, OP_BINARY), 1009,
     "tcp_1009"),
    ("text not UTF-8", FramedClient.frame(OP_TEXT, b'{"type":"x","t":"\xff"}'), 1007, "tcp_1007"),
    ("text truncated UTF-8", FramedClient.frame(OP_TEXT, b'{"t":"\xe2\x82"}'), 1007, "tcp_1007"),
    ("ping over 125 bytes", FramedClient.frame(OP_PING, b"p" * 126), 1002, "tcp_1002"),
    ("close with 1 byte", FramedClient.frame(OP_CLOSE, b"\x03"), 1002, "tcp_1002"),
    ("close with code 1005", FramedClient.frame(OP_CLOSE, struct.pack("!H", 1005)), 1002,
     "tcp_1002"),
])
def test_framed_faults_close_with_a_code(server, bystanders, name, data, code, counter):
    before = server.stats()
    with FramedClient.connect(server.tcp_port) as f:
        f.join(new_room())
        f.send(data)
        f.expect_close(code)
    after = server.stats()
    assert_only_errors(before, after, **{f"errors_{counter}": 1})
    bystanders.check()


def test_tcp_faults_in_metrics(server, bystanders):
    """The TCP faults are counted in /metrics too, under the names /api/stats uses."""
    with LineClient.connect(server.tcp_port) as c:
        c.send_line(padded_line(MAX + 1))
        c.expect_error("line_too_long")
        c.send_line(b"\xff")
        c.expect_error("bad_utf8")
    for data, code in ((FramedClient.frame(0x3), 1002), (FramedClient.frame(OP_TEXT, b"\xff"), 1007),
                       (struct.pack("<IB", MAX + 1, OP_TEXT), 1009)):
        with FramedClient.connect(server.tcp_port) as f:
            f.send(data)
            f.expect_close(code)
    stats = server.stats()["errors"]
    status, body = api(server, "GET", "/metrics")
    assert status == 200
    metrics = {}
    for ln in body.decode().splitlines():
        if ln.startswith('roomcast_errors_total{kind="'):
            kind, _, value = ln[len('roomcast_errors_total{kind="'):].partition('"} ')
            metrics[kind] = int(value)
    for kind in ("tcp_line_too_long", "tcp_bad_utf8", "tcp_1002", "tcp_1007", "tcp_1009",
                 "too_many_errors"):
        assert kind in metrics, f"/metrics has no errors_total for {kind}"
        assert metrics[kind] == stats[kind] and stats[kind] >= (kind != "too_many_errors"), \
            (kind, metrics[kind], stats[kind])
    bystanders.check()


def test_framed_frame_of_exactly_max_is_accepted(server):
    with FramedClient.connect(server.tcp_port) as f:
        room = new_room()
        f.join(room)
        f.send_frame(OP_TEXT, padded_line(MAX))
        got = f.recv_json()
        assert got["type"] == "pad" and got["msg_id"] == 1
        f.send_binary(room, b"b" * (MAX - 1 - len(room)))
        assert f.recv_binary()[3] == b"b" * (MAX - 1 - len(room))


def test_bad_preamble(server, bystanders):
    before = server.stats()
    for data in (b"\x00XYZ", b"\x00RC\x02", b"\x00"):
        with LineClient.connect(server.tcp_port) as c:
            if data == b"\x00":
                c.send_slowly(b"\x00R", pause=0.01)   # refused at the byte that differs
                c.send(b"Q\x01")
            else:
                c.send(data)
            c.expect_error("bad_preamble")
            c.expect_close(1002)
    after = server.stats()
    assert_only_errors(before, after, errors_tcp_1002=3)
    bystanders.check()


# --------------------------------------------------------------------------------------------
# keepalive, ping timeout, slow consumers, shutdown, kick
# --------------------------------------------------------------------------------------------

def test_keepalive_and_ping_timeout(start_server):
    srv = start_server("--tcp-port", "0", "--ping-interval", "0.3", "--ping-timeout", "1")
    room = new_room()
    line = LineClient.connect(srv.tcp_port)
    framed = FramedClient.connect(srv.tcp_port)
    answering = LineClient.connect(srv.tcp_port)
    answering_f = FramedClient.connect(srv.tcp_port)
    try:
        for c in (line, framed, answering, answering_f):
            c.join(room)
        errors = []

        def answer_line():
            try:
                for _ in range(3):
                    assert answering.recv_raw(keepalives=True) == '{"type":"keepalive"}'
                    answering.send_line(KEEPALIVE)
            except Exception as e:   # reported below
                errors.append(f"line: {e!r}")

        def answer_framed():
            try:
                for _ in range(3):
                    op, payload = answering_f.recv_frame()
                    assert op == OP_PING, (op, payload)
                    answering_f.send_frame(OP_PONG, payload)
            except Exception as e:
                errors.append(f"framed: {e!r}")

        threads = [threading.Thread(target=answer_line), threading.Thread(target=answer_framed)]
        for t in threads:
            t.start()
        # the silent ones: a keepalive line / a ping frame, then closed with 1011
        assert line.recv_raw(keepalives=True) == '{"type":"keepalive"}'
        assert line.expect_close(1011, "ping timeout")["reason"] == "ping timeout"
        assert framed.recv_frame()[0] == OP_PING
        framed.expect_close(1011, "ping timeout")
        for t in threads:
            t.join(IO_TIMEOUT * 2)
        assert not errors, errors
        # the answering ones outlived several intervals and still work
        answering.send_line({"type": "alive"})
        assert answering.recv_json()["type"] == "alive"
        assert answering_f.request({"type": "alive"})["type"] == "alive"
        st = srv.stats()
        assert st["disconnects"]["ping_timeout"] == 2, st["disconnects"]
    finally:
        for c in (line, framed, answering, answering_f):
            c.close()


@pytest.mark.parametrize("kind", ["line", "framed"])
def test_slow_tcp_consumer_is_cut_off_others_get_everything(start_server, kind):
    pending = 131072
    srv = start_server("--tcp-port", "0", "--max-pending", str(pending), "--ping-interval", "60",
                       "--close-timeout", "30")
    room = new_room("slow")
    slow = (LineClient if kind == "line" else FramedClient).connect(srv.tcp_port, rcvbuf=4096)
    slow.join(room)                 # ... and never reads again until the end
    pub = LineClient.connect(srv.tcp_port)
    reader = LineClient.connect(srv.tcp_port)
    freader = FramedClient.connect(srv.tcp_port)
    ws = RawWS.connect(srv.port)
    members = [pub, reader, freader, ws]
    try:
        pub.join(room)
        reader.join(room)
        freader.join(room)
        ws.join(room)
        pad = "s" * 2000
        sent, cut_at = 0, None
        while sent < 30000:
            pub.send_lines([{"type": "bulk", "seq": sent + i, "pad": pad} for i in range(20)])
            # every other member receives every message, in order, before the next batch (so
            # they never have more than 40 KB in flight, far below the cap)
            for _ in range(20):
                for m in members:
                    msg = m.recv_json()
                    assert msg["msg_id"] == sent + 1 and msg["seq"] == sent, msg
                sent += 1
            if cut_at is None and sent % 500 == 0:
                if srv.stats()["disconnects"]["slow_consumer"] >= 1:
                    cut_at = sent
            if cut_at is not None and sent >= cut_at + 300:
                break
        assert cut_at is not None, f"no slow_consumer disconnect after {sent} messages of 2 KB"
        # the slow member: a gap-free prefix of the room, then the close line (or frame) with
        # 1008 "slow consumer", then EOF
        ids = []
        while True:
            if kind == "line":
                msg = slow.recv_json(timeout=30)
                if msg.get("type") == "close":
                    assert msg == {"type": "close", "code": 1008, "reason": "slow consumer"}, msg
                    break
            else:
                op, payload = slow.recv_message(timeout=30)
                if op == OP_CLOSE:
                    assert payload == struct.pack("!H", 1008) + b"slow consumer", payload
                    break
                msg = json.loads(payload)
            ids.append(msg["msg_id"])
        assert ids == list(range(1, len(ids) + 1)) and len(ids) < sent, (ids[:3], ids[-3:])
        assert slow.expect_eof() == b""
        st = srv.stats()
        assert st["disconnects"]["slow_consumer"] == 1, st["disconnects"]
        assert room_info(srv, room)["members"] == 4
    finally:
        for c in (slow, pub, reader, freader, ws):
            c.close()


def test_shutdown_sends_close_1001(start_server):
    srv = start_server("--tcp-port", "0")
    room = new_room()
    line = LineClient.connect(srv.tcp_port)
    framed = FramedClient.connect(srv.tcp_port)
    partial = LineClient.connect(srv.tcp_port)  # in the middle of a line
    try:
        line.join(room)
        framed.join(room)
        partial.join(room)
        partial.send(b'{"type":"unfinish')
        srv.wait_connections(3)
        srv.signal(signal.SIGTERM)
        for c in (line, framed, partial):
            c.expect_close(1001)
            c.close()      # our end: the server need not wait --close-timeout for it
        srv.assert_clean_exit(srv.wait_exit())
    finally:
        for c in (line, framed, partial):
            c.close()


def test_api_room_close_removes_tcp_members(server):
    room = new_room()
    with LineClient.connect(server.tcp_port) as line, FramedClient.connect(server.tcp_port) as f:
        line.join(room)
        f.join(room)
        status, doc = api(server, "DELETE", room_path(room), key=KEY)
        assert status == 200 and doc["members_removed"] == 2, doc
        for c in (line, f):
            assert c.recv_json() == {"type": "left", "room": room, "reason": "room_closed"}
        # still connected, no longer members
        line.send_line({"type": "x", "room": room})
        line.expect_error("not_member")
        f.send_json({"type": "x", "room": room})
        f.expect_error("not_member")


def test_kick_via_api_closes_with_1008(server):
    room = new_room()
    with LineClient.connect(server.tcp_port) as line, FramedClient.connect(server.tcp_port) as f:
        cl = line.join(room)["client_id"]
        cf = f.join(room)["client_id"]
        assert sorted(room_info(server, room)["clients"]) == sorted([cl, cf])
        status, doc = api(server, "DELETE", f"/api/clients/{cl}", key=KEY)
        assert status == 200 and doc == {"client_id": cl, "kicked": True}, (status, doc)
        line.expect_close(1008, "kicked")
        status, doc = api(server, "DELETE", f"/api/clients/{cf}", key=KEY)
        assert status == 200 and doc["kicked"] is True, (status, doc)
        f.expect_close(1008, "kicked")
        status, _ = api(server, "DELETE", f"/api/clients/{cf}", key=KEY)
        assert status == 404
        assert room_info(server, room)["members"] == 0


def test_server_closes_after_close_timeout_if_the_client_does_not(start_server):
    """After its close line the server shuts its side down and waits at most --close-timeout
    for the client's end; a client that keeps its socket open is then closed anyway."""
    srv = start_server("--tcp-port", "0", "--api-key", KEY, "--close-timeout", "0.5")
    line = LineClient.connect(srv.tcp_port)
    framed = FramedClient.connect(srv.tcp_port)
    try:
        ids = [line.join(new_room())["client_id"], framed.join(new_room())["client_id"]]
        for cid in ids:
            assert api(srv, "DELETE", f"/api/clients/{cid}", key=KEY)[0] == 200
        line.expect_close(1008, "kicked")
        framed.expect_close(1008, "kicked")
        # both sockets stay open on our side: the server must let go of them by itself
        srv.wait_connections(0)
    finally:
        line.close()
        framed.close()


def test_server_turns_on_tcp_keepalive(start_server):
    """docs/tcp.md: "The server also turns on TCP keepalive" on the TCP and chat ports (seen
    from outside as the keepalive timer of the server's sockets in `ss -o`)."""
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("ss (iproute2) is not installed")
    srv = start_server("--tcp-port", "0", "--chat-port", "0")
    with LineClient.connect(srv.tcp_port) as line, FramedClient.connect(srv.tcp_port) as f, \
            ChatClient.connect(srv.chat_port):
        line.join(new_room())
        f.join(new_room())
        srv.wait_connections(3)
        for port in (srv.tcp_port, srv.chat_port):
            # ss shows one timer per socket: while sent data awaits its ACK that is the
            # retransmission timer ("on"), so look again until the sockets are idle
            deadline = time.monotonic() + IO_TIMEOUT
            while True:
                out = subprocess.run([ss, "-tnoH", "state", "established",
                                      f"( sport = :{port} )"],
                                     capture_output=True, text=True, timeout=10).stdout
                rows = out.strip().splitlines()
                assert len(rows) == (2 if port == srv.tcp_port else 1), out
                if all("timer:(keepalive" in r for r in rows):
                    break
                assert time.monotonic() < deadline and all("timer:(on" in r or "keepalive" in r
                                                           for r in rows), \
                    f"no TCP keepalive on the server's sockets:\n{out}"
                time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# nc: the simplest client there is
# --------------------------------------------------------------------------------------------

def test_half_closed_client_still_gets_its_answers(server):
    """A client that sends its requests and at once shuts down its sending side (what
    `printf ... | nc -N` and scripts do) is owed the answers to what it sent: joined, the echo of
    its publish, its ack; then the server closes. The half-close must not discard them.

    TCP_CORK makes the requests and the FIN leave in one segment, as they do from a fast
    `printf | nc -N`, so the server sees both in one wake-up (without it the outcome depends on
    timing)."""
    room = new_room("halfclose")
    with LineClient.connect(server.tcp_port) as watcher:
        watcher.join(room)
        with LineClient.connect(server.tcp_port) as c:
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            c.send_lines([{"type": "join", "room": room},
                          {"type": "chat", "text": "fire and forget", "ack": "h1"}])
            c.shutdown_write()
            got = [json.loads(ln) for ln in c.expect_eof().decode().splitlines()]
        # the publish was sequenced either way
        assert watcher.recv_json()["text"] == "fire and forget"
        assert [m["type"] for m in got] == ["joined", "chat", "ack"], \
            f"answers lost after the client's half-close: got {got}"
        with FramedClient.connect(server.tcp_port) as f:
            f.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            f.send_json({"type": "join", "room": room})
            f.send_binary(room, b"half")
            f.shutdown_write()
            rest = f.expect_eof()
        assert watcher.recv_json()["binary"] == "aGFsZg=="
        assert len(rest) > 5 and rest[4] == OP_TEXT and b'"joined"' in rest, \
            f"answers lost after the client's half-close (framed): got {rest!r}"


def netcat():
    nc = shutil.which("nc.openbsd")
    if nc is None:
        pytest.skip("Debian's netcat-openbsd (nc.openbsd) is not installed "
                    "(scripts/deps.sh test installs it)")
    return nc


def test_nc_pipes_lines(server):
    nc = netcat()
    room = new_room("nc")
    with LineClient.connect(server.tcp_port) as watcher:
        watcher.join(room)
        lines = [{"type": "join", "room": room},
                 {"type": "chat", "text": "hi from nc", "ack": "n1"},
                 KEEPALIVE,
                 "not json",
                 {"type": "chat", "text": "bye"},
                 {"type": "leave", "room": room}]
        stdin = "".join((dumps(m) if isinstance(m, dict) else m) + "\n" for m in lines)
        # -N: shut the socket's write side at the end of stdin; nc then prints what the server
        # sends until the server closes its side
        out = subprocess.run([nc, "-N", "127.0.0.1", str(server.tcp_port)], input=stdin.encode(),
                             capture_output=True, timeout=30)
        assert out.returncode == 0, out
        got = [json.loads(ln) for ln in out.stdout.decode().splitlines()]
        assert got, (f"nc printed nothing: the answers were lost after nc shut its sending side "
                     f"(see test_half_closed_client_still_gets_its_answers); stderr "
                     f"{out.stderr!r}")
        types = [m["type"] for m in got]
        assert types[0] == "joined" and types[-1] == "left", got
        cid = got[0]["client_id"]
        chats = [m for m in got if m["type"] == "chat"]
        assert [(m["text"], m["msg_id"], m["client_id"]) for m in chats] == \
            [("hi from nc", 1, cid), ("bye", 2, cid)], got
        assert {"type": "ack", "ref": "n1", "room": room, "msg_id": 1} in got
        assert [m["code"] for m in got if m["type"] == "error"] == ["bad_json"]
        assert len(got) == 6, got   # joined, chat, ack, error, chat, left: the keepalive got none
        # the watcher saw the same two messages
        assert [watcher.recv_json()["text"] for _ in range(2)] == ["hi from nc", "bye"]
