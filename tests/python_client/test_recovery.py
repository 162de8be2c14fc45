"""Lost connections: reconnects with backoff, rejoins with since/epoch (recovery), gaps when
recovery is impossible, publishes queued while disconnected, unacknowledged keyed publishes
resent (and never sequenced twice), server restarts with and without --data-dir.

Connections are lost through a Proxy (conftest.py) between the client and the server, so every
loss happens at a point the test chose."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import roomcast

from conftest import Proxy, client_for, make_server, room_info, run, server_port, until

KINDS = ["ws", "tcp", "framed"]


@pytest.mark.parametrize("kind", KINDS)
def test_recovery_after_the_connection_is_cut(server, kind):
    room_name = f"recover-{kind}"

    async def main():
        async with Proxy(server_port(server, kind)) as proxy, \
                client_for(server, kind, port=proxy.port) as a, client_for(server, "ws") as b:
            closes: list[tuple[int, str]] = []
            a.on_close = lambda code, reason: closes.append((code, reason))
            gaps: list[Any] = []
            ra = await a.join(room_name, on_gap=lambda g, r: gaps.append(g))
            rb = await b.join(room_name)
            for i in range(5):
                await rb.publish({"type": "n", "i": i})
            await until(lambda: ra.last_msg_id == 5, what="first messages")
            epoch = ra.epoch

            proxy.block()
            proxy.cut()
            await until(lambda: not ra.joined, what="the loss to be seen")
            for i in range(5, 20):                     # published while A is away
                await rb.publish({"type": "n", "i": i})
            await until(lambda: len(proxy.accepted) >= 2, what="a reconnect attempt")
            proxy.unblock()
            await until(lambda: ra.joined, what="the rejoin")
            await rb.publish({"type": "n", "i": 20}, ack=True)

            got = [await ra.recv(10) for _ in range(21)]
            assert [m["msg_id"] for m in got] == list(range(1, 22))
            assert [m["i"] for m in got] == list(range(21))
            assert not gaps and ra.gaps == 0 and ra.recovered is True and ra.epoch == epoch
            assert a.reconnects >= 1 and closes and closes[0][0] == 1006

    run(main())


@pytest.mark.parametrize("kind", ["ws", "tcp"])
def test_publishes_while_disconnected_are_sent_after_the_rejoin(server, kind):
    room_name = f"queued-{kind}"

    async def main():
        async with Proxy(server_port(server, kind)) as proxy, \
                client_for(server, kind, port=proxy.port) as a, client_for(server, "ws") as b:
            ra = await a.join(room_name)
            rb = await b.join(room_name)
            proxy.block()
            proxy.cut()
            await until(lambda: not ra.joined, what="the loss to be seen")
            await ra.publish({"type": "q", "i": 0})
            acked = asyncio.ensure_future(ra.publish({"type": "q", "i": 1}, ack=True))
            await asyncio.sleep(0)                     # queued now, before the next one
            await ra.publish({"type": "q", "i": 2})
            await asyncio.sleep(0.2)
            assert not acked.done() and rb.pending() == 0
            proxy.unblock()
            ack = await asyncio.wait_for(acked, 10)
            assert ack.msg_id == 2
            got = [await rb.recv(10) for _ in range(3)]
            assert [(m["msg_id"], m["i"]) for m in got] == [(1, 0), (2, 1), (3, 2)]

    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_an_unacknowledged_keyed_publish_is_resent_and_not_duplicated(server, kind):
    room_name = f"resend-{kind}"

    async def main():
        async with Proxy(server_port(server, kind)) as proxy, \
                client_for(server, kind, port=proxy.port) as a, client_for(server, "ws") as b:
            ra = await a.join(room_name)
            rb = await b.join(room_name)
            proxy.mute()                               # A's ack (and echo) will be lost
            pub = asyncio.ensure_future(ra.publish({"type": "once"}, ack=True,
                                                   idempotency_key="only-once"))
            seen = await rb.recv(10)                   # the room sequenced it
            assert seen["type"] == "once" and seen["msg_id"] == 1
            await asyncio.sleep(0.1)
            assert not pub.done()
            proxy.cut()                                # the ack never arrives
            ack = await asyncio.wait_for(pub, 10)      # resent after the rejoin ...
            assert ack == roomcast.Ack(room_name, 1, duplicate=True)   # ... and recognised
            assert a.reconnects == 1
            got = await ra.recv(10)                    # the replay brings it back once
            assert got["msg_id"] == 1 and got["client_id"] == seen["client_id"]
            await rb.publish({"type": "next"}, ack=True)
            assert (await ra.recv(10))["msg_id"] == 2 and (await rb.recv(10))["msg_id"] == 2
            assert (await room_info(server, room_name))["last_msg_id"] == 2

    run(main())


def test_an_unacknowledged_publish_without_key_fails(server):
    async def main():
        async with Proxy(server.port) as proxy, \
                client_for(server, "ws", port=proxy.port) as a, client_for(server, "ws") as b:
            ra = await a.join("nokey")
            rb = await b.join("nokey")
            proxy.mute()
            pub = asyncio.ensure_future(ra.publish({"type": "maybe"}, ack=True))
            await rb.recv(10)
            await asyncio.sleep(0.1)
            proxy.cut()
            with pytest.raises(roomcast.ConnectionLost) as ei:
                await asyncio.wait_for(pub, 10)
            assert ei.value.code == "connection_lost"
            await until(lambda: ra.joined, what="the rejoin")
            assert (await room_info(server, "nokey"))["last_msg_id"] == 1

    run(main())


def test_a_gap_is_reported_when_the_history_cannot_replay(start_server):
    srv = start_server("--history-size", "3")

    async def main():
        async with Proxy(srv.port) as proxy, \
                client_for(srv, "ws", port=proxy.port) as a, client_for(srv, "ws") as b:
            gaps: list[roomcast.Gap] = []
            ra = await a.join("short", on_gap=lambda g, r: gaps.append(g))
            rb = await b.join("short")
            await rb.publish({"type": "n"}, ack=True)
            assert (await ra.recv(10))["msg_id"] == 1
            proxy.block()
            proxy.cut()
            await until(lambda: not ra.joined, what="the loss to be seen")
            for _ in range(10):                        # 2..11; the history keeps 9..11
                await rb.publish({"type": "n"}, ack=True)
            proxy.unblock()
            await until(lambda: ra.joined, what="the rejoin")
            await rb.publish({"type": "n"}, ack=True)
            assert (await ra.recv(10))["msg_id"] == 12
            assert ra.recovered is False
            assert gaps == [roomcast.Gap("short", 2, 11, "not_recovered")]

    run(main())


def test_reconnect_backs_off_exponentially_with_jitter(server):
    async def main():
        async with Proxy(server.port) as proxy:
            proxy.block()
            c = roomcast.Client(f"ws://127.0.0.1:{proxy.port}/", min_delay=0.05, max_delay=0.4)
            joining = asyncio.ensure_future(c.join("backoff"))
            await until(lambda: len(proxy.accepted) >= 7, timeout=20, what="7 attempts")
            t = proxy.accepted
            # attempt n waits min(max, min * 2**n) * [0.5, 1) after attempt n fails
            for n in range(6):
                floor = 0.5 * min(0.4, 0.05 * 2 ** n)
                assert t[n + 1] - t[n] >= floor * 0.95, (n, t[n + 1] - t[n], floor)
            assert t[6] - t[5] < 3.0
            assert c.status in ("reconnecting", "connecting") and not joining.done()
            proxy.unblock()
            room = await asyncio.wait_for(joining, 10)
            assert room.joined and c.status == "open" and c.attempt == 0
            await c.close()
            assert c.status == "closed"

    run(main())


@pytest.mark.parametrize("kind", ["ws", "tcp"])
def test_server_restart_with_data_dir_recovers_and_recognises_keys(tmp_path, kind):
    """SIGTERM (close 1001: reconnect), a new server on the same ports and data directory: the
    rejoin recovers in the same epoch and a key sent before the restart is still known."""
    data = str(tmp_path / "data")
    flags = ["--data-dir", data, "--fsync", "always"]
    srv = make_server(*flags)
    servers = [srv]

    async def main():
        nonlocal srv
        closes: list[tuple[int, str]] = []
        async with client_for(srv, kind, min_delay=0.1, max_delay=0.3,
                              on_close=lambda c, r: closes.append((c, r))) as a:
            ra = await a.join("durable")
            first = await ra.publish({"type": "n", "i": 0}, ack=True, idempotency_key="before")
            for i in range(1, 4):
                await ra.publish({"type": "n", "i": i}, ack=True)
            await until(lambda: ra.last_msg_id == 4, what="own messages")
            epoch, old_cid = ra.epoch, a.client_id
            await asyncio.to_thread(srv.stop)
            await until(lambda: not ra.joined, what="the close to be seen")
            assert closes[0][0] == 1001
            srv = make_server(*flags, "--port", str(servers[0].port),
                              "--tcp-port", str(servers[0].tcp_port))
            servers.append(srv)
            await until(lambda: ra.joined, timeout=20, what="the rejoin")
            assert ra.recovered is True and ra.epoch == epoch and ra.gaps == 0
            # the restarted server did not know the session: a new client_id, never an old one
            assert a.client_id is not None and a.client_id > old_cid
            again = await ra.publish({"type": "n", "i": 0}, ack=True, idempotency_key="before")
            assert again == roomcast.Ack("durable", first.msg_id, duplicate=True)
            nxt = await ra.publish({"type": "n", "i": 4}, ack=True)
            assert nxt.msg_id == 5
            got = [await ra.recv(10) for _ in range(5)]
            assert [m["msg_id"] for m in got] == [1, 2, 3, 4, 5]

    try:
        run(main())
        servers[-1].stop()
    finally:
        for s in servers:
            s.cleanup()


def test_server_restart_without_data_reports_a_new_epoch(start_server):
    srv = start_server()

    async def main():
        gaps: list[roomcast.Gap] = []
        async with client_for(srv, "ws", min_delay=0.1, max_delay=0.3) as a:
            ra = await a.join("fresh", on_gap=lambda g, r: gaps.append(g))
            for i in range(3):
                await ra.publish({"type": "n"}, ack=True)
            await until(lambda: ra.last_msg_id == 3, what="own messages")
            old_epoch = ra.epoch
            await asyncio.to_thread(srv.stop)
            await until(lambda: not ra.joined, what="the close to be seen")
            srv2 = start_server("--port", str(srv.port))
            assert srv2.port == srv.port
            await until(lambda: ra.joined, timeout=20, what="the rejoin")
            assert ra.epoch != old_epoch and ra.recovered is False
            assert gaps == [roomcast.Gap("fresh", 4, None, "new_epoch")]
            ack = await ra.publish({"type": "n"}, ack=True)
            assert ack.msg_id == 1
            assert [m["msg_id"] for m in [await ra.recv(10) for _ in range(4)]] == [1, 2, 3, 1]

    run(main())


def test_close_ends_everything(server):
    async def main():
        async with Proxy(server.port) as proxy:
            c = client_for(server, "ws", port=proxy.port)
            r = await c.join("closing")
            proxy.block()
            proxy.cut()
            await until(lambda: not r.joined, what="the loss to be seen")
            pending = asyncio.ensure_future(r.publish({"type": "x"}, ack=True))
            await asyncio.sleep(0.05)
            await c.close()
            with pytest.raises(roomcast.ClientClosed):
                await pending
            assert [m async for m in r] == [] and c.status == "closed"
            await asyncio.wait_for(c.wait_closed(), 1)

    run(main())
