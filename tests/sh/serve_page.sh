#!/usr/bin/env bash
# gemma4c serve's chat page in a real browser: Debian's headless Chromium
# driven by puppeteer-core (tests/js/chat_page.js): type a message, see the
# answer stream in, press Stop mid-stream. The screenshot is kept as a test
# artifact in $BUILD/artifacts/chat-page.png. Bounded: every wait has a limit.
. "$(dirname "$0")/lib.sh"
PID=
cleanup() { [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null; rm -rf "$TMP"; echo "RESULT $_p $_f"; }
trap cleanup EXIT
M=$TMP/tiny.gguf
"$G4" synth --arch tiny --type Q8_0 -o "$M" 2>/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$G4" serve -m "$M" --port "$PORT" -t 2 --ctx 32768 --parallel 2 --api-key pagekey >"$TMP/out" 2>"$TMP/log" &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
B=http://127.0.0.1:$PORT
got=$(curl -s -o "$TMP/page" -w '%{http_code} %{content_type}' "$B/")
check "GET / serves the page (HTML, no key needed for the page itself)" test "$got" = "200 text/html; charset=utf-8"
check "the page is self-contained: no external scripts or styles" python3 -c "
import re, sys
t = open(sys.argv[1]).read()
assert '<script>' in t and '/v1/chat/completions' in t
assert not re.search(r'(src|href)=\"(https?:)?//', t), 'external reference'" "$TMP/page"
if [ ! -d tests/js/node_modules/puppeteer-core ]; then
    fail "chat page: tests/js/node_modules/puppeteer-core is missing (run scripts/setup.sh)"
elif [ ! -x /usr/lib/chromium/chromium ]; then
    fail "chat page: Debian's chromium is missing (run scripts/setup.sh)"
else
    mkdir -p "$BUILD/artifacts"
    # the page's calls need the key: the test types it in like a user
    PAGE_KEY=pagekey timeout 180 node tests/js/chat_page.js "$B" "$BUILD/artifacts/chat-page.png" >"$TMP/node.out" 2>&1
    grep -v '^RESULT' "$TMP/node.out"
    # on a failure, the server's side of the story
    grep -q '^FAIL' "$TMP/node.out" && { echo "  server log (last 15 lines):"; tail -15 "$TMP/log" | sed 's/^/    /'; }
    set -- $(grep '^RESULT' "$TMP/node.out" | tail -1) RESULT 0 1
    _p=$((_p + $2)); _f=$((_f + $3))
fi
kill -TERM "$PID"; wait "$PID"; check "the server exits 0 on SIGTERM afterwards" test $? = 0
PID=
