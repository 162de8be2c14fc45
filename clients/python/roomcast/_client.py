"""``Client`` and ``Room``: the connection, its reconnects and every room's order check.

See the package docstring (``roomcast/__init__.py``) for the API reference; the comments here
say how it works.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import random
import re
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional, overload

from ._transport import ABNORMAL, Transport, TransportClosed, open_transport
from ._types import (Ack, BinaryMessage, ClientClosed, ConnectionLost, Gap, Message,
                     RoomcastError, decode_envelope, encode_envelope)

__all__ = ["Client", "Room"]

log = logging.getLogger("roomcast")

#: A callback: a plain function or a coroutine function (then run as a task). Room callbacks
#: get (payload, room); the client's on_open(reconnect), on_close(code, reason) and
#: on_error(error, room_or_None).
Handler = Callable[..., Optional[Awaitable[Any]]]

# Error codes that only a join can cause: an error carrying no "room" with one of these codes
# answers the oldest join still waiting on this connection (joins are answered in order).
_JOIN_ERRORS = frozenset({"too_many_rooms", "room_limit", "rate_limited", "banned"})
_SESSION_RE = re.compile(r"^[0-9a-fA-F]{32}$")
_END = object()  # ends a room's message iterators


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@dataclass(eq=False)
class _Out:
    """One publish on its way: kept until sent (and, with a ref, until acknowledged)."""

    room: "Room"
    data: str | bytes
    key: str | None = None
    ref: int | None = None
    future: asyncio.Future[Ack] | None = None   # set when the caller awaits the ack
    sent: bool = False                            # written on the current connection


@dataclass(eq=False)
class _Pending:
    """A join request the server has not answered on the current connection yet."""

    room: "Room"
    gen: int


class Room:
    """One room this client is in. Obtained from :meth:`Client.join`; see the package
    docstring for the attributes and callbacks."""

    def __init__(self, client: "Client", name: str, *, history: int | None = None,
                 state: bool = False, presence: bool = False, conflate: bool = False,
                 buffer: bool = True, since: int | None = None, epoch: str | None = None,
                 handlers: Mapping[str, Handler | None] | None = None) -> None:
        self.client = client
        self.name = name
        # what every join (and rejoin) of this room asks for
        self.history = history
        self.want_state = state
        self.want_presence = presence
        self.conflate = conflate
        # order state
        self.last_msg_id: int = since or 0   # last msg_id delivered (or skipped knowingly)
        self.epoch: str | None = epoch         # epoch last_msg_id belongs to
        self.joined = False                    # "joined" received on the current connection
        self.closed = False                    # left, removed by the server, or client closed
        self.recovered: bool | None = None     # the last joined's "recovered", if it had one
        self.gaps = 0                          # gaps reported
        self.duplicates = 0                    # messages dropped as already delivered
        self.conflated = 0                     # msg_ids announced as conflated
        # presence (joined with presence=True)
        self.members: set[int] | None = None
        self.member_count: int | None = None
        # room state (joined with state=True): state_key -> latest message
        self.state: dict[str, dict[str, Any]] | None = None
        # callbacks
        self.on_message: Handler | None = None
        self.on_gap: Handler | None = None
        self.on_state: Handler | None = None
        self.on_presence: Handler | None = None
        self.on_conflated: Handler | None = None
        self.on_error: Handler | None = None
        self.on_joined: Handler | None = None
        self.on_left: Handler | None = None
        for k, fn in (handlers or {}).items():
            if fn is not None:
                setattr(self, k, fn)
        self._resume = since is not None       # a since to send on the (first) join
        self._skip: set[int] = set()           # msg_ids announced by "conflated" notices
        self._state_upto = 0                   # last_msg_id of the latest state snapshot
        self._queue: deque[_Out] = deque()     # publishes waiting for "joined"
        self._inbox: asyncio.Queue[Any] | None = asyncio.Queue() if buffer else None
        self._join_future: asyncio.Future[None] | None = None
        self._join_sent_gen = -1               # connection generation the last join went on
        self._leave_future: asyncio.Future[None] | None = None
        self._flushing = False

    def __repr__(self) -> str:
        return (f"<Room {self.name!r} last_msg_id={self.last_msg_id} epoch={self.epoch} "
                f"joined={self.joined} closed={self.closed}>")

    @property
    def client_id(self) -> int | None:
        """This client's ``client_id`` (the same in every room of the connection)."""
        return self.client.client_id

    # -- publishing and leaving ------------------------------------------------------------------

    @overload
    async def publish(self, msg: Mapping[str, Any] | bytes | bytearray | memoryview, *,
                      ack: Literal[True], idempotency_key: str | bool | None = None,
                      timeout: float | None = None) -> Ack: ...

    @overload
    async def publish(self, msg: Mapping[str, Any] | bytes | bytearray | memoryview, *,
                      ack: Literal[False] = False, idempotency_key: str | bool | None = None,
                      timeout: float | None = None) -> None: ...

    @overload
    async def publish(self, msg: Mapping[str, Any] | bytes | bytearray | memoryview, *,
                      ack: bool, idempotency_key: str | bool | None = None,
                      timeout: float | None = None) -> Ack | None: ...

    async def publish(self, msg: Mapping[str, Any] | bytes | bytearray | memoryview, *,
                      ack: bool = False, idempotency_key: str | bool | None = None,
                      timeout: float | None = None) -> Ack | None:
        """Publishes a JSON object, or binary data, to this room.

        With ``ack=True`` waits for the server's acknowledgement and returns an :class:`Ack`
        (``msg_id``, ``duplicate``); otherwise returns ``None`` once the message is written (or
        queued while disconnected). ``idempotency_key`` (a string, or ``True`` for a random one)
        makes the publish safe to resend: if the connection is lost before its ack, it is sent
        again after the reconnect, and the room never sequences it twice. ``timeout`` bounds
        the wait for the ack (``asyncio.TimeoutError``). Raises :class:`RoomcastError` when
        the server refuses the publish (an error naming its ``ref``), :class:`ConnectionLost`
        when the connection is lost with no key to resend it under, :class:`ClientClosed` when
        the room is left or the client closed meanwhile.
        """
        return await self.client._publish(self, msg, ack=ack, key=idempotency_key,
                                          timeout=timeout)

    async def leave(self, timeout: float = 10.0) -> None:
        """Leaves the room: waits for the server's ``left`` (at most ``timeout`` seconds) when
        connected; no message of the room is delivered afterwards and iterators end."""
        await self.client._leave(self, timeout)

    # -- receiving ---------------------------------------------------------------------------

    def __aiter__(self) -> "Room":
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.recv()
        except ClientClosed:
            raise StopAsyncIteration from None

    async def recv(self, timeout: float | None = None) -> Message:
        """The next message of the room, in ``msg_id`` order: a ``dict`` (including the
        ``{"type":"state",...}`` snapshot when joined with ``state=True``) or a
        :class:`BinaryMessage`. Raises :class:`ClientClosed` once the room is closed and every
        buffered message was read, ``asyncio.TimeoutError`` after ``timeout`` seconds."""
        if self._inbox is None:
            raise RuntimeError(f"room {self.name!r} was joined with buffer=False")
        item = await asyncio.wait_for(self._inbox.get(), timeout)
        if item is _END:
            self._inbox.put_nowait(_END)  # for the next reader
            raise ClientClosed("closed", f"room {self.name!r} is closed", room=self.name)
        return item  # type: ignore[no-any-return]

    def pending(self) -> int:
        """How many messages are buffered for :meth:`recv` / ``async for``."""
        return 0 if self._inbox is None else self._inbox.qsize()

    # -- internals ---------------------------------------------------------------------------

    def _push(self, item: Any) -> None:
        if self._inbox is not None:
            self._inbox.put_nowait(item)

    def _finish(self) -> None:
        if not self.closed:
            self.closed = True
            self.joined = False
        self._push(_END)


