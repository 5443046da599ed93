#!/usr/bin/env bash
# What the HTTP layer of gemma4c serve costs: for 1, 4 and 16 concurrent
# clients, aggregate generated tokens/s and p50 time to first token over
# HTTP (streaming chat requests of exactly -n tokens at temperature 1) as a
# share of the library's own figures. HTTP t/s is the steady rate: tokens
# that arrived while every stream was decoding, over that window (the
# scheduler starts a step with the requests that have arrived, so a late
# request's prompt can share steps with the others' first decode tokens;
# the library's N streams run in step from the start). The per-stream
# first-to-last rate, summed (the older figure), is printed beside it.
#   t/s   `gemma4c bench --parallel N -n T --sample` (N streams in one
#         forward pass, each token drawn by the server's default sampler:
#         the same per-token library work as the requests)
#   TTFT  the same N prompts evaluated in one batch (P tokens each, at the
#         rate of `gemma4c bench -p N*P`, run in every pair: a 44-token
#         prefill runs ~13% slower per token than a 64-token one, so a rate
#         from another length is no baseline) plus one decode step of N
#         streams: N*P / pp t/s + N / aggregate t/s (the scheduler admits all
#         N prompts into one batch, then samples their first tokens)
# The machine's speed moves (a shared VM), so the two are interleaved:
# PAIRS times a library run then an HTTP run, a last library run after, and
# each HTTP figure is divided by the mean of the library runs on either side;
# the table gives the medians.
# The client is build/bench/bench_serve_client (C, one thread, poll): the
# figure is the server's, and node's event loop and JSON parsing on the same
# 2 cores took compute time from it. CLIENT=node runs bench/serve_overhead.js
# instead (same requests, same output). Goal: the HTTP layer costs < 5%.
# A second table splits each decode step (ms, medians) by the server's own
# clocks (/metrics: gemma4c_decode_*): the library's step (N / library t/s),
# the server's forward pass, its whole step (forward + sampling, text and
# events), and the interval the client sees (N / steady HTTP t/s). forward vs
# library: the decode itself slowed in the server process (its other
# threads, the client); step vs forward: the scheduler's per-token work;
# HTTP vs step: waiting between steps and delivery.
# Run it on a quiet machine (uptime load < 1.5).
#   bench/serve_overhead.sh [MODEL] [THREADS] [TOKENS]
#   env: PAIRS (default 3), NS (default "1 4 16"), CLIENT (c | node), G4
# MODEL defaults to models/bench/e2b-Q4_K_M.gguf; make it with
#   build/gemma4c synth --arch e2b --type Q4_K_M -o models/bench/e2b-Q4_K_M.gguf
set -eu
cd "$(dirname "$0")/.."
M=${1:-models/bench/e2b-Q4_K_M.gguf}; T=${2:-2}; N_TOK=${3:-32}
G4=${G4:-build/gemma4c}; PAIRS=${PAIRS:-3}; NS=${NS:-1 4 16}; CLIENT=${CLIENT:-c}
[ -e "$M" ] || { echo "no model $M: make one with $G4 synth --arch e2b --type Q4_K_M -o $M"; exit 2; }
case $CLIENT in
    c) [ -x build/bench/bench_serve_client ] || make -s build/bench/bench_serve_client
       CL=(build/bench/bench_serve_client) ;;
    node) CL=(node bench/serve_overhead.js) ;;
    *) echo "CLIENT must be c or node"; exit 2 ;;
