#!/usr/bin/env bash
# bench/cluster.sh — issue 16's benchmark: fan-out through Redis, side by side in one run.
#
#   [BENCH_NICE=-10] bench/cluster.sh [--rounds N] [--duration S] [--rooms R] [--clients C] [--size BYTES]
#                    [--fixed-hz HZ] [--variants LIST] [--phases LIST] [--out FILE.jsonl]
#
# Variants (all by default, alternated within every round, a fresh server for every run):
#   rc1         roomcast, 1 node, embedded rooms (no Redis)
#   rc1-redis   roomcast, 1 node, --redis
#   rc2-redis   roomcast, 2 nodes, --redis; member k of every room on node k % 2, so half of
#               every room's deliveries cross nodes
#   sio1        Socket.IO (bench/peers/sio_server.mjs), 1 node, its in-memory adapter
#   sio2-redis  Socket.IO, 2 nodes with @socket.io/redis-adapter, clients spread the same way
#
# Phases (--phases, default all: sat,half,fixed,redis; half and fixed run together, after sat):
#   1. saturation: R rooms x C clients, every client keeps 4 own messages in flight (flat out),
#      --duration seconds: deliveries/s, CPU per delivery of the nodes (summed) and of
#      redis-server (apart), Redis CPU per published message;
#   2. half saturation: each variant at half of its own median saturated rate (open loop, the
#      same per-client rate for every client): p50/p99 publish-to-delivery latency, and for the
#      2-node variants the deliveries whose sender is on the other node (cross_p99_us);
#   2b. fixed rate: every variant at the same per-client rate (--fixed-hz, default 5: with the
#      default shape 50,000 deliveries/s, below half of every variant's saturation on the
#      machine this was written on): latency and CPU per delivery at equal load; 0 skips it;
#   3. bare PUBLISH: redis-benchmark PUBLISH of a payload as long as roomcast's channel message,
#      to a channel with 2 subscribers (bench/peers/redis_sub.py, like the 2 nodes), unpipelined
#      and at roomcast's measured pipelining depth: Redis CPU per PUBLISH, the yardstick for
#      Redis CPU per roomcast message (the sequencing script, src/cluster/clpub.c: one call per
#      room per loop iteration, HINCRBY, an XADD per message, EXPIRE, one PUBLISH), and at 32
#      deep, the strictest yardstick.
#
# Redis is a private redis-server (a free loopback port, its own data directory under /tmp, no
# persistence: the CPU of the work, not of the disk), FLUSHALLed before every run, stopped and
# removed at the end. CPU comes from /proc/PID (the scheduler's ns account, all threads).
# Needs redis-server and redis-benchmark (Debian redis-server); the Socket.IO variants need node
# and `make bench-deps` (npm ci of bench/peers: socket.io, @socket.io/redis-adapter, redis).
# Without redis-server the script says so and exits 0; without node it runs roomcast alone.
set -u
# BENCH_ROOT: the checkout to use when this script runs from a copy elsewhere (a copy is
# what to run while editing this one: bash reads a script as it goes).
ROOT=${BENCH_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
O=${O:-build}
case "$O" in /*) ;; *) O="$ROOT/$O" ;; esac
BENCH="$O/roomcast-bench"
ROOMCAST=${ROOMCAST_BIN:-$O/roomcast}
PEERS="$ROOT/bench/peers"
PYTHON=${PYTHON:-/usr/bin/python3}
# BENCH_NICE=-10 runs everything (nodes, redis-server, generator) at that niceness, alike, as
# bench/run.sh does: on a machine shared with builds, fewer preemptions in the latency figures.
if [ -n "${BENCH_NICE:-}" ]; then
    renice -n "$BENCH_NICE" -p $$ >/dev/null || echo "cluster.sh: cannot renice to $BENCH_NICE" >&2
fi

rounds=3 duration=3 rooms=100 clients=10 size=100 out="" fixed_hz=5 phases=sat,half,fixed,redis
variants="rc1,rc1-redis,rc2-redis,sio1,sio2-redis"
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) rounds=$2; shift ;;
    --duration) duration=$2; shift ;;
    --rooms) rooms=$2; shift ;;
    --clients) clients=$2; shift ;;
    --size) size=$2; shift ;;
    --fixed-hz) fixed_hz=$2; shift ;;
    --phases) phases=$2; shift ;;
    --variants) variants=$2; shift ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cluster.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# -- what is there --------------------------------------------------------------------------------
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null ||
    ! command -v redis-cli >/dev/null; then
    echo "cluster.sh: skipped: redis-server, redis-cli and redis-benchmark are needed" \
         "(Debian package redis-server; scripts/deps.sh test)" >&2
    exit 0
fi
make -s -C "$ROOT" O="$O" "$O/roomcast-bench" >&2 || exit 2
if [ ! -x "$ROOMCAST" ] || ! "$ROOMCAST" --help 2>&1 | grep -q -- '--redis URL'; then
    echo "cluster.sh: $ROOMCAST is missing or has no --redis (make first)" >&2
    exit 2
fi
have_sio() {
    command -v node >/dev/null && [ -f "$PEERS/node_modules/socket.io/package.json" ] &&
        [ -f "$PEERS/node_modules/@socket.io/redis-adapter/package.json" ] &&
        [ -f "$PEERS/node_modules/redis/package.json" ]
}
VARIANTS=()
IFS=, read -r -a want <<<"$variants"
for v in "${want[@]}"; do
    case "$v" in
    rc1|rc1-redis|rc2-redis) VARIANTS+=("$v") ;;
    sio1|sio2-redis)
        if have_sio; then VARIANTS+=("$v")
        else echo "cluster.sh: skipping $v: node or bench/peers/node_modules is missing" \
                  "(install nodejs and npm, then make bench-deps)" >&2; fi ;;
    *) echo "cluster.sh: unknown variant '$v'" >&2; exit 2 ;;
    esac
done
[ ${#VARIANTS[@]} -gt 0 ] || exit 0

WORK=$(mktemp -d /tmp/rc-cluster-bench.XXXXXX)
results=${out:-$WORK/results.jsonl}
: >"$results"
NODE_PIDS=()
cleanup() {
    for p in "${NODE_PIDS[@]}" ${SUB_PIDS[@]+"${SUB_PIDS[@]}"} ${REDIS_PID:+"$REDIS_PID"}; do
        kill "$p" 2>/dev/null
    done
    wait 2>/dev/null
    rm -rf "$WORK/redis"
    [ -n "$out" ] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# -- the private redis-server ---------------------------------------------------------------------
mkdir -p "$WORK/redis"
RPORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$RPORT" --dir "$WORK/redis" --save '' --appendonly no \
    --logfile "$WORK/redis/log" &
REDIS_PID=$!
for _ in $(seq 100); do
    redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break
    sleep 0.05
done
if ! redis-cli -p "$RPORT" ping >/dev/null 2>&1; then
    echo "cluster.sh: the private redis-server did not start:" >&2
    tail -5 "$WORK/redis/log" >&2
    exit 2
fi
REDIS_URL="redis://127.0.0.1:$RPORT"
rcli() { redis-cli -p "$RPORT" "$@"; }
echo "cluster.sh: redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') pid $REDIS_PID on" \
     "port $RPORT; results in $results" >&2

# -- one run --------------------------------------------------------------------------------------
# start_node KIND WITH_REDIS -> sets NODE_PORT and appends to NODE_PIDS
start_node() {
    local kind=$1 redis=$2 log="$WORK/node$((${#NODE_PIDS[@]} + 1)).log" url=()
    [ "$redis" = 1 ] && url=(--redis "$REDIS_URL")
    rm -f "$log"   # here, not by the redirection below: that one may run after the first read
    if [ "$kind" = rc ]; then
        "$ROOMCAST" --bind 127.0.0.1 --port 0 --log-level warn --no-netsync "${url[@]}" 2>"$log" &
    else
        node "$PEERS/sio_server.mjs" --bind 127.0.0.1 --port 0 "${url[@]}" 2>"$log" &
    fi
    NODE_PIDS+=($!)
    NODE_PORT=""
    for _ in $(seq 200); do
        NODE_PORT=$(sed -n 's|.*listening on http://[0-9.]*:\([0-9]*\)/.*|\1|p' "$log" 2>/dev/null | head -1)
        [ -n "$NODE_PORT" ] && return 0
        sleep 0.05
    done
    echo "cluster.sh: $kind node did not start:" >&2
    cat "$log" >&2
    return 1
}

stop_nodes() {
    for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    NODE_PIDS=()
}

# run VARIANT PHASE [generator args...]: one fresh server, one generator run, one JSON line.
run() {
    local v=$1 phase=$2
    shift 2
    local kind=rc nodes=1 redis=0 ports=() pids=()
    case "$v" in
    rc1) ;;
    rc1-redis) redis=1 ;;
    rc2-redis) redis=1 nodes=2 ;;
    sio1) kind=sio ;;
    sio2-redis) kind=sio redis=1 nodes=2 ;;
    esac
    rcli flushall >/dev/null
    rcli config resetstat >/dev/null
    for _ in $(seq "$nodes"); do
        start_node "$kind" "$redis" || { stop_nodes; return 1; }
        ports+=("$NODE_PORT")
    done
    pids=("${NODE_PIDS[@]}")
    sleep 0.3   # the nodes' Redis connections up (roomcast waits for them before joins anyway)
    local portlist pidlist rpid=()
    portlist=$(IFS=,; echo "${ports[*]}")
    pidlist=$(IFS=,; echo "${pids[*]}")
    [ "$redis" = 1 ] && rpid=(--redis-pid "$REDIS_PID")
    local line
    line=$(timeout 300 "$BENCH" fanout --port "$portlist" --server-pid "$pidlist" "${rpid[@]}" \
           --label "$v" --rooms "$rooms" --clients "$clients" --size "$size" \
           --duration "$duration" --transport "$([ $kind = sio ] && echo sio || echo ws)" \
           --quiet "$@")
    local rc=$?
    # Redis's own account of the commands it ran (usec per call, excluding I/O), and roomcast's
    # pipelining: commands per write() on its Redis connections, summed over its nodes.
    local stats metrics=""
    stats=$(rcli info commandstats | tr -d '\r' | grep -E '^cmdstat_(evalsha|eval|publish|xadd|hincrby|expire)[:]' |
            tr '\n' ' ')
    if [ "$kind" = rc ] && [ "$redis" = 1 ]; then
        for p in "${ports[@]}"; do
            metrics+=$(curl -s "http://127.0.0.1:$p/metrics" | grep -E '^roomcast_redis_(commands|writes)_total ' | tr '\n' ' ')
        done
    fi
    stop_nodes
    [ -n "$line" ] || { echo "cluster.sh: $v ($phase) produced no result (exit $rc)" >&2; return 1; }
    LINE="$line" PHASE="$phase" STATS="$stats" METRICS="$metrics" "$PYTHON" - >>"$results" <<'PY'
import json, os, re
r = json.loads(os.environ["LINE"])
r["phase"] = os.environ["PHASE"]
for m in re.finditer(r"cmdstat_(\w+):calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)", os.environ["STATS"]):
    r["redis_" + m.group(1) + "_calls"] = int(m.group(2))
    r["redis_" + m.group(1) + "_usec_per_call"] = float(m.group(4))
cmds = sum(int(x) for x in re.findall(r"roomcast_redis_commands_total (\d+)", os.environ["METRICS"]))
writes = sum(int(x) for x in re.findall(r"roomcast_redis_writes_total (\d+)", os.environ["METRICS"]))
if writes:
    r["redis_commands_per_write"] = cmds / writes
print(json.dumps(r))
PY
    tail -1 "$results" | "$PYTHON" -c 'import json,sys; r=json.load(sys.stdin); print("  %-11s %-5s %s  %9.0f deliv/s  nodes %6.0f ns/deliv  redis %6.0f ns/msg  p50 %7.0f us  p99 %8.0f us  cross p99 %s" % (r["server"], r["phase"], "ok  " if r["ok"] else "FAIL", r["deliveries_per_s"], r["server_run_ns_per_delivery"] or 0, r.get("redis_run_ns_per_publish") or 0, r["lat_p50_us"], r["lat_p99_us"], r.get("cross_p99_us", "-")) + ("" if r["ok"] else "  " + r.get("failure", "")))' >&2
}

# -- phase 1: saturation --------------------------------------------------------------------------
echo "cluster.sh: phase 1, saturation: $rooms rooms x $clients clients, ${size}-byte messages," \
     "window 4, ${duration} s, $rounds rounds of ${VARIANTS[*]}" >&2
for round in $(seq "$rounds"); do
    for v in "${VARIANTS[@]}"; do run "$v" sat; done
done

has_phase() { [[ ",$phases," == *",$1,"* ]]; }
has_phase half || has_phase fixed || has_phase redis || { echo "cluster.sh: results: $results" >&2; exit 0; }
has_phase fixed || fixed_hz=0

# -- phase 2: half saturation ---------------------------------------------------------------------
median() { "$PYTHON" -c '
import json, statistics, sys
v, phase, key = sys.argv[2:5]
xs = [r[key] for r in map(json.loads, open(sys.argv[1])) if r["server"] == v and r["phase"] == phase
      and r["ok"] and r.get(key) is not None]
print(statistics.median(xs) if xs else 0)' "$results" "$@"; }
declare -A RATE
for v in "${VARIANTS[@]}"; do
    sat=$(median "$v" sat deliveries_per_s)
    # deliveries/s = rate per client x clients per room x publishers (rooms x clients)
    RATE[$v]=$("$PYTHON" -c "print(round($sat / 2 / ($clients * $clients * $rooms), 2))")
done
echo "cluster.sh: phase 2, half saturation (per-client Hz: $(for v in "${VARIANTS[@]}"; do
    printf '%s=%s ' "$v" "${RATE[$v]}"; done))" >&2
for round in $(seq "$rounds"); do
    for v in "${VARIANTS[@]}"; do
        if [ "${RATE[$v]}" = "0.0" ] || [ "${RATE[$v]}" = "0" ]; then continue; fi
        if has_phase half; then run "$v" half --rate "${RATE[$v]}"; fi
        if [ "$fixed_hz" != 0 ]; then run "$v" fixed --rate "$fixed_hz"; fi
    done
done

phase_redis() {
# -- phase 3: Redis's cost per message, piece by piece --------------------------------------------
# The yardstick is a bare PUBLISH of a payload as long as roomcast's channel message, to a
# channel with 2 subscribers (bench/peers/redis_sub.py, like the 2 nodes), unpipelined and at
# roomcast's measured pipelining depth (its median commands per write() in rc2-redis). Beside it,
# at the same depth: roomcast's own sequencing script (its text read from src/cluster/clpub.c,
# so it is the script being shipped; one call per room per loop iteration carries that room's
# messages: measured with 1 to 16 per call) with its parts switched off through its arguments, a script
# that does nothing, and two batched scripts that sequence K messages of a room per call — what
# would close the gap, measured rather than guessed. One room (one key set), like a busy room.
plen=$((size + 110)) dlen=$((size + 80))
SUB_PIDS=()
if printf '%s\n' "${VARIANTS[@]}" | grep -q '^rc.-redis$'; then
    # The lengths of roomcast's stored frame and channel message, from one real publish.
    rcli flushall >/dev/null
    if start_node rc 1; then
        timeout 60 "$BENCH" fanout --port "$NODE_PORT" --rooms 1 --clients "$clients" \
            --size "$size" --messages 1 --quiet >/dev/null 2>&1
        key=$(rcli --scan --pattern 'rc:*:s' | head -1)
        if [ -n "$key" ]; then
            # the first entry: field d = one message, or n and b = a batch ("<len>:<payload>...")
            entry=$(rcli --raw xrange "$key" - + count 1)
            if [ "$(sed -n '2p' <<<"$entry")" = d ]; then
                d=$(sed -n '3p' <<<"$entry")
                dlen=${#d}
            else
                dlen=$(sed -n '5p' <<<"$entry" | sed 's/:.*//')
            fi
            plen=$((dlen + 3 + 8 + 16 + 2))   # "r1:" + a msg_id of up to 8 digits + epoch + ':'s
        fi
    fi
    stop_nodes
fi
depth=$("$PYTHON" -c '
import json, statistics, sys
xs = [r["redis_commands_per_write"] for r in map(json.loads, open(sys.argv[1]))
      if r["server"] == "rc2-redis" and r["phase"] == "sat" and r.get("redis_commands_per_write")]
print(max(1, round(statistics.median(xs))) if xs else 16)' "$results")
PUB_BODY=$("$PYTHON" - "$ROOT/src/cluster/clpub.c" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
m = re.search(r'const char rc_cluster__pub_script\[\] =\n((?:\s*".*"\n?)+);', src)
if m:
    print("".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))).encode().decode("unicode_escape"), end="")
