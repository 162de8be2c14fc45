#!/usr/bin/python3
"""py_server.py - the Python peer for the roomcast benchmark ("what users have today").

Built the way the seed game server (shared/seeds/python-websockets-game-server.txt) built
its server, on Debian's python3-websockets and plain asyncio: rooms in a dict, one listener
task per room that owns the room and drains an asyncio.Queue, a per-room msg_id assigned by that
listener, and a broadcast that awaits each member's send in turn. Two changes make it speak the
room protocol roomcast speaks (docs/protocol.md), which the seed did not quite:

  - joins and leaves go through the room's queue too, so the listener answers joined with the
    right last_msg_id and no room message reaches a member before its joined or after its left
    (the seed sent joined from the socket task, and messages could overtake it);
  - the broadcast is JSON-encoded once per message, not once per member.

Keepalive is the seed's: ping every 5 s, drop after 5 s without a pong.

    /usr/bin/python3 bench/peers/py_server.py --bind 127.0.0.1 --port 0
    -> stderr: "py-peer: listening on http://127.0.0.1:PORT/"
"""
import argparse
import asyncio
import json
import signal
import sys

import websockets

RESERVED = {"joined", "left", "error", "ack"}


def encode_msg(msg):
    return json.dumps(msg, ensure_ascii=False)


class Client:
    __slots__ = ("socket", "id", "rooms")

    def __init__(self, socket, client_id):
        self.socket = socket
        self.id = client_id
        self.rooms = {}  # name -> Room, as requested (the listener applies it in order)


class Room:
    __slots__ = ("key", "clients", "msg_id", "queue", "task")

    def __init__(self, key):
        self.key = key
        self.clients = {}
        self.msg_id = 0
        self.queue = asyncio.Queue()
        self.task = None


rooms = {}
client_id_count = 0


async def safe_send(client, text):
    try:
        await client.socket.send(text)
    except websockets.ConnectionClosed:
        pass


async def listen_room(room):
    """The room's only writer: sequences messages and applies joins/leaves in queue order."""
    while True:
        kind, client, payload = await room.queue.get()
        if kind == "join":
            room.clients[client.id] = client
            await safe_send(client, encode_msg({"type": "joined", "room": room.key,
                                                "client_id": client.id,
                                                "last_msg_id": room.msg_id}))
        elif kind == "leave":
            room.clients.pop(client.id, None)
            if payload:  # an explicit leave is answered; a disconnect is not
                await safe_send(client, encode_msg({"type": "left", "room": room.key}))
        else:
            room.msg_id += 1
            payload["msg_id"] = room.msg_id
            text = encode_msg(payload)
            for member in list(room.clients.values()):
                await safe_send(member, text)
        if not room.clients and room.queue.empty():
            # Nobody left and nothing pending: the room disappears (a later join makes a new one).
            if rooms.get(room.key) is room:
                del rooms[room.key]
            return


def error(code, message):
    return encode_msg({"type": "error", "code": code, "message": message})


async def listen_socket(websocket, path=None):
    global client_id_count
    client_id_count += 1
    client = Client(websocket, client_id_count)
    try:
        async for raw in websocket:
            if isinstance(raw, bytes):
                await websocket.send(error("bad_binary", "binary messages are not supported"))
                continue
            try:
                message = json.loads(raw)
            except ValueError:
                await websocket.send(error("bad_json", "the text is not valid JSON"))
                continue
            if not isinstance(message, dict):
                await websocket.send(error("not_object", "a message must be a JSON object"))
                continue
            kind = message.get("type")
            if kind in ("join", "leave"):
                key = message.get("room")
                if key is None:
                    await websocket.send(error("missing_field", "room is required"))
                    continue
                if not isinstance(key, str) or not key or len(key.encode()) > 255 or "\0" in key:
                    await websocket.send(error("bad_field", "bad room name"))
                    continue
                if kind == "join":
                    room = rooms.get(key)
                    if room is None:
                        room = Room(key)
                        rooms[key] = room
                        room.task = asyncio.ensure_future(listen_room(room))
                    client.rooms[key] = room
                    room.queue.put_nowait(("join", client, None))
                else:
                    room = client.rooms.pop(key, None)
                    if room is None:
                        await websocket.send(error("no_such_room" if key not in rooms
                                                   else "not_member", "cannot leave " + key))
                        continue
                    room.queue.put_nowait(("leave", client, True))
                continue
            if kind in RESERVED:
                await websocket.send(error("reserved_type", "reserved type"))
                continue
            key = message.get("room")
            if key is None and len(client.rooms) == 1:
                key = next(iter(client.rooms))
            room = client.rooms.get(key) if isinstance(key, str) else None
            if room is None:
                await websocket.send(error("missing_field" if key is None and client.rooms
                                           else "not_member", "not a member of that room"))
                continue
            message.pop("client_id", None)
            message.pop("msg_id", None)
            if "room" not in message:
                message["room"] = key
            message["client_id"] = client.id
            room.queue.put_nowait(("msg", client, message))
    except websockets.ConnectionClosed:
        pass
    finally:
        for room in client.rooms.values():
            room.queue.put_nowait(("leave", client, False))
        client.rooms = {}


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with websockets.serve(listen_socket, args.bind, args.port, ping_interval=5,
                                ping_timeout=5, max_size=1 << 20, backlog=4096,
                                compression=None) as server:
        host, port = server.sockets[0].getsockname()[:2]
        print(f"py-peer: listening on http://{host}:{port}/", file=sys.stderr, flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
