// The HTML reference page of the developer API (./build.sh docs):
//
//   node page.mjs OPENAPI.json OUTDIR
//
// writes OUTDIR/index.html, with the document inlined, and
// OUTDIR/redoc.standalone.js, Redoc's standalone bundle from the pinned npm
// package. The page loads nothing else: no CDN, no fonts, no telemetry.
// It works served by nginx (/docs/) and opened as a file.
//
// The bundle's one network reference, the logo of its "API docs by
// Redocly" link (https://cdn.redoc.ly/redoc/logo-mini.svg), is replaced by
// an empty inline image; the link and its text stay. If another Redoc
// version no longer has exactly that one reference, this script fails.

import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const [specFile, outDir] = process.argv.slice(2);
if (!specFile || !outDir) {
    console.error('usage: node page.mjs OPENAPI.json OUTDIR');
    process.exit(2);
}

const require = createRequire(import.meta.url);
const redocDir = dirname(require.resolve('redoc/package.json'));
const redocVersion = JSON.parse(
    readFileSync(join(redocDir, 'package.json'), 'utf8')).version;

const spec = JSON.parse(readFileSync(specFile, 'utf8'));

// inside <script>: no "</script>", no "<!--"
const inline = (v) => JSON.stringify(v).replace(/</g, '\\u003c');

const escapeHtml = (s) => s.replace(/[&<>"]/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

const options = {
    expandResponses: '200,201',
    jsonSampleExpandLevel: 3,
    pathInMiddlePanel: true,
    sortRequiredPropsFirst: true,
    downloadFileName: 'openapi.json',
};

const title = `${spec.info.title} ${spec.info.version}`;

const html = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="aihub docs/page.mjs, Redoc ${redocVersion}">
<title>${escapeHtml(title)}</title>
<style>
  body { margin: 0; padding: 0; }
  noscript { display: block; padding: 2em; font-family: sans-serif; }
</style>
</head>
<body>
<noscript>This reference needs JavaScript. The document itself:
<a href="openapi.json">openapi.json</a>.</noscript>
<div id="redoc"></div>
<script src="redoc.standalone.js"></script>
<script>
Redoc.init(${inline(spec)}, ${inline(options)},
           document.getElementById('redoc'));
</script>
</body>
</html>
`;

const LOGO = 'https://cdn.redoc.ly/redoc/logo-mini.svg';
const EMPTY = 'data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg'
              + '%27 width=%271%27 height=%271%27/%3E';

const bundle = readFileSync(join(redocDir, 'bundles', 'redoc.standalone.js'),
                            'utf8');
const parts = bundle.split(LOGO);

if (parts.length !== 2) {
    console.error(`page.mjs: Redoc ${redocVersion}: expected the logo URL `
                  + `once in redoc.standalone.js, found it `
                  + `${parts.length - 1} times`);
    process.exit(1);
}

writeFileSync(join(outDir, 'index.html'), html);
writeFileSync(join(outDir, 'redoc.standalone.js'), parts.join(EMPTY));

console.log(`wrote ${join(outDir, 'index.html')} (Redoc ${redocVersion})`);
