// HTTP side of bench/serve_overhead.sh: C clients at once, each one
// streaming chat request of exactly T generated tokens (the end tokens are
// banned by logit_bias). Prints one JSON line: aggregate generated t/s
// (the streams' decode rates, first to last token, summed), the steady
// rate while all streams decode, p50 time to first token, the prompt's tokens.
//   node serve_overhead.js BASE_URL C T BAN_IDS_JSON
const http = require('http');
const [base, cs, ts, banj] = process.argv.slice(2);
const C = Number(cs), T = Number(ts);
const bias = Object.fromEntries(JSON.parse(banj).map((id) => [String(id), -100]));
const agent = new http.Agent({ keepAlive: false, maxSockets: C });
function one(k) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'Write a long story about the sea, number ' + k }],
      max_tokens: T, temperature: 1, seed: k, logit_bias: bias, stream: true, stream_options: { include_usage: true } });
    const t0 = process.hrtime.bigint();
    const times = [];
    let buf = '', usage = null;
    const req = http.request(base + '/v1/chat/completions', { method: 'POST', agent, headers: { 'Content-Type': 'application/json' } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error('status ' + res.statusCode));
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (!ev.startsWith('data: {')) continue;
          const c = JSON.parse(ev.slice(6));
          if (c.usage) usage = c.usage;
          const dl = c.choices && c.choices[0] && c.choices[0].delta;
          if (dl && (dl.content || dl.reasoning_content)) times.push(Number(process.hrtime.bigint() - t0) / 1e9);
        }
      });
      res.on('end', () => resolve({ t0: Number(t0) / 1e9, times, usage }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
Promise.all(Array.from({ length: C }, (_, k) => one(k))).then((rs) => {
  // each stream's decode rate from its first to its last token (a delta
  // may hold part of a token, so tokens come from usage), summed: the
  // streams run together (all N admitted at once, the same length)
  const agg = rs.reduce((x, r) => x + (r.usage.completion_tokens - 1) / (r.times[r.times.length - 1] - r.times[0]), 0);
  // the steady rate: tokens that arrived while every stream was decoding
  // (after the last first token, up to the first last token) over that
  // window, as bench --parallel runs its streams in step from the start
  const tAll = Math.max(...rs.map((r) => r.times[0])), tEnd = Math.min(...rs.map((r) => r.times[r.times.length - 1]));
  // (a token's text can come as several deltas: a stream's deltas in the
  // window count as that share of its tokens; one stream: first-to-last)
  const inWin = rs.reduce((n, r) => n + r.times.filter((t) => t > tAll && t <= tEnd).length *
    (r.usage.completion_tokens - 1) / (r.times.length - 1), 0);
  const steady = tEnd > tAll && inWin > 0 ? inWin / (tEnd - tAll) : agg;
  const ttft = rs.map((r) => r.times[0] * 1e3).sort((a, b) => a - b);
  const gen = rs.reduce((n, r) => n + r.usage.completion_tokens, 0);
  console.log(JSON.stringify({ clients: C, aggregate_tps: agg, steady_tps: steady, p50_ttft_ms: ttft[Math.floor(ttft.length / 2)],
    prompt_tokens: rs[0].usage.prompt_tokens, completion_tokens: gen }));
}).catch((e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });
