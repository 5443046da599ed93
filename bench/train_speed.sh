#!/usr/bin/env bash
# Fine-tuning speed against prefill, and the memory of a long context
# (issue #17's speed point). For each model (default: the synthetic E2B and
# E4B Q4_K_M files):
#   - prefill tokens/s of a CTX-token prompt (gemma4c bench -p CTX -n 0);
#   - LoRA training tokens/s (rank RANK, all seven targets, sequences of CTX
#     tokens, one sequence per step): 1 warm-up step, then STEPS measured
#     steps, from finetune's own per-step report "(step: N tokens, S s)";
#   - their ratio. A training step does about 3x a forward's work (forward,
#     backward through the activations, the adapters' gradients) plus the
#     recomputed forward of activation checkpointing: the goal is >= 1/3.5.
# Then E2B at ctx RSS_CTX: finetune's memory plan (weights mapped,
# activations, adapter + gradients + AdamW) against /usr/bin/time -v's
# peak RSS of the same run.
#
#   bench/train_speed.sh [MODEL.gguf ...]
#   env: THREADS (2), CTX (512), RANK (16), STEPS (2), RSS_CTX (2048), RSS_MODEL (E2B),
#        FT_ARGS (extra finetune options, e.g. --exact for the reference path)
#
# Run it on a quiet machine (uptime load < 1.5); every number is from this run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/gemma4c}
threads=${THREADS:-2} ctx=${CTX:-512} rank=${RANK:-16} steps=${STEPS:-2} rss_ctx=${RSS_CTX:-2048}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(/work/models/e2b-Q4_K_M.gguf /work/models/e4b-Q4_K_M.gguf)
rss_model=${RSS_MODEL:-${models[0]}}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# plain text, each line far longer than any context here (cut at --ctx)
line=$(printf 'The first step is to read the file, then we parse the header, check every field and map the tensors. %.0s' $(seq 1 200))
for i in 1 2 3 4 5 6 7 8; do printf '{"text": "%s %d"}\n' "$line" "$i"; done >"$TMP/data.jsonl"

echo "load: $(cut -d' ' -f1-3 /proc/loadavg)   threads $threads, ctx $ctx, rank $rank, $steps measured steps"
printf '| model | prefill t/s | training t/s | training / prefill | goal 1/3.5 = 0.286 |\n|---|---:|---:|---:|---|\n' >"$TMP/table"
for m in "${models[@]}"; do
    name=$(basename "$m" .gguf)
    pp=$("$BIN" bench -m "$m" -t "$threads" -p "$ctx" -n 0 -r 1 --json 2>/dev/null |
         sed -n 's/.*"test":"pp[0-9]*","tps":\([0-9.]*\).*/\1/p' | head -1)
    "$BIN" finetune -m "$m" -d "$TMP/data.jsonl" -o "$TMP/ad-$name" --ctx "$ctx" --batch-tokens "$ctx" \
        --rank "$rank" --steps $((steps + 1)) -t "$threads" ${FT_ARGS:-} 2>&1 | tee "$TMP/ft-$name.log" | grep -E '^(memory|step)'
    tr=$(awk -v skip=1 '/^step [0-9]+\// && /\(step: / {
            n++; if (n <= skip) next
            match($0, /\(step: [0-9]+ tokens, [0-9.]+ s\)/); s = substr($0, RSTART + 7, RLENGTH - 9)
            split(s, a, " "); tok += a[1]; sec += a[3] }
         END { if (sec > 0) printf "%.2f", tok / sec }' "$TMP/ft-$name.log")
    ratio=$(awk -v a="${tr:-0}" -v b="${pp:-0}" 'BEGIN { if (b > 0) printf "%.3f (1/%.2f)", a / b, (a > 0 ? b / a : 0) }')
    ok=$(awk -v a="${tr:-0}" -v b="${pp:-0}" 'BEGIN { print (b > 0 && a / b >= 1 / 3.5) ? "met" : "not met" }')
    printf '| %s | %s | %s | %s | %s |\n' "$name" "${pp:-?}" "${tr:-?}" "$ratio" "$ok" >>"$TMP/table"
done
echo
cat "$TMP/table"

echo
echo "== $(basename "$rss_model" .gguf): memory at ctx $rss_ctx (one training step)"
/usr/bin/time -v "$BIN" finetune -m "$rss_model" -d "$TMP/data.jsonl" -o "$TMP/ad-rss" --ctx "$rss_ctx" \
    --batch-tokens "$rss_ctx" --rank "$rank" --steps 1 -t "$threads" ${FT_ARGS:-} >"$TMP/rss.log" 2>&1
plan=$(grep -m1 '^memory plan' "$TMP/rss.log")
peak=$(sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\).*/\1/p' "$TMP/rss.log")
echo "$plan"
echo "$plan" | awk -v peak="$peak" '{
    for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^MiB/) v[++n] = $i
    printf "planned: weights %.0f + activations %.0f + adapter/optimizer %.0f = %.0f MiB; peak RSS %.0f MiB\n",
           v[1], v[2], v[3], v[1] + v[2] + v[3], peak / 1024
    printf "(the weights are mapped: only the pages a step reads are resident, all of them after one step)\n" }'
