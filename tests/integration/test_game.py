"""What a game needs from its rooms (docs/protocol.md): sessions across reconnects and
restarts, late joiners' history, room state, conflation for a stalled reader, presence placed
exactly in the stream, large-room presence batches, and bans — over WebSocket and the raw TCP
line port alike, with the same client code for both (`Client`)."""

import json
import socket
import threading
import time
import uuid

import pytest

from conftest import IO_TIMEOUT, RawWS, Server, ConnectionGone
from rawtcp import LineClient, api, room_path

KEY = "game-test-key-0123456789"
KINDS = ("ws", "tcp")


@pytest.fixture(scope="module")
def server():
    srv = Server("--tcp-port", "0", "--api-key", KEY)
    try:
        yield srv
        srv.stop()
    finally:
        srv.cleanup()


def crash(srv):
    """SIGKILL: nothing of the server's own shutdown runs."""
    srv.proc.kill()
    srv.proc.wait()
    srv.returncode = 0                  # killed on purpose: nothing to judge


def rn(prefix="game"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Client:
    """A room client over WebSocket ("ws") or the TCP line port ("tcp")."""

    def __init__(self, srv, kind, **kw):
        self.kind = kind
        if kind == "ws":
            self.c = RawWS.connect(srv.port, **kw)
        else:
            self.c = LineClient.connect(srv.tcp_port, **kw)

    def send(self, obj):
        if self.kind == "ws":
            self.c.send_json(obj)
        else:
            self.c.send_line(obj)

    def recv(self, timeout=IO_TIMEOUT):
        return self.c.recv_json(timeout)

    def join(self, room, **kw):
        return self.c.join(room, **kw)

    def expect_error(self, code):
        return self.c.expect_error(code)

    def expect_close(self, code, reason):
        self.c.expect_close(code, reason)

    def goodbye(self):
        """Close as a client that means it: a close frame, or EOF."""
        if self.kind == "ws":
            self.c.send_close(1000)
            self.c.expect_close(1000)
        self.c.close()

    def reset(self):
        if self.kind == "ws":
            self.c.reset()
        else:
            self.c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            self.c.sock.close()

    def close(self):
        self.c.close()

    def publish(self, room, **body):
        self.send({"type": "m", "room": room, **body})


def pub_and_ack(c, room, **body):
    """Publishes and waits for its ack (the sender gets its own message first)."""
    tok = uuid.uuid4().hex
    c.send({"type": "m", "room": room, "ack": tok, **body})
    got = c.recv()
    ack = c.recv()
    assert ack == {"type": "ack", "ref": tok, "room": room, "msg_id": got["msg_id"]}, ack
    return got


# ---- sessions ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_session_gives_the_client_id_back_and_replaces_the_old_connection(server, kind):
    room = rn()
    a = Client(server, kind)
    ja = a.join(room)
    assert len(ja["session"]) == 32
    watcher = Client(server, "ws")
    watcher.join(room, presence=True)
    # the player's connection is still open (a network switch): the new one takes over
    a2 = Client(server, kind)
    ja2 = a2.join(room, session=ja["session"])
    assert ja2["client_id"] == ja["client_id"] and ja2["session"] == ja["session"]
    a.expect_close(1008, "replaced by a new connection")
    # the watcher sees one player leave as replaced and the same id come back, nothing else
    assert watcher.recv() == {"type": "presence", "room": room, "event": "leave",
                              "client_id": ja["client_id"], "reason": "replaced",
                              "after_msg_id": 0}
    assert watcher.recv() == {"type": "presence", "room": room, "event": "join",
                              "client_id": ja["client_id"], "after_msg_id": 0}
    m = pub_and_ack(a2, room, x=1)
    assert m["client_id"] == ja["client_id"]
    assert watcher.recv()["msg_id"] == m["msg_id"]
    # a session goes in a connection's first join only
    a2.send({"type": "join", "room": rn(), "session": "0" * 32})
    err = a2.expect_error("bad_field")
    assert "first join" in err["message"]
    # an unknown (expired, or pre-restart) session is adopted with the connection's own id
    b = Client(server, kind)
    jb = b.join(room, session="ab" * 16)
    assert jb["session"] == "ab" * 16 and jb["client_id"] not in (ja["client_id"],)
    for c in (a2, b, watcher):
        c.close()


def test_session_after_close_within_ttl(server):
    room = rn()
    a = Client(server, "ws")
    ja = a.join(room)
    a.goodbye()
    server.wait_stats(lambda st: st["sessions"]["idle"] >= 1, what="session released")
    a2 = Client(server, "tcp")          # another transport: the session is the player's
    assert a2.join(room, session=ja["session"])["client_id"] == ja["client_id"]
    a2.close()


def test_session_ttl_forgets(start_server):
    srv = start_server("--session-ttl", "1")
    room = rn()
    a = RawWS.connect(srv.port)
    ja = a.join(room)
    a.close()
    srv.wait_stats(lambda st: st["sessions"]["remembered"] == 0, timeout=10,
                   what="session forgotten after its TTL")
    b = RawWS.connect(srv.port)
    jb = b.join(room, session=ja["session"])
    assert jb["client_id"] != ja["client_id"] and jb["session"] == ja["session"]


def test_client_ids_never_reused_across_restarts(start_server, tmp_path):
    data = str(tmp_path / "data")
    srv = start_server("--data-dir", data)
    room = rn()
    seen = []
    for _ in range(3):
        c = RawWS.connect(srv.port)
        seen.append(c.join(room)["client_id"])
        c.close()
    srv.stop()
    srv2 = start_server("--data-dir", data)
    c = RawWS.connect(srv2.port)
    j = c.join(room)
    assert j["client_id"] > max(seen), (j, seen)
    c.close()
    crash(srv2)             # the reserved block still covers what was handed out
    srv3 = start_server("--data-dir", data)
    c = RawWS.connect(srv3.port)
    assert c.join(room)["client_id"] > j["client_id"]


# ---- late joiners: history ------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_history_join_exact_seam_under_publishing(server, kind):
    room = rn()
    pub = RawWS.connect(server.port)
    pub.join(room)
    stop = threading.Event()
    sent = [0]

    def flood():
        while not stop.is_set() and sent[0] < 3000:
            pub.send_json({"type": "m", "n": sent[0]})
            sent[0] += 1
            if sent[0] % 50 == 0:
                time.sleep(0.001)

    t = threading.Thread(target=flood)
    t.start()
    try:
        while sent[0] < 200:
            time.sleep(0.005)
        late = Client(server, kind)
        j = late.join(room, history=100)
        last = j["last_msg_id"]
        assert j["replay_from"] == last - 99 and last >= 100, j
        want = j["replay_from"]
        # replayed ones, then live ones: one contiguous run of ids, no gap, no duplicate
        while want <= last + 200:
            m = late.recv()
            assert m.get("msg_id") == want, (m, want)
            want += 1
    finally:
        stop.set()
        t.join()
    pub.close()
    late.close()


def test_history_join_bounds_and_recovery_first(start_server):
    srv = start_server("--history-size", "10")
    room = rn()
    a = RawWS.connect(srv.port)
    j = a.join(room, history=5)
    assert j["last_msg_id"] == 0 and j["replay_from"] == 1     # nothing to replay
    for i in range(25):
        a.send_json({"type": "m", "i": i})
        a.recv_json()
    b = RawWS.connect(srv.port)
    j = b.join(room, history=50)                                  # more than is kept
    assert j["replay_from"] == 16
    assert [b.recv_json()["msg_id"] for _ in range(10)] == list(range(16, 26))
    c = RawWS.connect(srv.port)
    assert c.join(room, history=0)["replay_from"] == 26
    # since/epoch that can be served wins; history is the fallback
    d = RawWS.connect(srv.port)
    j = d.join(room, since=23, epoch=j["epoch"], history=3)
    assert j["recovered"] is True and j["replay_from"] == 24
    assert [d.recv_json()["msg_id"] for _ in range(2)] == [24, 25]
    e = RawWS.connect(srv.port)
    j = e.join(room, since=2, epoch=j["epoch"], history=2)
    assert j["recovered"] is False and j["replay_from"] == 24
    assert [e.recv_json()["msg_id"] for _ in range(2)] == [24, 25]
    for bad in (-1, 1.5, "3", True):
        e.send_json({"type": "join", "room": room, "history": bad})
        e.expect_error("bad_field")


# ---- room state ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_state_join_gives_each_keys_latest_then_live(server, kind):
    room = rn()
    a = Client(server, kind)
    a.join(room)
    pub_and_ack(a, room, state_key="pos/ann", x=1)
    pub_and_ack(a, room, state_key="pos/bob", x=2)
    pub_and_ack(a, room, note="no key")
    m4 = pub_and_ack(a, room, state_key="pos/ann", x=3)
    m5 = pub_and_ack(a, room, state_key="map", tiles=[1, 2, 3])
    b = Client(server, "ws" if kind == "tcp" else "tcp")
    j = b.join(room, state=True)
    st = b.recv()
    assert st["type"] == "state" and st["room"] == room and st["last_msg_id"] == j["last_msg_id"] == 5
    assert [m["msg_id"] for m in st["messages"]] == [2, 4, 5]
    assert st["messages"][1] == m4 and st["messages"][2] == m5
    assert st["messages"][0]["state_key"] == "pos/bob"
    # deleting a key: the message is delivered, and the key is gone
    d = pub_and_ack(a, room, state_key="pos/bob", state_delete=True)
    assert b.recv() == d
    c = Client(server, kind)
    c.join(room, state=True)
    assert [m["msg_id"] for m in c.recv()["messages"]] == [4, 5]
    # malformed members
    for body in ({"state_key": ""}, {"state_key": 7}, {"state_key": "k" * 129},
                 {"state_delete": True}, {"state_key": "k", "state_delete": "yes"}):
        a.send({"type": "m", "room": room, **body})
        a.expect_error("bad_field")
    for x in (a, b, c):
        x.close()


def test_state_bounds(start_server):
    srv = start_server("--max-state-keys", "3", "--max-state-bytes", "4096")
    room = rn()
    a = RawWS.connect(srv.port)
    a.join(room)
    for k in ("a", "b", "c"):
        a.send_json({"type": "m", "state_key": k})
        a.recv_json()
    a.send_json({"type": "m", "state_key": "d", "ack": 1})
    err = a.expect_error("state_full")
    assert err["room"] == room and err["ref"] == 1
    a.send_json({"type": "m", "state_key": "a", "v": 2, "ack": 2})   # replacing: fine
    assert a.recv_json()["msg_id"] == 4                               # the refusal took no id
    a.recv_json()
    a.send_json({"type": "m", "state_key": "c", "state_delete": True})
    a.recv_json()
    a.send_json({"type": "m", "state_key": "d"})
    assert a.recv_json()["msg_id"] == 6
    a.send_json({"type": "m", "state_key": "a", "big": "x" * 5000})    # past the bytes
    a.expect_error("state_full")
    assert srv.stats()["errors"]["state_full"] == 2


def test_state_memory_bounds_all_rooms_together(start_server):
    """One client moving through rooms (which outlive it) cannot fill the server's memory with
    state: past --state-memory a new key is refused in any room; deleting frees it."""
    srv = start_server("--state-memory", "20000", "--max-state-bytes", "8192")
    a = RawWS.connect(srv.port)
    refused, rooms = 0, []
    for r in range(10):
        room = rn()
        rooms.append(room)
        a.join(room)
        a.send_json({"type": "m", "room": room, "state_key": "k", "pad": "x" * 4000})
        m = a.recv_json()
        if m["type"] == "error":
            assert m["code"] == "state_full" and "--state-memory" in m["message"], m
            refused += 1
        a.send_json({"type": "leave", "room": room})
        assert a.recv_json()["type"] == "left"
    st = srv.stats()["state"]
    assert refused >= 5 and st["memory"] <= 20000 and st["memory_limit"] == 20000, (refused, st)
    a.join(rooms[0])
    a.send_json({"type": "m", "room": rooms[0], "state_key": "k", "state_delete": True})
    a.recv_json()
    assert srv.stats()["state"]["memory"] < st["memory"]


def test_state_outlives_history_and_restarts(start_server, tmp_path):
    data = str(tmp_path / "data")
    srv = start_server("--data-dir", data, "--history-size", "5")
    room = rn()
    a = RawWS.connect(srv.port)
    a.join(room)
    a.send_json({"type": "m", "state_key": "map", "level": 7})
    a.recv_json()
    for i in range(40):
        a.send_json({"type": "m", "i": i})
        a.recv_json()
    a.send_json({"type": "m", "state_key": "score", "v": 1})
    a.recv_json()
    b = RawWS.connect(srv.port)
    b.join(room, state=True, history=100)
    replay = [b.recv_json()["msg_id"] for _ in range(5)]
    assert replay == [38, 39, 40, 41, 42]                       # the history kept 5
    st = b.recv_json()
    assert [(m["msg_id"], m.get("level")) for m in st["messages"]] == [(1, 7), (42, None)]
    srv.stop()
    srv2 = start_server("--data-dir", data, "--history-size", "5", "--fsync", "always")
    c = RawWS.connect(srv2.port)
    c.join(room, state=True)
    st2 = c.recv_json()
    assert st2["messages"] == st["messages"] and st2["last_msg_id"] == 42
    # a crash (no clean snapshot): the state comes back from the snapshot and the log
    c.send_json({"type": "m", "state_key": "map", "level": 8, "ack": "on-disk"})
    c.recv_json()
    assert c.recv_json()["ref"] == "on-disk"         # under --fsync always: on disk
    crash(srv2)
    srv3 = start_server("--data-dir", data, "--history-size", "5")
    d = RawWS.connect(srv3.port)
    d.join(room, state=True)
    assert [(m["msg_id"], m.get("level")) for m in d.recv_json()["messages"]] == \
        [(42, None), (43, 8)]


# ---- conflation -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_conflation_for_a_stalled_reader(start_server, kind):
    """A member that joined with conflate and stops reading is not cut off for keyed
    traffic that cuts off a member without it (--max-pending), and what it reads accounts
    for every msg_id: delivered, or named by a conflated notice before any later id."""
    srv = start_server("--tcp-port", "0")
    room = rn()
    slow = Client(srv, kind, rcvbuf=4096)
    slow.join(room, conflate=True)
    plain = Client(srv, kind, rcvbuf=4096)      # stalls too, without conflate
    plain.join(room)
    pub = RawWS.connect(srv.port)
    pub.join(room)
    keys = ["pos/a", "pos/b", "pos/c"]
    n = 8000                                    # 8 MB: past the kernel's buffers and 1 MiB
    pad = "p" * 1000
    for i in range(n):
        body = {"type": "pos", "i": i, "pad": pad}
        if i % 100 != 99:
            body["state_key"] = keys[i % 3]
        pub.send_json(body)
        if i % 100 == 0:
            pub.send_json({"type": "sync", "ack": i})
            while pub.recv_json().get("type") != "ack":
                pass
    pub.send_json({"type": "end", "ack": "end"})
    while pub.recv_json().get("type") != "ack":
        pass
    last = n + len(range(0, n, 100)) + 1
    # the plain member was cut off (its queue grew past --max-pending)...
    srv.wait_stats(lambda st: st["disconnects"]["slow_consumer"] >= 1, what="plain cut off")
    # ...the conflating one reads everything, in order
    want, got, notices = 1, {}, 0
    while want <= last:
        m = slow.recv()
        if m["type"] == "conflated":
            assert m["room"] == room and m["msg_ids"][0] == want, (m, want)
            for i in m["msg_ids"]:
                assert i >= want
                got[i] = None
            notices += 1
        else:
            assert m["msg_id"] >= want, (m, want)
            got[m["msg_id"]] = m
        while want in got:
            want += 1
    assert notices > 0 and len(got) == last
    delivered = [m for m in got.values() if m]
    unkeyed = [m for m in delivered if m["type"] == "pos" and "state_key" not in m]
    assert len(unkeyed) == n // 100                 # messages without a key are never dropped
    for k in keys:                                  # each key's latest value arrived
        latest = max(i for i in range(n) if i % 100 != 99 and keys[i % 3] == k)
        assert any(m.get("i") == latest for m in delivered), k
    assert srv.stats()["rooms_features"]["conflated"] == last - len(delivered)
    assert f"roomcast_conflated_total {last - len(delivered)}" in \
        api(srv, "GET", "/metrics")[1].decode()


# ---- presence -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_presence_events_sit_exactly_in_the_stream(server, kind):
    room = rn()
    w = Client(server, kind)
    jw = w.join(room, presence=True)
    assert jw["members"] == [jw["client_id"]]
    quiet = Client(server, "ws")                    # did not ask: sees messages only
    jq = quiet.join(room)
    assert "members" not in jq
    assert w.recv() == {"type": "presence", "room": room, "event": "join",
                        "client_id": jq["client_id"], "after_msg_id": 0}
    m1 = pub_and_ack(quiet, room, n=1)
    assert w.recv()["msg_id"] == m1["msg_id"] == 1
    b = Client(server, "tcp")
    jb = b.join(room, presence=True)
    assert sorted(jb["members"]) == sorted([jw["client_id"], jq["client_id"], jb["client_id"]])
    m2 = pub_and_ack(quiet, room, n=2)
    # after message 1, before message 2
    assert w.recv() == {"type": "presence", "room": room, "event": "join",
                        "client_id": jb["client_id"], "after_msg_id": 1}
    assert w.recv()["msg_id"] == m2["msg_id"] == 2
    assert b.recv()["msg_id"] == 2
    b.send({"type": "leave", "room": room})
    assert b.recv() == {"type": "left", "room": room}
    assert w.recv() == {"type": "presence", "room": room, "event": "leave",
                        "client_id": jb["client_id"], "reason": "left", "after_msg_id": 2}
    reasons = {}
    for how in ("goodbye", "reset"):
        c = Client(server, kind)
        cid = c.join(room)["client_id"]
        assert w.recv()["event"] == "join"
        getattr(c, how)()
        ev = w.recv()
        assert ev["event"] == "leave" and ev["client_id"] == cid, ev
        reasons[how] = ev["reason"]
    assert reasons == {"goodbye": "closed", "reset": "dropped"}
    # kicked through the API
    k = Client(server, kind)
    kid = k.join(room)["client_id"]
    assert w.recv()["event"] == "join"
    assert api(server, "DELETE", f"/api/clients/{kid}", key=KEY)[0] == 200
    assert w.recv() == {"type": "presence", "room": room, "event": "leave", "client_id": kid,
                        "reason": "kicked", "after_msg_id": 2}
    # the quiet member saw messages and nothing else: next for it is its own next message
    quiet.send({"type": "m", "room": room, "ack": "q"})
    assert quiet.recv()["msg_id"] == 3
    assert w.recv()["msg_id"] == 3
    # the HTTP API lists the members
    st, doc = api(server, "GET", room_path(room), key=KEY)
    assert st == 200 and sorted(doc["clients"]) == sorted([jw["client_id"], jq["client_id"]])
    for x in (w, quiet):
        x.close()


def test_presence_batches_in_big_rooms(start_server):
    srv = start_server("--presence-limit", "3")
    room = rn()
    w = RawWS.connect(srv.port)
    first = [RawWS.connect(srv.port) for _ in range(3)]
    ids = [c.join(room)["client_id"] for c in first]
    jw = w.join(room, presence=True)
    assert jw["member_count"] == 4 and "members" not in jw
    more = [RawWS.connect(srv.port) for _ in range(3)]
    more_ids = [c.join(room)["client_id"] for c in more]
    first[0].send_close(1000)
    first[0].expect_close(1000)
    # a member that comes and goes within the second nets out
    blip = RawWS.connect(srv.port)
    blip.join(room)
    blip.reset()
    # batches come once a second, so these changes may span two: applied in order, their
    # net effect is the three newcomers (and the watcher itself) in, the first one out
    joined, left, count = set(), set(), None
    while joined != set(more_ids) | {jw["client_id"]} or left != {ids[0]}:
        ev = w.recv_json(timeout=5)
        assert ev["type"] == "presence" and ev["event"] == "batch", ev
        assert ev["after_msg_id"] == 0 and not set(ev["joined"]) & set(ev["left"]), ev
        for i in ev["left"]:
            if i in joined:
                joined.discard(i)
            else:
                left.add(i)
        joined |= set(ev["joined"])
        count = ev["member_count"]
    assert count == 6
    assert srv.stats()["rooms_features"]["presence_events"] >= 1


# ---- kicks and bans -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_kick_with_ban_sticks_to_the_session(server, kind):
    room = rn()
    a = Client(server, kind)
    ja = a.join(room)
    st, doc = api(server, "DELETE", f"/api/clients/{ja['client_id']}?ban=60", key=KEY)
    assert st == 200 and doc == {"client_id": ja["client_id"], "kicked": True, "banned": True,
                                 "ban_seconds": 60}, doc
    a.expect_close(1008, "kicked")
    a2 = Client(server, kind)
    a2.send({"type": "join", "room": room, "session": ja["session"]})
    err = a2.expect_error("banned")
    assert err["room"] == room
    # a fresh connection without the session is a new player (bans follow users with tokens)
    assert a2.join(room)["client_id"] != ja["client_id"]
    a2.close()
    for q in ("ban=0", "ban=x", "ban=99999999999"):
        assert api(server, "DELETE", f"/api/clients/{ja['client_id']}?{q}", key=KEY)[0] == 400
    assert api(server, "DELETE", "/api/clients/999999999?ban=5", key=KEY)[0] == 404


def test_ban_a_client_that_already_left(server):
    room = rn()
    a = RawWS.connect(server.port)
    ja = a.join(room)
    a.close()
    server.wait_stats(lambda st: st["sessions"]["idle"] >= 1, what="session released")
    st, doc = api(server, "DELETE", f"/api/clients/{ja['client_id']}?ban=30", key=KEY)
    assert st == 200 and doc["kicked"] is False and doc["banned"] is True
    b = RawWS.connect(server.port)
    b.send_json({"type": "join", "room": room, "session": ja["session"]})
    b.expect_error("banned")


# ---- errors tied to the request ---------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_errors_name_room_and_ref(server, kind):
    room = rn()
    a = Client(server, kind)
    a.join(room)
    a.send({"type": "m", "room": "elsewhere", "ack": {"n": 5}})
    err = a.expect_error("not_member")
    assert err["room"] == "elsewhere" and err["ref"] == {"n": 5}
    a.send({"type": "join", "room": room, "presence": "yes"})
    err = a.expect_error("bad_field")
    assert err["room"] == room and "ref" not in err
    # a member the request reads, repeated: refused; one it does not read: the client's
    raw = '{"type":"join","room":"%s","history":1,"history":2}' % room
    if kind == "ws":
        a.c.send_text(raw)
    else:
        a.c.send_line(raw)
    assert a.expect_error("duplicate_key")["message"].startswith('"history"')
    raw = '{"type":"m","room":"%s","history":1,"history":2,"ack":"d"}' % room
    if kind == "ws":
        a.c.send_text(raw)
    else:
        a.c.send_line(raw)
    assert a.recv()["history"] == 2
    a.close()
