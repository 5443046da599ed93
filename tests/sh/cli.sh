#!/usr/bin/env bash
# The gemma4c CLI: help, usage errors (exit 2), bad model files (exit 1 with a
# message naming the problem), and the main commands on the golden models.
. "$(dirname "$0")/lib.sh"

E=$REF/gemma4-e.gguf
"$G4" --help >/dev/null; check "--help exits 0" test $? = 0
for c in info logits generate synth; do
    "$G4" $c --help | grep -q usage; check "$c --help prints usage" test $? = 0
done
"$G4" nosuchcommand 2>/dev/null; check "unknown command -> exit 2" test $? = 2
"$G4" info 2>/dev/null; check "info without -m -> exit 1" test $? = 1
"$G4" info -m "$E" --threads abc 2>/dev/null; check "bad integer -> exit 2" test $? = 2
"$G4" logits -m "$E" 2>/dev/null; check "logits without tokens -> exit 2" test $? = 2

# damaged files: each must fail with exit 1 and say what is wrong
expect_fail() { # desc file pattern
    local out; out=$("$G4" info -m "$2" 2>&1 >/dev/null); local rc=$?
    if [ $rc = 1 ] && printf '%s' "$out" | grep -q "$3"; then ok "$1"; else fail "$1 (rc $rc: $out)"; fi
}
expect_fail "missing file" "$TMP/none.gguf" "cannot open"
head -c 100 "$E" > "$TMP/t1.gguf";      expect_fail "truncated in metadata" "$TMP/t1.gguf" "truncated\|larger than the file"
head -c 20000 "$E" > "$TMP/t2.gguf";    expect_fail "truncated in tensor infos" "$TMP/t2.gguf" "truncated\|outside"
head -c 2000000 "$E" > "$TMP/t3.gguf";  expect_fail "truncated in data" "$TMP/t3.gguf" "outside the file"
printf 'GGML' > "$TMP/t4.gguf"; tail -c +5 "$E" >> "$TMP/t4.gguf"; expect_fail "bad magic" "$TMP/t4.gguf" "not a GGUF"
: > "$TMP/t5.gguf";                      expect_fail "empty file" "$TMP/t5.gguf" "too small"
expect_fail "a directory without a checkpoint" "$TMP" "config.json\|safetensors"

# main commands on a golden model
out=$("$G4" generate -m "$E" --tokens-file "$REF/gemma4-e.tokens.txt" --greedy --exact -n 16)
check "generate --greedy --exact = exact greedy ids" test "$out" = "$(cat "$REF/gemma4-e.exact.greedy.txt")"
"$G4" logits -m "$E" --tokens-file "$REF/gemma4-e.tokens.txt" --out "$TMP/l.f32" --exact
check "logits writes n_tokens x n_vocab floats" test "$(stat -c %s "$TMP/l.f32")" = $((40 * 512 * 4))
"$G4" generate -m "$E" --tokens "2 999999" -n 1 2>"$TMP/err"; rc=$?
check "out-of-vocabulary id -> exit 1" test $rc = 1
check "... with a message" grep -q "outside the vocabulary" "$TMP/err"
a=$("$G4" generate -m "$E" --tokens "2 10 20" -n 8 --seed 5); b=$("$G4" generate -m "$E" --tokens "2 10 20" -n 8 --seed 5)
check "sampling is reproducible with a seed" test "$a" = "$b"

# synth + text generation on the tiny demo model
"$G4" synth --arch tiny -o "$TMP/tiny.gguf" 2>/dev/null
check "synth writes the tiny model" test -s "$TMP/tiny.gguf"
"$G4" synth --arch tiny -o "$TMP/tiny.gguf" 2>/dev/null; check "synth refuses to overwrite" test $? = 1
out=$("$G4" generate -m "$TMP/tiny.gguf" -p "Hello world" -n 8 --seed 1)
check "generate -p prints text on the tiny model" test -n "$out"
"$G4" synth --arch tiny --type Q4_K_M -o "$TMP/tq.gguf" 2>/dev/null
check "synth Q4_K_M loads" "$G4" info -m "$TMP/tq.gguf" >/dev/null
"$G4" synth --arch tiny --seed 9 -o "$TMP/s1.gguf" 2>/dev/null
"$G4" synth --arch tiny --seed 9 -o "$TMP/s2.gguf" 2>/dev/null
check "synth is deterministic" cmp -s "$TMP/s1.gguf" "$TMP/s2.gguf"

