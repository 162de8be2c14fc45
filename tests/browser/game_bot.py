#!/usr/bin/python3
"""A player of web/game.html written in Python (Debian's python3-websockets), for the browser
test: it joins the room as the page does (state, conflate, presence), puts its dot on the
board, and records every room message it receives.

    game_bot.py PORT ROOM MOVES

stdout, one JSON object a line:
    {"ready": CLIENT_ID}                 joined, its first position published
    {"moved": MOVES}                     after a {"type":"go"} message: MOVES moves published
    {"log": [...], "conflated": [...]}   after a {"type":"end"} message: every message received
                                         ({msg_id, client_id, type, x, y}) and conflated ids
It keeps its connection (and so its dot) until stdin is closed, then leaves and exits 0.
"""
import asyncio
import json
import sys

import websockets


def out(obj):
    print(json.dumps(obj), flush=True)


async def main(port, room, moves):
    async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        await ws.send(json.dumps({"type": "join", "room": room, "state": True,
                                  "conflate": True, "presence": True}))
        joined = json.loads(await ws.recv())
        assert joined["type"] == "joined", joined
        me = joined["client_id"]
        pos = {"x": 3, "y": 20}

        async def publish():
            await ws.send(json.dumps({"type": "pos", "room": room, "name": "bot", **pos,
                                      "state_key": f"pos/{me}"}))

        async def play():
            for i in range(moves):
                pos["x"] = 3 + (i % 30)
                pos["y"] = 20 - (i % 10)
                await publish()
                await asyncio.sleep(0.01)
            out({"moved": moves})

        async def receive():
            log, conflated, tasks = [], [], []
            async for text in ws:
                if isinstance(text, bytes):
                    continue
                m = json.loads(text)
                if m.get("type") == "conflated":
                    conflated.extend(m["msg_ids"])
                if "msg_id" not in m or m.get("type") in ("ack",):
                    continue
                log.append({k: m.get(k) for k in ("msg_id", "client_id", "type", "x", "y")})
                if m["type"] == "go":
                    tasks.append(asyncio.create_task(play()))
                elif m["type"] == "end":
                    out({"log": log, "conflated": conflated})

        await publish()
        out({"ready": me})
        receiver = asyncio.create_task(receive())
        # stdin closed: leave
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        receiver.cancel()
        await ws.send(json.dumps({"type": "leave", "room": room}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
