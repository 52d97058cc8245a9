/**
 * One queue worker (prism-resize, prism-archiver or prism-metadata) as a Fargate service.
 *
 * - The container runs the binary as PID 1 (exec-form ENTRYPOINT in docker/worker.Dockerfile), so
 *   it receives SIGTERM directly. It stops receiving, drains in-flight work for
 *   `PRISM__SHUTDOWN__DRAIN_TIMEOUT_SECS`, and exits. `stopTimeout` (SIGTERM → SIGKILL) is set
 *   above that deadline with slack, so a clean drain is never cut short; unfinished messages
 *   reappear after their visibility timeout.
 * - Scaling is on **backlog per task**, never on CPU: a resize task at 100% CPU is working as
 *   intended, and an idle one waiting on S3 says nothing about the queue. See
 *   {@link BacklogScaling} for the arithmetic. A step policy starts the first task when work
 *   arrives at a service scaled to zero, where backlog ÷ 0 tasks is undefined.
 * - Busy tasks protect themselves from scale-in: the worker calls the ECS agent's task-protection
 *   endpoint (`$ECS_AGENT_URI/task-protection/v1/state`) while it holds messages. Fargate injects
 *   `ECS_AGENT_URI`; the agent calls `ecs:UpdateTaskProtection` with the *task role*, so that
 *   permission (scoped to this cluster's tasks) is granted here.
 * - The task role gets only queue consumption on its own queue and SendMessage on its own DLQ
 *   (explicit dead-lettering); the stack adds the bucket/table/topic grants per worker.
 * - Secrets (`secrets`) are fetched by the ECS agent with the *execution role* at task start and
 *   arrive as environment variables; the task role never reads Secrets Manager. A changed secret
 *   reaches running workers only when their tasks are replaced (`--force-new-deployment`).
 */
