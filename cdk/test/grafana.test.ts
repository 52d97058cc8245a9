/**
 * The Grafana dashboard (grafana/prism-dashboard.json) for the binaries' Prometheus metrics:
 * well-formed, and querying only metrics and labels the Rust side exports
 * (shared/src/telemetry/metrics.rs is the single definition of every name).
 */
import * as fs from 'fs';
import * as path from 'path';
import { REPO_ROOT } from './helpers';

const dashboard = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'grafana', 'prism-dashboard.json'), 'utf8'));
const panels = (dashboard.panels as Record<string, any>[]).filter((p) => p.type !== 'row');
const exprs: string[] = panels.flatMap((p) => (p.targets as { expr: string }[]).map((t) => t.expr));

/** Metric names defined as `pub const X: &str = "prism_…";` in the shared crate. */
function exportedMetrics(): Set<string> {
  const source = fs.readFileSync(path.join(REPO_ROOT, 'shared', 'src', 'telemetry', 'metrics.rs'), 'utf8');
  return new Set([...source.matchAll(/pub const [A-Z_]+: &str = "(prism_[a-z0-9_]+)";/g)].map((m) => m[1]));
}

test('panels have unique ids, a Prometheus datasource variable, and queries', () => {
  const ids = (dashboard.panels as { id: number }[]).map((p) => p.id);
  expect(new Set(ids).size).toBe(ids.length);
  expect(panels.length).toBeGreaterThan(10);
  for (const p of panels) {
    expect(p.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
    expect(p.targets.length).toBeGreaterThan(0);
    for (const t of p.targets) expect(t.refId).toMatch(/^[A-Z]$/);
  }
});

test('every queried metric is one the binaries export', () => {
  const exported = exportedMetrics();
  expect(exported.size).toBeGreaterThan(5);
  const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\bprism_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''))));
  expect([...used].filter((m) => !exported.has(m))).toEqual([]);
});

test('histograms are aggregated by bucket (le) before histogram_quantile, counters through rate()', () => {
  for (const e of exprs.filter((x) => x.includes('histogram_quantile'))) {
    expect(e).toMatch(/sum by \([^)]*\ble\b[^)]*\) \(rate\(prism_[a-z_]+_bucket/);
  }
  for (const e of exprs.filter((x) => /prism_[a-z_]+_total/.test(x))) {
    expect(e).toMatch(/rate\(prism_[a-z_]+_total/);
  }
});

test('grouping labels come from the closed label set', () => {
  const allowed = new Set(['worker', 'outcome', 'stage', 'error_code', 'operation', 'backend', 'format', 'queue', 'le', 'version', 'git_sha', 'route', 'method', 'status']);
  const labels = exprs.flatMap((e) => [...e.matchAll(/by \(([^)]*)\)/g)].flatMap((m) => m[1].split(',').map((l) => l.trim())));
  expect(labels.filter((l) => !allowed.has(l))).toEqual([]);
});

/** The operator questions the dashboard must answer, each as a query pattern that answers it. */
const REQUIRED: [string, RegExp][] = [
  ['queue depth: visible', /prism_queue_visible_messages/],
  ['queue depth: in flight', /prism_queue_inflight_messages/],
  ['queue depth: dead-letter queue', /prism_queue_dlq_messages/],
  ['queue age: oldest message', /prism_queue_oldest_message_age_seconds/],
  ['queue lag histogram', /histogram_quantile\(0\.95, sum by \([^)]*\) \(rate\(prism_message_age_seconds_bucket/],
  ['throughput per worker', /sum by \(worker[^)]*\) \(rate\(prism_messages_processed_total/],
  ['processing latency histogram p50', /histogram_quantile\(0\.5, [^]*prism_message_processing_duration_seconds_bucket/],
  ['processing latency histogram p95', /histogram_quantile\(0\.95, [^]*prism_message_processing_duration_seconds_bucket/],
  ['API latency histogram p95', /histogram_quantile\(0\.95, [^]*prism_http_request_duration_seconds_bucket/],
  ['API requests by status', /sum by \([^)]*\bstatus\b[^)]*\) \(rate\(prism_http_requests_total/],
  ['errors by code', /sum by \([^)]*\berror_code\b[^)]*\) \(rate\(prism_errors_total/],
  ['admission budget in use', /prism_admission_budget_in_use/],
];

test.each(REQUIRED)('the dashboard covers %s', (_what, pattern) => {
  expect(exprs.filter((e) => pattern.test(e))).not.toEqual([]);
});
