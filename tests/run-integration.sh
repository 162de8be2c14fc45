#!/usr/bin/env bash
# Integration tests against real roomcast binaries, with real third-party clients.
#
#   tests/run-integration.sh SAN_BIN OPT_BIN
#
#   SAN_BIN  the ASan+UBSan build (build/sanitize/roomcast): pytest (python3-websockets and raw
#            sockets, tests/integration; the Python client package, tests/python_client) and
#            node's test runner (npm ws, tests/node) run against it; every server they start
#            must exit 0 on SIGTERM, so leaks and UB fail the run.
#   OPT_BIN  the optimised build (build/roomcast): reserved for the benchmark smoke run (see the
#            marked place below).
#
# Exits non-zero if anything failed. Python is Debian's (/usr/bin/python3 with python3-pytest and
# python3-websockets), not whatever python3 comes first on PATH.
set -uo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 SAN_BIN OPT_BIN" >&2
    exit 2
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
SAN_BIN=$(abspath "$1")
OPT_BIN=$(abspath "$2")
PYTHON=${PYTHON:-/usr/bin/python3}

for b in "$SAN_BIN" "$OPT_BIN"; do
    if [ ! -x "$b" ]; then
        echo "run-integration: $b is not an executable (build it first)" >&2
        exit 2
    fi
done

status=0
summary=()

# step NAME CMD... — runs one suite and records "NAME: ok" or "NAME: FAILED".
step() {
    local name=$1
    shift
    if "$@"; then
        summary+=("$name: ok")
    else
        status=1
        summary+=("$name: FAILED")
    fi
}

# node_suite DIR SECONDS — node's test runner in DIR, installing its npm packages from the
# lock file first when node_modules is missing or older than it.
node_suite() (
    cd "$ROOT/$1" || exit 1
    if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
        npm ci --no-audit --no-fund --loglevel=error || exit 1
    fi
    ROOMCAST_BIN="$SAN_BIN" timeout "$2" node --test --test-reporter=spec
)

export PYTHONDONTWRITEBYTECODE=1

echo "== integration (pytest, python websockets + raw sockets) against $SAN_BIN"
step pytest env ROOMCAST_BIN="$SAN_BIN" timeout 900 "$PYTHON" -m pytest -p no:cacheprovider -q -rfE \
    "$ROOT/tests/integration"

echo
echo "== Python client (pytest, clients/python/roomcast over WebSocket and TCP) against $SAN_BIN"
step python-client env ROOMCAST_BIN="$SAN_BIN" PYTHONPATH="$ROOT/clients/python" timeout 600 \
    "$PYTHON" -m pytest -p no:cacheprovider -q -rfE "$ROOT/tests/python_client"

echo
echo "== integration (pytest, pyzmq NetSync clients) against $SAN_BIN"
step netsync env ROOMCAST_BIN="$SAN_BIN" timeout 600 "$PYTHON" -m pytest -p no:cacheprovider -q -rfE \
    "$ROOT/tests/netsync"

echo
echo "== integration (pytest, pyzmq worker broker: seed LRU, Paranoid Pirate, Majordomo) against $SAN_BIN"
step broker env ROOMCAST_BIN="$SAN_BIN" timeout 600 "$PYTHON" -m pytest -p no:cacheprovider -q -rfE \
    "$ROOT/tests/broker"

echo
echo "== cluster (pytest, private redis-servers; docs/cluster.md)"
step cluster env ROOMCAST_BIN="$SAN_BIN" timeout 600 "$PYTHON" -m pytest -p no:cacheprovider -q -rfE \
    "$ROOT/tests/cluster"

echo
echo "== integration (node --test, npm ws, node tls) against $SAN_BIN"
step node node_suite tests/node 600

# The web client and demo in Debian's chromium, headless, driven by npm playwright-core (which
# never downloads a browser), over http:// and https:// (tls.test.mjs: the test certificate's
# key is the only one the browser accepts). Leaves build/test-output/demo.png.
echo
echo "== browser (chromium via playwright-core) against $SAN_BIN"
step browser node_suite tests/browser 300

# Every benchmark scenario once, small, against the optimised build: fails only when a run
# fails or a correctness counter (order, loss, duplicates) is non-zero — never on timing.
echo
echo "== benchmark smoke run (bench/run.sh --quick) against $OPT_BIN"
step bench-quick env ROOMCAST_BIN="$OPT_BIN" timeout 300 "$ROOT/bench/run.sh" --quick

echo
echo "== integration summary: ${summary[*]}"
steps_ok=0; steps_failed=0
for s in "${summary[@]}"; do
    case "$s" in *FAILED) steps_failed=$((steps_failed + 1)) ;; *) steps_ok=$((steps_ok + 1)) ;; esac
done
echo "integration-steps: $steps_ok passed, $steps_failed failed"
exit $status
