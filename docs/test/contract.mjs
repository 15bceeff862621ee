// The contract check of t/28_openapi.t: every answer the test received from
// the gateway must be what docs/openapi.json says.
//
//   node contract.mjs OPENAPI.json EXCHANGES.json
//
// EXCHANGES.json is an array of
//   {name, method, path, status, headers: {lowercase name: value},
//    body, request_body (or null), check_request (bool)}
// For each one: the path and method name a documented operation, the
// status is documented for it, every required header is there, every
// documented header that is there matches its schema, no header of the
// gateway's own (x-request-id, x-ratelimit-*, retry-after, x-should-retry)
// is there undocumented, the content type is documented and
// the body validates against its schema (a text/event-stream body: each
// data event against the schema's $defs.event, ending with [DONE], or with
// an event when the schema says "x-stream-end": "event"); with
// check_request, the request body validates against the requestBody's.
// The validator is Ajv (JSON Schema 2020-12, the dialect of OpenAPI 3.1).
//
// Prints one JSON line per exchange, {name, ok, errors}, then a summary
// line {validated, failed}; exits 1 if any failed.

import { readFileSync } from 'node:fs';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const ROOT_ID = 'urn:aihub:openapi';
// the gateway's own headers; others (Cache-Control on a stream, say) may
// be the provider's, passed through
const OWN_HEADERS = /^(x-request-id|x-ratelimit-.*|retry-after|x-should-retry)$/;

const [specFile, exchangesFile] = process.argv.slice(2);
if (!specFile || !exchangesFile) {
    console.error('usage: node contract.mjs OPENAPI.json EXCHANGES.json');
    process.exit(2);
}

const spec = JSON.parse(readFileSync(specFile, 'utf8'));
const exchanges = JSON.parse(readFileSync(exchangesFile, 'utf8'));

const ajv = new Ajv2020({ allErrors: true, allowUnionTypes: true });
addFormats(ajv);

// component schemas become $defs of one schema; their references follow

function rewrite(node) {
    if (Array.isArray(node)) {
        return node.map(rewrite);
    }
    if (node === null || typeof node !== 'object') {
        return node;
    }
    const out = {};
    for (const [k, v] of Object.entries(node)) {
        if (k === '$ref' && typeof v === 'string'
            && v.startsWith('#/components/schemas/')) {
            out[k] = ROOT_ID + '#/$defs/'
                     + v.slice('#/components/schemas/'.length);
        } else {
            out[k] = rewrite(v);
        }
    }
    return out;
}

ajv.addSchema({ $id: ROOT_ID, $defs: rewrite(spec.components.schemas) });

const compiled = new Map();

function validator(schema) {
    const key = JSON.stringify(schema);
    if (!compiled.has(key)) {
        compiled.set(key, ajv.compile(rewrite(schema)));
    }
    return compiled.get(key);
}

function check(schema, value, what, errors) {
    const v = validator(schema);
    if (!v(value)) {
        for (const e of v.errors) {
            errors.push(`${what}${e.instancePath || ''}: ${e.message}`
                        + (e.params && Object.keys(e.params).length
                           ? ' ' + JSON.stringify(e.params) : ''));
        }
    }
}

// '#/components/kind/name' objects, followed

function deref(obj) {
    while (obj && obj.$ref) {
        const parts = obj.$ref.replace(/^#\//, '').split('/');
        obj = parts.reduce((o, p) => o && o[p], spec);
    }
    return obj;
}

function findOperation(method, path) {
    path = path.replace(/\?.*$/, '');
    for (const [tmpl, item] of Object.entries(spec.paths)) {
        const names = [];
        const re = new RegExp('^' + tmpl.replace(/[.*+?^$()|[\]\\]/g, '\\$&')
            .replace(/\{([^}]+)\}/g, (_, n) => { names.push(n); return '([^/]+)'; })
            + '$');
        const m = path.match(re);
        if (!m) {
            continue;
        }
        const op = item[method.toLowerCase()];
        const params = {};
        names.forEach((n, i) => { params[n] = decodeURIComponent(m[i + 1]); });
        return { tmpl, op, params, item };
    }
    return null;
}

