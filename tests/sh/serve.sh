#!/usr/bin/env bash
# gemma4c serve on the tiny synthetic model: every endpoint and error status
# over curl, a client that leaves mid-stream (its request is cancelled, the
# server goes on), a full queue, the API key, SIGTERM with a stream in
# flight (it gets its final event, exit 0), and the real openai npm client
# (tests/js/openai_serve.js) and ollama npm client (tests/js/ollama_serve.js). Servers listen on free loopback ports and are
# always killed; every wait is bounded.
. "$(dirname "$0")/lib.sh"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$TMP"; echo "RESULT $_p $_f"; }
trap cleanup EXIT
M=$TMP/tiny.gguf
"$G4" synth --arch tiny --type Q8_0 -o "$M" 2>/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# start NAME ARGS...: a server on a free port; sets PORT, PID
start() {
    local name=$1; shift
    PORT=$(free_port)
    "$G4" serve -m "$M" --port "$PORT" -t 2 "$@" >"$TMP/$name.out" 2>"$TMP/$name.log" &
    PID=$!; PIDS+=("$PID")
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return 0; sleep 0.1; done
    fail "$name: the server did not answer /health in 10 s"; cat "$TMP/$name.log"; return 1
}
# code METHOD PATH [BODY] [curl args]: prints the status; the body goes to $TMP/body
code() {
    local m=$1 p=$2 b=${3:-}; shift 3 2>/dev/null || shift $#
    if [ -n "$b" ]; then curl -s -m 30 -o "$TMP/body" -w '%{http_code}' -X "$m" "$B$p" -H 'Content-Type: application/json' --data-binary "$b" "$@"
    else curl -s -m 30 -o "$TMP/body" -w '%{http_code}' -X "$m" "$B$p" "$@"; fi
}
py() { python3 -c "import json,sys; b=open('$TMP/body','rb').read(); $1"; }
expect() { # DESC STATUS METHOD PATH [BODY] [PYTHON-ASSERTS]
    local d=$1 want=$2 got; got=$(code "$3" "$4" "${5:-}")
    if [ "$got" = "$want" ] && { [ -z "${6:-}" ] || py "$6" 2>"$TMP/pyerr"; }; then ok "$d"
    else fail "$d (status $got, want $want: $(head -c 300 "$TMP/body") $(tail -1 "$TMP/pyerr" 2>/dev/null))"; fi
}
ERR="e=json.loads(b)['error']; assert set(e)=={'message','type','param','code'}, e"

