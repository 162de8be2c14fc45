"""Slow consumers: a member that stops reading is disconnected once more than --max-pending
bytes are queued for it (close 1008 'slow consumer', or just cut), counted in
disconnects.slow_consumer, while the room's other members keep receiving every message in order
and the publisher is never held up."""

import asyncio
import json
import struct
import time
import uuid

from conftest import (OP_CLOSE, OP_TEXT, ConnectionGone, RawWS, run, ws_connect,
                      ws_join)

PENDING = 131072


def drain_slow_client(slow, room):
    """Read everything the server sent the slow client before cutting it. Returns (msg_ids,
    close) where close is (code, reason) or None when the connection was cut without a close
    frame. Asserts the data frames form a gap-free prefix of the room's sequence."""
    ids, close = [], None
    deadline = time.monotonic() + 30
    while True:
        try:
            f = slow.recv_frame(max(0.1, deadline - time.monotonic()))
        except ConnectionGone:
            break
        if f.opcode == OP_CLOSE:
            close = f.close_code()
            # after the close frame the server closes the TCP connection
            slow.expect_eof()
            break
        if f.opcode == 0x9:
            continue
        assert f.opcode == OP_TEXT and f.fin, f
        msg = json.loads(f.payload)
        assert msg["room"] == room
        ids.append(msg["msg_id"])
    assert ids == list(range(1, len(ids) + 1)), \
        f"slow client saw a gap or reordering: {ids[:5]}...{ids[-5:]}"
    return ids, close


def test_slow_consumer_disconnected_others_unaffected(start_server):
    srv = start_server("--max-pending", str(PENDING), "--ping-interval", "60")
    room = f"slow-{uuid.uuid4().hex[:8]}"
    # The slow member: a tiny receive window, joined, then never reads again.
    slow = RawWS.connect(srv.port, rcvbuf=4096)
    slow.join(room)

    async def main():
        pub = await ws_connect(srv.ws_url, max_queue=None)
        reader = await ws_connect(srv.ws_url, max_queue=None)
        await ws_join(pub, room)
        await ws_join(reader, room)
        sent = 0
        got = {"pub": 0, "reader": 0}

        async def consume(name, ws):
            exp = 1
            while True:
                msg = json.loads(await ws.recv())
                assert msg["msg_id"] == exp, f"{name}: msg_id {msg['msg_id']}, expected {exp}"
                assert msg["seq"] == exp - 1, f"{name}: seq {msg['seq']} at msg_id {exp}"
                exp += 1
                got[name] += 1

        tasks = [asyncio.ensure_future(consume("pub", pub)),
                 asyncio.ensure_future(consume("reader", reader))]
        pad = "s" * 2000
        cut_at = None
        async def caught_up():
            # the well-behaved members never have more than one batch (40 KB) in flight, so
            # they cannot come near the cap however loaded the machine is
            deadline = time.monotonic() + 30
            while min(got.values()) < sent:
                for t in tasks:
                    if t.done():
                        t.result()
                assert time.monotonic() < deadline, f"members stuck at {got}, sent {sent}"
                await asyncio.sleep(0.001)

        try:
            while sent < 30000:
                for _ in range(20):
                    await pub.send(json.dumps({"type": "bulk", "seq": sent, "pad": pad}))
                    sent += 1
                await caught_up()
                if cut_at is None and sent % 500 == 0:
                    st = await asyncio.get_running_loop().run_in_executor(None, srv.stats)
                    if st["disconnects"]["slow_consumer"] >= 1:
                        cut_at = sent
                if cut_at is not None and sent >= cut_at + 300:
                    break
            assert cut_at is not None, \
                f"no slow_consumer disconnect after {sent} messages of 2 KB (max-pending {PENDING})"
            # everybody else receives every message, in order
            deadline = time.monotonic() + 60
            while min(got.values()) < sent and time.monotonic() < deadline:
                for t in tasks:
                    if t.done():
                        t.result()
                await asyncio.sleep(0.05)
            assert got == {"pub": sent, "reader": sent}, (got, sent)
        finally:
            for t in tasks:
                t.cancel()
            await pub.close()
            await reader.close()
        return sent

    try:
        sent = run(main(), timeout=150)
        ids, close = drain_slow_client(slow, room)
        assert len(ids) < sent
        if close is not None:
            assert close == (1008, b"slow consumer"), close
    finally:
        slow.close()
    st = srv.stats()
    assert st["disconnects"]["slow_consumer"] == 1, st["disconnects"]
    assert st["disconnects"]["ping_timeout"] == 0
    srv.wait_connections(0)


