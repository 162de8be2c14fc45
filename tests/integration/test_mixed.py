"""Mixed rooms (docs/tcp.md): WebSocket (python websockets), TCP line, TCP framed and chat-port
members, plus the HTTP API, all in one room. Several publishers on every transport at once,
text and binary interleaved: every member sees the same msg_id sequence with no gap and the
same messages (byte for byte where the wire formats agree), chat members the same order of
`[user] text` lines; late joiners recover with since/epoch over each transport while the room
is busy."""

import asyncio
import base64
import json
import struct
import uuid

from conftest import IO_TIMEOUT, run, ws_connect
from rawtcp import PREAMBLE, ApiPublisher, dumps, envelope, parse_envelope, wait_members

KEY = "mixed-test-key-0123456789"
OP_TEXT, OP_BINARY, OP_PING, OP_PONG = 0x1, 0x2, 0x9, 0xA


def start(start_server, *flags):
    room = f"mixed-{uuid.uuid4().hex[:8]}"
    srv = start_server("--tcp-port", "0", "--chat-port", "0", "--chat-room", room,
                       "--api-key", KEY, *flags)
    return srv, room


class Member:
    """One asyncio client of any transport. next() returns the next room message as
    ("t", msg_id, raw_json_text, obj) or ("b", msg_id, client_id, payload), or for chat members
    ("line", text)."""

    def __init__(self, kind, name):
        self.kind, self.name = kind, name
        self.client_id = None

    async def open(self, srv):
        if self.kind == "ws":
            self.ws = await ws_connect(srv.ws_url, max_queue=None)
        else:
            port = srv.chat_port if self.kind == "chat" else srv.tcp_port
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port,
                                                                     limit=4 * 1024 * 1024)
            if self.kind == "framed":
                self.writer.write(PREAMBLE)
                got = await asyncio.wait_for(self.reader.readexactly(4), IO_TIMEOUT)
                assert got == PREAMBLE, got
        return self

    async def _send_frame(self, op, payload):
        self.writer.write(struct.pack("<IB", len(payload), op) + payload)
        await self.writer.drain()

    async def send_json(self, obj):
        text = dumps(obj)
        if self.kind == "ws":
            await self.ws.send(text)
        elif self.kind == "line":
            self.writer.write(text.encode() + b"\n")
            await self.writer.drain()
        elif self.kind == "framed":
            await self._send_frame(OP_TEXT, text.encode())
        else:
            raise AssertionError("chat members send {user, text} objects")

    async def send_binary(self, room, payload):
        if self.kind == "ws":
            await self.ws.send(envelope(room, payload))
        else:
            assert self.kind == "framed"
            await self._send_frame(OP_BINARY, envelope(room, payload))

    async def say(self, user, text):
        assert self.kind == "chat"
        self.writer.write(json.dumps({"user": user, "text": text}, ensure_ascii=False).encode())
        await self.writer.drain()

    async def _recv(self):
        if self.kind == "ws":
            return await self.ws.recv()
        if self.kind in ("line", "chat"):
            line = await self.reader.readline()
            assert line.endswith(b"\n"), f"{self.name}: connection ended: {line!r}"
            return line[:-1].decode()
        while True:
            n, op = struct.unpack("<IB", await self.reader.readexactly(5))
            payload = await self.reader.readexactly(n)
            if op == OP_PING:
                await self._send_frame(OP_PONG, payload)
                continue
            assert op in (OP_TEXT, OP_BINARY), f"{self.name}: opcode {op:#x} {payload[:100]!r}"
            return payload.decode() if op == OP_TEXT else payload

    async def next(self, timeout=IO_TIMEOUT):
        raw = await asyncio.wait_for(self._recv(), timeout)
        if self.kind == "chat":
            return ("line", raw)
        if isinstance(raw, bytes):
            msg_id, cid, _room, payload = parse_envelope(raw)
            return ("b", msg_id, cid, payload)
        obj = json.loads(raw)
        if self.kind == "line" and "binary" in obj and "msg_id" in obj:
            assert list(obj) == ["binary", "room", "client_id", "msg_id"], raw
            return ("b", obj["msg_id"], obj["client_id"], base64.b64decode(obj["binary"]))
        return ("t", obj.get("msg_id"), raw, obj)

    async def join(self, room, **extra):
        await self.send_json({"type": "join", "room": room, **extra})
        m = await self.next()
        assert m[0] == "t" and m[3]["type"] == "joined" and m[3]["room"] == room, m
        self.client_id = m[3]["client_id"]
        self.joined = m[3]
        return m[3]

    async def close(self):
        if self.kind == "ws":
            await self.ws.close()
        else:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass


