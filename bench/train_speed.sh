#!/usr/bin/env bash
# Fine-tuning speed against prefill, and the memory of a long context
# (issue #17's speed point). For each model (default: the synthetic E2B and
# E4B Q4_K_M files):
#   - prefill tokens/s of a CTX-token prompt (gemma4c bench -p CTX -n 0);
#   - LoRA training tokens/s (rank RANK, all seven targets, sequences of CTX
#     tokens, one sequence per step): 1 warm-up step, then STEPS measured
#     steps, from finetune's own per-step report "(step: N tokens, S s)";
#   - their ratio. A training step does about 3x a forward's work (forward,
#     backward through the activations, the adapters' gradients), plus the
#     recomputed forward of the layers whose internals were not kept
#     (--recompute; auto keeps all of them at ctx 512): the goal is >= 1/3.5;
#   - the measured steps' seconds by part (finetune --profile): the layers'
#     forward, the head's forward and backward, the recomputed forward, the
#     layers' backward, the optimizer.
# One row per --recompute mode of MODES (default "auto"; "auto always"
# shows what keeping the activations buys).
# Then E2B at ctx RSS_CTX (default mode auto): finetune's memory plan
# (weights mapped, activations = kept layer internals + workspace, adapter +
# gradients + AdamW) against /usr/bin/time -v's peak RSS of the same run.
#
#   bench/train_speed.sh [MODEL.gguf ...]
#   env: THREADS (2), CTX (512), RANK (16), STEPS (2), RSS_CTX (2048), RSS_MODEL (E2B),
#        MODES ("auto"), RSS_ARGS (extra options of the memory run, e.g. "--act-mem 2048"),
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
printf '| model | --recompute | prefill t/s | training t/s | training / prefill | goal 1/3.5 = 0.286 |\n|---|---|---:|---:|---:|---|\n' >"$TMP/table"
printf '| model | --recompute | forward | head | head backward | recomputed forward | backward | optimizer |\n|---|---|---:|---:|---:|---:|---:|---:|\n' >"$TMP/parts"
for m in "${models[@]}"; do
    name=$(basename "$m" .gguf)
    pp=$("$BIN" bench -m "$m" -t "$threads" -p "$ctx" -n 0 -r 1 --json 2>/dev/null |
         sed -n 's/.*"test":"pp[0-9]*","tps":\([0-9.]*\).*/\1/p' | head -1)
    for mode in ${MODES:-auto}; do
        log=$TMP/ft-$name-$mode.log
        "$BIN" finetune -m "$m" -d "$TMP/data.jsonl" -o "$TMP/ad-$name" --ctx "$ctx" --batch-tokens "$ctx" \
            --rank "$rank" --steps $((steps + 1)) -t "$threads" --recompute "$mode" --profile ${FT_ARGS:-} 2>&1 |
            tee "$log" | grep -E '^(memory|step|  parts)'
        tr=$(awk -v skip=1 '/^step [0-9]+\// && /\(step: / {
                n++; if (n <= skip) next
                match($0, /\(step: [0-9]+ tokens, [0-9.]+ s\)/); s = substr($0, RSTART + 7, RLENGTH - 9)
                split(s, a, " "); tok += a[1]; sec += a[3] }
             END { if (sec > 0) printf "%.2f", tok / sec }' "$log")
        ratio=$(awk -v a="${tr:-0}" -v b="${pp:-0}" 'BEGIN { if (b > 0) printf "%.3f (1/%.2f)", a / b, (a > 0 ? b / a : 0) }')
        ok=$(awk -v a="${tr:-0}" -v b="${pp:-0}" 'BEGIN { print (b > 0 && a / b >= 1 / 3.5) ? "met" : "not met" }')
        printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$mode" "${pp:-?}" "${tr:-?}" "$ratio" "$ok" >>"$TMP/table"
        # mean seconds per measured step by part, and each part's share of the step
        awk -v name="$name" -v mode="$mode" '/^  parts \(s\):/ { n++; if (n <= 1) next
                k = 0
                for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) v[++k] += $i; m++ }
             END { if (!m) exit; t = 0; for (i = 1; i <= 6; i++) t += v[i]
                   printf "| %s | %s |", name, mode
                   for (i = 1; i <= 6; i++) printf " %.2f s (%.0f%%) |", v[i] / m, 100 * v[i] / t; printf "\n" }' \
            "$log" >>"$TMP/parts"
    done
done
echo
cat "$TMP/table"
echo
echo "seconds per measured step by part (share of the step):"
cat "$TMP/parts"

echo
echo "== $(basename "$rss_model" .gguf): memory at ctx $rss_ctx (one training step)"
/usr/bin/time -v "$BIN" finetune -m "$rss_model" -d "$TMP/data.jsonl" -o "$TMP/ad-rss" --ctx "$rss_ctx" \
    --batch-tokens "$rss_ctx" --rank "$rank" --steps 1 -t "$threads" --profile ${RSS_ARGS:-} ${FT_ARGS:-} >"$TMP/rss.log" 2>&1
plan=$(grep -m1 '^memory plan' "$TMP/rss.log")
peak=$(sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\).*/\1/p' "$TMP/rss.log")
echo "$plan"
grep -E '^(step|  parts)' "$TMP/rss.log" || true
# the plan's MiB figures in print order: weights, activations, trainable,
# kept internals, workspace, resident after a step, weights read
echo "$plan" | awk -v peak="$peak" '{
    for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^MiB/) { x = $i; sub(/^[~(]/, "", x); v[++n] = x }
    match($0, /kept internals of [0-9]+ of [0-9]+ layers/); kl = substr($0, RSTART + 18, RLENGTH - 18)
    printf "planned: weights %.0f mapped, %.0f read + activations %.0f (kept internals of %s: %.0f, workspace %.0f) + adapter/optimizer %.0f + ~35 process = %.0f MiB resident\n",
           v[1], v[7], v[2], kl, v[4], v[5], v[3], v[6]
    r = peak / 1024 / v[6]
    printf "peak RSS %.0f MiB = %.1f%% of the plan: %s (goal: within 5%%)\n", peak / 1024, 100 * r,
           (r >= 0.95 && r <= 1.05) ? "within" : "OUTSIDE"
    printf "(the weights are mapped: a step reads all but the per-layer embedding table, of which a row per token)\n" }'
