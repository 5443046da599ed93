#!/usr/bin/env bash
# Runs every test program (build/tests/test_*) and every shell test
# (tests/sh/*.sh), adds up their results and ends with "N passed, N failed".
# Each C test program prints "RESULT <passed> <failed>"; each shell test prints
# the same line via tests/sh/lib.sh.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
export G4_SHARED=${G4_SHARED:-$(cd .. && pwd)/shared}
# sanitizer builds: leaks inside system libraries we cannot free (see the file)
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp}
passed=0; failed=0; broken=(); faillines=()
run_one() {
    local name=$1; shift
    local out
    out=$("$@" 2>&1); local rc=$?
    printf '%s\n' "$out" | grep -v '^RESULT ' | sed "s|^|[$name] |"
    # kept for the summary: CI shows only the log's tail
    local fl
    while IFS= read -r fl; do faillines+=("[$name] $fl"); done < <(printf '%s\n' "$out" | grep -E '^ *(FAIL|not ok)' | head -20)
    local line
    line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -1)
    if [ -z "$line" ]; then
        echo "[$name] crashed or printed no RESULT line (exit $rc)"
        failed=$((failed + 1)); broken+=("$name"); return
    fi
    set -- $line
    passed=$((passed + $2)); failed=$((failed + $3))
    if [ "$3" != 0 ] || [ $rc != 0 ]; then
        broken+=("$name")
        [ "$3" = 0 ] && failed=$((failed + 1))
    fi
}
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
for s in tests/sh/*.sh; do
    [ -f "$s" ] || continue
    run_one "$(basename "$s" .sh)" bash "$s"
done
if [ ${#broken[@]} -gt 0 ]; then
    echo "failing: ${broken[*]}"
    [ ${#faillines[@]} -gt 0 ] && printf '%s\n' "${faillines[@]}" | cut -c1-400
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