PY
)
# Batched sequencing, K messages of one room per call (ARGV: history, ttl, epoch, channel,
# payload 1..K). "each": a stream entry per message, one PUBLISH per batch; "one": one stream
# entry and one PUBLISH per batch (the entry holds the K messages).
BATCH_EACH="local meta, stream = KEYS[1], KEYS[2]
local e = redis.call('hget', meta, 'e')
if not e then e = ARGV[3]; redis.call('hset', meta, 'e', e, 's', 0) end
local k = #ARGV - 4
local last = redis.call('hincrby', meta, 's', k)
local parts = {}
for i = 1, k do
  local id = string.format('%.0f', last - k + i)
  redis.call('xadd', stream, 'MAXLEN', ARGV[1], id .. '-0', 'd', ARGV[4 + i])
  parts[i] = id .. ':' .. ARGV[4 + i]
end
redis.call('expire', meta, ARGV[2]); redis.call('expire', stream, ARGV[2])
redis.call('publish', ARGV[4], 'r2:' .. e .. ':' .. table.concat(parts, '\n'))
return {last, e}"
BATCH_ONE="local meta, stream = KEYS[1], KEYS[2]
local e = redis.call('hget', meta, 'e')
if not e then e = ARGV[3]; redis.call('hset', meta, 'e', e, 's', 0) end
local k = #ARGV - 4
local last = redis.call('hincrby', meta, 's', k)
local body = table.concat(ARGV, '\n', 5)
local id = string.format('%.0f', last)
redis.call('xadd', stream, 'MAXLEN', ARGV[1], id .. '-0', 'n', k, 'd', body)
redis.call('expire', meta, ARGV[2]); redis.call('expire', stream, ARGV[2])
redis.call('publish', ARGV[4], 'r2:' .. id .. ':' .. k .. ':' .. e .. ':' .. body)
return {last, e}"
payload=$(head -c "$plen" /dev/zero | tr '\0' x)
frame=$(head -c "$dlen" /dev/zero | tr '\0' x)
for i in 1 2; do
    "$PYTHON" "$PEERS/redis_sub.py" "$RPORT" 'rc:{bare}:c' >"$WORK/sub$i.log" 2>&1 &
    SUB_PIDS+=($!)
