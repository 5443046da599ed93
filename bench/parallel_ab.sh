#!/usr/bin/env bash
# Same-run A/B of two gemma4c builds on batched decode: alternates
# `bench --parallel` of OLD and NEW on each model, PAIRS times, and prints per
# stream count the median aggregate t/s of each, NEW/OLD, and each build's
# N-streams / 1-stream ratio (issue #14's goal: 8 streams >= 3x one) and share
# of the step's roofline (bandwidth or int8 peak, as bench prints it).
#
#   bench/parallel_ab.sh OLD_BIN NEW_BIN MODEL.gguf [MODEL.gguf ...]
#   env: PAIRS (3), THREADS (2), TG (32), PAR (1,2,4,8,16)
#
# Alternating the builds gives both the same moments of a shared VM; compare
# the ratios, not figures from another run.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: bench/parallel_ab.sh OLD_BIN NEW_BIN MODEL.gguf..." >&2; exit 2; }
old=$1 new=$2; shift 2
pairs=${PAIRS:-3} threads=${THREADS:-2} tg=${TG:-32} par=${PAR:-1,2,4,8,16}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for m in "$@"; do
    for ((i = 0; i < pairs; i++)); do
        order="old new"; (( i % 2 )) && order="new old"
        for tag in $order; do
            bin=$old; [ $tag = new ] && bin=$new
            "$bin" bench -m "$m" -t "$threads" --parallel "$par" -n "$tg" -r 1 --ttft-prefix 0 --json |
                /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"tag":sys.argv[1],"model":sys.argv[2],"res":{str(p["n"]):[p["aggregate_tps"],p["roofline_pct"]] for p in r["parallel"]}}))' \
                "$tag" "$m" >> "$out"
        done
    done
done
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| model | streams | old t/s | new t/s | new / old | old xN/x1 | new xN/x1 | old % roof | new % roof |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for m in dict.fromkeys(r["model"] for r in rows):
    med = lambda tag, n, k: statistics.median(r["res"][n][k] for r in rows if r["model"] == m and r["tag"] == tag)
    ns = list(dict.fromkeys(n for r in rows if r["model"] == m for n in r["res"]))
    for n in ns:
        o, w = med("old", n, 0), med("new", n, 0)
        o1, w1 = med("old", ns[0], 0), med("new", ns[0], 0)
        print(f"| {m.split('/')[-1]} | {n} | {o:.2f} | {w:.2f} | {w / o:.3f} | {o / o1:.2f} | {w / w1:.2f} |"
              f" {med('old', n, 1):.0f}% | {med('new', n, 1):.0f}% |")
PY
