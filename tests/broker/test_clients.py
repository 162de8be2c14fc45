"""Requests from roomcast's own clients: WebSocket and raw TCP JSON requests, HTTP
POST /api/services/{service}, GET /api/services, /metrics (docs/broker.md, "Requests from
WebSocket, TCP and HTTP clients"). roomcast only."""

import base64
import json
import time

import pytest
import websockets

import settings as S
from conftest import (LineClient, MdpWorker, PppWorker, http, start_worker, ws_recv_json,
                      ws_run, ws_url, worker_process, wait_until)

pytestmark = pytest.mark.roomcast_only


def _reply_of(m, rid):
    return m.get("id") == rid and m.get("type") in ("reply", "error")


def _b64(raw):
    """A request body of raw bytes (the test workers' b"sleep:S" must arrive as is; as "body"
    it would be the JSON string '"sleep:S"')."""
    return base64.b64encode(raw).decode()


AUTH = (f"Authorization: Bearer {S.TEST_API_KEY}",)


@pytest.fixture
def echo(broker, ctx, workers):
    start_worker(workers, MdpWorker, ctx, broker.worker_url, "e0", service="echo")
    broker.wait_workers("echo", 1)
    return broker


def test_ws_request_reply_json_body(echo):
    async def go():
        async with websockets.connect(ws_url(echo)) as ws:
            await ws.send('{"type":"request","service":"echo","id":7,"body":{"a": 1,  "b":[ ]}}')
            return await ws_recv_json(ws, lambda m: _reply_of(m, 7))
    m = ws_run(go())
    # the worker gets the JSON text as the client wrote it (decision: no re-serialisation)
    # and answers e0:<it>, which is not JSON: body_b64
    assert m["type"] == "reply", m
    assert base64.b64decode(m[S.BODY_B64]) == b'e0:{"a": 1,  "b":[ ]}', m


def test_ws_request_ids_any_json(echo):
    """The id comes back as sent: string or number."""
    async def go():
        async with websockets.connect(ws_url(echo)) as ws:
            for rid in ("abc", 3.5):
                await ws.send(json.dumps({"type": "request", "service": "echo", "id": rid,
                                          "body_b64": base64.b64encode(b"\x00\xff").decode()}))
                m = await ws_recv_json(ws, lambda m, rid=rid: _reply_of(m, rid))
                assert base64.b64decode(m[S.BODY_B64]) == b"e0:\x00\xff", m
    ws_run(go())


def test_ws_json_reply_body(broker, ctx):
    """A reply that parses as JSON comes back as "body"."""
    import zmq
    w = ctx.socket(zmq.DEALER)
    w.connect(broker.worker_url)
    w.send_multipart([b"", S.MDPW, S.W_READY, b"json"])
    broker.wait_workers("json", 1)

    async def go():
        async with websockets.connect(ws_url(broker)) as ws:
            await ws.send(json.dumps({"type": "request", "service": "json", "id": 1, "body": 5}))
            while True:
                if w.poll(50):
                    m = w.recv_multipart()
                    if m[2] == S.W_REQUEST:
                        assert m[5:] == [b"5"], m
                        w.send_multipart([b"", S.MDPW, S.W_REPLY, m[3], b"", b'{"ok":true}'])
                        break
            return await ws_recv_json(ws, lambda m: _reply_of(m, 1))
    m = ws_run(go())
    assert m == {"type": "reply", "id": 1, "body": {"ok": True}}, m
    w.close(0)


@pytest.mark.parametrize("service,code,flags", [
    ("nosuch", S.ERR_NO_SERVICE, (S.F_SERVICE_GRACE, 0.2)),
    ("slow", S.ERR_TIMEOUT, ()),
    ("big", S.ERR_TOO_LARGE, (S.F_MAX_MESSAGE, 1024)),   # the flag's minimum
])
def test_ws_errors(start_broker, ctx, workers, service, code, flags):
    """no_service: no worker ever registered the name (decision: answered at once, unless
    the name had workers before, then it waits like any request); timeout: no reply within
    --request-timeout; too_large: body over --broker-max-message. Every name queues during the
    first --service-grace after start-up (workers may not have connected yet): the no_service
    case runs with a short grace and asks after it."""
    b = start_broker(*flags)
    start_worker(workers, MdpWorker, ctx, b.worker_url, "s0", service="slow")
    start_worker(workers, MdpWorker, ctx, b.worker_url, "b0", service="big")
    b.wait_workers("slow", 1)
    body = b"sleep:30" if service == "slow" else b"x" * 2000
    if service == "nosuch":
        time.sleep(0.3)

    async def go():
        async with websockets.connect(ws_url(b)) as ws:
            await ws.send(json.dumps({"type": "request", "service": service, "id": 1,
                                      S.BODY_B64: _b64(body)}))
            return await ws_recv_json(ws, lambda m: _reply_of(m, 1),
                                      timeout=S.TEST_REQUEST_TIMEOUT + 5)
    m = ws_run(go())
    assert m.get("type") == "error" and m.get("code") == code, f"expected {code}: {m}"


def test_ws_overloaded(start_broker, ctx, workers):
    b = start_broker(S.F_SERVICE_QUEUE, 1)
    start_worker(workers, MdpWorker, ctx, b.worker_url, "s0", service="slow")
    b.wait_workers("slow", 1)

    async def go():
        async with websockets.connect(ws_url(b)) as ws:
            for i in range(3):   # 1 in flight, 1 queued, 1 refused
                await ws.send(json.dumps({"type": "request", "service": "slow", "id": i,
                                          S.BODY_B64: _b64(b"sleep:2")}))
            return await ws_recv_json(ws, lambda m: m.get("type") == "error")
    m = ws_run(go())
    assert m.get("code") == S.ERR_OVERLOADED and m.get("id") == 2, m


