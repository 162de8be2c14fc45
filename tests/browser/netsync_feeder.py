"""NetSync clients for the browser test of web/netsync.html: two headsets walking circles and a
stealth operator camera in one room, sending CLIENT_TRANSFORM at 20 Hz through pyzmq like the
Unity client, until stdin closes. Prints "ready" once sending.

    /usr/bin/python3 tests/browser/netsync_feeder.py ROUTER_PORT ROOM
"""
import math
import struct
import sys
import threading
import time

import zmq


def str8(s):
    b = s.encode()
    return bytes([len(b)]) + b


def transform(device, pos, yaw):
    """Head at pos facing yaw (degrees, Unity: 0 = +z, 90 = +x), hands ahead to each side."""
    x, z = pos
    fx, fz = math.sin(math.radians(yaw)), math.cos(math.radians(yaw))   # forward
    rx, rz = fz, -fx                                                    # right

    def t(side, ahead):
        return (x + side * rx + ahead * fx, 1.6, z + side * rz + ahead * fz, 0.0, yaw, 0.0)
    floats = (*t(0, 0), *t(0, 0), *t(0.3, 0.25), *t(-0.3, 0.25))
    return b"\x01" + str8(device) + struct.pack("<24f", *floats) + b"\x00"


def stealth(device):
    return b"\x01" + str8(device) + struct.pack("<24f", *([math.nan] * 24)) + b"\x00"


def main():
    port, room = int(sys.argv[1]), sys.argv[2].encode()
    ctx = zmq.Context()
    socks = {}
    for dev in ("headset-1", "headset-2", "operator-cam"):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(f"tcp://127.0.0.1:{port}")
        socks[dev] = s
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    # The view lists headsets in join order, which the test checks: each DEALER has its own
    # TCP connection, so without a head start either could reach the ROUTER first.
    socks["headset-1"].send_multipart([room, transform("headset-1", (2.5, 0.0), 0.0)])
    time.sleep(0.3)
    t0 = time.monotonic()
    print("ready", flush=True)
    while not done.is_set():
        t = time.monotonic() - t0
        for i, dev in enumerate(("headset-1", "headset-2")):
            a = t * 0.5 + i * math.pi
            pos = (2.5 * math.cos(a), 2.5 * math.sin(a))
            socks[dev].send_multipart([room, transform(dev, pos, math.degrees(-a))])
        socks["operator-cam"].send_multipart([room, stealth("operator-cam")])
        time.sleep(0.05)
    ctx.destroy(linger=0)


if __name__ == "__main__":
    main()
