"""Command line: --help lists every documented flag, --version, and bad invocations fail cleanly
(non-zero exit, a message, no sanitizer report) instead of starting or crashing."""

import subprocess

import pytest

from conftest import if_supported, roomcast_bin

DOCUMENTED = ["--bind", "--port", "--max-connections", "--max-message-size", "--max-pending",
              "--max-rooms-per-client", "--ping-interval", "--ping-timeout",
              "--handshake-timeout", "--max-header-size", "--close-timeout", "--log-level",
              "--tcp-port", "--chat-port", "--chat-room", "--help", "--version"]


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
    ["--tcp-port", "70000"],
    ["--tcp-port", "-2"],
    ["--chat-port", "65536"],
    ["--chat-port", "abc"],
    ["--chat-room", ""],
    ["--chat-room", "r" * 256],
    ["--chat-room", "caf\udcc3"],  # the bytes caf\xc3 (surrogateescape): not UTF-8
    ["--netsync-max-message-size", "8191"],      # below the largest transform and handshake
    ["--netsync-max-message-size", "16777217"],
    ["--netsync-max-message-size", "64k"],
], ids=lambda a: " ".join(a)[:40])
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


@pytest.mark.parametrize("args,flag,value", [
    (["--tcp-port", "70000"], "--tcp-port", "'70000'"),
    (["--tcp-port=70000"], "--tcp-port", "'70000'"),
    (["--chat-port", "x"], "--chat-port", "'x'"),
    (["--chat-room", ""], "--chat-room", "''"),
    (["--chat-room=" + "r" * 256], "--chat-room", "256 bytes"),
    (["--chat-room", "caf\udcc3"], "--chat-room", "'caf\\xc3'"),  # shown escaped
], ids=lambda a: " ".join(a)[:40] if isinstance(a, list) else None)
def test_listener_flags_refused_with_a_clear_message(args, flag, value):
    p = run_bin(*args)
    assert p.returncode == 2, p
    first = p.stderr.splitlines()[0]
    assert flag in first and value in first, first
    assert not p.stdout
    no_sanitizer_report(p)


def test_help_lists_the_listener_flags_with_defaults():
    p = run_bin("--help")
    assert p.returncode == 0, p
    lines = p.stdout.splitlines()

    def help_of(flag):
        i = next(i for i, l in enumerate(lines) if l.lstrip().startswith(flag + " "))
        block = [lines[i]]  # the flag's line and its continuation lines
        for l in lines[i + 1:]:
            if not l.startswith(" " * 10):
                break
            block.append(l)
        return " ".join(" ".join(block).split())

    assert "(default off)" in help_of("--tcp-port")
    assert "docs/tcp.md" in help_of("--tcp-port")
    assert "(default off)" in help_of("--chat-port")
    assert "(default chat)" in help_of("--chat-room")


def test_help_states_the_netsync_message_limit():
    p = run_bin("--help")
    assert p.returncode == 0, p
    text = " ".join(p.stdout.split())
    if "--netsync-max-message-size" not in text:
        pytest.skip("a binary from before the flag")
    flag = text[text.index("--netsync-max-message-size"):][:400]
    assert "(default 131072)" in flag and "65806" in flag, flag