start main --ctx 1024 --parallel 2 || exit 0
B=http://127.0.0.1:$PORT
check "prints the URL and the memory plan" grep -q "http://127.0.0.1:$PORT/v1" "$TMP/main.out"
grep -q "memory plan:" "$TMP/main.out"; check "prints the memory plan" test $? = 0
ID=$(curl -s "$B/v1/models" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
check "GET /v1/models lists tiny" test "$ID" = tiny
expect "GET /health" 200 GET /health "" "assert json.loads(b)=={'status':'ok'}"
expect "GET /v1/models/tiny" 200 GET /v1/models/tiny "" "assert json.loads(b)['id']=='tiny'"
HELLO='{"model":"tiny","messages":[{"role":"user","content":"Hello there"}],"max_tokens":8,"temperature":0}'
expect "POST /v1/chat/completions" 200 POST /v1/chat/completions "$HELLO" \
    "o=json.loads(b); assert o['object']=='chat.completion' and o['model']=='tiny' and o['id'].startswith('chatcmpl-'); assert o['usage']['completion_tokens']==8"
cp "$TMP/body" "$TMP/chat.json"
"$G4" run -m "$M" -p "Hello there" --greedy -n 8 -t 2 --json 2>/dev/null | tail -1 >"$TMP/run.json"
check "a greedy chat answer = run --greedy (same bytes)" python3 -c "
import json, sys
a = json.load(open(sys.argv[1]))['choices'][0]['message']; b = json.load(open(sys.argv[2]))
assert a == b, (a, b)" "$TMP/chat.json" "$TMP/run.json"
curl -sN -m 30 "$B/v1/chat/completions" -d "${HELLO%\}},\"stream\":true,\"stream_options\":{\"include_usage\":true}}" >"$TMP/sse"
check "streaming chat: role, deltas, finish_reason, usage chunk, [DONE]; deltas = the answer" python3 -c "
import json, sys
ev = [l[6:] for l in open(sys.argv[1]).read().split('\n') if l.startswith('data: ')]
assert ev[-1] == '[DONE]', ev[-1]
ch = [json.loads(e) for e in ev[:-1]]
assert all(c['object'] == 'chat.completion.chunk' for c in ch)
assert ch[0]['choices'][0]['delta']['role'] == 'assistant'
assert ch[-1]['choices'] == [] and ch[-1]['usage']['completion_tokens'] == 8
assert ch[-2]['choices'][0]['finish_reason'] == 'length'
text = ''.join(c['choices'][0]['delta'].get('content', '') for c in ch if c['choices'])
want = json.load(open(sys.argv[2]))['choices'][0]['message']['content']
assert text == want, (text, want)" "$TMP/sse" "$TMP/chat.json"
COMP='{"prompt":"Once upon a time","max_tokens":6,"temperature":0}'
expect "POST /v1/completions" 200 POST /v1/completions "$COMP" \
    "o=json.loads(b); assert o['object']=='text_completion' and isinstance(o['choices'][0]['text'], str) and o['usage']['completion_tokens']==6"
cp "$TMP/body" "$TMP/comp.json"
curl -sN -m 30 "$B/v1/completions" -d "${COMP%\}},\"stream\":true}" >"$TMP/sse2"
check "streaming completions: text chunks add up to the answer, then [DONE]" python3 -c "
import json, sys
ev = [l[6:] for l in open(sys.argv[1]).read().split('\n') if l.startswith('data: ')]
assert ev[-1] == '[DONE]'
text = ''.join(json.loads(e)['choices'][0]['text'] for e in ev[:-1])
assert text == json.load(open(sys.argv[2]))['choices'][0]['text'], text" "$TMP/sse2" "$TMP/comp.json"
# logprobs: OpenAI's shapes; greedy picks the most likely token, so its logprob is
# top_logprobs[0]'s; the tokens spell the answer; a stream carries the same entries
LP='{"messages":[{"role":"user","content":"Hello there"}],"max_tokens":8,"temperature":0,"logprobs":true,"top_logprobs":3}'
expect "chat logprobs: {token, logprob, bytes, top_logprobs} per token, greedy = the top one" 200 POST /v1/chat/completions "$LP" "
o=json.loads(b)['choices'][0]; c=o['logprobs']['content']; assert len(c)==8, len(c)
import math
for e in c:
    assert set(e)=={'token','logprob','bytes','top_logprobs'} and len(e['top_logprobs'])==3, e
    assert bytes(e['bytes']).decode('utf-8','replace')==e['token'] and e['logprob']<=0
    t=[x['logprob'] for x in e['top_logprobs']]; assert t==sorted(t, reverse=True) and abs(t[0]-e['logprob'])<1e-9, e
    assert sum(math.exp(x) for x in t) <= 1+1e-6
assert ''.join(e['token'] for e in c)==o['message']['content'], (c, o['message'])"
cp "$TMP/body" "$TMP/lp.json"
curl -sN -m 30 "$B/v1/chat/completions" -d "${LP%\}},\"stream\":true}" >"$TMP/sse3"
check "streaming chat logprobs: the chunks' logprobs.content = the whole answer's" python3 -c "
import json, sys
ev = [json.loads(l[6:]) for l in open(sys.argv[1]).read().split('\n') if l.startswith('data: {')]
got = [e for c in ev for e in ((c['choices'][0].get('logprobs') or {}).get('content') or [])]
assert got == json.load(open(sys.argv[2]))['choices'][0]['logprobs']['content'], got" "$TMP/sse3" "$TMP/lp.json"
expect "logprobs are of the biased logits: a +100 logit_bias makes a token certain" 200 POST /v1/chat/completions \
    '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"temperature":0,"logprobs":true,"logit_bias":{"77":100}}' "
c=json.loads(b)['choices'][0]['logprobs']['content']; assert all(e['logprob']>-1e-3 and e['top_logprobs']==[] for e in c), c"
expect "without logprobs: logprobs null" 200 POST /v1/chat/completions "$HELLO" "assert json.loads(b)['choices'][0]['logprobs'] is None"
expect "legacy completions logprobs: tokens, token_logprobs, top_logprobs, text_offset" 200 POST /v1/completions \
    '{"prompt":"Once upon a time","max_tokens":6,"temperature":0,"logprobs":2}' "
o=json.loads(b)['choices'][0]; l=o['logprobs']; assert set(l)=={'tokens','token_logprobs','top_logprobs','text_offset'}
assert ''.join(l['tokens'])==o['text'] and len(l['token_logprobs'])==6 and all(len(t)<=2 and max(t.values())==p for t,p in zip(l['top_logprobs'],l['token_logprobs']))
assert l['text_offset']==[sum(len(t) for t in l['tokens'][:i]) for i in range(6)], l"
cp "$TMP/body" "$TMP/lpc.json"
curl -sN -m 30 "$B/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":6,"temperature":0,"logprobs":2,"stream":true}' >"$TMP/sse4"
check "streaming legacy logprobs add up to the whole answer's" python3 -c "
import json, sys
ev = [json.loads(l[6:]) for l in open(sys.argv[1]).read().split('\n') if l.startswith('data: {')]
want = json.load(open(sys.argv[2]))['choices'][0]['logprobs']
for k in want:
    got = [x for c in ev if c['choices'][0]['logprobs'] for x in c['choices'][0]['logprobs'][k]]
    assert got == want[k], (k, got, want[k])" "$TMP/sse4" "$TMP/lpc.json"
