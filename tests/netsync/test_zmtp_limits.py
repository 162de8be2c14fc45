"""The abuse limits on NetSync's native ZeroMQ sockets (docs/limits.md, "ZeroMQ transports";
src/transport/zmtpsock.h's gate, src/app/limits.c's rc_limits_zmq_gate).

On --zmq-engine native the control ROUTER, the pose ROUTER and the PUB count every connection
in --connections-per-ip (one count per address, shared with every other listener: a WebSocket
and a ZMTP connection from one address share it) and in --max-connections (with the other
client connections), and give a connection --handshake-timeout to finish its greeting and
READY; all three are read at each accept, so a SIGHUP applies to the next connection. A refused
connection is closed before a byte is sent (ZMTP has no refusal before the greeting), counted
in roomcast_connections_refused_total{reason="per_ip"} or
roomcast_disconnects_total{reason="max_connections"}, and in
roomcast_netsync_disconnects_total{socket,reason="connection_limit"}.

The limits' own counters are read over connections from 127.0.0.2 (Linux routes all of
127/8 to the loopback), an address of its own, so reading them never takes one of the places
being tested. Waits are bounds against hangs; the only durations are the server's timeouts."""

import signal
import socket
import struct
import time

import zmq
import zmq.utils.monitor

from conftest import NSServer
from test_zmtp import Raw

SIGNATURE = b"\xff" + b"\x00" * 7 + b"\x01\x7f"   # the first 10 bytes we send
OTHER = "127.0.0.2"            # the observer's address (its own count)
THIRD = "127.0.0.3"            # a client address other than 127.0.0.1
WS_UPGRADE = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


class RawFrom(Raw):
    """A hand-driven ZMTP connection from a chosen loopback address."""

    def __init__(self, port, src="127.0.0.1"):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0))
        self.buf = b""

    def refused(self, timeout=5.0):
        """The server closed the connection without sending a single byte."""
        self.s.settimeout(timeout)
        got = self.buf
        try:
            while True:
                b = self.s.recv(65536)
                if not b:
                    break
                got += b
        except ConnectionResetError:
            pass
        return got == b""


def http(server, path, src=OTHER):
    """GET path on a fresh connection from src: (status, body)."""
    s = socket.create_connection(("127.0.0.1", server.http_port), timeout=5,
                                 source_address=(src, 0))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except ConnectionResetError:
        pass
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def metrics(server, src=OTHER):
    status, body = http(server, "/metrics", src)
    assert status == 200, (status, body[:200])
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def stats(server, src=OTHER):
    import json
    status, body = http(server, "/api/stats", src)
    assert status == 200, (status, body[:200])
    return json.loads(body)


