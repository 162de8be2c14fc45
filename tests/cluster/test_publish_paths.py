"""Every publish path in Redis mode (docs/cluster.md, "Publishes by the server"): the HTTP API's
publish, state_key publishes, roomcast.publish, the chat port and the worker broker go through
the sequencing script like a WebSocket publish, so members on every node see them in one order;
each answers with the script's msg_id, or a clear error while Redis is down.

The nodes are the binary under test on one private redis-server (conftest.py)."""

import asyncio
import json
import os
import signal
import socket
import time
import urllib.parse

import pytest

from test_nodes import TIMEOUT, connect, itest, join, wait_health
from nodeproc import stop_nodes

KEY = "cluster-api-key-0123"
AUTH = f"Authorization: Bearer {KEY}\r\n"


@pytest.fixture
def cnodes(redis_server):
    """Nodes with an API key on redis_server: cnodes(n, *flags) starts them."""
    made = []

    def start(n=3, *flags):
        for _ in range(n):
            made.append(itest.Server("--redis", redis_server.unix_url, "--api-key", KEY, *flags))
        for s in made:
            wait_health(s, "up")
        return made

    yield start
    stop_nodes(made)


def post(node, path, body, timeout=TIMEOUT):
    b = json.dumps(body).encode() if not isinstance(body, bytes) else body
    status, _h, raw = itest.http_exchange(
        node.port,
        (f"POST {path} HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: {len(b)}\r\n"
         "Connection: close\r\n\r\n").encode() + b, timeout=timeout)
    return status, json.loads(raw)


def room_path(name, sub="/messages"):
    return "/api/rooms/" + urllib.parse.quote(name, safe="") + sub


def test_http_publish_interleaved_with_websocket_publishes(cnodes):
    """Node A has no member of the room: its HTTP publishes are sequenced by the script and
    reach the members on B and C, in one order with their WebSocket publishes."""
    a, b, c = cnodes(3)
    room = "api/mixed"

    async def main():
        cb, cc = await connect(b, "b"), await connect(c, "c")
        for cl in (cb, cc):
            await join(cl.ws, room)
            cl.start()
        answers = []

        async def ws_pub(cl, n):
            for i in range(n):
                await cl.ws.send(json.dumps({"src": cl.name, "i": i, "ack": f"{cl.name}{i}"}))
                await asyncio.sleep(0)

        def http_pub(n):
            for i in range(n):
                st, doc = post(a, room_path(room), {"src": "api", "i": i, "client_id": 7})
                assert st == 200, doc
                answers.append(doc)

        await asyncio.gather(ws_pub(cb, 30), ws_pub(cc, 30),
                             asyncio.get_event_loop().run_in_executor(None, http_pub, 30))
        for cl in (cb, cc):
            await cl.wait(lambda cl=cl: len(cl.msgs.get(room, [])) == 90, "got all 90")
        seqs = [[(m["msg_id"], m["src"], m["i"]) for m in cl.msgs[room]] for cl in (cb, cc)]
        assert seqs[0] == seqs[1]
        assert [s[0] for s in seqs[0]] == list(range(1, 91))
        by_id = {m["msg_id"]: m for m in cb.msgs[room]}
        for i, doc in enumerate(answers):
            assert doc["room"] == room and doc["client_id"] == 0 and doc["members"] == 0, doc
            m = by_id[doc["msg_id"]]
            assert (m["src"], m["i"], m["client_id"]) == ("api", i, 0), m
        assert [d["msg_id"] for d in answers] == sorted(d["msg_id"] for d in answers)
        for cl in (cb, cc):  # each node's WebSocket acks name the delivered ids too
            for ref, ack in cl.acks.items():
                m = by_id[ack["msg_id"]]
                assert (m["src"], m["i"]) == (cl.name, int(ref[1:])), (ref, m)
            await cl.close()

    itest.run(main())