done
sleep 0.5
# measure LABEL PIPELINE MESSAGES_PER_COMMAND COMMAND...: Redis CPU per message, one JSON line.
measure() {
    local label=$1 P=$2 k=$3
    shift 3
    local n=$((200000 / k))
    rcli flushall >/dev/null
    local a b t0 t1
    a=$(awk '{print $1}' /proc/"$REDIS_PID"/schedstat)
    t0=$(date +%s.%N)
    if ! redis-benchmark -p "$RPORT" -c 4 -n "$n" -P "$P" "$@" >"$WORK/rb.out" 2>&1 ||
        grep -q -i "error" "$WORK/rb.out"; then
        echo "cluster.sh: redis-benchmark failed for '$label': $(grep -i -m1 error "$WORK/rb.out")" >&2
        return 1
    fi
    t1=$(date +%s.%N)
    b=$(awk '{print $1}' /proc/"$REDIS_PID"/schedstat)
    LABEL="$label" "$PYTHON" -c "
import json, os
print(json.dumps({'scenario': 'redis-cost', 'server': 'redis', 'phase': 'redis', 'ok': True,
                  'label': os.environ['LABEL'], 'pipeline': $P, 'per_command': $k,
                  'payload_bytes': $plen, 'subscribers': 2, 'messages': $n * $k,
                  'messages_per_s': $n * $k / ($t1 - $t0),
                  'redis_run_ns_per_message': ($b - $a) / ($n * $k)}))" >>"$results"
    tail -1 "$results" | "$PYTHON" -c 'import json,sys; r=json.load(sys.stdin); print("  %-50s -P %-3d %9.0f msg/s  redis %6.0f ns/message" % (r["label"], r["pipeline"], r["messages_per_s"], r["redis_run_ns_per_message"]))' >&2
}
echo "cluster.sh: phase 3, Redis CPU per message: a bare PUBLISH of $plen bytes to 2 subscribers" \
     "(pipelined 1 and $depth, roomcast's median commands per write) and the sequencing script" \
     "in pieces, $rounds rounds" >&2
