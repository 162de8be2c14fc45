"""The room protocol of docs/protocol.md: join/joined, leave/left, publish and its exact
forwarding rules, msg_id sequencing, multi-room, binary envelopes, and every error code, each
counted and leaving the connection open and the bystanders undisturbed."""

import json
import struct
import uuid

import pytest

from conftest import (OP_BINARY, OP_TEXT, RawWS, assert_only_errors, encode_frame,
                      no_retention)


def room_name(tag="r"):
    return f"{tag}-{uuid.uuid4().hex[:10]}"


def ordered(raw):
    """Parse JSON text keeping member order: list of (key, value)."""
    return json.loads(raw, object_pairs_hook=list)


@pytest.fixture
def client(server):
    ws = RawWS.connect(server.port)
    yield ws
    ws.close()


def assert_still_open(ws, room=None):
    """The connection still works: a ping is answered (and, with a room, a publish echoes)."""
    if room is None:
        ws.send_frame(0x9, b"alive?")
        f = ws.recv_frame()
        assert (f.opcode, f.payload) == (0xA, b"alive?"), f
    else:
        ws.send_json({"type": "still", "room": room})
        m = ws.recv_json()
        assert m["type"] == "still" and m["room"] == room, m


def parse_bin(data):
    msg_id, client_id, rlen = struct.unpack_from("<QQB", data, 0)
    room = data[17:17 + rlen].decode()
    return msg_id, client_id, room, data[17 + rlen:]


def bin_env(room, payload):
    r = room.encode()
    return bytes([len(r)]) + r + payload


# -- join / leave --------------------------------------------------------------------------------

def test_join_new_room(server, client):
    room = room_name()
    j = client.join(room)
    assert j["type"] == "joined" and j["room"] == room
    assert isinstance(j["client_id"], int) and j["client_id"] > 0
    assert j["last_msg_id"] == 0
    assert "msg_id" not in j


def test_client_ids_unique_and_stable_across_rooms(server):
    clients = [RawWS.connect(server.port) for _ in range(5)]
    try:
        ids = []
        for c in clients:
            a = c.join(room_name())
            b = c.join(room_name())
            assert a["client_id"] == b["client_id"]
            ids.append(a["client_id"])
        assert len(set(ids)) == 5, ids
        # never reused: reconnecting gives a fresh id
        clients[0].close()
        c = RawWS.connect(server.port)
        clients.append(c)
        assert c.join(room_name())["client_id"] not in ids
    finally:
        for c in clients:
            c.close()


def test_join_twice_changes_nothing(server, client):
    room = room_name()
    client.join(room)
    j2 = client.join(room)
    assert j2["last_msg_id"] == 0
    client.send_json({"type": "m", "room": room})
    m = client.recv_json()
    assert m["msg_id"] == 1
    # still exactly one delivery (not two memberships)
    client.send_frame(0x9, b"sync")
    f = client.recv_frame()
    assert f.opcode == 0xA, f"extra message delivered: {f}"


def test_last_msg_id_and_joiner_sees_everything_after(server):
    room = room_name()
    a = RawWS.connect(server.port)
    b = RawWS.connect(server.port)
    try:
        a.join(room)
        for i in range(3):
            a.send_json({"type": "m", "i": i})
            assert a.recv_json()["msg_id"] == i + 1
        jb = b.join(room)
        assert jb["last_msg_id"] == 3
        a.send_json({"type": "m", "i": 3})
        for ws in (a, b):
            m = ws.recv_json()
            assert (m["msg_id"], m["i"]) == (4, 3), m
    finally:
        a.close()
        b.close()


def test_leave(server, client, bystanders):
    room = room_name()
    other = RawWS.connect(server.port)
    try:
        client.join(room)
        other.join(room)
        client.send_json({"type": "leave", "room": room})
        assert client.recv_json() == {"type": "left", "room": room}
        other.send_json({"type": "after-leave"})
        m = other.recv_json()
        assert m["msg_id"] == 1
        # the leaver gets nothing more from that room
        client.send_frame(0x9, b"sync")
        f = client.recv_frame()
        assert f.opcode == 0xA, f"message delivered after left: {f}"
    finally:
        other.close()


