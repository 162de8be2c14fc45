"""Fixtures and clients for the worker broker's black-box tests (docs/broker.md).

Run with Debian's interpreter (python3-zmq, python3-websockets, python3-pytest):

    ROOMCAST_BIN=build/sanitize/roomcast /usr/bin/python3 -m pytest tests/broker

* ``Broker``: one roomcast started with ``--broker-worker-port 0 --broker-client-port 0`` (and
  ``--port 0 --tcp-port 0``); the ports come from its startup line
  ``roomcast: broker workers tcp://A:P clients tcp://A:P``. ``stop()`` sends SIGTERM; the
  fixtures assert exit status 0 (ASan leaks and UB make it non-zero).
* ``BROKER_UNDER_TEST=python`` starts ``bench/broker/py_broker.py`` instead (the seed-style
  Python peer, same startup line). It speaks only the seed's LRU protocol: tests of anything
  else are marked ``roomcast_only`` and skipped. This validates the test code itself.
* Workers: ``LruWorker`` (REQ, the seed's protocol), ``PppWorker`` (DEALER, RFC 6),
  ``MdpWorker`` (DEALER, RFC 7), each in a thread, recording what it served; ``worker_process``
  runs one in a separate process (``workerproc.py``) for ``kill -9``.
* Clients: ``req_client`` (REQ, seed), ``MdpClient`` (REQ, MDPC01), ``ws_session`` (WebSocket,
  python3-websockets), ``LineClient`` (raw TCP line mode), ``http`` (plain sockets).

Every flag name and protocol constant comes from ``settings.py``. Waits are generous bounds
against hangs, never timing assertions unless a test says so.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import zmq

import settings as S

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
START_TIMEOUT = 10.0
STOP_TIMEOUT = 20.0
IO_TIMEOUT = 5.0
UNDER_TEST = os.environ.get("BROKER_UNDER_TEST", "roomcast")


def pytest_configure(config):
    config.addinivalue_line("markers", "roomcast_only: needs roomcast (skipped when "
                            "BROKER_UNDER_TEST=python: the Python peer speaks only the seed's LRU)")


def pytest_collection_modifyitems(config, items):
    if UNDER_TEST != "python":
        return
    skip = pytest.mark.skip(reason="BROKER_UNDER_TEST=python: the peer speaks only the seed's LRU")
    for item in items:
        if "roomcast_only" in item.keywords:
            item.add_marker(skip)


def roomcast_bin():
    path = os.environ.get("ROOMCAST_BIN") or os.path.join(REPO, "build", "sanitize", "roomcast")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        pytest.fail(f"roomcast binary not found: {path} (set ROOMCAST_BIN)", pytrace=False)
    return path


# --------------------------------------------------------------------------------------------
# The broker process
# --------------------------------------------------------------------------------------------

class Broker:
    """roomcast (or, with BROKER_UNDER_TEST=python, the Python peer) on loopback, ports 0."""

    def __init__(self, *flags, test_flags=True):
        self.errf = tempfile.NamedTemporaryFile(prefix="roomcast-broker-", suffix=".log",
                                                delete=False)
        flags = [str(f) for f in flags]
        if UNDER_TEST == "python":
            argv = [PYTHON, os.path.join(REPO, "bench", "broker", "py_broker.py"),
                    "--worker-port", "0", "--client-port", "0"]
        else:
            argv = [roomcast_bin(), "--bind", "127.0.0.1", "--port", "0", S.F_TCP_PORT, "0",
                    S.F_WORKER_PORT, "0", S.F_CLIENT_PORT, "0", S.F_BIND, "127.0.0.1",
                    "--no-netsync"]                 # NetSync's default ports are not ours
            if test_flags:  # (flag, value) pairs; a test's own value of a flag wins
                tf = [str(f) for f in S.TEST_FLAGS]
                for i in range(0, len(tf), 2):
                    if tf[i] not in flags:
                        argv += tf[i:i + 2]
            argv += flags
            # ROOMCAST_ZMQ_ENGINE=native|libzmq runs the suite on either ZeroMQ engine
            if os.environ.get("ROOMCAST_ZMQ_ENGINE") and "--zmq-engine" not in argv:
                argv += ["--zmq-engine", os.environ["ROOMCAST_ZMQ_ENGINE"]]
        self.argv = argv
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.errf, env=env, cwd=tempfile.gettempdir())
        self.http_port = self.tcp_port = None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = self.stderr()
            m = S.BROKER_LINE_RE.search(text)
            h = S.HTTP_LINE_RE.search(text)
            if m and (h or UNDER_TEST == "python"):
                self.host = m.group(1)
                self.worker_port, self.client_port = int(m.group(2)), int(m.group(4))
                self.http_port = int(h.group(1)) if h else None
                t = S.TCP_LINE_RE.search(text)
                self.tcp_port = int(t.group(1)) if t else None
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait()
        pytest.fail(f"broker did not print its startup line ({S.BROKER_LINE_RE.pattern})\n"
                    f"argv: {argv}\nstderr:\n{self.stderr()[-4000:]}", pytrace=False)

    @property
    def worker_url(self):
        return f"tcp://127.0.0.1:{self.worker_port}"

    @property
    def client_url(self):
        return f"tcp://127.0.0.1:{self.client_port}"

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
        if rc == 0:
            os.unlink(self.errf.name)
        return rc

    # -- introspection (roomcast only) --
    def services(self):
        status, _, body = http(self, "GET", S.HTTP_SERVICES_PATH)
        assert status == 200, f"GET {S.HTTP_SERVICES_PATH} -> {status} {body[:300]!r}"
        return json.loads(body)

    def service(self, name):
        for s in self.services().get("services", []):
            if s.get("name") == name:
                return s
        return None

    def counters(self):
        return self.services().get("counters", {})

    def wait_workers(self, service, n, timeout=IO_TIMEOUT, state="idle"):
        """Waits until `service` has `n` workers in `state` (roomcast: GET /api/services;
        the Python peer: a fixed pause, it has no introspection)."""
        if UNDER_TEST == "python":
            time.sleep(0.3)
            return
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.service(service)
            if last and sum(1 for w in last.get("workers", []) if w.get("state") == state) >= n:
                return
            time.sleep(0.02)
        raise AssertionError(f"service {service!r} never had {n} {state} workers: {last}")


def _stop_checked(b):
    err = b.stderr()
    rc = b.stop()
    assert rc == 0, f"broker exited with {rc}:\n{err[-5000:]}"


@pytest.fixture
def broker():
    b = Broker()
    yield b
    _stop_checked(b)


@pytest.fixture
def start_broker():
    """Starts brokers with extra flags; all are stopped (and checked) after the test."""
    started = []

    def start(*flags, **kw):
        b = Broker(*flags, **kw)
        started.append(b)
        return b
    yield start
    for b in started:
        _stop_checked(b)


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


@pytest.fixture
def workers():
    """Threaded workers started by a test; all stopped after it."""
    started = []
    yield started
    for w in started:
        w.stop()


# --------------------------------------------------------------------------------------------
# Workers (threads). Each replies name + b":" + request; a request b"sleep:S" sleeps S seconds
# first (b"sleep:S:NAME": only the worker named NAME sleeps, the others answer at once);
# b"noreply" is never answered (the worker goes silent for it, heartbeats continue).
# --------------------------------------------------------------------------------------------

def answer(name, body):
    if body.startswith(b"sleep:"):
        parts = body[6:].split(b":")
        if len(parts) < 2 or parts[1] == name.encode():   # b"sleep:S:NAME": only NAME sleeps
            time.sleep(float(parts[0]))
    return name.encode() + b":" + body


class _Worker(threading.Thread):
    def __init__(self, ctx, url, name, heartbeat=S.TEST_HEARTBEAT, identity=None):
        super().__init__(daemon=True)
        self.ctx, self.url, self.name = ctx, url, name
        self.heartbeat = heartbeat
        self.identity = identity
        self.served = []            # request bodies, in order
        self.received = []          # every message from the broker (list of frames)
        self.running = True
        self.mute = False           # stop heartbeating and replying (simulates a hang)
        self.disconnects = 0
        self.ready_sent = 0

    def _socket(self, kind):
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        if self.identity is not None:
            s.setsockopt(zmq.ROUTING_ID, self.identity)
        s.connect(self.url)
        return s

    def stop(self):
        self.running = False
        self.join(3)

    def run(self):
        try:
            self._run()
        except zmq.ZMQError:
            if self.running:
                raise
            # stopped while a send or poll was under way: the test is over for this worker


class LruWorker(_Worker):
    """The seed's protocol: REQ, sends READY, then [client][""][request] -> [client][""][reply]."""

    def _run(self):
        s = self._socket(zmq.REQ)
        s.send(S.LRU_READY)
        self.ready_sent += 1
        while self.running:
            if not s.poll(50):
                continue
            frames = s.recv_multipart()
            self.received.append(frames)
            assert len(frames) == 3 and frames[1] == b"", frames
            client, _, req = frames
            if req == b"noreply" or self.mute:
                time.sleep(60)  # REQ cannot send anything else; a hung worker
                continue
            self.served.append(req)
            s.send_multipart([client, b"", answer(self.name, req)])
        s.close(0)


