#!/usr/bin/env bash
# bench/log_durable.sh ROUNDS [BEFORE_BIN] — what delivering only durable messages costs
# (--fsync always, issue 16): publish-to-delivery latency at a fixed rate (the fanout-30hz
# shape: 34 rooms x 10 clients at 30 Hz, ~102,000 deliveries/s) and deliveries/s and server CPU
# per delivery flat out (fanout: 100 rooms x 10 clients), with the log off, everysec and
# always, alternating round by round (bench/variants.sh). With BEFORE_BIN (another build of
# roomcast, e.g. main's), each mode runs on both builds side by side. bench/RESULTS.md,
# "Durable delivery".
set -u
cd "$(dirname "$0")/.." || exit 2
rounds=${1:-3}
before=${2:-}
v=()
for m in off everysec always; do
    flags=""
    [ "$m" != off ] && flags="--data-dir {DATA} --fsync $m"
    [ -n "$before" ] && v+=("before-$m=bin:$before $flags")
    v+=("after-$m=$flags")
done
echo "# fixed rate: 34 rooms x 10 clients at 30 Hz"
SCENARIO=fanout BENCH_ARGS="--rooms 34 --clients 10 --size 100 --rate 30 --duration 3 --drain 5" \
    bench/variants.sh "$rounds" "${v[@]}"
echo "# flat out: 100 rooms x 10 clients, window 4"
SCENARIO=fanout bench/variants.sh "$rounds" "${v[@]}"