def test_ws_worker_lost_at_most_once(start_broker, ctx):
    b = start_broker(S.F_AT_MOST_ONCE, "once")
    p = worker_process(b, "mdp", "victim", service="once")
    b.wait_workers("once", 1)

    async def go():
        async with websockets.connect(ws_url(b)) as ws:
            await ws.send(json.dumps({"type": "request", "service": "once", "id": 9,
                                      S.BODY_B64: _b64(b"sleep:30")}))
            wait_until(lambda: any(w.get("state") == "busy"
                                   for w in (b.service("once") or {}).get("workers", [])),
                       what="the victim to take the request")
            p.kill()
            return await ws_recv_json(ws, lambda m: _reply_of(m, 9))
    try:
        m = ws_run(go())
    finally:
        p.kill()
        p.wait(5)
    assert m.get("type") == "error" and m.get("code") == S.ERR_WORKER_LOST, m


def test_tcp_line_request(echo):
    c = LineClient(echo)
    c.send({"type": "request", "service": "echo", "id": "t1", "body": "hi"})
    m, _ = c.recv_until(lambda m: _reply_of(m, "t1"))
    assert m["type"] == "reply" and base64.b64decode(m[S.BODY_B64]) == b'e0:"hi"', m
    c.close()


def test_request_without_service_goes_to_default(broker, ctx, workers):
    start_worker(workers, PppWorker, ctx, broker.worker_url, "p0")
    broker.wait_workers(S.DEFAULT_SERVICE, 1)
    c = LineClient(broker)
    c.send({"type": "request", "id": 1, "body": "x"})
    m, _ = c.recv_until(lambda m: _reply_of(m, 1))
    assert base64.b64decode(m[S.BODY_B64]) == b'p0:"x"', m
    c.close()


@pytest.fixture
def echo_key(start_broker, ctx, workers):
    """decision: POST /api/services/* is an /api write: it needs --api-key's Bearer key."""
    b = start_broker(S.F_API_KEY, S.TEST_API_KEY)
    start_worker(workers, MdpWorker, ctx, b.worker_url, "e0", service="echo")
    b.wait_workers("echo", 1)
    return b


def test_http_post_service(echo_key):
    path = S.HTTP_SERVICE_PATH.format(service="echo")
    status, hdrs, body = http(echo_key, "POST", path, b"\x00raw bytes", headers=AUTH)
    assert status == 200 and body == b"e0:\x00raw bytes", (status, body)
    status, _, _ = http(echo_key, "POST", path, b"x")
    assert status == 401, f"no key -> 401, got {status}"
    status, _, _ = http(echo_key, "POST", path, b"x", headers=("Authorization: Bearer nope",))
    assert status == 401, f"wrong key -> 401 (as every /api write), got {status}"


def test_http_post_errors(start_broker, ctx, workers):
    b = start_broker(S.F_REQUEST_TIMEOUT, 1, S.F_SERVICE_GRACE, 0.2, S.F_API_KEY, S.TEST_API_KEY,
                     test_flags=False)
    start_worker(workers, MdpWorker, ctx, b.worker_url, "s0", service="slow")
    b.wait_workers("slow", 1)
    st, _, _ = http(b, "POST", S.HTTP_SERVICE_PATH.format(service="slow"), b"sleep:30",
                    headers=AUTH)
    assert st == S.HTTP_TIMEOUT_STATUS, f"timeout -> {S.HTTP_TIMEOUT_STATUS}, got {st}"
    time.sleep(0.3)     # past --service-grace: an unknown name fails at once
    st, _, _ = http(b, "POST", S.HTTP_SERVICE_PATH.format(service="nosuch"), b"x", headers=AUTH)
    assert st == S.HTTP_UNAVAILABLE_STATUS, f"no worker -> {S.HTTP_UNAVAILABLE_STATUS}, got {st}"


def test_http_does_not_block_the_loop(echo_key, ctx, workers):
    """A slow HTTP request does not delay WebSocket traffic."""
    import threading
    echo = echo_key
    start_worker(workers, MdpWorker, ctx, echo.worker_url, "s0", service="slow")
    echo.wait_workers("slow", 1)
    t = threading.Thread(target=http, args=(echo, "POST", "/api/services/slow", b"sleep:2"),
                         kwargs={"headers": AUTH})
    t.start()
    st, _, body = http(echo, "POST", "/api/services/echo", b"fast", timeout=1.0, headers=AUTH)
    assert st == 200 and body == b"e0:fast"
    t.join(5)


def test_get_services_and_metrics(echo):
    st, hdrs, body = http(echo, "GET", S.HTTP_SERVICES_PATH)
    assert st == 200 and hdrs.get("content-type", "").startswith("application/json")
    doc = json.loads(body)
    svc = next(s for s in doc["services"] if s["name"] == "echo")
    assert {"name", "workers", "queue"} <= set(svc), svc
    w = svc["workers"][0]
    assert {"name", "protocol", "state", "last_heartbeat_ms", "served"} <= set(w), w
    assert w["protocol"] == "mdp" and w["state"] in ("idle", "busy"), w
    assert "malformed" in doc["counters"] and S.LATE_REPLY_COUNTER in doc["counters"], doc
    st, _, metrics = http(echo, "GET", "/metrics")
    assert st == 200 and (S.METRIC_PREFIX + "workers").encode() in metrics, metrics[:500]
