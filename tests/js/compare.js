// Reference side of the tokenizer comparison (tests/sh/tokenizer_js.sh).
//
// The reference is @lenml/tokenizers, a JavaScript port of Hugging Face's
// tokenizers, loaded from the same tokenizer.json that gemma4c reads.
//
//   node compare.js gen TOKENIZER_DIR OUT_DIR [--no-real]   write test sets + expected ids
//   node compare.js check EXPECT GOT NAME       compare two id files line by line
//
// Test sets (one JSON string per line, *.jsonl, expected ids in *.expect):
//   plain    >= 2000 generated strings, tokenized as plain text
//   real     real text files from /usr/share (licenses, Debian copyright files)
//   special  strings with added/special tokens written in them, tokenized with
//            special-token matching on (gemma4c --special)
// Hugging Face matches every added token in any text; gemma4c matches the
// special=true ones only when asked. So plain/real records never contain a
// special=true token string (records that do are dropped and counted), and the
// special set is compared with --special. The shared tokenizer.json is Gemma
// 3's: same pieces and merges as Gemma 4, different special-token strings, so
// plain text results hold for Gemma 4.
"use strict";
const fs = require("fs");
const path = require("path");

function loadTokenizer(dir) {
  const { TokenizerLoader } = require("@lenml/tokenizers");
  const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  let tokenizerConfig = {};
  const cfg = path.join(dir, "tokenizer_config.json");
  if (fs.existsSync(cfg)) tokenizerConfig = JSON.parse(fs.readFileSync(cfg, "utf8"));
  const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
  return { tok, json: tokenizerJSON };
}

// Deterministic PRNG (mulberry32).
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const R = rng(20261128);
const ri = (n) => Math.floor(R() * n);
const pick = (a) => a[ri(a.length)];
const cp = (c) => String.fromCodePoint(c);
const range = (lo, hi) => cp(lo + ri(hi - lo + 1));
const rep = (n, f) => { let s = ""; for (let i = 0; i < n; i++) s += f(); return s; };

const WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Hello", "world",
  "tokenizer", "Gemma", "model", "function", "return", "international", "антидиск", "Привет",
  "мир", "日本語", "中文", "한국어", "العربية", "עברית", "ελληνικά", "हिन्दी", "ភាសាខ្មែរ", "ไทย",
  "naïve", "café", "Straße", "ﬁnance", "I'm", "don't", "e.g.", "U.S.A.", "1234567890", "3.14159",
  "$100", "50%", "a+b=c", "foo_bar", "camelCase", "snake_case", "kebab-case", "http://x.org/a?b=c",
  "user@example.com", "#hashtag", "@mention", "<b>", "</div>", "<table>", "<p>", "<br/>"];
const EMOJI = ["😀", "🦙", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "1️⃣", "❤️", "🧑🏿‍🚀", "👩‍💻", "🫠",
  "✨", "🔥", "😂", "🙏🏻", "🤷‍♀️", "🐈‍⬛", "©", "™", "☃", "⌘"];
const SCRIPTS = [
  [0x0041, 0x007a], [0x00c0, 0x024f], [0x0370, 0x03ff], [0x0400, 0x04ff], [0x0530, 0x058f],
  [0x0590, 0x05ff], [0x0600, 0x06ff], [0x0900, 0x097f], [0x0e00, 0x0e7f], [0x1780, 0x17ff],
  [0x3040, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0x1f300, 0x1faff], [0x20000, 0x2a6df],
  [0x0300, 0x036f], [0x2000, 0x206f], [0xff00, 0xffef], [0x1d400, 0x1d7ff], [0x10000, 0x1007f]];
const ODD = ["\u0000", "\u0001", "\u0007", "\b", "\u000b", "\f", "\r", "\u001b", "\u007f", "\u0080",
  "\u0085", "\u009f", "\u00a0", "\u00ad", "\u200b", "\u200c", "\u200d", "\u200e", "\u2028", "\u2029",
  "\u202e", "\u2060", "\ufeff", "\ufffd", "\ufffe", "\uffff", "\u{10ffff}", "\u{e000}", "\u{f8ff}",
  "\u{fffff}", "\u{e0001}", "\u{1d11e}", "\u0301", "\u0308", "\u20dd", "\u3000", "\\x", "\\u00",
  "%FF", "&#xD800;", "\\\\", "\"", "'", "`"];