esac
echo "load before: $(uptime | sed 's/.*load/load/'); client: ${CL[*]}; $PAIRS pairs per row"
TMP=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null; rm -rf "$TMP"' EXIT
lib() { "$G4" bench -m "$M" -t "$T" --parallel "$1" -n "$N_TOK" -r 1 --ttft-prefix 0 --bw 1 --sample --json 2>/dev/null; }
printf "%8s %14s %14s %7s %14s %14s %7s %12s\n" clients "http t/s" "library t/s" share "http TTFT ms" "library ms" share "first-last"
for N in $NS; do
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$G4" serve -m "$M" --port "$PORT" -t "$T" --parallel "$N" --prefix 0 >"$TMP/out" 2>"$TMP/log" &
    PID=$!
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
    B=http://127.0.0.1:$PORT
    # the end-of-answer tokens, banned so that every answer has N_TOK tokens
    BAN=$(for p in '<eos>' '<turn|>' '<|tool_response>' '<|tool_call>' '<|channel>'; do
        curl -s "$B/tokenize" -d "{\"content\":\"$p\",\"parse_special\":true}"; echo; done |
        python3 -c 'import json,sys; print(json.dumps([t for l in sys.stdin if l.strip() for t in json.loads(l)["tokens"]]))')
    "${CL[@]}" "$B" "$N" 4 "$BAN" >"$TMP/warm.$N"   # warm-up; it also says the prompt's length
    P=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["prompt_tokens"])' "$TMP/warm.$N")
    : >"$TMP/lib.$N"; : >"$TMP/http.$N"; : >"$TMP/met.$N"; : >"$TMP/pp.$N"
    met() { curl -s "$B/metrics" | awk '/^gemma4c_decode_(steps_total|forward_seconds_total|step_seconds_total) /{printf "%s ", $2}'; }
    for _ in $(seq "$PAIRS"); do
        lib "$N" >>"$TMP/lib.$N"
        # the library's prefill of the same N x P prompt tokens as one batch
        "$G4" bench -m "$M" -t "$T" -p $((N * P)) -n 0 -r 1 --json 2>/dev/null | tr -d '\n' >>"$TMP/pp.$N"; echo >>"$TMP/pp.$N"
        m0=$(met)
        "${CL[@]}" "$B" "$N" "$N_TOK" "$BAN" >>"$TMP/http.$N"
        echo "$m0 $(met)" >>"$TMP/met.$N"
    done
    lib "$N" >>"$TMP/lib.$N"
    kill -TERM "$PID"; wait "$PID" || true; PID=
    python3 - "$TMP/lib.$N" "$TMP/pp.$N" "$TMP/http.$N" "$N" "$TMP/met.$N" >>"$TMP/steps" <<'PY'
import json, statistics as st, sys
lib = [next(p["aggregate_tps"] for p in json.loads(l)["parallel"]) for l in open(sys.argv[1]) if l.strip()]
hs = [json.loads(l) for l in open(sys.argv[3]) if l.strip()]
n = int(sys.argv[4])
ms = [[float(x) for x in l.split()] for l in open(sys.argv[5]) if l.strip()]
fwd = [1e3 * (b[1] - a[1]) / (b[0] - a[0]) for a, b in ((m[:3], m[3:]) for m in ms) if b[0] > a[0]]
stp = [1e3 * (b[2] - a[2]) / (b[0] - a[0]) for a, b in ((m[:3], m[3:]) for m in ms) if b[0] > a[0]]
print("%8d %12.2f %12.2f %12.2f %12.2f" % (n, 1e3 * n / st.median(lib), st.median(fwd) if fwd else 0,
      st.median(stp) if stp else 0, 1e3 * n / st.median(h["steady_tps"] for h in hs)))
PY
    python3 - "$TMP/lib.$N" "$TMP/pp.$N" "$TMP/http.$N" "$N" <<'PY'
import json, statistics as st, sys
lib = [next(p["aggregate_tps"] for p in json.loads(l)["parallel"]) for l in open(sys.argv[1]) if l.strip()]
hs = [json.loads(l) for l in open(sys.argv[3]) if l.strip()]
n = int(sys.argv[4])
pp_tps = st.median(next(r["tps"] for r in json.loads(l)["results"] if r["test"].startswith("pp"))
                   for l in open(sys.argv[2]) if l.strip())
share = [h["steady_tps"] / ((lib[i] + lib[i + 1]) / 2) for i, h in enumerate(hs)]
agg, h_tps, h_ttft = st.median(lib), st.median(h["steady_tps"] for h in hs), st.median(h["p50_ttft_ms"] for h in hs)
h_fl = st.median(h["aggregate_tps"] for h in hs)
ttft_lib = 1e3 * (n * hs[0]["prompt_tokens"] / pp_tps + n / agg)
print("%8d %14.2f %14.2f %6.1f%% %14.1f %14.1f %6.1f%% %12.2f   (t/s shares %s)" % (n, h_tps, agg,
      100 * st.median(share), h_ttft, ttft_lib, 100 * ttft_lib / h_ttft, h_fl,
      " ".join("%.1f%%" % (100 * s) for s in share)))
PY
done
echo "decode step, ms (medians):"
printf "%8s %12s %12s %12s %12s\n" clients library "srv forward" "srv step" "http"
cat "$TMP/steps"
echo "load after: $(uptime | sed 's/.*load/load/')"