# bench: the JSON has both tests with a positive speed and a roofline
out=$("$G4" bench -m "$TMP/tiny.gguf" -p 16 -n 4 -d 8 -r 1 -t 1 --bw 10 --json 2>/dev/null)
check "bench --json runs" test $? = 0
check "bench reports pp and tg with rooflines" /usr/bin/python3 -c "
import json, sys
r = json.loads(sys.argv[1])
t = {x['test']: x for x in r['results']}
assert set(t) == {'pp16 @ d8', 'tg4 @ d8'}, t
assert all(x['tps'] > 0 and x['roofline_tps'] > 0 for x in t.values())
assert r['peak_rss_bytes'] > 0 and r['plan_bytes'] > 0
" "$out"
# with probes: each tg repetition gets adjacent bandwidth probes (before and
# after it), and the probes' 1 GiB buffer is not counted in the peak RSS
# (tiny model: a few MB)
out=$("$G4" bench -m "$TMP/tiny.gguf" -p 0 -n 2 -r 1 -t 1 --json 2>/dev/null)
check "bench reports the adjacent probe and a peak RSS without the probe buffer" /usr/bin/python3 -c "
import json, sys
r = json.loads(sys.argv[1])
t = r['results'][0]
assert t['adjacent_bandwidth_gbs'] > 0 and t['adjacent_pct'] > 0, t
assert 0 < r['peak_rss_bytes'] < 256 << 20, r['peak_rss_bytes']
" "$out"
# an even number of repetitions: the median is the mean of the middle two
out=$("$G4" bench -m "$TMP/tiny.gguf" -p 8 -n 4 -r 2 -t 1 --bw 10 --json 2>/dev/null)
check "bench's median of 2 repetitions is their mean" /usr/bin/python3 -c "
import json, sys
for t in json.loads(sys.argv[1])['results']:
    assert abs(t['tps'] - (t['tps_min'] + t['tps_max']) / 2) <= 0.002 + 1e-6 * t['tps'], t
" "$out"
"$G4" bench -m "$TMP/tiny.gguf" -p abc 2>/dev/null; check "bench rejects a bad -p (exit 2)" test $? = 2

# bench_kernels --stream: one line per type, matvec and read GB/s and their ratio (matvec / read)
out=$("$BUILD/bench/bench_kernels" --stream 2 --mb 4 --n 512 --reps 1 --types Q4_0,Q6_K 2>&1)
check "bench_kernels --stream prints matvec and read GB/s per type" /usr/bin/python3 -c "
import sys
rows = [l.split() for l in sys.argv[1].splitlines() if l.split()[:1] in (['Q4_0'], ['Q6_K'])]
assert [r[0] for r in rows] == ['Q4_0', 'Q6_K'], sys.argv[1]
for r in rows:
    m, rd, q = map(float, r[1:4])
    assert m > 0 and rd > 0 and abs(q - m / rd) <= 0.01 + 0.01 * q, r
" "$out"
"$BUILD/bench/bench_kernels" --stream -1 >/dev/null 2>&1; check "bench_kernels rejects a bad --stream (exit 2)" test $? = 2
# --n 704 (the 26B-A4B expert width): the legacy types run, the K-quants are skipped by name
out=$("$BUILD/bench/bench_kernels" --stream 1 --mb 4 --n 704 --reps 1 --types Q5_0,Q4_K 2>&1)
check "bench_kernels --n 704 runs Q5_0 and skips Q4_K by name" /usr/bin/python3 -c "
import sys
t = sys.argv[1]
assert any(l.split()[:1] == ['Q5_0'] and float(l.split()[1]) > 0 for l in t.splitlines()), t
assert 'skipping Q4_K: --n 704 is not a multiple of 256' in t, t
" "$out"
"$BUILD/bench/bench_kernels" --n 100 >/dev/null 2>&1; check "bench_kernels rejects an --n that is not a multiple of 32 (exit 2)" test $? = 2