def wait_for(fn, pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if pred(v) or time.monotonic() > deadline:
            return v
        time.sleep(0.03)


def per_ip(m):
    return m['roomcast_connections_refused_total{reason="per_ip"}']


def max_conn(m):
    return m['roomcast_disconnects_total{reason="max_connections"}']


def ns_gone(m, sock, reason):
    return m[f'roomcast_netsync_disconnects_total{{socket="{sock}",reason="{reason}"}}']


def ws_open(port, src="127.0.0.1"):
    """A WebSocket upgrade from src: (status, socket)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0))
    s.sendall(WS_UPGRADE)
    data = b""
    while b"\r\n\r\n" not in data:
        b = s.recv(4096)
        if not b:
            break
        data += b
    return int(data.split()[1]), s


def pyzmq_connected(ctx, kind, port, topic=None):
    """A pyzmq socket of kind connected to port once its handshake succeeded (else None)."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RECONNECT_IVL, 60000)     # a refused one must not come back by itself
    mon = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
    if topic is not None:
        s.setsockopt(zmq.SUBSCRIBE, topic)
    s.connect(f"tcp://127.0.0.1:{port}")
    ok = False
    if mon.poll(5000):
        ok = zmq.utils.monitor.recv_monitor_message(mon)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
    mon.close(0)
    if not ok:
        s.close(0)
        return None
    return s


def admitted(port, kind, src="127.0.0.1"):
    """A handshaken connection, retried while a place just freed is not yet released:
    (connection, refusals before it)."""
    refusals = 0
    deadline = time.monotonic() + 5
    while True:
        r = RawFrom(port, src)
        try:
            r.handshake(kind)
            return r, refusals
        except (EOFError, ConnectionResetError):
            r.close()
            refusals += 1
            assert time.monotonic() < deadline, "never admitted"
            time.sleep(0.05)


def start(*flags):
    return NSServer("--zmq-engine", "native", "--netsync-client-timeout", 10, *flags)


def stop_checked(s):
    err = s.stderr()
    rc = s.stop()
    assert rc == 0, f"roomcast exited with {rc}:\n{err[-5000:]}"


# ---- one count per address over the ROUTER, the PUB and the WebSocket listener ----------------

def test_per_ip_shared_by_router_pub_and_websocket(ctx):
    """--connections-per-ip 3: a pyzmq DEALER on the control ROUTER, a pyzmq SUB on the PUB and
    a WebSocket hold the address's three places; a fourth is refused on the pose ROUTER, the
    control ROUTER and the PUB (closed before any byte) and on the HTTP port (503), each
    counted; another address is not affected; one place freed, a ZMTP peer gets it."""
    s = start("--connections-per-ip", 3, "--ping-interval", 60)
    try:
        dealer = pyzmq_connected(ctx, zmq.DEALER, s.router_port)
        sub = pyzmq_connected(ctx, zmq.SUB, s.pub_port, b"room")
        assert dealer is not None and sub is not None
        status, ws = ws_open(s.http_port)
        assert status == 101
        for port in (s.pose_port, s.router_port, s.pub_port):
            assert RawFrom(port).refused(), port
        status, body = http(s, "/healthz", src="127.0.0.1")
        assert status == 503 and b"too many connections from your address (at most 3)" in body
        # another address has places of its own, on every socket
        elsewhere = RawFrom(s.router_port, THIRD)
        elsewhere.handshake(b"DEALER")
        pub_elsewhere = RawFrom(s.pub_port, THIRD)
        pub_elsewhere.handshake(b"SUB")
        m = metrics(s)
        assert per_ip(m) == 4
        assert ns_gone(m, "pose", "connection_limit") == 1
        assert ns_gone(m, "router", "connection_limit") == 1
        assert ns_gone(m, "pub", "connection_limit") == 1
        assert m["roomcast_client_addresses"] == 3           # .1, .3 and this request's .2
        assert m['roomcast_netsync_connections{socket="router"}'] == 2
        assert m['roomcast_netsync_connections{socket="pub"}'] == 2
        st = stats(s)
        assert st["limits"]["refused_per_ip"] == 4
        # the WebSocket leaves: its place goes to a ZMTP connection, and no more
        ws.close()
        taker, refusals = admitted(s.pose_port, b"DEALER")   # the WebSocket may linger a moment
        assert RawFrom(s.pose_port).refused()
        assert per_ip(metrics(s)) == 5 + refusals
        for c in (dealer, sub):
            c.close(0)
        for r in (elsewhere, pub_elsewhere, taker):
            r.close()
        m = wait_for(lambda: metrics(s), lambda m: m["roomcast_client_addresses"] == 1)
        assert m["roomcast_client_addresses"] == 1
        assert m['roomcast_netsync_connections{socket="router"}'] == 0
    finally:
        stop_checked(s)


# ---- counts released however connections end ----------------------------------------------

def test_counts_released_after_rounds_ended_every_way():
    """30 rounds of four connections from one address with --connections-per-ip 4 — a
    handshaken DEALER on the control ROUTER that closes (FIN or reset), a silent one on the PUB
    that the handshake timeout ends, one on the pose ROUTER that sends a malformed greeting, a
    handshaken DEALER the server cuts for a frame over the limit — plus a fifth, refused. No
    count leaks: every round's fifth is refused, and afterwards the full allowance is there."""
    s = start("--connections-per-ip", 4, "--handshake-timeout", 1,
              "--netsync-max-message-size", 8192)
    rounds = 30
    try:
        for i in range(rounds):
            a = RawFrom(s.router_port)
            a.handshake(b"DEALER")
            c = RawFrom(s.pose_port)
            assert c.need(10) == SIGNATURE                   # accepted (and silent so far)
            d = RawFrom(s.router_port)
            d.handshake(b"DEALER")
            b = RawFrom(s.pub_port)
            assert b.need(10) == SIGNATURE                   # accepted; silent from here on
            assert RawFrom(s.router_port if i % 2 else s.pub_port).refused(), i
            c.s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not ZMTP
            d.s.sendall(b"\x02" + struct.pack(">Q", 1 << 20))  # a 1 MiB frame announced
            if i % 2:
                a.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            a.close()
            assert c.closed() and d.closed(), i
            assert b.closed(), i                             # the handshake deadline
            for r in (b, c, d):
                r.close()
        m = wait_for(lambda: metrics(s), lambda m: m["roomcast_client_addresses"] == 1)
        assert per_ip(m) == rounds
        assert m["roomcast_client_addresses"] == 1
        assert ns_gone(m, "router", "connection_limit") + ns_gone(m, "pub", "connection_limit") \
            == rounds
        assert ns_gone(m, "pub", "handshake") == rounds                # the silent ones
        assert ns_gone(m, "pose", "protocol") == rounds                # the malformed ones
        assert ns_gone(m, "router", "too_big") == rounds               # the cut ones
        assert ns_gone(m, "router", "peer") == rounds                  # the ones that left
        # the whole allowance again, and not one more
        held = [RawFrom(p) for p in (s.router_port, s.pose_port, s.pub_port, s.router_port)]
        for r, kind in zip(held, (b"DEALER", b"DEALER", b"SUB", b"DEALER")):
            r.handshake(kind)
        assert RawFrom(s.pose_port).refused()
        for r in held:
            r.close()
    finally:
        stop_checked(s)


# ---- the handshake deadline ------------------------------------------------------------------

def test_handshake_timeout_flag_applies_to_silent_zmtp():
    """--handshake-timeout 0.5: a connection that sends nothing, and one that stops after its
    signature, are closed (the default would be 10 s, the engine's own 30 s); a peer that
    finishes in time is served."""
    s = start("--handshake-timeout", 0.5)
    try:
        silent = RawFrom(s.router_port)
        half = RawFrom(s.pub_port)
        half.s.sendall(b"\xff" + b"\x00" * 7 + b"\x01\x7f")
        ok = RawFrom(s.pose_port)
        ok.handshake(b"DEALER")
        assert silent.need(10)[:1] == b"\xff"
        assert silent.closed(timeout=5) and half.closed(timeout=5)   # the default: 10 s
        m = metrics(s)
        assert ns_gone(m, "router", "handshake") == 1
        assert ns_gone(m, "pub", "handshake") == 1
        assert ok.quiet_for(0.7)                 # past the deadline, still open: it finished
        assert ns_gone(metrics(s), "pose", "handshake") == 0
        for r in (silent, half, ok):
            r.close()
    finally:
        stop_checked(s)


# ---- SIGHUP ------------------------------------------------------------------------------------

def reload(s, conf, text):
    before = stats(s)["config"]["reloads"]
    conf.write_text(text)
    s.proc.send_signal(signal.SIGHUP)
    st = wait_for(lambda: stats(s), lambda st: st["config"]["reloads"] == before + 1)
    assert st["config"]["reloads"] == before + 1, st["config"]


def test_sighup_changes_limits_live(tmp_path):
    """--connections-per-ip, --max-connections and --handshake-timeout from a config file,
    changed by SIGHUP: each applies to the next ZMTP connection, with those open kept."""
    conf = tmp_path / "roomcast.conf"
    conf.write_text("connections-per-ip 1\nhandshake-timeout 60\n")
    s = start("--config", conf)
    try:
        a = RawFrom(s.router_port)
        a.handshake(b"DEALER")
        assert RawFrom(s.pub_port).refused()
        reload(s, conf, "connections-per-ip 2\nhandshake-timeout 60\n")
        b = RawFrom(s.pub_port)
        b.handshake(b"SUB")
        assert RawFrom(s.pose_port).refused()
        assert per_ip(metrics(s)) == 2
        # per address off, the total at 3: ZMTP connections count with the others
        reload(s, conf, "connections-per-ip 0\nmax-connections 3\nhandshake-timeout 60\n")
        c, _ = admitted(s.pose_port, b"DEALER")   # the reload's stats request may linger
        assert RawFrom(s.router_port).refused()
        status, _ = http(s, "/healthz", src=THIRD)                 # a 4th of any kind
        assert status == 503
        c.close()
        wait_for(lambda: http(s, "/metrics")[0], lambda st: st == 200)
        m = metrics(s)
        assert max_conn(m) >= 2 and ns_gone(m, "router", "connection_limit") == 1
        assert per_ip(m) == 2
        # a shorter handshake deadline: the next silent connection is held to it
        reload(s, conf, "handshake-timeout 0.5\n")
        silent = RawFrom(s.router_port)
        assert silent.need(10)[:1] == b"\xff"
        assert silent.closed(timeout=5)
        assert ns_gone(metrics(s), "router", "handshake") == 1
        for r in (a, b, silent):
            r.close()
    finally:
        stop_checked(s)


# ---- max-connections counted together ------------------------------------------------------------

def test_max_connections_counts_zmtp_with_the_others():
    """--max-connections 3: a WebSocket and two ZMTP connections fill it; a ZMTP connection
    is then refused (closed, disconnects "max_connections", netsync "connection_limit") and so
    is an HTTP request (503); one ZMTP connection gone, an HTTP request is served."""
    s = start("--max-connections", 3, "--ping-interval", 60)
    try:
        status, ws = ws_open(s.http_port)
        assert status == 101
        a = RawFrom(s.router_port)
        a.handshake(b"DEALER")
        b = RawFrom(s.pub_port)
        b.handshake(b"SUB")
        assert RawFrom(s.pose_port).refused()
        status, _ = http(s, "/healthz")
        assert status == 503
        b.close()
        extra = 0
        deadline = time.monotonic() + 5
        while True:
            status, body = http(s, "/metrics")
            if status == 200:
                break
            extra += 1                                # b not yet reaped
            assert time.monotonic() < deadline
            time.sleep(0.05)
        m = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                m[k] = float(v)
        assert max_conn(m) == 2 + extra
        assert ns_gone(m, "pose", "connection_limit") == 1
        assert per_ip(m) == 0
        ws.close()
        a.close()
    finally:
        stop_checked(s)


# ---- the libzmq engine ---------------------------------------------------------------------------

def test_libzmq_engine_is_not_limited():
    """libzmq accepts on its own thread, before roomcast could say no: with --zmq-engine libzmq
    the limits do not apply to the ZeroMQ ports (docs/limits.md), only to roomcast's own."""
    s = NSServer("--zmq-engine", "libzmq", "--connections-per-ip", 1, "--netsync-client-timeout",
                 10)
    try:
        held = [RawFrom(p) for p in (s.router_port, s.pose_port)]
        for r in held:
            r.handshake(b"DEALER")
        status, _ = http(s, "/healthz", src="127.0.0.1")
        assert status == 200                        # not counted against the address either
        assert per_ip(metrics(s)) == 0
        for r in held:
            r.close()
    finally:
        stop_checked(s)
