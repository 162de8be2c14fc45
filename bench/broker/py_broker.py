#!/usr/bin/python3
"""A least-recently-used broker in the seed's Python style: the benchmark peer for roomcast.

The seed (../shared/seeds/zeromq-lru-broker.txt) describes the ZeroMQ guide's load-balancing
broker: a ROUTER frontend for REQ clients, a ROUTER backend for REQ workers that announce
themselves with READY, and a list of idle workers used least-recently-used first. This is that
design written for this repository (not copied): one thread, one zmq.Poller, the frontend
polled only while a worker is idle, so waiting requests queue inside ZeroMQ.

It prints the same startup line as roomcast so tests and the benchmark can point at either:

    roomcast: broker workers tcp://127.0.0.1:P clients tcp://127.0.0.1:P

    /usr/bin/python3 bench/broker/py_broker.py --worker-port 0 --client-port 0
"""

import argparse
import collections
import signal
import sys

import zmq

READY = b"READY"


def bind(sock, host, port):
    if port == 0:
        return sock.bind_to_random_port(f"tcp://{host}")
    sock.bind(f"tcp://{host}:{port}")
    return port


def serve(host, worker_port, client_port, stats=False):
    ctx = zmq.Context()
    frontend = ctx.socket(zmq.ROUTER)
    backend = ctx.socket(zmq.ROUTER)
    for s in (frontend, backend):
        s.setsockopt(zmq.LINGER, 0)
    backend.setsockopt(zmq.ROUTER_HANDOVER, 1)    # a restarted worker may reuse its identity
    wp = bind(backend, host, worker_port)
    cp = bind(frontend, host, client_port)
    print(f"roomcast: broker workers tcp://{host}:{wp} clients tcp://{host}:{cp}",
          file=sys.stderr, flush=True)

    idle = collections.deque()          # worker identities, least recently used on the left
    idle_set = set()
    served = 0
    poll_both = zmq.Poller()
    poll_both.register(backend, zmq.POLLIN)
    poll_both.register(frontend, zmq.POLLIN)
    poll_workers = zmq.Poller()
    poll_workers.register(backend, zmq.POLLIN)

    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    signal.signal(signal.SIGINT, lambda *_: running.__setitem__(0, False))
    while running[0]:
        poller = poll_both if idle else poll_workers
        try:
            events = dict(poller.poll(200))
        except zmq.ZMQError:
            continue
        if events.get(backend) == zmq.POLLIN:
            frames = backend.recv_multipart()
            # [worker][""][READY]  or  [worker][""][client][""][reply]
            if len(frames) >= 3 and frames[1] == b"":
                worker = frames[0]
                if worker not in idle_set:
                    idle.append(worker)
                    idle_set.add(worker)
                if len(frames) == 5 and frames[3] == b"":
                    frontend.send_multipart([frames[2], b"", frames[4]])
                    served += 1
        if idle and events.get(frontend) == zmq.POLLIN:
            frames = frontend.recv_multipart()
            # [client][""][request]
            if len(frames) == 3 and frames[1] == b"":
                worker = idle.popleft()
                idle_set.discard(worker)
                backend.send_multipart([worker, b"", frames[0], b"", frames[2]])
    if stats:
        print(f"py_broker: {served} replies routed", file=sys.stderr)
    frontend.close()
    backend.close()
    ctx.term()


def main(argv=None):
    ap = argparse.ArgumentParser(description="The seed-style Python LRU broker (benchmark peer).")
    ap.add_argument("--bind", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--worker-port", type=int, default=5556, help="REQ workers connect here (0: any)")
    ap.add_argument("--client-port", type=int, default=5555, help="REQ clients connect here (0: any)")
    ap.add_argument("--stats", action="store_true", help="print the reply count at exit")
    a = ap.parse_args(argv)
    serve(a.bind, a.worker_port, a.client_port, a.stats)


if __name__ == "__main__":
    main()
