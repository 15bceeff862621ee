// An HTTP/2 client for t/82 (Node's own http2 module, cleartext with prior
// knowledge, as nginx's "listen ... http2" without TLS speaks it): runs
// the requests of a JSON spec concurrently as streams of ONE connection
// and prints one JSON line of results.
//
//   node t/node/h2_client.mjs '{"port":N,"requests":[R, ...]}'
//
// R: {"method":"POST","path":"/v1/chat/completions","headers":{...},
//     "body":["part", ...],      each part its own DATA frame (the last
//                                ends the stream); no content-length
//                                unless given in headers
//     "gap_ms":N,                a pause before each part after the first
//     "reset_after_bytes":N,     cancel the stream (RST_STREAM CANCEL)
//                                once N bytes of the answer arrived
//     "reset_after_ms":N}        ... or N ms after the request was sent
//
// A result: {"status":N,"headers":{...},"body":"...","reset":bool,
//            "error":"..."}

import http2 from 'node:http2';

const spec = JSON.parse(process.argv[2]);
const session = http2.connect(`http://127.0.0.1:${spec.port}`);
session.on('error', () => {});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function one(req) {
    return new Promise((resolve) => {
        const res = { status: 0, headers: {}, body: '', reset: false };
        const headers = {
            ':method': req.method || 'POST',
            ':path': req.path || '/v1/chat/completions',
            ...(req.headers || {}),
        };
        const parts = req.body || [];
        const stream = session.request(headers, { endStream: parts.length === 0 });
        let got = 0;
        let done = false;
        const finish = () => {
            if (!done) {
                done = true;
                resolve(res);
            }
        };
        const cancel = () => {
            if (!done && !stream.destroyed) {
                res.reset = true;
                stream.close(http2.constants.NGHTTP2_CANCEL);
            }
        };

        stream.setEncoding('utf8');
        stream.on('response', (h) => {
            res.status = h[':status'];
            for (const [k, v] of Object.entries(h)) {
                if (!k.startsWith(':')) {
                    res.headers[k] = v;
                }
            }
        });
        stream.on('data', (chunk) => {
            res.body += chunk;
            got += Buffer.byteLength(chunk);
            if (req.reset_after_bytes !== undefined && got >= req.reset_after_bytes) {
                cancel();
            }
        });
        stream.on('error', (e) => { res.error = String(e.code || e); });
        stream.on('close', finish);

        if (req.reset_after_ms !== undefined) {
            setTimeout(cancel, req.reset_after_ms);
        }

        (async () => {
            for (let i = 0; i < parts.length; i++) {
                if (i > 0 && req.gap_ms) {
                    await sleep(req.gap_ms);
                }
                if (stream.destroyed) {
                    return;
                }
                if (i === parts.length - 1) {
                    stream.end(parts[i]);
                } else {
                    stream.write(parts[i]);
                }
            }
        })();
    });
}

const timer = setTimeout(() => {
    process.stdout.write(JSON.stringify({ error: 'timeout' }) + '\n');
    process.exit(1);
}, (spec.timeout_s || 20) * 1000);

const results = await Promise.all(spec.requests.map(one));
clearTimeout(timer);
process.stdout.write(JSON.stringify({ results }) + '\n');
session.close();