sha_pub="" sha_nop="" sha_min="" sha_each="" sha_one=""
if [ -n "$PUB_BODY" ]; then
    sha_pub=$(rcli script load "$PUB_BODY")
    sha_nop=$(rcli script load "return 1")
    sha_min=$(rcli script load "local id = redis.call('hincrby', KEYS[1], 's', 1)
redis.call('publish', ARGV[5], ARGV[1]) return {id, 'e', 0}")
    sha_each=$(rcli script load "$BATCH_EACH")
    sha_one=$(rcli script load "$BATCH_ONE")
else
    echo "cluster.sh: rc_cluster__pub_script not found in src/cluster/clpub.c: the script is not measured" >&2
fi
K=8
batch=()
for _ in $(seq $K); do batch+=("$frame"); done
M='rc:{room1}:m' S='rc:{room1}:s' T='rc:{room1}:k' C='rc:{bare}:c' E=0123456789abcdef
for round in $(seq "$rounds"); do
    measure "PUBLISH" 1 1 PUBLISH "$C" "$payload"
    measure "PUBLISH" "$depth" 1 PUBLISH "$C" "$payload"
    # the strictest yardstick: a bare PUBLISH pipelined 32 deep (batching lowers roomcast's own
    # commands per write, which would make a yardstick at its depth costlier and the ratio kinder)
    [ "$depth" -lt 32 ] && measure "PUBLISH" 32 1 PUBLISH "$C" "$payload"
    [ -n "$sha_pub" ] || continue
    measure "script: return 1" "$depth" 1 EVALSHA "$sha_nop" 0
    measure "script: HINCRBY + PUBLISH" "$depth" 1 EVALSHA "$sha_min" 1 "$M" "$frame" 0 0 "$E" "$C"
    # roomcast's script (src/cluster/clpub.c): KEYS meta, stream, state; ARGV history, ttl,
    # epoch, channel, idempotency ttl, n, the body ("<len>:<payload>" per message; plain
    # messages: no other argument)
    seg="${#frame}:$frame"
    measure "roomcast script, 1 message, no history, no ttl" "$depth" 1 EVALSHA "$sha_pub" 3 "$M" "$S" "$T" 0 0 "$E" "$C" 300 1 "$seg"
    measure "roomcast script, 1 message, no history, ttl 300" "$depth" 1 EVALSHA "$sha_pub" 3 "$M" "$S" "$T" 0 300 "$E" "$C" 300 1 "$seg"
    measure "roomcast script, 1 message, history 1000, no ttl" "$depth" 1 EVALSHA "$sha_pub" 3 "$M" "$S" "$T" 1000 0 "$E" "$C" 300 1 "$seg"
    measure "roomcast script, 1 message (history 1000, ttl 300)" "$depth" 1 EVALSHA "$sha_pub" 3 "$M" "$S" "$T" 1000 300 "$E" "$C" 300 1 "$seg"
    for kb in 2 4 8 16 32; do
        body=""
        for _ in $(seq $kb); do body+="$seg"; done
        measure "roomcast script, batch of $kb (history 1000, ttl 300)" "$depth" $kb EVALSHA "$sha_pub" 3 "$M" "$S" "$T" 1000 300 "$E" "$C" 300 $kb "$body"
        measure "roomcast script, batch of $kb (history 1000, members: no ttl)" "$depth" $kb EVALSHA "$sha_pub" 3 "$M" "$S" "$T" 1000 0 "$E" "$C" 300 $kb "$body"
    done
    measure "batch of $K, an XADD per message, one PUBLISH" "$depth" $K EVALSHA "$sha_each" 2 "$M" "$S" 1000 300 "$E" "$C" "${batch[@]}"
    measure "batch of $K, one XADD and one PUBLISH" "$depth" $K EVALSHA "$sha_one" 2 "$M" "$S" 1000 300 "$E" "$C" "${batch[@]}"
done
for p in "${SUB_PIDS[@]}"; do kill "$p" 2>/dev/null; done
SUB_PIDS=()
}
if has_phase redis; then phase_redis; fi

