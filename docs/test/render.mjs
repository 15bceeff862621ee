// The rendering check of t/28_openapi.t: the HTML reference page, as the
// gateway serves it, in headless Chromium.
//
//   node render.mjs URL OPENAPI.json SCREENSHOT.png
//
// Loads URL with playwright-core driving /usr/bin/chromium (or $CHROMIUM),
// lets through only requests to URL's own origin (anything else is
// refused and reported: the page must work offline), and reports console
// errors, page errors, failed requests, and which of the document's paths
// and operation summaries the rendered text does not show.
//
// Prints one JSON line: {title, console_errors, page_errors,
// failed_requests, outside_requests, missing_paths, missing_summaries,
// operations, text_length}; exits 1 if any list is not empty.

import { chromium } from 'playwright-core';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, specFile, screenshot] = process.argv.slice(2);
if (!url || !specFile) {
    console.error('usage: node render.mjs URL OPENAPI.json [SCREENSHOT.png]');
    process.exit(2);
}

const spec = JSON.parse(readFileSync(specFile, 'utf8'));
const origin = new URL(url).origin;
const profile = mkdtempSync(join(tmpdir(), 'aihub-chromium-'));

const result = {
    title: null,
    console_errors: [],
    page_errors: [],
    failed_requests: [],
    outside_requests: [],
    missing_paths: [],
    missing_summaries: [],
    operations: 0,
    text_length: 0,
};

const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run',
           '--disable-background-networking', '--disable-component-update',
           '--disable-sync'],
    viewport: { width: 1400, height: 1000 },
});

try {
    const page = context.pages()[0] || await context.newPage();

    await page.route('**/*', (route) => {
        const u = route.request().url();
        if (u.startsWith(origin + '/') || u.startsWith('data:')
            || u.startsWith('blob:')) {
            return route.continue();
        }
        result.outside_requests.push(u);
        return route.abort();
    });

    page.on('console', (m) => {
        if (m.type() === 'error') {
            result.console_errors.push(m.text());
        }
    });
    page.on('pageerror', (e) => result.page_errors.push(String(e)));
    page.on('requestfailed', (r) => {
        if (!result.outside_requests.includes(r.url())) {
            result.failed_requests.push(`${r.url()}: ${r.failure()?.errorText}`);
        }
    });

    const resp = await page.goto(url, { waitUntil: 'load', timeout: 30000 });
    if (!resp || resp.status() !== 200) {
        result.page_errors.push(`GET ${url}: ${resp ? resp.status() : 'no answer'}`);
    }

    // Redoc renders (hydrates) after load; wait for its operations
    await page.waitForSelector('[data-section-id^="operation/"]',
                               { timeout: 20000 });
    await page.waitForLoadState('networkidle');

    result.title = await page.title();
    result.operations = await page.locator('[data-section-id^="operation/"]')
        .count();

    const text = await page.evaluate(() => document.body.innerText);
    result.text_length = text.length;

    for (const [path, item] of Object.entries(spec.paths)) {
        if (!text.includes(path)) {
            result.missing_paths.push(path);
        }
        for (const op of Object.values(item)) {
            if (op && op.summary && !text.includes(op.summary)) {
                result.missing_summaries.push(op.summary);
            }
        }
    }

    if (screenshot) {
        await page.screenshot({ path: screenshot });
    }
} catch (e) {
    result.page_errors.push(String(e));
} finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
}

console.log(JSON.stringify(result));

const bad = ['console_errors', 'page_errors', 'failed_requests',
             'outside_requests', 'missing_paths', 'missing_summaries']
    .some((k) => result[k].length);

process.exit(bad ? 1 : 0);
