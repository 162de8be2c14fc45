#!/usr/bin/env bash
# bench/run.sh — run the roomcast benchmark side by side against its peers.
#
#   bench/run.sh [options] [SCENARIO... | all]      (no scenario: all)
#
#   scenarios  fanout       100 rooms x 10 clients, 100-byte messages, flat out (window 4)
#              fanout-tcp   the same with every client on the raw TCP port, line mode
#              fanout-mixed the same with half of each room on WebSocket, half on TCP lines
#              fanout-framed  the same with every client on the TCP port's framed mode
#              fanout-30hz  34 rooms x 10 clients at 30 Hz each: ~100,000 deliveries/s, the
#                           latency target (p99 < 1 ms) and the NetSync case
#              pingpong     one client, one message in flight
#              pingpong-1cpu  the same with server and generator pinned to CPU 0: no
#                           cross-CPU wake-ups, so it measures software cost, not the VM's
#                           idle wake-up latency
#              churn        connect -> join -> publish -> leave -> close, 64 at a time
#              slow         one busy room without, then with, a member that never reads
#              idle         as many joined idle connections as the fd limit allows
#              fanout-features  fanout with issue 12's features in use (roomcast only): every
#                           member joins with "presence" and "conflate", every publish carries
#                           a "state_key" (4 per sender, so nothing is conflated for readers that
#                           keep up)
#              join-cost    one room of 1,000 members, 1,000 messages, 100 state keys; then 16
#                           clients join and leave it, 2 s per join mode (plain, history:100,
#                           history:1000, state, presence): server CPU per join (roomcast only)
#              fanout-tls   fanout over TLS, half of each room on wss://, half on the raw TCP
#                           protocol's TLS port (roomcast only; ECDSA P-256 test certificate)
#              tls-handshakes  16 connections doing full TLS handshakes (no resumption) for 3 s:
#                           server CPU per handshake (roomcast only)
#   options    --quick          smoke run: small sizes, one round, roomcast (+ ceiling) only;
#                               fails only if a run fails or a correctness counter is non-zero
#              --rounds N       rounds per scenario (default 3; idle always 1)
#              --servers LIST   comma-separated subset of roomcast,ceiling,python,node,
#                               py-selectors,py-selectors-seed (default: all but the last,
#                               which is the selectors peer writing the seed's way)
#              --out FILE       also keep the JSON lines in FILE (default: a temp file)
#              --deps           install the peers' dependencies and exit
#
# Each server runs on its own loopback port (--port 0), fresh for every scenario; rounds run the
# servers in rotating order so slow drift on this shared machine spreads over all of them. The
# tables show medians over rounds and ratios against roomcast. Binaries come from $O (default
# build); ROOMCAST_BIN overrides the server under test. BENCH_NICE=-10 runs the generator and
# every server at that niceness (all alike), which keeps other work on a shared machine from
# dominating latency figures.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
O=${O:-build}
BENCH=$ROOT/$O/roomcast-bench
CEILING=$ROOT/$O/bench-ceiling
ROOMCAST=${ROOMCAST_BIN:-$ROOT/$O/roomcast}
PYTHON=/usr/bin/python3   # Debian's, which has python3-websockets; not pyenv's (the selectors
                          # peer needs nothing but the standard library)
PEERS=$ROOT/bench/peers

ALL_SCENARIOS=(fanout fanout-tcp fanout-mixed fanout-framed fanout-30hz pingpong pingpong-1cpu churn
               slow idle fanout-features join-cost fanout-tls tls-handshakes)
quick=0
rounds=3
servers=""
out=""
scenarios=()
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --rounds) rounds=$2; shift ;;
    --servers) servers=$2; shift ;;
    --out) out=$2; shift ;;
    --deps) deps_only=1 ;;
    -h|--help) sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    all) scenarios+=("${ALL_SCENARIOS[@]}") ;;
    fanout|fanout-tcp|fanout-mixed|fanout-framed|fanout-30hz|pingpong|pingpong-1cpu|churn|slow|idle|\
    fanout-features|join-cost|fanout-tls|tls-handshakes)
        scenarios+=("$1") ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# -- dependencies --------------------------------------------------------------------------------