def test_room_disappears_with_last_member(start_server):
    srv = start_server(*no_retention())
    client = RawWS.connect(srv.port)
    room = room_name()
    client.join(room)
    client.send_json({"type": "m"})
    client.recv_json()
    client.send_json({"type": "leave", "room": room})
    assert client.recv_json()["type"] == "left"
    assert srv.stats()["rooms"] == 0
    # recreated from scratch (its sequence restarted)
    assert client.join(room)["last_msg_id"] == 0
    client.close()


def test_room_disappears_when_last_member_disconnects(start_server):
    server = start_server(*no_retention())
    room = room_name()
    ws = RawWS.connect(server.port)
    ws.join(room)
    ws.send_json({"type": "m"})
    assert ws.recv_json()["msg_id"] == 1
    ws.send_close(1000)
    ws.expect_close(1000)
    ws.close()
    server.wait_stats(lambda s: s["rooms"] == 0, what="room gone")
    ws = RawWS.connect(server.port)
    try:
        assert ws.join(room)["last_msg_id"] == 0
    finally:
        ws.close()


# -- publish ---------------------------------------------------------------------------------------

def test_publish_exact_forwarding(server, client):
    room = room_name()
    me = client.join(room)["client_id"]
    client.send_text('{"type":"move","x":3,"y":4}')
    raw = client.recv_json_raw()
    assert ordered(raw) == [("type", "move"), ("x", 3), ("y", 4), ("room", room),
                            ("client_id", me), ("msg_id", 1)], raw


def test_publish_keeps_spelling_and_room_position(server, client):
    room = room_name()
    me = client.join(room)["client_id"]
    sent = ('{"room":"%s","type":"t","f":1.50,"e":1E+2,"s":"caf\\u00e9 \\"q\\"","n":null,'
            '"a":[1,{"b":[]}],"o":{"room":"inner","msg_id":5}}' % room)
    client.send_text(sent)
    raw = client.recv_json_raw()
    # spelling preserved: numbers and escapes are not re-encoded
    for piece in ('"f":1.50', '"e":1E+2', '"s":"caf\\u00e9 \\"q\\""', '"n":null',
                  '"a":[1,{"b":[]}]', '"o":{"room":"inner","msg_id":5}'):
        assert piece in raw, f"{piece!r} not forwarded verbatim in {raw!r}"
    keys = [k for k, _ in ordered(raw)]
    assert keys == ["room", "type", "f", "e", "s", "n", "a", "o", "client_id", "msg_id"], raw
    doc = json.loads(raw)
    assert doc["room"] == room and doc["client_id"] == me and doc["msg_id"] == 1


def test_publish_with_whitespace(server, client):
    room = room_name()
    client.join(room)
    client.send_text(' \n\t{ "type" : "ws" ,\r\n "v" : [ 1 , 2 ] } \n')
    doc = client.recv_json()
    assert doc["type"] == "ws" and doc["v"] == [1, 2] and doc["msg_id"] == 1
    assert doc["room"] == room


def test_client_supplied_ids_are_removed(server, client):
    room = room_name()
    me = client.join(room)["client_id"]
    client.send_text('{"client_id":999,"type":"spoof","msg_id":12345,"k":"v"}')
    raw = client.recv_json_raw()
    pairs = ordered(raw)
    assert [k for k, _ in pairs] == ["type", "k", "room", "client_id", "msg_id"], raw
    doc = dict(pairs)
    assert doc["client_id"] == me and doc["msg_id"] == 1


