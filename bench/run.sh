#!/usr/bin/env bash
# Speed of gemma4c on real-shape synthetic Gemma 4 models, as in bench/README.md.
#
#   bench/run.sh [-t THREADS] [-d DIR] [-c] [MODEL_SPEC...]
#
# MODEL_SPEC is ARCH:TYPE (default: e2b:Q4_K_M e2b:Q4_0 e2b:Q8_0 e4b:Q4_K_M
# e4b:Q4_0 e4b:Q8_0). Missing models are written with `gemma4c synth` into DIR
# (default models/bench; 3-6 GB each, a few minutes each). Each model gets
# pp512 and tg128 (3 repetitions) and, for the first one, tg128 at depth 4096;
# results go to stdout as markdown and to DIR/results.jsonl. Every model's
# bench probes the machine again; on a shared VM the probes move (±30% within
# minutes was seen), so the table's percentages use the best bandwidth and
# int8 peak measured in the whole run (a low probe would flatter a result);
# for tg it also gives the median share of the probes run right before and
# right after each repetition (same moment, same neighbours).
# -c (root only) drops the page cache and compacts memory before each model,
# so every model starts alike: cold, with free memory for the 2 MB pages its
# weights are mapped with (src/format/mapfile.h); otherwise whichever model
# ran earlier decides how fragmented memory is.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2
dir=models/bench
cold=0
while getopts "t:d:c" o; do
    case $o in t) threads=$OPTARG ;; d) dir=$OPTARG ;; c) cold=1 ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
specs=("$@")
[ ${#specs[@]} -gt 0 ] || specs=(e2b:Q4_K_M e2b:Q4_0 e2b:Q8_0 e4b:Q4_K_M e4b:Q4_0 e4b:Q8_0)
G4=build/gemma4c
[ -x $G4 ] || make -j"$threads" build/gemma4c >/dev/null
mkdir -p "$dir"
: > "$dir/results.jsonl"
first=1
for spec in "${specs[@]}"; do
    arch=${spec%%:*}; type=${spec##*:}
    f="$dir/$arch-$type.gguf"
    if [ ! -f "$f" ]; then
        echo "synthesizing $f" >&2
        $G4 synth --arch "$arch" --type "$type" -o "$f" >&2
    fi
    if [ $cold = 1 ]; then
        sync
        echo 3 > /proc/sys/vm/drop_caches
        echo 1 > /proc/sys/vm/compact_memory
    fi
    $G4 bench -m "$f" -t "$threads" -p 512 -n 128 -r "${REPS:-3}" --json >> "$dir/results.jsonl"
    if [ $first = 1 ]; then
        $G4 bench -m "$f" -t "$threads" -p 0 -n 128 -d 4096 -r 1 --json >> "$dir/results.jsonl"
        first=0
    fi
done
/usr/bin/python3 - "$dir/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bw = max(r["bandwidth_gbs"] for r in rows)
i8 = max(r["int8_gops"] for r in rows)
print(f"machine: {rows[0]['threads']} threads; best of the run's probes: read bandwidth {bw:.1f} GB/s, "
      f"int8 peak {i8:.0f} GOP/s (probes ranged {min(r['bandwidth_gbs'] for r in rows):.1f}-{bw:.1f} GB/s)\n")
print("| model | file | test | t/s (min-max) | GB/s read | % of roofline (best probe) | % of adjacent probe | peak RSS / plan |")
print("|---|---:|---|---:|---:|---:|---:|---:|")
for r in rows:
    for t in r["results"]:
        adj = ""
        if t["limit"] == "bandwidth":
            gb = r["bandwidth_gbs"] / t["roofline_tps"] * t["tps"]       # bytes per token x t/s
            pct, read = 100 * gb / bw, f"{gb:.1f}"
            if "adjacent_pct" in t:
                adj = f"{t['adjacent_pct']:.0f}% of {t['adjacent_bandwidth_gbs']:.1f} GB/s"
        else:
            flops = r["int8_gops"] / t["roofline_tps"] if t["limit"] == "int8 peak" else None
            pct = 100 * t["tps"] * flops / i8 if flops else t["roofline_pct"]
            read = ""
        print(f"| {r['file'].split('/')[-1]} | {r['size_bytes']/1e9:.2f} GB | {t['test']} | {t['tps']:.2f} "
              f"({t['tps_min']:.2f}-{t['tps_max']:.2f}) | {read} | {pct:.0f}% of {t['limit']} | {adj} "
              f"| {100*r['peak_rss_bytes']/r['plan_bytes']:.0f}% |")
PY