# Only these: Debian's python3-websockets, node + npm, and `ws` from bench/peers/package-lock.json.
have_python() { "$PYTHON" -c 'import websockets' 2>/dev/null; }
have_node() { command -v node >/dev/null && [ -f "$PEERS/node_modules/ws/package.json" ]; }
install_deps() {
    local pkgs=()
    have_python || pkgs+=(python3-websockets)
    command -v node >/dev/null || pkgs+=(nodejs)
    command -v npm >/dev/null || pkgs+=(npm)
    if [ ${#pkgs[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"
        else
            echo "run.sh: please install ${pkgs[*]} (apt-get)" >&2
        fi
    fi
    if command -v npm >/dev/null &&
        { [ ! -f "$PEERS/node_modules/.package-lock.json" ] ||
          [ "$PEERS/package-lock.json" -nt "$PEERS/node_modules/.package-lock.json" ]; }; then
        (cd "$PEERS" && npm ci --no-audit --no-fund --loglevel=error)
    fi
}
if [ "${deps_only:-0}" = 1 ]; then
    install_deps
    have_python && have_node
    exit $?
fi
# No scenario named: all of them (so `bench/run.sh --quick` is the whole smoke run).
[ ${#scenarios[@]} -gt 0 ] || scenarios=("${ALL_SCENARIOS[@]}")

make -s -C "$ROOT" O="$O" "$O/roomcast-bench" "$O/bench-ceiling" >&2 || exit 2
if [ ! -x "$ROOMCAST" ]; then
    echo "run.sh: $ROOMCAST is missing (make first)" >&2
    exit 2
fi
# The comparison is over WebSocket: roomcast's NetSync (ZeroMQ) ports stay closed, so parallel
# servers do not fight over their fixed default ports. Everything else is roomcast's defaults.
# --help is read once into a variable: `roomcast --help | grep -q` under pipefail fails whenever
# grep exits at its match before roomcast has written the rest (SIGPIPE), which dropped
# --tcp-port from one run out of three.
ROOMCAST_HELP=$("$ROOMCAST" --help 2>&1)
ROOMCAST_EXTRA=""
if grep -q -- --no-netsync <<<"$ROOMCAST_HELP"; then ROOMCAST_EXTRA="--no-netsync"; fi
# The raw TCP port (docs/tcp.md) is on for every scenario: an idle listener costs nothing, and
# one server process then serves WebSocket and TCP members alike (fanout-mixed needs both).
if grep -q -- --tcp-port <<<"$ROOMCAST_HELP"; then ROOMCAST_EXTRA+=" --tcp-port 0"; fi

if [ -z "$servers" ]; then
    if [ $quick = 1 ]; then
        servers=roomcast,ceiling
    else
        install_deps >&2 || true
        servers=roomcast,ceiling
        if have_python; then servers+=,python; else echo "run.sh: no python3-websockets: skipping the Python peer" >&2; fi
        if have_node; then servers+=,node; else echo "run.sh: no node/ws: skipping the Node peer" >&2; fi
        if [ -x "$PYTHON" ]; then servers+=,py-selectors; fi
    fi
fi
IFS=, read -r -a server_list <<<"$servers"

if [ -n "${BENCH_NICE:-}" ]; then
    renice -n "$BENCH_NICE" -p $$ >/dev/null || echo "run.sh: cannot renice to $BENCH_NICE" >&2
fi
# Every connection is a descriptor on both ends; the servers and the generator get the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d /tmp/roomcast-bench.XXXXXX)
results=${out:-$work/results.jsonl}
: >"$results"
declare -A PID PORT TPORT TLSPORT TTLSPORT
cleanup() {
    for s in "${!PID[@]}"; do kill "${PID[$s]}" 2>/dev/null; done
    wait 2>/dev/null
    [ -z "$out" ] || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

is_tls() { case "$1" in fanout-tls|tls-handshakes) return 0 ;; *) return 1 ;; esac; }
# TLS scenarios: test certificates made once per run (docs/tls.md), and roomcast's TLS listeners.
TLS_DIR=$work/tls
TLS_FLAGS=()
SC_FLAGS=()   # extra roomcast flags of the current scenario
if grep -q -- --tcp-tls-port <<<"$ROOMCAST_HELP" && command -v openssl >/dev/null &&
   "$ROOT/bench/tls_certs.sh" "$TLS_DIR" >/dev/null 2>&1; then
    TLS_FLAGS=(--tls-port 0 --tcp-tls-port 0 --tls-cert "$TLS_DIR/ec.pem" --tls-key "$TLS_DIR/ec.key")
fi

PIN=()   # command prefix for servers and generator (pingpong-1cpu)
start_server() { # NAME -> PID[NAME], PORT[NAME]
    local name=$1 log=$work/$1.log
    case "$name" in
    roomcast) "${PIN[@]}" "$ROOMCAST" --bind 127.0.0.1 --port 0 --log-level warn $ROOMCAST_EXTRA \
                  "${SC_FLAGS[@]}" 2>"$log" & ;;
    ceiling)  "${PIN[@]}" "$CEILING" --bind 127.0.0.1 --port 0 2>"$log" & ;;
    python)   "${PIN[@]}" "$PYTHON" "$PEERS/py_server.py" --bind 127.0.0.1 --port 0 2>"$log" & ;;
    py-selectors) "${PIN[@]}" "$PYTHON" "$PEERS/py_tcp_server.py" --bind 127.0.0.1 --port 0 \
                      --tcp-port 0 2>"$log" & ;;
    py-selectors-seed) "${PIN[@]}" "$PYTHON" "$PEERS/py_tcp_server.py" --bind 127.0.0.1 --port 0 \
                      --tcp-port 0 --seed-writes 2>"$log" & ;;
    node)     "${PIN[@]}" node "$PEERS/node_server.mjs" --bind 127.0.0.1 --port 0 2>"$log" & ;;
    *) echo "run.sh: unknown server '$name'" >&2; return 1 ;;
    esac
    PID[$name]=$!
    local port="" _
    for _ in $(seq 100); do
        port=$(sed -n 's|.*listening on http://[0-9.]*:\([0-9]*\)/.*|\1|p' "$log" | head -1)
        [ -n "$port" ] && break
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "run.sh: $name did not start:" >&2
        cat "$log" >&2
        unset "PID[$name]"
        return 1
    fi
    PORT[$name]=$port
    # The raw TCP port, for servers that have one (printed before the HTTP line).
    TPORT[$name]=$(sed -n 's|.*tcp listening on [0-9.]*:\([0-9]*\).*|\1|p' "$log" | head -1)
    # roomcast's TLS listeners, when the scenario opened them
    TLSPORT[$name]=$(sed -n 's|.*tls listening on https://[0-9.]*:\([0-9]*\)/.*|\1|p' "$log" | head -1)
    TTLSPORT[$name]=$(sed -n 's|.*tcp tls listening on [0-9.]*:\([0-9]*\).*|\1|p' "$log" | head -1)
}