import { ArnFormat, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { TaskBounds } from '../config';
import { acknowledgeTaskDefinition, nagAccountRegion, nagRef } from '../nag';
import type { QueueWithDlq } from './queue-with-dlq';

/** Port on which every worker serves `/healthz` and `/metrics`. */
export const WORKER_METRICS_PORT = 9090;

/**
 * Inputs of the backlog-per-task target, from the worker's latency budget:
 *
 *   throughput per task  = messagesPerSecondPerTask            (measured; e.g. resize on 2 vCPU at
 *                                                               2.0 CPU-s/image → 2 / 2.0 = 1 msg/s)
 *   acceptable backlog   = latencyBudget × throughput per task (a task clears this many messages
 *                                                               within the budget)
 *   target               = acceptable backlog per task
 *
 * Target tracking then keeps ApproximateNumberOfMessagesVisible ÷ RunningTaskCount near the target:
 * with 600 messages visible, a 60-message target and 2 tasks (300 per task) it scales towards
 * 600 / 60 = 10 tasks, capped at `max`. This is the AWS "backlog per instance" method.
 */
export interface BacklogScaling {
  /** How long a message may wait in the queue before a task starts it. */
  readonly latencyBudget: Duration;
  /** Sustained messages per second one task completes. */
  readonly messagesPerSecondPerTask: number;
}

/** The target value for {@link BacklogScaling}: messages per task. */
export function backlogTarget(s: BacklogScaling): number {
  return Math.max(1, Math.round(s.latencyBudget.toSeconds() * s.messagesPerSecondPerTask));
}

export interface WorkerServiceProps {
  readonly cluster: ecs.ICluster;
  /** Binary name, also the Cargo package: `prism-resize`, `prism-archiver`, `prism-metadata`. */
  readonly binary: string;
  readonly image: ecs.ContainerImage;
  /** Fargate CPU units (1024 = 1 vCPU). */
  readonly cpu: number;
  readonly memoryLimitMiB: number;
  /** The queue this worker consumes and its DLQ. */
  readonly work: QueueWithDlq;
  /** Shared `PRISM__*` environment (backend, region, resource names, log format, drain deadline). */
  readonly environment: Record<string, string>;
  /**
   * Secret environment of this worker only (prism-metadata: the callback signing key), injected
   * from Secrets Manager; the execution role is granted read access to exactly these secrets.
   * @default - none
   */
  readonly secrets?: Record<string, ecs.Secret>;
  readonly bounds: TaskBounds;
  readonly scaling: BacklogScaling;
  /** Must exceed the drain deadline in `environment` by at least 5 s. Fargate maximum: 120 s. */
  readonly stopTimeout: Duration;
  /** The worker's drain deadline (`PRISM__SHUTDOWN__DRAIN_TIMEOUT_SECS`). */
  readonly drainTimeout: Duration;
  readonly logRetention: logs.RetentionDays;
  /** RETAIN (default) or DESTROY (ephemeral deployments) for the log group. */
  readonly logRemoval?: RemovalPolicy;
  /** Task architecture; the image must be built for it. @default X86_64 */
  readonly cpuArchitecture?: ecs.CpuArchitecture;
  readonly subnets: ec2.SubnetSelection;
  /** Needed in public subnets (no NAT) to reach AWS APIs; false behind a NAT. */
  readonly assignPublicIp: boolean;
  /** Run on FARGATE_SPOT: interruptions arrive as SIGTERM with a 2-minute warning. */
  readonly spot: boolean;
}

/** A queue-driven Fargate service; see the module doc. */
export class WorkerService extends Construct {
  public readonly service: ecs.FargateService;
  public readonly taskRole: iam.IRole;
  public readonly logGroup: logs.LogGroup;
  public readonly binary: string;
  /** Running task count from Container Insights (ECS/ContainerInsights). */
  public readonly runningTasks: cloudwatch.Metric;

  constructor(scope: Construct, id: string, props: WorkerServiceProps) {
    super(scope, id);
    this.binary = props.binary;
    if (props.stopTimeout.toSeconds() > 120) throw new Error('Fargate stopTimeout cannot exceed 120 s');
    if (props.stopTimeout.toSeconds() < props.drainTimeout.toSeconds() + 5) {
      throw new Error(`${props.binary}: stopTimeout must exceed the drain deadline by at least 5 s`);
    }

    this.logGroup = new logs.LogGroup(this, 'Logs', { retention: props.logRetention, removalPolicy: props.logRemoval ?? RemovalPolicy.RETAIN });

    const taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu: props.cpu,
      memoryLimitMiB: props.memoryLimitMiB,
      runtimePlatform: { cpuArchitecture: props.cpuArchitecture ?? ecs.CpuArchitecture.X86_64, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
    });
    this.taskRole = taskDefinition.taskRole;

    taskDefinition.addContainer('Worker', {
      image: props.image,
      // The image holds every binary; this service's is the container's process (PID 1).
      command: [`/usr/local/bin/${props.binary}`],
      essential: true,
      environment: {
        ...props.environment,
        PRISM__METRICS__LISTEN_ADDR: `0.0.0.0:${WORKER_METRICS_PORT}`,
        PRISM__RESOURCES__QUEUE_URL: props.work.queue.queueUrl,
        PRISM__RESOURCES__DLQ_URL: props.work.deadLetterQueue.queueUrl,
      },
      secrets: props.secrets,
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: props.binary }),
      portMappings: [{ containerPort: WORKER_METRICS_PORT, name: 'metrics' }],
      // The binary GETs its own /healthz and exits 0/1; no curl in the image.
      healthCheck: {
        command: ['CMD', `/usr/local/bin/${props.binary}`, 'healthcheck'],
        interval: Duration.seconds(30),
        timeout: Duration.seconds(5),
        retries: 3,
        startPeriod: Duration.seconds(20),
      },
      stopTimeout: props.stopTimeout,
    });

    const securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.cluster.vpc,
      description: `${props.binary}: no inbound; outbound HTTPS to AWS APIs`,
      allowAllOutbound: true,
    });

    this.service = new ecs.FargateService(this, 'Service', {
      cluster: props.cluster,
      taskDefinition,
      // No desiredCount: CloudFormation starts one task on create, and later deploys leave the
      // auto-scaled count alone instead of resetting it.
      capacityProviderStrategies: [{ capacityProvider: props.spot ? 'FARGATE_SPOT' : 'FARGATE', weight: 1 }],
      vpcSubnets: props.subnets,
      assignPublicIp: props.assignPublicIp,
      securityGroups: [securityGroup],
      circuitBreaker: { enable: true, rollback: true },
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      enableECSManagedTags: true,
      propagateTags: ecs.PropagatedTagSource.SERVICE,
    });

    props.work.queue.grantConsumeMessages(this.taskRole);
    props.work.deadLetterQueue.grantSendMessages(this.taskRole);
    // The Queue port reports DLQ depth for the dev dashboard and logs.
    props.work.deadLetterQueue.grant(this.taskRole, 'sqs:GetQueueAttributes');
    this.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'TaskScaleInProtection',
        actions: ['ecs:GetTaskProtection', 'ecs:UpdateTaskProtection'],
        resources: [
          Stack.of(this).formatArn({
            service: 'ecs',
            resource: 'task',
            resourceName: `${props.cluster.clusterName}/*`,
            arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
          }),
        ],
      }),
    );

    acknowledgeTaskDefinition(taskDefinition, taskDefinition.executionRole);
    const { account, region } = nagAccountRegion(this);
    Validations.of(this.taskRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:${region}:${account}:task/${nagRef(props.cluster)}/*]`,
      reason: 'Task IDs are not known in advance; task scale-in protection is limited to tasks of this cluster.',
    });

    const dimensions = { ClusterName: props.cluster.clusterName, ServiceName: this.service.serviceName };
    this.runningTasks = new cloudwatch.Metric({
      namespace: 'ECS/ContainerInsights',
      metricName: 'RunningTaskCount',
      dimensionsMap: dimensions,
      statistic: 'Average',
      period: Duration.minutes(1),
    });
    this.configureScaling(props, dimensions);
  }

  private configureScaling(props: WorkerServiceProps, dimensions: Record<string, string>): void {
    const capacity = this.service.autoScaleTaskCount({ minCapacity: props.bounds.min, maxCapacity: props.bounds.max });
    const queueName = props.work.queue.queueName;

    // 1. Target tracking on backlog per task (metric math). The L2 only takes a single metric, so
    //    the policy is written on the L1 with a metric-math CustomizedMetricSpecification.
    //    When no task runs, `visible / running` has no value and this policy does nothing; the
    //    step policy below covers that case.
    const target = capacity.node.findChild('Target') as appscaling.ScalableTarget;
    new appscaling.CfnScalingPolicy(this, 'BacklogPerTaskScaling', {
      policyName: `${this.node.addr}-backlog-per-task`,
      policyType: 'TargetTrackingScaling',
      scalingTargetId: target.scalableTargetId,
      targetTrackingScalingPolicyConfiguration: {
        targetValue: backlogTarget(props.scaling),
        scaleOutCooldown: 60,
        // Scale in slowly: a message in flight is not "visible", so a busy fleet briefly looks idle
        // (task scale-in protection keeps busy tasks alive regardless).
        scaleInCooldown: 300,
        customizedMetricSpecification: {
          metrics: [
            {
              id: 'visible',
              label: 'Messages visible',
              metricStat: {
                metric: {
                  namespace: 'AWS/SQS',
                  metricName: 'ApproximateNumberOfMessagesVisible',
                  dimensions: [{ name: 'QueueName', value: queueName }],
                },
                stat: 'Sum',
              },
              returnData: false,
            },
            {
              id: 'running',
              label: 'Running tasks',
              metricStat: {
                metric: {
                  namespace: 'ECS/ContainerInsights',
                  metricName: 'RunningTaskCount',
                  dimensions: Object.entries(dimensions).map(([name, value]) => ({ name, value })),
                },
                stat: 'Average',
              },
              returnData: false,
            },
            { id: 'backlogPerTask', label: 'Backlog per task', expression: 'visible / running', returnData: true },
          ],
        },
      },
    });

    // 2. Step scaling from zero. The signal is 1 exactly when the service wants no task yet work
    //    is waiting; DesiredTaskCount (not RunningTaskCount) so that a task still starting does not
    //    trigger a second +1. FILL covers minutes in which Container Insights reported nothing.
    if (props.bounds.min === 0) {
      const starved = new cloudwatch.MathExpression({
        label: 'Work waiting with no task',
        expression: 'IF(FILL(desired, 0) == 0 AND visible > 0, 1, 0)',
        usingMetrics: {
          desired: new cloudwatch.Metric({
            namespace: 'ECS/ContainerInsights',
            metricName: 'DesiredTaskCount',
            dimensionsMap: dimensions,
            statistic: 'Average',
          }),
          visible: props.work.queue.metricApproximateNumberOfMessagesVisible({ statistic: 'Sum' }),
        },
        period: Duration.minutes(1),
      });
      capacity.scaleOnMetric('StartFromZero', {
        metric: starved,
        // Only the upper step acts (+1 task); the lower interval is a no-op so that scale-in stays
        // with target tracking.
        scalingSteps: [
          { upper: 0, change: 0 },
          { lower: 1, change: +1 },
        ],
        adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
        cooldown: Duration.seconds(60),
        evaluationPeriods: 1,
      });
    }
  }
}
