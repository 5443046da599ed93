#!/usr/bin/env bash
# Converted and re-quantized files run with the expected logits:
#  - gemma4-e.bf16.hf converted with --type BF16 gives its own float64 logits;
#  - gemma4-kq re-quantized to Q4_K_M / Q6_K (from the shipped Q8_0 file: the
#    F32 source is not shipped) is as close to the F32 source model's logits
#    (gemma4-kq.f32src.exact.logits.f32) as llama-quantize's Q4_K_M / Q6_K
#    files made from the real F32 source: rms within 10% of theirs.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
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
"$G4" convert "$REF/gemma4-e.bf16.hf" -o "$TMP/bf16.gguf" --type BF16 >/dev/null 2>&1
check "convert gemma4-e.bf16.hf --type BF16" test -s "$TMP/bf16.gguf"
"$G4" logits -m "$TMP/bf16.gguf" --tokens-file "$REF/gemma4-e.tokens.txt" --out "$TMP/bf16.f32" --exact
check "converted BF16 file: exact logits within 1e-3" cmp_logits "$TMP/bf16.f32" "$REF/gemma4-e.bf16.hf.exact.logits.f32" 1e-3 1e-3
rms_vs() { "$PY" -c "
import sys, numpy as np
a = np.fromfile('$1', dtype=np.float32).astype(np.float64); b = np.fromfile('$2', dtype=np.float32)
print(np.sqrt(((a - b) ** 2).mean()))"; }
SRC=$REF/gemma4-kq.f32src.exact.logits.f32
for t in Q4_K_M Q6_K; do
    "$G4" quantize "$REF/gemma4-kq.Q8_0.gguf" "$TMP/kq-$t.gguf" $t >/dev/null 2>&1
    check "quantize gemma4-kq -> $t" test -s "$TMP/kq-$t.gguf"
    "$G4" logits -m "$TMP/kq-$t.gguf" --tokens-file "$REF/gemma4-kq.tokens.txt" --out "$TMP/ours.f32" --exact
    "$G4" logits -m "$REF/gemma4-kq.$t.gguf" --tokens-file "$REF/gemma4-kq.tokens.txt" --out "$TMP/theirs.f32" --exact
    ours=$(rms_vs "$TMP/ours.f32" "$SRC"); theirs=$(rms_vs "$TMP/theirs.f32" "$SRC")
    echo "    $t logits rms vs the F32 source: ours $ours, llama-quantize's $theirs"
    check "re-quantized $t as close to the F32 model as llama-quantize's" \
        "$PY" -c "import sys; sys.exit(0 if $ours <= 1.1 * $theirs else 1)"
done