expect "top_logprobs 21 -> 400 naming it" 400 POST /v1/chat/completions \
    '{"messages":[{"role":"user","content":"a"}],"logprobs":true,"top_logprobs":21}' "$ERR; assert e['param']=='top_logprobs', e"
expect "top_logprobs without logprobs -> 400" 400 POST /v1/chat/completions \
    '{"messages":[{"role":"user","content":"a"}],"top_logprobs":2}' "$ERR; assert e['param']=='top_logprobs', e"
expect "legacy logprobs not an integer -> 400" 400 POST /v1/completions '{"prompt":"a","logprobs":true}' "$ERR; assert e['param']=='logprobs', e"
# n choices: choice i is the answer of seed + i; usage counts the prompt once; a stream
# carries each choice's index; past --parallel (2 here) a 400 with both numbers
NREQ='{"messages":[{"role":"user","content":"Hello there"}],"max_tokens":6,"temperature":1,"seed":41,"n":2}'
expect "n=2: two choices, index 0 and 1, usage counts the prompt once" 200 POST /v1/chat/completions "$NREQ" "
o=json.loads(b); c=o['choices']; assert [x['index'] for x in c]==[0,1], c
assert o['usage']['completion_tokens']==12 and o['usage']['total_tokens']==o['usage']['prompt_tokens']+12, o['usage']"
cp "$TMP/body" "$TMP/n2.json"
for i in 0 1; do
    code POST /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello there\"}],\"max_tokens\":6,\"temperature\":1,\"seed\":$((41 + i))}" >/dev/null
    check "n=2: choice $i = the answer with seed 41+$i" python3 -c "