stop_server() {
    local name=$1
    [ -n "${PID[$name]:-}" ] || return 0
    kill "${PID[$name]}" 2>/dev/null
    wait "${PID[$name]}" 2>/dev/null
    unset "PID[$name]" "PORT[$name]" "TPORT[$name]" "TLSPORT[$name]" "TTLSPORT[$name]"
}

needs_tcp() { case "$1" in fanout-tcp|fanout-mixed|fanout-framed) return 0 ;; *) return 1 ;; esac; }

# Which servers can run a scenario: the ceiling only relays (no leave, no limits); the
# WebSocket-only peers have no TCP port; the selectors peer runs the fanout comparisons (it has
# no framed mode).
runs_on() { # SCENARIO SERVER
    # issue 12's features (presence, state, conflation, history joins) are roomcast's own
    case "$1" in fanout-features|join-cost|fanout-tls|tls-handshakes) [ "$2" = roomcast ]; return ;; esac
    case "$2" in
    ceiling) case "$1" in fanout|fanout-30hz|pingpong*) return 0 ;; *) return 1 ;; esac ;;
    python|node) ! needs_tcp "$1" ;;
    py-selectors*) case "$1" in fanout|fanout-tcp|fanout-mixed) return 0 ;; *) return 1 ;; esac ;;
    *) return 0 ;;
    esac
}

