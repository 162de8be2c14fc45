"""Blocking clients for roomcast's raw TCP port and chat port (docs/tcp.md), the binary
envelope, and the HTTP API calls the TCP tests need.

* ``LineClient``: newline-delimited JSON (line mode of ``--tcp-port``).
* ``FramedClient``: the ``\\0RC\\x01`` preamble, then ``[len u32 LE][opcode][payload]`` frames.
* ``ChatClient``: the chat port (bare JSON objects in, ``[user] text`` lines out).

Every read has a deadline (``IO_TIMEOUT`` unless told) so a broken server fails a test instead
of hanging it; none of them measures time. EOF or a reset while reading raises
``ConnectionGone``.
"""

import json
import socket
import struct
import time
import urllib.parse

from conftest import IO_TIMEOUT, ConnectionGone, http_exchange, read_http_response

PREAMBLE = b"\x00RC\x01"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
KEEPALIVE = {"type": "keepalive"}


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# -- binary envelope (docs/protocol.md, "Binary messages") -----------------------------------

def envelope(room, payload):
    """What a client sends: [room_len][room][payload]."""
    r = room.encode() if isinstance(room, str) else room
    return bytes([len(r)]) + r + payload


def parse_envelope(data):
    """What a member receives: (msg_id, client_id, room, payload)."""
    assert len(data) >= 17, f"binary message too short for the header: {data!r}"
    msg_id, client_id = struct.unpack("<QQ", data[:16])
    rl = data[16]
    assert len(data) >= 17 + rl, f"room_len {rl} beyond the message: {data!r}"
    return msg_id, client_id, data[17:17 + rl].decode(), data[17 + rl:]


# -- byte streams ------------------------------------------------------------------------------

