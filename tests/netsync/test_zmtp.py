"""NetSync's ZeroMQ sockets spoken to by hand and by every peer kind NetSync meets
(src/codec/zmtp.c, src/transport/zmtpsock.c; docs/netsync.md "ZeroMQ engines").

Interop tests run on both engines (--zmq-engine native and libzmq): the server's greeting must
be libzmq's byte for byte and step for step, a NetMQ-style ZMTP 3.0 peer, pyzmq's DEALER, REQ,
ROUTER and SUB (3.1 SUBSCRIBE commands) and a raw 3.0 SUB (subscription messages) must all work.
The malformed-greeting/frame battery runs on the native engine, where roomcast itself decides:
each bad peer is disconnected and counted, and the server goes on serving."""

import socket
import struct
import time

import pytest
import zmq
import zmq.utils.monitor

from conftest import Client, NSServer, decode, gone, metrics, transform, wait_metrics, wait_sub

ENGINES = ["native", "libzmq"]
LIBZMQ_GREETING = (b"\xff" + b"\x00" * 7 + b"\x01\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\x00")
                   + b"\x00" * 32)


def frame(body, more=False, command=False):
    flags = (1 if more else 0) | (4 if command else 0)
    if len(body) > 255:
        return bytes([flags | 2]) + struct.pack(">Q", len(body)) + body
    return bytes([flags, len(body)]) + body


def prop(name, value):
    return bytes([len(name)]) + name + struct.pack(">I", len(value)) + value


def ready(socket_type, identity=None):
    body = b"\x05READY" + prop(b"Socket-Type", socket_type)
    if identity is not None:
        body += prop(b"Identity", identity)
    return frame(body, command=True)


def greeting(minor=0):
    """What NetMQ 4 sends: libzmq's signature, version 3.0, NULL, as-server 0."""
    return (b"\xff" + b"\x00" * 7 + b"\x01\x7f" + bytes([3, minor]) + b"NULL".ljust(20, b"\x00")
            + b"\x00" * 32)


class Raw:
    """A TCP connection speaking ZMTP by hand."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def need(self, n, timeout=5.0):
        self.s.settimeout(timeout)
        while len(self.buf) < n:
            b = self.s.recv(65536)
            if not b:
                raise EOFError(f"closed after {len(self.buf)} bytes")
            self.buf += b
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def quiet_for(self, t=0.2):
        """Nothing more arrives for t seconds (what the server has sent so far is all)."""
        self.s.settimeout(t)
        try:
            b = self.s.recv(65536)
        except socket.timeout:
            return True
        self.buf += b
        return False

    def handshake(self, socket_type, identity=None, minor=0):
        """Greeting in NetMQ's (and libzmq's) three steps, then READY; returns the server's."""
        g = greeting(minor)
        self.s.sendall(g[:10])
        theirs = self.need(10)
        self.s.sendall(g[10:11])
        theirs += self.need(1)
        self.s.sendall(g[11:])
        theirs += self.need(53)
        self.s.sendall(ready(socket_type, identity))
        head = self.need(2)
        assert head[0] == 4, head
        body = self.need(head[1])
        assert body.startswith(b"\x05READY"), body
        return theirs, body

    def read_frame(self, timeout=5.0):
        flags = self.need(1, timeout)[0]
        size = struct.unpack(">Q", self.need(8))[0] if flags & 2 else self.need(1)[0]
        return flags, self.need(size)

    def read_message(self, timeout=5.0):
        out = []
        while True:
            flags, body = self.read_frame(timeout)
            if flags & 4:
                continue                                    # a command (PONG): not a message
            out.append(body)
            if not flags & 1:
                return out

    def closed(self, timeout=5.0):
        """The server closes the connection (whatever it sent before)."""
        self.s.settimeout(timeout)
        try:
            while self.s.recv(65536):
                pass
        except ConnectionResetError:
            pass
        except socket.timeout:
            return False
        return True

    def close(self):
        self.s.close()


@pytest.fixture(params=ENGINES)
def engine_server(request):
    s = NSServer("--zmq-engine", request.param, "--netsync-client-timeout", 10)
    s.engine = request.param
    yield s
    err = s.stderr()
    rc = s.stop()
    assert rc == 0, f"roomcast exited with {rc}:\n{err[-5000:]}"


