#!/usr/bin/python3
"""Authoritative tic-tac-toe: the rules live only in this Python room service (docs/broker.md,
"Room services"); the page (web/tictactoe.html) only draws what the room says. Start roomcast
with

    roomcast --broker-worker-port 5560 --room-service 'ttt-*=tictactoe'

(`make run` does) and this worker:

    /usr/bin/python3 examples/broker/tictactoe_service.py --broker tcp://127.0.0.1:5560

then open http://127.0.0.1:8080/tictactoe.html?room=ttt-NAME in two browsers.

Messages members publish into a room `ttt-…` (each one is a request to this worker, never
broadcast as such):

- `{"type":"hello"}`: take a free seat (the first two senders become X and O) and get the
  current state broadcast (a page sends it on join, on rejoin and after a "moved" notice);
- `{"type":"move","cell":0..8}`: a move; checked here (a player, their turn, an empty cell,
  the game not over);
- `{"type":"reset"}`: a new game with the same players (players only).

What the room gets (broadcast as client_id 0):

- `{"type":"ttt_state","board":"XO.......","turn":"X","players":{"X":cid,"O":cid},
  "winner":null,"moves":N,"last":{"client_id":C,"cell":K}}`: after every accepted message;
  `winner` is "X", "O", "draw" or null, `turn` is null when the game is over, `players` has
  null for a free seat;
- `{"type":"ttt_error","to":cid,"reason":"…","board":"…"}`: a refused message. A room-service
  reply can only be broadcast, so errors are broadcast too and addressed by `to`: pages show
  only their own (**decision**). The board is unchanged.

State is kept per room in this process (the broker sends all of a room's requests to one
worker). A worker that dies takes its games with it: the room moves to another worker, members
get `{"type":"room_service","room":R,"state":"moved"}`, and the next message starts a new game
(the page sends "hello" so seats are taken again, in the order the hellos arrive).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mdp import Worker  # noqa: E402

LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]


class Game:
    def __init__(self):
        self.players = {"X": None, "O": None}
        self.new_game()

    def new_game(self):
        self.board = ["."] * 9
        self.turn = "X"
        self.winner = None
        self.moves = 0
        self.last = None

    def seat_of(self, cid):
        for mark, who in self.players.items():
            if who == cid:
                return mark
        return None

    def take_seat(self, cid):
        if cid is None or cid == 0 or self.seat_of(cid):
            return
        for mark in ("X", "O"):
            if self.players[mark] is None:
                self.players[mark] = cid
                return

    def state(self):
        return {"type": "ttt_state", "board": "".join(self.board), "turn": self.turn,
                "players": dict(self.players), "winner": self.winner, "moves": self.moves,
                "last": self.last}

    def error(self, cid, reason):
        return {"type": "ttt_error", "to": cid, "reason": reason, "board": "".join(self.board)}

    def move(self, cid, cell):
        """None when the move is legal (and played), else the reason it is refused."""
        mark = self.seat_of(cid)
        if mark is None:
            return "you are not a player in this game"
        if self.winner is not None:
            return "the game is over"
        if mark != self.turn:
            return f"it is {self.turn}'s turn"
        if not isinstance(cell, int) or isinstance(cell, bool) or not 0 <= cell <= 8:
            return "cell must be an integer from 0 to 8"
        if self.board[cell] != ".":
            return f"cell {cell} is taken"
        self.board[cell] = mark
        self.moves += 1
        self.last = {"client_id": cid, "cell": cell}
        if any(self.board[a] == self.board[b] == self.board[c] == mark for a, b, c in LINES):
            self.winner, self.turn = mark, None
        elif self.moves == 9:
            self.winner, self.turn = "draw", None
        else:
            self.turn = "O" if mark == "X" else "X"
        return None


games = {}


def rules(room, sender, msg):
    """The referee: returns the messages to broadcast in the room."""
    game = games.setdefault(room, Game())
    cid = sender.get("client_id")
    kind = msg.get("type")
    game.take_seat(cid)  # any message from a new sender claims a free seat
    if kind == "hello":
        return [game.state()]
    if kind == "move":
        why = game.move(cid, msg.get("cell"))
        return [game.error(cid, why)] if why else [game.state()]
    if kind == "reset":
        if game.seat_of(cid) is None:
            return [game.error(cid, "only players can reset")]
        game.new_game()
        return [game.state()]
    return [game.error(cid, f"unknown message type {kind!r}")]


def handle(body):
    try:
        req = json.loads(body[-1])
        msg = req.get("message")
        out = rules(req["room"], req.get("sender") or {}, msg if isinstance(msg, dict) else {})
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        out = [{"type": "ttt_error", "to": None, "reason": f"bad request: {e}"}]
    return [json.dumps({"messages": out}).encode()]


def main():
    ap = argparse.ArgumentParser(description="authoritative tic-tac-toe room service for roomcast")
    ap.add_argument("--broker", default="tcp://127.0.0.1:5560")
    ap.add_argument("--service", default="tictactoe")
    ap.add_argument("--heartbeat", type=float, default=2.5,
                    help="seconds; match roomcast's --broker-heartbeat")
    a = ap.parse_args()
    Worker(a.broker, a.service, handle, heartbeat=a.heartbeat).run()


if __name__ == "__main__":
    main()
