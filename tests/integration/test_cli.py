"""Command line: --help lists every documented flag, --version, and bad invocations fail cleanly
(non-zero exit, a message, no sanitizer report) instead of starting or crashing."""

import subprocess

import pytest

from conftest import if_supported, roomcast_bin

DOCUMENTED = ["--bind", "--port", "--max-connections", "--max-message-size", "--max-pending",
              "--max-rooms-per-client", "--ping-interval", "--ping-timeout",
              "--handshake-timeout", "--max-header-size", "--close-timeout", "--log-level",
              "--help", "--version"]


def run_bin(*args, timeout=10):
    return subprocess.run([roomcast_bin(), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def no_sanitizer_report(p):
    out = p.stdout + p.stderr
    assert "Sanitizer" not in out and "runtime error:" not in out, out


def test_help_lists_every_flag():
    p = run_bin("--help")
    assert p.returncode == 0, p
    text = p.stdout + p.stderr
    missing = [f for f in DOCUMENTED if f not in text]
    assert not missing, f"--help does not mention {missing}"
    no_sanitizer_report(p)


def test_version():
    p = run_bin("--version")
    assert p.returncode == 0
    assert any(ch.isdigit() for ch in p.stdout + p.stderr), p
    no_sanitizer_report(p)


@pytest.mark.parametrize("args", [
    ["--no-such-flag"],
    ["--port"],
    ["--port", "abc"],
    ["--port", "70000"],
    ["--port", "-1"],
    ["--max-connections", "-5"],
    ["--max-connections", "12x"],
    ["--ping-interval", "soon"],
    ["--ping-timeout", "-1"],
    ["--log-level", "loud"],
    ["--bind", "not-an-address"],
    ["--max-rooms-per-client", "99999999999999999999999"],
    ["positional"],
], ids=lambda a: " ".join(a))
def test_bad_arguments_fail_cleanly(args):
    try:
        p = run_bin("--bind", "127.0.0.1", "--port", "0", *if_supported("--no-netsync"), *args,
                    timeout=5)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"roomcast accepted {args} and started serving: {e.stderr!r}")
    assert p.returncode != 0, f"roomcast accepted {args}: {p.stderr[-500:]}"
    assert p.returncode > 0, f"roomcast died from signal {-p.returncode} on {args}"
    assert p.stderr.strip(), "no error message"
    assert "listening on" not in p.stderr
    no_sanitizer_report(p)


def test_port_in_use_fails_cleanly():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        try:
            p = run_bin("--bind", "127.0.0.1", "--port", str(port), *if_supported("--no-netsync"),
                        timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"roomcast kept running although port {port} is taken")
    assert p.returncode > 0, p
    assert p.stderr.strip()
    no_sanitizer_report(p)
