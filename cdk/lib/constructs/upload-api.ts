/**
 * prism-api as a Fargate service behind an internet-facing Application Load Balancer.
 *
 * The API never sees image bytes (clients upload to S3 with presigned requests), so it is small
 * and scales on ALB requests per target, not CPU. With a certificate the ALB terminates TLS on
 * 443 (TLS 1.2+ policy) and redirects 80 → 443; without one it serves plain HTTP on 80, which the
 * configuration allows only when a throwaway test stack opts in (`allowInsecureHttp`).
 *
 * The ALB's idle timeout is above the longest long-poll the API allows (`?wait=`), so a waiting
 * request ends with the API's answer, never the ALB's 504. `/metrics` shares the container port
 * but is not routed: the listener answers it with a fixed 404 before any target sees it.
 *
 * The ALB health-checks `GET /healthz` on the container port (8080, which also serves /metrics);
 * the container health check runs `prism-api healthcheck`. On a deploy or scale-in ECS first
 * deregisters the task (ALB deregistration delay, 15 s: API calls are short), then sends SIGTERM;
 * axum's graceful shutdown finishes open requests within the drain deadline.
 */
import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import type { TaskBounds } from '../config';
import { acknowledgeTaskDefinition } from '../nag';

/** Container port: the API, /healthz and /metrics. */
export const API_PORT = 8080;

/** The longest `?wait=` long-poll the API allows (`[limits] max_wait_secs`, 60 by default). */
export const API_MAX_WAIT = Duration.seconds(60);

/** ALB idle timeout: the longest long-poll plus room for the API's own answer. */
export const ALB_IDLE_TIMEOUT = API_MAX_WAIT.plus(Duration.seconds(30));

/**
 * The API's header-read timeout also closes idle keep-alive connections; it must outlast the
 * ALB's idle timeout, or the ALB reuses a connection the API has just closed (a 502). The ALB
 * receives whole requests before forwarding, so a client trickling headers never reaches it.
 */
export const API_HEADER_READ_TIMEOUT = ALB_IDLE_TIMEOUT.plus(Duration.seconds(30));

export interface UploadApiProps {
  readonly cluster: ecs.ICluster;
  readonly image: ecs.ContainerImage;
  readonly cpu: number;
  readonly memoryLimitMiB: number;
  /** Shared `PRISM__*` environment. */
  readonly environment: Record<string, string>;
  /** Secret environment (the token hashes), injected by the ECS agent at task start. */
  readonly secrets: Record<string, ecs.Secret>;
  readonly bounds: TaskBounds;
  /** ACM certificate ARN; enables HTTPS. */
  readonly certificateArn?: string;
  /** ALB access logs go here, under `alb/`. */
  readonly accessLogsBucket: s3.IBucket;
  readonly logRetention: logs.RetentionDays;
  /** RETAIN (default) or DESTROY (ephemeral deployments) for the log group. */
  readonly logRemoval?: RemovalPolicy;
  /** Task architecture; the image must be built for it. @default X86_64 */
  readonly cpuArchitecture?: ecs.CpuArchitecture;
  readonly drainTimeout: Duration;
  readonly stopTimeout: Duration;
  readonly taskSubnets: ec2.SubnetSelection;
  readonly assignPublicIp: boolean;
  /** Sustained requests per minute one task serves comfortably (target tracking target). */
  readonly requestsPerMinutePerTask?: number;
}

/** The upload API; see the module doc. */
export class UploadApi extends Construct {
  public readonly service: ecs.FargateService;
  public readonly taskRole: iam.IRole;
  public readonly loadBalancer: elbv2.ApplicationLoadBalancer;
  public readonly targetGroup: elbv2.ApplicationTargetGroup;
  public readonly logGroup: logs.LogGroup;
  /** `https://<alb dns>` or `http://<alb dns>`. */
  public readonly url: string;
  public readonly runningTasks: cloudwatch.Metric;

