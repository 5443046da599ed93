#!/usr/bin/env bash
# gemma4c against llama.cpp on the same files, the same machine, the same
# moments: for each model, PAIRS pairs of (gemma4c bench, llama-bench) runs,
# the order inside a pair alternating, then the medians and their ratios as
# the speed issue's table (pp and tg in tokens/s; pp's share of the int8
# peak gemma4c's bench probed in the same runs).
#
#   bench/llama_compare.sh LLAMA_BENCH MODEL.gguf [MODEL.gguf ...]
#   env: PAIRS (3), THREADS (2), PP (512), TG (128), G4 (build/gemma4c)
#
# LLAMA_BENCH is a llama-bench built from source on this machine, e.g.
#   cmake -B build -DGGML_NATIVE=ON -DGGML_OPENMP=ON -DLLAMA_CURL=OFF &&
#   cmake --build build -j2 --target llama-bench   (-> build/bin/llama-bench)
# Files from `gemma4c synth` load in both (the same GGUF tensors and keys).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: bench/llama_compare.sh LLAMA_BENCH MODEL.gguf..." >&2; exit 2; }
lb=$1; shift
[ -x "$lb" ] || { echo "llama_compare: $lb is not an executable llama-bench" >&2; exit 2; }
lb=$(realpath "$lb")
models=()
for m in "$@"; do
    [ -f "$m" ] || { echo "llama_compare: no such model file $m" >&2; exit 2; }
    models+=("$(realpath "$m")")
done
g4=$(realpath "${G4:-$(dirname "$0")/../build/gemma4c}")
[ -x "$g4" ] || { echo "llama_compare: $g4 not built (make build/gemma4c)" >&2; exit 2; }
pairs=${PAIRS:-3} threads=${THREADS:-2} pp=${PP:-512} tg=${TG:-128}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for m in "${models[@]}"; do
    for ((i = 0; i < pairs; i++)); do
        order="g4 llama"; (( i % 2 )) && order="llama g4"
        for tag in $order; do
            if [ $tag = g4 ]; then
                "$g4" bench -m "$m" -t "$threads" -p "$pp" -n "$tg" -r 1 --json |
                    /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)
res = {t["test"]: t["tps"] for t in r["results"]}
pct = {t["test"]: t["roofline_pct"] for t in r["results"]}
print(json.dumps({"tag": "g4", "model": sys.argv[1], "pp": res.get("pp" + sys.argv[2]), "tg": res.get("tg" + sys.argv[3]),
                  "pp_pct": pct.get("pp" + sys.argv[2]), "rss": r.get("peak_rss_bytes")}))' "$m" "$pp" "$tg" >> "$out"
            else
                "$lb" -m "$m" -t "$threads" -p "$pp" -n "$tg" -r 1 -o jsonl 2>/dev/null |
                    /usr/bin/python3 -c '
import json, sys
pp = tg = None
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"): continue
    r = json.loads(line)
    if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0: pp = r["avg_ts"]
    if r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0: tg = r["avg_ts"]
print(json.dumps({"tag": "llama", "model": sys.argv[1], "pp": pp, "tg": tg}))' "$m" >> "$out"
            fi
        done
    done
done
/usr/bin/python3 - "$out" "$pp" "$tg" "$threads" "$pairs" <<'PY'
import json, os, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
pp, tg, th, pairs = sys.argv[2:6]
def med(m, tag, key):
    v = [r[key] for r in rows if r["model"] == m and r["tag"] == tag and r.get(key) is not None]
    return statistics.median(v) if v else None
f = lambda v: "-" if v is None else f"{v:.1f}" if v >= 10 else f"{v:.2f}"
ratio = lambda a, b: "-" if not a or not b else f"{a / b:.2f}x"
print(f"{th} threads, medians of {pairs} alternating pairs\n")
print(f"| file | pp{pp} gemma4c / llama.cpp | ratio | gemma4c pp % of int8 peak | tg{tg} gemma4c / llama.cpp | ratio |")
print("|---|---|---:|---:|---|---:|")
for m in dict.fromkeys(r["model"] for r in rows):
    gp, lp, gt, lt = med(m, "g4", "pp"), med(m, "llama", "pp"), med(m, "g4", "tg"), med(m, "llama", "tg")
    pct = med(m, "g4", "pp_pct")
    print(f"| {os.path.basename(m)} | {f(gp)} / {f(lp)} | {ratio(gp, lp)} | {'-' if pct is None else f'{pct:.0f}%'} "
          f"| {f(gt)} / {f(lt)} | {ratio(gt, lt)} |")
PY