@pytest.mark.parametrize("text,key", [
    ('{"type":"joined","type":"chat","x":1}', "type"),
    ('{"type":"chat","room":"public","room":"secret"}', "room"),
    ('{"type":"m","msg_id":1,"msg_id":2}', "msg_id"),
    ('{"type":"m","client_id":1,"client_id":2}', "client_id"),
    ('{"type":"m","ack":1,"ack":2}', "ack"),
    ('{"type":"m","idempotency_key":"a1","idempotency_key":"a2"}', "idempotency_key"),
    ('{"type":"join","room":"a","room":"b"}', "room"),
    ('{"type":"netsync_observe","room":"a","room":"b"}', "room"),
])
def test_repeated_server_members_are_refused(server, client, text, key):
    """An object that repeats a member the server reads or adds is refused, not forwarded: the
    server reads the last copy, and a receiver whose parser keeps the first would read a forged
    "joined" or another room. Nothing is sequenced, and the connection stays usable."""
    room = room_name()
    client.join(room)
    before = server.stats()["errors"]["duplicate_key"]
    client.send_text(text.replace('"public"', json.dumps(room)).replace('"secret"', json.dumps(room)))
    err = client.expect_error("duplicate_key")
    assert key in err["message"], err
    assert server.stats()["errors"]["duplicate_key"] == before + 1
    client.send_json({"type": "ok"})
    assert client.recv_json()["msg_id"] == 1   # nothing was sequenced before it


def test_publish_without_type(server, client):
    """'Any other JSON object' is a publish, including one without a type."""
    room = room_name()
    client.join(room)
    client.send_json({"x": 1})
    doc = client.recv_json()
    assert doc == {"x": 1, "room": room, "client_id": doc["client_id"], "msg_id": 1}


def test_empty_object_publish(server, client):
    room = room_name()
    client.join(room)
    client.send_text("{}")
    doc = client.recv_json()
    assert list(doc) == ["room", "client_id", "msg_id"] and doc["room"] == room


def test_msg_ids_per_room_and_every_member_gets_every_message(server):
    r1, r2 = room_name(), room_name()
    a, b, c = (RawWS.connect(server.port) for _ in range(3))
    try:
        a.join(r1)
        a.join(r2)
        b.join(r1)
        c.join(r2)
        for i in range(5):
            a.send_json({"type": "m", "room": r1, "i": i})
            a.send_json({"type": "m", "room": r2, "i": i})
            b.send_json({"type": "m", "i": 100 + i})  # b's only room
        got_a = [a.recv_json() for _ in range(15)]
        got_b = [b.recv_json() for _ in range(10)]
        got_c = [c.recv_json() for _ in range(5)]
        for got, room in ((got_a, r1), (got_b, r1)):
            ids = [m["msg_id"] for m in got if m["room"] == room]
            assert ids == list(range(1, 11)), ids
        for got in (got_a, got_c):
            ids = [m["msg_id"] for m in got if m["room"] == r2]
            assert ids == list(range(1, 6)), ids
        # each sender's messages in the order it sent them
        assert [m["i"] for m in got_b if m["i"] < 100] == list(range(5))
        assert [m["i"] - 100 for m in got_b if m["i"] >= 100] == list(range(5))
    finally:
        for ws in (a, b, c):
            ws.close()


# -- errors ----------------------------------------------------------------------------------------

