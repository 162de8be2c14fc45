"""Shared fixtures and helpers for roomcast's integration tests.

Run with Debian's interpreter (python3-pytest, python3-websockets 10.4):

    ROOMCAST_BIN=build/sanitize/roomcast /usr/bin/python3 -m pytest tests/integration

What lives here:

* ``Server``: one roomcast process started with ``--port 0``; the port is parsed from its
  ``roomcast: listening on http://127.0.0.1:PORT/`` line (and ``tcp_port``/``chat_port`` from
  the lines ``--tcp-port 0``/``--chat-port 0`` print before it; clients for those ports are in
  ``rawtcp.py``). ``stop()`` sends SIGTERM and the
  fixtures assert exit status 0 (under ASan a leak or a sanitizer report makes it non-zero) and
  show the server's stderr when it is not.
* ``RawWS``: a byte-level WebSocket client (handshake, masked/unmasked frames, any opcode, RSV
  bits, lying length fields) for malformed-input tests. Normal clients use ``websockets``.
* ``http_exchange``: send raw bytes, parse the HTTP response.
* ``Bystanders``: two well-behaved ``websockets`` clients chatting in a room from a background
  thread, checking every msg_id; garbage tests assert that they noticed nothing.

Tests import helpers with ``from conftest import ...`` (pytest puts this directory on sys.path).
"""

import asyncio
import base64
import hashlib
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest
import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LISTEN_RE = re.compile(r"roomcast: listening on https?://127\.0\.0\.1:(\d+)/")
# Printed before the http line when --tcp-port / --chat-port are given (docs/tcp.md).
TCP_LISTEN_RE = re.compile(r"roomcast: tcp listening on 127\.0\.0\.1:(\d+)\n")
CHAT_LISTEN_RE = re.compile(r"roomcast: chat listening on 127\.0\.0\.1:(\d+) \(room '(.*)'\)\n")

# Generous bounds that only exist so that a broken server makes a test fail instead of hang.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 20.0     # SIGTERM -> exit, including ASan's leak check at exit
IO_TIMEOUT = 10.0

STATS_ERROR_KEYS = (
    "http_400", "http_404", "http_405", "http_408", "http_426", "http_431", "http_503",
    "ws_1002", "ws_1007", "ws_1009", "bad_json", "not_object", "missing_field", "bad_field",
    "not_member", "no_such_room", "reserved_type", "too_many_rooms", "bad_binary", "netsync_off",
    # the raw TCP and chat ports (docs/tcp.md)
    "tcp_line_too_long", "tcp_bad_utf8", "tcp_1002", "tcp_1007", "tcp_1009", "chat_garbage",
    "chat_bad_object", "chat_too_big", "too_many_errors", "duplicate_key", "room_limit",
    "rate_limited", "state_full", "banned",
    # permissions (docs/auth.md)
    "forbidden", "unauthenticated", "room_full",
    # --redis (docs/cluster.md)
    "unavailable",
)
STATS_DISCONNECT_KEYS = ("slow_consumer", "ping_timeout", "max_connections", "handshake_timeout")
STATS_TOP_KEYS = ("connections", "connections_total", "rooms", "messages_in", "messages_out",
                  "bytes_in", "bytes_out", "broadcasts")


def roomcast_bin():
    path = os.environ.get("ROOMCAST_BIN") or os.path.join(REPO, "build", "sanitize", "roomcast")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        pytest.fail(f"roomcast binary not found or not executable: {path} (set ROOMCAST_BIN)",
                    pytrace=False)
    return path


_HELP_FLAGS = None


def supported_flags():
    """The set of --flags the binary's --help mentions (cached)."""
    global _HELP_FLAGS
    if _HELP_FLAGS is None:
        out = subprocess.run([roomcast_bin(), "--help"], capture_output=True, text=True,
                             timeout=10)
        _HELP_FLAGS = set(re.findall(r"--[a-z][a-z0-9-]+", out.stdout + out.stderr))
    return _HELP_FLAGS


def if_supported(flag, *values):
    """[flag, *values] when the binary knows flag, else [] (for flags added by later issues)."""
    return [flag, *values] if flag in supported_flags() else []


