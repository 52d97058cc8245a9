/**
 * Compute stack: network, cluster, worker services (size, env, health, stop timeout, scaling),
 * the API behind its load balancer, and least-privilege task roles.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Match } from 'aws-cdk-lib/assertions';
import { actionsOn, roleActions, roleStatements, synthPrism, Synthesized } from './helpers';
import { ALB_IDLE_TIMEOUT, API_HEADER_READ_TIMEOUT, API_MAX_WAIT } from '../lib/constructs/upload-api';

let s: Synthesized;
beforeAll(() => {
  s = synthPrism();
});

const taskDefinition = (prefix: string) => {
  const entry = Object.entries(s.compute_.findResources('AWS::ECS::TaskDefinition')).find(([id]) => id.startsWith(`${prefix}Task`));
  if (!entry) throw new Error(`no task definition ${prefix}`);
  return entry[1].Properties;
};
const container = (prefix: string) => taskDefinition(prefix).ContainerDefinitions[0];
const env = (prefix: string): Record<string, unknown> =>
  Object.fromEntries((container(prefix).Environment as { Name: string; Value: unknown }[]).map((e) => [e.Name, e.Value]));

const workers: [string, string, string, string][] = [
  // construct prefix, binary, queue logical-ID fragment, DLQ logical-ID fragment
  ['Resize', 'prism-resize', 'ResizeQueueC', 'ResizeQueueDeadLetterQueue'],
  ['Archiver', 'prism-archiver', 'ArchiveQueueE', 'ArchiveQueueDeadLetterQueue'],
  ['Metadata', 'prism-metadata', 'MetadataQueue3', 'MetadataQueueDeadLetterQueue'],
];

describe('network', () => {
  test('default: public subnets, no NAT gateway, gateway endpoints for S3 and DynamoDB', () => {
    s.compute_.resourceCountIs('AWS::EC2::NatGateway', 0);
    s.compute_.resourcePropertiesCountIs('AWS::EC2::VPCEndpoint', { VpcEndpointType: 'Gateway' }, 2);
    s.compute_.resourcePropertiesCountIs('AWS::EC2::VPCEndpoint', { VpcEndpointType: 'Interface' }, 0);
    s.compute_.resourcePropertiesCountIs('AWS::ECS::Service', {
      NetworkConfiguration: { AwsvpcConfiguration: { AssignPublicIp: 'ENABLED' } },
    }, 4);
  });

  test('natGateways=1: one NAT, tasks in private subnets without public IPs', () => {
    const nat = synthPrism({ natGateways: 1 });
    nat.compute_.resourceCountIs('AWS::EC2::NatGateway', 1);
    nat.compute_.resourcePropertiesCountIs('AWS::ECS::Service', {
      NetworkConfiguration: { AwsvpcConfiguration: { AssignPublicIp: 'DISABLED' } },
    }, 4);
  });

  test('rejected traffic is flow-logged', () => {
    s.compute_.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'REJECT', LogDestinationType: 'cloud-watch-logs' });
  });

  test('worker security groups accept no inbound traffic', () => {
    for (const [prefix] of workers) {
      const sg = Object.entries(s.compute_.findResources('AWS::EC2::SecurityGroup')).find(([id]) => id.startsWith(`${prefix}SecurityGroup`));
      expect(sg?.[1].Properties.SecurityGroupIngress).toBeUndefined();
    }
    // The only ingress rule into a task security group is the ALB → API port 8080.
    const ingress = Object.values(s.compute_.findResources('AWS::EC2::SecurityGroupIngress'));
    expect(ingress).toHaveLength(1);
    expect(ingress[0].Properties).toEqual(expect.objectContaining({ FromPort: 8080, ToPort: 8080, IpProtocol: 'tcp' }));
  });
});

describe('conventions', () => {
  test('no physical names on compute resources', () => {
    s.compute_.resourcePropertiesCountIs('AWS::ECS::Cluster', { ClusterName: Match.anyValue() }, 0);
    s.compute_.resourcePropertiesCountIs('AWS::ECS::Service', { ServiceName: Match.anyValue() }, 0);
    s.compute_.resourcePropertiesCountIs('AWS::ElasticLoadBalancingV2::LoadBalancer', { Name: Match.anyValue() }, 0);
    s.compute_.resourcePropertiesCountIs('AWS::Logs::LogGroup', { LogGroupName: Match.anyValue() }, 0);
    s.compute_.resourcePropertiesCountIs('AWS::IAM::Role', { RoleName: Match.anyValue() }, 0);
    s.compute_.resourcePropertiesCountIs('AWS::CloudWatch::Dashboard', { DashboardName: Match.anyValue() }, 0);
  });

  test('stacks and constructs never read process.env (only bin/app.ts does)', () => {
    const libDir = path.join(__dirname, '..', 'lib');
    const files = (dir: string): string[] =>
      fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name)) : [path.join(dir, e.name)]));
    for (const file of files(libDir).filter((f) => f.endsWith('.ts'))) {
      expect({ file, reads: fs.readFileSync(file, 'utf8').includes('process.env') }).toEqual({ file, reads: false });
    }
  });
});

describe('cluster', () => {
  test('container insights on, Fargate and Fargate Spot capacity providers', () => {
    s.compute_.hasResourceProperties('AWS::ECS::Cluster', { ClusterSettings: [{ Name: 'containerInsights', Value: 'enabled' }] });
    s.compute_.hasResourceProperties('AWS::ECS::ClusterCapacityProviderAssociations', { CapacityProviders: ['FARGATE', 'FARGATE_SPOT'] });
  });
});

describe('worker services', () => {
  test('one Fargate service per worker plus the API', () => {
    s.compute_.resourceCountIs('AWS::ECS::Service', 4);
    s.compute_.resourceCountIs('AWS::ECS::TaskDefinition', 4);
  });

  test('sized per worker: resize 2 vCPU / 4 GiB, archiver and metadata 0.25 vCPU / 0.5 GiB, API 0.5 vCPU / 1 GiB', () => {
    expect([taskDefinition('Resize').Cpu, taskDefinition('Resize').Memory]).toEqual(['2048', '4096']);
    expect([taskDefinition('Archiver').Cpu, taskDefinition('Archiver').Memory]).toEqual(['256', '512']);
    expect([taskDefinition('Metadata').Cpu, taskDefinition('Metadata').Memory]).toEqual(['256', '512']);
    expect([taskDefinition('Api').Cpu, taskDefinition('Api').Memory]).toEqual(['512', '1024']);
  });

  test.each(workers)('%s: health check runs `%s healthcheck`, stopTimeout 40 s > 25 s drain', (prefix, binary) => {
    const c = container(prefix);
    expect(c.HealthCheck).toEqual(expect.objectContaining({ Command: ['CMD', `/usr/local/bin/${binary}`, 'healthcheck'] }));
    expect(c.StopTimeout).toBe(40);
    expect(Number(env(prefix).PRISM__SHUTDOWN__DRAIN_TIMEOUT_SECS)).toBeLessThanOrEqual(c.StopTimeout - 5);
    expect(c.PortMappings).toEqual([expect.objectContaining({ ContainerPort: 9090 })]);
  });

  test.each(workers)('%s: environment contract (backend, region, resources, own queue and DLQ)', (prefix, _binary, queue, dlq) => {
    const e = env(prefix);
    expect(e).toEqual(
      expect.objectContaining({
        PRISM__BACKEND: 'aws',
        PRISM__AWS__REGION: 'us-east-1',
        PRISM__LOG__FORMAT: 'json',
        PRISM__METRICS__LISTEN_ADDR: '0.0.0.0:9090',
        PRISM__SHUTDOWN__DRAIN_TIMEOUT_SECS: '25',
      }),
    );
    for (const [key, fragment] of [
      ['PRISM__RESOURCES__UPLOADS_BUCKET', 'RefUploadsBucket'],
      ['PRISM__RESOURCES__MEDIA_BUCKET', 'RefMediaBucket'],
      ['PRISM__RESOURCES__ARCHIVE_BUCKET', 'RefArchiveBucket'],
      ['PRISM__RESOURCES__TOPIC_ARN', 'RefEventsTopic'],
      ['PRISM__RESOURCES__TABLE_NAME', 'RefMetadataTable'],
      ['PRISM__RESOURCES__QUEUE_URL', `Ref${queue}`],
      ['PRISM__RESOURCES__DLQ_URL', `Ref${dlq}`],
    ]) {
      expect(JSON.stringify(e[key])).toContain(fragment);
    }
  });

  test.each(workers)('%s: logs to its own log group kept one month', (prefix) => {
    const logConfig = container(prefix).LogConfiguration;
    expect(logConfig.LogDriver).toBe('awslogs');
    const groupId = logConfig.Options['awslogs-group'].Ref as string;
    expect(s.compute_.toJSON().Resources[groupId].Properties.RetentionInDays).toBe(30);
  });

  test('one image, built once: a staged Docker asset of docker/worker.Dockerfile, context limited to the Rust sources', () => {
    const assembly = s.app.synth();
    const manifest = JSON.parse(fs.readFileSync(path.join(assembly.directory, `${s.compute.artifactId}.assets.json`), 'utf8'));
    const images = Object.values(manifest.dockerImages) as { source: Record<string, any> }[];
    expect(images).toHaveLength(1);
    for (const { source } of images) {
      // No build arguments: the image holds every binary.
      expect(source.dockerBuildArgs).toBeUndefined();
      expect(source.dockerFile).toBe('docker/worker.Dockerfile');
      expect(source.platform).toBe('linux/amd64');
      const staged = fs.readdirSync(path.join(assembly.directory, source.directory)).sort();
      // Only what the build needs: no cdk/, loadtest/, target/, .git, README.
      expect(staged.filter((f) => !['Cargo.lock', 'Cargo.toml', 'docker', 'shared', 'workers', 'rust-toolchain.toml', '.cargo'].includes(f))).toEqual([]);
      expect(staged).toEqual(expect.arrayContaining(['Cargo.toml', 'Cargo.lock', 'docker', 'shared', 'workers']));
      expect(fs.readdirSync(path.join(assembly.directory, source.directory, 'docker'))).toEqual(['worker.Dockerfile']);
    }
  });

  test('workers run on Fargate Spot by default, on-demand with workerSpot=false', () => {
    s.compute_.resourcePropertiesCountIs('AWS::ECS::Service', { CapacityProviderStrategy: [{ CapacityProvider: 'FARGATE_SPOT', Weight: 1 }] }, 3);
    const onDemand = synthPrism({ workerSpot: false });
    onDemand.compute_.resourcePropertiesCountIs('AWS::ECS::Service', { CapacityProviderStrategy: [{ CapacityProvider: 'FARGATE', Weight: 1 }] }, 3);
  });

  test('deployments roll back on failure', () => {
    s.compute_.resourcePropertiesCountIs('AWS::ECS::Service', {
      DeploymentConfiguration: Match.objectLike({ DeploymentCircuitBreaker: { Enable: true, Rollback: true } }),
    }, 4);
  });
});

describe('scaling', () => {
  test('no CPU or memory target tracking anywhere', () => {
    for (const p of Object.values(s.compute_.findResources('AWS::ApplicationAutoScaling::ScalingPolicy'))) {
      const predefined = p.Properties.TargetTrackingScalingPolicyConfiguration?.PredefinedMetricSpecification?.PredefinedMetricType;
      expect(predefined).not.toBe('ECSServiceAverageCPUUtilization');
      expect(predefined).not.toBe('ECSServiceAverageMemoryUtilization');
    }
  });

  test.each([
    ['Resize', 21],
    ['Archiver', 60000],
    ['Metadata', 500],
  ])('%s: target tracking on backlog per task = visible ÷ running, target %d', (prefix, target) => {
    const policy = Object.entries(s.compute_.findResources('AWS::ApplicationAutoScaling::ScalingPolicy')).find(([id]) =>
      id.startsWith(`${prefix}BacklogPerTaskScaling`),
    )?.[1].Properties;
    expect(policy.PolicyType).toBe('TargetTrackingScaling');
    const config = policy.TargetTrackingScalingPolicyConfiguration;
    expect(config.TargetValue).toBe(target);
    const metrics = config.CustomizedMetricSpecification.Metrics;
    expect(metrics).toEqual([
      expect.objectContaining({
        Id: 'visible',
        ReturnData: false,
        MetricStat: expect.objectContaining({
          Metric: expect.objectContaining({ Namespace: 'AWS/SQS', MetricName: 'ApproximateNumberOfMessagesVisible' }),
        }),
      }),
      expect.objectContaining({
        Id: 'running',
        ReturnData: false,
        MetricStat: expect.objectContaining({
          Metric: expect.objectContaining({ Namespace: 'ECS/ContainerInsights', MetricName: 'RunningTaskCount' }),
        }),
      }),
      expect.objectContaining({ Id: 'backlogPerTask', Expression: 'visible / running', ReturnData: true }),
    ]);
    expect(JSON.stringify(metrics[0].MetricStat.Metric.Dimensions)).toContain(prefix === 'Archiver' ? 'ArchiveQueue' : `${prefix}Queue`);
  });

  test('resize and archiver scale from zero with a step policy; metadata keeps one task', () => {
    const targets = s.compute_.findResources('AWS::ApplicationAutoScaling::ScalableTarget');
    const bounds = Object.fromEntries(
      Object.entries(targets).map(([id, t]) => [id.replace(/Service.*/, ''), [t.Properties.MinCapacity, t.Properties.MaxCapacity]]),
    );
    expect(bounds).toEqual({ Resize: [0, 10], Archiver: [0, 2], Metadata: [1, 4], Api: [1, 4] });
    const steps = Object.entries(s.compute_.findResources('AWS::ApplicationAutoScaling::ScalingPolicy')).filter(
      ([, p]) => p.Properties.PolicyType === 'StepScaling',
    );
    expect(steps.map(([id]) => id.replace(/Service.*/, '')).sort()).toEqual(['Archiver', 'Resize']);
    for (const [, p] of steps) {
      expect(p.Properties.StepScalingPolicyConfiguration).toEqual(
        expect.objectContaining({ AdjustmentType: 'ChangeInCapacity', StepAdjustments: [{ MetricIntervalLowerBound: 0, ScalingAdjustment: 1 }] }),
      );
    }
    s.compute_.resourcePropertiesCountIs('AWS::CloudWatch::Alarm', {
      Metrics: Match.arrayWith([Match.objectLike({ Expression: 'IF(FILL(desired, 0) == 0 AND visible > 0, 1, 0)' })]),
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    }, 2);
  });

  test('context bounds reach the scalable targets', () => {
    const custom = synthPrism({ resizeMinTasks: 1, resizeMaxTasks: 20 });
    custom.compute_.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 1, MaxCapacity: 20 });
    // With a floor of one task there is nothing to start from zero.
    const steps = Object.keys(custom.compute_.findResources('AWS::ApplicationAutoScaling::ScalingPolicy')).filter((id) =>
      id.startsWith('ResizeServiceTaskCountTargetStartFromZero'),
    );
    expect(steps).toHaveLength(0);
  });

  test('API scales on ALB requests per target', () => {
    s.compute_.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        PredefinedMetricSpecification: Match.objectLike({ PredefinedMetricType: 'ALBRequestCountPerTarget' }),
        TargetValue: 1200,
      }),
    });
  });
});

