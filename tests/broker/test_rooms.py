"""Workers publishing into rooms, and room services (authoritative rooms): docs/broker.md,
"Workers publish into rooms" and "Room services". roomcast only."""

import json
import threading
import time

import pytest
import zmq

import settings as S
from conftest import LineClient

pytestmark = pytest.mark.roomcast_only


def publisher(ctx, broker):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(broker.worker_url)
    return s


def test_worker_publishes_into_room(broker, ctx):
    a, b = LineClient(broker), LineClient(broker)
    a.join("arena")
    b.join("arena")
    a.send({"type": "chat", "text": "first"})
    m1, _ = b.recv_until(lambda m: m.get("type") == "chat")
    p = publisher(ctx, broker)
    # "state" would be refused (400): a type reserved for the server's own messages, for
    # workers as for members (docs/protocol.md)
    p.send_multipart([b"", S.RCPUB, b"arena", b'{"type":"game_state","tick":1}', b"game"])
    ack = p.recv_multipart() if p.poll(3000) else None
    assert ack and ack[:3] == [b"", S.RCPUB, S.PUB_OK], f"publish ack expected: {ack}"
    for c in (a, b):
        m, _ = c.recv_until(lambda m: m.get("tick") == 1)
        assert m["room"] == "arena" and m["client_id"] in (0, "game"), m
        assert m["msg_id"] == m1["msg_id"] + 1, "a worker's message is sequenced like any other"
    assert int(ack[3]) == m["msg_id"], f"the ack carries the msg_id: {ack}"
    p.send_multipart([b"", S.RCPUB, b"nowhere", b'{"type":"x"}'])
    assert p.recv_multipart()[2] == S.PUB_NO_ROOM
    p.send_multipart([b"", S.RCPUB, b"arena", b"not json"])
    assert p.recv_multipart()[2] == S.PUB_BAD
    p.close(0)
    a.close()
    b.close()


class RoomWorker(threading.Thread):
    """An MDP worker for a room service: counts per room, echoes each message with the
    worker's name and the room's count (so tests see which worker holds which room)."""

    def __init__(self, ctx, broker, name, service=b"counter"):
        super().__init__(daemon=True)
        self.s = ctx.socket(zmq.DEALER)
        self.s.setsockopt(zmq.LINGER, 0)
        self.s.connect(broker.worker_url)
        self.s.send_multipart([b"", S.MDPW, S.W_READY, service])
        self.name, self.running, self.rooms, self.requests = name, True, {}, []
        self.last_hb = time.monotonic()

    def run(self):
        try:
            self._serve()
        except zmq.ZMQError:
            pass  # the test's context was destroyed under a worker it did not kill: it is over

    def _serve(self):
        while self.running:
            if self.s.poll(int(S.TEST_HEARTBEAT * 1000)):
                f = self.s.recv_multipart()
                if f[2] == S.W_REQUEST:
                    req = json.loads(f[5])
                    self.requests.append(req)
                    room = req["room"]
                    self.rooms[room] = self.rooms.get(room, 0) + 1
                    out = {"messages": [{"type": "counted", "by": self.name,
                                         "n": self.rooms[room], "echo": req["message"]}]}
                    self.s.send_multipart([b"", S.MDPW, S.W_REPLY, f[3], b"",
                                           json.dumps(out).encode()])
            if time.monotonic() - self.last_hb >= S.TEST_HEARTBEAT:
                self.s.send_multipart([b"", S.MDPW, S.W_HEARTBEAT])
                self.last_hb = time.monotonic()

    def kill(self):
        """Stop answering and heartbeating (the broker must declare it dead)."""
        self.running = False
        self.join(2)
        self.s.close(0)


@pytest.fixture
def room_broker(start_broker):
    return start_broker(S.F_ROOM_SERVICE, "table-*=counter")


def test_room_service_request_shape_and_broadcast(room_broker, ctx):
    w = RoomWorker(ctx, room_broker, "w0")
    w.start()
    room_broker.wait_workers("counter", 1)
    a, b = LineClient(room_broker), LineClient(room_broker)
    ja = a.join("table-1")
    b.join("table-1")
    a.send({"type": "move", "cell": 4})
    for c in (a, b):
        m, seen = c.recv_until(lambda m: m.get("type") == "counted")
        assert m["echo"]["cell"] == 4 and m["room"] == "table-1" and "msg_id" in m, m
        assert not [x for x in seen if x.get("type") == "move"], \
            "a publish into a room service's room is never broadcast directly"
    req = w.requests[0]
    assert req["room"] == "table-1" and req["message"]["cell"] == 4, req
    assert req["sender"]["client_id"] == ja["client_id"], req
    w.kill()


