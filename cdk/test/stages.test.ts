/**
 * Deploying as teams do: stage-prefixed stacks sharing one account, ephemeral (destroyable) trial
 * stacks beside production-safe defaults, one image for amd64 or arm64, and the outputs the CLI
 * discovers a deployed stack by.
 */
import * as fs from 'fs';
import * as path from 'path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { buildPrism } from '../lib/app-builder';
import { loadConfig } from '../lib/config';
import { cdkJsonContext, REPO_ROOT, synthPrism, Synthesized } from './helpers';

const everyResource = (t: Template): [string, Record<string, any>][] => Object.entries(t.toJSON().Resources as Record<string, Record<string, any>>);

describe('default stage: today\'s names, production-safe', () => {
  const s = synthPrism();

  test('stacks keep their names and the stateful one is termination-protected', () => {
    expect([s.stateful.stackName, s.compute.stackName]).toEqual(['PrismStateful', 'PrismCompute']);
    expect(s.stateful.terminationProtection).toBe(true);
  });

  test('data and logs are retained; the table is deletion-protected; no bucket auto-deletes', () => {
    for (const [id, r] of everyResource(s.stateful_)) {
      if (['AWS::S3::Bucket', 'AWS::SQS::Queue', 'AWS::DynamoDB::Table', 'AWS::KMS::Key', 'AWS::SNS::Topic', 'AWS::SecretsManager::Secret'].includes(r.Type)) {
        expect({ id, policy: r.DeletionPolicy }).toEqual({ id, policy: 'Retain' });
      }
    }
    for (const [id, r] of everyResource(s.compute_).filter(([, r]) => r.Type === 'AWS::Logs::LogGroup')) {
      expect({ id, policy: r.DeletionPolicy }).toEqual({ id, policy: 'Retain' });
    }
    s.stateful_.hasResourceProperties('AWS::DynamoDB::Table', { DeletionProtectionEnabled: true });
    expect(Object.keys(s.stateful_.findResources('Custom::S3AutoDeleteObjects'))).toHaveLength(0);
  });

  test('every resource is tagged with the stage', () => {
    s.stateful_.hasResourceProperties('AWS::SQS::Queue', { Tags: [{ Key: 'prism:stage', Value: 'default' }] });
    s.compute_.hasResourceProperties('AWS::ECS::Cluster', { Tags: [{ Key: 'prism:stage', Value: 'default' }] });
  });
});

describe('-c stage=dev', () => {
  const s = synthPrism({ stage: 'dev' });

  test('prefixes the stack names, hence every generated resource name', () => {
    expect([s.stateful.stackName, s.compute.stackName]).toEqual(['Prism-dev-Stateful', 'Prism-dev-Compute']);
    s.stateful_.hasResourceProperties('AWS::SQS::Queue', { Tags: [{ Key: 'prism:stage', Value: 'dev' }] });
  });

  test('no resource of either stack has a fixed physical name that a second stage would collide with', () => {
    const nameProps = ['BucketName', 'QueueName', 'TableName', 'TopicName', 'LogGroupName', 'ClusterName', 'ServiceName', 'DashboardName', 'AlarmName', 'RoleName', 'Name'];
    for (const t of [s.stateful_, s.compute_]) {
      for (const [id, r] of everyResource(t)) {
        if (r.Type === 'AWS::SecretsManager::Secret' || r.Type.startsWith('Custom::')) continue;
        for (const p of nameProps) {
          if (typeof r.Properties?.[p] === 'string') throw new Error(`${id} (${r.Type}) has a fixed ${p}: ${r.Properties[p]}`);
        }
      }
    }
  });

  test('two stages synthesize side by side in one app (one account, one region)', () => {
    const app = new App({ outdir: fs.mkdtempSync(path.join(require('os').tmpdir(), 'prism-stages-')), context: { ...cdkJsonContext(), allowInsecureHttp: true } });
    const get = (stage: string) => (k: string) => (k === 'stage' ? stage : app.node.tryGetContext(k));
    const dev = buildPrism(app, loadConfig(get('dev')), REPO_ROOT);
    const prod = buildPrism(app, loadConfig(get('')), REPO_ROOT);
    const names = app.synth().stacks.map((st) => st.stackName).sort();
    expect(names).toEqual(['Prism-dev-Compute', 'Prism-dev-Stateful', 'PrismCompute', 'PrismStateful']);
    expect(dev.compute.node.id).not.toBe(prod.compute.node.id);
  });

  test.each(['Dev', 'dev_1', '1dev', 'a-very-long-stage-name-x', 'dev!'])('rejects the stage name %s', (stage) => {
    expect(() => synthPrism({ stage })).toThrow(/stage/);
  });
});

