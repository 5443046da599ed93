#!/usr/bin/env bash
# Speed of gemma4c on real-shape synthetic Gemma 4 models, as in bench/README.md.
#
#   bench/run.sh [-t THREADS] [-d DIR] [MODEL_SPEC...]
#
# MODEL_SPEC is ARCH:TYPE (default: e2b:Q4_K_M e2b:Q4_0 e2b:Q8_0 e4b:Q4_K_M
# e4b:Q4_0 e4b:Q8_0). Missing models are written with `gemma4c synth` into DIR
# (default models/bench; 3-6 GB each, a few minutes each). Each model gets
# pp512 and tg128 (3 repetitions) and, for the first one, tg128 at depth 4096,
# each with its roofline percentage; results go to stdout as markdown and to
# DIR/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2
dir=models/bench
while getopts "t:d:" o; do
    case $o in t) threads=$OPTARG ;; d) dir=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
specs=("$@")
[ ${#specs[@]} -gt 0 ] || specs=(e2b:Q4_K_M e2b:Q4_0 e2b:Q8_0 e4b:Q4_K_M e4b:Q4_0 e4b:Q8_0)
G4=build/gemma4c
[ -x $G4 ] || make -j"$threads" build/gemma4c >/dev/null
mkdir -p "$dir"
: > "$dir/results.jsonl"
bw=""
first=1
for spec in "${specs[@]}"; do
    arch=${spec%%:*}; type=${spec##*:}
    f="$dir/$arch-$type.gguf"
    if [ ! -f "$f" ]; then
        echo "synthesizing $f" >&2
        $G4 synth --arch "$arch" --type "$type" -o "$f" >&2
    fi
    # measure the bandwidth once, reuse it for every model (same run)
    args=(-m "$f" -t "$threads" -p 512 -n 128 -r "${REPS:-3}" --json)
    [ -n "$bw" ] && args+=(--bw "$bw")
    out=$($G4 bench "${args[@]}")
    echo "$out" >> "$dir/results.jsonl"
    [ -n "$bw" ] || bw=$(printf '%s' "$out" | sed -n 's/.*"bandwidth_gbs":\([0-9.]*\).*/\1/p')
    if [ $first = 1 ]; then
        $G4 bench -m "$f" -t "$threads" -p 0 -n 128 -d 4096 -r 1 --bw "$bw" --json >> "$dir/results.jsonl"
        first=0
    fi
done
/usr/bin/python3 - "$dir/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
r0 = rows[0]
print(f"machine: {r0['threads']} threads, read bandwidth {r0['bandwidth_gbs']:.1f} GB/s, "
      f"f32 peak {r0['f32_gflops']:.0f} GFLOP/s, int8 peak {r0['int8_gops']:.0f} GOP/s\n")
print("| model | file | test | t/s | % of roofline | peak RSS / plan |")
print("|---|---:|---|---:|---:|---:|")
for r in rows:
    for t in r["results"]:
        print(f"| {r['model']} | {r['size_bytes']/1e9:.2f} GB | {t['test']} | {t['tps']:.2f} "
              f"({t['tps_min']:.2f}-{t['tps_max']:.2f}) | {t['roofline_pct']:.0f}% of {t['limit']} "
              f"| {100*r['peak_rss_bytes']/r['plan_bytes']:.0f}% |")
PY