# Generator arguments per scenario (full, then quick).
scenario_args() { # SCENARIO SERVER
    local sc=$1 srv=$2
    if [ $quick = 1 ]; then
        case "$sc" in
        fanout|fanout-tcp|fanout-mixed|fanout-framed)
                     echo "$sc --rooms 10 --clients 6 --duration 0.5 --drain 5" ;;
        fanout-30hz) echo "fanout --rooms 5 --clients 5 --rate 30 --duration 0.5 --drain 5" ;;
        pingpong*)   echo "pingpong --duration 0.5" ;;
        churn)       echo "churn --concurrency 8 --duration 0.5" ;;
        # Counted, not timed: 10 MB reach the stuck member, more than kernel buffers and
        # --max-pending together hold, so the cut-off happens however slow the machine is.
        slow)        echo "slow --messages 1000 --duration 0 --drain 10" ;;
        idle)        echo "idle --conns 300 --idle-time 0.2 --sample 10" ;;
        fanout-features) echo "fanout --rooms 10 --clients 6 --duration 0.5 --drain 5 --presence all" \
                              "--conflate all --state-keys 6 --keys-per-sender 4" ;;
        join-cost)   echo "join-cost --clients 200 --joiners 4 --mode-time 0.2 --presence half" \
                          "--modes plain,history:100,history:1000+state+presence" ;;
        fanout-tls)  echo "fanout --rooms 10 --clients 6 --duration 0.5 --drain 5 --transport ws,line --tls" ;;
        tls-handshakes) echo "tls-handshakes --concurrency 4 --duration 0.5" ;;
        esac
        return
    fi
    case "$sc" in
    fanout|fanout-tcp|fanout-mixed|fanout-framed)
                 echo "$sc --rooms 100 --clients 10 --size 100 --window 4 --duration 3" \
                      "--drain 10" ;;
    fanout-30hz) echo "fanout --rooms 34 --clients 10 --size 100 --rate 30 --duration 3 --drain 5" ;;
    pingpong*)   echo "pingpong --duration 2" ;;
    churn)       echo "churn --concurrency 64 --duration 3" ;;
    # The Python peer never recovers from a stuck reader (see RESULTS.md): waiting 15 s for it
    # only makes the run longer.
    slow)        if [ "$srv" = python ]; then echo "slow --duration 2 --drain 3"; else echo "slow --duration 2 --drain 10"; fi ;;
    idle)        echo "idle --idle-time 6" ;;
    fanout-features) echo "fanout --rooms 100 --clients 10 --size 100 --window 4 --duration 3" \
                          "--drain 10 --presence all --conflate all --state-keys 10 --keys-per-sender 4" ;;
    join-cost)   echo "join-cost --clients 1000 --messages 1 --state-keys 100 --joiners 16" \
                      "--mode-time 2 --modes plain,history:100,history:1000,state,presence" ;;
    fanout-tls)  echo "fanout --rooms 100 --clients 10 --size 100 --window 4 --duration 3" \
                      "--drain 10 --transport ws,line --tls" ;;
    tls-handshakes) echo "tls-handshakes --concurrency 16 --duration 3" ;;
    esac
}

