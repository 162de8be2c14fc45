"""A list of URLs (nodes of one cluster, docs/cluster.md): the client connects to the first, and
a lost connection moves it to the next. The servers here share no rooms (no Redis): these tests
pin the client's choice of URL; tests/node/cluster.test.mjs and tests/cluster/ check recovery
across nodes that do."""

from __future__ import annotations

import asyncio
import socket

import pytest
import roomcast

from conftest import run, until


def test_a_lost_connection_moves_to_the_next_url(start_server):
    a, b = start_server(), start_server()

    async def main():
        opens = []
        c = roomcast.Client([a.ws_url, b.ws_url], min_delay=0.05, max_delay=0.2,
                            on_open=opens.append)
        assert c.urls == [a.ws_url, b.ws_url]
        room = await c.join("moving")
        assert (c.url, c.url_index) == (a.ws_url, 0)
        ack = await room.publish({"text": "on a"}, ack=True)
        assert ack.msg_id == 1
        a.proc.kill()                      # SIGKILL: node a is gone
        a.returncode = a.proc.wait()
        await until(lambda: c.url == b.ws_url and room.joined and c.status == "open",
                    what="rejoined on b")
        assert c.url_index == 1 and opens == [False, True]
        # b never had the room: the rejoin's since/epoch is not recovered there, and the
        # next message is b's first
        assert room.recovered is False
        ack = await room.publish({"text": "on b"}, ack=True)
        assert ack.msg_id == 1
        await c.close()

    run(main())


def test_a_dead_first_url_is_skipped(start_server):
    b = start_server()
    with socket.socket() as s:   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = "ws://127.0.0.1:%d/" % s.getsockname()[1]

    async def main():
        c = roomcast.Client([dead, b.ws_url], min_delay=0.05, max_delay=0.2)
        await asyncio.wait_for(c.connect(), 10)
        assert c.url == b.ws_url and c.url_index == 1 and c.status == "open"
        await c.close()

    run(main())


@pytest.mark.parametrize("bad", [[], ["ws://x/", "http://y/"], ["ws://x/", 5]])
def test_a_bad_list_is_refused(bad):
    with pytest.raises(ValueError):
        roomcast.Client(bad)