class _Stream:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    @staticmethod
    def _socket(port, rcvbuf=None, timeout=IO_TIMEOUT):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        return s

    def send(self, data):
        self.sock.sendall(data)

    def send_slowly(self, data, step=1, pause=0.002):
        """Send data in pieces of `step` bytes, each its own write (TCP_NODELAY is on), so the
        server sees it cut at many places. The pause only makes separate segments likely."""
        for i in range(0, len(data), step):
            self.sock.sendall(data[i:i + step])
            time.sleep(pause)

    def _more(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout(f"timed out; buffered: {bytes(self.buf[:200])!r}")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise ConnectionGone(f"reset: {e}; buffered: {bytes(self.buf[:200])!r}")
        if not chunk:
            raise ConnectionGone(f"EOF; buffered: {bytes(self.buf[:200])!r}")
        self.buf += chunk

    def _exactly(self, n, deadline):
        while len(self.buf) < n:
            self._more(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _line(self, deadline):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 1]
                return out
            self._more(deadline)

    def expect_eof(self, timeout=IO_TIMEOUT):
        """Assert the server closes the connection (EOF or reset) within timeout; returns the
        bytes that came before it (including anything already buffered)."""
        deadline = time.monotonic() + timeout
        got = bytes(self.buf)
        self.buf.clear()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"server did not close the connection within {timeout}s; "
                                     f"got {got[:300]!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return got
            except socket.timeout:
                continue
            if not chunk:
                return got
            got += chunk

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _line_bytes(msg):
    if isinstance(msg, dict):
        msg = dumps(msg)
    return msg.encode() if isinstance(msg, str) else msg


class LineClient(_Stream):
    """Line mode: one JSON object per line each way."""

    @classmethod
    def connect(cls, port, **kw):
        return cls(cls._socket(port, **kw))

    def send_line(self, msg, end=b"\n"):
        self.send(_line_bytes(msg) + end)

    def send_lines(self, msgs):
        """Many lines in one write."""
        self.send(b"".join(_line_bytes(m) + b"\n" for m in msgs))

    def recv_raw(self, timeout=IO_TIMEOUT, keepalives=False):
        """The next line as str, without its '\\n'. Server keepalives are skipped unless
        `keepalives`."""
        deadline = time.monotonic() + timeout
        while True:
            raw = self._line(deadline)
            assert not raw.endswith(b"\r"), f"the server ends lines with \\n only: {raw!r}"
            text = raw.decode("utf-8")
            if not keepalives and text == '{"type":"keepalive"}':
                continue
            return text

    def recv_json(self, timeout=IO_TIMEOUT, keepalives=False):
        text = self.recv_raw(timeout, keepalives)
        try:
            msg = json.loads(text)
        except ValueError:
            raise AssertionError(f"the server sent a line that is not JSON: {text!r}")
        assert isinstance(msg, dict), text
        return msg

    def expect_error(self, code, timeout=IO_TIMEOUT):
        msg = self.recv_json(timeout)
        assert msg.get("type") == "error" and msg.get("code") == code, \
            f"expected error {code}, got {msg}"
        assert isinstance(msg.get("message"), str) and msg["message"], msg
        assert "client_id" not in msg and "msg_id" not in msg, msg
        return msg

    def request(self, msg, timeout=IO_TIMEOUT):
        self.send_line(msg)
        return self.recv_json(timeout)

    def join(self, room, **extra):
        msg = self.request({"type": "join", "room": room, **extra})
        assert msg.get("type") == "joined" and msg.get("room") == room, msg
        assert isinstance(msg.get("client_id"), int) and isinstance(msg.get("epoch"), str), msg
        return msg

    def expect_close(self, code, reason=None, timeout=IO_TIMEOUT, skip=()):
        """Read lines (ignoring keepalives and those whose type is in `skip`) up to the close
        line; assert its code (and reason), then that the server closes the connection."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.recv_json(max(0.0, deadline - time.monotonic()))
            except ConnectionGone as e:
                raise AssertionError(f"connection closed without a close line "
                                     f"(expected {code}): {e}")
            if msg.get("type") in skip:
                continue
            break
        assert msg.get("type") == "close", f"expected a close line ({code}), got {msg}"
        assert msg.get("code") == code, f"expected close {code}, got {msg}"
        assert isinstance(msg.get("reason"), str), msg
        if reason is not None:
            assert msg["reason"] == reason, msg
        rest = self.expect_eof(max(1.0, deadline - time.monotonic()))
        assert rest == b"", f"the server sent more after its close line: {rest[:200]!r}"
        return msg


class FramedClient(_Stream):
    """Framed mode: the preamble, then length-prefixed frames both ways."""

    @classmethod
    def connect(cls, port, slowly=False, **kw):
        c = cls(cls._socket(port, **kw))
        if slowly:
            c.send_slowly(PREAMBLE, pause=0.01)
        else:
            c.send(PREAMBLE)
        got = c._exactly(4, time.monotonic() + IO_TIMEOUT)
        assert got == PREAMBLE, f"the server answered the preamble with {got!r}"
        return c

    @staticmethod
    def frame(opcode, payload=b"", length=None):
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload) if length is None else length
        return struct.pack("<IB", n, opcode) + payload

    def send_frame(self, opcode, payload=b"", length=None):
        self.send(self.frame(opcode, payload, length))

    def send_json(self, obj):
        self.send_frame(OP_TEXT, dumps(obj).encode())

    def send_binary(self, room, payload):
        self.send_frame(OP_BINARY, envelope(room, payload))

    def send_close(self, code, reason=b""):
        self.send_frame(OP_CLOSE, struct.pack("!H", code) + reason)

    def recv_frame(self, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        n, op = struct.unpack("<IB", self._exactly(5, deadline))
        return op, self._exactly(n, deadline)

    def recv_message(self, timeout=IO_TIMEOUT, auto_pong=True):
        """The next text, binary or close frame; pings are answered (unless not auto_pong),
        pongs skipped."""
        deadline = time.monotonic() + timeout
        while True:
            op, payload = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if op == OP_PING:
                if auto_pong:
                    self.send_frame(OP_PONG, payload)
                continue
            if op == OP_PONG:
                continue
            assert op in (OP_TEXT, OP_BINARY, OP_CLOSE), f"unknown opcode {op:#x} from the server"
            return op, payload

    def recv_raw(self, timeout=IO_TIMEOUT):
        op, payload = self.recv_message(timeout)
        assert op == OP_TEXT, f"expected a text frame, got {op:#x} {payload[:200]!r}"
        return payload.decode("utf-8")

    def recv_json(self, timeout=IO_TIMEOUT):
        return json.loads(self.recv_raw(timeout))

    def recv_binary(self, timeout=IO_TIMEOUT):
        op, payload = self.recv_message(timeout)
        assert op == OP_BINARY, f"expected a binary frame, got {op:#x} {payload[:200]!r}"
        return parse_envelope(payload)

    def expect_error(self, code, timeout=IO_TIMEOUT):
        msg = self.recv_json(timeout)
        assert msg.get("type") == "error" and msg.get("code") == code, \
            f"expected error {code}, got {msg}"
        return msg

    def request(self, obj, timeout=IO_TIMEOUT):
        self.send_json(obj)
        return self.recv_json(timeout)

    def join(self, room, **extra):
        msg = self.request({"type": "join", "room": room, **extra})
        assert msg.get("type") == "joined" and msg.get("room") == room, msg
        return msg

    def expect_close(self, code, reason=None, timeout=IO_TIMEOUT, skip_data=False):
        """The next frame (pings and pongs aside; data frames too if skip_data) is a close with
        `code` (and `reason`), then the server closes the connection."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                op, payload = self.recv_message(max(0.0, deadline - time.monotonic()),
                                                auto_pong=False)
            except ConnectionGone as e:
                raise AssertionError(f"connection closed without a close frame "
                                     f"(expected {code}): {e}")
            if op != OP_CLOSE and skip_data:
                continue
            break
        assert op == OP_CLOSE, f"expected close {code}, got opcode {op:#x} {payload[:200]!r}"
        assert len(payload) >= 2, f"close frame without a code: {payload!r}"
        got = struct.unpack("!H", payload[:2])[0]
        why = payload[2:].decode("utf-8")
        assert got == code, f"expected close {code}, got {got} {why!r}"
        if reason is not None:
            assert why == reason, f"close {got}: reason {why!r}, expected {reason!r}"
        rest = self.expect_eof(max(1.0, deadline - time.monotonic()))
        assert rest == b"", f"the server sent more after its close frame: {rest[:200]!r}"
        return got, why


