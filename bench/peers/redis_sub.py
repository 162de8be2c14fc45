#!/usr/bin/env python3
"""redis_sub.py — a subscriber that reads and discards, for bench/cluster.sh's bare PUBLISH.

A bare PUBLISH is measured with as many subscribers on its channel as a roomcast message has
(one per node), because Redis's cost per PUBLISH grows with the subscribers it writes to. This
one speaks just enough RESP to SUBSCRIBE and then reads whatever comes, as fast as it comes, so
Redis never queues output for it: roughly what a node's subscriber connection does.

    python3 bench/peers/redis_sub.py PORT CHANNEL     (stops on SIGTERM)
"""
import socket
import sys

port, channel = int(sys.argv[1]), sys.argv[2].encode()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel))
first = s.recv(4096)
if b"subscribe" not in first:
    sys.exit("redis_sub: SUBSCRIBE refused: %r" % first[:80])
print("redis_sub: subscribed", flush=True)
buf = bytearray(1 << 20)
while s.recv_into(buf):
    pass