def test_slow_binary_consumer(start_server):
    """The same with large binary messages: the cap is about bytes, not message counts."""
    srv = start_server("--max-pending", str(PENDING), "--ping-interval", "60")
    room = f"slowbin-{uuid.uuid4().hex[:8]}"
    slow = RawWS.connect(srv.port, rcvbuf=4096)
    slow.join(room)
    env = bytes([len(room)]) + room.encode()

    async def main():
        pub = await ws_connect(srv.ws_url, max_queue=None)
        await ws_join(pub, room)
        got = 0

        async def consume():
            nonlocal got
            while True:
                data = await pub.recv()
                msg_id = struct.unpack_from("<Q", data, 0)[0]
                assert msg_id == got + 1
                got += 1

        task = asyncio.ensure_future(consume())
        sent = 0
        try:
            while sent < 8000:
                for _ in range(4):
                    await pub.send(env + bytes(16000))
                    sent += 1
                deadline = time.monotonic() + 30
                while got < sent:           # at most 64 KB in flight for the publisher
                    if task.done():
                        task.result()
                    assert time.monotonic() < deadline, (got, sent)
                    await asyncio.sleep(0.001)
                if sent % 40:
                    continue
                st = await asyncio.get_running_loop().run_in_executor(None, srv.stats)
                if st["disconnects"]["slow_consumer"] >= 1:
                    break
            assert st["disconnects"]["slow_consumer"] == 1, st["disconnects"]
            deadline = time.monotonic() + 60
            while got < sent and time.monotonic() < deadline:
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
            assert got == sent
        finally:
            task.cancel()
            await pub.close()

    try:
        run(main(), timeout=120)
        # drain: whole binary frames with consecutive msg_ids (no frame cut in the middle when
        # the queue was dropped), then maybe a close 1008
        deadline = time.monotonic() + 30
        nxt = 1
        while True:
            try:
                f = slow.recv_frame(max(0.1, deadline - time.monotonic()))
            except ConnectionGone:
                break
            if f.opcode == OP_CLOSE:
                assert f.close_code() == (1008, b"slow consumer")
                slow.expect_eof()
                break
            if f.opcode == 0x9:
                continue
            assert f.opcode == 0x2 and f.fin, f
            assert len(f.payload) == 17 + len(room) + 16000, len(f.payload)
            assert struct.unpack_from("<Q", f.payload, 0)[0] == nxt
            assert f.payload[17 + len(room):] == bytes(16000)
            nxt += 1
    finally:
        slow.close()
    srv.wait_connections(0)


def test_slow_reader_under_the_cap_is_kept(start_server):
    """A member that pauses reading while less than --max-pending is queued is not dropped and
    then receives everything."""
    srv = start_server("--max-pending", str(4 * 1024 * 1024), "--ping-interval", "60")
    room = f"pause-{uuid.uuid4().hex[:8]}"
    paused = RawWS.connect(srv.port, rcvbuf=4096)
    paused.join(room)
    pub = RawWS.connect(srv.port)
    try:
        pub.join(room)
        n = 600   # ~600 KB
        for i in range(n):
            pub.send_json({"type": "p", "seq": i, "pad": "q" * 1000})
        for i in range(n):
            assert pub.recv_json()["msg_id"] == i + 1
        time.sleep(0.3)
        for i in range(n):
            m = paused.recv_json()
            assert (m["msg_id"], m["seq"]) == (i + 1, i)
        assert srv.stats()["disconnects"]["slow_consumer"] == 0
    finally:
        paused.close()
        pub.close()


def test_slow_consumer_that_never_reads_is_cut_after_close_timeout(start_server):
    """Once dropped as a slow consumer, a client that reads nothing at all (so the close frame
    can never be written) is still cut within --close-timeout: the server does not keep it."""
    srv = start_server("--max-pending", str(PENDING), "--close-timeout", "1",
                       "--ping-interval", "60")
    room = f"neverread-{uuid.uuid4().hex[:8]}"
    dead = RawWS.connect(srv.port, rcvbuf=4096)
    dead.join(room)
    pub = RawWS.connect(srv.port)
    try:
        pub.join(room)
        base = srv.stats()["connections"]     # dead + pub (+ the stats request itself)
        sent = 0
        while srv.stats()["disconnects"]["slow_consumer"] == 0:
            assert sent < 20000, "no slow_consumer disconnect"
            for _ in range(20):
                pub.send_json({"type": "x", "seq": sent, "pad": "n" * 2000})
                sent += 1
            for i in range(sent - 20, sent):
                assert pub.recv_json()["seq"] == i
        # without reading a byte from `dead`, its connection goes away
        srv.wait_stats(lambda s: s["connections"] == base - 1, timeout=15,
                       what="slow consumer's connection closed")
        pub.send_json({"type": "x", "seq": sent})
        assert pub.recv_json()["msg_id"] == sent + 1
    finally:
        dead.close()
        pub.close()
