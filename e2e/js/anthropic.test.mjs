// Drives a running sluice gateway's POST /v1/messages with the official Anthropic npm SDK.
// Usage: SLUICE_URL=http://127.0.0.1:8080 SLUICE_API_KEY=... node --test e2e/js/anthropic.test.mjs
// The gateway serves "tiny" (a llama-server) and "cloud-tools" (a cloud that calls tools).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';

const baseURL = process.env.SLUICE_URL;
if (!baseURL) throw new Error('SLUICE_URL is not set');
const client = new Anthropic({ baseURL, apiKey: process.env.SLUICE_API_KEY, maxRetries: 0 });
const base = {
  model: 'tiny', max_tokens: 10, system: 'You are terse.',
  messages: [{ role: 'user', content: 'Name a river.' }],
};
const tools = [{ name: 'get_weather', description: 'The weather in a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } } } }];

test('message', async () => {
  const m = await client.messages.create(base);
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.equal(m.model, 'tiny');
  assert.equal(m.content[0].type, 'text');
  assert.ok(m.content[0].text.length > 0, 'text');
  assert.equal(m.stop_reason, 'max_tokens');
  assert.equal(m.usage.output_tokens, 10);
  assert.ok(m.usage.input_tokens > 0, 'input tokens');
});

test('stream events and finalMessage', async () => {
  const stream = client.messages.stream(base);
  const seen = [];
  stream.on('streamEvent', (ev) => seen.push(ev.type));
  let text = '';
  stream.on('text', (t) => { text += t; });
  const m = await stream.finalMessage();
  assert.equal(seen[0], 'message_start');
  assert.equal(seen.at(-1), 'message_stop');
  assert.ok(seen.includes('content_block_delta') && seen.includes('message_delta'), seen.join(','));
  assert.ok(text.length > 0 && m.content[0].text === text, 'text');
  assert.equal(m.stop_reason, 'max_tokens');
  assert.equal(m.usage.output_tokens, 10);
});

test('tool use, streamed, and its result sent back', async () => {
  const req = { ...base, model: 'cloud-tools', tools, tool_choice: { type: 'auto' } };
  const whole = await client.messages.create(req);
  assert.equal(whole.stop_reason, 'tool_use');
  assert.deepEqual(whole.content[0].input, { query: 'sluice' });
  const stream = client.messages.stream(req);
  let partial = '';
  stream.on('inputJson', (delta) => { partial += delta; });
  const m = await stream.finalMessage();
  const tu = m.content.find((b) => b.type === 'tool_use');
  assert.ok(tu, 'a tool_use block');
  assert.equal(tu.name, 'get_weather');
  assert.deepEqual(tu.input, { query: 'sluice' });
  assert.equal(partial, '{"query":"sluice"}');
  const next = await client.messages.create({ ...req, messages: [...req.messages,
    { role: 'assistant', content: m.content },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: tu.id, content: '18 degrees' }] }] });
  assert.equal(next.type, 'message');
});

test('errors in Anthropic shape', async () => {
  await assert.rejects(client.messages.create({ ...base, model: 'nope' }), (e) => {
    assert.equal(e.status, 404);
    assert.equal(e.type, 'not_found_error');
    return true;
  });
  const bad = new Anthropic({ baseURL, apiKey: 'sk-wrong', maxRetries: 0 });
  await assert.rejects(bad.messages.create(base), (e) => e.status === 401 && e.type === 'authentication_error');
  await assert.rejects(client.messages.create({ ...base, max_tokens: 0 }), (e) => e.status === 400 && e.type === 'invalid_request_error');
});
