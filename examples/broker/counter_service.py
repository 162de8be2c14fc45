#!/usr/bin/python3
"""A shared counter whose rules live in a Python room service (docs/broker.md, "Room
services"). Start roomcast with

    roomcast --broker-worker-port 5560 --room-service 'counter-*=counter'

and this worker; then any client that joins a room `counter-…` (the browser demo, wscat, nc on
--tcp-port) and publishes `{"type":"add","by":N}` (N from -10 to 10) or `{"type":"reset"}`
sees `{"type":"count","value":V,"last":{"client_id":C,"by":N}}` broadcast in the room.
Anything else is refused with `{"type":"rejected","reason":...}` — the server, not the
clients, decides. If this worker restarts, members get the "moved" notice and the count
starts from 0 again (state could live in a store instead).

    /usr/bin/python3 examples/broker/counter_service.py --broker tcp://127.0.0.1:5560
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mdp import Worker  # noqa: E402

counts = {}


def rules(room, sender, msg):
    """The game: returns the messages to broadcast in the room."""
    kind = msg.get("type")
    if kind == "add":
        by = msg.get("by")
        if not isinstance(by, int) or isinstance(by, bool) or not -10 <= by <= 10:
            return [{"type": "rejected", "reason": "by must be an integer in [-10, 10]",
                     "to": sender.get("client_id")}]
        counts[room] = counts.get(room, 0) + by
        return [{"type": "count", "value": counts[room],
                 "last": {"client_id": sender.get("client_id"), "by": by}}]
    if kind == "reset":
        counts[room] = 0
        return [{"type": "count", "value": 0, "last": {"client_id": sender.get("client_id")}}]
    return [{"type": "rejected", "reason": f"unknown move {kind!r}", "to": sender.get("client_id")}]


def handle(body):
    try:
        req = json.loads(body[-1])
        out = rules(req["room"], req.get("sender", {}), req.get("message", {}))
    except (ValueError, KeyError, TypeError) as e:
        out = [{"type": "rejected", "reason": f"bad request: {e}"}]
    return [json.dumps({"messages": out}).encode()]


def main():
    ap = argparse.ArgumentParser(description="shared-counter room service for roomcast")
    ap.add_argument("--broker", default="tcp://127.0.0.1:5560")
    ap.add_argument("--service", default="counter")
    ap.add_argument("--heartbeat", type=float, default=2.5)
    a = ap.parse_args()
    Worker(a.broker, a.service, handle, heartbeat=a.heartbeat).run()


if __name__ == "__main__":
    main()