class Client:
    """A connection to a roomcast server that reconnects by itself. See the package docstring
    for the API reference."""

    def __init__(self, url: str | Sequence[str], *, reconnect: bool = True, min_delay: float = 0.25,
                 max_delay: float = 10.0, max_queued: int = 1000, resume: bool = True,
                 session: str | None = None, framed: bool = False,
                 connect_timeout: float = 10.0, ping_interval: float | None = 20.0,
                 max_message_size: int = 64 * 1024 * 1024,
                 on_open: Handler | None = None, on_close: Handler | None = None,
                 on_error: Handler | None = None, token: str | None = None,
                 get_token: Callable[[], str | Awaitable[str]] | None = None,
                 refresh_before: float = 30.0) -> None:
        if session is not None and not _SESSION_RE.match(session):
            raise ValueError("a session is the 32 hex digits a 'joined' gave")
        # A list: nodes sharing rooms (--redis, docs/cluster.md); every retry goes to the next.
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("no URL given")
        for u in urls:
            if not isinstance(u, str) or not u.startswith(("ws://", "wss://", "tcp://")):
                raise ValueError(f"unsupported URL {u!r}: use ws://, wss:// or tcp://HOST:PORT")
        self.urls: list[str] = urls              # every URL, in the order they are tried
        self.url_index = 0                       # index in urls of the one in use or tried
        self.url = urls[0]                       # that URL
        self.reconnect = reconnect
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.max_queued = max_queued
        self.resume = resume
        self.framed = framed
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.max_message_size = max_message_size
        self.on_open = on_open
        self.on_close = on_close
        self.on_error = on_error
        # Connection tokens (docs/auth.md): sent as {"type":"auth"} first on every connection;
        # get_token (called for each connection and before exp) wins over a fixed token.
        self.token = token
        self.get_token = get_token
        self.refresh_before = refresh_before
        self.user: str | None = None            # the server's "authenticated" user
        self.token_exp: int | None = None       # and its exp (seconds since the epoch)
        self._refresh_task: asyncio.Task[None] | None = None
        self.session: str | None = session      # presented on the first join of a connection
        self.client_id: int | None = None       # from the last "joined"
        self.rooms: dict[str, Room] = {}
        self.status = "idle"                    # idle|connecting|open|reconnecting|closed
        self.attempt = 0                        # failed attempts since a good connection
        self.reconnects = 0                     # connections after the first
        self.close_code: int | None = None      # of the last connection that ended
        self.close_reason: str | None = None
        self._transport: Transport | None = None
        self._gen = 0                           # connection generation
        self._session_sent_gen = -1             # generation whose first join went out
        self._joins: deque[_Pending] = deque()  # joins waiting for their answer
        self._acks: dict[int, _Out] = {}        # publishes waiting for their ack, by ref
        self._leaving: dict[str, Room] = {}     # rooms whose leave() waits for "left"
        self._abandoned: set[str] = set()       # joins given up before their "joined"
        self._next_ref = 0
        self._close_hint: tuple[int, str] | None = None  # TCP line mode's close line
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._opened: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._closed_event: asyncio.Event | None = None
        self._closing = False
        self._fatal: RoomcastError | None = None
        self._connect_error: BaseException | None = None
        self._send_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"<Client {self.url} {self.status} client_id={self.client_id}>"

    async def __aenter__(self) -> "Client":
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def binary_ok(self) -> bool:
        """Whether binary messages can be published: not over the TCP port's line mode."""
        return not (self.url.startswith("tcp:") and not self.framed)

    @property
    def transport_kind(self) -> str | None:
        """``"ws"``, ``"tcp"`` or ``"tcp-framed"`` while connected, else ``None``."""
        return self._transport.kind if self._transport else None

    # -- public API --------------------------------------------------------------------------

    async def connect(self) -> None:
        """Opens the connection (once; later calls return at once while it is open). With
        ``reconnect=True`` a failing server is retried with backoff until it answers (bound
        the wait with ``asyncio.wait_for``); with ``reconnect=False`` the first failure
        raises."""
        self._start()
        assert self._opened is not None and self._task is not None
        if self.status == "open":
            return
        if self._fatal is not None:
            raise self._fatal
        waiter = asyncio.ensure_future(self._opened.wait())
        try:
            await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not self._opened.is_set():
            err = self._connect_error
            if isinstance(err, RoomcastError):
                raise err
            raise ClientClosed("closed", f"could not connect to {self.url}: {err!r}") from err

    async def join(self, room: str, *, history: int | None = None, state: bool = False,
                   presence: bool = False, conflate: bool = False, buffer: bool = True,
                   since: int | None = None, epoch: str | None = None,
                   on_message: Handler | None = None, on_gap: Handler | None = None,
                   on_state: Handler | None = None, on_presence: Handler | None = None,
                   on_conflated: Handler | None = None, on_error: Handler | None = None,
                   on_joined: Handler | None = None, on_left: Handler | None = None,
                   timeout: float | None = None) -> Room:
        """Joins ``room`` and returns its :class:`Room` once the server's ``joined`` arrived
        (messages it replays follow through ``async for`` / ``on_message``). Joining a room
        already joined returns the same ``Room``. Raises :class:`RoomcastError` when the
        server refuses the join (``too_many_rooms``, ``banned`` ...)."""
        name_len = len(room.encode("utf-8"))
        if not 1 <= name_len <= 255 or "\0" in room:
            raise ValueError("a room name is 1 to 255 bytes of UTF-8 without NUL")
        if self._fatal is not None or self._closing:
            raise self._fatal or ClientClosed("closed", "the client is closed")
        existing = self.rooms.get(room)
        if existing is not None:
            if existing._join_future is not None:
                await asyncio.wait_for(asyncio.shield(existing._join_future), timeout)
            return existing
        handlers = dict(on_message=on_message, on_gap=on_gap, on_state=on_state,
                        on_presence=on_presence, on_conflated=on_conflated, on_error=on_error,
                        on_joined=on_joined, on_left=on_left)
        r = Room(self, room, history=history, state=state, presence=presence,
                 conflate=conflate, buffer=buffer, since=since, epoch=epoch, handlers=handlers)
        r._join_future = _future()
        self.rooms[room] = r
        self._start()
        if self.status == "open":
            await self._send_join(r)
        try:
            await asyncio.wait_for(asyncio.shield(r._join_future), timeout)
        except asyncio.CancelledError:
            await self._abandon(r)
            raise
        except asyncio.TimeoutError:
            await self._abandon(r)
            raise
        return r

    async def close(self) -> None:
        """Closes the connection for good (no reconnect): pending acks and joins fail with
        :class:`ClientClosed`, rooms' iterators end."""
        if self._task is None:
            self._closing = True
            self._finish(ClientClosed("closed", "the client was closed"))
            return
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        t = self._transport
        if t is not None:
            await t.close(1000, "bye")
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 5.0)
        except asyncio.TimeoutError:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for task in list(self._tasks):
            task.cancel()

    async def wait_closed(self) -> None:
        """Returns once the client is closed for good (by :meth:`close`, or by the server:
        kicked, replaced, banned, or a lost connection with ``reconnect=False``)."""
        if self._closed_event is None:
            self._closed_event = asyncio.Event()
        await self._closed_event.wait()

    # -- the connection loop -----------------------------------------------------------------

    def _start(self) -> None:
        if self._task is not None:
            return
        self._opened = asyncio.Event()
        self._wake = asyncio.Event()
        if self._closed_event is None:
            self._closed_event = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="roomcast-client")

    def _set_status(self, s: str) -> None:
        self.status = s

    async def _run(self) -> None:
        err: RoomcastError | None = None
        try:
            while not self._closing:
                self._set_status("connecting" if self._gen == 0 and self.attempt == 0
                                 else "reconnecting")
                self.url = self.urls[self.url_index]
                try:
                    transport = await open_transport(
                        self.url, framed=self.framed, ping_interval=self.ping_interval,
                        max_size=self.max_message_size, timeout=self.connect_timeout)
                except (ValueError, RuntimeError) as e:  # a bad URL: retrying cannot help
                    self._connect_error = e
                    err = ClientClosed("closed", str(e))
                    break
                except Exception as e:
                    self._connect_error = e
                    if not self.reconnect:
                        err = ClientClosed("closed", f"could not connect to {self.url}: {e!r}")
                        break
                    await self._backoff(e)
                    continue
                if self._closing:
                    await transport.close(1000, "bye")
                    break
                code, reason = await self._serve(transport)
                err = self._after_close(code, reason)
                if err is not None or self._closing:
                    break
                if not self.reconnect:
                    err = ClientClosed("closed", f"connection closed: {code} {reason}".rstrip())
                    break
                await self._backoff(None)
        except asyncio.CancelledError:
            pass
        finally:
            self._transport = None
            self._finish(err or ClientClosed("closed", "the client was closed"))

    async def _serve(self, transport: Transport) -> tuple[int, str]:
        """Runs one connection: rejoins every room, then reads until it ends."""
        self._gen += 1
        self._transport = transport
        self._close_hint = None
        self._joins.clear()
        if self._gen > 1:
            self.reconnects += 1
        loop = asyncio.get_running_loop()
        opened_at = loop.time()
        got_data = False
        self._set_status("open")
        assert self._opened is not None
        self._opened.set()
        self._call(self.on_open, self.reconnects > 0)
        try:
            # The token first: the server handles messages in order, so the joins after it
            # are checked as this user.
            await self._authenticate()
            for room in list(self.rooms.values()):
                if not room.closed:
                    await self._send_join(room)
            while True:
                data = await transport.recv()
                if not got_data:
                    got_data = True
                    self.attempt = 0   # the server answers: a good connection
                self._dispatch(data)
        except TransportClosed as e:
            code, reason = e.code, e.reason
        except asyncio.CancelledError:
            await transport.close(1000, "bye")
            raise
        finally:
            if self._refresh_task is not None:
                self._refresh_task.cancel()
                self._refresh_task = None
        # A connection that carried something, or lived a while, resets the backoff; one
        # closed at once (a TCP accept and nothing more) does not.
        if loop.time() - opened_at >= self.max_delay:
            self.attempt = 0
        if code == ABNORMAL and self._close_hint is not None:
            code, reason = self._close_hint
        return code, reason

    def _after_close(self, code: int, reason: str) -> RoomcastError | None:
        """Bookkeeping after a connection ended; returns an error when it must not be
        reopened (kicked, replaced by a newer connection of this session)."""
        self._transport = None
        self.close_code, self.close_reason = code, reason
        self._joins.clear()
        self._abandoned.clear()
        assert self._opened is not None
        self._opened.clear()
        for room in self.rooms.values():
            room.joined = False
        # Publishes written on the lost connection and not acknowledged: those with an
        # idempotency key go first in their room's queue (in publish order) to be resent after
        # the rejoin; the others cannot be resent safely.
        resend: dict[Room, list[_Out]] = {}
        for ref, out in list(self._acks.items()):
            if not out.sent:
                continue
            out.sent = False
            if out.key is not None and not out.room.closed:
                resend.setdefault(out.room, []).append(out)
                continue
            del self._acks[ref]
            if out.future is not None and not out.future.done():
                out.future.set_exception(ConnectionLost(
                    "connection_lost", "the connection was lost before the ack; the message "
                    "may or may not have been sequenced" + (
                        " (the room was left: it is not resent)" if out.room.closed else
                        " (publish with an idempotency_key to have it resent)"),
                    room=out.room.name, ref=ref))
        for room, outs in resend.items():
            room._queue.extendleft(reversed(outs))
        self._call(self.on_close, code, reason)
        if code == 1008 and (reason == "kicked" or reason.startswith("replaced")):
            which = "kicked" if reason == "kicked" else "replaced"
            return ClientClosed(which, f"closed by the server: {code} {reason}")
        # A refused or expired token: the same fixed token would be refused again. With
        # get_token the next connection asks for a fresh one.
        if code in (4001, 4002) and self.get_token is None:
            which = "unauthenticated" if code == 4001 else "token_expired"
            return ClientClosed(which, f"closed by the server: {code} {reason}")
        return None

    async def _backoff(self, err: BaseException | None) -> None:
        base = min(self.max_delay, self.min_delay * 2 ** min(self.attempt, 16))
        delay = base * (0.5 + random.random() * 0.5)
        self.attempt += 1
        # Several URLs: the node is presumed gone, try the next (the backoff counts attempts
        # across all of them, as with one URL).
        self.url_index = (self.url_index + 1) % len(self.urls)
        self._set_status("reconnecting")
        log.debug("roomcast: reconnecting to %s in %.3fs (attempt %d): %r",
                  self.urls[self.url_index], delay,
                  self.attempt, err)
        assert self._wake is not None
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except asyncio.TimeoutError:
            pass

    def _finish(self, err: RoomcastError) -> None:
        """The client is closed for good: fail what waits, end the iterators."""
        self._set_status("closed")
        if self._fatal is None:
            self._fatal = err
        err = self._fatal
        for out in list(self._acks.values()):
            if out.future is not None and not out.future.done():
                out.future.set_exception(err)
        self._acks.clear()
        for room in list(self.rooms.values()):
            for out in room._queue:
                if out.future is not None and not out.future.done():
                    out.future.set_exception(err)
            room._queue.clear()
            if room._join_future is not None and not room._join_future.done():
                room._join_future.set_exception(err)
            if room._leave_future is not None and not room._leave_future.done():
                room._leave_future.set_result(None)
            room._finish()
        if self._closed_event is None:
            self._closed_event = asyncio.Event()
        self._closed_event.set()

    # -- sending -----------------------------------------------------------------------------

    async def _send(self, data: str | bytes) -> None:
        t = self._transport
        if t is None:
            raise TransportClosed(ABNORMAL, "not connected")
        assert self._send_lock is not None
        async with self._send_lock:
            if isinstance(data, str):
                await t.send_text(data)
            else:
                await t.send_binary(data)
        # Writes rarely block, so a loop of publishes would otherwise never let this client's
        # reader run: the server would queue its own messages back to it until it cut it as a
        # slow consumer. One turn of the event loop per message keeps the reader going.
        await asyncio.sleep(0)

    async def _next_token(self) -> str | None:
        if self.get_token is None:
            return self.token
        tok = self.get_token()
        if inspect.isawaitable(tok):
            tok = await tok
        return tok

    async def _authenticate(self) -> None:
        tok = await self._next_token()
        if tok:
            await self._send(_dumps({"type": "auth", "token": tok}))

    def _on_authenticated(self, msg: dict[str, Any]) -> None:
        user, exp = msg.get("user"), msg.get("exp")
        self.user = user if isinstance(user, str) else None
        self.token_exp = exp if isinstance(exp, int) else None
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            self._refresh_task = None
        if self.get_token is not None and self.token_exp is not None:
            self._refresh_task = asyncio.get_running_loop().create_task(
                self._refresh(self._gen, self.token_exp))

    async def _refresh(self, gen: int, exp: int) -> None:
        """Sends a fresh token refresh_before seconds before exp (or halfway there, when
        the token is shorter-lived than that), so the server never closes with 4002."""
        import time
        left = exp - time.time()
        await asyncio.sleep(max(0.0, left - min(self.refresh_before, left / 2)))
        if gen != self._gen:
            return
        try:
            self._refresh_task = None  # a new "authenticated" may schedule the next one
            await self._authenticate()
        except TransportClosed:
            pass
        except Exception as e:  # get_token failed: the server will close at exp
            log.warning("roomcast: get_token failed: %r", e)

    async def _send_join(self, room: Room) -> None:
        if room._join_sent_gen == self._gen or self._transport is None:
            return
        msg: dict[str, Any] = {"type": "join", "room": room.name}
        # The session goes with the first join of a connection only (a connection that joined
        # a room already keeps its identity).
        if self.session is not None and self._session_sent_gen != self._gen:
            msg["session"] = self.session
        self._session_sent_gen = self._gen
        if self.resume and (room._resume or room.epoch is not None):
            msg["since"] = room.last_msg_id
            if room.epoch is not None:
                msg["epoch"] = room.epoch
        if room.history is not None:
            msg["history"] = room.history
        if room.want_state:
            msg["state"] = True
        if room.want_presence:
            msg["presence"] = True
        if room.conflate:
            msg["conflate"] = True
        room._join_sent_gen = self._gen
        self._joins.append(_Pending(room, self._gen))
        try:
            await self._send(_dumps(msg))
        except TransportClosed:
            pass  # the read loop sees the end and the rejoin happens on the next connection

    async def _publish(self, room: Room, msg: Mapping[str, Any] | bytes | bytearray | memoryview,
                       *, ack: bool, key: str | bool | None,
                       timeout: float | None) -> Ack | None:
        if self._fatal is not None:
            raise self._fatal
        if room.closed or self.rooms.get(room.name) is not room:
            raise ClientClosed("closed", f"room {room.name!r} was left", room=room.name)
        if isinstance(msg, (bytes, bytearray, memoryview)):
            if ack or key:
                raise ValueError("a binary message carries no ack and no idempotency key")
            if not self.binary_ok:
                raise RoomcastError("unsupported", "binary messages need WebSocket or framed "
                                    "TCP (the TCP port's line mode carries JSON only)",
                                    room=room.name)
            out = _Out(room, encode_envelope(room.name, msg))
        else:
            if not isinstance(msg, Mapping):
                raise TypeError("a message is a JSON object (a Mapping) or bytes")
            obj = dict(msg)
            obj["room"] = room.name
            if key is True:
                key = uuid.uuid4().hex
            elif key is False:
                key = None
            ref: int | None = None
            if ack or key is not None:
                # A keyed publish always asks for an ack, so that the client knows when it
                # no longer needs resending.
                self._next_ref += 1
                ref = self._next_ref
                obj["ack"] = ref
            if key is not None:
                obj["idempotency_key"] = key
            fut: asyncio.Future[Ack] | None = _future() if ack else None
            out = _Out(room, _dumps(obj), key=key, ref=ref, future=fut)
            if ref is not None:
                self._acks[ref] = out
        if room.joined and not room._queue and self._transport is not None:
            await self._write(out)
        else:
            self._enqueue(out)
        if out.future is None:
            return None
        return await asyncio.wait_for(asyncio.shield(out.future), timeout)

    def _enqueue(self, out: _Out) -> None:
        room = out.room
        room._queue.append(out)
        while len(room._queue) > self.max_queued:
            old = room._queue.popleft()
            if old.ref is not None:
                self._acks.pop(old.ref, None)
            err = RoomcastError("queue_full", f"more than {self.max_queued} publishes queued "
                                f"for room {room.name!r} while disconnected; the oldest was "
                                "dropped", room=room.name, ref=old.ref)
            if old.future is not None and not old.future.done():
                old.future.set_exception(err)
            else:
                self._route_error(err, room)

    async def _write(self, out: _Out) -> bool:
        """Writes one publish; False when the connection is gone (the publish then waits at
        the head of its room's queue for the rejoin)."""
        try:
            out.sent = True
            await self._send(out.data)
            return True
        except TransportClosed:
            # Not written: it goes out first after the rejoin (unless the lost connection's
            # bookkeeping took it already, keyed, for the resend).
            if out.sent:
                out.sent = False
                if out not in out.room._queue:
                    out.room._queue.appendleft(out)
            return False

    async def _flush(self, room: Room) -> None:
        """Sends what waited for the room's rejoin, in publish order."""
        if room._flushing:
            return
        room._flushing = True
        try:
            while room._queue and room.joined and self._transport is not None:
                if not await self._write(room._queue.popleft()):
                    break
        finally:
            room._flushing = False

    async def _leave(self, room: Room, timeout: float) -> None:
        if room.closed:
            return
        connected = room.joined and self._transport is not None
        self._drop_room(room, ClientClosed("closed", f"room {room.name!r} was left",
                                           room=room.name))
        if connected:
            room._leave_future = asyncio.get_running_loop().create_future()
            self._leaving[room.name] = room
            try:
                await self._send(_dumps({"type": "leave", "room": room.name}))
                await asyncio.wait_for(asyncio.shield(room._leave_future), timeout)
            except (TransportClosed, asyncio.TimeoutError):
                pass
            finally:
                if self._leaving.get(room.name) is room:
                    del self._leaving[room.name]
        room._finish()

    async def _abandon(self, room: Room) -> None:
        """A join given up by its caller (cancelled or timed out)."""
        if self.rooms.get(room.name) is room:
            joined = room.joined
            waiting = any(p.room is room for p in self._joins)
            self._drop_room(room, ClientClosed("closed", "join abandoned", room=room.name))
            room._finish()
            if waiting:
                self._abandoned.add(room.name)
            elif joined and self._transport is not None:
                await self._send_quietly({"type": "leave", "room": room.name})

    def _drop_room(self, room: Room, err: RoomcastError) -> None:
        """Removes a room from the client; fails its queued publishes and pending acks."""
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        for out in room._queue:
            if out.future is not None and not out.future.done():
                out.future.set_exception(err)
        room._queue.clear()
        for ref, out in list(self._acks.items()):
            if out.room is room and not out.sent:
                del self._acks[ref]
        if room._join_future is not None and not room._join_future.done():
            room._join_future.set_exception(err)
        room.closed = True
        room.joined = False

    # -- receiving ---------------------------------------------------------------------------

    def _dispatch(self, data: str | bytes) -> None:
        """Handles one message from the server."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            try:
                bm = decode_envelope(bytes(data))
            except ValueError as e:
                self._route_error(RoomcastError("bad_binary_from_server", str(e)), None)
                return
            room = self.rooms.get(bm.room)
            if room is not None:
                self._deliver(room, bm.msg_id, bm)
            return
        try:
            msg = json.loads(data)
        except ValueError:
            self._route_error(RoomcastError("bad_json_from_server", f"not JSON: {data[:200]!r}"),
                              None)
            return
        if not isinstance(msg, dict):
            self._route_error(RoomcastError("bad_json_from_server",
                                            f"not an object: {data[:200]!r}"), None)
            return
        typ = msg.get("type")
        name = msg.get("room")
        room = self.rooms.get(name) if isinstance(name, str) else None
        # The reserved types first: a room message may be of any other type.
        if typ == "joined":
            self._on_joined(room, msg)
        elif typ == "left":
            self._on_left(room, msg)
        elif typ == "ack":
            self._on_ack(msg)
        elif typ == "error":
            self._on_error(room, msg)
        elif typ == "authenticated":
            self._on_authenticated(msg)
        elif typ == "keepalive":  # the TCP port's keepalive: answer it
            self._spawn(self._send_quietly({"type": "keepalive"}))
        elif typ == "close":      # the TCP port's last line: why it closes
            code = msg.get("code")
            self._close_hint = (code if isinstance(code, int) else ABNORMAL,
                                str(msg.get("reason", "")))
        elif isinstance(msg.get("msg_id"), int):
            if room is None:
                return  # a room this client left
            if (self._transport is not None and self._transport.kind == "tcp"
                    and isinstance(msg.get("binary"), str) and "type" not in msg
                    and len(msg) == 4):
                try:
                    payload = base64.b64decode(msg["binary"], validate=True)
                except ValueError:
                    payload = b""
                self._deliver(room, msg["msg_id"], BinaryMessage(
                    room=room.name, msg_id=msg["msg_id"],
                    client_id=int(msg.get("client_id", 0)), payload=payload))
            else:
                self._deliver(room, msg["msg_id"], msg)
        elif room is None:
            return
        elif typ == "state":
            self._on_state(room, msg)
        elif typ == "presence":
            self._on_presence(room, msg)
        elif typ == "conflated":
            self._on_conflated(room, msg)
        else:
            log.debug("roomcast: unexpected message %r", msg)

    async def _send_quietly(self, obj: Any) -> None:
        try:
            await self._send(_dumps(obj))
        except TransportClosed:
            pass

    def _on_joined(self, room: Room | None, msg: dict[str, Any]) -> None:
        name = msg.get("room")
        if room is None and name in self._abandoned:
            # a join its caller gave up on was answered after all: leave again
            self._abandoned.discard(name)
            self._spawn(self._send_quietly({"type": "leave", "room": name}))
        if room is None or room.closed:
            return
        for p in self._joins:
            if p.room is room:
                self._joins.remove(p)
                break
        if isinstance(msg.get("client_id"), int):
            self.client_id = msg["client_id"]
        if isinstance(msg.get("session"), str):
            self.session = msg["session"]
        last = msg.get("last_msg_id")
        last = last if isinstance(last, int) else 0
        replay_from = msg.get("replay_from")
        # The id after which this member's stream goes on: the replay of a history join starts
        # at replay_from; otherwise live messages start after last_msg_id.
        base = replay_from - 1 if isinstance(replay_from, int) and replay_from > 0 else last
        epoch = msg.get("epoch") if isinstance(msg.get("epoch"), str) else None
        recovered = msg.get("recovered")
        room.recovered = recovered if isinstance(recovered, bool) else None
        had = room.last_msg_id
        if room.epoch is None and not room._resume:
            room.last_msg_id = base                      # the room's first join
        elif (room.epoch is not None and epoch is not None and epoch != room.epoch) \
                or last < had:
            # A new stream (the room was reset, the server lost its history): ids start over.
            self._gap(room, Gap(room.name, had + 1, None, "new_epoch"))
            room.last_msg_id = base
        elif recovered is True:
            pass  # the server replays had+1 .. last_msg_id next: nothing is lost
        elif base > had:
            self._gap(room, Gap(room.name, had + 1, base, "not_recovered"))
            room.last_msg_id = base
        # else: the history replay overlaps what was delivered; the order check drops the rest
        room._resume = False
        room._skip.clear()   # conflation notices were about the previous connection's queue
        if epoch is not None:
            room.epoch = epoch
        if isinstance(msg.get("members"), list):
            room.members = {m for m in msg["members"] if isinstance(m, int)}
            room.member_count = len(room.members)
        elif isinstance(msg.get("member_count"), int):
            room.members = None
            room.member_count = msg["member_count"]
        if room.want_state and room.state is None:
            room.state = {}
        room.joined = True
        self._call(room.on_joined, msg, room)
        if room.want_presence and (room.members is not None or room.member_count is not None):
            # The members as of this (re)join, as one event: a view fed by on_presence alone
            # then forgets those that left while this client was away.
            self._call(room.on_presence, {
                "type": "presence", "room": room.name, "event": "sync",
                "members": sorted(room.members) if room.members is not None else None,
                "member_count": room.member_count}, room)
        if room._join_future is not None and not room._join_future.done():
            room._join_future.set_result(None)
        if room._queue:
            self._spawn(self._flush(room))

    def _on_left(self, room: Room | None, msg: dict[str, Any]) -> None:
        if room is None:
            # our own leave (the room is no longer in self.rooms): find its waiter
            return self._left_after_leave(msg)
        # Removed by the server (the room was closed through the API, say).
        self._drop_room(room, ClientClosed("closed", f"room {room.name!r} was closed by the "
                                           f"server ({msg.get('reason', '')})", room=room.name))
        self._call(room.on_left, msg, room)
        room._finish()

    def _left_after_leave(self, msg: dict[str, Any]) -> None:
        name = msg.get("room")
        room = self._leaving.pop(name, None) if isinstance(name, str) else None
        if room is not None and room._leave_future is not None \
                and not room._leave_future.done():
            room._leave_future.set_result(None)
            self._call(room.on_left, msg, room)

    def _on_ack(self, msg: dict[str, Any]) -> None:
        ref = msg.get("ref")
        out = self._acks.pop(ref, None) if isinstance(ref, int) else None
        if out is None:
            return
        if out.future is not None and not out.future.done():
            msg_id = msg.get("msg_id")
            out.future.set_result(Ack(room=str(msg.get("room", out.room.name)),
                                      msg_id=msg_id if isinstance(msg_id, int) else 0,
                                      duplicate=msg.get("duplicate") is True))

    def _on_error(self, room: Room | None, msg: dict[str, Any]) -> None:
        code = str(msg.get("code", "error"))
        ref = msg.get("ref")
        err = RoomcastError(code, str(msg.get("message", "")),
                            room=msg.get("room") if isinstance(msg.get("room"), str) else None,
                            ref=ref, data=msg)
        # 1. an error naming a publish's ref fails that publish
        out = self._acks.pop(ref, None) if isinstance(ref, int) else None
        if out is not None:
            if out.future is not None and not out.future.done():
                out.future.set_exception(err)
                return
            room = room or out.room
        # 2. an error about a join: the room it names, or the oldest join waiting when it is
        #    one only joins cause
        pending: _Pending | None = None
        if room is not None:
            pending = next((p for p in self._joins if p.room is room), None)
        elif code in _JOIN_ERRORS and self._joins:
            pending = self._joins[0]
            room = pending.room
        if pending is not None:
            self._joins.remove(pending)
            self._join_failed(pending.room, err)
            return
        self._route_error(err, room)

    def _join_failed(self, room: Room, err: RoomcastError) -> None:
        first = room._join_future is not None and not room._join_future.done()
        if first:
            # the caller of join() gets the error
            self._drop_room(room, err)
            room._finish()
        else:
            self._route_error(err, room)
        if err.code == "banned":
            # every join of this session would be refused: stop for good
            self._fatal = ClientClosed("banned", "this client's session is banned",
                                       room=room.name, data=err.data)
            self._closing = True
            if self._wake is not None:
                self._wake.set()
            if self._transport is not None:
                self._spawn(self._transport.close(1000, "banned"))

    def _route_error(self, err: RoomcastError, room: Room | None) -> None:
        if room is not None and room.on_error is not None:
            self._call(room.on_error, err, room)
        elif self.on_error is not None:
            self._call(self.on_error, err, room)
        else:
            log.warning("roomcast: %s%s", err, f" (room {room.name!r})" if room else "")

    def _on_state(self, room: Room, msg: dict[str, Any]) -> None:
        # The snapshot follows joined and its replay. After a recovered rejoin the replay
        # brought every message it stands for: it is redundant and not delivered.
        if room.recovered is True:
            return
        messages = msg.get("messages")
        snapshot: dict[str, dict[str, Any]] = {}
        if isinstance(messages, list):
            for m in messages:
                if isinstance(m, dict) and isinstance(m.get("state_key"), str):
                    snapshot[m["state_key"]] = m
        room.state = snapshot
        upto = msg.get("last_msg_id")
        room._state_upto = upto if isinstance(upto, int) else room.last_msg_id
        room._push(msg)
        self._call(room.on_state, msg, room)

    def _on_presence(self, room: Room, msg: dict[str, Any]) -> None:
        ev = msg.get("event")
        cid = msg.get("client_id")
        if ev == "join" and isinstance(cid, int):
            if room.members is not None:
                if cid not in room.members:
                    room.members.add(cid)
                room.member_count = len(room.members)
            elif room.member_count is not None:
                room.member_count += 1
        elif ev == "leave" and isinstance(cid, int):
            if room.members is not None:
                room.members.discard(cid)
                room.member_count = len(room.members)
            elif room.member_count is not None:
                room.member_count = max(0, room.member_count - 1)
        elif ev == "batch":
            if room.members is not None:
                for c in msg.get("left") or ():
                    room.members.discard(c)
                for c in msg.get("joined") or ():
                    if isinstance(c, int):
                        room.members.add(c)
            if isinstance(msg.get("member_count"), int):
                room.member_count = msg["member_count"]
            elif room.members is not None:
                room.member_count = len(room.members)
        self._call(room.on_presence, msg, room)

    def _on_conflated(self, room: Room, msg: dict[str, Any]) -> None:
        ids = [i for i in msg.get("msg_ids") or () if isinstance(i, int) and i > room.last_msg_id]
        room._skip.update(ids)
        room.conflated += len(ids)
        self._call(room.on_conflated, msg, room)

    def _deliver(self, room: Room, msg_id: int, msg: Message) -> None:
        """The order check: msg_id must be last + 1. Lower ids are duplicates (a replay that
        overlaps what was delivered) and are dropped; higher ones are a gap, except the ids a
        conflated notice named."""
        if not room.joined or room.closed:
            return
        last = room.last_msg_id
        if msg_id <= last:
            room.duplicates += 1
            return
        if msg_id > last + 1:
            for a, b in _runs(last + 1, msg_id - 1, room._skip):
                self._gap(room, Gap(room.name, a, b, "gap"))
        room.last_msg_id = msg_id
        if room._skip:
            room._skip = {i for i in room._skip if i > msg_id}
        if room.state is not None and isinstance(msg, dict) and msg_id > room._state_upto:
            key = msg.get("state_key")
            if isinstance(key, str):
                if msg.get("state_delete") is True:
                    room.state.pop(key, None)
                else:
                    room.state[key] = msg
        room._push(msg)
        self._call(room.on_message, msg, room)

    def _gap(self, room: Room, gap: Gap) -> None:
        room.gaps += 1
        if room.on_gap is not None:
            self._call(room.on_gap, gap, room)
        else:
            log.info("roomcast: %s", gap)

    # -- callbacks and tasks -----------------------------------------------------------------

    def _call(self, fn: Handler | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            r = fn(*args)
            if inspect.isawaitable(r):
                self._spawn(r)
        except Exception:
            log.exception("roomcast: callback %r raised", fn)

    def _spawn(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("roomcast: callback task failed", exc_info=task.exception())


def _future() -> asyncio.Future[Any]:
    """A future whose exception counts as retrieved: a caller that stopped waiting (a timeout)
    must not make asyncio log it."""
    fut = asyncio.get_running_loop().create_future()
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
    return fut


def _runs(lo: int, hi: int, skip: set[int]) -> list[tuple[int, int]]:
    """The runs of ids in lo..hi (inclusive) not in skip."""
    out: list[tuple[int, int]] = []
    start = lo
    for s in sorted(i for i in skip if lo <= i <= hi):
        if s > start:
            out.append((start, s - 1))
        start = s + 1
    if start <= hi:
        out.append((start, hi))
    return out
