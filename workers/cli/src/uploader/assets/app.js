// The reference browser integration: drop images, create one batch through the API, upload each
// file straight to storage by its presigned instructions (POST form or PUT) with progress, then
// long-poll the batch and show each result: the ThumbHash placeholder until the variant has
// loaded, the variants, and a `<picture>` snippet to copy. No libraries beyond the vendored
// ThumbHash decoder; every request goes to this origin or to the upload URLs the API returns.
//
// The bearer token comes from the URL fragment (`/upload#token=…`, which `prism dev` prints; a
// fragment is never sent to a server) or the token field, and is kept in sessionStorage.
import { thumbHashToDataURL } from '/upload/thumbhash.js';

const $ = (id) => document.getElementById(id);
const UPLOADS_IN_FLIGHT = 4;
const WAIT_SECS = 20;
const TOKEN_KEY = 'prism-token';

// Extensions for files the browser gives no type (HEIC on most desktops, some TIFFs).
const EXT_TYPES = {
  jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', gif: 'image/gif', webp: 'image/webp',
  avif: 'image/avif', heic: 'image/heic', heif: 'image/heif', tif: 'image/tiff', tiff: 'image/tiff',
  bmp: 'image/bmp', jxl: 'image/jxl', svg: 'image/svg+xml',
};

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

// --- token -------------------------------------------------------------------------------
function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
}
const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

// --- API ---------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, init = {}) {
  const headers = { authorization: `Bearer ${token()}` };
  if (init.body) headers['content-type'] = 'application/json';
  const r = await fetch(path, { ...init, headers });
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!r.ok) {
    throw new ApiError(r.status, body?.error?.code || `http_${r.status}`,
      body?.error?.message || `${r.status} ${r.statusText}`);
  }
  return body;
}

function contentType(file) {
  if (file.type.startsWith('image/')) return file.type;
  const ext = file.name.includes('.') ? file.name.split('.').pop().toLowerCase() : '';
  return EXT_TYPES[ext] || file.type || 'application/octet-stream';
}

// Follow one presigned instruction with XMLHttpRequest (fetch has no upload progress).
function send(u, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(u.method, u.url);
    let body;
    if (u.method === 'POST') {
      body = new FormData();
      for (const [k, v] of Object.entries(u.fields || {})) body.append(k, v);
      body.append('file', file);
    } else {
      for (const [k, v] of Object.entries(u.headers || {})) xhr.setRequestHeader(k, v);
      body = file;
    }
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve();
      let code = `http_${xhr.status}`;
      let message = xhr.statusText;
      try {
        const b = JSON.parse(xhr.responseText);
        code = b.error?.code || code;
        message = b.error?.message || message;
      } catch {
        const m = /<Code>([^<]*)<\/Code>[\s\S]*?<Message>([^<]*)<\/Message>/.exec(xhr.responseText);
        if (m) [, code, message] = m;
      }
      reject(new ApiError(xhr.status, code, message));
    };
    xhr.onerror = () => reject(new ApiError(0, 'network_error',
      'the upload did not reach storage (is this page\'s origin allowed? see --cors-origin)'));
    xhr.send(body);
  });
}

