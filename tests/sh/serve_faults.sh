#!/usr/bin/env bash
# gemma4c serve against faults and bad input (each with a defined answer,
# the server serving on afterwards): a wrong type for every field of the
# OpenAI and Ollama routes, invalid UTF-8, n too large, headers at one byte
# a second (tests/serve/faults.py); an Ollama client that leaves mid-stream;
# SIGTERM with an Ollama stream in flight (its last line is done with
# done_reason "cancelled", as OpenAI streams end with finish_reason
# "cancelled" and [DONE]). Bounded waits; the server is always killed.
. "$(dirname "$0")/lib.sh"
PID=
cleanup() { [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null; rm -rf "$TMP"; echo "RESULT $_p $_f"; }
trap cleanup EXIT
M=$TMP/tiny.gguf
"$G4" synth --arch tiny --type Q8_0 -o "$M" 2>/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$G4" serve -m "$M" --port "$PORT" -t 2 --ctx 1024 --parallel 2 --timeout 2 >"$TMP/out" 2>"$TMP/log" &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
B=http://127.0.0.1:$PORT
timeout 120 python3 tests/serve/faults.py "$B" 2 >"$TMP/faults.out" 2>&1
grep -v '^RESULT' "$TMP/faults.out"
set -- $(grep '^RESULT' "$TMP/faults.out" | tail -1) RESULT 0 1
_p=$((_p + $2)); _f=$((_f + $3))
grep -q "connection timed out: no complete request in 2 s" "$TMP/log"; check "the cut connection is logged" test $? = 0

metric() { curl -s "$B/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
c0=$(metric 'gemma4c_requests_total{outcome="cancelled"}')
# Ollama's API has no logit_bias: the random tiny model may end an answer by
# itself before the client leaves, so up to 5 tries, each with another seed
ok=0
for try in 1 2 3 4 5; do
    curl -sN -m 30 "$B/api/chat" -d '{"messages":[{"role":"user","content":"Tell me a long story"}],"options":{"num_predict":3000,"seed":'$try'}}' 2>/dev/null | head -c 400 >/dev/null
    for _ in $(seq 50); do
        [ "$(metric 'gemma4c_requests_total{outcome="cancelled"}')" -gt "$c0" ] && [ "$(metric gemma4c_requests_active)" = 0 ] && { ok=1; break; }
        [ "$(metric gemma4c_requests_active)" = 0 ] && break   # ended without a cancel: next try
        sleep 0.1
    done
    [ $ok = 1 ] && break
done
check "an Ollama client that leaves mid-stream (NDJSON) cancels its request" test $ok = 1

# Ollama's API has no logit_bias, so the random tiny model may sample an
# end-of-turn token by itself (once in CI: done_reason stop after 114 tokens,
# 51 ms, before the signal): a stream that has already ended is not the one
# to signal, so it is retried (at most 5 times, each with another seed) until
# one is still running when SIGTERM goes out.
for try in 1 2 3 4 5; do
    curl -sN -m 60 "$B/api/chat" -d '{"messages":[{"role":"user","content":"Tell me a long story"}],"options":{"num_predict":3000,"seed":'$try'}}' >"$TMP/o1" 2>/dev/null & C1=$!
    for _ in $(seq 200); do [ -s "$TMP/o1" ] && break; sleep 0.1; done
    grep -q '"done":true' "$TMP/o1" || break
    wait "$C1" 2>/dev/null
done
kill -TERM "$PID"
for _ in $(seq 150); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
wait "$PID"; rc=$?; PID=
check "SIGTERM: exit 0" test $rc = 0
wait "$C1" 2>/dev/null
check "SIGTERM: the Ollama stream ends with a done line (done_reason cancelled)" python3 -c "
import json, sys
ls = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(ls) >= 2 and not ls[0]['done'], ls[:2]
assert ls[-1]['done'] is True and ls[-1]['done_reason'] == 'cancelled', ls[-1]" "$TMP/o1"
