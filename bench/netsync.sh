#!/usr/bin/env bash
# bench/netsync.sh — NetSync at C10K (issue 18): both protocol generations, every peer, side by
# side in one run. For each generation (v0.6, protocol 8) and load, the peers take turns round
# by round (the machine is shared and noisy: alternation spreads the noise over every peer, and
# the summary gives medians and ratios of medians):
#   python   NetSync's own Python server of that generation (bench/peers/ns_reference.py, from
#            the checkout $NETSYNC_REF_REPO; skipped with a message when it is absent)
#   roomcast $ROOMCAST_BIN (default build/roomcast) with $ROOMCAST_FLAGS
#   native   the same binary with $NATIVE_FLAGS added (e.g. NATIVE_FLAGS="--zmq-engine native";
#            $NATIVE_BIN overrides the binary); only when NATIVE_FLAGS or NATIVE_BIN is set
#   ceiling  build/ns_ceiling: a bare epoll relay moving the same bytes (bench/peers/ns_ceiling.c)
# Each run: a fresh peer on free ports, then build/netsync_sim (bench/netsync_sim.c) with
# -p PID; its RESULT line is kept. The simulator is raw ZMTP on one thread (a few % of a core).
#
#   bench/netsync.sh                       # everything, ROUNDS=3
#   GENS=8 LOADS=300x10 PEERS="roomcast ceiling" ROUNDS=5 bench/netsync.sh
#
# Variables (defaults): GENS ("6 8"), LOADS ("100x1 300x10 1000x10": CLIENTSxROOMS), HZ (30),
# ROUNDS (3), DUR (10 s window), WARM (3 s), PEERS ("python roomcast native ceiling"),
# PY_LOADS (loads the Python server runs: "100x1 300x10"; at 1,000 × 30 Hz it saturates),
# SIM_PROCS (1: simulator processes sharing a load, -o BASE), SUBS (subscribers per room, "" =
# one per client: the real fan-out), OUT (build/netsync-bench/<UTC time>), ROOMCAST_BIN,
# ROOMCAST_FLAGS, NATIVE_BIN, NATIVE_FLAGS, NETSYNC_REF_REPO, NETSYNC_REF_V06 (v0.6.1),
# NETSYNC_REF_V8 (HEAD), PERF (a load, e.g. 300x10: also record `perf record -g` of roomcast
# during one extra run of that load per generation, into $OUT/perf-GEN.data + a report;
# PERF_PEER=native profiles the native variant instead).
# Output: $OUT/runs.tsv (one line per run), $OUT/summary.md (the tables), printed at the end.
set -u
cd "$(dirname "$0")/.."
GENS=${GENS:-"6 8"}
LOADS=${LOADS-"100x1 300x10 1000x10"}
HZ=${HZ:-30}
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10}
WARM=${WARM:-3}
PEERS=${PEERS:-"python roomcast native ceiling"}
PY_LOADS=${PY_LOADS-"100x1 300x10"}
SIM_PROCS=${SIM_PROCS:-1}
SUBS=${SUBS:-}
ROOMCAST_BIN=${ROOMCAST_BIN:-build/roomcast}
ROOMCAST_FLAGS=${ROOMCAST_FLAGS:-}
NATIVE_BIN=${NATIVE_BIN:-}
NATIVE_FLAGS=${NATIVE_FLAGS:-}
PERF=${PERF:-}
PERF_PEER=${PERF_PEER:-roomcast}
OUT=${OUT:-build/netsync-bench/$(date -u +%Y%m%dT%H%M%SZ)}
PY=/usr/bin/python3

make -s -f bench/netsync_sim.mk build/netsync_sim build/ns_ceiling || exit 1
[ -x "$ROOMCAST_BIN" ] || { echo "netsync.sh: no roomcast binary at $ROOMCAST_BIN (make, or set ROOMCAST_BIN)" >&2; exit 1; }
if [[ " $PEERS " == *" native "* ]] && [ -z "$NATIVE_FLAGS$NATIVE_BIN" ]; then
    PEERS=${PEERS/native/}
fi
mkdir -p "$OUT"
RUNS=$OUT/runs.tsv
: > "$RUNS"
echo "netsync.sh: $(date -u +%FT%TZ) gens=[$GENS] loads=[$LOADS] hz=$HZ rounds=$ROUNDS dur=$DUR warm=$WARM peers=[$PEERS] out=$OUT" | tee "$OUT/params.txt"
echo "roomcast: $ROOMCAST_BIN $ROOMCAST_FLAGS; native: ${NATIVE_BIN:-$ROOMCAST_BIN} $NATIVE_FLAGS; bench at $(git log -1 --format=%h 2>/dev/null); load average $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/params.txt"