def test_http_publishes_pipelined_on_one_connection(cnodes):
    """Ten POSTs pipelined on one keep-alive connection: each waits for the script in turn
    (the next is read only once the previous is answered, from inside Redis's answer), and
    the answers come in order with consecutive msg_ids."""
    (a,) = cnodes(1)
    req = b""
    for i in range(10):
        b = json.dumps({"i": i}).encode()
        req += (f"POST {room_path('pipe')} HTTP/1.1\r\nHost: x\r\n{AUTH}"
                f"Content-Length: {len(b)}\r\n"
                + ("Connection: close\r\n" if i == 9 else "") + "\r\n").encode() + b
    raw = b""
    with socket.create_connection(("127.0.0.1", a.port), timeout=TIMEOUT) as s:
        s.sendall(req)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    ids = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        n = int([ln.split(b":")[1] for ln in head.split(b"\r\n")
                 if ln.lower().startswith(b"content-length:")][0])
        ids.append(json.loads(rest[:n])["msg_id"])
        raw = rest[n:]
    assert ids == list(range(1, 11)), ids


def test_http_publish_idempotency_key_across_nodes(cnodes):
    a, b = cnodes(2)

    async def main():
        cl = await connect(b, "b")
        await join(cl.ws, "idem")
        cl.start()
        st, first = post(a, room_path("idem"), {"t": 1, "idempotency_key": "k-1"})
        assert st == 200 and "duplicate" not in first, first
        st, again = post(b, room_path("idem"), {"t": 1, "idempotency_key": "k-1"})
        assert st == 200 and again["duplicate"] is True and again["msg_id"] == first["msg_id"]
        assert again["members"] == 1
        await cl.wait(lambda: len(cl.msgs.get("idem", [])) == 1, "got it")
        await asyncio.sleep(0.2)
        assert len(cl.msgs["idem"]) == 1
        await cl.close()

    itest.run(main())


def test_http_publish_unavailable_while_redis_is_down(cnodes, redis_server):
    (a,) = cnodes(1)
    st, doc = post(a, room_path("down"), {"t": "before"})
    assert st == 200 and doc["msg_id"] == 1, doc
    redis_server.stop()
    wait_health(a, "down")
    st, doc = post(a, room_path("down"), {"t": "lost"})
    assert st == 503, doc
    assert doc["status"] == 503 and doc["error"].startswith("unavailable: "), doc
    redis_server.start()
    wait_health(a, "up")
    st, doc = post(a, room_path("down"), {"t": "after"})
    assert st == 200 and doc["msg_id"] == 2, doc


def test_http_publish_connection_gone_before_the_answer(cnodes, redis_server):
    """Redis frozen: publishes wait for the script; their connections close first. The node
    drops those answers (no use of the gone connection: the sanitizer build checks), and the
    calls end either way — sequenced or cut by the heartbeat — without harm."""
    (a,) = cnodes(1)
    assert post(a, room_path("gone"), {"t": 0})[0] == 200
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        socks = []
        for i in range(5):
            b = json.dumps({"t": i + 1}).encode()
            s = socket.create_connection(("127.0.0.1", a.port))
            s.sendall((f"POST {room_path('gone')} HTTP/1.1\r\nHost: x\r\n{AUTH}"
                       f"Content-Length: {len(b)}\r\n\r\n").encode() + b)
            socks.append(s)
        # a pipelined request behind a waiting one waits too, then the connection goes
        time.sleep(0.3)
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        time.sleep(0.3)
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    wait_health(a, "up")
    st, doc = post(a, room_path("gone"), {"t": "later"})
    assert st == 200 and doc["msg_id"] >= 2, doc


async def join_state(node, room):
    """A fresh client on node joins room with "state":true: returns (client, joined, state)."""
    ws = await itest.ws_connect(node.ws_url)
    await ws.send(json.dumps({"type": "join", "room": room, "state": True}))
    joined = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert joined["type"] == "joined", joined
    state = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert state["type"] == "state", state
    return ws, joined, state


