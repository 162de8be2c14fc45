"""Issue 12's join options through the client: history joins ("late joiners"), room state,
presence, conflation, and errors routed to the publish or the room they concern."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import roomcast

from conftest import Proxy, client_for, run, server_port, until

KINDS = ["ws", "tcp"]


# -- history joins -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_a_late_joiner_gets_the_recent_past(server, kind):
    room_name = f"history-{kind}"

    async def main():
        async with client_for(server, "ws") as b, client_for(server, kind) as a:
            rb = await b.join(room_name)
            for i in range(10):
                await rb.publish({"type": "n", "i": i}, ack=True)
            joined: list[dict[str, Any]] = []
            gaps: list[Any] = []
            ra = await a.join(room_name, history=4, on_joined=lambda j, r: joined.append(j),
                              on_gap=lambda g, r: gaps.append(g))
            assert joined[0]["last_msg_id"] == 10 and joined[0]["replay_from"] == 7
            await rb.publish({"type": "n", "i": 10}, ack=True)
            got = [await ra.recv(10) for _ in range(5)]
            assert [m["msg_id"] for m in got] == [7, 8, 9, 10, 11]
            assert [m["i"] for m in got] == [6, 7, 8, 9, 10]
            assert not gaps and ra.duplicates == 0
            # more than the room has: all of it
            async with client_for(server, kind) as c:
                rc = await c.join(room_name, history=1000)
                got = [await rc.recv(10) for _ in range(11)]
                assert [m["msg_id"] for m in got] == list(range(1, 12))
            # nothing to replay: replay_from is last_msg_id + 1
            async with client_for(server, kind) as d:
                seen: list[dict[str, Any]] = []
                await d.join(f"{room_name}-empty", history=5,
                             on_joined=lambda j, r: seen.append(j))
                assert seen[0]["replay_from"] == seen[0]["last_msg_id"] + 1 == 1

    run(main())


def test_history_narrows_the_gap_of_a_failed_recovery(start_server):
    srv = start_server("--history-size", "5")

    async def main():
        async with Proxy(srv.port) as proxy, \
                client_for(srv, "ws", port=proxy.port) as a, client_for(srv, "ws") as b:
            gaps: list[roomcast.Gap] = []
            ra = await a.join("narrow", history=5, on_gap=lambda g, r: gaps.append(g))
            rb = await b.join("narrow")
            await rb.publish({"type": "n"}, ack=True)
            assert (await ra.recv(10))["msg_id"] == 1
            proxy.block()
            proxy.cut()
            await until(lambda: not ra.joined, what="the loss to be seen")
            for _ in range(12):                        # 2..13; the history keeps 9..13
                await rb.publish({"type": "n"}, ack=True)
            proxy.unblock()
            await until(lambda: ra.joined, what="the rejoin")
            got = [await ra.recv(10) for _ in range(5)]
            assert [m["msg_id"] for m in got] == [9, 10, 11, 12, 13]
            assert ra.recovered is False
            assert gaps == [roomcast.Gap("narrow", 2, 8, "not_recovered")]

    run(main())


# -- room state ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_a_state_join_gets_the_latest_message_of_each_key_first(server, kind):
    room_name = f"state-{kind}"

    async def main():
        async with client_for(server, "ws") as b, client_for(server, kind) as a:
            rb = await b.join(room_name)
            await rb.publish({"type": "pos", "who": "ann", "x": 1, "state_key": "pos/ann"})
            await rb.publish({"type": "pos", "who": "bob", "x": 1, "state_key": "pos/bob"})
            await rb.publish({"type": "chat", "text": "unkeyed"})
            await rb.publish({"type": "pos", "who": "ann", "x": 2, "state_key": "pos/ann"})
            await rb.publish({"type": "gone", "state_key": "pos/bob", "state_delete": True},
                             ack=True)
            order: list[str] = []
            ra = await a.join(room_name, state=True,
                              on_state=lambda s, r: order.append("state"),
                              on_message=lambda m, r: order.append(m["type"]))
            snap = await ra.recv(10)
            assert snap["type"] == "state" and snap["room"] == room_name
            assert snap["last_msg_id"] == 5
            assert [(m["msg_id"], m["x"]) for m in snap["messages"]] == [(4, 2)]
            assert ra.state is not None and set(ra.state) == {"pos/ann"}
            await rb.publish({"type": "pos", "who": "cid", "x": 7, "state_key": "pos/cid"})
            await rb.publish({"type": "pos", "who": "ann", "x": 3, "state_key": "pos/ann"},
                             ack=True)
            got = [await ra.recv(10) for _ in range(2)]
            assert [m["msg_id"] for m in got] == [6, 7]
            assert order == ["state", "pos", "pos"]
            assert {k: v["x"] for k, v in ra.state.items()} == {"pos/ann": 3, "pos/cid": 7}

    run(main())


def test_state_and_history_together(server):
    async def main():
        async with client_for(server, "ws") as b, client_for(server, "ws") as a:
            rb = await b.join("state-history")
            for i in range(6):
                await rb.publish({"type": "pos", "i": i, "state_key": f"k{i % 2}"}, ack=True)
            ra = await a.join("state-history", state=True, history=3)
            items = [await ra.recv(10) for _ in range(4)]
            snaps = [m for m in items if m.get("type") == "state"]
            msgs = [m["msg_id"] for m in items if m.get("type") != "state"]
            assert len(snaps) == 1 and msgs == [4, 5, 6] and ra.gaps == 0
            assert {k: v["i"] for k, v in (ra.state or {}).items()} == {"k0": 4, "k1": 5}

    run(main())


# -- presence ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_presence_keeps_the_members(server, kind):
    room_name = f"presence-{kind}"

    async def main():
        events: list[dict[str, Any]] = []
        syncs: list[dict[str, Any]] = []
        quiet: list[Any] = []

        def on_presence(e: dict[str, Any], r: Any) -> None:
            (syncs if e["event"] == "sync" else events).append(e)

        async with client_for(server, kind) as a, client_for(server, "ws") as bystander:
            ra = await a.join(room_name, presence=True, on_presence=on_presence)
            assert ra.members == {a.client_id} and ra.member_count == 1
            assert syncs == [{"type": "presence", "room": room_name, "event": "sync",
                              "members": [a.client_id], "member_count": 1}]
            rq = await bystander.join(room_name, on_presence=lambda e, r: quiet.append(e))
            await until(lambda: len(events) == 1, what="the bystander's join")
            async with client_for(server, "ws") as b:
                rb = await b.join(room_name)
                await until(lambda: len(events) == 2, what="b's join")
                assert ra.members == {a.client_id, bystander.client_id, b.client_id}
                await rb.publish({"type": "hello"}, ack=True)
                await rb.leave()
                await until(lambda: len(events) == 3, what="b's leave")
            async with client_for(server, "ws") as c:
                await c.join(room_name)
                await until(lambda: len(events) == 4, what="c's join")
                c_id = c.client_id
            await until(lambda: len(events) == 5, what="c's close")
            assert [(e["event"], e["client_id"], e.get("reason")) for e in events] == [
                ("join", bystander.client_id, None), ("join", b.client_id, None),
                ("leave", b.client_id, "left"), ("join", c_id, None),
                ("leave", c_id, "closed")]
            assert [e["after_msg_id"] for e in events] == [0, 0, 1, 1, 1]
            assert ra.members == {a.client_id, bystander.client_id} and ra.member_count == 2
            assert quiet == [] and rq.members is None
            # a member the server loses is "dropped"
            async with Proxy(server_port(server, "ws")) as proxy:
                d = client_for(server, "ws", port=proxy.port, reconnect=False)
                await d.join(room_name)
                await until(lambda: len(events) == 6, what="d's join")
                proxy.cut()
                await until(lambda: len(events) == 7, what="d's drop")
                assert (events[-1]["event"], events[-1]["reason"]) == ("leave", "dropped")
                await d.close()

    run(main())


def test_presence_above_the_limit_counts(start_server):
    srv = start_server("--presence-limit", "2")

    async def main():
        async with client_for(srv, "ws") as a, client_for(srv, "ws") as b, \
                client_for(srv, "ws") as c:
            batches: list[dict[str, Any]] = []
            ra = await a.join("crowd", presence=True,
                              on_presence=lambda e, r: batches.append(e))
            await b.join("crowd")
            await c.join("crowd")
            await until(lambda: ra.member_count == 3, timeout=5, what="3 members")
            async with client_for(srv, "ws") as d:
                rd = await d.join("crowd", presence=True)
                assert rd.members is None and rd.member_count == 4
                async with client_for(srv, "ws") as e:
                    await e.join("crowd")
                    await until(lambda: rd.member_count == 5, timeout=5, what="a batch")
            await until(lambda: ra.member_count == 3, timeout=5, what="the leaves")
            assert any(ev["event"] == "batch" for ev in batches)

    run(main())


# -- conflation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_conflation_drops_superseded_keyed_messages_without_gaps(server, kind):
    """A member that stops reading (the proxy stops reading for it) while 6 MB of keyed
    messages go by: with conflate it keeps only the latest of each key queued, is told which
    ids it will not see, and is never cut as a slow consumer."""
    room_name = f"conflate-{kind}"

    async def main():
        notices: list[dict[str, Any]] = []
        gaps: list[Any] = []
        async with Proxy(server_port(server, kind)) as proxy, \
                client_for(server, kind, port=proxy.port) as a, \
                client_for(server, "ws") as b:
            ra = await a.join(room_name, conflate=True, buffer=False,
                              on_conflated=lambda n, r: notices.append(n),
                              on_gap=lambda g, r: gaps.append(g))
            rb = await b.join(room_name, buffer=False)
            proxy.pause()
            pad = "x" * 1000
            n = 6000
            for i in range(n):
                await rb.publish({"type": "pos", "i": i, "pad": pad, "state_key": f"k{i % 4}"})
            end = await rb.publish({"type": "end"}, ack=True)
            proxy.resume()
            await until(lambda: ra.last_msg_id == end.msg_id, timeout=30, what="the end")
            assert a.reconnects == 0 and not gaps and ra.gaps == 0
            assert notices and ra.conflated > 0
            assert all(nt["room"] == room_name and nt["msg_ids"] for nt in notices)
            assert ra.conflated == sum(len(nt["msg_ids"]) for nt in notices)

    run(main())


# -- errors routed to the publish or the room -----------------------------------------------------

def test_a_refused_publish_fails_with_the_servers_error(start_server):
    srv = start_server("--max-state-keys", "1")

    async def main():
        room_errors: list[roomcast.RoomcastError] = []
        async with client_for(srv, "ws") as a:
            ra = await a.join("full", on_error=lambda e, r: room_errors.append(e))
            ok = await ra.publish({"type": "s", "state_key": "one"}, ack=True)
            assert ok.msg_id == 1
            with pytest.raises(roomcast.RoomcastError) as ei:
                await asyncio.wait_for(
                    ra.publish({"type": "s", "state_key": "two"}, ack=True), 10)
            assert ei.value.code == "state_full" and ei.value.room == "full"
            assert room_errors == []                   # the publish got it
            # replacing a key is always possible
            assert (await ra.publish({"type": "s", "state_key": "one"}, ack=True)).msg_id == 2

    run(main())


def test_an_error_naming_a_room_goes_to_that_room(start_server):
    srv = start_server("--max-state-keys", "1")

    async def main():
        room_errors: list[roomcast.RoomcastError] = []
        client_errors: list[roomcast.RoomcastError] = []
        async with client_for(srv, "ws", on_error=lambda e, r: client_errors.append(e)) as a:
            quiet = await a.join("quiet")
            full = await a.join("full2", on_error=lambda e, r: room_errors.append(e))
            await full.publish({"type": "s", "state_key": "one"}, ack=True)
            await full.publish({"type": "s", "state_key": "two"})     # no ack: to the room
            await until(lambda: room_errors or client_errors, what="the error")
            assert [e.code for e in room_errors] == ["state_full"] and client_errors == []
            assert room_errors[0].room == "full2"
            assert (await quiet.publish({"type": "x"}, ack=True)).msg_id == 1

    run(main())
