#!/usr/bin/env bash
# Long load run on gemma4c serve (loopback only): CLIENTS concurrent
# streaming clients for MINUTES minutes (default 64 and 10) on MODEL
# (default: the tiny synthetic default model), then the same checks as
# tests/sh/serve_load.sh: failed requests, RSS after against after the
# warm-up, open fds; prints requests/s, p50/p99 time to first token and
# inter-token latency.
#   bench/serve_load.sh [MINUTES] [CLIENTS] [MODEL] [extra serve options...]
set -u
cd "$(dirname "$0")/.."
MIN=${1:-10}; CL=${2:-64}; M=${3:-}; shift $(( $# < 3 ? $# : 3 ))
G4=${G4:-build/gemma4c}
TMP=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null; rm -rf "$TMP"' EXIT
if [ -z "$M" ]; then M=$TMP/gemma4c-tiny.gguf; "$G4" synth --arch tiny -o "$M" 2>/dev/null; fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$G4" serve -m "$M" --port "$PORT" -t "${THREADS:-2}" --parallel "${PARALLEL:-8}" --queue 256 "$@" >"$TMP/out" 2>"$TMP/log" &
PID=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
B=http://127.0.0.1:$PORT
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$PID/status"; }
fds() { ls "/proc/$PID/fd" | wc -l; }
echo "== warm-up: $CL requests"
node tests/js/load.js "$B" "$CL" "$CL" 16 | tail -1
sleep 0.3; rss0=$(rss); fd0=$(fds)
echo "== $MIN minutes, $CL clients ($(uptime | sed 's/.*load/load/'))"
node tests/js/load.js "$B" "$CL" --seconds $((MIN * 60)) 16
sleep 0.3; rss1=$(rss); fd1=$(fds)
echo "server RSS after warm-up $rss0 kB, after the run $rss1 kB ($(python3 -c "print('%+.1f%%' % (100.0 * ($rss1 - $rss0) / $rss0))")); open fds $fd0 -> $fd1"
kill -TERM "$PID"; wait "$PID"; echo "server exit status $?"
PID=
