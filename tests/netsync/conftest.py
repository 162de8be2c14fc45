"""Fixtures and a small NetSync client for roomcast's NetSync integration tests.

Run with Debian's interpreter and python3-zmq:

    ROOMCAST_BIN=build/sanitize/roomcast /usr/bin/python3 -m pytest tests/netsync

* ``NSServer``: one roomcast started with every port 0; the NetSync ports are parsed from its
  ``roomcast: netsync router tcp://A:P pub tcp://A:P discovery A:P`` line. ``stop()`` sends
  SIGTERM and the fixtures assert exit status 0 (ASan leaks and UB make it non-zero).
* ``Client``: a DEALER + SUB pair like the Unity/Python clients, with encoders for every
  client->server message and a decoder for every server->client one. It drops frames whose
  topic is not exactly its room (ZeroMQ subscriptions are prefix matches), as Unity does.

Short timeouts are passed as flags (``--netsync-client-timeout``) so the suite stays fast;
waits are generous bounds against hangs, never timing assertions unless a test says so.
"""

import os
import re
import signal
import struct
import subprocess
import tempfile
import time
import urllib.request

import pytest
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
NS_RE = re.compile(r"roomcast: netsync router tcp://(\S+):(\d+) (?:\S+ \S+ )*?pub tcp://\S+:(\d+) "
                   r"(?:\S+ \S+ )*?discovery \S+:(\d+)")
# protocol 8's pose (transform) ROUTER, wherever the netsync line prints it
POSE_RE = re.compile(r"roomcast: netsync .*\bpose tcp://\S+:(\d+)")
HTTP_RE = re.compile(r"roomcast: listening on http://\S+:(\d+)/")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 20.0
CLIENT_TIMEOUT = 0.4            # --netsync-client-timeout used by the module server

NAN = float("nan")


def roomcast_bin():
    path = os.environ.get("ROOMCAST_BIN") or os.path.join(REPO, "build", "sanitize", "roomcast")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        pytest.fail(f"roomcast binary not found: {path} (set ROOMCAST_BIN)", pytrace=False)
    return path


class NSServer:
    def __init__(self, *flags, netsync=True):
        self.errf = tempfile.NamedTemporaryFile(prefix="roomcast-ns-", suffix=".log",
                                                delete=False)
        args = [roomcast_bin(), "--port", "0"]
        if netsync:
            args += ["--netsync-router-port", "0", "--netsync-pub-port", "0",
                     "--netsync-discovery-port", "0", "--netsync-pose-port", "0"]
        args += [str(f) for f in flags]
        # ROOMCAST_ZMQ_ENGINE=native|libzmq runs the suite on either ZeroMQ engine
        if os.environ.get("ROOMCAST_ZMQ_ENGINE") and "--zmq-engine" not in args:
            args += ["--zmq-engine", os.environ["ROOMCAST_ZMQ_ENGINE"]]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.errf,
                                     cwd=tempfile.gettempdir())
        self.router_port = self.pub_port = self.disc_port = self.pose_port = None
        deadline = time.monotonic() + START_TIMEOUT
        want_ns = netsync
        want_pose = "--netsync-pose-port" in args
        while time.monotonic() < deadline:
            text = self.stderr()
            m = NS_RE.search(text)
            pm = POSE_RE.search(text)
            if pm:
                self.pose_port = int(pm.group(1))
            if HTTP_RE.search(text) and (m or not want_ns) and (pm or not want_pose):
                self.http_port = int(HTTP_RE.search(text).group(1))
                if m:
                    self.host = m.group(1)
                    self.router_port, self.pub_port, self.disc_port = (
                        int(m.group(2)), int(m.group(3)), int(m.group(4)))
                    p = POSE_RE.search(text)
                    self.pose_port = int(p.group(1)) if p else None
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.proc.kill()
        pytest.fail("roomcast did not start:\n" + self.stderr())

    def stderr(self):
        with open(self.errf.name, "r", errors="replace") as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        os.unlink(self.errf.name) if rc == 0 else None
        return rc


@pytest.fixture(scope="module")
def server():
    s = NSServer("--netsync-client-timeout", CLIENT_TIMEOUT)
    yield s
    err = s.stderr()
    rc = s.stop()
    assert rc == 0, f"roomcast exited with {rc}:\n{err[-5000:]}"


@pytest.fixture(scope="module")
def steady_server():
    """A server whose clients do not time out during a test (NV, RPC)."""
    s = NSServer("--netsync-client-timeout", 10)
    yield s
    err = s.stderr()
    rc = s.stop()
    assert rc == 0, f"roomcast exited with {rc}:\n{err[-5000:]}"


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


# --------------------------------------------------------------------------------------------
# /metrics (the NetSync series)
# --------------------------------------------------------------------------------------------

def metrics(server):
    """/metrics as {'name{labels}': value} for the NetSync series."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("roomcast_netsync_"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def gone(m, sock, reason):
    return m.get(f'roomcast_netsync_disconnects_total{{socket="{sock}",reason="{reason}"}}', 0)


def open_conns(m, sock):
    return m.get(f'roomcast_netsync_connections{{socket="{sock}"}}', 0)


def wait_metrics(server, pred, timeout=5.0):
    """metrics(server) once pred holds for it, or the last read at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        m = metrics(server)
        if pred(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.05)



