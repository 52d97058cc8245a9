// Upload to a running `prism dev` with Uppy's AwsS3 plugin from a page on another origin, in
// headless chromium: the way a web app integrates prism.
//
//   PRISM_URL=http://127.0.0.1:8080 PRISM_TOKEN=… PRISM_IMAGES=a.jpg:b.png PAGE_PORT=8899 node uppy.mjs
//
// Serves a page (and Uppy's own browser bundle from node_modules) on PAGE_PORT. prism must list
// `http://localhost:PAGE_PORT` in `[http] cors_allowed_origins` and must not list
// `http://127.0.0.1:PAGE_PORT`, a third origin serving the same page.
//
// From the listed origin, for each upload method (POST form, then PUT): create a batch with
// fetch, hand the files to Uppy with `AwsS3 { shouldUseMultipart: false, getUploadParameters }`
// returning prism's instructions `{method, url, fields, headers}` unchanged, `uppy.upload()`,
// then long-poll the batch until it is complete with every file done. Uppy must report every
// upload successful and log no error (it logs one when it cannot read the response's ETag or,
// for POST, its Location). From the unlisted origin, the browser must refuse the API call.
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const api = env('PRISM_URL');
const token = env('PRISM_TOKEN');
const images = env('PRISM_IMAGES').split(':');
const port = Number(env('PAGE_PORT'));
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const dist = new URL('./node_modules/uppy/dist/', import.meta.url);

const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>uppy → prism</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="/uppy.min.css"></head><body>
<script type="module">
import { Uppy, AwsS3 } from '/uppy.min.mjs';

// What an app does: ask its backend (here prism's API directly) for a batch, then let Uppy
// upload each file by the instructions prism returned for it.
window.uploadWithUppy = async (api, token, method, files) => {
  const r = await fetch(api + '/v1/batches', {
    method: 'POST',
    headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
    body: JSON.stringify({
      files: files.map((f) => ({ name: f.name, content_type: f.type, size: atob(f.b64).length })),
      variants: { widths: [160, 320], formats: ['webp'] },
      upload_method: method,
    }),
  });
  if (r.status !== 201) throw new Error('create batch: ' + r.status + ' ' + await r.text());
  const batch = await r.json();
  const byName = new Map(batch.uploads.map((u) => [u.name, u]));
  const uppy = new Uppy({ autoProceed: false });
  uppy.use(AwsS3, {
    shouldUseMultipart: false,
    getUploadParameters(file) {
      const u = byName.get(file.name);
      return { method: u.method, url: u.url, fields: u.fields, headers: u.headers };
    },
  });
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
    uppy.addFile({ name: f.name, type: f.type, data: new Blob([bytes], { type: f.type }) });
  }
  const result = await uppy.upload();
  const etags = result.successful.map((f) => f.response?.body?.ETag ?? f.response?.body?.etag ?? null);
  let view;
  for (let i = 0; i < 30; i++) {
    const g = await fetch(api + '/v1/batches/' + batch.batch_id + '?wait=10',
      { headers: { authorization: 'Bearer ' + token } });
    view = await g.json();
    if (view.status === 'complete') break;
  }
  return {
    successful: result.successful.length,
    failed: result.failed.map((f) => String(f.error)),
    etags,
    status: view.status,
    files: view.files.map((f) => ({ name: f.name, status: f.status, variants: f.variants.length, error: f.error })),
  };
};

window.tryCreateBatch = async (api, token) => {
  try {
    const r = await fetch(api + '/v1/batches', {
      method: 'POST',
      headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
      body: JSON.stringify({ files: [{ name: 'a.jpg', content_type: 'image/jpeg', size: 1 }],
        variants: { widths: [160], formats: ['webp'] } }),
    });
    return 'answered ' + r.status;
  } catch (e) {
    return 'refused: ' + e.message;
  }
};
document.body.dataset.ready = 'true';
</script></body></html>`;

const server = createServer((req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  const files = { '/uppy.min.mjs': 'text/javascript', '/uppy.min.css': 'text/css' };
  if (path === '/') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  } else if (files[path]) {
    res.writeHead(200, { 'content-type': files[path] });
    res.end(readFileSync(new URL(`.${path}`, dist)));
  } else {
    res.writeHead(404);
    res.end();
  }
});
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));

const files = images.map((p) => ({
  name: basename(p),
  type: p.endsWith('.png') ? 'image/png' : 'image/jpeg',
  b64: readFileSync(p).toString('base64'),
}));

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
let ok = false;
try {
  const problems = [];
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  await page.goto(`http://localhost:${port}/`);
  await page.waitForSelector('body[data-ready="true"]', { state: 'attached', timeout: 10_000 });
  for (const method of ['post', 'put']) {
    // Without a readable ETag, Uppy's upload never settles: bound the wait.
    const r = await Promise.race([
      page.evaluate(([a, t, m, f]) => window.uploadWithUppy(a, t, m, f), [api, token, method, files]),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`${method}: Uppy's upload did not settle within 90 s (${problems.join('; ')})`)), 90_000)),
    ]);
    console.log(`${method}: ${JSON.stringify(r)}`);
    if (r.successful !== files.length || r.failed.length) throw new Error(`${method}: Uppy did not upload every file`);
    if (r.etags.some((e) => !e)) throw new Error(`${method}: Uppy could not read an ETag`);
    if (r.status !== 'complete' || r.files.some((f) => f.status !== 'done' || f.variants !== 2)) {
      throw new Error(`${method}: the batch did not complete with every file done`);
    }
  }
  if (problems.length) throw new Error(`problems on the listed origin:\n${problems.join('\n')}`);

  // The same page from an origin prism does not list: the browser refuses the API call.
  const rogue = await browser.newPage();
  await rogue.goto(`http://127.0.0.1:${port}/`);
  await rogue.waitForSelector('body[data-ready="true"]', { state: 'attached', timeout: 10_000 });
  const verdict = await rogue.evaluate(([a, t]) => window.tryCreateBatch(a, t), [api, token]);
  console.log(`unlisted origin: ${verdict}`);
  if (!verdict.startsWith('refused')) throw new Error(`an unlisted origin was not refused: ${verdict}`);
  ok = true;
} catch (e) {
  console.error(e.stack || String(e));
} finally {
  await browser.close();
  server.close();
}
process.exit(ok ? 0 : 1);
