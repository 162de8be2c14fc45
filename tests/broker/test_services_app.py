"""The broker seen from roomcast's own clients (src/app/services.c): JSON requests over the raw
TCP port, POST /api/services/{service}, the built-in roomcast.publish, room services with the
"moved" notice. MDP workers (pyzmq DEALER) serve the requests.

    ROOMCAST_BIN=build/roomcast /usr/bin/python3 -m pytest -q tests/broker/test_services_app.py
"""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest
import zmq

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BROKER_RE = re.compile(r"roomcast: broker workers tcp://(\S+):(\d+) clients")
HTTP_RE = re.compile(r"roomcast: listening on http://\S+:(\d+)/")
TCP_RE = re.compile(r"roomcast: tcp listening on \S+:(\d+)")
KEY = "k3y"


def roomcast_bin():
    path = os.environ.get("ROOMCAST_BIN") or os.path.join(REPO, "build", "roomcast")
    return os.path.abspath(path)


def start(*extra):
    errf = tempfile.NamedTemporaryFile(prefix="roomcast-svc-", suffix=".log", delete=False)
    proc = subprocess.Popen([roomcast_bin(), "--port", "0", "--tcp-port", "0", "--no-netsync",
                             "--api-key", KEY, "--broker-worker-port", "0", *extra],
                            stdout=subprocess.DEVNULL, stderr=errf, cwd=tempfile.gettempdir())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = open(errf.name, errors="replace").read()
        b, h, t = BROKER_RE.search(text), HTTP_RE.search(text), TCP_RE.search(text)
        if b and h and t:
            return proc, errf.name, {"workers": f"tcp://{b.group(1)}:{b.group(2)}",
                                     "http": int(h.group(1)), "tcp": int(t.group(1))}
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    pytest.fail("roomcast did not start:\n" + open(errf.name, errors="replace").read())


@pytest.fixture
def server(request):
    extra = getattr(request, "param", ())
    proc, log, info = start(*extra)
    yield info
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, open(log).read()


class Worker(threading.Thread):
    """An MDP/0.1 worker: handler(body bytes) -> reply bytes (None: no reply)."""

    def __init__(self, endpoint, service, handler):
        super().__init__(daemon=True)
        self.endpoint, self.service, self.handler = endpoint, service, handler
        self.stop = threading.Event()
        self.seen = []
        self.ready = threading.Event()

    def run(self):
        ctx = zmq.Context.instance()
        s = ctx.socket(zmq.DEALER)
        s.linger = 0
        s.connect(self.endpoint)
        s.send_multipart([b"", b"MDPW01", b"\x01", self.service.encode()])
        self.ready.set()
        while not self.stop.is_set():
            if not s.poll(50):
                continue
            f = s.recv_multipart()
            if f[2] == b"\x02":  # REQUEST [""][MDPW01][0x02][client][""][body]
                body = b"".join(f[5:])
                self.seen.append(body)
                out = self.handler(body)
                if out is not None:
                    s.send_multipart([b"", b"MDPW01", b"\x03", f[3], b"", out])
            elif f[2] == b"\x04":
                s.send_multipart([b"", b"MDPW01", b"\x04"])
        s.close(0)


def worker(server, service, handler):
    w = Worker(server["workers"], service, handler)
    w.start()
    w.ready.wait(2)
    time.sleep(0.2)  # READY reaches the broker
    return w


