#!/usr/bin/python3
"""A Paranoid Pirate worker (ZeroMQ RFC 6) for roomcast's broker: DEALER, READY 0x01,
HEARTBEAT 0x02 both ways; when the broker is silent for LIVENESS intervals it reconnects on a
new socket with an exponential back-off (1 s doubling to 32 s) and sends READY again.

    /usr/bin/python3 examples/broker/ppp_worker.py --broker tcp://127.0.0.1:5560
"""

import argparse
import time

import zmq

READY, HEARTBEAT = b"\x01", b"\x02"


def connect(ctx, url):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(url)
    s.send(READY)
    return s


def main():
    ap = argparse.ArgumentParser(description="Paranoid Pirate echo worker for roomcast's broker")
    ap.add_argument("--broker", default="tcp://127.0.0.1:5560")
    ap.add_argument("--heartbeat", type=float, default=2.5, help="seconds (match --broker-heartbeat)")
    ap.add_argument("--liveness", type=int, default=3)
    ap.add_argument("--name", default="ppp")
    a = ap.parse_args()
    ctx = zmq.Context()
    sock = connect(ctx, a.broker)
    liveness, backoff = a.liveness, 1.0
    next_hb = time.monotonic() + a.heartbeat
    while True:
        if sock.poll(int(a.heartbeat * 1000)):
            frames = sock.recv_multipart()
            liveness, backoff = a.liveness, 1.0
            if len(frames) >= 3 and b"" in frames:        # [address…][""][request…]
                i = frames.index(b"")
                reply = a.name.encode() + b":" + b"".join(frames[i + 1:])
                sock.send_multipart(frames[:i + 1] + [reply])
            # a one-part HEARTBEAT needs no action: any message proves the broker alive
        else:
            liveness -= 1
            if liveness == 0:
                print(f"ppp_worker: broker silent, reconnecting in {backoff:.0f} s")
                time.sleep(backoff)
                backoff = min(backoff * 2, 32.0)
                sock.close()
                sock = connect(ctx, a.broker)
                liveness = a.liveness
        if time.monotonic() >= next_hb:
            sock.send(HEARTBEAT)
            next_hb = time.monotonic() + a.heartbeat


if __name__ == "__main__":
    main()
