"""Join, publish, acks and idempotency keys, binary messages, leave and join errors, on every
transport the client speaks: WebSocket, the TCP port's line mode and its framed mode."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import roomcast

from conftest import client_for, room_info, run, until

KINDS = ["ws", "tcp", "framed"]


@pytest.mark.parametrize("kind", KINDS)
def test_join_publish_ack_and_idempotency(server, kind):
    room_name = f"basics-{kind}"

    async def main():
        async with client_for(server, kind) as a, client_for(server, "ws") as b:
            ra = await a.join(room_name)
            rb = await b.join(room_name)
            assert a.transport_kind == ("tcp-framed" if kind == "framed" else kind)
            assert isinstance(a.client_id, int) and a.client_id != b.client_id
            assert isinstance(a.session, str) and len(a.session) == 32
            assert ra.joined and ra.epoch and ra.last_msg_id == 0

            assert await ra.publish({"type": "chat", "text": "no ack"}) is None
            ack = await ra.publish({"type": "chat", "text": "héllo"}, ack=True,
                                   idempotency_key="k-1")
            assert ack == roomcast.Ack(room=room_name, msg_id=2, duplicate=False)
            again = await ra.publish({"type": "chat", "text": "héllo"}, ack=True,
                                     idempotency_key="k-1")
            assert again == roomcast.Ack(room=room_name, msg_id=2, duplicate=True)
            auto = await ra.publish({"type": "chat", "text": "auto key"}, ack=True,
                                    idempotency_key=True)
            assert auto.msg_id == 3 and not auto.duplicate

            for r in (ra, rb):
                got = [await r.recv(10) for _ in range(3)]
                assert [m["msg_id"] for m in got] == [1, 2, 3]
                assert got[1] == {"type": "chat", "text": "héllo", "room": room_name,
                                  "client_id": a.client_id, "msg_id": 2}
                assert all("ack" not in m and "idempotency_key" not in m for m in got)
                assert r.last_msg_id == 3 and r.gaps == 0 and r.pending() == 0
            assert (await room_info(server, room_name))["last_msg_id"] == 3

    run(main())


@pytest.mark.parametrize("kind", ["ws", "framed"])
def test_binary_messages_reach_every_transport(server, kind):
    room_name = f"binary-{kind}"

    async def main():
        async with client_for(server, kind) as a, client_for(server, "tcp") as line, \
                client_for(server, "ws") as ws:
            ra = await a.join(room_name)
            rl = await line.join(room_name)
            rw = await ws.join(room_name)
            assert a.binary_ok and not line.binary_ok
            await ra.publish(b"\x00\x01\xffbinary")
            await ra.publish({"type": "text"})
            for r in (ra, rl, rw):
                m = await r.recv(10)
                assert m == roomcast.BinaryMessage(room_name, 1, a.client_id, b"\x00\x01\xffbinary")
                assert (await r.recv(10))["msg_id"] == 2
            with pytest.raises(roomcast.RoomcastError) as ei:
                await rl.publish(b"line mode cannot")
            assert ei.value.code == "unsupported"
            with pytest.raises(ValueError):
                await ra.publish(b"x", ack=True)

    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_callbacks_and_several_rooms(server, kind):
    async def main():
        seen: list[tuple[str, int]] = []
        joined: list[str] = []
        async_seen: list[int] = []

        async def async_cb(msg, room):
            await asyncio.sleep(0)
            async_seen.append(msg["msg_id"])

        async with client_for(server, kind) as a, client_for(server, kind) as b:
            r1 = await a.join(f"cb1-{kind}", buffer=False,
                              on_message=lambda m, r: seen.append((r.name, m["msg_id"])),
                              on_joined=lambda j, r: joined.append(j["room"]))
            r2 = await a.join(f"cb2-{kind}", buffer=False, on_message=async_cb)
            assert await a.join(f"cb1-{kind}") is r1   # joining again: the same room
            b1 = await b.join(f"cb1-{kind}")
            b2 = await b.join(f"cb2-{kind}")
            for i in range(5):
                await b1.publish({"type": "n", "i": i})
                await b2.publish({"type": "n", "i": i})
            await until(lambda: len(seen) == 5 and len(async_seen) == 5, what="callbacks")
            assert seen == [(f"cb1-{kind}", i) for i in range(1, 6)]
            assert async_seen == [1, 2, 3, 4, 5] and joined == [f"cb1-{kind}"]
            with pytest.raises(RuntimeError):
                await r2.recv(0.1)
            assert b.client_id == b1.client_id == b2.client_id

    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_leave_ends_the_room(server, kind):
    async def main():
        left: list[Any] = []
        async with client_for(server, kind) as a, client_for(server, "ws") as b:
            ra = await a.join(f"leave-{kind}", on_left=lambda m, r: left.append(m))
            rb = await b.join(f"leave-{kind}")
            await rb.publish({"type": "before"}, ack=True)
            assert (await ra.recv(10))["type"] == "before"
            await ra.leave()
            assert ra.closed and f"leave-{kind}" not in a.rooms
            assert left == [{"type": "left", "room": f"leave-{kind}"}]
            await rb.publish({"type": "after"}, ack=True)
            got = [m async for m in ra]                 # the iterator ends
            assert got == []
            with pytest.raises(roomcast.ClientClosed):
                await ra.publish({"type": "x"})
            info = await room_info(server, f"leave-{kind}")
            assert info["clients"] == [b.client_id]
            # the same name can be joined again
            ra2 = await a.join(f"leave-{kind}")
            assert ra2 is not ra and ra2.joined

    run(main())


def test_join_errors_raise(start_server):
    srv = start_server("--max-rooms-per-client", "1")

    async def main():
        async with client_for(srv, "ws") as a:
            await a.join("one")
            with pytest.raises(roomcast.RoomcastError) as ei:
                await a.join("two")
            assert ei.value.code == "too_many_rooms"
            assert "two" not in a.rooms and list(a.rooms) == ["one"]
            with pytest.raises(ValueError):
                await a.join("")
            with pytest.raises(ValueError):
                await a.join("x" * 256)

    run(main())


def test_errors_without_a_room_handler_reach_the_client(server):
    async def main():
        errors: list[Any] = []
        async with client_for(server, "ws", on_error=lambda e, r: errors.append(e)) as a:
            r = await a.join("errs")
            # a key longer than the server allows: refused (bad_field), the room goes on
            await r.publish({"type": "x"}, idempotency_key="k" * 300)
            await until(lambda: errors, what="the error")
            assert errors[0].code == "bad_field"
            ack = await r.publish({"type": "fine"}, ack=True)
            assert ack.msg_id == 1

    run(main())


@pytest.mark.parametrize("kind", ["tcp", "framed"])
def test_tcp_keepalive_is_answered(start_server, kind):
    srv = start_server("--ping-interval", "1", "--ping-timeout", "1")

    async def main():
        async with client_for(srv, kind) as a, client_for(srv, "ws") as b:
            ra = await a.join("idle")
            rb = await b.join("idle")
            await asyncio.sleep(3.5)                   # well past interval + timeout
            assert a.reconnects == 0 and a.status == "open"
            await rb.publish({"type": "still"})
            assert (await ra.recv(10))["type"] == "still"
            assert a.reconnects == 0

    run(main())


def test_connect_failure_without_reconnect_raises(start_server):
    srv = start_server()
    port = srv.port
    srv.stop()

    async def main():
        c = roomcast.Client(f"ws://127.0.0.1:{port}/", reconnect=False)
        with pytest.raises(roomcast.ClientClosed):
            await c.connect()
        assert c.status == "closed"
        with pytest.raises(roomcast.ClientClosed):
            await c.join("x")

    run(main())