class ChatClient(_Stream):
    """The chat port: JSON objects with no delimiter out, text lines in."""

    @classmethod
    def connect(cls, port, **kw):
        return cls(cls._socket(port, **kw))

    def say(self, user, text):
        self.send(dumps({"user": user, "text": text}).encode())

    def recv_line(self, timeout=IO_TIMEOUT):
        return self._line(time.monotonic() + timeout).decode("utf-8")

    def expect_error(self, timeout=IO_TIMEOUT):
        line = self.recv_line(timeout)
        assert line.startswith("[roomcast] error: ") and len(line) > 18, \
            f"expected an error line, got {line!r}"
        return line

    def expect_closing(self, reason=None, timeout=IO_TIMEOUT):
        line = self.recv_line(timeout)
        assert line.startswith("[roomcast] closing: "), f"expected the closing line, got {line!r}"
        if reason is not None:
            assert line == f"[roomcast] closing: {reason}", line
        rest = self.expect_eof(timeout)
        assert rest == b"", f"the server sent more after its closing line: {rest[:200]!r}"
        return line


# -- the HTTP API --------------------------------------------------------------------------------

def api(srv, method, path, body=None, key=None):
    """One HTTP request; returns (status, parsed JSON body or raw bytes)."""
    b = b"" if body is None else (body if isinstance(body, bytes) else dumps(body).encode())
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    if body is not None:
        head += f"Content-Length: {len(b)}\r\nContent-Type: application/json\r\n"
    status, headers, raw = http_exchange(srv.port, head.encode() + b"\r\n" + b)
    if "json" in headers.get("content-type", "") and raw:
        return status, json.loads(raw)
    return status, raw


def room_path(room, sub=""):
    return "/api/rooms/" + urllib.parse.quote(room, safe="") + sub


class ApiPublisher:
    """POST /api/rooms/{room}/messages over one keep-alive connection."""

    def __init__(self, srv, key):
        self.key = key
        self.sock = socket.create_connection(("127.0.0.1", srv.port), timeout=IO_TIMEOUT)
        self.rest = b""

    def publish(self, room, obj):
        b = dumps(obj).encode()
        self.sock.sendall((f"POST {room_path(room, '/messages')} HTTP/1.1\r\nHost: x\r\n"
                           f"Authorization: Bearer {self.key}\r\nContent-Length: {len(b)}\r\n"
                           f"Content-Type: application/json\r\n\r\n").encode() + b)
        status, _headers, body, rest = read_http_response(self.sock)
        assert rest == b"", rest
        assert status == 200, f"API publish answered {status}: {body!r}"
        return json.loads(body)

    def close(self):
        self.sock.close()


def room_info(srv, room):
    status, doc = api(srv, "GET", room_path(room))
    return doc if status == 200 else None


def wait_members(srv, room, n, timeout=IO_TIMEOUT):
    """Wait until the room has exactly n members (e.g. chat clients, joined on connect)."""
    deadline = time.monotonic() + timeout
    info = None
    while time.monotonic() < deadline:
        info = room_info(srv, room)
        if info is not None and info.get("members") == n:
            return info
        time.sleep(0.02)
    raise AssertionError(f"room {room!r} never had {n} members; last: {info}")
