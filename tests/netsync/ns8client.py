"""A small STYLY NetSync protocol 8 client for roomcast's tests, written from
/work/shared/netsync-protocol-v8.md (never from the reference's code).

* encoders for every client->server v8 message (HELLO, CLIENT_POSE with bodies built from flags,
  OBJECT_POSE, OWNERSHIP_REQUEST, RPC, GLOBAL/CLIENT_VAR_SET, CLIENT_VAR_CLEAR);
* strict decoders for every server->client one: any missing or trailing byte, bad UTF-8 or
  wrong version byte is an AssertionError, so a server bug shows as a test failure;
* ``Client8``: control DEALER (control port, also the unicast downlink), pose DEALER (pose port)
  and SUB (PUB port) for one room;
* ``start_server8()``: roomcast with the v8 flags below, or the reference server when
  ``NETSYNC8_SERVER=reference`` (see reference.py; for validating these tests only).

Everything an implementer may name or decide differently is in the first section.
"""

import os
import socket
import struct
import time
import urllib.request

import zmq

# ============================================================================================
# ONE PLACE for names and decisions that the C implementation may settle differently
# ============================================================================================

# Server flags (the existing ones are --netsync-router-port/-pub-port/-discovery-port/
# -client-timeout/-tick; v8 ones are assumed to follow the same naming).
FLAGS = {
    "pose_port": "--netsync-pose-port",               # 0 = pick, printed in the startup log
    "client_timeout": "--netsync-v8-client-timeout",  # v8 default 5 s
    "idle_interval": "--netsync-v8-idle-interval",       # v8 default 2.0 s (not passed by default)
    "pose_rate_tick": "--netsync-v8-pose-tick",          # v8 default 0.1 s (not passed by default)
    "mapping_debounce": "--netsync-v8-mapping-debounce",  # v8 default 0.5 s (not passed by default)
    "nv_flush": "--netsync-v8-nv-flush",                 # v8 default 0.1 s (not passed by default)
}

# Spec defaults (§4.11) - tests derive generous deadlines from these.
SPEC_TIMINGS = {
    "client_timeout": 5.0, "cleanup_interval": 1.0, "idle_interval": 2.0, "pose_tick": 0.1,
    "mapping_debounce": 0.5, "nv_flush": 0.1,
}

# Timings the fixtures pass to the server (only these flags are given on the command line).
FAST = {"client_timeout": 1.5}
STEADY = {"client_timeout": 60}

# Decisions for the implementers (adjust here, not in the tests).
DECISIONS = {
    # server version announced in DEVICE_ID_MAPPING to v8 clients: major.minor accepted
    "mapping_versions": {(0, 16)},
    # version bytes sent to unsupported generations (HELLO v7, CLIENT_POSE v2..6): must fail their
    # major.minor check; the brief says 00 10 03
    "unsupported_mapping_version": (0, 16),
    # can a v0.6 client and a v8 client share one room? No (docs/netsync.md, "One room, one
    # generation"): v0.6 control messages on the room's PUB topic would reach v8 clients
    "mixed_rooms": False,
    # ownership request (op 2) on an object owned by another client: True = granted (reference),
    # False = rejected with OWNERSHIP_REJECTED
    "ownership_request_steals": True,
    # a pose with trailing bytes: "strip" (relayed without them), "drop", or None = either
    "pose_trailing": None,
    # a pose with another live device's deviceId from another pose DEALER is refused too
    "pose_lane_bound_to_device": True,
}

# Counters of dropped input: Prometheus lines at GET /metrics (today's
# roomcast_netsync_dropped_total{reason="..."}). Tests only assert that the total grows.
DROPPED_METRIC = "roomcast_netsync_dropped_total"
DROPPED_METRIC_V8 = "roomcast_netsync_v8_dropped_total"
# where clients of unsupported generations (HELLO v7, CLIENT_POSE v2..6) are counted
UNSUPPORTED_METRIC = DROPPED_METRIC

# ============================================================================================
# Encoding (client -> server), little-endian
# ============================================================================================

T_RPC, T_MAP, T_GSET, T_GSYNC, T_CSET, T_CSYNC = 3, 6, 7, 8, 9, 10
T_POSE, T_ROOM_POSE, T_OBJ_POSE, T_ROOM_OBJ, T_OWN_REQ, T_OWN_CHG, T_OWN_REJ = (
    11, 12, 13, 14, 15, 16, 17)
T_CLEAR, T_HELLO = 18, 19
VERSION = 8

F_STEALTH, F_PHYS, F_HEAD, F_RIGHT, F_LEFT, F_VIRT, F_MOVING = 1, 2, 4, 8, 16, 32, 64
ENC_DEFAULT, ENC_MOVING = 0x1F, 0x0F