PY_OK=1
if [[ " $PEERS " == *" python "* ]]; then
    REPO=${NETSYNC_REF_REPO:-/work/.mirror/styly-dev+STYLY-NetSync/repo}
    if [ ! -d "$REPO" ]; then
        echo "netsync.sh: SKIPPING the Python reference servers: no NetSync checkout at $REPO (set NETSYNC_REF_REPO to a clone of styly-dev/STYLY-NetSync)" | tee -a "$OUT/params.txt"
        PY_OK=0
    fi
fi

PEER_PID=
PEER_DIR=
# start_peer PEER GEN LOGFILE -> PEER_PID, R P Q (ports); returns non-zero to skip
start_peer() {
    local peer=$1 gen=$2 log=$3 line=
    PEER_DIR=
    case $peer in
    python)
        PEER_DIR=$(mktemp -d /tmp/nsbench-ref-XXXXXX)
        $PY bench/peers/ns_reference.py "$gen" "$PEER_DIR" >/dev/null 2>"$log" &
        PEER_PID=$! ;;
    roomcast|native)
        local bin=$ROOMCAST_BIN flags=$ROOMCAST_FLAGS
        if [ "$peer" = native ]; then bin=${NATIVE_BIN:-$ROOMCAST_BIN}; flags="$ROOMCAST_FLAGS $NATIVE_FLAGS"; fi
        # shellcheck disable=SC2086
        "$bin" --port 0 --netsync-router-port 0 --netsync-pub-port 0 --netsync-pose-port 0 \
            --netsync-discovery-port 0 --log-level warn $flags 2>"$log" &
        PEER_PID=$! ;;
    ceiling)
        build/ns_ceiling -V "$gen" 2>"$log" &
        PEER_PID=$! ;;
    esac
    for _ in $(seq 100); do
        line=$(grep -m1 "netsync router tcp://" "$log" 2>/dev/null) && break
        kill -0 "$PEER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$line" ]; then
        echo "netsync.sh: $peer did not start:" >&2; tail -5 "$log" >&2
        stop_peer; return 1
    fi
    R=$(sed -E 's/.*router tcp:\/\/[^:]+:([0-9]+).*/\1/' <<<"$line")
    P=$(sed -E 's/.*pub tcp:\/\/[^:]+:([0-9]+).*/\1/' <<<"$line")
    Q=$(sed -E 's/.*pose tcp:\/\/[^:]+:([0-9]+).*/\1/' <<<"$line")
    # the Python server prints its ports before binding: wait for the PUB port to accept
    for _ in $(seq 150); do
        (exec 3<>"/dev/tcp/127.0.0.1/$P") 2>/dev/null && break
        sleep 0.1
    done
    [ "$peer" = python ] && sleep 1 # its threads come up after the binds
    return 0
}

stop_peer() {
    [ -n "$PEER_PID" ] || return 0
    kill -INT "$PEER_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$PEER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PEER_PID" 2>/dev/null
    wait "$PEER_PID" 2>/dev/null
    PEER_PID=
    [ -n "$PEER_DIR" ] && rm -rf "$PEER_DIR"
    PEER_DIR=
}
trap 'stop_peer; exit 130' INT TERM

# run_sim GEN CLIENTS ROOMS -> RESULT fields on stdout (first process's server CPU; with
# SIM_PROCS > 1: sums of rates, the worst p99/max, the largest unseen, summed sim CPU)
run_sim() {
    local gen=$1 c=$2 r=$3 k per pids=() files=()
    per=$(( (c + SIM_PROCS - 1) / SIM_PROCS ))
    for ((k = 0; k < SIM_PROCS; k++)); do
        local f
        f=$(mktemp /tmp/nsbench-sim-XXXXXX)
        files+=("$f")
        build/netsync_sim -V "$gen" -p "$PEER_PID" -R "$R" -P "$P" -Q "$Q" -c "$per" -r "$r" \
            -z "$HZ" -d "$DUR" -w "$WARM" -o $((k * 100000)) ${SUBS:+-s $SUBS} >"$f" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    for f in "${files[@]}"; do grep '^RESULT' "$f" || { echo "netsync.sh: simulator failed:" >&2; cat "$f" >&2; }; done |
        $PY -c '
import sys
rows = [dict(kv.split("=") for kv in l.split()[1:]) for l in sys.stdin if l.strip()]
if not rows: sys.exit(0)
out = dict(rows[0])
if len(rows) > 1:
    for k in ("sent_per_s", "sim_cpu", "unseen", "sent", "closed", "n", "foreign"):
        out[k] = str(sum(float(r[k]) for r in rows))
    for k in ("p99", "max", "p90"):
        out[k] = str(max(float(r[k]) for r in rows))
    out["rate_min"] = str(min(float(r["rate_min"]) for r in rows))
    out["clients"] = str(sum(int(r["clients"]) for r in rows))
print(" ".join(f"{k}={v}" for k, v in out.items()))'
    rm -f "${files[@]}"
}

