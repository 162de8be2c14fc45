"""The private redis-server fixture itself (redis_server.py), which the cluster tests build on:
it must be private (own port, socket and data directory), survive restarts with its data the way
a Redis with AOF does, honour a password, carry pub/sub, and leave nothing behind."""

import os
import socket

import pytest

from redis_server import RedisError


def test_private_and_cleaned_up(redis_factory):
    s = redis_factory()
    t = redis_factory()
    assert s.port != t.port and s.port != 6379
    assert s.dir != t.dir and os.path.isdir(s.dir)
    assert s.cmd("SET", "k", "v") == b"OK"
    assert t.cmd("GET", "k") is None  # the other server does not share data
    # reachable over TCP too
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
        c.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert c.recv(64) == b"+PONG\r\n"
    pid = s.proc.pid
    s.destroy()
    assert not os.path.exists(s.dir)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_data_survives_restart_and_kill(redis_server, how):
    s = redis_server
    s.cmd("HSET", "rc:{r}:m", "e", "abc", "s", "7")
    if how == "kill":
        s.kill()  # SIGKILL: appendfsync always has the write on disk already
        s.start()
    else:
        s.restart()
    assert s.cmd("HGET", "rc:{r}:m", "s") == b"7"
    assert s.cmd("HGET", "rc:{r}:m", "e") == b"abc"


def test_password(redis_factory):
    s = redis_factory(password="se cret")
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(5)
    raw.connect(s.sock_path)
    raw.sendall(b"*1\r\n$4\r\nPING\r\n")
    assert raw.recv(128).startswith(b"-NOAUTH")
    raw.close()
    assert s.cmd("PING") == b"PONG"  # the helper authenticates
    assert s.url.startswith("redis://:se cret@127.0.0.1:")


def test_pubsub(redis_server):
    sub = redis_server.connect()
    assert sub.cmd("SUBSCRIBE", "rc:{a}:c") == [b"subscribe", b"rc:{a}:c", 1]
    assert redis_server.cmd("PUBLISH", "rc:{a}:c", "r1:1:e:x") == 1
    assert sub.reply() == [b"message", b"rc:{a}:c", b"r1:1:e:x"]
    sub.close()


def test_errors_raise(redis_server):
    with pytest.raises(RedisError):
        redis_server.cmd("NOSUCHCOMMAND")