import json, sys
a = json.load(open(sys.argv[1]))['choices'][$i]['message']; b = json.load(open(sys.argv[2]))['choices'][0]['message']
assert a == b, (a, b)" "$TMP/n2.json" "$TMP/body"
done
curl -sN -m 30 "$B/v1/chat/completions" -d "${NREQ%\}},\"stream\":true,\"stream_options\":{\"include_usage\":true}}" >"$TMP/sse6"
check "n=2 streamed: each index's deltas = its choice, both finish, one usage chunk" python3 -c "
import json, sys
ev = [json.loads(l[6:]) for l in open(sys.argv[1]).read().split('\n') if l.startswith('data: {')]
want = json.load(open(sys.argv[2]))
for i in (0, 1):
    t = ''.join(c['choices'][0]['delta'].get('content', '') for c in ev if c['choices'] and c['choices'][0]['index'] == i)
    assert t == want['choices'][i]['message']['content'], (i, t)
    assert [c['choices'][0]['finish_reason'] for c in ev if c['choices'] and c['choices'][0]['index'] == i][-1] == 'length'
assert ev[-1]['choices'] == [] and ev[-1]['usage']['completion_tokens'] == 12, ev[-1]" "$TMP/sse6" "$TMP/n2.json"
expect "n=2 on /v1/completions: two text choices" 200 POST /v1/completions \
    '{"prompt":"Once upon a time","max_tokens":4,"temperature":1,"seed":3,"n":2}' \
    "o=json.loads(b); assert [c['index'] for c in o['choices']]==[0,1] and o['usage']['completion_tokens']==8, o"
expect "n=3 with --parallel 2 -> 400 naming both numbers" 400 POST /v1/chat/completions \
    '{"messages":[{"role":"user","content":"a"}],"n":3}' "$ERR; assert e['param']=='n' and '3' in e['message'] and 'at most 2' in e['message'], e"
expect "n=0 -> 400" 400 POST /v1/chat/completions '{"messages":[{"role":"user","content":"a"}],"n":0}' "$ERR; assert e['param']=='n', e"
expect "POST /tokenize" 200 POST /tokenize '{"content":"Hello world","with_pieces":true}' \
    "t=json.loads(b)['tokens']; assert len(t)>=2 and all('id' in x and 'piece' in x for x in t)"
IDS=$(python3 -c "import json; print(json.dumps([x['id'] for x in json.load(open('$TMP/body'))['tokens']]))")
expect "POST /detokenize gives the text back" 200 POST /detokenize "{\"tokens\":$IDS}" "assert json.loads(b)['content']=='Hello world'"
expect "POST /apply-template: the rendered prompt" 200 POST /apply-template \
    '{"messages":[{"role":"user","content":"Hi you"}],"chat_template_kwargs":{"enable_thinking":true}}' \
    "p=json.loads(b)['prompt']; assert 'Hi you' in p and '<|think|>' in p and p.endswith('model\n'), p"
expect "GET /metrics (Prometheus text)" 200 GET /metrics "" \
    "t=b.decode(); assert 'gemma4c_requests_total{outcome=\"completed\"}' in t and 'gemma4c_queue_depth 0' in t and 'gemma4c_completion_tokens_total' in t and 'gemma4c_prefix_hits_total' in t"

# errors: OpenAI's error object with the right status, naming the field
expect "unknown path -> 404" 404 GET /v1/nothing "" "$ERR"
expect "wrong method -> 405" 405 GET /v1/chat/completions "" "$ERR"
expect "unknown model -> 404" 404 POST /v1/chat/completions '{"model":"gpt-9","messages":[]}' "$ERR; assert e['code']=='model_not_found'"
expect "malformed JSON -> 400" 400 POST /v1/chat/completions '{"messages":' "$ERR; assert e['param']=='body'"
expect "a wrong type -> 400 naming the field" 400 POST /v1/chat/completions \
    '{"messages":[{"role":"user","content":"a"}],"top_k":"many"}' "$ERR; assert e['param']=='top_k', e"
