// Drive the uploader page of a running `prism dev` (`/upload`) in headless chromium.
//
//   PRISM_URL=http://127.0.0.1:8080 PRISM_TOKEN=… PRISM_IMAGES=a.jpg:b.png \
//   PRISM_SCREENSHOT=target/artifacts/uploader.png node uploader.mjs
//
// Opens `/upload#token=…` (the link prism dev prints), chooses the images in the page's file
// input once with each upload method (POST form, then PUT), and waits for every file to show
// done: its ThumbHash placeholder set, the variant loaded in a <picture>, the variant links and
// a `<picture>`/`srcset` snippet. No console errors, page errors or failed requests allowed.
// Saves a screenshot. Exits non-zero on any failure.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const base = env('PRISM_URL');
const token = env('PRISM_TOKEN');
const images = env('PRISM_IMAGES').split(':');
const screenshot = env('PRISM_SCREENSHOT');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const METHODS = (process.env.PRISM_METHODS || 'post,put').split(',');

const problems = [];
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
let ok = false;
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  await page.goto(`${base}/upload#token=${encodeURIComponent(token)}`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 10_000 });
  if (page.url().includes('token=')) throw new Error('the token stayed in the address bar');
  if (!(await page.locator('#token-row').isHidden())) throw new Error('the token field shows although the link carried one');

  for (const [i, method] of METHODS.entries()) {
    await page.selectOption('#method', method);
    await page.fill('#widths', '160,320');
    await page.setInputFiles('#files', images);
    const batch = page.locator('.batch').first();
    await page.waitForFunction((n) => document.querySelectorAll('.batch').length === n, i + 1);
    await batch.locator('.file').first().waitFor();
    // Complete, every file done with its variant loaded over the placeholder.
    await page.waitForFunction(() => {
      const b = document.querySelector('.batch');
      const files = [...b.querySelectorAll('article.file')];
      return files.length > 0 && files.every((f) => f.dataset.status === 'done'
        && f.querySelector('picture img.loaded')?.naturalWidth > 0);
    }, null, { timeout: 120_000 });
    const files = await batch.locator('article.file').evaluateAll((els) => els.map((f) => ({
      placeholder: f.querySelector('.frame').dataset.placeholder,
      background: f.querySelector('.frame').style.backgroundImage,
      sources: [...f.querySelectorAll('picture source')].map((s) => s.type),
      img: f.querySelector('picture img').currentSrc,
      links: f.querySelectorAll('.variants a').length,
      snippet: f.querySelector('.snippet textarea').value,
    })));
    if (files.length !== images.length) throw new Error(`${method}: ${files.length} files shown, expected ${images.length}`);
    for (const f of files) {
      if (f.placeholder !== 'thumbhash' || !f.background.includes('data:image/png')) {
        throw new Error(`${method}: no ThumbHash placeholder: ${JSON.stringify(f)}`);
      }
      if (!f.sources.includes('image/avif')) throw new Error(`${method}: no AVIF <source>: ${JSON.stringify(f)}`);
      // Two formats; 320w only where the source is wider than 320 px (prism never upscales).
      if (f.links < 2 || f.links % 2) throw new Error(`${method}: expected a link per variant, both formats: ${JSON.stringify(f)}`);
      if (!/^<picture>\n\s+<source type="image\/avif" srcset="[^"]+ 160w[,"]/.test(f.snippet)
        || !/<img src="[^"]+" srcset="[^"]+ 160w[,"][^>]* width="\d+" height="\d+" alt="[^"]+"/.test(f.snippet)) {
        throw new Error(`${method}: unexpected snippet:\n${f.snippet}`);
      }
    }
    console.log(`${method}: ${files.length} files done, variants loaded, snippet ok`);
  }
  // The snippet is copyable.
  await browser.contexts()[0].grantPermissions?.(['clipboard-read', 'clipboard-write']).catch(() => {});
  await page.locator('.snippet button').first().click();
  await page.waitForFunction(() => document.querySelector('.snippet button').textContent === 'copied');

  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  if (problems.length) throw new Error(`browser problems:\n${problems.join('\n')}`);
  ok = true;
} catch (e) {
  console.error(e.stack || String(e));
  if (problems.length) console.error(problems.join('\n'));
} finally {
  await browser.close();
}
process.exit(ok ? 0 : 1);
