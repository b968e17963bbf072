// Drives sluice's Batch API (/v1/files, /v1/batches) with the official OpenAI npm SDK.
// Usage: SLUICE_BASE_URL=http://127.0.0.1:8080/v1 SLUICE_API_KEY=... SLUICE_OTHER_KEY=... \
//   node --test e2e/js/batch.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { toFile } from 'openai';

const baseURL = process.env.SLUICE_BASE_URL;
if (!baseURL) throw new Error('SLUICE_BASE_URL is not set');
const client = new OpenAI({ baseURL, apiKey: process.env.SLUICE_API_KEY || 'unused', maxRetries: 0 });
const other = new OpenAI({ baseURL, apiKey: process.env.SLUICE_OTHER_KEY || 'unused', maxRetries: 0 });

const line = (id, content, maxTokens = 8) => JSON.stringify({
  custom_id: id, method: 'POST', url: '/v1/chat/completions',
  body: { model: 'tiny', max_tokens: maxTokens, temperature: 0, messages: [{ role: 'user', content }] },
});

async function upload(c, lines, name = 'requests.jsonl') {
  return c.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), name), purpose: 'batch' });
}

const final = ['completed', 'failed', 'expired', 'cancelled'];

// wait polls a batch, as a client of the Batch API does, until it reaches one of statuses.
async function wait(c, id, statuses = final) {
  for (let i = 0; i < 1200; i++) {
    const b = await c.batches.retrieve(id);
    if (statuses.includes(b.status)) return b;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`batch ${id} did not reach ${statuses}`);
}

async function jsonlOf(c, fileID) {
  const text = await (await c.files.content(fileID)).text();
  return text.trim().split('\n').map((l) => JSON.parse(l));
}

test('a batch runs: output and error files in OpenAI\'s line format', async () => {
  const lines = [];
  for (let i = 0; i < 5; i++) lines.push(line(`q${i}`, `Question number ${i}?`));
  lines.push('{"custom_id": "broken", ');
  lines.push(JSON.stringify({ custom_id: 'wrong-url', method: 'POST', url: '/v1/embeddings', body: { model: 'tiny', input: 'x' } }));
  lines.push(JSON.stringify({ custom_id: 'no-model', method: 'POST', url: '/v1/chat/completions', body: { model: 'nope', messages: [{ role: 'user', content: 'x' }] } }));
  const file = await upload(client, lines);
  assert.equal(file.object, 'file');
  assert.equal(file.purpose, 'batch');
  assert.equal(file.filename, 'requests.jsonl');
  assert.equal(file.bytes, Buffer.byteLength(lines.join('\n') + '\n'));
  assert.ok(file.id.startsWith('file-'));
  assert.deepEqual(await client.files.retrieve(file.id), file);
  assert.equal(await (await client.files.content(file.id)).text(), lines.join('\n') + '\n');

  const created = await client.batches.create({
    input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { job: 'sdk-test' },
  });
  assert.equal(created.object, 'batch');
  assert.equal(created.status, 'validating');
  assert.equal(created.input_file_id, file.id);
  assert.deepEqual(created.metadata, { job: 'sdk-test' });
  assert.ok(created.expires_at - created.created_at === 24 * 3600);

  const b = await wait(client, created.id);
  assert.equal(b.status, 'completed');
  assert.deepEqual(b.request_counts, { total: 8, completed: 5, failed: 3 });
  assert.ok(b.in_progress_at && b.finalizing_at && b.completed_at);
  assert.ok(b.usage.input_tokens > 0 && b.usage.output_tokens > 0);

  const out = await jsonlOf(client, b.output_file_id);
  assert.deepEqual(out.map((o) => o.custom_id), ['q0', 'q1', 'q2', 'q3', 'q4']);
  for (const o of out) {
    assert.ok(o.id.startsWith('batch_req_'));
    assert.equal(o.error, null);
    assert.equal(o.response.status_code, 200);
    assert.ok(o.response.request_id);
    assert.equal(o.response.body.object, 'chat.completion');
    assert.equal(o.response.body.model, 'tiny');
    assert.ok(o.response.body.usage.completion_tokens > 0);
  }
  const errs = await jsonlOf(client, b.error_file_id);
  const byID = Object.fromEntries(errs.map((e) => [e.custom_id, e]));
  assert.equal(errs.length, 3);
  assert.equal(byID['null'].error.code, 'invalid_json'); // custom_id null: the line could not be read
  assert.equal(byID['wrong-url'].error.code, 'invalid_url');
  assert.equal(byID['wrong-url'].response, null);
  assert.equal(byID['no-model'].response.status_code, 404);
  assert.equal(byID['no-model'].response.body.error.code, 'model_not_found');

  const outFile = await client.files.retrieve(b.output_file_id);
  assert.equal(outFile.purpose, 'batch_output');
});

