#!/usr/bin/env bash
# gemma4c batch on the tiny synthetic model: six requests three at a time
# give six chat.completion lines in input order, the greedy ones equal to
# --parallel 1 and to `run --greedy`; bad lines are errors naming file and line.
. "$(dirname "$0")/lib.sh"

M=$TMP/tiny.gguf
"$G4" synth --arch tiny --type Q8_0 -o "$M" 2>/dev/null
"$G4" batch --help | grep -q usage; check "batch --help prints usage" test $? = 0

cat >"$TMP/req.jsonl" <<'J'
{"messages":[{"role":"user","content":"Hello there"}],"max_tokens":8,"temperature":0}
{"messages":[{"role":"user","content":"Write a haiku about the sea."}],"max_tokens":30,"temperature":0}
{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],"max_tokens":3,"temperature":0}

{"messages":[{"role":"user","content":"Tell me a long story about a dragon"}],"max_tokens":40,"seed":5,"top_k":20}
{"messages":[{"role":"user","content":"What is two plus two?"}],"max_completion_tokens":12,"temperature":0,"stop":["zz"]}
{"messages":[{"role":"user","content":"Why?"}],"max_tokens":20,"temperature":0.7,"seed":11,"chat_template_kwargs":{"enable_thinking":true}}
J
"$G4" batch -m "$M" --prompts "$TMP/req.jsonl" --parallel 3 -t 2 -o "$TMP/p3.jsonl" 2>"$TMP/err3"
check "batch --parallel 3 exits 0" test $? = 0
"$G4" batch -m "$M" --prompts "$TMP/req.jsonl" --parallel 1 -t 2 -q >"$TMP/p1.jsonl"
check "batch --parallel 1 exits 0" test $? = 0
check "progress goes to stderr" grep -q "6 requests in" "$TMP/err3"
check "six valid chat.completion lines in input order" /usr/bin/python3 -c "
import json, sys
L = [json.loads(l) for l in open(sys.argv[1])]
assert len(L) == 6, len(L)
want = [8, 30, 3, 40, 12, 20]
for i, o in enumerate(L):
    assert o['object'] == 'chat.completion' and o['id'].startswith('chatcmpl-'), o
    c = o['choices'][0]
    assert c['message']['role'] == 'assistant' and c['finish_reason'] in ('stop', 'length', 'tool_calls'), c
    u = o['usage']
    assert 0 < u['completion_tokens'] <= want[i] and u['prompt_tokens'] > 0, (i, u)
    assert u['total_tokens'] == u['prompt_tokens'] + u['completion_tokens']
    assert u['prompt_tokens_details']['cached_tokens'] == 0
# input order: prompt sizes follow the lines (the system prompt one is distinct)
assert L[2]['usage']['prompt_tokens'] != L[1]['usage']['prompt_tokens']
" "$TMP/p3.jsonl"
# the fast path's batched products may round differently from one row alone:
# greedy answers agree there; with --exact every answer does (seeded too)
check "--parallel 3 greedy answers = --parallel 1" /usr/bin/python3 -c "
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
for i in (0, 1, 2, 4):
    assert a[i]['choices'] == b[i]['choices'], (i, a[i], b[i])
" "$TMP/p3.jsonl" "$TMP/p1.jsonl"
"$G4" batch -m "$M" --prompts "$TMP/req.jsonl" --parallel 3 --exact -t 2 -q >"$TMP/e3.jsonl" &&
    "$G4" batch -m "$M" --prompts "$TMP/req.jsonl" --parallel 1 --exact -t 2 -q >"$TMP/e1.jsonl"
check "--exact: --parallel 3 answers = --parallel 1 answers, sampled ones too" /usr/bin/python3 -c "
import json, sys
a = [json.loads(l)['choices'] for l in open(sys.argv[1])]
b = [json.loads(l)['choices'] for l in open(sys.argv[2])]
assert len(a) == 6 and a == b, [(x, y) for x, y in zip(a, b) if x != y]
" "$TMP/e3.jsonl" "$TMP/e1.jsonl"
# the first request alone through `run --greedy`
"$G4" run -m "$M" -p "Hello there" --greedy -n 8 -t 2 --json >"$TMP/run.txt" 2>/dev/null
check "a greedy request = run --greedy" /usr/bin/python3 -c "
import json, sys
run = json.loads(open(sys.argv[1], 'rb').read().splitlines()[-1])
b = json.loads(open(sys.argv[2]).readline())['choices'][0]['message']
assert run == b, (run, b)
" "$TMP/run.txt" "$TMP/p3.jsonl"
# the prefix cache: the same system prompt twice reuses it
printf '%s\n' '{"messages":[{"role":"system","content":"You are a helpful assistant who answers briefly."},{"role":"user","content":"a"}],"max_tokens":4,"temperature":0}' \
    '{"messages":[{"role":"system","content":"You are a helpful assistant who answers briefly."},{"role":"user","content":"b"}],"max_tokens":4,"temperature":0}' >"$TMP/pfx.jsonl"
