#!/usr/bin/env bash
# A process's own cost: peak RSS and wall time of `gemma4c --help` and
# `gemma4c info` (median of REPS runs) for each binary given, e.g. one that
# links FFmpeg against one that dlopen's it on the first video (issue #18's
# edge footprint); then, for the last binary, the peak RSS of a short E2B
# run at 4K context with a q8_0 cache and batch 32 against the memory plan
# `info` prints for the same settings (resident weights + edge footprint).
#
#   bench/startup_rss.sh [BIN ...]        (default build/gemma4c)
#   env: REPS (7), MODEL (models/gemma4c-mini.gguf), E2B (/work/models/e2b-Q4_K_M.gguf, "" skips)
#
# About a minute on 2 cores; RSS hardly moves with load, the times do.
set -euo pipefail
cd "$(dirname "$0")/.."
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(build/gemma4c)
reps=${REPS:-7} model=${MODEL:-models/gemma4c-mini.gguf} e2b=${E2B-/work/models/e2b-Q4_K_M.gguf}
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
# median peak RSS (MiB) and wall time (s) of a command
measure() {
    local rss=() t=()
    for _ in $(seq "$reps"); do
        read -r k s < <(/usr/bin/time -f "%M %e" "$@" 2>&1 >/dev/null | tail -1)
        rss+=("$k"); t+=("$s")
    done
    local mr mt
    mr=$(printf '%s\n' "${rss[@]}" | sort -n | sed -n "$(( (reps + 1) / 2 ))p")
    mt=$(printf '%s\n' "${t[@]}" | sort -n | sed -n "$(( (reps + 1) / 2 ))p")
    awk -v k="$mr" -v s="$mt" 'BEGIN { printf "%7.1f MiB %6.2f s", k / 1024, s }'
}
for b in "${bins[@]}"; do
    echo "$b ($(ldd "$b" | wc -l) shared objects at start)"
    echo "  --help:          $(measure "$b" --help)"
    echo "  info -m $model: $(measure "$b" info -m "$model")"
done
[ -n "$e2b" ] && [ -f "$e2b" ] || exit 0
b=${bins[${#bins[@]}-1]}
args=(--ctx 4096 --kv-type q8_0 -b 32)
plan=$("$b" info -m "$e2b" "${args[@]}")
res=$(printf '%s\n' "$plan" | awk '/weights resident:/ { print $3 }')
edge=$(printf '%s\n' "$plan" | awk '/edge footprint:/ { print $3 }')
printf '%s\n' "$plan" | grep "edge footprint"
k=$(/usr/bin/time -f "%M" "$b" run -m "$e2b" -p hi -n 8 -t 2 "${args[@]}" 2>&1 >/dev/null | tail -1)
awk -v k="$k" -v r="$res" -v e="$edge" 'BEGIN {
    M = 1048576; p = r + e
    printf "E2B run -p hi -n 8: peak RSS %.1f MiB, plan %.1f MiB (weights %.1f + %.1f): %.1f%% of the plan\n",
           k / 1024, p / M, r / M, e / M, 100 * k * 1024 / p }'
