"""Sessions (docs/protocol.md, "sessions"), kicks and bans ("kicks and bans"), and rooms
closed by the server: the client keeps its identity across reconnects, and stops for good
when the server ends it on purpose."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import roomcast

from conftest import Proxy, api, client_for, run, server_port, until

KINDS = ["ws", "tcp", "framed"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_session_keeps_the_client_id_across_a_reconnect(server, kind):
    async def main():
        async with Proxy(server_port(server, kind)) as proxy, \
                client_for(server, kind, port=proxy.port) as a:
            joined: list[dict[str, Any]] = []
            ra = await a.join(f"ident-{kind}", on_joined=lambda j, r: joined.append(j))
            cid, session = a.client_id, a.session
            proxy.cut()
            await until(lambda: len(joined) == 2, what="the rejoin")
            assert a.reconnects == 1 and ra.joined
            assert joined[1]["session"] == session and a.session == session
            assert joined[1]["client_id"] == cid and a.client_id == cid

    run(main())


def test_the_session_goes_with_the_first_join_of_a_connection_only(server):
    """A connection that joined a room already keeps its identity: a session in its later
    joins is refused (bad_field). Rejoining several rooms must not trip on that."""
    async def main():
        errors: list[Any] = []
        async with Proxy(server.port) as proxy, \
                client_for(server, "ws", port=proxy.port,
                           on_error=lambda e, r: errors.append(e)) as a, \
                client_for(server, "ws") as b:
            rooms = [await a.join(f"multi-{i}", on_error=lambda e, r: errors.append(e))
                     for i in range(3)]
            proxy.cut()
            await until(lambda: a.reconnects == 1 and all(r.joined for r in rooms),
                        what="every room rejoined")
            for i, r in enumerate(rooms):
                other = await b.join(f"multi-{i}")
                await other.publish({"type": "n"}, ack=True)
                assert (await r.recv(10))["msg_id"] == 1
            assert errors == []

    run(main())


def test_a_new_client_presenting_a_session_keeps_its_keys(server):
    """The session scopes idempotency keys: a process that kept its session (Client(session=))
    has a resend with the same key recognised."""
    async def main():
        async with client_for(server, "ws") as a:
            ra = await a.join("keys")
            first = await ra.publish({"type": "k"}, ack=True, idempotency_key="persisted")
            session = a.session
        async with client_for(server, "tcp", session=session) as a2, client_for(server, "ws") as b:
            ra2 = await a2.join("keys")
            assert a2.session == session
            again = await ra2.publish({"type": "k"}, ack=True, idempotency_key="persisted")
            assert again == roomcast.Ack("keys", first.msg_id, duplicate=True)
            # another client's same key is its own: sequenced
            rb = await b.join("keys")
            other = await rb.publish({"type": "k"}, ack=True, idempotency_key="persisted")
            assert other.msg_id == first.msg_id + 1 and not other.duplicate
        with pytest.raises(ValueError):
            roomcast.Client("ws://127.0.0.1:1/", session="not-hex")

    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_connection_of_the_session_replaces_the_old_one(server, kind):
    async def main():
        async with client_for(server, kind) as a:
            ra = await a.join(f"replace-{kind}")
            cid = a.client_id
            async with client_for(server, "ws", session=a.session) as a2:
                await a2.join(f"replace-{kind}")
                assert a2.client_id == cid
                await asyncio.wait_for(a.wait_closed(), 10)
                assert a.status == "closed" and a.reconnects == 0
                assert a.close_code == 1008 and a.close_reason.startswith("replaced")
                assert ra.closed
                with pytest.raises(roomcast.ClientClosed) as ei:
                    await ra.publish({"type": "x"})
                assert ei.value.code == "replaced"

    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_a_kicked_client_stops(server, kind):
    async def main():
        async with client_for(server, kind) as a, client_for(server, "ws") as b:
            ra = await a.join(f"kick-{kind}")
            rb = await b.join(f"kick-{kind}")
            status, body = await api(server, "DELETE", f"/api/clients/{a.client_id}")
            assert status == 200 and body["kicked"] is True, (status, body)
            await asyncio.wait_for(a.wait_closed(), 10)
            assert a.status == "closed" and a.reconnects == 0
            assert (a.close_code, a.close_reason) == (1008, "kicked")
            assert [m async for m in ra] == []
            with pytest.raises(roomcast.ClientClosed) as ei:
                await a.join("elsewhere")
            assert ei.value.code == "kicked"
            await rb.publish({"type": "b goes on"}, ack=True)

    run(main())


def test_a_banned_session_is_refused(server):
    async def main():
        async with client_for(server, "ws") as a:
            await a.join("ban")
            session = a.session
            status, body = await api(server, "DELETE", f"/api/clients/{a.client_id}?ban=60")
            assert status == 200, (status, body)
            await asyncio.wait_for(a.wait_closed(), 10)
        a2 = client_for(server, "ws", session=session)
        try:
            with pytest.raises(roomcast.RoomcastError) as ei:
                await asyncio.wait_for(a2.join("ban"), 10)
            assert ei.value.code == "banned"
            await asyncio.wait_for(a2.wait_closed(), 10)
            assert a2.status == "closed"
        finally:
            await a2.close()
        async with client_for(server, "ws") as fresh:   # a new session is welcome
            assert (await fresh.join("ban")).joined

    run(main())


def test_a_room_closed_by_the_api_ends_the_room_not_the_client(server):
    async def main():
        left: list[dict[str, Any]] = []
        async with client_for(server, "ws") as a:
            doomed = await a.join("doomed", on_left=lambda m, r: left.append(m))
            other = await a.join("other")
            status, _ = await api(server, "DELETE", "/api/rooms/doomed")
            assert status == 200
            await until(lambda: doomed.closed, what="the room to close")
            assert left and left[0]["reason"] == "room_closed"
            assert "doomed" not in a.rooms and [m async for m in doomed] == []
            assert (await other.publish({"type": "x"}, ack=True)).msg_id == 1
            assert a.status == "open"

    run(main())