def no_retention():
    """Flags that give the core rule 'a room disappears when its last member leaves': later
    issues keep empty rooms for --room-ttl seconds (default 300) for history."""
    return if_supported("--room-ttl", "0")


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------

class Server:
    """A roomcast process on 127.0.0.1 with an OS-chosen port."""

    def __init__(self, *flags, rlimit_nofile=None):
        self.flags = [str(f) for f in flags]
        self.bin = roomcast_bin()
        self._errf = tempfile.NamedTemporaryFile(prefix="roomcast-stderr-", suffix=".log",
                                                 delete=False)
        env = dict(os.environ)
        # Sanitizer reports go to stderr (captured) and fail the exit status.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        # Later issues add listeners on fixed ports (NetSync: 5555, 5556, 9999): tests run
        # many servers, so those are switched off when the binary has the switch.
        extra = [] if "--no-netsync" in self.flags else if_supported("--no-netsync")
        self.argv = [self.bin, "--bind", "127.0.0.1", "--port", "0", *extra, *self.flags]
        preexec = None
        if rlimit_nofile is not None:
            def preexec():
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (rlimit_nofile, rlimit_nofile))
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._errf, env=env,
                                     preexec_fn=preexec)
        self.host = "127.0.0.1"
        self.signaled = False
        self.port = self._wait_port()
        # --tcp-port / --chat-port listeners (None when off); their lines precede the http one
        err = self.stderr()
        m = TCP_LISTEN_RE.search(err)
        self.tcp_port = int(m.group(1)) if m else None
        m = CHAT_LISTEN_RE.search(err)
        self.chat_port = int(m.group(1)) if m else None
        self.chat_room = m.group(2) if m else None
        for flag, port in (("--tcp-port", self.tcp_port), ("--chat-port", self.chat_port)):
            if flag in self.flags and not port:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"{flag} given but no listening line for it before the http one\n"
                            f"argv: {self.argv}\nstderr:\n{err}", pytrace=False)
        self.returncode = None

    def _wait_port(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(self.stderr())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                pytest.fail(f"roomcast exited with {self.proc.returncode} before listening\n"
                            f"argv: {self.argv}\nstderr:\n{self.stderr()}", pytrace=False)
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait()
        pytest.fail(f"roomcast did not print its listening line within {START_TIMEOUT}s\n"
                    f"argv: {self.argv}\nstderr:\n{self.stderr()}", pytrace=False)

    # -- introspection ------------------------------------------------------------------------

    def stderr(self):
        with open(self._errf.name, "r", errors="replace") as f:
            return f.read()

    def stderr_tail(self, n=80):
        return "\n".join(self.stderr().splitlines()[-n:])

    def alive(self):
        return self.proc.poll() is None

    def cpu_seconds(self):
        """User+system CPU time the server process has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def ws_url(self):
        return f"ws://{self.host}:{self.port}/"

    @property
    def echo_url(self):
        return f"ws://{self.host}:{self.port}/echo"

    def stats(self):
        status, _headers, body = http_exchange(
            self.port, b"GET /api/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 200, f"GET /api/stats answered {status}: {body!r}"
        return json.loads(body)

    def wait_stats(self, pred, timeout=IO_TIMEOUT, what="condition"):
        """Poll /api/stats until pred(stats) is true; return the stats."""
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            try:
                st = self.stats()
            except (AssertionError, OSError) as e:
                # e.g. a 503 while connections being closed still hold every slot
                st = f"stats request failed: {e}"
                time.sleep(0.05)
                continue
            if pred(st):
                return st
            time.sleep(0.05)
        raise AssertionError(f"stats never satisfied {what} within {timeout}s; last: {st}")

    def wait_connections(self, n, timeout=IO_TIMEOUT):
        """Wait until exactly n connections are open (not counting the stats request itself,
        whether or not the server counts it)."""
        def ok(st):
            return st["connections"] in (n, n + 1)
        return self.wait_stats(ok, timeout, f"connections == {n}")

    # -- shutdown -------------------------------------------------------------------------------

    def signal(self, sig):
        self.signaled = True
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"roomcast did not exit within {timeout}s of the signal\n"
                                 f"stderr tail:\n{self.stderr_tail()}")
        return self.returncode

    def stop(self, sig=None):
        """Signal the server (SIGTERM by default) and assert a clean exit (status 0, no
        sanitizer report)."""
        sig = signal.SIGTERM if sig is None else sig
        if self.proc.poll() is not None:
            rc = self.proc.returncode
            if self.signaled:   # the test signalled it already: just judge the exit
                self.returncode = rc
                self.assert_clean_exit(rc)
                return
            raise AssertionError(f"roomcast died during the test with status {rc}\n"
                                 f"argv: {self.argv}\nstderr tail:\n{self.stderr_tail()}")
        self.signal(sig)
        rc = self.wait_exit()
        self.assert_clean_exit(rc)

    def assert_clean_exit(self, rc):
        err = self.stderr()
        bad = [m for m in ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                           "UndefinedBehaviorSanitizer") if m in err]
        assert rc == 0 and not bad, (f"roomcast exited with status {rc} (sanitizer markers: {bad})\n"
                                     f"argv: {self.argv}\nstderr tail:\n{self.stderr_tail(150)}")

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            os.unlink(self._errf.name)
        except OSError:
            pass


@pytest.fixture(scope="module")
def server():
    """One default-configured server shared by a test module; asserted to exit cleanly."""
    srv = Server()
    try:
        yield srv
        srv.stop()
    finally:
        srv.cleanup()


@pytest.fixture
def start_server():
    """Factory for servers with special flags, stopped (and exit-checked) after the test."""
    started = []

    def start(*flags, **kw):
        srv = Server(*flags, **kw)
        started.append(srv)
        return srv

    yield start
    errors = []
    for srv in started:
        try:
            if srv.returncode is None:
                srv.stop()
        except AssertionError as e:
            errors.append(str(e))
        finally:
            srv.cleanup()
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


def stats_delta(before, after):
    """Flatten two stats snapshots into {key: after-before} for the counters."""
    out = {}
    for k in STATS_TOP_KEYS:
        out[k] = after[k] - before[k]
    for k in STATS_ERROR_KEYS:
        out["errors." + k] = after["errors"][k] - before["errors"][k]
    for k in STATS_DISCONNECT_KEYS:
        out["disconnects." + k] = after["disconnects"][k] - before["disconnects"][k]
    return out


def assert_only_errors(before, after, **expected):
    """Assert error/disconnect counters moved by exactly `expected` (keys like errors_ws_1002 or
    disconnects_slow_consumer, dots written as underscores after the section) and no other
    error counter moved."""
    d = stats_delta(before, after)
    want = {}
    for k, v in expected.items():
        section, _, name = k.partition("_")
        want[f"{section}.{name}"] = v
    for k, v in d.items():
        if not (k.startswith("errors.") or k.startswith("disconnects.")):
            continue
        assert v == want.get(k, 0), (f"counter {k} moved by {v}, expected {want.get(k, 0)}; "
                                     f"all deltas: { {a: b for a, b in d.items() if b} }")


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

def read_http_response(sock, timeout=IO_TIMEOUT):
    """Read one HTTP response (head + Content-Length body, or until EOF) from sock.
    Returns (status, headers{lowercase: value}, body, leftover_bytes)."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a complete response head: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})( .*)?$", lines[0])
    assert m, f"bad status line {lines[0]!r}"
    status = int(m.group(1))
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        body, rest = rest[:n], rest[n:]
    elif status == 101:
        body = b""
    else:
        body = rest
        rest = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            body += chunk
    return status, headers, body, rest


