"""Several nodes on one machine sharing one port (--reuseport) and their rooms (--redis):
README "Every core on one machine", docs/cluster.md.

* two nodes bound to the same --port and --tcp-port: many clients connect to that one port, the
  kernel spreads them over both processes (checked from /proc: which process holds which
  accepted socket, and from the client_ids, whose high bits are per node), and every client
  sees one identical msg_id order;
* a process without --reuseport on a port held with it, or with it on a port held without it,
  fails at start with "Address already in use" and says why; NetSync's ZeroMQ ports are never
  shared.

Nodes are the binary under test (ROOMCAST_BIN); Redis is conftest.py's private redis-server.
"""

import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import time

import pytest

from redis_server import free_port
from nodeproc import stop_nodes

_spec = importlib.util.spec_from_file_location(
    "rc_integration", os.path.join(os.path.dirname(__file__), "..", "integration", "conftest.py"))
itest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(itest)

TIMEOUT = 10.0


def wait_stderr(node, text, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while text not in node.stderr():
        assert node.alive(), f"node exited:\n{node.stderr_tail()}"
        assert time.monotonic() < deadline, f"never logged {text!r}:\n{node.stderr_tail()}"
        time.sleep(0.05)


@pytest.fixture
def shared_nodes(redis_server):
    """start(n, *flags): n nodes with --reuseport on one free --port (and the flags), each
    connected to Redis; stopped and exit-checked afterwards."""
    made = []

    def start(n, *flags):
        port = free_port()
        for _ in range(n):
            node = itest.Server("--redis", redis_server.unix_url, "--reuseport",
                                "--port", port, *flags)
            assert node.port == port
            made.append(node)
        for node in made:  # the shared port cannot tell which node answers: ask their logs
            wait_stderr(node, "redis: available")
        return made

    yield start
    stop_nodes(made)


def accepted_sockets(pid, port):
    """How many established TCP connections process pid holds with local port `port` (the
    connections its listener accepted), from /proc."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port and inode in inodes:
                    n += 1
    return n


async def recv(ws, timeout=TIMEOUT):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def join(ws, room):
    await ws.send(json.dumps({"type": "join", "room": room}))
    while True:
        m = await recv(ws)
        assert m.get("type") != "error", m
        if m.get("type") == "joined" and m.get("room") == room:
            return m


def test_two_nodes_share_one_port_and_one_order(shared_nodes):
    tcp_port = free_port()
    a, b = shared_nodes(2, "--tcp-port", tcp_port)
    assert a.tcp_port == b.tcp_port == tcp_port
    nclients, per_client = 24, 5
    total = nclients * per_client

    async def main():
        conns, bases = [], []
        for _ in range(nclients):
            ws = await itest.ws_connect(a.ws_url)  # a.ws_url is b's too: the one shared port
            j = await join(ws, "shared")
            assert j["last_msg_id"] == 0
            conns.append(ws)
            bases.append(j["client_id"] >> 32)  # each node numbers from its own random base
        # spread over both processes: each holds some of the connections, and the client_ids
        # tell the same split
        held = [accepted_sockets(n.proc.pid, a.port) for n in (a, b)]
        assert sum(held) == nclients and min(held) > 0, f"not spread: {held}"
        per_base = sorted(bases.count(x) for x in set(bases))
        assert per_base == sorted(held), f"client_ids {per_base} vs sockets {held}"

        async def publish(i, ws):
            for k in range(per_client):
                await ws.send(json.dumps({"text": "%d:%d" % (i, k)}))

        async def drain(ws):
            got = []
            while len(got) < total:
                m = await recv(ws)
                if "msg_id" in m:
                    got.append((m["msg_id"], m["text"], m["client_id"]))
                else:
                    assert m.get("type") != "error", m
            return got

        readers = [asyncio.ensure_future(drain(ws)) for ws in conns]
        await asyncio.gather(*(publish(i, ws) for i, ws in enumerate(conns)))
        seen = await asyncio.gather(*readers)
        assert [m[0] for m in seen[0]] == list(range(1, total + 1)), "gap or duplicate"
        assert sorted(m[1] for m in seen[0]) == sorted(
            "%d:%d" % (i, k) for i in range(nclients) for k in range(per_client))
        for s in seen[1:]:
            assert s == seen[0], "a client saw another order"
        for ws in conns:
            await ws.close()

    itest.run(main())

    # the raw TCP port is shared the same way
    socks = [socket.create_connection(("127.0.0.1", tcp_port), timeout=TIMEOUT)
             for _ in range(16)]
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            held = [accepted_sockets(n.proc.pid, tcp_port) for n in (a, b)]
            if sum(held) == len(socks):
                break
            assert time.monotonic() < deadline, f"accepted {held} of {len(socks)}"
            time.sleep(0.05)
        assert min(held) > 0, f"raw TCP not spread: {held}"
    finally:
        for s in socks:
            s.close()


def start_failing(*flags):
    """Run a node that must fail at start: (exit status, stderr)."""
    argv = [itest.roomcast_bin(), "--bind", "127.0.0.1", *[str(f) for f in flags]]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=30, text=True)
    return p.returncode, p.stderr


def test_a_port_is_shared_only_when_every_holder_asks():
    port = free_port()
    holder = itest.Server("--reuseport", "--port", port)
    try:
        rc, err = start_failing("--no-netsync", "--port", port)
        assert rc != 0
        assert "cannot listen on '127.0.0.1:%d' (HTTP): Address already in use" % port in err
        assert "processes sharing a port all need --reuseport" in err
    finally:
        holder.stop()
        holder.cleanup()
    holder = itest.Server("--port", port)
    try:
        rc, err = start_failing("--no-netsync", "--reuseport", "--port", port)
        assert rc != 0
        assert "Address already in use (its holder did not give --reuseport" in err
    finally:
        holder.stop()
        holder.cleanup()


def test_netsync_ports_are_never_shared(redis_server, tmp_path):
    # libzmq binds without SO_REUSEPORT: a second node asking for the same NetSync port fails
    # at start, --reuseport or not (the shared HTTP port is not the problem). The first node is
    # started by hand: itest.Server turns NetSync off.
    port, router = free_port(), free_port()
    ns = ["--netsync-router-port", str(router), "--netsync-pub-port", "0",
          "--netsync-pose-port", "0", "--netsync-discovery-port", "0"]
    log = tmp_path / "first.log"
    with open(log, "w") as errf:
        first = subprocess.Popen([itest.roomcast_bin(), "--bind", "127.0.0.1", "--reuseport",
                                  "--port", str(port), "--redis", redis_server.unix_url, *ns],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=errf)
    try:
        deadline = time.monotonic() + TIMEOUT
        while "roomcast: listening on" not in log.read_text():
            assert first.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        rc, err = start_failing("--reuseport", "--port", port, "--redis", redis_server.unix_url,
                                *ns)
        assert rc != 0
        assert "Address already in use" in err and ":%d" % router in err, err
    finally:
        first.terminate()
        first.wait(timeout=30)
    assert first.returncode == 0, log.read_text()
