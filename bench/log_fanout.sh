#!/usr/bin/env bash
# bench/log_fanout.sh — what the durable log costs: the fanout scenario (100 rooms x 10 clients,
# 100-byte messages, flat out) against roomcast with the log off and with --fsync no,
# everysec and always, alternating for ROUNDS rounds (default 3). Prints one JSON line per run,
# prefixed with the round and the mode; bench/RESULTS.md shows how they were summarised.
#   bench/log_fanout.sh [ROUNDS] > /tmp/log.jsonl
set -u
cd "$(dirname "$0")/.." || exit 2
O=${O:-build}
rounds=${1:-3}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
for round in $(seq "$rounds"); do
    for mode in off no everysec always; do
        rm -rf "$data/d"
        args=(--port 0 --log-level warn --no-netsync)
        [ "$mode" != off ] && args+=(--data-dir "$data/d" --fsync "$mode")
        "$O/roomcast" "${args[@]}" 2> "$data/srv.log" &
        pid=$!
        for _ in $(seq 100); do grep -q listening "$data/srv.log" && break; sleep 0.05; done
        port=$(grep -o 'http://127.0.0.1:[0-9]*' "$data/srv.log" | cut -d: -f3)
        out=$("$O/roomcast-bench" fanout --port "$port" --server-pid "$pid" --label "log-$mode" \
              --quiet --duration 3 2>&1 | grep '^{' | tail -1)
        kill "$pid"
        wait "$pid" 2>/dev/null
        echo "$round $mode $out"
    done
done
