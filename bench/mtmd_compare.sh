#!/usr/bin/env bash
# gemma4c's encoders against llama.cpp's mtmd on the same files, the same
# machine, the same moments: PAIRS pairs of (bench_vision, llama-mtmd-cli)
# runs, the order inside a pair alternating, then the medians and their
# ratio (issue 16's speed point).
#
#   bench/mtmd_compare.sh LLAMA_MTMD_CLI [MMPROJ.gguf MODEL.gguf]
#   env: PAIRS (3), THREADS (2), ARCH (e2b), WORK (/tmp/g4-mtmd), AUDIO (1)
#
# Without files it makes them once in WORK: `gemma4c synth --arch ARCH
# --mmproj` (F16, the converter's layout: llama.cpp loads it) and the text
# model `synth --arch ARCH --type Q4_K_M` (both programs need one; the
# prefill runs on it), a 960x672 test picture (ffmpeg testsrc2; exactly 280
# soft tokens in both: transformers' rule keeps it, llama.cpp's [40, 280]
# window too) and 30 s of speech (espeak-ng looped, 16 kHz mono: 750 tokens).
#
# Timed: the encode alone (decode and resize excluded) as each program
# reports it: gemma4c the median of 3 encodes in bench_vision, llama.cpp
# its own "mtmd batch encoding done in N ms" (older trees: "... slice
# encoded in N ms") after its warm-up encode. Then gemma4c's image encode +
# prefill of the 280-token run (+ 12 text tokens) on the text model, against
# the 3 s goal, and the encode's share of the f32 peak bench_vision probes.
#
# LLAMA_MTMD_CLI is llama.cpp built from source on this machine, e.g.
#   cmake -B build -DGGML_NATIVE=ON -DGGML_OPENMP=ON -DLLAMA_CURL=OFF &&
#   cmake --build build -j2 --target llama-mtmd-cli  (-> build/bin/llama-mtmd-cli)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bench/mtmd_compare.sh LLAMA_MTMD_CLI [MMPROJ.gguf MODEL.gguf]" >&2; exit 2; }
lc=$1
[ -x "$lc" ] || { echo "mtmd_compare: $lc is not an executable llama-mtmd-cli" >&2; exit 2; }
lc=$(realpath "$lc")
root=$(realpath "$(dirname "$0")/..")
g4=$root/build/gemma4c bv=$root/build/bench/bench_vision
for b in "$g4" "$bv"; do
    [ -x "$b" ] || { echo "mtmd_compare: $b not built (make build/gemma4c build/bench/bench_vision)" >&2; exit 2; }
done
pairs=${PAIRS:-3} threads=${THREADS:-2} arch=${ARCH:-e2b} work=${WORK:-/tmp/g4-mtmd} audio=${AUDIO:-1}
mkdir -p "$work"
mmproj=${2:-$work/mmproj-$arch.gguf} model=${3:-$work/$arch-Q4_K_M.gguf}
[ -f "$mmproj" ] || "$g4" synth --arch "$arch" --mmproj -o "$mmproj" >&2
[ -f "$model" ] || "$g4" synth --arch "$arch" --type Q4_K_M -o "$model" >&2
img=$work/img-960x672.png wav=$work/speech-30s.wav
[ -f "$img" ] || ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=960x672:rate=1 -frames:v 1 "$img"
if [ "$audio" = 1 ] && [ ! -f "$wav" ]; then
    espeak-ng -w "$work/speech.wav" "The quick brown fox jumps over the lazy dog. Gemma four listens to thirty" \
        "seconds of speech, and the encoder turns it into seven hundred and fifty soft tokens for the text model."
    ffmpeg -loglevel error -y -stream_loop -1 -i "$work/speech.wav" -t 30 -ar 16000 -ac 1 -c:a pcm_s16le "$wav"
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# llama.cpp: one process per medium (load, warm-up encode, encode, prefill,
# one token); its own encode time
llama() {   # kind file
    local log
    log=$("$lc" -m "$model" --mmproj "$mmproj" "--$1" "$2" -p "Describe this." -n 1 -t "$threads" --temp 0 \
        -c 4096 --chat-template gemma 2>&1) || { echo "$log" | tail -5 >&2; echo "mtmd_compare: llama-mtmd-cli failed" >&2; exit 1; }
    local ms
    ms=$(echo "$log" | sed -n 's/.*mtmd batch encoding done in \([0-9]*\) ms.*/\1/p; s/.*slice encoded in \([0-9]*\) ms.*/\1/p' | tail -1)
    [ -n "$ms" ] || { echo "$log" | tail -5 >&2; echo "mtmd_compare: no encode time in llama-mtmd-cli's log" >&2; exit 1; }
    echo "{\"tag\": \"llama\", \"kind\": \"$1\", \"s\": $(awk "BEGIN { print $ms / 1000 }")}" >> "$out"
}

