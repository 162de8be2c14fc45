#!/usr/bin/python3
"""A Majordomo MDP/0.1 worker for roomcast's broker serving one named service (echo, or
upper-casing with --upper).

    /usr/bin/python3 examples/broker/mdp_worker.py --broker tcp://127.0.0.1:5560 --service echo
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mdp import Worker  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="MDP/0.1 worker for roomcast's broker")
    ap.add_argument("--broker", default="tcp://127.0.0.1:5560")
    ap.add_argument("--service", default="echo")
    ap.add_argument("--upper", action="store_true", help="reply upper-cased")
    ap.add_argument("--heartbeat", type=float, default=2.5, help="seconds (match --broker-heartbeat)")
    a = ap.parse_args()
    handler = (lambda body: [b.upper() for b in body]) if a.upper else (lambda body: body)
    Worker(a.broker, a.service, handler, heartbeat=a.heartbeat).run()


if __name__ == "__main__":
    main()
