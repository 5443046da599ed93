#!/usr/bin/env bash
# What the HTTP layer of gemma4c serve costs: for 1, 4 and 16 concurrent
# clients, aggregate generated tokens/s and p50 time to first token over
# HTTP (bench/serve_overhead.js: streaming chat requests of exactly -n tokens)
# as a share of the library's own figures in the same run:
#   t/s   `gemma4c bench --parallel N -n T` (N streams in one forward pass)
#   TTFT  the same N prompts evaluated in one batch (P tokens each at the
#         `gemma4c bench -p` prefill rate) plus one decode step of N streams:
#         N*P / pp t/s + N / aggregate t/s (the scheduler admits all N
#         prompts into one batch, then samples their first tokens)
# Goal: the HTTP layer costs < 5%. Run it on a quiet machine (uptime load < 1.5).
#   bench/serve_overhead.sh [MODEL] [THREADS] [TOKENS]
# MODEL defaults to models/bench/e2b-Q4_K_M.gguf; make it with
#   build/gemma4c synth --arch e2b --type Q4_K_M -o models/bench/e2b-Q4_K_M.gguf
set -eu
cd "$(dirname "$0")/.."
M=${1:-models/bench/e2b-Q4_K_M.gguf}; T=${2:-2}; N_TOK=${3:-32}
G4=${G4:-build/gemma4c}
[ -e "$M" ] || { echo "no model $M: make one with $G4 synth --arch e2b --type Q4_K_M -o $M"; exit 2; }
echo "load before: $(uptime | sed 's/.*load/load/')"
TMP=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null; rm -rf "$TMP"' EXIT
"$G4" bench -m "$M" -t "$T" --parallel 1,4,16 -n "$N_TOK" -r 3 --ttft-prefix 0 --json >"$TMP/lib.json"
"$G4" bench -m "$M" -t "$T" -p 64 -n 0 -r 3 --json >"$TMP/pp.json"
printf "%8s %14s %14s %7s %14s %14s %7s\n" clients "http t/s" "library t/s" share "http TTFT ms" "library ms" share
for N in 1 4 16; do
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$G4" serve -m "$M" --port "$PORT" -t "$T" --parallel "$N" --prefix 0 >"$TMP/out" 2>"$TMP/log" &
    PID=$!
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
    B=http://127.0.0.1:$PORT
    # the end-of-answer tokens, banned so that every answer has N_TOK tokens
    BAN=$(for p in '<eos>' '<turn|>' '<|tool_response>' '<|tool_call>' '<|channel>'; do
        curl -s "$B/tokenize" -d "{\"content\":\"$p\",\"parse_special\":true}"; echo; done |
        python3 -c 'import json,sys; print(json.dumps([t for l in sys.stdin if l.strip() for t in json.loads(l)["tokens"]]))')
    node bench/serve_overhead.js "$B" "$N" 4 "$BAN" >/dev/null   # warm-up
    node bench/serve_overhead.js "$B" "$N" "$N_TOK" "$BAN" >"$TMP/http.$N"
    kill -TERM "$PID"; wait "$PID" || true; PID=
    python3 - "$TMP/lib.json" "$TMP/pp.json" "$TMP/http.$N" "$N" <<'PY'
import json, sys
lib, pp, h, n = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), json.loads(open(sys.argv[3]).read()), int(sys.argv[4])
agg = next(p["aggregate_tps"] for p in lib["parallel"] if p["n"] == n)
pp_tps = next(r["tps"] for r in pp["results"] if r["test"].startswith("pp"))
ttft_lib = 1e3 * (n * h["prompt_tokens"] / pp_tps + n / agg)
print("%8d %14.2f %14.2f %6.1f%% %14.1f %14.1f %6.1f%%" % (n, h["aggregate_tps"], agg, 100 * h["aggregate_tps"] / agg,
      h["p50_ttft_ms"], ttft_lib, 100 * ttft_lib / h["p50_ttft_ms"]))
PY
done
echo "load after: $(uptime | sed 's/.*load/load/')"
