"""Paranoid Pirate (RFC 6), Majordomo MDP/0.1 (RFC 7), MMI (RFC 8) and malformed frames on
the worker and client ports (docs/broker.md). roomcast only: the Python peer speaks the seed's
protocol alone."""

import time

import pytest
import zmq

import settings as S
from conftest import (MdpClient, MdpWorker, PppWorker, req_client, start_worker, wait_until)

pytestmark = pytest.mark.roomcast_only
EXPIRY = S.TEST_HEARTBEAT * S.TEST_LIVENESS


def dealer(ctx, url):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(url)
    return s


def recv(sock, timeout=2.0):
    return sock.recv_multipart() if sock.poll(int(timeout * 1000)) else None


def recv_non_heartbeat(sock, heartbeat, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = recv(sock, max(0.01, deadline - time.monotonic()))
        if m is not None and m != heartbeat:
            return m
    return None


# -- Paranoid Pirate ----------------------------------------------------------------------

def test_ppp_serves_default_service(broker, ctx, workers):
    start_worker(workers, PppWorker, ctx, broker.worker_url, "p0")
    broker.wait_workers(S.DEFAULT_SERVICE, 1)
    assert req_client(ctx, broker, b"hi") == b"p0:hi"
    c = MdpClient(ctx, broker)
    assert c.request(S.DEFAULT_SERVICE, b"mdp") == [S.MDPC, S.DEFAULT_SERVICE.encode(), b"p0:mdp"], \
        "an MDP client naming the default service reaches PPP workers too"


def test_ppp_broker_heartbeats(broker, ctx, workers):
    """The broker heartbeats an idle PPP worker every --broker-heartbeat."""
    w = start_worker(workers, PppWorker, ctx, broker.worker_url, "p0")
    time.sleep(S.TEST_HEARTBEAT * 10)
    assert w.heartbeats_in >= 5, f"expected ~10 heartbeats in 10 intervals, got {w.heartbeats_in}"
    assert w.disconnects == 0, "a live broker must never look dead to a PPP worker"


def test_ppp_silent_worker_expires(broker, ctx, workers):
    """A worker silent for --broker-liveness intervals is dead: it leaves the service and gets
    no request (RFC 6: 3-5 intervals)."""
    w = start_worker(workers, PppWorker, ctx, broker.worker_url, "mute")
    broker.wait_workers(S.DEFAULT_SERVICE, 1)
    w.mute = True
    time.sleep(EXPIRY * 3)
    svc = broker.service(S.DEFAULT_SERVICE)
    assert not svc or not svc.get("workers"), f"the silent worker is still listed: {svc}"
    start_worker(workers, PppWorker, ctx, broker.worker_url, "live")
    assert req_client(ctx, broker, b"x") == b"live:x"
    assert not [f for f in w.received if b"x" in f], "a dead worker got a request"


def test_ppp_repeated_ready_registers_once(start_broker, ctx, workers):
    """RFC 6: a worker that loses the broker re-sends READY; a READY from a known worker must
    re-register it (it restarted: decision, docs/broker.md), not add a second entry."""
    b = start_broker()
    w = start_worker(workers, PppWorker, ctx, b.worker_url, "p0")
    b.wait_workers(S.DEFAULT_SERVICE, 1)
    raw = dealer(ctx, b.worker_url)
    raw.send(S.PPP_READY)
    raw.send(S.PPP_HEARTBEAT)
    b.wait_workers(S.DEFAULT_SERVICE, 2)
    assert w.ready_sent == 1
    # a PPP worker's second READY (after its own restart) replaces its first registration
    raw.send(S.PPP_READY)
    # raw heartbeats by hand: EXPIRY is only 0.3 s, it must not expire while we look
    for _ in range(3):
        time.sleep(0.05)
        raw.send(S.PPP_HEARTBEAT)
    svc = b.service(S.DEFAULT_SERVICE)
    ids = [x["name"] for x in svc["workers"]]
    assert len(ids) == 2 and len(set(ids)) == 2, f"a repeated READY must not register twice: {svc}"
    raw.close(0)


# -- Majordomo ----------------------------------------------------------------------------

def test_mdp_named_services(broker, ctx, workers):
    start_worker(workers, MdpWorker, ctx, broker.worker_url, "e0", service="echo")
    start_worker(workers, MdpWorker, ctx, broker.worker_url, "u0", service="upper")
    broker.wait_workers("echo", 1)
    broker.wait_workers("upper", 1)
    c = MdpClient(ctx, broker)
    assert c.request("echo", b"a") == [S.MDPC, b"echo", b"e0:a"]
    assert c.request("upper", b"b") == [S.MDPC, b"upper", b"u0:b"]


def test_mdp_multipart_body(broker, ctx):
    """Bodies are opaque and may span frames: all frames reach the worker, all come back."""
    w = dealer(ctx, broker.worker_url)
    w.send_multipart([b"", S.MDPW, S.W_READY, b"multi"])
    broker.wait_workers("multi", 1)
    c = MdpClient(ctx, broker)
    c.sock.send_multipart([S.MDPC, b"multi", b"p1", b"p2", b""])
    req = recv_non_heartbeat(w, [b"", S.MDPW, S.W_HEARTBEAT])
    assert req[:3] == [b"", S.MDPW, S.W_REQUEST] and req[4] == b"" and req[5:] == [b"p1", b"p2", b""], req
    w.send_multipart([b"", S.MDPW, S.W_REPLY, req[3], b"", b"r1", b"r2"])
    assert recv(c.sock) == [S.MDPC, b"multi", b"r1", b"r2"]
    w.close(0)


def test_mdp_worker_heartbeats_and_expiry(broker, ctx, workers):
    w = start_worker(workers, MdpWorker, ctx, broker.worker_url, "m0", service="echo")
    broker.wait_workers("echo", 1)
    time.sleep(S.TEST_HEARTBEAT * 10)
    hb = [f for f in w.received if f == [b"", S.MDPW, S.W_HEARTBEAT]]
    assert len(hb) >= 5, f"the broker must heartbeat MDP workers, got {len(hb)} in 10 intervals"
    w.mute = True
    time.sleep(EXPIRY * 3)
    svc = broker.service("echo")
    assert not svc or not svc.get("workers"), f"a silent MDP worker must expire: {svc}"


@pytest.mark.parametrize("unexpected", [
    pytest.param([S.W_READY, b"echo"], id="second-READY"),
    pytest.param([S.W_REPLY, b"nobody", b"", b"x"], id="REPLY-unasked"),
    pytest.param([S.W_REQUEST, b"c", b"", b"x"], id="REQUEST-from-worker"),
])
def test_mdp_disconnect_on_unexpected_command(broker, ctx, unexpected):
    """RFC 7: 'The broker MUST respond to any valid but unexpected command by sending
    DISCONNECT and then no further commands to that worker.'"""
    w = dealer(ctx, broker.worker_url)
    w.send_multipart([b"", S.MDPW, S.W_READY, b"echo"])
    broker.wait_workers("echo", 1)
    w.send_multipart([b"", S.MDPW, *unexpected])
    m = recv_non_heartbeat(w, [b"", S.MDPW, S.W_HEARTBEAT])
    assert m == [b"", S.MDPW, S.W_DISCONNECT], f"expected DISCONNECT, got {m}"
    assert recv(w, EXPIRY * 2) is None, "nothing may follow DISCONNECT"
    w.close(0)


def test_mdp_heartbeat_before_ready_disconnects(broker, ctx):
    w = dealer(ctx, broker.worker_url)
    w.send_multipart([b"", S.MDPW, S.W_HEARTBEAT])
    assert recv(w) == [b"", S.MDPW, S.W_DISCONNECT], "HEARTBEAT before READY is unexpected"
    w.close(0)


def test_mdp_worker_disconnect_mid_request_is_retried(broker, ctx, workers):
    """A worker that sends DISCONNECT while holding a request: the request goes to another
    worker (retry once), the client gets exactly one reply."""
    w = dealer(ctx, broker.worker_url)
    w.send_multipart([b"", S.MDPW, S.W_READY, b"echo"])
    broker.wait_workers("echo", 1)
    c = MdpClient(ctx, broker)
    c.sock.send_multipart([S.MDPC, b"echo", b"job"])
    req = recv_non_heartbeat(w, [b"", S.MDPW, S.W_HEARTBEAT])
    assert req and req[2] == S.W_REQUEST, req
    w.send_multipart([b"", S.MDPW, S.W_DISCONNECT])
    start_worker(workers, MdpWorker, ctx, broker.worker_url, "e1", service="echo")
    assert recv(c.sock, 5) == [S.MDPC, b"echo", b"e1:job"]
    assert recv(w, EXPIRY * 2) is None, "the broker must send nothing to a disconnected worker"
    w.close(0)


def test_mdp_worker_reconnects_after_disconnect(broker, ctx, workers):
    w = start_worker(workers, MdpWorker, ctx, broker.worker_url, "m0", service="echo")
    broker.wait_workers("echo", 1)
    w.inject.append((S.W_READY, b"echo"))     # a second READY: the broker must DISCONNECT
    wait_until(lambda: w.disconnects >= 1, what="DISCONNECT after a second READY")
    broker.wait_workers("echo", 1)
    assert MdpClient(ctx, broker).request("echo", b"again") == [S.MDPC, b"echo", b"m0:again"]


# -- MMI -----------------------------------------------------------------------------------

def test_mmi(broker, ctx, workers):
    start_worker(workers, MdpWorker, ctx, broker.worker_url, "e0", service="echo")
    broker.wait_workers("echo", 1)
    c = MdpClient(ctx, broker)
    assert c.request(S.MMI_SERVICE, b"echo") == [S.MDPC, S.MMI_SERVICE, S.MMI_FOUND]
    assert c.request(S.MMI_SERVICE, b"nosuch") == [S.MDPC, S.MMI_SERVICE, S.MMI_NOT_FOUND]
    assert c.request("mmi.frobnicate", b"x") == [S.MDPC, b"mmi.frobnicate", S.MMI_NOT_IMPLEMENTED]


def test_mmi_name_registration_refused(broker, ctx):
    """RFC 8: a worker registering a service in the mmi. namespace is disconnected."""
    w = dealer(ctx, broker.worker_url)
    w.send_multipart([b"", S.MDPW, S.W_READY, b"mmi.service"])
    assert recv(w) == [b"", S.MDPW, S.W_DISCONNECT]
    w.close(0)


# -- malformed input: counted by kind, harmless -------------------------------------------

GARBAGE = [                                                          # (kind counted, frames)
    ("frames", [b""]),                                              # an envelope, nothing else
    ("command", [b"", S.MDPW, b"\x09"]),                            # unknown MDP command
    ("frames", [b"", S.MDPW, S.W_READY]),                           # READY without service
    ("header", [b"", b"MDPW99", S.W_READY, b"x"]),
    ("frames", [b"\x01", b"extra"]),                                # PPP READY with 2 parts
    ("command", [b"\x07"]),                                         # unknown PPP command
]


def test_malformed_worker_frames_counted_and_harmless(broker, ctx, workers):
    start_worker(workers, MdpWorker, ctx, broker.worker_url, "e0", service="echo")
    broker.wait_workers("echo", 1)
    before = broker.counters()
    for kind, frames in GARBAGE:
        d = dealer(ctx, broker.worker_url)
        d.send_multipart(frames)
        d.setsockopt(zmq.LINGER, 2000)          # close(0) would drop it before it connects
        d.close()
    c = MdpClient(ctx, broker)
    for i in range(5):
        assert c.request("echo", b"%d" % i) == [S.MDPC, b"echo", b"e0:%d" % i], \
            "a healthy worker's service must be unaffected by garbage"
    want = {k: sum(1 for g, _ in GARBAGE if g == k) for k, _ in GARBAGE}

    def counted():
        after = broker.counters()
        return {k: S.malformed(after, S.PORT_WORKER, k) - S.malformed(before, S.PORT_WORKER, k)
                for k in want}
    try:
        wait_until(lambda: counted() == want, timeout=3, what="the garbage to be counted")
    except AssertionError:
        raise AssertionError(f"malformed kinds counted {counted()}, sent {want}") from None
    assert broker.alive()


def test_malformed_client_frames(broker, ctx, workers):
    """Client port: a request with a wrong envelope or frame count is dropped and counted;
    an unknown MDP service waits, then expires silently (decision). (A first body frame other
    than exactly "MDPC01", e.g. "MDPC99", is an LRU request body: see docs/broker.md.)"""
    start_worker(workers, MdpWorker, ctx, broker.worker_url, "e0", service="echo")
    broker.wait_workers("echo", 1)
    d = dealer(ctx, broker.client_url)
    d.send_multipart([S.MDPC, b"echo", b"x"])                       # no empty delimiter
    d.send_multipart([b"", S.MDPC])                                 # no service frame
    assert recv(d, 0.5) is None, "garbage gets no reply"
    d.close(0)
    c = MdpClient(ctx, broker)
    assert c.request("nosuch", b"x", timeout=S.TEST_REQUEST_TIMEOUT + 1) is None
    assert c.request("echo", b"ok") == [S.MDPC, b"echo", b"e0:ok"]
    m = broker.counters()
    assert S.malformed(m, S.PORT_CLIENT, "delimiter") >= 1, m
    assert S.malformed(m, S.PORT_CLIENT, "frames") >= 1, m


def test_reply_for_unknown_client_counted(broker, ctx):
    """A REPLY from an idle MDP worker (no request held, so its address names no client) is
    an unexpected command (RFC 7): counted, answered with DISCONNECT."""
    w = dealer(ctx, broker.worker_url)
    w.send_multipart([b"", S.MDPW, S.W_READY, b"echo"])
    broker.wait_workers("echo", 1)
    before = broker.counters().get(S.UNEXPECTED_COUNTER, 0)
    w.send_multipart([b"", S.MDPW, S.W_REPLY, b"ghost", b"", b"x"])
    time.sleep(0.2)
    assert broker.counters().get(S.UNEXPECTED_COUNTER, 0) > before
    got = recv_non_heartbeat(w, [b"", S.MDPW, S.W_HEARTBEAT], 1.0)
    assert got == [b"", S.MDPW, S.W_DISCONNECT], got
    w.close(0)


def test_oversized_request(start_broker, ctx, workers):
    b = start_broker(S.F_MAX_MESSAGE, 1024)
    start_worker(workers, MdpWorker, ctx, b.worker_url, "e0", service="echo")
    b.wait_workers("echo", 1)
    c = MdpClient(ctx, b)
    assert c.request("echo", b"x" * 2048, timeout=1) is None, "an oversized request is dropped"
    assert S.malformed(b.counters(), S.PORT_CLIENT, "too_large") >= 1, b.counters()
    assert c.request("echo", b"small") == [S.MDPC, b"echo", b"e0:small"]
