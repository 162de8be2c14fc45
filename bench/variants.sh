#!/usr/bin/env bash
# bench/variants.sh — one scenario (default fanout: 100 rooms x 10 clients, 100-byte messages,
# flat out, 3 s) against roomcast started with different flags, binaries or generator options,
# alternating the variants round by round, so a feature's cost is measured side by side with the
# same build without it, and two builds side by side under the same load.
#   bench/variants.sh ROUNDS 'LABEL=[bin:PATH ]FLAGS[ -- GENERATOR ARGS]' ...     e.g.
#   bench/variants.sh 3 'off=' 'everysec=--data-dir {DATA} --fsync everysec'
#   bench/variants.sh 8 'before=bin:/work/wt-bench-before/build/roomcast' 'after='
#   bench/variants.sh 5 'plain=' 'keys=-- --state-keys' 'conflate=-- --state-keys --conflate all'
# FLAGS go to the server, GENERATOR ARGS to build/roomcast-bench (after the scenario's own);
# bin:PATH runs another server binary (default $O/roomcast). {DATA} in FLAGS becomes a fresh
# empty directory for each run. The server always gets --tcp-port 0 and the generator its port,
# so TCP scenarios work; a generator given --tls gets the server's --tcp-tls-port instead when
# the variant opens one (and --port is the TLS port when the variant gives --tls-cert without
# --tls-port), so TLS and plain variants run side by side:
#   bench/variants.sh 6 'plain=' 'tls=--tls-cert C --tls-key K -- --tls'
# Environment: SCENARIO (fanout; any roomcast-bench scenario),
# BENCH_ARGS (generator arguments for every variant, default '--duration 3'), BENCH_NICE (run
# everything at that niceness). Prints one line per run: ROUND LABEL {the generator's JSON line}.
set -u
cd "$(dirname "$0")/.." || exit 2
O=${O:-build}
SCENARIO=${SCENARIO:-fanout}
BENCH_ARGS=${BENCH_ARGS:---duration 3}
rounds=$1
shift
if [ -n "${BENCH_NICE:-}" ]; then
    renice -n "$BENCH_NICE" -p $$ >/dev/null || echo "variants.sh: cannot renice" >&2
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for round in $(seq "$rounds"); do
    for v in "$@"; do
        label=${v%%=*}
        rest=${v#*=}
        bin=$O/roomcast
        if [[ $rest == bin:* ]]; then
            rest=${rest#bin:}
            bin=${rest%% *}
            [[ $rest == *" "* ]] && rest=${rest#* } || rest=""
        fi
        flags=$rest
        gen=""
        if [[ " $rest " == *" -- "* ]]; then
            s=" $rest "
            flags=${s%% -- *}
            gen=${s#* -- }
        fi
        rm -rf "$tmp/data"
        mkdir -p "$tmp/data"
        # The previous run's log must be gone before the wait below: the new server's shell
        # truncates it only when it gets to run, and reading the old one meant the old port
        # (a run that failed with "connection refused").
        rm -f "$tmp/srv.log"
        # shellcheck disable=SC2086 # flags are words by design
        "$bin" --port 0 --tcp-port 0 --log-level warn --no-netsync ${flags//\{DATA\}/$tmp/data} \
            2> "$tmp/srv.log" &
        pid=$!
        for _ in $(seq 100); do grep -qs "roomcast: listening on http" "$tmp/srv.log" && break; sleep 0.05; done
        # --port (https:// when the variant gives --tls-cert without --tls-port)
        port=$(sed -n 's|^roomcast: listening on https\{0,1\}://[0-9.]*:\([0-9]*\)/.*|\1|p' "$tmp/srv.log" | head -1)
        tport=$(sed -n 's|.*tcp listening on [0-9.]*:\([0-9]*\).*|\1|p' "$tmp/srv.log" | head -1)
        # a TLS generator (--tls) talks to --tcp-tls-port when the server has one
        if [[ " $gen " == *" --tls "* ]] && grep -qs "tcp tls listening on" "$tmp/srv.log"; then
            tport=$(sed -n 's|.*tcp tls listening on [0-9.]*:\([0-9]*\).*|\1|p' "$tmp/srv.log" | head -1)
        fi
        # shellcheck disable=SC2086
        out=$("$O/roomcast-bench" "$SCENARIO" --port "$port" --tcp-port "$tport" \
              --server-pid "$pid" --label "$label" --quiet $BENCH_ARGS $gen 2>&1 | grep '^{' | tail -1)
        kill "$pid"
        wait "$pid" 2>/dev/null
        echo "$round $label $out"
    done
done