# -- the tables -----------------------------------------------------------------------------------
"$PYTHON" - "$results" "$rooms" "$clients" "$size" "$duration" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rooms, clients, size, duration = sys.argv[2:6]
def med(rs, k):
    xs = [r[k] for r in rs if r.get(k) is not None]
    return statistics.median(xs) if xs else None
def f(v, d=0):
    return "-" if v is None else f"{v:,.{d}f}"
order = ["rc1", "rc1-redis", "rc2-redis", "sio1", "sio2-redis"]
for phase, title in (("sat", "saturation (flat out, window 4)"),
                     ("half", "half saturation (open loop at half of each variant's median rate)"),
                     ("fixed", "fixed rate (open loop, the same per-client rate for every variant)")):
    rs = [r for r in rows if r["phase"] == phase]
    if not rs:
        continue
    print(f"\n{title}: {rooms} rooms x {clients} clients, {size}-byte messages, {duration} s;"
          " medians of the ok rounds")
    head = ["variant", "ok", "Hz", "deliv/s", "nodes ns/deliv", "redis ns/deliv",
            "redis ns/msg", "p50 us", "p99 us", "cross p50", "cross p99", "cmds/write"]
    table = []
    for v in order:
        mine = [r for r in rs if r["server"] == v]
        if not mine:
            continue
        ok = [r for r in mine if r["ok"]]
        nd = med(ok, "server_run_ns_per_delivery")
        table.append([v, f"{len(ok)}/{len(mine)}", f(med(ok, "rate_hz"), 1),
                      f(med(ok, "deliveries_per_s")), f(nd),
                      f(med(ok, "redis_run_ns_per_delivery")), f(med(ok, "redis_run_ns_per_publish")),
                      f(med(ok, "lat_p50_us")), f(med(ok, "lat_p99_us")),
                      f(med(ok, "cross_p50_us")), f(med(ok, "cross_p99_us")),
                      f(med(ok, "redis_commands_per_write"), 1)])
        for r in mine:
            if not r["ok"]:
                table.append(["", "", "failure: " + str(r.get("failure"))])
    w = [max(len(t[i]) for t in [head] + table if len(t) == len(head)) for i in range(len(head))]
    for t in [head] + table:
        if len(t) != len(head):
            print("  " + " ".join(t))
            continue
        print("  " + "  ".join(x.rjust(w[i]) if i else x.ljust(w[i]) for i, x in enumerate(t)))
    # The targets' ratios: Socket.IO's nodes' CPU per delivery over roomcast's, same shape.
    def nd(v):
        return med([r for r in rs if r["server"] == v and r["ok"]], "server_run_ns_per_delivery")
    for s, c in (("sio1", "rc1"), ("sio2-redis", "rc2-redis"), ("rc2-redis", "rc1"),
                 ("rc2-redis", "rc1-redis")):
        if nd(s) and nd(c):
            print(f"  nodes' CPU per delivery, {s} / {c}: {nd(s) / nd(c):.2f}")