describe('API', () => {
  test('internet-facing ALB, invalid headers dropped, access logs to the log bucket', () => {
    s.compute_.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      Scheme: 'internet-facing',
      LoadBalancerAttributes: Match.arrayWith([
        { Key: 'routing.http.drop_invalid_header_fields.enabled', Value: 'true' },
        { Key: 'access_logs.s3.enabled', Value: 'true' },
        { Key: 'access_logs.s3.prefix', Value: 'alb' },
      ]),
    });
  });

  test('the ALB idle timeout outlasts the longest long-poll (?wait=60)', () => {
    s.compute_.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      LoadBalancerAttributes: Match.arrayWith([{ Key: 'idle_timeout.timeout_seconds', Value: '90' }]),
    });
    expect(ALB_IDLE_TIMEOUT.toSeconds()).toBeGreaterThan(API_MAX_WAIT.toSeconds());
  });

  test("the API's keep-alive (header-read) timeout outlasts the ALB's idle timeout", () => {
    const env = container('Api').Environment as { Name: string; Value: string }[];
    const v = env.find((e) => e.Name === 'PRISM__HTTP__HEADER_READ_TIMEOUT_SECS');
    expect(Number(v?.Value)).toBe(API_HEADER_READ_TIMEOUT.toSeconds());
    expect(API_HEADER_READ_TIMEOUT.toSeconds()).toBeGreaterThan(ALB_IDLE_TIMEOUT.toSeconds());
  });

  test.each([
    ['plain HTTP', {}],
    ['HTTPS', { certificateArn: 'arn:aws:acm:us-east-1:111111111111:certificate/abc' }],
  ])('%s: /metrics is answered 404 by the listener, before any target', (_name, ctx) => {
    const t = _name === 'plain HTTP' ? s.compute_ : synthPrism(ctx).compute_;
    t.hasResourceProperties('AWS::ElasticLoadBalancingV2::ListenerRule', {
      Priority: 1,
      Conditions: [Match.objectLike({ Field: 'path-pattern', PathPatternConfig: { Values: ['/metrics', '/metrics/*'] } })],
      Actions: [Match.objectLike({ Type: 'fixed-response', FixedResponseConfig: Match.objectLike({ StatusCode: '404' }) })],
    });
    // The rule sits on the listener that forwards to the API (443 with a certificate).
    const rules = Object.values(t.findResources('AWS::ElasticLoadBalancingV2::ListenerRule'));
    const listeners = t.findResources('AWS::ElasticLoadBalancingV2::Listener');
    const forwarding = Object.entries(listeners).filter(([, l]) =>
      JSON.stringify(l.Properties.DefaultActions).includes('forward'),
    );
    expect(forwarding).toHaveLength(1);
    expect(rules.some((r) => JSON.stringify(r.Properties.ListenerArn) === JSON.stringify({ Ref: forwarding[0][0] }))).toBe(true);
  });

  test('without a certificate: a plain HTTP listener on 80', () => {
    s.compute_.resourceCountIs('AWS::ElasticLoadBalancingV2::Listener', 1);
    s.compute_.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', { Port: 80, Protocol: 'HTTP' });
  });

  test('with a certificate: HTTPS on 443 with a TLS 1.2+ policy, 80 redirects', () => {
    const cert = 'arn:aws:acm:us-east-1:111111111111:certificate/abc';
    const https = synthPrism({ certificateArn: cert });
    https.compute_.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Port: 443,
      Protocol: 'HTTPS',
      Certificates: [{ CertificateArn: cert }],
      SslPolicy: Match.stringLikeRegexp('TLS'),
    });
    https.compute_.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Port: 80,
      DefaultActions: [Match.objectLike({ Type: 'redirect', RedirectConfig: Match.objectLike({ Port: '443', Protocol: 'HTTPS' }) })],
    });
    expect(JSON.stringify(https.compute_.findOutputs('ApiUrl'))).toContain('https://');
  });

  test('target group health-checks /healthz on 8080', () => {
    s.compute_.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      Port: 8080,
      Protocol: 'HTTP',
      HealthCheckPath: '/healthz',
      Matcher: { HttpCode: '200' },
      TargetType: 'ip',
    });
  });

  test('container: listen address, health check, stopTimeout, token hashes from Secrets Manager (not plaintext)', () => {
    const c = container('Api');
    expect(env('Api')).toEqual(expect.objectContaining({ PRISM__HTTP__LISTEN_ADDR: '0.0.0.0:8080', PRISM__BACKEND: 'aws' }));
    expect(env('Api').PRISM__AUTH__TOKEN_SHA256S).toBeUndefined();
    expect(c.Secrets).toEqual([{ Name: 'PRISM__AUTH__TOKEN_SHA256S', ValueFrom: expect.anything() }]);
    expect(JSON.stringify(c.Secrets)).toContain('ApiTokenHashes');
    expect(c.HealthCheck.Command).toEqual(['CMD', '/usr/local/bin/prism-api', 'healthcheck']);
    expect(c.StopTimeout).toBe(40);
  });

  test('outputs: API URL, dashboard URL, and the services to roll after a secret changes', () => {
    s.compute_.hasOutput('ApiUrl', {});
    s.compute_.hasOutput('DashboardUrl', {});
    s.compute_.hasOutput('ApiServiceName', { Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('^ApiService'), 'Name'] } });
    s.compute_.hasOutput('MetadataServiceName', { Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('^MetadataService'), 'Name'] } });
  });
});