# --------------------------------------------------------------------------------------------
# Encoding (client -> server)
# --------------------------------------------------------------------------------------------

def str8(b):
    b = b.encode() if isinstance(b, str) else b
    return bytes([len(b)]) + b


def str16(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack("<H", len(b)) + b


def body(seed=0.0):
    return struct.pack("<24f", *[seed + i * 0.25 for i in range(24)])


STEALTH_BODY = struct.pack("<24f", *([NAN] * 24))


def transform(device, body_bytes=None, virt=b"", nvirt=None):
    body_bytes = body(1.0) if body_bytes is None else body_bytes
    n = len(virt) // 24 if nvirt is None else nvirt
    return b"\x01" + str8(device) + body_bytes + bytes([n]) + virt


def rpc(sender, name, args):
    return b"\x03" + struct.pack("<H", sender) + str8(name) + str16(args)


def gvar(sender, name, value, ts):
    return b"\x07" + struct.pack("<H", sender) + str8(name) + str16(value) + struct.pack("<d", ts)


def cvar(sender, target, name, value, ts):
    return (b"\x09" + struct.pack("<HH", sender, target) + str8(name) + str16(value) +
            struct.pack("<d", ts))


# --------------------------------------------------------------------------------------------
# Decoding (server -> client), strict: any leftover or overrun is a test failure
# --------------------------------------------------------------------------------------------

class Rd:
    def __init__(self, b):
        self.b, self.o = b, 0

    def take(self, n):
        assert self.o + n <= len(self.b), "server message overruns"
        v = self.b[self.o:self.o + n]
        self.o += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("<H", self.take(2))[0]

    def f64(self):
        return struct.unpack("<d", self.take(8))[0]

    def s8(self):
        return self.take(self.u8()).decode()

    def s16(self):
        return self.take(self.u16()).decode()


def decode(payload):
    r = Rd(payload)
    t = r.u8()
    if t == 2:
        room = r.s8()
        n = r.u16()
        assert n > 0, "ROOM_TRANSFORM with count 0"
        ents = []
        for _ in range(n):
            no = r.u16()
            b = r.take(96)
            nv = r.u8()
            assert nv <= 50
            ents.append((no, b, r.take(24 * nv)))
        out = ("rt", room, ents)
    elif t == 3:
        out = ("rpc", r.u16(), r.s8(), r.take(r.u16()))
    elif t == 6:
        out = ("map", [(r.u16(), r.u8(), r.s8()) for _ in range(r.u16())])
    elif t == 8:
        out = ("gsync", [(r.s8(), r.s16(), r.f64(), r.u16()) for _ in range(r.u16())])
    elif t == 10:
        cl = []
        for _ in range(r.u16()):
            no = r.u16()
            cl.append((no, [(r.s8(), r.s16(), r.f64(), r.u16()) for _ in range(r.u16())]))
        out = ("csync", cl)
    else:
        raise AssertionError(f"unexpected server message type {t}")
    assert r.o == len(payload), "trailing bytes in server message"
    return out


class Client:
    """One NetSync client: DEALER (uplink) and SUB (downlink) for one room."""

    def __init__(self, ctx, server, room, device=None, sub=True, identity=None):
        self.room = room.encode() if isinstance(room, str) else room
        self.device = device
        self.dealer = ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            self.dealer.setsockopt(zmq.ROUTING_ID, identity)
        self.dealer.connect(f"tcp://127.0.0.1:{server.router_port}")
        self.sub = None
        if sub:
            self.sub = ctx.socket(zmq.SUB)
            self.sub.setsockopt(zmq.LINGER, 0)
            self.sub.setsockopt(zmq.SUBSCRIBE, self.room)
            self.sub.connect(f"tcp://127.0.0.1:{server.pub_port}")

    def send(self, payload, room=None, frames=None):
        self.dealer.send_multipart(frames if frames is not None
                                   else [self.room if room is None else room, payload])

    def send_transform(self, body_bytes=None, virt=b"", device=None):
        self.send(transform(device or self.device, body_bytes, virt))

    def recv(self, timeout=2.0):
        """Next decoded message on exactly this room's topic, or None."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sub.poll(int(left * 1000) + 1):
                return None
            frames = self.sub.recv_multipart()
            assert len(frames) == 2, f"downlink must be 2 frames, got {len(frames)}"
            if frames[0] != self.room:
                continue
            return decode(frames[1])

    def recv_until(self, pred, timeout=3.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            m = self.recv(left)
            if m is None:
                return None
            if pred(m):
                return m

    def collect(self, duration):
        out, deadline = [], time.monotonic() + duration
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            m = self.recv(left)
            if m is not None:
                out.append((time.monotonic(), m))

    def number(self, timeout=3.0):
        m = self.recv_until(lambda m: m[0] == "map" and any(d == self.device for _, _, d in m[1]),
                            timeout)
        assert m, f"no mapping with {self.device}"
        return {d: (no, st) for no, st, d in m[1]}[self.device][0]

    def close(self):
        self.dealer.close(0)
        if self.sub is not None:
            self.sub.close(0)


def wait_sub(timeout=0.3):
    """Give SUB connections time to subscribe (PUB drops messages for unknown subscribers)."""
    time.sleep(timeout)
