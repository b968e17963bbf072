// Drives a running sluice gateway with the official OpenAI npm SDK.
// Usage: SLUICE_BASE_URL=http://127.0.0.1:8080/v1 node --test e2e/js/sdk.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const baseURL = process.env.SLUICE_BASE_URL;
if (!baseURL) throw new Error('SLUICE_BASE_URL is not set');
const client = new OpenAI({ baseURL, apiKey: process.env.SLUICE_API_KEY || 'unused', maxRetries: 0 });
const messages = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Name a river.' },
];

test('chat completion', async () => {
  const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 16, seed: 3 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, 'tiny');
  assert.ok(r.choices[0].message.content.length > 0, 'content');
  assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0, 'usage');
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('streamed chat completion with usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'tiny', messages, max_tokens: 24, stream: true, stream_options: { include_usage: true },
  });
  let text = '', chunks = 0, usage = null, finish = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    if (chunk.choices.length > 0) {
      text += chunk.choices[0].delta.content ?? '';
      finish = chunk.choices[0].finish_reason ?? finish;
    }
  }
  assert.ok(chunks >= 3, `chunks ${chunks}`);
  assert.ok(text.length > 0, 'text');
  assert.ok(finish, 'finish_reason');
  assert.ok(usage && usage.completion_tokens > 0, 'usage chunk');
});

test('stream helper (runner API)', async () => {
  const runner = client.chat.completions.stream({ model: 'tiny', messages, max_tokens: 12 });
  const final = await runner.finalChatCompletion();
  assert.ok(final.choices[0].message.content.length > 0);
});

test('legacy completion', async () => {
  const r = await client.completions.create({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 8 });
  assert.equal(r.object, 'text_completion');
  assert.ok(r.choices[0].text.length > 0);
});

test('embeddings', async () => {
  const r = await client.embeddings.create({ model: 'tiny-embed', input: ['alpha', 'beta'] });
  assert.equal(r.data.length, 2);
  assert.equal(r.data[0].embedding.length, 64);
});

test('models', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes('tiny') && ids.includes('tiny-embed'), ids.join(','));
  const m = await client.models.retrieve('tiny');
  assert.equal(m.id, 'tiny');
});

test('errors', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'nope', messages }),
    (err) => err instanceof OpenAI.NotFoundError && err.code === 'model_not_found' && err.param === 'model',
  );
  await assert.rejects(
    client.chat.completions.create({ model: 'tiny', messages, temperature: 7 }),
    (err) => err instanceof OpenAI.BadRequestError && err.param === 'temperature',
  );
  await assert.rejects(async () => {
    const s = await client.chat.completions.create({ model: 'nope', messages, stream: true });
    for await (const _ of s) { /* drain */ }
  }, (err) => err instanceof OpenAI.NotFoundError);
});

test('oversized body is a 413, not a connection error', async () => {
  // 9 MiB over the 8 MiB limit: the SDK sends it all before it reads the answer.
  const big = 'x'.repeat(9 << 20);
  await assert.rejects(
    client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: big }] }),
    (err) => {
      assert.ok(err instanceof OpenAI.APIError && !(err instanceof OpenAI.APIConnectionError), `got ${err}`);
      assert.equal(err.status, 413);
      assert.equal(err.code, 'request_too_large');
      return true;
    },
  );
});
