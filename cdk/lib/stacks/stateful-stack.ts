/**
 * Stateful stack: everything that holds data or is referenced by name from outside (buckets,
 * topic, queues, table, keys, the API token and callback signing secrets). Every resource here is RETAIN and its
 * construct ID is part of the deployed contract: renaming an ID replaces the resource. Compute
 * lives in `ComputeStack` so it can be torn down and redeployed freely.
 *
 * Flow: uploads bucket ObjectCreated → events topic; media bucket ObjectCreated for
 * `manifest.json`/`failure.json` → events topic; prism-api publishes client events to the same
 * topic. The topic fans out to three queues with raw delivery and body-scoped filter policies.
 */
import { Aws, CfnOutput, Duration, Stack, StackProps, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3n from 'aws-cdk-lib/aws-s3-notifications';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subs from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { ImageBucket } from '../constructs/image-bucket';
import { mediaCorsRules, uploadsCorsRules } from '../cors';
import { MediaCdn } from '../constructs/media-cdn';
import { MetadataTable } from '../constructs/metadata-table';
import { QueueWithDlq } from '../constructs/queue-with-dlq';
import { removalPolicy } from '../removal';
import { MEDIA_RESULT_SUFFIXES, metadataFilterPolicy, resizeFilterPolicy } from '../event-filters';

export interface StatefulStackProps extends StackProps {
  /**
   * Browser origins allowed to call prism: the uploads bucket's CORS (POST, PUT), the media
   * bucket's (GET) and, through {@link StatefulStack.allowedOrigins}, the API's.
   */
  readonly allowedOrigins: string[];
  /** Client event names (the body's `event_name`) routed to the metadata queue. */
  readonly clientEventNames?: string[];
  /** Use this existing secret for the API token hashes instead of creating one. */
  readonly apiTokenSecretArn?: string;
  /** Use this existing secret for the callback signing key instead of generating one. */
  readonly callbackSecretArn?: string;
  /** Put a CloudFront distribution (Origin Access Control) in front of the media bucket. */
  readonly cdn?: boolean;
  /**
   * A trial deployment: buckets are emptied and deleted with the stack, the table loses its
   * deletion protection, and every resource is DESTROY (the app adds an aspect for the last).
   * @default false (everything here is RETAIN)
   */
  readonly ephemeral?: boolean;
}

/** Per-worker visibility timeouts: each worker's worst case plus margin (docs/architecture.md, "The worker runtime"). */
export const VISIBILITY_TIMEOUTS = {
  /** Decode + N widths × {webp, avif} of a max-size image on 2 vCPU stays well under 5 min. */
  resize: Duration.seconds(300),
  /** The archiver holds messages until its 60 s flush; 180 s covers one flush plus a slow PUT. */
  archiver: Duration.seconds(180),
  /** A few conditional DynamoDB writes and one S3 GET of a manifest. */
  metadata: Duration.seconds(60),
} as const;

/** Receives before redrive to the DLQ (transient failures only; permanent ones are sent at once). */
export const MAX_RECEIVE_COUNT = 5;

export class StatefulStack extends Stack {
  /** Encrypts buckets and table. */
  public readonly dataKey: kms.Key;
  /** Encrypts the events topic and the alarm topic (its policy admits S3 and CloudWatch). */
  public readonly topicKey: kms.Key;
  public readonly accessLogsBucket: s3.Bucket;
  public readonly uploadsBucket: s3.Bucket;
  public readonly mediaBucket: s3.Bucket;
  public readonly archiveBucket: s3.Bucket;
  public readonly eventsTopic: sns.Topic;
  public readonly resizeQueue: QueueWithDlq;
  public readonly archiveQueue: QueueWithDlq;
  public readonly metadataQueue: QueueWithDlq;
  public readonly table: MetadataTable;
  /** Comma-separated sha256 hex digests of the accepted API bearer tokens. */
  public readonly apiTokenSecret: secretsmanager.ISecret;
  /**
   * The master key of prism-metadata's completion callbacks (Standard Webhooks): each
   * principal's signing key derives from it. Required by the binary with backend = aws.
   */
  public readonly callbackSigningSecret: secretsmanager.ISecret;
  /**
   * The origins the buckets' CORS rules grant; the compute stack gives the API the same list
   * (`PRISM__HTTP__CORS_ALLOWED_ORIGINS`), so the two cannot disagree.
   */
  public readonly allowedOrigins: string[];
  /**
   * The CloudFront distribution in front of the media bucket, with `cdn`. It lives here because
   * the media bucket's and the data key's policies name it (another stack would make a cycle).
   */
  public readonly mediaCdn?: MediaCdn;

  constructor(scope: Construct, id: string, props: StatefulStackProps) {
    super(scope, id, props);
    this.allowedOrigins = [...props.allowedOrigins];
    const ephemeral = props.ephemeral ?? false;
    const removal = removalPolicy(ephemeral);

    // Two keys, because of a dependency cycle: S3 needs `kms:GenerateDataKey*` on the *topic's*
    // key, scoped to the two bucket ARNs, while the buckets are themselves encrypted with a key.
    // One key whose policy names the buckets that depend on it cannot be created.
    this.dataKey = new kms.Key(this, 'DataKey', {
      description: 'prism: SSE-KMS for the uploads, media and archive buckets and the metadata table',
      enableKeyRotation: true,
      removalPolicy: removal,
    });
    this.topicKey = new kms.Key(this, 'TopicKey', {
      description: 'prism: SSE for the events and alarm topics',
      enableKeyRotation: true,
      removalPolicy: removal,
    });

    this.accessLogsBucket = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      // S3 server access logs and ALB access logs can only be delivered to SSE-S3 buckets.
      encryption: s3.BucketEncryption.S3_MANAGED,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ id: 'expire-logs', expiration: Duration.days(90) }],
      removalPolicy: removal,
      autoDeleteObjects: ephemeral,
    });
    Validations.of(this.accessLogsBucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason: 'This is the access-log destination itself; logging it into itself would loop.',
    });

    this.uploadsBucket = new ImageBucket(this, 'Uploads', {
      encryptionKey: this.dataKey,
      accessLogsBucket: this.accessLogsBucket,
      // Originals are transient: the resize worker copies `original` to media when a batch asks.
      expireAfter: Duration.days(30),
      cors: uploadsCorsRules(props.allowedOrigins),
      ephemeral,
    }).bucket;
    this.mediaBucket = new ImageBucket(this, 'Media', {
      encryptionKey: this.dataKey,
      accessLogsBucket: this.accessLogsBucket,
      cors: mediaCorsRules(props.allowedOrigins),
      ephemeral,
    }).bucket;
    if (props.cdn) {
      this.mediaCdn = new MediaCdn(this, 'MediaCdn', { bucket: this.mediaBucket });
    }
    this.archiveBucket = new ImageBucket(this, 'Archive', {
      encryptionKey: this.dataKey,
      accessLogsBucket: this.accessLogsBucket,
      // Raw payloads are read only for `prism replay` (backfills): cheaper storage after 30 days.
      infrequentAccessAfter: Duration.days(30),
      ephemeral,
    }).bucket;

    this.eventsTopic = new sns.Topic(this, 'EventsTopic', {
      masterKey: this.topicKey,
      enforceSSL: true,
    });
    this.eventsTopic.applyRemovalPolicy(removal);

    // S3 → KMS-encrypted topic: S3 encrypts the message with the topic's key, so the key policy
    // must admit s3.amazonaws.com. CDK adds an unscoped statement only behind a feature flag;
    // this one is scoped to our two buckets and our account.
    this.topicKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowS3NotificationsFromPrismBuckets',
        principals: [new iam.ServicePrincipal('s3.amazonaws.com')],
        actions: ['kms:GenerateDataKey*', 'kms:Decrypt'],
        resources: ['*'],
        conditions: {
          ArnLike: { 'aws:SourceArn': [this.uploadsBucket.bucketArn, this.mediaBucket.bucketArn] },
          StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
        },
      }),
    );
    // CloudWatch alarms publish to the (same-key) alarm topic in the compute stack.
    this.topicKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowCloudWatchAlarmsToPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:GenerateDataKey*', 'kms:Decrypt'],
        resources: ['*'],
        conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
    );

    // SnsDestination adds `Allow s3.amazonaws.com sns:Publish if aws:SourceArn = bucket` per bucket.
    // Bucket names are global and can be re-registered by another account after deletion, so also
    // deny S3 publishing on behalf of any other account.
    this.eventsTopic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'DenyS3PublishFromOtherAccounts',
        effect: iam.Effect.DENY,
        principals: [new iam.ServicePrincipal('s3.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [this.eventsTopic.topicArn],
        conditions: { StringNotEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
    );
    const toTopic = new s3n.SnsDestination(this.eventsTopic);
    this.uploadsBucket.addEventNotification(s3.EventType.OBJECT_CREATED, toTopic);
    for (const suffix of MEDIA_RESULT_SUFFIXES) {
      // Variants themselves produce no events; only the record the resize worker writes last.
      this.mediaBucket.addEventNotification(s3.EventType.OBJECT_CREATED, toTopic, { suffix });
    }

    // addEventNotification deploys CDK's singleton custom resource that calls
    // PutBucketNotificationConfiguration at deploy time.
    const notificationsHandler = this.node.tryFindChild('BucketNotificationsHandler050a0587b7544547bf325f094a3db834');
    if (notificationsHandler) {
      Validations.of(notificationsHandler).acknowledge({
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
        reason:
          "CDK's deploy-time custom resource that writes the bucket notification configuration; the managed policy " +
          'only lets it write its own CloudWatch Logs. It is not part of the runtime path.',
      });
    }

    this.resizeQueue = new QueueWithDlq(this, 'ResizeQueue', {
      visibilityTimeout: VISIBILITY_TIMEOUTS.resize,
      maxReceiveCount: MAX_RECEIVE_COUNT,
    });
    this.archiveQueue = new QueueWithDlq(this, 'ArchiveQueue', {
      visibilityTimeout: VISIBILITY_TIMEOUTS.archiver,
      maxReceiveCount: MAX_RECEIVE_COUNT,
    });
    this.metadataQueue = new QueueWithDlq(this, 'MetadataQueue', {
      visibilityTimeout: VISIBILITY_TIMEOUTS.metadata,
      maxReceiveCount: MAX_RECEIVE_COUNT,
    });

    // Raw delivery on every subscription: the queue body is the published JSON itself, not an SNS
    // envelope (the workers accept both shapes anyway).
    this.subscribe(this.resizeQueue, resizeFilterPolicy(this.uploadsBucket.bucketName));
    this.subscribe(
      this.metadataQueue,
      metadataFilterPolicy(this.uploadsBucket.bucketName, this.mediaBucket.bucketName, props.clientEventNames ?? ['IMAGE_REQUESTED']),
    );
    // The archive keeps everything that crossed the topic, for `prism replay`.
    this.subscribe(this.archiveQueue, undefined);

    this.table = new MetadataTable(this, 'Metadata', { encryptionKey: this.dataKey, ephemeral });

    if (props.apiTokenSecretArn) {
      this.apiTokenSecret = secretsmanager.Secret.fromSecretCompleteArn(this, 'ApiTokenHashes', props.apiTokenSecretArn);
    } else {
      const secret = new secretsmanager.Secret(this, 'ApiTokenHashes', {
        description:
          'prism-api bearer tokens: comma-separated lowercase sha256 hex digests (PRISM__AUTH__TOKEN_SHA256S). ' +
          'The generated initial value is 64 random hex digits, a well-formed digest of no known token: ' +
          'the API starts and rejects every token until an operator stores real digests.',
        generateSecretString: {
          passwordLength: 64,
          excludeUppercase: true,
          excludePunctuation: true,
          includeSpace: false,
          excludeCharacters: 'ghijklmnopqrstuvwxyz',
        },
        removalPolicy: removal,
      });
      Validations.of(secret).acknowledge({
        id: 'AwsSolutions-SMG4',
        reason:
          'The secret stores hashes of bearer tokens issued out of band; rotating it means issuing new tokens to ' +
          'producers, an operator procedure (cdk/README.md), not something a rotation Lambda can do.',
      });
      this.apiTokenSecret = secret;
    }

    if (props.callbackSecretArn) {
      this.callbackSigningSecret = secretsmanager.Secret.fromSecretCompleteArn(this, 'CallbackSigningSecret', props.callbackSecretArn);
    } else {
      const secret = new secretsmanager.Secret(this, 'CallbackSigningSecret', {
        description:
          'prism-metadata completion callbacks (Standard Webhooks): the master key each principal\'s ' +
          'signing key derives from (PRISM__CALLBACK__SIGNING_SECRET). Give a receiver its own key: ' +
          'prism webhooks secret --principal NAME.',
        // 64 letters and digits (~380 bits): the binary uses the string's bytes as the key, and a
        // value without punctuation or spaces survives copying into a receiver's configuration.
        generateSecretString: {
          passwordLength: 64,
          excludePunctuation: true,
          includeSpace: false,
        },
        removalPolicy: removal,
      });
      Validations.of(secret).acknowledge({
        id: 'AwsSolutions-SMG4',
        reason:
          'The signing key is shared with every callback receiver, who verifies signatures with it; rotating it ' +
          'means handing receivers the new key at the same time, an operator procedure (cdk/README.md), not ' +
          'something a rotation Lambda can do.',
      });
      this.callbackSigningSecret = secret;
    }

    const outputs: Record<string, string> = {
      UploadsBucketName: this.uploadsBucket.bucketName,
      MediaBucketName: this.mediaBucket.bucketName,
      ArchiveBucketName: this.archiveBucket.bucketName,
      EventsTopicArn: this.eventsTopic.topicArn,
      TableName: this.table.table.tableName,
      ResizeQueueUrl: this.resizeQueue.queue.queueUrl,
      ResizeDlqUrl: this.resizeQueue.deadLetterQueue.queueUrl,
      ArchiveQueueUrl: this.archiveQueue.queue.queueUrl,
      ArchiveDlqUrl: this.archiveQueue.deadLetterQueue.queueUrl,
      MetadataQueueUrl: this.metadataQueue.queue.queueUrl,
      MetadataDlqUrl: this.metadataQueue.deadLetterQueue.queueUrl,
      ApiTokenSecretArn: this.apiTokenSecret.secretArn,
      CallbackSecretArn: this.callbackSigningSecret.secretArn,
    };
    if (this.mediaCdn) {
      outputs.MediaBaseUrl = this.mediaCdn.baseUrl;
    }
    for (const [name, value] of Object.entries(outputs)) {
      new CfnOutput(this, name, { value });
    }
  }

  /** Subscribes a work queue with raw delivery and, when given, a message-body filter policy. */
  private subscribe(target: QueueWithDlq, filterPolicy: Record<string, unknown> | undefined): void {
    const subscription = this.eventsTopic.addSubscription(
      new subs.SqsSubscription(target.queue, { rawMessageDelivery: true }),
    );
    if (filterPolicy) {
      // Raw JSON on the L1 because the typed filterPolicyWithMessageBody has no `$or`.
      const cfn = subscription.node.defaultChild as sns.CfnSubscription;
      cfn.filterPolicyScope = 'MessageBody';
      cfn.filterPolicy = filterPolicy;
    }
  }
}