function sseData(body) {
    const out = [];
    for (const block of body.split(/\r?\n\r?\n/)) {
        const data = block.split(/\r?\n/)
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.replace(/^data: ?/, ''));
        if (data.length) {
            out.push(data.join('\n'));
        }
    }
    return out;
}

function checkExchange(x) {
    const errors = [];
    const found = findOperation(x.method, x.path);

    if (!found) {
        return [`${x.path}: no such path in the document`];
    }
    if (!found.op) {
        return [`${x.method} ${found.tmpl}: no such operation in the document`];
    }

    const op = found.op;
    const where = `${x.method} ${found.tmpl} ${x.status}`;

    for (const p of (op.parameters || []).map(deref)) {
        if (p.in === 'path' && p.schema && found.params[p.name] !== undefined
            && x.expect_path_params_valid !== false) {
            check(p.schema, found.params[p.name], `path parameter ${p.name}`,
                  errors);
        }
    }

    if (x.check_request) {
        const rb = deref(op.requestBody);
        if (x.request_body !== null && x.request_body !== undefined) {
            const media = rb && rb.content && rb.content['application/json'];
            if (!media) {
                errors.push(`${where}: a request body is not documented`);
            } else {
                check(media.schema, JSON.parse(x.request_body),
                      'request body', errors);
            }
        } else if (rb && rb.required) {
            errors.push(`${where}: the request body is documented as required`);
        }
    }

    const responses = op.responses || {};
    const resp = deref(responses[String(x.status)]
                       || responses[String(x.status)[0] + 'XX']
                       || responses.default);

    if (!resp) {
        errors.push(`${where}: status not documented`);
        return errors;
    }

    const documented = {};
    for (const [name, h] of Object.entries(resp.headers || {})) {
        documented[name.toLowerCase()] = deref(h);
    }

    for (const [name, h] of Object.entries(documented)) {
        const value = x.headers[name];
        if (value === undefined) {
            if (h.required) {
                errors.push(`${where}: header ${name} missing`);
            }
            continue;
        }
        check(h.schema, value, `header ${name}`, errors);
    }

    for (const name of Object.keys(x.headers)) {
        if (OWN_HEADERS.test(name) && !documented[name]) {
            errors.push(`${where}: header ${name} sent but not documented`);
        }
    }

    const ctype = (x.headers['content-type'] || '').split(';')[0].trim()
                  .toLowerCase();
    const media = resp.content && resp.content[ctype];

    if (!media) {
        errors.push(`${where}: content type "${ctype}" not documented`);
        return errors;
    }

    if (ctype === 'application/json') {
        let json;
        try {
            json = JSON.parse(x.body);
        } catch (e) {
            errors.push(`${where}: body is not JSON: ${e.message}`);
            return errors;
        }
        check(media.schema, json, 'body', errors);

    } else if (ctype === 'text/event-stream') {
        const event = media.schema && media.schema.$defs
                      && media.schema.$defs.event;
        const data = sseData(x.body);
        if (!event) {
            errors.push(`${where}: no $defs.event schema for the stream`);
        }
        // chat completions end with [DONE]; a stream whose schema says
        // "x-stream-end": "event" (the Responses API) ends with an event
        const byEvent = media.schema && media.schema['x-stream-end'] === 'event';
        if (byEvent) {
            if (data.length < 1 || data.includes('[DONE]')) {
                errors.push(`${where}: the stream must end with an event, not [DONE]`);
            }
        } else if (data.length < 2 || data[data.length - 1] !== '[DONE]') {
            errors.push(`${where}: the stream does not end with [DONE]`);
        }
        (byEvent ? data : data.slice(0, -1)).forEach((d, i) => {
            let json;
            try {
                json = JSON.parse(d);
            } catch (e) {
                errors.push(`event ${i}: not JSON`);
                return;
            }
            if (event) {
                check(event, json, `event ${i}`, errors);
            }
        });
    }

    return errors;
}

let failed = 0;

for (const x of exchanges) {
    const errors = checkExchange(x);
    if (errors.length) {
        failed++;
    }
    console.log(JSON.stringify({ name: x.name, ok: errors.length === 0,
                                 errors }));
}

console.log(JSON.stringify({ validated: exchanges.length, failed }));
process.exit(failed ? 1 : 0);
