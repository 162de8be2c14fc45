"""TLS (docs/tls.md): wss:// and https:// on the same loop, with a CA and server certificates
made by the `openssl` command at test time in a temporary directory (nothing committed).

Most tests run one server with a plain --port (for /api/stats and /metrics) and a TLS
listener beside it (--tls-port 0); one runs --port itself as TLS.
"""

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import IO_TIMEOUT, http_exchange, run, ws_connect, ws_join, ws_recv_json

TLS_LISTEN_RE = re.compile(r"roomcast: tls listening on https://127\.0\.0\.1:(\d+)/")


def sh(*argv, cwd):
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d, name):
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
       "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}", cwd=d)
    return os.path.join(d, f"{name}.pem")


def make_server_cert(d, ca, name):
    """A certificate for 127.0.0.1/localhost signed by ca; returns (cert, key) paths."""
    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
       f"{name}.csr", "-subj", f"/CN={name}",
       "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", cwd=d)
    sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
       f"{ca}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
       "-copy_extensions", "copy", cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    ca = make_ca(d, "ca1")
    cert, key = make_server_cert(d, "ca1", "srv1")
    ca2 = make_ca(d, "ca2")
    cert2, key2 = make_server_cert(d, "ca2", "srv2")
    return {"dir": d, "ca": ca, "cert": cert, "key": key, "ca2": ca2, "cert2": cert2,
            "key2": key2}


