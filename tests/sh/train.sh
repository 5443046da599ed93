# gemma4c train: the loss falls, a resumed run equals the uninterrupted one
# bit for bit, the result runs, and bad data or checkpoints are clear errors.
. "$(dirname "$0")/lib.sh"
D=$TMP/data.jsonl
for i in 1 2 3 4 5 6 7 8; do
    echo '{"text": "The quick brown fox jumps over the lazy dog. Hello world! How are you today?"}'
    echo '{"messages": [{"role": "user", "content": "What is the weather like in Paris?"}, {"role": "assistant", "content": "It is sunny and warm."}]}'
done >"$D"
T="--arch mini --ctx 64 --epochs 20 --batch-tokens 64 --lr 3e-3 --seed 3 -t 2"

$G4 train $T -d "$D" -o "$TMP/a.gguf" --steps 30 --eval "$D" --eval-every 30 >"$TMP/a.log" 2>&1
check "train runs" test -s "$TMP/a.gguf"
first=$(grep -m1 '^step 1/' "$TMP/a.log" | sed 's/.* loss \([0-9.]*\).*/\1/')
last=$(grep '^step 30/' "$TMP/a.log" | sed 's/.* loss \([0-9.]*\).*/\1/')
ev=$(grep '^step 30/' "$TMP/a.log" | sed 's/.* eval \([0-9.]*\).*/\1/')
echo "    loss step 1: $first, step 30: $last, eval: $ev"
check "the loss falls by at least 5 nats in 30 steps (two repeated examples)" awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 5) }'
check "the eval loss is printed" test -n "$ev"
out=$($G4 run -m "$TMP/a.gguf" -p "What is the weather like in Paris?" -n 8 --greedy -t 1 2>/dev/null)
check "the trained model answers its training question (got: $out)" grep -q "sunny" <<<"$out"

# 6 steps straight vs 3 steps, a checkpoint, and 3 more from it
$G4 train $T -d "$D" -o "$TMP/b.gguf" --steps 6 --save-every 3 --ckpt-dir "$TMP/b.ckpt" >/dev/null 2>&1
check "checkpoint at step 3" test -s "$TMP/b.ckpt/step-3/state.bin" -a -s "$TMP/b.ckpt/step-3/model.gguf"
$G4 train $T -d "$D" -o "$TMP/c.gguf" --steps 6 --ckpt-dir "$TMP/c.ckpt" --resume "$TMP/b.ckpt/step-3" >/dev/null 2>&1
check "resumed run = uninterrupted run (model bytes)" cmp -s "$TMP/b.gguf" "$TMP/c.gguf"
check "resumed run = uninterrupted run (optimizer state)" cmp -s "$TMP/b.ckpt/step-6/state.bin" "$TMP/c.ckpt/step-6/state.bin"

# hostile input: each a clear error naming the file, line and field
bad() {   # DESC EXPECTED-TEXT JSONL-LINE
    printf '%s\n' "$3" >"$TMP/bad.jsonl"
    local msg
    msg=$($G4 train $T -d "$TMP/bad.jsonl" -o "$TMP/x.gguf" --steps 1 2>&1)
    local rc=$?
    if [ $rc = 1 ] && grep -q "bad.jsonl:1" <<<"$msg" && grep -q "$2" <<<"$msg"; then ok "$1"; else fail "$1 (rc $rc: $msg)"; fi
}
bad "malformed JSON line" "not JSON" '{"text": "abc"'
bad "neither text nor messages" "text\" or \"messages" '{"txt": "abc"}'
bad "a role that is not a chat role" "messages\[0\].role" '{"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "x"}]}'
bad "an empty assistant turn" "messages\[1\].content" '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}'
bad "no assistant turn" "no assistant turn" '{"messages": [{"role": "user", "content": "hi"}]}'
bad "text that is not a string" "field 'text'" '{"text": 5}'
printf '{"text": "abc \xff\xfe def"}\n' >"$TMP/bad.jsonl"
msg=$($G4 train $T -d "$TMP/bad.jsonl" -o "$TMP/x.gguf" --steps 1 2>&1)
check "invalid UTF-8 is an error naming the line ($msg)" grep -q "bad.jsonl:1" <<<"$msg"

# a checkpoint of another model, a corrupted one
$G4 train --arch tiny --ctx 32 --batch-tokens 64 -d "$D" -o "$TMP/t.gguf" --steps 1 --ckpt-dir "$TMP/t.ckpt" >/dev/null 2>&1
cp "$TMP/b.ckpt/step-3/model.gguf" "$TMP/mix.gguf"
mkdir -p "$TMP/mix" && cp "$TMP/b.ckpt/step-3/model.gguf" "$TMP/mix/" && cp "$TMP/t.ckpt/step-1/state.bin" "$TMP/mix/"
msg=$($G4 train $T -d "$D" -o "$TMP/x.gguf" --resume "$TMP/mix" 2>&1)
check "resume with another model's optimizer state is refused ($msg)" grep -q "another model" <<<"$msg"
mkdir -p "$TMP/cut" && cp "$TMP/b.ckpt/step-3/model.gguf" "$TMP/cut/" && head -c 5000 "$TMP/b.ckpt/step-3/state.bin" >"$TMP/cut/state.bin"
msg=$($G4 train $T -d "$D" -o "$TMP/x.gguf" --resume "$TMP/cut" 2>&1)
check "a truncated checkpoint is refused ($msg)" grep -q "truncated\|corrupted" <<<"$msg"
msg=$($G4 train $T -d "$D" -o "$TMP/x.gguf" --resume "$TMP/b.ckpt/step-3" --seed 4 2>&1)
check "resume with another seed is refused ($msg)" grep -q "seed" <<<"$msg"