@pytest.fixture
def native():
    s = NSServer("--zmq-engine", "native", "--netsync-client-timeout", 10)
    yield s
    err = s.stderr()
    rc = s.stop()
    assert rc == 0, f"roomcast exited with {rc}:\n{err[-5000:]}"


# ---- interop, both engines ------------------------------------------------------------------------

def test_greeting_is_libzmqs_step_by_step(engine_server):
    """The server sends its signature at once, its major version after ours, the rest after our
    major version: what lets a ZMTP 1.0/2.0 peer be detected (and what NetMQ expects)."""
    r = Raw(engine_server.router_port)
    assert r.need(10) == LIBZMQ_GREETING[:10]
    assert r.quiet_for(0.2), "sent more than its signature before ours"
    r.s.sendall(greeting()[:10])
    assert r.need(1) == b"\x03"
    assert r.quiet_for(0.2), "sent more than its major version before ours"
    r.s.sendall(greeting()[10:11])
    assert r.need(53) == LIBZMQ_GREETING[11:]
    r.s.sendall(greeting()[11:] + ready(b"DEALER"))
    head = r.need(2)
    body = r.need(head[1])
    assert body == b"\x05READY" + prop(b"Socket-Type", b"ROUTER") + prop(b"Identity", b"")
    r.close()


@pytest.mark.parametrize("minor", [0, 1])
def test_netmq_style_dealer_and_raw_sub(engine_server, ctx, minor):
    """A ZMTP 3.0 (NetMQ) or 3.1 peer by hand: DEALER with an Identity, SUB subscribing with a
    3.0 subscription message, PING answered with PONG carrying its context."""
    room = f"raw{minor}".encode()
    sub = Raw(engine_server.pub_port)
    _, body = sub.handshake(b"SUB", minor=minor)
    assert b"Socket-Type" in body
    sub.s.sendall(frame(b"\x01" + room))
    d = Raw(engine_server.router_port)
    d.handshake(b"DEALER", identity=b"netmq-" + room, minor=minor)
    d.s.sendall(frame(b"\x04PING\x00\x0a" + b"hb-ctx", command=True))
    flags, pong = d.read_frame()
    assert flags == 4 and pong == b"\x04PONGhb-ctx"
    wait_sub()
    other = Client(ctx, engine_server, room.decode(), "b", sub=False)
    deadline = time.monotonic() + 5
    seen = None
    while time.monotonic() < deadline and seen is None:
        d.s.sendall(frame(room, more=True) + frame(transform("a")))
        other.send_transform()
        try:
            topic, payload = sub.read_message(timeout=0.5)
        except socket.timeout:
            continue
        assert topic == room
        m = decode(payload)
        if m[0] == "rt" and len(m[2]) == 2:
            seen = m
    assert seen, "the raw peers' room never showed both clients"
    other.close(), d.close(), sub.close()