def test_state_snapshot_is_the_same_on_every_node(cnodes):
    """state_key publishes (set, replace, delete; over WebSocket and the HTTP API) are kept in
    Redis by the script: a join with "state":true on a node that never had the room gets the
    same state as one on the node that published, also for keys older than the stream
    (--history-size 3), and consistent with last_msg_id."""
    a, b, c = cnodes(3, "--history-size", "3")
    room = "st"

    async def main():
        pa = await connect(a, "pa")
        await join(pa.ws, room)
        pa.start()
        steps = [{"v": "a1", "state_key": "a"}, {"v": "b1", "state_key": "b"}, {"v": "plain"},
                 {"v": "a2", "state_key": "a"}, {"v": "c1", "state_key": "c"},
                 {"v": "bdel", "state_key": "b", "state_delete": True}, {"v": "p2"},
                 {"v": "p3"}]
        for i, m in enumerate(steps):
            await pa.ws.send(json.dumps({**m, "ack": "s%d" % i}))
            await pa.wait(lambda i=i: "s%d" % i in pa.acks, "acked")
            assert pa.acks["s%d" % i]["msg_id"] == i + 1
        st, doc = post(b, room_path(room), {"v": "d1", "state_key": "d"})
        assert st == 200 and doc["msg_id"] == 9, doc
        await pa.wait(lambda: len(pa.msgs.get(room, [])) == 9, "got all 9")
        states = []
        for n in (a, b, c):
            ws, joined, state = await join_state(n, room)
            assert joined["last_msg_id"] == 9, joined
            states.append(state)
            await ws.close()
        want = [("a2", 4), ("c1", 5), ("d1", 9)]
        for s in states:
            assert s["last_msg_id"] == 9, s
            assert [(m["v"], m["msg_id"]) for m in s["messages"]] == want, s
            assert s == states[0]
        # live changes reach every node's copy: C's member sees a3, a later joiner on B has it
        wc, _, _ = await join_state(c, room)
        await pa.ws.send(json.dumps({"v": "a3", "state_key": "a", "ack": "last"}))
        m = json.loads(await asyncio.wait_for(wc.recv(), TIMEOUT))
        assert m["v"] == "a3" and m["msg_id"] == 10, m
        ws, joined, state = await join_state(b, room)
        assert [(m["v"], m["msg_id"]) for m in state["messages"]] == [("c1", 5), ("d1", 9),
                                                                     ("a3", 10)]
        # bad keys are refused as in the embedded mode, before Redis
        st, doc = post(c, room_path(room), {"v": "x", "state_key": ""})
        assert st == 400, doc
        await ws.close()
        await wc.close()
        await pa.close()

    itest.run(main())


# -- the chat port --------------------------------------------------------------------------

def chat_connect(node):
    s = socket.create_connection(("127.0.0.1", node.chat_port), timeout=TIMEOUT)
    return s, s.makefile("rb")


def chat_line(f):
    line = f.readline()
    assert line, "the chat connection closed"
    return line.decode().rstrip("\n")


def local_members(node, room):
    """Members of room on node itself: /api/rooms/{room} answers for the whole cluster and names
    each member's node (`nodes`), /api/stats names this node (`cluster.node`)."""
    me = node.stats()["cluster"]["node"]
    st, _h, raw = itest.http_exchange(
        node.port, (f"GET {room_path(room, '')} HTTP/1.1\r\nHost: x\r\n"
                    "Connection: close\r\n\r\n").encode())
    if st != 200:
        return 0
    return sum(1 for n in json.loads(raw).get("nodes", {}).values() if n == me)


def test_chat_port_across_nodes(cnodes):
    """Chat clients on A and B and a WebSocket member on C share the chat room through Redis:
    one order everywhere; a chat client that speaks at once (its membership still waiting for
    the room to be read from Redis) sees its own message."""
    a, b, c = cnodes(3, "--chat-port", "0")

    async def main():
        wc = await connect(c, "wc")
        await join(wc.ws, "chat")
        wc.start()
        sa, fa = chat_connect(a)
        sa.sendall(b'{"user":"ann","text":"first"}')  # before A has the room in step
        assert chat_line(fa) == "[ann] first"
        sb, fb = chat_connect(b)
        deadline = time.monotonic() + TIMEOUT
        while local_members(b, "chat") != 1:
            assert time.monotonic() < deadline, "the chat client on B never became a member"
            time.sleep(0.02)
        for i in range(10):
            sa.sendall(json.dumps({"user": "ann", "text": "a%d" % i}).encode())
            sb.sendall(json.dumps({"user": "bob", "text": "b%d" % i}).encode())
            await wc.ws.send(json.dumps({"type": "chat", "user": "cat", "text": "c%d" % i}))
        await wc.wait(lambda: len(wc.msgs.get("chat", [])) == 31, "got all 31")
        order = ["[%s] %s" % (m["user"], m["text"]) for m in wc.msgs["chat"]]
        assert [m["msg_id"] for m in wc.msgs["chat"]] == list(range(1, 32))
        assert order[0] == "[ann] first"
        got_a = [chat_line(fa) for _ in range(30)]
        got_b = [chat_line(fb) for _ in range(30)]
        assert got_a == order[1:] and got_b == order[1:], (got_a, got_b, order)
        sa.close()
        sb.close()
        await wc.close()

    itest.run(main())


