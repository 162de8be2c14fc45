#!/usr/bin/python3
"""py_tcp_server.py - the Python selectors peer for the roomcast benchmark (raw TCP).

Built the way the reactor chat server of the seed (shared/seeds/reactor-chat-server.zh.txt) is
built, and written for this benchmark: one process, one `selectors` reactor (epoll here), non-
blocking sockets, a deque of pending output per connection, EVENT_WRITE registered only while a
connection has output the kernel has not taken. It speaks roomcast's TCP line protocol
(docs/tcp.md, line mode: the room protocol of docs/protocol.md, one JSON object per line), so
the same generator drives both:

  {"type":"join","room":R}   -> {"type":"joined","room":R,"client_id":C,"last_msg_id":M,...}
  {"type":"leave","room":R}  -> {"type":"left","room":R}
  any other object           -> to every member, sender included: the object with
                                "room" (if absent), "client_id" and "msg_id" appended

The per-room msg_id is assigned in one place (Room.publish), on the only thread.

So that a room can mix wires as roomcast's rooms can (the fanout-mixed scenario), the HTTP port
serves a minimal RFC 6455 WebSocket on the same reactor (handshake, masked client frames,
ping/pong, close; no extensions), carrying the same room protocol in text frames.

Fair to it, on purpose:
  - a broadcast is encoded once per wire present in the room (the line and/or the WebSocket
    frame), never once per member, and it is spliced, not re-serialised: the sender's object
    text minus its closing brace, then ,"room":R,"client_id":C,"msg_id":N} (the object is
    parsed once with json.loads to validate it and read its type and room);
  - everything a connection is given during one reactor turn leaves in one send() at the end
    of the turn, and EVENT_WRITE is registered only when the kernel did not take it all. The
    seed instead registered EVENT_WRITE on every broadcast and wrote one send() per message
    from the write callback; --seed-writes does that, to measure what it costs;
  - TCP_NODELAY, reads of up to 64 KiB (see RECV_SIZE), lines split with bytes.split.

What roomcast does and this peer also does, cheaply: keepalive ({"type":"keepalive"} line or a
ping after 5 s without input, close 1011 after 5 s more), a slow-consumer limit (1 MiB queued:
the queue is dropped, close 1008, connection cut), error replies. Framed mode (the 00 52 43 01
preamble) is not implemented: such a client gets an error line and is closed. Rooms disappear
with their last member (roomcast keeps them for --room-ttl).

    /usr/bin/python3 bench/peers/py_tcp_server.py --bind 127.0.0.1 --port 0 --tcp-port 0
    -> stderr: "py-tcp-peer: tcp listening on 127.0.0.1:PORT"
               "py-tcp-peer: listening on http://127.0.0.1:PORT/"
"""
import argparse
import base64
import collections
import hashlib
import json
import os
import selectors
import signal
import socket
import sys
import time

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE
# 64 KiB, not more: recv(n) allocates n bytes and shrinks the result to what was read. Above
# glibc's mmap threshold (128 KiB) that is an mmap, an mremap and fresh page faults for every
# read, which cost this peer a third of its CPU in fanout (measured: 750-950 ns per delivery
# with 256 KiB reads, 490-590 ns with 64 KiB).
RECV_SIZE = 64 * 1024
MAX_MESSAGE = 1 << 20       # a line or a WebSocket message, as roomcast's --max-message-size
MAX_PENDING = 1 << 20       # queued output before a client is a slow consumer (--max-pending)
MAX_ROOMS = 64              # rooms per connection (--max-rooms-per-client)
MAX_ERRORS = 16             # error replies in a row before a TCP client is closed
PING_INTERVAL = 5.0         # s without input before a keepalive/ping
PING_TIMEOUT = 5.0          # s after it before the connection is closed
CLOSE_TIMEOUT = 1.0         # s a closing connection may take to take its last bytes
RESERVED = frozenset(("joined", "left", "error", "ack", "close"))
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEEPALIVE_LINE = b'{"type":"keepalive"}\n'
EPOCH = os.urandom(8).hex()