class PppWorker(_Worker):
    """RFC 6: DEALER; READY 0x01; HEARTBEAT 0x02 both ways; [client][""][request] both ways;
    re-announces after `liveness` silent intervals."""

    def __init__(self, *a, liveness=S.TEST_LIVENESS, **kw):
        super().__init__(*a, **kw)
        self.liveness_max = liveness
        self.heartbeats_in = 0

    def _run(self):
        s = self._socket(zmq.DEALER)
        s.send(S.PPP_READY)
        self.ready_sent += 1
        liveness = self.liveness_max
        next_hb = time.monotonic() + self.heartbeat
        while self.running:
            if s.poll(int(self.heartbeat * 1000)):
                frames = s.recv_multipart()
                self.received.append(frames)
                liveness = self.liveness_max
                if frames == [S.PPP_HEARTBEAT]:
                    self.heartbeats_in += 1
                elif len(frames) >= 3 and b"" in frames:       # [client...][""][request]
                    if self.mute or frames[-1] == b"noreply":
                        continue
                    i = frames.index(b"")
                    self.served.append(frames[i + 1])
                    s.send_multipart(frames[:i + 1] + [answer(self.name, frames[i + 1])])
            elif not self.mute:
                liveness -= 1
                if liveness == 0:               # lost the broker: reconnect, READY again
                    self.disconnects += 1
                    s.close(0)
                    s = self._socket(zmq.DEALER)
                    s.send(S.PPP_READY)
                    self.ready_sent += 1
                    liveness = self.liveness_max
            if not self.mute and time.monotonic() >= next_hb:
                s.send(S.PPP_HEARTBEAT)
                next_hb = time.monotonic() + self.heartbeat
        s.close(0)