ERROR_CASES = [
    # (name, setup rooms to join, message text, expected error code)
    ("bad-json-garbage", 0, "not json", "bad_json"),
    ("bad-json-truncated", 0, '{"type":"join","room":"x"', "bad_json"),
    ("bad-json-trailing", 0, '{"type":"m"} x', "bad_json"),
    ("bad-json-two-values", 0, '{"type":"m"}{"type":"m"}', "bad_json"),
    ("bad-json-single-quotes", 0, "{'type':'m'}", "bad_json"),
    ("bad-json-trailing-comma", 0, '{"type":"m",}', "bad_json"),
    ("bad-json-bad-escape", 0, '{"type":"\\x"}', "bad_json"),
    ("bad-json-raw-control", 0, '{"type":"a\x01b"}', "bad_json"),
    ("bad-json-empty", 0, "", "bad_json"),
    ("bad-json-nan", 0, '{"v":NaN}', "bad_json"),
    ("bad-json-leading-zero", 0, '{"v":01}', "bad_json"),
    ("bad-json-unclosed-string", 0, '{"v":"\\ud800', "bad_json"),
    ("not-object-array", 0, '[{"type":"join","room":"x"}]', "not_object"),
    ("not-object-number", 0, "42", "not_object"),
    ("not-object-string", 0, '"join"', "not_object"),
    ("not-object-null", 0, "null", "not_object"),
    ("not-object-true", 0, "true", "not_object"),
    ("join-no-room", 0, '{"type":"join"}', "missing_field"),
    ("leave-no-room", 1, '{"type":"leave"}', "missing_field"),
    ("publish-ambiguous", 2, '{"type":"m"}', "missing_field"),
    ("join-room-number", 0, '{"type":"join","room":5}', "bad_field"),
    ("join-room-null", 0, '{"type":"join","room":null}', "bad_field"),
    ("join-room-object", 0, '{"type":"join","room":{"a":1}}', "bad_field"),
    ("join-room-empty", 0, '{"type":"join","room":""}', "bad_field"),
    ("join-room-256", 0, '{"type":"join","room":"%s"}' % ("a" * 256), "bad_field"),
    ("join-room-256-escaped", 0, '{"type":"join","room":"%s"}' % ("\\u00e9" * 128), "bad_field"),
    ("join-room-nul", 0, '{"type":"join","room":"a\\u0000b"}', "bad_field"),
    ("publish-room-number", 1, '{"type":"m","room":1}', "bad_field"),
    ("leave-room-empty", 1, '{"type":"leave","room":""}', "bad_field"),
    ("publish-no-room-joined", 0, '{"type":"m"}', "not_member"),
    ("publish-other-room", 1, '{"type":"m","room":"OTHER-ROOM-EXISTS"}', "not_member"),
    ("leave-other-room", 1, '{"type":"leave","room":"OTHER-ROOM-EXISTS"}', "not_member"),
    ("leave-no-such-room", 0, '{"type":"leave","room":"never-created-room"}', "no_such_room"),
    ("reserved-joined", 1, '{"type":"joined","room":"R"}', "reserved_type"),
    ("reserved-left", 1, '{"type":"left"}', "reserved_type"),
    ("reserved-error", 1, '{"type":"error","code":"x"}', "reserved_type"),
    ("reserved-ack", 1, '{"type":"ack"}', "reserved_type"),
]


@pytest.fixture(scope="module")
def other_room_holder(server):
    """Keeps the room OTHER-ROOM-EXISTS alive so not_member (not no_such_room) applies."""
    ws = RawWS.connect(server.port)
    ws.join("OTHER-ROOM-EXISTS")
    yield ws
    ws.close()


