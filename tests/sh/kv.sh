#!/usr/bin/env bash
# KV cache types from the command line, and peak RSS against the memory plan
# (no timing): on the tiny synthetic model at a 4K context filled to 4000
# positions, each type's measured peak beyond the resident weights (VmHWM,
# read by bench) stays within its planned footprint (KV + scratch + 11 MiB
# for the process and 96 bytes a vocabulary entry for its tokenizer) and
# above it less 8 MiB; f16 and q8_0 save what the plan says against f32.
# `info` prints the type and the edge verdict; bad types are refused by
# every front end.
. "$(dirname "$0")/lib.sh"

M=$TMP/tiny.gguf
"$G4" synth --arch tiny --type Q8_0 -o "$M" 2>/dev/null
for t in f32 f16 q8_0; do
    "$G4" bench -m "$M" -p 64 -n 4 -d 4000 -r 1 -t 2 --bw 10 --kv-type $t --json 2>/dev/null >"$TMP/$t.json"
    check "bench --kv-type $t runs" test -s "$TMP/$t.json"
done
# a sanitizer build's shadow memory and quarantine are not in any plan
case "$BUILD" in
*asan*) echo "skip peak RSS against the plan (sanitizer build)" ;;
*)
check "peak RSS beyond the weights is within each type's plan" /usr/bin/python3 - "$TMP" <<'PY'
import json, sys
MiB = 1 << 20
r = {t: json.load(open(f"{sys.argv[1]}/{t}.json")) for t in ("f32", "f16", "q8_0")}
for t, j in r.items():
    assert j["kv_type"] == t, j["kv_type"]
    got = j["peak_rss_bytes"] - j["weight_resident_bytes"]
    plan = j["plan_overhead_bytes"]
    print(f"  {t}: {got / MiB:.1f} MiB measured, {plan / MiB:.1f} MiB planned")
    assert plan - 8 * MiB <= got <= plan, (t, got, plan)
# the caches' difference shows in the measurement as planned (pages of 4 KB, rings included)
d_plan = r["f32"]["plan_overhead_bytes"] - r["q8_0"]["plan_overhead_bytes"]
d_got = r["f32"]["peak_rss_bytes"] - r["q8_0"]["peak_rss_bytes"]
print(f"  f32 - q8_0: {d_got / MiB:.2f} MiB measured, {d_plan / MiB:.2f} MiB planned")
assert abs(d_got - d_plan) <= 0.25 * d_plan + 0.5 * MiB, (d_got, d_plan)
PY
;;
esac
"$G4" info -m "$M" -c 4096 --kv-type q8_0 >"$TMP/info" 2>&1
check "info names the cache type" grep -q "(q8_0 KV cache)" "$TMP/info"
check "info gives the edge verdict" grep -q "edge footprint: .*within the 64 MiB budget" "$TMP/info"
"$G4" info -m "$M" -c 4096 --exact >"$TMP/info" 2>&1
check "the exact path plans f32" grep -q "(f32 KV cache)" "$TMP/info"
"$G4" info -m "$M" -c 4096 >"$TMP/info" 2>&1
check "the fast path plans f16" grep -q "(f16 KV cache)" "$TMP/info"
for cmd in "info -m $M" "bench -m $M -p 1 -n 0" "run -m $M -p hi" ; do
    # shellcheck disable=SC2086 # the command splits on purpose
    "$G4" $cmd --kv-type q4_1 >"$TMP/out" 2>&1
    rc=$?
    check "${cmd%% *} refuses --kv-type q4_1" test $rc = 2
    check "${cmd%% *} says which types exist" grep -q "f32, f16, q8_0 or q4_0" "$TMP/out"
done
"$G4" logits -m "$M" --tokens "2 30 31 32" --out "$TMP/a.f32" --kv-type q8_0 2>"$TMP/err"
check "logits runs with a q8_0 cache" test -s "$TMP/a.f32"
"$G4" logits -m "$M" --tokens "2 30 31 32" --out "$TMP/b.f32" --kv-type q4_0 2>"$TMP/err"
check "logits runs with a q4_0 cache" test -s "$TMP/b.f32"
