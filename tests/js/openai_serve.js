// gemma4c serve through the real openai npm client (tests/sh/serve.sh runs
// it). The tiny random-weight model's text is meaningless: these check the
// structure of the answers, and that a greedy answer equals the CLI's.
//   node openai_serve.js BASE_URL MODEL_ID RUN_GREEDY_MESSAGE_JSON
const OpenAI = require('openai');
const Ajv = require('ajv');
const [base, model, cliMsg] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base, apiKey: 'none', maxRetries: 0, timeout: 60000 });
let pass = 0, fail = 0;
function check(name, cond, info) {
  if (cond) { pass++; console.log('ok   ' + name); } else { fail++; console.log('FAIL ' + name + (info ? ': ' + JSON.stringify(info) : '')); }
}
const user = (content) => [{ role: 'user', content }];

async function main() {
  // the same bytes as `gemma4c run --greedy` for the same prompt
  const r1 = await client.chat.completions.create({ model, messages: user('Hello there'), max_tokens: 8, temperature: 0 });
  const m1 = r1.choices[0].message;
  check('chat: a chat.completion with an assistant message', r1.object === 'chat.completion' && m1.role === 'assistant' && r1.usage.completion_tokens > 0, r1);
  const want = JSON.parse(cliMsg);
  check('chat: greedy answer = gemma4c run --greedy (same bytes)', m1.content === want.content, { http: m1.content, cli: want.content });

  // streaming: chunks, a final finish_reason, a usage chunk, same text as above
  const st = await client.chat.completions.create({ model, messages: user('Hello there'), max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = '', fin = null, usage = null, n = 0, role = null;
  for await (const c of st) {
    n++;
    check.chunkOk = (check.chunkOk ?? true) && c.object === 'chat.completion.chunk';
    if (c.usage) usage = c.usage;
    const ch = c.choices[0];
    if (!ch) continue;
    if (ch.delta.role) role = ch.delta.role;
    if (ch.delta.content) text += ch.delta.content;
    if (ch.finish_reason) fin = ch.finish_reason;
  }
  check('stream: chat.completion.chunk events, role first', check.chunkOk && role === 'assistant' && n >= 3, n);
  check('stream: a final finish_reason and a usage chunk', fin === 'length' && usage && usage.completion_tokens === 8, { fin, usage });
  check('stream: the deltas add up to the non-streaming answer', text === m1.content, { text, want: m1.content });

  // a tool round trip: the call under tool_choice required, a tool message, an answer
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Rome'] } }, required: ['city'], additionalProperties: false } } }];
  const msgs = user('What is the weather in Paris?');
  const t1 = await client.chat.completions.create({ model, messages: msgs, tools, tool_choice: 'required', max_tokens: 200, temperature: 0 });
  const call = (t1.choices[0].message.tool_calls || [])[0];
  let args = null;
  try { args = JSON.parse(call.function.arguments); } catch (e) { /* checked below */ }
  check('tools: tool_choice required gives a get_weather call with schema arguments',
    t1.choices[0].finish_reason === 'tool_calls' && call && call.type === 'function' && call.function.name === 'get_weather' && args && ['Paris', 'Rome'].includes(args.city), t1.choices[0]);
  if (call) {
    msgs.push(t1.choices[0].message);
    msgs.push({ role: 'tool', tool_call_id: call.id, content: JSON.stringify({ temperature_c: 21 }) });
    const t2 = await client.chat.completions.create({ model, messages: msgs, tools, max_tokens: 12, temperature: 0 });
    check('tools: the tool result gives a final answer', t2.choices[0].message.role === 'assistant' && ['stop', 'length', 'tool_calls'].includes(t2.choices[0].finish_reason) && t2.usage.prompt_tokens > t1.usage.prompt_tokens, t2);
  }

  // response_format json_schema: the output validates
  const schema = { type: 'object', properties: { answer: { type: 'string', enum: ['yes', 'no'] }, sure: { type: 'boolean' } }, required: ['answer', 'sure'], additionalProperties: false };
  const j = await client.chat.completions.create({ model, messages: user('Is the sea blue?'), max_tokens: 200, temperature: 0.8, seed: 3,
    response_format: { type: 'json_schema', json_schema: { name: 'verdict', schema, strict: true } } });
  let obj = null;
  try { obj = JSON.parse(j.choices[0].message.content); } catch (e) { /* checked below */ }
  const validate = new Ajv().compile(schema);
  check('response_format json_schema: the answer validates', obj !== null && validate(obj), j.choices[0]);

  // reasoning_content: a strong logit_bias towards the token that opens the
  // thought channel (<|channel>, id 100; repeat_penalty keeps it to once) makes
  // the random model think when thinking is on; off, that token is banned, so
  // the same request gives no reasoning_content
  const think = (on, stream) => client.chat.completions.create({ model, messages: user('Why?'), max_tokens: 12, temperature: 1, seed: 3,
    logit_bias: { 100: 100 }, repeat_penalty: 100, chat_template_kwargs: { enable_thinking: on }, stream });
  const ron = (await think(true, false)).choices[0].message;
  check('thinking on + logit_bias: reasoning_content present, non-empty, not in content',
    typeof ron.reasoning_content === 'string' && ron.reasoning_content.length > 0 && !(ron.content || '').includes('<|channel>'), ron);
  const roff = (await think(false, false)).choices[0].message;
  check('thinking off + the same logit_bias: no reasoning_content', !('reasoning_content' in roff) && !(roff.content || '').includes('<|channel>'), roff);
  let rs = '', rsOff = 0;
  for await (const c of await think(true, true)) { const d = c.choices[0] && c.choices[0].delta; if (d && d.reasoning_content) rs += d.reasoning_content; }
  for await (const c of await think(false, true)) { const d = c.choices[0] && c.choices[0].delta; if (d && 'reasoning_content' in d) rsOff++; }
  check('stream: reasoning_content deltas add up to the thought; none with thinking off', rs === ron.reasoning_content && rsOff === 0, { rs, want: ron.reasoning_content, rsOff });
  const re = await client.chat.completions.create({ model, messages: user('Why?'), max_tokens: 12, temperature: 1, seed: 3, logit_bias: { 100: 100 }, repeat_penalty: 100, reasoning_effort: 'high' });
  check('reasoning_effort high switches thinking on too', typeof re.choices[0].message.reasoning_content === 'string' && re.choices[0].message.reasoning_content.length > 0, re.choices[0].message);
  let bad = 0;
  try { await client.chat.completions.create({ model, messages: user('x'), logit_bias: { 99999999: 5 } }); } catch (e) { bad = e.status; }
  check('logit_bias with a token id outside the vocabulary -> 400', bad === 400, bad);

  // completions (raw prompt), models, errors through the client
  const c1 = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 6, temperature: 0 });
  check('completions: a text_completion', c1.object === 'text_completion' && typeof c1.choices[0].text === 'string' && c1.usage.completion_tokens > 0, c1);
  const ml = await client.models.list();
  check('models: lists the model', ml.data.some((x) => x.id === model), ml.data);
  let status = 0;
  try { await client.chat.completions.create({ model: 'no-such-model', messages: user('x') }); } catch (e) { status = e.status; }
  check('an unknown model is a 404 APIError', status === 404, status);
}

main().catch((e) => { fail++; console.log('FAIL exception: ' + (e && e.stack || e)); })
  .finally(() => { console.log(`RESULT ${pass} ${fail}`); });
