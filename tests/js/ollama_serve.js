// gemma4c serve through the real ollama npm client (tests/sh/serve.sh runs
// it): chat (stream and not), generate, tags, show, ps, version, think,
// tools, format. The tiny random-weight model's text is meaningless: these
// check the shapes Ollama's clients read, and that the options reach the
// sampler (greedy answers repeat; num_predict counts).
//   node ollama_serve.js HOST MODEL_ID
const { Ollama } = require('ollama');
const Ajv = require('ajv');
const [host, model] = process.argv.slice(2);
const ollama = new Ollama({ host });
let pass = 0, fail = 0;
function check(name, cond, info) {
  if (cond) { pass++; console.log('ok   ' + name); } else { fail++; console.log('FAIL ' + name + (info ? ': ' + JSON.stringify(info).slice(0, 600) : '')); }
}
const user = (content) => [{ role: 'user', content }];
const isTime = (s) => typeof s === 'string' && !Number.isNaN(Date.parse(s));
// the token that opens the thought channel (chat-format spec: <|channel>)
const CHANNEL = 100;

async function main() {
  // chat, streaming: parts with message.content, a last part with done, done_reason and counters
  const st = await ollama.chat({ model, messages: user('Hello there'), stream: true, options: { num_predict: 8, temperature: 0 } });
  let text = '', last = null, n = 0, shapeOk = true;
  for await (const p of st) {
    n++;
    shapeOk = shapeOk && p.model === model && isTime(p.created_at) && p.message && p.message.role === 'assistant' && typeof p.message.content === 'string';
    text += p.message.content;
    last = p;
  }
  check('chat stream: parts with model, created_at, message {role, content}', shapeOk && n >= 2, { n, last });
  check('chat stream: the last part is done with done_reason and counters',
    last && last.done === true && last.done_reason === 'length' && last.eval_count === 8 && last.prompt_eval_count > 0 &&
    last.total_duration > 0 && Number.isInteger(last.eval_duration), last);
  // chat, not streaming: the same greedy answer in one object
  const c1 = await ollama.chat({ model, messages: user('Hello there'), stream: false, options: { num_predict: 8, temperature: 0 }, keep_alive: '5m' });
  check('chat: one object, done, the same greedy text as the stream', c1.done === true && c1.message.content === text && c1.eval_count === 8, { c1, text });

  // generate: a prompt (and a system prompt), stream and not
  const g1 = await ollama.generate({ model, prompt: 'Once upon a time', system: 'You tell stories.', stream: false, options: { num_predict: 6, temperature: 0, seed: 1 } });
  check('generate: response text, done, counters', typeof g1.response === 'string' && g1.done === true && g1.eval_count === 6 && g1.prompt_eval_count > 0, g1);
  const gs = await ollama.generate({ model, prompt: 'Once upon a time', system: 'You tell stories.', stream: true, options: { num_predict: 6, temperature: 0, seed: 1 } });
  let gt = '', gl = null;
  for await (const p of gs) { gt += p.response; gl = p; }
  check('generate stream: the parts add up to the same answer', gt === g1.response && gl.done === true, { gt, want: g1.response });
  const raw = await ollama.generate({ model, prompt: 'Once upon a time', raw: true, stream: false, options: { num_predict: 3 } });
  check('generate raw: a plain continuation', raw.done === true && raw.eval_count === 3, raw);
  const stop = await ollama.generate({ model, prompt: 'Count', stream: false, options: { num_predict: 40, temperature: 1, seed: 5, stop: ['e'] } });
  check('options.stop: no stop string in the answer', stop.done === true && !stop.response.includes('e'), stop);

  // tags / show / ps / version
  const tags = await ollama.list();
  const t0 = tags.models[0];
  check('tags: the model with name, size, digest, modified_at, details',
    t0 && t0.name === model + ':latest' && t0.size > 0 && /^[0-9a-f]{64}$/.test(t0.digest) && isTime(t0.modified_at) &&
    t0.details.format === 'gguf' && t0.details.family === 'gemma4' && Array.isArray(t0.details.families), tags);
  const show = await ollama.show({ model });
  check('show: details, model_info, capabilities (tools, thinking)',
    show.details.family === 'gemma4' && show.model_info['general.architecture'] === 'gemma4' &&
    show.model_info['gemma4.block_count'] > 0 && show.capabilities.includes('tools') && show.capabilities.includes('thinking') &&
    typeof show.modelfile === 'string' && typeof show.parameters === 'string', show);
  const ps = await ollama.ps();
  check('ps: the loaded model with its context length', ps.models.length === 1 && ps.models[0].name === model + ':latest' && ps.models[0].context_length > 0 && isTime(ps.models[0].expires_at), ps);
  const v = await ollama.version();
  check('version: a version string', typeof v.version === 'string' && /^\d+\.\d+\.\d+/.test(v.version), v);

  // think: with thinking on, a thought comes as message.thinking (never in
  // content); off, the thought channel is banned. logit_bias (gemma4c's
  // extension, OpenAI's meaning) pushes the random model into the channel.
  const bias = { [CHANNEL]: 100 };
  const thinkReq = (think) => ({ model, messages: user('Why?'), think, stream: false, logit_bias: bias, options: { num_predict: 12, temperature: 1, seed: 3, repeat_penalty: 100 } });
  const on = await ollama.chat(thinkReq(true));
  check('think: true -> message.thinking, a non-empty string', typeof on.message.thinking === 'string' && on.message.thinking.length > 0 && !on.message.content.includes('<|channel>'), on.message);
  const off = await ollama.chat(thinkReq(false));
  check('think: false -> no thinking (the channel token is banned)', off.message.thinking === undefined && !off.message.content.includes('<|channel>'), off.message);
  const ts = await ollama.chat({ ...thinkReq(true), stream: true });
  let th = '';
  for await (const p of ts) if (p.message.thinking) th += p.message.thinking;
  check('think stream: thinking parts add up to the same thought', th === on.message.thinking, { th, want: on.message.thinking });

  // tools: a call with arguments as an object, then a tool message, then an answer
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Rome'] } }, required: ['city'], additionalProperties: false } } }];
  const msgs = user('What is the weather in Paris?');
  const t1 = await ollama.chat({ model, messages: msgs, tools, tool_choice: 'required', stream: false, options: { num_predict: 200, temperature: 0 } });
  const call = (t1.message.tool_calls || [])[0];
  check('tools: a get_weather call, arguments an object in the schema',
    call && call.function.name === 'get_weather' && typeof call.function.arguments === 'object' && ['Paris', 'Rome'].includes(call.function.arguments.city), t1.message);
  if (call) {
    msgs.push(t1.message);
    msgs.push({ role: 'tool', content: JSON.stringify({ temperature_c: 21 }), tool_name: 'get_weather' });
    const t2 = await ollama.chat({ model, messages: msgs, tools, stream: false, options: { num_predict: 10, temperature: 0 } });
    check('tools: the tool result gives a final answer (a longer prompt)', t2.done === true && t2.prompt_eval_count > t1.prompt_eval_count, t2);
  }
  const ts2 = await ollama.chat({ model, messages: user('Weather in Rome?'), tools, tool_choice: 'required', stream: true, options: { num_predict: 200, temperature: 0 } });
  let sc = 0;
  for await (const p of ts2) for (const c of p.message.tool_calls || []) sc += c.function.name === 'get_weather' && typeof c.function.arguments === 'object' ? 1 : 0;
  check('tools stream: tool_calls parts', sc >= 1, sc);

  // format: "json" and a schema
  const schema = { type: 'object', properties: { answer: { type: 'string', enum: ['yes', 'no'] }, sure: { type: 'boolean' } }, required: ['answer', 'sure'], additionalProperties: false };
  const f1 = await ollama.chat({ model, messages: user('Is the sea blue?'), format: schema, stream: false, options: { num_predict: 200, temperature: 0.8, seed: 3 } });
  let obj = null;
  try { obj = JSON.parse(f1.message.content); } catch (e) { /* checked below */ }
  check('format (schema): the answer validates', obj !== null && new Ajv().compile(schema)(obj), f1.message);
  // a random-weight model may wander inside a string past num_predict: every
  // answer that ends by itself must be one JSON object, and some seed must end
  let f2 = null, o2 = null, stopped = 0, bad = null;
  for (let seed = 1; seed <= 8 && stopped < 1; seed++) {
    f2 = await ollama.generate({ model, prompt: 'Give me JSON', format: 'json', stream: false, options: { num_predict: 200, seed } });
    if (f2.done_reason !== 'stop') continue;
    stopped++;
    o2 = null;
    try { o2 = JSON.parse(f2.response); } catch (e) { /* checked below */ }
    if (!(o2 !== null && typeof o2 === 'object' && !Array.isArray(o2))) bad = f2;
  }
  check('format "json": a JSON object', stopped >= 1 && bad === null, bad || f2);

  // errors come as Ollama's {"error"} (the client throws ResponseError)
  let err = null;
  try { await ollama.chat({ model: 'no-such-model', messages: user('x'), stream: false }); } catch (e) { err = e; }
  check('an unknown model -> 404 ResponseError', err && err.status_code === 404 && /not found/.test(err.error), err && { s: err.status_code, e: err.error });
  err = null;
  try { await ollama.chat({ model, messages: user('x'), stream: false, options: { temperature: 'hot' } }); } catch (e) { err = e; }
  check('a wrong option type -> 400 naming it', err && err.status_code === 400 && /options\.temperature/.test(err.error), err && { s: err.status_code, e: err.error });
}

main().catch((e) => { fail++; console.log('FAIL exception: ' + (e && e.stack || e)); })
  .finally(() => { console.log(`RESULT ${pass} ${fail}`); });
