// The prism API as a producer uses it: create a batch, follow the presigned instructions,
// long-poll the batch. Every request carries a `kind` tag (api | upload | wait) for thresholds
// and a fixed `name`, because presigned URLs and batch ids are unique per request.
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, TOKEN, WIDTHS, FORMATS, WAIT_SECS } from './config.js';

const auth = { authorization: `Bearer ${TOKEN}` };

// `POST /v1/batches` for `files` ({name, type, bytes}); returns the parsed answer or null.
export function createBatch(files) {
  const body = JSON.stringify({
    files: files.map((f) => ({ name: f.name, content_type: f.type, size: f.bytes.byteLength })),
    variants: { widths: WIDTHS, formats: FORMATS },
  });
  const res = http.post(`${BASE_URL}/v1/batches`, body, {
    headers: { ...auth, 'content-type': 'application/json' },
    tags: { kind: 'api', name: 'POST /v1/batches' },
  });
  const ok = check(res, {
    'batch created (201)': (r) => r.status === 201,
    'one upload per file': (r) => r.status === 201 && r.json('uploads').length === files.length,
  });
  return ok ? res.json() : null;
}

// Follow one presigned instruction: an S3-style POST form (every field, then the file last),
// or a PUT of the raw body with the given headers. Returns whether the store accepted it.
export function upload(instruction, file) {
  const params = { tags: { kind: 'upload', name: `${instruction.method} presigned upload` } };
  let res;
  if (instruction.method === 'POST') {
    const { body, contentType } = multipart(instruction.fields || {}, file);
    params.headers = { 'content-type': contentType };
    res = http.post(instruction.url, body, params);
  } else {
    params.headers = instruction.headers || {};
    res = http.put(instruction.url, file.bytes, params);
  }
  return check(res, { 'upload accepted (2xx)': (r) => r.status >= 200 && r.status < 300 });
}

// `GET /v1/batches/{id}?wait=N` until the batch is complete or `deadlineMs` passes; returns
// the last batch view (or null when none could be read).
export function waitComplete(batchId, deadlineMs) {
  let batch = null;
  while (Date.now() < deadlineMs) {
    const wait = Math.max(1, Math.min(WAIT_SECS, Math.ceil((deadlineMs - Date.now()) / 1000)));
    const res = http.get(`${BASE_URL}/v1/batches/${batchId}?wait=${wait}`, {
      headers: auth,
      tags: { kind: 'wait', name: 'GET /v1/batches/{id}?wait' },
      timeout: `${wait + 10}s`,
    });
    if (!check(res, { 'batch read (200)': (r) => r.status === 200 })) return batch;
    batch = res.json();
    if (batch.status === 'complete') return batch;
  }
  return batch;
}

// `GET /healthz`; throws when the stack does not answer, so a run against nothing fails fast.
export function healthCheck() {
  const res = http.get(`${BASE_URL}/healthz`, { tags: { kind: 'health', name: 'GET /healthz' } });
  if (res.status !== 200) {
    throw new Error(`${BASE_URL}/healthz answered ${res.status}: is the stack running?`);
  }
  if (!TOKEN) throw new Error('TOKEN is not set (prism dev: TOKEN=$(cat prism-data/dev-token))');
}

// A multipart/form-data body with `fields` first and the file last (S3 ignores fields after
// the file, and k6's own form encoding does not promise an order), as bytes.
function multipart(fields, file) {
  const boundary = `----prism-k6-${Math.random().toString(16).slice(2)}${Date.now()}`;
  const parts = [];
  for (const [k, v] of Object.entries(fields)) {
    parts.push(utf8(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  }
  parts.push(utf8(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${file.name}"\r\n` +
      `Content-Type: ${file.type}\r\n\r\n`,
  ));
  parts.push(new Uint8Array(file.bytes));
  parts.push(utf8(`\r\n--${boundary}--\r\n`));
  const len = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(len);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return { body: out.buffer, contentType: `multipart/form-data; boundary=${boundary}` };
}

function utf8(s) {
  const bytes = [];
  for (const ch of s) {
    let c = ch.codePointAt(0);
    if (c < 0x80) bytes.push(c);
    else if (c < 0x800) bytes.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) bytes.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else bytes.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(bytes);
}
