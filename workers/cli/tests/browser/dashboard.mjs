// Drive the operators' dashboard of a running `prism dev` in headless chromium.
//
//   PRISM_URL=http://127.0.0.1:8080 PRISM_TOKEN=… PRISM_IMAGE=loadtest/images/photo-640x480.jpg \
//   PRISM_SCREENSHOT=target/artifacts/dashboard.png node dashboard.mjs
//
// Asserts: the page loads with no console errors (or page errors, or failed requests), shows the
// three queues and the workers; then, with the page open, it uploads a batch (one image, one
// file that is not an image) through the API's presigned instructions, and waits for the
// page — without a reload — to show the image's thumbnail (loaded, non-zero size) and the
// failed file's reason. Saves a screenshot. Exits non-zero on any failure.
import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync } from 'node:fs';
import { basename, dirname } from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const base = env('PRISM_URL');
const token = env('PRISM_TOKEN');
const imagePath = env('PRISM_IMAGE');
const screenshot = env('PRISM_SCREENSHOT');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const QUEUES = ['resize', 'metadata', 'archive'];

async function createBatch(files) {
  const r = await fetch(`${base}/v1/batches`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      files: files.map((f) => ({ name: f.name, content_type: f.type, size: f.bytes.length })),
      variants: { widths: [160, 320], formats: ['webp'] },
    }),
  });
  if (r.status !== 201 && r.status !== 200) throw new Error(`create batch: ${r.status} ${await r.text()}`);
  return r.json();
}

// Follow one presigned instruction: a POST form (fields first, then the file) or a PUT.
async function upload(u, f) {
  let r;
  if (u.method === 'POST') {
    const form = new FormData();
    for (const [k, v] of Object.entries(u.fields || {})) form.append(k, v);
    form.append('file', new Blob([f.bytes], { type: f.type }), f.name);
    r = await fetch(u.url, { method: 'POST', body: form });
  } else {
    r = await fetch(u.url, { method: 'PUT', headers: u.headers || {}, body: f.bytes });
  }
  if (!r.ok) throw new Error(`upload ${f.name}: ${r.status} ${await r.text()}`);
}

const problems = [];
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
let ok = false;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));

  const resp = await page.goto(`${base}/`, { waitUntil: 'load' });
  if (!resp || resp.status() !== 200) throw new Error(`GET /: ${resp && resp.status()}`);
  for (const q of QUEUES) {
    await page.waitForSelector(`.queue[data-queue="${q}"]`, { timeout: 15000 });
  }
  await page.waitForSelector('#status[data-state="live"]', { timeout: 15000 });
  for (const w of ['resize', 'metadata', 'archiver']) {
    await page.waitForSelector(`#workers tr[data-worker="${w}"]`, { timeout: 15000 });
  }
  console.log(`page loaded; queues ${QUEUES.join(', ')} shown`);

  const files = [
    { name: basename(imagePath), type: imagePath.endsWith('.png') ? 'image/png' : 'image/jpeg', bytes: readFileSync(imagePath) },
    { name: 'not-an-image.jpg', type: 'image/jpeg', bytes: Buffer.from('<html>not an image</html>') },
  ];
  const batch = await createBatch(files);
  for (let i = 0; i < files.length; i++) await upload(batch.uploads[i], files[i]);
  const id = batch.batch_id;
  console.log(`uploaded batch ${id}`);

  // The page updates by itself: no reload from here on.
  const imgSel = `.batch[data-batch="${id}"] img[data-file="${batch.uploads[0].file_id}"]`;
  await page.waitForFunction(
    (s) => {
      const img = document.querySelector(s);
      return img && img.complete && img.naturalWidth > 0;
    },
    imgSel,
    { timeout: 60000 },
  );
  const size = await page.$eval(imgSel, (img) => [img.naturalWidth, img.naturalHeight]);
  console.log(`thumbnail loaded: ${size[0]}x${size[1]}`);
  await page.waitForSelector(`.batch[data-batch="${id}"][data-status="complete"]`, { timeout: 60000 });
  const reason = await page.$eval(`.batch[data-batch="${id}"] .reason`, (e) => e.textContent);
  if (!reason.includes('unsupported_format')) throw new Error(`failed file's reason: ${reason}`);
  console.log(`failed file's reason shown: ${reason}`);
  // One more poll with everything on the page, then the picture.
  await page.waitForTimeout(1200);
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`screenshot: ${screenshot}`);
  ok = true;
} catch (e) {
  problems.push(`failed: ${e.stack || e}`);
} finally {
  await browser.close();
}
if (problems.length || !ok) {
  for (const p of problems) console.error(p);
  process.exit(1);
}
console.log('dashboard browser test passed');