expect "stream not a boolean -> 400" 400 POST /v1/chat/completions '{"messages":[],"stream":"yes"}' "$ERR; assert e['param']=='stream'"
expect "messages missing -> 400" 400 POST /v1/chat/completions '{"max_tokens":2}' "$ERR; assert e['param']=='messages'"
expect "prompt not a string -> 400" 400 POST /v1/completions '{"prompt":5}' "$ERR; assert e['param']=='prompt'"
LONG=$(python3 -c "print(' '.join(['word'] * 1200))")
expect "a prompt longer than the context -> 400 with both numbers" 400 POST /v1/chat/completions \
    "{\"messages\":[{\"role\":\"user\",\"content\":\"$LONG\"}]}" \
    "$ERR; import re; assert e['code']=='context_length_exceeded' and re.search(r'has \d+ tokens; the context holds 1024', e['message']), e"
python3 -c "print('{\"messages\":[{\"role\":\"user\",\"content\":\"' + 'a' * (9 << 20) + '\"}]}')" >"$TMP/big.json"
got=$(curl -s -m 30 -o "$TMP/body" -w '%{http_code}' "$B/v1/chat/completions" --data-binary @"$TMP/big.json")
check "a 9 MiB body -> 413 (limit 8 MiB)" test "$got" = 413
got=$(curl -s -m 30 -o "$TMP/body" -w '%{http_code}' "$B/tokenize" -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/big.json")
check "a 9 MiB chunked body -> 413" test "$got" = 413

# a client that leaves mid-stream: its request is cancelled, the server goes on
metric() { curl -s "$B/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
c0=$(metric 'gemma4c_requests_total{outcome="cancelled"}')
# the end-of-generation tokens banned and 3000 tokens asked: the answer must
# still be running when the client leaves (200 tokens, as before, take the
# tiny model ~0.1 s, and it could end by itself)
curl -sN -m 30 "$B/v1/chat/completions" -d '{"messages":[{"role":"user","content":"Tell me a long story"}],"max_tokens":3000,"temperature":1,"stream":true,"logit_bias":{"106":-100,"1":-100,"50":-100}}' 2>/dev/null | head -c 600 >/dev/null
ok=0
for _ in $(seq 50); do
    [ "$(metric 'gemma4c_requests_total{outcome="cancelled"}')" -gt "$c0" ] && [ "$(metric gemma4c_requests_active)" = 0 ] && { ok=1; break; }
    sleep 0.1
done
check "a client that disconnects mid-stream cancels its request" test $ok = 1
expect "... and the server still serves" 200 POST /v1/chat/completions "$HELLO" "assert json.loads(b)['usage']['completion_tokens']==8"
expect "GET /metrics times the decode steps (forward <= whole step)" 200 GET /metrics "" \
    "m=dict(l.split() for l in b.decode().splitlines() if l.startswith('gemma4c_decode_')); n=int(m['gemma4c_decode_steps_total']); f=float(m['gemma4c_decode_forward_seconds_total']); s=float(m['gemma4c_decode_step_seconds_total']); assert n >= 7 and 0 < f <= s, m"

# media parts on a text-only server: a 400 saying there is no encoder, nothing fetched
PNG1=data:image/png\;base64,$(base64 -w0 "$G4_SHARED/testdata/gemma4-mm-ref/media/img-tiny-2x3.png" 2>/dev/null)
expect "an image part without an mmproj -> 400: no vision encoder" 400 POST /v1/chat/completions \
    "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"$PNG1\"}}]}]}" \
    "$ERR; assert 'no vision encoder' in e['message'] and '--mmproj' in e['message'], e"
expect "an http: image URL -> 400 (only data: URIs)" 400 POST /v1/chat/completions \
    '{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://example.com/a.png"}}]}]}' \
    "$ERR; assert 'only data: URIs' in e['message'] and e['param']=='messages[0].content[0].image_url', e"
expect "Ollama images without an mmproj -> 400" 400 POST /api/chat \
    '{"model":"tiny","messages":[{"role":"user","content":"x","images":["aGVsbG8="]}],"stream":false}' \
    "assert 'no vision encoder' in json.loads(b)['error'], b"
expect "GET /v1/models: text only" 200 GET /v1/models "" "assert json.loads(b)['data'][0]['modalities']==['text']"

# the openai npm client
if [ -d tests/js/node_modules/openai ]; then
    node tests/js/openai_serve.js "$B/v1" tiny "$(cat "$TMP/run.json")" >"$TMP/node.out" 2>&1
    grep -v '^RESULT' "$TMP/node.out"
    set -- $(grep '^RESULT' "$TMP/node.out" | tail -1) RESULT 0 1
    _p=$((_p + $2)); _f=$((_f + $3))
else
    fail "openai client: tests/js/node_modules/openai is missing (run scripts/setup.sh)"
fi
# media through the server: the tiny mm reference pair; a greedy answer = run --greedy --image/--audio
MMD=$G4_SHARED/testdata/gemma4-mm-ref
if [ -f "$MMD/gemma4-mm.mmproj.gguf" ]; then
    BMAIN=$B PMAIN=$PORT PIDMAIN=$PID
    start mm -m "$MMD/gemma4-mm.gguf" --mmproj "$MMD/gemma4-mm.mmproj.gguf" --ctx 2048 --parallel 1 && {
    B=http://127.0.0.1:$PORT
    expect "mm: /v1/models lists text, image, audio" 200 GET /v1/models "" "assert json.loads(b)['data'][0]['modalities']==['text','image','audio']"
    expect "mm: /api/show capabilities" 200 POST /api/show '{"model":"gemma4-mm"}' \
        "assert json.loads(b)['capabilities']==['completion','vision','audio','tools','thinking']"
    IMG=$MMD/media/img-pngtest-91x69.png AUD=$MMD/media/aud-pluck-real-0.3s.wav
    python3 - "$IMG" "$AUD" "$TMP" <<'PY'
import base64, json, sys
img, aud, tmp = sys.argv[1:4]
b = lambda p: base64.b64encode(open(p, 'rb').read()).decode()
def w(name, content, **kw):
    json.dump(dict(messages=[{"role": "user", "content": content}], max_tokens=8, temperature=0, **kw), open(f"{tmp}/{name}", "w"))
w("img.json", [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + b(img)}}, {"type": "text", "text": "Describe this."}])
w("imgs.json", [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + b(img)}}, {"type": "text", "text": "Describe this."}], stream=True)
w("aud.json", [{"type": "input_audio", "input_audio": {"data": b(aud), "format": "wav"}}, {"type": "text", "text": "What is this?"}])
json.dump(dict(model="gemma4-mm", messages=[{"role": "user", "content": "Describe this.", "images": [b(img)]}], stream=False,
               options=dict(temperature=0, num_predict=8)), open(f"{tmp}/oimg.json", "w"))