def test_chat_port_while_redis_is_down(cnodes, redis_server):
    (a,) = cnodes(1, "--chat-port", "0")
    s, f = chat_connect(a)
    s.sendall(b'{"user":"ann","text":"up"}')
    assert chat_line(f) == "[ann] up"
    redis_server.stop()
    wait_health(a, "down")
    s.sendall(b'{"user":"ann","text":"down"}')
    line = chat_line(f)
    assert line.startswith("[roomcast] ") and '"unavailable"' in line, line
    redis_server.start()
    wait_health(a, "up")
    s.sendall(b'{"user":"ann","text":"back"}')
    assert chat_line(f) == "[ann] back"
    s.close()


# -- roomcast.publish and the worker broker -------------------------------------------------

def test_roomcast_publish_across_nodes(cnodes, redis_server):
    """roomcast.publish from a WebSocket client on A and over HTTP on B (neither a member) is
    sequenced by the script and delivered to the member on C; replies carry the msg_id;
    `unavailable` while Redis is down."""
    a, b, c = cnodes(3)

    async def main():
        mc = await connect(c, "mc")
        await join(mc.ws, "pub")
        mc.start()
        ra = await itest.ws_connect(a.ws_url)
        await ra.send(json.dumps({"type": "request", "service": "roomcast.publish", "id": "r1",
                                  "body": {"room": "pub", "message": {"type": "t", "n": 1}}}))
        rep = json.loads(await asyncio.wait_for(ra.recv(), TIMEOUT))
        assert rep == {"type": "reply", "id": "r1", "body": {"msg_id": 1}}, rep
        st, doc = post(b, "/api/services/roomcast.publish",
                       {"room": "pub", "message": {"type": "t", "n": 2}})
        assert st == 200 and doc == {"msg_id": 2}, doc
        await mc.wait(lambda: len(mc.msgs.get("pub", [])) == 2, "got both")
        assert [(m["n"], m["msg_id"], m["client_id"]) for m in mc.msgs["pub"]] == \
            [(1, 1, 0), (2, 2, 0)]
        st, doc = post(b, "/api/services/roomcast.publish",
                       {"room": "pub", "message": {"type": "joined"}})
        assert st == 400, doc
        redis_server.stop()
        wait_health(a, "down")
        wait_health(b, "down")
        await ra.send(json.dumps({"type": "request", "service": "roomcast.publish", "id": 2,
                                  "body": {"room": "pub", "message": {"n": 3}}}))
        err = json.loads(await asyncio.wait_for(ra.recv(), TIMEOUT))
        assert err["type"] == "error" and err["id"] == 2 and err["code"] == "unavailable", err
        st, doc = post(b, "/api/services/roomcast.publish", {"room": "pub", "message": {"n": 3}})
        assert st == 503 and doc["error"].startswith("unavailable: "), doc
        await ra.close()
        await mc.close()

    itest.run(main())


def worker_port(node):
    import re
    m = re.search(r"broker workers tcp://\S+:(\d+)", node.stderr())
    assert m, node.stderr()
    return int(m.group(1))


