"""SIGHUP reloads the configuration file against the real binary: live keys take effect
without dropping anyone, keys that need a restart are reported and keep their running value,
a file with errors changes nothing (file:line in the log), the command line still wins over
the file, and clients publishing through a series of reloads lose nothing."""

import asyncio
import json
import signal

import websockets

from conftest import IO_TIMEOUT, Server, http_exchange


def call(srv, method, path, body=None, key=None):
    b = b"" if body is None else json.dumps(body).encode()
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    length = f"Content-Length: {len(b)}\r\n" if body is not None else ""
    raw = (f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}{length}Connection: close\r\n\r\n"
           ).encode() + b
    status, _headers, _body = http_exchange(srv.port, raw)
    return status


def key_status(srv, key):
    """401 when key is refused; 404 (no such client) when the API accepted it."""
    return call(srv, "DELETE", "/api/clients/999999", None, key)


def reload(srv, conf, text, expect_ok=True):
    """Rewrite the config file, send SIGHUP and wait until the server has dealt with it."""
    before = srv.stats()["config"]
    conf.write_text(text)
    srv.proc.send_signal(signal.SIGHUP)
    key = "reloads" if expect_ok else "reload_failures"
    return srv.wait_stats(lambda st: st["config"][key] == before[key] + 1,
                          what=f"config.{key} == {before[key] + 1}")


def test_live_key_applies_and_restart_key_waits(tmp_path):
    conf = tmp_path / "roomcast.conf"
    conf.write_text("api-key first-key-0123\nhistory-size 100\n")
    srv = Server("--config", conf)
    try:
        assert srv.stats()["config"]["file"] == str(conf)
        assert key_status(srv, "first-key-0123") == 404
        st = reload(srv, conf, "api-key second-key-4567\nhistory-size 7\nmax-message-size 2048\nport 1\n")
        # api-key is live: the old key is refused at once, the new one works
        assert key_status(srv, "first-key-0123") == 401
        assert key_status(srv, "second-key-4567") == 404
        # history-size and max-message-size need a restart: reported, and the running values
        # stay; port is given on the command line (--port 0), which wins over the file
        assert st["history"]["size"] == 100
        pending = st["config"]["restart_needed"].split(",")
        assert sorted(pending) == ["history-size", "max-message-size"], st["config"]
        err = srv.stderr()
        assert "history-size changed in" in err and "needs a restart" in err
        assert "api-key changed: applied" in err
        # the key never shows up in the log
        assert "second-key-4567" not in err and "first-key-0123" not in err
        metrics = http_exchange(srv.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                                b"Connection: close\r\n\r\n")[2].decode()
        assert "roomcast_config_reloads_total 1" in metrics
        assert "roomcast_config_restart_needed 2" in metrics
        # setting the file back to the running values clears the list
        st = reload(srv, conf, "api-key second-key-4567\nhistory-size 100\n")
        assert st["config"]["restart_needed"] == ""
        srv.stop()
    finally:
        srv.cleanup()


def test_bad_file_changes_nothing(tmp_path):
    conf = tmp_path / "roomcast.conf"
    conf.write_text("api-key good-key-0123\n")
    srv = Server("--config", conf)
    try:
        st = reload(srv, conf, "api-key other-key-4567\nportt 9\nmax-rooms-per-client x\n",
                    expect_ok=False)
        assert st["config"]["reloads"] == 0
        err = srv.stderr()
        assert f"{conf}:2:" in err and f"{conf}:3:" in err, err
        assert "the running configuration stays" in err
        assert key_status(srv, "good-key-0123") == 404   # nothing from the bad file
        assert key_status(srv, "other-key-4567") == 401
        # a missing file is a failed reload too, not a crash
        before = srv.stats()["config"]["reload_failures"]
        conf.unlink()
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_stats(lambda s: s["config"]["reload_failures"] == before + 1)
        assert key_status(srv, "good-key-0123") == 404
        # fixed: the next reload applies
        reload(srv, conf, "api-key other-key-4567\n")
        assert key_status(srv, "other-key-4567") == 404
        srv.stop()
    finally:
        srv.cleanup()


async def join(ws, room):
    await ws.send(json.dumps({"type": "join", "room": room}))
    return json.loads(await asyncio.wait_for(ws.recv(), IO_TIMEOUT))


def test_room_limit_is_live_and_command_line_wins(tmp_path):
    conf = tmp_path / "roomcast.conf"
    conf.write_text("max-rooms-per-client 5\nping-interval 30\n")
    srv = Server("--config", conf)
    flagged = Server("--config", conf, "--max-rooms-per-client", "5")
    try:
        reload(srv, conf, "max-rooms-per-client 1\nping-interval 30\n")
        flagged.proc.send_signal(signal.SIGHUP)
        flagged.wait_stats(lambda s: s["config"]["reloads"] == 1)

        async def main():
            async with websockets.connect(srv.ws_url) as ws:
                assert (await join(ws, "a"))["type"] == "joined"
                r = await join(ws, "b")
                assert r["type"] == "error" and r["code"] == "too_many_rooms", r
            async with websockets.connect(flagged.ws_url) as ws:
                for room in ("a", "b", "c"):   # the flag's 5, not the file's 1
                    assert (await join(ws, room))["type"] == "joined"

        asyncio.run(main())
        srv.stop()
        flagged.stop()
    finally:
        srv.cleanup()
        flagged.cleanup()


