"""The abuse limits on the broker's native ZeroMQ ports (docs/limits.md, "ZeroMQ transports";
docs/broker.md): with --zmq-engine native the worker and client ROUTERs count their
connections in --connections-per-ip (one count per address with every other listener) and
--max-connections, and hold a connection to --handshake-timeout for its greeting and READY.
A refused connection is closed before a byte is sent and counted in
roomcast_connections_refused_total / roomcast_disconnects_total and in
roomcast_broker_connections_refused_total{port}.

Counters are read over connections from 127.0.0.2, an address of its own (Linux routes all of
127/8 to the loopback), so that reading them never takes a place being tested."""

import json
import socket
import struct
import time

import pytest

from conftest import UNDER_TEST, MdpClient, MdpWorker, start_worker

pytestmark = pytest.mark.skipif(UNDER_TEST == "python", reason="roomcast's limits")

OTHER = "127.0.0.2"
GREETING = (b"\xff" + b"\x00" * 7 + b"\x01\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\x00")
            + b"\x00" * 32)


def ready(socket_type):
    body = b"\x05READY" + bytes([11]) + b"Socket-Type" + struct.pack(">I", len(socket_type)) \
        + socket_type
    return bytes([4, len(body)]) + body


class Raw:
    """A TCP connection speaking ZMTP by hand."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)

    def recv_all(self, timeout=5.0):
        """Everything until the server closes (None: still open after timeout)."""
        self.s.settimeout(timeout)
        got = b""
        try:
            while True:
                b = self.s.recv(65536)
                if not b:
                    return got
                got += b
        except ConnectionResetError:
            return got
        except socket.timeout:
            return None

    def handshake(self, socket_type=b"DEALER"):
        """Greeting and READY; raises EOFError when the server closes instead."""
        self.s.settimeout(5)
        self.s.sendall(GREETING + ready(socket_type))
        got = b""
        while len(got) < 64 + 2:
            b = self.s.recv(4096)
            if not b:
                raise EOFError(f"closed after {len(got)} bytes")
            got += b
        assert got[:10] == GREETING[:10] and got[64] == 4, got[:80]

    def close(self):
        self.s.close()


def admitted(port):
    """A handshaken connection, retried while a place just freed is not yet released."""
    deadline = time.monotonic() + 5
    while True:
        r = Raw(port)
        try:
            r.handshake()
            return r
        except (EOFError, ConnectionResetError):
            r.close()
            assert time.monotonic() < deadline, "never admitted"
            time.sleep(0.05)


def get(b, path):
    s = socket.create_connection(("127.0.0.1", b.http_port), timeout=5, source_address=(OTHER, 0))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split()[1] == b"200", data[:300]
    return body


def metrics(b):
    out = {}
    for line in get(b, "/metrics").decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def test_per_ip_limit_on_worker_and_client_ports(start_broker, ctx, workers):
    """--connections-per-ip 2: an MDP worker and a raw client connection hold the address's
    places; a third is refused on the worker port and on the client port (closed before a
    byte, counted per port and as per_ip); the client leaves, and an MDP client's request is
    served through the freed place."""
    b = start_broker("--zmq-engine", "native", "--connections-per-ip", 2)
    start_worker(workers, MdpWorker, ctx, b.worker_url, "w1")
    deadline = time.monotonic() + 5
    while not any(s["name"] == "echo" and s.get("workers")
                  for s in json.loads(get(b, "/api/services"))["services"]):
        assert time.monotonic() < deadline, "the worker never registered"
        time.sleep(0.03)
    held = admitted(b.client_port)
    for port in (b.worker_port, b.client_port):
        assert Raw(port).recv_all() == b"", port       # closed, not a byte sent
    m = metrics(b)
    assert m['roomcast_broker_connections_refused_total{port="worker"}'] == 1
    assert m['roomcast_broker_connections_refused_total{port="client"}'] == 1
    assert m['roomcast_connections_refused_total{reason="per_ip"}'] == 2
    assert m['roomcast_broker_connections{port="worker"}'] == 1
    conns = json.loads(get(b, "/api/services"))["connections"]
    assert conns["workers"]["refused"] == 1 and conns["clients"]["refused"] == 1
    held.close()
    # libzmq's REQ reconnects by itself if its first try meets the old place still held
    client = MdpClient(ctx, b)
    reply = client.request("echo", b"hi")
    assert reply is not None and reply[-1] == b"w1:hi", reply
    client.close()


def test_handshake_timeout_and_max_connections(start_broker):
    """--handshake-timeout 0.5 closes a silent connection on the worker port (the default
    would be 10 s); --max-connections 2 counts the broker's connections with the others."""
    b = start_broker("--zmq-engine", "native", "--handshake-timeout", 0.5,
                     "--max-connections", 2)
    silent = Raw(b.worker_port)
    got = silent.recv_all(timeout=5)
    assert got is not None and got[:1] == b"\xff", got          # our signature, then closed
    a = admitted(b.worker_port)
    c = admitted(b.client_port)
    assert Raw(b.client_port).recv_all() == b""
    c.close()
    deadline = time.monotonic() + 5
    while True:                                                 # c's place back for this
        try:
            m = metrics(b)
            break
        except AssertionError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert m['roomcast_disconnects_total{reason="max_connections"}'] >= 1
    assert m['roomcast_broker_connections_refused_total{port="client"}'] >= 1
    a.close()
