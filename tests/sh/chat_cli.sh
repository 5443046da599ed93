#!/usr/bin/env bash
# gemma4c run / chat on the tiny synthetic model (random weights: we check the
# plumbing, not the words) and on a golden model's real gemma4 vocabulary.
. "$(dirname "$0")/lib.sh"

"$G4" synth --arch tiny -o "$TMP/tiny.gguf" 2>/dev/null
M=$TMP/tiny.gguf
out=$("$G4" run -m "$M" -p "Hello there" -n 12 --seed 3 --json 2>"$TMP/err")
check "run exits 0" test $? = 0
last=$(printf '%s\n' "$out" | tail -1)
check "run --json ends with an assistant message" sh -c "printf '%s' '$(printf '%s' "$last" | sed "s/'/'\\\\''/g")' | grep -q '\"role\":\"assistant\"'"
a=$("$G4" run -m "$M" -p "Hi" -n 12 --seed 3); b=$("$G4" run -m "$M" -p "Hi" -n 12 --seed 3)
check "run is reproducible with a seed" test "$a" = "$b"
"$G4" run -m "$M" -n 4 2>/dev/null; check "run without -p -> exit 2" test $? = 2
"$G4" run -m "$M" -p x --family nope 2>/dev/null; check "bad --family -> exit 2" test $? = 2
"$G4" run -m "$M" -p "Hi" -n 4 --think --hide-thinking --system "Be brief." >/dev/null 2>&1
check "run --think --hide-thinking --system works" test $? = 0
"$G4" run --help | grep -q -- "--hide-thinking"; check "run --help documents --hide-thinking" test $? = 0

out=$(printf 'hello\n/think\nhow are you\n/system be brief\nagain\n/bogus\n/clear\n/quit\n' | "$G4" chat -m "$M" -n 6 2>&1)
check "chat exits 0 on /quit" test $? = 0
check "chat /think toggles" sh -c "printf '%s' \"\$0\" | grep -q 'thinking on'" "$out"
check "chat /system sets" sh -c "printf '%s' \"\$0\" | grep -q 'system prompt set'" "$out"
check "chat /clear clears" sh -c "printf '%s' \"\$0\" | grep -q 'conversation cleared'" "$out"
check "chat rejects unknown commands" sh -c "printf '%s' \"\$0\" | grep -q 'unknown command /bogus'" "$out"
n=$(printf '%s\n' "$out" | grep -c '\[length limit\]')
check "chat answered the three messages" test "$n" = 3
printf 'a\n' | "$G4" chat -m "$M" -n 2 >/dev/null 2>&1; check "chat ends at end of input" test $? = 0

# a context too small for the conversation is refused with a message, not a crash
out=$(printf 'hello hello hello hello hello hello hello hello hello hello hello hello\n' | "$G4" chat -m "$M" -n 64 --ctx 16 2>&1)
check "chat reports a full context" sh -c "printf '%s' \"\$0\" | grep -q 'fills the context'" "$out"
out=$(printf 'hi\n' | "$G4" chat -m "$M" -n 100000 --ctx 64 2>&1)
check "an answer stops where the context ends" sh -c "printf '%s' \"\$0\" | grep -q 'length limit'" "$out"

# the golden model's real (small) gemma4 vocabulary, special tokens included
out=$("$G4" run -m "$REF/gemma4-e.gguf" -p "the cat" -n 8 --greedy --json 2>&1)
check "run on a golden model" test $? = 0
