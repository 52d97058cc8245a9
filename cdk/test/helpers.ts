/**
 * Test helpers: build the app exactly as `bin/app.ts` does (cdk.json context + overrides), and
 * query synthesized templates for IAM statements.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { buildPrism, PrismStacks } from '../lib/app-builder';
import { loadConfig } from '../lib/config';

/** Repository root: the Docker build context the app stages (no Docker needed at synth). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');

/** The `context` block of cdk.json, so tests see the same feature flags and defaults as synth. */
export function cdkJsonContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'cdk.json'), 'utf8'));
  return cdkJson.context as Record<string, unknown>;
}

export interface Synthesized extends PrismStacks {
  readonly app: App;
  readonly stateful_: Template;
  readonly compute_: Template;
}

/** The throwaway outdirs of this test file, removed when its tests have run. */
const outdirs: string[] = [];
if (typeof afterAll === 'function') {
  afterAll(() => {
    for (const dir of outdirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });
}

/** Builds both stacks with cdk.json context plus `overrides`, into a throwaway outdir. */
export function synthPrism(overrides: Record<string, unknown> = {}): Synthesized {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'prism-cdk-test-'));
  outdirs.push(outdir);
  // Tests synthesize a plain-HTTP stack unless they give a certificate (or say otherwise).
  const app = new App({ outdir, context: { ...cdkJsonContext(), allowInsecureHttp: true, ...overrides } });
  const stacks = buildPrism(app, loadConfig((k) => app.node.tryGetContext(k)), REPO_ROOT);
  return {
    app,
    ...stacks,
    stateful_: Template.fromStack(stacks.stateful),
    compute_: Template.fromStack(stacks.compute),
  };
}

/** One IAM policy statement, normalised to arrays. */
export interface Statement {
  readonly Effect: string;
  readonly Action: string[];
  readonly Resource: unknown[];
}

/** Every statement of every AWS::IAM::Policy attached to the role whose logical ID starts with `rolePrefix`. */
export function roleStatements(template: Template, rolePrefix: string): Statement[] {
  const roles = Object.keys(template.findResources('AWS::IAM::Role')).filter((id) => id.startsWith(rolePrefix));
  if (roles.length !== 1) throw new Error(`expected one role starting with ${rolePrefix}, found ${roles.join(', ') || 'none'}`);
  const roleId = roles[0];
  const policies = Object.values(template.findResources('AWS::IAM::Policy')).filter((p) =>
    (p.Properties.Roles as unknown[]).some((r) => JSON.stringify(r) === JSON.stringify({ Ref: roleId })),
  );
  return policies.flatMap((p) =>
    (p.Properties.PolicyDocument.Statement as Record<string, unknown>[]).map((s) => ({
      Effect: s.Effect as string,
      Action: ([] as string[]).concat(s.Action as string | string[]),
      Resource: ([] as unknown[]).concat(s.Resource as unknown),
    })),
  );
}

/** All actions granted to a role. */
export function roleActions(template: Template, rolePrefix: string): string[] {
  return roleStatements(template, rolePrefix).flatMap((s) => s.Action);
}

/** Actions granted on resources whose JSON mentions `resourceHint` (a logical-ID fragment). */
export function actionsOn(template: Template, rolePrefix: string, resourceHint: string): string[] {
  return roleStatements(template, rolePrefix)
    .filter((s) => s.Resource.some((r) => JSON.stringify(r).includes(resourceHint)))
    .flatMap((s) => s.Action);
}

/** Logical ID of the single resource of `type` whose ID starts with `prefix`. */
export function logicalId(template: Template, type: string, prefix: string): string {
  const ids = Object.keys(template.findResources(type)).filter((id) => id.startsWith(prefix));
  if (ids.length !== 1) throw new Error(`expected one ${type} starting with ${prefix}, found ${ids.join(', ') || 'none'}`);
  return ids[0];
}
