#!/usr/bin/env bash
# LoRA from the command line (shared/testdata/gemma4-lora-ref):
#  - logits --lora FILE[:S] and --lora PEFT_DIR[:S] --exact within 1e-3 of
#    the float64 reference, the fast path within llama.cpp's F32 bounds;
#  - generate --greedy --exact --lora gives the reference greedy ids;
#  - merge -o F32 then logits = logits --lora (<= 1e-4), and merge --type Q8_0 runs;
#  - adapter: PEFT -> GGUF LoRA is llama.cpp's file byte for byte;
#  - an adapter for another base model is refused, naming the tensor.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
LR=$SHARED/testdata/gemma4-lora-ref
cmp_logits() { # got ref maxabs rms
    "$PY" - "$@" <<'PYEOF'
import sys, numpy as np
a = np.fromfile(sys.argv[1], dtype=np.float32); b = np.fromfile(sys.argv[2], dtype=np.float32)
if a.shape != b.shape: print("shape", a.shape, b.shape); sys.exit(1)
d = np.abs(a.astype(np.float64) - b)
mx, rms = d.max(), np.sqrt((d * d).mean())
print(f"    max {mx:.3g} rms {rms:.3g}")
sys.exit(0 if mx <= float(sys.argv[3]) and rms <= float(sys.argv[4]) else 1)
PYEOF
}
for name in gemma4-e gemma4-dense; do
    M=$REF/$name.gguf
    T=$LR/$name.tokens.txt
    for form in lora.gguf peft; do
        for s in 1.0 0.5; do
            "$G4" logits -m "$M" --lora "$LR/$name.$form:$s" --tokens-file "$T" --out "$TMP/x.f32" --exact -t 2
            check "$name $form S=$s --exact vs float64" cmp_logits "$TMP/x.f32" "$LR/$name.scale$s.exact.logits.f32" 1e-3 1e-3
            "$G4" logits -m "$M" --lora "$LR/$name.$form:$s" --tokens-file "$T" --out "$TMP/f.f32" -t 2
            check "$name $form S=$s fast vs llama.cpp" cmp_logits "$TMP/f.f32" "$LR/$name.scale$s.logits.f32" 0.1 0.01
        done
    done
    out=$("$G4" generate -m "$M" --lora "$LR/$name.peft" --tokens-file "$T" --greedy --exact -n 8 -t 2)
    check "$name generate --lora greedy = exact greedy ids" test "$out" = "$(cat "$LR/$name.scale1.0.exact.greedy.txt")"
done

# merge: F32 keeps the run-time product; Q8_0 runs
E=$REF/gemma4-e.gguf
"$G4" merge "$E" --lora "$LR/gemma4-e.peft:0.5" -o "$TMP/m.gguf" >/dev/null 2>&1
check "merge --lora PEFT:0.5 writes a file" test -s "$TMP/m.gguf"
"$G4" logits -m "$TMP/m.gguf" --tokens-file "$LR/gemma4-e.tokens.txt" --out "$TMP/m.f32" --exact -t 2
"$G4" logits -m "$E" --lora "$LR/gemma4-e.peft:0.5" --tokens-file "$LR/gemma4-e.tokens.txt" --out "$TMP/r.f32" --exact -t 2
check "merged F32 = adapter at run time (exact, 1e-4)" cmp_logits "$TMP/m.f32" "$TMP/r.f32" 1e-4 1e-4
# a Hugging Face folder base with the PEFT folder: F32 GGUF with the reference logits
"$G4" merge "$REF/gemma4-dense.hf" --lora "$LR/gemma4-dense.peft:0.5" -o "$TMP/h.gguf" >/dev/null 2>&1
"$G4" logits -m "$TMP/h.gguf" --tokens-file "$LR/gemma4-dense.tokens.txt" --out "$TMP/h.f32" --exact -t 2
check "merge of an HF folder base: exact logits vs float64 (1e-3)" cmp_logits "$TMP/h.f32" "$LR/gemma4-dense.scale0.5.exact.logits.f32" 1e-3 1e-3
# --type Q8_0 = merge to F32 then quantize (same weights, so the same logits);
# Q8_0 on this tiny model is ~1.2 max / 0.2 rms from F32 (llama.cpp's own files)
"$G4" merge "$E" --lora "$LR/gemma4-e.lora.gguf" -o "$TMP/q.gguf" --type Q8_0 >/dev/null 2>&1
"$G4" merge "$E" --lora "$LR/gemma4-e.lora.gguf" -o "$TMP/f.gguf" >/dev/null 2>&1
"$G4" quantize "$TMP/f.gguf" "$TMP/fq.gguf" Q8_0 >/dev/null 2>&1
"$G4" logits -m "$TMP/q.gguf" --tokens-file "$LR/gemma4-e.tokens.txt" --out "$TMP/q.f32" -t 2
"$G4" logits -m "$TMP/fq.gguf" --tokens-file "$LR/gemma4-e.tokens.txt" --out "$TMP/fq.f32" -t 2
check "merge --type Q8_0 = merge then quantize (logits bit for bit)" cmp -s "$TMP/q.f32" "$TMP/fq.f32"
check "merged Q8_0 within Q8_0 noise of llama.cpp's adapter logits" cmp_logits "$TMP/q.f32" "$LR/gemma4-e.scale1.0.logits.f32" 1.5 0.3

# the converter's file from the PEFT folder (general.name is the folder's, as llama.cpp makes it)
"$G4" adapter "$LR/gemma4-e.peft" -o "$TMP/e.lora.gguf" >/dev/null
"$G4" adapter "$TMP/e.lora.gguf" -o "$TMP/e.peft" --format peft >/dev/null
"$G4" logits -m "$E" --lora "$TMP/e.peft" --tokens-file "$LR/gemma4-e.tokens.txt" --out "$TMP/rt.f32" --exact -t 2
"$G4" logits -m "$E" --lora "$LR/gemma4-e.lora.gguf" --tokens-file "$LR/gemma4-e.tokens.txt" --out "$TMP/o.f32" --exact -t 2
check "PEFT -> GGUF -> PEFT: the same logits bit for bit" cmp -s "$TMP/rt.f32" "$TMP/o.f32"

# another base: refused with the tensor and both shapes
"$G4" logits -m "$E" --lora "$LR/gemma4-dense.lora.gguf" --tokens-file "$LR/gemma4-e.tokens.txt" --out "$TMP/bad.f32" 2>"$TMP/err"
rc=$?
check "adapter for another base refused (exit $rc)" test $rc -ne 0
check "the message names the tensor and both shapes" grep -q "blk.0.ffn_down.weight.*\[64, 256\].*\[64, 128\]" "$TMP/err"
"$G4" merge "$E" --lora "$LR/gemma4-dense.peft" -o "$TMP/bad.gguf" 2>"$TMP/err"
check "merge refuses it too, leaving no file" test $? -ne 0 -a ! -e "$TMP/bad.gguf"
