"""The byte streams under a :class:`roomcast.Client`: WebSocket (``websockets``' asyncio API)
and the raw TCP port (asyncio streams), in line mode or framed mode (docs/tcp.md).

A transport moves whole messages: text (one JSON object) and binary (an envelope). It knows
nothing of rooms; :class:`TransportClosed` ends it with the close code and reason the server
gave, when it gave one.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import urllib.parse
from typing import Any, Protocol

__all__ = ["Transport", "TransportClosed", "open_transport", "PREAMBLE"]

#: The four bytes that select framed mode on the TCP port; the server answers with the same.
PREAMBLE = b"\x00RC\x01"
_OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
_FRAME = struct.Struct("<IB")
# 1006: closed without a close frame / close line (RFC 6455's "abnormal closure").
ABNORMAL = 1006


class TransportClosed(Exception):
    """The connection ended. ``code``/``reason`` are the server's close code and reason, or
    1006 and a description when it gave none (reset, EOF, handshake failure)."""

    def __init__(self, code: int = ABNORMAL, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class Transport(Protocol):
    """One open connection to a roomcast server."""

    #: False when the transport cannot send binary messages (the TCP port's line mode).
    binary_ok: bool
    #: "ws", "tcp" (line mode) or "tcp-framed".
    kind: str

    async def send_text(self, text: str) -> None: ...
    async def send_binary(self, data: bytes) -> None: ...
    async def recv(self) -> str | bytes: ...
    async def close(self, code: int = 1000, reason: str = "") -> None: ...


# -- WebSocket ---------------------------------------------------------------------------------

class _WebSocketTransport:
    binary_ok = True
    kind = "ws"

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    @staticmethod
    def _closed(e: Exception) -> TransportClosed:
        rcvd = getattr(e, "rcvd", None)
        if rcvd is not None:
            return TransportClosed(rcvd.code, rcvd.reason)
        return TransportClosed(ABNORMAL, str(e))

    async def send_text(self, text: str) -> None:
        from websockets.exceptions import ConnectionClosed
        try:
            await self._ws.send(text)
        except ConnectionClosed as e:
            raise self._closed(e) from None
        except OSError as e:
            raise TransportClosed(ABNORMAL, str(e)) from None

    async def send_binary(self, data: bytes) -> None:
        from websockets.exceptions import ConnectionClosed
        try:
            await self._ws.send(data)
        except ConnectionClosed as e:
            raise self._closed(e) from None
        except OSError as e:
            raise TransportClosed(ABNORMAL, str(e)) from None

    async def recv(self) -> str | bytes:
        from websockets.exceptions import ConnectionClosed
        try:
            data = await self._ws.recv()
        except ConnectionClosed as e:
            raise self._closed(e) from None
        except OSError as e:
            raise TransportClosed(ABNORMAL, str(e)) from None
        return data  # type: ignore[no-any-return]

    async def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            await self._ws.close(code, reason)
        except Exception:  # already gone: nothing to close
            pass


# -- raw TCP: line mode ------------------------------------------------------------------------

class _LineTransport:
    """Newline-delimited JSON. Binary room messages arrive as JSON objects with a ``binary``
    member (base64); binary messages cannot be sent."""

    binary_ok = False
    kind = "tcp"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._r = reader
        self._w = writer

    async def send_text(self, text: str) -> None:
        if self._w.is_closing():
            raise TransportClosed(ABNORMAL, "connection closed")
        try:
            self._w.write(text.encode("utf-8") + b"\n")
            await self._w.drain()
        except (ConnectionError, OSError) as e:
            raise TransportClosed(ABNORMAL, str(e)) from None

    async def send_binary(self, data: bytes) -> None:
        raise TransportClosed(ABNORMAL, "binary messages need WebSocket or framed TCP")

    async def recv(self) -> str | bytes:
        while True:
            try:
                line = await self._r.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                raise TransportClosed(ABNORMAL, "EOF") from None
            except asyncio.LimitOverrunError:
                raise TransportClosed(1009, "line longer than the client's max_message_size") \
                    from None
            except (ConnectionError, OSError) as e:
                raise TransportClosed(ABNORMAL, str(e)) from None
            line = line.strip(b" \t\r\n")
            if line:
                try:
                    return line.decode("utf-8")
                except UnicodeDecodeError:
                    raise TransportClosed(1007, "a line from the server is not UTF-8") from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await _close_writer(self._w)


# -- raw TCP: framed mode ----------------------------------------------------------------------

class _FramedTransport:
    """``[len u32 LE][opcode][payload]`` frames after the ``\\0RC\\x01`` preamble."""

    binary_ok = True
    kind = "tcp-framed"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 max_size: int) -> None:
        self._r = reader
        self._w = writer
        self._max = max_size

    async def _send(self, op: int, payload: bytes) -> None:
        if self._w.is_closing():
            raise TransportClosed(ABNORMAL, "connection closed")
        try:
            self._w.write(_FRAME.pack(len(payload), op) + payload)
            await self._w.drain()
        except (ConnectionError, OSError) as e:
            raise TransportClosed(ABNORMAL, str(e)) from None

    async def send_text(self, text: str) -> None:
        await self._send(_OP_TEXT, text.encode("utf-8"))

    async def send_binary(self, data: bytes) -> None:
        await self._send(_OP_BINARY, data)

    async def recv(self) -> str | bytes:
        while True:
            try:
                n, op = _FRAME.unpack(await self._r.readexactly(_FRAME.size))
                if n > self._max:
                    raise TransportClosed(1009, f"frame of {n} bytes")
                payload = await self._r.readexactly(n)
            except asyncio.IncompleteReadError:
                raise TransportClosed(ABNORMAL, "EOF") from None
            except (ConnectionError, OSError) as e:
                raise TransportClosed(ABNORMAL, str(e)) from None
            if op == _OP_TEXT:
                try:
                    return payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise TransportClosed(1007, "a text frame is not UTF-8") from None
            if op == _OP_BINARY:
                return payload
            if op == _OP_PING:
                await self._send(_OP_PONG, payload)
            elif op == _OP_CLOSE:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                reason = payload[2:].decode("utf-8", errors="replace")
                await _close_writer(self._w)
                raise TransportClosed(code, reason)
            elif op != _OP_PONG:
                raise TransportClosed(1002, f"unknown opcode {op:#x}")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            await self._send(_OP_CLOSE, struct.pack(">H", code) + reason.encode("utf-8"))
        except TransportClosed:
            pass
        await _close_writer(self._w)


async def _close_writer(w: asyncio.StreamWriter) -> None:
    if not w.is_closing():
        try:
            w.write_eof()
        except (OSError, RuntimeError):
            pass
        w.close()
    try:
        await asyncio.wait_for(w.wait_closed(), 2.0)
    except (OSError, asyncio.TimeoutError):
        pass


# -- opening -----------------------------------------------------------------------------------

async def open_transport(url: str, *, framed: bool = False, ping_interval: float | None = 20.0,
                         max_size: int = 64 * 1024 * 1024,
                         timeout: float | None = 10.0) -> Transport:
    """Opens ``ws://``/``wss://`` URLs with ``websockets`` and ``tcp://host:port`` with asyncio
    streams (framed mode when ``framed``). Raises ``OSError``, ``asyncio.TimeoutError``,
    ``TransportClosed`` or a ``websockets`` handshake error when the connection fails."""
    u = urllib.parse.urlsplit(url)
    if u.scheme in ("ws", "wss"):
        try:
            import websockets
        except ImportError as e:  # pragma: no cover - Debian: apt install python3-websockets
            raise RuntimeError("ws:// needs the websockets package (python3-websockets)") from e
        ws = await websockets.connect(  # type: ignore[attr-defined]
            url, compression=None, max_size=max_size, ping_interval=ping_interval,
            ping_timeout=ping_interval, open_timeout=timeout, close_timeout=2)
        return _WebSocketTransport(ws)
    if u.scheme == "tcp":
        if not u.hostname or not u.port:
            raise ValueError(f"a tcp URL is tcp://HOST:PORT, not {url!r}")
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(u.hostname, u.port, limit=max_size + 2), timeout)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not framed:
            return _LineTransport(reader, writer)
        try:
            writer.write(PREAMBLE)
            await writer.drain()
            got = await asyncio.wait_for(reader.readexactly(len(PREAMBLE)), timeout)
        except BaseException:
            writer.close()
            raise
        if got != PREAMBLE:
            writer.close()
            raise TransportClosed(1002, f"server answered the framed preamble with {got!r}")
        return _FramedTransport(reader, writer, max_size)
    raise ValueError(f"unsupported URL scheme in {url!r}: use ws://, wss:// or tcp://")
