"""GET /metrics: Prometheus text format (0.0.4), the counters it must carry, histograms that
are cumulative and consistent, and values that move with traffic."""

import asyncio
import json
import re

from conftest import http_exchange, run, ws_connect, ws_join, ws_recv_json

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"'
                       r'(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*)?\})? (\S+)$')


def scrape(srv):
    status, headers, body = http_exchange(
        srv.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
    return body.decode()


def parse(text):
    """Checks the exposition format line by line; returns ({(name, labels): value}, types)."""
    samples, types, helps = {}, {}, set()
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helps, f"duplicate HELP for {name}"
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split()
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, f"duplicate TYPE for {name}"
            types[name] = typ
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"not a valid sample line: {line!r}"
        name, labels, value = m.group(1), m.group(3) or "", m.group(5)
        float(value)  # parses (+Inf is not a value here)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or base in types, f"sample {name} without a TYPE line"
        key = (name, labels)
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(value)
    return samples, types


def test_metrics_format_and_contents(server):
    samples, types = parse(scrape(server))
    for name, typ in [("roomcast_connections", "gauge"), ("roomcast_rooms", "gauge"),
                      ("roomcast_messages_received_total", "counter"),
                      ("roomcast_messages_sent_total", "counter"),
                      ("roomcast_received_bytes_total", "counter"),
                      ("roomcast_sent_bytes_total", "counter"),
                      ("roomcast_slow_consumer_disconnects_total", "counter"),
                      ("roomcast_errors_total", "counter"),
                      ("roomcast_broadcast_latency_seconds", "histogram"),
                      ("roomcast_loop_iteration_seconds", "histogram")]:
        assert types.get(name) == typ, (name, types.get(name))
    kinds = {labels for (name, labels) in samples if name == "roomcast_errors_total"}
    for kind in ("http_400", "http_404", "ws_1002", "bad_json", "not_member"):
        assert f'kind="{kind}"' in kinds


def check_histogram(samples, name):
    buckets = sorted(((float(l.split('"')[1]) if "+Inf" not in l else float("inf")), v)
                     for (n, l), v in samples.items() if n == name + "_bucket")
    assert len(buckets) >= 10 and buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), f"{name} buckets are not cumulative: {counts}"
    assert counts[-1] == samples[(name + "_count", "")]
    assert samples[(name + "_sum", "")] >= 0
    return counts[-1]


def test_metrics_move_with_traffic(server):
    before, _ = parse(scrape(server))

    async def main():
        a = await ws_connect(server.ws_url)
        b = await ws_connect(server.ws_url)
        await ws_join(a, "metrics-room")
        await ws_join(b, "metrics-room")
        for i in range(50):
            await a.send(json.dumps({"type": "m", "i": i}))
        for ws in (a, b):
            for _ in range(50):
                await ws_recv_json(ws)
        samples, _ = parse(scrape(server))
        assert samples[("roomcast_connections", "")] >= 2
        assert samples[("roomcast_rooms", "")] >= 1
        await a.close()
        await b.close()
        return samples
    after = run(main())
    assert after[("roomcast_messages_received_total", "")] >= \
        before[("roomcast_messages_received_total", "")] + 50
    assert after[("roomcast_messages_sent_total", "")] >= \
        before[("roomcast_messages_sent_total", "")] + 100
    n0 = check_histogram(before, "roomcast_broadcast_latency_seconds")
    n1 = check_histogram(after, "roomcast_broadcast_latency_seconds")
    assert n1 >= n0 + 100, "every delivered room message is one latency sample"
    assert check_histogram(after, "roomcast_loop_iteration_seconds") > \
        check_histogram(before, "roomcast_loop_iteration_seconds")
    # loopback delivery within one iteration: the bulk of samples is well under a second
    fast = after[("roomcast_broadcast_latency_seconds_bucket", 'le="0.524288"')]
    assert fast >= 0.9 * n1


def test_replayed_history_is_not_a_late_delivery(server):
    """Frames replayed to a client that rejoins with since keep their original receipt time;
    they must not show up in the latency histogram as deliveries that old."""
    slow = 'le="0.524288"'

    async def main():
        a = await ws_connect(server.ws_url)
        joined = await ws_join(a, "replay-metrics")
        for i in range(30):
            await a.send(json.dumps({"type": "m", "i": i}))
        for _ in range(30):
            await ws_recv_json(a)
        await asyncio.sleep(0.8)  # the history is now older than the bucket bound below
        before, _ = parse(scrape(server))
        b = await ws_connect(server.ws_url)
        await b.send(json.dumps({"type": "join", "room": "replay-metrics", "since": 0,
                                 "epoch": joined["epoch"]}))
        msg = await ws_recv_json(b)
        assert msg["type"] == "joined" and msg["recovered"] is True, msg
        got = [await ws_recv_json(b) for _ in range(30)]
        assert [m["i"] for m in got] == list(range(30))
        after, _ = parse(scrape(server))
        for ws in (a, b):
            await ws.close()
        return before, after
    before, after = run(main())
    name = "roomcast_broadcast_latency_seconds"
    n0, n1 = check_histogram(before, name), check_histogram(after, name)
    late0 = n0 - before[(name + "_bucket", slow)]
    late1 = n1 - after[(name + "_bucket", slow)]
    assert late1 == late0, "replayed frames were counted as late deliveries"
    assert n1 - n0 < 30, "replayed frames were counted as deliveries"


def test_errors_by_kind_match_stats(server):
    http_exchange(server.port, b"GARBAGE\r\n\r\n")
    samples, _ = parse(scrape(server))
    st = server.stats()
    for kind, v in st["errors"].items():
        got = samples[("roomcast_errors_total", f'kind="{kind}"')]
        # the scrape came first; only the stats request itself could have been counted since
        assert got <= v and v - got <= 1, (kind, got, v)