def test_room_service_zero_or_several_messages(start_broker, ctx):
    b = start_broker(S.F_ROOM_SERVICE, "multi-*=multi")
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(b.worker_url)
    s.send_multipart([b"", S.MDPW, S.W_READY, b"multi"])
    b.wait_workers("multi", 1)
    c = LineClient(b)
    c.join("multi-1")
    for n in (0, 3):
        c.send({"type": "n", "n": n})
        while True:
            f = s.recv_multipart() if s.poll(3000) else None
            assert f, "the room service got no request"
            if f[2] == S.W_REQUEST:
                break
        msgs = [{"type": "out", "i": i} for i in range(n)]
        s.send_multipart([b"", S.MDPW, S.W_REPLY, f[3], b"",
                          json.dumps({"messages": msgs}).encode()])
    got = []
    m, seen = c.recv_until(lambda m: m.get("type") == "out" and m.get("i") == 2)
    got = [x["i"] for x in seen if x.get("type") == "out"]
    assert got == [0, 1, 2], f"a reply's messages are broadcast in order: {got}"
    s.close(0)


def test_rooms_stick_to_a_worker_and_move_when_it_dies(room_broker, ctx):
    w0, w1 = RoomWorker(ctx, room_broker, "w0"), RoomWorker(ctx, room_broker, "w1")
    w0.start()
    w1.start()
    room_broker.wait_workers("counter", 2)
    rooms = ["table-a", "table-b", "table-c", "table-d"]
    clients = {r: LineClient(room_broker) for r in rooms}
    for r, c in clients.items():
        c.join(r)
    owner = {}
    for i in range(3):
        for r, c in clients.items():
            c.send({"type": "move", "seq": i})
            m, _ = c.recv_until(lambda m: m.get("type") == "counted" and m["echo"]["seq"] == i)
            assert m["n"] == i + 1, f"{r}: the room's state must live in one worker: {m}"
            owner.setdefault(r, m["by"])
            assert m["by"] == owner[r], f"{r} moved while its worker lived: {m}"
    victim = "w0" if "w0" in owner.values() else "w1"
    moved = [r for r in rooms if owner[r] == victim]
    (w0 if victim == "w0" else w1).kill()
    for r in moved:
        m, _ = clients[r].recv_until(lambda m: m.get("type") == "room_service",
                                     timeout=S.TEST_HEARTBEAT * S.TEST_LIVENESS + 5)
        assert {**S.ROOM_SERVICE_MOVED, "room": r}.items() <= m.items(), m
    for r in rooms:
        clients[r].send({"type": "move", "seq": 99})
        m, _ = clients[r].recv_until(lambda m: m.get("type") == "counted" and
                                     m["echo"]["seq"] == 99)
        assert m["by"] != victim, f"{r} still routed to the dead worker: {m}"
    for c in clients.values():
        c.close()


def test_sender_order_kept_across_swap(room_broker, ctx):
    """Messages of one sender keep their order, also across a worker swap."""
    w0 = RoomWorker(ctx, room_broker, "w0")
    w0.start()
    room_broker.wait_workers("counter", 1)
    c = LineClient(room_broker)
    c.join("table-x")
    for i in range(20):
        c.send({"type": "move", "seq": i})
        if i == 10:
            w0.kill()
            RoomWorker(ctx, room_broker, "w1").start()
    got = []
    deadline = time.monotonic() + 15
    while len(got) < 20 and time.monotonic() < deadline:
        m = c.recv(timeout=15)
        if m.get("type") == "counted":
            got.append(m["echo"]["seq"])
    dups = len(got) - len(set(got))
    assert got == sorted(got) and dups == 0, f"order or uniqueness broken: {got}"
    assert set(got) >= set(range(11, 20)), f"messages sent after the swap were lost: {got}"
    c.close()


def test_room_service_sender_carries_the_verified_user(start_broker, ctx):
    """With connection tokens (docs/auth.md) the request's sender has the token's user; a
    "user" the client writes stays inside its message, where it is only the client's word."""
    import base64
    import hashlib
    import hmac
    secret = "broker-room-service-secret-0123456789"
    b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    header = b64u(json.dumps({"alg": "HS256"}).encode())
    signing = f"{header}.{b64u(json.dumps({'sub': 'alice'}).encode())}"
    token = f"{signing}.{b64u(hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest())}"
    broker = start_broker(S.F_ROOM_SERVICE, "table-*=counter", "--jwt-secret", secret,
                          "--allow-anonymous")
    w = RoomWorker(ctx, broker, "w0")
    w.start()
    broker.wait_workers("counter", 1)
    a, anon = LineClient(broker), LineClient(broker)
    a.send({"type": "auth", "token": token})
    assert a.recv()["user"] == "alice"
    a.join("table-9")
    anon.join("table-9")
    a.send({"type": "move", "cell": 1, "user": "mallory"})
    a.recv_until(lambda m: m.get("type") == "counted")
    anon.send({"type": "move", "cell": 2})
    anon.recv_until(lambda m: m.get("type") == "counted" and m["echo"]["cell"] == 2)
    assert w.requests[0]["sender"]["user"] == "alice", w.requests[0]
    assert w.requests[0]["message"]["user"] == "mallory"
    assert "user" not in w.requests[1]["sender"], w.requests[1]
    w.kill()
    a.close()
    anon.close()
