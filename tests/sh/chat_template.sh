#!/usr/bin/env bash
# `gemma4c render` vs the official Gemma 4 Jinja template (Debian python3-jinja2
# through shared/reference/render_template.py), byte for byte, for both template
# families: the hand-written conversations in tests/chat/cases, the verified
# examples of the spec, and seeded random conversations. Then `gemma4c parse`
# on a few outputs. The reference renders everything in one python process.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
CASES=tests/chat/cases
NRAND=${G4_CHAT_RANDOM:-300}

if [ ! -x "$G4" ]; then fail "chat_template: $G4 not built"; exit; fi
if ! $PY -c 'import jinja2' 2>/dev/null; then fail "chat_template: $PY with jinja2 (python3-jinja2) needed"; exit; fi

# compare SRC_DIR REF_DIR LABEL: one gemma4c process per family renders every
# file (--out-dir writes NAME.FAM.txt, or an empty NAME.FAM.err when rejected:
# the layout of render_all.py), then one diff compares the trees.
compare() {
    local src=$1 ref=$2 label=$3 fam out n bad x
    n=$(ls "$src"/*.json | wc -l)
    for fam in 31b e interleaved; do
        out=$TMP/out-$label-$fam
        mkdir -p "$out"
        "$G4" render --family $fam --out-dir "$out" "$src"/*.json 2>"$TMP/err-$label-$fam"
        x=()
        for o in 31b e interleaved; do [ $o != $fam ] && x+=(-x "*.$o.*"); done
        diff -rq "${x[@]}" "$ref" "$out" >"$TMP/diff-$label-$fam"
        bad=$(wc -l <"$TMP/diff-$label-$fam")
        head -n 5 "$TMP/diff-$label-$fam" | sed 's/^/  /'
        if [ "$bad" = 0 ] && [ "$n" -gt 0 ]; then ok "render $label family $fam: $n/$n byte-identical"
        else fail "render $label family $fam: $bad of $n differ"; fi
    done
}

mkdir -p "$TMP/ref" "$TMP/rand" "$TMP/rref"
ncases=$(ls $CASES/*.json | wc -l)
check "at least 60 test conversations ($ncases)" [ "$ncases" -ge 60 ]
$PY tests/chat/render_all.py "$TMP/ref" $CASES/*.json 2>"$TMP/ref.log" || fail "reference render of tests/chat/cases"
compare $CASES "$TMP/ref" cases

# The spec's verified examples (01-07 use the 31B template, 08 the
# llama.cpp-interleaved variant; --template picks the family from the file).
n=0; bad=0
for f in "$SHARED"/reference/chat-examples/0*-*.json; do
    n=$((n + 1))
    t=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["template"])' "$f")
    "$G4" render --template "$SHARED/reference/templates/$t" --request "$f" >"$TMP/out" 2>/dev/null &&
        cmp -s "$TMP/out" "${f%.json}.expected.txt" || { bad=$((bad + 1)); echo "  differs: $f"; }
done
check "spec examples byte-identical ($((n - bad))/$n)" [ $bad = 0 -a $n -ge 8 ]

# Random conversations (seeded)
$PY tests/chat/random_convs.py "$TMP/rand" "$NRAND" 7 &&
    $PY tests/chat/render_all.py "$TMP/rref" "$TMP/rand"/*.json 2>"$TMP/rref.log" || fail "random conversation generation"
compare "$TMP/rand" "$TMP/rref" random

# Family detection from template text
tmpl=$SHARED/reference/templates/google-gemma-4-31B-it.jinja
req=$CASES/01-basic.json
"$G4" render --template "$tmpl" --request $req >"$TMP/a" 2>/dev/null
check "render --template 31B file selects 31b" cmp -s "$TMP/a" "$TMP/ref/01-basic.31b.txt"
grep -v "<|channel>thought\\\\n<channel|>" "$tmpl" >"$TMP/e.jinja"
"$G4" render --template "$TMP/e.jinja" --request $req >"$TMP/a" 2>/dev/null
check "render --template E-style file selects e" cmp -s "$TMP/a" "$TMP/ref/01-basic.e.txt"
if [ -f "$REF/gemma4-e.gguf" ]; then
    "$G4" render -m "$REF/gemma4-e.gguf" --request $req >"$TMP/a" 2>/dev/null
    check "render -m gemma4-e.gguf (per-layer embeddings) selects e" cmp -s "$TMP/a" "$TMP/ref/01-basic.e.txt"
    "$G4" render -m "$REF/gemma4-dense.gguf" --request $req >"$TMP/a" 2>/dev/null
    check "render -m gemma4-dense.gguf selects 31b" cmp -s "$TMP/a" "$TMP/ref/01-basic.31b.txt"
    "$G4" render -m "$REF/gemma4-e.hf" --request $req >"$TMP/a" 2>/dev/null
    check "render -m gemma4-e.hf folder selects e" cmp -s "$TMP/a" "$TMP/ref/01-basic.e.txt"
fi
echo '{"messages":[]}' >"$TMP/bad.json"
"$G4" render --family e --request "$TMP/bad.json" >/dev/null 2>&1
check "render rejects a bad request (exit 1)" [ $? = 1 ]
check "render --help" bash -c "'$G4' render --help | grep -q -- --family"

# parse CLI
out=$(printf '<|channel>thought\nhmm\n<channel|>Sure.<|tool_call>call:f{a:<|"|>x<|"|>,n:[1,2.5]}<tool_call|><|tool_response>' |
      "$G4" parse --compact)
want='{"role":"assistant","content":"Sure.","reasoning_content":"hmm","tool_calls":[{"id":"call_0","type":"function","function":{"name":"f","arguments":"{\"a\":\"x\",\"n\":[1,2.5]}"}}]}'
check "parse prints the OpenAI message" [ "$out" = "$want" ]
out=$(printf 'text <|tool_call>call:f{a:<|"|>never closed' | "$G4" parse --compact)
check "parse keeps a broken call as content" [ "$out" = '{"role":"assistant","content":"text <|tool_call>call:f{a:<|\"|>never closed"}' ]
n=$(printf '<|channel>thought\nab<channel|>cd' | "$G4" parse --stream | wc -l)
check "parse --stream prints deltas" [ "$n" -ge 3 ]
