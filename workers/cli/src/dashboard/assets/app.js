// The operators' view: poll /dashboard/api/state every second and render it. Plain DOM and
// SVG, no libraries; every network request goes to this origin (thumbnails: their presigned
// URLs).
'use strict';

const POLL_MS = 1000;
const SVG_NS = 'http' + '://www.w3.org/2000/svg';
const SERIES = [
  ['visible', 'var(--visible)'],
  ['in_flight', 'var(--inflight)'],
  ['dlq', 'var(--dlq)'],
];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function fmtSecs(s) {
  if (s === null || s === undefined) return '—';
  if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 1 : 0) + ' ms';
  if (s < 120) return s.toFixed(1) + ' s';
  return (s / 60).toFixed(1) + ' min';
}

function fmtNum(n) {
  if (n === null || n === undefined) return '—';
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

// A line graph of several series over shared x values, as an SVG of fixed viewBox.
function graph(cls, xs, series, w, h) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('class', cls);
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  if (xs.length < 2) return svg;
  const x0 = xs[0], x1 = xs[xs.length - 1];
  let max = 1;
  for (const s of series) for (const v of s.values) if (v > max) max = v;
  for (const s of series) {
    const pts = s.values.map((v, i) =>
      `${(((xs[i] - x0) / (x1 - x0 || 1)) * w).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`);
    const line = document.createElementNS(SVG_NS, 'polyline');
    line.setAttribute('points', pts.join(' '));
    line.setAttribute('fill', 'none');
    line.setAttribute('stroke', s.color);
    line.setAttribute('stroke-width', '1.5');
    line.setAttribute('vector-effect', 'non-scaling-stroke');
    svg.append(line);
  }
  if (h < 40) return svg; // sparklines: no scale label
  const label = document.createElementNS(SVG_NS, 'text');
  label.setAttribute('x', '3');
  label.setAttribute('y', '10');
  label.setAttribute('font-size', '9');
  label.setAttribute('fill', '#6b7485');
  label.textContent = `max ${fmtNum(max)}`;
  svg.append(label);
  return svg;
}

function renderQueues(queues) {
  const root = document.getElementById('queues');
  root.replaceChildren(...queues.map((q) => {
    const figures = el('div', { class: 'figures' },
      ...[['visible', q.visible], ['in flight', q.in_flight], ['DLQ', q.dlq]].map(([k, v]) =>
        el('div', { 'data-figure': k }, el('b', { text: fmtNum(v) }), el('span', { text: k }))),
      el('div', { 'data-figure': 'oldest' }, el('b', { text: fmtSecs(q.oldest_age_secs) }), el('span', { text: 'oldest' })));
    const xs = q.history.map((p) => p.t);
    const g = graph('graph', xs, SERIES.map(([k, color]) => ({ color, values: q.history.map((p) => p[k]) })), 300, 60);
    const legend = el('div', { class: 'legend' });
    for (const [k, color] of SERIES) {
      const i = el('i'); i.style.background = color; legend.append(i, k.replace('_', ' '));
    }
    const card = el('div', { class: 'card queue', 'data-queue': q.name }, el('h3', { text: q.name }), figures, g, legend);
    if (q.error) card.append(el('div', { class: 'error', text: q.error }));
    return card;
  }));
}

