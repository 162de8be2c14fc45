#!/usr/bin/env bash
# bench/log_fanout.sh [ROUNDS] — what the durable log costs: fanout with the log off and with
# --fsync no, everysec and always (see bench/variants.sh; bench/RESULTS.md, "Durable log").
exec "$(dirname "$0")/variants.sh" "${1:-3}" 'off=' 'no=--data-dir {DATA} --fsync no' \
    'everysec=--data-dir {DATA} --fsync everysec' 'always=--data-dir {DATA} --fsync always'