def chat_line_of(m):
    """The chat line a room message must show as (docs/tcp.md), or None."""
    if m[0] != "t" or not isinstance(m[3].get("text"), str):
        return None
    obj = m[3]
    user = obj.get("user") if isinstance(obj.get("user"), str) else obj.get("nick")
    if not isinstance(user, str):
        user = f"client {obj['client_id']}"

    def clean(s):
        return "".join(" " if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in s)
    return f"[{clean(user)}] {clean(obj['text'])}"


def label(m):
    """(publisher name, index) carried by every test message."""
    if m[0] == "b":
        name, _, i = m[3][:-2].decode().rpartition(" #")
    else:
        name, _, i = m[3]["text"].rpartition(" #")
    return name, int(i)


def canonical(m):
    # text: the exact JSON text (identical on WebSocket, line and framed); binary: sender+payload
    return ("t", m[2]) if m[0] == "t" else ("b", m[2], m[3])


async def collect(member, last_id, first_id=1):
    """Room messages first_id..last_id, asserting no gap; returns them."""
    got = []
    want = first_id
    while want <= last_id:
        m = await member.next()
        assert m[1] == want, f"{member.name}: msg_id {m[1]}, expected {want}: {m}"
        got.append(m)
        want += 1
    return got


async def collect_chat(member, end_line):
    lines = []
    while not lines or lines[-1] != end_line:
        lines.append((await member.next())[1])
    return lines


async def collect_lines(member, n):
    return [(await member.next())[1] for _ in range(n)]


async def publisher(member, room, count, binary_every=0, tag=None):
    """Publishes count messages labelled '<name> #i' (every binary_every-th one binary)."""
    tag = tag or member.name
    for i in range(count):
        text = f"{tag} #{i}"
        if member.kind == "chat":
            await member.say(tag, text)
        elif binary_every and i % binary_every == binary_every - 1:
            await member.send_binary(room, text.encode() + b"\x00\xff")
        else:
            await member.send_json({"type": "chat", "user": tag, "text": text,
                                    "ctl": "\u0001\n"})
        await asyncio.sleep(0)


async def api_publisher(srv, room, count, tag):
    loop = asyncio.get_running_loop()
    pub = await loop.run_in_executor(None, ApiPublisher, srv, KEY)
    try:
        for i in range(count):
            # the backend's messages have no user: chat members show them as "client 0"
            await loop.run_in_executor(None, pub.publish, room,
                                       {"type": "chat", "text": f"{tag} #{i}"})
    finally:
        pub.close()


async def open_members(srv, room, kinds):
    members = []
    for kind, n in kinds:
        for i in range(n):
            m = await Member(kind, f"{kind}{i}").open(srv)
            if kind != "chat":
                await m.join(room)
            members.append(m)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, wait_members, srv, room, len(members))
    return members


def check_same_sequence(views, ref_name):
    ref = views[ref_name]
    for name, got in views.items():
        assert [canonical(m) for m in got] == [canonical(m) for m in ref], \
            f"{name} saw different messages than {ref_name}"


