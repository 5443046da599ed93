#!/usr/bin/env bash
# The MTP drafter from the command line: synth writes a tiny drafter for a
# reference model, generate's greedy output is the same with --draft mtp:F
# and --draft-model F as without, --draft-stats reports its cost, and a
# drafter of another model or a non-drafter file is refused by name.
. "$(dirname "$0")/lib.sh"
M=$REF/gemma4-e.gguf
check "synth --assistant-for" $G4 synth --assistant-for "$M" -o "$TMP/d.gguf" -t 1
check "synth --assistant --arch e2b (real shapes, Q4_0)" $G4 synth --assistant --arch e2b --type Q4_0 -o "$TMP/e2b.gguf" -t 1
check "synth --assistant --arch tiny refused" bash -c "! $G4 synth --assistant --arch tiny -o $TMP/x.gguf 2>/dev/null"
ids=$(cat "$REF/gemma4-e.tokens.txt")
plain=$($G4 generate -m "$M" --tokens "$ids" -n 24 --temp 0 -t 1 2>/dev/null)
mtp=$($G4 generate -m "$M" --tokens "$ids" -n 24 --temp 0 -t 1 --draft mtp:"$TMP/d.gguf" --draft-stats 2>"$TMP/stats")
mtp2=$($G4 generate -m "$M" --tokens "$ids" -n 24 --temp 0 -t 1 --draft-model "$TMP/d.gguf" --draft-max 8 2>/dev/null)
check "greedy output identical with --draft mtp:F" test -n "$plain" -a "$plain" = "$mtp"
check "greedy output identical with --draft-model F --draft-max 8" test "$plain" = "$mtp2"
check "--draft-stats reports drafts and the drafter's cost" grep -q "drafter: [1-9][0-9]* steps" "$TMP/stats"
$G4 generate -m "$REF/gemma4-dense.gguf" --tokens "2 40 41" -n 2 --draft-model "$TMP/d.gguf" 2>"$TMP/err" >/dev/null
check "another model's drafter refused" grep -q "drafter:.*target" "$TMP/err"
$G4 generate -m "$M" --tokens "2 40 41" -n 2 --draft-model "$M" 2>"$TMP/err" >/dev/null
check "a non-drafter file refused" grep -q "gemma4-assistant" "$TMP/err"
