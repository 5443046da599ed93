#!/usr/bin/env bash
# Remakes models/gemma4c-mini.gguf, the default model of `make demo`: WordNet
# glosses (Debian's wordnet-base, scripts/setup.sh installs it) turned into
# chat question/answer pairs, and a 1.5M-parameter Gemma 4 trained on them
# from scratch by `gemma4c train`. Deterministic for a given thread count.
# Took 47 minutes with 2 threads (nice, on a machine shared with 7 builds).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${WORK:-build/demo-data}
/usr/bin/python3 scripts/wordnet_chat.py "$W" 6000 200
head -100 "$W/eval.jsonl" >"$W/eval100.jsonl"
build/gemma4c train --arch mini --corpus "$W/corpus.txt" -d "$W/train.jsonl" --eval "$W/eval100.jsonl" \
    -o models/gemma4c-mini.gguf --ctx 96 --batch-tokens 1024 --lr 2e-3 --epochs 2 --steps 230 \
    --save-every 40 --eval-every 40 --seed 1 -t "${THREADS:-2}" --plot "$W/loss.svg"
