"""A small Majordomo MDP/0.1 (ZeroMQ RFC 7) worker and client for the examples.

``Worker(url, service, handler)``: DEALER; READY with the service name; answers REQUESTs with
``handler(body_frames) -> reply_frames``; heartbeats both ways; on DISCONNECT or a silent
broker it reconnects on a new socket and sends READY again.
``Client(url).request(service, *frames, timeout=...)``: REQ; returns the reply's body frames or
None (after a timeout the socket is replaced, as RFC 7 recommends).
"""

import time

import zmq

MDPC, MDPW = b"MDPC01", b"MDPW01"
READY, REQUEST, REPLY, HEARTBEAT, DISCONNECT = b"\x01", b"\x02", b"\x03", b"\x04", b"\x05"


class Worker:
    def __init__(self, url, service, handler, heartbeat=2.5, liveness=3, reconnect=2.5):
        self.ctx = zmq.Context.instance()
        self.url, self.service, self.handler = url, service.encode(), handler
        self.heartbeat, self.liveness, self.reconnect = heartbeat, liveness, reconnect
        self.sock = None

    def _send(self, cmd, *parts):
        self.sock.send_multipart([b"", MDPW, cmd, *parts])

    def _connect(self):
        if self.sock is not None:
            self.sock.close(0)
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.url)
        self._send(READY, self.service)

    def run(self):
        self._connect()
        live, next_hb = self.liveness, time.monotonic() + self.heartbeat
        while True:
            if self.sock.poll(int(self.heartbeat * 1000)):
                f = self.sock.recv_multipart()
                live = self.liveness
                if len(f) < 3 or f[0] != b"" or f[1] != MDPW:
                    continue                                # not MDP/0.1: ignore
                if f[2] == REQUEST and len(f) >= 6:
                    self._send(REPLY, f[3], b"", *self.handler(f[5:]))
                elif f[2] == DISCONNECT:
                    self._connect()
            else:
                live -= 1
                if live == 0:
                    time.sleep(self.reconnect)
                    self._connect()
                    live = self.liveness
            if time.monotonic() >= next_hb:
                self._send(HEARTBEAT)
                next_hb = time.monotonic() + self.heartbeat


class Client:
    def __init__(self, url):
        self.ctx = zmq.Context.instance()
        self.url = url
        self.sock = None
        self._open()

    def _open(self):
        if self.sock is not None:
            self.sock.close(0)
        self.sock = self.ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.url)

    def request(self, service, *frames, timeout=5.0):
        self.sock.send_multipart([MDPC, service.encode(), *frames])
        if not self.sock.poll(int(timeout * 1000)):
            self._open()
            return None
        reply = self.sock.recv_multipart()
        assert reply[:2] == [MDPC, service.encode()], reply
        return reply[2:]
