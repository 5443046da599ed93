# Training gradients against an independent float64 torch implementation
# (tests/py/grad_torch.py): autograd per tensor <= 1e-4 relative, float64
# finite differences per entry <= 1e-3, on the three golden tiny models,
# and a LoRA adapter's A and B on the dense one (base frozen).
# test_grad writes gemma4c's gradients (G4_GRAD_DUMP); Debian's python3-torch
# runs the reference.
. "$(dirname "$0")/lib.sh"
if ! /usr/bin/python3 -c 'import torch, numpy' 2>/dev/null; then
    fail "python3-torch and python3-numpy are needed (scripts/setup.sh installs them)"; exit
fi
G4_GRAD_DUMP=$TMP "$BUILD/tests/test_grad" >"$TMP/c.log" 2>&1
check "test_grad wrote the gradients of three models" test -s "$TMP/gemma4-e.grad" -a -s "$TMP/gemma4-dense.grad" -a -s "$TMP/gemma4-moe.grad"
for m in gemma4-dense gemma4-e gemma4-moe; do
    if /usr/bin/python3 tests/py/grad_torch.py "$SHARED" "$TMP" "$m" >"$TMP/$m.log" 2>&1; then
        ok "$m gradients = torch float64 autograd and finite differences"
    else
        fail "$m gradients differ from torch float64"
    fi
    sed 's/^/    /' "$TMP/$m.log"
done
# LoRA on the F32 dense base: the adapter's A and B gradients
if /usr/bin/python3 tests/py/grad_torch.py "$SHARED" "$TMP" --lora gemma4-dense >"$TMP/lora.log" 2>&1; then
    ok "gemma4-dense LoRA gradients = torch float64 autograd and finite differences"
else
    fail "gemma4-dense LoRA gradients differ from torch float64"
fi
sed 's/^/    /' "$TMP/lora.log"
