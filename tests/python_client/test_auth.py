"""Connection tokens (docs/auth.md) from the Python client: the token goes first on every
connection (WebSocket, TCP line and framed), get_token is asked again on a reconnect and
before exp (so the server never closes with 4002), and a refused fixed token ends the
client."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import roomcast

from conftest import Proxy, client_for, make_server, run, server_port, until

SECRET = "python-client-auth-secret-0123456789"
KINDS = ["ws", "tcp", "framed"]


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def token(sub: str, ttl: int | None = 300) -> str:
    c: dict[str, Any] = {"sub": sub}
    if ttl is not None:
        c["exp"] = int(time.time()) + ttl
    signing = f"{b64u(json.dumps({'alg': 'HS256'}).encode())}.{b64u(json.dumps(c).encode())}"
    mac = hmac.new(SECRET.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64u(mac)}"


@pytest.fixture(scope="module")
def server():
    srv = make_server("--jwt-secret", SECRET, "--jwt-leeway", "0")
    try:
        yield srv
        srv.stop()
    finally:
        srv.cleanup()


@pytest.mark.parametrize("kind", KINDS)
def test_the_token_goes_first_and_messages_carry_the_user(server, kind):
    async def main():
        async with client_for(server, kind, token=token("pyuser")) as c:
            room = await c.join(f"auth-{kind}")
            await room.publish({"text": "hi", "user": "someone else"})
            msg = await room.recv(timeout=10)
            assert msg["user"] == "pyuser" and msg["text"] == "hi"
            assert c.user == "pyuser" and c.token_exp is not None

    run(main())


def test_get_token_is_asked_on_reconnect_and_before_exp(server):
    async def main():
        asked: list[float] = []

        def get_token() -> str:
            asked.append(time.time())
            return token("refresher", ttl=3)

        async with Proxy(server.port) as proxy, \
                client_for(server, "ws", port=proxy.port, get_token=get_token,
                           refresh_before=30) as c:
            room = await c.join("auth-refresh")
            first_exp = c.token_exp
            assert first_exp is not None
            # refreshed halfway through each 3-second life: past the first token's exp (when
            # the server would have closed it with 4002) the connection is still the same one
            await until(lambda: time.time() > first_exp + 1.5, timeout=10, what="first exp")
            assert c.token_exp is not None and c.token_exp > first_exp
            assert c.reconnects == 0 and c.status == "open" and c.close_code is None
            await room.publish({"n": 1})
            assert (await room.recv(timeout=10))["user"] == "refresher"
            n = len(asked)
            proxy.cut()
            await until(lambda: c.reconnects == 1 and room.joined, what="the rejoin")
            assert len(asked) > n

    run(main())


def test_a_refused_fixed_token_ends_the_client(server):
    async def main():
        c = client_for(server, "ws", token=token("late", ttl=-10))
        await c.connect()
        await c.wait_closed()
        assert c.close_code == 4001 and c.status == "closed"
        with pytest.raises(roomcast.ClientClosed) as e:
            await c.join("never")
        assert e.value.code == "unauthenticated"

    run(main())
