/**
 * Compute stack: VPC, ECS cluster, the three queue workers, the API behind its load balancer, and
 * the operations dashboard with its alarms. Nothing here holds data; it can be destroyed and
 * redeployed without losing anything (log groups are retained by default).
 *
 * Networking choice (see also cdk/README.md, "Network and its cost"):
 *
 *   natGateways = 0 (default): two public subnets, **no NAT gateway**. Tasks get a public IPv4
 *   address so they can reach SQS, SNS, ECR, CloudWatch Logs and Secrets Manager over TLS; their
 *   security groups allow no inbound traffic at all (the API tasks accept 8080 only from the ALB's
 *   security group). S3 and DynamoDB, which carry the image bytes and most calls, go through free
 *   *gateway* VPC endpoints. Idle cost of the network: $0 for routing, plus AWS's public-IPv4
 *   charge ($0.005/h per address: ALB nodes and running tasks).
 *
 *   natGateways ≥ 1: tasks move to private subnets behind that many NAT gateways (≈ $33/month
 *   each plus $0.045/GB processed, us-east-1), with no public addresses on tasks. Interface
 *   endpoints for the remaining services would cost ≈ $7.30/month each per AZ (7 services × 2 AZs
 *   ≈ $102/month), more than one NAT, so they are not offered.
 */