function renderWorkers(workers, windowSecs) {
  document.getElementById('window').textContent = `(throughput and latency over the last ${windowSecs} s)`;
  const body = document.querySelector('#workers tbody');
  body.replaceChildren(...workers.map((w) => {
    const xs = w.throughput_history.map((p) => p[0]);
    const spark = graph('spark', xs, [{ color: 'var(--ok)', values: w.throughput_history.map((p) => p[1]) }], 120, 24);
    const outcomes = Object.entries(w.outcomes).map(([k, v]) => `${k} ${fmtNum(v)}`).join(', ') || '—';
    const errors = Object.entries(w.errors).map(([k, v]) => `${k} ${fmtNum(v)}`).join(', ') || 'none';
    return el('tr', { 'data-worker': w.name },
      el('td', { text: w.name }),
      el('td', { class: 'num', text: `${w.throughput_per_sec.toFixed(2)} /s` }),
      el('td', {}, spark),
      el('td', { class: 'num', text: fmtSecs(w.p50_secs) }),
      el('td', { class: 'num', text: fmtSecs(w.p95_secs) }),
      el('td', { class: 'num', text: fmtNum(w.inflight) }),
      el('td', { text: outcomes }),
      el('td', { class: Object.keys(w.errors).length ? 'error' : '', text: errors }));
  }));
}

// Thumbnails keep their <img> across polls (their presigned URL changes on every poll, the
// media key does not), so images load once and do not flicker.
const thumbs = new Map();

function thumbnail(f) {
  if (f.thumbnail_key && f.thumbnail_url) {
    let img = thumbs.get(f.thumbnail_key);
    if (!img) {
      img = el('img', { alt: f.name, src: f.thumbnail_url, 'data-key': f.thumbnail_key, 'data-file': f.file_id });
      thumbs.set(f.thumbnail_key, img);
    }
    return img;
  }
  if (f.status === 'failed') return el('span', { class: 'error', text: f.error_code || 'failed' });
  return el('span', { text: f.thumbnail_error || f.status.replace('_', ' ') });
}

function renderBatches(batches, error) {
  const err = document.getElementById('batches-error');
  err.hidden = !error;
  err.textContent = error || '';
  const root = document.getElementById('batches');
  if (!batches.length) {
    root.replaceChildren(el('p', { class: 'legend', text: 'No batches yet. Try `prism upload photo.jpg`.' }));
    return;
  }
  const seen = new Set();
  root.replaceChildren(...batches.map((b) => {
    const created = new Date(b.created_at * 1000).toLocaleTimeString();
    const took = b.completed_at ? ` · complete in ${fmtSecs(b.completed_at - b.created_at)}` : '';
    const head = el('div', { class: 'head' },
      el('code', { text: b.batch_id }),
      el('span', { class: `badge ${b.status}`, text: b.status }),
      el('span', { class: 'legend', text: `${created} · ${b.files_total} files · ${b.done} done · ${b.failed} failed${took}` }));
    const files = el('div', { class: 'files' }, ...b.files.map((f) => {
      if (f.thumbnail_key) seen.add(f.thumbnail_key);
      const card = el('div', { class: `file ${f.status}`, 'data-file': f.file_id },
        el('div', { class: 'thumb' }, thumbnail(f)),
        el('div', { class: 'name', title: f.name, text: f.name }),
        el('span', { class: `badge ${f.status}`, text: f.status.replace('_', ' ') }));
      if (f.variants) card.append(` ${f.variants} variants`);
      if (f.error_message) card.append(el('div', { class: 'error reason', text: `${f.error_code}: ${f.error_message}` }));
      return card;
    }));
    return el('div', { class: 'batch', 'data-batch': b.batch_id, 'data-status': b.status }, head, files);
  }));
  for (const k of [...thumbs.keys()]) if (!seen.has(k)) thumbs.delete(k);
}

function setStatus(state, text) {
  const s = document.getElementById('status');
  s.dataset.state = state;
  s.textContent = text;
}

async function poll() {
  try {
    const r = await fetch('/dashboard/api/state', { cache: 'no-store' });
    if (!r.ok) throw new Error(`state: HTTP ${r.status}`);
    const s = await r.json();
    renderQueues(s.queues);
    renderWorkers(s.workers, s.window_secs);
    renderBatches(s.batches, s.batches_error);
    setStatus('live', `live · ${new Date(s.generated_at * 1000).toLocaleTimeString()}`);
  } catch (e) {
    // The stack stopped or restarted: say so, keep polling.
    setStatus('error', `disconnected (${e.message})`);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
