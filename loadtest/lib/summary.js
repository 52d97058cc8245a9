// handleSummary for every scenario: a short text report on stdout, and the full data as JSON
// (SUMMARY, default summary-<scenario>.json) for CI and the README's figures. (k6's own text
// summary lives in a remote jslib module; the scripts import nothing from the network.)

export function summary(scenario) {
  return (data) => ({
    stdout: text(scenario, data),
    [__ENV.SUMMARY || `summary-${scenario}.json`]: JSON.stringify(data, null, 2),
  });
}

const ROWS = [
  ['iterations', 'count', 'batches'],
  ['http_reqs', 'count', 'requests'],
  ['http_req_failed', 'rate', 'failed requests'],
  ['http_req_duration{kind:api}', 'ms', 'API (create)'],
  ['http_req_duration{kind:upload}', 'ms', 'presigned upload'],
  ['prism_upload_to_complete', 'ms', 'upload → complete'],
  ['prism_files_done', 'count', 'files done'],
  ['prism_files_failed', 'count', 'files failed'],
  ['prism_batches_incomplete', 'count', 'batches incomplete'],
  ['checks', 'rate', 'checks passed'],
];

function text(scenario, data) {
  const lines = [`\nprism k6 ${scenario}`];
  for (const [key, kind, label] of ROWS) {
    const m = data.metrics[key];
    if (!m) continue;
    const v = m.values;
    let s;
    if (kind === 'count') s = `${v.count}${v.rate !== undefined ? ` (${v.rate.toFixed(2)}/s)` : ''}`;
    else if (kind === 'rate') s = `${(v.rate * 100).toFixed(2)}%`;
    else s = `avg ${v.avg.toFixed(1)} ms  p50 ${v.med.toFixed(1)}  p90 ${v['p(90)'].toFixed(1)}  p95 ${v['p(95)'].toFixed(1)}  max ${v.max.toFixed(1)}`;
    const th = m.thresholds
      ? '  ' + Object.entries(m.thresholds).map(([t, r]) => `${r.ok ? '✓' : '✗'} ${t}`).join(' ')
      : '';
    lines.push(`  ${label.padEnd(20)} ${s}${th}`);
  }
  return lines.join('\n') + '\n';
}