class MdpWorker(_Worker):
    """RFC 7 worker: DEALER; [""][MDPW01][cmd]...; reconnects on DISCONNECT or silence."""

    def __init__(self, ctx, url, name, service=b"echo", liveness=S.TEST_LIVENESS,
                 reconnect=True, **kw):
        super().__init__(ctx, url, name, **kw)
        self.service = service.encode() if isinstance(service, str) else service
        self.liveness_max = liveness
        self.reconnect = reconnect
        self.sock = None
        self.inject = []            # commands a test wants sent from the worker's own thread

    def send(self, cmd, *parts):
        self.sock.send_multipart([b"", S.MDPW, cmd, *parts])

    def _connect(self):
        if self.sock is not None:
            self.sock.close(0)
        self.sock = self._socket(zmq.DEALER)
        self.send(S.W_READY, self.service)
        self.ready_sent += 1

    def _run(self):
        self._connect()
        liveness = self.liveness_max
        next_hb = time.monotonic() + self.heartbeat
        while self.running:
            while self.inject:                      # ZeroMQ sockets are not thread-safe
                self.send(*self.inject.pop(0))
            if self.sock.poll(int(self.heartbeat * 1000)):
                frames = self.sock.recv_multipart()
                self.received.append(frames)
                liveness = self.liveness_max
                assert len(frames) >= 3 and frames[0] == b"" and frames[1] == S.MDPW, frames
                cmd = frames[2]
                if cmd == S.W_REQUEST and not self.mute:
                    client, empty, body = frames[3], frames[4], frames[5:]
                    assert empty == b"", frames
                    if body[-1] == b"noreply":
                        continue
                    self.served.append(body[-1])
                    self.send(S.W_REPLY, client, b"", answer(self.name, body[-1]))
                elif cmd == S.W_DISCONNECT:
                    self.disconnects += 1
                    if not self.reconnect:
                        break
                    self._connect()
            elif not self.mute:
                liveness -= 1
                if liveness == 0 and self.reconnect:
                    self.disconnects += 1
                    self._connect()
                    liveness = self.liveness_max
            if not self.mute and time.monotonic() >= next_hb:
                self.send(S.W_HEARTBEAT)
                next_hb = time.monotonic() + self.heartbeat
        self.sock.close(0)


