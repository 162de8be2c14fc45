#!/usr/bin/python3
"""An MDP/0.1 client for roomcast's broker: sends one request per BODY argument to SERVICE and
prints the replies. `--service mmi.service NAME` asks whether NAME has a worker (200/404).

    /usr/bin/python3 examples/broker/mdp_client.py --broker tcp://127.0.0.1:5559 --service echo hello
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mdp import Client  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="MDP/0.1 client for roomcast's broker")
    ap.add_argument("--broker", default="tcp://127.0.0.1:5559", help="roomcast's client port")
    ap.add_argument("--service", default="echo")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("body", nargs="*", default=["hello"])
    a = ap.parse_args()
    c = Client(a.broker)
    for b in a.body:
        r = c.request(a.service, b.encode(), timeout=a.timeout)
        print("(no reply)" if r is None else b" ".join(r).decode(errors="replace"))


if __name__ == "__main__":
    main()
