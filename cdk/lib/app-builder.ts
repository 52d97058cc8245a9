/**
 * Builds the two stacks from a {@link PrismConfig}. Shared by `bin/app.ts` and the tests so that
 * what is tested is what `cdk synth` produces.
 */
import { App, Environment, Tags } from 'aws-cdk-lib';
import { metricsNamespace, stackNames, type PrismConfig } from './config';
import { destroyOnDelete } from './removal';
import { ComputeStack } from './stacks/compute-stack';
import { StatefulStack } from './stacks/stateful-stack';

export interface PrismStacks {
  readonly stateful: StatefulStack;
  readonly compute: ComputeStack;
}

/**
 * Adds the stateful and compute stacks to `app`: `PrismStateful` and `PrismCompute`, or
 * `Prism-<stage>-Stateful` and `Prism-<stage>-Compute` with a stage (see {@link stackNames}).
 */
export function buildPrism(app: App, config: PrismConfig, imageBuildContext: string, account?: string): PrismStacks {
  const env: Environment = { account, region: config.region };
  const names = stackNames(config.stage);
  const label = config.stage === '' ? 'prism' : `prism (${config.stage})`;
  const stateful = new StatefulStack(app, names.stateful, {
    env,
    description: `${label}: buckets, events topic, queues, metadata table, keys, secrets (${config.ephemeral ? 'ephemeral: deleted with the stack' : 'retained'})`,
    allowedOrigins: config.allowedOrigins,
    apiTokenSecretArn: config.apiTokenSecretArn,
    callbackSecretArn: config.callbackSecretArn,
    cdn: config.cdn,
    ephemeral: config.ephemeral,
    terminationProtection: !config.ephemeral,
  });
  const compute = new ComputeStack(app, names.compute, {
    env,
    description: `${label}: VPC, ECS Fargate workers and API, dashboard and alarms`,
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
    cpuArchitecture: config.cpuArchitecture,
    metricsNamespace: metricsNamespace(config.stage),
    stage: config.stage,
    ephemeral: config.ephemeral,
  });
  compute.addStackDependency(stateful, "workers and API reference buckets, queues, topic and table");
  for (const stack of [stateful, compute]) {
    Tags.of(stack).add('prism:stage', config.stage === '' ? 'default' : config.stage);
    if (config.ephemeral) {
      Tags.of(stack).add('prism:ephemeral', 'true');
      destroyOnDelete(stack);
    }
  }
  return { stateful, compute };
}