  constructor(scope: Construct, id: string, props: UploadApiProps) {
    super(scope, id);
    if (props.stopTimeout.toSeconds() < props.drainTimeout.toSeconds() + 5) {
      throw new Error('prism-api: stopTimeout must exceed the drain deadline by at least 5 s');
    }
    const vpc = props.cluster.vpc;

    this.logGroup = new logs.LogGroup(this, 'Logs', { retention: props.logRetention, removalPolicy: props.logRemoval ?? RemovalPolicy.RETAIN });
    const taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu: props.cpu,
      memoryLimitMiB: props.memoryLimitMiB,
      runtimePlatform: { cpuArchitecture: props.cpuArchitecture ?? ecs.CpuArchitecture.X86_64, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
    });
    this.taskRole = taskDefinition.taskRole;
    taskDefinition.addContainer('Api', {
      image: props.image,
      command: ['/usr/local/bin/prism-api'],
      essential: true,
      environment: {
        ...props.environment,
        PRISM__HTTP__LISTEN_ADDR: `0.0.0.0:${API_PORT}`,
        PRISM__HTTP__HEADER_READ_TIMEOUT_SECS: String(API_HEADER_READ_TIMEOUT.toSeconds()),
      },
      secrets: props.secrets,
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'prism-api' }),
      portMappings: [{ containerPort: API_PORT, name: 'http' }],
      healthCheck: {
        command: ['CMD', '/usr/local/bin/prism-api', 'healthcheck'],
        interval: Duration.seconds(30),
        timeout: Duration.seconds(5),
        retries: 3,
        startPeriod: Duration.seconds(15),
      },
      stopTimeout: props.stopTimeout,
    });

    acknowledgeTaskDefinition(taskDefinition, taskDefinition.executionRole);

    const serviceSecurityGroup = new ec2.SecurityGroup(this, 'ServiceSecurityGroup', {
      vpc,
      description: 'prism-api tasks: inbound 8080 from the load balancer only',
      allowAllOutbound: true,
    });
    this.service = new ecs.FargateService(this, 'Service', {
      cluster: props.cluster,
      taskDefinition,
      vpcSubnets: props.taskSubnets,
      assignPublicIp: props.assignPublicIp,
      securityGroups: [serviceSecurityGroup],
      circuitBreaker: { enable: true, rollback: true },
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      healthCheckGracePeriod: Duration.seconds(30),
      enableECSManagedTags: true,
      propagateTags: ecs.PropagatedTagSource.SERVICE,
    });

    const albSecurityGroup = new ec2.SecurityGroup(this, 'LoadBalancerSecurityGroup', {
      vpc,
      description: 'prism-api load balancer: public listener ports',
      allowAllOutbound: false,
    });
    Validations.of(albSecurityGroup).acknowledge({
      id: 'AwsSolutions-EC23',
      reason: 'Public upload API: the internet-facing load balancer must accept 0.0.0.0/0, and only on its listener ports (80/443).',
    });
    this.loadBalancer = new elbv2.ApplicationLoadBalancer(this, 'LoadBalancer', {
      vpc,
      internetFacing: true,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
      securityGroup: albSecurityGroup,
      dropInvalidHeaderFields: true,
      idleTimeout: ALB_IDLE_TIMEOUT,
    });
    this.loadBalancer.logAccessLogs(props.accessLogsBucket, 'alb');

    let listener: elbv2.ApplicationListener;
    if (props.certificateArn) {
      listener = this.loadBalancer.addListener('Https', {
        port: 443,
        protocol: elbv2.ApplicationProtocol.HTTPS,
        certificates: [elbv2.ListenerCertificate.fromArn(props.certificateArn)],
        sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
        open: true,
      });
      this.loadBalancer.addRedirect({ sourcePort: 80, targetPort: 443 });
      this.url = `https://${this.loadBalancer.loadBalancerDnsName}`;
    } else {
      listener = this.loadBalancer.addListener('Http', { port: 80, protocol: elbv2.ApplicationProtocol.HTTP, open: true });
      this.url = `http://${this.loadBalancer.loadBalancerDnsName}`;
    }

    // Operators scrape /metrics inside the VPC; the internet gets a 404 from the listener.
    listener.addAction('HideMetrics', {
      priority: 1,
      conditions: [elbv2.ListenerCondition.pathPatterns(['/metrics', '/metrics/*'])],
      action: elbv2.ListenerAction.fixedResponse(404, { contentType: 'text/plain', messageBody: 'not found' }),
    });

    this.targetGroup = listener.addTargets('Api', {
      port: API_PORT,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [this.service],
      deregistrationDelay: Duration.seconds(15),
      healthCheck: {
        path: '/healthz',
        healthyHttpCodes: '200',
        interval: Duration.seconds(15),
        timeout: Duration.seconds(5),
        healthyThresholdCount: 2,
        unhealthyThresholdCount: 3,
      },
    });

    const capacity = this.service.autoScaleTaskCount({ minCapacity: props.bounds.min, maxCapacity: props.bounds.max });
    capacity.scaleOnRequestCount('RequestsPerTask', {
      // Presign + one DynamoDB write per file: ~20 requests/s per 0.5 vCPU task leaves headroom.
      requestsPerTarget: props.requestsPerMinutePerTask ?? 1200,
      targetGroup: this.targetGroup,
      scaleInCooldown: Duration.seconds(300),
      scaleOutCooldown: Duration.seconds(60),
    });

    this.runningTasks = new cloudwatch.Metric({
      namespace: 'ECS/ContainerInsights',
      metricName: 'RunningTaskCount',
      dimensionsMap: { ClusterName: props.cluster.clusterName, ServiceName: this.service.serviceName },
      statistic: 'Average',
      period: Duration.minutes(1),
    });
  }
}