ours() {   # kind file
    local log
    if [ "$1" = image ]; then
        log=$("$bv" "$mmproj" "$model" -t "$threads" --image "$2" --reps 3)
    else
        log=$("$bv" "$mmproj" -t "$threads" --audio "$2" --reps 3)
    fi
    echo "$log" | /usr/bin/python3 -c '
import json, re, sys
kind = sys.argv[1]
r = {"tag": "g4", "kind": kind}
for line in sys.stdin:
    if kind == "image" and line.startswith("encode "):
        r["s"] = float(re.search(r"median ([0-9.]+) s", line).group(1))
        r["pct"] = float(re.search(r"= ([0-9.]+)% of the f32 peak", line).group(1))
        r["tokens"] = int(re.search(r"-> (\d+) soft tokens", line).group(1))
    if kind == "audio" and line.startswith("audio "):
        r["s"] = float(re.search(r"median ([0-9.]+) s", line).group(1))
        r["tokens"] = int(re.search(r"-> (\d+) soft tokens", line).group(1))
    if line.startswith("prefill "):
        r["prefill"] = float(re.search(r"median ([0-9.]+) s", line).group(1))
print(json.dumps(r))' "$1" >> "$out"
}

kinds="image"
[ "$audio" = 1 ] && kinds="image audio"
for kind in $kinds; do
    file=$img
    [ $kind = audio ] && file=$wav
    for ((i = 0; i < pairs; i++)); do
        order="ours llama"; (( i % 2 )) && order="llama ours"
        for who in $order; do $who $kind "$file"; done
    done
done

/usr/bin/python3 - "$out" "$threads" "$pairs" "$(basename "$mmproj")" "$(basename "$model")" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
th, pairs, mmproj, model = sys.argv[2:6]
def med(tag, kind, key="s"):
    v = [r[key] for r in rows if r["tag"] == tag and r["kind"] == kind and key in r]
    return statistics.median(v) if v else None
print(f"{th} threads, medians of {pairs} alternating pairs; {mmproj} (+ {model} for llama.cpp's context and our prefill)\n")
print("| input | tokens | gemma4c encode | llama.cpp mtmd encode | llama.cpp / gemma4c | gemma4c % of f32 peak |")
print("|---|---:|---:|---:|---:|---:|")
for kind, name in (("image", "960x672 PNG"), ("audio", "30 s WAV")):
    g, l = med("g4", kind), med("llama", kind)
    if g is None and l is None: continue
    tok = med("g4", kind, "tokens")
    pct = med("g4", kind, "pct")
    print(f"| {name} | {'-' if tok is None else int(tok)} | {'-' if g is None else f'{g:.2f} s'} | "
          f"{'-' if l is None else f'{l:.2f} s'} | {'-' if not g or not l else f'{l / g:.2f}x'} | "
          f"{'-' if pct is None else f'{pct:.0f}%'} |")
g, p = med("g4", "image"), med("g4", "image", "prefill")
if g is not None and p is not None:
    print(f"\ngemma4c image encode + prefill of its 292-token prompt: {g:.2f} + {p:.2f} = {g + p:.2f} s "
          f"(goal: under 3 s) -> {'met' if g + p < 3 else 'not met'}")
PY