def handshake_ok(ctx, kind, port, identity=None):
    """A pyzmq socket of this kind connects; True when its handshake succeeded."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    if identity:
        s.setsockopt(zmq.ROUTING_ID, identity)
    mon = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
    s.connect(f"tcp://127.0.0.1:{port}")
    ok = False
    if mon.poll(5000):
        ev = zmq.utils.monitor.recv_monitor_message(mon)
        ok = ev["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
    mon.close(0)
    s.close(0)
    return ok


def test_pyzmq_socket_types(engine_server, ctx):
    """pyzmq (libzmq 4.3: ZMTP 3.1) DEALER, REQ and ROUTER complete their handshake with the
    ROUTERs, SUB and XSUB with the PUB; the other kinds are refused, as libzmq refuses them."""
    for kind in (zmq.DEALER, zmq.REQ, zmq.ROUTER):
        assert handshake_ok(ctx, kind, engine_server.router_port, b"r-%d" % kind), kind
        assert handshake_ok(ctx, kind, engine_server.pose_port), kind
    for kind in (zmq.SUB, zmq.XSUB):
        assert handshake_ok(ctx, kind, engine_server.pub_port), kind
    for kind, port in ((zmq.PUSH, engine_server.router_port), (zmq.SUB, engine_server.router_port),
                       (zmq.DEALER, engine_server.pub_port)):
        assert not handshake_ok(ctx, kind, port), kind


def test_pyzmq_client_round_trip(engine_server, ctx):
    """The conftest client (pyzmq DEALER + SUB) against each engine: two clients see each
    other in ROOM_TRANSFORM."""
    a = Client(ctx, engine_server, "rt-both", "a")
    b = Client(ctx, engine_server, "rt-both", "b")
    wait_sub()
    deadline = time.monotonic() + 5
    both = False
    while time.monotonic() < deadline and not both:
        a.send_transform(), b.send_transform()
        m = b.recv(0.3)
        both = bool(m and m[0] == "rt" and len(m[2]) == 2)
    assert both
    a.close(), b.close()


def test_zmq_sub_gets_only_its_topics(engine_server, ctx):
    a = Client(ctx, engine_server, "topic-a", "a")
    b = Client(ctx, engine_server, "topic-b", "b")
    prefix = ctx.socket(zmq.SUB)
    prefix.setsockopt(zmq.LINGER, 0)
    prefix.setsockopt(zmq.SUBSCRIBE, b"topic-")
    prefix.connect(f"tcp://127.0.0.1:{engine_server.pub_port}")
    wait_sub()
    for _ in range(5):
        a.send_transform()
        time.sleep(0.05)
    assert a.recv_until(lambda m: m[0] == "rt")
    topics = set()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and len(topics) < 2:
        a.send_transform(), b.send_transform()
        if prefix.poll(200):
            topics.add(prefix.recv_multipart()[0])
    assert topics == {b"topic-a", b"topic-b"}, "a prefix subscription gets both rooms"
    # b's SUB never sees room a
    b.sub.setsockopt(zmq.RCVTIMEO, 300)
    for _ in range(10):
        try:
            assert b.sub.recv_multipart()[0] == b"topic-b"
        except zmq.Again:
            pass
    prefix.close(0), a.close(), b.close()


# ---- the malformed battery, native engine ---------------------------------------------------------

@pytest.mark.parametrize("name,data,reason", [
    ("http", b"GET / HTTP/1.0\r\n\r\n", "protocol"),
    ("zmtp1", b"\x05\x00hello", "protocol"),                         # ZMTP 1.0: length, flags
    ("zmtp1-long", b"\xff" + b"\x00" * 8 + b"\x00", "protocol"),     # bit 0 of byte 10 clear
    ("zmtp2", b"\xff" + b"\x00" * 8 + b"\x7f\x01\x05", "protocol"),  # revision 1 = ZMTP 2.0
    ("curve", greeting()[:12] + b"CURVE".ljust(20, b"\x00") + b"\x00" * 32, "handshake"),
])
def test_bad_greetings_are_refused(native, name, data, reason):
    r = Raw(native.router_port)
    r.s.sendall(data)
    assert r.closed(), f"{name}: not closed"
    r.close()
    m = wait_metrics(native, lambda m: gone(m, "router", reason) == 1)
    assert gone(m, "router", reason) == 1, name


BAD_AFTER_GREETING = [
    ("data-before-ready", frame(b"room"), "handshake", "no_ready"),
    ("ping-before-ready", frame(b"\x04PING\x00\x00", command=True), "handshake", "no_ready"),
    ("sub-at-router", ready(b"SUB"), "handshake", "socket_type"),
    ("no-socket-type", frame(b"\x05READY" + prop(b"Identity", b"x"), command=True), "handshake",
     "socket_type"),
    ("metadata-overrun", frame(b"\x05READY\x0bSocket-Type\x00\x00\x00\x09DEALER", command=True),
     "handshake", "bad_metadata"),
    ("reserved-flag", ready(b"DEALER") + b"\x08\x01x", "protocol", "bad_flags"),
    ("command-with-more", ready(b"DEALER") + b"\x05\x01x", "protocol", "bad_flags"),
    ("command-in-message", ready(b"DEALER") + frame(b"r", more=True)
     + frame(b"\x04PING\x00\x00", command=True), "protocol", "command_in_message"),
    ("ready-twice", ready(b"DEALER") + ready(b"DEALER"), "protocol", "bad_command"),
    ("bad-ping", ready(b"DEALER") + frame(b"\x04PING", command=True), "protocol", "bad_command"),
    ("huge-frame", ready(b"DEALER") + b"\x02" + struct.pack(">Q", 1 << 40), "too_big",
     "frame_too_big"),
    ("peer-error", ready(b"DEALER") + frame(b"\x05ERROR\x03bye", command=True), "protocol",
     "peer_error"),
]


@pytest.mark.parametrize("name,data,reason,kind", BAD_AFTER_GREETING)
def test_bad_frames_are_refused(native, ctx, name, data, reason, kind):
    r = Raw(native.router_port)
    r.s.sendall(greeting(1))
    r.need(64)
    r.s.sendall(data)
    assert r.closed(), f"{name}: not closed"
    r.close()
    m = wait_metrics(native, lambda m: gone(m, "router", reason) == 1)
    assert gone(m, "router", reason) == 1, name
    errors = {k: v for k, v in m.items() if k.startswith("roomcast_netsync_zmtp_errors_total") and v}
    assert errors == {f'roomcast_netsync_zmtp_errors_total{{socket="router",kind="{kind}"}}': 1}
    # and the server still serves everyone else
    c = Client(ctx, native, "after-" + name, "a")
    wait_sub()
    c.send_transform()
    assert c.recv_until(lambda m: m[0] == "rt"), "server stopped serving"
    c.close()


def test_error_command_says_why(native):
    """Past the greeting, a refused peer is told why in an ERROR command before the close."""
    r = Raw(native.router_port)
    r.s.sendall(greeting(1))
    r.need(64)
    r.s.sendall(ready(b"PUSH"))
    flags, body = r.read_frame()
    if body.startswith(b"\x05READY"):                                   # ours comes first
        flags, body = r.read_frame()
    assert flags == 4 and body.startswith(b"\x05ERROR")
    assert body[7:] == b"invalid socket type"
    assert r.closed()
    r.close()


def test_byte_by_byte_session(native, ctx):
    """A peer that writes one byte per segment: the server resumes at every byte."""
    room = b"slow"
    watcher = Client(ctx, native, "slow", "w")
    wait_sub()
    r = Raw(native.router_port)
    r.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = greeting(0) + ready(b"DEALER", b"trickle") + frame(room, more=True) + \
        frame(transform("t"))
    for i in range(len(data)):
        r.s.send(data[i:i + 1])
        if i % 16 == 0:
            time.sleep(0.001)
    deadline = time.monotonic() + 5
    seen = False
    while time.monotonic() < deadline and not seen:
        watcher.send_transform()
        r.s.sendall(frame(room, more=True) + frame(transform("t")))
        m = watcher.recv(0.3)
        seen = bool(m and m[0] == "rt" and len(m[2]) == 2)
    assert seen
    watcher.close(), r.close()


def test_duplicate_identity_gets_its_own(native, ctx):
    """Two peers with the same Identity: the second gets a generated routing id and both are
    served (libzmq would ignore the second one's messages while the first is connected)."""
    a = Client(ctx, native, "dup", "a", identity=b"same")
    b = Client(ctx, native, "dup", "b", identity=b"same")
    wait_sub()
    deadline = time.monotonic() + 5
    both = False
    while time.monotonic() < deadline and not both:
        a.send_transform(), b.send_transform()
        m = a.recv(0.3)
        both = bool(m and m[0] == "rt" and len(m[2]) == 2)
    assert both
    a.close(), b.close()


def test_libzmq_heartbeats_answered(engine_server, ctx):
    """A libzmq DEALER with ZMTP heartbeats (PING every 100 ms, 300 ms to answer) stays
    connected: the server answers each PING with a PONG (on native: counted)."""
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    d.setsockopt(zmq.HEARTBEAT_IVL, 100)
    d.setsockopt(zmq.HEARTBEAT_TIMEOUT, 300)
    mon = d.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
    d.connect(f"tcp://127.0.0.1:{engine_server.router_port}")
    assert mon.poll(5000)
    assert zmq.utils.monitor.recv_monitor_message(mon)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
    assert not mon.poll(1500), "the DEALER's heartbeat timed out: PINGs not answered"
    if engine_server.engine == "native":
        m = metrics(engine_server)
        assert m.get("roomcast_netsync_zmtp_pings_total", 0) >= 5
    mon.close(0)
    d.close(0)
