#!/usr/bin/env bash
# Same-run A/B of two bench_kernels builds (e.g. before and after a kernel
# change): alternates OLD and NEW, PAIRS times, and prints per type and level
# the medians of decode's matvec (GB/s of weights, streamed from DRAM) and
# prefill's gemm tile (GOP/s, cache-resident) with NEW/OLD ratios.
#
#   bench/kernels_ab.sh OLD_BIN NEW_BIN
#   env: PAIRS (5), TYPES (Q4_0,Q8_0,Q4_K,Q5_K,Q6_K,Q3_K,Q2_K,IQ4_XS,Q5_0,Q4_1,Q5_1,IQ4_NL),
#        N (2048: input width), MB (256), REPS (3: best of, per run)
#
# A shared VM's speed moves within minutes: alternating the binaries gives
# both the same moments, so the ratio is the comparison.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: bench/kernels_ab.sh OLD_BIN NEW_BIN" >&2; exit 2; }
old=$1 new=$2
pairs=${PAIRS:-5} n=${N:-2048} mb=${MB:-256} reps=${REPS:-3}
types=${TYPES:-Q4_0,Q8_0,Q4_K,Q5_K,Q6_K,Q3_K,Q2_K,IQ4_XS,Q5_0,Q4_1,Q5_1,IQ4_NL}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for ((i = 0; i < pairs; i++)); do
    order="old new"; (( i % 2 )) && order="new old"
    for tag in $order; do
        bin=$old; [ "$tag" = new ] && bin=$new
        # rows: TYPE LEVEL matvec x gemm x [panel] [rows] quant x (builds of any age: columns 3 and 5)
        "$bin" --types "$types" --n "$n" --mb "$mb" --reps "$reps" 2>/dev/null |
            awk -v tag="$tag" '$2 != "ref" && NF >= 8 && $3 ~ /^[0-9.]+$/ { print tag, $1, $2, $3, $5 }' >> "$out"
    done
done
/usr/bin/python3 - "$out" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
keys = list(dict.fromkeys((r[1], r[2]) for r in rows))
print("| type | level | decode GB/s old | new | new/old | prefill GOP/s old | new | new/old |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for t, l in keys:
    def med(tag, col):
        v = [float(r[col]) for r in rows if r[0] == tag and r[1] == t and r[2] == l]
        return statistics.median(v) if v else float("nan")
    mo, mn, go, gn = med("old", 3), med("new", 3), med("old", 4), med("new", 4)
    print(f"| {t} | {l} | {mo:.2f} | {mn:.2f} | {mn / mo:.3f} | {go:.1f} | {gn:.1f} | {gn / go:.3f} |")
PY
