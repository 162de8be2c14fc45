"""Value types, errors and the binary envelope of the roomcast protocol (docs/protocol.md)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Union

__all__ = [
    "Ack", "Gap", "BinaryMessage", "Message", "RoomcastError", "ConnectionLost", "ClientClosed",
    "encode_envelope", "decode_envelope",
]


@dataclass(frozen=True)
class Ack:
    """The server's acknowledgement of one publish: the ``msg_id`` it was sequenced as.

    ``duplicate`` is true when the room had seen the publish's idempotency key already (a
    resend after a reconnect, say): ``msg_id`` is then the id of the first copy, and the room
    did not sequence the message again.
    """

    room: str
    msg_id: int
    duplicate: bool = False


@dataclass(frozen=True)
class Gap:
    """Messages of a room this client will never see.

    ``first`` .. ``last`` are the missing ``msg_id``s (inclusive). ``reason`` is

    * ``"gap"``: a message arrived with an id higher than the last one + 1 (and the ids in
      between were not named by a ``conflated`` notice);
    * ``"not_recovered"``: a rejoin after a reconnect could not be replayed from the history
      (``"recovered":false``); the room's state should be resynchronised;
    * ``"new_epoch"``: the room's message stream was reset (new epoch): ``last`` is ``None``
      because nothing can be said about what the old epoch held after ``first - 1``; counting
      starts afresh in the new epoch.
    """

    room: str
    first: int
    last: int | None
    reason: str

    @property
    def count(self) -> int | None:
        """How many messages are missing (``None`` for a new epoch)."""
        return None if self.last is None else self.last - self.first + 1


@dataclass(frozen=True)
class BinaryMessage:
    """A binary room message: the envelope's header decoded, the payload untouched.

    Over the raw TCP port's line mode the server sends binary messages as JSON with the payload
    in base64; the client decodes them into this same type.
    """

    room: str
    msg_id: int
    client_id: int
    payload: bytes


#: What a room delivers: a JSON object (a ``dict`` with ``room``, ``client_id`` and ``msg_id``
#: added by the server, or the ``{"type":"state",...}`` snapshot) or a binary message.
Message = Union[dict[str, Any], BinaryMessage]


class RoomcastError(Exception):
    """An error the server answered (``{"type":"error",...}``) or one the client detected.

    ``code`` is the protocol's error code (``not_member``, ``state_full``, ``banned`` ...) or
    one of the client's own: ``connection_lost``, ``closed``, ``queue_full``, ``unsupported``,
    ``kicked``, ``replaced``. ``room`` and ``ref`` are those of the server's error when it
    carried them; ``data`` is the error object as received (``None`` for the client's own).
    """

    def __init__(self, code: str, message: str = "", *, room: str | None = None,
                 ref: Any = None, data: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.room = room
        self.ref = ref
        self.data = data


class ConnectionLost(RoomcastError):
    """The connection was lost after a publish without an idempotency key was sent and before
    its ack arrived: the room may or may not have sequenced it (resending could duplicate it,
    so the client does not). Publishes with an idempotency key are resent instead."""


class ClientClosed(RoomcastError):
    """The client was closed (by :meth:`Client.close`, or by the server for good: kicked,
    replaced by a newer connection of the same session, banned) or the room was left."""


# -- the binary envelope (docs/protocol.md, "Binary messages") ----------------------------------

_HEADER = struct.Struct("<QQB")


def encode_envelope(room: str, payload: bytes | bytearray | memoryview) -> bytes:
    """What a client sends: ``[room_len][room][payload]``."""
    name = room.encode("utf-8")
    if not 1 <= len(name) <= 255:
        raise ValueError("a room name is 1 to 255 bytes of UTF-8")
    return bytes((len(name),)) + name + bytes(payload)


def decode_envelope(data: bytes) -> BinaryMessage:
    """What a member receives: ``[msg_id u64 LE][client_id u64 LE][room_len][room][payload]``.
    Raises ``ValueError`` when the header does not fit."""
    if len(data) < _HEADER.size:
        raise ValueError(f"binary message of {len(data)} bytes is shorter than its header")
    msg_id, client_id, room_len = _HEADER.unpack_from(data)
    end = _HEADER.size + room_len
    if len(data) < end:
        raise ValueError(f"binary message's room_len {room_len} runs past its end")
    room = data[_HEADER.size:end].decode("utf-8", errors="replace")
    return BinaryMessage(room=room, msg_id=msg_id, client_id=client_id, payload=bytes(data[end:]))
