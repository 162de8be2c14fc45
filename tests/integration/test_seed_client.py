"""The seeds' own clients against roomcast, run as published with only the address changed.

The code is extracted at test time from ../shared/seeds/ (seeds.py; never copied into this
repository), so these tests show that what the seeds' users run works unchanged:

* the game-server article's ``ws_client.py`` (joins a room, then ping-pongs forever, printing
  ``N/s ROOM`` every 5000 messages): several at once in shared rooms, and in its "slow" mode;
* the reactor chat seed's client against ``--chat-port``, typing through its stdin.

The seed ws_client's own total-order check never runs: ``last_msg_id == msg_id`` is a
comparison, not an assignment, so ``last_msg_id`` stays None and every message passes. Only its
check of its own pings' order (``bad message seq``) is live. The real msg_id check is made here
by an observer of our own in each room.
"""

import asyncio
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid

import pytest

from conftest import IO_TIMEOUT, RawWS, Server, ws_connect, ws_join
from rawtcp import wait_members
from seeds import CHAT_SEED, PYTHON, WS_SEED, extract_chat_client, extract_ws_client, \
    seeds_dir, write_script

MIN_RUN = 3.0       # seconds every ws_client runs at least
MAX_RUN = 60.0      # bound on waiting for the throughput lines on a loaded machine


@pytest.fixture(scope="module")
def server():
    # A large --max-pending: the slow seed client falls behind a fast peer by design; within
    # this run it must stay within the server's limits rather than be cut off as a slow consumer.
    srv = Server("--chat-port", "0", "--max-pending", str(64 * 1024 * 1024))
    try:
        yield srv
        srv.stop()
    finally:
        srv.cleanup()


class Observer:
    """A websockets member of `room` in a background thread that checks every msg_id follows
    the previous one, and that each client's pings carry seq 1, 2, 3, ..."""

    def __init__(self, server, room):
        self.server, self.room = server, room
        self.errors = []
        self.count = 0
        self.pings = {}          # client_id -> last seq seen
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self._ready.wait(IO_TIMEOUT), "observer did not join"
        assert not self.errors, self.errors

    async def _main(self):
        try:
            ws = await ws_connect(self.server.ws_url, max_queue=None)
            joined = await ws_join(ws, self.room)
        except Exception as e:
            self.errors.append(f"observer could not join: {e!r}")
            self._ready.set()
            return
        expect = joined["last_msg_id"] + 1
        self._ready.set()
        try:
            while not self._stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.2)
                except asyncio.TimeoutError:
                    continue
                msg = json.loads(raw)
                if msg.get("msg_id") != expect:
                    self.errors.append(f"msg_id {msg.get('msg_id')}, expected {expect}: {raw}")
                    expect = msg.get("msg_id", expect)
                expect += 1
                self.count += 1
                if msg.get("type") == "ping":
                    cid, seq = msg["client_id"], msg["seq"]
                    if seq != self.pings.get(cid, 0) + 1:
                        self.errors.append(f"client {cid}: ping seq {seq} after "
                                           f"{self.pings.get(cid, 0)}")
                    self.pings[cid] = seq
        except Exception as e:
            self.errors.append(f"observer failed: {e!r}")
        finally:
            await ws.close()

    def stop(self):
        self._stop.set()
        self._thread.join(IO_TIMEOUT)
        assert not self._thread.is_alive(), "observer did not stop"


THROUGHPUT_RE = r"^[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?/s {room}$"


