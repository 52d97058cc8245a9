/**
 * cdk-nag AwsSolutions pack, run the way `cdk synth` runs it (a policy-validation plugin on the
 * app, after cross-stack references are resolved): no unacknowledged finding, in the default
 * configuration and in the variants that add or change resources. Every acknowledgement carries
 * a reason.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Stack, Validations } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { IConstruct } from 'constructs';
import { buildPrism } from '../lib/app-builder';
import { loadConfig } from '../lib/config';
import { cdkJsonContext, REPO_ROOT } from './helpers';

interface Violation {
  ruleName: string;
  violatingConstructs: { constructPath: string }[];
}

/** Synthesizes with the AwsSolutions plugin and returns its violations ([] when it passed). */
function nagViolations(overrides: Record<string, unknown>, extra?: (app: App) => void): { violations: Violation[]; app: App } {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-cdk-nag-'));
  const app = new App({ outdir, context: { ...cdkJsonContext(), allowInsecureHttp: true, ...overrides } });
  buildPrism(app, loadConfig((k) => app.node.tryGetContext(k)), REPO_ROOT);
  extra?.(app);
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  try {
    app.synth();
  } catch {
    // A failed validation throws after writing the report; the report is what we assert on.
  }
  const reportFile = path.join(outdir, 'validation-report.json');
  if (!fs.existsSync(reportFile)) return { violations: [], app };
  const report = JSON.parse(fs.readFileSync(reportFile, 'utf8'));
  const violations = (report.pluginReports as { violations: Violation[] }[]).flatMap((r) => r.violations);
  return { violations, app };
}

const describeViolations = (vs: Violation[]) =>
  vs.map((v) => `${v.ruleName} at ${v.violatingConstructs.map((c) => c.constructPath).join(', ')}`);

test.each([
  ['default configuration', {}],
  ['HTTPS with a certificate, alarm email, browser origins', {
    certificateArn: 'arn:aws:acm:us-east-1:111111111111:certificate/abc',
    alarmEmail: 'oncall@example.com',
    allowedOrigins: ['https://app.example.com'],
  }],
  ['private subnets behind a NAT, imported token and callback secrets, fixed worker floors', {
    natGateways: 1,
    apiTokenSecretArn: 'arn:aws:secretsmanager:us-east-1:111111111111:secret:prism-tokens-AbCdEf',
    callbackSecretArn: 'arn:aws:secretsmanager:us-east-1:111111111111:secret:prism-callback-key-GhIjKl',
    resizeMinTasks: 1,
    archiverMinTasks: 1,
  }],
  ['the media CDN (CloudFront with Origin Access Control)', { cdn: true }],
])('AwsSolutions: no unacknowledged findings (%s)', (_name, overrides) => {
  const { violations } = nagViolations(overrides);
  expect(describeViolations(violations)).toEqual([]);
});

test('the harness does catch findings (control: an unencrypted, unlogged, TLS-optional bucket)', () => {
  const { violations } = nagViolations({}, (app) => {
    const stack = new Stack(app, 'NagControl', { env: { region: 'us-east-1' } });
    new s3.Bucket(stack, 'Careless', { enforceSSL: false });
  });
  const rules = violations.map((v) => v.ruleName);
  expect(rules).toEqual(expect.arrayContaining(['AwsSolutions-S1', 'AwsSolutions-S10']));
});

test('every acknowledgement names a finding and gives a reason of substance', () => {
  const { app } = nagViolations({ certificateArn: 'arn:aws:acm:us-east-1:111111111111:certificate/abc' });
  const acks: { path: string; id: string; reason: string }[] = [];
  const visit = (c: IConstruct) => {
    for (const entry of c.node.metadata.filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)) {
      // Recorded as { '<plugin>::<rule id>': reason }.
      for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
        // Only ours: aws-cdk-lib itself acknowledges some cfn-lint rules (CloudFormation-Validate::…).
        if (id.includes('AwsSolutions-')) acks.push({ path: c.node.path, id, reason });
      }
    }
    c.node.children.forEach(visit);
  };
  visit(app);
  expect(acks.length).toBeGreaterThan(10);
  for (const a of acks) {
    // aws-cdk-lib records plain nag IDs under the `Annotation::` namespace; cdk-nag 3 reads them there.
    expect(a.id).toMatch(/^(Annotation|AwsSolutions)::AwsSolutions-[A-Z]+[0-9]+/);
    expect(a.reason.length).toBeGreaterThan(40);
  }
  // Acknowledgements sit on specific constructs, never on a whole stack.
  expect(acks.filter((a) => !a.path.includes('/'))).toEqual([]);
});
