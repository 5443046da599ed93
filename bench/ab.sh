#!/usr/bin/env bash
# Same-run A/B of two gemma4c builds: alternates `bench` of OLD and NEW on each
# model, PAIRS times, and prints the medians and NEW/OLD ratios of pp and tg.
#
#   bench/ab.sh OLD_BIN NEW_BIN MODEL.gguf [MODEL.gguf ...]
#   env: PAIRS (3), THREADS (2), PP (512), TG (128), DEPTH (0: context before each test),
#        OLD_ARGS / NEW_ARGS (extra bench options of each build, e.g.
#        NEW_ARGS="--kv-type f32" to compare an f32 cache with a build that predates --kv-type)
#
# A shared VM's speed moves by ±15% within minutes: alternating the binaries
# gives both the same moments, so the ratio is the comparison, never a figure
# from another run.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: bench/ab.sh OLD_BIN NEW_BIN MODEL.gguf..." >&2; exit 2; }
old=$1 new=$2; shift 2
pairs=${PAIRS:-3} threads=${THREADS:-2} pp=${PP:-512} tg=${TG:-128} depth=${DEPTH:-0}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for m in "$@"; do
    for ((i = 0; i < pairs; i++)); do
        # the order within a pair alternates too, so neither build always runs second
        order="old new"; (( i % 2 )) && order="new old"
        for tag in $order; do
            bin=$old extra=${OLD_ARGS:-}; [ $tag = new ] && bin=$new extra=${NEW_ARGS:-}
            # shellcheck disable=SC2086 # extra options split on purpose
            "$bin" bench -m "$m" -t "$threads" -p "$pp" -n "$tg" -d "$depth" -r 1 --json $extra |
                /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"tag":sys.argv[1],"model":sys.argv[2],"res":{t["test"]:t["tps"] for t in r["results"]}}))' \
                "$tag" "$m" >> "$out"
        done
    done
done
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| model | test | old t/s (runs) | new t/s (runs) | new / old |")
print("|---|---|---|---|---:|")
for m in dict.fromkeys(r["model"] for r in rows):
    tests = dict.fromkeys(t for r in rows if r["model"] == m for t in r["res"])
    for t in tests:
        o = [r["res"][t] for r in rows if r["model"] == m and r["tag"] == "old"]
        n = [r["res"][t] for r in rows if r["model"] == m and r["tag"] == "new"]
        mo, mn = statistics.median(o), statistics.median(n)
        f = lambda v: ", ".join(f"{x:.2f}" for x in v)
        print(f"| {m.split('/')[-1]} | {t} | {mo:.2f} ({f(o)}) | {mn:.2f} ({f(n)}) | {mn / mo:.3f} |")
PY
