// Keys, rate limits and usage reports of a running sluice, through the official OpenAI
// npm SDK. Usage: SLUICE_BASE_URL=... SLUICE_API_KEY=... SLUICE_LIMITED_KEY=...
// node --test e2e/js/ledger.test.mjs (e2e/ledger_node_test.go starts sluice and runs it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const baseURL = process.env.SLUICE_BASE_URL;
if (!baseURL) throw new Error('SLUICE_BASE_URL is not set');
const messages = [{ role: 'user', content: 'Name a river.' }];

test('usage is recorded per key, user and feature and reported to the key', async () => {
  const client = new OpenAI({
    baseURL, apiKey: process.env.SLUICE_API_KEY, maxRetries: 0,
    defaultHeaders: { 'X-Sluice-Feature': 'node-feature' },
  });
  const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 8, user: 'node-user' });
  assert.ok(r.usage.completion_tokens > 0);
  const stream = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 8, user: 'node-user', stream: true });
  for await (const _ of stream) { /* drain */ }
  const rep = await client.get('/usage', { query: { group_by: 'feature,user' } });
  assert.equal(rep.object, 'usage.report');
  assert.equal(rep.data.length, 1);
  assert.deepEqual(rep.data[0].group, { feature: 'node-feature', user: 'node-user' });
  assert.equal(rep.data[0].requests, 2);
  assert.ok(rep.data[0].cost_usd > 0, 'marginal cost');
  assert.ok(rep.data[0].effective_cost_usd >= rep.data[0].cost_usd, 'effective cost');
  assert.ok(rep.data[0].reference_cost_usd > 0, 'reference cost');
  assert.equal(typeof rep.data[0].savings.local_usd, 'number');
});

test('over the rate limit: RateLimitError with the reset time', async () => {
  const client = new OpenAI({ baseURL, apiKey: process.env.SLUICE_LIMITED_KEY, maxRetries: 0 });
  let refused = null;
  for (let i = 0; i < 3 && !refused; i++) {
    try {
      await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 4 });
    } catch (e) {
      refused = e;
    }
  }
  assert.ok(refused instanceof OpenAI.RateLimitError, `got ${refused}`);
  assert.equal(refused.status, 429);
  assert.equal(refused.code, 'rate_limit_exceeded');
  assert.match(refused.message, /1 requests per minute.*resets at/);
  assert.ok(Number(refused.headers.get('retry-after')) >= 1, 'Retry-After');
});

test('an unknown key: AuthenticationError', async () => {
  const client = new OpenAI({ baseURL, apiKey: 'sk-nobody', maxRetries: 0 });
  await assert.rejects(client.chat.completions.create({ model: 'tiny', messages, max_tokens: 4 }), OpenAI.AuthenticationError);
});
