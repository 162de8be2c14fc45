"""Protocol-8 NetSync clients for the browser test of web/netsync.html: two headsets walking
circles (HELLO on the control lane, CLIENT_POSE bodies at 20 Hz on the pose lane, like the
Unity client of NetSync 0.16), a stealth operator camera, and an object owned by headset-1
that circles the room centre, until stdin closes. Prints "ready" once sending.

    /usr/bin/python3 tests/browser/netsync8_feeder.py CONTROL_PORT POSE_PORT ROOM

Uses tests/netsync/ns8client.py (the v8 test client written from the spec); the poses here
have real positions and rotations (the client's make_body fills arbitrary bytes).
"""
import math
import os
import struct
import sys
import threading
import time
from types import SimpleNamespace

import zmq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "netsync"))
import ns8client as n8  # noqa: E402


def pack_q(q):
    """Smallest-three packing of a unit quaternion (x, y, z, w) (spec §2)."""
    big = max(range(4), key=lambda i: abs(q[i]))
    if q[big] < 0:
        q = [-c for c in q]
    packed, shift = big << 30, 20
    for i in range(4):
        if i != big:
            packed |= max(0, min(1023, round((q[i] + 0.70710677) / 1.41421354 * 1023))) << shift
            shift -= 10
    return packed


def yaw_q(deg):
    """Rotation of deg degrees about +y (Unity: 0 = facing +z, 90 = facing +x)."""
    h = math.radians(deg) / 2
    return pack_q([0.0, math.sin(h), 0.0, math.cos(h)])


def i24(v):
    return struct.pack("<i", max(-8388607, min(8388607, v)))[:3]


def body(seq, pos, yaw):
    """Head at pos (x, z metres, 1.6 m high) facing yaw; hands 0.3 m to each side, 0.25 m
    ahead (head-relative positions in world axes, 0.005 m units; §3.3)."""
    x, z = pos
    fx, fz = math.sin(math.radians(yaw)), math.cos(math.radians(yaw))   # forward
    rx, rz = fz, -fx                                                    # right
    flags = n8.F_HEAD | n8.F_RIGHT | n8.F_LEFT
    out = struct.pack("<HBB", seq & 0xFFFF, flags, n8.ENC_DEFAULT)
    out += i24(round(x * 100)) + i24(160) + i24(round(z * 100)) + struct.pack("<I", yaw_q(yaw))
    for side in (1, -1):
        dx, dz = side * 0.3 * rx + 0.25 * fx, side * 0.3 * rz + 0.25 * fz
        out += struct.pack("<3hI", round(dx / 0.005), -60, round(dz / 0.005), yaw_q(0))
    return out + b"\x00"


def obj_body(pos, yaw):
    x, z = pos
    return i24(round(x * 100)) + i24(100) + i24(round(z * 100)) + struct.pack("<I", yaw_q(yaw))


def main():
    ctl, pose_port, room = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    server = SimpleNamespace(router_port=ctl, pose_port=pose_port, pub_port=None)
    ctx = zmq.Context()
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    # The view lists headsets in number order, which the test checks: headset-1 says hello
    # (and so gets number 1) before headset-2 does.
    h1 = n8.Client8(ctx, server, room, "v8-headset-1", sub=False)
    time.sleep(0.3)
    h2 = n8.Client8(ctx, server, room, "v8-headset-2", sub=False)
    cam = n8.Client8(ctx, server, room, "v8-operator-cam", sub=False, stealth=True)
    t0, seq = time.monotonic(), 0
    print("ready", flush=True)
    while not done.is_set():
        t = time.monotonic() - t0
        seq += 1
        for i, c in enumerate((h1, h2)):
            a = t * 0.5 + i * math.pi
            c.pose(body(seq, (2.5 * math.cos(a), 2.5 * math.sin(a)), math.degrees(-a)))
        cam.pose(n8.STEALTH_POSE_BODY)
        if seq % 2 == 0:   # 10 Hz, like NetSync's object sync
            b = t * 0.3
            h1.obj_pose(7001, seq & 0xFFFF, obj_body((1.2 * math.cos(b), 1.2 * math.sin(b)),
                                                    math.degrees(b)))
        time.sleep(0.05)
    for c in (h1, h2, cam):
        c.close()
    ctx.destroy(linger=0)


if __name__ == "__main__":
    main()
