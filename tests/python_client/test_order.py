"""The client's bookkeeping without a server: the server's messages are fed to the client's
dispatcher as they would arrive, and what the application sees is checked (order check, gaps,
conflation, epochs, history joins, state, presence, error routing, the binary envelope)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
import roomcast
from roomcast._client import Room

from conftest import run

EPOCH = "9f86d081884c7d65"
SESSION = "3f0c9a51d2e84b7a90c1f6e2a4b8d057"


class FakeTransport:
    """Stands for a connection: records what the client sends."""

    binary_ok = True

    def __init__(self, kind: str = "ws") -> None:
        self.kind = kind
        self.sent: list[str | bytes] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def send_binary(self, data: bytes) -> None:
        self.sent.append(data)

    async def recv(self) -> str | bytes:  # pragma: no cover - never read
        await asyncio.Event().wait()
        return ""

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


class Harness:
    def __init__(self, kind: str = "ws") -> None:
        self.client = roomcast.Client("ws://127.0.0.1:9/")
        self.client._transport = FakeTransport(kind)  # type: ignore[assignment]
        self.client._send_lock = asyncio.Lock()
        self.client._gen = 1
        self.gaps: list[roomcast.Gap] = []
        self.msgs: list[Any] = []
        self.events: list[tuple[str, Any]] = []
        self.errors: list[roomcast.RoomcastError] = []

    def room(self, name: str = "lobby", **kw: Any) -> Room:
        r = Room(self.client, name, **kw)
        r.on_gap = lambda g, room: self.gaps.append(g)
        r.on_message = lambda m, room: self.msgs.append(m)
        r.on_state = lambda m, room: self.events.append(("state", m))
        r.on_presence = lambda m, room: self.events.append(("presence", m))
        r.on_conflated = lambda m, room: self.events.append(("conflated", m))
        r.on_error = lambda e, room: self.errors.append(e)
        self.client.rooms[name] = r
        return r

    def feed(self, obj: Any) -> None:
        self.client._dispatch(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    def joined(self, room: str = "lobby", last: int = 0, epoch: str = EPOCH, **kw: Any) -> None:
        self.feed({"type": "joined", "room": room, "client_id": 7, "last_msg_id": last,
                   "epoch": epoch, "session": SESSION, **kw})

    def msg(self, msg_id: int, room: str = "lobby", **kw: Any) -> None:
        self.feed({"type": "chat", **kw, "room": room, "client_id": 3, "msg_id": msg_id})

    def ids(self) -> list[int]:
        return [m["msg_id"] if isinstance(m, dict) else m.msg_id for m in self.msgs]

    def lost(self) -> list[tuple[int, int | None, str]]:
        return [(g.first, g.last, g.reason) for g in self.gaps]


def harness_run(fn: Any) -> Any:
    async def main() -> Any:
        return fn()
    return run(main())


def test_in_order_messages_are_delivered_and_duplicates_dropped():
    def t():
        h = Harness()
        r = h.room()
        h.joined(last=41)
        assert h.client.client_id == 7 and h.client.session == SESSION
        assert r.joined and r.last_msg_id == 41 and r.epoch == EPOCH
        for i in (42, 43, 43, 41, 44, 10):
            h.msg(i)
        assert h.ids() == [42, 43, 44]
        assert r.duplicates == 3 and r.gaps == 0 and r.last_msg_id == 44
        assert r.pending() == 3
    harness_run(t)


def test_a_higher_id_is_a_gap():
    def t():
        h = Harness()
        r = h.room()
        h.joined(last=0)
        h.msg(1)
        h.msg(5)
        h.msg(6)
        assert h.ids() == [1, 5, 6]
        assert h.lost() == [(2, 4, "gap")] and h.gaps[0].count == 3 and r.gaps == 1
    harness_run(t)


def test_conflated_ids_are_not_gaps():
    def t():
        h = Harness()
        r = h.room(conflate=True)
        h.joined(last=10)
        h.msg(11)
        h.feed({"type": "conflated", "room": "lobby", "state_key": "pos/ann", "msg_ids": [12, 14]})
        h.msg(15)   # 13 was neither delivered nor announced: a gap of one
        h.feed({"type": "conflated", "room": "lobby", "state_key": "pos/bob",
                "msg_ids": [16, 17]})
        h.msg(18)   # everything in between announced: no gap
        assert h.ids() == [11, 15, 18]
        assert h.lost() == [(13, 13, "gap")]
        assert r.conflated == 4 and not r._skip
        assert [e[0] for e in h.events] == ["conflated", "conflated"]
    harness_run(t)


def test_rejoin_recovered_replays_without_gap_and_drops_the_overlap():
    def t():
        h = Harness()
        r = h.room()
        h.joined(last=5)
        h.msg(6)
        r.joined = False                           # the connection was lost
        h.client._gen = 2
        h.joined(last=9, recovered=True)
        for i in (6, 7, 8, 9, 10):
            h.msg(i)
        assert h.ids() == [6, 7, 8, 9, 10] and not h.gaps and r.recovered is True
    harness_run(t)


def test_rejoin_not_recovered_reports_the_missed_ids():
    def t():
        h = Harness()
        r = h.room()
        h.joined(last=5)
        h.msg(6)
        r.joined = False
        h.joined(last=20, recovered=False)
        h.msg(21)
        assert h.lost() == [(7, 20, "not_recovered")] and h.ids() == [6, 21]
        assert r.recovered is False
    harness_run(t)


def test_rejoin_not_recovered_with_history_reports_only_what_the_replay_misses():
    def t():
        h = Harness()
        r = h.room(history=5)
        h.joined(last=5, replay_from=1)            # first join: the room's whole past
        for i in range(1, 7):
            h.msg(i)
        assert h.ids() == [1, 2, 3, 4, 5, 6] and not h.gaps
        r.joined = False
        h.joined(last=20, recovered=False, replay_from=16)
        for i in range(16, 22):
            h.msg(i)
        assert h.lost() == [(7, 15, "not_recovered")]
        assert h.ids() == [1, 2, 3, 4, 5, 6, 16, 17, 18, 19, 20, 21]
        # a history replay overlapping what was seen: no gap, the overlap dropped
        r.joined = False
        h.joined(last=23, recovered=False, replay_from=19)
        for i in range(19, 24):
            h.msg(i)
        assert len(h.gaps) == 1 and h.ids()[-2:] == [22, 23] and r.duplicates == 3
    harness_run(t)


def test_history_join_starts_counting_at_replay_from():
    def t():
        h = Harness()
        r = h.room(history=3)
        h.joined(last=10, replay_from=8)
        for i in (8, 9, 10, 11):
            h.msg(i)
        assert h.ids() == [8, 9, 10, 11] and not h.gaps and r.last_msg_id == 11
    harness_run(t)


def test_a_new_epoch_restarts_counting():
    def t():
        h = Harness()
        r = h.room()
        h.joined(last=40)
        h.msg(41)
        r.joined = False
        h.joined(last=2, epoch="0123456789abcdef", recovered=False)
        h.msg(3)
        h.msg(4)
        assert h.lost() == [(42, None, "new_epoch")] and h.gaps[0].count is None
        assert h.ids() == [41, 3, 4] and r.epoch == "0123456789abcdef"
    harness_run(t)


def test_rejoin_sends_since_epoch_and_the_session_on_the_first_join_only():
    async def t():
        h = Harness()
        a = h.room("a", history=5, state=True, presence=True, conflate=True)
        b = h.room("b")
        h.joined("a", last=3)
        h.joined("b", last=8)
        a.joined = b.joined = False
        h.client._gen = 2
        await h.client._send_join(a)
        await h.client._send_join(b)
        await h.client._send_join(b)               # once per connection
        sent = [json.loads(x) for x in h.client._transport.sent]  # type: ignore[union-attr]
        assert sent == [
            {"type": "join", "room": "a", "session": SESSION, "since": 3, "epoch": EPOCH,
             "history": 5, "state": True, "presence": True, "conflate": True},
            {"type": "join", "room": "b", "since": 8, "epoch": EPOCH},
        ]
    run(t())


def test_state_snapshot_then_keyed_messages():
    def t():
        h = Harness()
        r = h.room(state=True)
        h.joined(last=41)
        snap = {"type": "state", "room": "lobby", "last_msg_id": 41, "messages": [
            {"type": "pos", "x": 1, "state_key": "pos/ann", "room": "lobby", "client_id": 3,
             "msg_id": 17},
            {"type": "pos", "x": 2, "state_key": "pos/bob", "room": "lobby", "client_id": 4,
             "msg_id": 40}]}
        h.feed(snap)
        assert set(r.state or {}) == {"pos/ann", "pos/bob"} and h.events[0][0] == "state"
        h.msg(42, state_key="pos/ann", x=5)
        h.msg(43, state_key="pos/bob", state_delete=True)
        h.msg(44, text="unkeyed")
        assert r.state is not None and r.state["pos/ann"]["x"] == 5 and "pos/bob" not in r.state
        # the iterator sees the snapshot first, then the messages
        items = [r._inbox.get_nowait() for _ in range(r.pending())]  # type: ignore[union-attr]
        assert items[0]["type"] == "state" and [m["msg_id"] for m in items[1:]] == [42, 43, 44]
    harness_run(t)


def test_presence_members_follow_events():
    def t():
        h = Harness()
        r = h.room(presence=True)
        h.joined(last=0, members=[3, 7])
        assert r.members == {3, 7} and r.member_count == 2
        h.feed({"type": "presence", "room": "lobby", "event": "join", "client_id": 12,
                "after_msg_id": 0})
        h.feed({"type": "presence", "room": "lobby", "event": "leave", "client_id": 3,
                "reason": "closed", "after_msg_id": 0})
        assert r.members == {7, 12} and r.member_count == 2
        h.feed({"type": "presence", "room": "lobby", "event": "batch", "joined": [20, 21],
                "left": [12], "member_count": 3, "after_msg_id": 0})
        assert r.members == {7, 20, 21} and r.member_count == 3
        assert [e[1]["event"] for e in h.events] == ["sync", "join", "leave", "batch"]
        assert h.events[0][1]["members"] == [3, 7]
        # a big room: a count, no list
        r2 = h.room("big", presence=True)
        h.joined("big", member_count=500)
        assert r2.members is None and r2.member_count == 500
        assert h.events[-1][1] == {"type": "presence", "room": "big", "event": "sync",
                                   "members": None, "member_count": 500}
        h.feed({"type": "presence", "room": "big", "event": "batch", "joined": [1], "left": [],
                "member_count": 501, "after_msg_id": 0})
        assert r2.member_count == 501
    harness_run(t)


def test_errors_go_to_the_publish_the_room_or_the_client():
    async def t():
        h = Harness()
        client_errors: list[Any] = []
        h.client.on_error = lambda e, room: client_errors.append((e.code, room))
        r = h.room()
        h.joined(last=0)
        task = asyncio.ensure_future(r.publish({"type": "pos", "state_key": "k"}, ack=True))
        await asyncio.sleep(0)
        sent = json.loads(h.client._transport.sent[-1])  # type: ignore[union-attr]
        assert sent["room"] == "lobby" and isinstance(sent["ack"], int)
        h.feed({"type": "error", "code": "state_full", "message": "full", "room": "lobby",
                "ref": sent["ack"]})
        with pytest.raises(roomcast.RoomcastError) as ei:
            await task
        assert ei.value.code == "state_full" and ei.value.room == "lobby"
        assert not h.errors                        # the publish got it, not the room
        h.feed({"type": "error", "code": "state_full", "message": "full", "room": "lobby"})
        assert [e.code for e in h.errors] == ["state_full"]
        h.feed({"type": "error", "code": "bad_json", "message": "no"})
        assert client_errors == [("bad_json", None)]
        # an ack resolves its publish
        task = asyncio.ensure_future(r.publish({"type": "x"}, ack=True, idempotency_key="k1"))
        await asyncio.sleep(0)
        sent = json.loads(h.client._transport.sent[-1])  # type: ignore[union-attr]
        assert sent["idempotency_key"] == "k1"
        h.feed({"type": "ack", "ref": sent["ack"], "room": "lobby", "msg_id": 9,
                "duplicate": True})
        assert await task == roomcast.Ack(room="lobby", msg_id=9, duplicate=True)
    run(t())


def test_a_join_error_without_room_answers_the_oldest_waiting_join():
    async def t():
        h = Harness()
        a = h.room("a")
        b = h.room("b")
        for r in (a, b):
            r._join_future = asyncio.get_running_loop().create_future()
            await h.client._send_join(r)
        h.joined("a")
        h.feed({"type": "error", "code": "too_many_rooms", "message": "already in 1 rooms"})
        assert a._join_future.done() and a._join_future.exception() is None
        err = b._join_future.exception()
        assert isinstance(err, roomcast.RoomcastError) and err.code == "too_many_rooms"
        assert "b" not in h.client.rooms and b.closed and "a" in h.client.rooms
    run(t())


def test_binary_messages_and_the_line_modes_base64_form():
    def t():
        env = roomcast.encode_envelope("lobby", b"\x00\x01")
        assert env == b"\x05lobby\x00\x01"
        wire = (42).to_bytes(8, "little") + (7).to_bytes(8, "little") + b"\x05lobby\xff"
        assert roomcast.decode_envelope(wire) == roomcast.BinaryMessage("lobby", 42, 7, b"\xff")
        with pytest.raises(ValueError):
            roomcast.decode_envelope(wire[:18])
        h = Harness(kind="tcp")
        h.room()
        h.joined(last=41)
        h.feed(wire)
        h.feed({"binary": base64.b64encode(b"abc").decode(), "room": "lobby", "client_id": 5,
                "msg_id": 43})
        assert h.msgs == [roomcast.BinaryMessage("lobby", 42, 7, b"\xff"),
                          roomcast.BinaryMessage("lobby", 43, 5, b"abc")]
    harness_run(t)


def test_user_types_that_look_like_notices_are_messages():
    """The server refuses these types from clients today, but a message (it has a msg_id) is
    never taken for a notice."""
    def t():
        h = Harness()
        r = h.room(presence=True, state=True)
        h.joined(last=0, members=[7])
        h.feed({"type": "presence", "event": "join", "client_id": 99, "room": "lobby",
                "msg_id": 1})
        h.feed({"type": "state", "room": "lobby", "client_id": 3, "msg_id": 2, "messages": []})
        assert h.ids() == [1, 2] and r.members == {7}
        assert [e[1]["event"] for e in h.events] == ["sync"]
    harness_run(t)


def test_a_write_that_fails_keeps_the_queue_in_order():
    """A publish whose write fails (the connection died before the reader noticed) waits at
    the head of its room's queue; the flush stops instead of spinning."""
    async def t():
        h = Harness()
        r = h.room()
        h.joined(last=0)
        r.joined = False                               # lost: publishes queue up
        for i in range(3):
            await r.publish({"type": "q", "i": i})
        failing = FakeTransport()

        async def broken(text: str) -> None:
            raise roomcast.TransportClosed(1006, "gone")
        failing.send_text = broken  # type: ignore[method-assign]
        h.client._transport = failing  # type: ignore[assignment]
        r.joined = True
        await asyncio.wait_for(h.client._flush(r), 1)
        assert [json.loads(o.data)["i"] for o in r._queue] == [0, 1, 2]
        assert not any(o.sent for o in r._queue)
        h.client._transport = FakeTransport()  # type: ignore[assignment]
        await h.client._flush(r)
        sent = [json.loads(x)["i"] for x in h.client._transport.sent]  # type: ignore[union-attr]
        assert sent == [0, 1, 2] and not r._queue
    run(t())


