/**
 * The contract between the CDK app and the Rust binaries it deploys (cdk/README.md, "The container
 * contract"), checked on the synthesized templates and, where the Rust states it, against the Rust
 * sources themselves (test/rust-source.ts):
 *
 * - each container sets exactly the variables its binary needs in AWS mode, every one of them a
 *   key the binary's config knows (unknown section keys stop the binary at start), and everything
 *   the binary refuses to start without;
 * - the values point at the right resources (a queue worker at its own queue and that queue's DLQ;
 *   the topic as an ARN), secrets arrive through `secrets`, never in plain environment;
 * - each task role holds the grants the binary's calls need, and no data-plane access beyond them;
 *   each secret is readable by the one execution role that injects it.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CfnElement, Stack } from 'aws-cdk-lib';
import { Match } from 'aws-cdk-lib/assertions';
import { IConstruct } from 'constructs';
import { roleStatements, Statement, synthPrism, Synthesized } from './helpers';
import { BINARIES, configKeys, dynamoActions, requiredWithAws, secretKeys } from './rust-source';

let s: Synthesized;
beforeAll(() => {
  s = synthPrism();
});

type Binary = 'prism-api' | 'prism-resize' | 'prism-archiver' | 'prism-metadata';
const ALL: Binary[] = ['prism-api', 'prism-resize', 'prism-archiver', 'prism-metadata'];
const QUEUE_WORKERS: Binary[] = ['prism-resize', 'prism-archiver', 'prism-metadata'];

/** What every binary needs with backend = aws: the resource defaults are local names. */
const AWS_COMMON = [
  'PRISM__BACKEND',
  'PRISM__AWS__REGION',
  'PRISM__RESOURCES__UPLOADS_BUCKET',
  'PRISM__RESOURCES__MEDIA_BUCKET',
  'PRISM__RESOURCES__ARCHIVE_BUCKET',
  'PRISM__RESOURCES__TOPIC_ARN',
  'PRISM__RESOURCES__TABLE_NAME',
];
/** Operational settings every container gets (JSON logs, drain deadline under the stop timeout). */
const OPERATIONS = [
  'PRISM__LOG__FORMAT',
  'PRISM__SHUTDOWN__DRAIN_TIMEOUT_SECS',
  // Application metrics as CloudWatch EMF lines on stdout.
  'PRISM__METRICS__EMF',
  'PRISM__METRICS__EMF_NAMESPACE',
  'PRISM__METRICS__EMF_INTERVAL_SECS',
];
/** Queue workers: /metrics + /healthz on the container port, their own queue and its DLQ. */
const WORKER = ['PRISM__METRICS__LISTEN_ADDR', 'PRISM__RESOURCES__QUEUE_URL', 'PRISM__RESOURCES__DLQ_URL'];

/** The contract, exactly: plain environment and Secrets Manager variables per binary. */
const CONTRACT: Record<Binary, { env: string[]; secrets: string[] }> = {
  'prism-api': { env: [...AWS_COMMON, ...OPERATIONS, 'PRISM__HTTP__LISTEN_ADDR', 'PRISM__HTTP__HEADER_READ_TIMEOUT_SECS'], secrets: ['PRISM__AUTH__TOKEN_SHA256S'] },
  'prism-resize': { env: [...AWS_COMMON, ...OPERATIONS, ...WORKER], secrets: [] },
  'prism-archiver': { env: [...AWS_COMMON, ...OPERATIONS, ...WORKER], secrets: [] },
  'prism-metadata': { env: [...AWS_COMMON, ...OPERATIONS, ...WORKER], secrets: ['PRISM__CALLBACK__SIGNING_SECRET'] },
};

/** CloudFormation logical ID of a construct (its L1, for L2s). */
const lid = (c: IConstruct): string => {
  const cfn = (c.node.defaultChild ?? c) as CfnElement;
  return Stack.of(cfn).getLogicalId(cfn);
};