json.dump(dict(model="gemma4-mm", prompt="Describe this.", images=[b(img)], stream=False,
               options=dict(temperature=0, num_predict=8)), open(f"{tmp}/ogen.json", "w"))
w("bad64.json", [{"type": "image_url", "image_url": {"url": "data:image/png;base64,!!!!"}}])
w("corrupt.json", [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(open(img, 'rb').read()[:60]).decode()}}])
import struct, zlib
ch = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
huge = b'\x89PNG\r\n\x1a\n' + ch(b'IHDR', struct.pack('>IIBBBBB', 100000, 100000, 8, 2, 0, 0, 0)) + ch(b'IDAT', zlib.compress(b'\0' * 10)) + ch(b'IEND', b'')
w("huge.json", [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(huge).decode()}}])
PY
    "$G4" run -m "$MMD/gemma4-mm.gguf" --mmproj "$MMD/gemma4-mm.mmproj.gguf" --image "$IMG" -p "Describe this." --greedy -n 8 -t 2 --json 2>/dev/null | tail -1 >"$TMP/runi.json"
    "$G4" run -m "$MMD/gemma4-mm.gguf" --mmproj "$MMD/gemma4-mm.mmproj.gguf" --audio "$AUD" -p "What is this?" --greedy -n 8 -t 2 --json 2>/dev/null | tail -1 >"$TMP/runa.json"
    code POST /v1/chat/completions "$(cat "$TMP/img.json")" >/dev/null
    check "mm: a greedy image_url (PNG data URI) answer = run --greedy --image (same bytes)" python3 -c "