// --- rendering ---------------------------------------------------------------------------
const escapeAttr = (s) => String(s).replace(/&/g, '&amp;').replace(/"/g, '&quot;')
  .replace(/</g, '&lt;').replace(/>/g, '&gt;');
const MIME = { webp: 'image/webp', avif: 'image/avif', jpeg: 'image/jpeg', png: 'image/png' };
const mime = (v) => v.content_type || MIME[v.format] || `image/${v.format}`;
const kb = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`);

function base64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// Variants grouped by format, widths ascending; AVIF first (the browser takes the first
// `<source>` it supports).
function byFormat(variants) {
  const groups = new Map();
  for (const v of [...variants].sort((a, b) => a.width - b.width)) {
    if (!groups.has(v.format)) groups.set(v.format, []);
    groups.get(v.format).push(v);
  }
  const order = ['avif', 'webp', 'jpeg', 'png'];
  return [...groups.entries()].sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]));
}
const srcset = (vs) => vs.map((v) => `${v.url} ${v.width}w`).join(', ');

// The markup an app would put in its page for this file.
function snippet(f) {
  const groups = byFormat(f.variants);
  const fallback = groups[groups.length - 1][1];
  const largest = fallback[fallback.length - 1];
  const sizes = `(max-width: ${largest.width}px) 100vw, ${largest.width}px`;
  const lines = ['<picture>'];
  for (const [, vs] of groups.slice(0, -1)) {
    lines.push(`  <source type="${mime(vs[0])}" srcset="${escapeAttr(srcset(vs))}" sizes="${sizes}">`);
  }
  const style = f.dominant_color ? ` style="background:${escapeAttr(f.dominant_color)}"` : '';
  lines.push(`  <img src="${escapeAttr(largest.url)}" srcset="${escapeAttr(srcset(fallback))}" sizes="${sizes}"`
    + ` width="${largest.width}" height="${largest.height}" alt="${escapeAttr(f.name)}" loading="lazy" decoding="async"${style}>`);
  lines.push('</picture>');
  return lines.join('\n');
}

function picture(f) {
  const groups = byFormat(f.variants);
  const fallback = groups[groups.length - 1][1];
  const pic = el('picture');
  for (const [, vs] of groups.slice(0, -1)) {
    pic.append(el('source', { type: mime(vs[0]), srcset: srcset(vs), sizes: '240px' }));
  }
  const img = el('img', {
    src: fallback[fallback.length - 1].url, srcset: srcset(fallback), sizes: '240px', alt: f.name,
    'data-file': f.file_id, decoding: 'async',
  });
  img.addEventListener('load', () => img.classList.add('loaded'));
  pic.append(img);
  return pic;
}

class FileCard {
  constructor(file, fileId) {
    this.file = file;
    this.fileId = fileId;
    this.local = URL.createObjectURL(file);
    this.frame = el('div', { class: 'frame' },
      el('img', { class: 'local loaded', src: this.local, alt: '' }));
    this.state = el('span', { class: 'state', text: 'waiting' });
    this.frame.append(this.state);
    this.progress = el('progress', { max: '1', value: '0' });
    this.line = el('div', { class: 'line', text: `${contentType(file)} · ${kb(file.size)}` });
    this.badge = el('span', { class: 'badge', text: 'uploading' });
    this.body = el('div', { class: 'meta' },
      el('h3', { text: file.name }), el('div', {}, this.badge), this.line, this.progress);
    this.root = el('article', { class: 'file', 'data-file': fileId || '', 'data-status': 'uploading' },
      this.frame, this.body);
    this.settled = false;
  }

  status(s, text) {
    this.root.dataset.status = s;
    this.badge.className = `badge ${s}`;
    this.badge.textContent = text || s.replace('_', ' ');
  }

  uploaded() {
    this.progress.value = 1;
    this.state.textContent = 'rendering…';
    this.status('received', 'uploaded · rendering');
  }

  fail(code, message) {
    this.settled = true;
    this.progress.remove();
    this.state.textContent = 'failed';
    this.status('failed');
    this.body.append(el('div', { class: 'error', text: `${code}: ${message}` }));
  }

  update(f) {
    if (this.settled) return;
    if (f.status === 'failed') return this.fail(f.error?.code || 'failed', f.error?.message || '');
    if (f.status === 'expired') {
      this.settled = true;
      return this.status('expired');
    }
    if (f.status !== 'done') return;
    this.settled = true;
    this.progress.remove();
    this.state.remove();
    URL.revokeObjectURL(this.local);
    this.frame.replaceChildren();
    // The placeholder shows until the variant has loaded over it.
    if (f.placeholder) {
      try {
        this.frame.style.backgroundImage = `url("${thumbHashToDataURL(base64ToBytes(f.placeholder))}")`;
        this.frame.dataset.placeholder = 'thumbhash';
      } catch { /* an unreadable placeholder just isn't shown */ }
    }
    if (f.dominant_color) this.frame.style.backgroundColor = f.dominant_color;
    if (!f.variants?.length) {
      this.status('done');
      return;
    }
    this.frame.append(picture(f));
    this.status('done');
    const src = f.source ? `${f.source.width}×${f.source.height} ${f.source.format || ''}`.trim() : '';
    this.line.textContent = [contentType(this.file), kb(this.file.size), src && `source ${src}`]
      .filter(Boolean).join(' · ');
    const links = el('div', { class: 'variants' });
    for (const [, vs] of byFormat(f.variants)) {
      for (const v of vs) {
        links.append(el('a', { href: v.url, target: '_blank', rel: 'noopener',
          text: `${v.width}w ${v.format} ${kb(v.bytes)}` }));
      }
    }
    const code = el('textarea', { readonly: '', spellcheck: 'false', 'aria-label': 'picture markup' });
    code.value = snippet(f);
    const copy = el('button', { type: 'button', text: 'copy' });
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(code.value);
      } catch {
        code.select();
        document.execCommand('copy');
      }
      copy.textContent = 'copied';
      setTimeout(() => { copy.textContent = 'copy'; }, 1500);
    });
    this.body.append(links, el('div', { class: 'snippet' }, code, copy));
  }
}

// --- the flow ----------------------------------------------------------------------------
function problem(message) {
  const p = $('problem');
  p.textContent = message;
  p.hidden = !message;
}

function settings() {
  const widths = $('widths').value.split(/[\s,]+/).filter(Boolean).map(Number);
  const formats = ['avif', 'webp'].filter((f) => $(`fmt-${f}`).checked);
  return { widths, formats, method: $('method').value };
}

async function pool(items, limit, fn) {
  let next = 0;
  const worker = async () => { while (next < items.length) { const i = next++; await fn(items[i], i); } };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

async function run(files) {
  problem('');
  if (!token()) {
    $('token-row').hidden = false;
    problem('Paste the bearer token first (prism dev prints a link with it, or see prism-data/dev-token).');
    return;
  }
  const { widths, formats, method } = settings();
  let batch;
  try {
    batch = await api('/v1/batches', {
      method: 'POST',
      body: JSON.stringify({
        files: files.map((f) => ({ name: f.name, content_type: contentType(f), size: f.size })),
        variants: { widths, formats },
        upload_method: method,
      }),
    });
  } catch (e) {
    if (e.status === 401) $('token-row').hidden = false;
    problem(`The batch was refused: ${e.code}: ${e.message}`);
    return;
  }
  const cards = files.map((f, i) => new FileCard(f, batch.uploads[i].file_id));
  const section = el('div', { class: 'batch', 'data-batch': batch.batch_id, 'data-status': 'pending' },
    el('h2', {}, 'batch ', el('code', { text: batch.batch_id })), ...cards.map((c) => c.root));
  $('batches').prepend(section);

  await pool(batch.uploads, UPLOADS_IN_FLIGHT, async (u, i) => {
    const card = cards[i];
    card.state.textContent = 'uploading…';
    try {
      await send(u, files[i], (p) => { card.progress.value = p; });
      card.uploaded();
    } catch (e) {
      card.fail(e.code, e.message);
    }
  });

  const byId = new Map(cards.map((c) => [c.fileId, c]));
  for (;;) {
    let view;
    try {
      view = await api(`/v1/batches/${encodeURIComponent(batch.batch_id)}?wait=${WAIT_SECS}`);
    } catch (e) {
      if (e.status === 429 || e.status === 503 || e.status === 0) {
        await new Promise((r) => setTimeout(r, 2000));
        continue;
      }
      problem(`Reading the batch failed: ${e.code}: ${e.message}`);
      return;
    }
    for (const f of view.files) byId.get(f.file_id)?.update(f);
    section.dataset.status = view.status;
    if (view.status === 'complete' || cards.every((c) => c.settled)) break;
  }
}

function init() {
  takeTokenFromFragment();
  $('token-row').hidden = Boolean(token());
  $('token').addEventListener('change', (e) => sessionStorage.setItem(TOKEN_KEY, e.target.value.trim()));
  const drop = $('drop');
  const take = (list) => {
    const files = [...list];
    if (files.length) run(files);
  };
  $('files').addEventListener('change', (e) => { take(e.target.files); e.target.value = ''; });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    take(e.dataTransfer.files);
  });
  document.body.dataset.ready = 'true';
}

init();