const WS = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n", "\n ", " \t ", "\u00a0",
  "\u3000", "\u2003"];

function randomUnicode() {
  for (;;) {
    const r = R();
    const c = r < 0.5 ? ri(0x800) : r < 0.85 ? ri(0x10000) : ri(0x110000);
    if (c >= 0xd800 && c <= 0xdfff) continue;   // no lone surrogates
    if (c === 0x2581) continue;                 // "▁" decodes to a space
    return cp(c);
  }
}

const GEN = {
  ascii: () => rep(1 + ri(12), () => pick(WORDS.slice(0, 20)) + pick([" ", " ", " ", ", ", ". ", "  "])),
  printable: () => rep(1 + ri(60), () => cp(0x20 + ri(95))),
  whitespace: () => rep(1 + ri(8), () => pick(WS) + (R() < 0.5 ? pick(WORDS) : "")),
  wsruns: () => rep(1 + ri(4), () => pick([" ", "\t", "\n", "\r"]).repeat(1 + ri(40)) + pick(["", "x", "Hello", "."])),
  digits: () => rep(1 + ri(6), () => String(ri(1e9)) + pick(["", " ", ".", ",", "-", "/", ":", "e-"])),
  code: () => pick([
    "int main(void) {\n    return 0;\n}\n",
    "def f(x):\n\treturn x ** 2  # square\n",
    "for (size_t i = 0; i < n; i++) a[i] += b[i] * c;",
    "{\"key\": [1, 2.5, null, true], \"s\": \"\\u00e9\"}",
    "<html><body><div class=\"a\"><b>bold</b> <i>it</i></div></body></html>",
    "SELECT * FROM t WHERE id = 42 AND name LIKE '%x%';",
    "    if x:\n        y = [i for i in range(10) if i % 2]\n",
    "#include <stdio.h>\n#define MAX(a,b) ((a)>(b)?(a):(b))\n",
    "fn main() { println!(\"{}\", 1 << 3); }",
    "$ ls -la | grep '^d' && echo $((1+2))",
  ]) + (R() < 0.5 ? pick(WORDS) : ""),
  emoji: () => rep(1 + ri(8), () => pick(EMOJI) + (R() < 0.3 ? " " : "") + (R() < 0.2 ? pick(WORDS) : "")),
  script: () => { const [lo, hi] = pick(SCRIPTS); return rep(1 + ri(30), () => range(lo, hi) + (R() < 0.15 ? " " : "")); },
  words: () => rep(1 + ri(15), () => pick(WORDS) + pick([" ", " ", "", "\n", ", "])),
  combining: () => rep(1 + ri(10), () => pick(["a", "e", "o", "n", "ا", "क", "ក"]) + rep(ri(5), () => range(0x300, 0x36f))),
  odd: () => rep(1 + ri(10), () => pick(ODD) + (R() < 0.5 ? pick(WORDS) : "")),
  unicode: () => rep(1 + ri(40), randomUnicode),
  mixed: () => rep(2 + ri(10), () => GEN[pick(["ascii", "emoji", "script", "odd", "digits", "whitespace", "unicode"])]()),
};

function specialStrings(json) {
  return json.added_tokens.filter((a) => a.special).map((a) => a.content);
}

function genPlain(n, specials) {
  const out = [];
  const kinds = Object.keys(GEN);
  for (let i = 0; out.length < n; i++) {
    let s = GEN[kinds[i % kinds.length]]();
    if (i % 97 === 0) s = s.repeat(200 + ri(300));   // long inputs without newlines too
    if (specials.some((t) => s.includes(t))) continue;
    out.push(s);
  }
  // fixed cases: llama.cpp's vectors and edge cases
  out.push("", " ", "  ", "\n", "Hello world", " Hello world", "Hello, world!", "  Hello",
    "    Hello\n    Hello", "\t\n", " this is 🦙.cpp", "\n".repeat(40), "\n".repeat(100) + "x",
    " ".repeat(100), "\t".repeat(70), "a".repeat(5000), "é".repeat(3000), "🦙".repeat(500),
    "<b", "<b>", "<<b>>", "</s>", "<unused", "<0x41>", "<0xZZ>");
  return out;
}

