"""Who may do what (docs/auth.md): connection tokens at the upgrade, in a first auth message and
over raw TCP; every refusal reason of the verifier as the server reports it; refresh and the
close at expiry; "user" on messages, presence and the API; and the permission matrix of the
namespace rules and token grants, all against the real binary.

Tokens are made here at test time: HS* with hmac/hashlib, RS256 and ES256 with Debian's
python3-jwt over keys python3-cryptography generates."""

import base64
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import time
import uuid

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import IO_TIMEOUT, RawWS, Server, http_exchange, ws_request
from rawtcp import LineClient, api, room_path

SECRET = "roomcast-test-secret-0123456789abcdef"      # 37 bytes, >= 32
SECRET2 = "a second secret: with = and : inside it, kid k2"
API_KEY = "auth-test-api-key-0123456789"
ISS = "https://issuer.test"
AUD = "roomcast-test"

CONFIG = """
# written by tests/integration/test_auth.py
namespace members
  join authenticated
  publish authenticated
end
namespace vip
  join granted
  publish granted
end
namespace ro
  join anyone
  publish granted
end
namespace nohist
  history off
  recovery off
  presence off
end
namespace small
  max-members 2
end
"""


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def hs_token(claims, secret=SECRET, alg="HS256", kid=None, header=None):
    h = {"alg": alg, "typ": "JWT"}
    if kid:
        h["kid"] = kid
    if header:
        h.update(header)
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing = f"{b64u(json.dumps(h).encode())}.{b64u(json.dumps(claims).encode())}"
    sec = secret if isinstance(secret, bytes) else secret.encode()
    return f"{signing}.{b64u(hmac.new(sec, signing.encode(), digest).digest())}"


def claims(sub="alice", ttl=300, **kw):
    now = int(time.time())
    c = {"sub": sub, "iss": ISS, "aud": AUD, "iat": now}
    if ttl is not None:
        c["exp"] = now + ttl
    c.update(kw)
    return c


def rn(ns=None):
    name = "r-" + uuid.uuid4().hex[:8]
    return f"{ns}:{name}" if ns else name


@pytest.fixture(scope="module")
def keys():
    d = tempfile.mkdtemp(prefix="roomcast-auth-")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = serialization.Encoding.PEM
    out = {"dir": d, "rsa": rsa_key, "ec": ec_key}
    for name, k in (("rsa", rsa_key), ("ec", ec_key)):
        pub = k.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
        out[name + "_pub"] = pub
        with open(os.path.join(d, name + ".pem"), "wb") as f:
            f.write(pub)
        out[name + "_priv"] = k.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())
    with open(os.path.join(d, "k2.secret"), "w") as f:
        f.write(SECRET2 + "\n")              # one trailing newline is dropped
    with open(os.path.join(d, "roomcast.conf"), "w") as f:
        f.write(CONFIG)
    yield out
    shutil.rmtree(d, ignore_errors=True)


def key_flags(keys):
    d = keys["dir"]
    return ["--config", os.path.join(d, "roomcast.conf"), "--jwt-secret", SECRET,
            "--jwt-secret-file", "k2=" + os.path.join(d, "k2.secret"),
            "--jwt-public-key", "rsa=" + os.path.join(d, "rsa.pem"),
            "--jwt-public-key", "ec=" + os.path.join(d, "ec.pem"),
            "--jwt-issuer", ISS, "--jwt-audience", AUD, "--api-key", API_KEY]


@pytest.fixture(scope="module")
def server(keys):
    """Tokens on, anonymous connections allowed: the permission matrix."""
    srv = Server(*key_flags(keys), "--allow-anonymous", "--tcp-port", "0")
    try:
        yield srv
        srv.stop()
    finally:
        srv.cleanup()


@pytest.fixture(scope="module")
def strict(keys):
    """Tokens on, no anonymous connections: must authenticate first."""
    srv = Server(*key_flags(keys), "--tcp-port", "0", "--auth-timeout", "1")
    try:
        yield srv
        srv.stop()
    finally:
        srv.cleanup()


def rs_token(keys, c, kid="rsa"):
    return pyjwt.encode(c, keys["rsa_priv"], algorithm="RS256", headers={"kid": kid} if kid else None)


