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
    re-register it, not add a second entry."""
    b = start_broker()
    w = start_worker(workers, PppWorker, ctx, b.worker_url, "p0")
    b.wait_workers(S.DEFAULT_SERVICE, 1)
    raw = dealer(ctx, b.worker_url)
    raw.send(S.PPP_READY)
    raw.send(S.PPP_HEARTBEAT)
    assert w.ready_sent == 1
    # a PPP worker's second READY (after its own reconnect) replaces its first registration
    raw.send(S.PPP_READY)
    time.sleep(0.3)
    svc = b.service(S.DEFAULT_SERVICE)
    assert len(svc["workers"]) == 2, f"a repeated READY must not register twice: {svc}"
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

GARBAGE = [
    ("empty_frame", [b""]),
    ("unknown_command", [b"", S.MDPW, b"\x09"]),
    ("frame_count", [b"", S.MDPW, S.W_READY]),                      # READY without service
    ("bad_header", [b"", b"MDPW99", S.W_READY, b"x"]),
    ("frame_count", [b"\x01", b"extra"]),                           # PPP READY with 2 parts
    ("unknown_command", [b"\x07"]),
]


def test_malformed_worker_frames_counted_and_harmless(broker, ctx, workers):
    start_worker(workers, MdpWorker, ctx, broker.worker_url, "e0", service="echo")
    broker.wait_workers("echo", 1)
    before = broker.counters().get("malformed", {})
    for kind, frames in GARBAGE:
        d = dealer(ctx, broker.worker_url)
        d.send_multipart(frames)
        d.close(0)
    c = MdpClient(ctx, broker)
    for i in range(5):
        assert c.request("echo", b"%d" % i) == [S.MDPC, b"echo", b"e0:%d" % i], \
            "a healthy worker's service must be unaffected by garbage"
    time.sleep(0.2)
    after = broker.counters().get("malformed", {})
    for kind in {k for k, _ in GARBAGE}:
        assert after.get(kind, 0) > before.get(kind, 0), \
            f"malformed kind {kind!r} not counted: before {before}, after {after}"
    assert broker.alive()


def test_malformed_client_frames(broker, ctx, workers):
    """Client port: a REQ/MDP request with a wrong header or frame count is dropped and
    counted; an unknown MDP service waits, then expires silently (decision)."""
    start_worker(workers, MdpWorker, ctx, broker.worker_url, "e0", service="echo")
    broker.wait_workers("echo", 1)
    d = dealer(ctx, broker.client_url)
    d.send_multipart([b"", b"MDPC99", b"echo", b"x"])
    d.send_multipart([b"", S.MDPC])                                 # no service frame
    assert recv(d, 0.5) is None, "garbage gets no reply"
    d.close(0)
    c = MdpClient(ctx, broker)
    assert c.request("nosuch", b"x", timeout=S.TEST_REQUEST_TIMEOUT + 1) is None
    assert c.request("echo", b"ok") == [S.MDPC, b"echo", b"e0:ok"]
    m = broker.counters().get("malformed", {})
    assert m.get("bad_header", 0) >= 1 and m.get("frame_count", 0) >= 1, m


def test_reply_for_unknown_client_counted(broker, ctx):
    w = dealer(ctx, broker.worker_url)
    w.send_multipart([b"", S.MDPW, S.W_READY, b"echo"])
    broker.wait_workers("echo", 1)
    before = broker.counters().get("malformed", {}).get("unknown_client", 0)
    w.send_multipart([b"", S.MDPW, S.W_REPLY, b"ghost", b"", b"x"])
    time.sleep(0.2)
    assert broker.counters().get("malformed", {}).get("unknown_client", 0) > before
    w.close(0)


def test_oversized_request(start_broker, ctx, workers):
    b = start_broker(S.F_MAX_MESSAGE, 1024)
    start_worker(workers, MdpWorker, ctx, b.worker_url, "e0", service="echo")
    b.wait_workers("echo", 1)
    c = MdpClient(ctx, b)
    assert c.request("echo", b"x" * 2048, timeout=1) is None, "an oversized request is dropped"
    assert b.counters().get("malformed", {}).get("oversized", 0) >= 1
    assert c.request("echo", b"small") == [S.MDPC, b"echo", b"e0:small"]
