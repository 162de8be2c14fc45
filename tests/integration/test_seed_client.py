"""The seed server's own client (seed_ws_client.py, the seed's ws_client.py with a configurable
port and a bounded run) must work against roomcast unchanged, several at once in shared rooms,
with its ordering checks (and the real one the seed meant to make) passing."""

import os
import subprocess
import sys
import time
import uuid

from conftest import HERE

SEED = os.path.join(HERE, "seed_ws_client.py")


def spawn(server, room, count, *extra):
    return subprocess.Popen([sys.executable, SEED, room, *extra, "--port", str(server.port),
                             "--count", str(count), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_all(procs, timeout=90):
    deadline = time.monotonic() + timeout
    failures = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            failures.append(f"seed client timed out:\n{out}")
            continue
        if p.returncode != 0 or "OK " not in out:
            failures.append(f"seed client exited {p.returncode}:\n{out[-3000:]}")
    assert not failures, "\n\n".join(failures)


def test_single_seed_client(server):
    wait_all([spawn(server, f"seed-{uuid.uuid4().hex[:6]}", 300)])


def test_seed_clients_sharing_rooms(server):
    """Three seed clients in one room, two in another, one alone: each checks the room's msg_id
    sequence covering everybody's pings, and its own pings in order."""
    a, b, c = (f"seed-{uuid.uuid4().hex[:6]}" for _ in range(3))
    procs = [spawn(server, a, 400) for _ in range(3)]
    procs += [spawn(server, b, 400) for _ in range(2)]
    procs += [spawn(server, c, 400)]
    wait_all(procs)


def test_slow_seed_client_with_fast_peer(server):
    """The seed's 'slow' mode (a delay after each message) next to a fast client: slow within
    the server's limits is not a reason to be disconnected, and order still holds."""
    room = f"seed-slow-{uuid.uuid4().hex[:6]}"
    procs = [spawn(server, room, 40, "0.005"), spawn(server, room, 300)]
    wait_all(procs)
