"""Workers dying mid-request, late replies, and restarts under load (docs/broker.md,
"Behaviour"). roomcast only (needs heartbeats, retries, GET /api/services)."""

import os
import signal
import threading
import time

import pytest
import zmq

import settings as S
from conftest import MdpClient, MdpWorker, start_worker, wait_until, worker_process

pytestmark = pytest.mark.roomcast_only
EXPIRY = S.TEST_HEARTBEAT * S.TEST_LIVENESS


def test_kill9_mid_request_retried_once(broker, ctx, workers):
    """kill -9 of a worker process holding a request: the broker notices (disconnect or
    heartbeat loss) and retries the request once on another worker; one reply arrives."""
    victim = worker_process(broker, "mdp", "victim", service="echo")
    try:
        broker.wait_workers("echo", 1)
        c = MdpClient(ctx, broker)
        # only the victim sleeps: the heir must answer the retry before the request's deadline
        c.sock.send_multipart([S.MDPC, b"echo", b"sleep:30:victim"])
        wait_until(lambda: any(w.get("state") == "busy"
                               for w in (broker.service("echo") or {}).get("workers", [])),
                   what="the victim to take the request")
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(5)
        start_worker(workers, MdpWorker, ctx, broker.worker_url, "heir", service="echo")
        assert c.sock.poll(int((EXPIRY + 5) * 1000)), "the request was lost with its worker"
        assert c.sock.recv_multipart() == [S.MDPC, b"echo", b"heir:sleep:30:victim"]
        # the retry is a one-off: c's next request is served normally
        assert c.request("echo", b"n") == [S.MDPC, b"echo", b"heir:n"]
    finally:
        if victim.poll() is None:
            victim.kill()


def test_retry_only_once(broker, ctx):
    """A request whose worker dies twice is failed, not retried forever (MDP client: no
    reply; the error path is visible to JSON clients as worker_lost, see test_clients)."""
    c = MdpClient(ctx, broker)
    c.sock.send_multipart([S.MDPC, b"echo", b"sleep:30"])      # held until killed
    for _ in range(2):
        p = worker_process(broker, "mdp", "victim", service="echo")
        wait_until(lambda: any(w.get("state") == "busy"
                               for w in (broker.service("echo") or {}).get("workers", [])),
                   what="a victim to take the request")
        p.kill()
        p.wait(5)
        # the broker must have noticed this victim's death before the next one comes, or the
        # next wait above could see this one still listed busy and kill the next too early
        wait_until(lambda: not (broker.service("echo") or {}).get("workers"),
                   what="the dead victim to be forgotten")
    time.sleep(EXPIRY * 2)
    svc = broker.service("echo")
    assert svc.get("queue", 0) == 0
    assert svc["retries"] == 1 and svc["failed"][S.ERR_WORKER_LOST] == 1, svc
    assert c.sock.poll(300) == 0, "no reply for a request whose two workers died"


def test_at_most_once_service_not_retried(start_broker, ctx, workers):
    b = start_broker(S.F_AT_MOST_ONCE, "once")
    victim = worker_process(b, "mdp", "victim", service="once")
    b.wait_workers("once", 1)
    c = MdpClient(ctx, b)
    c.sock.send_multipart([S.MDPC, b"once", b"sleep:30"])
    wait_until(lambda: any(w.get("state") == "busy"
                           for w in (b.service("once") or {}).get("workers", [])),
               what="the victim to take the request")
    victim.kill()
    victim.wait(5)
    heir = start_worker(workers, MdpWorker, ctx, b.worker_url, "heir", service="once")
    time.sleep(EXPIRY * 3)
    assert heir.served == [], "an at-most-once request must never run twice"