def es_token(keys, c, kid="ec"):
    return pyjwt.encode(c, keys["ec_priv"], algorithm="ES256", headers={"kid": kid})


def connect(srv, token=None, header=None):
    """A WebSocket with the token in the URL or the Authorization header; returns the client and
    the server's `authenticated` message (None without a token)."""
    extra = [("Authorization", f"Bearer {header}")] if header else ()
    ws = RawWS.connect(srv.port, path="/" + (f"?token={token}" if token else ""), extra=extra)
    hello = ws.recv_json() if (token or header) else None
    return ws, hello


def upgrade(srv, token=None, header=None):
    extra = [("Authorization", f"Bearer {header}")] if header else ()
    req, _ = ws_request("/" + (f"?token={token}" if token else ""), extra=extra)
    return http_exchange(srv.port, req)


def stats(srv):
    status, body = api(srv, "GET", "/api/stats")
    assert status == 200
    return body


def metrics(srv):
    status, body = api(srv, "GET", "/metrics")
    assert status == 200
    return body.decode()


# ---- the verifier, as the upgrade reports it ------------------------------------------------

def refusal_cases(keys):
    none_hdr = b64u(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return {
        "expired": hs_token(claims(ttl=-10)),
        "not_yet_valid": hs_token(claims(nbf=int(time.time()) + 600)),
        "bad_audience": hs_token(claims(aud="someone-else")),
        "bad_issuer": hs_token(claims(iss="https://evil.test")),
        "bad_signature": hs_token(claims(), secret="not-the-secret-but-32-bytes-long!!"),
        "alg_none": f"{none_hdr}.{b64u(json.dumps(claims()).encode())}.",
        # the classic confusion: HS256 keyed with the server's RSA public key (public!)
        "confusion": hs_token(claims(), secret=keys["rsa_pub"]),
        "unknown_kid": hs_token(claims(), kid="nobody"),
        "no_sub": hs_token({k: v for k, v in claims().items() if k != "sub"}),
        "malformed": "not-a-token",
    }


EXPECTED_REASON = {"confusion": "bad_signature"}


@pytest.mark.parametrize("case", ["expired", "not_yet_valid", "bad_audience", "bad_issuer",
                                  "bad_signature", "alg_none", "confusion", "unknown_kid",
                                  "no_sub", "malformed"])
@pytest.mark.parametrize("where", ["query", "header"])
def test_a_bad_token_at_the_upgrade_is_refused_with_401_and_its_reason(server, keys, case, where):
    token = refusal_cases(keys)[case]
    reason = EXPECTED_REASON.get(case, case)
    before = stats(server)
    status, headers, body = upgrade(server, **{"token" if where == "query" else "header": token})
    assert status == 401, (status, body)
    assert headers["www-authenticate"] == \
        f'Bearer error="invalid_token", error_description="{reason}"'
    assert json.loads(body)["error"] == f"invalid token: {reason}"
    after = stats(server)
    assert after["auth"]["results"][reason] == before["auth"]["results"][reason] + 1
    assert after["errors"]["http_401"] == before["errors"]["http_401"] + 1


def test_good_tokens_of_every_algorithm_and_kid(server, keys):
    cases = [
        ("hs256", hs_token(claims("u1"))),
        ("hs384", hs_token(claims("u2"), alg="HS384")),
        ("hs512", hs_token(claims("u3"), alg="HS512")),
        ("kid k2 (secret file)", hs_token(claims("u4"), secret=SECRET2, kid="k2")),
        ("rs256 kid", rs_token(keys, claims("u5"))),
        ("rs256 no kid", rs_token(keys, claims("u6"), kid=None)),
        ("es256", es_token(keys, claims("u7"))),
    ]
    for name, token in cases:
        ws, hello = connect(server, token=token)
        c = pyjwt.decode(token, options={"verify_signature": False})
        assert hello["type"] == "authenticated", name
        assert hello["user"] == c["sub"] and hello["exp"] == c["exp"], (name, hello)
        ws.close()
    # The secret file's secret was read without its newline: signed with the newline it fails.
    status, headers, _ = upgrade(server, token=hs_token(claims(), secret=SECRET2 + "\n", kid="k2"))
    assert status == 401 and "bad_signature" in headers["www-authenticate"]


def test_rsa_signature_under_the_ec_kid_is_refused(server, keys):
    status, headers, _ = upgrade(server, token=rs_token(keys, claims(), kid="ec"))
    assert status == 401
    assert "unsupported_alg" in headers["www-authenticate"]


# ---- the first message, raw TCP, the timeout ------------------------------------------------

def test_without_a_token_the_first_message_must_be_auth(strict):
    ws, _ = connect(strict)
    ws.send_json({"type": "join", "room": rn()})
    ws.expect_close(4001)
    ws.close()
    # binary first: the same
    ws, _ = connect(strict)
    ws.send_binary(b"\x00hello")
    ws.expect_close(4001)
    ws.close()


def test_first_message_auth_then_rooms(strict):
    ws, _ = connect(strict)
    ws.send_json({"type": "auth", "token": hs_token(claims("dora"))})
    hello = ws.recv_json()
    assert hello["type"] == "authenticated" and hello["user"] == "dora"
    room = rn()
    ws.send_json({"type": "join", "room": room})
    joined = ws.recv_json()
    assert joined["type"] == "joined" and joined["user"] == "dora"
    ws.send_json({"text": "hi"})
    msg = ws.recv_json()
    assert msg["user"] == "dora" and msg["text"] == "hi"
    ws.close()


def test_a_bad_token_in_the_auth_message_closes_with_its_reason(strict):
    ws, _ = connect(strict)
    ws.send_json({"type": "auth", "token": hs_token(claims(ttl=-5))})
    ws.expect_close(4001, "invalid token: expired")
    ws.close()
    ws, _ = connect(strict)
    ws.send_json({"type": "auth", "token": 42})
    ws.expect_close(4001, "invalid token: malformed")
    ws.close()


def test_no_auth_message_in_time_closes_4001(strict):
    before = stats(strict)
    ws, _ = connect(strict)
    ws.expect_close(4001, "unauthenticated: no auth message in time")
    ws.close()
    assert stats(strict)["auth"]["results"]["timeout"] == before["auth"]["results"]["timeout"] + 1


def test_anonymous_upgrade_with_a_token_header_is_still_admitted_strictly(strict):
    ws, hello = connect(strict, header=hs_token(claims("erin")))
    assert hello["user"] == "erin"
    ws.send_json({"type": "join", "room": rn()})
    assert ws.recv_json()["type"] == "joined"
    ws.close()


def test_raw_tcp_authenticates_with_its_first_line(strict, keys):
    c = LineClient.connect(strict.tcp_port)
    c.send_line({"type": "join", "room": rn()})
    c.expect_close(4001)
    c.close()
    c = LineClient.connect(strict.tcp_port)
    c.send_line({"type": "auth", "token": es_token(keys, claims("tcp-user"))})
    hello = c.recv_json()
    assert hello["type"] == "authenticated" and hello["user"] == "tcp-user"
    room = rn()
    c.join(room)
    c.send_line({"room": room, "n": 1, "user": "forged"})
    msg = c.recv_json()
    assert msg["user"] == "tcp-user" and msg["n"] == 1
    c.close()


def test_the_chat_port_is_refused_without_anonymous_access(keys, start_server):
    srv = start_server(*key_flags(keys), "--chat-port", "0")
    import socket
    s = socket.create_connection(("127.0.0.1", srv.chat_port), timeout=IO_TIMEOUT)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    assert stats(srv)["auth"]["results"]["missing"] == 1


# ---- refresh and expiry ---------------------------------------------------------------------

def test_refresh_before_exp_keeps_the_connection_and_exp_without_refresh_closes_4002(keys,
                                                                                   start_server):
    srv = start_server(*key_flags(keys), "--jwt-leeway", "0")
    room = rn()
    # a connection that refreshes its 4-second token, and one that does not
    a, hello_a = connect(srv, token=hs_token(claims("fred", ttl=4)))
    b, hello_b = connect(srv, token=hs_token(claims("gina", ttl=4)))
    a.send_json({"type": "join", "room": room})
    assert a.recv_json()["type"] == "joined"
    fresh = hs_token(claims("fred", ttl=600, rooms={"vip:x": "r"}))
    a.send_json({"type": "auth", "token": fresh})
    again = a.recv_json()
    assert again["type"] == "authenticated" and again["user"] == "fred"
    assert again["exp"] > hello_a["exp"]
    # b is closed at its exp (the server's timer, no message needed)
    b.expect_close(4002, "token expired")
    b.close()
    # a is past its first token's exp and still served, with the new grants
    while time.time() < hello_a["exp"] + 1:
        time.sleep(0.2)
    a.send_json({"type": "join", "room": "vip:x"})
    assert a.recv_json()["type"] == "joined"
    a.send_json({"room": room, "ok": True})
    assert a.recv_json()["user"] == "fred"
    s = stats(srv)["auth"]
    assert s["expired"] == 1 and s["refreshed"] == 1 and s["users"] == 1
    m = metrics(srv)
    assert "roomcast_auth_expired_total 1" in m
    assert 'roomcast_auth_refreshes_total{result="ok"} 1' in m
    assert "roomcast_authenticated_connections 1" in m
    a.close()


def test_a_refresh_must_keep_the_sub(server):
    ws, _ = connect(server, token=hs_token(claims("hank")))
    ws.send_json({"type": "auth", "token": hs_token(claims("ivan"))})
    err = ws.recv_json()
    assert err["type"] == "error" and err["code"] == "forbidden"
    # still hank
    room = rn()
    ws.send_json({"type": "join", "room": room})
    assert ws.recv_json()["user"] == "hank"
    ws.close()


def test_an_anonymous_connection_may_authenticate_later(server):
    ws, _ = connect(server)
    room = rn("members")
    ws.send_json({"type": "join", "room": room})
    assert ws.recv_json()["code"] == "unauthenticated"
    ws.send_json({"type": "auth", "token": hs_token(claims("judy"))})
    assert ws.recv_json()["user"] == "judy"
    ws.send_json({"type": "join", "room": room})
    assert ws.recv_json()["type"] == "joined"
    ws.close()


def test_a_session_is_claimed_only_by_its_user(server):
    a, _ = connect(server, token=hs_token(claims("owner")))
    a.send_json({"type": "join", "room": rn()})
    session = a.recv_json()["session"]
    a.close()
    for token in (hs_token(claims("thief")), None):
        b, _ = connect(server, token=token)
        b.send_json({"type": "join", "room": rn(), "session": session})
        err = b.recv_json()
        assert err["type"] == "error" and err["code"] == "forbidden", err
        b.close()
    c, _ = connect(server, token=hs_token(claims("owner")))
    c.send_json({"type": "join", "room": rn(), "session": session})
    assert c.recv_json()["session"] == session
    c.close()


# ---- user on messages, presence, the API ----------------------------------------------------

def test_user_on_messages_presence_and_the_api(server):
    room = rn()
    watcher, _ = connect(server, token=hs_token(claims("kate")))
    watcher.send_json({"type": "join", "room": room, "presence": True})
    assert watcher.recv_json()["type"] == "joined"
    anon, _ = connect(server)
    anon.send_json({"type": "join", "room": room})
    assert anon.recv_json()["type"] == "joined"
    ev = watcher.recv_json()
    assert ev["type"] == "presence" and ev["event"] == "join" and "user" not in ev
    user, _ = connect(server, token=hs_token(claims("liam")))
    user.send_json({"type": "join", "room": room, "presence": True})
    joined = user.recv_json()
    ids = {joined["client_id"]: "liam"}
    assert joined["users"][str(joined["client_id"])] == "liam"
    assert "kate" in joined["users"].values() and len(joined["users"]) == 2
    ev = watcher.recv_json()
    assert ev["event"] == "join" and ev["user"] == "liam"
    # a client's own "user" is replaced (authenticated) or removed (anonymous)
    user.send_text('{"user":"kate","text":"from liam"}')
    m = watcher.recv_json()
    assert m["user"] == "liam" and m["text"] == "from liam"
    assert m["client_id"] in ids
    anon.send_text('{"user":"kate","text":"from anon"}')
    m = watcher.recv_json()
    assert "user" not in m and m["text"] == "from anon"
    status, view = api(server, "GET", room_path(room), key=API_KEY)
    assert status == 200
    assert sorted(view["users"].values()) == ["kate", "liam"]
    assert len(view["clients"]) == 3
    for c in (watcher, anon, user):
        c.close()


def test_without_keys_nothing_changes(start_server):
    srv = start_server()
    ws, _ = connect(srv)
    room = rn("vip")
    ws.send_json({"type": "join", "room": room})
    assert ws.recv_json()["type"] == "joined"
    ws.send_text('{"user":"anyone","text":"kept"}')
    m = ws.recv_json()
    assert m["user"] == "anyone"
    ws.send_json({"type": "auth", "token": "x.y.z"})
    assert ws.recv_json()["code"] == "bad_field"
    s = stats(srv)["auth"]
    assert s["keys"] == 0 and s["users"] == 0
    ws.close()


# ---- the permission matrix --------------------------------------------------------------------

WHO = {
    "anon": None,
    "user": lambda: hs_token(claims("mia")),
    "granted": lambda: hs_token(claims("nia", rooms={"vip:*": "rw", "ro:*": "w",
                                                    "vip:readonly": "r"})),
}

# (namespace, who) -> (join result, publish result); "ok" or an error code
MATRIX = {
    (None, "anon"): ("ok", "ok"),
    (None, "user"): ("ok", "ok"),
    ("members", "anon"): ("unauthenticated", None),
    ("members", "user"): ("ok", "ok"),
    ("vip", "anon"): ("unauthenticated", None),
    ("vip", "user"): ("forbidden", None),
    ("vip", "granted"): ("ok", "ok"),
    ("ro", "anon"): ("ok", "unauthenticated"),
    ("ro", "user"): ("ok", "forbidden"),
    ("ro", "granted"): ("ok", "ok"),
}


@pytest.mark.parametrize("ns,who", sorted(MATRIX, key=str))
@pytest.mark.parametrize("transport", ["ws", "tcp"])
def test_permission_matrix(server, ns, who, transport):
    join_want, pub_want = MATRIX[(ns, who)]
    token = WHO[who]() if WHO[who] else None
    room = rn(ns)
    if transport == "ws":
        c, _ = connect(server, token=token)
        send, recv = c.send_json, c.recv_json
    else:
        c = LineClient.connect(server.tcp_port)
        send, recv = c.send_line, c.recv_json
        if token:
            send({"type": "auth", "token": token})
            assert recv()["type"] == "authenticated"
    send({"type": "join", "room": room})
    r = recv()
    if join_want == "ok":
        assert r["type"] == "joined", r
    else:
        assert r["type"] == "error" and r["code"] == join_want and r["room"] == room, r
    if pub_want is not None:
        send({"room": room, "x": 1})
        r = recv()
        if pub_want == "ok":
            assert r.get("x") == 1 and "msg_id" in r, r
        else:
            assert r["type"] == "error" and r["code"] == pub_want, r
    c.close()


def test_exact_grant_narrows_a_pattern_and_binary_publishes_are_checked(server):
    ws, _ = connect(server, token=WHO["granted"]())
    ws.send_json({"type": "join", "room": "vip:readonly"})
    assert ws.recv_json()["type"] == "joined"
    ws.send_json({"room": "vip:readonly", "x": 1})
    assert ws.recv_json()["code"] == "forbidden"
    room = b"vip:readonly"
    ws.send_binary(bytes([len(room)]) + room + b"payload")
    err = ws.recv_json()
    assert err["code"] == "forbidden" and err["room"] == "vip:readonly"
    ws.close()
    # anonymous binary into a publish-granted namespace
    ws, _ = connect(server)
    ws.send_json({"type": "join", "room": "ro:bin"})
    assert ws.recv_json()["type"] == "joined"
    ws.send_binary(b"\x06ro:bin" + b"data")
    assert ws.recv_json()["code"] == "unauthenticated"
    ws.close()


def test_roomcast_publish_service_is_held_to_the_publish_rule(server):
    ws, _ = connect(server)
    ws.send_json({"type": "join", "room": "ro:svc"})
    assert ws.recv_json()["type"] == "joined"
    ws.send_json({"type": "request", "service": "roomcast.publish", "id": 1,
                  "body": {"room": "ro:svc", "message": {"x": 1}}})
    r = ws.recv_json()
    assert r["type"] == "error" and r["code"] == "forbidden", r
    ws.close()


def test_history_recovery_and_presence_switches(server):
    room = rn("nohist")
    ws, _ = connect(server)
    for extra, what in (({"history": 5}, "history"), ({"presence": True}, "presence")):
        ws.send_json({"type": "join", "room": room, **extra})
        err = ws.recv_json()
        assert err["type"] == "error" and err["code"] == "forbidden", (what, err)
    ws.send_json({"type": "join", "room": room})
    joined = ws.recv_json()
    assert joined["type"] == "joined"
    # a message, then a rejoin "since" 0 in the right epoch: recoverable, but recovery is off
    ws.send_json({"room": room, "n": 1})
    assert ws.recv_json()["n"] == 1
    before = stats(server)
    ws.send_json({"type": "join", "room": room, "since": 0, "epoch": joined["epoch"]})
    again = ws.recv_json()
    assert again["type"] == "joined" and again["recovered"] is False, again
    after = stats(server)
    assert after["auth"]["refused"]["recovery"]["forbidden"] == \
        before["auth"]["refused"]["recovery"]["forbidden"] + 1
    # in a namespace with recovery the same rejoin recovers
    room2 = rn()
    ws.send_json({"type": "join", "room": room2})
    j2 = ws.recv_json()
    ws.send_json({"room": room2, "n": 2})
    assert ws.recv_json()["n"] == 2
    ws.send_json({"type": "join", "room": room2, "since": 0, "epoch": j2["epoch"]})
    assert ws.recv_json()["recovered"] is True
    assert ws.recv_json()["n"] == 2            # the recovered message
    # the same requests in a namespace that offers them
    other = rn()
    ws.send_json({"type": "join", "room": other, "history": 5, "presence": True})
    assert ws.recv_json()["type"] == "joined"
    ws.close()


def test_max_members_refuses_with_room_full(server):
    room = rn("small")
    a, _ = connect(server)
    b, _ = connect(server)
    c, _ = connect(server)
    for x in (a, b):
        x.send_json({"type": "join", "room": room})
        assert x.recv_json()["type"] == "joined"
    before = stats(server)
    c.send_json({"type": "join", "room": room})
    err = c.recv_json()
    assert err["code"] == "room_full" and err["room"] == room
    # a member joining again is not refused
    a.send_json({"type": "join", "room": room})
    assert a.recv_json()["type"] == "joined"
    after = stats(server)
    assert after["errors"]["room_full"] == before["errors"]["room_full"] + 1
    assert after["auth"]["refused"]["join"]["room_full"] == \
        before["auth"]["refused"]["join"]["room_full"] + 1
    m = metrics(server)
    assert 'roomcast_permission_refusals_total{action="join",code="room_full"}' in m
    for x in (a, b, c):
        x.close()


def test_the_api_bypasses_the_rules(server):
    room = rn("vip")
    granted, _ = connect(server, token=WHO["granted"]())
    granted.send_json({"type": "join", "room": room})
    assert granted.recv_json()["type"] == "joined"
    status, body = api(server, "POST", room_path(room, "/messages"), {"from": "backend"},
                       key=API_KEY)
    assert status == 200, body
    m = granted.recv_json()
    assert m["from"] == "backend" and m["client_id"] == 0
    granted.close()


def test_check_config_loads_the_key_files(keys, tmp_path):
    import subprocess
    from conftest import roomcast_bin
    ok = subprocess.run([roomcast_bin(), *key_flags(keys), "--check-config"],
                        capture_output=True, text=True, timeout=IO_TIMEOUT)
    assert ok.returncode == 0, ok.stderr
    missing = str(tmp_path / "missing.pem")
    bad = subprocess.run([roomcast_bin(), "--jwt-public-key", "kid1=" + missing,
                          "--check-config"], capture_output=True, text=True, timeout=IO_TIMEOUT)
    assert bad.returncode == 1 and missing in bad.stderr, bad.stderr
    short = subprocess.run([roomcast_bin(), "--jwt-secret", "tiny-s3cret", "--check-config"],
                           capture_output=True, text=True, timeout=IO_TIMEOUT)
    # refused, and the secret is never quoted
    assert short.returncode == 1 and "32 bytes" in short.stderr, short.stderr
    assert "tiny-s3cret" not in short.stderr
