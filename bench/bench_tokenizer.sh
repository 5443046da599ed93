#!/usr/bin/env bash
# Tokenizer speed, gemma4c vs the JavaScript reference, same corpus, same run.
#   bash bench/bench_tokenizer.sh [tokenizer.json]
# Needs `make` (build/bench/bench_tokenizer) and the npm packages
# (npm install --prefix tests/js). Prints both results and the ratio.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TOK=${1:-../shared/testdata/tokenizer/tokenizer.json}
ITERS=${ITERS:-5}
[ -x "$BUILD/bench/bench_tokenizer" ] || make "$BUILD/bench/bench_tokenizer" >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== gemma4c (C)"
"$BUILD/bench/bench_tokenizer" --tokenizer "$TOK" --iters "$ITERS" --write-corpus "$tmp/corpus.txt" | tee "$tmp/c.txt"
echo "== @lenml/tokenizers (JavaScript, node $(node --version))"
node bench/bench_tokenizer_js.js "$TOK" "$tmp/corpus.txt" "$ITERS" | tee "$tmp/js.txt"
c=$(awk '/^encode_mb_s/ {print $2}' "$tmp/c.txt")
js=$(awk '/^encode_mb_s/ {print $2}' "$tmp/js.txt")
awk -v c="$c" -v j="$js" 'BEGIN { printf "encode: C %.2f MB/s, JS %.2f MB/s, ratio C/JS %.1fx\n", c, j, c / j }'