import * as path from 'path';
import { CfnOutput, Duration, IgnoreMode, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecrAssets from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { CpuArch, TaskBounds } from '../config';
import { OperationsDashboard } from '../constructs/dashboard';
import { UploadApi } from '../constructs/upload-api';
import { apiCorsEnvironment } from '../cors';
import { WorkerService } from '../constructs/worker-service';
import { acknowledgeGrantWildcards } from '../nag';
import type { StatefulStack } from './stateful-stack';

/** Drain deadline every binary gets (`PRISM__SHUTDOWN__DRAIN_TIMEOUT_SECS`). */
export const DRAIN_TIMEOUT = Duration.seconds(25);
/** SIGTERM → SIGKILL: the drain deadline plus 15 s of slack (Fargate default 30 s, max 120 s). */
export const STOP_TIMEOUT = Duration.seconds(40);

/**
 * Files of the repository root that the image build needs; everything else is excluded from the
 * Docker build context (a `.dockerignore` at the root would belong to another owner). Docker
 * ignore syntax: exclude all, then re-include.
 */
export const IMAGE_CONTEXT_EXCLUDE = [
  '*',
  '!Cargo.toml',
  '!Cargo.lock',
  '!rust-toolchain.toml',
  '!.cargo',
  '!shared',
  '!workers',
  '!docker/worker.Dockerfile',
  '**/target',
  '**/node_modules',
  '**/fuzz/artifacts',
  '**/*.profraw',
];

export interface ComputeStackProps extends StackProps {
  readonly stateful: StatefulStack;
  /** Repository root: the Docker build context of docker/worker.Dockerfile. */
  readonly imageBuildContext: string;
  readonly natGateways: number;
  readonly certificateArn?: string;
  readonly alarmEmail?: string;
  /** OTLP/HTTP collector for spans (`[trace] otlp_endpoint`); none: no export. */
  readonly otlpEndpoint?: string;
  readonly api: TaskBounds;
  readonly resize: TaskBounds;
  readonly archiver: TaskBounds;
  readonly metadata: TaskBounds;
  readonly workerSpot: boolean;
  /** Task and image architecture. @default 'amd64' */
  readonly cpuArchitecture?: CpuArch;
  /** CloudWatch namespace of the binaries' EMF metrics (`PRISM__METRICS__EMF_NAMESPACE`). @default 'prism' */
  readonly metricsNamespace?: string;
  /** Deployment stage, shown on the dashboard. @default '' (none) */
  readonly stage?: string;
  /** A trial deployment: log groups are deleted with the stack. @default false */
  readonly ephemeral?: boolean;
}

/** p95 render time (prism-resize's handling time of successful messages) that alarms. */
export const RENDER_TIME_P95_ALARM = Duration.seconds(60);

/** The binaries in the one image, each run by its own service as the container command. */
export const BINARIES = ['prism-api', 'prism-resize', 'prism-archiver', 'prism-metadata'] as const;

/** Seconds between two EMF flushes of a binary (`PRISM__METRICS__EMF_INTERVAL_SECS`): CloudWatch's standard resolution. */
export const EMF_INTERVAL_SECONDS = 60;

export class ComputeStack extends Stack {
  public readonly vpc: ec2.Vpc;
  public readonly cluster: ecs.Cluster;
  public readonly resize: WorkerService;
  public readonly archiver: WorkerService;
  public readonly metadata: WorkerService;
  public readonly api: UploadApi;
  public readonly operations: OperationsDashboard;
  /** The one image every service runs (built once per deploy). */
  public readonly image: ecs.ContainerImage;

  constructor(scope: Construct, id: string, props: ComputeStackProps) {
    super(scope, id, props);
    const data = props.stateful;
    const behindNat = props.natGateways > 0;

    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: props.natGateways,
      subnetConfiguration: behindNat
        ? [
            { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
            { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 22 },
          ]
        : [{ name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 22 }],
      gatewayEndpoints: {
        S3: { service: ec2.GatewayVpcEndpointAwsService.S3 },
        DynamoDB: { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB },
      },
    });
    // Rejected traffic only: enough to audit the "no inbound" claim, cheap at idle.
    this.vpc.addFlowLog('RejectedTraffic', {
      trafficType: ec2.FlowLogTrafficType.REJECT,
      destination: ec2.FlowLogDestination.toCloudWatchLogs(
        new logs.LogGroup(this, 'FlowLogs', {
          retention: logs.RetentionDays.ONE_MONTH,
          removalPolicy: props.ephemeral ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
        }),
      ),
    });
    const taskSubnets: ec2.SubnetSelection = { subnetType: behindNat ? ec2.SubnetType.PRIVATE_WITH_EGRESS : ec2.SubnetType.PUBLIC };

    this.cluster = new ecs.Cluster(this, 'Cluster', {
      vpc: this.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
      enableFargateCapacityProviders: true,
    });

    const arch = props.cpuArchitecture ?? 'amd64';
    // One asset for all four services: staged at synth (no Docker needed), built and pushed once
    // by `cdk deploy`, for the tasks' architecture.
    this.image = ecs.ContainerImage.fromAsset(props.imageBuildContext, {
      file: path.join('docker', 'worker.Dockerfile'),
      platform: arch === 'arm64' ? ecrAssets.Platform.LINUX_ARM64 : ecrAssets.Platform.LINUX_AMD64,
      exclude: IMAGE_CONTEXT_EXCLUDE,
      ignoreMode: IgnoreMode.DOCKER,
    });
    const image = this.image;
    const cpuArchitecture = arch === 'arm64' ? ecs.CpuArchitecture.ARM64 : ecs.CpuArchitecture.X86_64;
    const logRemoval = props.ephemeral ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN;

    // The environment contract with the Rust binaries (layered config: PRISM__SECTION__KEY).
    const environment: Record<string, string> = {
      PRISM__BACKEND: 'aws',
      PRISM__AWS__REGION: this.region,
      PRISM__LOG__FORMAT: 'json',
      // Application metrics: CloudWatch embedded metric format on stdout, which the awslogs
      // driver ships to CloudWatch Logs (no collector, no PutMetricData permission).
      PRISM__METRICS__EMF: 'true',
      PRISM__METRICS__EMF_NAMESPACE: props.metricsNamespace ?? 'prism',
      PRISM__METRICS__EMF_INTERVAL_SECS: String(EMF_INTERVAL_SECONDS),
      PRISM__SHUTDOWN__DRAIN_TIMEOUT_SECS: String(DRAIN_TIMEOUT.toSeconds()),
      PRISM__RESOURCES__UPLOADS_BUCKET: data.uploadsBucket.bucketName,
      PRISM__RESOURCES__MEDIA_BUCKET: data.mediaBucket.bucketName,
      PRISM__RESOURCES__ARCHIVE_BUCKET: data.archiveBucket.bucketName,
      PRISM__RESOURCES__TOPIC_ARN: data.eventsTopic.topicArn,
      PRISM__RESOURCES__TABLE_NAME: data.table.table.tableName,
      ...(props.otlpEndpoint ? { PRISM__TRACE__OTLP_ENDPOINT: props.otlpEndpoint } : {}),
    };
    const common = {
      cluster: this.cluster,
      environment,
      stopTimeout: STOP_TIMEOUT,
      drainTimeout: DRAIN_TIMEOUT,
      logRetention: logs.RetentionDays.ONE_MONTH,
      logRemoval,
      cpuArchitecture,
      subnets: taskSubnets,
      assignPublicIp: !behindNat,
      spot: props.workerSpot,
    };

    // Sizes and backlog targets per worker (see BacklogScaling for the arithmetic).
    this.resize = new WorkerService(this, 'Resize', {
      ...common,
      binary: 'prism-resize',
      image,
      // CPU-bound (decode once, encode N widths × {webp, avif}); AVIF encoding dominates.
      cpu: 2048,
      memoryLimitMiB: 4096,
      work: data.resizeQueue,
      bounds: props.resize,
      // Measured: one 12 MP phone photo (4 widths × WebP + AVIF) costs 5.6 CPU-s in
      // `prism-resize bench` (README); 2 vCPU ÷ 5.6 CPU-s = 0.357 images/s per task; a 60 s
      // queue-wait budget → 21 messages per task.
      scaling: { latencyBudget: Duration.seconds(60), messagesPerSecondPerTask: 2 / 5.6 },
    });
    this.archiver = new WorkerService(this, 'Archiver', {
      ...common,
      binary: 'prism-archiver',
      image,
      cpu: 256,
      memoryLimitMiB: 512,
      work: data.archiveQueue,
      bounds: props.archiver,
      // Appends payloads to compressed NDJSON: ~200 msg/s per task; nobody waits on the archive,
      // so a 5-minute budget → 60 000 per task (in practice one task until a replay storm).
      scaling: { latencyBudget: Duration.minutes(5), messagesPerSecondPerTask: 200 },
    });
    this.metadata = new WorkerService(this, 'Metadata', {
      ...common,
      binary: 'prism-metadata',
      image,
      cpu: 256,
      memoryLimitMiB: 512,
      work: data.metadataQueue,
      // Required with backend = aws: the HMAC key of completion callbacks (workers/metadata aws_deps).
      secrets: { PRISM__CALLBACK__SIGNING_SECRET: ecs.Secret.fromSecretsManager(data.callbackSigningSecret) },
      bounds: props.metadata,
      // A few conditional DynamoDB writes per message: ~50 msg/s per task; producers poll batch
      // status, so a 10 s budget → 500 per task.
      scaling: { latencyBudget: Duration.seconds(10), messagesPerSecondPerTask: 50 },
    });

    this.api = new UploadApi(this, 'Api', {
      cluster: this.cluster,
      image,
      cpuArchitecture,
      logRemoval,
      cpu: 512,
      memoryLimitMiB: 1024,
      environment: {
        ...environment,
        // The API answers CORS for the same origins the buckets grant (one context list).
        ...apiCorsEnvironment(data.allowedOrigins),
        // Stable variant URLs through the CDN instead of presigned GETs.
        ...(data.mediaCdn ? { PRISM__HTTP__MEDIA_BASE_URL: data.mediaCdn.baseUrl } : {}),
      },
      secrets: { PRISM__AUTH__TOKEN_SHA256S: ecs.Secret.fromSecretsManager(data.apiTokenSecret) },
      bounds: props.api,
      certificateArn: props.certificateArn,
      accessLogsBucket: data.accessLogsBucket,
      logRetention: logs.RetentionDays.ONE_MONTH,
      drainTimeout: DRAIN_TIMEOUT,
      stopTimeout: STOP_TIMEOUT,
      taskSubnets,
      assignPublicIp: !behindNat,
    });

    // Least privilege, per binary. KMS permissions on the data/topic keys come with each grant.
    // resize: read originals, write variants + manifest/failure record (and `original` copies).
    data.uploadsBucket.grantRead(this.resize.taskRole);
    data.mediaBucket.grantPut(this.resize.taskRole);
    // archiver: write archive objects only; reading them back is `prism replay`, run by an operator.
    data.archiveBucket.grantPut(this.archiver.taskRole);
    // metadata: read manifests/failure records, upsert status, announce completed batches.
    data.mediaBucket.grantRead(this.metadata.taskRole);
    data.table.table.grantReadWriteData(this.metadata.taskRole);
    data.eventsTopic.grantPublish(this.metadata.taskRole);
    // api: presign uploads (the URL acts with the task role, so it needs PutObject + KMS), presign
    // variant downloads, batch records, client events.
    data.uploadsBucket.grantPut(this.api.taskRole);
    data.mediaBucket.grantRead(this.api.taskRole);
    data.table.table.grantReadWriteData(this.api.taskRole);
    data.eventsTopic.grantPublish(this.api.taskRole);

    // The wildcards those grants generate, acknowledged role by role (see lib/nag.ts).
    acknowledgeGrantWildcards(
      this.resize.taskRole,
      ['s3:GetObject*', 's3:GetBucket*', 's3:List*', 's3:Abort*', 'kms:GenerateDataKey*', 'kms:ReEncrypt*'],
      [data.uploadsBucket, data.mediaBucket],
    );
    acknowledgeGrantWildcards(this.archiver.taskRole, ['s3:Abort*', 'kms:GenerateDataKey*', 'kms:ReEncrypt*'], [data.archiveBucket]);
    acknowledgeGrantWildcards(
      this.metadata.taskRole,
      ['s3:GetObject*', 's3:GetBucket*', 's3:List*', 'kms:GenerateDataKey*', 'kms:ReEncrypt*'],
      [data.mediaBucket],
    );
    acknowledgeGrantWildcards(
      this.api.taskRole,
      ['s3:GetObject*', 's3:GetBucket*', 's3:List*', 's3:Abort*', 'kms:GenerateDataKey*', 'kms:ReEncrypt*'],
      [data.uploadsBucket, data.mediaBucket],
    );

    this.operations = new OperationsDashboard(this, 'Operations', {
      queues: [
        { name: 'resize', work: data.resizeQueue, maxAge: Duration.minutes(10) },
        { name: 'archive', work: data.archiveQueue, maxAge: Duration.minutes(15) },
        { name: 'metadata', work: data.metadataQueue, maxAge: Duration.minutes(5) },
      ],
      services: [
        { name: 'api', service: this.api.service, runningTasks: this.api.runningTasks },
        { name: 'resize', service: this.resize.service, runningTasks: this.resize.runningTasks },
        { name: 'archiver', service: this.archiver.service, runningTasks: this.archiver.runningTasks },
        { name: 'metadata', service: this.metadata.service, runningTasks: this.metadata.runningTasks },
      ],
      loadBalancer: this.api.loadBalancer,
      targetGroup: this.api.targetGroup,
      alarmTopicKey: data.topicKey,
      alarmEmail: props.alarmEmail,
      metricsNamespace: props.metricsNamespace ?? 'prism',
      stage: props.stage ?? '',
      workers: [
        // Measured 5.6 CPU-s for a 12 MP photo on 2 vCPU (README): 60 s at p95 means the
        // fleet is starved or a pathological input class dominates, well before the 300 s
        // visibility timeout.
        { name: 'resize', maxP95: RENDER_TIME_P95_ALARM },
        { name: 'metadata' },
        { name: 'archiver' },
      ],
    });

    new CfnOutput(this, 'ApiUrl', { value: this.api.url, description: 'Base URL for `prism upload --api`' });
    new CfnOutput(this, 'DashboardUrl', {
      value: `https://${this.region}.console.aws.amazon.com/cloudwatch/home?region=${this.region}#dashboards:name=${this.operations.dashboard.dashboardName}`,
    });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.operations.alarmTopic.topicArn });
    new CfnOutput(this, 'ClusterName', { value: this.cluster.clusterName });
    new CfnOutput(this, 'MetricsNamespace', { value: props.metricsNamespace ?? 'prism', description: 'CloudWatch namespace of the EMF application metrics' });
    new CfnOutput(this, 'ApiServiceName', { value: this.api.service.serviceName, description: 'For `aws ecs update-service --force-new-deployment` after changing the token secret' });
    new CfnOutput(this, 'MetadataServiceName', {
      value: this.metadata.service.serviceName,
      description: 'For `aws ecs update-service --force-new-deployment` after changing the callback signing secret',
    });
  }
}