import json, sys
a = json.load(open(sys.argv[1]))['choices'][0]['message']; b = json.load(open(sys.argv[2]))
assert a == b and json.load(open(sys.argv[1]))['usage']['prompt_tokens'] > 256, (a, b)" "$TMP/body" "$TMP/runi.json"
    code POST /v1/chat/completions "$(cat "$TMP/aud.json")" >/dev/null
    check "mm: a greedy input_audio (WAV) answer = run --greedy --audio (same bytes)" python3 -c "
import json, sys
a = json.load(open(sys.argv[1]))['choices'][0]['message']; b = json.load(open(sys.argv[2]))
assert a == b, (a, b)" "$TMP/body" "$TMP/runa.json"
    curl -sN -m 60 "$B/v1/chat/completions" --data-binary @"$TMP/imgs.json" >"$TMP/sse5"
    check "mm: streamed image answer: deltas = run --greedy --image" python3 -c "
import json, sys
ev = [json.loads(l[6:]) for l in open(sys.argv[1]).read().split('\n') if l.startswith('data: {')]
t = ''.join(c['choices'][0]['delta'].get('content', '') for c in ev if c['choices'])
assert t == json.load(open(sys.argv[2]))['content'], t" "$TMP/sse5" "$TMP/runi.json"
    code POST /api/chat "$(cat "$TMP/oimg.json")" >/dev/null
    check "mm: Ollama /api/chat images = run --greedy --image" python3 -c "
import json, sys
assert json.load(open(sys.argv[1]))['message']['content'] == json.load(open(sys.argv[2]))['content']" "$TMP/body" "$TMP/runi.json"
    code POST /api/generate "$(cat "$TMP/ogen.json")" >/dev/null
    check "mm: Ollama /api/generate images = run --greedy --image" python3 -c "
import json, sys
assert json.load(open(sys.argv[1]))['response'] == json.load(open(sys.argv[2]))['content']" "$TMP/body" "$TMP/runi.json"
    expect "mm: bad base64 -> 400" 400 POST /v1/chat/completions "$(cat "$TMP/bad64.json")" "$ERR; assert 'not valid base64' in e['message'], e"
    expect "mm: a corrupt (cut) PNG -> 400" 400 POST /v1/chat/completions "$(cat "$TMP/corrupt.json")" "$ERR; assert 'media item 1 (image)' in e['message'], e"
    expect "mm: a 100000x100000 PNG header -> 400 before decoding" 400 POST /v1/chat/completions "$(cat "$TMP/huge.json")" \
        "$ERR; assert 'refused before decoding' in e['message'] or 'limit' in e['message'], e"
    expect "mm: ... and the server still serves" 200 POST /v1/chat/completions "$(cat "$TMP/img.json")" \
        "assert json.loads(b)['usage']['completion_tokens']==8"
    kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null
    }
    B=$BMAIN PORT=$PMAIN PID=$PIDMAIN
else
    fail "mm: $MMD is missing (set G4_SHARED)"
fi
# the ollama npm client on the same server (Ollama's base URL: no /v1)
if [ -d tests/js/node_modules/ollama ]; then
    node tests/js/ollama_serve.js "$B" tiny >"$TMP/ollama.out" 2>&1
    grep -v '^RESULT' "$TMP/ollama.out"
    set -- $(grep '^RESULT' "$TMP/ollama.out" | tail -1) RESULT 0 1
    _p=$((_p + $2)); _f=$((_f + $3))
else
    fail "ollama client: tests/js/node_modules/ollama is missing (run scripts/setup.sh)"
fi
grep -q '^POST /v1/chat/completions 200 18+8 tokens [0-9]* ms$' "$TMP/main.log"
check "one log line per request: method, path, status, tokens, ms" test $? = 0
grep -q "Hello there" "$TMP/main.log"; check "no prompt text in the log without --verbose" test $? = 1
kill -TERM "$PID"; wait "$PID"; check "SIGTERM on an idle server: exit 0" test $? = 0