def test_worker_publish_across_nodes(cnodes, redis_server):
    """RCPUB01 on node A's worker port (A has no member of the room): answered with the msg_id
    the script gave, delivered to the members on B and C in one order with their own
    publishes; 503 while Redis is down."""
    zmq = pytest.importorskip("zmq")
    a, b, c = cnodes(3, "--broker-worker-port", "0")
    ctx = zmq.Context()
    p = ctx.socket(zmq.DEALER)
    p.setsockopt(zmq.LINGER, 0)
    p.connect("tcp://127.0.0.1:%d" % worker_port(a))

    def rcpub(room, body):
        p.send_multipart([b"", b"RCPUB01", room, body, b"game"])
        assert p.poll(int(TIMEOUT * 1000)), "no answer to RCPUB01"
        return p.recv_multipart()

    async def main():
        mb, mc = await connect(b, "mb"), await connect(c, "mc")
        for cl in (mb, mc):
            await join(cl.ws, "arena")
            cl.start()
        acks = []
        for i in range(10):
            await mb.ws.send(json.dumps({"type": "move", "i": i}))
            ans = rcpub(b"arena", json.dumps({"type": "tick", "i": i}).encode())
            assert ans[:3] == [b"", b"RCPUB01", b"200"], ans
            acks.append(int(ans[3]))
        for cl in (mb, mc):
            await cl.wait(lambda cl=cl: len(cl.msgs.get("arena", [])) == 20, "got all 20")
        seqs = [[(m["msg_id"], m["type"], m["i"]) for m in cl.msgs["arena"]] for cl in (mb, mc)]
        assert seqs[0] == seqs[1] and [s[0] for s in seqs[0]] == list(range(1, 21))
        ticks = {m["msg_id"]: m for m in mb.msgs["arena"] if m["type"] == "tick"}
        assert sorted(ticks) == acks and [ticks[k]["i"] for k in acks] == list(range(10))
        assert all(m["client_id"] == 0 for m in ticks.values())
        assert rcpub(b"arena", b"not json")[2] == b"400"
        redis_server.stop()
        wait_health(a, "down")
        ans = rcpub(b"arena", b'{"type":"tick","i":99}')
        assert ans[2] == b"503" and b"unavailable" in ans[3], ans
        for cl in (mb, mc):
            await cl.close()

    try:
        itest.run(main())
    finally:
        p.close(0)
        ctx.destroy(linger=0)


def test_room_service_replies_across_nodes(cnodes):
    """A room service on node A (--room-service): its worker's reply messages go through the
    script, in order, to the members on A and on B."""
    zmq = pytest.importorskip("zmq")
    a = cnodes(1, "--broker-worker-port", "0", "--room-service", "table-*=counter")[0]
    b = cnodes(1)[1]  # cnodes returns every node started so far
    ctx = zmq.Context()
    w = ctx.socket(zmq.DEALER)
    w.setsockopt(zmq.LINGER, 0)
    w.connect("tcp://127.0.0.1:%d" % worker_port(a))
    w.send_multipart([b"", b"MDPW01", b"\x01", b"counter"])

    def serve_one():
        while True:
            assert w.poll(int(TIMEOUT * 1000)), "no request for the room service"
            f = w.recv_multipart()
            if f[2] == b"\x02":
                break
        req = json.loads(f[5])
        i = req["message"]["cell"]
        out = {"messages": [{"type": "counted", "n": i}, {"type": "echo", "n": i}]}
        w.send_multipart([b"", b"MDPW01", b"\x03", f[3], b"", json.dumps(out).encode()])

    async def main():
        ma, mb = await connect(a, "ma"), await connect(b, "mb")
        for cl in (ma, mb):
            await join(cl.ws, "table-1")
            cl.start()
        for i in range(5):
            await ma.ws.send(json.dumps({"type": "move", "cell": i}))
            await asyncio.get_event_loop().run_in_executor(None, serve_one)
        for cl in (ma, mb):
            await cl.wait(lambda cl=cl: len(cl.msgs.get("table-1", [])) == 10, "got all 10")
        seqs = [[(m["msg_id"], m["type"], m["n"]) for m in cl.msgs["table-1"]]
                for cl in (ma, mb)]
        want = []
        for i in range(5):
            want += [(2 * i + 1, "counted", i), (2 * i + 2, "echo", i)]
        assert seqs[0] == want and seqs[1] == want, seqs
        for cl in (ma, mb):
            await cl.close()

    try:
        itest.run(main())
    finally:
        w.close(0)
        ctx.destroy(linger=0)
