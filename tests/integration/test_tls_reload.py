"""Certificate reload under load (docs/tls.md, "Reloading the certificate"): WebSocket and raw
TCP clients keep publishing into one room over TLS and reading everything while the
certificate files are replaced and SIGHUP is sent several times, one of them with a key that
does not match its certificate.

Checked: no connection drops; every client receives every message of every publisher, in
order, with consecutive msg_ids; after each good reload a new connection to each TLS listener
sees the new certificate (serial and subject), after the bad one still the previous one, and
the log says why it was refused.
"""

import asyncio
import json
import os
import re
import signal
import time

from conftest import IO_TIMEOUT, http_exchange, run, ws_connect
from tlspki import client_ctx, make_ca, make_server_cert, peer_subject_cn

TLS_RE = re.compile(r"roomcast: tls listening on https://127\.0\.0\.1:(\d+)/")
TCP_TLS_RE = re.compile(r"roomcast: tcp tls listening on 127\.0\.0\.1:(\d+)\n")
ROOM = "reload-load"


def metric(srv, name):
    status, _h, body = http_exchange(
        srv.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200
    m = re.search(r"^" + re.escape(name) + r" (\d+)$", body.decode(), re.M)
    assert m, f"{name} not in /metrics"
    return int(m.group(1))


def install(src_cert, src_key, cert, key):
    """Replace the served files the way an operator's tool does: new file, then rename."""
    for src, dst in ((src_key, key), (src_cert, cert)):
        with open(src, "rb") as f:
            data = f.read()
        with open(dst + ".new", "wb") as f:
            f.write(data)
        os.replace(dst + ".new", dst)


class Member:
    """One client in the room: publishes numbered messages, checks what it receives."""

    def __init__(self, name, kind):
        self.name, self.kind = name, kind
        self.last = {}          # publisher -> last n received
        self.last_msg_id = None
        self.received = 0
        self.finals = set()     # publishers whose final message arrived
        self.sent = 0
        self.closed = None      # why the connection ended, if it did

    def check(self, m):
        assert m.get("type") in ("p", "final"), (self.name, m)
        if self.last_msg_id is not None:
            assert m["msg_id"] == self.last_msg_id + 1, (self.name, self.last_msg_id, m)
        self.last_msg_id = m["msg_id"]
        src = m["src"]
        assert m["n"] == self.last.get(src, -1) + 1, (self.name, src, self.last.get(src), m)
        self.last[src] = m["n"]
        self.received += 1
        if m["type"] == "final":
            self.finals.add(src)


async def ws_member(name, url, ctx):
    mb = Member(name, "ws")
    ws = await ws_connect(url, ssl=ctx)
    await ws.send(json.dumps({"type": "join", "room": ROOM}))
    j = json.loads(await asyncio.wait_for(ws.recv(), IO_TIMEOUT))
    assert j["type"] == "joined", j
    mb.send = ws.send
    mb.recv = ws.recv
    mb.close = ws.close
    return mb


async def tcp_member(name, port, ctx):
    mb = Member(name, "tcp")
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                   server_hostname="127.0.0.1",
                                                   limit=1 << 20)
    writer.write(json.dumps({"type": "join", "room": ROOM}).encode() + b"\n")
    j = json.loads(await asyncio.wait_for(reader.readline(), IO_TIMEOUT))
    assert j["type"] == "joined", j

    async def send(text):
        writer.write(text.encode() + b"\n")
        await writer.drain()

    async def recv():
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("EOF")
            if line != b'{"type":"keepalive"}\n':
                return line

    async def close():
        writer.close()

    mb.send, mb.recv, mb.close = send, recv, close
    return mb


