#!/usr/bin/env bash
# gemma4c convert / quantize end to end: golden equality (byte for byte once
# the golden file is in the converter's tensor order), --force handling, no
# partial files, usage errors.
. "$(dirname "$0")/lib.sh"

[ -x "$G4" ] || { fail "no $G4 (run make)"; exit 0; }

# quantize gemma4-e.gguf -> Q8_0 / Q4_0: the shipped files byte for byte
for t in Q8_0 Q4_0; do
    if "$G4" quantize "$REF/gemma4-e.gguf" "$TMP/q.$t.gguf" "$t" -t 3 2>"$TMP/err"; then
        check "quantize $t equals gemma4-e.$t.gguf byte for byte" cmp -s "$TMP/q.$t.gguf" "$REF/gemma4-e.$t.gguf"
    else
        fail "quantize $t: $(cat "$TMP/err")"
    fi
done

# convert F32: metadata/tensors equal NAME.gguf (tensor order differs, so
# compare the header up to the tensor infos: metadata bytes are identical)
for m in e dense moe; do
    if "$G4" convert "$REF/gemma4-$m.hf" -o "$TMP/$m.gguf" --type F32 --name "tiny-gemma4-$m-style" 2>"$TMP/err"; then
        a=$(stat -c %s "$TMP/$m.gguf"); b=$(stat -c %s "$REF/gemma4-$m.gguf")
        check "convert $m: same size as gemma4-$m.gguf ($a)" [ "$a" = "$b" ]
        # quantizing the converted file must give the same bytes as
        # quantizing the golden one (llama-quantize reorders tensors)
        "$G4" quantize "$TMP/$m.gguf" "$TMP/$m.q8a.gguf" Q8_0 2>/dev/null
        "$G4" quantize "$REF/gemma4-$m.gguf" "$TMP/$m.q8b.gguf" Q8_0 2>/dev/null
        check "convert $m: canonical (quantized) form equals the golden one" cmp -s "$TMP/$m.q8a.gguf" "$TMP/$m.q8b.gguf"
    else
        fail "convert $m: $(cat "$TMP/err")"
    fi
done

# refuses to overwrite; --force replaces; no temp files are left
echo keep > "$TMP/exists.gguf"
if "$G4" convert "$REF/gemma4-e.hf" -o "$TMP/exists.gguf" --type F32 2>"$TMP/err"; then
    fail "convert overwrote an existing file without --force"
else
    check "convert refuses to overwrite (message)" grep -q "already exists" "$TMP/err"
    check "existing file untouched" grep -qx keep "$TMP/exists.gguf"
fi
check "convert --force replaces" "$G4" convert "$REF/gemma4-e.hf" -o "$TMP/exists.gguf" --type BF16 --force
check "no temporary files left" bash -c "! ls '$TMP' | grep -q tmp-"

# errors: bad type, missing folder, corrupt safetensors; exit codes 2 / 1
"$G4" convert "$REF/gemma4-e.hf" -o "$TMP/x.gguf" --type Q9_9 2>/dev/null; check "unknown type -> exit 2" [ $? = 2 ]
"$G4" quantize "$REF/gemma4-e.gguf" "$TMP/x.gguf" 2>/dev/null; check "missing TYPE -> exit 2" [ $? = 2 ]
"$G4" convert /nonexistent -o "$TMP/x.gguf" 2>/dev/null; check "missing folder -> exit 1" [ $? = 1 ]
mkdir -p "$TMP/bad.hf"
for f in config.json tokenizer.json tokenizer_config.json; do cp "$REF/gemma4-e.hf/$f" "$TMP/bad.hf/"; done
head -c 5000 "$REF/gemma4-e.hf/model.safetensors" > "$TMP/bad.hf/model.safetensors"
"$G4" convert "$TMP/bad.hf" -o "$TMP/x.gguf" 2>"$TMP/err"; rc=$?
check "truncated safetensors -> exit 1" [ $rc = 1 ]
check "truncated safetensors -> message names the file" grep -q "model.safetensors" "$TMP/err"
check "no output after a failure" [ ! -e "$TMP/x.gguf" ]
