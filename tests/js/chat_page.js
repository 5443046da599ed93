// The chat page (GET /) in a real browser: Debian's headless Chromium driven
// by puppeteer-core (tests/sh/serve_page.sh runs it). Types a message, sees
// the answer stream into the page, presses Stop mid-stream and sees the
// text stop growing (and the server count a cancelled request); a second,
// short answer in a new conversation completes with its finish reason.
// Writes a screenshot.
//   node chat_page.js BASE_URL SCREENSHOT.png
const puppeteer = require('puppeteer-core');
const http = require('http');
const [base, shot] = process.argv.slice(2);
let pass = 0, fail = 0;
function check(name, cond, info) {
  if (cond) { pass++; console.log('ok   ' + name); } else { fail++; console.log('FAIL ' + name + (info !== undefined ? ': ' + JSON.stringify(info).slice(0, 400) : '')); }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const metric = (name) => new Promise((res) => {
  http.get(base + '/metrics', { headers: process.env.PAGE_KEY ? { Authorization: 'Bearer ' + process.env.PAGE_KEY } : {} }, (r) => {
    let t = '';
    r.on('data', (d) => { t += d; });
    r.on('end', () => { const l = t.split('\n').find((x) => x.startsWith(name + ' ')); res(l ? Number(l.split(' ')[1]) : NaN); });
  }).on('error', () => res(NaN));
});

async function main() {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/lib/chromium/chromium',
    headless: true,
    // root in a container: no sandbox; no GPU, no first-run work
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check'],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1000, height: 700 });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(base + '/', { waitUntil: 'load', timeout: 20000 });
    if (process.env.PAGE_KEY) await page.type('#key', process.env.PAGE_KEY); // a server with --api-key
    check('the page loads with its form and settings',
      await page.$('#input') && await page.$('#stop') && await page.$('#system') && await page.$('#temperature') && await page.$('#max_tokens') && await page.$('#top_p'));
    await page.click('#clear'); // fetches /v1/models again, now with the key
    await page.waitForFunction(() => document.getElementById('model').textContent.length > 0, { timeout: 10000 });
    check('the page names the model (from /v1/models)', true);

    // The random tiny model may end an answer by itself at any step (its
    // end-of-generation tokens <eos> 1, <|tool_response> 50, <turn|> 106),
    // which would race the checks below: the test adds a logit_bias banning
    // them to the page's requests on their way out (the page is unchanged),
    // so the story runs until Stop and the short answer to its length.
    await page.setRequestInterception(true);
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().endsWith('/v1/chat/completions')) {
        const body = JSON.parse(r.postData());
        body.logit_bias = { 1: -100, 50: -100, 106: -100 };
        r.continue({ postData: JSON.stringify(body) });
      } else r.continue();
    });
    // a long answer: stream, then stop it
    const cancelled0 = await metric('gemma4c_requests_total{outcome="cancelled"}');
    // 30000 tokens (the server runs with --ctx 32768): the tiny model makes
    // ~3000 a second, so the answer outlasts the checks below by far even
    // when the browser falls behind the stream on a loaded machine
    await page.$eval('#max_tokens', (e) => { e.value = '30000'; });
    await page.$eval('#system', (e) => { e.value = 'You are a storyteller.'; });
    await page.type('#input', 'Tell me a long story');
    await page.keyboard.press('Enter');
    await page.waitForSelector('.msg.user', { timeout: 5000 });
    check('the message appears as the user\'s', (await page.$eval('.msg.user', (e) => e.textContent)) === 'Tell me a long story');
    await page.waitForFunction(() => { const c = document.querySelector('.msg.assistant .content'); return c && c.textContent.length > 20; }, { timeout: 30000 });
    const len1 = await page.$eval('.msg.assistant .content', (e) => e.textContent.length);
    await page.waitForFunction((n) => document.querySelector('.msg.assistant .content').textContent.length > n, { timeout: 30000 }, len1);
    check('the answer streams into the page (text grows while it is generated)', true);
    check('Stop is enabled while streaming, Send is not', await page.$eval('#stop', (e) => !e.disabled) && await page.$eval('#send', (e) => e.disabled));
    await page.click('#stop');
    await page.waitForFunction(() => document.querySelector('.msg.assistant .meta').textContent === 'stopped', { timeout: 10000 });
    const lenStop = await page.$eval('.msg.assistant .content', (e) => e.textContent.length);
    await sleep(1500);
    const lenLater = await page.$eval('.msg.assistant .content', (e) => e.textContent.length);
    check('Stop ends the stream: "stopped", no more text', lenLater === lenStop, { lenStop, lenLater });
    console.log('     (the stopped answer: ' + lenStop + ' characters)');
    let cancelled = NaN;
    for (let i = 0; i < 50; i++) { cancelled = await metric('gemma4c_requests_total{outcome="cancelled"}'); if (cancelled > cancelled0) break; await sleep(100); }
    check('... and the server cancelled the request', cancelled > cancelled0, { cancelled0, cancelled });
    check('Send is enabled again', await page.$eval('#send', (e) => !e.disabled));

    // a short answer runs to its end, in a new conversation: the stopped
    // answer's length depends on how far the browser lagged behind the
    // stream (under load, thousands of tokens), and carried in the history
    // it could overflow the context (the page then says "failed")
    await page.click('#clear');
    await page.waitForFunction(() => document.querySelectorAll('.msg').length === 0, { timeout: 10000 });
    await page.$eval('#max_tokens', (e) => { e.value = '12'; });
    await page.type('#input', 'Hello there');
    await page.keyboard.press('Enter');
    // a failure says what the page showed instead of only timing out
    try {
      await page.waitForFunction(() => { const m = document.querySelectorAll('.msg.assistant .meta'); return m.length === 1 && /^(finish: |failed)/.test(m[0].textContent); }, { timeout: 60000 });
    } catch (e) {
      const shown = await page.evaluate(() => ({ metas: [...document.querySelectorAll('.msg.assistant .meta')].map((m) => m.textContent), error: document.getElementById('error').textContent }));
      throw new Error('the short answer did not end: ' + JSON.stringify(shown));
    }
    const meta = await page.$$eval('.msg.assistant .meta', (m) => m[0].textContent);
    check('a short answer completes with its finish reason', meta === 'finish: length', { meta, error: await page.$eval('#error', (e) => e.textContent) });
    check('no script errors in the page', errors.length === 0, errors);
    if (shot) { await page.screenshot({ path: shot }); console.log('screenshot: ' + shot); }
  } finally {
    await browser.close();
  }
}

main().catch((e) => { fail++; console.log('FAIL exception: ' + (e && e.stack || e)); })
  .finally(() => { console.log(`RESULT ${pass} ${fail}`); });