def test_late_reply_dropped_and_counted(broker, ctx, workers):
    """A worker declared dead (silent past liveness) that answers afterwards: its reply is
    dropped and counted; the client gets the retry's reply, once."""
    w = ctx.socket(zmq.DEALER)
    w.setsockopt(zmq.LINGER, 0)
    w.connect(broker.worker_url)
    w.send_multipart([b"", S.MDPW, S.W_READY, b"echo"])
    broker.wait_workers("echo", 1)
    c = MdpClient(ctx, broker)
    c.sock.send_multipart([S.MDPC, b"echo", b"job"])
    deadline = time.monotonic() + 3
    req = None
    while time.monotonic() < deadline:
        m = w.recv_multipart() if w.poll(100) else None
        if m and m[2] == S.W_REQUEST:
            req = m
            break
    assert req, "the worker never got the request"
    time.sleep(EXPIRY * 3)              # silent: declared dead
    start_worker(workers, MdpWorker, ctx, broker.worker_url, "heir", service="echo")
    assert c.sock.poll(5000) and c.sock.recv_multipart() == [S.MDPC, b"echo", b"heir:job"]
    before = broker.counters().get(S.LATE_REPLY_COUNTER, 0)
    w.send_multipart([b"", S.MDPW, S.W_REPLY, req[3], b"", b"late"])
    wait_until(lambda: broker.counters().get(S.LATE_REPLY_COUNTER, 0) > before,
               what="the late reply to be counted")
    assert c.sock.poll(300) == 0, "a late reply must never be delivered"
    w.close(0)


def _load(ctx, broker, n_clients, per_client, results, stop_at):
    def one(i):
        c = MdpClient(ctx, broker)
        for j in range(per_client):
            body = b"c%d-%d" % (i, j)
            r = c.request(S.DEFAULT_SERVICE, body, timeout=S.TEST_REQUEST_TIMEOUT + 5)
            results.append((body, r))
        c.close()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n_clients)]
    for t in ts:
        t.start()
    return ts


def _assert_all_answered(results, expected):
    lost = [b for b, r in results if r is None or not r[-1].endswith(b":" + b)]
    assert len(results) == expected and not lost, \
        f"{len(lost)} of {expected} requests lost or misrouted during the restart: {lost[:10]}"


def test_rolling_restart_under_load(broker, ctx, workers):
    """Restart every worker one by one while clients keep sending: no request is lost."""
    procs = [worker_process(broker, "ppp", f"g0-{i}") for i in range(3)]
    broker.wait_workers(S.DEFAULT_SERVICE, 3)
    results = []
    ts = _load(ctx, broker, 4, 50, results, None)
    try:
        for gen in (1, 2):
            for i in range(3):
                procs[i].terminate()
                procs[i].wait(5)
                procs[i] = worker_process(broker, "ppp", f"g{gen}-{i}")
                time.sleep(0.2)
        for t in ts:
            t.join(60)
    finally:
        for p in procs:
            p.kill()
    _assert_all_answered(results, 200)


def test_full_restart_within_timeout(broker, ctx):
    """Kill every worker at once (kill -9), start new ones within --request-timeout: every
    request sent meanwhile is served."""
    procs = [worker_process(broker, "ppp", f"old-{i}") for i in range(3)]
    broker.wait_workers(S.DEFAULT_SERVICE, 3)
    results = []
    ts = _load(ctx, broker, 4, 30, results, None)
    time.sleep(0.3)
    for p in procs:
        p.kill()
    for p in procs:
        p.wait(5)
    time.sleep(min(1.0, S.TEST_REQUEST_TIMEOUT / 3))
    procs = [worker_process(broker, "ppp", f"new-{i}") for i in range(3)]
    try:
        for t in ts:
            t.join(60)
    finally:
        for p in procs:
            p.kill()
    _assert_all_answered(results, 120)


def test_queue_bound_and_timeout(start_broker, ctx):
    """No worker: requests wait up to --request-timeout, at most --service-queue of them;
    beyond, refused at once (JSON clients see overloaded/timeout, test_clients)."""
    b = start_broker(S.F_SERVICE_QUEUE, 2, S.F_REQUEST_TIMEOUT, 1)
    cs = [MdpClient(ctx, b) for _ in range(3)]
    for c in cs:
        c.sock.send_multipart([S.MDPC, b"echo", b"x"])
    time.sleep(0.3)
    svc = b.service("echo")
    assert svc and svc.get("queue") == 2, f"queue depth must be bounded at 2: {svc}"
    time.sleep(1.5)
    assert (b.service("echo") or {}).get("queue", 0) == 0, "waiting requests must expire"
