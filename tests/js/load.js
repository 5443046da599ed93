// Load on gemma4c serve: C concurrent streaming chat clients on loopback send
// R requests in all (or run for S seconds). Each stream must end with a
// finish_reason chunk and [DONE]; prints requests/s, time to first token
// and inter-token latency (p50, p99) and a last line "LOAD ok failed".
// Node's http module only (no client library: it measures the server).
//   node load.js BASE_URL CLIENTS (REQUESTS | --seconds S) [MAX_TOKENS]
const http = require('http');
const [base, clients, a3, a4, a5] = process.argv.slice(2);
const C = Number(clients);
const bySeconds = a3 === '--seconds';
const R = bySeconds ? Infinity : Number(a3);
const S = bySeconds ? Number(a4) : 0;
const maxTokens = Number((bySeconds ? a5 : a4) || 16);
const url = new URL(base + '/v1/chat/completions');
const agent = new http.Agent({ keepAlive: false, maxSockets: C });
const prompts = ['Hello there', 'Tell me a story', 'What is the capital of France?', 'Write a haiku about the sea.'];

let started = 0, ok = 0, failed = 0;
const ttft = [], itl = [], errors = [];
const t0 = Date.now();

function one(k) {
  return new Promise((resolve) => {
    const body = JSON.stringify({ messages: [{ role: 'user', content: prompts[k % prompts.length] + ' #' + k }],
      max_tokens: maxTokens, temperature: 1, seed: k, stream: true });
    const ts = process.hrtime.bigint();
    let last = 0n, first = true, buf = '', fin = null, done = false;
    const bad = (why) => { failed++; if (errors.length < 5) errors.push(why); resolve(); };
    const req = http.request(url, { method: 'POST', agent, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      if (res.statusCode !== 200) { res.resume(); return bad('status ' + res.statusCode); }
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (!ev.startsWith('data: ')) continue;
          if (ev === 'data: [DONE]') { done = true; continue; }
          const c = JSON.parse(ev.slice(6));
          const ch = c.choices && c.choices[0];
          if (!ch) continue;
          if (ch.finish_reason) fin = ch.finish_reason;
          const d2 = ch.delta || {};
          if (d2.content || d2.reasoning_content || d2.tool_calls) {
            const now = process.hrtime.bigint();
            if (first) { ttft.push(Number(now - ts) / 1e6); first = false; } else itl.push(Number(now - last) / 1e6);
            last = now;
          }
        }
      });
      res.on('end', () => { if (done && fin) { ok++; resolve(); } else bad('incomplete stream (finish ' + fin + ', [DONE] ' + done + ')'); });
      res.on('error', (e) => bad(String(e)));
    });
    req.on('error', (e) => bad(String(e)));
    req.setTimeout(120000, () => { req.destroy(new Error('timeout')); });
    req.end(body);
  });
}

async function worker() {
  for (;;) {
    if (started >= R || (bySeconds && Date.now() - t0 > S * 1000)) return;
    await one(started++);
  }
}

const pct = (a, p) => { if (!a.length) return NaN; const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))]; };
Promise.all(Array.from({ length: C }, worker)).then(() => {
  const el = (Date.now() - t0) / 1000;
  console.log(`requests ${ok + failed} in ${el.toFixed(1)} s: ${((ok + failed) / el).toFixed(2)} requests/s, ${ok} ok, ${failed} failed (${C} clients, ${maxTokens} tokens each)`);
  console.log(`time to first token: p50 ${pct(ttft, 50).toFixed(1)} ms, p99 ${pct(ttft, 99).toFixed(1)} ms`);
  console.log(`inter-token latency: p50 ${pct(itl, 50).toFixed(1)} ms, p99 ${pct(itl, 99).toFixed(1)} ms (${itl.length} gaps)`);
  if (errors.length) console.log('errors: ' + errors.join('; '));
  console.log(`LOAD ${ok} ${failed}`);
});
