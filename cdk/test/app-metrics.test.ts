/**
 * The application metrics the alarms and the dashboard read exist: every CloudWatch metric in the
 * binaries' EMF namespace is named, dimensioned and valued exactly as the Rust code writes it.
 * Read from the Rust sources (like rust-source.ts does for configuration), so a renamed metric,
 * label or outcome fails here instead of leaving an alarm that never fires:
 *
 * - names: the `pub const NAME: &str = "prism_…";` constants of the telemetry module;
 * - dimensions: the labels each metric is recorded with (`counter!(NAME, "k" => v, …)`),
 *   restricted to the EMF module's `DIMENSION_KEYS`; the roll-up set `[worker]` also exists;
 * - values: worker names as the workers pass them, outcomes as the consumer returns them.
 */
import * as fs from 'fs';
import * as path from 'path';
import { APP_METRICS, FAILURE_OUTCOMES } from '../lib/constructs/dashboard';
import { REPO_ROOT, synthPrism, Synthesized } from './helpers';

const read = (rel: string): string => fs.readFileSync(path.join(REPO_ROOT, rel), 'utf8');
const METRICS_RS = read('shared/src/telemetry/metrics.rs');
const EMF_RS = read('shared/src/telemetry/emf.rs');

function nonEmpty<T>(what: string, items: T[]): T[] {
  if (items.length === 0) throw new Error(`found no ${what} in the Rust sources: reader out of date`);
  return items;
}

/** const identifier → metric name. */
const NAMES = new Map(nonEmpty('metric constants', [...METRICS_RS.matchAll(/pub const (\w+): &str = "(prism_\w+)";/g)].map((m) => [m[1], m[2]] as [string, string])));

/** metric name → label keys it is recorded with, from the `counter!/gauge!/histogram!` calls. */
const LABELS = new Map<string, Set<string>>();
for (const m of METRICS_RS.matchAll(/(?:counter|gauge|histogram)!\(\s*(\w+)((?:,\s*"\w+" => [^,)]+(?:\([^)]*\))?)*)\)/g)) {
  const name = NAMES.get(m[1]);
  if (!name) continue;
  const keys = [...m[2].matchAll(/"(\w+)" =>/g)].map((k) => k[1]);
  LABELS.set(name, new Set([...(LABELS.get(name) ?? []), ...keys]));
}

const DIMENSION_KEYS = new Set(
  nonEmpty('DIMENSION_KEYS', [...(/pub const DIMENSION_KEYS: &\[&str\] = &\[([\s\S]*?)\];/.exec(EMF_RS)?.[1] ?? '').matchAll(/"(\w+)"/g)].map((m) => m[1])),
);

/** Worker label values: the names the workers hand the consumer or record under. */
const WORKERS = new Set(
  nonEmpty(
    'worker names',
    // Every source file of the three workers, so moving code between their files changes nothing.
    ['workers/resize/src', 'workers/metadata/src', 'workers/archiver/src']
      .flatMap((dir) => fs.readdirSync(path.join(REPO_ROOT, dir)).filter((f) => f.endsWith('.rs')).map((f) => `${dir}/${f}`))
      .flatMap((f) => [...read(f).matchAll(/(?:Consumer::new|metrics::message_processed|metrics::error)\(\s*"(\w+)"/g)].map((m) => m[1])),
  ),
);

/** Outcome label values: what the consumer's ack/fail paths and `Outcome::label` return. */
const OUTCOMES = new Set(
  nonEmpty('outcomes', [...read('shared/src/consumer.rs').matchAll(/"(success|duplicate|retry|dead_letter|abandoned)"/g)].map((m) => m[1])),
);

/** The dashboard body as JSON (CloudFormation references replaced by `TOKEN`). */
function dashboard(s: Synthesized): Record<string, any> {
  const body = Object.values(s.compute_.findResources('AWS::CloudWatch::Dashboard'))[0].Properties.DashboardBody;
  return JSON.parse(typeof body === 'string' ? body : (body['Fn::Join'][1] as unknown[]).map((p) => (typeof p === 'string' ? p : 'TOKEN')).join(''));
}

interface AppMetric {
  readonly where: string;
  readonly name: string;
  readonly dims: Record<string, string>;
}

function appMetrics(s: Synthesized, namespace: string): AppMetric[] {
  const out: AppMetric[] = [];
  for (const [id, a] of Object.entries(s.compute_.findResources('AWS::CloudWatch::Alarm'))) {
    for (const m of (a.Properties.Metrics ?? []) as Record<string, any>[]) {
      const metric = m.MetricStat?.Metric;
      if (metric?.Namespace !== namespace) continue;
      const dims = Object.fromEntries((metric.Dimensions ?? []).map((d: { Name: string; Value: string }) => [d.Name, d.Value]));
      out.push({ where: `alarm ${id}`, name: metric.MetricName, dims });
    }
  }
  for (const w of dashboard(s).widgets as Record<string, any>[]) {
    for (const row of (w.properties?.metrics ?? []) as unknown[][]) {
      if (row[0] !== namespace) continue;
      const [, name, ...rest] = row as string[];
      const dims: Record<string, string> = {};
      for (let i = 0; i + 1 < rest.length && typeof rest[i] === 'string'; i += 2) dims[rest[i]] = rest[i + 1];
      out.push({ where: `widget ${w.properties.title}`, name, dims });
    }
  }
  return out;
}

describe.each([
  ['default stage', {}, 'prism'],
  ['stage dev', { stage: 'dev' }, 'prism/dev'],
])('%s', (_label, ctx, namespace) => {
  const s = synthPrism(ctx);
  const metrics = appMetrics(s, namespace);

  test('the binaries are told to write EMF into the namespace the alarms read', () => {
    for (const td of Object.values(s.compute_.findResources('AWS::ECS::TaskDefinition'))) {
      const env = Object.fromEntries(td.Properties.ContainerDefinitions[0].Environment.map((e: { Name: string; Value: unknown }) => [e.Name, e.Value]));
      expect(env.PRISM__METRICS__EMF).toBe('true');
      expect(env.PRISM__METRICS__EMF_NAMESPACE).toBe(namespace);
    }
  });

  test('alarms and dashboard read application metrics (and only ones the Rust code writes)', () => {
    // Failure rate per worker, render time, throughput, latency.
    expect(metrics.length).toBeGreaterThanOrEqual(20);
    const emitted = new Set(NAMES.values());
    for (const m of metrics) {
      expect({ where: m.where, name: m.name, known: emitted.has(m.name) }).toEqual({ where: m.where, name: m.name, known: true });
      const labels = [...(LABELS.get(m.name) ?? [])].filter((k) => DIMENSION_KEYS.has(k)).sort();
      const keys = Object.keys(m.dims).sort();
      // The full label set, or the per-worker roll-up the EMF writer declares as well.
      const rollup = labels.includes('worker') && keys.length === 1 && keys[0] === 'worker';
      expect({ where: m.where, keys: rollup ? labels : keys }).toEqual({ where: m.where, keys: labels });
      if (m.dims.worker !== undefined) expect(WORKERS).toContain(m.dims.worker);
      if (m.dims.outcome !== undefined) expect(OUTCOMES).toContain(m.dims.outcome);
    }
  });

  test('every worker has a failure-rate alarm; resize has a render-time (p95) alarm', () => {
    const alarms = s.compute_.findResources('AWS::CloudWatch::Alarm');
    for (const w of WORKERS) {
      const a = Object.entries(alarms).find(([id]) => id.startsWith(`Operations${w.charAt(0).toUpperCase()}${w.slice(1)}FailureRate`));
      expect(a).toBeDefined();
      const used = (a![1].Properties.Metrics as Record<string, any>[]).filter((m) => m.MetricStat).map((m) => m.MetricStat.Metric);
      expect(used.every((m) => m.MetricName === APP_METRICS.processed && m.Namespace === namespace)).toBe(true);
      const outcomes = used.flatMap((m) => m.Dimensions.filter((d: { Name: string }) => d.Name === 'outcome').map((d: { Value: string }) => d.Value));
      expect(outcomes.sort()).toEqual([...FAILURE_OUTCOMES].sort());
    }
    const p95 = Object.entries(alarms).find(([id]) => id.startsWith('OperationsResizeP95Duration'))![1].Properties;
    expect(p95.Metrics[0].MetricStat).toEqual(
      expect.objectContaining({
        Stat: 'p95',
        Metric: expect.objectContaining({ Namespace: namespace, MetricName: APP_METRICS.duration }),
      }),
    );
    expect(p95.Threshold).toBe(60);
  });

  test('the errors-by-code graphs search the metric and dimensions the Rust code writes', () => {
    const expressions = (dashboard(s).widgets as Record<string, any>[]).flatMap((w) =>
      ((w.properties?.metrics ?? []) as unknown[][]).map((row) => (row[0] as { expression?: string })?.expression).filter((e): e is string => !!e),
    );
    const searches = expressions.map((e) => /^SEARCH\('\{([^}]*)\} MetricName="(\w+)" worker="(\w+)"', 'Sum', 60\)$/.exec(e)).filter((m): m is RegExpExecArray => !!m);
    expect(searches.map((m) => m[3]).sort()).toEqual([...WORKERS].sort());
    for (const m of searches) {
      const [ns, ...keys] = m[1].split(',');
      expect(ns).toBe(namespace);
      expect(m[2]).toBe(APP_METRICS.errors);
      expect(keys.sort()).toEqual([...(LABELS.get(APP_METRICS.errors) ?? [])].filter((k) => DIMENSION_KEYS.has(k)).sort());
    }
  });
});

test('the names the dashboard module declares are the Rust ones', () => {
  for (const name of Object.values(APP_METRICS)) expect(new Set(NAMES.values())).toContain(name);
  for (const o of FAILURE_OUTCOMES) expect(OUTCOMES).toContain(o);
  expect(LABELS.get(APP_METRICS.processed)).toEqual(new Set(['worker', 'outcome']));
  // The unbounded label is gone for good: no metric is labelled by the variant width.
  for (const labels of LABELS.values()) expect(labels.has('variant')).toBe(false);
  expect(DIMENSION_KEYS.has('variant')).toBe(false);
});