failures=0
for sc in "${scenarios[@]}"; do
    n=$rounds
    [ "$sc" = idle ] || [ $quick = 1 ] && n=1
    PIN=()
    if [ "$sc" = pingpong-1cpu ]; then PIN=(taskset -c 0); fi
    SC_FLAGS=()
    if is_tls "$sc"; then
        if [ ${#TLS_FLAGS[@]} -eq 0 ]; then
            echo "run.sh: no --tcp-tls-port in $ROOMCAST or no openssl: skipping $sc" >&2
            continue
        fi
        SC_FLAGS=("${TLS_FLAGS[@]}")
    fi
    active=()
    for s in "${server_list[@]}"; do
        runs_on "$sc" "$s" || continue
        if ! start_server "$s"; then failures=$((failures + 1)); continue; fi
        if needs_tcp "$sc" && [ -z "${TPORT[$s]:-}" ]; then
            echo "run.sh: $s has no raw TCP port: skipping $sc for it" >&2
            stop_server "$s"
            continue
        fi
        active+=("$s")
    done
    echo "== $sc: ${active[*]} ($n round(s))" >&2
    for ((r = 0; r < n; r++)); do
        k=${#active[@]}
        for ((j = 0; j < k; j++)); do
            s=${active[$(((j + r) % k))]}
            read -r -a args <<<"$(scenario_args "$sc" "$s")"
            tcp=()
            port=${PORT[$s]}
            if [ -n "${TPORT[$s]:-}" ]; then tcp=(--tcp-port "${TPORT[$s]}"); fi
            if is_tls "$sc"; then port=${TLSPORT[$s]}; tcp=(--tcp-port "${TTLSPORT[$s]}"); fi
            line=$(timeout 300 "${PIN[@]}" "$BENCH" "${args[@]}" --port "$port" "${tcp[@]}" \
                       --server-pid "${PID[$s]}" --label "$s" --quiet)
            rc=$?
            if [ -z "$line" ]; then
                line="{\"scenario\":\"$sc\",\"server\":\"$s\",\"ok\":false,\"failure\":\"generator exit $rc\"}"
            fi
            # The bench scenario is fanout for fanout-30hz and fanout-features: label it with
            # the harness name.
            line=$(printf '%s' "$line" | sed "s/^{\"scenario\":\"[a-z0-9-]*\"/{\"scenario\":\"$sc\"/")
            printf '%s\n' "$line" >>"$results"
            if [ $rc -ne 0 ] || ! grep -q '"ok":true' <<<"$line"; then
                echo "   $s round $((r + 1)): FAILED $(sed -n 's/.*"failure":"\([^"]*\)".*/\1/p' <<<"$line")" >&2
                # Peers are reported, not judged: only roomcast (and the ceiling) fail the run.
                case "$s" in roomcast|ceiling) failures=$((failures + 1)) ;; esac
            else
                echo "   $s round $((r + 1)): ok" >&2
            fi
            if ! kill -0 "${PID[$s]}" 2>/dev/null; then
                echo "run.sh: $s died during $sc:" >&2
                tail -20 "$work/$s.log" >&2
                failures=$((failures + 1))
                start_server "$s" || true
            fi
        done
    done
    for s in "${active[@]}"; do stop_server "$s"; done
done

# -- tables ----------------------------------------------------------------------------------------
"$PYTHON" - "$results" <<'PY'
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
order = ["roomcast", "ceiling", "python", "node", "py-selectors", "py-selectors-seed"]

def med(rs, key):
    v = [r[key] for r in rs if isinstance(r.get(key), (int, float))]
    return statistics.median(v) if v else None

def fmt(v, unit=""):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}{unit}"
    if abs(v) >= 10:
        return f"{v:.1f}{unit}"
    return f"{v:.2f}{unit}"

# (column title, key, higher is better?) per scenario; ratios are server / roomcast.
PP = [("round trips/s", "deliveries_per_s", 1), ("srv ns/rt", "server_cpu_ns_per_delivery", 0),
      ("p50 us", "lat_p50_us", 0), ("p99 us", "lat_p99_us", 0), ("p99.9 us", "lat_p999_us", 0),
      ("gen CPU%", "bench_cpu_pct", 0)]
COLS = {
    "fanout": [("deliv/s", "deliveries_per_s", 1), ("srv ns/deliv", "server_cpu_ns_per_delivery", 0),
               ("deliv/CPU-s", "deliveries_per_server_cpu_s", 1), ("p50 us", "lat_p50_us", 0),
               ("p99 us", "lat_p99_us", 0), ("p99.9 us", "lat_p999_us", 0),
               ("RSS KiB", "server_rss_kb", 0), ("gen CPU%", "bench_cpu_pct", 0)],
    "fanout-30hz": [("deliv/s", "deliveries_per_s", 1), ("srv ns/deliv", "server_cpu_ns_per_delivery", 0),
                    ("srv CPU%", "server_cpu_pct", 0), ("p50 us", "lat_p50_us", 0),
                    ("p90 us", "lat_p90_us", 0), ("p99 us", "lat_p99_us", 0),
                    ("p99.9 us", "lat_p999_us", 0), ("max us", "lat_max_us", 0),
                    ("lag p99 us", "send_lag_p99_us", 0)],
    "pingpong": PP,
    "pingpong-1cpu": PP,
    "churn": [("sessions/s", "sessions_per_s", 1), ("srv us/session", "server_cpu_us_per_session", 0),
              ("session p50 us", "session_p50_us", 0), ("session p99 us", "session_p99_us", 0),
              ("RSS KiB", "server_rss_kb", 0)],
    "slow": [("base deliv/s", "base_deliveries_per_s", 1), ("stuck deliv/s", "deliveries_per_s", 1),
             ("ratio", "throughput_ratio", 1), ("cut off", "stuck_cut_off", 1),
             ("close code", "stuck_close_code", 1), ("p99 us", "lat_p99_us", 0)],
    "idle": [("conns", "joined", 1), ("B/conn", "rss_per_conn_bytes", 0), ("RSS KiB", "rss_loaded_kb", 0),
             ("connects/s", "connects_per_s", 1), ("sample deliv", "deliveries", 1)],
}
# The fanout shape over other wires reports exactly what fanout reports.
for sc in ("fanout-tcp", "fanout-mixed", "fanout-framed", "fanout-features", "fanout-tls"):
    COLS[sc] = COLS["fanout"]
COLS["tls-handshakes"] = [("hs/s", "hs_per_s", 1), ("srv us/hs", "server_us_per_hs", 0),
                          ("gen us/hs", "gen_us_per_hs", 0), ("hs p50 us", "hs_p50_us", 0),
                          ("hs p99 us", "hs_p99_us", 0)]
RATIO = {"fanout": ("server_cpu_ns_per_delivery", "CPU/deliv x rc"),
         "fanout-tcp": ("server_cpu_ns_per_delivery", "CPU/deliv x rc"),
         "fanout-mixed": ("server_cpu_ns_per_delivery", "CPU/deliv x rc"),
         "fanout-framed": ("server_cpu_ns_per_delivery", "CPU/deliv x rc"),
         "fanout-features": ("server_cpu_ns_per_delivery", "CPU/deliv x rc"),
         "fanout-tls": ("server_cpu_ns_per_delivery", "CPU/deliv x rc"),
         "fanout-30hz": ("server_cpu_ns_per_delivery", "CPU/deliv x rc"),
         "pingpong": ("deliveries_per_s", "rt/s x rc"),
         "pingpong-1cpu": ("deliveries_per_s", "rt/s x rc"),
         "churn": ("server_cpu_us_per_session", "CPU/session x rc"),
         "slow": ("throughput_ratio", "ratio x rc"),
         "idle": ("rss_per_conn_bytes", "B/conn x rc")}

scen = []
for r in rows:
    if r["scenario"] not in scen:
        scen.append(r["scenario"])
bad = 0
for sc in scen:
    rs = [r for r in rows if r["scenario"] == sc]
    if sc == "join-cost":
        # One row per join mode: what one join (and its leave) costs, medians over rounds.
        ok = [r for r in rs if r.get("ok")]
        c = [sum(r.get(k, 0) or 0 for r in rs) for k in ("order_violations", "losses", "duplicates", "errors")]
        print(f"\njoin-cost  (roomcast, {len(ok)}/{len(rs)} ok, order/loss/dup/err "
              + "/".join(str(int(x)) for x in c) + "; medians over rounds; per join = per join and"
              " its leave)")
        for r in rs:
            if not r.get("ok"):
                print("  failure: " + str(r.get("failure")))
        if not ok:
            continue
        r0 = ok[0]
        print(f"  room: {r0.get('room_members')} members, last_msg_id {r0.get('room_last_msg_id')},"
              f" {r0.get('room_state_keys')} state keys; {r0.get('joiners')} joiners;"
              f" server background {fmt(med(ok, 'idle_srv_us_per_s'))} us CPU/s")
        head = ["mode", "joins", "srv us/join", "B to joiner", "replayed", "state msgs",
                "member events/join", "p50 us", "gen us/join"]
        table = []
        for m in r0.get("modes", "").split(","):
            k = m.replace(":", "_").replace("+", "_")
            table.append([m] + [fmt(med(ok, k + "_" + x)) for x in
                                ("n", "us", "B", "replayed", "state_msgs", "ev", "p50_us", "gen_us")])
        w = [max(len(t[i]) for t in [head] + table) for i in range(len(head))]
        for t in [head] + table:
            print("  " + "  ".join(x.rjust(w[i]) if i else x.ljust(w[i]) for i, x in enumerate(t)))
        continue
    servers = [s for s in order if any(r["server"] == s for r in rs)]
    servers += sorted({r["server"] for r in rs} - set(servers))
    cols = COLS.get(sc, [])
    rkey, rtitle = RATIO.get(sc, (None, None))
    base = med([r for r in rs if r["server"] == "roomcast"], rkey) if rkey else None
    head = ["server", "ok"] + [c[0] for c in cols] + ([rtitle] if rkey else []) + ["order/loss/dup/err"]
    table = []
    for s in servers:
        mine = [r for r in rs if r["server"] == s]
        okn = sum(1 for r in mine if r.get("ok"))
        line = [s, f"{okn}/{len(mine)}"]
        for _, key, _ in cols:
            line.append(fmt(med(mine, key)))
        if rkey:
            v = med(mine, rkey)
            line.append(f"{v / base:.2f}" if v is not None and base else "-")
        c = [sum(r.get(k, 0) or 0 for r in mine) for k in ("order_violations", "losses", "duplicates", "errors")]
        line.append("/".join(str(int(x)) for x in c))
        table.append(line)
        fails = {r.get("failure") for r in mine if not r.get("ok") and r.get("failure")}
        for f in sorted(fails):
            table.append(["", "", "  failure: " + f])
    w = [max(len(str(t[i])) for t in [head] + [t for t in table if len(t) == len(head)]) for i in range(len(head))]
    print(f"\n{sc}  (medians over rounds; ratios are server / roomcast)")
    print("  " + "  ".join(h.rjust(w[i]) if i else h.ljust(w[i]) for i, h in enumerate(head)))
    for t in table:
        if len(t) != len(head):
            print("  " + " ".join(t).rstrip())
            continue
        print("  " + "  ".join(str(x).rjust(w[i]) if i else str(x).ljust(w[i]) for i, x in enumerate(t)))

# One room, every transport: the fanout shape's server CPU per delivery side by side, as a
# multiple of roomcast's over WebSocket (the headline of fanout-tcp and fanout-mixed).
fan = [sc for sc in ("fanout", "fanout-tcp", "fanout-mixed", "fanout-framed", "fanout-tls")
       if sc in scen]
if len(fan) > 1:
    key = "server_cpu_ns_per_delivery"
    ok = lambda sc, s: [r for r in rows if r["scenario"] == sc and r["server"] == s and r.get("ok")]
    base = med(ok("fanout", "roomcast"), key)
    servers = [s for s in order if any(r["server"] == s for r in rows if r["scenario"] in fan)]
    head = ["server"] + fan
    table = []
    for s in servers:
        line = [s]
        for sc in fan:
            v = med(ok(sc, s), key)
            line.append("-" if v is None else fmt(v) + (f" ({v / base:.2f})" if base else ""))
        table.append(line)
    w = [max(len(t[i]) for t in [head] + table) for i in range(len(head))]
    print("\nfanout by transport  (server CPU ns per delivery, medians of the ok rounds; "
          "in parentheses as a multiple of roomcast's over WebSocket)")
    for t in [head] + table:
        print("  " + "  ".join(x.rjust(w[i]) if i else x.ljust(w[i]) for i, x in enumerate(t)))
PY

if [ -n "$out" ]; then echo "results: $results" >&2; fi
if [ $failures -gt 0 ]; then
    echo "run.sh: $failures run(s) of roomcast or the ceiling failed" >&2
    exit 1
fi
exit 0
