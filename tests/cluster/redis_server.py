"""A private redis-server for roomcast's cluster tests (Debian's redis-server 7.0).

``RedisServer`` starts one in the foreground on a free loopback port *and* a unix socket, in its
own temporary directory, which is also its data directory (AOF on, ``appendfsync always``, no RDB
snapshots): it never touches the system's Redis, and ``restart()`` finds its data again, as a
Redis with AOF does after a crash or a planned restart. ``stop()`` ends it with SIGTERM (so the AOF
is complete), ``kill()`` with SIGKILL, ``destroy()`` also removes the directory.

``cmd(*args)`` sends one command with a minimal RESP client (no Python Redis package needed) and
returns the decoded reply (bytes, int, list, None; an error reply raises ``RedisError``).

The C unit tests of src/cluster/ have the same helper in tests/unit/cluster/redis_proc.h.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

REDIS_BIN = os.environ.get("ROOMCAST_REDIS_SERVER", "redis-server")
START_TIMEOUT = 10.0


class RedisError(Exception):
    pass


def free_port():
    with socket.socket() as s:  # TCP over IPv4 by default
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a)
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RedisError("unexpected reply line %r" % line)


class Connection:
    """One blocking RESP connection (for setup, checks and SUBSCRIBE in tests)."""

    def __init__(self, server, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(server.sock_path)
        self.reader = _Reader(self.sock)
        if server.password is not None:
            self.cmd("AUTH", server.password)

    def send(self, *args):
        self.sock.sendall(encode(*args))

    def cmd(self, *args):
        self.send(*args)
        return self.reader.reply()

    def reply(self):
        return self.reader.reply()

    def close(self):
        self.sock.close()


class RedisServer:
    def __init__(self, password=None, extra_args=()):
        self.password = password
        self.extra_args = list(extra_args)
        self.dir = tempfile.mkdtemp(prefix="rc-redis-")
        self.sock_path = os.path.join(self.dir, "redis.sock")
        self.port = free_port()
        self.proc = None

    @property
    def url(self):
        """redis://[:password@]127.0.0.1:PORT"""
        auth = ":%s@" % self.password if self.password is not None else ""
        return "redis://%s127.0.0.1:%d" % (auth, self.port)

    @property
    def unix_url(self):
        auth = ":%s@" % self.password if self.password is not None else ""
        return "unix://%s%s" % (auth, self.sock_path)

    def start(self):
        args = [REDIS_BIN, "--port", str(self.port), "--bind", "127.0.0.1",
                "--unixsocket", self.sock_path, "--unixsocketperm", "700",
                "--dir", self.dir, "--save", "", "--appendonly", "yes",
                "--appendfsync", "always", "--daemonize", "no",
                "--logfile", os.path.join(self.dir, "redis.log")]
        if self.password is not None:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s; log:\n%s"
                                   % (self.proc.returncode, self.log()))
            try:
                if self.cmd("PING") == b"PONG":
                    return self
            except (OSError, ConnectionError, RedisError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer; log:\n%s" % self.log())
            time.sleep(0.02)

    def log(self):
        try:
            with open(os.path.join(self.dir, "redis.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def connect(self):
        return Connection(self)

    def cmd(self, *args):
        c = Connection(self)
        try:
            return c.cmd(*args)
        finally:
            c.close()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
