#!/usr/bin/env bash
# bench/variants.sh — the fanout scenario (100 rooms x 10 clients, 100-byte messages, flat out,
# 3 s) against roomcast started with different flags, alternating the variants round by round,
# so a feature's cost is measured side by side with the same build without it.
#   bench/variants.sh ROUNDS 'LABEL=FLAGS' ...     e.g.
#   bench/variants.sh 3 'off=' 'everysec=--data-dir {DATA} --fsync everysec'
# {DATA} in FLAGS becomes a fresh empty directory for each run. Prints one line per run:
# ROUND LABEL {the generator's JSON line}.
set -u
cd "$(dirname "$0")/.." || exit 2
O=${O:-build}
rounds=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for round in $(seq "$rounds"); do
    for v in "$@"; do
        label=${v%%=*}
        flags=${v#*=}
        rm -rf "$tmp/data"
        mkdir -p "$tmp/data"
        # shellcheck disable=SC2086 # flags are words by design
        "$O/roomcast" --port 0 --log-level warn --no-netsync ${flags//\{DATA\}/$tmp/data} \
            2> "$tmp/srv.log" &
        pid=$!
        for _ in $(seq 100); do grep -q listening "$tmp/srv.log" && break; sleep 0.05; done
        port=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/srv.log" | cut -d: -f3)
        out=$("$O/roomcast-bench" fanout --port "$port" --server-pid "$pid" --label "$label" \
              --quiet --duration 3 2>&1 | grep '^{' | tail -1)
        kill "$pid"
        wait "$pid" 2>/dev/null
        echo "$round $label $out"
    done
done