describe('least-privilege task roles', () => {
  const dynamo = (a: string) => a.startsWith('dynamodb:');
  const s3Write = (a: string) => a.startsWith('s3:PutObject') || a.startsWith('s3:DeleteObject');
  const s3Read = (a: string) => a.startsWith('s3:GetObject');

  test('resize: reads uploads, writes media, no table, no topic, no archive', () => {
    const all = roleActions(s.compute_, 'ResizeTaskTaskRole');
    expect(all.filter(dynamo)).toEqual([]);
    expect(all).not.toContain('sns:Publish');
    expect(actionsOn(s.compute_, 'ResizeTaskTaskRole', 'UploadsBucket')).toEqual(expect.arrayContaining(['s3:GetObject*']));
    expect(actionsOn(s.compute_, 'ResizeTaskTaskRole', 'UploadsBucket').filter(s3Write)).toEqual([]);
    expect(actionsOn(s.compute_, 'ResizeTaskTaskRole', 'MediaBucket')).toEqual(expect.arrayContaining(['s3:PutObject']));
    expect(actionsOn(s.compute_, 'ResizeTaskTaskRole', 'MediaBucket').filter(s3Read)).toEqual([]);
    expect(actionsOn(s.compute_, 'ResizeTaskTaskRole', 'ArchiveBucket')).toEqual([]);
  });

  test('archiver: writes the archive only; cannot read uploads, media or the archive', () => {
    const all = roleActions(s.compute_, 'ArchiverTaskTaskRole');
    expect(all.filter(s3Read)).toEqual([]);
    expect(all.filter(dynamo)).toEqual([]);
    expect(all).not.toContain('sns:Publish');
    expect(actionsOn(s.compute_, 'ArchiverTaskTaskRole', 'ArchiveBucket')).toEqual(expect.arrayContaining(['s3:PutObject']));
    expect(actionsOn(s.compute_, 'ArchiverTaskTaskRole', 'UploadsBucket')).toEqual([]);
    expect(actionsOn(s.compute_, 'ArchiverTaskTaskRole', 'MediaBucket')).toEqual([]);
  });

  test('metadata: reads media, reads/writes the table, publishes to the topic; no bucket writes, no uploads', () => {
    const all = roleActions(s.compute_, 'MetadataTaskTaskRole');
    expect(all.filter(s3Write)).toEqual([]);
    expect(actionsOn(s.compute_, 'MetadataTaskTaskRole', 'MediaBucket')).toEqual(expect.arrayContaining(['s3:GetObject*']));
    expect(actionsOn(s.compute_, 'MetadataTaskTaskRole', 'UploadsBucket')).toEqual([]);
    expect(actionsOn(s.compute_, 'MetadataTaskTaskRole', 'MetadataTable')).toEqual(
      expect.arrayContaining(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:Query']),
    );
    expect(actionsOn(s.compute_, 'MetadataTaskTaskRole', 'EventsTopic')).toEqual(['sns:Publish']);
  });

  test('api: presigns uploads (PutObject), reads media, reads/writes the table, publishes client events; consumes no queue', () => {
    const all = roleActions(s.compute_, 'ApiTaskTaskRole');
    expect(actionsOn(s.compute_, 'ApiTaskTaskRole', 'UploadsBucket')).toEqual(expect.arrayContaining(['s3:PutObject']));
    expect(actionsOn(s.compute_, 'ApiTaskTaskRole', 'UploadsBucket').filter(s3Read)).toEqual([]);
    expect(actionsOn(s.compute_, 'ApiTaskTaskRole', 'MediaBucket').filter(s3Write)).toEqual([]);
    expect(actionsOn(s.compute_, 'ApiTaskTaskRole', 'MediaBucket')).toEqual(expect.arrayContaining(['s3:GetObject*']));
    expect(actionsOn(s.compute_, 'ApiTaskTaskRole', 'MetadataTable')).toEqual(expect.arrayContaining(['dynamodb:PutItem', 'dynamodb:Query']));
    expect(actionsOn(s.compute_, 'ApiTaskTaskRole', 'EventsTopic')).toEqual(['sns:Publish']);
    expect(all.filter((a) => a.startsWith('sqs:'))).toEqual([]);
    expect(actionsOn(s.compute_, 'ApiTaskTaskRole', 'ArchiveBucket')).toEqual([]);
  });

  test('SSE-KMS writers get GenerateDataKey on the data key (presigned PUTs run as the task role)', () => {
    for (const role of ['ResizeTaskTaskRole', 'ArchiverTaskTaskRole', 'ApiTaskTaskRole']) {
      expect(actionsOn(s.compute_, role, 'DataKey')).toEqual(expect.arrayContaining(['kms:GenerateDataKey*']));
    }
    // Publishers to the KMS-encrypted topic need the topic key.
    for (const role of ['MetadataTaskTaskRole', 'ApiTaskTaskRole']) {
      expect(actionsOn(s.compute_, role, 'TopicKey')).toEqual(expect.arrayContaining(['kms:GenerateDataKey*', 'kms:Decrypt']));
    }
  });

  test.each(workers)('%s: consumes only its own queue and sends only to its own DLQ', (prefix, _binary, queue, dlq) => {
    const role = `${prefix}TaskTaskRole`;
    const sqs = roleStatements(s.compute_, role).filter((st) => st.Action.some((a) => a.startsWith('sqs:')));
    const receive = sqs.filter((st) => st.Action.includes('sqs:ReceiveMessage'));
    expect(receive).toHaveLength(1);
    expect(JSON.stringify(receive[0].Resource)).toContain(queue);
    expect(receive[0].Action).toEqual(expect.arrayContaining(['sqs:DeleteMessage', 'sqs:ChangeMessageVisibility']));
    const send = sqs.filter((st) => st.Action.includes('sqs:SendMessage'));
    expect(send).toHaveLength(1);
    expect(JSON.stringify(send[0].Resource)).toContain(dlq);
    for (const st of sqs) {
      expect(JSON.stringify(st.Resource)).toMatch(new RegExp(`${queue}|${dlq}`));
    }
  });

  test.each(workers)('%s: may set its own scale-in protection, on tasks of this cluster only', (prefix) => {
    const st = roleStatements(s.compute_, `${prefix}TaskTaskRole`).find((x) => x.Action.includes('ecs:UpdateTaskProtection'));
    expect(st?.Action.sort()).toEqual(['ecs:GetTaskProtection', 'ecs:UpdateTaskProtection']);
    expect(JSON.stringify(st?.Resource)).toContain(':task/');
    expect(JSON.stringify(st?.Resource)).toContain('ClusterEB0386A7');
  });

  test('no task role has a wildcard service action or Resource "*"', () => {
    for (const role of ['ResizeTaskTaskRole', 'ArchiverTaskTaskRole', 'MetadataTaskTaskRole', 'ApiTaskTaskRole']) {
      for (const st of roleStatements(s.compute_, role)) {
        expect(st.Action.filter((a) => a.endsWith(':*'))).toEqual([]);
        expect(st.Resource).not.toContain('*');
      }
    }
  });
});
