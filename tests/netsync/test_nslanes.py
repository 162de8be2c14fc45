"""Protocol-8 socket side: the pose ROUTER and its lane discipline, discovery formats, and the
answer to clients of unsupported versions (docs/netsync.md "Protocol 8").

What a client can observe of the socket side: the pose port accepts connections, v0.6
traffic there is counted (wrong_lane) and ignored, and a v0.8-v0.15 client gets one
DEVICE_ID_MAPPING carrying version 0.16.3 on its DEALER. Protocol 8 itself: test_netsync8.py.
"""

import json
import socket
import struct
import time
import urllib.request

import pytest
import zmq

from conftest import NSServer, str8, transform

NOTICE = bytes([6, 0, 16, 3, 0, 0])       # DEVICE_ID_MAPPING 0.16.3, no devices


def metrics(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("roomcast_netsync_"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def wait_metrics(server, pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        m = metrics(server)
        if pred(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.05)


def dropped(m, reason):
    return m.get(f'roomcast_netsync_dropped_total{{reason="{reason}"}}', 0)


def unsupported(m, version):
    return m.get(f'roomcast_netsync_unsupported_messages_total{{version="{version}"}}', 0)


def rooms(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/api/netsync/rooms",
                                timeout=5) as r:
        return [x["roomId"] for x in json.loads(r.read())["rooms"]]


@pytest.fixture(scope="module")
def srv():
    s = NSServer("--netsync-client-timeout", 10)
    yield s
    err = s.stderr()
    rc = s.stop()
    assert rc == 0, f"roomcast exited with {rc}:\n{err[-5000:]}"


def dealer(ctx, port):
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    d.connect(f"tcp://127.0.0.1:{port}")
    return d


def hello(version, device, flags=0):
    return bytes([19, version, flags]) + str8(device)


def test_pose_port_in_startup_line(srv):
    assert srv.pose_port and srv.pose_port not in (srv.router_port, srv.pub_port, srv.disc_port)


def test_pose_port_accepts_and_v06_is_wrong_lane(ctx, srv):
    before = metrics(srv)
    d = dealer(ctx, srv.pose_port)
    try:
        m = wait_metrics(srv, lambda m: m.get('roomcast_netsync_connections{socket="pose"}', 0)
                         >= 1)
        assert m.get('roomcast_netsync_connections{socket="pose"}', 0) >= 1
        for _ in range(3):
            d.send_multipart([b"lane-room", transform("lane-dev")])
        m = wait_metrics(srv, lambda m: dropped(m, "wrong_lane") >= dropped(before, "wrong_lane")
                         + 3)
        assert dropped(m, "wrong_lane") == dropped(before, "wrong_lane") + 3
        assert m["roomcast_netsync_pose_messages_received_total"] >= \
            before["roomcast_netsync_pose_messages_received_total"] + 3
        assert "lane-room" not in rooms(srv)                    # ignored: no room, no join
        assert m["roomcast_netsync_joins_total"] == before["roomcast_netsync_joins_total"]
    finally:
        d.close(0)


def test_v06_on_control_lane_still_joins(ctx, srv):
    d = dealer(ctx, srv.router_port)
    try:
        d.send_multipart([b"ctl-room", transform("ctl-dev")])
        deadline = time.monotonic() + 3
        while "ctl-room" not in rooms(srv) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "ctl-room" in rooms(srv)
    finally:
        d.close(0)


@pytest.mark.parametrize("payload,version", [
    (hello(7, "dev-v15"), 7),                                  # v0.15: HELLO version 7
    (bytes([11, 5]) + str8("dev-v12") + bytes(30), 5),          # v0.12: CLIENT_POSE version 5
])
def test_unsupported_version_gets_mapping(ctx, srv, payload, version):
    before = metrics(srv)
    d = dealer(ctx, srv.router_port)
    try:
        for _ in range(5):                                      # rate-limited: one answer
            d.send_multipart([b"old-room", payload])
        assert d.poll(3000), "no answer to an unsupported client"
        assert d.recv_multipart() == [b"old-room", NOTICE]
        assert not d.poll(500), "more than one answer within the rate limit"
        m = wait_metrics(srv, lambda m: unsupported(m, version) >= unsupported(before, version)
                         + 5)
        assert unsupported(m, version) == unsupported(before, version) + 5
        assert m["roomcast_netsync_version_replies_total"] == \
            before["roomcast_netsync_version_replies_total"] + 1
        assert m["roomcast_netsync_unicast_sent_total"] >= \
            before["roomcast_netsync_unicast_sent_total"] + 1
        assert "old-room" not in rooms(srv)
    finally:
        d.close(0)


def test_unsupported_on_pose_lane_counted_not_answered(ctx, srv):
    before = metrics(srv)
    d = dealer(ctx, srv.pose_port)
    try:
        d.send_multipart([b"old-room", bytes([11, 7]) + str8("dev-v15") + bytes(30)])
        m = wait_metrics(srv, lambda m: unsupported(m, 7) >= unsupported(before, 7) + 1)
        assert unsupported(m, 7) == unsupported(before, 7) + 1
        assert not d.poll(300)
    finally:
        d.close(0)


# ---- discovery ------------------------------------------------------------------------------

def udp_replies(server, n=3):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(2)
    try:
        u.sendto(b"STYLY-NETSYNC-DISCOVER", ("127.0.0.1", server.disc_port))
        return [u.recvfrom(1024)[0].decode() for _ in range(n)]
    finally:
        u.close()


def tcp_reply(server):
    s = socket.create_connection(("127.0.0.1", server.disc_port), timeout=3)
    try:
        s.sendall(b"STYLY-NETSYNC-DISCOVER")
        out = b""
        while True:
            b = s.recv(1024)
            if not b:
                return out.decode()
            out += b
    finally:
        s.close()


def test_discovery_udp_three_formats(srv):
    name = "STYLY-NetSync-Server"
    assert udp_replies(srv) == [
        f"STYLY-NETSYNC|{srv.router_port}|{srv.pub_port}|{name}",
        f"STYLY-NETSYNC2|{srv.router_port}|{srv.pose_port}|{srv.pub_port}|{name}",
        f"STYLY-NETSYNC3|{srv.router_port}|{srv.pose_port}|{srv.pub_port}|{srv.http_port}|{name}",
    ]


def test_discovery_tcp_default_v06(srv):
    assert tcp_reply(srv) == f"STYLY-NETSYNC|{srv.router_port}|{srv.pub_port}|" \
                             "STYLY-NetSync-Server\n"


def test_discovery_tcp_v8():
    s = NSServer("--netsync-tcp-discovery", "v8")
    try:
        assert tcp_reply(s) == (f"STYLY-NETSYNC3|{s.router_port}|{s.pose_port}|{s.pub_port}|"
                                f"{s.http_port}|STYLY-NetSync-Server\n")
    finally:
        assert s.stop() == 0