red = [r for r in rows if r["phase"] == "redis"]
if red:
    print("\nRedis CPU per message (redis-benchmark, 2 subscribers on the channel, one room), medians:")
    labels = []
    for r in red:
        if (r["label"], r["pipeline"]) not in labels:
            labels.append((r["label"], r["pipeline"]))
    bare = {p: med([r for r in red if r["label"] == "PUBLISH" and r["pipeline"] == p],
                   "redis_run_ns_per_message") for (l, p) in labels if l == "PUBLISH"}
    depth = max(bare) if bare else None
    for l, p in labels:
        v = med([r for r in red if r["label"] == l and r["pipeline"] == p], "redis_run_ns_per_message")
        x = f"  {v / bare[depth]:.1f}x" if depth and bare.get(depth) and v else ""
        print(f"  {l:<50} -P {p:<3} {f(v):>7} ns{x}")
    for v in ("rc1-redis", "rc2-redis", "sio2-redis"):
        x = med([r for r in rows if r["phase"] == "sat" and r["server"] == v and r["ok"]],
                "redis_run_ns_per_publish")
        if x and bare:
            print(f"  {v} in the saturation runs: Redis {f(x)} ns per published message = " +
                  ", ".join(f"{x / b:.1f}x a bare PUBLISH pipelined {p}" for p, b in bare.items() if b))
PY
echo "cluster.sh: results: $results" >&2