describe('-c ephemeral=true', () => {
  const s = synthPrism({ stage: 'trial', ephemeral: 'true' });

  test('every resource of both stacks is deleted with its stack', () => {
    for (const t of [s.stateful_, s.compute_]) {
      for (const [id, r] of everyResource(t)) {
        expect({ id, type: r.Type, policy: r.DeletionPolicy ?? 'Delete' }).toEqual({ id, type: r.Type, policy: 'Delete' });
        if (r.UpdateReplacePolicy !== undefined) expect(r.UpdateReplacePolicy).toBe('Delete');
      }
    }
    expect(s.stateful.terminationProtection).toBe(false);
    s.stateful_.hasResourceProperties('AWS::DynamoDB::Table', { DeletionProtectionEnabled: false });
  });

  test('every bucket is emptied before it is deleted', () => {
    const buckets = Object.keys(s.stateful_.findResources('AWS::S3::Bucket'));
    const auto = Object.values(s.stateful_.findResources('Custom::S3AutoDeleteObjects')).map((r) => r.Properties.BucketName.Ref);
    expect(auto.sort()).toEqual(buckets.sort());
    expect(buckets).toHaveLength(4);
  });
});

describe('cpuArchitecture', () => {
  const assetPlatforms = (s: Synthesized): string[] => {
    const assembly = s.app.synth();
    const manifest = JSON.parse(fs.readFileSync(path.join(assembly.directory, `${s.compute.artifactId}.assets.json`), 'utf8'));
    return Object.values(manifest.dockerImages as Record<string, { source: { platform: string } }>).map((i) => i.source.platform);
  };
  const architectures = (s: Synthesized): string[] =>
    Object.values(s.compute_.findResources('AWS::ECS::TaskDefinition')).map((td) => td.Properties.RuntimePlatform.CpuArchitecture);

  test('default amd64: one x86_64 image, Spot workers', () => {
    const s = synthPrism();
    expect(assetPlatforms(s)).toEqual(['linux/amd64']);
    expect(architectures(s)).toEqual(['X86_64', 'X86_64', 'X86_64', 'X86_64']);
    expect(JSON.stringify(s.compute_.findResources('AWS::ECS::Service'))).toContain('FARGATE_SPOT');
  });

  test('arm64 (Graviton): one arm64 image, every task ARM64, workers on on-demand Fargate', () => {
    const s = synthPrism({ cpuArchitecture: 'arm64' });
    expect(assetPlatforms(s)).toEqual(['linux/arm64']);
    expect(architectures(s)).toEqual(['ARM64', 'ARM64', 'ARM64', 'ARM64']);
    expect(JSON.stringify(s.compute_.findResources('AWS::ECS::Service'))).not.toContain('FARGATE_SPOT');
  });

  test('arm64 with Spot workers, or an unknown architecture, fails synth', () => {
    expect(() => synthPrism({ cpuArchitecture: 'arm64', workerSpot: 'true' })).toThrow(/Spot/);
    expect(() => synthPrism({ cpuArchitecture: 'x86' })).toThrow(/cpuArchitecture/);
  });
});

test('outputs the CLI discovers a deployed stack by', () => {
  const s = synthPrism({ stage: 'dev' });
  const stateful = Object.keys(s.stateful_.toJSON().Outputs);
  for (const name of [
    'UploadsBucketName',
    'MediaBucketName',
    'ArchiveBucketName',
    'EventsTopicArn',
    'TableName',
    'ResizeQueueUrl',
    'ResizeDlqUrl',
    'ArchiveQueueUrl',
    'ArchiveDlqUrl',
    'MetadataQueueUrl',
    'MetadataDlqUrl',
  ]) {
    expect(stateful).toContain(name);
  }
  const compute = Object.keys(s.compute_.toJSON().Outputs);
  for (const name of ['ApiUrl', 'ClusterName', 'DashboardUrl', 'AlarmTopicArn', 'MetricsNamespace']) expect(compute).toContain(name);
  expect(s.compute_.toJSON().Outputs.MetricsNamespace.Value).toBe('prism/dev');
});