def http_exchange(port, request, timeout=IO_TIMEOUT, shut_wr=False):
    """Send raw request bytes to the server, return (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        if shut_wr:
            s.shutdown(socket.SHUT_WR)
        status, headers, body, _ = read_http_response(s, timeout)
        return status, headers, body


def ws_request(path="/", key=None, version="13", extra=(), host="127.0.0.1", http="1.1",
               omit=()):
    """Build a WebSocket upgrade request. `omit` drops headers by lowercase name."""
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    hdrs = [("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", version)]
    hdrs = [(n, v) for n, v in hdrs if n.lower() not in omit]
    hdrs += list(extra)
    lines = [f"GET {path} HTTP/{http}"] + [f"{n}: {v}" for n, v in hdrs]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def assert_json_error_body(status, body):
    """Error bodies are JSON {"status":N,"error":"..."} (docs/protocol.md)."""
    doc = json.loads(body)
    assert doc.get("status") == status, doc
    assert isinstance(doc.get("error"), str) and doc["error"], doc


# --------------------------------------------------------------------------------------------
# Raw WebSocket client
# --------------------------------------------------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload")

    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode, self.masked, self.payload = fin, rsv, opcode, masked, payload

    def __repr__(self):
        p = self.payload if len(self.payload) <= 80 else self.payload[:80] + b"..."
        return f"Frame(fin={self.fin}, rsv={self.rsv}, op={self.opcode:#x}, {p!r})"

    def close_code(self):
        assert self.opcode == OP_CLOSE
        if len(self.payload) < 2:
            return None, b""
        return struct.unpack("!H", self.payload[:2])[0], self.payload[2:]


class ConnectionGone(Exception):
    """EOF or reset while reading."""


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, mask_key=None, length=None):
    """Encode a client frame. `length` overrides the announced payload length (for lies)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        key = mask_key if mask_key is not None else os.urandom(4)
        head += key
        payload = xor_mask(payload, key)
    return head + payload