class SeedWsClient:
    def __init__(self, script, room, tmp_path, slow=None):
        self.room = room
        self.out_path = os.path.join(str(tmp_path), f"ws_client-{uuid.uuid4().hex[:8]}.out")
        self._out = open(self.out_path, "wb")
        argv = [PYTHON, "-u", script, room] + ([str(slow)] if slow is not None else [])
        # -u: its prints reach the file at once (it is killed, never exits by itself)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT)

    def output(self):
        with open(self.out_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def throughput_lines(self):
        pat = re.compile(THROUGHPUT_RE.format(room=re.escape(self.room)))
        return [ln for ln in self.output().splitlines() if pat.match(ln)]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(IO_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def run_seed_clients(server, tmp_path, rooms, min_lines):
    """rooms: {room: [slow-or-None, ...]}. Runs the clients (and an observer per room) until
    each printed min_lines[slow] throughput lines and MIN_RUN seconds passed; asserts they are
    all still alive, then stops them and checks what they printed and what the observers saw."""
    script = write_script(tmp_path, "ws_client.py", extract_ws_client(
        f"ws://127.0.0.1:{server.port}"))
    observers = {room: Observer(server, room) for room in rooms}
    clients = []
    try:
        for room, modes in rooms.items():
            for slow in modes:
                clients.append((SeedWsClient(script, room, tmp_path, slow), slow))
        start = time.monotonic()
        while True:
            dead = [c for c, _ in clients if c.proc.poll() is not None]
            assert not dead, "a seed ws_client exited (its own checks raise on a bad order):\n" + \
                "\n\n".join(c.output()[-3000:] for c in dead)
            done = all(len(c.throughput_lines()) >= min_lines[slow is not None]
                       for c, slow in clients)
            if done and time.monotonic() - start >= MIN_RUN:
                break
            assert time.monotonic() - start < MAX_RUN, \
                "seed clients printed too few throughput lines: " + "; ".join(
                    f"{c.room}{' slow' if s else ''}: {len(c.throughput_lines())}"
                    for c, s in clients)
            time.sleep(0.1)
    finally:
        for c, _ in clients:
            c.kill()
        for o in observers.values():
            o.stop()
    for c, _ in clients:
        out = c.output()
        assert out.startswith("Connect\n"), out[:500]
        assert "Traceback" not in out and "Exception" not in out, out[-3000:]
    for room, o in observers.items():
        assert not o.errors, f"room {room}: {o.errors[:5]}"
        # every seed client of the room pinged, in order; the fast ones many times (a slow one
        # next to a fast peer waits behind the peer's flood for each of its own pings)
        assert len(o.pings) == len(rooms[room]), (room, o.pings)
        fast = sum(1 for slow in rooms[room] if slow is None)
        assert sum(seq >= 20 for seq in o.pings.values()) >= fast, (room, o.pings)


def test_seed_ws_clients_sharing_rooms(server, tmp_path):
    """Three seed clients in one room, two in another: each prints its throughput lines and
    stays alive (its own-ping check passes); the observers see gap-free msg_ids."""
    seeds_dir(WS_SEED)
    rooms = {f"seed-{uuid.uuid4().hex[:6]}": [None, None, None],
             f"seed-{uuid.uuid4().hex[:6]}": [None, None]}
    run_seed_clients(server, tmp_path, rooms, {False: 1, True: 1})


def test_slow_seed_ws_client_with_fast_peer(server, tmp_path):
    """The seed's slow mode (`ws_client.py ROOM 0.005`: 5 ms after every message) next to a
    fast client: both alive, both printing (the slow one every ~50 messages)."""
    seeds_dir(WS_SEED)
    rooms = {f"seed-slow-{uuid.uuid4().hex[:6]}": [0.005, None]}
    run_seed_clients(server, tmp_path, rooms, {False: 1, True: 2})


# --------------------------------------------------------------------------------------------
# the reactor chat seed's client
# --------------------------------------------------------------------------------------------

class SeedChatClient:
    def __init__(self, script, name, tmp_path):
        self.name = name
        self.out_path = os.path.join(str(tmp_path), f"chat-{name}.out")
        self._out = open(self.out_path, "wb")
        # stdin stays open (EOF would make the seed's select loop spin on readline()); -u
        # because it is killed in the end and prints line by line
        self.proc = subprocess.Popen([PYTHON, "-u", script, "-username", name],
                                     stdin=subprocess.PIPE, stdout=self._out,
                                     stderr=subprocess.STDOUT)

    def type(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def output(self):
        with open(self.out_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def lines(self):
        return [ln for ln in self.output().splitlines() if ln]

    def wait_line(self, line, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        while line not in self.lines():
            assert self.proc.poll() is None, f"seed chat client {self.name} exited:\n" \
                                             f"{self.output()[-2000:]}"
            assert time.monotonic() < deadline, \
                f"{self.name} never printed {line!r}; it printed:\n{self.output()[-2000:]}"
            time.sleep(0.02)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self._out.close()


def test_seed_chat_clients_and_a_websocket_member(server, tmp_path):
    seeds_dir(CHAT_SEED)
    script = write_script(tmp_path, "chat_client.py", extract_chat_client(server.chat_port))
    ws = RawWS.connect(server.port)
    alice = bob = None
    try:
        last = ws.join(server.chat_room)["last_msg_id"]
        alice = SeedChatClient(script, "alice", tmp_path)
        bob = SeedChatClient(script, "bob", tmp_path)
        wait_members(server, server.chat_room, 3)

        def ws_next():
            nonlocal last
            msg = ws.recv_json()
            assert msg["msg_id"] == last + 1, (msg, last)
            last = msg["msg_id"]
            return msg

        alice.type("hello from alice")
        for who in (alice, bob):
            who.wait_line("[alice] hello from alice")
        msg = ws_next()
        assert {k: msg[k] for k in ("type", "user", "text", "room")} == \
            {"type": "chat", "user": "alice", "text": "hello from alice",
             "room": server.chat_room}, msg

        text = 'grüße ✓ {braces} "quotes" \\ back'
        bob.type(text)
        for who in (alice, bob):
            who.wait_line(f"[bob] {text}")
        msg = ws_next()
        assert (msg["user"], msg["text"]) == ("bob", text), msg

        ws.send_json({"type": "chat", "user": "web", "text": "hello seeds"})
        assert ws_next()["text"] == "hello seeds"
        ws.send_json({"type": "chat", "nick": "browser", "text": "from the demo page"})
        ws_next()
        for who in (alice, bob):
            who.wait_line("[web] hello seeds")
            who.wait_line("[browser] from the demo page")
        # nothing else reached them: exactly these lines, in this order
        want = ["[alice] hello from alice", f"[bob] {text}", "[web] hello seeds",
                "[browser] from the demo page"]
        for who in (alice, bob):
            assert who.lines() == want, who.output()
            assert who.proc.poll() is None, who.output()
    finally:
        ws.close()
        for c in (alice, bob):
            if c is not None:
                c.kill()
