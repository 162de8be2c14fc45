"""The package installs from the repository with Debian's pip and setuptools, offline, into a
virtual environment that sees Debian's websockets (clients/python/README.md), and the installed
copy works against the server. The source tree is copied first, so the build leaves nothing
in the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import REPO


def test_pip_install_from_the_repository(tmp_path, server):
    src = tmp_path / "src"
    shutil.copytree(os.path.join(REPO, "clients", "python"), src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".venv"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, capture_output=True, timeout=120)
    py = str(venv / "bin" / "python")
    r = subprocess.run([py, "-m", "pip", "install", "--no-index", "--no-build-isolation",
                        "--disable-pip-version-check", str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    script = (
        "import asyncio, roomcast, sys\n"
        "assert roomcast.__file__.startswith(sys.prefix), roomcast.__file__\n"
        "async def main():\n"
        f"    async with roomcast.Client('ws://127.0.0.1:{server.port}/') as c:\n"
        "        room = await c.join('installed')\n"
        "        ack = await room.publish({'type': 'hi'}, ack=True)\n"
        "        print(ack.msg_id, (await room.recv(10))['type'])\n"
        "asyncio.run(main())\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([py, "-c", script], capture_output=True, text=True, timeout=60,
                       cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["1", "hi"]
    assert os.path.exists(venv / "lib" / f"python{sys.version_info.major}."
                          f"{sys.version_info.minor}" / "site-packages" / "roomcast" / "py.typed")
