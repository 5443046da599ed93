// JavaScript side of bench/bench_tokenizer.sh: the reference tokenizer
// (@lenml/tokenizers, a port of Hugging Face tokenizers, installed under
// tests/js/node_modules) timed on the same corpus as bench_tokenizer.c.
//   node bench/bench_tokenizer_js.js TOKENIZER_JSON CORPUS [ITERS]
// Its BPE keeps a per-word cache; it is cleared before each timed run so every
// run tokenizes the corpus from scratch, like the C side.
"use strict";
const fs = require("fs");
const path = require("path");
const { TokenizerLoader } = require(path.join(__dirname, "../tests/js/node_modules/@lenml/tokenizers"));

const [tokPath, corpusPath, itersArg] = process.argv.slice(2);
if (!tokPath || !corpusPath) {
  console.error("usage: node bench_tokenizer_js.js TOKENIZER_JSON CORPUS [ITERS]");
  process.exit(2);
}
const iters = Math.max(1, parseInt(itersArg || "3", 10));
const now = () => Number(process.hrtime.bigint()) / 1e9;

let t0 = now();
const tokenizerJSON = JSON.parse(fs.readFileSync(tokPath, "utf8"));
const cfgPath = path.join(path.dirname(tokPath), "tokenizer_config.json");
const tokenizerConfig = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, "utf8")) : {};
const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
const load = now() - t0;

const buf = fs.readFileSync(corpusPath);
const text = buf.toString("utf8");
let best = Infinity, first = 0, n = 0;
for (let i = 0; i < iters; i++) {
  if (tok.model.clear_cache) tok.model.clear_cache();
  t0 = now();
  const ids = tok.encode(text, { add_special_tokens: false });
  const dt = now() - t0;
  if (i === 0) first = dt;
  if (process.env.VERBOSE) console.log(`js run ${i}: ${dt.toFixed(3)} s`);
  best = Math.min(best, dt);
  n = ids.length;
}
console.log(`js corpus: ${buf.length} bytes, ${n} tokens`);
console.log(`js load tokenizer.json: ${load.toFixed(3)} s`);
console.log(`js encode: first ${first.toFixed(3)} s, best of ${iters} ${best.toFixed(3)} s`);
console.log(`encode_mb_s ${(buf.length / 1e6 / best).toFixed(2)}`);
