#!/usr/bin/python3
"""One test worker in its own process, so a test can kill -9 it mid-request.

    workerproc.py --url tcp://127.0.0.1:P --protocol lru|ppp|mdp --name NAME [--service S]

It runs conftest's worker class for the protocol (reply: NAME:request; b"sleep:S" sleeps).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import zmq  # noqa: E402

from conftest import LruWorker, MdpWorker, PppWorker  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--protocol", choices=("lru", "ppp", "mdp"), required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--service", default="echo")
    ap.add_argument("--heartbeat", type=float, default=0.1)
    a = ap.parse_args()
    ctx = zmq.Context()
    if a.protocol == "lru":
        w = LruWorker(ctx, a.url, a.name, heartbeat=a.heartbeat)
    elif a.protocol == "ppp":
        w = PppWorker(ctx, a.url, a.name, heartbeat=a.heartbeat)
    else:
        w = MdpWorker(ctx, a.url, a.name, service=a.service, heartbeat=a.heartbeat)
    w.start()
    while w.is_alive():
        time.sleep(0.2)


if __name__ == "__main__":
    main()