@pytest.mark.parametrize("name,nrooms,text,code", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error(server, bystanders, other_room_holder, name, nrooms, text, code):
    ws = RawWS.connect(server.port)
    try:
        rooms = [room_name() for _ in range(nrooms)]
        for r in rooms:
            ws.join(r)
        text = text.replace('"R"', json.dumps(rooms[0]) if rooms else '"R"')
        before = server.stats()
        ws.send_frame(OP_TEXT, text.encode())
        ws.expect_error(code)
        after = server.stats()
        assert_only_errors(before, after, **{f"errors_{code}": 1})
        # the connection stays open and usable
        if rooms:
            assert_still_open(ws, rooms[0])
        else:
            assert_still_open(ws)
            j = ws.join(room_name())
            assert j["type"] == "joined"
    finally:
        ws.close()
    bystanders.check()


def test_error_does_not_consume_msg_id(server, client):
    room = room_name()
    client.join(room)
    client.send_json({"type": "m"})
    assert client.recv_json()["msg_id"] == 1
    client.send_json({"type": "ack", "room": room})
    client.expect_error("reserved_type")
    client.send_text("{bad")
    client.expect_error("bad_json")
    client.send_json({"type": "m"})
    assert client.recv_json()["msg_id"] == 2


def test_room_name_255_bytes_and_unicode_ok(server, client):
    long_room = "b" * 255
    assert client.join(long_room)["room"] == long_room
    uni = "部屋-é-😀"
    client.send_text('{"type":"join","room":"\\u90e8\\u5c4b-\\u00e9-\\ud83d\\ude00"}')
    j = client.recv_json()
    assert j["type"] == "joined" and j["room"] == uni, j
    client.send_json({"type": "m", "room": uni})
    assert client.recv_json()["room"] == uni


def test_error_burst_then_normal_traffic(server, bystanders):
    """Many bad messages in a row: each answered in order, the connection survives."""
    ws = RawWS.connect(server.port)
    try:
        before = server.stats()
        ws.send_raw(b"".join(
            encode_frame(OP_TEXT, t) for t in
            [b"x", b"[]", b'{"type":"join"}', b'{"type":"ack"}', b'{"type":"m"}'] * 20))
        for _ in range(20):
            for code in ("bad_json", "not_object", "missing_field", "reserved_type", "not_member"):
                ws.expect_error(code)
        after = server.stats()
        assert_only_errors(before, after, errors_bad_json=20, errors_not_object=20,
                           errors_missing_field=20, errors_reserved_type=20,
                           errors_not_member=20)
        room = room_name()
        ws.join(room)
        assert_still_open(ws, room)
    finally:
        ws.close()
    bystanders.check()


# -- binary envelope --------------------------------------------------------------------------------

def test_binary_round_trip_and_shared_sequence(server):
    room = room_name()
    a, b = RawWS.connect(server.port), RawWS.connect(server.port)
    try:
        ida = a.join(room)["client_id"]
        b.join(room)
        payload = bytes(range(256)) + b"\x00\xff" * 10
        a.send_binary(bin_env(room, payload))
        a.send_json({"type": "t"})
        a.send_binary(bin_env("", b""))          # room_len 0: the sender's only room
        a.send_binary(bin_env("", b"\x00"))
        for ws in (a, b):
            op, data = ws.recv_message()
            assert op == OP_BINARY
            assert parse_bin(data) == (1, ida, room, payload)
            # the header is exactly 17 + room_len bytes
            assert len(data) == 17 + len(room.encode()) + len(payload)
            assert ws.recv_json()["msg_id"] == 2
            op, data = ws.recv_message()
            assert op == OP_BINARY and parse_bin(data) == (3, ida, room, b"")
            op, data = ws.recv_message()
            assert op == OP_BINARY and parse_bin(data) == (4, ida, room, b"\x00")
    finally:
        a.close()
        b.close()


def test_binary_large_payload(server):
    room = room_name()
    ws = RawWS.connect(server.port)
    try:
        cid = ws.join(room)["client_id"]
        payload = bytes(range(256)) * 2000  # 512000 bytes
        ws.send_binary(bin_env(room, payload))
        op, data = ws.recv_message()
        assert op == OP_BINARY and parse_bin(data) == (1, cid, room, payload)
    finally:
        ws.close()


BINARY_ERRORS = [
    ("room-len-past-end", 1, lambda rooms: b"\x10abc", "bad_binary"),
    ("room-len-255-short", 1, lambda rooms: b"\xff" + b"a" * 10, "bad_binary"),
    ("empty-message", 1, lambda rooms: b"", "bad_binary"),
    ("not-member", 1, lambda rooms: bin_env("not-my-room-bin", b"x"), "not_member"),
    ("no-room", 0, lambda rooms: bin_env("", b"x"), "not_member"),
    ("ambiguous", 2, lambda rooms: bin_env("", b"x"), "missing_field"),
]


@pytest.mark.parametrize("name,nrooms,make,code", BINARY_ERRORS,
                         ids=[c[0] for c in BINARY_ERRORS])
def test_binary_errors(server, bystanders, name, nrooms, make, code):
    ws = RawWS.connect(server.port)
    try:
        rooms = [room_name() for _ in range(nrooms)]
        for r in rooms:
            ws.join(r)
        before = server.stats()
        ws.send_binary(make(rooms))
        ws.expect_error(code)
        assert_only_errors(before, server.stats(), **{f"errors_{code}": 1})
        if rooms:
            assert_still_open(ws, rooms[0])
        else:
            assert_still_open(ws)
    finally:
        ws.close()
    bystanders.check()


def test_stats_message_counters(server):
    room = room_name()
    a, b = RawWS.connect(server.port), RawWS.connect(server.port)
    try:
        a.join(room)
        b.join(room)
        # let the bystanders' traffic be accounted separately: measure only broadcasts
        before = server.stats()
        for i in range(10):
            a.send_json({"type": "count", "i": i})
        for ws in (a, b):
            for i in range(10):
                assert ws.recv_json()["i"] == i
        after = server.stats()
        assert after["broadcasts"] - before["broadcasts"] >= 10
        assert after["messages_in"] - before["messages_in"] >= 10
        assert after["messages_out"] - before["messages_out"] >= 20
        assert after["bytes_in"] > before["bytes_in"]
        assert after["bytes_out"] > before["bytes_out"]
    finally:
        a.close()
        b.close()


# -- forwarding corner cases --------------------------------------------------------------------

@pytest.mark.parametrize("sent,keys", [
    ('{"client_id":1}', []),
    ('{"msg_id":1,"client_id":2}', []),
    ('{"a":1,"msg_id":2}', ["a"]),
    ('{ "msg_id" : 1 , "a" : 2 }', ["a"]),
    ('{"a":1 , "client_id" : {"x":[1,2]} }', ["a"]),
    ('{"room":"R","msg_id":3}', ["room"]),
    ('{"msg_id":1,"room":"R"}', ["room"]),
    ('  {"a":"}"}  ', ["a"]),
    ('{"a":"\\"msg_id\\":5"}', ["a"]),
    ('{"client\\u005fid":9,"b":true}', ["b"]),
    ('{"type":null}', ["type"]),
    ('{"type":5,"x":[]}', ["type", "x"]),
], ids=["only-client_id", "both-ids", "last-msg_id", "spaces", "nested-value", "room-first",
        "room-last", "brace-in-string", "quoted-id-in-string", "escaped-key", "type-null",
        "type-number"])
def test_forwarding_removes_ids_and_stays_valid_json(server, client, sent, keys):
    room = room_name()
    me = client.join(room)["client_id"]
    client.send_text(sent.replace('"R"', json.dumps(room)))
    raw = client.recv_json_raw()
    pairs = ordered(raw)   # the output must be valid JSON
    want = keys + (["room"] if "room" not in keys else []) + ["client_id", "msg_id"]
    assert [k for k, _ in pairs] == want, raw
    doc = dict(pairs)
    assert doc["client_id"] == me and doc["msg_id"] == 1 and doc["room"] == room, raw


def test_escaped_type_is_understood(server, client):
    """Member names and values are compared after unescaping: an escaped 'join' joins, an
    escaped reserved type is refused (so nobody can forge server messages)."""
    room = room_name()
    client.send_text('{"type":"\\u006aoin","room":%s}' % json.dumps(room))
    assert client.recv_json()["type"] == "joined"
    for t in ('\\u0065rror', '\\u006aoined', 'l\\u0065ft', 'a\\u0063k'):
        client.send_text('{"type":"%s","code":"forged"}' % t)
        client.expect_error("reserved_type")


def test_room_names_unescaped_and_reescaped(server):
    """'caf\\u00e9' and 'café' are the same room; a room name with quotes, backslashes and
    control characters is escaped correctly wherever the server writes it."""
    a, b = RawWS.connect(server.port), RawWS.connect(server.port)
    try:
        tag = uuid.uuid4().hex[:6]
        a.send_text('{"type":"join","room":"caf\\u00e9-%s"}' % tag)
        assert a.recv_json()["room"] == f"café-{tag}"
        b.join(f"café-{tag}")
        a.send_json({"type": "m"})
        assert b.recv_json()["room"] == f"café-{tag}"
        assert a.recv_json()["msg_id"] == 1
        weird = f'he said "hi"\n\\ é \x01\t/ {tag}'
        ja = a.join(weird)
        assert ja["room"] == weird
        a.send_json({"type": "w", "room": weird})
        assert a.recv_json()["room"] == weird
        # binary envelope names the room by its UTF-8 bytes
        a.send_binary(bin_env(weird, b"bin"))
        op, data = a.recv_message()
        assert op == OP_BINARY and parse_bin(data)[2:] == (weird, b"bin")
        a.send_json({"type": "leave", "room": weird})
        assert a.recv_json() == {"type": "left", "room": weird}
    finally:
        a.close()
        b.close()


def test_deep_nesting_does_not_crash(server, client, bystanders):
    """Pathologically nested JSON (200000 levels) is refused (bad_json) without harming the
    server; ordinary nesting is forwarded."""
    room = room_name()
    client.join(room)
    before = server.stats()
    client.send_text('{"type":"deep","a":' + "[" * 200000 + "]" * 200000 + "}")
    client.expect_error("bad_json")
    client.send_text('{"type":"deep","a":' + '{"a":' * 100000 + "1" + "}" * 100000 + "}")
    client.expect_error("bad_json")
    assert_only_errors(before, server.stats(), errors_bad_json=2)
    nested = '{"type":"ok","a":' + "[" * 20 + "1" + "]" * 20 + "}"
    client.send_text(nested)
    assert client.recv_json()["a"] == json.loads(nested)["a"]
    bystanders.check()


def test_fragmented_publish_with_interleaved_control(server, client):
    room = room_name()
    client.join(room)
    client.send_frame(OP_TEXT, b'{"type":"fr', fin=False)
    client.send_frame(0x0, b'ag","v":"\xc3', fin=False)   # a UTF-8 char split across frames
    client.send_frame(0x9, b"p")
    client.send_frame(0x0, b'\xa9"}', fin=True)
    f = client.recv_frame()
    assert (f.opcode, f.payload) == (0xA, b"p")
    m = client.recv_json()
    assert (m["type"], m["v"], m["msg_id"]) == ("frag", "é", 1)


def test_pipelined_requests_answered_in_order(server):
    """join, publish, leave, publish, join, in one TCP write: replies in exactly that order."""
    room = room_name()
    ws = RawWS.connect(server.port)
    try:
        ws.send_raw(b"".join(encode_frame(OP_TEXT, json.dumps(m).encode()) for m in [
            {"type": "join", "room": room}, {"type": "m", "i": 1},
            {"type": "leave", "room": room}, {"type": "m", "i": 2},
            {"type": "join", "room": room}, {"type": "m", "i": 3}]))
        assert ws.recv_json()["type"] == "joined"
        assert ws.recv_json()["i"] == 1
        assert ws.recv_json() == {"type": "left", "room": room}
        ws.expect_error("not_member")
        j = ws.recv_json()
        # 0 if the room died when we left; 1 where empty rooms are kept (later issues)
        assert j["type"] == "joined" and j["last_msg_id"] in (0, 1), j
        m = ws.recv_json()
        assert (m["i"], m["msg_id"]) == (3, j["last_msg_id"] + 1)
    finally:
        ws.close()


def test_max_size_message_reaches_everyone(server, bystanders):
    """A message of exactly --max-message-size (1 MiB) is accepted and fanned out to every
    member, even though the outgoing frame (with room/client_id/msg_id) is a bit larger than
    --max-pending (1 MiB)."""
    room = room_name("max")
    members = [RawWS.connect(server.port) for _ in range(4)]
    try:
        for m in members:
            m.join(room)
        before = server.stats()
        head = '{"type":"max","pad":"'
        body = head + "x" * (1048576 - len(head) - 2) + '"}'
        assert len(body.encode()) == 1048576
        members[0].send_text(body)
        for m in members:
            doc = m.recv_json(timeout=30)
            assert doc["msg_id"] == 1 and len(doc["pad"]) == 1048576 - len(head) - 2
        # and as binary
        payload = bytes(1048576 - 1 - len(room.encode()))
        members[1].send_binary(bin_env(room, payload))
        for m in members:
            op, data = m.recv_message(timeout=30)
            assert op == OP_BINARY and parse_bin(data)[0] == 2 and parse_bin(data)[3] == payload
        assert_only_errors(before, server.stats())
    finally:
        for m in members:
            m.close()
    bystanders.check()


def test_room_churn(start_server):
    """Thousands of rooms created and destroyed (pipelined join/leave) by a few clients: every
    reply arrives, and the server ends with no rooms. (Room creation is not rate limited here:
    this churn is what --room-create-rate exists to hold back, see test_limits.py.)"""
    srv = start_server(*no_retention(), "--room-create-rate", "0")
    clients = [RawWS.connect(srv.port) for _ in range(4)]
    try:
        n = 1500
        for c, ws in enumerate(clients):
            ws.send_raw(b"".join(
                encode_frame(OP_TEXT, json.dumps({"type": t, "room": f"churn-{c}-{i}"}).encode())
                for i in range(n) for t in ("join", "leave")))
        for c, ws in enumerate(clients):
            for i in range(n):
                j = ws.recv_json()
                assert (j["type"], j["room"], j["last_msg_id"]) == ("joined", f"churn-{c}-{i}", 0)
                assert ws.recv_json() == {"type": "left", "room": f"churn-{c}-{i}"}
        # and rooms kept by many members at once
        for i in range(60):
            for ws in clients:
                ws.send_json({"type": "join", "room": f"kept-{i}"})
        for ws in clients:
            for i in range(60):
                assert ws.recv_json()["type"] == "joined"
        assert srv.stats()["rooms"] == 60
    finally:
        for ws in clients:
            ws.close()
    srv.wait_stats(lambda s: s["rooms"] == 0, what="no rooms left")


# -- whatever the client sends, the server's text frames are UTF-8 JSON --------------------------------

@pytest.mark.parametrize("room_bytes", [b"\xff\xfe", b"\xe2\x82", b"\xed\xa0\x80x", b"a\x00b",
                                        b"a\"b\\\n"],
                         ids=["ff-fe", "truncated-euro", "surrogate", "nul", "quote-bs-nl"])
@pytest.mark.parametrize("joined", [False, True], ids=["no-room", "in-a-room"])
def test_binary_envelope_odd_room_bytes_answered_with_valid_text(server, room_bytes, joined):
    """A binary envelope names its room with raw bytes. Whatever they are, the answer is an
    error in a *valid UTF-8* JSON text frame (an invalid one makes every conforming client fail
    the connection with 1007), and the connection stays open."""
    ws = RawWS.connect(server.port)
    try:
        if joined:
            ws.join(room_name())
        ws.send_binary(bytes([len(room_bytes)]) + room_bytes + b"payload")
        op, payload = ws.recv_message()
        assert op == OP_TEXT, (op, payload)
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            pytest.fail(f"server sent a text frame that is not UTF-8: {payload!r}")
        msg = json.loads(text)
        assert msg["type"] == "error", msg
        assert msg["code"] in ("bad_field", "bad_binary", "not_member"), msg
        assert_still_open(ws)
    finally:
        ws.close()


def test_binary_envelope_non_utf8_room_with_websockets_client(server):
    """The same through a real client: it must not see a protocol error."""
    from conftest import run, ws_connect, ws_recv_json

    async def main():
        ws = await ws_connect(server.ws_url)
        try:
            await ws.send(b"\x02\xff\xfepayload")
            msg = await ws_recv_json(ws)
            assert msg["type"] == "error", msg
            await ws.send(json.dumps({"type": "join", "room": "after-odd-binary"}))
            assert (await ws_recv_json(ws))["type"] == "joined"
        finally:
            await ws.close()
    run(main())
