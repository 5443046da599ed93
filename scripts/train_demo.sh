#!/usr/bin/env bash
# Remakes models/gemma4c-mini.gguf, the default model of `make demo`: 201
# common concrete WordNet nouns (Debian's wordnet-base; scripts/setup.sh
# installs it), each noun's short first-sense gloss asked through 10
# phrasings that end with the noun (scripts/wordnet_chat.py), 50 (noun,
# phrasing) pairs held out; a 1.7M-parameter Gemma 4 (SSF SSF layers, PLE,
# the last two layers sharing KV, its own BPE vocabulary learned from the
# questions and answers) trained on them from scratch by `gemma4c train`:
# 300 steps of 512 tokens (~3 epochs), seed 1.
# Deterministic for a given thread count. Took 14 minutes with 2 threads
# (nice, on a 2-core machine shared with four other builds, load ~11).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${WORK:-build/demo-data}
T=${THREADS:-2}
OUT=${OUT:-models/gemma4c-mini.gguf}
/usr/bin/python3 scripts/wordnet_chat.py "$W" 200 50
build/gemma4c train --arch mini --corpus "$W/corpus.txt" -d "$W/train.jsonl" --eval "$W/eval.jsonl" \
    -o "$OUT" --ckpt-dir "$W/ck" --ctx 48 --batch-tokens 512 --lr 3e-3 --epochs 10 --steps 300 \
    --save-every 50 --eval-every 50 --seed 1 -t "$T" --plot "$W/loss.svg"
