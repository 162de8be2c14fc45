"""The chat port (docs/tcp.md, "The chat port"): the protocol of the reactor chat seed. Bare JSON
objects in, split by their structure however the bytes arrive; `[user] text` lines out; one
room (--chat-room) shared with WebSocket, TCP and HTTP members; errors as `[roomcast] error:`
lines; 16 errors in a row or an oversized object close the connection."""

import json
import signal
import time

import pytest

from conftest import OP_BINARY as WS_BINARY, RawWS, Server, assert_only_errors, stats_delta
from rawtcp import ChatClient, api, dumps, envelope, room_info, room_path, wait_members

KEY = "chat-test-key-0123456789"
MAX = 1024


@pytest.fixture(scope="module")
def server():
    srv = Server("--chat-port", "0", "--api-key", KEY, "--max-message-size", str(MAX))
    try:
        yield srv
        srv.stop()
    finally:
        srv.cleanup()


class Room:
    """The chat room seen by a WebSocket member, plus chat clients in it. Closes them all."""

    def __init__(self, srv, nchat=1, room="chat"):
        self.srv, self.room = srv, room
        self.ws = RawWS.connect(srv.port)
        j = self.ws.join(room)
        self.ws_id, self.last = j["client_id"], j["last_msg_id"]
        self.chats = []
        for _ in range(nchat):
            self.chats.append(ChatClient.connect(srv.chat_port))
        # chat clients are members from the start (nothing is sent to them on joining)
        info = wait_members(srv, room, 1 + nchat)
        self.chat_ids = sorted(set(info["clients"]) - {self.ws_id})

    def ws_next(self):
        """The WebSocket member's next room message, checked to follow the previous one."""
        raw = self.ws.recv_json_raw()
        msg = json.loads(raw)
        assert msg["msg_id"] == self.last + 1, f"gap or reorder: {msg}, last {self.last}"
        self.last = msg["msg_id"]
        return raw, msg

    def close(self):
        self.ws.close()
        for c in self.chats:
            c.close()
        wait_members(self.srv, self.room, 0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_objects_in_lines_out_and_what_websocket_sees(server):
    with Room(server, nchat=2) as r:
        a, b = r.chats
        a.say("ann", "hello")
        assert a.recv_line() == "[ann] hello"       # the sender sees its own message too
        assert b.recv_line() == "[ann] hello"
        raw, msg = r.ws_next()
        ann = msg["client_id"]
        assert ann in r.chat_ids
        assert raw == ('{"type":"chat","user":"ann","text":"hello","room":"chat",'
                       f'"client_id":{msg["client_id"]},"msg_id":{msg["msg_id"]}}}')
        # what the seed client sends: json.dumps with its default spacing, raw UTF-8
        b.send(json.dumps({"user": "bö", "text": "grüße ✓"}, ensure_ascii=False).encode())
        assert a.recv_line() == "[bö] grüße ✓"
        assert b.recv_line() == "[bö] grüße ✓"
        raw, msg = r.ws_next()
        assert (msg["user"], msg["text"]) == ("bö", "grüße ✓") and msg["type"] == "chat"
        assert msg["client_id"] in r.chat_ids and msg["client_id"] != ann


def test_only_user_and_text_are_published(server):
    """Whatever else the object carries (a reserved type, another room, client_id, msg_id, ack,
    idempotency_key), the room gets {"type":"chat","user":..,"text":..} from this client in the
    chat room; whitespace inside the object does not matter."""
    with Room(server, nchat=1) as r:
        (c,) = r.chats
        c.send(b'{"type":"ack","room":"other","client_id":5,"msg_id":9,"user":"a","text":"b",'
               b'"ack":1,"idempotency_key":"k"}')
        raw, msg = r.ws_next()
        assert msg["client_id"] == r.chat_ids[0]
        assert raw == ('{"type":"chat","user":"a","text":"b","room":"chat",'
                       f'"client_id":{r.chat_ids[0]},"msg_id":{msg["msg_id"]}}}')
        assert c.recv_line() == "[a] b"
        c.send(b'{ "user" : "sp" ,\n "text" : "aced"\r\n}')
        raw, msg = r.ws_next()
        assert raw.startswith('{"type":"chat","user":"sp","text":"aced","room":"chat",'), raw
        assert c.recv_line() == "[sp] aced"


def test_object_framing(server):
    """Objects split across writes, byte by byte, one and a half per read, back to back, with
    whitespace between them, and strings holding braces, quotes and escapes."""
    with Room(server, nchat=2) as r:
        a, b = r.chats
        sent = []

        def obj(text, user="ann"):
            sent.append((user, text))
            return json.dumps({"user": user, "text": text}).encode()

        # split across two writes
        o = obj("split in two")
        a.send(o[:9])
        time.sleep(0.05)
        a.send(o[9:])
        # byte by byte
        a.send_slowly(obj("byte by byte {with} \"quotes\""), step=1, pause=0.001)
        # one and a half objects, then the rest
        o1, o2 = obj("first of 1.5"), obj("second of 1.5")
        a.send(o1 + o2[:len(o2) // 2])
        time.sleep(0.05)
        a.send(o2[len(o2) // 2:])
        # back to back, and whitespace (spaces, tabs, newlines, CRLF) between objects
        a.send(obj("b2b 1") + obj("b2b 2") + b" \t\r\n \n" + obj("after ws") + b"\n")
        # strings with braces, brackets, quotes, backslashes and \u escapes
        tricky = ['}{"}', 'a}b{c"d\\e', "[x] {y} \\\" \\\\", "é ✓ 😀 \u00e9", "\\u0041 is not A"]
        a.send(b"".join(obj(t) for t in tricky))
        a.send(json.dumps({"user": "esc", "text": "\\} \" {"}, ensure_ascii=True).encode())
        sent.append(("esc", "\\} \" {"))
        # an object with other members and nesting around the ones that matter
        a.send(b'{"x":{"text":"inner"},"user":"nest","text":"outer","list":[{"}":"{"}]}')
        sent.append(("nest", "outer"))

        want = [f"[{u}] {t}" for u, t in sent]
        assert [b.recv_line() for _ in want] == want
        assert [a.recv_line() for _ in want] == want
        for u, t in sent:
            _, msg = r.ws_next()
            assert (msg["user"], msg["text"]) == (u, t), msg


def test_user_fallbacks_and_control_characters(server):
    with Room(server, nchat=1) as r:
        (c,) = r.chats
        pubs = [
            ({"type": "chat", "nick": "nn", "text": "via nick"}, "[nn] via nick"),
            ({"type": "chat", "text": "anonymous"}, f"[client {r.ws_id}] anonymous"),
            ({"type": "chat", "user": 5, "nick": "n2", "text": "user not a string"},
             "[n2] user not a string"),
            ({"type": "chat", "user": "u", "nick": "n", "text": "user wins"}, "[u] user wins"),
            ({"type": "chat", "user": "a\u001b[31mb\r\n", "text": "x\ty\nz\u007f!\u0001end"},
             "[a [31mb  ] x y z ! end"),
            ({"type": "chat", "user": "tab\tuser", "text": "bell\u0007"}, "[tab user] bell "),
        ]
        for m, line in pubs:
            r.ws.send_json(m)
            r.ws_next()
            assert c.recv_line() == line
        # a backend's message through the API: client 0
        status, doc = api(server, "POST", room_path("chat", "/messages"),
                          {"type": "notice", "text": "from the backend"}, key=KEY)
        assert status == 200, doc
        r.ws_next()
        assert c.recv_line() == "[client 0] from the backend"


def test_nul_is_a_control_character_too(server):
    """U+0000 is a C0 control character like the others: shown as a space. The message has a
    string text, so the chat client must see it (not silently lose it), and the user string
    is still the message's user."""
    with Room(server, nchat=1) as r:
        (c,) = r.chats
        r.ws.send_json({"type": "chat", "user": "nul\u0000user", "text": "t"})
        r.ws_next()
        r.ws.send_json({"type": "chat", "user": "z", "text": "x\u0000end"})
        r.ws_next()
        r.ws.send_json({"type": "chat", "user": "z", "text": "marker"})
        r.ws_next()
        got = [c.recv_line()]
        while got[-1] != "[z] marker":
            got.append(c.recv_line())
        assert got == ["[nul user] t", "[z] x end", "[z] marker"], got


def test_text_with_a_lone_surrogate_escape_is_still_shown(server):
    """"\ud800" is a JSON string the server accepts and delivers to WebSocket members; the chat
    port receives "every message of the room that has a string text" (docs/tcp.md), so it must
    show it (with whatever stands in for the unpaired surrogate), not silently drop it."""
    with Room(server, nchat=1) as r:
        (c,) = r.chats
        r.ws.send_text('{"type":"chat","user":"s","text":"\\ud800 lone"}')
        r.ws_next()
        r.ws.send_json({"type": "chat", "user": "s", "text": "marker"})
        r.ws_next()
        got = [c.recv_line()]
        while got[-1] != "[s] marker":
            got.append(c.recv_line())
        assert len(got) == 2 and got[0].startswith("[s] ") and got[0].endswith(" lone"), got


def test_messages_without_text_and_binary_are_not_shown(server):
    with Room(server, nchat=1) as r:
        (c,) = r.chats
        for m in ({"type": "move", "x": 1}, {"type": "chat", "text": 5},
                  {"type": "chat", "text": None, "user": "x"}, {"type": "chat", "text": ["t"]}):
            r.ws.send_json(m)
            r.ws_next()
        r.ws.send_binary(envelope("chat", b"\x00\x01binary"))
        op, _ = r.ws.recv_message()
        assert op == WS_BINARY
        r.last += 1
        r.ws.send_json({"type": "chat", "user": "w", "text": "visible"})
        r.ws_next()
        # the next line the chat client gets is the one with text
        assert c.recv_line() == "[w] visible"


def test_errors_are_answered_and_not_published(server, bystanders):
    before = server.stats()
    with Room(server, nchat=1) as r:
        (c,) = r.chats
        bad_objects = [b"{bad}", b'{"user":"ann"}', b'{"text":"no user"}',
                       b'{"user":1,"text":"x"}', b'{"user":"a","text":["x"]}',
                       b'{"user":"a","text":"x",}']
        for o in bad_objects:
            c.send(o)
            c.expect_error()
        # garbage outside objects: one error per run, even when the run arrives in pieces,
        # skipped up to the next '{'
        c.send(b"hello ")
        c.expect_error()
        time.sleep(0.05)
        c.send(b"there [1,2]")
        c.send(b' "x" {"user":"ann","text":"after garbage"}')
        assert c.recv_line() == "[ann] after garbage"
        c.send(b"]]]")
        c.expect_error()
        c.say("ann", "ok")
        assert c.recv_line() == "[ann] ok"
        # the WebSocket member saw only the two good ones, with no gap
        assert r.ws_next()[1]["text"] == "after garbage"
        assert r.ws_next()[1]["text"] == "ok"
    after = server.stats()
    d = stats_delta(before, after)
    errors = {k: v for k, v in d.items() if k.startswith("errors.") and v}
    # every error line is a fault counted once
    assert sum(errors.values()) == len(bad_objects) + 2, \
        f"{len(bad_objects) + 2} error lines but the counters moved by {errors}"
    assert errors.get("errors.chat_garbage") == 2, errors
    bystanders.check()


def test_object_not_utf8_is_an_error_and_is_counted(server):
    """"Errors are counted in /api/stats ... like every other fault" (docs/tcp.md): an object
    that is not UTF-8 is answered with an error line like the others, and must be counted."""
    before = server.stats()
    with Room(server, nchat=1) as r:
        (c,) = r.chats
        c.send(b'{"user":"a","text":"\xff"}')
        c.expect_error()
        c.say("ann", "ok")
        assert c.recv_line() == "[ann] ok"
        assert r.ws_next()[1]["text"] == "ok"
    d = stats_delta(before, server.stats())
    errors = {k: v for k, v in d.items() if k.startswith("errors.") and v}
    assert sum(errors.values()) == 1, f"one error line, but the error counters moved by {errors}"


def test_sixteen_errors_in_a_row_close(server):
    before = server.stats()
    with Room(server, nchat=2) as r:
        a, b = r.chats
        b.send(b"{bad}" * 8 + b"garbage" + b'{"user":"x"}' * 7)
        for _ in range(16):
            b.expect_error()
        b.expect_closing("too many errors")
        for _ in range(2):                  # 15 errors then a good one: the count starts over
            a.send(b"{bad}" * 15)
            for _ in range(15):
                a.expect_error()
            a.say("ann", "still here")
            assert a.recv_line() == "[ann] still here"
        a.say("ann", "a is fine")
        assert a.recv_line() == "[ann] a is fine"
    after = server.stats()
    assert stats_delta(before, after)["errors.too_many_errors"] == 1


def test_object_over_max_message_size_closes(server, bystanders):
    before = server.stats()
    with Room(server, nchat=1) as r:
        (c,) = r.chats
        # exactly the limit is fine
        base = len(dumps({"user": "ann", "text": ""}))
        c.say("ann", "x" * (MAX - base))
        assert c.recv_line() == "[ann] " + "x" * (MAX - base)
        r.ws_next()
        c.send(json.dumps({"user": "ann", "text": "y" * MAX}).encode())
        c.expect_closing()
    # an object that never ends is cut at the limit too
    with ChatClient.connect(server.chat_port) as c:
        c.send(b'{"user":"x","text":"' + b"[" * (MAX + 10))
        c.expect_closing()
    after = server.stats()
    assert_only_errors(before, after, errors_chat_too_big=2)
    bystanders.check()


def test_chat_room_flag_chooses_the_room(start_server):
    room = "lounge \u2615"
    srv = start_server("--chat-port", "0", "--chat-room", room)
    assert srv.chat_room == room, srv.chat_room
    with Room(srv, nchat=1, room=room) as r:
        (c,) = r.chats
        c.say("ann", "in the lounge")
        _, msg = r.ws_next()
        assert msg["room"] == room and msg["text"] == "in the lounge"
        assert c.recv_line() == "[ann] in the lounge"
        assert room_info(srv, "chat") is None


def test_api_room_close_then_next_message_rejoins(server):
    ws = RawWS.connect(server.port)
    c = ChatClient.connect(server.chat_port)
    try:
        ws.join("chat")
        wait_members(server, "chat", 2)
        status, doc = api(server, "DELETE", room_path("chat"), key=KEY)
        assert status == 200 and doc["closed"] is True and doc["members_removed"] == 2, doc
        assert ws.recv_json() == {"type": "left", "room": "chat", "reason": "room_closed"}
        info = room_info(server, "chat")
        assert info is None or info["members"] == 0, info
        # the chat client's next message puts it back in the room (created anew)
        c.say("ann", "back")
        notices = []
        while True:
            line = c.recv_line()
            if line == "[ann] back":
                break
            assert line.startswith("[roomcast] "), f"unexpected line {line!r}"
            notices.append(line)
        assert len(notices) <= 1, notices
        wait_members(server, "chat", 1)
        j = ws.join("chat")
        assert wait_members(server, "chat", 2)["last_msg_id"] == j["last_msg_id"]
        c.say("ann", "again")
        msg = ws.recv_json()
        assert (msg["text"], msg["msg_id"]) == ("again", j["last_msg_id"] + 1), msg
        assert c.recv_line() == "[ann] again"
    finally:
        ws.close()
        c.close()
    wait_members(server, "chat", 0)


def test_chat_client_is_not_pinged_out(start_server):
    """The seed client cannot answer a keepalive: chat connections rely on TCP keepalive only,
    so a silent chat client outlives --ping-interval + --ping-timeout."""
    srv = start_server("--chat-port", "0", "--ping-interval", "0.3", "--ping-timeout", "0.3")
    with ChatClient.connect(srv.chat_port) as a, ChatClient.connect(srv.chat_port) as b:
        wait_members(srv, "chat", 2)
        time.sleep(1.5)     # several intervals of silence (not measured: just exceeded)
        a.say("ann", "still there?")
        assert b.recv_line() == "[ann] still there?"
        assert a.recv_line() == "[ann] still there?"
        assert srv.stats()["disconnects"]["ping_timeout"] == 0


def test_kick_via_api(server):
    with Room(server, nchat=2) as r:
        a, b = r.chats
        victim = r.chat_ids[0]
        status, doc = api(server, "DELETE", f"/api/clients/{victim}", key=KEY)
        assert status == 200 and doc == {"client_id": victim, "kicked": True}, doc
        # one of the two gets the closing line and EOF; the other stays
        b.say("bob", "who is left?")
        lines = {}
        for c in (a, b):
            first = c.recv_line()
            if first.startswith("[roomcast] closing: "):
                assert first == "[roomcast] closing: kicked", first
                assert c.expect_eof() == b""
                lines["kicked"] = c
            else:
                assert first == "[bob] who is left?", first
                lines["kept"] = c
        assert set(lines) == {"kicked", "kept"}, lines
        wait_members(server, "chat", 2)


def test_slow_chat_consumer_is_cut_off(start_server):
    srv = start_server("--chat-port", "0", "--max-pending", "65536", "--ping-interval", "60",
                       "--close-timeout", "30")
    slow = ChatClient.connect(srv.chat_port, rcvbuf=4096)    # never reads until the end
    reader = ChatClient.connect(srv.chat_port)
    ws = RawWS.connect(srv.port)
    try:
        ws.join("chat")
        wait_members(srv, "chat", 3)
        pad = "p" * 1000
        sent, cut_at = 0, None
        while sent < 20000:
            for _ in range(20):
                ws.send_json({"type": "chat", "user": "ws", "text": f"{sent} {pad}"})
                sent += 1
            for i in range(sent - 20, sent):
                assert ws.recv_json()["text"] == f"{i} {pad}"
                assert reader.recv_line() == f"[ws] {i} {pad}"
            if cut_at is None and sent % 200 == 0:
                if srv.stats()["disconnects"]["slow_consumer"] >= 1:
                    cut_at = sent
            if cut_at is not None and sent >= cut_at + 200:
                break
        assert cut_at is not None, f"no slow_consumer disconnect after {sent} messages"
        got = []
        while True:
            line = slow.recv_line(timeout=30)
            if line.startswith("[roomcast] "):
                assert line == "[roomcast] closing: slow consumer", line
                break
            got.append(line)
        assert got == [f"[ws] {i} {pad}" for i in range(len(got))] and len(got) < sent
        assert slow.expect_eof() == b""
        assert srv.stats()["disconnects"]["slow_consumer"] == 1
    finally:
        for c in (slow, reader, ws):
            c.close()


def test_shutdown_line(start_server):
    srv = start_server("--chat-port", "0")
    a = ChatClient.connect(srv.chat_port)
    b = ChatClient.connect(srv.chat_port)
    try:
        a.say("ann", "before")
        assert a.recv_line() == "[ann] before"
        assert b.recv_line() == "[ann] before"
        srv.signal(signal.SIGTERM)
        for c in (a, b):
            c.expect_closing("server shutdown")
            c.close()      # our end: the server need not wait --close-timeout for it
        srv.assert_clean_exit(srv.wait_exit())
    finally:
        a.close()
        b.close()