def test_reload_under_load(start_server, tmp_path):
    d = str(tmp_path)
    make_ca(d, "rca")
    certs = {}
    for i in (1, 2, 3):
        certs[i] = make_server_cert(d, "rca", f"reload-{i}", serial=1000 + i)
    ca = os.path.join(d, "rca.pem")
    cert, key = os.path.join(d, "served.pem"), os.path.join(d, "served.key")
    install(*certs[1], cert, key)
    srv = start_server("--tls-cert", cert, "--tls-key", key, "--tls-port", "0",
                       "--tcp-tls-port", "0", "--max-pending", str(64 << 20))
    wss_port = int(TLS_RE.search(srv.stderr()).group(1))
    tcps_port = int(TCP_TLS_RE.search(srv.stderr()).group(1))
    url = f"wss://127.0.0.1:{wss_port}/"

    def wait_log(text, count):
        deadline = time.monotonic() + IO_TIMEOUT
        while srv.stderr().count(text) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.stderr().count(text) >= count, srv.stderr()[-3000:]

    async def served_certs():
        """(serial, CN) that a new connection sees on each TLS listener."""
        ws = await ws_connect(url, ssl=client_ctx(ca))
        wc = ws.transport.get_extra_info("peercert")
        await ws.close()
        _r, w = await asyncio.open_connection("127.0.0.1", tcps_port, ssl=client_ctx(ca),
                                              server_hostname="127.0.0.1")
        tc = w.get_extra_info("peercert")
        w.close()
        return [(int(c["serialNumber"], 16), peer_subject_cn(c)) for c in (wc, tc)]

    async def go():
        loop = asyncio.get_running_loop()
        members = [await ws_member("w1", url, client_ctx(ca)),
                   await ws_member("w2", url, client_ctx(ca)),
                   await tcp_member("t1", tcps_port, client_ctx(ca)),
                   await tcp_member("t2", tcps_port, client_ctx(ca))]
        stop = asyncio.Event()

        async def publish(mb):
            while not stop.is_set():
                await mb.send(json.dumps({"type": "p", "src": mb.name, "n": mb.sent}))
                mb.sent += 1
                await asyncio.sleep(0.002)
            await mb.send(json.dumps({"type": "final", "src": mb.name, "n": mb.sent}))

        async def receive(mb):
            try:
                while len(mb.finals) < len(members):
                    mb.check(json.loads(await asyncio.wait_for(mb.recv(), 30)))
            except (ConnectionError, asyncio.TimeoutError) as e:
                mb.closed = repr(e)
                raise

        pubs = [asyncio.create_task(publish(mb)) for mb in members]
        recvs = [asyncio.create_task(receive(mb)) for mb in members]
        await asyncio.sleep(0.3)
        assert await served_certs() == [(1001, "reload-1")] * 2
        # Good, good, bad (the key of another certificate), good, good: the bad one keeps
        # the certificate that was in use.
        steps = [(certs[2], (1002, "reload-2"), True), (certs[3], (1003, "reload-3"), True),
                 ((certs[1][0], certs[2][1]), (1003, "reload-3"), False),
                 (certs[1], (1001, "reload-1"), True), (certs[2], (1002, "reload-2"), True)]
        ok = failed = 0
        for (c, k), want, good in steps:
            install(c, k, cert, key)
            srv.signal(signal.SIGHUP)
            srv.signaled = False
            if good:
                ok += 1
                await loop.run_in_executor(None, wait_log, "TLS certificate reloaded from", ok)
            else:
                failed += 1
                await loop.run_in_executor(None, wait_log, "TLS certificate not reloaded",
                                           failed)
                await loop.run_in_executor(None, wait_log, "key values mismatch", 1)
            assert await served_certs() == [want] * 2
            await asyncio.sleep(0.2)  # traffic goes on between reloads
        stop.set()
        await asyncio.gather(*pubs)
        await asyncio.wait_for(asyncio.gather(*recvs), 60)
        for mb in members:
            assert mb.closed is None, (mb.name, mb.closed)
            for other in members:
                assert mb.last[other.name] == other.sent, (mb.name, other.name)
            assert mb.received == sum(o.sent + 1 for o in members)
        assert min(mb.sent for mb in members) > 50, [mb.sent for mb in members]
        assert metric(srv, 'roomcast_tls_reloads_total{result="ok"}') == 4
        assert metric(srv, 'roomcast_tls_reloads_total{result="failed"}') == 1
        # every member is still connected: nobody was dropped along the way
        assert metric(srv, "roomcast_tls_connections") == len(members)
        for mb in members:
            await mb.close()

    run(go(), timeout=180)
    assert srv.proc.poll() is None