def test_reloads_under_traffic_lose_nothing(tmp_path):
    conf = tmp_path / "roomcast.conf"
    conf.write_text("log-level info\n")
    srv = Server("--config", conf)
    try:
        n = 600

        async def main():
            async with websockets.connect(srv.ws_url) as sub, \
                    websockets.connect(srv.ws_url, max_queue=None) as pub:
                assert (await join(sub, "r"))["type"] == "joined"
                assert (await join(pub, "r"))["type"] == "joined"

                async def send():
                    for i in range(n):
                        await pub.send(json.dumps({"type": "m", "room": "r", "i": i}))
                        if i % 100 == 50:
                            level = "debug" if (i // 100) % 2 else "info"
                            conf.write_text(f"log-level {level}\nmax-rooms-per-client 8\n")
                            srv.proc.send_signal(signal.SIGHUP)
                            await asyncio.sleep(0.01)

                sender = asyncio.create_task(send())
                got = []
                while len(got) < n:
                    m = json.loads(await asyncio.wait_for(sub.recv(), IO_TIMEOUT))
                    if m.get("type") == "m":
                        got.append(m)
                await sender
                assert [m["i"] for m in got] == list(range(n))
                ids = [m["msg_id"] for m in got]
                assert ids == list(range(ids[0], ids[0] + n))

        asyncio.run(main())
        st = srv.wait_stats(lambda s: s["config"]["reloads"] >= 1)
        assert st["connections"] <= 1 and st["config"]["reload_failures"] == 0
        srv.stop()
    finally:
        srv.cleanup()


def test_without_config_file_sighup_rereads_files_only():
    srv = Server()
    try:
        srv.proc.send_signal(signal.SIGHUP)
        st = srv.wait_stats(lambda s: s["config"]["reloads"] == 1)
        assert st["config"]["file"] is None and st["config"]["restart_needed"] == ""
        assert "no --config" in srv.stderr()
        srv.stop()
    finally:
        srv.cleanup()


def test_abuse_limits_are_live(tmp_path):
    conf = tmp_path / "roomcast.conf"
    conf.write_text("allowed-origins https://a.example\n")
    srv = Server("--config", conf)
    try:
        async def origin_ok(origin):
            try:
                async with websockets.connect(srv.ws_url, origin=origin):
                    return True
            except websockets.InvalidStatusCode as e:   # websockets 10 (Debian 12)
                assert e.status_code == 403
                return False

        assert asyncio.run(origin_ok("https://a.example"))
        assert not asyncio.run(origin_ok("https://b.example"))
        reload(srv, conf, "allowed-origins https://a.example,https://b.example\n")
        assert asyncio.run(origin_ok("https://b.example"))
        srv.stop()
    finally:
        srv.cleanup()


def hs256(claims, secret):
    import base64
    import hashlib
    import hmac

    def b64u(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    signing = (f"{b64u(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}."
               f"{b64u(json.dumps(claims).encode())}")
    sig = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64u(sig)}"


def test_token_keys_and_namespace_rules_are_live(tmp_path):
    """A key rotated in the file takes over for new connections (open ones keep their
    identity); a namespace rule tightened in the file refuses the next join."""
    import time
    old, new = "old-secret-0123456789abcdef0123456789", "new-secret-0123456789abcdef0123456789"
    conf = tmp_path / "roomcast.conf"
    ns_open = "namespace game\n  join anyone\nend\n"
    ns_closed = "namespace game\n  join authenticated\nend\n"
    conf.write_text(f"jwt-secret {old}\nallow-anonymous\n{ns_open}")
    srv = Server("--config", conf)
    claims = {"sub": "alice", "exp": int(time.time()) + 300}
    try:
        async def session(token, room):
            """Authenticate with token (None: anonymous), then join room: (auth reply, join
            reply)."""
            async with websockets.connect(srv.ws_url) as ws:
                first = None
                if token:
                    await ws.send(json.dumps({"type": "auth", "token": token}))
                    try:
                        first = json.loads(await asyncio.wait_for(ws.recv(), IO_TIMEOUT))
                    except websockets.ConnectionClosed as e:
                        return {"closed": e.code, "reason": e.reason}, None
                return first, await join(ws, room)

        async def main():
            # before: the old key works, anyone may join game:*
            a, j = await session(hs256(claims, old), "game:1")
            assert a["type"] == "authenticated" and j["type"] == "joined", (a, j)
            _, j = await session(None, "game:1")
            assert j["type"] == "joined", j
            async with websockets.connect(srv.ws_url) as kept:
                await kept.send(json.dumps({"type": "auth", "token": hs256(claims, old)}))
                assert json.loads(await kept.recv())["type"] == "authenticated"
                # rotate the key and close the namespace
                reload(srv, conf, f"jwt-secret {new}\nallow-anonymous\n{ns_closed}")
                a, _ = await session(hs256(claims, old), "game:1")   # the old key is refused
                assert a == {"closed": 4001, "reason": "invalid token: bad_signature"}, a
                a, j = await session(hs256(claims, new), "game:1")
                assert a["type"] == "authenticated" and j["type"] == "joined", (a, j)
                _, j = await session(None, "game:1")
                assert j["type"] == "error" and j["code"] == "unauthenticated", j
                # the connection authenticated before the reload keeps its identity
                r = await join(kept, "game:2")
                assert r["type"] == "joined" and r.get("user") == "alice", r

        asyncio.run(main())
        srv.stop()
    finally:
        srv.cleanup()
