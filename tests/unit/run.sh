#!/bin/sh
# Runs every unit-test binary under DIR (one per module, in folders that mirror src/) and prints
# the combined closing line.
dir=${1:-build/sanitize/tests}
passed=0; failed=0; broken=0
for t in $(find "$dir" -type f -name 'test_*' -perm -u+x ! -name '*.d' | sort); do
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out"
    line=$(printf '%s\n' "$out" | tail -n 1)
    p=$(printf '%s' "$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
    f=$(printf '%s' "$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
    if [ -z "$p" ]; then broken=$((broken + 1)); echo "$t: crashed or printed no summary (exit $rc)"; continue; fi
    passed=$((passed + p)); failed=$((failed + f))
    [ $rc -ne 0 ] && [ "$f" -eq 0 ] && broken=$((broken + 1)) && echo "$t: exit $rc"
done
failed=$((failed + broken))
echo "unit: $passed passed, $failed failed"
[ $failed -eq 0 ]
