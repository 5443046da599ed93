#!/usr/bin/env bash
# Same-run A/B of two bench_vision builds on the media encoders: alternates
# OLD and NEW, PAIRS times (the order inside a pair alternating too), on an
# image and a clip, and prints each one's median encode time and OLD/NEW.
#
#   bench/media_ab.sh OLD_BENCH_VISION NEW_BENCH_VISION MMPROJ.gguf IMAGE AUDIO
#   env: PAIRS (3), THREADS (2)
#
# The encode time is bench_vision's own (preprocessing excluded). A shared
# VM's speed moves within minutes: only the ratio of the same moments means
# anything, never a figure from another run.
set -euo pipefail
[ $# -eq 5 ] || { echo "usage: bench/media_ab.sh OLD NEW MMPROJ.gguf IMAGE AUDIO" >&2; exit 2; }
old=$1 new=$2 mmproj=$3 img=$4 wav=$5
pairs=${PAIRS:-3} threads=${THREADS:-2}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for kind in image audio; do
    file=$img; [ $kind = audio ] && file=$wav
    for ((i = 0; i < pairs; i++)); do
        order="old new"; (( i % 2 )) && order="new old"
        for tag in $order; do
            bin=$old; [ $tag = new ] && bin=$new
            s=$("$bin" "$mmproj" -t "$threads" "--$kind" "$file" --reps 1 2>&1 |
                sed -n 's/.*encode.*median \([0-9.]*\) s.*/\1/p' | tail -1)
            [ -n "$s" ] || { echo "media_ab: no encode time from $bin --$kind" >&2; exit 1; }
            echo "$kind $tag $s" >> "$out"
        done
    done
done
/usr/bin/python3 - "$out" <<'EOF'
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    k, tag, s = line.split()
    t.setdefault((k, tag), []).append(float(s))
for k in ("image", "audio"):
    o, n = statistics.median(t[(k, "old")]), statistics.median(t[(k, "new")])
    print("%-5s old %.3f s  new %.3f s  old/new %.2fx  (%d pairs: old %s, new %s)" % (
        k, o, n, o / n, len(t[(k, "old")]), " ".join("%.2f" % x for x in t[(k, "old")]),
        " ".join("%.2f" % x for x in t[(k, "new")])))
EOF
