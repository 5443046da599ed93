#!/usr/bin/env bash
# Load on gemma4c serve (bounded, loopback only): 64 concurrent streaming
# clients (tests/js/load.js) on the default model (the tiny synthetic one,
# F32) send 64 requests to warm up, then 192 more. Every request must
# succeed and every stream end with a finish_reason and [DONE]; the
# server's RSS after the run must be within 5% of after the warm-up, and
# its open file descriptors must not grow. Prints requests/s and p50/p99
# time to first token and inter-token latency. bench/serve_load.sh runs the
# same for minutes.
. "$(dirname "$0")/lib.sh"
PID=
cleanup() { [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null; rm -rf "$TMP"; echo "RESULT $_p $_f"; }
trap cleanup EXIT
M=$TMP/gemma4c-tiny.gguf
"$G4" synth --arch tiny -o "$M" 2>/dev/null   # what `gemma4c serve` with no -m serves
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$G4" serve -m "$M" --port "$PORT" -t 2 --parallel 8 --queue 128 >"$TMP/out" 2>"$TMP/log" &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
B=http://127.0.0.1:$PORT
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$PID/status"; }
fds() { ls "/proc/$PID/fd" | wc -l; }
# run N: N requests from 64 clients; adds its checks' inputs to $TMP/run.N
run() {
    timeout 120 node tests/js/load.js "$B" 64 "$1" 16 >"$TMP/run.$1" 2>&1
    set -- $(grep '^LOAD' "$TMP/run.$1" | tail -1) LOAD 0 -1
    echo "$2 $3"
}
read -r w_ok w_fail <<<"$(run 64)"
check "warm-up: 64 concurrent streams, all complete ($w_ok ok, $w_fail failed)" test "$w_ok" = 64 -a "$w_fail" = 0
sleep 0.3
rss0=$(rss); fd0=$(fds)
read -r ok_ failed <<<"$(run 192)"
grep -v '^LOAD' "$TMP/run.192"
check "192 requests from 64 concurrent streaming clients: 0 failed, every stream ends with finish_reason and [DONE] ($ok_ ok)" \
    test "$ok_" = 192 -a "$failed" = 0
sleep 0.3
rss1=$(rss); fd1=$(fds)
echo "server RSS after warm-up $rss0 kB, after the run $rss1 kB; open fds $fd0 -> $fd1"
# under AddressSanitizer freed memory sits in its quarantine, so RSS says
# nothing about leaks there (LeakSanitizer checks those at exit)
case "$BUILD" in
*asan*) echo "skip RSS within 5% (sanitizer build: ASan's quarantine holds freed memory)" ;;
*) check "RSS after the run within 5% of after the warm-up ($rss0 -> $rss1 kB)" \
    python3 -c "import sys; a, b = int(sys.argv[1]), int(sys.argv[2]); assert abs(b - a) <= 0.05 * a" "$rss0" "$rss1" ;;
esac
check "no file descriptor growth ($fd0 -> $fd1)" test "$fd1" -le "$fd0"
check "the server still serves" curl -sf -m 30 "$B/v1/chat/completions" -d '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}' -o /dev/null
kill -TERM "$PID"; wait "$PID"; check "exit 0 on SIGTERM" test $? = 0
PID=
