"""The raw TCP protocol over TLS (--tcp-tls-port, docs/tls.md): JSON lines and frames through
Python's ssl module, against a CA and server certificate made at test time.

What is checked beyond "it works": ALPN (none, roomcast-tcp, or refused), input larger than
the server's 64 KiB read buffer in one write (TLS records left inside OpenSSL when the buffer
fills must still be read before the loop sleeps), a receiver that stops reading (SSL_write
retries), half-close with and without close_notify (the answers still arrive), the close line
and close frame followed by the server's close_notify, the handshake timeout and the
keepalive that starts after the handshake.
"""

import json
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid

import pytest

from conftest import IO_TIMEOUT, RawWS, Server
from rawtcp import (OP_PING, OP_PONG, OP_TEXT, PREAMBLE, FramedClient, LineClient,
                    dumps)
from tlspki import TLSSock, client_ctx, make_ca, make_server_cert, peer_subject_cn

TCP_TLS_RE = re.compile(r"roomcast: tcp tls listening on 127\.0\.0\.1:(\d+)\n")
HS_OK = 'roomcast_tls_handshakes_total{result="ok"}'
HS_FAILED = 'roomcast_tls_handshakes_total{result="failed"}'


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    ca = make_ca(d, "tca")
    cert, key = make_server_cert(d, "tca", "tcp-srv")
    return {"dir": d, "ca": ca, "cert": cert, "key": key}


def tcp_tls_port(srv):
    m = TCP_TLS_RE.search(srv.stderr())
    assert m, srv.stderr()
    return int(m.group(1))


@pytest.fixture(scope="module")
def server(pki):
    # --tls-port keeps --port plain (for /api/stats and /metrics); without it, a certificate
    # makes --port itself TLS.
    srv = Server("--tcp-port", "0", "--tcp-tls-port", "0", "--tls-port", "0",
                 "--tls-cert", pki["cert"], "--tls-key", pki["key"], "--max-message-size", str(2 << 20),
                 "--max-pending", str(64 << 20))
    srv.tls_port = tcp_tls_port(srv)
    try:
        yield srv
        srv.stop()
    finally:
        srv.cleanup()


