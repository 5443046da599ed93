#!/usr/bin/env bash
# Long contexts with each KV cache type: decode at depth 4096 and 32768 and
# the prefill of a 32K prompt (in batches of 512), on E2B/E4B-shaped files,
# then the attention of one decode token per layer kind (bench_attn: the
# sliding layers' time must not grow with depth, the full layers' grows
# linearly and shrinks with the bytes per row). Prints peak RSS against the
# memory plan for every run (bench's last lines).
#
#   bench/kv_depth.sh [MODEL.gguf ...]     (default /work/models/e2b-Q4_K_M.gguf e4b-...)
#   env: THREADS (2), TYPES ("f32 f16 q8_0"), DEPTHS ("4096 32768"), TG (32), PROMPT (32768)
#
# Minutes per model and type on 2 cores (the 32K prefill dominates): run it on
# a quiet machine (uptime load < 1.5), the numbers are same-run comparisons.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/gemma4c}
threads=${THREADS:-2} types=${TYPES:-"f32 f16 q8_0"} depths=${DEPTHS:-"4096 32768"} tg=${TG:-32} prompt=${PROMPT:-32768}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(/work/models/e2b-Q4_K_M.gguf /work/models/e4b-Q4_K_M.gguf)
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
for m in "${models[@]}"; do
    for t in $types; do
        for d in $depths; do
            echo "== $m  --kv-type $t  decode at depth $d"
            "$BIN" bench -m "$m" -t "$threads" -p 0 -n "$tg" -d "$d" -b 512 -r 1 --kv-type "$t" | tail -6
        done
        echo "== $m  --kv-type $t  prefill of a $prompt-token prompt"
        "$BIN" bench -m "$m" -t "$threads" -p "$prompt" -b 512 -n 0 -r 1 --kv-type "$t" | tail -6
    done
done
for s in e2b e4b; do
    nice make -s build/bench/bench_attn >/dev/null
    build/bench/bench_attn --shape $s -t "$threads" --depths "$(echo $depths | tr ' ' ,)" | tee /tmp/kv_depth_attn.$$
    # the verdict: per KV type, the sliding layer's time at the deepest depth
    # over the shallowest (flat within noise: under 1.25x, when both depths
    # fill the 512-position window), and the full layer's (grows about with
    # depth)
    awk -F'|' -v shape=$s '$2 ~ /^ *[0-9]+ *$/ {
            d = $2 + 0; k = $3; gsub(/ /, "", k); sw = $4 + 0; fu = $5 + 0
            if (!(k in lo) || d < lo[k]) { lo[k] = d; slo[k] = sw; flo[k] = fu }
            if (!(k in hi) || d > hi[k]) { hi[k] = d; shi[k] = sw; fhi[k] = fu } }
        END { for (k in lo) if (hi[k] > lo[k] && slo[k] > 0 && flo[k] > 0) {
            r = shi[k] / slo[k]
            printf "%s %s: sliding layer %.1f -> %.1f us from depth %d to %d (%.2fx: %s); full layer %.2fx%s\n",
                   shape, k, slo[k], shi[k], lo[k], hi[k], r, r < 1.25 ? "does not grow" : "GROWS", fhi[k] / flo[k],
                   lo[k] < 512 ? " (shallowest depth inside the 512 window: growth up to it is expected)" : "" } }' \
        /tmp/kv_depth_attn.$$
    rm -f /tmp/kv_depth_attn.$$
done
