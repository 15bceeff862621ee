// The official OpenAI Node SDK against the gateway, driven by
// t/24_openai_sdk.t.  Prints one JSON object of results on stdout.
//
//   AIHUB_BASE_URL  http://127.0.0.1:PORT/v1
//   AIHUB_KEY       a key allowed test-basic and test-premium
//   AIHUB_FREE_KEY  a key allowed test-basic only
//   AIHUB_SPENT_KEY a key whose monthly quota is used up

import OpenAI from 'openai';
import { VERSION } from 'openai/version';

const env = process.env;
const out = { version: VERSION };

function client(apiKey) {
    return new OpenAI({ baseURL: env.AIHUB_BASE_URL, apiKey,
                        maxRetries: 0, timeout: 10000 });
}

const messages = [{ role: 'user', content: 'hello' }];

async function run(name, fn) {
    try {
        out[name] = await fn();
    } catch (e) {
        out[name] = { error: e.constructor.name, status: e.status ?? null,
                      code: e.code ?? null, type: e.type ?? null,
                      message: String(e.message) };
    }
}

const ok = client(env.AIHUB_KEY);

await run('chat', async () => {
    const { data, response } = await ok.chat.completions
        .create({ model: 'test-basic', messages }).withResponse();
    return { content: data.choices[0].message.content, usage: data.usage,
             request_id: response.headers.get('x-request-id') };
});

await run('stream', async () => {
    const stream = await ok.chat.completions.create({
        model: 'test-basic', messages, stream: true });
    let content = '', chunks = 0, usage = 0;
    for await (const chunk of stream) {
        chunks++;
        if (chunk.usage) usage++;
        for (const c of chunk.choices ?? []) content += c.delta?.content ?? '';
    }
    return { content, chunks, usage_chunks: usage };
});

await run('stream_usage', async () => {
    const stream = await ok.chat.completions.create({
        model: 'test-basic', messages, stream: true,
        stream_options: { include_usage: true } });
    let content = '', usage = null;
    for await (const chunk of stream) {
        if (chunk.usage) usage = chunk.usage;
        for (const c of chunk.choices ?? []) content += c.delta?.content ?? '';
    }
    return { content, usage };
});

await run('unauthorized', () => client('ai-hub-not-a-real-key')
    .chat.completions.create({ model: 'test-basic', messages }));
await run('forbidden', () => client(env.AIHUB_FREE_KEY)
    .chat.completions.create({ model: 'test-premium', messages }));
await run('not_found', () => ok.chat.completions.create(
    { model: 'no-such-model', messages }));
await run('provider_429', () => ok.chat.completions.create(
    { model: 'test-basic', messages },
    { headers: { 'x-mock-status': '429' } }));
await run('quota_429', () => client(env.AIHUB_SPENT_KEY)
    .chat.completions.create({ model: 'test-basic', messages }));

await run('models', async () => {
    const ids = [];
    for await (const m of ok.models.list()) ids.push(m.id);
    return ids.sort();
});

process.stdout.write(JSON.stringify(out) + '\n');
