"""Smoke test of the broker's ZeroMQ side (src/broker/zbroker.c on src/transport/zsock.c):
the seed's REQ worker and REQ client (../shared/seeds/zeromq-lru-broker.txt, the guide's
lruqueue) exchange requests through roomcast, and GET /api/services and /metrics show it.

Self-contained (no fixtures of its own directory), so that it runs beside the broker suite:

    ROOMCAST_BIN=build/roomcast /usr/bin/python3 -m pytest -q tests/broker/test_zbroker_smoke.py
"""

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest
import zmq

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BROKER_RE = re.compile(r"roomcast: broker workers tcp://(\S+):(\d+) clients tcp://\S+:(\d+)")
HTTP_RE = re.compile(r"roomcast: listening on http://\S+:(\d+)/")


def roomcast_bin():
    path = os.environ.get("ROOMCAST_BIN") or os.path.join(REPO, "build", "sanitize", "roomcast")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        pytest.fail(f"roomcast binary not found: {path} (set ROOMCAST_BIN)", pytrace=False)
    return path


@pytest.fixture
def server():
    errf = tempfile.NamedTemporaryFile(prefix="roomcast-zbroker-", suffix=".log", delete=False)
    proc = subprocess.Popen([roomcast_bin(), "--port", "0", "--no-netsync",
                             "--broker-worker-port", "0", "--broker-client-port", "0"],
                            stdout=subprocess.DEVNULL, stderr=errf, cwd=tempfile.gettempdir())
    deadline = time.monotonic() + 10
    info = None
    while time.monotonic() < deadline:
        text = open(errf.name, errors="replace").read()
        m, h = BROKER_RE.search(text), HTTP_RE.search(text)
        if m and h:
            info = {"host": m.group(1), "workers": int(m.group(2)), "clients": int(m.group(3)),
                    "http": int(h.group(1))}
            break
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    if not info:
        proc.kill()
        pytest.fail("roomcast did not start:\n" + open(errf.name, errors="replace").read())
    yield info
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=20)
    log = open(errf.name, errors="replace").read()
    os.unlink(errf.name)
    assert rc == 0, log


def seed_worker(url, ctx, i, stop):
    """The seed's worker_thread, unchanged but for a receive timeout so the test can end it."""
    socket = ctx.socket(zmq.REQ)
    socket.identity = ("worker-%d" % i).encode("ascii")
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, 200)
    socket.connect(url)
    socket.send(b"READY")
    while not stop.is_set():
        try:
            address = socket.recv()
        except zmq.Again:
            continue
        empty = socket.recv()
        request = socket.recv()
        assert empty == b""
        socket.send(address, zmq.SNDMORE)
        socket.send(b"", zmq.SNDMORE)
        socket.send(b"OK " + request)
    socket.close()


def get_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


def test_seed_req_worker_and_client(server):
    ctx = zmq.Context()
    stop = threading.Event()
    wurl = f"tcp://{server['host']}:{server['workers']}"
    curl = f"tcp://{server['host']}:{server['clients']}"
    workers = [threading.Thread(target=seed_worker, args=(wurl, ctx, i, stop)) for i in range(2)]
    for t in workers:
        t.start()
    try:
        # the seed's client_thread: REQ, send, receive the reply
        replies = []
        for i in range(4):
            c = ctx.socket(zmq.REQ)
            c.identity = ("client-%d" % i).encode("ascii")
            c.setsockopt(zmq.LINGER, 0)
            c.setsockopt(zmq.RCVTIMEO, 5000)
            c.connect(curl)
            c.send(b"HELLO %d" % i)
            replies.append(c.recv())
            c.close()
        assert replies == [b"OK HELLO %d" % i for i in range(4)]

        listing = get_json(server["http"], "/api/services")
        assert listing["enabled"] is True
        svc = {s["name"]: s for s in listing["services"]}["default"]
        assert svc["ok"] == 4
        names = sorted(w["name"] for w in svc["workers"])
        assert names == ["worker-0", "worker-1"]
        assert all(w["protocol"] == "lru" for w in svc["workers"])
        # LRU with one request in flight per worker: both served
        assert sum(w["served"] for w in svc["workers"]) == 4
        assert all(w["served"] >= 1 for w in svc["workers"])
        assert listing["connections"]["workers"]["live"] == 2

        with urllib.request.urlopen(f"http://127.0.0.1:{server['http']}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'roomcast_broker_requests_total{service="default",outcome="ok"} 4' in metrics
        assert 'roomcast_broker_workers{service="default",state="idle"} 2' in metrics
    finally:
        stop.set()
        for t in workers:
            t.join()

    # the workers closed their sockets: roomcast notices the connections end
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        listing = get_json(server["http"], "/api/services")
        svc = {s["name"]: s for s in listing["services"]}["default"]
        if not svc["workers"]:
            break
        time.sleep(0.05)
    assert svc["workers"] == []
    assert listing["counters"]["worker_connections_closed"] == 2
    ctx.term()
