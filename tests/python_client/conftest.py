"""Fixtures for the Python client's tests (clients/python/roomcast) against the real server.

Run with Debian's interpreter:

    ROOMCAST_BIN=build/sanitize/roomcast PYTHONPATH=clients/python \\
        /usr/bin/python3 -m pytest -q tests/python_client

* The server process is tests/integration/conftest.py's ``Server`` (loaded from there under
  another module name): ``--port 0``, ports read from its stderr lines, ``--no-netsync``, and
  ``stop()`` asserts exit status 0 after SIGTERM with no sanitizer report. The fixtures here
  always add ``--tcp-port 0``, so every server has both ports.
* ``Proxy``: a TCP relay in the test's own event loop between a client and the server, which
  the test steers: ``cut()`` resets every relayed connection, ``block()`` refuses new ones,
  ``mute()`` discards what the server sends on the connections open now (acks get lost),
  ``pause()`` stops reading from the server (so the server's queue to that client fills). It
  is how the tests lose connections and messages deterministically, without hooks in the
  client.
* ``run(coro)``: each test is a plain function running one coroutine in a fresh loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import struct
import sys
import time
from typing import Any, Awaitable, Callable

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# The package in place when it is not installed (PYTHONPATH=clients/python does the same).
try:
    import roomcast  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(REPO, "clients", "python"))

_spec = importlib.util.spec_from_file_location(
    "roomcast_integration_conftest", os.path.join(REPO, "tests", "integration", "conftest.py"))
assert _spec is not None and _spec.loader is not None
integration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(integration)

Server = integration.Server
http_exchange = integration.http_exchange
IO_TIMEOUT = integration.IO_TIMEOUT
KEY = "python-client-test-key"


def make_server(*flags: Any) -> Any:
    """A server with the TCP port and an API key (the last --port/--tcp-port given wins)."""
    return Server("--tcp-port", "0", "--api-key", KEY, *flags)


@pytest.fixture(scope="module")
def server():
    """One server shared by a test module; asserted to exit 0 on SIGTERM."""
    srv = make_server()
    try:
        yield srv
        srv.stop()
    finally:
        srv.cleanup()


@pytest.fixture
def start_server():
    """Factory for servers with special flags; each is stopped and exit-checked after the test
    (a test that stopped one itself has it judged by ``stop()`` already)."""
    started: list[Any] = []

    def start(*flags: Any) -> Any:
        srv = make_server(*flags)
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


def urls(srv: Any) -> dict[str, str]:
    return {"ws": srv.ws_url, "tcp": f"tcp://127.0.0.1:{srv.tcp_port}",
            "framed": f"tcp://127.0.0.1:{srv.tcp_port}"}


def client_for(srv: Any, kind: str, port: int | None = None, **kw: Any) -> "roomcast.Client":
    """A Client of transport kind ``ws``, ``tcp`` (line mode) or ``framed``, to the server or to
    ``port`` (a proxy in front of the matching server port)."""
    import roomcast
    kw.setdefault("min_delay", 0.05)
    kw.setdefault("max_delay", 0.5)
    if kind == "ws":
        url = f"ws://127.0.0.1:{port or srv.port}/"
    else:
        url = f"tcp://127.0.0.1:{port or srv.tcp_port}"
    return roomcast.Client(url, framed=(kind == "framed"), **kw)


def server_port(srv: Any, kind: str) -> int:
    return srv.port if kind == "ws" else srv.tcp_port


def run(coro: Awaitable[Any], timeout: float = 120) -> Any:
    """Runs a coroutine in a fresh event loop, bounded so that a broken server fails a test
    instead of hanging it."""
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


async def until(pred: Callable[[], object], timeout: float = IO_TIMEOUT, what: str = "condition",
                step: float = 0.01) -> None:
    """Waits until pred() is true; fails after timeout."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(step)


async def api(srv: Any, method: str, path: str, body: Any = None,
              key: str | None = KEY) -> tuple[int, Any]:
    """One HTTP API call (in a thread, so the test's clients keep running)."""
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    req = head.encode() + b"\r\n" + data
    status, _h, resp = await asyncio.to_thread(http_exchange, srv.port, req)
    try:
        return status, json.loads(resp) if resp else None
    except ValueError:
        return status, resp


async def room_info(srv: Any, room: str) -> dict[str, Any]:
    status, body = await api(srv, "GET", f"/api/rooms/{room}", key=None)
    assert status == 200, (status, body)
    return body  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# The proxy
# --------------------------------------------------------------------------------------------

class Proxy:
    """A TCP relay 127.0.0.1:port -> 127.0.0.1:target in the running event loop."""

    def __init__(self, target: int, upstream_rcvbuf: int | None = None) -> None:
        self.target = target
        self.upstream_rcvbuf = upstream_rcvbuf
        self.port = 0
        self.accepted: list[float] = []   # loop time of every accepted connection
        self.blocked = False
        self._flowing: asyncio.Event | None = None
        self._pipes: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._muted: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> "Proxy":
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aenter__(self) -> "Proxy":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        return len(self._pipes)

    def cut(self) -> None:
        """Resets every relayed connection: both sides get a TCP RST (SO_LINGER 0), as when a
        network path dies, so the server counts the client as dropped, not as closed."""
        for pipe in list(self._pipes):
            for w in pipe:
                sock = w.get_extra_info("socket")
                if sock is not None:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    except OSError:
                        pass
                w.transport.abort()
        self._pipes.clear()

    def block(self) -> None:
        """Refuses new connections (accepts and resets them) until unblock()."""
        self.blocked = True

    def unblock(self) -> None:
        self.blocked = False

    def mute(self) -> None:
        """Discards everything the server sends from now on on the connections open now (for
        good: connections made later are not muted)."""
        self._muted.update(self._pipes)

    def pause(self) -> None:
        """Stops reading from the server: its queue to the client fills."""
        assert self._flowing is not None
        self._flowing.clear()

    def resume(self) -> None:
        assert self._flowing is not None
        self._flowing.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.accepted.append(asyncio.get_running_loop().time())
        if self.blocked:
            cw.transport.abort()
            return
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.upstream_rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.upstream_rcvbuf)
        s.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", self.target))
        except OSError:
            s.close()
            cw.transport.abort()
            return
        sr, sw = await asyncio.open_connection(sock=s, limit=4096)
        pipe = (cw, sw)
        self._pipes.add(pipe)
        for coro in (self._pump(cr, sw, pipe, down=False), self._pump(sr, cw, pipe, down=True)):
            t = asyncio.ensure_future(coro)
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pump(self, r: asyncio.StreamReader, w: asyncio.StreamWriter,
                    pipe: tuple[asyncio.StreamWriter, asyncio.StreamWriter], down: bool) -> None:
        assert self._flowing is not None
        try:
            while True:
                if down:
                    await self._flowing.wait()
                data = await r.read(4096 if down else 65536)
                if not data:
                    break
                if down and pipe in self._muted:
                    continue
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._pipes.discard(pipe)
            self._muted.discard(pipe)
            for x in pipe:
                try:
                    x.close()
                except Exception:
                    pass
