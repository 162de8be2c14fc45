#!/bin/bash
# bench/broker/run.sh — roomcast's worker broker vs the seed-style Python broker (issue 14).
#
#   bench/broker/run.sh [--rounds N] [--seconds D] [--out FILE.jsonl]
#
# Per round, for roomcast then py_broker (alternating, a fresh broker per run):
#   sat     closed loop, W workers, C DEALER clients x K in flight: requests/s, broker CPU/request
#   lat     open loop at half of that broker's saturation rate (this round): p50/p99/p99.9
#   direct  the same rate with no broker (client ROUTER -> REQ workers): the overhead baseline
# One JSON line per run (stdout and --out), then a summary table (medians over rounds).
# BRK_BROKERS lists the brokers of a round (default "roomcast python"); roomcast-libzmq is
# roomcast with --zmq-engine libzmq (roomcast is the default engine, native).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=3 DUR=5 WARM=1 OUT=""
W=${BRK_WORKERS:-8} C=${BRK_CLIENTS:-8} K=${BRK_INFLIGHT:-16}
BROKERS=${BRK_BROKERS:-roomcast python}
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2;;
    --seconds) DUR=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    *) echo "usage: $0 [--rounds N] [--seconds D] [--out FILE.jsonl]" >&2; exit 2;;
  esac
done
[ -n "$OUT" ] || OUT=$(mktemp /tmp/brk_bench.XXXXXX.jsonl)
: > "$OUT"
make -s build/roomcast build/brk_load
PY=${PYTHON:-/usr/bin/python3}
LOG=$(mktemp)
BPID=""
trap '[ -n "$BPID" ] && kill $BPID 2>/dev/null; rm -f $LOG' EXIT

start_broker() {   # $1 = roomcast | roomcast-libzmq | python ; sets BPID WEP CEP
  : > "$LOG"
  if [ "${1%-libzmq}" = roomcast ]; then
    local engine=native
    [ "$1" = roomcast-libzmq ] && engine=libzmq
    build/roomcast --port 0 --no-netsync --broker-worker-port 0 --broker-client-port 0 \
        --zmq-engine "$engine" --log-level warn 2>"$LOG" & BPID=$!
  else
    "$PY" bench/broker/py_broker.py --worker-port 0 --client-port 0 2>"$LOG" & BPID=$!
  fi
  for _ in $(seq 100); do grep -q 'broker workers' "$LOG" && break; sleep 0.05; done
  local line; line=$(grep 'broker workers' "$LOG")
  WEP=$(sed -E 's/.*workers (tcp:[^ ]+).*/\1/' <<<"$line")
  CEP=$(sed -E 's/.*clients (tcp:[^ ]+).*/\1/' <<<"$line")
}
stop_broker() { kill "$BPID"; wait "$BPID" 2>/dev/null || true; BPID=""; }

run() {   # label broker mode [args]
  local label=$1 broker=$2 mode=$3; shift 3
  if [ "$mode" = direct ]; then
    build/brk_load -m direct -w "$W" -d "$DUR" -u "$WARM" -l "$label" "$@" | tee -a "$OUT"
  else
    start_broker "$broker"
    build/brk_load -m "$mode" -W "$WEP" -C "$CEP" -p "$BPID" -w "$W" -c "$C" -k "$K" \
        -d "$DUR" -u "$WARM" -l "$label" "$@" | tee -a "$OUT"
    stop_broker
  fi
}

echo "# $(date -u '+%F %T UTC') commit $(git rev-parse --short HEAD) $(nproc) CPUs; W=$W C=$C K=$K ${DUR}s+${WARM}s; raw: $OUT" >&2
for r in $(seq "$ROUNDS"); do
  for b in $BROKERS; do
    line=$(run "$b/r$r" "$b" sat)
    half=$(jq -r '.req_per_s / 2 | floor' <<<"$line")
    run "$b/r$r" "$b" lat -r "$half" >/dev/null
    run "$b-direct/r$r" "$b" direct -r "$half" >/dev/null
  done
done

"$PY" - "$OUT" $BROKERS <<'PYEOF'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
brokers = sys.argv[2:]
def med(xs): return st.median(xs) if xs else float("nan")
def rng(xs): return f"{min(xs):.4g}–{max(xs):.4g}"
S = {}
for b in brokers:
    sat = [r for r in rows if r["label"].startswith(b + "/") and r["mode"] == "sat"]
    lat = [r for r in rows if r["label"].startswith(b + "/") and r["mode"] == "lat"]
    dr = {r["label"].split("/")[1]: r for r in rows if r["label"].startswith(b + "-direct/")}
    ov99 = [l["p99_us"] - dr[l["label"].split("/")[1]]["p99_us"] for l in lat]
    ov50 = [l["p50_us"] - dr[l["label"].split("/")[1]]["p50_us"] for l in lat]
    S[b] = dict(
        rps=[r["req_per_s"] for r in sat], us=[r["broker_us_per_req"] for r in sat],
        usmain=[r["broker_main_us_per_req"] for r in sat], cpu=[r["broker_cpu_pct"] for r in sat],
        rpc=[r["req_per_broker_cpu_s"] for r in sat], rate=[r["rate_target"] for r in lat],
        p50=[r["p50_us"] for r in lat], p99=[r["p99_us"] for r in lat], p999=[r["p999_us"] for r in lat],
        lus=[r["broker_us_per_req"] for r in lat],
        d50=[r["p50_us"] for r in dr.values()], d99=[r["p99_us"] for r in dr.values()],
        ov50=ov50, ov99=ov99, bad=sum(r["bad"] for r in rows if r["label"].split("/")[0] in (b, b + "-direct")))
print("broker    sat req/s (range)          CPU%  us/req (main)   req/CPU-s  | half rate  p50   p99   p99.9 us  lat us/req | direct p50/p99 | overhead p50/p99 us  bad")
for b, s in S.items():
    print(f"{b:9} {med(s['rps']):8.0f} ({rng(s['rps'])})  {med(s['cpu']):5.1f} {med(s['us']):6.2f} ({med(s['usmain']):5.2f})  {med(s['rpc']):9.0f}  |"
          f" {med(s['rate']):8.0f} {med(s['p50']):6.0f} {med(s['p99']):6.0f} {med(s['p999']):6.0f}  {med(s['lus']):6.2f} |"
          f" {med(s['d50']):5.0f}/{med(s['d99']):5.0f} | {med(s['ov50']):6.0f}/{med(s['ov99']):6.0f}  {s['bad']}")
for a in [b for b in S if b.startswith("roomcast")]:
    if "python" in S:
        ratios = sorted(x / y for x, y in zip(S[a]["rpc"], S["python"]["rpc"]))
        print(f"req per broker CPU-second, {a}/python: median {med(ratios):.2f} (per round {', '.join(f'{x:.2f}' for x in ratios)}); target >= 15")
    print(f"{a} overhead p99 at half saturation: median {med(S[a]['ov99']):.0f} us (per round {', '.join(f'{x:.0f}' for x in S[a]['ov99'])}); target < 200")
if "roomcast" in S and "roomcast-libzmq" in S:
    ratios = sorted(x / y for x, y in zip(S["roomcast"]["rpc"], S["roomcast-libzmq"]["rpc"]))
    print(f"req per broker CPU-second, native/libzmq engine: median {med(ratios):.2f} (per round {', '.join(f'{x:.2f}' for x in ratios)})")
PYEOF