def start_worker(workers, cls, *a, **kw):
    w = cls(*a, **kw)
    w.start()
    workers.append(w)
    return w


def worker_process(broker, protocol, name, service="echo", heartbeat=S.TEST_HEARTBEAT):
    """A worker in its own process (tests/broker/workerproc.py), for kill -9."""
    argv = [PYTHON, os.path.join(HERE, "workerproc.py"), "--url", broker.worker_url,
            "--protocol", protocol, "--name", name, "--service", service,
            "--heartbeat", str(heartbeat)]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


# --------------------------------------------------------------------------------------------
# ZeroMQ clients
# --------------------------------------------------------------------------------------------

def req_client(ctx, broker, body, timeout=IO_TIMEOUT, identity=None):
    """The seed's client: REQ on the client port, one request; returns the reply or None."""
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    if identity is not None:
        s.setsockopt(zmq.ROUTING_ID, identity)
    s.connect(broker.client_url)
    try:
        s.send(body)
        if not s.poll(int(timeout * 1000)):
            return None
        return s.recv()
    finally:
        s.close(0)


class MdpClient:
    """RFC 7 client: REQ; [""][MDPC01][service][body...] -> [""][MDPC01][service][body...]."""

    def __init__(self, ctx, broker):
        self.ctx, self.broker = ctx, broker
        self.sock = None
        self._open()

    def _open(self):
        if self.sock is not None:
            self.sock.close(0)
        self.sock = self.ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.broker.client_url)

    def request(self, service, *body, timeout=IO_TIMEOUT):
        """The reply's frames after the REQ envelope ([MDPC01][service][body...]), or None;
        after a timeout the socket is replaced (REQ cannot send twice)."""
        service = service.encode() if isinstance(service, str) else service
        self.sock.send_multipart([S.MDPC, service, *body])
        if not self.sock.poll(int(timeout * 1000)):
            self._open()
            return None
        return self.sock.recv_multipart()

    def close(self):
        self.sock.close(0)


# --------------------------------------------------------------------------------------------
# HTTP, raw TCP, WebSocket
# --------------------------------------------------------------------------------------------

def http(broker, method, path, body=b"", headers=(), timeout=IO_TIMEOUT):
    """One request on a fresh connection; returns (status, headers dict, body bytes)."""
    s = socket.create_connection(("127.0.0.1", broker.http_port), timeout=timeout)
    try:
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
                f"Content-Length: {len(body)}", *headers]
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines and lines[0].startswith("HTTP/1.1 "), f"not an HTTP response: {data[:200]!r}"
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if "content-length" in hdrs:
        rest = rest[:int(hdrs["content-length"])]
    return status, hdrs, rest


class LineClient:
    """roomcast's raw TCP port in line mode (docs/tcp.md): one JSON object per line."""

    def __init__(self, broker, timeout=IO_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", broker.tcp_port), timeout=timeout)
        self.buf = b""

    def send(self, obj):
        self.sock.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def recv(self, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            if b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                msg = json.loads(line)
                if msg.get("type") == "keepalive":
                    continue
                return msg
            left = deadline - time.monotonic()
            assert left > 0, "no line from roomcast within the deadline"
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            assert chunk, "roomcast closed the TCP connection"
            self.buf += chunk

    def recv_until(self, pred, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            m = self.recv(max(0.01, deadline - time.monotonic()))
            seen.append(m)
            if pred(m):
                return m, seen

    def join(self, room):
        self.send({"type": "join", "room": room})
        m, _ = self.recv_until(lambda m: m.get("type") in ("joined", "error"))
        assert m.get("type") == "joined", f"join {room!r} failed: {m}"
        return m

    def close(self):
        self.sock.close()


def ws_run(coro, timeout=30):
    """Runs one asyncio coroutine (websockets clients) to completion from a sync test."""
    import asyncio
    return asyncio.run(asyncio.wait_for(coro, timeout))


def ws_url(broker):
    return f"ws://127.0.0.1:{broker.http_port}/"


async def ws_recv_json(ws, pred=lambda m: True, timeout=IO_TIMEOUT):
    import asyncio
    deadline = time.monotonic() + timeout
    while True:
        raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        if isinstance(raw, bytes):
            continue
        m = json.loads(raw)
        if pred(m):
            return m


def wait_until(pred, timeout=IO_TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