loads = json.loads


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def ws_frame(payload, opcode=0x1):
    """A server frame (FIN set, unmasked) around payload."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + payload


def unmask(payload, key):
    """XOR with the 4-byte key, as one big-integer operation (a Python loop per byte is slow)."""
    n = len(payload)
    if not n:
        return payload
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


class Room:
    __slots__ = ("name", "members", "fanout", "msg_id", "room_member")

    def __init__(self, name):
        self.name = name
        self.members = {}            # Conn -> None: insertion-ordered set
        self.fanout = ()             # the members as a tuple, rebuilt when they change: a
                                     # member cut off during a broadcast leaves safely
        self.msg_id = 0              # last msg_id assigned
        self.room_member = b',"room":' + dumps(name)   # spliced into messages without "room"

    def add(self, conn):
        self.members[conn] = None
        self.fanout = tuple(self.members)

    def remove(self, conn):
        """Returns True when the room is now empty."""
        self.members.pop(conn, None)
        self.fanout = tuple(self.members)
        return not self.members

    def publish(self, sender, text, msg, has_room):
        """Sequence one message and queue it for every member, encoded once per wire."""
        self.msg_id += 1
        if msg and "client_id" not in msg and "msg_id" not in msg:
            body = text.rstrip(b" \t\r\n")                  # ends with the object's '}'
            payload = b"%b%b%b,\"msg_id\":%d}" % (body[:-1], b"" if has_room else self.room_member,
                                                 sender.client_part, self.msg_id)
        else:
            # Rare: members only the server may set are dropped (docs/protocol.md), or an
            # empty object; re-serialise in roomcast's member order.
            msg.pop("client_id", None)
            msg.pop("msg_id", None)
            msg.setdefault("room", self.name)
            msg["client_id"] = sender.id
            msg["msg_id"] = self.msg_id
            payload = dumps(msg)
        line = frame = None
        for m in self.fanout:
            if m.ws:
                if frame is None:
                    frame = ws_frame(payload)
                m.queue(frame)
            else:
                if line is None:
                    line = payload + b"\n"
                m.queue(line)


class Server:
    def __init__(self, seed_writes):
        self.sel = selectors.DefaultSelector()
        self.rooms = {}
        self.conns = set()
        self.dirty = []              # connections given output this turn
        self.next_id = 0
        self.now = time.monotonic()
        self.seed_writes = seed_writes

    def listen(self, host, port, ws):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(4096)
        s.setblocking(False)
        self.sel.register(s, EVENT_READ, Listener(self, s, ws))
        return s.getsockname()[1]

    def run(self):
        next_sweep = self.now + 1.0
        select = self.sel.select
        while True:
            events = select(max(0.0, next_sweep - self.now))
            self.now = time.monotonic()
            for key, mask in events:
                key.data.on_event(mask)
            if self.now >= next_sweep:
                self.sweep()
                next_sweep = self.now + 1.0
            if self.dirty:
                # Everything queued during the turn: one send() per connection.
                dirty, self.dirty = self.dirty, []
                for c in dirty:
                    c.dirty = False
                    if c.sock is not None and not c.want_write:
                        c.flush()

    def sweep(self):
        """Keepalive and close timeouts, once a second."""
        now = self.now
        for c in list(self.conns):
            if c.closing:
                if now - c.closing > CLOSE_TIMEOUT:
                    c.drop()
            elif c.ping_at:
                if c.last_in >= c.ping_at:
                    c.ping_at = 0.0
                elif now - c.ping_at > PING_TIMEOUT:
                    c.close(1011, "ping timeout")
            elif c.state != Conn.HTTP and now - c.last_in > PING_INTERVAL:
                c.ping_at = now
                c.queue(ws_frame(b"", 0x9) if c.ws else KEEPALIVE_LINE)


class Listener:
    __slots__ = ("server", "sock", "ws")

    def __init__(self, server, sock, ws):
        self.server, self.sock, self.ws = server, sock, ws

    def on_event(self, mask):
        while True:
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:          # EMFILE and friends: try again on the next event
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = Conn(self.server, sock, self.ws)
            self.server.conns.add(c)
            self.server.sel.register(sock, EVENT_READ, c)


class Conn:
    HTTP, LINE, WS = range(3)
    __slots__ = ("server", "sock", "ws", "state", "id", "client_part", "inbuf", "out", "pending",
                 "dirty", "want_write", "rooms", "last_in", "ping_at", "closing", "errors",
                 "skip_line", "frag")

    def __init__(self, server, sock, ws):
        server.next_id += 1
        self.server = server
        self.sock = sock
        self.ws = ws                 # True: WebSocket (after the upgrade); False: TCP lines
        self.state = Conn.HTTP if ws else Conn.LINE
        self.id = server.next_id
        self.client_part = b',"client_id":%d' % self.id
        self.inbuf = b""             # unparsed input
        self.out = collections.deque()  # pending output, oldest first
        self.pending = 0             # bytes in out
        self.dirty = False           # on server.dirty
        self.want_write = False      # EVENT_WRITE registered
        self.rooms = {}              # name -> Room
        self.last_in = server.now    # time of the last input
        self.ping_at = 0.0           # time of an unanswered keepalive/ping, 0 if none
        self.closing = 0.0           # time we started closing, 0 if open
        self.errors = 0              # error replies in a row
        self.skip_line = False       # dropping the rest of a too-long line
        self.frag = None             # WebSocket: fragments of a text message, or None

    # -- reactor callbacks ------------------------------------------------------------------

    def on_event(self, mask):
        if mask & EVENT_READ:
            self.on_read()
        if mask & EVENT_WRITE and self.sock is not None:
            self.flush()

    def on_read(self):
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.drop()
            return
        if not data:
            self.drop()
            return
        self.last_in = self.server.now
        if self.closing:
            return                   # input is no longer read once we said goodbye
        if self.inbuf:
            data = self.inbuf + data
            self.inbuf = b""
        if self.state == Conn.LINE:
            self.on_lines(data)
        elif self.state == Conn.WS:
            self.on_frames(data)
        else:
            self.on_http(data)

    # -- output ------------------------------------------------------------------------------

    def queue(self, data):
        if self.closing:
            return
        self.out.append(data)
        self.pending += len(data)
        if self.pending > MAX_PENDING:
            self.cut_slow()
            return
        if self.server.seed_writes:
            # The seed's way: write interest on every broadcast, one send() per message.
            if not self.want_write:
                self.server.sel.modify(self.sock, EVENT_READ | EVENT_WRITE, self)
                self.want_write = True
        elif not self.dirty:
            self.dirty = True
            self.server.dirty.append(self)

    def flush(self):
        out = self.out
        while out:
            if self.server.seed_writes:
                data = out.popleft()
            else:
                data = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
            try:
                n = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self.drop()
                return
            self.pending -= n
            if n < len(data):
                out.appendleft(data[n:])
                if not self.want_write:
                    self.server.sel.modify(self.sock, EVENT_WRITE if self.closing else
                                           EVENT_READ | EVENT_WRITE, self)
                    self.want_write = True
                return
        if self.closing:
            self.drop()              # said everything; roomcast waits for the client's EOF,
            return                   # we simply close
        if self.want_write:
            self.server.sel.modify(self.sock, EVENT_READ, self)
            self.want_write = False

    def cut_slow(self):
        """A slow consumer: its unsent messages are dropped, then it is closed with 1008. What a
        partial write left unsent (out[0] while EVENT_WRITE is registered) starts in the middle
        of a message, so it is kept: the client must never see half a message."""
        head = self.out[0] if self.want_write else None
        self.out.clear()
        self.pending = 0
        if head is not None:
            self.out.append(head)
            self.pending = len(head)
        self.close(1008, "slow consumer")

    def close(self, code, reason):
        """Say why (a close line or frame), then cut the connection once that is written."""
        if self.closing or self.sock is None:
            return
        if self.ws:
            bye = ws_frame(code.to_bytes(2, "big") + reason.encode(), 0x8)
        else:
            bye = dumps({"type": "close", "code": code, "reason": reason}) + b"\n"
        self.out.append(bye)         # past the limit on purpose: it is the last thing sent
        self.pending += len(bye)
        self.leave_all()
        self.closing = self.server.now
        if not self.want_write:
            self.server.sel.modify(self.sock, EVENT_WRITE, self)
            self.want_write = True

    def drop(self):
        if self.sock is None:
            return
        self.leave_all()
        try:
            self.server.sel.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self.sock.close()
        self.sock = None
        self.server.conns.discard(self)

    def leave_all(self):
        for name, room in self.rooms.items():
            if room.remove(self):
                self.server.rooms.pop(name, None)
        self.rooms = {}

    def reply(self, obj):
        payload = dumps(obj)
        self.queue(ws_frame(payload) if self.ws else payload + b"\n")

    def error(self, code, message):
        self.reply({"type": "error", "code": code, "message": message})
        self.errors += 1
        if self.errors >= MAX_ERRORS and not self.ws:
            self.close(1008, "too many errors")

    # -- TCP line mode -----------------------------------------------------------------------

    def on_lines(self, data):
        if data[:1] == b"\0":
            self.reply({"type": "error", "code": "bad_preamble",
                        "message": "framed mode is not implemented by this peer"})
            self.close(1002, "framed mode not supported")
            return
        lines = data.split(b"\n")
        rest = lines.pop()
        if self.skip_line:           # the tail of a too-long line, up to its '\n'
            if not lines:
                return
            del lines[0]
            self.skip_line = False
        for line in lines:
            self.on_text(line, True)
            if self.closing or self.sock is None:
                return
        if len(rest) > MAX_MESSAGE:
            self.error("line_too_long", "a line is at most %d bytes" % MAX_MESSAGE)
            self.skip_line = True
            rest = b""
        self.inbuf = rest

    # -- the room protocol (both wires) ------------------------------------------------------

    def on_text(self, text, is_line):
        try:
            msg = loads(text)
        except UnicodeDecodeError:
            self.error("bad_utf8", "the text is not UTF-8")
            return
        except ValueError:
            if is_line and not text.strip(b" \t\r"):
                return               # blank lines mean nothing
            self.error("bad_json", "the text is not valid JSON")
            return
        if type(msg) is not dict:
            self.error("not_object", "a message must be a JSON object")
            return
        kind = msg.get("type")
        if kind == "join" or kind == "leave":
            self.join_leave(kind, msg.get("room"))
            return
        if kind in RESERVED:
            self.error("reserved_type", "type '%s' is reserved" % kind)
            return
        if kind == "keepalive":
            return                   # any input answers a keepalive; this one needs no reply
        name = msg.get("room")
        if name is None:
            if len(self.rooms) != 1:
                self.error("missing_field" if self.rooms else "not_member",
                           "name the room" if self.rooms else "not in a room")
                return
            room = next(iter(self.rooms.values()))
        else:
            room = self.rooms.get(name) if type(name) is str else None
            if room is None:
                self.error("not_member", "not a member of that room")
                return
        self.errors = 0
        room.publish(self, text, msg, name is not None)

    def join_leave(self, kind, name):
        if name is None:
            self.error("missing_field", "room is required")
            return
        if type(name) is not str or not name or "\0" in name or len(name.encode()) > 255:
            self.error("bad_field", "bad room name")
            return
        rooms = self.server.rooms
        if kind == "join":
            room = self.rooms.get(name)
            if room is None:
                if len(self.rooms) >= MAX_ROOMS:
                    self.error("too_many_rooms", "at most %d rooms" % MAX_ROOMS)
                    return
                room = rooms.get(name)
                if room is None:
                    room = rooms[name] = Room(name)
                room.add(self)
                self.rooms[name] = room
            self.errors = 0
            self.reply({"type": "joined", "room": name, "client_id": self.id,
                        "last_msg_id": room.msg_id, "epoch": EPOCH})
        else:
            room = self.rooms.pop(name, None)
            if room is None:
                self.error("no_such_room" if name not in rooms else "not_member",
                           "cannot leave " + name)
                return
            if room.remove(self):
                rooms.pop(name, None)
            self.errors = 0
            self.reply({"type": "left", "room": name})

    # -- WebSocket (HTTP port) ---------------------------------------------------------------

    def on_http(self, data):
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > 16384:
                self.drop()
            else:
                self.inbuf = data
            return
        head = data[:end].split(b"\r\n")
        headers = {}
        for h in head[1:]:
            k, _, v = h.partition(b":")
            headers[k.strip().lower()] = v.strip()
        key = headers.get(b"sec-websocket-key")
        if not head[0].startswith(b"GET ") or key is None or \
                headers.get(b"upgrade", b"").lower() != b"websocket":
            body = b"py-tcp-peer: a WebSocket endpoint\n"
            self.queue(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\nConnection: close\r\n"
                       b"\r\n%b" % (len(body), body))
            self.closing = self.server.now
            return
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        self.queue(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Accept: %b\r\n\r\n" % accept)
        self.state = Conn.WS
        if len(data) > end + 4:
            self.on_frames(data[end + 4:])

    def on_frames(self, buf):
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if not b1 & 0x80 or b0 & 0x70:
                self.close(1002, "unmasked frame or reserved bits")
                return
            ln, hl = b1 & 0x7F, 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln, hl = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln, hl = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if ln > MAX_MESSAGE:
                self.close(1009, "message too big")
                return
            start = pos + hl + 4
            if n - start < ln:
                break
            payload = unmask(buf[start:start + ln], buf[start - 4:start])
            pos = start + ln
            op, fin = b0 & 0x0F, b0 & 0x80
            if op == 0x1 and fin and self.frag is None:
                self.on_text(payload, False)
            elif op == 0x1 or (op == 0x0 and self.frag is not None):
                if op == 0x1:
                    if self.frag is not None:
                        self.close(1002, "new message inside a fragmented one")
                        return
                    self.frag = []
                self.frag.append(payload)
                if fin:
                    text, self.frag = b"".join(self.frag), None
                    self.on_text(text, False)
            elif op == 0x2:
                self.error("bad_binary", "binary messages are not supported by this peer")
            elif op == 0x8:
                code = payload[:2] if len(payload) >= 2 else b""
                self.queue(ws_frame(code, 0x8))
                self.leave_all()
                self.closing = self.server.now
                if not self.want_write:
                    self.server.sel.modify(self.sock, EVENT_WRITE, self)
                    self.want_write = True
                return
            elif op == 0x9:
                self.queue(ws_frame(payload, 0xA))
            elif op == 0xA:
                pass
            else:
                self.close(1002, "bad opcode")
                return
            if self.closing or self.sock is None:
                return
        if pos < n:
            self.inbuf = buf[pos:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765, help="HTTP/WebSocket port (0: any)")
    ap.add_argument("--tcp-port", type=int, default=8766, help="raw TCP line port (0: any)")
    ap.add_argument("--seed-writes", action="store_true",
                    help="write like the seed: EVENT_WRITE per broadcast, one send() per message")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    server = Server(args.seed_writes)
    tcp_port = server.listen(args.bind, args.tcp_port, False)
    ws_port = server.listen(args.bind, args.port, True)
    print(f"py-tcp-peer: tcp listening on {args.bind}:{tcp_port}", file=sys.stderr, flush=True)
    print(f"py-tcp-peer: listening on http://{args.bind}:{ws_port}/", file=sys.stderr, flush=True)
    server.run()


if __name__ == "__main__":
    main()
