// The Responses API, embeddings and model lookup through the official
// OpenAI Node SDK and the Vercel AI SDK's default OpenAI provider
// (createOpenAI()(model), which calls the Responses API), driven by
// t/39_sdk_api.t.  Prints one JSON object of results on stdout; each call
// that reached a model reports the usage the client saw and its
// x-request-id (the id of its usage event).
//
//   AIHUB_BASE_URL  http://127.0.0.1:PORT/v1
//   AIHUB_KEY       a key allowed every test model

import OpenAI from 'openai';
import { VERSION } from 'openai/version';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText } from 'ai';
import { readFileSync } from 'node:fs';

const env = process.env;
const out = {
    openai_version: VERSION,
    ai_version: JSON.parse(readFileSync(new URL(
        './node_modules/ai/package.json', import.meta.url))).version,
    ai_sdk_openai_version: JSON.parse(readFileSync(new URL(
        './node_modules/@ai-sdk/openai/package.json', import.meta.url)))
        .version,
};

async function run(name, fn) {
    try {
        out[name] = await fn();
    } catch (e) {
        out[name] = { error: e.constructor.name,
                      status: e.status ?? e.statusCode ?? null,
                      code: e.code ?? null, message: String(e.message) };
    }
}

const client = new OpenAI({ baseURL: env.AIHUB_BASE_URL,
                            apiKey: env.AIHUB_KEY, maxRetries: 0,
                            timeout: 10000 });

// --- the official SDK ------------------------------------------------------

// store: true asked; the gateway (aihub_stored_objects off) has the
// provider keep nothing, and the response says so
await run('responses', async () => {
    const { data, response } = await client.responses.create({
        model: 'test-resp', instructions: 'Be brief.', input: 'hello',
        store: true,
    }).withResponse();
    return { text: data.output_text, status: data.status, usage: data.usage,
             store: data.store,
             request_id: response.headers.get('x-request-id') };
});

await run('responses_stream', async () => {
    const { data: stream, response } = await client.responses.create({
        model: 'test-resp', stream: true,
        input: [{ role: 'user', content: 'hello' }],
    }).withResponse();
    let text = '', last = null, types = [];
    for await (const ev of stream) {
        types.push(ev.type);
        if (ev.type === 'response.output_text.delta') text += ev.delta;
        last = ev;
    }
    return { text, first: types[0], last: last?.type,
             usage: last?.response?.usage ?? null,
             request_id: response.headers.get('x-request-id') };
});

await run('responses_incomplete', async () => {
    const { data, response } = await client.responses.create({
        model: 'test-resp', input: 'hello', max_output_tokens: 3,
    }).withResponse();
    return { status: data.status, usage: data.usage,
             request_id: response.headers.get('x-request-id') };
});

// a model whose provider speaks only chat completions: translated

await run('responses_translated', async () => {
    const { data, response } = await client.responses.create({
        model: 'test-basic', instructions: 'Be brief.', input: 'hello',
    }).withResponse();
    return { text: data.output_text, status: data.status, usage: data.usage,
             request_id: response.headers.get('x-request-id') };
});

await run('responses_translated_stream', async () => {
    const { data: stream, response } = await client.responses.create({
        model: 'test-basic', stream: true, input: 'hello',
    }).withResponse();
    let text = '', last = null;
    for await (const ev of stream) {
        if (ev.type === 'response.output_text.delta') text += ev.delta;
        last = ev;
    }
    return { text, last: last?.type, usage: last?.response?.usage ?? null,
             final_text: last?.response?.output?.[0]?.content?.[0]?.text,
             request_id: response.headers.get('x-request-id') };
});

await run('embeddings', async () => {
    // the SDK asks for base64 itself and decodes it into floats
    const { data, response } = await client.embeddings.create({
        model: 'test-embed', input: ['hello world', 'second'],
    }).withResponse();
    return { count: data.data.length,
             dims: data.data[0].embedding.length,
             floats: data.data[0].embedding.every((x) => typeof x === 'number'),
             usage: data.usage,
             request_id: response.headers.get('x-request-id') };
});

await run('embeddings_base64', async () => {
    // asked for explicitly, base64 comes back as the string
    const { data, response } = await client.embeddings.create({
        model: 'test-embed', input: 'hello', encoding_format: 'base64',
    }).withResponse();
    return { type: typeof data.data[0].embedding, usage: data.usage,
             request_id: response.headers.get('x-request-id') };
});

await run('retrieve', async () => client.models.retrieve('test-resp'));
await run('retrieve_slashed', async () =>
    client.models.retrieve('org/test-slashed'));
await run('retrieve_unknown', async () => client.models.retrieve('nope'));

await run('list', async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    return ids;
});

// --- the Vercel AI SDK, its default provider -------------------------------

const openai = createOpenAI({ baseURL: env.AIHUB_BASE_URL,
                              apiKey: env.AIHUB_KEY });

await run('ai_generate', async () => {
    const r = await generateText({ model: openai('test-resp'),
                                   prompt: 'hello', maxRetries: 0 });
    return { text: r.text, usage: r.usage,
             request_id: r.response.headers?.['x-request-id'] ?? null };
});

await run('ai_stream', async () => {
    const r = streamText({ model: openai('test-resp'), prompt: 'hello',
                           maxRetries: 0,
                           onError: ({ error }) => { throw error; } });
    let text = '';
    for await (const part of r.textStream) text += part;
    const usage = await r.usage;
    const response = await r.response;
    return { text, usage,
             request_id: response.headers?.['x-request-id'] ?? null };
});

await run('ai_generate_translated', async () => {
    const r = await generateText({ model: openai('test-basic'),
                                   system: 'Be brief.', prompt: 'hello',
                                   maxRetries: 0 });
    return { text: r.text, usage: r.usage,
             request_id: r.response.headers?.['x-request-id'] ?? null };
});

await run('ai_stream_translated', async () => {
    const r = streamText({ model: openai('test-basic'), prompt: 'hello',
                           maxRetries: 0,
                           onError: ({ error }) => { throw error; } });
    let text = '';
    for await (const part of r.textStream) text += part;
    const usage = await r.usage;
    const response = await r.response;
    return { text, usage,
             request_id: response.headers?.['x-request-id'] ?? null };
});

await run('ai_generate_refused', async () => {
    // an embedding model on the Responses API: the gateway's 400
    const r = await generateText({ model: openai('test-embed'),
                                   prompt: 'hello', maxRetries: 0 });
    return { text: r.text };
});

console.log(JSON.stringify(out));