out=$("$G4" batch -m "$M" --prompts "$TMP/pfx.jsonl" --parallel 1 --prefix 4 -t 2 -q)
check "--prefix: the second request reuses the first's system prompt" /usr/bin/python3 -c "
import json, sys
L = [json.loads(l) for l in sys.argv[1].splitlines()]
assert L[0]['usage']['prompt_tokens_details']['cached_tokens'] == 0
assert L[1]['usage']['prompt_tokens_details']['cached_tokens'] > 10, L[1]['usage']
" "$out"

bad() { # desc content pattern
    printf '%s\n' "$2" >"$TMP/bad.jsonl"
    local out; out=$("$G4" batch -m "$M" --prompts "$TMP/bad.jsonl" -q 2>&1 >/dev/null); local rc=$?
    if [ $rc = 1 ] && printf '%s' "$out" | grep -q -- "$3"; then ok "$1"; else fail "$1 (rc $rc: $out)"; fi
}
GOOD='{"messages":[{"role":"user","content":"a"}],"max_tokens":2}'
bad "a line that is not JSON names file and line" "$GOOD
{\"messages\": [" "bad.jsonl:2:"
bad "a line that is not an object" "[1]" "bad.jsonl:1: the request must be a JSON object"
bad "a bad field names the line and the field" "$GOOD
$GOOD
{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"top_k\":\"many\"}" 'bad.jsonl:3: .*"top_k"'
bad "missing messages" '{"max_tokens":2}' "bad.jsonl:1: .*messages"
bad "a prompt longer than the context" '{"messages":[{"role":"user","content":"one two three four five six seven eight nine ten eleven twelve thirteen fourteen"}]} --' "bad.jsonl:1:"
printf '%s\n' '{"messages":[{"role":"user","content":"one two three four five six seven eight nine ten eleven twelve thirteen fourteen"}]}' >"$TMP/long.jsonl"
out=$("$G4" batch -m "$M" --prompts "$TMP/long.jsonl" --ctx 16 -q 2>&1 >/dev/null); rc=$?
check "a prompt longer than the context is an error with both numbers" test $rc = 1 -a -n "$(printf '%s' "$out" | grep 'long.jsonl:1: the prompt has [0-9]* tokens; the context holds 16')"
: >"$TMP/empty.jsonl"
"$G4" batch -m "$M" --prompts "$TMP/empty.jsonl" 2>/dev/null; check "an empty file is an error" test $? = 1
"$G4" batch -m "$M" 2>/dev/null; check "batch without --prompts -> exit 2" test $? = 2
"$G4" batch -m "$M" --prompts "$TMP/req.jsonl" --parallel 0 2>/dev/null; check "--parallel 0 -> exit 2" test $? = 2

# bench --parallel: aggregate and per-stream speed per N with a roofline, and
# the time to first token with a cached prefix
out=$("$G4" bench -m "$M" --parallel 1,2,4 -n 4 -r 1 -t 1 --bw 10 --ttft-prefix 64 --json 2>/dev/null)
check "bench --parallel --json reports each N and the cached/cold first token" /usr/bin/python3 -c "
import json, sys
r = json.loads(sys.argv[1])
P = r['parallel']
assert [p['n'] for p in P] == [1, 2, 4] and r['sampled'] is False, P
for p in P:
    assert p['aggregate_tps'] > 0 and abs(p['per_stream_tps'] * p['n'] - p['aggregate_tps']) < 1e-2 * p['aggregate_tps'], p
    assert p['roofline_tps'] > 0 and p['limit'] in ('bandwidth', 'int8 peak', 'f32 peak'), p
assert P[2]['roofline_tps'] > P[0]['roofline_tps']
t = r['ttft']
assert t['prompt_tokens'] == 80 and 0 < t['cached_tokens'] <= 64 and t['cold_ms'] > 0 and t['cached_ms'] > 0, t
" "$out"
out=$("$G4" bench -m "$M" --parallel 1,3 -n 3 -r 1 -t 1 --bw 10 --ttft-prefix 0 --sample --json 2>/dev/null)
check "bench --parallel --sample: each stream's tokens drawn by the sampler, said so in the JSON" /usr/bin/python3 -c "
import json, sys
r = json.loads(sys.argv[1])
assert r['sampled'] is True and [p['n'] for p in r['parallel']] == [1, 3] and all(p['aggregate_tps'] > 0 for p in r['parallel']), r
" "$out"
"$G4" bench -m "$M" --parallel 0 2>/dev/null; check "bench --parallel 0 -> exit 2" test $? = 2

# info --seq: the plan for S sequences (a sliding ring each)
one=$("$G4" info -m "$M" --ctx 1024 | sed -n 's/.*kv sliding (fixed): *\([0-9]*\) bytes.*/\1/p')
eight=$("$G4" info -m "$M" --ctx 1024 --seq 8 | sed -n 's/.*kv sliding (fixed): *\([0-9]*\) bytes.*/\1/p')
check "info --seq 8 plans eight sliding rings" test -n "$one" -a "$eight" = "$((one * 8))"
"$G4" info -m "$M" --seq 2 | grep -q "shared by 2 sequences"; check "info --seq names the sequences" test $? = 0
"$G4" info -m "$M" --seq 0 2>/dev/null; check "info --seq 0 -> exit 2" test $? = 2