def xor_mask(data, key):
    if not data:
        return b""
    k = (key * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(len(data), "big")


def close_payload(code, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


class RawWS:
    """A blocking, byte-level WebSocket client. Everything it sends is exactly what the test
    asks for; reading returns frames as the server sent them."""

    def __init__(self, sock, leftover=b""):
        self.sock = sock
        self.buf = bytearray(leftover)
        self.response_headers = {}

    # -- connecting ---------------------------------------------------------------------------

    @classmethod
    def connect(cls, port, path="/", timeout=IO_TIMEOUT, rcvbuf=None, extra=()):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        req, key = ws_request(path, extra=extra)
        sock.sendall(req)
        status, headers, body, rest = read_http_response(sock, timeout)
        if status != 101:
            sock.close()
            raise AssertionError(f"upgrade to {path} answered {status}: {headers} {body!r}")
        assert headers.get("sec-websocket-accept") == accept_for(key), headers
        ws = cls(sock, rest)
        ws.response_headers = headers
        return ws

    @classmethod
    def tcp(cls, port, timeout=IO_TIMEOUT):
        """A bare TCP connection (no handshake yet)."""
        return cls(socket.create_connection(("127.0.0.1", port), timeout=timeout))

    # -- sending ------------------------------------------------------------------------------

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(encode_frame(opcode, payload, **kw))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_json(self, obj):
        self.send_text(json.dumps(obj, separators=(",", ":")))

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send_close(self, code=None, reason=b""):
        self.send_frame(OP_CLOSE, b"" if code is None else close_payload(code, reason))

    def reset(self):
        """Abort the connection with a TCP RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- receiving ----------------------------------------------------------------------------

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout(f"timed out waiting for {n} bytes (have {len(self.buf)})")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(max(65536, n - len(self.buf)))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise ConnectionGone(f"reset: {e}")
            if not chunk:
                raise ConnectionGone("EOF")
            self.buf += chunk

    def recv_frame(self, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        hl = 2
        if n == 126:
            self._fill(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            hl = 4
        elif n == 127:
            self._fill(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            hl = 10
        masked = bool(b1 & 0x80)
        if masked:
            hl += 4
        self._fill(hl + n, deadline)
        payload = bytes(self.buf[hl:hl + n])
        if masked:
            payload = xor_mask(payload, bytes(self.buf[hl - 4:hl]))
        del self.buf[:hl + n]
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, masked, payload)

    def recv_message(self, timeout=IO_TIMEOUT, auto_pong=True):
        """Next data message as (opcode, payload): reassembles fragments, answers pings.
        A close frame is returned as (OP_CLOSE, payload)."""
        deadline = time.monotonic() + timeout
        parts, first_op = [], None
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            assert f.rsv == 0 and not f.masked, f"server sent {f}"
            if f.opcode == OP_PING:
                if auto_pong:
                    self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            if f.opcode == OP_CLOSE:
                return OP_CLOSE, f.payload
            if first_op is None:
                assert f.opcode in (OP_TEXT, OP_BINARY), f"unexpected continuation {f}"
                first_op = f.opcode
            else:
                assert f.opcode == OP_CONT, f"expected continuation, got {f}"
            parts.append(f.payload)
            if f.fin:
                return first_op, b"".join(parts)

    def recv_json(self, timeout=IO_TIMEOUT):
        op, payload = self.recv_message(timeout)
        assert op == OP_TEXT, f"expected a text message, got opcode {op:#x}: {payload[:200]!r}"
        return json.loads(payload.decode("utf-8"))

    def recv_json_raw(self, timeout=IO_TIMEOUT):
        op, payload = self.recv_message(timeout)
        assert op == OP_TEXT, f"expected a text message, got opcode {op:#x}: {payload[:200]!r}"
        return payload.decode("utf-8")

    def expect_error(self, code, timeout=IO_TIMEOUT):
        msg = self.recv_json(timeout)
        assert msg.get("type") == "error", f"expected error {code}, got {msg}"
        assert msg.get("code") == code, f"expected error {code}, got {msg}"
        assert isinstance(msg.get("message"), str) and msg["message"], msg
        assert "client_id" not in msg and "msg_id" not in msg, msg
        return msg

    def join(self, room, timeout=IO_TIMEOUT, **extra):
        self.send_json({"type": "join", "room": room, **extra})
        msg = self.recv_json(timeout)
        assert msg.get("type") == "joined" and msg.get("room") == room, msg
        return msg

    def expect_close(self, code, reason=None, timeout=IO_TIMEOUT, then_eof=True):
        """Read (skipping nothing but pings/pongs) until a close frame; assert its code (and
        reason if given); then, if then_eof, assert the server closes the TCP connection."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            except ConnectionGone as e:
                raise AssertionError(f"connection cut without a close frame (expected {code}): {e}")
            if f.opcode in (OP_PING, OP_PONG):
                continue
            assert f.opcode == OP_CLOSE, f"expected close {code}, got {f}"
            break
        got, why = f.close_code()
        assert got == code, f"expected close code {code}, got {got} reason {why!r}"
        if reason is not None:
            assert why == (reason.encode() if isinstance(reason, str) else reason), why
        why.decode("utf-8")  # close reasons must be UTF-8
        if then_eof:
            self.expect_eof(max(0.5, deadline - time.monotonic()))
        return got, why

    def expect_eof(self, timeout=IO_TIMEOUT):
        """Assert the server closes the TCP connection (EOF or RST) within timeout, reading and
        discarding anything before it."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"server did not close the connection within {timeout}s")
                self.sock.settimeout(left)
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
        except (ConnectionResetError, BrokenPipeError):
            return
        except socket.timeout:
            raise AssertionError(f"server did not close the connection within {timeout}s")

    def is_closed_by_peer(self):
        """Non-blocking check: has the server closed (EOF/RST) this connection?"""
        r, _, _ = select.select([self.sock], [], [], 0)
        if not r:
            return False
        try:
            data = self.sock.recv(65536, socket.MSG_PEEK)
        except (ConnectionResetError, BrokenPipeError):
            return True
        return data == b""


# --------------------------------------------------------------------------------------------
# websockets helpers (asyncio)
# --------------------------------------------------------------------------------------------

async def ws_connect(url, **kw):
    kw.setdefault("max_size", 64 * 1024 * 1024)
    kw.setdefault("ping_interval", None)
    kw.setdefault("open_timeout", IO_TIMEOUT)
    kw.setdefault("close_timeout", 5)
    return await websockets.connect(url, **kw)


async def ws_recv_json(ws, timeout=IO_TIMEOUT):
    raw = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(raw, str), f"expected text, got {raw[:100]!r}"
    return json.loads(raw)


async def ws_join(ws, room, timeout=IO_TIMEOUT):
    await ws.send(json.dumps({"type": "join", "room": room}))
    msg = await ws_recv_json(ws, timeout)
    assert msg.get("type") == "joined" and msg.get("room") == room, msg
    return msg


def run(coro, timeout=120):
    """Run a coroutine to completion in a fresh event loop, bounded by timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


# --------------------------------------------------------------------------------------------
# Bystanders: "no other client notices"
# --------------------------------------------------------------------------------------------

class Bystanders:
    """Two websockets clients in one room, each publishing every `period` seconds from a
    background thread and checking that they see every message of the room with consecutive
    msg_ids, their own messages in their send order, and no error or close.

    check() asserts they are healthy and made progress since the previous check."""

    def __init__(self, server, room="bystanders", period=0.01):
        self.server, self.room, self.period = server, room, period
        self.errors = []
        self.received = [0, 0]
        self.last_msg_id = [None, None]
        self._checked = [0, 0]
        self._stop = None
        self._loop = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bystanders", daemon=True)
        self._thread.start()
        if not self._ready.wait(IO_TIMEOUT):
            raise AssertionError("bystanders did not start")
        if self.errors:
            raise AssertionError(f"bystanders failed to start: {self.errors}")

    def _run(self):
        try:
            asyncio.run(self._main())
        except Exception as e:  # pragma: no cover - reported via check()
            self.errors.append(f"bystander loop crashed: {e!r}")
            self._ready.set()

    async def _main(self):
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        clients = []
        for i in range(2):
            ws = await ws_connect(self.server.ws_url, ping_interval=1, ping_timeout=20)
            joined = await ws_join(ws, self.room)
            clients.append((ws, joined))
        self._ready.set()
        try:
            await asyncio.gather(*(self._client(i, ws, j) for i, (ws, j) in enumerate(clients)))
        finally:
            for ws, _ in clients:
                await ws.close()

    async def _client(self, i, ws, joined):
        my_id = joined["client_id"]
        self.last_msg_id[i] = joined["last_msg_id"]
        sent = 0
        next_seq_seen = 0

        async def reader():
            nonlocal next_seq_seen
            try:
                async for raw in ws:
                    msg = json.loads(raw)
                    if msg.get("type") != "chat":
                        self.errors.append(f"bystander {i} got unexpected {msg}")
                        continue
                    exp = self.last_msg_id[i] + 1
                    if msg["msg_id"] != exp:
                        self.errors.append(f"bystander {i}: msg_id {msg['msg_id']}, expected {exp}")
                    self.last_msg_id[i] = msg["msg_id"]
                    if msg["client_id"] == my_id:
                        if msg["seq"] != next_seq_seen:
                            self.errors.append(f"bystander {i}: own seq {msg['seq']}, "
                                               f"expected {next_seq_seen}")
                        next_seq_seen = msg["seq"] + 1
                    self.received[i] += 1
            except websockets.ConnectionClosed:
                pass
            if not self._stop.is_set():
                self.errors.append(f"bystander {i} was disconnected: "
                                   f"{ws.close_code} {ws.close_reason!r}")

        rt = asyncio.ensure_future(reader())
        try:
            while not self._stop.is_set():
                await ws.send(json.dumps({"type": "chat", "seq": sent, "pad": "x" * 50}))
                sent += 1
                try:
                    await asyncio.wait_for(self._stop.wait(), self.period)
                except asyncio.TimeoutError:
                    pass
            # let the tail of our own messages arrive
            deadline = time.monotonic() + IO_TIMEOUT
            while next_seq_seen < sent and time.monotonic() < deadline and not rt.done():
                await asyncio.sleep(0.01)
            if next_seq_seen != sent:
                self.errors.append(f"bystander {i}: sent {sent}, saw only {next_seq_seen} back")
        except websockets.ConnectionClosed as e:
            self.errors.append(f"bystander {i} send failed: {e!r}")
        finally:
            self._stop.set()
            await ws.close()
            await rt

    def check(self):
        """Assert no error so far and that both clients received new messages since the last
        check (waiting a little for them)."""
        deadline = time.monotonic() + IO_TIMEOUT
        while time.monotonic() < deadline and not self.errors:
            if all(self.received[i] > self._checked[i] for i in range(2)):
                break
            time.sleep(0.02)
        assert not self.errors, f"bystanders noticed: {self.errors[:5]}"
        assert all(self.received[i] > self._checked[i] for i in range(2)), \
            f"bystanders made no progress: {self.received}"
        self._checked = list(self.received)

    def stop(self):
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(IO_TIMEOUT * 2)
        assert not self._thread.is_alive(), "bystander thread did not stop"
        assert not self.errors, f"bystanders noticed: {self.errors[:5]}"


@pytest.fixture(scope="module")
def bystanders(server):
    b = Bystanders(server)
    yield b
    b.stop()
