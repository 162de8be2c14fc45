"""roomcast — an asyncio client for roomcast rooms (docs/protocol.md, docs/tcp.md).

The Python counterpart of ``web/roomcast.js``, for Python 3.11+, with no dependency outside
Debian's packages: ``python3-websockets`` (10.4's asyncio API) for ``ws://`` and asyncio
streams for the raw TCP port. Install with ``pip install ./clients/python`` or use it in place
with ``PYTHONPATH=clients/python`` (``clients/python/README.md``)::

    import asyncio, roomcast

    async def main():
        async with roomcast.Client("ws://127.0.0.1:8080/") as client:
            lobby = await client.join("lobby", history=20, presence=True)
            ack = await lobby.publish({"type": "chat", "text": "hi"}, ack=True,
                                      idempotency_key=True)
            print("sequenced as", ack.msg_id, "members", lobby.members)
            async for msg in lobby:                  # dicts (and BinaryMessage), in msg_id order
                print(msg["msg_id"], msg)

    asyncio.run(main())

API reference
=============

``Client(url, **options)``
--------------------------

``url`` is ``ws://HOST:PORT/`` (or ``wss://``) for WebSocket, or ``tcp://HOST:PORT`` for the
raw TCP port (``--tcp-port``) in line mode (newline-delimited JSON); ``framed=True`` selects
the TCP port's framed mode instead, which can also send binary messages. ``url`` may also be a
list of URLs of nodes sharing rooms (``--redis``, docs/cluster.md): the client connects to the
first, and each lost connection or failed attempt moves it to the next (round robin, same
backoff), where it rejoins with ``since``/``epoch`` and its session as after any reconnect.
``client.url`` is the URL in use (or being tried), ``client.urls`` the list and
``client.url_index`` its position. Options:

======================  =========  ===========================================================
option                  default    meaning
======================  =========  ===========================================================
``reconnect``           ``True``   reconnect after the connection is lost
``min_delay``           ``0.25``   first reconnect delay (s); then doubled each failed
                                   attempt ...
``max_delay``           ``10.0``   ... up to this; each delay is scaled by a random factor in
                                   [0.5, 1) (jitter: a restarted server is not hit by every
                                   client at the same instant)
``max_queued``          ``1000``   publishes kept per room while disconnected (the oldest is
                                   dropped beyond it; its ack fails with ``queue_full``)
``resume``              ``True``   rejoin with ``since``/``epoch`` (recovery) after a
                                   reconnect
``session``             ``None``   a session token to present on the first join (one a
                                   previous ``joined`` gave, kept by the application)
``framed``              ``False``  ``tcp://`` only: framed mode instead of line mode
``connect_timeout``     ``10.0``   bound on one connection attempt (s)
``ping_interval``       ``20.0``   WebSocket pings (s) that detect a dead connection;
                                   ``None``: off
``max_message_size``    64 MiB     the largest message accepted from the server
``on_open``             ``None``   ``on_open(reconnect: bool)`` after each connection opens
``on_close``            ``None``   ``on_close(code: int, reason: str)`` after each one ends
``on_error``            ``None``   ``on_error(error: RoomcastError, room: Room | None)`` for
                                   errors no room handler took (see *Errors*)
``token``               ``None``   a connection token (JWT, docs/auth.md), sent as
                                   ``{"type":"auth"}`` first on every connection
``get_token``           ``None``   a function (or coroutine function) returning a token: called
                                   for every connection and ``refresh_before`` s before the
                                   token's ``exp``, whose fresh token is sent as a refresh
``refresh_before``      ``30.0``   seconds before ``exp`` to refresh (at most half the
                                   token's remaining life)
======================  =========  ===========================================================

Every callback here and on rooms may be a plain function or a coroutine function (run as a
task); an exception in one is logged (logger ``roomcast``) and does not stop the client.

Methods and attributes:

* ``await client.connect()`` opens the connection (``async with Client(...)`` does it). With
  ``reconnect=True`` it retries a failing server with backoff until it answers (bound it with
  ``asyncio.wait_for``); with ``reconnect=False`` the first failure raises ``ClientClosed``.
  ``join`` connects by itself when needed.
* ``await client.join(room, *, history=None, state=False, presence=False, conflate=False,
  buffer=True, since=None, epoch=None, timeout=None, on_message=..., on_gap=...,
  on_state=..., on_presence=..., on_conflated=..., on_error=..., on_joined=..., on_left=...)``
  joins and returns the :class:`Room` once ``joined`` arrived; raises ``RoomcastError`` when
  the server refuses (``too_many_rooms``, ``room_limit``, ``rate_limited``, ``banned`` ...).
  ``history=N`` replays the room's last N messages (late joiners), ``state=True`` asks for the
  room state snapshot, ``presence=True`` for the members and presence events,
  ``conflate=True`` for latest-wins delivery of keyed messages when this client falls behind,
  ``since``/``epoch`` resume from a position the application kept. Every rejoin after a
  reconnect asks for the same. ``buffer=False`` keeps no messages for ``async for`` (use
  ``on_message``). Joining a room already joined returns the same ``Room``.
* ``await client.close()`` closes for good: waiting acks and joins fail with
  ``ClientClosed``, room iterators end. ``await client.wait_closed()`` waits for that (also
  when the server ended the client: see *Reconnects*).
* ``client.rooms`` (name -> Room), ``client.client_id`` (from the last ``joined``),
  ``client.session``, ``client.status`` (``idle``, ``connecting``, ``open``,
  ``reconnecting``, ``closed``), ``client.reconnects``, ``client.attempt``,
  ``client.close_code`` / ``client.close_reason`` (of the last connection that ended),
  ``client.transport_kind`` (``"ws"``, ``"tcp"``, ``"tcp-framed"`` while connected),
  ``client.binary_ok``, ``client.user`` / ``client.token_exp`` (from the server's
  ``authenticated`` answer to the token).

``Room``
--------

* ``await room.publish(msg, *, ack=False, idempotency_key=None, timeout=None)`` publishes a
  JSON object (any ``Mapping``; the client adds ``"room"``) or binary data (``bytes``,
  ``bytearray``, ``memoryview``: the binary envelope; WebSocket and framed TCP only, else
  ``RoomcastError("unsupported")``). With ``ack=True`` it returns an :class:`Ack`
  (``msg_id``, ``duplicate``, ``room``) once the server sequenced it; else ``None`` once
  written. ``idempotency_key`` (a string, or ``True`` for a random one) makes a publish safe
  to resend: it is resent after a reconnect until acknowledged, and the room never sequences
  it twice (``duplicate=True`` then). A publish made while disconnected is queued and sent
  after the rejoin. Raises ``RoomcastError`` when the server refuses it (an error naming its
  ``ref``), ``ConnectionLost`` when the connection was lost before the ack of a publish with
  no key (it may or may not have been sequenced), ``ClientClosed`` when the room is left or
  the client closed. A message with ``"state_key": K`` becomes the room's current value of K
  (``"state_delete": true`` removes it).
* ``async for msg in room`` / ``await room.recv(timeout=None)``: the room's messages in
  ``msg_id`` order, each once: ``dict`` for JSON (with the server's ``room``, ``client_id``,
  ``msg_id``) and :class:`BinaryMessage` for binary (also when the TCP line mode carried it as
  base64). When joined with ``state=True`` the ``{"type":"state","last_msg_id":L,
  "messages":[...]}`` snapshot comes after ``joined`` (and after the replay of a history join),
  before any message after L; again after each rejoin that was not recovered (a recovered one
  replays every message the snapshot stands for). Iteration ends when the room is left or the
  client closes.
  ``room.pending()`` is how many are buffered.
* ``await room.leave()`` sends ``leave`` and waits for ``left``; nothing of the room is
  delivered afterwards.
* Attributes: ``name``, ``last_msg_id`` (the last id delivered), ``epoch``, ``joined`` (on the
  current connection), ``closed``, ``recovered`` (of the last rejoin), ``client_id``,
  ``members`` (a ``set`` of client ids, kept up to date from ``joined.members`` and presence
  events, ``batch`` included; ``None`` without presence or above the server's
  ``--presence-limit``), ``member_count``, ``state`` (``state_key`` -> latest message, from the
  snapshot and then the keyed messages that follow; ``None`` without ``state=True``),
  ``gaps``, ``duplicates``, ``conflated`` (counts).
* Callbacks (attributes, or ``join``'s keyword arguments), each called with
  ``(payload, room)``:

  - ``on_message(msg)``: every delivered message (as ``async for`` sees it, snapshot excluded);
  - ``on_gap(gap)``: a :class:`Gap` — messages this client will never see;
  - ``on_state(snapshot)``: the ``{"type":"state",...}`` message;
  - ``on_presence(event)``: ``{"type":"presence","event":"join"|"leave"|"batch",...}``, after
    ``room.members`` was updated; and at every (re)join a client-made
    ``{"type":"presence","event":"sync","members":[...]|None,"member_count":N}`` with the
    members the server listed (so a view fed by these events alone forgets those that left
    while the client was away);
  - ``on_conflated(notice)``: ``{"type":"conflated","room":R,"msg_ids":[...]}`` — ids
    dropped by latest-wins delivery (they are not gaps; a notice may name ids of several
    keys, and arrives where the first of them would have);
  - ``on_error(error)``: a ``RoomcastError`` about this room (see *Errors*);
  - ``on_joined(joined)``: every ``joined`` of the room, rejoins included;
  - ``on_left(left)``: the room was left, or removed by the server (``reason``).

Order check, gaps and recovery
------------------------------

Every room checks that ``msg_id`` is exactly the last one + 1. Lower ids are duplicates (a
replay overlapping what was delivered) and are dropped; a higher id is a gap, reported through
``on_gap`` as ``Gap(room, first, last, "gap")`` — except the ids a ``conflated`` notice named.
After a reconnect every room is rejoined with ``since`` (its ``last_msg_id``) and ``epoch``:
``"recovered":true`` replays exactly what was missed; ``"recovered":false`` reports
``Gap(..., "not_recovered")`` (the missed ids, less what a ``history`` replay brings back); a
new epoch reports ``Gap(room, last + 1, None, "new_epoch")`` and counting starts afresh.

Reconnects and sessions
-----------------------

The client reconnects by itself after a lost connection or a server shutdown, waiting
``min(max_delay, min_delay * 2**attempt) * uniform(0.5, 1)`` between attempts. The first join
of each new connection presents the ``session`` of the last ``joined``, so the client keeps
its ``client_id`` and the server recognises its idempotency keys: publishes with a key that
were written but not acknowledged are resent (before anything queued later), and answered with
the original ``msg_id``. The server ending the client on purpose stops it for good
(``wait_closed`` returns, ``status == "closed"``): close 1008 ``kicked``, 1008
``replaced by a new connection`` (another connection presented this session), or a rejoin
refused as ``banned``; waiting futures then fail with ``ClientClosed`` whose ``code`` is
``kicked``, ``replaced`` or ``banned``; with a fixed ``token`` (no ``get_token``), a close
``4001`` (token refused) or ``4002`` (token expired) ends it too, with ``unauthenticated`` or
``token_expired``. Over TCP the client answers the server's
``{"type":"keepalive"}`` (line mode) and pings (framed mode).

Errors
------

The server's ``{"type":"error","code":C,"message":M}`` becomes a :class:`RoomcastError`
(``code``, ``message``, ``room``, ``ref``, ``data``). An error whose ``ref`` names a publish
waiting for its ack fails that ``publish`` call. Otherwise an error naming a ``room`` (or the
room of its ``ref``) goes to that room: it fails its ``join`` when the join was waiting, else
goes to ``room.on_error``. An error without a room whose code only a join can cause
(``too_many_rooms``, ``room_limit``, ``rate_limited``, ``banned``) answers the oldest join
waiting (joins are answered in order). Anything left goes to ``client.on_error``, or is
logged.
"""

from ._client import Client, Room
from ._transport import TransportClosed
from ._types import (Ack, BinaryMessage, ClientClosed, ConnectionLost, Gap, Message,
                     RoomcastError, decode_envelope, encode_envelope)

__version__ = "0.1.0"

__all__ = [
    "Client", "Room", "Ack", "Gap", "BinaryMessage", "Message", "RoomcastError",
    "ConnectionLost", "ClientClosed", "TransportClosed", "encode_envelope", "decode_envelope",
    "__version__",
]