function service(syn: Synthesized, binary: Binary): IConstruct {
  return {
    'prism-api': syn.compute.api,
    'prism-resize': syn.compute.resize,
    'prism-archiver': syn.compute.archiver,
    'prism-metadata': syn.compute.metadata,
  }[binary];
}

interface Container {
  readonly env: Record<string, unknown>;
  readonly secrets: Record<string, unknown>;
  readonly raw: Record<string, any>;
  readonly taskRoleId: string;
  readonly executionRoleId: string;
}

function container(syn: Synthesized, binary: Binary): Container {
  const taskDefinition = syn.compute_.toJSON().Resources[lid(service(syn, binary).node.findChild('Task'))].Properties;
  expect(taskDefinition.ContainerDefinitions).toHaveLength(1);
  const raw = taskDefinition.ContainerDefinitions[0];
  const pairs = (list: { Name: string }[] | undefined, value: string) =>
    Object.fromEntries((list ?? []).map((e) => [e.Name, (e as Record<string, unknown>)[value]]));
  return {
    env: pairs(raw.Environment, 'Value'),
    secrets: pairs(raw.Secrets, 'ValueFrom'),
    raw,
    taskRoleId: taskDefinition.TaskRoleArn['Fn::GetAtt'][0],
    executionRoleId: taskDefinition.ExecutionRoleArn['Fn::GetAtt'][0],
  };
}

/** Follows a cross-stack `Fn::ImportValue` to the value the stateful stack exports. */
function fromStateful(syn: Synthesized, value: unknown): unknown {
  const name = (value as Record<string, unknown> | undefined)?.['Fn::ImportValue'];
  if (typeof name !== 'string') return value;
  const output = Object.values(syn.stateful_.toJSON().Outputs as Record<string, any>).find((o) => o.Export?.Name === name);
  if (!output) throw new Error(`no stateful export named ${name}`);
  return output.Value;
}

/** `{ Ref: id }` of the stateful resource `c`, after checking its CloudFormation type. */
function refTo(syn: Synthesized, c: IConstruct, type: string): { Ref: string } {
  const id = lid(c);
  expect(syn.stateful_.toJSON().Resources[id]?.Type).toBe(type);
  return { Ref: id };
}

const sorted = (xs: Iterable<string>) => [...xs].sort();

