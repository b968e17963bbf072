// The client side of e2e/batch_crash_test.go, with the official OpenAI npm SDK.
//   node batch-crash.mjs create <lines>   uploads a file of <lines> requests, creates a
//                                          batch, prints {"batch": id}
//   node batch-crash.mjs finish <id> <n>  waits for the batch, reads its output file,
//                                          checks that it has each of the n requests
//                                          exactly once, prints the batch
// Env: SLUICE_BASE_URL (…/v1), SLUICE_API_KEY.
import OpenAI, { toFile } from 'openai';

const client = new OpenAI({ baseURL: process.env.SLUICE_BASE_URL, apiKey: process.env.SLUICE_API_KEY, maxRetries: 0 });
const [phase, arg, arg2] = process.argv.slice(2);

if (phase === 'create') {
  const lines = [];
  for (let i = 0; i < Number(arg); i++) {
    lines.push(JSON.stringify({
      custom_id: `line-${i}`, method: 'POST', url: '/v1/chat/completions',
      body: { model: 'tiny', max_tokens: 96, temperature: 0, messages: [{ role: 'user', content: `Tell story number ${i}.` }] },
    }));
  }
  const file = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'crash.jsonl'), purpose: 'batch' });
  const b = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
  console.log(JSON.stringify({ batch: b.id }));
} else if (phase === 'finish') {
  let b;
  for (let i = 0; ; i++) {
    b = await client.batches.retrieve(arg);
    if (['completed', 'failed', 'expired', 'cancelled'].includes(b.status)) break;
    if (i > 1800) throw new Error(`batch still ${b.status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (b.status !== 'completed') throw new Error(`batch ${b.status}: ${JSON.stringify(b)}`);
  const text = await (await client.files.content(b.output_file_id)).text();
  const seen = new Map();
  for (const l of text.trim().split('\n')) {
    const o = JSON.parse(l);
    if (o.response.status_code !== 200 || o.error !== null) throw new Error(`a line failed: ${l}`);
    seen.set(o.custom_id, (seen.get(o.custom_id) ?? 0) + 1);
  }
  const n = Number(arg2);
  for (let i = 0; i < n; i++) {
    const c = seen.get(`line-${i}`) ?? 0;
    if (c !== 1) throw new Error(`line-${i} is in the output ${c} times`);
  }
  if (seen.size !== n) throw new Error(`the output has ${seen.size} distinct lines, want ${n}`);
  console.log(JSON.stringify(b));
} else {
  throw new Error(`unknown phase ${phase}`);
}