def b_(s):
    return s.encode() if isinstance(s, str) else bytes(s)


def str8(s):
    s = b_(s)
    assert len(s) <= 255
    return bytes([len(s)]) + s


def str16(s):
    s = b_(s)
    return struct.pack("<H", len(s)) + s


def hello(dev, stealth=False, ver=VERSION):
    return bytes([T_HELLO, ver, 1 if stealth else 0]) + str8(dev)


def _fill(n, seed):
    return bytes((seed * 31 + i * 7 + 3) & 0xFF for i in range(n))


def make_body(seq=1, flags=F_PHYS | F_HEAD | F_RIGHT | F_LEFT | F_VIRT, enc=None, nvirt=2,
              seed=0):
    """A well-formed pose BODY (§3.3). Field contents are arbitrary deterministic bytes
    (the server relays them); the structure follows the flags."""
    if enc is None:
        enc = ENC_MOVING if flags & F_MOVING else ENC_DEFAULT
    if flags & F_STEALTH:
        flags, nvirt = F_STEALTH, 0
    out = struct.pack("<HBB", seq & 0xFFFF, flags, enc)
    if flags & F_PHYS:
        out += _fill(8, seed + 1)
    if flags & F_HEAD:
        out += _fill(13, seed + 2)
        if flags & F_RIGHT:
            out += _fill(10, seed + 3)
        if flags & F_LEFT:
            out += _fill(10, seed + 4)
    out += bytes([nvirt]) + _fill(10 * nvirt, seed + 5)
    return out


STEALTH_POSE_BODY = struct.pack("<HBB", 0, F_STEALTH, ENC_DEFAULT) + b"\x00"


def pose(dev, body_bytes, ver=VERSION):
    return bytes([T_POSE, ver]) + str8(dev) + body_bytes


def obj_body(seed=0):
    return _fill(13, seed + 9)


def object_pose(dev, obj, seq, body13, ver=VERSION):
    assert len(body13) == 13
    return bytes([T_OBJ_POSE, ver]) + str8(dev) + struct.pack("<IH", obj, seq) + body13


OP_RELEASE, OP_REQUEST = 1, 2


def ownership(dev, op, obj, ver=VERSION):
    return bytes([T_OWN_REQ, ver]) + str8(dev) + struct.pack("<BI", op, obj)


def rpc8(dev, name, args, targets=(), sender=0):
    return (bytes([T_RPC]) + struct.pack("<H", sender) + str8(dev) + bytes([len(targets)]) +
            b"".join(struct.pack("<H", t) for t in targets) + str8(name) + str16(args))


def gvar8(dev, name, value, sender=0):
    return bytes([T_GSET]) + struct.pack("<H", sender) + str8(dev) + str8(name) + str16(value)


def cvar8(dev, target, name, value, sender=0):
    return (bytes([T_CSET]) + struct.pack("<H", sender) + str8(dev) + struct.pack("<H", target) +
            str8(name) + str16(value))


def clear8(dev, sender=0):
    return bytes([T_CLEAR]) + struct.pack("<H", sender) + str8(dev)


# ============================================================================================
# Strict decoding (server -> client)
# ============================================================================================