describe('environment contract', () => {
  test.each(ALL)('%s: exactly the variables of the contract, as plain environment and as secrets', (binary) => {
    const c = container(s, binary);
    expect(sorted(Object.keys(c.env))).toEqual(sorted(CONTRACT[binary].env));
    expect(sorted(Object.keys(c.secrets))).toEqual(sorted(CONTRACT[binary].secrets));
  });

  test.each(ALL)('%s: every variable is a key its config deserializes (sections deny unknown keys)', (binary) => {
    const c = container(s, binary);
    const known = configKeys(binary);
    expect([...Object.keys(c.env), ...Object.keys(c.secrets)].filter((k) => !known.has(k))).toEqual([]);
  });

  test.each(ALL)('%s: -c otlpEndpoint turns span export on through a key its config knows', (binary) => {
    expect(container(s, binary).env.PRISM__TRACE__OTLP_ENDPOINT).toBeUndefined();
    const traced = synthPrism({ otlpEndpoint: 'http://collector.internal:4318' });
    const c = container(traced, binary);
    expect(c.env.PRISM__TRACE__OTLP_ENDPOINT).toBe('http://collector.internal:4318');
    expect(configKeys(binary).has('PRISM__TRACE__OTLP_ENDPOINT')).toBe(true);
  });

  test.each(ALL)('%s: everything it refuses to start without on AWS is provided', (binary) => {
    const c = container(s, binary);
    const provided = new Set([...Object.keys(c.env), ...Object.keys(c.secrets)]);
    // From the Rust error messages ("… required with backend = aws"), so new requirements fail here.
    const required = [...requiredWithAws(binary), ...AWS_COMMON];
    expect(required.filter((k) => !provided.has(k))).toEqual([]);
  });

  test('the requirements read from the Rust are the expected ones (the reader works)', () => {
    expect(sorted(requiredWithAws('prism-metadata'))).toEqual([
      'PRISM__CALLBACK__SIGNING_SECRET',
      'PRISM__RESOURCES__DLQ_URL',
      'PRISM__RESOURCES__QUEUE_URL',
    ]);
    expect(sorted(requiredWithAws('prism-resize'))).toEqual(['PRISM__RESOURCES__DLQ_URL', 'PRISM__RESOURCES__QUEUE_URL']);
    expect(sorted(requiredWithAws('prism-archiver'))).toEqual(['PRISM__RESOURCES__DLQ_URL', 'PRISM__RESOURCES__QUEUE_URL']);
    expect(sorted(requiredWithAws('prism-api'))).toEqual([]);
    expect(sorted(secretKeys('prism-metadata'))).toEqual(['PRISM__CALLBACK__SIGNING_SECRET']);
  });

  test.each(ALL)('%s: no secret in plain environment', (binary) => {
    const c = container(s, binary);
    // Keys the Rust types as `Secret`, and the contract's secrets, are injected by ECS only.
    for (const key of [...secretKeys(binary), ...CONTRACT[binary].secrets]) {
      expect({ key, inEnvironment: key in c.env }).toEqual({ key, inEnvironment: false });
    }
    expect(Object.keys(c.env).filter((k) => /SECRET|TOKEN|PASSWORD|CREDENTIAL|SIGNING/.test(k))).toEqual([]);
    // Plain values are literals or references to resource names/ARNs/URLs, never a secret's value.
    expect(JSON.stringify(c.env)).not.toMatch(/SecretsManager|resolve:secretsmanager|ApiTokenHashes|CallbackSigningSecret/);
  });
});

