#!/usr/bin/env bash
# Remakes models/gemma4c-mini.gguf, the default model of `make demo`: WordNet
# noun glosses (Debian's wordnet-base; scripts/setup.sh installs it) turned
# into chat question/answer pairs, and a 1.7M-parameter Gemma 4 (SSF SSF
# layers, PLE, the last two layers sharing KV) trained on them from scratch
# by `gemma4c train` in two phases:
#   1. 230 steps of 1024 tokens over all 5,798 pairs (6,000 most used nouns,
#      200 held out for eval), seed 1;
#   2. resumed from its last checkpoint for 120 more steps on the first
#      1,200 pairs (+ "What is a guitar?", the demo question), a few epochs,
#      so the answers it has seen come back.
# Deterministic for a given thread count. Took 41 + 20 minutes with 2
# threads (nice, on a 2-core machine shared with 7 other builds).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${WORK:-build/demo-data}
T=${THREADS:-2}
/usr/bin/python3 scripts/wordnet_chat.py "$W" 6000 200
head -100 "$W/eval.jsonl" >"$W/eval100.jsonl"
head -1200 "$W/train.jsonl" >"$W/sub.jsonl"
grep '"What is a guitar?"' "$W/train.jsonl" >>"$W/sub.jsonl"
build/gemma4c train --arch mini --corpus "$W/corpus.txt" -d "$W/train.jsonl" --eval "$W/eval100.jsonl" \
    -o "$W/phase1.gguf" --ckpt-dir "$W/ck1" --ctx 96 --batch-tokens 1024 --lr 2e-3 --epochs 2 --steps 230 \
    --save-every 40 --eval-every 40 --seed 1 -t "$T" --plot "$W/loss1.svg"
build/gemma4c train --resume "$W/ck1/step-230" -d "$W/sub.jsonl" --eval "$W/eval100.jsonl" \
    -o models/gemma4c-mini.gguf --ckpt-dir "$W/ck2" --ctx 96 --batch-tokens 1024 --lr 3e-3 --epochs 10 \
    --steps 350 --save-every 40 --eval-every 40 --seed 1 -t "$T" --plot "$W/loss2.svg"