def client_ctx(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def tls_port(srv):
    m = TLS_LISTEN_RE.search(srv.stderr())
    assert m, srv.stderr()
    return int(m.group(1))


def metric(srv, name):
    status, _h, body = http_exchange(
        srv.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200
    m = re.search(r"^" + re.escape(name) + r" (\d+)$", body.decode(), re.M)
    assert m, f"{name} not in /metrics"
    return int(m.group(1))


HS_OK = 'roomcast_tls_handshakes_total{result="ok"}'
HS_FAILED = 'roomcast_tls_handshakes_total{result="failed"}'


def https_get(port, ca, path):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=client_ctx(ca),
                                       timeout=IO_TIMEOUT)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        return r.status, body, conn.sock.selected_alpn_protocol(), conn.sock.getpeercert()
    finally:
        conn.close()


@pytest.fixture
def tls_server(start_server, pki):
    return start_server("--tls-cert", pki["cert"], "--tls-key", pki["key"], "--tls-port", "0",
                        "--max-message-size", str(4 << 20), "--max-pending", str(64 << 20))


def test_wss_join_publish_receive_alpn(tls_server, pki):
    port = tls_port(tls_server)
    url = f"wss://127.0.0.1:{port}/"

    async def go():
        a = await ws_connect(url, ssl=client_ctx(pki["ca"]))
        b = await ws_connect(url, ssl=client_ctx(pki["ca"]))
        assert a.transport.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
        await ws_join(a, "tls-room")
        await ws_join(b, "tls-room")
        await a.send(json.dumps({"type": "chat", "text": "over tls"}))
        for ws in (a, b):
            m = await ws_recv_json(ws)
            assert m["type"] == "chat" and m["text"] == "over tls" and m["room"] == "tls-room"
        await a.close()
        await b.close()

    run(go())
    assert metric(tls_server, HS_OK) >= 2
    tls_server.wait_stats(lambda st: metric(tls_server, "roomcast_tls_connections") == 0,
                          what="TLS connections gone")


def test_https_get(tls_server, pki):
    status, body, alpn, _cert = https_get(tls_port(tls_server), pki["ca"], "/api/stats")
    assert status == 200 and alpn == "http/1.1"
    assert "connections_total" in json.loads(body)


def test_main_port_tls(start_server, pki):
    srv = start_server("--tls-cert", pki["cert"], "--tls-key", pki["key"])
    assert f"listening on https://127.0.0.1:{srv.port}/" in srv.stderr()
    status, body, alpn, _ = https_get(srv.port, pki["ca"], "/healthz")
    assert status == 200 and alpn == "http/1.1"

    async def go():
        ws = await ws_connect(f"wss://127.0.0.1:{srv.port}/", ssl=client_ctx(pki["ca"]))
        await ws_join(ws, "main-tls")
        await ws.close()

    run(go())


def raw_exchange(port, data, timeout=IO_TIMEOUT):
    """Send data on a plain TCP socket; return everything until the server closes (a reset
    counts as a close: the server closes with the client's unread garbage in its buffer)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if data:
            s.sendall(data)
        got = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return got
            if not chunk:
                return got
            got += chunk
    finally:
        s.close()


def test_plaintext_and_garbage_on_tls_port(tls_server, pki):
    port = tls_port(tls_server)
    failed = metric(tls_server, HS_FAILED)
    # A plain HTTP request: OpenSSL sees no ClientHello; at most an alert comes back, then EOF.
    got = raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"HTTP/1.1" not in got
    raw_exchange(port, os.urandom(300))
    raw_exchange(port, b"\x16\x03\x01\x00\x05hello")  # a record header, then nonsense
    deadline = time.monotonic() + IO_TIMEOUT
    while metric(tls_server, HS_FAILED) < failed + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(tls_server, HS_FAILED) >= failed + 3
    # still healthy, on both listeners
    assert https_get(port, pki["ca"], "/healthz")[0] == 200
    assert tls_server.stats()["connections"] <= 1


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls11_refused(tls_server, pki):
    port = tls_port(tls_server)
    failed = metric(tls_server, HS_FAILED)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki["ca"])
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        with pytest.raises(ssl.SSLError):
            with ctx.wrap_socket(s, server_hostname="127.0.0.1"):
                pass
    deadline = time.monotonic() + IO_TIMEOUT
    while metric(tls_server, HS_FAILED) <= failed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(tls_server, HS_FAILED) == failed + 1  # refused by the server, not the client
    ctx12 = client_ctx(pki["ca"])
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        with ctx12.wrap_socket(s, server_hostname="127.0.0.1") as t:
            assert t.version() == "TLSv1.2"


def test_handshake_timeout(start_server, pki):
    srv = start_server("--tls-cert", pki["cert"], "--tls-key", pki["key"], "--tls-port", "0",
                       "--handshake-timeout", "0.5")
    port = tls_port(srv)
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        assert s.recv(100) == b""  # closed by the server, having said nothing
    assert time.monotonic() - t0 < 5
    assert metric(srv, HS_FAILED) == 1
    assert https_get(port, pki["ca"], "/healthz")[0] == 200


def test_big_and_many_messages_both_ways(tls_server, pki):
    """1 MiB messages and thousands of small ones each way, with a receiver that stops
    reading meanwhile so that the server's writes hit a full socket (partial writes,
    SSL_write retries)."""
    port = tls_port(tls_server)
    url = f"wss://127.0.0.1:{port}/"
    big = "x" * (1 << 20)
    n_small = 3000

    async def go():
        a = await ws_connect(url, ssl=client_ctx(pki["ca"]), max_queue=4)
        b = await ws_connect(url, ssl=client_ctx(pki["ca"]), max_queue=4)
        await ws_join(a, "bulk")
        await ws_join(b, "bulk")
        # b does not read while a sends: the server's output to b backs up.
        await a.send(json.dumps({"type": "big", "body": big}))
        for i in range(n_small):
            await a.send(json.dumps({"type": "s", "i": i}))
        await b.send(json.dumps({"type": "big", "body": big}))
        for i in range(n_small):
            await b.send(json.dumps({"type": "s", "i": -i}))
        for ws in (a, b):
            got_big, small = 0, []
            while got_big < 2 or len(small) < 2 * n_small:
                m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if m["type"] == "big":
                    assert m["body"] == big
                    got_big += 1
                else:
                    small.append(m["i"])
            assert [i for i in small if i > 0] == list(range(1, n_small))
            assert [i for i in small if i < 0] == [-i for i in range(1, n_small)]
        await a.close()
        await b.close()

    run(go(), timeout=120)


def test_sighup_reload(start_server, pki, tmp_path):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    with open(cert, "wb") as f:
        f.write(open(pki["cert"], "rb").read())
    with open(key, "wb") as f:
        f.write(open(pki["key"], "rb").read())
    srv = start_server("--tls-cert", cert, "--tls-key", key, "--tls-port", "0")
    port = tls_port(srv)
    url = f"wss://127.0.0.1:{port}/"

    def wait_log(text, count):
        deadline = time.monotonic() + IO_TIMEOUT
        while srv.stderr().count(text) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.stderr().count(text) >= count, srv.stderr()

    async def go():
        old = await ws_connect(url, ssl=client_ctx(pki["ca"]))
        await ws_join(old, "reload")
        # A reload that fails (a key that is no key) keeps the old certificate.
        with open(key, "w") as f:
            f.write("not a key\n")
        srv.signal(signal.SIGHUP)
        srv.signaled = False
        await asyncio.get_running_loop().run_in_executor(
            None, wait_log, "TLS certificate not reloaded", 1)
        assert metric(srv, 'roomcast_tls_reloads_total{result="failed"}') == 1
        assert https_get(port, pki["ca"], "/healthz")[0] == 200
        # The new certificate, from another CA.
        with open(cert, "wb") as f:
            f.write(open(pki["cert2"], "rb").read())
        with open(key, "wb") as f:
            f.write(open(pki["key2"], "rb").read())
        srv.signal(signal.SIGHUP)
        srv.signaled = False
        await asyncio.get_running_loop().run_in_executor(
            None, wait_log, "TLS certificate reloaded", 1)
        assert metric(srv, 'roomcast_tls_reloads_total{result="ok"}') == 1
        # The old connection keeps working, both ways.
        new = await ws_connect(url, ssl=client_ctx(pki["ca2"]))
        peer = new.transport.get_extra_info("peercert")
        assert ("commonName", "srv2") in [kv for rdn in peer["subject"] for kv in rdn]
        await ws_join(new, "reload")
        await old.send(json.dumps({"type": "after", "n": 1}))
        for ws in (old, new):
            m = await ws_recv_json(ws)
            assert m["type"] == "after"
        await new.send(json.dumps({"type": "after", "n": 2}))
        for ws in (old, new):
            assert (await ws_recv_json(ws))["n"] == 2
        # New connections that trust only the old CA now fail.
        with pytest.raises(ssl.SSLCertVerificationError):
            await ws_connect(url, ssl=client_ctx(pki["ca"]))
        await old.close()
        await new.close()

    run(go())
    assert srv.proc.poll() is None  # SIGHUP did not end it


def test_ws_record_cut_by_the_end_of_the_read_buffer(start_server, pki):
    """WebSocket twin of test_tcp_tls.py's test of the same name: five 16,000-byte TLS records
    of whole frames in one write, then silence. The server's 64 KiB read buffer fills inside
    the fifth record, already off the socket and decrypted inside OpenSSL; unless the server
    drains it before sleeping, the last publishes are never answered."""
    from conftest import RawWS, encode_frame, read_http_response, ws_request
    from tlspki import TLSSock

    # No keepalive during the test: a ping (answered by RawWS) would bring new input and
    # rescue a server that slept on bytes inside OpenSSL.
    srv = start_server("--tls-cert", pki["cert"], "--tls-key", pki["key"], "--tls-port", "0",
                       "--ping-interval", "60")
    t = TLSSock.connect(tls_port(srv), client_ctx(pki["ca"]))
    req, _key = ws_request("/")
    t.sendall(req)
    status, _h, _b, rest = read_http_response(t)
    assert status == 101
    ws = RawWS(t, rest)
    try:
        ws.send_json({"type": "join", "room": "ws-record-cut"})
        assert ws.recv_json()["type"] == "joined"
        i = 0
        for _ in range(5):
            record = b""
            for _ in range(160):  # 160 frames of exactly 100 bytes: 6 of header and mask
                head = '{"type":"r","i":%d,"p":"' % i
                payload = (head + "x" * (94 - len(head) - 2) + '"}').encode()
                frame = encode_frame(0x1, payload)
                assert len(frame) == 100
                record += frame
                i += 1
            t.obj.write(record)  # one TLS record each
        t.raw.sendall(t.out.read())  # all five in one write
        for k in range(i):
            m = ws.recv_json(timeout=10)
            assert m["type"] == "r" and m["i"] == k, m
    finally:
        ws.close()
