"""The seed's LRU queue on the worker port: REQ workers send READY, get [client][""][request],
answer [client][""][reply]; REQ clients on the client port (docs/broker.md, "The seed's LRU
queue"). These tests also run against the Python peer (BROKER_UNDER_TEST=python)."""

import subprocess
import threading
import time

import settings as S
from conftest import (PYTHON, LruWorker, req_client, start_worker, wait_until)
from seedlru import extract_seed_lru

DRIVER = """
# --- driver (tests/broker/test_lru.py): only the addresses differ from the seed's main() ---
import os, sys, threading, zmq
worker_url, client_url = sys.argv[1], sys.argv[2]
nbr_workers, nbr_clients = int(sys.argv[3]), int(sys.argv[4])
context = zmq.Context()
for i in range(nbr_workers):
    threading.Thread(target=worker_thread, args=(worker_url, context, i), daemon=True).start()
clients = [threading.Thread(target=client_thread, args=(client_url, context, i))
           for i in range(nbr_clients)]
for t in clients:
    t.start()
for t in clients:
    t.join()
sys.stdout.flush()
os._exit(0)
"""


def test_seed_worker_and_client_unchanged(broker, tmp_path):
    """The seed's own worker_thread and client_thread, extracted from the seed text and
    repaired at test time, work against the broker with only the addresses changed: every
    client gets OK, and the requests are spread over the seed's workers."""
    code = extract_seed_lru() + DRIVER
    script = tmp_path / "seed_lru.py"
    script.write_text(code)
    nw, nc = 3, 10
    p = subprocess.run([PYTHON, str(script), broker.worker_url, broker.client_url, str(nw),
                        str(nc)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, f"the seed's code failed against the broker:\n{p.stderr}"
    lines = [ln for ln in p.stdout.splitlines() if ln]
    replies = sorted(ln for ln in lines if ln.startswith("client-"))
    assert replies == sorted(f"client-{i}:OK" for i in range(nc)), \
        f"each seed client must print client-N:OK once; stdout:\n{p.stdout}"
    served = [ln for ln in lines if ln.startswith("worker-")]
    assert len(served) == nc and all(ln.endswith(":HELLO") for ln in served), p.stdout
    assert len({ln.split(":")[0] for ln in served}) > 1, \
        f"10 requests over 3 idle workers must not all go to one worker:\n{p.stdout}"


def test_reply_routed_to_its_client(broker, ctx, workers):
    start_worker(workers, LruWorker, ctx, broker.worker_url, "w0")
    broker.wait_workers(S.DEFAULT_SERVICE, 1)
    for i in range(5):
        body = f"req-{i}".encode()
        assert req_client(ctx, broker, body) == b"w0:" + body


def test_lru_order_across_workers(broker, ctx, workers):
    """Workers that became idle first are used first: with w0, w1, w2 announcing in that
    order, sequential requests go w0, w1, w2, w0, w1, w2 (each worker re-queues at the tail
    when it replies)."""
    for i in range(3):
        start_worker(workers, LruWorker, ctx, broker.worker_url, f"w{i}")
        broker.wait_workers(S.DEFAULT_SERVICE, i + 1)
    got = [req_client(ctx, broker, b"x").split(b":")[0] for _ in range(6)]
    assert got == [b"w0", b"w1", b"w2", b"w0", b"w1", b"w2"], \
        f"least-recently-used order expected, got {got}"


def test_one_request_in_flight_per_worker(broker, ctx, workers):
    """A busy worker gets nothing until it answers: with one worker sleeping on a request,
    a second request waits (it is not pushed to the busy worker's socket) and is served by a
    worker that arrives later."""
    w0 = start_worker(workers, LruWorker, ctx, broker.worker_url, "w0")
    broker.wait_workers(S.DEFAULT_SERVICE, 1)
    results = {}
    t = threading.Thread(target=lambda: results.setdefault("a", req_client(ctx, broker,
                                                                           b"sleep:1.5")))
    t.start()
    wait_until(lambda: w0.received, what="w0 to receive the slow request")
    t2 = threading.Thread(target=lambda: results.setdefault("b", req_client(ctx, broker, b"b")))
    t2.start()
    time.sleep(0.2)
    start_worker(workers, LruWorker, ctx, broker.worker_url, "w1")
    t2.join(5)
    assert results.get("b") == b"w1:b", \
        f"the second request must wait for an idle worker (w1), got {results.get('b')!r}"
    t.join(5)
    assert results.get("a") == b"w0:sleep:1.5"
    assert len(w0.received) == 1, f"w0 got a request while busy: {w0.received}"


def test_requests_wait_for_a_worker(broker, ctx, workers):
    """Zero downtime, the seed's promise: requests sent while no worker exists are served
    when one announces itself (within --request-timeout)."""
    out = []
    ts = [threading.Thread(target=lambda i=i: out.append(req_client(ctx, broker, b"q%d" % i)))
          for i in range(5)]
    for t in ts:
        t.start()
    time.sleep(0.5)
    start_worker(workers, LruWorker, ctx, broker.worker_url, "late")
    for t in ts:
        t.join(10)
    assert sorted(out) == sorted(b"late:q%d" % i for i in range(5)), out


def test_restarted_worker_same_identity(broker, ctx, workers):
    """A worker restarted with the same ZeroMQ identity (the seed's workers are named
    worker-N) takes over: decision, the worker port sets ZMQ_ROUTER_HANDOVER."""
    w = start_worker(workers, LruWorker, ctx, broker.worker_url, "a", identity=b"worker-0")
    broker.wait_workers(S.DEFAULT_SERVICE, 1)
    assert req_client(ctx, broker, b"1") == b"a:1"
    w.stop()
    workers.remove(w)
    start_worker(workers, LruWorker, ctx, broker.worker_url, "b", identity=b"worker-0")
    time.sleep(0.3)
    assert req_client(ctx, broker, b"2") == b"b:2", "the restarted worker must be served"
