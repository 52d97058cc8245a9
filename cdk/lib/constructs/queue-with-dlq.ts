/**
 * A work queue and its dead-letter queue, with every setting the consumer contract relies on
 * spelled out rather than inherited from defaults:
 *
 * - `visibilityTimeout` is sized to the worker's worst-case handling time. The worker heartbeats
 *   (ChangeMessageVisibility) while it runs, so this is the bound on how long a crashed task's
 *   message stays hidden, not a hard processing limit.
 * - The redrive policy moves a message to the DLQ after `maxReceiveCount` receives (transient
 *   failures); workers also send permanent failures to the DLQ themselves (explicit dead-letter).
 * - The DLQ keeps messages 14 days, longer than the source queue: SQS expiry counts from the
 *   original enqueue time, so a shorter DLQ retention would silently drop redriven messages.
 * - SSE is SQS-managed (SSE-SQS). The AWS-managed `alias/aws/sqs` KMS key cannot be used here:
 *   its key policy cannot grant `sns.amazonaws.com`, so SNS deliveries would fail.
 * - `MaximumMessageSize` is explicit: 256 KiB, the most SNS can deliver, well above the 64 KB S3
 *   event limit.
 * - Long polling (20 s) is the queue default so an idle worker costs one request per 20 s.
 * - Both queues refuse non-TLS requests and are retained on stack deletion.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** Largest message SNS can deliver to SQS. */
export const MAX_MESSAGE_SIZE_BYTES = 256 * 1024;

export interface QueueWithDlqProps {
  /** Hidden time after a receive; above the worker's worst-case handling time. */
  readonly visibilityTimeout: Duration;
  /** Receives before SQS redrives a message to the DLQ. @default 5 */
  readonly maxReceiveCount?: number;
  /** Source queue retention. @default Duration.days(4) */
  readonly retentionPeriod?: Duration;
  /** DLQ retention. @default Duration.days(14) (the SQS maximum) */
  readonly deadLetterRetentionPeriod?: Duration;
}

/** A work queue plus its DLQ. */
export class QueueWithDlq extends Construct {
  /** The queue the worker consumes. */
  public readonly queue: sqs.Queue;
  /** Where failed messages end up, by redrive or by the worker's explicit dead-letter. */
  public readonly deadLetterQueue: sqs.Queue;
  /** The redrive threshold, exposed for dashboards and docs. */
  public readonly maxReceiveCount: number;

  constructor(scope: Construct, id: string, props: QueueWithDlqProps) {
    super(scope, id);
    this.maxReceiveCount = props.maxReceiveCount ?? 5;

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: props.deadLetterRetentionPeriod ?? Duration.days(14),
      maxMessageSizeBytes: MAX_MESSAGE_SIZE_BYTES,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.queue = new sqs.Queue(this, 'Queue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: props.visibilityTimeout,
      retentionPeriod: props.retentionPeriod ?? Duration.days(4),
      maxMessageSizeBytes: MAX_MESSAGE_SIZE_BYTES,
      receiveMessageWaitTime: Duration.seconds(20),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: this.maxReceiveCount },
      removalPolicy: RemovalPolicy.RETAIN,
    });
  }
}
