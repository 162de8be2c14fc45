"""TLS helpers for the integration tests: certificates made by the `openssl` command at test
time (nothing committed), and a TLS byte stream for the raw TCP port's clients (rawtcp.py).

``TLSSock`` drives an ``ssl.SSLObject`` over a plain socket through memory BIOs instead of
using ``ssl.SSLSocket``, because ``SSLSocket.shutdown`` drops the TLS layer: a test could then
not half-close (send ``close_notify`` and FIN) and go on reading the server's answers. It has
the socket methods ``rawtcp._Stream`` uses (``sendall``, ``recv``, ``settimeout``,
``shutdown``, ``close``), so ``LineClient(TLSSock.connect(...))`` is a line client over TLS.
"""

import os
import socket
import ssl
import subprocess
import time

from conftest import IO_TIMEOUT


def sh(*argv, cwd):
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d, name, key="rsa:2048"):
    """A self-signed CA certificate d/name.pem (key d/name.key); returns the .pem path."""
    sh("openssl", "req", "-x509", "-newkey", key, "-nodes", "-keyout", f"{name}.key",
       "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}", cwd=d)
    return os.path.join(d, f"{name}.pem")


def make_server_cert(d, ca, name, key="rsa:2048", serial=None):
    """A certificate for 127.0.0.1/localhost with subject CN=name signed by CA `ca` (the name
    given to make_ca); returns (cert, key) paths. `key` is an openssl -newkey argument
    ("rsa:2048"), or "ec" for a P-256 key; `serial` sets the certificate's serial number."""
    if key == "ec":
        sh("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-out", f"{name}.key", cwd=d)
        sh("openssl", "req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr",
           "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
           cwd=d)
    else:
        sh("openssl", "req", "-newkey", key, "-nodes", "-keyout", f"{name}.key", "-out",
           f"{name}.csr", "-subj", f"/CN={name}",
           "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", cwd=d)
    serial_args = ["-set_serial", str(serial)] if serial is not None else ["-CAcreateserial"]
    sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
       f"{ca}.key", *serial_args, "-out", f"{name}.pem", "-days", "2",
       "-copy_extensions", "copy", cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


def client_ctx(ca, alpn=None):
    """A client context trusting only `ca` (hostname checked against 127.0.0.1)."""
    ctx = ssl.create_default_context(cafile=ca)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def peer_subject_cn(cert):
    """The CN of a getpeercert() dict."""
    return dict(kv for rdn in cert["subject"] for kv in rdn)["commonName"]


class TLSSock:
    """A client TLS session over a blocking socket with a deadline per call (see the top)."""

    def __init__(self, raw, ctx, server_hostname="127.0.0.1"):
        self.raw = raw
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname)
        self.peer_eof = False
        self.close_notify = False  # the server's close_notify arrived

    @classmethod
    def connect(cls, port, ctx, timeout=IO_TIMEOUT, rcvbuf=None):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.settimeout(timeout)
        raw.connect(("127.0.0.1", port))
        t = cls(raw, ctx)
        try:
            t.handshake(timeout)
        except BaseException:
            raw.close()
            raise
        return t

    def _flush(self):
        data = self.out.read()
        if data:
            self.raw.sendall(data)

    def _fill(self):
        """One read from the socket into the session; False at EOF or reset."""
        try:
            chunk = self.raw.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.peer_eof = True
            self.inc.write_eof()
            return False
        self.inc.write(chunk)
        return True

    def handshake(self, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                self.raw.settimeout(max(0.01, deadline - time.monotonic()))
                if not self._fill():
                    # the server closed: let OpenSSL say why (alert) or report EOF
                    self.obj.do_handshake()
                    raise ConnectionError("EOF during the TLS handshake")

    # -- the socket methods rawtcp._Stream uses --------------------------------------------------

    def settimeout(self, t):
        self.raw.settimeout(t)

    def sendall(self, data):
        view = memoryview(data)
        while view:
            n = self.obj.write(view[:16384])
            view = view[n:]
            self._flush()

    def recv(self, n):
        """Up to n decrypted bytes; b"" at the server's close_notify or EOF (a raw EOF without
        close_notify leaves close_notify False)."""
        while True:
            try:
                data = self.obj.read(n)
                if not data:  # Python's answer to SSL_ERROR_ZERO_RETURN: close_notify
                    self.close_notify = True
                return data
            except ssl.SSLWantReadError:
                self._flush()
                if self.peer_eof:
                    return b""
                self._fill()
            except ssl.SSLZeroReturnError:
                self.close_notify = True
                return b""
            except ssl.SSLEOFError:  # a FIN without close_notify
                return b""

    def shutdown(self, how):
        """SHUT_WR: close_notify, then FIN; reading goes on (TLS 1.3 half-close)."""
        assert how == socket.SHUT_WR
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass  # our close_notify is written; the server's comes later
        self._flush()
        self.raw.shutdown(socket.SHUT_WR)

    def fin_only(self):
        """A FIN without close_notify (what many clients do)."""
        self.raw.shutdown(socket.SHUT_WR)

    def close(self):
        self.raw.close()

    # -- facts ------------------------------------------------------------------------------------

    def peercert(self):
        return self.obj.getpeercert()

    def selected_alpn(self):
        return self.obj.selected_alpn_protocol()

    def version(self):
        return self.obj.version()