def metric(srv, name):
    from conftest import http_exchange
    status, _h, body = http_exchange(
        srv.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200
    m = re.search(r"^" + re.escape(name) + r" (\d+)$", body.decode(), re.M)
    assert m, f"{name} not in /metrics"
    return int(m.group(1))


def line_tls(srv, pki, **kw):
    return LineClient(TLSSock.connect(srv.tls_port, client_ctx(pki["ca"]), **kw))


def framed_tls(srv, pki):
    c = FramedClient(TLSSock.connect(srv.tls_port, client_ctx(pki["ca"])))
    c.send(PREAMBLE)
    assert c._exactly(4, time.monotonic() + IO_TIMEOUT) == PREAMBLE
    return c


def new_room(prefix="tcptls"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_line_mode_over_tls_with_plain_and_ws_members(server, pki):
    room = new_room()
    with line_tls(server, pki) as t, LineClient.connect(server.tcp_port) as plain:
        assert t.sock.selected_alpn() is None  # no ALPN offered, none answered
        assert t.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert peer_subject_cn(t.sock.peercert()) == "tcp-srv"
        ws = RawWS.connect(server.port)
        try:
            ct = t.join(room)["client_id"]
            plain.join(room)
            ws.join(room)
            t.send_line({"type": "hi", "text": "over tls \u2713"})
            want = (f'{{"type":"hi","text":"over tls \u2713","room":"{room}",'
                    f'"client_id":{ct},"msg_id":1}}')
            assert t.recv_raw() == want
            assert plain.recv_raw() == want
            assert ws.recv_json_raw() == want
            plain.send_line({"type": "back"})
            assert t.recv_json()["type"] == "back"
            # an error line keeps the connection, as on the plain port
            t.send_line("not json")
            assert t.recv_json()["code"] == "bad_json"
            assert t.request({"type": "leave", "room": room}) == {"type": "left", "room": room}
        finally:
            ws.close()


def test_framed_mode_over_tls(server, pki):
    room = new_room()
    f = framed_tls(server, pki)
    try:
        cf = f.join(room)["client_id"]
        for payload in (b"", b"ping over tls"):
            f.send_frame(OP_PING, payload)
            assert f.recv_frame() == (OP_PONG, payload)
        f.send_frame(OP_TEXT, b'{"type":"framed","n":1}')
        assert f.recv_json() == {"type": "framed", "n": 1, "room": room, "client_id": cf,
                                 "msg_id": 1}
        body = bytes(range(256)) * 4
        f.send_binary(room, body)
        assert f.recv_binary() == (2, cf, room, body)
        f.send_close(4000, b"bye")
        f.expect_close(4000)
        assert f.sock.close_notify, "the server ends its TLS stream with close_notify"
    finally:
        f.close()


def test_alpn(server, pki):
    port = server.tls_port
    t = TLSSock.connect(port, client_ctx(pki["ca"], ["roomcast-tcp", "x-other"]))
    try:
        assert t.selected_alpn() == "roomcast-tcp"
        c = LineClient(t)
        c.join(new_room())
    finally:
        t.close()
    failed = metric(server, HS_FAILED)
    # A client that names protocols but not ours (a browser, an HTTP library) is refused with
    # the no_application_protocol alert: its bytes are never read as room-protocol lines.
    with pytest.raises(ssl.SSLError, match="NO_APPLICATION_PROTOCOL|no application protocol"):
        TLSSock.connect(port, client_ctx(pki["ca"], ["http/1.1", "h2"]))
    deadline = time.monotonic() + IO_TIMEOUT
    while metric(server, HS_FAILED) <= failed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(server, HS_FAILED) == failed + 1


def test_plaintext_on_the_tls_port_is_refused(server, pki):
    """A plain line client on the TLS port: its line is not a ClientHello; nothing is joined."""
    with LineClient.connect(server.tls_port) as c:
        c.send_line({"type": "join", "room": new_room()})
        got = c.expect_eof()
        assert b"joined" not in got
    with LineClient(TLSSock.connect(server.tls_port, client_ctx(pki["ca"]))) as ok:
        ok.join(new_room())


def test_more_than_the_read_buffer_in_one_write(server, pki):
    """Thousands of lines in one write (about 1 MiB: many TLS records, more than the server's
    64 KiB read buffer), then nothing more: if the server slept with records decrypted inside
    OpenSSL, the last answers would never come."""
    room = new_room()
    n = 6000
    with line_tls(server, pki) as t, line_tls(server, pki) as other:
        t.join(room)
        other.join(room)
        pad = "p" * 150
        t.send_lines([{"type": "bulk", "i": i, "pad": pad} for i in range(n)])
        for c in (t, other):
            for i in range(n):
                m = c.recv_json(timeout=30)
                assert m["type"] == "bulk" and m["i"] == i, m
        # the same for frames, with 1 MiB messages
        big = "x" * (1 << 20)
        f = framed_tls(server, pki)
        try:
            f.join(room)
            f.send(b"".join(FramedClient.frame(OP_TEXT, dumps({"type": "big", "i": i, "b": big}))
                            for i in range(3)))
            for i in range(3):
                m = f.recv_json(timeout=30)
                assert m["i"] == i and m["b"] == big
            for i in range(3):
                m = t.recv_json(timeout=30)
                assert m["i"] == i and len(m["b"]) == len(big)
                assert other.recv_json(timeout=30)["i"] == i
        finally:
            f.close()


def test_record_cut_by_the_end_of_the_read_buffer(server, pki):
    """Five 16,000-byte TLS records of whole lines in one write, then silence. The server's
    64 KiB read buffer fills in the middle of the fifth record, which OpenSSL has already taken
    off the socket whole: the rest of it is decrypted inside OpenSSL where no socket event will
    ever announce it. Unless the server drains it before sleeping, the last answers never come."""
    room = new_room()
    line_len, per_record, records = 100, 160, 5
    t = TLSSock.connect(server.tls_port, client_ctx(pki["ca"]))
    c = LineClient(t)
    try:
        c.join(room)
        i = 0
        for _ in range(records):
            chunk = b""
            for _ in range(per_record):
                head = '{"type":"r","i":%d,"p":"' % i
                chunk += (head + "x" * (line_len - len(head) - 3) + '"}\n').encode()
                i += 1
            assert len(chunk) == line_len * per_record
            t.obj.write(chunk)  # one record each
        t.raw.sendall(t.out.read())  # all five in one write
        for k in range(records * per_record):
            m = c.recv_json(timeout=10)
            assert m["type"] == "r" and m["i"] == k, m
    finally:
        c.close()


def test_stalled_reader_gets_everything_in_order(server, pki):
    """A member that does not read while the room is busy: the server's writes to it hit a
    full socket (SSL_write must be retried with the same bytes); once it reads, everything
    arrives, in order."""
    room = new_room()
    n = 4000
    with line_tls(server, pki, rcvbuf=4096) as slow, line_tls(server, pki) as pub:
        slow.join(room)
        pub.join(room)
        pad = "q" * 200
        for k in range(0, n, 500):
            pub.send_lines([{"type": "s", "i": i, "pad": pad} for i in range(k, k + 500)])
            for i in range(k, k + 500):
                assert pub.recv_json(timeout=30)["i"] == i
        for i in range(n):
            m = slow.recv_json(timeout=30)
            assert m["i"] == i, m


@pytest.mark.parametrize("how", ["close_notify", "fin"])
def test_half_close_still_gets_the_answers(server, pki, how):
    """A client that sends its requests and then shuts its sending side (with close_notify and
    FIN, or a bare FIN) still reads every answer; then the server closes."""
    room = new_room()
    with line_tls(server, pki) as watcher:
        watcher.join(room)
        t = TLSSock.connect(server.tls_port, client_ctx(pki["ca"]))
        c = LineClient(t)
        try:
            n = 500
            c.send_lines([{"type": "join", "room": room}] +
                         [{"type": "hc", "i": i} for i in range(n)])
            if how == "close_notify":
                t.shutdown(socket.SHUT_WR)
            else:
                t.fin_only()
            assert c.recv_json()["type"] == "joined"
            for i in range(n):
                m = c.recv_json(timeout=30)
                assert m["type"] == "hc" and m["i"] == i, m
            rest = c.expect_eof()
            assert rest == b"", rest[:200]
        finally:
            c.close()
        for i in range(n):
            assert watcher.recv_json(timeout=30)["i"] == i


def test_close_line_then_close_notify(server, pki):
    """16 errors in a row: the close line, then the server's close_notify and EOF."""
    with line_tls(server, pki) as c:
        c.send_lines(["not json"] * 16)
        for _ in range(15):
            assert c.recv_json()["code"] == "bad_json"
        msg = c.expect_close(1008, "too many errors", skip=("error",))
        assert msg["code"] == 1008
        assert c.sock.close_notify


def test_handshake_timeout_and_keepalive_after_it(start_server, pki):
    srv = start_server("--tcp-tls-port", "0", "--tls-port", "0", "--tls-cert", pki["cert"],
                       "--tls-key", pki["key"], "--handshake-timeout", "0.5", "--ping-interval", "1",
                       "--ping-timeout", "30")
    port = tcp_tls_port(srv)
    # Silent after connecting: closed once the handshake timeout is over, counted failed.
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        assert s.recv(100) == b""
    assert metric(srv, HS_FAILED) == 1
    # A handshake that finishes, then silence: the TCP keepalive line comes (the protocol's
    # timer started after the handshake), and the connection stays well past the handshake
    # timeout.
    with LineClient(TLSSock.connect(port, client_ctx(pki["ca"]))) as c:
        assert c.recv_raw(timeout=10, keepalives=True) == '{"type":"keepalive"}'
        c.send_line({"type": "keepalive"})
        c.join(new_room())
    assert metric(srv, HS_FAILED) == 1 and metric(srv, HS_OK) == 1


def test_shutdown_sends_the_close_line_over_tls(start_server, pki):
    srv = start_server("--tcp-tls-port", "0", "--tls-port", "0", "--tls-cert", pki["cert"],
                       "--tls-key", pki["key"])
    port = tcp_tls_port(srv)
    c = LineClient(TLSSock.connect(port, client_ctx(pki["ca"])))
    f = FramedClient(TLSSock.connect(port, client_ctx(pki["ca"])))
    f.send(PREAMBLE)
    assert f._exactly(4, time.monotonic() + IO_TIMEOUT) == PREAMBLE
    try:
        c.join("bye")
        f.join("bye")
        srv.signal(signal.SIGTERM)
        c.expect_close(1001, "server shutdown")
        f.expect_close(1001, "server shutdown")
        assert srv.wait_exit() == 0
        srv.assert_clean_exit(0)
    finally:
        c.close()
        f.close()


def test_flag_needs_a_certificate():
    import conftest
    r = subprocess.run([conftest.roomcast_bin(), "--tcp-tls-port", "0"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode != 0 and "--tcp-tls-port needs --tls-cert" in r.stderr


def test_openssl_s_client_as_a_line_client(server, pki):
    """`openssl s_client -quiet` is an `nc` for the TLS port (docs/tls.md): it verifies the
    certificate against the CA and carries lines both ways."""
    room = new_room("s-client")
    p = subprocess.Popen(["openssl", "s_client", "-quiet", "-verify_return_error",
                          "-connect", f"127.0.0.1:{server.tls_port}", "-CAfile", pki["ca"]],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    killer = threading.Timer(IO_TIMEOUT, p.kill)  # a silent server must not hang the test
    killer.start()
    try:
        p.stdin.write((dumps({"type": "join", "room": room}) + "\n" +
                       dumps({"type": "chat", "text": "via s_client"}) + "\n").encode())
        p.stdin.flush()
        got = []
        while len(got) < 2:
            line = p.stdout.readline()
            if not line:
                break
            if line != b'{"type":"keepalive"}\n':
                got.append(json.loads(line))
        assert [m["type"] for m in got] == ["joined", "chat"], got
        assert got[1]["text"] == "via s_client" and got[1]["room"] == room
    finally:
        killer.cancel()
        p.kill()
        p.wait()
