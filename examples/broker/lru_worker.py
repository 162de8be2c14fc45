#!/usr/bin/python3
"""A worker for the seed's LRU protocol (REQ socket): announces READY, then answers each
[client][""][request] with [client][""][reply]. See docs/broker.md.

    /usr/bin/python3 examples/broker/lru_worker.py --broker tcp://127.0.0.1:5560
"""

import argparse
import zmq


def main():
    ap = argparse.ArgumentParser(description="seed-protocol (REQ) echo worker for roomcast's broker")
    ap.add_argument("--broker", default="tcp://127.0.0.1:5560", help="roomcast's worker port")
    ap.add_argument("--name", default="lru", help="prefix of every reply")
    a = ap.parse_args()
    sock = zmq.Context().socket(zmq.REQ)
    sock.connect(a.broker)
    sock.send(b"READY")
    while True:
        client, empty, request = sock.recv_multipart()
        sock.send_multipart([client, empty, a.name.encode() + b":" + request])


if __name__ == "__main__":
    main()
