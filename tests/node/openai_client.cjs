// tests/node/openai_client.cjs MODULES_DIR BASE_URL API_KEY -- the official `openai` npm client
// against `bitjit serve` (run by test_serve's openai_npm_client; MODULES_DIR is where
// scripts/setup-node.sh installed tests/node/package.json). Every call must parse; the answers and
// the errors the client raises are printed as one JSON object for the C test to check.
'use strict';
const path = require('path');
const [modules, baseURL, apiKey] = process.argv.slice(2);
const OpenAI = require(path.join(modules, 'node_modules', 'openai'));

async function main() {
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60000 });
  const out = {};
  const models = await client.models.list();
  out.model = models.data[0].id;

  const c = await client.completions.create({ model: out.model, prompt: 'In the beginning', max_tokens: 12, temperature: 0, logprobs: 2 });
  out.completion = c.choices[0].text;
  out.completion_tokens = c.usage.completion_tokens;
  out.completion_logprob_tokens = c.choices[0].logprobs.tokens.join('');

  let streamed = '';
  for await (const ev of await client.completions.create({ model: out.model, prompt: 'In the beginning', max_tokens: 12, temperature: 0, stream: true })) {
    streamed += ev.choices.length ? ev.choices[0].text : '';
  }
  out.completion_streamed = streamed;

  const ch = await client.chat.completions.create({
    model: out.model, messages: [{ role: 'user', content: 'In the beginning' }], max_completion_tokens: 12, temperature: 0,
    logprobs: true, top_logprobs: 3, seed: 5,
  });
  out.chat = ch.choices[0].message.content;
  out.chat_role = ch.choices[0].message.role;
  out.chat_logprobs = ch.choices[0].logprobs.content.map((t) => t.token).join('');
  out.chat_top = ch.choices[0].logprobs.content[0].top_logprobs.length;

  let chatStreamed = '', usage = null, chunks = 0;
  const stream = await client.chat.completions.create({
    model: out.model, messages: [{ role: 'user', content: 'In the beginning' }], max_tokens: 12, temperature: 0,
    stream: true, stream_options: { include_usage: true }, stop: ['zzqq', 'qqzz'],
  });
  for await (const ev of stream) {
    chunks++;
    if (ev.choices.length && ev.choices[0].delta.content) chatStreamed += ev.choices[0].delta.content;
    if (ev.usage) usage = ev.usage;
  }
  out.chat_streamed = chatStreamed;
  out.chat_stream_usage = usage && usage.completion_tokens;
  out.chat_chunks = chunks;

  try {
    await client.chat.completions.create({ model: out.model, messages: [{ role: 'user', content: 'a' }], n: 2 });
    out.n2 = 'accepted';
  } catch (e) {
    out.n2 = { status: e.status, param: e.param, name: e.constructor.name };
  }
  try {
    await client.chat.completions.create({ model: out.model, messages: [{ role: 'user', content: 'a' }], response_format: { type: 'json_object' } });
    out.json_object = 'accepted';
  } catch (e) {
    out.json_object = { status: e.status, param: e.param, name: e.constructor.name };
  }
  try {
    const bad = new OpenAI({ baseURL, apiKey: apiKey + 'x', maxRetries: 0 });
    await bad.completions.create({ model: out.model, prompt: 'a', max_tokens: 1 });
    out.bad_key = 'accepted';
  } catch (e) {
    out.bad_key = { status: e.status, code: e.code, name: e.constructor.name };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(`openai client failed: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