# finetune: LoRA on a frozen base (Q8_0: stored form), loss falls, resume bit
# for bit; on the F32 base the adapter reloaded (GGUF, PEFT) and merged gives
# the in-memory logits
F=$TMP/ft.jsonl
for i in $(seq 1 12); do echo '{"text": "The quick brown fox jumps over the lazy dog."}'; done >"$F"
FT="--rank 4 --alpha 8 --lr 1e-2 --epochs 10 --ctx 32 --batch-tokens 64 -t 2"
$G4 finetune -m "$REF/gemma4-e.Q8_0.gguf" -d "$F" -o "$TMP/q8ad" $FT --steps 20 >"$TMP/ft.log" 2>&1
first=$(grep -m1 '^step 1/' "$TMP/ft.log" | sed 's/.* loss \([0-9.]*\).*/\1/')
last=$(grep '^step 20/' "$TMP/ft.log" | sed 's/.* loss \([0-9.]*\).*/\1/')
echo "    LoRA on gemma4-e.Q8_0: loss step 1: $first, step 20: $last"
check "finetune writes a PEFT folder and a GGUF LoRA" test -s "$TMP/q8ad/adapter_model.safetensors" -a -s "$TMP/q8ad.gguf"
check "finetune: the loss falls by at least 5 nats in 20 steps" awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 5) }'
$G4 finetune -m "$REF/gemma4-e.Q8_0.gguf" -d "$F" -o "$TMP/r1" $FT --steps 6 --save-every 3 --ckpt-dir "$TMP/r1.ckpt" >/dev/null 2>&1
# the resumed half recomputes every layer, the first run kept them (auto): same bits
$G4 finetune -m "$REF/gemma4-e.Q8_0.gguf" -d "$F" -o "$TMP/r2" $FT --steps 6 --ckpt-dir "$TMP/r2.ckpt" --resume "$TMP/r1.ckpt/step-3" --recompute always >"$TMP/r2.log" 2>&1
check "finetune: --recompute always keeps no layer ($(grep -m1 '^memory plan' "$TMP/r2.log"))" grep -q "kept internals of 0 of 10 layers" "$TMP/r2.log"
check "finetune: resumed = uninterrupted (adapter bytes)" cmp -s "$TMP/r1.gguf" "$TMP/r2.gguf"
check "finetune: resumed = uninterrupted (optimizer state)" cmp -s "$TMP/r1.ckpt/step-6/state.bin" "$TMP/r2.ckpt/step-6/state.bin"
msg=$($G4 finetune -m "$REF/gemma4-dense.gguf" -d "$F" -o "$TMP/x" $FT --steps 6 --resume "$TMP/r1.ckpt/step-3" 2>&1)
check "finetune: a checkpoint of another base is refused ($msg)" grep -q "another model" <<<"$msg"
msg=$($G4 finetune -m "$REF/gemma4-e.Q8_0.gguf" -d "$F" -o "$TMP/x" $FT --steps 6 --exact --resume "$TMP/r1.ckpt/step-3" 2>&1)
check "finetune: --exact resuming a fast-path checkpoint is refused ($msg)" grep -q "fast path.*--exact" <<<"$msg"
$G4 finetune -m "$REF/gemma4-e.Q8_0.gguf" -d "$F" -o "$TMP/e1" $FT --exact --steps 2 --ckpt-dir "$TMP/e1.ckpt" >/dev/null 2>&1
msg=$($G4 finetune -m "$REF/gemma4-e.Q8_0.gguf" -d "$F" -o "$TMP/x" $FT --steps 6 --resume "$TMP/e1.ckpt/step-2" 2>&1)
check "finetune: the fast path resuming an --exact checkpoint is refused ($msg)" grep -q "with --exact.*add --exact" <<<"$msg"

$G4 finetune -m "$REF/gemma4-e.gguf" -d "$F" -o "$TMP/f32ad" $FT --steps 10 --dump-logits "$TMP/mem.f32" >/dev/null 2>&1
$G4 logits -m "$REF/gemma4-e.gguf" --lora "$TMP/f32ad.gguf" --exact -t 1 --tokens "$(cat "$TMP/mem.f32.tokens")" --out "$TMP/gg.f32" >/dev/null 2>&1
$G4 logits -m "$REF/gemma4-e.gguf" --lora "$TMP/f32ad" --exact -t 1 --tokens "$(cat "$TMP/mem.f32.tokens")" --out "$TMP/peft.f32" >/dev/null 2>&1
$G4 merge "$REF/gemma4-e.gguf" --lora "$TMP/f32ad.gguf" -o "$TMP/merged.gguf" >/dev/null 2>&1
$G4 logits -m "$TMP/merged.gguf" --exact -t 1 --tokens "$(cat "$TMP/mem.f32.tokens")" --out "$TMP/merged.f32" >/dev/null 2>&1
for k in gg peft merged; do
    d=$(/usr/bin/python3 -c "import numpy as n,sys; a=n.fromfile(sys.argv[1],'<f4'); b=n.fromfile(sys.argv[2],'<f4'); print(abs(a-b).max() if a.size==b.size and a.size else 'size')" "$TMP/mem.f32" "$TMP/$k.f32" 2>&1)
    check "adapter via $k = in-memory training logits, max abs $d <= 1e-4" awk -v d="$d" 'BEGIN { exit !(d != "size" && d + 0 <= 1e-4) }'
done