test('lists page with after and has_more; another key sees nothing', async () => {
  const file = await upload(client, [line('a', 'Hi?')]);
  const ids = [];
  for (let i = 0; i < 3; i++) {
    ids.push((await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' })).id);
  }
  const page = await client.batches.list({ limit: 2 });
  assert.equal(page.data.length, 2);
  assert.equal(page.has_more, true);
  assert.deepEqual(page.data.map((b) => b.id), [ids[2], ids[1]]);
  const next = await page.getNextPage();
  assert.equal(next.data[0].id, ids[0]);
  const all = [];
  for await (const b of client.batches.list({ limit: 2 })) all.push(b.id);
  for (const id of ids) assert.ok(all.includes(id));
  const files = [];
  for await (const f of client.files.list({ limit: 1 })) files.push(f.id);
  assert.ok(files.includes(file.id));

  if (process.env.SLUICE_OTHER_KEY) {
    await assert.rejects(other.batches.retrieve(ids[0]), (e) => e.status === 404);
    await assert.rejects(other.files.retrieve(file.id), (e) => e.status === 404);
    await assert.rejects(other.files.content(file.id), (e) => e.status === 404);
    await assert.rejects(other.batches.cancel(ids[0]), (e) => e.status === 404);
    assert.equal((await other.batches.list()).data.length, 0);
    assert.equal((await other.files.list()).data.length, 0);
  }
  for (const id of ids) assert.equal((await wait(client, id)).status, 'completed');
});

test('cancel: no new line starts, finished lines are kept', async () => {
  const lines = [];
  for (let i = 0; i < 30; i++) lines.push(line(`long${i}`, `Tell a long story number ${i}.`, 200));
  const file = await upload(client, lines);
  const b = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
  const c = await client.batches.cancel(b.id);
  assert.ok(['cancelling', 'cancelled'].includes(c.status), c.status);
  assert.ok(c.cancelling_at);
  const done = await wait(client, b.id);
  assert.equal(done.status, 'cancelled');
  assert.ok(done.cancelled_at);
  assert.ok(done.request_counts.completed < 30, `${done.request_counts.completed} lines ran after the cancel`);
  if (done.output_file_id) {
    const out = await jsonlOf(client, done.output_file_id);
    assert.equal(out.length, done.request_counts.completed);
  }
  await assert.rejects(client.batches.cancel((await client.batches.list({ limit: 100 })).data.find((x) => x.status === 'completed').id),
    (e) => e.status === 400);
});

test('files: delete, errors in OpenAI\'s shape', async () => {
  const file = await upload(client, [line('d', 'x')]);
  const del = await client.files.delete(file.id);
  assert.deepEqual(del, { id: file.id, object: 'file', deleted: true });
  await assert.rejects(client.files.retrieve(file.id), (e) => e.status === 404 && e.error?.code === 'file_not_found');
  await assert.rejects(client.batches.retrieve('batch_aaaaaaaaaaaaaaaaaaaaaaaa'), (e) => e.status === 404);
  await assert.rejects(client.files.create({ file: await toFile(Buffer.from('{}\n'), 'x.jsonl'), purpose: 'fine-tune' }),
    (e) => e.status === 400 && e.param === 'purpose');
  await assert.rejects(client.batches.create({ input_file_id: 'file-nope', endpoint: '/v1/chat/completions', completion_window: '24h' }),
    (e) => e.status === 400 && e.param === 'input_file_id');
});