class Line:
    """A raw-TCP room client (line mode)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send(self, obj):
        self.s.sendall(json.dumps(obj).encode() + b"\n")

    def recv(self, want=None, timeout=5):
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                if not line.strip():
                    continue
                m = json.loads(line)
                if want is None or want(m):
                    return m
            self.s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.s.recv(65536)
            assert chunk, "connection closed"
            self.buf += chunk

    def close(self):
        self.s.close()


def http_post(server, path, body, key=KEY, timeout=10):
    req = urllib.request.Request(f"http://127.0.0.1:{server['http']}{path}", data=body,
                                 method="POST")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def test_json_request_reply_and_b64(server):
    w = worker(server, "echo", lambda b: b)
    raw = worker(server, "raw", lambda b: b"\xff\x00bin")
    c = Line(server["tcp"])
    c.send({"type": "request", "service": "echo", "id": 7, "body": {"a": [1, 2]}})
    assert c.recv() == {"type": "reply", "id": 7, "body": {"a": [1, 2]}}
    c.send({"type": "request", "service": "echo", "id": "x", "body_b64": "aGk="})
    assert c.recv() == {"type": "reply", "id": "x", "body_b64": "aGk="}  # "hi" is not JSON
    c.send({"type": "request", "service": "raw", "id": None, "body": 1})
    assert c.recv() == {"type": "reply", "id": None, "body_b64": "/wBiaW4="}
    assert w.seen[0] == b'{"a": [1, 2]}'  # the body's JSON text, as the client wrote it
    c.send({"type": "request", "service": "echo", "id": {"no": 1}, "body": 1})
    assert c.recv()["code"] == "bad_field"
    w.stop.set(), raw.stop.set()
    c.close()


@pytest.mark.parametrize("server", [("--request-timeout", "0.5")], indirect=True)
def test_unknown_service_fails(server):
    c = Line(server["tcp"])
    c.send({"type": "request", "service": "nobody", "id": 1, "body": 1})
    m = c.recv(timeout=5)
    assert m["type"] == "error" and m["id"] == 1 and m["code"] in ("no_service", "timeout")
    assert http_post(server, "/api/services/nobody", b"x")[0] in (503, 504)


def test_inflight_bound_per_connection(server):
    w = worker(server, "slow", lambda b: None)  # never answers
    c = Line(server["tcp"])
    for i in range(65):
        c.send({"type": "request", "service": "slow", "id": i, "body": i})
    m = c.recv(lambda m: m["type"] == "error")
    assert m["id"] == 64 and m["code"] == "overloaded"
    w.stop.set()


def test_http_request(server):
    w = worker(server, "echo", lambda b: b)
    st, ct, body = http_post(server, "/api/services/echo", b'{"q":1}')
    assert st == 200 and ct.startswith("application/json") and json.loads(body) == {"q": 1}
    st, ct, body = http_post(server, "/api/services/echo", b"\x01\x02")
    assert st == 200 and ct.startswith("application/octet-stream") and body == b"\x01\x02"
    assert http_post(server, "/api/services/echo", b"x", key=None)[0] == 401
    w.stop.set()


def test_roomcast_publish(server):
    a = Line(server["tcp"])
    a.send({"type": "join", "room": "lobby"})
    a.recv(lambda m: m["type"] == "joined")
    a.send({"type": "request", "service": "roomcast.publish", "id": 1,
            "body": {"room": "lobby", "message": {"type": "news", "x": 1}}})
    msg = a.recv(lambda m: m.get("type") == "news")
    assert msg["client_id"] == 0 and msg["room"] == "lobby"
    rep = a.recv(lambda m: m["type"] == "reply")
    assert rep["body"] == {"msg_id": msg["msg_id"]}
    st, _, body = http_post(server, "/api/services/roomcast.publish",
                            json.dumps({"room": "lobby", "message": {"type": "news"}}).encode())
    assert st == 200 and json.loads(body)["msg_id"] == msg["msg_id"] + 1
    assert http_post(server, "/api/services/roomcast.publish",
                     b'{"room":"nope","message":{}}')[0] == 404


def game(body):
    req = json.loads(body)
    m = req["message"]
    return json.dumps({"messages": [
        {"type": "moved_to", "cell": m["cell"], "by": req["sender"]["client_id"]},
        {"type": "turn", "next": m["cell"] + 1}]}).encode()


@pytest.mark.parametrize("server", [("--room-service", "ttt-*=ttt",
                                     "--room-service", "ctr-*=ctr")], indirect=True)
def test_room_service_and_moved(server):
    w1 = worker(server, "ttt", game)
    a, b = Line(server["tcp"]), Line(server["tcp"])
    for c in (a, b):
        c.send({"type": "join", "room": "ttt-1"})
        c.recv(lambda m: m["type"] == "joined")
    a.send({"type": "move", "cell": 4})
    for c in (a, b):
        m1 = c.recv(lambda m: m.get("type") == "moved_to")
        m2 = c.recv(lambda m: m.get("type") == "turn")
        assert m1["client_id"] == 0 and m2["msg_id"] == m1["msg_id"] + 1 and m2["next"] == 5
    assert json.loads(w1.seen[0])["room"] == "ttt-1"
    assert json.loads(w1.seen[0])["message"] == {"type": "move", "cell": 4}
    # sender order: several moves come back in order
    for i in range(5):
        a.send({"type": "move", "cell": 10 + i})
    cells = [b.recv(lambda m: m.get("type") == "moved_to")["cell"] for _ in range(5)]
    assert cells == [10, 11, 12, 13, 14]
    # the room's worker goes away: members are told, the next worker takes the room
    w2 = worker(server, "ttt", game)
    w1.stop.set()
    w1.join()
    n = b.recv(lambda m: m.get("type") == "room_service", timeout=10)
    assert n == {"type": "room_service", "room": "ttt-1", "state": "moved"} and "msg_id" not in n
    a.send({"type": "move", "cell": 1})
    assert b.recv(lambda m: m.get("type") == "moved_to")["cell"] == 1
    assert w2.seen
    # a room without a worker: the sender gets an error naming the room
    a.send({"type": "join", "room": "ctr-1"})
    a.recv(lambda m: m["type"] == "joined")
    a.send({"type": "room", "room": "ctr-1", "x": 1})
    e = a.recv(lambda m: m.get("type") == "error", timeout=10)
    assert e["room"] == "ctr-1" and e["code"] in ("no_service", "timeout")
    w2.stop.set()
