/**
 * Builds the two stacks from a {@link PrismConfig}. Shared by `bin/app.ts` and the tests so that
 * what is tested is what `cdk synth` produces.
 */
import { App, Environment } from 'aws-cdk-lib';
import type { PrismConfig } from './config';
import { ComputeStack } from './stacks/compute-stack';
import { StatefulStack } from './stacks/stateful-stack';

export interface PrismStacks {
  readonly stateful: StatefulStack;
  readonly compute: ComputeStack;
}

/** Adds `PrismStateful` and `PrismCompute` to `app`. */
export function buildPrism(app: App, config: PrismConfig, imageBuildContext: string, account?: string): PrismStacks {
  const env: Environment = { account, region: config.region };
  const stateful = new StatefulStack(app, 'PrismStateful', {
    env,
    description: 'prism: buckets, events topic, queues, metadata table, keys, secrets (retained)',
    allowedOrigins: config.allowedOrigins,
    apiTokenSecretArn: config.apiTokenSecretArn,
    callbackSecretArn: config.callbackSecretArn,
    cdn: config.cdn,
    terminationProtection: true,
  });
  const compute = new ComputeStack(app, 'PrismCompute', {
    env,
    description: 'prism: VPC, ECS Fargate workers and API, dashboard and alarms',
    stateful,
    imageBuildContext,
    natGateways: config.natGateways,
    certificateArn: config.certificateArn,
    alarmEmail: config.alarmEmail,
    otlpEndpoint: config.otlpEndpoint,
    api: config.api,
    resize: config.resize,
    archiver: config.archiver,
    metadata: config.metadata,
    workerSpot: config.workerSpot,
  });
  compute.addStackDependency(stateful, "workers and API reference buckets, queues, topic and table");
  return { stateful, compute };
}