def test_urls_and_sessions_are_checked_up_front():
    for bad in ("http://127.0.0.1:1/", "127.0.0.1:8080", "udp://x:1"):
        with pytest.raises(ValueError):
            roomcast.Client(bad)
    with pytest.raises(ValueError):
        roomcast.Client("ws://127.0.0.1:1/", session="abc")
    assert roomcast.Client("tcp://127.0.0.1:1").binary_ok is False
    assert roomcast.Client("tcp://127.0.0.1:1", framed=True).binary_ok is True
    assert roomcast.Client("ws://127.0.0.1:1/").binary_ok is True


def test_a_rejoin_resyncs_the_members():
    def t():
        h = Harness()
        r = h.room(presence=True)
        h.joined(last=0, members=[3, 7, 9])
        r.joined = False                               # away while 9 left and 12 came
        h.joined(last=0, members=[3, 7, 12], recovered=True)
        syncs = [e[1] for e in h.events if e[1]["event"] == "sync"]
        assert [s["members"] for s in syncs] == [[3, 7, 9], [3, 7, 12]]
        assert r.members == {3, 7, 12}
    harness_run(t)


def test_no_snapshot_after_a_recovered_rejoin():
    """The server sends joined, the replay, then the snapshot: after a recovered rejoin the
    replay brought everything and the snapshot is not delivered again."""
    def t():
        h = Harness()
        r = h.room(state=True)
        h.joined(last=1)
        h.feed({"type": "state", "room": "lobby", "last_msg_id": 1, "messages": [
            {"type": "pos", "x": 1, "state_key": "k", "room": "lobby", "client_id": 3,
             "msg_id": 1}]})
        r.joined = False
        h.joined(last=2, recovered=True)
        h.msg(2, state_key="k", x=2)
        h.feed({"type": "state", "room": "lobby", "last_msg_id": 2, "messages": [
            {"type": "chat", "x": 2, "state_key": "k", "room": "lobby", "client_id": 3,
             "msg_id": 2}]})
        assert [e[0] for e in h.events] == ["state"] and r.state["k"]["x"] == 2  # type: ignore
        # not recovered: the snapshot is the resync, delivered
        r.joined = False
        h.joined(last=9, recovered=False)
        h.feed({"type": "state", "room": "lobby", "last_msg_id": 9, "messages": [
            {"type": "pos", "x": 9, "state_key": "k", "room": "lobby", "client_id": 3,
             "msg_id": 8}]})
        assert [e[0] for e in h.events] == ["state", "state"]
        assert r.state is not None and r.state["k"]["x"] == 9
        items = [r._inbox.get_nowait() for _ in range(r.pending())]  # type: ignore[union-attr]
        assert [m["type"] for m in items] == ["state", "chat", "state"]
    harness_run(t)
