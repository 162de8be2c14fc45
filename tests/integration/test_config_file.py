"""--config FILE, --check-config and --print-config against the real binary: a good file starts
the server and its values take effect (port, history-size in /api/stats), command-line flags
override it, a bad file exits 1 with file:line, and roomcast.conf.example is valid and is
exactly what --print-config prints (so it cannot drift from the flag table)."""

import json
import os
import socket
import subprocess
import time
import urllib.request

from conftest import LISTEN_RE, REPO, roomcast_bin


def run_bin(*args, timeout=10):
    return subprocess.run([roomcast_bin(), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def no_sanitizer_report(p):
    out = p.stdout + p.stderr
    assert "Sanitizer" not in out and "runtime error:" not in out, out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(tmp_path, text, name="roomcast.conf"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def start(args, tmp_path):
    errf = open(tmp_path / "stderr.log", "w+")
    proc = subprocess.Popen([roomcast_bin(), *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=errf)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        errf.seek(0)
        m = LISTEN_RE.search(errf.read())
        if m:
            return proc, int(m.group(1)), errf
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    errf.seek(0)
    raise AssertionError(f"roomcast did not start: {errf.read()}")


def stop(proc, errf):
    proc.terminate()
    rc = proc.wait(timeout=15)
    errf.seek(0)
    err = errf.read()
    errf.close()
    assert rc == 0, err
    assert "Sanitizer" not in err and "runtime error:" not in err, err


def stats(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stats", timeout=5) as r:
        return json.load(r)


def test_good_file_takes_effect(tmp_path):
    port = free_port()
    path = write(tmp_path, f"""
# a small server
bind 127.0.0.1
port {port}
history-size 17      # kept per room
no-netsync
log-level "info"
namespace game
  join authenticated
  publish granted
  max-members 16
end
""")
    proc, got, errf = start(["--config", path], tmp_path)
    try:
        assert got == port
        assert stats(port)["history"]["size"] == 17
    finally:
        stop(proc, errf)


def test_command_line_overrides_the_file(tmp_path):
    path = write(tmp_path, f"bind 127.0.0.1\nport {free_port()}\nhistory-size 17\nno-netsync\n")
    proc, port, errf = start(["--config", path, "--port", "0", "--history-size", "9"], tmp_path)
    try:
        assert stats(port)["history"]["size"] == 9
    finally:
        stop(proc, errf)


def test_check_config_good(tmp_path):
    path = write(tmp_path, "port 1234\nroom-service a-*=x\nroom-service b-*=y\n")
    p = run_bin("--config", path, "--check-config")
    assert p.returncode == 0, p
    assert "valid" in p.stdout
    no_sanitizer_report(p)


def test_bad_file_exits_1_with_file_line(tmp_path):
    path = write(tmp_path, "port 8080\n\nhistory-size lots\nnamespace game\n  join nobody\nend\n"
                           "colour blue\n")
    for extra in (["--check-config"], []):
        p = run_bin("--config", path, *extra)
        assert p.returncode == 1, p
        assert f"{path}:3: invalid value 'lots' for history-size" in p.stderr, p.stderr
        assert f"{path}:5: invalid value 'nobody' for join" in p.stderr, p.stderr
        assert f"{path}:7: unknown key 'colour'" in p.stderr, p.stderr
        assert "listening" not in p.stderr
        no_sanitizer_report(p)


def test_missing_file_exits_1(tmp_path):
    p = run_bin("--config", str(tmp_path / "nope.conf"), "--check-config")
    assert p.returncode == 1
    assert "nope.conf: cannot read" in p.stderr
    no_sanitizer_report(p)


def test_bad_flag_still_exits_2(tmp_path):
    p = run_bin("--config", write(tmp_path, "port 1\n"), "--port", "x")
    assert p.returncode == 2
    no_sanitizer_report(p)


def test_example_is_valid_and_generated():
    example = os.path.join(REPO, "roomcast.conf.example")
    p = run_bin("--config", example, "--check-config")
    assert p.returncode == 0, p.stderr
    no_sanitizer_report(p)
    gen = run_bin("--print-config")
    assert gen.returncode == 0
    with open(example) as f:
        assert f.read() == gen.stdout, \
            "roomcast.conf.example is stale: roomcast --print-config > roomcast.conf.example"


def test_example_keys_uncommented_are_valid(tmp_path):
    """Every key line of the example, uncommented, is a valid setting (its default)."""
    gen = run_bin("--print-config").stdout
    lines = []
    for line in gen.splitlines():
        key = line[1:].split(" ")[0] if line.startswith("#") else ""
        # key lines are '#key value'; a placeholder value (DIR, SEC...) is not a default
        if key and key[0].islower() and not line.startswith("# ") and \
                not line.startswith("#namespace") and not line.startswith("#end") and \
                not line.startswith("#  "):
            value = line[1:].split(" ", 1)[1] if " " in line else ""
            if value and value.isupper():
                continue
            lines.append(line[1:])
    assert len(lines) > 40
    p = run_bin("--config", write(tmp_path, "\n".join(lines) + "\n"), "--check-config")
    assert p.returncode == 0, p.stderr
