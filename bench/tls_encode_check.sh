#!/usr/bin/env bash
# bench/tls_encode_check.sh — checks, by counting calls in the running server, that a broadcast
# is still encoded once per room with TLS (encryption is per connection, encoding is not).
#
#   bench/tls_encode_check.sh CERT KEY       (root, and perf: Debian linux-perf; the uprobes it
#                                             adds are removed when it ends)
#
# For a plain run and a TLS run of the same fan-out (a fixed number of messages: 10 rooms x 10
# WebSocket clients x 200 messages = 20,000 publishes, 200,000 deliveries), it counts with
# `perf stat` on uprobes: rc_room_publish (messages sequenced), rc_msg_new (every message
# buffer the server makes: encodings, replies), and libssl's SSL_write (one per TLS record).
# Encoded once per room means rc_msg_new calls ~ publishes, whatever the transport; with TLS,
# SSL_write calls are per connection flush, each carrying many deliveries.
set -euo pipefail
cd "$(dirname "$0")/.."
O=${O:-build}
CERT=$1 KEY=$2
BIN=$(realpath "$O/roomcast")
LIBSSL=$(ldd "$BIN" | awk '/libssl/ {print $3}')
tmp=$(mktemp -d)
cleanup() {
    perf probe -q -d 'probe_roomcast:*' 2>/dev/null || true
    perf probe -q -d 'probe_libssl:*' 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
perf probe -q -x "$BIN" rc_room_publish
perf probe -q -x "$BIN" rc_msg_new
perf probe -q -x "$LIBSSL" SSL_write

run() { # LABEL SERVER-FLAGS... -- GENERATOR-FLAGS...
    local label=$1
    shift
    local sflags=() gflags=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do sflags+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    gflags=("$@")
    "$BIN" --port 0 --no-netsync --log-level warn "${sflags[@]}" 2>"$tmp/srv.log" &
    local pid=$!
    for _ in $(seq 100); do grep -qs "roomcast: listening on" "$tmp/srv.log" && break; sleep 0.05; done
    local port
    port=$(sed -n 's|^roomcast: listening on https\{0,1\}://[0-9.]*:\([0-9]*\)/.*|\1|p' "$tmp/srv.log")
    perf stat -x, -e probe_roomcast:rc_room_publish,probe_roomcast:rc_msg_new,probe_libssl:SSL_write \
        -p "$pid" -o "$tmp/stat" &
    local perfpid=$!
    sleep 0.3
    local out
    out=$("$O/roomcast-bench" fanout --port "$port" --server-pid "$pid" --rooms 10 --clients 10 \
          --messages 200 --quiet "${gflags[@]}" 2>/dev/null | grep '^{')
    kill -INT "$perfpid"
    wait "$perfpid" 2>/dev/null || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    local pub new wr del
    pub=$(awk -F, '/rc_room_publish/ {print $1}' "$tmp/stat")
    new=$(awk -F, '/rc_msg_new/ {print $1}' "$tmp/stat")
    wr=$(awk -F, '/SSL_write/ {print $1}' "$tmp/stat")
    del=$(sed -n 's/.*"deliveries":\([0-9]*\).*/\1/p' <<<"$out")
    awk -v l="$label" -v p="$pub" -v n="$new" -v d="$del" -v w="$wr" 'BEGIN {
        printf "%-6s publishes %s  rc_msg_new %s (%.3f per publish)  deliveries %s  SSL_write %s (%.1f deliveries per record)\n",
               l, p, n, n / p, d, w + 0, (w + 0 > 0 ? d / w : 0) }'
}

run plain
run tls --tls-cert "$CERT" --tls-key "$KEY" -- --tls