describe('values', () => {
  test.each(ALL)('%s: AWS backend in the stack region, JSON logs, drain deadline under the stop timeout', (binary) => {
    const c = container(s, binary);
    expect(c.env.PRISM__BACKEND).toBe('aws');
    expect(c.env.PRISM__AWS__REGION).toBe(s.compute.region);
    expect(c.env.PRISM__LOG__FORMAT).toBe('json');
    expect(Number(c.env.PRISM__SHUTDOWN__DRAIN_TIMEOUT_SECS)).toBeLessThanOrEqual(c.raw.StopTimeout - 5);
  });

  test('the region follows the deployment region', () => {
    const eu = synthPrism({ region: 'eu-west-1' });
    for (const binary of ALL) expect(container(eu, binary).env.PRISM__AWS__REGION).toBe('eu-west-1');
  });

  test.each(ALL)('%s: bucket names, the topic ARN and the table name of the stateful stack', (binary) => {
    const c = container(s, binary);
    const st = s.stateful;
    const v = (key: string) => fromStateful(s, c.env[key]);
    expect(v('PRISM__RESOURCES__UPLOADS_BUCKET')).toEqual(refTo(s, st.uploadsBucket, 'AWS::S3::Bucket'));
    expect(v('PRISM__RESOURCES__MEDIA_BUCKET')).toEqual(refTo(s, st.mediaBucket, 'AWS::S3::Bucket'));
    expect(v('PRISM__RESOURCES__ARCHIVE_BUCKET')).toEqual(refTo(s, st.archiveBucket, 'AWS::S3::Bucket'));
    // Ref of an SNS topic is its ARN, which `CommonConfig::validate` demands with backend = aws.
    expect(v('PRISM__RESOURCES__TOPIC_ARN')).toEqual(refTo(s, st.eventsTopic, 'AWS::SNS::Topic'));
    expect(v('PRISM__RESOURCES__TABLE_NAME')).toEqual(refTo(s, st.table.table, 'AWS::DynamoDB::Table'));
  });

  test.each([
    ['prism-resize', 'resizeQueue'],
    ['prism-archiver', 'archiveQueue'],
    ['prism-metadata', 'metadataQueue'],
  ] as const)('%s: its own queue URL, and the URL of the DLQ that queue redrives to', (binary, queue) => {
    const c = container(s, binary);
    const work = s.stateful[queue];
    const queueRef = refTo(s, work.queue, 'AWS::SQS::Queue');
    expect(fromStateful(s, c.env.PRISM__RESOURCES__QUEUE_URL)).toEqual(queueRef);
    const redrive = s.stateful_.toJSON().Resources[queueRef.Ref].Properties.RedrivePolicy;
    const dlqId = redrive.deadLetterTargetArn['Fn::GetAtt'][0];
    expect(dlqId).toBe(lid(work.deadLetterQueue));
    expect(fromStateful(s, c.env.PRISM__RESOURCES__DLQ_URL)).toEqual({ Ref: dlqId });
  });

  test('secrets come from the stateful stack: token hashes to the API, the signing key to prism-metadata', () => {
    const api = container(s, 'prism-api');
    expect(fromStateful(s, api.secrets.PRISM__AUTH__TOKEN_SHA256S)).toEqual(refTo(s, s.stateful.apiTokenSecret, 'AWS::SecretsManager::Secret'));
    const metadata = container(s, 'prism-metadata');
    expect(fromStateful(s, metadata.secrets.PRISM__CALLBACK__SIGNING_SECRET)).toEqual(
      refTo(s, s.stateful.callbackSigningSecret, 'AWS::SecretsManager::Secret'),
    );
  });

  test('an imported signing secret is injected by its ARN', () => {
    const arn = 'arn:aws:secretsmanager:us-east-1:111111111111:secret:prism-callback-key-AbCdEf';
    const imported = synthPrism({ callbackSecretArn: arn });
    const c = container(imported, 'prism-metadata');
    expect(c.secrets).toEqual({ PRISM__CALLBACK__SIGNING_SECRET: arn });
    const reads = roleStatements(imported.compute_, c.executionRoleId).filter((st) => st.Action.some((a) => a.startsWith('secretsmanager:')));
    expect(reads).toEqual([{ Effect: 'Allow', Action: ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue'], Resource: [arn] }]);
  });

  test.each(ALL)('%s: listens where the port mapping, health check and load balancer look', (binary) => {
    const c = container(s, binary);
    const port = c.raw.PortMappings[0].ContainerPort;
    const listen = binary === 'prism-api' ? c.env.PRISM__HTTP__LISTEN_ADDR : c.env.PRISM__METRICS__LISTEN_ADDR;
    // 0.0.0.0: reachable from the ALB; `healthcheck` connects to loopback for an unspecified address.
    expect(listen).toBe(`0.0.0.0:${port}`);
    expect(c.raw.HealthCheck.Command).toEqual(['CMD', `/usr/local/bin/${binary}`, 'healthcheck']);
    if (binary === 'prism-api') {
      s.compute_.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', { Port: port, HealthCheckPath: '/healthz' });
    }
  });

  test('each service runs its own binary of the one image, as the container command (PID 1)', () => {
    const assembly = s.app.synth();
    const manifest = JSON.parse(fs.readFileSync(path.join(assembly.directory, `${s.compute.artifactId}.assets.json`), 'utf8'));
    const hashes = new Set<string>();
    for (const binary of ALL) {
      const c = container(s, binary).raw;
      const hash = /:([0-9a-f]{64})"/.exec(JSON.stringify(c.Image))?.[1];
      expect(hash && manifest.dockerImages[hash]?.source.dockerFile).toBe('docker/worker.Dockerfile');
      hashes.add(hash as string);
      expect(c.Command).toEqual([`/usr/local/bin/${binary}`]);
      expect(c.EntryPoint).toBeUndefined();
    }
    expect(hashes.size).toBe(1);
  });
});

describe('grants the binaries need, and nothing else on data', () => {
  /** `granted` (possibly ending in `*`) covers `needed`. */
  const covers = (granted: string, needed: string) =>
    granted === needed || (granted.endsWith('*') && needed.startsWith(granted.slice(0, -1)));

  /** Statements of `roleId` allowing `action` on a resource that mentions `resourceId` (objects: `…/*`). */
  const allowing = (roleId: string, action: string, resourceId: string, objects = false): Statement[] =>
    roleStatements(s.compute_, roleId).filter(
      (st) =>
        st.Effect === 'Allow' &&
        st.Action.some((a) => covers(a, action)) &&
        st.Resource.some((r) => {
          const json = JSON.stringify(r);
          return json.includes(resourceId) && json.includes('/*') === objects;
        }),
    );

  type Need = readonly [action: string, resource: () => IConstruct, objects?: 'objects'];
  const st = () => s.stateful;
  const table = () => st().table.table;
  // The DynamoDB calls of `DynamoMetadataStore`, read from its source.
  const dynamo = (): Need[] => [...dynamoActions()].map((a) => [a, table] as const);
  const publish: Need[] = [
    ['sns:Publish', () => st().eventsTopic],
    // The topic is SSE-KMS: publishers encrypt with its key.
    ['kms:GenerateDataKey', () => st().topicKey],
    ['kms:Decrypt', () => st().topicKey],
  ];
  const consume = (queue: 'resizeQueue' | 'archiveQueue' | 'metadataQueue'): Need[] => [
    // SqsQueue: ReceiveMessage, DeleteMessage(Batch), ChangeMessageVisibility, GetQueueAttributes.
    ['sqs:ReceiveMessage', () => st()[queue].queue],
    ['sqs:DeleteMessage', () => st()[queue].queue],
    ['sqs:ChangeMessageVisibility', () => st()[queue].queue],
    ['sqs:GetQueueAttributes', () => st()[queue].queue],
    // Explicit dead-lettering (SendMessage with the reason as attributes) and DLQ depth.
    ['sqs:SendMessage', () => st()[queue].deadLetterQueue],
    ['sqs:GetQueueAttributes', () => st()[queue].deadLetterQueue],
  ];
  const NEEDS: Record<Binary, () => Need[]> = {
    'prism-api': () => [
      // Presigned POST uploads act with the task role's credentials; the bucket is SSE-KMS.
      ['s3:PutObject', () => st().uploadsBucket, 'objects'],
      ['kms:GenerateDataKey', () => st().dataKey],
      ['kms:Encrypt', () => st().dataKey],
      // Presigned variant GETs, likewise.
      ['s3:GetObject', () => st().mediaBucket, 'objects'],
      ['kms:Decrypt', () => st().dataKey],
      ...dynamo(),
      // Client events.
      ...publish,
    ],
    'prism-resize': () => [
      ...consume('resizeQueue'),
      // HeadObject + GetObject of the original, then variants, the manifest or failure record, copies.
      ['s3:GetObject', () => st().uploadsBucket, 'objects'],
      ['kms:Decrypt', () => st().dataKey],
      ['s3:PutObject', () => st().mediaBucket, 'objects'],
      ['kms:GenerateDataKey', () => st().dataKey],
    ],
    'prism-archiver': () => [
      ...consume('archiveQueue'),
      ['s3:PutObject', () => st().archiveBucket, 'objects'],
      ['kms:GenerateDataKey', () => st().dataKey],
    ],
    'prism-metadata': () => [
      ...consume('metadataQueue'),
      // Manifests and failure records.
      ['s3:GetObject', () => st().mediaBucket, 'objects'],
      ['kms:Decrypt', () => st().dataKey],
      ...dynamo(),
      // batch.completed.
      ...publish,
    ],
  };

  test('the DynamoDB calls read from the adapter are the ones expected (the reader works)', () => {
    expect(sorted(dynamoActions())).toEqual(
      // DeleteItem: the expiry index and the webhook outbox (deleted outright, and inside transactions).
      sorted(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:Query', 'dynamodb:BatchGetItem', 'dynamodb:BatchWriteItem']),
    );
  });

  test.each(ALL)('%s: the task role allows every call the binary makes', (binary) => {
    const role = container(s, binary).taskRoleId;
    const missing = NEEDS[binary]()
      .filter(([action, resource, objects]) => allowing(role, action, lid(resource()), objects === 'objects').length === 0)
      .map(([action, resource, objects]) => `${action} on ${lid(resource())}${objects ? '/*' : ''}`);
    expect(missing).toEqual([]);
  });

  test.each(ALL)('%s: the task role reaches no stateful resource beyond those', (binary) => {
    const role = container(s, binary).taskRoleId;
    const needed = new Set(NEEDS[binary]().map(([, resource]) => lid(resource())));
    const statefulIds = Object.keys(s.stateful_.toJSON().Resources);
    const reached = new Set(
      roleStatements(s.compute_, role).flatMap((x) => statefulIds.filter((id) => JSON.stringify(x.Resource).includes(id))),
    );
    expect(sorted(reached)).toEqual(sorted(needed));
  });

  test.each(QUEUE_WORKERS)('%s: may protect its own tasks from scale-in (the agent calls ECS with the task role)', (binary) => {
    const role = container(s, binary).taskRoleId;
    s.compute_.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: role }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Action: ['ecs:GetTaskProtection', 'ecs:UpdateTaskProtection'],
            Resource: {
              'Fn::Join': ['', Match.arrayWith([':task/', { Ref: lid(s.compute.cluster) }, '/*'])],
            },
          }),
        ]),
      },
    });
  });

  test('the API, which holds no messages, has no task-protection or queue permissions', () => {
    const actions = roleStatements(s.compute_, container(s, 'prism-api').taskRoleId).flatMap((x) => x.Action);
    expect(actions.filter((a) => a.startsWith('ecs:') || a.startsWith('sqs:'))).toEqual([]);
  });

  test('each secret is readable by the one execution role that injects it; no task role reads secrets', () => {
    const readers = (secret: IConstruct) =>
      Object.values(s.compute_.findResources('AWS::IAM::Policy'))
        .filter((p) =>
          (p.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[]).some(
            (x) => JSON.stringify(x.Action).includes('secretsmanager:GetSecretValue') && JSON.stringify(x.Resource).includes(lid(secret)),
          ),
        )
        .flatMap((p) => (p.Properties.Roles as { Ref: string }[]).map((r) => r.Ref));
    expect(readers(s.stateful.callbackSigningSecret)).toEqual([container(s, 'prism-metadata').executionRoleId]);
    expect(readers(s.stateful.apiTokenSecret)).toEqual([container(s, 'prism-api').executionRoleId]);
    for (const binary of ALL) {
      const actions = roleStatements(s.compute_, container(s, binary).taskRoleId).flatMap((x) => x.Action);
      expect(actions.filter((a) => a.startsWith('secretsmanager:'))).toEqual([]);
    }
    s.compute_.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: container(s, 'prism-metadata').executionRoleId }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Effect: 'Allow',
            Action: ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue'],
            Resource: { 'Fn::ImportValue': Match.stringLikeRegexp(`Ref${lid(s.stateful.callbackSigningSecret)}`) },
          },
        ]),
      },
    });
  });
});

test('every deployed binary has a contract and a Rust source entry', () => {
  expect(sorted(Object.keys(CONTRACT))).toEqual(sorted(Object.keys(BINARIES)));
  expect(sorted(ALL)).toEqual(sorted(Object.keys(BINARIES)));
});
