# The default model (models/gemma4c-mini.gguf, what `make demo` runs) answers
# the demo's question with its gloss, greedy and so deterministic: the answer
# names the noun and a word of WordNet's gloss of guitar ("a stringed
# instrument usually having six strings").
. "$(dirname "$0")/lib.sh"
M=${DEMO_MODEL:-models/gemma4c-mini.gguf}
out=$($G4 run -m "$M" -p "What is a guitar?" -n 64 --greedy 2>"$TMP/err")
echo "    answer: $out"
check "the demo answer names the noun" grep -qi 'guitar' <<<"$out"
check "the demo answer has a word of its gloss" grep -qiE 'stringed|instrument|strings' <<<"$out"
check "the demo answer is one sentence that ends" grep -qE '\.$' <<<"$out"