for gen in $GENS; do
    for load in $LOADS; do
        c=${load%x*} r=${load#*x}
        for ((round = 1; round <= ROUNDS; round++)); do
            for peer in $PEERS; do
                if [ "$peer" = python ]; then
                    [ "$PY_OK" = 1 ] || continue
                    [[ " $PY_LOADS " == *" $load "* ]] || continue
                fi
                log=$OUT/$peer-v$gen-$load-$round.log
                start_peer "$peer" "$gen" "$log" || continue
                res=$(run_sim "$gen" "$c" "$r")
                stop_peer
                echo "v$gen $load round $round $peer: $res" | sed 's/ sent=.*server_cpu/ ... server_cpu/'
                [ -n "$res" ] && printf 'gen=%s load=%s round=%s peer=%s %s\n' "$gen" "$load" "$round" "$peer" "$res" >> "$RUNS"
            done
        done
    done
    if [ -n "$PERF" ]; then
        c=${PERF%x*} r=${PERF#*x}
        start_peer "$PERF_PEER" "$gen" "$OUT/perf-v$gen.log" && {
            (sleep "$WARM"; perf record -g -o "$OUT/perf-v$gen.data" -p "$PEER_PID" -- sleep "$DUR" \
                >"$OUT/perf-v$gen.record.log" 2>&1) &
            perfpid=$!
            res=$(run_sim "$gen" "$c" "$r")
            wait $perfpid
            stop_peer
            echo "v$gen $PERF perf run: $res" | sed 's/ sent=.*server_cpu/ ... server_cpu/'
            perf report -i "$OUT/perf-v$gen.data" --no-children -g none --percent-limit 0.7 --sort comm,dso,symbol --stdio 2>/dev/null |
                grep -v '^$' | head -80 > "$OUT/perf-v$gen.txt"
            perf report -i "$OUT/perf-v$gen.data" --no-children -g none --sort comm,dso --stdio 2>/dev/null |
                grep -v '^#' | grep -v '^$' | head -20 > "$OUT/perf-v$gen-dso.txt"
        }
    fi
done

$PY - "$RUNS" "$HZ" > "$OUT/summary.md" <<'EOF'
import statistics, sys
runs, hz = sys.argv[1], float(sys.argv[2])
rows = [dict(kv.split("=", 1) for kv in l.split()) for l in open(runs) if l.strip()]
med = lambda xs: statistics.median(xs) if xs else float("nan")
order = ["python", "roomcast", "native", "ceiling"]
tick = {"6": 50.0, "8": 100.0}
print("| gen | load | peer | runs | server CPU % of a core (median; all) | threads % of a core (median run) | "
      "first-seen p50 / p99 ms | broadcasts/s per client (slowest) | unseen / sent (other rooms' entries) | sim CPU % |")
print("|---|---|---|---|---|---|---|---|---|---|")
keys = []
for r in rows:
    k = (r["gen"], r["load"])
    if k not in keys: keys.append(k)
cpu = {}
for gen, load in keys:
    for peer in order:
        rs = [r for r in rows if r["gen"] == gen and r["load"] == load and r["peer"] == peer]
        if not rs: continue
        f = lambda k: [float(r[k]) for r in rs]
        c = med(f("server_cpu")); cpu[(gen, load, peer)] = c
        mid = sorted(rs, key=lambda r: float(r["server_cpu"]))[len(rs) // 2]
        thr = mid.get("threads", "-").replace(",", ", ")
        foreign = int(max(float(r.get("foreign", 0)) for r in rs))
        print(f"| {'v0.6' if gen == '6' else '8'} | {load.replace('x', ' × ' + str(int(hz)) + ' Hz, ')} rooms | {peer} | {len(rs)} | "
              f"**{c:.2f}** ({', '.join(f'{x:.2f}' for x in f('server_cpu'))}) | {thr} | "
              f"{med(f('p50')):.1f} / {med(f('p99')):.1f} | {med(f('rate')):.2f} ({min(f('rate_min')):.2f}) | "
              f"{int(max(f('unseen')))} / {int(med(f('sent')))} ({foreign}) | {med(f('sim_cpu')):.1f} |")
print()
print("| gen | load | Python / roomcast CPU | roomcast / ceiling CPU | native / ceiling CPU | Python / native CPU |")
print("|---|---|---|---|---|---|")
ratio = lambda a, b: f"{a / b:.1f}×" if a is not None and b else "—"
for gen, load in keys:
    g = lambda p: cpu.get((gen, load, p))
    print(f"| {'v0.6' if gen == '6' else '8'} | {load} | {ratio(g('python'), g('roomcast'))} | "
          f"{ratio(g('roomcast'), g('ceiling'))} | {ratio(g('native'), g('ceiling'))} | {ratio(g('python'), g('native'))} |")
print()
print("first-seen target: p99 within tick + 10 ms = " +
      ", ".join(f"{'v0.6' if g == '6' else '8'} {t + 10:.0f} ms" for g, t in tick.items()) +
      " (roomcast's default ticks; the ceiling uses the same)")
EOF
cat "$OUT/summary.md"