class Rd:
    def __init__(self, b):
        self.b, self.o = bytes(b), 0

    def take(self, n):
        assert self.o + n <= len(self.b), f"server message overruns ({self.b.hex()})"
        v = self.b[self.o:self.o + n]
        self.o += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("<H", self.take(2))[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def f64(self):
        return struct.unpack("<d", self.take(8))[0]

    def s8(self):
        return self.take(self.u8()).decode("utf-8")          # strict

    def s16(self):
        return self.take(self.u16()).decode("utf-8")

    def end(self):
        assert self.o == len(self.b), f"trailing bytes in server message ({self.b.hex()})"


def body_len(b, o=0):
    """Length of the pose BODY starting at b[o] (parsed from its flags, §3.3)."""
    r = Rd(b)
    r.o = o
    r.u16()
    flags, enc = r.u8(), r.u8()
    if flags & F_PHYS:
        assert flags & F_MOVING or enc & 0x10, "PhysicalValid without MovingFloorLocal/bit4"
        r.take(8)
    if flags & F_HEAD:
        r.take(13)
        if flags & F_RIGHT:
            r.take(10)
        if flags & F_LEFT:
            r.take(10)
    nv = r.u8()
    assert nv <= 50, f"nVirt {nv} > 50 relayed"
    r.take(10 * nv)
    return r.o - o


def decode8(payload):
    """Decode one server->client v8 payload into a tuple; strict."""
    r = Rd(payload)
    t = r.u8()
    if t == T_MAP:
        ver = (r.u8(), r.u8(), r.u8())
        ents = []
        for _ in range(r.u16()):
            no, st, dev = r.u16(), r.u8(), r.s8()
            assert st in (0, 1), f"isStealth {st}"
            ents.append((no, st, dev))
        out = ("map", ver, ents)
    elif t == T_GSYNC:
        out = ("gsync", [(r.s8(), r.s16(), r.u16()) for _ in range(r.u16())])
    elif t == T_CSYNC:
        cl = []
        for _ in range(r.u16()):
            no = r.u16()
            cl.append((no, [(r.s8(), r.s16(), r.u16()) for _ in range(r.u16())]))
        out = ("csync", cl)
    elif t == T_RPC:
        sender, dev = r.u16(), r.s8()
        targets = [r.u16() for _ in range(r.u8())]
        out = ("rpc", sender, dev, targets, r.s8(), r.s16())
    elif t == T_OWN_CHG:
        out = ("changed", r.u32(), r.u16(), r.u16())
    elif t == T_OWN_REJ:
        out = ("rejected", r.u32(), r.u16(), r.u8())
    elif t == T_ROOM_POSE:
        assert r.u8() == VERSION, "ROOM_POSE version"
        room, bt = r.s8(), r.f64()
        ents = []
        for _ in range(r.u16()):
            no, pt = r.u16(), r.f64()
            n = body_len(r.b, r.o)
            ents.append((no, pt, r.take(n)))
        out = ("pose", room, bt, ents)
    elif t == T_ROOM_OBJ:
        assert r.u8() == VERSION, "ROOM_OBJECTS version"
        bt = r.f64()
        ents = []
        for _ in range(r.u16()):
            obj, owner, seq, pt = r.u32(), r.u16(), r.u16(), r.f64()
            ents.append((obj, owner, seq, pt, r.take(13)))
        out = ("objects", bt, ents)
    else:
        raise AssertionError(f"unexpected v8 server message type {t}: {payload.hex()}")
    r.end()
    return out


# ============================================================================================
# Client
# ============================================================================================

class Client8:
    """One v8 client in one room: control DEALER, pose DEALER, SUB."""

    def __init__(self, ctx, server, room, dev, sub=True, pose_lane=True, hello_now=True,
                 stealth=False):
        self.room = b_(room)
        self.dev = dev
        self.server = server
        self.ctl = ctx.socket(zmq.DEALER)
        self.ctl.setsockopt(zmq.LINGER, 0)
        self.ctl.connect(f"tcp://127.0.0.1:{server.router_port}")
        self.pl = None
        if pose_lane:
            self.pl = ctx.socket(zmq.DEALER)
            self.pl.setsockopt(zmq.LINGER, 0)
            self.pl.connect(f"tcp://127.0.0.1:{server.pose_port}")
        self.sub = None
        if sub:
            self.sub = ctx.socket(zmq.SUB)
            self.sub.setsockopt(zmq.LINGER, 0)
            self.sub.setsockopt(zmq.SUBSCRIBE, self.room)
            self.sub.connect(f"tcp://127.0.0.1:{server.pub_port}")
        self.ctl_log = []      # every decoded control message received, in order
        self.pub_log = []
        if hello_now:
            self.hello(stealth)

    # -- sending
    def send_ctl(self, payload, room=None):
        self.ctl.send_multipart([self.room if room is None else b_(room), payload])

    def send_pl(self, payload, room=None):
        self.pl.send_multipart([self.room if room is None else b_(room), payload])

    def hello(self, stealth=False):
        self.send_ctl(hello(self.dev, stealth))

    def pose(self, body_bytes):
        self.send_pl(pose(self.dev, body_bytes))

    def rpc(self, name, args, targets=(), sender=0):
        self.send_ctl(rpc8(self.dev, name, args, targets, sender))

    def gvar(self, name, value, sender=0):
        self.send_ctl(gvar8(self.dev, name, value, sender))

    def cvar(self, target, name, value, sender=0):
        self.send_ctl(cvar8(self.dev, target, name, value, sender))

    def clear(self):
        self.send_ctl(clear8(self.dev))

    def own(self, op, obj):
        self.send_ctl(ownership(self.dev, op, obj))

    def obj_pose(self, obj, seq, body13):
        self.send_pl(object_pose(self.dev, obj, seq, body13))

    # -- receiving
    def recv_ctl(self, timeout=2.0):
        if not self.ctl.poll(max(0, int(timeout * 1000))):
            return None
        frames = self.ctl.recv_multipart()
        assert len(frames) == 2, f"unicast must be [room][payload], got {len(frames)} frames"
        assert frames[0] == self.room, f"unicast for room {frames[0]!r} on {self.room!r}"
        m = decode8(frames[1])
        self.ctl_log.append(m)
        return m

    def recv_pub(self, timeout=2.0, objects=True):
        """Next ROOM_POSE (topic == room) or ROOM_OBJECTS (topic == room+"\\0obj"); other
        topics sharing the prefix are skipped, like the clients do."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sub.poll(int(left * 1000) + 1):
                return None
            frames = self.sub.recv_multipart()
            assert len(frames) == 2, f"PUB message must be 2 frames, got {len(frames)}"
            topic, payload = frames
            if topic == self.room:
                m = decode8(payload)
                assert m[0] == "pose", f"{m[0]} on the room topic"
                assert m[1] == self.room.decode(), "ROOM_POSE roomId != topic"
            elif topic == self.room + b"\0obj":
                m = decode8(payload)
                assert m[0] == "objects", f"{m[0]} on the objects topic"
                if not objects:
                    continue
            else:
                continue
            self.pub_log.append(m)
            return m

    @staticmethod
    def _until(recv, pred, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            m = recv(left)
            if m is None:
                return None
            if pred(m):
                return m

    def ctl_until(self, pred, timeout=5.0):
        return self._until(self.recv_ctl, pred, timeout)

    def pub_until(self, pred, timeout=5.0):
        return self._until(self.recv_pub, pred, timeout)

    def drain_ctl(self, duration=0.0):
        out = []
        deadline = time.monotonic() + duration
        while True:
            m = self.recv_ctl(max(0.0, deadline - time.monotonic()))
            if m is None:
                return out
            out.append(m)

    def number(self, timeout=6.0):
        """Own number from the first mapping listing this device (checks the version)."""
        m = self.ctl_until(lambda m: m[0] == "map" and any(d == self.dev for _, _, d in m[2]),
                           timeout)
        assert m, f"no DEVICE_ID_MAPPING listing {self.dev}"
        assert m[1][:2] in DECISIONS["mapping_versions"], f"mapping version {m[1]}"
        self.no = {d: no for no, _, d in m[2]}[self.dev]
        return self.no

    def close(self):
        for s in (self.ctl, self.pl, self.sub):
            if s is not None:
                s.close(0)


def raw_dealer(ctx, port):
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    d.connect(f"tcp://127.0.0.1:{port}")
    return d


def recv_frames(sock, timeout):
    if not sock.poll(int(timeout * 1000)):
        return None
    return sock.recv_multipart()


def pose_entries(m):
    """{clientNo: body} of a decoded ROOM_POSE."""
    return {no: b for no, _, b in m[3]}


# ============================================================================================
# Servers
# ============================================================================================

def server_flags(timings):
    args = [FLAGS["pose_port"], "0"]
    for k, v in timings.items():
        args += [FLAGS[k], str(v)]
    return args


def start_server8(timings):
    """roomcast (conftest.NSServer with the pose port) or, with NETSYNC8_SERVER=reference,
    the reference server from the mirror (reference.py)."""
    if os.environ.get("NETSYNC8_SERVER") == "reference":
        import reference
        return reference.RefServer(timings)
    from conftest import NSServer
    s = NSServer(*server_flags(timings))
    assert s.pose_port, "no pose port in the startup log"
    return s


def metrics(server):
    """{metric line name (with labels): value} from /metrics, or None (no HTTP listener)."""
    port = getattr(server, "http_port", None)
    if not port or getattr(server, "reference", False):
        return None
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for ln in text.splitlines():
        if ln and not ln.startswith("#"):
            k, _, v = ln.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def counter_total(server, name):
    """Sum of every labelled line of metric ``name`` (None without /metrics)."""
    m = metrics(server)
    if m is None:
        return None
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


def dropped_total(server):
    """Both generations' drop counters (roomcast keeps protocol 8's in their own family)."""
    a = counter_total(server, DROPPED_METRIC)
    b = counter_total(server, DROPPED_METRIC_V8)
    return None if a is None and b is None else (a or 0) + (b or 0)


def discover_udp(port, timeout=1.5, payload=b"STYLY-NETSYNC-DISCOVER"):
    """All datagrams answering one UDP discovery request."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(timeout)
    out = []
    try:
        u.sendto(payload, ("127.0.0.1", port))
        while True:
            try:
                data, _ = u.recvfrom(2048)
            except socket.timeout:
                return out
            out.append(data)
            u.settimeout(0.5)
    finally:
        u.close()