# API key, full queue, SIGTERM with a stream in flight
start keyed --api-key s3cret --parallel 1 --queue 1 --ctx 32768 || exit 0
B=http://127.0.0.1:$PORT
expect "--api-key: /health needs no key" 200 GET /health
expect "--api-key: no key -> 401" 401 GET /v1/models "" "$ERR"
got=$(code GET /v1/models "" -H 'Authorization: Bearer s3creT'); check "--api-key: a wrong key -> 401" test "$got" = 401
got=$(code GET /v1/models "" -H 'Authorization: Bearer s3cret'); check "--api-key: the key -> 200" test "$got" = 200
# one decoding, one waiting: a burst of six leaves some with 503
Q='{"messages":[{"role":"user","content":"Tell me a long story"}],"max_tokens":300,"temperature":1}'
CP=()
for k in 1 2 3 4 5 6; do
    curl -s -m 60 -D "$TMP/h$k" -o /dev/null -w '%{http_code}\n' "$B/v1/chat/completions" -H 'Authorization: Bearer s3cret' -d "$Q" >"$TMP/q$k" &
    CP+=($!)
done
wait "${CP[@]}"
check "a full queue -> 503 with Retry-After (--parallel 1 --queue 1, six at once)" python3 -c "
import sys
codes = [open(sys.argv[1] + '/q%d' % k).read().strip() for k in range(1, 7)]
hdrs = [open(sys.argv[1] + '/h%d' % k).read().lower() for k in range(1, 7)]
assert codes.count('503') >= 3 and codes.count('200') >= 2, codes
assert all('retry-after: 1' in h for c, h in zip(codes, hdrs) if c == '503'), hdrs" "$TMP"
# the end-of-generation tokens (<turn|> 106, <eos> 1, <|tool_response> 50) are banned so
# the answer cannot end by itself before the signal (30000 tokens: ~20 s, a
# loaded machine must not reach the end before the signal either)
SLOW='{"messages":[{"role":"user","content":"Tell me a long story"}],"max_tokens":30000,"temperature":1,"stream":true,"logit_bias":{"106":-100,"1":-100,"50":-100}}'
# the first stream must be running (its role chunk sent) before the second
# is sent (both at once could find the one queue place taken: 503) and
# before the signal; a fixed sleep lost these races on a loaded machine
curl -sN -m 60 "$B/v1/chat/completions" -H 'Authorization: Bearer s3cret' -d "$SLOW" >"$TMP/s1" 2>/dev/null & C1=$!
for _ in $(seq 200); do [ -s "$TMP/s1" ] && break; sleep 0.1; done
curl -sN -m 60 "$B/v1/chat/completions" -H 'Authorization: Bearer s3cret' -d "$SLOW" >"$TMP/s2" 2>/dev/null & C2=$!
for _ in $(seq 200); do [ -s "$TMP/s2" ] && break; sleep 0.1; done
sleep 0.2
kill -TERM "$PID"
rc=0; for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
wait "$PID"; rc=$?
check "SIGTERM: the server exits 0" test $rc = 0
wait "$C1" "$C2" 2>/dev/null
check "SIGTERM: the running stream ends with a final chunk (finish_reason cancelled) and [DONE]" python3 -c "
import json, sys
ev = [l[6:] for l in open(sys.argv[1]).read().split('\n') if l.startswith('data: ')]
assert ev[-1] == '[DONE]', ev[-3:]
assert json.loads(ev[-2])['choices'][0]['finish_reason'] == 'cancelled', ev[-2]" "$TMP/s1" || { echo "  s1: $(wc -c <"$TMP/s1") bytes, ends: $(tail -c 400 "$TMP/s1" | tr '\n' ' ')"; tail -5 "$TMP/keyed.log"; }
check "SIGTERM: the queued stream ends too" grep -q 'data: \[DONE\]' "$TMP/s2"
