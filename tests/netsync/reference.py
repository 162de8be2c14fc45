"""Helpers to run STYLY NetSync's own Python code (server, client, simulator) from a local
checkout of styly-dev/STYLY-NetSync, for validating roomcast's NetSync tests.

Nothing of the reference is stored in this repository: the package is extracted with
``git archive`` into a temporary directory at run time.

* ``extract(ref)``: ``STYLY-NetSync-Server/src/styly_netsync`` at ``ref`` -> temp dir (the one
  to put on ``sys.path``/``PYTHONPATH``), plus ``sitecustomize``-free shims for Debian's
  pydantic 1.10 (no ``pydantic.StringConstraints``).
* ``RefServer(timings)``: the reference **server** on private ports, with the timings of
  ``ns8client.FAST``/``STEADY`` written to a TOML config. Used by the v8 suite when
  ``NETSYNC8_SERVER=reference``:

      NETSYNC8_SERVER=reference /usr/bin/python3 -m pytest -q tests/netsync/test_netsync8.py

  Manual validation only; not part of the suite. Needs python3-zmq, python3-loguru,
  python3-fastapi, python3-uvicorn, python3-msgpack, python3-psutil (Debian).
* ``python3 tests/netsync/reference.py [REF]``: start the reference server in the foreground
  and print its ports.

The checkout is ``$NETSYNC_REF_REPO`` (a bare git dir or a work tree), default
``/work/.mirror/styly-dev+STYLY-NetSync/repo``.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REF_REPO = os.environ.get("NETSYNC_REF_REPO", "/work/.mirror/styly-dev+STYLY-NetSync/repo")
PKG = "STYLY-NetSync-Server/src/styly_netsync"
V8_REF = os.environ.get("NETSYNC_REF_V8", "HEAD")
V06_REF = os.environ.get("NETSYNC_REF_V06", "v0.6.1")
PYTHON = "/usr/bin/python3"


def git_args():
    if os.path.isdir(os.path.join(REF_REPO, ".git")):
        return ["git", "-C", REF_REPO]
    return ["git", f"--git-dir={REF_REPO}"]


def available(ref):
    """None if ``ref`` of the checkout has the package, else the reason why not."""
    if not os.path.isdir(REF_REPO):
        return f"no NetSync checkout at {REF_REPO} (set NETSYNC_REF_REPO)"
    r = subprocess.run(git_args() + ["cat-file", "-e", f"{ref}:{PKG}/client.py"],
                       capture_output=True)
    if r.returncode != 0:
        return f"{REF_REPO} has no {PKG} at {ref}"
    return None


PYDANTIC_SHIM = '''
import pydantic
if not hasattr(pydantic, "StringConstraints"):
    class StringConstraints:            # pydantic 2 name; Debian has 1.10 (lengths unchecked)
        def __init__(self, **kw):
            self.kw = kw
    pydantic.StringConstraints = StringConstraints
'''


def extract(ref, dest=None):
    """Extract the package at ``ref``; returns the directory holding ``styly_netsync``."""
    dest = dest or tempfile.mkdtemp(prefix=f"netsync-{ref.replace('/', '_')}-")
    arch = subprocess.run(git_args() + ["archive", "--format=tar", ref, PKG],
                          capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", dest, "--strip-components=2"], input=arch, check=True)
    with open(os.path.join(dest, "ns_shims.py"), "w") as f:
        f.write(PYDANTIC_SHIM)
    return dest


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


LAUNCHER = '''
import sys
sys.path.insert(0, {src!r})
import ns_shims  # noqa: F401
from styly_netsync import server
server.get_version = lambda: "0.16.3"          # pyproject is not extracted
server.NetSyncServer._probe_existing_discovery_server = lambda self: None   # no LAN broadcast
sys.argv = ["styly-netsync-server"] + {argv!r}
server.main()
'''


class RefServer:
    """The reference server on private ports (same attribute names as conftest.NSServer)."""

    reference = True
    http_port = None

    def __init__(self, timings=None, ref=None):
        ref = ref or V8_REF
        why = available(ref)
        if why:
            import pytest
            pytest.skip(why)
        self.dir = extract(ref)
        timings = dict(timings or {})
        (self.router_port, self.pose_port, self.pub_port, self.disc_port,
         self.rest_port) = free_ports(5)
        self.host = "127.0.0.1"
        conf = {
            "client_timeout": timings.get("client_timeout", 5),
            "idle_broadcast_interval": timings.get("idle_interval", 2.0),
            "server_name": "STYLY-NetSync-Server",
        }
        if "pose_tick" in timings:
            conf["transform_broadcast_rate"] = 1.0 / timings["pose_tick"]
        cpath = os.path.join(self.dir, "test.toml")
        with open(cpath, "w") as f:
            for k, v in conf.items():
                f.write(f"{k} = {v!r}\n".replace("'", '"'))
        argv = ["--config", cpath, "--control-port", str(self.router_port),
                "--transform-port", str(self.pose_port), "--pub-port", str(self.pub_port),
                "--server-discovery-port", str(self.disc_port),
                "--rest-api-port", str(self.rest_port)]
        self.errf = tempfile.NamedTemporaryFile(prefix="netsync-ref-", suffix=".log",
                                                delete=False)
        self.proc = subprocess.Popen([PYTHON, "-c", LAUNCHER.format(src=self.dir, argv=argv)],
                                     stdout=self.errf, stderr=subprocess.STDOUT,
                                     cwd=self.dir)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("reference server died:\n" + self.stderr())
            if all(self._listening(p) for p in (self.router_port, self.pose_port,
                                                 self.pub_port)):
                time.sleep(0.5)          # threads and discovery come up after the binds
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("reference server did not start:\n" + self.stderr())

    @staticmethod
    def _listening(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stderr(self):
        with open(self.errf.name, "r", errors="replace") as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        return 0                          # the reference's exit status is not under test


if __name__ == "__main__":
    s = RefServer({}, sys.argv[1] if len(sys.argv) > 1 else None)
    print(f"reference server: control {s.router_port} pose {s.pose_port} pub {s.pub_port} "
          f"discovery {s.disc_port} rest {s.rest_port} (log {s.errf.name}); Ctrl-C stops it")
    try:
        s.proc.wait()
    except KeyboardInterrupt:
        s.stop()