def test_mixed_room_total_order(start_server):
    srv, room = start(start_server)
    K = 60

    async def main():
        members = await open_members(srv, room, [("ws", 2), ("line", 2), ("framed", 2),
                                                 ("chat", 2)])
        try:
            pubs = [publisher(m, room, K, binary_every=3 if m.kind in ("ws", "framed") else 0)
                    for m in members]
            pubs.append(api_publisher(srv, room, K, "api"))
            total = K * len(pubs) + 1
            readers = [asyncio.ensure_future(
                collect_chat(m, "[client 0] END") if m.kind == "chat" else collect(m, total))
                for m in members]
            await asyncio.gather(*pubs)
            # the last message, published once everything else is sequenced
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: ApiPublisher(srv, KEY).publish(room, {"type": "chat",
                                                                    "text": "END"}))
            results = await asyncio.wait_for(asyncio.gather(*readers), 60)
            return members, dict(zip([m.name for m in members], results)), total
        finally:
            for m in members:
                await m.close()

    members, views, total = run(main(), timeout=120)
    seq_views = {n: v for n, v in views.items() if not n.startswith("chat")}
    check_same_sequence(seq_views, "ws0")
    ref = seq_views["ws0"]
    assert len(ref) == total
    # the line members saw the very text the WebSocket members got (checked above), and the
    # binary ones as {"binary":...}; every publisher's messages are in its send order
    by_pub = {}
    for m in ref[:-1]:
        name, i = label(m)
        by_pub.setdefault(name, []).append(i)
    assert sorted(by_pub) == sorted([m.name for m in members] + ["api"])
    for name, idx in by_pub.items():
        assert idx == list(range(K)), f"{name}'s messages out of order: {idx}"
    nbin = sum(1 for m in ref if m[0] == "b")
    assert nbin == 4 * (K // 3), nbin
    # the chat members: the same `[user] text` lines, in the same order
    want = [ln for ln in map(chat_line_of, ref) if ln is not None]
    assert len(want) == total - nbin
    for name in ("chat0", "chat1"):
        assert views[name] == want, f"{name} lines differ from the room's order"


def test_late_joiners_recover_over_each_transport(start_server):
    srv, room = start(start_server)

    async def main():
        members = await open_members(srv, room, [("ws", 1), ("framed", 1), ("chat", 1)])
        ref, framed, chat = members
        epoch = ref.joined["epoch"]
        late = []
        try:
            # a history of 60 messages: text and binary, from WebSocket, framed, chat, API
            first = [publisher(ref, room, 15, binary_every=2, tag="ref"),
                     publisher(framed, room, 15, binary_every=2, tag="framed"),
                     publisher(chat, room, 15, tag="chat"),
                     api_publisher(srv, room, 15, "api")]
            ref_task = asyncio.ensure_future(collect(ref, 60))
            await asyncio.gather(*first)
            history = await asyncio.wait_for(ref_task, 30)

            # late joiners over each transport rejoin while the room is busy again
            more = [publisher(ref, room, 40, binary_every=2, tag="ref2"),
                    publisher(framed, room, 40, binary_every=2, tag="framed2"),
                    publisher(chat, room, 40, tag="chat2")]
            total = 60 + 120
            ref_task = asyncio.ensure_future(collect(ref, total, 61))
            pub_task = asyncio.ensure_future(asyncio.gather(*more))
            sinces = {"ws": 7, "line": 30, "framed": 59}
            tasks = []
            for kind, since in sinces.items():
                m = await Member(kind, f"late-{kind}").open(srv)
                late.append(m)
                jj = await m.join(room, since=since, epoch=epoch)
                assert jj["recovered"] is True and jj["epoch"] == epoch, jj
                tasks.append(asyncio.ensure_future(collect(m, total, since + 1)))
            # and one with a wrong epoch: not recovered, nothing replayed
            wrong = await Member("framed", "wrong-epoch").open(srv)
            late.append(wrong)
            jw = await wrong.join(room, since=7, epoch="ffffffffffffffff")
            assert jw["recovered"] is False, jw
            wrong_task = asyncio.ensure_future(collect(wrong, total, jw["last_msg_id"] + 1))
            await pub_task
            live = await asyncio.wait_for(ref_task, 30)
            recovered = await asyncio.wait_for(asyncio.gather(*tasks), 30)
            await asyncio.wait_for(wrong_task, 30)
            return history + live, dict(zip(sinces, recovered)), sinces
        finally:
            for m in members + late:
                await m.close()

    everything, recovered, sinces = run(main(), timeout=120)
    assert [m[1] for m in everything] == list(range(1, 181))
    for kind, got in recovered.items():
        want = everything[sinces[kind]:]
        assert [canonical(m) for m in got] == [canonical(m) for m in want], \
            f"the late {kind} member recovered different messages"


def test_large_messages_reach_every_transport(start_server):
    """Messages far larger than a socket buffer (written in many pieces, read in many pieces)
    arrive whole on every transport, in order. (--max-pending above their sum: all three may
    be queued for a member at once.)"""
    srv, room = start(start_server, "--max-pending", str(8 * 1024 * 1024))

    async def main():
        members = await open_members(srv, room, [("ws", 1), ("line", 1), ("framed", 1),
                                                 ("chat", 1)])
        ws, line, framed, chat = members
        try:
            big_text = "".join(chr(0x41 + i % 26) for i in range(600_000)) + " ✓"
            big_bin = bytes((i * 7) & 0xFF for i in range(900_000))
            readers = asyncio.gather(*(collect(m, 3) for m in (ws, line, framed)),
                                     collect_lines(chat, 2))
            await line.send_json({"type": "chat", "user": "big", "text": big_text})
            await framed.send_binary(room, big_bin)
            await ws.send_json({"type": "chat", "user": "ws", "text": big_text[::-1]})
            views = await asyncio.wait_for(readers, 60)
            return views, big_text, big_bin, line.client_id, framed.client_id
        finally:
            for m in members:
                await m.close()

    (v_ws, v_line, v_framed, v_chat), big_text, big_bin, line_id, framed_id = \
        run(main(), timeout=120)
    for view in (v_ws, v_line, v_framed):
        assert [canonical(m) for m in view] == [canonical(m) for m in v_ws]
    # Everyone sees the server's one order (above); which of the three senders' messages came
    # first is the order they arrived in, which the test does not control (the WebSocket
    # client compresses its message with permessage-deflate: it is the shortest on the wire).
    texts = {m[3]["client_id"]: m[3]["text"] for m in v_ws if m[0] == "t"}
    bins = [m[2:] for m in v_ws if m[0] == "b"]
    assert texts[line_id] == big_text and big_text[::-1] in texts.values() and len(texts) == 2
    assert bins == [(framed_id, big_bin)]
    assert sorted(v_chat) == sorted([f"[big] {big_text}", f"[ws] {big_text[::-1]}"])