function genSpecial(n, json) {
  // "▁" pieces are left out: they decode to spaces, so they cannot round-trip
  const added = json.added_tokens.map((a) => a.content).filter((s) => !s.includes("\u2581"));
  const specials = specialStrings(json);
  const out = [];
  for (let i = 0; i < n; i++) {
    let s = "";
    const parts = 1 + ri(8);
    for (let k = 0; k < parts; k++) {
      const r = R();
      if (r < 0.3) s += pick(specials);
      else if (r < 0.45) s += pick(added);
      else if (r < 0.55) { const t = pick(specials); s += t.slice(0, 1 + ri(t.length - 1)); }   // broken marker
      else s += GEN[pick(["ascii", "words", "emoji", "whitespace", "code", "script"])]();
    }
    out.push(s);
  }
  return out;
}

function realTexts(specials, budget) {
  const files = [];
  const lic = "/usr/share/common-licenses";
  if (fs.existsSync(lic)) for (const f of fs.readdirSync(lic).sort()) files.push(path.join(lic, f));
  const doc = "/usr/share/doc";
  if (fs.existsSync(doc))
    for (const d of fs.readdirSync(doc).sort()) {
      const f = path.join(doc, d, "copyright");
      if (fs.existsSync(f)) files.push(f);
    }
  const out = [];
  let bytes = 0, dropped = 0;
  const seen = new Set();
  for (const f of files) {
    let st;
    try { st = fs.statSync(f); } catch (e) { continue; }
    if (!st.isFile() || st.size > 1 << 20) continue;
    const s = fs.readFileSync(f, "utf8");
    if (seen.has(s)) continue;   // many packages share one copyright text
    seen.add(s);
    if (specials.some((t) => s.includes(t)) || s.includes("\u2581")) { dropped++; continue; }
    out.push(s);
    bytes += Buffer.byteLength(s);
    if (bytes >= budget) break;
  }
  return { out, bytes, dropped };
}

function writeSet(tok, dir, name, strings, opts) {
  const jl = strings.map((s) => JSON.stringify(s)).join("\n") + "\n";
  fs.writeFileSync(path.join(dir, name + ".jsonl"), jl);
  const t0 = process.hrtime.bigint();
  const ids = strings.map((s) => tok.encode(s, { add_special_tokens: false }).join(" "));
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  fs.writeFileSync(path.join(dir, name + ".expect"), ids.join("\n") + "\n");
  const bytes = strings.reduce((a, s) => a + Buffer.byteLength(s), 0);
  console.log(`${name}: ${strings.length} strings, ${bytes} bytes, JS encode ${ms.toFixed(0)} ms`);
}

function main() {
  const [cmd, a, b, c] = process.argv.slice(2);
  if (cmd === "gen") {
    const { tok, json } = loadTokenizer(a);
    fs.mkdirSync(b, { recursive: true });
    const specials = specialStrings(json);
    writeSet(tok, b, "plain", genPlain(2400, specials), {});
    writeSet(tok, b, "special", genSpecial(400, json), {});
    if (c !== "--no-real") {
      const real = realTexts(specials, 4 << 20);
      console.log(`real: dropped ${real.dropped} files containing special-token strings or U+2581`);
      writeSet(tok, b, "real", real.out, {});
    }
  } else if (cmd === "check") {
    const exp = fs.readFileSync(a, "utf8").split("\n");
    const got = fs.readFileSync(b, "utf8").split("\n");
    const n = exp.length - 1;   // trailing newline
    let same = 0, shown = 0;
    for (let i = 0; i < n; i++) {
      if (exp[i] === got[i]) { same++; continue; }
      if (shown++ < 5) console.log(`${c}: record ${i + 1} differs\n  js: ${exp[i].slice(0, 300)}\n  c:  ${(got[i] || "<missing>").slice(0, 300)}`);
    }
    if (got.length - 1 !== n) console.log(`${c}: ${got.length - 1} result lines for ${n} records`);
    const pct = n ? (100 * same / n) : 100;
    console.log(`${c}: ${same}/${n} identical (${pct.toFixed(2)}%)`);
    process.exit(same === n && got.length - 1 === n ? 0 : 1);
  } else {
    console.error("usage: node compare.js gen TOKENIZER_DIR OUT_DIR | check EXPECT GOT NAME");
    process.exit(2);
  }
}

main();
